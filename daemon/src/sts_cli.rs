//! kubectl's verbs for StatefulSets, PersistentVolumeClaims and ControllerRevisions, client
//! side: their `get` columns, `describe sts|pvc`, and `rollout status sts/NAME` (kubectl's
//! StatefulSet status viewer). `scale sts` goes through `workloads_cli::scale`.

use std::time::Duration;

use anyhow::{anyhow, bail};
use k8s_openapi::api::apps::v1::StatefulSet;
use kinglet_proto::admin::objects_client::ObjectsClient;
use serde_json::Value;
use tonic::transport::Channel;

/// kubectl's columns for these kinds (None: another kind).
pub fn header(kind: &str, wide: bool) -> Option<Vec<&'static str>> {
    let mut h = match kind {
        "StatefulSet" => vec!["NAME", "READY", "AGE"],
        "PersistentVolumeClaim" => vec![
            "NAME",
            "STATUS",
            "VOLUME",
            "CAPACITY",
            "ACCESS MODES",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "AGE",
        ],
        "ControllerRevision" => return Some(vec!["NAME", "CONTROLLER", "REVISION", "AGE"]),
        _ => return None,
    };
    if wide {
        h.extend(if kind == "StatefulSet" {
            &["CONTAINERS", "IMAGES"][..]
        } else {
            &["VOLUMEMODE"][..]
        });
    }
    Some(h)
}

fn s(v: &Value, ptr: &str) -> String {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

fn num(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

/// kubectl's short access modes: RWO, ROX, RWX, RWOP.
fn modes(v: &Value, ptr: &str) -> String {
    let short = |m: &str| match m {
        "ReadWriteOnce" => "RWO",
        "ReadOnlyMany" => "ROX",
        "ReadWriteMany" => "RWX",
        "ReadWriteOncePod" => "RWOP",
        _ => "",
    };
    v.pointer(ptr)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(short)
        .collect::<Vec<_>>()
        .join(",")
}

fn or_unset(x: String) -> String {
    if x.is_empty() {
        "<unset>".into()
    } else {
        x
    }
}

fn containers(o: &Value) -> (String, String) {
    let cs: Vec<&Value> = o
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    let names: Vec<&str> = cs.iter().filter_map(|c| c["name"].as_str()).collect();
    let images: Vec<&str> = cs.iter().filter_map(|c| c["image"].as_str()).collect();
    (names.join(","), images.join(","))
}

/// One table row (the AGE is `age`).
pub fn row(o: &Value, age: String, wide: bool) -> Vec<String> {
    let name = s(o, "/metadata/name");
    match o["kind"].as_str().unwrap_or("") {
        "StatefulSet" => {
            let want = o
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let mut r = vec![
                name,
                format!("{}/{want}", num(o, "/status/readyReplicas")),
                age,
            ];
            if wide {
                let (c, i) = containers(o);
                r.extend([c, i]);
            }
            r
        }
        "ControllerRevision" => {
            let owner = o
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .and_then(|r| r.iter().find(|r| r["controller"] == true))
                .map(|r| {
                    let kind = r["kind"].as_str().unwrap_or("").to_lowercase();
                    format!("{kind}.apps/{}", r["name"].as_str().unwrap_or(""))
                })
                .unwrap_or_else(|| "<none>".into());
            vec![name, owner, num(o, "/revision").to_string(), age]
        }
        _ => {
            let bound = s(o, "/status/phase") == "Bound";
            let mut r = vec![
                name,
                or_pending(s(o, "/status/phase")),
                if bound {
                    s(o, "/spec/volumeName")
                } else {
                    String::new()
                },
                s(o, "/status/capacity/storage"),
                modes(o, "/status/accessModes"),
                or_unset(s(o, "/spec/storageClassName")),
                or_unset(s(o, "/spec/volumeAttributesClassName")),
                age,
            ];
            if wide {
                let mode = s(o, "/spec/volumeMode");
                r.push(if mode.is_empty() {
                    "Filesystem".into()
                } else {
                    mode
                });
            }
            r
        }
    }
}

fn or_pending(x: String) -> String {
    if x.is_empty() {
        "Pending".into()
    } else {
        x
    }
}

/// Whether `describe` of `kind` is here.
pub fn describes(kind: &str) -> bool {
    matches!(
        kind,
        "sts"
            | "statefulset"
            | "statefulsets"
            | "pvc"
            | "persistentvolumeclaim"
            | "persistentvolumeclaims"
    )
}

fn pairs(v: Option<&Value>) -> String {
    let m: Vec<String> = v
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    if m.is_empty() {
        "<none>".into()
    } else {
        m.join(",")
    }
}

async fn list(c: &mut ObjectsClient<Channel>, kind: &str, ns: &str) -> anyhow::Result<Vec<Value>> {
    let r = c
        .get(kinglet_proto::admin::GetRequest {
            kind: kind.into(),
            namespace: ns.into(),
            ..Default::default()
        })
        .await
        .map_err(crate::kubectl::status_err("get"))?
        .into_inner();
    r.objects
        .iter()
        .map(|o| serde_json::from_str(o).map_err(Into::into))
        .collect()
}

/// `describe sts NAME` / `describe pvc NAME`.
pub async fn describe(ch: Channel, kind: &str, name: &str, ns: &str) -> anyhow::Result<()> {
    let mut c = ObjectsClient::new(ch);
    let pvc = kind.starts_with('p');
    let word = if pvc {
        "persistentvolumeclaim"
    } else {
        "statefulset"
    };
    let v = crate::workloads_cli::get_one(&mut c, word, name, ns).await?;
    let mut out = String::new();
    let mut kv = |k: &str, v: String| out.push_str(&format!("{:<20}{v}\n", format!("{k}:")));
    kv("Name", name.into());
    kv("Namespace", ns.into());
    kv("CreationTimestamp", s(&v, "/metadata/creationTimestamp"));
    if pvc {
        let users = claim_users(&mut c, name, ns).await?;
        describe_claim(&v, &mut kv, users);
        print!("{out}");
        return Ok(());
    }
    let uid = s(&v, "/metadata/uid");
    let mut phases = std::collections::BTreeMap::<String, usize>::new();
    for p in list(&mut c, "pod", ns).await? {
        let owned = p["metadata"]["ownerReferences"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["uid"] == uid.as_str()));
        if owned {
            *phases
                .entry(or_pending(s(&p, "/status/phase")))
                .or_default() += 1;
        }
    }
    let count = |p: &str| phases.get(p).copied().unwrap_or(0);
    kv("Selector", pairs(v.pointer("/spec/selector/matchLabels")));
    kv("Labels", pairs(v.pointer("/metadata/labels")));
    kv("Annotations", pairs(v.pointer("/metadata/annotations")));
    let want = v
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    kv(
        "Replicas",
        format!("{want} desired | {} total", num(&v, "/status/replicas")),
    );
    let strategy = v
        .pointer("/spec/updateStrategy/type")
        .and_then(Value::as_str)
        .unwrap_or("RollingUpdate");
    kv("Update Strategy", strategy.into());
    if strategy == "RollingUpdate" {
        kv(
            "  Partition",
            num(&v, "/spec/updateStrategy/rollingUpdate/partition").to_string(),
        );
    }
    kv(
        "Pod Management",
        or_default(s(&v, "/spec/podManagementPolicy"), "OrderedReady"),
    );
    kv("Service Name", s(&v, "/spec/serviceName"));
    kv("Current Revision", s(&v, "/status/currentRevision"));
    kv("Update Revision", s(&v, "/status/updateRevision"));
    out.push_str(&format!(
        "Pods Status:        {} Running / {} Waiting / {} Succeeded / {} Failed\n",
        count("Running"),
        count("Pending"),
        count("Succeeded"),
        count("Failed")
    ));
    let (cs, images) = containers(&v);
    out.push_str(&format!(
        "Pod Template:\n  Labels:      {}\n  Containers:  {cs}\n  Images:      {images}\n",
        pairs(v.pointer("/spec/template/metadata/labels"))
    ));
    out.push_str("Volume Claims:\n");
    let claims = v
        .pointer("/spec/volumeClaimTemplates")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if claims.is_empty() {
        out.push_str("  <none>\n");
    }
    for t in claims {
        out.push_str(&format!(
            "  Name:          {}\n  StorageClass:  {}\n  Capacity:      {}\n  Access Modes:  {}\n",
            s(&t, "/metadata/name"),
            s(&t, "/spec/storageClassName"),
            s(&t, "/spec/resources/requests/storage"),
            modes(&t, "/spec/accessModes"),
        ));
    }
    print!("{out}");
    Ok(())
}

/// The pods of `ns` whose volumes name claim `name`.
async fn claim_users(
    c: &mut ObjectsClient<Channel>,
    name: &str,
    ns: &str,
) -> anyhow::Result<Vec<String>> {
    let uses = |p: &Value| {
        p.pointer("/spec/volumes")
            .and_then(Value::as_array)
            .is_some_and(|vs| {
                vs.iter().any(|x| {
                    x.pointer("/persistentVolumeClaim/claimName") == Some(&Value::from(name))
                })
            })
    };
    Ok(list(c, "pod", ns)
        .await?
        .iter()
        .filter(|p| uses(p))
        .map(|p| s(p, "/metadata/name"))
        .collect())
}

/// `describe pvc`'s fields after the name.
fn describe_claim(v: &Value, kv: &mut impl FnMut(&str, String), users: Vec<String>) {
    kv("StorageClass", s(v, "/spec/storageClassName"));
    kv("Status", or_pending(s(v, "/status/phase")));
    kv("Volume", s(v, "/spec/volumeName"));
    kv("Labels", pairs(v.pointer("/metadata/labels")));
    kv("Capacity", s(v, "/status/capacity/storage"));
    kv("Access Modes", modes(v, "/status/accessModes"));
    kv("VolumeMode", "Filesystem".into());
    let users = if users.is_empty() {
        "<none>".into()
    } else {
        users.join(",")
    };
    kv("Used By", users);
}

fn or_default(x: String, d: &str) -> String {
    if x.is_empty() {
        d.into()
    } else {
        x
    }
}

/// kubectl's StatefulSet status viewer: None when done (its message), else what it waits for.
pub fn status_message(set: &StatefulSet) -> anyhow::Result<(bool, String)> {
    let spec = set.spec.clone().unwrap_or_default();
    let st = set.status.clone().unwrap_or_default();
    let u = spec.update_strategy.clone().unwrap_or_default();
    if u.type_.as_deref().is_some_and(|t| t != "RollingUpdate") {
        bail!("rollout status is only available for RollingUpdate strategy type");
    }
    if st.observed_generation.is_none() || st.observed_generation < set.metadata.generation {
        return Ok((
            false,
            "Waiting for statefulset spec update to be observed...".into(),
        ));
    }
    let want = spec.replicas.unwrap_or(1);
    let ready = st.ready_replicas.unwrap_or(0);
    if ready < want {
        return Ok((
            false,
            format!("Waiting for {} pods to be ready...", want - ready),
        ));
    }
    let updated = st.updated_replicas.unwrap_or(0);
    let partition = u.rolling_update.and_then(|r| r.partition).unwrap_or(0);
    if partition > 0 {
        if updated < want - partition {
            return Ok((false, format!("Waiting for partitioned roll out to finish: {updated} out of {} new pods have been updated...", want - partition)));
        }
        return Ok((
            true,
            format!("partitioned roll out complete: {updated} new pods have been updated..."),
        ));
    }
    let (cur, upd) = (
        st.current_revision.unwrap_or_default(),
        st.update_revision.unwrap_or_default(),
    );
    if cur != upd {
        return Ok((
            false,
            format!(
                "waiting for statefulset rolling update to complete {} pods at revision {upd}...",
                st.current_replicas.unwrap_or(0)
            ),
        ));
    }
    Ok((
        true,
        format!(
            "statefulset rolling update complete {} pods at revision {cur}...",
            st.current_replicas.unwrap_or(0)
        ),
    ))
}

/// `rollout status sts/NAME`: print what it waits for until done or `timeout`.
pub async fn rollout_status(
    ch: Channel,
    name: &str,
    ns: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let mut c = ObjectsClient::new(ch);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = String::new();
    loop {
        let v = crate::workloads_cli::get_one(&mut c, "statefulset", name, ns).await?;
        let set: StatefulSet = serde_json::from_value(v)?;
        let (done, msg) = status_message(&set)?;
        if msg != last {
            println!("{msg}");
            last = msg;
        }
        if done {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(anyhow!(
                "timed out waiting for the rollout of statefulset {name:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(status: Value, strategy: Value) -> StatefulSet {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "generation": 2},
            "spec": {"replicas": 3, "selector": {}, "serviceName": "nginx", "updateStrategy": strategy,
                     "template": {}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn rollout_status_messages_are_kubectls() {
        let rolling = serde_json::json!({"type": "RollingUpdate"});
        let st = |ready: i32, cur: &str, upd: &str| {
            serde_json::json!({"observedGeneration": 2, "replicas": 3, "readyReplicas": ready,
                "currentReplicas": 3, "updatedReplicas": 1, "currentRevision": cur, "updateRevision": upd})
        };
        let m = status_message(&set(st(2, "a", "b"), rolling.clone())).unwrap();
        assert_eq!(m, (false, "Waiting for 1 pods to be ready...".into()));
        let m = status_message(&set(st(3, "a", "b"), rolling.clone())).unwrap();
        assert_eq!(
            m,
            (
                false,
                "waiting for statefulset rolling update to complete 3 pods at revision b...".into()
            )
        );
        let m = status_message(&set(st(3, "b", "b"), rolling)).unwrap();
        assert_eq!(
            m,
            (
                true,
                "statefulset rolling update complete 3 pods at revision b...".into()
            )
        );
        let part = serde_json::json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 2}});
        let m = status_message(&set(st(3, "a", "b"), part)).unwrap();
        assert_eq!(
            m,
            (
                true,
                "partitioned roll out complete: 1 new pods have been updated...".into()
            )
        );
        let stale = serde_json::json!({"observedGeneration": 1});
        let m = status_message(&set(stale, serde_json::json!({}))).unwrap();
        assert!(!m.0 && m.1.contains("spec update to be observed"));
        let e = status_message(&set(
            st(3, "a", "a"),
            serde_json::json!({"type": "OnDelete"}),
        ));
        assert!(e
            .unwrap_err()
            .to_string()
            .contains("only available for RollingUpdate"));
    }

    #[test]
    fn claim_rows() {
        let c = serde_json::json!({"kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
            "spec": {"volumeName": "pvc-1", "storageClassName": "local"},
            "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce", "ReadOnlyMany"]}});
        assert_eq!(
            row(&c, "5s".into(), false),
            ["data", "Bound", "pvc-1", "1Gi", "RWO,ROX", "local", "<unset>", "5s"]
        );
        let pending = serde_json::json!({"kind": "PersistentVolumeClaim", "metadata": {"name": "x"}, "spec": {"volumeName": "v"}});
        assert_eq!(row(&pending, "1s".into(), true)[..3], ["x", "Pending", ""]);
        let s = serde_json::json!({"kind": "StatefulSet", "metadata": {"name": "web"}, "spec": {"replicas": 3},
            "status": {"readyReplicas": 2}});
        assert_eq!(row(&s, "1m".into(), false), ["web", "2/3", "1m"]);
    }
}
