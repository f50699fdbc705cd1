//! Image references (`[domain/]path[:tag][@digest]`) parsed and normalized with docker's rules.
//!
//! Normalization gives every reference a registry domain (`docker.io` by default), the
//! `library/` namespace for single-component names on `docker.io`, and the tag `latest` when
//! neither tag nor digest is given, so `busybox` and `docker.io/library/busybox:latest` name the
//! same image. Digests are kept. The grammar is the one of `distribution/reference`.

use std::fmt;

use crate::ImageError;

/// Registry assumed when a reference names none.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// Tag assumed when a reference has neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_NAMESPACE: &str = "library/";
const NAME_TOTAL_MAX: usize = 255;
const TAG_MAX: usize = 128;

/// A parsed, normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Registry host, with port if any (`docker.io`, `localhost:5000`).
    pub domain: String,
    /// Repository path inside the registry (`library/busybox`).
    pub path: String,
    /// Tag, if the reference has one (after normalization: `latest` when there was no digest).
    pub tag: Option<String>,
    /// Digest (`sha256:<hex>`), if the reference pins one.
    pub digest: Option<String>,
}

impl Reference {
    /// Parse `reference` and normalize it (default domain, `library/`, tag `latest`).
    pub fn parse_normalized(reference: &str) -> Result<Reference, ImageError> {
        let mut r = Self::parse_raw(reference)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some(DEFAULT_TAG.to_owned());
        }
        Ok(r)
    }

    /// Parse `reference` and normalize domain and path, leaving tag and digest as given.
    pub fn parse_raw(reference: &str) -> Result<Reference, ImageError> {
        let err = |reason| ImageError::InvalidReference {
            reference: reference.to_owned(),
            reason,
        };
        if reference.is_empty() {
            return Err(err("empty reference"));
        }
        let (name_tag, digest) = match reference.split_once('@') {
            Some((n, d)) => {
                if !is_valid_digest(d) {
                    return Err(err("invalid digest"));
                }
                (n, Some(d.to_owned()))
            }
            None => (reference, None),
        };
        // A ':' after the last '/' starts the tag; one before it belongs to a registry port.
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag[last_slash..].find(':') {
            Some(i) => {
                let split = last_slash + i;
                (&name_tag[..split], Some(&name_tag[split + 1..]))
            }
            None => (name_tag, None),
        };
        if let Some(tag) = tag {
            if !is_valid_tag(tag) {
                return Err(err("invalid tag"));
            }
        }
        if name.is_empty() {
            return Err(err("empty repository name"));
        }
        if digest.is_none() && tag.is_none() && name.len() == 64 && is_lower_hex(name) {
            return Err(err(
                "64-character hexadecimal strings are image ids, not repository names",
            ));
        }
        let (mut domain, mut path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.chars().any(|c| c.is_ascii_uppercase()) =>
            {
                (first.to_owned(), rest.to_owned())
            }
            _ => (DEFAULT_DOMAIN.to_owned(), name.to_owned()),
        };
        if !is_valid_domain(&domain) {
            return Err(err("invalid registry domain"));
        }
        if domain == LEGACY_DEFAULT_DOMAIN {
            domain = DEFAULT_DOMAIN.to_owned();
        }
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(err("repository name must be lowercase"));
        }
        if path.is_empty() || !path.split('/').all(is_valid_path_component) {
            return Err(err("invalid repository name"));
        }
        if domain == DEFAULT_DOMAIN && !path.contains('/') {
            path = format!("{OFFICIAL_NAMESPACE}{path}");
        }
        if domain.len() + 1 + path.len() > NAME_TOTAL_MAX {
            return Err(err("repository name longer than 255 characters"));
        }
        Ok(Reference {
            domain,
            path,
            tag: tag.map(str::to_owned),
            digest,
        })
    }

    /// `domain/path`, the repository without tag or digest.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Normalize `r` with docker's rules: `busybox` → `docker.io/library/busybox:latest`,
/// `quay.io/x/y@sha256:…` unchanged. Invalid references give an error naming `r`.
pub fn normalize_reference(r: &str) -> Result<String, ImageError> {
    Reference::parse_normalized(r).map(|r| r.to_string())
}

/// Whether `tag` matches `[\w][\w.-]{0,127}`.
pub fn is_valid_tag(tag: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut chars = tag.chars();
    matches!(chars.next(), Some(c) if word(c))
        && chars.all(|c| word(c) || c == '.' || c == '-')
        && tag.len() <= TAG_MAX
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `algorithm:encoded` per the OCI digest grammar, with sha256 checked for length and case.
fn is_valid_digest(d: &str) -> bool {
    match d.split_once(':') {
        Some(("sha256", hex)) => hex.len() == 64 && is_lower_hex(hex),
        Some((alg, enc)) => {
            !alg.is_empty()
                && alg.split(['+', '.', '_', '-']).all(|p| {
                    !p.is_empty()
                        && p.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                })
                && enc.len() >= 32
                && enc
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'))
        }
        None => false,
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn is_valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-".
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `host[:port]` where host is a DNS name, an IPv4 address or `[IPv6]`.
fn is_valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, after)) => {
                if v6.is_empty() || !v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
                    return false;
                }
                match after {
                    "" => return true,
                    p => match p.strip_prefix(':') {
                        Some(port) => {
                            return !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
                        }
                        None => return false,
                    },
                }
            }
            None => return false,
        }
    } else {
        match d.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalizes_docker_hub_names() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            ("index.docker.io/busybox:x", "docker.io/library/busybox:x"),
            ("user/app:v1", "docker.io/user/app:v1"),
            ("quay.io/coreos/etcd", "quay.io/coreos/etcd:latest"),
            ("localhost/app", "localhost/app:latest"),
            ("localhost:5000/a/b/c:t", "localhost:5000/a/b/c:t"),
            ("127.0.0.1:5000/app", "127.0.0.1:5000/app:latest"),
            ("[::1]:5000/app:t", "[::1]:5000/app:t"),
            ("Registry.Example/app", "Registry.Example/app:latest"),
            ("a.b/x__y.z-w--v/q_r", "a.b/x__y.z-w--v/q_r:latest"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_reference(input).unwrap(), want, "{input}");
        }
    }

    #[test]
    fn keeps_digests_without_adding_a_tag() {
        assert_eq!(
            normalize_reference(&format!("busybox@{D}")).unwrap(),
            format!("docker.io/library/busybox@{D}")
        );
        assert_eq!(
            normalize_reference(&format!("busybox:1@{D}")).unwrap(),
            format!("docker.io/library/busybox:1@{D}")
        );
    }

    #[test]
    fn rejects_invalid_references_naming_them() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "busybox:-x",
            "busybox@sha256:abc",
            "a//b",
            "a/b/",
            "-a",
            "a..b",
            "a___b",
            "exa mple",
            ":tag",
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "host:port/x",
            "busybox:t@",
        ] {
            let err = normalize_reference(bad).unwrap_err();
            assert!(
                err.to_string().contains(&format!("{bad:?}")),
                "{bad}: {err}"
            );
        }
        let long_tag = format!("busybox:{}", "a".repeat(129));
        assert!(normalize_reference(&long_tag).is_err());
    }

    /// Property: the parser never panics on arbitrary input, and normalizing a normalized
    /// reference gives it back unchanged.
    #[test]
    fn normalization_is_total_and_idempotent() {
        let alphabet: Vec<char> = "abcAB09:/@._-[]sha256".chars().collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut accepted = 0;
        for _ in 0..20_000 {
            let len = (next() % 24) as usize;
            let mut s: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            if next() % 4 == 0 {
                s.push('@');
                s.push_str(D);
            }
            if let Ok(n) = normalize_reference(&s) {
                accepted += 1;
                assert_eq!(normalize_reference(&n).unwrap(), n, "from {s:?}");
            }
        }
        assert!(
            accepted > 100,
            "the generator should hit valid references ({accepted})"
        );
    }

    #[test]
    fn exposes_parts() {
        let r = Reference::parse_normalized("localhost:5000/team/app").unwrap();
        assert_eq!(r.domain, "localhost:5000");
        assert_eq!(r.path, "team/app");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(r.repository(), "localhost:5000/team/app");
    }
}
