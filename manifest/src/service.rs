//! Validation of v1 Services, as the API server's (`ValidateService`) for the fields Kinglet
//! acts on: type, clusterIP, ports (number, protocol, name, targetPort, nodePort),
//! externalName, sessionAffinity. Every error names the object and the field.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::names::{dns_label, iana_name, Bad};
use crate::ManifestError;

pub(crate) fn check_service(
    source_name: &str,
    label: &str,
    s: &Service,
) -> Result<(), ManifestError> {
    let bad = crate::names::invalid_at(source_name, label);
    let spec = s.spec.clone().unwrap_or_default();
    let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
    check_type_and_address(&spec, ty, &bad)?;
    check_traffic_policies(&spec, ty, &bad)?;
    let ports = spec.ports.clone().unwrap_or_default();
    let cluster_ip = spec.cluster_ip.as_deref().unwrap_or("");
    if ports.is_empty() && ty != "ExternalName" && cluster_ip != "None" {
        return Err(bad(
            "spec.ports".into(),
            "at least one port is required".into(),
        ));
    }
    check_ports(&ports, ty, &bad)?;
    check_affinity(&spec, &bad)
}

/// `spec.type`, `spec.clusterIP` and `spec.externalName` together.
fn check_type_and_address(spec: &ServiceSpec, ty: &str, bad: Bad<'_>) -> Result<(), ManifestError> {
    match ty {
        "ClusterIP" | "NodePort" | "ExternalName" => {}
        "LoadBalancer" => {
            return Err(bad(
                "spec.type".into(),
                "LoadBalancer is not supported on a single node; use NodePort".into(),
            ))
        }
        other => {
            return Err(bad(
                "spec.type".into(),
                format!("{other:?} is not one of ClusterIP, NodePort, ExternalName"),
            ))
        }
    }
    let cluster_ip = spec.cluster_ip.as_deref().unwrap_or("");
    if ty == "ExternalName" {
        if spec.external_name.as_deref().unwrap_or("").is_empty() {
            return Err(bad(
                "spec.externalName".into(),
                "is required for type ExternalName".into(),
            ));
        }
        if !cluster_ip.is_empty() {
            return Err(bad(
                "spec.clusterIP".into(),
                "must be empty for type ExternalName".into(),
            ));
        }
    } else if !cluster_ip.is_empty()
        && cluster_ip != "None"
        && cluster_ip.parse::<std::net::Ipv4Addr>().is_err()
    {
        return Err(bad(
            "spec.clusterIP".into(),
            format!("{cluster_ip:?} must be empty, \"None\" (headless) or an IPv4 address"),
        ));
    }
    if ty == "NodePort" && cluster_ip == "None" {
        return Err(bad(
            "spec.clusterIP".into(),
            "may not be \"None\" for type NodePort".into(),
        ));
    }
    Ok(())
}

/// `internalTrafficPolicy` / `externalTrafficPolicy`: Cluster or Local (on one node every
/// endpoint is local: both pick the same endpoints; `Local` keeps a NodePort client's
/// address); the external one only for NodePort.
fn check_traffic_policies(spec: &ServiceSpec, ty: &str, bad: Bad<'_>) -> Result<(), ManifestError> {
    for (field, v) in [
        ("spec.internalTrafficPolicy", &spec.internal_traffic_policy),
        ("spec.externalTrafficPolicy", &spec.external_traffic_policy),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !matches!(*v, "Cluster" | "Local")) {
            return Err(bad(
                field.into(),
                format!("{v:?} is not one of Cluster, Local"),
            ));
        }
    }
    if spec.external_traffic_policy.is_some() && ty != "NodePort" {
        return Err(bad(
            "spec.externalTrafficPolicy".into(),
            "may only be set for externally-accessible services (type NodePort)".into(),
        ));
    }
    Ok(())
}

/// Each port: name (required with several, unique), number, protocol, targetPort, nodePort.
fn check_ports(ports: &[ServicePort], ty: &str, bad: Bad<'_>) -> Result<(), ManifestError> {
    let (mut names, mut seen) = (BTreeSet::new(), BTreeSet::new());
    for (i, p) in ports.iter().enumerate() {
        let at = |f: &str| format!("spec.ports[{i}].{f}");
        let name = p.name.clone().unwrap_or_default();
        if ports.len() > 1 && name.is_empty() {
            return Err(bad(
                at("name"),
                "is required when the Service has more than one port".into(),
            ));
        }
        if !name.is_empty() && !dns_label(&name) {
            return Err(bad(
                at("name"),
                format!("{name:?} must be a DNS label (lowercase letters, digits, '-')"),
            ));
        }
        if !names.insert(name.clone()) {
            return Err(bad(at("name"), format!("{name:?} is used by another port")));
        }
        if !(1..=65535).contains(&p.port) {
            return Err(bad(at("port"), format!("{} must be 1 to 65535", p.port)));
        }
        let proto = p.protocol.as_deref().unwrap_or("TCP");
        if proto != "TCP" && proto != "UDP" {
            return Err(bad(
                at("protocol"),
                format!("{proto:?} is not supported (TCP or UDP)"),
            ));
        }
        if !seen.insert((p.port, proto.to_owned())) {
            return Err(bad(
                at("port"),
                format!("{}/{proto} is listed twice", p.port),
            ));
        }
        check_target_and_node_port(p, ty, &at, bad)?;
    }
    Ok(())
}

fn check_target_and_node_port(
    p: &ServicePort,
    ty: &str,
    at: &dyn Fn(&str) -> String,
    bad: Bad<'_>,
) -> Result<(), ManifestError> {
    match &p.target_port {
        Some(IntOrString::Int(n)) if !(1..=65535).contains(n) => {
            return Err(bad(at("targetPort"), format!("{n} must be 1 to 65535")))
        }
        Some(IntOrString::String(n)) if !iana_name(n) => {
            return Err(bad(at("targetPort"), format!("{n:?} must be a port number or a container port name (at most 15 lowercase letters, digits, '-')")))
        }
        _ => {}
    }
    if let Some(np) = p.node_port.filter(|n| *n != 0) {
        if ty != "NodePort" {
            return Err(bad(
                at("nodePort"),
                format!("may only be set for type NodePort, not {ty}"),
            ));
        }
        if !(30000..=32767).contains(&np) {
            return Err(bad(
                at("nodePort"),
                format!("{np} is outside the node port range 30000-32767"),
            ));
        }
    }
    Ok(())
}

/// `sessionAffinity` and its ClientIP timeout.
fn check_affinity(spec: &ServiceSpec, bad: Bad<'_>) -> Result<(), ManifestError> {
    match spec.session_affinity.as_deref().unwrap_or("None") {
        "None" | "ClientIP" => {}
        other => {
            return Err(bad(
                "spec.sessionAffinity".into(),
                format!("{other:?} is not one of None, ClientIP"),
            ))
        }
    }
    let timeout = spec
        .session_affinity_config
        .as_ref()
        .and_then(|c| c.client_ip.as_ref())
        .and_then(|c| c.timeout_seconds);
    if let Some(t) = timeout.filter(|t| !(1..=86400).contains(t)) {
        return Err(bad(
            "spec.sessionAffinityConfig.clientIP.timeoutSeconds".into(),
            format!("{t} must be 1 to 86400"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::{parse, Object};

    fn svc(spec: &str) -> Result<Vec<Object>, crate::ManifestError> {
        parse(
            "s.yaml",
            &format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n{spec}"),
        )
    }

    #[test]
    fn accepts_a_service() {
        let o = svc("  type: NodePort\n  selector: {app: web}\n  ports:\n  - {name: http, port: 80, targetPort: http, nodePort: 30080}\n  - {name: dns, port: 53, protocol: UDP, targetPort: 5353}\n").unwrap();
        let Object::Service(s) = &o[0] else { panic!() };
        assert_eq!(o[0].key().to_string(), "Service default/web");
        assert_eq!(s.spec.as_ref().unwrap().ports.as_ref().unwrap().len(), 2);
        assert!(svc("  clusterIP: None\n  selector: {app: web}\n").is_ok());
        assert!(svc("  type: NodePort\n  externalTrafficPolicy: Local\n  internalTrafficPolicy: Local\n  ports: [{port: 80}]\n").is_ok());
        assert!(svc("  type: ExternalName\n  externalName: example.org\n").is_ok());
    }

    #[test]
    fn errors_name_the_field() {
        for (spec, field) in [
            ("  type: Bogus\n  ports: [{port: 80}]\n", "spec.type"),
            ("  type: LoadBalancer\n  ports: [{port: 80}]\n", "spec.type"),
            ("  ports: []\n", "spec.ports"),
            ("  ports: [{port: 70000}]\n", "spec.ports[0].port"),
            ("  ports: [{port: 80}, {port: 81}]\n", "spec.ports[0].name"),
            (
                "  ports: [{port: 80, protocol: SCTP}]\n",
                "spec.ports[0].protocol",
            ),
            (
                "  internalTrafficPolicy: Nearby\n  ports: [{port: 80}]\n",
                "spec.internalTrafficPolicy",
            ),
            (
                "  externalTrafficPolicy: Local\n  ports: [{port: 80}]\n",
                "spec.externalTrafficPolicy",
            ),
            (
                "  ports: [{port: 80, targetPort: Not_A_Name}]\n",
                "spec.ports[0].targetPort",
            ),
            (
                "  ports: [{port: 80, nodePort: 30001}]\n",
                "spec.ports[0].nodePort",
            ),
            (
                "  type: NodePort\n  ports: [{port: 80, nodePort: 80}]\n",
                "spec.ports[0].nodePort",
            ),
            (
                "  clusterIP: 10.96.0.300\n  ports: [{port: 80}]\n",
                "spec.clusterIP",
            ),
            ("  type: ExternalName\n", "spec.externalName"),
            (
                "  sessionAffinity: Cookie\n  ports: [{port: 80}]\n",
                "spec.sessionAffinity",
            ),
            ("  ports: [{port: 80, portt: 1}]\n", "spec.ports[0].portt"),
        ] {
            let e = svc(spec).unwrap_err().to_string();
            assert!(
                e.contains("Service \"web\"") && e.contains(field),
                "{spec}: {e}"
            );
        }
    }
}
