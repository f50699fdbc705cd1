//! The network actions probes and lifecycle hooks share: resolving a container port, an
//! HTTP(S) GET as the kubelet makes it, and Go-style dial errors (the kubelet's event texts
//! quote Go's). No state; everything is bounded by the caller's timeout.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, HTTPGetAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `host:port`, with brackets around an IPv6 address (Go's `net.JoinHostPort`).
pub(crate) fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A failed TCP connect as Go's dialer reports it: `dial tcp 10.85.0.7:80: connect:
/// connection refused`.
pub(crate) fn dial_error(addr: &str, e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => format!(
            "dial tcp {addr}: connect: {}",
            nix::errno::Errno::from_raw(n).desc().to_lowercase()
        ),
        None => format!("dial tcp {addr}: {e}"),
    }
}

/// A container port by number or by the name of one of its `ports`.
pub(crate) fn port_of(c: &Container, p: &IntOrString) -> Option<u16> {
    match p {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => name.parse().ok().or_else(|| {
            c.ports
                .iter()
                .flatten()
                .find(|cp| cp.name.as_deref() == Some(name.as_str()))
                .and_then(|cp| u16::try_from(cp.container_port).ok())
        }),
    }
}

/// Why an HTTP GET did not succeed.
#[derive(Debug)]
pub(crate) enum HttpError {
    /// The port could not be resolved: the request was never made.
    Port(String),
    /// The request failed or answered outside 2xx/3xx, in the kubelet's words.
    Failed(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Port(m) | HttpError::Failed(m) => f.write_str(m),
        }
    }
}

/// The User-Agent of probes, as the kubelet of the API level Kinglet follows sends it.
pub(crate) const PROBE_AGENT: &str = "kube-probe/1.34";
/// The User-Agent of httpGet lifecycle hooks.
pub(crate) const HOOK_AGENT: &str = "kube-lifecycle/1.34";

/// An HTTP GET as probes and hooks make it (`scheme: HTTPS` over TLS without verifying the
/// certificate, as the kubelet does): success on a 2xx or 3xx status.
pub(crate) async fn http_get(
    c: &Container,
    g: &HTTPGetAction,
    host: &str,
    timeout: Duration,
    agent: &str,
) -> Result<(), HttpError> {
    let Some(port) = port_of(c, &g.port) else {
        return Err(HttpError::Port(format!(
            "unable to resolve port {:?}",
            g.port
        )));
    };
    let h = g.host.clone().unwrap_or_else(|| host.to_owned());
    let addr = join_host_port(&h, port);
    let mut path = g.path.clone().unwrap_or_default();
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    if g.scheme.as_deref() == Some("HTTPS") {
        return https_get(&format!("https://{addr}{path}"), g, timeout, agent).await;
    }
    let url = format!("http://{addr}{path}");
    let headers = g.http_headers.iter().flatten();
    let mut req = format!("GET {path} HTTP/1.1\r\n");
    if !headers
        .clone()
        .any(|hd| hd.name.eq_ignore_ascii_case("host"))
    {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    req.push_str(&format!("User-Agent: {agent}\r\nConnection: close\r\n"));
    for hd in headers {
        req.push_str(&format!("{}: {}\r\n", hd.name, hd.value));
    }
    req.push_str("\r\n");
    let fut = async {
        let mut s = tokio::net::TcpStream::connect((h.as_str(), port))
            .await
            .map_err(|e| dial_error(&addr, &e))?;
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 64];
        let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("EOF".to_owned());
        }
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    let line = match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(line)) => line,
        Ok(Err(e)) => return Err(HttpError::Failed(format!("Get {url:?}: {e}"))),
        Err(_) => {
            return Err(HttpError::Failed(format!(
                "Get {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            )))
        }
    };
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(HttpError::Failed(format!(
            "HTTP probe failed with statuscode: {code}"
        )))
    }
}

/// `http_get` for `scheme: HTTPS`: redirects followed (at most 10), no proxy, the
/// certificate not verified (probes target the pod's own endpoints, as in Kubernetes).
async fn https_get(
    url: &str,
    g: &HTTPGetAction,
    timeout: Duration,
    agent: &str,
) -> Result<(), HttpError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let failed = |e: String| HttpError::Failed(format!("Get {url:?}: {e}"));
    let mut headers = reqwest::header::HeaderMap::new();
    for hd in g.http_headers.iter().flatten() {
        let name = reqwest::header::HeaderName::from_bytes(hd.name.as_bytes());
        let value = reqwest::header::HeaderValue::from_str(&hd.value);
        if let (Ok(n), Ok(v)) = (name, value) {
            headers.append(n, v);
        }
    }
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::limited(10))
        .timeout(timeout)
        .user_agent(agent)
        .default_headers(headers)
        .build()
        .map_err(|e| failed(crate::error::chain(&e)))?;
    match client.get(url).send().await {
        Ok(r) if (200..400).contains(&r.status().as_u16()) => Ok(()),
        Ok(r) => Err(HttpError::Failed(format!(
            "HTTP probe failed with statuscode: {}",
            r.status().as_u16()
        ))),
        Err(e) if e.is_timeout() => Err(failed(
            "context deadline exceeded (Client.Timeout exceeded while awaiting headers)".into(),
        )),
        Err(e) => Err(failed(crate::error::chain(&e))),
    }
}
