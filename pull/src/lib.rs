//! Pulling images from OCI-distribution registries into the image store.
//!
//! A pull resolves the reference on each endpoint of its registry in turn ([`hosts`]), with
//! each candidate credential in turn ([`auth`], [`keyring`]): the explicit ones (the request's
//! AuthConfig, or a pod's matching imagePullSecrets from [`auth::from_pull_secrets`]),
//! then the docker config's `auths`, then its credential helper, then anonymous. It fetches the
//! manifest (through an index or manifest list, picking linux and this machine's
//! architecture), checks the config's platform, streams the missing layers to disk in
//! parallel, each verified against its digest by [`ImageStore::ingest_blob`], and only then
//! records the image ([`ImageStore::commit_image`]) and, unless configured otherwise, unpacks
//! its layers. An interrupted pull leaves verified blobs
//! but no image; the next pull reuses the blobs and finishes.
//!
//! Concurrent pulls of one reference with the same credentials share one download: the first
//! starts a task, later callers wait on its result. The task runs to its end even when its
//! callers give up (a client deadline), so a retry finds the work done.
//!
//! Secrets never reach logs or errors: [`Credential`]'s `Debug` redacts them, and errors name
//! the registry and the kind of credential tried, never its value.

pub mod auth;
pub mod hosts;
pub mod keyring;
mod stall;
mod token;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::future::{BoxFuture, FutureExt, Shared};
use futures_util::{StreamExt, TryStreamExt};
use kinglet_image::{DocumentKind, ImageError, ImageRecord, ImageStore, Reference};
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::Client;
use sha2::{Digest as _, Sha256};

pub use auth::Credential;
use hosts::{Endpoint, Registries, Scheme};

/// Media types asked for when fetching a manifest.
const ACCEPT: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];
/// Layers downloaded at once per pull.
const PARALLEL_LAYERS: usize = 4;
/// Largest manifest, index or config accepted.
const MAX_DOCUMENT: usize = 8 << 20;
/// Deepest chain of nested indexes followed.
const MAX_INDEX_DEPTH: usize = 4;

/// Why a pull failed. Messages name the image and the registry, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("invalid image reference")]
    Reference {
        #[source]
        source: ImageError,
    },
    #[error("credentials from {origin}: {reason}")]
    BadCredentials {
        origin: String,
        reason: &'static str,
    },
    #[error("cannot read {path}")]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("credential helper docker-credential-{helper} for {server}: {reason}")]
    CredentialHelper {
        helper: String,
        server: String,
        reason: String,
    },
    #[error("registry {registry} refused access to {image} (unauthorized; tried {tried})")]
    Unauthorized {
        registry: String,
        image: String,
        tried: String,
    },
    #[error("{image} not found on registry {registry}")]
    NotFound { registry: String, image: String },
    #[error("cannot reach registry {registry}")]
    Unreachable {
        registry: String,
        #[source]
        source: OciDistributionError,
    },
    #[error("registry {registry} failed on {image}")]
    Registry {
        registry: String,
        image: String,
        #[source]
        source: OciDistributionError,
    },
    #[error("{what} of {image} from {registry}: {reason}")]
    BadContent {
        what: &'static str,
        image: String,
        registry: String,
        reason: String,
    },
    #[error("identity token for registry {registry}: {reason}")]
    Token { registry: String, reason: String },
    #[error("CA certificates {path} for registry {registry}")]
    Ca {
        registry: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("image store")]
    Store {
        #[source]
        source: ImageError,
    },
    #[error(
        "pull of {image} made no progress for {secs} s (pull-progress-timeout-secs), cancelled"
    )]
    Stalled { image: String, secs: f64 },
    #[error("pull task of {image} ended unexpectedly: {reason}")]
    Task { image: String, reason: String },
}

impl PullError {
    fn store(source: ImageError) -> PullError {
        PullError::Store { source }
    }
}

/// Progress of one pull, for the CLI.
#[derive(Debug, Default)]
pub struct Progress {
    pub layers_total: AtomicU64,
    pub layers_done: AtomicU64,
    pub bytes_total: AtomicU64,
    pub bytes_done: AtomicU64,
    /// Steps done besides bytes (a manifest, a config fetched), for the progress deadline.
    pub steps: AtomicU64,
}

type PullResult = Result<ImageRecord, Arc<PullError>>;
type SharedPull = Shared<BoxFuture<'static, PullResult>>;

/// Settings of the puller, from the daemon config.
#[derive(Debug, Clone, Default)]
pub struct PullConfig {
    pub registries: Registries,
    /// Docker `config.json` read at each pull (missing file: no credentials).
    pub docker_config: Option<PathBuf>,
    /// Directory of `docker-credential-*` helpers (default: found in `PATH`).
    pub credential_helpers_dir: Option<PathBuf>,
    /// Unpack the layers as part of the pull (else at the first container creation).
    pub unpack_on_pull: bool,
    /// Cancel a pull that made no progress for this long (zero: the default, 5 minutes).
    pub progress_timeout: std::time::Duration,
    /// Give up connecting to a registry endpoint after this long (zero: the default, 15 s).
    pub connect_timeout: std::time::Duration,
}

/// containerd's `image_pull_progress_timeout` default.
pub const DEFAULT_PROGRESS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);
/// Connecting to a registry endpoint.
pub const DEFAULT_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

impl PullConfig {
    fn progress_timeout(&self) -> std::time::Duration {
        if self.progress_timeout.is_zero() {
            DEFAULT_PROGRESS_TIMEOUT
        } else {
            self.progress_timeout
        }
    }

    fn connect_timeout(&self) -> std::time::Duration {
        if self.connect_timeout.is_zero() {
            DEFAULT_CONNECT_TIMEOUT
        } else {
            self.connect_timeout
        }
    }
}

/// Pulls images into a store. Share behind an `Arc`.
pub struct Puller {
    images: Arc<ImageStore>,
    config: PullConfig,
    inflight: Mutex<HashMap<String, (SharedPull, Arc<Progress>)>>,
    /// Blob downloads started since the daemon started (layers and configs).
    blob_downloads: AtomicU64,
    /// Layer bytes downloaded since the daemon started (for the metrics).
    layer_bytes: Arc<AtomicU64>,
}

impl Puller {
    pub fn new(images: Arc<ImageStore>, config: PullConfig) -> Arc<Puller> {
        // reqwest is built without a default crypto provider; install ring's once.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Arc::new(Puller {
            images,
            config,
            inflight: Mutex::new(HashMap::new()),
            blob_downloads: AtomicU64::new(0),
            layer_bytes: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Blob downloads started since the daemon started.
    pub fn blob_downloads(&self) -> u64 {
        self.blob_downloads.load(Ordering::Relaxed)
    }

    /// Layer bytes downloaded since the daemon started.
    pub fn layer_bytes(&self) -> u64 {
        self.layer_bytes.load(Ordering::Relaxed)
    }

    /// Progress of the running pulls of `reference` (normalized), if any.
    pub fn progress(&self, reference: &str) -> Option<Arc<Progress>> {
        let want = kinglet_image::normalize_reference(reference).ok()?;
        let map = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .find(|(k, _)| k.split('\0').next() == Some(want.as_str()))
            .map(|(_, (_, p))| p.clone())
    }

    /// Pull `reference` with `explicit` credentials tried first, in order. Joins a
    /// running pull of the same reference with the same credentials.
    pub async fn pull(self: &Arc<Self>, reference: &str, explicit: Vec<Credential>) -> PullResult {
        let r = Reference::parse_normalized(reference)
            .map_err(|source| Arc::new(PullError::Reference { source }))?;
        let mut key = r.to_string();
        if !explicit.is_empty() {
            let mut h = Sha256::new();
            for c in &explicit {
                h.update(c.fingerprint().as_bytes());
                h.update([0xff]);
            }
            key.push('\0');
            key.push_str(&hex::encode(h.finalize()));
        }
        let shared = {
            let mut map = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((s, _)) = map.get(&key) {
                tracing::debug!(image = %r, "joining a running pull");
                s.clone()
            } else {
                let progress = Arc::new(Progress::default());
                let this = self.clone();
                let (k, p) = (key.clone(), progress.clone());
                let task = tokio::spawn(async move {
                    let limit = this.config.progress_timeout();
                    let image = r.to_string();
                    let pull = this.pull_uncached(&r, explicit, &p);
                    let res = stall::within_progress_deadline(pull, &p, limit, &image)
                        .await
                        .map_err(Arc::new);
                    this.inflight
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&k);
                    res
                });
                let image = key.split('\0').next().unwrap_or_default().to_owned();
                let fut: BoxFuture<'static, PullResult> = async move {
                    task.await.unwrap_or_else(|e| {
                        Err(Arc::new(PullError::Task {
                            image,
                            reason: e.to_string(),
                        }))
                    })
                }
                .boxed();
                let s = fut.shared();
                map.insert(key, (s.clone(), progress));
                s
            }
        };
        shared.await
    }

    /// Candidate credentials for `r`, in order; always ends with anonymous access.
    async fn credentials(
        &self,
        r: &Reference,
        explicit: Vec<Credential>,
    ) -> Result<Vec<Option<Credential>>, PullError> {
        let mut out: Vec<Option<Credential>> = explicit.into_iter().map(Some).collect();
        if let Some(path) = &self.config.docker_config {
            let cfg = auth::DockerConfig::load(path).await?;
            let origin = path.display().to_string();
            let image = format!("{}/{}", r.domain, r.path);
            out.extend(cfg.matching_auths(&image, &origin).into_iter().map(Some));
            if let Some(helper) = cfg.helper_for(&r.domain) {
                let found = auth::from_helper(
                    helper,
                    &r.domain,
                    self.config.credential_helpers_dir.as_deref(),
                )
                .await?;
                out.extend(found.map(Some));
            }
        }
        out.push(None);
        out.dedup();
        Ok(out)
    }

    async fn pull_uncached(
        &self,
        r: &Reference,
        explicit: Vec<Credential>,
        progress: &Arc<Progress>,
    ) -> Result<ImageRecord, PullError> {
        let started = Instant::now();
        let creds = self.credentials(r, explicit).await?;
        let endpoints = hosts::endpoints(&r.domain, &self.config.registries);
        let mut last: Option<PullError> = None;
        for ep in &endpoints {
            let schemes: &[Scheme] = match ep.scheme {
                Scheme::HttpsThenHttp => &[Scheme::Https, Scheme::Http],
                Scheme::Https => &[Scheme::Https],
                Scheme::Http => &[Scheme::Http],
            };
            'scheme: for &scheme in schemes {
                let client = client_for(ep, scheme, &self.config)?;
                let mut tried = Vec::new();
                for cred in &creds {
                    tried.push(
                        cred.as_ref()
                            .map_or("anonymous".to_owned(), Credential::describe),
                    );
                    let auth = match cred {
                        Some(Credential::IdentityToken(t)) => {
                            let s = if scheme == Scheme::Http {
                                "http"
                            } else {
                                "https"
                            };
                            match token::exchange(ep, s, &r.path, t).await {
                                Ok(access) => RegistryAuth::Bearer(access),
                                Err(e @ PullError::Unauthorized { .. }) => {
                                    last = Some(e);
                                    continue;
                                }
                                Err(e) => return Err(e),
                            }
                        }
                        other => registry_auth(other.as_ref()),
                    };
                    match self.fetch(&client, ep, r, &auth, progress).await {
                        Ok(rec) => {
                            tracing::info!(
                                image = %r, endpoint = %ep.host, id = %rec.id,
                                elapsed = ?started.elapsed(), "image pulled"
                            );
                            return Ok(rec);
                        }
                        Err(PullError::Unauthorized {
                            registry, image, ..
                        }) => {
                            tracing::debug!(image = %r, endpoint = %ep.host, credential = %tried.last().map(String::as_str).unwrap_or(""), "unauthorized; trying the next credential");
                            last = Some(PullError::Unauthorized {
                                registry,
                                image,
                                tried: tried.join(", "),
                            });
                        }
                        Err(e @ PullError::Unreachable { .. }) => {
                            tracing::debug!(image = %r, endpoint = %ep.host, ?scheme, error = %kinglet_util::chain(&e), "endpoint unreachable");
                            last = Some(e);
                            continue 'scheme;
                        }
                        Err(e @ PullError::NotFound { .. }) if ep.mirror => {
                            last = Some(e);
                            continue 'scheme;
                        }
                        Err(e) => {
                            // A TLS-only registry answers plain HTTP with 400: the HTTPS
                            // failure (an untrusted certificate, say) is the real cause.
                            let https_refused = matches!(
                                (&e, &last),
                                (
                                    PullError::Registry {
                                        source: OciDistributionError::ServerError { code: 400, .. },
                                        ..
                                    },
                                    Some(PullError::Unreachable { .. })
                                )
                            );
                            if scheme == Scheme::Http
                                && ep.scheme == Scheme::HttpsThenHttp
                                && https_refused
                            {
                                return Err(last.take().unwrap_or(e));
                            }
                            return Err(e);
                        }
                    }
                }
                // Every credential was refused here: a mirror may still serve the image, the
                // registry itself is the last word.
                if !ep.mirror {
                    break;
                }
            }
        }
        Err(last.unwrap_or_else(|| PullError::NotFound {
            registry: r.domain.clone(),
            image: r.to_string(),
        }))
    }

    /// One attempt: one endpoint, one scheme, one credential.
    async fn fetch(
        &self,
        client: &Client,
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
        let image = r.to_string();
        let err = |e: OciDistributionError| -> PullError { classify(e, &ep.host, &image) };
        let bad = |what: &'static str, reason: String| -> PullError {
            PullError::BadContent {
                what,
                image: image.clone(),
                registry: ep.host.clone(),
                reason,
            }
        };
        let (mut bytes, _) = client
            .pull_manifest_raw(&oref, auth, ACCEPT)
            .await
            .map_err(err)?;
        progress.steps.fetch_add(1, Ordering::Relaxed);
        let mut digest = sha256_digest(&bytes);
        if let Some(want) = &r.digest {
            if *want != digest {
                return Err(bad(
                    "manifest",
                    format!("has digest {digest}, the reference pins {want}"),
                ));
            }
        }
        let mut names = vec![r.to_string()];
        let mut depth = 0;
        loop {
            if bytes.len() > MAX_DOCUMENT {
                return Err(bad(
                    "manifest",
                    format!("is {} bytes, more than allowed", bytes.len()),
                ));
            }
            match kinglet_image::classify_document(&bytes, None) {
                Some(DocumentKind::Manifest) => break,
                Some(DocumentKind::Index) => {
                    depth += 1;
                    if depth > MAX_INDEX_DEPTH {
                        return Err(bad("image index", "indexes nest too deep".into()));
                    }
                    let idx: kinglet_image::Digest = digest
                        .parse()
                        .map_err(|e: oci_spec::OciSpecError| bad("image index", e.to_string()))?;
                    self.ingest(&idx, bytes.to_vec()).await?;
                    // The index digest names the image too (repo@index resolves to it).
                    names.push(format!("{}@{digest}", r.repository()));
                    let chosen = kinglet_image::select_platform_manifest(
                        &bytes,
                        &format!("{image} on {}", ep.host),
                    )
                    .map_err(PullError::store)?;
                    let mref = oci_client::Reference::with_digest(
                        ep.host.clone(),
                        r.path.clone(),
                        chosen.to_string(),
                    );
                    let (b, _) = client
                        .pull_manifest_raw(&mref, auth, ACCEPT)
                        .await
                        .map_err(err)?;
                    progress.steps.fetch_add(1, Ordering::Relaxed);
                    let got = sha256_digest(&b);
                    if got != chosen.to_string() {
                        return Err(bad(
                            "manifest",
                            format!("{chosen} arrived with digest {got}"),
                        ));
                    }
                    bytes = b;
                    digest = got;
                }
                None => {
                    return Err(bad(
                        "manifest",
                        "is not an OCI or Docker v2 schema-2 manifest or index".into(),
                    ))
                }
            }
        }
        let manifest: oci_spec::image::ImageManifest = serde_json::from_slice(&bytes)
            .map_err(|e| bad("manifest", format!("cannot be parsed: {e}")))?;
        // The config first: its platform is checked before any layer is fetched.
        let cfg = manifest.config();
        let cfg_digest = cfg.digest().clone();
        if !self.images.has_blob(&cfg_digest) {
            if cfg.size() > MAX_DOCUMENT as u64 {
                return Err(bad(
                    "image config",
                    format!("is {} bytes, more than allowed", cfg.size()),
                ));
            }
            let mut buf = Vec::new();
            self.blob_downloads.fetch_add(1, Ordering::Relaxed);
            client
                .pull_blob(
                    &oref,
                    &descriptor(cfg.digest().as_ref(), cfg.size()),
                    &mut buf,
                )
                .await
                .map_err(err)?;
            kinglet_image::check_config_json_platform(&buf, &format!("{image} on {}", ep.host))
                .map_err(PullError::store)?;
            self.ingest(&cfg_digest, buf).await?;
            progress.steps.fetch_add(1, Ordering::Relaxed);
        }
        // Layers, in parallel, streamed to disk.
        let missing: Vec<_> = manifest
            .layers()
            .iter()
            .filter(|l| !self.images.has_blob(l.digest()))
            .cloned()
            .collect();
        progress
            .layers_total
            .store(manifest.layers().len() as u64, Ordering::Relaxed);
        progress.layers_done.store(
            (manifest.layers().len() - missing.len()) as u64,
            Ordering::Relaxed,
        );
        progress.bytes_total.store(
            missing.iter().map(|l| l.size()).sum::<u64>(),
            Ordering::Relaxed,
        );
        let downloads: Vec<BoxFuture<'_, Result<(), PullError>>> = missing
            .into_iter()
            .map(|l| {
                self.fetch_layer(client, &oref, l, progress.clone(), &ep.host, &image)
                    .boxed()
            })
            .collect();
        futures_util::stream::iter(downloads)
            .buffer_unordered(PARALLEL_LAYERS)
            .try_collect::<Vec<()>>()
            .await?;
        let md: kinglet_image::Digest = digest
            .parse()
            .map_err(|e: oci_spec::OciSpecError| bad("manifest", e.to_string()))?;
        self.ingest(&md, bytes.to_vec()).await?;
        let images = self.images.clone();
        let unpack = self.config.unpack_on_pull;
        tokio::task::spawn_blocking(move || {
            let record = images.commit_image(&md, &names)?;
            if unpack {
                // As containerd does: the first container starts without unpacking.
                images.layer_dirs(&record)?;
            }
            Ok(record)
        })
        .await
        .map_err(|e| PullError::Task {
            image: image.clone(),
            reason: e.to_string(),
        })?
        .map_err(PullError::store)
    }

    /// Stream one layer into the store (verified there against its digest and size).
    async fn fetch_layer(
        &self,
        client: &Client,
        oref: &oci_client::Reference,
        l: oci_spec::image::Descriptor,
        progress: Arc<Progress>,
        registry: &str,
        image: &str,
    ) -> Result<(), PullError> {
        self.blob_downloads.fetch_add(1, Ordering::Relaxed);
        let desc = descriptor(l.digest().as_ref(), l.size());
        let stream = client
            .pull_blob_stream(oref, &desc)
            .await
            .map_err(|e| classify(e, registry, image))?;
        let p = progress.clone();
        let total = self.layer_bytes.clone();
        let stream = stream.inspect_ok(move |b| {
            p.bytes_done.fetch_add(b.len() as u64, Ordering::Relaxed);
            total.fetch_add(b.len() as u64, Ordering::Relaxed);
        });
        let reader = tokio_util::io::StreamReader::new(stream);
        let images = self.images.clone();
        let d = l.digest().clone();
        let size = l.size();
        let got = tokio::task::spawn_blocking(move || {
            let sync = tokio_util::io::SyncIoBridge::new(reader);
            // Never more than the descriptor's size (plus one byte, to notice).
            images.ingest_blob(&d, std::io::Read::take(sync, size + 1))
        })
        .await
        .map_err(|e| PullError::Task {
            image: image.to_owned(),
            reason: e.to_string(),
        })?
        .map_err(PullError::store)?;
        if got != size {
            return Err(PullError::BadContent {
                what: "layer",
                image: image.to_owned(),
                registry: registry.to_owned(),
                reason: format!("{} is {got} bytes, its descriptor says {size}", l.digest()),
            });
        }
        progress.layers_done.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn ingest(&self, d: &kinglet_image::Digest, bytes: Vec<u8>) -> Result<u64, PullError> {
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

fn descriptor(digest: &str, size: u64) -> OciDescriptor {
    OciDescriptor {
        digest: digest.to_owned(),
        size: i64::try_from(size).unwrap_or(i64::MAX),
        ..Default::default()
    }
}

fn sha256_digest(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// A registry client for one endpoint and scheme. A fresh client per attempt: the crate keeps
/// the first credential it sees per registry, so clients are not shared between credentials.
fn client_for(ep: &Endpoint, scheme: Scheme, cfg: &PullConfig) -> Result<Client, PullError> {
    let mut extra = Vec::new();
    if let Some(path) = &ep.ca_file {
        let data = std::fs::read(path).map_err(|source| PullError::Ca {
            registry: ep.host.clone(),
            path: path.clone(),
            source,
        })?;
        extra.push(Certificate {
            encoding: CertificateEncoding::Pem,
            data,
        });
    }
    let config = ClientConfig {
        protocol: match scheme {
            Scheme::Http => ClientProtocol::Http,
            _ => ClientProtocol::Https,
        },
        accept_invalid_certificates: ep.skip_verify,
        extra_root_certificates: extra,
        platform_resolver: None,
        connect_timeout: Some(cfg.connect_timeout()),
        // One silent read never outlasts the pull's progress deadline.
        read_timeout: Some(
            cfg.progress_timeout()
                .min(std::time::Duration::from_secs(60)),
        ),
        user_agent: concat!("kinglet/", env!("CARGO_PKG_VERSION")),
        ..Default::default()
    };
    Client::try_from(config).map_err(|source| PullError::Unreachable {
        registry: ep.host.clone(),
        source,
    })
}

/// The crate's form of a credential.
fn registry_auth(c: Option<&Credential>) -> RegistryAuth {
    match c {
        None => RegistryAuth::Anonymous,
        Some(Credential::Basic { username, password }) => {
            RegistryAuth::Basic(username.clone(), password.clone())
        }
        Some(Credential::RegistryToken(t)) => RegistryAuth::Bearer(t.clone()),
        // Exchanged for an access token before (see `token`); as a fallback, docker's
        // convention of the token as the password of the user "<token>".
        Some(Credential::IdentityToken(t)) => RegistryAuth::Basic("<token>".into(), t.clone()),
    }
}

/// Turn a client error into the pull error the caller can act on.
fn classify(e: OciDistributionError, registry: &str, image: &str) -> PullError {
    let unauthorized = || PullError::Unauthorized {
        registry: registry.to_owned(),
        image: image.to_owned(),
        tried: String::new(),
    };
    let not_found = || PullError::NotFound {
        registry: registry.to_owned(),
        image: image.to_owned(),
    };
    match &e {
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => unauthorized(),
        OciDistributionError::ServerError {
            code: 401 | 403, ..
        } => unauthorized(),
        OciDistributionError::ServerError { code: 404, .. }
        | OciDistributionError::ImageManifestNotFoundError(_) => not_found(),
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                unauthorized()
            } else if codes.iter().any(|c| {
                matches!(
                    c,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::NotFound
                        | OciErrorCode::BlobUnknown
                )
            }) {
                not_found()
            } else {
                PullError::Registry {
                    registry: registry.to_owned(),
                    image: image.to_owned(),
                    source: e,
                }
            }
        }
        OciDistributionError::RequestError(re)
            if re.is_connect() || re.is_timeout() || re.is_request() =>
        {
            PullError::Unreachable {
                registry: registry.to_owned(),
                source: e,
            }
        }
        _ => PullError::Registry {
            registry: registry.to_owned(),
            image: image.to_owned(),
            source: e,
        },
    }
}
