//! The routing table of the proxy, computed from the Ingresses of Kinglet's class, the
//! Services and their EndpointSlices: which class an Ingress has, host rules (exact and
//! `*.` single-label wildcards), path rules (Exact, Prefix element-wise,
//! ImplementationSpecific as Prefix; longest first, Exact before Prefix at equal length),
//! defaultBackend, and each backend's ready endpoints (a Service port by number or name,
//! its targetPort as the EndpointSlices resolved it, through `kinglet_services::proxy`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressClass};
use kinglet_services::endpoints::LABEL_SERVICE_NAME;

/// Kinglet's IngressClass name and controller.
pub const CLASS_NAME: &str = "kinglet";
pub const CONTROLLER: &str = "kinglet.io/ingress-controller";
/// The annotation that makes an IngressClass the default.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// Whether `ing` is Kinglet's: its `ingressClassName` names an IngressClass whose controller
/// is Kinglet's (or names `kinglet` while no IngressClass of that name exists); without a
/// class name, the IngressClass annotated as the default decides (Kinglet's when none is).
pub fn is_ours(ing: &Ingress, classes: &[IngressClass]) -> bool {
    let controller_of = |name: &str| {
        classes
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(name))
            .map(|c| c.spec.as_ref().and_then(|s| s.controller.clone()))
    };
    let name = ing.spec.as_ref().and_then(|s| s.ingress_class_name.clone());
    // The deprecated annotation still selects a class, as controllers honour it.
    let name = name.or_else(|| {
        ing.metadata
            .annotations
            .as_ref()?
            .get("kubernetes.io/ingress.class")
            .cloned()
    });
    match name {
        Some(n) => match controller_of(&n) {
            Some(c) => c.as_deref() == Some(CONTROLLER),
            None => n == CLASS_NAME,
        },
        None => {
            let default = classes.iter().find(|c| {
                c.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                    .is_some_and(|v| v == "true")
            });
            match default {
                Some(c) => {
                    c.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(CONTROLLER)
                }
                None => true,
            }
        }
    }
}

/// Where a request goes: one Service port and its ready endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// `namespace/name:port` of the Service, for logs and errors.
    pub service: String,
    pub endpoints: Vec<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Exact,
    Prefix,
}

#[derive(Debug, Clone)]
struct PathRule {
    kind: Kind,
    /// Exact: as given; Prefix: without trailing `/` ("" matches everything).
    path: String,
    backend: Arc<Backend>,
}

impl PathRule {
    fn matches(&self, req: &str) -> bool {
        match self.kind {
            Kind::Exact => req == self.path,
            Kind::Prefix => {
                let p = self.path.as_str();
                p.is_empty()
                    || req == p
                    || (req.starts_with(p) && req.as_bytes().get(p.len()) == Some(&b'/'))
            }
        }
    }
}

/// The proxy's routes: exact hosts, wildcard hosts (by the suffix after `*.`), rules without a
/// host, and the default backend.
#[derive(Debug, Default, Clone)]
pub struct Routes {
    exact: HashMap<String, Vec<PathRule>>,
    wildcard: HashMap<String, Vec<PathRule>>,
    any_host: Vec<PathRule>,
    default_backend: Option<Arc<Backend>>,
    /// Ingresses routed (namespace/name), for logs.
    pub ingresses: Vec<String>,
}

/// The result of routing a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    Backend(&'a Backend),
    NotFound,
}

impl Routes {
    /// Build the table from Kinglet's Ingresses (already filtered by [`is_ours`]), oldest first
    /// so that the oldest defaultBackend wins, and the Services with their slices.
    pub fn build(ingresses: &[Ingress], services: &[Service], slices: &[EndpointSlice]) -> Routes {
        let mut ings: Vec<&Ingress> = ingresses.iter().collect();
        ings.sort_by_key(|i| {
            (
                i.metadata.creation_timestamp.as_ref().map(|t| t.0),
                i.metadata.namespace.clone(),
                i.metadata.name.clone(),
            )
        });
        let mut r = Routes::default();
        for ing in ings {
            let ns = ing.metadata.namespace.as_deref().unwrap_or("default");
            r.ingresses.push(format!(
                "{ns}/{}",
                ing.metadata.name.as_deref().unwrap_or("")
            ));
            let spec = ing.spec.clone().unwrap_or_default();
            if let (None, Some(b)) = (&r.default_backend, &spec.default_backend) {
                r.default_backend = Some(Arc::new(resolve(ns, b, services, slices)));
            }
            for rule in spec.rules.iter().flatten() {
                let list = match rule.host.as_deref().filter(|h| !h.is_empty()) {
                    None => &mut r.any_host,
                    Some(h) => match h.strip_prefix("*.") {
                        Some(suffix) => r.wildcard.entry(suffix.to_owned()).or_default(),
                        None => r.exact.entry(h.to_owned()).or_default(),
                    },
                };
                for p in rule.http.iter().flat_map(|h| h.paths.iter()) {
                    let raw = p.path.clone().unwrap_or_default();
                    let (kind, path) = if p.path_type == "Exact" {
                        (Kind::Exact, raw)
                    } else {
                        (Kind::Prefix, raw.trim_end_matches('/').to_owned())
                    };
                    list.push(PathRule {
                        kind,
                        path,
                        backend: Arc::new(resolve(ns, &p.backend, services, slices)),
                    });
                }
            }
        }
        let order = |v: &mut Vec<PathRule>| {
            // Longest first; at equal length Exact before Prefix; the sort is stable, so the
            // older Ingress wins a tie.
            v.sort_by_key(|p| (std::cmp::Reverse(p.path.len()), p.kind == Kind::Prefix));
        };
        r.exact.values_mut().for_each(order);
        r.wildcard.values_mut().for_each(order);
        order(&mut r.any_host);
        r
    }

    /// Where a request for `host` (without port, any case) and `path` goes. A host with rules
    /// of its own (exact, else a wildcard) is matched against those; other hosts against the
    /// rules without a host; no path matching means the default backend, else 404.
    /// Every backend the table routes to (some more than once).
    pub(crate) fn backends(&self) -> impl Iterator<Item = &Backend> {
        self.exact
            .values()
            .chain(self.wildcard.values())
            .flatten()
            .chain(&self.any_host)
            .map(|r| &*r.backend)
            .chain(self.default_backend.as_deref())
    }

    pub fn route(&self, host: &str, path: &str) -> Route<'_> {
        let host = host.to_ascii_lowercase();
        let rules = self.exact.get(&host).or_else(|| {
            let (_, suffix) = host.split_once('.')?;
            self.wildcard.get(suffix)
        });
        let rules = rules.unwrap_or(&self.any_host);
        match rules.iter().find(|p| p.matches(path)) {
            Some(p) => Route::Backend(&p.backend),
            None => match &self.default_backend {
                Some(b) => Route::Backend(b),
                None => Route::NotFound,
            },
        }
    }
}

/// The ready endpoints of Ingress backend `b` in namespace `ns` (also for `describe ingress`).
pub fn resolve(
    ns: &str,
    b: &IngressBackend,
    services: &[Service],
    slices: &[EndpointSlice],
) -> Backend {
    let Some(sb) = &b.service else {
        return Backend {
            service: "(no service)".into(),
            endpoints: Vec::new(),
        };
    };
    let port = sb.port.clone().unwrap_or_default();
    let shown = match (&port.name, port.number) {
        (Some(n), _) => n.clone(),
        (None, Some(n)) => n.to_string(),
        _ => String::new(),
    };
    let mut out = Backend {
        service: format!("{ns}/{}:{shown}", sb.name),
        endpoints: Vec::new(),
    };
    let Some(svc) = services.iter().find(|s| {
        s.metadata.namespace.as_deref().unwrap_or("default") == ns
            && s.metadata.name.as_deref() == Some(sb.name.as_str())
    }) else {
        return out;
    };
    let Some(sp) = svc
        .spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .find(|p| {
            p.protocol.as_deref().unwrap_or("TCP") == "TCP"
                && match (&port.name, port.number) {
                    (Some(n), _) => p.name.as_deref() == Some(n.as_str()),
                    (None, Some(n)) => p.port == n,
                    _ => false,
                }
        })
    else {
        return out;
    };
    let own: Vec<EndpointSlice> = slices
        .iter()
        .filter(|s| {
            s.metadata.namespace.as_deref().unwrap_or("default") == ns
                && s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(LABEL_SERVICE_NAME))
                    .map(String::as_str)
                    == Some(sb.name.as_str())
        })
        .cloned()
        .collect();
    if let Some(pp) = kinglet_services::proxy::proxy_ports(svc, &own)
        .into_iter()
        .find(|pp| pp.protocol == "tcp" && i32::from(pp.port) == sp.port)
    {
        out.endpoints = pp
            .endpoints
            .iter()
            .map(|(ip, port)| SocketAddr::from((*ip, *port)))
            .collect();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<T: serde::de::DeserializeOwned>(yaml: &str) -> T {
        serde_json::from_value(serde_yaml_ng::from_str(yaml).unwrap()).unwrap()
    }

    fn svc(name: &str, port: i32, port_name: &str) -> Service {
        parse(&format!(
            "metadata: {{name: {name}, namespace: default}}\nspec: {{ports: [{{name: {port_name}, port: {port}}}]}}"
        ))
    }

    fn slice(svc: &str, port_name: &str, target: u16, ips: &[&str]) -> EndpointSlice {
        let eps: Vec<String> = ips
            .iter()
            .map(|ip| format!("{{addresses: ['{ip}'], conditions: {{ready: true}}}}"))
            .collect();
        parse(&format!(
            "metadata: {{name: {svc}-x, namespace: default, labels: {{kubernetes.io/service-name: {svc}}}}}\naddressType: IPv4\nports: [{{name: {port_name}, port: {target}, protocol: TCP}}]\nendpoints: [{}]",
            eps.join(", ")
        ))
    }

    fn world() -> (Vec<Service>, Vec<EndpointSlice>) {
        (
            vec![
                svc("api", 80, "http"),
                svc("web", 8080, "web"),
                svc("def", 80, "http"),
            ],
            vec![
                slice("api", "http", 9000, &["10.1.0.1", "10.1.0.2"]),
                slice("web", "web", 8080, &["10.1.0.3"]),
                slice("def", "http", 5000, &["10.1.0.9"]),
            ],
        )
    }

    fn service_of(r: &Routes, host: &str, path: &str) -> String {
        match r.route(host, path) {
            Route::Backend(b) => b.service.clone(),
            Route::NotFound => "404".into(),
        }
    }

    #[test]
    fn hosts_paths_and_default_backend() {
        let (services, slices) = world();
        let ing: Ingress = parse(
            r#"
metadata: {name: i, namespace: default}
spec:
  defaultBackend: {service: {name: def, port: {name: http}}}
  rules:
  - host: a.example.com
    http:
      paths:
      - {path: /api, pathType: Prefix, backend: {service: {name: api, port: {number: 80}}}}
      - {path: /api/v2/exact, pathType: Exact, backend: {service: {name: web, port: {number: 8080}}}}
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {name: web}}}}
  - host: '*.wild.example.com'
    http:
      paths:
      - {path: /w/, pathType: ImplementationSpecific, backend: {service: {name: api, port: {number: 80}}}}
  - http:
      paths:
      - {path: /only, pathType: Exact, backend: {service: {name: web, port: {number: 8080}}}}
"#,
        );
        let r = Routes::build(&[ing], &services, &slices);
        // Prefix is element-wise; longest first; Exact wins at its path only.
        assert_eq!(service_of(&r, "a.example.com", "/api"), "default/api:80");
        assert_eq!(service_of(&r, "A.Example.com", "/api/v1"), "default/api:80");
        assert_eq!(service_of(&r, "a.example.com", "/apix"), "default/web:web");
        assert_eq!(
            service_of(&r, "a.example.com", "/api/v2/exact"),
            "default/web:8080"
        );
        assert_eq!(
            service_of(&r, "a.example.com", "/api/v2/exact/more"),
            "default/api:80"
        );
        // A single-label wildcard; a trailing slash in a Prefix path does not matter.
        assert_eq!(service_of(&r, "x.wild.example.com", "/w"), "default/api:80");
        assert_eq!(
            service_of(&r, "x.wild.example.com", "/w/z"),
            "default/api:80"
        );
        assert_eq!(
            service_of(&r, "x.wild.example.com", "/wz"),
            "default/def:http"
        );
        assert_eq!(
            service_of(&r, "y.x.wild.example.com", "/only"),
            "default/web:8080"
        );
        assert_eq!(service_of(&r, "wild.example.com", "/w"), "default/def:http");
        // Hosts without rules of their own use the rules without a host, then the default.
        assert_eq!(service_of(&r, "other", "/only"), "default/web:8080");
        assert_eq!(service_of(&r, "other", "/only/"), "default/def:http");
        // Endpoints: the Service port's targetPort as the slices resolved it.
        let Route::Backend(b) = r.route("a.example.com", "/api") else {
            panic!()
        };
        assert_eq!(
            b.endpoints,
            vec![
                "10.1.0.1:9000".parse().unwrap(),
                "10.1.0.2:9000".parse().unwrap()
            ]
        );
        let Route::Backend(b) = r.route("nowhere", "/") else {
            panic!()
        };
        assert_eq!(b.endpoints, vec!["10.1.0.9:5000".parse().unwrap()]);
    }

    #[test]
    fn no_match_without_default_is_404_and_unknown_services_have_no_endpoints() {
        let (services, slices) = world();
        let ing: Ingress = parse(
            "metadata: {name: i, namespace: default}\nspec:\n  rules:\n  - host: a\n    http: {paths: [{path: /x, pathType: Exact, backend: {service: {name: gone, port: {number: 80}}}}]}\n",
        );
        let r = Routes::build(&[ing], &services, &slices);
        assert_eq!(r.route("a", "/y"), Route::NotFound);
        assert_eq!(r.route("b", "/x"), Route::NotFound);
        let Route::Backend(b) = r.route("a", "/x") else {
            panic!()
        };
        assert!(b.endpoints.is_empty());
    }

    #[test]
    fn class_selection() {
        let ing = |class: Option<&str>| -> Ingress {
            let c = class
                .map(|c| format!("  ingressClassName: {c}\n"))
                .unwrap_or_default();
            parse(&format!(
                "metadata: {{name: i}}\nspec:\n{c}  defaultBackend: {{service: {{name: s, port: {{number: 80}}}}}}\n"
            ))
        };
        let class = |name: &str, controller: &str, default: bool| -> IngressClass {
            let a = if default {
                format!(", annotations: {{{DEFAULT_CLASS_ANNOTATION}: 'true'}}")
            } else {
                String::new()
            };
            parse(&format!(
                "metadata: {{name: {name}{a}}}\nspec: {{controller: {controller}}}"
            ))
        };
        // No classes at all: Kinglet's name and no name are Kinglet's; others are not.
        assert!(is_ours(&ing(None), &[]));
        assert!(is_ours(&ing(Some("kinglet")), &[]));
        assert!(!is_ours(&ing(Some("nginx")), &[]));
        // A class of another controller as the default takes unnamed Ingresses.
        let nginx = class("nginx", "k8s.io/ingress-nginx", true);
        assert!(!is_ours(&ing(None), std::slice::from_ref(&nginx)));
        assert!(!is_ours(&ing(Some("nginx")), std::slice::from_ref(&nginx)));
        // A class named otherwise but of Kinglet's controller is Kinglet's.
        let mine = class("edge", CONTROLLER, true);
        assert!(is_ours(&ing(Some("edge")), std::slice::from_ref(&mine)));
        assert!(is_ours(&ing(None), std::slice::from_ref(&mine)));
        // A class named kinglet of another controller is not.
        let fake = class("kinglet", "example.com/other", false);
        assert!(!is_ours(&ing(Some("kinglet")), &[fake]));
    }
}
