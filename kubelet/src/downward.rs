//! The downward API, as the kubelet resolves it for env (`valueFrom.fieldRef`,
//! `valueFrom.resourceFieldRef`) and for `downwardAPI` volume items (plain and projected):
//! which field paths each accepts (the API server's lists), their values, and a container's
//! requests/limits in units of a divisor, an unset limit reading as the node's allocatable
//! (kubelet `defaultPodLimitsForDownwardAPI`). Pure: the node's figures are passed in.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, ObjectFieldSelector, Pod, ResourceFieldSelector};

use crate::podspec::{parse_quantity, ConfigError, PodFields};

/// Field paths an env var's `fieldRef` may name (besides `metadata.labels['k']` and
/// `metadata.annotations['k']`), as the API server validates them.
const ENV_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

/// Field paths a downwardAPI volume item's `fieldRef` may name (besides the subscripted ones).
const VOLUME_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.labels",
    "metadata.annotations",
    "metadata.uid",
];

/// Resources a `resourceFieldRef` may name.
const RESOURCES: &[&str] = &[
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
];

/// What the node offers, for limits a container leaves unset (Kinglet reserves nothing, so
/// allocatable is the capacity).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Allocatable {
    /// CPU in cores.
    pub cpu: f64,
    /// Memory in bytes.
    pub memory: f64,
    /// The root file system's size in bytes.
    pub ephemeral_storage: f64,
}

impl Allocatable {
    /// This host's: its CPUs, its physical memory, the size of the file system holding `root`.
    pub fn of_host(root: &std::path::Path) -> Allocatable {
        use nix::unistd::{sysconf, SysconfVar};
        let cpu = std::thread::available_parallelism()
            .map(|n| n.get() as f64)
            .unwrap_or(1.0);
        let pages = sysconf(SysconfVar::_PHYS_PAGES).ok().flatten().unwrap_or(0);
        let page = sysconf(SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .unwrap_or(4096);
        let disk = nix::sys::statvfs::statvfs(root)
            .or_else(|_| nix::sys::statvfs::statvfs("/"))
            .map(|s| s.blocks() as f64 * s.fragment_size() as f64)
            .unwrap_or(0.0);
        Allocatable {
            cpu,
            memory: (pages * page) as f64,
            ephemeral_storage: disk,
        }
    }
}

/// The node's address (`status.hostIP`): the source address of its default route (a UDP
/// socket's `connect` picks it; nothing is sent), else 127.0.0.1.
pub fn node_ip() -> String {
    let probe = || -> std::io::Result<std::net::IpAddr> {
        let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
        s.connect("192.0.2.1:9")?;
        Ok(s.local_addr()?.ip())
    };
    probe()
        .ok()
        .filter(|ip| !ip.is_unspecified())
        .map_or_else(|| "127.0.0.1".to_owned(), |ip| ip.to_string())
}

/// Where a field path is used: the two accept different lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    Env,
    Volume,
}

/// `metadata.labels['k']` → ("labels", "k").
fn subscript(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("metadata.")?;
    let (map, key) = rest.split_once("['")?;
    let key = key.strip_suffix("']")?;
    matches!(map, "labels" | "annotations").then_some((map, key))
}

/// The value of `fieldRef` `f` of `pod`, as the kubelet gives it.
pub fn field_value(
    pod: &Pod,
    fields: &PodFields<'_>,
    f: &ObjectFieldSelector,
    used: Use,
) -> Result<String, ConfigError> {
    let path = f.field_path.as_str();
    if let Some(v) = f
        .api_version
        .as_deref()
        .filter(|v| !v.is_empty() && *v != "v1")
    {
        return Err(ConfigError(format!(
            "fieldRef.apiVersion: Unsupported value: {v:?}: supported values: \"v1\""
        )));
    }
    let m = &pod.metadata;
    if let Some((map, key)) = subscript(path) {
        let map = if map == "labels" {
            &m.labels
        } else {
            &m.annotations
        };
        return Ok(map
            .as_ref()
            .and_then(|m| m.get(key))
            .cloned()
            .unwrap_or_default());
    }
    let allowed = match used {
        Use::Env => ENV_PATHS,
        Use::Volume => VOLUME_PATHS,
    };
    if !allowed.contains(&path) {
        return Err(ConfigError(format!(
            "fieldRef.fieldPath: Unsupported value: {path:?}: supported values: {}",
            allowed
                .iter()
                .map(|p| format!("{p:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let spec = pod.spec.as_ref();
    Ok(match path {
        "metadata.name" => fields.name.to_owned(),
        "metadata.namespace" => fields.namespace.to_owned(),
        "metadata.uid" => fields.uid.to_owned(),
        "metadata.labels" => format_map(m.labels.as_ref()),
        "metadata.annotations" => format_map(m.annotations.as_ref()),
        "spec.nodeName" => fields.node_name.to_owned(),
        "spec.serviceAccountName" => service_account_of(pod),
        // One address per family; Kinglet's pods and node have IPv4 only.
        "status.hostIP" | "status.hostIPs" => fields.host_ip.to_owned(),
        "status.podIP" | "status.podIPs" => {
            if spec.and_then(|s| s.host_network).unwrap_or(false) {
                fields.host_ip.to_owned()
            } else {
                fields.pod_ip.to_owned()
            }
        }
        _ => unreachable!("checked against the lists above"),
    })
}

/// `spec.serviceAccountName`, defaulted as the API server does.
pub fn service_account_of(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into())
}

/// A label or annotation map as the kubelet writes it into a file: `key="value"` lines sorted
/// by key, values quoted as Go's `%q`, no newline after the last.
pub fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Go's `strconv.Quote`.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `resourceFieldRef` `r` of container `c`: the request or limit in units of the divisor,
/// rounded up (cpu counted in millicores, as the kubelet does). An unset limit is the node's
/// allocatable; an unset request is the limit when one is set (the API server's defaulting),
/// else 0.
pub fn resource_value(
    c: &Container,
    r: &ResourceFieldSelector,
    node: &Allocatable,
) -> Result<String, ConfigError> {
    let (which, kind) = r
        .resource
        .split_once('.')
        .filter(|_| RESOURCES.contains(&r.resource.as_str()))
        .ok_or_else(|| {
            ConfigError(format!(
                "resourceFieldRef.resource: Unsupported value: {:?}: supported values: {}",
                r.resource,
                RESOURCES
                    .iter()
                    .map(|p| format!("{p:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    let res = c.resources.clone().unwrap_or_default();
    let get =
        |m: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>| {
            m.and_then(|m| m.get(kind))
                .and_then(|q| parse_quantity(&q.0))
        };
    let limit = get(res.limits.as_ref());
    let value = if which == "limits" {
        limit.unwrap_or(match kind {
            "cpu" => node.cpu,
            "memory" => node.memory,
            _ => node.ephemeral_storage,
        })
    } else {
        get(res.requests.as_ref()).or(limit).unwrap_or(0.0)
    };
    let divisor = match &r.divisor {
        None => 1.0,
        Some(q) => parse_quantity(&q.0).filter(|d| *d > 0.0).ok_or_else(|| {
            ConfigError(format!(
                "resourceFieldRef.divisor: Invalid value: {:?}: must be a positive quantity",
                q.0
            ))
        })?,
    };
    let n = if kind == "cpu" {
        // MilliValue() of each, as integers (a fraction of a millicore rounds up).
        (value * 1000.0).ceil() / (divisor * 1000.0).ceil()
    } else {
        value.ceil() / divisor.ceil()
    };
    Ok(format!("{}", n.ceil() as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        match kinglet_manifest::parse("t", yaml).unwrap().remove(0) {
            kinglet_manifest::Object::Pod(p) => *p,
            _ => panic!(),
        }
    }

    const NODE: Allocatable = Allocatable {
        cpu: 2.0,
        memory: 4.0 * 1024.0 * 1024.0 * 1024.0,
        ephemeral_storage: 100e9,
    };

    fn fields() -> PodFields<'static> {
        PodFields {
            name: "web",
            namespace: "team",
            uid: "u1",
            pod_ip: "10.85.0.2",
            node_name: "node",
            host_ip: "192.168.1.5",
            allocatable: NODE,
        }
    }

    fn sel(path: &str) -> ObjectFieldSelector {
        ObjectFieldSelector {
            field_path: path.into(),
            api_version: None,
        }
    }

    #[test]
    fn every_field_the_kubelet_accepts() {
        let p = pod("apiVersion: v1\nkind: Pod\nmetadata: {name: web, labels: {b: '2', a: 'x\"y'}, annotations: {k: v}}\nspec:\n  containers: [{name: c, image: b}]\n");
        let f = fields();
        let env = |path: &str| field_value(&p, &f, &sel(path), Use::Env);
        assert_eq!(env("metadata.name").unwrap(), "web");
        assert_eq!(env("metadata.namespace").unwrap(), "team");
        assert_eq!(env("metadata.uid").unwrap(), "u1");
        assert_eq!(env("spec.nodeName").unwrap(), "node");
        assert_eq!(env("spec.serviceAccountName").unwrap(), "default");
        assert_eq!(env("status.hostIP").unwrap(), "192.168.1.5");
        assert_eq!(env("status.hostIPs").unwrap(), "192.168.1.5");
        assert_eq!(env("status.podIP").unwrap(), "10.85.0.2");
        assert_eq!(env("status.podIPs").unwrap(), "10.85.0.2");
        assert_eq!(env("metadata.labels['b']").unwrap(), "2");
        assert_eq!(env("metadata.annotations['k']").unwrap(), "v");
        assert_eq!(env("metadata.labels['none']").unwrap(), "");
        // Whole maps only in volumes; node fields only in env.
        let e = env("metadata.labels").unwrap_err().0;
        assert!(e.contains("Unsupported value: \"metadata.labels\""), "{e}");
        let vol = |path: &str| field_value(&p, &f, &sel(path), Use::Volume);
        assert_eq!(vol("metadata.labels").unwrap(), "a=\"x\\\"y\"\nb=\"2\"");
        assert_eq!(vol("metadata.annotations").unwrap(), "k=\"v\"");
        assert!(vol("spec.nodeName").is_err());
        assert_eq!(vol("metadata.labels['a']").unwrap(), "x\"y");
    }

    #[test]
    fn resources_with_divisors_and_node_defaults() {
        let p = pod("apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n  - name: c\n    image: b\n    resources: {limits: {memory: 64Mi, cpu: 500m}, requests: {memory: 32Mi, cpu: 250m}}\n  - {name: d, image: b}\n");
        let s = p.spec.as_ref().unwrap();
        let r = |c: usize, res: &str, div: Option<&str>| {
            let sel = ResourceFieldSelector {
                resource: res.into(),
                divisor: div
                    .map(|d| k8s_openapi::apimachinery::pkg::api::resource::Quantity(d.into())),
                container_name: None,
            };
            resource_value(&s.containers[c], &sel, &NODE)
        };
        assert_eq!(r(0, "limits.cpu", None).unwrap(), "1");
        assert_eq!(r(0, "limits.cpu", Some("1m")).unwrap(), "500");
        assert_eq!(r(0, "requests.cpu", Some("1m")).unwrap(), "250");
        assert_eq!(r(0, "limits.memory", None).unwrap(), "67108864");
        assert_eq!(r(0, "limits.memory", Some("1Mi")).unwrap(), "64");
        assert_eq!(r(0, "requests.memory", Some("1Mi")).unwrap(), "32");
        assert_eq!(r(0, "requests.memory", Some("1M")).unwrap(), "34");
        // No limits: the node's allocatable; no requests: 0.
        assert_eq!(r(1, "limits.cpu", None).unwrap(), "2");
        assert_eq!(r(1, "limits.memory", Some("1Mi")).unwrap(), "4096");
        assert_eq!(r(1, "limits.ephemeral-storage", Some("1G")).unwrap(), "100");
        assert_eq!(r(1, "requests.cpu", None).unwrap(), "0");
        assert_eq!(r(1, "requests.ephemeral-storage", None).unwrap(), "0");
        let e = r(0, "limits.gpu", None).unwrap_err().0;
        assert!(
            e.contains("limits.gpu") && e.contains("supported values"),
            "{e}"
        );
        assert!(r(0, "limits.cpu", Some("0")).is_err());
    }
}
