//! What pods and local users must not reach, tried as an attacker on the same host would:
//! - an unprivileged host user (`nobody`) reading a running pod's data on the host: its Secret
//!   and ConfigMap volumes, its emptyDir, a file written in its root file system, the stored
//!   Secret and the container's log — while a pod running as a non-root uid with fsGroup keeps
//!   working with the same volumes;
//! - a pod sending a crafted packet (raw `AF_PACKET` socket, destination MAC the bridge's) to a
//!   host service listening only on 127.0.0.1 (CVE-2020-8558) — while a hostPort on 127.0.0.1
//!   still answers.
//!
//! The test daemon's temporary directory is opened to 0755 first, as `/var/lib` and `/run` are,
//! so that only the daemon's own modes stand between `nobody` and the data.

use std::net::{Ipv4Addr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kinglet_proto::v1;
use kinglet_tests::rawnet::{parse_mac, send_from_netns, UdpFrame};
use kinglet_tests::*;

const MANIFEST: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: cm}
data: {color: MARK-CONFIGMAP}
---
apiVersion: v1
kind: Secret
metadata: {name: sec}
stringData: {pw: MARK-SECRET}
---
apiVersion: v1
kind: Pod
metadata: {name: victim}
spec:
  securityContext: {runAsUser: 1000, runAsGroup: 3000, fsGroup: 2000}
  containers:
  - name: writer
    image: kinglet.test/busybox:latest
    imagePullPolicy: IfNotPresent
    securityContext: {runAsUser: 0}
    command: [sh, -c, 'echo MARK-ROOTFS > /rootfile; echo MARK-LOG; exec sleep 3600']
  - name: reader
    image: kinglet.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'cat /secret/pw /cm/color > /scratch/out && echo MARK-EMPTYDIR >> /scratch/out; exec sleep 3600']
    volumeMounts:
    - {name: scratch, mountPath: /scratch}
    - {name: cm, mountPath: /cm}
    - {name: secret, mountPath: /secret}
  volumes:
  - {name: scratch, emptyDir: {}}
  - {name: cm, configMap: {name: cm}}
  - {name: secret, secret: {secretName: sec, defaultMode: 0440}}
"#;

/// Every regular file below `dir` (not following symlinks) whose first 64 KiB contain `MARK-`,
/// with the markers it holds.
fn marked_files(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let Ok(t) = e.file_type() else { continue };
        let p = e.path();
        if t.is_dir() {
            marked_files(&p, out);
        } else if t.is_file() && e.metadata().is_ok_and(|m| m.len() < 65536) {
            let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap_or_default()).into_owned();
            if text.contains("MARK-") {
                out.push((p, text));
            }
        }
    }
}

/// Run `args` as the host user `nobody` with no supplementary groups.
fn as_nobody(args: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(args)
        .output()
        .expect("setpriv (util-linux)")
}

#[tokio::test(flavor = "multi_thread")]
async fn local_users_cannot_read_pod_data_and_non_root_pods_keep_working() {
    let d = Daemon::start().await;
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d.import_test_image().await;
    let f = write(d.dir.path(), "victim.yaml", MANIFEST);
    d.cli_ok(&["apply", "-f", &f]);
    wait_for("victim running", Duration::from_secs(60), || {
        pod_json(&d, "victim")["status"]["phase"] == "Running"
    });
    // The non-root container with fsGroup read its Secret and ConfigMap and wrote its emptyDir.
    let mut seen = String::new();
    let cat = [
        "exec",
        "victim",
        "-c",
        "reader",
        "--",
        "cat",
        "/scratch/out",
    ];
    for _ in 0..100 {
        seen = String::from_utf8_lossy(&d.cli(&cat).stdout).into_owned();
        if seen.contains("MARK-EMPTYDIR") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let describe = d.cli(&["describe", "pod", "victim"]);
    let describe = String::from_utf8_lossy(&describe.stdout);
    assert_eq!(
        seen, "MARK-SECRETMARK-CONFIGMAPMARK-EMPTYDIR\n",
        "{describe}"
    );
    let id = d.cli_ok(&["exec", "victim", "-c", "reader", "--", "id"]);
    assert!(
        id.starts_with("uid=1000") && id.contains(" gid=3000"),
        "{id}"
    );

    // Where the pod's data is on the host, found as root.
    let mut files = Vec::new();
    marked_files(&d.root, &mut files);
    marked_files(&d.run_root, &mut files);
    let under = |base: &Path, marker: &str| {
        files
            .iter()
            .filter(|(p, t)| p.starts_with(base) && t.contains(marker))
            .count()
    };
    for (base, marker) in [
        (d.run_root.join("volumes"), "MARK-SECRET"),
        (d.run_root.join("secrets"), "MARK-SECRET"),
        (d.run_root.join("volumes"), "MARK-CONFIGMAP"),
        (d.root.join("volumes"), "MARK-EMPTYDIR"),
        (d.root.join("containers"), "MARK-ROOTFS"),
        (d.root.join("pod-logs"), "MARK-LOG"),
    ] {
        assert!(
            under(&base, marker) > 0,
            "{marker} under {}: {files:?}",
            base.display()
        );
    }

    // None of it is readable by another local user, nor are the directories listable.
    for (p, _) in &files {
        let out = as_nobody(&["cat", &p.display().to_string()]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            !out.status.success() && !stdout.contains("MARK-"),
            "nobody read {}: {stdout}",
            p.display()
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
            "{}: {}",
            p.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for dir in [
        d.root.clone(),
        d.run_root.clone(),
        d.run_root.join("pods"),
        d.run_root.join("volumes"),
        d.run_root.join("secrets"),
        d.run_root.join("containers"),
    ] {
        let out = as_nobody(&["ls", &dir.display().to_string()]);
        assert!(!out.status.success(), "nobody listed {}", dir.display());
    }
    assert_run_root_closed(&d);
    d.cli_ok(&["delete", "-f", &f]);
    d.shutdown().await;
}

/// The root is 0700; every directory directly in the run root is closed (new ones must be
/// too), except pods/ and containers/: searchable (0711, for pods' mapped roots in user
/// namespaces), with each pod's and container's own directory in them closed.
fn assert_run_root_closed(d: &Daemon) {
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&d.root), 0o700);
    let searchable = ["pods", "containers"];
    for e in std::fs::read_dir(&d.run_root).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            let open = searchable.iter().any(|s| e.file_name() == *s);
            let want = if open { 0o711 } else { 0o700 };
            assert_eq!(mode(&e.path()), want, "{}", e.path().display());
        }
    }
    for dir in searchable {
        for e in std::fs::read_dir(d.run_root.join(dir)).unwrap().flatten() {
            assert_eq!(mode(&e.path()), 0o700, "{}", e.path().display());
            let out = as_nobody(&["ls", &e.path().display().to_string()]);
            assert!(
                !out.status.success(),
                "nobody listed {}",
                e.path().display()
            );
        }
    }
}

/// A UDP listener that reports whether `want` arrived within `within`.
fn received(sock: &UdpSocket, want: &[u8], within: Duration) -> bool {
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = std::time::Instant::now() + within;
    let mut buf = [0u8; 256];
    while std::time::Instant::now() < deadline {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            if &buf[..n] == want {
                return true;
            }
        }
    }
    false
}

/// The daemon's loopback guard, as nft lists it.
fn guard_chain(d: &Daemon) -> String {
    sh(
        "nft",
        &["list", "chain", "ip", &d.net.table, "localnet_guard"],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_cannot_reach_host_loopback_while_localhost_hostports_work() {
    let d = Daemon::start().await;
    let gateway = d.net.gateway();
    loopback_attack_fails_and_hostport_answers(d, &gateway).await;
}

/// CNI mode: the `portmap` plugin turns `route_localnet` on; Kinglet's table holds the guard.
#[tokio::test(flavor = "multi_thread")]
async fn in_cni_mode_pods_cannot_reach_host_loopback_either() {
    let d = Daemon::start_cni().await;
    let gateway = format!("10.215.{}.1", d.net.octet);
    loopback_attack_fails_and_hostport_answers(d, &gateway).await;
}

async fn loopback_attack_fails_and_hostport_answers(d: Daemon, gateway: &str) {
    d.import_test_image().await;
    let mut rt = d.runtime().await;
    let host_port = 21000 + (std::process::id() % 8000) as i32;
    let mut cfg = pod_config("attacker", &d.dir.path().join("logs"));
    cfg.port_mappings = vec![v1::PortMapping {
        protocol: v1::Protocol::Tcp as i32,
        container_port: 8080,
        host_port,
        host_ip: "127.0.0.1".into(),
    }];
    let pod = run_pod(&mut rt, &cfg).await;
    run_container(
        &mut rt,
        &pod,
        &cfg,
        sh_container(
            "web",
            "mkdir -p /www && echo hello-local > /www/index.html && exec httpd -f -p 8080 -h /www",
        ),
    )
    .await;
    let pod_ip: Ipv4Addr = rt
        .pod_sandbox_status(v1::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .and_then(|s| s.network)
        .map(|n| n.ip)
        .unwrap()
        .parse()
        .unwrap();
    let netns = d.run_root.join("pods").join(&pod).join("ns").join("net");
    let bridge_mac = parse_mac(
        &std::fs::read_to_string(format!("/sys/class/net/{}/address", d.net.bridge)).unwrap(),
    );
    let gateway: Ipv4Addr = gateway.parse().unwrap();

    // The hostPort on 127.0.0.1 answers from the host (and still does below).
    let body = http_get_from_host(&format!("127.0.0.1:{host_port}"));
    assert!(body.ends_with("\r\n\r\nhello-local\n"), "{body}");

    // Host services: one only on loopback (the target), one on the bridge address (control).
    let local = UdpSocket::bind("127.0.0.1:0").unwrap();
    let on_bridge = UdpSocket::bind((gateway, 0)).unwrap();
    let frame = |dst_ip, dst_port, payload: &[u8]| UdpFrame {
        dst_mac: bridge_mac,
        src_ip: pod_ip,
        dst_ip,
        dst_port,
        payload: payload.to_vec(),
    };

    // Control: the same kind of crafted frame to the bridge address arrives, so the sender
    // works and a missing datagram below means it was dropped.
    let control = b"crafted-to-bridge";
    let port = on_bridge.local_addr().unwrap().port();
    send_from_netns(&netns, "eth0", &frame(gateway, port, control)).unwrap();
    assert!(
        received(&on_bridge, control, Duration::from_secs(3)),
        "control frame to the bridge address never arrived"
    );

    let attack = b"crafted-to-loopback";
    let port = local.local_addr().unwrap().port();
    for _ in 0..3 {
        send_from_netns(&netns, "eth0", &frame(Ipv4Addr::LOCALHOST, port, attack)).unwrap();
    }
    assert!(
        !received(&local, attack, Duration::from_secs(2)),
        "a pod reached a host service listening only on 127.0.0.1"
    );
    // (Which table's guard dropped it is not asserted: tests running side by side have
    // their own daemons, and every table's input chain sees every packet.)
    let guard = guard_chain(&d);
    assert!(
        guard.contains("iifname != \"lo\" ip daddr 127.0.0.0/8 ct status & dnat != dnat"),
        "{guard}"
    );
    let localnet = std::fs::read_to_string(format!(
        "/proc/sys/net/ipv4/conf/{}/route_localnet",
        d.net.bridge
    ))
    .unwrap();
    assert_eq!(
        localnet.trim(),
        "1",
        "hostPorts on 127.0.0.1 need route_localnet"
    );

    remove_pod(&mut rt, &pod).await;
    d.shutdown().await;
}
