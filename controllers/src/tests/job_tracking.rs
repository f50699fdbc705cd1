//! Counting finished Job pods once (the `job-tracking` finalizer and
//! `uncountedTerminatedPods`): a pass reads only the pods not counted yet, and a daemon killed
//! between recording and counting neither loses nor double-counts a pod.

use std::sync::atomic::Ordering;

use kinglet_manifest::Object;

use super::apply;
use super::job::{active_pods, finish, job, pass, status};
use crate::fake::FakeStore;
use crate::job_tracking::{has_finalizer, TRACKING_FINALIZER};

fn finalized(store: &FakeStore, pod: &str) -> bool {
    let Some(Object::Pod(p)) = store.obj("Pod", pod) else {
        panic!("no pod {pod}")
    };
    has_finalizer(&p.metadata)
}

#[tokio::test]
async fn a_pass_reads_only_the_pods_not_counted_yet() {
    let store = FakeStore::new();
    apply(&store, &job("  completions: 40\n  parallelism: 2"));
    pass(&store).await;
    let mut rounds = 0;
    while status(&store).completion_time.is_none() {
        rounds += 1;
        assert!(rounds < 100, "the Job completes");
        let active = active_pods(&store);
        assert!(active.len() <= 2, "{active:?}");
        for n in &active {
            assert!(
                finalized(&store, n),
                "a new pod carries {TRACKING_FINALIZER}"
            );
            finish(&store, n, "Succeeded");
        }
        store.status_reads.store(0, Ordering::Relaxed);
        pass(&store).await;
        let reads = store.status_reads.load(Ordering::Relaxed);
        // The two just finished; none of those counted before.
        assert!(reads <= 2, "pass {rounds} read {reads} pod statuses");
        let st = status(&store);
        let u = st.uncounted_terminated_pods.unwrap_or_default();
        assert_eq!((u.succeeded, u.failed), (None, None), "all counted");
    }
    let st = status(&store);
    assert_eq!(st.succeeded, Some(40));
    assert_eq!(store.names("Pod").len(), 40, "finished pods are kept");
    assert!(store.names("Pod").iter().all(|n| !finalized(&store, n)));
}

#[tokio::test]
async fn a_pod_recorded_before_a_crash_is_counted_once() {
    let store = FakeStore::new();
    apply(&store, &job("  completions: 3\n  parallelism: 1"));
    pass(&store).await;
    let p = active_pods(&store)[0].clone();
    finish(&store, &p, "Succeeded");
    // The daemon recorded the pod as uncounted, then died before removing its finalizer.
    let Some(Object::Pod(pod)) = store.obj("Pod", &p) else {
        panic!()
    };
    let uid = pod.metadata.uid.clone().unwrap();
    let Some(Object::Job(mut j)) = store.obj("Job", "pi") else {
        panic!()
    };
    let st = j.status.get_or_insert_with(Default::default);
    st.uncounted_terminated_pods = Some(k8s_openapi::api::batch::v1::UncountedTerminatedPods {
        succeeded: Some(vec![uid]),
        failed: None,
    });
    store.put(Object::Job(j));
    pass(&store).await;
    assert_eq!(status(&store).succeeded, Some(1), "counted once");
    assert!(!finalized(&store, &p));
    // Another pass changes nothing.
    pass(&store).await;
    assert_eq!(status(&store).succeeded, Some(1));
    assert_eq!(active_pods(&store).len(), 1, "the next completion runs");
}

#[tokio::test]
async fn pods_the_job_deletes_are_released_and_not_counted() {
    let store = FakeStore::new();
    apply(&store, &job("  completions: 4\n  parallelism: 2"));
    pass(&store).await;
    assert_eq!(active_pods(&store).len(), 2);
    apply(
        &store,
        &job("  completions: 4\n  parallelism: 2\n  suspend: true"),
    );
    pass(&store).await;
    assert!(
        store.names("Pod").is_empty(),
        "suspend deletes the active pods"
    );
    let st = status(&store);
    assert_eq!((st.succeeded, st.failed, st.active), (None, None, None));
}
