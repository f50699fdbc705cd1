//! Kinglet: a single-node container runtime that serves the Kubernetes CRI.
//!
//! - the CRI core (pod sandboxes, containers, images, state, recovery) is `kinglet-runtime`
//!   (`runtime/`);
//! - [`backend`]: the core as a [`kinglet_cri::CriBackend`];
//! - registry pulls live in `kinglet-pull` (`pull/`);
//! - [`check`]: `kinglet check`, the host self-check;
//! - [`reset`]: `kinglet reset`, removing every trace of an installation;
//! - [`metrics`]: the Prometheus endpoint (off by default);
//! - [`server`]: the gRPC server on the unix socket; [`watch_api`]: its `Objects/Watch`;
//! - [`activation`]: systemd socket activation of the CRI socket;
//! - [`notify`]: systemd readiness, status and watchdog notifications; [`logging`]: text or
//!   journald with fields;
//! - [`kubectl`], [`describe_cli`], [`logs_cli`], [`output`], [`podref`], [`ops_cli`], [`fields`]:
//!   client verbs;
//! - [`cli`]: the `kinglet` command line (daemon, client verbs, and the hidden helper
//!   subcommands `shim` and `pod-init` that the daemon re-executes itself as).
//!
//! See ARCHITECTURE.md for the process model.

pub mod activation;
pub mod apps_cli;
pub mod backend;
pub mod check;
pub mod cli;
pub mod client;
pub mod config;
pub mod create_cli;
pub mod delete_cli;
pub mod describe_cli;
mod describe_pod;
pub mod edit_verbs;
pub mod expose_cli;
pub mod fields;
pub mod get_named;
pub mod heap;
pub mod ingress_cli;
pub mod kubectl;
pub mod label_cli;
pub mod logging;
pub mod logs_cli;
pub mod metrics;
pub mod notify;
pub mod ops_cli;
pub mod output;
pub mod pod_for;
pub mod podref;
pub mod podruntime;
pub mod podview;
pub mod reset;
pub mod run_cli;
pub mod secret_cli;
pub mod server;
mod socket_group;
pub mod stream_cli;
pub mod sts_cli;
pub mod svc_forward;
pub mod trim;
pub mod trust;
pub mod wait_cli;
pub mod watch_api;
pub mod watch_cli;
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
    #[error(transparent)]
    Runtime(#[from] kinglet_runtime::RuntimeError),
}
