//! Interpreting image indexes, manifests and configs: platform selection, the checks a
//! manifest and its config must pass, the record built from them, and the rules that turn
//! annotations and a user-given name into tags.
//!
//! Nothing here touches the disk; callers fetch and verify the blobs.

use std::collections::HashMap;

use oci_spec::image::{
    Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType, Platform,
};
use serde::de::DeserializeOwned;

use crate::digest::{parse_sha256, sha256_hex, Digest};
use crate::metadata::{ImageConfig, ImageRecord, LayerRef, StoredImage};
use crate::reference::{is_valid_tag, Reference};
use crate::ImageError;

/// Largest index, manifest or config the store reads into memory.
pub(crate) const MAX_JSON: u64 = 8 << 20;
/// Deepest chain of nested image indexes followed.
pub(crate) const MAX_INDEX_DEPTH: usize = 4;
/// containerd's annotation with the full image name.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// OCI's annotation with a tag or a full reference.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// The operating system images must be for.
pub const HOST_OS: &str = "linux";

/// This machine's architecture in OCI (Go) terms: `amd64` on x86_64, `arm64` on aarch64.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "loongarch64" => "loong64",
        other => other,
    }
}

fn host_platform() -> String {
    format!("{HOST_OS}/{}", host_arch())
}

/// What a descriptor points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DocKind {
    Index,
    Manifest,
}

/// Classify a descriptor by media type; `None` for types the store does not follow.
pub(crate) fn doc_kind(mt: &MediaType) -> Option<DocKind> {
    match mt {
        MediaType::ImageIndex => Some(DocKind::Index),
        MediaType::ImageManifest => Some(DocKind::Manifest),
        MediaType::Other(s) if s == DOCKER_MANIFEST_LIST => Some(DocKind::Index),
        MediaType::Other(s) if s == DOCKER_MANIFEST => Some(DocKind::Manifest),
        _ => None,
    }
}

/// Classify a document without a (usable) media type by its shape.
pub(crate) fn sniff_kind(bytes: &[u8]) -> Option<DocKind> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    if v.get("manifests").is_some_and(|m| m.is_array()) {
        Some(DocKind::Index)
    } else if v.get("config").is_some() && v.get("layers").is_some() {
        Some(DocKind::Manifest)
    } else {
        None
    }
}

/// Parse a JSON document, naming it and where it came from on error.
pub(crate) fn parse_json<T: DeserializeOwned>(
    bytes: &[u8],
    what: &'static str,
    location: &str,
) -> Result<T, ImageError> {
    serde_json::from_slice(bytes).map_err(|source| ImageError::MalformedJson {
        what,
        location: location.to_owned(),
        source,
    })
}

fn platform_string(p: &Platform) -> String {
    match p.variant() {
        Some(v) => format!("{}/{}/{v}", p.os(), p.architecture()),
        None => format!("{}/{}", p.os(), p.architecture()),
    }
}

/// Whether a descriptor's platform (if it names one) is this host's.
pub(crate) fn platform_ok(d: &Descriptor) -> Result<(), String> {
    match d.platform() {
        None => Ok(()),
        Some(p) if p.os().to_string() == HOST_OS && p.architecture().to_string() == host_arch() => {
            Ok(())
        }
        Some(p) => Err(platform_string(p)),
    }
}

/// Pick the manifest for this host from an index: the first entry whose platform is this
/// host's, else the only entry without a platform.
pub(crate) fn select_manifest<'a>(
    index: &'a ImageIndex,
    location: &str,
) -> Result<&'a Descriptor, ImageError> {
    let usable = |d: &&Descriptor| doc_kind(d.media_type()).is_some();
    let candidates: Vec<&Descriptor> = index.manifests().iter().filter(usable).collect();
    if let Some(d) = candidates
        .iter()
        .find(|d| d.platform().is_some() && platform_ok(d).is_ok())
    {
        return Ok(d);
    }
    let unplatformed: Vec<&&Descriptor> = candidates
        .iter()
        .filter(|d| d.platform().is_none())
        .collect();
    if unplatformed.len() == 1 {
        return Ok(unplatformed[0]);
    }
    let found: Vec<String> = index
        .manifests()
        .iter()
        .map(|d| {
            d.platform()
                .as_ref()
                .map_or_else(|| "unspecified".to_owned(), platform_string)
        })
        .collect();
    Err(ImageError::NoMatchingPlatform {
        wanted: host_platform(),
        found: if found.is_empty() {
            "no manifests".to_owned()
        } else {
            found.join(", ")
        },
        location: location.to_owned(),
    })
}

/// What a registry document is, by its media type (or shape, when it has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentKind {
    /// An OCI image index or a Docker manifest list.
    Index,
    /// An OCI image manifest or a Docker v2 schema-2 manifest.
    Manifest,
}

/// Classify a JSON document fetched from a registry: by its `mediaType` field, else by the
/// `Content-Type` the registry gave (`content_type`), else by its shape. `None` for documents
/// the store cannot use (e.g. Docker schema 1).
pub fn classify_document(bytes: &[u8], content_type: Option<&str>) -> Option<DocumentKind> {
    let field = serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| {
            v.get("mediaType")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
        });
    let from_type = |t: &str| doc_kind(&MediaType::from(t));
    let kind = field
        .as_deref()
        .and_then(from_type)
        .or_else(|| content_type.and_then(from_type))
        .or_else(|| sniff_kind(bytes));
    kind.map(|k| match k {
        DocKind::Index => DocumentKind::Index,
        DocKind::Manifest => DocumentKind::Manifest,
    })
}

/// Pick this host's manifest (linux and this machine's architecture) from an image index or
/// manifest list fetched from `location`. Returns the manifest's digest.
pub fn select_platform_manifest(index_json: &[u8], location: &str) -> Result<Digest, ImageError> {
    let index: ImageIndex = parse_json(index_json, "image index", location)?;
    let d = select_manifest(&index, location)?;
    Ok(d.digest().clone())
}

/// Check that the image config `config_json` (fetched from `location`) is for this host's
/// platform, before its layers are fetched.
pub fn check_config_json_platform(config_json: &[u8], location: &str) -> Result<(), ImageError> {
    let config: ImageConfiguration = parse_json(config_json, "image config", location)?;
    check_config_platform(&config, location)
}

/// Check that a manifest's config descriptor points at an image config.
pub(crate) fn check_config_descriptor(
    manifest: &ImageManifest,
    manifest_digest: &str,
) -> Result<(), ImageError> {
    let cfg = manifest.config();
    match cfg.media_type() {
        MediaType::ImageConfig => Ok(()),
        MediaType::Other(s) if s == DOCKER_CONFIG => Ok(()),
        other => Err(ImageError::UnsupportedMediaType {
            digest: cfg.digest().to_string(),
            media_type: other.to_string(),
            location: format!("config of manifest {manifest_digest} (not a container image)"),
        }),
    }
}

/// Check that an image config is for this host's platform.
pub(crate) fn check_config_platform(
    config: &ImageConfiguration,
    config_digest: &str,
) -> Result<(), ImageError> {
    let (os, arch) = (config.os().to_string(), config.architecture().to_string());
    if os == HOST_OS && arch == host_arch() {
        Ok(())
    } else {
        Err(ImageError::NoMatchingPlatform {
            wanted: host_platform(),
            found: format!("{os}/{arch}"),
            location: format!("image config {config_digest}"),
        })
    }
}

/// Build the record (without names) for a verified manifest and its config.
pub(crate) fn build_record(
    manifest_digest: &str,
    manifest: &ImageManifest,
    config: &ImageConfiguration,
) -> Result<ImageRecord, ImageError> {
    let config_desc = manifest.config();
    let config_digest = config_desc.digest().to_string();
    sha256_hex(config_desc.digest(), &format!("manifest {manifest_digest}"))?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        return Err(ImageError::InvalidImage {
            what: "manifest",
            digest: manifest_digest.to_owned(),
            reason: format!(
                "{} layers, but its config {config_digest} lists {} diff_ids",
                manifest.layers().len(),
                diff_ids.len()
            ),
        });
    }
    let mut layers = Vec::with_capacity(diff_ids.len());
    let mut size = config_desc.size();
    for (desc, diff_id) in manifest.layers().iter().zip(diff_ids) {
        sha256_hex(desc.digest(), &format!("manifest {manifest_digest}"))?;
        let diff = parse_sha256(
            diff_id,
            &format!("rootfs.diff_ids of config {config_digest}"),
        )?;
        size += desc.size();
        layers.push(LayerRef {
            digest: desc.digest().to_string(),
            media_type: desc.media_type().to_string(),
            diff_id: diff.to_string(),
            size: desc.size(),
        });
    }
    Ok(ImageRecord {
        id: config_digest,
        repo_tags: Vec::new(),
        repo_digests: Vec::new(),
        size,
        manifest_digest: manifest_digest.to_owned(),
        config: ImageConfig::from_oci(config),
        layers,
        created_at: 0,
    })
}

/// Names for an image listed in an index.json entry with `annotations`:
/// - `io.containerd.image.name`, else `org.opencontainers.image.ref.name`, when it is a full
///   reference (contains `/` or `:`), normalized;
/// - when that annotation is a bare tag `T`: `name` (normalized, with tag `T` if `name` has
///   none), or without `name` `localhost/<stem>:T`;
/// - without a ref annotation: `name` (tag `latest` if none), or no name at all.
pub(crate) fn names_for(
    annotations: Option<&HashMap<String, String>>,
    name: Option<&str>,
    stem: &str,
    manifest_digest: &str,
) -> Result<Vec<Reference>, ImageError> {
    let ann = annotations.and_then(|a| {
        a.get(ANNOTATION_IMAGE_NAME)
            .map(|v| (v, ANNOTATION_IMAGE_NAME))
            .or_else(|| a.get(ANNOTATION_REF_NAME).map(|v| (v, ANNOTATION_REF_NAME)))
    });
    let named = |n: &str, tag: Option<&str>| -> Result<Reference, ImageError> {
        let mut r = Reference::parse_raw(n)?;
        if r.digest.is_some() {
            return Err(ImageError::InvalidReference {
                reference: n.to_owned(),
                reason: "an import name cannot pin a digest",
            });
        }
        if r.tag.is_none() {
            r.tag = Some(tag.unwrap_or(crate::reference::DEFAULT_TAG).to_owned());
        }
        Ok(r)
    };
    match ann {
        Some((full, _)) if full.contains(['/', ':', '@']) => {
            Ok(vec![Reference::parse_normalized(full)?])
        }
        Some((tag, origin)) => {
            if !is_valid_tag(tag) {
                return Err(ImageError::InvalidTag {
                    digest: manifest_digest.to_owned(),
                    tag: tag.clone(),
                    origin,
                });
            }
            match name {
                Some(n) => Ok(vec![named(n, Some(tag))?]),
                None => Ok(vec![Reference::parse_normalized(&format!(
                    "localhost/{}:{tag}",
                    sanitize_stem(stem)
                ))?]),
            }
        }
        None => match name {
            Some(n) => Ok(vec![named(n, None)?]),
            None => Ok(Vec::new()),
        },
    }
}

/// Turn a file or directory stem into a valid repository path component.
pub(crate) fn sanitize_stem(stem: &str) -> String {
    let mapped: String = stem
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    // Collapse separator runs and trim them from the ends.
    let parts: Vec<&str> = mapped.split('-').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        "image".to_owned()
    } else {
        parts.join("-")
    }
}

/// Add names to an image: tags become `repo_tags`, and every named repository gets a
/// `repo@<manifest digest>` entry in `repo_digests`. A name that pins a digest must pin the
/// image's manifest or one of the indexes that led to it (which is then remembered).
pub(crate) fn apply_names(image: &mut StoredImage, refs: &[Reference]) -> Result<(), ImageError> {
    for r in refs {
        if let Some(d) = &r.digest {
            if *d != image.record.manifest_digest {
                if !d.starts_with("sha256:") {
                    return Err(ImageError::UnsupportedDigest {
                        digest: d.clone(),
                        location: r.to_string(),
                    });
                }
                push_unique(&mut image.index_digests, d.clone());
            }
        }
        if let Some(t) = &r.tag {
            push_unique(
                &mut image.record.repo_tags,
                format!("{}:{t}", r.repository()),
            );
        }
        let rd = format!("{}@{}", r.repository(), image.record.manifest_digest);
        push_unique(&mut image.record.repo_digests, rd);
    }
    Ok(())
}

pub(crate) fn push_unique(v: &mut Vec<String>, s: String) {
    if !v.contains(&s) {
        v.push(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    fn ann(k: &str, v: &str) -> HashMap<String, String> {
        HashMap::from([(k.to_owned(), v.to_owned())])
    }

    fn names(a: Option<HashMap<String, String>>, name: Option<&str>, stem: &str) -> Vec<String> {
        names_for(a.as_ref(), name, stem, M)
            .unwrap()
            .iter()
            .map(|r| r.to_string())
            .collect()
    }

    #[test]
    fn containerd_name_wins_over_ref_name() {
        let mut a = ann(ANNOTATION_REF_NAME, "v1");
        a.insert(ANNOTATION_IMAGE_NAME.into(), "quay.io/x/y:2".into());
        assert_eq!(names(Some(a), None, "s"), ["quay.io/x/y:2"]);
    }

    #[test]
    fn full_reference_annotation_is_normalized() {
        assert_eq!(
            names(Some(ann(ANNOTATION_REF_NAME, "busybox:1.36")), None, "s"),
            ["docker.io/library/busybox:1.36"]
        );
        assert_eq!(
            names(
                Some(ann(ANNOTATION_REF_NAME, "kinglet.test/busybox:latest")),
                Some("other"),
                "s"
            ),
            ["kinglet.test/busybox:latest"]
        );
        assert_eq!(
            names(Some(ann(ANNOTATION_REF_NAME, "team/app")), None, "s"),
            ["docker.io/team/app:latest"]
        );
    }

    #[test]
    fn bare_tag_uses_name_or_stem() {
        let a = || Some(ann(ANNOTATION_REF_NAME, "v2"));
        assert_eq!(
            names(a(), Some("myapp"), "s"),
            ["docker.io/library/myapp:v2"]
        );
        assert_eq!(
            names(a(), Some("myapp:v9"), "s"),
            ["docker.io/library/myapp:v9"]
        );
        assert_eq!(
            names(a(), None, "My_Image.v1"),
            ["localhost/my-image-v1:v2"]
        );
    }

    #[test]
    fn no_annotation_uses_name_with_latest() {
        assert_eq!(
            names(None, Some("myapp"), "s"),
            ["docker.io/library/myapp:latest"]
        );
        assert_eq!(names(None, Some("r.io/a:1"), "s"), ["r.io/a:1"]);
        assert!(names(None, None, "s").is_empty());
    }

    #[test]
    fn bad_names_are_errors() {
        let bad_tag = names_for(Some(&ann(ANNOTATION_REF_NAME, "-bad")), None, "s", M);
        assert!(
            matches!(bad_tag, Err(ImageError::InvalidTag { .. })),
            "{bad_tag:?}"
        );
        let bad_name = names_for(None, Some("Bad"), "s", M);
        assert!(matches!(bad_name, Err(ImageError::InvalidReference { .. })));
        let pinned = names_for(None, Some(&format!("a@{M}")), "s", M);
        assert!(matches!(pinned, Err(ImageError::InvalidReference { .. })));
    }

    #[test]
    fn stems_are_sanitized() {
        assert_eq!(sanitize_stem("busybox"), "busybox");
        assert_eq!(sanitize_stem("--A b__c--"), "a-b-c");
        assert_eq!(sanitize_stem("..."), "image");
    }
}
