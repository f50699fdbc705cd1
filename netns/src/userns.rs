//! Pod user namespaces (the kubelet's `hostUsers: false`) and idmapped mounts through them.
//!
//! Owns the pin `<dir>/user` and the short-lived holder process that creates the namespaces.
//!
//! Invariants:
//! - A multi-threaded process can neither `unshare` nor `setns` a user namespace, so the pod's
//!   user namespace is made by a child cloned with `CLONE_NEWUSER` together with the pod's
//!   net/ipc/uts namespaces (which the kernel then makes owned by the new user namespace).
//!   The child only waits for a pipe to close; its uid/gid maps are written from here, every
//!   namespace is taken from `/proc/<child>/ns/`, and the child is ended and reaped before the
//!   pinning call returns (or exits by itself if the daemon dies: the pipe closes).
//! - The pod's other namespaces are joined (`setns`) by the pinning thread from the child, so
//!   hostname, `lo` and sysctls are set exactly as for a pod without a user namespace.
//! - Idmapped mounts are detached copies (`open_tree`) of existing mounts, so a mount made
//!   here never changes what the original shows.

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use tracing::warn;

use crate::error::NetnsError;
use crate::ns::NsKind;
use crate::userns_sys;

/// One line of a uid or gid map: `length` ids from `container_id` inside map to `host_id` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub container_id: u32,
    pub host_id: u32,
    pub length: u32,
}

/// The uid and gid maps of a pod's user namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserNsMaps {
    pub uids: Vec<IdMap>,
    pub gids: Vec<IdMap>,
}

/// The text of `/proc/<pid>/uid_map` (or `gid_map`) for `maps`, one line per map.
pub fn map_text(maps: &[IdMap]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.length))
        .collect()
}

/// A child process holding a new user namespace (mapped) and the pod namespaces it owns.
/// Dropping it ends and reaps the child.
pub(crate) struct Holder {
    pid: u32,
    write_end: Option<OwnedFd>,
}

impl Holder {
    /// Clone the holder in a new user namespace plus `kinds`, and write its maps.
    pub(crate) fn spawn(
        maps: &UserNsMaps,
        kinds: &[NsKind],
        dir: &Path,
    ) -> Result<Holder, NetnsError> {
        let err = |step: &'static str| {
            let path = dir.join(NsKind::User.file_name());
            move |source: io::Error| NetnsError::UserNamespace { step, path, source }
        };
        let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| err("create the holder's pipe")(e.into()))?;
        let flags = kinds
            .iter()
            .fold(CloneFlags::CLONE_NEWUSER, |f, k| f | k.clone_flag());
        let pid = userns_sys::clone_holder(flags, read_end.as_fd(), write_end.as_fd())
            .map_err(err("clone a process in a new user namespace"))?;
        drop(read_end);
        let holder = Holder {
            pid,
            write_end: Some(write_end),
        };
        fs::write(format!("/proc/{pid}/uid_map"), map_text(&maps.uids))
            .map_err(err("write uid_map"))?;
        fs::write(format!("/proc/{pid}/gid_map"), map_text(&maps.gids))
            .map_err(err("write gid_map"))?;
        Ok(holder)
    }

    /// `/proc/<child>/ns/<kind>`.
    pub(crate) fn ns_path(&self, kind: NsKind) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/{}", self.pid, kind.file_name()))
    }

    /// Move the calling thread into the holder's namespace `kind` (not user).
    pub(crate) fn join(&self, kind: NsKind, dir: &Path) -> Result<(), NetnsError> {
        let path = self.ns_path(kind);
        let joined = File::open(&path).and_then(|f| userns_sys::setns(f.as_fd()));
        joined.map_err(|source| NetnsError::Unshare {
            kind,
            path: dir.join(kind.file_name()),
            source,
        })
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        drop(self.write_end.take());
        if let Err(err) = userns_sys::reap_child(self.pid) {
            warn!(pid = self.pid, %err, "reaping the user namespace holder failed");
        }
    }
}

/// Mount an idmapped copy of `src` (a directory or a file, and with `recursive` the mounts
/// below it) on `dst`, created like `src` if missing, mapped through the user namespace
/// pinned at `userns_pin`.
pub fn idmap_mount(
    src: &Path,
    dst: &Path,
    userns_pin: &Path,
    recursive: bool,
) -> Result<(), NetnsError> {
    let err = |source: io::Error| NetnsError::IdmapMount {
        source_path: src.to_path_buf(),
        path: dst.to_path_buf(),
        source,
    };
    let is_dir = fs::metadata(src).map_err(err)?.is_dir();
    if let Some(parent) = dst.parent() {
        fs::create_dir_all(parent).map_err(err)?;
    }
    if is_dir {
        fs::create_dir_all(dst).map_err(err)?;
    } else if fs::symlink_metadata(dst).is_err() {
        File::create(dst).map_err(err)?;
    }
    let userns = File::open(userns_pin).map_err(err)?;
    userns_sys::idmapped_bind(src, dst, userns.as_fd(), recursive).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_text_has_one_line_per_map() {
        let m = |c, h, l| IdMap {
            container_id: c,
            host_id: h,
            length: l,
        };
        assert_eq!(map_text(&[m(0, 1000, 100000)]), "0 1000 100000\n");
        assert_eq!(
            map_text(&[m(0, 1000, 1), m(1, 5000, 10)]),
            "0 1000 1\n1 5000 10\n"
        );
    }
}
