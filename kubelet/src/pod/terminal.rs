//! Pods that are done (restartPolicy Never/OnFailure, every app container exited for good):
//! as the kubelet does for a terminal pod, the sandbox is stopped — its network torn down and
//! its address released — while the exited containers stay (status, logs) until the pod is
//! deleted. The stopped sandbox of a done pod is then left alone, never replaced.

use k8s_openapi::api::core::v1::Pod;
use kinglet_proto::v1;

use super::{apps_done, containers_of, ReconcileError, Step};
use crate::podspec::LABEL_SPEC_HASH;
use crate::runtime::PodRuntime;

/// Whether `pod`'s containers are never restarted once done.
fn finite(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
        != "Always"
}

/// The stopped sandbox of a done pod, made for this spec (`hash`), if there is one.
pub(super) async fn finished_sandbox(
    rt: &dyn PodRuntime,
    pod: &Pod,
    sandboxes: &[v1::PodSandbox],
    hash: &str,
) -> Result<Option<String>, ReconcileError> {
    if !finite(pod) {
        return Ok(None);
    }
    let spec = pod.spec.clone().unwrap_or_default();
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    for s in sandboxes {
        if s.state != v1::PodSandboxState::SandboxNotready as i32
            || s.labels.get(LABEL_SPEC_HASH).map(String::as_str) != Some(hash)
        {
            continue;
        }
        let existing = containers_of(rt, &s.id)
            .await
            .step(|| "list the containers of a stopped sandbox".into())?;
        if apps_done(rt, &spec.containers, &existing, policy).await? {
            return Ok(Some(s.id.clone()));
        }
    }
    Ok(None)
}

/// Stop the sandbox of a pod that is done (idempotent).
pub(super) async fn release(rt: &dyn PodRuntime, sandbox: &str) -> Result<(), ReconcileError> {
    rt.stop_pod_sandbox(sandbox)
        .await
        .step(|| format!("stop the sandbox {sandbox} of a finished pod"))
}
