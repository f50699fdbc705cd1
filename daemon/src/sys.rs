//! The daemon's only `unsafe`: registering a pidfd with the tokio reactor.

use std::os::fd::OwnedFd;

use tokio::io::unix::AsyncFd;

/// Register an owned pidfd so its readiness (= the process exited) can be awaited.
pub fn async_pidfd(fd: OwnedFd) -> std::io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: `register` requires the descriptor to stay valid and open for the lifetime of the
    // AsyncFd; the AsyncFd owns the OwnedFd, which closes it only when dropped with it.
    unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)
}
