//! A Deployment's status as upstream's `calculateStatus` and `syncRolloutStatus` write it,
//! and the revision annotation it carries from its new ReplicaSet.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kinglet_manifest::{Object, ObjectKey};

use super::rollout::{Rolling, RsView};
use super::REVISION;
use crate::{ControllerError, Store};

/// Complete: every replica updated, available, none old left, this generation observed.
pub fn is_complete(d: &Deployment, st: &DeploymentStatus) -> bool {
    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    st.updated_replicas == Some(replicas)
        && st.replicas == Some(replicas)
        && st.available_replicas == Some(replicas)
        && st.observed_generation >= d.metadata.generation
}

/// Progress since `old`: more updated, ready or available pods, or fewer old ones.
fn progressed(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let old_pods = |s: &DeploymentStatus| s.replicas.unwrap_or(0) - s.updated_replicas.unwrap_or(0);
    new.updated_replicas > old.updated_replicas
        || new.ready_replicas > old.ready_replicas
        || new.available_replicas > old.available_replicas
        || old_pods(new) < old_pods(old)
}

fn cond(
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Upstream's `SetDeploymentCondition` (`refresh`: the ReplicaSetUpdated case, which renews
/// lastUpdateTime on each progress).
fn set_condition(st: &mut DeploymentStatus, mut c: DeploymentCondition, refresh: bool) {
    let conds = st.conditions.get_or_insert_with(Vec::new);
    if let Some(cur) = conds.iter().find(|x| x.type_ == c.type_) {
        if cur.status == c.status && cur.reason == c.reason && !refresh {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    conds.retain(|x| x.type_ != c.type_);
    conds.push(c);
}

/// The new status: counts from the ReplicaSets, then the conditions.
pub fn compute(
    d: &Deployment,
    r: &Rolling,
    all: &[RsView],
    new: Option<&RsView>,
    created_new: Option<&str>,
    now: Timestamp,
) -> DeploymentStatus {
    let prev = d.status.clone().unwrap_or_default();
    let available: i32 = all.iter().map(|v| v.available).sum();
    let total_spec: i32 = all.iter().map(|v| v.replicas).sum();
    let mut st = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(all.iter().map(|v| v.actual).sum()),
        updated_replicas: Some(new.map(|v| v.actual).unwrap_or(0)),
        ready_replicas: Some(all.iter().map(|v| v.ready).sum()),
        available_replicas: Some(available),
        unavailable_replicas: Some((total_spec - available).max(0)),
        conditions: prev.conditions.clone(),
        collision_count: prev.collision_count,
        terminating_replicas: None,
    };
    let has_min = available >= r.replicas - r.max_unavailable;
    let (reason, msg) = if has_min {
        (
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
        )
    } else {
        (
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
        )
    };
    set_condition(
        &mut st,
        cond("Available", has_min, reason, msg.into(), now),
        false,
    );
    let name = new.map(|v| v.name.as_str()).unwrap_or("");
    let paused = d.spec.as_ref().and_then(|s| s.paused) == Some(true);
    if paused {
        let c = cond(
            "Progressing",
            false,
            "DeploymentPaused",
            "Deployment is paused".into(),
            now,
        );
        set_condition(&mut st, c, false);
        return st;
    }
    let deadline = d
        .spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .unwrap_or(600);
    if is_complete(d, &st) {
        let m = format!("ReplicaSet {name:?} has successfully progressed.");
        set_condition(
            &mut st,
            cond("Progressing", true, "NewReplicaSetAvailable", m, now),
            false,
        );
    } else if let Some(n) = created_new {
        let m = format!("Created new replica set {n:?}");
        set_condition(
            &mut st,
            cond("Progressing", true, "NewReplicaSetCreated", m, now),
            false,
        );
    } else if progressed(&prev, &st) {
        let m = format!("ReplicaSet {name:?} is progressing.");
        set_condition(
            &mut st,
            cond("Progressing", true, "ReplicaSetUpdated", m, now),
            true,
        );
    } else {
        let last = st
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Progressing")
            .and_then(|c| c.last_update_time.as_ref().map(|t| t.0));
        let timed_out = last.is_some_and(|t| t + SignedDuration::from_secs(deadline as i64) < now);
        if timed_out {
            let m = format!("ReplicaSet {name:?} has timed out progressing.");
            set_condition(
                &mut st,
                cond("Progressing", false, "ProgressDeadlineExceeded", m, now),
                false,
            );
        }
    }
    st
}

/// Write the status and the revision annotation; returns whether the rollout is complete.
pub async fn write<S: Store + ?Sized>(
    store: &S,
    key: &ObjectKey,
    d: &Deployment,
    r: &Rolling,
    all: &[RsView],
    new: Option<&RsView>,
    created_new: Option<&str>,
) -> Result<bool, ControllerError> {
    let st = compute(d, r, all, new, created_new, store.now());
    let complete = is_complete(d, &st);
    let revision = new.map(|v| v.revision.to_string());
    let generation = d.metadata.generation;
    store
        .modify(
            key,
            false,
            Box::new(move |o| {
                let Object::Deployment(d) = o else {
                    return false;
                };
                // The user changed the spec meanwhile: the next pass writes the status.
                if d.metadata.generation != generation {
                    return false;
                }
                let mut changed = d.status.as_ref() != Some(&st);
                d.status = Some(st);
                if let Some(rev) = revision {
                    let a = d.metadata.annotations.get_or_insert_with(Default::default);
                    changed |= a.get(REVISION) != Some(&rev);
                    a.insert(REVISION.into(), rev);
                }
                changed
            }),
        )
        .await?;
    Ok(complete)
}
