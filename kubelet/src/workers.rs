//! The pod workers: pods reconciled by the [`harness`](crate::harness) with one worker per
//! pod, as the kubelet has — a slow step of one pod (a postStart hook, a preStop hook within a
//! long grace period, a stop) never delays another pod's restarts.
//!
//! The dispatcher (once a second and at once after an apply, a delete or a container exit)
//! publishes the objects as one shared [`World`] and triggers every pod that is applied or
//! still has a sandbox. A worker owns its pod's [`PodState`] and makes a pass with the newest
//! world when triggered, when a task it started (a pull, a prober) reports back, or when the
//! last pass asked to be requeued (a back-off ends). When its pod is no longer applied it tears
//! the pod's sandboxes down, drops the pod's saved back-off and ends (unless the pod was
//! applied again meanwhile).
//!
//! The crash-loop back-off of all pods is written to one file by [`save_backoff_loop`], which
//! owns the whole map; workers send it their pod's share when it changes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::backoff::{self, BackoffMap, BackoffPolicy};
use crate::harness::{Action, Reconciler, Wake};
use crate::pod::{self, PodEnv, PodShared, PodState, ReconcileError};
use crate::runtime::PodRuntime;
use crate::sysctl::SysctlAllowlist;
use crate::volumes::VolumeRoots;
use crate::world::World;
use crate::PodBackoff;

/// What every pod's worker acts with.
pub(crate) struct PodReconciler {
    pub rt: Arc<dyn PodRuntime>,
    pub policy: BackoffPolicy,
    pub root: PathBuf,
    pub run_root: PathBuf,
    pub node_name: String,
    pub sysctls: Arc<SysctlAllowlist>,
    /// The objects as the dispatcher last published them.
    pub world: watch::Receiver<Arc<World>>,
    /// Crash-loop back-off an earlier daemon saved, until each pod's worker takes its own.
    pub saved_backoff: Mutex<HashMap<String, PodBackoff>>,
    /// Each worker's back-off changes, to the task that saves them.
    pub backoff_tx: mpsc::UnboundedSender<(String, PodBackoff)>,
}

/// One pod's worker: its state and what it acts through.
pub(crate) struct PodWorker {
    state: PodState,
    env: PodEnv,
}

#[async_trait::async_trait]
impl Reconciler for PodReconciler {
    type Key = String;
    type State = PodWorker;
    type Handle = Arc<PodShared>;
    type Error = ReconcileError;

    fn init(&self, uid: &String, wake: Wake) -> (PodWorker, Arc<PodShared>) {
        let saved = self
            .saved_backoff
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(uid)
            .unwrap_or_default();
        let state = PodState::new(uid, saved);
        let shared = state.shared.clone();
        let env = PodEnv {
            rt: self.rt.clone(),
            policy: self.policy,
            pod_logs: self.root.join("pod-logs"),
            volumes: VolumeRoots {
                run: self.run_root.join("volumes").join(uid),
                disk: self.root.join("volumes").join(uid),
            },
            node_name: self.node_name.clone(),
            sysctls: self.sysctls.clone(),
            wake,
        };
        (PodWorker { state, env }, shared)
    }

    async fn reconcile(&self, uid: &String, w: &mut PodWorker) -> Result<Action, ReconcileError> {
        let world = self.world.borrow().clone();
        let Some(pod) = world.pods.get(uid) else {
            pod::remove(&mut w.state, &w.env).await?;
            let _ = self.backoff_tx.send((uid.clone(), PodBackoff::new()));
            return Ok(Action::Done);
        };
        let result = pod::reconcile(pod, &world, &mut w.state, &w.env).await;
        if let Some(b) = w.state.take_backoff() {
            let _ = self.backoff_tx.send((uid.clone(), b));
        }
        result
    }

    fn retry_after(&self, err: &ReconcileError) -> Option<Duration> {
        err.retry_after()
    }
}

/// Write the back-off state of all pods whenever a worker reports a change (coalescing
/// bursts), so that a restarted daemon keeps every crash-looping container's wait. An empty
/// report drops the pod.
pub(crate) async fn save_backoff_loop(
    path: PathBuf,
    mut all: HashMap<String, PodBackoff>,
    mut changes: mpsc::UnboundedReceiver<(String, PodBackoff)>,
) {
    while let Some(first) = changes.recv().await {
        let mut changed = false;
        let mut take = |(uid, b): (String, PodBackoff)| {
            changed |= if b.is_empty() {
                all.remove(&uid).is_some()
            } else {
                all.insert(uid, b.clone()).as_ref() != Some(&b)
            };
        };
        take(first);
        while let Ok(more) = changes.try_recv() {
            take(more);
        }
        if !changed {
            continue;
        }
        let map: BackoffMap = all
            .iter()
            .flat_map(|(uid, b)| b.iter().map(move |(n, b)| ((uid.clone(), n.clone()), *b)))
            .collect();
        let path = path.clone();
        match tokio::task::spawn_blocking(move || backoff::save(&path, &map)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(err = %e, "back-off state not saved"),
            Err(e) => tracing::warn!(err = %e, "back-off save task failed"),
        }
    }
}
