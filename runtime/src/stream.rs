//! The runtime side of the CRI streaming server: validating Exec/Attach/PortForward requests
//! (they become URLs on the streaming server), and doing what a connected client asks through
//! [`kinglet_streaming::StreamRuntime`]:
//!
//! - exec: a `kinglet shim exec` helper (libcontainer's tenant builder must not run in this
//!   multi-threaded daemon) with the command's stdio as pipes; with a tty, libcontainer sends
//!   the terminal's master to a console socket the daemon listens on, and the daemon reads,
//!   writes and resizes (TIOCSWINSZ) it;
//! - attach: through the container's shim ([`super::attach`]);
//! - port-forward: a TCP connection to the pod's loopback made on a fresh `std::thread` that
//!   enters the pod's pinned network namespace (a socket keeps the namespace it was made in),
//!   or on the host for host-network pods.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use kinglet_cri::CriError;
use kinglet_proto::v1;
use kinglet_shim::protocol::{read_record, ExecResult};
use kinglet_streaming::{Process, Request, StreamingError, TermSize};
use tokio::net::TcpStream;

use super::store::{ContainerState, NsMode, SandboxState};
use super::{new_id, Runtime};

/// How long libcontainer may take to hand over a new terminal.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connect inside the pod may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn runtime_err(message: impl Into<String>) -> StreamingError {
    StreamingError::Runtime {
        message: message.into(),
    }
}

fn check_stdio(tty: bool, stdin: bool, stdout: bool, stderr: bool) -> Result<(), CriError> {
    if !stdin && !stdout && !stderr {
        return Err(CriError::invalid(
            "stdin/stdout/stderr",
            "one of stdin, stdout or stderr must be true",
        ));
    }
    if tty && stderr {
        return Err(CriError::invalid(
            "tty",
            "tty and stderr cannot both be true (a terminal has one output stream)",
        ));
    }
    Ok(())
}

impl Runtime {
    /// The full id of a running container (ExecSync and the streaming calls need one).
    pub(super) async fn running_container(
        &self,
        id: &str,
        action: &'static str,
    ) -> Result<String, CriError> {
        if id.is_empty() {
            return Err(CriError::invalid("container_id", "must not be empty"));
        }
        let entry = self
            .store
            .find_container(id)
            .await
            .ok_or_else(|| CriError::not_found("container", id))?;
        let r = entry.record.lock().await;
        if r.state != ContainerState::Running {
            return Err(CriError::FailedPrecondition {
                kind: "container",
                id: r.id.clone(),
                state: format!("{:?}", r.state).to_lowercase(),
                action,
                needed: "running",
            });
        }
        Ok(r.id.clone())
    }

    /// Exec: the streaming request for a running container.
    pub async fn exec_request(&self, req: v1::ExecRequest) -> Result<Request, CriError> {
        if req.cmd.is_empty() {
            return Err(CriError::invalid("cmd", "must not be empty"));
        }
        check_stdio(req.tty, req.stdin, req.stdout, req.stderr)?;
        let container_id = self.running_container(&req.container_id, "Exec").await?;
        Ok(Request::Exec {
            container_id,
            cmd: req.cmd,
            tty: req.tty,
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr,
        })
    }

    /// Attach: the streaming request for a running container.
    pub async fn attach_request(&self, req: v1::AttachRequest) -> Result<Request, CriError> {
        check_stdio(req.tty, req.stdin, req.stdout, req.stderr)?;
        let container_id = self.running_container(&req.container_id, "Attach").await?;
        Ok(Request::Attach {
            container_id,
            tty: req.tty,
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr,
        })
    }

    /// PortForward: the streaming request for a ready sandbox.
    pub async fn port_forward_request(
        &self,
        req: v1::PortForwardRequest,
    ) -> Result<Request, CriError> {
        let id = &req.pod_sandbox_id;
        if id.is_empty() {
            return Err(CriError::invalid("pod_sandbox_id", "must not be empty"));
        }
        if let Some(p) = req.port.iter().find(|p| !(1..=65535).contains(*p)) {
            return Err(CriError::invalid(
                "port",
                format!("{p} is not a TCP port (1-65535)"),
            ));
        }
        let entry = self
            .store
            .find_sandbox(id)
            .await
            .ok_or_else(|| CriError::not_found("pod sandbox", id))?;
        let r = entry.record.lock().await;
        if r.state != SandboxState::Ready {
            return Err(CriError::FailedPrecondition {
                kind: "pod sandbox",
                id: r.id.clone(),
                state: "not ready".into(),
                action: "PortForward",
                needed: "ready",
            });
        }
        Ok(Request::PortForward {
            sandbox_id: r.id.clone(),
        })
    }

    async fn stream_exec(
        &self,
        container_id: &str,
        cmd: &[String],
        tty: bool,
        stdin: bool,
        size: Option<TermSize>,
    ) -> Result<Process, StreamingError> {
        let id = self
            .running_container(container_id, "Exec")
            .await
            .map_err(|e| runtime_err(e.to_string()))?;
        let name = new_id();
        let result_path = self.paths.exec_dir().join(format!("{name}.json"));
        // A socket address holds 107 bytes: a short name, and the helper gets a real path.
        let console = tty.then(|| self.paths.exec_dir().join(format!("{}.sock", &name[..12])));
        if let Some(p) = &console {
            if p.as_os_str().len() > 107 {
                return Err(runtime_err(format!(
                    "console socket path {} is longer than a unix socket address allows; use a shorter run-root",
                    p.display()
                )));
            }
        }
        let listener = match &console {
            Some(p) => Some(
                std::os::unix::net::UnixListener::bind(p)
                    .map_err(|e| runtime_err(format!("console socket {}: {e}", p.display())))?,
            ),
            None => None,
        };
        let mut c = self.exec_helper(&id, &result_path);
        if stdin && !tty {
            c.arg("--stdin");
        }
        if let Some(p) = &console {
            c.arg("--console-socket").arg(p);
            if let Some(s) = size {
                c.arg("--console-size")
                    .arg(format!("{}x{}", s.width, s.height));
            }
        }
        let piped = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
        c.arg("--")
            .args(cmd)
            .stdin(piped(stdin && !tty))
            .stdout(piped(!tty))
            .stderr(piped(!tty))
            .env("RUST_LOG", "off");
        let mut child = c.spawn().map_err(|e| {
            runtime_err(format!(
                "start exec helper {}: {e}",
                self.shim_exe.display()
            ))
        })?;
        let mut process = Process {
            stdin: child.stdin.take().map(|s| Box::pin(s) as _),
            stdout: child.stdout.take().map(|s| Box::pin(s) as _),
            stderr: child.stderr.take().map(|s| Box::pin(s) as _),
            resize: None,
            wait: Box::pin(async { Ok(0) }),
        };
        if let (Some(listener), Some(path)) = (listener, console.clone()) {
            let master = tokio::select! {
                m = receive_console(listener) => m,
                status = child.wait() => {
                    let _ = std::fs::remove_file(&path);
                    let _ = status;
                    Err(helper_failure(&result_path, cmd))
                }
            };
            let _ = std::fs::remove_file(&path);
            let master = master?;
            attach_terminal(&mut process, master)?;
        }
        let cmd = cmd.to_vec();
        process.wait = Box::pin(async move {
            let status = child.wait().await;
            let result = read_record::<ExecResult>(&result_path);
            let _ = std::fs::remove_file(&result_path);
            match result {
                Ok(Some(r)) if r.error.is_none() => Ok(r.exit_code),
                Ok(Some(r)) => Err(runtime_err(format!(
                    "exec {cmd:?}: {}",
                    r.error.unwrap_or_default()
                ))),
                _ => Err(runtime_err(format!(
                    "exec helper for {cmd:?} ended ({status:?}) without a result"
                ))),
            }
        });
        Ok(process)
    }

    async fn connect_in_pod(
        &self,
        sandbox_id: &str,
        port: u16,
    ) -> Result<TcpStream, StreamingError> {
        let entry = self
            .store
            .find_sandbox(sandbox_id)
            .await
            .ok_or_else(|| runtime_err(format!("pod sandbox {sandbox_id:?} not found")))?;
        let (mode, net) = {
            let r = entry.record.lock().await;
            (r.namespaces.network, r.namespaces.net_path.clone())
        };
        let net = match (mode, net) {
            (NsMode::Node, _) => None,
            (_, Some(p)) => Some(p),
            (_, None) => return Err(runtime_err("the pod has no network namespace")),
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("port-forward".into())
            .spawn(move || {
                let _ = tx.send(dial_loopback(net, port));
            })
            .map_err(|e| runtime_err(format!("start port-forward thread: {e}")))?;
        let std_stream = rx
            .await
            .map_err(|_| runtime_err("port-forward thread died"))?
            .map_err(|e| runtime_err(format!("dial 127.0.0.1:{port} in the pod: {e}")))?;
        std_stream
            .set_nonblocking(true)
            .map_err(|e| runtime_err(e.to_string()))?;
        TcpStream::from_std(std_stream).map_err(|e| runtime_err(e.to_string()))
    }
}

/// On this (fresh, discarded) thread: enter `netns` if given, connect to the port on loopback.
fn dial_loopback(netns: Option<PathBuf>, port: u16) -> std::io::Result<std::net::TcpStream> {
    if let Some(ns) = netns {
        let f = std::fs::File::open(&ns)?;
        kinglet_netns::sys::setns_net(f.as_fd())?;
    }
    let v4 = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    match std::net::TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT) {
        Ok(s) => Ok(s),
        Err(e) => {
            let v6 = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
            std::net::TcpStream::connect_timeout(&v6, CONNECT_TIMEOUT).map_err(|_| e)
        }
    }
}

fn helper_failure(result_path: &std::path::Path, cmd: &[String]) -> StreamingError {
    match read_record::<ExecResult>(result_path) {
        Ok(Some(ExecResult { error: Some(e), .. })) => runtime_err(format!("exec {cmd:?}: {e}")),
        _ => runtime_err(format!(
            "exec {cmd:?}: the helper ended before the terminal was made"
        )),
    }
}

/// Accept the exec helper's connection and take the terminal it sends, within
/// [`CONSOLE_TIMEOUT`]. The accept is asynchronous: a helper that dies before connecting must
/// not leave a blocking-pool thread waiting on the socket for good (the pool is bounded).
async fn receive_console(
    listener: std::os::unix::net::UnixListener,
) -> Result<std::os::fd::OwnedFd, StreamingError> {
    let receive = async {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::UnixListener::from_std(listener)?;
        let (sock, _) = listener.accept().await?;
        let sock = sock.into_std()?;
        sock.set_nonblocking(false)?;
        // The helper sends the terminal as it connects; never wait longer than the whole.
        sock.set_read_timeout(Some(CONSOLE_TIMEOUT))?;
        tokio::task::spawn_blocking(move || crate::sys::recv_fd(&sock))
            .await
            .map_err(std::io::Error::other)?
    };
    match tokio::time::timeout(CONSOLE_TIMEOUT, receive).await {
        Ok(Ok(fd)) => Ok(fd),
        Ok(Err(e)) => Err(runtime_err(format!("receive the terminal: {e}"))),
        Err(_) => Err(runtime_err("no terminal from the exec helper")),
    }
}

/// Wire a terminal master into `process`: output, input, and resizes.
fn attach_terminal(
    process: &mut Process,
    master: std::os::fd::OwnedFd,
) -> Result<(), StreamingError> {
    let dup = |m: &std::os::fd::OwnedFd| {
        m.try_clone()
            .map_err(|e| runtime_err(format!("duplicate terminal: {e}")))
    };
    let reader = tokio::fs::File::from_std(std::fs::File::from(dup(&master)?));
    let writer = tokio::fs::File::from_std(std::fs::File::from(dup(&master)?));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<TermSize>();
    tokio::spawn(async move {
        while let Some(size) = rx.recv().await {
            if let Err(e) = crate::sys::set_winsize(master.as_fd(), size.width, size.height) {
                tracing::debug!(err = %e, "terminal resize failed");
            }
        }
    });
    process.stdout = Some(Box::pin(reader));
    process.stdin = Some(Box::pin(TtyInput {
        file: writer,
        eot: false,
    }));
    process.stderr = None;
    process.resize = Some(tx);
    Ok(())
}

/// Input to a terminal master. Its end (the client closed stdin or went away) types ^D, as a
/// terminal whose user logs out: a shell reading at the start of a line ends, where an open
/// master would keep it waiting for ever.
struct TtyInput {
    file: tokio::fs::File,
    eot: bool,
}

impl tokio::io::AsyncWrite for TtyInput {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.file).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.file).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        if !self.eot {
            match std::pin::Pin::new(&mut self.file).poll_write(cx, &[0x04]) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(_) => self.eot = true,
            }
        }
        std::pin::Pin::new(&mut self.file).poll_flush(cx)
    }
}

#[async_trait::async_trait]
impl kinglet_streaming::StreamRuntime for Runtime {
    async fn exec(
        &self,
        container_id: &str,
        cmd: &[String],
        tty: bool,
        stdin: bool,
        size: Option<TermSize>,
    ) -> Result<Process, StreamingError> {
        self.stream_exec(container_id, cmd, tty, stdin, size).await
    }

    async fn attach(
        &self,
        container_id: &str,
        tty: bool,
        stdin: bool,
    ) -> Result<Process, StreamingError> {
        let id = self
            .running_container(container_id, "Attach")
            .await
            .map_err(|e| runtime_err(e.to_string()))?;
        super::attach::attach(&self.paths.shim_state(&id), tty, stdin)
            .await
            .map_err(|e| runtime_err(format!("attach to container {id}: {e}")))
    }

    async fn port_forward(&self, sandbox_id: &str, port: u16) -> Result<TcpStream, StreamingError> {
        self.connect_in_pod(sandbox_id, port).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdio_combinations_are_checked_as_the_kubelet_does() {
        assert!(check_stdio(false, false, true, true).is_ok());
        assert!(check_stdio(true, true, true, false).is_ok());
        let none = check_stdio(false, false, false, false)
            .unwrap_err()
            .to_string();
        assert!(none.contains("one of stdin, stdout or stderr"), "{none}");
        let both = check_stdio(true, false, true, true)
            .unwrap_err()
            .to_string();
        assert!(both.contains("tty and stderr"), "{both}");
    }

    #[tokio::test]
    async fn a_dropped_console_wait_leaves_nothing_accepting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        // The helper died before connecting: the exec drops the wait (as its select does).
        let wait = tokio::spawn(receive_console(listener));
        tokio::time::sleep(Duration::from_millis(50)).await;
        wait.abort();
        let _ = wait.await;
        // Nothing holds the socket any more (a blocking accept would have kept it, and its
        // thread, for good): a connection is refused.
        let err = std::os::unix::net::UnixStream::connect(&path).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    }
}
