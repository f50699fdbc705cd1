//! The WebSocket transports, as the kubelet's streaming server speaks them (tokio-tungstenite
//! does the framing).
//!
//! - remotecommand (`v5.channel.k8s.io` … `v2.channel.k8s.io`): every binary message starts
//!   with a channel byte — 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize. v5 adds the client's
//!   `[255, channel]` message that closes a channel (stdin: end of input).
//! - port-forward (`v4.channel.k8s.io`): the ports come from the URL's `port` query values; port
//!   `i` has data channel `2i` and error channel `2i+1`, and the first message the server
//!   sends on each carries the port as a little-endian u16.
//! - port-forward tunnelled as SPDY inside binary messages (`SPDY/3.1+portforward.k8s.io`, what
//!   client-go's websocket port-forward dialer asks for): the messages are a byte stream that
//!   the SPDY session reads and writes unchanged.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::cache::Request;
use crate::remotecommand::{self, Channels, Options, Output};
use crate::spdy::session::Session;
use crate::{portforward, StreamRuntime, StreamingError};

/// Remotecommand subprotocols over WebSocket, most preferred first.
pub const REMOTECOMMAND_PROTOCOLS: &[&str] = &[
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
];
/// Port-forward over WebSocket: the channel protocol, and SPDY tunnelled in messages.
pub const PORTFORWARD_CHANNELS: &str = "v4.channel.k8s.io";
pub const PORTFORWARD_SPDY_TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";
pub const PORTFORWARD_PROTOCOLS: &[&str] = &[PORTFORWARD_SPDY_TUNNEL, PORTFORWARD_CHANNELS];

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
/// v5: `[STREAM_CLOSE, channel]` from the client closes that channel.
pub const STREAM_CLOSE: u8 = 255;

/// Largest payload per message.
const CHUNK: usize = 32 * 1024;

/// Writes one channel's data as binary messages prefixed with its number.
#[derive(Clone)]
pub struct ChannelWriter {
    channel: u8,
    tx: mpsc::Sender<Message>,
}

impl ChannelWriter {
    pub async fn write(&self, data: &[u8]) -> Result<(), StreamingError> {
        for chunk in data.chunks(CHUNK) {
            let mut m = Vec::with_capacity(chunk.len() + 1);
            m.push(self.channel);
            m.extend_from_slice(chunk);
            self.tx
                .send(Message::Binary(m.into()))
                .await
                .map_err(|_| StreamingError::SessionClosed)?;
        }
        Ok(())
    }
}

/// A client message on a channel protocol: data for a channel, or (v5) the close of one.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    Data(u8, &'a [u8]),
    Close(u8),
    Ignore,
}

/// Classify one binary message from the client under protocol `version`.
pub fn classify(msg: &[u8], version: u8) -> Incoming<'_> {
    match msg {
        [] => Incoming::Ignore,
        [STREAM_CLOSE, ch] if version >= 5 => Incoming::Close(*ch),
        [STREAM_CLOSE, ..] if version >= 5 => Incoming::Ignore,
        [ch, rest @ ..] => Incoming::Data(*ch, rest),
    }
}

/// A close with status 1000: clients read it as the end of every channel.
fn normal_close() -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
}

/// Send everything queued on `rx` until a Close message has been sent or the queue ends.
async fn write_loop<S>(
    mut sink: futures_util::stream::SplitSink<WebSocketStream<S>, Message>,
    mut rx: mpsc::Receiver<Message>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while let Some(m) = rx.recv().await {
        let close = matches!(m, Message::Close(_));
        if sink.send(m).await.is_err() || close {
            break;
        }
    }
    let _ = sink.close().await;
}

/// Run one exec or attach over a WebSocket.
pub async fn serve_remotecommand<S>(
    ws: WebSocketStream<S>,
    protocol: &str,
    req: Request,
    runtime: Arc<dyn StreamRuntime>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let version = remotecommand::version_of(protocol);
    let Some(opts) = Options::of(&req) else {
        return;
    };
    let (sink, mut stream) = ws.split();
    let (out_tx, out_rx) = mpsc::channel::<Message>(64);
    let writer = tokio::spawn(write_loop(sink, out_rx));
    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(16);
    let (resize_tx, resize_rx) = mpsc::channel::<Bytes>(16);
    let (gone_tx, gone) = tokio::sync::watch::channel(false);
    let reader = tokio::spawn(async move {
        let _gone = gone_tx;
        let mut stdin_tx = Some(stdin_tx);
        while let Some(Ok(msg)) = stream.next().await {
            let data = match msg {
                Message::Binary(d) => d,
                Message::Close(_) => break,
                _ => continue,
            };
            tracing::trace!(head = ?&data[..data.len().min(8)], len = data.len(), "websocket message");
            match classify(&data, version) {
                Incoming::Data(STDIN, d) => {
                    if let Some(tx) = &stdin_tx {
                        let _ = tx.send(Bytes::copy_from_slice(d)).await;
                    }
                }
                Incoming::Data(RESIZE, d) => {
                    let _ = resize_tx.send(Bytes::copy_from_slice(d)).await;
                }
                Incoming::Close(STDIN) => stdin_tx = None,
                _ => {}
            }
        }
    });
    let out = |channel| {
        Some(Output::Ws(ChannelWriter {
            channel,
            tx: out_tx.clone(),
        }))
    };
    let ch = Channels {
        stdin: opts.stdin.then_some(stdin_rx),
        stdout: if opts.stdout { out(STDOUT) } else { None },
        stderr: if opts.stderr { out(STDERR) } else { None },
        error: out(ERROR),
        resize: opts.tty.then_some(resize_rx),
    };
    remotecommand::serve(&req, ch, version, runtime.as_ref(), gone).await;
    let _ = out_tx.send(normal_close()).await;
    let _ = writer.await;
    reader.abort();
}

/// The `port` values of a query string (`port=80&port=8080`).
pub fn query_ports(query: Option<&str>) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for pair in query.unwrap_or_default().split('&') {
        if let Some(v) = pair.strip_prefix("port=") {
            ports.push(portforward::parse_port(Some(v))?);
        }
    }
    if ports.is_empty() {
        return Err("query parameter \"port\" is required".into());
    }
    Ok(ports)
}

/// Port-forward with the channel protocol: one TCP connection per requested port.
pub async fn serve_portforward_channels<S>(
    ws: WebSocketStream<S>,
    ports: Vec<u16>,
    sandbox_id: String,
    runtime: Arc<dyn StreamRuntime>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, mut stream) = ws.split();
    let (out_tx, out_rx) = mpsc::channel::<Message>(64);
    let writer = tokio::spawn(write_loop(sink, out_rx));
    let mut inputs = Vec::new();
    let mut tasks = Vec::new();
    for (i, port) in ports.iter().copied().enumerate() {
        let data = ChannelWriter {
            channel: (2 * i) as u8,
            tx: out_tx.clone(),
        };
        let error = ChannelWriter {
            channel: (2 * i + 1) as u8,
            tx: out_tx.clone(),
        };
        let (in_tx, in_rx) = mpsc::channel::<Bytes>(16);
        inputs.push(in_tx);
        let (rt, pod) = (runtime.clone(), sandbox_id.clone());
        tasks.push(tokio::spawn(async move {
            // The first message of each channel names its port.
            let _ = data.write(&port.to_le_bytes()).await;
            let _ = error.write(&port.to_le_bytes()).await;
            forward_channel(data, error, in_rx, port, pod, rt).await;
        }));
    }
    let reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            let data = match msg {
                Message::Binary(d) => d,
                Message::Close(_) => break,
                _ => continue,
            };
            if let Incoming::Data(ch, d) = classify(&data, 4) {
                if ch % 2 == 0 {
                    if let Some(tx) = inputs.get(ch as usize / 2) {
                        let _ = tx.send(Bytes::copy_from_slice(d)).await;
                    }
                }
            }
        }
    });
    for t in tasks {
        let _ = t.await;
    }
    let _ = out_tx.send(normal_close()).await;
    let _ = writer.await;
    reader.abort();
}

async fn forward_channel(
    data: ChannelWriter,
    error: ChannelWriter,
    mut input: mpsc::Receiver<Bytes>,
    port: u16,
    sandbox_id: String,
    runtime: Arc<dyn StreamRuntime>,
) {
    let conn = match runtime.port_forward(&sandbox_id, port).await {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("error forwarding port {port} to pod {sandbox_id}, uid : {e}");
            let _ = error.write(msg.as_bytes()).await;
            return;
        }
    };
    let (mut rd, mut wr) = conn.into_split();
    let to_pod = tokio::spawn(async move {
        while let Some(chunk) = input.recv().await {
            if wr.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut buf = vec![0u8; CHUNK];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if data.write(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    to_pod.abort();
}

/// Port-forward as SPDY carried in binary messages.
pub async fn serve_portforward_spdy_tunnel<S>(
    ws: WebSocketStream<S>,
    sandbox_id: String,
    runtime: Arc<dyn StreamRuntime>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (mut from_spdy, mut to_spdy) = tokio::io::split(theirs);
    // WebSocket → SPDY session.
    let inbound = tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            let ok = match msg {
                Message::Binary(d) => to_spdy.write_all(&d).await.is_ok(),
                Message::Close(_) => false,
                _ => true,
            };
            if !ok {
                break;
            }
        }
        let _ = to_spdy.shutdown().await;
    });
    // SPDY session → WebSocket.
    let outbound = tokio::spawn(async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match from_spdy.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let m = Message::Binary(buf[..n].to_vec().into());
                    if sink.send(m).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = sink.close().await;
    });
    portforward::serve_spdy(Session::start(ours), sandbox_id, runtime).await;
    let _ = outbound.await;
    inbound.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_classified_by_channel_and_version() {
        assert_eq!(classify(&[0, b'h', b'i'], 4), Incoming::Data(0, b"hi"));
        assert_eq!(classify(&[4], 5), Incoming::Data(4, b""));
        assert_eq!(classify(&[255, 0], 5), Incoming::Close(0));
        assert_eq!(classify(&[255, 0, 1], 5), Incoming::Ignore);
        // Before v5 there is no close message: 255 is just an unknown channel.
        assert_eq!(classify(&[255, 0], 4), Incoming::Data(255, &[0]));
        assert_eq!(classify(&[], 5), Incoming::Ignore);
    }

    #[test]
    fn ports_come_from_the_query() {
        assert_eq!(query_ports(Some("port=80&port=8080")), Ok(vec![80, 8080]));
        assert!(query_ports(Some("other=1")).is_err());
        assert!(query_ports(None).is_err());
        assert!(query_ports(Some("port=x")).unwrap_err().contains("\"x\""));
    }
}
