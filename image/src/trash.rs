//! Deferred deletion of removed layer trees.
//!
//! A removal makes its change durable (the metadata file, fsynced) and takes the unused layers
//! out of `layers/` by renaming them into `tmp/` while the store's writer lock is held; deleting
//! those trees (thousands of files for a real image) is what is left, and it runs here, on a
//! background thread, after the caller got its answer. A crash before it finishes leaves
//! `tmp/trash-*` directories, which [`crate::ImageStore::open`] removes with the rest of `tmp/`.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, PoisonError};

/// Trees being deleted in the background, counted so that [`Trash::wait_idle`] can wait for them.
#[derive(Default)]
pub(crate) struct Trash {
    pending: Mutex<usize>,
    idle: Condvar,
}

impl Trash {
    /// Delete `trees` on a background thread (at once, on this thread, if none can be started).
    pub(crate) fn delete_later(self: &Arc<Self>, trees: Vec<PathBuf>) {
        if trees.is_empty() {
            return;
        }
        *self.pending.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        let (me, for_thread) = (self.clone(), trees.clone());
        let started = std::thread::Builder::new()
            .name("image-trash".into())
            .spawn(move || {
                delete_now(for_thread);
                me.finish_one();
            });
        if let Err(err) = started {
            tracing::warn!(%err, "cannot start a thread for removed layers; deleting inline");
            delete_now(trees);
            self.finish_one();
        }
    }

    fn finish_one(&self) {
        let mut n = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.idle.notify_all();
        }
    }

    /// Block until every deletion started so far has finished.
    pub(crate) fn wait_idle(&self) {
        let mut n = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        while *n > 0 {
            n = self.idle.wait(n).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Delete `trees` now (a tree that cannot be deleted goes at the next start).
pub(crate) fn delete_now(trees: Vec<PathBuf>) {
    for t in trees {
        if let Err(err) = std::fs::remove_dir_all(&t) {
            tracing::warn!(path = %t.display(), %err, "cannot delete removed layer; it goes at the next start");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletes_in_the_background_and_waits() {
        let t = tempfile::tempdir().unwrap();
        let mut trees = Vec::new();
        for i in 0..3 {
            let d = t.path().join(format!("trash-{i}"));
            std::fs::create_dir_all(d.join("a/b")).unwrap();
            std::fs::write(d.join("a/b/f"), b"x").unwrap();
            trees.push(d);
        }
        let trash = Arc::new(Trash::default());
        trash.delete_later(trees.clone());
        trash.delete_later(Vec::new());
        trash.wait_idle();
        assert!(trees.iter().all(|d| !d.exists()));
        assert_eq!(*trash.pending.lock().unwrap(), 0);
    }
}
