//! GetContainerEvents (the kubelet's evented PLEG): CONTAINER_CREATED, STARTED, STOPPED and
//! DELETED, each with the status of the container's pod and of all its containers as they
//! are after the change (as containerd sends them). Events go to a broadcast channel; each
//! GetContainerEvents stream receives those emitted after it subscribed.

use kinglet_proto::v1;

use super::container::container_status;
use super::sandbox::sandbox_status;
use super::{now_nanos, Runtime};

impl Runtime {
    /// Emit one event about `container_id` of pod `sandbox_id` (nothing when no one listens).
    pub(crate) async fn emit_event(
        &self,
        container_id: &str,
        sandbox_id: &str,
        kind: v1::ContainerEventType,
    ) {
        if self.events.receiver_count() == 0 {
            return;
        }
        let pod_sandbox_status = match self.store.sandbox(sandbox_id).await {
            Some(s) => Some(sandbox_status(&*s.record.lock().await)),
            None => None,
        };
        let mut containers = Vec::new();
        for c in self.store.all_containers().await {
            let r = c.record.lock().await;
            if r.sandbox_id == sandbox_id {
                containers.push((r.created_at, container_status(&r)));
            }
        }
        containers.sort_by_key(|(created, _)| *created);
        // Send fails only when every receiver went away meanwhile: nothing to do then.
        let _ = self.events.send(v1::ContainerEventResponse {
            container_id: container_id.to_owned(),
            container_event_type: kind as i32,
            created_at: now_nanos(),
            pod_sandbox_status,
            containers_statuses: containers.into_iter().map(|(_, s)| s).collect(),
        });
    }
}
