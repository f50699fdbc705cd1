//! Security checks of `kinglet check`: who besides root can reach Kinglet's directories (pod
//! data, Secrets, the socket, manifests that run containers as root), and whether pods can
//! reach the host's loopback services (`route_localnet` on the bridge without Kinglet's
//! `localnet_guard` chain, CVE-2020-8558).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use super::{Finding, Host};
use crate::config::Config;

/// Every security finding for `cfg`.
pub fn check(host: &Host, cfg: &Config, path_var: &str) -> Vec<Finding> {
    let mut out = vec![
        root_dir(&cfg.root),
        run_root_dir(&cfg.run_root),
        manifests_dir(&cfg.manifests),
        age_key(&cfg.age_identity_file),
    ];
    let route_localnet = host.read(&format!(
        "proc/sys/net/ipv4/conf/{}/route_localnet",
        cfg.bridge
    ));
    let listing = match (&route_localnet, super::which("nft", path_var)) {
        (Some(v), Some(nft)) if v.trim() == "1" => Some(list_table(&nft, &cfg.nft_table)),
        (Some(v), None) if v.trim() == "1" => Some(Err("`nft` not found on PATH".to_owned())),
        _ => None,
    };
    out.push(localnet_verdict(
        &cfg.bridge,
        &cfg.nft_table,
        route_localnet.as_deref(),
        listing,
    ));
    out
}

fn list_table(nft: &Path, table: &str) -> Result<String, String> {
    let out = Command::new(nft)
        .args(["list", "table", "ip", table])
        .output()
        .map_err(|e| format!("run {}: {e}", nft.display()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// The state root: pod data, writable layers, logs. Only root may enter it (0700).
pub fn root_dir(path: &Path) -> Finding {
    const C: &str = "root dir";
    let Ok(m) = std::fs::metadata(path) else {
        return Finding::pass(
            C,
            format!("{}: not created yet (0700 at start)", path.display()),
        );
    };
    let mode = m.mode() & 0o7777;
    let fix = format!("chown root:root {0} && chmod 0700 {0}", path.display());
    if m.uid() != 0 {
        return Finding::warn(
            C,
            format!("{} is owned by uid {}, not root", path.display(), m.uid()),
            fix,
        );
    }
    if mode & 0o077 != 0 {
        return Finding::warn(
            C,
            format!(
                "{} is {mode:04o}: other users can {} pod data and logs",
                path.display(),
                reach(mode)
            ),
            fix,
        );
    }
    Finding::pass(C, format!("{} {mode:04o} root", path.display()))
}

/// The run root: 0711 at most (others may only traverse to the 0660 socket), every directory
/// in it 0700.
pub fn run_root_dir(path: &Path) -> Finding {
    const C: &str = "run-root dir";
    let Ok(m) = std::fs::metadata(path) else {
        return Finding::pass(
            C,
            format!("{}: not created yet (0711 at start)", path.display()),
        );
    };
    let mode = m.mode() & 0o7777;
    let fix = format!(
        "chown root:root {0} && chmod 0711 {0} && chmod 0700 {0}/*/ && chmod 0711 {0}/pods \
         {0}/containers (the daemon also does this at start)",
        path.display()
    );
    if m.uid() != 0 {
        return Finding::warn(
            C,
            format!("{} is owned by uid {}, not root", path.display(), m.uid()),
            fix,
        );
    }
    if mode & 0o066 != 0 {
        return Finding::warn(
            C,
            format!(
                "{} is {mode:04o}: other users can {} it",
                path.display(),
                reach(mode)
            ),
            fix,
        );
    }
    let open: Vec<String> = std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let m = std::fs::symlink_metadata(e.path()).ok()?;
            // pods/ and containers/ are searchable (user namespaces), never listable.
            let name = e.file_name();
            let searchable = kinglet_runtime::perms::SEARCHABLE_DIRS
                .iter()
                .any(|d| name.to_str() == Some(d));
            let open = if searchable { 0o066 } else { 0o077 };
            (m.is_dir() && m.mode() & open != 0)
                .then(|| format!("{} ({:04o})", e.path().display(), m.mode() & 0o7777))
        })
        .collect();
    if !open.is_empty() {
        return Finding::warn(
            C,
            format!("reachable by other users: {}", open.join(", ")),
            fix,
        );
    }
    Finding::pass(C, format!("{} {mode:04o} root", path.display()))
}

/// The manifests directory: whoever can write a Pod into it runs containers as root (fail);
/// whoever can read it reads its Secrets (warn). Ancestors writable by others count too.
pub fn manifests_dir(path: &Path) -> Finding {
    const C: &str = "manifests dir";
    let fix = format!(
        "chown -R root:root {0} && chmod 0700 {0} && chmod 0600 {0}/*",
        path.display()
    );
    let Ok(m) = std::fs::metadata(path) else {
        return Finding::pass(C, format!("{}: does not exist", path.display()));
    };
    let mut entries = vec![(path.to_owned(), m)];
    for e in std::fs::read_dir(path).into_iter().flatten().flatten() {
        if let Ok(m) = std::fs::symlink_metadata(e.path()) {
            entries.push((e.path(), m));
        }
    }
    let mut writable = Vec::new();
    let mut readable = Vec::new();
    for (p, m) in &entries {
        let mode = m.mode() & 0o7777;
        if m.file_type().is_symlink() {
            continue;
        }
        if m.uid() != 0 {
            writable.push(format!("{} (owner uid {})", p.display(), m.uid()));
        } else if mode & 0o022 != 0 {
            writable.push(format!("{} ({mode:04o})", p.display()));
        } else if mode & 0o044 != 0 && p != path {
            // A listable directory shows file names only; readable files show their Secrets.
            readable.push(format!("{} ({mode:04o})", p.display()));
        }
    }
    for a in path.ancestors().skip(1) {
        if let Ok(m) = std::fs::metadata(a) {
            let sticky = m.mode() & 0o1000 != 0;
            if m.uid() != 0 || (m.mode() & 0o022 != 0 && !sticky) {
                writable.push(format!(
                    "{} ({:04o}, owner uid {}) could be replaced",
                    a.display(),
                    m.mode() & 0o7777,
                    m.uid()
                ));
            }
        }
    }
    if !writable.is_empty() {
        return Finding::fail(
            C,
            format!(
                "users other than root can change what runs as root: {}",
                writable.join(", ")
            ),
            fix,
        );
    }
    if !readable.is_empty() {
        return Finding::warn(
            C,
            format!(
                "other users can read manifests (and Secrets in them): {}",
                readable.join(", ")
            ),
            fix,
        );
    }
    Finding::pass(C, format!("{} only root's", path.display()))
}

/// The age identity that opens sealed manifests: root's and 0600/0400, or the daemon refuses it.
pub fn age_key(path: &Path) -> Finding {
    const C: &str = "age identity";
    let Ok(m) = std::fs::metadata(path) else {
        return Finding::pass(
            C,
            format!(
                "{}: none (sealed manifests need one: kinglet secret keygen)",
                path.display()
            ),
        );
    };
    match kinglet_kubelet::sealed::key_mode_problem(m.uid(), m.mode()) {
        Some(why) => Finding::fail(
            C,
            format!("{}: {why}; sealed manifests are refused", path.display()),
            format!("chown root:root {0} && chmod 0600 {0}", path.display()),
        ),
        None => Finding::pass(C, format!("{} only root's", path.display())),
    }
}

fn reach(mode: u32) -> String {
    let bits = (mode | (mode >> 3)) & 0o7;
    let mut v = Vec::new();
    if bits & 0o4 != 0 {
        v.push("read");
    }
    if bits & 0o2 != 0 {
        v.push("write");
    }
    if bits & 0o1 != 0 {
        v.push("traverse");
    }
    v.join("/")
}

/// `route_localnet=1` on the bridge lets pods reach the host's 127.0.0.1 services unless
/// Kinglet's `localnet_guard` input chain drops those packets.
pub fn localnet_verdict(
    bridge: &str,
    table: &str,
    route_localnet: Option<&str>,
    listing: Option<Result<String, String>>,
) -> Finding {
    const C: &str = "localnet guard";
    let Some(v) = route_localnet.map(str::trim) else {
        return Finding::pass(C, format!("bridge {bridge} not present"));
    };
    if v != "1" {
        return Finding::pass(C, format!("route_localnet = {v} on {bridge}"));
    }
    let fix = format!(
        "start the daemon (it installs the guard before it sets route_localnet), or \
         sysctl -w net.ipv4.conf.{bridge}.route_localnet=0"
    );
    match listing {
        Some(Ok(text)) if text.contains("chain localnet_guard") => Finding::pass(
            C,
            format!("route_localnet = 1 on {bridge}, guarded by ip {table} localnet_guard"),
        ),
        Some(Ok(_)) => Finding::fail(
            C,
            format!(
                "route_localnet = 1 on {bridge} but table ip {table} has no localnet_guard chain: \
                 pods can reach the host's 127.0.0.1 services (CVE-2020-8558)"
            ),
            fix,
        ),
        Some(Err(e)) => Finding::fail(
            C,
            format!(
                "route_localnet = 1 on {bridge} and table ip {table} cannot be listed ({e}): \
                 pods may reach the host's 127.0.0.1 services"
            ),
            fix,
        ),
        None => Finding::fail(
            C,
            format!("route_localnet = 1 on {bridge}; the guard was not checked"),
            fix,
        ),
    }
}
