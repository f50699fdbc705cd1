//! Container lifecycle hooks: `postStart` right after a container starts (a failure kills it,
//! as in Kubernetes) and `preStop` before the stop signal, within the pod's grace period.
//! Handlers: `exec` (through ExecSync, as the container's own user), `httpGet` and `sleep`.
//! A `tcpSocket` handler is accepted in manifests, as the API server accepts it, and fails
//! when it runs, as the kubelet's does.
//!
//! Also the kubelet's way of killing one running container (for a failed startup or liveness
//! probe): preStop within the grace period, then the stop signal with what is left of it but
//! never less than [`MIN_STOP_SECS`], then SIGKILL.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kinglet_proto::v1;
use tokio::time::Instant;

use crate::pod::PodShared;
use crate::runtime::{PodRuntime, RuntimeError};

/// The least time a container gets between its stop signal and SIGKILL, whatever is left of
/// its grace period (the kubelet's `minimumGracePeriodInSeconds`): a pod with
/// `terminationGracePeriodSeconds: 0` still gets SIGTERM and 2 s.
pub(crate) const MIN_STOP_SECS: i64 = 2;

/// The StopContainer timeout for a container with `left` seconds of its grace period left.
pub(crate) fn stop_timeout(left: i64) -> i64 {
    left.max(MIN_STOP_SECS)
}

/// Run one handler, bounded by `limit`.
pub(crate) async fn run_handler(
    rt: &dyn PodRuntime,
    container_id: &str,
    c: &Container,
    h: &LifecycleHandler,
    host: &str,
    limit: Duration,
) -> Result<(), String> {
    let limit = limit.max(Duration::from_secs(1));
    if let Some(e) = &h.exec {
        // Whole seconds for ExecSync, rounded up: a hook is never cut short of its limit.
        let secs = limit.as_secs() as i64 + i64::from(limit.subsec_nanos() > 0);
        let r = rt
            .exec_sync(v1::ExecSyncRequest {
                container_id: container_id.into(),
                cmd: e.command.clone().unwrap_or_default(),
                timeout: secs,
            })
            .await
            .map_err(|e| crate::error::chain(&e))?;
        if r.exit_code != 0 {
            return Err(format!(
                "command exited with {}: {}",
                r.exit_code,
                String::from_utf8_lossy(&r.stderr).trim()
            ));
        }
        return Ok(());
    }
    if let Some(g) = &h.http_get {
        return crate::actions::http_get(c, g, host, limit, crate::actions::HOOK_AGENT)
            .await
            .map_err(|e| {
                format!(
                    "HTTP lifecycle hook ({}) failed - error: {e}",
                    g.path.as_deref().unwrap_or("")
                )
            });
    }
    if let Some(s) = &h.sleep {
        tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64).min(limit)).await;
        return Ok(());
    }
    if let Some(t) = &h.tcp_socket {
        // Kept in the API for compatibility only: the kubelet refuses it when it runs.
        let port = match &t.port {
            IntOrString::Int(n) => n.to_string(),
            IntOrString::String(s) => s.clone(),
        };
        return Err(format!(
            "Cannot run handler: invalid handler: tcpSocket (port {port}): TCPSocket is NOT supported as a LifecycleHandler"
        ));
    }
    Err("Cannot run handler: invalid handler: no action (exec, httpGet or sleep) set".into())
}

/// Kill running container `container_id` (spec `c`) as the kubelet's killContainer does:
/// its preStop hook when it has one and `grace` > 0, abandoned when `grace` is spent (a
/// failure is a `FailedPreStopHook` event); then the stop signal with what is left of
/// `grace`, at least [`MIN_STOP_SECS`]; then SIGKILL.
pub(crate) async fn kill_container(
    rt: &dyn PodRuntime,
    pod: &PodShared,
    container_id: &str,
    c: &Container,
    host: &str,
    grace: i64,
) -> Result<(), RuntimeError> {
    let t = Instant::now();
    let pre_stop = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref());
    if let (Some(h), true) = (pre_stop, grace > 0) {
        let limit = Duration::from_secs(grace as u64);
        let hook = run_handler(rt, container_id, c, h, host, limit);
        match tokio::time::timeout(limit, hook).await {
            Ok(Ok(())) => {}
            Ok(Err(msg)) => pod.event(
                true,
                "FailedPreStopHook",
                format!("PreStop hook of {} failed: {msg}", c.name),
            ),
            Err(_) => {
                tracing::info!(container = %c.name, grace, "preStop hook not completed in the grace period")
            }
        }
    }
    let left = grace - t.elapsed().as_secs() as i64;
    rt.stop_container(container_id, stop_timeout(left)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_window_never_below_the_kubelets_minimum() {
        assert_eq!(stop_timeout(0), 2);
        assert_eq!(stop_timeout(-3), 2);
        assert_eq!(stop_timeout(1), 2);
        assert_eq!(stop_timeout(30), 30);
    }
}
