//! The ReplicaSet controller: keeps `spec.replicas` active Pods matching the selector, owned
//! through a controller ownerReference. Orphans that match are adopted, owned pods that no
//! longer match are released. Pods are created as `<rs>-<5 chars>`; surplus pods are deleted
//! by upstream's ranking ([`rank_for_deletion`]: pending before running, not ready before
//! ready, ready for less time first, more restarts first, newest first). Status: replicas,
//! fullyLabeledReplicas, readyReplicas, availableReplicas (Ready for minReadySeconds),
//! observedGeneration. The worker remembers when it saw each pod become Ready; a fresh worker
//! (a restarted daemon) takes the containers' start time for pods already Ready. A pod that
//! cannot be created (refused at admission: a missing ServiceAccount) is a Warning event
//! FailedCreate and the ReplicaFailure condition, retried with back-off.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kinglet_kubelet::harness::{Action, Reconciler, Wake};
use kinglet_manifest::{Object, ObjectKey};

use crate::common::{self, controller_of, owned_by};
use crate::{ControllerError, Store};

/// One active pod as the controller ranks it.
#[derive(Debug, Clone, PartialEq)]
pub struct PodView {
    pub name: String,
    pub uid: String,
    /// Pending 0, Unknown 1, Running 2 (upstream's order).
    pub phase_rank: u8,
    pub ready: bool,
    pub ready_since: Option<Timestamp>,
    pub restarts: i32,
    pub created: Option<Timestamp>,
}

fn phase_rank(phase: Option<&str>) -> u8 {
    match phase {
        Some("Running") => 2,
        Some("Pending") | None => 0,
        _ => 1,
    }
}

/// Upstream's `ActivePodsWithRanks` order: the pod to delete first comes first.
pub fn rank_for_deletion(a: &PodView, b: &PodView) -> Ordering {
    a.phase_rank
        .cmp(&b.phase_rank)
        .then(a.ready.cmp(&b.ready))
        // Ready for less time first (a later ready time sorts first).
        .then_with(|| match (a.ready, b.ready) {
            (true, true) => b.ready_since.cmp(&a.ready_since),
            _ => Ordering::Equal,
        })
        .then(b.restarts.cmp(&a.restarts))
        // Newest first; no creation time before any.
        .then_with(|| match (a.created, b.created) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(x), Some(y)) => y.cmp(&x),
        })
}

/// What one pass changes: pods to create, or the names of pods to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Diff {
    Create(usize),
    Delete(Vec<String>),
    None,
}

/// Pods to create or delete so that `desired` pods are active.
pub fn plan(desired: i32, active: &[PodView]) -> Diff {
    let desired = desired.max(0) as usize;
    match active.len().cmp(&desired) {
        Ordering::Less => Diff::Create(desired - active.len()),
        Ordering::Greater => {
            let mut ranked: Vec<&PodView> = active.iter().collect();
            ranked.sort_by(|a, b| rank_for_deletion(a, b));
            Diff::Delete(
                ranked[..active.len() - desired]
                    .iter()
                    .map(|p| p.name.clone())
                    .collect(),
            )
        }
        Ordering::Equal => Diff::None,
    }
}

pub struct ReplicaSetReconciler<S: Store> {
    store: Arc<S>,
}

impl<S: Store> ReplicaSetReconciler<S> {
    pub fn new(store: Arc<S>) -> Self {
        ReplicaSetReconciler { store }
    }
}

/// A ReplicaSet worker's memory: when it saw each pod (by uid) become Ready.
#[derive(Debug, Default)]
pub struct RsState {
    ready_since: HashMap<String, Timestamp>,
    seen_once: bool,
}

fn pod_key(ns: &str, name: &str) -> ObjectKey {
    ObjectKey {
        kind: "Pod",
        namespace: ns.to_owned(),
        name: name.to_owned(),
    }
}

#[async_trait::async_trait]
impl<S: Store> Reconciler for ReplicaSetReconciler<S> {
    type Key = ObjectKey;
    type State = RsState;
    type Handle = ();
    type Error = ControllerError;

    fn init(&self, _key: &ObjectKey, _wake: Wake) -> (RsState, ()) {
        (RsState::default(), ())
    }

    async fn reconcile(
        &self,
        key: &ObjectKey,
        st: &mut RsState,
    ) -> Result<Action, ControllerError> {
        let Some(Object::ReplicaSet(rs)) = self.store.get(key).await else {
            return Ok(Action::Done);
        };
        if crate::foreground::being_deleted(&rs.metadata) {
            return Ok(Action::AwaitChange);
        }
        sync(&*self.store, key, &rs, st).await
    }
}

/// The pods of `rs` (adopting and releasing as needed).
async fn claim_pods<S: Store + ?Sized>(
    store: &S,
    key: &ObjectKey,
    rs: &ReplicaSet,
) -> Result<Vec<Pod>, ControllerError> {
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    let sel = rs
        .spec
        .as_ref()
        .map(|s| s.selector.clone())
        .unwrap_or_default();
    let mut owned = Vec::new();
    for o in store.list("Pod").await {
        let Object::Pod(p) = o else { continue };
        if p.metadata.namespace.as_deref() != Some(&key.namespace) {
            continue;
        }
        let matches = kinglet_manifest::selector_matches(&sel, &common::labels_of(&p.metadata))
            .map_err(|reason| ControllerError::Invalid {
                object: key.to_string(),
                reason,
            })?;
        let name = p.metadata.name.clone().unwrap_or_default();
        let pk = pod_key(&key.namespace, &name);
        if owned_by(&p.metadata, &uid) {
            if matches {
                owned.push(*p);
            } else {
                let uid = uid.clone();
                store
                    .modify(
                        &pk,
                        false,
                        Box::new(move |o| {
                            let m = o.meta_mut();
                            let before = m.owner_references.as_ref().map(Vec::len);
                            if let Some(refs) = &mut m.owner_references {
                                refs.retain(|r| r.uid != uid);
                            }
                            before != m.owner_references.as_ref().map(Vec::len)
                        }),
                    )
                    .await?;
                tracing::info!(replicaset = %key, pod = %name, "released pod (labels no longer match)");
            }
        } else if matches && controller_of(&p.metadata).is_none() {
            let r = common::controller_ref("apps/v1", "ReplicaSet", &rs.metadata);
            let adopted = common::adopt(store, &pk, r).await?;
            if let Some(Object::Pod(p)) = adopted {
                tracing::info!(replicaset = %key, pod = %name, "adopted pod");
                owned.push(*p);
            }
        }
    }
    Ok(owned)
}

/// One pass over ReplicaSet `rs`.
pub async fn sync<S: Store + ?Sized>(
    store: &S,
    key: &ObjectKey,
    rs: &ReplicaSet,
    st: &mut RsState,
) -> Result<Action, ControllerError> {
    let spec = rs.spec.clone().unwrap_or_default();
    let now = store.now();
    let pods = claim_pods(store, key, rs).await?;
    let (mut views, mut fully_labeled) = view_pods(store, rs, &pods, st, now).await;
    let desired = spec.replicas.unwrap_or(1);
    let mut failure = None;
    match plan(desired, &views) {
        Diff::Create(n) => {
            let (created, err) = create_pods(store, key, rs, n, &views).await;
            fully_labeled += created.len() as i32;
            views.extend(created);
            failure = err;
        }
        Diff::Delete(names) => {
            for name in names {
                tracing::info!(replicaset = %key, pod = %name, "deleting surplus pod");
                store.delete(&pod_key(&key.namespace, &name)).await?;
                views.retain(|v| v.name != name);
            }
        }
        Diff::None => {}
    }
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let available = views
        .iter()
        .filter(|v| common::is_available(v.ready_since, min_ready, now))
        .count() as i32;
    let status = ReplicaSetStatus {
        replicas: views.len() as i32,
        fully_labeled_replicas: Some(fully_labeled),
        ready_replicas: Some(views.iter().filter(|v| v.ready).count() as i32),
        available_replicas: Some(available),
        observed_generation: rs.metadata.generation,
        conditions: replica_failure(rs, failure.as_ref(), now),
        terminating_replicas: None,
    };
    write_status(store, key, status).await?;
    if let Some(e) = failure {
        return Err(e);
    }
    // A Ready pod that is not yet available becomes so at a known time.
    let next = views
        .iter()
        .filter(|v| v.ready && !common::is_available(v.ready_since, min_ready, now))
        .filter_map(|v| v.ready_since)
        .map(|s| {
            let due = s.as_second() + min_ready as i64 - now.as_second();
            Duration::from_secs(due.max(0) as u64) + Duration::from_millis(100)
        })
        .min();
    Ok(next.map(Action::Requeue).unwrap_or(Action::AwaitChange))
}

/// The active pods as the controller ranks them (finished pods and pods being deleted left
/// out, as upstream's FilterActivePods), and how many carry all the template's labels.
async fn view_pods<S: Store + ?Sized>(
    store: &S,
    rs: &ReplicaSet,
    pods: &[Pod],
    st: &mut RsState,
    now: Timestamp,
) -> (Vec<PodView>, i32) {
    let first = !st.seen_once;
    st.seen_once = true;
    let mut views = Vec::new();
    let mut live = HashSet::new();
    let template_labels = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let mut fully_labeled = 0;
    for p in pods {
        let status = store.pod_status(p).await;
        if common::is_terminal(&status) || p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let uid = p.metadata.uid.clone().unwrap_or_default();
        live.insert(uid.clone());
        let ready = common::is_ready(&status);
        let ready_since = if ready {
            let since = if first {
                common::running_since(&status).unwrap_or(now)
            } else {
                now
            };
            Some(*st.ready_since.entry(uid.clone()).or_insert(since))
        } else {
            st.ready_since.remove(&uid);
            None
        };
        let labels = common::labels_of(&p.metadata);
        if template_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
        {
            fully_labeled += 1;
        }
        views.push(PodView {
            name: p.metadata.name.clone().unwrap_or_default(),
            uid,
            phase_rank: phase_rank(status.phase.as_deref()),
            ready,
            ready_since,
            restarts: common::restarts(&status),
            created: p.metadata.creation_timestamp.as_ref().map(|t| t.0),
        });
    }
    st.ready_since.retain(|uid, _| live.contains(uid));
    (views, fully_labeled)
}

/// Upstream's ReplicaFailure condition: True (reason FailedCreate) while pods cannot be
/// created, gone once they can.
fn replica_failure(
    rs: &ReplicaSet,
    failure: Option<&ControllerError>,
    now: Timestamp,
) -> Option<Vec<ReplicaSetCondition>> {
    let message = kinglet_util::chain(failure?);
    let prev = rs
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "ReplicaFailure"))
        .filter(|c| c.message.as_deref() == Some(message.as_str()));
    Some(vec![prev.cloned().unwrap_or(ReplicaSetCondition {
        type_: "ReplicaFailure".into(),
        status: "True".into(),
        reason: Some("FailedCreate".into()),
        message: Some(message),
        last_transition_time: Some(Time(now)),
    })])
}

/// Create `n` pods; those created, and the error that stopped the creation (also a Warning
/// event FailedCreate, as upstream's).
async fn create_pods<S: Store + ?Sized>(
    store: &S,
    key: &ObjectKey,
    rs: &ReplicaSet,
    n: usize,
    views: &[PodView],
) -> (Vec<PodView>, Option<ControllerError>) {
    let Some(t) = rs.spec.as_ref().and_then(|s| s.template.clone()) else {
        return (vec![], None);
    };
    let mut created = Vec::new();
    let taken: HashSet<String> = store
        .list("Pod")
        .await
        .iter()
        .filter(|o| o.key().namespace == key.namespace)
        .map(|o| o.key().name)
        .chain(views.iter().map(|v| v.name.clone()))
        .collect();
    let owner = common::controller_ref("apps/v1", "ReplicaSet", &rs.metadata);
    for _ in 0..n {
        let name = loop {
            let n = common::generate_name(&format!("{}-", key.name));
            if !taken.contains(&n) {
                break n;
            }
        };
        let pod = common::pod_from_template(&t, name.clone(), &key.namespace, owner.clone());
        let stored = match store.create(Object::Pod(Box::new(pod))).await {
            Ok(s) => s,
            Err(e) => {
                let message = format!("Error creating: {}", kinglet_util::chain(&e));
                store.event(key, "Warning", "FailedCreate", message);
                return (created, Some(e));
            }
        };
        tracing::info!(replicaset = %key, pod = %name, "created pod");
        created.push(PodView {
            name,
            uid: stored.meta().uid.clone().unwrap_or_default(),
            phase_rank: 0,
            ready: false,
            ready_since: None,
            restarts: 0,
            created: stored.meta().creation_timestamp.as_ref().map(|t| t.0),
        });
    }
    (created, None)
}

async fn write_status<S: Store + ?Sized>(
    store: &S,
    key: &ObjectKey,
    status: ReplicaSetStatus,
) -> Result<(), ControllerError> {
    crate::common::store_status(store, key, status, |o| match o {
        Object::ReplicaSet(r) => Some(&mut r.status),
        _ => None,
    })
    .await
}
