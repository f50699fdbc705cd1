//! Size-based rotation of the CRI log file, done by the shim that writes it, so the bytes a
//! container's output keeps on disk are bounded however fast it writes (the kubelet checks
//! sizes every 10 s, and a container writing at full speed fills a disk between two checks).
//!
//! The layout is the kubelet's container log manager's (`pkg/kubelet/logs`): the current file
//! keeps its path; a rotated one is renamed `<path>.<YYYYMMDD-HHMMSS.nnnnnnnnn>` (nanoseconds
//! added so several rotations in one second stay apart; names sort by time); every rotated file
//! but the newest is gzip-compressed to `<rotated name>.gz`; the oldest rotated files are
//! removed so that at most `max_files` files exist, the current one and the compressed ones
//! included. The shim rotates before a write that would pass the size, so the bound is
//! `max_size × max_files` (compressed files are smaller still).
//!
//! Who does what:
//! - [`Rotator::rotate`], on the write path: removes the oldest rotated files beyond
//!   `max_files - 2` and renames the current file away (the caller opens a new one). A rename
//!   and an unlink or two: the container's output is never held up by compression.
//! - A compressor thread of the rotator's own (started at the first rotation, woken after each):
//!   compresses every uncompressed rotated file but the newest into an unnamed file
//!   (`O_TMPFILE`) in the same directory (or, where the file system lacks it, a hidden
//!   `.<rotated name>.gz.tmp`, not matched by `<path>.*`), then links it in as
//!   `<rotated name>.gz` and removes the uncompressed file. The link and the removal are
//!   done under the rotator's lock, which `rotate` also takes, after checking that the file was
//!   not removed meanwhile, so a compressed copy of a file rotated away is never brought back.
//!   It also cleans what an interrupted compression left (its temporary files, an uncompressed
//!   file next to its `.gz`).
//! - [`Rotator::finish`] waits for pending compression (the shim calls it before it exits).
//!
//! A kubelet that rotates the same file itself (rename, then `ReopenContainerLog`) fits in: its
//! rotated and compressed files match the same patterns; its own `*.tmp` files are left alone.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

/// Suffix of a compressed rotated file.
const GZ: &str = ".gz";
/// Suffix of temporary files (ours are hidden; a kubelet's are `<path>.*.tmp`).
const TMP: &str = ".tmp";
/// Stack of the compressor thread: it only streams through gzip.
const COMPRESSOR_STACK: usize = 256 * 1024;

/// When to rotate and how many files to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRotation {
    /// Rotate once the current file reaches this many bytes.
    pub max_size: u64,
    /// Files kept in all, the current one included (at least 2).
    pub max_files: usize,
}

impl LogRotation {
    /// `None` when rotation is off (a size of 0).
    pub fn new(max_size: u64, max_files: usize) -> Option<LogRotation> {
        (max_size > 0).then_some(LogRotation {
            max_size,
            max_files: max_files.max(2),
        })
    }
}

/// Rotates one log file and compresses its rotated files (see the module docs).
#[derive(Debug)]
pub struct Rotator {
    path: PathBuf,
    rotation: LogRotation,
    /// Held while rotated files are removed or renamed.
    lock: Arc<Mutex<()>>,
    compressor: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

impl Rotator {
    pub fn new(path: &Path, rotation: LogRotation) -> Rotator {
        Rotator {
            path: path.to_owned(),
            rotation,
            lock: Arc::default(),
            compressor: None,
        }
    }

    pub fn rotation(&self) -> LogRotation {
        self.rotation
    }

    /// Remove rotated files beyond the limit and rename the current file away; then wake the
    /// compressor. The caller opens a new file at the path.
    pub fn rotate(&mut self) -> io::Result<()> {
        {
            let _held = hold(&self.lock);
            let rotated = rotated_files(&self.path)?;
            let excess = rotated.len().saturating_sub(self.rotation.max_files - 2);
            for old in &rotated[..excess] {
                remove_if_present(old)?;
            }
            std::fs::rename(&self.path, rotated_name(&self.path, chrono::Utc::now()))?;
        }
        self.wake_compressor();
        Ok(())
    }

    /// Wait until the rotated files are compressed, and stop the compressor.
    pub fn finish(&mut self) {
        if let Some((tx, handle)) = self.compressor.take() {
            drop(tx);
            let _ = handle.join();
        }
    }

    fn wake_compressor(&mut self) {
        if self.compressor.is_none() {
            let (tx, rx) = mpsc::channel();
            let (path, lock) = (self.path.clone(), self.lock.clone());
            let spawned = std::thread::Builder::new()
                .name("log-compress".into())
                .stack_size(COMPRESSOR_STACK)
                .spawn(move || compressor(&path, &lock, &rx));
            match spawned {
                Ok(handle) => self.compressor = Some((tx, handle)),
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), err = %e,
                        "no log compressor thread: rotated files stay uncompressed");
                    return;
                }
            }
        }
        if let Some((tx, _)) = &self.compressor {
            let _ = tx.send(());
        }
    }
}

impl Drop for Rotator {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The compressor thread: one pass per wake-up (wake-ups that queued meanwhile are one).
fn compressor(path: &Path, lock: &Mutex<()>, rx: &mpsc::Receiver<()>) {
    while rx.recv().is_ok() {
        while rx.try_recv().is_ok() {}
        if let Err(e) = compress_rotated(path, lock) {
            tracing::warn!(path = %path.display(), err = %e, "compressing rotated container logs failed");
        }
    }
}

fn hold(m: &Mutex<()>) -> std::sync::MutexGuard<'_, ()> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The name a rotated file gets.
fn rotated_name(path: &Path, now: chrono::DateTime<chrono::Utc>) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{}", now.format("%Y%m%d-%H%M%S.%9f")));
    PathBuf::from(s)
}

/// Rotated files of `path` (`<path>.*`, compressed or not, without temporary files), oldest
/// first.
pub fn rotated_files(path: &Path) -> io::Result<Vec<PathBuf>> {
    let mut prefix = file_name(path)?.to_owned();
    prefix.push(".");
    let mut out: Vec<PathBuf> = entries_with_prefix(path, prefix.as_encoded_bytes())?
        .into_iter()
        .filter(|p| !p.as_os_str().as_encoded_bytes().ends_with(TMP.as_bytes()))
        .collect();
    out.sort();
    Ok(out)
}

fn file_name(path: &Path) -> io::Result<&std::ffi::OsStr> {
    path.file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "log path has no file name"))
}

fn entries_with_prefix(path: &Path, prefix: &[u8]) -> io::Result<Vec<PathBuf>> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    Ok(std::fs::read_dir(dir)?
        .flatten()
        .filter(|e| e.file_name().as_encoded_bytes().starts_with(prefix))
        .map(|e| e.path())
        .collect())
}

fn remove_if_present(p: &Path) -> io::Result<()> {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The hidden temporary file `rotated` is compressed into.
fn temp_name(rotated: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(rotated.file_name().unwrap_or_default());
    name.push(GZ);
    name.push(TMP);
    rotated.with_file_name(name)
}

/// Compress every uncompressed rotated file of `path` but the newest; clean what an earlier
/// pass left unfinished.
fn compress_rotated(path: &Path, lock: &Mutex<()>) -> io::Result<()> {
    // Temporary files of ours: only this thread makes them, so any found now is stale.
    let mut hidden = std::ffi::OsString::from(".");
    hidden.push(file_name(path)?);
    hidden.push(".");
    for p in entries_with_prefix(path, hidden.as_encoded_bytes())? {
        if p.as_os_str()
            .as_encoded_bytes()
            .ends_with(format!("{GZ}{TMP}").as_bytes())
        {
            remove_if_present(&p)?;
        }
    }
    let rotated = rotated_files(path)?;
    let Some((_newest, older)) = rotated.split_last() else {
        return Ok(());
    };
    for p in older {
        if !p.as_os_str().as_encoded_bytes().ends_with(GZ.as_bytes()) {
            compress_file(p, lock)?;
        }
    }
    Ok(())
}

/// Compress `src` to `<src>.gz` and remove `src`. The compressed copy is written to an unnamed
/// file (`O_TMPFILE`) in the same directory, linked in as `<src>.gz` once complete, so nothing
/// half-written is ever seen there; on a file system without `O_TMPFILE`, through a hidden
/// temporary file.
fn compress_file(src: &Path, lock: &Mutex<()>) -> io::Result<()> {
    let gz = with_suffix(src, GZ);
    if gz.exists() {
        // An earlier pass compressed it but did not remove it.
        let _held = hold(lock);
        return remove_if_present(src);
    }
    let mut input = match std::fs::File::open(src) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let (out, named) = temp_file(src)?;
    let written = (|| {
        let mut enc =
            flate2::write::GzEncoder::new(io::BufWriter::new(&out), flate2::Compression::default());
        io::copy(&mut input, &mut enc)?;
        io::Write::flush(&mut enc.finish()?)
    })();
    let _held = hold(lock);
    if written.is_err() || !src.exists() {
        // Failed, or `src` was rotated away meanwhile: its copy must not come back.
        if let Some(tmp) = &named {
            remove_if_present(tmp)?;
        }
        return written;
    }
    match &named {
        Some(tmp) => std::fs::rename(tmp, &gz)?,
        None => link_unnamed(&out, &gz)?,
    }
    remove_if_present(src)
}

/// A file to write `src`'s compressed copy to: unnamed, or (where the file system has no
/// `O_TMPFILE`) the hidden temporary file, also returned.
fn temp_file(src: &Path) -> io::Result<(std::fs::File, Option<PathBuf>)> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = match src.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let unnamed = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o640)
        .open(dir);
    match unnamed {
        Ok(f) => Ok((f, None)),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
            ) =>
        {
            let tmp = temp_name(src);
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o640)
                .open(&tmp)?;
            Ok((f, Some(tmp)))
        }
        Err(e) => Err(e),
    }
}

/// Give the unnamed file `f` (`O_TMPFILE`) the name `to`.
fn link_unnamed(f: &std::fs::File, to: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let from = PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()));
    nix::unistd::linkat(
        None,
        from.as_path(),
        None,
        to,
        nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
    )
    .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(p: &Path) -> String {
        let mut s = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(p).unwrap())
            .read_to_string(&mut s)
            .unwrap();
        s
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn rotated_names_sort_by_time() {
        let path = Path::new("/l/0.log");
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-30T21:33:01.000000005Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            rotated_name(path, t),
            Path::new("/l/0.log.20261130-213301.000000005")
        );
        assert_eq!(
            temp_name(Path::new("/l/0.log.20261130-213301.000000005")),
            Path::new("/l/.0.log.20261130-213301.000000005.gz.tmp")
        );
        assert_eq!(LogRotation::new(0, 5), None);
        assert_eq!(LogRotation::new(1, 1).unwrap().max_files, 2);
    }

    #[test]
    fn all_but_the_newest_rotated_file_are_compressed_and_the_oldest_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(dir.path().join("1.log.x"), "other attempt").unwrap();
        std::fs::write(
            dir.path().join("0.log.20200101-000000.000000000.gz.tmp"),
            "kubelet's",
        )
        .unwrap();
        let mut r = Rotator::new(&path, LogRotation::new(10, 4).unwrap());
        for i in 0..6 {
            std::fs::write(&path, format!("file {i}\n").repeat(100)).unwrap();
            r.rotate().unwrap();
            // At most max_files - 1 rotated files at any time (the caller adds the current one).
            assert!(rotated_files(&path).unwrap().len() <= 3);
        }
        r.finish();
        let kept = rotated_files(&path).unwrap();
        assert_eq!(kept.len(), 3, "{kept:?}");
        let gz: Vec<String> = kept[..2].iter().map(|p| gunzip(p)).collect();
        assert!(kept[..2]
            .iter()
            .all(|p| p.to_string_lossy().ends_with(".gz")));
        assert_eq!(gz, ["file 3\n".repeat(100), "file 4\n".repeat(100)]);
        assert_eq!(
            std::fs::read_to_string(&kept[2]).unwrap(),
            "file 5\n".repeat(100),
            "the newest rotated file stays uncompressed"
        );
        // Nothing else: no temporary file of ours; others' files are left alone.
        let all = names(dir.path());
        assert_eq!(all.len(), 5, "{all:?}");
        assert!(all.contains(&"1.log.x".to_owned()));
        assert!(all.contains(&"0.log.20200101-000000.000000000.gz.tmp".to_owned()));
    }

    #[test]
    fn a_pass_cleans_what_an_interrupted_one_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let a = dir.path().join("0.log.20261130-000001.000000000");
        let b = dir.path().join("0.log.20261130-000002.000000000");
        let c = dir.path().join("0.log.20261130-000003.000000000");
        // `a` compressed but not removed; a stale temporary file of `b`; `c` the newest.
        std::fs::write(&a, "a").unwrap();
        std::fs::write(with_suffix(&a, GZ), "not checked").unwrap();
        std::fs::write(&b, "b").unwrap();
        std::fs::write(temp_name(&b), "half").unwrap();
        std::fs::write(&c, "c").unwrap();
        compress_rotated(&path, &Mutex::new(())).unwrap();
        assert_eq!(
            names(dir.path()),
            [
                "0.log.20261130-000001.000000000.gz",
                "0.log.20261130-000002.000000000.gz",
                "0.log.20261130-000003.000000000"
            ]
        );
        assert_eq!(gunzip(&with_suffix(&b, GZ)), "b");
    }

    #[test]
    fn a_file_rotated_away_while_compressed_does_not_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("0.log.20261130-000001.000000000");
        std::fs::write(&src, "gone").unwrap();
        let lock = Arc::new(Mutex::new(()));
        // The compressor reads the file and then waits for the lock, which the rotation holds
        // while it removes the file.
        let held = lock.lock().unwrap();
        let (s, l) = (src.clone(), lock.clone());
        let t = std::thread::spawn(move || compress_file(&s, &l));
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(!t.is_finished(), "the compressor must wait for the lock");
        std::fs::remove_file(&src).unwrap();
        drop(held);
        t.join().unwrap().unwrap();
        assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
    }
}
