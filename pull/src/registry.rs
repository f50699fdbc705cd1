//! The clients for one registry endpoint: oci-client's (blobs, tokens) and a plain HTTP client
//! with the same TLS and timeout settings, for the requests whose body must be bounded while
//! it arrives (manifests and indexes, see [`crate::manifest`]).

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::Client;

use crate::hosts::{Endpoint, Scheme};
use crate::{Credential, PullConfig, PullError};

/// The clients for one endpoint, scheme and credential. Cheap to clone (shared pools).
#[derive(Clone)]
pub(crate) struct Registry {
    pub oci: Client,
    pub http: reqwest::Client,
    /// `http` or `https`.
    pub scheme: &'static str,
}

/// New clients for one endpoint and scheme (see [`crate::Puller`]'s client cache).
pub(crate) fn client_for(
    ep: &Endpoint,
    scheme: Scheme,
    cfg: &PullConfig,
) -> Result<Registry, PullError> {
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
    let unreachable = |source| PullError::Unreachable {
        registry: ep.host.clone(),
        source,
    };
    // One silent read never outlasts the pull's progress deadline.
    let read_timeout = cfg
        .progress_timeout()
        .min(std::time::Duration::from_secs(60));
    let user_agent = concat!("kinglet/", env!("CARGO_PKG_VERSION"));
    let mut http = reqwest::Client::builder()
        .danger_accept_invalid_certs(ep.skip_verify)
        .connect_timeout(cfg.connect_timeout())
        .read_timeout(read_timeout)
        .user_agent(user_agent);
    for c in &extra {
        let cert = reqwest::Certificate::try_from(c).map_err(unreachable)?;
        http = http.tls_certs_merge([cert]);
    }
    let http = http
        .build()
        .map_err(|e| unreachable(oci_client::errors::OciDistributionError::from(e)))?;
    let config = ClientConfig {
        protocol: match scheme {
            Scheme::Http => ClientProtocol::Http,
            _ => ClientProtocol::Https,
        },
        accept_invalid_certificates: ep.skip_verify,
        extra_root_certificates: extra,
        platform_resolver: None,
        connect_timeout: Some(cfg.connect_timeout()),
        read_timeout: Some(read_timeout),
        user_agent,
        ..Default::default()
    };
    let oci = Client::try_from(config).map_err(unreachable)?;
    Ok(Registry {
        oci,
        http,
        scheme: if scheme == Scheme::Http {
            "http"
        } else {
            "https"
        },
    })
}

/// The crate's form of a credential.
pub(crate) fn registry_auth(c: Option<&Credential>) -> RegistryAuth {
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
