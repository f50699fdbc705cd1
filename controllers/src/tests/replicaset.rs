use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kinglet_kubelet::harness::Action;
use kinglet_manifest::{Object, ObjectKey};

use super::apply;
use crate::common::controller_of;
use crate::fake::FakeStore;
use crate::replicaset::{plan, rank_for_deletion, sync, Diff, PodView, RsState};

fn rs_yaml(replicas: i32, min_ready: i32) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata: {{name: web}}
spec:
  replicas: {replicas}
  minReadySeconds: {min_ready}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec: {{containers: [{{name: c, image: busybox}}]}}
"#
    )
}

fn key() -> ObjectKey {
    ObjectKey {
        kind: "ReplicaSet",
        namespace: "default".into(),
        name: "web".into(),
    }
}

async fn pass(store: &FakeStore, st: &mut RsState) -> Action {
    let Some(Object::ReplicaSet(rs)) = store.obj("ReplicaSet", "web") else {
        panic!("no rs")
    };
    sync(store, &key(), &rs, st).await.unwrap()
}

fn status(store: &FakeStore) -> (i32, i32, i32, Option<i64>) {
    let Some(Object::ReplicaSet(rs)) = store.obj("ReplicaSet", "web") else {
        panic!()
    };
    let s = rs.status.unwrap();
    (
        s.replicas,
        s.ready_replicas.unwrap(),
        s.available_replicas.unwrap(),
        s.observed_generation,
    )
}

fn view(name: &str, phase_rank: u8, ready: Option<i64>, restarts: i32, created: i64) -> PodView {
    PodView {
        name: name.into(),
        uid: name.into(),
        phase_rank,
        ready: ready.is_some(),
        ready_since: ready.map(|s| Timestamp::from_second(s).unwrap()),
        restarts,
        created: Some(Timestamp::from_second(created).unwrap()),
    }
}

#[test]
fn deletion_ranking_follows_upstream() {
    let pending = view("pending", 0, None, 0, 1);
    let not_ready = view("not-ready", 2, None, 0, 1);
    let ready_new = view("ready-recently", 2, Some(100), 0, 1);
    let ready_old = view("ready-long", 2, Some(10), 0, 1);
    let restarted = view("restarted", 2, Some(10), 5, 1);
    let newest = view("newest", 2, Some(10), 0, 50);
    let mut all = vec![
        ready_old.clone(),
        newest.clone(),
        restarted.clone(),
        ready_new.clone(),
        not_ready.clone(),
        pending.clone(),
    ];
    all.sort_by(rank_for_deletion);
    let order: Vec<&str> = all.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        order,
        [
            "pending",
            "not-ready",
            "ready-recently",
            "restarted",
            "newest",
            "ready-long"
        ]
    );
    assert_eq!(
        plan(4, &all),
        Diff::Delete(vec!["pending".into(), "not-ready".into()])
    );
    assert_eq!(plan(8, &all), Diff::Create(2));
    assert_eq!(plan(6, &all), Diff::None);
}

#[tokio::test]
async fn creates_owned_pods_and_reports_status_with_min_ready_seconds() {
    let store = FakeStore::new();
    apply(&store, &rs_yaml(3, 10));
    let mut st = RsState::default();
    pass(&store, &mut st).await;
    let pods = store.names("Pod");
    assert_eq!(pods.len(), 3, "{pods:?}");
    for name in &pods {
        let suffix = name.strip_prefix("web-").expect("named <rs>-<suffix>");
        assert_eq!(suffix.len(), 5, "{name}");
        assert!(
            suffix
                .bytes()
                .all(|b| crate::common::ALPHANUMS.contains(&b)),
            "{name}"
        );
        let Some(Object::Pod(p)) = store.obj("Pod", name) else {
            panic!()
        };
        let r = controller_of(&p.metadata).expect("controller ref");
        assert_eq!(
            (r.kind.as_str(), r.name.as_str(), r.controller),
            ("ReplicaSet", "web", Some(true))
        );
        assert_eq!(p.metadata.labels.unwrap()["app"], "web");
    }
    assert_eq!(status(&store), (3, 0, 0, Some(1)));
    store.all_ready();
    let a = pass(&store, &mut st).await;
    assert_eq!(
        status(&store),
        (3, 3, 0, Some(1)),
        "ready but not yet available"
    );
    assert!(
        matches!(a, Action::Requeue(d) if d.as_secs() == 10),
        "{a:?}"
    );
    store.advance(9);
    pass(&store, &mut st).await;
    assert_eq!(status(&store).2, 0);
    store.advance(1);
    pass(&store, &mut st).await;
    assert_eq!(status(&store), (3, 3, 3, Some(1)));
    // A second pass changes nothing.
    pass(&store, &mut st).await;
    assert_eq!(store.names("Pod"), pods);
}

#[tokio::test]
async fn scale_down_deletes_not_ready_pods_first() {
    let store = FakeStore::new();
    apply(&store, &rs_yaml(4, 0));
    let mut st = RsState::default();
    pass(&store, &mut st).await;
    let pods = store.names("Pod");
    store.all_ready();
    store.set_status(&pods[1], "Running", false);
    store.set_status(&pods[3], "Pending", false);
    pass(&store, &mut st).await;
    apply(&store, &rs_yaml(2, 0));
    pass(&store, &mut st).await;
    let left = store.names("Pod");
    assert_eq!(left, vec![pods[0].clone(), pods[2].clone()]);
    assert_eq!(status(&store), (2, 2, 2, Some(2)));
    apply(&store, &rs_yaml(0, 0));
    pass(&store, &mut st).await;
    assert!(store.names("Pod").is_empty());
}

#[tokio::test]
async fn adopts_matching_orphans_and_releases_pods_that_stop_matching() {
    let store = FakeStore::new();
    let orphan = |name: &str, app: &str| {
        Object::Pod(Box::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(BTreeMap::from([("app".to_string(), app.to_string())])),
                ..Default::default()
            },
            spec: Some(Default::default()),
            status: None,
        }))
    };
    store.put(orphan("lonely", "web"));
    store.put(orphan("other", "db"));
    apply(&store, &rs_yaml(2, 0));
    let mut st = RsState::default();
    pass(&store, &mut st).await;
    let Some(Object::Pod(p)) = store.obj("Pod", "lonely") else {
        panic!()
    };
    assert_eq!(controller_of(&p.metadata).unwrap().name, "web", "adopted");
    let Some(Object::Pod(p)) = store.obj("Pod", "other") else {
        panic!()
    };
    assert!(
        p.metadata.owner_references.is_none(),
        "not matching: left alone"
    );
    assert_eq!(
        store.names("Pod").len(),
        3,
        "one created next to the adopted one"
    );
    // Relabel the adopted pod: released, and replaced.
    {
        let mut objs = store.objects.lock().unwrap();
        let k = ObjectKey {
            kind: "Pod",
            namespace: "default".into(),
            name: "lonely".into(),
        };
        objs.get_mut(&k).unwrap().meta_mut().labels =
            Some(BTreeMap::from([("app".into(), "debug".into())]));
    }
    pass(&store, &mut st).await;
    let Some(Object::Pod(p)) = store.obj("Pod", "lonely") else {
        panic!()
    };
    assert!(p.metadata.owner_references.unwrap().is_empty(), "released");
    assert_eq!(store.names("Pod").len(), 4);
}

#[tokio::test]
async fn deleting_the_replica_set_deletes_its_pods() {
    let store = FakeStore::new();
    apply(&store, &rs_yaml(2, 0));
    pass(&store, &mut RsState::default()).await;
    store.put(Object::Pod(Box::new(Pod {
        metadata: ObjectMeta {
            name: Some("bare".into()),
            ..Default::default()
        },
        ..Default::default()
    })));
    crate::gc::collect(&store).await;
    assert_eq!(
        store.names("Pod").len(),
        3,
        "owner present: nothing collected"
    );
    store.objects.lock().unwrap().remove(&key());
    crate::gc::collect(&store).await;
    assert_eq!(store.names("Pod"), ["bare"]);
}

#[tokio::test]
async fn pods_naming_a_missing_service_account_are_refused_as_failed_create() {
    let store = FakeStore::new();
    let yaml = rs_yaml(2, 0).replace(
        "spec: {containers:",
        "spec: {serviceAccountName: robot, containers:",
    );
    apply(&store, &yaml);
    let mut st = RsState::default();
    let Some(Object::ReplicaSet(rs)) = store.obj("ReplicaSet", "web") else {
        panic!()
    };
    let e = sync(&store, &key(), &rs, &mut st).await.unwrap_err();
    let e = kinglet_util::chain(&e);
    assert!(e.contains("serviceaccount \"robot\" not found"), "{e}");
    assert!(store.names("Pod").is_empty());
    let events = store.events.lock().unwrap().clone();
    assert!(
        events.iter().any(|(n, t, r, m)| n == "web"
            && t == "Warning"
            && r == "FailedCreate"
            && m.contains("robot")),
        "{events:?}"
    );
    let Some(Object::ReplicaSet(rs)) = store.obj("ReplicaSet", "web") else {
        panic!()
    };
    let c = rs.status.unwrap().conditions.unwrap();
    assert_eq!(
        (c[0].type_.as_str(), c[0].reason.as_deref()),
        ("ReplicaFailure", Some("FailedCreate"))
    );
    // Once the ServiceAccount exists, the pods are created and the condition goes.
    apply(
        &store,
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: robot}\n",
    );
    pass(&store, &mut st).await;
    assert_eq!(store.names("Pod").len(), 2);
    let Some(Object::ReplicaSet(rs)) = store.obj("ReplicaSet", "web") else {
        panic!()
    };
    assert_eq!(rs.status.unwrap().conditions, None);
}
