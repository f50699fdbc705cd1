//! An in-memory [`PodRuntime`] for unit tests: sandboxes and containers as records, images as
//! a set, scripted exec results and pull failures, a log of every call that changes
//! something, and container times on tokio's (paused) clock. Containers run until a test
//! makes them exit ([`Fake::exit`]) or are scripted to exit as soon as they start
//! ([`Fake::crash_on_start`]); a stop makes a running container exit with 137.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use kinglet_proto::v1;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::podspec::LABEL_CONTAINER_NAME;
use crate::runtime::{PodRuntime, RuntimeError, RuntimeErrorKind};

/// A scripted exec result: exit code, output, and how long the command takes.
#[derive(Debug, Clone)]
pub struct ExecScript {
    pub exit_code: i32,
    pub output: String,
    pub takes: Duration,
}

#[derive(Default)]
struct State {
    next_id: u64,
    sandboxes: BTreeMap<String, v1::PodSandbox>,
    containers: BTreeMap<String, v1::ContainerStatus>,
    images: HashSet<String>,
    /// Image → the error its pulls fail with.
    pull_errors: HashMap<String, String>,
    /// Command (joined by spaces) → result; unlisted commands succeed at once.
    exec: HashMap<String, ExecScript>,
    /// Container name → exit code it exits with as soon as it starts.
    crash_on_start: HashMap<String, i32>,
    calls: Vec<String>,
    /// The error every RunPodSandbox fails with (a FailedPrecondition of the runtime).
    sandbox_error: Option<String>,
    /// The user namespace options of each sandbox and container asked for, in order
    /// (`sandbox` or the container's name).
    userns: Vec<(String, Option<v1::UserNamespace>)>,
    /// How long StartContainer takes to return after the container is running (a real runtime
    /// reports the container running before its reply arrives).
    start_takes: Duration,
}

/// The user namespace options in a sandbox's or container's namespace options.
fn userns_of(ns: Option<&v1::NamespaceOption>) -> Option<v1::UserNamespace> {
    ns.and_then(|n| n.userns_options.clone())
}

/// See the module docs.
pub struct Fake {
    state: Mutex<State>,
    exits: Notify,
    epoch: Instant,
}

impl Default for Fake {
    fn default() -> Self {
        Fake {
            state: Mutex::default(),
            exits: Notify::new(),
            epoch: Instant::now(),
        }
    }
}

fn not_found(what: &str) -> RuntimeError {
    RuntimeError::new(RuntimeErrorKind::NotFound, format!("{what} not found"))
}

impl Fake {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Nanoseconds on the test clock (never 0: 0 means "unset" in CRI).
    fn now(&self) -> i64 {
        1_000_000_000 + Instant::now().duration_since(self.epoch).as_nanos() as i64
    }

    pub fn add_image(&self, image: &str) {
        self.lock().images.insert(image.to_owned());
    }

    pub fn fail_pulls(&self, image: &str, error: &str) {
        self.lock()
            .pull_errors
            .insert(image.to_owned(), error.to_owned());
    }

    pub fn heal_pulls(&self, image: &str) {
        self.lock().pull_errors.remove(image);
    }

    pub fn script_exec(&self, cmd: &str, exit_code: i32, output: &str, takes: Duration) {
        let s = ExecScript {
            exit_code,
            output: output.to_owned(),
            takes,
        };
        self.lock().exec.insert(cmd.to_owned(), s);
    }

    /// Container `id` is running from now: its crash-on-start exit code, if any, and how long
    /// its StartContainer takes.
    fn mark_started(&self, id: &str) -> Result<(Option<i32>, Duration), RuntimeError> {
        let now = self.now();
        let mut s = self.lock();
        let crash = {
            let c = s.containers.get(id).ok_or_else(|| not_found("container"))?;
            let name = c
                .labels
                .get(LABEL_CONTAINER_NAME)
                .cloned()
                .unwrap_or_default();
            s.crash_on_start.get(&name).copied()
        };
        let c = s
            .containers
            .get_mut(id)
            .ok_or_else(|| not_found("container"))?;
        c.state = v1::ContainerState::ContainerRunning as i32;
        c.started_at = now;
        let label = Fake::label(c);
        s.calls.push(format!("start {label}"));
        Ok((crash, s.start_takes))
    }

    /// Every StartContainer returns `takes` after its container is running.
    pub fn slow_starts(&self, takes: Duration) {
        self.lock().start_takes = takes;
    }

    pub fn crash_on_start(&self, container: &str, exit_code: i32) {
        self.lock()
            .crash_on_start
            .insert(container.to_owned(), exit_code);
    }

    pub fn stop_crashing(&self, container: &str) {
        self.lock().crash_on_start.remove(container);
    }

    /// The calls that changed something, e.g. `start app#0`, `stop app#1 30`, `pull img`.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// How many calls start with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.starts_with(prefix))
            .count()
    }

    /// The runtime records of container `name`, oldest attempt first.
    pub fn attempts(&self, name: &str) -> Vec<v1::ContainerStatus> {
        let mut v: Vec<_> = self
            .lock()
            .containers
            .values()
            .filter(|c| c.labels.get(LABEL_CONTAINER_NAME).map(String::as_str) == Some(name))
            .cloned()
            .collect();
        v.sort_by_key(|c| c.metadata.as_ref().map(|m| m.attempt));
        v
    }

    /// Make every RunPodSandbox fail with `error` (None: succeed again).
    pub fn fail_sandboxes(&self, error: Option<&str>) {
        self.lock().sandbox_error = error.map(str::to_owned);
    }

    /// The user namespace options sandboxes and containers were made with, in order.
    pub fn userns_requests(&self) -> Vec<(String, Option<v1::UserNamespace>)> {
        self.lock().userns.clone()
    }

    pub fn sandbox_count(&self) -> usize {
        self.lock().sandboxes.len()
    }

    /// Make the newest attempt of container `name` exit now with `code`.
    pub fn exit(&self, name: &str, code: i32) {
        let id = self.attempts(name).last().map(|c| c.id.clone());
        if let Some(id) = id {
            self.finish(&id, code);
        }
    }

    fn finish(&self, id: &str, code: i32) {
        let now = self.now();
        let mut s = self.lock();
        if let Some(c) = s.containers.get_mut(id) {
            if c.state == v1::ContainerState::ContainerRunning as i32 {
                c.state = v1::ContainerState::ContainerExited as i32;
                c.exit_code = code;
                c.finished_at = now;
            }
        }
        drop(s);
        self.exits.notify_one();
    }

    fn label(c: &v1::ContainerStatus) -> String {
        let name = c
            .labels
            .get(LABEL_CONTAINER_NAME)
            .cloned()
            .unwrap_or_default();
        let attempt = c.metadata.as_ref().map(|m| m.attempt).unwrap_or(0);
        format!("{name}#{attempt}")
    }

    fn container(&self, id: &str) -> Result<v1::ContainerStatus, RuntimeError> {
        let s = self.lock();
        s.containers
            .get(id)
            .cloned()
            .ok_or_else(|| not_found(&format!("container {id}")))
    }
}

#[async_trait::async_trait]
impl PodRuntime for Fake {
    async fn run_pod_sandbox(
        &self,
        req: v1::RunPodSandboxRequest,
    ) -> Result<v1::RunPodSandboxResponse, RuntimeError> {
        let cfg = req.config.unwrap_or_default();
        let created_at = self.now();
        let mut s = self.lock();
        if let Some(e) = &s.sandbox_error {
            return Err(RuntimeError::new(RuntimeErrorKind::Failed, e.clone()));
        }
        s.next_id += 1;
        let id = format!("sandbox{:08}", s.next_id);
        s.calls.push("run sandbox".into());
        let ns = cfg.linux.as_ref().and_then(|l| l.security_context.as_ref());
        let u = userns_of(ns.and_then(|c| c.namespace_options.as_ref()));
        s.userns.push(("sandbox".into(), u));
        let sb = v1::PodSandbox {
            id: id.clone(),
            metadata: cfg.metadata,
            state: v1::PodSandboxState::SandboxReady as i32,
            created_at,
            labels: cfg.labels,
            annotations: cfg.annotations,
            ..Default::default()
        };
        s.sandboxes.insert(id.clone(), sb);
        Ok(v1::RunPodSandboxResponse { pod_sandbox_id: id })
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        let mut s = self.lock();
        s.calls.push("stop sandbox".into());
        let sb = s
            .sandboxes
            .get_mut(id)
            .ok_or_else(|| not_found(&format!("sandbox {id}")))?;
        sb.state = v1::PodSandboxState::SandboxNotready as i32;
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        let mut s = self.lock();
        s.calls.push("remove sandbox".into());
        s.sandboxes.remove(id);
        s.containers
            .retain(|_, c| c.labels.get("sandbox").map(String::as_str) != Some(id));
        Ok(())
    }

    async fn pod_sandbox_status(
        &self,
        req: v1::PodSandboxStatusRequest,
    ) -> Result<v1::PodSandboxStatusResponse, RuntimeError> {
        let s = self.lock();
        let sb = s
            .sandboxes
            .get(&req.pod_sandbox_id)
            .ok_or_else(|| not_found("sandbox"))?;
        Ok(v1::PodSandboxStatusResponse {
            status: Some(v1::PodSandboxStatus {
                id: sb.id.clone(),
                state: sb.state,
                created_at: sb.created_at,
                network: Some(v1::PodSandboxNetworkStatus {
                    ip: "10.85.0.9".into(),
                    ..Default::default()
                }),
                labels: sb.labels.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    async fn list_pod_sandbox(
        &self,
        req: v1::ListPodSandboxRequest,
    ) -> Result<v1::ListPodSandboxResponse, RuntimeError> {
        let sel = req.filter.map(|f| f.label_selector).unwrap_or_default();
        let s = self.lock();
        let items = s
            .sandboxes
            .values()
            .filter(|sb| sel.iter().all(|(k, v)| sb.labels.get(k) == Some(v)))
            .cloned()
            .collect();
        Ok(v1::ListPodSandboxResponse { items })
    }

    async fn create_container(
        &self,
        req: v1::CreateContainerRequest,
    ) -> Result<v1::CreateContainerResponse, RuntimeError> {
        let cfg = req.config.unwrap_or_default();
        let created_at = self.now();
        let mut s = self.lock();
        s.next_id += 1;
        let id = format!("container{:08}", s.next_id);
        let mut labels = cfg.labels;
        labels.insert("sandbox".into(), req.pod_sandbox_id.clone());
        let c = v1::ContainerStatus {
            id: id.clone(),
            metadata: cfg.metadata,
            state: v1::ContainerState::ContainerCreated as i32,
            created_at,
            image: cfg.image,
            labels,
            ..Default::default()
        };
        s.calls.push(format!("create {}", Fake::label(&c)));
        let ns = cfg.linux.as_ref().and_then(|l| l.security_context.as_ref());
        let name = c
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        s.userns.push((
            name,
            userns_of(ns.and_then(|c| c.namespace_options.as_ref())),
        ));
        s.containers.insert(id.clone(), c);
        Ok(v1::CreateContainerResponse { container_id: id })
    }

    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        let (crash, takes) = self.mark_started(id)?;
        if !takes.is_zero() {
            tokio::time::sleep(takes).await;
        }
        if let Some(code) = crash {
            self.finish(id, code);
        }
        Ok(())
    }

    async fn stop_container(&self, id: &str, timeout: i64) -> Result<(), RuntimeError> {
        let c = self.container(id)?;
        self.lock()
            .calls
            .push(format!("stop {} {timeout}", Fake::label(&c)));
        self.finish(id, 137);
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        let mut s = self.lock();
        if let Some(c) = s.containers.remove(id) {
            let label = Fake::label(&c);
            s.calls.push(format!("remove {label}"));
        }
        Ok(())
    }

    async fn container_status(
        &self,
        req: v1::ContainerStatusRequest,
    ) -> Result<v1::ContainerStatusResponse, RuntimeError> {
        Ok(v1::ContainerStatusResponse {
            status: Some(self.container(&req.container_id)?),
            ..Default::default()
        })
    }

    async fn list_containers(
        &self,
        req: v1::ListContainersRequest,
    ) -> Result<v1::ListContainersResponse, RuntimeError> {
        let sandbox = req.filter.map(|f| f.pod_sandbox_id).unwrap_or_default();
        let s = self.lock();
        let containers = s
            .containers
            .values()
            .filter(|c| sandbox.is_empty() || c.labels.get("sandbox") == Some(&sandbox))
            .map(|c| v1::Container {
                id: c.id.clone(),
                pod_sandbox_id: c.labels.get("sandbox").cloned().unwrap_or_default(),
                metadata: c.metadata.clone(),
                state: c.state,
                created_at: c.created_at,
                labels: c.labels.clone(),
                ..Default::default()
            })
            .collect();
        Ok(v1::ListContainersResponse { containers })
    }

    async fn exec_sync(
        &self,
        req: v1::ExecSyncRequest,
    ) -> Result<v1::ExecSyncResponse, RuntimeError> {
        let c = self.container(&req.container_id)?;
        let cmd = req.cmd.join(" ");
        let script = {
            let mut s = self.lock();
            s.calls.push(format!("exec {} {cmd}", Fake::label(&c)));
            s.exec.get(&cmd).cloned()
        };
        let Some(script) = script else {
            return Ok(v1::ExecSyncResponse::default());
        };
        let limit = Duration::from_secs(req.timeout.max(1) as u64);
        if script.takes > limit {
            tokio::time::sleep(limit).await;
            return Err(RuntimeError::new(
                RuntimeErrorKind::DeadlineExceeded,
                format!("exec {cmd:?} did not finish within {} s", req.timeout),
            ));
        }
        tokio::time::sleep(script.takes).await;
        Ok(v1::ExecSyncResponse {
            stdout: script.output.into_bytes(),
            stderr: Vec::new(),
            exit_code: script.exit_code,
        })
    }

    async fn image_status(
        &self,
        req: v1::ImageStatusRequest,
    ) -> Result<v1::ImageStatusResponse, RuntimeError> {
        let name = req.image.map(|i| i.image).unwrap_or_default();
        let present = self.lock().images.contains(&name);
        Ok(v1::ImageStatusResponse {
            image: present.then(|| v1::Image {
                id: format!("sha256:{name}"),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    async fn pull_image(
        &self,
        image: &str,
        _pull_secrets: Vec<(String, Vec<u8>)>,
    ) -> Result<(), RuntimeError> {
        let mut s = self.lock();
        s.calls.push(format!("pull {image}"));
        if let Some(e) = s.pull_errors.get(image) {
            return Err(RuntimeError::new(RuntimeErrorKind::Failed, e.clone()));
        }
        s.images.insert(image.to_owned());
        Ok(())
    }

    async fn container_exited(&self) {
        self.exits.notified().await
    }

    fn take_exited(&self) -> Vec<BTreeMap<String, String>> {
        Vec::new()
    }
}
