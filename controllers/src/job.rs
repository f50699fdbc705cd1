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

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec, JobStatus};
use k8s_openapi::api::core::v1::{EnvVar, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kinglet_kubelet::harness::{Action, Reconciler, Wake};
use kinglet_manifest::{Object, ObjectKey};

use crate::common;
use crate::job_policy;
use crate::job_tracking::{self, Counts, JobMemory, Tracked, INDEX_FAILURE_COUNT};
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
    pub uid: String,
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
    /// Its index's failures before it (the `job-index-failure-count` annotation).
    pub index_failures: i32,
}

pub(crate) fn job_pod(p: &Pod, st: &PodStatus) -> JobPod {
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
    let annotation = |k: &str| {
        p.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(k))
            .and_then(|i| i.parse().ok())
    };
    JobPod {
        name: p.metadata.name.clone().unwrap_or_default(),
        uid: p.metadata.uid.clone().unwrap_or_default(),
        index: annotation(INDEX_ANNOTATION),
        index_failures: annotation(INDEX_FAILURE_COUNT).unwrap_or(0),
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
fn backoff_wait(mem: &JobMemory, now: Timestamp) -> Option<Duration> {
    let last = mem.last_failure?;
    let delay = failure_backoff(mem.failures);
    let due = last + SignedDuration::try_from(delay).unwrap_or_default();
    (due > now).then(|| Duration::try_from(due - now).unwrap_or_default())
}

/// What one pass sees of a Job: its active pods, those failed since the last pass, the counts
/// and the back-off record.
pub struct Seen<'a> {
    pub active: &'a [JobPod],
    pub new_failed: &'a [JobPod],
    pub counts: &'a Counts,
    pub memory: &'a JobMemory,
}

/// Failed or complete already (before creating anything).
fn finished_verdict(
    spec: &JobSpec,
    ns: &str,
    seen: &Seen,
    started: Option<Timestamp>,
    now: Timestamp,
) -> Option<Verdict> {
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let c = seen.counts;
    let on_failure = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure");
    let restarts: i32 = seen.active.iter().map(|p| p.restarts).sum();
    if let Some(message) = job_policy::fail_job(spec, ns, seen.new_failed) {
        return Some(Verdict::Failed("PodFailurePolicy", message));
    }
    // With backoffLimitPerIndex each index has its own limit, and backoffLimit is unused.
    let failed_idx = c.failed_indexes.as_ref().filter(|_| indexed);
    if let (Some(f), Some(max)) = (failed_idx, spec.max_failed_indexes) {
        if f.len() as i32 > max {
            return Some(Verdict::Failed(
                "MaxFailedIndexesExceeded",
                "Job has exceeded the specified maximal number of failed indexes".into(),
            ));
        }
    }
    if failed_idx.is_none()
        && (c.failed > backoff_limit
            || (on_failure && backoff_limit > 0 && restarts >= backoff_limit)
            || (on_failure && backoff_limit == 0 && restarts > 0))
    {
        return Some(Verdict::Failed(
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit".into(),
        ));
    }
    if let (Some(ads), Some(start)) = (spec.active_deadline_seconds, started) {
        if start + SignedDuration::from_secs(ads) <= now {
            return Some(Verdict::Failed(
                "DeadlineExceeded",
                "Job was active longer than specified deadline".into(),
            ));
        }
    }
    if indexed && job_policy::success_rule(spec, &c.completed).is_some() {
        return Some(Verdict::Complete("SuccessPolicy"));
    }
    if let (Some(n), Some(f)) = (spec.completions, failed_idx.filter(|f| !f.is_empty())) {
        // Every index settled, some failed.
        let settled = (0..n).all(|i| c.completed.contains(&i) || f.contains(&i));
        if settled
            && seen
                .active
                .iter()
                .all(|p| p.index.is_some_and(|i| f.contains(&i)))
        {
            return Some(Verdict::Failed(
                "FailedIndexes",
                "Job has failed indexes".into(),
            ));
        }
    }
    let succeeded = if indexed {
        c.completed.len() as i32
    } else {
        c.succeeded
    };
    let done = match spec.completions {
        Some(n) => succeeded >= n,
        None => succeeded > 0 && seen.active.is_empty(),
    };
    done.then_some(Verdict::Complete("CompletionsReached"))
}

/// The decision of one pass (pure; `started`: the Job's startTime).
pub fn decide(job: &Job, seen: &Seen, started: Option<Timestamp>, now: Timestamp) -> Verdict {
    let spec = job.spec.clone().unwrap_or_default();
    let ns = job.metadata.namespace.as_deref().unwrap_or("default");
    if let Some(v) = finished_verdict(&spec, ns, seen, started, now) {
        return v;
    }
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let active = seen.active;
    // How many should run, and which indexes.
    let mut create = Vec::new();
    let mut delete = Vec::new();
    if spec.completion_mode.as_deref() == Some("Indexed") {
        let c = spec.completions.unwrap_or(0);
        let failed_idx = seen.counts.failed_indexes.clone().unwrap_or_default();
        let running: BTreeSet<i32> = active.iter().filter_map(|p| p.index).collect();
        let pending: Vec<i32> = (0..c)
            .filter(|i| !seen.counts.completed.contains(i) && !running.contains(i))
            .filter(|i| !failed_idx.contains(i))
            .collect();
        let room = (parallelism - active.len() as i32).max(0) as usize;
        create.extend(pending.into_iter().take(room).map(Some));
    } else {
        let succeeded = seen.counts.succeeded;
        let want = match spec.completions {
            Some(c) => parallelism.min(c - succeeded),
            // A work queue: after a success no new pods, the running ones finish.
            None if succeeded > 0 => active.len() as i32,
            None => parallelism,
        }
        .max(0) as usize;
        if active.len() > want {
            // Not-ready pods first, then the newest (the end of the list).
            let mut extra: Vec<&JobPod> = active.iter().collect();
            extra.sort_by_key(|p| p.ready);
            delete.extend(extra[..active.len() - want].iter().map(|p| p.name.clone()));
        } else {
            create.extend(std::iter::repeat_n(None, want - active.len()));
        }
    }
    let wait = if create.is_empty() {
        None
    } else {
        backoff_wait(seen.memory, now)
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
    type State = JobMemory;
    type Handle = ();
    type Error = ControllerError;

    fn init(&self, _key: &ObjectKey, _wake: Wake) -> (JobMemory, ()) {
        (JobMemory::default(), ())
    }

    async fn reconcile(
        &self,
        key: &ObjectKey,
        mem: &mut JobMemory,
    ) -> Result<Action, ControllerError> {
        let Some(Object::Job(job)) = self.store.get(key).await else {
            return Ok(Action::Done);
        };
        if crate::foreground::being_deleted(&job.metadata) {
            return Ok(Action::AwaitChange);
        }
        sync(&*self.store, key, &job, mem).await
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

pub(crate) fn pod_key(ns: &str, name: &str) -> ObjectKey {
    ObjectKey {
        kind: "Pod",
        namespace: ns.to_owned(),
        name: name.to_owned(),
    }
}

/// One pass over Job `job` (`mem`: what the controller remembers of it).
pub async fn sync<S: Store + ?Sized>(
    store: &S,
    key: &ObjectKey,
    job: &Job,
    mem: &mut JobMemory,
) -> Result<Action, ControllerError> {
    let now = store.now();
    let prev = job.status.clone().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    if let Some(done) = finished_at(&prev) {
        return ttl(store, key, job, done, now).await;
    }
    let spec = job.spec.clone().unwrap_or_default();
    let t = job_tracking::collect(store, key, &uid, &spec, &prev).await;
    job_tracking::remember(mem, &t);
    let counts = job_tracking::counts(&spec, &key.namespace, &prev, &t, mem);
    let mut st = prev.clone();
    let mut conds = st.conditions.take().unwrap_or_default();
    let suspended = spec.suspend == Some(true);
    let (action, created) = if suspended {
        suspend(store, key, &t, &mut conds, &mut st, now).await?
    } else {
        resume(&mut conds, now);
        let seen = Seen {
            active: &t.active,
            new_failed: &t.new_failed,
            counts: &counts,
            memory: mem,
        };
        run(store, key, job, &seen, &mut conds, &mut st, now).await?
    };
    st.conditions = Some(conds).filter(|c| !c.is_empty());
    let finished = finished_at(&st).is_some();
    let running = !(finished || suspended);
    st.active = running
        .then_some(t.active.len() as i32 + created)
        .filter(|n| *n > 0);
    st.ready = Some(t.active.iter().filter(|p| p.ready).count() as i32);
    if spec.completion_mode.as_deref() == Some("Indexed") {
        st.completed_indexes = Some(format_indexes(&counts.completed)).filter(|s| !s.is_empty());
        st.failed_indexes = counts.failed_indexes.as_ref().map(format_indexes);
    }
    job_tracking::record(store, key, &prev, st, &t).await?;
    if finished {
        return Ok(Action::Requeue(Duration::from_millis(10)));
    }
    Ok(action)
}

/// A suspended Job: its active pods deleted, the Suspended condition, no startTime.
async fn suspend<S: Store + ?Sized>(
    store: &S,
    key: &ObjectKey,
    t: &Tracked,
    conds: &mut Vec<JobCondition>,
    st: &mut JobStatus,
    now: Timestamp,
) -> Result<(Action, i32), ControllerError> {
    delete_active(store, key, &t.active).await?;
    let has_suspended = conds
        .iter()
        .any(|c| c.type_ == "Suspended" && c.status == "True");
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
    Ok((Action::AwaitChange, 0))
}

/// A Job no longer suspended: the Suspended condition turns False.
fn resume(conds: &mut Vec<JobCondition>, now: Timestamp) {
    if conds
        .iter()
        .any(|c| c.type_ == "Suspended" && c.status == "True")
    {
        conds.retain(|c| c.type_ != "Suspended");
        conds.push(cond("Suspended", false, "JobResumed", "Job resumed", now));
    }
}

/// A running Job: decide, then finish it or create and delete its pods. Returns the next
/// action and how many pods were created.
async fn run<S: Store + ?Sized>(
    store: &S,
    key: &ObjectKey,
    job: &Job,
    seen: &Seen<'_>,
    conds: &mut Vec<JobCondition>,
    st: &mut JobStatus,
    now: Timestamp,
) -> Result<(Action, i32), ControllerError> {
    let started = st.start_time.get_or_insert(Time(now)).clone();
    let mut created = 0;
    match decide(job, seen, Some(started.0), now) {
        Verdict::Complete(reason) => {
            delete_active(store, key, seen.active).await?;
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
            delete_active(store, key, seen.active).await?;
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
                delete_pod(store, &key.namespace, &name).await?;
            }
            for index in create {
                create_pod(store, key, job, index, seen.memory).await?;
                created += 1;
            }
            let deadline = job.spec.as_ref().and_then(|s| s.active_deadline_seconds);
            let deadline = deadline.map(|ads| {
                let due = started.0 + SignedDuration::from_secs(ads);
                Duration::try_from(due - now).unwrap_or_default()
            });
            if let Some(d) = [wait, deadline].into_iter().flatten().min() {
                return Ok((Action::Requeue(d + Duration::from_millis(50)), created));
            }
        }
    }
    Ok((Action::AwaitChange, created))
}

/// Delete a pod the Job no longer wants: released first, so its end is not counted.
async fn delete_pod<S: Store + ?Sized>(
    store: &S,
    ns: &str,
    name: &str,
) -> Result<(), ControllerError> {
    job_tracking::release(store, ns, name).await?;
    store.delete(&pod_key(ns, name)).await?;
    Ok(())
}

async fn delete_active<S: Store + ?Sized>(
    store: &S,
    key: &ObjectKey,
    active: &[JobPod],
) -> Result<(), ControllerError> {
    for p in active {
        delete_pod(store, &key.namespace, &p.name).await?;
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
    mem: &JobMemory,
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
    pod.metadata
        .finalizers
        .get_or_insert_with(Vec::new)
        .push(job_tracking::TRACKING_FINALIZER.into());
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
        let failures = spec
            .backoff_limit_per_index
            .map(|_| mem.index_failures.get(&i).copied().unwrap_or(0));
        set_index(&mut pod, &key.name, i, failures);
    }
    store.create(Object::Pod(Box::new(pod))).await?;
    tracing::info!(job = %key, pod = %name, index, "created pod");
    Ok(())
}

/// An Indexed Job's pod for index `i`: its label and annotation, hostname `<job>-<i>`,
/// `JOB_COMPLETION_INDEX`, and with backoffLimitPerIndex the index's failures so far.
fn set_index(pod: &mut Pod, job: &str, i: i32, failures: Option<i32>) {
    let index = i.to_string();
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(INDEX_ANNOTATION.into(), index.clone());
    let annotations = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(INDEX_ANNOTATION.into(), index.clone());
    if let Some(n) = failures {
        annotations.insert(INDEX_FAILURE_COUNT.into(), n.to_string());
    }
    if let Some(ps) = pod.spec.as_mut() {
        ps.hostname.get_or_insert_with(|| format!("{job}-{i}"));
        for c in ps
            .containers
            .iter_mut()
            .chain(ps.init_containers.iter_mut().flatten())
        {
            c.env.get_or_insert_with(Vec::new).push(EnvVar {
                name: "JOB_COMPLETION_INDEX".into(),
                value: Some(index.clone()),
                value_from: None,
            });
        }
    }
}
