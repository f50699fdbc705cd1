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

/// Remove `dir` and its child cgroups once their processes are gone (a few tries).
pub async fn remove(dir: &Path) {
    for _ in 0..20 {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = std::fs::remove_dir(e.path());
            }
        }
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::warn!(cgroup = %dir.display(), "could not remove the container's cgroup");
}

#[cfg(test)]
mod tests {
    use super::*;

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
