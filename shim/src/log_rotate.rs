//! Size-based rotation of the CRI log file, done by the shim that writes it, so the bytes a
//! container's output keeps on disk are bounded however fast it writes (the kubelet checks
//! sizes every 10 s, and a container writing at full speed fills a disk between two checks).
//! The layout is the kubelet's (`pkg/kubelet/logs`): the current file keeps its path, a rotated
//! one is renamed `<path>.<YYYYMMDD-HHMMSS.nnnnnnnnn>` (nanoseconds added so several rotations
//! in one second stay apart; names sort by time), and the oldest rotated files are removed so
//! that at most `max_files` files exist, the current one included. Files stay uncompressed; the
//! shim rotates before a write that would pass the size, so the bound is `max_size × max_files`. A kubelet that rotates the same file
//! itself (rename, then `ReopenContainerLog`) fits in: its rotated files match the same pattern.

use std::io;
use std::path::{Path, PathBuf};

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

/// The name a rotated file gets.
fn rotated_name(path: &Path, now: chrono::DateTime<chrono::Utc>) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{}", now.format("%Y%m%d-%H%M%S.%9f")));
    PathBuf::from(s)
}

/// Rotated files of `path` (`<path>.*`), oldest first.
pub fn rotated_files(path: &Path) -> io::Result<Vec<PathBuf>> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(Vec::new());
    };
    let mut prefix = name.to_owned();
    prefix.push(".");
    let prefix = prefix.as_encoded_bytes().to_vec();
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .filter(|e| e.file_name().as_encoded_bytes().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    out.sort();
    Ok(out)
}

/// Rename the current file away and remove rotated files beyond the limit. The caller opens
/// a new file at `path`.
pub fn rotate(path: &Path, r: LogRotation) -> io::Result<()> {
    std::fs::rename(path, rotated_name(path, chrono::Utc::now()))?;
    let rotated = rotated_files(path)?;
    let excess = rotated.len().saturating_sub(r.max_files - 1);
    for old in &rotated[..excess] {
        match std::fs::remove_file(old) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_names_sort_by_time_and_only_the_newest_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-30T21:33:01.000000005Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            rotated_name(&path, t),
            dir.path().join("0.log.20261130-213301.000000005")
        );
        std::fs::write(dir.path().join("1.log.x"), "other attempt").unwrap();
        let r = LogRotation::new(10, 3).unwrap();
        for i in 0..5 {
            std::fs::write(&path, format!("file {i}")).unwrap();
            rotate(&path, r).unwrap();
        }
        let kept = rotated_files(&path).unwrap();
        assert_eq!(kept.len(), 2, "{kept:?}");
        let texts: Vec<String> = kept
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        assert_eq!(texts, ["file 3", "file 4"]);
        assert!(
            dir.path().join("1.log.x").exists(),
            "other files are left alone"
        );
        assert_eq!(LogRotation::new(0, 5), None);
        assert_eq!(LogRotation::new(1, 1).unwrap().max_files, 2);
    }
}
