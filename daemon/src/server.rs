//! The gRPC server: CRI RuntimeService + ImageService + Kinglet's Admin service on one unix
//! socket, mode 0660, refusing to take over a socket another daemon is serving.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use kinglet_cri::CriServer;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

use crate::backend::Backend;
use crate::config::Config;
use crate::runtime::Runtime;
use crate::DaemonError;

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
/// stops: their shims outlive it.
pub async fn run(config: Config) -> Result<(), DaemonError> {
    let listener = bind(&config.socket).await?;
    let socket = config.socket.clone();
    let runtime = Runtime::start(config).await?;
    let supervisor = kinglet_kubelet::Supervisor::start(
        Arc::new(crate::podruntime::CoreRuntime(runtime.clone())),
        crate::podruntime::kubelet_config(&runtime.config),
    )
    .await
    .map_err(|e| DaemonError::Startup(kinglet_kubelet::error::chain(&e)))?;
    kinglet_controllers::run(supervisor.clone());
    let cri = CriServer::new(Arc::new(Backend(runtime, supervisor)));
    tracing::info!(socket = %socket.display(), "serving CRI");
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down; containers keep running");
    };
    let res = tonic::transport::Server::builder()
        .add_service(cri.runtime_service())
        .add_service(cri.image_service())
        .add_service(cri.admin_service())
        .add_service(cri.objects_service())
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await;
    let _ = std::fs::remove_file(&socket);
    res.map_err(|e| DaemonError::Serve {
        path: socket,
        source: Box::new(e),
    })
}
