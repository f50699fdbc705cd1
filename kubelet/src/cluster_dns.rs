//! The daemon's cluster DNS server, kept by the services loop: bound on the first pass (and
//! retried on later ones while its address is not there yet), its zone rebuilt from the
//! Services and EndpointSlices of every pass, so a readiness change reaches DNS in the same
//! pass that changes the proxy rules. Dropped with the Supervisor, which closes its sockets.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kinglet_services::dns::{resolvconf, DnsServer, Zone};

use crate::dns::ClusterDns;
use crate::Supervisor;

/// The server, once bound.
#[derive(Default)]
pub(crate) struct DnsState {
    server: tokio::sync::Mutex<Option<DnsServer>>,
    /// A failed bind is logged once, not at every pass.
    warned: std::sync::atomic::AtomicBool,
}

impl DnsState {
    /// Whether the server is bound (else the services loop retries).
    pub(crate) async fn bound(&self) -> bool {
        self.server.lock().await.is_some()
    }
}

async fn bind(cfg: &ClusterDns, zone: Zone) -> std::io::Result<DnsServer> {
    let upstreams = if cfg.upstreams.is_empty() {
        tokio::task::spawn_blocking(|| resolvconf::upstreams(&resolvconf::host()))
            .await
            .unwrap_or_default()
    } else {
        cfg.upstreams.clone()
    };
    DnsServer::bind(cfg.listen, zone, upstreams).await
}

impl Supervisor {
    /// Publish the zone of `services` and `slices` (binding the server first if need be).
    pub(crate) async fn sync_dns(&self, services: &[Service], slices: &[EndpointSlice]) {
        let Some(cfg) = self.cfg.dns.as_ref() else {
            return;
        };
        let zone = Zone::build(&cfg.domain, services, slices);
        let state = &self.services.dns;
        let mut server = state.server.lock().await;
        match server.as_ref() {
            Some(s) => {
                if s.set_zone(zone) {
                    tracing::debug!(services = services.len(), "cluster DNS records updated");
                }
            }
            None => match bind(cfg, zone).await {
                Ok(s) => *server = Some(s),
                Err(e) => {
                    if !state
                        .warned
                        .swap(true, std::sync::atomic::Ordering::Relaxed)
                    {
                        tracing::warn!(addr = %cfg.listen, err = %e, "cluster DNS cannot listen yet; retrying");
                    }
                }
            },
        }
    }
}
