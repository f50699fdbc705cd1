//! The runtime core's start-up errors (CRI calls themselves fail with
//! [`kinglet_cri::CriError`]). The daemon wraps these transparently, so their text is what
//! the user sees.

use std::path::PathBuf;

/// Why the runtime core could not start (or set up a pod's cgroup).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config {path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("image store")]
    Images {
        #[source]
        source: kinglet_image::ImageError,
    },
    #[error("startup: {0}")]
    Startup(String),
}
