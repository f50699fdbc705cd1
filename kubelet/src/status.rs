//! Pod status as the kubelet reports it, derived from the runtime's records: phase,
//! conditions, pod IP, and per-container state (waiting with its reason, running, terminated)
//! with restart counts and the last termination.

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kinglet_proto::v1;

use super::podspec::LABEL_CONTAINER_NAME;
use super::{Supervisor, Waiting};

/// A Kubernetes timestamp for unix nanoseconds.
pub fn time_of(nanos: i64) -> Option<Time> {
    (nanos > 0)
        .then(|| k8s_openapi::jiff::Timestamp::from_nanosecond(nanos as i128).ok())
        .flatten()
        .map(Time)
}

pub fn now_time() -> Time {
    time_of(kinglet_shim::protocol::now_nanos())
        .unwrap_or(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH))
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

impl Supervisor {
    pub(super) async fn pod_status(&self, pod: &Pod) -> PodStatus {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        // Refused at admission: Failed, with the kubelet's reason and message.
        if let Some(r) = self
            .admission
            .rejection(&uid, &super::podspec::spec_hash(pod))
        {
            return PodStatus {
                phase: Some("Failed".into()),
                reason: Some(r.reason.into()),
                message: Some(format!("Pod was rejected: {}", r.message)),
                qos_class: Some(qos_class(pod).into()),
                ..Default::default()
            };
        }
        let spec = pod.spec.clone().unwrap_or_default();
        let sandbox = self.sandboxes_of(&uid).await.ok().and_then(|l| {
            l.into_iter()
                .find(|s| s.state == v1::PodSandboxState::SandboxReady as i32)
        });
        let mut statuses: Vec<v1::ContainerStatus> = Vec::new();
        let mut pod_ip = String::new();
        if let Some(s) = &sandbox {
            if let Ok(list) = self
                .rt
                .list_containers(v1::ListContainersRequest {
                    filter: Some(v1::ContainerFilter {
                        pod_sandbox_id: s.id.clone(),
                        ..Default::default()
                    }),
                })
                .await
            {
                for c in list.containers {
                    if let Ok(st) = self.status_of(&c.id).await {
                        statuses.push(st);
                    }
                }
            }
            pod_ip = self.sandbox_ip(&s.id).await;
        }
        let waiting = self.waiting.lock().expect("waiting lock").clone();
        let post_starting = self.post_starting.lock().expect("post-start lock").clone();
        let mut container_statuses = Vec::new();
        let mut init_statuses = Vec::new();
        let (mut running, mut succeeded, mut failed, mut pending) = (0, 0, 0, 0);
        let inits = spec.init_containers.clone().unwrap_or_default();
        let all = inits
            .iter()
            .map(|c| (true, c))
            .chain(spec.containers.iter().map(|c| (false, c)));
        for (is_init, c) in all {
            let app = usize::from(!is_init);
            let mut mine: Vec<&v1::ContainerStatus> = statuses
                .iter()
                .filter(|s| s.labels.get(LABEL_CONTAINER_NAME) == Some(&c.name))
                .collect();
            mine.sort_by_key(|s| s.metadata.as_ref().map(|m| m.attempt).unwrap_or(0));
            let last = mine.last().copied();
            let prev = if mine.len() >= 2 {
                Some(mine[mine.len() - 2])
            } else {
                None
            };
            let w = waiting.get(&(uid.clone(), c.name.clone()));
            // A container is not running until its postStart hook is done (as in Kubernetes).
            let hooked = last.is_some_and(|s| post_starting.contains(&s.id));
            let post_start;
            let w = if hooked {
                post_start = Waiting {
                    reason: "ContainerCreating".into(),
                    message: "PostStart hook running".into(),
                };
                Some(&post_start)
            } else {
                w
            };
            let state = match (last, w) {
                (Some(s), _)
                    if s.state == v1::ContainerState::ContainerRunning as i32 && !hooked =>
                {
                    running += app;
                    ContainerState {
                        running: Some(ContainerStateRunning {
                            started_at: time_of(s.started_at),
                        }),
                        ..Default::default()
                    }
                }
                (_, Some(w)) => {
                    pending += app;
                    ContainerState {
                        waiting: Some(ContainerStateWaiting {
                            reason: Some(w.reason.clone()),
                            message: Some(w.message.clone()),
                        }),
                        ..Default::default()
                    }
                }
                (Some(s), None) if s.state == v1::ContainerState::ContainerExited as i32 => {
                    if s.exit_code == 0 {
                        succeeded += app;
                    } else {
                        failed += app;
                    }
                    ContainerState {
                        terminated: Some(terminated(s)),
                        ..Default::default()
                    }
                }
                _ => {
                    pending += app;
                    ContainerState {
                        waiting: Some(ContainerStateWaiting {
                            reason: Some("ContainerCreating".into()),
                            message: None,
                        }),
                        ..Default::default()
                    }
                }
            };
            let is_running = state.running.is_some();
            let probed =
                last.and_then(|s| self.probes.lock().expect("probe lock").get(&s.id).copied());
            let (started, probe_ready) =
                probed.map(|p| (p.started, p.ready)).unwrap_or((true, true));
            let ready = is_running && started && probe_ready;
            // When the current run is the one that ended, it is `state`, not `lastState`.
            let last_state = match (prev, last) {
                (_, Some(l))
                    if l.state == v1::ContainerState::ContainerExited as i32
                        && state.terminated.is_none() =>
                {
                    Some(ContainerState {
                        terminated: Some(terminated(l)),
                        ..Default::default()
                    })
                }
                (Some(p), _) => Some(ContainerState {
                    terminated: Some(terminated(p)),
                    ..Default::default()
                }),
                _ => None,
            };
            let entry = ContainerStatus {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                image_id: last.map(|s| s.image_ref.clone()).unwrap_or_default(),
                container_id: last.map(|s| format!("kinglet://{}", s.id)),
                ready,
                started: Some(is_running && started),
                restart_count: last
                    .and_then(|s| s.metadata.as_ref())
                    .map(|m| m.attempt as i32)
                    .unwrap_or(0),
                state: Some(state),
                last_state,
                ..Default::default()
            };
            if is_init {
                init_statuses.push(entry);
            } else {
                container_statuses.push(entry);
            }
        }
        let policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        let total = spec.containers.len();
        // Init containers: done when each ran to success (a native sidecar: is running).
        let init_ok = |(c, st): (&k8s_openapi::api::core::v1::Container, &ContainerStatus)| {
            let s = st.state.as_ref();
            if c.restart_policy.as_deref() == Some("Always") {
                // A sidecar that has started counts (it is stopped after a finished pod's
                // app containers, or restarted after a crash).
                s.is_some_and(|s| s.running.is_some() || s.terminated.is_some())
            } else {
                s.and_then(|s| s.terminated.as_ref())
                    .is_some_and(|t| t.exit_code == 0)
            }
        };
        let initialized = inits.iter().zip(&init_statuses).all(init_ok);
        let init_failed = policy == "Never"
            && init_statuses.iter().any(|st| {
                st.state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .is_some_and(|t| t.exit_code != 0)
            });
        let phase = if init_failed {
            "Failed"
        } else if sandbox.is_none()
            || !initialized
            || pending > 0 && running == 0 && succeeded + failed == 0
        {
            "Pending"
        } else if running > 0 || pending > 0 {
            "Running"
        } else if succeeded == total && policy != "Always" {
            "Succeeded"
        } else if failed > 0 && policy == "Never" {
            "Failed"
        } else if policy == "Always" {
            "Running"
        } else {
            "Succeeded"
        };
        // A finished pod is not terminal until its sidecars have stopped too.
        let sidecar_running = inits.iter().zip(&init_statuses).any(|(c, st)| {
            c.restart_policy.as_deref() == Some("Always")
                && st.state.as_ref().is_some_and(|s| s.running.is_some())
        });
        let phase = match phase {
            "Succeeded" | "Failed" if sidecar_running && !init_failed => "Running",
            p => p,
        };
        let all_ready = total > 0 && container_statuses.iter().all(|c| c.ready);
        let cond = |t: &str, ok: bool| PodCondition {
            type_: t.into(),
            status: if ok { "True" } else { "False" }.into(),
            last_transition_time: None,
            ..Default::default()
        };
        PodStatus {
            phase: Some(phase.into()),
            conditions: Some(vec![
                cond("PodScheduled", true),
                cond("Initialized", sandbox.is_some() && initialized),
                cond("ContainersReady", all_ready),
                cond("Ready", all_ready),
            ]),
            pod_ip: Some(pod_ip.clone()).filter(|i| !i.is_empty()),
            pod_ips: Some(vec![PodIP { ip: pod_ip.clone() }]).filter(|_| !pod_ip.is_empty()),
            start_time: sandbox.as_ref().and_then(|s| time_of(s.created_at)),
            container_statuses: Some(container_statuses),
            init_container_statuses: Some(init_statuses).filter(|v| !v.is_empty()),
            qos_class: Some(qos_class(pod).into()),
            ..Default::default()
        }
    }
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
