//! The mini-kubelet: keeps the Pods applied to this node running, through the same runtime
//! core the CRI server uses, in CRI terms (PodSandboxConfig, ContainerConfig) — one code path.
//!
//! Level-triggered, with one worker per pod ([`workers`]): each pod is reconciled once a
//! second and at once after an apply, a delete or a container exit, without waiting for any
//! other pod. Each pass: replace a sandbox whose spec hash is stale; prepare volumes (ConfigMap
//! and Secret volumes are rewritten atomically, so updates reach running pods within a
//! second); run init containers and start native sidecars in order; create missing containers;
//! restart exited ones by `restartPolicy` with the kubelet's CrashLoopBackOff ([`backoff`],
//! kept across daemon restarts); stop a finished pod's sidecars; tear down sandboxes of pods
//! that are gone ([`stop`]). Pod status is derived from the runtime's own records when asked,
//! never stored twice.

mod actions;
mod api;
pub mod backoff;
pub mod error;
#[cfg(test)]
mod fake;
mod hooks;
mod objects;
pub mod pod;
pub mod podspec;
mod probe;
pub mod runtime;
mod security;
mod status;
mod stop;
pub mod sysctl;
pub mod volumes;
mod watch;
mod workers;
pub mod world;

pub use error::KubeletError;
pub use runtime::{PodRuntime, RuntimeError, RuntimeErrorKind};

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, Weak};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kinglet_manifest::Object;
use tokio::sync::{mpsc, Mutex, Notify};
use tokio::time::Instant;

use backoff::{Backoff, BackoffPolicy};
use objects::ObjectStore;
use pod::{PodEnv, PodEvent, PodMsg};
use sysctl::SysctlAllowlist;
use volumes::VolumeRoots;
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
    /// CrashLoopBackOff (and image pull back-off) constants.
    pub backoff: BackoffPolicy,
    /// Unsafe sysctls pods may set besides the safe set (patterns).
    pub allowed_unsafe_sysctls: Vec<String>,
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
    /// Wakes the dispatcher (after an apply or a delete).
    wake: Notify,
    /// The objects as the dispatcher last published them.
    world: tokio::sync::watch::Sender<Arc<World>>,
    /// The worker of each pod, by uid.
    workers: std::sync::Mutex<HashMap<String, workers::Worker>>,
    /// Crash-loop back-off an earlier daemon saved, until each pod's worker takes its own.
    saved_backoff: std::sync::Mutex<HashMap<String, PodBackoff>>,
    /// Each worker's back-off changes, to the task that saves them.
    backoff_tx: mpsc::UnboundedSender<(String, PodBackoff)>,
    sysctls: Arc<SysctlAllowlist>,
    /// This node's name (the host name), for the downward API.
    node_name: String,
    /// A weak handle to itself, for the tasks it starts.
    me: Weak<Supervisor>,
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
        let sources = watch::Sources::load(&cfg.root.join("objects").join("sources.json"));
        let sysctls = SysctlAllowlist::new(&cfg.allowed_unsafe_sysctls)
            .map_err(|reason| KubeletError::invalid("allowed-unsafe-sysctls", reason))?;
        let mut saved: HashMap<String, PodBackoff> = HashMap::new();
        for ((uid, name), b) in backoff::load(&backoff::state_file(&cfg.root)) {
            saved.entry(uid).or_default().insert(name, b);
        }
        let node_name = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default();
        let (backoff_tx, backoff_rx) = mpsc::unbounded_channel();
        let s = Arc::new_cyclic(|me| Supervisor {
            sources: Mutex::new(sources),
            store: Mutex::new(store),
            wake: Notify::new(),
            world: tokio::sync::watch::Sender::new(Arc::default()),
            workers: Default::default(),
            saved_backoff: std::sync::Mutex::new(saved.clone()),
            backoff_tx,
            sysctls: Arc::new(sysctls),
            node_name,
            me: me.clone(),
            cfg,
            rt,
        });
        tokio::spawn(watch::watch_dir(s.clone(), s.cfg.manifests.clone()));
        tokio::spawn(workers::save_backoff_loop(
            backoff::state_file(&s.cfg.root),
            saved,
            backoff_rx,
        ));
        tokio::spawn(s.clone().dispatch_loop());
        Ok(s)
    }

    /// Publish the objects once a second, and at once after an apply or a delete; a
    /// container's exit wakes only its pod's worker.
    async fn dispatch_loop(self: Arc<Self>) {
        loop {
            self.dispatch().await;
            let next = Instant::now() + Duration::from_secs(1);
            loop {
                tokio::select! {
                    _ = self.wake.notified() => break,
                    _ = tokio::time::sleep_until(next) => break,
                    _ = self.rt.container_exited() => {
                        if !self.wake_exited() {
                            break;
                        }
                    }
                }
            }
        }
    }

    /// The Pods, and the ConfigMap and Secret data, as stored now.
    async fn snapshot(&self) -> (Vec<Pod>, Snapshot) {
        let store = self.store.lock().await;
        let mut snap = Snapshot::default();
        let mut pods = Vec::new();
        for (k, o) in &store.map {
            let key = (k.namespace.clone(), k.name.clone());
            match o {
                Object::Pod(p) => pods.push((**p).clone()),
                Object::ConfigMap(c) => {
                    snap.config_maps
                        .insert(key, kinglet_manifest::config_map_data(c));
                }
                Object::Secret(s) => {
                    snap.secrets.insert(key, kinglet_manifest::secret_data(s));
                }
            }
        }
        (pods, snap)
    }

    /// What the worker of pod `uid` acts through.
    fn env_for(&self, uid: &str, inbox: mpsc::UnboundedSender<PodMsg>) -> PodEnv {
        PodEnv {
            rt: self.rt.clone(),
            policy: self.cfg.backoff,
            pod_logs: self.cfg.root.join("pod-logs"),
            volumes: VolumeRoots {
                run: self.cfg.run_root.join("volumes").join(uid),
                disk: self.cfg.root.join("volumes").join(uid),
            },
            node_name: self.node_name.clone(),
            sysctls: self.sysctls.clone(),
            inbox,
        }
    }

    fn shared_of(&self, uid: &str) -> Option<Arc<pod::PodShared>> {
        let workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        workers.get(uid).map(|w| w.shared.clone())
    }

    /// Pod `pod`'s current status.
    async fn pod_status(&self, pod: &Pod) -> PodStatus {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let shared = self.shared_of(uid);
        pod::pod_status(&*self.rt, pod, shared.as_deref()).await
    }

    /// Recent events of pod `uid`, oldest first.
    fn events_of(&self, uid: &str) -> Vec<PodEvent> {
        self.shared_of(uid).map(|s| s.events()).unwrap_or_default()
    }
}
