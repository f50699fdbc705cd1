//! The crate's one error type.
//!
//! Every variant names what failed and where (a path, a blob digest, a layer and the entry in
//! it) and carries the underlying cause as its `source`; the message never repeats the source.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in the image store.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A file system operation on `path` failed.
    #[error("{op} {path}")]
    Io {
        /// What was attempted ("create", "read", "rename", ...).
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Another process holds the store's lock.
    #[error("image store {root} is in use by another process")]
    Locked { root: PathBuf },
    /// The store's metadata file cannot be parsed.
    #[error("image store metadata {path} is corrupt")]
    CorruptMetadata {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The store's metadata cannot be serialized (a bug, kept as an error rather than a panic).
    #[error("cannot serialize image store metadata")]
    SerializeMetadata {
        #[source]
        source: serde_json::Error,
    },
    /// An image reference does not follow the docker reference grammar.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        reference: String,
        reason: &'static str,
    },
    /// A digest string is malformed.
    #[error("invalid digest {digest:?} in {location}")]
    InvalidDigest { digest: String, location: String },
    /// A digest uses an algorithm the store does not verify (only sha256 is supported).
    #[error("unsupported digest algorithm in {digest} ({location}): only sha256 is supported")]
    UnsupportedDigest { digest: String, location: String },
    /// Content read from `location` does not hash to the digest it was announced with.
    #[error("blob {digest} from {location} has digest {actual}")]
    DigestMismatch {
        digest: String,
        actual: String,
        location: String,
    },
    /// A blob's size differs from the size in its descriptor.
    #[error("blob {digest} from {location} is {actual} bytes, its descriptor says {expected}")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
        location: String,
    },
    /// A JSON document (index, manifest, config) is larger than the store accepts.
    #[error("{what} {digest} from {location} is {size} bytes, more than the {limit} allowed")]
    TooLarge {
        what: &'static str,
        digest: String,
        size: u64,
        limit: u64,
        location: String,
    },
    /// A blob that a descriptor references is not there.
    #[error("blob {digest} is missing from {location}")]
    MissingBlob { digest: String, location: String },
    /// The import source is neither an OCI image layout directory nor an oci-archive tar.
    #[error("{path} is not an OCI image layout or oci-archive: {reason}")]
    NotAnImage { path: PathBuf, reason: &'static str },
    /// The import source cannot be read as a tar archive (truncated or corrupt).
    #[error("cannot read oci-archive {path}")]
    Archive {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A JSON document (index.json, an index, manifest or config blob) cannot be parsed.
    #[error("malformed {what} {location}")]
    MalformedJson {
        what: &'static str,
        location: String,
        #[source]
        source: serde_json::Error,
    },
    /// A manifest or config is structurally wrong (e.g. layer count does not match diff_ids).
    #[error("{what} {digest}: {reason}")]
    InvalidImage {
        what: &'static str,
        digest: String,
        reason: String,
    },
    /// A descriptor has a media type the store cannot use where it appears.
    #[error("{digest} in {location} has unsupported media type {media_type:?}")]
    UnsupportedMediaType {
        digest: String,
        media_type: String,
        location: String,
    },
    /// No manifest in the source is for this host's platform.
    #[error("no image for {wanted} in {location} (found: {found})")]
    NoMatchingPlatform {
        wanted: String,
        found: String,
        location: String,
    },
    /// Image indexes nest deeper than the store follows.
    #[error("image indexes nest deeper than {max} levels in {location}")]
    IndexTooDeep { max: usize, location: String },
    /// An image's tag annotation or name gives no usable tag.
    #[error("image {digest}: invalid tag {tag:?} from {origin}")]
    InvalidTag {
        digest: String,
        tag: String,
        origin: &'static str,
    },
    /// A layer blob cannot be decompressed or read as a tar archive.
    #[error("layer {layer}: cannot read archive")]
    LayerArchive {
        layer: String,
        #[source]
        source: io::Error,
    },
    /// A layer that unpacks to more than the store's limit (a decompression bomb, or an image
    /// larger than this node accepts).
    #[error("layer {layer} unpacks to more than {limit} bytes (max-unpacked-layer-bytes); unpacking stopped — raise the limit in the daemon config if the image is genuine")]
    LayerTooLarge { layer: String, limit: u64 },
    /// A layer entry is refused for safety (path escape, symlink in a parent, bad hard link).
    #[error("layer {layer}: entry {entry:?}: {reason}")]
    UnsafeEntry {
        layer: String,
        entry: String,
        reason: &'static str,
    },
    /// Extracting a layer entry failed.
    #[error("layer {layer}: entry {entry:?}: {op}")]
    LayerEntry {
        layer: String,
        entry: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// The uncompressed layer does not hash to the diff_id listed in the image config.
    #[error(
        "layer {layer}: uncompressed content has digest {actual}, the image config says {expected}"
    )]
    DiffIdMismatch {
        layer: String,
        expected: String,
        actual: String,
    },
    /// The image was removed from the store while the operation ran.
    #[error("image {id} is not in the store")]
    ImageGone { id: String },
}

impl ImageError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| ImageError::Io { op, path, source }
    }
}
