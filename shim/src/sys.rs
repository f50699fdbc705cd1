//! The shim's raw system calls, each behind a safe function. This is the only module of the
//! crate with `unsafe`.

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::signal::{sigprocmask, SigHandler, SigSet, SigmaskHow, Signal};
use nix::unistd::{ForkResult, Pid};

use crate::ShimError;

/// Number of threads of this process (entries of `/proc/self/task`).
pub fn thread_count() -> usize {
    fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(usize::MAX)
}

/// Which side of [`fork_single_threaded`] we are on.
pub enum Forked {
    Parent,
    Child,
}

/// `fork(2)`, refusing to do it when the process has more than one thread: after a fork only
/// the calling thread exists in the child, and locks held by others (malloc, stdio) would stay
/// locked forever.
pub fn fork_single_threaded() -> Result<Forked, ShimError> {
    let threads = thread_count();
    if threads != 1 {
        return Err(ShimError::NotSingleThreaded { threads });
    }
    // SAFETY: the process has exactly one thread (checked just above), so the child inherits no
    // lock held by another thread and may run arbitrary Rust code.
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Parent { .. }) => Ok(Forked::Parent),
        Ok(ForkResult::Child) => Ok(Forked::Child),
        Err(e) => Err(ShimError::sys("fork", e)),
    }
}

/// `pidfd_open(2)`: a file descriptor that becomes readable when the process exits.
pub fn pidfd_open(pid: Pid) -> Result<OwnedFd, ShimError> {
    // SAFETY: pidfd_open takes a pid and flags by value and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(ShimError::sys("pidfd_open", nix::Error::last()));
    }
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Make `fd` a copy of `src` (`dup2`), e.g. to point stdout at /dev/null.
pub fn redirect_fd(src: &impl AsRawFd, target: RawFd) -> Result<(), ShimError> {
    // SAFETY: dup2 only manipulates the descriptor table; `target` is one of 0/1/2, which this
    // process owns, and `src` is a valid open descriptor borrowed for the call.
    let r = unsafe { libc::dup2(src.as_raw_fd(), target) };
    if r < 0 {
        return Err(ShimError::sys("dup2", nix::Error::last()));
    }
    Ok(())
}

/// Signals whose disposition the shim (or the Rust runtime) changes; "ignored" survives `exec`,
/// so the container's process must get them back at their defaults.
const CHANGED_SIGNALS: [Signal; 4] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGPIPE,
];

/// Undo what the Rust runtime and the shim changed in signal state, so that the container's
/// process starts like one exec'd by a shell: default dispositions and an empty signal mask.
pub fn reset_signals_for_exec() {
    for s in CHANGED_SIGNALS {
        // SAFETY: installing SIG_DFL never runs a handler of ours; it only changes the disposition.
        let _ = unsafe { nix::sys::signal::signal(s, SigHandler::SigDfl) };
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// Ignore the job-control and termination signals a shim must survive (the daemon's stop,
/// a terminal hang-up) — the shim ends only when its container does.
pub fn ignore_termination_signals() {
    for s in CHANGED_SIGNALS {
        // SAFETY: SIG_IGN installs no handler code.
        let _ = unsafe { nix::sys::signal::signal(s, SigHandler::SigIgn) };
    }
}

/// Set no_new_privs on the calling thread (inherited across exec).
pub fn set_no_new_privs() -> Result<(), ShimError> {
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments only and affects this thread.
    let r = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if r != 0 {
        return Err(ShimError::sys(
            "prctl(PR_SET_NO_NEW_PRIVS)",
            nix::Error::last(),
        ));
    }
    Ok(())
}

/// Start time of a process in clock ticks since boot (`/proc/<pid>/stat`, field 22).
pub fn process_start_ticks(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: skip past the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Receive one descriptor sent with SCM_RIGHTS on `sock` (libcontainer's console socket sends
/// the terminal master this way). Blocks until a message arrives.
pub fn recv_fd(sock: &std::os::unix::net::UnixStream) -> Result<OwnedFd, ShimError> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| ShimError::sys("recvmsg console socket", e))?;
    let mut got = None;
    for cmsg in msg
        .cmsgs()
        .map_err(|e| ShimError::sys("recvmsg console socket", e))?
    {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            for fd in fds {
                // SAFETY: the kernel just installed `fd` in our table; nothing else owns it.
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                got.get_or_insert(owned);
            }
        }
    }
    got.ok_or(ShimError::sys(
        "recvmsg console socket",
        nix::Error::EBADMSG,
    ))
}

/// Set the window size of terminal `fd` (TIOCSWINSZ): the foreground process group gets
/// SIGWINCH.
pub fn set_winsize(fd: &impl AsRawFd, cols: u16, rows: u16) -> Result<(), ShimError> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize` through a pointer valid for the whole call; `fd`
    // is a live descriptor borrowed for its duration.
    let r = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TIOCSWINSZ,
            &ws as *const libc::winsize,
        )
    };
    if r < 0 {
        return Err(ShimError::sys("ioctl TIOCSWINSZ", nix::Error::last()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_readable() {
        let me = std::process::id() as i32;
        assert!(process_start_ticks(me).is_some());
        assert_eq!(process_start_ticks(me), process_start_ticks(me));
        assert!(process_start_ticks(i32::MAX).is_none());
    }
}
