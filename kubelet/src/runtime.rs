//! The narrow, CRI-shaped interface through which the mini-kubelet acts on containers: the
//! calls a kubelet makes to its container runtime (sandboxes, containers, exec, images), in
//! `kinglet_proto::v1` request and response types, plus the runtime's exit notifications.
//!
//! The daemon implements it over its runtime core (an adapter that maps the core's errors to
//! [`RuntimeError`]); unit tests implement it with an in-memory fake. Nothing here depends on
//! the daemon.

use std::collections::BTreeMap;

use kinglet_proto::v1;

/// What kind of failure a runtime call had, as far as the kubelet's decisions care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeErrorKind {
    /// The sandbox, container or image named in the call does not exist.
    NotFound,
    /// The call (an ExecSync) did not finish within its timeout.
    DeadlineExceeded,
    /// The request was refused as invalid.
    InvalidArgument,
    /// Any other failure of the runtime.
    Failed,
}

/// A failed runtime call: its kind, and the runtime's own account of it (the whole error
/// chain, rendered once by the adapter), which the kubelet reports verbatim in container
/// statuses and events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RuntimeError {
    pub kind: RuntimeErrorKind,
    pub message: String,
}

impl RuntimeError {
    pub fn new(kind: RuntimeErrorKind, message: impl Into<String>) -> Self {
        RuntimeError {
            kind,
            message: message.into(),
        }
    }
}

/// The runtime calls the mini-kubelet makes, in CRI terms.
#[async_trait::async_trait]
pub trait PodRuntime: Send + Sync + 'static {
    async fn run_pod_sandbox(
        &self,
        req: v1::RunPodSandboxRequest,
    ) -> Result<v1::RunPodSandboxResponse, RuntimeError>;
    async fn stop_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError>;
    async fn remove_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError>;
    async fn pod_sandbox_status(
        &self,
        req: v1::PodSandboxStatusRequest,
    ) -> Result<v1::PodSandboxStatusResponse, RuntimeError>;
    async fn list_pod_sandbox(
        &self,
        req: v1::ListPodSandboxRequest,
    ) -> Result<v1::ListPodSandboxResponse, RuntimeError>;
    async fn create_container(
        &self,
        req: v1::CreateContainerRequest,
    ) -> Result<v1::CreateContainerResponse, RuntimeError>;
    async fn start_container(&self, id: &str) -> Result<(), RuntimeError>;
    /// Stop signal, then SIGKILL after `timeout` seconds.
    async fn stop_container(&self, id: &str, timeout: i64) -> Result<(), RuntimeError>;
    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError>;
    async fn container_status(
        &self,
        req: v1::ContainerStatusRequest,
    ) -> Result<v1::ContainerStatusResponse, RuntimeError>;
    async fn list_containers(
        &self,
        req: v1::ListContainersRequest,
    ) -> Result<v1::ListContainersResponse, RuntimeError>;
    async fn exec_sync(
        &self,
        req: v1::ExecSyncRequest,
    ) -> Result<v1::ExecSyncResponse, RuntimeError>;
    async fn image_status(
        &self,
        req: v1::ImageStatusRequest,
    ) -> Result<v1::ImageStatusResponse, RuntimeError>;
    /// Pull `image` with the credentials of the pod's imagePullSecrets (each `(secret name,
    /// .dockerconfigjson bytes)`), besides the runtime's own credential sources.
    async fn pull_image(
        &self,
        image: &str,
        pull_secrets: Vec<(String, Vec<u8>)>,
    ) -> Result<(), RuntimeError>;
    /// Resolves when a container's exit has been recorded since the last call returned.
    async fn container_exited(&self);
    /// The labels of the containers whose exits were recorded since the last call.
    fn take_exited(&self) -> Vec<BTreeMap<String, String>>;
}
