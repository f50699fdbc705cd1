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
//!
//! Container processes never need these host paths: they see their root file system and their
//! volumes through mounts made by root (overlayfs checks the lower and upper directories with
//! the mounter's credentials), so a non-root uid in a container is not affected. CRI log files
//! keep their own 0640 mode. Existing installs are tightened at start, with one log line.

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

/// The mode of the run root for a daemon serving `socket`.
pub fn run_root_mode(run_root: &Path, socket: &Path) -> u32 {
    if socket.parent() == Some(run_root) {
        0o711
    } else {
        0o700
    }
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
    want.extend(RUN_ROOT_DIRS.iter().map(|d| (run_root.join(d), 0o700)));
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
        secure_roots(&root, &run, &run.join("kinglet.sock")).unwrap();
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&run), 0o711, "the socket lives in the run root");
        for d in RUN_ROOT_DIRS.iter().chain(&["leftover"]) {
            assert_eq!(mode(&run.join(d)), 0o700, "{d}");
        }
        // Below a closed directory modes are left alone.
        assert_eq!(mode(&run.join("pods/p1")) & 0o700, 0o700);
    }

    #[test]
    fn run_root_is_0700_when_the_socket_is_elsewhere() {
        let t = tempfile::tempdir().unwrap();
        let run = t.path().join("run");
        assert_eq!(run_root_mode(&run, &t.path().join("s/kinglet.sock")), 0o700);
        secure_roots(&t.path().join("lib"), &run, &t.path().join("k.sock")).unwrap();
        assert_eq!(mode(&run), 0o700);
    }
}
