//! Foreground cascading deletion, as the garbage collector does it: an owner deleted with
//! propagationPolicy Foreground (`kinglet delete --cascade=foreground`) carries a
//! deletionTimestamp and the `foregroundDeletion` finalizer and stays, visible, while its
//! dependents are deleted — a dependent that owns objects itself in foreground too, so a
//! Deployment's ReplicaSets wait for their Pods — and is removed once no dependent with
//! `blockOwnerDeletion` is left. Controllers leave an object being deleted alone (no new pods
//! for a ReplicaSet on its way out).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kinglet_kubelet::cascade::{mark_foreground, FOREGROUND_FINALIZER};
use kinglet_manifest::{Object, ObjectKey};

use crate::{ControllerError, Store};

/// The kinds that own or are owned.
const KINDS: &[&str] = &[
    "Deployment",
    "ReplicaSet",
    "Job",
    "DaemonSet",
    "CronJob",
    "StatefulSet",
    "Pod",
    "PersistentVolumeClaim",
    "ControllerRevision",
];

/// Whether the object is being deleted (a controller then leaves it alone).
pub fn being_deleted(meta: &ObjectMeta) -> bool {
    meta.deletion_timestamp.is_some()
}

/// Whether the object waits for its dependents' deletion.
pub fn waiting(meta: &ObjectMeta) -> bool {
    meta.deletion_timestamp.is_some()
        && meta
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == FOREGROUND_FINALIZER)
}

/// The reference of `meta` to the owner with `uid`, if any.
fn owner_ref<'a>(
    meta: &'a ObjectMeta,
    uid: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.uid == uid)
}

/// One round: for every owner deleted in foreground, delete its dependents, and remove it
/// once none that blocks its deletion is left.
pub async fn collect<S: Store + ?Sized>(store: &S) {
    // Most rounds have no owner waiting: then nothing is copied out of the store.
    let waits = |o: &Object| waiting(o.meta());
    let mut any = false;
    for kind in KINDS {
        any = any || !store.list_where(kind, &waits).await.is_empty();
    }
    if !any {
        return;
    }
    let mut all = Vec::new();
    for kind in KINDS {
        all.extend(store.list(kind).await);
    }
    for owner in all.iter().filter(|o| waiting(o.meta())) {
        if let Err(e) = step(store, owner, &all).await {
            tracing::warn!(object = %owner.key(), err = %kinglet_util::chain(&e), "foreground deletion");
        }
    }
}

/// What one round does for one owner; whether it was removed.
pub async fn step<S: Store + ?Sized>(
    store: &S,
    owner: &Object,
    all: &[Object],
) -> Result<bool, ControllerError> {
    let uid = owner.meta().uid.clone().unwrap_or_default();
    let mut blocking = 0;
    for d in all {
        let Some(r) = owner_ref(d.meta(), &uid) else {
            continue;
        };
        if r.block_owner_deletion == Some(true) {
            blocking += 1;
        }
        if being_deleted(d.meta()) {
            continue;
        }
        let dk = d.key();
        let duid = d.meta().uid.clone().unwrap_or_default();
        if all.iter().any(|o| owner_ref(o.meta(), &duid).is_some()) {
            tracing::info!(object = %dk, owner = %owner.key(), "owner deleted in foreground: deleting in foreground");
            mark(store, &dk).await?;
        } else {
            tracing::info!(object = %dk, owner = %owner.key(), "owner deleted in foreground: deleting");
            store.delete(&dk).await?;
        }
    }
    if blocking > 0 {
        return Ok(false);
    }
    let k = owner.key();
    tracing::info!(object = %k, "no dependent left: deleting (foreground)");
    store.delete(&k).await?;
    Ok(true)
}

/// Mark the object at `key` as deleted in foreground.
pub async fn mark<S: Store + ?Sized>(store: &S, key: &ObjectKey) -> Result<(), ControllerError> {
    let now = Time(store.now());
    store
        .modify(key, false, Box::new(move |o| mark_foreground(o, now)))
        .await?;
    Ok(())
}
