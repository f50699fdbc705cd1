//! The metrics RPCs: ListMetricDescriptors and ListPodSandboxMetrics, for ready pods and
//! their running containers (an exited container's cgroup is gone, as in containerd). The
//! values come from [`super::metrics`]; the network ones belong to the pod (its network
//! namespace), reported with the container label `POD` as cAdvisor does.

use std::path::Path;

use kinglet_cri::CriError;
use kinglet_proto::v1;

use super::metrics::{self, Sample};
use super::stats;
use super::store::{ContainerState, NsMode, SandboxState};
use super::{blocking, now_nanos, Runtime};

/// Where the cgroup hierarchies are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

impl Runtime {
    pub fn list_metric_descriptors(&self) -> v1::ListMetricDescriptorsResponse {
        v1::ListMetricDescriptorsResponse {
            descriptors: metrics::descriptors(),
        }
    }

    pub async fn list_pod_sandbox_metrics(
        &self,
    ) -> Result<v1::ListPodSandboxMetricsResponse, CriError> {
        let mut pod_metrics = Vec::new();
        for sb in self.store.all_sandboxes().await {
            let (id, meta, parent, own_netns) = {
                let r = sb.record.lock().await;
                if r.state != SandboxState::Ready {
                    continue;
                }
                (
                    r.id.clone(),
                    r.meta.clone(),
                    r.cgroup_parent.clone(),
                    r.namespaces.network == NsMode::Pod,
                )
            };
            let mut container_metrics = Vec::new();
            let mut inits = Vec::new();
            for c in self.store.all_containers().await {
                let (cid, name, image, started_at, init) = {
                    let r = c.record.lock().await;
                    if r.sandbox_id != id || r.state != ContainerState::Running {
                        continue;
                    }
                    (
                        r.id.clone(),
                        r.meta.name.clone(),
                        r.image.clone(),
                        r.started_at,
                        (r.init_pid, r.init_start_ticks),
                    )
                };
                inits.push(init);
                let rel = format!("{}/{cid}", parent.trim_end_matches('/'));
                let upper = self.paths.container_root(&cid).join("upper");
                let mut samples = blocking("container metrics", move || {
                    let (mut samples, pids) = metrics::collect_cgroup(Path::new(CGROUP_ROOT), &rel);
                    samples.extend(metrics::processes(Path::new("/proc"), &pids));
                    let (bytes, _) = stats::dir_usage(&upper);
                    let mountpoint = stats::mountpoint_of(&upper);
                    let device = mountpoint.display().to_string();
                    samples.extend(metrics::filesystem(&device, bytes, &mountpoint));
                    Ok(samples)
                })
                .await?;
                let now = now_nanos();
                samples.push(Sample {
                    name: "container_start_time_seconds",
                    extra: Vec::new(),
                    value: u64::try_from(started_at / 1_000_000_000).unwrap_or(0),
                });
                samples.push(Sample {
                    name: "container_last_seen",
                    extra: Vec::new(),
                    value: u64::try_from(now / 1_000_000_000).unwrap_or(0),
                });
                let base =
                    [&name, &cid, &image, &cid, &meta.namespace, &meta.name].map(|s| s.to_string());
                container_metrics.push(v1::ContainerMetrics {
                    container_id: cid.clone(),
                    metrics: metrics::to_metrics(samples, &base, now),
                });
            }
            // The pod's network, read through any of its running containers' init.
            let net = if own_netns {
                blocking("pod network metrics", move || {
                    Ok(inits.into_iter().find_map(|(pid, ticks)| {
                        let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).ok();
                        (kinglet_shim::process_start_ticks(pid) == Some(ticks))
                            .then_some(text)
                            .flatten()
                    }))
                })
                .await?
            } else {
                None
            };
            let base = ["POD", &id, "", &id, &meta.namespace, &meta.name].map(|s| s.to_string());
            pod_metrics.push(v1::PodSandboxMetrics {
                pod_sandbox_id: id.clone(),
                metrics: metrics::to_metrics(
                    net.map(|t| metrics::network(&t)).unwrap_or_default(),
                    &base,
                    now_nanos(),
                ),
                container_metrics,
            });
        }
        Ok(v1::ListPodSandboxMetricsResponse { pod_metrics })
    }
}
