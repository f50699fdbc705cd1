//! v1 PersistentVolumeClaim validated as the API server validates a claim's spec (access
//! modes, `resources.requests.storage`), refusing what Kinglet's local provisioner cannot give
//! (block volumes, data sources, label selectors over pre-made volumes).

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimSpec};

use crate::ManifestError;

const ACCESS_MODES: &[&str] = &[
    "ReadWriteOnce",
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOncePod",
];

fn invalid(source: &str, label: &str, path: String, reason: impl Into<String>) -> ManifestError {
    ManifestError::Invalid {
        source_name: source.to_owned(),
        object: label.to_owned(),
        path,
        reason: reason.into(),
    }
}

/// Bytes of a resource quantity (`1Gi`, `500M`, `1e9`, `1.5Gi`); None when it is not one.
pub fn storage_bytes(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    Some(n * mult)
}

/// A claim's spec; `prefix` is where it sits (`spec` in a claim, `spec.volumeClaimTemplates[i].spec`
/// in a StatefulSet).
pub(crate) fn check_claim_spec(
    source: &str,
    label: &str,
    prefix: &str,
    spec: &PersistentVolumeClaimSpec,
) -> Result<(), ManifestError> {
    let modes = spec.access_modes.clone().unwrap_or_default();
    if modes.is_empty() {
        return Err(invalid(
            source,
            label,
            format!("{prefix}.accessModes"),
            "at least 1 access mode is required (e.g. [ReadWriteOnce])",
        ));
    }
    for (i, m) in modes.iter().enumerate() {
        if !ACCESS_MODES.contains(&m.as_str()) {
            return Err(invalid(
                source,
                label,
                format!("{prefix}.accessModes[{i}]"),
                format!("Unsupported value {m:?}: supported values: {ACCESS_MODES:?}"),
            ));
        }
    }
    if modes.len() > 1 && modes.iter().any(|m| m == "ReadWriteOncePod") {
        return Err(invalid(
            source,
            label,
            format!("{prefix}.accessModes"),
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
    let path = format!("{prefix}.resources.requests[storage]");
    let storage = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"));
    match storage.map(|q| (q, storage_bytes(&q.0))) {
        None => return Err(invalid(source, label, path, "Required value (e.g. 1Gi)")),
        Some((q, None)) => {
            return Err(invalid(
                source,
                label,
                path,
                format!("{:?}: not a quantity (e.g. 1Gi)", q.0),
            ))
        }
        Some((q, Some(b))) if b <= 0.0 => {
            return Err(invalid(
                source,
                label,
                path,
                format!("{:?}: must be greater than zero", q.0),
            ))
        }
        Some(_) => {}
    }
    if spec.volume_mode.as_deref().unwrap_or("Filesystem") != "Filesystem" {
        return Err(invalid(
            source,
            label,
            format!("{prefix}.volumeMode"),
            "only Filesystem volumes are supported by kinglet's local provisioner",
        ));
    }
    let unsupported = [
        ("dataSource", spec.data_source.is_some()),
        ("dataSourceRef", spec.data_source_ref.is_some()),
        ("selector", spec.selector.is_some()),
    ];
    for (field, set) in unsupported {
        if set {
            return Err(invalid(
                source,
                label,
                format!("{prefix}.{field}"),
                "is not supported by kinglet's local provisioner (it binds a new directory to each claim): remove it",
            ));
        }
    }
    Ok(())
}

pub(crate) fn check_pvc(
    source: &str,
    label: &str,
    c: &PersistentVolumeClaim,
) -> Result<(), ManifestError> {
    let Some(spec) = &c.spec else {
        return Err(invalid(source, label, "spec".into(), "is required"));
    };
    check_claim_spec(source, label, "spec", spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(storage_bytes("1Gi"), Some(1073741824.0));
        assert_eq!(storage_bytes("500M"), Some(5e8));
        assert_eq!(storage_bytes("1e3"), Some(1000.0));
        assert_eq!(storage_bytes("12"), Some(12.0));
        assert_eq!(storage_bytes("1GB"), None);
        assert_eq!(storage_bytes("lots"), None);
    }

    fn parse(y: &str) -> Result<Vec<crate::Object>, ManifestError> {
        crate::parse("c.yaml", y)
    }

    #[test]
    fn claims_are_validated() {
        let ok = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n";
        let o = parse(ok).unwrap();
        assert_eq!(o[0].kind(), "PersistentVolumeClaim");
        let e = parse(&ok.replace("[ReadWriteOnce]", "[]"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("spec.accessModes") && e.contains("at least 1"),
            "{e}"
        );
        let e = parse(&ok.replace("[ReadWriteOnce]", "[ReadWriteSome]"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("spec.accessModes[0]"), "{e}");
        let e = parse(&ok.replace("storage: 1Gi", "storage: 0"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("resources.requests[storage]"), "{e}");
        let e = parse(&ok.replace("  resources: {requests: {storage: 1Gi}}\n", ""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("Required value"), "{e}");
        let e = parse(&format!("{ok}  volumeMode: Block\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("spec.volumeMode"), "{e}");
    }
}
