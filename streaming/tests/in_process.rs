//! The streaming server in-process, without root: a fake runtime whose "exec" echoes stdin to
//! stdout and exits 3, and whose port-forward dials a local echo server; clients speak SPDY
//! (with the crate's own codec, as the Go framer lays frames out) and WebSocket (tungstenite).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use kinglet_streaming::spdy::frame::{Codec, Frame, Head, FLAG_FIN};
use kinglet_streaming::{Process, Request, StreamRuntime, StreamServer, StreamingError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

struct Fake {
    echo_port: u16,
}

#[async_trait::async_trait]
impl StreamRuntime for Fake {
    async fn exec(
        &self,
        _container_id: &str,
        _cmd: &[String],
        _tty: bool,
        _stdin: bool,
        _size: Option<kinglet_streaming::TermSize>,
    ) -> Result<Process, StreamingError> {
        let (stdin_w, mut stdin_r) = tokio::io::duplex(1024);
        let (mut stdout_w, stdout_r) = tokio::io::duplex(1024);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut buf = [0u8; 256];
            loop {
                match stdin_r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => stdout_w.write_all(&buf[..n]).await.unwrap(),
                }
            }
            drop(stdout_w);
            let _ = done_tx.send(3);
        });
        Ok(Process {
            stdin: Some(Box::pin(stdin_w)),
            stdout: Some(Box::pin(stdout_r)),
            stderr: None,
            resize: None,
            wait: Box::pin(async move { Ok(done_rx.await.unwrap_or(-1)) }),
        })
    }

    async fn attach(&self, _: &str, _: bool, _: bool) -> Result<Process, StreamingError> {
        Err(StreamingError::Runtime {
            message: "no attach here".into(),
        })
    }

    async fn port_forward(&self, _sandbox: &str, port: u16) -> Result<TcpStream, StreamingError> {
        if port != 7777 {
            return Err(StreamingError::Runtime {
                message: "connection refused".into(),
            });
        }
        TcpStream::connect(("127.0.0.1", self.echo_port))
            .await
            .map_err(|e| StreamingError::Runtime {
                message: e.to_string(),
            })
    }
}

async fn echo_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    port
}

async fn server() -> StreamServer {
    let rt = Arc::new(Fake {
        echo_port: echo_server().await,
    });
    StreamServer::start("127.0.0.1:0".parse().unwrap(), rt)
        .await
        .unwrap()
}

fn exec_request() -> Request {
    Request::Exec {
        container_id: "c".into(),
        cmd: vec!["cat".into()],
        tty: false,
        stdin: true,
        stdout: true,
        stderr: false,
    }
}

async fn ws_connect(url: &str, protocol: &str) -> tokio_tungstenite::WebSocketStream<TcpStream> {
    let mut req = url
        .replace("http://", "ws://")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", protocol.parse().unwrap());
    let addr = req.uri().authority().unwrap().as_str().to_owned();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (ws, resp) = tokio_tungstenite::client_async(req, tcp).await.unwrap();
    assert_eq!(
        resp.headers()["sec-websocket-protocol"].to_str().unwrap(),
        protocol
    );
    ws
}

/// Next binary message, with a deadline.
async fn next_binary(ws: &mut tokio_tungstenite::WebSocketStream<TcpStream>) -> Option<Vec<u8>> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("message in time")?
            .ok()?;
        match m {
            Message::Binary(b) => return Some(b.to_vec()),
            Message::Close(_) => return None,
            _ => {}
        }
    }
}

#[tokio::test]
async fn websocket_exec_v5_closes_stdin_and_reports_the_exit_code() {
    let srv = server().await;
    let url = srv.url_for(exec_request()).unwrap();
    let mut ws = ws_connect(&url, "v5.channel.k8s.io").await;
    ws.send(Message::Binary(b"\x00hello".to_vec().into()))
        .await
        .unwrap();
    ws.send(Message::Binary(vec![255, 0].into())).await.unwrap();
    let mut stdout = Vec::new();
    let mut status = Vec::new();
    while let Some(m) = next_binary(&mut ws).await {
        match m[0] {
            1 => stdout.extend_from_slice(&m[1..]),
            3 => status.extend_from_slice(&m[1..]),
            other => panic!("unexpected channel {other}"),
        }
    }
    assert_eq!(stdout, b"hello");
    let st: serde_json::Value = serde_json::from_slice(&status).unwrap();
    assert_eq!(st["reason"], "NonZeroExitCode");
    assert_eq!(st["details"]["causes"][0]["message"], "3");
    // The token was used: a second handshake is refused (404).
    let mut req = url
        .replace("http://", "ws://")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "v5.channel.k8s.io".parse().unwrap(),
    );
    let tcp = TcpStream::connect(req.uri().authority().unwrap().as_str())
        .await
        .unwrap();
    assert!(tokio_tungstenite::client_async(req, tcp).await.is_err());
}

#[tokio::test]
async fn websocket_port_forward_channels_name_their_port_first() {
    let srv = server().await;
    let url = srv
        .url_for(Request::PortForward {
            sandbox_id: "p".into(),
        })
        .unwrap();
    let mut ws = ws_connect(&format!("{url}?port=7777&port=9"), "v4.channel.k8s.io").await;
    let mut firsts = Vec::new();
    for _ in 0..4 {
        firsts.push(next_binary(&mut ws).await.unwrap());
    }
    firsts.sort();
    let p7777 = 7777u16.to_le_bytes();
    let p9 = 9u16.to_le_bytes();
    assert_eq!(firsts[0], [0, p7777[0], p7777[1]]);
    assert_eq!(firsts[1], [1, p7777[0], p7777[1]]);
    assert_eq!(firsts[2], [2, p9[0], p9[1]]);
    assert_eq!(firsts[3], [3, p9[0], p9[1]]);
    // Port 9 fails: its error channel says so.
    let err = next_binary(&mut ws).await.unwrap();
    assert_eq!(err[0], 3);
    assert!(String::from_utf8_lossy(&err[1..]).contains("error forwarding port 9"));
    // Port 7777 echoes.
    ws.send(Message::Binary(b"\x00ping".to_vec().into()))
        .await
        .unwrap();
    assert_eq!(next_binary(&mut ws).await.unwrap(), b"\x00ping");
}

/// Write `f` and flush.
async fn send(io: &mut TcpStream, codec: &mut Codec, f: Frame) {
    let mut out = BytesMut::new();
    codec.encode(&f, &mut out).unwrap();
    io.write_all(&out).await.unwrap();
}

async fn recv(io: &mut TcpStream, codec: &mut Codec) -> Option<Frame> {
    let mut head = [0u8; 8];
    tokio::time::timeout(Duration::from_secs(10), io.read_exact(&mut head))
        .await
        .expect("frame in time")
        .ok()?;
    let head = Head::parse(head);
    let mut payload = vec![0u8; head.length];
    io.read_exact(&mut payload).await.ok()?;
    Some(codec.decode(head, Bytes::from(payload)).unwrap())
}

fn syn(stream_id: u32, ty: &str) -> Frame {
    Frame::SynStream {
        stream_id,
        associated_to: 0,
        priority: 0,
        slot: 0,
        flags: 0,
        headers: vec![("streamtype".into(), ty.into())],
    }
}

#[tokio::test]
async fn spdy_session_replies_echoes_pings_and_finishes_streams() {
    let srv = server().await;
    let url = srv.url_for(exec_request()).unwrap();
    let path = url.trim_start_matches("http://");
    let (addr, path) = path.split_at(path.find('/').unwrap());
    let mut io = TcpStream::connect(addr).await.unwrap();
    io.write_all(
        format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
             X-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut resp = Vec::new();
    while !resp.ends_with(b"\r\n\r\n") {
        resp.push(io.read_u8().await.unwrap());
    }
    let resp = String::from_utf8(resp).unwrap().to_lowercase();
    assert!(resp.starts_with("http/1.1 101"), "{resp}");
    assert!(
        resp.contains("x-stream-protocol-version: v4.channel.k8s.io"),
        "{resp}"
    );

    let (mut tx, mut rx) = (Codec::new(), Codec::new());
    send(&mut io, &mut tx, Frame::Ping { id: 1 }).await;
    assert_eq!(recv(&mut io, &mut rx).await, Some(Frame::Ping { id: 1 }));
    for (id, ty) in [(1, "error"), (3, "stdin"), (5, "stdout")] {
        send(&mut io, &mut tx, syn(id, ty)).await;
        match recv(&mut io, &mut rx).await {
            Some(Frame::SynReply { stream_id, .. }) => assert_eq!(stream_id, id),
            other => panic!("expected SYN_REPLY for {id}, got {other:?}"),
        }
    }
    let data = |stream_id, flags, d: &'static [u8]| Frame::Data {
        stream_id,
        flags,
        data: Bytes::from_static(d),
    };
    send(&mut io, &mut tx, data(3, 0, b"abc")).await;
    send(&mut io, &mut tx, data(3, FLAG_FIN, b"")).await;
    let (mut stdout, mut status, mut fins, mut goaway) = (Vec::new(), Vec::new(), 0, false);
    while let Some(f) = recv(&mut io, &mut rx).await {
        match f {
            Frame::Data {
                stream_id: 5,
                flags,
                data,
            } => {
                stdout.extend_from_slice(&data);
                fins += (flags & FLAG_FIN) as usize;
            }
            Frame::Data {
                stream_id: 1,
                flags,
                data,
            } => {
                status.extend_from_slice(&data);
                fins += (flags & FLAG_FIN) as usize;
            }
            Frame::GoAway { .. } => goaway = true,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(stdout, b"abc");
    assert_eq!(fins, 2, "stdout and error half-closed");
    assert!(goaway, "the session ends with GOAWAY");
    let st: serde_json::Value = serde_json::from_slice(&status).unwrap();
    assert_eq!(st["details"]["causes"][0]["message"], "3");
}

#[tokio::test]
async fn the_cli_client_runs_exec_and_forwards_a_connection() {
    let srv = server().await;
    let url = srv.url_for(exec_request()).unwrap();
    let mut out = Vec::new();
    let code = kinglet_streaming::client::exec(
        &url,
        Some(&b"round trip"[..]),
        &mut out,
        tokio::io::sink(),
        None,
    )
    .await
    .unwrap();
    assert_eq!((code, out.as_slice()), (3, &b"round trip"[..]));

    // A local connection forwarded to the (echoing) pod port.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let url = srv
        .url_for(Request::PortForward {
            sandbox_id: "p".into(),
        })
        .unwrap();
    let fwd = tokio::spawn(async move {
        let (conn, _) = l.accept().await.unwrap();
        kinglet_streaming::client::forward(&url, 7777, conn).await
    });
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"echo me").await.unwrap();
    let mut buf = [0u8; 7];
    tokio::time::timeout(Duration::from_secs(10), c.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"echo me");
    drop(c);
    tokio::time::timeout(Duration::from_secs(10), fwd)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
