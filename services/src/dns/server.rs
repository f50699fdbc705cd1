//! The DNS listeners: UDP and TCP on one address (the pod bridge's, port 53). Cluster names
//! are answered from the current [`Zone`], swapped in whole by the services loop; anything
//! else is forwarded, bytes as they came, to the upstream resolvers in turn (UDP over UDP,
//! TCP over TCP, so a truncated upstream answer makes the client retry over TCP here). The
//! listeners stop when the [`DnsServer`] is dropped.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::zone::{self, Answer, Zone};

/// How long one upstream gets to answer before the next is tried.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// An idle TCP client is dropped after this.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Queries forwarded at once (more wait).
const MAX_FORWARDS: usize = 256;
/// The largest UDP answer without EDNS.
const UDP_PLAIN: usize = 512;

/// What the listeners share.
struct Shared {
    zone: RwLock<Arc<Zone>>,
    upstreams: Vec<SocketAddr>,
    forwards: Semaphore,
}

/// A running DNS server; dropping it closes its sockets.
pub struct DnsServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl DnsServer {
    /// Listen on `addr` (UDP and TCP; port 0 picks one, the same for both) and answer from
    /// `zone`, forwarding other names to `upstreams`.
    pub async fn bind(
        addr: SocketAddr,
        zone: Zone,
        upstreams: Vec<SocketAddr>,
    ) -> std::io::Result<DnsServer> {
        let udp = UdpSocket::bind(addr).await?;
        let addr = udp.local_addr()?;
        let tcp = TcpListener::bind(addr).await?;
        let shared = Arc::new(Shared {
            zone: RwLock::new(Arc::new(zone)),
            upstreams,
            forwards: Semaphore::new(MAX_FORWARDS),
        });
        let udp = Arc::new(udp);
        let tasks = vec![
            tokio::spawn(serve_udp(udp, shared.clone())),
            tokio::spawn(serve_tcp(tcp, shared.clone())),
        ];
        tracing::info!(%addr, upstreams = ?shared.upstreams, "cluster DNS listening");
        Ok(DnsServer {
            shared,
            addr,
            tasks,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the listeners send back for the query `bytes`: over TCP (`tcp`) what a framed
    /// query gets, else what a datagram gets (answered in line from the zone, or after the
    /// upstreams, as the UDP loop does). None: no answer is sent.
    pub async fn answer(&self, bytes: &[u8], tcp: bool) -> Option<Vec<u8>> {
        if tcp {
            return self.shared.handle(bytes, true).await;
        }
        match self.shared.try_local(bytes) {
            Step::Reply(out) => Some(out),
            Step::Upstream => self.shared.handle(bytes, false).await,
            Step::Ignore => None,
        }
    }

    /// Answer from `zone` from now on; returns whether it differed from the current one.
    pub fn set_zone(&self, zone: Zone) -> bool {
        let mut cur = self.shared.zone.write().unwrap_or_else(|e| e.into_inner());
        if **cur == zone {
            return false;
        }
        *cur = Arc::new(zone);
        true
    }
}

/// What the UDP loop does with a datagram.
enum Step {
    /// Send this answer now (from the zone).
    Reply(Vec<u8>),
    /// Needs the upstreams: hand it to a task.
    Upstream,
    /// Not worth an answer.
    Ignore,
}

impl Shared {
    fn zone(&self) -> Arc<Zone> {
        self.zone.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Answer `bytes` from the zone if that is all it needs (no awaiting: the UDP loop
    /// answers cluster names in line).
    fn try_local(&self, bytes: &[u8]) -> Step {
        let Ok(req) = Message::from_vec(bytes) else {
            return if bytes.len() >= 2 {
                Step::Upstream // `handle` answers FORMERR
            } else {
                Step::Ignore
            };
        };
        match self.zone().answer(&req) {
            Answer::Local { msg, chase: None } => match encode(&req, &msg, false) {
                Some(out) => Step::Reply(out),
                None => Step::Ignore,
            },
            _ => Step::Upstream,
        }
    }

    /// The answer to the query `bytes`, or None when it is not worth one (not DNS).
    async fn handle(&self, bytes: &[u8], tcp: bool) -> Option<Vec<u8>> {
        let req = match Message::from_vec(bytes) {
            Ok(m) => m,
            Err(_) if bytes.len() >= 2 => {
                // FORMERR with the id only, as servers do for what they cannot parse.
                let mut m = Message::error_msg(
                    u16::from_be_bytes([bytes[0], bytes[1]]),
                    hickory_proto::op::OpCode::Query,
                    ResponseCode::FormErr,
                );
                m.metadata.message_type = hickory_proto::op::MessageType::Response;
                return m.to_vec().ok();
            }
            Err(_) => return None,
        };
        let answer = self.zone().answer(&req);
        let (mut msg, chase) = match answer {
            Answer::Local { msg, chase } => (msg, chase),
            Answer::Forward => return self.forward(bytes, tcp).await,
        };
        if let Some((target, qtype)) = chase {
            self.chase(&mut msg, target, qtype, tcp).await;
        }
        encode(&req, &msg, tcp)
    }

    /// Resolve an ExternalName's target upstream and append what comes back.
    async fn chase(&self, msg: &mut Message, target: Name, qtype: RecordType, tcp: bool) {
        let q = zone::query(target, qtype);
        let Ok(bytes) = q.to_vec() else { return };
        let Some(reply) = self.forward(&bytes, tcp).await else {
            return;
        };
        if let Ok(r) = Message::from_vec(&reply) {
            msg.add_answers(r.answers);
        }
    }

    /// Ask the upstreams in turn; the first answer is the answer.
    async fn forward(&self, bytes: &[u8], tcp: bool) -> Option<Vec<u8>> {
        let _permit = self.forwards.acquire().await.ok()?;
        for up in &self.upstreams {
            let res = if tcp {
                tokio::time::timeout(UPSTREAM_TIMEOUT, forward_tcp(*up, bytes)).await
            } else {
                tokio::time::timeout(UPSTREAM_TIMEOUT, forward_udp(*up, bytes)).await
            };
            match res {
                Ok(Ok(r)) => return Some(r),
                Ok(Err(e)) => tracing::debug!(upstream = %up, err = %e, "upstream DNS failed"),
                Err(_) => tracing::debug!(upstream = %up, "upstream DNS timed out"),
            }
        }
        // No upstream answered: SERVFAIL.
        let req = Message::from_vec(bytes).ok()?;
        let mut m = zone::response_to(&req);
        m.metadata.response_code = ResponseCode::ServFail;
        m.to_vec().ok()
    }
}

/// `msg` on the wire; over UDP cut to the client's size (truncated, TC set) when too long.
fn encode(req: &Message, msg: &Message, tcp: bool) -> Option<Vec<u8>> {
    let out = msg.to_vec().ok()?;
    let limit = match &req.edns {
        Some(e) => usize::from(e.max_payload()).max(UDP_PLAIN),
        None => UDP_PLAIN,
    };
    if !tcp && out.len() > limit {
        let mut t = msg.truncate();
        t.metadata.truncation = true;
        return t.to_vec().ok();
    }
    Some(out)
}

async fn forward_udp(up: SocketAddr, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = if up.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let s = UdpSocket::bind(local).await?;
    s.connect(up).await?;
    s.send(bytes).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = s.recv(&mut buf).await?;
        // Only the answer to this id counts.
        if n >= 2 && buf[..2] == bytes[..2] {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn forward_tcp(up: SocketAddr, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(up).await?;
    write_framed(&mut s, bytes).await?;
    read_framed(&mut s).await
}

async fn write_framed(s: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(bytes.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "message too long"))?;
    let mut out = Vec::with_capacity(bytes.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    s.write_all(&out).await
}

async fn read_framed(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let len = s.read_u16().await?;
    let mut buf = vec![0u8; usize::from(len)];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn serve_udp(sock: Arc<UdpSocket>, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(err = %e, "dns udp receive");
                continue;
            }
        };
        // Cluster names are answered in line; what needs an upstream gets a task of its own.
        match shared.try_local(&buf[..n]) {
            Step::Reply(out) => {
                let _ = sock.send_to(&out, peer).await;
            }
            Step::Upstream => {
                let bytes = buf[..n].to_vec();
                let (sock, shared) = (sock.clone(), shared.clone());
                tokio::spawn(async move {
                    if let Some(out) = shared.handle(&bytes, false).await {
                        let _ = sock.send_to(&out, peer).await;
                    }
                });
            }
            Step::Ignore => {}
        }
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (mut conn, _) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(err = %e, "dns tcp accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            while let Ok(Ok(q)) = tokio::time::timeout(TCP_IDLE, read_framed(&mut conn)).await {
                let Some(out) = shared.handle(&q, true).await else {
                    return;
                };
                if write_framed(&mut conn, &out).await.is_err() {
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
