//! What the daemon's metrics read of the supervisor in-process: the probe runs the kubelet
//! counts (its `prober_probe_total`) — every run of every pod worker's probes, by container,
//! probe type and result; the counts live in each pod's shared fields (`pod/shared.rs`) and go
//! with its worker — and the pod workers' queue depth.

use crate::Supervisor;

/// The runs of one container's probes of one type with one result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeCount {
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
    pub container: String,
    /// `Startup`, `Liveness` or `Readiness`.
    pub probe_type: &'static str,
    /// `successful`, `failed`, or `unknown` (the probe could not be run), as the kubelet's.
    pub result: &'static str,
    pub count: u64,
}

impl Supervisor {
    /// Pod workers woken and waiting for their pass (the harness's queue depth).
    pub fn pod_queue_depth(&self) -> usize {
        self.pods.depth()
    }

    /// The probe runs of every pod that has a worker, counted since its worker started.
    pub fn probe_results(&self) -> Vec<ProbeCount> {
        let world = self.world.borrow().clone();
        let mut out = Vec::new();
        for uid in self.pods.keys() {
            let (Some(shared), Some(pod)) = (self.pods.handle(&uid), world.pods.get(&uid)) else {
                continue;
            };
            let namespace = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            for ((container, probe_type, result), count) in shared.probe_results() {
                out.push(ProbeCount {
                    namespace: namespace.clone(),
                    pod: name.clone(),
                    pod_uid: uid.clone(),
                    container,
                    probe_type,
                    result,
                    count,
                });
            }
        }
        out
    }
}
