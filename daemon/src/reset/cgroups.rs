//! The cgroups of one container, for `kinglet reset`: found from its init's
//! `/proc/<pid>/cgroup` (so both drivers and both cgroup versions work), emptied with SIGKILL,
//! then removed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The cgroup directories of `pid` whose last component names the container `id` (never a
/// shared parent, never the root).
pub fn of_pid(pid: i32, id: &str) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    parse(&text, Path::new("/sys/fs/cgroup"), id)
        .into_iter()
        .filter(|p| p.is_dir())
        .collect()
}

/// The decision of [`of_pid`] on the text of `/proc/<pid>/cgroup`.
pub fn parse(text: &str, mount: &Path, id: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(_), Some(ctrl), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        let last = Path::new(rel)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("");
        if rel.is_empty() || id.is_empty() || !last.contains(id) {
            continue;
        }
        let base = match ctrl {
            "" if mount.join("cgroup.controllers").exists() => mount.to_owned(),
            "" => mount.join("unified"),
            c => mount.join(c.strip_prefix("name=").unwrap_or(c)),
        };
        out.push(base.join(rel));
    }
    out.sort();
    out.dedup();
    out
}

/// The cgroups Kinglet made for this installation's pods, `/kinglet/<sandbox id>` (the
/// containers' cgroups, exited ones too, are below them), for each pod directory under
/// `run_root/pods`: under the cgroup v2 `mount`, or under each v1 hierarchy in it. Other
/// installations' pods (their own run roots) are not touched.
pub fn of_pods(run_root: &Path, mount: &Path) -> Vec<PathBuf> {
    let bases: Vec<PathBuf> = if mount.join("cgroup.controllers").exists() {
        vec![mount.to_owned()]
    } else {
        std::fs::read_dir(mount)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect()
    };
    let mut out = Vec::new();
    for pod in std::fs::read_dir(run_root.join("pods"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let id = pod.file_name();
        out.extend(
            bases
                .iter()
                .map(|b| b.join("kinglet").join(&id))
                .filter(|p| p.is_dir()),
        );
    }
    out.sort();
    out.dedup();
    out
}

/// SIGKILL every process in `dir` (and its child cgroups); returns how many.
pub fn kill_all(dir: &Path) -> usize {
    let mut n = 0;
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        for pid in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            if kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
                n += 1;
            }
        }
    }
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            n += kill_all(&e.path());
        }
    }
    n
}

/// Remove `dir` and its child cgroups once their processes are gone (a few tries); whether
/// it is gone.
pub async fn remove(dir: &Path) -> bool {
    for _ in 0..20 {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = std::fs::remove_dir(e.path());
            }
        }
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::warn!(cgroup = %dir.display(), "could not remove the cgroup");
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pod_cgroups_of_this_run_root_only() {
        let t = tempfile::tempdir().unwrap();
        let (run, v2, v1) = (
            t.path().join("run"),
            t.path().join("v2"),
            t.path().join("v1"),
        );
        for d in ["pods/p1", "pods/p2"] {
            std::fs::create_dir_all(run.join(d)).unwrap();
        }
        std::fs::create_dir_all(v2.join("kinglet/p1/c1")).unwrap();
        std::fs::create_dir_all(v2.join("kinglet/other")).unwrap();
        std::fs::write(v2.join("cgroup.controllers"), "cpu memory").unwrap();
        std::fs::create_dir_all(v1.join("memory/kinglet/p2")).unwrap();
        std::fs::create_dir_all(v1.join("pids/kinglet/p1")).unwrap();
        std::fs::create_dir_all(v1.join("pids/kinglet/other")).unwrap();
        assert_eq!(of_pods(&run, &v2), vec![v2.join("kinglet/p1")]);
        assert_eq!(
            of_pods(&run, &v1),
            vec![v1.join("memory/kinglet/p2"), v1.join("pids/kinglet/p1")]
        );
        assert!(of_pods(&t.path().join("none"), &v2).is_empty());
    }

    #[test]
    fn only_the_containers_own_cgroups() {
        let m = Path::new("/nonexistent/cg");
        let v1 = "12:pids:/kinglet/pod1/abc123\n11:memory:/kinglet/pod1/abc123\n\
                  4:cpu,cpuacct:/kinglet/pod1/abc123\n1:name=systemd:/system.slice/x.service\n0::/\n";
        assert_eq!(
            parse(v1, m, "abc123"),
            [
                m.join("cpu,cpuacct/kinglet/pod1/abc123"),
                m.join("memory/kinglet/pod1/abc123"),
                m.join("pids/kinglet/pod1/abc123"),
            ]
        );
        let v2 = "0::/kinglet.slice/kinglet-abc123.scope\n";
        assert_eq!(
            parse(v2, m, "abc123"),
            [m.join("unified/kinglet.slice/kinglet-abc123.scope")]
        );
        assert!(
            parse("0::/kinglet/pod1\n", m, "abc123").is_empty(),
            "a pod's cgroup is shared"
        );
        assert!(parse("0::/\n", m, "").is_empty());
    }
}
