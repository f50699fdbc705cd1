//! Statuses of many pods at once, for `get pods`: one ListPodSandbox and one ListContainers
//! for all of them, instead of one of each per pod (each a scan of every sandbox or
//! container), so listing N pods costs O(N) runtime work rather than O(N²). The status of
//! each pod is composed exactly as [`crate::status::pod_status`] composes it (same sandbox
//! choice: [`crate::status::status_sandbox`]).

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kinglet_proto::v1;

use crate::pod::Shared;
use crate::podspec::LABEL_POD_UID;
use crate::runtime::PodRuntime;

/// The runtime's sandboxes (by pod UID, in list order) and containers (by sandbox id).
pub(crate) struct RuntimeView {
    sandboxes: HashMap<String, Vec<v1::PodSandbox>>,
    containers: HashMap<String, Vec<v1::Container>>,
}

impl RuntimeView {
    /// One listing of each; `None` when the runtime cannot list (callers then ask per pod).
    pub(crate) async fn take(rt: &dyn PodRuntime) -> Option<RuntimeView> {
        let sbs = rt
            .list_pod_sandbox(v1::ListPodSandboxRequest::default())
            .await
            .ok()?
            .items;
        let cs = rt
            .list_containers(v1::ListContainersRequest::default())
            .await
            .ok()?
            .containers;
        let mut sandboxes: HashMap<String, Vec<v1::PodSandbox>> = HashMap::new();
        for s in sbs {
            let uid = s.labels.get(LABEL_POD_UID).cloned().unwrap_or_default();
            sandboxes.entry(uid).or_default().push(s);
        }
        let mut containers: HashMap<String, Vec<v1::Container>> = HashMap::new();
        for c in cs {
            containers
                .entry(c.pod_sandbox_id.clone())
                .or_default()
                .push(c);
        }
        Some(RuntimeView {
            sandboxes,
            containers,
        })
    }

    /// `pod`'s status from this view (container statuses and the IP still asked per pod).
    pub(crate) async fn pod_status(
        &self,
        rt: &dyn PodRuntime,
        pod: &Pod,
        shared: Shared,
    ) -> PodStatus {
        if let Some(s) = crate::status::rejected(pod, &shared) {
            return s;
        }
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let sandbox = self
            .sandboxes
            .get(&uid)
            .and_then(|l| crate::status::status_sandbox(pod, l));
        let mut statuses: Vec<v1::ContainerStatus> = Vec::new();
        let mut pod_ip = String::new();
        if let Some(s) = &sandbox {
            for c in self.containers.get(&s.id).into_iter().flatten() {
                if let Ok(st) = crate::pod::status_of(rt, &c.id).await {
                    statuses.push(st);
                }
            }
            pod_ip = crate::pod::sandbox_ip(rt, &s.id).await;
        }
        crate::status::compose(pod, sandbox.as_ref(), &statuses, &pod_ip, &shared)
    }
}
