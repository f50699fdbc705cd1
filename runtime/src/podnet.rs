//! The pod network the daemon uses: the built-in one (`kinglet_netns::Network`) or, when a CNI
//! configuration list is present in the configured directory, CNI plugins
//! (`kinglet_netns::Cni`). One small enum so that sandbox code has a single path for both.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::Path;

use kinglet_netns::{Cni, NetnsError, Network, PortMapping};

/// The daemon's pod network backend.
#[derive(Debug)]
pub enum PodNet {
    Builtin(Network),
    /// CNI plugins, and the name of Kinglet's nftables table, which in this mode holds only
    /// the loopback guard (`kinglet_netns::nft::guard_table_script`): the `portmap` plugin turns
    /// `route_localnet` on, which without it lets pods reach the host's 127.0.0.1 services.
    Cni(Cni, String),
}

impl PodNet {
    /// "builtin" or "cni".
    pub fn mode(&self) -> &'static str {
        match self {
            PodNet::Builtin(_) => "builtin",
            PodNet::Cni(..) => "cni",
        }
    }

    /// Prepare the network and undo what pods outside `live` left (blocking).
    pub fn init(&self, live: &HashSet<String>) -> Result<(), NetnsError> {
        match self {
            PodNet::Builtin(n) => n.init(live),
            PodNet::Cni(c, table) => {
                let nft = std::path::Path::new("nft");
                kinglet_netns::nft::apply(
                    nft,
                    table,
                    &kinglet_netns::nft::guard_table_script(table),
                )?;
                for pod in c.cached_pods() {
                    if !live.contains(&pod) {
                        tracing::info!(%pod, "CNI DEL for a pod that is gone");
                        c.del(&pod)?;
                    }
                }
                Ok(())
            }
        }
    }

    /// Whether pods can be given a network now, with the reason when not (blocking).
    pub fn ready(&self) -> Result<String, String> {
        match self {
            PodNet::Builtin(n) => n.ready().map(|()| {
                let c = n.config();
                format!("bridge {} serves pod network {}", c.bridge, c.cidr)
            }),
            PodNet::Cni(c, _) => c
                .ready()
                .map(|()| format!("CNI network {} from {}", c.name(), c.path().display())),
        }
    }

    /// Attach a pod; returns its address (blocking).
    pub fn setup(
        &self,
        pod: &str,
        netns: &Path,
        ports: &[PortMapping],
    ) -> Result<Ipv4Addr, NetnsError> {
        match self {
            PodNet::Builtin(n) => n.setup_pod(pod, netns, ports).map(|p| p.ip),
            PodNet::Cni(c, _) => c.add(pod, netns, ports),
        }
    }

    /// The network's view of a pod, for verbose status: `{"mode", "ok", "message"}` (blocking).
    /// In CNI mode this runs CHECK; the built-in network reports its state file.
    pub fn check(&self, pod: &str) -> serde_json::Value {
        let (ok, message) = match self {
            PodNet::Builtin(n) => match n.pod(pod) {
                Some(p) => (
                    true,
                    format!("{} on {} via {}", p.ip, p.host_veth, p.gateway),
                ),
                None => (false, "no network state for the pod".to_owned()),
            },
            PodNet::Cni(c, _) => match c.check(pod) {
                Ok(()) => (true, format!("CNI CHECK of {} passed", c.name())),
                Err(e) => (false, kinglet_cri::chain(&e)),
            },
        };
        serde_json::json!({"mode": self.mode(), "ok": ok, "message": message})
    }

    /// Detach a pod; idempotent (blocking).
    pub fn teardown(&self, pod: &str) -> Result<(), NetnsError> {
        match self {
            PodNet::Builtin(n) => n.teardown_pod(pod),
            PodNet::Cni(c, _) => c.del(pod),
        }
    }
}
