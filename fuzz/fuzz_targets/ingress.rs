//! Ingress: raw client bytes (HTTP/1.1 or HTTP/2 requests: Host, path, headers, upgrades)
//! sent to the real proxy listening on loopback, routed by a table with exact, wildcard and
//! host-less rules and a default backend, to a backend on loopback that answers what the input
//! says. Each request must be answered or closed in bounded time.
//!
//! The input is `REQUEST [\n--\n BACKEND-RESPONSE]`; without a response the backend answers
//! `200 ok` and closes.
#![no_main]
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use kinglet_ingress::{CertMap, IngressConfig, IngressProxy, Routes};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

/// What the backend answers.
static RESPONSE: Mutex<Vec<u8>> = Mutex::new(Vec::new());
const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
/// Longer than this for one exchange is a hang.
const BOUND: Duration = Duration::from_secs(5);

/// A backend: reads the request head (up to 64 KiB), answers, closes.
async fn backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                    match c.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let r = RESPONSE.lock().unwrap().clone();
                let _ = c.write_all(if r.is_empty() { OK } else { &r }).await;
                let _ = c.shutdown().await;
            });
        }
    });
    addr
}

fn routes(be: SocketAddr) -> Routes {
    let backend = |svc: &str| serde_json::json!({"service": {"name": svc, "port": {"number": 80}}});
    let ing: Ingress = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "fuzz", "namespace": "default"},
        "spec": {
            "defaultBackend": backend("gone"),
            "rules": [
                {"host": "app.example", "http": {"paths": [
                    {"path": "/api", "pathType": "Prefix", "backend": backend("api")},
                    {"path": "/", "pathType": "Exact", "backend": backend("web")}]}},
                {"host": "*.wild.example", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": backend("api")}]}},
                {"http": {"paths": [
                    {"path": "/static", "pathType": "Prefix", "backend": backend("web")}]}}
            ]
        }
    }))
    .unwrap();
    let svc = |name: &str| -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"ports": [{"name": "http", "port": 80}]}
        }))
        .unwrap()
    };
    // `api` has a refusing endpoint before the live one (the proxy moves on); `gone` none.
    let slice = |name: &str, ips: &[&str], port: u16| -> EndpointSlice {
        let eps: Vec<serde_json::Value> = ips
            .iter()
            .map(|ip| serde_json::json!({"addresses": [ip], "conditions": {"ready": true}}))
            .collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("{name}-x"), "namespace": "default",
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            "endpoints": eps
        }))
        .unwrap()
    };
    let services = [svc("api"), svc("web"), svc("gone")];
    let slices = [
        slice("api", &["127.0.0.2", "127.0.0.1"], be.port()),
        slice("web", &["127.0.0.1"], be.port()),
    ];
    Routes::build(&[ing], &services, &slices)
}

fn proxy() -> &'static (Runtime, IngressProxy, SocketAddr) {
    static S: OnceLock<(Runtime, IngressProxy, SocketAddr)> = OnceLock::new();
    S.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (proxy, addr) = rt.block_on(async {
            let be = backend().await;
            let proxy = IngressProxy::new(IngressConfig {
                http: Some("127.0.0.1:0".parse().unwrap()),
                https: None,
            })
            .unwrap();
            proxy
                .update(routes(be), CertMap::default(), true)
                .await
                .unwrap();
            let addr = proxy.local_addrs()[0];
            (proxy, addr)
        });
        (rt, proxy, addr)
    })
}

fuzz_target!(|data: &[u8]| {
    let sep = b"\n--\n";
    let (request, response) = match data.windows(sep.len()).position(|w| w == sep) {
        Some(at) => (&data[..at], &data[at + sep.len()..]),
        None => (data, &[][..]),
    };
    *RESPONSE.lock().unwrap() = response.to_vec();
    let (rt, _proxy, addr) = proxy();
    let answered = rt.block_on(async {
        tokio::time::timeout(BOUND, async {
            let mut c = TcpStream::connect(addr).await.unwrap();
            // The proxy may close before it has read everything: that is an answer too.
            let _ = c.write_all(request).await;
            let _ = c.shutdown().await;
            let mut out = Vec::new();
            let _ = c.read_to_end(&mut out).await;
            out
        })
        .await
    });
    let out = answered.expect("the proxy answered or closed the connection in bounded time");
    // Whatever came back over HTTP/1 is a response.
    if !out.is_empty() && request.starts_with(b"GET ") {
        assert!(out.starts_with(b"HTTP/1."), "not an HTTP response: {out:?}");
    }
});
