//! `kinglet shim run`: create one container through libcontainer and monitor it until it exits.
//!
//! Invariants:
//! - libcontainer is only called to fork while this process has one thread ([`crate::sys`]
//!   checks it before forking). The only thread the shim starts is the log compressor
//!   ([`crate::log_rotate`]), at the first rotation: after the container's init exists, when
//!   libcontainer only signals or deletes it.
//! - The container's init is this process's child (libcontainer clones it with `CLONE_PARENT`
//!   from its intermediate process), so the exit status can be collected with `waitpid`.
//! - `exit.json` is written before the shim exits, and the shim exits only after the init did:
//!   the daemon, watching the shim's pid, reads the record when the shim is gone.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use crate::attach::Attach;
use crate::executor::KingletExecutor;
use crate::log::{CriLogWriter, Stream};
use crate::protocol::{
    now_nanos, write_record, ExitRecord, ShimRecord, CMD_ATTACH, CMD_REOPEN_LOG, CMD_START,
    CONSOLE_SOCKET, CONTROL_SOCKET, EXIT_RECORD, SHIM_LOG, SHIM_RECORD,
};
use crate::sys::{self, Forked};
use crate::{error_chain, ShimError};

/// Arguments of `kinglet shim run`.
#[derive(Debug, Clone)]
pub struct RunArgs {
    /// Container id (also libcontainer's id).
    pub id: String,
    /// OCI bundle: `config.json` and the mounted `rootfs`.
    pub bundle: PathBuf,
    /// libcontainer's state root (shared by all containers of one daemon).
    pub runtime_root: PathBuf,
    /// The shim's own state directory (records, control socket, diagnostics).
    pub state_dir: PathBuf,
    /// CRI log file; output is discarded when absent.
    pub log_path: Option<PathBuf>,
    /// Rotate the log file at a size (`None`: never).
    pub log_rotation: Option<crate::log_rotate::LogRotation>,
    /// Let systemd manage the container's cgroup.
    pub systemd_cgroup: bool,
    /// Keep the container's stdin open for attach clients (CRI `stdin`).
    pub stdin: bool,
    /// Close it after the first attach client's input ends (CRI `stdin_once`).
    pub stdin_once: bool,
}

/// Entry point of `kinglet shim run`; returns the process exit code. Must be called while the
/// process is still single-threaded.
pub fn main(args: &RunArgs) -> i32 {
    // Leave the daemon's session and process tree: the daemon reaps this first process at once,
    // and the monitor below is reparented, so it lives on when the daemon restarts.
    if let Err(e) = nix::unistd::setsid() {
        report(&format!("error setsid: {e}"));
        return 1;
    }
    match sys::fork_single_threaded() {
        Ok(Forked::Parent) => return 0,
        Ok(Forked::Child) => {}
        Err(e) => {
            report(&format!("error {}", error_chain(&e)));
            return 1;
        }
    }
    match monitor(args) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(container = %args.id, err = %error_chain(&e), "shim failed");
            1
        }
    }
}

/// Write one line to the daemon on our stdout pipe.
fn report(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn monitor(args: &RunArgs) -> Result<(), ShimError> {
    fs::create_dir_all(&args.state_dir).map_err(|e| ShimError::io(&args.state_dir, e))?;
    let shim_log_path = args.state_dir.join(SHIM_LOG);
    let shim_log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&shim_log_path)
        .map_err(|e| ShimError::io(&shim_log_path, e))?;
    sys::redirect_fd(&shim_log, 2)?;
    sys::ignore_termination_signals();

    let created = match create(args) {
        Ok(c) => c,
        Err(e) => {
            report(&format!("error {}", error_chain(&e)));
            return Err(e);
        }
    };
    let Created {
        init_pid,
        stdout,
        stderr,
        input,
        tty,
        listener,
    } = created;

    let mut record = ShimRecord {
        shim_pid: std::process::id() as i32,
        init_pid: init_pid.as_raw(),
        init_start_ticks: sys::process_start_ticks(init_pid.as_raw()).unwrap_or(0),
        created_at: now_nanos(),
        started_at: None,
    };
    let record_path = args.state_dir.join(SHIM_RECORD);
    write_record(&record_path, &record)?;
    report(&format!("ok {} {}", record.init_pid, record.shim_pid));
    close_daemon_pipe()?;

    let mut sinks = Sinks::open(args, input, tty)?;
    let init_fd = sys::pidfd_open(init_pid)?;
    let mut pipes = Pipes::new(stdout, stderr)?;

    let mut ctl = Control {
        listener: &listener,
        args,
        record: &mut record,
        record_path: &record_path,
    };
    event_loop(&init_fd, &mut ctl, &mut pipes, &mut sinks)?;
    finish(args, init_pid, pipes, sinks)
}

/// The control socket and what its commands change.
struct Control<'a> {
    listener: &'a UnixListener,
    args: &'a RunArgs,
    record: &'a mut ShimRecord,
    record_path: &'a Path,
}

/// Serve container output, control commands and attach clients until the init exits.
fn event_loop(
    init_fd: &OwnedFd,
    ctl: &mut Control<'_>,
    pipes: &mut Pipes,
    sinks: &mut Sinks,
) -> Result<(), ShimError> {
    loop {
        let mut fds = vec![
            PollFd::new(init_fd.as_fd(), PollFlags::POLLIN),
            PollFd::new(ctl.listener.as_fd(), PollFlags::POLLIN),
        ];
        let out_idx = pipes.push_pollfds(&mut fds);
        let client_idx = sinks.attach.push_pollfds(&mut fds);
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(ShimError::sys("poll", e)),
        }
        let ready = |i: usize| fds[i].revents().is_some_and(|r| !r.is_empty());
        let init_exited = ready(0);
        let control = ready(1);
        let out_ready: Vec<bool> = out_idx
            .iter()
            .map(|&i| i != usize::MAX && ready(i))
            .collect();
        let client_ready: Vec<bool> = client_idx.iter().map(|&i| ready(i)).collect();
        drop(fds);
        pipes.pump(&out_ready, sinks);
        sinks.attach.serve(&client_ready);
        if control {
            serve_control(ctl.listener, ctl.args, ctl.record, ctl.record_path, sinks);
        }
        if init_exited {
            return Ok(());
        }
    }
}

/// The init exited: reap it, clean its cgroup and libcontainer state, drain its output, and
/// write the exit record.
fn finish(
    args: &RunArgs,
    init_pid: Pid,
    mut pipes: Pipes,
    mut sinks: Sinks,
) -> Result<(), ShimError> {
    let (exit_code, signal) = reap(args, init_pid)?;
    let finished_at = now_nanos();
    let oom_killed = cgroups_path(&args.bundle)
        .map(|p| oom_kill_seen(&p))
        .unwrap_or(false);
    delete_container(args);
    pipes.drain(Duration::from_secs(2), &mut sinks);
    sinks.attach.finish();
    if let Some(l) = sinks.log.as_mut() {
        l.finish();
    }
    write_record(
        &args.state_dir.join(EXIT_RECORD),
        &ExitRecord {
            exit_code,
            signal,
            finished_at,
            oom_killed,
        },
    )?;
    let _ = fs::remove_file(args.state_dir.join(CONTROL_SOCKET));
    tracing::info!(container = %args.id, exit_code, oom_killed, "container exited");
    Ok(())
}

/// The daemon reads the report until EOF: close our end of its pipe (stdout), and stdin.
fn close_daemon_pipe() -> Result<(), ShimError> {
    let devnull = File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| ShimError::io("/dev/null", e))?;
    sys::redirect_fd(&devnull, 1)?;
    sys::redirect_fd(&devnull, 0)
}

/// Wait for the container's init; its exit code (128 + signal when killed) and signal.
fn reap(args: &RunArgs, init_pid: Pid) -> Result<(i32, Option<i32>), ShimError> {
    let status = loop {
        match waitpid(init_pid, None) {
            Ok(s) => break s,
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(ShimError::sys("waitpid", e)),
        }
    };
    Ok(match status {
        WaitStatus::Exited(_, code) => (code, None),
        WaitStatus::Signaled(_, sig, _) => (128 + sig as i32, Some(sig as i32)),
        other => {
            tracing::warn!(container = %args.id, ?other, "unexpected wait status");
            (255, None)
        }
    })
}

/// Kill whatever else is left in the container's cgroup and drop libcontainer's state.
fn delete_container(args: &RunArgs) {
    match Container::load(args.runtime_root.join(&args.id)) {
        Ok(mut c) => {
            if let Err(e) = c.delete(true) {
                tracing::warn!(container = %args.id, err = %error_chain(&e), "delete failed");
            }
        }
        Err(e) => tracing::warn!(container = %args.id, err = %error_chain(&e), "load failed"),
    }
}

/// Where container output goes: the CRI log and the attached clients.
struct Sinks {
    log: Option<CriLogWriter>,
    attach: Attach,
    /// Output bytes dropped since writing the log began failing (a full disk): the failure is
    /// logged once when it starts and once when it ends, never per write.
    dropped: u64,
}

impl Sinks {
    fn open(
        args: &RunArgs,
        input: Option<OwnedFd>,
        tty: Option<OwnedFd>,
    ) -> Result<Sinks, ShimError> {
        let log = match &args.log_path {
            Some(p) => Some(
                CriLogWriter::open(p)
                    .map_err(|e| ShimError::io(p, e))?
                    .with_rotation(args.log_rotation),
            ),
            None => None,
        };
        Ok(Sinks {
            log,
            attach: Attach::new(input, tty, args.stdin_once),
            dropped: 0,
        })
    }

    fn write(&mut self, stream: Stream, data: &[u8]) {
        if let Some(l) = self.log.as_mut() {
            match l.write(stream, data) {
                Err(e) => {
                    if self.dropped == 0 {
                        tracing::warn!(err = %e, "writing container log failed; output is dropped until it works again");
                    }
                    self.dropped += data.len().max(1) as u64;
                }
                Ok(()) if self.dropped > 0 => {
                    tracing::warn!(dropped_bytes = self.dropped, "container log written again");
                    self.dropped = 0;
                }
                Ok(()) => {}
            }
        }
        self.attach.broadcast(stream, data);
    }

    fn end_of_stream(&mut self, stream: Stream) {
        if let Some(l) = self.log.as_mut() {
            l.end_of_stream(stream);
        }
    }
}

struct Created {
    init_pid: Pid,
    stdout: OwnedFd,
    stderr: Option<OwnedFd>,
    /// Where attach input goes (stdin pipe or terminal master).
    input: Option<OwnedFd>,
    /// The terminal master of a tty container.
    tty: Option<OwnedFd>,
    listener: UnixListener,
}

/// The container's stdio: (stdin, stdout, stderr) for libcontainer, and what the shim keeps:
/// (stdout read end, stderr read end, stdin write end).
type Stdio = (
    (OwnedFd, OwnedFd, OwnedFd),
    (Option<OwnedFd>, Option<OwnedFd>, Option<OwnedFd>),
);

fn null() -> Result<OwnedFd, ShimError> {
    File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map(OwnedFd::from)
        .map_err(|e| ShimError::io("/dev/null", e))
}

fn pipe() -> Result<(OwnedFd, OwnedFd), ShimError> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| ShimError::sys("pipe2", e))
}

/// Pipes for a container without a terminal; all /dev/null with one (the terminal replaces
/// them).
fn stdio(args: &RunArgs, tty: bool) -> Result<Stdio, ShimError> {
    if tty {
        return Ok(((null()?, null()?, null()?), (None, None, None)));
    }
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (in_r, in_w) = if args.stdin {
        let (r, w) = pipe()?;
        (r, Some(w))
    } else {
        (null()?, None)
    };
    Ok(((in_r, out_w, err_w), (Some(out_r), Some(err_r), in_w)))
}

/// Whether the bundle's process asks for a terminal.
fn wants_terminal(bundle: &Path) -> bool {
    libcontainer::oci_spec::runtime::Spec::load(bundle.join("config.json"))
        .ok()
        .and_then(|s| s.process().as_ref().and_then(|p| p.terminal()))
        .unwrap_or(false)
}

fn create(args: &RunArgs) -> Result<Created, ShimError> {
    let tty = wants_terminal(&args.bundle);
    let ((stdin, out_w, err_w), (out_r, err_r, in_w)) = stdio(args, tty)?;
    // State directories can be deeper than a socket address allows: bind through the fd.
    let dir = File::open(&args.state_dir).map_err(|e| ShimError::io(&args.state_dir, e))?;
    let console = if tty {
        let _ = fs::remove_file(args.state_dir.join(CONSOLE_SOCKET));
        let path = crate::protocol::socket_path_via_fd(&dir, CONSOLE_SOCKET);
        let l = UnixListener::bind(&path).map_err(|e| ShimError::io(&path, e))?;
        Some((l, path))
    } else {
        None
    };
    let lc_err = |op: &'static str| {
        let id = args.id.clone();
        move |source| ShimError::Container {
            op,
            id,
            source: Box::new(source),
        }
    };
    let mut builder = ContainerBuilder::new(args.id.clone(), SyscallType::default())
        .with_root_path(&args.runtime_root)
        .map_err(lc_err("use root path for"))?;
    if let Some((_, path)) = &console {
        builder = builder.with_console_socket(Some(path));
    }
    let container = builder
        .with_executor(KingletExecutor::default())
        .with_stdin(stdin)
        .with_stdout(out_w)
        .with_stderr(err_w)
        .as_init(&args.bundle)
        .with_systemd(args.systemd_cgroup)
        .with_detach(true)
        .build()
        .map_err(|e| {
            // The container's init reports why it failed on its stderr: keep that with the error
            // (and in the shim's log), so the caller sees which mount or file was the problem.
            let said = err_r.as_ref().map(read_pending).unwrap_or_default();
            if !said.trim().is_empty() {
                tracing::error!(container = %args.id, init_stderr = %said.trim(), "container init failed");
            }
            lc_err("create")(e)
        })?;
    let init_pid = container.pid().ok_or_else(|| ShimError::Container {
        op: "find the init of",
        id: args.id.clone(),
        source: Box::new(libcontainer::error::LibcontainerError::Other(
            "no pid recorded".into(),
        )),
    })?;
    // A terminal: libcontainer has sent its master to the console socket.
    let (stdout, stderr, input, tty) = match console {
        Some((l, _)) => {
            // libcontainer sent the master during create; never wait for ever if it did not.
            let mut fds = [PollFd::new(l.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(10_000u16)) {
                Ok(1) => {}
                Ok(_) => {
                    return Err(ShimError::sys(
                        "wait for the terminal",
                        nix::Error::ETIMEDOUT,
                    ))
                }
                Err(e) => return Err(ShimError::sys("wait for the terminal", e)),
            }
            let (conn, _) = l
                .accept()
                .map_err(|e| ShimError::io(args.state_dir.join(CONSOLE_SOCKET), e))?;
            let master = sys::recv_fd(&conn)?;
            drop(l);
            let _ = fs::remove_file(args.state_dir.join(CONSOLE_SOCKET));
            let dup = |m: &OwnedFd| m.try_clone().map_err(|e| ShimError::io("terminal", e));
            (dup(&master)?, None, Some(dup(&master)?), Some(master))
        }
        None => (out_r.expect("output pipe"), err_r, in_w, None),
    };
    let sock = args.state_dir.join(CONTROL_SOCKET);
    let _ = fs::remove_file(&sock);
    let listener = UnixListener::bind(crate::protocol::socket_path_via_fd(&dir, CONTROL_SOCKET))
        .map_err(|e| ShimError::io(&sock, e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| ShimError::io(&sock, e))?;
    Ok(Created {
        init_pid,
        stdout,
        stderr,
        input,
        tty,
        listener,
    })
}

/// Whatever a pipe holds right now, without blocking (at most 64 KiB).
fn read_pending(fd: &OwnedFd) -> String {
    let _ = fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
    let mut buf = vec![0u8; 64 * 1024];
    let n = nix::unistd::read(fd.as_raw_fd(), &mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Handle every pending control connection: one command line in, one reply line out.
fn serve_control(
    listener: &UnixListener,
    args: &RunArgs,
    record: &mut ShimRecord,
    record_path: &Path,
    sinks: &mut Sinks,
) {
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) => {
                tracing::warn!(container = %args.id, err = %e, "accept failed");
                return;
            }
        };
        match serve_one(stream, args, record, record_path, &mut sinks.log) {
            Ok(Some((attached, stdin))) => sinks.attach.add(attached, stdin),
            Ok(None) => {}
            Err(e) => tracing::warn!(container = %args.id, err = %e, "control request failed"),
        }
    }
}

fn serve_one(
    stream: UnixStream,
    args: &RunArgs,
    record: &mut ShimRecord,
    record_path: &Path,
    log: &mut Option<CriLogWriter>,
) -> std::io::Result<Option<(UnixStream, bool)>> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    // One byte at a time: bytes after the line (attach frames) must stay in the socket.
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while (&stream).read(&mut byte)? == 1 && byte[0] != b'\n' && line.len() < 256 {
        line.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&line).into_owned();
    let mut words = line.split_whitespace();
    if words.next() == Some(CMD_ATTACH) {
        let stdin = words.next() == Some("stdin");
        (&stream).write_all(b"ok\n")?;
        return Ok(Some((stream, stdin)));
    }
    let reply = match line.trim() {
        CMD_START => match start(args, record, record_path) {
            Ok(at) => format!("ok {at}"),
            Err(e) => format!("error {}", error_chain(&e)),
        },
        CMD_REOPEN_LOG => match log.as_mut().map(|l| l.reopen()) {
            Some(Err(e)) => format!("error reopen log: {e}"),
            _ => "ok".to_owned(),
        },
        other => format!("error unknown command {other:?}"),
    };
    (&stream).write_all(format!("{reply}\n").as_bytes())?;
    Ok(None)
}

fn start(args: &RunArgs, record: &mut ShimRecord, record_path: &Path) -> Result<i64, ShimError> {
    if let Some(at) = record.started_at {
        return Ok(at);
    }
    let mut c = Container::load(args.runtime_root.join(&args.id)).map_err(|source| {
        ShimError::Container {
            op: "load",
            id: args.id.clone(),
            source: Box::new(source),
        }
    })?;
    c.start().map_err(|source| ShimError::Container {
        op: "start",
        id: args.id.clone(),
        source: Box::new(source),
    })?;
    if let Some(pid) = c.pid() {
        if !wait_for_exec(pid.as_raw(), EXEC_WAIT) {
            tracing::warn!(container = %args.id, "the container's program was not exec'd within {EXEC_WAIT:?}");
        }
    }
    let at = now_nanos();
    record.started_at = Some(at);
    write_record(record_path, record)?;
    Ok(at)
}

/// How long a start waits for the container's init to exec the container's program.
const EXEC_WAIT: Duration = Duration::from_secs(2);

/// Wait until the container's init (a clone of this shim until it execs) runs the container's
/// program: then the program, not the runtime's init code, receives a stop signal sent right
/// after StartContainer. A PID 1 discards signals it has no handler for, so a SIGTERM that
/// reached the init before its exec was lost and the stop waited out its whole timeout.
/// Returns false when `within` passed first; true also when the process is gone (a failed
/// exec ends it, and its exit is reported as usual).
fn wait_for_exec(pid: i32, within: Duration) -> bool {
    use std::os::unix::fs::MetadataExt;
    let id = |p: &str| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let Some(me) = id("/proc/self/exe") else {
        return true;
    };
    let theirs = format!("/proc/{pid}/exe");
    let deadline = std::time::Instant::now() + within;
    let mut pause = Duration::from_micros(50);
    loop {
        match id(&theirs) {
            Some(exe) if exe == me => {}
            _ => return true,
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

/// The container's stdout and stderr pipes (read ends), or its terminal master (one stream,
/// stdout), until each reaches EOF.
struct Pipes {
    fds: [Option<OwnedFd>; 2],
}

const STREAMS: [Stream; 2] = [Stream::Stdout, Stream::Stderr];

impl Pipes {
    fn new(stdout: OwnedFd, stderr: Option<OwnedFd>) -> Result<Self, ShimError> {
        for fd in std::iter::once(&stdout).chain(stderr.as_ref()) {
            fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
                .map_err(|e| ShimError::sys("fcntl O_NONBLOCK", e))?;
        }
        Ok(Pipes {
            fds: [Some(stdout), stderr],
        })
    }

    /// Add the open pipes to a poll set; returns their indices (one per stream, `usize::MAX`
    /// for a closed one).
    fn push_pollfds<'a>(&'a self, fds: &mut Vec<PollFd<'a>>) -> [usize; 2] {
        let mut idx = [usize::MAX; 2];
        for (i, fd) in self.fds.iter().enumerate() {
            if let Some(fd) = fd {
                idx[i] = fds.len();
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            }
        }
        idx
    }

    fn is_open(&self) -> bool {
        self.fds.iter().any(Option::is_some)
    }

    /// Read what is available on the ready pipes into the log and to attach clients.
    fn pump(&mut self, ready: &[bool], sinks: &mut Sinks) {
        for (i, r) in ready.iter().enumerate() {
            if *r {
                self.read_available(i, sinks);
            }
        }
    }

    fn read_available(&mut self, i: usize, sinks: &mut Sinks) {
        let mut buf = [0u8; 64 * 1024];
        loop {
            let Some(fd) = &self.fds[i] else { return };
            match nix::unistd::read(fd.as_raw_fd(), &mut buf).map_err(std::io::Error::from) {
                Ok(0) => {
                    self.fds[i] = None;
                    sinks.end_of_stream(STREAMS[i]);
                    return;
                }
                Ok(n) => sinks.write(STREAMS[i], &buf[..n]),
                // A terminal master reads EIO once no process holds the terminal: its EOF.
                Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                    self.fds[i] = None;
                    sinks.end_of_stream(STREAMS[i]);
                    return;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!(err = %e, "reading container output failed");
                    self.fds[i] = None;
                    return;
                }
            }
        }
    }

    /// After the init exited: read until EOF on both pipes, or until `limit` passes (a process
    /// outside the container may still hold a pipe).
    fn drain(&mut self, limit: Duration, sinks: &mut Sinks) {
        let deadline = Instant::now() + limit;
        while self.is_open() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let mut fds = Vec::new();
            let idx = self.push_pollfds(&mut fds);
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            if poll(&mut fds, PollTimeout::from(ms)).unwrap_or(0) == 0 {
                break;
            }
            let ready: Vec<bool> = idx
                .iter()
                .map(|&i| i != usize::MAX && fds[i].revents().is_some_and(|r| !r.is_empty()))
                .collect();
            drop(fds);
            self.pump(&ready, sinks);
        }
    }
}

/// The container's cgroup path from its OCI config.
fn cgroups_path(bundle: &Path) -> Option<PathBuf> {
    let spec = libcontainer::oci_spec::runtime::Spec::load(bundle.join("config.json")).ok()?;
    spec.linux().as_ref()?.cgroups_path().clone()
}

/// Whether the kernel OOM-killed a process of the cgroup (cgroup v2 `memory.events`, or v1
/// `memory.oom_control`, both count `oom_kill`).
fn oom_kill_seen(cgroup: &Path) -> bool {
    let rel = cgroup.strip_prefix("/").unwrap_or(cgroup);
    let unified = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let file = if unified {
        Path::new("/sys/fs/cgroup").join(rel).join("memory.events")
    } else {
        Path::new("/sys/fs/cgroup/memory")
            .join(rel)
            .join("memory.oom_control")
    };
    fs::read_to_string(file)
        .ok()
        .and_then(|s| parse_oom_kill(&s))
        .is_some_and(|n| n > 0)
}

fn parse_oom_kill(s: &str) -> Option<u64> {
    s.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_counters_parse_in_both_cgroup_versions() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        let v2 = "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(parse_oom_kill(v1), Some(2));
        assert_eq!(parse_oom_kill(v2), Some(1));
        assert_eq!(parse_oom_kill("oom_kill_disable 0\n"), None);
    }
}
