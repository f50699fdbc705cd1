//! Pod volumes: ConfigMaps and Secrets as files, updated atomically while the pod runs, and
//! Secrets kept on tmpfs only.
//!
//! - [`atomic`]: the kubelet's AtomicWriter layout — the files of a volume live in a
//!   timestamped directory, `..data` is a symlink to it, and every user-visible name is a
//!   symlink through `..data`; an update writes a new directory and swaps `..data` with one
//!   `rename`, so a reader never sees a mix of old and new files.
//! - [`ownership`]: a pod's `fsGroup` applied to a volume (group, setgid dirs, group bits).
//! - [`tmpfs`]: the in-memory filesystem secret volumes are written to (never to disk).
//!
//! Volume roots are parameters: nothing here knows where the daemon keeps pods.

pub mod atomic;
pub mod ownership;
pub mod tmpfs;

use std::path::PathBuf;

/// What can go wrong preparing a volume.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("invalid file path {path:?} in volume: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{op} {path}")]
    Mount {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
}

impl VolumeError {
    fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| VolumeError::Io { op, path, source }
    }
}
