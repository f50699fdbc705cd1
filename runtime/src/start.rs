//! StartContainer, and the stop of a container that was never started.
//!
//! As containerd does, CreateContainer only prepares: it validates the request, mounts the root
//! filesystem, writes the OCI bundle and the record (state CREATED). StartContainer launches
//! the container's shim (which creates the container through libcontainer: namespaces, cgroup,
//! mounts), writes resources an UpdateContainerResources recorded meanwhile into its cgroup, and
//! then starts the user process. A record in CREATED with no shim (`shim_pid == 0`) is such a
//! prepared container; recovery keeps it as it is.

use std::sync::Arc;

use kinglet_cri::CriError;
use kinglet_proto::v1;
use kinglet_shim::protocol::{read_record, ShimRecord, CMD_START, SHIM_RECORD};
use nix::sys::signal::Signal;

use super::resources::write_resources;
use super::shim::{self, ShimLaunch};
use super::store::{ContainerEntry, ContainerRecord, ContainerState};
use super::{blocking, decode_hex, now_nanos, Runtime};

/// Exit code and reason recorded for a container whose start failed, as containerd records.
const START_ERROR_EXIT: i32 = 128;
const START_ERROR_REASON: &str = "StartError";

impl Runtime {
    pub async fn start_container(self: &Arc<Self>, id: &str) -> Result<(), CriError> {
        if id.is_empty() {
            return Err(CriError::invalid("container_id", "must not be empty"));
        }
        let entry = self
            .store
            .find_container(id)
            .await
            .ok_or_else(|| CriError::not_found("container", id))?;
        let _start = entry.start.lock().await;
        let rec = entry.record.lock().await.clone();
        if rec.state != ContainerState::Created {
            return Err(CriError::FailedPrecondition {
                kind: "container",
                id: rec.id,
                state: format!("{:?}", rec.state).to_lowercase(),
                action: "StartContainer",
                needed: "created",
            });
        }
        let cid = rec.id.clone();
        if rec.shim_pid == 0 {
            if let Err(e) = self.launch_shim(&entry, &rec).await {
                self.record_start_error(&entry, &rec, &e).await;
                return Err(e);
            }
        }
        kinglet_fault::crash_point!("container.start.before");
        let reply = shim::control(&self.paths.shim_state(&cid), CMD_START).await?;
        let started_at = reply.parse::<i64>().unwrap_or_else(|_| now_nanos());
        kinglet_fault::crash_point!("container.start.after");
        self.store
            .update_container(&entry, |r| {
                if r.state == ContainerState::Created {
                    r.state = ContainerState::Running;
                    r.started_at = started_at;
                }
            })
            .await?;
        self.emit_event(
            &cid,
            &rec.sandbox_id,
            v1::ContainerEventType::ContainerStartedEvent,
        )
        .await;
        tracing::info!(pod = %rec.sandbox_id, container = %cid, "container started");
        Ok(())
    }

    /// Launch the shim of a prepared container: it creates the container (libcontainer) and
    /// waits for CMD_START. Records the pids and watches for the exit.
    async fn launch_shim(
        self: &Arc<Self>,
        entry: &Arc<ContainerEntry>,
        rec: &ContainerRecord,
    ) -> Result<(), CriError> {
        let config = decode_hex::<v1::ContainerConfig>(&rec.config);
        let bundle = self.paths.bundle(&rec.id);
        let state_dir = self.paths.shim_state(&rec.id);
        let runtime_root = self.paths.runtime_root();
        let log_path = (!rec.log_path.is_empty()).then(|| std::path::PathBuf::from(&rec.log_path));
        let spawned = shim::spawn(&ShimLaunch {
            exe: &self.shim_exe,
            id: &rec.id,
            bundle: &bundle,
            runtime_root: &runtime_root,
            state_dir: &state_dir,
            log_path: log_path.as_deref(),
            log_max_size: self.config.container_log_max_size,
            log_max_files: self.config.container_log_max_files,
            stdin: config.stdin,
            stdin_once: config.stdin_once,
            systemd_cgroup: self.config.systemd_cgroup,
        })
        .await;
        let (init_pid, shim_pid) = match spawned {
            Ok(pids) => pids,
            Err(e) => {
                kill_leftover(&state_dir).await;
                return Err(e);
            }
        };
        kinglet_fault::crash_point!("container.after-shim");
        let ticks = kinglet_shim::process_start_ticks(init_pid).unwrap_or(0);
        let saved = self
            .store
            .update_container(entry, |r| {
                r.shim_pid = shim_pid;
                r.init_pid = init_pid;
                r.init_start_ticks = ticks;
            })
            .await;
        // From here on the shim's exit is the container's: watched even if a later step fails.
        self.watch_exit(entry.clone());
        saved?;
        let resources = entry.record.lock().await.resources.clone();
        if !resources.is_empty() {
            let r = decode_hex::<v1::LinuxContainerResources>(&resources);
            if let Err(e) = blocking("apply container resources", move || {
                write_resources(init_pid, &r)
            })
            .await
            {
                kill_leftover(&state_dir).await;
                return Err(e);
            }
        }
        tracing::debug!(pod = %rec.sandbox_id, container = %rec.id, init_pid, shim_pid, "container created by its shim");
        Ok(())
    }

    /// A failed start ends the container: EXITED with containerd's StartError.
    async fn record_start_error(
        &self,
        entry: &ContainerEntry,
        rec: &ContainerRecord,
        e: &CriError,
    ) {
        let message = kinglet_cri::chain(e);
        let res = self
            .store
            .update_container(entry, |r| {
                if r.state == ContainerState::Created {
                    r.state = ContainerState::Exited;
                    r.exit_code = START_ERROR_EXIT;
                    r.finished_at = now_nanos();
                    r.reason = START_ERROR_REASON.into();
                    r.message = message.clone();
                }
            })
            .await;
        if let Err(err) = res {
            tracing::warn!(container = %rec.id, err = %kinglet_cri::chain(&err), "recording a failed start failed");
        }
        self.emit_event(
            &rec.id,
            &rec.sandbox_id,
            v1::ContainerEventType::ContainerStoppedEvent,
        )
        .await;
        tracing::warn!(pod = %rec.sandbox_id, container = %rec.id, err = %message, "container start failed");
    }

    /// Stop a container that was prepared but never started: nothing runs, so it just becomes
    /// EXITED, as a created container killed before its start would (128 + SIGKILL).
    pub(crate) async fn stop_unstarted(&self, entry: &ContainerEntry) -> Result<(), CriError> {
        let mut changed = false;
        self.store
            .update_container(entry, |r| {
                if r.state == ContainerState::Created && r.shim_pid == 0 {
                    r.state = ContainerState::Exited;
                    r.exit_code = 128 + Signal::SIGKILL as i32;
                    r.finished_at = now_nanos();
                    r.reason = "Error".into();
                    changed = true;
                }
            })
            .await?;
        if changed {
            let (id, sandbox_id) = {
                let r = entry.record.lock().await;
                (r.id.clone(), r.sandbox_id.clone())
            };
            self.emit_event(
                &id,
                &sandbox_id,
                v1::ContainerEventType::ContainerStoppedEvent,
            )
            .await;
            tracing::info!(pod = %sandbox_id, container = %id, "unstarted container stopped");
        }
        Ok(())
    }
}

/// A shim that did create the container holds its rootfs: make sure nothing is left running.
async fn kill_leftover(state_dir: &std::path::Path) {
    let state_dir = state_dir.to_owned();
    let _ = blocking("kill leftover", move || {
        if let Ok(Some(r)) = read_record::<ShimRecord>(&state_dir.join(SHIM_RECORD)) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(r.init_pid), Signal::SIGKILL);
        }
        Ok(())
    })
    .await;
}
