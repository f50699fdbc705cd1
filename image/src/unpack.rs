//! Unpacking one layer blob into a directory, safely against hostile layers.
//!
//! The daemon runs as root, so a layer tar is a security boundary. The invariants:
//! - nothing is ever written outside the destination directory: every entry path is split
//!   into components, leading `/` and `.` are dropped, `..` is refused, and each parent
//!   directory is opened relative to the previous one with `O_NOFOLLOW` (a symlink in a parent
//!   position is an error, never followed);
//! - the final component is created with `O_CREAT|O_EXCL|O_NOFOLLOW` (or `mkdirat`,
//!   `symlinkat`, `linkat` without `AT_SYMLINK_FOLLOW`) after removing whatever was there, so
//!   writing never goes through an existing symlink;
//! - symlinks are created with whatever target text they carry: they are resolved only later,
//!   inside the container's root;
//! - hard links must name an existing non-directory inside the layer, found the same way;
//! - device nodes and FIFOs are skipped (with a warning), except the overlayfs whiteout form
//!   (a 0:0 character device);
//! - OCI whiteouts become overlayfs ones: `.wh.<name>` → a 0:0 character device `<name>`,
//!   `.wh..wh..opq` → `trusted.overlay.opaque=y` on the directory;
//! - `trusted.*` and `*.overlay.*` extended attributes from the tar are dropped, so a layer
//!   cannot steer overlayfs (redirects, metacopy, opacity) itself;
//! - the uncompressed stream is hashed as it is read and must match the config's diff_id.
//!
//! Modes (setuid bits included), owners, mtimes and the kept xattrs are applied to each entry;
//! directory modes and mtimes at the end, deepest first, since adding children changes them.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use tar::EntryType;

use crate::digest::HashingReader;
use crate::sys::{self, Kind};
use crate::ImageError;

/// Longest entry path accepted (Linux `PATH_MAX`); bounds directory depth too.
const MAX_PATH: usize = 4096;
const WHITEOUT_PREFIX: &[u8] = b".wh.";
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
const WHITEOUT_OPAQUE: &[u8] = b".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// From the media type; `None` when the media type does not say.
    pub fn from_media_type(mt: &str) -> Option<Compression> {
        if mt.ends_with("+gzip") || mt.ends_with(".gzip") {
            Some(Compression::Gzip)
        } else if mt.ends_with("+zstd") || mt.ends_with(".zstd") {
            Some(Compression::Zstd)
        } else if mt.ends_with(".tar") {
            Some(Compression::None)
        } else {
            None
        }
    }

    /// From the first bytes of the blob.
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Unpack the layer blob `blob` (media type `media_type`, digest `layer` for messages) into the
/// existing, empty directory `dest`, and check its uncompressed digest is `diff_id`.
pub(crate) fn unpack_layer(
    blob: File,
    media_type: &str,
    layer: &str,
    diff_id: &str,
    dest: &Path,
    max_unpacked: u64,
) -> Result<(), ImageError> {
    let archive_err = |source| ImageError::LayerArchive {
        layer: layer.to_owned(),
        source,
    };
    let mut buffered = BufReader::with_capacity(256 * 1024, blob);
    let compression = match Compression::from_media_type(media_type) {
        Some(c) => c,
        None => Compression::sniff(buffered.fill_buf().map_err(archive_err)?),
    };
    let decoded: Box<dyn Read> = match compression {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(buffered).map_err(archive_err)?)
        }
    };
    let root = sys::open_dir(dest).map_err(ImageError::io("open", dest))?;
    let mut unpacker = Unpacker {
        root,
        layer,
        dirs: HashMap::new(),
        chown: sys::is_root(),
    };
    // The layer root: 0755 unless the tar has an entry for "." that says otherwise.
    unpacker.dirs.insert(Vec::new(), (0o755, None));

    let too_large = || ImageError::LayerTooLarge {
        layer: layer.to_owned(),
        limit: max_unpacked,
    };
    let limited = Limited {
        inner: decoded,
        left: max_unpacked,
    };
    let classify = |e: io::Error| {
        if is_over_limit(&e) {
            too_large()
        } else {
            archive_err(e)
        }
    };
    let mut archive = tar::Archive::new(HashingReader::new(limited));
    for entry in archive.entries().map_err(classify)? {
        let mut entry = entry.map_err(classify)?;
        unpacker.entry(&mut entry).map_err(|e| match e {
            ImageError::LayerArchive { source, .. } | ImageError::LayerEntry { source, .. }
                if is_over_limit(&source) =>
            {
                too_large()
            }
            other => other,
        })?;
    }
    let (actual, _) = archive.into_inner().finish().map_err(classify)?;
    if actual != diff_id {
        return Err(ImageError::DiffIdMismatch {
            layer: layer.to_owned(),
            expected: diff_id.to_owned(),
            actual,
        });
    }
    unpacker.finish_dirs()
}

/// The uncompressed stream, cut off with an error once more than `left` bytes were read.
struct Limited<R> {
    inner: R,
    left: u64,
}

const OVER_LIMIT: &str = "layer larger than the unpacked size limit";

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            // One byte more tells "exactly the limit" from "over it".
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(std::io::Error::other(OVER_LIMIT)),
            };
        }
        let cap = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..cap])?;
        self.left -= n as u64;
        Ok(n)
    }
}

fn is_over_limit(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|i| i.to_string() == OVER_LIMIT) || e.to_string().contains(OVER_LIMIT)
}

/// Metadata of an entry, with PAX overrides applied.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    xattrs: Vec<(String, Vec<u8>)>,
}

/// Why walking to a parent directory failed.
enum WalkError {
    Symlink,
    NotDir,
    Missing,
    Io(io::Error),
}

struct Unpacker<'a> {
    root: OwnedFd,
    layer: &'a str,
    /// Directories whose mode and mtime are set at the end: components → (mode, mtime).
    dirs: HashMap<Vec<OsString>, (u32, Option<i64>)>,
    chown: bool,
}

/// What is wrong with a path in a tar header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BadPath {
    TooLong,
    Nul,
    DotDot,
}

impl BadPath {
    /// The reason, for the entry's own path or for a hard link's target.
    fn reason(self, link_target: bool) -> &'static str {
        match (self, link_target) {
            (BadPath::TooLong, false) => "path longer than PATH_MAX",
            (BadPath::Nul, false) => "NUL byte in path",
            (BadPath::DotDot, false) => "path has a `..` component",
            (BadPath::TooLong, true) => "hard link target longer than PATH_MAX",
            (BadPath::Nul, true) => "NUL byte in hard link target",
            (BadPath::DotDot, true) => "hard link target has a `..` component",
        }
    }
}

/// Split an entry path into components: drop empty and `.` components (so a leading `/` is
/// stripped), refuse `..`, NUL and over-long paths.
fn split_path(raw: &[u8]) -> Result<Vec<OsString>, BadPath> {
    if raw.len() > MAX_PATH {
        return Err(BadPath::TooLong);
    }
    if raw.contains(&0) {
        return Err(BadPath::Nul);
    }
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => continue,
            b".." => return Err(BadPath::DotDot),
            c => out.push(OsStr::from_bytes(c).to_owned()),
        }
    }
    Ok(out)
}

fn is_not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

impl Unpacker<'_> {
    fn unsafe_entry(&self, entry: &str, reason: &'static str) -> ImageError {
        ImageError::UnsafeEntry {
            layer: self.layer.to_owned(),
            entry: entry.to_owned(),
            reason,
        }
    }

    fn entry_err(&self, entry: &str, op: &'static str) -> impl FnOnce(io::Error) -> ImageError {
        let (layer, entry) = (self.layer.to_owned(), entry.to_owned());
        move |source| ImageError::LayerEntry {
            layer,
            entry,
            op,
            source,
        }
    }

    /// Open the directory at `comps` (relative to the layer root) without following symlinks,
    /// creating missing directories (mode 0755, owned by root) when `create` is set.
    fn walk(&self, comps: &[OsString], create: bool) -> Result<OwnedFd, WalkError> {
        let mut cur = self.root.try_clone().map_err(WalkError::Io)?;
        for c in comps {
            let next = match sys::open_dir_at(cur.as_fd(), c) {
                Ok(fd) => fd,
                Err(e) if is_not_found(&e) && create => {
                    match sys::mkdir_at(cur.as_fd(), c, 0o755) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(WalkError::Io(e)),
                    }
                    sys::open_dir_at(cur.as_fd(), c).map_err(WalkError::Io)?
                }
                Err(e) if is_not_found(&e) => return Err(WalkError::Missing),
                Err(e) => {
                    return Err(match sys::kind_at(cur.as_fd(), c) {
                        Ok(Some(Kind::Symlink)) => WalkError::Symlink,
                        Ok(Some(Kind::Other)) => WalkError::NotDir,
                        Ok(None) => WalkError::Missing,
                        _ => WalkError::Io(e),
                    })
                }
            };
            cur = next;
        }
        Ok(cur)
    }

    fn parent_of(&self, comps: &[OsString], shown: &str) -> Result<OwnedFd, ImageError> {
        self.walk(comps, true).map_err(|e| match e {
            WalkError::Symlink => self.unsafe_entry(shown, "a parent directory is a symlink"),
            WalkError::NotDir | WalkError::Missing => {
                self.unsafe_entry(shown, "a parent is not a directory")
            }
            WalkError::Io(e) => self.entry_err(shown, "open parent directory")(e),
        })
    }

    /// Remove whatever is at `name` in `dir` (recursively for a directory).
    fn clear(&self, dir: BorrowedFd<'_>, name: &OsStr, shown: &str) -> Result<(), ImageError> {
        sys::remove_at(dir, name).map_err(self.entry_err(shown, "replace existing entry"))
    }

    fn meta<R: Read>(&self, e: &mut tar::Entry<'_, R>, shown: &str) -> Result<Meta, ImageError> {
        let h = e.header();
        let mode = h.mode().map_err(self.entry_err(shown, "read mode"))?;
        let mut uid = h.uid().map_err(self.entry_err(shown, "read uid"))?;
        let mut gid = h.gid().map_err(self.entry_err(shown, "read gid"))?;
        let mut mtime = h.mtime().map_err(self.entry_err(shown, "read mtime"))? as i64;
        let mut xattrs = Vec::new();
        if let Some(pax) = e
            .pax_extensions()
            .map_err(self.entry_err(shown, "read PAX header"))?
        {
            for ext in pax.flatten() {
                let Ok(key) = ext.key() else { continue };
                let value = ext.value_bytes();
                let num = || std::str::from_utf8(value).ok();
                match key {
                    "uid" => uid = num().and_then(|v| v.parse().ok()).unwrap_or(uid),
                    "gid" => gid = num().and_then(|v| v.parse().ok()).unwrap_or(gid),
                    "mtime" => {
                        mtime = num()
                            .and_then(|v| v.split('.').next())
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(mtime)
                    }
                    k => {
                        if let Some(name) = k.strip_prefix("SCHILY.xattr.") {
                            xattrs.push((name.to_owned(), value.to_vec()));
                        }
                    }
                }
            }
        }
        let id = |v: u64| {
            u32::try_from(v).map_err(|_| self.unsafe_entry(shown, "uid or gid out of range"))
        };
        Ok(Meta {
            mode: mode & 0o7777,
            uid: id(uid)?,
            gid: id(gid)?,
            mtime,
            xattrs,
        })
    }

    fn entry<R: Read>(&mut self, e: &mut tar::Entry<'_, R>) -> Result<(), ImageError> {
        let raw = e.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let comps = split_path(&raw).map_err(|bad| self.unsafe_entry(&shown, bad.reason(false)))?;
        let kind = e.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let meta = self.meta(e, &shown)?;
        let Some((name, parents)) = comps.split_last() else {
            // The layer root itself.
            if kind.is_dir() {
                self.apply_owner_and_xattrs(self.root.as_fd(), true, &meta, &shown)?;
                self.dirs.insert(Vec::new(), (meta.mode, Some(meta.mtime)));
                return Ok(());
            }
            return Err(self.unsafe_entry(&shown, "entry would replace the layer root"));
        };
        let name_bytes = name.as_bytes();

        if name_bytes.starts_with(WHITEOUT_PREFIX) {
            let parent = self.parent_of(parents, &shown)?;
            return self.whiteout_entry(parent.as_fd(), name_bytes, &shown);
        }

        let parent = self.parent_of(parents, &shown)?;
        let pfd = parent.as_fd();
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.clear(pfd, name, &shown)?;
                let mut file = sys::create_file_at(pfd, name)
                    .map_err(self.entry_err(&shown, "create file"))?;
                self.copy_data(e, &mut file, &shown)?;
                self.apply_owner_and_xattrs(file.as_fd(), false, &meta, &shown)?;
                sys::set_mtime(file.as_fd(), meta.mtime)
                    .map_err(self.entry_err(&shown, "set mtime"))
            }
            EntryType::Directory => self.dir_entry(pfd, name, &comps, &meta, &shown),
            EntryType::Symlink => {
                let target = e.link_name_bytes().map(|t| t.into_owned());
                self.symlink_entry(pfd, name, target, &meta, &shown)
            }
            EntryType::Link => self.hard_link(e, pfd, name, &shown),
            EntryType::Char
                if e.header().device_major().ok().flatten() == Some(0)
                    && e.header().device_minor().ok().flatten() == Some(0) =>
            {
                self.whiteout(pfd, name, &shown)
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                tracing::warn!(layer = self.layer, entry = %shown, kind = ?kind, "skipping device node or FIFO in layer");
                Ok(())
            }
            other => {
                tracing::warn!(layer = self.layer, entry = %shown, kind = ?other, "skipping tar entry of unsupported type");
                Ok(())
            }
        }
    }

    /// A `.wh.` entry: the opaque-directory marker, ignored whiteout metadata, or a whiteout of
    /// the named sibling.
    fn whiteout_entry(
        &self,
        parent: BorrowedFd<'_>,
        name_bytes: &[u8],
        shown: &str,
    ) -> Result<(), ImageError> {
        if name_bytes == WHITEOUT_OPAQUE {
            return sys::fsetxattr(parent, OPAQUE_XATTR, b"y")
                .map_err(self.entry_err(shown, "mark directory opaque"));
        }
        if name_bytes.starts_with(WHITEOUT_META_PREFIX) {
            tracing::debug!(layer = self.layer, entry = %shown, "ignoring whiteout metadata entry");
            return Ok(());
        }
        let target = &name_bytes[WHITEOUT_PREFIX.len()..];
        if matches!(target, b"" | b"." | b"..") {
            return Err(self.unsafe_entry(shown, "whiteout target lies outside the layer"));
        }
        self.whiteout(parent, OsStr::from_bytes(target), shown)
    }

    /// A directory entry: made (replacing a non-directory) or kept, owner and xattrs applied;
    /// its mode and mtime are set once the whole layer is unpacked.
    fn dir_entry(
        &mut self,
        pfd: BorrowedFd<'_>,
        name: &OsStr,
        comps: &[OsString],
        meta: &Meta,
        shown: &str,
    ) -> Result<(), ImageError> {
        match sys::kind_at(pfd, name).map_err(self.entry_err(shown, "stat"))? {
            Some(Kind::Dir) => {}
            Some(_) => {
                self.clear(pfd, name, shown)?;
                sys::mkdir_at(pfd, name, 0o700)
                    .map_err(self.entry_err(shown, "create directory"))?;
            }
            None => sys::mkdir_at(pfd, name, 0o700)
                .map_err(self.entry_err(shown, "create directory"))?,
        }
        let dir = sys::open_dir_at(pfd, name).map_err(self.entry_err(shown, "open directory"))?;
        self.apply_owner_and_xattrs(dir.as_fd(), true, meta, shown)?;
        self.dirs
            .insert(comps.to_vec(), (meta.mode, Some(meta.mtime)));
        Ok(())
    }

    /// A symlink entry (its target never followed), owner and mtime set on the link itself.
    fn symlink_entry(
        &self,
        pfd: BorrowedFd<'_>,
        name: &OsStr,
        target: Option<Vec<u8>>,
        meta: &Meta,
        shown: &str,
    ) -> Result<(), ImageError> {
        let target = target
            .filter(|t| !t.is_empty())
            .ok_or_else(|| self.unsafe_entry(shown, "symlink without a target"))?;
        if target.contains(&0) {
            return Err(self.unsafe_entry(shown, "NUL byte in symlink target"));
        }
        self.clear(pfd, name, shown)?;
        sys::symlink_at(OsStr::from_bytes(&target), pfd, name)
            .map_err(self.entry_err(shown, "create symlink"))?;
        if self.chown {
            sys::lchown_at(pfd, name, meta.uid, meta.gid)
                .map_err(self.entry_err(shown, "chown symlink"))?;
        }
        sys::set_mtime_at(pfd, name, meta.mtime).map_err(self.entry_err(shown, "set mtime"))
    }

    fn copy_data(
        &self,
        from: &mut impl Read,
        to: &mut File,
        shown: &str,
    ) -> Result<(), ImageError> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(ImageError::LayerArchive {
                        layer: self.layer.to_owned(),
                        source,
                    })
                }
            };
            to.write_all(&buf[..n])
                .map_err(self.entry_err(shown, "write"))?;
        }
    }

    fn whiteout(&self, dir: BorrowedFd<'_>, name: &OsStr, shown: &str) -> Result<(), ImageError> {
        self.clear(dir, name, shown)?;
        sys::whiteout_at(dir, name).map_err(self.entry_err(shown, "create whiteout"))
    }

    fn hard_link<R: Read>(
        &self,
        e: &tar::Entry<'_, R>,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        shown: &str,
    ) -> Result<(), ImageError> {
        let target = e
            .link_name_bytes()
            .map(|t| t.into_owned())
            .ok_or_else(|| self.unsafe_entry(shown, "hard link without a target"))?;
        let tcomps =
            split_path(&target).map_err(|bad| self.unsafe_entry(shown, bad.reason(true)))?;
        let Some((tname, tparents)) = tcomps.split_last() else {
            return Err(self.unsafe_entry(shown, "hard link to the layer root"));
        };
        let outside = "hard link target is not a file in the layer";
        let tdir = self.walk(tparents, false).map_err(|e| match e {
            WalkError::Symlink => {
                self.unsafe_entry(shown, "hard link target path goes through a symlink")
            }
            WalkError::NotDir | WalkError::Missing => self.unsafe_entry(shown, outside),
            WalkError::Io(e) => self.entry_err(shown, "open hard link target directory")(e),
        })?;
        match sys::kind_at(tdir.as_fd(), tname)
            .map_err(self.entry_err(shown, "stat hard link target"))?
        {
            None => return Err(self.unsafe_entry(shown, outside)),
            Some(Kind::Dir) => return Err(self.unsafe_entry(shown, "hard link to a directory")),
            Some(_) => {}
        }
        let (_, dev_a, ino_a) =
            sys::stat_fd(tdir.as_fd()).map_err(self.entry_err(shown, "stat"))?;
        let (_, dev_b, ino_b) = sys::stat_fd(dir).map_err(self.entry_err(shown, "stat"))?;
        if (dev_a, ino_a) == (dev_b, ino_b) && tname == name {
            return Ok(()); // a link to itself
        }
        self.clear(dir, name, shown)?;
        sys::link_at(tdir.as_fd(), tname, dir, name)
            .map_err(self.entry_err(shown, "create hard link"))
    }

    /// Owner, then mode (chown clears setuid bits), then xattrs (chown clears file
    /// capabilities). Directory modes are set at the end instead.
    fn apply_owner_and_xattrs(
        &self,
        fd: BorrowedFd<'_>,
        is_dir: bool,
        m: &Meta,
        shown: &str,
    ) -> Result<(), ImageError> {
        if self.chown {
            sys::fchown(fd, m.uid, m.gid).map_err(self.entry_err(shown, "chown"))?;
        }
        if !is_dir {
            sys::fchmod(fd, m.mode).map_err(self.entry_err(shown, "chmod"))?;
        }
        for (k, v) in &m.xattrs {
            if !xattr_allowed(k) {
                tracing::debug!(layer = self.layer, entry = %shown, xattr = %k, "dropping extended attribute");
                continue;
            }
            if let Err(err) = sys::fsetxattr(fd, k, v) {
                tracing::warn!(layer = self.layer, entry = %shown, xattr = %k, %err, "cannot set extended attribute");
            }
        }
        Ok(())
    }

    /// Set directory modes and mtimes, deepest first; directories removed later in the
    /// archive are skipped.
    fn finish_dirs(self) -> Result<(), ImageError> {
        let mut dirs: Vec<_> = self.dirs.iter().collect();
        dirs.sort_by_key(|(comps, _)| std::cmp::Reverse(comps.len()));
        for (comps, &(mode, mtime)) in dirs {
            let shown = comps
                .iter()
                .map(|c| c.to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            let fd = match self.walk(comps, false) {
                Ok(fd) => fd,
                Err(WalkError::Io(e)) => return Err(self.entry_err(&shown, "open directory")(e)),
                Err(_) => continue,
            };
            sys::fchmod(fd.as_fd(), mode).map_err(self.entry_err(&shown, "chmod"))?;
            if let Some(t) = mtime {
                sys::set_mtime(fd.as_fd(), t).map_err(self.entry_err(&shown, "set mtime"))?;
            }
        }
        Ok(())
    }
}

/// Extended attributes kept from layers: user attributes (but not overlayfs' `user.overlay.*`),
/// file capabilities and POSIX ACLs. `trusted.*` (overlayfs' own), `security.selinux` and the
/// rest are dropped.
fn xattr_allowed(name: &str) -> bool {
    (name.starts_with("user.") && !name.starts_with("user.overlay."))
        || name == "security.capability"
        || name == "system.posix_acl_access"
        || name == "system.posix_acl_default"
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gzip bomb: 16 MiB of zeros in one file, compressed to ~16 KiB.
    fn gzip_bomb() -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(16 << 20);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        tar.append_data(&mut h, "zeros", std::io::repeat(0).take(16 << 20))
            .unwrap();
        let raw = tar.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn a_layer_larger_than_the_limit_stops_with_a_clear_error() {
        let bomb = gzip_bomb();
        assert!(bomb.len() < 1 << 20, "compressed {} bytes", bomb.len());
        let dir = tempfile::tempdir().unwrap();
        let blob = dir.path().join("blob");
        std::fs::write(&blob, &bomb).unwrap();
        let dest = dir.path().join("layer");
        std::fs::create_dir(&dest).unwrap();
        let open = || File::open(&blob).unwrap();
        let mt = "application/vnd.oci.image.layer.v1.tar+gzip";
        let e = unpack_layer(open(), mt, "sha256:bomb", "sha256:00", &dest, 2 << 20).unwrap_err();
        assert!(
            matches!(&e, ImageError::LayerTooLarge { limit, .. } if *limit == 2 << 20),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains("sha256:bomb") && msg.contains("max-unpacked-layer-bytes"),
            "{msg}"
        );
        // Under the limit the same layer unpacks (then fails only its diff_id check).
        let dest2 = dir.path().join("layer2");
        std::fs::create_dir(&dest2).unwrap();
        let e = unpack_layer(open(), mt, "sha256:bomb", "sha256:00", &dest2, 17 << 20).unwrap_err();
        assert!(matches!(e, ImageError::DiffIdMismatch { .. }), "{e:?}");
    }

    #[test]
    fn paths_are_split_and_checked() {
        let s = |p: &str| {
            split_path(p.as_bytes()).map(|v| {
                v.into_iter()
                    .map(|c| c.into_string().unwrap())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(s("/abs/path").unwrap(), ["abs", "path"]);
        assert_eq!(s("./a//b/./c/").unwrap(), ["a", "b", "c"]);
        assert!(s("./").unwrap().is_empty());
        assert_eq!(s("../evil"), Err(BadPath::DotDot));
        assert!(s("a/../../b").is_err());
        assert!(s("a/..").is_err());
        assert!(split_path(b"a\0b").is_err());
        assert!(split_path(&vec![b'a'; MAX_PATH + 1]).is_err());
    }

    #[test]
    fn compression_from_media_type_and_magic() {
        use Compression::*;
        assert_eq!(
            Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+gzip"),
            Some(Gzip)
        );
        assert_eq!(
            Compression::from_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Some(Gzip)
        );
        assert_eq!(
            Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+zstd"),
            Some(Zstd)
        );
        assert_eq!(
            Compression::from_media_type("application/vnd.oci.image.layer.v1.tar"),
            Some(None)
        );
        assert_eq!(
            Compression::from_media_type("application/octet-stream"),
            Option::None
        );
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8]), Gzip);
        assert_eq!(Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd]), Zstd);
        assert_eq!(Compression::sniff(b"bin/"), None);
    }

    #[test]
    fn overlay_xattrs_are_dropped() {
        assert!(xattr_allowed("user.foo"));
        assert!(xattr_allowed("security.capability"));
        assert!(!xattr_allowed("trusted.overlay.opaque"));
        assert!(!xattr_allowed("trusted.overlay.redirect"));
        assert!(!xattr_allowed("user.overlay.opaque"));
        assert!(!xattr_allowed("security.selinux"));
    }
}
