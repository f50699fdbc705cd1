//! Releasing the host mounts that a finished container or a stopped pod no longer needs while
//! its record stays (as containerd does: a task's exit unmounts its rootfs, StopPodSandbox its
//! /dev/shm). Exited containers and stopped sandboxes are kept until they are removed (a Job's
//! finished pods stay as long as the Job); were their overlay roots and shm tmpfs left
//! mounted, the mount table would grow with every finished pod, and every container start
//! (which copies and reads that table) would slow down with it.

use std::path::PathBuf;

use super::store::SandboxRecord;
use super::{blocking, mounts, Runtime};

impl Runtime {
    /// Unmount whatever is mounted under the exited container's run directory (its rootfs,
    /// image volumes, idmapped layers); its writable layer and logs stay. A failure is logged:
    /// RemoveContainer unmounts again.
    pub(crate) async fn release_exited_container(&self, id: &str) {
        let dir = self.paths.container_run(id);
        let r = blocking("unmount an exited container's root", move || {
            mounts::unmount_under(&[&dir])
        })
        .await;
        if let Err(e) = r {
            tracing::warn!(container = %id, err = %kinglet_cri::chain(&e), "unmounting an exited container's root failed");
        }
    }

    /// Unmount a stopped pod's /dev/shm (no container of it runs any more; RemovePodSandbox
    /// removes the directory).
    pub(crate) async fn release_sandbox_shm(&self, rec: &SandboxRecord) {
        let Some(shm) = rec.shm.clone() else {
            return;
        };
        let r = blocking("unmount a stopped pod's /dev/shm", move || {
            mounts::unmount_under(&[&PathBuf::from(&shm)])
        })
        .await;
        if let Err(e) = r {
            tracing::warn!(pod = %rec.id, err = %kinglet_cri::chain(&e), "unmounting a stopped pod's /dev/shm failed");
        }
    }
}
