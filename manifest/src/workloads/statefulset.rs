//! apps/v1 StatefulSet validated as the API server validates it: replicas, selector and
//! template, podManagementPolicy, updateStrategy (RollingUpdate with partition and
//! maxUnavailable, or OnDelete), persistentVolumeClaimRetentionPolicy, ordinals and the
//! volumeClaimTemplates (each a claim spec, `crate::pvc`).

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    check_int_or_percent, check_selector, check_template, invalid, is_zero, non_negative,
    rollout_counts,
};
use crate::ManifestError;

fn one_of(
    source: &str,
    label: &str,
    path: &str,
    v: Option<&str>,
    allowed: &[&str],
) -> Result<(), ManifestError> {
    match v {
        Some(v) if !allowed.contains(&v) => Err(invalid(
            source,
            label,
            path,
            format!("Unsupported value {v:?}: supported values: {allowed:?}"),
        )),
        _ => Ok(()),
    }
}

pub(crate) fn check_stateful_set(
    source: &str,
    label: &str,
    s: &StatefulSet,
) -> Result<(), ManifestError> {
    let Some(spec) = &s.spec else {
        return Err(invalid(source, label, "spec", "is required"));
    };
    non_negative(source, label, "spec.replicas", spec.replicas)?;
    rollout_counts(
        source,
        label,
        spec.min_ready_seconds,
        spec.revision_history_limit,
    )?;
    if let Some(o) = &spec.ordinals {
        non_negative(source, label, "spec.ordinals.start", o.start)?;
    }
    one_of(
        source,
        label,
        "spec.podManagementPolicy",
        spec.pod_management_policy.as_deref(),
        &["OrderedReady", "Parallel"],
    )?;
    if let Some(p) = &spec.persistent_volume_claim_retention_policy {
        for (path, v) in [
            ("whenDeleted", &p.when_deleted),
            ("whenScaled", &p.when_scaled),
        ] {
            let path = format!("spec.persistentVolumeClaimRetentionPolicy.{path}");
            one_of(source, label, &path, v.as_deref(), &["Retain", "Delete"])?;
        }
    }
    check_selector(source, label, &spec.selector, &spec.template)?;
    check_template(source, label, &spec.template, &["Always"])?;
    check_update_strategy(source, label, spec.update_strategy.as_ref())?;
    check_claim_templates(source, label, spec.volume_claim_templates.as_deref())
}

fn check_update_strategy(
    source: &str,
    label: &str,
    u: Option<&k8s_openapi::api::apps::v1::StatefulSetUpdateStrategy>,
) -> Result<(), ManifestError> {
    if let Some(u) = u {
        let t = u.type_.as_deref().unwrap_or("RollingUpdate");
        one_of(
            source,
            label,
            "spec.updateStrategy.type",
            Some(t),
            &["RollingUpdate", "OnDelete"],
        )?;
        if let Some(ru) = &u.rolling_update {
            if t != "RollingUpdate" {
                return Err(invalid(
                    source,
                    label,
                    "spec.updateStrategy.rollingUpdate",
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
            non_negative(
                source,
                label,
                "spec.updateStrategy.rollingUpdate.partition",
                ru.partition,
            )?;
            let mu = "spec.updateStrategy.rollingUpdate.maxUnavailable";
            check_int_or_percent(source, label, mu, ru.max_unavailable.as_ref())?;
            if is_zero(ru.max_unavailable.as_ref()) {
                return Err(invalid(source, label, mu, "must be greater than 0"));
            }
            if let Some(IntOrString::String(p)) = &ru.max_unavailable {
                if p.trim_end_matches('%')
                    .parse::<u32>()
                    .is_ok_and(|n| n > 100)
                {
                    return Err(invalid(source, label, mu, "must not be greater than 100%"));
                }
            }
        }
    }
    Ok(())
}

fn check_claim_templates(
    source: &str,
    label: &str,
    templates: Option<&[k8s_openapi::api::core::v1::PersistentVolumeClaim]>,
) -> Result<(), ManifestError> {
    let mut names = std::collections::BTreeSet::new();
    for (i, t) in templates.unwrap_or_default().iter().enumerate() {
        let prefix = format!("spec.volumeClaimTemplates[{i}]");
        let name = t.metadata.name.clone().unwrap_or_default();
        if name.is_empty() {
            return Err(invalid(
                source,
                label,
                &format!("{prefix}.metadata.name"),
                "is required",
            ));
        }
        if !names.insert(name.clone()) {
            return Err(invalid(
                source,
                label,
                &format!("{prefix}.metadata.name"),
                format!("Duplicate value {name:?}"),
            ));
        }
        let Some(cs) = &t.spec else {
            return Err(invalid(
                source,
                label,
                &format!("{prefix}.spec"),
                "is required",
            ));
        };
        crate::pvc::check_claim_spec(source, label, &format!("{prefix}.spec"), cs)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    const STS: &str = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: web}\nspec:\n  serviceName: nginx\n  replicas: 3\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: c, image: busybox, volumeMounts: [{name: www, mountPath: /data}]}]\n  volumeClaimTemplates:\n  - metadata: {name: www}\n    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n";

    fn err(y: &str) -> String {
        crate::parse("s.yaml", y).unwrap_err().to_string()
    }

    #[test]
    fn stateful_sets_are_validated() {
        let o = crate::parse("s.yaml", STS).unwrap();
        assert_eq!(o[0].kind(), "StatefulSet");
        let e = err(&STS.replace("{app: web}}\n  template", "{app: db}}\n  template"));
        assert!(e.contains("does not match"), "{e}");
        let e = err(&STS.replace("replicas: 3", "replicas: 3\n  podManagementPolicy: Random"));
        assert!(e.contains("spec.podManagementPolicy"), "{e}");
        let e = err(&STS.replace(
            "replicas: 3",
            "replicas: 3\n  updateStrategy: {type: OnDelete, rollingUpdate: {partition: 1}}",
        ));
        assert!(e.contains("spec.updateStrategy.rollingUpdate"), "{e}");
        let e = err(&STS.replace(
            "replicas: 3",
            "replicas: 3\n  updateStrategy: {rollingUpdate: {partition: -1}}",
        ));
        assert!(e.contains("partition"), "{e}");
        let e = err(&STS.replace(
            "replicas: 3",
            "replicas: 3\n  updateStrategy: {rollingUpdate: {maxUnavailable: 0}}",
        ));
        assert!(e.contains("maxUnavailable"), "{e}");
        let e = err(&STS.replace(
            "replicas: 3",
            "replicas: 3\n  persistentVolumeClaimRetentionPolicy: {whenDeleted: Keep}",
        ));
        assert!(e.contains("whenDeleted"), "{e}");
        let e = err(&STS.replace("[ReadWriteOnce]", "[]"));
        assert!(
            e.contains("spec.volumeClaimTemplates[0].spec.accessModes"),
            "{e}"
        );
        let e = err(&STS
            .replace("restartPolicy", "x")
            .replace("containers:", "restartPolicy: Never\n      containers:"));
        assert!(e.contains("restartPolicy"), "{e}");
    }
}
