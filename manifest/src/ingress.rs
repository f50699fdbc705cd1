//! Validation of networking.k8s.io/v1 Ingresses and IngressClasses, as the API server's
//! `ValidateIngress` / `ValidateIngressClass` for the fields Kinglet acts on (rules, hosts,
//! paths and pathType, backends, TLS, ingressClassName), and of the certificate in a
//! `kubernetes.io/tls` Secret (a PEM chain and a private key that belong together). Every
//! error names the object and the field.

use k8s_openapi::api::networking::v1::{HTTPIngressPath, Ingress, IngressBackend, IngressClass};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::names::{dns_1035_label, dns_subdomain, iana_name, Bad};
use crate::ManifestError;

/// A rule or TLS host: a DNS subdomain, optionally `*.` and a subdomain; never an IP address.
fn host_problem(h: &str) -> Option<String> {
    if h.parse::<std::net::IpAddr>().is_ok() {
        return Some(format!("{h:?} must be a DNS name, not an IP address"));
    }
    let rest = h.strip_prefix("*.").unwrap_or(h);
    if !dns_subdomain(rest) {
        return Some(format!(
            "{h:?} must be a DNS subdomain (lowercase letters, digits, '-' and '.'), optionally starting with \"*.\""
        ));
    }
    None
}

/// Path sequences the API server refuses for Exact and Prefix paths.
const INVALID_SEQUENCES: &[&str] = &["//", "/./", "/../", "%2f", "%2F"];
const INVALID_SUFFIXES: &[&str] = &["/..", "/."];

fn check_backend(at: &str, b: &IngressBackend, bad: Bad<'_>) -> Result<(), ManifestError> {
    match (&b.service, &b.resource) {
        (Some(_), Some(_)) => Err(bad(
            at.to_owned(),
            "cannot set both service and resource".into(),
        )),
        (None, Some(_)) => Err(bad(
            format!("{at}.resource"),
            "resource backends are not supported by Kinglet's ingress; use service".into(),
        )),
        (None, None) => Err(bad(
            format!("{at}.service"),
            "is required (a Service name and port)".into(),
        )),
        (Some(s), None) => {
            if !dns_1035_label(&s.name) {
                return Err(bad(
                    format!("{at}.service.name"),
                    format!("{:?} must be a Service name (a DNS-1035 label)", s.name),
                ));
            }
            let port = s.port.clone().unwrap_or_default();
            match (port.number, port.name.as_deref()) {
                (Some(_), Some(_)) => Err(bad(
                    format!("{at}.service.port"),
                    "cannot set both name and number".into(),
                )),
                (None, None) => Err(bad(
                    format!("{at}.service.port"),
                    "a port name or number is required".into(),
                )),
                (Some(n), None) if !(1..=65535).contains(&n) => Err(bad(
                    format!("{at}.service.port.number"),
                    format!("{n} must be 1 to 65535"),
                )),
                (None, Some(n)) if !iana_name(n) => Err(bad(
                    format!("{at}.service.port.name"),
                    format!(
                        "{n:?} must be a port name (at most 15 lowercase letters, digits, '-')"
                    ),
                )),
                _ => Ok(()),
            }
        }
    }
}

/// One HTTP path of a rule: pathType, the path's form, its backend.
fn check_path(at: &str, p: &HTTPIngressPath, bad: Bad<'_>) -> Result<(), ManifestError> {
    let ty = p.path_type.as_str();
    let path = p.path.as_deref().unwrap_or("");
    match ty {
        "Exact" | "Prefix" | "ImplementationSpecific" => {}
        "" => {
            return Err(bad(
                format!("{at}.pathType"),
                "is required (Exact, Prefix or ImplementationSpecific)".into(),
            ))
        }
        other => {
            return Err(bad(
                format!("{at}.pathType"),
                format!("{other:?} is not one of Exact, Prefix, ImplementationSpecific"),
            ))
        }
    }
    if !path.starts_with('/') && (ty != "ImplementationSpecific" || !path.is_empty()) {
        return Err(bad(
            format!("{at}.path"),
            format!("{path:?} must be an absolute path (starting with '/')"),
        ));
    }
    if ty != "ImplementationSpecific" {
        if let Some(s) = INVALID_SEQUENCES.iter().find(|s| path.contains(**s)) {
            return Err(bad(
                format!("{at}.path"),
                format!("{path:?} must not contain {s:?}"),
            ));
        }
        if let Some(s) = INVALID_SUFFIXES.iter().find(|s| path.ends_with(**s)) {
            return Err(bad(
                format!("{at}.path"),
                format!("{path:?} must not end with {s:?}"),
            ));
        }
    }
    check_backend(&format!("{at}.backend"), &p.backend, bad)
}

pub(crate) fn check_ingress(
    source_name: &str,
    label: &str,
    ing: &Ingress,
) -> Result<(), ManifestError> {
    let bad = crate::names::invalid_at(source_name, label);
    let spec = ing.spec.clone().unwrap_or_default();
    let rules = spec.rules.clone().unwrap_or_default();
    if spec.default_backend.is_none() && rules.is_empty() {
        return Err(bad(
            "spec".into(),
            "either spec.rules or spec.defaultBackend must be given".into(),
        ));
    }
    if let Some(class) = spec.ingress_class_name.as_deref() {
        if !dns_subdomain(class) {
            return Err(bad(
                "spec.ingressClassName".into(),
                format!("{class:?} must be a DNS subdomain"),
            ));
        }
    }
    if let Some(b) = &spec.default_backend {
        check_backend("spec.defaultBackend", b, &bad)?;
    }
    for (i, r) in rules.iter().enumerate() {
        if let Some(h) = r.host.as_deref().filter(|h| !h.is_empty()) {
            if let Some(reason) = host_problem(h) {
                return Err(bad(format!("spec.rules[{i}].host"), reason));
            }
        }
        let Some(http) = &r.http else { continue };
        if http.paths.is_empty() {
            return Err(bad(
                format!("spec.rules[{i}].http.paths"),
                "at least one path is required".into(),
            ));
        }
        for (j, p) in http.paths.iter().enumerate() {
            check_path(&format!("spec.rules[{i}].http.paths[{j}]"), p, &bad)?;
        }
    }
    for (i, t) in spec.tls.iter().flatten().enumerate() {
        for (j, h) in t.hosts.iter().flatten().enumerate() {
            if let Some(reason) = host_problem(h) {
                return Err(bad(format!("spec.tls[{i}].hosts[{j}]"), reason));
            }
        }
        if let Some(s) = t.secret_name.as_deref().filter(|s| !s.is_empty()) {
            if !dns_subdomain(s) {
                return Err(bad(
                    format!("spec.tls[{i}].secretName"),
                    format!("{s:?} must be a Secret name (a DNS subdomain)"),
                ));
            }
        }
    }
    Ok(())
}

pub(crate) fn check_ingress_class(
    source_name: &str,
    label: &str,
    c: &IngressClass,
) -> Result<(), ManifestError> {
    let bad = crate::names::invalid_at(source_name, label);
    let controller = c
        .spec
        .as_ref()
        .and_then(|s| s.controller.clone())
        .unwrap_or_default();
    // A domain-prefixed path, as the API server requires (e.g. kinglet.io/ingress-controller).
    let ok = match controller.split_once('/') {
        Some((domain, path)) => {
            dns_subdomain(domain) && !path.is_empty() && controller.len() <= 250
        }
        None => false,
    };
    if !ok {
        return Err(bad(
            "spec.controller".into(),
            format!("{controller:?} must be a domain-prefixed path such as \"kinglet.io/ingress-controller\""),
        ));
    }
    Ok(())
}

/// Why `tls.crt` / `tls.key` of a `kubernetes.io/tls` Secret cannot serve TLS, if they cannot:
/// no PEM certificate, no or an unsupported PEM private key, or a key that is not the first
/// certificate's.
pub fn tls_pair_problem(crt: &[u8], key: &[u8]) -> Option<String> {
    let certs: Vec<CertificateDer<'static>> = match CertificateDer::pem_slice_iter(crt).collect() {
        Ok(c) => c,
        Err(e) => return Some(format!("tls.crt is not valid PEM: {e}")),
    };
    if certs.is_empty() {
        return Some("tls.crt holds no PEM CERTIFICATE block".into());
    }
    let key = match PrivateKeyDer::from_pem_slice(key) {
        Ok(k) => k,
        Err(e) => return Some(format!("tls.key holds no usable PEM private key: {e}")),
    };
    let signing = match rustls::crypto::ring::sign::any_supported_type(&key) {
        Ok(k) => k,
        Err(e) => return Some(format!("tls.key is not a supported private key: {e}")),
    };
    let ck = rustls::sign::CertifiedKey::new(certs, signing);
    match ck.keys_match() {
        Ok(()) => None,
        Err(rustls::Error::InconsistentKeys(_)) => {
            Some("tls.key does not match the public key of the first certificate in tls.crt".into())
        }
        Err(e) => Some(format!("tls.crt / tls.key: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use crate::{parse, Object};

    fn ing(spec: &str) -> Result<Vec<Object>, crate::ManifestError> {
        parse(
            "i.yaml",
            &format!(
                "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: web\nspec:\n{spec}"
            ),
        )
    }

    #[test]
    fn accepts_an_ingress_and_a_class() {
        let o = ing("  ingressClassName: kinglet\n  defaultBackend: {service: {name: def, port: {number: 80}}}\n  tls: [{hosts: [a.example.com, '*.b.example.com'], secretName: a-tls}]\n  rules:\n  - host: a.example.com\n    http:\n      paths:\n      - {path: /api, pathType: Prefix, backend: {service: {name: api, port: {name: http}}}}\n      - {path: /x, pathType: Exact, backend: {service: {name: x, port: {number: 8080}}}}\n  - host: '*.b.example.com'\n    http:\n      paths:\n      - {pathType: ImplementationSpecific, backend: {service: {name: b, port: {number: 80}}}}\n").unwrap();
        assert_eq!(o[0].key().to_string(), "Ingress default/web");
        assert_eq!(o[0].api_version(), "networking.k8s.io/v1");
        let c = parse("c.yaml", "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: kinglet}\nspec: {controller: kinglet.io/ingress-controller}\n").unwrap();
        assert_eq!(c[0].key().to_string(), "IngressClass default/kinglet");
    }

    #[test]
    fn errors_name_the_field() {
        let svc = "backend: {service: {name: s, port: {number: 80}}}";
        for (spec, field) in [
            ("  tls: []\n", "spec"),
            (
                &format!("  rules:\n  - host: 10.0.0.1\n    http: {{paths: [{{path: /, pathType: Prefix, {svc}}}]}}\n"),
                "spec.rules[0].host",
            ),
            (
                &format!("  rules:\n  - host: 'a.*.com'\n    http: {{paths: [{{path: /, pathType: Prefix, {svc}}}]}}\n"),
                "spec.rules[0].host",
            ),
            (
                &format!("  rules:\n  - http: {{paths: [{{path: /, pathType: Regex, {svc}}}]}}\n"),
                "spec.rules[0].http.paths[0].pathType",
            ),
            (
                &format!("  rules:\n  - http: {{paths: [{{path: api, pathType: Prefix, {svc}}}]}}\n"),
                "spec.rules[0].http.paths[0].path",
            ),
            (
                &format!("  rules:\n  - http: {{paths: [{{path: /a//b, pathType: Exact, {svc}}}]}}\n"),
                "spec.rules[0].http.paths[0].path",
            ),
            (
                "  rules:\n  - http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: s, port: {number: 80, name: http}}}}]}\n",
                "spec.rules[0].http.paths[0].backend.service.port",
            ),
            (
                "  rules:\n  - http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: S_, port: {number: 80}}}}]}\n",
                "spec.rules[0].http.paths[0].backend.service.name",
            ),
            (
                "  defaultBackend: {service: {name: s, port: {number: 0}}}\n",
                "spec.defaultBackend.service.port.number",
            ),
            (
                "  defaultBackend: {resource: {kind: Bucket, name: b}}\n",
                "spec.defaultBackend.resource",
            ),
            (
                "  defaultBackend: {service: {name: s, port: {number: 80}}}\n  tls: [{secretName: Bad_Name}]\n",
                "spec.tls[0].secretName",
            ),
            (
                "  defaultBackend: {service: {name: s, port: {number: 80}}}\n  ingressClassName: Not/A/Class\n",
                "spec.ingressClassName",
            ),
        ] {
            let e = ing(spec).unwrap_err().to_string();
            assert!(
                e.contains("Ingress \"web\"") && e.contains(field),
                "{spec}: {e}"
            );
        }
        let e = parse("c.yaml", "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: k}\nspec: {controller: nope}\n").unwrap_err().to_string();
        assert!(
            e.contains("IngressClass \"k\"") && e.contains("spec.controller"),
            "{e}"
        );
    }

    #[test]
    fn tls_secrets_need_a_matching_pem_pair() {
        let a = rcgen::generate_simple_self_signed(vec!["a.example.com".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b.example.com".into()]).unwrap();
        let (crt, key) = (a.cert.pem(), a.signing_key.serialize_pem());
        assert_eq!(
            super::tls_pair_problem(crt.as_bytes(), key.as_bytes()),
            None
        );
        let other_key = b.signing_key.serialize_pem();
        let e = super::tls_pair_problem(crt.as_bytes(), other_key.as_bytes()).unwrap();
        assert!(e.contains("does not match"), "{e}");
        let e = super::tls_pair_problem(b"garbage", key.as_bytes()).unwrap();
        assert!(e.contains("tls.crt"), "{e}");
        let e = super::tls_pair_problem(crt.as_bytes(), b"nope").unwrap();
        assert!(e.contains("tls.key"), "{e}");

        let secret = |crt: &str, key: &str| {
            parse(
                "s.yaml",
                &serde_json::json!({
                    "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "t"},
                    "type": "kubernetes.io/tls",
                    "stringData": {"tls.crt": crt, "tls.key": key},
                })
                .to_string(),
            )
        };
        assert!(secret(&crt, &key).is_ok());
        let e = secret(&crt, &other_key).unwrap_err().to_string();
        assert!(
            e.contains("Secret \"t\"") && e.contains("tls.key") && e.contains("does not match"),
            "{e}"
        );
    }
}
