//! An in-memory [`Store`] for the decision tests: objects in a map, pod statuses set by the
//! test (Pending until told otherwise), a clock the test moves.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kinglet_kubelet::KubeletError;
use kinglet_manifest::{Object, ObjectKey};

use crate::{ControllerError, Modify, Store};

#[derive(Default)]
pub struct FakeStore {
    pub objects: Mutex<BTreeMap<ObjectKey, Object>>,
    /// Pod statuses by pod name.
    pub statuses: Mutex<HashMap<String, PodStatus>>,
    pub clock: Mutex<i64>,
    /// Events recorded: (object name, type, reason, message).
    pub events: Mutex<Vec<(String, String, String, String)>>,
    next_uid: Mutex<u64>,
    /// How many times a pod's status was read.
    pub status_reads: std::sync::atomic::AtomicUsize,
}

impl FakeStore {
    pub fn new() -> FakeStore {
        let s = FakeStore::default();
        *s.clock.lock().unwrap() = 1_800_000_000;
        s
    }

    pub fn advance(&self, secs: i64) {
        *self.clock.lock().unwrap() += secs;
    }

    pub fn status(phase: &str, ready: bool) -> PodStatus {
        PodStatus {
            phase: Some(phase.into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    pub fn set_status(&self, pod: &str, phase: &str, ready: bool) {
        self.statuses
            .lock()
            .unwrap()
            .insert(pod.into(), Self::status(phase, ready));
    }

    /// Every pod Running and Ready.
    pub fn all_ready(&self) {
        for name in self.names("Pod") {
            self.set_status(&name, "Running", true);
        }
    }

    pub fn names(&self, kind: &str) -> Vec<String> {
        self.objects
            .lock()
            .unwrap()
            .keys()
            .filter(|k| k.kind == kind)
            .map(|k| k.name.clone())
            .collect()
    }

    pub fn put(&self, mut o: Object) -> Object {
        let k = o.key();
        let mut n = self.next_uid.lock().unwrap();
        *n += 1;
        let m = o.meta_mut();
        m.uid.get_or_insert_with(|| format!("uid-{n}"));
        m.namespace.get_or_insert_with(|| "default".into());
        m.generation.get_or_insert(1);
        m.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            Timestamp::from_second(*self.clock.lock().unwrap()).unwrap()
                + SignedDuration::from_millis(*n as i64),
        ));
        self.objects.lock().unwrap().insert(k, o.clone());
        o
    }

    /// Remove the pods being deleted (their containers stopped).
    pub fn reap(&self) {
        let mut statuses = self.statuses.lock().unwrap();
        self.objects.lock().unwrap().retain(|k, o| {
            let gone = matches!(o, Object::Pod(p) if p.metadata.deletion_timestamp.is_some());
            if gone {
                statuses.remove(&k.name);
            }
            !gone
        });
    }

    pub fn obj(&self, kind: &'static str, name: &str) -> Option<Object> {
        let k = ObjectKey {
            kind,
            namespace: "default".into(),
            name: name.into(),
        };
        self.objects.lock().unwrap().get(&k).cloned()
    }
}

#[async_trait]
impl Store for FakeStore {
    async fn list(&self, kind: &str) -> Vec<Object> {
        self.objects
            .lock()
            .unwrap()
            .values()
            .filter(|o| o.kind() == kind)
            .cloned()
            .collect()
    }
    async fn get(&self, key: &ObjectKey) -> Option<Object> {
        self.objects.lock().unwrap().get(key).cloned()
    }
    async fn create(&self, obj: Object) -> Result<Object, ControllerError> {
        let k = obj.key();
        if self.objects.lock().unwrap().contains_key(&k) {
            return Err(ControllerError::store(
                k.to_string(),
                "create",
                KubeletError::invalid("object", "exists"),
            ));
        }
        // The daemon's admission of a Pod: its ServiceAccount must exist.
        let mut obj = obj;
        let stored = self.objects.lock().unwrap().clone();
        kinglet_kubelet::serviceaccounts::admit_pod(&stored, &mut obj).map_err(|e| {
            ControllerError::store(
                k.to_string(),
                "create",
                KubeletError::invalid("spec.serviceAccountName", e),
            )
        })?;
        Ok(self.put(obj))
    }
    async fn modify(
        &self,
        key: &ObjectKey,
        bump: bool,
        f: Modify,
    ) -> Result<Option<Object>, ControllerError> {
        let mut objs = self.objects.lock().unwrap();
        let Some(o) = objs.get_mut(key) else {
            return Ok(None);
        };
        if f(o) && bump {
            let m = o.meta_mut();
            m.generation = Some(m.generation.unwrap_or(1) + 1);
        }
        Ok(Some(o.clone()))
    }
    async fn delete(&self, key: &ObjectKey) -> Result<bool, ControllerError> {
        self.statuses.lock().unwrap().remove(&key.name);
        Ok(self.objects.lock().unwrap().remove(key).is_some())
    }
    async fn delete_gracefully(&self, key: &ObjectKey) -> Result<bool, ControllerError> {
        let mut objs = self.objects.lock().unwrap();
        match objs.get_mut(key) {
            Some(Object::Pod(p)) => {
                p.metadata.deletion_timestamp = Some(
                    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(self.now()),
                );
                Ok(true)
            }
            Some(_) => Ok(objs.remove(key).is_some()),
            None => Ok(false),
        }
    }
    async fn pod_status(&self, pod: &Pod) -> PodStatus {
        self.status_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = pod.metadata.name.clone().unwrap_or_default();
        self.statuses
            .lock()
            .unwrap()
            .get(&name)
            .cloned()
            .unwrap_or_else(|| Self::status("Pending", false))
    }
    fn now(&self) -> Timestamp {
        Timestamp::from_second(*self.clock.lock().unwrap()).unwrap()
    }
    fn event(&self, key: &ObjectKey, type_: &str, reason: &str, message: String) {
        self.events
            .lock()
            .unwrap()
            .push((key.name.clone(), type_.into(), reason.into(), message));
    }
}
