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

use std::collections::{BTreeSet, HashSet};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use kinglet_cri::CriError;
use kinglet_image::ImageConfig;
use kinglet_proto::v1;
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder,
    LinuxDeviceType, LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxResourcesBuilder, Mount, MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder,
    UserBuilder,
};

use super::store::{NsMode, SandboxRecord};

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

/// A resolved process identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub username: Option<String>,
}

/// One parsed line of /etc/passwd or /etc/group.
struct Entry {
    name: String,
    id: u32,
    gid_or_members: String,
}

fn parse_db(text: &str) -> Vec<Entry> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(Entry {
                name: f[0].to_owned(),
                id: f[2].parse().ok()?,
                // passwd: the primary gid; group: the member list.
                gid_or_members: f[3].to_owned(),
            })
        })
        .collect()
}

/// Read `rel` below `rootfs` refusing symlinks in any component (they could point anywhere on
/// the host). Missing file → empty.
pub fn read_in_root(rootfs: &Path, rel: &str) -> String {
    let mut p = rootfs.to_path_buf();
    for c in Path::new(rel).components() {
        let Component::Normal(c) = c else {
            return String::new();
        };
        p.push(c);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => return String::new(),
            Ok(_) => {}
            Err(_) => return String::new(),
        }
    }
    std::fs::read_to_string(p).unwrap_or_default()
}

/// Resolve the container's identity.
pub fn resolve_user(
    rootfs: &Path,
    sc: Option<&v1::LinuxContainerSecurityContext>,
    image_user: &str,
) -> Result<Identity, CriError> {
    // As containerd: a group without a user is refused (the kubelet always names the user).
    if let Some(s) = sc.filter(|s| s.run_as_group.is_some()) {
        if s.run_as_user.is_none() && s.run_as_username.is_empty() {
            return Err(CriError::invalid(
                "linux.security_context.run_as_group",
                "is set without run_as_user or run_as_username: set one of them too",
            ));
        }
    }
    let passwd = parse_db(&read_in_root(rootfs, "etc/passwd"));
    let groups = parse_db(&read_in_root(rootfs, "etc/group"));
    let lookup_user =
        |spec: &str, field: &str| -> Result<(u32, Option<u32>, Option<String>), CriError> {
            if let Ok(uid) = spec.parse::<u32>() {
                let e = passwd.iter().find(|e| e.id == uid);
                return Ok((
                    uid,
                    e.and_then(|e| e.gid_or_members.parse().ok()),
                    e.map(|e| e.name.clone()),
                ));
            }
            match passwd.iter().find(|e| e.name == spec) {
                Some(e) => Ok((e.id, e.gid_or_members.parse().ok(), Some(e.name.clone()))),
                None => Err(CriError::invalid(
                    field,
                    format!("user {spec:?} not found in the container's /etc/passwd"),
                )),
            }
        };
    let lookup_group = |spec: &str, field: &str| -> Result<u32, CriError> {
        if let Ok(gid) = spec.parse::<u32>() {
            return Ok(gid);
        }
        groups
            .iter()
            .find(|g| g.name == spec)
            .map(|g| g.id)
            .ok_or_else(|| {
                CriError::invalid(
                    field,
                    format!("group {spec:?} not found in the container's /etc/group"),
                )
            })
    };

    let (uid, mut gid, username) = if let Some(u) = sc.and_then(|s| s.run_as_user.as_ref()) {
        let uid = u32::try_from(u.value)
            .map_err(|_| CriError::invalid("linux.security_context.run_as_user", "out of range"))?;
        let (uid, gid, name) = lookup_user(&uid.to_string(), "linux.security_context.run_as_user")?;
        (uid, gid, name)
    } else if let Some(name) = sc
        .map(|s| s.run_as_username.as_str())
        .filter(|n| !n.is_empty())
    {
        lookup_user(name, "linux.security_context.run_as_username")?
    } else if !image_user.is_empty() {
        let (u, g) = match image_user.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (image_user, None),
        };
        let (uid, gid, name) = lookup_user(u, "image config User")?;
        let gid = match g {
            Some(g) => Some(lookup_group(g, "image config User")?),
            None => gid,
        };
        (uid, gid, name)
    } else {
        (0, Some(0), Some("root".to_owned()))
    };
    if let Some(g) = sc.and_then(|s| s.run_as_group.as_ref()) {
        gid = Some(u32::try_from(g.value).map_err(|_| {
            CriError::invalid("linux.security_context.run_as_group", "out of range")
        })?);
    }
    let gid = gid.unwrap_or(0);
    let mut extra: BTreeSet<u32> = BTreeSet::new();
    // SupplementalGroupsPolicy Strict: only the requested groups, none from the image.
    let strict = sc.is_some_and(|s| {
        s.supplemental_groups_policy == v1::SupplementalGroupsPolicy::Strict as i32
    });
    if let Some(name) = username.as_ref().filter(|_| !strict) {
        for g in &groups {
            if g.gid_or_members.split(',').any(|m| m == name) && g.id != gid {
                extra.insert(g.id);
            }
        }
    }
    for g in sc.map(|s| s.supplemental_groups.as_slice()).unwrap_or(&[]) {
        let g = u32::try_from(*g).map_err(|_| {
            CriError::invalid("linux.security_context.supplemental_groups", "out of range")
        })?;
        extra.insert(g);
    }
    // containerd's ensureAdditionalGids: the primary group is always among the supplementary
    // ones (Kubernetes shows `groups=` with runAsGroup in it), under either policy.
    extra.insert(gid);
    Ok(Identity {
        uid,
        gid,
        additional_gids: extra.into_iter().collect(),
        username,
    })
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

fn mount(dest: &str, typ: &str, source: &str, opts: &[&str]) -> Result<Mount, CriError> {
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

/// Build the OCI spec of one container.
pub fn build_spec(input: &SpecInput<'_>) -> Result<Spec, CriError> {
    let cfg = input.config;
    let linux_cfg = cfg.linux.as_ref();
    let sc = linux_cfg.and_then(|l| l.security_context.as_ref());
    let privileged = sc.is_some_and(|s| s.privileged);
    let ns = &input.sandbox.namespaces;
    let pid_mode = sc
        .and_then(|s| s.namespace_options.as_ref())
        .map(|n| NsMode::from_cri(n.pid))
        .unwrap_or(ns.pid);

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
    let resources = linux_cfg.and_then(|l| l.resources.as_ref());
    let oom = resources
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

    // Mounts: the runtime's defaults, then the sandbox files, then the client's (which win).
    let cri_dests: HashSet<&str> = cfg
        .mounts
        .iter()
        .map(|m| m.container_path.as_str())
        .collect();
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
            &[
                "nosuid",
                "noexec",
                "nodev",
                if privileged { "rw" } else { "ro" },
            ],
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
            &[
                "nosuid",
                "noexec",
                "nodev",
                "relatime",
                if privileged { "rw" } else { "ro" },
            ],
        )?);
    }
    if ns.ipc != NsMode::Node {
        mounts.push(mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?);
    }
    let shm_source = input
        .sandbox
        .shm
        .clone()
        .unwrap_or_else(|| PathBuf::from("/dev/shm"));
    let rw = |ro: bool| if ro { "ro" } else { "rw" };
    let ro_root = sc.is_some_and(|s| s.readonly_rootfs);
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
    let mut cri_mounts: Vec<&v1::Mount> = cfg.mounts.iter().collect();
    // Parents before children, so a mount is never hidden by one over its parent.
    cri_mounts.sort_by_key(|m| Path::new(&m.container_path).components().count());
    for (i, m) in cri_mounts.iter().enumerate() {
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
        mounts.push(mount(&m.container_path, "bind", &m.host_path, &opts)?);
    }

    // Namespaces.
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
        NsMode::Pod => match &ns.pid_path {
            Some(p) => add_ns(LinuxNamespaceType::Pid, Some(p))?,
            None => add_ns(LinuxNamespaceType::Pid, None)?,
        },
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

    // Resources.
    let mut rb = LinuxResourcesBuilder::default();
    let mut devices = vec![LinuxDeviceCgroupBuilder::default()
        .allow(privileged)
        .access("rwm")
        .build()
        .map_err(spec_err("devices"))?];
    if !privileged {
        for (typ, major, minor) in [
            (LinuxDeviceType::C, Some(1), Some(3)),
            (LinuxDeviceType::C, Some(1), Some(5)),
            (LinuxDeviceType::C, Some(1), Some(7)),
            (LinuxDeviceType::C, Some(1), Some(8)),
            (LinuxDeviceType::C, Some(1), Some(9)),
            (LinuxDeviceType::C, Some(5), Some(0)),
            (LinuxDeviceType::C, Some(5), Some(1)),
            (LinuxDeviceType::C, Some(5), Some(2)),
            (LinuxDeviceType::C, Some(136), None),
        ] {
            let mut b = LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(typ)
                .access("rwm");
            if let Some(m) = major {
                b = b.major(m);
            }
            if let Some(m) = minor {
                b = b.minor(m);
            }
            devices.push(b.build().map_err(spec_err("devices"))?);
        }
    }
    rb = rb.devices(devices);
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
    // As containerd: a bidirectional mount needs the container's mount namespace to stay a
    // peer of the host's (rshared); else libcontainer's default, recursive slave, which a
    // host-to-container mount needs (libcontainer spells these without the `r`).
    let bidirectional = v1::MountPropagation::PropagationBidirectional as i32;
    let rootfs_propagation = cfg
        .mounts
        .iter()
        .any(|m| m.propagation == bidirectional)
        .then_some("shared");
    let mut lb = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(PathBuf::from(input.cgroups_path))
        .resources(rb.build().map_err(spec_err("linux.resources"))?);
    if !privileged {
        let masked: Vec<String> = match sc.map(|s| &s.masked_paths).filter(|m| !m.is_empty()) {
            Some(m) => m.clone(),
            None => DEFAULT_MASKED.iter().map(|s| s.to_string()).collect(),
        };
        let readonly: Vec<String> = match sc.map(|s| &s.readonly_paths).filter(|m| !m.is_empty()) {
            Some(m) => m.clone(),
            None => DEFAULT_READONLY.iter().map(|s| s.to_string()).collect(),
        };
        lb = lb.masked_paths(masked).readonly_paths(readonly);
    }
    if let Some(filter) = super::seccomp::for_container(sc, &caps)? {
        lb = lb.seccomp(filter);
    }
    if let Some(p) = rootfs_propagation {
        lb = lb.rootfs_propagation(p);
    }
    let linux = lb.build().map_err(spec_err("linux"))?;

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
