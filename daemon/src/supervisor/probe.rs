//! Container probes as the kubelet runs them: startup, liveness and readiness, each `exec`,
//! `httpGet` or `tcpSocket`, with initialDelaySeconds, periodSeconds, timeoutSeconds,
//! successThreshold and failureThreshold.
//!
//! One prober task per running container: it waits for the startup probe to succeed (if
//! there is one) before running the others; a failed startup or liveness probe stops the
//! container (the reconciler then restarts it by the pod's restartPolicy); readiness drives the
//! container's `ready` flag and so the pod's Ready condition. The task ends with its container.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kinglet_proto::v1;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::runtime::Runtime;

/// What the prober knows of one container (by CRI container id).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProbeState {
    pub started: bool,
    pub ready: bool,
}

/// Probe results shared with the status code.
pub type ProbeStates = Arc<Mutex<HashMap<String, ProbeState>>>;

fn secs(v: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(v.unwrap_or(default).max(0) as u64)
}

/// Run a probe once: Ok(true) success, Ok(false) failure.
async fn run_once(rt: &Runtime, container_id: &str, c: &Container, p: &Probe, host: &str) -> bool {
    let timeout = secs(p.timeout_seconds, 1).max(Duration::from_secs(1));
    if let Some(e) = &p.exec {
        let cmd = e.command.clone().unwrap_or_default();
        let r = rt
            .exec_sync(v1::ExecSyncRequest {
                container_id: container_id.into(),
                cmd,
                timeout: timeout.as_secs() as i64,
            })
            .await;
        return matches!(r, Ok(r) if r.exit_code == 0);
    }
    if let Some(t) = &p.tcp_socket {
        let Some(port) = port_of(c, &t.port) else {
            return false;
        };
        let h = t.host.clone().unwrap_or_else(|| host.to_owned());
        return matches!(
            tokio::time::timeout(timeout, tokio::net::TcpStream::connect((h.as_str(), port))).await,
            Ok(Ok(_))
        );
    }
    if let Some(g) = &p.http_get {
        return http_get(c, g, host, timeout).await;
    }
    // Unreachable: manifests with gRPC probes are refused at apply time.
    false
}

/// A container port by number or by the name of one of its `ports`.
pub(super) fn port_of(c: &Container, p: &IntOrString) -> Option<u16> {
    match p {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|cp| cp.name.as_deref() == Some(name.as_str()))
            .and_then(|cp| u16::try_from(cp.container_port).ok()),
    }
}

/// An HTTP GET as probes and hooks make it: success on a 2xx or 3xx status.
pub(super) async fn http_get(
    c: &Container,
    g: &HTTPGetAction,
    host: &str,
    timeout: Duration,
) -> bool {
    let Some(port) = port_of(c, &g.port) else {
        return false;
    };
    let h = g.host.clone().unwrap_or_else(|| host.to_owned());
    let path = g.path.clone().unwrap_or_else(|| "/".into());
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {h}:{port}\r\nUser-Agent: kinglet-probe\r\nConnection: close\r\n"
    );
    for hd in g.http_headers.iter().flatten() {
        req.push_str(&format!("{}: {}\r\n", hd.name, hd.value));
    }
    req.push_str("\r\n");
    let fut = async {
        let mut s = tokio::net::TcpStream::connect((h.as_str(), port)).await?;
        s.write_all(req.as_bytes()).await?;
        let mut buf = vec![0u8; 64];
        let n = s.read(&mut buf).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    let Ok(Ok(line)) = tokio::time::timeout(timeout, fut).await else {
        return false;
    };
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (200..400).contains(&code)
}

/// Counts successes/failures against a probe's thresholds.
#[derive(Default)]
struct Tracker {
    ok: i32,
    bad: i32,
}

impl Tracker {
    /// Feed a result; Some(true/false) when a threshold is crossed.
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

/// The prober of one container; returns when the container stops running.
pub async fn prober(
    rt: Arc<Runtime>,
    states: ProbeStates,
    container_id: String,
    c: Container,
    host: String,
    grace: i64,
) {
    let set = |f: &dyn Fn(&mut ProbeState)| {
        let mut m = states.lock().expect("probe lock");
        f(m.entry(container_id.clone()).or_default());
    };
    set(&|s| {
        s.started = c.startup_probe.is_none();
        s.ready = c.readiness_probe.is_none();
    });
    let running = |rt: &Arc<Runtime>, id: &str| {
        let rt = rt.clone();
        let id = id.to_owned();
        async move {
            rt.container_status(v1::ContainerStatusRequest {
                container_id: id,
                verbose: false,
            })
            .await
            .ok()
            .and_then(|r| r.status)
            .is_some_and(|s| s.state == v1::ContainerState::ContainerRunning as i32)
        }
    };
    let kill = |why: String| {
        let rt = rt.clone();
        let id = container_id.clone();
        let name = c.name.clone();
        async move {
            tracing::info!(container = %name, reason = %why, "probe failed, stopping container");
            let _ = rt.stop_container(&id, grace).await;
        }
    };
    // Startup first.
    if let Some(p) = &c.startup_probe {
        tokio::time::sleep(secs(p.initial_delay_seconds, 0)).await;
        let mut t = Tracker::default();
        loop {
            if !running(&rt, &container_id).await {
                return;
            }
            match t.feed(run_once(&rt, &container_id, &c, p, &host).await, p) {
                Some(true) => break,
                Some(false) => return kill("startup probe failed".into()).await,
                None => {}
            }
            tokio::time::sleep(secs(p.period_seconds, 10)).await;
        }
        set(&|s| s.started = true);
    }
    // Then liveness and readiness, each on its own schedule.
    let live = c.liveness_probe.clone();
    let ready = c.readiness_probe.clone();
    if live.is_none() && ready.is_none() {
        return;
    }
    let start = tokio::time::Instant::now();
    let next_at = |p: &Option<Probe>| p.as_ref().map(|p| start + secs(p.initial_delay_seconds, 0));
    let (mut next_live, mut next_ready) = (next_at(&live), next_at(&ready));
    let (mut lt, mut rtk) = (Tracker::default(), Tracker::default());
    loop {
        let due = [next_live, next_ready]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(start);
        tokio::time::sleep_until(due).await;
        if !running(&rt, &container_id).await {
            states.lock().expect("probe lock").remove(&container_id);
            return;
        }
        let now = tokio::time::Instant::now();
        if let (Some(p), Some(at)) = (&live, next_live) {
            if at <= now {
                if t_feed(&mut lt, run_once(&rt, &container_id, &c, p, &host).await, p)
                    == Some(false)
                {
                    return kill("liveness probe failed".into()).await;
                }
                next_live = Some(now + secs(p.period_seconds, 10));
            }
        }
        if let (Some(p), Some(at)) = (&ready, next_ready) {
            if at <= now {
                if let Some(r) = t_feed(
                    &mut rtk,
                    run_once(&rt, &container_id, &c, p, &host).await,
                    p,
                ) {
                    set(&|s| s.ready = r);
                }
                next_ready = Some(now + secs(p.period_seconds, 10));
            }
        }
    }
}

fn t_feed(t: &mut Tracker, ok: bool, p: &Probe) -> Option<bool> {
    t.feed(ok, p)
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
}
