//! Helpers shared by the image store's integration tests: layer tars written entry by entry
//! (including hostile entries no well-behaved tool would write), and OCI image layouts and
//! oci-archives assembled by hand with correct digests.
//!
//! The tests run as root (here and in CI): unpacking sets owners, creates whiteout devices and
//! sets `trusted.*` xattrs. Without root they fail (see [`require_root`]), never skip.

#![allow(dead_code)] // each test target uses a different subset

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use tar::{EntryType, Header};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const MTIME: u64 = 1_700_000_000;

/// Fail (never skip) when not running as root.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (chown, whiteout devices, trusted.* xattrs); it fails rather than skips"
    );
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The architecture images for this host must have, and one that is surely not it.
pub fn host_arch() -> &'static str {
    kinglet_image::host_arch()
}

pub fn other_arch() -> &'static str {
    if host_arch() == "s390x" {
        "amd64"
    } else {
        "s390x"
    }
}

/// A tar written header by header. Paths and link names are copied raw into the header, so
/// tests can write `..`, absolute paths and anything else a hostile layer might hold.
pub struct TarBuilder {
    b: tar::Builder<Vec<u8>>,
}

impl Default for TarBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl TarBuilder {
    pub fn new() -> Self {
        TarBuilder {
            b: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: EntryType, path: &str, size: u64, mode: u32) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(MTIME);
        let name = &mut h.as_old_mut().name;
        assert!(path.len() < name.len(), "test path too long: {path}");
        name[..path.len()].copy_from_slice(path.as_bytes());
        h
    }

    fn link_name(h: &mut Header, target: &str) {
        let slot = &mut h.as_old_mut().linkname;
        assert!(
            target.len() < slot.len(),
            "test link name too long: {target}"
        );
        slot[..target.len()].copy_from_slice(target.as_bytes());
    }

    fn push(&mut self, mut h: Header, data: &[u8]) -> &mut Self {
        h.set_cksum();
        self.b.append(&h, data).expect("append tar entry");
        self
    }

    pub fn file(&mut self, path: &str, content: &[u8], mode: u32) -> &mut Self {
        let h = Self::header(EntryType::Regular, path, content.len() as u64, mode);
        self.push(h, content)
    }

    /// A regular file with owner and mtime.
    pub fn file_owned(
        &mut self,
        path: &str,
        content: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: u64,
    ) -> &mut Self {
        let mut h = Self::header(EntryType::Regular, path, content.len() as u64, mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(mtime);
        self.push(h, content)
    }

    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        let h = Self::header(EntryType::Directory, path, 0, mode);
        self.push(h, &[])
    }

    pub fn dir_owned(
        &mut self,
        path: &str,
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: u64,
    ) -> &mut Self {
        let mut h = Self::header(EntryType::Directory, path, 0, mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(mtime);
        self.push(h, &[])
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = Self::header(EntryType::Symlink, path, 0, 0o777);
        Self::link_name(&mut h, target);
        self.push(h, &[])
    }

    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = Self::header(EntryType::Link, path, 0, 0o644);
        Self::link_name(&mut h, target);
        self.push(h, &[])
    }

    pub fn device(&mut self, kind: EntryType, path: &str, major: u32, minor: u32) -> &mut Self {
        let mut h = Self::header(kind, path, 0, 0o666);
        h.set_device_major(major).expect("major");
        h.set_device_minor(minor).expect("minor");
        self.push(h, &[])
    }

    /// PAX extended attributes (`SCHILY.xattr.<name>`) for the next entry.
    pub fn xattr(&mut self, name: &str, value: &[u8]) -> &mut Self {
        let key = format!("SCHILY.xattr.{name}");
        self.b
            .append_pax_extensions([(key.as_str(), value)])
            .expect("append pax");
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.b.into_inner().expect("finish tar")
    }
}

/// A layer blob with its media type and diff_id.
#[derive(Clone)]
pub struct Layer {
    pub blob: Vec<u8>,
    pub media_type: String,
    pub diff_id: String,
}

impl Layer {
    pub fn plain(tar: Vec<u8>) -> Layer {
        Layer {
            diff_id: sha256(&tar),
            blob: tar,
            media_type: LAYER_TAR.into(),
        }
    }

    pub fn gzip(tar: Vec<u8>) -> Layer {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&tar).unwrap();
        Layer {
            diff_id: sha256(&tar),
            blob: enc.finish().unwrap(),
            media_type: LAYER_GZIP.into(),
        }
    }

    pub fn zstd(tar: Vec<u8>) -> Layer {
        Layer {
            diff_id: sha256(&tar),
            blob: zstd::encode_all(&tar[..], 1).unwrap(),
            media_type: LAYER_ZSTD.into(),
        }
    }

    /// Same blob, but announced with a media type that does not say how it is compressed.
    pub fn with_media_type(mut self, mt: &str) -> Layer {
        self.media_type = mt.into();
        self
    }
}

/// One image to write into a layout.
#[derive(Clone)]
pub struct ImageSpec {
    pub layers: Vec<Layer>,
    pub os: String,
    pub arch: String,
    /// Merged into the config's `config` object.
    pub config: Value,
    /// A label that makes the config (and so the image id) unique.
    pub label: String,
}

impl ImageSpec {
    pub fn new(label: &str, layers: Vec<Layer>) -> ImageSpec {
        ImageSpec {
            layers,
            os: "linux".into(),
            arch: host_arch().into(),
            config: json!({}),
            label: label.into(),
        }
    }
}

/// What was written for one image.
#[derive(Clone, Debug)]
pub struct Written {
    pub manifest_digest: String,
    pub manifest_size: u64,
    pub config_digest: String,
    pub config_size: u64,
    pub layer_digests: Vec<String>,
    pub layer_sizes: Vec<u64>,
    pub diff_ids: Vec<String>,
}

impl Written {
    /// A descriptor for index.json (or an index blob) with annotations.
    pub fn descriptor(&self, annotations: &[(&str, &str)]) -> Value {
        let mut d = json!({
            "mediaType": OCI_MANIFEST,
            "digest": self.manifest_digest,
            "size": self.manifest_size,
        });
        if !annotations.is_empty() {
            let a: serde_json::Map<String, Value> = annotations
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
                .collect();
            d["annotations"] = Value::Object(a);
        }
        d
    }

    pub fn hex(&self) -> &str {
        &self.config_digest["sha256:".len()..]
    }
}

/// An OCI image layout directory being written.
pub struct Layout {
    pub dir: PathBuf,
    entries: Vec<Value>,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout {
            dir: dir.to_owned(),
            entries: Vec::new(),
        }
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.dir
            .join("blobs/sha256")
            .join(&digest["sha256:".len()..])
    }

    /// Write a blob; returns (digest, size).
    pub fn blob(&self, bytes: &[u8]) -> (String, u64) {
        let d = sha256(bytes);
        fs::write(self.blob_path(&d), bytes).unwrap();
        (d, bytes.len() as u64)
    }

    /// Write an image's config, layers and manifest blobs.
    pub fn image(&self, spec: &ImageSpec) -> Written {
        let mut cfg_obj = json!({
            "Cmd": ["sh"],
            "Env": ["PATH=/usr/bin:/bin"],
            "Labels": {"test.label": spec.label},
        });
        if let Value::Object(extra) = &spec.config {
            for (k, v) in extra {
                cfg_obj[k] = v.clone();
            }
        }
        let config = json!({
            "created": "2024-01-01T00:00:00Z",
            "architecture": spec.arch,
            "os": spec.os,
            "config": cfg_obj,
            "rootfs": {"type": "layers", "diff_ids": spec.layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
        });
        let (config_digest, config_size) = self.blob(&serde_json::to_vec(&config).unwrap());
        let mut layer_descs = Vec::new();
        let mut layer_digests = Vec::new();
        let mut layer_sizes = Vec::new();
        for l in &spec.layers {
            let (d, s) = self.blob(&l.blob);
            layer_descs.push(json!({"mediaType": l.media_type, "digest": d, "size": s}));
            layer_digests.push(d);
            layer_sizes.push(s);
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
            "layers": layer_descs,
        });
        let (manifest_digest, manifest_size) = self.blob(&serde_json::to_vec(&manifest).unwrap());
        Written {
            manifest_digest,
            manifest_size,
            config_digest,
            config_size,
            layer_digests,
            layer_sizes,
            diff_ids: spec.layers.iter().map(|l| l.diff_id.clone()).collect(),
        }
    }

    /// Write an image index blob listing `manifests`; returns its descriptor.
    pub fn index_blob(&self, manifests: Vec<Value>) -> Value {
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
        let (d, s) = self.blob(&serde_json::to_vec(&index).unwrap());
        json!({"mediaType": OCI_INDEX, "digest": d, "size": s})
    }

    /// Add a descriptor to index.json.
    pub fn add(&mut self, descriptor: Value) -> &mut Self {
        self.entries.push(descriptor);
        self
    }

    /// Write index.json.
    pub fn finish(&self) {
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.entries});
        fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
    }

    /// Write the layout as an oci-archive tar at `to` (as `skopeo copy oci-archive:` does).
    pub fn archive(&self, to: &Path) {
        let mut b = tar::Builder::new(fs::File::create(to).unwrap());
        b.append_path_with_name(self.dir.join("oci-layout"), "oci-layout")
            .unwrap();
        b.append_path_with_name(self.dir.join("index.json"), "index.json")
            .unwrap();
        let mut blobs: Vec<_> = fs::read_dir(self.dir.join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        blobs.sort();
        for p in blobs {
            let name = format!("blobs/sha256/{}", p.file_name().unwrap().to_str().unwrap());
            b.append_path_with_name(&p, name).unwrap();
        }
        b.into_inner().unwrap().sync_all().unwrap();
    }
}

/// A small ordinary layer: a few directories and files.
pub fn simple_tar(tag: &str) -> Vec<u8> {
    let mut t = TarBuilder::new();
    t.dir("bin/", 0o755)
        .file(
            "bin/tool",
            format!("#!/bin/sh\necho {tag}\n").as_bytes(),
            0o755,
        )
        .dir("etc/", 0o755)
        .file(&format!("etc/{tag}"), tag.as_bytes(), 0o644);
    t.finish()
}

/// Names of the entries of a directory, sorted ([] if it does not exist).
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}
