//! User namespaces for pods (the kubelet's `hostUsers: false`): the CRI's `userns_options`
//! checked as containerd checks them, the pod's mappings kept in its record, and a
//! container's spec made to join the pod's user namespace with its root filesystem and bind
//! mounts idmapped.
//!
//! libcontainer joins a user namespace by path but does not make idmapped mounts, so they
//! are made here, on the host, before the container starts, under the container's `idmap/`
//! directory: the overlayfs root is mounted from idmapped copies of its layer directories
//! (overlayfs itself cannot be idmapped; its layers can), and each bind mount's source gets
//! an idmapped copy that the spec's bind mount then uses. Removing the container's
//! directories (removal, rollback, recovery) unmounts them all.

use std::path::{Path, PathBuf};

use kinglet_cri::CriError;
use kinglet_netns::{IdMap, UserNsMaps};
use kinglet_proto::v1;
use oci_spec::runtime::{
    LinuxIdMapping, LinuxIdMappingBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, Spec,
};
use serde::{Deserialize, Serialize};

use crate::store::{NsMode, PodNamespaces};

const FIELD: &str = "config.linux.security_context.namespace_options.userns_options";

/// One uid or gid mapping of a pod's user namespace, as kept in its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMapRecord {
    pub container_id: u32,
    pub host_id: u32,
    pub length: u32,
}

/// The mappings of a pod's own user namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsernsRecord {
    pub uids: Vec<IdMapRecord>,
    pub gids: Vec<IdMapRecord>,
}

impl UsernsRecord {
    pub fn maps(&self) -> UserNsMaps {
        let conv = |v: &[IdMapRecord]| {
            v.iter()
                .map(|m| IdMap {
                    container_id: m.container_id,
                    host_id: m.host_id,
                    length: m.length,
                })
                .collect()
        };
        UserNsMaps {
            uids: conv(&self.uids),
            gids: conv(&self.gids),
        }
    }

    /// The CRI view, as the pod was asked for (PodSandboxStatus).
    pub fn to_cri(&self) -> v1::UserNamespace {
        let conv = |v: &[IdMapRecord]| {
            v.iter()
                .map(|m| v1::IdMapping {
                    host_id: m.host_id,
                    container_id: m.container_id,
                    length: m.length,
                })
                .collect()
        };
        v1::UserNamespace {
            mode: v1::NamespaceMode::Pod as i32,
            uids: conv(&self.uids),
            gids: conv(&self.gids),
        }
    }
}

/// One mapping list (`uids` or `gids`): exactly one line that maps container id 0.
/// containerd takes one line only (its remapped snapshots do); id 0 must be mapped because
/// the image's files, seen through the idmapped root filesystem, mostly belong to it.
fn parse_maps(which: &str, maps: &[v1::IdMapping]) -> Result<Vec<IdMapRecord>, CriError> {
    let field = format!("{FIELD}.{which}");
    let [m] = maps else {
        return Err(CriError::invalid(
            field,
            format!(
                "exactly one mapping is supported with mode POD, got {}",
                maps.len()
            ),
        ));
    };
    if m.length == 0 {
        return Err(CriError::invalid(
            field,
            "mapping length must be at least 1",
        ));
    }
    if m.container_id != 0 {
        return Err(CriError::invalid(
            field,
            format!(
                "the mapping must start at container id 0 (got {}): the pod's root must be mapped",
                m.container_id
            ),
        ));
    }
    if u64::from(m.host_id) + u64::from(m.length) > 1 << 32 {
        return Err(CriError::invalid(
            field,
            format!(
                "host ids {}..{} go past the largest id",
                m.host_id,
                u64::from(m.host_id) + u64::from(m.length)
            ),
        ));
    }
    Ok(vec![IdMapRecord {
        container_id: m.container_id,
        host_id: m.host_id,
        length: m.length,
    }])
}

/// The user namespace a pod asks for: `None` for the host's (no options, or mode NODE).
/// `net`, `ipc` and `pid` are the pod's other namespace modes: a pod user namespace must own
/// the pod's network and IPC namespaces and cannot see the host's processes.
pub fn pod_userns(
    opts: Option<&v1::UserNamespace>,
    net: NsMode,
    ipc: NsMode,
    pid: NsMode,
) -> Result<Option<UsernsRecord>, CriError> {
    let Some(opts) = opts else {
        return Ok(None);
    };
    match v1::NamespaceMode::try_from(opts.mode) {
        Ok(v1::NamespaceMode::Node) => {
            if !opts.uids.is_empty() || !opts.gids.is_empty() {
                return Err(CriError::invalid(
                    FIELD,
                    "uids and gids mappings are only for mode POD; mode NODE uses the host's",
                ));
            }
            Ok(None)
        }
        Ok(v1::NamespaceMode::Pod) => {
            for (mode, what) in [(net, "network"), (ipc, "ipc"), (pid, "pid")] {
                if mode == NsMode::Node {
                    return Err(CriError::invalid(
                        FIELD,
                        format!(
                            "a pod user namespace cannot be used with the host's {what} \
                             namespace: use mode NODE (hostUsers) or a pod {what} namespace"
                        ),
                    ));
                }
            }
            Ok(Some(UsernsRecord {
                uids: parse_maps("uids", &opts.uids)?,
                gids: parse_maps("gids", &opts.gids)?,
            }))
        }
        _ => Err(CriError::invalid(
            format!("{FIELD}.mode"),
            format!(
                "mode {} is not supported: only NODE (the host's) or POD",
                opts.mode
            ),
        )),
    }
}

/// A container's own `userns_options`, when given, must be its pod's (a container cannot
/// leave or change the pod's user namespace).
pub fn check_container(
    config: &v1::ContainerConfig,
    pod: Option<&UsernsRecord>,
) -> Result<(), CriError> {
    let Some(opts) = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
        .and_then(|n| n.userns_options.as_ref())
    else {
        return Ok(());
    };
    let node = v1::NamespaceMode::Node as i32;
    let same = match pod {
        None => opts.mode == node && opts.uids.is_empty() && opts.gids.is_empty(),
        Some(p) => *opts == p.to_cri(),
    };
    if same {
        return Ok(());
    }
    Err(CriError::invalid(
        "config.linux.security_context.namespace_options.userns_options",
        "must be the pod sandbox's user namespace options (a container shares its pod's)",
    ))
}

/// The oldest kernel with everything a pod user namespace needs here: idmapped mounts of
/// ext4/xfs/btrfs (5.12), overlayfs on idmapped layers (5.19) and idmapped tmpfs (6.3, for
/// /dev/shm, Secrets and emptyDirs in memory).
const MIN_KERNEL: (u32, u32) = (6, 3);

/// (major, minor) of a kernel release string such as `6.18.44-fc-v857`.
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(['.', '-']);
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Whether this kernel can run pods with their own user namespace (RuntimeStatus features).
pub fn supported() -> bool {
    check_kernel().is_ok()
}

/// FailedPrecondition when the kernel is older than [`MIN_KERNEL`].
pub fn check_kernel() -> Result<(), CriError> {
    let uts = nix::sys::utsname::uname().ok();
    let release = uts
        .as_ref()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    match kernel_version(&release) {
        Some(v) if v >= MIN_KERNEL => Ok(()),
        _ => Err(CriError::FailedPrecondition {
            kind: "kernel",
            id: release,
            state: "older than 6.3".into(),
            action: "a pod with a user namespace",
            needed: "6.3 or newer (idmapped overlayfs layers and tmpfs)",
        }),
    }
}

/// Every directory above `run_root` must be searchable by others: a pod's mapped root (an
/// unprivileged host uid) reaches its namespace pins, root file system and mounts through
/// them when its containers start. FailedPrecondition naming the first that is not.
pub fn check_reachable(run_root: &Path) -> Result<(), CriError> {
    use std::os::unix::fs::PermissionsExt;
    for dir in run_root.ancestors().skip(1) {
        let Ok(m) = std::fs::metadata(dir) else {
            continue;
        };
        let mode = m.permissions().mode() & 0o7777;
        if mode & 0o001 == 0 {
            return Err(CriError::FailedPrecondition {
                kind: "directory",
                id: dir.display().to_string(),
                state: format!("mode {mode:04o}, not searchable by others"),
                action: "a pod with a user namespace (its mapped root reaches the run root)",
                needed: "searchable: chmod o+x",
            });
        }
    }
    Ok(())
}

/// Create a pod's or container's own directory: closed (0700), or with a pod user namespace
/// `rec`, given to the pod's mapped root (see [`crate::perms`]), who must reach the pins,
/// root file system and mounts in it.
pub fn own_dir(dir: &Path, rec: Option<&UsernsRecord>) -> Result<(), CriError> {
    match rec.and_then(mapped_root) {
        Some((uid, gid)) => crate::perms::open_to_mapped_root(dir, uid, gid),
        None => crate::perms::private_dir(dir),
    }
    .map_err(|e| CriError::internal(format!("create {}", dir.display()), e))
}

fn fs_is_ro(p: &Path) -> bool {
    nix::sys::statvfs::statvfs(p)
        .is_ok_and(|v| v.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
}

fn is_ro(m: &oci_spec::runtime::Mount) -> bool {
    m.options()
        .as_ref()
        .is_some_and(|o| o.iter().any(|o| o == "ro"))
}

/// The file system refused an idmapped mount (overlayfs, proc…), as opposed to a failure.
fn cannot_idmap(e: &kinglet_netns::NetnsError) -> bool {
    matches!(e, kinglet_netns::NetnsError::IdmapMount { source, .. }
        if source.raw_os_error() == Some(libc::EINVAL))
}

fn oci_maps(v: &[IdMapRecord]) -> Result<Vec<LinuxIdMapping>, CriError> {
    v.iter()
        .map(|m| {
            LinuxIdMappingBuilder::default()
                .container_id(m.container_id)
                .host_id(m.host_id)
                .size(m.length)
                .build()
                .map_err(|e| CriError::internal("build id mapping", e))
        })
        .collect()
}

fn common_ancestor(paths: &[PathBuf]) -> Option<PathBuf> {
    let mut it = paths.iter();
    let mut common = it.next()?.clone();
    for p in it {
        while !p.starts_with(&common) {
            if !common.pop() {
                return None;
            }
        }
    }
    Some(common)
}

/// The overlay layers of a container's root filesystem for a pod with a user namespace
/// pinned at `pin`, as containerd makes them: the common ancestor of `lower` (highest layer
/// first; an empty one when there is none) idmapped at `<idmap_dir>/ro` (overlayfs itself cannot be idmapped; its
/// layers can), and `upper` and `work` created owned by the pod's mapped root
/// (`root_uid`/`root_gid`), so what the pod writes is stored under its host ids. (An
/// idmapped upper layer does not work: overlayfs makes its work directory with the
/// mounter's credentials, which the mapping does not cover.) Returns the lower layers under
/// the idmapped copy. Blocking.
pub fn idmapped_layers(
    lower: &[PathBuf],
    (upper, work): (&Path, &Path),
    (root_uid, root_gid): (u32, u32),
    pin: &Path,
    idmap_dir: &Path,
) -> Result<Vec<PathBuf>, CriError> {
    for d in [upper, work] {
        std::fs::create_dir_all(d)
            .and_then(|()| std::os::unix::fs::chown(d, Some(root_uid), Some(root_gid)))
            .map_err(|e| CriError::internal(format!("create {}", d.display()), e))?;
    }
    // An image without layers: an empty one beside the upper layer (as mount_overlay makes).
    let empty = [work.with_file_name("empty-lower")];
    let lower = if lower.is_empty() {
        std::fs::create_dir_all(&empty[0])
            .map_err(|e| CriError::internal(format!("create {}", empty[0].display()), e))?;
        &empty[..]
    } else {
        lower
    };
    let Some(ro) = common_ancestor(lower) else {
        return Err(CriError::internal(
            "idmap the root filesystem's layers",
            format!("no common directory for {lower:?}"),
        ));
    };
    let ro_map = idmap_dir.join("ro");
    kinglet_netns::idmap_mount(&ro, &ro_map, pin, false).map_err(|e| {
        CriError::internal(
            "idmap the root filesystem's layers for the pod's user namespace",
            e,
        )
    })?;
    Ok(lower
        .iter()
        .map(|l| ro_map.join(l.strip_prefix(&ro).unwrap_or(l)))
        .collect())
}

/// The host uid and gid of the pod's root (container id 0, which validation guarantees).
pub fn mapped_root(rec: &UsernsRecord) -> Option<(u32, u32)> {
    Some((rec.uids.first()?.host_id, rec.gids.first()?.host_id))
}

/// Make `spec` join the pod's user namespace (with a cgroup namespace of its own, so that
/// cgroupfs can be mounted from inside it), idmap its bind mounts through it, and record the
/// mappings (its root filesystem is made of idmapped layers: [`idmapped_layers`]).
/// `idmap_dir` is the container's directory for the idmapped copies of bind mount sources.
/// Blocking (mounts): run off the async runtime.
pub fn apply(mut spec: Spec, ns: &PodNamespaces, idmap_dir: &Path) -> Result<Spec, CriError> {
    let (Some(pin), Some(rec)) = (ns.user_path.as_deref(), ns.userns.as_ref()) else {
        return Ok(spec);
    };
    let idmap_err = |e: kinglet_netns::NetnsError| {
        CriError::internal("idmap a mount for the pod's user namespace", e)
    };
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for (i, m) in mounts.iter_mut().enumerate() {
        if m.typ().as_deref() != Some("bind") {
            continue;
        }
        let Some(src) = m.source().clone() else {
            continue;
        };
        let dst: PathBuf = idmap_dir.join(i.to_string());
        let recursive = m
            .options()
            .as_ref()
            .is_some_and(|o| o.iter().any(|o| o == "rbind"));
        // A tree with a mount that cannot be idmapped (proc, ...) is mapped at its top only.
        if recursive && kinglet_netns::idmap_mount(&src, &dst, pin, true).is_ok() {
            m.set_source(Some(dst));
            continue;
        }
        match kinglet_netns::idmap_mount(&src, &dst, pin, false) {
            Ok(()) => m.set_source(Some(dst)),
            // A read-only file system that cannot be idmapped (an image volume's overlayfs)
            // is bound as it is: readable, its files shown as the overflow id.
            Err(e) if (is_ro(m) || fs_is_ro(&src)) && cannot_idmap(&e) => {
                tracing::warn!(source = %src.display(), "read-only mount source cannot be idmapped; bound without");
                m
            }
            Err(e) => return Err(idmap_err(e)),
        };
    }
    spec.set_mounts(Some(mounts));
    let mut linux = spec.linux().clone().unwrap_or_default();
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    let ns_err = |e: oci_spec::OciSpecError| CriError::internal("build namespace", e);
    namespaces.push(
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::User)
            .path(pin.to_path_buf())
            .build()
            .map_err(ns_err)?,
    );
    if !namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Cgroup)
    {
        namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Cgroup)
                .build()
                .map_err(ns_err)?,
        );
    }
    linux.set_namespaces(Some(namespaces));
    linux.set_uid_mappings(Some(oci_maps(&rec.uids)?));
    linux.set_gid_mappings(Some(oci_maps(&rec.gids)?));
    spec.set_linux(Some(linux));
    Ok(spec)
}

#[cfg(test)]
#[path = "userns_tests.rs"]
mod tests;
