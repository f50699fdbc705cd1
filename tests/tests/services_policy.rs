//! Who is masqueraded, end to end: a backend whose CGI prints `REMOTE_ADDR` behind a
//! NodePort with `externalTrafficPolicy: Local` (an outside network namespace keeps its
//! address), one with `Cluster` (masqueraded, as kube-proxy does), pod → ClusterIP (the
//! client's address when bridged replies pass conntrack), hairpin and 127.0.0.1 (both
//! masqueraded: their replies need it).

use std::time::Duration;

use kinglet_tests::*;

const OBJECTS: &str = r#"apiVersion: v1
kind: ConfigMap
metadata: {name: cgi}
data:
  ip: |
    #!/bin/sh
    echo Content-Type: text/plain
    echo
    echo "$REMOTE_ADDR"
---
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{name: s, configMap: {name: cgi, defaultMode: 0755}}]
  containers:
  - name: web
    image: kinglet.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [httpd, -f, -p, '8080', -h, /www]
    volumeMounts: [{name: s, mountPath: /www/cgi-bin}]
    readinessProbe:
      tcpSocket: {port: 8080}
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: kinglet.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sleep, '3600']
---
apiVersion: v1
kind: Service
metadata: {name: local}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: 30310}]
---
apiVersion: v1
kind: Service
metadata: {name: cluster}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: 30311}]
"#;

const REQUEST: &str = "printf 'GET /cgi-bin/ip HTTP/1.0\\r\\n\\r\\n' | nc -w 3";

/// The body of `GET /cgi-bin/ip` on `ip port` run by `run` (a shell command runner).
fn remote_addr(run: impl Fn(&str) -> std::process::Output, ip: &str, port: u16) -> String {
    let o = run(&format!("{REQUEST} {ip} {port}"));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("200 OK"),
        "GET {ip}:{port}: {o:?}"
    );
    // The CGI's headers end with a bare "\n\n"; its body is one line, the address as httpd's
    // dual-stack socket saw it ("[::ffff:10.0.0.1]").
    let last = out.lines().last().unwrap_or("").trim();
    last.trim_start_matches("[::ffff:")
        .trim_end_matches(']')
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn local_policy_keeps_the_client_address_and_cluster_masquerades() {
    let d = Daemon::start_with_config("service-cidr = \"10.220.3.0/24\"\n").await;
    d.import_test_image().await;
    let f = write(d.dir.path(), "all.yaml", OBJECTS);
    d.cli_ok(&["apply", "-f", &f]);
    let ip_of = |name: &str| {
        pod_json(&d, name)["status"]["podIP"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    wait_for("web ready, client running", Duration::from_secs(60), || {
        pod_json(&d, "web")["status"]["containerStatuses"][0]["ready"] == true
            && pod_json(&d, "client")["status"]["containerStatuses"][0]["state"]["running"]
                .is_object()
    });
    let table = sh(
        "nft",
        &["list", "table", "ip", &format!("{}_svc", d.net.table)],
    );
    wait_for(
        "both NodePorts in the rules",
        Duration::from_secs(15),
        || {
            let t = sh(
                "nft",
                &["list", "table", "ip", &format!("{}_svc", d.net.table)],
            );
            t.contains("30310 : goto ext-default/local")
                && t.contains("30311 : goto ext-default/cluster")
        },
    );
    let gateway = d.net.gateway();
    let (web, client) = (ip_of("web"), ip_of("client"));
    let cluster_ip = |svc: &str| -> String {
        let v: serde_json::Value =
            serde_json::from_str(&d.cli_ok(&["get", "svc", svc, "-o", "json"])).unwrap();
        v["spec"]["clusterIP"].as_str().unwrap().to_owned()
    };

    // From outside the host: Local keeps the client's address, Cluster masquerades it to the
    // address of the link towards the pod (kube-proxy's semantics for off-node clients).
    let outside = OutsideNs::new(&d.net);
    let in_outside = |s: &str| outside.run(&["sh", "-c", &s.replace("nc ", "busybox nc ")]);
    assert_eq!(
        remote_addr(in_outside, &outside.host_ip, 30310),
        outside.ns_ip,
        "Local: the backend sees the outside client\n{table}"
    );
    assert_eq!(
        remote_addr(in_outside, &outside.host_ip, 30311),
        gateway,
        "Cluster: masqueraded"
    );
    drop(outside);

    // The host itself, through 127.0.0.1: masqueraded whatever the policy (the pod could not
    // answer 127.0.0.1).
    let on_host = |s: &str| {
        std::process::Command::new("sh")
            .args(["-c", &s.replace("nc ", "busybox nc ")])
            .output()
            .unwrap()
    };
    assert_eq!(remote_addr(on_host, "127.0.0.1", 30310), gateway);

    // Pod → ClusterIP of another pod: the client's own address when replies bridged between
    // pods pass conntrack (br_netfilter), else masqueraded.
    let in_pod = |pod: &'static str| {
        let d = &d;
        move |s: &str| d.cli(&["exec", pod, "--", "sh", "-c", s])
    };
    let bridged_conntrack = std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables")
        .is_ok_and(|v| v.trim() == "1");
    let want = if bridged_conntrack { &client } else { &gateway };
    assert_eq!(
        &remote_addr(in_pod("client"), &cluster_ip("cluster"), 80),
        want,
        "pod -> ClusterIP (bridge-nf-call-iptables = 1: {bridged_conntrack})"
    );
    // Pod → a Local NodePort on the bridge address: the cluster behaviour (kube-proxy sends
    // pod traffic to external destinations the cluster way).
    assert_eq!(&remote_addr(in_pod("client"), &gateway, 30310), want);
    // Hairpin: the backend reaching itself through its Service is masqueraded.
    assert_eq!(
        remote_addr(in_pod("web"), &cluster_ip("local"), 80),
        gateway,
        "hairpin"
    );
    assert_ne!(web, gateway);
    d.shutdown().await;
}
