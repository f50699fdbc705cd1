//! One pod's reconciliation: the state its worker owns ([`PodState`]), what the worker acts
//! through ([`PodEnv`]: the [`PodRuntime`] and the settings), and the step itself,
//! [`reconcile`]: compare the pod with what the runtime has, act, and say when to look again.
//!
//! Each pass: replace a sandbox whose spec hash is stale; admit the pod (sysctls); prepare its
//! volumes (ConfigMap and Secret volumes are rewritten atomically); run init containers in
//! order and start native sidecars; create missing containers; restart exited ones by
//! `restartPolicy` with the kubelet's CrashLoopBackOff; stop a finished pod's sidecars.
//! Decisions read only the pod, the world, this state and the runtime's answers, so they are
//! unit-tested against a fake runtime on a paused clock (`tests/`).

mod container;
mod shared;
mod terminal;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use kinglet_proto::v1;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::backoff::{Backoff, BackoffPolicy};
use crate::harness::Wake;
use crate::podspec::LABEL_SPEC_HASH;
use crate::podspec::{self, ConfigError, PodFields, LABEL_CONTAINER_NAME, LABEL_POD_UID};
use crate::runtime::{PodRuntime, RuntimeError};
use crate::sysctl::SysctlAllowlist;
use crate::volumes::{self, VolumeRoots};
use crate::world::World;
use crate::{hosts, status, stop};

pub use crate::harness::Action;
pub use shared::{PodEvent, PodShared, Shared, Waiting, EVENTS_KEPT};

/// What the kubelet remembers of one container of the pod (by name).
#[derive(Debug, Clone, Default)]
pub struct ContainerMemo {
    /// Why it is not running, when it is not.
    pub waiting: Option<Waiting>,
    /// CrashLoopBackOff (saved across daemon restarts).
    pub backoff: Backoff,
    pub pull: PullState,
}

/// Image pulls of one container.
#[derive(Debug, Clone, Default)]
pub struct PullState {
    /// A pull is under way.
    pub in_flight: bool,
    /// ImagePullBackOff.
    pub backoff: Backoff,
    /// Images pulled for it since the daemon started (for pull policy Always).
    pub pulled: HashSet<String>,
    /// Why the last pull failed: the ImagePullBackOff message quotes it (never itself, so the
    /// message does not grow with retries).
    pub last_error: String,
    /// The image was in the store although the defaulted policy (Always, for `:latest` or
    /// no tag) wants a pull: a failed pull says how to use the local image.
    pub present_locally: bool,
}

/// Everything the kubelet keeps about one pod, owned by the pod's worker.
#[derive(Debug)]
pub struct PodState {
    pub uid: String,
    pub containers: HashMap<String, ContainerMemo>,
    /// The spec last reconciled (for preStop hooks and stop order when the pod is deleted or
    /// replaced).
    pub last_spec: Option<Pod>,
    /// Containers (CRI ids) with a prober running.
    probers: HashSet<String>,
    /// The crash-loop back-off changed since last taken (it is saved for the next daemon).
    backoff_changed: bool,
    /// What the pod's tasks and status readers share.
    pub shared: Arc<PodShared>,
    /// Reports of the tasks the worker starts (pulls, probers): sent here, applied at the
    /// start of the next pass.
    inbox: mpsc::UnboundedSender<PodMsg>,
    reports: mpsc::UnboundedReceiver<PodMsg>,
}

/// A report to a pod's worker from a task it started.
#[derive(Debug)]
pub enum PodMsg {
    /// An image pull for `container` ended.
    Pulled {
        container: String,
        image: String,
        result: Result<(), RuntimeError>,
    },
    /// The prober of container `container_id` ended (its container stopped or was killed).
    ProberDone { container_id: String },
}

impl PodState {
    /// The state of a pod seen for the first time (with the crash-loop back-off an earlier
    /// daemon saved for its containers).
    pub fn new(uid: &str, saved_backoff: HashMap<String, Backoff>) -> PodState {
        let containers = saved_backoff
            .into_iter()
            .map(|(name, backoff)| {
                let memo = ContainerMemo {
                    backoff,
                    ..Default::default()
                };
                (name, memo)
            })
            .collect();
        let (inbox, reports) = mpsc::unbounded_channel();
        PodState {
            inbox,
            reports,
            uid: uid.to_owned(),
            containers,
            last_spec: None,
            probers: HashSet::new(),
            backoff_changed: false,
            shared: Arc::new(PodShared::default()),
        }
    }

    fn memo(&mut self, container: &str) -> &mut ContainerMemo {
        self.containers.entry(container.to_owned()).or_default()
    }

    pub fn waiting(&self, container: &str) -> Option<&Waiting> {
        self.containers.get(container)?.waiting.as_ref()
    }

    fn set_waiting(&mut self, container: &str, reason: &str, message: String) {
        self.memo(container).waiting = Some(Waiting {
            reason: reason.to_owned(),
            message,
        });
    }

    /// Whether some container already waits with `message` (an event said why).
    fn any_waiting_with(&self, message: &str) -> bool {
        self.containers
            .values()
            .any(|m| m.waiting.as_ref().is_some_and(|w| w.message == message))
    }

    fn clear_waiting(&mut self, container: &str) {
        if let Some(m) = self.containers.get_mut(container) {
            m.waiting = None;
        }
    }

    fn event(&self, warning: bool, reason: &'static str, message: String) {
        self.shared.event(warning, reason, message);
    }

    /// Apply the reports that came in since the last pass.
    fn drain(&mut self, policy: &BackoffPolicy) {
        while let Ok(msg) = self.reports.try_recv() {
            self.apply(msg, policy);
        }
    }

    /// Apply a task's report.
    fn apply(&mut self, msg: PodMsg, policy: &BackoffPolicy) {
        match msg {
            PodMsg::ProberDone { container_id } => {
                self.probers.remove(&container_id);
            }
            PodMsg::Pulled {
                container,
                image,
                result,
            } => {
                let pull = &mut self.memo(&container).pull;
                pull.in_flight = false;
                match result {
                    Ok(()) => {
                        pull.backoff = Backoff::default();
                        pull.pulled.insert(image.clone());
                        self.event(
                            false,
                            "Pulled",
                            format!("Successfully pulled image {image:?}"),
                        );
                    }
                    Err(e) => {
                        pull.backoff.restarted(Instant::now(), policy);
                        let mut message = e.message;
                        if pull.present_locally {
                            message.push_str(&container::local_image_hint(&image));
                        }
                        pull.last_error = message.clone();
                        self.event(
                            true,
                            "Failed",
                            format!("Failed to pull image {image:?}: {message}"),
                        );
                        self.set_waiting(&container, "ErrImagePull", message);
                    }
                }
            }
        }
    }

    /// Make the waiting reasons visible to status readers.
    pub fn publish(&self) {
        let waiting = self
            .containers
            .iter()
            .filter_map(|(n, m)| Some((n.clone(), m.waiting.clone()?)))
            .collect();
        self.shared.publish_waiting(waiting);
    }

    /// The crash-loop back-off of each container, when it changed since the last call.
    pub fn take_backoff(&mut self) -> Option<HashMap<String, Backoff>> {
        if !std::mem::take(&mut self.backoff_changed) {
            return None;
        }
        Some(
            self.containers
                .iter()
                .filter(|(_, m)| m.backoff != Backoff::default())
                .map(|(n, m)| (n.clone(), m.backoff))
                .collect(),
        )
    }

    /// The earliest moment a back-off (crash loop or image pull) ends, if one is pending.
    fn next_deadline(&self) -> Option<Instant> {
        self.containers
            .values()
            .filter(|m| m.waiting.is_some())
            .flat_map(|m| [m.backoff.not_before, m.pull.backoff.not_before])
            .flatten()
            .filter(|t| *t > Instant::now())
            .min()
    }
}

/// What a pod's worker acts through, and the settings its decisions use.
pub struct PodEnv {
    pub rt: Arc<dyn PodRuntime>,
    pub policy: BackoffPolicy,
    /// CRI log directories are made under it.
    pub pod_logs: PathBuf,
    /// Where this pod's volumes live.
    pub volumes: VolumeRoots,
    /// For the downward API's `spec.nodeName`.
    pub node_name: String,
    /// For the downward API's `status.hostIP`.
    pub host_ip: String,
    /// For `resourceFieldRef`s of containers without limits.
    pub allocatable: crate::downward::Allocatable,
    pub sysctls: Arc<SysctlAllowlist>,
    /// The cluster DNS (for the sandbox's resolv.conf).
    pub dns: Option<crate::dns::ClusterDns>,
    /// Where the pod's crash-loop back-off is kept for the next daemon.
    pub book: Arc<crate::workers::BackoffBook>,
    /// User namespaces of pods with `hostUsers: false`.
    pub userns: Arc<crate::userns::UsernsManager>,
    /// The bound on sandbox teardowns at once.
    pub teardowns: Arc<crate::teardowns::Teardowns>,
    /// Wakes the pod's worker (after a task's report).
    pub wake: Wake,
}

/// A pass that could not finish. Every one is worth retrying (the next pass starts afresh
/// from what the runtime has); [`ReconcileError::retry_after`] says when.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// A runtime call failed.
    #[error("{step}")]
    Runtime {
        step: String,
        #[source]
        source: RuntimeError,
    },
    /// A file of the pod (its /etc/hosts) could not be written.
    #[error("{step}")]
    Io {
        step: String,
        #[source]
        source: std::io::Error,
    },
}

impl ReconcileError {
    /// When to try again: soon for an object that vanished under us (the next pass sees the
    /// runtime as it is now); None: after the harness's back-off.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ReconcileError::Runtime { source, .. }
                if source.kind == crate::runtime::RuntimeErrorKind::NotFound =>
            {
                Some(Duration::from_millis(100))
            }
            ReconcileError::Runtime { .. } | ReconcileError::Io { .. } => None,
        }
    }
}

/// Name a failed runtime call's step.
pub(crate) trait Step<T> {
    fn step(self, what: impl FnOnce() -> String) -> Result<T, ReconcileError>;
}

impl<T> Step<T> for Result<T, RuntimeError> {
    fn step(self, what: impl FnOnce() -> String) -> Result<T, ReconcileError> {
        self.map_err(|source| ReconcileError::Runtime {
            step: what(),
            source,
        })
    }
}

/// Where a container stands after one reconcile step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    Running,
    /// Exited and not to be restarted (by its policy).
    Exited(i32),
    /// Not running yet: back-off, configuration error, missing image.
    Waiting,
}

/// What one pass shares between its containers.
struct Pass<'a> {
    pod: &'a Pod,
    world: &'a World,
    fields: PodFields<'a>,
    vols: HashMap<String, PathBuf>,
    sandbox: String,
    sandbox_cfg: v1::PodSandboxConfig,
    existing: Vec<v1::Container>,
    grace: i64,
    /// The kubelet-managed hosts file, bind-mounted at /etc/hosts.
    hosts: Option<PathBuf>,
}

/// Whether a container that exited with `exit_code` is restarted under `policy`.
pub(crate) fn restarts(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// The runtime containers made for spec container `name`, oldest attempt first.
pub(crate) fn attempts<'a>(existing: &'a [v1::Container], name: &str) -> Vec<&'a v1::Container> {
    let mut mine: Vec<&v1::Container> = existing
        .iter()
        .filter(|x| x.labels.get(LABEL_CONTAINER_NAME).map(String::as_str) == Some(name))
        .collect();
    mine.sort_by_key(|x| x.metadata.as_ref().map(|m| m.attempt).unwrap_or(0));
    mine
}

/// Where probes and hooks of a pod connect: its IP, or loopback for host-network pods.
pub(crate) fn handler_host(pod_ip: &str) -> &str {
    if pod_ip.is_empty() {
        "127.0.0.1"
    } else {
        pod_ip
    }
}

/// The pod's terminationGracePeriodSeconds (default 30).
pub(crate) fn grace_of(pod: &Pod) -> i64 {
    pod.spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30)
}

/// The sandboxes made for pod `uid` (by the kubelet's uid label).
pub(crate) async fn sandboxes_of(
    rt: &dyn PodRuntime,
    uid: &str,
) -> Result<Vec<v1::PodSandbox>, RuntimeError> {
    let filter = v1::PodSandboxFilter {
        label_selector: [(LABEL_POD_UID.to_string(), uid.to_string())]
            .into_iter()
            .collect(),
        ..Default::default()
    };
    let req = v1::ListPodSandboxRequest {
        filter: Some(filter),
    };
    Ok(rt.list_pod_sandbox(req).await?.items)
}

/// The containers of one sandbox.
pub(crate) async fn containers_of(
    rt: &dyn PodRuntime,
    sandbox: &str,
) -> Result<Vec<v1::Container>, RuntimeError> {
    let filter = v1::ContainerFilter {
        pod_sandbox_id: sandbox.to_owned(),
        ..Default::default()
    };
    let req = v1::ListContainersRequest {
        filter: Some(filter),
    };
    Ok(rt.list_containers(req).await?.containers)
}

/// A container's CRI status.
pub(crate) async fn status_of(
    rt: &dyn PodRuntime,
    id: &str,
) -> Result<v1::ContainerStatus, RuntimeError> {
    let req = v1::ContainerStatusRequest {
        container_id: id.to_owned(),
        verbose: false,
    };
    Ok(rt.container_status(req).await?.status.unwrap_or_default())
}

/// A sandbox's pod IP ("" for host-network pods or when unknown).
pub(crate) async fn sandbox_ip(rt: &dyn PodRuntime, sandbox: &str) -> String {
    let req = v1::PodSandboxStatusRequest {
        pod_sandbox_id: sandbox.to_owned(),
        verbose: false,
    };
    rt.pod_sandbox_status(req)
        .await
        .ok()
        .and_then(|r| r.status)
        .and_then(|s| s.network)
        .map(|n| n.ip)
        .unwrap_or_default()
}

/// One pass over `pod` (see the module docs).
pub async fn reconcile(
    pod: &Pod,
    world: &World,
    state: &mut PodState,
    env: &PodEnv,
) -> Result<Action, ReconcileError> {
    state.drain(&env.policy);
    let result = reconcile_inner(pod, world, state, env).await;
    state.publish();
    result?;
    Ok(match state.next_deadline() {
        Some(t) => Action::Requeue(t.saturating_duration_since(Instant::now())),
        None => Action::AwaitChange,
    })
}

async fn reconcile_inner(
    pod: &Pod,
    world: &World,
    state: &mut PodState,
    env: &PodEnv,
) -> Result<(), ReconcileError> {
    let rt = &*env.rt;
    let name = pod.metadata.name.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let hash = podspec::spec_hash(pod);
    let grace = grace_of(pod);

    // 1. The sandbox: keep the one made for this spec, replace any other.
    let sandboxes = sandboxes_of(rt, &state.uid)
        .await
        .step(|| "list the pod's sandboxes".into())?;
    let done = terminal::finished_sandbox(rt, pod, &sandboxes, &hash).await?;
    let mut current = None;
    for s in sandboxes {
        if done.as_deref() == Some(s.id.as_str()) {
            continue;
        }
        let fresh = s.state == v1::PodSandboxState::SandboxReady as i32
            && s.labels.get(LABEL_SPEC_HASH) == Some(&hash);
        if fresh && current.is_none() {
            current = Some(s.id);
            continue;
        }
        tracing::info!(pod = %name, sandbox = %s.id, "replacing the sandbox of a changed pod");
        state.event(
            false,
            "Killing",
            "Stopping the pod's containers: the pod spec changed".into(),
        );
        let previous = state.last_spec.clone();
        stop::teardown(
            rt,
            &env.teardowns,
            &state.shared,
            &s.id,
            grace,
            previous.as_ref().or(Some(pod)),
        )
        .await
        .step(|| format!("replace sandbox {}", s.id))?;
    }

    // A done pod keeps its stopped sandbox and exited containers; nothing more to do.
    let finished = current.is_none() && done.is_some();
    state.shared.set_finished(finished);
    if finished {
        return Ok(());
    }

    // Admission (sysctls): a refused pod gets no sandbox; its status says why.
    if let Err(r) = state.shared.admit(&env.sysctls, pod, &hash) {
        state.event(true, r.reason, r.message);
        return Ok(());
    }

    // 2. Volumes (refreshed on every pass).
    let vols = match volumes::prepare(pod, ns, &env.volumes, &*world.snap, &env.allocatable) {
        Ok(v) => v,
        Err(ConfigError(msg)) => {
            // The kubelet's FailedMount event.
            let msg = format!("MountVolume.SetUp failed: {msg}");
            not_created(pod, state, "FailedMount", msg);
            return Ok(());
        }
    };
    // The pod's own user namespace (hostUsers: false), before its sandbox is made.
    let Ok(userns) = pod_userns(pod, state, env).await else {
        return Ok(());
    };
    let uid = state.uid.clone();
    let log_dir = env.pod_logs.join(format!("{ns}_{name}_{uid}"));
    let mut sandbox_cfg = podspec::sandbox_config(pod, &uid, &log_dir.display().to_string(), &hash);
    podspec::set_userns(&mut sandbox_cfg, userns);
    let sandbox = match current {
        Some(id) => id,
        None => {
            // resolv.conf by dnsPolicy, from the host's file as it is now.
            let host = tokio::task::spawn_blocking(kinglet_services::dns::resolvconf::host)
                .await
                .unwrap_or_default();
            let (dns, warnings) = crate::dns::pod_dns_config(pod, env.dns.as_ref(), &host);
            for (reason, msg) in warnings {
                state.event(true, reason, msg);
            }
            sandbox_cfg.dns_config = Some(dns);
            let req = v1::RunPodSandboxRequest {
                config: Some(sandbox_cfg.clone()),
                ..Default::default()
            };
            let id = match rt.run_pod_sandbox(req).await {
                Ok(r) => r.pod_sandbox_id,
                Err(e) => {
                    // The kubelet's FailedCreatePodSandBox; retried after the back-off.
                    let msg = format!("Failed to create pod sandbox: {}", e.message);
                    not_created(pod, state, "FailedCreatePodSandBox", msg);
                    return Err(e).step(|| format!("start the sandbox of pod {ns}/{name}"));
                }
            };
            tracing::info!(pod = %name, sandbox = %id, "pod sandbox started");
            let short = id.get(..12).unwrap_or(&id);
            state.event(
                false,
                "SandboxStarted",
                format!("Pod sandbox {short} started"),
            );
            id
        }
    };
    let pod_ip = sandbox_ip(rt, &sandbox).await;
    let existing = containers_of(rt, &sandbox)
        .await
        .step(|| "list the pod's containers".into())?;
    let hosts = hosts_file(pod, &pod_ip, &sandbox_cfg.hostname, env).await?;
    let pass = Pass {
        pod,
        world,
        fields: PodFields {
            name: &name,
            namespace: ns,
            uid: &uid,
            pod_ip: &pod_ip,
            node_name: &env.node_name,
            host_ip: &env.host_ip,
            allocatable: env.allocatable,
        },
        vols,
        sandbox,
        sandbox_cfg,
        existing,
        grace,
        hosts,
    };
    // 3. Containers.
    run_containers(&pass, state, env).await?;
    state.last_spec = Some(pod.clone());
    Ok(())
}

/// The pod's containers cannot be created yet: a warning event (once per message) and the
/// reason in every container's waiting state (never a silent ContainerCreating).
fn not_created(pod: &Pod, state: &mut PodState, event: &'static str, msg: String) {
    if !state.any_waiting_with(&msg) {
        tracing::warn!(pod = pod.metadata.name.as_deref().unwrap_or_default(), reason = event, error = %msg, "pod not created");
        state.event(true, event, msg.clone());
    }
    let spec = pod.spec.clone().unwrap_or_default();
    let inits = spec.init_containers.as_deref().unwrap_or_default();
    let reason = if inits.is_empty() {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    for c in inits.iter().chain(&spec.containers) {
        state.set_waiting(&c.name, reason, msg.clone());
    }
}

/// The user namespace of a pod with `hostUsers: false` (None for the host's): its mapping,
/// allocated and saved on first need. Err: none can be had (the range is exhausted or
/// unusable, the file cannot be written); the pod waits with a FailedCreatePodSandBox event
/// and is looked at again at its next pass (a deleted pod frees a range).
async fn pod_userns(
    pod: &Pod,
    state: &mut PodState,
    env: &PodEnv,
) -> Result<Option<v1::UserNamespace>, ()> {
    if !crate::userns::wants_userns(pod) {
        return Ok(None);
    }
    let first = match env.userns.get(&state.uid) {
        Some(first) => Ok(first),
        None => {
            let (m, uid) = (env.userns.clone(), state.uid.clone());
            tokio::task::spawn_blocking(move || m.get_or_create(&uid))
                .await
                .unwrap_or_else(|e| {
                    Err(crate::userns::UsernsError::Persist {
                        path: PathBuf::new(),
                        source: std::io::Error::other(e.to_string()),
                    })
                })
        }
    };
    match first {
        Ok(first) => Ok(Some(crate::userns::to_cri(first))),
        Err(e) => {
            let msg = format!(
                "Failed to create pod sandbox: create user namespace: {}",
                kinglet_util::chain(&e)
            );
            not_created(pod, state, "FailedCreatePodSandBox", msg);
            Err(())
        }
    }
}

/// Write the pod's kubelet-managed hosts file (`crate::hosts`), when the pod has an address
/// (or uses the node's network, as the kubelet's `shouldMountHostsFile`).
async fn hosts_file(
    pod: &Pod,
    pod_ip: &str,
    hostname: &str,
    env: &PodEnv,
) -> Result<Option<PathBuf>, ReconcileError> {
    let host_net = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    if pod_ip.is_empty() && !host_net {
        return Ok(None);
    }
    let node_hosts = host_net.then(|| std::fs::read_to_string("/etc/hosts").unwrap_or_default());
    let text = hosts::content(pod, pod_ip, hostname, node_hosts.as_deref());
    let dir = env.volumes.run.clone();
    let path = tokio::task::spawn_blocking(move || hosts::write(&dir, &text))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r)
        .map_err(|source| ReconcileError::Io {
            step: "write the pod's /etc/hosts".into(),
            source,
        })?;
    Ok(Some(path))
}

/// Init containers in order, each to success; native sidecars (restartPolicy: Always) only
/// need to be running (and past their startup probe) before the next one starts. Then the app
/// containers. A pod that does not restart its containers is done once each app container
/// has exited for good: its sidecars then stop (last first) and stay stopped.
async fn run_containers(
    pass: &Pass<'_>,
    state: &mut PodState,
    env: &PodEnv,
) -> Result<(), ReconcileError> {
    let spec = pass.pod.spec.clone().unwrap_or_default();
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    if policy != "Always" && apps_done(&*env.rt, &spec.containers, &pass.existing, policy).await? {
        let sidecars: Vec<v1::Container> = pass
            .existing
            .iter()
            .filter(|cc| {
                cc.state == v1::ContainerState::ContainerRunning as i32
                    && stop::sidecar_rank(Some(pass.pod), cc).is_some()
            })
            .cloned()
            .collect();
        if !sidecars.is_empty() {
            tracing::info!(pod = %pass.fields.name, "app containers done; stopping the sidecars");
            let host = pass.fields.pod_ip;
            stop::stop_in_order(
                &*env.rt,
                &state.shared,
                &sidecars,
                Some(pass.pod),
                host,
                pass.grace,
            )
            .await
            .step(|| "stop the sidecars of a finished pod".into())?;
        }
        tracing::info!(pod = %pass.fields.name, "pod finished; releasing its sandbox");
        return terminal::release(&*env.rt, &pass.sandbox).await;
    }
    let init_policy = if policy == "Never" {
        "Never"
    } else {
        "OnFailure"
    };
    for c in spec.init_containers.iter().flatten() {
        let sidecar = c.restart_policy.as_deref() == Some("Always");
        let p = if sidecar { "Always" } else { init_policy };
        let progress = container::ensure(pass, state, env, c, p).await?;
        match (sidecar, progress) {
            // A sidecar with a startup probe holds the next container until it succeeds.
            (true, Progress::Running) if !sidecar_started(&pass.existing, c, state) => {
                return Ok(())
            }
            (true, Progress::Running) | (false, Progress::Exited(0)) => {}
            _ => return Ok(()),
        }
    }
    for c in &spec.containers {
        container::ensure(pass, state, env, c, policy).await?;
    }
    Ok(())
}

/// Whether sidecar `c`, running, has passed its startup probe (if it has one). A container
/// started in this very pass is not in `existing` yet: not started.
fn sidecar_started(existing: &[v1::Container], c: &Container, state: &PodState) -> bool {
    if c.startup_probe.is_none() {
        return true;
    }
    existing.iter().any(|x| {
        x.labels.get(LABEL_CONTAINER_NAME) == Some(&c.name)
            && x.state == v1::ContainerState::ContainerRunning as i32
            && state.shared.probe(&x.id).is_some_and(|p| p.started)
    })
}

/// Whether every app container has exited and will not be restarted by `policy` (Never or
/// OnFailure).
async fn apps_done(
    rt: &dyn PodRuntime,
    apps: &[Container],
    existing: &[v1::Container],
    policy: &str,
) -> Result<bool, ReconcileError> {
    if apps.is_empty() {
        return Ok(false);
    }
    for c in apps {
        let Some(last) = attempts(existing, &c.name).pop() else {
            return Ok(false);
        };
        if last.state != v1::ContainerState::ContainerExited as i32 {
            return Ok(false);
        }
        let st = status_of(rt, &last.id)
            .await
            .step(|| format!("status of container {}", c.name))?;
        if restarts(policy, st.exit_code) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Tear down every sandbox of a pod that is no longer applied (with the grace period kept in
/// its annotations and the spec last reconciled), and its volumes.
pub async fn remove(state: &mut PodState, env: &PodEnv) -> Result<(), ReconcileError> {
    let rt = &*env.rt;
    let sandboxes = sandboxes_of(rt, &state.uid)
        .await
        .step(|| "list the sandboxes of a deleted pod".into())?;
    for s in sandboxes {
        tracing::info!(pod = %state.uid, sandbox = %s.id, "removing the sandbox of a deleted pod");
        let grace = s
            .annotations
            .get(podspec::ANNOTATION_GRACE)
            .and_then(|g| g.parse().ok())
            .unwrap_or(30);
        stop::teardown(
            rt,
            &env.teardowns,
            &state.shared,
            &s.id,
            grace,
            state.last_spec.as_ref(),
        )
        .await
        .step(|| format!("remove sandbox {}", s.id))?;
    }
    volumes::remove(&env.volumes);
    // Its sandboxes are gone: the pod's user namespace IDs are free again.
    let (m, uid) = (env.userns.clone(), state.uid.clone());
    if m.get(&uid).is_some() {
        let _ = tokio::task::spawn_blocking(move || m.release(&uid)).await;
    }
    Ok(())
}

/// The pod's status as the kubelet reports it, from the runtime's records and this pod's
/// shared fields (`None`: no worker has seen the pod yet).
pub async fn pod_status(
    rt: &dyn PodRuntime,
    pod: &Pod,
    shared: Option<&PodShared>,
) -> k8s_openapi::api::core::v1::PodStatus {
    status::pod_status(rt, pod, shared.map(PodShared::snapshot).unwrap_or_default()).await
}
