//! The runtime core as the CRI server's backend: Version, Status and runtime config live here;
//! everything else forwards to [`kinglet_runtime::Runtime`].

use std::sync::Arc;

use kinglet_cri::{CriBackend, CriError};
use kinglet_proto::{admin, v1};

use crate::podruntime::cri_error;
use kinglet_kubelet::Supervisor;
use kinglet_runtime::Runtime;

/// Name and versions reported by Version.
pub const RUNTIME_NAME: &str = "kinglet";
pub const RUNTIME_VERSION: &str = env!("CARGO_PKG_VERSION");
pub const CRI_API_VERSION: &str = "v1";

/// The daemon's CRI backend: the runtime core, the supervisor for Kubernetes objects, and the
/// streaming server that Exec/Attach/PortForward URLs point to.
pub struct Backend(
    pub Arc<Runtime>,
    pub Arc<Supervisor>,
    pub kinglet_streaming::StreamServer,
);

impl Backend {
    fn stream_url(&self, req: kinglet_streaming::Request) -> Result<String, CriError> {
        self.2.url_for(req).map_err(|e| match e {
            kinglet_streaming::StreamingError::TooManyRequests { .. } => {
                CriError::ResourceExhausted {
                    what: e.to_string(),
                }
            }
            other => CriError::internal("streaming request", other),
        })
    }
}

#[tonic::async_trait]
impl CriBackend for Backend {
    async fn version(&self, _req: v1::VersionRequest) -> Result<v1::VersionResponse, CriError> {
        Ok(v1::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: RUNTIME_NAME.into(),
            runtime_version: RUNTIME_VERSION.into(),
            runtime_api_version: CRI_API_VERSION.into(),
        })
    }

    async fn status(&self, req: v1::StatusRequest) -> Result<v1::StatusResponse, CriError> {
        let cond = |t: &str, msg: &str| v1::RuntimeCondition {
            r#type: t.into(),
            status: true,
            reason: String::new(),
            message: msg.into(),
        };
        let network = self.0.network.clone();
        let net_ready = tokio::task::spawn_blocking(move || network.ready())
            .await
            .map_err(|e| CriError::internal("network status task", e))?;
        let network_cond = match net_ready {
            Ok(message) => cond("NetworkReady", &message),
            Err(message) => v1::RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: false,
                reason: "NetworkPluginNotReady".into(),
                message,
            },
        };
        let mut info = std::collections::HashMap::new();
        if req.verbose {
            let c = &self.0.config;
            info.insert(
                "config".to_owned(),
                serde_json::json!({
                    "root": c.root, "runRoot": c.run_root, "socket": c.socket,
                    "systemdCgroup": c.systemd_cgroup,
                    "bridge": c.bridge, "podCidr": c.pod_cidr, "nftTable": c.nft_table,
                    "networkMode": self.0.network.mode(), "cniConfDir": c.cni_conf_dir,
                })
                .to_string(),
            );
        }
        Ok(v1::StatusResponse {
            status: Some(v1::RuntimeStatus {
                conditions: vec![cond("RuntimeReady", ""), network_cond],
            }),
            info,
            // Exactly what works: one (default) handler with recursive read-only mounts and,
            // on kernels that can idmap what they need, pod user namespaces with idmapped
            // mounts (not with the host's network); SupplementalGroupsPolicy Strict and
            // ContainerStatus.user.
            runtime_handlers: vec![v1::RuntimeHandler {
                name: String::new(),
                features: Some(v1::RuntimeHandlerFeatures {
                    recursive_read_only_mounts: true,
                    user_namespaces: kinglet_runtime::userns::supported(),
                }),
            }],
            features: Some(v1::RuntimeFeatures {
                supplemental_groups_policy: true,
                user_namespaces_host_network: false,
            }),
        })
    }

    async fn runtime_config(&self) -> Result<v1::RuntimeConfigResponse, CriError> {
        let driver = if self.0.config.systemd_cgroup {
            v1::CgroupDriver::Systemd
        } else {
            v1::CgroupDriver::Cgroupfs
        };
        Ok(v1::RuntimeConfigResponse {
            linux: Some(v1::LinuxRuntimeConfiguration {
                cgroup_driver: driver as i32,
            }),
        })
    }

    async fn update_runtime_config(
        &self,
        req: v1::UpdateRuntimeConfigRequest,
    ) -> Result<(), CriError> {
        if let Some(cidr) = req
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
        {
            tracing::info!(pod_cidr = %cidr, "runtime config updated");
        }
        Ok(())
    }

    async fn run_pod_sandbox(
        &self,
        req: v1::RunPodSandboxRequest,
    ) -> Result<v1::RunPodSandboxResponse, CriError> {
        self.0.run_pod_sandbox(req).await
    }
    async fn stop_pod_sandbox(&self, id: &str) -> Result<(), CriError> {
        self.0.stop_pod_sandbox(id).await
    }
    async fn remove_pod_sandbox(&self, id: &str) -> Result<(), CriError> {
        self.0.remove_pod_sandbox(id).await
    }
    async fn pod_sandbox_status(
        &self,
        req: v1::PodSandboxStatusRequest,
    ) -> Result<v1::PodSandboxStatusResponse, CriError> {
        self.0.pod_sandbox_status(req).await
    }
    async fn list_pod_sandbox(
        &self,
        req: v1::ListPodSandboxRequest,
    ) -> Result<v1::ListPodSandboxResponse, CriError> {
        self.0.list_pod_sandbox(req).await
    }
    async fn create_container(
        &self,
        req: v1::CreateContainerRequest,
    ) -> Result<v1::CreateContainerResponse, CriError> {
        self.0.create_container(req).await
    }
    async fn start_container(&self, id: &str) -> Result<(), CriError> {
        self.0.start_container(id).await
    }
    async fn stop_container(&self, id: &str, timeout: i64) -> Result<(), CriError> {
        self.0.stop_container(id, timeout).await
    }
    async fn remove_container(&self, id: &str) -> Result<(), CriError> {
        self.0.remove_container(id).await
    }
    async fn list_containers(
        &self,
        req: v1::ListContainersRequest,
    ) -> Result<v1::ListContainersResponse, CriError> {
        self.0.list_containers(req).await
    }
    async fn container_status(
        &self,
        req: v1::ContainerStatusRequest,
    ) -> Result<v1::ContainerStatusResponse, CriError> {
        self.0.container_status(req).await
    }
    async fn reopen_container_log(&self, id: &str) -> Result<(), CriError> {
        self.0.reopen_container_log(id).await
    }
    async fn exec_sync(&self, req: v1::ExecSyncRequest) -> Result<v1::ExecSyncResponse, CriError> {
        self.0.exec_sync(req).await
    }
    async fn exec(&self, req: v1::ExecRequest) -> Result<v1::ExecResponse, CriError> {
        let req = self.0.exec_request(req).await?;
        Ok(v1::ExecResponse {
            url: self.stream_url(req)?,
        })
    }
    async fn attach(&self, req: v1::AttachRequest) -> Result<v1::AttachResponse, CriError> {
        let req = self.0.attach_request(req).await?;
        Ok(v1::AttachResponse {
            url: self.stream_url(req)?,
        })
    }
    async fn port_forward(
        &self,
        req: v1::PortForwardRequest,
    ) -> Result<v1::PortForwardResponse, CriError> {
        let req = self.0.port_forward_request(req).await?;
        Ok(v1::PortForwardResponse {
            url: self.stream_url(req)?,
        })
    }
    async fn container_stats(
        &self,
        req: v1::ContainerStatsRequest,
    ) -> Result<v1::ContainerStatsResponse, CriError> {
        self.0.container_stats(req).await
    }
    async fn list_container_stats(
        &self,
        req: v1::ListContainerStatsRequest,
    ) -> Result<v1::ListContainerStatsResponse, CriError> {
        self.0.list_container_stats(req).await
    }
    async fn pod_sandbox_stats(
        &self,
        req: v1::PodSandboxStatsRequest,
    ) -> Result<v1::PodSandboxStatsResponse, CriError> {
        self.0.pod_sandbox_stats(req).await
    }
    fn container_events(
        &self,
    ) -> Result<tokio::sync::broadcast::Receiver<v1::ContainerEventResponse>, CriError> {
        Ok(self.0.events.subscribe())
    }
    async fn update_container_resources(
        &self,
        req: v1::UpdateContainerResourcesRequest,
    ) -> Result<(), CriError> {
        self.0.update_container_resources(req).await
    }
    async fn list_metric_descriptors(&self) -> Result<v1::ListMetricDescriptorsResponse, CriError> {
        Ok(self.0.list_metric_descriptors())
    }
    async fn list_pod_sandbox_metrics(
        &self,
    ) -> Result<v1::ListPodSandboxMetricsResponse, CriError> {
        self.0.list_pod_sandbox_metrics().await
    }
    async fn list_pod_sandbox_stats(
        &self,
        req: v1::ListPodSandboxStatsRequest,
    ) -> Result<v1::ListPodSandboxStatsResponse, CriError> {
        self.0.list_pod_sandbox_stats(req).await
    }
    async fn list_images(
        &self,
        req: v1::ListImagesRequest,
    ) -> Result<v1::ListImagesResponse, CriError> {
        self.0.list_images(req).await
    }
    async fn image_status(
        &self,
        req: v1::ImageStatusRequest,
    ) -> Result<v1::ImageStatusResponse, CriError> {
        self.0.image_status(req).await
    }
    async fn pull_image(
        &self,
        req: v1::PullImageRequest,
    ) -> Result<v1::PullImageResponse, CriError> {
        self.0.pull_image(req).await
    }
    async fn remove_image(&self, req: v1::RemoveImageRequest) -> Result<(), CriError> {
        self.0.remove_image(req).await
    }
    async fn image_fs_info(&self) -> Result<v1::ImageFsInfoResponse, CriError> {
        self.0.image_fs_info().await
    }
    async fn pull_progress(
        &self,
        req: admin::PullProgressRequest,
    ) -> Result<admin::PullProgressResponse, CriError> {
        use std::sync::atomic::Ordering::Relaxed;
        Ok(match self.0.puller.progress(&req.image) {
            Some(p) => admin::PullProgressResponse {
                running: true,
                layers_total: p.layers_total.load(Relaxed),
                layers_done: p.layers_done.load(Relaxed),
                bytes_total: p.bytes_total.load(Relaxed),
                bytes_done: p.bytes_done.load(Relaxed),
            },
            None => admin::PullProgressResponse::default(),
        })
    }
    async fn import_image(
        &self,
        req: admin::ImportImageRequest,
    ) -> Result<admin::ImportImageResponse, CriError> {
        self.0.import_image(req).await
    }
    async fn apply(&self, req: admin::ApplyRequest) -> Result<admin::ApplyResponse, CriError> {
        self.1.apply(req).await.map_err(cri_error)
    }
    async fn delete(&self, req: admin::DeleteRequest) -> Result<admin::DeleteResponse, CriError> {
        self.1.delete(req).await.map_err(cri_error)
    }
    async fn get(&self, req: admin::GetRequest) -> Result<admin::GetResponse, CriError> {
        self.1.get(req).await.map_err(cri_error)
    }
    async fn watch(&self, req: admin::GetRequest) -> Result<kinglet_cri::WatchEvents, CriError> {
        crate::watch_api::watch(self.1.clone(), self.0.events.subscribe(), req).await
    }
}
