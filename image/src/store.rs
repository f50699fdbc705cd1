//! [`ImageStore`]: the images the daemon has, their blobs and their unpacked layers.
//!
//! Invariants:
//! - a blob is visible under `blobs/` only once verified and fsynced; a record is visible (on
//!   disk and in memory) only once all its blobs are, and the `blobs/` directory is fsynced
//!   before a record naming new blobs is written (once per change, not once per blob); the
//!   metadata file is the commit point of every change, written before the in-memory state is
//!   updated, and not rewritten when a change changes nothing (a pull of an image already
//!   stored under that name);
//! - each unpacked layer (`layers/<diff_id hex>`) is complete: it is unpacked into `tmp/`, its
//!   file system synced (`syncfs`), and renamed into place, under a per-layer lock so it is
//!   unpacked once. The rename itself need not be durable: a layer lost by a crash is unpacked
//!   again at its next use;
//! - every change (import, commit, removal, publishing an unpacked layer, garbage collection)
//!   runs under the writer lock; readers (list, resolve, status) only take the short lock that
//!   guards the published snapshot, so they never wait for a writer's fsync;
//! - garbage collection removes exactly the blobs and layers no record references; it runs
//!   under the writer lock, after the metadata change that freed them is on disk, and layer
//!   trees are renamed into `tmp/` there and deleted afterwards on a background thread
//!   ([`crate::trash`]);
//! - leftovers of a crash (temp files, unreferenced blobs and layers) are removed by
//!   [`ImageStore::open`].

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use nix::fcntl::{Flock, FlockArg};
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};

use crate::content::{write_verified, Paths};
use crate::digest::{parse_sha256, sha256_hex, Digest};
use crate::import::read_source;
use crate::manifest::{
    apply_names, build_record, check_config_descriptor, check_config_platform, doc_kind,
    parse_json, push_unique, DocKind, MAX_INDEX_DEPTH, MAX_JSON,
};
use crate::metadata::{self, ImageRecord, MetaFile, StoredImage};
use crate::reference::Reference;
use crate::trash::{self, Trash};
use crate::{sys, unpack, ImageError};

/// Disk use of the store, for CRI `ImageFsInfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreUsage {
    /// Mount point of the file system that holds the store.
    pub mountpoint: PathBuf,
    /// Bytes allocated under the store root (hard-linked files counted once).
    pub used_bytes: u64,
    /// Inodes used under the store root.
    pub inodes_used: u64,
}

/// Counters for tests and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Layers unpacked since the store was opened.
    pub layers_unpacked: u64,
}

/// The image store. `Send + Sync`; share it behind an `Arc`.
pub struct ImageStore {
    paths: Paths,
    /// The published records: replaced whole, after the metadata file has them.
    state: Mutex<Arc<Vec<StoredImage>>>,
    /// Held by every change, across its metadata write (see the module's invariants); it owns
    /// the records' file.
    writer: Mutex<MetaFile>,
    /// A blob was renamed into `blobs/` since the directory was last fsynced.
    blobs_dirty: AtomicBool,
    /// Removed layer trees being deleted in the background.
    trash: Arc<Trash>,
    /// One lock per layer being unpacked, by diff_id hex.
    unpacking: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    layers_unpacked: AtomicU64,
    /// Bound on one layer's uncompressed size ([`ImageStore::set_max_unpacked_layer_bytes`]).
    max_unpacked_layer: AtomicU64,
    _lock: Flock<File>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The state is only replaced after a successful metadata write, so it is consistent even
    // if a thread panicked while holding the lock.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

use kinglet_util::now_nanos;

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Blobs and layers that may have lost their last user.
#[derive(Default)]
struct GcCandidates {
    blobs: BTreeSet<String>,
    diff_ids: BTreeSet<String>,
}

impl GcCandidates {
    fn add(&mut self, img: &StoredImage) {
        self.blobs.extend(img.blobs().map(str::to_owned));
        self.diff_ids.extend(img.diff_ids().map(str::to_owned));
    }
}

impl ImageStore {
    /// Open (creating if needed) the store at `root`: create its directories, take its lock,
    /// load the records, and remove leftovers of an interrupted import, unpack or removal.
    pub fn open(root: &Path) -> Result<ImageStore, ImageError> {
        let paths = Paths::new(root);
        paths.create()?;
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&paths.lock)
            .map_err(ImageError::io("open", &paths.lock))?;
        let lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
            if e == nix::errno::Errno::EWOULDBLOCK {
                ImageError::Locked {
                    root: root.to_owned(),
                }
            } else {
                ImageError::io("lock", &paths.lock)(io::Error::from_raw_os_error(e as i32))
            }
        })?;
        paths.clean_tmp()?;
        let (meta, loaded) = metadata::load(&paths.metadata, &paths.legacy_metadata)?;
        let store = ImageStore {
            state: Mutex::new(Arc::new(loaded.clone().unwrap_or_default())),
            writer: Mutex::new(meta),
            blobs_dirty: AtomicBool::new(false),
            trash: Arc::default(),
            paths,
            unpacking: Mutex::new(HashMap::new()),
            layers_unpacked: AtomicU64::new(0),
            max_unpacked_layer: AtomicU64::new(crate::DEFAULT_MAX_UNPACKED_LAYER_BYTES),
            _lock: lock,
        };
        // Only with metadata on disk is "unreferenced" known; never delete content otherwise.
        if loaded.is_some() {
            store.remove_orphans()?;
        }
        Ok(store)
    }

    /// Import an OCI image layout directory or an oci-archive tar (as `skopeo copy ...
    /// oci:DIR:TAG` / `oci-archive:FILE:TAG` write them). Every blob (indexes, manifests,
    /// config, layers) is verified against its sha256 digest while it is copied; nothing
    /// becomes visible unless the whole import succeeds.
    ///
    /// Each manifest in `index.json` (through nested indexes, picking linux and this host's
    /// architecture) becomes one image, tagged from `io.containerd.image.name`, else
    /// `org.opencontainers.image.ref.name`: a full reference (with `/` or `:`) is normalized; a
    /// bare tag `T` tags `name` (with `T` as its tag if it has none) or, without `name`,
    /// `localhost/<file or directory stem>:T`. Without a ref annotation, `name` is used (tag
    /// `latest` if none); without either, the image has no tags.
    pub fn import(&self, path: &Path, name: Option<&str>) -> Result<Vec<ImageRecord>, ImageError> {
        let found = read_source(path, name, &self.paths.tmp)?;
        kinglet_fault::crash_point!("image.import.after-stage");
        let mut writer = lock(&self.writer);
        // Move the verified blobs into the content store (skipping those already there).
        let mut added: Vec<PathBuf> = Vec::new();
        let result = (|| {
            let mut needed = BTreeSet::new();
            for img in &found.images {
                needed.extend(img.blobs().map(str::to_owned));
            }
            for d in &needed {
                let hex = d.strip_prefix("sha256:").unwrap_or(d);
                if !found.staged.contains(hex) {
                    continue; // an index digest from a name: nothing to store
                }
                let dest = self.paths.blobs.join(hex);
                if dest.exists() {
                    continue;
                }
                let src = found.staged.path(hex);
                fs::rename(&src, &dest).map_err(ImageError::io("rename into", &dest))?;
                added.push(dest);
            }
            kinglet_fault::crash_point!("image.import.after-blobs");
            metadata::sync_dir(&self.paths.blobs)?;
            self.commit_locked(&mut writer, found.images.clone())
        })();
        if result.is_err() {
            for p in &added {
                if let Err(err) = fs::remove_file(p) {
                    tracing::warn!(path = %p.display(), %err, "cannot roll back imported blob");
                }
            }
        }
        let (records, trash) = result?;
        drop(writer);
        self.trash.delete_later(trash);
        Ok(records)
    }

    /// Refuse layers whose uncompressed tar is larger than `bytes` (unpacking stops there with
    /// [`ImageError::LayerTooLarge`] and nothing of the layer is kept).
    pub fn set_max_unpacked_layer_bytes(&self, bytes: u64) {
        self.max_unpacked_layer.store(bytes, Ordering::Relaxed);
    }

    /// The published records (a snapshot: the lock is held only to clone the `Arc`).
    fn snapshot(&self) -> Arc<Vec<StoredImage>> {
        lock(&self.state).clone()
    }

    /// Make `next` the records readers see (its metadata is already on disk).
    fn publish(&self, next: Vec<StoredImage>) {
        *lock(&self.state) = Arc::new(next);
    }

    /// All images.
    pub fn list(&self) -> Vec<ImageRecord> {
        self.map_all(ImageRecord::clone)
    }

    /// `f` of every image, read from the published snapshot by reference: no record (each
    /// holds its whole image config) is cloned, for hot readers such as CRI ListImages.
    pub fn map_all<T>(&self, f: impl FnMut(&ImageRecord) -> T) -> Vec<T> {
        self.snapshot().iter().map(|i| &i.record).map(f).collect()
    }

    /// `f` of the image `reference` resolves to (as [`ImageStore::resolve`]), by reference.
    pub fn map_resolved<T>(&self, reference: &str, f: impl FnOnce(&ImageRecord) -> T) -> Option<T> {
        let st = self.snapshot();
        resolve_in(&st, reference).map(|i| f(&st[i].record))
    }

    /// Wait until the layer trees of earlier removals are deleted from disk (they are deleted
    /// in the background, after the removal returned).
    pub fn wait_for_deletions(&self) {
        self.trash.wait_idle();
    }

    /// Find an image by id (`sha256:<hex>`, bare hex, or an unambiguous prefix of at least 12
    /// hex characters), by name (normalized), or by `name@sha256:<digest>`.
    pub fn resolve(&self, reference: &str) -> Option<ImageRecord> {
        let st = self.snapshot();
        resolve_in(&st, reference).map(|i| st[i].record.clone())
    }

    /// Remove the image `reference` resolves to, with all its names, and garbage-collect the
    /// blobs and layers no other image uses. `Ok(None)` when nothing matched. Returns once the
    /// removal is on disk and the blobs and layers are gone from the store; the layer trees are
    /// deleted in the background ([`ImageStore::wait_for_deletions`]).
    pub fn remove(&self, reference: &str) -> Result<Option<ImageRecord>, ImageError> {
        let mut writer = lock(&self.writer);
        let st = self.snapshot();
        let Some(i) = resolve_in(&st, reference) else {
            return Ok(None);
        };
        let mut next = (*st).clone();
        let removed = next.remove(i);
        writer.save(&next)?;
        self.publish(next);
        let mut gc = GcCandidates::default();
        gc.add(&removed);
        let trash = self.gc_locked(&self.snapshot(), gc);
        drop(writer);
        self.trash.delete_later(trash);
        Ok(Some(removed.record))
    }

    /// Unpacked layer directories of `image`, lowest first (reverse them for an overlayfs
    /// `lowerdir`). Layers are unpacked on first use, once, and shared between images.
    pub fn layer_dirs(&self, image: &ImageRecord) -> Result<Vec<PathBuf>, ImageError> {
        // Use the stored layers, not the caller's copy: their digests become paths.
        let layers = {
            let st = self.snapshot();
            let img = st.iter().find(|i| i.record.id == image.id).ok_or_else(|| {
                ImageError::ImageGone {
                    id: image.id.clone(),
                }
            })?;
            img.record.layers.clone()
        };
        let mut dirs = Vec::with_capacity(layers.len());
        for l in &layers {
            dirs.push(self.ensure_layer(&image.id, l)?);
        }
        Ok(dirs)
    }

    /// Bytes and inodes used under the store root, and the mount point holding it.
    pub fn usage(&self) -> Result<StoreUsage, ImageError> {
        let root = &self.paths.root;
        let root_meta = fs::symlink_metadata(root).map_err(ImageError::io("stat", root))?;
        let mut seen = HashSet::new();
        let (mut bytes, mut inodes) = (0u64, 0u64);
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                // Removed meanwhile (GC, a finished unpack): not an error.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(ImageError::io("read directory", &dir)(e)),
            };
            for entry in entries {
                let Ok(entry) = entry else { continue };
                let Ok(m) = entry.metadata() else { continue };
                if m.dev() != root_meta.dev() {
                    continue;
                }
                if seen.insert((m.dev(), m.ino())) {
                    bytes += m.blocks() * 512;
                    inodes += 1;
                }
                if m.is_dir() {
                    stack.push(entry.path());
                }
            }
        }
        // The root itself.
        bytes += root_meta.blocks() * 512;
        inodes += 1;
        Ok(StoreUsage {
            mountpoint: crate::content::mountpoint_of(root, root_meta.dev()),
            used_bytes: bytes,
            inodes_used: inodes,
        })
    }

    /// Stream `reader` into the content store as blob `expected`: to a temp file, hashed,
    /// verified, fsynced, renamed into place. Returns the blob's size. When the blob is
    /// already stored, returns its size without reading `reader`.
    pub fn ingest_blob(&self, expected: &Digest, reader: impl Read) -> Result<u64, ImageError> {
        let dest = self.paths.blob(expected)?;
        if let Ok(m) = fs::metadata(&dest) {
            return Ok(m.len());
        }
        let location = format!("ingest of {expected}");
        let read_err = |source| ImageError::Io {
            op: "read blob stream for",
            path: dest.clone(),
            source,
        };
        let (tmp, size) = write_verified(
            &self.paths.tmp,
            expected,
            None,
            reader,
            &location,
            &read_err,
        )?;
        tmp.persist(&dest)
            .map_err(|e| ImageError::io("rename into", &dest)(e.error))?;
        // Durable with the record that names it (commit_image fsyncs the directory once).
        self.blobs_dirty.store(true, Ordering::SeqCst);
        Ok(size)
    }

    /// Whether the blob is in the content store.
    pub fn has_blob(&self, d: &Digest) -> bool {
        self.paths.blob(d).is_ok_and(|p| p.is_file())
    }

    /// Record an image whose manifest, config and layers were already ingested, named
    /// `names` (references, normalized here; a name may pin the manifest's digest or that of
    /// a stored index that leads to it, which then resolves to the image too).
    pub fn commit_image(
        &self,
        manifest_digest: &Digest,
        names: &[String],
    ) -> Result<ImageRecord, ImageError> {
        let mhex = sha256_hex(manifest_digest, "commit_image")?;
        let mpath = self.paths.blobs.join(mhex);
        let location = mpath.display().to_string();
        let bytes = self.read_blob_json("image manifest", manifest_digest)?;
        let kind = doc_kind(
            &serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("mediaType").and_then(|m| m.as_str()).map(Into::into))
                .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into()),
        );
        if kind != Some(DocKind::Manifest) {
            return Err(ImageError::InvalidImage {
                what: "manifest",
                digest: manifest_digest.to_string(),
                reason: "is not an image manifest (commit the platform's manifest, not an index)"
                    .to_owned(),
            });
        }
        let manifest: ImageManifest = parse_json(&bytes, "image manifest", &location)?;
        check_config_descriptor(&manifest, manifest_digest.as_ref())?;
        let cfg_digest = manifest.config().digest();
        let cfg_bytes = self.read_blob_json("image config", cfg_digest)?;
        let config: ImageConfiguration = parse_json(
            &cfg_bytes,
            "image config",
            &self.paths.blob(cfg_digest)?.display().to_string(),
        )?;
        check_config_platform(&config, cfg_digest.as_ref())?;
        let record = build_record(manifest_digest.as_ref(), &manifest, &config)?;
        let mut image = StoredImage {
            record,
            index_digests: Vec::new(),
        };
        let mut refs = Vec::with_capacity(names.len());
        for n in names {
            let r = Reference::parse_normalized(n)?;
            if let Some(d) = &r.digest {
                if *d != image.record.manifest_digest
                    && !self.index_leads_to(d, &image.record.manifest_digest, 0)
                {
                    return Err(ImageError::InvalidReference {
                        reference: n.clone(),
                        reason: "pins a digest that is neither this manifest nor a stored index leading to it",
                    });
                }
            }
            refs.push(r);
        }
        apply_names(&mut image, &refs)?;
        let mut writer = lock(&self.writer);
        // Re-check under the lock: a concurrent removal may have collected shared blobs.
        for d in image.blobs() {
            let is_index = image.index_digests.iter().any(|i| i == d);
            let digest = parse_sha256(d, "image record")?;
            if !is_index && !self.has_blob(&digest) {
                return Err(ImageError::MissingBlob {
                    digest: d.to_owned(),
                    location: self.paths.blobs.display().to_string(),
                });
            }
        }
        self.sync_blobs_dir()?;
        let (mut records, trash) = self.commit_locked(&mut writer, vec![image])?;
        drop(writer);
        self.trash.delete_later(trash);
        Ok(records.remove(0))
    }

    /// fsync `blobs/` if a blob was renamed into it since the last time, making every blob
    /// ingested so far durable under its name.
    fn sync_blobs_dir(&self) -> Result<(), ImageError> {
        if self.blobs_dirty.swap(false, Ordering::SeqCst) {
            if let Err(e) = metadata::sync_dir(&self.paths.blobs) {
                self.blobs_dirty.store(true, Ordering::SeqCst);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Counters since the store was opened.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            layers_unpacked: self.layers_unpacked.load(Ordering::Relaxed),
        }
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.paths.root
    }

    fn read_blob_json(&self, what: &'static str, d: &Digest) -> Result<Vec<u8>, ImageError> {
        let path = self.paths.blob(d)?;
        let m = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ImageError::MissingBlob {
                    digest: d.to_string(),
                    location: self.paths.blobs.display().to_string(),
                })
            }
            Err(e) => return Err(ImageError::io("stat", &path)(e)),
        };
        if m.len() > MAX_JSON {
            return Err(ImageError::TooLarge {
                what,
                digest: d.to_string(),
                size: m.len(),
                limit: MAX_JSON,
                location: path.display().to_string(),
            });
        }
        fs::read(&path).map_err(ImageError::io("read", &path))
    }

    /// Whether the stored index `index` lists `manifest` (directly or through nested indexes).
    fn index_leads_to(&self, index: &str, manifest: &str, depth: usize) -> bool {
        if depth >= MAX_INDEX_DEPTH {
            return false;
        }
        let Ok(d) = parse_sha256(index, "name") else {
            return false;
        };
        let Ok(bytes) = self.read_blob_json("image index", &d) else {
            return false;
        };
        let Ok(idx) = serde_json::from_slice::<ImageIndex>(&bytes) else {
            return false;
        };
        idx.manifests().iter().any(|m| {
            let md = m.digest().to_string();
            md == manifest
                || (doc_kind(m.media_type()) == Some(DocKind::Index)
                    && self.index_leads_to(&md, manifest, depth + 1))
        })
    }

    /// Add or merge `new` images: a tag moves to the image that now has it; an image already
    /// stored (same id) keeps its creation time and gains the new names. Writes the metadata,
    /// then publishes it, then collects what the merge freed. Returns the records and the
    /// layer trees to delete once the writer lock is released.
    fn commit_locked(
        &self,
        writer: &mut MutexGuard<'_, MetaFile>,
        new: Vec<StoredImage>,
    ) -> Result<(Vec<ImageRecord>, Vec<PathBuf>), ImageError> {
        let current = self.snapshot();
        let mut next = (*current).clone();
        let mut gc = GcCandidates::default();
        let mut ids = Vec::new();
        let now = now_nanos();
        for img in new {
            for other in next.iter_mut().filter(|o| o.record.id != img.record.id) {
                other
                    .record
                    .repo_tags
                    .retain(|t| !img.record.repo_tags.contains(t));
            }
            match next.iter_mut().find(|o| o.record.id == img.record.id) {
                Some(existing) => {
                    if existing.record.manifest_digest != img.record.manifest_digest {
                        // Same config, different manifest (e.g. recompressed layers): the new
                        // manifest replaces the old one and its digests.
                        gc.add(existing);
                        existing.record.repo_digests.clear();
                        existing.index_digests.clear();
                    }
                    let created = existing.record.created_at;
                    let mut merged = img.record.clone();
                    merged.created_at = created;
                    merged.repo_tags = existing.record.repo_tags.clone();
                    merged.repo_digests = existing.record.repo_digests.clone();
                    for t in &img.record.repo_tags {
                        push_unique(&mut merged.repo_tags, t.clone());
                    }
                    for d in &img.record.repo_digests {
                        push_unique(&mut merged.repo_digests, d.clone());
                    }
                    existing.record = merged;
                    for d in &img.index_digests {
                        push_unique(&mut existing.index_digests, d.clone());
                    }
                }
                None => {
                    let mut img = img.clone();
                    img.record.created_at = now;
                    next.push(img);
                }
            }
            push_unique(&mut ids, img.record.id.clone());
        }
        if next != *current {
            writer.save(&next)?;
            self.publish(next);
        }
        let st = self.snapshot();
        let trash = self.gc_locked(&st, gc);
        let records = ids
            .iter()
            .filter_map(|id| st.iter().find(|i| &i.record.id == id))
            .map(|i| i.record.clone())
            .collect();
        Ok((records, trash))
    }

    /// Delete the candidate blobs and layers that no image in `st` uses. Layer trees are
    /// renamed into `tmp/` and returned, to be deleted without holding the lock.
    fn gc_locked(&self, st: &[StoredImage], gc: GcCandidates) -> Vec<PathBuf> {
        let used_blobs: HashSet<&str> = st.iter().flat_map(|i| i.blobs()).collect();
        let used_layers: HashSet<&str> = st.iter().flat_map(|i| i.diff_ids()).collect();
        for b in gc.blobs.iter().filter(|b| !used_blobs.contains(b.as_str())) {
            let hex = b.strip_prefix("sha256:").unwrap_or(b);
            if hex.len() != 64 || !is_lower_hex(hex) {
                continue;
            }
            let p = self.paths.blobs.join(hex);
            match fs::remove_file(&p) {
                Ok(()) => tracing::debug!(blob = %b, "blob removed"),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(err) => tracing::warn!(path = %p.display(), %err, "cannot remove unused blob"),
            }
        }
        let mut trash = Vec::new();
        for d in gc
            .diff_ids
            .iter()
            .filter(|d| !used_layers.contains(d.as_str()))
        {
            let hex = d.strip_prefix("sha256:").unwrap_or(d);
            if hex.len() != 64 || !is_lower_hex(hex) {
                continue;
            }
            if let Some(t) = self.trash_layer(hex) {
                trash.push(t);
            }
        }
        trash
    }

    /// Move `layers/<hex>` into `tmp/` (so it is gone from `layers/` at once); returns where.
    fn trash_layer(&self, hex: &str) -> Option<PathBuf> {
        let from = self.paths.layer(hex);
        let to = self.paths.tmp.join(format!("trash-{hex}-{}", now_nanos()));
        match fs::rename(&from, &to) {
            Ok(()) => {
                tracing::debug!(layer = %hex, "unpacked layer removed");
                Some(to)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(err) => {
                tracing::warn!(path = %from.display(), %err, "cannot remove unused layer");
                None
            }
        }
    }

    /// Remove blobs and layers that no record references (left by a crash between renaming
    /// content into place and writing the metadata, or during a removal).
    fn remove_orphans(&self) -> Result<(), ImageError> {
        let writer = lock(&self.writer);
        let mut gc = GcCandidates::default();
        for entry in fs::read_dir(&self.paths.blobs)
            .map_err(ImageError::io("read directory", &self.paths.blobs))?
        {
            let entry = entry.map_err(ImageError::io("read directory", &self.paths.blobs))?;
            gc.blobs
                .insert(format!("sha256:{}", entry.file_name().to_string_lossy()));
        }
        for entry in fs::read_dir(&self.paths.layers)
            .map_err(ImageError::io("read directory", &self.paths.layers))?
        {
            let entry = entry.map_err(ImageError::io("read directory", &self.paths.layers))?;
            gc.diff_ids
                .insert(format!("sha256:{}", entry.file_name().to_string_lossy()));
        }
        let trash = self.gc_locked(&self.snapshot(), gc);
        drop(writer);
        if !trash.is_empty() {
            tracing::info!(
                layers = trash.len(),
                "removing unreferenced layers left by an earlier run"
            );
        }
        trash::delete_now(trash);
        Ok(())
    }

    /// The directory of one layer, unpacking it first if needed.
    fn ensure_layer(&self, image_id: &str, l: &crate::LayerRef) -> Result<PathBuf, ImageError> {
        let diff = parse_sha256(&l.diff_id, &format!("image {image_id}"))?;
        let hex = diff.digest().to_owned();
        let dir = self.paths.layer(&hex);
        if dir.is_dir() {
            return Ok(dir);
        }
        let layer_lock = lock(&self.unpacking)
            .entry(hex.clone())
            .or_default()
            .clone();
        let result = {
            let _guard = lock(&layer_lock);
            if dir.is_dir() {
                Ok(dir.clone())
            } else {
                self.unpack_into(image_id, l, &hex, &dir)
            }
        };
        // Forget the lock once no other thread waits on it.
        let mut map = lock(&self.unpacking);
        if Arc::strong_count(&layer_lock) == 2 {
            map.remove(&hex);
        }
        result
    }

    fn unpack_into(
        &self,
        image_id: &str,
        l: &crate::LayerRef,
        hex: &str,
        dir: &Path,
    ) -> Result<PathBuf, ImageError> {
        let blob_digest = parse_sha256(&l.digest, &format!("image {image_id}"))?;
        let blob_path = self.paths.blob(&blob_digest)?;
        let blob = match crate::content::open_regular(&blob_path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ImageError::MissingBlob {
                    digest: l.digest.clone(),
                    location: self.paths.blobs.display().to_string(),
                })
            }
            Err(e) => return Err(ImageError::io("open", &blob_path)(e)),
        };
        let tmp = tempfile::Builder::new()
            .prefix(&format!("unpack-{hex}-"))
            .tempdir_in(&self.paths.tmp)
            .map_err(ImageError::io("create temp directory in", &self.paths.tmp))?;
        let started = std::time::Instant::now();
        let max = self.max_unpacked_layer.load(Ordering::Relaxed);
        unpack::unpack_layer(blob, &l.media_type, &l.digest, &l.diff_id, tmp.path(), max)?;
        // One syncfs, not an fsync per file: with hundreds of files, per-file fsyncs (even from
        // eight threads) measured 65-140 ms against 3-9 ms for syncfs on the shared test host.
        let root = sys::open_dir(tmp.path()).map_err(ImageError::io("open", tmp.path()))?;
        sys::syncfs(root.as_fd()).map_err(ImageError::io("sync file system of", tmp.path()))?;
        kinglet_fault::crash_point!("image.unpack.after-extract");
        drop(root);
        {
            // Publish under the writer lock, so a concurrent removal of the last image using
            // this layer either runs before (and we drop the unpacked tree) or after (and
            // collects it).
            let _writer = lock(&self.writer);
            let st = self.snapshot();
            if !st.iter().any(|i| i.diff_ids().any(|d| d == l.diff_id)) {
                return Err(ImageError::ImageGone {
                    id: image_id.to_owned(),
                });
            }
            fs::rename(tmp.path(), dir).map_err(ImageError::io("rename into", dir))?;
        }
        self.layers_unpacked.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(layer = %l.digest, diff_id = %l.diff_id, elapsed = ?started.elapsed(), "layer unpacked");
        Ok(dir.to_owned())
    }
}

/// Index of the image `reference` names in `st`.
fn resolve_in(st: &[StoredImage], reference: &str) -> Option<usize> {
    let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
    if hex.len() >= 12 && hex.len() <= 64 && is_lower_hex(hex) {
        let mut hits = st.iter().enumerate().filter(|(_, i)| {
            i.record
                .id
                .strip_prefix("sha256:")
                .is_some_and(|h| h.starts_with(hex))
        });
        match (hits.next(), hits.next()) {
            (Some((i, _)), None) => return Some(i),
            (Some(_), Some(_)) => {
                tracing::debug!(reference, "ambiguous image id prefix");
                return None;
            }
            (None, _) => {}
        }
        if reference.starts_with("sha256:") {
            return None;
        }
    }
    let r = Reference::parse_normalized(reference).ok()?;
    match &r.digest {
        Some(d) => {
            let repo = r.repository();
            st.iter().position(|i| {
                (i.record.manifest_digest == *d || i.index_digests.contains(d))
                    && i.record
                        .repo_digests
                        .iter()
                        .chain(&i.record.repo_tags)
                        .any(|n| {
                            n.strip_prefix(repo.as_str())
                                .is_some_and(|rest| rest.starts_with(['@', ':']))
                        })
            })
        }
        None => {
            let full = r.to_string();
            st.iter().position(|i| i.record.repo_tags.contains(&full))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ImageStore>();
    }

    #[test]
    fn readers_do_not_wait_for_a_writer() {
        let t = tempfile::tempdir().unwrap();
        let s = Arc::new(ImageStore::open(t.path()).unwrap());
        // A writer in the middle of a change (e.g. fsyncing the metadata file).
        let writer = lock(&s.writer);
        let reader = {
            let s = s.clone();
            std::thread::spawn(move || (s.list().len(), s.resolve("busybox").is_none()))
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !reader.is_finished() {
            assert!(
                std::time::Instant::now() < deadline,
                "list/resolve waited for the writer lock"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        drop(writer);
        assert_eq!(reader.join().unwrap(), (0, true));
    }

    #[test]
    fn id_prefixes_must_be_unambiguous_and_long_enough() {
        let img = |hex: &str| StoredImage {
            record: ImageRecord {
                id: format!("sha256:{hex}"),
                repo_tags: vec![],
                repo_digests: vec![],
                size: 0,
                manifest_digest: String::new(),
                config: Default::default(),
                layers: vec![],
                created_at: 0,
            },
            index_digests: vec![],
        };
        let a = format!("abcdef012345{}", "0".repeat(52));
        let b = format!("abcdef012345{}", "1".repeat(52));
        let st = vec![img(&a), img(&b)];
        assert_eq!(resolve_in(&st, "abcdef012345"), None, "ambiguous");
        assert_eq!(resolve_in(&st, "abcdef0123450"), Some(0));
        assert_eq!(resolve_in(&st, "sha256:abcdef0123451"), Some(1));
        assert_eq!(resolve_in(&st, &b), Some(1));
        assert_eq!(resolve_in(&st, "abcdef01234"), None, "too short");
    }
}
