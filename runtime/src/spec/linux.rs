//! The `linux` section of the spec: namespaces (joined from the sandbox, or new), the device
//! cgroup and resources, masked and read-only paths, seccomp and rootfs propagation.

use std::path::{Path, PathBuf};

use kinglet_cri::CriError;
use kinglet_proto::v1;
use oci_spec::runtime::{
    Linux, LinuxBuilder, LinuxCpuBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder,
    LinuxDeviceType, LinuxMemoryBuilder, LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxResources, LinuxResourcesBuilder,
};

use super::{spec_err, SpecInput, DEFAULT_MASKED, DEFAULT_READONLY};
use crate::store::NsMode;

/// The `linux` section of one container's spec. `caps` are its resolved capabilities (the
/// seccomp profile depends on them).
pub(super) fn build(
    input: &SpecInput<'_>,
    sc: Option<&v1::LinuxContainerSecurityContext>,
    pid_mode: NsMode,
    caps: &[String],
) -> Result<Linux, CriError> {
    let privileged = sc.is_some_and(|s| s.privileged);
    let resources = input
        .config
        .linux
        .as_ref()
        .and_then(|l| l.resources.as_ref());
    // As containerd: a bidirectional mount needs the container's mount namespace to stay a
    // peer of the host's (rshared); else libcontainer's default, recursive slave, which a
    // host-to-container mount needs (libcontainer spells these without the `r`).
    let bidirectional = v1::MountPropagation::PropagationBidirectional as i32;
    let rootfs_propagation = input
        .config
        .mounts
        .iter()
        .any(|m| m.propagation == bidirectional)
        .then_some("shared");
    let mut lb = LinuxBuilder::default()
        .namespaces(namespaces(input, pid_mode)?)
        .cgroups_path(PathBuf::from(input.cgroups_path))
        .resources(linux_resources(privileged, resources)?);
    if !privileged {
        let masked: Vec<String> = match sc.map(|s| &s.masked_paths).filter(|m| !m.is_empty()) {
            Some(m) => m.clone(),
            None => DEFAULT_MASKED.iter().map(|s| s.to_string()).collect(),
        };
        let readonly: Vec<String> = match sc.map(|s| &s.readonly_paths).filter(|m| !m.is_empty()) {
            Some(m) => m.clone(),
            None => DEFAULT_READONLY.iter().map(|s| s.to_string()).collect(),
        };
        let mut readonly = readonly;
        readonly.extend(cgroup_v1_readonly(input, pid_mode));
        lb = lb.masked_paths(masked).readonly_paths(readonly);
    } else {
        // As containerd: nothing masked or read-only (the builder's defaults would keep
        // /proc/sys read-only, and `sysctl -w` in a privileged init container would fail).
        lb = lb.masked_paths(Vec::new()).readonly_paths(Vec::new());
    }
    if let Some(filter) = crate::seccomp::for_container(sc, caps)? {
        lb = lb.seccomp(filter);
    }
    if let Some(p) = rootfs_propagation {
        lb = lb.rootfs_propagation(p);
    }
    lb.build().map_err(spec_err("linux"))
}

/// cgroup v1: libcontainer mounts each hierarchy under /sys/fs/cgroup read-write whatever the
/// mount's options say, so an unprivileged container could make cgroups, move processes or
/// raise its own limits. As containerd's read-only cgroup mount: the tmpfs and every
/// hierarchy are read-only paths (bound onto themselves and remounted read-only; a missing
/// one is skipped). Nothing when the container gets no /sys/fs/cgroup or the host is v2
/// (there the cgroup2 mount's `ro` is honoured).
fn cgroup_v1_readonly(input: &SpecInput<'_>, pid_mode: NsMode) -> Vec<String> {
    if input.cgroup_v2 || pid_mode != NsMode::Container {
        return Vec::new();
    }
    std::iter::once("/sys/fs/cgroup".to_owned())
        .chain(
            input
                .cgroup_v1_hierarchies
                .iter()
                .filter(|h| !h.is_empty() && !h.contains('/') && !h.starts_with('.'))
                .map(|h| format!("/sys/fs/cgroup/{h}")),
        )
        .collect()
}

/// A new mount namespace; the PID namespace by `pid_mode`; the sandbox's network, IPC and UTS
/// namespaces when it has them.
fn namespaces(input: &SpecInput<'_>, pid_mode: NsMode) -> Result<Vec<LinuxNamespace>, CriError> {
    let ns = &input.sandbox.namespaces;
    let mut namespaces = Vec::new();
    let mut add_ns = |typ: LinuxNamespaceType, path: Option<&Path>| -> Result<(), CriError> {
        let mut b = LinuxNamespaceBuilder::default().typ(typ);
        if let Some(p) = path {
            b = b.path(p);
        }
        namespaces.push(b.build().map_err(spec_err("namespaces"))?);
        Ok(())
    };
    add_ns(LinuxNamespaceType::Mount, None)?;
    match pid_mode {
        NsMode::Node => {}
        NsMode::Pod => add_ns(LinuxNamespaceType::Pid, ns.pid_path.as_deref())?,
        NsMode::Container => add_ns(LinuxNamespaceType::Pid, None)?,
        NsMode::Target => match &input.target_pid_ns {
            Some(p) => add_ns(LinuxNamespaceType::Pid, Some(p))?,
            None => {
                return Err(CriError::invalid(
                    "linux.security_context.namespace_options.target_id",
                    "target container is not running",
                ))
            }
        },
    }
    if let Some(p) = &ns.net_path {
        add_ns(LinuxNamespaceType::Network, Some(p))?;
    }
    if let Some(p) = &ns.ipc_path {
        add_ns(LinuxNamespaceType::Ipc, Some(p))?;
    }
    if let Some(p) = &ns.uts_path {
        add_ns(LinuxNamespaceType::Uts, Some(p))?;
    }
    Ok(namespaces)
}

/// The device cgroup: everything for privileged containers, else deny all but the standard
/// character devices (null, zero, full, random, urandom, tty, console, ptmx, pts).
fn devices(privileged: bool) -> Result<Vec<LinuxDeviceCgroup>, CriError> {
    let mut devices = vec![LinuxDeviceCgroupBuilder::default()
        .allow(privileged)
        .access("rwm")
        .build()
        .map_err(spec_err("devices"))?];
    if privileged {
        return Ok(devices);
    }
    for (major, minor) in [
        (1, Some(3)),
        (1, Some(5)),
        (1, Some(7)),
        (1, Some(8)),
        (1, Some(9)),
        (5, Some(0)),
        (5, Some(1)),
        (5, Some(2)),
        (136, None),
    ] {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::C)
            .access("rwm")
            .major(major);
        if let Some(m) = minor {
            b = b.minor(m);
        }
        devices.push(b.build().map_err(spec_err("devices"))?);
    }
    Ok(devices)
}

/// Devices plus the CRI memory limit and CPU shares, quota, period and cpusets.
fn linux_resources(
    privileged: bool,
    resources: Option<&v1::LinuxContainerResources>,
) -> Result<LinuxResources, CriError> {
    let mut rb = LinuxResourcesBuilder::default().devices(devices(privileged)?);
    if let Some(r) = resources {
        if r.memory_limit_in_bytes > 0 {
            rb = rb.memory(
                LinuxMemoryBuilder::default()
                    .limit(r.memory_limit_in_bytes)
                    .build()
                    .map_err(spec_err("linux.resources.memory_limit_in_bytes"))?,
            );
        }
        let mut cpu = LinuxCpuBuilder::default();
        let mut any_cpu = false;
        if r.cpu_shares > 0 {
            cpu = cpu.shares(r.cpu_shares as u64);
            any_cpu = true;
        }
        if r.cpu_quota > 0 {
            cpu = cpu.quota(r.cpu_quota);
            any_cpu = true;
        }
        if r.cpu_period > 0 {
            cpu = cpu.period(r.cpu_period as u64);
            any_cpu = true;
        }
        if !r.cpuset_cpus.is_empty() {
            cpu = cpu.cpus(r.cpuset_cpus.clone());
            any_cpu = true;
        }
        if !r.cpuset_mems.is_empty() {
            cpu = cpu.mems(r.cpuset_mems.clone());
            any_cpu = true;
        }
        if any_cpu {
            rb = rb.cpu(cpu.build().map_err(spec_err("linux.resources.cpu"))?);
        }
    }
    rb.build().map_err(spec_err("linux.resources"))
}
