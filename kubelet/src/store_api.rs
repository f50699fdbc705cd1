//! The object store as the workload controllers (crate `kinglet-controllers`) see it: list
//! objects of a kind, create one (with a fresh uid), modify one in place under the store's
//! lock (so a controller's status write never undoes a user's apply made meanwhile), delete,
//! read a pod's status, and a signal after every publication of the objects. Pods created and
//! deleted here go through the same admission (ServiceAccount) and graceful deletion as
//! applied and `kinglet delete`d ones.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kinglet_manifest::{Object, ObjectKey};

use crate::world::World;
use crate::{status, KubeletError, Supervisor};

impl Supervisor {
    /// The stored objects of `kind` (`"Pod"`, `"Deployment"`, ...).
    pub async fn list_objects(&self, kind: &str) -> Vec<Object> {
        let store = self.store.lock().await;
        store
            .map
            .iter()
            .filter(|(k, _)| k.kind == kind)
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// The stored objects of `kind` that `keep` accepts (tested under the lock: only those
    /// are copied).
    pub async fn list_objects_where(
        &self,
        kind: &str,
        keep: &(dyn Fn(&Object) -> bool + Send + Sync),
    ) -> Vec<Object> {
        let store = self.store.lock().await;
        store
            .map
            .iter()
            .filter(|(k, o)| k.kind == kind && keep(o))
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// One stored object.
    pub async fn get_object(&self, key: &ObjectKey) -> Option<Object> {
        self.store.lock().await.map.get(key).cloned()
    }

    /// Store a new object: a fresh uid, creation time and generation 1 (an existing object of
    /// that key is an error: controllers pick fresh names). Returns it as stored.
    pub async fn create_object(&self, mut obj: Object) -> Result<Object, KubeletError> {
        {
            let mut store = self.store.lock().await;
            let k = obj.key();
            if store.map.contains_key(&k) {
                return Err(KubeletError::invalid(
                    "object",
                    format!("{k} already exists"),
                ));
            }
            crate::namespaces::admit(&store.map, &k)?;
            // The same admission as an applied Pod: its ServiceAccount must exist.
            crate::serviceaccounts::admit_pod(&store.map, &mut obj)
                .map_err(|e| KubeletError::invalid("spec.serviceAccountName", e))?;
            if let Some(sa) = crate::serviceaccounts::default_if_missing(&store.map, &k.namespace) {
                store.put(sa)?;
            }
            let m = obj.meta_mut();
            m.uid = Some(crate::api::new_uid());
            m.creation_timestamp = Some(status::now_time());
            m.generation = Some(1);
            if k.kind != "Namespace" {
                m.namespace = Some(k.namespace.clone());
            }
            store.put(obj.clone())?;
        }
        self.wake.notify_one();
        Ok(obj)
    }

    /// Change the stored object `key` in place with `f` (which says whether it changed);
    /// persisted and published when it did. `bump_generation`: a spec change (scale, restart,
    /// undo), not a status write. Returns the object after `f`, None when absent.
    pub async fn modify_object(
        &self,
        key: &ObjectKey,
        bump_generation: bool,
        f: impl FnOnce(&mut Object) -> bool + Send,
    ) -> Result<Option<Object>, KubeletError> {
        let out = {
            let mut store = self.store.lock().await;
            let Some(mut o) = store.map.get(key).cloned() else {
                return Ok(None);
            };
            if !f(&mut o) {
                return Ok(Some(o));
            }
            if bump_generation {
                let m = o.meta_mut();
                m.generation = Some(m.generation.unwrap_or(1) + 1);
            }
            store.put(o.clone())?;
            o
        };
        self.wake.notify_one();
        Ok(Some(out))
    }

    /// Delete `key` as `kinglet delete` does (absent: false): a Pod gracefully (kept, marked
    /// with deletionTimestamp, until its containers stopped within its grace period), anything
    /// else removed.
    pub async fn delete_object(&self, key: &ObjectKey) -> Result<bool, KubeletError> {
        let gone = crate::graceful::delete(&mut *self.store.lock().await, key)?;
        if gone {
            self.wake.notify_one();
            crate::services::READINESS_CHANGED.notify_one();
        }
        Ok(gone)
    }

    /// A stored pod's current status (phase, conditions, container states).
    pub async fn status_of_pod(&self, pod: &Pod) -> PodStatus {
        self.pod_status(pod).await
    }

    /// Changes each time the objects are published (once a second, and at once after any
    /// change): the controllers' cue to look again.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Arc<World>> {
        self.world.subscribe()
    }
}
