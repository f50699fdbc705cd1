//! Cluster DNS end to end: real pods resolve Services by name through the daemon's DNS on
//! the bridge address (busybox `nslookup` and `nc` in the pods), headless records follow
//! readiness, hostname+subdomain and ExternalName records, forwarding to an upstream (a fake
//! one on loopback that counts what it is asked, so cluster names are shown never to leave the
//! daemon), resolv.conf per dnsPolicy, and DNS back within a second of a kill -9 restart.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use kinglet_tests::*;

const WEB: &str = r#"apiVersion: v1
kind: Pod
metadata: {name: NAME, labels: {app: web}}
spec:
  terminationGracePeriodSeconds: 1
  hostname: NAME
  subdomain: web-h
  containers:
  - name: web
    image: kinglet.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'mkdir -p /www && echo NAME > /www/index.html && touch /www/ready && exec httpd -f -p 8080 -h /www']
    ports: [{name: http, containerPort: 8080}]
    readinessProbe:
      exec: {command: [test, -f, /www/ready]}
      periodSeconds: 1
      failureThreshold: 1
"#;

const SERVICES: &str = r#"apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web-h}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: ext}
spec:
  type: ExternalName
  externalName: db.example.test
"#;

fn pod(name: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  terminationGracePeriodSeconds: 1\n{extra_spec}  containers:\n  - name: c\n    image: kinglet.test/busybox:latest\n    imagePullPolicy: IfNotPresent\n    command: [sleep, '3600']\n"
    )
}

/// A fake upstream resolver on loopback: A queries get 192.0.2.7, others an empty answer;
/// every query is counted.
struct Upstream {
    addr: SocketAddr,
    asked: Arc<AtomicUsize>,
}

fn upstream() -> Upstream {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    let asked = Arc::new(AtomicUsize::new(0));
    let a = asked.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((n, peer)) = sock.recv_from(&mut buf) {
            let Ok(req) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            a.fetch_add(1, Ordering::SeqCst);
            let mut m = Message::response(req.metadata.id, req.metadata.op_code);
            m.metadata.recursion_desired = req.metadata.recursion_desired;
            m.metadata.recursion_available = true;
            m.add_queries(req.queries.clone());
            if let Some(q) = req.queries.first() {
                if q.query_type() == RecordType::A {
                    m.add_answer(Record::from_rdata(
                        q.name().clone(),
                        60,
                        RData::A(A(Ipv4Addr::new(192, 0, 2, 7))),
                    ));
                }
            }
            let _ = sock.send_to(&m.to_vec().unwrap(), peer);
        }
    });
    Upstream { addr, asked }
}

/// One query from the host to `server`; None on timeout.
fn ask(server: SocketAddr, name: &str, t: RecordType) -> Option<Message> {
    let s = UdpSocket::bind("0.0.0.0:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut q = Message::query();
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    s.send_to(&q.to_vec().unwrap(), server).ok()?;
    let mut buf = [0u8; 4096];
    let n = s.recv(&mut buf).ok()?;
    Message::from_vec(&buf[..n]).ok()
}

fn a_records(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

/// `nslookup NAME` in pod `client`: the addresses of its answer section.
fn nslookup(d: &Daemon, name: &str) -> (bool, String, Vec<String>) {
    let out = d.cli(&["exec", "client", "--", "nslookup", "-type=a", name]);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // busybox prints the server first, then "Name:"/"Address:" pairs.
    let answer = text.split_once("Name:").map(|x| x.1).unwrap_or("");
    let mut addrs: Vec<String> = answer
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Address:"))
        .map(|a| a.split_whitespace().next().unwrap_or("").to_owned())
        .filter(|a| a.parse::<Ipv4Addr>().is_ok())
        .collect();
    addrs.sort();
    addrs.dedup();
    (out.status.success(), text, addrs)
}

fn pod_ip(d: &Daemon, name: &str) -> String {
    pod_json(d, name)["status"]["podIP"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

fn cat(d: &Daemon, pod: &str, file: &str) -> String {
    d.cli_ok(&["exec", pod, "--", "cat", file])
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_resolve_services_by_name_and_records_follow_readiness() {
    let up = upstream();
    let mut d = Daemon::start_with_config(&format!(
        "service-cidr = \"10.221.1.0/24\"\ndns-upstreams = [\"{}\"]\n",
        up.addr
    ))
    .await;
    d.import_test_image().await;
    let d_gateway = d.net.gateway();
    let dns: SocketAddr = format!("{d_gateway}:53").parse().unwrap();
    let f = write(
        d.dir.path(),
        "all.yaml",
        &[
            WEB.replace("NAME", "web-a"),
            WEB.replace("NAME", "web-b"),
            pod("client", ""),
            SERVICES.to_owned(),
        ]
        .join("---\n"),
    );
    d.cli_ok(&["apply", "-f", &f]);
    wait_for("pods running", Duration::from_secs(90), || {
        ["web-a", "web-b", "client"]
            .iter()
            .all(|p| pod_json(&d, p)["status"]["phase"] == "Running")
    });
    let (a_ip, b_ip) = (pod_ip(&d, "web-a"), pod_ip(&d, "web-b"));
    let cluster_ip =
        serde_json::from_str::<serde_json::Value>(&d.cli_ok(&["get", "svc", "web", "-o", "json"]))
            .unwrap()["spec"]["clusterIP"]
            .as_str()
            .unwrap()
            .to_owned();

    // The pod's resolv.conf points at the cluster DNS.
    let resolv = cat(&d, "client", "/etc/resolv.conf");
    assert!(
        resolv.contains(&format!("nameserver {}\n", d.net.gateway())),
        "{resolv}"
    );
    assert!(
        resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{resolv}"
    );
    assert!(resolv.contains("options ndots:5"), "{resolv}");

    // Both web pods ready: the headless name lists both.
    let mut both = vec![a_ip.clone(), b_ip.clone()];
    both.sort();
    wait_for(
        "headless records for both pods",
        Duration::from_secs(60),
        || nslookup(&d, "web-h.default.svc.cluster.local").2 == both,
    );
    let asked_before = up.asked.load(Ordering::SeqCst);

    // A Service by its short name (search path), and an HTTP request by name.
    // (busybox nslookup walks the whole search path and exits 1 on the NXDOMAINs after the
    // answer, so only its answer counts.)
    let (_, text, addrs) = nslookup(&d, "web");
    assert_eq!(addrs, [cluster_ip.as_str()], "{text}");
    let body = d.cli_ok(&[
        "exec",
        "client",
        "--",
        "sh",
        "-c",
        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 web 80 | sed '1,/^\\r$/d'",
    ]);
    assert!(body == "web-a\n" || body == "web-b\n", "{body:?}");
    // hostname + subdomain.
    let (_, text, addrs) = nslookup(&d, "web-a.web-h.default.svc.cluster.local");
    assert_eq!(addrs, [a_ip.as_str()], "{text}");
    // From the host: SRV of the named port, NXDOMAIN for a missing name, TTL 5.
    let srv = ask(
        dns,
        "_http._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
    )
    .unwrap();
    assert!(
        matches!(&srv.answers[0].data, RData::SRV(s) if s.port == 80),
        "{srv:?}"
    );
    let nx = ask(dns, "nope.default.svc.cluster.local.", RecordType::A).unwrap();
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    let web = ask(dns, "web.default.svc.cluster.local.", RecordType::A).unwrap();
    assert_eq!(web.answers[0].ttl, 5);
    assert_eq!(
        up.asked.load(Ordering::SeqCst),
        asked_before,
        "cluster names reached the upstream"
    );

    // Outside names go to the upstream; ExternalName is a CNAME, its target resolved there.
    let (_, text, addrs) = nslookup(&d, "www.example.test");
    assert_eq!(addrs, ["192.0.2.7"], "{text}");
    assert!(up.asked.load(Ordering::SeqCst) > asked_before);
    let ext = ask(dns, "ext.default.svc.cluster.local.", RecordType::A).unwrap();
    assert!(
        matches!(&ext.answers[0].data, RData::CNAME(c) if c.0.to_ascii() == "db.example.test."),
        "{ext:?}"
    );
    assert_eq!(a_records(&ext), ["192.0.2.7"]);

    // web-b fails its readiness probe: its record goes; DNS follows the slice.
    d.cli_ok(&["exec", "web-b", "--", "rm", "/www/ready"]);
    let t = Instant::now();
    wait_for(
        "web-b gone from the headless name",
        Duration::from_secs(30),
        || {
            ask(dns, "web-h.default.svc.cluster.local.", RecordType::A)
                .is_some_and(|m| a_records(&m) == [a_ip.clone()])
        },
    );
    eprintln!("readiness failure → DNS record gone: {:?}", t.elapsed());
    let gone = ask(dns, "web-b.web-h.default.svc.cluster.local.", RecordType::A).unwrap();
    assert_eq!(gone.metadata.response_code, ResponseCode::NXDomain);

    // kill -9: DNS is back within a second of the restarted daemon answering its socket.
    d.kill9();
    assert!(ask(dns, "web.default.svc.cluster.local.", RecordType::A).is_none());
    d.spawn().await;
    let t = Instant::now();
    wait_for("DNS back after the restart", Duration::from_secs(1), || {
        ask(dns, "web.default.svc.cluster.local.", RecordType::A)
            .is_some_and(|m| a_records(&m) == [cluster_ip.clone()])
    });
    eprintln!(
        "DNS answering {:?} after the restarted daemon's socket",
        t.elapsed()
    );

    // Service deleted: its name is gone.
    d.cli_ok(&["delete", "svc", "web"]);
    wait_for("web's record gone", Duration::from_secs(5), || {
        ask(dns, "web.default.svc.cluster.local.", RecordType::A)
            .is_some_and(|m| m.metadata.response_code == ResponseCode::NXDomain)
    });
    d.shutdown().await;
    // The listener went with the daemon. (Asked of the sockets, not by a query: with the
    // daemon's bridge gone the gateway address is no longer local, and a query would leave
    // the host by its default route.)
    let listeners = std::process::Command::new("ss")
        .args(["-Hlntu", "sport = :53"])
        .output()
        .expect("ss");
    let listeners = String::from_utf8_lossy(&listeners.stdout);
    assert!(
        !listeners.contains(&format!("{}:53", d_gateway)),
        "a DNS listener is left on {dns}: {listeners}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn resolv_conf_follows_dns_policy() {
    let d = Daemon::start_with_config("cluster-domain = \"k8s.test\"\n").await;
    d.import_test_image().await;
    let pods = [
        ("cf", "  dnsConfig:\n    searches: [extra.example]\n    options: [{name: ndots, value: '2'}, {name: edns0}]\n"),
        ("dflt", "  dnsPolicy: Default\n"),
        ("none", "  dnsPolicy: None\n  dnsConfig:\n    nameservers: [192.0.2.10, 192.0.2.11, 192.0.2.12, 192.0.2.13]\n    searches: [a.example]\n"),
        ("hostnet", "  hostNetwork: true\n"),
        ("hostnet-cf", "  hostNetwork: true\n  dnsPolicy: ClusterFirstWithHostNet\n"),
    ];
    let text: Vec<String> = pods.iter().map(|(n, s)| pod(n, s)).collect();
    let f = write(d.dir.path(), "pods.yaml", &text.join("---\n"));
    d.cli_ok(&["apply", "-f", &f]);
    wait_for("pods running", Duration::from_secs(90), || {
        pods.iter()
            .all(|(p, _)| pod_json(&d, p)["status"]["phase"] == "Running")
    });
    let host = kinglet_services::dns::resolvconf::host();
    let gw = d.net.gateway();

    let cf = cat(&d, "cf", "/etc/resolv.conf");
    let mut search = vec![
        "default.svc.k8s.test".to_owned(),
        "svc.k8s.test".into(),
        "k8s.test".into(),
    ];
    search.extend(host.searches.iter().cloned());
    search.push("extra.example".into());
    let mut seen = std::collections::HashSet::new();
    search.retain(|s| seen.insert(s.clone()));
    assert_eq!(
        cf,
        format!(
            "search {}\nnameserver {gw}\noptions ndots:2 edns0\n",
            search.join(" ")
        )
    );
    let parsed = |s: &str| kinglet_services::dns::resolvconf::parse(s);
    for p in ["dflt", "hostnet"] {
        let got = parsed(&cat(&d, p, "/etc/resolv.conf"));
        assert_eq!(got.nameservers, host.nameservers, "{p}");
        assert_eq!(got.searches, host.searches, "{p}");
    }
    let none = cat(&d, "none", "/etc/resolv.conf");
    assert_eq!(
        none,
        "search a.example\nnameserver 192.0.2.10\nnameserver 192.0.2.11\nnameserver 192.0.2.12\n"
    );
    let described = d.cli_ok(&["describe", "pod", "none"]);
    assert!(
        described.contains("Nameserver limits were exceeded"),
        "{described}"
    );
    let hcf = parsed(&cat(&d, "hostnet-cf", "/etc/resolv.conf"));
    assert_eq!(hcf.nameservers, [gw]);
    // No "ignored" warning for the DNS fields any more.
    let again = d.cli(&["apply", "-f", &f]);
    let warn = String::from_utf8_lossy(&again.stderr);
    assert!(!warn.contains("dnsPolicy"), "{warn}");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn selectorless_service_routes_to_hand_applied_endpoint_slices() {
    let d = Daemon::start_with_config("service-cidr = \"10.223.1.0/24\"\n").await;
    d.import_test_image().await;
    let dns: SocketAddr = format!("{}:53", d.net.gateway()).parse().unwrap();
    let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: outside}\nspec:\n  ports: [{name: http, port: 80, targetPort: 8080}]\n";
    let f = write(
        d.dir.path(),
        "all.yaml",
        &[
            WEB.replace("NAME", "web-a"),
            pod("client", ""),
            svc.to_owned(),
        ]
        .join("---\n"),
    );
    d.cli_ok(&["apply", "-f", &f]);
    wait_for("pods running", Duration::from_secs(90), || {
        ["web-a", "client"]
            .iter()
            .all(|p| pod_json(&d, p)["status"]["phase"] == "Running")
    });
    let ip = pod_ip(&d, "web-a");
    let get = || {
        d.cli(&[
            "exec",
            "client",
            "--",
            "sh",
            "-c",
            "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 outside 80 | sed '1,/^\\r$/d'",
        ])
    };
    // No slice yet: nothing answers.
    assert_eq!(String::from_utf8_lossy(&get().stdout), "");
    let slice = format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: outside-1\n  labels: {{kubernetes.io/service-name: outside}}\naddressType: IPv4\nendpoints:\n- addresses: [{ip}]\nports: [{{name: http, port: 8080, protocol: TCP}}]\n"
    );
    let sf = write(d.dir.path(), "slice.yaml", &slice);
    let out = d.cli_ok(&["apply", "-f", &sf]);
    assert!(
        out.contains("endpointslice.discovery.k8s.io/outside-1 created"),
        "{out}"
    );
    wait_for(
        "the Service routes to the slice",
        Duration::from_secs(10),
        || String::from_utf8_lossy(&get().stdout) == "web-a\n",
    );
    let listed = d.cli_ok(&["get", "endpointslices"]);
    assert!(listed.contains("outside-1"), "{listed}");
    let cluster_ip = serde_json::from_str::<serde_json::Value>(
        &d.cli_ok(&["get", "svc", "outside", "-o", "json"]),
    )
    .unwrap()["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_owned();
    let m = ask(dns, "outside.default.svc.cluster.local.", RecordType::A).unwrap();
    assert_eq!(a_records(&m), [cluster_ip]);
    // A slice of another address type is refused with the field named.
    let bad = write(
        d.dir.path(),
        "bad.yaml",
        &slice.replace("addressType: IPv4", "addressType: IPv6"),
    );
    let out = d.cli(&["apply", "-f", &bad]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("addressType"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Deleted: the Service has no endpoints again.
    d.cli_ok(&["delete", "endpointslice", "outside-1"]);
    wait_for(
        "no endpoint after the delete",
        Duration::from_secs(10),
        || String::from_utf8_lossy(&get().stdout).is_empty(),
    );
    // The older v1 Endpoints form, mirrored into a slice.
    let ep = format!(
        "apiVersion: v1\nkind: Endpoints\nmetadata: {{name: outside}}\nsubsets:\n- addresses: [{{ip: {ip}}}]\n  ports: [{{name: http, port: 8080}}]\n"
    );
    let ef = write(d.dir.path(), "ep.yaml", &ep);
    d.cli_ok(&["apply", "-f", &ef]);
    wait_for(
        "the Service routes to the Endpoints",
        Duration::from_secs(10),
        || String::from_utf8_lossy(&get().stdout) == "web-a\n",
    );
    let listed = d.cli_ok(&["get", "endpointslices"]);
    assert!(listed.contains("outside-mirror-0"), "{listed}");
    d.cli_ok(&["delete", "endpoints", "outside"]);
    wait_for(
        "no endpoint after the Endpoints delete",
        Duration::from_secs(10),
        || String::from_utf8_lossy(&get().stdout).is_empty(),
    );
    d.shutdown().await;
}
