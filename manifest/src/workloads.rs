//! Workload objects (apps/v1 Deployment and ReplicaSet, batch/v1 Job) validated as the API
//! server validates them, and label selectors: matching (`matchLabels`, `matchExpressions`)
//! and the `-l` string form (`app=web,tier!=db,env in (a,b),!legacy`).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::ManifestError;

fn invalid(source: &str, label: &str, path: &str, reason: impl Into<String>) -> ManifestError {
    ManifestError::Invalid {
        source_name: source.to_owned(),
        object: label.to_owned(),
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// `spec.minReadySeconds` and `spec.revisionHistoryLimit` of a Deployment, DaemonSet or
/// StatefulSet: not negative.
fn rollout_counts(
    source: &str,
    label: &str,
    min_ready_seconds: Option<i32>,
    revision_history_limit: Option<i32>,
) -> Result<(), ManifestError> {
    non_negative(source, label, "spec.minReadySeconds", min_ready_seconds)?;
    non_negative(
        source,
        label,
        "spec.revisionHistoryLimit",
        revision_history_limit,
    )
}

fn non_negative(
    source: &str,
    label: &str,
    path: &str,
    v: Option<i32>,
) -> Result<(), ManifestError> {
    match v {
        Some(n) if n < 0 => Err(invalid(
            source,
            label,
            path,
            format!("{n}: must be greater than or equal to 0"),
        )),
        _ => Ok(()),
    }
}

/// The pod template: its pod fields checked as a Pod's, its restartPolicy among `allowed`.
fn check_template(
    source: &str,
    label: &str,
    t: &PodTemplateSpec,
    allowed: &[&str],
) -> Result<(), ManifestError> {
    let Some(spec) = &t.spec else {
        return Err(invalid(source, label, "spec.template.spec", "is required"));
    };
    if spec.containers.is_empty() {
        return Err(invalid(
            source,
            label,
            "spec.template.spec.containers",
            "is required (at least one container)",
        ));
    }
    let policy = spec.restart_policy.as_deref().unwrap_or(allowed[0]);
    if !allowed.contains(&policy) {
        return Err(invalid(
            source,
            label,
            "spec.template.spec.restartPolicy",
            format!("Unsupported value {policy:?}: supported values: {allowed:?}"),
        ));
    }
    let pod = Pod {
        metadata: t.metadata.clone().unwrap_or_default(),
        spec: Some(spec.clone()),
        status: None,
    };
    crate::check_pod(source, label, &pod).map_err(|e| match e {
        ManifestError::Invalid {
            source_name,
            object,
            path,
            reason,
        } => ManifestError::Invalid {
            source_name,
            object,
            path: format!("spec.template.{path}"),
            reason,
        },
        e => e,
    })
}

/// A selector that must be given, be non-empty and select the template's labels.
fn check_selector(
    source: &str,
    label: &str,
    sel: &LabelSelector,
    t: &PodTemplateSpec,
) -> Result<(), ManifestError> {
    let empty = sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && sel.match_expressions.as_ref().is_none_or(|m| m.is_empty());
    if empty {
        return Err(invalid(
            source,
            label,
            "spec.selector",
            "empty selector is invalid for this kind (give matchLabels)",
        ));
    }
    let labels = t
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    match selector_matches(sel, &labels) {
        Ok(true) => Ok(()),
        Ok(false) => Err(invalid(
            source,
            label,
            "spec.template.metadata.labels",
            format!("{labels:?}: `selector` does not match template `labels`"),
        )),
        Err(reason) => Err(invalid(source, label, "spec.selector", reason)),
    }
}

fn check_int_or_percent(
    source: &str,
    label: &str,
    path: &str,
    v: Option<&IntOrString>,
) -> Result<(), ManifestError> {
    match v {
        Some(IntOrString::Int(n)) if *n < 0 => Err(invalid(
            source,
            label,
            path,
            format!("{n}: must be greater than or equal to 0"),
        )),
        Some(IntOrString::String(s)) => {
            let ok = s
                .strip_suffix('%')
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| n <= 100);
            if ok {
                Ok(())
            } else {
                Err(invalid(
                    source,
                    label,
                    path,
                    format!("{s:?}: must be an integer or a percentage between 0% and 100%"),
                ))
            }
        }
        _ => Ok(()),
    }
}

fn is_zero(v: Option<&IntOrString>) -> bool {
    match v {
        Some(IntOrString::Int(n)) => *n == 0,
        Some(IntOrString::String(s)) => s.trim_end_matches('%') == "0",
        None => false,
    }
}

/// A Deployment's `strategy` or a DaemonSet's `updateStrategy` as the API server validates it.
pub(crate) struct UpdateStrategy<'a> {
    /// `spec.strategy` or `spec.updateStrategy`.
    pub field: &'a str,
    pub type_: Option<&'a str>,
    /// The other type: Recreate or OnDelete.
    pub other: &'a str,
    /// rollingUpdate's (maxSurge, maxUnavailable), when given.
    pub rolling: Option<(Option<&'a IntOrString>, Option<&'a IntOrString>)>,
    /// maxSurge defaults to 0 (DaemonSet) rather than 25% (Deployment).
    pub surge_default_zero: bool,
}

/// RollingUpdate with maxSurge/maxUnavailable integers or percentages, not both 0; or the
/// other type without rollingUpdate.
pub(crate) fn check_update_strategy(
    source: &str,
    label: &str,
    s: &UpdateStrategy,
) -> Result<(), ManifestError> {
    let last = s.field.rsplit('.').next().unwrap_or(s.field);
    match s.type_.unwrap_or("RollingUpdate") {
        "RollingUpdate" => {
            let (surge, unavailable) = s.rolling.unwrap_or_default();
            let surge_path = format!("{}.rollingUpdate.maxSurge", s.field);
            let unavail_path = format!("{}.rollingUpdate.maxUnavailable", s.field);
            check_int_or_percent(source, label, &surge_path, surge)?;
            check_int_or_percent(source, label, &unavail_path, unavailable)?;
            let surge_zero = if surge.is_none() {
                s.surge_default_zero
            } else {
                is_zero(surge)
            };
            if surge_zero && is_zero(unavailable) {
                return Err(invalid(
                    source,
                    label,
                    &unavail_path,
                    "may not be 0 when maxSurge is 0",
                ));
            }
            Ok(())
        }
        t if t == s.other && s.rolling.is_some() => Err(invalid(
            source,
            label,
            &format!("{}.rollingUpdate", s.field),
            format!("may not be specified when {last} `type` is '{}'", s.other),
        )),
        t if t == s.other => Ok(()),
        other => Err(invalid(
            source,
            label,
            &format!("{}.type", s.field),
            format!(
                "Unsupported value {other:?}: supported values: \"{}\", \"RollingUpdate\"",
                s.other
            ),
        )),
    }
}

pub(crate) fn check_deployment(
    source: &str,
    label: &str,
    d: &Deployment,
) -> Result<(), ManifestError> {
    let Some(spec) = &d.spec else {
        return Err(invalid(source, label, "spec", "is required"));
    };
    non_negative(source, label, "spec.replicas", spec.replicas)?;
    rollout_counts(
        source,
        label,
        spec.min_ready_seconds,
        spec.revision_history_limit,
    )?;
    if let Some(p) = spec.progress_deadline_seconds {
        if p <= spec.min_ready_seconds.unwrap_or(0) {
            return Err(invalid(
                source,
                label,
                "spec.progressDeadlineSeconds",
                format!("{p}: must be greater than minReadySeconds"),
            ));
        }
    }
    check_selector(source, label, &spec.selector, &spec.template)?;
    check_template(source, label, &spec.template, &["Always"])?;
    if let Some(s) = &spec.strategy {
        let ru = s.rolling_update.as_ref();
        let strategy = UpdateStrategy {
            field: "spec.strategy",
            type_: s.type_.as_deref(),
            other: "Recreate",
            rolling: ru.map(|r| (r.max_surge.as_ref(), r.max_unavailable.as_ref())),
            surge_default_zero: false,
        };
        check_update_strategy(source, label, &strategy)?;
    }
    Ok(())
}

pub(crate) fn check_replica_set(
    source: &str,
    label: &str,
    r: &ReplicaSet,
) -> Result<(), ManifestError> {
    let Some(spec) = &r.spec else {
        return Err(invalid(source, label, "spec", "is required"));
    };
    non_negative(source, label, "spec.replicas", spec.replicas)?;
    non_negative(
        source,
        label,
        "spec.minReadySeconds",
        spec.min_ready_seconds,
    )?;
    let Some(t) = &spec.template else {
        return Err(invalid(source, label, "spec.template", "is required"));
    };
    check_selector(source, label, &spec.selector, t)?;
    check_template(source, label, t, &["Always"])
}

/// Also fills in what the API server defaults and the Job controller relies on.
/// The API server's rules for podFailurePolicy, backoffLimitPerIndex and successPolicy.
fn check_job_policies(
    source: &str,
    label: &str,
    spec: &k8s_openapi::api::batch::v1::JobSpec,
) -> Result<(), ManifestError> {
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let policy = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref());
    if let Some(pfp) = &spec.pod_failure_policy {
        if policy != Some("Never") {
            return Err(invalid(
                source,
                label,
                "spec.template.spec.restartPolicy",
                format!("Invalid value: {:?}: only \"Never\" is supported when podFailurePolicy is specified", policy.unwrap_or_default()),
            ));
        }
        for (i, r) in pfp.rules.iter().enumerate() {
            let ok = match r.action.as_str() {
                "FailJob" | "Ignore" | "Count" => true,
                "FailIndex" => spec.backoff_limit_per_index.is_some(),
                _ => false,
            };
            if !ok {
                return Err(invalid(
                    source,
                    label,
                    &format!("spec.podFailurePolicy.rules[{i}].action"),
                    format!("Unsupported value: {:?}: supported values: \"Count\", \"FailIndex\" (with backoffLimitPerIndex), \"FailJob\", \"Ignore\"", r.action),
                ));
            }
        }
    }
    if spec.backoff_limit_per_index.is_some() && !indexed {
        return Err(invalid(
            source,
            label,
            "spec.backoffLimitPerIndex",
            "Forbidden: requires indexed completion mode",
        ));
    }
    if spec.success_policy.is_some() && !indexed {
        return Err(invalid(
            source,
            label,
            "spec.successPolicy",
            "Invalid value: requires indexed completion mode",
        ));
    }
    Ok(())
}

/// The API server's defaults of a JobSpec (`describe job` and `-o yaml` show them, as on a
/// cluster): one pod at a time and one completion when neither is given, backoffLimit 6
/// (unlimited with backoffLimitPerIndex), NonIndexed, not suspended.
fn default_job(spec: &mut k8s_openapi::api::batch::v1::JobSpec) {
    if spec.completions.is_none() && spec.parallelism.is_none() {
        spec.completions = Some(1);
    }
    spec.parallelism.get_or_insert(1);
    let per_index = spec.backoff_limit_per_index.is_some();
    spec.backoff_limit
        .get_or_insert(if per_index { i32::MAX } else { 6 });
    spec.completion_mode
        .get_or_insert_with(|| "NonIndexed".into());
    spec.suspend.get_or_insert(false);
}

pub(crate) fn check_job(source: &str, label: &str, j: &mut Job) -> Result<(), ManifestError> {
    let Some(spec) = &mut j.spec else {
        return Err(invalid(source, label, "spec", "is required"));
    };
    non_negative(source, label, "spec.parallelism", spec.parallelism)?;
    non_negative(source, label, "spec.completions", spec.completions)?;
    non_negative(source, label, "spec.backoffLimit", spec.backoff_limit)?;
    if let Some(n) = spec.active_deadline_seconds {
        if n <= 0 {
            return Err(invalid(
                source,
                label,
                "spec.activeDeadlineSeconds",
                format!("{n}: must be greater than 0"),
            ));
        }
    }
    non_negative(
        source,
        label,
        "spec.ttlSecondsAfterFinished",
        spec.ttl_seconds_after_finished,
    )?;
    match spec.completion_mode.as_deref().unwrap_or("NonIndexed") {
        "NonIndexed" => {}
        "Indexed" if spec.completions.is_none() => {
            return Err(invalid(
                source,
                label,
                "spec.completions",
                "is required when completionMode is Indexed",
            ))
        }
        "Indexed" => {}
        other => {
            return Err(invalid(
                source,
                label,
                "spec.completionMode",
                format!(
                    "Unsupported value {other:?}: supported values: \"NonIndexed\", \"Indexed\""
                ),
            ))
        }
    }
    if spec
        .template
        .spec
        .as_ref()
        .is_some_and(|s| s.restart_policy.is_none())
    {
        return Err(invalid(
            source,
            label,
            "spec.template.spec.restartPolicy",
            "is required: \"Never\" or \"OnFailure\"",
        ));
    }
    check_template(source, label, &spec.template, &["Never", "OnFailure"])?;
    check_job_policies(source, label, spec)?;
    default_job(spec);
    if spec.manual_selector == Some(true) {
        let sel = spec.selector.clone().unwrap_or_default();
        return check_selector(source, label, &sel, &spec.template);
    }
    if spec.selector.is_some() {
        return Err(invalid(
            source,
            label,
            "spec.selector",
            "is generated by the Job controller; set spec.manualSelector: true to give one",
        ));
    }
    Ok(())
}

fn requirement_matches(
    r: &LabelSelectorRequirement,
    labels: &BTreeMap<String, String>,
) -> Result<bool, String> {
    let values = r.values.clone().unwrap_or_default();
    let v = labels.get(&r.key);
    match r.operator.as_str() {
        "In" | "NotIn" if values.is_empty() => Err(format!(
            "matchExpressions {:?}: operator {} needs values",
            r.key, r.operator
        )),
        "In" => Ok(v.is_some_and(|v| values.contains(v))),
        "NotIn" => Ok(!v.is_some_and(|v| values.contains(v))),
        "Exists" => Ok(v.is_some()),
        "DoesNotExist" => Ok(v.is_none()),
        other => Err(format!(
            "matchExpressions {:?}: operator {other:?} is not one of In, NotIn, Exists, DoesNotExist",
            r.key
        )),
    }
}

/// Whether `labels` satisfy `sel` (all of matchLabels and matchExpressions). An empty
/// selector selects everything; a malformed expression is an error.
pub fn selector_matches(
    sel: &LabelSelector,
    labels: &BTreeMap<String, String>,
) -> Result<bool, String> {
    for (k, v) in sel.match_labels.iter().flatten() {
        if labels.get(k) != Some(v) {
            return Ok(false);
        }
    }
    for r in sel.match_expressions.iter().flatten() {
        if !requirement_matches(r, labels)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The `-l` form as a LabelSelector: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a)`, `k`,
/// `!k`, separated by commas.
pub fn parse_selector(s: &str) -> Result<LabelSelector, String> {
    let mut exprs = Vec::new();
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    parts.push(cur);
    for p in parts.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
        let req = |key: &str, op: &str, values: Vec<String>| LabelSelectorRequirement {
            key: key.trim().to_owned(),
            operator: op.to_owned(),
            values: (!values.is_empty()).then_some(values),
        };
        let set = |rest: &str| -> Result<Vec<String>, String> {
            let inner = rest
                .trim()
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| format!("{p:?}: expected a list in parentheses"))?;
            Ok(inner.split(',').map(|v| v.trim().to_owned()).collect())
        };
        let r = if let Some((k, v)) = p.split_once("!=") {
            req(k, "NotIn", vec![v.trim().to_owned()])
        } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
            req(k, "In", vec![v.trim().to_owned()])
        } else if let Some((k, rest)) = p.split_once(" notin ") {
            req(k, "NotIn", set(rest)?)
        } else if let Some((k, rest)) = p.split_once(" in ") {
            req(k, "In", set(rest)?)
        } else if let Some(k) = p.strip_prefix('!') {
            req(k, "DoesNotExist", vec![])
        } else if p.chars().all(|c| c.is_alphanumeric() || "-_./".contains(c)) {
            req(p, "Exists", vec![])
        } else {
            return Err(format!("{p:?} is not a label selector requirement (k=v, k!=v, k in (a,b), k notin (a), k, !k)"));
        };
        exprs.push(r);
    }
    Ok(LabelSelector {
        match_labels: None,
        match_expressions: Some(exprs),
    })
}

pub(crate) mod cronjob;
pub(crate) mod daemonset;
pub(crate) mod statefulset;
#[cfg(test)]
mod tests;
