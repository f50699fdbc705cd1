//! Root integration tests for pod user namespaces (`kinglet_netns::userns`): the pinned user
//! namespace has the asked maps and owns the pod's net/ipc/uts namespaces, idmapped mounts
//! show files through it, and unpinning leaves nothing behind.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

use common::{mounts_under, ns_id, own_ns, require_root, run};
use kinglet_netns::{
    idmap_mount, pin_namespaces, unpin_namespaces, IdMap, NsKind, PinRequest, UserNsMaps,
};

fn maps(host_id: u32) -> UserNsMaps {
    let m = vec![IdMap {
        container_id: 0,
        host_id,
        length: 65536,
    }];
    UserNsMaps {
        uids: m.clone(),
        gids: m,
    }
}

#[test]
fn pod_userns_is_mapped_owns_the_pod_namespaces_and_idmaps_mounts() {
    require_root();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("ns");
    let pinned = pin_namespaces(&PinRequest {
        dir: dir.clone(),
        net: true,
        ipc: true,
        uts: true,
        hostname: Some("userns-pod".into()),
        sysctls: vec![("net.ipv4.ip_unprivileged_port_start".into(), "0".into())],
        userns: Some(maps(300000)),
    })
    .expect("pin with a user namespace");
    let user = pinned.user.clone().expect("user pin");
    assert_ne!(ns_id(&user), own_ns(NsKind::User));

    // A process joining the pod's user and net namespaces sees the map, the hostname set and
    // the sysctl written: the namespaces are usable from inside the user namespace.
    let nsenter = |args: &[&str]| {
        let mut c = Command::new("nsenter");
        c.arg(format!("--user={}", user.display()))
            .arg(format!("--net={}", dir.join("net").display()))
            .arg(format!("--uts={}", dir.join("uts").display()))
            .args(args);
        run(&mut c)
    };
    let uid_map = nsenter(&["cat", "/proc/self/uid_map"]);
    let fields: Vec<&str> = uid_map.split_whitespace().collect();
    assert_eq!(fields, ["0", "300000", "65536"], "{uid_map}");
    assert_eq!(nsenter(&["hostname"]).trim(), "userns-pod");
    let sysctl = nsenter(&["cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"]);
    assert_eq!(sysctl.trim(), "0");
    // Owned by the user namespace: root in it may change the network namespace.
    nsenter(&["ip", "link", "set", "lo", "mtu", "1500"]);

    // An idmapped copy of a directory: host root's file shows as the mapped root (300000).
    let src = tmp.path().join("src");
    fs::create_dir(&src).expect("src");
    fs::write(src.join("f"), "x").expect("file");
    let dst = tmp.path().join("mapped");
    idmap_mount(&src, &dst, &user, false).expect("idmapped mount");
    assert_eq!(fs::metadata(dst.join("f")).expect("stat").uid(), 300000);
    assert_eq!(fs::metadata(src.join("f")).expect("stat").uid(), 0);
    nix::mount::umount2(&dst, nix::mount::MntFlags::MNT_DETACH).expect("umount");

    unpin_namespaces(&dir).expect("unpin");
    assert!(!dir.exists(), "pin dir left behind");
    assert!(mounts_under(tmp.path()).is_empty(), "mounts left behind");
}
