//! Kinglet as a systemd service in a VM whose guest runs the unified cgroup v2 hierarchy (the
//! hosts that run the other tests are cgroup v1 hybrid).
//!
//! The guest image (Debian kernel, busybox initramfs, mmdebstrap root with systemd) is built once
//! per set of build inputs into `target/vm-image/<key>` by `tests/vm/build-image.sh`. Each run
//! stages a payload — this checkout's `kinglet` binary, `systemd/kinglet.service` enabled, the
//! checks unit, the test image, `examples/web-pod.yaml` and the test pods — and boots the guest
//! with `tests/vm/boot.sh` under QEMU. The guest's initramfs installs the payload's files before
//! systemd starts, so kinglet.service starts at boot as an enabled unit would; the checks in
//! `tests/vm/guest/checks.sh` run after it and report each by name. This test requires every
//! check below to have reported PASS: a check that did not run fails it as much as one that
//! failed. A guest that hangs is killed by boot.sh's timeout and the serial console's tail is
//! printed.
//!
//! Needs root, QEMU (`qemu-system-x86`), `mmdebstrap`, `binutils` and the Debian archive; all
//! from `scripts/setup-debian.sh`. Without them it fails, it does not skip.
//!
//! Compiled only with the `vm` feature of this crate (`scripts/test.sh`, which CI runs, enables
//! it; so does `make test-vm`), so that a plain `cargo test` stays fast.

#![cfg(feature = "vm")]

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use kinglet_tests::{kinglet_bin, require_root, test_image};

/// Every check `checks.sh` runs, in order. Each must report PASS.
const CHECKS: &[&str] = &[
    "service-active",
    "service-notify",
    "socket-mode-0660",
    "cgroup-v2-unified",
    "image-import",
    "manifest-pod-running",
    "pod-ip-answers",
    "pod-client-log",
    "restart-keeps-container",
    "kill9-service-restarted",
    "watchdog-restarts-hung",
    "apply-test-pods",
    "cgroup-memory-max",
    "cgroup-cpu-max",
    "cgroup-cpu-weight",
    "oom-killed",
    "crash-back-off",
    "journald-fields",
    "reset-removes-everything",
    "deb-install-run-reset",
];

/// The guest gets this long from power-on to power-off (a run takes two to three minutes on a
/// quiet host, over seven at a load average of 25 on two cores).
const GUEST_TIMEOUT_SECS: u32 = 1100;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to)
        .unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
}

/// Build (or reuse) the guest image; its directory.
fn guest_image() -> PathBuf {
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(workspace().join("tests/vm/build-image.sh"))
        .arg(target_dir().join("vm-image"))
        .output()
        .expect("run tests/vm/build-image.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "building the VM image failed ({}):\n{stdout}{stderr}",
        out.status
    );
    eprint!("{stderr}");
    eprintln!("vm image ready in {:.0?}", started.elapsed());
    PathBuf::from(
        stdout
            .lines()
            .last()
            .expect("build-image.sh printed no path"),
    )
}

/// The files the guest gets: `root/` is copied over its root file system at boot.
fn stage_payload(dir: &Path) {
    let ws = workspace();
    let guest = ws.join("tests/vm/guest");
    let root = dir.join("root");
    let units = root.join("etc/systemd/system");
    let wants = units.join("multi-user.target.wants");
    std::fs::create_dir_all(&wants).unwrap();
    std::fs::create_dir_all(root.join("etc/kinglet/manifests")).unwrap();
    std::fs::create_dir_all(root.join("usr/local/bin")).unwrap();

    // The binary under test, without its debug sections (a fifth of the size to copy at boot).
    let bin = kinglet_bin();
    let dest = root.join("usr/local/bin/kinglet");
    let st = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(&bin)
        .arg(&dest)
        .status()
        .expect("run objcopy (Debian package binutils)");
    assert!(
        st.success(),
        "objcopy --strip-debug {} failed",
        bin.display()
    );
    // The helper binaries, installed beside it as `make install` does.
    for name in ["kinglet-shim", "kinglet-pod-init"] {
        let helper = bin.with_file_name(name);
        assert!(
            helper.is_file(),
            "{} not found (cargo build --bin kinglet --bin kinglet-shim --bin kinglet-pod-init)",
            helper.display()
        );
        copy(&helper, &root.join("usr/local/bin").join(name));
    }

    // Enabled as `systemctl enable` would: a link from the target's wants directory.
    copy(
        &ws.join("systemd/kinglet.service"),
        &units.join("kinglet.service"),
    );
    copy(
        &guest.join("kinglet-vm-checks.service"),
        &units.join("kinglet-vm-checks.service"),
    );
    for unit in ["kinglet.service", "kinglet-vm-checks.service"] {
        symlink(format!("/etc/systemd/system/{unit}"), wants.join(unit)).unwrap();
    }

    copy(&guest.join("checks.sh"), &dir.join("checks.sh"));
    for pod in std::fs::read_dir(guest.join("pods")).unwrap() {
        let pod = pod.unwrap().path();
        copy(&pod, &dir.join("pods").join(pod.file_name().unwrap()));
    }
    copy(&ws.join("examples/web-pod.yaml"), &dir.join("web-pod.yaml"));
    copy(&debian_package(), &dir.join("kinglet.deb"));
    copy(&test_image().1, &dir.join("busybox.tar"));
}

/// This checkout's .deb (`scripts/deb.sh --no-build --dev`: the debug binaries).
fn debian_package() -> PathBuf {
    let out = Command::new("bash")
        .arg(workspace().join("scripts/deb.sh"))
        .args(["--no-build", "--dev"])
        .current_dir(workspace())
        .output()
        .expect("run scripts/deb.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "scripts/deb.sh --no-build --dev failed (cargo-deb installed?): {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    workspace().join(
        stdout
            .trim()
            .lines()
            .last()
            .expect("deb.sh printed no path"),
    )
}

/// `PASS name (...)` / `FAIL name ...` lines of the guest's log: (name, passed).
fn reported(log: &str) -> Vec<(String, bool)> {
    log.lines()
        .filter_map(|l| {
            let (verdict, rest) = l.split_once(' ')?;
            let name = rest.split([' ', ':']).next()?.to_owned();
            match verdict {
                "PASS" => Some((name, true)),
                "FAIL" => Some((name, false)),
                _ => None,
            }
        })
        .collect()
}

#[test]
fn kinglet_service_in_a_cgroup_v2_vm() {
    require_root();
    let image = guest_image();
    let work = tempfile::Builder::new()
        .prefix("kinglet-vm-")
        .tempdir()
        .unwrap();
    let payload = work.path().join("payload");
    let results = work.path().join("results");
    stage_payload(&payload);

    let started = Instant::now();
    let status = Command::new("bash")
        .arg(workspace().join("tests/vm/boot.sh"))
        .arg(&image)
        .arg(&payload)
        .arg(&results)
        .arg(GUEST_TIMEOUT_SECS.to_string())
        .status()
        .expect("run tests/vm/boot.sh");
    eprintln!("vm run took {:.0?} ({status})", started.elapsed());

    let log = std::fs::read_to_string(results.join("checks.log")).unwrap_or_default();
    eprintln!("---- guest checks.log\n{log}----");
    let seen = reported(&log);
    let mut problems = Vec::new();
    for name in CHECKS {
        match seen.iter().find(|(n, _)| n == name) {
            Some((_, true)) => {}
            Some((_, false)) => problems.push(format!("{name}: FAIL")),
            None => problems.push(format!("{name}: not reported")),
        }
    }
    for (name, _) in &seen {
        if !CHECKS.contains(&name.as_str()) {
            problems.push(format!(
                "{name}: reported by the guest but unknown to this test"
            ));
        }
    }
    if !problems.is_empty() || !status.success() {
        // Keep the console, checks log and daemon journal for a look after the failure.
        let kept = work.keep();
        eprintln!("guest results kept in {}", kept.join("results").display());
        let journal = std::fs::read_to_string(results.join("kinglet.journal")).unwrap_or_default();
        let tail: Vec<&str> = journal.lines().rev().take(40).collect();
        eprintln!(
            "---- last lines of the daemon's journal\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    assert!(
        problems.is_empty() && status.success(),
        "VM checks failed ({status}): {}",
        problems.join("; ")
    );
}
