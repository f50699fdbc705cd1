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
//! its layers ([`fetch`]). An interrupted pull leaves verified blobs
//! but no image; the next pull reuses the blobs and finishes.
//!
//! A hostile registry is bounded: a manifest or index is cut off past [`MAX_DOCUMENT`] while
//! it arrives ([`manifest`]; oci-client would read it whole), a config or layer past its
//! descriptor's size, and a registry that stops sending by the progress deadline ([`stall`]).
//!
//! Concurrent pulls of one reference with the same credentials share one download: the first
//! starts a task, later callers wait on its result. The task runs to its end even when its
//! callers give up (a client deadline), so a retry finds the work done.
//!
//! Secrets never reach logs or errors: [`Credential`]'s `Debug` redacts them, and errors name
//! the registry and the kind of credential tried, never its value.

pub mod auth;
mod error;
mod fetch;
pub mod hosts;
pub mod keyring;
mod manifest;
mod registry;
mod stall;
mod token;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::future::{BoxFuture, FutureExt, Shared};
use kinglet_image::{ImageRecord, ImageStore, Reference};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use sha2::{Digest as _, Sha256};

pub use auth::Credential;
pub use error::PullError;
use hosts::{Endpoint, Registries, Scheme};
use registry::{client_for, registry_auth, Registry};

/// Media types asked for when fetching a manifest.
const ACCEPT: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];
/// Layers downloaded at once per pull.
const PARALLEL_LAYERS: usize = 4;
/// Largest manifest, index or config accepted, bounded while it arrives: containerd's
/// resolver limit (`MaxManifestSize`, 4 × 1048 × 1048 bytes).
const MAX_DOCUMENT: usize = 4 * 1048 * 1048;
/// Deepest chain of nested indexes followed.
const MAX_INDEX_DEPTH: usize = 4;

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
    /// Registry clients by endpoint, scheme and credential: a pull reuses the connections
    /// and the bearer tokens of the last one, as containerd's resolver does. Bounded.
    clients: Mutex<HashMap<String, Registry>>,
}

/// At most this many cached registry clients; the cache starts over when full.
const MAX_CLIENTS: usize = 64;

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
            clients: Mutex::new(HashMap::new()),
        })
    }

    /// The client for one endpoint, scheme and credential, made on first use. A client keeps
    /// the first credential (and its tokens) it sees per registry, so each credential has its
    /// own; the key holds a hash of the credential, never the secret.
    fn client(
        &self,
        ep: &Endpoint,
        scheme: Scheme,
        cred: Option<&Credential>,
    ) -> Result<Registry, PullError> {
        let mut h = Sha256::new();
        h.update(
            cred.map(Credential::fingerprint)
                .unwrap_or_default()
                .as_bytes(),
        );
        let key = format!(
            "{}\0{scheme:?}\0{}\0{:?}\0{}",
            ep.host,
            ep.skip_verify,
            ep.ca_file,
            hex::encode(h.finalize())
        );
        let mut map = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = map.get(&key) {
            return Ok(c.clone());
        }
        let c = client_for(ep, scheme, &self.config)?;
        if map.len() >= MAX_CLIENTS {
            map.clear();
        }
        map.insert(key, c.clone());
        Ok(c)
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
            for &scheme in schemes {
                match self
                    .attempt_scheme(ep, scheme, r, &creds, progress, &mut last)
                    .await?
                {
                    Outcome::Pulled(rec) => {
                        tracing::info!(
                            image = %r, endpoint = %ep.host, id = %rec.id,
                            elapsed = ?started.elapsed(), "image pulled"
                        );
                        return Ok(*rec);
                    }
                    Outcome::NextScheme => continue,
                    // Every credential was refused here: a mirror may still serve the image,
                    // the registry itself is the last word.
                    Outcome::Refused if ep.mirror => continue,
                    Outcome::Refused => break,
                }
            }
        }
        Err(last.unwrap_or_else(|| PullError::NotFound {
            registry: r.domain.clone(),
            image: r.to_string(),
        }))
    }

    /// Try each credential on one endpoint over one scheme; `last` keeps the error to report
    /// if no endpoint serves the image.
    async fn attempt_scheme(
        &self,
        ep: &Endpoint,
        scheme: Scheme,
        r: &Reference,
        creds: &[Option<Credential>],
        progress: &Arc<Progress>,
        last: &mut Option<PullError>,
    ) -> Result<Outcome, PullError> {
        let mut tried = Vec::new();
        for cred in creds {
            let client = self.client(ep, scheme, cred.as_ref())?;
            tried.push(
                cred.as_ref()
                    .map_or("anonymous".to_owned(), Credential::describe),
            );
            let auth = match auth_for(ep, scheme, r, cred.as_ref()).await {
                Ok(auth) => auth,
                Err(e @ PullError::Unauthorized { .. }) => {
                    *last = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            match self.fetch(&client, ep, r, &auth, progress).await {
                Ok(rec) => return Ok(Outcome::Pulled(Box::new(rec))),
                Err(PullError::Unauthorized {
                    registry, image, ..
                }) => {
                    tracing::debug!(image = %r, endpoint = %ep.host, credential = %tried.last().map(String::as_str).unwrap_or(""), "unauthorized; trying the next credential");
                    *last = Some(PullError::Unauthorized {
                        registry,
                        image,
                        tried: tried.join(", "),
                    });
                }
                Err(e @ PullError::Unreachable { .. }) => {
                    tracing::debug!(image = %r, endpoint = %ep.host, ?scheme, error = %kinglet_util::chain(&e), "endpoint unreachable");
                    *last = Some(e);
                    return Ok(Outcome::NextScheme);
                }
                Err(e @ PullError::NotFound { .. }) if ep.mirror => {
                    *last = Some(e);
                    return Ok(Outcome::NextScheme);
                }
                Err(e) => {
                    // A TLS-only registry answers plain HTTP with 400: the HTTPS failure (an
                    // untrusted certificate, say) is the real cause.
                    let https_refused = matches!(
                        (&e, &*last),
                        (
                            PullError::Registry {
                                source: OciDistributionError::ServerError { code: 400, .. },
                                ..
                            },
                            Some(PullError::Unreachable { .. })
                        )
                    );
                    if scheme == Scheme::Http && ep.scheme == Scheme::HttpsThenHttp && https_refused
                    {
                        return Err(last.take().unwrap_or(e));
                    }
                    return Err(e);
                }
            }
        }
        Ok(Outcome::Refused)
    }
}

/// How one endpoint and scheme ended.
enum Outcome {
    Pulled(Box<ImageRecord>),
    /// Unreachable, or a mirror without the image: the next scheme or endpoint.
    NextScheme,
    /// Every credential was refused.
    Refused,
}

/// The client's credential for one attempt: an identity token is exchanged for an access
/// token first.
async fn auth_for(
    ep: &Endpoint,
    scheme: Scheme,
    r: &Reference,
    cred: Option<&Credential>,
) -> Result<RegistryAuth, PullError> {
    match cred {
        Some(Credential::IdentityToken(t)) => {
            let s = if scheme == Scheme::Http {
                "http"
            } else {
                "https"
            };
            token::exchange(ep, s, &r.path, t)
                .await
                .map(RegistryAuth::Bearer)
        }
        other => Ok(registry_auth(other)),
    }
}
