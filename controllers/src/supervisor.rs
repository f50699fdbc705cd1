//! [`Store`] over the daemon's [`Supervisor`] (its object store and pod status).

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::jiff::Timestamp;
use kinglet_kubelet::Supervisor;
use kinglet_manifest::{Object, ObjectKey};

use crate::{ControllerError, Filter, Modify, Store};

pub(crate) struct SupervisorStore(pub Arc<Supervisor>);

#[async_trait]
impl Store for SupervisorStore {
    async fn list(&self, kind: &str) -> Vec<Object> {
        self.0.list_objects(kind).await
    }
    async fn list_where(&self, kind: &str, keep: &Filter) -> Vec<Object> {
        self.0.list_objects_where(kind, keep).await
    }
    async fn get(&self, key: &ObjectKey) -> Option<Object> {
        self.0.get_object(key).await
    }
    async fn create(&self, obj: Object) -> Result<Object, ControllerError> {
        let k = obj.key();
        self.0
            .create_object(obj)
            .await
            .map_err(|e| ControllerError::store(k.to_string(), "create", e))
    }
    async fn modify(
        &self,
        key: &ObjectKey,
        bump: bool,
        f: Modify,
    ) -> Result<Option<Object>, ControllerError> {
        self.0
            .modify_object(key, bump, f)
            .await
            .map_err(|e| ControllerError::store(key.to_string(), "update", e))
    }
    async fn delete(&self, key: &ObjectKey) -> Result<bool, ControllerError> {
        self.0
            .delete_object(key)
            .await
            .map_err(|e| ControllerError::store(key.to_string(), "delete", e))
    }
    async fn pod_status(&self, pod: &Pod) -> PodStatus {
        self.0.status_of_pod(pod).await
    }
    fn now(&self) -> Timestamp {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        Timestamp::from_nanosecond(nanos).unwrap_or(Timestamp::UNIX_EPOCH)
    }
}
