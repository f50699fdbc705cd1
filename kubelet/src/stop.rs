//! Stopping a pod's containers as the kubelet does: each container's preStop hook, then its
//! stop signal, then SIGKILL when the pod's grace period is spent — the app containers all at
//! once, then the native sidecars (init containers with `restartPolicy: Always`) one by one in
//! the reverse order of the spec, within what is left of the same grace period. Used when a
//! pod is deleted or replaced, and when a pod that does not restart its containers has
//! finished its work (its sidecars then stop).

use std::cmp::Reverse;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use kinglet_proto::v1;
use tokio::time::Instant;

use crate::hooks;
use crate::pod::PodShared;
use crate::podspec::LABEL_CONTAINER_NAME;
use crate::runtime::{PodRuntime, RuntimeError};
use crate::teardowns::Teardowns;

/// The spec of runtime container `cc` in `pod`, by its container-name label.
fn spec_of<'p>(pod: Option<&'p Pod>, cc: &v1::Container) -> Option<&'p Container> {
    let spec = pod?.spec.as_ref()?;
    let name = cc.labels.get(LABEL_CONTAINER_NAME)?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| &c.name == name)
}

/// The position of a native sidecar among the pod's init containers (None: not a sidecar).
pub(crate) fn sidecar_rank(pod: Option<&Pod>, cc: &v1::Container) -> Option<usize> {
    let name = cc.labels.get(LABEL_CONTAINER_NAME)?;
    pod?.spec
        .as_ref()?
        .init_containers
        .iter()
        .flatten()
        .position(|c| &c.name == name && c.restart_policy.as_deref() == Some("Always"))
}

/// Stop a sandbox's containers in order (see the module docs) and remove the sandbox, within
/// `bound`. `pod` is the spec the containers were made from, when known (for hooks and order).
pub(crate) async fn teardown(
    rt: &dyn PodRuntime,
    bound: &Teardowns,
    shared: &PodShared,
    sandbox: &str,
    grace: i64,
    pod: Option<&Pod>,
) -> Result<(), RuntimeError> {
    let cs = crate::pod::containers_of(rt, sandbox).await?;
    let host = crate::pod::sandbox_ip(rt, sandbox).await;
    stop_in_order(rt, shared, &cs, pod, &host, grace).await?;
    // Probe results outlive a prober that had only a startup probe; not the container.
    for c in &cs {
        shared.forget_probe(&c.id);
    }
    // The sandbox's own teardown waits its turn (see `crate::teardowns`).
    bound
        .run(async {
            rt.stop_pod_sandbox(sandbox).await?;
            rt.remove_pod_sandbox(sandbox).await
        })
        .await
}

/// Stop `cs` (containers of one pod): all but the sidecars at once, then the sidecars, last
/// first; all within `grace` seconds from now. `host` is the pod IP for httpGet hooks (""
/// for host-network pods).
pub(crate) async fn stop_in_order(
    rt: &dyn PodRuntime,
    shared: &PodShared,
    cs: &[v1::Container],
    pod: Option<&Pod>,
    host: &str,
    grace: i64,
) -> Result<(), RuntimeError> {
    let deadline = Instant::now() + Duration::from_secs(grace.max(0) as u64);
    let host = crate::pod::handler_host(host);
    let (mut sidecars, others): (Vec<&v1::Container>, Vec<&v1::Container>) =
        cs.iter().partition(|cc| sidecar_rank(pod, cc).is_some());
    let stops = others
        .iter()
        .map(|cc| stop_one(rt, shared, cc, pod, host, deadline));
    for r in futures_util::future::join_all(stops).await {
        r?;
    }
    sidecars.sort_by_key(|cc| Reverse(sidecar_rank(pod, cc)));
    for cc in sidecars {
        stop_one(rt, shared, cc, pod, host, deadline).await?;
    }
    Ok(())
}

/// One container: its preStop hook (when running and the spec has one), then the stop signal
/// with what is left until `deadline`, then SIGKILL.
async fn stop_one(
    rt: &dyn PodRuntime,
    shared: &PodShared,
    cc: &v1::Container,
    pod: Option<&Pod>,
    host: &str,
    deadline: Instant,
) -> Result<(), RuntimeError> {
    let running = cc.state == v1::ContainerState::ContainerRunning as i32;
    let spec_c = spec_of(pod, cc);
    let pre = spec_c.and_then(|c| c.lifecycle.as_ref()?.pre_stop.as_ref().map(|h| (c, h)));
    let limit = deadline.saturating_duration_since(Instant::now());
    // As the kubelet: no preStop hook without a grace period left to run it in.
    if let (Some((c, h)), true) = (pre, running && !limit.is_zero()) {
        if let Err(msg) = hooks::run_handler(rt, &cc.id, c, h, host, limit).await {
            shared.event(
                true,
                "FailedPreStopHook",
                format!("PreStop hook of {} failed: {msg}", c.name),
            );
        }
    }
    // Whole seconds left, rounded up so that a part-second is not lost; never under the
    // kubelet's minimum stop window.
    let left = deadline.saturating_duration_since(Instant::now());
    let secs = left.as_secs() as i64 + i64::from(left.subsec_nanos() > 0);
    rt.stop_container(&cc.id, hooks::stop_timeout(secs)).await
}
