//! The Kubernetes remotecommand protocol (exec and attach) over SPDY, as the kubelet serves it.
//!
//! The client opens one stream per channel, each named by its `streamtype` header: `error`
//! always, `stdin`/`stdout`/`stderr` when the request asked for them (no `stderr` with a tty),
//! and `resize` with a tty (protocol v3 and later). Once all expected streams are there the
//! process starts; its output goes to `stdout`/`stderr`, each half-closed when the process
//! closes it; client data on `stdin` goes to the process, and the client's FIN closes its
//! stdin. At the end the `error` stream carries, from v4 on, a `metav1.Status` in JSON —
//! `Success`, or `Failure` with reason `NonZeroExitCode` and the exit code as the `ExitCode`
//! cause — and before v4 only an error message when there is one.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use bytes::Bytes;

use crate::cache::Request;
use crate::spdy::frame::header;
use crate::spdy::session::{Session, Stream, StreamWriter};
use crate::websocket::ChannelWriter;
use crate::{BoxRead, Process, StreamRuntime, StreamingError, TermSize};

/// Protocols offered over SPDY, most preferred first (v5 adds nothing over v4 on SPDY).
pub const SPDY_PROTOCOLS: &[&str] = &[
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
];

/// How long the client has to open every stream it needs (the kubelet's
/// `streamCreationTimeout`).
pub const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a tty exec waits for the client's first terminal size before it starts.
const FIRST_RESIZE_WAIT: Duration = Duration::from_secs(1);
/// After the process exits, how long its output may still drain (a background child can hold
/// the pipe open for ever).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(5);

/// Protocol version number of a negotiated `vN.channel.k8s.io`.
pub fn version_of(protocol: &str) -> u8 {
    protocol
        .strip_prefix('v')
        .and_then(|r| r.split('.').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// The options of an exec or attach request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl Options {
    pub fn of(req: &Request) -> Option<Options> {
        match *req {
            Request::Exec {
                tty,
                stdin,
                stdout,
                stderr,
                ..
            }
            | Request::Attach {
                tty,
                stdin,
                stdout,
                stderr,
                ..
            } => Some(Options {
                stdin,
                stdout,
                stderr: stderr && !tty,
                tty,
            }),
            Request::PortForward { .. } => None,
        }
    }

    /// Stream types the client opens under protocol `version`.
    pub fn expected_streams(&self, version: u8) -> Vec<&'static str> {
        let mut v = vec!["error"];
        if self.stdin {
            v.push("stdin");
        }
        if self.stdout {
            v.push("stdout");
        }
        if self.stderr {
            v.push("stderr");
        }
        if self.tty && version >= 3 {
            v.push("resize");
        }
        v
    }
}

/// How a session ended, for the error channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Exited(i32),
    Failed(String),
}

/// The bytes the kubelet writes on the error channel for `outcome` under protocol `version`
/// (empty: nothing to write).
pub fn status_message(outcome: &Outcome, cmd: &[String], version: u8) -> Vec<u8> {
    let status = match outcome {
        Outcome::Exited(0) => json!({"metadata": {}, "status": "Success"}),
        Outcome::Exited(code) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!(
                "command terminated with non-zero exit code: error executing command {cmd:?}, exit code {code}"
            ),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Outcome::Failed(msg) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("Internal error occurred: {msg}"),
            "reason": "InternalError",
            "details": {"causes": [{"message": msg}]},
            "code": 500,
        }),
    };
    if version >= 4 {
        return serde_json::to_vec(&status).expect("status serializes");
    }
    match outcome {
        Outcome::Exited(0) => Vec::new(),
        _ => status["message"]
            .as_str()
            .unwrap_or_default()
            .as_bytes()
            .to_vec(),
    }
}

#[derive(Default)]
struct Streams {
    error: Option<Stream>,
    stdin: Option<Stream>,
    stdout: Option<Stream>,
    stderr: Option<Stream>,
    resize: Option<Stream>,
}

impl Streams {
    fn slot(&mut self, ty: &str) -> Option<&mut Option<Stream>> {
        Some(match ty {
            "error" => &mut self.error,
            "stdin" => &mut self.stdin,
            "stdout" => &mut self.stdout,
            "stderr" => &mut self.stderr,
            "resize" => &mut self.resize,
            _ => return None,
        })
    }
}

async fn collect(session: &mut Session, expected: &[&str]) -> Result<Streams, StreamingError> {
    let mut got = Streams::default();
    let mut missing: Vec<&str> = expected.to_vec();
    let deadline = tokio::time::Instant::now() + STREAM_CREATION_TIMEOUT;
    while !missing.is_empty() {
        let s = tokio::time::timeout_at(deadline, session.streams.recv())
            .await
            .map_err(|_| StreamingError::Protocol {
                what: format!("timed out waiting for client streams {missing:?}"),
            })?
            .ok_or(StreamingError::SessionClosed)?;
        let ty = header(&s.headers, "streamtype")
            .unwrap_or_default()
            .to_owned();
        match got.slot(&ty) {
            Some(slot) if missing.contains(&ty.as_str()) => {
                missing.retain(|m| *m != ty);
                *slot = Some(s);
            }
            _ => {
                tracing::debug!(stream = s.id, streamtype = %ty, "unexpected stream reset");
                s.tx.reset(crate::spdy::frame::RST_PROTOCOL_ERROR).await;
            }
        }
    }
    Ok(got)
}

/// Where one output channel goes: a SPDY stream or a WebSocket channel.
pub enum Output {
    Spdy(StreamWriter),
    Ws(ChannelWriter),
}

impl Output {
    pub async fn write(&self, data: &[u8]) -> Result<(), StreamingError> {
        match self {
            Output::Spdy(w) => w.write(data).await,
            Output::Ws(w) => w.write(data).await,
        }
    }
    /// Half-close (SPDY FIN); a WebSocket channel has no end of its own.
    pub async fn finish(&self) {
        if let Output::Spdy(w) = self {
            w.finish().await
        }
    }
}

/// The client's side of a session, whatever the transport.
pub struct Channels {
    pub stdin: Option<mpsc::Receiver<Bytes>>,
    pub stdout: Option<Output>,
    pub stderr: Option<Output>,
    pub error: Option<Output>,
    pub resize: Option<mpsc::Receiver<Bytes>>,
}

/// Start what `req` asks for.
pub async fn start(
    req: &Request,
    runtime: &dyn StreamRuntime,
    size: Option<TermSize>,
) -> Result<Process, StreamingError> {
    match req {
        Request::Exec {
            container_id,
            cmd,
            tty,
            stdin,
            ..
        } => runtime.exec(container_id, cmd, *tty, *stdin, size).await,
        Request::Attach {
            container_id,
            tty,
            stdin,
            ..
        } => runtime.attach(container_id, *tty, *stdin).await,
        Request::PortForward { .. } => Err(StreamingError::Protocol {
            what: "not an exec or attach request".into(),
        }),
    }
}

/// Resolves once the client is gone (`gone` turns true or its sender is dropped).
pub async fn client_gone(mut gone: tokio::sync::watch::Receiver<bool>) {
    let _ = gone.wait_for(|g| *g).await;
}

/// Run `req` over `ch` and report the outcome on the error channel as protocol `version`
/// wants it. An attach also ends when the client goes away (`gone`); an exec runs on, its
/// output drained, as with the kubelet.
pub async fn serve(
    req: &Request,
    ch: Channels,
    version: u8,
    runtime: &dyn StreamRuntime,
    gone: tokio::sync::watch::Receiver<bool>,
) {
    let cmd = match req {
        Request::Exec { cmd, .. } => cmd.clone(),
        _ => Vec::new(),
    };
    let detach = matches!(req, Request::Attach { .. }).then_some(gone);
    // A new terminal should have the client's size before its command reads it: the client
    // sends the size right after opening its streams, so wait briefly for it.
    let mut resize = ch.resize;
    let first_size = match (&mut resize, req) {
        (Some(rx), Request::Exec { tty: true, .. }) => {
            tokio::time::timeout(FIRST_RESIZE_WAIT, rx.recv())
                .await
                .ok()
                .flatten()
                .and_then(|b| serde_json::from_slice::<TermSize>(&b).ok())
        }
        _ => None,
    };
    let outcome = match start(req, runtime, first_size).await {
        Ok(p) => run(p, ch.stdin, ch.stdout, ch.stderr, resize, detach).await,
        Err(e) => Outcome::Failed(e.to_string()),
    };
    if let Some(err) = ch.error {
        let msg = status_message(&outcome, &cmd, version);
        if !msg.is_empty() {
            let _ = err.write(&msg).await;
        }
        err.finish().await;
    }
}

async fn pump_out(src: Option<BoxRead>, dst: Option<Output>) {
    let Some(mut src) = src else {
        if let Some(d) = dst {
            d.finish().await;
        }
        return;
    };
    let mut buf = vec![0u8; 32 * 1024];
    let mut dst = dst;
    loop {
        match src.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Some(d) = &dst {
                    if d.write(&buf[..n]).await.is_err() {
                        // The client is gone from this stream; keep draining the process.
                        dst = None;
                    }
                }
            }
        }
    }
    if let Some(d) = dst {
        d.finish().await;
    }
}

fn spawn_resize(
    rx: Option<mpsc::Receiver<Bytes>>,
    to: Option<mpsc::UnboundedSender<TermSize>>,
) -> Option<tokio::task::JoinHandle<()>> {
    let (mut rx, to) = (rx?, to?);
    Some(tokio::spawn(async move {
        let mut buf = Vec::new();
        while let Some(chunk) = rx.recv().await {
            buf.extend_from_slice(&chunk);
            let mut de = serde_json::Deserializer::from_slice(&buf).into_iter::<TermSize>();
            let mut used = 0;
            while let Some(Ok(size)) = de.next() {
                used = de.byte_offset();
                let _ = to.send(size);
            }
            buf.drain(..used);
        }
    }))
}

/// Run one exec or attach over an established SPDY session.
pub async fn serve_spdy(
    mut session: Session,
    protocol: &str,
    req: Request,
    runtime: Arc<dyn StreamRuntime>,
) {
    let version = version_of(protocol);
    let Some(opts) = Options::of(&req) else {
        return;
    };
    let streams = match collect(&mut session, &opts.expected_streams(version)).await {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(err = %e, kind = req.kind(), "stream setup failed");
            session.close().await;
            return;
        }
    };
    let ch = Channels {
        stdin: streams.stdin.map(|s| s.rx),
        stdout: streams.stdout.map(|s| Output::Spdy(s.tx)),
        stderr: streams.stderr.map(|s| Output::Spdy(s.tx)),
        error: streams.error.map(|s| Output::Spdy(s.tx)),
        resize: streams.resize.map(|s| s.rx),
    };
    let gone = session.gone.clone();
    serve(&req, ch, version, runtime.as_ref(), gone).await;
    session.close().await;
}

/// Pump a process's stdio through the streams until it exits.
async fn run(
    p: Process,
    stdin: Option<mpsc::Receiver<Bytes>>,
    stdout: Option<Output>,
    stderr: Option<Output>,
    resize: Option<mpsc::Receiver<Bytes>>,
    detach: Option<tokio::sync::watch::Receiver<bool>>,
) -> Outcome {
    let stdin_task = match (stdin, p.stdin) {
        (Some(mut rx), Some(mut w)) => Some(tokio::spawn(async move {
            while let Some(chunk) = rx.recv().await {
                if w.write_all(&chunk).await.is_err() || w.flush().await.is_err() {
                    break;
                }
            }
            // The client closed its stdin: so does the process's.
            let _ = w.shutdown().await;
        })),
        _ => None,
    };
    let out = tokio::spawn(pump_out(p.stdout, stdout));
    let err = tokio::spawn(pump_out(p.stderr, stderr));
    let resize_task = spawn_resize(resize, p.resize);
    let detached = async {
        match detach {
            Some(g) => client_gone(g).await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        r = p.wait => match r {
            Ok(code) => Outcome::Exited(code),
            Err(e) => Outcome::Failed(e.to_string()),
        },
        _ = detached => {
            // The attach client left: stop pumping, which closes the shim connection.
            for t in [Some(out), Some(err), stdin_task, resize_task].into_iter().flatten() {
                t.abort();
            }
            return Outcome::Failed("the client disconnected".into());
        }
    };
    let drained = async {
        let _ = out.await;
        let _ = err.await;
    };
    let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, drained).await;
    for t in [stdin_task, resize_task].into_iter().flatten() {
        t.abort();
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_expected_per_options_and_version() {
        let o = Options {
            stdin: true,
            stdout: true,
            stderr: false,
            tty: true,
        };
        assert_eq!(
            o.expected_streams(4),
            ["error", "stdin", "stdout", "resize"]
        );
        assert_eq!(o.expected_streams(2), ["error", "stdin", "stdout"]);
        let req = Request::Exec {
            container_id: "c".into(),
            cmd: vec!["sh".into()],
            tty: true,
            stdin: false,
            stdout: true,
            stderr: true,
        };
        assert!(!Options::of(&req).unwrap().stderr, "no stderr with a tty");
        assert_eq!(version_of("v4.channel.k8s.io"), 4);
        assert_eq!(version_of("v5.channel.k8s.io"), 5);
    }

    #[test]
    fn status_on_the_error_channel_is_what_the_kubelet_sends() {
        let cmd = vec!["sh".to_owned(), "-c".to_owned(), "exit 3".to_owned()];
        let ok: serde_json::Value =
            serde_json::from_slice(&status_message(&Outcome::Exited(0), &cmd, 4)).unwrap();
        assert_eq!(ok, json!({"metadata": {}, "status": "Success"}));
        let bad: serde_json::Value =
            serde_json::from_slice(&status_message(&Outcome::Exited(3), &cmd, 4)).unwrap();
        assert_eq!(bad["status"], "Failure");
        assert_eq!(bad["reason"], "NonZeroExitCode");
        assert_eq!(bad["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(bad["details"]["causes"][0]["message"], "3");
        // Before v4: nothing on success, the message on failure.
        assert!(status_message(&Outcome::Exited(0), &cmd, 3).is_empty());
        let v3 = String::from_utf8(status_message(&Outcome::Exited(3), &cmd, 3)).unwrap();
        assert!(
            v3.starts_with("command terminated with non-zero exit code"),
            "{v3}"
        );
        let failed: serde_json::Value =
            serde_json::from_slice(&status_message(&Outcome::Failed("boom".into()), &cmd, 4))
                .unwrap();
        assert_eq!(failed["reason"], "InternalError");
        assert_eq!(failed["code"], 500);
    }
}
