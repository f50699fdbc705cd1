//! `kinglet check`: a self-check of the host before (or while) running the daemon, in the
//! spirit of k3s `check-config` and `podman info`. Each check reads the kernel's files under a
//! [`Host`] root (the real `/proc` and `/sys`, or a fake tree in the unit tests) and returns a
//! [`Finding`]: pass, warn or fail, with what was seen and how to fix it. Security checks
//! (who can reach Kinglet's directories, the loopback guard) are in [`security`]; the clock
//! syscall is in [`clock`].

mod clock;
pub mod security;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::config::Config;

/// How bad a finding is. Any `Fail` makes `kinglet check` exit non-zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Pass,
    Warn,
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub check: &'static str,
    pub detail: String,
    /// What to do, for warn and fail.
    pub fix: Option<String>,
}

impl Finding {
    pub fn pass(check: &'static str, detail: impl Into<String>) -> Finding {
        Finding {
            level: Level::Pass,
            check,
            detail: detail.into(),
            fix: None,
        }
    }
    pub fn warn(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            level: Level::Warn,
            check,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
    pub fn fail(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            level: Level::Fail,
            check,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.level {
            Level::Pass => "pass",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        write!(f, "{tag}  {:<16} {}", self.check, self.detail)?;
        if let Some(fix) = &self.fix {
            write!(f, "\n      fix: {fix}")?;
        }
        Ok(())
    }
}

/// Where the kernel's files are: `/` on a real host, a temporary tree in tests.
#[derive(Debug, Clone)]
pub struct Host {
    pub root: PathBuf,
}

impl Host {
    pub fn real() -> Host {
        Host { root: "/".into() }
    }
    fn read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.root.join(rel)).ok()
    }
    fn exists(&self, rel: &str) -> bool {
        self.root.join(rel).exists()
    }
}

/// Every check, in report order.
pub fn run_all(host: &Host, cfg: &Config, path_var: &str) -> Vec<Finding> {
    let mut out = vec![
        kernel(host),
        overlayfs(host),
        cgroups(host),
        seccomp(host),
        user_namespaces(host),
    ];
    if cfg.cni_conf_dir.is_none() {
        out.push(nftables(path_var));
        out.push(ip_forward(host));
    }
    out.extend(cni(cfg));
    out.push(disk(&cfg.root, cfg.image_gc_high_threshold_percent));
    out.push(clock::check());
    out.extend(security::check(host, cfg, path_var));
    out
}

/// Kernel release: fail below 4.18, warn below 5.10.
pub fn kernel(host: &Host) -> Finding {
    const C: &str = "kernel";
    let Some(rel) = host.read("proc/sys/kernel/osrelease") else {
        return Finding::fail(C, "cannot read /proc/sys/kernel/osrelease", "mount /proc");
    };
    let rel = rel.trim();
    let mut nums = rel
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    let v = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
    if v < (4, 18) {
        Finding::fail(
            C,
            format!("{rel}: older than 4.18 (overlayfs, cgroups and pidfds need newer)"),
            "boot a kernel of 5.10 or later (Debian 11+)",
        )
    } else if v < (5, 10) {
        Finding::warn(
            C,
            format!("{rel}: older than 5.10; pidfds and cgroup v2 features may be missing"),
            "boot a kernel of 5.10 or later (Debian 11+)",
        )
    } else {
        Finding::pass(C, rel)
    }
}

/// overlayfs registered in `/proc/filesystems` (container root file systems need it).
pub fn overlayfs(host: &Host) -> Finding {
    const C: &str = "overlayfs";
    let fs = host.read("proc/filesystems").unwrap_or_default();
    if fs
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"))
    {
        Finding::pass(C, "overlay file system available")
    } else {
        Finding::fail(
            C,
            "overlay is not in /proc/filesystems",
            "modprobe overlay, and add `overlay` to /etc/modules-load.d/kinglet.conf",
        )
    }
}

/// cgroup v2 (unified) or v1, and the controllers pods need.
pub fn cgroups(host: &Host) -> Finding {
    const C: &str = "cgroups";
    const NEEDED: [&str; 3] = ["cpu", "memory", "pids"];
    let fix_grub = "enable it on the kernel command line (e.g. cgroup_enable=memory in \
                    GRUB_CMDLINE_LINUX of /etc/default/grub, then update-grub and reboot)";
    if let Some(ctl) = host.read("sys/fs/cgroup/cgroup.controllers") {
        let have: Vec<&str> = ctl.split_whitespace().collect();
        let missing: Vec<&str> = NEEDED.into_iter().filter(|c| !have.contains(c)).collect();
        if missing.is_empty() {
            return Finding::pass(C, format!("v2 (unified); controllers: {}", have.join(" ")));
        }
        return Finding::fail(
            C,
            format!("v2: controller(s) {} not available", missing.join(", ")),
            fix_grub,
        );
    }
    let Some(table) = host.read("proc/cgroups") else {
        return Finding::fail(
            C,
            "no cgroup file system (neither cgroup.controllers nor /proc/cgroups)",
            "mount cgroup2 on /sys/fs/cgroup (systemd does this at boot)",
        );
    };
    // `#subsys_name hierarchy num_cgroups enabled`
    let enabled: Vec<&str> = table
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4 && f[3] == "1").then_some(f[0])
        })
        .collect();
    let missing: Vec<&str> = NEEDED
        .into_iter()
        .filter(|c| !enabled.contains(c))
        .collect();
    if !missing.is_empty() {
        return Finding::fail(
            C,
            format!("v1: controller(s) {} not enabled", missing.join(", ")),
            fix_grub,
        );
    }
    let mounted: Vec<&str> = NEEDED
        .into_iter()
        .filter(|c| !host.exists(&format!("sys/fs/cgroup/{c}")))
        .collect();
    if !mounted.is_empty() {
        return Finding::fail(
            C,
            format!("v1: controller(s) {} not mounted", mounted.join(", ")),
            "mount the v1 hierarchies under /sys/fs/cgroup (systemd does at boot)",
        );
    }
    Finding::warn(
        C,
        format!("v1 (legacy); controllers: {}", enabled.join(" ")),
        "prefer cgroup v2: systemd.unified_cgroup_hierarchy=1 on the kernel command line",
    )
}

/// The seccomp filter mode pods' RuntimeDefault profile needs.
pub fn seccomp(host: &Host) -> Finding {
    const C: &str = "seccomp";
    let status = host.read("proc/self/status").unwrap_or_default();
    let has_field = status.lines().any(|l| l.starts_with("Seccomp:"));
    let actions = host.read("proc/sys/kernel/seccomp/actions_avail");
    match (has_field, actions) {
        (true, Some(a)) if a.split_whitespace().any(|x| x == "errno") => {
            Finding::pass(C, format!("filters available ({})", a.trim()))
        }
        (true, _) => Finding::pass(C, "filters available"),
        (false, _) => Finding::fail(
            C,
            "the kernel has no seccomp (no Seccomp: in /proc/self/status)",
            "boot a kernel built with CONFIG_SECCOMP_FILTER=y (every Debian kernel is)",
        ),
    }
}

/// User namespaces: pods with `hostUsers: false` need them (others do not, though some
/// images' tools probe them); disabled is only a warning.
pub fn user_namespaces(host: &Host) -> Finding {
    const C: &str = "user namespaces";
    match host
        .read("proc/sys/user/max_user_namespaces")
        .and_then(|s| s.trim().parse::<u64>().ok())
    {
        Some(0) => Finding::warn(
            C,
            "disabled (user.max_user_namespaces = 0)",
            "sysctl -w user.max_user_namespaces=15000 (and in /etc/sysctl.d/) if pods need them",
        ),
        Some(n) => Finding::pass(C, format!("enabled (max {n})")),
        None => Finding::warn(
            C,
            "not supported by this kernel",
            "boot a kernel built with CONFIG_USER_NS=y if pods need them",
        ),
    }
}

/// `nft` on `PATH`: the built-in pod network programs NAT and hostPorts with it.
pub fn nftables(path_var: &str) -> Finding {
    const C: &str = "nftables";
    match which("nft", path_var) {
        Some(p) => Finding::pass(C, format!("{} present", p.display())),
        None => Finding::fail(
            C,
            "`nft` not found on PATH (the built-in pod network needs it)",
            "apt-get install nftables",
        ),
    }
}

/// The first executable `name` on `path_var`.
pub fn which(name: &str, path_var: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    path_var
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// IPv4 forwarding: pods' outbound traffic is routed through the host.
pub fn ip_forward(host: &Host) -> Finding {
    const C: &str = "ip_forward";
    match host
        .read("proc/sys/net/ipv4/ip_forward")
        .as_deref()
        .map(str::trim)
    {
        Some("1") => Finding::pass(C, "net.ipv4.ip_forward = 1"),
        Some(v) => Finding::warn(
            C,
            format!("net.ipv4.ip_forward = {v}: the daemon turns it on when it starts"),
            "if pods lose outbound traffic, something resets it: \
             echo net.ipv4.ip_forward=1 > /etc/sysctl.d/90-kinglet.conf",
        ),
        None => Finding::fail(
            C,
            "cannot read /proc/sys/net/ipv4/ip_forward",
            "mount /proc; an IPv4 stack is required",
        ),
    }
}

/// CNI mode: the first conflist loads and every plugin it names is in the bin dir.
pub fn cni(cfg: &Config) -> Option<Finding> {
    const C: &str = "cni";
    let dir = cfg.cni_conf_dir.clone()?;
    let loaded = kinglet_netns::Cni::load(kinglet_netns::CniConfig {
        conf_dir: dir.clone(),
        bin_dir: cfg.cni_bin_dir.clone(),
        state_dir: cfg.run_root.join("network"),
        timeout: std::time::Duration::from_secs(cfg.cni_timeout_secs),
    });
    Some(match loaded {
        Ok(None) => Finding::warn(
            C,
            format!(
                "no *.conflist in {}: the built-in network is used",
                dir.display()
            ),
            format!("put a conflist in {} or drop cni-conf-dir", dir.display()),
        ),
        Ok(Some(cni)) => match cni.ready() {
            Ok(()) => Finding::pass(
                C,
                format!(
                    "{} ({}): every plugin present",
                    cni.path().display(),
                    cni.name()
                ),
            ),
            Err(e) => Finding::fail(
                C,
                e,
                format!(
                    "apt-get install containernetworking-plugins, or set cni-bin-dir \
                     (now {})",
                    cfg.cni_bin_dir.display()
                ),
            ),
        },
        Err(e) => Finding::fail(
            C,
            kinglet_cri::chain(&e),
            "fix the conflist (JSON with name, cniVersion and plugins)",
        ),
    })
}

/// Free space on the file system of `root` (or its nearest existing parent).
pub fn disk(root: &Path, gc_high_percent: u8) -> Finding {
    const C: &str = "disk";
    let mut at = root.to_owned();
    while !at.exists() {
        match at.parent() {
            Some(p) => at = p.to_owned(),
            None => break,
        }
    }
    match nix::sys::statvfs::statvfs(&at) {
        Ok(s) => disk_verdict(
            &at,
            s.blocks_available() * s.fragment_size(),
            s.blocks() * s.fragment_size(),
            gc_high_percent,
        ),
        Err(e) => Finding::fail(
            C,
            format!("statvfs {}: {e}", at.display()),
            "check the path",
        ),
    }
}

/// The decision of [`disk`]: fail under 1 GiB free, warn under 5 GiB or at the image GC
/// threshold (images would be collected at once).
pub fn disk_verdict(at: &Path, avail: u64, total: u64, gc_high_percent: u8) -> Finding {
    const C: &str = "disk";
    const GIB: u64 = 1 << 30;
    let used_pct = (avail * 100)
        .checked_div(total)
        .map_or(100, |free| 100u64.saturating_sub(free));
    let detail = format!(
        "{}: {:.1} GiB free of {:.1} GiB ({used_pct}% used)",
        at.display(),
        avail as f64 / GIB as f64,
        total as f64 / GIB as f64
    );
    let fix = format!(
        "free space on the file system of {} (kinglet image rm, apt-get clean), or move the \
         root (--root / root in the config) to a larger file system",
        at.display()
    );
    if avail < GIB {
        Finding::fail(C, detail, fix)
    } else if avail < 5 * GIB || used_pct >= u64::from(gc_high_percent) {
        Finding::warn(
            C,
            format!("{detail}; image GC starts at {gc_high_percent}% used"),
            fix,
        )
    } else {
        Finding::pass(C, detail)
    }
}

#[cfg(test)]
mod tests;
