//! Prometheus metrics (off unless `metrics-address` is set), written with the
//! `prometheus-client` crate and served as OpenMetrics text on `GET /metrics`.
//!
//! This module owns the registry and the series:
//! - `kinglet_cri_operation_duration_seconds{service,method}` and
//!   `kinglet_cri_operation_errors_total{service,method,code}`: every gRPC call on the socket,
//!   measured by a tower layer ([`layer`]) — the kubelet's `runtime_operations_duration_seconds`
//!   seen from the runtime; the daemon's own health and metrics calls are left out;
//! - `kinglet_pod_start_duration_seconds`: for each pod from the manifests or `kinglet
//!   apply`, from its creation to the start of the last of its containers, once, when it
//!   first runs (the kubelet's `pod_start_duration_seconds`);
//! - `kinglet_running_pods`, `kinglet_running_containers`: ready sandboxes and running
//!   containers (every CRI client's);
//! - `kinglet_container_restarts_total{namespace,pod,container}`: restarts Kinglet made;
//! - `kinglet_image_pulls_total{result}`, `kinglet_image_pull_bytes_total`: PullImage calls
//!   and layer bytes downloaded;
//! - `kinglet_prober_probe_total{namespace,pod,container,probe_type,result}`: probe runs
//!   ([`probes`], the kubelet's `prober_probe_total`);
//! - `kinglet_workqueue_depth{name}`: the pod workers' (`pods`) and each controller's workers
//!   woken and waiting for their pass (client-go's `workqueue_depth`).
//!
//! The pod series come from [`poll`], which asks the daemon's own socket every second.

pub mod http;
pub mod layer;
pub mod poll;
pub mod probes;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The metrics tasks (poller and HTTP endpoint); aborted when dropped.
pub struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        self.0.iter().for_each(|t| t.abort());
    }
}

/// What the poller reads in-process: the puller's layer bytes, the supervisor's probe runs
/// and the queue depths.
pub struct Sources {
    pub pull_bytes: Box<dyn Fn() -> u64 + Send + Sync>,
    pub probes: Box<dyn Fn() -> Vec<kinglet_kubelet::metrics_api::ProbeCount> + Send + Sync>,
    pub queues: kinglet_controllers::QueueDepths,
}

/// Start the poller and serve scrapes on `listener`.
pub fn spawn(
    listener: tokio::net::TcpListener,
    metrics: std::sync::Arc<Metrics>,
    socket: std::path::PathBuf,
    sources: Sources,
) -> Tasks {
    let poller = std::sync::Arc::new(poll::Poller::new(metrics, socket, sources));
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving metrics on /metrics");
    }
    let p = poller.clone();
    Tasks(vec![
        tokio::spawn(async move { p.run().await }),
        tokio::spawn(http::serve(listener, poller)),
    ])
}

/// Label pairs of one series.
pub type Labels = Vec<(String, String)>;

/// The gRPC metadata key marking the daemon's own calls (health check, metrics poll), which
/// the CRI series leave out.
pub const INTERNAL_CALL: &str = "x-kinglet-internal";

fn cri_histogram() -> Histogram {
    // 0.5 ms .. ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Every series, registered once.
pub struct Metrics {
    registry: Registry,
    pub cri_duration: Family<Labels, Histogram, fn() -> Histogram>,
    pub cri_errors: Family<Labels, Counter>,
    pub pod_start: Histogram,
    pub running_pods: Gauge,
    pub running_containers: Gauge,
    pub restarts: Family<Labels, Counter>,
    pub pulls: Family<Labels, Counter>,
    pub pull_bytes: Counter,
    pub probes: Family<Labels, Counter>,
    pub queue_depth: Family<Labels, Gauge>,
    /// Where `pull_bytes` was last synced from the puller's total.
    pull_bytes_seen: AtomicU64,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("kinglet");
        let cri_duration =
            Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(cri_histogram);
        registry.register_with_unit(
            "cri_operation_duration",
            "Duration of CRI (and Kinglet admin) gRPC calls by service and method",
            prometheus_client::registry::Unit::Seconds,
            cri_duration.clone(),
        );
        let cri_errors = Family::<Labels, Counter>::default();
        registry.register(
            "cri_operation_errors",
            "CRI gRPC calls that failed, by service, method and gRPC code",
            cri_errors.clone(),
        );
        // 0.1 s .. ~410 s
        let pod_start = Histogram::new(exponential_buckets(0.1, 2.0, 13));
        registry.register_with_unit(
            "pod_start_duration",
            "Time from a pod's creation to the start of the last of its containers",
            prometheus_client::registry::Unit::Seconds,
            pod_start.clone(),
        );
        let running_pods = Gauge::default();
        registry.register(
            "running_pods",
            "Pod sandboxes in state READY",
            running_pods.clone(),
        );
        let running_containers = Gauge::default();
        registry.register(
            "running_containers",
            "Containers in state RUNNING",
            running_containers.clone(),
        );
        let restarts = Family::<Labels, Counter>::default();
        registry.register(
            "container_restarts",
            "Container restarts by restartPolicy, by pod and container",
            restarts.clone(),
        );
        let pulls = Family::<Labels, Counter>::default();
        registry.register(
            "image_pulls",
            "PullImage calls by result (success, failure)",
            pulls.clone(),
        );
        let pull_bytes = Counter::default();
        registry.register_with_unit(
            "image_pull",
            "Image layer bytes downloaded from registries",
            prometheus_client::registry::Unit::Bytes,
            pull_bytes.clone(),
        );
        let probes = Family::<Labels, Counter>::default();
        registry.register(
            "prober_probe",
            "Probe runs by pod, container, probe type and result (successful, failed, unknown)",
            probes.clone(),
        );
        let queue_depth = Family::<Labels, Gauge>::default();
        registry.register(
            "workqueue_depth",
            "Workers woken and waiting for their pass, by queue (pods and each controller)",
            queue_depth.clone(),
        );
        Metrics {
            registry,
            cri_duration,
            cri_errors,
            pod_start,
            running_pods,
            running_containers,
            restarts,
            pulls,
            pull_bytes,
            probes,
            queue_depth,
            pull_bytes_seen: AtomicU64::new(0),
        }
    }

    /// Record one gRPC call: `path` is `/package.Service/Method`, `code` its gRPC status code.
    pub fn observe_call(&self, path: &str, elapsed: Duration, code: i32) {
        let (service, method) = split_path(path, code);
        let labels: Labels = vec![("service".into(), service), ("method".into(), method)];
        self.cri_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if code != 0 {
            let mut l = labels.clone();
            l.push(("code".into(), code_name(code).into()));
            self.cri_errors.get_or_create(&l).inc();
        }
        if path == "/runtime.v1.ImageService/PullImage" {
            let result = if code == 0 { "success" } else { "failure" };
            self.pulls
                .get_or_create(&vec![("result".into(), result.into())])
                .inc();
        }
    }

    /// Bring the pulled-bytes counter up to the puller's running total.
    pub fn sync_pull_bytes(&self, total: u64) {
        let seen = self.pull_bytes_seen.swap(total, Ordering::Relaxed);
        if total > seen {
            self.pull_bytes.inc_by(total - seen);
        }
    }

    /// Set the queue depths.
    pub fn set_queue_depths(&self, depths: &[(&'static str, usize)]) {
        for (name, n) in depths {
            let labels: Labels = vec![("name".into(), (*name).into())];
            self.queue_depth.get_or_create(&labels).set(*n as i64);
        }
    }

    /// The OpenMetrics text of every series.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// (service, method) labels of a gRPC path; bounded: unknown services and unimplemented
/// methods are `other`.
pub fn split_path(path: &str, code: i32) -> (String, String) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let service = parts.next().unwrap_or("");
    let method = parts.next().unwrap_or("");
    let short = match service {
        "runtime.v1.RuntimeService" => "RuntimeService",
        "runtime.v1.ImageService" => "ImageService",
        s if s.starts_with("kinglet.") => s.rsplit('.').next().unwrap_or("other"),
        "grpc.health.v1.Health" => "Health",
        _ => "other",
    };
    let known = short != "other"
        && code != 12
        && !method.is_empty()
        && method.len() <= 64
        && method.chars().all(|c| c.is_ascii_alphanumeric());
    (
        short.to_owned(),
        if known {
            method.to_owned()
        } else {
            "other".into()
        },
    )
}

fn code_name(code: i32) -> &'static str {
    match code {
        1 => "Cancelled",
        2 => "Unknown",
        3 => "InvalidArgument",
        4 => "DeadlineExceeded",
        5 => "NotFound",
        6 => "AlreadyExists",
        7 => "PermissionDenied",
        8 => "ResourceExhausted",
        9 => "FailedPrecondition",
        10 => "Aborted",
        11 => "OutOfRange",
        12 => "Unimplemented",
        13 => "Internal",
        14 => "Unavailable",
        15 => "DataLoss",
        16 => "Unauthenticated",
        _ => "Other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_bounded_labels() {
        assert_eq!(
            split_path("/runtime.v1.RuntimeService/RunPodSandbox", 0),
            ("RuntimeService".into(), "RunPodSandbox".into())
        );
        assert_eq!(
            split_path("/kinglet.admin.Objects/Get", 0),
            ("Objects".into(), "Get".into())
        );
        assert_eq!(
            split_path("/runtime.v1.RuntimeService/Nope", 12),
            ("RuntimeService".into(), "other".into())
        );
        assert_eq!(
            split_path("/evil.Svc/x", 0),
            ("other".into(), "other".into())
        );
    }

    #[test]
    fn calls_errors_pulls_and_bytes_are_encoded() {
        let m = Metrics::new();
        m.observe_call(
            "/runtime.v1.RuntimeService/RunPodSandbox",
            Duration::from_millis(30),
            0,
        );
        m.observe_call(
            "/runtime.v1.ImageService/PullImage",
            Duration::from_secs(1),
            5,
        );
        m.sync_pull_bytes(1000);
        m.sync_pull_bytes(1500);
        m.set_queue_depths(&[("pods", 3), ("job", 0)]);
        let text = m.encode();
        for want in [
            "kinglet_cri_operation_duration_seconds_count{service=\"RuntimeService\",method=\"RunPodSandbox\"} 1",
            "kinglet_cri_operation_errors_total{service=\"ImageService\",method=\"PullImage\",code=\"NotFound\"} 1",
            "kinglet_image_pulls_total{result=\"failure\"} 1",
            "kinglet_image_pull_bytes_total 1500",
            "kinglet_workqueue_depth{name=\"pods\"} 3",
            "kinglet_workqueue_depth{name=\"job\"} 0",
            "# TYPE kinglet_pod_start_duration_seconds histogram",
            "# EOF",
        ] {
            assert!(text.contains(want), "{want} in:\n{text}");
        }
    }
}
