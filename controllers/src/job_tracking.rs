//! Counting a Job's finished pods once, as upstream's Job controller does with the
//! `batch.kubernetes.io/job-tracking` finalizer: every pod the controller creates carries it;
//! a pass reads the status only of the pods that still carry it (the active ones and those
//! finished since the last pass), records the newly finished ones in
//! `status.uncountedTerminatedPods` (and `completedIndexes`/`failedIndexes`), removes their
//! finalizer, then moves them into `succeeded`/`failed`. A pass thus costs O(active pods),
//! however many finished pods the Job keeps (they stay until the Job is deleted), and a
//! daemon killed between the steps neither loses nor double-counts a pod. Pods the controller
//! deletes (suspend, excess parallelism, a finished Job) lose the finalizer first: they are
//! not counted. The back-off after failures and the per-index failure counts are kept in
//! memory ([`JobMemory`], upstream's back-off store; a restarted daemon starts without delay)
//! and per index in the `batch.kubernetes.io/job-index-failure-count` annotation of each pod.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use k8s_openapi::api::batch::v1::{JobSpec, JobStatus, UncountedTerminatedPods};
use k8s_openapi::jiff::Timestamp;
use kinglet_manifest::{Object, ObjectKey};

use crate::common::{self, owned_by};
use crate::job::{job_pod, pod_key, JobPod};
use crate::job_policy::{self, FailureAction};
use crate::{ControllerError, Store};

/// The finalizer of a pod whose end the Job has not counted yet.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// Failures of the pod's index before this pod (backoffLimitPerIndex).
pub const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";

/// What the controller keeps of one Job between passes, in memory.
#[derive(Debug, Default, Clone)]
pub struct JobMemory {
    /// Failed pods since the last success, and when the last of them finished.
    pub failures: u32,
    pub last_failure: Option<Timestamp>,
    /// Failed pods per index (backoffLimitPerIndex).
    pub index_failures: BTreeMap<i32, i32>,
}

/// The pods of a Job that one pass looks at.
#[derive(Debug, Default)]
pub struct Tracked {
    pub active: Vec<JobPod>,
    /// Finished since the last pass: to count (failures an Ignore rule matched left out).
    pub new_succeeded: Vec<JobPod>,
    pub new_failed: Vec<JobPod>,
    /// Finished pods still carrying the finalizer: released once recorded.
    pub release: Vec<String>,
}

/// The Job's counts after this pass's newly finished pods.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    pub succeeded: i32,
    pub failed: i32,
    /// Succeeded indexes below `completions` (Indexed).
    pub completed: BTreeSet<i32>,
    /// Failed indexes, with backoffLimitPerIndex.
    pub failed_indexes: Option<BTreeSet<i32>>,
}

pub fn has_finalizer(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool {
    meta.finalizers
        .iter()
        .flatten()
        .any(|f| f == TRACKING_FINALIZER)
}

fn uncounted(st: &JobStatus) -> (Vec<String>, Vec<String>) {
    let u = st.uncounted_terminated_pods.clone().unwrap_or_default();
    (
        u.succeeded.unwrap_or_default(),
        u.failed.unwrap_or_default(),
    )
}

/// The Job's pods that carry the finalizer, with their state (the others are counted).
pub async fn collect<S: Store + ?Sized>(
    store: &S,
    key: &ObjectKey,
    uid: &str,
    spec: &JobSpec,
    prev: &JobStatus,
) -> Tracked {
    let (us, uf) = uncounted(prev);
    let recorded: HashSet<&String> = us.iter().chain(&uf).collect();
    let mut t = Tracked::default();
    let (ns, owner) = (key.namespace.clone(), uid.to_owned());
    let mine = move |o: &Object| {
        let m = o.meta();
        m.namespace.as_deref() == Some(&ns) && owned_by(m, &owner) && has_finalizer(m)
    };
    for o in store.list_where("Pod", &mine).await {
        let Object::Pod(p) = o else { continue };
        let st = store.pod_status(&p).await;
        let terminal = common::is_terminal(&st);
        // A pod being deleted (by a user) no longer counts as active; counted once it ends.
        if p.metadata.deletion_timestamp.is_some() && !terminal {
            continue;
        }
        let jp = job_pod(&p, &st);
        if !terminal {
            t.active.push(jp);
            continue;
        }
        t.release.push(jp.name.clone());
        if recorded.contains(&jp.uid) {
            continue;
        }
        if jp.state == "Succeeded" {
            t.new_succeeded.push(jp);
        } else if job_policy::classify(spec, &key.namespace, &jp) != FailureAction::Ignore {
            t.new_failed.push(jp);
        }
    }
    t
}

/// Update the back-off record and per-index failures with the newly finished pods (upstream's
/// `newBackoffRecord`: a success resets the failures to those after it).
pub fn remember(mem: &mut JobMemory, t: &Tracked) {
    let last_success = t.new_succeeded.iter().filter_map(|p| p.finished).max();
    let failed: Vec<Timestamp> = t
        .new_failed
        .iter()
        .map(|p| p.finished.unwrap_or(Timestamp::UNIX_EPOCH))
        .filter(|f| last_success.is_none_or(|s| *f > s))
        .collect();
    if last_success.is_some() {
        mem.failures = 0;
        mem.last_failure = None;
    }
    mem.failures += failed.len() as u32;
    mem.last_failure = mem.last_failure.max(failed.iter().max().copied());
    for p in &t.active {
        if let Some(i) = p.index {
            let n = mem.index_failures.entry(i).or_default();
            *n = (*n).max(p.index_failures);
        }
    }
    for p in &t.new_failed {
        if let Some(i) = p.index {
            let n = mem.index_failures.entry(i).or_default();
            *n = (*n).max(p.index_failures + 1);
        }
    }
}

/// The counts: the status's, its uncounted pods', and the newly finished pods'.
pub fn counts(spec: &JobSpec, ns: &str, prev: &JobStatus, t: &Tracked, mem: &JobMemory) -> Counts {
    let (us, uf) = uncounted(prev);
    let completions = spec.completions.unwrap_or(0);
    let mut completed = job_policy::parse_indexes(prev.completed_indexes.as_deref().unwrap_or(""));
    completed.extend(
        t.new_succeeded
            .iter()
            .filter_map(|p| p.index)
            .filter(|i| *i < completions),
    );
    let failed_indexes = spec.backoff_limit_per_index.map(|limit| {
        let mut f = job_policy::parse_indexes(prev.failed_indexes.as_deref().unwrap_or(""));
        for p in &t.new_failed {
            let Some(i) = p.index else { continue };
            if job_policy::classify(spec, ns, p) == FailureAction::FailIndex
                || mem.index_failures.get(&i).copied().unwrap_or(0) > limit
            {
                f.insert(i);
            }
        }
        f
    });
    Counts {
        succeeded: prev.succeeded.unwrap_or(0) + (us.len() + t.new_succeeded.len()) as i32,
        failed: prev.failed.unwrap_or(0) + (uf.len() + t.new_failed.len()) as i32,
        completed,
        failed_indexes,
    }
}

/// Store `st` as the Job's status when it differs from `prev`.
async fn write<S: Store + ?Sized>(
    store: &S,
    key: &ObjectKey,
    prev: &JobStatus,
    st: &JobStatus,
) -> Result<(), ControllerError> {
    if st == prev {
        return Ok(());
    }
    common::store_status(store, key, st.clone(), |o| match o {
        Object::Job(j) => Some(&mut j.status),
        _ => None,
    })
    .await
}

/// Remove the tracking finalizer of pod `name`.
pub async fn release<S: Store + ?Sized>(
    store: &S,
    ns: &str,
    name: &str,
) -> Result<(), ControllerError> {
    store
        .modify(
            &pod_key(ns, name),
            false,
            Box::new(|o| {
                let m = o.meta_mut();
                let Some(f) = m.finalizers.as_mut() else {
                    return false;
                };
                let before = f.len();
                f.retain(|x| x != TRACKING_FINALIZER);
                let changed = f.len() != before;
                if f.is_empty() {
                    m.finalizers = None;
                }
                changed
            }),
        )
        .await?;
    Ok(())
}

/// Store the pass's status `st` in three steps: the newly finished pods as uncounted, their
/// finalizers removed, then counted. A Complete or Failed condition this pass reached is held
/// back to the last step, as upstream's controller adds it only once no pod is uncounted (the
/// SuccessCriteriaMet/FailureTarget conditions say so meanwhile): a reader never sees a
/// finished Job whose counts are not final.
pub async fn record<S: Store + ?Sized>(
    store: &S,
    key: &ObjectKey,
    prev: &JobStatus,
    mut st: JobStatus,
    t: &Tracked,
) -> Result<(), ControllerError> {
    let (mut us, mut uf) = uncounted(prev);
    us.extend(t.new_succeeded.iter().map(|p| p.uid.clone()));
    uf.extend(t.new_failed.iter().map(|p| p.uid.clone()));
    st.succeeded = prev.succeeded;
    st.failed = prev.failed;
    st.uncounted_terminated_pods = Some(UncountedTerminatedPods {
        succeeded: Some(us.clone()).filter(|v| !v.is_empty()),
        failed: Some(uf.clone()).filter(|v| !v.is_empty()),
    });
    if t.release.is_empty() && us.is_empty() && uf.is_empty() {
        return write(store, key, prev, &st).await;
    }
    let recorded = unfinished(&st, prev);
    write(store, key, prev, &recorded).await?;
    for name in &t.release {
        release(store, &key.namespace, name).await?;
    }
    let add = |n: Option<i32>, k: usize| Some(n.unwrap_or(0) + k as i32).filter(|n| *n > 0);
    st.succeeded = add(st.succeeded, us.len());
    st.failed = add(st.failed, uf.len());
    st.uncounted_terminated_pods = Some(UncountedTerminatedPods::default());
    write(store, key, &recorded, &st).await
}

/// `st` without the Complete/Failed condition (and completion time) that `prev` lacks.
fn unfinished(st: &JobStatus, prev: &JobStatus) -> JobStatus {
    let had = |type_: &str| {
        prev.conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == type_ && c.status == "True")
    };
    let mut out = st.clone();
    if let Some(conds) = &mut out.conditions {
        conds.retain(|c| !matches!(c.type_.as_str(), "Complete" | "Failed") || had(&c.type_));
    }
    out.conditions = out.conditions.filter(|c| !c.is_empty());
    if !had("Complete") {
        out.completion_time = prev.completion_time.clone();
    }
    out
}
