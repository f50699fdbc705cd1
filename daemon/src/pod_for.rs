//! Which pod `logs` and `exec` mean by `KIND/NAME`, as kubectl picks it: `pod/NAME` is that
//! pod; for a workload (`job/pi`, `deploy/web`, `rs/`, `sts/`, `ds/`) one of its pods, chosen
//! as kubectl's `ByLogging` order does (running before pending, ready first, more restarts
//! first, newest first), saying `Found N pods, using pod/NAME` on stderr when there were more.

use serde_json::Value;
use tonic::transport::Channel;

use crate::kubectl::{fetch, status_err};

/// The pod name an argument of `logs`/`exec` means.
pub async fn resolve(ch: Channel, arg: &str, ns: &str) -> anyhow::Result<String> {
    let Some((kind, name)) = arg.split_once('/') else {
        return Ok(arg.to_owned());
    };
    let resource = kinglet_kubelet::resource_of(kind);
    match resource {
        Some("pods") => return Ok(name.to_owned()),
        Some(
            "jobs.batch" | "deployments.apps" | "replicasets.apps" | "statefulsets.apps"
            | "daemonsets.apps",
        ) => {}
        _ => anyhow::bail!(
            "{arg:?}: give a pod, or KIND/NAME of a pod, job, deployment, replicaset, \
             statefulset or daemonset"
        ),
    }
    let owner = match fetch(ch.clone(), kind, Some(name), None, ns, false).await {
        Err(s) if s.code() == tonic::Code::NotFound => {
            eprintln!("{}", crate::delete_cli::not_found(kind, name));
            return Err(crate::podref::Reported.into());
        }
        r => r.map_err(status_err("get"))?,
    };
    let owner = owner
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("{arg} not found"))?;
    let pods = fetch(ch.clone(), "pods", None, None, ns, false)
        .await
        .map_err(status_err("get pods"))?;
    // A Deployment's pods are owned by its ReplicaSets.
    let mut owners = vec![uid(&owner)];
    if resource == Some("deployments.apps") {
        let sets = fetch(ch, "rs", None, None, ns, false)
            .await
            .map_err(status_err("get replicasets"))?;
        let deployment = owners.clone();
        owners.extend(sets.iter().filter(|rs| owned_by(rs, &deployment)).map(uid));
    }
    let mut mine: Vec<&Value> = pods.iter().filter(|p| owned_by(p, &owners)).collect();
    mine.sort_by_key(|p| by_logging(p));
    let Some(first) = mine.first() else {
        anyhow::bail!("{arg} has no pods (yet): see `kinglet describe {kind} {name}`")
    };
    let chosen = first["metadata"]["name"].as_str().unwrap_or_default();
    if mine.len() > 1 {
        eprintln!("Found {} pods, using pod/{chosen}", mine.len());
    }
    Ok(chosen.to_owned())
}

fn uid(o: &Value) -> String {
    o["metadata"]["uid"].as_str().unwrap_or_default().to_owned()
}

fn owned_by(o: &Value, owners: &[String]) -> bool {
    o["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["uid"].as_str())
        .any(|u| !u.is_empty() && owners.iter().any(|o| o == u))
}

/// A sort key: smaller is the pod kubectl would rather show (`ByLogging`).
fn by_logging(p: &Value) -> (u8, bool, std::cmp::Reverse<i64>, std::cmp::Reverse<String>) {
    let phase = match p["status"]["phase"].as_str() {
        Some("Running") => 0,
        Some("Unknown") => 1,
        Some("Pending") => 2,
        _ => 3,
    };
    let ready = p["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    let restarts = p["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["restartCount"].as_i64())
        .sum();
    let created = p["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (
        phase,
        !ready,
        std::cmp::Reverse(restarts),
        std::cmp::Reverse(created),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, owner: &str, phase: &str, ready: bool, created: &str) -> Value {
        serde_json::json!({"metadata": {"name": name, "creationTimestamp": created,
            "ownerReferences": [{"uid": owner}]},
            "status": {"phase": phase, "conditions": [{"type": "Ready",
                "status": if ready {"True"} else {"False"}}]}})
    }

    #[test]
    fn running_ready_newest_pods_come_first() {
        let mut pods = [
            pod("pending", "u", "Pending", false, "2026-01-01T00:00:03Z"),
            pod("old", "u", "Running", true, "2026-01-01T00:00:01Z"),
            pod("new", "u", "Running", true, "2026-01-01T00:00:02Z"),
            pod("unready", "u", "Running", false, "2026-01-01T00:00:04Z"),
            pod("done", "u", "Succeeded", false, "2026-01-01T00:00:05Z"),
        ];
        pods.sort_by_key(by_logging);
        let names: Vec<&str> = pods
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["new", "old", "unready", "pending", "done"]);
    }

    #[test]
    fn ownership_is_by_uid() {
        let p = pod("a", "u1", "Running", true, "");
        assert!(owned_by(&p, &["u0".into(), "u1".into()]));
        assert!(!owned_by(&p, &["u2".into()]));
        assert!(!owned_by(
            &serde_json::json!({"metadata": {}}),
            &["".into()]
        ));
    }
}
