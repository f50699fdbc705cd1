//! `kinglet reset` against a private test daemon with real pods: refused while the daemon
//! answers, then, with the daemon stopped, nothing of the installation is left — no shim,
//! pod init or container process, no mount, no bridge, no nftables table, no directory.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kinglet_tests::{
    all_mounts_under, init_pid, kinglet_bin, pod_config, pod_json, run_container, run_pod,
    sh_container, wait_for, write, Daemon,
};

fn reset(d: &Daemon) -> std::process::Output {
    Command::new(kinglet_bin())
        .arg("reset")
        .arg("--yes")
        .arg("--socket")
        .arg(&d.socket)
        .arg("--root")
        .arg(&d.root)
        .arg("--run-root")
        .arg(&d.run_root)
        .arg("--manifests")
        .arg(d.manifests())
        .args(["--bridge", &d.net.bridge, "--nft-table", &d.net.table])
        .output()
        .expect("run kinglet reset")
}

fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // A zombie is dead; only its parent's wait is missing.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Processes whose command line mentions `dir`.
fn processes_mentioning(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(raw) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
            if cmd.contains(&needle) {
                out.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
            }
        }
    }
    out
}

fn nft_table_exists(table: &str) -> bool {
    Command::new("nft")
        .args(["list", "table", "ip", table])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_removes_every_trace_of_a_stopped_daemon() {
    let mut d = Daemon::start().await;
    d.import_test_image().await;
    let logs = d.dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();

    // A CRI pod whose container leaves a second process in its cgroup.
    let mut rt = d.runtime().await;
    let cfg = pod_config("cri-pod", &logs);
    let pod = run_pod(&mut rt, &cfg).await;
    let c = run_container(
        &mut rt,
        &pod,
        &cfg,
        sh_container("c", "sleep 1000 & exec sleep 1001"),
    )
    .await;
    let cri_init = init_pid(&mut rt, &c).await;

    // A manifest pod with a Secret volume (tmpfs) and a shared PID namespace (pod init).
    let f = write(
        d.dir.path(),
        "app.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {k: v}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {name: app}\nspec:\n  shareProcessNamespace: true\n\
         \x20 containers:\n  - name: c\n    image: kinglet.test/busybox:latest\n\
         \x20   imagePullPolicy: IfNotPresent\n    command: [sleep, '1000']\n\
         \x20   volumeMounts: [{name: s, mountPath: /s}]\n  volumes:\n  - {name: s, secret: {secretName: s}}\n",
    );
    d.cli_ok(&["apply", "-f", &f]);
    wait_for("pod app Running", Duration::from_secs(30), || {
        pod_json(&d, "app")["status"]["phase"] == "Running"
    });
    assert!(
        !processes_mentioning(&d.run_root).is_empty(),
        "shims and pod init run"
    );
    assert!(!all_mounts_under(d.dir.path()).is_empty());
    assert!(Path::new("/sys/class/net").join(&d.net.bridge).exists());
    assert!(nft_table_exists(&d.net.table));
    let svc_table = format!("{}_svc", d.net.table);
    // The Service proxy makes its table once a Service exists; stand in for one.
    let made = Command::new("nft")
        .args(["add", "table", "ip", &svc_table])
        .status()
        .expect("nft");
    assert!(made.success() && nft_table_exists(&svc_table));

    // Refused while the daemon answers, with how to stop it; nothing removed.
    let out = reset(&d);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("systemctl stop kinglet"), "{err}");
    assert!(d.root.exists() && alive(cri_init));

    // Stop the daemon as systemd does (SIGTERM); containers keep running.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    d.child().unwrap().wait().unwrap();
    assert!(alive(cri_init), "containers outlive the daemon");

    let out = reset(&d);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "killed shim process",
        "killed pod-init process",
        "killed container",
        "unmounted ",
        &format!("removed bridge {}", d.net.bridge),
        &format!("removed nftables table ip {}", d.net.table),
        &format!("removed {}", d.run_root.display()),
        &format!("removed {}", d.root.display()),
    ] {
        assert!(text.contains(want), "{want:?} in:\n{text}");
    }

    // Nothing is left.
    wait_for("container processes gone", Duration::from_secs(5), || {
        !alive(cri_init)
    });
    let left = processes_mentioning(&d.run_root);
    assert!(left.is_empty(), "processes left: {left:?}");
    let mounts = all_mounts_under(d.dir.path());
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    assert!(!Path::new("/sys/class/net").join(&d.net.bridge).exists());
    assert!(!nft_table_exists(&d.net.table));
    assert!(
        !nft_table_exists(&svc_table),
        "reset leaves the Service proxy's table"
    );
    assert!(!d.root.exists() && !d.run_root.exists() && !d.socket.exists());
    let still = Command::new("pgrep")
        .args(["-f", "sleep 100[01]"])
        .output()
        .unwrap();
    let pids: Vec<i32> = String::from_utf8_lossy(&still.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .filter(|p: &i32| {
            alive(*p)
                && std::fs::read_to_string(format!("/proc/{p}/cgroup"))
                    .is_ok_and(|cg| cg.contains(&c))
        })
        .collect();
    assert!(pids.is_empty(), "container processes left: {pids:?}");

    // Idempotent: a second run finds nothing.
    let out = reset(&d);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("nothing to remove"), "{text}");
}
