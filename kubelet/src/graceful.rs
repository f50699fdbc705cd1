//! Graceful deletion of Pods, as the API server and the kubelet do it: deleting a Pod (`kinglet
//! delete`, or its file leaving the manifests directory) sets its `deletionTimestamp` and
//! `deletionGracePeriodSeconds` and keeps it; its worker stops its containers within the grace
//! period; the dispatcher removes the object once no sandbox of the pod is left. Meanwhile
//! `get` shows it (kubectl's `Terminating`). Other kinds are removed at once. Pods that
//! controllers delete go the same way; the controllers no longer count them as live.

use kinglet_manifest::{Object, ObjectKey};

use crate::objects::ObjectStore;
use crate::{status, KubeletError};

/// Whether the Pod is being deleted.
pub fn is_terminating(o: &Object) -> bool {
    matches!(o, Object::Pod(p) if p.metadata.deletion_timestamp.is_some())
}

/// Delete `k`: a Pod is marked (once), anything else removed. False: there is no such object.
pub(crate) fn delete(store: &mut ObjectStore, k: &ObjectKey) -> Result<bool, KubeletError> {
    match store.map.get(k) {
        None => Ok(false),
        Some(Object::Pod(p)) => {
            if p.metadata.deletion_timestamp.is_none() {
                let mut p = p.clone();
                let grace = p
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
                    .unwrap_or(30);
                p.metadata.deletion_timestamp = Some(status::now_time());
                p.metadata.deletion_grace_period_seconds = Some(grace);
                store.put(Object::Pod(p))?;
            }
            Ok(true)
        }
        Some(_) => Ok(store.remove(k)?.is_some()),
    }
}
