//! Each decision of `kinglet check` on fake inputs: a fake `/proc` and `/sys` tree, fake
//! `PATH` directories, and real directories with chosen modes and owners.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::security::{age_key, localnet_verdict, manifests_dir, root_dir, run_root_dir};
use super::*;

fn host(files: &[(&str, &str)]) -> (Host, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    for (rel, text) in files {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    (
        Host {
            root: dir.path().to_owned(),
        },
        dir,
    )
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn kernel_versions() {
    let k = |v: &str| kernel(&host(&[("proc/sys/kernel/osrelease", v)]).0);
    assert_eq!(k("6.1.0-18-amd64\n").level, Level::Pass);
    assert_eq!(k("5.4.0-150-generic").level, Level::Warn);
    let f = k("4.9.0-8-amd64");
    assert_eq!(f.level, Level::Fail);
    assert!(f.fix.unwrap().contains("5.10"));
    assert_eq!(kernel(&host(&[]).0).level, Level::Fail);
}

#[test]
fn overlayfs_from_proc_filesystems() {
    let with = host(&[("proc/filesystems", "nodev\tsysfs\nnodev\toverlay\n")]);
    assert_eq!(overlayfs(&with.0).level, Level::Pass);
    let without = host(&[("proc/filesystems", "nodev\tsysfs\n\text4\n")]);
    let f = overlayfs(&without.0);
    assert_eq!(f.level, Level::Fail);
    assert!(f.fix.unwrap().contains("modprobe overlay"));
}

#[test]
fn cgroup_versions_and_controllers() {
    let v2 = |c: &str| cgroups(&host(&[("sys/fs/cgroup/cgroup.controllers", c)]).0);
    assert_eq!(
        v2("cpuset cpu io memory hugetlb pids rdma\n").level,
        Level::Pass
    );
    let f = v2("cpuset cpu io pids\n");
    assert_eq!(f.level, Level::Fail);
    assert!(f.detail.contains("memory"), "{f}");
    assert!(f.fix.unwrap().contains("cgroup_enable=memory"));

    let table = "#subsys_name\thierarchy\tnum_cgroups\tenabled\n\
                 cpu\t2\t10\t1\nmemory\t3\t10\t0\npids\t4\t10\t1\n";
    let f = cgroups(&host(&[("proc/cgroups", table)]).0);
    assert_eq!(f.level, Level::Fail);
    assert!(
        f.detail.contains("v1") && f.detail.contains("memory"),
        "{f}"
    );

    let table = table.replace("memory\t3\t10\t0", "memory\t3\t10\t1");
    let (h, dir) = host(&[("proc/cgroups", &table)]);
    assert_eq!(cgroups(&h).level, Level::Fail, "controllers not mounted");
    for c in ["cpu", "memory", "pids"] {
        std::fs::create_dir_all(dir.path().join("sys/fs/cgroup").join(c)).unwrap();
    }
    let f = cgroups(&h);
    assert_eq!(f.level, Level::Warn, "{f}");
    assert!(f.fix.unwrap().contains("unified_cgroup_hierarchy"));

    assert_eq!(cgroups(&host(&[]).0).level, Level::Fail);
}

#[test]
fn seccomp_and_user_namespaces() {
    let h = host(&[
        (
            "proc/self/status",
            "Name:\tx\nSeccomp:\t0\nSeccomp_filters:\t0\n",
        ),
        (
            "proc/sys/kernel/seccomp/actions_avail",
            "kill_process kill_thread trap errno user_notif trace log allow\n",
        ),
        ("proc/sys/user/max_user_namespaces", "15000\n"),
    ]);
    let h = &h.0;
    assert_eq!(seccomp(h).level, Level::Pass);
    assert_eq!(user_namespaces(h).level, Level::Pass);
    let h = host(&[
        ("proc/self/status", "Name:\tx\n"),
        ("proc/sys/user/max_user_namespaces", "0\n"),
    ]);
    assert_eq!(seccomp(&h.0).level, Level::Fail);
    let u = user_namespaces(&h.0);
    assert_eq!(u.level, Level::Warn);
    assert!(u.fix.unwrap().contains("max_user_namespaces"));
}

#[test]
fn nft_is_looked_up_on_path_and_must_be_executable() {
    let dir = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let nft = dir.path().join("nft");
    std::fs::write(&nft, "#!/bin/sh\n").unwrap();
    chmod(&nft, 0o644);
    let path = format!("{}:{}", empty.path().display(), dir.path().display());
    let f = nftables(&path);
    assert_eq!(f.level, Level::Fail, "not executable");
    assert_eq!(f.fix.as_deref(), Some("apt-get install nftables"));
    chmod(&nft, 0o755);
    assert_eq!(nftables(&path).level, Level::Pass);
    assert_eq!(nftables("").level, Level::Fail);
}

#[test]
fn ip_forward_values() {
    let f = |v: &str| ip_forward(&host(&[("proc/sys/net/ipv4/ip_forward", v)]).0);
    assert_eq!(f("1\n").level, Level::Pass);
    assert_eq!(f("0\n").level, Level::Warn);
    assert_eq!(ip_forward(&host(&[]).0).level, Level::Fail);
}

#[test]
fn cni_plugins_of_the_first_conflist() {
    let conf = tempfile::tempdir().unwrap();
    let bin = tempfile::tempdir().unwrap();
    let cfg = Config {
        cni_conf_dir: Some(conf.path().to_owned()),
        cni_bin_dir: bin.path().to_owned(),
        ..Config::default()
    };
    assert_eq!(cni(&cfg).unwrap().level, Level::Warn, "no conflist");
    std::fs::write(
        conf.path().join("10-net.conflist"),
        r#"{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"bridge"},{"type":"portmap"}]}"#,
    )
    .unwrap();
    std::fs::write(bin.path().join("bridge"), "").unwrap();
    let f = cni(&cfg).unwrap();
    assert_eq!(f.level, Level::Fail);
    assert!(f.detail.contains("portmap"), "{f}");
    std::fs::write(bin.path().join("portmap"), "").unwrap();
    assert_eq!(cni(&cfg).unwrap().level, Level::Pass);
    std::fs::write(conf.path().join("10-net.conflist"), "{not json").unwrap();
    assert_eq!(cni(&cfg).unwrap().level, Level::Fail);
    assert!(
        cni(&Config::default()).is_none(),
        "built-in network: no CNI check"
    );
}

#[test]
fn disk_thresholds() {
    const G: u64 = 1 << 30;
    let p = Path::new("/var/lib/kinglet");
    assert_eq!(disk_verdict(p, G / 2, 100 * G, 85).level, Level::Fail);
    assert_eq!(disk_verdict(p, 3 * G, 100 * G, 85).level, Level::Warn);
    let f = disk_verdict(p, 20 * G, 200 * G, 85);
    assert_eq!(f.level, Level::Warn, "90% used is past the GC threshold");
    assert!(f.detail.contains("85%"), "{f}");
    assert_eq!(disk_verdict(p, 50 * G, 100 * G, 85).level, Level::Pass);
    // A root that does not exist yet is checked on its nearest parent.
    let d = disk(Path::new("/nonexistent-kinglet/a/b"), 85);
    assert!(d.detail.starts_with("/:"), "{d}");
}

#[test]
fn clock_decisions() {
    assert_eq!(clock::verdict(Some(true), 0).level, Level::Fail);
    assert_eq!(clock::verdict(Some(true), 1_790_000_000).level, Level::Pass);
    let w = clock::verdict(Some(false), 1_790_000_000);
    assert_eq!(w.level, Level::Warn);
    assert!(w.fix.unwrap().contains("timesyncd"));
    assert_eq!(clock::verdict(None, 1_790_000_000).level, Level::Warn);
}

#[test]
fn root_and_run_root_modes() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    std::fs::create_dir(&root).unwrap();
    chmod(&root, 0o700);
    assert_eq!(root_dir(&root).level, Level::Pass);
    chmod(&root, 0o755);
    let f = root_dir(&root);
    assert_eq!(f.level, Level::Warn);
    assert!(
        f.detail.contains("0755") && f.detail.contains("read/traverse"),
        "{f}"
    );
    assert!(f.fix.unwrap().contains("chmod 0700"));
    assert_eq!(root_dir(&d.path().join("absent")).level, Level::Pass);

    let run = d.path().join("run");
    std::fs::create_dir_all(run.join("pods")).unwrap();
    chmod(&run, 0o711);
    chmod(&run.join("pods"), 0o700);
    assert_eq!(run_root_dir(&run).level, Level::Pass);
    chmod(&run.join("pods"), 0o755);
    let f = run_root_dir(&run);
    assert_eq!(f.level, Level::Warn);
    assert!(f.detail.contains("pods (0755)"), "{f}");
    chmod(&run.join("pods"), 0o700);
    chmod(&run, 0o775);
    assert_eq!(run_root_dir(&run).level, Level::Warn);
    std::os::unix::fs::chown(&root, Some(1000), None).unwrap();
    chmod(&root, 0o700);
    assert!(root_dir(&root).detail.contains("uid 1000"));
}

#[test]
fn manifests_writable_by_others_fail_readable_warn() {
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("manifests");
    std::fs::create_dir(&m).unwrap();
    chmod(&m, 0o700);
    let pod = m.join("pod.yaml");
    std::fs::write(&pod, "kind: Pod\n").unwrap();
    chmod(&pod, 0o600);
    assert_eq!(manifests_dir(&m).level, Level::Pass);
    chmod(&m, 0o755);
    assert_eq!(
        manifests_dir(&m).level,
        Level::Pass,
        "file names are no secret"
    );
    chmod(&pod, 0o644);
    let f = manifests_dir(&m);
    assert_eq!(f.level, Level::Warn);
    assert!(f.detail.contains("pod.yaml (0644)"), "{f}");
    chmod(&pod, 0o600);
    chmod(&m, 0o777);
    let f = manifests_dir(&m);
    assert_eq!(f.level, Level::Fail);
    assert!(f.detail.contains("run"), "{f}");
    chmod(&m, 0o700);
    std::os::unix::fs::chown(&pod, Some(1000), None).unwrap();
    let f = manifests_dir(&m);
    assert_eq!(f.level, Level::Fail);
    assert!(f.detail.contains("owner uid 1000"), "{f}");
    // A parent other users can write (not sticky): they could swap the directory.
    std::os::unix::fs::chown(&pod, Some(0), None).unwrap();
    chmod(d.path(), 0o777);
    let f = manifests_dir(&m);
    assert_eq!(f.level, Level::Fail, "{f}");
    chmod(d.path(), 0o700);
    assert_eq!(manifests_dir(&m).level, Level::Pass);
}

#[test]
fn route_localnet_needs_the_guard_chain() {
    let v = |rl: Option<&str>, l: Option<Result<String, String>>| {
        localnet_verdict("kinglet0", "kinglet", rl, l)
    };
    assert_eq!(v(None, None).level, Level::Pass);
    assert_eq!(v(Some("0\n"), None).level, Level::Pass);
    let guarded = "table ip kinglet {\n\tchain localnet_guard {\n\t}\n}\n".to_owned();
    assert_eq!(v(Some("1\n"), Some(Ok(guarded))).level, Level::Pass);
    let f = v(Some("1"), Some(Ok("table ip kinglet {\n}\n".into())));
    assert_eq!(f.level, Level::Fail);
    assert!(f.detail.contains("CVE-2020-8558"), "{f}");
    assert!(f.fix.unwrap().contains("route_localnet=0"));
    let f = v(Some("1"), Some(Err("No such file or directory".into())));
    assert_eq!(f.level, Level::Fail);
}

#[test]
fn report_lines_carry_the_fix() {
    let f = Finding::warn("disk", "3.0 GiB free", "free space");
    assert_eq!(
        f.to_string(),
        "WARN  disk             3.0 GiB free\n      fix: free space"
    );
    assert_eq!(
        Finding::pass("kernel", "6.1.0").to_string(),
        "pass  kernel           6.1.0"
    );
}

#[test]
fn run_all_on_a_fake_v2_host() {
    let (h, _d) = host(&[
        ("proc/sys/kernel/osrelease", "6.1.0\n"),
        ("proc/filesystems", "nodev\toverlay\n"),
        ("sys/fs/cgroup/cgroup.controllers", "cpu memory pids\n"),
        ("proc/self/status", "Seccomp:\t0\n"),
        ("proc/sys/user/max_user_namespaces", "100\n"),
        ("proc/sys/net/ipv4/ip_forward", "1\n"),
    ]);
    let state = tempfile::tempdir().unwrap();
    let cfg = Config {
        root: state.path().join("root"),
        run_root: state.path().join("run"),
        manifests: state.path().join("manifests"),
        ..Config::default()
    };
    let all = run_all(&h, &cfg, "");
    let names: Vec<&str> = all.iter().map(|f| f.check).collect();
    assert_eq!(
        names,
        [
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
            "localnet guard"
        ]
    );
    let nft = all.iter().find(|f| f.check == "nftables").unwrap();
    assert_eq!(nft.level, Level::Fail, "empty PATH: no nft");
}

#[test]
fn the_age_identity_must_be_roots_alone() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("age.key");
    assert_eq!(age_key(&key).level, Level::Pass);
    std::fs::write(&key, "AGE-SECRET-KEY-1...").unwrap();
    chmod(&key, 0o644);
    let f = age_key(&key);
    assert_eq!(f.level, Level::Fail);
    assert!(f.fix.unwrap().contains("chmod 0600"));
    chmod(&key, 0o600);
    let ok = age_key(&key);
    assert_eq!(ok.level, Level::Pass, "{}", ok.detail);
}
