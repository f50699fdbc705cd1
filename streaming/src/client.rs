//! A client of streaming URLs over WebSocket, for Kinglet's own CLI (`kinglet exec -it`,
//! `kinglet port-forward`): remotecommand `v5.channel.k8s.io` and the channel port-forward
//! protocol `v4.channel.k8s.io`, the same framing the server side speaks (see
//! [`crate::websocket`]).

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::websocket::{ERROR, RESIZE, STDERR, STDIN, STDOUT, STREAM_CLOSE};
use crate::{StreamingError, TermSize};

fn protocol_err(what: impl Into<String>) -> StreamingError {
    StreamingError::Protocol { what: what.into() }
}

async fn connect(url: &str, protocol: &str) -> Result<WebSocketStream<TcpStream>, StreamingError> {
    let ws_url = url.replacen("http://", "ws://", 1);
    let mut req = ws_url
        .as_str()
        .into_client_request()
        .map_err(|e| protocol_err(format!("streaming URL {url}: {e}")))?;
    req.headers_mut().insert(
        "sec-websocket-protocol",
        protocol.parse().expect("protocol is a header value"),
    );
    let authority = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .ok_or_else(|| protocol_err(format!("streaming URL {url} has no host")))?;
    let tcp = TcpStream::connect(&authority)
        .await
        .map_err(|e| StreamingError::Io { source: e })?;
    let (ws, _) = tokio_tungstenite::client_async(req, tcp)
        .await
        .map_err(|e| protocol_err(format!("connect to {url}: {e}")))?;
    Ok(ws)
}

/// The exit code a v4+ status message reports.
pub fn exit_code_of(status: &[u8]) -> Result<i32, StreamingError> {
    if status.is_empty() {
        return Ok(0);
    }
    let v: serde_json::Value = serde_json::from_slice(status)
        .map_err(|e| protocol_err(format!("status from the server: {e}")))?;
    if v["status"] == "Success" {
        return Ok(0);
    }
    if v["reason"] == "NonZeroExitCode" {
        if let Some(code) = v["details"]["causes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["reason"] == "ExitCode")
            .and_then(|c| c["message"].as_str())
            .and_then(|m| m.parse().ok())
        {
            return Ok(code);
        }
    }
    Err(StreamingError::Runtime {
        message: v["message"].as_str().unwrap_or("command failed").to_owned(),
    })
}

/// Run an exec or attach URL: `stdin` (until its end, then v5's close), terminal sizes from
/// `resize`; output to `stdout`/`stderr`. Returns the command's exit code.
pub async fn exec(
    url: &str,
    mut stdin: Option<impl AsyncRead + Unpin + Send + 'static>,
    mut stdout: impl AsyncWrite + Unpin,
    mut stderr: impl AsyncWrite + Unpin,
    mut resize: Option<mpsc::UnboundedReceiver<TermSize>>,
) -> Result<i32, StreamingError> {
    let ws = connect(url, "v5.channel.k8s.io").await?;
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(16);
    if let Some(mut input) = stdin.take() {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match input.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let mut m = vec![STDIN];
                        m.extend_from_slice(&buf[..n]);
                        if tx.send(Message::Binary(m.into())).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = tx
                .send(Message::Binary(vec![STREAM_CLOSE, STDIN].into()))
                .await;
        });
    }
    if let Some(mut sizes) = resize.take() {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(size) = sizes.recv().await {
                let mut m = vec![RESIZE];
                m.extend_from_slice(&serde_json::to_vec(&size).expect("size serializes"));
                if tx.send(Message::Binary(m.into())).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.send(m).await.is_err() {
                return;
            }
        }
    });
    let mut status = Vec::new();
    while let Some(msg) = stream.next().await {
        let data = match msg {
            Ok(Message::Binary(d)) => d,
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        let Some((&ch, payload)) = data.split_first() else {
            continue;
        };
        let res = match ch {
            STDOUT => stdout.write_all(payload).await.and(stdout.flush().await),
            STDERR => stderr.write_all(payload).await.and(stderr.flush().await),
            ERROR => {
                status.extend_from_slice(payload);
                Ok(())
            }
            _ => Ok(()),
        };
        res.map_err(|e| StreamingError::Io { source: e })?;
    }
    exit_code_of(&status)
}

/// Forward one local connection to `port` through a port-forward URL (one URL per
/// connection: tokens are single-use).
pub async fn forward(url: &str, port: u16, conn: TcpStream) -> Result<(), StreamingError> {
    let ws = connect(&format!("{url}?port={port}"), "v4.channel.k8s.io").await?;
    let (mut sink, mut stream) = ws.split();
    let (mut rd, mut wr) = conn.into_split();
    let upstream = tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut m = vec![0u8];
                    m.extend_from_slice(&buf[..n]);
                    if sink.send(Message::Binary(m.into())).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = sink.close().await;
    });
    // The first message of each channel is its port; then data (channel 0) and errors (1).
    let mut seen = [false; 2];
    let mut error = Vec::new();
    while let Some(msg) = stream.next().await {
        let data = match msg {
            Ok(Message::Binary(d)) => d,
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        let Some((&ch, payload)) = data.split_first() else {
            continue;
        };
        let ch = ch as usize;
        if ch > 1 {
            continue;
        }
        if !seen[ch] {
            seen[ch] = true;
            continue;
        }
        if ch == 0 {
            if wr.write_all(payload).await.is_err() {
                break;
            }
        } else {
            error.extend_from_slice(payload);
        }
    }
    let _ = wr.shutdown().await;
    upstream.abort();
    if error.is_empty() {
        Ok(())
    } else {
        Err(StreamingError::Runtime {
            message: String::from_utf8_lossy(&error).into_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_from_status() {
        assert_eq!(
            exit_code_of(br#"{"metadata":{},"status":"Success"}"#).unwrap(),
            0
        );
        let bad = br#"{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"42"}]}}"#;
        assert_eq!(exit_code_of(bad).unwrap(), 42);
        let internal = br#"{"status":"Failure","reason":"InternalError","message":"boom"}"#;
        assert!(exit_code_of(internal)
            .unwrap_err()
            .to_string()
            .contains("boom"));
    }
}
