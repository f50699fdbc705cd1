//! Kubernetes objects from the YAML (or JSON) a user would give a cluster.
//!
//! [`parse`] reads a multi-document file into typed objects (k8s-openapi types): v1 `Pod`,
//! `ConfigMap`, `Secret` and `Service` (also inside a `v1 List`; Services validated as the API
//! server does, in `service`), apps/v1 `Deployment` and `ReplicaSet`,
//! batch/v1 `Job` (validated as the API server does, in `workloads`); [`parse_each`] does it
//! document by document, keeping the good ones, as kubectl applies. Every problem names the document, the
//! object and the field:
//! - a field the Kubernetes schema does not have (a typo such as `imagee`) is an error with its
//!   path — found by comparing the document with the typed object serialized back;
//! - a type mismatch is an error with its path;
//! - Secrets: `data` must be base64, `stringData` is merged over it, and the types
//!   `kubernetes.io/tls` / `kubernetes.io/dockerconfigjson` must carry their keys, and a TLS
//!   Secret's `tls.crt` / `tls.key` must be a PEM chain and its matching key (`ingress`);
//! - networking.k8s.io/v1 `Ingress` and `IngressClass` are validated as the API server does;
//! - apps/v1 `StatefulSet` (`workloads::statefulset`) and v1 `PersistentVolumeClaim` (`pvc`) too.
//!
//! Objects without `metadata.namespace` land in `default`.

use std::collections::BTreeMap;
use std::fmt;

pub use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
pub use k8s_openapi::api::batch::v1::{CronJob, Job};
pub use k8s_openapi::api::core::v1::PersistentVolumeClaim;
pub use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service, ServiceAccount};
pub use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

pub mod cron;
mod endpointslice;
mod hostusers;
mod ingress;
mod pvc;
pub use pvc::storage_bytes;
mod names;
mod service;
mod typed;
pub use ingress::tls_pair_problem;
mod workloads;
use serde::Deserialize;
use serde_json::Value;
pub use typed::ignored_fields;
use typed::{octal_modes, typed};
pub use workloads::cronjob::time_zone;
pub use workloads::{parse_selector, selector_matches};

/// The namespace of objects that name none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// What went wrong reading a manifest. `doc` counts documents from 1.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{source_name}: document {doc}: not valid YAML/JSON: {reason}")]
    Syntax {
        source_name: String,
        doc: usize,
        reason: String,
    },
    #[error("{source_name}: document {doc}: missing field {field}")]
    Missing {
        source_name: String,
        doc: usize,
        field: &'static str,
    },
    #[error("{source_name}: document {doc}: kind {kind:?} of apiVersion {api_version:?} is not supported (supported: v1 Pod, ConfigMap, Secret, Service, ServiceAccount, Endpoints, Namespace, List; PersistentVolumeClaim; apps/v1 Deployment, ReplicaSet, DaemonSet, StatefulSet, ControllerRevision; batch/v1 Job, CronJob; discovery.k8s.io/v1 EndpointSlice; networking.k8s.io/v1 Ingress, IngressClass)")]
    Unsupported {
        source_name: String,
        doc: usize,
        kind: String,
        api_version: String,
    },
    #[error("{source_name}: {object}: field {path}: {reason}")]
    Invalid {
        source_name: String,
        object: String,
        path: String,
        reason: String,
    },
    #[error("{source_name}: {object}: unknown field{} {}", if .paths.len() > 1 { "s" } else { "" }, .paths.join(", "))]
    UnknownFields {
        source_name: String,
        object: String,
        paths: Vec<String>,
    },
}

/// One object of a manifest.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    Pod(Box<Pod>),
    ConfigMap(ConfigMap),
    Secret(Secret),
    Deployment(Box<Deployment>),
    ReplicaSet(Box<ReplicaSet>),
    Job(Box<Job>),
    Service(Box<Service>),
    EndpointSlice(Box<k8s_openapi::api::discovery::v1::EndpointSlice>),
    Endpoints(Box<k8s_openapi::api::core::v1::Endpoints>),
    DaemonSet(Box<DaemonSet>),
    CronJob(Box<CronJob>),
    Namespace(Box<Namespace>),
    ServiceAccount(Box<ServiceAccount>),
    Ingress(Box<Ingress>),
    IngressClass(Box<IngressClass>),
    StatefulSet(Box<StatefulSet>),
    PersistentVolumeClaim(Box<PersistentVolumeClaim>),
    ControllerRevision(Box<ControllerRevision>),
}

/// Kind, namespace and name: what identifies an object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

impl Object {
    /// The object's kind, as in its manifest.
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Pod(_) => "Pod",
            Object::ConfigMap(_) => "ConfigMap",
            Object::Secret(_) => "Secret",
            Object::Deployment(_) => "Deployment",
            Object::ReplicaSet(_) => "ReplicaSet",
            Object::Job(_) => "Job",
            Object::Service(_) => "Service",
            Object::EndpointSlice(_) => "EndpointSlice",
            Object::Endpoints(_) => "Endpoints",
            Object::DaemonSet(_) => "DaemonSet",
            Object::CronJob(_) => "CronJob",
            Object::Namespace(_) => "Namespace",
            Object::ServiceAccount(_) => "ServiceAccount",
            Object::Ingress(_) => "Ingress",
            Object::IngressClass(_) => "IngressClass",
            Object::StatefulSet(_) => "StatefulSet",
            Object::PersistentVolumeClaim(_) => "PersistentVolumeClaim",
            Object::ControllerRevision(_) => "ControllerRevision",
        }
    }

    /// The object's apiVersion.
    pub fn api_version(&self) -> &'static str {
        match self {
            Object::Pod(_)
            | Object::ConfigMap(_)
            | Object::Secret(_)
            | Object::Service(_)
            | Object::Endpoints(_)
            | Object::ServiceAccount(_)
            | Object::Namespace(_)
            | Object::PersistentVolumeClaim(_) => "v1",
            Object::Deployment(_)
            | Object::ReplicaSet(_)
            | Object::DaemonSet(_)
            | Object::StatefulSet(_)
            | Object::ControllerRevision(_) => "apps/v1",
            Object::Job(_) | Object::CronJob(_) => "batch/v1",
            Object::EndpointSlice(_) => "discovery.k8s.io/v1",
            Object::Ingress(_) | Object::IngressClass(_) => "networking.k8s.io/v1",
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Object::Pod(p) => &p.metadata,
            Object::ConfigMap(c) => &c.metadata,
            Object::Secret(s) => &s.metadata,
            Object::Deployment(d) => &d.metadata,
            Object::ReplicaSet(r) => &r.metadata,
            Object::Job(j) => &j.metadata,
            Object::Service(s) => &s.metadata,
            Object::EndpointSlice(e) => &e.metadata,
            Object::Endpoints(e) => &e.metadata,
            Object::DaemonSet(d) => &d.metadata,
            Object::CronJob(c) => &c.metadata,
            Object::Namespace(n) => &n.metadata,
            Object::ServiceAccount(s) => &s.metadata,
            Object::Ingress(i) => &i.metadata,
            Object::IngressClass(c) => &c.metadata,
            Object::StatefulSet(s) => &s.metadata,
            Object::PersistentVolumeClaim(c) => &c.metadata,
            Object::ControllerRevision(r) => &r.metadata,
        }
    }

    pub fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Object::Pod(p) => &mut p.metadata,
            Object::ConfigMap(c) => &mut c.metadata,
            Object::Secret(s) => &mut s.metadata,
            Object::Deployment(d) => &mut d.metadata,
            Object::ReplicaSet(r) => &mut r.metadata,
            Object::Job(j) => &mut j.metadata,
            Object::Service(s) => &mut s.metadata,
            Object::EndpointSlice(e) => &mut e.metadata,
            Object::Endpoints(e) => &mut e.metadata,
            Object::DaemonSet(d) => &mut d.metadata,
            Object::CronJob(c) => &mut c.metadata,
            Object::Namespace(n) => &mut n.metadata,
            Object::ServiceAccount(s) => &mut s.metadata,
            Object::Ingress(i) => &mut i.metadata,
            Object::IngressClass(c) => &mut c.metadata,
            Object::StatefulSet(s) => &mut s.metadata,
            Object::PersistentVolumeClaim(c) => &mut c.metadata,
            Object::ControllerRevision(r) => &mut r.metadata,
        }
    }

    /// The object as Kubernetes JSON, with apiVersion and kind.
    pub fn to_json(&self) -> serde_json::Result<Value> {
        let mut v = match self {
            Object::Pod(p) => serde_json::to_value(p),
            Object::ConfigMap(c) => serde_json::to_value(c),
            Object::Secret(s) => serde_json::to_value(s),
            Object::Deployment(d) => serde_json::to_value(d),
            Object::ReplicaSet(r) => serde_json::to_value(r),
            Object::Job(j) => serde_json::to_value(j),
            Object::Service(s) => serde_json::to_value(s),
            Object::EndpointSlice(e) => serde_json::to_value(e),
            Object::Endpoints(e) => serde_json::to_value(e),
            Object::DaemonSet(d) => serde_json::to_value(d),
            Object::CronJob(c) => serde_json::to_value(c),
            Object::Namespace(n) => serde_json::to_value(n),
            Object::ServiceAccount(s) => serde_json::to_value(s),
            Object::Ingress(i) => serde_json::to_value(i),
            Object::IngressClass(c) => serde_json::to_value(c),
            Object::StatefulSet(s) => serde_json::to_value(s),
            Object::PersistentVolumeClaim(c) => serde_json::to_value(c),
            Object::ControllerRevision(r) => serde_json::to_value(r),
        }?;
        v["apiVersion"] = self.api_version().into();
        v["kind"] = self.kind().into();
        Ok(v)
    }

    pub fn key(&self) -> ObjectKey {
        let (kind, meta) = (self.kind(), self.meta());
        ObjectKey {
            kind,
            // Namespaces are cluster-scoped: no namespace of their own.
            namespace: match self {
                Object::Namespace(_) => String::new(),
                _ => meta
                    .namespace
                    .clone()
                    .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
            },
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

/// A Namespace's name: a DNS-1123 label (lower-case alphanumerics and '-', at most 63).
fn check_namespace_name(source_name: &str, label: &str, name: &str) -> Result<(), ManifestError> {
    let ok = name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        return Ok(());
    }
    Err(ManifestError::Invalid {
        source_name: source_name.to_owned(),
        object: label.to_owned(),
        path: "metadata.name".into(),
        reason: format!("{name:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (at most 63)"),
    })
}

/// Parse every document of `text` (YAML or JSON). `source_name` names the file in errors.
pub fn parse(source_name: &str, text: &str) -> Result<Vec<Object>, ManifestError> {
    let out = parse_all(source_name, text)?;
    let mut seen = std::collections::BTreeSet::new();
    for o in &out {
        if !seen.insert(o.key()) {
            return Err(ManifestError::Invalid {
                source_name: source_name.to_owned(),
                object: o.key().to_string(),
                path: "metadata.name".into(),
                reason: "is defined twice in this manifest".into(),
            });
        }
    }
    Ok(out)
}

/// Parse document by document, as kubectl applies them: the objects of every good document,
/// and one error per bad one (a syntax error ends the file: what follows cannot be split).
pub fn parse_each(source_name: &str, text: &str) -> (Vec<Object>, Vec<ManifestError>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (i, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let doc = i + 1;
        let mut value = match Value::deserialize(de) {
            Ok(v) if v.is_null() => continue,
            Ok(v) => v,
            Err(e) => {
                errors.push(ManifestError::Syntax {
                    source_name: source_name.to_owned(),
                    doc,
                    reason: e.to_string(),
                });
                break;
            }
        };
        octal_modes(&mut value);
        let mut objs = Vec::new();
        if let Err(e) = parse_value(source_name, doc, value, &mut objs) {
            errors.push(e);
            continue;
        }
        for o in objs {
            if seen.insert(o.key()) {
                out.push(o);
            } else {
                errors.push(ManifestError::Invalid {
                    source_name: source_name.to_owned(),
                    object: o.key().to_string(),
                    path: "metadata.name".into(),
                    reason: "is defined twice in this manifest".into(),
                });
            }
        }
    }
    (out, errors)
}

fn parse_all(source_name: &str, text: &str) -> Result<Vec<Object>, ManifestError> {
    let mut out = Vec::new();
    for (i, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let doc = i + 1;
        let value = Value::deserialize(de).map_err(|e| ManifestError::Syntax {
            source_name: source_name.to_owned(),
            doc,
            reason: e.to_string(),
        })?;
        if value.is_null() {
            continue; // an empty document (`---` at the end, comments only)
        }
        let mut value = value;
        octal_modes(&mut value);
        parse_value(source_name, doc, value, &mut out)?;
    }
    Ok(out)
}

/// The apiVersion, kind and name of one document, checked; `None` for a `v1 List`, whose
/// items are parsed into `out` here.
fn header(
    source_name: &str,
    doc: usize,
    mut value: Value,
    out: &mut Vec<Object>,
) -> Result<Option<(String, String, String, Value)>, ManifestError> {
    let field = |v: &Value, f: &'static str| -> Result<String, ManifestError> {
        v.get(f)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or(ManifestError::Missing {
                source_name: source_name.to_owned(),
                doc,
                field: f,
            })
    };
    let api_version = field(&value, "apiVersion")?;
    let kind = field(&value, "kind")?;
    if api_version == "v1" && kind == "List" {
        let items = value
            .get_mut("items")
            .map(Value::take)
            .unwrap_or(Value::Array(vec![]));
        for item in items.as_array().cloned().unwrap_or_default() {
            parse_value(source_name, doc, item, out)?;
        }
        return Ok(None);
    }
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if name.is_empty() {
        return Err(ManifestError::Invalid {
            source_name: source_name.to_owned(),
            object: format!("{kind} {name:?} (document {doc})"),
            path: "metadata.name".into(),
            reason: "is required".into(),
        });
    }
    Ok(Some((api_version, kind, name, value)))
}

fn parse_value(
    source_name: &str,
    doc: usize,
    value: Value,
    out: &mut Vec<Object>,
) -> Result<(), ManifestError> {
    let Some((api_version, kind, name, value)) = header(source_name, doc, value, out)? else {
        return Ok(());
    };
    let label = format!("{kind} {name:?} (document {doc})");
    let obj = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Pod") => {
            let p: Pod = typed(source_name, &label, &value)?;
            check_pod(source_name, &label, &p)?;
            Object::Pod(Box::new(p))
        }
        ("v1", "ConfigMap") => Object::ConfigMap(typed(source_name, &label, &value)?),
        ("apps/v1" | "batch/v1", _) => {
            match workload_object(source_name, &label, &api_version, &kind, &value)? {
                Some(o) => o,
                None => {
                    return Err(ManifestError::Unsupported {
                        source_name: source_name.to_owned(),
                        doc,
                        kind,
                        api_version,
                    })
                }
            }
        }
        ("v1", "PersistentVolumeClaim") => {
            let c: PersistentVolumeClaim = typed(source_name, &label, &value)?;
            pvc::check_pvc(source_name, &label, &c)?;
            Object::PersistentVolumeClaim(Box::new(c))
        }
        ("v1", "Namespace") => {
            let n: Namespace = typed(source_name, &label, &value)?;
            check_namespace_name(source_name, &label, &name)?;
            Object::Namespace(Box::new(n))
        }
        ("v1", "Secret") => {
            check_secret_data(source_name, &label, &value)?;
            let s: Secret = typed(source_name, &label, &value)?;
            check_secret(source_name, &label, &s)?;
            Object::Secret(s)
        }
        ("v1", "Service") => {
            let s: Service = typed(source_name, &label, &value)?;
            service::check_service(source_name, &label, &s)?;
            Object::Service(Box::new(s))
        }
        ("discovery.k8s.io/v1", "EndpointSlice") => {
            let e: k8s_openapi::api::discovery::v1::EndpointSlice =
                typed(source_name, &label, &value)?;
            endpointslice::check_endpoint_slice(source_name, &label, &e)?;
            Object::EndpointSlice(Box::new(e))
        }
        ("v1", "Endpoints") => {
            let e: k8s_openapi::api::core::v1::Endpoints = typed(source_name, &label, &value)?;
            endpointslice::check_endpoints(source_name, &label, &e)?;
            Object::Endpoints(Box::new(e))
        }
        ("v1", "ServiceAccount") => {
            Object::ServiceAccount(Box::new(typed(source_name, &label, &value)?))
        }
        ("networking.k8s.io/v1", "Ingress") => {
            let i: Ingress = typed(source_name, &label, &value)?;
            ingress::check_ingress(source_name, &label, &i)?;
            Object::Ingress(Box::new(i))
        }
        ("networking.k8s.io/v1", "IngressClass") => {
            let c: IngressClass = typed(source_name, &label, &value)?;
            ingress::check_ingress_class(source_name, &label, &c)?;
            Object::IngressClass(Box::new(c))
        }
        _ => {
            return Err(ManifestError::Unsupported {
                source_name: source_name.to_owned(),
                doc,
                kind,
                api_version,
            })
        }
    };
    out.push(obj);
    Ok(())
}

/// The apps/v1 and batch/v1 kinds, typed and validated; None for a kind of neither.
fn workload_object(
    source_name: &str,
    label: &str,
    api_version: &str,
    kind: &str,
    value: &Value,
) -> Result<Option<Object>, ManifestError> {
    Ok(Some(match (api_version, kind) {
        ("apps/v1", "Deployment") => {
            let d: Deployment = typed(source_name, label, value)?;
            workloads::check_deployment(source_name, label, &d)?;
            Object::Deployment(Box::new(d))
        }
        ("apps/v1", "ReplicaSet") => {
            let r: ReplicaSet = typed(source_name, label, value)?;
            workloads::check_replica_set(source_name, label, &r)?;
            Object::ReplicaSet(Box::new(r))
        }
        ("apps/v1", "DaemonSet") => {
            let d: DaemonSet = typed(source_name, label, value)?;
            workloads::daemonset::check_daemon_set(source_name, label, &d)?;
            Object::DaemonSet(Box::new(d))
        }
        ("apps/v1", "StatefulSet") => {
            let s: StatefulSet = typed(source_name, label, value)?;
            workloads::statefulset::check_stateful_set(source_name, label, &s)?;
            Object::StatefulSet(Box::new(s))
        }
        ("apps/v1", "ControllerRevision") => {
            Object::ControllerRevision(Box::new(typed(source_name, label, value)?))
        }
        ("batch/v1", "CronJob") => {
            let mut c: CronJob = typed(source_name, label, value)?;
            workloads::cronjob::check_cron_job(source_name, label, &mut c)?;
            Object::CronJob(Box::new(c))
        }
        ("batch/v1", "Job") => {
            let mut j: Job = typed(source_name, label, value)?;
            workloads::check_job(source_name, label, &mut j)?;
            Object::Job(Box::new(j))
        }
        _ => return Ok(None),
    }))
}

/// Each `data` value of a Secret must be standard base64 (with padding), as the API server
/// requires; name the key and the offending character, and say what to do.
fn check_secret_data(source_name: &str, label: &str, value: &Value) -> Result<(), ManifestError> {
    use base64::Engine as _;
    let Some(data) = value.get("data").and_then(Value::as_object) else {
        return Ok(());
    };
    for (key, v) in data {
        let invalid = |reason: String| ManifestError::Invalid {
            source_name: source_name.to_owned(),
            object: label.to_owned(),
            path: format!("data.{key}"),
            reason,
        };
        let Some(text) = v.as_str() else {
            if v.is_null() {
                continue;
            }
            return Err(invalid(
                "must be a base64 string (use stringData for plain text)".into(),
            ));
        };
        if let Err(e) = base64::engine::general_purpose::STANDARD.decode(text) {
            let what = match e {
                base64::DecodeError::InvalidByte(offset, byte) => {
                    format!("character {:?} at offset {offset}", char::from(byte))
                }
                base64::DecodeError::InvalidLength(n) => {
                    format!("length {n} is not a multiple of 4 (missing `=` padding?)")
                }
                base64::DecodeError::InvalidLastSymbol(offset, byte) => {
                    format!("last character {:?} at offset {offset}", char::from(byte))
                }
                base64::DecodeError::InvalidPadding => "bad `=` padding".into(),
            };
            return Err(invalid(format!(
                "is not valid base64: {what}; data values are base64-encoded \
                 (e.g. `printf %s VALUE | base64 -w0`), or put the plain text under stringData"
            )));
        }
    }
    Ok(())
}

/// Valid Kubernetes fields Kinglet does not implement yet: refused by path, never ignored.
fn unsupported(p: &Pod) -> Option<String> {
    let spec = p.spec.as_ref()?;
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        let known = v.config_map.is_some()
            || v.secret.is_some()
            || v.empty_dir.is_some()
            || v.host_path.is_some()
            || v.projected.is_some()
            || v.downward_api.is_some()
            || v.persistent_volume_claim.is_some();
        if !known {
            return Some(format!("spec.volumes[{i}] (only configMap, secret, emptyDir, hostPath, projected, downwardAPI and persistentVolumeClaim volumes are supported)"));
        }
    }
    None
}

/// Paths Kinglet will write inside volumes must stay inside them.
pub(crate) fn check_pod(source_name: &str, label: &str, p: &Pod) -> Result<(), ManifestError> {
    if let Some(path) = unsupported(p) {
        return Err(ManifestError::Invalid {
            source_name: source_name.to_owned(),
            object: label.to_owned(),
            path,
            reason: "is not supported by kinglet yet".into(),
        });
    }
    if let Some((path, reason)) = hostusers::check(p) {
        return Err(ManifestError::Invalid {
            source_name: source_name.to_owned(),
            object: label.to_owned(),
            path,
            reason,
        });
    }
    let vols = p.spec.as_ref().and_then(|s| s.volumes.as_ref());
    for (i, v) in vols.into_iter().flatten().enumerate() {
        let items = v
            .config_map
            .as_ref()
            .and_then(|c| c.items.as_ref())
            .or(v.secret.as_ref().and_then(|s| s.items.as_ref()));
        for (j, it) in items.into_iter().flatten().enumerate() {
            let path = std::path::Path::new(&it.path);
            let bad = it.path.is_empty()
                || path.is_absolute()
                || it.path.starts_with("..")
                || path
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir));
            if bad {
                let kind = if v.config_map.is_some() {
                    "configMap"
                } else {
                    "secret"
                };
                return Err(ManifestError::Invalid {
                    source_name: source_name.to_owned(),
                    object: label.to_owned(),
                    path: format!("spec.volumes[{i}].{kind}.items[{j}].path"),
                    reason: format!(
                        "{:?} must be a relative path inside the volume, without '..'",
                        it.path
                    ),
                });
            }
        }
    }
    Ok(())
}

fn check_secret(source_name: &str, label: &str, s: &Secret) -> Result<(), ManifestError> {
    let data = secret_data(s);
    let need: &[&str] = match s.type_.as_deref() {
        Some("kubernetes.io/tls") => &["tls.crt", "tls.key"],
        Some("kubernetes.io/dockerconfigjson") => &[".dockerconfigjson"],
        _ => &[],
    };
    for k in need {
        if !data.contains_key(*k) {
            return Err(ManifestError::Invalid {
                source_name: source_name.to_owned(),
                object: label.to_owned(),
                path: format!("data[{k:?}]"),
                reason: format!("is required for type {}", s.type_.as_deref().unwrap_or("")),
            });
        }
    }
    if s.type_.as_deref() == Some("kubernetes.io/tls") {
        if let Some(reason) = tls_pair_problem(&data["tls.crt"], &data["tls.key"]) {
            return Err(ManifestError::Invalid {
                source_name: source_name.to_owned(),
                object: label.to_owned(),
                path: if reason.starts_with("tls.crt") { "data[\"tls.crt\"]" } else { "data[\"tls.key\"]" }.into(),
                reason: format!("{reason}; give a PEM certificate chain in tls.crt and its PEM private key in tls.key"),
            });
        }
    }
    Ok(())
}

/// A Secret's bytes: `data` (decoded) with `stringData` merged over it.
pub fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in s.string_data.iter().flatten() {
        out.insert(k.clone(), v.as_bytes().to_vec());
    }
    out
}

/// A ConfigMap's bytes: `data` and `binaryData`.
pub fn config_map_data(c: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = c
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
        .collect();
    for (k, v) in c.binary_data.iter().flatten() {
        out.insert(k.clone(), v.0.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
# A pod with its configuration, as a user would give a cluster.
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
data:
  index.html: "<h1>hi</h1>"
---
apiVersion: v1
kind: Secret
metadata:
  name: web-secret
  namespace: prod
type: Opaque
data:
  password: aHVudGVyMg==
stringData:
  user: admin
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
  creationTimestamp: null
spec:
  containers:
  - name: server
    image: busybox
    command: ["httpd", "-f"]
    ports:
    - containerPort: 80
      hostPort: 8080
    resources:
      limits: {memory: 64Mi}
    volumeMounts:
    - name: config
      mountPath: /www
  volumes:
  - name: config
    configMap:
      name: web-config
---
"#;

    #[test]
    fn multi_document_files_parse_into_typed_objects() {
        let objs = parse("web.yaml", EXAMPLE).unwrap();
        let keys: Vec<String> = objs.iter().map(|o| o.key().to_string()).collect();
        assert_eq!(
            keys,
            [
                "ConfigMap default/web-config",
                "Secret prod/web-secret",
                "Pod default/web"
            ]
        );
        let Object::Secret(s) = &objs[1] else {
            panic!()
        };
        let d = secret_data(s);
        assert_eq!(d["password"], b"hunter2");
        assert_eq!(d["user"], b"admin");
        let Object::Pod(p) = &objs[2] else { panic!() };
        let c = &p.spec.as_ref().unwrap().containers[0];
        assert_eq!(c.image.as_deref(), Some("busybox"));
        let Object::ConfigMap(cm) = &objs[0] else {
            panic!()
        };
        assert_eq!(config_map_data(cm)["index.html"], b"<h1>hi</h1>");
    }

    #[test]
    fn yaml_1_1_octal_modes_are_read_as_kubectl_reads_them() {
        let y = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: b}]\n  volumes:\n  - name: s\n    secret: {secretName: x, defaultMode: 0400, items: [{key: k, path: k, mode: 0o600}]}\n  - name: d\n    configMap: {name: y, defaultMode: 420}\n";
        let Object::Pod(p) = parse("p.yaml", y).unwrap().remove(0) else {
            panic!()
        };
        let v = p.spec.unwrap().volumes.unwrap();
        let s = v[0].secret.as_ref().unwrap();
        assert_eq!(s.default_mode, Some(0o400));
        assert_eq!(s.items.as_ref().unwrap()[0].mode, Some(0o600));
        assert_eq!(v[1].config_map.as_ref().unwrap().default_mode, Some(420));
    }

    #[test]
    fn escaping_item_paths_and_duplicates_are_refused() {
        for bad in ["../x", "/etc/passwd", "a/../../b"] {
            let y = format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  containers: [{{name: c, image: b}}]\n  volumes:\n  - name: v\n    configMap:\n      name: cm\n      items: [{{key: k, path: '{bad}'}}]\n");
            let e = parse("p.yaml", &y).unwrap_err().to_string();
            assert!(
                e.contains("spec.volumes[0].configMap.items[0].path"),
                "{bad}: {e}"
            );
        }
        let dup = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n";
        let e = parse("d.yaml", dup).unwrap_err().to_string();
        assert!(
            e.contains("ConfigMap default/a") && e.contains("twice"),
            "{e}"
        );
    }

    #[test]
    fn unsupported_fields_are_refused_by_path() {
        // gRPC probes and tcpSocket lifecycle handlers are valid API (the latter fails when it
        // runs, as on a kubelet): accepted, and not reported as ignored.
        let y = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: b\n    lifecycle: {preStop: {tcpSocket: {port: 80}}}\n    livenessProbe: {grpc: {port: 9000, service: s}}\n";
        let o = parse("p.yaml", y).unwrap().remove(0);
        assert_eq!(ignored_fields(&o), Vec::<String>::new());
        let y = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: b}]\n  volumes: [{name: v, nfs: {server: s, path: /x}}]\n";
        let e = parse("p.yaml", y).unwrap_err().to_string();
        assert!(e.contains("spec.volumes[0]"), "{e}");
    }

    #[test]
    fn fields_kinglet_ignores_are_listed() {
        let y = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  nodeSelector: {disk: ssd}\n  securityContext: {fsGroup: 2000, runAsUser: 1, runAsNonRoot: true, sysctls: [{name: kernel.shm_rmid_forced, value: '1'}], seLinuxOptions: {level: s0}}\n  containers:\n  - name: c\n    image: b\n    stdin: true\n    resizePolicy: [{resourceName: cpu, restartPolicy: NotRequired}]\n    securityContext: {runAsNonRoot: true, procMount: Default}\n";
        let o = parse("p.yaml", y).unwrap().remove(0);
        assert_eq!(
            ignored_fields(&o),
            [
                "spec.nodeSelector",
                "spec.securityContext.seLinuxOptions",
                "spec.containers[0].resizePolicy",
                "spec.containers[0].securityContext.procMount"
            ]
        );
    }

    #[test]
    fn json_and_lists_are_accepted() {
        let j = r#"{"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"},"data":{"k":"v"}},
            {"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"b","namespace":"x"}}]}"#;
        let objs = parse("list.json", j).unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[1].key().namespace, "x");
    }

    #[test]
    fn unknown_fields_are_reported_with_their_path() {
        let y = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    imagee: busybox\n  restartPolicy: Always\n  nodeSelectorr: {}\n  hostNetworkk: true\n";
        let e = parse("p.yaml", y).unwrap_err().to_string();
        assert!(e.contains("spec.containers[0].imagee"), "{e}");
        assert!(e.contains("spec.hostNetworkk"), "{e}");
        assert!(e.contains("Pod \"p\""), "{e}");
    }

    #[test]
    fn bad_input_names_document_object_and_field() {
        let e = parse("x.yaml", "kind: Pod\n").unwrap_err().to_string();
        assert!(e.contains("document 1") && e.contains("apiVersion"), "{e}");
        let e = parse(
            "x.yaml",
            "apiVersion: v1\nkind: ReplicationController\nmetadata: {name: d}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("ReplicationController") && e.contains("not supported"),
            "{e}"
        );
        let e = parse("x.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("metadata.name"), "{e}");
        let e = parse(
            "x.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: 7\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("spec.containers"), "{e}");
        let e = parse("x.yaml", "a: [unclosed\n").unwrap_err().to_string();
        assert!(e.contains("not valid YAML"), "{e}");
        let e = parse(
            "x.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {k: '***not base64'}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("Secret \"s\"")
                && e.contains("field data.k: is not valid base64: character '*' at offset 0")
                && e.contains("stringData"),
            "{e}"
        );
        let e = parse(
            "x.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {ok: aGk=, key: 'abc def'}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("field data.key: is not valid base64: character ' ' at offset 3"),
            "{e}"
        );
        let e = parse(
            "x.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {k: aGk}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("data.k") && e.contains("padding"), "{e}");
        let e = parse(
            "x.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/tls\nstringData: {tls.crt: x}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("tls.key"), "{e}");
    }
}
