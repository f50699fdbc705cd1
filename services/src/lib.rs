//! Kubernetes Services on one node, as pure decisions plus one `nft` call:
//!
//! - [`alloc`]: ClusterIP allocation from the service CIDR (`.1` reserved, the network and
//!   broadcast addresses never handed out, a user-set address honoured or refused if taken).
//!   The address lives in the stored Service itself, so it survives restarts.
//! - [`endpoints`]: the EndpointSlices (discovery.k8s.io/v1) of a Service from the Pods its
//!   selector matches and their readiness, as the endpointslice controller computes them.
//! - [`proxy`]: kube-proxy's nftables mode in a table of Kinglet's own: ClusterIP and NodePort
//!   DNAT with a random choice over ready endpoints, reject when there is none.
//!
//! The mini-kubelet (`kinglet-kubelet`) calls these; this crate knows nothing of the daemon.

pub mod alloc;
pub mod columns;
pub mod dns;
pub mod endpoints;
pub mod proxy;

/// What went wrong with a Service.
#[derive(Debug, thiserror::Error)]
pub enum ServicesError {
    /// A field of the Service is wrong; `object` and `field` name it.
    #[error("{object}: field {field}: {reason}")]
    Invalid {
        object: String,
        field: &'static str,
        reason: String,
    },
    /// Applying the nftables rules failed.
    #[error("nftables table {table}: {reason}")]
    Nft { table: String, reason: String },
}
