//! Garbage collection, background cascading: an object (a Pod, a ReplicaSet) whose controller
//! owner no longer exists — absent, or present with another uid — is deleted. Deleting a
//! Deployment removes its ReplicaSets at one round and their Pods at the next.

use std::collections::HashSet;

use crate::common::controller_of;
use crate::Store;

/// Kinds that own objects, and kinds that are owned.
const OWNERS: &[&str] = &[
    "Deployment",
    "ReplicaSet",
    "Job",
    "DaemonSet",
    "CronJob",
    "StatefulSet",
];
const DEPENDENTS: &[&str] = &[
    "ReplicaSet",
    "Pod",
    "Job",
    "PersistentVolumeClaim",
    "ControllerRevision",
];

/// One round: delete every dependent whose controller owner is gone.
pub async fn collect<S: Store + ?Sized>(store: &S) {
    let mut owners: HashSet<(String, String, String)> = HashSet::new();
    for kind in OWNERS {
        for o in store.list(kind).await {
            let m = o.meta();
            owners.insert((
                kind.to_string(),
                o.key().namespace,
                m.uid.clone().unwrap_or_default(),
            ));
        }
    }
    for kind in DEPENDENTS {
        for o in store.list(kind).await {
            let Some(r) = controller_of(o.meta()) else {
                continue;
            };
            // Being deleted already (a Pod within its grace period).
            if o.meta().deletion_timestamp.is_some() {
                continue;
            }
            if !OWNERS.contains(&r.kind.as_str()) {
                continue;
            }
            let k = o.key();
            if owners.contains(&(r.kind.clone(), k.namespace.clone(), r.uid.clone())) {
                continue;
            }
            tracing::info!(object = %k, owner = %format!("{}/{}", r.kind, r.name), "owner is gone: deleting");
            if let Err(e) = store.delete(&k).await {
                tracing::warn!(object = %k, err = %e, "garbage collection failed");
            }
        }
    }
}
