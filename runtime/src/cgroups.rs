//! The pod-level cgroup directories Kinglet creates (`/kinglet/<pod>`): the pod's pids limit,
//! and their removal (containers' own cgroups are made and removed by libcontainer, below the
//! pod's). The cgroup mount root is a parameter.

use std::path::{Path, PathBuf};

use crate::RuntimeError;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Create the cgroup `rel` (e.g. `/kinglet/<pod>`) in the pids hierarchy under `cgroup_root`
/// and set its `pids.max` to `limit` (the kubelet's podPidsLimit); returns the file written.
/// Containers' cgroups are created below it, so the limit counts every process of the pod.
///
/// cgroup v1 (or hybrid): the `pids` controller's own hierarchy. cgroup v2: the unified
/// hierarchy, enabling `+pids` in `cgroup.subtree_control` of each ancestor on the way down.
pub fn set_pids_limit(cgroup_root: &Path, rel: &str, limit: i64) -> Result<PathBuf, RuntimeError> {
    let rel = rel.trim_start_matches('/');
    let v1 = cgroup_root.join("pids");
    let dir = if v1.join("cgroup.procs").exists() {
        let dir = v1.join(rel);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        dir
    } else if cgroup_root.join("cgroup.controllers").exists() {
        let mut dir = cgroup_root.to_owned();
        for part in Path::new(rel).components() {
            let control = dir.join("cgroup.subtree_control");
            let enabled = std::fs::read_to_string(&control).map_err(io_err(&control))?;
            if !enabled.split_whitespace().any(|c| c == "pids") {
                std::fs::write(&control, "+pids").map_err(io_err(&control))?;
            }
            dir.push(part);
            match std::fs::create_dir(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                    return Err(io_err(&dir)(e))
                }
                _ => {}
            }
        }
        dir
    } else {
        return Err(io_err(&v1)(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no pids cgroup controller (neither a v1 pids hierarchy nor cgroup v2)",
        )));
    };
    let file = dir.join("pids.max");
    std::fs::write(&file, limit.to_string()).map_err(io_err(&file))?;
    Ok(file)
}

/// The cgroup v1 hierarchies mounted under `cgroup_root`: its directories (`cpu,cpuacct`,
/// `memory`, `pids`, `systemd`...) and the symlinks to them (`cpu` -> `cpu,cpuacct`).
pub fn v1_hierarchies(cgroup_root: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(cgroup_root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_type()
                .map(|t| t.is_dir() || t.is_symlink())
                .unwrap_or(false)
        })
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    out.sort();
    out
}

/// Remove `rel` (e.g. `/kinglet/<pod>`) from every hierarchy under `cgroup_root`: the unified
/// hierarchy, or each v1 controller. Missing directories are fine; a busy one is logged.
pub fn remove_cgroup(cgroup_root: &Path, rel: &str) {
    let rel = rel.trim_start_matches('/');
    if rel.is_empty() {
        return;
    }
    let mut dirs = vec![cgroup_root.join(rel)];
    if let Ok(rd) = std::fs::read_dir(cgroup_root) {
        for e in rd.flatten() {
            dirs.push(e.path().join(rel));
        }
    }
    for d in dirs {
        // Children first (a container cgroup left over by a killed shim).
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
        }
        match std::fs::remove_dir(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {}
            Err(e) => tracing::warn!(path = %d.display(), err = %e, "cgroup not removed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_enables_pids_down_the_tree_and_v1_uses_its_hierarchy() {
        // A fake unified hierarchy: plain files stand in for the kernel's.
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::write(root.join("cgroup.controllers"), "cpu memory pids").unwrap();
        std::fs::write(root.join("cgroup.subtree_control"), "cpu").unwrap();
        std::fs::create_dir(root.join("kinglet")).unwrap();
        std::fs::write(root.join("kinglet/cgroup.subtree_control"), "pids").unwrap();
        let f = set_pids_limit(root, "/kinglet/p1", 42).unwrap();
        assert_eq!(f, root.join("kinglet/p1/pids.max"));
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "42");
        // (Writing "+pids" to the real file adds it; the fake file just holds the request.)
        assert_eq!(
            std::fs::read_to_string(root.join("cgroup.subtree_control")).unwrap(),
            "+pids"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("kinglet/cgroup.subtree_control")).unwrap(),
            "pids",
            "left alone where pids is already enabled"
        );

        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir(root.join("pids")).unwrap();
        std::fs::write(root.join("pids/cgroup.procs"), "").unwrap();
        let f = set_pids_limit(root, "/kinglet/p2", 7).unwrap();
        assert_eq!(f, root.join("pids/kinglet/p2/pids.max"));
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "7");

        let d = tempfile::tempdir().unwrap();
        assert!(set_pids_limit(d.path(), "/kinglet/p3", 7).is_err());
    }
}
