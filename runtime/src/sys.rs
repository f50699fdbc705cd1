//! The daemon's only `unsafe`: registering a pidfd with the tokio reactor, and setting a
//! terminal's window size. Also the (safe) descriptor passing of console sockets.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use tokio::io::unix::AsyncFd;

/// Register an owned pidfd so its readiness (= the process exited) can be awaited.
pub fn async_pidfd(fd: OwnedFd) -> std::io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: `register` requires the descriptor to stay valid and open for the lifetime of the
    // AsyncFd; the AsyncFd owns the OwnedFd, which closes it only when dropped with it.
    unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)
}

/// Receive one descriptor sent with SCM_RIGHTS (a console socket's terminal master).
/// Blocking: call it off the async runtime.
pub fn recv_fd(sock: &UnixStream) -> std::io::Result<OwnedFd> {
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(&fd) = fds.first() {
                for &extra in &fds[1..] {
                    // SAFETY: the kernel just installed `extra` in our table for us alone.
                    drop(unsafe { OwnedFd::from_raw_fd(extra) });
                }
                // SAFETY: as above: a fresh descriptor nobody else owns.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err(std::io::Error::other(
        "console socket message carried no descriptor",
    ))
}

/// Set the window size of the terminal `fd` (TIOCSWINSZ); its foreground group gets SIGWINCH.
pub fn set_winsize(fd: BorrowedFd<'_>, cols: u16, rows: u16) -> std::io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize` through the pointer, which is valid for the call;
    // `fd` is a live descriptor borrowed for its duration.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TIOCSWINSZ,
            &ws as *const libc::winsize,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The window size of terminal `fd` (TIOCGWINSZ): (columns, rows).
pub fn get_winsize(fd: BorrowedFd<'_>) -> std::io::Result<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` through a pointer to a live local, valid for the
    // call; `fd` is borrowed for its duration.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TIOCGWINSZ,
            &mut ws as *mut libc::winsize,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((ws.ws_col, ws.ws_row))
}
