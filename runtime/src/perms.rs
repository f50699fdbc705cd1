//! Modes of the daemon's own directories: only root may enter the places that hold pod data.
//!
//! Everything a pod owns on the host — Secret, projected, downwardAPI and ConfigMap volumes,
//! emptyDirs, container writable layers and bundles, pod state, the image store, the object
//! store — lives below `--root` or `--run-root`. Rather than choosing a mode for each of the
//! many directories created below them, the roots themselves are closed:
//! - `--root` is 0700;
//! - `--run-root` is 0700, or 0711 when the CRI socket lives directly in it (the default
//!   `/run/kinglet/kinglet.sock`): a group given access to the 0660 socket must be able to
//!   traverse to it. Its subdirectories are then 0700 each, created here before anything is
//!   put in them, and tightened if an older daemon left them open.
//! - Except for pods with their own user namespace: libcontainer opens the pod's namespace
//!   pins and mounts the container's root and volumes after joining it, as the pod's mapped
//!   root, which must be able to traverse to them. So the run root, `pods/` and
//!   `containers/` are 0711 (searchable, not listable; as containerd's state directories),
//!   and each pod or container directory in them is 0700, or 0500 owned by the mapped root of
//!   a pod with a user namespace ([`open_to_mapped_root`]): no one else can enter it.
//!
//! Other container processes never need these host paths: they see their root file system
//! and their volumes through mounts made by root (overlayfs checks the lower and upper
//! directories with the mounter's credentials), so a non-root uid in a container is not
//! affected. CRI log files keep their own 0640 mode. Existing installs are tightened at
//! start, with one log line.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::RuntimeError;

/// The subdirectories of the run root, each 0700 (see the module docs).
pub const RUN_ROOT_DIRS: &[&str] = &[
    "pods",
    "containers",
    "runtime",
    "exec",
    "network",
    "secrets",
    "volumes",
];

/// Subdirectories of the run root holding one directory per pod or container (0711).
pub const SEARCHABLE_DIRS: &[&str] = &["pods", "containers"];

/// The mode of the run root for a daemon serving `socket`: searchable (see the module docs).
pub fn run_root_mode(_run_root: &Path, _socket: &Path) -> u32 {
    0o711
}

/// Mode of each pod's and container's own directory.
const PRIVATE: u32 = 0o700;
/// Mode of a directory given to a pod's mapped root: it may search and list, not write.
const MAPPED_ROOT: u32 = 0o500;

/// Create `dir` closed (0700, root's), or tighten it.
pub fn private_dir(dir: &Path) -> Result<(), RuntimeError> {
    ensure_dir(dir, PRIVATE).map(drop)
}

/// Give `dir` (created if missing) to a pod's mapped root `uid`/`gid`: owned by it, 0500.
pub fn open_to_mapped_root(dir: &Path, uid: u32, gid: u32) -> Result<(), RuntimeError> {
    ensure_dir(dir, MAPPED_ROOT)?;
    std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(|source| RuntimeError::Io {
        path: dir.to_owned(),
        source,
    })
}

/// Close every root-owned directory in `dir` (pods or containers of an older daemon).
fn close_entries(dir: &Path, tightened: &mut Vec<PathBuf>) -> Result<(), RuntimeError> {
    use std::os::unix::fs::MetadataExt;
    let Ok(rd) = fs::read_dir(dir) else {
        return Ok(());
    };
    for e in rd.flatten() {
        let Ok(m) = e.metadata() else { continue };
        if m.is_dir() && m.uid() == 0 && ensure_dir(&e.path(), PRIVATE)? {
            tightened.push(e.path());
        }
    }
    Ok(())
}

/// Create (or tighten) `dir` with exactly `mode`; returns whether an existing mode changed.
fn ensure_dir(dir: &Path, mode: u32) -> Result<bool, RuntimeError> {
    let io = |source| RuntimeError::Io {
        path: dir.to_owned(),
        source,
    };
    match fs::metadata(dir) {
        Ok(m) if m.permissions().mode() & 0o7777 == mode => Ok(false),
        Ok(_) => {
            fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(io)?;
            Ok(true)
        }
        Err(_) => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(dir)
                .map_err(io)?;
            // The umask may have cleared bits of `mode`; say exactly what we want.
            fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(io)?;
            Ok(false)
        }
    }
}

/// Close the roots as the module docs say; logs once what an older install had left open.
pub fn secure_roots(root: &Path, run_root: &Path, socket: &Path) -> Result<(), RuntimeError> {
    let mut tightened: Vec<PathBuf> = Vec::new();
    let mut want = vec![
        (root.to_owned(), 0o700),
        (run_root.to_owned(), run_root_mode(run_root, socket)),
    ];
    want.extend(RUN_ROOT_DIRS.iter().map(|d| {
        let searchable = SEARCHABLE_DIRS.contains(d);
        (run_root.join(d), if searchable { 0o711 } else { 0o700 })
    }));
    // Whatever else an older daemon left directly in the run root.
    if let Ok(rd) = fs::read_dir(run_root) {
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) && !want.iter().any(|(w, _)| *w == p) {
                want.push((p, 0o700));
            }
        }
    }
    for (dir, mode) in &want {
        if ensure_dir(dir, *mode)? {
            tightened.push(dir.clone());
        }
    }
    for d in SEARCHABLE_DIRS {
        close_entries(&run_root.join(d), &mut tightened)?;
    }
    if !tightened.is_empty() {
        tracing::info!(
            dirs = ?tightened,
            "tightened directory modes so that only root can reach pod data"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn roots_are_created_closed_and_open_ones_tightened() {
        let t = tempfile::tempdir().unwrap();
        let (root, run) = (t.path().join("lib"), t.path().join("run"));
        fs::create_dir_all(run.join("pods/p1")).unwrap();
        fs::create_dir_all(run.join("leftover")).unwrap();
        for d in [run.clone(), run.join("pods"), run.join("leftover")] {
            fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        }
        fs::set_permissions(run.join("pods/p1"), fs::Permissions::from_mode(0o755)).unwrap();
        secure_roots(&root, &run, &run.join("kinglet.sock")).unwrap();
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&run), 0o711, "searchable: sockets and user namespaces");
        for d in RUN_ROOT_DIRS.iter().chain(&["leftover"]) {
            let want = if SEARCHABLE_DIRS.contains(d) {
                0o711
            } else {
                0o700
            };
            assert_eq!(mode(&run.join(d)), want, "{d}");
        }
        // Each pod's own directory in a searchable one is closed.
        assert_eq!(mode(&run.join("pods/p1")), 0o700);
    }

    #[test]
    fn pod_dirs_are_private_or_given_to_the_mapped_root() {
        use std::os::unix::fs::MetadataExt;
        let t = tempfile::tempdir().unwrap();
        private_dir(&t.path().join("a")).unwrap();
        assert_eq!(mode(&t.path().join("a")), 0o700);
        if nix::unistd::geteuid().is_root() {
            let b = t.path().join("b");
            open_to_mapped_root(&b, 100000, 100001).unwrap();
            let m = fs::metadata(&b).unwrap();
            assert_eq!(
                (m.mode() & 0o7777, m.uid(), m.gid()),
                (0o500, 100000, 100001)
            );
        }
    }
}
