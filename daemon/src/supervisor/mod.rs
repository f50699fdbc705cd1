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

mod backoff;
mod hooks;
mod objects;
pub mod podspec;
mod probe;
mod security;
mod status;
mod stop;
pub mod sysctl;
mod volumes;
mod watch;
mod workers;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use kinglet_cri::CriError;
use kinglet_manifest::{Object, ObjectKey};
use kinglet_proto::{admin, v1};
use tokio::sync::{Mutex, Notify};

use crate::runtime::Runtime;
use backoff::{Backoff, BackoffPolicy};
use objects::ObjectStore;
use podspec::{
    ConfigError, PodFields, Sources, LABEL_CONTAINER_NAME, LABEL_POD_UID, LABEL_SPEC_HASH,
};
use volumes::VolumeRoots;

/// Where a container stands after one reconcile step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Running,
    /// Exited and not to be restarted (by its policy).
    Exited(i32),
    /// Not running yet: back-off, configuration error, missing image.
    Waiting,
}

/// What one pod's reconcile pass shares between its containers.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    uid: &'a str,
    name: &'a str,
    ns: &'a str,
    pod: &'a Pod,
    fields: &'a PodFields<'a>,
    snap: &'a Snapshot,
    vols: &'a HashMap<String, PathBuf>,
    sandbox: &'a str,
    sandbox_cfg: &'a v1::PodSandboxConfig,
    existing: &'a [v1::Container],
}

/// Why a container is not running yet (the pod status's `waiting` state).
#[derive(Debug, Clone)]
struct Waiting {
    reason: String,
    message: String,
}

/// ConfigMap and Secret data at one moment.
#[derive(Default)]
struct Snapshot {
    config_maps: HashMap<(String, String), BTreeMap<String, Vec<u8>>>,
    secrets: HashMap<(String, String), BTreeMap<String, Vec<u8>>>,
}

impl Sources for Snapshot {
    fn config_map(&self, ns: &str, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
        self.config_maps
            .get(&(ns.to_owned(), name.to_owned()))
            .cloned()
    }
    fn secret(&self, ns: &str, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
        self.secrets.get(&(ns.to_owned(), name.to_owned())).cloned()
    }
}

pub struct Supervisor {
    /// Objects each manifest file last defined.
    sources: Mutex<watch::Sources>,
    rt: Arc<Runtime>,
    store: Mutex<ObjectStore>,
    wake: Notify,
    waiting: std::sync::Mutex<HashMap<(String, String), Waiting>>,
    backoff: std::sync::Mutex<backoff::BackoffMap>,
    /// Poked when `backoff` changes (it is saved for the next daemon).
    backoff_changed: Notify,
    policy: BackoffPolicy,
    /// The objects as the dispatcher last published them, and the worker of each pod.
    latest: std::sync::Mutex<Arc<workers::World>>,
    workers: std::sync::Mutex<HashMap<String, workers::Worker>>,
    pod_logs: PathBuf,
    /// Probe results by container id, and the containers that have a prober running.
    probes: probe::ProbeStates,
    probers: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Containers whose postStart hook is running: not reported running until it is done.
    post_starting: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Image pulls under way, their back-off, and the pulls done (for policy Always), by
    /// (pod uid, container name).
    pulling: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
    pull_backoff: std::sync::Mutex<HashMap<(String, String), Backoff>>,
    #[allow(clippy::type_complexity)]
    pulled: std::sync::Mutex<std::collections::HashSet<((String, String), String)>>,
    /// The last spec each pod was reconciled with (for preStop hooks when it is deleted or
    /// replaced; in memory only).
    known: std::sync::Mutex<HashMap<String, Pod>>,
    /// A weak handle to itself, for tasks that outlive one call.
    self_ref: std::sync::Mutex<std::sync::Weak<Supervisor>>,
    /// Recent events per pod uid (newest last), for `describe`.
    events: std::sync::Mutex<HashMap<String, std::collections::VecDeque<PodEvent>>>,
    /// Pod admission (sysctls) and the pods it refused.
    admission: sysctl::Admission,
}

/// One event of a pod's life (Kubernetes v1 Event, node-local).
#[derive(Debug, Clone)]
pub struct PodEvent {
    pub at: i64,
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// Events kept per pod.
const EVENTS_KEPT: usize = 30;

/// Whether a container that exited with `exit_code` is restarted under `policy`.
fn restarts(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// The runtime containers made for spec container `name`, oldest attempt first.
fn attempts<'a>(existing: &'a [v1::Container], name: &str) -> Vec<&'a v1::Container> {
    let mut mine: Vec<&v1::Container> = existing
        .iter()
        .filter(|x| x.labels.get(LABEL_CONTAINER_NAME).map(String::as_str) == Some(name))
        .collect();
    mine.sort_by_key(|x| x.metadata.as_ref().map(|m| m.attempt).unwrap_or(0));
    mine
}

/// Where probes and hooks of a pod connect: its IP, or loopback for host-network pods.
fn handler_host(pod_ip: &str) -> &str {
    if pod_ip.is_empty() {
        "127.0.0.1"
    } else {
        pod_ip
    }
}

fn cri_err(what: String) -> impl FnOnce(CriError) -> CriError {
    move |e| CriError::internal(what, e)
}

impl Supervisor {
    /// Load the stored objects and start reconciling.
    pub async fn start(rt: Arc<Runtime>) -> Result<Arc<Supervisor>, CriError> {
        let (root, run_root) = (rt.paths.root.clone(), rt.paths.run_root.clone());
        let store = tokio::task::spawn_blocking(move || ObjectStore::open(&root, &run_root))
            .await
            .map_err(|e| CriError::internal("object store task", e))??;
        let policy = BackoffPolicy {
            initial: Duration::from_millis(rt.config.crash_loop_backoff_initial_ms),
            cap: Duration::from_millis(rt.config.crash_loop_backoff_max_ms),
            ..BackoffPolicy::default()
        };
        let backoff_root = rt.paths.root.clone();
        let sources = watch::Sources::load(&rt.paths.root.join("objects").join("sources.json"));
        let allowlist = sysctl::SysctlAllowlist::new(&rt.config.allowed_unsafe_sysctls)
            .map_err(|reason| CriError::invalid("allowed-unsafe-sysctls", reason))?;
        let s = Arc::new(Supervisor {
            sources: Mutex::new(sources),
            pod_logs: rt.paths.root.join("pod-logs"),
            rt,
            store: Mutex::new(store),
            wake: Notify::new(),
            waiting: Default::default(),
            backoff: std::sync::Mutex::new(backoff::load(&backoff::state_file(&backoff_root))),
            backoff_changed: Notify::new(),
            policy,
            latest: Default::default(),
            workers: Default::default(),
            events: Default::default(),
            probes: Default::default(),
            probers: Default::default(),
            post_starting: Default::default(),
            self_ref: Default::default(),
            known: Default::default(),
            pulling: Default::default(),
            pull_backoff: Default::default(),
            pulled: Default::default(),
            admission: sysctl::Admission::new(allowlist),
        });
        *s.self_ref.lock().expect("self lock") = Arc::downgrade(&s);
        tokio::spawn(watch::watch_dir(s.clone(), s.rt.config.manifests.clone()));
        tokio::spawn(s.clone().save_backoff_loop());
        let me = s.clone();
        tokio::spawn(async move {
            loop {
                me.dispatch().await;
                // Until the next pass: a container's exit wakes only its pod's worker.
                let next = Instant::now() + Duration::from_secs(1);
                loop {
                    tokio::select! {
                        _ = me.wake.notified() => break,
                        _ = tokio::time::sleep_until(next) => break,
                        _ = me.rt.exits.notified() => {
                            if !me.wake_exited() {
                                break;
                            }
                        }
                    }
                }
            }
        });
        Ok(s)
    }

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

    fn volume_roots(&self, uid: &str) -> VolumeRoots {
        VolumeRoots {
            run: self.rt.paths.run_root.join("volumes").join(uid),
            disk: self.rt.paths.root.join("volumes").join(uid),
        }
    }

    /// Record an event; a repeat of a kept one (same reason and message, as probe failures
    /// repeat) replaces it, so that repeats do not push the other events out.
    fn event(&self, uid: &str, warning: bool, reason: &'static str, message: String) {
        let mut all = self.events.lock().expect("events lock");
        let q = all.entry(uid.to_owned()).or_default();
        let at = kinglet_shim::protocol::now_nanos();
        q.retain(|e| e.reason != reason || e.message != message);
        q.push_back(PodEvent {
            at,
            warning,
            reason,
            message,
        });
        while q.len() > EVENTS_KEPT {
            q.pop_front();
        }
    }

    fn set_waiting(&self, uid: &str, container: &str, reason: &str, message: String) {
        self.waiting.lock().expect("waiting lock").insert(
            (uid.to_owned(), container.to_owned()),
            Waiting {
                reason: reason.to_owned(),
                message,
            },
        );
    }

    fn clear_waiting(&self, uid: &str, container: &str) {
        self.waiting
            .lock()
            .expect("waiting lock")
            .remove(&(uid.to_owned(), container.to_owned()));
    }

    /// The sandboxes made for pod `uid` (by the kubelet's uid label).
    pub(super) async fn sandboxes_of(&self, uid: &str) -> Result<Vec<v1::PodSandbox>, CriError> {
        Ok(self
            .rt
            .list_pod_sandbox(v1::ListPodSandboxRequest {
                filter: Some(v1::PodSandboxFilter {
                    label_selector: [(LABEL_POD_UID.to_string(), uid.to_string())]
                        .into_iter()
                        .collect(),
                    ..Default::default()
                }),
            })
            .await?
            .items)
    }

    /// A container's CRI status.
    pub(super) async fn status_of(&self, id: &str) -> Result<v1::ContainerStatus, CriError> {
        Ok(self
            .rt
            .container_status(v1::ContainerStatusRequest {
                container_id: id.to_owned(),
                verbose: false,
            })
            .await?
            .status
            .unwrap_or_default())
    }

    /// A sandbox's pod IP ("" for host-network pods or when unknown).
    pub(super) async fn sandbox_ip(&self, sandbox: &str) -> String {
        self.rt
            .pod_sandbox_status(v1::PodSandboxStatusRequest {
                pod_sandbox_id: sandbox.to_owned(),
                verbose: false,
            })
            .await
            .ok()
            .and_then(|r| r.status)
            .and_then(|s| s.network)
            .map(|n| n.ip)
            .unwrap_or_default()
    }

    async fn reconcile_pod(&self, pod: &Pod, uid: &str, snap: &Snapshot) -> Result<(), CriError> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let spec = pod.spec.clone().unwrap_or_default();
        let hash = podspec::spec_hash(pod);
        let grace = spec.termination_grace_period_seconds.unwrap_or(30);

        // 1. The sandbox: keep the one made for this spec, replace any other.
        let sandboxes = self.sandboxes_of(uid).await?;
        let mut current = None;
        for s in sandboxes {
            let fresh = s.state == v1::PodSandboxState::SandboxReady as i32
                && s.labels.get(LABEL_SPEC_HASH) == Some(&hash);
            if fresh && current.is_none() {
                current = Some(s.id);
            } else {
                tracing::info!(pod = %name, sandbox = %s.id, "replacing the sandbox of a changed pod");
                self.event(
                    uid,
                    false,
                    "Killing",
                    "Stopping the pod's containers: the pod spec changed".into(),
                );
                let previous = self.known.lock().expect("known lock").get(uid).cloned();
                self.teardown(&s.id, grace, previous.as_ref().or(Some(pod)))
                    .await?;
            }
        }

        // Admission (sysctls): a refused pod gets no sandbox; its status says why.
        if let Err(r) = self.admission.admit(pod, uid, &hash) {
            self.event(uid, true, r.reason, r.message);
            return Ok(());
        }

        // 2. Volumes (refreshed on every pass).
        let vols = match volumes::prepare(pod, &ns, &self.volume_roots(uid), snap) {
            Ok(v) => v,
            Err(ConfigError(msg)) => {
                for c in &spec.containers {
                    self.set_waiting(uid, &c.name, "ContainerCreating", msg.clone());
                }
                return Ok(());
            }
        };

        let log_dir = self.pod_logs.join(format!("{ns}_{name}_{uid}"));
        let sandbox_cfg = podspec::sandbox_config(pod, uid, &log_dir.display().to_string(), &hash);
        let sandbox = match current {
            Some(id) => id,
            None => {
                let id = self
                    .rt
                    .run_pod_sandbox(v1::RunPodSandboxRequest {
                        config: Some(sandbox_cfg.clone()),
                        ..Default::default()
                    })
                    .await
                    .map_err(cri_err(format!("start the sandbox of pod {ns}/{name}")))?
                    .pod_sandbox_id;
                tracing::info!(pod = %name, sandbox = %id, "pod sandbox started");
                self.event(
                    uid,
                    false,
                    "SandboxStarted",
                    format!("Pod sandbox {} started", &id[..12]),
                );
                id
            }
        };
        let pod_ip = self.sandbox_ip(&sandbox).await;
        let node = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default();
        let fields = PodFields {
            name: &name,
            namespace: &ns,
            uid,
            pod_ip: &pod_ip,
            node_name: &node,
        };

        // 3. Containers.
        let existing = self
            .rt
            .list_containers(v1::ListContainersRequest {
                filter: Some(v1::ContainerFilter {
                    pod_sandbox_id: sandbox.clone(),
                    ..Default::default()
                }),
            })
            .await?
            .containers;
        let policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        let ctx = Ctx {
            uid,
            name: &name,
            ns: &ns,
            pod,
            fields: &fields,
            snap,
            vols: &vols,
            sandbox: &sandbox,
            sandbox_cfg: &sandbox_cfg,
            existing: &existing,
        };
        // A pod that does not restart its containers is done once each app container has
        // exited for good: its native sidecars then stop (last first) and stay stopped.
        if policy != "Always" && self.apps_done(&spec.containers, &existing, &policy).await? {
            let sidecars: Vec<v1::Container> = existing
                .iter()
                .filter(|cc| {
                    cc.state == v1::ContainerState::ContainerRunning as i32
                        && stop::sidecar_rank(Some(pod), cc).is_some()
                })
                .cloned()
                .collect();
            if !sidecars.is_empty() {
                tracing::info!(pod = %name, "app containers done; stopping the sidecars");
                self.stop_in_order(&sidecars, Some(pod), &pod_ip, grace)
                    .await?;
            }
            self.known
                .lock()
                .expect("known lock")
                .insert(uid.to_owned(), pod.clone());
            return Ok(());
        }
        // Init containers in order, each to success; native sidecars (restartPolicy: Always)
        // only need to be running before the next one starts. Then the app containers.
        let init_policy = if policy == "Never" {
            "Never"
        } else {
            "OnFailure"
        };
        for c in spec.init_containers.iter().flatten() {
            let sidecar = c.restart_policy.as_deref() == Some("Always");
            let step = self
                .ensure_container(&ctx, c, if sidecar { "Always" } else { init_policy })
                .await?;
            match (sidecar, step) {
                // A sidecar with a startup probe holds the next container until it succeeds.
                (true, Step::Running) if !self.sidecar_started(&existing, c) => return Ok(()),
                (true, Step::Running) | (false, Step::Exited(0)) => {}
                _ => return Ok(()),
            }
        }
        for c in &spec.containers {
            self.ensure_container(&ctx, c, &policy).await?;
        }
        self.known
            .lock()
            .expect("known lock")
            .insert(uid.to_owned(), pod.clone());
        Ok(())
    }

    /// Whether sidecar `c`, running, has passed its startup probe (if it has one). A
    /// container started in this very pass is not in `existing` yet: not started.
    fn sidecar_started(
        &self,
        existing: &[v1::Container],
        c: &k8s_openapi::api::core::v1::Container,
    ) -> bool {
        if c.startup_probe.is_none() {
            return true;
        }
        let probes = self.probes.lock().expect("probe lock");
        existing.iter().any(|x| {
            x.labels.get(LABEL_CONTAINER_NAME) == Some(&c.name)
                && x.state == v1::ContainerState::ContainerRunning as i32
                && probes.get(&x.id).is_some_and(|p| p.started)
        })
    }

    /// Whether every app container has exited and will not be restarted by `policy`
    /// (Never or OnFailure).
    async fn apps_done(
        &self,
        apps: &[k8s_openapi::api::core::v1::Container],
        existing: &[v1::Container],
        policy: &str,
    ) -> Result<bool, CriError> {
        if apps.is_empty() {
            return Ok(false);
        }
        for c in apps {
            let Some(last) = attempts(existing, &c.name).pop() else {
                return Ok(false);
            };
            if last.state != v1::ContainerState::ContainerExited as i32
                || restarts(policy, self.status_of(&last.id).await?.exit_code)
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Pull `image` for container `c` in the background (once at a time per image), with the
    /// pod's imagePullSecrets; failures become ErrImagePull, then ImagePullBackOff.
    fn start_pull(&self, ctx: &Ctx<'_>, c: &k8s_openapi::api::core::v1::Container, image: &str) {
        let key = (ctx.uid.to_owned(), c.name.clone());
        let now = Instant::now();
        if let Some(b) = self.pull_backoff.lock().expect("pull lock").get(&key) {
            if b.not_before.is_some_and(|nb| now < nb) {
                let reason = self
                    .waiting
                    .lock()
                    .expect("waiting lock")
                    .get(&key)
                    .map(|w| w.message.clone())
                    .unwrap_or_default();
                self.set_waiting(
                    ctx.uid,
                    &c.name,
                    "ImagePullBackOff",
                    format!("Back-off pulling image {image:?}: {reason}"),
                );
                return;
            }
        }
        if !self.pulling.lock().expect("pull lock").insert(key.clone()) {
            return; // a pull for this container is under way
        }
        // Credentials from the pod's imagePullSecrets (kubernetes.io/dockerconfigjson).
        let secrets: Vec<(String, Vec<u8>)> = ctx
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.clone())
            .unwrap_or_default()
            .iter()
            .filter_map(|r| {
                let d = ctx.snap.secret(ctx.ns, &r.name)?;
                Some((r.name.clone(), d.get(".dockerconfigjson")?.clone()))
            })
            .collect();
        let refs: Vec<(&str, &[u8])> = secrets
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_slice()))
            .collect();
        let creds = match crate::pull::auth::from_pull_secrets(&refs, image) {
            Ok(c) => c,
            Err(e) => {
                self.pulling.lock().expect("pull lock").remove(&key);
                self.set_waiting(ctx.uid, &c.name, "ErrImagePull", kinglet_cri::chain(&e));
                return;
            }
        };
        self.set_waiting(
            ctx.uid,
            &c.name,
            "ContainerCreating",
            format!("Pulling image {image:?}"),
        );
        self.event(
            ctx.uid,
            false,
            "Pulling",
            format!("Pulling image {image:?}"),
        );
        let me = self.self_ref.lock().expect("self lock").upgrade();
        let image = image.to_owned();
        tokio::spawn(async move {
            let Some(me) = me else { return };
            let result = me.rt.puller.pull(&image, creds).await;
            me.pulling.lock().expect("pull lock").remove(&key);
            match result {
                Ok(_) => {
                    me.pull_backoff.lock().expect("pull lock").remove(&key);
                    me.pulled
                        .lock()
                        .expect("pull lock")
                        .insert((key.clone(), image.clone()));
                    me.event(
                        &key.0,
                        false,
                        "Pulled",
                        format!("Successfully pulled image {image:?}"),
                    );
                }
                Err(e) => {
                    let msg = kinglet_cri::chain(&e);
                    me.event(
                        &key.0,
                        true,
                        "Failed",
                        format!("Failed to pull image {image:?}: {msg}"),
                    );
                    me.set_waiting(&key.0, &key.1, "ErrImagePull", msg);
                    let mut all = me.pull_backoff.lock().expect("pull lock");
                    let b = all.entry(key.clone()).or_default();
                    b.restarted(Instant::now(), &me.policy);
                }
            }
            me.wake.notify_one();
        });
    }

    /// Start the prober of a running container that has probes, once.
    fn ensure_prober(&self, ctx: &Ctx<'_>, c: &k8s_openapi::api::core::v1::Container, id: &str) {
        if c.liveness_probe.is_none() && c.readiness_probe.is_none() && c.startup_probe.is_none() {
            return;
        }
        if !self
            .probers
            .lock()
            .expect("probers lock")
            .insert(id.to_owned())
        {
            return;
        }
        let host = handler_host(ctx.fields.pod_ip).to_owned();
        let grace = ctx
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        let (rt, states, id, c) = (
            self.rt.clone(),
            self.probes.clone(),
            id.to_owned(),
            c.clone(),
        );
        let me = self.self_ref.lock().expect("self lock").upgrade();
        let pod = probe::PodRef::new(self.self_ref.lock().expect("self lock").clone(), ctx.pod);
        tokio::spawn(async move {
            probe::prober(rt, states, id.clone(), c, host, grace, pod).await;
            if let Some(me) = me {
                me.probers.lock().expect("probers lock").remove(&id);
                me.wake.notify_one();
            }
        });
    }

    /// Bring one container towards running by `policy`: create it, start it, or restart it
    /// after an exit (with back-off).
    async fn ensure_container(
        &self,
        ctx: &Ctx<'_>,
        c: &k8s_openapi::api::core::v1::Container,
        policy: &str,
    ) -> Result<Step, CriError> {
        let Ctx {
            uid,
            name,
            ns,
            pod,
            fields,
            snap,
            vols,
            sandbox,
            sandbox_cfg,
            existing,
        } = *ctx;
        let (name, ns) = (name.to_owned(), ns.to_owned());
        let mine = attempts(existing, &c.name);
        let attempt = match mine.last() {
            None => 0,
            Some(last) if last.state == v1::ContainerState::ContainerRunning as i32 => {
                self.clear_waiting(uid, &c.name);
                self.ensure_prober(ctx, c, &last.id);
                return Ok(Step::Running);
            }
            Some(last) if last.state == v1::ContainerState::ContainerCreated as i32 => {
                self.rt.start_container(&last.id).await?;
                return Ok(Step::Running);
            }
            Some(last) => {
                let st = self.status_of(&last.id).await?;
                if !restarts(policy, st.exit_code) {
                    return Ok(Step::Exited(st.exit_code));
                }
                let key = (uid.to_owned(), c.name.clone());
                let now = Instant::now();
                let mut b = self
                    .backoff
                    .lock()
                    .expect("backoff lock")
                    .get(&key)
                    .copied()
                    .unwrap_or_default();
                let ran = Duration::from_nanos((st.finished_at - st.started_at).max(0) as u64);
                {
                    if !b.ready(now, ran, &self.policy) {
                        self.event(
                            uid,
                            true,
                            "BackOff",
                            format!("Back-off restarting failed container {}", c.name),
                        );
                        self.set_waiting(
                            uid,
                            &c.name,
                            "CrashLoopBackOff",
                            format!(
                                "back-off {}s restarting failed container={} pod={name}_{ns}({uid})",
                                b.next.as_secs(),
                                c.name
                            ),
                        );
                        return Ok(Step::Waiting);
                    }
                }
                b.restarted(now, &self.policy);
                self.backoff.lock().expect("backoff lock").insert(key, b);
                self.backoff_changed.notify_one();
                // Keep the last run (for `logs --previous`), drop older ones.
                for old in &mine[..mine.len() - 1] {
                    let _ = self.rt.remove_container(&old.id).await;
                    self.probes.lock().expect("probe lock").remove(&old.id);
                }
                last.metadata.as_ref().map(|m| m.attempt).unwrap_or(0) + 1
            }
        };
        let mut cfg = match podspec::container_config(pod, c, attempt, &ns, fields, snap, vols) {
            Ok(cfg) => cfg,
            Err(ConfigError(msg)) => {
                self.event(uid, true, "Failed", format!("Error: {msg}"));
                self.set_waiting(uid, &c.name, "CreateContainerConfigError", msg);
                return Ok(Step::Waiting);
            }
        };
        let image = c.image.clone().unwrap_or_default();
        let image_status = self
            .rt
            .image_status(v1::ImageStatusRequest {
                image: Some(v1::ImageSpec {
                    image: image.clone(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await
            .ok()
            .and_then(|r| r.image);
        let present = image_status.is_some();
        // imagePullPolicy, with Kubernetes' default: Always for `:latest` or no tag, else
        // IfNotPresent.
        let policy = c.image_pull_policy.clone().unwrap_or_else(|| {
            let last = image.rsplit('/').next().unwrap_or("");
            if image.contains('@') || (last.contains(':') && !last.ends_with(":latest")) {
                "IfNotPresent".into()
            } else {
                "Always".into()
            }
        });
        let key = (uid.to_owned(), c.name.clone());
        let pulled = self
            .pulled
            .lock()
            .expect("pull lock")
            .contains(&(key.clone(), image.clone()));
        let must_pull = match policy.as_str() {
            "Never" if !present => {
                self.set_waiting(
                    uid,
                    &c.name,
                    "ErrImageNeverPull",
                    format!("Container image {image:?} is not present with pull policy of Never"),
                );
                return Ok(Step::Waiting);
            }
            "Never" => false,
            "Always" => !pulled,
            _ => !present,
        };
        if must_pull {
            self.start_pull(ctx, c, &image);
            return Ok(Step::Waiting);
        }
        if let Err(ConfigError(msg)) =
            security::verify_run_as_non_root(pod, c, image_status.as_ref())
        {
            self.event(uid, true, "Failed", format!("Error: {msg}"));
            self.set_waiting(uid, &c.name, "CreateContainerConfigError", msg);
            return Ok(Step::Waiting);
        }
        security::complete_user(&mut cfg, image_status.as_ref());
        let id = match self
            .rt
            .create_container(v1::CreateContainerRequest {
                pod_sandbox_id: sandbox.to_owned(),
                config: Some(cfg),
                sandbox_config: Some(sandbox_cfg.clone()),
            })
            .await
        {
            Ok(r) => r.container_id,
            Err(e) => {
                self.set_waiting(uid, &c.name, "CreateContainerError", kinglet_cri::chain(&e));
                return Ok(Step::Waiting);
            }
        };
        if let Err(e) = self.rt.start_container(&id).await {
            self.set_waiting(uid, &c.name, "RunContainerError", kinglet_cri::chain(&e));
            return Ok(Step::Waiting);
        }
        if let Some(h) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
            let host = handler_host(fields.pod_ip);
            let grace = pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
                .unwrap_or(30);
            self.post_starting
                .lock()
                .expect("post-start lock")
                .insert(id.clone());
            let hook = hooks::run_handler(&self.rt, &id, c, h, host, Duration::from_secs(30)).await;
            self.post_starting
                .lock()
                .expect("post-start lock")
                .remove(&id);
            if let Err(msg) = hook {
                self.event(
                    uid,
                    true,
                    "FailedPostStartHook",
                    format!("PostStart hook of {} failed: {msg}", c.name),
                );
                let me = probe::PodRef::new(self.self_ref.lock().expect("self lock").clone(), pod);
                let _ = hooks::kill_container(&self.rt, &me, &id, c, host, grace).await;
                return Ok(Step::Waiting);
            }
        }
        self.clear_waiting(uid, &c.name);
        self.ensure_prober(ctx, c, &id);
        self.event(
            uid,
            false,
            "Started",
            format!("Started container {}", c.name),
        );
        tracing::info!(pod = %name, container = %c.name, attempt, "container started");
        Ok(Step::Running)
    }

    /// `kinglet apply`.
    pub async fn apply(&self, req: admin::ApplyRequest) -> Result<admin::ApplyResponse, CriError> {
        let objs = kinglet_manifest::parse(&req.source, &req.content)
            .map_err(|e| CriError::invalid("manifest", e.to_string()))?;
        let warnings: Vec<String> = objs
            .iter()
            .flat_map(|o| {
                let k = o.key();
                kinglet_manifest::ignored_fields(o)
                    .into_iter()
                    .map(move |f| {
                        format!(
                            "Warning: {}/{}: {f} is not supported by kinglet and is ignored",
                            k.kind.to_lowercase(),
                            k.name
                        )
                    })
            })
            .collect();
        let mut results = self.apply_objects(objs).await?;
        results.extend(warnings);
        Ok(admin::ApplyResponse { results })
    }

    /// Store objects (create or update), then wake the reconciler. One line per object.
    pub(crate) async fn apply_objects(&self, objs: Vec<Object>) -> Result<Vec<String>, CriError> {
        let mut results = Vec::new();
        {
            let mut store = self.store.lock().await;
            for mut o in objs {
                let k = o.key();
                let prev = store.map.get(&k).cloned();
                let verdict = match &prev {
                    None => "created",
                    Some(p) if same_content(p, &o) => "unchanged",
                    Some(_) => "configured",
                };
                carry_identity(&mut o, prev.as_ref());
                if verdict != "unchanged" {
                    store.put(o)?;
                }
                results.push(format!("{}/{} {verdict}", k.kind.to_lowercase(), k.name));
            }
        }
        self.wake.notify_one();
        Ok(results)
    }

    /// Remove objects (absent ones are skipped), then wake the reconciler.
    pub(crate) async fn delete_keys(&self, keys: &[ObjectKey]) -> Result<Vec<String>, CriError> {
        let mut results = Vec::new();
        {
            let mut store = self.store.lock().await;
            for k in keys {
                if store.remove(k)?.is_some() {
                    results.push(format!("{}/{} deleted", k.kind.to_lowercase(), k.name));
                }
            }
        }
        self.wake.notify_one();
        Ok(results)
    }

    /// `kinglet delete`.
    pub async fn delete(
        &self,
        req: admin::DeleteRequest,
    ) -> Result<admin::DeleteResponse, CriError> {
        let keys: Vec<ObjectKey> = if !req.content.is_empty() {
            kinglet_manifest::parse(&req.source, &req.content)
                .map_err(|e| CriError::invalid("manifest", e.to_string()))?
                .iter()
                .map(Object::key)
                .collect()
        } else {
            vec![ObjectKey {
                kind: kind_of(&req.kind).ok_or_else(|| {
                    CriError::invalid("kind", format!("unknown kind {:?}", req.kind))
                })?,
                namespace: if req.namespace.is_empty() {
                    "default".into()
                } else {
                    req.namespace.clone()
                },
                name: req.name.clone(),
            }]
        };
        let mut results = Vec::new();
        {
            let mut store = self.store.lock().await;
            for k in keys {
                match store.remove(&k)? {
                    Some(_) => {
                        results.push(format!("{}/{} deleted", k.kind.to_lowercase(), k.name))
                    }
                    None => {
                        return Err(CriError::not_found(
                            "object",
                            format!("{} {}/{}", k.kind, k.namespace, k.name),
                        ))
                    }
                }
            }
        }
        self.wake.notify_one();
        Ok(admin::DeleteResponse { results })
    }

    /// `kinglet get`: objects as Kubernetes JSON, Pods with their current status.
    pub async fn get(&self, req: admin::GetRequest) -> Result<admin::GetResponse, CriError> {
        let kind = kind_of(&req.kind)
            .ok_or_else(|| CriError::invalid("kind", format!("unknown kind {:?}", req.kind)))?;
        let ns = if req.namespace.is_empty() {
            "default"
        } else {
            req.namespace.as_str()
        };
        let picked: Vec<Object> = {
            let store = self.store.lock().await;
            store
                .map
                .iter()
                .filter(|(k, _)| k.kind == kind)
                .filter(|(k, _)| req.all_namespaces || k.namespace == ns)
                .filter(|(k, _)| req.name.is_empty() || k.name == req.name)
                .map(|(_, o)| o.clone())
                .collect()
        };
        if !req.name.is_empty() && picked.is_empty() {
            return Err(CriError::not_found(
                "object",
                format!("{kind} {ns}/{}", req.name),
            ));
        }
        let mut objects = Vec::new();
        for o in picked {
            let v = match o {
                Object::Pod(mut p) => {
                    p.status = Some(self.pod_status(&p).await);
                    serde_json::to_value(&*p)
                }
                Object::ConfigMap(c) => serde_json::to_value(&c),
                Object::Secret(s) => serde_json::to_value(&s),
            }
            .map_err(|e| CriError::internal("encode object", e))?;
            objects.push(v.to_string());
        }
        let mut events = Vec::new();
        if kind == "Pod" && !req.name.is_empty() {
            if let Some(uid) = objects
                .first()
                .and_then(|o| serde_json::from_str::<serde_json::Value>(o).ok())
                .and_then(|v| {
                    v.pointer("/metadata/uid")
                        .and_then(|u| u.as_str())
                        .map(str::to_owned)
                })
            {
                let all = self.events.lock().expect("events lock");
                for e in all.get(&uid).into_iter().flatten() {
                    let t = status::time_of(e.at);
                    events.push(
                        serde_json::json!({
                            "apiVersion": "v1",
                            "kind": "Event",
                            "type": if e.warning { "Warning" } else { "Normal" },
                            "reason": e.reason,
                            "message": e.message,
                            "lastTimestamp": t,
                        })
                        .to_string(),
                    );
                }
            }
        }
        Ok(admin::GetResponse { objects, events })
    }
}

fn kind_of(s: &str) -> Option<&'static str> {
    match s.to_lowercase().as_str() {
        "pod" | "pods" | "po" => Some("Pod"),
        "configmap" | "configmaps" | "cm" => Some("ConfigMap"),
        "secret" | "secrets" => Some("Secret"),
        _ => None,
    }
}

/// Equal apart from the identity fields Kinglet fills in.
fn same_content(a: &Object, b: &Object) -> bool {
    let strip = |o: &Object| {
        let mut o = o.clone();
        let m = match &mut o {
            Object::Pod(p) => &mut p.metadata,
            Object::ConfigMap(c) => &mut c.metadata,
            Object::Secret(s) => &mut s.metadata,
        };
        m.uid = None;
        m.creation_timestamp = None;
        m.generation = None;
        m.resource_version = None;
        if m.namespace.is_none() {
            m.namespace = Some("default".into());
        }
        if let Object::Pod(p) = &mut o {
            p.status = None;
        }
        o
    };
    strip(a) == strip(b)
}

/// Keep uid and creation time across updates; give new objects theirs.
fn carry_identity(o: &mut Object, prev: Option<&Object>) {
    let prev_meta = prev.map(|p| match p {
        Object::Pod(p) => p.metadata.clone(),
        Object::ConfigMap(c) => c.metadata.clone(),
        Object::Secret(s) => s.metadata.clone(),
    });
    let m = match o {
        Object::Pod(p) => &mut p.metadata,
        Object::ConfigMap(c) => &mut c.metadata,
        Object::Secret(s) => &mut s.metadata,
    };
    match prev_meta {
        Some(pm) => {
            m.uid = pm.uid;
            m.creation_timestamp = pm.creation_timestamp;
            m.generation = Some(pm.generation.unwrap_or(1) + 1);
        }
        None => {
            let id = crate::runtime::new_id();
            m.uid = Some(format!(
                "{}-{}-{}-{}-{}",
                &id[0..8],
                &id[8..12],
                &id[12..16],
                &id[16..20],
                &id[20..32]
            ));
            m.creation_timestamp = Some(status::now_time());
            m.generation = Some(1);
        }
    }
    if m.namespace.is_none() {
        m.namespace = Some("default".into());
    }
}
