//! Cluster DNS, as CoreDNS's `kubernetes` plugin answers it, inside the daemon:
//!
//! - [`zone`]: the records of the cluster domain, built in memory from the Services and
//!   EndpointSlices the services loop already holds (no store reads per query), and the pure
//!   answer to one query: a local answer, or "forward it".
//! - [`server`]: the UDP and TCP listeners (on the pod bridge's address, port 53) and the
//!   plain forwarding client for every name outside the cluster domain.
//! - [`resolvconf`]: the host's resolv.conf (systemd-resolved aware), which gives the
//!   upstream resolvers and the host's search domains.
//!
//! The wire format is hickory-proto's.

pub mod resolvconf;
pub mod server;
pub mod zone;

pub use server::DnsServer;
pub use zone::Zone;

/// The TTL of every cluster record (CoreDNS's `kubernetes` plugin default).
pub const TTL: u32 = 5;

/// The cluster domain when none is configured.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";
