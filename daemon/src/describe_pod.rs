//! `kinglet describe pod NAME` in kubectl's layout: the pod, its init and app containers,
//! conditions, volumes and events.

use anyhow::anyhow;
use k8s_openapi::api::core::v1::Pod;
use kinglet_proto::admin;
use kinglet_proto::admin::objects_client::ObjectsClient;
use tonic::transport::Channel;

use crate::kubectl::{node_of, pod_status_column, status_err};

/// `kinglet describe pod NAME`.
pub(crate) async fn describe_pod(ch: Channel, name: &str, ns: &str) -> anyhow::Result<()> {
    let r = ObjectsClient::new(ch)
        .get(admin::GetRequest {
            kind: "pods".into(),
            namespace: ns.into(),
            all_namespaces: false,
            name: name.into(),
            ..Default::default()
        })
        .await
        .map_err(status_err("describe"))?
        .into_inner();
    let raw = r
        .objects
        .first()
        .ok_or_else(|| anyhow!("pod {ns}/{name} not found"))?;
    let p: Pod = serde_json::from_str(raw)?;
    print!("{}", pod_text(&p, name, ns, &r.events)?);
    Ok(())
}

/// `describe pod`'s text: the pod, its containers, conditions, volumes and `events`.
fn pod_text(p: &Pod, name: &str, ns: &str, events: &[String]) -> anyhow::Result<String> {
    let st = p.status.clone().unwrap_or_default();
    let spec = p.spec.clone().unwrap_or_default();
    let mut out = String::new();
    let mut kv = |k: &str, v: String| out.push_str(&format!("{:<14}{v}\n", format!("{k}:")));
    kv("Name", name.into());
    kv("Namespace", ns.into());
    kv("Node", node_of(p));
    kv(
        "Start Time",
        st.start_time
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_else(|| "<none>".into()),
    );
    let labels = p.metadata.labels.clone().unwrap_or_default();
    kv(
        "Labels",
        if labels.is_empty() {
            "<none>".into()
        } else {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        },
    );
    kv("Status", pod_status_column(p));
    kv("IP", st.pod_ip.clone().unwrap_or_else(|| "<none>".into()));
    kv("QoS Class", st.qos_class.clone().unwrap_or_default());
    if let Some(inits) = spec.init_containers.as_deref().filter(|i| !i.is_empty()) {
        let statuses = st.init_container_statuses.clone().unwrap_or_default();
        crate::podview::containers_section("Init Containers", inits, &statuses, &mut out);
    }
    let statuses = st.container_statuses.clone().unwrap_or_default();
    crate::podview::containers_section("Containers", &spec.containers, &statuses, &mut out);
    out.push_str("Conditions:\n  Type              Status\n");
    for c in st.conditions.iter().flatten() {
        out.push_str(&format!("  {:<18}{}\n", c.type_, c.status));
    }
    volumes_and_events(&spec, events, &mut out)?;
    Ok(out)
}

/// `describe pod`'s Volumes and Events sections.
fn volumes_and_events(
    spec: &k8s_openapi::api::core::v1::PodSpec,
    events: &[String],
    out: &mut String,
) -> anyhow::Result<()> {
    out.push_str("Volumes:\n");
    for v in spec.volumes.iter().flatten() {
        let what = if let Some(c) = &v.config_map {
            format!("ConfigMap ({})", c.name)
        } else if let Some(s) = &v.secret {
            format!("Secret ({})", s.secret_name.clone().unwrap_or_default())
        } else if v.empty_dir.is_some() {
            "EmptyDir".into()
        } else if let Some(h) = &v.host_path {
            format!("HostPath ({})", h.path)
        } else if let Some(c) = &v.persistent_volume_claim {
            format!("PersistentVolumeClaim ({})", c.claim_name)
        } else {
            "<unsupported>".into()
        };
        out.push_str(&format!("  {}: {what}\n", v.name));
    }
    out.push_str("Events:\n");
    if events.is_empty() {
        out.push_str("  <none>\n");
    } else {
        out.push_str(&format!(
            "  {:<8}{:<20}{:<8}{}\n",
            "Type", "Reason", "Age", "Message"
        ));
        for e in events {
            let e: serde_json::Value = serde_json::from_str(e)?;
            out.push_str(&format!(
                "  {:<8}{:<20}{:<8}{}\n",
                e["type"].as_str().unwrap_or(""),
                e["reason"].as_str().unwrap_or(""),
                crate::fields::since(e["lastTimestamp"].as_str())
                    .unwrap_or_else(|| "<unknown>".into()),
                e["message"].as_str().unwrap_or("")
            ));
        }
    }
    Ok(())
}
