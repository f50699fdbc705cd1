//! Probes and lifecycle hooks at their edges, with Kubernetes semantics, on real containers:
//! gRPC probes against a `grpc.health.v1` server this test process serves, probes to closed
//! ports (the kubelet's failure messages as events, liveness restarts after failureThreshold),
//! an exec probe slower than its timeoutSeconds, readiness with successThreshold > 1, tcpSocket
//! lifecycle handlers (accepted, failing when they run), a hanging preStop bounded by the grace
//! period, a hanging postStart bounded by its limit, and `terminationGracePeriodSeconds: 0`.
//!
//! All the pods run side by side in one daemon.

use std::time::{Duration, Instant};

use kinglet_tests::*;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

/// The busybox test container: exits at once on SIGTERM, so stops are quick.
const CONTAINER: &str = r#"  - name: c
    image: kinglet.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'trap "exit 0" TERM; sleep 3600 & wait']
"#;

fn pod(name: &str, spec: &str, container: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  terminationGracePeriodSeconds: 2\n{spec}  containers:\n{CONTAINER}{container}"
    )
}

fn apply(d: &Daemon, name: &str, yaml: &str) {
    let f = write(d.dir.path(), &format!("{name}.yaml"), yaml);
    d.cli_ok(&["apply", "-f", &f]);
}

fn describe(d: &Daemon, name: &str) -> String {
    d.cli_ok(&["describe", "pod", name])
}

/// The status of container `c` of a pod.
fn cstatus(d: &Daemon, name: &str) -> serde_json::Value {
    pod_json(d, name)["status"]["containerStatuses"][0].clone()
}

fn restarts(d: &Daemon, name: &str) -> i64 {
    cstatus(d, name)["restartCount"].as_i64().unwrap_or(0)
}

fn ready(d: &Daemon, name: &str) -> bool {
    cstatus(d, name)["ready"] == true
}

fn running(d: &Daemon, name: &str) -> bool {
    !cstatus(d, name)["state"]["running"].is_null()
}

fn wait_event(d: &Daemon, name: &str, text: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let desc = describe(d, name);
        if desc.contains(text) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no event {text:?} for {name}:\n{desc}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Seconds since the epoch of an RFC 3339 UTC time ("2024-05-01T10:00:00Z").
fn epoch(ts: &str) -> i64 {
    let n = |r: std::ops::Range<usize>| ts[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    days * 86400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)
}

/// Host processes whose command line starts with `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.starts_with(marker) {
                out.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
            }
        }
    }
    out
}

/// Wait until no sandbox of pod `name` is left (the CRI's view).
async fn wait_sandbox_gone(d: &Daemon, name: &str, within: Duration) {
    let mut rt = d.runtime().await;
    let deadline = Instant::now() + within;
    loop {
        let items = rt
            .list_pod_sandbox(kinglet_proto::v1::ListPodSandboxRequest::default())
            .await
            .unwrap()
            .into_inner()
            .items;
        if !items
            .iter()
            .any(|s| s.metadata.as_ref().is_some_and(|m| m.name == name))
        {
            return;
        }
        assert!(Instant::now() < deadline, "sandbox of {name} still there");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A `grpc.health.v1.Health` server on 127.0.0.1 (its own thread and runtime, so the test's
/// blocking waits never starve it): its port and the handle that sets service statuses.
fn health_server() -> (u16, HealthReporter) {
    let (reporter, service) = tonic_health::server::health_reporter();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l))
                .await
                .unwrap();
        });
    });
    (port, reporter)
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_and_hooks_at_their_edges() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let (gport, health) = health_server();
    let t0 = Instant::now();

    // A postStart hook that never returns: the kubelet would wait for it (holding only that
    // pod's worker); Kinglet bounds it (30 s), then treats it as failed — FailedPostStartHook,
    // the container killed and restarted by its policy. Checked last.
    apply(
        &d,
        "hang-post",
        &pod(
            "hang-post",
            "",
            "    lifecycle: {postStart: {exec: {command: [sleep, '1000010']}}}\n",
        ),
    );

    // gRPC, on host-network pods (probes then go to 127.0.0.1): readiness of a service that is
    // not registered yet, then flips; liveness of another service; readiness with no service
    // (the server's overall health, "").
    apply(
        &d,
        "grpc-ready",
        &pod(
            "grpc-ready",
            "  hostNetwork: true\n",
            &format!("    readinessProbe: {{grpc: {{port: {gport}, service: kinglet.test.Ready}}, periodSeconds: 1}}\n"),
        ),
    );
    health
        .set_service_status("kinglet.test.Live", ServingStatus::Serving)
        .await;
    apply(
        &d,
        "grpc-live",
        &pod(
            "grpc-live",
            "  hostNetwork: true\n",
            &format!(
                "    livenessProbe: {{grpc: {{port: {gport}, service: kinglet.test.Live}}, periodSeconds: 1, failureThreshold: 2}}\n    readinessProbe: {{grpc: {{port: {gport}}}, periodSeconds: 1}}\n"
            ),
        ),
    );
    // Closed ports: liveness tcpSocket + readiness httpGet, and the other way round.
    apply(
        &d,
        "closed-a",
        &pod(
            "closed-a",
            "",
            "    livenessProbe: {tcpSocket: {port: 8081}, periodSeconds: 1, failureThreshold: 4}\n    readinessProbe: {httpGet: {port: 8082, path: /ready}, periodSeconds: 1}\n",
        ),
    );
    apply(
        &d,
        "closed-b",
        &pod(
            "closed-b",
            "",
            "    livenessProbe: {httpGet: {port: 8083, path: /healthz}, periodSeconds: 1, failureThreshold: 2}\n    readinessProbe: {tcpSocket: {port: 8084}, periodSeconds: 1}\n",
        ),
    );
    // An exec liveness probe that takes 5 s against a 1 s timeoutSeconds.
    apply(
        &d,
        "slow-exec",
        &pod(
            "slow-exec",
            "",
            "    livenessProbe: {exec: {command: [sh, -c, 'sleep 5']}, timeoutSeconds: 1, periodSeconds: 1, failureThreshold: 2}\n",
        ),
    );
    // Readiness needing 3 successes in a row, losing readiness at the first failure.
    apply(
        &d,
        "ready3",
        &pod(
            "ready3",
            "",
            "    readinessProbe: {exec: {command: [test, -f, /tmp/ready]}, periodSeconds: 1, successThreshold: 3, failureThreshold: 1}\n",
        ),
    );
    // tcpSocket lifecycle handlers: accepted at apply, failing when they run.
    apply(
        &d,
        "tcp-post",
        &pod(
            "tcp-post",
            "",
            "    lifecycle: {postStart: {tcpSocket: {port: 8085}}}\n",
        ),
    );
    let tcp_pre = |v: &str| {
        pod(
            "tcp-pre",
            "",
            &format!("    env: [{{name: V, value: '{v}'}}]\n    lifecycle: {{preStop: {{tcpSocket: {{port: 8086}}}}}}\n"),
        )
    };
    apply(&d, "tcp-pre", &tcp_pre("1"));
    // Deletion with a preStop that never ends (bounded by the 3 s grace period) and with
    // terminationGracePeriodSeconds 0 (a container that ignores SIGTERM and has children).
    apply(
        &d,
        "hang-pre",
        &pod(
            "hang-pre",
            "",
            "    lifecycle: {preStop: {exec: {command: [sleep, '1000009']}}}\n",
        )
        .replace(
            "terminationGracePeriodSeconds: 2",
            "terminationGracePeriodSeconds: 3",
        ),
    );
    apply(
        &d,
        "grace0",
        &pod("grace0", "", "")
            .replace(
                "terminationGracePeriodSeconds: 2",
                "terminationGracePeriodSeconds: 0",
            )
            .replace(
                r#"trap "exit 0" TERM; sleep 3600 & wait"#,
                r#"trap "" TERM; sleep 1000007 & sleep 1000008 & wait"#,
            ),
    );
    let all = [
        "hang-post",
        "grpc-ready",
        "grpc-live",
        "closed-a",
        "closed-b",
        "slow-exec",
        "ready3",
        "tcp-post",
        "tcp-pre",
        "hang-pre",
        "grace0",
    ];
    wait_for("all pods running", Duration::from_secs(30), || {
        all.iter().all(|p| {
            pod_json(&d, p)["status"]["containerStatuses"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        })
    });
    eprintln!("pods created after {:?}", t0.elapsed());

    // --- gRPC readiness follows the service's status.
    wait_event(
        &d,
        "grpc-ready",
        "Readiness probe failed: error: health rpc probe failed: rpc error: code = NotFound desc = service not registered",
        Duration::from_secs(10),
    );
    assert!(!ready(&d, "grpc-ready"));
    health
        .set_service_status("kinglet.test.Ready", ServingStatus::Serving)
        .await;
    wait_for("grpc-ready ready", Duration::from_secs(10), || {
        ready(&d, "grpc-ready")
    });
    health
        .set_service_status("kinglet.test.Ready", ServingStatus::NotServing)
        .await;
    wait_for("grpc-ready not ready", Duration::from_secs(10), || {
        !ready(&d, "grpc-ready")
    });
    assert!(describe(&d, "grpc-ready")
        .contains("Readiness probe failed: service unhealthy (responded with \"NOT_SERVING\")"));
    health
        .set_service_status("kinglet.test.Ready", ServingStatus::Serving)
        .await;
    wait_for("grpc-ready ready again", Duration::from_secs(10), || {
        ready(&d, "grpc-ready")
    });
    assert_eq!(restarts(&d, "grpc-ready"), 0, "readiness never restarts");

    // --- gRPC liveness: healthy, then NOT_SERVING twice in a row restarts the container.
    wait_for("grpc-live ready", Duration::from_secs(10), || {
        ready(&d, "grpc-live")
    });
    assert_eq!(restarts(&d, "grpc-live"), 0);
    health
        .set_service_status("kinglet.test.Live", ServingStatus::NotServing)
        .await;
    wait_for("grpc-live restarted", Duration::from_secs(15), || {
        restarts(&d, "grpc-live") >= 1
    });
    health
        .set_service_status("kinglet.test.Live", ServingStatus::Serving)
        .await;
    let desc = describe(&d, "grpc-live");
    assert!(
        desc.contains("Liveness probe failed: service unhealthy (responded with \"NOT_SERVING\")")
            && desc.contains("Container c failed liveness probe, will be restarted"),
        "{desc}"
    );
    eprintln!("grpc done after {:?}", t0.elapsed());

    // --- Closed ports: the kubelet's messages; liveness kills after failureThreshold.
    for (name, live, ready_msg) in [
        (
            "closed-a",
            "Liveness probe failed: dial tcp {ip}:8081: connect: connection refused",
            "Readiness probe failed: Get \"http://{ip}:8082/ready\": dial tcp {ip}:8082: connect: connection refused",
        ),
        (
            "closed-b",
            "Liveness probe failed: Get \"http://{ip}:8083/healthz\": dial tcp {ip}:8083: connect: connection refused",
            "Readiness probe failed: dial tcp {ip}:8084: connect: connection refused",
        ),
    ] {
        let ip = pod_json(&d, name)["status"]["podIP"]
            .as_str()
            .unwrap()
            .to_owned();
        wait_for(&format!("{name} restarted"), Duration::from_secs(20), || {
            restarts(&d, name) >= 1
        });
        let desc = describe(&d, name);
        for want in [live, ready_msg, "failed liveness probe, will be restarted"] {
            let want = want.replace("{ip}", &ip);
            assert!(desc.contains(&want), "{name}: no {want:?} in\n{desc}");
        }
        assert!(!ready(&d, name), "{name} must never be ready");
    }
    // failureThreshold 4 at 1 s: the first run of closed-a lived ≥ 3 s before it was killed.
    let last = &cstatus(&d, "closed-a")["lastState"]["terminated"];
    let ran =
        epoch(last["finishedAt"].as_str().unwrap()) - epoch(last["startedAt"].as_str().unwrap());
    assert!(ran >= 2, "killed after {ran} s: {last}");

    // --- An exec probe over its timeoutSeconds is a failure (and restarts the container well
    // before the 5 s command could have finished twice).
    wait_for("slow-exec restarted", Duration::from_secs(20), || {
        restarts(&d, "slow-exec") >= 1
    });
    let desc = describe(&d, "slow-exec");
    assert!(
        desc.contains("Liveness probe failed: command \"sh -c sleep 5\" timed out"),
        "{desc}"
    );
    let last = &cstatus(&d, "slow-exec")["lastState"]["terminated"];
    let ran =
        epoch(last["finishedAt"].as_str().unwrap()) - epoch(last["startedAt"].as_str().unwrap());
    assert!(ran < 9, "two 1 s timeouts took {ran} s: {last}");
    eprintln!("closed ports and slow exec done after {:?}", t0.elapsed());

    // --- successThreshold 3: ready only after three successes in a row; failureThreshold 1:
    // unready at the first failure.
    let ex = |cmd: &[&str]| {
        let mut a = vec!["exec", "ready3", "-c", "c", "--"];
        a.extend_from_slice(cmd);
        d.cli_ok(&a)
    };
    wait_for("ready3 running", Duration::from_secs(10), || {
        running(&d, "ready3")
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(!ready(&d, "ready3"));
    for round in 0..2 {
        ex(&["touch", "/tmp/ready"]);
        let t = Instant::now();
        wait_for("ready3 ready", Duration::from_secs(10), || {
            ready(&d, "ready3")
        });
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(1900),
            "round {round}: ready {took:?} after the first possible success"
        );
        ex(&["rm", "/tmp/ready"]);
        wait_for("ready3 unready", Duration::from_secs(5), || {
            !ready(&d, "ready3")
        });
    }
    assert_eq!(restarts(&d, "ready3"), 0);

    // --- tcpSocket postStart: FailedPostStartHook, container killed and restarted.
    wait_event(
        &d,
        "tcp-post",
        "TCPSocket is NOT supported as a LifecycleHandler",
        Duration::from_secs(10),
    );
    assert!(describe(&d, "tcp-post").contains("FailedPostStartHook"));
    wait_for("tcp-post restarted", Duration::from_secs(10), || {
        restarts(&d, "tcp-post") >= 1
    });
    // tcpSocket preStop: replacing the pod runs it (an event), and the stop goes on.
    wait_for("tcp-pre running", Duration::from_secs(10), || {
        running(&d, "tcp-pre")
    });
    let old = container_id(&pod_json(&d, "tcp-pre"), "c");
    apply(&d, "tcp-pre", &tcp_pre("2"));
    wait_for("tcp-pre replaced", Duration::from_secs(15), || {
        let p = pod_json(&d, "tcp-pre");
        let id = container_id(&p, "c");
        !id.is_empty() && id != old && running(&d, "tcp-pre")
    });
    let desc = describe(&d, "tcp-pre");
    assert!(
        desc.contains("FailedPreStopHook")
            && desc.contains("TCPSocket is NOT supported as a LifecycleHandler"),
        "{desc}"
    );
    eprintln!("hooks done after {:?}", t0.elapsed());

    // --- Deleting: a hanging preStop is abandoned when the 3 s grace period is spent; with a
    // grace period of 0 the container still gets SIGTERM and the kubelet's 2 s minimum, then
    // SIGKILL, and nothing of it is left.
    wait_for(
        "hang-pre and grace0 running",
        Duration::from_secs(10),
        || running(&d, "hang-pre") && running(&d, "grace0"),
    );
    assert_eq!(processes_with("sleep 1000007").len(), 1);
    let t = Instant::now();
    d.cli_ok(&["delete", "pod", "grace0"]);
    wait_sandbox_gone(&d, "grace0", Duration::from_secs(15)).await;
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(8),
        "grace0 deletion took {took:?}"
    );
    let t = Instant::now();
    d.cli_ok(&["delete", "pod", "hang-pre"]);
    wait_sandbox_gone(&d, "hang-pre", Duration::from_secs(20)).await;
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(10),
        "hang-pre deletion took {took:?}"
    );
    for marker in ["sleep 1000007", "sleep 1000008", "sleep 1000009"] {
        assert_eq!(processes_with(marker), Vec::<String>::new(), "{marker}");
    }

    // --- The hanging postStart, bounded.
    wait_event(
        &d,
        "hang-post",
        "FailedPostStartHook",
        Duration::from_secs(45),
    );
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(29) && took < Duration::from_secs(45),
        "{took:?}"
    );
    assert!(describe(&d, "hang-post").contains("did not finish within 30 s"));
    wait_for("hang-post restarted", Duration::from_secs(10), || {
        restarts(&d, "hang-post") >= 1
    });
    eprintln!("all done after {:?}", t0.elapsed());
    d.shutdown().await;
}
