//! The Job controller: runs a Job's pods (restartPolicy Never or OnFailure) until
//! `completions` succeed (NonIndexed, or one per index with completionMode Indexed), at most
//! `parallelism` at a time, and fails it when the failed pods exceed `backoffLimit` (with
//! OnFailure: the containers' restarts reach it) — reason BackoffLimitExceeded — or it runs
//! past `activeDeadlineSeconds` — DeadlineExceeded. A replacement after failures waits
//! upstream's back-off: 10 s doubling per failure since the last success, capped at 6 min.
//! Indexed pods are `<job>-<index>-<5 chars>` with hostname `<job>-<index>`, the
//! `batch.kubernetes.io/job-completion-index` annotation and label and `JOB_COMPLETION_INDEX`
//! in every container's env. `suspend` deletes the active pods (Suspended condition);
//! `ttlSecondsAfterFinished` deletes the finished Job (and through the garbage collector its
//! pods). Pods are the Job's through their controller ownerReference. `podFailurePolicy`,
//! `backoffLimitPerIndex`/`maxFailedIndexes` and `successPolicy` are decided in
//! [`crate::job_policy`]; a finished Job gets SuccessCriteriaMet or FailureTarget before
//! Complete or Failed, as upstream since 1.31.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{EnvVar, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kinglet_kubelet::harness::{Action, Reconciler, Wake};
use kinglet_manifest::{Object, ObjectKey};

use crate::common::{self, owned_by};
use crate::job_policy;
use crate::{ControllerError, Store};

pub const INDEX_ANNOTATION: &str = "batch.kubernetes.io/job-completion-index";
const BACKOFF_BASE: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(360);

/// The delay before a new pod after `failures` failed pods since the last success.
pub fn failure_backoff(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    BACKOFF_BASE
        .saturating_mul(2u32.saturating_pow(failures - 1))
        .min(BACKOFF_MAX)
}

/// Indexes as upstream's `completedIndexes`: `0-2,4`.
pub fn format_indexes(idx: &BTreeSet<i32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut it = idx.iter().peekable();
    while let Some(&start) = it.next() {
        let mut end = start;
        while it.peek() == Some(&&(end + 1)) {
            end += 1;
            it.next();
        }
        out.push(if end > start {
            format!("{start}-{end}")
        } else {
            start.to_string()
        });
    }
    out.join(",")
}

/// One pod of a Job as the controller counts it.
#[derive(Debug, Clone)]
pub struct JobPod {
    pub name: String,
    pub index: Option<i32>,
    /// "Active", "Succeeded" or "Failed".
    pub state: &'static str,
    pub ready: bool,
    pub restarts: i32,
    /// When it finished (its containers' last finish).
    pub finished: Option<Timestamp>,
    /// (container, exit code) of its terminated containers, init containers included.
    pub exit_codes: Vec<(String, i32)>,
    /// (type, status) of its conditions.
    pub conditions: Vec<(String, String)>,
}

fn job_pod(p: &Pod, st: &PodStatus) -> JobPod {
    let state = match st.phase.as_deref() {
        Some("Succeeded") => "Succeeded",
        Some("Failed") => "Failed",
        _ => "Active",
    };
    let finished = st
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    JobPod {
        name: p.metadata.name.clone().unwrap_or_default(),
        index: p
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(INDEX_ANNOTATION))
            .and_then(|i| i.parse().ok()),
        state,
        ready: common::is_ready(st),
        restarts: common::restarts(st),
        finished,
        exit_codes: st
            .init_container_statuses
            .iter()
            .flatten()
            .chain(st.container_statuses.iter().flatten())
            .filter_map(|c| {
                let t = c.state.as_ref()?.terminated.as_ref()?;
                Some((c.name.clone(), t.exit_code))
            })
            .collect(),
        conditions: st
            .conditions
            .iter()
            .flatten()
            .map(|c| (c.type_.clone(), c.status.clone()))
            .collect(),
    }
}

/// What a Job needs now.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Finished: Complete (reason: CompletionsReached or SuccessPolicy) or Failed (reason,
    /// message).
    Complete(&'static str),
    Failed(&'static str, String),
    /// Create pods for these indexes (NonIndexed: None each), or wait until the back-off ends.
    Run {
        create: Vec<Option<i32>>,
        delete: Vec<String>,
        wait: Option<Duration>,
    },
}

/// How long a new pod must still wait: the back-off of the failures since the last success,
/// from the last failure.
fn backoff_wait(pods: &[JobPod], now: Timestamp) -> Option<Duration> {
    let last_success = pods
        .iter()
        .filter(|p| p.state == "Succeeded")
        .filter_map(|p| p.finished)
        .max();
    let recent: Vec<Timestamp> = pods
        .iter()
        .filter(|p| p.state == "Failed")
        .filter_map(|p| p.finished)
        .filter(|f| last_success.is_none_or(|s| *f > s))
        .collect();
    let last = recent.iter().max()?;
    let delay = failure_backoff(recent.len() as u32);
    let due = *last + SignedDuration::try_from(delay).unwrap_or_default();
    (due > now).then(|| Duration::try_from(due - now).unwrap_or_default())
}

/// The decision of one pass (pure; `started`: the Job's startTime).
pub fn decide(job: &Job, pods: &[JobPod], started: Option<Timestamp>, now: Timestamp) -> Verdict {
    let spec = job.spec.clone().unwrap_or_default();
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let active: Vec<&JobPod> = pods.iter().filter(|p| p.state == "Active").collect();
    let failed = pods.iter().filter(|p| p.state == "Failed").count() as i32;
    let succeeded_idx: BTreeSet<i32> = pods
        .iter()
        .filter(|p| p.state == "Succeeded")
        .filter_map(|p| p.index)
        .filter(|i| *i < spec.completions.unwrap_or(0))
        .collect();
    let succeeded = if indexed {
        succeeded_idx.len() as i32
    } else {
        pods.iter().filter(|p| p.state == "Succeeded").count() as i32
    };
    let on_failure = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure");
    let restarts: i32 = active.iter().map(|p| p.restarts).sum();
    let ns = job.metadata.namespace.as_deref().unwrap_or("default");
    if let Some(message) = job_policy::fail_job(&spec, ns, pods) {
        return Verdict::Failed("PodFailurePolicy", message);
    }
    // With backoffLimitPerIndex each index has its own limit, and backoffLimit is unused.
    let failed_idx = if indexed {
        job_policy::failed_indexes(&spec, ns, pods)
    } else {
        None
    };
    if let (Some(f), Some(max)) = (&failed_idx, spec.max_failed_indexes) {
        if f.len() as i32 > max {
            return Verdict::Failed(
                "MaxFailedIndexesExceeded",
                "Job has exceeded the specified maximal number of failed indexes".into(),
            );
        }
    }
    if failed_idx.is_none()
        && (failed > backoff_limit
            || (on_failure && backoff_limit > 0 && restarts >= backoff_limit)
            || (on_failure && backoff_limit == 0 && restarts > 0))
    {
        return Verdict::Failed(
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit".into(),
        );
    }
    if let (Some(ads), Some(start)) = (spec.active_deadline_seconds, started) {
        if start + SignedDuration::from_secs(ads) <= now {
            return Verdict::Failed(
                "DeadlineExceeded",
                "Job was active longer than specified deadline".into(),
            );
        }
    }
    if indexed && job_policy::success_rule(&spec, &succeeded_idx).is_some() {
        return Verdict::Complete("SuccessPolicy");
    }
    let failed_idx = failed_idx.unwrap_or_default();
    if let Some(c) = spec.completions.filter(|_| !failed_idx.is_empty()) {
        // Every index settled, some failed.
        let settled = (0..c).all(|i| succeeded_idx.contains(&i) || failed_idx.contains(&i));
        if settled
            && active
                .iter()
                .all(|p| p.index.is_some_and(|i| failed_idx.contains(&i)))
        {
            return Verdict::Failed("FailedIndexes", "Job has failed indexes".into());
        }
    }
    let done = match spec.completions {
        Some(c) => succeeded >= c,
        None => succeeded > 0 && active.is_empty(),
    };
    if done {
        return Verdict::Complete("CompletionsReached");
    }
    // How many should run, and which indexes.
    let mut create = Vec::new();
    let mut delete = Vec::new();
    if indexed {
        let c = spec.completions.unwrap_or(0);
        let running: BTreeSet<i32> = active.iter().filter_map(|p| p.index).collect();
        let pending: Vec<i32> = (0..c)
            .filter(|i| !succeeded_idx.contains(i) && !running.contains(i))
            .filter(|i| !failed_idx.contains(i))
            .collect();
        let room = (parallelism - active.len() as i32).max(0) as usize;
        create.extend(pending.into_iter().take(room).map(Some));
    } else {
        let want = match spec.completions {
            Some(c) => parallelism.min(c - succeeded),
            // A work queue: after a success no new pods, the running ones finish.
            None if succeeded > 0 => active.len() as i32,
            None => parallelism,
        }
        .max(0) as usize;
        if active.len() > want {
            // Not-ready pods first, then the newest (the end of the list).
            let mut extra: Vec<&&JobPod> = active.iter().collect();
            extra.sort_by_key(|p| p.ready);
            delete.extend(extra[..active.len() - want].iter().map(|p| p.name.clone()));
        } else {
            create.extend(std::iter::repeat_n(None, want - active.len()));
        }
    }
    let wait = if create.is_empty() {
        None
    } else {
        backoff_wait(pods, now)
    };
    if wait.is_some() {
        create.clear();
    }
    Verdict::Run {
        create,
        delete,
        wait,
    }
}

pub struct JobReconciler<S: Store> {
    store: Arc<S>,
}

impl<S: Store> JobReconciler<S> {
    pub fn new(store: Arc<S>) -> Self {
        JobReconciler { store }
    }
}

#[async_trait::async_trait]
impl<S: Store> Reconciler for JobReconciler<S> {
    type Key = ObjectKey;
    type State = ();
    type Handle = ();
    type Error = ControllerError;

    fn init(&self, _key: &ObjectKey, _wake: Wake) -> ((), ()) {
        ((), ())
    }

    async fn reconcile(&self, key: &ObjectKey, _: &mut ()) -> Result<Action, ControllerError> {
        let Some(Object::Job(job)) = self.store.get(key).await else {
            return Ok(Action::Done);
        };
        sync(&*self.store, key, &job).await
    }
}

fn cond(type_: &str, status: bool, reason: &str, message: &str, now: Timestamp) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

fn finished_at(st: &JobStatus) -> Option<Timestamp> {
    let done = st
        .conditions
        .iter()
        .flatten()
        .any(|c| matches!(c.type_.as_str(), "Complete" | "Failed") && c.status == "True");
    done.then(|| {
        st.completion_time.as_ref().map(|t| t.0).or_else(|| {
            st.conditions
                .iter()
                .flatten()
                .filter_map(|c| c.last_transition_time.as_ref())
                .map(|t| t.0)
                .max()
        })
    })
    .flatten()
}

fn pod_key(ns: &str, name: &str) -> ObjectKey {
    ObjectKey {
        kind: "Pod",
        namespace: ns.to_owned(),
        name: name.to_owned(),
    }
}

/// One pass over Job `job`.
pub async fn sync<S: Store + ?Sized>(
    store: &S,
    key: &ObjectKey,
    job: &Job,
) -> Result<Action, ControllerError> {
    let now = store.now();
    let prev = job.status.clone().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    if let Some(done) = finished_at(&prev) {
        return ttl(store, key, job, done, now).await;
    }
    let mut pods = job_pods(store, key, &uid).await;
    let spec = job.spec.clone().unwrap_or_default();
    job_policy::drop_ignored(&spec, &key.namespace, &mut pods);
    let mut st = prev.clone();
    let suspended = spec.suspend == Some(true);
    let mut action = Action::AwaitChange;
    let mut created = 0;
    let mut conds = st.conditions.take().unwrap_or_default();
    let has_suspended = conds
        .iter()
        .any(|c| c.type_ == "Suspended" && c.status == "True");
    if suspended {
        for p in pods.iter().filter(|p| p.state == "Active") {
            store.delete(&pod_key(&key.namespace, &p.name)).await?;
        }
        if !has_suspended {
            conds.retain(|c| c.type_ != "Suspended");
            conds.push(cond(
                "Suspended",
                true,
                "JobSuspended",
                "Job suspended",
                now,
            ));
        }
        st.start_time = None;
    } else {
        if has_suspended {
            conds.retain(|c| c.type_ != "Suspended");
            conds.push(cond("Suspended", false, "JobResumed", "Job resumed", now));
        }
        let started = st.start_time.get_or_insert(Time(now)).clone();
        match decide(job, &pods, Some(started.0), now) {
            Verdict::Complete(reason) => {
                delete_active(store, key, &pods).await?;
                let message = if reason == "SuccessPolicy" {
                    "Matched rules of the success policy"
                } else {
                    "Reached expected number of succeeded pods"
                };
                // As upstream (1.31+): SuccessCriteriaMet first, then Complete.
                conds.push(cond("SuccessCriteriaMet", true, reason, message, now));
                conds.push(cond("Complete", true, reason, message, now));
                st.completion_time = Some(Time(now));
                tracing::info!(job = %key, reason, "job complete");
            }
            Verdict::Failed(reason, message) => {
                delete_active(store, key, &pods).await?;
                conds.push(cond("FailureTarget", true, reason, &message, now));
                conds.push(cond("Failed", true, reason, &message, now));
                tracing::info!(job = %key, reason, "job failed");
            }
            Verdict::Run {
                create,
                delete,
                wait,
            } => {
                for name in delete {
                    store.delete(&pod_key(&key.namespace, &name)).await?;
                }
                for index in create {
                    create_pod(store, key, job, index).await?;
                    created += 1;
                }
                let deadline = spec.active_deadline_seconds.map(|ads| {
                    let due = started.0 + SignedDuration::from_secs(ads);
                    Duration::try_from(due - now).unwrap_or_default()
                });
                if let Some(d) = [wait, deadline].into_iter().flatten().min() {
                    action = Action::Requeue(d + Duration::from_millis(50));
                }
            }
        }
    }
    st.conditions = Some(conds).filter(|c| !c.is_empty());
    let finished = st
        .conditions
        .iter()
        .flatten()
        .any(|c| matches!(c.type_.as_str(), "Complete" | "Failed"));
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let running = !(finished || suspended);
    count_pods(&mut st, &pods, running.then_some(created), indexed);
    if indexed {
        st.failed_indexes =
            job_policy::failed_indexes(&spec, &key.namespace, &pods).map(|f| format_indexes(&f));
    }
    if st != prev {
        store
            .modify(
                key,
                false,
                Box::new(move |o| match o {
                    Object::Job(j) => {
                        j.status = Some(st);
                        true
                    }
                    _ => false,
                }),
            )
            .await?;
    }
    if finished {
        return Ok(Action::Requeue(Duration::from_millis(10)));
    }
    Ok(action)
}

/// The Job's pods (by its controller ownerReference) with their state.
async fn job_pods<S: Store + ?Sized>(store: &S, key: &ObjectKey, uid: &str) -> Vec<JobPod> {
    let mut out = Vec::new();
    for o in store.list("Pod").await {
        let Object::Pod(p) = o else { continue };
        if p.metadata.namespace.as_deref() == Some(&key.namespace) && owned_by(&p.metadata, uid) {
            let st = store.pod_status(&p).await;
            // A pod being deleted (by a user) no longer counts as active.
            if p.metadata.deletion_timestamp.is_some() && !common::is_terminal(&st) {
                continue;
            }
            out.push(job_pod(&p, &st));
        }
    }
    out
}

/// The status counts; `running`: the Job still runs pods, plus this many created now.
fn count_pods(st: &mut JobStatus, pods: &[JobPod], running: Option<i32>, indexed: bool) {
    let count = |s: &str| pods.iter().filter(|p| p.state == s).count() as i32;
    st.active = running
        .map(|created| count("Active") + created)
        .filter(|n| *n > 0);
    let ready = pods.iter().filter(|p| p.state == "Active" && p.ready);
    st.ready = Some(ready.count() as i32);
    st.succeeded = Some(count("Succeeded")).filter(|n| *n > 0);
    st.failed = Some(count("Failed")).filter(|n| *n > 0);
    if indexed {
        let idx: BTreeSet<i32> = pods
            .iter()
            .filter(|p| p.state == "Succeeded")
            .filter_map(|p| p.index)
            .collect();
        st.completed_indexes = Some(format_indexes(&idx)).filter(|s| !s.is_empty());
    }
}

async fn delete_active<S: Store + ?Sized>(
    store: &S,
    key: &ObjectKey,
    pods: &[JobPod],
) -> Result<(), ControllerError> {
    for p in pods.iter().filter(|p| p.state == "Active") {
        store.delete(&pod_key(&key.namespace, &p.name)).await?;
    }
    Ok(())
}

/// A finished Job: deleted `ttlSecondsAfterFinished` after it finished.
async fn ttl<S: Store + ?Sized>(
    store: &S,
    key: &ObjectKey,
    job: &Job,
    done: Timestamp,
    now: Timestamp,
) -> Result<Action, ControllerError> {
    let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else {
        return Ok(Action::AwaitChange);
    };
    let due = done + SignedDuration::from_secs(ttl as i64);
    if due <= now {
        tracing::info!(job = %key, ttl, "deleting finished job (ttlSecondsAfterFinished)");
        store.delete(key).await?;
        return Ok(Action::Done);
    }
    Ok(Action::Requeue(
        Duration::try_from(due - now).unwrap_or_default() + Duration::from_millis(50),
    ))
}

async fn create_pod<S: Store + ?Sized>(
    store: &S,
    key: &ObjectKey,
    job: &Job,
    index: Option<i32>,
) -> Result<(), ControllerError> {
    let spec = job.spec.clone().unwrap_or_default();
    let owner = common::controller_ref("batch/v1", "Job", &job.metadata);
    let uid = owner.uid.clone();
    let prefix = match index {
        Some(i) => format!("{}-{i}-", key.name),
        None => format!("{}-", key.name),
    };
    let name = loop {
        let n = common::generate_name(&prefix);
        if store.get(&pod_key(&key.namespace, &n)).await.is_none() {
            break n;
        }
    };
    let mut pod = common::pod_from_template(&spec.template, name.clone(), &key.namespace, owner);
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    for (k, v) in [
        ("batch.kubernetes.io/controller-uid", uid.as_str()),
        ("controller-uid", uid.as_str()),
        ("batch.kubernetes.io/job-name", key.name.as_str()),
        ("job-name", key.name.as_str()),
    ] {
        labels.insert(k.into(), v.into());
    }
    if let Some(i) = index {
        labels.insert(INDEX_ANNOTATION.into(), i.to_string());
        pod.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(INDEX_ANNOTATION.into(), i.to_string());
        if let Some(ps) = pod.spec.as_mut() {
            ps.hostname
                .get_or_insert_with(|| format!("{}-{i}", key.name));
            for c in ps
                .containers
                .iter_mut()
                .chain(ps.init_containers.iter_mut().flatten())
            {
                c.env.get_or_insert_with(Vec::new).push(EnvVar {
                    name: "JOB_COMPLETION_INDEX".into(),
                    value: Some(i.to_string()),
                    value_from: None,
                });
            }
        }
    }
    store.create(Object::Pod(Box::new(pod))).await?;
    tracing::info!(job = %key, pod = %name, index, "created pod");
    Ok(())
}
