//! The proxy's listeners: plain HTTP and HTTPS (rustls, SNI through [`CertResolver`], ALPN
//! `h2` and `http/1.1`), each serving HTTP/1.1 and HTTP/2 with upgrades. They are bound while
//! at least one Ingress of Kinglet's class exists and closed, with every connection they
//! accepted, when none is left. The routes and certificates are swapped in place.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::routes::Routes;
use crate::tls::{CertMap, CertResolver};
use crate::upstream::Upstreams;
use crate::IngressError;

/// Where the proxy listens; None leaves that listener off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressConfig {
    pub http: Option<SocketAddr>,
    pub https: Option<SocketAddr>,
}

impl Default for IngressConfig {
    /// Every address, ports 80 and 443.
    fn default() -> Self {
        IngressConfig {
            http: Some(SocketAddr::from(([0, 0, 0, 0], 80))),
            https: Some(SocketAddr::from(([0, 0, 0, 0], 443))),
        }
    }
}

/// What the request handlers share: the current routes with their pool of upstream
/// connections, and the WebSocket tunnels' tasks (aborted with the listeners).
pub(crate) struct Shared {
    /// The routes and the pooled connections to their endpoints, swapped together.
    routes: RwLock<(Arc<Routes>, Arc<Upstreams>)>,
    upstream: Mutex<JoinSet<()>>,
}

impl Shared {
    pub(crate) fn routes_and_upstreams(&self) -> (Arc<Routes>, Arc<Upstreams>) {
        self.routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Swap in `routes`; a new connection pool (the old one's idle connections closed) when
    /// their endpoints differ — so also when the last Ingress goes.
    fn set_routes(&self, routes: Routes) {
        let mut cur = self.routes.write().unwrap_or_else(|e| e.into_inner());
        if !cur.1.serves(&routes) {
            cur.1 = Arc::new(Upstreams::new(&routes));
        }
        cur.0 = Arc::new(routes);
    }

    pub(crate) fn spawn_upstream(&self, f: impl Future<Output = ()> + Send + 'static) {
        let mut set = self.upstream.lock().unwrap_or_else(|e| e.into_inner());
        // Reap finished tasks so the set does not grow with the requests served.
        while set.try_join_next().is_some() {}
        set.spawn(f);
    }
}

/// The ingress proxy.
pub struct IngressProxy {
    cfg: IngressConfig,
    shared: Arc<Shared>,
    certs: Arc<CertResolver>,
    tls: Arc<rustls::ServerConfig>,
    /// The accept loops while listening (each owns its connections' tasks).
    listeners: Mutex<Option<JoinSet<()>>>,
    /// The addresses bound (port 0 in the config: the one the kernel chose).
    bound: Mutex<Vec<SocketAddr>>,
}

impl IngressProxy {
    /// A proxy that does not listen yet; generates the default certificate.
    pub fn new(cfg: IngressConfig) -> Result<IngressProxy, IngressError> {
        let certs = Arc::new(CertResolver::new()?);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| IngressError::Certificate {
                reason: format!("TLS configuration: {e}"),
            })?
            .with_no_client_auth()
            .with_cert_resolver(certs.clone());
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(IngressProxy {
            cfg,
            shared: Arc::new(Shared {
                routes: RwLock::default(),
                upstream: Mutex::new(JoinSet::new()),
            }),
            certs,
            tls: Arc::new(tls),
            listeners: Mutex::new(None),
            bound: Mutex::default(),
        })
    }

    /// The certificates in use now.
    pub fn certs(&self) -> Arc<CertMap> {
        self.certs.current()
    }

    /// The addresses listened on now (HTTP first), empty when closed.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.bound.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether the listeners are bound.
    pub fn listening(&self) -> bool {
        self.listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Install `routes` and `certs`; bind the listeners when `active` (some Ingress is
    /// Kinglet's) and they are not, close them when not `active`. A failed bind is an error
    /// (the caller retries at its next pass) and leaves nothing bound.
    pub async fn update(
        &self,
        routes: Routes,
        certs: CertMap,
        active: bool,
    ) -> Result<(), IngressError> {
        self.shared.set_routes(routes);
        self.certs.set(certs);
        if !active {
            if let Some(mut set) = self
                .listeners
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
            {
                set.abort_all();
                self.bound.lock().unwrap_or_else(|e| e.into_inner()).clear();
                self.shared
                    .upstream
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .abort_all();
                tracing::info!("no Ingress left: ingress listeners closed");
            }
            return Ok(());
        }
        if self.listening() {
            return Ok(());
        }
        let mut set = JoinSet::new();
        let mut bound = Vec::new();
        for (addr, tls) in [(self.cfg.http, false), (self.cfg.https, true)] {
            let Some(addr) = addr else { continue };
            let l = TcpListener::bind(addr)
                .await
                .map_err(|source| IngressError::Bind { addr, source })?;
            let local = l.local_addr().unwrap_or(addr);
            bound.push(local);
            let port = local.port();
            let tls = tls.then(|| tokio_rustls::TlsAcceptor::from(self.tls.clone()));
            tracing::info!(%addr, tls = tls.is_some(), "ingress listener bound");
            set.spawn(accept_loop(l, tls, self.shared.clone(), port));
        }
        *self.listeners.lock().unwrap_or_else(|e| e.into_inner()) = Some(set);
        *self.bound.lock().unwrap_or_else(|e| e.into_inner()) = bound;
        Ok(())
    }
}

async fn accept_loop(
    l: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    port: u16,
) {
    // Connections live in this set: closing the listener (aborting this task) ends them.
    let mut conns = JoinSet::new();
    loop {
        let (stream, client) = tokio::select! {
            r = l.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(err = %e, "ingress accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let _ = stream.set_nodelay(true);
        let (shared, tls) = (shared.clone(), tls.clone());
        conns.spawn(async move {
            let scheme = if tls.is_some() { "https" } else { "http" };
            let svc = service_fn(move |req| {
                let shared = shared.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        crate::proxy::handle(&shared, req, client, scheme, port).await,
                    )
                }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            let res = match tls {
                None => {
                    builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await
                }
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(s) => {
                        builder
                            .serve_connection_with_upgrades(TokioIo::new(s), svc)
                            .await
                    }
                    Err(e) => {
                        tracing::debug!(%client, err = %e, "TLS handshake failed");
                        return;
                    }
                },
            };
            if let Err(e) = res {
                tracing::debug!(%client, err = %e, "ingress connection ended");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    //! The proxy on loopback against a hyper backend, without root: routing, 404 and 503,
    //! forwarded and hop-by-hop headers, the retry past a refusing endpoint, and the
    //! listeners closing.

    use std::io::{Read, Write};

    use super::*;

    /// A backend answering every request with its request headers, one per line (keeping
    /// connections alive); the number of connections it accepted.
    async fn backend() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (s, _) = l.accept().await.unwrap();
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                        let mut out = format!("path={}\n", req.uri().path());
                        for (k, v) in req.headers() {
                            out.push_str(&format!("{k}={}\n", v.to_str().unwrap_or("")));
                        }
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from(out)),
                        ))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        (addr, accepted)
    }

    fn routes(endpoints: &[SocketAddr]) -> Routes {
        let eps: Vec<serde_json::Value> = endpoints
            .iter()
            .map(|e| serde_json::json!({"addresses": [e.ip().to_string()], "conditions": {"ready": true}}))
            .collect();
        // Each endpoint its own target port: one slice per endpoint.
        let slices: Vec<k8s_openapi::api::discovery::v1::EndpointSlice> = endpoints
            .iter()
            .zip(eps)
            .enumerate()
            .map(|(i, (e, ep))| {
                serde_json::from_value(serde_json::json!({
                    "metadata": {"name": format!("b-{i}"), "namespace": "default",
                        "labels": {"kubernetes.io/service-name": "b"}},
                    "addressType": "IPv4",
                    "ports": [{"name": "", "port": e.port(), "protocol": "TCP"}],
                    "endpoints": [ep],
                }))
                .unwrap()
            })
            .collect();
        let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "b", "namespace": "default"},
            "spec": {"ports": [{"port": 80}]},
        }))
        .unwrap();
        let ing: k8s_openapi::api::networking::v1::Ingress =
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "i", "namespace": "default"},
                "spec": {"rules": [
                    {"host": "b.test", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                        "backend": {"service": {"name": "b", "port": {"number": 80}}}}]}},
                    {"host": "none.test", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                        "backend": {"service": {"name": "missing", "port": {"number": 80}}}}]}},
                ]},
            }))
            .unwrap();
        Routes::build(&[ing], &[svc], &slices)
    }

    /// One HTTP/1.1 request; the whole answer.
    fn request(addr: SocketAddr, head: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn proxies_with_forwarded_headers_retries_and_closes() {
        let (live, _) = backend().await;
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let p = IngressProxy::new(IngressConfig {
            http: Some("127.0.0.1:0".parse().unwrap()),
            https: None,
        })
        .unwrap();
        // The refusing endpoint and the live one, round robin: half the requests need the retry.
        p.update(routes(&[dead, live]), CertMap::default(), true)
            .await
            .unwrap();
        let addr = p.local_addrs()[0];
        for _ in 0..4 {
            let out = tokio::task::spawn_blocking(move || {
                request(addr, "GET /x?q=1 HTTP/1.1\r\nHost: b.test\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: close, x-drop\r\nX-Drop: 1\r\nKeep-Alive: 5\r\n\r\n")
            })
            .await
            .unwrap();
            assert!(out.starts_with("HTTP/1.1 200"), "{out}");
            for want in [
                "path=/x",
                "host=b.test",
                "x-forwarded-for=127.0.0.1",
                "x-forwarded-proto=http",
                "x-forwarded-host=b.test",
            ] {
                assert!(out.contains(want), "{want} in {out}");
            }
            for gone in ["6.6.6.6", "x-drop", "keep-alive"] {
                assert!(!out.contains(gone), "{gone} in {out}");
            }
        }
        let out = tokio::task::spawn_blocking(move || {
            request(
                addr,
                "GET / HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n",
            )
        })
        .await
        .unwrap();
        assert!(out.starts_with("HTTP/1.1 404"), "{out}");
        let out = tokio::task::spawn_blocking(move || {
            request(
                addr,
                "GET / HTTP/1.1\r\nHost: none.test\r\nConnection: close\r\n\r\n",
            )
        })
        .await
        .unwrap();
        assert!(out.starts_with("HTTP/1.1 503"), "{out}");
        // Only the refusing endpoint: 502.
        p.update(routes(&[dead]), CertMap::default(), true)
            .await
            .unwrap();
        let out = tokio::task::spawn_blocking(move || {
            request(
                addr,
                "GET / HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n",
            )
        })
        .await
        .unwrap();
        assert!(out.starts_with("HTTP/1.1 502"), "{out}");
        // No Ingress left: the listener is closed.
        p.update(Routes::default(), CertMap::default(), false)
            .await
            .unwrap();
        assert!(p.local_addrs().is_empty());
        let mut closed = false;
        for _ in 0..50 {
            if std::net::TcpStream::connect(addr).is_err() {
                closed = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(closed, "listener still accepting");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn upstream_connections_are_reused_until_the_endpoints_change() {
        let (live, accepted) = backend().await;
        let p = IngressProxy::new(IngressConfig {
            http: Some("127.0.0.1:0".parse().unwrap()),
            https: None,
        })
        .unwrap();
        p.update(routes(&[live]), CertMap::default(), true)
            .await
            .unwrap();
        let addr = p.local_addrs()[0];
        let get = move || {
            tokio::task::spawn_blocking(move || {
                request(
                    addr,
                    "GET / HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n",
                )
            })
        };
        for _ in 0..5 {
            assert!(get().await.unwrap().starts_with("HTTP/1.1 200"));
        }
        // Five client connections, one upstream connection.
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
        // The same endpoints again: the pool stays.
        p.update(routes(&[live]), CertMap::default(), true)
            .await
            .unwrap();
        assert!(get().await.unwrap().starts_with("HTTP/1.1 200"));
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
        // The endpoints change: a new pool, a new connection.
        let (other, _) = backend().await;
        p.update(routes(&[live, other]), CertMap::default(), true)
            .await
            .unwrap();
        for _ in 0..4 {
            assert!(get().await.unwrap().starts_with("HTTP/1.1 200"));
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
