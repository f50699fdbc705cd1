use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};

use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record};
use k8s_openapi::api::core::v1::Service;

use super::*;

/// A fake upstream on loopback (UDP and TCP, one port) that answers every A query with
/// 192.0.2.7 and counts what it was asked.
struct Upstream {
    addr: SocketAddr,
    asked: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

fn fake_answer(q: &[u8]) -> Vec<u8> {
    let req = Message::from_vec(q).unwrap();
    let mut m = zone::response_to(&req);
    let name = req.queries[0].name().clone();
    m.add_answer(Record::from_rdata(
        name,
        60,
        RData::A(A(Ipv4Addr::new(192, 0, 2, 7))),
    ));
    m.to_vec().unwrap()
}

async fn upstream() -> Upstream {
    let udp = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = udp.local_addr().unwrap();
    let tcp = TcpListener::bind(addr).await.unwrap();
    let asked = Arc::new(AtomicUsize::new(0));
    let (a1, a2) = (asked.clone(), asked.clone());
    let t1 = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
            a1.fetch_add(1, Ordering::SeqCst);
            let _ = udp.send_to(&fake_answer(&buf[..n]), peer).await;
        }
    });
    let t2 = tokio::spawn(async move {
        while let Ok((mut c, _)) = tcp.accept().await {
            a2.fetch_add(1, Ordering::SeqCst);
            let q = read_framed(&mut c).await.unwrap();
            write_framed(&mut c, &fake_answer(&q)).await.unwrap();
        }
    });
    Upstream {
        addr,
        asked,
        tasks: vec![t1, t2],
    }
}

fn zone_with_web() -> Zone {
    let svc: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"clusterIP": "10.96.0.10"}
    }))
    .unwrap();
    Zone::build("cluster.local", &[svc], &[])
}

async fn ask_udp(server: SocketAddr, name: &str) -> Message {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let q = zone::query(Name::from_ascii(name).unwrap(), RecordType::A);
    s.send_to(&q.to_vec().unwrap(), server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.recv(&mut buf))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(m.metadata.id, q.metadata.id);
    m
}

async fn ask_tcp(server: SocketAddr, name: &str) -> Message {
    let mut s = TcpStream::connect(server).await.unwrap();
    let q = zone::query(Name::from_ascii(name).unwrap(), RecordType::A);
    write_framed(&mut s, &q.to_vec().unwrap()).await.unwrap();
    Message::from_vec(&read_framed(&mut s).await.unwrap()).unwrap()
}

fn first_a(m: &Message) -> Option<Ipv4Addr> {
    m.answers.iter().find_map(|r| match &r.data {
        RData::A(a) => Some(a.0),
        _ => None,
    })
}

#[tokio::test]
async fn cluster_names_stay_local_and_others_go_upstream_over_udp_and_tcp() {
    let up = upstream().await;
    let server = DnsServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        zone_with_web(),
        vec![up.addr],
    )
    .await
    .unwrap();
    let addr = server.local_addr();
    for m in [
        ask_udp(addr, "web.default.svc.cluster.local.").await,
        ask_tcp(addr, "web.default.svc.cluster.local.").await,
    ] {
        assert_eq!(first_a(&m), Some(Ipv4Addr::new(10, 96, 0, 10)));
    }
    let nx = ask_udp(addr, "nope.default.svc.cluster.local.").await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(up.asked.load(Ordering::SeqCst), 0, "no upstream traffic");
    for m in [
        ask_udp(addr, "example.com.").await,
        ask_tcp(addr, "example.com.").await,
    ] {
        assert_eq!(first_a(&m), Some(Ipv4Addr::new(192, 0, 2, 7)));
    }
    assert_eq!(up.asked.load(Ordering::SeqCst), 2);

    // A new zone is answered at once.
    assert!(server.set_zone(Zone::empty("cluster.local")));
    assert!(!server.set_zone(Zone::empty("cluster.local")));
    let gone = ask_udp(addr, "web.default.svc.cluster.local.").await;
    assert_eq!(gone.metadata.response_code, ResponseCode::NXDomain);

    // Dropped: both sockets are released.
    drop(server);
    tokio::time::sleep(Duration::from_millis(50)).await;
    UdpSocket::bind(addr).await.expect("udp port free again");
    TcpListener::bind(addr).await.expect("tcp port free again");
}

#[tokio::test]
async fn external_name_target_is_resolved_upstream_and_dead_upstreams_are_servfail() {
    let up = upstream().await;
    let svc: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "ext", "namespace": "default"},
        "spec": {"type": "ExternalName", "externalName": "db.example.com"}
    }))
    .unwrap();
    let zone = Zone::build("cluster.local", &[svc], &[]);
    let server = DnsServer::bind("127.0.0.1:0".parse().unwrap(), zone.clone(), vec![up.addr])
        .await
        .unwrap();
    let m = ask_udp(server.local_addr(), "ext.default.svc.cluster.local.").await;
    assert!(matches!(m.answers[0].data, RData::CNAME(_)), "{m:?}");
    assert_eq!(first_a(&m), Some(Ipv4Addr::new(192, 0, 2, 7)));

    // No upstream listening: SERVFAIL, not silence.
    let dead = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let server = DnsServer::bind("127.0.0.1:0".parse().unwrap(), zone, vec![dead_addr])
        .await
        .unwrap();
    let m = ask_udp(server.local_addr(), "example.com.").await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test]
async fn big_answers_are_truncated_over_udp_and_whole_over_tcp() {
    let svc: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "many", "namespace": "default"},
        "spec": {"clusterIP": "None", "selector": {"app": "many"}}
    }))
    .unwrap();
    let endpoints: Vec<_> = (1..=100)
        .map(|i| serde_json::json!({"addresses": [format!("10.85.1.{i}")], "conditions": {"ready": true}}))
        .collect();
    let slice = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "many-0", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "many"}},
        "addressType": "IPv4",
        "endpoints": endpoints,
    }))
    .unwrap();
    let zone = Zone::build("cluster.local", &[svc], &[slice]);
    let server = DnsServer::bind("127.0.0.1:0".parse().unwrap(), zone, vec![])
        .await
        .unwrap();
    let udp = ask_udp(server.local_addr(), "many.default.svc.cluster.local.").await;
    assert!(udp.metadata.truncation, "{udp:?}");
    let tcp = ask_tcp(server.local_addr(), "many.default.svc.cluster.local.").await;
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.answers.len(), 100);
}

#[tokio::test]
async fn answer_is_what_the_listeners_send() {
    let server = DnsServer::bind("127.0.0.1:0".parse().unwrap(), zone_with_web(), vec![])
        .await
        .unwrap();
    let q = zone::query(
        Name::from_ascii("web.default.svc.cluster.local.").unwrap(),
        RecordType::A,
    );
    let bytes = q.to_vec().unwrap();
    for tcp in [false, true] {
        let m = Message::from_vec(&server.answer(&bytes, tcp).await.unwrap()).unwrap();
        assert_eq!(m.metadata.id, q.metadata.id);
        assert_eq!(first_a(&m), Some(Ipv4Addr::new(10, 96, 0, 10)));
        let name = "web.default.svc.cluster.local.";
        let heard = if tcp {
            ask_tcp(server.local_addr(), name).await
        } else {
            ask_udp(server.local_addr(), name).await
        };
        assert_eq!(m.answers, heard.answers);
    }
    // Not DNS: FORMERR with the id when there is one, else no answer.
    let formerr = Message::from_vec(&server.answer(b"\x12\x34\xff", false).await.unwrap()).unwrap();
    assert_eq!(formerr.metadata.id, 0x1234);
    assert_eq!(formerr.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(server.answer(b"\x12", false).await, None);
    // No upstream: a forwarded name gets SERVFAIL.
    let q = zone::query(Name::from_ascii("example.com.").unwrap(), RecordType::A);
    let m = Message::from_vec(&server.answer(&q.to_vec().unwrap(), false).await.unwrap()).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
}
