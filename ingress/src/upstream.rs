//! Upstream connections, pooled: one hyper-util `Client` for the whole routing table, whose
//! pool is keyed by URI authority, one authority per endpoint of each backend (Service port):
//! `e<index>.b<hash of the backend>.upstream`. Each request picks the next endpoint (round
//! robin, as nginx picks a peer before a cached connection to it); the connector connects to
//! that endpoint, or to the next ones when it refuses or times out, so a request is only sent
//! once a connection is up and needs no replay. Connections are kept alive between requests
//! (idle ones close after [`IDLE`]); the pool is replaced, idle connections closed, whenever
//! the table's endpoints change, so a connection to an endpoint that left is never reused.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::routes::{Backend, Routes};
use crate::IngressError;

/// How long one connection attempt to an endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long an idle upstream connection is kept.
const IDLE: Duration = Duration::from_secs(30);

/// Endpoints by backend authority.
type Table = HashMap<String, (String, Vec<SocketAddr>)>;

/// The pool of one routing table's endpoints.
pub(crate) struct Upstreams {
    table: Arc<Table>,
    client: Client<Connector, Incoming>,
}

impl Default for Upstreams {
    fn default() -> Self {
        Upstreams::new(&Routes::default())
    }
}

/// The name standing for backend `service` (`namespace/name:port`): a hash, as a host name.
fn authority(service: &str) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    service.hash(&mut h);
    format!("b{:016x}.upstream", h.finish())
}

/// The URI authority of endpoint `index` of the backend named `backend`.
fn endpoint_authority(index: usize, backend: &str) -> String {
    format!("e{index}.{backend}")
}

/// The endpoint index and backend name of an authority made by [`endpoint_authority`].
fn parse_authority(host: &str) -> Option<(usize, &str)> {
    let (e, backend) = host.split_once('.')?;
    Some((e.strip_prefix('e')?.parse().ok()?, backend))
}

fn table(routes: &Routes) -> Table {
    routes
        .backends()
        .map(|b| {
            (
                authority(&b.service),
                (b.service.clone(), b.endpoints.clone()),
            )
        })
        .collect()
}

impl Upstreams {
    pub(crate) fn new(routes: &Routes) -> Upstreams {
        let table = Arc::new(table(routes));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .set_host(false)
            .build(Connector {
                table: table.clone(),
            });
        Upstreams { table, client }
    }

    /// Whether `routes` has the endpoints this pool was made for.
    pub(crate) fn serves(&self, routes: &Routes) -> bool {
        *self.table == table(routes)
    }

    /// Send `req` (origin-form URI, headers final) to one of `b`'s endpoints.
    pub(crate) async fn send(
        &self,
        b: &Backend,
        mut req: Request<Incoming>,
    ) -> Result<Response<Incoming>, hyper_util::client::legacy::Error> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let index = NEXT.fetch_add(1, Ordering::Relaxed) % b.endpoints.len().max(1);
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let host = endpoint_authority(index, &authority(&b.service));
        let uri = format!("http://{host}{path}");
        *req.uri_mut() = uri.parse().unwrap_or_default();
        self.client.request(req).await
    }
}

/// Connects to an endpoint of the backend a URI's authority names.
#[derive(Clone)]
pub(crate) struct Connector {
    table: Arc<Table>,
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<TcpStream>;
    type Error = IngressError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, IngressError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), IngressError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let table = self.table.clone();
        Box::pin(async move {
            let host = uri.host().unwrap_or_default();
            let Some(((service, endpoints), start)) =
                parse_authority(host).and_then(|(i, backend)| Some((table.get(backend)?, i)))
            else {
                return Err(IngressError::NoEndpoint {
                    service: host.to_owned(),
                });
            };
            connect_any(service, endpoints, start)
                .await
                .map(TokioIo::new)
        })
    }
}

/// A connection to `endpoints[start]`, else the next one that accepts (in turn, each within
/// [`CONNECT_TIMEOUT`]).
async fn connect_any(
    service: &str,
    endpoints: &[SocketAddr],
    start: usize,
) -> Result<TcpStream, IngressError> {
    let n = endpoints.len();
    for i in 0..n {
        let ep = endpoints[(start + i) % n];
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(ep)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(e)) => {
                tracing::info!(endpoint = %ep, service, err = %e, "endpoint refused; trying another")
            }
            Err(_) => {
                tracing::info!(endpoint = %ep, service, "endpoint connect timed out; trying another")
            }
        }
    }
    Err(IngressError::NoEndpoint {
        service: service.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_authority_per_backend() {
        let a = authority("default/web:80");
        assert_eq!(a, authority("default/web:80"));
        assert_ne!(a, authority("default/web:81"));
        let e = endpoint_authority(3, &a);
        assert!(format!("http://{e}/x").parse::<Uri>().is_ok(), "{e}");
        assert_eq!(parse_authority(&e), Some((3, a.as_str())));
    }
}
