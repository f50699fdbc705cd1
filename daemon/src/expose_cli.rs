//! `kinglet expose`: kubectl's expose. A Service for a Deployment, ReplicaSet, StatefulSet,
//! DaemonSet, Pod or Service, built as kubectl builds it: the object's selector (a pod's
//! labels), its labels, `--port` (else the containers' ports), `--target-port` (else the
//! port), `--type`, `--protocol`, `--name` (else the object's name). Created, never updated
//! (kubectl's AlreadyExists), or printed with `--dry-run=client -o yaml|json|name`.

use anyhow::{anyhow, bail};
use serde_json::{json, Map, Value};
use tonic::transport::Channel;

use crate::cli::ClientFlags;
use crate::create_cli::GenFlags;
use kinglet_proto::admin::objects_client::ObjectsClient;

/// `kinglet expose`'s arguments.
#[derive(Debug, clap::Args)]
pub struct ExposeArgs {
    /// deployment, rs, sts, ds, pod or svc — or KIND/NAME.
    pub kind: String,
    /// The object's name (unless given as KIND/NAME).
    pub name: Option<String>,
    /// The Service's port.
    #[arg(long)]
    pub port: Option<i32>,
    /// The pods' port it forwards to: a number or a container port's name (default: --port).
    #[arg(long)]
    pub target_port: Option<String>,
    /// ClusterIP (default) or NodePort.
    #[arg(long = "type")]
    pub service_type: Option<String>,
    /// TCP (default), UDP or SCTP.
    #[arg(long, default_value = "TCP")]
    pub protocol: String,
    /// The Service's name (default: the object's).
    #[arg(long = "name")]
    pub name_override: Option<String>,
    /// The selector, instead of the object's (`app=web,tier=front`).
    #[arg(long)]
    pub selector: Option<String>,
    #[command(flatten)]
    pub flags: GenFlags,
    #[command(flatten)]
    pub client: ClientFlags,
}

/// Run `kinglet expose`.
pub async fn expose(ch: Channel, args: ExposeArgs) -> anyhow::Result<()> {
    let (kind, name) = match (args.kind.split_once('/'), &args.name) {
        (Some((k, n)), None) => (k.to_owned(), n.to_owned()),
        (None, Some(n)) => (args.kind.clone(), n.clone()),
        _ => bail!("expose takes KIND NAME or KIND/NAME (e.g. expose deployment web --port 80)"),
    };
    let ns = &args.client.namespace;
    let objs = crate::label_cli::fetch_named(&ch, &kind, &name, ns).await?;
    let obj = &objs[0];
    let svc = service_for(obj, &args)?;
    if args.flags.is_dry_run()? {
        return crate::create_cli::print_dry_run(&svc, args.flags.output.as_deref());
    }
    let mut c = ObjectsClient::new(ch);
    let how = crate::kubectl::Send {
        created_as: "exposed",
        ..crate::kubectl::Send::CREATE
    };
    if crate::kubectl::send(&mut c, "expose".into(), svc.to_string(), &how).await? {
        return Err(crate::podref::Reported.into());
    }
    Ok(())
}

/// The Service kubectl's expose makes for `obj`.
pub(crate) fn service_for(obj: &Value, args: &ExposeArgs) -> anyhow::Result<Value> {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let selector = match &args.selector {
        Some(s) => parse_selector(s)?,
        None => selector_of(obj)?,
    };
    let ports = match args.port {
        Some(port) => {
            let target = args
                .target_port
                .as_deref()
                .map(|t| t.parse::<i64>().map_or_else(|_| json!(t), |n| json!(n)))
                .unwrap_or_else(|| json!(port));
            vec![json!({"port": port, "protocol": args.protocol, "targetPort": target})]
        }
        None => introspected_ports(obj, &args.protocol)?,
    };
    let mut meta = json!({"name": args.name_override.as_deref().unwrap_or(name)});
    if let Some(ns) = obj["metadata"]["namespace"].as_str() {
        meta["namespace"] = ns.into();
    }
    if let Some(labels) = obj["metadata"]["labels"].as_object() {
        meta["labels"] = labels.clone().into();
    }
    let mut spec = json!({"ports": ports, "selector": selector});
    if let Some(t) = &args.service_type {
        spec["type"] = t.as_str().into();
    }
    Ok(json!({"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}))
}

/// The pods an object selects, as kubectl introspects it: a workload's matchLabels, a pod's
/// labels, a Service's selector.
fn selector_of(obj: &Value) -> anyhow::Result<Value> {
    let kind = obj["kind"].as_str().unwrap_or_default();
    let sel = match kind {
        "Pod" => &obj["metadata"]["labels"],
        "Service" => &obj["spec"]["selector"],
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => {
            let s = &obj["spec"]["selector"];
            if s["matchExpressions"].as_array().is_some_and(|e| !e.is_empty()) {
                bail!("couldn't retrieve selectors: the {kind}'s selector has matchExpressions; give --selector");
            }
            &s["matchLabels"]
        }
        other => bail!("cannot expose a {other}: deployment, replicaset, statefulset, daemonset, pod or service"),
    };
    match sel.as_object() {
        Some(m) if !m.is_empty() => Ok(Value::Object(m.clone())),
        _ => bail!("couldn't retrieve selectors from the {kind}: it has none; give --selector"),
    }
}

/// `k=v,k2=v2` as a Service selector.
fn parse_selector(s: &str) -> anyhow::Result<Value> {
    let mut m = Map::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| anyhow!("--selector {s}: expected key=value pairs"))?;
        m.insert(k.trim().to_owned(), v.trim().into());
    }
    anyhow::ensure!(!m.is_empty(), "--selector is empty");
    Ok(Value::Object(m))
}

/// Without --port: the containers' ports (a Service's own ports), named port-1, port-2, ...
/// when there are several.
fn introspected_ports(obj: &Value, protocol: &str) -> anyhow::Result<Vec<Value>> {
    let kind = obj["kind"].as_str().unwrap_or_default();
    let mut ports: Vec<(i64, String)> = Vec::new();
    if kind == "Service" {
        for p in obj["spec"]["ports"].as_array().into_iter().flatten() {
            if let Some(n) = p["port"].as_i64() {
                ports.push((n, p["protocol"].as_str().unwrap_or(protocol).to_owned()));
            }
        }
    } else {
        let pod_spec = if kind == "Pod" {
            &obj["spec"]
        } else {
            &obj["spec"]["template"]["spec"]
        };
        for c in pod_spec["containers"].as_array().into_iter().flatten() {
            for p in c["ports"].as_array().into_iter().flatten() {
                if let Some(n) = p["containerPort"].as_i64() {
                    ports.push((n, p["protocol"].as_str().unwrap_or(protocol).to_owned()));
                }
            }
        }
    }
    if ports.is_empty() {
        bail!("couldn't find port via --port flag or introspection (the {kind} declares no container port)");
    }
    let several = ports.len() > 1;
    Ok(ports
        .iter()
        .enumerate()
        .map(|(i, (n, proto))| {
            let mut p = json!({"port": n, "protocol": proto, "targetPort": n});
            if several {
                p["name"] = format!("port-{}", i + 1).into();
            }
            p
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: ExposeArgs,
    }

    fn args(a: &[&str]) -> ExposeArgs {
        let mut v = vec!["expose"];
        v.extend_from_slice(a);
        Cli::parse_from(v).args
    }

    #[test]
    fn a_deployment_exposed_as_kubectl_does() {
        let d = crate::create_cli::deployment("web", "prod", &["nginx".into()], 2, Some(80), &[]);
        let svc = service_for(
            &d,
            &args(&["deployment", "web", "--port", "8080", "--target-port", "80"]),
        )
        .unwrap();
        assert_eq!(svc["metadata"]["name"], "web");
        assert_eq!(svc["metadata"]["namespace"], "prod");
        assert_eq!(svc["metadata"]["labels"]["app"], "web");
        assert_eq!(svc["spec"]["selector"], json!({"app": "web"}));
        assert_eq!(
            svc["spec"]["ports"],
            json!([{"port": 8080, "protocol": "TCP", "targetPort": 80}])
        );
        assert!(svc["spec"].get("type").is_none());
        // No --port: the container's; --type and --name.
        let svc = service_for(
            &d,
            &args(&["deploy/web", "--type", "NodePort", "--name", "web-np"]),
        )
        .unwrap();
        assert_eq!(svc["metadata"]["name"], "web-np");
        assert_eq!(svc["spec"]["type"], "NodePort");
        assert_eq!(
            svc["spec"]["ports"],
            json!([{"port": 80, "protocol": "TCP", "targetPort": 80}])
        );
        // A named target port stays a name.
        let svc = service_for(
            &d,
            &args(&["deploy", "web", "--port", "80", "--target-port", "http"]),
        )
        .unwrap();
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], "http");
    }

    #[test]
    fn pods_without_ports_or_selectors_are_refused_clearly() {
        let pod = json!({"kind": "Pod", "metadata": {"name": "p", "labels": {"run": "p"}},
            "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 53, "protocol": "UDP"},
                                                              {"containerPort": 8080}]}]}});
        let svc = service_for(&pod, &args(&["pod", "p"])).unwrap();
        assert_eq!(svc["spec"]["selector"], json!({"run": "p"}));
        assert_eq!(svc["spec"]["ports"][0]["name"], "port-1");
        assert_eq!(svc["spec"]["ports"][0]["protocol"], "UDP");
        assert_eq!(svc["spec"]["ports"][1]["port"], 8080);
        let bare = json!({"kind": "Pod", "metadata": {"name": "b"}, "spec": {"containers": [{"name": "c"}]}});
        let e = service_for(&bare, &args(&["pod", "b", "--port", "80"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("couldn't retrieve selectors"), "{e}");
        let e = service_for(&bare, &args(&["pod", "b", "--selector", "x=y"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("couldn't find port"), "{e}");
        let svc = service_for(
            &bare,
            &args(&["pod", "b", "--selector", "x=y", "--port", "1"]),
        )
        .unwrap();
        assert_eq!(svc["spec"]["selector"], json!({"x": "y"}));
    }
}
