//! The user-namespace manager's decisions, without root: ranges from settings and subordinate
//! ID files, allocation and release, recovery from the files, exhaustion.

use super::*;

const U: u32 = IDS_PER_POD;

fn small(blocks: u32) -> IdRange {
    IdRange::new(10 * U as u64, (blocks * U) as u64).unwrap()
}

#[test]
fn ranges_are_checked_as_the_kubelet_checks_its_mappings() {
    assert_eq!(
        "131072:655360".parse::<IdRange>(),
        Ok(IdRange {
            first: 2 * U,
            length: 10 * U
        })
    );
    for (bad, want) in [
        ("100000:65536", "not a multiple of 65536"),
        ("0:65536", "overlaps the host's IDs 0-65535"),
        ("65536:1000", "not a positive multiple"),
        ("65536:0", "not a positive multiple"),
        ("4294836224:131072", "the kernel cannot map"),
        ("65536", "is not FIRST:LENGTH"),
        ("x:65536", "is not FIRST:LENGTH"),
    ] {
        let e = bad.parse::<IdRange>().unwrap_err();
        assert!(e.contains(want), "{bad}: {e}");
    }
    // The default: everything from 65536 up to the last block the kernel can map.
    let d = IdRange::DEFAULT;
    assert_eq!(IdRange::new(d.first as u64, d.length as u64), Ok(d));
    assert_eq!(d.first, U);
    assert_eq!(d.first as u64 + d.length as u64, (1u64 << 32) - U as u64);
    assert_eq!(d.to_string().parse::<IdRange>(), Ok(d));
}

fn etc(passwd: &str, subuid: &str, subgid: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("passwd"), passwd).unwrap();
    std::fs::write(d.path().join("subuid"), subuid).unwrap();
    std::fs::write(d.path().join("subgid"), subgid).unwrap();
    d
}

#[test]
fn the_kubelet_users_subordinate_ids_else_the_default() {
    let pw = "root:x:0:0::/root:/bin/sh\nkubelet:x:996:996::/:/usr/sbin/nologin\n";
    // No kubelet user: the default, whatever the files say.
    let e = etc("root:x:0:0::/root:/bin/sh\n", "kubelet:131072:65536\n", "");
    assert_eq!(host_range(e.path()).unwrap().0, IdRange::DEFAULT);
    // The user without entries: the default.
    let e = etc(pw, "alice:100000:65536\n", "alice:100000:65536\n");
    assert_eq!(host_range(e.path()).unwrap().0, IdRange::DEFAULT);
    // Entries by name or by uid.
    let e = etc(pw, "kubelet:131072:262144\n", "996:131072:262144\n");
    let (r, from) = host_range(e.path()).unwrap();
    assert_eq!((r.first, r.length), (2 * U, 4 * U));
    assert!(from.contains("subuid"), "{from}");
    // Different, several, or misaligned entries are refused with the reason.
    for (uid, gid, want) in [
        ("kubelet:131072:65536\n", "kubelet:196608:65536\n", "differ"),
        (
            "kubelet:131072:65536\nkubelet:262144:65536\n",
            "kubelet:131072:65536\n",
            "exactly one",
        ),
        (
            "kubelet:100000:65536\n",
            "kubelet:100000:65536\n",
            "not a multiple",
        ),
    ] {
        let e = etc(pw, uid, gid);
        let err = host_range(e.path()).unwrap_err();
        assert!(err.contains(want), "{err}");
    }
}

#[test]
fn lowest_free_block_first_same_block_again_freed_block_reused() {
    let mut a = Allocator::new(small(3));
    assert_eq!(a.allocate("p1").unwrap(), 10 * U);
    assert_eq!(a.allocate("p2").unwrap(), 11 * U);
    // Asking again gives the pod its own block, not a new one.
    assert_eq!(a.allocate("p1").unwrap(), 10 * U);
    assert_eq!(a.release("p1"), Some(10 * U));
    assert_eq!(a.release("p1"), None);
    assert_eq!(a.allocate("p3").unwrap(), 10 * U);
    assert_eq!(a.allocate("p4").unwrap(), 12 * U);
    // All three held: the next pod is refused, saying why and what to do.
    let e = a.allocate("p5").unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, UsernsError::Exhausted { pods: 3, .. }), "{msg}");
    assert!(
        msg.contains("all 3 ranges") && msg.contains("pod-userns-ids"),
        "{msg}"
    );
    a.release("p2");
    assert_eq!(a.allocate("p5").unwrap(), 11 * U);
}

#[test]
fn recorded_blocks_are_never_handed_out_again() {
    let mut a = Allocator::new(small(3));
    a.record("old", 11 * U, U).unwrap();
    assert_eq!(a.allocate("new1").unwrap(), 10 * U);
    assert_eq!(a.allocate("new2").unwrap(), 12 * U);
    // Same pod, same block: fine; another pod or another block: refused.
    a.record("old", 11 * U, U).unwrap();
    assert!(a
        .record("other", 11 * U, U)
        .unwrap_err()
        .contains("held by pod old"));
    assert!(a.record("old", 12 * U, U).is_err());
    assert!(a.record("x", 13 * U + 5, U).is_err());
    assert!(a.record("x", 14 * U, 2 * U).is_err());
    // A block outside the range (the setting changed) stays its pod's.
    a.record("outside", 100 * U, U).unwrap();
    assert_eq!(a.get("outside"), Some(100 * U));
    assert_eq!(a.release("outside"), Some(100 * U));
}

fn mgr(dir: &std::path::Path, blocks: u32) -> UsernsManager {
    UsernsManager::open(dir, Ok(small(blocks)))
}

#[test]
fn mappings_survive_a_restart_and_are_freed_with_their_file() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("userns");
    let m = mgr(&dir, 4);
    assert_eq!(m.get_or_create("pod-a").unwrap(), 10 * U);
    assert_eq!(m.get_or_create("pod-b").unwrap(), 11 * U);
    assert_eq!(m.get_or_create("pod-c").unwrap(), 12 * U);
    m.release("pod-b");
    assert!(!dir.join("pod-b.json").exists());
    // The file has the kubelet's shape.
    let f: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("pod-a.json")).unwrap()).unwrap();
    assert_eq!(
        f["uidMappings"],
        serde_json::json!([{"hostId": 10 * U, "containerId": 0, "length": U}])
    );
    assert_eq!(f["uidMappings"], f["gidMappings"]);
    drop(m);

    // A new daemon: the same mappings, the freed block free, nothing handed out twice.
    std::fs::write(dir.join(".tmp-xyz"), b"half").unwrap();
    let m = mgr(&dir, 4);
    assert_eq!(m.get("pod-a"), Some(10 * U));
    assert_eq!(m.get("pod-c"), Some(12 * U));
    assert_eq!(m.get_or_create("pod-a").unwrap(), 10 * U);
    assert_eq!(m.get_or_create("pod-d").unwrap(), 11 * U);
    assert_eq!(m.get_or_create("pod-e").unwrap(), 13 * U);
    assert!(matches!(
        m.get_or_create("pod-f"),
        Err(UsernsError::Exhausted { .. })
    ));
    assert!(!dir.join("pod-f.json").exists());
}

#[test]
fn unreadable_files_are_left_alone_and_orphans_are_freed() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("userns");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("torn.json"), b"{\"uidMa").unwrap();
    let two = serde_json::json!({
        "uidMappings": [{"hostId": 10 * U, "containerId": 0, "length": U}],
        "gidMappings": [{"hostId": 11 * U, "containerId": 0, "length": U}],
    });
    std::fs::write(dir.join("mixed.json"), two.to_string()).unwrap();
    let m = mgr(&dir, 4);
    assert_eq!(m.get("torn"), None);
    assert_eq!(m.get("mixed"), None);
    assert_eq!(m.get_or_create("live").unwrap(), 10 * U);
    assert_eq!(m.get_or_create("gone").unwrap(), 11 * U);
    // Orphans: held or on disk, and unknown.
    let mut freed = m.release_orphans(|uid| uid == "live");
    freed.sort();
    assert_eq!(freed, ["gone", "mixed", "torn"]);
    assert_eq!(m.get("live"), Some(10 * U));
    assert_eq!(m.get("gone"), None);
    let mut left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["live.json"]);
}

#[test]
fn a_bad_node_range_refuses_new_pods_with_its_reason_and_uids_must_name_files() {
    let root = tempfile::tempdir().unwrap();
    let m = UsernsManager::open(root.path(), Err("subuid and subgid differ".into()));
    let e = m.get_or_create("p").unwrap_err().to_string();
    assert!(e.contains("subuid and subgid differ"), "{e}");
    let m = mgr(root.path(), 1);
    assert!(matches!(
        m.get_or_create("../x"),
        Err(UsernsError::BadUid { .. })
    ));
}

#[test]
fn cri_options_map_container_root_to_the_block() {
    let u = to_cri(10 * U);
    assert_eq!(u.mode, v1::NamespaceMode::Pod as i32);
    assert_eq!(u.uids, u.gids);
    assert_eq!(
        (u.uids[0].container_id, u.uids[0].host_id, u.uids[0].length),
        (0, 10 * U, U)
    );
}
