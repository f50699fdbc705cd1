//! The HTTP side: a hyper server on a TCP address (loopback by default) that maps
//! `/exec/<token>`, `/attach/<token>` and `/portforward/<token>` to the cached request,
//! negotiates the subprotocol and upgrades the connection to SPDY/3.1
//! (`X-Stream-Protocol-Version`) or WebSocket (`Sec-WebSocket-Protocol`), as the kubelet's
//! streaming server does.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::cache::{Request, RequestCache};
use crate::spdy::session::Session;
use crate::{portforward, remotecommand, websocket, StreamRuntime, StreamingError};

type Response = hyper::Response<Full<Bytes>>;

const PROTOCOL_HEADER: &str = "x-stream-protocol-version";
const ACCEPTED_HEADER: &str = "x-accepted-stream-protocol-versions";
const SPDY: &str = "SPDY/3.1";

struct Inner {
    cache: RequestCache,
    runtime: Arc<dyn StreamRuntime>,
    base: String,
}

/// The running server; cheap to clone.
#[derive(Clone)]
pub struct StreamServer {
    inner: Arc<Inner>,
    addr: SocketAddr,
}

impl StreamServer {
    /// Bind `addr` (port 0: any free port) and serve in the background.
    pub async fn start(
        addr: SocketAddr,
        runtime: Arc<dyn StreamRuntime>,
    ) -> Result<StreamServer, StreamingError> {
        let bind = |source| StreamingError::Bind {
            addr: addr.to_string(),
            source,
        };
        let listener = TcpListener::bind(addr).await.map_err(bind)?;
        let addr = listener.local_addr().map_err(bind)?;
        let inner = Arc::new(Inner {
            cache: RequestCache::default(),
            runtime,
            base: format!("http://{addr}"),
        });
        tokio::spawn(accept_loop(listener, inner.clone()));
        tracing::info!(%addr, "streaming server listening");
        Ok(StreamServer { inner, addr })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cache `req` and return the URL the client connects to.
    pub fn url_for(&self, req: Request) -> Result<String, StreamingError> {
        let kind = req.kind();
        let token = self.inner.cache.insert(req)?;
        Ok(format!("{}/{kind}/{token}", self.inner.base))
    }
}

async fn accept_loop(listener: TcpListener, inner: Arc<Inner>) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(err = %e, "streaming server accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let inner = inner.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let inner = inner.clone();
                async move { Ok::<_, Infallible>(handle(inner, req)) }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .with_upgrades()
                .await
            {
                tracing::debug!(%peer, err = %e, "streaming connection ended");
            }
        });
    }
}

fn plain(status: StatusCode, msg: impl Into<String>) -> Response {
    let mut r = hyper::Response::new(Full::new(Bytes::from(msg.into())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Every value of a possibly repeated, comma-separated header.
fn header_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect()
}

/// The first protocol the client offers that the server speaks.
pub fn negotiate(client: &[String], server: &[&str]) -> Option<String> {
    client
        .iter()
        .find(|c| server.contains(&c.as_str()))
        .cloned()
}

fn handle(inner: Arc<Inner>, mut req: hyper::Request<Incoming>) -> Response {
    if req.method() != Method::GET && req.method() != Method::POST {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "use GET or POST");
    }
    let path = req.uri().path().trim_start_matches('/').to_owned();
    let Some((kind, token)) = path.split_once('/') else {
        return plain(StatusCode::NOT_FOUND, "404 page not found");
    };
    if !matches!(kind, "exec" | "attach" | "portforward") {
        return plain(StatusCode::NOT_FOUND, "404 page not found");
    }
    let Some(request) = inner.cache.consume(token) else {
        return plain(
            StatusCode::NOT_FOUND,
            format!("{kind} token {token:?} is unknown or expired; ask for a new URL"),
        );
    };
    if request.kind() != kind {
        return plain(
            StatusCode::NOT_FOUND,
            format!("token {token:?} is not for {kind}"),
        );
    }
    let upgrade = header_values(req.headers(), "upgrade");
    if upgrade.iter().any(|u| u.eq_ignore_ascii_case("websocket")) {
        return upgrade_websocket(inner, req, request);
    }
    if !upgrade.iter().any(|u| u.eq_ignore_ascii_case(SPDY)) {
        return plain(
            StatusCode::BAD_REQUEST,
            format!("unable to upgrade: the Upgrade header must be {SPDY} or websocket"),
        );
    }
    let server: &[&str] = match request {
        Request::PortForward { .. } => &[portforward::SPDY_PROTOCOL],
        _ => remotecommand::SPDY_PROTOCOLS,
    };
    let client = header_values(req.headers(), PROTOCOL_HEADER);
    let Some(protocol) = negotiate(&client, server) else {
        return refuse(&client, server);
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let proto = protocol.clone();
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::info!(err = %e, "streaming upgrade failed");
                return;
            }
        };
        let session = Session::start(TokioIo::new(upgraded));
        match request {
            Request::PortForward { sandbox_id } => {
                portforward::serve_spdy(session, sandbox_id, inner.runtime.clone()).await
            }
            other => remotecommand::serve_spdy(session, &proto, other, inner.runtime.clone()).await,
        }
    });
    let mut r = hyper::Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static(SPDY));
    if let Ok(v) = HeaderValue::from_str(&protocol) {
        h.insert(PROTOCOL_HEADER, v);
    }
    r
}

fn refuse(client: &[String], server: &[&str]) -> Response {
    let mut r = plain(
        StatusCode::FORBIDDEN,
        format!(
            "unable to upgrade: unable to negotiate protocol: client supports {client:?}, server accepts {server:?}"
        ),
    );
    if let Ok(v) = HeaderValue::from_str(&server.join(", ")) {
        r.headers_mut().insert(ACCEPTED_HEADER, v);
    }
    r
}

/// The WebSocket upgrade (RFC 6455 handshake; the subprotocol picks the framing).
fn upgrade_websocket(
    inner: Arc<Inner>,
    mut req: hyper::Request<Incoming>,
    request: Request,
) -> Response {
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    use tokio_tungstenite::tungstenite::protocol::Role;

    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return plain(
            StatusCode::BAD_REQUEST,
            "websocket upgrade without Sec-WebSocket-Key",
        );
    };
    let server: &[&str] = match request {
        Request::PortForward { .. } => websocket::PORTFORWARD_PROTOCOLS,
        _ => websocket::REMOTECOMMAND_PROTOCOLS,
    };
    let client = header_values(req.headers(), "sec-websocket-protocol");
    let Some(protocol) = negotiate(&client, server) else {
        return refuse(&client, server);
    };
    let ports = if matches!(request, Request::PortForward { .. })
        && protocol == websocket::PORTFORWARD_CHANNELS
    {
        match websocket::query_ports(req.uri().query()) {
            Ok(p) => p,
            Err(msg) => return plain(StatusCode::BAD_REQUEST, msg),
        }
    } else {
        Vec::new()
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let proto = protocol.clone();
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::info!(err = %e, "websocket upgrade failed");
                return;
            }
        };
        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            None,
        )
        .await;
        let rt = inner.runtime.clone();
        match request {
            Request::PortForward { sandbox_id } if proto == websocket::PORTFORWARD_SPDY_TUNNEL => {
                websocket::serve_portforward_spdy_tunnel(ws, sandbox_id, rt).await
            }
            Request::PortForward { sandbox_id } => {
                websocket::serve_portforward_channels(ws, ports, sandbox_id, rt).await
            }
            other => websocket::serve_remotecommand(ws, &proto, other, rt).await,
        }
    });
    let mut r = hyper::Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert("sec-websocket-accept", v);
    }
    if let Ok(v) = HeaderValue::from_str(&protocol) {
        h.insert("sec-websocket-protocol", v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_protocol_the_client_offers_and_the_server_speaks_wins() {
        let client: Vec<String> = ["v5.channel.k8s.io", "v4.channel.k8s.io"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            negotiate(&client, remotecommand::SPDY_PROTOCOLS).as_deref(),
            Some("v5.channel.k8s.io")
        );
        let old = vec!["channel.k8s.io".to_owned()];
        assert_eq!(negotiate(&old, remotecommand::SPDY_PROTOCOLS), None);
        let mut h = HeaderMap::new();
        h.append(
            PROTOCOL_HEADER,
            HeaderValue::from_static("v4.channel.k8s.io, v3.channel.k8s.io"),
        );
        h.append(
            PROTOCOL_HEADER,
            HeaderValue::from_static("v2.channel.k8s.io"),
        );
        assert_eq!(
            header_values(&h, PROTOCOL_HEADER),
            [
                "v4.channel.k8s.io",
                "v3.channel.k8s.io",
                "v2.channel.k8s.io"
            ]
        );
    }
}
