//! The Job's failure and success policies, as the upstream Job controller applies them (pure):
//! - `podFailurePolicy`: each failed pod is matched against the rules in order (`onExitCodes`
//!   with In/NotIn over the terminated containers' exit codes, optionally of one container;
//!   `onPodConditions`); the first match decides: `FailJob` fails the Job (reason
//!   PodFailurePolicy), `Ignore` leaves the failure uncounted (not towards backoffLimit, not
//!   in `status.failed`), `FailIndex` fails the pod's index (with backoffLimitPerIndex),
//!   `Count` (and no match) counts it as usual.
//! - `backoffLimitPerIndex` / `maxFailedIndexes` (Indexed Jobs): an index whose failures
//!   exceed the limit (or that a FailIndex rule hit) is failed and gets no more pods (counted
//!   in [`crate::job_tracking`]).
//! - `successPolicy` (Indexed Jobs): the Job succeeds as soon as one rule is met
//!   (`succeededIndexes` all succeeded, or `succeededCount` of them / of all indexes).

use std::collections::BTreeSet;

use k8s_openapi::api::batch::v1::JobSpec;

use crate::job::JobPod;

/// What a pod failure means under the Job's `podFailurePolicy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureAction {
    /// Fail the Job, with upstream's message naming the rule.
    FailJob(String),
    Ignore,
    FailIndex,
    Count,
}

/// Match failed pod `p` (of namespace `ns`) against the rules.
pub fn classify(spec: &JobSpec, ns: &str, p: &JobPod) -> FailureAction {
    let Some(policy) = &spec.pod_failure_policy else {
        return FailureAction::Count;
    };
    for (i, rule) in policy.rules.iter().enumerate() {
        let mut matched: Option<String> = None;
        if let Some(req) = &rule.on_exit_codes {
            let hit = p.exit_codes.iter().find(|(name, code)| {
                req.container_name.as_ref().is_none_or(|n| n == name)
                    && match req.operator.as_str() {
                        "In" => req.values.contains(code),
                        "NotIn" => *code != 0 && !req.values.contains(code),
                        _ => false,
                    }
            });
            if let Some((name, code)) = hit {
                matched = Some(format!(
                    "Container {name} for pod {ns}/{} failed with exit code {code} matching {} rule at index {i}",
                    p.name, rule.action
                ));
            }
        }
        for pattern in rule.on_pod_conditions.iter().flatten() {
            let want = if pattern.status.is_empty() {
                "True"
            } else {
                pattern.status.as_str()
            };
            if matched.is_none()
                && p.conditions
                    .iter()
                    .any(|(t, s)| *t == pattern.type_ && s == want)
            {
                matched = Some(format!(
                    "Pod {ns}/{} has condition {} matching {} rule at index {i}",
                    p.name, pattern.type_, rule.action
                ));
            }
        }
        if let Some(message) = matched {
            return match rule.action.as_str() {
                "FailJob" => FailureAction::FailJob(message),
                "Ignore" => FailureAction::Ignore,
                "FailIndex" => FailureAction::FailIndex,
                _ => FailureAction::Count,
            };
        }
    }
    FailureAction::Count
}

/// The first FailJob match among the failed pods: the Job's failure message.
pub fn fail_job(spec: &JobSpec, ns: &str, pods: &[JobPod]) -> Option<String> {
    pods.iter()
        .filter(|p| p.state == "Failed")
        .find_map(|p| match classify(spec, ns, p) {
            FailureAction::FailJob(m) => Some(m),
            _ => None,
        })
}

/// Indexes as in `succeededIndexes`: `0-2,4` → {0, 1, 2, 4}.
pub fn parse_indexes(s: &str) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(i) = part.parse() {
                    out.insert(i);
                }
            }
        }
    }
    out
}

/// The index of the first `successPolicy` rule the succeeded indexes meet.
pub fn success_rule(spec: &JobSpec, succeeded: &BTreeSet<i32>) -> Option<usize> {
    let policy = spec.success_policy.as_ref()?;
    policy.rules.iter().position(|r| {
        let (pool, count) = match &r.succeeded_indexes {
            Some(s) => {
                let want = parse_indexes(s);
                let got = want.intersection(succeeded).count() as i32;
                (got, r.succeeded_count.unwrap_or(want.len() as i32))
            }
            None => (
                succeeded.len() as i32,
                r.succeeded_count.unwrap_or(i32::MAX),
            ),
        };
        pool >= count
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(mut v: serde_json::Value) -> JobSpec {
        v["template"] = serde_json::json!({"spec": {"containers": []}});
        serde_json::from_value(v).unwrap()
    }

    fn failed(name: &str, index: Option<i32>, codes: &[(&str, i32)]) -> JobPod {
        JobPod {
            name: name.into(),
            uid: name.into(),
            index,
            index_failures: 0,
            state: "Failed",
            ready: false,
            restarts: 0,
            finished: None,
            exit_codes: codes.iter().map(|(n, c)| ((*n).into(), *c)).collect(),
            conditions: Vec::new(),
        }
    }

    fn policy() -> JobSpec {
        spec(serde_json::json!({"podFailurePolicy": {"rules": [
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [3]}},
            {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [1]}},
        ]}}))
    }

    #[test]
    fn rules_match_in_order_with_upstreams_messages() {
        let s = policy();
        assert_eq!(
            classify(&s, "ns", &failed("p", None, &[("main", 42)])),
            FailureAction::FailJob(
                "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 0"
                    .into()
            )
        );
        // Another container with 42: not the FailJob rule's container.
        assert_eq!(
            classify(&s, "ns", &failed("p", None, &[("side", 42)])),
            FailureAction::Count
        );
        assert_eq!(
            classify(&s, "ns", &failed("p", None, &[("side", 3)])),
            FailureAction::Ignore
        );
        let mut disrupted = failed("p", None, &[("main", 1)]);
        disrupted.conditions = vec![("DisruptionTarget".into(), "True".into())];
        assert_eq!(classify(&s, "ns", &disrupted), FailureAction::Ignore);
        let mut pods = vec![
            failed("a", None, &[("main", 3)]),
            failed("b", None, &[("main", 1)]),
        ];
        pods.retain(|p| classify(&s, "ns", p) != FailureAction::Ignore);
        assert_eq!(pods.len(), 1);
        assert_eq!(fail_job(&s, "ns", &pods), None);
        pods.push(failed("c", None, &[("main", 42)]));
        assert!(fail_job(&s, "ns", &pods).unwrap().contains("pod ns/c"));
        // NotIn never matches exit code 0.
        let notin = spec(serde_json::json!({"podFailurePolicy": {"rules": [
            {"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": [1]}},
        ]}}));
        assert_eq!(
            classify(&notin, "ns", &failed("p", None, &[("a", 0), ("b", 1)])),
            FailureAction::Count
        );
    }

    #[test]
    fn indexes_fail_past_their_own_limit_or_by_fail_index() {
        let s = spec(
            serde_json::json!({"backoffLimitPerIndex": 1, "podFailurePolicy": {"rules": [
                {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [7]}},
            ]}}),
        );
        // b replaced a: its annotation carries index 0's one failure before it.
        let mut b = failed("b", Some(0), &[("c", 1)]);
        b.index_failures = 1;
        let pods = vec![
            failed("a", Some(0), &[("c", 1)]),
            b,
            failed("c", Some(1), &[("c", 1)]),
            failed("d", Some(2), &[("c", 7)]),
        ];
        let t = crate::job_tracking::Tracked {
            new_failed: pods,
            ..Default::default()
        };
        let mut mem = crate::job_tracking::JobMemory::default();
        crate::job_tracking::remember(&mut mem, &t);
        let prev = k8s_openapi::api::batch::v1::JobStatus::default();
        let c = crate::job_tracking::counts(&s, "ns", &prev, &t, &mem);
        assert_eq!(c.failed_indexes.unwrap(), BTreeSet::from([0, 2]));
        assert_eq!(c.failed, 4);
        let none = spec(serde_json::json!({}));
        let c = crate::job_tracking::counts(&none, "ns", &prev, &t, &mem);
        assert!(c.failed_indexes.is_none());
    }

    #[test]
    fn success_rules_by_indexes_and_counts() {
        assert_eq!(
            parse_indexes("0-2,4, 6-7"),
            BTreeSet::from([0, 1, 2, 4, 6, 7])
        );
        let s = spec(serde_json::json!({"successPolicy": {"rules": [
            {"succeededIndexes": "0-2"},
            {"succeededIndexes": "5-9", "succeededCount": 2},
            {"succeededCount": 4},
        ]}}));
        assert_eq!(success_rule(&s, &BTreeSet::from([0, 1])), None);
        assert_eq!(success_rule(&s, &BTreeSet::from([0, 1, 2])), Some(0));
        assert_eq!(success_rule(&s, &BTreeSet::from([5, 9])), Some(1));
        assert_eq!(success_rule(&s, &BTreeSet::from([0, 3, 4, 10])), Some(2));
    }
}
