//! Containers: CreateContainer (in `container_create.rs`; StartContainer in `start.rs`),
//! StopContainer, RemoveContainer, ContainerStatus, ListContainers, ReopenContainerLog, and the
//! watcher that records exits.
//!
//! Layout of a container `<id>`:
//! - `<root>/containers/<id>/{upper,work}`: its writable overlay layer (persistent);
//! - `<run-root>/containers/<id>/bundle/{config.json,rootfs}`: the OCI bundle, `rootfs` being
//!   the overlay mount;
//! - `<run-root>/containers/<id>/shim/`: the shim's records and control socket.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kinglet_cri::CriError;
use kinglet_proto::v1;
use kinglet_shim::protocol::{read_record, ExitRecord, CMD_REOPEN_LOG, EXIT_RECORD};
use nix::sys::signal::Signal;

use super::sandbox::to_map;
use super::shim;
use super::store::{ContainerEntry, ContainerRecord, ContainerState, NsMode};
use super::{blocking, labels_match, now_nanos, removal, Runtime};

/// Parse a signal name (`SIGTERM`, `TERM`, `15`) as images and CRI configs give them.
pub fn parse_signal(s: &str) -> Option<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse().ok()
}

impl Runtime {
    pub(crate) async fn target_pid_ns(&self, config: &v1::ContainerConfig) -> Option<PathBuf> {
        let nso = config
            .linux
            .as_ref()?
            .security_context
            .as_ref()?
            .namespace_options
            .as_ref()?;
        if NsMode::from_cri(nso.pid) != NsMode::Target {
            return None;
        }
        let t = self.store.find_container(&nso.target_id).await?;
        let r = t.record.lock().await;
        (r.state == ContainerState::Running)
            .then(|| PathBuf::from(format!("/proc/{}/ns/pid", r.init_pid)))
    }

    /// Watch a container's shim; when it exits, record the container's exit.
    pub(crate) fn watch_exit(self: &Arc<Self>, entry: Arc<ContainerEntry>) {
        let rt = self.clone();
        tokio::spawn(async move {
            let (id, shim_pid) = {
                let r = entry.record.lock().await;
                (r.id.clone(), r.shim_pid)
            };
            shim::wait_exit(shim_pid).await;
            if let Err(e) = rt.record_exit(&entry, &id).await {
                tracing::warn!(container = %id, err = %kinglet_cri::chain(&e), "recording exit failed");
            }
        });
    }

    /// Read the shim's exit record into the container's record.
    pub(crate) async fn record_exit(
        &self,
        entry: &ContainerEntry,
        id: &str,
    ) -> Result<(), CriError> {
        let path = self.paths.shim_state(id).join(EXIT_RECORD);
        let exit = read_record::<ExitRecord>(&path)
            .map_err(|e| CriError::internal(format!("read {}", path.display()), e))?;
        let was_exited = entry.record.lock().await.state == ContainerState::Exited;
        self.store
            .update_container(entry, |r| {
                if r.state == ContainerState::Exited {
                    return;
                }
                r.state = ContainerState::Exited;
                match &exit {
                    Some(x) => {
                        r.exit_code = x.exit_code;
                        r.finished_at = x.finished_at;
                        r.reason = if x.oom_killed {
                            "OOMKilled".into()
                        } else if x.exit_code == 0 {
                            "Completed".into()
                        } else {
                            "Error".into()
                        };
                    }
                    None => {
                        r.exit_code = 255;
                        r.finished_at = now_nanos();
                        r.reason = "Unknown".into();
                        r.message =
                            "the container's monitor ended without recording an exit status".into();
                    }
                }
            })
            .await?;
        if !was_exited {
            let sandbox_id = entry.record.lock().await.sandbox_id.clone();
            self.emit_event(
                id,
                &sandbox_id,
                v1::ContainerEventType::ContainerStoppedEvent,
            )
            .await;
            // After the event: a client that removes the container as soon as it sees it
            // exited must still find it in the STOPPED event's statuses.
            self.release_exited_container(id).await;
        }
        let r = entry.record.lock().await;
        tracing::info!(pod = %r.sandbox_id, container = %id, exit_code = r.exit_code, reason = %r.reason, "container exited");
        {
            // Bounded: with no one draining it (CRI-only use) the oldest go; the supervisor's
            // periodic pass covers what a dropped entry would have woken.
            let mut exited = self.exited.lock().expect("exited lock");
            if exited.len() >= 1024 {
                exited.remove(0);
            }
            exited.push(r.labels.clone());
        }
        self.exits.notify_one();
        Ok(())
    }

    async fn container_entry(&self, id: &str) -> Result<Arc<ContainerEntry>, CriError> {
        if id.is_empty() {
            return Err(CriError::invalid("container_id", "must not be empty"));
        }
        self.store
            .find_container(id)
            .await
            .ok_or_else(|| CriError::not_found("container", id))
    }

    pub async fn stop_container(&self, id: &str, timeout: i64) -> Result<(), CriError> {
        if id.is_empty() {
            return Err(CriError::invalid("container_id", "must not be empty"));
        }
        let Some(entry) = self.store.find_container(id).await else {
            return Ok(());
        };
        let cid = entry.record.lock().await.id.clone();
        self.stop_container_entry(&entry, &cid, timeout).await
    }

    /// Signal, wait up to `timeout` seconds, then SIGKILL and wait for the exit.
    pub(crate) async fn stop_container_entry(
        &self,
        entry: &ContainerEntry,
        id: &str,
        timeout: i64,
    ) -> Result<(), CriError> {
        // Not while a start is launching the shim: after it, the pids are known.
        let _start = entry.start.lock().await;
        let (state, init_pid, ticks, stop_signal, shim_pid) = {
            let r = entry.record.lock().await;
            (
                r.state,
                r.init_pid,
                r.init_start_ticks,
                r.stop_signal,
                r.shim_pid,
            )
        };
        if matches!(state, ContainerState::Exited | ContainerState::Unknown) {
            return Ok(());
        }
        if state == ContainerState::Created && shim_pid == 0 {
            return self.stop_unstarted(entry).await;
        }
        let mut rx = entry.state_tx.subscribe();
        let alive =
            move || kinglet_shim::process_start_ticks(init_pid) == Some(ticks) && ticks != 0;
        let send = |sig: Signal| {
            if alive() {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(init_pid), sig);
            }
        };
        let exited = |rx: &mut tokio::sync::watch::Receiver<ContainerState>| {
            matches!(
                *rx.borrow_and_update(),
                ContainerState::Exited | ContainerState::Unknown
            )
        };
        if timeout > 0 && state == ContainerState::Running {
            send(Signal::try_from(stop_signal).unwrap_or(Signal::SIGTERM));
            kinglet_fault::crash_point!("container.stop.after-signal");
            let wait = async {
                while !exited(&mut rx) {
                    if rx.changed().await.is_err() {
                        break;
                    }
                }
            };
            if tokio::time::timeout(Duration::from_secs(timeout as u64), wait)
                .await
                .is_ok()
            {
                return Ok(());
            }
            tracing::info!(container = %id, timeout, "grace period over, killing");
        }
        send(Signal::SIGKILL);
        let wait = async {
            while !exited(&mut rx) {
                if rx.changed().await.is_err() {
                    break;
                }
            }
        };
        if tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .is_err()
        {
            return Err(CriError::DeadlineExceeded {
                what: format!("container {id} to exit after SIGKILL"),
                seconds: 30,
            });
        }
        Ok(())
    }

    pub async fn remove_container(&self, id: &str) -> Result<(), CriError> {
        if id.is_empty() {
            return Err(CriError::invalid("container_id", "must not be empty"));
        }
        let Some(entry) = self.store.find_container(id).await else {
            return Ok(());
        };
        let (cid, sandbox_id) = {
            let r = entry.record.lock().await;
            (r.id.clone(), r.sandbox_id.clone())
        };
        self.stop_container_entry(&entry, &cid, 0).await?;
        kinglet_fault::crash_point!("container.remove.after-shim");
        let (run_trash, root_trash) = (
            self.paths.run_root.join(removal::TRASH_DIR),
            self.paths.root.join(removal::TRASH_DIR),
        );
        let dirs = [
            (self.paths.container_run(&cid), run_trash.clone()),
            (self.paths.container_root(&cid), root_trash),
            (self.paths.runtime_root().join(&cid), run_trash),
        ];
        // Unmounted and out of place now; deleted once the answer is sent.
        let trash = blocking("remove container files", move || {
            removal::unmount_and_trash(&dirs)
        })
        .await?;
        kinglet_fault::crash_point!("container.remove.after-dirs");
        self.store.delete_container(&cid).await?;
        self.emit_event(
            &cid,
            &sandbox_id,
            v1::ContainerEventType::ContainerDeletedEvent,
        )
        .await;
        removal::delete_in_background(trash);
        tracing::info!(container = %cid, "container removed");
        Ok(())
    }

    pub async fn container_status(
        &self,
        req: v1::ContainerStatusRequest,
    ) -> Result<v1::ContainerStatusResponse, CriError> {
        let entry = self.container_entry(&req.container_id).await?;
        let r = entry.record.lock().await.clone();
        let mut info = std::collections::HashMap::new();
        if req.verbose {
            let v = serde_json::json!({
                "sandboxID": r.sandbox_id,
                "pid": r.init_pid,
                "shimPid": r.shim_pid,
                "bundle": self.paths.bundle(&r.id),
            });
            info.insert("info".to_owned(), v.to_string());
        }
        Ok(v1::ContainerStatusResponse {
            status: Some(container_status(&r)),
            info,
        })
    }

    pub async fn list_containers(
        &self,
        req: v1::ListContainersRequest,
    ) -> Result<v1::ListContainersResponse, CriError> {
        let f = req.filter.unwrap_or_default();
        let mut containers = Vec::new();
        for e in self.store.all_containers().await {
            let r = e.record.lock().await;
            if !f.id.is_empty() && !r.id.starts_with(&f.id) {
                continue;
            }
            if !f.pod_sandbox_id.is_empty() && !r.sandbox_id.starts_with(&f.pod_sandbox_id) {
                continue;
            }
            if let Some(s) = &f.state {
                if s.state != cri_state(r.state) {
                    continue;
                }
            }
            if !labels_match(&r.labels, &f.label_selector) {
                continue;
            }
            containers.push(v1::Container {
                id: r.id.clone(),
                pod_sandbox_id: r.sandbox_id.clone(),
                metadata: Some(v1::ContainerMetadata {
                    name: r.meta.name.clone(),
                    attempt: r.meta.attempt,
                }),
                image: Some(v1::ImageSpec {
                    image: r.image.clone(),
                    ..Default::default()
                }),
                image_ref: r.image_ref.clone(),
                state: cri_state(r.state),
                created_at: r.created_at,
                labels: to_map(&r.labels),
                annotations: to_map(&r.annotations),
                image_id: r.image_id.clone(),
            });
        }
        containers.sort_by_key(|c| std::cmp::Reverse(c.created_at));
        Ok(v1::ListContainersResponse { containers })
    }

    pub async fn reopen_container_log(&self, id: &str) -> Result<(), CriError> {
        let entry = self.container_entry(id).await?;
        let (cid, state) = {
            let r = entry.record.lock().await;
            (r.id.clone(), r.state)
        };
        if state != ContainerState::Running {
            return Err(CriError::FailedPrecondition {
                kind: "container",
                id: cid,
                state: format!("{state:?}").to_lowercase(),
                action: "ReopenContainerLog",
                needed: "running",
            });
        }
        shim::control(&self.paths.shim_state(&cid), CMD_REOPEN_LOG).await?;
        Ok(())
    }
}

pub(crate) fn cri_state(s: ContainerState) -> i32 {
    match s {
        ContainerState::Created => v1::ContainerState::ContainerCreated as i32,
        ContainerState::Running => v1::ContainerState::ContainerRunning as i32,
        ContainerState::Exited => v1::ContainerState::ContainerExited as i32,
        ContainerState::Unknown => v1::ContainerState::ContainerUnknown as i32,
    }
}

/// The first process's identity as ContainerStatus reports it: the supplementary groups
/// include the primary group, as `getgroups` after `setgroups([gid, ...])` would show.
fn container_user(user: &(u32, u32, Vec<u32>)) -> v1::ContainerUser {
    let (uid, gid, groups) = user;
    let mut all: Vec<i64> = std::iter::once(*gid)
        .chain(groups.iter().copied())
        .map(i64::from)
        .collect();
    all.sort_unstable();
    all.dedup();
    v1::ContainerUser {
        linux: Some(v1::LinuxContainerUser {
            uid: i64::from(*uid),
            gid: i64::from(*gid),
            supplemental_groups: all,
        }),
    }
}

/// The container's resources: the last UpdateContainerResources, else its config's.
fn container_resources(r: &ContainerRecord) -> Option<v1::ContainerResources> {
    let linux = if r.resources.is_empty() {
        super::decode_hex::<v1::ContainerConfig>(&r.config)
            .linux
            .and_then(|l| l.resources)
    } else {
        Some(super::decode_hex::<v1::LinuxContainerResources>(
            &r.resources,
        ))
    };
    linux.map(|l| v1::ContainerResources {
        linux: Some(l),
        windows: None,
    })
}

pub(super) fn container_status(r: &ContainerRecord) -> v1::ContainerStatus {
    v1::ContainerStatus {
        user: r.user.as_ref().map(container_user),
        resources: container_resources(r),
        id: r.id.clone(),
        metadata: Some(v1::ContainerMetadata {
            name: r.meta.name.clone(),
            attempt: r.meta.attempt,
        }),
        state: cri_state(r.state),
        created_at: r.created_at,
        started_at: r.started_at,
        finished_at: r.finished_at,
        exit_code: r.exit_code,
        image: Some(v1::ImageSpec {
            image: r.image.clone(),
            ..Default::default()
        }),
        image_ref: r.image_ref.clone(),
        reason: r.reason.clone(),
        message: r.message.clone(),
        labels: to_map(&r.labels),
        annotations: to_map(&r.annotations),
        mounts: r
            .mounts
            .iter()
            .map(|m| v1::Mount {
                container_path: m.container_path.clone(),
                host_path: m.host_path.clone(),
                readonly: m.readonly,
                propagation: m.propagation,
                image: m.image.as_ref().map(|(image, id)| v1::ImageSpec {
                    image: image.clone(),
                    image_ref: id.clone(),
                    ..Default::default()
                }),
                image_sub_path: m.image_sub_path.clone(),
                ..Default::default()
            })
            .collect(),
        log_path: r.log_path.clone(),
        image_id: r.image_id.clone(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_in_every_spelling() {
        assert_eq!(parse_signal("SIGTERM"), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("quit"), Some(Signal::SIGQUIT));
        assert_eq!(parse_signal("9"), Some(Signal::SIGKILL));
        assert_eq!(parse_signal("SIGNOPE"), None);
    }

    #[test]
    fn status_user_lists_the_primary_group_among_the_supplementary_ones() {
        let u = container_user(&(1000, 1000, vec![1234, 100]))
            .linux
            .unwrap();
        assert_eq!(
            (u.uid, u.gid, u.supplemental_groups),
            (1000, 1000, vec![100, 1000, 1234])
        );
        let u = container_user(&(0, 0, vec![])).linux.unwrap();
        assert_eq!(u.supplemental_groups, vec![0]);
    }
}
