//! Image records and their on-disk form.
//!
//! All records live in one JSON document, kept in `images.slots` under the store root: a
//! two-slot file ([`crate::slots`]) whose older slot each change overwrites in place with one
//! `fdatasync`, so a crash leaves either the old or the new set of images, never a mix. The
//! in-memory copy is updated only after the file is on disk. Stores written before it have
//! `images.json` (replaced whole by temp file and rename): it is read when there is no slot
//! file, and removed once the first change has made one.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::slots::SlotFile;
use crate::ImageError;

/// Version of the metadata file format.
const FORMAT_VERSION: u32 = 1;

/// A stored image, as the CRI sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// `sha256:<hex>` of the image config blob.
    pub id: String,
    /// Normalized `domain/path:tag` names.
    pub repo_tags: Vec<String>,
    /// `domain/path@sha256:<manifest digest>`, one per repository the image is tagged in.
    pub repo_digests: Vec<String>,
    /// Compressed size of the layers plus the size of the config.
    pub size: u64,
    /// `sha256:<hex>` of the image manifest.
    pub manifest_digest: String,
    /// The runtime defaults from the image config.
    pub config: ImageConfig,
    /// Layers, lowest first.
    pub layers: Vec<LayerRef>,
    /// Unix time in nanoseconds when the image was first stored.
    pub created_at: i64,
}

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    /// `sha256:<hex>` of the (usually compressed) layer blob.
    pub digest: String,
    /// Media type from the manifest.
    pub media_type: String,
    /// `sha256:<hex>` of the uncompressed tar, from the config's `rootfs.diff_ids`.
    pub diff_id: String,
    /// Size of the blob in bytes.
    pub size: u64,
}

/// The parts of an OCI image config a runtime uses to start a container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub stop_signal: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub volumes: Vec<String>,
    pub exposed_ports: Vec<String>,
}

impl ImageConfig {
    pub(crate) fn from_oci(c: &oci_spec::image::ImageConfiguration) -> ImageConfig {
        let Some(cfg) = c.config() else {
            return ImageConfig::default();
        };
        let sorted = |v: &Option<Vec<String>>| {
            let mut v = v.clone().unwrap_or_default();
            v.sort();
            v
        };
        ImageConfig {
            entrypoint: cfg.entrypoint().clone().unwrap_or_default(),
            cmd: cfg.cmd().clone().unwrap_or_default(),
            env: cfg.env().clone().unwrap_or_default(),
            working_dir: cfg.working_dir().clone().unwrap_or_default(),
            user: cfg.user().clone().unwrap_or_default(),
            stop_signal: cfg.stop_signal().clone(),
            labels: cfg
                .labels()
                .as_ref()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
            volumes: sorted(cfg.volumes()),
            exposed_ports: sorted(cfg.exposed_ports()),
        }
    }
}

/// A record plus what the store needs to keep about it internally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredImage {
    #[serde(flatten)]
    pub record: ImageRecord,
    /// Digests of image indexes that led to this image's manifest; their blobs are kept with
    /// the image and `name@<index digest>` resolves to it.
    #[serde(default)]
    pub index_digests: Vec<String>,
}

impl StoredImage {
    /// Every blob this image keeps alive.
    pub fn blobs(&self) -> impl Iterator<Item = &str> {
        let r = &self.record;
        std::iter::once(r.manifest_digest.as_str())
            .chain(std::iter::once(r.id.as_str()))
            .chain(r.layers.iter().map(|l| l.digest.as_str()))
            .chain(self.index_digests.iter().map(String::as_str))
    }

    /// Every unpacked layer (by diff_id) this image keeps alive.
    pub fn diff_ids(&self) -> impl Iterator<Item = &str> {
        self.record.layers.iter().map(|l| l.diff_id.as_str())
    }
}

#[derive(Serialize, Deserialize)]
struct MetadataFile {
    version: u32,
    images: Vec<StoredImage>,
}

/// [`MetadataFile`] to write, borrowing the records.
#[derive(Serialize)]
struct MetadataRef<'a> {
    version: u32,
    images: &'a [StoredImage],
}

/// The records' file: where it is, and the open slot file once there is one.
#[derive(Debug)]
pub(crate) struct MetaFile {
    path: PathBuf,
    legacy: PathBuf,
    file: Option<SlotFile>,
}

/// Load the records: from the slot file `path`, else from the older whole-file form `legacy`;
/// `None` when neither exists yet.
pub(crate) fn load(
    path: &Path,
    legacy: &Path,
) -> Result<(MetaFile, Option<Vec<StoredImage>>), ImageError> {
    let mut meta = MetaFile {
        path: path.to_owned(),
        legacy: legacy.to_owned(),
        file: None,
    };
    if let Some((file, bytes)) = SlotFile::open(path).map_err(ImageError::io("read", path))? {
        meta.file = Some(file);
        return Ok((meta, Some(parse(path, &bytes)?)));
    }
    let bytes = match fs::read(legacy) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((meta, None)),
        Err(e) => return Err(ImageError::io("read", legacy)(e)),
    };
    let images = parse(legacy, &bytes)?;
    Ok((meta, Some(images)))
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Vec<StoredImage>, ImageError> {
    let file: MetadataFile =
        serde_json::from_slice(bytes).map_err(|source| ImageError::CorruptMetadata {
            path: path.to_owned(),
            source,
        })?;
    Ok(file.images)
}

impl MetaFile {
    /// Make `images` the stored records, durably (one `fdatasync` once the slot file exists).
    pub(crate) fn save(&mut self, images: &[StoredImage]) -> Result<(), ImageError> {
        let file = MetadataRef {
            version: FORMAT_VERSION,
            images,
        };
        let bytes =
            serde_json::to_vec(&file).map_err(|source| ImageError::SerializeMetadata { source })?;
        let path = &self.path;
        match &mut self.file {
            Some(f) => f.write(&bytes).map_err(ImageError::io("write", path))?,
            None => {
                let f = SlotFile::create(path, &bytes, 1).map_err(ImageError::io("write", path))?;
                self.file = Some(f);
                // The slot file is read first from now on: the old file is only clutter.
                match fs::remove_file(&self.legacy) {
                    Ok(()) => {
                        tracing::info!(path = %self.legacy.display(), "image records moved to {}", path.display())
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(err) => {
                        tracing::warn!(path = %self.legacy.display(), %err, "cannot remove the old image records file")
                    }
                }
            }
        }
        Ok(())
    }
}

/// fsync a directory, making renames and creations in it durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), ImageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(ImageError::io("fsync", dir))
}
