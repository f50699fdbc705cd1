use std::collections::HashMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kinglet_manifest::{Object, ObjectKey};

use super::apply;
use crate::deployment::rollout::{
    self, recreate_step, resolve_fenceposts, rolling_step, RecreateStep, Rolling, RsView,
};
use crate::deployment::{revision_of, sync, HASH_LABEL, REVISION};
use crate::fake::FakeStore;
use crate::replicaset::{self, RsState};

fn deploy(replicas: i32, image: &str, strategy: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: {replicas}
  revisionHistoryLimit: 2
  selector: {{matchLabels: {{app: web}}}}
  strategy: {strategy}
  template:
    metadata: {{labels: {{app: web}}}}
    spec: {{containers: [{{name: c, image: {image}}}]}}
"#
    )
}

const NO_UNAVAILABLE: &str = "{rollingUpdate: {maxSurge: 25%, maxUnavailable: 0}}";

fn dkey() -> ObjectKey {
    ObjectKey {
        kind: "Deployment",
        namespace: "default".into(),
        name: "web".into(),
    }
}

fn ready_pods(store: &FakeStore) -> usize {
    let names = store.names("Pod");
    let st = store.statuses.lock().unwrap();
    names
        .iter()
        .filter(|n| st.get(*n).is_some_and(crate::common::is_ready))
        .count()
}

/// One round as the daemon makes it: the Deployment, then each ReplicaSet; then the pods
/// come up and a second passes. Returns the fewest Ready pods seen during the round.
async fn round(
    store: &FakeStore,
    rs_states: &mut HashMap<String, RsState>,
    pods_come_up: bool,
) -> usize {
    let Some(Object::Deployment(d)) = store.obj("Deployment", "web") else {
        panic!()
    };
    sync(store, &dkey(), &d).await.unwrap();
    let mut low = ready_pods(store);
    for name in store.names("ReplicaSet") {
        let Some(Object::ReplicaSet(rs)) = store.obj("ReplicaSet", &name) else {
            continue;
        };
        let k = ObjectKey {
            kind: "ReplicaSet",
            namespace: "default".into(),
            name: name.clone(),
        };
        replicaset::sync(store, &k, &rs, rs_states.entry(name).or_default())
            .await
            .unwrap();
        low = low.min(ready_pods(store));
    }
    if pods_come_up {
        store.all_ready();
    }
    store.advance(1);
    low
}

fn status(store: &FakeStore) -> k8s_openapi::api::apps::v1::DeploymentStatus {
    let Some(Object::Deployment(d)) = store.obj("Deployment", "web") else {
        panic!()
    };
    d.status.unwrap()
}

fn condition(store: &FakeStore, t: &str) -> (String, String) {
    let c = status(store)
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == t)
        .unwrap();
    (c.status, c.reason.unwrap())
}

#[test]
fn fenceposts_round_surge_up_and_unavailable_down() {
    let pct = |s: &str| IntOrString::String(s.into());
    assert_eq!(resolve_fenceposts(None, None, 10), Ok((3, 2)));
    assert_eq!(
        resolve_fenceposts(Some(&pct("25%")), Some(&IntOrString::Int(0)), 20),
        Ok((5, 0))
    );
    assert_eq!(
        resolve_fenceposts(Some(&IntOrString::Int(0)), Some(&pct("10%")), 5),
        Ok((0, 1)),
        "both 0: maxUnavailable 1"
    );
    assert_eq!(
        resolve_fenceposts(Some(&pct("1%")), Some(&pct("1%")), 1),
        Ok((1, 0))
    );
    assert_eq!(
        Rolling::new(3, 1, 5).max_unavailable,
        3,
        "capped at replicas"
    );
}

fn rs(name: &str, replicas: i32, available: i32, created: i64) -> RsView {
    RsView {
        name: name.into(),
        replicas,
        actual: replicas,
        ready: available,
        available,
        revision: 0,
        created: Some(k8s_openapi::jiff::Timestamp::from_second(created).unwrap()),
    }
}

#[test]
fn rolling_step_surges_then_scales_old_down_within_availability() {
    let r = Rolling::new(10, 3, 2);
    // The new ReplicaSet grows up to replicas + maxSurge in all.
    assert_eq!(
        rolling_step(&r, &rs("new", 0, 0, 2), &[rs("old", 10, 10, 1)]),
        [("new".to_string(), 3)]
    );
    // At the surge limit: old scaled down keeping 8 available (new pods not yet available).
    assert_eq!(
        rolling_step(&r, &rs("new", 3, 0, 2), &[rs("old", 10, 10, 1)]),
        [("old".to_string(), 8)]
    );
    // Unavailable old pods go first, and oldest ReplicaSet first.
    let old = [rs("a", 2, 0, 1), rs("b", 8, 8, 2)];
    assert_eq!(
        rolling_step(&r, &rs("new", 3, 3, 3), &old),
        [("a".to_string(), 0), ("b".to_string(), 5)]
    );
    assert!(rolling_step(&r, &rs("new", 10, 10, 3), &[rs("old", 0, 0, 1)]).is_empty());
    // Scaled-down Deployment: the new ReplicaSet follows at once.
    assert_eq!(rolling_step(&r, &rs("new", 10, 10, 3), &[]), []);
    assert_eq!(
        rolling_step(&Rolling::new(4, 1, 1), &rs("new", 10, 10, 3), &[]),
        [("new".to_string(), 4)]
    );
}

#[test]
fn recreate_scales_old_down_then_waits_for_their_pods() {
    let old = [rs("old", 3, 3, 1)];
    assert_eq!(
        recreate_step(3, None, &old, 3),
        RecreateStep::ScaleDownOld(vec!["old".into()])
    );
    let idle = [rs("old", 0, 0, 1)];
    assert_eq!(recreate_step(3, None, &idle, 2), RecreateStep::WaitOldPods);
    assert_eq!(recreate_step(3, None, &idle, 0), RecreateStep::ScaleUpNew);
    assert_eq!(
        recreate_step(3, Some(&rs("new", 3, 0, 2)), &idle, 0),
        RecreateStep::Done
    );
}

#[test]
fn template_hash_is_stable_and_ignores_its_own_label() {
    let Object::Deployment(d) = super::object(&deploy(1, "a", NO_UNAVAILABLE)) else {
        panic!()
    };
    let t = d.spec.unwrap().template;
    let h = rollout::template_hash(&t, None);
    assert_eq!(h, rollout::template_hash(&t, None));
    assert!(
        h.bytes().all(|b| crate::common::ALPHANUMS.contains(&b)) && !h.is_empty(),
        "{h}"
    );
    let mut labelled = t.clone();
    labelled
        .metadata
        .as_mut()
        .unwrap()
        .labels
        .as_mut()
        .unwrap()
        .insert(HASH_LABEL.into(), h.clone());
    assert_eq!(rollout::template_hash(&labelled, None), h);
    assert!(rollout::equal_ignore_hash(&t, &labelled));
    assert_ne!(
        rollout::template_hash(&t, Some(1)),
        h,
        "collision count changes the hash"
    );
}

#[tokio::test]
async fn rolling_update_with_max_unavailable_0_keeps_every_replica_ready() {
    let store = FakeStore::new();
    let mut states = HashMap::new();
    apply(&store, &deploy(20, "v1", NO_UNAVAILABLE));
    for _ in 0..6 {
        round(&store, &mut states, true).await;
    }
    let rs1 = store.names("ReplicaSet");
    assert_eq!(rs1.len(), 1);
    assert!(rs1[0].starts_with("web-"), "{rs1:?}");
    assert_eq!(ready_pods(&store), 20);
    let st = status(&store);
    assert_eq!(
        (st.replicas, st.updated_replicas, st.available_replicas),
        (Some(20), Some(20), Some(20))
    );
    assert_eq!(
        condition(&store, "Progressing"),
        ("True".into(), "NewReplicaSetAvailable".into())
    );
    assert_eq!(
        condition(&store, "Available"),
        ("True".into(), "MinimumReplicasAvailable".into())
    );
    let Some(Object::Deployment(d)) = store.obj("Deployment", "web") else {
        panic!()
    };
    assert_eq!(revision_of(&d.metadata), 1);

    apply(&store, &deploy(20, "v2", NO_UNAVAILABLE));
    let mut low = usize::MAX;
    let mut rounds = 0;
    loop {
        low = low.min(round(&store, &mut states, true).await);
        rounds += 1;
        let st = status(&store);
        if st.updated_replicas == Some(20)
            && st.replicas == Some(20)
            && st.available_replicas == Some(20)
        {
            break;
        }
        assert!(rounds < 40, "rollout stuck: {st:?}");
    }
    assert!(low >= 20, "Ready pods fell to {low}");
    assert!(
        store.names("Pod").len() <= 25,
        "never more than replicas + maxSurge"
    );
    let rss = store.names("ReplicaSet");
    assert_eq!(rss.len(), 2);
    let new = rss.iter().find(|n| **n != rs1[0]).unwrap();
    let Some(Object::ReplicaSet(new_rs)) = store.obj("ReplicaSet", new) else {
        panic!()
    };
    assert_eq!(new_rs.metadata.annotations.as_ref().unwrap()[REVISION], "2");
    let hash = new.strip_prefix("web-").unwrap();
    assert_eq!(
        new_rs
            .spec
            .as_ref()
            .unwrap()
            .selector
            .match_labels
            .as_ref()
            .unwrap()[HASH_LABEL],
        hash
    );
    let Some(Object::ReplicaSet(old_rs)) = store.obj("ReplicaSet", &rs1[0]) else {
        panic!()
    };
    assert_eq!(old_rs.spec.unwrap().replicas, Some(0));
    round(&store, &mut states, true).await;
    assert_eq!(
        condition(&store, "Progressing"),
        ("True".into(), "NewReplicaSetAvailable".into())
    );
    let Some(Object::Deployment(d)) = store.obj("Deployment", "web") else {
        panic!()
    };
    assert_eq!(revision_of(&d.metadata), 2);
}

#[tokio::test]
async fn recreate_stops_every_old_pod_before_the_new_ones() {
    let store = FakeStore::new();
    let mut states = HashMap::new();
    apply(&store, &deploy(3, "v1", "{type: Recreate}"));
    for _ in 0..3 {
        round(&store, &mut states, true).await;
    }
    assert_eq!(ready_pods(&store), 3);
    apply(&store, &deploy(3, "v2", "{type: Recreate}"));
    round(&store, &mut states, true).await;
    assert_eq!(
        store.names("ReplicaSet").len(),
        1,
        "no new ReplicaSet while old pods exist"
    );
    assert!(store.names("Pod").is_empty(), "old pods deleted");
    for _ in 0..3 {
        round(&store, &mut states, true).await;
    }
    assert_eq!(store.names("ReplicaSet").len(), 2);
    assert_eq!(ready_pods(&store), 3);
    assert_eq!(status(&store).updated_replicas, Some(3));
}

#[tokio::test]
async fn old_replica_sets_beyond_the_history_limit_are_deleted_and_unavailable_is_reported() {
    let store = FakeStore::new();
    let mut states = HashMap::new();
    for v in ["v1", "v2", "v3", "v4"] {
        apply(&store, &deploy(1, v, "{}"));
        for _ in 0..4 {
            round(&store, &mut states, true).await;
        }
    }
    // revisionHistoryLimit 2: the new one and two old ones.
    let mut revs: Vec<i64> = store
        .names("ReplicaSet")
        .iter()
        .map(|n| match store.obj("ReplicaSet", n) {
            Some(Object::ReplicaSet(rs)) => revision_of(&rs.metadata),
            _ => 0,
        })
        .collect();
    revs.sort();
    assert_eq!(revs, [2, 3, 4]);
    // Pods that never become ready: no minimum availability, no progress.
    apply(&store, &deploy(4, "v4", "{}"));
    for _ in 0..3 {
        round(&store, &mut states, false).await;
    }
    assert_eq!(
        condition(&store, "Available"),
        ("False".into(), "MinimumReplicasUnavailable".into())
    );
    assert_eq!(status(&store).unavailable_replicas, Some(3));
    store.advance(700);
    round(&store, &mut states, false).await;
    assert_eq!(
        condition(&store, "Progressing"),
        ("False".into(), "ProgressDeadlineExceeded".into())
    );
}

/// Pods of image `image` Ready (Running), the others Pending (an image that cannot be pulled).
fn ready_if_image(store: &FakeStore, image: &str) {
    for name in store.names("Pod") {
        let Some(Object::Pod(p)) = store.obj("Pod", &name) else {
            continue;
        };
        let img = p.spec.as_ref().unwrap().containers[0].image.clone();
        if img.as_deref() == Some(image) {
            store.set_status(&name, "Running", true);
        } else {
            store.set_status(&name, "Pending", false);
        }
    }
}

/// `rollout undo` after an update whose pods never become ready (the docs' deployment-update
/// with a bad image): the template goes back to the previous ReplicaSet's, which becomes the
/// new one again (revision 3), and the stalled ReplicaSet is scaled to 0.
#[tokio::test]
async fn undo_of_a_stalled_update_scales_the_stalled_replica_set_down() {
    let store = FakeStore::new();
    let mut states = HashMap::new();
    let strategy = "{type: RollingUpdate}";
    apply(&store, &deploy(2, "v1", strategy));
    for _ in 0..4 {
        round(&store, &mut states, false).await;
        ready_if_image(&store, "v1");
    }
    let rs1 = store.names("ReplicaSet");
    assert_eq!(rs1.len(), 1);
    apply(&store, &deploy(2, "bad", strategy));
    for _ in 0..6 {
        round(&store, &mut states, false).await;
        ready_if_image(&store, "v1");
    }
    assert_eq!(store.names("ReplicaSet").len(), 2);
    assert_eq!(ready_pods(&store), 2, "maxUnavailable 0 keeps both v1 pods");
    // The undo, as the CLI makes it: the old ReplicaSet's template without its hash label.
    let Some(Object::ReplicaSet(old)) = store.obj("ReplicaSet", &rs1[0]) else {
        panic!()
    };
    let mut t = old.spec.unwrap().template.unwrap();
    t.metadata
        .as_mut()
        .unwrap()
        .labels
        .as_mut()
        .unwrap()
        .remove(HASH_LABEL);
    let Some(Object::Deployment(mut d)) = store.obj("Deployment", "web") else {
        panic!()
    };
    d.spec.as_mut().unwrap().template = t;
    store.put(Object::Deployment(d));
    for _ in 0..6 {
        round(&store, &mut states, false).await;
        ready_if_image(&store, "v1");
        store.reap();
    }
    let Some(Object::ReplicaSet(back)) = store.obj("ReplicaSet", &rs1[0]) else {
        panic!()
    };
    assert_eq!(back.metadata.annotations.as_ref().unwrap()[REVISION], "3");
    assert_eq!(back.spec.unwrap().replicas, Some(2));
    for name in store.names("ReplicaSet") {
        if name != rs1[0] {
            let Some(Object::ReplicaSet(bad)) = store.obj("ReplicaSet", &name) else {
                panic!()
            };
            assert_eq!(
                bad.spec.unwrap().replicas,
                Some(0),
                "stalled {name} scaled down"
            );
        }
    }
    let st = status(&store);
    assert_eq!(
        (st.replicas, st.updated_replicas, st.available_replicas),
        (Some(2), Some(2), Some(2)),
        "{st:?}"
    );
}
