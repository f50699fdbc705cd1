//! The content store on disk: where blobs, unpacked layers and temp files live, and the one way
//! content gets in (stream to a temp file, hash, verify, fsync, then rename).
//!
//! Layout under the store root:
//! - `blobs/sha256/<hex>`: verified blobs (indexes, manifests, configs, layers), read-only once
//!   renamed into place;
//! - `layers/<diff_id hex>/`: unpacked layers, shared by every image that has the layer;
//! - `tmp/`: blobs being written, imports being staged, layers being unpacked and layers being
//!   deleted; emptied when the store is opened;
//! - `images.slots`: the image records (see [`crate::metadata`]; `images.json` in stores
//!   written before it);
//! - `lock`: `flock`ed by the process that has the store open.
//!
//! `layers/` and `tmp/` are mode 0700: unpacked layers can hold setuid binaries and device-less
//! whiteouts from untrusted images, and must not be reachable by unprivileged host users.

use std::fs::{self, DirBuilder, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use tempfile::NamedTempFile;

use crate::digest::{sha256_hex, Digest};
use crate::ImageError;

/// Paths of the parts of a store.
#[derive(Debug, Clone)]
pub(crate) struct Paths {
    pub root: PathBuf,
    pub blobs: PathBuf,
    pub layers: PathBuf,
    pub tmp: PathBuf,
    pub metadata: PathBuf,
    /// Where stores written before `images.slots` keep their records.
    pub legacy_metadata: PathBuf,
    pub lock: PathBuf,
}

impl Paths {
    pub fn new(root: &Path) -> Paths {
        Paths {
            root: root.to_owned(),
            blobs: root.join("blobs").join("sha256"),
            layers: root.join("layers"),
            tmp: root.join("tmp"),
            metadata: root.join("images.slots"),
            legacy_metadata: root.join("images.json"),
            lock: root.join("lock"),
        }
    }

    /// Create the directories (private to root) if missing.
    pub fn create(&self) -> Result<(), ImageError> {
        let mut b = DirBuilder::new();
        b.recursive(true).mode(0o700);
        for d in [&self.root, &self.blobs, &self.layers, &self.tmp] {
            b.create(d).map_err(ImageError::io("create directory", d))?;
        }
        for d in [&self.layers, &self.tmp] {
            fs::set_permissions(d, fs::Permissions::from_mode(0o700))
                .map_err(ImageError::io("chmod", d))?;
        }
        Ok(())
    }

    /// Path of a stored blob (sha256 only; other algorithms are an error).
    pub fn blob(&self, d: &Digest) -> Result<PathBuf, ImageError> {
        Ok(self.blobs.join(sha256_hex(d, "the content store")?))
    }

    /// Path of an unpacked layer, by the hex of its diff_id.
    pub fn layer(&self, diff_hex: &str) -> PathBuf {
        self.layers.join(diff_hex)
    }

    /// Empty `tmp/` and remove temp files of interrupted metadata writes.
    pub(crate) fn clean_tmp(&self) -> Result<(), ImageError> {
        let paths = self;
        let read = |d: &Path| fs::read_dir(d).map_err(ImageError::io("read directory", d));
        for entry in read(&paths.tmp)? {
            let entry = entry.map_err(ImageError::io("read directory", &paths.tmp))?;
            let p = entry.path();
            let res = if entry.file_type().is_ok_and(|t| t.is_dir()) {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
            res.map_err(ImageError::io("remove leftover", &p))?;
            tracing::debug!(path = %p.display(), "removed leftover temp file");
        }
        for entry in read(&paths.root)? {
            let entry = entry.map_err(ImageError::io("read directory", &paths.root))?;
            if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                let p = entry.path();
                fs::remove_file(&p).map_err(ImageError::io("remove leftover", &p))?;
            }
        }
        Ok(())
    }
}

/// Copy `reader` into a new temp file in `dir` and verify it is `expected` (and, when given,
/// `expected_size` bytes long). The file is fsynced; the caller renames it into place.
/// `read_err` turns a read failure of the source into an error naming that source.
pub(crate) fn write_verified(
    dir: &Path,
    expected: &Digest,
    expected_size: Option<u64>,
    mut reader: impl Read,
    location: &str,
    read_err: &dyn Fn(io::Error) -> ImageError,
) -> Result<(NamedTempFile, u64), ImageError> {
    let want_hex = sha256_hex(expected, location)?;
    let mut tmp = tempfile::Builder::new()
        .prefix("blob-")
        .tempfile_in(dir)
        .map_err(ImageError::io("create temp file in", dir))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 128 * 1024];
    let mut count: u64 = 0;
    let size_err = |actual| ImageError::SizeMismatch {
        digest: expected.to_string(),
        expected: expected_size.unwrap_or_default(),
        actual,
        location: location.to_owned(),
    };
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(e)),
        };
        count += n as u64;
        if expected_size.is_some_and(|s| count > s) {
            return Err(size_err(count));
        }
        hasher.update(&buf[..n]);
        tmp.write_all(&buf[..n])
            .map_err(ImageError::io("write", tmp.path()))?;
    }
    if expected_size.is_some_and(|s| count != s) {
        return Err(size_err(count));
    }
    let actual = hex::encode(hasher.finalize());
    if actual != want_hex {
        return Err(ImageError::DigestMismatch {
            digest: expected.to_string(),
            actual: format!("sha256:{actual}"),
            location: location.to_owned(),
        });
    }
    tmp.as_file()
        .sync_all()
        .map_err(ImageError::io("fsync", tmp.path()))?;
    Ok((tmp, count))
}

/// Open `path` for reading, refusing anything but a regular file (a FIFO or device would
/// block or never end).
pub(crate) fn open_regular(path: &Path) -> io::Result<File> {
    let f = File::open(path)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(f)
}

/// The mount point of the file system (device `dev`) holding `path`: the highest ancestor on
/// the same device.
pub(crate) fn mountpoint_of(path: &Path, dev: u64) -> PathBuf {
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let mut best = path.clone();
    for anc in path.ancestors().skip(1) {
        match fs::metadata(anc) {
            Ok(m) if m.dev() == dev => best = anc.to_owned(),
            _ => break,
        }
    }
    best
}
