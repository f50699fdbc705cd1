//! Removing a container's files without making RemoveContainer wait for the deletion.
//!
//! RemoveContainer unmounts everything under the container's directories (one read of the mount
//! table), then renames each directory into a `trash/` directory beside its root (same file
//! system: a rename) and answers; the trees are deleted on a blocking thread afterwards. A crash
//! before that finishes leaves entries in `trash/`, which daemon start removes with the other
//! leftovers (`recover.rs`).

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use kinglet_cri::CriError;

use super::{mounts, now_nanos};

/// The name of the trash directory under the daemon's root and run root.
pub(crate) const TRASH_DIR: &str = "trash";

/// Create the trash directory `dir` (mode 0700) if it is missing; a failure is logged (a
/// removal then deletes in place).
pub(crate) fn create_trash_dir(dir: &Path) {
    if let Err(err) = make_dir(dir) {
        tracing::warn!(path = %dir.display(), %err, "cannot create the trash directory");
    }
}

/// Closed like every directory the daemon keeps in its roots.
fn make_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Unmount everything under the first path of each `(dir, trash)` pair, then move each `dir`
/// that exists into its `trash` directory. Returns where they went. A directory that cannot be
/// moved is removed here instead.
pub(crate) fn unmount_and_trash(dirs: &[(PathBuf, PathBuf)]) -> Result<Vec<PathBuf>, CriError> {
    let paths: Vec<&Path> = dirs.iter().map(|(d, _)| d.as_path()).collect();
    mounts::unmount_under(&paths)?;
    let mut moved = Vec::with_capacity(dirs.len());
    for (dir, trash) in dirs {
        let Some(name) = dir.file_name() else {
            continue;
        };
        let to = trash.join(format!("{}-{}", name.to_string_lossy(), now_nanos()));
        let renamed = make_dir(trash).and_then(|()| std::fs::rename(dir, &to));
        match renamed {
            Ok(()) => moved.push(to),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !dir.exists() => {}
            Err(err) => {
                tracing::debug!(path = %dir.display(), %err, "cannot move into the trash; removing in place");
                mounts::remove_tree(dir)?;
            }
        }
    }
    Ok(moved)
}

/// Delete `trees` on a blocking thread; a failure is logged (daemon start removes what is left).
pub(crate) fn delete_in_background(trees: Vec<PathBuf>) {
    if trees.is_empty() {
        return;
    }
    tokio::task::spawn_blocking(move || {
        let paths: Vec<&Path> = trees.iter().map(PathBuf::as_path).collect();
        if let Err(e) = mounts::remove_trees(&paths) {
            tracing::warn!(err = %kinglet_cri::chain(&e), "removed container files not deleted; they go at the next start");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_move_into_the_trash_and_missing_ones_are_skipped() {
        let t = tempfile::tempdir().unwrap();
        let (run, root) = (t.path().join("run"), t.path().join("root"));
        let a = run.join("containers/abc");
        let b = root.join("containers/abc");
        std::fs::create_dir_all(a.join("bundle")).unwrap();
        std::fs::write(a.join("bundle/config.json"), b"{}").unwrap();
        std::fs::create_dir_all(b.join("upper")).unwrap();
        let missing = run.join("runtime/abc");
        let moved = unmount_and_trash(&[
            (a.clone(), run.join(TRASH_DIR)),
            (b.clone(), root.join(TRASH_DIR)),
            (missing, run.join(TRASH_DIR)),
        ])
        .unwrap();
        assert!(!a.exists() && !b.exists());
        assert_eq!(moved.len(), 2);
        assert!(moved[0].starts_with(run.join(TRASH_DIR)));
        assert!(moved[0].join("bundle/config.json").is_file());
        assert!(moved[1].starts_with(root.join(TRASH_DIR)));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(run.join(TRASH_DIR))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o700);
        let paths: Vec<&Path> = moved.iter().map(PathBuf::as_path).collect();
        mounts::remove_trees(&paths).unwrap();
        assert!(moved.iter().all(|m| !m.exists()));
    }
}
