//! kubectl's verbs for workloads, client side over the `Objects` service: the table columns
//! of Deployments, ReplicaSets and Jobs (`get`), `describe deploy|rs|job`, `scale`, and
//! `rollout status|restart|undo`. Changes are made the way kubectl makes them: read the
//! object, change its spec, apply it back (the daemon keeps uid, status and history).

use std::time::Duration;

use anyhow::{anyhow, bail};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kinglet_proto::admin;
use kinglet_proto::admin::objects_client::ObjectsClient;
use serde_json::Value;
use tonic::transport::Channel;

use crate::fields::{num, opt, pairs};

const REVISION: &str = "deployment.kubernetes.io/revision";

/// kubectl's columns for a workload kind (None: not a workload).
pub fn header(kind: &str, wide: bool) -> Option<Vec<&'static str>> {
    let mut h = match kind {
        "Deployment" => vec!["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "ReplicaSet" => vec!["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
        "Job" => vec!["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"],
        "DaemonSet" => crate::apps_cli::DS_HEADER.to_vec(),
        "CronJob" => crate::apps_cli::CJ_HEADER.to_vec(),
        "Namespace" => return Some(vec!["NAME", "STATUS", "AGE"]),
        _ => return None,
    };
    if wide {
        h.extend(["CONTAINERS", "IMAGES", "SELECTOR"]);
    }
    Some(h)
}

/// One table row of a workload (the AGE is `age`).
pub fn row(o: &Value, age: String, wide: bool) -> Vec<String> {
    let name = o
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let desired = o
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let mut r = match o["kind"].as_str().unwrap_or("") {
        "Deployment" => vec![
            name,
            format!("{}/{desired}", num(o, "/status/readyReplicas")),
            num(o, "/status/updatedReplicas").to_string(),
            num(o, "/status/availableReplicas").to_string(),
            age,
        ],
        "ReplicaSet" => vec![
            name,
            desired.to_string(),
            num(o, "/status/replicas").to_string(),
            num(o, "/status/readyReplicas").to_string(),
            age,
        ],
        "DaemonSet" => crate::apps_cli::ds_row(o, name, age),
        "CronJob" => crate::apps_cli::cj_row(o, name, age),
        "Namespace" => {
            let phase = o.pointer("/status/phase").and_then(Value::as_str);
            return vec![name, phase.unwrap_or("Active").into(), age];
        }
        _ => {
            let conds = o
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let has = |t: &str| {
                conds
                    .iter()
                    .any(|c| c["type"] == t && c["status"] == "True")
            };
            let status = if has("Complete") {
                "Complete"
            } else if has("Failed") {
                "Failed"
            } else if o.pointer("/spec/suspend") == Some(&Value::Bool(true)) {
                "Suspended"
            } else {
                "Running"
            };
            let completions = o.pointer("/spec/completions").and_then(Value::as_i64);
            vec![
                name,
                status.into(),
                format!(
                    "{}/{}",
                    num(o, "/status/succeeded"),
                    completions
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "1".into())
                ),
                duration(o),
                age,
            ]
        }
    };
    if wide {
        let containers: Vec<&Value> = o
            .pointer("/spec/template/spec/containers")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        let names: Vec<&str> = containers
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        let images: Vec<&str> = containers
            .iter()
            .filter_map(|c| c["image"].as_str())
            .collect();
        let sel = match pairs(o.pointer("/spec/selector/matchLabels")) {
            none if none == "<none>" => String::new(),
            sel => sel,
        };
        r.extend([names.join(","), images.join(","), sel]);
    }
    r
}

/// A Job's DURATION column: start to completion, or to now while it runs.
fn duration(o: &Value) -> String {
    let time = |p: &str| {
        o.pointer(p)
            .and_then(Value::as_str)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
    };
    let Some(start) = time("/status/startTime") else {
        return String::new();
    };
    let end = time("/status/completionTime").unwrap_or_else(chrono::Utc::now);
    crate::fields::short_duration((end - start).num_seconds())
}

/// `kind/name` or `kind name`.
pub fn split_ref(kind: &str, name: Option<&str>) -> anyhow::Result<(String, String)> {
    match (kind.split_once('/'), name) {
        (Some((k, n)), None) => Ok((k.into(), n.into())),
        (None, Some(n)) => Ok((kind.into(), n.into())),
        _ => bail!("give TYPE/NAME or TYPE NAME, e.g. deploy/web"),
    }
}

pub(crate) async fn get_one(
    c: &mut ObjectsClient<Channel>,
    kind: &str,
    name: &str,
    ns: &str,
) -> anyhow::Result<Value> {
    let r = c
        .get(admin::GetRequest {
            kind: kind.into(),
            namespace: ns.into(),
            name: name.into(),
            ..Default::default()
        })
        .await
        .map_err(|s| anyhow!("{kind}/{name}: {}", s.message()))?
        .into_inner();
    let raw = r
        .objects
        .first()
        .ok_or_else(|| anyhow!("{kind} {ns}/{name} not found"))?;
    Ok(serde_json::from_str(raw)?)
}

pub(crate) async fn list(
    c: &mut ObjectsClient<Channel>,
    kind: &str,
    ns: &str,
) -> anyhow::Result<Vec<Value>> {
    let r = c
        .get(admin::GetRequest {
            kind: kind.into(),
            namespace: ns.into(),
            ..Default::default()
        })
        .await
        .map_err(|s| anyhow!("{kind}: {}", s.message()))?
        .into_inner();
    r.objects
        .iter()
        .map(|o| Ok(serde_json::from_str(o)?))
        .collect()
}

/// Apply `v` back (without its status, as a user's apply).
pub(crate) async fn put(c: &mut ObjectsClient<Channel>, mut v: Value) -> anyhow::Result<()> {
    if let Some(m) = v.as_object_mut() {
        m.remove("status");
    }
    let name = v
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    c.apply(admin::ApplyRequest {
        source: format!("kinglet ({name})"),
        content: v.to_string(),
        create_only: false,
        ..Default::default()
    })
    .await
    .map_err(|s| anyhow!("{name}: {}", s.message()))?;
    Ok(())
}

fn kind_word(kind: &str) -> anyhow::Result<&'static str> {
    match kind {
        "deploy" | "deployment" | "deployments" => Ok("deployment"),
        "rs" | "replicaset" | "replicasets" => Ok("replicaset"),
        "sts" | "statefulset" | "statefulsets" => Ok("statefulset"),
        k => bail!("cannot scale or roll out {k:?} (deployment, replicaset, statefulset)"),
    }
}

/// `kinglet scale deploy/NAME --replicas N`.
pub async fn scale(
    ch: Channel,
    target: &str,
    name: Option<&str>,
    replicas: i32,
    ns: &str,
) -> anyhow::Result<()> {
    if replicas < 0 {
        bail!("--replicas {replicas}: must be 0 or more");
    }
    let (kind, name) = split_ref(target, name)?;
    let kind = kind_word(&kind)?;
    let mut c = ObjectsClient::new(ch);
    let mut v = get_one(&mut c, kind, &name, ns).await?;
    v["spec"]["replicas"] = replicas.into();
    put(&mut c, v).await?;
    println!("{kind}.apps/{name} scaled");
    Ok(())
}

/// `kinglet rollout status|restart|undo|pause|resume|history deploy/NAME`.
pub async fn rollout(
    ch: Channel,
    verb: &str,
    target: &str,
    name: Option<&str>,
    to_revision: Option<i64>,
    timeout: Duration,
    ns: &str,
) -> anyhow::Result<()> {
    let (kind, name) = split_ref(target, name)?;
    if kind_word(&kind)? == "statefulset" && verb == "status" {
        return crate::sts_cli::rollout_status(ch, &name, ns, timeout).await;
    }
    if kind_word(&kind)? != "deployment" {
        bail!("rollout supports deployments");
    }
    let mut c = ObjectsClient::new(ch);
    match verb {
        "status" => rollout_status(&mut c, &name, ns, timeout).await,
        "pause" | "resume" => crate::apps_cli::pause(&mut c, &name, ns, verb == "pause").await,
        "history" => crate::apps_cli::history(&mut c, &name, ns, to_revision).await,
        "restart" => {
            let mut v = get_one(&mut c, "deployment", &name, ns).await?;
            if v.pointer("/spec/paused") == Some(&Value::Bool(true)) {
                bail!("can't restart paused deployment (run rollout resume first)");
            }
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let t = &mut v["spec"]["template"]["metadata"];
            if !t.is_object() {
                *t = serde_json::json!({});
            }
            t["annotations"]["kubectl.kubernetes.io/restartedAt"] = now.into();
            put(&mut c, v).await?;
            println!("deployment.apps/{name} restarted");
            Ok(())
        }
        "undo" => undo(&mut c, &name, ns, to_revision).await,
        v => bail!("unknown rollout verb {v:?} (status, restart, undo, pause, resume, history)"),
    }
}

async fn rollout_status(
    c: &mut ObjectsClient<Channel>,
    name: &str,
    ns: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = String::new();
    loop {
        let v = get_one(c, "deployment", name, ns).await?;
        let d: Deployment = serde_json::from_value(v)?;
        let spec = d.spec.clone().unwrap_or_default();
        let st = d.status.clone().unwrap_or_default();
        let want = spec.replicas.unwrap_or(1);
        let (updated, total, avail) = (
            st.updated_replicas.unwrap_or(0),
            st.replicas.unwrap_or(0),
            st.available_replicas.unwrap_or(0),
        );
        let timed_out = st
            .conditions
            .iter()
            .flatten()
            .any(|c| c.reason.as_deref() == Some("ProgressDeadlineExceeded"));
        if timed_out {
            bail!("deployment {name:?} exceeded its progress deadline");
        }
        let msg = if st.observed_generation < d.metadata.generation {
            "Waiting for deployment spec update to be observed...".to_owned()
        } else if updated < want {
            format!("Waiting for deployment {name:?} rollout to finish: {updated} out of {want} new replicas have been updated...")
        } else if total > updated {
            format!("Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...", total - updated)
        } else if avail < updated {
            format!("Waiting for deployment {name:?} rollout to finish: {avail} of {updated} updated replicas are available...")
        } else {
            println!("deployment {name:?} successfully rolled out");
            return Ok(());
        };
        if msg != last {
            println!("{msg}");
            last = msg;
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out waiting for the rollout of deployment {name:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Put the template of an earlier revision (the previous one by default) back.
async fn undo(
    c: &mut ObjectsClient<Channel>,
    name: &str,
    ns: &str,
    to: Option<i64>,
) -> anyhow::Result<()> {
    let mut d = get_one(c, "deployment", name, ns).await?;
    if d.pointer("/spec/paused") == Some(&Value::Bool(true)) {
        bail!("you cannot rollback a paused deployment; resume it first with 'kinglet rollout resume' and try again");
    }
    let uid = d
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let current: i64 = d
        .pointer(&format!(
            "/metadata/annotations/{}",
            REVISION.replace('/', "~1")
        ))
        .and_then(Value::as_str)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let mut owned: Vec<(i64, ReplicaSet)> = Vec::new();
    for v in list(c, "replicaset", ns).await? {
        let rs: ReplicaSet = serde_json::from_value(v)?;
        let mine = rs
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.uid == uid && o.controller == Some(true));
        if mine {
            let rev = rs
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(REVISION))
                .and_then(|r| r.parse().ok())
                .unwrap_or(0);
            owned.push((rev, rs));
        }
    }
    let target = match to {
        Some(r) => owned
            .iter()
            .find(|(rev, _)| *rev == r)
            .ok_or_else(|| anyhow!("unable to find specified revision {r} in history"))?,
        None => owned
            .iter()
            .filter(|(rev, _)| *rev < current)
            .max_by_key(|(rev, _)| *rev)
            .ok_or_else(|| anyhow!("no rollout history found for deployment {name:?}"))?,
    };
    let mut t = target
        .1
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .ok_or_else(|| anyhow!("revision {} has no template", target.0))?;
    if let Some(l) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        l.remove("pod-template-hash");
    }
    d["spec"]["template"] = serde_json::to_value(t)?;
    put(c, d).await?;
    println!("deployment.apps/{name} rolled back");
    Ok(())
}

/// The lines of `describe job` kubectl shows between the selector and the template.
fn job_fields(v: &Value, kv: &mut dyn FnMut(&str, String)) {
    let opt = |p: &str| opt(v, p);
    kv("Parallelism", opt("/spec/parallelism"));
    kv("Completions", opt("/spec/completions"));
    kv(
        "Completion Mode",
        v.pointer("/spec/completionMode")
            .and_then(Value::as_str)
            .unwrap_or("NonIndexed")
            .into(),
    );
    kv("Backoff Limit", opt("/spec/backoffLimit"));
    kv("Start Time", opt("/status/startTime"));
    kv("Completed At", opt("/status/completionTime"));
    kv("Duration", duration(v));
    kv(
        "Pods Statuses",
        format!(
            "{} Active ({} Ready) / {} Succeeded / {} Failed",
            num(v, "/status/active"),
            num(v, "/status/ready"),
            num(v, "/status/succeeded"),
            num(v, "/status/failed")
        ),
    );
    if let Some(idx) = v
        .pointer("/status/completedIndexes")
        .and_then(Value::as_str)
    {
        kv("Completed Indexes", idx.into());
    }
}

/// The lines of `describe deploy` about its strategy.
fn deployment_fields(v: &Value, kv: &mut dyn FnMut(&str, String)) {
    let strategy = v
        .pointer("/spec/strategy/type")
        .and_then(Value::as_str)
        .unwrap_or("RollingUpdate");
    kv("StrategyType", strategy.into());
    kv(
        "MinReadySeconds",
        num(v, "/spec/minReadySeconds").to_string(),
    );
    if strategy == "RollingUpdate" {
        let p = |f: &str| {
            opt(v, &format!("/spec/strategy/rollingUpdate/{f}")).replace("<unset>", "25%")
        };
        kv(
            "RollingUpdateStrategy",
            format!(
                "{} max unavailable, {} max surge",
                p("maxUnavailable"),
                p("maxSurge")
            ),
        );
    }
}

/// `describe deploy|rs|job NAME`: the object's main fields and its conditions.
pub async fn describe(ch: Channel, kind: &str, name: &str, ns: &str) -> anyhow::Result<()> {
    let kind = match kind {
        "job" | "jobs" => "job",
        k => kind_word(k)?,
    };
    let mut c = ObjectsClient::new(ch);
    let v = get_one(&mut c, kind, name, ns).await?;
    let mut out = String::new();
    let mut kv = |k: &str, v: String| out.push_str(&format!("{:<24}{v}\n", format!("{k}:")));
    kv("Name", name.into());
    kv("Namespace", ns.into());
    let map = |p: &str| pairs(v.pointer(p));
    kv("Labels", map("/metadata/labels"));
    kv("Annotations", map("/metadata/annotations"));
    kv("Selector", map("/spec/selector/matchLabels"));
    if kind == "job" {
        job_fields(&v, &mut kv);
    } else {
        kv(
            "Replicas",
            format!(
                "{} desired | {} updated | {} total | {} available | {} unavailable",
                v.pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1),
                num(&v, "/status/updatedReplicas"),
                num(&v, "/status/replicas"),
                num(&v, "/status/availableReplicas"),
                num(&v, "/status/unavailableReplicas"),
            ),
        );
    }
    if kind == "deployment" {
        deployment_fields(&v, &mut kv);
    }
    let images: Vec<String> = v
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "{}: {}",
                c["name"].as_str().unwrap_or(""),
                c["image"].as_str().unwrap_or("")
            )
        })
        .collect();
    kv("Containers", images.join(", "));
    let conditions: Vec<&Value> = v
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    out.push_str(&conditions_table(&conditions));
    print!("{out}");
    Ok(())
}

/// The Conditions table of `describe`, its Type column as wide as its longest type (kubectl
/// aligns with a tabwriter).
fn conditions_table(conditions: &[&Value]) -> String {
    let width = conditions
        .iter()
        .map(|c| c["type"].as_str().unwrap_or("").len() + 2)
        .max()
        .unwrap_or(0)
        .max(15);
    let mut out = format!(
        "Conditions:\n  {:<width$}Status  Reason\n  {:<width$}------  ------\n",
        "Type", "----"
    );
    for c in conditions {
        out.push_str(&format!(
            "  {:<width$}{:<8}{}\n",
            c["type"].as_str().unwrap_or(""),
            c["status"].as_str().unwrap_or(""),
            c["reason"].as_str().unwrap_or("")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_condition_type_keeps_its_columns_apart() {
        let long = serde_json::json!({"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached"});
        let short = serde_json::json!({"type": "Complete", "status": "True", "reason": "CompletionsReached"});
        let t = conditions_table(&[&long, &short]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[3], "  SuccessCriteriaMet  True    CompletionsReached");
        assert_eq!(lines[4], "  Complete            True    CompletionsReached");
        assert_eq!(lines[1], "  Type                Status  Reason");
        let avail = serde_json::json!({"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"});
        assert!(conditions_table(&[&avail]).contains("\n  Available      True    Minimum"));
    }
}
