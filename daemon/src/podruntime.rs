//! The runtime core as the mini-kubelet's [`PodRuntime`]: each call forwards to
//! [`Runtime`] in CRI terms, and [`CriError`]s become [`RuntimeError`]s here (the kubelet
//! never sees the CRI layer's error type). Also the daemon-side mapping of the kubelet's own
//! errors to CRI codes, and the kubelet's settings from the daemon's config.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kinglet_cri::CriError;
use kinglet_kubelet::backoff::BackoffPolicy;
use kinglet_kubelet::{KubeletConfig, KubeletError, PodRuntime, RuntimeError, RuntimeErrorKind};
use kinglet_proto::v1;

use crate::config::Config;
use kinglet_runtime::Runtime;

/// The runtime core, driven by the mini-kubelet.
pub struct CoreRuntime(pub Arc<Runtime>);

fn rt_err(e: CriError) -> RuntimeError {
    let kind = match &e {
        CriError::NotFound { .. } => RuntimeErrorKind::NotFound,
        CriError::DeadlineExceeded { .. } => RuntimeErrorKind::DeadlineExceeded,
        CriError::InvalidArgument { .. } => RuntimeErrorKind::InvalidArgument,
        _ => RuntimeErrorKind::Failed,
    };
    RuntimeError::new(kind, kinglet_cri::chain(&e))
}

#[async_trait::async_trait]
impl PodRuntime for CoreRuntime {
    async fn run_pod_sandbox(
        &self,
        req: v1::RunPodSandboxRequest,
    ) -> Result<v1::RunPodSandboxResponse, RuntimeError> {
        self.0.run_pod_sandbox(req).await.map_err(rt_err)
    }
    async fn stop_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        self.0.stop_pod_sandbox(id).await.map_err(rt_err)
    }
    async fn remove_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        self.0.remove_pod_sandbox(id).await.map_err(rt_err)
    }
    async fn pod_sandbox_status(
        &self,
        req: v1::PodSandboxStatusRequest,
    ) -> Result<v1::PodSandboxStatusResponse, RuntimeError> {
        self.0.pod_sandbox_status(req).await.map_err(rt_err)
    }
    async fn list_pod_sandbox(
        &self,
        req: v1::ListPodSandboxRequest,
    ) -> Result<v1::ListPodSandboxResponse, RuntimeError> {
        self.0.list_pod_sandbox(req).await.map_err(rt_err)
    }
    async fn create_container(
        &self,
        req: v1::CreateContainerRequest,
    ) -> Result<v1::CreateContainerResponse, RuntimeError> {
        self.0.create_container(req).await.map_err(rt_err)
    }
    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        self.0.start_container(id).await.map_err(rt_err)
    }
    async fn stop_container(&self, id: &str, timeout: i64) -> Result<(), RuntimeError> {
        self.0.stop_container(id, timeout).await.map_err(rt_err)
    }
    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        self.0.remove_container(id).await.map_err(rt_err)
    }
    async fn container_status(
        &self,
        req: v1::ContainerStatusRequest,
    ) -> Result<v1::ContainerStatusResponse, RuntimeError> {
        self.0.container_status(req).await.map_err(rt_err)
    }
    async fn list_containers(
        &self,
        req: v1::ListContainersRequest,
    ) -> Result<v1::ListContainersResponse, RuntimeError> {
        self.0.list_containers(req).await.map_err(rt_err)
    }
    async fn exec_sync(
        &self,
        req: v1::ExecSyncRequest,
    ) -> Result<v1::ExecSyncResponse, RuntimeError> {
        self.0.exec_sync(req).await.map_err(rt_err)
    }
    async fn image_status(
        &self,
        req: v1::ImageStatusRequest,
    ) -> Result<v1::ImageStatusResponse, RuntimeError> {
        self.0.image_status(req).await.map_err(rt_err)
    }
    async fn pull_image(
        &self,
        image: &str,
        pull_secrets: Vec<(String, Vec<u8>)>,
    ) -> Result<(), RuntimeError> {
        let failed = |msg| RuntimeError::new(RuntimeErrorKind::Failed, msg);
        let refs: Vec<(&str, &[u8])> = pull_secrets
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_slice()))
            .collect();
        let creds = kinglet_pull::auth::from_pull_secrets(&refs, image)
            .map_err(|e| failed(kinglet_cri::chain(&e)))?;
        self.0
            .puller
            .pull(image, creds)
            .await
            .map(|_| ())
            .map_err(|e| failed(kinglet_cri::chain(&*e)))
    }
    async fn container_exited(&self) {
        self.0.exits.notified().await
    }
    fn take_exited(&self) -> Vec<BTreeMap<String, String>> {
        std::mem::take(&mut *self.0.exited.lock().expect("exited lock"))
    }
}

/// The kubelet's own errors as CRI errors (for the objects service on the CRI socket).
pub fn cri_error(e: KubeletError) -> CriError {
    match e {
        KubeletError::Invalid { field, reason } => CriError::invalid(field, reason),
        KubeletError::NotFound { kind, id } => CriError::not_found(kind, id),
        KubeletError::Internal { context, source } => CriError::internal(context, source),
    }
}

/// The mini-kubelet's settings from the daemon's.
pub fn kubelet_config(c: &Config) -> KubeletConfig {
    KubeletConfig {
        after_teardowns: Some(crate::trim::malloc_trim),
        root: c.root.clone(),
        run_root: c.run_root.clone(),
        manifests: c.manifests.clone(),
        node_name: c.node_name(),
        backoff: BackoffPolicy {
            initial: Duration::from_millis(c.crash_loop_backoff_initial_ms),
            cap: Duration::from_millis(c.crash_loop_backoff_max_ms),
            ..BackoffPolicy::default()
        },
        allowed_unsafe_sysctls: c.allowed_unsafe_sysctls.clone(),
        services: c.service_cidr.parse().ok().map(|cidr| {
            kinglet_kubelet::services::ServicesConfig {
                cidr,
                nft: "nft".into(),
                table: service_table(c),
            }
        }),
        dns: cluster_dns(c),
        userns_ids: c.userns_ids().ok().flatten(),
        ingress: c.ingress.proxy_config(),
        keys: kinglet_kubelet::sealed::Keys {
            identity_file: c.age_identity_file.clone(),
            credentials_dir: std::env::var_os("CREDENTIALS_DIRECTORY")
                .map(std::path::PathBuf::from),
        },
    }
}

/// The Service proxy's table: on the built-in pod network, pod → ClusterIP traffic keeps its
/// source when bridged replies pass conntrack (`net.bridge.bridge-nf-call-iptables = 1`, as
/// kube-proxy requires); else, or with CNI, every ClusterIP packet is masqueraded.
fn service_table(c: &Config) -> kinglet_services::proxy::Table {
    let mut t = kinglet_services::proxy::Table::named(&c.service_table_name());
    if c.cni_conf_dir.is_none() {
        t.pod_cidr = c
            .pod_cidr
            .parse::<kinglet_netns::Ipv4Cidr>()
            .ok()
            .map(|cidr| (cidr.network(), cidr.prefix()));
        t.bridge_conntrack =
            std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables")
                .is_ok_and(|v| v.trim() == "1");
    }
    tracing::info!(pod_cidr = ?t.pod_cidr, bridge_conntrack = t.bridge_conntrack, "service proxy");
    t
}

/// The cluster DNS: on the built-in pod network's gateway address, port 53.
fn cluster_dns(c: &Config) -> Option<kinglet_kubelet::dns::ClusterDns> {
    if !c.cluster_dns || c.cni_conf_dir.is_some() {
        return None;
    }
    let cidr = c.pod_cidr.parse::<kinglet_netns::Ipv4Cidr>().ok()?;
    Some(kinglet_kubelet::dns::ClusterDns {
        listen: std::net::SocketAddr::new(cidr.gateway().into(), 53),
        domain: c.cluster_domain.clone(),
        upstreams: c.dns_upstreams.clone(),
    })
}
