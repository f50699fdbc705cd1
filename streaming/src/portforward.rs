//! Port-forward over SPDY (`portforward.k8s.io`), as the kubelet serves it.
//!
//! For each forwarded connection the client opens an `error` stream and a `data` stream, both
//! with a `port` header and the same `requestID` header (older clients without it: the data
//! stream's id minus 2 names the pair). Once both are there, a TCP connection to the port on
//! the pod's loopback is made and bytes are copied both ways: the client's FIN on `data`
//! shuts the connection's write side, the pod's EOF half-closes `data`. Failures go on the
//! `error` stream as text; it is half-closed when the pair is done.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::spdy::frame::header;
use crate::spdy::session::{Session, Stream};
use crate::StreamRuntime;

pub const SPDY_PROTOCOL: &str = "portforward.k8s.io";

/// The key pairing a stream with its partner.
pub fn pair_key(stream_id: u32, streamtype: &str, request_id: Option<&str>) -> String {
    match request_id {
        Some(r) if !r.is_empty() => r.to_owned(),
        _ if streamtype == "data" => stream_id.saturating_sub(2).to_string(),
        _ => stream_id.to_string(),
    }
}

/// The port a `port` header names, or the message the kubelet sends back.
pub fn parse_port(value: Option<&str>) -> Result<u16, String> {
    let v = value.unwrap_or_default();
    match v.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("unable to parse {v:?} as a port")),
    }
}

#[derive(Default)]
struct Pair {
    error: Option<Stream>,
    data: Option<Stream>,
}

/// Serve port-forward streams until the client closes the connection.
pub async fn serve_spdy(mut session: Session, sandbox_id: String, runtime: Arc<dyn StreamRuntime>) {
    let mut pending: HashMap<String, Pair> = HashMap::new();
    while let Some(s) = session.streams.recv().await {
        let ty = header(&s.headers, "streamtype")
            .unwrap_or_default()
            .to_owned();
        let key = pair_key(s.id, &ty, header(&s.headers, "requestid"));
        let pair = pending.entry(key.clone()).or_default();
        match ty.as_str() {
            "error" => pair.error = Some(s),
            "data" => pair.data = Some(s),
            _ => {
                s.tx.reset(crate::spdy::frame::RST_PROTOCOL_ERROR).await;
                continue;
            }
        }
        if pair.error.is_some() && pair.data.is_some() {
            let pair = pending.remove(&key).expect("pair present");
            let (error, data) = (pair.error.expect("error"), pair.data.expect("data"));
            tokio::spawn(forward(error, data, sandbox_id.clone(), runtime.clone()));
        }
    }
}

async fn forward(error: Stream, data: Stream, sandbox_id: String, runtime: Arc<dyn StreamRuntime>) {
    let port = match parse_port(header(&data.headers, "port")) {
        Ok(p) => p,
        Err(msg) => {
            let _ = error.tx.write(msg.as_bytes()).await;
            error.tx.finish().await;
            data.tx.finish().await;
            return;
        }
    };
    let conn = match runtime.port_forward(&sandbox_id, port).await {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("error forwarding port {port} to pod {sandbox_id}, uid : {e}");
            tracing::info!(pod = %sandbox_id, port, err = %e, "port-forward failed");
            let _ = error.tx.write(msg.as_bytes()).await;
            error.tx.finish().await;
            data.tx.finish().await;
            return;
        }
    };
    let (mut rd, mut wr) = conn.into_split();
    let Stream { mut rx, tx, .. } = data;
    let to_pod = tokio::spawn(async move {
        while let Some(chunk) = rx.recv().await {
            if wr.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx.write(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    tx.finish().await;
    to_pod.abort();
    error.tx.finish().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_pair_by_request_id_else_by_stream_ids() {
        assert_eq!(pair_key(1, "error", Some("0")), "0");
        assert_eq!(pair_key(3, "data", Some("0")), "0");
        assert_eq!(pair_key(5, "error", None), "5");
        assert_eq!(pair_key(7, "data", None), "5");
        assert_eq!(pair_key(7, "data", Some("")), "5");
    }

    #[test]
    fn ports_are_checked() {
        assert_eq!(parse_port(Some("8080")), Ok(8080));
        assert!(parse_port(Some("0")).is_err());
        assert!(parse_port(Some("70000")).unwrap_err().contains("\"70000\""));
        assert!(parse_port(None).is_err());
    }
}
