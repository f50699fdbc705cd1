//! Manifests and indexes fetched with their size bounded while they arrive: oci-client reads a
//! manifest's whole body into memory, so a hostile registry could send gigabytes; here a body
//! announced or grown past the limit ends the request (containerd's resolver bounds manifests
//! the same way). Authentication goes through oci-client (its token dance and cache), so the
//! blob requests that follow reuse the token.

use oci_client::errors::{OciDistributionError, OciEnvelope};
use oci_client::secrets::RegistryAuth;
use oci_client::RegistryOperation;

use crate::registry::Registry;

/// Why a manifest request failed.
#[derive(Debug)]
pub(crate) enum ManifestError {
    /// The request or the registry's answer, as oci-client would report it.
    Client(OciDistributionError),
    /// The body is (or was announced as) larger than the limit.
    TooLarge { limit: usize },
    /// The registry's `Docker-Content-Digest` header disagrees with the body.
    DigestHeader { header: String, body: String },
}

impl From<reqwest::Error> for ManifestError {
    fn from(e: reqwest::Error) -> Self {
        ManifestError::Client(OciDistributionError::RequestError(e))
    }
}

/// The `Authorization` to send for manifest requests.
#[derive(Clone)]
pub(crate) enum Authorization {
    None,
    Basic(String, String),
    Bearer(String),
}

/// Authenticate for pulls from `oref`'s repository with `auth`, as oci-client does before
/// its own requests (the token is kept in its cache for the blob requests). A failure to get
/// a token leaves the requests anonymous, as in oci-client: the registry's 401 then says so.
pub(crate) async fn authenticate(
    client: &Registry,
    oref: &oci_client::Reference,
    auth: &RegistryAuth,
) -> Authorization {
    match client.oci.auth(oref, auth, RegistryOperation::Pull).await {
        Ok(Some(token)) => Authorization::Bearer(token),
        Ok(None) => match auth {
            RegistryAuth::Basic(u, p) => Authorization::Basic(u.clone(), p.clone()),
            _ => Authorization::None,
        },
        Err(e) => {
            tracing::debug!(registry = %oref.registry(), error = %e, "authentication failed; trying anonymously");
            Authorization::None
        }
    }
}

/// GET the manifest or index `oref` names, accepting `accept`, at most `limit` bytes.
pub(crate) async fn get(
    client: &Registry,
    oref: &oci_client::Reference,
    authz: &Authorization,
    accept: &[&str],
    limit: usize,
) -> Result<Vec<u8>, ManifestError> {
    let url = format!(
        "{}://{}/v2/{}/manifests/{}",
        client.scheme,
        oref.resolve_registry(),
        oref.repository(),
        oref.digest().or(oref.tag()).unwrap_or("latest")
    );
    let mut req = client
        .http
        .get(&url)
        .header(reqwest::header::ACCEPT, accept.join(", "));
    req = match authz {
        Authorization::None => req,
        Authorization::Basic(u, p) => req.basic_auth(u, Some(p)),
        Authorization::Bearer(t) => req.bearer_auth(t),
    };
    let mut resp = req.send().await?;
    let status = resp.status();
    if !status.is_success() {
        // An error body is only read for its OCI error envelope: a small one.
        let body = read_bounded(&mut resp, 64 << 10)
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        return Err(ManifestError::Client(status_error(status, &body, &url)));
    }
    let header = resp
        .headers()
        .get("Docker-Content-Digest")
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ManifestError::TooLarge { limit });
    }
    let body = read_bounded(&mut resp, limit)
        .await?
        .ok_or(ManifestError::TooLarge { limit })?;
    if let Some(header) = header.filter(|h| h.starts_with("sha256:")) {
        let got = crate::fetch::sha256_digest(&body);
        if got != header {
            return Err(ManifestError::DigestHeader { header, body: got });
        }
    }
    Ok(body)
}

/// The body, or `None` once it grows past `limit` (the rest is never read).
async fn read_bounded(
    resp: &mut reqwest::Response,
    limit: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// The error oci-client reports for a failed status (so `classify` treats both alike).
fn status_error(status: reqwest::StatusCode, body: &[u8], url: &str) -> OciDistributionError {
    if status == reqwest::StatusCode::UNAUTHORIZED {
        return OciDistributionError::UnauthorizedError {
            url: url.to_owned(),
        };
    }
    if status.is_client_error() {
        if let Ok(envelope) = serde_json::from_slice::<OciEnvelope>(body) {
            return OciDistributionError::RegistryError {
                envelope,
                url: url.to_owned(),
            };
        }
    }
    OciDistributionError::ServerError {
        code: status.as_u16(),
        url: url.to_owned(),
        message: String::from_utf8_lossy(body).into_owned(),
    }
}
