//! The mini-kubelet: keeps the Pods applied to this node running, through a container runtime
//! it drives in CRI terms ([`PodRuntime`]: PodSandboxConfig, ContainerConfig, ...) — in the
//! daemon, the same runtime core the CRI server uses, so there is one code path.
//!
//! - [`Supervisor`]: the object store (Pods, ConfigMaps, Secrets; `apply`/`delete`/`get`),
//!   the manifests directory watch, and the dispatcher that publishes the objects as one
//!   [`World`] once a second and after any change, and triggers the pod workers.
//! - [`harness`]: the reconciler harness (one worker per key owning its state, coalesced
//!   wake-ups, requeue-after, back-off on error) that runs the pod workers and is meant for
//!   the workload controllers to come.
//! - [`pod`]: one pod's state ([`pod::PodState`]) and its reconcile step, unit-tested against
//!   a fake runtime on a paused clock; `probe`, `hooks`, `stop`, `status` are its parts.
//! - `store_api`: what the workload controllers (crate `kinglet-controllers`) read and
//!   write of the store: objects by kind, atomic modifications, pod status, change signals.
//! - `podspec`, `volumes`, `security`, [`sysctl`]: Kubernetes Pod fields to CRI configs,
//!   volumes on disk, admission.
//!
//! Dependencies point one way: this crate needs `kinglet-proto` (CRI types), `kinglet-manifest`,
//! `kinglet-volumes`, `kinglet-services`, `kinglet-ingress` and `kinglet-util` (atomic writes,
//! the clock, error chains), never the daemon.

mod actions;
mod api;
pub mod backoff;
pub mod cascade;
mod cluster_dns;
pub mod dns;
pub mod downward;
mod envvars;
pub mod error;
mod events_api;
#[cfg(test)]
mod fake;
mod graceful;
pub mod harness;
mod hooks;
pub mod hosts;
mod ingress;
pub mod metrics_api;
pub mod namespaces;
mod objects;
pub mod pod;
mod pod_sync;
pub mod podspec;
mod probe;
pub mod pvc;
pub mod runtime;
pub mod sealed;
mod security;
pub mod serviceaccounts;
pub mod services;
mod status;
mod status_batch;
mod stop;
mod store_api;
pub mod sysctl;
pub mod teardowns;
pub mod userns;
pub mod volumes;
mod wakeups;
mod watch;
mod workers;
pub mod world;

pub use api::{applied_ref, resource_of};
pub use error::KubeletError;
pub use runtime::{PodRuntime, RuntimeError, RuntimeErrorKind};

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kinglet_manifest::Object;
use tokio::sync::{Mutex, Notify};
use tokio::time::Instant;

use backoff::{Backoff, BackoffPolicy};
use harness::{Controller, RetryPolicy};
use kinglet_proto::v1;
use objects::ObjectStore;
use pod::PodEvent;
use sysctl::SysctlAllowlist;
use workers::PodReconciler;
use world::{Snapshot, World};

/// What the mini-kubelet needs to know of the daemon's configuration.
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    /// The daemon's state root (`--root`): objects, pod logs, volumes on disk, back-off.
    pub root: PathBuf,
    /// The daemon's run root (`--run-root`): secrets tmpfs, memory-backed volumes.
    pub run_root: PathBuf,
    /// The watched manifests directory.
    pub manifests: PathBuf,
    /// This node's name: pods' `spec.nodeName` (as if scheduled here) and the downward API's.
    pub node_name: String,
    /// CrashLoopBackOff (and image pull back-off) constants.
    pub backoff: BackoffPolicy,
    /// Unsafe sysctls pods may set besides the safe set (patterns).
    pub allowed_unsafe_sysctls: Vec<String>,
    /// Service addresses and proxy rules (None: Services get no address and no rules).
    pub services: Option<services::ServicesConfig>,
    /// The cluster DNS server and the pods' resolv.conf (None: off; ClusterFirst pods get
    /// the host's resolv.conf).
    pub dns: Option<dns::ClusterDns>,
    /// The ingress proxy's listeners (None: no ingress proxy).
    pub ingress: Option<kinglet_ingress::IngressConfig>,
    /// The age identities that open sealed manifests (and the systemd credentials directory).
    pub keys: sealed::Keys,
    /// Host IDs for pods with `hostUsers: false` (None: the `kubelet` user's subordinate
    /// IDs, else the kubelet's default; see [`userns`]).
    pub userns_ids: Option<userns::IdRange>,
    /// Runs after a burst of pod teardowns (the daemon returns free heap to the kernel).
    pub after_teardowns: Option<fn()>,
}

/// Back-off of one pod's containers (by name), on its way to the state file.
type PodBackoff = HashMap<String, Backoff>;

/// The mini-kubelet: the object store, the dispatcher and the pod workers.
pub struct Supervisor {
    cfg: KubeletConfig,
    rt: Arc<dyn PodRuntime>,
    /// Objects each manifest file last defined.
    sources: Mutex<watch::Sources>,
    store: Mutex<ObjectStore>,
    /// Wakes the dispatcher (after an apply or a delete, or the end of a deleted pod's worker).
    wake: Arc<Notify>,
    /// What the dispatcher last published, to trigger only the pods that need a pass.
    sync: std::sync::Mutex<pod_sync::PodSync>,
    /// The objects as the dispatcher last published them (read by the pod workers).
    world: tokio::sync::watch::Sender<Arc<World>>,
    /// The pod workers, by pod uid.
    pods: Arc<Controller<PodReconciler>>,
    /// EndpointSlices and the proxy table.
    services: services::ServicesState,
    /// The ingress proxy.
    ingress: ingress::IngressState,
    /// User namespaces of pods with `hostUsers: false`.
    userns: Arc<userns::UsernsManager>,
}

/// The user-namespace manager over `<root>/userns`, with the node's range.
async fn open_userns(cfg: &KubeletConfig) -> Result<userns::UsernsManager, KubeletError> {
    let dir = cfg.root.join("userns");
    let given = cfg.userns_ids;
    tokio::task::spawn_blocking(move || {
        let range = match given {
            Some(r) => Ok(r),
            None => userns::host_range(std::path::Path::new("/etc")).map(|(r, from)| {
                tracing::debug!(range = %r, %from, "user namespace IDs for pods");
                r
            }),
        };
        if let Err(e) = &range {
            tracing::warn!(err = %e, "pods with hostUsers: false will be refused");
        }
        userns::UsernsManager::open(&dir, range)
    })
    .await
    .map_err(|e| KubeletError::internal("user namespace task", e))
}

impl Supervisor {
    /// Load the stored objects and start reconciling.
    pub async fn start(
        rt: Arc<dyn PodRuntime>,
        cfg: KubeletConfig,
    ) -> Result<Arc<Supervisor>, KubeletError> {
        let (root, run_root) = (cfg.root.clone(), cfg.run_root.clone());
        let store = tokio::task::spawn_blocking(move || ObjectStore::open(&root, &run_root))
            .await
            .map_err(|e| KubeletError::internal("object store task", e))??;
        let mut store = store;
        // Namespace `default` always exists, and with it its `default` ServiceAccount.
        if let Some(sa) =
            serviceaccounts::default_if_missing(&store.map, kinglet_manifest::DEFAULT_NAMESPACE)
        {
            store.put(sa)?;
        }
        let sources = watch::Sources::load(&cfg.root.join("objects").join("sources.json"));
        let sysctls = SysctlAllowlist::new(&cfg.allowed_unsafe_sysctls)
            .map_err(|reason| KubeletError::invalid("allowed-unsafe-sysctls", reason))?;
        let mut saved: HashMap<String, PodBackoff> = HashMap::new();
        for ((uid, name), b) in backoff::load(&backoff::state_file(&cfg.root)) {
            saved.entry(uid).or_default().insert(name, b);
        }
        let node_name = cfg.node_name.clone();
        let userns = Arc::new(open_userns(&cfg).await?);
        let book = Arc::new(workers::BackoffBook::new(
            Some(backoff::state_file(&cfg.root)),
            saved.clone(),
        ));
        let world = tokio::sync::watch::Sender::new(Arc::default());
        let wake = Arc::new(Notify::new());
        let pods = PodReconciler {
            dispatcher: wake.clone(),
            rt: rt.clone(),
            policy: cfg.backoff,
            root: cfg.root.clone(),
            run_root: cfg.run_root.clone(),
            node_name,
            host_ip: downward::node_ip(),
            allocatable: downward::Allocatable::of_host(&cfg.root),
            sysctls: Arc::new(sysctls),
            dns: cfg.dns.clone(),
            world: world.subscribe(),
            saved_backoff: std::sync::Mutex::new(saved),
            book,
            userns: userns.clone(),
            teardowns: Arc::new(teardowns::Teardowns::for_host(cfg.after_teardowns)),
        };
        let s = Arc::new(Supervisor {
            sources: Mutex::new(sources),
            store: Mutex::new(store),
            wake,
            sync: Default::default(),
            world,
            pods: Controller::new(Arc::new(pods), RetryPolicy::default()),
            services: Default::default(),
            ingress: Default::default(),
            cfg,
            rt,
            userns,
        });
        tokio::spawn(watch::watch_dir(s.clone(), s.cfg.manifests.clone()));
        tokio::spawn(s.clone().dispatch_loop());
        tokio::spawn(s.clone().services_loop());
        Ok(s)
    }

    /// Publish the objects at once after an apply, a delete, a container's exit (after waking
    /// its pod's worker) or the end of a deleted pod's worker, and on the timer `wakeups`
    /// chooses (none while no Pod is stored).
    async fn dispatch_loop(self: Arc<Self>) {
        loop {
            let wait = wakeups::dispatch_wait(self.dispatch().await);
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = wakeups::sleep_for(wait) => {}
                _ = self.rt.container_exited() => self.wake_exited(),
            }
        }
    }

    /// Publish the current objects and trigger the workers of the pods that need a pass
    /// (`pod_sync`: changed pods, all pods when what they read changed, a periodic resync).
    async fn dispatch(&self) -> wakeups::DispatchSeen {
        self.provision().await;
        let now = Instant::now();
        let (pods, revs, deps_changed, list, terminating) = {
            let store = self.store.lock().await;
            let mut sync = self.sync();
            let (pods, revs) = sync.pods(store.pods());
            let (snap, deps_changed) =
                sync.snapshot(store.deps_revision(), || self.snapshot(&store));
            let terminating = pods
                .values()
                .any(|p| p.metadata.deletion_timestamp.is_some());
            let list = sync.list_due(terminating, now);
            self.world.send_replace(Arc::new(World {
                pods: pods.clone(),
                snap,
            }));
            (pods, revs, deps_changed, list, terminating)
        };
        drop(pods);
        let with_sandbox = if list {
            self.pods_with_sandbox().await
        } else {
            None
        };
        if let Some(w) = &with_sandbox {
            self.remove_terminated(w).await;
        }
        let workers = self.pods.keys();
        if let Some(w) = &with_sandbox {
            userns::sweep(&self.userns, &revs, w, &workers).await;
        }
        let finished = |uid: &str| {
            self.pods
                .handle(&uid.to_owned())
                .is_some_and(|s| s.finished())
        };
        let plan = self.sync().plan(&pod_sync::Seen {
            pods: &revs,
            deps_changed,
            with_sandbox: with_sandbox.as_ref(),
            workers: &workers,
            finished: &finished,
            now,
        });
        for uid in &plan.trigger {
            self.pods.trigger(uid);
        }
        for uid in &plan.wake {
            self.pods.wake_if_running(uid);
        }
        wakeups::DispatchSeen {
            pods: revs.len(),
            workers: workers.len(),
            live: revs.keys().any(|uid| !finished(uid)),
            terminating,
        }
    }

    fn sync(&self) -> std::sync::MutexGuard<'_, pod_sync::PodSync> {
        // Only the dispatcher takes it, never across an await.
        self.sync
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The uids of the pods that have a sandbox (None: the runtime could not list them).
    async fn pods_with_sandbox(&self) -> Option<HashSet<String>> {
        let req = v1::ListPodSandboxRequest::default();
        match self.rt.list_pod_sandbox(req).await {
            Ok(list) => Some(
                list.items
                    .into_iter()
                    .filter_map(|s| s.labels.get(podspec::LABEL_POD_UID).cloned())
                    .collect(),
            ),
            Err(e) => {
                tracing::warn!(err = %e.message, "listing the pod sandboxes");
                None
            }
        }
    }

    /// Remove the Pods being deleted that have no sandbox left (their containers stopped).
    async fn remove_terminated(&self, with_sandbox: &HashSet<String>) {
        let mut store = self.store.lock().await;
        let done: Vec<kinglet_manifest::ObjectKey> = store
            .map
            .iter()
            .filter(|(_, o)| graceful::is_terminating(o))
            .filter(|(_, o)| !with_sandbox.contains(o.meta().uid.as_deref().unwrap_or_default()))
            .map(|(k, _)| k.clone())
            .collect();
        for k in done {
            match store.remove(&k) {
                Ok(_) => tracing::info!(object = %k, "pod deleted: its containers are stopped"),
                Err(e) => {
                    tracing::warn!(object = %k, err = %error::chain(&e), "removing a deleted pod")
                }
            }
        }
    }

    /// Wake the workers of the pods whose containers exited (the runtime's list of their
    /// labels), starting one where none runs.
    fn wake_exited(&self) {
        for labels in self.rt.take_exited() {
            // A container of a CRI client's pod (no uid label): nothing to do.
            if let Some(uid) = labels.get(podspec::LABEL_POD_UID) {
                if !self.pods.wake_if_running(uid) {
                    self.pods.trigger(uid);
                }
            }
        }
    }

    /// The ConfigMap, Secret, Service and claim data in `store`.
    fn snapshot(&self, store: &ObjectStore) -> Snapshot {
        let mut snap = Snapshot::default();
        for (k, o) in &store.map {
            let key = (k.namespace.clone(), k.name.clone());
            match o {
                Object::Pod(_) => {}
                Object::ConfigMap(c) => {
                    snap.config_maps
                        .insert(key, kinglet_manifest::config_map_data(c));
                }
                Object::Secret(s) => {
                    snap.secrets.insert(key, kinglet_manifest::secret_data(s));
                }
                // Workloads are the controllers' (`kinglet-controllers`), through `store_api`.
                Object::Deployment(_)
                | Object::ReplicaSet(_)
                | Object::Job(_)
                | Object::DaemonSet(_)
                | Object::CronJob(_)
                | Object::Namespace(_) => {}
                Object::Service(s) => snap.services.push((**s).clone()),
                Object::EndpointSlice(_)
                | Object::Endpoints(_)
                | Object::ServiceAccount(_)
                | Object::Ingress(_)
                | Object::IngressClass(_)
                | Object::StatefulSet(_)
                | Object::ControllerRevision(_) => {}
                Object::PersistentVolumeClaim(c) => {
                    let bound = c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
                    let uid = c.metadata.uid.as_deref().unwrap_or_default();
                    let claim = if bound {
                        pvc::Claim::Bound(pvc::claim_dir(
                            &self.cfg.root,
                            &k.namespace,
                            &k.name,
                            uid,
                        ))
                    } else {
                        pvc::Claim::Pending
                    };
                    snap.claims.insert(key, claim);
                }
            }
        }
        snap
    }

    /// Pod `pod`'s current status.
    async fn pod_status(&self, pod: &Pod) -> PodStatus {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let shared = self.pods.handle(&uid);
        pod::pod_status(&*self.rt, pod, shared.as_deref()).await
    }

    /// Pod `pod`'s status from a view of the runtime taken for many pods.
    async fn pod_status_in(&self, view: &status_batch::RuntimeView, pod: &Pod) -> PodStatus {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let shared = self.pods.handle(&uid);
        let snap = shared.as_deref().map(pod::PodShared::snapshot);
        view.pod_status(&*self.rt, pod, snap.unwrap_or_default())
            .await
    }

    /// Recent events of pod `uid`, oldest first.
    fn events_of(&self, uid: &str) -> Vec<PodEvent> {
        self.pods
            .handle(&uid.to_owned())
            .map(|s| s.events())
            .unwrap_or_default()
    }
}
