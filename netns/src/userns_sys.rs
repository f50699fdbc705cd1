//! Kernel calls for pod user namespaces and idmapped mounts; with [`crate::sys`], the crate's
//! only `unsafe`.
//!
//! - [`clone_holder`]: a child process in new namespaces that only waits for a pipe to close.
//! - [`setns`]: move the calling thread into a namespace by descriptor.
//! - [`idmapped_bind`]: an idmapped copy of a mount (`open_tree` + `mount_setattr` +
//!   `move_mount`), the kernel's way to show a file system through a user namespace's mapping.
//!
//! No policy here: which mappings, which paths and what to roll back is `userns`'s business.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::sched::CloneFlags;

/// Stack of the holder child (it only calls `close` and `read`).
const HOLDER_STACK: usize = 64 * 1024;
/// `open_tree(2)`: make a detached copy of the mount instead of opening it.
const OPEN_TREE_CLONE: libc::c_uint = 1;
/// `move_mount(2)`: the source is the descriptor itself (empty path).
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
/// `mount_setattr(2)`: attach the user namespace's mapping to the mount.
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// `struct mount_attr` of `<linux/mount.h>` (MOUNT_ATTR_SIZE_VER0).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Start a child in the new namespaces `flags` that blocks reading `wait` and exits with
/// status 0 once that pipe reaches end of file (every write end closed, including by the
/// caller's death). `write_end` is the pipe's write end: the child closes its copy first, so
/// only the caller's keeps it waiting. Returns the child's pid; the caller must reap it.
pub fn clone_holder(
    flags: CloneFlags,
    wait: BorrowedFd<'_>,
    write_end: BorrowedFd<'_>,
) -> io::Result<u32> {
    let (rd, wr) = (wait.as_raw_fd(), write_end.as_raw_fd());
    let mut stack = vec![0u8; HOLDER_STACK];
    let cb = Box::new(move || -> isize {
        // In the child, a copy of a multi-threaded process: only async-signal-safe system
        // calls (close, read) and no allocation from here on.
        // SAFETY: `wr` is this child's own copy of the pipe's write end; nothing else in the
        // child uses it.
        unsafe { libc::close(wr) };
        let mut byte = 0u8;
        loop {
            // SAFETY: reads at most one byte into a live local; `rd` is the child's copy of
            // the pipe's read end.
            let n = unsafe { libc::read(rd, (&mut byte as *mut u8).cast(), 1) };
            if n < 0 && Errno::last() == Errno::EINTR {
                continue;
            }
            return 0;
        }
    });
    // SAFETY: without CLONE_VM the child runs on its own copy of `stack` and of the closure,
    // which only makes async-signal-safe calls (see above) and returns, ending the child; the
    // parent's copies stay valid until this function returns.
    let pid = unsafe { nix::sched::clone(cb, &mut stack, flags, Some(libc::SIGCHLD)) }?;
    Ok(pid.as_raw().unsigned_abs())
}

/// Move the calling thread into the namespace `ns` (any kind but user and mount, which a
/// multi-threaded process cannot join). Callers must own the thread and discard it afterwards.
pub fn setns(ns: BorrowedFd<'_>) -> io::Result<()> {
    Ok(nix::sched::setns(ns, CloneFlags::empty())?)
}

/// Reap our own child `pid`, waiting for it to exit.
pub fn reap_child(pid: u32) -> io::Result<()> {
    let pid = nix::unistd::Pid::from_raw(
        i32::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
    );
    loop {
        match nix::sys::wait::waitpid(pid, None) {
            Err(Errno::EINTR) => continue,
            Ok(_) | Err(Errno::ECHILD) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

fn c_path(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

/// Mount an idmapped copy of the mount at `src` (with every mount below it when `recursive`)
/// on `dst`, which must exist (a directory for a directory, a file for a file). Files owned
/// by id X on disk show as the id X maps to in `userns`, and ids written through it are
/// mapped back.
pub fn idmapped_bind(
    src: &Path,
    dst: &Path,
    userns: BorrowedFd<'_>,
    recursive: bool,
) -> io::Result<()> {
    let (src, dst) = (c_path(src)?, c_path(dst)?);
    let recursive_flag = if recursive { libc::AT_RECURSIVE } else { 0 };
    let open_flags =
        OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | recursive_flag as libc::c_uint;
    // SAFETY: open_tree takes a directory descriptor, a NUL-terminated path that lives across
    // the call and flags; it returns a new descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            src.as_ptr(),
            open_flags,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: on success the kernel returned a new descriptor that nothing else owns.
    let tree = unsafe { OwnedFd::from_raw_fd(fd) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd().unsigned_abs().into(),
    };
    let empty = c"";
    // SAFETY: `tree` is open, `empty` is a NUL-terminated string, `attr` is a live, correctly
    // laid out `struct mount_attr` whose size is passed along; nothing is written back.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH | recursive_flag,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `tree` is open, both paths are NUL-terminated strings live across the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            dst.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
