//! The scrape endpoint: a minimal HTTP/1.1 server (one request per connection, bounded
//! request size and time) answering `GET /metrics` with the OpenMetrics text, refreshed
//! first by [`super::poll::Poller::refresh`].

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::poll::Poller;

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serve scrapes on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, poller: Arc<Poller>) {
    loop {
        let Ok((conn, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let poller = poller.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(conn, &poller).await {
                tracing::debug!(%peer, error = %e, "metrics request");
            }
        });
    }
}

async fn handle(mut conn: TcpStream, poller: &Poller) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if !matches!(read, Ok(Ok(()))) {
        return Ok(());
    }
    let head = String::from_utf8_lossy(&buf);
    let (status, ctype, body) = match route(head.lines().next().unwrap_or("")) {
        Route::Metrics => {
            poller.refresh().await;
            ("200 OK", CONTENT_TYPE, poller.metrics().encode())
        }
        Route::NotFound => (
            "404 Not Found",
            "text/plain",
            "only /metrics is served here\n".into(),
        ),
        Route::BadMethod => ("405 Method Not Allowed", "text/plain", "use GET\n".into()),
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(resp.as_bytes()).await?;
    conn.shutdown().await
}

#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    NotFound,
    BadMethod,
}

/// The decision on the request line (`GET /metrics HTTP/1.1`).
fn route(request_line: &str) -> Route {
    let mut f = request_line.split_whitespace();
    let (method, target) = (f.next().unwrap_or(""), f.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => Route::Metrics,
        ("GET" | "HEAD", _) => Route::NotFound,
        _ => Route::BadMethod,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("GET /metrics HTTP/1.1"), Route::Metrics);
        assert_eq!(route("GET /metrics?x=1 HTTP/1.0"), Route::Metrics);
        assert_eq!(route("GET / HTTP/1.1"), Route::NotFound);
        assert_eq!(route("POST /metrics HTTP/1.1"), Route::BadMethod);
        assert_eq!(route(""), Route::BadMethod);
    }
}
