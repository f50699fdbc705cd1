//! The columns `kubectl get` prints for Services and EndpointSlices (kubectl's printers:
//! `PORT(S)` as `80/TCP` or `80:30080/TCP`, `<none>` for what is unset, at most three
//! endpoint addresses then `+ N more...`; AGE is the caller's), and `kubectl describe svc`.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// `get svc` headers before AGE; `-o wide` adds SELECTOR after AGE.
pub const SERVICE_HEADER: &[&str] = &["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)"];
/// `get endpointslices` headers before AGE.
pub const SLICE_HEADER: &[&str] = &["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS"];

/// NAME, TYPE, CLUSTER-IP, EXTERNAL-IP, PORT(S).
pub fn service_row(s: &Service) -> Vec<String> {
    let spec = s.spec.clone().unwrap_or_default();
    let ty = spec.type_.clone().unwrap_or_else(|| "ClusterIP".into());
    let (cluster_ip, external) = if ty == "ExternalName" {
        (
            "<none>".to_owned(),
            spec.external_name.clone().unwrap_or_default(),
        )
    } else {
        let ip = spec
            .cluster_ip
            .clone()
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| "<none>".into());
        let ext = spec
            .external_ips
            .clone()
            .filter(|e| !e.is_empty())
            .map(|e| e.join(","));
        (ip, ext.unwrap_or_else(|| "<none>".into()))
    };
    let ports: Vec<String> = spec
        .ports
        .iter()
        .flatten()
        .map(|p| {
            let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
            match p.node_port.filter(|n| *n != 0) {
                Some(np) => format!("{}:{np}/{proto}", p.port),
                None => format!("{}/{proto}", p.port),
            }
        })
        .collect();
    let ports = if ports.is_empty() {
        "<none>".to_owned()
    } else {
        ports.join(",")
    };
    vec![
        s.metadata.name.clone().unwrap_or_default(),
        ty,
        cluster_ip,
        external,
        ports,
    ]
}

/// The SELECTOR column of `-o wide` (`k=v,k=v`, `<none>`).
pub fn service_selector(s: &Service) -> String {
    let sel = s
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    if sel.is_empty() {
        return "<none>".into();
    }
    sel.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// NAME, ADDRESSTYPE, PORTS, ENDPOINTS.
pub fn slice_row(s: &EndpointSlice) -> Vec<String> {
    let ports: Vec<String> = s
        .ports
        .iter()
        .flatten()
        .filter_map(|p| p.port.map(|n| n.to_string()))
        .collect();
    let addrs: Vec<&String> = s
        .endpoints
        .iter()
        .flat_map(|e| e.addresses.iter())
        .collect();
    let endpoints = match addrs.len() {
        0 => "<unset>".to_owned(),
        n if n > 3 => format!(
            "{} + {} more...",
            addrs[..3]
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(","),
            n - 3
        ),
        _ => addrs
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>()
            .join(","),
    };
    vec![
        s.metadata.name.clone().unwrap_or_default(),
        s.address_type.clone(),
        if ports.is_empty() {
            "<unset>".into()
        } else {
            ports.join(",")
        },
        endpoints,
    ]
}

fn map_or_none(m: Option<&std::collections::BTreeMap<String, String>>) -> String {
    match m {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
        _ => "<none>".into(),
    }
}

/// `kubectl describe svc` for `s`, with the ready endpoints of its slices (`ip:port` per port).
pub fn describe_service(s: &Service, slices: &[EndpointSlice]) -> String {
    let spec = s.spec.clone().unwrap_or_default();
    let mut out = String::new();
    let mut kv = |k: &str, v: String| out.push_str(&format!("{:<19}{v}\n", format!("{k}:")));
    kv("Name", s.metadata.name.clone().unwrap_or_default());
    kv(
        "Namespace",
        s.metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
    );
    kv("Labels", map_or_none(s.metadata.labels.as_ref()));
    kv("Annotations", map_or_none(s.metadata.annotations.as_ref()));
    kv("Selector", map_or_none(spec.selector.as_ref()));
    let ty = spec.type_.clone().unwrap_or_else(|| "ClusterIP".into());
    kv("Type", ty.clone());
    if ty == "ExternalName" {
        kv(
            "External Name",
            spec.external_name.clone().unwrap_or_default(),
        );
    } else {
        kv("IP Families", "IPv4".into());
        kv("IP", spec.cluster_ip.clone().unwrap_or_default());
        kv(
            "IPs",
            spec.cluster_ips.clone().unwrap_or_default().join(","),
        );
    }
    for p in spec.ports.iter().flatten() {
        let name = p
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "<unset>".into());
        let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
        kv("Port", format!("{name}  {}/{proto}", p.port));
        let target = match &p.target_port {
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n)) => {
                n.to_string()
            }
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(n)) => n.clone(),
            None => p.port.to_string(),
        };
        kv("TargetPort", format!("{target}/{proto}"));
        if let Some(np) = p.node_port.filter(|n| *n != 0) {
            kv("NodePort", format!("{name}  {np}/{proto}"));
        }
        let pname = p.name.clone().unwrap_or_default();
        let eps: Vec<String> = slices
            .iter()
            .filter_map(|sl| {
                let port = sl
                    .ports
                    .as_ref()?
                    .iter()
                    .find(|sp| sp.name.clone().unwrap_or_default() == pname)?
                    .port?;
                Some(
                    sl.endpoints
                        .iter()
                        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
                        .flat_map(|e| e.addresses.iter().map(move |a| format!("{a}:{port}")))
                        .collect::<Vec<_>>(),
                )
            })
            .flatten()
            .collect();
        kv("Endpoints", eps.join(","));
    }
    kv(
        "Session Affinity",
        spec.session_affinity
            .clone()
            .unwrap_or_else(|| "None".into()),
    );
    kv("Events", "<none>".into());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort};

    #[test]
    fn service_columns_as_kubectl() {
        let s = Service {
            metadata: Default::default(),
            spec: Some(ServiceSpec {
                type_: Some("NodePort".into()),
                cluster_ip: Some("10.96.0.2".into()),
                ports: Some(vec![
                    ServicePort {
                        port: 80,
                        node_port: Some(30080),
                        ..Default::default()
                    },
                    ServicePort {
                        port: 53,
                        protocol: Some("UDP".into()),
                        ..Default::default()
                    },
                ]),
                selector: Some([("app".to_owned(), "web".to_owned())].into()),
                ..Default::default()
            }),
            status: None,
        };
        assert_eq!(
            service_row(&s)[1..],
            ["NodePort", "10.96.0.2", "<none>", "80:30080/TCP,53/UDP"]
        );
        assert_eq!(service_selector(&s), "app=web");
        let slice = EndpointSlice {
            address_type: "IPv4".into(),
            endpoints: vec![Endpoint {
                addresses: vec!["10.0.0.5".into()],
                ..Default::default()
            }],
            ports: Some(vec![EndpointPort {
                name: Some(String::new()),
                port: Some(8080),
                ..Default::default()
            }]),
            metadata: Default::default(),
        };
        let d = describe_service(&s, &[slice]);
        for line in [
            "Selector:          app=web",
            "Type:              NodePort",
            "IP:                10.96.0.2",
            "Port:              <unset>  80/TCP",
            "NodePort:          <unset>  30080/TCP",
            "Endpoints:         10.0.0.5:8080",
            "Session Affinity:  None",
        ] {
            assert!(d.contains(line), "{line:?} in\n{d}");
        }
        let mut e = s.clone();
        e.spec = Some(ServiceSpec {
            type_: Some("ExternalName".into()),
            external_name: Some("example.org".into()),
            ..Default::default()
        });
        assert_eq!(
            service_row(&e)[1..],
            ["ExternalName", "<none>", "example.org", "<none>"]
        );
    }

    #[test]
    fn slice_columns_as_kubectl() {
        let ep = |a: &str| Endpoint {
            addresses: vec![a.into()],
            ..Default::default()
        };
        let s = EndpointSlice {
            address_type: "IPv4".into(),
            endpoints: ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
                .map(ep)
                .to_vec(),
            ports: Some(vec![EndpointPort {
                port: Some(8080),
                ..Default::default()
            }]),
            metadata: Default::default(),
        };
        assert_eq!(
            slice_row(&s)[1..],
            ["IPv4", "8080", "10.0.0.1,10.0.0.2,10.0.0.3 + 1 more..."]
        );
        let empty = EndpointSlice {
            endpoints: vec![],
            ports: None,
            ..s
        };
        assert_eq!(slice_row(&empty)[2..], ["<unset>", "<unset>"]);
    }
}
