//! A Pod's resolv.conf (as the CRI `DNSConfig` of its sandbox), chosen by `spec.dnsPolicy` the
//! way the kubelet's `dns.go` does:
//!
//! - `ClusterFirst` (the default): the cluster DNS, the search path `<ns>.svc.<domain>
//!   svc.<domain> <domain>` followed by the host's, `options ndots:5`. A hostNetwork pod
//!   gets `Default` instead, unless it asks for `ClusterFirstWithHostNet`.
//! - `Default`: the host's resolv.conf (systemd-resolved's upstream list when the host points
//!   at its stub).
//! - `None`: only `spec.dnsConfig`.
//!
//! `spec.dnsConfig` is then merged in (nameservers and searches appended without
//! duplicates, options by name, the pod's winning), and the result cut to the kubelet's
//! limits (3 nameservers; 32 search domains, 2048 characters) with a warning event saying
//! what was applied. Without a cluster DNS, `ClusterFirst` falls back to `Default`, with the
//! kubelet's `MissingClusterDNS` warning.

use std::net::SocketAddr;

use k8s_openapi::api::core::v1::Pod;
use kinglet_proto::v1;
use kinglet_services::dns::resolvconf::ResolvConf;

/// The kubelet's limits (`validation.MaxDNSNameservers`, `MaxDNSSearchPaths`,
/// `MaxDNSSearchListChars`).
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;
const MAX_SEARCH_CHARS: usize = 2048;

/// The daemon's cluster DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDns {
    /// Where it listens (the pod bridge's address, port 53); pods get its address.
    pub listen: SocketAddr,
    /// The cluster domain (`cluster.local`).
    pub domain: String,
    /// Upstream resolvers; empty: the host's resolv.conf nameservers.
    pub upstreams: Vec<SocketAddr>,
}

/// A warning event about the pod's DNS (reason, message).
pub type DnsWarning = (&'static str, String);

/// The sandbox's DNSConfig for `pod`, given the host's resolv.conf, and the warnings the
/// kubelet would record as events.
pub fn pod_dns_config(
    pod: &Pod,
    cluster: Option<&ClusterDns>,
    host: &ResolvConf,
) -> (v1::DnsConfig, Vec<DnsWarning>) {
    let spec = pod.spec.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let host_net = spec.host_network.unwrap_or(false);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let mut warnings = Vec::new();
    let wants_cluster = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_net,
        _ => false,
    };
    let mut cfg = match (policy, wants_cluster, cluster) {
        ("None", _, _) => v1::DnsConfig::default(),
        (_, true, Some(c)) => {
            let domain = c.domain.trim_end_matches('.');
            let mut searches = vec![
                format!("{ns}.svc.{domain}"),
                format!("svc.{domain}"),
                domain.to_owned(),
            ];
            searches.extend(host.searches.iter().cloned());
            v1::DnsConfig {
                servers: vec![c.listen.ip().to_string()],
                searches: dedup(searches),
                options: vec!["ndots:5".into()],
            }
        }
        (_, true, None) => {
            warnings.push((
                "MissingClusterDNS",
                format!(
                    "pod: {:?}. kubelet does not have ClusterDNS IP configured and cannot create Pod using {policy:?} policy. Falling back to \"Default\" policy.",
                    format!("{}_{ns}", pod.metadata.name.as_deref().unwrap_or(""))
                ),
            ));
            host_config(host)
        }
        _ => host_config(host),
    };
    if let Some(extra) = &spec.dns_config {
        cfg.servers = dedup(
            cfg.servers
                .into_iter()
                .chain(extra.nameservers.iter().flatten().cloned())
                .collect(),
        );
        cfg.searches = dedup(
            cfg.searches
                .into_iter()
                .chain(extra.searches.iter().flatten().cloned())
                .collect(),
        );
        for o in extra.options.iter().flatten() {
            let name = o.name.clone().unwrap_or_default();
            let opt = match &o.value {
                Some(v) if !v.is_empty() => format!("{name}:{v}"),
                _ => name.clone(),
            };
            match cfg
                .options
                .iter_mut()
                .find(|x| x.split(':').next() == Some(name.as_str()))
            {
                Some(x) => *x = opt,
                None => cfg.options.push(opt),
            }
        }
    }
    fit_limits(&mut cfg, &mut warnings);
    (cfg, warnings)
}

fn host_config(host: &ResolvConf) -> v1::DnsConfig {
    v1::DnsConfig {
        servers: host.nameservers.clone(),
        searches: host.searches.clone(),
        options: host.options.clone(),
    }
}

/// Keep the first of each.
fn dedup(v: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    v.into_iter()
        .filter(|s| !s.is_empty() && seen.insert(s.clone()))
        .collect()
}

/// The kubelet's `formDNSConfigFitsLimits`.
fn fit_limits(cfg: &mut v1::DnsConfig, warnings: &mut Vec<DnsWarning>) {
    if cfg.servers.len() > MAX_NAMESERVERS {
        cfg.servers.truncate(MAX_NAMESERVERS);
        warnings.push((
            "DNSConfigForming",
            format!(
                "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: {}",
                cfg.servers.join(" ")
            ),
        ));
    }
    let mut cut = false;
    if cfg.searches.len() > MAX_SEARCHES {
        cfg.searches.truncate(MAX_SEARCHES);
        cut = true;
    }
    while cfg.searches.join(" ").len() > MAX_SEARCH_CHARS {
        cfg.searches.pop();
        cut = true;
    }
    if cut {
        warnings.push((
            "DNSConfigForming",
            format!(
                "Search Line limits were exceeded, some search paths have been omitted, the applied search line is: {}",
                cfg.searches.join(" ")
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "team"},
            "spec": spec,
        }))
        .unwrap()
    }

    fn cluster() -> ClusterDns {
        ClusterDns {
            listen: "10.85.0.1:53".parse().unwrap(),
            domain: "cluster.local".into(),
            upstreams: vec![],
        }
    }

    fn host() -> ResolvConf {
        ResolvConf {
            nameservers: vec!["192.0.2.53".into()],
            searches: vec!["corp.example".into(), "cluster.local".into()],
            options: vec!["edns0".into(), "ndots:2".into()],
        }
    }

    fn cfg(spec: serde_json::Value, c: Option<&ClusterDns>) -> (v1::DnsConfig, Vec<DnsWarning>) {
        pod_dns_config(&pod(spec), c, &host())
    }

    #[test]
    fn cluster_first_is_the_default_and_adds_the_host_searches() {
        let c = cluster();
        let (d, w) = cfg(serde_json::json!({"containers": []}), Some(&c));
        assert_eq!(d.servers, ["10.85.0.1"]);
        assert_eq!(
            d.searches,
            [
                "team.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "corp.example"
            ]
        );
        assert_eq!(d.options, ["ndots:5"]);
        assert!(w.is_empty());
        let (same, _) = cfg(
            serde_json::json!({"containers": [], "dnsPolicy": "ClusterFirst"}),
            Some(&c),
        );
        assert_eq!(same, d);
    }

    #[test]
    fn host_network_gets_the_host_unless_cluster_first_with_host_net() {
        let c = cluster();
        let (d, _) = cfg(
            serde_json::json!({"containers": [], "hostNetwork": true}),
            Some(&c),
        );
        assert_eq!(d.servers, ["192.0.2.53"]);
        assert_eq!(d.options, ["edns0", "ndots:2"]);
        let (d, _) = cfg(
            serde_json::json!({"containers": [], "hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"}),
            Some(&c),
        );
        assert_eq!(d.servers, ["10.85.0.1"]);
        // ClusterFirstWithHostNet without hostNetwork is ClusterFirst too.
        let (d, _) = cfg(
            serde_json::json!({"containers": [], "dnsPolicy": "ClusterFirstWithHostNet"}),
            Some(&c),
        );
        assert_eq!(d.servers, ["10.85.0.1"]);
        let (d, _) = cfg(
            serde_json::json!({"containers": [], "dnsPolicy": "Default"}),
            Some(&c),
        );
        assert_eq!(d.searches, ["corp.example", "cluster.local"]);
    }

    #[test]
    fn none_takes_only_dns_config_and_dns_config_merges() {
        let c = cluster();
        let spec = serde_json::json!({"containers": [], "dnsPolicy": "None", "dnsConfig": {
            "nameservers": ["1.2.3.4"], "searches": ["a.example"],
            "options": [{"name": "ndots", "value": "1"}, {"name": "rotate"}]}});
        let (d, w) = cfg(spec, Some(&c));
        assert_eq!(
            (d.servers, d.searches, d.options),
            (
                vec!["1.2.3.4".to_owned()],
                vec!["a.example".to_owned()],
                vec!["ndots:1".to_owned(), "rotate".to_owned()]
            )
        );
        assert!(w.is_empty());
        let spec = serde_json::json!({"containers": [], "dnsConfig": {
            "nameservers": ["10.85.0.1", "1.2.3.4"], "searches": ["svc.cluster.local", "x.example"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}});
        let (d, _) = cfg(spec, Some(&c));
        assert_eq!(d.servers, ["10.85.0.1", "1.2.3.4"]);
        assert_eq!(d.searches.last().unwrap(), "x.example");
        assert_eq!(d.searches.len(), 5);
        assert_eq!(d.options, ["ndots:2", "edns0"]);
    }

    #[test]
    fn limits_cut_with_warnings_and_missing_cluster_dns_falls_back() {
        let c = cluster();
        let many: Vec<String> = (0..40).map(|i| format!("d{i}.example")).collect();
        let spec = serde_json::json!({"containers": [], "dnsConfig": {
            "nameservers": ["1.1.1.1", "2.2.2.2", "3.3.3.3"], "searches": many}});
        let (d, w) = cfg(spec, Some(&c));
        assert_eq!(d.servers, ["10.85.0.1", "1.1.1.1", "2.2.2.2"]);
        assert_eq!(d.searches.len(), 32);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0]
            .1
            .contains("applied nameserver line is: 10.85.0.1 1.1.1.1 2.2.2.2"));
        assert!(w[1].1.starts_with("Search Line limits were exceeded"));
        let long: Vec<String> = (0..20).map(|i| format!("{i}{}", "x".repeat(200))).collect();
        let (d, _) = cfg(
            serde_json::json!({"containers": [], "dnsPolicy": "None", "dnsConfig": {"searches": long}}),
            None,
        );
        assert!(d.searches.join(" ").len() <= MAX_SEARCH_CHARS);
        assert_eq!(d.searches.len(), 10);
        let (d, w) = cfg(serde_json::json!({"containers": []}), None);
        assert_eq!(d.servers, ["192.0.2.53"]);
        assert_eq!(w[0].0, "MissingClusterDNS");
    }
}
