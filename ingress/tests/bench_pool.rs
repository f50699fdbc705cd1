//! On demand (`cargo test --release -p kinglet-ingress --test bench_pool -- --ignored
//! --nocapture`): what pooled upstream connections save. Requests/s and p50/p99 latency, on
//! loopback without root, straight to a hyper backend vs through the ingress proxy to it,
//! once with a backend that keeps connections alive (the proxy reuses its pooled connection)
//! and once with one that closes each after its answer (a new upstream connection per
//! request: what the proxy did before it pooled). Each client keeps its own connection.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use kinglet_ingress::{CertMap, IngressConfig, IngressProxy, Routes};
use tokio::net::{TcpListener, TcpStream};

const CLIENTS: usize = 8;
const RUN: Duration = Duration::from_secs(3);

/// A backend answering "hello"; with `close`, each connection ends after one answer.
async fn backend(close: bool) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let svc = service_fn(move |_req| async move {
                    let mut r = http::Response::new(Full::new(Bytes::from_static(b"hello\n")));
                    if close {
                        r.headers_mut()
                            .insert(http::header::CONNECTION, "close".parse().unwrap());
                    }
                    Ok::<_, std::convert::Infallible>(r)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

fn routes(ep: SocketAddr) -> Routes {
    let slice: k8s_openapi::api::discovery::v1::EndpointSlice =
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "b-0", "namespace": "default",
                "labels": {"kubernetes.io/service-name": "b"}},
            "addressType": "IPv4",
            "ports": [{"name": "", "port": ep.port(), "protocol": "TCP"}],
            "endpoints": [{"addresses": [ep.ip().to_string()], "conditions": {"ready": true}}],
        }))
        .unwrap();
    let svc = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "b", "namespace": "default"}, "spec": {"ports": [{"port": 80}]},
    }))
    .unwrap();
    let ing = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "i", "namespace": "default"},
        "spec": {"defaultBackend": {"service": {"name": "b", "port": {"number": 80}}}},
    }))
    .unwrap();
    Routes::build(&[ing], &[svc], &[slice])
}

/// CLIENTS keep-alive clients for RUN against `addr`: (requests/s, p50, p99).
async fn load(addr: SocketAddr) -> (f64, Duration, Duration) {
    let deadline = Instant::now() + RUN;
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut sender = None;
            while Instant::now() < deadline {
                if sender.is_none() {
                    let s = TcpStream::connect(addr).await.unwrap();
                    let _ = s.set_nodelay(true);
                    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
                        .await
                        .unwrap();
                    tokio::spawn(conn);
                    sender = Some(tx);
                }
                let tx = sender.as_mut().unwrap();
                let req = http::Request::get("/")
                    .header("host", "b.test")
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let t = Instant::now();
                let ok = match tx.send_request(req).await {
                    Ok(r) => r.into_body().collect().await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    lat.push(t.elapsed());
                } else {
                    sender = None;
                }
                // A backend that closed: the next request needs a new connection.
                if sender.as_ref().is_some_and(|s| s.is_closed()) {
                    sender = None;
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let pct = |p: usize| all[(all.len() * p / 100).min(all.len() - 1)];
    (all.len() as f64 / RUN.as_secs_f64(), pct(50), pct(99))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark, run on demand"]
async fn pooled_upstream_connections_vs_one_per_request() {
    for (close, what) in [
        (false, "keep-alive backend (pooled)"),
        (
            true,
            "closing backend (new upstream connection per request)",
        ),
    ] {
        let be = backend(close).await;
        let p = IngressProxy::new(IngressConfig {
            http: Some("127.0.0.1:0".parse().unwrap()),
            https: None,
        })
        .unwrap();
        p.update(routes(be), CertMap::default(), true)
            .await
            .unwrap();
        let proxy = p.local_addrs()[0];
        let (d_rps, d50, d99) = load(be).await;
        let (p_rps, p50, p99) = load(proxy).await;
        eprintln!(
            "FIGURE ingress, {what}: direct {d_rps:.0} req/s p50 {d50:?} p99 {d99:?}; \
             through the proxy {p_rps:.0} req/s p50 {p50:?} p99 {p99:?} ({CLIENTS} clients, {RUN:?})"
        );
        p.update(Routes::default(), CertMap::default(), false)
            .await
            .unwrap();
    }
}
