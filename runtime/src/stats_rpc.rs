//! The stats RPCs: ContainerStats, ListContainerStats, PodSandboxStats, ListPodSandboxStats.
//!
//! A container's CPU and memory come from its cgroup `<cgroup_parent>/<id>`, a pod's from its
//! cgroup parent (`/kinglet/<pod>` unless the client gave one), its writable layer from a walk of
//! `<root>/containers/<id>/upper`, a pod's network from `/proc/<pid>/net/dev` of one of its
//! running containers (the pod's network namespace, read without entering it). As containerd
//! does, an exited container still reports its attributes and writable layer (its cgroup is
//! gone, so no CPU or memory), and a pod that is not ready has no stats. CPU nanocores are
//! averaged since the previous sample of the same object, kept in memory.

use std::collections::HashSet;
use std::path::Path;

use kinglet_cri::CriError;
use kinglet_proto::v1;

use super::sandbox::{sandbox_meta, to_map};
use super::stats::{self, CgroupUsage};
use super::store::{ContainerEntry, ContainerState, NsMode, SandboxEntry, SandboxState};
use super::{blocking, labels_match, now_nanos, Runtime};

/// Where the cgroup hierarchies are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

fn u64v(value: u64) -> Option<v1::UInt64Value> {
    Some(v1::UInt64Value { value })
}

impl Runtime {
    /// CPU and memory of a cgroup reading, `usage_nano_cores` against the previous sample of
    /// `key`.
    fn cpu_memory(
        &self,
        key: &str,
        ts: i64,
        u: &CgroupUsage,
    ) -> (Option<v1::CpuUsage>, Option<v1::MemoryUsage>) {
        let cpu = u.cpu_ns.map(|ns| {
            let prev = self
                .cpu_samples
                .lock()
                .expect("cpu samples lock")
                .insert(key.to_owned(), (ts, ns));
            v1::CpuUsage {
                timestamp: ts,
                usage_core_nano_seconds: u64v(ns),
                usage_nano_cores: prev
                    .and_then(|p| stats::nano_cores(p, (ts, ns)))
                    .and_then(u64v),
                ..Default::default()
            }
        });
        let memory = u.memory.map(|m| v1::MemoryUsage {
            timestamp: ts,
            working_set_bytes: u64v(m.working_set),
            usage_bytes: u64v(m.usage),
            rss_bytes: u64v(m.rss),
            page_faults: u64v(m.page_faults),
            major_page_faults: u64v(m.major_page_faults),
            ..Default::default()
        });
        (cpu, memory)
    }

    async fn cgroup_parent(&self, sandbox_id: &str) -> String {
        match self.store.sandbox(sandbox_id).await {
            Some(s) => s.record.lock().await.cgroup_parent.clone(),
            None => format!("/kinglet/{sandbox_id}"),
        }
    }

    async fn stats_of_container(&self, e: &ContainerEntry) -> Result<v1::ContainerStats, CriError> {
        let (attributes, id, sandbox_id, running) = {
            let r = e.record.lock().await;
            let attributes = v1::ContainerAttributes {
                id: r.id.clone(),
                metadata: Some(v1::ContainerMetadata {
                    name: r.meta.name.clone(),
                    attempt: r.meta.attempt,
                }),
                labels: to_map(&r.labels),
                annotations: to_map(&r.annotations),
            };
            let running = r.state == ContainerState::Running;
            (attributes, r.id.clone(), r.sandbox_id.clone(), running)
        };
        let rel = format!(
            "{}/{id}",
            self.cgroup_parent(&sandbox_id).await.trim_end_matches('/')
        );
        let upper = self.paths.container_root(&id).join("upper");
        let (usage, (bytes, inodes), mountpoint) = blocking("container stats", move || {
            let usage = if running {
                stats::read_cgroup(Path::new(CGROUP_ROOT), &rel)
            } else {
                CgroupUsage::default()
            };
            Ok((
                usage,
                stats::dir_usage(&upper),
                stats::mountpoint_of(&upper),
            ))
        })
        .await?;
        let ts = now_nanos();
        let (cpu, memory) = self.cpu_memory(&id, ts, &usage);
        Ok(v1::ContainerStats {
            attributes: Some(attributes),
            cpu,
            memory,
            writable_layer: Some(v1::FilesystemUsage {
                timestamp: ts,
                fs_id: Some(v1::FilesystemIdentifier {
                    mountpoint: mountpoint.display().to_string(),
                }),
                used_bytes: u64v(bytes),
                inodes_used: u64v(inodes),
            }),
            ..Default::default()
        })
    }

    pub async fn container_stats(
        &self,
        req: v1::ContainerStatsRequest,
    ) -> Result<v1::ContainerStatsResponse, CriError> {
        if req.container_id.is_empty() {
            return Err(CriError::invalid("container_id", "must not be empty"));
        }
        let e = self
            .store
            .find_container(&req.container_id)
            .await
            .ok_or_else(|| CriError::not_found("container", &req.container_id))?;
        Ok(v1::ContainerStatsResponse {
            stats: Some(self.stats_of_container(&e).await?),
        })
    }

    /// The containers matching a filter, oldest first.
    async fn filtered_containers(
        &self,
        id: &str,
        sandbox: &str,
        selector: &std::collections::HashMap<String, String>,
    ) -> Vec<std::sync::Arc<ContainerEntry>> {
        let mut out = Vec::new();
        for e in self.store.all_containers().await {
            let r = e.record.lock().await;
            if r.id.starts_with(id)
                && r.sandbox_id.starts_with(sandbox)
                && labels_match(&r.labels, selector)
            {
                let created = r.created_at;
                drop(r);
                out.push((created, e));
            }
        }
        out.sort_by_key(|(c, _)| *c);
        out.into_iter().map(|(_, e)| e).collect()
    }

    pub async fn list_container_stats(
        &self,
        req: v1::ListContainerStatsRequest,
    ) -> Result<v1::ListContainerStatsResponse, CriError> {
        let f = req.filter.unwrap_or_default();
        self.prune_cpu_samples().await;
        let mut stats = Vec::new();
        for e in self
            .filtered_containers(&f.id, &f.pod_sandbox_id, &f.label_selector)
            .await
        {
            stats.push(self.stats_of_container(&e).await?);
        }
        Ok(v1::ListContainerStatsResponse { stats })
    }

    /// Forget CPU samples of objects that no longer exist.
    async fn prune_cpu_samples(&self) {
        let mut live: HashSet<String> =
            self.store.containers.read().await.keys().cloned().collect();
        live.extend(self.store.sandboxes.read().await.keys().cloned());
        self.cpu_samples
            .lock()
            .expect("cpu samples lock")
            .retain(|k, _| live.contains(k));
    }

    /// Stats of a ready pod; `None` when it is not ready.
    async fn stats_of_sandbox(
        &self,
        e: &SandboxEntry,
    ) -> Result<Option<v1::PodSandboxStats>, CriError> {
        let (attributes, id, parent, own_netns) = {
            let r = e.record.lock().await;
            if r.state != SandboxState::Ready {
                return Ok(None);
            }
            let attributes = v1::PodSandboxAttributes {
                id: r.id.clone(),
                metadata: Some(sandbox_meta(&r.meta)),
                labels: to_map(&r.labels),
                annotations: to_map(&r.annotations),
            };
            let own_netns = r.namespaces.network == NsMode::Pod;
            (attributes, r.id.clone(), r.cgroup_parent.clone(), own_netns)
        };
        let mut containers = Vec::new();
        // Running containers' init processes: any of them shows the pod's network namespace.
        let mut inits = Vec::new();
        for c in self.filtered_containers("", &id, &Default::default()).await {
            {
                let r = c.record.lock().await;
                if r.sandbox_id != id {
                    continue;
                }
                if r.state == ContainerState::Running && r.init_pid > 0 {
                    inits.push((r.init_pid, r.init_start_ticks));
                }
            }
            containers.push(self.stats_of_container(&c).await?);
        }
        let (usage, interfaces) = blocking("pod stats", move || {
            let usage = stats::read_cgroup(Path::new(CGROUP_ROOT), &parent);
            let interfaces = own_netns
                .then(|| {
                    inits.into_iter().find_map(|(pid, ticks)| {
                        let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).ok();
                        // Still the same process (not a reused pid) after the read.
                        (kinglet_shim::process_start_ticks(pid) == Some(ticks))
                            .then_some(text)
                            .flatten()
                    })
                })
                .flatten()
                .map(|t| stats::parse_net_dev(&t));
            Ok((usage, interfaces))
        })
        .await?;
        let ts = now_nanos();
        let (cpu, memory) = self.cpu_memory(&id, ts, &usage);
        let network = interfaces.map(|ifs| {
            let ifs: Vec<v1::NetworkInterfaceUsage> = ifs
                .into_iter()
                .map(|i| v1::NetworkInterfaceUsage {
                    name: i.name,
                    rx_bytes: u64v(i.rx_bytes),
                    rx_errors: u64v(i.rx_errors),
                    tx_bytes: u64v(i.tx_bytes),
                    tx_errors: u64v(i.tx_errors),
                })
                .collect();
            v1::NetworkUsage {
                timestamp: ts,
                default_interface: ifs.iter().find(|i| i.name == "eth0").cloned(),
                interfaces: ifs,
            }
        });
        Ok(Some(v1::PodSandboxStats {
            attributes: Some(attributes),
            linux: Some(v1::LinuxPodSandboxStats {
                cpu,
                memory,
                network,
                process: usage.pids.map(|n| v1::ProcessUsage {
                    timestamp: ts,
                    process_count: u64v(n),
                }),
                containers,
                io: None,
            }),
            windows: None,
        }))
    }

    pub async fn pod_sandbox_stats(
        &self,
        req: v1::PodSandboxStatsRequest,
    ) -> Result<v1::PodSandboxStatsResponse, CriError> {
        if req.pod_sandbox_id.is_empty() {
            return Err(CriError::invalid("pod_sandbox_id", "must not be empty"));
        }
        let e = self
            .store
            .find_sandbox(&req.pod_sandbox_id)
            .await
            .ok_or_else(|| CriError::not_found("pod sandbox", &req.pod_sandbox_id))?;
        match self.stats_of_sandbox(&e).await? {
            Some(stats) => Ok(v1::PodSandboxStatsResponse { stats: Some(stats) }),
            None => Err(CriError::FailedPrecondition {
                kind: "pod sandbox",
                id: e.record.lock().await.id.clone(),
                state: "not ready".into(),
                action: "PodSandboxStats",
                needed: "ready",
            }),
        }
    }

    pub async fn list_pod_sandbox_stats(
        &self,
        req: v1::ListPodSandboxStatsRequest,
    ) -> Result<v1::ListPodSandboxStatsResponse, CriError> {
        let f = req.filter.unwrap_or_default();
        self.prune_cpu_samples().await;
        let mut pods = Vec::new();
        for e in self.store.all_sandboxes().await {
            let r = e.record.lock().await;
            if r.id.starts_with(&f.id) && labels_match(&r.labels, &f.label_selector) {
                let created = r.created_at;
                drop(r);
                pods.push((created, e));
            }
        }
        pods.sort_by_key(|(c, _)| *c);
        let mut stats = Vec::new();
        for (_, e) in pods {
            stats.extend(self.stats_of_sandbox(&e).await?);
        }
        Ok(v1::ListPodSandboxStatsResponse { stats })
    }
}
