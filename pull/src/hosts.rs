//! Registry hosts: how each registry is reached (mirrors, plain HTTP, TLS verification, custom
//! CA certificates), from the `[registries."<host>"]` tables of the daemon's config.
//!
//! Rules:
//! - a registry's mirrors are tried in order, then the registry itself; the image keeps its
//!   own name whichever endpoint served it;
//! - plain HTTP and skipped TLS verification only for hosts named in the config (a mirror
//!   written `http://host` counts as named);
//! - without config a host is reached over HTTPS with the system roots, except hosts on
//!   loopback (`127.0.0.0/8`, `::1`, `localhost`), tried over HTTPS and then plain HTTP, as
//!   Docker allows by default.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Settings of one registry host (a table `[registries."host[:port]"]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RegistryHost {
    /// Endpoints serving this registry's images, tried in order before the registry itself:
    /// `host[:port]`, `https://host[:port]` or `http://host[:port]` (plain HTTP).
    #[serde(default)]
    pub mirrors: Vec<String>,
    /// Reach this host over plain HTTP.
    #[serde(default)]
    pub plain_http: bool,
    /// Accept any TLS certificate from this host.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// PEM file with CA certificates to trust for this host, besides the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// Registry hosts by `host[:port]`.
pub type Registries = BTreeMap<String, RegistryHost>;

/// How to talk to an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Https,
    Http,
    /// HTTPS, and plain HTTP if the HTTPS connection cannot be made.
    HttpsThenHttp,
}

/// One place to fetch a registry's content from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` to connect to.
    pub host: String,
    pub scheme: Scheme,
    pub skip_verify: bool,
    pub ca_file: Option<PathBuf>,
    /// Whether this is a mirror (not the image's own registry).
    pub mirror: bool,
}

/// Whether `host` (`name[:port]`, `[v6]:port`) is a loopback address or `localhost`.
pub fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else if host.matches(':').count() > 1 {
        host // a bare IPv6 address
    } else {
        host.split(':').next().unwrap_or("")
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn endpoint_for(host: &str, explicit: Option<Scheme>, regs: &Registries, mirror: bool) -> Endpoint {
    let cfg = regs.get(host);
    let scheme = match explicit {
        Some(s) => s,
        None if cfg.is_some_and(|c| c.plain_http) => Scheme::Http,
        None if cfg.is_none() && is_loopback(host) => Scheme::HttpsThenHttp,
        None => Scheme::Https,
    };
    Endpoint {
        host: host.to_owned(),
        scheme,
        skip_verify: cfg.is_some_and(|c| c.insecure_skip_verify),
        ca_file: cfg.and_then(|c| c.ca_file.clone()),
        mirror,
    }
}

/// Endpoints for the registry `domain`, in the order to try them.
pub fn endpoints(domain: &str, regs: &Registries) -> Vec<Endpoint> {
    let mut out = Vec::new();
    if let Some(cfg) = regs.get(domain) {
        for m in &cfg.mirrors {
            let (scheme, host) = if let Some(h) = m.strip_prefix("http://") {
                (Some(Scheme::Http), h)
            } else if let Some(h) = m.strip_prefix("https://") {
                (Some(Scheme::Https), h)
            } else {
                (None, m.as_str())
            };
            let host = host.trim_end_matches('/');
            out.push(endpoint_for(host, scheme, regs, true));
        }
    }
    out.push(endpoint_for(domain, None, regs, false));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "127.0.0.1:5000",
            "127.3.4.5",
            "localhost:80",
            "[::1]:5000",
            "::1",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "10.0.0.1:5000",
            "example.com",
            "[::2]:1",
            "localhost.example.com",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn defaults_https_except_loopback() {
        let regs = Registries::new();
        assert_eq!(endpoints("quay.io", &regs)[0].scheme, Scheme::Https);
        assert_eq!(
            endpoints("127.0.0.1:5000", &regs)[0].scheme,
            Scheme::HttpsThenHttp
        );
    }

    #[test]
    fn mirrors_first_then_the_registry_with_their_own_settings() {
        let regs: Registries = toml::from_str(
            r#"
            ["registry.k8s.io"]
            mirrors = ["http://127.0.0.1:5000", "mirror.corp:443/"]
            ["mirror.corp:443"]
            ca-file = "/etc/ca.pem"
            ["127.0.0.1:6000"]
            insecure-skip-verify = true
            "#,
        )
        .unwrap();
        let e = endpoints("registry.k8s.io", &regs);
        assert_eq!(e.len(), 3);
        assert_eq!(
            (e[0].host.as_str(), e[0].scheme, e[0].mirror),
            ("127.0.0.1:5000", Scheme::Http, true)
        );
        assert_eq!(e[1].host, "mirror.corp:443");
        assert_eq!(e[1].ca_file, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(
            (e[2].host.as_str(), e[2].mirror),
            ("registry.k8s.io", false)
        );
        // A configured loopback host is HTTPS only, unless it says plain-http.
        let e = endpoints("127.0.0.1:6000", &regs);
        assert_eq!((e[0].scheme, e[0].skip_verify), (Scheme::Https, true));
    }
}
