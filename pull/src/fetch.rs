//! One pull attempt (one endpoint, one scheme, one credential): the manifest through any
//! index, the config, the layers, then the image record. Every document is bounded by
//! [`MAX_DOCUMENT`] while it arrives and every blob by its descriptor's size, so a registry
//! that sends too much fails the pull with an error saying so, leaving no partial blob.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures_util::future::{BoxFuture, FutureExt};
use futures_util::{StreamExt, TryStreamExt};
use kinglet_image::{DocumentKind, ImageRecord, Reference};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_spec::image::{Descriptor, ImageManifest};
use sha2::{Digest as _, Sha256};

use crate::error::classify;
use crate::hosts::Endpoint;
use crate::manifest::{self, Authorization, ManifestError};
use crate::registry::Registry;
use crate::{Progress, PullError, Puller, ACCEPT, MAX_DOCUMENT, MAX_INDEX_DEPTH, PARALLEL_LAYERS};

/// What one attempt works on, and how its errors name the image and the registry.
struct Attempt<'a> {
    client: &'a Registry,
    ep: &'a Endpoint,
    r: &'a Reference,
    oref: oci_client::Reference,
    image: String,
    progress: &'a Arc<Progress>,
}

impl Attempt<'_> {
    fn err(&self, e: OciDistributionError) -> PullError {
        classify(e, &self.ep.host, &self.image)
    }

    fn bad(&self, what: &'static str, reason: String) -> PullError {
        PullError::BadContent {
            what,
            image: self.image.clone(),
            registry: self.ep.host.clone(),
            reason,
        }
    }

    fn manifest_err(&self, what: &'static str, e: ManifestError) -> PullError {
        match e {
            ManifestError::Client(e) => self.err(e),
            ManifestError::TooLarge { limit } => self.bad(
                what,
                format!("is larger than {limit} bytes, the most accepted"),
            ),
            ManifestError::DigestHeader { header, body } => self.bad(
                what,
                format!("has digest {body}, the registry's Docker-Content-Digest says {header}"),
            ),
        }
    }

    fn step(&self) {
        self.progress.steps.fetch_add(1, Ordering::Relaxed);
    }
}

/// The manifest an attempt resolved to: its bytes, digest, and the names of the image.
struct Resolved {
    bytes: Vec<u8>,
    digest: String,
    names: Vec<String>,
}

impl Puller {
    /// One attempt: one endpoint, one scheme, one credential.
    pub(crate) async fn fetch(
        &self,
        client: &Registry,
        ep: &Endpoint,
        r: &Reference,
        auth: &RegistryAuth,
        progress: &Arc<Progress>,
    ) -> Result<ImageRecord, PullError> {
        let oref = match (&r.tag, &r.digest) {
            (_, Some(d)) => {
                oci_client::Reference::with_digest(ep.host.clone(), r.path.clone(), d.clone())
            }
            (Some(t), None) => {
                oci_client::Reference::with_tag(ep.host.clone(), r.path.clone(), t.clone())
            }
            (None, None) => unreachable!("normalized references have a tag or a digest"),
        };
        let a = Attempt {
            client,
            ep,
            r,
            oref,
            image: r.to_string(),
            progress,
        };
        let authz = manifest::authenticate(client, &a.oref, auth).await;
        let resolved = self.resolve_manifest(&a, &authz).await?;
        let manifest: ImageManifest = serde_json::from_slice(&resolved.bytes)
            .map_err(|e| a.bad("manifest", format!("cannot be parsed: {e}")))?;
        // The config first: its platform is checked before any layer is fetched.
        self.fetch_config(&a, &manifest).await?;
        self.fetch_layers(&a, &manifest).await?;
        let md: kinglet_image::Digest = resolved
            .digest
            .parse()
            .map_err(|e: oci_spec::OciSpecError| a.bad("manifest", e.to_string()))?;
        kinglet_fault::crash_point!("pull.after-blobs");
        self.ingest(&md, resolved.bytes).await?;
        self.commit(md, resolved.names, &a.image).await
    }

    /// Fetch the manifest the reference names, following indexes (each stored, its digest a
    /// name of the image) down to this platform's manifest.
    async fn resolve_manifest(
        &self,
        a: &Attempt<'_>,
        authz: &Authorization,
    ) -> Result<Resolved, PullError> {
        let mut bytes = manifest::get(a.client, &a.oref, authz, ACCEPT, MAX_DOCUMENT)
            .await
            .map_err(|e| a.manifest_err("manifest", e))?;
        a.step();
        let mut digest = sha256_digest(&bytes);
        if let Some(want) = &a.r.digest {
            if *want != digest {
                return Err(a.bad(
                    "manifest",
                    format!("has digest {digest}, the reference pins {want}"),
                ));
            }
        }
        let mut names = vec![a.image.clone()];
        let mut depth = 0;
        loop {
            match kinglet_image::classify_document(&bytes, None) {
                Some(DocumentKind::Manifest) => break,
                Some(DocumentKind::Index) => {
                    depth += 1;
                    if depth > MAX_INDEX_DEPTH {
                        return Err(a.bad("image index", "indexes nest too deep".into()));
                    }
                    let idx: kinglet_image::Digest = digest
                        .parse()
                        .map_err(|e: oci_spec::OciSpecError| a.bad("image index", e.to_string()))?;
                    self.ingest(&idx, bytes.clone()).await?;
                    // The index digest names the image too (repo@index resolves to it).
                    names.push(format!("{}@{digest}", a.r.repository()));
                    let chosen = kinglet_image::select_platform_manifest(
                        &bytes,
                        &format!("{} on {}", a.image, a.ep.host),
                    )
                    .map_err(PullError::store)?;
                    let mref = oci_client::Reference::with_digest(
                        a.ep.host.clone(),
                        a.r.path.clone(),
                        chosen.to_string(),
                    );
                    let b = manifest::get(a.client, &mref, authz, ACCEPT, MAX_DOCUMENT)
                        .await
                        .map_err(|e| a.manifest_err("manifest", e))?;
                    a.step();
                    let got = sha256_digest(&b);
                    if got != chosen.to_string() {
                        return Err(
                            a.bad("manifest", format!("{chosen} arrived with digest {got}"))
                        );
                    }
                    bytes = b;
                    digest = got;
                }
                None => {
                    return Err(a.bad(
                        "manifest",
                        "is not an OCI or Docker v2 schema-2 manifest or index".into(),
                    ))
                }
            }
        }
        Ok(Resolved {
            bytes,
            digest,
            names,
        })
    }

    /// Fetch the image config unless stored, at most its descriptor's size (itself at most
    /// [`MAX_DOCUMENT`]), and check its platform.
    async fn fetch_config(&self, a: &Attempt<'_>, m: &ImageManifest) -> Result<(), PullError> {
        let cfg = m.config();
        if self.images.has_blob(cfg.digest()) {
            return Ok(());
        }
        if cfg.size() > MAX_DOCUMENT as u64 {
            return Err(a.bad(
                "image config",
                format!(
                    "is {} bytes, more than the {MAX_DOCUMENT} accepted",
                    cfg.size()
                ),
            ));
        }
        self.blob_downloads.fetch_add(1, Ordering::Relaxed);
        let stream = a
            .client
            .oci
            .pull_blob_stream(&a.oref, &descriptor(cfg.digest().as_ref(), cfg.size()))
            .await
            .map_err(|e| a.err(e))?;
        let mut buf = Vec::new();
        let mut stream = stream.stream;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| a.err(OciDistributionError::IoError(e)))?;
            if (buf.len() + chunk.len()) as u64 > cfg.size() {
                return Err(a.bad("image config", oversize(cfg)));
            }
            buf.extend_from_slice(&chunk);
        }
        kinglet_image::check_config_json_platform(&buf, &format!("{} on {}", a.image, a.ep.host))
            .map_err(PullError::store)?;
        self.ingest(cfg.digest(), buf).await?;
        a.step();
        Ok(())
    }

    /// Stream the missing layers to disk, [`PARALLEL_LAYERS`] at once.
    async fn fetch_layers(&self, a: &Attempt<'_>, m: &ImageManifest) -> Result<(), PullError> {
        let missing: Vec<_> = m
            .layers()
            .iter()
            .filter(|l| !self.images.has_blob(l.digest()))
            .cloned()
            .collect();
        let p = a.progress;
        p.layers_total
            .store(m.layers().len() as u64, Ordering::Relaxed);
        p.layers_done
            .store((m.layers().len() - missing.len()) as u64, Ordering::Relaxed);
        p.bytes_total.store(
            missing.iter().map(|l| l.size()).sum::<u64>(),
            Ordering::Relaxed,
        );
        let downloads: Vec<BoxFuture<'_, Result<(), PullError>>> = missing
            .into_iter()
            .map(|l| self.fetch_layer(a, l).boxed())
            .collect();
        futures_util::stream::iter(downloads)
            .buffer_unordered(PARALLEL_LAYERS)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// Stream one layer into the store (verified there against its digest); a registry that
    /// sends more than the descriptor's size is cut off at that size.
    async fn fetch_layer(&self, a: &Attempt<'_>, l: Descriptor) -> Result<(), PullError> {
        self.blob_downloads.fetch_add(1, Ordering::Relaxed);
        let desc = descriptor(l.digest().as_ref(), l.size());
        let stream = a
            .client
            .oci
            .pull_blob_stream(&a.oref, &desc)
            .await
            .map_err(|e| a.err(e))?;
        let p = a.progress.clone();
        let total = self.layer_bytes.clone();
        let stream = stream.inspect_ok(move |b| {
            p.bytes_done.fetch_add(b.len() as u64, Ordering::Relaxed);
            total.fetch_add(b.len() as u64, Ordering::Relaxed);
        });
        let reader = tokio_util::io::StreamReader::new(stream);
        let images = self.images.clone();
        let (d, size) = (l.digest().clone(), l.size());
        let over = Arc::new(AtomicBool::new(false));
        let capped = SizeCapped {
            over: over.clone(),
            left: size,
            inner: tokio_util::io::SyncIoBridge::new(reader),
        };
        let got = tokio::task::spawn_blocking(move || images.ingest_blob(&d, capped))
            .await
            .map_err(|e| PullError::Task {
                image: a.image.clone(),
                reason: e.to_string(),
            })?;
        if over.load(Ordering::Relaxed) {
            return Err(a.bad("layer", oversize(&l)));
        }
        let got = got.map_err(PullError::store)?;
        if got != size {
            return Err(a.bad(
                "layer",
                format!("{} is {got} bytes, its descriptor says {size}", l.digest()),
            ));
        }
        a.progress.layers_done.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Record the image (and unpack it when so configured).
    async fn commit(
        &self,
        md: kinglet_image::Digest,
        names: Vec<String>,
        image: &str,
    ) -> Result<ImageRecord, PullError> {
        let images = self.images.clone();
        let unpack = self.config.unpack_on_pull;
        tokio::task::spawn_blocking(move || {
            let record = images.commit_image(&md, &names)?;
            kinglet_fault::crash_point!("pull.after-commit");
            if unpack {
                // As containerd does: the first container starts without unpacking.
                images.layer_dirs(&record)?;
            }
            Ok(record)
        })
        .await
        .map_err(|e| PullError::Task {
            image: image.to_owned(),
            reason: e.to_string(),
        })?
        .map_err(PullError::store)
    }

    pub(crate) async fn ingest(
        &self,
        d: &kinglet_image::Digest,
        bytes: Vec<u8>,
    ) -> Result<u64, PullError> {
        let images = self.images.clone();
        let d = d.clone();
        tokio::task::spawn_blocking(move || images.ingest_blob(&d, bytes.as_slice()))
            .await
            .map_err(|e| PullError::Task {
                image: String::new(),
                reason: e.to_string(),
            })?
            .map_err(PullError::store)
    }
}

fn oversize(d: &Descriptor) -> String {
    format!(
        "{}: the registry sent more than its descriptor's {} bytes",
        d.digest(),
        d.size()
    )
}

/// A reader that fails (and says so in `over`) once more than `left` bytes come.
struct SizeCapped<R> {
    over: Arc<AtomicBool>,
    left: u64,
    inner: R,
}

impl<R: Read> Read for SizeCapped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // One byte more than allowed is asked for, to notice an overlong blob.
        let want = buf
            .len()
            .min(usize::try_from(self.left + 1).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.left {
            self.over.store(true, Ordering::Relaxed);
            return Err(std::io::Error::other("blob longer than its descriptor"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn descriptor(digest: &str, size: u64) -> OciDescriptor {
    OciDescriptor {
        digest: digest.to_owned(),
        size: i64::try_from(size).unwrap_or(i64::MAX),
        ..Default::default()
    }
}

pub(crate) fn sha256_digest(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}
