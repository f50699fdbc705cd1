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

/// A store that keeps every status the Job was written with.
struct Recording {
    inner: FakeStore,
    statuses: std::sync::Mutex<Vec<k8s_openapi::api::batch::v1::JobStatus>>,
}

#[async_trait::async_trait]
impl crate::Store for Recording {
    async fn list(&self, kind: &str) -> Vec<Object> {
        self.inner.list(kind).await
    }
    async fn get(&self, key: &kinglet_manifest::ObjectKey) -> Option<Object> {
        self.inner.get(key).await
    }
    async fn create(&self, obj: Object) -> Result<Object, crate::ControllerError> {
        self.inner.create(obj).await
    }
    async fn modify(
        &self,
        key: &kinglet_manifest::ObjectKey,
        bump: bool,
        f: crate::Modify,
    ) -> Result<Option<Object>, crate::ControllerError> {
        let out = self.inner.modify(key, bump, f).await?;
        if let Some(Object::Job(j)) = &out {
            let mut all = self.statuses.lock().unwrap();
            all.push(j.status.clone().unwrap_or_default());
        }
        Ok(out)
    }
    async fn delete(
        &self,
        key: &kinglet_manifest::ObjectKey,
    ) -> Result<bool, crate::ControllerError> {
        self.inner.delete(key).await
    }
    async fn pod_status(
        &self,
        pod: &k8s_openapi::api::core::v1::Pod,
    ) -> k8s_openapi::api::core::v1::PodStatus {
        self.inner.pod_status(pod).await
    }
    fn now(&self) -> k8s_openapi::jiff::Timestamp {
        self.inner.now()
    }
}

#[tokio::test]
async fn complete_is_written_only_with_the_final_counts() {
    let store = Recording {
        inner: FakeStore::new(),
        statuses: Default::default(),
    };
    apply(&store.inner, &job("  completions: 2\n  parallelism: 2"));
    pass(&store.inner).await;
    for n in active_pods(&store.inner) {
        finish(&store.inner, &n, "Succeeded");
    }
    let Some(Object::Job(j)) = store.inner.obj("Job", "pi") else {
        panic!("no job")
    };
    let key = kinglet_manifest::ObjectKey {
        kind: "Job",
        namespace: "default".into(),
        name: "pi".into(),
    };
    let mut mem = crate::job_tracking::JobMemory::default();
    crate::job::sync(&store, &key, &j, &mut mem).await.unwrap();
    let writes = store.statuses.lock().unwrap().clone();
    assert!(writes.len() >= 2, "recorded, then counted: {writes:?}");
    for st in &writes {
        let complete = st
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Complete" && c.status == "True");
        let u = st.uncounted_terminated_pods.clone().unwrap_or_default();
        if complete {
            assert_eq!(st.succeeded, Some(2), "{st:?}");
            assert_eq!((u.succeeded, u.failed), (None, None), "{st:?}");
            assert!(st.completion_time.is_some());
        } else {
            assert!(st.completion_time.is_none(), "{st:?}");
        }
    }
    let last = writes.last().unwrap();
    assert!(
        last.conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Complete"),
        "{last:?}"
    );
    // Meanwhile SuccessCriteriaMet says the Job met its criteria, as upstream's.
    let first = &writes[0];
    let met = first.conditions.iter().flatten();
    assert!(
        met.clone().any(|c| c.type_ == "SuccessCriteriaMet"),
        "{first:?}"
    );
    assert!(!met.clone().any(|c| c.type_ == "Complete"), "{first:?}");
}
