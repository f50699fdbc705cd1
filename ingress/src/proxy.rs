//! One proxied request: route it, send it through the backend's pooled connections
//! (`upstream`: a ready endpoint, another one when a connection fails), forward it over HTTP/1.1 without hop-by-hop headers and with X-Forwarded-For,
//! -Proto, -Host and -Port, and stream the answer back; a `101 Switching Protocols` answer
//! (WebSocket) joins the two upgraded connections byte for byte.

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::routes::{Backend, Route};
use crate::server::Shared;

pub(crate) type Body = BoxBody<Bytes, hyper::Error>;

/// Headers meaningful for one connection only (RFC 9110 §7.6.1), never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn text(status: StatusCode, msg: &str) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(format!("{msg}\n")))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The request's host without port: the URI's authority (HTTP/2), else the Host header.
fn host_of(req: &Request<Incoming>) -> String {
    let raw = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    strip_port(&raw).to_ascii_lowercase()
}

fn strip_port(h: &str) -> &str {
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    h.rsplit_once(':').map_or(h, |(host, _)| host)
}

/// Whether the request asks for a protocol upgrade (`Connection: upgrade` + `Upgrade`).
fn wants_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE)
        && h.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
        })
}

/// Drop hop-by-hop headers and those the Connection header names.
fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        h.remove(*n);
    }
}

/// Serve one request that came in on a listener of `scheme` ("http"/"https") from `client`.
pub(crate) async fn handle(
    shared: &Shared,
    mut req: Request<Incoming>,
    client: SocketAddr,
    scheme: &'static str,
    local_port: u16,
) -> Response<Body> {
    let host = host_of(&req);
    let (routes, upstreams) = shared.routes_and_upstreams();
    let backend: Backend = match routes.route(&host, req.uri().path()) {
        Route::Backend(b) => b.clone(),
        Route::NotFound => return text(StatusCode::NOT_FOUND, "404 page not found"),
    };
    drop(routes);
    if backend.endpoints.is_empty() {
        tracing::debug!(host, service = %backend.service, "no ready endpoint");
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "503 Service Unavailable: no ready endpoint for {}",
                backend.service
            ),
        );
    }
    let client_upgrade = wants_upgrade(req.headers()).then(|| hyper::upgrade::on(&mut req));
    let forwarded = Forwarded {
        client,
        scheme,
        host,
        port: local_port,
    };
    let upstream_req = upstream_request(req, &forwarded);
    let mut resp = match upstreams.send(&backend, upstream_req).await {
        Ok(r) => r,
        Err(e) if e.is_connect() => {
            return text(
                StatusCode::BAD_GATEWAY,
                &format!(
                    "502 Bad Gateway: no endpoint of {} accepted a connection",
                    backend.service
                ),
            );
        }
        Err(e) => {
            tracing::warn!(service = %backend.service, err = %e, "upstream request failed");
            return text(
                StatusCode::BAD_GATEWAY,
                "502 Bad Gateway: the backend failed",
            );
        }
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            let backend_upgrade = hyper::upgrade::on(&mut resp);
            let service = backend.service.clone();
            shared.spawn_upstream(async move {
                match tokio::try_join!(client_upgrade, backend_upgrade) {
                    Ok((c, b)) => {
                        let (mut c, mut b) = (TokioIo::new(c), TokioIo::new(b));
                        let _ = tokio::io::copy_bidirectional(&mut c, &mut b).await;
                    }
                    Err(e) => tracing::debug!(service, err = %e, "upgrade failed"),
                }
            });
        }
        let (parts, body) = resp.into_parts();
        return Response::from_parts(parts, body.boxed());
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, body.boxed())
}

/// Who asked, as the X-Forwarded-* headers tell the backend.
struct Forwarded {
    client: SocketAddr,
    scheme: &'static str,
    host: String,
    port: u16,
}

/// The request as the backend sees it: origin-form URI, HTTP/1.1, end-to-end headers only
/// (plus the upgrade the client asked for), X-Forwarded-* from what the proxy saw.
fn upstream_request(req: Request<Incoming>, f: &Forwarded) -> Request<Incoming> {
    let upgrade = wants_upgrade(req.headers());
    let upgrade_proto = req.headers().get(header::UPGRADE).cloned();
    let (mut parts, body) = req.into_parts();
    let authority_host = parts.uri.authority().map(|a| a.as_str().to_owned());
    let path_q = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    parts.uri = path_q.parse().unwrap_or_default();
    parts.version = http::Version::HTTP_11;
    let h = &mut parts.headers;
    strip_hop_by_hop(h);
    if let (false, Some(a)) = (h.contains_key(header::HOST), authority_host) {
        if let Ok(v) = HeaderValue::from_str(&a) {
            h.insert(header::HOST, v);
        }
    }
    if let (true, Some(p)) = (upgrade, upgrade_proto) {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, p);
    }
    // The client as the proxy saw it; what the client claimed is not trusted (ingress-nginx's
    // default without use-forwarded-headers).
    let set = |h: &mut HeaderMap, name: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(name, v);
        }
    };
    set(h, "x-forwarded-for", f.client.ip().to_string());
    set(h, "x-real-ip", f.client.ip().to_string());
    set(h, "x-forwarded-proto", f.scheme.to_owned());
    set(h, "x-forwarded-host", f.host.clone());
    set(h, "x-forwarded-port", f.port.to_string());
    Request::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("transfer-encoding", "chunked"),
            ("accept", "*/*"),
        ] {
            h.append(k, HeaderValue::from_static(v));
        }
        assert!(!wants_upgrade(&h));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("accept"));
        let mut u = HeaderMap::new();
        u.insert(
            "connection",
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        u.insert("upgrade", HeaderValue::from_static("websocket"));
        assert!(wants_upgrade(&u));
    }

    #[test]
    fn ports_come_off_hosts() {
        assert_eq!(strip_port("a.example.com:8443"), "a.example.com");
        assert_eq!(strip_port("a.example.com"), "a.example.com");
        assert_eq!(strip_port("[::1]:80"), "::1");
    }
}
