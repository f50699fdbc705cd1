//! One worker task per pod, as the kubelet has: a slow step of one pod (a postStart hook, a
//! preStop hook within a long grace period, a stop) never delays another pod's restarts.
//!
//! The dispatcher (the supervisor's main loop, once a second and at once after an apply, a
//! delete or a container exit) publishes the objects as one shared [`World`] and wakes the
//! worker of every pod that is applied or still has a sandbox, starting workers as needed. A
//! worker reconciles its pod with the newest world each time it is woken (wakes that come during
//! a pass coalesce into one more pass); when its pod is no longer applied it tears the pod's
//! sandboxes down, forgets the pod's in-memory state and ends.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kinglet_proto::v1;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::podspec::{self, LABEL_POD_UID};
use super::{backoff, volumes, KubeletError, Snapshot, Supervisor};

/// The applied objects at one moment, shared by all workers.
#[derive(Default)]
pub(super) struct World {
    pub pods: HashMap<String, Pod>,
    pub snap: Snapshot,
}

/// A pod's worker: how to wake it, and its task (to restart it should it ever end early).
pub(super) struct Worker {
    wake: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Supervisor {
    /// Publish the current objects and wake (or start) the worker of every pod that is applied
    /// or has a sandbox left.
    pub(super) async fn dispatch(&self) {
        let (pods, snap) = self.snapshot().await;
        let pods: HashMap<String, Pod> = pods
            .into_iter()
            .map(|p| (p.metadata.uid.clone().unwrap_or_default(), p))
            .collect();
        let mut uids: HashSet<String> = pods.keys().cloned().collect();
        *self.latest.lock().expect("world lock") = Arc::new(World { pods, snap });
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
        let Some(me) = self.self_ref.lock().expect("self lock").upgrade() else {
            return;
        };
        let mut workers = self.workers.lock().expect("workers lock");
        for uid in uids {
            match workers.get(&uid) {
                Some(w) if !w.task.is_finished() => w.wake.notify_one(),
                _ => {
                    let wake = Arc::new(Notify::new());
                    wake.notify_one();
                    let task = tokio::spawn(me.clone().pod_worker(uid.clone(), wake.clone()));
                    workers.insert(uid, Worker { wake, task });
                }
            }
        }
    }

    /// Wake the workers of the pods whose containers exited (the runtime's list of their
    /// labels). False when one has no worker (a full pass is needed).
    pub(super) fn wake_exited(&self) -> bool {
        let exited = self.rt.take_exited();
        let workers = self.workers.lock().expect("workers lock");
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

    /// Keep pod `uid` reconciled until it is deleted and torn down.
    async fn pod_worker(self: Arc<Self>, uid: String, wake: Arc<Notify>) {
        loop {
            wake.notified().await;
            let world = self.latest.lock().expect("world lock").clone();
            if let Some(pod) = world.pods.get(&uid) {
                if let Err(e) = self.reconcile_pod(pod, &uid, &world.snap).await {
                    tracing::warn!(pod = %pod.metadata.name.as_deref().unwrap_or(""), err = %crate::error::chain(&e), "reconcile failed");
                }
                continue;
            }
            match self.remove_pod(&uid).await {
                Ok(()) => {
                    let mut workers = self.workers.lock().expect("workers lock");
                    // Applied again meanwhile (the dispatcher publishes before it wakes
                    // workers, under this lock): keep going.
                    if self
                        .latest
                        .lock()
                        .expect("world lock")
                        .pods
                        .contains_key(&uid)
                    {
                        continue;
                    }
                    workers.remove(&uid);
                    drop(workers);
                    self.forget(&uid);
                    return;
                }
                Err(e) => {
                    tracing::warn!(pod = %uid, err = %crate::error::chain(&e), "removing a deleted pod failed; retrying");
                }
            }
        }
    }

    /// Tear down every sandbox of a pod that is no longer applied, and its volumes.
    async fn remove_pod(&self, uid: &str) -> Result<(), KubeletError> {
        let known = self.known.lock().expect("known lock").get(uid).cloned();
        for s in self.sandboxes_of(uid).await? {
            tracing::info!(pod = %uid, sandbox = %s.id, "removing the sandbox of a deleted pod");
            let grace = s
                .annotations
                .get(podspec::ANNOTATION_GRACE)
                .and_then(|g| g.parse().ok())
                .unwrap_or(30);
            self.teardown(&s.id, grace, known.as_ref()).await?;
        }
        volumes::remove(&self.volume_roots(uid));
        Ok(())
    }

    /// Drop what is kept in memory (and in the back-off file) for a pod that is gone, so a
    /// node that churns pods keeps a flat footprint.
    fn forget(&self, uid: &str) {
        self.known.lock().expect("known lock").remove(uid);
        self.admission.forget(uid);
        self.events.lock().expect("events lock").remove(uid);
        let mine = |k: &(String, String)| k.0 == uid;
        self.waiting
            .lock()
            .expect("waiting lock")
            .retain(|k, _| !mine(k));
        self.pull_backoff
            .lock()
            .expect("pull lock")
            .retain(|k, _| !mine(k));
        self.pulled
            .lock()
            .expect("pull lock")
            .retain(|(k, _)| !mine(k));
        let dropped = {
            let mut b = self.backoff.lock().expect("backoff lock");
            let n = b.len();
            b.retain(|k, _| !mine(k));
            n != b.len()
        };
        if dropped {
            self.backoff_changed.notify_one();
        }
    }

    /// Write the back-off state whenever it changes (coalescing bursts), so that a restarted
    /// daemon keeps every crash-looping container's wait.
    pub(super) async fn save_backoff_loop(self: Arc<Self>) {
        let path = backoff::state_file(&self.cfg.root);
        loop {
            self.backoff_changed.notified().await;
            let map = self.backoff.lock().expect("backoff lock").clone();
            let path = path.clone();
            match tokio::task::spawn_blocking(move || backoff::save(&path, &map)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(err = %e, "back-off state not saved"),
                Err(e) => tracing::warn!(err = %e, "back-off save task failed"),
            }
        }
    }
}
