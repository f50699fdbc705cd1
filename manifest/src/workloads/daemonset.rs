//! apps/v1 DaemonSet validated as the API server validates it: selector and template, the
//! update strategy (RollingUpdate with maxUnavailable/maxSurge, or OnDelete), and the
//! template's tolerations and required node affinity (the fields the controller acts on).

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{NodeSelectorRequirement, PodSpec};

use super::{
    check_selector, check_template, check_update_strategy, invalid, rollout_counts, UpdateStrategy,
};
use crate::ManifestError;

pub(crate) fn check_daemon_set(
    source: &str,
    label: &str,
    d: &DaemonSet,
) -> Result<(), ManifestError> {
    let Some(spec) = &d.spec else {
        return Err(invalid(source, label, "spec", "is required"));
    };
    rollout_counts(
        source,
        label,
        spec.min_ready_seconds,
        spec.revision_history_limit,
    )?;
    check_selector(source, label, &spec.selector, &spec.template)?;
    check_template(source, label, &spec.template, &["Always"])?;
    if let Some(s) = &spec.update_strategy {
        let ru = s.rolling_update.as_ref();
        let strategy = UpdateStrategy {
            field: "spec.updateStrategy",
            type_: s.type_.as_deref(),
            other: "OnDelete",
            rolling: ru.map(|r| (r.max_surge.as_ref(), r.max_unavailable.as_ref())),
            // Defaults: maxUnavailable 1, maxSurge 0.
            surge_default_zero: true,
        };
        check_update_strategy(source, label, &strategy)?;
    }
    if let Some(ps) = &spec.template.spec {
        check_scheduling(source, label, ps)?;
    }
    Ok(())
}

/// Tolerations and required node affinity of a pod template.
fn check_scheduling(source: &str, label: &str, ps: &PodSpec) -> Result<(), ManifestError> {
    for (i, t) in ps.tolerations.iter().flatten().enumerate() {
        let path = format!("spec.template.spec.tolerations[{i}]");
        let op = t.operator.as_deref().unwrap_or("Equal");
        match op {
            "Equal" if t.key.as_deref().unwrap_or("").is_empty() => {
                return Err(invalid(
                    source,
                    label,
                    &format!("{path}.operator"),
                    "must be Exists when `key` is empty (which means \"match all values and all keys\")",
                ))
            }
            "Equal" => {}
            "Exists" if !t.value.as_deref().unwrap_or("").is_empty() => {
                return Err(invalid(
                    source,
                    label,
                    &format!("{path}.operator"),
                    "value must be empty when `operator` is 'Exists'",
                ))
            }
            "Exists" => {}
            other => {
                return Err(invalid(
                    source,
                    label,
                    &format!("{path}.operator"),
                    format!("Unsupported value {other:?}: supported values: \"Equal\", \"Exists\""),
                ))
            }
        }
        let effect = t.effect.as_deref().unwrap_or("");
        if !["", "NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
            return Err(invalid(
                source,
                label,
                &format!("{path}.effect"),
                format!("Unsupported value {effect:?}: supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\""),
            ));
        }
    }
    let terms = ps
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|r| r.node_selector_terms.clone());
    for (i, term) in terms.iter().flatten().enumerate() {
        let base = format!("spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[{i}]");
        for (j, r) in term.match_expressions.iter().flatten().enumerate() {
            check_requirement(source, label, &format!("{base}.matchExpressions[{j}]"), r)?;
        }
        for (j, r) in term.match_fields.iter().flatten().enumerate() {
            let path = format!("{base}.matchFields[{j}]");
            if r.key != "metadata.name" {
                return Err(invalid(
                    source,
                    label,
                    &format!("{path}.key"),
                    format!(
                        "{:?}: not a valid field selector key (only metadata.name)",
                        r.key
                    ),
                ));
            }
            check_requirement(source, label, &path, r)?;
        }
    }
    Ok(())
}

fn check_requirement(
    source: &str,
    label: &str,
    path: &str,
    r: &NodeSelectorRequirement,
) -> Result<(), ManifestError> {
    let n = r.values.as_ref().map_or(0, Vec::len);
    let bad = match r.operator.as_str() {
        "In" | "NotIn" if n == 0 => Some("must be specified when `operator` is 'In' or 'NotIn'"),
        "Exists" | "DoesNotExist" if n > 0 => {
            Some("may not be specified when `operator` is 'Exists' or 'DoesNotExist'")
        }
        "Gt" | "Lt" if n != 1 => Some("must be specified single value when `operator` is 'Lt' or 'Gt'"),
        "Gt" | "Lt" => {
            let v = &r.values.as_ref().expect("one value")[0];
            if v.parse::<i64>().is_err() {
                return Err(invalid(
                    source,
                    label,
                    &format!("{path}.values[0]"),
                    format!("{v:?}: must be an integer for 'Gt' or 'Lt'"),
                ));
            }
            None
        }
        "In" | "NotIn" | "Exists" | "DoesNotExist" => None,
        other => {
            return Err(invalid(
                source,
                label,
                &format!("{path}.operator"),
                format!("Unsupported value {other:?}: supported values: \"DoesNotExist\", \"Exists\", \"Gt\", \"In\", \"Lt\", \"NotIn\""),
            ))
        }
    };
    match bad {
        Some(reason) => Err(invalid(source, label, &format!("{path}.values"), reason)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use crate::{parse, Object};

    fn ds(extra_spec: &str, pod_extra: &str) -> String {
        format!(
            r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: agent}}
spec:
  selector: {{matchLabels: {{app: agent}}}}
{extra_spec}
  template:
    metadata: {{labels: {{app: agent}}}}
    spec:
      containers: [{{name: c, image: busybox}}]
{pod_extra}
"#
        )
    }

    fn err(yaml: &str) -> String {
        parse("f", yaml).unwrap_err().to_string()
    }

    #[test]
    fn a_daemon_set_parses() {
        let o = parse("f", &ds("", "")).unwrap().remove(0);
        assert!(matches!(o, Object::DaemonSet(_)));
        assert_eq!(o.api_version(), "apps/v1");
    }

    #[test]
    fn strategy_is_validated() {
        let e = err(&ds(
            "  updateStrategy: {rollingUpdate: {maxUnavailable: 0}}",
            "",
        ));
        assert!(
            e.contains("spec.updateStrategy.rollingUpdate.maxUnavailable"),
            "{e}"
        );
        assert!(e.contains("may not be 0 when maxSurge is 0"), "{e}");
        parse(
            "f",
            &ds(
                "  updateStrategy: {rollingUpdate: {maxUnavailable: 0, maxSurge: 1}}",
                "",
            ),
        )
        .unwrap();
        let e = err(&ds(
            "  updateStrategy: {type: OnDelete, rollingUpdate: {maxUnavailable: 1}}",
            "",
        ));
        assert!(e.contains("spec.updateStrategy.rollingUpdate"), "{e}");
        let e = err(&ds("  updateStrategy: {type: Recreate}", ""));
        assert!(
            e.contains("spec.updateStrategy.type") && e.contains("OnDelete"),
            "{e}"
        );
        let e = err(&ds(
            "  updateStrategy: {rollingUpdate: {maxSurge: 150%}}",
            "",
        ));
        assert!(e.contains("maxSurge"), "{e}");
    }

    #[test]
    fn selector_must_match_and_restart_policy_is_always() {
        let e = err(&ds("", "").replace(
            "selector: {matchLabels: {app: agent}}",
            "selector: {matchLabels: {app: other}}",
        ));
        assert!(e.contains("spec.template.metadata.labels"), "{e}");
        let e = err(&ds("", "      restartPolicy: Never"));
        assert!(e.contains("spec.template.spec.restartPolicy"), "{e}");
    }

    #[test]
    fn tolerations_and_affinity_are_validated() {
        let e = err(&ds(
            "",
            "      tolerations: [{key: a, operator: Exists, value: x}]",
        ));
        assert!(e.contains("tolerations[0].operator"), "{e}");
        let e = err(&ds("", "      tolerations: [{value: x}]"));
        assert!(e.contains("must be Exists when `key` is empty"), "{e}");
        let e = err(&ds("", "      tolerations: [{key: a, effect: Sometimes}]"));
        assert!(e.contains("tolerations[0].effect"), "{e}");
        let aff = |expr: &str| {
            format!("      affinity: {{nodeAffinity: {{requiredDuringSchedulingIgnoredDuringExecution: {{nodeSelectorTerms: [{{matchExpressions: [{expr}]}}]}}}}}}")
        };
        let e = err(&ds("", &aff("{key: a, operator: In}")));
        assert!(e.contains("matchExpressions[0].values"), "{e}");
        let e = err(&ds("", &aff("{key: a, operator: Gt, values: [x]}")));
        assert!(e.contains("must be an integer"), "{e}");
        let e = err(&ds("", &aff("{key: a, operator: Exists, values: [x]}")));
        assert!(e.contains("may not be specified"), "{e}");
        let e = err(&ds("", &aff("{key: a, operator: Near}")));
        assert!(e.contains("Unsupported value \"Near\""), "{e}");
        parse(
            "f",
            &ds("", &aff("{key: cpus, operator: Lt, values: ['64']}")),
        )
        .unwrap();
    }
}
