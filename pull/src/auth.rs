//! Registry credentials and where they come from: the CRI `AuthConfig` of a PullImage request,
//! a docker `config.json` on the host (`auths`, `credHelpers`, `credsStore`, the helpers being
//! `docker-credential-<name>` executables), and `kubernetes.io/dockerconfigjson` secrets.
//!
//! A [`Credential`] never shows its secret: its `Debug` redacts it, and no error built here
//! contains it. Credentials live in memory only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::keyring::Keyring;
use super::PullError;

/// One way to authenticate to a registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// HTTP Basic (also used to get a Bearer token when the registry asks for one).
    Basic { username: String, password: String },
    /// A registry (Bearer) token, used as is.
    RegistryToken(String),
    /// An OAuth2 refresh token (`identitytoken`), exchanged for an access token.
    IdentityToken(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Basic { username, .. } => {
                write!(f, "Basic({username:?}, <redacted>)")
            }
            Credential::RegistryToken(_) => f.write_str("RegistryToken(<redacted>)"),
            Credential::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
        }
    }
}

impl Credential {
    /// A short description for logs: the kind and the user name, never the secret.
    pub fn describe(&self) -> String {
        match self {
            Credential::Basic { username, .. } => format!("basic auth as {username:?}"),
            Credential::RegistryToken(_) => "a registry token".into(),
            Credential::IdentityToken(_) => "an identity token".into(),
        }
    }

    /// Bytes that identify this credential (for keying shared pulls), hashed by the caller.
    pub(crate) fn fingerprint(&self) -> String {
        match self {
            Credential::Basic { username, password } => format!("b\0{username}\0{password}"),
            Credential::RegistryToken(t) => format!("r\0{t}"),
            Credential::IdentityToken(t) => format!("i\0{t}"),
        }
    }
}

/// Decode a base64 `user:password` (`auth` in AuthConfig and config.json).
pub fn decode_auth(auth: &str, origin: &str) -> Result<(String, String), PullError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|_| PullError::BadCredentials {
            origin: origin.to_owned(),
            reason: "`auth` is not valid base64",
        })?;
    let text = String::from_utf8(bytes).map_err(|_| PullError::BadCredentials {
        origin: origin.to_owned(),
        reason: "`auth` is not UTF-8",
    })?;
    let (u, p) = text.split_once(':').ok_or(PullError::BadCredentials {
        origin: origin.to_owned(),
        reason: "`auth` is not `user:password`",
    })?;
    Ok((u.to_owned(), p.to_owned()))
}

/// The credential of a CRI AuthConfig (fields as in the CRI message), if it carries one.
/// Order of preference: registry token, identity token, username/password, `auth`.
pub fn from_auth_config(
    username: &str,
    password: &str,
    auth: &str,
    identity_token: &str,
    registry_token: &str,
) -> Result<Option<Credential>, PullError> {
    if !registry_token.is_empty() {
        return Ok(Some(Credential::RegistryToken(registry_token.to_owned())));
    }
    if !identity_token.is_empty() {
        return Ok(Some(Credential::IdentityToken(identity_token.to_owned())));
    }
    if !username.is_empty() {
        return Ok(Some(Credential::Basic {
            username: username.to_owned(),
            password: password.to_owned(),
        }));
    }
    if !auth.is_empty() {
        let (username, password) = decode_auth(auth, "AuthConfig")?;
        return Ok(Some(Credential::Basic { username, password }));
    }
    Ok(None)
}

/// One entry of `auths` in a docker config or a dockerconfigjson secret.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AuthEntry {
    auth: String,
    username: String,
    password: String,
    identitytoken: String,
    registrytoken: String,
}

/// A docker `config.json` (or the `.dockerconfigjson` of a secret, which has the same `auths`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DockerConfig {
    auths: HashMap<String, AuthEntry>,
    #[serde(rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
    #[serde(rename = "credsStore")]
    creds_store: String,
}

impl DockerConfig {
    /// Parse a config; `origin` names it in errors.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<DockerConfig, PullError> {
        serde_json::from_slice(bytes).map_err(|_| PullError::BadCredentials {
            origin: origin.to_owned(),
            reason: "not a docker config JSON document",
        })
    }

    /// Read `path`; a missing file is an empty config.
    pub async fn load(path: &Path) -> Result<DockerConfig, PullError> {
        match tokio::fs::read(path).await {
            Ok(b) => DockerConfig::parse(&b, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DockerConfig::default()),
            Err(source) => Err(PullError::ReadConfig {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// The credentials of `auths` entries that match `image` (`host[:port]/path`) with the
    /// kubelet's rules, most specific first.
    pub fn matching_auths(&self, image: &str, origin: &str) -> Vec<Credential> {
        let ring = Keyring::new(self.auths.iter().map(|(k, v)| (k.clone(), v)));
        ring.lookup(image)
            .into_iter()
            .filter_map(|e| match entry_credential(e, origin) {
                Ok(c) => c,
                Err(err) => {
                    tracing::warn!(%origin, error = %err, "ignoring a malformed credential");
                    None
                }
            })
            .collect()
    }

    /// The helper for `host`: `credHelpers[host]`, else `credsStore`.
    pub fn helper_for(&self, host: &str) -> Option<&str> {
        self.cred_helpers
            .get(host)
            .map(String::as_str)
            .or((!self.creds_store.is_empty()).then_some(self.creds_store.as_str()))
    }
}

fn entry_credential(e: &AuthEntry, origin: &str) -> Result<Option<Credential>, PullError> {
    from_auth_config(
        &e.username,
        &e.password,
        &e.auth,
        &e.identitytoken,
        &e.registrytoken,
    )
    .map_err(|err| match err {
        PullError::BadCredentials { reason, .. } => PullError::BadCredentials {
            origin: origin.to_owned(),
            reason,
        },
        other => other,
    })
}

/// The credentials of a pod's `kubernetes.io/dockerconfigjson` secrets for `image` (a
/// reference; tag and digest are ignored), with the kubelet's rules: for each secret in order,
/// its matching `auths` entries, most specific first. The caller tries each until one works.
/// `secrets` are `(secret name, .dockerconfigjson bytes)`; a malformed secret is an error
/// naming it.
pub fn from_pull_secrets(
    secrets: &[(&str, &[u8])],
    image: &str,
) -> Result<Vec<Credential>, PullError> {
    let r = kinglet_image::Reference::parse_normalized(image)
        .map_err(|source| PullError::Reference { source })?;
    let target = format!("{}/{}", r.domain, r.path);
    let mut out = Vec::new();
    for (name, bytes) in secrets {
        let origin = format!("secret {name}");
        let cfg = DockerConfig::parse(bytes, &origin)?;
        for c in cfg.matching_auths(&target, &origin) {
            if !out.contains(&c) {
                out.push(c);
            }
        }
    }
    Ok(out)
}

/// What a credential helper prints for `get`.
#[derive(Deserialize)]
struct HelperReply {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Ask `docker-credential-<helper>` (found in `PATH`, or in `helper_dir` when given) for the
/// credentials of `server` (`get`, server on stdin, JSON on stdout). `Ok(None)` when the
/// helper has none for this server.
pub async fn from_helper(
    helper: &str,
    server: &str,
    helper_dir: Option<&Path>,
) -> Result<Option<Credential>, PullError> {
    if helper.is_empty()
        || !helper
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(PullError::CredentialHelper {
            helper: helper.to_owned(),
            server: server.to_owned(),
            reason: "invalid helper name".into(),
        });
    }
    let program: PathBuf = match helper_dir {
        Some(d) => d.join(format!("docker-credential-{helper}")),
        None => PathBuf::from(format!("docker-credential-{helper}")),
    };
    let fail = |reason: String| PullError::CredentialHelper {
        helper: helper.to_owned(),
        server: server.to_owned(),
        reason,
    };
    let mut child = tokio::process::Command::new(&program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(format!("cannot run {}: {e}", program.display())))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .await
            .map_err(|e| fail(format!("write to helper: {e}")))?;
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .map_err(|_| fail("no answer within 30 s".into()))?
        .map_err(|e| fail(format!("wait for helper: {e}")))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        if msg.contains("credentials not found") {
            return Ok(None);
        }
        // The helper's own message, cut short (it should not hold secrets; it cannot be known).
        let first: String = msg.lines().next().unwrap_or("").chars().take(200).collect();
        return Err(fail(format!("exited with {}: {first}", out.status)));
    }
    parse_helper_reply(&out.stdout).map_err(fail)
}

/// A credential helper's `get` output: `None` when it holds no secret. The error never
/// quotes the output (it may hold a secret).
pub fn parse_helper_reply(stdout: &[u8]) -> Result<Option<Credential>, String> {
    let reply: HelperReply = serde_json::from_slice(stdout)
        .map_err(|_| "its output is not the expected JSON".to_owned())?;
    if reply.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(if reply.username == "<token>" {
        Credential::IdentityToken(reply.secret)
    } else {
        Credential::Basic {
            username: reply.username,
            password: reply.secret,
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_config_fields_in_order_of_preference() {
        let b64 = base64::engine::general_purpose::STANDARD.encode("u:p:w");
        assert_eq!(
            from_auth_config("", "", &b64, "", "").unwrap(),
            Some(Credential::Basic {
                username: "u".into(),
                password: "p:w".into()
            })
        );
        assert_eq!(
            from_auth_config("a", "b", &b64, "", "tok").unwrap(),
            Some(Credential::RegistryToken("tok".into()))
        );
        assert_eq!(from_auth_config("", "", "", "", "").unwrap(), None);
        let e = from_auth_config("", "", "!!!", "", "").unwrap_err();
        assert!(e.to_string().contains("base64"), "{e}");
    }

    #[test]
    fn debug_and_describe_never_show_secrets() {
        let c = Credential::Basic {
            username: "alice".into(),
            password: "s3cret-pw".into(),
        };
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!(!c.describe().contains("s3cret"));
        let t = Credential::RegistryToken("tok-s3cret".into());
        assert!(!format!("{t:?}").contains("s3cret"));
    }

    #[test]
    fn pull_secrets_in_order_most_specific_first() {
        let b = |u: &str| base64::engine::general_purpose::STANDARD.encode(format!("{u}:pw"));
        let s1 = format!(
            r#"{{"auths": {{"quay.io": {{"auth": "{}"}}, "quay.io/team/app": {{"auth": "{}"}}}}}}"#,
            b("broad"),
            b("narrow")
        );
        let s2 = format!(r#"{{"auths": {{"*.io": {{"auth": "{}"}}}}}}"#, b("glob"));
        let users = |img: &str| -> Vec<String> {
            from_pull_secrets(&[("one", s1.as_bytes()), ("two", s2.as_bytes())], img)
                .unwrap()
                .into_iter()
                .map(|c| match c {
                    Credential::Basic { username, .. } => username,
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        assert_eq!(users("quay.io/team/app:1"), ["narrow", "broad", "glob"]);
        assert_eq!(users("quay.io/other@sha256:0000000000000000000000000000000000000000000000000000000000000000"), ["broad", "glob"]);
        assert_eq!(users("docker.io/library/busybox"), ["glob"]);
        assert!(users("example.com/x").is_empty());
        let e = from_pull_secrets(&[("bad", b"{")], "quay.io/a").unwrap_err();
        assert!(e.to_string().contains("secret bad"), "{e}");
    }

    #[test]
    fn docker_config_auths_match_with_kubelet_rules() {
        let b64 = base64::engine::general_purpose::STANDARD.encode("bob:pw");
        let json = format!(
            r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{b64}"}},
                "127.0.0.1:5000": {{"username": "x", "password": "y"}},
                "*.corp.io/team": {{"registrytoken": "t"}}}},
               "credHelpers": {{"gcr.io": "gcloud"}}, "credsStore": "pass"}}"#
        );
        let c = DockerConfig::parse(json.as_bytes(), "test").unwrap();
        assert_eq!(
            c.matching_auths("docker.io/library/busybox", "t"),
            [Credential::Basic {
                username: "bob".into(),
                password: "pw".into()
            }]
        );
        assert_eq!(c.matching_auths("127.0.0.1:5000/a", "t").len(), 1);
        assert!(c.matching_auths("127.0.0.1:5001/a", "t").is_empty());
        assert_eq!(
            c.matching_auths("reg.corp.io/team/app", "t"),
            [Credential::RegistryToken("t".into())]
        );
        assert!(c.matching_auths("reg.corp.io/other", "t").is_empty());
        assert_eq!(c.helper_for("gcr.io"), Some("gcloud"));
        assert_eq!(c.helper_for("quay.io"), Some("pass"));
    }
}
