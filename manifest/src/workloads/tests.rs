//! Validation of workload objects as the API server does it, and label selectors.

use std::collections::BTreeMap;

use crate::{parse, parse_each, parse_selector, selector_matches, ManifestError, Object};

fn deploy(extra_spec: &str, labels: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  selector: {{matchLabels: {{app: web}}}}
{extra_spec}
  template:
    metadata: {{labels: {labels}}}
    spec:
      containers: [{{name: c, image: busybox}}]
"#
    )
}

fn err_of(text: &str) -> String {
    match parse("f.yaml", text) {
        Err(e) => e.to_string(),
        Ok(o) => panic!("accepted: {o:?}"),
    }
}

#[test]
fn deployment_is_parsed_with_its_key() {
    let objs = parse("f.yaml", &deploy("  replicas: 3", "{app: web, tier: fe}")).unwrap();
    let Object::Deployment(d) = &objs[0] else {
        panic!("{objs:?}")
    };
    assert_eq!(d.spec.as_ref().unwrap().replicas, Some(3));
    assert_eq!(objs[0].key().to_string(), "Deployment default/web");
    assert_eq!(objs[0].to_json().unwrap()["apiVersion"], "apps/v1");
}

#[test]
fn selector_must_match_template_labels() {
    let e = err_of(&deploy("", "{app: other}"));
    assert!(e.contains("Deployment \"web\""), "{e}");
    assert!(e.contains("spec.template.metadata.labels"), "{e}");
    assert!(
        e.contains("`selector` does not match template `labels`"),
        "{e}"
    );
}

#[test]
fn negative_replicas_and_zero_surge_and_unavailable_are_refused() {
    let e = err_of(&deploy("  replicas: -1", "{app: web}"));
    assert!(
        e.contains("spec.replicas: -1: must be greater than or equal to 0"),
        "{e}"
    );
    let e = err_of(&deploy(
        "  strategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: \"0%\"}}",
        "{app: web}",
    ));
    assert!(
        e.contains("spec.strategy.rollingUpdate.maxUnavailable: may not be 0"),
        "{e}"
    );
    let e = err_of(&deploy(
        "  strategy: {rollingUpdate: {maxSurge: \"150%\"}}",
        "{app: web}",
    ));
    assert!(e.contains("maxSurge"), "{e}");
}

#[test]
fn deployment_pods_must_restart_always() {
    let text =
        deploy("", "{app: web}").replace("containers:", "restartPolicy: Never\n      containers:");
    let e = err_of(&text);
    assert!(e.contains("spec.template.spec.restartPolicy"), "{e}");
}

#[test]
fn replica_set_without_selector_is_refused() {
    let e = err_of(
        r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: rs}
spec:
  template:
    metadata: {labels: {app: x}}
    spec: {containers: [{name: c, image: busybox}]}
"#,
    );
    assert!(e.contains("spec.selector"), "{e}");
}

const JOB: &str = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: pi}
spec:
  completions: 3
  template:
    spec:
      restartPolicy: Never
      containers: [{name: c, image: busybox}]
"#;

#[test]
fn job_needs_never_or_on_failure() {
    assert!(matches!(&parse("f", JOB).unwrap()[0], Object::Job(_)));
    let e = err_of(&JOB.replace("restartPolicy: Never", "restartPolicy: Always"));
    assert!(
        e.contains("spec.template.spec.restartPolicy: Unsupported value \"Always\""),
        "{e}"
    );
    let e = err_of(&JOB.replace("restartPolicy: Never\n", ""));
    assert!(
        e.contains("spec.template.spec.restartPolicy: is required"),
        "{e}"
    );
    let e = err_of(&JOB.replace("completions: 3", "completionMode: Indexed"));
    assert!(
        e.contains("spec.completions: is required when completionMode is Indexed"),
        "{e}"
    );
}

#[test]
fn a_bad_document_does_not_stop_the_others() {
    let text = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: a}}\n---\napiVersion: v1\nkind: ReplicationController\nmetadata: {{name: rc}}\n---\n{}",
        deploy("", "{app: web}")
    );
    let (objs, errs) = parse_each("f.yaml", &text);
    let keys: Vec<String> = objs.iter().map(|o| o.key().to_string()).collect();
    assert_eq!(keys, ["ConfigMap default/a", "Deployment default/web"]);
    assert_eq!(errs.len(), 1);
    assert!(
        matches!(&errs[0], ManifestError::Unsupported { doc: 2, .. }),
        "{errs:?}"
    );
    assert!(errs[0].to_string().contains("document 2"), "{}", errs[0]);
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn string_selectors_match_as_kubectl() {
    let l = labels(&[("app", "web"), ("tier", "fe")]);
    let yes = [
        "app=web",
        "app==web,tier",
        "tier in (fe, be)",
        "env notin (prod)",
        "!env",
        "app!=db",
    ];
    for s in yes {
        assert!(
            selector_matches(&parse_selector(s).unwrap(), &l).unwrap(),
            "{s}"
        );
    }
    let no = ["app=db", "env", "!tier", "tier notin (fe)", "app in (db)"];
    for s in no {
        assert!(
            !selector_matches(&parse_selector(s).unwrap(), &l).unwrap(),
            "{s}"
        );
    }
    assert!(parse_selector("app in web").is_err());
}

#[test]
fn job_gets_the_api_servers_defaults() {
    let spec = |text: &str| match &parse("f", text).unwrap()[0] {
        Object::Job(j) => j.spec.clone().unwrap(),
        _ => panic!(),
    };
    let s = spec(&JOB.replace("  completions: 3\n", ""));
    assert_eq!((s.completions, s.parallelism), (Some(1), Some(1)));
    assert_eq!(s.backoff_limit, Some(6));
    assert_eq!(s.completion_mode.as_deref(), Some("NonIndexed"));
    assert_eq!(s.suspend, Some(false));
    // Given parallelism alone: a work queue (completions stay unset).
    let s = spec(&JOB.replace("completions: 3", "parallelism: 4"));
    assert_eq!((s.completions, s.parallelism), (None, Some(4)));
    let s = spec(JOB);
    assert_eq!((s.completions, s.parallelism), (Some(3), Some(1)));
    // Per-index back-off: the job-wide limit is unlimited.
    let s = spec(&JOB.replace(
        "completions: 3",
        "completions: 3\n  completionMode: Indexed\n  backoffLimitPerIndex: 1",
    ));
    assert_eq!(s.backoff_limit, Some(i32::MAX));
}
