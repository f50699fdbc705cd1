//! The pull error type, and the mapping of registry-client errors onto it.

use std::path::PathBuf;

use kinglet_image::ImageError;
use oci_client::errors::{OciDistributionError, OciErrorCode};

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
    pub(crate) fn store(source: ImageError) -> PullError {
        PullError::Store { source }
    }
}

/// Turn a client error into the pull error the caller can act on.
pub(crate) fn classify(e: OciDistributionError, registry: &str, image: &str) -> PullError {
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
