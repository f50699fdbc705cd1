//! Client side of the daemon's socket, for the CLI verbs.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

/// A gRPC channel over the unix socket at `path`.
pub async fn connect(path: &Path) -> Result<Channel, tonic::transport::Error> {
    let path: PathBuf = path.to_owned();
    // The URI is required by the API but unused: every connection goes to the socket.
    Endpoint::try_from("http://[::1]:50051")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let s = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(s))
            }
        }))
        .await
}

/// What to tell a user whose client verb could not reach the daemon at `path`: whether it is
/// not running (and how to start it), or not reachable (and why), without tonic's repeated
/// transport chain.
pub fn explain_connect_error(path: &Path, err: &tonic::transport::Error) -> String {
    use std::error::Error as _;
    let mut io = None;
    let mut src = err.source();
    while let Some(e) = src {
        if let Some(e) = e.downcast_ref::<std::io::Error>() {
            io = Some(e.kind());
            break;
        }
        src = e.source();
    }
    let start = "start it with `systemctl start kinglet` (see `systemctl status kinglet` and \
                 `journalctl -u kinglet`), or run `kinglet daemon` as root";
    match io {
        Some(std::io::ErrorKind::NotFound) => format!(
            "the Kinglet daemon is not running: no socket at {}; {start}, or pass --socket \
             if it serves elsewhere",
            path.display()
        ),
        Some(std::io::ErrorKind::ConnectionRefused) => format!(
            "the Kinglet daemon is not running: nothing listens on {} (a stale socket); {start}",
            path.display()
        ),
        Some(std::io::ErrorKind::PermissionDenied) => format!(
            "permission denied on {}: the socket is root's (mode 0660); run as root",
            path.display()
        ),
        _ => format!(
            "cannot reach the Kinglet daemon at {}: {err}",
            path.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_socket_says_how_to_start_the_daemon() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("kinglet.sock");
        let e = connect(&p).await.unwrap_err();
        let m = explain_connect_error(&p, &e);
        assert!(m.contains("not running: no socket at"), "{m}");
        assert!(m.contains("systemctl start kinglet"), "{m}");
        assert!(!m.contains("os error"), "{m}");
    }

    #[tokio::test]
    async fn a_stale_socket_is_refused_and_explained() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("kinglet.sock");
        drop(std::os::unix::net::UnixListener::bind(&p).unwrap());
        let e = connect(&p).await.unwrap_err();
        let m = explain_connect_error(&p, &e);
        assert!(m.contains("nothing listens on"), "{m}");
    }
}
