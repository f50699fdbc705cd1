//! Pinning a pod's net, ipc and uts namespaces with bind mounts, and removing the pins.
//!
//! Owns the files `<dir>/{net,ipc,uts}`, and `<dir>/user` for pods with their own user
//! namespace (see [`crate::userns`]); removes `<dir>/pid`, which `pidns` creates.
//!
//! Invariants:
//! - Namespaces are created by `unshare(2)` on a fresh `std::thread` that this module spawns and
//!   joins for every call. That thread's namespaces are the only ones that change; it is never a
//!   tokio worker or a reused blocking-pool thread, and it exits once the pins exist, so nothing
//!   but the bind mounts keeps the namespaces alive (no pause process).
//! - A pin is an empty regular file created with `O_EXCL` and bind-mounted from
//!   `/proc/self/task/<tid>/ns/<kind>`. Pins are created in [`NsKind::ALL`] order; if any step
//!   fails, every pin made by that call is unmounted and removed again (in reverse), and so is
//!   the directory if the call created it. Files that existed before the call are never touched.
//! - [`unpin_namespaces`] is idempotent: missing files, files that are not mount points and a
//!   missing directory are all fine; stacked mounts on a pin are all detached.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::thread;

use tracing::{debug, warn};

use crate::error::NetnsError;
use crate::ns::NsKind;
use crate::sys;

/// Upper bound on mounts stacked on one pin that [`unpin_namespaces`] detaches.
const MAX_STACKED_MOUNTS: usize = 64;

/// Which new namespaces a pod gets, and where their pins go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinRequest {
    /// Directory for the pin files (created if missing), e.g. `<run-root>/pods/<uid>/ns`.
    pub dir: PathBuf,
    /// Create and pin a new network namespace, with `lo` up.
    pub net: bool,
    /// Create and pin a new IPC namespace.
    pub ipc: bool,
    /// Create and pin a new UTS namespace.
    pub uts: bool,
    /// Hostname to set in the new UTS namespace; requires `uts`.
    pub hostname: Option<String>,
    /// Sysctls (key, value) to set in the new namespaces; each must belong to one of them
    /// ([`crate::sysctl::check`]).
    pub sysctls: Vec<(String, String)>,
    /// A new user namespace with these maps, owning the new net/ipc/uts namespaces.
    pub userns: Option<crate::userns::UserNsMaps>,
}

impl PinRequest {
    fn kinds(&self) -> Vec<NsKind> {
        [
            (NsKind::Net, self.net),
            (NsKind::Ipc, self.ipc),
            (NsKind::Uts, self.uts),
        ]
        .into_iter()
        .filter_map(|(kind, wanted)| wanted.then_some(kind))
        .collect()
    }
}

/// Paths of the pins made by [`pin_namespaces`]; `None` for namespaces not requested (the pod
/// shares the host's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PinnedNamespaces {
    /// Pin of the pod's network namespace.
    pub net: Option<PathBuf>,
    /// Pin of the pod's IPC namespace.
    pub ipc: Option<PathBuf>,
    /// Pin of the pod's UTS namespace.
    pub uts: Option<PathBuf>,
    /// Pin of the pod's user namespace.
    pub user: Option<PathBuf>,
}

impl PinnedNamespaces {
    /// Pin path for `kind`, if that namespace was pinned.
    pub fn path(&self, kind: NsKind) -> Option<&Path> {
        match kind {
            NsKind::Net => self.net.as_deref(),
            NsKind::Ipc => self.ipc.as_deref(),
            NsKind::Uts => self.uts.as_deref(),
            NsKind::User => self.user.as_deref(),
            NsKind::Pid => None,
        }
    }

    fn set(&mut self, kind: NsKind, path: PathBuf) {
        match kind {
            NsKind::Net => self.net = Some(path),
            NsKind::Ipc => self.ipc = Some(path),
            NsKind::Uts => self.uts = Some(path),
            NsKind::User => self.user = Some(path),
            NsKind::Pid => unreachable!("pid namespaces are pinned by pidns"),
        }
    }
}

/// Create the requested namespaces and pin them under `req.dir`.
///
/// Blocking (a thread spawn, `unshare`s and mounts: typically a few milliseconds); async callers
/// use `spawn_blocking`, which is fine because the namespaces are created on a fresh thread
/// spawned and joined here, never on the calling thread. With nothing requested, returns empty
/// [`PinnedNamespaces`] without touching the filesystem.
pub fn pin_namespaces(req: &PinRequest) -> Result<PinnedNamespaces, NetnsError> {
    if let (Some(hostname), false) = (&req.hostname, req.uts) {
        return Err(NetnsError::HostnameWithoutUts {
            hostname: hostname.clone(),
        });
    }
    crate::sysctl::check(&req.sysctls, &req.kinds())?;
    if req.kinds().is_empty() && req.userns.is_none() {
        return Ok(PinnedNamespaces::default());
    }
    let pinned = thread::scope(|scope| {
        let handle = thread::Builder::new()
            .name("kinglet-ns-pin".into())
            .spawn_scoped(scope, || pin_on_this_thread(req))
            .map_err(|source| NetnsError::SpawnPinThread {
                dir: req.dir.clone(),
                source,
            })?;
        handle.join().unwrap_or_else(|_| {
            Err(NetnsError::PinThreadPanicked {
                dir: req.dir.clone(),
            })
        })
    })?;
    debug!(dir = %req.dir.display(), ?pinned, "pinned pod namespaces");
    Ok(pinned)
}

/// The body of the pinning thread. Changes this thread's namespaces: never call it elsewhere.
fn pin_on_this_thread(req: &PinRequest) -> Result<PinnedNamespaces, NetnsError> {
    let mut rollback = Rollback::default();
    let dir = &req.dir;

    // 1. The pin directory (removed again on failure only if we created it).
    let existed = dir.is_dir();
    fs::create_dir_all(dir).map_err(|source| NetnsError::CreatePinDir {
        path: dir.clone(),
        source,
    })?;
    if !existed {
        rollback.dir = Some(dir.clone());
    }

    // 2. New namespaces for this thread only, one kind at a time so errors name the kind; with
    //    a user namespace, made by a holder child (owned by it) and joined from there.
    let kinds = req.kinds();
    let mut pinned = PinnedNamespaces::default();
    let holder = match &req.userns {
        Some(maps) => Some(crate::userns::Holder::spawn(maps, &kinds, dir)?),
        None => None,
    };
    if let Some(h) = &holder {
        let path = dir.join(NsKind::User.file_name());
        pin_one(NsKind::User, &h.ns_path(NsKind::User), &path, &mut rollback)?;
        pinned.set(NsKind::User, path);
    }
    for &kind in &kinds {
        match &holder {
            Some(h) => h.join(kind, dir)?,
            None => sys::unshare(kind).map_err(|source| NetnsError::Unshare {
                kind,
                path: dir.join(kind.file_name()),
                source,
            })?,
        }
    }
    drop(holder);

    // 3. Hostname in the new UTS namespace.
    if let Some(hostname) = &req.hostname {
        sys::sethostname(hostname).map_err(|source| NetnsError::SetHostname {
            hostname: hostname.clone(),
            path: dir.join(NsKind::Uts.file_name()),
            source,
        })?;
    }

    // 4. Loopback up in the new network namespace (it starts down).
    if req.net {
        sys::set_interface_up("lo").map_err(|source| NetnsError::InterfaceUp {
            interface: "lo".into(),
            path: dir.join(NsKind::Net.file_name()),
            source,
        })?;
    }

    // 5. Sysctls, written from this thread: /proc/sys resolves net and ipc entries in the
    //    namespaces of the task that opens them, i.e. the new ones.
    for (key, value) in &req.sysctls {
        let path = crate::sysctl::path_of(Path::new("/proc/sys"), key)?;
        fs::write(&path, value).map_err(|source| NetnsError::PodSysctl {
            key: key.clone(),
            value: value.clone(),
            path: path.clone(),
            source,
        })?;
    }

    // 6. Pin each namespace: empty file, then bind mount of this thread's ns link onto it.
    let task = PathBuf::from(format!("/proc/self/task/{}/ns", sys::gettid()));
    for &kind in &kinds {
        let path = dir.join(kind.file_name());
        pin_one(kind, &task.join(kind.file_name()), &path, &mut rollback)?;
        pinned.set(kind, path);
    }

    rollback.disarm();
    Ok(pinned)
}

/// Pin the namespace `source_path` at `path` (a new empty file), undone by `rollback`.
fn pin_one(
    kind: NsKind,
    source_path: &Path,
    path: &Path,
    rollback: &mut Rollback,
) -> Result<(), NetnsError> {
    create_pin_file(kind, path)?;
    rollback.pins.push((kind, path.to_path_buf()));
    sys::bind_mount(source_path, path).map_err(|source| NetnsError::BindMount {
        kind,
        source_path: source_path.to_path_buf(),
        path: path.to_path_buf(),
        source,
    })
}

/// Create the empty file a namespace is bind-mounted onto; fails if it already exists.
pub(crate) fn create_pin_file(kind: NsKind, path: &Path) -> Result<(), NetnsError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map(drop)
        .map_err(|source| NetnsError::CreatePinFile {
            kind,
            path: path.to_path_buf(),
            source,
        })
}

/// Unmount and remove every pin (`user`, `net`, `ipc`, `uts`, `pid`) in `dir`, then remove `dir` if it is
/// empty. Idempotent. Tries every pin even if one fails, and returns the first error.
///
/// A pod with a shared PID namespace must be stopped with [`crate::stop_pod_init`] first: that
/// function only kills a pod init it can match against its pin, so once the `pid` pin is gone
/// here, a still-running pod init is left alone.
pub fn unpin_namespaces(dir: &Path) -> Result<(), NetnsError> {
    let mut first_err = None;
    for kind in NsKind::ALL.into_iter().rev() {
        if let Err(e) = unpin_file(kind, &dir.join(kind.file_name())) {
            first_err.get_or_insert(e);
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    match fs::remove_dir(dir) {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::DirectoryNotEmpty
            ) => {}
        Err(source) => {
            return Err(NetnsError::RemovePinDir {
                path: dir.to_path_buf(),
                source,
            })
        }
    }
    debug!(dir = %dir.display(), "unpinned pod namespaces");
    Ok(())
}

/// Detach every mount stacked on the pin `path`, then remove the file. Missing is fine.
pub(crate) fn unpin_file(kind: NsKind, path: &Path) -> Result<(), NetnsError> {
    for _ in 0..MAX_STACKED_MOUNTS {
        match sys::detach_unmount(path) {
            Ok(true) => continue,
            Ok(false) => break,
            Err(source) => {
                return Err(NetnsError::Unmount {
                    kind,
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NetnsError::RemovePinFile {
            kind,
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Undo list of one [`pin_on_this_thread`] call; runs in reverse on drop (including while
/// unwinding from a panic) unless disarmed.
#[derive(Default)]
struct Rollback {
    pins: Vec<(NsKind, PathBuf)>,
    dir: Option<PathBuf>,
}

impl Rollback {
    fn disarm(&mut self) {
        self.pins.clear();
        self.dir = None;
    }
}

impl Drop for Rollback {
    fn drop(&mut self) {
        for (kind, path) in self.pins.drain(..).rev() {
            if let Err(err) = unpin_file(kind, &path) {
                warn!(%kind, path = %path.display(), err = %crate::ErrorChain(&err), "rollback of namespace pin failed");
            }
        }
        if let Some(dir) = self.dir.take() {
            if let Err(err) = fs::remove_dir(&dir) {
                warn!(dir = %dir.display(), %err, "rollback of namespace pin directory failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(net: bool, ipc: bool, uts: bool, hostname: Option<&str>) -> PinRequest {
        PinRequest {
            dir: PathBuf::from("/nonexistent/kinglet-netns-unit"),
            net,
            ipc,
            uts,
            hostname: hostname.map(str::to_owned),
            sysctls: Vec::new(),
            userns: None,
        }
    }

    #[test]
    fn hostname_without_uts_is_rejected_before_touching_anything() {
        let err = pin_namespaces(&req(true, false, false, Some("pod"))).unwrap_err();
        assert!(
            matches!(err, NetnsError::HostnameWithoutUts { ref hostname } if hostname == "pod")
        );
    }

    #[test]
    fn nothing_requested_pins_nothing() {
        let pinned = pin_namespaces(&req(false, false, false, None)).expect("no-op");
        assert_eq!(pinned, PinnedNamespaces::default());
        assert!(!Path::new("/nonexistent/kinglet-netns-unit").exists());
    }

    #[test]
    fn kinds_follow_pin_order() {
        assert_eq!(
            req(true, true, true, None).kinds(),
            [NsKind::Net, NsKind::Ipc, NsKind::Uts]
        );
        assert_eq!(req(false, true, false, None).kinds(), [NsKind::Ipc]);
    }

    #[test]
    fn unpin_of_missing_dir_is_ok() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("never-created");
        unpin_namespaces(&dir).expect("missing dir is fine");
    }
}
