//! Container lifecycle hooks: `postStart` right after a container starts (a failure kills it,
//! as in Kubernetes) and `preStop` before the stop signal, within the pod's grace period.
//! Handlers: `exec` (through ExecSync, as the container's own user), `httpGet` and `sleep`.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler};
use kinglet_proto::v1;

use crate::runtime::Runtime;

/// Run one handler, bounded by `limit`.
pub(super) async fn run_handler(
    rt: &Runtime,
    container_id: &str,
    c: &Container,
    h: &LifecycleHandler,
    host: &str,
    limit: Duration,
) -> Result<(), String> {
    let limit = limit.max(Duration::from_secs(1));
    if let Some(e) = &h.exec {
        let r = rt
            .exec_sync(v1::ExecSyncRequest {
                container_id: container_id.into(),
                cmd: e.command.clone().unwrap_or_default(),
                timeout: limit.as_secs() as i64,
            })
            .await
            .map_err(|e| kinglet_cri::chain(&e))?;
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
        return if super::probe::http_get(c, g, host, limit).await {
            Ok(())
        } else {
            Err(format!(
                "HTTP GET {} failed",
                g.path.clone().unwrap_or_else(|| "/".into())
            ))
        };
    }
    if let Some(s) = &h.sleep {
        tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64).min(limit)).await;
        return Ok(());
    }
    Err("unsupported handler (exec, httpGet and sleep are)".into())
}
