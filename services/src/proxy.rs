//! kube-proxy's nftables mode, in a table of Kinglet's own (`ip <nft-table>_svc`; the pod
//! network's table is never touched).
//!
//! Layout (the shape of kube-proxy's nftables proxier):
//! - verdict maps `service_ips` (`cluster ip . proto . port`) and `service_nodeports`
//!   (`proto . port`, any local address, 127.0.0.1 included) jump to one chain per Service
//!   port, `svc-<ns>/<name>/<proto>/<port>`;
//! - a Service port's chain marks ClusterIP traffic for masquerade when its source is outside
//!   the pod network (or, when replies bridged between pods miss conntrack — no
//!   `br_netfilter` — all of it), then picks an endpoint chain with
//!   `numgen random mod N vmap` (ready endpoints; with none ready, the serving terminating ones
//!   as kube-proxy falls back); with `sessionAffinity: ClientIP` a client found in an
//!   endpoint's dynamic set (entries time out after `timeoutSeconds`) goes to that endpoint;
//! - a NodePort's chain `ext-<id>` (kube-proxy's external chain): `externalTrafficPolicy:
//!   Cluster` marks everything for masquerade; `Local` keeps the client's address, marking
//!   only host-originated traffic (127.0.0.1 and the host's own addresses need a routable
//!   source), and sends pods' traffic the cluster way; both then go to the Service port's
//!   chain (on one node every endpoint is local);
//! - an endpoint chain `ep-<svc chain suffix>/<ip>/<port>` marks hairpin traffic (the endpoint
//!   reaching itself, whose reply would otherwise never leave the pod), records the client in
//!   its affinity set (if any) and DNATs;
//! - `postrouting` masquerades marked packets;
//! - a Service port without endpoints is in `no_endpoint_services` / `no_endpoint_nodeports`,
//!   whose filter chains (forward, input, output) reject new connections (ICMP port
//!   unreachable, which TCP clients see as "connection refused"), as kube-proxy does.
//!
//! [`table_script`] recreates the table in one transaction (`nft -f`), so the rules are
//! always exactly the current Services': after a Service is deleted no rule of it is left.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::ServicesError;

/// The packet mark bit that asks `postrouting` to masquerade (kube-proxy's bit).
const MASQ_MARK: &str = "0x4000";

/// The proxy's table and what it knows of the pod network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// The nftables table (family `ip`).
    pub name: String,
    /// The pod network (address, prefix length), when known (the built-in bridge).
    pub pod_cidr: Option<(Ipv4Addr, u8)>,
    /// Whether frames bridged between pods pass netfilter's IP hooks (`br_netfilter` with
    /// `net.bridge.bridge-nf-call-iptables = 1`): then a pod's reply to another pod's DNATed
    /// connection meets conntrack and pod → ClusterIP traffic needs no masquerade.
    pub bridge_conntrack: bool,
}

impl Table {
    /// A table that masquerades all ClusterIP traffic (nothing known of the pod network).
    pub fn named(name: &str) -> Table {
        Table {
            name: name.to_owned(),
            pod_cidr: None,
            bridge_conntrack: false,
        }
    }

    fn pods(&self) -> Option<String> {
        self.pod_cidr.map(|(ip, len)| format!("{ip}/{len}"))
    }
}

/// One port of one Service, with the endpoints traffic to it may go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyPort {
    /// `<ns>/<name>/<proto>/<port name or number>`.
    pub id: String,
    /// "tcp" or "udp".
    pub protocol: &'static str,
    pub cluster_ip: Option<Ipv4Addr>,
    pub port: u16,
    pub node_port: Option<u16>,
    /// Endpoint addresses and target ports.
    pub endpoints: Vec<(Ipv4Addr, u16)>,
    /// ClientIP session affinity timeout, in seconds.
    pub affinity_secs: Option<i32>,
    /// `externalTrafficPolicy: Local`: NodePort traffic keeps the client's address.
    pub external_local: bool,
}

/// The proxy's view of `svc` given its slices.
pub fn proxy_ports(svc: &Service, slices: &[EndpointSlice]) -> Vec<ProxyPort> {
    let spec = svc.spec.clone().unwrap_or_default();
    if spec.type_.as_deref() == Some("ExternalName") {
        return Vec::new();
    }
    let cluster_ip = spec.cluster_ip.as_deref().and_then(|ip| ip.parse().ok());
    let affinity_secs = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .and_then(|c| c.client_ip)
            .and_then(|c| c.timeout_seconds)
            .unwrap_or(10800)
    });
    let external_local = spec.external_traffic_policy.as_deref() == Some("Local");
    let ns = svc
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = svc.metadata.name.clone().unwrap_or_default();
    let mut out = Vec::new();
    for p in spec.ports.unwrap_or_default() {
        let protocol = match p.protocol.as_deref().unwrap_or("TCP") {
            "TCP" => "tcp",
            "UDP" => "udp",
            _ => continue,
        };
        let port_name = p.name.clone().unwrap_or_default();
        let endpoints_where = |ready: bool| -> Vec<(Ipv4Addr, u16)> {
            let mut eps: Vec<(Ipv4Addr, u16)> = slices
                .iter()
                .filter_map(|s| {
                    let sp = s.ports.as_ref()?.iter().find(|sp| {
                        sp.name.clone().unwrap_or_default() == port_name
                            && sp.protocol.as_deref().unwrap_or("TCP")
                                == p.protocol.as_deref().unwrap_or("TCP")
                    })?;
                    let port = u16::try_from(sp.port?).ok()?;
                    Some((s, port))
                })
                .flat_map(|(s, port)| {
                    s.endpoints.iter().filter_map(move |e| {
                        let c = e.conditions.clone().unwrap_or_default();
                        let usable = if ready {
                            c.ready.unwrap_or(true)
                        } else {
                            c.serving.unwrap_or(false) && c.terminating.unwrap_or(false)
                        };
                        let ip: Ipv4Addr = e.addresses.first()?.parse().ok()?;
                        usable.then_some((ip, port))
                    })
                })
                .collect();
            eps.sort();
            eps.dedup();
            eps
        };
        let mut endpoints = endpoints_where(true);
        if endpoints.is_empty() {
            endpoints = endpoints_where(false);
        }
        let label = if port_name.is_empty() {
            p.port.to_string()
        } else {
            port_name
        };
        out.push(ProxyPort {
            id: format!("{ns}/{name}/{protocol}/{label}"),
            protocol,
            cluster_ip,
            port: u16::try_from(p.port).unwrap_or(0),
            node_port: p.node_port.and_then(|n| u16::try_from(n).ok()),
            endpoints,
            affinity_secs,
            external_local,
        });
    }
    out
}

fn ep_chain(p: &ProxyPort, ip: Ipv4Addr, port: u16) -> String {
    format!("ep-{}/{ip}/{port}", p.id)
}

fn affinity_set(p: &ProxyPort, ip: Ipv4Addr, port: u16) -> String {
    format!("aff-{}/{ip}/{port}", p.id)
}

const MARK: &str = "meta mark set meta mark | 0x4000";

/// The rules of a Service port's chain (it must have endpoints).
fn svc_rules(t: &Table, p: &ProxyPort) -> Vec<String> {
    let mut r = Vec::new();
    if let Some(cip) = p.cluster_ip {
        // kube-proxy's rule: ClusterIP traffic from outside the pod network is masqueraded
        // (the host's own, routed from elsewhere); pods keep their address when their replies
        // meet conntrack on the bridge.
        match t.pods().filter(|_| t.bridge_conntrack) {
            Some(pods) => r.push(format!("ip daddr {cip} ip saddr != {pods} {MARK}")),
            None => r.push(format!("ip daddr {cip} {MARK}")),
        }
    }
    if p.affinity_secs.is_some() {
        for &(ip, port) in &p.endpoints {
            r.push(format!(
                "ip saddr @{} goto {}",
                affinity_set(p, ip, port),
                ep_chain(p, ip, port)
            ));
        }
    }
    let arms: Vec<String> = p
        .endpoints
        .iter()
        .enumerate()
        .map(|(i, &(ip, port))| format!("{i} : goto {}", ep_chain(p, ip, port)))
        .collect();
    r.push(format!(
        "numgen random mod {} vmap {{ {} }}",
        p.endpoints.len(),
        arms.join(", ")
    ));
    r
}

/// The rules of a NodePort's external chain (it must have endpoints): kube-proxy's
/// `external-*` chain for one node, where every endpoint is local.
fn ext_rules(t: &Table, p: &ProxyPort) -> Vec<String> {
    let svc = format!("svc-{}", p.id);
    if !p.external_local {
        return vec![MARK.to_owned(), format!("goto {svc}")];
    }
    let mut r = Vec::new();
    if let Some(pods) = t.pods() {
        // Pods reaching a NodePort get the cluster behaviour (masqueraded when their replies
        // would be bridged around conntrack).
        if !t.bridge_conntrack {
            r.push(format!("ip saddr {pods} {MARK}"));
        }
        r.push(format!("ip saddr {pods} goto {svc}"));
    }
    // The host's own connections (127.0.0.1 included) need a source the pod can answer.
    r.push(format!("fib saddr type local {MARK}"));
    r.push(format!("goto {svc}"));
    r
}

/// The rules of an endpoint chain.
fn ep_rules(p: &ProxyPort, ip: Ipv4Addr, port: u16) -> Vec<String> {
    // Hairpin: the endpoint reaching itself through the Service.
    let mut r = vec![format!("ip saddr {ip} {MARK}")];
    if p.affinity_secs.is_some() {
        r.push(format!(
            "update @{} {{ ip saddr }}",
            affinity_set(p, ip, port)
        ));
    }
    r.push(format!("meta l4proto {} dnat to {ip}:{port}", p.protocol));
    r
}

fn affinity_set_body(t: i32) -> String {
    format!("{{ type ipv4_addr; flags dynamic,timeout; timeout {t}s; }}")
}

/// The map elements of a Service port (`add`/`delete` lines without the verb).
fn elements(table: &str, p: &ProxyPort) -> Vec<String> {
    let (ips, nodeports, verdict, ext) = if p.endpoints.is_empty() {
        (
            "no_endpoint_services",
            "no_endpoint_nodeports",
            "goto reject_chain".to_owned(),
            "goto reject_chain".to_owned(),
        )
    } else {
        (
            "service_ips",
            "service_nodeports",
            format!("goto svc-{}", p.id),
            format!("goto ext-{}", p.id),
        )
    };
    let mut out = Vec::new();
    if let Some(ip) = p.cluster_ip {
        out.push(format!(
            "element ip {table} {ips} {{ {ip} . {} . {} : {verdict} }}",
            p.protocol, p.port
        ));
    }
    if let Some(np) = p.node_port {
        out.push(format!(
            "element ip {table} {nodeports} {{ {} . {np} : {ext} }}",
            p.protocol
        ));
    }
    out
}

/// The whole table for `ports`, recreated atomically.
pub fn table_script(t: &Table, ports: &[ProxyPort]) -> String {
    let table = &t.name;
    let mut s = format!(
        "table ip {table} {{\n}}\ndelete table ip {table}\ntable ip {table} {{\n\
         \tmap service_ips {{ type ipv4_addr . inet_proto . inet_service : verdict; }}\n\
         \tmap service_nodeports {{ type inet_proto . inet_service : verdict; }}\n\
         \tmap no_endpoint_services {{ type ipv4_addr . inet_proto . inet_service : verdict; }}\n\
         \tmap no_endpoint_nodeports {{ type inet_proto . inet_service : verdict; }}\n\
         \tchain nat_prerouting {{ type nat hook prerouting priority dstnat; policy accept;\n\t\tjump services\n\t}}\n\
         \tchain nat_output {{ type nat hook output priority -100; policy accept;\n\t\tjump services\n\t}}\n\
         \tchain nat_postrouting {{ type nat hook postrouting priority srcnat; policy accept;\n\
         \t\tmeta mark & {MASQ_MARK} == {MASQ_MARK} masquerade fully-random\n\t}}\n\
         \tchain services {{\n\
         \t\tip daddr . meta l4proto . th dport vmap @service_ips\n\
         \t\tfib daddr type local meta l4proto . th dport vmap @service_nodeports\n\t}}\n\
         \tchain filter_forward {{ type filter hook forward priority filter - 10; policy accept;\n\t\tct state new jump no_endpoints\n\t}}\n\
         \tchain filter_input {{ type filter hook input priority filter - 10; policy accept;\n\t\tct state new jump no_endpoints\n\t}}\n\
         \tchain filter_output {{ type filter hook output priority filter - 10; policy accept;\n\t\tct state new jump no_endpoints\n\t}}\n\
         \tchain no_endpoints {{\n\
         \t\tip daddr . meta l4proto . th dport vmap @no_endpoint_services\n\
         \t\tfib daddr type local meta l4proto . th dport vmap @no_endpoint_nodeports\n\t}}\n\
         \tchain reject_chain {{\n\t\treject\n\t}}\n\
         }}\n"
    );
    for p in ports {
        write_port(&mut s, t, p);
    }
    s
}

/// Chains, sets and elements of one Service port, added (its chains flushed first, so this
/// also rewrites a port whose chains exist).
fn write_port(s: &mut String, t: &Table, p: &ProxyPort) {
    let table = &t.name;
    if !p.endpoints.is_empty() {
        for &(ip, port) in &p.endpoints {
            if let Some(t) = p.affinity_secs {
                let _ = writeln!(
                    s,
                    "add set ip {table} {} {}",
                    affinity_set(p, ip, port),
                    affinity_set_body(t)
                );
            }
            let c = ep_chain(p, ip, port);
            let _ = writeln!(s, "add chain ip {table} {c}\nflush chain ip {table} {c}");
            for r in ep_rules(p, ip, port) {
                let _ = writeln!(s, "add rule ip {table} {c} {r}");
            }
        }
        let c = format!("svc-{}", p.id);
        let _ = writeln!(s, "add chain ip {table} {c}\nflush chain ip {table} {c}");
        for r in svc_rules(t, p) {
            let _ = writeln!(s, "add rule ip {table} {c} {r}");
        }
        if p.node_port.is_some() {
            let c = format!("ext-{}", p.id);
            let _ = writeln!(s, "add chain ip {table} {c}\nflush chain ip {table} {c}");
            for r in ext_rules(t, p) {
                let _ = writeln!(s, "add rule ip {table} {c} {r}");
            }
        }
    }
    for e in elements(table, p) {
        let _ = writeln!(s, "add {e}");
    }
}

/// The changes that turn the table made for `old` into the one for `new`, in one transaction:
/// only the Service ports that differ are touched (their map elements swapped, their chains
/// rewritten, the chains and affinity sets of endpoints gone deleted); the affinity sets of
/// endpoints that stay keep their clients. Empty when nothing changed.
pub fn update_script(t: &Table, old: &[ProxyPort], new: &[ProxyPort]) -> String {
    use std::collections::BTreeMap;
    let table = &t.name;
    let old: BTreeMap<&str, &ProxyPort> = old.iter().map(|p| (p.id.as_str(), p)).collect();
    let new: BTreeMap<&str, &ProxyPort> = new.iter().map(|p| (p.id.as_str(), p)).collect();
    let changed_old: Vec<&ProxyPort> = old
        .iter()
        .filter(|(id, p)| new.get(*id) != Some(*p))
        .map(|(_, p)| *p)
        .collect();
    let changed_new: Vec<&ProxyPort> = new
        .iter()
        .filter(|(id, p)| old.get(*id) != Some(*p))
        .map(|(_, p)| *p)
        .collect();
    let mut s = String::new();
    // 1. Unhook the old versions.
    for p in &changed_old {
        for e in elements(table, p) {
            let _ = writeln!(s, "delete {e}");
        }
    }
    // 2. Write the new versions (chains flushed and refilled; the svc chain no longer jumps to
    //    endpoints that are gone).
    for p in &changed_new {
        write_port(&mut s, t, p);
    }
    // 3. Delete what the old versions had and the new ones do not.
    for p in &changed_old {
        let next = new.get(p.id.as_str()).copied();
        let keeps = |ip: Ipv4Addr, port: u16| {
            next.is_some_and(|n| {
                n.endpoints.contains(&(ip, port)) && n.affinity_secs == p.affinity_secs
            })
        };
        let svc_goes = !p.endpoints.is_empty() && next.is_none_or(|n| n.endpoints.is_empty());
        let ext_goes = !p.endpoints.is_empty()
            && p.node_port.is_some()
            && next.is_none_or(|n| n.endpoints.is_empty() || n.node_port.is_none());
        if ext_goes {
            let _ = writeln!(
                s,
                "flush chain ip {table} ext-{0}\ndelete chain ip {table} ext-{0}",
                p.id
            );
        }
        if svc_goes {
            let _ = writeln!(s, "flush chain ip {table} svc-{}", p.id);
        }
        for &(ip, port) in &p.endpoints {
            if !keeps(ip, port) {
                let c = ep_chain(p, ip, port);
                if !next.is_some_and(|n| n.endpoints.contains(&(ip, port))) {
                    let _ = writeln!(s, "flush chain ip {table} {c}\ndelete chain ip {table} {c}");
                }
                if p.affinity_secs.is_some() {
                    let _ = writeln!(s, "delete set ip {table} {}", affinity_set(p, ip, port));
                }
            }
        }
        if svc_goes {
            let _ = writeln!(s, "delete chain ip {table} svc-{}", p.id);
        }
    }
    s
}

/// Remove the whole table; succeeds whether or not it exists.
pub fn delete_table_script(table: &str) -> String {
    format!("table ip {table} {{\n}}\ndelete table ip {table}\n")
}

/// Apply `script` with `<nft> -f -` as one transaction (blocking: call off the async runtime).
pub fn apply(nft: &Path, table: &str, script: &str) -> Result<(), ServicesError> {
    let err = |reason: String| ServicesError::Nft {
        table: table.to_owned(),
        reason,
    };
    let mut child = Command::new(nft)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(format!("run {}: {e}", nft.display())))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| err(format!("write to nft: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| err(format!("wait for nft: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(err(String::from_utf8_lossy(&out.stderr).trim().to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(eps: &[(Ipv4Addr, u16)], affinity: Option<i32>) -> ProxyPort {
        ProxyPort {
            id: "default/web/tcp/http".into(),
            protocol: "tcp",
            cluster_ip: Some(Ipv4Addr::new(10, 96, 0, 2)),
            port: 80,
            node_port: Some(30080),
            endpoints: eps.to_vec(),
            affinity_secs: affinity,
            external_local: false,
        }
    }

    #[test]
    fn random_choice_over_endpoints() {
        let a = (Ipv4Addr::new(10, 85, 0, 2), 8080);
        let b = (Ipv4Addr::new(10, 85, 0, 3), 8080);
        let s = table_script(&Table::named("t"), &[port(&[a, b], None)]);
        assert!(s.contains("add rule ip t svc-default/web/tcp/http numgen random mod 2 vmap { 0 : goto ep-default/web/tcp/http/10.85.0.2/8080, 1 : goto ep-default/web/tcp/http/10.85.0.3/8080 }"), "{s}");
        assert!(s.contains("add rule ip t ep-default/web/tcp/http/10.85.0.3/8080 meta l4proto tcp dnat to 10.85.0.3:8080"));
        assert!(s.contains(
            "add element ip t service_ips { 10.96.0.2 . tcp . 80 : goto svc-default/web/tcp/http }"
        ));
        assert!(s.contains(
            "add element ip t service_nodeports { tcp . 30080 : goto ext-default/web/tcp/http }"
        ));
        assert!(!s.contains("add element ip t no_endpoint"));
        assert!(!s.contains("update @"));
    }

    #[test]
    fn no_endpoints_reject() {
        let s = table_script(&Table::named("t"), &[port(&[], None)]);
        assert!(s.contains("add element ip t no_endpoint_services { 10.96.0.2 . tcp . 80 : goto reject_chain }"), "{s}");
        assert!(s.contains(
            "add element ip t no_endpoint_nodeports { tcp . 30080 : goto reject_chain }"
        ));
        assert!(!s.contains("chain svc-"));
    }

    #[test]
    fn client_ip_affinity() {
        let a = (Ipv4Addr::new(10, 85, 0, 2), 8080);
        let s = table_script(&Table::named("t"), &[port(&[a], Some(60))]);
        assert!(s.contains("add set ip t aff-default/web/tcp/http/10.85.0.2/8080 { type ipv4_addr; flags dynamic,timeout; timeout 60s; }"), "{s}");
        assert!(s.contains("add rule ip t svc-default/web/tcp/http ip saddr @aff-default/web/tcp/http/10.85.0.2/8080 goto ep-default/web/tcp/http/10.85.0.2/8080"));
        assert!(s.contains("add rule ip t ep-default/web/tcp/http/10.85.0.2/8080 update @aff-default/web/tcp/http/10.85.0.2/8080 { ip saddr }"));
    }

    #[test]
    fn updates_touch_only_what_changed() {
        let a = (Ipv4Addr::new(10, 85, 0, 2), 8080);
        let b = (Ipv4Addr::new(10, 85, 0, 3), 8080);
        let mut other = port(&[a], None);
        other.id = "default/other/tcp/80".into();
        other.cluster_ip = Some(Ipv4Addr::new(10, 96, 0, 9));
        other.node_port = None;
        let before = [port(&[a, b], Some(60)), other.clone()];
        assert_eq!(update_script(&Table::named("t"), &before, &before), "");
        // b leaves: its chain and set go, a's set stays (its clients keep their endpoint),
        // the other Service is untouched.
        let after = [port(&[a], Some(60)), other.clone()];
        let s = update_script(&Table::named("t"), &before, &after);
        assert!(
            !s.contains("delete table") && !s.contains("default/other"),
            "{s}"
        );
        assert!(
            s.contains("delete chain ip t ep-default/web/tcp/http/10.85.0.3/8080"),
            "{s}"
        );
        assert!(
            s.contains("delete set ip t aff-default/web/tcp/http/10.85.0.3/8080"),
            "{s}"
        );
        assert!(
            !s.contains("delete set ip t aff-default/web/tcp/http/10.85.0.2/8080"),
            "{s}"
        );
        assert!(s.contains("flush chain ip t svc-default/web/tcp/http\nadd rule ip t svc-default/web/tcp/http ip daddr 10.96.0.2 meta mark set meta mark | 0x4000\n"), "{s}");
        assert!(s.contains("numgen random mod 1 vmap"), "{s}");
        // No endpoints left: the svc chain goes, the address rejects.
        let none = [port(&[], Some(60)), other.clone()];
        let s = update_script(&Table::named("t"), &after, &none);
        assert!(s.contains("delete element ip t service_ips { 10.96.0.2 . tcp . 80 : goto svc-default/web/tcp/http }"), "{s}");
        assert!(s.contains("add element ip t no_endpoint_services { 10.96.0.2 . tcp . 80 : goto reject_chain }"), "{s}");
        assert!(
            s.contains("delete chain ip t svc-default/web/tcp/http"),
            "{s}"
        );
        // The Service is deleted: its elements go.
        let s = update_script(&Table::named("t"), &none, &[other]);
        assert!(
            s.contains("delete element ip t no_endpoint_services"),
            "{s}"
        );
        assert!(!s.contains("add "), "{s}");
    }

    fn rules_of(s: &str, chain: &str) -> Vec<String> {
        let prefix = format!("add rule ip t {chain} ");
        s.lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn masquerade_only_what_needs_it() {
        let a = (Ipv4Addr::new(10, 85, 0, 2), 8080);
        let t = Table {
            name: "t".into(),
            pod_cidr: Some((Ipv4Addr::new(10, 85, 0, 0), 16)),
            bridge_conntrack: true,
        };
        let mut local = port(&[a], None);
        local.external_local = true;
        let s = table_script(&t, &[local.clone()]);
        const M: &str = "meta mark set meta mark | 0x4000";
        // ClusterIP: only sources outside the pod network (the host, routed traffic).
        assert_eq!(
            rules_of(&s, "svc-default/web/tcp/http")[0],
            format!("ip daddr 10.96.0.2 ip saddr != 10.85.0.0/16 {M}")
        );
        // Hairpin: the endpoint reaching itself.
        assert_eq!(
            rules_of(&s, "ep-default/web/tcp/http/10.85.0.2/8080"),
            [
                format!("ip saddr 10.85.0.2 {M}"),
                "meta l4proto tcp dnat to 10.85.0.2:8080".into()
            ]
        );
        // Local: pods the cluster way, the host masqueraded, the rest keeps its source.
        assert_eq!(
            rules_of(&s, "ext-default/web/tcp/http"),
            [
                "ip saddr 10.85.0.0/16 goto svc-default/web/tcp/http".to_owned(),
                format!("fib saddr type local {M}"),
                "goto svc-default/web/tcp/http".into()
            ]
        );
        // Cluster: everything from outside masqueraded, as kube-proxy does.
        let cluster = port(&[a], None);
        let s2 = table_script(&t, std::slice::from_ref(&cluster));
        assert_eq!(
            rules_of(&s2, "ext-default/web/tcp/http"),
            [M.to_owned(), "goto svc-default/web/tcp/http".into()]
        );
        // Without conntrack on the bridge every ClusterIP packet, and pods' NodePort traffic,
        // is masqueraded.
        let bare = Table {
            bridge_conntrack: false,
            ..t.clone()
        };
        let s3 = table_script(&bare, std::slice::from_ref(&local));
        assert_eq!(
            rules_of(&s3, "svc-default/web/tcp/http")[0],
            format!("ip daddr 10.96.0.2 {M}")
        );
        assert_eq!(
            rules_of(&s3, "ext-default/web/tcp/http")[0],
            format!("ip saddr 10.85.0.0/16 {M}")
        );
        // A policy change rewrites the external chain; dropping the NodePort deletes it.
        let u = update_script(
            &t,
            std::slice::from_ref(&cluster),
            std::slice::from_ref(&local),
        );
        assert!(u.contains("flush chain ip t ext-default/web/tcp/http\nadd rule ip t ext-default/web/tcp/http ip saddr 10.85.0.0/16 goto"), "{u}");
        assert!(!u.contains("delete chain"), "{u}");
        let no_np = ProxyPort {
            node_port: None,
            ..local.clone()
        };
        let u = update_script(&t, &[local], &[no_np]);
        assert!(
            u.contains("delete chain ip t ext-default/web/tcp/http")
                && !u.contains("delete chain ip t svc-"),
            "{u}"
        );
    }

    #[test]
    fn no_services_is_an_empty_table() {
        let s = table_script(&Table::named("t"), &[]);
        assert!(s.starts_with("table ip t {\n}\ndelete table ip t\n"));
        assert!(!s.contains("add element"));
    }
}

#[cfg(test)]
mod nft_check {
    /// The generated script is accepted by `nft -c` (nft must be installed; it is in CI).
    #[test]
    fn nft_accepts_the_script() {
        use super::*;
        let a = (Ipv4Addr::new(10, 85, 0, 2), 8080);
        let mut with = tests_port(&[a], Some(60));
        let empty = ProxyPort {
            id: "x/y/udp/53".into(),
            protocol: "udp",
            endpoints: vec![],
            node_port: None,
            ..with.clone()
        };
        with.cluster_ip = Some(Ipv4Addr::new(10, 96, 0, 3));
        let mut local = with.clone();
        local.id = "default/local/tcp/80".into();
        local.external_local = true;
        local.node_port = Some(30081);
        local.cluster_ip = Some(Ipv4Addr::new(10, 96, 0, 4));
        let t = Table {
            name: "kinglet_svc_check".into(),
            pod_cidr: Some((Ipv4Addr::new(10, 85, 0, 0), 16)),
            bridge_conntrack: false,
        };
        let s = table_script(&t, &[with, empty, local]);
        let out = Command::new("nft")
            .args(["-c", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = out.expect("nft must be installed");
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}\n{s}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn tests_port(eps: &[(std::net::Ipv4Addr, u16)], affinity: Option<i32>) -> super::ProxyPort {
        super::ProxyPort {
            id: "default/web/tcp/http".into(),
            protocol: "tcp",
            cluster_ip: Some(std::net::Ipv4Addr::new(10, 96, 0, 2)),
            port: 80,
            node_port: Some(30080),
            endpoints: eps.to_vec(),
            affinity_secs: affinity,
            external_local: false,
        }
    }
}
