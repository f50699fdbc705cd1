//! One worker task per pod, as the kubelet has: a slow step of one pod (a postStart hook, a
//! preStop hook within a long grace period, a stop) never delays another pod's restarts.
//!
//! The dispatcher (once a second and at once after an apply, a delete or a container exit)
//! publishes the objects as one shared [`World`] and wakes the worker of every pod that is
//! applied or still has a sandbox, starting workers as needed. A worker owns its pod's
//! [`PodState`]; it reconciles with the newest world when woken, when a task it started (a
//! pull, a prober) reports back, or when the last pass asked to be requeued (a back-off ends);
//! wakes that come during a pass coalesce into one more pass. When its pod is no longer
//! applied it tears the pod's sandboxes down, drops the pod's saved back-off and ends.
//!
//! The crash-loop back-off of all pods is written to one file by [`save_backoff_loop`], which
//! owns the whole map; workers send it their pod's share when it changes.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use kinglet_proto::v1;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::backoff::{self, BackoffMap};
use crate::pod::{self, Action, PodShared, PodState};
use crate::podspec::LABEL_POD_UID;
use crate::{PodBackoff, Supervisor};

/// A pod's worker: how to wake it, its task (to restart it should it ever end early), and
/// what it shares with status readers.
pub(crate) struct Worker {
    wake: Arc<Notify>,
    task: JoinHandle<()>,
    pub shared: Arc<PodShared>,
}

impl Supervisor {
    /// Publish the current objects and wake (or start) the worker of every pod that is applied
    /// or has a sandbox left.
    pub(crate) async fn dispatch(&self) {
        let (pods, snap) = self.snapshot().await;
        let pods: HashMap<String, _> = pods
            .into_iter()
            .map(|p| (p.metadata.uid.clone().unwrap_or_default(), p))
            .collect();
        let mut uids: HashSet<String> = pods.keys().cloned().collect();
        self.world
            .send_replace(Arc::new(crate::World { pods, snap }));
        if let Ok(list) = self
            .rt
            .list_pod_sandbox(v1::ListPodSandboxRequest::default())
            .await
        {
            uids.extend(
                list.items
                    .into_iter()
                    .filter_map(|s| s.labels.get(LABEL_POD_UID).cloned()),
            );
        }
        let Some(me) = self.me.upgrade() else {
            return;
        };
        let mut workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        for uid in uids {
            match workers.get(&uid) {
                Some(w) if !w.task.is_finished() => w.wake.notify_one(),
                _ => {
                    let saved = self
                        .saved_backoff
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&uid)
                        .unwrap_or_default();
                    let state = PodState::new(&uid, saved);
                    let shared = state.shared.clone();
                    let wake = Arc::new(Notify::new());
                    wake.notify_one();
                    let task = tokio::spawn(me.clone().pod_worker(state, wake.clone()));
                    workers.insert(uid, Worker { wake, task, shared });
                }
            }
        }
    }

    /// Wake the workers of the pods whose containers exited (the runtime's list of their
    /// labels). False when one has no worker (a full pass is needed).
    pub(crate) fn wake_exited(&self) -> bool {
        let exited = self.rt.take_exited();
        let workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        let mut all = true;
        for labels in exited {
            match labels.get(LABEL_POD_UID).and_then(|uid| workers.get(uid)) {
                Some(w) if !w.task.is_finished() => w.wake.notify_one(),
                // A container of a CRI client's pod (no uid label): nothing to do.
                None if !labels.contains_key(LABEL_POD_UID) => {}
                _ => all = false,
            }
        }
        all
    }

    /// Keep one pod reconciled until it is deleted and torn down.
    async fn pod_worker(self: Arc<Self>, mut state: PodState, wake: Arc<Notify>) {
        let uid = state.uid.clone();
        let (inbox, mut reports) = mpsc::unbounded_channel();
        let env = self.env_for(&uid, inbox);
        let mut requeue: Option<Instant> = None;
        loop {
            let due = requeue.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = wake.notified() => {}
                Some(msg) = reports.recv() => state.apply(msg, &env.policy),
                _ = tokio::time::sleep_until(due), if requeue.is_some() => {}
            }
            while let Ok(msg) = reports.try_recv() {
                state.apply(msg, &env.policy);
            }
            let world = self.world.borrow().clone();
            if let Some(pod) = world.pods.get(&uid) {
                let name = pod.metadata.name.as_deref().unwrap_or("");
                requeue = match pod::reconcile(pod, &world, &mut state, &env).await {
                    Ok(Action::Requeue(after)) => Some(Instant::now() + after),
                    Ok(Action::AwaitChange) => None,
                    Err(e) => {
                        tracing::warn!(pod = %name, err = %crate::error::chain(&e), "reconcile failed");
                        Some(Instant::now() + e.retry_after())
                    }
                };
                if let Some(b) = state.take_backoff() {
                    let _ = self.backoff_tx.send((uid.clone(), b));
                }
                continue;
            }
            match pod::remove(&mut state, &env).await {
                Ok(()) => {
                    let mut workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
                    // Applied again meanwhile (the dispatcher publishes before it wakes
                    // workers, under this lock): keep going.
                    if self.world.borrow().pods.contains_key(&uid) {
                        continue;
                    }
                    workers.remove(&uid);
                    let _ = self.backoff_tx.send((uid, PodBackoff::new()));
                    return;
                }
                Err(e) => {
                    tracing::warn!(pod = %uid, err = %crate::error::chain(&e), "removing a deleted pod failed; retrying");
                    requeue = Some(Instant::now() + e.retry_after().max(Duration::from_secs(1)));
                }
            }
        }
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
