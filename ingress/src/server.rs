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

/// What the request handlers share: the current routes, the certificates, and the tasks
/// driving upstream connections (aborted with the listeners).
pub(crate) struct Shared {
    routes: RwLock<Arc<Routes>>,
    upstream: Mutex<JoinSet<()>>,
}

impl Shared {
    pub(crate) fn routes(&self) -> Arc<Routes> {
        self.routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
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
        })
    }

    /// The certificates in use now.
    pub fn certs(&self) -> Arc<CertMap> {
        self.certs.current()
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
        *self
            .shared
            .routes
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(routes);
        self.certs.set(certs);
        if !active {
            if let Some(mut set) = self
                .listeners
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
            {
                set.abort_all();
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
        for (addr, tls) in [(self.cfg.http, false), (self.cfg.https, true)] {
            let Some(addr) = addr else { continue };
            let l = TcpListener::bind(addr)
                .await
                .map_err(|source| IngressError::Bind { addr, source })?;
            let port = l.local_addr().map(|a| a.port()).unwrap_or(addr.port());
            let tls = tls.then(|| tokio_rustls::TlsAcceptor::from(self.tls.clone()));
            tracing::info!(%addr, tls = tls.is_some(), "ingress listener bound");
            set.spawn(accept_loop(l, tls, self.shared.clone(), port));
        }
        *self.listeners.lock().unwrap_or_else(|e| e.into_inner()) = Some(set);
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
