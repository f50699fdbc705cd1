//! Reading an OCI image layout directory or an oci-archive tar into a staging area.
//!
//! Every blob an import needs is copied into a private staging directory under the store's
//! `tmp/`, hashed on the way and checked against its digest (and its descriptor's size) before
//! anything reads it. Nothing here touches `blobs/` or the metadata: the store moves the staged
//! blobs into place and writes the records only once the whole import has been read and
//! checked. Dropping the [`Staged`] result removes whatever was staged.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use tempfile::TempDir;

use crate::content::{open_regular, write_verified};
use crate::digest::{sha256_hex, Digest};
use crate::manifest::{
    apply_names, build_record, check_config_descriptor, check_config_platform, doc_kind, names_for,
    parse_json, platform_ok, push_unique, select_manifest, sniff_kind, DocKind, MAX_INDEX_DEPTH,
    MAX_JSON,
};
use crate::metadata::StoredImage;
use crate::ImageError;

/// Verified blobs of one import, waiting in a private temp directory.
pub(crate) struct Staged {
    dir: TempDir,
    /// Staged blobs: hex → size.
    sizes: HashMap<String, u64>,
}

impl Staged {
    fn new(tmp: &Path) -> Result<Staged, ImageError> {
        let dir = tempfile::Builder::new()
            .prefix("import-")
            .tempdir_in(tmp)
            .map_err(ImageError::io("create staging directory in", tmp))?;
        Ok(Staged {
            dir,
            sizes: HashMap::new(),
        })
    }

    /// Path of a staged blob.
    pub fn path(&self, hex: &str) -> PathBuf {
        self.dir.path().join(hex)
    }

    /// Whether the blob with this hex digest is staged.
    pub fn contains(&self, hex: &str) -> bool {
        self.sizes.contains_key(hex)
    }

    fn stage(
        &mut self,
        digest: &Digest,
        size: Option<u64>,
        reader: impl Read,
        location: &str,
        read_err: &dyn Fn(io::Error) -> ImageError,
    ) -> Result<(), ImageError> {
        let hex = sha256_hex(digest, location)?.to_owned();
        let (tmp, n) = write_verified(self.dir.path(), digest, size, reader, location, read_err)?;
        let dest = self.path(&hex);
        tmp.persist(&dest)
            .map_err(|e| ImageError::io("rename into", &dest)(e.error))?;
        self.sizes.insert(hex, n);
        Ok(())
    }
}

/// Where the import reads from.
enum Source {
    /// An OCI image layout directory; blobs are read on demand.
    Layout(PathBuf),
    /// An oci-archive; all its blobs were staged while scanning it.
    Archive(PathBuf),
}

impl Source {
    fn blob_location(&self, hex: &str) -> String {
        match self {
            Source::Layout(dir) => dir.join("blobs/sha256").join(hex).display().to_string(),
            Source::Archive(p) => format!("{}:blobs/sha256/{hex}", p.display()),
        }
    }

    fn path(&self) -> &Path {
        match self {
            Source::Layout(p) | Source::Archive(p) => p,
        }
    }
}

/// The images found in an import source, with their verified blobs staged.
pub(crate) struct Found {
    pub images: Vec<StoredImage>,
    pub staged: Staged,
}

/// The `index.json` of an image layout directory (bounded in size).
fn read_layout_index(path: &Path) -> Result<Vec<u8>, ImageError> {
    let index_path = path.join("index.json");
    match fs::metadata(&index_path) {
        Ok(m) if m.len() > MAX_JSON => Err(ImageError::TooLarge {
            what: "index.json",
            digest: "(none)".to_owned(),
            size: m.len(),
            limit: MAX_JSON,
            location: index_path.display().to_string(),
        }),
        Ok(_) => fs::read(&index_path).map_err(ImageError::io("read", &index_path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ImageError::NotAnImage {
            path: path.to_owned(),
            reason: "directory has no index.json",
        }),
        Err(e) => Err(ImageError::io("stat", &index_path)(e)),
    }
}

/// What `path` is (a layout directory or an archive, whose blobs are staged while it is
/// scanned), its `index.json`, and the stem the tag rules use.
fn open_source(
    path: &Path,
    meta: &fs::Metadata,
    staged: &mut Staged,
) -> Result<(Source, Vec<u8>, String), ImageError> {
    if meta.is_dir() {
        let bytes = read_layout_index(path)?;
        let stem = path
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok((Source::Layout(path.to_owned()), bytes, stem))
    } else if meta.is_file() {
        let bytes = scan_archive(path, staged)?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok((Source::Archive(path.to_owned()), bytes, stem))
    } else {
        Err(ImageError::NotAnImage {
            path: path.to_owned(),
            reason: "neither a directory nor a regular file",
        })
    }
}

/// Read the image layout or oci-archive at `path` and stage every blob its images need.
/// `name` and the file or directory stem feed the tag rules of [`names_for`].
pub(crate) fn read_source(
    path: &Path,
    name: Option<&str>,
    tmp: &Path,
) -> Result<Found, ImageError> {
    let meta = fs::metadata(path).map_err(ImageError::io("stat", path))?;
    let mut staged = Staged::new(tmp)?;
    let (source, index_json, stem) = open_source(path, &meta, &mut staged)?;
    let index_location = match &source {
        Source::Layout(p) => p.join("index.json").display().to_string(),
        Source::Archive(p) => format!("{}:index.json", p.display()),
    };
    let index: ImageIndex = parse_json(&index_json, "index.json", &index_location)?;

    let mut reader = Reader {
        source,
        staged,
        name,
        stem,
    };
    let mut by_manifest: BTreeMap<String, StoredImage> = BTreeMap::new();
    let mut order = Vec::new();
    let mut platform_errors = Vec::new();
    for entry in index.manifests() {
        if let Err(found) = platform_ok(entry) {
            tracing::debug!(digest = %entry.digest(), platform = %found, "skipping manifest for another platform");
            platform_errors.push(ImageError::NoMatchingPlatform {
                wanted: format!("{}/{}", crate::HOST_OS, crate::host_arch()),
                found,
                location: index_location.clone(),
            });
            continue;
        }
        let mut image = match reader.resolve(entry, 0, Vec::new()) {
            Ok(image) => image,
            Err(e @ ImageError::NoMatchingPlatform { .. }) => {
                tracing::debug!(digest = %entry.digest(), err = %e, "skipping manifest for another platform");
                platform_errors.push(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        let refs = names_for(
            entry.annotations().as_ref(),
            reader.name,
            &reader.stem,
            &image.record.manifest_digest,
        )?;
        let key = image.record.manifest_digest.clone();
        let known = image.index_digests.clone();
        let slot = match by_manifest.get_mut(&key) {
            Some(existing) => {
                for d in std::mem::take(&mut image.index_digests) {
                    push_unique(&mut existing.index_digests, d);
                }
                existing
            }
            None => {
                order.push(key.clone());
                by_manifest.entry(key).or_insert(image)
            }
        };
        check_pinned_digests(&refs, &slot.record.manifest_digest, &known)?;
        apply_names(slot, &refs)?;
    }
    if by_manifest.is_empty() {
        return Err(match platform_errors.into_iter().next() {
            Some(e) => e,
            None => ImageError::NotAnImage {
                path: path.to_owned(),
                reason: "index.json lists no image manifests",
            },
        });
    }
    let images = order.iter().filter_map(|k| by_manifest.remove(k)).collect();
    Ok(Found {
        images,
        staged: reader.staged,
    })
}

/// A name from an annotation may pin a digest only of this image's manifest or of an index
/// that led to it.
fn check_pinned_digests(
    refs: &[crate::Reference],
    manifest_digest: &str,
    indexes: &[String],
) -> Result<(), ImageError> {
    for r in refs {
        if let Some(d) = &r.digest {
            if d != manifest_digest && !indexes.contains(d) {
                return Err(ImageError::InvalidReference {
                    reference: r.to_string(),
                    reason: "pins a digest that is not this image's manifest or index",
                });
            }
        }
    }
    Ok(())
}

struct Reader<'a> {
    source: Source,
    staged: Staged,
    name: Option<&'a str>,
    stem: String,
}

impl Reader<'_> {
    /// Make sure the blob is staged (verified), and check its size against the descriptor.
    fn ensure(&mut self, digest: &Digest, size: u64) -> Result<PathBuf, ImageError> {
        let hex = sha256_hex(digest, &self.source.path().display().to_string())?.to_owned();
        let location = self.source.blob_location(&hex);
        if let Some(&have) = self.staged.sizes.get(&hex) {
            if have != size {
                return Err(ImageError::SizeMismatch {
                    digest: digest.to_string(),
                    expected: size,
                    actual: have,
                    location,
                });
            }
            return Ok(self.staged.path(&hex));
        }
        match &self.source {
            Source::Archive(p) => Err(ImageError::MissingBlob {
                digest: digest.to_string(),
                location: p.display().to_string(),
            }),
            Source::Layout(dir) => {
                let path = dir.join("blobs").join("sha256").join(&hex);
                let file = match open_regular(&path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        return Err(ImageError::MissingBlob {
                            digest: digest.to_string(),
                            location: dir.display().to_string(),
                        })
                    }
                    Err(e) => return Err(ImageError::io("open", &path)(e)),
                };
                let read_err = |e| ImageError::io("read", &path)(e);
                self.staged.stage(
                    digest,
                    Some(size),
                    BufReader::new(file),
                    &location,
                    &read_err,
                )?;
                Ok(self.staged.path(&hex))
            }
        }
    }

    /// Stage and read a JSON document (index, manifest or config).
    fn json_blob(&mut self, what: &'static str, d: &Descriptor) -> Result<Vec<u8>, ImageError> {
        if d.size() > MAX_JSON {
            return Err(ImageError::TooLarge {
                what,
                digest: d.digest().to_string(),
                size: d.size(),
                limit: MAX_JSON,
                location: self.source.path().display().to_string(),
            });
        }
        let path = self.ensure(d.digest(), d.size())?;
        fs::read(&path).map_err(ImageError::io("read", &path))
    }

    /// Follow a descriptor (through nested indexes) to the image for this host, staging every
    /// blob on the way.
    fn resolve(
        &mut self,
        d: &Descriptor,
        depth: usize,
        mut indexes: Vec<String>,
    ) -> Result<StoredImage, ImageError> {
        let digest = d.digest().to_string();
        let kind = doc_kind(d.media_type());
        let bytes = self.json_blob(
            if kind == Some(DocKind::Index) {
                "image index"
            } else {
                "image manifest"
            },
            d,
        )?;
        let location = self
            .source
            .blob_location(sha256_hex(d.digest(), "descriptor")?);
        let kind = match kind {
            Some(k) => k,
            None if d.media_type().to_string().is_empty() => {
                sniff_kind(&bytes).ok_or_else(|| ImageError::UnsupportedMediaType {
                    digest: digest.clone(),
                    media_type: String::new(),
                    location: location.clone(),
                })?
            }
            None => {
                return Err(ImageError::UnsupportedMediaType {
                    digest,
                    media_type: d.media_type().to_string(),
                    location,
                })
            }
        };
        match kind {
            DocKind::Index => {
                if depth >= MAX_INDEX_DEPTH {
                    return Err(ImageError::IndexTooDeep {
                        max: MAX_INDEX_DEPTH,
                        location,
                    });
                }
                let index: ImageIndex = parse_json(&bytes, "image index", &location)?;
                let chosen = select_manifest(&index, &location)?.clone();
                indexes.push(digest);
                self.resolve(&chosen, depth + 1, indexes)
            }
            DocKind::Manifest => {
                let manifest: ImageManifest = parse_json(&bytes, "image manifest", &location)?;
                check_config_descriptor(&manifest, &digest)?;
                let cfg_desc = manifest.config();
                let cfg_bytes = self.json_blob("image config", cfg_desc)?;
                let cfg_location = self
                    .source
                    .blob_location(sha256_hex(cfg_desc.digest(), &location)?);
                let config: ImageConfiguration =
                    parse_json(&cfg_bytes, "image config", &cfg_location)?;
                check_config_platform(&config, cfg_desc.digest().as_ref())?;
                let record = build_record(&digest, &manifest, &config)?;
                for layer in manifest.layers() {
                    self.ensure(layer.digest(), layer.size())?;
                }
                Ok(StoredImage {
                    record,
                    index_digests: indexes,
                })
            }
        }
    }
}

/// Read an oci-archive in one pass: stage (and verify) every `blobs/sha256/<hex>` entry and
/// return the contents of `index.json`.
fn scan_archive(path: &Path, staged: &mut Staged) -> Result<Vec<u8>, ImageError> {
    let file = File::open(path).map_err(ImageError::io("open", path))?;
    let archive_err = |source| ImageError::Archive {
        path: path.to_owned(),
        source,
    };
    let mut archive = tar::Archive::new(BufReader::new(file));
    let mut index_json = None;
    for entry in archive.entries().map_err(archive_err)? {
        let mut entry = entry.map_err(archive_err)?;
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_contiguous()) {
            continue;
        }
        let raw = entry.path_bytes().into_owned();
        let Ok(name) = std::str::from_utf8(&raw) else {
            continue;
        };
        let name = name.trim_start_matches("./").trim_start_matches('/');
        if name == "index.json" {
            if entry.size() > MAX_JSON {
                return Err(ImageError::TooLarge {
                    what: "index.json",
                    digest: "(none)".to_owned(),
                    size: entry.size(),
                    limit: MAX_JSON,
                    location: path.display().to_string(),
                });
            }
            let mut buf = Vec::new();
            entry.read_to_end(&mut buf).map_err(archive_err)?;
            index_json = Some(buf);
        } else if let Some(hex) = name.strip_prefix("blobs/sha256/") {
            let Ok(digest) = format!("sha256:{hex}").parse::<Digest>() else {
                tracing::debug!(archive = %path.display(), entry = name, "ignoring entry that is not a sha256 blob");
                continue;
            };
            if staged.contains(hex) {
                continue;
            }
            let location = format!("{}:{name}", path.display());
            let size = entry.size();
            match staged.stage(&digest, Some(size), &mut entry, &location, &archive_err) {
                // The tar reader ends an entry early, without an error, at the end of a
                // truncated file.
                Err(ImageError::SizeMismatch { actual, .. }) if actual < size => {
                    return Err(archive_err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("entry {name} is cut short ({actual} of {size} bytes)"),
                    )))
                }
                other => other?,
            }
        }
    }
    index_json.ok_or_else(|| ImageError::NotAnImage {
        path: path.to_owned(),
        reason: "archive has no index.json",
    })
}
