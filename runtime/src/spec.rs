//! CRI `ContainerConfig` + image config + sandbox → OCI runtime spec. Pure: no syscalls except
//! reading the container's own `/etc/passwd` and `/etc/group` (never through a symlink), so it
//! is unit-tested without root.
//!
//! Rules followed (as containerd and the kubelet define them):
//! - command/args: CRI `command` replaces the image Entrypoint and drops its Cmd; CRI `args`
//!   replace the image Cmd.
//! - env: `HOSTNAME` (the sandbox's), then the image env, then CRI envs; a later key replaces
//!   an earlier one in place.
//! - user: `run_as_user` / `run_as_username`, else the image `User` (`uid`, `name`, `uid:gid`,
//!   `name:group`), resolved in the container's passwd/group files; `run_as_group` overrides the
//!   group; supplementary groups: the primary group, the user's groups in /etc/group (not
//!   under policy Strict) and `supplemental_groups` (containerd's order of rules).
//! - capabilities: containerd's default set; `ALL` in `add` = every capability the daemon
//!   holds (its bounding set), `ALL` in `drop` = none; then the named `add`s, then the named
//!   `drop`s; privileged = every capability the daemon holds and no masked paths.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use kinglet_cri::CriError;
use kinglet_image::ImageConfig;
use kinglet_proto::v1;
use oci_spec::runtime::{
    Capability, LinuxCapabilitiesBuilder, Process, ProcessBuilder, RootBuilder, Spec, SpecBuilder,
    UserBuilder,
};

use super::store::{NsMode, SandboxRecord};

mod linux;
mod mounts;
mod user;

pub use user::{read_in_root, resolve_user, Identity};

/// PATH given to containers whose image sets none (the same default as containerd's).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// containerd's (and Docker's) default capability set.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

const DEFAULT_MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const DEFAULT_READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Files the sandbox provides to each of its containers.
#[derive(Debug, Clone)]
pub struct SandboxFiles {
    pub hostname: PathBuf,
    pub hosts: PathBuf,
    pub resolv_conf: PathBuf,
}

/// Everything the spec is made from.
pub struct SpecInput<'a> {
    pub config: &'a v1::ContainerConfig,
    pub sandbox: &'a SandboxRecord,
    pub image: &'a ImageConfig,
    /// The container's mounted root filesystem.
    pub rootfs: &'a Path,
    pub files: &'a SandboxFiles,
    pub cgroups_path: &'a str,
    /// The daemon's own oom_score_adj: a container cannot be given less.
    pub min_oom_score_adj: i32,
    /// Every capability the daemon holds (its bounding set): "all" for privileged and `ALL`.
    pub host_caps: &'a [String],
    /// Pid namespace of a TARGET container, when asked for.
    pub target_pid_ns: Option<PathBuf>,
    /// The host runs the unified cgroup v2 hierarchy.
    pub cgroup_v2: bool,
    /// cgroup v1: the host's hierarchies (`/sys/fs/cgroup/<name>` directories: cpu, memory,
    /// pids, systemd...), made read-only in unprivileged containers.
    pub cgroup_v1_hierarchies: &'a [String],
}

fn spec_err(field: &str) -> impl FnOnce(oci_spec::OciSpecError) -> CriError + '_ {
    move |e| CriError::invalid(field, e.to_string())
}

/// The process arguments, by the CRI/Kubernetes override rules.
pub fn resolve_args(
    config: &v1::ContainerConfig,
    image: &ImageConfig,
) -> Result<Vec<String>, CriError> {
    let args = if !config.command.is_empty() {
        config.command.iter().chain(&config.args).cloned().collect()
    } else if !config.args.is_empty() {
        image
            .entrypoint
            .iter()
            .chain(&config.args)
            .cloned()
            .collect()
    } else {
        image
            .entrypoint
            .iter()
            .chain(&image.cmd)
            .cloned()
            .collect::<Vec<_>>()
    };
    if args.is_empty() {
        return Err(CriError::invalid(
            "config.command",
            "no command given and the image specifies neither Entrypoint nor Cmd",
        ));
    }
    Ok(args)
}

/// `HOSTNAME` (the sandbox's hostname, as containerd and CRI-O set it), then the image env,
/// then CRI envs, later keys replacing earlier ones in place; PATH defaulted.
pub fn merge_env(hostname: &str, image_env: &[String], cri: &[v1::KeyValue]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut set = |kv: String| {
        let key = kv.split('=').next().unwrap_or("").to_owned();
        match out
            .iter_mut()
            .find(|e| e.split('=').next() == Some(key.as_str()))
        {
            Some(slot) => *slot = kv,
            None => out.push(kv),
        }
    };
    set(format!("HOSTNAME={hostname}"));
    for e in image_env {
        set(e.clone());
    }
    for kv in cri {
        set(format!("{}={}", kv.key, String::from_utf8_lossy(&kv.value)));
    }
    if !out.iter().any(|e| e.starts_with("PATH=")) {
        out.insert(0, DEFAULT_PATH.to_owned());
    }
    out
}

fn cap_name(c: &str) -> String {
    let up = c.to_ascii_uppercase();
    if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

/// oci-spec parses capability names without the `CAP_` prefix.
fn parse_cap(name: &str) -> Result<Capability, <Capability as FromStr>::Err> {
    Capability::from_str(name.strip_prefix("CAP_").unwrap_or(name))
}

/// Every capability oci-spec knows about, in the kernel's numbering (index = `CAP_*` value).
pub fn all_caps() -> Vec<String> {
    CAP_NAMES.iter().map(|c| format!("CAP_{c}")).collect()
}

/// The capabilities whose bits are set in a `/proc/<pid>/status` capability mask.
pub fn caps_from_mask(mask: u64) -> Vec<String> {
    CAP_NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1u64 << i) != 0)
        .map(|(_, c)| format!("CAP_{c}"))
        .collect()
}

/// The `CapBnd:` mask of a `/proc/<pid>/status` text.
pub fn bounding_set_from_status(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

const CAP_NAMES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The effective capability names after defaults, add and drop.
pub fn resolve_caps(
    sc: Option<&v1::LinuxContainerSecurityContext>,
    host_caps: &[String],
) -> Result<Vec<String>, CriError> {
    if sc.is_some_and(|s| s.privileged) {
        return Ok(host_caps.to_vec());
    }
    let mut caps: Vec<String> = DEFAULT_CAPS.iter().map(|s| s.to_string()).collect();
    let Some(c) = sc.and_then(|s| s.capabilities.as_ref()) else {
        return Ok(caps);
    };
    // As containerd: `ALL` in add starts from every capability, `ALL` in drop from none; then
    // the named ones are added, then the named ones dropped (so `drop: [ALL], add: [X]` = X).
    let all = |l: &[String]| l.iter().any(|x| x.eq_ignore_ascii_case("ALL"));
    if all(&c.add_capabilities) {
        caps = host_caps.to_vec();
    }
    if all(&c.drop_capabilities) {
        caps.clear();
    }
    let named = |l: &[String], field: &'static str| -> Result<Vec<String>, CriError> {
        l.iter()
            .filter(|x| !x.eq_ignore_ascii_case("ALL"))
            .map(|x| {
                let n = cap_name(x);
                parse_cap(&n)
                    .map(|_| n)
                    .map_err(|_| CriError::invalid(field, format!("unknown capability {x:?}")))
            })
            .collect()
    };
    for n in named(
        &c.add_capabilities,
        "linux.security_context.capabilities.add_capabilities",
    )? {
        if !caps.contains(&n) {
            caps.push(n);
        }
    }
    for n in named(
        &c.drop_capabilities,
        "linux.security_context.capabilities.drop_capabilities",
    )? {
        caps.retain(|c| *c != n);
    }
    Ok(caps)
}

/// The container's process: arguments, environment, working directory, identity,
/// capabilities, terminal, oom_score_adj and no_new_privs. Returns the resolved capability
/// names too (the seccomp profile depends on them).
fn process(
    input: &SpecInput<'_>,
    sc: Option<&v1::LinuxContainerSecurityContext>,
) -> Result<(Process, Vec<String>), CriError> {
    let cfg = input.config;
    let args = resolve_args(cfg, input.image)?;
    let env = merge_env(&input.sandbox.hostname, &input.image.env, &cfg.envs);
    let cwd = if !cfg.working_dir.is_empty() {
        cfg.working_dir.clone()
    } else if !input.image.working_dir.is_empty() {
        input.image.working_dir.clone()
    } else {
        "/".to_owned()
    };
    if !cwd.starts_with('/') {
        return Err(CriError::invalid(
            "config.working_dir",
            format!("{cwd:?} is not an absolute path"),
        ));
    }
    let id = resolve_user(input.rootfs, sc, &input.image.user)?;
    let caps = resolve_caps(sc, input.host_caps)?;
    let capset: HashSet<Capability> = caps.iter().filter_map(|c| parse_cap(c).ok()).collect();
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(capset.clone())
        .effective(capset.clone())
        .permitted(capset)
        // oci-spec's defaults fill these; containerd leaves them empty (and a non-empty
        // inheritable set outside the permitted one makes capset fail).
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()
        .map_err(spec_err("capabilities"))?;
    let user = UserBuilder::default()
        .uid(id.uid)
        .gid(id.gid)
        .additional_gids(id.additional_gids.clone())
        .build()
        .map_err(spec_err("user"))?;
    let oom = cfg
        .linux
        .as_ref()
        .and_then(|l| l.resources.as_ref())
        .map(|r| r.oom_score_adj as i32)
        .unwrap_or(0)
        .max(input.min_oom_score_adj);
    let mut process = ProcessBuilder::default()
        .terminal(cfg.tty)
        .args(args)
        .env(env)
        .cwd(cwd)
        .user(user)
        .capabilities(capabilities)
        .oom_score_adj(oom)
        .build()
        .map_err(spec_err("process"))?;
    // `true` or absent, never `false`: libcontainer reads an explicit `false` as "set", and
    // then loads seccomp after dropping privileges, which fails for non-root users without
    // no_new_privs. oci-spec's builder defaults to `true`, so "off" must be cleared here
    // (else a setuid binary never gains its owner's uid: allowPrivilegeEscalation).
    process.set_no_new_privileges(sc.is_some_and(|s| s.no_new_privs).then_some(true));
    Ok((process, caps))
}

/// Build the OCI spec of one container.
pub fn build_spec(input: &SpecInput<'_>) -> Result<Spec, CriError> {
    let cfg = input.config;
    let sc = cfg.linux.as_ref().and_then(|l| l.security_context.as_ref());
    let privileged = sc.is_some_and(|s| s.privileged);
    let ro_root = sc.is_some_and(|s| s.readonly_rootfs);
    let pid_mode = sc
        .and_then(|s| s.namespace_options.as_ref())
        .map(|n| NsMode::from_cri(n.pid))
        .unwrap_or(input.sandbox.namespaces.pid);

    let (process, caps) = process(input, sc)?;
    let mounts = mounts::all(input, privileged, ro_root, pid_mode)?;
    let linux = linux::build(input, sc, pid_mode, &caps)?;
    let root = RootBuilder::default()
        .path(input.rootfs)
        .readonly(ro_root)
        .build()
        .map_err(spec_err("root"))?;
    let annotations: std::collections::HashMap<String, String> = cfg
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut spec = SpecBuilder::default()
        .version("1.0.2")
        .root(root)
        .process(process)
        .mounts(mounts)
        .linux(linux)
        .annotations(annotations)
        .build()
        .map_err(spec_err("spec"))?;
    // A container joins its pod's UTS namespace, or stays in the host's (hostNetwork): it never
    // sets a hostname of its own. (The builder's default, "youki", would make libcontainer
    // refuse every container without a UTS namespace of its own.)
    spec.set_hostname(None);
    Ok(spec)
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
