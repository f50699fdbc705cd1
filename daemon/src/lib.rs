//! Kinglet: a single-node container runtime that serves the Kubernetes CRI.
//!
//! - [`runtime`]: the core (pod sandboxes, containers, images, state, recovery);
//! - [`backend`]: the core as a [`kinglet_cri::CriBackend`];
//! - [`pull`]: pulling images from registries, with credentials and registry settings;
//! - [`check`]: `kinglet check`, the host self-check;
//! - [`reset`]: `kinglet reset`, removing every trace of an installation;
//! - [`metrics`]: the Prometheus endpoint (off by default);
//! - [`server`]: the gRPC server on the unix socket;
//! - [`notify`]: systemd readiness, status and watchdog notifications;
//! - [`cli`]: the `kinglet` command line (daemon, client verbs, and the hidden helper
//!   subcommands `shim` and `pod-init` that the daemon re-executes itself as).
//!
//! See ARCHITECTURE.md for the process model.

pub mod backend;
pub mod check;
pub mod cli;
pub mod client;
pub mod config;
pub mod kubectl;
pub mod metrics;
pub mod notify;
pub mod podruntime;
pub mod pull;
pub mod reset;
pub mod runtime;
pub mod server;
pub mod stream_cli;
mod sys;
pub mod trust;
pub mod workloads_cli;

use std::path::PathBuf;

/// Errors of starting and running the daemon (CRI calls use [`kinglet_cri::CriError`]).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
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
    #[error("cannot serve on {path}")]
    Serve {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("another daemon is serving {path}")]
    SocketInUse { path: PathBuf },
    #[error("startup: {0}")]
    Startup(String),
}
