//! What one pod's worker shares with the tasks it starts (probers, image pulls) and with
//! readers of the pod's status (`kinglet get`): its events, probe results (and their counts, for
//! the metrics), the containers whose postStart hook is running, the waiting reasons the worker
//! last published and its admission verdict. One lock per pod, held only to copy or update a field — never across an await.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use k8s_openapi::api::core::v1::Pod;

use crate::probe::ProbeState;
use crate::sysctl::{Rejection, SysctlAllowlist, Verdict};

/// Events kept per pod.
pub const EVENTS_KEPT: usize = 30;

/// One event of a pod's life (Kubernetes v1 Event, node-local).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodEvent {
    /// Unix nanoseconds.
    pub at: i64,
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// Why a container is not running yet (the pod status's `waiting` state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

/// The shared fields (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct Shared {
    /// Newest last.
    pub events: VecDeque<PodEvent>,
    /// Probe results by CRI container id.
    pub probes: HashMap<String, ProbeState>,
    /// CRI ids of the containers whose postStart hook is running.
    pub post_starting: HashSet<String>,
    /// Waiting reasons by container name, as the worker last published them.
    pub waiting: HashMap<String, Waiting>,
    pub verdict: Verdict,
    /// Probe runs by (container name, probe type, result), since the worker started.
    pub probe_results: BTreeMap<(String, &'static str, &'static str), u64>,
}

/// A pod's shared fields behind their one lock, and whether the worker last found the pod
/// finished (read by the dispatcher's resync, `crate::pod_sync`).
#[derive(Debug, Default)]
pub struct PodShared(Mutex<Shared>, AtomicBool);

impl PodShared {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic elsewhere cannot leave these plain fields half-updated in a harmful way.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A copy of everything, for status.
    pub fn snapshot(&self) -> Shared {
        self.lock().clone()
    }

    /// Record an event; a repeat of a kept one (same reason and message, as probe failures
    /// repeat) replaces it, so that repeats do not push the other events out.
    pub fn event(&self, warning: bool, reason: &'static str, message: String) {
        let at = kinglet_util::now_nanos();
        let mut s = self.lock();
        s.events
            .retain(|e| e.reason != reason || e.message != message);
        s.events.push_back(PodEvent {
            at,
            warning,
            reason,
            message,
        });
        while s.events.len() > EVENTS_KEPT {
            s.events.pop_front();
        }
    }

    /// Record whether the pod is finished (its containers exited for good, its sandbox stopped).
    pub fn set_finished(&self, finished: bool) {
        self.1.store(finished, Ordering::Relaxed);
    }

    /// Whether the worker last found the pod finished.
    pub fn finished(&self) -> bool {
        self.1.load(Ordering::Relaxed)
    }

    pub fn events(&self) -> Vec<PodEvent> {
        self.lock().events.iter().cloned().collect()
    }

    pub fn probe(&self, container_id: &str) -> Option<ProbeState> {
        self.lock().probes.get(container_id).copied()
    }

    /// Change a container's probe state; a change of its readiness wakes the services loop
    /// (EndpointSlices and proxy rules follow at once rather than at its next poll).
    pub fn update_probe(&self, container_id: &str, f: impl FnOnce(&mut ProbeState)) {
        let mut s = self.lock();
        let st = s.probes.entry(container_id.to_owned()).or_default();
        let before = st.ready;
        f(st);
        if st.ready != before {
            crate::services::READINESS_CHANGED.notify_one();
        }
    }

    /// Count one probe run of `container` (the kubelet's `prober_probe_total`).
    pub fn count_probe(&self, container: &str, probe_type: &'static str, result: &'static str) {
        *self
            .lock()
            .probe_results
            .entry((container.to_owned(), probe_type, result))
            .or_default() += 1;
    }

    /// Probe runs by (container name, probe type, result).
    pub fn probe_results(&self) -> Vec<((String, &'static str, &'static str), u64)> {
        let s = self.lock();
        s.probe_results
            .iter()
            .map(|(k, n)| (k.clone(), *n))
            .collect()
    }

    pub fn forget_probe(&self, container_id: &str) {
        self.lock().probes.remove(container_id);
    }

    pub fn set_post_starting(&self, container_id: &str, running: bool) {
        let mut s = self.lock();
        if running {
            s.post_starting.insert(container_id.to_owned());
        } else {
            s.post_starting.remove(container_id);
        }
    }

    pub fn publish_waiting(&self, waiting: HashMap<String, Waiting>) {
        self.lock().waiting = waiting;
    }

    /// Admit `pod` (spec hash `hash`), or record and return why not.
    pub fn admit(&self, sysctls: &SysctlAllowlist, pod: &Pod, hash: &str) -> Result<(), Rejection> {
        self.lock().verdict.admit(sysctls, pod, hash)
    }

    /// Why the pod with spec hash `hash` was refused, if it was.
    pub fn rejection(&self, hash: &str) -> Option<Rejection> {
        self.lock().verdict.rejection(hash).cloned()
    }
}
