//! Services end to end: real pods behind a ClusterIP and a NodePort through the kube-proxy
//! nftables table, EndpointSlices following readiness, rejects without endpoints, rules
//! gone after deletion, and traffic kept through a kill -9 of the daemon and rebuilt at start.

use std::time::{Duration, Instant};

use kinglet_tests::*;

const WEB: &str = r#"apiVersion: v1
kind: Pod
metadata: {name: NAME, labels: {app: web}}
spec:
  terminationGracePeriodSeconds: 1
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

fn web(name: &str) -> String {
    WEB.replace("NAME", name)
}

fn json(d: &Daemon, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&d.cli_ok(args)).unwrap()
}

/// Ready endpoint addresses of Service `svc` as `kinglet get endpointslices` shows them.
fn ready_endpoints(d: &Daemon, svc: &str) -> Vec<String> {
    let v = json(d, &["get", "endpointslices", "-o", "json"]);
    let items = v["items"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| vec![v.clone()]);
    let mut out: Vec<String> = items
        .iter()
        .filter(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] == svc)
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["conditions"]["ready"] == true)
        .map(|e| e["addresses"][0].as_str().unwrap().to_owned())
        .collect();
    out.sort();
    out
}

fn svc_table(d: &Daemon) -> String {
    sh(
        "nft",
        &["list", "table", "ip", &format!("{}_svc", d.net.table)],
    )
}

/// An HTTP GET of `/` on `ip:port` from inside `pod` (busybox nc; the image's wget crashes on
/// this kernel); stdout is the body.
fn get_from(d: &Daemon, pod: &str, addr: &str) -> std::process::Output {
    let (ip, port) = addr.split_once(':').unwrap();
    let script =
        format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} {port} | sed '1,/^\\r$/d'");
    d.cli(&["exec", pod, "--", "sh", "-c", &script])
}

fn p50(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// One HTTP/1.0 GET from the host; its duration.
fn timed_get(addr: &str) -> Duration {
    use std::io::{Read, Write};
    let t = Instant::now();
    let mut s =
        std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(3))
            .unwrap();
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.contains("200 OK"), "{out}");
    t.elapsed()
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_ip_and_node_port_follow_ready_endpoints() {
    let d = Daemon::start_with_config("service-cidr = \"10.220.1.0/24\"\n").await;
    d.import_test_image().await;
    let client = "apiVersion: v1\nkind: Pod\nmetadata: {name: client}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: kinglet.test/busybox:latest\n    imagePullPolicy: IfNotPresent\n    command: [sleep, '3600']\n";
    let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  type: NodePort\n  selector: {app: web}\n  ports:\n  - {name: http, port: 80, targetPort: http}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: empty}\nspec:\n  selector: {app: nothing}\n  ports: [{port: 80}]\n";
    let f = write(
        d.dir.path(),
        "all.yaml",
        &[
            web("web-a"),
            web("web-b"),
            client.to_owned(),
            svc.to_owned(),
        ]
        .join("---\n"),
    );
    let out = d.cli_ok(&["apply", "-f", &f]);
    assert!(out.contains("service/web created"), "{out}");

    // Allocation: first address after the reserved .1, first nodePort; stable on re-apply.
    let s = json(&d, &["get", "svc", "web", "-o", "json"]);
    assert_eq!(s["spec"]["clusterIP"], "10.220.1.2", "{s}");
    assert_eq!(s["spec"]["ports"][0]["nodePort"], 30000, "{s}");
    let again = d.cli_ok(&["apply", "-f", &f]);
    assert!(again.contains("service/web unchanged"), "{again}");
    let empty_ip = json(&d, &["get", "svc", "empty", "-o", "json"])["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(empty_ip, "10.220.1.3");

    let ip_of = |name: &str| {
        pod_json(&d, name)["status"]["podIP"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    wait_for(
        "both web pods ready in the slice",
        Duration::from_secs(60),
        || ready_endpoints(&d, "web").len() == 2,
    );
    let (a_ip, b_ip) = (ip_of("web-a"), ip_of("web-b"));
    let mut want = vec![a_ip.clone(), b_ip.clone()];
    want.sort();
    assert_eq!(ready_endpoints(&d, "web"), want);
    let table = d.cli_ok(&["get", "svc", "-o", "wide"]);
    let cols = |t: &str, name: &str| -> Vec<String> {
        let line = t
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {t}"));
        line.split_whitespace().map(str::to_owned).collect()
    };
    assert_eq!(
        cols(&table, "NAME")[..],
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE",
            "SELECTOR"
        ]
    );
    let row = cols(&table, "web ");
    assert_eq!(
        (&row[..5], &row[6]),
        (
            &["web", "NodePort", "10.220.1.2", "<none>", "80:30000/TCP"].map(String::from)[..],
            &"app=web".to_owned()
        ),
        "{table}"
    );
    let slices = d.cli_ok(&["get", "endpointslices"]);
    let row = cols(&slices, "web-");
    assert_eq!(row[1..3], ["IPv4", "8080"], "{slices}");
    assert_eq!(row[3], format!("{},{}", want[0], want[1]), "{slices}");
    let described = d.cli_ok(&["describe", "svc", "web"]);
    for line in [
        "Type:              NodePort".to_owned(),
        "IP:                10.220.1.2".to_owned(),
        "NodePort:          http  30000/TCP".to_owned(),
        format!("Endpoints:         {}:8080,{}:8080", want[0], want[1]),
    ] {
        assert!(described.contains(&line), "{line:?} in\n{described}");
    }
    let slice = json(&d, &["get", "endpointslices", "-o", "json"]);
    assert!(
        slice.to_string().contains("\"port\":8080"),
        "named targetPort resolved: {slice}"
    );
    wait_for("client running", Duration::from_secs(30), || {
        pod_json(&d, "client")["status"]["containerStatuses"][0]["state"]["running"].is_object()
    });

    // ClusterIP from another pod: both endpoints answer (random choice).
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let o = get_from(&d, "client", "10.220.1.2:80");
        assert!(o.status.success(), "{o:?}\n{}", svc_table(&d));
        seen.insert(String::from_utf8_lossy(&o.stdout).trim().to_owned());
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec!["web-a", "web-b"]);
    // Hairpin: a pod reaches its own Service.
    let o = get_from(&d, "web-a", "10.220.1.2:80");
    assert!(
        o.status.success(),
        "hairpin: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // NodePort from the host, on the bridge address and on 127.0.0.1.
    assert!(http_get_from_host(&format!("{}:30000", d.net.gateway())).contains("web-"));
    assert!(http_get_from_host("127.0.0.1:30000").contains("web-"));
    // ... and from another network namespace, through the host's address on its link.
    let outside = OutsideNs::new(&d.net);
    let script = format!(
        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 3 {} 30000",
        outside.host_ip
    );
    let o = outside.run(&["sh", "-c", &script]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("web-"),
        "NodePort from outside: {o:?}"
    );
    drop(outside);

    // Latency from the host, same run: ClusterIP vs pod IP, interleaved, five rounds (the
    // ClusterIP picks either pod; both run the same httpd).
    let mut ratios = Vec::new();
    for round in 0..5 {
        let (mut via_svc, mut direct) = (Vec::new(), Vec::new());
        for _ in 0..200 {
            via_svc.push(timed_get("10.220.1.2:80"));
            direct.push(timed_get(&format!("{a_ip}:8080")));
        }
        let (s, p) = (p50(via_svc), p50(direct));
        let ratio = s.as_secs_f64() / p.as_secs_f64();
        ratios.push(ratio);
        eprintln!(
            "FIGURE round {round}: http GET p50 via ClusterIP {s:?}, via pod IP {p:?}, ratio {ratio:.3} (200 each)"
        );
    }
    ratios.sort_by(f64::total_cmp);
    eprintln!(
        "FIGURE ClusterIP / pod IP p50 ratio over 5 rounds: median {:.3}, min {:.3}, max {:.3}",
        ratios[2], ratios[0], ratios[4]
    );

    // A Service without endpoints rejects at once.
    let t = Instant::now();
    let o = d.cli(&["exec", "client", "--", "nc", "-w", "3", "10.220.1.3", "80"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        err.contains("refused") && t.elapsed() < Duration::from_secs(3),
        "{err} after {:?}",
        t.elapsed()
    );

    // web-b fails its readiness probe: it leaves the slice and the rules; traffic goes to web-a.
    let t = Instant::now();
    d.cli_ok(&["exec", "web-b", "--", "rm", "/www/ready"]);
    let (mut unready_seen, mut rules_seen) = (None, None);
    while rules_seen.is_none() || unready_seen.is_none() {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "web-b still in the rules"
        );
        if rules_seen.is_none() && !svc_table(&d).contains(&format!("dnat to {b_ip}:8080")) {
            rules_seen = Some(t.elapsed());
        }
        if unready_seen.is_none()
            && pod_json(&d, "web-b")["status"]["containerStatuses"][0]["ready"] == false
        {
            unready_seen = Some(t.elapsed());
        }
    }
    eprintln!("FIGURE readiness failure (probe period 1 s): pod status unready after {unready_seen:?}, rules without the endpoint after {rules_seen:?}");
    assert_eq!(ready_endpoints(&d, "web"), vec![a_ip.clone()]);
    for _ in 0..10 {
        let o = get_from(&d, "client", "10.220.1.2:80");
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "web-a");
    }
    let t = Instant::now();
    d.cli_ok(&["exec", "web-b", "--", "touch", "/www/ready"]);
    wait_for("web-b back in the rules", Duration::from_secs(15), || {
        svc_table(&d).contains(&format!("dnat to {b_ip}:8080"))
    });
    eprintln!(
        "FIGURE readiness recovery -> rules with the endpoint: {:?}",
        t.elapsed()
    );

    // sessionAffinity ClientIP: one client keeps its endpoint.
    let sticky = write(
        d.dir.path(),
        "sticky.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: sticky}\nspec:\n  selector: {app: web}\n  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}\n  ports: [{port: 80, targetPort: 8080}]\n",
    );
    d.cli_ok(&["apply", "-f", &sticky]);
    wait_for("sticky rules", Duration::from_secs(10), || {
        svc_table(&d).matches("aff-default/sticky/").count() >= 4
    });
    let answers: std::collections::BTreeSet<String> = (0..12)
        .map(|_| {
            let o = get_from(&d, "client", "10.220.1.4:80");
            String::from_utf8_lossy(&o.stdout).trim().to_owned()
        })
        .collect();
    assert_eq!(answers.len(), 1, "one backend for one client: {answers:?}");
    let client_ip = ip_of("client");
    assert!(
        svc_table(&d).contains(&format!("{client_ip} expires")),
        "the client is in an affinity set: {}",
        svc_table(&d)
    );
    assert!(answers.iter().all(|a| a.starts_with("web-")), "{answers:?}");

    // Deleting the Services leaves no rule of them.
    d.cli_ok(&["delete", "svc", "web"]);
    d.cli_ok(&["delete", "svc", "empty"]);
    d.cli_ok(&["delete", "svc", "sticky"]);
    wait_for("rules gone", Duration::from_secs(10), || {
        let t = svc_table(&d);
        !t.contains("10.220.1.2")
            && !t.contains("10.220.1.3")
            && !t.contains("10.220.1.4")
            && !t.contains("aff-")
            && !t.contains("30000")
            && !t.contains("chain svc-")
    });
    assert!(ready_endpoints(&d, "web").is_empty());
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn service_traffic_survives_kill9_and_the_table_is_rebuilt_at_start() {
    let mut d = Daemon::start_with_config("service-cidr = \"10.220.2.0/24\"\n").await;
    d.import_test_image().await;
    let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{port: 80, targetPort: 8080}]\n";
    let f = write(
        d.dir.path(),
        "all.yaml",
        &[web("solo"), svc.to_owned()].join("---\n"),
    );
    d.cli_ok(&["apply", "-f", &f]);
    wait_for("endpoint ready", Duration::from_secs(60), || {
        ready_endpoints(&d, "web").len() == 1
    });
    assert!(http_get_from_host("10.220.2.2:80").contains("solo"));

    d.kill9();
    // The daemon is gone; the rules stay and traffic flows.
    assert!(http_get_from_host("10.220.2.2:80").contains("solo"));
    let table = format!("{}_svc", d.net.table);
    sh(
        "nft",
        &["add", "chain", "ip", &table, "stale-left-by-crash"],
    );
    d.spawn().await;
    // Through the restart and the table's rebuild, every request is answered.
    let t = Instant::now();
    let mut failures = Vec::new();
    while t.elapsed() < Duration::from_secs(4) {
        let attempt = std::net::TcpStream::connect_timeout(
            &"10.220.2.2:80".parse().unwrap(),
            Duration::from_millis(500),
        );
        if let Err(e) = attempt {
            failures.push(format!("{:?}: {e}", t.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        failures.is_empty(),
        "connections failed after the restart: {failures:?}"
    );
    wait_for("table rebuilt at start", Duration::from_secs(15), || {
        !svc_table(&d).contains("stale-left-by-crash")
    });
    assert!(http_get_from_host("10.220.2.2:80").contains("solo"));
    let s = json(&d, &["get", "svc", "web", "-o", "json"]);
    assert_eq!(
        s["spec"]["clusterIP"], "10.220.2.2",
        "the address survives the restart: {s}"
    );

    // A second Service asking for the taken address is refused, naming object and field.
    let clash = write(d.dir.path(), "clash.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: clash}\nspec:\n  clusterIP: 10.220.2.2\n  ports: [{port: 80}]\n");
    let o = d.cli(&["apply", "-f", &clash]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success()
            && err.contains("Service default/clash")
            && err.contains("spec.clusterIP")
            && err.contains("already allocated"),
        "{err}"
    );
    d.shutdown().await;
}

/// 100 Services × 5 endpoints: the time to replace the whole table (what one endpoint change
/// costs) and its size, on this kernel.
#[test]
fn hundred_services_table_update_time() {
    use kinglet_services::proxy::{
        apply, delete_table_script, table_script, update_script, ProxyPort, Table,
    };
    use std::net::Ipv4Addr;
    require_root();
    let table = format!("kt_{}_bench_svc", std::process::id());
    let ports = |shift: u8| -> Vec<ProxyPort> {
        (0..100u8)
            .map(|i| ProxyPort {
                id: format!("bench/s{i}/tcp/80"),
                protocol: "tcp",
                cluster_ip: Some(Ipv4Addr::new(10, 221, 0, i + 2)),
                port: 80,
                node_port: None,
                endpoints: (0..5u8)
                    .map(|e| (Ipv4Addr::new(10, 222, i, e + 2 + shift), 8080))
                    .collect(),
                affinity_secs: None,
                external_local: false,
            })
            .collect()
    };
    let tb = Table::named(&table);
    let nft = std::path::Path::new("nft");
    let mut times = Vec::new();
    for round in 0..10u8 {
        let script = table_script(&tb, &ports(round % 2));
        let t = Instant::now();
        apply(nft, &table, &script).unwrap();
        times.push(t.elapsed());
    }
    // One endpoint of one Service changes: the incremental update.
    let mut inc_times = Vec::new();
    let mut cur = ports(1);
    for round in 0..10u8 {
        let mut next = cur.clone();
        next[7].endpoints[0].0 = Ipv4Addr::new(10, 222, 250, round + 2);
        let script = update_script(&tb, &cur, &next);
        let t = Instant::now();
        apply(nft, &table, &script).unwrap();
        inc_times.push(t.elapsed());
        cur = next;
    }
    let listing = sh("nft", &["list", "table", "ip", &table]);
    assert!(
        listing.contains("dnat to 10.222.250.11:8080"),
        "last update applied"
    );
    eprintln!(
        "FIGURE 100 services x 5 endpoints: one endpoint changed, incremental update p50 {:?} (10 runs)",
        p50(inc_times)
    );
    let chains = listing.matches("\tchain ").count();
    apply(nft, &table, &delete_table_script(&table)).unwrap();
    assert_eq!(
        chains,
        9 + 100 + 500,
        "fixed chains, one per Service port, one per endpoint"
    );
    eprintln!(
        "FIGURE 100 services x 5 endpoints: full table replace p50 {:?} (10 runs), {} chains, {} lines listed",
        p50(times),
        chains,
        listing.lines().count()
    );
}

/// Incremental updates leave the kernel with what a full rebuild would: a sequence of
/// endpoint, affinity and Service changes applied one transaction at a time to one table and
/// as whole tables to another, the listings compared (order-independent).
#[test]
fn incremental_updates_match_a_full_rebuild() {
    use kinglet_services::proxy::{
        apply, delete_table_script, table_script, update_script, ProxyPort, Table,
    };
    use std::net::Ipv4Addr;
    require_root();
    let (inc, full) = (
        format!("kt_{}_inc_svc", std::process::id()),
        format!("kt_{}_full_svc", std::process::id()),
    );
    let ep = |n: u8| (Ipv4Addr::new(10, 223, 0, n), 8080);
    let port =
        |name: &str, ip: u8, eps: Vec<(Ipv4Addr, u16)>, aff: Option<i32>, np: Option<u16>| {
            ProxyPort {
                id: format!("t/{name}/tcp/80"),
                protocol: "tcp",
                cluster_ip: Some(Ipv4Addr::new(10, 224, 0, ip)),
                port: 80,
                node_port: np,
                endpoints: eps,
                affinity_secs: aff,
                external_local: false,
            }
        };
    let local = |mut p: ProxyPort| {
        p.external_local = true;
        p
    };
    let pods = Some((Ipv4Addr::new(10, 223, 0, 0), 16));
    let (inc_t, full_t) = (
        Table {
            name: inc.clone(),
            pod_cidr: pods,
            bridge_conntrack: true,
        },
        Table {
            name: full.clone(),
            pod_cidr: pods,
            bridge_conntrack: true,
        },
    );
    let states = [
        vec![
            port("a", 2, vec![ep(2), ep(3)], Some(30), None),
            port("b", 3, vec![ep(4)], None, None),
        ],
        vec![
            port("a", 2, vec![ep(2)], Some(30), None),
            port("b", 3, vec![ep(4), ep(5)], None, None),
        ],
        vec![
            port("a", 2, vec![], Some(30), None),
            port("b", 3, vec![ep(5)], None, None),
        ],
        vec![
            port("a", 2, vec![ep(6)], None, None),
            port("b", 3, vec![ep(5)], Some(10), None),
        ],
        vec![
            port("b", 3, vec![ep(5)], None, None),
            port("c", 4, vec![ep(7), ep(8)], None, Some(32123)),
        ],
        vec![
            port("b", 3, vec![ep(5)], None, None),
            local(port("c", 4, vec![ep(7), ep(8)], None, Some(32123))),
        ],
        vec![
            port("b", 3, vec![ep(5)], None, None),
            local(port("c", 4, vec![ep(7)], None, None)),
        ],
        vec![],
    ];
    let nft = std::path::Path::new("nft");
    let normalized = |table: &str| -> Vec<String> {
        let l = sh("nft", &["list", "table", "ip", table]).replace(table, "T");
        let mut v: Vec<String> = l
            .split(['\n', ',', '{', '}'])
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        v.sort();
        v
    };
    apply(nft, &inc, &table_script(&inc_t, &states[0])).unwrap();
    let mut result = Ok(());
    for (i, w) in states.windows(2).enumerate() {
        let script = update_script(&inc_t, &w[0], &w[1]);
        if let Err(e) = apply(nft, &inc, &script) {
            result = Err(format!("step {i}: {e}\n{script}"));
            break;
        }
        apply(nft, &full, &table_script(&full_t, &w[1])).unwrap();
        let (a, b) = (normalized(&inc), normalized(&full));
        if a != b {
            result = Err(format!(
                "step {i}: incremental {a:#?}\nfull {b:#?}\nscript:\n{script}"
            ));
            break;
        }
    }
    for t in [&inc, &full] {
        let _ = apply(nft, t, &delete_table_script(t));
    }
    result.unwrap();
}
