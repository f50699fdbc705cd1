//! The per-container monitor ("shim").
//!
//! The daemon never calls libcontainer itself: it is multi-threaded, and libcontainer clones the
//! calling process and changes process-wide state (see ARCHITECTURE.md). Instead the daemon
//! re-executes its own binary as `kinglet shim run ...` once per container. That process:
//!
//! 1. starts single-threaded, detaches (new session, double fork) so that it outlives the daemon;
//! 2. creates the container through libcontainer (the container's init becomes *its* child);
//! 3. reports `ok <init pid> <shim pid>` (or `error <message>`) on the pipe the daemon gave it as
//!    stdout, then serves a tiny line protocol on a unix socket in its state directory (`start`,
//!    `reopen-log`);
//! 4. pumps the container's stdout/stderr pipes into the CRI log file;
//! 5. when the init exits, records the exit status (and whether the cgroup saw an OOM kill) in
//!    `exit.json`, removes the container's runtime state and cgroup, and exits.
//!
//! `kinglet shim exec ...` is the short-lived sibling that runs one ExecSync command inside an
//! existing container with libcontainer's tenant builder.
//!
//! Files in the state directory are the contract with the daemon: see [`protocol`].

mod attach;
pub mod cli;
pub mod exec;
mod executor;
pub mod log;
pub mod log_rotate;
pub mod protocol;
pub mod run;
mod sys;
mod userns_exec;

use std::os::fd::OwnedFd;
use std::path::PathBuf;

/// Everything that can go wrong inside a shim process.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("shim must start single-threaded, but this process has {threads} threads")]
    NotSingleThreaded { threads: usize },
    #[error("{op} failed")]
    Sys {
        op: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("I/O on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("libcontainer could not {op} container {id}")]
    Container {
        op: &'static str,
        id: String,
        #[source]
        source: Box<libcontainer::error::LibcontainerError>,
    },
    #[error("invalid record {path}")]
    Record {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("attach frame of {len} bytes refused: the most is {max}")]
    FrameTooLarge { len: usize, max: usize },
}

impl ShimError {
    fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ShimError::Io {
            path: path.into(),
            source,
        }
    }
    fn sys(op: &'static str, source: nix::Error) -> Self {
        ShimError::Sys { op, source }
    }
}

pub use kinglet_util::chain as error_chain;

/// A pidfd for `pid` (readable once the process has exited); for the daemon's exit watchers.
pub fn pidfd_open(pid: i32) -> Result<OwnedFd, ShimError> {
    sys::pidfd_open(nix::unistd::Pid::from_raw(pid))
}

/// Start time of `pid` in clock ticks since boot, if the process exists.
pub fn process_start_ticks(pid: i32) -> Option<u64> {
    sys::process_start_ticks(pid)
}
