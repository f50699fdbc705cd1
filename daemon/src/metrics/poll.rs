//! The pod series, from the daemon's own socket (marked as internal calls): sandbox and
//! container counts from the CRI; each pod's start latency, once, from the CRI's nanosecond
//! times (sandbox creation to the start of its last container) when it first runs — for a
//! pod of Kinglet's own (manifests, `apply`) when its status says every container runs, for
//! another CRI client's when none of its containers waits to start; and, from the
//! supervisor's pods (`get pods`), its containers' restarts (increases of `restartCount`);
//! in-process, the puller's bytes and the supervisor's probe runs ([`super::Sources`]).
//! Runs every second and before each scrape.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kinglet_proto::admin::objects_client::ObjectsClient;
use kinglet_proto::v1;
use kinglet_proto::v1::runtime_service_client::RuntimeServiceClient;
use serde_json::Value;

use super::{Labels, Metrics, INTERNAL_CALL};

/// What the poller remembers between rounds.
#[derive(Debug, Default)]
pub struct PodState {
    /// Sandboxes whose start was recorded (or that were created before the daemon started).
    started: HashSet<String>,
    /// (pod uid, container name) → last restartCount, with the series labels.
    restarts: HashMap<(String, String), (i64, Labels)>,
    /// The probe counts seen at the last round.
    probes: super::probes::Seen,
}

/// What one round found: restart increments to add, and series of pods that are gone.
#[derive(Debug, Default, PartialEq)]
pub struct Round {
    pub restarts: Vec<(Labels, u64)>,
    pub gone: Vec<Labels>,
}

/// A pod sandbox as the CRI lists it.
#[derive(Debug, Clone)]
pub struct SandboxView {
    pub id: String,
    pub uid: String,
    /// Unix nanoseconds.
    pub created_at: i64,
    pub ready: bool,
}

/// A container as the CRI lists it (`state`: 0 created, 1 running, 2 exited).
#[derive(Debug, Clone)]
pub struct ContainerView {
    pub id: String,
    pub sandbox: String,
    pub name: String,
    pub attempt: u32,
    pub state: i32,
}

/// Whether a Kubernetes pod's status says it runs with every container running.
fn all_running(pod: &Value) -> bool {
    let apps = pod["status"]["containerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    pod["status"]["phase"] == "Running"
        && !apps.is_empty()
        && apps.iter().all(|c| c["state"]["running"].is_object())
}

/// The decision of the pod start series: the sandboxes that started since the last round,
/// each with its running containers (whose start times give the latency). Sandboxes created
/// before `since_nanos` are marked without being counted.
pub fn started(
    state: &mut PodState,
    sandboxes: &[SandboxView],
    containers: &[ContainerView],
    pods: &[Value],
    since_nanos: i64,
) -> Vec<(SandboxView, Vec<String>)> {
    let mut out = Vec::new();
    let by_uid: HashMap<&str, &Value> = pods
        .iter()
        .filter_map(|p| Some((p.pointer("/metadata/uid")?.as_str()?, p)))
        .collect();
    for sb in sandboxes {
        if !sb.ready || state.started.contains(&sb.id) {
            continue;
        }
        // The latest attempt of each container of the sandbox.
        let mut latest: HashMap<&str, &ContainerView> = HashMap::new();
        for c in containers.iter().filter(|c| c.sandbox == sb.id) {
            let e = latest.entry(c.name.as_str()).or_insert(c);
            if c.attempt > e.attempt {
                *e = c;
            }
        }
        let running: Vec<String> = latest
            .values()
            .filter(|c| c.state == 1)
            .map(|c| c.id.clone())
            .collect();
        let is_started = match by_uid.get(sb.uid.as_str()) {
            Some(pod) => all_running(pod),
            None => !running.is_empty() && latest.values().all(|c| c.state != 0),
        };
        if !is_started {
            continue;
        }
        state.started.insert(sb.id.clone());
        if sb.created_at >= since_nanos {
            out.push((sb.clone(), running));
        }
    }
    let live: HashSet<&str> = sandboxes.iter().map(|s| s.id.as_str()).collect();
    state.started.retain(|id| live.contains(id.as_str()));
    out
}

fn time(v: &Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v.as_str()?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The decision: update `state` from the pods (Kubernetes JSON) seen now. Pods created
/// before `since` (the daemon's start) are a baseline: their past is not counted.
pub fn observe(state: &mut PodState, pods: &[Value], since: DateTime<Utc>) -> Round {
    let mut round = Round::default();
    let mut present = HashSet::new();
    for pod in pods {
        let Some(uid) = pod.pointer("/metadata/uid").and_then(Value::as_str) else {
            continue;
        };
        present.insert(uid.to_owned());
        let created = time(&pod["metadata"]["creationTimestamp"]);
        let new = created.is_some_and(|c| c >= since);
        let statuses: Vec<&Value> = ["containerStatuses", "initContainerStatuses"]
            .iter()
            .filter_map(|k| pod["status"][k].as_array())
            .flatten()
            .collect();
        for c in statuses {
            let Some(name) = c["name"].as_str() else {
                continue;
            };
            let count = c["restartCount"].as_i64().unwrap_or(0);
            let labels: Labels = vec![
                (
                    "namespace".into(),
                    pod["metadata"]["namespace"].as_str().unwrap_or("").into(),
                ),
                (
                    "pod".into(),
                    pod["metadata"]["name"].as_str().unwrap_or("").into(),
                ),
                ("container".into(), name.into()),
            ];
            let key = (uid.to_owned(), name.to_owned());
            let before = match state.restarts.get(&key) {
                Some((n, _)) => *n,
                None if new => 0,
                None => count,
            };
            if count > before {
                round
                    .restarts
                    .push((labels.clone(), (count - before) as u64));
            }
            state.restarts.insert(key, (count.max(before), labels));
        }
    }
    state.restarts.retain(|(u, _), (_, labels)| {
        let keep = present.contains(u);
        if !keep {
            round.gone.push(labels.clone());
        }
        keep
    });
    round
}

/// Polls the daemon for the pod series; see the module docs.
pub struct Poller {
    metrics: Arc<Metrics>,
    socket: PathBuf,
    since: DateTime<Utc>,
    state: tokio::sync::Mutex<PodState>,
    sources: super::Sources,
}

impl Poller {
    pub fn new(metrics: Arc<Metrics>, socket: PathBuf, sources: super::Sources) -> Poller {
        Poller {
            metrics,
            socket,
            since: Utc::now(),
            state: tokio::sync::Mutex::new(PodState::default()),
            sources,
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Refresh every second until the task is dropped.
    pub async fn run(&self) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.refresh().await;
        }
    }

    /// One round; failures are logged at debug (the next round retries).
    pub async fn refresh(&self) {
        let mut state = self.state.lock().await;
        self.metrics.sync_pull_bytes((self.sources.pull_bytes)());
        let probes = super::probes::observe(&mut state.probes, &(self.sources.probes)());
        super::probes::apply(&self.metrics, probes);
        self.metrics.set_queue_depths(&(self.sources.queues)());
        if let Err(e) = self.round(&mut state).await {
            tracing::debug!(error = %e, "metrics poll");
        }
    }

    async fn round(&self, state: &mut PodState) -> Result<(), String> {
        fn internal<T>(m: T) -> tonic::Request<T> {
            let mut r = tonic::Request::new(m);
            r.metadata_mut().insert(
                INTERNAL_CALL,
                tonic::metadata::MetadataValue::from_static("1"),
            );
            r.set_timeout(Duration::from_secs(5));
            r
        }
        let ch = crate::client::connect(&self.socket)
            .await
            .map_err(|e| e.to_string())?;
        let mut rt = RuntimeServiceClient::new(ch.clone());
        let sandboxes: Vec<SandboxView> = rt
            .list_pod_sandbox(internal(v1::ListPodSandboxRequest::default()))
            .await
            .map_err(|s| s.message().to_owned())?
            .into_inner()
            .items
            .into_iter()
            .map(|p| SandboxView {
                uid: p.metadata.map(|m| m.uid).unwrap_or_default(),
                id: p.id,
                created_at: p.created_at,
                ready: p.state == 0,
            })
            .collect();
        let containers: Vec<ContainerView> = rt
            .list_containers(internal(v1::ListContainersRequest::default()))
            .await
            .map_err(|s| s.message().to_owned())?
            .into_inner()
            .containers
            .into_iter()
            .map(|c| ContainerView {
                sandbox: c.pod_sandbox_id,
                name: c
                    .metadata
                    .as_ref()
                    .map(|m| m.name.clone())
                    .unwrap_or_default(),
                attempt: c.metadata.map(|m| m.attempt).unwrap_or(0),
                id: c.id,
                state: c.state,
            })
            .collect();
        let ready = sandboxes.iter().filter(|s| s.ready).count();
        self.metrics.running_pods.set(ready as i64);
        let running = containers.iter().filter(|c| c.state == 1).count();
        self.metrics.running_containers.set(running as i64);
        let objects = ObjectsClient::new(ch)
            .get(internal(kinglet_proto::admin::GetRequest {
                kind: "pods".into(),
                all_namespaces: true,
                ..Default::default()
            }))
            .await
            .map_err(|s| s.message().to_owned())?
            .into_inner()
            .objects;
        let pods: Vec<Value> = objects
            .iter()
            .filter_map(|o| serde_json::from_str(o).ok())
            .collect();
        let since_nanos = self.since.timestamp_nanos_opt().unwrap_or(0);
        for (sb, ctrs) in started(state, &sandboxes, &containers, &pods, since_nanos) {
            let mut last = None;
            for id in ctrs {
                let st = rt
                    .container_status(internal(v1::ContainerStatusRequest {
                        container_id: id,
                        verbose: false,
                    }))
                    .await
                    .ok()
                    .and_then(|r| r.into_inner().status);
                last = last.max(st.map(|s| s.started_at));
            }
            if let Some(t) = last.filter(|t| *t >= sb.created_at) {
                self.metrics
                    .pod_start
                    .observe((t - sb.created_at) as f64 / 1e9);
            }
        }
        // creationTimestamp has whole seconds.
        let round = observe(state, &pods, self.since - chrono::Duration::seconds(1));
        for (labels, n) in round.restarts {
            self.metrics.restarts.get_or_create(&labels).inc_by(n);
        }
        for labels in round.gone {
            self.metrics.restarts.remove(&labels);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(uid: &str, created: &str, phase: &str, ctrs: Value) -> Value {
        json!({
            "metadata": {"uid": uid, "name": format!("p-{uid}"), "namespace": "default",
                         "creationTimestamp": created},
            "status": {"phase": phase, "containerStatuses": ctrs}
        })
    }

    fn sb(id: &str, uid: &str, created_at: i64) -> SandboxView {
        SandboxView {
            id: id.into(),
            uid: uid.into(),
            created_at,
            ready: true,
        }
    }

    fn ctr(id: &str, sandbox: &str, name: &str, attempt: u32, state: i32) -> ContainerView {
        ContainerView {
            id: id.into(),
            sandbox: sandbox.into(),
            name: name.into(),
            attempt,
            state,
        }
    }

    #[test]
    fn a_manifest_pod_starts_when_its_status_says_every_container_runs() {
        let mut st = PodState::default();
        let sbs = [sb("s1", "u1", 100)];
        let ctrs = [ctr("c1", "s1", "a", 0, 1), ctr("c2", "s1", "b", 0, 1)];
        let status = |b: Value| {
            pod(
                "u1",
                "2026-01-01T00:00:10Z",
                "Running",
                json!([
            {"name": "a", "state": {"running": {}}}, {"name": "b", "state": b}]),
            )
        };
        let waiting = status(json!({"waiting": {}}));
        assert!(started(&mut st, &sbs, &ctrs, &[waiting], 0).is_empty());
        let running = status(json!({"running": {}}));
        let s = started(&mut st, &sbs, &ctrs, std::slice::from_ref(&running), 0);
        assert_eq!(s.len(), 1);
        let mut ids = s[0].1.clone();
        ids.sort();
        assert_eq!(ids, ["c1", "c2"]);
        assert!(
            started(&mut st, &sbs, &ctrs, &[running], 0).is_empty(),
            "once"
        );
    }

    #[test]
    fn a_cri_pod_starts_when_no_container_waits_to_start() {
        let mut st = PodState::default();
        let sbs = [sb("s1", "x", 100)];
        assert!(
            started(&mut st, &sbs, &[], &[], 0).is_empty(),
            "no container yet"
        );
        let created = [ctr("c1", "s1", "a", 0, 1), ctr("c2", "s1", "b", 0, 0)];
        assert!(started(&mut st, &sbs, &created, &[], 0).is_empty());
        // An exited first attempt does not count; its running second attempt does.
        let ctrs = [
            ctr("c1", "s1", "a", 0, 1),
            ctr("c2", "s1", "b", 0, 2),
            ctr("c3", "s1", "b", 1, 1),
        ];
        let s = started(&mut st, &sbs, &ctrs, &[], 0);
        assert_eq!(s.len(), 1);
        // A sandbox from before the daemon started is marked, not counted.
        let mut st = PodState::default();
        assert!(started(&mut st, &sbs, &ctrs, &[], 1_000).is_empty());
        assert!(st.started.contains("s1"));
    }

    #[test]
    fn restarts_count_increases_and_series_go_with_their_pod() {
        let since = time(&json!("2026-01-01T00:00:00Z")).unwrap();
        let mut st = PodState::default();
        let p = |n: i64| {
            pod(
                "a",
                "2026-01-01T00:00:10Z",
                "Running",
                json!([{"name": "c", "restartCount": n, "state": {"running": {}}}]),
            )
        };
        assert!(observe(&mut st, &[p(0)], since).restarts.is_empty());
        let r = observe(&mut st, &[p(2)], since);
        assert_eq!(r.restarts.len(), 1);
        assert_eq!(r.restarts[0].1, 2);
        assert_eq!(r.restarts[0].0[2], ("container".into(), "c".into()));
        assert!(observe(&mut st, &[p(2)], since).restarts.is_empty());
        let r = observe(&mut st, &[], since);
        assert_eq!(r.gone.len(), 1);
    }
}
