//! The kernel-facing file operations layer unpacking needs, as safe functions over file
//! descriptors.
//!
//! Everything here works relative to a directory descriptor and never follows a symbolic link
//! in the name it is given (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`, `linkat` without
//! `AT_SYMLINK_FOLLOW`). Names passed in are single path components: callers split paths and
//! walk them one component at a time. This is the only module with `unsafe` code.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags};

/// What kind of file a directory entry is (from `lstat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    Symlink,
    Other,
}

fn errno(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful open call in this module and nothing else
    // holds it, so the new `OwnedFd` is its only owner and closes it exactly once.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn kind_of(st: &FileStat) -> Kind {
    match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
        SFlag::S_IFDIR => Kind::Dir,
        SFlag::S_IFLNK => Kind::Symlink,
        _ => Kind::Other,
    }
}

/// Open the directory at `path` (the final component must not be a symlink).
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let fd = nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno)?;
    Ok(own(fd))
}

/// Open the directory `name` inside `dir`; fails with `ELOOP`/`ENOTDIR` when `name` is a
/// symlink or not a directory.
pub fn open_dir_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    let fd = nix::fcntl::openat(
        Some(dir.as_raw_fd()),
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno)?;
    Ok(own(fd))
}

/// Create the regular file `name` inside `dir`; fails if anything exists under that name.
pub fn create_file_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<File> {
    let fd = nix::fcntl::openat(
        Some(dir.as_raw_fd()),
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(errno)?;
    Ok(File::from(own(fd)))
}

/// Create the directory `name` inside `dir` with `mode`.
pub fn mkdir_at(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<()> {
    nix::sys::stat::mkdirat(Some(dir.as_raw_fd()), name, Mode::from_bits_truncate(mode))
        .map_err(errno)
}

/// Create the symlink `name` inside `dir` with the given target text (never resolved here).
pub fn symlink_at(target: &OsStr, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    nix::unistd::symlinkat(target, Some(dir.as_raw_fd()), name).map_err(errno)
}

/// Hard-link `old_name` in `old_dir` as `new_name` in `new_dir`, without following a symlink
/// at `old_name` (the link then points at the symlink itself).
pub fn link_at(
    old_dir: BorrowedFd<'_>,
    old_name: &OsStr,
    new_dir: BorrowedFd<'_>,
    new_name: &OsStr,
) -> io::Result<()> {
    nix::unistd::linkat(
        Some(old_dir.as_raw_fd()),
        old_name,
        Some(new_dir.as_raw_fd()),
        new_name,
        AtFlags::empty(),
    )
    .map_err(errno)
}

/// Create an overlayfs whiteout (a character device 0:0, mode 0) named `name` inside `dir`.
pub fn whiteout_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    nix::sys::stat::mknodat(
        Some(dir.as_raw_fd()),
        name,
        SFlag::S_IFCHR,
        Mode::empty(),
        nix::sys::stat::makedev(0, 0),
    )
    .map_err(errno)
}

/// `lstat` of `name` inside `dir`; `None` when it does not exist.
pub fn kind_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<Kind>> {
    match nix::sys::stat::fstatat(Some(dir.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(kind_of(&st))),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(errno(e)),
    }
}

/// `fstat` of an open file: (kind, device, inode).
pub fn stat_fd(fd: BorrowedFd<'_>) -> io::Result<(Kind, u64, u64)> {
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(errno)?;
    Ok((kind_of(&st), st.st_dev, st.st_ino))
}

/// Remove `name` inside `dir`, recursively when it is a directory (its contents are opened
/// with `O_NOFOLLOW` and removed one by one; symlinks inside are unlinked, never followed).
pub fn remove_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    match kind_at(dir, name)? {
        None => Ok(()),
        Some(Kind::Dir) => {
            let sub = open_dir_at(dir, name)?;
            for child in list_dir(sub.as_fd())? {
                remove_at(sub.as_fd(), &child)?;
            }
            drop(sub);
            nix::unistd::unlinkat(Some(dir.as_raw_fd()), name, UnlinkatFlags::RemoveDir)
                .map_err(errno)
        }
        Some(_) => nix::unistd::unlinkat(Some(dir.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir)
            .map_err(errno),
    }
}

/// Names in the directory open at `dir`, without `.` and `..`.
pub fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    // `Dir` takes ownership of the descriptor it reads (closing it on failure too), so give it
    // a duplicate.
    let mut d = nix::dir::Dir::from(dir.try_clone_to_owned()?).map_err(errno)?;
    let mut names = Vec::new();
    for entry in d.iter() {
        let entry = entry.map_err(errno)?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_owned());
        }
    }
    Ok(names)
}

/// Change the owner of an open file.
pub fn fchown(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    nix::unistd::fchown(
        fd.as_raw_fd(),
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
    )
    .map_err(errno)
}

/// Change the owner of `name` inside `dir` without following it if it is a symlink.
pub fn lchown_at(dir: BorrowedFd<'_>, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
    nix::unistd::fchownat(
        Some(dir.as_raw_fd()),
        name,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(errno)
}

/// Set the permission bits (including setuid, setgid and sticky) of an open file.
pub fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    nix::sys::stat::fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(mode & 0o7777)).map_err(errno)
}

/// Set access and modification time of an open file to `mtime` (seconds since the epoch).
pub fn set_mtime(fd: BorrowedFd<'_>, mtime: i64) -> io::Result<()> {
    let t = TimeSpec::new(mtime, 0);
    nix::sys::stat::futimens(fd.as_raw_fd(), &t, &t).map_err(errno)
}

/// Set access and modification time of `name` inside `dir` without following a symlink.
pub fn set_mtime_at(dir: BorrowedFd<'_>, name: &OsStr, mtime: i64) -> io::Result<()> {
    let t = TimeSpec::new(mtime, 0);
    nix::sys::stat::utimensat(
        Some(dir.as_raw_fd()),
        name,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(errno)
}

/// Set the extended attribute `name` of an open file.
pub fn fsetxattr(fd: BorrowedFd<'_>, name: &str, value: &[u8]) -> io::Result<()> {
    let cname = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `fd` is a live descriptor borrowed for the duration of the call, `cname` is a
    // NUL-terminated string that outlives the call, and `value` points to `value.len()`
    // readable bytes; the kernel only reads from both buffers.
    let rc = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            cname.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Flush the whole file system that holds `fd` to stable storage.
pub fn syncfs(fd: BorrowedFd<'_>) -> io::Result<()> {
    nix::unistd::syncfs(fd.as_raw_fd()).map_err(errno)
}

/// Whether the process runs with an effective uid of 0.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
