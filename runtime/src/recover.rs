//! Daemon start: rebuild memory from the records on disk, re-attach to shims that still run,
//! record exits that happened while the daemon was down, and clean what a crash left half-made.

use std::collections::HashSet;
use std::sync::Arc;

use kinglet_cri::CriError;
use kinglet_shim::protocol::{read_record, ShimRecord, EXIT_RECORD, SHIM_RECORD};

use super::store::{ContainerState, NsMode, SandboxState};
use super::{mounts, shim, Runtime};

impl Runtime {
    pub(crate) async fn recover(self: &Arc<Self>) -> Result<(), CriError> {
        let (sandboxes, containers) = self.store.load_all()?;
        let sandbox_ids: HashSet<String> = sandboxes.iter().map(|s| s.id.clone()).collect();
        let pod_inits: HashSet<(String, u32)> = sandboxes
            .iter()
            .filter_map(|s| Some((s.id.clone(), s.namespaces.pid_init?)))
            .collect();
        // Pods whose network must stay: ready, on the pod network. Everything else the network
        // holds (a setup or teardown a crash interrupted) is undone by its init.
        let live_net: HashSet<String> = sandboxes
            .iter()
            .filter(|s| s.state == SandboxState::Ready && s.namespaces.network == NsMode::Pod)
            .map(|s| s.id.clone())
            .collect();
        let network = self.network.clone();
        let net_result = tokio::task::spawn_blocking(move || network.init(&live_net))
            .await
            .map_err(|e| CriError::internal("pod network init task", e))?;
        if let Err(e) = net_result {
            // The daemon still serves host-network pods; Status reports NetworkReady false.
            tracing::error!(err = %kinglet_cri::chain(&e), "pod network setup failed");
        }
        for s in sandboxes {
            self.store.sandboxes.write().await.insert(
                s.id.clone(),
                Arc::new(super::store::SandboxEntry {
                    record: tokio::sync::Mutex::new(s),
                }),
            );
        }
        let mut container_ids = HashSet::new();
        for mut c in containers {
            container_ids.insert(c.id.clone());
            let state_dir = self.paths.shim_state(&c.id);
            let exited = state_dir.join(EXIT_RECORD).exists();
            // A shim a start launched before the daemon could record it: adopt its pids.
            if c.state == ContainerState::Created && c.shim_pid == 0 {
                if let Ok(Some(r)) = read_record::<ShimRecord>(&state_dir.join(SHIM_RECORD)) {
                    c.shim_pid = r.shim_pid;
                    c.init_pid = r.init_pid;
                    c.init_start_ticks = r.init_start_ticks;
                }
            }
            let shim_alive = c.shim_pid > 0 && shim::is_shim_of(c.shim_pid, &c.id);
            // A start the daemon did not live to record.
            if c.state == ContainerState::Created {
                if let Ok(Some(r)) = read_record::<ShimRecord>(&state_dir.join(SHIM_RECORD)) {
                    if let Some(at) = r.started_at {
                        c.state = ContainerState::Running;
                        c.started_at = at;
                    }
                }
            }
            let id = c.id.clone();
            // Created and never started: no shim to watch yet (StartContainer launches it).
            let live = matches!(c.state, ContainerState::Created | ContainerState::Running)
                && !(c.state == ContainerState::Created && c.shim_pid == 0);
            let entry = self.store.insert_container(c, false).await?;
            if live {
                if exited || !shim_alive {
                    self.record_exit(&entry, &id).await?;
                } else {
                    self.watch_exit(entry);
                }
            }
        }
        self.remove_leftovers(sandbox_ids, container_ids, pod_inits)
            .await
    }

    /// Leftovers of operations a crash interrupted: directories without a record (and a pod
    /// directory's pins, pod init and cgroup), removed containers' files not yet deleted; the
    /// trash directories are (re)created empty.
    async fn remove_leftovers(
        &self,
        sandbox_ids: HashSet<String>,
        container_ids: HashSet<String>,
        pod_inits: HashSet<(String, u32)>,
    ) -> Result<(), CriError> {
        let pods_dir = self.paths.run_root.join("pods");
        let trash_dirs = [
            self.paths.run_root.join(super::removal::TRASH_DIR),
            self.paths.root.join(super::removal::TRASH_DIR),
        ];
        // A crash between creating a pod's cgroup and saving its record leaves the cgroup
        // (`/kinglet/<pod>`, only ever made by Kinglet) next to a leftover pod directory.
        let own_pod_cgroups = !self.config.systemd_cgroup;
        let leftovers = [
            (pods_dir.clone(), sandbox_ids),
            (
                self.paths.run_root.join("containers"),
                container_ids.clone(),
            ),
            (self.paths.root.join("containers"), container_ids.clone()),
            (self.paths.runtime_root(), container_ids),
            (trash_dirs[0].clone(), HashSet::new()),
            (trash_dirs[1].clone(), HashSet::new()),
        ];
        let exec_dir = self.paths.exec_dir();
        tokio::task::spawn_blocking(move || {
            end_orphan_pod_inits(&pods_dir, &pod_inits);
            clean_exec_dir(&exec_dir);
            for (dir, known) in leftovers {
                let Ok(rd) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if known.contains(&name) {
                        continue;
                    }
                    let own_cgroup = own_pod_cgroups && dir == pods_dir;
                    remove_leftover(&e.path(), &name, own_cgroup);
                }
            }
            // Present from the start, closed like the other directories of the roots.
            for t in trash_dirs {
                super::removal::create_trash_dir(&t);
            }
        })
        .await
        .map_err(|e| CriError::internal("leftover cleanup task", e))
    }
}

/// Remove one leftover directory `p` (named `name`): its namespace pins, its pod cgroup when
/// `own_cgroup`, its mounts and files.
fn remove_leftover(p: &std::path::Path, name: &str, own_cgroup: bool) {
    tracing::info!(path = %p.display(), "removing leftover of an interrupted operation");
    let ns = p.join("ns");
    if ns.exists() {
        let _ = kinglet_netns::unpin_namespaces(&ns);
    }
    if own_cgroup {
        super::cgroups::remove_cgroup(
            std::path::Path::new("/sys/fs/cgroup"),
            &format!("/kinglet/{name}"),
        );
    }
    if let Err(e) = mounts::remove_tree(p) {
        tracing::warn!(path = %p.display(), err = %kinglet_cri::chain(&e), "leftover not removed");
    }
}

/// Empty `<run-root>/exec` of files an earlier daemon's exec helpers left (a result's `.tmp-*`
/// a crashed helper never renamed, results and console sockets nobody will read): only a
/// daemon's own Exec waits for them, so at start every one is stale. Directories are left.
pub(crate) fn clean_exec_dir(dir: &std::path::Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in rd.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        match std::fs::remove_file(e.path()) {
            Ok(()) => removed += 1,
            Err(err) => {
                tracing::warn!(path = %e.path().display(), %err, "stale exec file not removed")
            }
        }
    }
    if removed > 0 {
        tracing::info!(dir = %dir.display(), removed, "removed stale exec helper files");
    }
    removed
}

/// Kill the pod inits of this run root's pods that no sandbox record names (a crash between
/// starting the pod init and saving the record left them; their pin went with the leftover
/// directory, so nothing else would ever end them).
fn end_orphan_pod_inits(pods_dir: &std::path::Path, known: &HashSet<(String, u32)>) {
    for (pid, pod, pin) in kinglet_netns::find_pod_inits(pods_dir) {
        if known.contains(&(pod.clone(), pid)) {
            continue;
        }
        match kinglet_netns::kill_orphan_pod_init(pid, &pin) {
            Ok(true) => tracing::info!(%pod, pid, "ended the pod init of a pod that is gone"),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(%pod, pid, err = %kinglet_cri::chain(&e), "leftover pod init not ended")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn stale_exec_files_are_removed_and_directories_kept() {
        let d = tempfile::tempdir().unwrap();
        let exec = d.path().join("exec");
        std::fs::create_dir(&exec).unwrap();
        for f in [".tmp-a1b2c3", ".tmp-zz", "0123abcd.json"] {
            std::fs::write(exec.join(f), b"{").unwrap();
        }
        let sock = exec.join("0123abcd0123.sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        std::fs::create_dir(exec.join("keep")).unwrap();
        assert_eq!(super::clean_exec_dir(&exec), 4);
        let left: Vec<_> = std::fs::read_dir(&exec)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["keep"]);
        assert_eq!(super::clean_exec_dir(&d.path().join("missing")), 0);
    }
}
