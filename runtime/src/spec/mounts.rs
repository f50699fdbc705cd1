//! The container's mounts: the runtime's own (proc, dev, sys, cgroup, mqueue), the sandbox's
//! files (shm, hostname, hosts, resolv.conf) unless the client mounts those paths itself, then
//! the client's CRI mounts, parents before children.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use kinglet_cri::CriError;
use kinglet_proto::v1;
use oci_spec::runtime::{Mount, MountBuilder};

use super::{spec_err, SpecInput};
use crate::store::NsMode;

pub(super) fn mount(dest: &str, typ: &str, source: &str, opts: &[&str]) -> Result<Mount, CriError> {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(spec_err("mounts"))
}

fn propagation(p: i32) -> &'static str {
    match p {
        1 => "rslave",
        2 => "rshared",
        _ => "rprivate",
    }
}

fn rw(ro: bool) -> &'static str {
    if ro {
        "ro"
    } else {
        "rw"
    }
}

/// Every mount of the container, in order: the runtime's defaults, then the sandbox files,
/// then the client's (which win).
pub(super) fn all(
    input: &SpecInput<'_>,
    privileged: bool,
    ro_root: bool,
    pid_mode: NsMode,
) -> Result<Vec<Mount>, CriError> {
    let mut mounts = runtime_defaults(input, privileged, pid_mode)?;
    mounts.extend(sandbox_files(input, ro_root)?);
    mounts.extend(cri_mounts(&input.config.mounts)?);
    Ok(mounts)
}

/// proc, dev, devpts, sys, the cgroup file system and mqueue.
fn runtime_defaults(
    input: &SpecInput<'_>,
    privileged: bool,
    pid_mode: NsMode,
) -> Result<Vec<Mount>, CriError> {
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", rw(!privileged)],
        )?,
    ];
    // cgroup v1 with a joined (pod-wide) PID namespace: libcontainer resolves the container's
    // cgroups through a pid that only exists inside that namespace and fails, so such
    // containers get no /sys/fs/cgroup (v2 hosts and own-namespace containers do).
    if input.cgroup_v2 || pid_mode == NsMode::Container {
        mounts.push(mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", rw(!privileged)],
        )?);
    }
    if input.sandbox.namespaces.ipc != NsMode::Node {
        mounts.push(mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?);
    }
    Ok(mounts)
}

/// /dev/shm and the sandbox's hostname, hosts and resolv.conf, each unless a CRI mount has
/// that destination.
fn sandbox_files(input: &SpecInput<'_>, ro_root: bool) -> Result<Vec<Mount>, CriError> {
    let cri_dests: HashSet<&str> = input
        .config
        .mounts
        .iter()
        .map(|m| m.container_path.as_str())
        .collect();
    let shm_source = input
        .sandbox
        .shm
        .clone()
        .unwrap_or_else(|| PathBuf::from("/dev/shm"));
    let defaults: [(&str, &Path, &[&str]); 4] = [
        (
            "/dev/shm",
            &shm_source,
            &["rbind", "nosuid", "nodev", "noexec"],
        ),
        (
            "/etc/hostname",
            &input.files.hostname,
            &["rbind", "rprivate"],
        ),
        ("/etc/hosts", &input.files.hosts, &["rbind", "rprivate"]),
        (
            "/etc/resolv.conf",
            &input.files.resolv_conf,
            &["rbind", "rprivate"],
        ),
    ];
    let mut mounts = Vec::new();
    for (dest, src, opts) in defaults {
        if cri_dests.contains(dest) {
            continue;
        }
        let mut o: Vec<&str> = opts.to_vec();
        if dest != "/dev/shm" {
            o.push(rw(ro_root));
        }
        mounts.push(mount(dest, "bind", &src.to_string_lossy(), &o)?);
    }
    Ok(mounts)
}

/// The client's bind mounts, checked, parents before children (so a mount is never hidden by
/// one over its parent).
fn cri_mounts(mounts: &[v1::Mount]) -> Result<Vec<Mount>, CriError> {
    let mut sorted: Vec<&v1::Mount> = mounts.iter().collect();
    sorted.sort_by_key(|m| Path::new(&m.container_path).components().count());
    let mut out = Vec::with_capacity(sorted.len());
    for (i, m) in sorted.iter().enumerate() {
        let field = format!("config.mounts[{i}]");
        if !m.container_path.starts_with('/') {
            return Err(CriError::invalid(
                format!("{field}.container_path"),
                format!("{:?} is not absolute", m.container_path),
            ));
        }
        if !m.host_path.starts_with('/') {
            return Err(CriError::invalid(
                format!("{field}.host_path"),
                format!("{:?} is not absolute", m.host_path),
            ));
        }
        let mut opts = vec!["rbind", propagation(m.propagation), rw(m.readonly)];
        if m.recursive_read_only {
            // As containerd: read-only all the way down (mount_setattr AT_RECURSIVE), which
            // only makes sense for a read-only mount that receives no new submounts.
            if !m.readonly {
                return Err(CriError::invalid(
                    format!("{field}.recursive_read_only"),
                    "needs readonly: true",
                ));
            }
            if m.propagation != v1::MountPropagation::PropagationPrivate as i32 {
                return Err(CriError::invalid(
                    format!("{field}.recursive_read_only"),
                    "needs propagation PROPAGATION_PRIVATE",
                ));
            }
            opts.push("rro");
        }
        out.push(mount(&m.container_path, "bind", &m.host_path, &opts)?);
    }
    Ok(out)
}
