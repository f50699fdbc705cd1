//! systemd socket activation of the CRI socket (`systemd/kinglet.socket`): when systemd
//! passes a listening unix socket (`LISTEN_PID` is this process, `LISTEN_FDS` >= 1, the socket
//! at fd 3, sd_listen_fds(3)'s protocol), the daemon serves on it instead of binding its own,
//! and leaves the socket file to systemd at exit.

use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::sync::Mutex;

/// The first passed descriptor (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;

static PASSED: Mutex<Option<UnixListener>> = Mutex::new(None);

/// Take the socket systemd passed, if any, and remove the `LISTEN_*` variables (so that no
/// child inherits them). Call before any thread starts: it edits the environment.
pub fn init_from_env() {
    let pid_matches = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    let count = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<i32>().ok())
        .unwrap_or(0);
    for v in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(v);
    }
    if !pid_matches || count < 1 {
        return;
    }
    match listener_at(LISTEN_FDS_START) {
        Ok(l) => {
            *PASSED.lock().unwrap_or_else(|e| e.into_inner()) = Some(l);
        }
        Err(reason) => tracing::warn!(fd = LISTEN_FDS_START, %reason, "ignoring the passed socket"),
    }
}

/// The passed socket as a tokio listener (once).
pub fn take() -> Option<tokio::net::UnixListener> {
    let l = PASSED.lock().unwrap_or_else(|e| e.into_inner()).take()?;
    l.set_nonblocking(true).ok()?;
    tokio::net::UnixListener::from_std(l).ok()
}

/// Whether fd `fd` is a listening unix stream socket; then it, owned (close-on-exec).
fn listener_at(fd: RawFd) -> Result<UnixListener, String> {
    use nix::sys::socket::{
        getsockname, getsockopt, sockopt, AddressFamily, SockaddrLike, SockaddrStorage,
    };
    // SAFETY: `borrow_raw` needs the fd open for the borrow's life; it is only used by the
    // two calls below, and a closed fd makes them fail with EBADF, which is reported.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let listening = getsockopt(&borrowed, sockopt::AcceptConn).map_err(|e| e.to_string())?;
    let addr: SockaddrStorage = getsockname(fd).map_err(|e| e.to_string())?;
    if addr.family() != Some(AddressFamily::Unix) || !listening {
        return Err("not a listening unix socket".into());
    }
    nix::fcntl::fcntl(
        fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .map_err(|e| e.to_string())?;
    // SAFETY: fd 3 was passed to this process by systemd for it to own (sd_listen_fds), was
    // checked above to be an open listening unix socket, and is taken at most once (the
    // environment that names it is removed above).
    Ok(unsafe { UnixListener::from_raw_fd(fd) })
}
