//! Certificates for the HTTPS listener, in memory only: one per host named in an Ingress's
//! `spec.tls` (from its `kubernetes.io/tls` Secret in the Ingress's namespace), chosen by SNI
//! (exact host, then a `*.` single-label wildcard), else a self-signed default generated
//! with rcgen when the proxy is created. A changed Secret replaces the certificate for the
//! next handshake; connections already open keep theirs.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::IngressError;

/// A Secret's `tls.crt` and `tls.key` bytes and the key parsed from them.
type Parsed = (Vec<u8>, Vec<u8>, Arc<CertifiedKey>);

/// The certificate of each TLS host.
#[derive(Debug, Default, Clone)]
pub struct CertMap {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// By the suffix after `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// `namespace/secret` → (tls.crt, tls.key, key), to reuse parsed keys across passes.
    parsed: HashMap<String, Parsed>,
}

/// A certificate chain and key from PEM.
pub fn certified_key(crt: &[u8], key: &[u8]) -> Result<CertifiedKey, IngressError> {
    let bad = |reason: String| IngressError::Certificate { reason };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(crt)
        .collect::<Result<_, _>>()
        .map_err(|e| bad(format!("tls.crt: {e}")))?;
    if certs.is_empty() {
        return Err(bad("tls.crt holds no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| bad(format!("tls.key: {e}")))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| bad(format!("tls.key: {e}")))?;
    let ck = CertifiedKey::new(certs, signing);
    ck.keys_match()
        .map_err(|e| bad(format!("tls.crt / tls.key: {e}")))?;
    Ok(ck)
}

impl CertMap {
    /// The certificates the `spec.tls` entries of `ingresses` name, from `secrets`; `prev`
    /// lends its parsed keys for Secrets that did not change. A missing or unusable Secret
    /// leaves its hosts to the default certificate (and is logged).
    pub fn build(ingresses: &[Ingress], secrets: &[Secret], prev: &CertMap) -> CertMap {
        let mut out = CertMap::default();
        for ing in ingresses {
            let ns = ing.metadata.namespace.as_deref().unwrap_or("default");
            for t in ing.spec.iter().flat_map(|s| s.tls.iter().flatten()) {
                let Some(name) = t.secret_name.as_deref().filter(|s| !s.is_empty()) else {
                    continue;
                };
                let id = format!("{ns}/{name}");
                let ck = match out.parsed.get(&id) {
                    Some((_, _, ck)) => ck.clone(),
                    None => match load(&id, ns, name, secrets, prev) {
                        Some(entry) => {
                            let ck = entry.2.clone();
                            out.parsed.insert(id.clone(), entry);
                            ck
                        }
                        None => continue,
                    },
                };
                for h in t.hosts.iter().flatten() {
                    let h = h.to_ascii_lowercase();
                    let map = match h.strip_prefix("*.") {
                        Some(suffix) => out.wildcard.entry(suffix.to_owned()),
                        None => out.exact.entry(h),
                    };
                    // The oldest Ingress (listed first) keeps a host named twice.
                    map.or_insert_with(|| ck.clone());
                }
            }
        }
        out
    }

    /// The certificate for SNI name `host`, if one is configured.
    pub fn lookup(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        let host = host.to_ascii_lowercase();
        self.exact.get(&host).cloned().or_else(|| {
            let (_, suffix) = host.split_once('.')?;
            self.wildcard.get(suffix).cloned()
        })
    }

    /// Hosts with a certificate (for logs and tests).
    pub fn hosts(&self) -> Vec<String> {
        let mut v: Vec<String> = self.exact.keys().cloned().collect();
        v.extend(self.wildcard.keys().map(|s| format!("*.{s}")));
        v.sort();
        v
    }
}

fn load(id: &str, ns: &str, name: &str, secrets: &[Secret], prev: &CertMap) -> Option<Parsed> {
    let Some(secret) = secrets.iter().find(|s| {
        s.metadata.namespace.as_deref().unwrap_or("default") == ns
            && s.metadata.name.as_deref() == Some(name)
    }) else {
        tracing::warn!(secret = %id, "TLS Secret not found; its hosts get the default certificate");
        return None;
    };
    let data: BTreeMap<String, Vec<u8>> = kinglet_manifest::secret_data(secret);
    let (crt, key) = (data.get("tls.crt")?.clone(), data.get("tls.key")?.clone());
    if let Some((c, k, ck)) = prev.parsed.get(id) {
        if *c == crt && *k == key {
            return Some((crt, key, ck.clone()));
        }
    }
    match certified_key(&crt, &key) {
        Ok(ck) => {
            tracing::info!(secret = %id, "TLS certificate loaded");
            Some((crt, key, Arc::new(ck)))
        }
        Err(e) => {
            tracing::warn!(secret = %id, err = %e, "TLS Secret unusable; its hosts get the default certificate");
            None
        }
    }
}

/// The SNI resolver the HTTPS listener uses: the current [`CertMap`], else the default.
#[derive(Debug)]
pub struct CertResolver {
    map: RwLock<Arc<CertMap>>,
    default: Arc<CertifiedKey>,
}

impl CertResolver {
    /// A resolver with no hosts yet and a fresh self-signed default certificate (for
    /// `kinglet-ingress.local`, like ingress-nginx's "Fake Certificate").
    pub fn new() -> Result<CertResolver, IngressError> {
        let ck = rcgen::generate_simple_self_signed(vec!["kinglet-ingress.local".into()]).map_err(
            |e| IngressError::Certificate {
                reason: format!("generating the default certificate: {e}"),
            },
        )?;
        let default = certified_key(
            ck.cert.pem().as_bytes(),
            ck.signing_key.serialize_pem().as_bytes(),
        )?;
        Ok(CertResolver {
            map: RwLock::new(Arc::default()),
            default: Arc::new(default),
        })
    }

    /// The current map.
    pub fn current(&self) -> Arc<CertMap> {
        self.map.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replace the map (new handshakes see it at once).
    pub fn set(&self, m: CertMap) {
        *self.map.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(m);
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let found = hello.server_name().and_then(|n| self.current().lookup(n));
        Some(found.unwrap_or_else(|| self.default.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem(host: &str) -> (String, String) {
        let c = rcgen::generate_simple_self_signed(vec![host.into()]).unwrap();
        (c.cert.pem(), c.signing_key.serialize_pem())
    }

    fn secret(name: &str, (crt, key): &(String, String)) -> Secret {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "default"},
            "type": "kubernetes.io/tls",
            "stringData": {"tls.crt": crt, "tls.key": key},
        }))
        .unwrap()
    }

    #[test]
    fn hosts_get_their_secret_and_unchanged_secrets_keep_their_key() {
        let ing: Ingress = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "i", "namespace": "default"},
            "spec": {"tls": [
                {"hosts": ["a.example.com"], "secretName": "a"},
                {"hosts": ["*.b.example.com"], "secretName": "b"},
                {"hosts": ["c.example.com"], "secretName": "missing"},
            ]},
        }))
        .unwrap();
        let (a, b) = (pem("a.example.com"), pem("*.b.example.com"));
        let secrets = vec![secret("a", &a), secret("b", &b)];
        let m = CertMap::build(std::slice::from_ref(&ing), &secrets, &CertMap::default());
        assert_eq!(m.hosts(), vec!["*.b.example.com", "a.example.com"]);
        let ca = m.lookup("A.example.com").unwrap();
        assert!(Arc::ptr_eq(&ca, &m.lookup("a.example.com").unwrap()));
        assert!(m.lookup("x.b.example.com").is_some());
        assert!(m.lookup("y.x.b.example.com").is_none());
        assert!(m.lookup("c.example.com").is_none());
        // Same bytes: the same parsed key; new bytes (a rotation): a new one.
        let again = CertMap::build(std::slice::from_ref(&ing), &secrets, &m);
        assert!(Arc::ptr_eq(&ca, &again.lookup("a.example.com").unwrap()));
        let rotated = vec![secret("a", &pem("a.example.com")), secret("b", &b)];
        let next = CertMap::build(std::slice::from_ref(&ing), &rotated, &again);
        assert!(!Arc::ptr_eq(&ca, &next.lookup("a.example.com").unwrap()));
    }
}
