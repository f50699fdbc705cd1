//! The ingress proxy's settings (`[ingress]` in the config file) and its kubectl-shaped
//! output: `get ingress|ing` (NAME CLASS HOSTS ADDRESS PORTS AGE), `get ingressclass`
//! (NAME CONTROLLER PARAMETERS AGE) and `describe ingress`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::anyhow;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};
use kinglet_proto::admin;
use kinglet_proto::admin::objects_client::ObjectsClient;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tonic::transport::Channel;

/// `[ingress]`: on by default, every address, ports 80 and 443; a port of 0 turns that
/// listener off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct IngressSettings {
    pub enabled: bool,
    pub address: IpAddr,
    pub http_port: u16,
    pub https_port: u16,
}

impl Default for IngressSettings {
    fn default() -> Self {
        IngressSettings {
            enabled: true,
            address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            http_port: 80,
            https_port: 443,
        }
    }
}

impl IngressSettings {
    /// The proxy's listeners, None when the ingress is off.
    pub fn proxy_config(&self) -> Option<kinglet_ingress::IngressConfig> {
        let at = |p: u16| (p != 0).then_some(SocketAddr::new(self.address, p));
        (self.enabled && (self.http_port != 0 || self.https_port != 0)).then(|| {
            kinglet_ingress::IngressConfig {
                http: at(self.http_port),
                https: at(self.https_port),
            }
        })
    }
}

/// The `get` columns of `kind`, without AGE's place changed (kubectl's).
pub fn header(kind: &str) -> Option<Vec<&'static str>> {
    match kind {
        "Ingress" => Some(vec!["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]),
        "IngressClass" => Some(vec!["NAME", "CONTROLLER", "PARAMETERS", "AGE"]),
        _ => None,
    }
}

/// One `get` row of an Ingress or IngressClass, as kubectl prints it.
pub fn row(o: &Value, age: String) -> Vec<String> {
    let name = o["metadata"]["name"].as_str().unwrap_or("").to_owned();
    if o["kind"] == "IngressClass" {
        let params = match o.pointer("/spec/parameters") {
            Some(p) if p.is_object() => format!(
                "{}/{}",
                p["kind"].as_str().unwrap_or(""),
                p["name"].as_str().unwrap_or("")
            ),
            _ => "<none>".into(),
        };
        let controller = o.pointer("/spec/controller").and_then(Value::as_str);
        return vec![name, controller.unwrap_or("").into(), params, age];
    }
    let Ok(ing) = serde_json::from_value::<Ingress>(o.clone()) else {
        return vec![
            name,
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            age,
        ];
    };
    let spec = ing.spec.clone().unwrap_or_default();
    let class = spec
        .ingress_class_name
        .clone()
        .unwrap_or_else(|| "<none>".into());
    let hosts: Vec<String> = spec
        .rules
        .iter()
        .flatten()
        .map(|r| {
            r.host
                .clone()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "*".into())
        })
        .collect();
    let hosts = match hosts.len() {
        0 => "*".to_owned(),
        n if n > 4 => format!("{} + {} more...", hosts[..4].join(","), n - 4),
        _ => hosts.join(","),
    };
    let address: Vec<String> = ing
        .status
        .iter()
        .filter_map(|s| s.load_balancer.as_ref())
        .flat_map(|lb| lb.ingress.iter().flatten())
        .filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone()))
        .collect();
    let ports = if spec.tls.as_ref().is_some_and(|t| !t.is_empty()) {
        "80, 443"
    } else {
        "80"
    };
    vec![name, class, hosts, address.join(","), ports.into(), age]
}

async fn list<T: serde::de::DeserializeOwned>(
    c: &mut ObjectsClient<Channel>,
    kind: &str,
    name: &str,
    ns: &str,
) -> anyhow::Result<Vec<T>> {
    let r = c
        .get(admin::GetRequest {
            kind: kind.into(),
            namespace: ns.into(),
            name: name.into(),
            ..Default::default()
        })
        .await
        .map_err(crate::kubectl::status_err("describe"))?
        .into_inner();
    r.objects
        .iter()
        .map(|o| serde_json::from_str(o).map_err(anyhow::Error::from))
        .collect()
}

/// `kinglet describe ingress NAME`: kubectl's layout, each backend with its ready endpoints.
pub async fn describe(ch: Channel, name: &str, ns: &str) -> anyhow::Result<()> {
    let mut c = ObjectsClient::new(ch);
    let ing: Ingress = list(&mut c, "ingress", name, ns)
        .await?
        .pop()
        .ok_or_else(|| anyhow!("ingress {ns}/{name} not found"))?;
    let services: Vec<Service> = list(&mut c, "services", "", ns).await?;
    let slices: Vec<EndpointSlice> = list(&mut c, "endpointslices", "", ns).await?;
    print!("{}", describe_text(&ing, &services, &slices));
    Ok(())
}

fn describe_text(ing: &Ingress, services: &[Service], slices: &[EndpointSlice]) -> String {
    let ns = ing.metadata.namespace.as_deref().unwrap_or("default");
    let backend = |b: &IngressBackend| {
        let Some(s) = &b.service else {
            return "<resource>".to_owned();
        };
        let port = s.port.clone().unwrap_or_default();
        let port = port
            .name
            .or(port.number.map(|n| n.to_string()))
            .unwrap_or_default();
        let eps = kinglet_ingress::routes::resolve(ns, b, services, slices).endpoints;
        let eps: Vec<String> = eps.iter().map(|e| e.to_string()).collect();
        let eps = if eps.is_empty() {
            "<none>".to_owned()
        } else {
            eps.join(",")
        };
        format!("{}:{port} ({eps})", s.name)
    };
    let spec = ing.spec.clone().unwrap_or_default();
    let mut out = String::new();
    let mut kv = |k: &str, v: String| out.push_str(&format!("{:<18}{v}\n", format!("{k}:")));
    let labels = ing.metadata.labels.clone().unwrap_or_default();
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    kv("Name", ing.metadata.name.clone().unwrap_or_default());
    kv(
        "Labels",
        if labels.is_empty() {
            "<none>".into()
        } else {
            labels.join("\n                  ")
        },
    );
    kv("Namespace", ns.to_owned());
    let address = row(
        &serde_json::to_value(ing).unwrap_or_default(),
        String::new(),
    )[3]
    .clone();
    kv("Address", address);
    kv(
        "Ingress Class",
        spec.ingress_class_name
            .clone()
            .unwrap_or_else(|| "<none>".into()),
    );
    kv(
        "Default backend",
        spec.default_backend
            .as_ref()
            .map(backend)
            .unwrap_or_else(|| "<default>".into()),
    );
    let tls = spec.tls.clone().unwrap_or_default();
    if !tls.is_empty() {
        out.push_str("TLS:\n");
        for t in &tls {
            out.push_str(&format!(
                "  {} terminates {}\n",
                t.secret_name.as_deref().unwrap_or("SNI routes"),
                t.hosts.clone().unwrap_or_default().join(",")
            ));
        }
    }
    out.push_str("Rules:\n  Host        Path  Backends\n  ----        ----  --------\n");
    for r in spec.rules.iter().flatten() {
        out.push_str(&format!("  {}\n", r.host.as_deref().unwrap_or("*")));
        for p in r.http.iter().flat_map(|h| h.paths.iter()) {
            out.push_str(&format!(
                "              {}  {}\n",
                p.path.as_deref().unwrap_or("/"),
                backend(&p.backend)
            ));
        }
    }
    let ann = ing.metadata.annotations.clone().unwrap_or_default();
    let ann: Vec<String> = ann.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    out.push_str(&format!(
        "{:<18}{}\nEvents:           <none>\n",
        "Annotations:",
        if ann.is_empty() {
            "<none>".into()
        } else {
            ann.join("\n                  ")
        }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_default_on_80_and_443_and_zero_turns_a_listener_off() {
        let d = IngressSettings::default().proxy_config().unwrap();
        assert_eq!(d.http, Some("0.0.0.0:80".parse().unwrap()));
        assert_eq!(d.https, Some("0.0.0.0:443".parse().unwrap()));
        let s: IngressSettings = toml::from_str("https-port = 0\nhttp-port = 18080\n").unwrap();
        let c = s.proxy_config().unwrap();
        assert_eq!((c.http.unwrap().port(), c.https), (18080, None));
        let off: IngressSettings = toml::from_str("enabled = false\n").unwrap();
        assert_eq!(off.proxy_config(), None);
        assert!(toml::from_str::<IngressSettings>("port = 1\n").is_err());
    }

    #[test]
    fn rows_and_describe_as_kubectl_prints_them() {
        let o = serde_json::json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "main", "namespace": "default"},
            "spec": {
                "ingressClassName": "kinglet",
                "tls": [{"hosts": ["a.test"], "secretName": "a-tls"}],
                "rules": [
                    {"host": "a.test", "http": {"paths": [{"path": "/api", "pathType": "Prefix",
                        "backend": {"service": {"name": "api", "port": {"number": 80}}}}]}},
                    {"http": {"paths": [{"path": "/", "pathType": "Prefix",
                        "backend": {"service": {"name": "web", "port": {"name": "http"}}}}]}},
                ],
            },
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.7"}]}},
        });
        assert_eq!(
            row(&o, "5s".into()),
            ["main", "kinglet", "a.test,*", "192.0.2.7", "80, 443", "5s"]
        );
        let c = serde_json::json!({"kind": "IngressClass", "metadata": {"name": "kinglet"},
            "spec": {"controller": "kinglet.io/ingress-controller"}});
        assert_eq!(
            row(&c, "1m".into()),
            ["kinglet", "kinglet.io/ingress-controller", "<none>", "1m"]
        );
        let ing: Ingress = serde_json::from_value(o).unwrap();
        let text = describe_text(&ing, &[], &[]);
        for want in [
            "Address:          192.0.2.7",
            "a-tls terminates a.test",
            "/api  api:80 (<none>)",
            "web:http (<none>)",
        ] {
            assert!(text.contains(want), "{want} in:\n{text}");
        }
    }
}
