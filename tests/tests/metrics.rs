//! The Prometheus endpoint, scraped over HTTP from a test daemon started with
//! `--metrics-address`: CRI call latency by method, a failed and a successful image pull with
//! its bytes, running pods and containers, a manifest pod's start latency, a crashing
//! container's restarts, a readiness probe's runs and the queue depths; the daemon's own
//! health and poll calls are not counted.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use kinglet_proto::v1;
use kinglet_tests::registry::{Mode, Registry};
use kinglet_tests::{test_image, write, Daemon, IMAGE};

/// The web pod's successful readiness probe runs.
const PROBED: &str = "kinglet_prober_probe_total{namespace=\"default\",pod=\"web\",container=\"c\",probe_type=\"Readiness\",result=\"successful\"}";

fn scrape(addr: &str, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").expect("HTTP response");
    (head.to_owned(), body.to_owned())
}

/// The value of the series whose line starts with `series ` (exact labels).
fn value(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn scrape_cri_latency_pulls_pods_starts_and_restarts() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let a = addr.clone();
    let d = Daemon::start_configured(move |_| vec!["--metrics-address".into(), a]).await;
    let reg = Registry::start(Mode::Open);
    reg.push(&test_image().0, IMAGE, "team/busybox:1");

    // One failed pull (nothing listens on port 1) and one from the registry.
    let mut img = d.images().await;
    let pull = |image: String| v1::PullImageRequest {
        image: Some(v1::ImageSpec {
            image,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(img
        .pull_image(pull("127.0.0.1:1/nope:1".into()))
        .await
        .is_err());
    let pulled = format!("{}/team/busybox:1", reg.host);
    img.pull_image(pull(pulled.clone()))
        .await
        .expect("PullImage");

    // A pod that runs (with a readiness probe) and one whose container keeps exiting
    // (restarted at once, the first time).
    let f = write(
        d.dir.path(),
        "pods.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: web}}\nspec:\n  containers:\n\
             \x20 - {{name: c, image: '{pulled}', imagePullPolicy: IfNotPresent, command: [sleep, '1000'], \
             readinessProbe: {{exec: {{command: ['true']}}, periodSeconds: 1}}}}\n\
             ---\napiVersion: v1\nkind: Pod\nmetadata: {{name: crasher}}\nspec:\n  containers:\n\
             \x20 - {{name: c, image: '{pulled}', imagePullPolicy: IfNotPresent, command: [sh, -c, 'sleep 1; exit 1']}}\n"
        ),
    );
    d.cli_ok(&["apply", "-f", &f]);

    let (head, body) = scrape(&addr, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert!(body.ends_with("# EOF\n"), "{body}");

    // Wait (by scraping) for the pod start and a restart.
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        let (_, body) = scrape(&addr, "/metrics");
        let started = value(&body, "kinglet_pod_start_duration_seconds_count").unwrap_or(0.0);
        let restarts = value(
            &body,
            "kinglet_container_restarts_total{namespace=\"default\",pod=\"crasher\",container=\"c\"}",
        )
        .unwrap_or(0.0);
        let probes = value(&body, PROBED).unwrap_or(0.0);
        if started >= 1.0 && restarts >= 1.0 && probes >= 2.0 {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "no pod start, restart or two probe runs within 60 s:\n{body}\nlog:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };

    let start_sum = value(&body, "kinglet_pod_start_duration_seconds_sum").unwrap();
    assert!(start_sum > 0.0 && start_sum < 60.0, "{start_sum}");
    eprintln!("pod start latency (sandbox creation to last container start): {start_sum:.3} s");
    assert!(
        value(&body, "kinglet_running_pods").unwrap() >= 1.0,
        "{body}"
    );
    assert!(
        value(&body, "kinglet_running_containers").unwrap() >= 1.0,
        "{body}"
    );
    assert_eq!(
        value(&body, "kinglet_image_pulls_total{result=\"failure\"}"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        value(&body, "kinglet_image_pulls_total{result=\"success\"}"),
        Some(1.0),
        "{body}"
    );
    let bytes = value(&body, "kinglet_image_pull_bytes_total").unwrap();
    assert!(bytes > 100_000.0, "busybox layer bytes: {bytes}");
    assert_eq!(
        value(
            &body,
            "kinglet_cri_operation_duration_seconds_count{service=\"ImageService\",method=\"PullImage\"}"
        ),
        Some(2.0),
        "{body}"
    );
    assert!(
        value(
            &body,
            "kinglet_cri_operation_duration_seconds_count{service=\"RuntimeService\",method=\"Version\"}"
        )
        .unwrap()
            >= 1.0,
        "{body}"
    );
    assert!(
        body.contains("kinglet_cri_operation_errors_total{service=\"ImageService\",method=\"PullImage\",code=\""),
        "{body}"
    );
    assert!(
        body.contains("service=\"Objects\",method=\"Apply\""),
        "{body}"
    );
    // Queue depths: the pod workers' and each controller's.
    for name in ["pods", "deployment", "job"] {
        let depth = value(
            &body,
            &format!("kinglet_workqueue_depth{{name=\"{name}\"}}"),
        );
        assert!(depth.is_some_and(|d| d >= 0.0), "{name}: {body}");
    }
    // The daemon's own calls (metrics poll: ListContainers, Objects Get) are not counted.
    assert!(!body.contains("method=\"ListContainers\""), "{body}");
    assert!(
        !body.contains("service=\"Objects\",method=\"Get\""),
        "{body}"
    );

    let (head, _) = scrape(&addr, "/");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    d.shutdown().await;
}
