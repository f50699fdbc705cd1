//! Kinglet's OCI image store: a content-addressed blob store, image records, and layers
//! unpacked once and shared, for overlayfs.
//!
//! - [`ImageStore`] owns a store root (e.g. `/var/lib/kinglet/images`): it imports OCI image
//!   layouts and oci-archives ([`ImageStore::import`]), takes blobs from a registry client
//!   ([`ImageStore::ingest_blob`], [`ImageStore::commit_image`]), resolves references, removes
//!   images with garbage collection, and unpacks layers on demand
//!   ([`ImageStore::layer_dirs`]).
//! - Every blob is checked against its sha256 digest before it becomes visible; a record is
//!   visible only when all its blobs are; the metadata is replaced atomically.
//! - Layer tars are untrusted input handled as root: the `unpack` module's documentation lists
//!   the rules that keep extraction inside the layer directory (no `..`, no symlink followed,
//!   hard links only within the layer, no device nodes, whiteouts converted for overlayfs).
//! - References are normalized with docker's rules by [`normalize_reference`].

mod content;
mod digest;
mod error;
mod import;
mod manifest;
mod metadata;
mod reference;
mod slots;
mod store;
mod sys;
mod trash;
mod unpack;

pub use digest::Digest;
pub use error::ImageError;
pub use manifest::{
    check_config_json_platform, classify_document, host_arch, select_platform_manifest,
    DocumentKind, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, HOST_OS,
};
pub use metadata::{ImageConfig, ImageRecord, LayerRef};
pub use reference::{normalize_reference, Reference, DEFAULT_DOMAIN, DEFAULT_TAG};
pub use store::{ImageStore, StoreStats, StoreUsage};

/// The default bound on what one layer may unpack to (uncompressed tar bytes): 32 GiB, far
/// above real layers, far below what a decompression bomb would write.
pub const DEFAULT_MAX_UNPACKED_LAYER_BYTES: u64 = 32 << 30;

/// Unpack one layer blob (tar, gzip- or zstd-compressed per `media_type`, else sniffed) into the
/// existing directory `dest` with the store's extraction rules (see the `unpack` module), then
/// check the uncompressed stream against `diff_id`. For tools and fuzzing; the store itself
/// unpacks through [`ImageStore::layer_dirs`].
pub fn unpack_layer_file(
    blob: std::fs::File,
    media_type: &str,
    diff_id: &str,
    dest: &std::path::Path,
) -> Result<(), ImageError> {
    unpack::unpack_layer(
        blob,
        media_type,
        "layer",
        diff_id,
        dest,
        DEFAULT_MAX_UNPACKED_LAYER_BYTES,
    )
}
