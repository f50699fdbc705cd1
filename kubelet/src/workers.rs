//! The pod workers: pods reconciled by the [`harness`](crate::harness) with one worker per
//! pod, as the kubelet has — a slow step of one pod (a postStart hook, a preStop hook within a
//! long grace period, a stop) never delays another pod's restarts.
//!
//! The dispatcher (once a second and at once after an apply, a delete or a container exit)
//! publishes the objects as one shared [`World`] and triggers the pods that need a pass
//! (`crate::pod_sync`: a changed Pod, changed inputs, a periodic resync); a container's exit
//! wakes its pod's worker directly. A worker owns its pod's [`PodState`] and makes a pass with the newest
//! world when triggered, when a task it started (a pull, a prober) reports back, or when the
//! last pass asked to be requeued (a back-off ends). When its pod is no longer applied it tears
//! the pod's sandboxes down, drops the pod's saved back-off and ends (unless the pod was
//! applied again meanwhile).
//!
//! The crash-loop back-off of all pods is written to one file by the [`BackoffBook`], which
//! owns the whole map; workers write their pod's share into it when it changes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

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
    pub host_ip: String,
    pub allocatable: crate::downward::Allocatable,
    pub sysctls: Arc<SysctlAllowlist>,
    /// The cluster DNS pods' resolv.conf points at.
    pub dns: Option<crate::dns::ClusterDns>,
    /// The objects as the dispatcher last published them.
    pub world: watch::Receiver<Arc<World>>,
    /// Crash-loop back-off an earlier daemon saved, until each pod's worker takes its own.
    pub saved_backoff: Mutex<HashMap<String, PodBackoff>>,
    /// Every pod's back-off, saved for the next daemon.
    pub book: Arc<BackoffBook>,
    /// Wakes the dispatcher: a deleted pod's containers are gone, its object can go.
    pub dispatcher: Arc<tokio::sync::Notify>,
    /// User namespaces of pods with `hostUsers: false`.
    pub userns: Arc<crate::userns::UsernsManager>,
    /// The bound on sandbox teardowns at once.
    pub teardowns: Arc<crate::teardowns::Teardowns>,
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
            host_ip: self.host_ip.clone(),
            allocatable: self.allocatable,
            sysctls: self.sysctls.clone(),
            dns: self.dns.clone(),
            book: self.book.clone(),
            userns: self.userns.clone(),
            teardowns: self.teardowns.clone(),
            wake,
        };
        (PodWorker { state, env }, shared)
    }

    async fn reconcile(&self, uid: &String, w: &mut PodWorker) -> Result<Action, ReconcileError> {
        let world = self.world.borrow().clone();
        // A Pod being deleted is torn down like a removed one; the dispatcher then removes
        // the object.
        let Some(pod) = world
            .pods
            .get(uid)
            .filter(|p| p.metadata.deletion_timestamp.is_none())
        else {
            pod::remove(&mut w.state, &w.env).await?;
            self.book.put(uid, PodBackoff::new()).await;
            if world.pods.contains_key(uid) {
                self.dispatcher.notify_one();
            }
            return Ok(Action::Done);
        };
        let result = pod::reconcile(pod, &world, &mut w.state, &w.env).await;
        if let Some(b) = w.state.take_backoff() {
            self.book.put(uid, b).await;
        }
        result
    }

    fn retry_after(&self, err: &ReconcileError) -> Option<Duration> {
        err.retry_after()
    }
}

/// The crash-loop back-off of every pod and the file it is kept in, so that a restarted
/// daemon keeps each crash-looping container's wait. A worker writes its pod's share ahead of
/// acting on it (before the restart that a new back-off allows), so a daemon killed right after
/// a restart never finds the back-off of the run before. Writes are serialised; an empty share
/// drops the pod.
pub struct BackoffBook {
    /// None: kept in memory only (unit tests).
    path: Option<PathBuf>,
    all: tokio::sync::Mutex<HashMap<String, PodBackoff>>,
}

impl BackoffBook {
    pub fn new(path: Option<PathBuf>, saved: HashMap<String, PodBackoff>) -> BackoffBook {
        BackoffBook {
            path,
            all: tokio::sync::Mutex::new(saved),
        }
    }

    /// What is recorded for `uid`.
    #[cfg(test)]
    pub async fn get(&self, uid: &str) -> Option<PodBackoff> {
        self.all.lock().await.get(uid).cloned()
    }

    /// Record `uid`'s back-off and, when it changed, write the file before returning.
    pub async fn put(&self, uid: &str, b: PodBackoff) {
        let mut all = self.all.lock().await;
        let changed = if b.is_empty() {
            all.remove(uid).is_some()
        } else {
            all.insert(uid.to_owned(), b.clone()).as_ref() != Some(&b)
        };
        let Some(path) = self.path.clone().filter(|_| changed) else {
            return;
        };
        let map: BackoffMap = all
            .iter()
            .flat_map(|(uid, b)| b.iter().map(move |(n, b)| ((uid.clone(), n.clone()), *b)))
            .collect();
        match tokio::task::spawn_blocking(move || backoff::save(&path, &map)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(err = %e, "back-off state not saved"),
            Err(e) => tracing::warn!(err = %e, "back-off save task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff::Backoff;

    #[tokio::test]
    async fn the_book_is_on_disk_when_put_returns_and_an_empty_share_drops_the_pod() {
        let dir = tempfile::tempdir().unwrap();
        let path = backoff::state_file(dir.path());
        let book = BackoffBook::new(Some(path.clone()), HashMap::new());
        let b = Backoff {
            next: Duration::from_secs(20),
            not_before: Some(tokio::time::Instant::now() + Duration::from_secs(20)),
        };
        book.put("uid1", [("app".to_string(), b)].into()).await;
        let saved = backoff::load(&path);
        assert_eq!(saved.len(), 1);
        assert_eq!(
            saved[&("uid1".to_string(), "app".to_string())].next,
            Duration::from_secs(20)
        );
        book.put("uid1", PodBackoff::new()).await;
        assert!(backoff::load(&path).is_empty());
    }
}
