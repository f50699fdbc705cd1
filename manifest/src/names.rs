//! The name checks the object validators share (one copy for Services, Ingresses and
//! EndpointSlices): DNS-1123 labels and subdomains, DNS-1035 labels (Service names), IANA
//! service names (named ports), as the API server's `validation` package defines them.

use crate::ManifestError;

/// How a validator reports a problem: (field path, reason) → the error naming its object.
pub(crate) type Bad<'a> = &'a dyn Fn(String, String) -> ManifestError;

/// The error maker of one object's checks: `bad(path, reason)` names the file and the object.
pub(crate) fn invalid_at<'a>(
    source_name: &'a str,
    label: &'a str,
) -> impl Fn(String, String) -> ManifestError + 'a {
    move |path, reason| ManifestError::Invalid {
        source_name: source_name.to_owned(),
        object: label.to_owned(),
        path,
        reason,
    }
}

/// A DNS-1123 label: at most 63 lowercase letters, digits and `-`, not starting or ending
/// with `-`.
pub(crate) fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS-1123 subdomain: at most 253 characters of dot-separated DNS-1123 labels.
pub(crate) fn dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(dns_label)
}

/// A DNS-1035 label (a Service name): a DNS-1123 label starting with a letter.
pub(crate) fn dns_1035_label(s: &str) -> bool {
    dns_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())
}

/// An IANA service name (a named port): at most 15 lowercase letters, digits and `-`, with a
/// letter, no `--`, not starting or ending with `-`.
pub(crate) fn iana_name(s: &str) -> bool {
    dns_label(s) && s.len() <= 15 && s.bytes().any(|b| b.is_ascii_lowercase()) && !s.contains("--")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_the_api_server_checks_them() {
        assert!(dns_label("web-1") && !dns_label("-web") && !dns_label("Web"));
        assert!(!dns_label(&"a".repeat(64)));
        assert!(dns_subdomain("a.b-c.d") && !dns_subdomain("a..b") && !dns_subdomain("a."));
        assert!(dns_1035_label("web") && !dns_1035_label("1web") && !dns_1035_label("a.b"));
        assert!(iana_name("http") && !iana_name("1234") && !iana_name("a--b"));
        assert!(!iana_name("sixteen-letters-"));
        assert!(!iana_name("abcdefghijklmnop"));
    }
}
