use kinglet_kubelet::namespaces::{mark_terminating, namespace_key};
use kinglet_manifest::Object;

use super::object;
use crate::fake::FakeStore;
use crate::namespace::sync;

fn phase(store: &FakeStore, name: &str) -> Option<String> {
    match store.objects.lock().unwrap().get(&namespace_key(name)) {
        Some(Object::Namespace(n)) => n.status.as_ref()?.phase.clone(),
        _ => None,
    }
}

fn count_in(store: &FakeStore, ns: &str) -> usize {
    store
        .objects
        .lock()
        .unwrap()
        .keys()
        .filter(|k| k.namespace == ns)
        .count()
}

#[tokio::test]
async fn built_ins_exist_and_a_deleted_namespace_is_emptied_then_removed() {
    let store = FakeStore::new();
    sync(&store).await.unwrap();
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert_eq!(phase(&store, n).as_deref(), Some("Active"), "{n}");
    }
    store.put(object(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a}",
    ));
    sync(&store).await.unwrap();
    assert_eq!(phase(&store, "team-a").as_deref(), Some("Active"));
    let deploy = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: team-a}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: c, image: busybox}]}";
    store.put(object(deploy));
    store.put(object("apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: team-a}\nspec: {containers: [{name: c, image: busybox}]}"));
    store.put(object(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: team-a}",
    ));
    store.put(object(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: keep}",
    ));
    // `kinglet delete ns team-a`.
    {
        let mut objs = store.objects.lock().unwrap();
        let o = objs.get_mut(&namespace_key("team-a")).unwrap();
        mark_terminating(
            o,
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(store_now()),
        )
        .unwrap();
    }
    assert_eq!(phase(&store, "team-a").as_deref(), Some("Terminating"));
    // Owners first, one kind per round; the namespace stays Terminating meanwhile.
    sync(&store).await.unwrap();
    assert_eq!(count_in(&store, "team-a"), 2, "the Deployment went first");
    assert_eq!(phase(&store, "team-a").as_deref(), Some("Terminating"));
    for _ in 0..3 {
        sync(&store).await.unwrap();
    }
    assert_eq!(count_in(&store, "team-a"), 0);
    assert!(store
        .objects
        .lock()
        .unwrap()
        .get(&namespace_key("team-a"))
        .is_none());
    assert!(
        store.obj("ConfigMap", "keep").is_some(),
        "other namespaces untouched"
    );
}

fn store_now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap()
}
