//! `kinglet port-forward svc/NAME LOCAL:REMOTE`, as kubectl does it: REMOTE is a port of the
//! Service, one ready pod its selector matches is picked (the oldest), and the Service port
//! is mapped to that pod's targetPort (a number, or a container port name looked up in the
//! pod); then the pod's own port-forward runs.

use anyhow::{anyhow, bail};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kinglet_proto::admin;
use kinglet_proto::admin::objects_client::ObjectsClient;
use tonic::transport::Channel;

/// The Service name in `svc/NAME` (also `service/` and `services/`), if it is one.
pub fn service_target(target: &str) -> Option<&str> {
    let (kind, name) = target.split_once('/')?;
    matches!(kind, "svc" | "service" | "services").then_some(name)
}

/// The pod and its port for Service port `port` of `svc`, among `pods` (with status).
pub fn pick(svc: &Service, pods: &[Pod], port: u16) -> anyhow::Result<(String, u16)> {
    let name = svc.metadata.name.as_deref().unwrap_or("");
    let spec = svc.spec.clone().unwrap_or_default();
    let sp = spec
        .ports
        .iter()
        .flatten()
        .find(|p| p.port == i32::from(port))
        .ok_or_else(|| anyhow!("Service {name} does not have a service port {port}"))?;
    let selector = spec.selector.clone().unwrap_or_default();
    if selector.is_empty() {
        bail!("Service {name} has no selector: there is no pod to forward to");
    }
    let ready = |p: &Pod| {
        p.metadata.deletion_timestamp.is_none()
            && p.status
                .iter()
                .flat_map(|s| s.conditions.iter().flatten())
                .any(|c| c.type_ == "Ready" && c.status == "True")
    };
    let mut candidates: Vec<&Pod> = pods
        .iter()
        .filter(|p| {
            let labels = p.metadata.labels.clone().unwrap_or_default();
            selector.iter().all(|(k, v)| labels.get(k) == Some(v)) && ready(p)
        })
        .collect();
    candidates.sort_by_key(|p| {
        (
            p.metadata.creation_timestamp.as_ref().map(|t| t.0),
            p.metadata.name.clone(),
        )
    });
    let pod = candidates.first().ok_or_else(|| {
        anyhow!("Service {name} has no ready pod to forward to (see kinglet get endpointslices)")
    })?;
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let target = match sp.target_port.clone() {
        None => port,
        Some(IntOrString::Int(n)) => u16::try_from(n)
            .map_err(|_| anyhow!("targetPort {n} of Service {name} is out of range"))?,
        Some(IntOrString::String(pn)) => {
            let found = pod
                .spec
                .iter()
                .flat_map(|s| s.containers.iter())
                .flat_map(|c| c.ports.iter().flatten())
                .find(|cp| cp.name.as_deref() == Some(pn.as_str()))
                .map(|cp| cp.container_port)
                .ok_or_else(|| anyhow!("pod {pod_name} has no container port named {pn:?} (targetPort of Service {name})"))?;
            u16::try_from(found).map_err(|_| anyhow!("container port {found} is out of range"))?
        }
    };
    Ok((pod_name, target))
}

/// Forward LOCAL to the pod and port behind Service `name`'s port REMOTE.
pub async fn port_forward(ch: Channel, name: &str, ns: &str, spec: &str) -> anyhow::Result<()> {
    let (local, remote) = crate::stream_cli::parse_ports(spec)?;
    let mut c = ObjectsClient::new(ch.clone());
    let get = |kind: &str, name: &str| admin::GetRequest {
        kind: kind.into(),
        namespace: ns.into(),
        name: name.into(),
        ..Default::default()
    };
    let svc: Service = match c
        .get(get("services", name))
        .await
        .map_err(crate::kubectl::status_err("port-forward"))?
        .into_inner()
        .objects
        .first()
    {
        Some(raw) => serde_json::from_str(raw)?,
        None => bail!("service {ns}/{name} not found"),
    };
    let pods: Vec<Pod> = c
        .get(get("pods", ""))
        .await
        .map_err(crate::kubectl::status_err("port-forward"))?
        .into_inner()
        .objects
        .iter()
        .map(|o| serde_json::from_str(o))
        .collect::<Result<_, _>>()?;
    let (pod, target) = pick(&svc, &pods, remote)?;
    crate::stream_cli::port_forward(ch, &pod, ns, &format!("{local}:{target}")).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    fn pod(name: &str, ts: &str, ready: &str) -> Pod {
        obj(serde_json::json!({
            "metadata": {"name": name, "labels": {"app": "web"}, "creationTimestamp": ts},
            "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"conditions": [{"type": "Ready", "status": ready}]},
        }))
    }

    #[test]
    fn service_port_maps_to_a_ready_pods_target_port() {
        assert_eq!(service_target("svc/web"), Some("web"));
        assert_eq!(service_target("services/web"), Some("web"));
        assert_eq!(service_target("web"), None);
        let svc: Service = obj(serde_json::json!({
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [
                {"name": "http", "port": 80, "targetPort": "http"},
                {"name": "raw", "port": 81, "targetPort": 9000},
                {"name": "same", "port": 82},
            ]},
        }));
        let pods = [
            pod("new", "2024-01-02T00:00:00Z", "True"),
            pod("unready", "2024-01-01T00:00:00Z", "False"),
            pod("old", "2024-01-01T12:00:00Z", "True"),
        ];
        assert_eq!(pick(&svc, &pods, 80).unwrap(), ("old".into(), 8080));
        assert_eq!(pick(&svc, &pods, 81).unwrap(), ("old".into(), 9000));
        assert_eq!(pick(&svc, &pods, 82).unwrap(), ("old".into(), 82));
        let e = pick(&svc, &pods, 90).unwrap_err().to_string();
        assert!(e.contains("does not have a service port 90"), "{e}");
        let e = pick(&svc, &pods[1..2], 80).unwrap_err().to_string();
        assert!(e.contains("no ready pod"), "{e}");
    }
}
