//! Service link variables, as the kubelet's `envvars` package makes them: for each Service
//! with a cluster IP in the pod's namespace (with `enableServiceLinks`, the default) and for
//! the `kubernetes` Service of namespace `default` (always), `<NAME>_SERVICE_HOST`,
//! `<NAME>_SERVICE_PORT`, `<NAME>_SERVICE_PORT_<PORTNAME>` and the Docker link variables
//! `<NAME>_PORT`, `<NAME>_PORT_<port>_<PROTO>{,_PROTO,_PORT,_ADDR}`. Only Services that exist
//! when the container is created count, as in Kubernetes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Service};

/// The Service the kubelet always links, from namespace `default`.
const MASTER_SERVICE: &str = "kubernetes";

/// `my-svc` → `MY_SVC`.
fn var_name(s: &str) -> String {
    s.replace('-', "_").to_uppercase()
}

/// Whether the Service has a cluster IP (not headless, not ExternalName).
fn ip_set(s: &Service) -> Option<&str> {
    s.spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .filter(|ip| !ip.is_empty() && *ip != "None")
}

/// The link variables of one Service, in the kubelet's order.
fn from_service(s: &Service, out: &mut Vec<(String, String)>) {
    let Some(ip) = ip_set(s) else { return };
    let prefix = var_name(s.metadata.name.as_deref().unwrap_or_default());
    let ports = s
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let Some(first) = ports.first() else { return };
    out.push((format!("{prefix}_SERVICE_HOST"), ip.to_owned()));
    let port_var = format!("{prefix}_SERVICE_PORT");
    out.push((port_var.clone(), first.port.to_string()));
    for p in &ports {
        if let Some(n) = p.name.as_deref().filter(|n| !n.is_empty()) {
            out.push((format!("{port_var}_{}", var_name(n)), p.port.to_string()));
        }
    }
    let host = |port: i32| {
        if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        }
    };
    for (i, p) in ports.iter().enumerate() {
        let proto = p.protocol.as_deref().unwrap_or("TCP");
        let lower = proto.to_lowercase();
        let url = format!("{lower}://{}", host(p.port));
        if i == 0 {
            out.push((format!("{prefix}_PORT"), url.clone()));
        }
        let pp = format!("{prefix}_PORT_{}_{}", p.port, proto.to_uppercase());
        out.push((pp.clone(), url));
        out.push((format!("{pp}_PROTO"), lower));
        out.push((format!("{pp}_PORT"), p.port.to_string()));
        out.push((format!("{pp}_ADDR"), ip.to_owned()));
    }
}

/// The service variables of `pod` given every Service now (kubelet `getServiceEnvVarMap`).
pub fn service_env(pod: &Pod, services: &[&Service]) -> BTreeMap<String, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let mut chosen: BTreeMap<&str, &Service> = BTreeMap::new();
    for s in services {
        if ip_set(s).is_none() {
            continue;
        }
        let name = s.metadata.name.as_deref().unwrap_or_default();
        let sns = s.metadata.namespace.as_deref().unwrap_or("default");
        if sns == "default" && name == MASTER_SERVICE {
            chosen.entry(name).or_insert(s);
        } else if sns == ns && links {
            chosen.insert(name, s);
        }
    }
    let mut out = Vec::new();
    for s in chosen.values() {
        from_service(s, &mut out);
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(ns: &str, name: &str, ip: &str, ports: serde_json::Value) -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "ports": ports},
        }))
        .unwrap()
    }

    fn pod(ns: &str, links: Option<bool>) -> Pod {
        let mut p = Pod::default();
        p.metadata.namespace = Some(ns.into());
        p.spec = Some(k8s_openapi::api::core::v1::PodSpec {
            enable_service_links: links,
            ..Default::default()
        });
        p
    }

    #[test]
    fn variables_as_the_kubelet_makes_them() {
        let web = svc(
            "default",
            "my-web",
            "10.96.0.10",
            serde_json::json!([{"name": "http", "port": 80}, {"name": "dns-udp", "port": 53, "protocol": "UDP"}]),
        );
        let env = service_env(&pod("default", None), &[&web]);
        let want: BTreeMap<String, String> = [
            ("MY_WEB_SERVICE_HOST", "10.96.0.10"),
            ("MY_WEB_SERVICE_PORT", "80"),
            ("MY_WEB_SERVICE_PORT_HTTP", "80"),
            ("MY_WEB_SERVICE_PORT_DNS_UDP", "53"),
            ("MY_WEB_PORT", "tcp://10.96.0.10:80"),
            ("MY_WEB_PORT_80_TCP", "tcp://10.96.0.10:80"),
            ("MY_WEB_PORT_80_TCP_PROTO", "tcp"),
            ("MY_WEB_PORT_80_TCP_PORT", "80"),
            ("MY_WEB_PORT_80_TCP_ADDR", "10.96.0.10"),
            ("MY_WEB_PORT_53_UDP", "udp://10.96.0.10:53"),
            ("MY_WEB_PORT_53_UDP_PROTO", "udp"),
            ("MY_WEB_PORT_53_UDP_PORT", "53"),
            ("MY_WEB_PORT_53_UDP_ADDR", "10.96.0.10"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(env, want);
    }

    #[test]
    fn namespaces_headless_and_enable_service_links() {
        let k = svc(
            "default",
            "kubernetes",
            "10.96.0.1",
            serde_json::json!([{"name": "https", "port": 443}]),
        );
        let other = svc(
            "other",
            "db",
            "10.96.0.20",
            serde_json::json!([{"port": 5432}]),
        );
        let mine = svc(
            "team",
            "cache",
            "10.96.0.30",
            serde_json::json!([{"port": 6379}]),
        );
        let headless = svc("team", "headless", "None", serde_json::json!([{"port": 1}]));
        let all = [&k, &other, &mine, &headless];
        let env = service_env(&pod("team", None), &all);
        assert_eq!(env["KUBERNETES_SERVICE_HOST"], "10.96.0.1");
        assert_eq!(env["KUBERNETES_SERVICE_PORT_HTTPS"], "443");
        assert_eq!(env["CACHE_SERVICE_PORT"], "6379");
        assert!(!env.contains_key("DB_SERVICE_HOST"));
        assert!(!env.keys().any(|k| k.starts_with("HEADLESS")));
        // enableServiceLinks: false keeps only the master Service.
        let env = service_env(&pod("team", Some(false)), &all);
        assert!(env.keys().all(|k| k.starts_with("KUBERNETES_")), "{env:?}");
        assert!(env.contains_key("KUBERNETES_PORT_443_TCP_ADDR"));
    }
}
