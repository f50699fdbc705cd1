//! The CRI streaming server, as the kubelet's and containerd's: Exec, Attach and PortForward
//! RPCs answer with a URL on this HTTP server holding a single-use token ([`cache`]); the client
//! then connects there and upgrades the connection to SPDY/3.1 ([`spdy`]) or WebSocket
//! ([`websocket`]) to run the Kubernetes remotecommand ([`remotecommand`]) or port-forward
//! ([`portforward`]) protocol.
//!
//! The server knows nothing about containers: it reaches the runtime through
//! [`StreamRuntime`], which the daemon implements (starting an exec helper process, attaching
//! to a shim, dialing inside a pod's network namespace).

pub mod cache;
pub mod client;
pub mod portforward;
pub mod remotecommand;
pub mod server;
pub mod spdy;
pub mod websocket;

use std::future::Future;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

pub use cache::{Request, RequestCache};
pub use server::StreamServer;

/// What can go wrong serving a stream.
#[derive(Debug, thiserror::Error)]
pub enum StreamingError {
    #[error("bind the streaming server on {addr}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("SPDY protocol error: {reason}")]
    Spdy { reason: String },
    #[error("stream {stream} was reset by the client")]
    StreamReset { stream: u32 },
    #[error("the connection is closed")]
    SessionClosed,
    #[error("connection I/O")]
    Io {
        #[source]
        source: std::io::Error,
    },
    #[error("too many streaming requests in flight (at most {max}); retry later")]
    TooManyRequests { max: usize },
    #[error("{what}")]
    Protocol { what: String },
    /// The runtime could not do what was asked (container gone, exec failed to start, ...).
    #[error("{message}")]
    Runtime { message: String },
}

/// Terminal size, as the `resize` stream carries it (`{"Width":80,"Height":24}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct TermSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

pub type BoxRead = Pin<Box<dyn AsyncRead + Send>>;
pub type BoxWrite = Pin<Box<dyn AsyncWrite + Send>>;

/// A process the runtime started (exec) or attached to, with the ends of its stdio the
/// streaming server pumps. With a tty, `stderr` is `None` (one stream), and `resize` takes
/// terminal sizes.
pub struct Process {
    pub stdin: Option<BoxWrite>,
    pub stdout: Option<BoxRead>,
    pub stderr: Option<BoxRead>,
    pub resize: Option<tokio::sync::mpsc::UnboundedSender<TermSize>>,
    /// Resolves to the exit code once the process (exec) ends, or when an attach session ends
    /// (its value then is not reported).
    pub wait: Pin<Box<dyn Future<Output = Result<i32, StreamingError>> + Send>>,
}

/// What the streaming server needs from the runtime.
#[async_trait::async_trait]
pub trait StreamRuntime: Send + Sync + 'static {
    /// Start `cmd` in the container; stdin is wanted only when `stdin` is set. With a tty,
    /// `size` is the terminal size the command must see from its start.
    async fn exec(
        &self,
        container_id: &str,
        cmd: &[String],
        tty: bool,
        stdin: bool,
        size: Option<TermSize>,
    ) -> Result<Process, StreamingError>;
    /// Attach to the container's own stdio.
    async fn attach(
        &self,
        container_id: &str,
        tty: bool,
        stdin: bool,
    ) -> Result<Process, StreamingError>;
    /// A TCP connection to `port` on the pod's loopback (inside its network namespace, or on
    /// the host for host-network pods).
    async fn port_forward(&self, sandbox_id: &str, port: u16) -> Result<TcpStream, StreamingError>;
}
