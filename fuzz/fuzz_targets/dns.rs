//! Cluster DNS: raw query packets (from pods, over UDP or TCP) through the same function the
//! listeners use, against a real server bound on loopback with a zone of a ClusterIP, a headless
//! and an ExternalName Service, and an upstream on loopback that answers what the input says.
//!
//! The input is `FLAGS QUERY [\n--\n UPSTREAM-REPLY]`: bit 0 of FLAGS picks TCP. The upstream
//! reply gets the forwarded query's id, so the server takes it as the answer; without one the
//! upstream echoes the query.
#![no_main]
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};

use k8s_openapi::api::core::v1::{Pod, Service};
use kinglet_services::dns::{DnsServer, Zone};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::runtime::Runtime;

/// What the fake upstream answers (the query's id put in front); the query itself when this
/// is shorter than an id (so no forward waits for the upstream timeout).
static REPLY: Mutex<Vec<u8>> = Mutex::new(Vec::new());

fn reply_to(query: &[u8]) -> Vec<u8> {
    let mut r = REPLY.lock().unwrap().clone();
    if r.len() < 2 {
        return query.to_vec();
    }
    if query.len() >= 2 {
        r[..2].copy_from_slice(&query[..2]);
    }
    r
}

/// UDP and TCP on one port: the UDP port the kernel picks may be taken for TCP, so try again.
async fn upstream() -> SocketAddr {
    let (udp, tcp) = 'bind: {
        for _ in 0..100 {
            let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()).await {
                break 'bind (udp, tcp);
            }
        }
        panic!("no loopback port free for both UDP and TCP");
    };
    let addr = udp.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
            let _ = udp.send_to(&reply_to(&buf[..n]), peer).await;
        }
    });
    tokio::spawn(async move {
        while let Ok((mut c, _)) = tcp.accept().await {
            tokio::spawn(async move {
                let Ok(len) = c.read_u16().await else { return };
                let mut q = vec![0u8; usize::from(len)];
                if c.read_exact(&mut q).await.is_err() {
                    return;
                }
                let r = reply_to(&q);
                let mut out = (r.len().min(65535) as u16).to_be_bytes().to_vec();
                out.extend_from_slice(&r[..r.len().min(65535)]);
                let _ = c.write_all(&out).await;
            });
        }
    });
    addr
}

fn zone() -> Zone {
    let svc = |v: serde_json::Value| -> Service { serde_json::from_value(v).unwrap() };
    let web = svc(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"clusterIP": "10.96.0.10", "selector": {"app": "web"},
                 "ports": [{"name": "http", "port": 80}, {"port": 81}]}}));
    let db = svc(serde_json::json!({
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {"clusterIP": "None", "selector": {"app": "db"},
                 "ports": [{"name": "pg", "port": 5432, "targetPort": "pg"}]}}));
    let ext = svc(serde_json::json!({
        "metadata": {"name": "ext", "namespace": "other"},
        "spec": {"type": "ExternalName", "externalName": "db.example.com"}}));
    let pods: Vec<Pod> = (0..3)
        .map(|i| {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("db-{i}"), "namespace": "default",
                             "labels": {"app": "db"}},
                "spec": {"hostname": format!("db-{i}"), "subdomain": "db",
                         "containers": [{"name": "c",
                                         "ports": [{"name": "pg", "containerPort": 5432}]}]},
                "status": {"podIP": format!("10.85.0.{}", i + 5), "phase": "Running",
                           "conditions": [{"type": "Ready", "status": "True"}]}
            }))
            .unwrap()
        })
        .collect();
    let slices = kinglet_services::endpoints::slices(&db, &pods);
    Zone::build("cluster.local", &[web, db, ext], &slices)
}

fn server() -> &'static (Runtime, DnsServer) {
    static S: OnceLock<(Runtime, DnsServer)> = OnceLock::new();
    S.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let server = rt.block_on(async {
            let up = upstream().await;
            // Port 0 picks a UDP port that may be taken for TCP: try again, as upstream() does.
            for _ in 0..100 {
                let addr = "127.0.0.1:0".parse().unwrap();
                if let Ok(s) = DnsServer::bind(addr, zone(), vec![up]).await {
                    return s;
                }
            }
            panic!("no loopback port free for both UDP and TCP")
        });
        (rt, server)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let sep = b"\n--\n";
    let (query, reply) = match rest.windows(sep.len()).position(|w| w == sep) {
        Some(at) => (&rest[..at], &rest[at + sep.len()..]),
        None => (rest, &[][..]),
    };
    *REPLY.lock().unwrap() = reply.to_vec();
    let (rt, server) = server();
    let tcp = flags & 1 == 1;
    let out = rt.block_on(server.answer(query, tcp));
    if let Some(out) = out {
        // What goes back is a DNS message, answering the query's id, and fits UDP's limit.
        let m = hickory_proto::op::Message::from_vec(&out);
        if query.len() >= 2 {
            assert_eq!(out[..2], query[..2], "the answer carries the query's id");
        }
        // The server's answers parse (a forwarded upstream answer is passed on as is: with the
        // echoing upstream, that is the query, which parsed).
        if reply.len() < 2 {
            m.expect("the server's answer parses");
        }
    }
});
