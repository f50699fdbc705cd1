//! Container probes as the kubelet runs them: startup, liveness and readiness, each `exec`,
//! `httpGet`, `tcpSocket` or `grpc`, with initialDelaySeconds, periodSeconds, timeoutSeconds,
//! successThreshold, failureThreshold and the probe's own terminationGracePeriodSeconds.
//!
//! One prober task per running container: it waits for the startup probe to succeed (if
//! there is one), then runs liveness and readiness side by side, each on its own period. Every
//! failed run is an `Unhealthy` event with the kubelet's wording (`Liveness probe failed:
//! dial tcp 10.85.0.7:8080: connect: connection refused`); a run that could not be made at all
//! (the kubelet's "errored" result) is an event too but is not counted. A startup or liveness
//! probe that reaches failureThreshold kills the container as the kubelet does (`Killing`
//! event, preStop hook, stop signal, SIGKILL; see [`hooks::kill_container`]) and the
//! reconciler restarts it by the pod's restartPolicy; readiness drives the container's
//! `ready` flag and so the pod's Ready condition. The task ends with its container.
//!
//! Probes reach the pod IP, or 127.0.0.1 for host-network pods. gRPC probes call the standard
//! `grpc.health.v1.Health/Check` (the `tonic-health` client) with the probe's `service` (empty
//! when unset): SERVING is success, anything else a failure.

use std::sync::Arc;
use std::time::Duration;

#[cfg(test)]
use k8s_openapi::api::core::v1::HTTPGetAction;
use k8s_openapi::api::core::v1::{Container, GRPCAction, Probe};
#[cfg(test)]
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kinglet_proto::v1;
use tokio::time::{Instant, MissedTickBehavior};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::actions::{dial_error, http_get, join_host_port, port_of, HttpError, PROBE_AGENT};
use crate::hooks;
use crate::pod::PodShared;
use crate::runtime::PodRuntime;

/// What the prober knows of one container (by CRI container id).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProbeState {
    pub started: bool,
    pub ready: bool,
}

fn secs(v: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(v.unwrap_or(default).max(0) as u64)
}

/// The result of one probe run, as the kubelet tells them apart.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    Success,
    /// A failure, counted against failureThreshold; the kubelet's output text.
    Failure(String),
    /// The probe could not be run (an unresolvable port, an exec that could not start): the
    /// kubelet records it and throws the result away.
    Error(String),
}

/// The three kinds of probe, named as the kubelet names them in events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Startup,
    Liveness,
    Readiness,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }
}

/// A whole-second timeout as Go prints a `time.Duration` ("1s").
fn go_duration(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

/// Run a probe once.
async fn run_once(
    rt: &dyn PodRuntime,
    container_id: &str,
    c: &Container,
    p: &Probe,
    host: &str,
) -> Outcome {
    // timeoutSeconds: default 1, minimum 1 (the API server's defaulting and validation).
    let timeout = secs(p.timeout_seconds, 1).max(Duration::from_secs(1));
    if let Some(e) = &p.exec {
        let cmd = e.command.clone().unwrap_or_default();
        return match rt
            .exec_sync(v1::ExecSyncRequest {
                container_id: container_id.into(),
                cmd: cmd.clone(),
                timeout: timeout.as_secs() as i64,
            })
            .await
        {
            Ok(r) if r.exit_code == 0 => Outcome::Success,
            // The kubelet's output: stdout then stderr.
            Ok(r) => Outcome::Failure(
                String::from_utf8_lossy(&[r.stdout, r.stderr].concat()).into_owned(),
            ),
            Err(e) if e.kind == crate::runtime::RuntimeErrorKind::DeadlineExceeded => {
                Outcome::Failure(format!("command {:?} timed out", cmd.join(" ")))
            }
            Err(e) => Outcome::Error(crate::error::chain(&e)),
        };
    }
    if let Some(t) = &p.tcp_socket {
        let Some(port) = port_of(c, &t.port) else {
            return Outcome::Error(format!("unable to resolve port {:?}", t.port));
        };
        let h = t.host.clone().unwrap_or_else(|| host.to_owned());
        let addr = join_host_port(&h, port);
        return match tokio::time::timeout(
            timeout,
            tokio::net::TcpStream::connect((h.as_str(), port)),
        )
        .await
        {
            Ok(Ok(_)) => Outcome::Success,
            Ok(Err(e)) => Outcome::Failure(dial_error(&addr, &e)),
            Err(_) => Outcome::Failure(format!("dial tcp {addr}: i/o timeout")),
        };
    }
    if let Some(g) = &p.http_get {
        return match http_get(c, g, host, timeout, PROBE_AGENT).await {
            Ok(()) => Outcome::Success,
            Err(HttpError::Port(msg)) => Outcome::Error(msg),
            Err(HttpError::Failed(msg)) => Outcome::Failure(msg),
        };
    }
    if let Some(g) = &p.grpc {
        return grpc_check(host, g, timeout).await;
    }
    Outcome::Error(format!("missing probe handler for container {}", c.name))
}

/// A gRPC status code by the name gRPC-Go gives it (the kubelet's messages quote those).
fn go_code_name(c: tonic::Code) -> String {
    match c {
        tonic::Code::Ok => "OK".into(),
        tonic::Code::Cancelled => "Canceled".into(),
        c => format!("{c:?}"),
    }
}

/// A gRPC health check as the kubelet's gRPC prober makes it: connect (a refused connection
/// is retried, as a blocking gRPC dial does, until the timeout), then
/// `grpc.health.v1.Health/Check` for `service`, all within `timeout`.
async fn grpc_check(host: &str, g: &GRPCAction, timeout: Duration) -> Outcome {
    let Ok(port) = u16::try_from(g.port) else {
        return Outcome::Error(format!("invalid grpc port {}", g.port));
    };
    let service = g.service.clone().unwrap_or_default();
    let addr = join_host_port(host, port);
    let within = go_duration(timeout);
    let deadline = Instant::now() + timeout;
    let endpoint = match tonic::transport::Endpoint::from_shared(format!("http://{addr}")) {
        Ok(e) => e,
        Err(e) => {
            return Outcome::Failure(format!("error: failed to connect service at {addr:?}: {e}"))
        }
    };
    let endpoint = match endpoint.user_agent(PROBE_AGENT) {
        Ok(e) => e,
        Err(e) => return Outcome::Error(format!("grpc user agent: {e}")),
    };
    let connect_timeout = || {
        Outcome::Failure(format!(
            "timeout: failed to connect service {addr:?} within {within}: context deadline exceeded"
        ))
    };
    let channel = loop {
        match tokio::time::timeout_at(deadline, endpoint.connect()).await {
            Ok(Ok(ch)) => break ch,
            Ok(Err(_)) => {
                let retry = Instant::now() + Duration::from_millis(100);
                if retry >= deadline {
                    tokio::time::sleep_until(deadline).await;
                    return connect_timeout();
                }
                tokio::time::sleep_until(retry).await;
            }
            Err(_) => return connect_timeout(),
        }
    };
    let mut req = tonic::Request::new(HealthCheckRequest { service });
    req.set_timeout(deadline.saturating_duration_since(Instant::now()));
    let rpc_timeout = || {
        Outcome::Failure(format!(
            "timeout: health rpc did not complete within {within}"
        ))
    };
    match tokio::time::timeout_at(deadline, HealthClient::new(channel).check(req)).await {
        Err(_) => rpc_timeout(),
        Ok(Err(st)) => match st.code() {
            tonic::Code::Unimplemented => Outcome::Failure(format!(
                "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {}",
                st.message()
            )),
            tonic::Code::DeadlineExceeded => rpc_timeout(),
            c => Outcome::Failure(format!(
                "error: health rpc probe failed: rpc error: code = {} desc = {}",
                go_code_name(c),
                st.message()
            )),
        },
        Ok(Ok(resp)) => {
            let status = resp.into_inner().status;
            if status == ServingStatus::Serving as i32 {
                Outcome::Success
            } else {
                let name = ServingStatus::try_from(status)
                    .map(|s| s.as_str_name().to_owned())
                    .unwrap_or_else(|_| status.to_string());
                Outcome::Failure(format!("service unhealthy (responded with {name:?})"))
            }
        }
    }
}

/// Counts consecutive results against a probe's thresholds.
#[derive(Default)]
struct Tracker {
    ok: i32,
    bad: i32,
}

impl Tracker {
    /// Feed a result; Some(true/false) when a threshold is reached.
    fn feed(&mut self, success: bool, p: &Probe) -> Option<bool> {
        if success {
            self.bad = 0;
            self.ok += 1;
            (self.ok >= p.success_threshold.unwrap_or(1).max(1)).then_some(true)
        } else {
            self.ok = 0;
            self.bad += 1;
            (self.bad >= p.failure_threshold.unwrap_or(3).max(1)).then_some(false)
        }
    }
}

/// How one probe's loop ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// The container is no longer running.
    Gone,
    /// The startup probe reached successThreshold.
    Passed,
    /// A startup or liveness probe reached failureThreshold.
    Failed,
}

/// The prober of one container.
pub(crate) struct Prober {
    pub rt: Arc<dyn PodRuntime>,
    /// Where its results and events go.
    pub pod: Arc<PodShared>,
    pub container_id: String,
    pub c: Container,
    /// Where probes connect (the pod IP, or loopback for host-network pods).
    pub host: String,
    /// The pod's terminationGracePeriodSeconds.
    pub grace: i64,
    /// restartPolicy is not Never (the kubelet then says "will be restarted").
    pub restarts: bool,
    /// Wakes the pod's worker (a passed startup probe lets the next container start).
    pub wake: crate::harness::Wake,
}

impl Prober {
    fn set(&self, f: impl FnOnce(&mut ProbeState)) {
        self.pod.update_probe(&self.container_id, f);
    }

    fn forget(&self) {
        self.pod.forget_probe(&self.container_id);
    }

    async fn running(&self) -> bool {
        self.rt
            .container_status(v1::ContainerStatusRequest {
                container_id: self.container_id.clone(),
                verbose: false,
            })
            .await
            .ok()
            .and_then(|r| r.status)
            .is_some_and(|s| s.state == v1::ContainerState::ContainerRunning as i32)
    }

    /// Run probe `p` once and record what the kubelet records; None when it errored.
    async fn probe(&self, kind: Kind, p: &Probe) -> Option<bool> {
        let outcome = run_once(&*self.rt, &self.container_id, &self.c, p, &self.host).await;
        let result = match outcome {
            Outcome::Success => "successful",
            Outcome::Failure(_) => "failed",
            Outcome::Error(_) => "unknown",
        };
        self.pod.count_probe(&self.c.name, kind.name(), result);
        match outcome {
            Outcome::Success => Some(true),
            Outcome::Failure(out) => {
                tracing::debug!(container = %self.c.name, probe = kind.name(), output = %out, "probe failed");
                self.pod.event(
                    true,
                    "Unhealthy",
                    format!("{} probe failed: {out}", kind.name()),
                );
                Some(false)
            }
            Outcome::Error(err) => {
                tracing::debug!(container = %self.c.name, probe = kind.name(), %err, "probe errored");
                self.pod.event(
                    true,
                    "Unhealthy",
                    format!(
                        "{} probe errored and resulted in unknown state: {err}",
                        kind.name()
                    ),
                );
                None
            }
        }
    }

    /// Run probe `p` every periodSeconds (after initialDelaySeconds) while the container runs.
    async fn run(&self, kind: Kind, p: &Probe) -> Ended {
        tokio::time::sleep(secs(p.initial_delay_seconds, 0)).await;
        let period = secs(p.period_seconds, 10).max(Duration::from_secs(1));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut t = Tracker::default();
        loop {
            tick.tick().await;
            if !self.running().await {
                return Ended::Gone;
            }
            let Some(ok) = self.probe(kind, p).await else {
                continue;
            };
            match (kind, t.feed(ok, p)) {
                (Kind::Readiness, Some(ready)) => self.set(|s| s.ready = ready),
                (Kind::Startup, Some(true)) => return Ended::Passed,
                (Kind::Startup | Kind::Liveness, Some(false)) => return Ended::Failed,
                _ => {}
            }
        }
    }

    /// A startup or liveness probe failed: kill the container as the kubelet does.
    async fn kill(&self, kind: Kind, p: &Probe) {
        let mut msg = format!(
            "Container {} failed {} probe",
            self.c.name,
            kind.name().to_lowercase()
        );
        if self.restarts {
            msg.push_str(", will be restarted");
        }
        tracing::info!(container = %self.c.name, probe = kind.name(), "probe failed, killing the container");
        self.pod.event(false, "Killing", msg);
        // A startup or liveness probe's own terminationGracePeriodSeconds wins over the pod's.
        let grace = p.termination_grace_period_seconds.unwrap_or(self.grace);
        if let Err(e) = hooks::kill_container(
            &*self.rt,
            &self.pod,
            &self.container_id,
            &self.c,
            &self.host,
            grace,
        )
        .await
        {
            tracing::warn!(container = %self.c.name, err = %crate::error::chain(&e), "killing after a failed probe");
        }
    }
}

impl Prober {
    /// Probe until the container stops running (or is killed for a failed probe).
    pub(crate) async fn run_all(self) {
        let pr = self;
        pr.set(|s| {
            s.started = pr.c.startup_probe.is_none();
            s.ready = pr.c.readiness_probe.is_none();
        });
        if let Some(p) = &pr.c.startup_probe {
            match pr.run(Kind::Startup, p).await {
                Ended::Passed => {
                    pr.set(|s| s.started = true);
                    pr.wake.wake();
                }
                Ended::Failed => {
                    pr.kill(Kind::Startup, p).await;
                    return pr.forget();
                }
                Ended::Gone => return pr.forget(),
            }
        }
        let run = |kind: Kind, p: Option<&Probe>| {
            let pr = &pr;
            let p = p.cloned();
            async move {
                match &p {
                    Some(p) => (pr.run(kind, p).await, p.clone()),
                    None => std::future::pending().await,
                }
            }
        };
        if pr.c.liveness_probe.is_none() && pr.c.readiness_probe.is_none() {
            // Nothing more to probe: the entry stays (started), read by the sidecar ordering;
            // the supervisor drops it with the container.
            return;
        }
        let (ended, p) = tokio::select! {
            r = run(Kind::Liveness, pr.c.liveness_probe.as_ref()) => r,
            r = run(Kind::Readiness, pr.c.readiness_probe.as_ref()) => r,
        };
        if ended == Ended::Failed {
            pr.kill(Kind::Liveness, &p).await;
        }
        pr.forget();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_count_consecutive_results() {
        let p = Probe {
            failure_threshold: Some(2),
            success_threshold: Some(2),
            ..Default::default()
        };
        let mut t = Tracker::default();
        assert_eq!(t.feed(false, &p), None);
        assert_eq!(t.feed(true, &p), None);
        assert_eq!(
            t.feed(false, &p),
            None,
            "a success in between resets the failures"
        );
        assert_eq!(t.feed(false, &p), Some(false));
        assert_eq!(t.feed(true, &p), None);
        assert_eq!(t.feed(true, &p), Some(true));
    }

    #[test]
    fn messages_read_like_the_kubelets() {
        let refused = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(
            dial_error("10.85.0.7:8080", &refused),
            "dial tcp 10.85.0.7:8080: connect: connection refused"
        );
        assert_eq!(join_host_port("::1", 80), "[::1]:80");
        assert_eq!(go_duration(Duration::from_secs(3)), "3s");
        assert_eq!(go_code_name(tonic::Code::NotFound), "NotFound");
        assert_eq!(go_code_name(tonic::Code::Cancelled), "Canceled");
    }

    #[test]
    fn named_and_numeric_string_ports_resolve() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c",
            "ports": [{"name": "http", "containerPort": 8080}]
        }))
        .unwrap();
        assert_eq!(port_of(&c, &IntOrString::String("http".into())), Some(8080));
        assert_eq!(port_of(&c, &IntOrString::String("81".into())), Some(81));
        assert_eq!(port_of(&c, &IntOrString::Int(80)), Some(80));
        assert_eq!(port_of(&c, &IntOrString::String("nope".into())), None);
    }

    /// A closed loopback port: refused at once for TCP and HTTP; a gRPC probe retries until
    /// its timeout, then says so as the kubelet does.
    #[tokio::test]
    async fn https_probes_do_not_verify_the_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) = (dir.path().join("k.pem"), dir.path().join("c.pem"));
        let out = std::process::Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=probe-test", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl");
        assert!(out.status.success(), "{out:?}");
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        // A real TLS server with a self-signed certificate, answering 200 to any request.
        let mut srv = std::process::Command::new("openssl")
            .args([
                "s_server",
                "-quiet",
                "-www",
                "-accept",
                &port.to_string(),
                "-cert",
            ])
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let up = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                up.elapsed() < Duration::from_secs(10),
                "openssl s_server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let c = Container::default();
        let mut g = HTTPGetAction {
            port: IntOrString::Int(port.into()),
            path: Some("/healthz".into()),
            scheme: Some("HTTPS".into()),
            ..Default::default()
        };
        let ok = http_get(&c, &g, "127.0.0.1", Duration::from_secs(5), PROBE_AGENT).await;
        // The same port spoken to in plain HTTP is no success: the scheme is honoured.
        g.scheme = Some("HTTP".into());
        let plain = http_get(&c, &g, "127.0.0.1", Duration::from_secs(5), PROBE_AGENT).await;
        let _ = srv.kill();
        let _ = srv.wait();
        assert!(ok.is_ok(), "{:?}", ok.err().map(|e| e.to_string()));
        assert!(plain.is_err());
    }

    #[tokio::test]
    async fn closed_port_failures() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let c = Container::default();
        let g = HTTPGetAction {
            port: IntOrString::Int(port.into()),
            path: Some("/healthz".into()),
            ..Default::default()
        };
        let e = http_get(&c, &g, "127.0.0.1", Duration::from_secs(1), PROBE_AGENT)
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!("Get \"http://127.0.0.1:{port}/healthz\": dial tcp 127.0.0.1:{port}: connect: connection refused")
        );
        let t = std::time::Instant::now();
        let g = GRPCAction {
            port: port.into(),
            service: None,
        };
        assert_eq!(
            grpc_check("127.0.0.1", &g, Duration::from_secs(1)).await,
            Outcome::Failure(format!("timeout: failed to connect service \"127.0.0.1:{port}\" within 1s: context deadline exceeded"))
        );
        assert!(
            t.elapsed() >= Duration::from_millis(900),
            "{:?}",
            t.elapsed()
        );
    }
}
