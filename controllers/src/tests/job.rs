use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, ContainerStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kinglet_kubelet::harness::Action;
use kinglet_manifest::{Object, ObjectKey};

use super::apply;
use crate::fake::FakeStore;
use crate::job::{failure_backoff, format_indexes, sync, INDEX_ANNOTATION};
use crate::job_tracking::JobMemory;
use crate::Store;

pub(super) fn job(spec: &str) -> String {
    format!(
        r#"
apiVersion: batch/v1
kind: Job
metadata: {{name: pi}}
spec:
{spec}
  template:
    spec:
      restartPolicy: Never
      containers: [{{name: c, image: busybox}}]
"#
    )
}

pub(super) fn key() -> ObjectKey {
    ObjectKey {
        kind: "Job",
        namespace: "default".into(),
        name: "pi".into(),
    }
}

pub(super) async fn pass(store: &FakeStore) -> Action {
    let Some(Object::Job(j)) = store.obj("Job", "pi") else {
        panic!("no job")
    };
    thread_local! {
        static MEMORY: std::cell::RefCell<JobMemory> = Default::default();
    }
    let mut mem = MEMORY.with(|m| m.borrow().clone());
    let a = sync(store, &key(), &j, &mut mem).await.unwrap();
    MEMORY.with(|m| *m.borrow_mut() = mem);
    a
}

pub(super) fn status(store: &FakeStore) -> k8s_openapi::api::batch::v1::JobStatus {
    let Some(Object::Job(j)) = store.obj("Job", "pi") else {
        panic!()
    };
    j.status.unwrap_or_default()
}

pub(super) fn condition(store: &FakeStore, t: &str) -> Option<(String, String)> {
    status(store)
        .conditions
        .into_iter()
        .flatten()
        .find(|c| c.type_ == t)
        .map(|c| (c.status, c.reason.unwrap()))
}

/// The pod finished now with `phase` (its container terminated now).
pub(super) fn finish(store: &FakeStore, pod: &str, phase: &str) {
    let mut st = FakeStore::status(phase, false);
    st.container_statuses = Some(vec![ContainerStatus {
        name: "c".into(),
        state: Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: if phase == "Succeeded" { 0 } else { 1 },
                finished_at: Some(Time(store.now())),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }]);
    store.statuses.lock().unwrap().insert(pod.into(), st);
}

pub(super) fn active_pods(store: &FakeStore) -> Vec<String> {
    let st = store.statuses.lock().unwrap();
    store
        .names("Pod")
        .into_iter()
        .filter(|n| st.get(n).is_none_or(|s| !crate::common::is_terminal(s)))
        .collect()
}

#[test]
fn back_off_doubles_from_10_s_to_6_min() {
    let secs: Vec<u64> = (0..8).map(|n| failure_backoff(n).as_secs()).collect();
    assert_eq!(secs, [0, 10, 20, 40, 80, 160, 320, 360]);
    assert_eq!(
        format_indexes(&BTreeSet::from([0, 1, 2, 4, 6, 7])),
        "0-2,4,6-7"
    );
    assert_eq!(format_indexes(&BTreeSet::new()), "");
}

#[tokio::test]
async fn completions_run_parallelism_at_a_time_then_complete() {
    let store = FakeStore::new();
    apply(&store, &job("  completions: 3\n  parallelism: 2"));
    pass(&store).await;
    let first = active_pods(&store);
    assert_eq!(first.len(), 2);
    assert!(
        first.iter().all(|n| n.starts_with("pi-") && n.len() == 8),
        "{first:?}"
    );
    let Some(Object::Pod(p)) = store.obj("Pod", &first[0]) else {
        panic!()
    };
    let labels = p.metadata.labels.unwrap();
    assert_eq!(labels["job-name"], "pi");
    assert_eq!(
        labels["batch.kubernetes.io/controller-uid"],
        p.metadata.owner_references.unwrap()[0].uid
    );
    assert!(status(&store).start_time.is_some());
    assert_eq!(status(&store).active, Some(2));
    for n in &first {
        finish(&store, n, "Succeeded");
    }
    pass(&store).await;
    assert_eq!(
        active_pods(&store).len(),
        1,
        "one more for the third completion"
    );
    assert_eq!(status(&store).succeeded, Some(2));
    let last = active_pods(&store)[0].clone();
    finish(&store, &last, "Succeeded");
    pass(&store).await;
    assert_eq!(
        condition(&store, "Complete"),
        Some(("True".into(), "CompletionsReached".into()))
    );
    let st = status(&store);
    assert_eq!((st.succeeded, st.active), (Some(3), None));
    assert!(st.completion_time.is_some());
    pass(&store).await;
    assert_eq!(store.names("Pod").len(), 3, "no pod after completion");
}

#[tokio::test]
async fn failures_back_off_then_exceed_the_backoff_limit() {
    let store = FakeStore::new();
    apply(&store, &job("  backoffLimit: 1"));
    pass(&store).await;
    let p1 = active_pods(&store)[0].clone();
    finish(&store, &p1, "Failed");
    let a = pass(&store).await;
    assert!(active_pods(&store).is_empty(), "waits the back-off");
    assert!(
        matches!(a, Action::Requeue(d) if d >= Duration::from_secs(10) && d < Duration::from_secs(11)),
        "{a:?}"
    );
    store.advance(9);
    pass(&store).await;
    assert!(active_pods(&store).is_empty());
    store.advance(1);
    pass(&store).await;
    let p2 = active_pods(&store);
    assert_eq!(p2.len(), 1, "replacement after 10 s");
    finish(&store, &p2[0], "Failed");
    pass(&store).await;
    assert_eq!(
        condition(&store, "Failed"),
        Some(("True".into(), "BackoffLimitExceeded".into()))
    );
    assert_eq!(status(&store).failed, Some(2));
}

#[tokio::test]
async fn active_deadline_fails_the_job_and_stops_its_pods() {
    let store = FakeStore::new();
    apply(
        &store,
        &job("  activeDeadlineSeconds: 30\n  parallelism: 2\n  completions: 4"),
    );
    let a = pass(&store).await;
    assert!(
        matches!(a, Action::Requeue(d) if d.as_secs() == 30),
        "{a:?}"
    );
    assert_eq!(active_pods(&store).len(), 2);
    store.advance(30);
    pass(&store).await;
    assert_eq!(
        condition(&store, "Failed"),
        Some(("True".into(), "DeadlineExceeded".into()))
    );
    assert!(store.names("Pod").is_empty(), "active pods deleted");
}

#[tokio::test]
async fn indexed_pods_get_their_index_hostname_and_env() {
    let store = FakeStore::new();
    apply(
        &store,
        &job("  completions: 3\n  parallelism: 3\n  completionMode: Indexed"),
    );
    pass(&store).await;
    let pods = store.names("Pod");
    assert_eq!(pods.len(), 3);
    let mut seen = BTreeSet::new();
    for n in &pods {
        let Some(Object::Pod(p)) = store.obj("Pod", n) else {
            panic!()
        };
        let i = &p.metadata.annotations.as_ref().unwrap()[INDEX_ANNOTATION];
        assert!(n.starts_with(&format!("pi-{i}-")), "{n}");
        let spec = p.spec.unwrap();
        assert_eq!(spec.hostname.unwrap(), format!("pi-{i}"));
        let env = spec.containers[0].env.clone().unwrap();
        assert!(env
            .iter()
            .any(|e| e.name == "JOB_COMPLETION_INDEX" && e.value.as_ref() == Some(i)));
        seen.insert(i.clone());
    }
    assert_eq!(seen, BTreeSet::from(["0".into(), "1".into(), "2".into()]));
    // Index 1 fails: only index 1 is run again (after the back-off).
    for n in &pods {
        let i = n.split('-').nth(1).unwrap();
        finish(&store, n, if i == "1" { "Failed" } else { "Succeeded" });
    }
    pass(&store).await;
    assert_eq!(status(&store).completed_indexes.as_deref(), Some("0,2"));
    store.advance(10);
    pass(&store).await;
    let again = active_pods(&store);
    assert_eq!(again.len(), 1);
    assert!(again[0].starts_with("pi-1-"), "{again:?}");
    finish(&store, &again[0], "Succeeded");
    pass(&store).await;
    assert_eq!(status(&store).completed_indexes.as_deref(), Some("0-2"));
    assert_eq!(condition(&store, "Complete").unwrap().0, "True");
}

#[tokio::test]
async fn suspend_stops_pods_and_ttl_deletes_the_finished_job() {
    let store = FakeStore::new();
    apply(
        &store,
        &job("  suspend: true\n  ttlSecondsAfterFinished: 5"),
    );
    pass(&store).await;
    assert!(store.names("Pod").is_empty());
    assert_eq!(
        condition(&store, "Suspended"),
        Some(("True".into(), "JobSuspended".into()))
    );
    apply(
        &store,
        &job("  suspend: false\n  ttlSecondsAfterFinished: 5"),
    );
    pass(&store).await;
    assert_eq!(
        condition(&store, "Suspended"),
        Some(("False".into(), "JobResumed".into()))
    );
    let p = active_pods(&store);
    assert_eq!(p.len(), 1);
    finish(&store, &p[0], "Succeeded");
    pass(&store).await;
    assert_eq!(condition(&store, "Complete").unwrap().0, "True");
    let a = pass(&store).await;
    assert!(matches!(a, Action::Requeue(d) if d.as_secs() == 5), "{a:?}");
    store.advance(5);
    assert_eq!(pass(&store).await, Action::Done);
    assert!(store.obj("Job", "pi").is_none(), "deleted after its ttl");
    crate::gc::collect(&store).await;
    assert!(store.names("Pod").is_empty(), "its pods collected");
}

#[tokio::test]
async fn on_failure_restarts_count_toward_the_backoff_limit() {
    let store = FakeStore::new();
    let text = job("  backoffLimit: 2").replace("restartPolicy: Never", "restartPolicy: OnFailure");
    apply(&store, &text);
    pass(&store).await;
    let p = active_pods(&store)[0].clone();
    let restarted = |n: i32| {
        let mut st = FakeStore::status("Running", false);
        st.container_statuses = Some(vec![ContainerStatus {
            name: "c".into(),
            restart_count: n,
            ..Default::default()
        }]);
        st
    };
    store
        .statuses
        .lock()
        .unwrap()
        .insert(p.clone(), restarted(1));
    pass(&store).await;
    assert_eq!(
        condition(&store, "Failed"),
        None,
        "1 restart < backoffLimit 2"
    );
    store.statuses.lock().unwrap().insert(p, restarted(2));
    pass(&store).await;
    assert_eq!(
        condition(&store, "Failed"),
        Some(("True".into(), "BackoffLimitExceeded".into()))
    );
    assert!(
        store.names("Pod").is_empty(),
        "the restarting pod is deleted"
    );
}

/// The pod failed now, its container `c` with `code`.
fn fail_with(store: &FakeStore, pod: &str, code: i32) {
    finish(store, pod, "Failed");
    let mut all = store.statuses.lock().unwrap();
    let st = all.get_mut(pod).unwrap();
    let c = &mut st.container_statuses.as_mut().unwrap()[0];
    c.state
        .as_mut()
        .unwrap()
        .terminated
        .as_mut()
        .unwrap()
        .exit_code = code;
}

#[tokio::test]
async fn pod_failure_policy_ignores_and_fails_the_job() {
    let store = FakeStore::new();
    apply(
        &store,
        &job("  backoffLimit: 0\n  podFailurePolicy:\n    rules:\n    - {action: Ignore, onExitCodes: {operator: In, values: [3]}}\n    - {action: FailJob, onExitCodes: {containerName: c, operator: In, values: [42]}}"),
    );
    pass(&store).await;
    let p1 = active_pods(&store)[0].clone();
    // Ignored: not counted (backoffLimit 0 would fail the Job), replaced at once.
    fail_with(&store, &p1, 3);
    pass(&store).await;
    assert_eq!(condition(&store, "Failed"), None);
    assert_eq!(status(&store).failed, None);
    let p2 = active_pods(&store);
    assert_eq!(p2.len(), 1, "replaced without back-off");
    fail_with(&store, &p2[0], 42);
    pass(&store).await;
    assert_eq!(
        condition(&store, "Failed"),
        Some(("True".into(), "PodFailurePolicy".into()))
    );
    assert_eq!(
        condition(&store, "FailureTarget"),
        Some(("True".into(), "PodFailurePolicy".into()))
    );
    let msg = status(&store)
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Failed")
        .unwrap()
        .message
        .unwrap();
    assert_eq!(
        msg,
        format!("Container c for pod default/{} failed with exit code 42 matching FailJob rule at index 1", p2[0])
    );
}

#[tokio::test]
async fn success_policy_completes_an_indexed_job_early() {
    let store = FakeStore::new();
    apply(
        &store,
        &job("  completions: 5\n  parallelism: 5\n  completionMode: Indexed\n  successPolicy:\n    rules: [{succeededIndexes: '0', succeededCount: 1}]"),
    );
    pass(&store).await;
    let zero = store
        .names("Pod")
        .into_iter()
        .find(|n| n.starts_with("pi-0-"))
        .unwrap();
    finish(&store, &zero, "Succeeded");
    pass(&store).await;
    assert_eq!(
        condition(&store, "SuccessCriteriaMet"),
        Some(("True".into(), "SuccessPolicy".into()))
    );
    assert_eq!(
        condition(&store, "Complete"),
        Some(("True".into(), "SuccessPolicy".into()))
    );
    assert!(
        active_pods(&store).is_empty(),
        "the other indexes are stopped"
    );
}

#[tokio::test]
async fn backoff_limit_per_index_fails_indexes_then_the_job() {
    let store = FakeStore::new();
    apply(
        &store,
        &job("  completions: 2\n  parallelism: 2\n  completionMode: Indexed\n  backoffLimitPerIndex: 0"),
    );
    pass(&store).await;
    for n in store.names("Pod") {
        if n.starts_with("pi-0-") {
            finish(&store, &n, "Failed");
        } else {
            finish(&store, &n, "Succeeded");
        }
    }
    pass(&store).await;
    assert_eq!(status(&store).failed_indexes.as_deref(), Some("0"));
    assert_eq!(
        condition(&store, "Failed"),
        Some(("True".into(), "FailedIndexes".into()))
    );
}
