//! The tower layer that times every gRPC call on the socket and reads its gRPC status (the
//! `grpc-status` header of a trailers-only error response; a response without one is OK).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::codegen::http;

use super::{Metrics, INTERNAL_CALL};

/// Wraps the server's routes; see the module docs.
#[derive(Clone)]
pub struct CriMetricsLayer(pub Arc<Metrics>);

impl<S> tower::Layer<S> for CriMetricsLayer {
    type Service = CriMetrics<S>;
    fn layer(&self, inner: S) -> CriMetrics<S> {
        CriMetrics {
            inner,
            metrics: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct CriMetrics<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B, R> tower::Service<http::Request<B>> for CriMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let internal = req.headers().contains_key(INTERNAL_CALL);
        if !internal {
            // A client's call: the daemon is busy (the idle trimmer waits).
            kinglet_util::activity::touch();
        }
        let path = req.uri().path().to_owned();
        let started = Instant::now();
        let fut = self.inner.call(req);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let res = fut.await;
            if !internal {
                let code = match &res {
                    Ok(resp) => resp
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i32>().ok())
                        .unwrap_or(0),
                    Err(_) => 2,
                };
                metrics.observe_call(&path, started.elapsed(), code);
            }
            res
        })
    }
}
