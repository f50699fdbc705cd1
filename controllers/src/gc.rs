//! Garbage collection, background cascading: an object (a Pod, a ReplicaSet) whose controller
//! owner no longer exists — absent, or present with another uid — is deleted. Deleting a
//! Deployment removes its ReplicaSets at one round and their Pods at the next.

use std::collections::HashSet;

use kinglet_manifest::Object;

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
    // Only the orphans are copied out of the store.
    let orphan = move |o: &Object| {
        let Some(r) = controller_of(o.meta()) else {
            return false;
        };
        // Being deleted already (a Pod within its grace period).
        if o.meta().deletion_timestamp.is_some() || !OWNERS.contains(&r.kind.as_str()) {
            return false;
        }
        let ns = o.meta().namespace.as_deref();
        let ns = ns.unwrap_or(kinglet_manifest::DEFAULT_NAMESPACE).to_owned();
        !owners.contains(&(r.kind.clone(), ns, r.uid.clone()))
    };
    for kind in DEPENDENTS {
        for o in store.list_where(kind, &orphan).await {
            let Some(r) = controller_of(o.meta()) else {
                continue;
            };
            let k = o.key();
            tracing::info!(object = %k, owner = %format!("{}/{}", r.kind, r.name), "owner is gone: deleting");
            if let Err(e) = store.delete(&k).await {
                tracing::warn!(object = %k, err = %e, "garbage collection failed");
            }
        }
    }
}
