//! The AtomicWriter layout, as the kubelet writes ConfigMap, Secret, projected and downwardAPI
//! volumes:
//!
//! ```text
//! <target>/..2026_11_23_09_40_00.123456789/   the current payload (real files)
//! <target>/..data -> ..2026_11_23_09_40_00.123456789
//! <target>/key    -> ..data/key                user-visible names (top-level components)
//! ```
//!
//! An update writes the whole new payload into a fresh timestamped directory, points a
//! temporary symlink at it and renames that over `..data` (one atomic step), adds symlinks for
//! new top-level names, removes those of vanished names, and deletes the old directory. Readers
//! that open `key` see either the old or the new content — never a mix across keys.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::{ownership, VolumeError};

/// The `..data` symlink.
pub const DATA_DIR: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// One file of a volume's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    /// Permission bits (e.g. 0o644).
    pub mode: u32,
}

/// Check a payload path the way the kubelet does: relative, no `..` component, not starting
/// with `..` (reserved for the writer), not empty.
pub fn validate_path(p: &str) -> Result<(), VolumeError> {
    let bad = |reason| VolumeError::InvalidPath {
        path: p.to_owned(),
        reason,
    };
    if p.is_empty() {
        return Err(bad("must not be empty"));
    }
    if p.len() > 4096 {
        return Err(bad("is too long"));
    }
    if Path::new(p).is_absolute() {
        return Err(bad("must be relative"));
    }
    if p.starts_with("..") {
        return Err(bad("must not start with '..'"));
    }
    for c in Path::new(p).components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            _ => return Err(bad("must not contain '..'")),
        }
    }
    Ok(())
}

/// Writes payloads into one volume directory.
pub struct AtomicWriter {
    target: PathBuf,
    fs_group: Option<u32>,
}

impl AtomicWriter {
    pub fn new(target: impl Into<PathBuf>) -> Self {
        AtomicWriter {
            target: target.into(),
            fs_group: None,
        }
    }

    /// Give every payload to the pod's `fsGroup` (read-only bits, see [`crate::ownership`])
    /// before it becomes visible, so updates keep the ownership.
    pub fn fs_group(mut self, gid: Option<u32>) -> Self {
        self.fs_group = gid;
        self
    }

    /// The payload currently visible (read back through `..data`), for comparison.
    fn current(&self) -> Option<BTreeMap<String, FileProjection>> {
        let dir = fs::read_link(self.target.join(DATA_DIR)).ok()?;
        let root = self.target.join(dir);
        let mut out = BTreeMap::new();
        collect(&root, &root, &mut out).ok()?;
        Some(out)
    }

    /// Make the volume show exactly `payload`. Returns whether anything changed.
    pub fn write(&self, payload: &BTreeMap<String, FileProjection>) -> Result<bool, VolumeError> {
        for p in payload.keys() {
            validate_path(p)?;
        }
        fs::create_dir_all(&self.target).map_err(VolumeError::io("create", &self.target))?;
        let normalized: BTreeMap<String, FileProjection> = payload
            .iter()
            .map(|(k, v)| (normalize(k), v.clone()))
            .collect();
        // What the files look like once written (fsGroup adds group read bits).
        let expected: BTreeMap<String, FileProjection> = match self.fs_group {
            None => normalized.clone(),
            Some(_) => normalized
                .iter()
                .map(|(k, v)| {
                    let mode = ownership::owned_mode(v.mode & 0o7777, false, true);
                    (k.clone(), FileProjection { mode, ..v.clone() })
                })
                .collect(),
        };
        let owned = self
            .fs_group
            .is_none_or(|g| !ownership::requires_change(&self.target, g, true));
        if owned && self.current().as_ref() == Some(&expected) {
            return Ok(false);
        }
        let old = fs::read_link(self.target.join(DATA_DIR)).ok();

        // 1. The new payload, complete, in a fresh timestamped directory.
        let ts = self.new_dir_name();
        let new_dir = self.target.join(&ts);
        fs::create_dir(&new_dir).map_err(VolumeError::io("create", &new_dir))?;
        for (rel, f) in &normalized {
            let path = new_dir.join(rel);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(VolumeError::io("create", parent))?;
            }
            fs::write(&path, &f.data).map_err(VolumeError::io("write", &path))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(f.mode & 0o7777))
                .map_err(VolumeError::io("chmod", &path))?;
        }
        fs::set_permissions(&new_dir, fs::Permissions::from_mode(0o755))
            .map_err(VolumeError::io("chmod", &new_dir))?;
        if let Some(gid) = self.fs_group {
            ownership::set_volume_ownership(
                &self.target,
                gid,
                true,
                ownership::ChangePolicy::Always,
            )?;
        }

        // 2. Swap `..data` in one rename.
        let tmp = self.target.join(DATA_TMP);
        let _ = fs::remove_file(&tmp);
        symlink(&ts, &tmp).map_err(VolumeError::io("symlink", &tmp))?;
        let data = self.target.join(DATA_DIR);
        fs::rename(&tmp, &data).map_err(VolumeError::io("rename", &data))?;

        // 3. User-visible names: add the new, drop the vanished.
        let wanted: BTreeSet<String> = normalized
            .keys()
            .map(|k| k.split('/').next().unwrap_or(k).to_owned())
            .collect();
        for name in &wanted {
            let link = self.target.join(name);
            if fs::symlink_metadata(&link).is_err() {
                symlink(Path::new(DATA_DIR).join(name), &link)
                    .map_err(VolumeError::io("symlink", &link))?;
            }
        }
        let entries = fs::read_dir(&self.target).map_err(VolumeError::io("list", &self.target))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("..") || wanted.contains(&name) {
                continue;
            }
            if e.file_type().map(|t| t.is_symlink()).unwrap_or(false) {
                let _ = fs::remove_file(e.path());
            }
        }

        // 4. The previous payload directory is no longer reachable.
        if let Some(old) = old {
            if old != Path::new(&ts) {
                let p = self.target.join(old);
                let _ = fs::remove_dir_all(&p);
            }
        }
        tracing::debug!(volume = %self.target.display(), files = normalized.len(), "volume updated");
        Ok(true)
    }

    fn new_dir_name(&self) -> String {
        let now = chrono::Utc::now();
        let mut name = format!("..{}", now.format("%Y_%m_%d_%H_%M_%S.%9f"));
        // Two writes within one nanosecond tick: make the name unique.
        let mut n = 0;
        while self.target.join(&name).exists() {
            n += 1;
            name = format!("..{}_{n}", now.format("%Y_%m_%d_%H_%M_%S.%9f"));
        }
        name
    }
}

fn normalize(p: &str) -> String {
    Path::new(p)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn collect(
    root: &Path,
    dir: &Path,
    out: &mut BTreeMap<String, FileProjection>,
) -> std::io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        let t = e.file_type()?;
        if t.is_dir() {
            collect(root, &e.path(), out)?;
        } else if t.is_file() {
            let rel = e
                .path()
                .strip_prefix(root)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mode = e.metadata()?.permissions().mode() & 0o7777;
            out.insert(
                rel,
                FileProjection {
                    data: fs::read(e.path())?,
                    mode,
                },
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(items: &[(&str, &str)]) -> BTreeMap<String, FileProjection> {
        items
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    FileProjection {
                        data: v.as_bytes().to_vec(),
                        mode: 0o644,
                    },
                )
            })
            .collect()
    }

    fn visible(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with(".."))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn layout_is_symlinks_through_data() {
        let d = tempfile::tempdir().unwrap();
        let w = AtomicWriter::new(d.path());
        assert!(w.write(&payload(&[("a", "1"), ("dir/b", "2")])).unwrap());
        assert_eq!(visible(d.path()), ["a", "dir"]);
        assert_eq!(
            fs::read_link(d.path().join("a")).unwrap(),
            Path::new("..data/a")
        );
        let data = fs::read_link(d.path().join(DATA_DIR)).unwrap();
        assert!(data.to_string_lossy().starts_with("..20"), "{data:?}");
        assert_eq!(fs::read_to_string(d.path().join("dir/b")).unwrap(), "2");
        // An unchanged payload writes nothing.
        assert!(!w.write(&payload(&[("a", "1"), ("dir/b", "2")])).unwrap());
        assert_eq!(fs::read_link(d.path().join(DATA_DIR)).unwrap(), data);
    }

    #[test]
    fn fs_group_owns_every_payload_and_survives_updates() {
        use std::os::unix::fs::MetadataExt;
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test changes file groups and needs root (CI runs as root)"
        );
        let d = tempfile::tempdir().unwrap();
        let w = AtomicWriter::new(d.path()).fs_group(Some(2345));
        let mut p = payload(&[("a", "1")]);
        p.get_mut("a").unwrap().mode = 0o400;
        assert!(w.write(&p).unwrap());
        let meta = |n: &str| fs::metadata(d.path().join(n)).unwrap();
        assert_eq!((meta("a").gid(), meta("a").mode() & 0o7777), (2345, 0o440));
        assert_eq!(meta("").gid(), 2345);
        assert_eq!(meta("").mode() & 0o2000, 0o2000, "setgid root");
        // Unchanged (the added group bits are expected, not a difference).
        assert!(!w.write(&p).unwrap());
        // An update is owned before it becomes visible.
        p.get_mut("a").unwrap().data = b"2".to_vec();
        assert!(w.write(&p).unwrap());
        assert_eq!((meta("a").gid(), meta("a").mode() & 0o7777), (2345, 0o440));
        // A group change alone rewrites.
        let w = AtomicWriter::new(d.path()).fs_group(Some(2346));
        assert!(w.write(&p).unwrap());
        assert_eq!(meta("a").gid(), 2346);
    }

    #[test]
    fn updates_swap_whole_payloads_and_drop_vanished_names() {
        let d = tempfile::tempdir().unwrap();
        let w = AtomicWriter::new(d.path());
        w.write(&payload(&[("a", "1"), ("b", "1")])).unwrap();
        let first = fs::read_link(d.path().join(DATA_DIR)).unwrap();
        w.write(&payload(&[("a", "2"), ("c", "2")])).unwrap();
        assert_eq!(visible(d.path()), ["a", "c"]);
        assert_eq!(fs::read_to_string(d.path().join("a")).unwrap(), "2");
        assert!(!d.path().join(&first).exists(), "old payload removed");
        let dirs = fs::read_dir(d.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_type().unwrap().is_dir())
            .count();
        assert_eq!(dirs, 1, "one payload directory");
    }

    #[test]
    fn a_reader_never_sees_a_mix_of_versions() {
        let d = tempfile::tempdir().unwrap();
        let w = AtomicWriter::new(d.path());
        w.write(&payload(&[("x", "0"), ("y", "0")])).unwrap();
        let root = d.path().to_owned();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = stop.clone();
        let reader = std::thread::spawn(move || {
            let mut checks = 0;
            while !s2.load(std::sync::atomic::Ordering::Relaxed) {
                // Resolve ..data once, then read both files from that one payload, as a
                // consumer following the symlinks would within one open of the directory.
                let Ok(dir) = fs::read_link(root.join(DATA_DIR)) else {
                    continue;
                };
                let (Ok(x), Ok(y)) = (
                    fs::read_to_string(root.join(&dir).join("x")),
                    fs::read_to_string(root.join(&dir).join("y")),
                ) else {
                    continue; // that payload was already replaced and removed
                };
                assert_eq!(x, y, "mixed payload");
                checks += 1;
            }
            checks
        });
        for i in 1..200 {
            let v = i.to_string();
            w.write(&payload(&[("x", &v), ("y", &v)])).unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
        assert_eq!(fs::read_to_string(d.path().join("x")).unwrap(), "199");
    }

    #[test]
    fn modes_are_applied_and_bad_paths_refused() {
        let d = tempfile::tempdir().unwrap();
        let w = AtomicWriter::new(d.path());
        let mut p = payload(&[("key", "secret")]);
        p.get_mut("key").unwrap().mode = 0o400;
        w.write(&p).unwrap();
        let m = fs::metadata(d.path().join("key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(m, 0o400);
        for bad in ["", "/abs", "../escape", "a/../../b", "..data", "..hidden"] {
            let e = w.write(&payload(&[(bad, "x")])).unwrap_err();
            assert!(e.to_string().contains("invalid file path"), "{bad}: {e}");
        }
        // A refused payload changed nothing.
        assert_eq!(fs::read_to_string(d.path().join("key")).unwrap(), "secret");
    }
}
