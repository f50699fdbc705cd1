//! `kinglet reset`: remove every trace of one Kinglet installation (the paths and network
//! names of its config and flags), with the daemon stopped — like `kubeadm reset`, it refuses
//! while the daemon answers on its socket and says how to stop it, so that a daemon under
//! `Restart=always` does not recreate what is being removed.
//!
//! In order: kill the shims and pod inits whose command lines point into the run root; kill
//! each container (its init, validated by start time, then everything left in its cgroups,
//! which are then removed); unmount everything under the run root and the root (deepest
//! first); delete the bridge and the nftables table; delete the socket, the run root and the
//! root (state, images, logs; and the main job's `/var/log/kinglet.log` for the default
//! root). Nothing is deleted while a mount remains under those
//! directories (a bind-mounted host directory must never be emptied). `/etc/kinglet` (the
//! admin's config and manifests) is kept. Each step prints what it removed.

mod cgroups;

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::config::Config;

/// What went wrong; the message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error(
        "the daemon is running on {0}: stop it first (`systemctl stop kinglet`, and \
         `systemctl disable kinglet` to keep it stopped), then run kinglet reset again"
    )]
    DaemonRunning(PathBuf),
    #[error(
        "a kinglet daemon for {run_root} is still running (pid {pid}): stop it first \
         (`systemctl stop kinglet` or `kill {pid}`)"
    )]
    DaemonProcess { run_root: PathBuf, pid: i32 },
    #[error("refusing to remove {0}: not a Kinglet directory (too close to /)")]
    UnsafePath(PathBuf),
    #[error(
        "mounts remain under {dir} ({mounts}); nothing was deleted there: unmount them \
         (umount -l) and run kinglet reset again"
    )]
    MountsRemain { dir: PathBuf, mounts: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// Remove everything of the installation `cfg` describes; prints one line per removed thing
/// through `say`.
pub async fn reset(cfg: &Config, mut say: impl FnMut(String)) -> Result<(), ResetError> {
    for p in [&cfg.root, &cfg.run_root] {
        if !safe_to_remove(p) {
            return Err(ResetError::UnsafePath(p.clone()));
        }
    }
    if crate::client::connect(&cfg.socket).await.is_ok() {
        return Err(ResetError::DaemonRunning(cfg.socket.clone()));
    }
    let procs = helper_processes(Path::new("/proc"), &cfg.run_root, &cfg.socket);
    if let Some(p) = procs.iter().find(|p| p.verb == "daemon") {
        return Err(ResetError::DaemonProcess {
            run_root: cfg.run_root.clone(),
            pid: p.pid,
        });
    }
    for p in &procs {
        if kill(Pid::from_raw(p.pid), Signal::SIGKILL).is_ok() {
            say(format!("killed {} process {}", p.verb, p.pid));
        }
    }
    kill_containers(&cfg.run_root, &mut say).await;
    for cg in cgroups::of_pods(&cfg.run_root, Path::new("/sys/fs/cgroup")) {
        let n = cgroups::kill_all(&cg);
        let gone = cgroups::remove(&cg).await;
        say(match (gone, n) {
            (false, _) => format!("could not remove cgroup {}", cg.display()),
            (true, 0) => format!("removed cgroup {}", cg.display()),
            (true, n) => format!("removed cgroup {} ({n} processes killed)", cg.display()),
        });
    }
    for dir in [&cfg.run_root, &cfg.root] {
        for m in unmount_all(dir) {
            say(format!("unmounted {m}"));
        }
    }
    remove_network(cfg, &mut say).await;
    for dir in [&cfg.run_root, &cfg.root] {
        let left = mounts_under(dir);
        if !left.is_empty() {
            return Err(ResetError::MountsRemain {
                dir: dir.clone(),
                mounts: left.join(", "),
            });
        }
    }
    if cfg.socket.exists() && !cfg.socket.starts_with(&cfg.run_root) {
        std::fs::remove_file(&cfg.socket).map_err(|source| ResetError::Io {
            what: format!("remove {}", cfg.socket.display()),
            source,
        })?;
        say(format!("removed {}", cfg.socket.display()));
    }
    for dir in [&cfg.run_root, &cfg.root] {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|source| ResetError::Io {
                what: format!("remove {}", dir.display()),
                source,
            })?;
            say(format!("removed {}", dir.display()));
        }
    }
    // The log `scripts/main-job.sh` writes for the default installation.
    let main_job_log = Path::new("/var/log/kinglet.log");
    if cfg.root == Config::default().root && main_job_log.exists() {
        std::fs::remove_file(main_job_log).map_err(|source| ResetError::Io {
            what: format!("remove {}", main_job_log.display()),
            source,
        })?;
        say(format!("removed {}", main_job_log.display()));
    }
    if cfg.manifests.exists() {
        say(format!(
            "kept {} (your manifests; delete them yourself, with the config file, to purge)",
            cfg.manifests.display()
        ));
    }
    Ok(())
}

/// Not `/` or a top-level or well-known system directory.
pub fn safe_to_remove(p: &Path) -> bool {
    const SYSTEM: [&str; 8] = [
        "/var/lib", "/var/run", "/var/log", "/run", "/etc", "/usr", "/home", "/var",
    ];
    p.is_absolute() && p.components().count() >= 3 && !SYSTEM.iter().any(|s| Path::new(s) == p)
}

/// A Kinglet process found in `/proc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Helper {
    pub pid: i32,
    /// `shim`, `pod-init` or `daemon`.
    pub verb: String,
}

/// Kinglet's shims and pod inits whose arguments point into `run_root`, and a daemon whose
/// arguments name `run_root` or `socket` (or, for the default run root, name none).
pub fn helper_processes(proc_root: &Path, run_root: &Path, socket: &Path) -> Vec<Helper> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(proc_root) else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if let Some(verb) = classify(&args, run_root, socket) {
            out.push(Helper { pid, verb });
        }
    }
    out.sort_by_key(|h| h.pid);
    out
}

/// The decision of [`helper_processes`] for one command line.
pub fn classify(args: &[String], run_root: &Path, socket: &Path) -> Option<String> {
    let exe = Path::new(args.first()?);
    let name = exe.file_name()?;
    if ![
        "kinglet",
        kinglet_runtime::SHIM_BIN,
        kinglet_runtime::POD_INIT_BIN,
    ]
    .iter()
    .any(|n| name == *n)
    {
        return None;
    }
    let verb = args.get(1)?.as_str();
    let under = |a: &String| Path::new(a).starts_with(run_root);
    match verb {
        "shim" | "pod-init" if args.iter().skip(2).any(under) => Some(verb.to_owned()),
        "daemon" => {
            let named = args
                .iter()
                .skip(2)
                .any(|a| under(a) || Path::new(a) == socket);
            let explicit = args.iter().any(|a| a == "--run-root" || a == "--config");
            let default = run_root == Config::default().run_root;
            (named || (default && !explicit)).then(|| verb.to_owned())
        }
        _ => None,
    }
}

/// Kill every container recorded under `run_root/containers`: its init (if its start time
/// still matches), then what is left in its cgroups; then remove those cgroups.
async fn kill_containers(run_root: &Path, say: &mut impl FnMut(String)) {
    let Ok(rd) = std::fs::read_dir(run_root.join("containers")) else {
        return;
    };
    let mut all_cgroups = Vec::new();
    for e in rd.flatten() {
        let id = e.file_name().to_string_lossy().into_owned();
        let rec = e
            .path()
            .join("shim")
            .join(kinglet_shim::protocol::SHIM_RECORD);
        let Ok(text) = std::fs::read_to_string(&rec) else {
            continue;
        };
        let Ok(r) = serde_json::from_str::<kinglet_shim::protocol::ShimRecord>(&text) else {
            continue;
        };
        if r.init_pid <= 0
            || kinglet_shim::process_start_ticks(r.init_pid) != Some(r.init_start_ticks)
        {
            continue;
        }
        let cgroups = cgroups::of_pid(r.init_pid, &id);
        let _ = kill(Pid::from_raw(r.init_pid), Signal::SIGKILL);
        let n: usize = cgroups.iter().map(|cg| cgroups::kill_all(cg)).sum();
        all_cgroups.extend(cgroups);
        say(format!(
            "killed container {} (init {}{})",
            &id[..id.len().min(13)],
            r.init_pid,
            if n > 0 {
                format!(", {n} more in its cgroup")
            } else {
                String::new()
            }
        ));
    }
    if !all_cgroups.is_empty() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for cg in &all_cgroups {
        let _ = cgroups::remove(cg).await;
    }
}

/// Mount points at or under `dir`, deepest last.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v: Vec<String> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
        .filter(|m| Path::new(m).starts_with(dir))
        .collect();
    v.sort_by_key(|m| m.matches('/').count());
    v
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Detach every mount under `dir`, deepest first, until none is left (stacked mounts);
/// returns what was unmounted.
fn unmount_all(dir: &Path) -> Vec<String> {
    let mut done = Vec::new();
    for _ in 0..8 {
        let list = mounts_under(dir);
        if list.is_empty() {
            break;
        }
        for m in list.iter().rev() {
            if nix::mount::umount2(Path::new(m), nix::mount::MntFlags::MNT_DETACH).is_ok() {
                done.push(m.clone());
            }
        }
    }
    done.dedup();
    done
}

async fn remove_network(cfg: &Config, say: &mut impl FnMut(String)) {
    let bridge = Path::new("/sys/class/net").join(&cfg.bridge);
    if bridge.exists() {
        let ok = tokio::process::Command::new("ip")
            .args(["link", "del", &cfg.bridge])
            .status()
            .await
            .is_ok_and(|s| s.success());
        if ok {
            say(format!("removed bridge {}", cfg.bridge));
        } else {
            say(format!(
                "could not remove bridge {} (ip link del failed)",
                cfg.bridge
            ));
        }
    }
    // The pod network's table and the Service proxy's.
    let svc_table = cfg.service_table_name();
    for table in [cfg.nft_table.as_str(), svc_table.as_str()] {
        remove_nft_table(table, say).await;
    }
}

/// Delete nftables table `ip <table>` if it exists, and say so.
async fn remove_nft_table(table: &str, say: &mut impl FnMut(String)) {
    let listed = tokio::process::Command::new("nft")
        .args(["list", "table", "ip", table])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success());
    if listed {
        let ok = tokio::process::Command::new("nft")
            .args(["delete", "table", "ip", table])
            .status()
            .await
            .is_ok_and(|s| s.success());
        if ok {
            say(format!("removed nftables table ip {table}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn only_this_installations_helpers_are_chosen() {
        let run = Path::new("/tmp/k1/run");
        let sock = Path::new("/tmp/k1/kinglet.sock");
        let shim = a(&[
            "/usr/local/bin/kinglet",
            "shim",
            "run",
            "--id",
            "c1",
            "--state-dir",
            "/tmp/k1/run/containers/c1/shim",
        ]);
        assert_eq!(classify(&shim, run, sock).as_deref(), Some("shim"));
        let other = a(&[
            "/usr/local/bin/kinglet",
            "shim",
            "run",
            "--state-dir",
            "/tmp/k2/run/containers/c1/shim",
        ]);
        assert_eq!(classify(&other, run, sock), None);
        let init = a(&["kinglet", "pod-init", "--pin", "/tmp/k1/run/pods/p/pidns"]);
        assert_eq!(classify(&init, run, sock).as_deref(), Some("pod-init"));
        let slim = a(&[
            "/usr/local/bin/kinglet-pod-init",
            "pod-init",
            "--pin",
            "/tmp/k1/run/pods/p/pidns",
        ]);
        assert_eq!(classify(&slim, run, sock).as_deref(), Some("pod-init"));
        let d = a(&["/x/kinglet", "daemon", "--socket", "/tmp/k1/kinglet.sock"]);
        assert_eq!(classify(&d, run, sock).as_deref(), Some("daemon"));
        let d2 = a(&["/x/kinglet", "daemon", "--run-root", "/tmp/k2/run"]);
        assert_eq!(classify(&d2, run, sock), None);
        let not = a(&["/bin/sleep", "shim", "/tmp/k1/run/x"]);
        assert_eq!(classify(&not, run, sock), None);
        // The default installation: a bare `kinglet daemon` is its daemon.
        let bare = a(&["/usr/local/bin/kinglet", "daemon"]);
        let dr = Config::default();
        assert_eq!(
            classify(&bare, &dr.run_root, &dr.socket).as_deref(),
            Some("daemon")
        );
        assert_eq!(classify(&bare, run, sock), None);
    }

    #[test]
    fn system_directories_are_never_removed() {
        for p in [
            "/",
            "/var",
            "/var/lib",
            "/run",
            "/etc",
            "/home",
            "relative/dir/x",
        ] {
            assert!(!safe_to_remove(Path::new(p)), "{p}");
        }
        for p in [
            "/var/lib/kinglet",
            "/run/kinglet",
            "/tmp/kinglet-e2e-x/root",
        ] {
            assert!(safe_to_remove(Path::new(p)), "{p}");
        }
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape("/a\\040b"), "/a b");
    }
}
