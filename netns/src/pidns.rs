//! A pod's shared PID namespace (CRI `NamespaceMode::POD` for pid), kept alive by a pod init.
//!
//! A PID namespace dies with its PID 1, so unlike net/ipc/uts a pin alone cannot keep it
//! usable: it needs a process. The daemon never forks that process itself; it runs its own binary
//! as `kinglet pod-init --pin PATH` ([`spawn_pod_init`]), whose `main` calls [`pod_init_main`]
//! first thing, while it is still single-threaded:
//!
//! ```text
//! daemon ── Command ──► pod-init helper: setsid, unshare(PID), block signals, fork ─┐
//!   ▲                     │ bind-mounts /proc/<child>/ns/pid onto PATH              │
//!   └── "ok <pid>\n" ─────┘ exits 0                                                 ▼
//!                                  pod init (PID 1 inside): stdio → /dev/null, sigwait loop
//! ```
//!
//! Invariants:
//! - The pod init is not a child of the daemon: its parent (the helper) exits at once, so it is
//!   reparented to the host's init or the nearest child subreaper. If the daemon ever makes itself
//!   a subreaper, its single reaper must expect these exits.
//! - The pod init has every signal blocked from its first instruction on (the mask is set before
//!   the fork) and handles them synchronously: SIGTERM/SIGINT/SIGHUP make it exit 0, SIGCHLD makes
//!   it reap orphans that were reparented to it, anything else is ignored. It holds no inherited
//!   file descriptor and no cwd.
//! - A pod init started by [`spawn_tied_pod_init`] has a pipe as stdin, kept as its tie: it exits
//!   at end of file (every copy of the write end, [`PodInitTie`], closed: the daemon died or gave
//!   up) and detaches when [`PodInitTie::release`] writes a byte. The daemon releases it once
//!   the sandbox record that names the pod init is saved, so a crash before never leaks it.
//! - The pin file at PATH is owned by this module: the helper creates it with `O_EXCL` (and removes
//!   it if a later step fails), [`stop_pod_init`] unmounts and removes it.
//! - [`stop_pod_init`] only signals a process whose `/proc/<pid>/ns/pid` is the pinned namespace,
//!   through a pidfd, so a reused pid is never killed.

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use tracing::{debug, warn};

use crate::error::NetnsError;
use crate::ns::NsKind;
use crate::pin::{create_pin_file, unpin_file};
use crate::sys::{self, Forked};
use crate::ErrorChain;

/// The subcommand of the daemon binary that runs [`pod_init_main`].
pub const POD_INIT_SUBCOMMAND: &str = "pod-init";

/// How long [`stop_pod_init`] waits for the pod init to exit after SIGKILL.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// Signals that make the pod init exit (with status 0).
const EXIT_SIGNALS: [Signal; 3] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP];

/// Recognise the helper's command line, `<argv0> pod-init --pin PATH` (exactly), and return PATH.
///
/// For the binary's `main`, before anything else:
/// `if let Some(pin) = pod_init_args(std::env::args_os()) { pod_init_main(&pin) }`.
pub fn pod_init_args<I: IntoIterator<Item = OsString>>(args: I) -> Option<PathBuf> {
    let mut args = args.into_iter().skip(1);
    if args.next()? != POD_INIT_SUBCOMMAND || args.next()? != "--pin" {
        return None;
    }
    let pin = args.next()?;
    args.next().is_none().then(|| PathBuf::from(pin))
}

/// Entry point of `kinglet pod-init --pin PATH`. Must be called while the process is still
/// single-threaded (at the top of `main`; the fork is refused otherwise).
///
/// Creates a PID namespace whose PID 1 is a pause process, pins it at `pin`, writes
/// `ok <host pid of the pod init>\n` to stdout and exits 0; on failure undoes its steps, writes
/// `error: <message>\n` and exits 1.
pub fn pod_init_main(pin: &Path) -> ! {
    let userns = std::env::var_os(POD_INIT_USERNS_ENV).map(PathBuf::from);
    let started = match &userns {
        Some(userns) => start_pod_init_in_userns(pin, userns),
        None => start_pod_init(pin),
    };
    let (line, code) = match started {
        Ok(pid) => (format!("ok {pid}\n"), 0),
        Err(err) => {
            let message = ErrorChain(&err).to_string().replace('\n', " ");
            (format!("error: {message}\n"), 1)
        }
    };
    let mut out = io::stdout().lock();
    let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
    std::process::exit(code)
}

/// The helper's steps; returns (in the helper) the host pid of the pod init. The forked child
/// never returns from here.
fn start_pod_init(pin: &Path) -> Result<u32, NetnsError> {
    let step = |step: &'static str| {
        move |source: io::Error| NetnsError::PodInitStep {
            step,
            pin: pin.to_path_buf(),
            source,
        }
    };

    // 1. A session of our own: the pod init must not share the daemon's process group, so
    //    signals aimed at the daemon's group (e.g. Ctrl-C in a foreground run) do not reach it.
    sys::setsid().map_err(step("start a new session"))?;
    // 2. A new PID namespace for the children of this process (this process stays outside).
    sys::unshare(NsKind::Pid).map_err(step("create a new pid namespace"))?;
    // 3. Block every signal before the fork: the child starts with them blocked, so there is no
    //    window in which SIGTERM (or SIGCHLD bookkeeping) takes a default action. The helper
    //    keeps them blocked too; it exits in a moment anyway.
    sys::block_all_signals().map_err(step("block signals"))?;
    // 4. The pin file, before the fork so that a failure here leaves no process behind.
    create_pin_file(NsKind::Pid, pin)?;
    // 5. Fork: the child is PID 1 of the new namespace.
    let child = match sys::fork_single_threaded() {
        Ok(Forked::Child) => sys::run_pause_process(c"pod-init", &EXIT_SIGNALS),
        Ok(Forked::Parent { child }) => child,
        Err(source) => {
            let _ = unpin_file(NsKind::Pid, pin);
            return Err(step("fork the pod init")(source));
        }
    };
    // 6. Pin the child's PID namespace; on failure take the child down with it.
    pin_pod_init(child, pin, |child| {
        let _ = sys::kill_and_reap_child(child);
    })
}

/// Pin the PID namespace of the pod init `child` at `pin` (created empty before the fork).
/// On failure `stop` takes the pod init down and the pin file is removed.
fn pin_pod_init(child: u32, pin: &Path, stop: impl FnOnce(u32)) -> Result<u32, NetnsError> {
    let source_path = PathBuf::from(format!("/proc/{child}/ns/pid"));
    if let Err(source) = sys::bind_mount(&source_path, pin) {
        stop(child);
        let _ = unpin_file(NsKind::Pid, pin);
        return Err(NetnsError::BindMount {
            kind: NsKind::Pid,
            source_path,
            path: pin.to_path_buf(),
            source,
        });
    }
    Ok(child)
}

/// The helper's steps for a pod with its own user namespace (pinned at `userns`), which must
/// own the PID namespace (else the pod's containers could not mount their /proc). The helper
/// keeps the host's privileges to pin the namespace, so an intermediate child joins the user
/// namespace, makes the PID namespace there, forks the pod init and reports its pid.
fn start_pod_init_in_userns(pin: &Path, userns: &Path) -> Result<u32, NetnsError> {
    let step = |step: &'static str| {
        move |source: io::Error| NetnsError::PodInitStep {
            step,
            pin: pin.to_path_buf(),
            source,
        }
    };
    sys::setsid().map_err(step("start a new session"))?;
    sys::block_all_signals().map_err(step("block signals"))?;
    let ns = std::fs::File::open(userns).map_err(step("open the pod user namespace"))?;
    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| step("create a pipe")(e.into()))?;
    create_pin_file(NsKind::Pid, pin)?;
    let intermediate = match sys::fork_single_threaded() {
        Ok(Forked::Child) => {
            drop(read_end);
            userns_intermediate(&ns, write_end)
        }
        Ok(Forked::Parent { child }) => child,
        Err(source) => {
            let _ = unpin_file(NsKind::Pid, pin);
            return Err(step("fork the pod init")(source));
        }
    };
    drop(write_end);
    let mut reply = String::new();
    let read = io::Read::read_to_string(&mut std::fs::File::from(read_end), &mut reply);
    let _ = crate::userns_sys::reap_child(intermediate);
    let child = match read.map(|_| reply.trim().parse::<u32>()) {
        Ok(Ok(pid)) if pid > 0 => pid,
        _ => {
            let _ = unpin_file(NsKind::Pid, pin);
            let e = io::Error::other(format!("intermediate process replied {reply:?}"));
            return Err(step("start the pod init in the pod user namespace")(e));
        }
    };
    pin_pod_init(child, pin, |child| {
        // Not our child (its parent, the intermediate, is gone): a signal is all we can do.
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child as i32), Signal::SIGKILL);
    })
}

/// The intermediate child of [`start_pod_init_in_userns`] (single-threaded, a fork of the
/// helper): joins the user namespace, unshares the PID namespace, forks the pod init and
/// writes its host pid to `reply`. Never returns.
fn userns_intermediate(ns: &std::fs::File, reply: std::os::fd::OwnedFd) -> ! {
    let made = crate::userns_sys::setns(ns.as_fd())
        .and_then(|()| sys::unshare(NsKind::Pid))
        .and_then(|()| sys::fork_single_threaded());
    match made {
        Ok(Forked::Child) => sys::run_pause_process(c"pod-init", &EXIT_SIGNALS),
        Ok(Forked::Parent { child }) => {
            let mut f = std::fs::File::from(reply);
            let code = i32::from(f.write_all(format!("{child}\n").as_bytes()).is_err());
            std::process::exit(code)
        }
        Err(_) => std::process::exit(1),
    }
}

/// Environment variable that makes the `pod-init` helper create the PID namespace inside the
/// pod's user namespace pinned at its value (see [`spawn_pod_init_in`]).
pub const POD_INIT_USERNS_ENV: &str = "KINGLET_POD_INIT_USERNS";

/// [`spawn_pod_init`] for a pod with its own user namespace pinned at `userns` (when given),
/// which then owns the PID namespace.
pub fn spawn_pod_init_in(exe: &Path, pin: &Path, userns: Option<&Path>) -> Result<u32, NetnsError> {
    run_helper(helper_command(exe, userns), exe, pin, Stdio::null())
}

/// The helper's command, told the pod's user namespace (if any) through its environment.
fn helper_command(exe: &Path, userns: Option<&Path>) -> Command {
    let mut cmd = Command::new(exe);
    match userns {
        Some(u) => cmd.env(POD_INIT_USERNS_ENV, u),
        None => cmd.env_remove(POD_INIT_USERNS_ENV),
    };
    cmd
}

/// Start a pod init for a new shared PID namespace pinned at `pin`, by running
/// `exe pod-init --pin PIN` (the daemon's own binary) and reading its reply.
///
/// Returns the host pid of the pod init. Blocking (one fork+exec and a wait for the helper,
/// a few milliseconds); async callers use `spawn_blocking`. The pin's parent directory must
/// exist and `pin` must not; on error the helper has already removed what it created.
///
/// The pod init is not tied: it lives until stopped (see [`spawn_tied_pod_init`]).
pub fn spawn_pod_init(exe: &Path, pin: &Path) -> Result<u32, NetnsError> {
    spawn_pod_init_in(exe, pin, None)
}

/// [`spawn_pod_init`], with the pod init tied to the returned [`PodInitTie`]: if the tie is
/// dropped (the caller failed, its future was cancelled, the daemon died) before
/// [`PodInitTie::release`], the pod init exits by itself. The daemon releases it once the
/// sandbox record naming the pod init is saved, so that a pod init never outlives a crash
/// between its start and that record, even when the daemon is not started again.
///
/// With `userns`, the pod's user namespace pinned there owns the PID namespace (see
/// [`spawn_pod_init_in`]).
pub fn spawn_tied_pod_init(
    exe: &Path,
    pin: &Path,
    userns: Option<&Path>,
) -> Result<(u32, PodInitTie), NetnsError> {
    let (read, write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| NetnsError::SpawnPodInit {
            exe: exe.to_path_buf(),
            pin: pin.to_path_buf(),
            source: e.into(),
        })?;
    // The read end becomes the helper's stdin (and so the pod init's); ours is closed on return.
    let pid = run_helper(helper_command(exe, userns), exe, pin, Stdio::from(read))?;
    Ok((
        pid,
        PodInitTie {
            pid,
            pin: pin.to_path_buf(),
            write,
        },
    ))
}

/// The daemon's end of a pod init's tie (the write end of a pipe that is the pod init's stdin).
/// Dropping it unreleased makes the pod init exit.
#[derive(Debug)]
pub struct PodInitTie {
    pid: u32,
    pin: PathBuf,
    write: std::os::fd::OwnedFd,
}

impl PodInitTie {
    /// Release the pod init: it no longer exits with the tie, and lives until stopped.
    /// An error means the pod init had already exited (its pipe has no reader).
    pub fn release(self) -> Result<(), NetnsError> {
        let mut pipe = std::fs::File::from(self.write);
        pipe.write_all(b"r")
            .map_err(|source| NetnsError::ReleasePodInit {
                pid: self.pid,
                pin: self.pin,
                source,
            })
    }
}

fn run_helper(mut cmd: Command, exe: &Path, pin: &Path, stdin: Stdio) -> Result<u32, NetnsError> {
    let output = cmd
        .arg(POD_INIT_SUBCOMMAND)
        .arg("--pin")
        .arg(pin)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .output()
        .map_err(|source| NetnsError::SpawnPodInit {
            exe: exe.to_path_buf(),
            pin: pin.to_path_buf(),
            source,
        })?;
    let reply = String::from_utf8_lossy(&output.stdout);
    match (parse_reply(&reply), output.status.success()) {
        (Some(Reply::Ok(pid)), true) => {
            debug!(pid, pin = %pin.display(), "started pod init");
            Ok(pid)
        }
        (Some(Reply::Error(message)), false) => Err(NetnsError::PodInitFailed {
            pin: pin.to_path_buf(),
            message: message.to_owned(),
        }),
        _ => Err(NetnsError::PodInitReply {
            pin: pin.to_path_buf(),
            status: output.status,
            reply: reply.into_owned(),
        }),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Reply<'a> {
    Ok(u32),
    Error(&'a str),
}

fn parse_reply(reply: &str) -> Option<Reply<'_>> {
    let line = reply.strip_suffix('\n')?;
    if line.contains('\n') {
        return None;
    }
    if let Some(message) = line.strip_prefix("error: ") {
        return Some(Reply::Error(message));
    }
    let pid: u32 = line.strip_prefix("ok ")?.parse().ok()?;
    (pid > 0).then_some(Reply::Ok(pid))
}

/// Stop the pod init `pid` started for `pin` and remove the pin.
///
/// The process is sent SIGKILL only if it is still the pod init of that pin (its
/// `/proc/<pid>/ns/pid` is the pinned namespace), and then awaited through a pidfd for up to a
/// few seconds. When the init dies the kernel kills every other process in the namespace. A
/// process that is already gone, or a pid that now belongs to another process, is left alone.
/// The pin is removed in every case; idempotent. Blocking.
pub fn stop_pod_init(pid: u32, pin: &Path) -> Result<(), NetnsError> {
    let lingering = kill_if_pod_init(pid, pin)?;
    unpin_file(NsKind::Pid, pin)?;
    if lingering {
        return Err(NetnsError::PodInitLingers {
            pid,
            pin: pin.to_path_buf(),
            waited: STOP_WAIT,
        });
    }
    debug!(pid, pin = %pin.display(), "stopped pod init");
    Ok(())
}

/// SIGKILL `pid` if it is the init of the namespace pinned at `pin`; returns whether it was
/// killed but had not exited after [`STOP_WAIT`].
fn kill_if_pod_init(pid: u32, pin: &Path) -> Result<bool, NetnsError> {
    let pinned = match sys::ns_identity(pin) {
        Ok(id) => id,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            warn!(pid, pin = %pin.display(), "pid namespace pin is gone; not signalling the pod init");
            return Ok(false);
        }
        Err(source) => {
            return Err(NetnsError::NsIdentity {
                path: pin.to_path_buf(),
                source,
            })
        }
    };
    // If the process behind `pid` died and the number was reused before the check, the new
    // process cannot be in the pinned namespace (nothing can enter a PID namespace whose init
    // is dead), so the check fails and nothing is signalled.
    let is_ours = || {
        let proc_ns = PathBuf::from(format!("/proc/{pid}/ns/pid"));
        match sys::ns_identity(&proc_ns) {
            Ok(id) if id == pinned => Ok(true),
            Ok(_) => {
                warn!(pid, pin = %pin.display(), "process is not the pod init of this pin; not signalling it");
                Ok(false)
            }
            Err(e) if is_gone(&e) => Ok(false),
            Err(source) => Err(NetnsError::NsIdentity {
                path: proc_ns,
                source,
            }),
        }
    };
    Ok(kill_via_pidfd(pid, pin, is_ours)? == Some(false))
}

/// The pod inits whose pin is `<pods_dir>/<pod>/ns/pid`, found by their command line (the pod
/// init is a fork of the `pod-init` helper and keeps its arguments): `(host pid, pod, pin)`.
/// At the daemon's start, those of pods without a record are leftovers of a crash between
/// starting the pod init and recording the sandbox; their pin is already gone.
pub fn find_pod_inits(pods_dir: &Path) -> Vec<(u32, String, PathBuf)> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let (pod, pin) = pod_of_cmdline(&cmdline, pods_dir)?;
            Some((pid, pod, pin))
        })
        .collect()
}

/// The pod and pin of a `pod-init` command line whose pin is `<pods_dir>/<pod>/ns/pid`.
fn pod_of_cmdline(cmdline: &[u8], pods_dir: &Path) -> Option<(String, PathBuf)> {
    use std::os::unix::ffi::OsStrExt;
    let args = cmdline
        .strip_suffix(&[0])
        .unwrap_or(cmdline)
        .split(|b| *b == 0)
        .map(|a| std::ffi::OsStr::from_bytes(a).to_os_string());
    let pin = pod_init_args(args)?;
    let rel = pin.strip_prefix(pods_dir).ok()?;
    let mut parts = rel.iter();
    let pod = parts.next()?.to_str()?.to_owned();
    let rest: Vec<_> = parts.collect();
    (rest == ["ns", "pid"] && !pod.is_empty()).then_some((pod, pin))
}

/// SIGKILL a pod init found by [`find_pod_inits`] whose pin is gone, and wait for it to exit.
/// Through a pidfd opened first and a second look at the command line, so a reused pid is never
/// signalled. Returns whether a process was killed.
pub fn kill_orphan_pod_init(pid: u32, pin: &Path) -> Result<bool, NetnsError> {
    let Some(dir) = pin.parent().and_then(Path::parent).and_then(Path::parent) else {
        return Ok(false);
    };
    let is_ours = || {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        Ok(pod_of_cmdline(&cmdline, dir).is_some_and(|(_, p)| p == pin))
    };
    Ok(kill_via_pidfd(pid, pin, is_ours)?.is_some())
}

/// SIGKILL `pid` through a pidfd opened before `is_ours` looks at the process, so that a pid
/// reused meanwhile is never signalled, then wait up to [`STOP_WAIT`] for it to exit. `None`:
/// not signalled (gone, or not ours); `Some(exited)` otherwise.
fn kill_via_pidfd(
    pid: u32,
    pin: &Path,
    is_ours: impl FnOnce() -> Result<bool, NetnsError>,
) -> Result<Option<bool>, NetnsError> {
    let kill_err = |source| NetnsError::KillPodInit {
        pid,
        pin: pin.to_path_buf(),
        source,
    };
    let pidfd = match sys::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(e) if is_gone(&e) => return Ok(None),
        Err(source) => return Err(kill_err(source)),
    };
    if !is_ours()? {
        return Ok(None);
    }
    match sys::pidfd_send_signal(pidfd.as_fd(), Signal::SIGKILL) {
        Ok(()) => {}
        Err(e) if is_gone(&e) => return Ok(None),
        Err(source) => return Err(kill_err(source)),
    }
    sys::wait_readable(pidfd.as_fd(), STOP_WAIT)
        .map(Some)
        .map_err(kill_err)
}

fn is_gone(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::NotFound || err.raw_os_error() == Some(Errno::ESRCH as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn pod_init_args_match_exactly() {
        assert_eq!(
            pod_init_args(args(&["kinglet", "pod-init", "--pin", "/run/p/pid"])),
            Some(PathBuf::from("/run/p/pid"))
        );
        assert_eq!(pod_init_args(args(&["kinglet"])), None);
        assert_eq!(pod_init_args(args(&["kinglet", "serve"])), None);
        assert_eq!(pod_init_args(args(&["kinglet", "pod-init"])), None);
        assert_eq!(pod_init_args(args(&["kinglet", "pod-init", "--pin"])), None);
        assert_eq!(
            pod_init_args(args(&["kinglet", "pod-init", "--pid", "/x"])),
            None
        );
        assert_eq!(
            pod_init_args(args(&["kinglet", "pod-init", "--pin", "/x", "extra"])),
            None
        );
    }

    #[test]
    fn pod_inits_are_recognised_by_their_pin_under_the_pods_dir() {
        let dir = Path::new("/run/k/pods");
        let line = b"/usr/bin/kinglet\0pod-init\0--pin\0/run/k/pods/abc/ns/pid\0";
        assert_eq!(
            pod_of_cmdline(line, dir),
            Some(("abc".into(), PathBuf::from("/run/k/pods/abc/ns/pid")))
        );
        for other in [
            &b"kinglet\0pod-init\0--pin\0/run/other/pods/abc/ns/pid\0"[..],
            b"kinglet\0pod-init\0--pin\0/run/k/pods/abc/ns/net\0",
            b"kinglet\0pod-init\0--pin\0/run/k/pods/abc/x/ns/pid\0",
            b"kinglet\0shim\0--pin\0/run/k/pods/abc/ns/pid\0",
            b"",
        ] {
            assert_eq!(pod_of_cmdline(other, dir), None, "{other:?}");
        }
    }

    #[test]
    fn replies_parse() {
        assert_eq!(parse_reply("ok 1234\n"), Some(Reply::Ok(1234)));
        assert_eq!(
            parse_reply("error: failed to x: EPERM\n"),
            Some(Reply::Error("failed to x: EPERM"))
        );
        assert_eq!(parse_reply("ok 1234"), None, "line must be complete");
        assert_eq!(parse_reply("ok 0\n"), None);
        assert_eq!(parse_reply("ok -3\n"), None);
        assert_eq!(parse_reply("ok 12\nok 13\n"), None);
        assert_eq!(parse_reply(""), None);
        assert_eq!(parse_reply("garbage\n"), None);
    }

    #[test]
    fn spawn_reports_a_missing_helper_binary() {
        let err = spawn_pod_init(
            Path::new("/nonexistent/kinglet"),
            Path::new("/nonexistent/pid"),
        )
        .unwrap_err();
        assert!(matches!(err, NetnsError::SpawnPodInit { .. }), "{err:?}");
    }

    #[test]
    fn spawn_rejects_a_helper_that_does_not_speak_the_protocol() {
        // `true` ignores its arguments, prints nothing and exits 0.
        let err = spawn_pod_init(Path::new("true"), Path::new("/nonexistent/pid")).unwrap_err();
        assert!(
            matches!(err, NetnsError::PodInitReply { ref reply, .. } if reply.is_empty()),
            "{err:?}"
        );
    }
}
