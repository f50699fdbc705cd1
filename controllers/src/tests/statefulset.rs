use kinglet_manifest::{Object, ObjectKey};

use super::apply;
use crate::fake::FakeStore;
use crate::statefulset::{
    ordinal_of, sync, StsState, POD_INDEX_LABEL, POD_NAME_LABEL, REVISION_LABEL,
};

fn sts(replicas: i32, extra: &str, env: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: web}}
spec:
  serviceName: nginx
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
{extra}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: c, image: busybox, env: [{{name: V, value: '{env}'}}], volumeMounts: [{{name: www, mountPath: /data}}]}}]
  volumeClaimTemplates:
  - metadata: {{name: www}}
    spec: {{accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 1Gi}}}}}}
"#
    )
}

fn key() -> ObjectKey {
    ObjectKey {
        kind: "StatefulSet",
        namespace: "default".into(),
        name: "web".into(),
    }
}

async fn pass(store: &FakeStore, st: &mut StsState) {
    let Some(Object::StatefulSet(s)) = store.obj("StatefulSet", "web") else {
        panic!("no sts")
    };
    sync(store, &key(), &s, st).await.unwrap();
}

fn pods(store: &FakeStore) -> Vec<String> {
    store.names("Pod")
}

fn pod(store: &FakeStore, name: &str) -> k8s_openapi::api::core::v1::Pod {
    match store.obj("Pod", name) {
        Some(Object::Pod(p)) => *p,
        _ => panic!("no pod {name}"),
    }
}

fn revision(store: &FakeStore, name: &str) -> String {
    pod(store, name).metadata.labels.unwrap()[REVISION_LABEL].clone()
}

fn status(store: &FakeStore) -> k8s_openapi::api::apps::v1::StatefulSetStatus {
    match store.obj("StatefulSet", "web") {
        Some(Object::StatefulSet(s)) => s.status.unwrap(),
        _ => panic!(),
    }
}

fn remove_pod(store: &FakeStore, name: &str) {
    store.statuses.lock().unwrap().remove(name);
    store.objects.lock().unwrap().remove(&ObjectKey {
        kind: "Pod",
        namespace: "default".into(),
        name: name.into(),
    });
}

fn terminating(store: &FakeStore, name: &str) -> bool {
    pod(store, name).metadata.deletion_timestamp.is_some()
}

/// Passes until nothing changes, every pod made Running and Ready between passes.
async fn settle(store: &FakeStore, st: &mut StsState) {
    for _ in 0..20 {
        store.reap();
        store.all_ready();
        pass(store, st).await;
    }
    store.all_ready();
    pass(store, st).await;
}

#[test]
fn ordinals_are_parsed_as_upstream() {
    assert_eq!(ordinal_of("web", "web-0"), Some(0));
    assert_eq!(ordinal_of("web", "web-12"), Some(12));
    assert_eq!(ordinal_of("web", "web-01"), None);
    assert_eq!(ordinal_of("web", "web-x"), None);
    assert_eq!(ordinal_of("web", "webby-1"), None);
    assert_eq!(ordinal_of("web", "web-"), None);
}

#[tokio::test]
async fn ordered_ready_creates_one_at_a_time_with_identity_and_claims() {
    let store = FakeStore::new();
    apply(&store, &sts(3, "", "1"));
    let mut st = StsState::default();
    pass(&store, &mut st).await;
    assert_eq!(pods(&store), ["web-0"]);
    assert_eq!(store.names("PersistentVolumeClaim"), ["www-web-0"]);
    // Not Ready yet: no web-1, however many passes.
    pass(&store, &mut st).await;
    store.set_status("web-0", "Running", false);
    pass(&store, &mut st).await;
    assert_eq!(pods(&store), ["web-0"]);
    store.set_status("web-0", "Running", true);
    pass(&store, &mut st).await;
    assert_eq!(pods(&store), ["web-0", "web-1"]);
    store.set_status("web-1", "Running", true);
    pass(&store, &mut st).await;
    assert_eq!(pods(&store), ["web-0", "web-1", "web-2"]);
    let p = pod(&store, "web-2");
    let spec = p.spec.unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("web-2"));
    assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
    let labels = p.metadata.labels.unwrap();
    assert_eq!(labels[POD_NAME_LABEL], "web-2");
    assert_eq!(labels[POD_INDEX_LABEL], "2");
    assert!(labels[REVISION_LABEL].starts_with("web-"));
    let vols = spec.volumes.unwrap();
    let claim = vols[0].persistent_volume_claim.as_ref().unwrap();
    assert_eq!(
        (vols[0].name.as_str(), claim.claim_name.as_str()),
        ("www", "www-web-2")
    );
    store.set_status("web-2", "Running", true);
    pass(&store, &mut st).await;
    let s = status(&store);
    assert_eq!(
        (s.replicas, s.ready_replicas, s.available_replicas),
        (3, Some(3), Some(3))
    );
    assert_eq!(s.current_revision, s.update_revision);
    assert_eq!(s.observed_generation, Some(1));
    assert_eq!(store.names("ControllerRevision").len(), 1);
}

#[tokio::test]
async fn parallel_creates_all_without_waiting() {
    let store = FakeStore::new();
    apply(&store, &sts(3, "  podManagementPolicy: Parallel", "1"));
    let mut st = StsState::default();
    pass(&store, &mut st).await;
    assert_eq!(pods(&store), ["web-0", "web-1", "web-2"]);
    assert_eq!(store.names("PersistentVolumeClaim").len(), 3);
    // Scale down: both condemned pods at once.
    apply(&store, &sts(1, "  podManagementPolicy: Parallel", "1"));
    pass(&store, &mut st).await;
    assert!(terminating(&store, "web-1") && terminating(&store, "web-2"));
}

#[tokio::test]
async fn scale_down_goes_in_reverse_one_at_a_time_and_keeps_claims() {
    let store = FakeStore::new();
    apply(&store, &sts(3, "", "1"));
    let mut st = StsState::default();
    settle(&store, &mut st).await;
    apply(&store, &sts(1, "", "1"));
    pass(&store, &mut st).await;
    assert!(terminating(&store, "web-2") && !terminating(&store, "web-1"));
    // web-2 still terminating: web-1 waits.
    pass(&store, &mut st).await;
    assert!(!terminating(&store, "web-1"));
    store.reap();
    pass(&store, &mut st).await;
    assert!(terminating(&store, "web-1"));
    store.reap();
    pass(&store, &mut st).await;
    assert_eq!(pods(&store), ["web-0"]);
    // Retain (the default): every claim stays.
    assert_eq!(store.names("PersistentVolumeClaim").len(), 3);
    assert_eq!(status(&store).replicas, 1);
}

#[tokio::test]
async fn an_unready_pod_blocks_ordered_scale_down() {
    let store = FakeStore::new();
    apply(&store, &sts(3, "", "1"));
    let mut st = StsState::default();
    settle(&store, &mut st).await;
    store.set_status("web-0", "Running", false);
    apply(&store, &sts(2, "", "1"));
    pass(&store, &mut st).await;
    assert!(
        !terminating(&store, "web-2"),
        "web-0 is not Ready: no scale-down"
    );
}

#[tokio::test]
async fn rolling_update_goes_in_reverse_ordinal_order() {
    let store = FakeStore::new();
    apply(&store, &sts(3, "", "1"));
    let mut st = StsState::default();
    settle(&store, &mut st).await;
    let old = revision(&store, "web-0");
    apply(&store, &sts(3, "", "2"));
    pass(&store, &mut st).await;
    assert!(terminating(&store, "web-2") && !terminating(&store, "web-1"));
    store.reap();
    pass(&store, &mut st).await;
    let new = revision(&store, "web-2");
    assert_ne!(new, old);
    // web-2 not Ready: web-1 keeps its revision.
    pass(&store, &mut st).await;
    assert!(!terminating(&store, "web-1"));
    let s = status(&store);
    assert_eq!(
        (s.current_revision.as_deref(), s.update_revision.as_deref()),
        (Some(&*old), Some(&*new))
    );
    assert_eq!((s.current_replicas, s.updated_replicas), (Some(2), Some(1)));
    store.set_status("web-2", "Running", true);
    pass(&store, &mut st).await;
    assert!(terminating(&store, "web-1"));
    settle(&store, &mut st).await;
    for p in ["web-0", "web-1", "web-2"] {
        assert_eq!(revision(&store, p), new);
    }
    let s = status(&store);
    assert_eq!(s.current_revision.as_deref(), Some(&*new));
    assert_eq!(s.current_replicas, Some(3));
}

#[tokio::test]
async fn partition_holds_lower_ordinals_at_the_current_revision() {
    let store = FakeStore::new();
    let part = "  updateStrategy: {type: RollingUpdate, rollingUpdate: {partition: 2}}";
    apply(&store, &sts(3, part, "1"));
    let mut st = StsState::default();
    settle(&store, &mut st).await;
    let old = revision(&store, "web-0");
    apply(&store, &sts(3, part, "2"));
    settle(&store, &mut st).await;
    let new = revision(&store, "web-2");
    assert_ne!(new, old);
    assert_eq!(
        (revision(&store, "web-0"), revision(&store, "web-1")),
        (old.clone(), old.clone())
    );
    let s = status(&store);
    assert_eq!(
        (s.updated_replicas, s.current_revision.as_deref()),
        (Some(1), Some(&*old))
    );
    // A pod below the partition that is deleted comes back at the current revision, with its
    // template.
    remove_pod(&store, "web-0");
    settle(&store, &mut st).await;
    assert_eq!(revision(&store, "web-0"), old);
    let env = pod(&store, "web-0").spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    assert_eq!(env[0].value.as_deref(), Some("1"));
}

#[tokio::test]
async fn on_delete_updates_only_deleted_pods() {
    let store = FakeStore::new();
    let od = "  updateStrategy: {type: OnDelete}";
    apply(&store, &sts(3, od, "1"));
    let mut st = StsState::default();
    settle(&store, &mut st).await;
    let old = revision(&store, "web-1");
    apply(&store, &sts(3, od, "2"));
    settle(&store, &mut st).await;
    for p in ["web-0", "web-1", "web-2"] {
        assert_eq!(revision(&store, p), old, "OnDelete: {p} untouched");
    }
    remove_pod(&store, "web-1");
    settle(&store, &mut st).await;
    assert_ne!(revision(&store, "web-1"), old);
    assert_eq!(revision(&store, "web-0"), old);
    assert_eq!(status(&store).updated_replicas, Some(1));
}

#[tokio::test]
async fn retention_policy_deletes_claims_when_scaled_and_with_the_set() {
    let store = FakeStore::new();
    let policy =
        "  persistentVolumeClaimRetentionPolicy: {whenScaled: Delete, whenDeleted: Delete}";
    apply(&store, &sts(3, policy, "1"));
    let mut st = StsState::default();
    settle(&store, &mut st).await;
    assert_eq!(store.names("PersistentVolumeClaim").len(), 3);
    apply(&store, &sts(1, policy, "1"));
    settle(&store, &mut st).await;
    assert_eq!(pods(&store), ["web-0"]);
    assert_eq!(store.names("PersistentVolumeClaim"), ["www-web-0"]);
    // whenDeleted: Delete: the set owns the claim; deleting the set collects it.
    store.objects.lock().unwrap().remove(&key());
    crate::gc::collect(&store).await;
    assert!(store.names("PersistentVolumeClaim").is_empty());
    assert!(store.names("ControllerRevision").is_empty());
}

#[tokio::test]
async fn retain_keeps_claims_after_the_set_is_deleted() {
    let store = FakeStore::new();
    apply(&store, &sts(2, "", "1"));
    let mut st = StsState::default();
    settle(&store, &mut st).await;
    store.objects.lock().unwrap().remove(&key());
    crate::gc::collect(&store).await;
    assert_eq!(store.names("PersistentVolumeClaim").len(), 2);
    assert!(store.names("Pod").is_empty());
}

#[tokio::test]
async fn failed_pods_are_replaced() {
    let store = FakeStore::new();
    apply(&store, &sts(2, "", "1"));
    let mut st = StsState::default();
    settle(&store, &mut st).await;
    store.set_status("web-1", "Failed", false);
    pass(&store, &mut st).await;
    assert!(terminating(&store, "web-1"));
    settle(&store, &mut st).await;
    assert_eq!(pods(&store), ["web-0", "web-1"]);
    assert!(!terminating(&store, "web-1"));
}

#[test]
fn max_unavailable_deletes_several_outdated_pods_at_once() {
    use crate::statefulset::plan::{plan, Params, SetPod, Step, Strategy};
    let pod = |o: i32, rev: &str| SetPod {
        ordinal: o,
        name: format!("web-{o}"),
        revision: rev.into(),
        running_ready: true,
        available: true,
        terminal: false,
        terminating: false,
    };
    let mut p = Params {
        start: 0,
        replicas: 4,
        parallel: false,
        strategy: Strategy::Rolling {
            partition: 0,
            max_unavailable: 2,
        },
        current_revision: "a".into(),
        update_revision: "b".into(),
    };
    let pods: Vec<SetPod> = (0..4).map(|o| pod(o, "a")).collect();
    let deleted = |steps: Vec<Step>| -> Vec<i32> {
        steps
            .into_iter()
            .filter_map(|s| match s {
                Step::Delete { ordinal, .. } => Some(ordinal),
                Step::Create { .. } => None,
            })
            .collect()
    };
    assert_eq!(deleted(plan(&p, &pods)), [3, 2]);
    // One already unavailable: one more.
    let mut one_down = pods.clone();
    one_down[3].revision = "b".into();
    one_down[3].available = false;
    one_down[3].running_ready = false;
    p.parallel = true;
    assert_eq!(deleted(plan(&p, &one_down)), [2]);
    // maxUnavailable 1 (the default): one at a time, the highest first.
    p.strategy = Strategy::Rolling {
        partition: 0,
        max_unavailable: 1,
    };
    p.parallel = false;
    assert_eq!(deleted(plan(&p, &pods)), [3]);
    // Partition 3: ordinals below it are left alone.
    p.strategy = Strategy::Rolling {
        partition: 3,
        max_unavailable: 1,
    };
    let mut done = pods.clone();
    done[3].revision = "b".into();
    assert!(deleted(plan(&p, &done)).is_empty());
}

#[tokio::test]
async fn min_ready_seconds_holds_the_next_ordinal_until_available() {
    let store = FakeStore::new();
    apply(&store, &sts(2, "  minReadySeconds: 10", "1"));
    let mut st = StsState::default();
    pass(&store, &mut st).await;
    store.set_status("web-0", "Running", true);
    pass(&store, &mut st).await;
    assert_eq!(pods(&store), ["web-0"], "Ready, not yet available");
    let s = status(&store);
    assert_eq!((s.ready_replicas, s.available_replicas), (Some(1), Some(0)));
    store.advance(10);
    pass(&store, &mut st).await;
    assert_eq!(pods(&store), ["web-0", "web-1"]);
    assert_eq!(status(&store).available_replicas, Some(1));
}
