//! A thin tonic adapter serving the CRI `RuntimeService` and `ImageService` (and Kinglet's
//! `Admin` service) over a runtime core.
//!
//! Each RPC: open a tracing span named after it, hand the request to the backend, map a
//! [`CriError`] to a `tonic::Status` (in one place, `error.rs`), and log a failure once, here.
//! No lifecycle logic lives in this crate; RPCs the backend does not implement answer
//! `Unimplemented` through the generated default stubs.

mod error;

use std::sync::Arc;

use kinglet_proto::{admin, v1};
use tonic::{Request, Response, Status};

pub use error::{chain, CriError};

/// The runtime operations the CRI server needs, in CRI message terms.
#[tonic::async_trait]
pub trait CriBackend: Send + Sync + 'static {
    async fn version(&self, req: v1::VersionRequest) -> Result<v1::VersionResponse, CriError>;
    async fn status(&self, req: v1::StatusRequest) -> Result<v1::StatusResponse, CriError>;
    async fn runtime_config(&self) -> Result<v1::RuntimeConfigResponse, CriError>;
    async fn update_runtime_config(
        &self,
        req: v1::UpdateRuntimeConfigRequest,
    ) -> Result<(), CriError>;
    async fn run_pod_sandbox(
        &self,
        req: v1::RunPodSandboxRequest,
    ) -> Result<v1::RunPodSandboxResponse, CriError>;
    async fn stop_pod_sandbox(&self, id: &str) -> Result<(), CriError>;
    async fn remove_pod_sandbox(&self, id: &str) -> Result<(), CriError>;
    async fn pod_sandbox_status(
        &self,
        req: v1::PodSandboxStatusRequest,
    ) -> Result<v1::PodSandboxStatusResponse, CriError>;
    async fn list_pod_sandbox(
        &self,
        req: v1::ListPodSandboxRequest,
    ) -> Result<v1::ListPodSandboxResponse, CriError>;
    async fn create_container(
        &self,
        req: v1::CreateContainerRequest,
    ) -> Result<v1::CreateContainerResponse, CriError>;
    async fn start_container(&self, id: &str) -> Result<(), CriError>;
    async fn stop_container(&self, id: &str, timeout: i64) -> Result<(), CriError>;
    async fn remove_container(&self, id: &str) -> Result<(), CriError>;
    async fn list_containers(
        &self,
        req: v1::ListContainersRequest,
    ) -> Result<v1::ListContainersResponse, CriError>;
    async fn container_status(
        &self,
        req: v1::ContainerStatusRequest,
    ) -> Result<v1::ContainerStatusResponse, CriError>;
    async fn reopen_container_log(&self, id: &str) -> Result<(), CriError>;
    async fn exec_sync(&self, req: v1::ExecSyncRequest) -> Result<v1::ExecSyncResponse, CriError>;
    async fn list_images(
        &self,
        req: v1::ListImagesRequest,
    ) -> Result<v1::ListImagesResponse, CriError>;
    async fn image_status(
        &self,
        req: v1::ImageStatusRequest,
    ) -> Result<v1::ImageStatusResponse, CriError>;
    async fn pull_image(
        &self,
        req: v1::PullImageRequest,
    ) -> Result<v1::PullImageResponse, CriError>;
    async fn remove_image(&self, req: v1::RemoveImageRequest) -> Result<(), CriError>;
    async fn image_fs_info(&self) -> Result<v1::ImageFsInfoResponse, CriError>;
    async fn import_image(
        &self,
        req: admin::ImportImageRequest,
    ) -> Result<admin::ImportImageResponse, CriError>;

    /// Resource usage (the stats RPCs); a backend without them answers Unimplemented.
    async fn container_stats(
        &self,
        _req: v1::ContainerStatsRequest,
    ) -> Result<v1::ContainerStatsResponse, CriError> {
        Err(CriError::Unimplemented {
            rpc: "ContainerStats",
        })
    }
    async fn list_container_stats(
        &self,
        _req: v1::ListContainerStatsRequest,
    ) -> Result<v1::ListContainerStatsResponse, CriError> {
        Err(CriError::Unimplemented {
            rpc: "ListContainerStats",
        })
    }
    async fn pod_sandbox_stats(
        &self,
        _req: v1::PodSandboxStatsRequest,
    ) -> Result<v1::PodSandboxStatsResponse, CriError> {
        Err(CriError::Unimplemented {
            rpc: "PodSandboxStats",
        })
    }
    async fn list_pod_sandbox_stats(
        &self,
        _req: v1::ListPodSandboxStatsRequest,
    ) -> Result<v1::ListPodSandboxStatsResponse, CriError> {
        Err(CriError::Unimplemented {
            rpc: "ListPodSandboxStats",
        })
    }

    /// Container lifecycle events (the kubelet's evented PLEG): a receiver of every event from
    /// now on; a backend without them answers Unimplemented.
    fn container_events(
        &self,
    ) -> Result<tokio::sync::broadcast::Receiver<v1::ContainerEventResponse>, CriError> {
        Err(CriError::Unimplemented {
            rpc: "GetContainerEvents",
        })
    }

    /// In-place resource updates; a backend without them answers Unimplemented.
    async fn update_container_resources(
        &self,
        _req: v1::UpdateContainerResourcesRequest,
    ) -> Result<(), CriError> {
        Err(CriError::Unimplemented {
            rpc: "UpdateContainerResources",
        })
    }

    /// cAdvisor-style metrics; a backend without them answers Unimplemented.
    async fn list_metric_descriptors(&self) -> Result<v1::ListMetricDescriptorsResponse, CriError> {
        Err(CriError::Unimplemented {
            rpc: "ListMetricDescriptors",
        })
    }
    async fn list_pod_sandbox_metrics(
        &self,
    ) -> Result<v1::ListPodSandboxMetricsResponse, CriError> {
        Err(CriError::Unimplemented {
            rpc: "ListPodSandboxMetrics",
        })
    }

    /// Streaming: the URL of the streaming server to connect to; a backend without it answers
    /// Unimplemented.
    async fn exec(&self, _req: v1::ExecRequest) -> Result<v1::ExecResponse, CriError> {
        Err(CriError::Unimplemented { rpc: "Exec" })
    }
    async fn attach(&self, _req: v1::AttachRequest) -> Result<v1::AttachResponse, CriError> {
        Err(CriError::Unimplemented { rpc: "Attach" })
    }
    async fn port_forward(
        &self,
        _req: v1::PortForwardRequest,
    ) -> Result<v1::PortForwardResponse, CriError> {
        Err(CriError::Unimplemented { rpc: "PortForward" })
    }
    /// Kubernetes objects (the mini-kubelet side); a backend without them answers Unimplemented.
    async fn apply(&self, _req: admin::ApplyRequest) -> Result<admin::ApplyResponse, CriError> {
        Err(CriError::Unimplemented { rpc: "Apply" })
    }
    async fn delete(&self, _req: admin::DeleteRequest) -> Result<admin::DeleteResponse, CriError> {
        Err(CriError::Unimplemented { rpc: "Delete" })
    }
    async fn get(&self, _req: admin::GetRequest) -> Result<admin::GetResponse, CriError> {
        Err(CriError::Unimplemented { rpc: "Get" })
    }
    /// The changes of the objects `req` selects, ending when the receiver is dropped.
    async fn watch(&self, _req: admin::GetRequest) -> Result<WatchEvents, CriError> {
        Err(CriError::Unimplemented { rpc: "Watch" })
    }
    async fn pull_progress(
        &self,
        req: admin::PullProgressRequest,
    ) -> Result<admin::PullProgressResponse, CriError>;
}

/// A watch's events (`Objects/Watch`); an error ends the stream.
pub type WatchEvents = tokio::sync::mpsc::Receiver<Result<admin::WatchEvent, CriError>>;

/// Serves the CRI and admin services over one backend.
pub struct CriServer<B> {
    backend: Arc<B>,
}

impl<B> Clone for CriServer<B> {
    fn clone(&self) -> Self {
        CriServer {
            backend: self.backend.clone(),
        }
    }
}

impl<B: CriBackend> CriServer<B> {
    pub fn new(backend: Arc<B>) -> Self {
        CriServer { backend }
    }

    pub fn runtime_service(&self) -> v1::runtime_service_server::RuntimeServiceServer<Self> {
        v1::runtime_service_server::RuntimeServiceServer::new(self.clone())
    }

    pub fn image_service(&self) -> v1::image_service_server::ImageServiceServer<Self> {
        v1::image_service_server::ImageServiceServer::new(self.clone())
    }

    pub fn admin_service(&self) -> admin::admin_server::AdminServer<Self> {
        admin::admin_server::AdminServer::new(self.clone())
    }

    pub fn objects_service(&self) -> admin::objects_server::ObjectsServer<Self> {
        admin::objects_server::ObjectsServer::new(self.clone())
    }
}

/// Log a failed call once, at this boundary, and turn it into a status.
fn fail(rpc: &'static str, err: CriError) -> Status {
    match &err {
        CriError::Internal { .. } | CriError::DeadlineExceeded { .. } => {
            tracing::warn!(rpc, err = %chain(&err), "CRI call failed")
        }
        _ => tracing::debug!(rpc, err = %chain(&err), "CRI call refused"),
    }
    err.into()
}

/// Run one RPC inside a span named after it.
macro_rules! rpc {
    ($name:literal, $call:expr) => {{
        use tracing::Instrument;
        async { $call.await.map(Response::new).map_err(|e| fail($name, e)) }
            .instrument(tracing::debug_span!("cri", rpc = $name))
            .await
    }};
}

#[tonic::async_trait]
impl<B: CriBackend> v1::runtime_service_server::RuntimeService for CriServer<B> {
    async fn version(
        &self,
        r: Request<v1::VersionRequest>,
    ) -> Result<Response<v1::VersionResponse>, Status> {
        rpc!("Version", self.backend.version(r.into_inner()))
    }
    async fn status(
        &self,
        r: Request<v1::StatusRequest>,
    ) -> Result<Response<v1::StatusResponse>, Status> {
        rpc!("Status", self.backend.status(r.into_inner()))
    }
    async fn runtime_config(
        &self,
        _r: Request<v1::RuntimeConfigRequest>,
    ) -> Result<Response<v1::RuntimeConfigResponse>, Status> {
        rpc!("RuntimeConfig", self.backend.runtime_config())
    }
    async fn update_runtime_config(
        &self,
        r: Request<v1::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<v1::UpdateRuntimeConfigResponse>, Status> {
        rpc!("UpdateRuntimeConfig", async {
            self.backend.update_runtime_config(r.into_inner()).await?;
            Ok(v1::UpdateRuntimeConfigResponse {})
        })
    }
    async fn run_pod_sandbox(
        &self,
        r: Request<v1::RunPodSandboxRequest>,
    ) -> Result<Response<v1::RunPodSandboxResponse>, Status> {
        rpc!(
            "RunPodSandbox",
            self.backend.run_pod_sandbox(r.into_inner())
        )
    }
    async fn stop_pod_sandbox(
        &self,
        r: Request<v1::StopPodSandboxRequest>,
    ) -> Result<Response<v1::StopPodSandboxResponse>, Status> {
        rpc!("StopPodSandbox", async {
            self.backend
                .stop_pod_sandbox(&r.get_ref().pod_sandbox_id)
                .await?;
            Ok(v1::StopPodSandboxResponse {})
        })
    }
    async fn remove_pod_sandbox(
        &self,
        r: Request<v1::RemovePodSandboxRequest>,
    ) -> Result<Response<v1::RemovePodSandboxResponse>, Status> {
        rpc!("RemovePodSandbox", async {
            self.backend
                .remove_pod_sandbox(&r.get_ref().pod_sandbox_id)
                .await?;
            Ok(v1::RemovePodSandboxResponse {})
        })
    }
    async fn pod_sandbox_status(
        &self,
        r: Request<v1::PodSandboxStatusRequest>,
    ) -> Result<Response<v1::PodSandboxStatusResponse>, Status> {
        rpc!(
            "PodSandboxStatus",
            self.backend.pod_sandbox_status(r.into_inner())
        )
    }
    async fn list_pod_sandbox(
        &self,
        r: Request<v1::ListPodSandboxRequest>,
    ) -> Result<Response<v1::ListPodSandboxResponse>, Status> {
        rpc!(
            "ListPodSandbox",
            self.backend.list_pod_sandbox(r.into_inner())
        )
    }
    async fn create_container(
        &self,
        r: Request<v1::CreateContainerRequest>,
    ) -> Result<Response<v1::CreateContainerResponse>, Status> {
        rpc!(
            "CreateContainer",
            self.backend.create_container(r.into_inner())
        )
    }
    async fn start_container(
        &self,
        r: Request<v1::StartContainerRequest>,
    ) -> Result<Response<v1::StartContainerResponse>, Status> {
        rpc!("StartContainer", async {
            self.backend
                .start_container(&r.get_ref().container_id)
                .await?;
            Ok(v1::StartContainerResponse {})
        })
    }
    async fn stop_container(
        &self,
        r: Request<v1::StopContainerRequest>,
    ) -> Result<Response<v1::StopContainerResponse>, Status> {
        rpc!("StopContainer", async {
            let r = r.get_ref();
            self.backend
                .stop_container(&r.container_id, r.timeout)
                .await?;
            Ok(v1::StopContainerResponse {})
        })
    }
    async fn remove_container(
        &self,
        r: Request<v1::RemoveContainerRequest>,
    ) -> Result<Response<v1::RemoveContainerResponse>, Status> {
        rpc!("RemoveContainer", async {
            self.backend
                .remove_container(&r.get_ref().container_id)
                .await?;
            Ok(v1::RemoveContainerResponse {})
        })
    }
    async fn list_containers(
        &self,
        r: Request<v1::ListContainersRequest>,
    ) -> Result<Response<v1::ListContainersResponse>, Status> {
        rpc!(
            "ListContainers",
            self.backend.list_containers(r.into_inner())
        )
    }
    async fn container_status(
        &self,
        r: Request<v1::ContainerStatusRequest>,
    ) -> Result<Response<v1::ContainerStatusResponse>, Status> {
        rpc!(
            "ContainerStatus",
            self.backend.container_status(r.into_inner())
        )
    }
    async fn reopen_container_log(
        &self,
        r: Request<v1::ReopenContainerLogRequest>,
    ) -> Result<Response<v1::ReopenContainerLogResponse>, Status> {
        rpc!("ReopenContainerLog", async {
            self.backend
                .reopen_container_log(&r.get_ref().container_id)
                .await?;
            Ok(v1::ReopenContainerLogResponse {})
        })
    }
    async fn exec_sync(
        &self,
        r: Request<v1::ExecSyncRequest>,
    ) -> Result<Response<v1::ExecSyncResponse>, Status> {
        rpc!("ExecSync", self.backend.exec_sync(r.into_inner()))
    }
    async fn exec(
        &self,
        r: Request<v1::ExecRequest>,
    ) -> Result<Response<v1::ExecResponse>, Status> {
        rpc!("Exec", self.backend.exec(r.into_inner()))
    }
    async fn attach(
        &self,
        r: Request<v1::AttachRequest>,
    ) -> Result<Response<v1::AttachResponse>, Status> {
        rpc!("Attach", self.backend.attach(r.into_inner()))
    }
    async fn port_forward(
        &self,
        r: Request<v1::PortForwardRequest>,
    ) -> Result<Response<v1::PortForwardResponse>, Status> {
        rpc!("PortForward", self.backend.port_forward(r.into_inner()))
    }
    async fn container_stats(
        &self,
        r: Request<v1::ContainerStatsRequest>,
    ) -> Result<Response<v1::ContainerStatsResponse>, Status> {
        rpc!(
            "ContainerStats",
            self.backend.container_stats(r.into_inner())
        )
    }
    async fn list_container_stats(
        &self,
        r: Request<v1::ListContainerStatsRequest>,
    ) -> Result<Response<v1::ListContainerStatsResponse>, Status> {
        rpc!(
            "ListContainerStats",
            self.backend.list_container_stats(r.into_inner())
        )
    }
    async fn pod_sandbox_stats(
        &self,
        r: Request<v1::PodSandboxStatsRequest>,
    ) -> Result<Response<v1::PodSandboxStatsResponse>, Status> {
        rpc!(
            "PodSandboxStats",
            self.backend.pod_sandbox_stats(r.into_inner())
        )
    }
    async fn list_pod_sandbox_stats(
        &self,
        r: Request<v1::ListPodSandboxStatsRequest>,
    ) -> Result<Response<v1::ListPodSandboxStatsResponse>, Status> {
        rpc!(
            "ListPodSandboxStats",
            self.backend.list_pod_sandbox_stats(r.into_inner())
        )
    }
    async fn get_container_events(
        &self,
        _r: Request<v1::GetEventsRequest>,
    ) -> Result<Response<tonic::codegen::BoxStream<v1::ContainerEventResponse>>, Status> {
        let mut events = self
            .backend
            .container_events()
            .map_err(|e| fail("GetContainerEvents", e))?;
        // Forward until the client goes away (its receiver is dropped) or the backend ends.
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                let item = match events.recv().await {
                    Ok(ev) => Ok(ev),
                    Err(RecvError::Lagged(n)) => {
                        // A client this far behind must relist, as the kubelet does on errors.
                        tracing::warn!(missed = n, "container events client too slow");
                        Err(Status::resource_exhausted(format!(
                            "{n} container events were dropped: the client is too slow; relist"
                        )))
                    }
                    Err(RecvError::Closed) => break,
                };
                let stop = item.is_err();
                if tx.send(item).await.is_err() || stop {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
    async fn update_container_resources(
        &self,
        r: Request<v1::UpdateContainerResourcesRequest>,
    ) -> Result<Response<v1::UpdateContainerResourcesResponse>, Status> {
        rpc!("UpdateContainerResources", async {
            self.backend
                .update_container_resources(r.into_inner())
                .await
                .map(|()| v1::UpdateContainerResourcesResponse {})
        })
    }
    async fn list_metric_descriptors(
        &self,
        _r: Request<v1::ListMetricDescriptorsRequest>,
    ) -> Result<Response<v1::ListMetricDescriptorsResponse>, Status> {
        rpc!(
            "ListMetricDescriptors",
            self.backend.list_metric_descriptors()
        )
    }
    async fn list_pod_sandbox_metrics(
        &self,
        _r: Request<v1::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<v1::ListPodSandboxMetricsResponse>, Status> {
        rpc!(
            "ListPodSandboxMetrics",
            self.backend.list_pod_sandbox_metrics()
        )
    }
}

#[tonic::async_trait]
impl<B: CriBackend> v1::image_service_server::ImageService for CriServer<B> {
    async fn list_images(
        &self,
        r: Request<v1::ListImagesRequest>,
    ) -> Result<Response<v1::ListImagesResponse>, Status> {
        rpc!("ListImages", self.backend.list_images(r.into_inner()))
    }
    async fn image_status(
        &self,
        r: Request<v1::ImageStatusRequest>,
    ) -> Result<Response<v1::ImageStatusResponse>, Status> {
        rpc!("ImageStatus", self.backend.image_status(r.into_inner()))
    }
    async fn pull_image(
        &self,
        r: Request<v1::PullImageRequest>,
    ) -> Result<Response<v1::PullImageResponse>, Status> {
        // Answer DeadlineExceeded just before the client's deadline; the pull itself goes on
        // in the background, so a retry finds it done or joins it.
        let deadline = grpc_timeout(&r);
        let req = r.into_inner();
        let image = req
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        rpc!("PullImage", async {
            match deadline {
                Some(d) => {
                    let margin = (d / 20).min(std::time::Duration::from_millis(500));
                    tokio::time::timeout(d.saturating_sub(margin), self.backend.pull_image(req))
                        .await
                        .unwrap_or_else(|_| {
                            Err(CriError::DeadlineExceeded {
                                what: format!("pull of {image}"),
                                seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                            })
                        })
                }
                None => self.backend.pull_image(req).await,
            }
        })
    }
    async fn remove_image(
        &self,
        r: Request<v1::RemoveImageRequest>,
    ) -> Result<Response<v1::RemoveImageResponse>, Status> {
        rpc!("RemoveImage", async {
            self.backend.remove_image(r.into_inner()).await?;
            Ok(v1::RemoveImageResponse {})
        })
    }
    async fn image_fs_info(
        &self,
        _r: Request<v1::ImageFsInfoRequest>,
    ) -> Result<Response<v1::ImageFsInfoResponse>, Status> {
        rpc!("ImageFsInfo", self.backend.image_fs_info())
    }
}

#[tonic::async_trait]
impl<B: CriBackend> admin::admin_server::Admin for CriServer<B> {
    async fn import_image(
        &self,
        r: Request<admin::ImportImageRequest>,
    ) -> Result<Response<admin::ImportImageResponse>, Status> {
        rpc!("ImportImage", self.backend.import_image(r.into_inner()))
    }
    async fn pull_progress(
        &self,
        r: Request<admin::PullProgressRequest>,
    ) -> Result<Response<admin::PullProgressResponse>, Status> {
        rpc!("PullProgress", self.backend.pull_progress(r.into_inner()))
    }
}

/// The client's deadline from the `grpc-timeout` header (`<digits><H|M|S|m|u|n>`).
fn grpc_timeout<T>(r: &Request<T>) -> Option<std::time::Duration> {
    let v = r.metadata().get("grpc-timeout")?.to_str().ok()?;
    let (num, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = num.parse().ok()?;
    use std::time::Duration as D;
    Some(match unit {
        "H" => D::from_secs(n.saturating_mul(3600)),
        "M" => D::from_secs(n.saturating_mul(60)),
        "S" => D::from_secs(n),
        "m" => D::from_millis(n),
        "u" => D::from_micros(n),
        "n" => D::from_nanos(n),
        _ => return None,
    })
}

#[tonic::async_trait]
impl<B: CriBackend> admin::objects_server::Objects for CriServer<B> {
    async fn apply(
        &self,
        r: Request<admin::ApplyRequest>,
    ) -> Result<Response<admin::ApplyResponse>, Status> {
        rpc!("Apply", self.backend.apply(r.into_inner()))
    }
    async fn delete(
        &self,
        r: Request<admin::DeleteRequest>,
    ) -> Result<Response<admin::DeleteResponse>, Status> {
        rpc!("Delete", self.backend.delete(r.into_inner()))
    }
    async fn get(
        &self,
        r: Request<admin::GetRequest>,
    ) -> Result<Response<admin::GetResponse>, Status> {
        rpc!("Get", self.backend.get(r.into_inner()))
    }
    async fn watch(
        &self,
        r: Request<admin::GetRequest>,
    ) -> Result<Response<tonic::codegen::BoxStream<admin::WatchEvent>>, Status> {
        use tokio_stream::StreamExt;
        let rx = rpc!("Watch", self.backend.watch(r.into_inner()))?.into_inner();
        let events = tokio_stream::wrappers::ReceiverStream::new(rx)
            .map(|item| item.map_err(|e| fail("Watch", e)));
        Ok(Response::new(Box::pin(events)))
    }
}
