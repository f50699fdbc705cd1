//! Removal of the pod-level cgroup directories Kinglet creates (containers' own cgroups are
//! removed by their shims through libcontainer). The cgroup mount root is a parameter.

use std::path::Path;

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
