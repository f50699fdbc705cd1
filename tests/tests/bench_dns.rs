//! Cluster DNS benchmark (run on demand: `scripts/bench-dns.sh`, an ignored test): queries per
//! second and latency percentiles for cluster names answered by a real daemon on its bridge
//! address, with a counting fake upstream to show that none of them leaves the daemon; then
//! the endpoint change → DNS update latency (a Pod's label applied away from and back to a
//! headless Service's selector, timed from `kinglet apply` returning to the record set
//! changing). Prints figures; asserts only that the answers are right and local.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use kinglet_tests::*;

const THREADS: usize = 4;
const LOAD: Duration = Duration::from_secs(5);
const FLIPS: usize = 20;

fn pod(name: &str, app: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: {app}}}}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: kinglet.test/busybox:latest\n    imagePullPolicy: IfNotPresent\n    command: [sleep, '3600']\n"
    )
}

const SERVICES: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{name: http, port: 80}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web-h}\nspec:\n  clusterIP: None\n  selector: {app: web}\n  ports: [{name: http, port: 80}]\n";

/// A fake upstream that only counts (and answers SERVFAIL).
fn counting_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    let c = n.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((len, peer)) = sock.recv_from(&mut buf) {
            c.fetch_add(1, Ordering::SeqCst);
            if let Ok(req) = Message::from_vec(&buf[..len]) {
                let m = Message::error_msg(
                    req.metadata.id,
                    req.metadata.op_code,
                    ResponseCode::ServFail,
                );
                let _ = sock.send_to(&m.to_vec().unwrap(), peer);
            }
        }
    });
    (addr, n)
}

fn query_bytes(name: &str, t: RecordType) -> Vec<u8> {
    let mut q = Message::query();
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    q.to_vec().unwrap()
}

fn ask(s: &UdpSocket, server: SocketAddr, name: &str, t: RecordType) -> Option<Message> {
    s.send_to(&query_bytes(name, t), server).ok()?;
    let mut buf = [0u8; 4096];
    let n = s.recv(&mut buf).ok()?;
    Message::from_vec(&buf[..n]).ok()
}

fn addrs(m: &Message) -> usize {
    m.answers
        .iter()
        .filter(|r| matches!(r.data, RData::A(_)))
        .count()
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: scripts/bench-dns.sh"]
async fn bench_cluster_dns() {
    let (up, asked) = counting_upstream();
    let d = Daemon::start_with_config(&format!(
        "service-cidr = \"10.222.1.0/24\"\ndns-upstreams = [\"{up}\"]\n"
    ))
    .await;
    d.import_test_image().await;
    let dns: SocketAddr = format!("{}:53", d.net.gateway()).parse().unwrap();
    let f = write(
        d.dir.path(),
        "all.yaml",
        &[pod("a", "web"), pod("b", "web"), SERVICES.to_owned()].join("---\n"),
    );
    d.cli_ok(&["apply", "-f", &f]);
    let probe = UdpSocket::bind("0.0.0.0:0").unwrap();
    probe
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    wait_for("two headless records", Duration::from_secs(90), || {
        ask(
            &probe,
            dns,
            "web-h.default.svc.cluster.local.",
            RecordType::A,
        )
        .is_some_and(|m| addrs(&m) == 2)
    });

    // 1. Load: THREADS closed-loop clients over a mix of cluster names for LOAD.
    let names: Vec<(&str, RecordType)> = vec![
        ("web.default.svc.cluster.local.", RecordType::A),
        ("web-h.default.svc.cluster.local.", RecordType::A),
        ("_http._tcp.web.default.svc.cluster.local.", RecordType::SRV),
        ("web.default.svc.cluster.local.", RecordType::AAAA),
        ("missing.default.svc.cluster.local.", RecordType::A),
    ];
    let before = asked.load(Ordering::SeqCst);
    let start = Instant::now();
    let handles: Vec<_> = (0..THREADS)
        .map(|i| {
            let names = names.clone();
            std::thread::spawn(move || {
                let s = UdpSocket::bind("0.0.0.0:0").unwrap();
                s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                let mut lat = Vec::new();
                let mut lost = 0usize;
                let mut k = i;
                while start.elapsed() < LOAD {
                    let (n, t) = names[k % names.len()];
                    k += 1;
                    let t0 = Instant::now();
                    match ask(&s, dns, n, t) {
                        Some(m) => {
                            assert!(
                                matches!(
                                    m.metadata.response_code,
                                    ResponseCode::NoError | ResponseCode::NXDomain
                                ),
                                "{m:?}"
                            );
                            lat.push(t0.elapsed());
                        }
                        None => lost += 1,
                    }
                }
                (lat, lost)
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut lost = 0;
    for h in handles {
        let (l, x) = h.join().unwrap();
        lat.extend(l);
        lost += x;
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    let upstream = asked.load(Ordering::SeqCst) - before;
    println!(
        "cluster DNS: {} queries in {secs:.1} s by {THREADS} clients = {:.0} q/s; latency p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; lost {lost}; upstream queries {upstream}",
        lat.len(),
        lat.len() as f64 / secs,
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        pct(&lat, 1.0),
    );
    assert_eq!(upstream, 0, "cluster names reached the upstream");

    // 2. Endpoint change → DNS: pod b leaves and rejoins the selector by its label.
    let mut times = Vec::new();
    for i in 0..FLIPS {
        let (app, want) = if i % 2 == 0 { ("other", 1) } else { ("web", 2) };
        let f = write(d.dir.path(), "b.yaml", &pod("b", app));
        d.cli_ok(&["apply", "-f", &f]);
        let t0 = Instant::now();
        loop {
            if ask(
                &probe,
                dns,
                "web-h.default.svc.cluster.local.",
                RecordType::A,
            )
            .is_some_and(|m| addrs(&m) == want)
            {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "no DNS change");
            std::thread::sleep(Duration::from_millis(2));
        }
        times.push(t0.elapsed());
    }
    times.sort();
    println!(
        "endpoint change → DNS record set: {FLIPS} changes, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (from `kinglet apply` returning, polled every 2 ms)",
        pct(&times, 0.5),
        pct(&times, 0.99),
        pct(&times, 1.0),
    );
    d.shutdown().await;
}
