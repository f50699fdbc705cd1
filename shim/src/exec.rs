//! `kinglet shim exec`: run one command inside an existing container (CRI ExecSync) with
//! libcontainer's tenant builder, bounded by a timeout.
//!
//! The process is started by the daemon with its stdout and stderr connected to pipes the daemon
//! reads; the command inherits copies of them, and this process then points its own stdout and
//! stderr at /dev/null so none of its diagnostics mix into the command's output. The outcome is
//! written as an [`ExecResult`] to the file named by `--result`: atomically (temp file and
//! rename, so the daemon never reads half of it) but not fsynced — the daemon reads it as soon as
//! this process exits and deletes it, and after a host crash there is no exec to report on.
//! (Durably, its two journal commits were most of an exec's round trip on a busy disk.)

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::oci_spec::runtime::{LinuxSeccomp, Spec};
use libcontainer::syscall::syscall::SyscallType;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};

use crate::executor::KingletExecutor;
use crate::protocol::ExecResult;
use crate::{error_chain, sys, ShimError};

/// Arguments of `kinglet shim exec`.
#[derive(Debug, Clone)]
pub struct ExecArgs {
    pub id: String,
    pub runtime_root: PathBuf,
    pub result: PathBuf,
    /// Zero means no limit.
    pub timeout: Duration,
    pub cmd: Vec<String>,
    /// Give the command this process's stdin (a streaming exec with stdin); else /dev/null.
    pub stdin: bool,
    /// Run the command on a new terminal whose master side libcontainer sends to this unix
    /// socket (the daemon listens there); stdio then are /dev/null here.
    pub console_socket: Option<PathBuf>,
    /// The terminal's (columns, rows), set before the command starts.
    pub console_size: Option<(u16, u16)>,
}

/// Entry point of `kinglet shim exec`; returns the process exit code (0 when a result was
/// recorded, whatever the command's own exit code).
pub fn main(args: &ExecArgs) -> i32 {
    let result = match run(args) {
        Ok(r) => r,
        Err(e) => ExecResult {
            exit_code: -1,
            timed_out: false,
            error: Some(error_chain(&e)),
        },
    };
    match write_result(&args.result, &result) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

/// Write the result where the daemon reads it: a temp file beside `path`, renamed over it.
fn write_result(path: &std::path::Path, result: &ExecResult) -> Result<(), ShimError> {
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let bytes = serde_json::to_vec(result).map_err(|source| ShimError::Record {
        path: path.to_owned(),
        source,
    })?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| ShimError::io(dir, e))?;
    tmp.write_all(&bytes)
        .map_err(|e| ShimError::io(tmp.path(), e))?;
    tmp.persist(path)
        .map_err(|e| ShimError::io(path, e.error))?;
    Ok(())
}

fn dup_std(fd: i32) -> Result<OwnedFd, ShimError> {
    // Borrow fd 0, 1 or 2 only long enough to duplicate it.
    let owned = match fd {
        0 => std::io::stdin().as_fd().try_clone_to_owned(),
        1 => std::io::stdout().as_fd().try_clone_to_owned(),
        _ => std::io::stderr().as_fd().try_clone_to_owned(),
    };
    owned.map_err(|e| ShimError::io(format!("/proc/self/fd/{fd}"), e))
}

/// The container's OCI process with `args.cmd` as its arguments, in a temporary file, and the
/// container's seccomp filter.
#[allow(clippy::type_complexity)]
fn exec_process(
    args: &ExecArgs,
) -> Result<
    (
        tempfile::NamedTempFile,
        Option<LinuxSeccomp>,
        Option<crate::userns_exec::UserJoin>,
    ),
    ShimError,
> {
    let container = Container::load(args.runtime_root.join(&args.id)).map_err(|source| {
        ShimError::Container {
            op: "load",
            id: args.id.clone(),
            source: Box::new(source),
        }
    })?;
    let config = container.bundle().join("config.json");
    let spec = Spec::load(&config)
        .map_err(|e| ShimError::io(&config, std::io::Error::other(e.to_string())))?;
    let mut process = spec.process().clone().unwrap_or_default();
    process.set_args(Some(args.cmd.clone()));
    process.set_terminal(Some(args.console_socket.is_some()));
    let userns = crate::userns_exec::prepare(&mut process, &spec);
    let file = tempfile::NamedTempFile::new_in(&args.runtime_root)
        .map_err(|e| ShimError::io(&args.runtime_root, e))?;
    let bytes = serde_json::to_vec(&process).map_err(|source| ShimError::Record {
        path: file.path().to_owned(),
        source,
    })?;
    std::fs::write(file.path(), bytes).map_err(|e| ShimError::io(file.path(), e))?;
    let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().clone());
    Ok((file, seccomp, userns))
}

fn run(args: &ExecArgs) -> Result<ExecResult, ShimError> {
    if args.cmd.is_empty() {
        return Ok(ExecResult {
            exit_code: -1,
            timed_out: false,
            error: Some("empty command".to_owned()),
        });
    }
    let devnull = File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| ShimError::io("/dev/null", e))?;
    let null = || {
        devnull
            .try_clone()
            .map(OwnedFd::from)
            .map_err(|e| ShimError::io("/dev/null", e))
    };
    let tty = args.console_socket.is_some();
    let (stdin, out, err) = if tty {
        (null()?, null()?, null()?)
    } else {
        let stdin = if args.stdin { dup_std(0)? } else { null()? };
        (stdin, dup_std(1)?, dup_std(2)?)
    };
    // From here on our own diagnostics go nowhere near the command's output.
    sys::redirect_fd(&devnull, 1)?;
    sys::redirect_fd(&devnull, 2)?;

    let lc = |op: &'static str| {
        let id = args.id.clone();
        move |source| ShimError::Container {
            op,
            id,
            source: Box::new(source),
        }
    };
    // Run the command as the container's own process runs: same user, groups, capabilities,
    // environment, working directory and no_new_privs; only the arguments differ.
    let (process_file, seccomp, userns) = exec_process(args)?;
    let mut builder = ContainerBuilder::new(args.id.clone(), SyscallType::default())
        .with_root_path(&args.runtime_root)
        .map_err(lc("use root path for"))?;
    if let Some(sock) = &args.console_socket {
        builder = builder.with_console_socket(Some(sock));
    }
    let pid = builder
        .with_executor(KingletExecutor {
            seccomp,
            console_size: args.console_size.filter(|_| tty),
            userns,
        })
        .with_stdin(stdin)
        .with_stdout(out)
        .with_stderr(err)
        .as_tenant()
        .with_process(Some(process_file.path()))
        .with_detach(true)
        .build()
        .map_err(lc("exec in"))?;

    let (status, timed_out) = wait(pid, args.timeout)?;
    let exit_code = match status {
        WaitStatus::Exited(_, c) => c,
        WaitStatus::Signaled(_, s, _) => 128 + s as i32,
        _ => -1,
    };
    Ok(ExecResult {
        exit_code,
        timed_out,
        error: None,
    })
}

/// Wait for the command to end, killing it once `timeout` (zero: none) has passed; its wait
/// status, and whether it was killed for the timeout.
fn wait(pid: nix::unistd::Pid, timeout: Duration) -> Result<(WaitStatus, bool), ShimError> {
    let pidfd = sys::pidfd_open(pid)?;
    let deadline = (!timeout.is_zero()).then(|| Instant::now() + timeout);
    let mut timed_out = false;
    loop {
        let timeout = match deadline {
            None => PollTimeout::NONE,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    timed_out = true;
                    let _ = kill(pid, Signal::SIGKILL);
                    break;
                }
                PollTimeout::from(u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX))
            }
        };
        let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(0) | Err(nix::Error::EINTR) => continue,
            Ok(_) => break,
            Err(e) => return Err(ShimError::sys("poll", e)),
        }
    }
    let status = loop {
        match waitpid(pid, None) {
            Ok(s) => break s,
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(ShimError::sys("waitpid", e)),
        }
    };
    Ok((status, timed_out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_result_is_written_whole_and_read_back() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("abc.json");
        let r = ExecResult {
            exit_code: 3,
            timed_out: true,
            error: None,
        };
        write_result(&p, &r).unwrap();
        let back: ExecResult = crate::protocol::read_record(&p).unwrap().unwrap();
        assert_eq!(
            (back.exit_code, back.timed_out, back.error),
            (3, true, None)
        );
        // Nothing else is left in the directory.
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 1);
    }
}
