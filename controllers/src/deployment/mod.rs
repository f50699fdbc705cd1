//! The Deployment controller: owns ReplicaSets named `<deployment>-<pod-template-hash>`
//! (the hash also a label of the ReplicaSet, its selector and its pods). The new ReplicaSet
//! is the one whose template equals the Deployment's (ignoring the hash); its revision
//! (`deployment.kubernetes.io/revision`) is one more than any old one's, and the Deployment
//! carries it too. A pass makes one step of the strategy ([`rollout`]: RollingUpdate within
//! maxSurge/maxUnavailable counted on available pods, or Recreate), deletes old ReplicaSets
//! beyond revisionHistoryLimit once the rollout is complete, and writes the status (replicas,
//! updated/ready/available/unavailable, observedGeneration, the Progressing and Available
//! conditions with upstream's reasons). A paused Deployment is not rolled out.

pub mod rollout;
mod status;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kinglet_kubelet::harness::{Action, Reconciler, Wake};
use kinglet_manifest::{Object, ObjectKey};

use crate::common::{self, controller_of, owned_by};
use crate::{ControllerError, Store};
use rollout::{RecreateStep, Rolling, RsView};

pub const HASH_LABEL: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

pub struct DeploymentReconciler<S: Store> {
    store: Arc<S>,
}

impl<S: Store> DeploymentReconciler<S> {
    pub fn new(store: Arc<S>) -> Self {
        DeploymentReconciler { store }
    }
}

#[async_trait::async_trait]
impl<S: Store> Reconciler for DeploymentReconciler<S> {
    type Key = ObjectKey;
    type State = ();
    type Handle = ();
    type Error = ControllerError;

    fn init(&self, _key: &ObjectKey, _wake: Wake) -> ((), ()) {
        ((), ())
    }

    async fn reconcile(&self, key: &ObjectKey, _: &mut ()) -> Result<Action, ControllerError> {
        let Some(Object::Deployment(d)) = self.store.get(key).await else {
            return Ok(Action::Done);
        };
        if crate::foreground::being_deleted(&d.metadata) {
            return Ok(Action::AwaitChange);
        }
        sync(&*self.store, key, &d).await?;
        Ok(Action::AwaitChange)
    }
}

pub fn revision_of(meta: &ObjectMeta) -> i64 {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn view(rs: &ReplicaSet) -> RsView {
    let st = rs.status.clone().unwrap_or_default();
    RsView {
        name: rs.metadata.name.clone().unwrap_or_default(),
        replicas: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        actual: st.replicas,
        ready: st.ready_replicas.unwrap_or(0),
        available: st.available_replicas.unwrap_or(0),
        revision: revision_of(&rs.metadata),
        created: rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
    }
}

fn rs_key(ns: &str, name: &str) -> ObjectKey {
    ObjectKey {
        kind: "ReplicaSet",
        namespace: ns.to_owned(),
        name: name.to_owned(),
    }
}

/// The Deployment's ReplicaSets, adopting orphans its selector matches.
async fn claim_replica_sets<S: Store + ?Sized>(
    store: &S,
    key: &ObjectKey,
    d: &Deployment,
) -> Result<Vec<ReplicaSet>, ControllerError> {
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let sel = d
        .spec
        .as_ref()
        .map(|s| s.selector.clone())
        .unwrap_or_default();
    let mut out = Vec::new();
    for o in store.list("ReplicaSet").await {
        let Object::ReplicaSet(rs) = o else { continue };
        if rs.metadata.namespace.as_deref() != Some(&key.namespace) {
            continue;
        }
        if owned_by(&rs.metadata, &uid) {
            out.push(*rs);
            continue;
        }
        let matches = kinglet_manifest::selector_matches(&sel, &common::labels_of(&rs.metadata))
            .unwrap_or(false);
        if matches && controller_of(&rs.metadata).is_none() {
            let r = common::controller_ref("apps/v1", "Deployment", &d.metadata);
            let name = rs.metadata.name.clone().unwrap_or_default();
            let adopted = common::adopt(store, &rs_key(&key.namespace, &name), r).await?;
            if let Some(Object::ReplicaSet(rs)) = adopted {
                tracing::info!(deployment = %key, replicaset = %name, "adopted replica set");
                out.push(*rs);
            }
        }
    }
    Ok(out)
}

/// Set a ReplicaSet's replicas (and the annotations upstream keeps with them).
async fn scale<S: Store + ?Sized>(
    store: &S,
    key: &ObjectKey,
    name: &str,
    replicas: i32,
    d_replicas: i32,
    max: i32,
) -> Result<(), ControllerError> {
    tracing::info!(deployment = %key, replicaset = %name, replicas, "scaling replica set");
    store
        .modify(
            &rs_key(&key.namespace, name),
            true,
            Box::new(move |o| {
                let Object::ReplicaSet(rs) = o else {
                    return false;
                };
                let spec = rs.spec.get_or_insert_with(Default::default);
                let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
                let before = (spec.replicas, a.get(DESIRED_REPLICAS).cloned());
                spec.replicas = Some(replicas);
                a.insert(DESIRED_REPLICAS.into(), d_replicas.to_string());
                a.insert(MAX_REPLICAS.into(), max.to_string());
                before != (spec.replicas, a.get(DESIRED_REPLICAS).cloned())
            }),
        )
        .await?;
    Ok(())
}

/// Create the new ReplicaSet for the Deployment's template, with `replicas` and `revision`.
async fn create_new_rs<S: Store + ?Sized>(
    store: &S,
    key: &ObjectKey,
    d: &Deployment,
    replicas: i32,
    revision: i64,
    max: i32,
) -> Result<ReplicaSet, ControllerError> {
    let spec = d.spec.clone().unwrap_or_default();
    let mut collisions = d.status.as_ref().and_then(|s| s.collision_count);
    loop {
        let hash = rollout::template_hash(&spec.template, collisions);
        let name = format!("{}-{hash}", key.name);
        let mut template = spec.template.clone();
        let tm = template.metadata.get_or_insert_with(Default::default);
        tm.labels
            .get_or_insert_with(BTreeMap::new)
            .insert(HASH_LABEL.into(), hash.clone());
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(HASH_LABEL.into(), hash.clone());
        let annotations: BTreeMap<String, String> = [
            (REVISION.to_owned(), revision.to_string()),
            (
                DESIRED_REPLICAS.to_owned(),
                spec.replicas.unwrap_or(1).to_string(),
            ),
            (MAX_REPLICAS.to_owned(), max.to_string()),
        ]
        .into();
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(key.namespace.clone()),
                labels: tm.labels.clone(),
                annotations: Some(annotations),
                owner_references: Some(vec![common::controller_ref(
                    "apps/v1",
                    "Deployment",
                    &d.metadata,
                )]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        match store.get(&rs_key(&key.namespace, &name)).await {
            // A ReplicaSet of that name with another template: a hash collision.
            Some(Object::ReplicaSet(other)) => {
                let same = other
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| rollout::equal_ignore_hash(t, &spec.template));
                if same && owned_by(&other.metadata, d.metadata.uid.as_deref().unwrap_or("")) {
                    return Ok(*other);
                }
                collisions = Some(collisions.unwrap_or(0) + 1);
                let c = collisions;
                store
                    .modify(
                        key,
                        false,
                        Box::new(move |o| {
                            let Object::Deployment(d) = o else {
                                return false;
                            };
                            d.status
                                .get_or_insert_with(Default::default)
                                .collision_count = c;
                            true
                        }),
                    )
                    .await?;
            }
            _ => {
                let created = store.create(Object::ReplicaSet(Box::new(rs))).await?;
                tracing::info!(deployment = %key, replicaset = %name, revision, "created new replica set");
                let Object::ReplicaSet(rs) = created else {
                    unreachable!("created a ReplicaSet")
                };
                return Ok(*rs);
            }
        }
    }
}

/// What the steps of one pass share.
struct Pass<'a, S: Store + ?Sized> {
    store: &'a S,
    key: &'a ObjectKey,
    d: &'a Deployment,
    replicas: i32,
    old: Vec<RsView>,
    max_old_rev: i64,
}

/// One pass over Deployment `d`.
pub async fn sync<S: Store + ?Sized>(
    store: &S,
    key: &ObjectKey,
    d: &Deployment,
) -> Result<(), ControllerError> {
    let spec = d.spec.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1);
    let all = claim_replica_sets(store, key, d).await?;
    let (mut new, old): (Vec<ReplicaSet>, Vec<ReplicaSet>) = all.into_iter().partition(|rs| {
        rs.spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .is_some_and(|t| rollout::equal_ignore_hash(t, &spec.template))
    });
    new.sort_by_key(|rs| rs.metadata.creation_timestamp.as_ref().map(|t| t.0));
    let new = new.into_iter().next();
    let old: Vec<RsView> = old.iter().map(view).collect();
    let max_old_rev = old.iter().map(|v| v.revision).max().unwrap_or(0);
    let strategy = spec.strategy.clone().unwrap_or_default();
    let recreate = strategy.type_.as_deref() == Some("Recreate");
    let ru = strategy.rolling_update.unwrap_or_default();
    let (surge, unavail) = if recreate {
        (0, 0)
    } else {
        rollout::resolve_fenceposts(ru.max_surge.as_ref(), ru.max_unavailable.as_ref(), replicas)
            .map_err(|reason| ControllerError::Invalid {
                object: key.to_string(),
                reason,
            })?
    };
    let r = Rolling::new(replicas, surge, unavail);
    let paused = spec.paused == Some(true);
    let pass = Pass {
        store,
        key,
        d,
        replicas,
        old,
        max_old_rev,
    };
    let (new, created_new) = match (paused, recreate) {
        (true, _) => (new, None),
        (false, true) => pass.recreate(pass.sync_revision(new).await?).await?,
        (false, false) => pass.rolling(pass.sync_revision(new).await?, &r).await?,
    };
    // Status from what the ReplicaSets now are.
    let all = claim_replica_sets(store, key, d).await?;
    let new_name = new.as_ref().and_then(|n| n.metadata.name.clone());
    let views: Vec<RsView> = all.iter().map(view).collect();
    let new_view = views
        .iter()
        .find(|v| Some(&v.name) == new_name.as_ref())
        .cloned();
    let complete = status::write(
        store,
        key,
        d,
        &r,
        &views,
        new_view.as_ref(),
        created_new.as_deref(),
    )
    .await?;
    if complete && !paused {
        cleanup_history(store, key, d, &all, new_name.as_deref()).await?;
    }
    Ok(())
}

impl<S: Store + ?Sized> Pass<'_, S> {
    /// An old template made current again (a rollback) gets the newest revision.
    async fn sync_revision(
        &self,
        new: Option<ReplicaSet>,
    ) -> Result<Option<ReplicaSet>, ControllerError> {
        let Some(n) = new else { return Ok(None) };
        if revision_of(&n.metadata) > self.max_old_rev {
            return Ok(Some(n));
        }
        let rev = (self.max_old_rev + 1).to_string();
        let name = n.metadata.name.clone().unwrap_or_default();
        let changed = self
            .store
            .modify(
                &rs_key(&self.key.namespace, &name),
                false,
                Box::new(move |o| {
                    o.meta_mut()
                        .annotations
                        .get_or_insert_with(BTreeMap::new)
                        .insert(REVISION.into(), rev);
                    true
                }),
            )
            .await?;
        Ok(match changed {
            Some(Object::ReplicaSet(rs)) => Some(*rs),
            _ => Some(n),
        })
    }

    /// One Recreate step; returns the new ReplicaSet and its name if created now.
    async fn recreate(
        &self,
        new: Option<ReplicaSet>,
    ) -> Result<(Option<ReplicaSet>, Option<String>), ControllerError> {
        let (store, key, replicas) = (self.store, self.key, self.replicas);
        let pods_of_old = count_pods_of(store, key, &self.old).await;
        let new_view = new.as_ref().map(view);
        match rollout::recreate_step(replicas, new_view.as_ref(), &self.old, pods_of_old) {
            RecreateStep::ScaleDownOld(names) => {
                for n in names {
                    scale(store, key, &n, 0, replicas, replicas).await?;
                }
            }
            RecreateStep::ScaleUpNew => match &new {
                Some(n) => {
                    let name = n.metadata.name.clone().unwrap_or_default();
                    scale(store, key, &name, replicas, replicas, replicas).await?;
                }
                None => {
                    let rev = self.max_old_rev + 1;
                    let rs = create_new_rs(store, key, self.d, replicas, rev, replicas).await?;
                    let name = rs.metadata.name.clone();
                    return Ok((Some(rs), name));
                }
            },
            RecreateStep::WaitOldPods | RecreateStep::Done => {}
        }
        Ok((new, None))
    }

    /// One RollingUpdate step; returns the new ReplicaSet and its name if created now.
    async fn rolling(
        &self,
        new: Option<ReplicaSet>,
        r: &Rolling,
    ) -> Result<(Option<ReplicaSet>, Option<String>), ControllerError> {
        let (store, key) = (self.store, self.key);
        let max = r.replicas + r.max_surge;
        let Some(n) = new else {
            let empty = RsView {
                name: String::new(),
                replicas: 0,
                actual: 0,
                ready: 0,
                available: 0,
                revision: 0,
                created: None,
            };
            let mut all = self.old.clone();
            all.push(empty);
            let count = rollout::new_rs_replicas(r, &all, 0);
            let rev = self.max_old_rev + 1;
            let rs = create_new_rs(store, key, self.d, count, rev, max).await?;
            let name = rs.metadata.name.clone();
            return Ok((Some(rs), name));
        };
        for (name, count) in rollout::rolling_step(r, &view(&n), &self.old) {
            scale(store, key, &name, count, r.replicas, max).await?;
        }
        Ok((Some(n), None))
    }
}

/// Pods still owned by any of the old ReplicaSets.
async fn count_pods_of<S: Store + ?Sized>(store: &S, key: &ObjectKey, old: &[RsView]) -> usize {
    let names: Vec<&str> = old.iter().map(|v| v.name.as_str()).collect();
    store
        .list("Pod")
        .await
        .iter()
        .filter(|o| o.key().namespace == key.namespace)
        .filter(|o| {
            controller_of(o.meta())
                .is_some_and(|r| r.kind == "ReplicaSet" && names.contains(&r.name.as_str()))
        })
        .count()
}

/// Delete the oldest idle old ReplicaSets beyond revisionHistoryLimit (default 10).
async fn cleanup_history<S: Store + ?Sized>(
    store: &S,
    key: &ObjectKey,
    d: &Deployment,
    all: &[ReplicaSet],
    new_name: Option<&str>,
) -> Result<(), ControllerError> {
    let limit = d
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10)
        .max(0) as usize;
    let mut idle: Vec<RsView> = all
        .iter()
        .map(view)
        .filter(|v| Some(v.name.as_str()) != new_name && v.replicas == 0 && v.actual == 0)
        .collect();
    if idle.len() <= limit {
        return Ok(());
    }
    idle.sort_by_key(|v| (v.revision, v.created));
    for v in &idle[..idle.len() - limit] {
        tracing::info!(deployment = %key, replicaset = %v.name, revision = v.revision, "deleting old replica set (revisionHistoryLimit)");
        store.delete(&rs_key(&key.namespace, &v.name)).await?;
    }
    Ok(())
}
