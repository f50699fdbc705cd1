//! Workload controllers over the mini-kubelet's object store, each run by the kubelet's
//! reconciler [`harness`](kinglet_kubelet::harness) with one worker per object:
//!
//! - [`replicaset`]: a ReplicaSet's Pods (ownerReferences, `<rs>-<5 chars>` names, creation and
//!   deletion by upstream's ranking, status with minReadySeconds);
//! - [`deployment`]: a Deployment's ReplicaSets (pod-template-hash, RollingUpdate with
//!   maxSurge/maxUnavailable, Recreate, revisions, revisionHistoryLimit, conditions);
//! - [`job`]: a Job's Pods (completions, parallelism, backoffLimit with back-off,
//!   activeDeadlineSeconds, Indexed, suspend, ttlSecondsAfterFinished);
//! - [`cronjob`]: a CronJob's Jobs at its scheduled times (time zone, concurrencyPolicy,
//!   startingDeadlineSeconds, missed schedules, history limits);
//! - [`daemonset`]: a DaemonSet's one pod on this [`node`] (nodeSelector, node affinity,
//!   taints and tolerations; RollingUpdate with maxUnavailable/maxSurge, OnDelete);
//! - [`statefulset`]: a StatefulSet's ordinal Pods and their PersistentVolumeClaims
//!   (OrderedReady/Parallel, RollingUpdate with partition, OnDelete, retention policy);
//! - [`namespace`]: the built-in namespaces, phases, and emptying a deleted namespace;
//! - [`gc`]: background cascading deletion — objects whose controller owner is gone;
//! - [`foreground`]: foreground cascading deletion — an owner kept until its dependents are
//!   gone.
//!
//! Controllers see the store through [`Store`] (the daemon's [`Supervisor`], or an in-memory
//! fake in tests) so that each decision is tested without root on a fake clock.
//! [`run`] triggers every workload's worker each time the store publishes its objects (once a
//! second and at once after any change) and runs the garbage collector.

pub mod common;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod error;
pub mod foreground;
pub mod gc;
pub mod job;
pub mod job_policy;
pub mod job_tracking;
pub mod namespace;
pub mod node;
pub mod replicaset;
pub mod statefulset;
mod supervisor;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::jiff::Timestamp;
use kinglet_kubelet::harness::{Controller, RetryPolicy};
use kinglet_manifest::{Object, ObjectKey};

pub use error::ControllerError;

/// A change to one stored object, applied under the store's lock; says whether it changed.
pub type Modify = Box<dyn FnOnce(&mut Object) -> bool + Send>;

/// A test of a stored object, run under the store's lock.
pub type Filter = dyn Fn(&Object) -> bool + Send + Sync;

/// The object store as the controllers use it.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn list(&self, kind: &str) -> Vec<Object>;
    /// The objects of `kind` that `keep` accepts (only those are copied out of the store: a
    /// controller looking for a few pods among many pays for the few).
    async fn list_where(&self, kind: &str, keep: &Filter) -> Vec<Object> {
        let mut all = self.list(kind).await;
        all.retain(|o| keep(o));
        all
    }
    async fn get(&self, key: &ObjectKey) -> Option<Object>;
    /// Store a new object (fresh uid, creation time); returns it as stored.
    async fn create(&self, obj: Object) -> Result<Object, ControllerError>;
    /// Change `key` in place (`bump`: a spec change); None when absent.
    async fn modify(
        &self,
        key: &ObjectKey,
        bump: bool,
        f: Modify,
    ) -> Result<Option<Object>, ControllerError>;
    /// Delete as `kinglet delete` does: a Pod is marked (deletionTimestamp) and stays until
    /// its containers are stopped; anything else goes at once.
    async fn delete(&self, key: &ObjectKey) -> Result<bool, ControllerError>;
    /// [`Store::delete`], for callers that rely on a Pod staying until it is stopped (the
    /// test store's `delete` removes at once; the daemon's store is graceful either way).
    async fn delete_gracefully(&self, key: &ObjectKey) -> Result<bool, ControllerError> {
        self.delete(key).await
    }
    /// A stored pod's current status.
    async fn pod_status(&self, pod: &Pod) -> PodStatus;
    /// Wall-clock now (status times, minReadySeconds).
    fn now(&self) -> Timestamp;
    /// An event about `key` (`type_` Normal or Warning, upstream's reason): logged.
    fn event(&self, key: &ObjectKey, type_: &str, reason: &str, message: String) {
        if type_ == "Warning" {
            tracing::warn!(object = %key, reason, "{message}");
        } else {
            tracing::info!(object = %key, reason, "{message}");
        }
    }
}

/// The running controllers.
pub struct Controllers<S: Store> {
    pub replica_sets: Arc<Controller<replicaset::ReplicaSetReconciler<S>>>,
    pub deployments: Arc<Controller<deployment::DeploymentReconciler<S>>>,
    pub jobs: Arc<Controller<job::JobReconciler<S>>>,
    pub daemon_sets: Arc<Controller<daemonset::DaemonSetReconciler<S>>>,
    pub cron_jobs: Arc<Controller<cronjob::CronJobReconciler<S>>>,
    pub stateful_sets: Arc<Controller<statefulset::StatefulSetReconciler<S>>>,
    store: Arc<S>,
}

impl<S: Store> Controllers<S> {
    pub fn new(store: Arc<S>, node: Arc<node::Node>) -> Arc<Self> {
        Arc::new(Controllers {
            replica_sets: Controller::new(
                Arc::new(replicaset::ReplicaSetReconciler::new(store.clone())),
                RetryPolicy::default(),
            ),
            deployments: Controller::new(
                Arc::new(deployment::DeploymentReconciler::new(store.clone())),
                RetryPolicy::default(),
            ),
            jobs: Controller::new(
                Arc::new(job::JobReconciler::new(store.clone())),
                RetryPolicy::default(),
            ),
            daemon_sets: Controller::new(
                Arc::new(daemonset::DaemonSetReconciler::new(store.clone(), node)),
                RetryPolicy::default(),
            ),
            cron_jobs: Controller::new(
                Arc::new(cronjob::CronJobReconciler::new(store.clone())),
                RetryPolicy::default(),
            ),
            stateful_sets: Controller::new(
                Arc::new(statefulset::StatefulSetReconciler::new(store.clone())),
                RetryPolicy::default(),
            ),
            store,
        })
    }

    /// One round: collect garbage, then trigger every workload (and every worker, so those
    /// whose object is gone end).
    pub async fn tick(&self) {
        if let Err(e) = namespace::sync(&*self.store).await {
            tracing::warn!(err = %e, "namespace controller");
        }
        gc::collect(&*self.store).await;
        foreground::collect(&*self.store).await;
        let rs: Vec<ObjectKey> = self
            .store
            .list("ReplicaSet")
            .await
            .iter()
            .map(Object::key)
            .collect();
        for k in rs.iter().chain(&self.replica_sets.keys()) {
            self.replica_sets.trigger(k);
        }
        let ds: Vec<ObjectKey> = self
            .store
            .list("Deployment")
            .await
            .iter()
            .map(Object::key)
            .collect();
        for k in ds.iter().chain(&self.deployments.keys()) {
            self.deployments.trigger(k);
        }
        let jobs: Vec<ObjectKey> = self
            .store
            .list("Job")
            .await
            .iter()
            .map(Object::key)
            .collect();
        for k in jobs.iter().chain(&self.jobs.keys()) {
            self.jobs.trigger(k);
        }
        let dss: Vec<ObjectKey> = self
            .store
            .list("DaemonSet")
            .await
            .iter()
            .map(Object::key)
            .collect();
        for k in dss.iter().chain(&self.daemon_sets.keys()) {
            self.daemon_sets.trigger(k);
        }
        let cjs: Vec<ObjectKey> = self
            .store
            .list("CronJob")
            .await
            .iter()
            .map(Object::key)
            .collect();
        for k in cjs.iter().chain(&self.cron_jobs.keys()) {
            self.cron_jobs.trigger(k);
        }
        let sts: Vec<ObjectKey> = self
            .store
            .list("StatefulSet")
            .await
            .iter()
            .map(Object::key)
            .collect();
        for k in sts.iter().chain(&self.stateful_sets.keys()) {
            self.stateful_sets.trigger(k);
        }
    }
}

/// Run the controllers over the daemon's store for the daemon's lifetime: a round each time
/// the objects are published. `node` is this node as DaemonSets see it.
/// Returns what reads each controller's queue depth (for the metrics).
pub fn run(sup: Arc<kinglet_kubelet::Supervisor>, node: node::Node) -> QueueDepths {
    let mut changes = sup.subscribe();
    let store = Arc::new(supervisor::SupervisorStore(sup));
    let c = Controllers::new(store, Arc::new(node));
    let depths = {
        let c = c.clone();
        Box::new(move || c.queue_depths()) as QueueDepths
    };
    tokio::spawn(async move {
        loop {
            c.tick().await;
            if changes.changed().await.is_err() {
                return;
            }
        }
    });
    depths
}

/// Each controller's queue depth by name (client-go's `workqueue_depth{name}`).
pub type QueueDepths = Box<dyn Fn() -> Vec<(&'static str, usize)> + Send + Sync>;

impl<S: Store> Controllers<S> {
    /// Each controller's workers woken and waiting for their pass, by controller name.
    pub fn queue_depths(&self) -> Vec<(&'static str, usize)> {
        vec![
            ("replicaset", self.replica_sets.depth()),
            ("deployment", self.deployments.depth()),
            ("job", self.jobs.depth()),
            ("daemonset", self.daemon_sets.depth()),
            ("cronjob", self.cron_jobs.depth()),
            ("statefulset", self.stateful_sets.depth()),
        ]
    }
}
