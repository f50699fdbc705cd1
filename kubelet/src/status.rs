//! Pod status as the kubelet reports it, derived from the runtime's records: phase,
//! conditions, pod IP, and per-container state (waiting with its reason, running, terminated)
//! with restart counts and the last termination.

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kinglet_proto::v1;

use crate::pod::{Shared, Waiting};
use crate::podspec::{self, LABEL_CONTAINER_NAME};
use crate::runtime::PodRuntime;

/// A Kubernetes timestamp for unix nanoseconds.
pub fn time_of(nanos: i64) -> Option<Time> {
    (nanos > 0)
        .then(|| k8s_openapi::jiff::Timestamp::from_nanosecond(nanos as i128).ok())
        .flatten()
        .map(Time)
}

pub fn now_time() -> Time {
    time_of(kinglet_util::now_nanos()).unwrap_or(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH))
}

fn terminated(s: &v1::ContainerStatus) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: s.exit_code,
        reason: Some(s.reason.clone()).filter(|r| !r.is_empty()),
        message: Some(s.message.clone()).filter(|m| !m.is_empty()),
        started_at: time_of(s.started_at),
        finished_at: time_of(s.finished_at),
        container_id: Some(format!("kinglet://{}", s.id)),
        ..Default::default()
    }
}

/// The pod's QoS class by the Kubernetes rules: Guaranteed when every container has equal
/// CPU and memory requests and limits (requests default to limits), BestEffort when none has
/// any, else Burstable.
pub fn qos_class(pod: &Pod) -> &'static str {
    let spec = pod.spec.clone().unwrap_or_default();
    let all: Vec<_> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .collect();
    let mut any = false;
    let mut guaranteed = !all.is_empty();
    for c in &all {
        let r = c.resources.clone().unwrap_or_default();
        let limits = r.limits.unwrap_or_default();
        let requests = r.requests.unwrap_or_default();
        if !limits.is_empty() || !requests.is_empty() {
            any = true;
        }
        for res in ["cpu", "memory"] {
            let l = limits
                .get(res)
                .and_then(|q| super::podspec::parse_quantity(&q.0));
            let q = requests
                .get(res)
                .and_then(|q| super::podspec::parse_quantity(&q.0))
                .or(l);
            if l.is_none() || l != q {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// The pod's status, from the runtime's records and the pod's shared fields.
pub(crate) async fn pod_status(rt: &dyn PodRuntime, pod: &Pod, shared: Shared) -> PodStatus {
    if let Some(s) = rejected(pod, &shared) {
        return s;
    }
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let sandbox = crate::pod::sandboxes_of(rt, &uid)
        .await
        .ok()
        .and_then(|l| status_sandbox(pod, &l));
    let mut statuses: Vec<v1::ContainerStatus> = Vec::new();
    let mut pod_ip = String::new();
    if let Some(s) = &sandbox {
        for c in crate::pod::containers_of(rt, &s.id)
            .await
            .unwrap_or_default()
        {
            if let Ok(st) = crate::pod::status_of(rt, &c.id).await {
                statuses.push(st);
            }
        }
        pod_ip = crate::pod::sandbox_ip(rt, &s.id).await;
    }
    compose(pod, sandbox.as_ref(), &statuses, &pod_ip, &shared)
}

/// The sandbox a pod's status comes from, of the pod's sandboxes: the ready one, else the
/// newest stopped one of this spec (a finished pod keeps it, its network released).
pub(crate) fn status_sandbox(pod: &Pod, sandboxes: &[v1::PodSandbox]) -> Option<v1::PodSandbox> {
    let hash = podspec::spec_hash(pod);
    let stopped = sandboxes
        .iter()
        .filter(|s| s.labels.get(podspec::LABEL_SPEC_HASH) == Some(&hash))
        .max_by_key(|s| s.created_at);
    sandboxes
        .iter()
        .find(|s| s.state == v1::PodSandboxState::SandboxReady as i32)
        .or(stopped)
        .cloned()
}

/// A pod refused at admission: Failed, with the kubelet's reason and message.
pub(crate) fn rejected(pod: &Pod, shared: &Shared) -> Option<PodStatus> {
    let r = shared.verdict.rejection(&podspec::spec_hash(pod))?;
    Some(PodStatus {
        phase: Some("Failed".into()),
        reason: Some(r.reason.into()),
        message: Some(format!("Pod was rejected: {}", r.message)),
        qos_class: Some(qos_class(pod).into()),
        ..Default::default()
    })
}

/// How many app containers are in which state.
#[derive(Default)]
struct Tally {
    running: usize,
    succeeded: usize,
    failed: usize,
    pending: usize,
}

/// The status of spec container `c` from its runtime attempts (`mine`, oldest first).
fn container_status(
    c: &Container,
    mine: &[&v1::ContainerStatus],
    shared: &Shared,
    (app, default_reason): (bool, &str),
    t: &mut Tally,
) -> ContainerStatus {
    let n = usize::from(app);
    let last = mine.last().copied();
    let prev = mine.len().checked_sub(2).map(|i| mine[i]);
    // A container is not running until its postStart hook is done (as in Kubernetes).
    let hooked = last.is_some_and(|s| shared.post_starting.contains(&s.id));
    let post_start = Waiting {
        reason: "ContainerCreating".into(),
        message: "PostStart hook running".into(),
    };
    let w = if hooked {
        Some(&post_start)
    } else {
        shared.waiting.get(&c.name)
    };
    let waiting = |reason: String, message: Option<String>| ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason),
            message,
        }),
        ..Default::default()
    };
    let state = match (last, w) {
        (Some(s), _) if s.state == v1::ContainerState::ContainerRunning as i32 && !hooked => {
            t.running += n;
            ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: time_of(s.started_at),
                }),
                ..Default::default()
            }
        }
        (_, Some(w)) => {
            t.pending += n;
            waiting(w.reason.clone(), Some(w.message.clone()))
        }
        (Some(s), None) if s.state == v1::ContainerState::ContainerExited as i32 => {
            if s.exit_code == 0 {
                t.succeeded += n;
            } else {
                t.failed += n;
            }
            ContainerState {
                terminated: Some(terminated(s)),
                ..Default::default()
            }
        }
        _ => {
            t.pending += n;
            waiting(default_reason.into(), None)
        }
    };
    let is_running = state.running.is_some();
    let probed = last.and_then(|s| shared.probes.get(&s.id).copied());
    // No prober result yet (just started, or a daemon restart): not started with a startup
    // probe and not ready with a readiness probe, as the kubelet treats an unknown result.
    let (started, probe_ready) = probed
        .map(|p| (p.started, p.ready))
        .unwrap_or((c.startup_probe.is_none(), c.readiness_probe.is_none()));
    // When the current run is the one that ended, it is `state`, not `lastState`.
    let last_state = match (prev, last) {
        (_, Some(l))
            if l.state == v1::ContainerState::ContainerExited as i32
                && state.terminated.is_none() =>
        {
            Some(l)
        }
        (Some(p), _) => Some(p),
        _ => None,
    }
    .map(|s| ContainerState {
        terminated: Some(terminated(s)),
        ..Default::default()
    });
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        image_id: last.map(|s| s.image_ref.clone()).unwrap_or_default(),
        container_id: last.map(|s| format!("kinglet://{}", s.id)),
        ready: is_running && started && probe_ready,
        started: Some(is_running && started),
        restart_count: last
            .and_then(|s| s.metadata.as_ref())
            .map(|m| m.attempt as i32)
            .unwrap_or(0),
        state: Some(state),
        last_state,
        ..Default::default()
    }
}

/// The pod's status from its sandbox (if ready), its containers' CRI statuses and pod IP.
pub(crate) fn compose(
    pod: &Pod,
    sandbox: Option<&v1::PodSandbox>,
    statuses: &[v1::ContainerStatus],
    pod_ip: &str,
    shared: &Shared,
) -> PodStatus {
    let spec = pod.spec.clone().unwrap_or_default();
    let inits = spec.init_containers.clone().unwrap_or_default();
    // A container with nothing to show waits in ContainerCreating, or in PodInitializing in
    // a pod with init containers (the kubelet's default waiting state).
    let default_reason = if inits.is_empty() {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    let mut t = Tally::default();
    let mut of = |c: &Container, app: bool| {
        let mut mine: Vec<&v1::ContainerStatus> = statuses
            .iter()
            .filter(|s| s.labels.get(LABEL_CONTAINER_NAME) == Some(&c.name))
            .collect();
        mine.sort_by_key(|s| s.metadata.as_ref().map(|m| m.attempt).unwrap_or(0));
        container_status(c, &mine, shared, (app, default_reason), &mut t)
    };
    let init_statuses: Vec<ContainerStatus> = inits.iter().map(|c| of(c, false)).collect();
    let container_statuses: Vec<ContainerStatus> =
        spec.containers.iter().map(|c| of(c, true)).collect();
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let (phase, initialized) = phase(
        &inits,
        &init_statuses,
        &t,
        spec.containers.len(),
        policy,
        sandbox.is_some(),
    );
    let total = spec.containers.len();
    let all_ready = total > 0 && container_statuses.iter().all(|c| c.ready);
    let cond = |t: &str, ok: bool| PodCondition {
        type_: t.into(),
        status: if ok { "True" } else { "False" }.into(),
        last_transition_time: None,
        ..Default::default()
    };
    let ip = Some(pod_ip.to_owned()).filter(|i| !i.is_empty());
    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(vec![
            cond("PodScheduled", true),
            cond("Initialized", sandbox.is_some() && initialized),
            cond("ContainersReady", all_ready),
            cond("Ready", all_ready),
        ]),
        pod_ips: ip.clone().map(|ip| vec![PodIP { ip }]),
        pod_ip: ip,
        start_time: sandbox.and_then(|s| time_of(s.created_at)),
        container_statuses: Some(container_statuses),
        init_container_statuses: Some(init_statuses).filter(|v| !v.is_empty()),
        qos_class: Some(qos_class(pod).into()),
        ..Default::default()
    }
}

/// The pod phase by the kubelet's rules, and whether its init containers are done.
fn phase(
    inits: &[Container],
    init_statuses: &[ContainerStatus],
    t: &Tally,
    total: usize,
    policy: &str,
    has_sandbox: bool,
) -> (&'static str, bool) {
    // Init containers: done when each ran to success (a native sidecar: is running).
    let terminated = |st: &ContainerStatus| {
        st.state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(|t| t.exit_code)
    };
    let running = |st: &ContainerStatus| st.state.as_ref().is_some_and(|s| s.running.is_some());
    let sidecar = |c: &Container| c.restart_policy.as_deref() == Some("Always");
    let initialized = inits.iter().zip(init_statuses).all(|(c, st)| {
        if sidecar(c) {
            // A sidecar that has started counts (it is stopped after a finished pod's app
            // containers, or restarted after a crash).
            running(st) || terminated(st).is_some()
        } else {
            terminated(st) == Some(0)
        }
    });
    // A sidecar's exit code never fails the pod (it is stopped with a signal).
    let init_failed = policy == "Never"
        && inits
            .iter()
            .zip(init_statuses)
            .any(|(c, st)| !sidecar(c) && terminated(st).is_some_and(|c| c != 0));
    let phase = if init_failed {
        "Failed"
    } else if !has_sandbox
        || !initialized
        || t.pending > 0 && t.running == 0 && t.succeeded + t.failed == 0
    {
        "Pending"
    } else if t.running > 0 || t.pending > 0 {
        "Running"
    } else if t.succeeded == total && policy != "Always" {
        "Succeeded"
    } else if t.failed > 0 && policy == "Never" {
        "Failed"
    } else if policy == "Always" {
        "Running"
    } else {
        "Succeeded"
    };
    // A finished pod is not terminal until its sidecars have stopped too.
    let sidecar_running = inits
        .iter()
        .zip(init_statuses)
        .any(|(c, st)| sidecar(c) && running(st));
    let phase = match phase {
        "Succeeded" | "Failed" if sidecar_running && !init_failed => "Running",
        p => p,
    };
    (phase, initialized)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(resources: &str) -> Pod {
        let y = format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n  - name: c\n    image: b\n    resources: {resources}\n");
        match kinglet_manifest::parse("t", &y).unwrap().remove(0) {
            kinglet_manifest::Object::Pod(p) => *p,
            _ => panic!(),
        }
    }

    #[test]
    fn qos_classes() {
        assert_eq!(qos_class(&pod("{}")), "BestEffort");
        assert_eq!(
            qos_class(&pod("{limits: {cpu: 1, memory: 1Gi}}")),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&pod(
                "{limits: {cpu: 1, memory: 1Gi}, requests: {cpu: 1, memory: 1Gi}}"
            )),
            "Guaranteed"
        );
        assert_eq!(qos_class(&pod("{limits: {memory: 1Gi}}")), "Burstable");
        assert_eq!(qos_class(&pod("{requests: {cpu: 100m}}")), "Burstable");
    }
}
