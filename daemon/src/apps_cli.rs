//! kubectl's client side for the DaemonSet and CronJob kinds over the `Objects` service: the
//! `get ds` and `get cronjob` columns, `describe ds` (its node counts and its pods' phases)
//! and `describe cronjob` (schedule, policies, active jobs).

use anyhow::anyhow;
use kinglet_proto::admin::objects_client::ObjectsClient;
use serde_json::Value;
use tonic::transport::Channel;

use crate::fields::{num, opt, pairs};
use crate::workloads_cli::{get_one, list};

/// `kubectl get ds` columns (wide adds CONTAINERS, IMAGES, SELECTOR).
pub const DS_HEADER: &[&str] = &[
    "NAME",
    "DESIRED",
    "CURRENT",
    "READY",
    "UP-TO-DATE",
    "AVAILABLE",
    "NODE SELECTOR",
    "AGE",
];

/// `kubectl get cronjob` columns (wide adds CONTAINERS, IMAGES, SELECTOR).
pub const CJ_HEADER: &[&str] = &[
    "NAME",
    "SCHEDULE",
    "TIMEZONE",
    "SUSPEND",
    "ACTIVE",
    "LAST SCHEDULE",
    "AGE",
];

/// One `get cronjob` row (without the wide columns).
pub fn cj_row(o: &Value, name: String, age: String) -> Vec<String> {
    let s = |p: &str| o.pointer(p).and_then(Value::as_str);
    vec![
        name,
        s("/spec/schedule").unwrap_or("").to_owned(),
        s("/spec/timeZone").unwrap_or("<none>").to_owned(),
        (o.pointer("/spec/suspend") == Some(&Value::Bool(true))).to_string(),
        o.pointer("/status/active")
            .and_then(Value::as_array)
            .map_or(0, Vec::len)
            .to_string(),
        crate::fields::since(s("/status/lastScheduleTime")).unwrap_or_else(|| "<none>".into()),
        age,
    ]
}

/// One `get ds` row (without the wide columns).
pub fn ds_row(o: &Value, name: String, age: String) -> Vec<String> {
    vec![
        name,
        num(o, "/status/desiredNumberScheduled").to_string(),
        num(o, "/status/currentNumberScheduled").to_string(),
        num(o, "/status/numberReady").to_string(),
        num(o, "/status/updatedNumberScheduled").to_string(),
        num(o, "/status/numberAvailable").to_string(),
        pairs(o.pointer("/spec/template/spec/nodeSelector")),
        age,
    ]
}

/// Kinds [`describe`] handles.
pub fn describes(kind: &str) -> bool {
    matches!(
        kind,
        "ds" | "daemonset" | "daemonsets" | "cj" | "cronjob" | "cronjobs"
    )
}

/// `describe cronjob NAME`.
async fn describe_cron_job(ch: Channel, name: &str, ns: &str) -> anyhow::Result<()> {
    let mut c = ObjectsClient::new(ch);
    let v = get_one(&mut c, "cronjob", name, ns).await?;
    let s = |p: &str| v.pointer(p).and_then(Value::as_str);
    let opt = |p: &str| opt(&v, p);
    let mut out = String::new();
    let mut kv = |k: &str, v: String| out.push_str(&format!("{:<32}{v}\n", format!("{k}:")));
    kv("Name", name.into());
    kv("Namespace", ns.into());
    kv("Labels", pairs(v.pointer("/metadata/labels")));
    kv("Annotations", pairs(v.pointer("/metadata/annotations")));
    kv("Schedule", s("/spec/schedule").unwrap_or("").into());
    kv("Time Zone", s("/spec/timeZone").unwrap_or("<unset>").into());
    kv(
        "Concurrency Policy",
        s("/spec/concurrencyPolicy").unwrap_or("Allow").into(),
    );
    kv(
        "Suspend",
        (v.pointer("/spec/suspend") == Some(&Value::Bool(true))).to_string(),
    );
    kv(
        "Successful Job History Limit",
        opt("/spec/successfulJobsHistoryLimit").replace("<unset>", "3"),
    );
    kv(
        "Failed Job History Limit",
        opt("/spec/failedJobsHistoryLimit").replace("<unset>", "1"),
    );
    kv(
        "Starting Deadline Seconds",
        opt("/spec/startingDeadlineSeconds"),
    );
    kv("Last Schedule Time", opt("/status/lastScheduleTime"));
    kv("Last Successful Time", opt("/status/lastSuccessfulTime"));
    let active: Vec<&str> = v
        .pointer("/status/active")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str())
        .collect();
    kv(
        "Active Jobs",
        if active.is_empty() {
            "<none>".into()
        } else {
            active.join(", ")
        },
    );
    print!("{out}");
    Ok(())
}

/// `describe ds|cronjob NAME`.
pub async fn describe(ch: Channel, kind: &str, name: &str, ns: &str) -> anyhow::Result<()> {
    if matches!(kind, "cj" | "cronjob" | "cronjobs") {
        return describe_cron_job(ch, name, ns).await;
    }
    let mut c = ObjectsClient::new(ch);
    let v = get_one(&mut c, "daemonset", name, ns).await?;
    let uid = v
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut phases = std::collections::BTreeMap::<String, usize>::new();
    for p in list(&mut c, "pod", ns).await? {
        let owned = p["metadata"]["ownerReferences"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["uid"] == uid));
        if owned {
            let phase = p
                .pointer("/status/phase")
                .and_then(Value::as_str)
                .unwrap_or("Pending");
            *phases.entry(phase.to_owned()).or_default() += 1;
        }
    }
    let count = |p: &str| phases.get(p).copied().unwrap_or(0);
    let mut out = String::new();
    let mut kv = |k: &str, v: String| out.push_str(&format!("{:<16}{v}\n", format!("{k}:")));
    kv("Name", name.into());
    kv("Namespace", ns.into());
    kv("Selector", pairs(v.pointer("/spec/selector/matchLabels")));
    kv(
        "Node-Selector",
        pairs(v.pointer("/spec/template/spec/nodeSelector")),
    );
    kv("Labels", pairs(v.pointer("/metadata/labels")));
    kv("Annotations", pairs(v.pointer("/metadata/annotations")));
    let strategy = v
        .pointer("/spec/updateStrategy/type")
        .and_then(Value::as_str)
        .unwrap_or("RollingUpdate");
    kv("Update Strategy", strategy.into());
    for (label, ptr) in [
        (
            "Desired Number of Nodes Scheduled",
            "/status/desiredNumberScheduled",
        ),
        (
            "Current Number of Nodes Scheduled",
            "/status/currentNumberScheduled",
        ),
        (
            "Number of Nodes Scheduled with Up-to-date Pods",
            "/status/updatedNumberScheduled",
        ),
        (
            "Number of Nodes Scheduled with Available Pods",
            "/status/numberAvailable",
        ),
        ("Number of Nodes Misscheduled", "/status/numberMisscheduled"),
    ] {
        out.push_str(&format!("{label}: {}\n", num(&v, ptr)));
    }
    out.push_str(&format!(
        "Pods Status:  {} Running / {} Waiting / {} Succeeded / {} Failed\n",
        count("Running"),
        count("Pending"),
        count("Succeeded"),
        count("Failed")
    ));
    out.push_str("Pod Template:\n");
    out.push_str(&format!(
        "  Labels:  {}\n  Containers:\n",
        pairs(v.pointer("/spec/template/metadata/labels"))
    ));
    for ctr in v
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.push_str(&format!(
            "   {}:\n    Image:  {}\n",
            ctr["name"].as_str().unwrap_or(""),
            ctr["image"].as_str().unwrap_or("")
        ));
    }
    print!("{out}");
    Ok(())
}

/// `rollout pause|resume deploy/NAME`: set or clear `spec.paused`, as kubectl does.
pub async fn pause(
    c: &mut ObjectsClient<Channel>,
    name: &str,
    ns: &str,
    pause: bool,
) -> anyhow::Result<()> {
    let mut v = crate::workloads_cli::get_one(c, "deployment", name, ns).await?;
    let paused = v.pointer("/spec/paused") == Some(&Value::Bool(true));
    match (pause, paused) {
        (true, true) => anyhow::bail!("deployments.apps {name:?} is already paused"),
        (false, false) => anyhow::bail!("deployments.apps {name:?} is not paused"),
        _ => {}
    }
    v["spec"]["paused"] = Value::Bool(pause);
    crate::workloads_cli::put(c, v).await?;
    println!(
        "deployment.apps/{name} {}",
        if pause { "paused" } else { "resumed" }
    );
    Ok(())
}

/// The revisions of Deployment `uid`'s ReplicaSets: (revision, ReplicaSet), oldest first.
fn revisions(rss: Vec<Value>, uid: &str) -> Vec<(i64, Value)> {
    let mut out: Vec<(i64, Value)> = rss
        .into_iter()
        .filter(|rs| {
            rs["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|r| r.iter().any(|o| o["uid"] == uid && o["controller"] == true))
        })
        .filter_map(|rs| {
            let rev = rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                .as_str()?
                .parse()
                .ok()?;
            Some((rev, rs))
        })
        .collect();
    out.sort_by_key(|(r, _)| *r);
    out
}

/// `rollout history deploy/NAME [--revision N]`: kubectl's REVISION / CHANGE-CAUSE table, or
/// one revision's pod template.
pub async fn history(
    c: &mut ObjectsClient<Channel>,
    name: &str,
    ns: &str,
    revision: Option<i64>,
) -> anyhow::Result<()> {
    let d = crate::workloads_cli::get_one(c, "deployment", name, ns).await?;
    let uid = d["metadata"]["uid"].as_str().unwrap_or("").to_owned();
    let revs = revisions(crate::workloads_cli::list(c, "replicaset", ns).await?, &uid);
    if let Some(r) = revision {
        let (_, rs) = revs
            .iter()
            .find(|(x, _)| *x == r)
            .ok_or_else(|| anyhow!("unable to find the specified revision {r}"))?;
        let mut t = rs["spec"]["template"].clone();
        if let Some(l) = t
            .pointer_mut("/metadata/labels")
            .and_then(Value::as_object_mut)
        {
            l.remove("pod-template-hash");
        }
        println!("deployment.apps/{name} with revision #{r}\nPod Template:");
        for line in serde_yaml_ng::to_string(&t)?.lines() {
            println!("  {line}");
        }
        return Ok(());
    }
    println!("deployment.apps/{name}\nREVISION  CHANGE-CAUSE");
    for (r, rs) in &revs {
        let cause = rs["metadata"]["annotations"]["kubernetes.io/change-cause"]
            .as_str()
            .unwrap_or("<none>");
        println!("{r:<10}{cause}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_are_the_owned_replica_sets_in_order() {
        let rs = |uid: &str, rev: &str| {
            serde_json::json!({"metadata": {
                "ownerReferences": [{"uid": uid, "controller": true}],
                "annotations": {"deployment.kubernetes.io/revision": rev}}})
        };
        let got = revisions(vec![rs("d", "3"), rs("other", "1"), rs("d", "1")], "d");
        let revs: Vec<i64> = got.iter().map(|(r, _)| *r).collect();
        assert_eq!(revs, [1, 3]);
    }

    #[test]
    fn rows_follow_kubectl_columns() {
        let ds = serde_json::json!({
            "spec": {"template": {"spec": {"nodeSelector": {"disk": "ssd"}}}},
            "status": {"desiredNumberScheduled": 1, "currentNumberScheduled": 1,
                "numberReady": 1, "updatedNumberScheduled": 0, "numberAvailable": 1}});
        assert_eq!(
            ds_row(&ds, "agent".into(), "5s".into()),
            ["agent", "1", "1", "1", "0", "1", "disk=ssd", "5s"]
        );
        let cj = serde_json::json!({"spec": {"schedule": "*/5 * * * *"},
            "status": {"active": [{"name": "x"}]}});
        assert_eq!(
            cj_row(&cj, "hello".into(), "1m".into()),
            [
                "hello",
                "*/5 * * * *",
                "<none>",
                "false",
                "1",
                "<none>",
                "1m"
            ]
        );
    }
}
