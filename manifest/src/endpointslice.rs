//! Validation of hand-applied discovery.k8s.io/v1 EndpointSlices (the endpoints of a Service
//! without a selector), as the API server's for the fields Kinglet acts on: the
//! `kubernetes.io/service-name` label, `addressType` (IPv4 only: the pod network and the
//! Services' rules are IPv4), each endpoint's addresses, the ports. Every error names the
//! object and the field.

use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::names::dns_1035_label;
use crate::ManifestError;

/// The label that ties a slice to its Service.
const SERVICE_NAME: &str = "kubernetes.io/service-name";

pub(crate) fn check_endpoint_slice(
    source_name: &str,
    label: &str,
    s: &EndpointSlice,
) -> Result<(), ManifestError> {
    let bad = crate::names::invalid_at(source_name, label);
    let svc = s
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SERVICE_NAME))
        .map(String::as_str)
        .unwrap_or("");
    if svc.is_empty() {
        return Err(bad(
            format!("metadata.labels[{SERVICE_NAME}]"),
            "is required: name the Service (without a selector) these endpoints belong to".into(),
        ));
    }
    if !dns_1035_label(svc) {
        return Err(bad(
            format!("metadata.labels[{SERVICE_NAME}]"),
            format!("{svc:?} must be a Service name (a DNS-1035 label)"),
        ));
    }
    if s.address_type != "IPv4" {
        return Err(bad(
            "addressType".into(),
            format!(
                "{:?} is not supported: Kinglet's pod network and Service rules are IPv4; use IPv4",
                s.address_type
            ),
        ));
    }
    for (i, e) in s.endpoints.iter().enumerate() {
        if e.addresses.is_empty() {
            return Err(bad(
                format!("endpoints[{i}].addresses"),
                "must hold one address".into(),
            ));
        }
        for (j, a) in e.addresses.iter().enumerate() {
            if a.parse::<std::net::Ipv4Addr>().is_err() {
                return Err(bad(
                    format!("endpoints[{i}].addresses[{j}]"),
                    format!("{a:?} is not an IPv4 address"),
                ));
            }
        }
    }
    for (i, p) in s.ports.iter().flatten().enumerate() {
        if let Some(n) = p.port {
            if !(1..=65535).contains(&n) {
                return Err(bad(
                    format!("ports[{i}].port"),
                    format!("{n} must be between 1 and 65535"),
                ));
            }
        }
        if let Some(proto) = p.protocol.as_deref() {
            if !matches!(proto, "TCP" | "UDP" | "SCTP") {
                return Err(bad(
                    format!("ports[{i}].protocol"),
                    format!("{proto:?} is not one of TCP, UDP, SCTP"),
                ));
            }
        }
    }
    Ok(())
}

/// v1 Endpoints (the older form, for a Service without a selector; mirrored into an
/// EndpointSlice): every address an IPv4 address, every port 1–65535.
pub(crate) fn check_endpoints(
    source_name: &str,
    label: &str,
    e: &k8s_openapi::api::core::v1::Endpoints,
) -> Result<(), ManifestError> {
    let bad = crate::names::invalid_at(source_name, label);
    for (i, s) in e.subsets.iter().flatten().enumerate() {
        for (field, list) in [
            ("addresses", &s.addresses),
            ("notReadyAddresses", &s.not_ready_addresses),
        ] {
            for (j, a) in list.iter().flatten().enumerate() {
                if a.ip.parse::<std::net::Ipv4Addr>().is_err() {
                    return Err(bad(
                        format!("subsets[{i}].{field}[{j}].ip"),
                        format!("{:?} is not an IPv4 address", a.ip),
                    ));
                }
            }
        }
        for (j, p) in s.ports.iter().flatten().enumerate() {
            if !(1..=65535).contains(&p.port) {
                return Err(bad(
                    format!("subsets[{i}].ports[{j}].port"),
                    format!("{} must be between 1 and 65535", p.port),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::{parse, Object};

    fn slice(body: &str) -> Result<Vec<Object>, crate::ManifestError> {
        parse(
            "e.yaml",
            &format!("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: ext-1\n{body}"),
        )
    }

    #[test]
    fn accepts_a_slice_and_errors_name_the_field() {
        let ok = "  labels: {kubernetes.io/service-name: ext}\naddressType: IPv4\nendpoints:\n- addresses: [192.0.2.9]\nports: [{name: http, port: 8080, protocol: TCP}]\n";
        let o = slice(ok).unwrap();
        assert_eq!(o[0].key().to_string(), "EndpointSlice default/ext-1");
        assert_eq!(o[0].api_version(), "discovery.k8s.io/v1");
        for (body, field) in [
            (
                "addressType: IPv4\nendpoints: []\n",
                "metadata.labels[kubernetes.io/service-name]",
            ),
            (
                "  labels: {kubernetes.io/service-name: Ext_1}\naddressType: IPv4\nendpoints: []\n",
                "metadata.labels[kubernetes.io/service-name]",
            ),
            (
                "  labels: {kubernetes.io/service-name: ext}\naddressType: IPv6\nendpoints: []\n",
                "addressType",
            ),
            (
                "  labels: {kubernetes.io/service-name: ext}\naddressType: IPv4\nendpoints:\n- addresses: [nope]\n",
                "endpoints[0].addresses[0]",
            ),
            (
                "  labels: {kubernetes.io/service-name: ext}\naddressType: IPv4\nendpoints: []\nports: [{port: 0}]\n",
                "ports[0].port",
            ),
        ] {
            let e = slice(body).unwrap_err().to_string();
            assert!(e.contains(field) && e.contains("ext-1"), "{field}: {e}");
        }
    }

    #[test]
    fn v1_endpoints_are_accepted_and_checked() {
        let ep = |subsets: &str| {
            parse(
                "ep.yaml",
                &format!(
                    "apiVersion: v1\nkind: Endpoints\nmetadata: {{name: ext}}\nsubsets:\n{subsets}"
                ),
            )
        };
        let o = ep("- addresses: [{ip: 192.0.2.9}]\n  ports: [{port: 8080}]\n").unwrap();
        assert_eq!(o[0].key().to_string(), "Endpoints default/ext");
        let e = ep("- notReadyAddresses: [{ip: 'fe80::1'}]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("subsets[0].notReadyAddresses[0].ip"), "{e}");
        let e = ep("- addresses: [{ip: 192.0.2.9}]\n  ports: [{port: 0}]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("subsets[0].ports[0].port"), "{e}");
    }
}
