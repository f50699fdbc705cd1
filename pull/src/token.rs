//! OAuth2 identity tokens: a registry's token server exchanges an identity (refresh) token for
//! an access token (`grant_type=refresh_token`, as `docker login` with an identity token does).
//! The registry's `WWW-Authenticate: Bearer realm=…,service=…` challenge says where.

use super::hosts::Endpoint;
use super::PullError;

/// The `realm` and `service` of a Bearer challenge, if the header has one.
pub fn parse_bearer_challenge(header: &str) -> Option<(String, Option<String>)> {
    let rest = header.trim();
    let (scheme, params) = rest.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let (mut realm, mut service) = (None, None);
    let mut s = params.trim();
    while !s.is_empty() {
        let (key, after) = s.split_once('=')?;
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (q[..end].to_owned(), &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        match key.as_str() {
            "realm" => realm = Some(value),
            "service" => service = Some(value),
            _ => {}
        }
        s = next.trim_start().trim_start_matches(',').trim_start();
    }
    Some((realm?, service))
}

/// Exchange `identity_token` for an access token to pull `repository` from `ep` (reached over
/// `scheme`, "http" or "https").
pub async fn exchange(
    ep: &Endpoint,
    scheme: &str,
    repository: &str,
    identity_token: &str,
) -> Result<String, PullError> {
    let fail = |reason: String| PullError::Token {
        registry: ep.host.clone(),
        reason,
    };
    let mut b = reqwest::Client::builder()
        .danger_accept_invalid_certs(ep.skip_verify)
        .connect_timeout(std::time::Duration::from_secs(15))
        .timeout(std::time::Duration::from_secs(60));
    if let Some(path) = &ep.ca_file {
        let pem = std::fs::read(path).map_err(|source| PullError::Ca {
            registry: ep.host.clone(),
            path: path.clone(),
            source,
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| fail(format!("CA file {}: {e}", path.display())))?;
        b = b.tls_certs_merge(certs);
    }
    let client = b.build().map_err(|e| fail(e.to_string()))?;
    let ping = client
        .get(format!("{scheme}://{}/v2/", ep.host))
        .send()
        .await
        .map_err(|e| fail(format!("ping: {e}")))?;
    let challenge = ping
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|h| h.to_str().ok())
        .and_then(parse_bearer_challenge)
        .ok_or_else(|| fail("the registry offers no Bearer token server".into()))?;
    let (realm, service) = challenge;
    let body = {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "refresh_token")
            .append_pair("refresh_token", identity_token)
            .append_pair("client_id", "kinglet")
            .append_pair("scope", &format!("repository:{repository}:pull"));
        if let Some(s) = &service {
            form.append_pair("service", s);
        }
        form.finish()
    };
    let resp = client
        .post(&realm)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body)
        .send()
        .await
        .map_err(|e| fail(format!("token request: {e}")))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(PullError::Unauthorized {
            registry: ep.host.clone(),
            image: repository.to_owned(),
            tried: format!("an identity token (token server answered {status})"),
        });
    }
    let body: serde_json::Value = serde_json::from_slice(
        &resp
            .bytes()
            .await
            .map_err(|e| fail(format!("token response: {e}")))?,
    )
    .map_err(|_| fail("the token response is not JSON".into()))?;
    body.get("access_token")
        .or_else(|| body.get("token"))
        .and_then(|t| t.as_str())
        .map(str::to_owned)
        .ok_or_else(|| fail("the token response has no access_token".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A fake registry + token server on loopback: `/v2/` challenges, `/token` exchanges the
    /// refresh token "idtok" for "access-1". Returns its address and the token request body.
    async fn fake_token_server() -> (String, tokio::task::JoinHandle<String>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let realm = format!("http://{addr}/token");
        let task = tokio::spawn(async move {
            let mut token_body = String::new();
            for _ in 0..2 {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = vec![0u8; 8192];
                let mut got = 0;
                // Read until the headers and (for the POST) the body are in.
                loop {
                    let n = s.read(&mut buf[got..]).await.unwrap();
                    got += n;
                    let text = String::from_utf8_lossy(&buf[..got]).to_string();
                    if let Some(h) = text.find("\r\n\r\n") {
                        let len = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if got >= h + 4 + len || n == 0 {
                            break;
                        }
                    }
                }
                let text = String::from_utf8_lossy(&buf[..got]).to_string();
                let resp = if text.starts_with("GET /v2/") {
                    format!("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"{realm}\",service=\"fake\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                } else {
                    token_body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
                    let ok = token_body.contains("refresh_token=idtok");
                    let body = if ok {
                        r#"{"access_token":"access-1"}"#
                    } else {
                        "{}"
                    };
                    let status = if ok { "200 OK" } else { "401 Unauthorized" };
                    format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                };
                s.write_all(resp.as_bytes()).await.unwrap();
            }
            token_body
        });
        (addr, task)
    }

    #[tokio::test]
    async fn identity_token_is_exchanged_at_the_challenged_realm() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (addr, server) = fake_token_server().await;
        let ep = Endpoint {
            host: addr,
            scheme: super::super::hosts::Scheme::Http,
            skip_verify: false,
            ca_file: None,
            mirror: false,
        };
        let access = exchange(&ep, "http", "team/app", "idtok").await.unwrap();
        assert_eq!(access, "access-1");
        let body = server.await.unwrap();
        assert!(body.contains("grant_type=refresh_token"), "{body}");
        assert!(body.contains("service=fake"), "{body}");
        assert!(
            body.contains("scope=repository%3Ateam%2Fapp%3Apull"),
            "{body}"
        );
    }

    #[test]
    fn bearer_challenges_are_parsed() {
        assert_eq!(
            parse_bearer_challenge(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a:pull""#
            ),
            Some((
                "https://auth.example/token".into(),
                Some("registry.example".into())
            ))
        );
        assert_eq!(
            parse_bearer_challenge("bearer realm=https://a/t"),
            Some(("https://a/t".into(), None))
        );
        assert_eq!(parse_bearer_challenge(r#"Basic realm="x""#), None);
        assert_eq!(parse_bearer_challenge(r#"Bearer service="x""#), None);
    }
}
