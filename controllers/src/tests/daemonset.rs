use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PodSpec, Toleration};
use kinglet_kubelet::harness::Action;
use kinglet_manifest::{Object, ObjectKey};

use super::{apply, object};
use crate::common::controller_of;
use crate::daemonset::{plan, strategy, sync, DsPod, DsState, Plan, Strategy, REVISION_LABEL};
use crate::fake::FakeStore;
use crate::node::{self, parse_taint, should_run, Node};

fn node(labels: &[(&str, &str)], taints: &[&str]) -> Node {
    let l: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let t: Vec<String> = taints.iter().map(|s| s.to_string()).collect();
    Node::new("node-a", &l, &t).unwrap()
}

fn ds_yaml(strategy: &str, pod_extra: &str, env: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: agent}}
spec:
  selector: {{matchLabels: {{app: agent}}}}
{strategy}
  template:
    metadata: {{labels: {{app: agent}}}}
    spec:
      containers: [{{name: c, image: busybox, env: [{{name: V, value: '{env}'}}]}}]
{pod_extra}
"#
    )
}

fn key() -> ObjectKey {
    ObjectKey {
        kind: "DaemonSet",
        namespace: "default".into(),
        name: "agent".into(),
    }
}

async fn pass(store: &FakeStore, n: &Node, st: &mut DsState) -> Action {
    let Some(Object::DaemonSet(ds)) = store.obj("DaemonSet", "agent") else {
        panic!("no ds")
    };
    sync(store, n, &key(), &ds, st).await.unwrap()
}

fn status(store: &FakeStore) -> k8s_openapi::api::apps::v1::DaemonSetStatus {
    let Some(Object::DaemonSet(ds)) = store.obj("DaemonSet", "agent") else {
        panic!()
    };
    ds.status.unwrap()
}

fn pods(store: &FakeStore) -> Vec<k8s_openapi::api::core::v1::Pod> {
    store
        .names("Pod")
        .iter()
        .filter_map(|n| match store.obj("Pod", n) {
            Some(Object::Pod(p)) => Some(*p),
            _ => None,
        })
        .collect()
}

fn spec(yaml_pod_extra: &str) -> PodSpec {
    let Object::DaemonSet(d) = object(&ds_yaml("", yaml_pod_extra, "1")) else {
        panic!()
    };
    let mut s = d.spec.unwrap().template.spec.unwrap();
    node::add_daemon_tolerations(&mut s);
    s
}

#[test]
fn node_has_well_known_labels_and_parsed_taints() {
    let n = node(
        &[("disk", "ssd")],
        &["dedicated=infra:NoSchedule", "gpu:NoExecute"],
    );
    assert_eq!(n.labels["kubernetes.io/hostname"], "node-a");
    assert_eq!(n.labels["kubernetes.io/os"], "linux");
    assert!(!n.labels["kubernetes.io/arch"].is_empty());
    assert_eq!(n.labels["disk"], "ssd");
    assert_eq!(n.taints[0].key, "dedicated");
    assert_eq!(n.taints[0].value.as_deref(), Some("infra"));
    assert_eq!(n.taints[1].value, None);
    let e = parse_taint("dedicated=infra").unwrap_err();
    assert!(e.contains("key[=value]:Effect"), "{e}");
    let e = parse_taint("a:Sometimes").unwrap_err();
    assert!(
        e.contains("NoSchedule, PreferNoSchedule or NoExecute"),
        "{e}"
    );
}

#[test]
fn node_selector_and_affinity_operators() {
    let n = node(&[("disk", "ssd"), ("cpus", "8")], &[]);
    assert_eq!(should_run(&spec(""), &n), (true, true));
    assert_eq!(
        should_run(&spec("      nodeSelector: {disk: ssd}"), &n),
        (true, true)
    );
    assert_eq!(
        should_run(&spec("      nodeSelector: {disk: hdd}"), &n),
        (false, false)
    );
    let aff = |exprs: &str| {
        spec(&format!("      affinity: {{nodeAffinity: {{requiredDuringSchedulingIgnoredDuringExecution: {{nodeSelectorTerms: [{exprs}]}}}}}}"))
    };
    let cases = [
        ("{matchExpressions: [{key: disk, operator: In, values: [ssd, nvme]}]}", true),
        ("{matchExpressions: [{key: disk, operator: In, values: [hdd]}]}", false),
        ("{matchExpressions: [{key: disk, operator: NotIn, values: [hdd]}]}", true),
        ("{matchExpressions: [{key: zone, operator: NotIn, values: [a]}]}", true),
        ("{matchExpressions: [{key: disk, operator: Exists}]}", true),
        ("{matchExpressions: [{key: zone, operator: Exists}]}", false),
        ("{matchExpressions: [{key: zone, operator: DoesNotExist}]}", true),
        ("{matchExpressions: [{key: cpus, operator: Gt, values: ['4']}]}", true),
        ("{matchExpressions: [{key: cpus, operator: Gt, values: ['8']}]}", false),
        ("{matchExpressions: [{key: cpus, operator: Lt, values: ['16']}]}", true),
        ("{matchExpressions: [{key: disk, operator: Lt, values: ['16']}]}", false),
        // Expressions of a term are ANDed, terms are ORed.
        ("{matchExpressions: [{key: disk, operator: Exists}, {key: zone, operator: Exists}]}", false),
        ("{matchExpressions: [{key: zone, operator: Exists}]}, {matchExpressions: [{key: disk, operator: Exists}]}", true),
        ("{matchFields: [{key: metadata.name, operator: In, values: [node-a]}]}", true),
        ("{matchFields: [{key: metadata.name, operator: In, values: [node-b]}]}", false),
        ("{matchExpressions: [{key: kubernetes.io/os, operator: In, values: [linux]}]}", true),
    ];
    for (terms, want) in cases {
        assert_eq!(should_run(&aff(terms), &n).0, want, "{terms}");
    }
    assert_eq!(
        should_run(&spec("      nodeName: node-b"), &n),
        (false, false)
    );
}

#[test]
fn taints_against_tolerations() {
    let sched = node(&[], &["dedicated=infra:NoSchedule"]);
    let exec = node(&[], &["dedicated=infra:NoExecute"]);
    let soft = node(&[], &["dedicated=infra:PreferNoSchedule"]);
    // Untolerated NoSchedule: not started, but a running pod stays; NoExecute evicts.
    assert_eq!(should_run(&spec(""), &sched), (false, true));
    assert_eq!(should_run(&spec(""), &exec), (false, false));
    assert_eq!(should_run(&spec(""), &soft), (true, true));
    let tol = |t: &str| spec(&format!("      tolerations: [{t}]"));
    assert_eq!(
        should_run(&tol("{key: dedicated, operator: Exists}"), &exec),
        (true, true)
    );
    assert_eq!(
        should_run(&tol("{key: dedicated, value: infra}"), &exec),
        (true, true)
    );
    assert!(!should_run(&tol("{key: dedicated, value: db}"), &exec).0);
    assert_eq!(should_run(&tol("{operator: Exists}"), &exec), (true, true));
    assert_eq!(
        should_run(
            &tol("{key: dedicated, operator: Exists, effect: NoSchedule}"),
            &exec
        ),
        (false, false)
    );
    // The DaemonSet's own tolerations: an unschedulable node still runs daemons.
    let cordoned = node(&[], &["node.kubernetes.io/unschedulable:NoSchedule"]);
    assert_eq!(should_run(&spec(""), &cordoned), (true, true));
    assert!(node::tolerates(
        &Toleration {
            key: Some("a".into()),
            operator: Some("Exists".into()),
            ..Default::default()
        },
        &parse_taint("a=x:NoExecute").unwrap()
    ));
}

fn p(name: &str, updated: bool, available: bool, created: i64) -> DsPod {
    DsPod {
        name: name.into(),
        updated,
        ready: available,
        available,
        terminal: false,
        created: Some(k8s_openapi::jiff::Timestamp::from_second(created).unwrap()),
    }
}

#[test]
fn plans_follow_upstream_manage_and_rolling_update() {
    let roll = Strategy::Rolling {
        max_surge: 0,
        max_unavailable: 1,
    };
    let surge = Strategy::Rolling {
        max_surge: 1,
        max_unavailable: 0,
    };
    let create = Plan {
        create: true,
        ..Plan::default()
    };
    let del = |n: &[&str]| Plan {
        delete: n.iter().map(|s| s.to_string()).collect(),
        ..Plan::default()
    };
    assert_eq!(plan(true, true, &[], roll), create);
    assert_eq!(
        plan(true, true, &[p("a", true, true, 1)], roll),
        Plan::default()
    );
    // Two pods: the newest goes.
    assert_eq!(
        plan(
            true,
            true,
            &[p("b", true, true, 2), p("a", true, true, 1)],
            roll
        ),
        del(&["b"])
    );
    assert_eq!(
        plan(false, false, &[p("a", true, true, 1)], roll),
        del(&["a"])
    );
    assert_eq!(
        plan(false, true, &[p("a", true, true, 1)], roll),
        Plan::default()
    );
    // RollingUpdate without surge: the old pod is deleted (the next pass creates).
    assert_eq!(
        plan(true, true, &[p("a", false, true, 1)], roll),
        del(&["a"])
    );
    // OnDelete: an old pod stays.
    assert_eq!(
        plan(true, true, &[p("a", false, true, 1)], Strategy::OnDelete),
        Plan::default()
    );
    // Surge: a new pod beside the old; the old goes once the new is available.
    assert_eq!(plan(true, true, &[p("a", false, true, 1)], surge), create);
    assert_eq!(
        plan(
            true,
            true,
            &[p("a", false, true, 1), p("b", true, false, 2)],
            surge
        ),
        Plan::default()
    );
    assert_eq!(
        plan(
            true,
            true,
            &[p("a", false, true, 1), p("b", true, true, 2)],
            surge
        ),
        del(&["a"])
    );
    // A failed pod is deleted (and counted for the back-off).
    let mut failed = p("a", true, false, 1);
    failed.terminal = true;
    let got = plan(true, true, &[failed], roll);
    assert_eq!(
        (got.create, got.delete.clone(), got.failed),
        (true, vec!["a".into()], 1)
    );
}

#[test]
fn strategy_resolves_defaults_and_percentages() {
    let ds = |s: &str| match object(&ds_yaml(s, "", "1")) {
        Object::DaemonSet(d) => *d,
        _ => panic!(),
    };
    assert_eq!(
        strategy(&ds(""), 1).unwrap(),
        Strategy::Rolling {
            max_surge: 0,
            max_unavailable: 1
        }
    );
    assert_eq!(
        strategy(
            &ds("  updateStrategy: {rollingUpdate: {maxSurge: 10%, maxUnavailable: 0}}"),
            1
        )
        .unwrap(),
        Strategy::Rolling {
            max_surge: 1,
            max_unavailable: 0
        }
    );
    assert_eq!(
        strategy(&ds("  updateStrategy: {type: OnDelete}"), 1).unwrap(),
        Strategy::OnDelete
    );
}

#[tokio::test]
async fn creates_one_labelled_pod_and_counts_status() {
    let store = FakeStore::new();
    let n = node(&[], &[]);
    apply(&store, &ds_yaml("", "", "1"));
    let mut st = DsState::default();
    pass(&store, &n, &mut st).await;
    pass(&store, &n, &mut st).await;
    let ps = pods(&store);
    assert_eq!(ps.len(), 1, "one pod per node");
    let pod = &ps[0];
    let name = pod.metadata.name.clone().unwrap();
    assert!(
        name.starts_with("agent-") && name.len() == "agent-".len() + 5,
        "{name}"
    );
    let labels = pod.metadata.labels.clone().unwrap();
    assert_eq!(labels["app"], "agent");
    assert!(!labels[REVISION_LABEL].is_empty());
    assert_eq!(labels["pod-template-generation"], "1");
    assert_eq!(controller_of(&pod.metadata).unwrap().kind, "DaemonSet");
    let spec = pod.spec.clone().unwrap();
    let tols = spec.tolerations.unwrap();
    assert!(tols
        .iter()
        .any(|t| t.key.as_deref() == Some("node.kubernetes.io/not-ready")
            && t.effect.as_deref() == Some("NoExecute")));
    let pin = &spec
        .affinity
        .unwrap()
        .node_affinity
        .unwrap()
        .required_during_scheduling_ignored_during_execution
        .unwrap()
        .node_selector_terms[0];
    assert_eq!(
        pin.match_fields.as_ref().unwrap()[0].values,
        Some(vec!["node-a".into()])
    );
    let s = status(&store);
    assert_eq!(
        (
            s.desired_number_scheduled,
            s.current_number_scheduled,
            s.number_ready
        ),
        (1, 1, 0)
    );
    assert_eq!(s.number_unavailable, Some(1));
    store.all_ready();
    pass(&store, &n, &mut st).await;
    let s = status(&store);
    assert_eq!(
        (
            s.number_ready,
            s.number_available,
            s.updated_number_scheduled
        ),
        (1, Some(1), Some(1))
    );
    assert_eq!(s.number_unavailable, Some(0));
    assert_eq!(s.observed_generation, Some(1));
}

#[tokio::test]
async fn node_selector_mismatch_runs_nothing_and_removes_the_pod() {
    let store = FakeStore::new();
    let n = node(&[("role", "edge")], &[]);
    apply(
        &store,
        &ds_yaml("", "      nodeSelector: {role: core}", "1"),
    );
    let mut st = DsState::default();
    pass(&store, &n, &mut st).await;
    assert!(pods(&store).is_empty());
    let s = status(&store);
    assert_eq!(
        (s.desired_number_scheduled, s.current_number_scheduled),
        (0, 0)
    );
    apply(
        &store,
        &ds_yaml("", "      nodeSelector: {role: edge}", "1"),
    );
    pass(&store, &n, &mut st).await;
    assert_eq!(pods(&store).len(), 1);
    apply(
        &store,
        &ds_yaml("", "      nodeSelector: {role: core}", "1"),
    );
    pass(&store, &n, &mut st).await;
    assert!(
        pods(&store).is_empty(),
        "a pod the node no longer admits is deleted"
    );
}

#[tokio::test]
async fn untolerated_no_schedule_taint_keeps_a_running_pod_as_misscheduled() {
    let store = FakeStore::new();
    apply(&store, &ds_yaml("", "", "1"));
    let mut st = DsState::default();
    pass(&store, &node(&[], &[]), &mut st).await;
    assert_eq!(pods(&store).len(), 1);
    pass(&store, &node(&[], &["x:NoSchedule"]), &mut st).await;
    assert_eq!(pods(&store).len(), 1, "NoSchedule does not evict");
    let s = status(&store);
    assert_eq!((s.desired_number_scheduled, s.number_misscheduled), (0, 1));
    pass(&store, &node(&[], &["x:NoExecute"]), &mut st).await;
    assert!(pods(&store).is_empty(), "NoExecute evicts");
}

#[tokio::test]
async fn rolling_update_replaces_the_pod_and_on_delete_waits() {
    let store = FakeStore::new();
    let n = node(&[], &[]);
    apply(&store, &ds_yaml("", "", "1"));
    let mut st = DsState::default();
    pass(&store, &n, &mut st).await;
    store.all_ready();
    pass(&store, &n, &mut st).await;
    let first = store.names("Pod");
    apply(&store, &ds_yaml("", "", "2"));
    pass(&store, &n, &mut st).await; // deletes the old pod
    pass(&store, &n, &mut st).await; // creates the new one
    let second = store.names("Pod");
    assert_eq!(second.len(), 1);
    assert_ne!(first, second);
    let s = status(&store);
    assert_eq!(s.updated_number_scheduled, Some(1));
    assert_eq!(s.observed_generation, Some(2));

    // OnDelete: a new template waits for the pod to be deleted.
    store.all_ready();
    let on_delete = "  updateStrategy: {type: OnDelete}";
    apply(&store, &ds_yaml(on_delete, "", "3"));
    pass(&store, &n, &mut st).await;
    pass(&store, &n, &mut st).await;
    assert_eq!(store.names("Pod"), second);
    assert_eq!(status(&store).updated_number_scheduled, Some(0));
    for name in &second {
        store
            .objects
            .lock()
            .unwrap()
            .retain(|k, _| !(k.kind == "Pod" && &k.name == name));
    }
    pass(&store, &n, &mut st).await;
    assert_eq!(status(&store).updated_number_scheduled, Some(1));
}

#[tokio::test]
async fn surge_keeps_the_old_pod_until_the_new_one_is_available() {
    let store = FakeStore::new();
    let n = node(&[], &[]);
    let s =
        "  minReadySeconds: 5\n  updateStrategy: {rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}";
    apply(&store, &ds_yaml(s, "", "1"));
    let mut st = DsState::default();
    pass(&store, &n, &mut st).await;
    store.all_ready();
    pass(&store, &n, &mut st).await;
    store.advance(10);
    pass(&store, &n, &mut st).await;
    let old = store.names("Pod");
    assert_eq!(status(&store).number_available, Some(1));
    apply(&store, &ds_yaml(s, "", "2"));
    pass(&store, &n, &mut st).await;
    assert_eq!(
        store.names("Pod").len(),
        2,
        "the new pod starts beside the old"
    );
    store.all_ready();
    let a = pass(&store, &n, &mut st).await;
    assert_eq!(
        store.names("Pod").len(),
        2,
        "not available for minReadySeconds yet"
    );
    assert!(matches!(a, Action::Requeue(d) if d.as_secs() <= 6), "{a:?}");
    store.advance(6);
    pass(&store, &n, &mut st).await;
    let now = store.names("Pod");
    assert_eq!(now.len(), 1);
    assert_ne!(now, old);
}

#[tokio::test]
async fn failed_pod_is_replaced_after_a_back_off_and_orphans_are_adopted() {
    let store = FakeStore::new();
    let n = node(&[], &[]);
    // An orphan that matches is adopted rather than a new pod created.
    store.put(object(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: stray, labels: {app: agent}}\nspec: {containers: [{name: c, image: busybox}]}",
    ));
    apply(
        &store,
        &ds_yaml("  updateStrategy: {type: OnDelete}", "", "1"),
    );
    let mut st = DsState::default();
    pass(&store, &n, &mut st).await;
    assert_eq!(store.names("Pod"), vec!["stray".to_string()]);
    let Some(Object::Pod(stray)) = store.obj("Pod", "stray") else {
        panic!()
    };
    assert_eq!(controller_of(&stray.metadata).unwrap().kind, "DaemonSet");
    assert_eq!(status(&store).updated_number_scheduled, Some(0));
    store.set_status("stray", "Failed", false);
    let a = pass(&store, &n, &mut st).await;
    assert!(store.names("Pod").is_empty(), "failed pod deleted");
    assert!(matches!(a, Action::Requeue(_)), "{a:?}");
    pass(&store, &n, &mut st).await;
    assert!(store.names("Pod").is_empty(), "still backing off");
    store.advance(2);
    pass(&store, &n, &mut st).await;
    assert_eq!(store.names("Pod").len(), 1, "replaced after the back-off");
}
