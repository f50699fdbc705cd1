//! `kinglet check` for real, on this host, against a running test daemon's paths and
//! network: every check reports, the daemon's own directories and loopback guard pass, and
//! a manifests directory anyone can write, or a guard chain removed from the table, fail it.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use kinglet_tests::{kinglet_bin, sh, Daemon};

fn check(d: &Daemon) -> (bool, String) {
    let out = Command::new(kinglet_bin())
        .arg("check")
        .arg("--root")
        .arg(&d.root)
        .arg("--run-root")
        .arg(&d.run_root)
        .arg("--manifests")
        .arg(d.manifests())
        .args(["--bridge", &d.net.bridge, "--nft-table", &d.net.table])
        .output()
        .expect("run kinglet check");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success(), text)
}

fn line<'a>(report: &'a str, check: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.get(6..).is_some_and(|r| r.starts_with(check)))
        .unwrap_or_else(|| panic!("no {check:?} line in:\n{report}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn check_passes_a_running_daemon_and_fails_open_manifests_and_a_missing_guard() {
    let d = Daemon::start().await;
    std::fs::create_dir_all(d.manifests()).unwrap();
    std::fs::set_permissions(d.manifests(), std::fs::Permissions::from_mode(0o700)).unwrap();

    let (ok, report) = check(&d);
    for c in [
        "kernel",
        "overlayfs",
        "cgroups",
        "seccomp",
        "user namespaces",
        "nftables",
        "ip_forward",
        "disk",
        "clock",
        "root dir",
        "run-root dir",
        "manifests dir",
        "age identity",
        "localnet guard",
    ] {
        line(&report, c);
    }
    for c in [
        "root dir",
        "run-root dir",
        "manifests dir",
        "nftables",
        "overlayfs",
    ] {
        assert!(line(&report, c).starts_with("pass"), "{c}:\n{report}");
    }
    let guard = line(&report, "localnet guard");
    assert!(
        guard.starts_with("pass") && guard.contains("guarded by"),
        "the test daemon's bridge has route_localnet=1 and its guard:\n{report}"
    );
    assert_eq!(
        ok,
        !report.contains("\nFAIL") && !report.starts_with("FAIL"),
        "exit status must follow the FAIL lines:\n{report}"
    );
    assert!(report.contains(" checks: "), "{report}");

    // A manifests directory other users can write: whoever writes a Pod there runs it as root.
    std::fs::set_permissions(d.manifests(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let (ok, report) = check(&d);
    assert!(!ok, "a FAIL must exit non-zero:\n{report}");
    let m = line(&report, "manifests dir");
    assert!(m.starts_with("FAIL"), "{report}");
    assert!(report.contains("fix: chown -R root:root"), "{report}");
    std::fs::set_permissions(d.manifests(), std::fs::Permissions::from_mode(0o700)).unwrap();

    // route_localnet still on but the guard chain gone: pods could reach 127.0.0.1.
    sh(
        "nft",
        &["delete", "chain", "ip", &d.net.table, "localnet_guard"],
    );
    let (ok, report) = check(&d);
    assert!(!ok, "{report}");
    let g = line(&report, "localnet guard");
    assert!(
        g.starts_with("FAIL") && g.contains("CVE-2020-8558"),
        "{report}"
    );
    d.shutdown().await;
}
