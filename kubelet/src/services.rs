//! Services on this node: ClusterIP/NodePort allocation when a Service is applied, and the
//! loop that keeps the EndpointSlices (in memory, recomputed from the Pods) and the
//! kube-proxy nftables table (`kinglet-services`) current. The table is rebuilt in one
//! transaction at the first pass after a daemon start (once the selected pods are ready
//! again, or after `WARM_UP`), then changed in place, one transaction per pass touching only
//! the Service ports that changed; a
//! daemon killed meanwhile leaves the last table in place, so Service traffic keeps flowing.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kinglet_manifest::{Object, ObjectKey};
use kinglet_services::alloc::{self, ServiceCidr};
use kinglet_services::{endpoints, proxy};

use crate::{KubeletError, Supervisor};

/// Wakes the services loop: a container's readiness changed, or objects were applied or
/// deleted. Process-wide (one daemon, one Supervisor); an extra wake-up costs one pass.
pub(crate) static READINESS_CHANGED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// The longest the first rebuild after a start waits for selected pods to be ready again.
const WARM_UP: Duration = Duration::from_secs(5);

/// Where Service addresses come from and where their rules go.
#[derive(Debug, Clone)]
pub struct ServicesConfig {
    /// The service CIDR (`service-cidr`).
    pub cidr: ServiceCidr,
    /// The `nft` binary.
    pub nft: PathBuf,
    /// The proxy's own nftables table (family `ip`) and what it knows of the pod network.
    pub table: proxy::Table,
}

/// The loop's state: the current slices and the last table applied.
#[derive(Default)]
pub(crate) struct ServicesState {
    pub slices: std::sync::Mutex<Vec<EndpointSlice>>,
    /// When the loop started (the daemon's start).
    started: std::sync::OnceLock<Instant>,
    /// The Service ports the table holds (None until the first pass applied it).
    last_applied: std::sync::Mutex<Option<Vec<proxy::ProxyPort>>>,
    /// The cluster DNS server.
    pub dns: crate::cluster_dns::DnsState,
}

fn invalid(e: kinglet_services::ServicesError) -> KubeletError {
    KubeletError::invalid("manifest", e.to_string())
}

/// Fill in (or check) a Service's clusterIP and nodePorts before it is stored: the values of
/// the stored version are kept when the new one leaves them out, a changed clusterIP is
/// refused (the field is immutable), new ones are allocated.
pub(crate) fn admit(
    cfg: Option<&ServicesConfig>,
    others: &std::collections::BTreeMap<ObjectKey, Object>,
    obj: &mut Object,
    prev: Option<&Object>,
) -> Result<(), KubeletError> {
    let (Some(cfg), Object::Service(svc)) = (cfg, obj) else {
        return Ok(());
    };
    let key = format!(
        "Service {}/{}",
        svc.metadata.namespace.as_deref().unwrap_or("default"),
        svc.metadata.name.as_deref().unwrap_or("")
    );
    let prev = match prev {
        Some(Object::Service(p)) => p.spec.clone().unwrap_or_default(),
        _ => Default::default(),
    };
    let mut used_ips = BTreeSet::new();
    let mut used_ports = BTreeSet::new();
    for (k, o) in others {
        let Object::Service(s) = o else { continue };
        if k.namespace == svc.metadata.namespace.as_deref().unwrap_or("default")
            && Some(k.name.as_str()) == svc.metadata.name.as_deref()
        {
            continue;
        }
        let spec = s.spec.clone().unwrap_or_default();
        if let Some(ip) = spec
            .cluster_ip
            .as_deref()
            .and_then(|i| i.parse::<Ipv4Addr>().ok())
        {
            used_ips.insert(ip);
        }
        used_ports.extend(spec.ports.iter().flatten().filter_map(|p| p.node_port));
    }
    let spec = svc.spec.get_or_insert_with(Default::default);
    if spec.type_.as_deref() == Some("ExternalName") {
        return Ok(());
    }
    let requested = spec.cluster_ip.clone().unwrap_or_default();
    let prev_ip = prev.cluster_ip.clone().unwrap_or_default();
    let ip = if !prev_ip.is_empty() && (requested.is_empty() || requested == prev_ip) {
        prev_ip
    } else if !prev_ip.is_empty() {
        return Err(KubeletError::invalid("manifest", format!("{key}: field spec.clusterIP: is immutable ({prev_ip}); delete the Service to change it")));
    } else {
        match alloc::allocate(&key, &cfg.cidr, &used_ips, &requested).map_err(invalid)? {
            Some(ip) => ip.to_string(),
            None => "None".to_owned(),
        }
    };
    spec.cluster_ip = Some(ip.clone());
    spec.cluster_ips = Some(vec![ip]);
    if spec.type_.as_deref() == Some("NodePort") {
        for p in spec.ports.iter_mut().flatten() {
            let kept = prev
                .ports
                .iter()
                .flatten()
                .find(|q| q.port == p.port && q.protocol == p.protocol)
                .and_then(|q| q.node_port);
            let requested = p.node_port.filter(|n| *n != 0).or(kept);
            let np = alloc::allocate_node_port(&key, &used_ports, requested).map_err(invalid)?;
            used_ports.insert(np);
            p.node_port = Some(np);
        }
    }
    Ok(())
}

/// Every Service's slices (computed from the pods, or the hand-applied ones of a
/// selector-less Service) plus the hand-applied slices of no Service, and the proxy's ports.
fn slices_and_ports(
    services: &[Service],
    pods: &[Pod],
    manual: &[EndpointSlice],
) -> (Vec<EndpointSlice>, Vec<proxy::ProxyPort>) {
    let mut all_slices = Vec::new();
    let mut ports = Vec::new();
    for svc in services {
        let mut slices = endpoints::slices(svc, pods);
        slices.extend(endpoints::manual(svc, manual));
        ports.extend(proxy::proxy_ports(svc, &slices));
        all_slices.extend(slices);
    }
    // Hand-applied slices of no (selector-less) Service are listed as they are.
    for m in manual {
        let owner = m
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(endpoints::LABEL_SERVICE_NAME));
        let taken = services.iter().any(|s| {
            s.metadata.namespace == m.metadata.namespace
                && s.metadata.name.as_ref() == owner
                && !endpoints::manual(s, std::slice::from_ref(m)).is_empty()
        });
        if !taken {
            all_slices.push(m.clone());
        }
    }
    (all_slices, ports)
}

impl Supervisor {
    /// Recompute the slices and the proxy table at once when a container's readiness changes,
    /// objects are applied or deleted or the dispatcher publishes them, and on the timer
    /// `wakeups` chooses (none while there is no Service or Ingress and nothing to retry).
    pub(crate) async fn services_loop(self: Arc<Self>) {
        let _ = self.services.started.set(Instant::now());
        let mut published = self.world.subscribe();
        loop {
            let services = self.sync_services().await;
            let ingresses = self.sync_ingress().await;
            let pending = self.services_pending().await;
            let wait = crate::wakeups::services_wait(crate::wakeups::ServicesSeen {
                services,
                ingresses,
                pending,
            });
            tokio::select! {
                _ = READINESS_CHANGED.notified() => {}
                r = published.changed() => if r.is_err() { return },
                _ = crate::wakeups::sleep_for(wait) => {}
            }
        }
    }

    /// Something the services loop must retry: the first proxy table after a start (applied
    /// once every endpoint is ready or `WARM_UP` has passed), a DNS listener not bound yet.
    async fn services_pending(&self) -> bool {
        let first_table = self.cfg.services.is_some()
            && self
                .services
                .last_applied
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_none();
        first_table || (self.cfg.dns.is_some() && !self.services.dns.bound().await)
    }

    /// One pass; true when a Service, EndpointSlice or Endpoints is stored.
    async fn sync_services(&self) -> bool {
        let (services, pods, manual) = self.services_world().await;
        let mut with_status = Vec::with_capacity(pods.len());
        if !services.is_empty() {
            for mut p in pods {
                p.status = Some(self.pod_status(&p).await);
                with_status.push(p);
            }
        }
        let (all_slices, ports) = slices_and_ports(&services, &with_status, &manual);
        // After a restart the probers have not reported yet, so pods with readiness probes look
        // unready for a moment: the table the previous daemon left keeps serving until every
        // selected pod is ready again, or WARM_UP has passed, before the first rebuild.
        // No endpoint at all is not "all ready": right after a start the pods' status may not
        // be known yet, and a table rebuilt then would reject every Service's traffic.
        let (mut endpoints, mut ready) = (0usize, 0usize);
        for e in all_slices.iter().flat_map(|s| s.endpoints.iter()) {
            endpoints += 1;
            ready += usize::from(e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false));
        }
        let all_ready = endpoints > 0 && ready == endpoints;
        self.sync_dns(&services, &all_slices).await;
        *self
            .services
            .slices
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = all_slices;
        let any = !services.is_empty() || !manual.is_empty();
        self.apply_service_rules(services.len(), ports, all_ready)
            .await;
        any
    }

    /// The Services, Pods (none when there is no Service) and hand-applied EndpointSlices (v1
    /// Endpoints mirrored) in the store.
    async fn services_world(&self) -> (Vec<Service>, Vec<Pod>, Vec<EndpointSlice>) {
        let store = self.store.lock().await;
        let (mut s, mut p, mut m) = (Vec::new(), Vec::new(), Vec::new());
        // Pods are copied only when some Service may select them.
        let any_service = store.map.values().any(|o| matches!(o, Object::Service(_)));
        for o in store.map.values() {
            match o {
                Object::Service(svc) => s.push((**svc).clone()),
                Object::Pod(pod) if any_service => p.push((**pod).clone()),
                Object::EndpointSlice(e) => m.push((**e).clone()),
                Object::Endpoints(e) => m.extend(endpoints::mirror(e)),
                _ => {}
            }
        }
        (s, p, m)
    }

    /// Apply the table for `ports`: whole at the first pass (a start; once every endpoint is
    /// ready or `WARM_UP` has passed), else only the Service ports that changed, the whole
    /// table when that fails.
    async fn apply_service_rules(
        &self,
        services: usize,
        ports: Vec<proxy::ProxyPort>,
        all_ready: bool,
    ) {
        let Some(cfg) = self.cfg.services.clone() else {
            return;
        };
        let last = self
            .services
            .last_applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let warming = self
            .services
            .started
            .get()
            .is_some_and(|t| t.elapsed() < WARM_UP);
        if last.is_none() && !all_ready && warming {
            return;
        }
        let script = match &last {
            Some(old) if *old == ports => return,
            Some(old) => proxy::update_script(&cfg.table, old, &ports),
            None => proxy::table_script(&cfg.table, &ports),
        };
        let started = Instant::now();
        let full = proxy::table_script(&cfg.table, &ports);
        let incremental = last.is_some();
        let res = tokio::task::spawn_blocking(move || {
            proxy::apply(&cfg.nft, &cfg.table.name, &script).or_else(|e| {
                if !incremental {
                    return Err(e);
                }
                // Whatever went wrong, the whole table is the answer.
                tracing::warn!(err = %e, "incremental service rules failed; replacing the table");
                proxy::apply(&cfg.nft, &cfg.table.name, &full)
            })
        })
        .await;
        match res {
            Ok(Ok(())) => {
                tracing::info!(
                    services,
                    ports = ports.len(),
                    incremental,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "service rules applied"
                );
                *self
                    .services
                    .last_applied
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(ports);
            }
            Ok(Err(e)) => tracing::warn!(err = %e, "service rules not applied"),
            Err(e) => tracing::warn!(err = %e, "service rules task failed"),
        }
    }

    /// The current EndpointSlices as Kubernetes JSON, filtered like `get`.
    pub(crate) fn endpoint_slices(&self, ns: Option<&str>, name: &str) -> Vec<serde_json::Value> {
        self.services
            .slices
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|s| ns.is_none_or(|ns| s.metadata.namespace.as_deref() == Some(ns)))
            .filter(|s| name.is_empty() || s.metadata.name.as_deref() == Some(name))
            .filter_map(|s| {
                let mut v = serde_json::to_value(s).ok()?;
                v["apiVersion"] = "discovery.k8s.io/v1".into();
                v["kind"] = "EndpointSlice".into();
                Some(v)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str, yaml: &str) -> Object {
        kinglet_manifest::parse(
            "t",
            &format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n{yaml}"),
        )
        .unwrap()
        .remove(0)
    }

    fn spec(o: &Object) -> k8s_openapi::api::core::v1::ServiceSpec {
        let Object::Service(s) = o else { panic!() };
        s.spec.clone().unwrap()
    }

    #[test]
    fn allocation_on_apply_keeps_addresses_across_updates() {
        let cfg = ServicesConfig {
            cidr: "10.96.0.0/16".parse().unwrap(),
            nft: "nft".into(),
            table: proxy::Table::named("t"),
        };
        let mut store = std::collections::BTreeMap::new();
        let mut a = svc("a", "  type: NodePort\n  ports: [{port: 80}]\n");
        admit(Some(&cfg), &store, &mut a, None).unwrap();
        assert_eq!(spec(&a).cluster_ip.as_deref(), Some("10.96.0.2"));
        assert_eq!(spec(&a).ports.unwrap()[0].node_port, Some(30000));
        store.insert(a.key(), a.clone());
        // The same manifest applied again keeps the address and nodePort.
        let mut again = svc("a", "  type: NodePort\n  ports: [{port: 80}]\n");
        admit(Some(&cfg), &store, &mut again, Some(&a)).unwrap();
        assert_eq!(spec(&again), spec(&a));
        // Another Service gets the next ones; a taken address is refused; a change is refused.
        let mut b = svc("b", "  type: NodePort\n  ports: [{port: 80}]\n");
        admit(Some(&cfg), &store, &mut b, None).unwrap();
        assert_eq!(spec(&b).cluster_ip.as_deref(), Some("10.96.0.3"));
        assert_eq!(spec(&b).ports.unwrap()[0].node_port, Some(30001));
        let mut c = svc("c", "  clusterIP: 10.96.0.2\n  ports: [{port: 80}]\n");
        let e = admit(Some(&cfg), &store, &mut c, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("Service default/c") && e.contains("already allocated"),
            "{e}"
        );
        let mut moved = svc(
            "a",
            "  clusterIP: 10.96.0.9\n  type: NodePort\n  ports: [{port: 80}]\n",
        );
        let e = admit(Some(&cfg), &store, &mut moved, Some(&a))
            .unwrap_err()
            .to_string();
        assert!(e.contains("immutable"), "{e}");
        let mut headless = svc("h", "  clusterIP: None\n");
        admit(Some(&cfg), &store, &mut headless, None).unwrap();
        assert_eq!(spec(&headless).cluster_ip.as_deref(), Some("None"));
    }
}
