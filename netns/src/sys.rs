//! Safe wrappers over the kernel calls this crate makes; the only module with `unsafe`.
//!
//! Invariants:
//! - Every function here is safe to call from any thread unless its doc says otherwise, and
//!   reports failures as `io::Error` (nix `Errno`s are converted). Callers add the context (which
//!   namespace, which path) when they turn it into a [`crate::NetnsError`].
//! - No policy lives here: which namespaces to create, where pins go and what to roll back is
//!   decided by `pin` and `pidns`. This keeps the kernel surface small and auditable.
//! - Thread-scoped calls ([`unshare`], [`sethostname`] in a fresh UTS namespace,
//!   [`set_interface_up`] in a fresh network namespace) affect only the calling thread; callers
//!   must run them on a thread they own and discard (never a tokio worker or blocking-pool thread).

use std::ffi::{CStr, OsStr};
use std::fs::{self, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::socket::{AddressFamily, SockFlag, SockType};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use crate::ns::{NsId, NsKind};

/// Kernel thread id of the calling thread (`gettid(2)`).
pub fn gettid() -> i32 {
    nix::unistd::gettid().as_raw()
}

/// `unshare(2)` a single namespace kind for the calling thread.
pub fn unshare(kind: NsKind) -> io::Result<()> {
    Ok(nix::sched::unshare(kind.clone_flag())?)
}

/// Move the calling thread into the network namespace `ns` (a pin or `/proc/*/ns/net`).
/// Callers must own the thread and discard it afterwards.
pub fn setns_net(ns: BorrowedFd<'_>) -> io::Result<()> {
    Ok(nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)?)
}

/// Set the hostname of the calling thread's UTS namespace.
pub fn sethostname(name: &str) -> io::Result<()> {
    Ok(nix::unistd::sethostname(OsStr::new(name))?)
}

/// Bring the interface `name` of the calling thread's network namespace up (`IFF_UP`), using
/// `SIOCGIFFLAGS`/`SIOCSIFFLAGS` on an `AF_INET` datagram socket. A no-op when it is already up.
pub fn set_interface_up(name: &str) -> io::Result<()> {
    // The socket belongs to the network namespace of the thread that creates it, so the ioctls
    // below act on the caller's current network namespace.
    let sock = nix::sys::socket::socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let mut req = ifreq_for(name)?;
    ifreq_ioctl(sock.as_fd(), libc::SIOCGIFFLAGS as libc::Ioctl, &mut req)?;
    // SAFETY: SIOCGIFFLAGS succeeded, so the kernel wrote the `ifru_flags` member of the union,
    // and every bit pattern is a valid `c_short`.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    let up = libc::IFF_UP as libc::c_short;
    if flags & up != 0 {
        return Ok(());
    }
    req.ifr_ifru.ifru_flags = flags | up;
    ifreq_ioctl(sock.as_fd(), libc::SIOCSIFFLAGS as libc::Ioctl, &mut req)
}

fn ifreq_for(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid interface name {name:?}"),
        ));
    }
    // SAFETY: `ifreq` is a plain C struct (a byte array and a union of integers, sockaddrs and
    // pointers) for which all-zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

fn ifreq_ioctl(
    sock: BorrowedFd<'_>,
    request: libc::Ioctl,
    req: &mut libc::ifreq,
) -> io::Result<()> {
    // SAFETY: `sock` is an open socket for the duration of the call, `request` is one of the
    // SIOC[GS]IFFLAGS requests whose argument is a `struct ifreq *`, and `req` is a valid,
    // exclusively borrowed, NUL-terminated (zero-filled beyond the name) `ifreq`.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), request, req as *mut libc::ifreq) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Bind-mount `src` onto `dst` (`mount --bind`); `dst` must exist.
pub fn bind_mount(src: &Path, dst: &Path) -> io::Result<()> {
    Ok(nix::mount::mount(
        Some(src),
        dst,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )?)
}

/// Lazily unmount the topmost mount at `path` (`MNT_DETACH`, not following a final symlink).
/// Returns `Ok(false)` when `path` is missing or not a mount point.
pub fn detach_unmount(path: &Path) -> io::Result<bool> {
    match nix::mount::umount2(path, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
        Ok(()) => Ok(true),
        Err(Errno::EINVAL | Errno::ENOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Identity of the namespace behind `path` (a `/proc/<pid>/ns/*` link or a pin file).
pub fn ns_identity(path: &Path) -> io::Result<NsId> {
    let meta = fs::metadata(path)?;
    Ok(NsId {
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

/// Number of threads of the calling process.
pub fn thread_count() -> io::Result<usize> {
    Ok(fs::read_dir("/proc/self/task")?.count())
}

/// `setsid(2)`: make the calling process leader of a new session without a controlling tty.
pub fn setsid() -> io::Result<()> {
    nix::unistd::setsid()?;
    Ok(())
}

/// Block every signal for the calling thread (and thus for children it forks afterwards).
pub fn block_all_signals() -> io::Result<()> {
    Ok(nix::sys::signal::sigprocmask(
        SigmaskHow::SIG_BLOCK,
        Some(&SigSet::all()),
        None,
    )?)
}

/// Outcome of [`fork_single_threaded`], as seen by each side.
#[derive(Debug)]
pub enum Forked {
    /// In the parent; `child` is the child's pid in the parent's PID namespace.
    Parent { child: u32 },
    /// In the child.
    Child,
}

/// `fork(2)`, refused unless the calling process has exactly one thread.
pub fn fork_single_threaded() -> io::Result<Forked> {
    let threads = thread_count()?;
    if threads != 1 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("process has {threads} threads; fork needs a single-threaded process"),
        ));
    }
    // SAFETY: the process has exactly one thread (checked just above; only this thread could
    // have started another one since), so no lock or allocator state can be held by a thread
    // that does not exist in the child, and the child may run arbitrary code.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Parent { child } => Ok(Forked::Parent {
            child: child.as_raw().unsigned_abs(),
        }),
        ForkResult::Child => Ok(Forked::Child),
    }
}

/// SIGKILL our own child `pid` and reap it (rollback in a helper process).
pub fn kill_and_reap_child(pid: u32) -> io::Result<()> {
    let pid = to_pid(pid)?;
    match nix::sys::signal::kill(pid, Signal::SIGKILL) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => return Err(e.into()),
    }
    loop {
        match nix::sys::wait::waitpid(pid, None) {
            Err(Errno::EINTR) => continue,
            Ok(_) | Err(Errno::ECHILD) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Turn the calling, single-threaded process into a pause process, never returning.
///
/// Expects every signal to be blocked already (see [`block_all_signals`], called before the fork
/// so that there is no window in which a signal takes its default action). It then points
/// stdin/stdout/stderr at `/dev/null`, closes every other inherited file descriptor (so that it
/// never keeps a caller's pipe open), changes to `/` (so that it never keeps a mount busy), names
/// itself `name`, and waits for signals synchronously: a signal in `exit_on` makes it exit with status 0,
/// `SIGCHLD` makes it reap every exited child with `waitpid(-1, WNOHANG)`, others are dropped.
///
/// A tie: if stdin is a pipe, it is kept (as descriptor [`TIE_FD`]) as the tie to whoever holds
/// the pipe's write end. A byte read from it releases the tie (the descriptor is closed and the
/// process lives on); end of file before that byte (every writer gone) makes it exit with status
/// 0 at once. The pipe is watched through `SIGIO` (`O_ASYNC`), so the wait stays synchronous.
///
/// Exits with status 1 at once if the process has more than one thread (closing descriptors
/// that other threads own would break them); in practice it runs right after
/// [`fork_single_threaded`] in the child.
pub fn run_pause_process(name: &CStr, exit_on: &[Signal]) -> ! {
    if !matches!(thread_count(), Ok(1)) {
        std::process::exit(1);
    }
    // Best effort from here on: there is nobody left to report an error to.
    let tie = stdin_is_pipe() && nix::unistd::dup2(0, TIE_FD).is_ok();
    let _ = redirect_stdio_to_dev_null();
    close_fds_from(if tie { TIE_FD as libc::c_uint + 1 } else { 3 });
    let _ = nix::unistd::chdir("/");
    let _ = nix::sys::prctl::set_name(name);
    // Armed before the first look, so that a byte or end of file arriving after it raises SIGIO.
    let mut tied = tie && arm_tie() && read_tie();
    let waited = SigSet::all();
    loop {
        match waited.wait() {
            Ok(sig) if exit_on.contains(&sig) => std::process::exit(0),
            Ok(Signal::SIGCHLD) => reap_exited_children(),
            Ok(Signal::SIGIO) if tied => tied = read_tie(),
            // Other signals (and real-time ones nix cannot name) are consumed and ignored.
            Ok(_) | Err(_) => {}
        }
    }
}

/// The descriptor a pause process keeps its tie on (see [`run_pause_process`]).
const TIE_FD: libc::c_int = 3;

fn stdin_is_pipe() -> bool {
    nix::sys::stat::fstat(0).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFIFO)
}

/// Make [`TIE_FD`] non-blocking and have it raise `SIGIO` at this process when it becomes
/// readable (a byte, or end of file). False if the kernel refused: the tie is then ignored.
fn arm_tie() -> bool {
    // SAFETY: fcntl on a descriptor number with integer arguments; it touches no memory of ours.
    // TIE_FD is owned by the single-threaded pause process (dup'ed there, never closed before).
    unsafe {
        libc::fcntl(TIE_FD, libc::F_SETFL, libc::O_NONBLOCK | libc::O_ASYNC) == 0
            && libc::fcntl(TIE_FD, libc::F_SETOWN, libc::getpid()) == 0
    }
}

/// Read the tie: nothing yet (true: still tied), the release byte (the descriptor is closed;
/// false), or end of file (the holder is gone before releasing: exit at once).
fn read_tie() -> bool {
    let mut byte = 0u8;
    loop {
        // SAFETY: reads at most one byte into a live local; TIE_FD is open (see `arm_tie`).
        let n = unsafe { libc::read(TIE_FD, (&raw mut byte).cast(), 1) };
        match n {
            0 => std::process::exit(0),
            1 => {
                // SAFETY: closes the pause process's own TIE_FD, never used again (tied = false).
                unsafe { libc::close(TIE_FD) };
                return false;
            }
            _ if Errno::last() == Errno::EINTR => continue,
            _ => return true,
        }
    }
}

fn redirect_stdio_to_dev_null() -> io::Result<()> {
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?
        .into_raw_fd();
    for fd in 0..=2 {
        nix::unistd::dup2(null, fd)?;
    }
    // `null` is either one of 0..=2 (now stdio) or >= 3 and closed by `close_fds_from(3)`.
    Ok(())
}

fn close_fds_from(first: libc::c_uint) {
    // SAFETY: only called from `run_pause_process`, after it checked that the process has a single
    // thread (so no other thread owns a descriptor), and that function never returns and ends the
    // process with `std::process::exit` (which runs no destructors of live frames), so no
    // `OwnedFd`/`File` in a caller's frame is ever used or closed again after this. Arguments are plain
    // integers; an unsupported kernel just returns ENOSYS, which is ignored.
    let _ = unsafe { libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, 0) };
}

fn reap_exited_children() {
    loop {
        match nix::sys::wait::waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
            Err(Errno::EINTR) | Ok(_) => continue,
            Err(_) => return,
        }
    }
}

/// `pidfd_open(2)`: a descriptor that refers to process `pid` for as long as it is held, even if
/// the pid number is reused afterwards.
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = to_pid(pid)?;
    // SAFETY: pidfd_open takes a pid and flags (0) by value and touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: on success the kernel returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `pidfd_send_signal(2)`: send `sig` to the process `pidfd` refers to.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: Signal) -> io::Result<()> {
    // SAFETY: the pidfd is open for the duration of the call, `info` is NULL (the kernel fills a
    // default siginfo) and flags are 0; no memory of ours is touched.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Wait until `fd` is readable (for a pidfd: the process has exited), up to `timeout`.
/// Returns whether it became readable.
pub fn wait_readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    loop {
        match nix::poll::poll(&mut fds, timeout) {
            Ok(n) => return Ok(n > 0),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

fn to_pid(pid: u32) -> io::Result<Pid> {
    match i32::try_from(pid) {
        Ok(raw) if raw > 0 => Ok(Pid::from_raw(raw)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid pid {pid}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_rejects_bad_names() {
        assert!(ifreq_for("").is_err());
        assert!(ifreq_for("a-name-that-is-too-long").is_err());
        assert!(ifreq_for("l\0o").is_err());
        let req = ifreq_for("lo").expect("valid name");
        assert_eq!(
            req.ifr_name[..3],
            [b'l' as libc::c_char, b'o' as libc::c_char, 0]
        );
    }

    #[test]
    fn invalid_pids_are_rejected_before_any_syscall() {
        assert!(to_pid(0).is_err());
        assert!(to_pid(u32::MAX).is_err());
        assert_eq!(to_pid(42).expect("valid").as_raw(), 42);
    }

    #[test]
    fn own_namespace_identity_is_stable() {
        let a = ns_identity(Path::new("/proc/self/ns/net")).expect("stat own netns");
        let b = ns_identity(Path::new("/proc/thread-self/ns/net")).expect("stat own netns");
        assert_eq!(a, b);
    }
}
