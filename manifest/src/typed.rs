//! Decoding a manifest's JSON value into its typed object strictly: YAML 1.1 octal file
//! modes read as numbers, a type error names its path, and a field the Kubernetes schema
//! lacks (a typo) is found by serializing the typed object back and comparing; valid fields
//! Kinglet does not act on are listed by [`ignored_fields`] to be reported.

use serde::Deserialize;
use serde_json::Value;

use crate::{ManifestError, Object};

/// File modes as Kubernetes users write them (`defaultMode: 0400`) are YAML 1.1 octal
/// integers; a YAML 1.2 parser reads them as strings. Convert them in the mode fields only.
pub(crate) fn octal_modes(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                if k == "defaultMode" || k == "mode" {
                    let octal = val.as_str().and_then(|s| {
                        let digits = s.strip_prefix("0o").or_else(|| s.strip_prefix('0'))?;
                        i64::from_str_radix(digits, 8).ok()
                    });
                    if let Some(n) = octal {
                        *val = Value::from(n);
                    }
                } else {
                    octal_modes(val);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(octal_modes),
        _ => {}
    }
}

/// Deserialize with the failing path in the error, then refuse fields the schema lacks.
pub(crate) fn typed<T>(source_name: &str, label: &str, value: &Value) -> Result<T, ManifestError>
where
    T: for<'de> Deserialize<'de> + serde::Serialize,
{
    let t: T =
        serde_path_to_error::deserialize(value.clone()).map_err(|e| ManifestError::Invalid {
            source_name: source_name.to_owned(),
            object: label.to_owned(),
            path: e.path().to_string(),
            reason: e.inner().to_string(),
        })?;
    let back = serde_json::to_value(&t).map_err(|e| ManifestError::Invalid {
        source_name: source_name.to_owned(),
        object: label.to_owned(),
        path: ".".into(),
        reason: e.to_string(),
    })?;
    let mut unknown = Vec::new();
    missing_paths(value, &back, String::new(), &mut unknown);
    // apiVersion and kind are consumed by the dispatch, not by the type's fields.
    unknown.retain(|p| p != "apiVersion" && p != "kind");
    if unknown.is_empty() {
        Ok(t)
    } else {
        Err(ManifestError::UnknownFields {
            source_name: source_name.to_owned(),
            object: label.to_owned(),
            paths: unknown,
        })
    }
}

/// Paths of `orig` (non-null) that `back` does not have.
fn missing_paths(orig: &Value, back: &Value, path: String, out: &mut Vec<String>) {
    match (orig, back) {
        (Value::Object(o), Value::Object(b)) => {
            for (k, v) in o {
                if v.is_null() {
                    continue;
                }
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match b.get(k) {
                    Some(bv) => missing_paths(v, bv, p, out),
                    None if is_empty(v) => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(o), Value::Array(b)) => {
            for (i, (ov, bv)) in o.iter().zip(b).enumerate() {
                missing_paths(ov, bv, format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// `{}` and `[]` that a typed round trip may drop.
fn is_empty(v: &Value) -> bool {
    matches!(v, Value::Object(m) if m.is_empty()) || matches!(v, Value::Array(a) if a.is_empty())
}

/// Pod fields Kinglet acts on; any other field that is set is reported by [`ignored_fields`].
const POD_SPEC_FIELDS: &[&str] = &[
    "containers",
    "initContainers",
    "volumes",
    "restartPolicy",
    "terminationGracePeriodSeconds",
    "hostNetwork",
    "hostPID",
    "hostIPC",
    "hostUsers",
    "shareProcessNamespace",
    "hostname",
    "subdomain",
    "dnsPolicy",
    "dnsConfig",
    // Read by the DNS setup (`dns`); listed so it is not reported as ignored.
    "dnsPolicy",
    "imagePullSecrets",
    "securityContext",
    "hostAliases",
    "subdomain",
    "enableServiceLinks",
    "serviceAccountName",
    "serviceAccount",
    "automountServiceAccountToken",
];
const CONTAINER_FIELDS: &[&str] = &[
    "name",
    "image",
    "command",
    "args",
    "workingDir",
    "ports",
    "env",
    "envFrom",
    "resources",
    "volumeMounts",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
    "securityContext",
    "imagePullPolicy",
    "restartPolicy",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "stdin",
    "stdinOnce",
    "tty",
];
const POD_SECURITY_FIELDS: &[&str] = &[
    "runAsUser",
    "runAsGroup",
    "runAsNonRoot",
    "supplementalGroups",
    "supplementalGroupsPolicy",
    "fsGroup",
    "fsGroupChangePolicy",
    "sysctls",
    "seccompProfile",
];
const CONTAINER_SECURITY_FIELDS: &[&str] = &[
    "privileged",
    "readOnlyRootFilesystem",
    "runAsUser",
    "runAsGroup",
    "runAsNonRoot",
    "allowPrivilegeEscalation",
    "capabilities",
    "seccompProfile",
];

fn set_keys(v: &Value) -> Vec<String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Valid fields of an object that Kinglet does not act on (so they are reported to the user,
/// as warnings, never silently dropped): paths like `spec.affinity`.
pub fn ignored_fields(o: &Object) -> Vec<String> {
    let Object::Pod(p) = o else { return Vec::new() };
    let Ok(spec) = serde_json::to_value(&p.spec) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for k in set_keys(&spec) {
        if !POD_SPEC_FIELDS.contains(&k.as_str()) {
            out.push(format!("spec.{k}"));
        }
    }
    for k in set_keys(&spec["securityContext"]) {
        if !POD_SECURITY_FIELDS.contains(&k.as_str()) {
            out.push(format!("spec.securityContext.{k}"));
        }
    }
    for list in ["initContainers", "containers"] {
        for (i, c) in spec[list].as_array().into_iter().flatten().enumerate() {
            for k in set_keys(c) {
                if !CONTAINER_FIELDS.contains(&k.as_str()) {
                    out.push(format!("spec.{list}[{i}].{k}"));
                }
            }
            for k in set_keys(&c["securityContext"]) {
                if !CONTAINER_SECURITY_FIELDS.contains(&k.as_str()) {
                    out.push(format!("spec.{list}[{i}].securityContext.{k}"));
                }
            }
        }
    }
    out
}
