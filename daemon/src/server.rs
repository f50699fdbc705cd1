//! The gRPC server: CRI RuntimeService + ImageService + Kinglet's Admin service on one unix
//! socket, mode 0660, refusing to take over a socket another daemon is serving.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kinglet_cri::CriServer;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

use crate::backend::Backend;
use crate::config::Config;
use crate::notify::Notifier;
use crate::DaemonError;
use kinglet_runtime::Runtime;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DaemonError + '_ {
    move |source| DaemonError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Bind the socket: a stale socket file is replaced, a live one is an error.
pub async fn bind(path: &Path) -> Result<UnixListener, DaemonError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(DaemonError::SocketInUse {
                path: path.to_owned(),
            });
        }
        std::fs::remove_file(path).map_err(io(path))?;
    }
    let listener = UnixListener::bind(path).map_err(io(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(io(path))?;
    Ok(listener)
}

/// Start the runtime and serve until SIGINT/SIGTERM. Containers keep running after the daemon
/// stops: their shims outlive it. Under systemd (`notify`), READY=1 is sent once recovery is
/// done and the socket answers a CRI call, STOPPING=1 at SIGTERM/SIGINT, and the watchdog is
/// pinged while [`health`] passes.
pub async fn run(config: Config, notify: Notifier) -> Result<(), DaemonError> {
    let notify = Arc::new(notify);
    // Socket activation (systemd/kinglet.socket): systemd's socket, else our own.
    let activated = crate::activation::take();
    let by_systemd = activated.is_some();
    let listener = match activated {
        Some(l) => {
            tracing::info!(socket = %config.socket.display(), "serving the socket systemd passed (LISTEN_FDS)");
            l
        }
        None => {
            let l = bind(&config.socket).await?;
            crate::socket_group::apply(&config.socket, config.socket_group.as_deref())?;
            l
        }
    };
    let socket = config.socket.clone();
    notify.status("recovering pods and containers");
    let metrics_listener = match config.metrics_address {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| DaemonError::Config {
                    path: PathBuf::from("metrics-address"),
                    reason: format!("cannot listen on {addr}: {source}"),
                })?,
        ),
        None => None,
    };
    let (cri, sources) = start_core(&config).await?;
    tracing::info!(socket = %socket.display(), "serving CRI");
    // Before READY=1 can be sent: a SIGTERM from then on is a clean stop.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(io(&socket))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .layer(crate::metrics::layer::CriMetricsLayer(metrics.clone()))
            .add_service(cri.runtime_service())
            .add_service(cri.image_service())
            .add_service(cri.admin_service())
            .add_service(cri.objects_service())
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
                let _ = stop_rx.await;
            }),
    );
    // READY=1 once the socket answers, then (under WatchdogSec=) the health-driven pings.
    let ready = {
        let (notify, socket) = (notify.clone(), socket.clone());
        let trim = config.trim_startup_memory;
        let trim_idle = config.trim_idle_secs;
        tokio::spawn(async move {
            announce_ready(&socket, &notify).await;
            if trim {
                // Once the first reconcile passes have settled (see `trim`).
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                let _ = tokio::task::spawn_blocking(crate::trim::release_startup_memory).await;
            }
            if trim_idle > 0 {
                let after = std::time::Duration::from_secs(trim_idle);
                tokio::spawn(crate::trim::trim_when_idle(after));
            }
            if let Some(every) = notify.watchdog() {
                notify
                    .watchdog_loop(every, || health(socket.clone(), every))
                    .await;
            }
        })
    };
    // Metrics: the poller and the scrape endpoint, stopped when dropped.
    let _metrics_tasks = metrics_listener
        .map(|listener| crate::metrics::spawn(listener, metrics.clone(), socket.clone(), sources));
    tokio::pin!(server);
    let res = tokio::select! {
        _ = tokio::signal::ctrl_c() => None,
        _ = term.recv() => None,
        r = &mut server => Some(r),
    };
    let res = match res {
        Some(r) => r,
        None => {
            notify.send("STOPPING=1");
            notify.status("stopping; containers keep running");
            tracing::info!("shutting down; containers keep running");
            let _ = stop_tx.send(());
            server.await
        }
    };
    ready.abort();
    if !by_systemd {
        let _ = std::fs::remove_file(&socket);
    }
    let res = res.map_err(|e| DaemonError::Startup(format!("server task: {e}")))?;
    res.map_err(|e| DaemonError::Serve {
        path: socket,
        source: Box::new(e),
    })
}

/// Start the core: the runtime (recovering its pods and containers), the supervisor of
/// Kubernetes objects, the controllers and the streaming server, as one CRI server; and what
/// the metrics read in-process.
async fn start_core(
    config: &Config,
) -> Result<(CriServer<Backend>, crate::metrics::Sources), DaemonError> {
    let runtime = Runtime::start(config.runtime()).await?;
    let puller = runtime.puller.clone();
    let supervisor = kinglet_kubelet::Supervisor::start(
        Arc::new(crate::podruntime::CoreRuntime(runtime.clone())),
        crate::podruntime::kubelet_config(config),
    )
    .await
    .map_err(|e| DaemonError::Startup(kinglet_kubelet::error::chain(&e)))?;
    let node = config.node().map_err(DaemonError::Startup)?;
    let controller_queues = kinglet_controllers::run(supervisor.clone(), node);
    let stream_addr = std::net::SocketAddr::new(config.stream_address, config.stream_port);
    let streaming = kinglet_streaming::StreamServer::start(stream_addr, runtime.clone())
        .await
        .map_err(|e| DaemonError::Startup(kinglet_cri::chain(&e)))?;
    Ok((
        CriServer::new(Arc::new(Backend(runtime, supervisor.clone(), streaming))),
        crate::metrics::Sources {
            pull_bytes: Box::new(move || puller.layer_bytes()),
            probes: Box::new({
                let supervisor = supervisor.clone();
                move || supervisor.probe_results()
            }),
            queues: Box::new(move || {
                let mut depths = vec![("pods", supervisor.pod_queue_depth())];
                depths.extend(controller_queues());
                depths
            }),
        },
    ))
}

/// Wait until the socket answers a CRI `Version` call, then tell systemd READY=1.
async fn announce_ready(socket: &Path, notify: &Notifier) {
    loop {
        if version(socket).await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    notify.send("READY=1");
    notify.status(&format!("serving CRI on {}", socket.display()));
    tracing::info!(socket = %socket.display(), "ready");
}

async fn version(socket: &Path) -> Result<(), String> {
    use kinglet_proto::v1::runtime_service_client::RuntimeServiceClient;
    let ch = crate::client::connect(socket)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut req = tonic::Request::new(kinglet_proto::v1::VersionRequest::default());
    internal(&mut req);
    RuntimeServiceClient::new(ch)
        .version(req)
        .await
        .map_err(|s| format!("Version: {}", s.message()))?;
    Ok(())
}

/// The watchdog's health check, through the daemon's own serving path: connect to the
/// socket, list the runtime's pod sandboxes (its state lock) and the supervisor's pods (its
/// object store), each within `within`. A hung runtime or supervisor makes this hang.
pub async fn health(socket: PathBuf, within: std::time::Duration) -> Result<(), String> {
    use kinglet_proto::admin::objects_client::ObjectsClient;
    use kinglet_proto::v1::runtime_service_client::RuntimeServiceClient;
    let ch = crate::client::connect(&socket)
        .await
        .map_err(|e| format!("connect to {}: {e}", socket.display()))?;
    let mut rt = RuntimeServiceClient::new(ch.clone());
    let mut req = tonic::Request::new(kinglet_proto::v1::ListPodSandboxRequest::default());
    req.set_timeout(within);
    internal(&mut req);
    rt.list_pod_sandbox(req)
        .await
        .map_err(|s| format!("ListPodSandbox: {}", s.message()))?;
    let mut req = tonic::Request::new(kinglet_proto::admin::GetRequest {
        kind: "pods".into(),
        all_namespaces: true,
        ..Default::default()
    });
    req.set_timeout(within);
    internal(&mut req);
    ObjectsClient::new(ch)
        .get(req)
        .await
        .map_err(|s| format!("get pods: {}", s.message()))?;
    Ok(())
}

/// Mark a call as the daemon's own (left out of the CRI call metrics).
fn internal<T>(req: &mut tonic::Request<T>) {
    req.metadata_mut().insert(
        crate::metrics::INTERNAL_CALL,
        tonic::metadata::MetadataValue::from_static("1"),
    );
}
