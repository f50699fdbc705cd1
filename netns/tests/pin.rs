//! Root integration tests for pinned net/ipc/uts namespaces (`kinglet_netns::pin`).
//!
//! They run on libtest's worker threads, in parallel: exactly the situation the dedicated pinning
//! thread exists for. Without root they fail (see `common::require_root`).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;

use common::{mounts_under, ns_id, ns_link_text, own_ns, require_root, run};
use kinglet_netns::{pin_namespaces, sys, unpin_namespaces, NetnsError, NsKind, PinRequest};

const POD_KINDS: [NsKind; 3] = [NsKind::Net, NsKind::Ipc, NsKind::Uts];

fn request(dir: &Path, hostname: Option<&str>) -> PinRequest {
    PinRequest {
        dir: dir.to_path_buf(),
        net: true,
        ipc: true,
        uts: true,
        hostname: hostname.map(str::to_owned),
        sysctls: Vec::new(),
        userns: None,
    }
}

/// Unpins `dir` on drop, so that a failing test leaves no mounts behind.
struct UnpinOnDrop<'a>(&'a Path);

impl Drop for UnpinOnDrop<'_> {
    fn drop(&mut self) {
        let _ = unpin_namespaces(self.0);
    }
}

fn thread_ns(kind: NsKind) -> kinglet_netns::NsId {
    ns_id(&PathBuf::from(format!("/proc/thread-self/ns/{kind}")))
}

#[test]
fn pins_fresh_net_ipc_uts_namespaces_that_can_be_joined() {
    require_root();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("pod-a").join("ns");
    let _cleanup = UnpinOnDrop(&dir);
    let host_hostname = nix::unistd::gethostname().expect("hostname");
    let before: Vec<_> = POD_KINDS.iter().map(|&k| thread_ns(k)).collect();

    let pinned = pin_namespaces(&request(&dir, Some("kinglet-pod-a"))).expect("pin");

    // Paths are the documented ones, and each pin is a namespace of its own.
    assert_eq!(pinned.net.as_deref(), Some(dir.join("net").as_path()));
    assert_eq!(pinned.ipc.as_deref(), Some(dir.join("ipc").as_path()));
    assert_eq!(pinned.uts.as_deref(), Some(dir.join("uts").as_path()));
    let ids: Vec<_> = POD_KINDS
        .iter()
        .map(|&k| ns_id(pinned.path(k).expect("pinned")))
        .collect();
    for (&kind, &id) in POD_KINDS.iter().zip(&ids) {
        assert_ne!(
            id,
            own_ns(kind),
            "{kind} pin is the test process's own namespace"
        );
    }
    assert_eq!(mounts_under(&dir).len(), 3, "one bind mount per pin");

    // The caller's thread and the process kept their namespaces and hostname.
    let after: Vec<_> = POD_KINDS.iter().map(|&k| thread_ns(k)).collect();
    assert_eq!(before, after, "calling thread's namespaces changed");
    assert_eq!(nix::unistd::gethostname().expect("hostname"), host_hostname);

    // Join the pins from another process: hostname, namespace identities, and a fresh netns
    // whose only interface is `lo`, up.
    let out = run(Command::new("nsenter")
        .arg(format!("--net={}", dir.join("net").display()))
        .arg(format!("--ipc={}", dir.join("ipc").display()))
        .arg(format!("--uts={}", dir.join("uts").display()))
        .args(["sh", "-c"])
        .arg("hostname; readlink /proc/self/ns/net /proc/self/ns/ipc /proc/self/ns/uts; ip -o link show"));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "unexpected output:\n{out}");
    assert_eq!(lines[0], "kinglet-pod-a");
    for (i, (&kind, &id)) in POD_KINDS.iter().zip(&ids).enumerate() {
        assert_eq!(
            lines[1 + i],
            ns_link_text(kind, id),
            "joined {kind} namespace"
        );
    }
    let link = lines[4];
    assert!(link.contains(": lo: <LOOPBACK,UP"), "lo is not up: {link}");

    // Unpin: no mounts left, the directory is gone, and unpinning again is fine.
    unpin_namespaces(&dir).expect("unpin");
    assert_eq!(mounts_under(&dir), Vec::<PathBuf>::new());
    assert!(!dir.exists(), "pin dir left behind");
    unpin_namespaces(&dir).expect("second unpin");
}

#[test]
fn pins_only_what_is_requested() {
    require_root();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("ns");
    let _cleanup = UnpinOnDrop(&dir);
    let pinned = pin_namespaces(&PinRequest {
        dir: dir.clone(),
        net: true,
        ipc: false,
        uts: false,
        hostname: None,
        sysctls: Vec::new(),
        userns: None,
    })
    .expect("pin");
    assert_eq!(pinned.net.as_deref(), Some(dir.join("net").as_path()));
    assert_eq!((pinned.ipc, pinned.uts), (None, None));
    let names: Vec<_> = fs::read_dir(&dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["net"]);
    assert_ne!(ns_id(&dir.join("net")), own_ns(NsKind::Net));
    unpin_namespaces(&dir).expect("unpin");
    assert!(!dir.exists());
}

#[test]
fn failure_rolls_back_earlier_pins_and_names_the_namespace() {
    require_root();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("ns");
    let _cleanup = UnpinOnDrop(&dir);
    fs::create_dir(&dir).expect("mkdir");
    // A file that is not ours where the uts pin goes: net and ipc get pinned first, then uts
    // fails and both must be undone, while the foreign file and the directory stay.
    fs::write(dir.join("uts"), "not a pin").expect("write");

    let err = pin_namespaces(&request(&dir, Some("pod"))).expect_err("uts pin must fail");
    match &err {
        NetnsError::CreatePinFile { kind, path, .. } => {
            assert_eq!(*kind, NsKind::Uts);
            assert_eq!(path, &dir.join("uts"));
        }
        other => panic!("unexpected error {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("uts") && msg.contains(&dir.join("uts").display().to_string()),
        "{msg}"
    );

    assert_eq!(
        mounts_under(&dir),
        Vec::<PathBuf>::new(),
        "rollback left mounts"
    );
    assert!(
        !dir.join("net").exists() && !dir.join("ipc").exists(),
        "rollback left pins"
    );
    assert_eq!(
        fs::read_to_string(dir.join("uts")).expect("read"),
        "not a pin"
    );
}

#[test]
fn failure_removes_the_directory_it_created() {
    require_root();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("new").join("ns");
    let _cleanup = UnpinOnDrop(&dir);
    let too_long = "h".repeat(100); // the kernel's limit is 64
    let err = pin_namespaces(&request(&dir, Some(&too_long))).expect_err("hostname must fail");
    assert!(
        matches!(&err, NetnsError::SetHostname { path, .. } if path == &dir.join("uts")),
        "{err:?}"
    );
    assert!(
        !dir.exists(),
        "directory created by the failed call was left behind"
    );
}

#[test]
fn unpin_detaches_stacked_mounts_and_keeps_foreign_files() {
    require_root();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("ns");
    let _cleanup = UnpinOnDrop(&dir);
    pin_namespaces(&PinRequest {
        dir: dir.clone(),
        net: true,
        ipc: false,
        uts: false,
        hostname: None,
        sysctls: Vec::new(),
        userns: None,
    })
    .expect("pin");
    // Leftovers of a crash: a second mount stacked on the net pin, a plain unmounted pid pin
    // file, and a file that is not a pin at all.
    sys::bind_mount(&dir.join("net"), &dir.join("net")).expect("stack mount");
    assert_eq!(mounts_under(&dir).len(), 2);
    fs::write(dir.join("pid"), "").expect("pid");
    fs::write(dir.join("other"), "keep").expect("other");

    unpin_namespaces(&dir).expect("unpin");
    assert_eq!(mounts_under(&dir), Vec::<PathBuf>::new());
    assert!(!dir.join("net").exists() && !dir.join("pid").exists());
    assert!(dir.join("other").exists(), "non-pin file removed");

    fs::remove_file(dir.join("other")).expect("rm other");
    unpin_namespaces(&dir).expect("unpin again");
    assert!(!dir.exists(), "empty dir kept");
}

#[test]
fn concurrent_pins_get_distinct_namespaces() {
    require_root();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dirs: Vec<_> = (0..4)
        .map(|i| tmp.path().join(format!("pod-{i}")))
        .collect();
    let _cleanup: Vec<_> = dirs.iter().map(|d| UnpinOnDrop(d)).collect();
    let ids: Vec<_> = thread::scope(|s| {
        let handles: Vec<_> = dirs
            .iter()
            .enumerate()
            .map(|(i, dir)| {
                s.spawn(move || {
                    let hostname = format!("pod-{i}");
                    let pinned = pin_namespaces(&request(dir, Some(&hostname))).expect("pin");
                    ns_id(pinned.net.as_deref().expect("net"))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("join"))
            .collect()
    });
    for (i, a) in ids.iter().enumerate() {
        assert!(
            !ids[i + 1..].contains(a),
            "two pods share a network namespace"
        );
    }
    for (i, dir) in dirs.iter().enumerate() {
        let out = run(Command::new("nsenter")
            .arg(format!("--uts={}", dir.join("uts").display()))
            .arg("hostname"));
        assert_eq!(out.trim(), format!("pod-{i}"));
        unpin_namespaces(dir).expect("unpin");
        assert!(!dir.exists());
    }
}
