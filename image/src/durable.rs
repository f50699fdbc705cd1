//! Making one unpacked layer tree durable without flushing the whole file system.
//!
//! A layer is renamed into `layers/` only once its files and directories are on disk (the
//! store's invariant: an unpacked layer is complete). `syncfs` did that by flushing every dirty
//! page of the file system — on a shared host, whatever other processes had written too, which
//! made a pull wait for their writes. [`sync_tree`] fsyncs exactly the layer's regular files and
//! directories instead, from a few threads at once so that the file system's journal commits
//! them together (concurrent fsyncs on ext4 and xfs share one journal commit) rather than one
//! commit per file. Symlinks, whiteouts and hard links are directory entries: the fsync of their
//! directory covers them; an inode reached through several names is synced once.

use std::collections::HashSet;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::sys::{self, Kind};

/// Threads fsyncing at once.
const SYNC_THREADS: usize = 8;

/// One thing to fsync: a directory or a regular file, by path (inside the store's private
/// `tmp/`, which nothing else writes; opened without following a symlink).
#[derive(Debug, PartialEq, Eq)]
enum Item {
    Dir(PathBuf),
    File(PathBuf),
}

/// fsync every regular file and directory under (and including) the directory `root`.
/// Symlinks are never followed; device nodes (whiteouts) are covered by their directory.
pub(crate) fn sync_tree(root: &Path) -> io::Result<()> {
    sync_all(collect(root)?)
}

/// The directories and regular files (each inode once) under `root`, `root` included.
fn collect(root: &Path) -> io::Result<Vec<Item>> {
    let mut items = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![root.to_owned()];
    while let Some(path) = stack.pop() {
        let dir = sys::open_dir(&path)?;
        for name in sys::list_dir(dir.as_fd())? {
            match sys::kind_at(dir.as_fd(), &name)? {
                Some(Kind::Dir) => stack.push(path.join(&name)),
                Some(Kind::Other) => {
                    let (regular, ino) = sys::regular_inode_at(dir.as_fd(), &name)?;
                    if regular && seen.insert(ino) {
                        items.push(Item::File(path.join(&name)));
                    }
                }
                Some(Kind::Symlink) | None => {}
            }
        }
        items.push(Item::Dir(path));
    }
    Ok(items)
}

/// fsync `items` from up to [`SYNC_THREADS`] threads; the first error is returned.
fn sync_all(items: Vec<Item>) -> io::Result<()> {
    let threads = SYNC_THREADS.min(items.len()).max(1);
    let queue = Mutex::new(items);
    let first_err: Mutex<Option<io::Error>> = Mutex::new(None);
    let next = || queue.lock().unwrap_or_else(|e| e.into_inner()).pop();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while let Some(item) = next() {
                    if let Err(e) = sync_one(&item) {
                        first_err
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    match first_err.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn sync_one(item: &Item) -> io::Result<()> {
    match item {
        Item::Dir(p) => std::fs::File::from(sys::open_dir(p)?).sync_all(),
        Item::File(p) => sys::open_file_nofollow(p)?.sync_all(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syncs_files_and_directories_without_following_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("layer");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/f"), b"data").unwrap();
        std::fs::hard_link(root.join("a/b/f"), root.join("a/g")).unwrap();
        // A symlink out of the tree, to a directory and to a file: neither is entered.
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("a/out")).unwrap();
        std::os::unix::fs::symlink("/dev/null", root.join("null")).unwrap();
        let mut items = collect(&root).unwrap();
        items.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        let (f, g) = (root.join("a/b/f"), root.join("a/g"));
        let file = items.iter().find(|i| matches!(i, Item::File(_))).unwrap();
        assert!(
            *file == Item::File(f) || *file == Item::File(g),
            "{items:?}"
        );
        let mut dirs: Vec<_> = items
            .iter()
            .filter_map(|i| match i {
                Item::Dir(p) => Some(p.clone()),
                Item::File(_) => None,
            })
            .collect();
        dirs.sort();
        assert_eq!(dirs, vec![root.clone(), root.join("a"), root.join("a/b")]);
        assert_eq!(
            items.len(),
            4,
            "one inode through two names is synced once: {items:?}"
        );
        sync_tree(&root).unwrap();
        // An empty tree is fine too.
        std::fs::create_dir(t.path().join("empty")).unwrap();
        sync_tree(&t.path().join("empty")).unwrap();
    }

    #[test]
    fn a_missing_root_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(
            sync_tree(&t.path().join("nope")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }
}
