//! Foreground cascading deletion against the fake store: the owner waits, marked, until its
//! dependents (and theirs) are gone; a dependent without blockOwnerDeletion does not hold it.

use kinglet_manifest::Object;

use super::apply;
use crate::common::controller_ref;
use crate::fake::FakeStore;
use crate::foreground;

const DEPLOY: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: c, image: busybox}]}\n";

fn owned(store: &FakeStore, yaml: &str, owner: &Object, block: bool) -> Object {
    let mut o = super::object(yaml);
    let (api, kind) = match owner {
        Object::Deployment(_) => ("apps/v1", "Deployment"),
        _ => ("apps/v1", "ReplicaSet"),
    };
    let mut r = controller_ref(api, kind, owner.meta());
    r.block_owner_deletion = block.then_some(true);
    o.meta_mut().owner_references = Some(vec![r]);
    store.put(o)
}

fn present(store: &FakeStore, kind: &'static str, name: &str) -> bool {
    store.obj(kind, name).is_some()
}

#[tokio::test]
async fn the_owner_goes_after_its_dependents_and_theirs() {
    let store = FakeStore::new();
    let dep = apply(&store, DEPLOY);
    let rs_yaml = DEPLOY
        .replace("kind: Deployment", "kind: ReplicaSet")
        .replace("name: web}", "name: web-1}");
    let rs = owned(&store, &rs_yaml, &dep, true);
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: web-1-a}\nspec: {containers: [{name: c, image: busybox}]}\n";
    owned(&store, pod, &rs, true);
    // Another dependent that does not block the owner's deletion.
    let loose = "apiVersion: v1\nkind: Pod\nmetadata: {name: loose}\nspec: {containers: [{name: c, image: busybox}]}\n";
    owned(&store, loose, &dep, false);
    foreground::mark(&store, &dep.key()).await.unwrap();
    let Some(marked) = store.obj("Deployment", "web") else {
        panic!()
    };
    assert!(foreground::waiting(marked.meta()));
    let mut order = Vec::new();
    for round in 0..10 {
        foreground::collect(&store).await;
        let state = (
            present(&store, "Deployment", "web"),
            present(&store, "ReplicaSet", "web-1"),
            present(&store, "Pod", "web-1-a"),
        );
        if !state.0 {
            assert_eq!(state, (false, false, false), "round {round}");
            break;
        }
        order.push(state);
    }
    assert!(!present(&store, "Deployment", "web"), "{order:?}");
    assert!(
        !present(&store, "Pod", "loose"),
        "the loose dependent is deleted too"
    );
    // The Deployment stayed while its ReplicaSet waited for its pod.
    assert!(order.contains(&(true, true, false)), "{order:?}");
    assert!(order.contains(&(true, true, true)), "{order:?}");
}

#[tokio::test]
async fn an_owner_without_dependents_goes_at_once_and_controllers_leave_it() {
    use kinglet_kubelet::harness::{Action, Reconciler};
    let store = std::sync::Arc::new(FakeStore::new());
    let rs = DEPLOY
        .replace("kind: Deployment", "kind: ReplicaSet")
        .replace("name: web}", "name: lone}");
    let o = apply(&store, &rs);
    foreground::mark(&*store, &o.key()).await.unwrap();
    // The ReplicaSet controller creates no pod for a ReplicaSet being deleted.
    let rc = crate::replicaset::ReplicaSetReconciler::new(store.clone());
    let mut st = crate::replicaset::RsState::default();
    let a = rc.reconcile(&o.key(), &mut st).await.unwrap();
    assert!(matches!(a, Action::AwaitChange), "{a:?}");
    assert!(store.names("Pod").is_empty());
    foreground::collect(&*store).await;
    assert!(!present(&store, "ReplicaSet", "lone"));
}
