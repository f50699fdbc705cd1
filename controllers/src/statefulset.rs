//! The StatefulSet controller: pods with stable identities `<set>-<ordinal>` (labels
//! `statefulset.kubernetes.io/pod-name`, `apps.kubernetes.io/pod-index`,
//! `controller-revision-hash`; hostname = the pod's name, subdomain = `serviceName`), each
//! with its own PersistentVolumeClaims `<template>-<set>-<ordinal>` from
//! `volumeClaimTemplates`, made before the pod. The decisions ([`plan`]) follow upstream's
//! `stateful_set_control.go`; revisions are ControllerRevision objects `<set>-<hash>` holding
//! the template (so a pod below the partition is recreated at the current revision), trimmed
//! to `revisionHistoryLimit`. persistentVolumeClaimRetentionPolicy: `whenDeleted: Delete` makes
//! the set the claims' controller owner (the garbage collector deletes them with it);
//! `whenScaled: Delete` deletes the claims of condemned ordinals once their pod is gone.
//! Pods are deleted gracefully ([`Store::delete_gracefully`]): a replacement waits for the old
//! pod to be gone, so one ordinal never runs twice.

pub mod plan;
mod revision;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kinglet_kubelet::harness::{Action, Reconciler, Wake};
use kinglet_manifest::{Object, ObjectKey};

use crate::common;
use crate::deployment::rollout::scaled_value;
use crate::{ControllerError, Store};
use plan::{Params, SetPod, Step, Strategy};

pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
pub const REVISION_LABEL: &str = "controller-revision-hash";

pub struct StatefulSetReconciler<S: Store> {
    store: Arc<S>,
}

impl<S: Store> StatefulSetReconciler<S> {
    pub fn new(store: Arc<S>) -> Self {
        StatefulSetReconciler { store }
    }
}

/// A StatefulSet worker's memory: when each pod (by uid) became Ready.
#[derive(Debug, Default)]
pub struct StsState {
    ready_since: HashMap<String, Timestamp>,
    seen_once: bool,
}

#[async_trait::async_trait]
impl<S: Store> Reconciler for StatefulSetReconciler<S> {
    type Key = ObjectKey;
    type State = StsState;
    type Handle = ();
    type Error = ControllerError;

    fn init(&self, _key: &ObjectKey, _wake: Wake) -> (StsState, ()) {
        (StsState::default(), ())
    }

    async fn reconcile(
        &self,
        key: &ObjectKey,
        st: &mut StsState,
    ) -> Result<Action, ControllerError> {
        let Some(Object::StatefulSet(set)) = self.store.get(key).await else {
            return Ok(Action::Done);
        };
        if crate::foreground::being_deleted(&set.metadata) {
            return Ok(Action::AwaitChange);
        }
        sync(&*self.store, key, &set, st).await
    }
}

/// `<parent>-<ordinal>` of a pod named so (upstream's `getParentNameAndOrdinal`).
pub fn ordinal_of(set: &str, pod: &str) -> Option<i32> {
    let rest = pod.strip_prefix(set)?.strip_prefix('-')?;
    if rest.is_empty() || (rest.len() > 1 && rest.starts_with('0')) {
        return None;
    }
    rest.parse().ok().filter(|n: &i32| *n >= 0)
}

/// The claim of template `tpl` for ordinal `ord` of set `set`.
pub fn claim_name(tpl: &str, set: &str, ord: i32) -> String {
    format!("{tpl}-{set}-{ord}")
}

fn key_of(kind: &'static str, ns: &str, name: &str) -> ObjectKey {
    ObjectKey {
        kind,
        namespace: ns.to_owned(),
        name: name.to_owned(),
    }
}

/// The update strategy with maxUnavailable resolved against `replicas` (default 1).
pub fn strategy(spec: &StatefulSetSpec) -> Result<Strategy, String> {
    let u = spec.update_strategy.clone().unwrap_or_default();
    if u.type_.as_deref() == Some("OnDelete") {
        return Ok(Strategy::OnDelete);
    }
    let ru = u.rolling_update.unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1);
    let mu = scaled_value(
        ru.max_unavailable.as_ref().unwrap_or(&IntOrString::Int(1)),
        replicas,
        true,
    )?;
    Ok(Strategy::Rolling {
        partition: ru.partition.unwrap_or(0),
        max_unavailable: mu.max(1),
    })
}

fn retention(spec: &StatefulSetSpec) -> (bool, bool) {
    let p = spec
        .persistent_volume_claim_retention_policy
        .clone()
        .unwrap_or_default();
    (
        p.when_deleted.as_deref() == Some("Delete"),
        p.when_scaled.as_deref() == Some("Delete"),
    )
}

/// One pass over StatefulSet `set`.
pub async fn sync<S: Store + ?Sized>(
    store: &S,
    key: &ObjectKey,
    set: &StatefulSet,
    st: &mut StsState,
) -> Result<Action, ControllerError> {
    let invalid = |reason: String| ControllerError::Invalid {
        object: key.to_string(),
        reason,
    };
    let spec = set.spec.clone().ok_or_else(|| invalid("no spec".into()))?;
    let now = store.now();
    let owner = common::controller_ref("apps/v1", "StatefulSet", &set.metadata);
    let collision = set.status.as_ref().and_then(|s| s.collision_count);
    let revs = revision::sync(store, key, set, &owner, collision).await?;
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let pods: Vec<Pod> = common::claim_pods(store, key, &owner, &spec.selector)
        .await?
        .into_iter()
        .filter(|p| ordinal_of(&key.name, p.metadata.name.as_deref().unwrap_or("")).is_some())
        .collect();
    let views = observe(store, key, &pods, st, now, min_ready).await;
    let params = Params {
        start: spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0),
        replicas: spec.replicas.unwrap_or(1),
        parallel: spec.pod_management_policy.as_deref() == Some("Parallel"),
        strategy: strategy(&spec).map_err(invalid)?,
        current_revision: revs.current.clone(),
        update_revision: revs.update.clone(),
    };
    let steps = plan::plan(&params, &views);
    for step in &steps {
        match step {
            Step::Create { ordinal, revision } => {
                let template = revs.template_of(revision, &spec.template);
                create_pod(store, key, set, &owner, *ordinal, revision, template).await?;
            }
            Step::Delete { name, ordinal } => {
                tracing::info!(statefulset = %key, pod = %name, ordinal, "deleting pod");
                store.event(
                    key,
                    "Normal",
                    "SuccessfulDelete",
                    format!("delete Pod {name} in StatefulSet {} successful", key.name),
                );
                store
                    .delete_gracefully(&key_of("Pod", &key.namespace, name))
                    .await?;
            }
        }
    }
    sync_claims(store, key, &spec, &owner, &params, &views).await?;
    let mut status = status_of(&params, &views, &steps);
    status.observed_generation = set.metadata.generation;
    status.collision_count = collision;
    complete_rolling_update(&spec, &mut status);
    write_status(store, key, status).await?;
    // A Ready pod not yet available becomes so at a known time.
    let due = views
        .iter()
        .filter(|v| v.running_ready && !v.available)
        .filter_map(|v| {
            let uid = pods
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(&v.name))?
                .metadata
                .uid
                .clone()?;
            let left = st.ready_since.get(&uid)?.as_second() + min_ready as i64 - now.as_second();
            Some(Duration::from_secs(left.max(0) as u64) + Duration::from_millis(100))
        })
        .min();
    Ok(due.map(Action::Requeue).unwrap_or(Action::AwaitChange))
}

/// The set's pods as the decisions see them; remembers when each became Ready.
async fn observe<S: Store + ?Sized>(
    store: &S,
    key: &ObjectKey,
    pods: &[Pod],
    st: &mut StsState,
    now: Timestamp,
    min_ready: i32,
) -> Vec<SetPod> {
    let first = !st.seen_once;
    st.seen_once = true;
    let mut views = Vec::new();
    for p in pods {
        let status = store.pod_status(p).await;
        let uid = p.metadata.uid.clone().unwrap_or_default();
        let running_ready = status.phase.as_deref() == Some("Running") && common::is_ready(&status);
        let since = if running_ready {
            let at = if first {
                common::running_since(&status).unwrap_or(now)
            } else {
                now
            };
            Some(*st.ready_since.entry(uid).or_insert(at))
        } else {
            st.ready_since.remove(&uid);
            None
        };
        let name = p.metadata.name.clone().unwrap_or_default();
        views.push(SetPod {
            ordinal: ordinal_of(&key.name, &name).unwrap_or_default(),
            revision: common::labels_of(&p.metadata)
                .get(REVISION_LABEL)
                .cloned()
                .unwrap_or_default(),
            name,
            running_ready,
            available: running_ready && common::is_available(since, min_ready, now),
            terminal: common::is_terminal(&status),
            terminating: p.metadata.deletion_timestamp.is_some(),
        });
    }
    views
}

/// Upstream's `computeReplicaStatus`, from the pods after this pass's steps.
pub fn status_of(p: &Params, pods: &[SetPod], steps: &[Step]) -> StatefulSetStatus {
    let deleted: Vec<&str> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Delete { name, .. } => Some(name.as_str()),
            Step::Create { .. } => None,
        })
        .collect();
    let live: Vec<&SetPod> = pods
        .iter()
        .filter(|x| !deleted.contains(&x.name.as_str()))
        .collect();
    let created: Vec<(i32, &str)> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Create { ordinal, revision } => Some((*ordinal, revision.as_str())),
            Step::Delete { .. } => None,
        })
        .collect();
    let count = |f: &dyn Fn(&SetPod) -> bool| live.iter().filter(|x| f(x)).count() as i32;
    let at = |rev: &str| {
        count(&|x| !x.terminating && x.revision == rev)
            + created.iter().filter(|(_, r)| *r == rev).count() as i32
    };
    StatefulSetStatus {
        replicas: live.len() as i32 + created.len() as i32,
        ready_replicas: Some(count(&|x| x.running_ready)),
        available_replicas: Some(count(&|x| x.available)),
        current_replicas: Some(at(&p.current_revision)),
        updated_replicas: Some(at(&p.update_revision)),
        current_revision: Some(p.current_revision.clone()),
        update_revision: Some(p.update_revision.clone()),
        ..Default::default()
    }
}

/// Upstream's `completeRollingUpdate`: once every pod is updated and ready, the update
/// revision becomes the current one.
pub fn complete_rolling_update(spec: &StatefulSetSpec, s: &mut StatefulSetStatus) {
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|u| u.type_.as_deref())
        != Some("OnDelete");
    let replicas = spec.replicas.unwrap_or(1);
    if rolling
        && s.updated_replicas == Some(s.replicas)
        && s.ready_replicas == Some(s.replicas)
        && s.replicas == replicas
    {
        s.current_replicas = s.updated_replicas;
        s.current_revision = s.update_revision.clone();
    }
}

/// The pod of `ordinal` at `revision` (its template), after its claims.
async fn create_pod<S: Store + ?Sized>(
    store: &S,
    key: &ObjectKey,
    set: &StatefulSet,
    owner: &OwnerReference,
    ordinal: i32,
    revision: &str,
    template: PodTemplateSpec,
) -> Result<(), ControllerError> {
    let spec = set.spec.clone().unwrap_or_default();
    let name = format!("{}-{ordinal}", key.name);
    let (when_deleted, _) = retention(&spec);
    for t in spec.volume_claim_templates.iter().flatten() {
        let tpl = t.metadata.name.clone().unwrap_or_default();
        let cname = claim_name(&tpl, &key.name, ordinal);
        if store
            .get(&key_of("PersistentVolumeClaim", &key.namespace, &cname))
            .await
            .is_some()
        {
            continue;
        }
        let mut labels = t.metadata.labels.clone().unwrap_or_default();
        labels.extend(spec.selector.match_labels.clone().unwrap_or_default());
        let claim = PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(cname.clone()),
                namespace: Some(key.namespace.clone()),
                labels: Some(labels),
                annotations: t.metadata.annotations.clone(),
                owner_references: when_deleted.then(|| vec![owner.clone()]),
                ..Default::default()
            },
            spec: t.spec.clone(),
            status: None,
        };
        store
            .create(Object::PersistentVolumeClaim(Box::new(claim)))
            .await?;
        store.event(
            key,
            "Normal",
            "SuccessfulCreate",
            format!(
                "create Claim {cname} Pod {name} in StatefulSet {} success",
                key.name
            ),
        );
    }
    let mut pod = common::pod_from_template(&template, name.clone(), &key.namespace, owner.clone());
    let labels = pod.metadata.labels.get_or_insert_with(Default::default);
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(REVISION_LABEL.into(), revision.to_owned());
    let ps = pod.spec.get_or_insert_with(Default::default);
    ps.hostname = Some(name.clone());
    ps.subdomain = spec.service_name.clone().filter(|s| !s.is_empty());
    // The claims replace template volumes of the same name (upstream's `updateStorage`).
    let vols = ps.volumes.get_or_insert_with(Vec::new);
    for t in spec.volume_claim_templates.iter().flatten() {
        let tpl = t.metadata.name.clone().unwrap_or_default();
        vols.retain(|v| v.name != tpl);
        vols.push(Volume {
            name: tpl.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(&tpl, &key.name, ordinal),
                read_only: None,
            }),
            ..Default::default()
        });
    }
    store.create(Object::Pod(Box::new(pod))).await?;
    tracing::info!(statefulset = %key, pod = %name, ordinal, revision, "created pod");
    store.event(
        key,
        "Normal",
        "SuccessfulCreate",
        format!("create Pod {name} in StatefulSet {} successful", key.name),
    );
    Ok(())
}

/// The retention policy on the claims: the set owns them under `whenDeleted: Delete` (and
/// not otherwise); under `whenScaled: Delete` the claims of condemned ordinals go once their
/// pod is gone.
async fn sync_claims<S: Store + ?Sized>(
    store: &S,
    key: &ObjectKey,
    spec: &StatefulSetSpec,
    owner: &OwnerReference,
    params: &Params,
    pods: &[SetPod],
) -> Result<(), ControllerError> {
    let (when_deleted, when_scaled) = retention(spec);
    let templates: Vec<String> = spec
        .volume_claim_templates
        .iter()
        .flatten()
        .filter_map(|t| t.metadata.name.clone())
        .collect();
    for o in store.list("PersistentVolumeClaim").await {
        let k = o.key();
        if k.namespace != key.namespace {
            continue;
        }
        let Some(ord) = templates.iter().find_map(|t| {
            ordinal_of(
                &key.name,
                k.name.strip_prefix(t.as_str())?.strip_prefix('-')?,
            )
        }) else {
            continue;
        };
        let condemned = ord < params.start || ord >= params.start + params.replicas;
        if condemned && when_scaled && !pods.iter().any(|p| p.ordinal == ord) {
            tracing::info!(statefulset = %key, claim = %k.name, "deleting the claim of a scaled-down ordinal (whenScaled: Delete)");
            store.delete(&k).await?;
            continue;
        }
        let (uid, owner) = (owner.uid.clone(), owner.clone());
        store
            .modify(
                &k,
                false,
                Box::new(move |o| {
                    let refs = o.meta_mut().owner_references.get_or_insert_with(Vec::new);
                    let has = refs.iter().any(|r| r.uid == uid);
                    match (when_deleted, has) {
                        (true, false) if refs.iter().all(|r| r.controller != Some(true)) => {
                            refs.push(owner);
                            true
                        }
                        (false, true) => {
                            refs.retain(|r| r.uid != uid);
                            true
                        }
                        _ => false,
                    }
                }),
            )
            .await?;
    }
    Ok(())
}

async fn write_status<S: Store + ?Sized>(
    store: &S,
    key: &ObjectKey,
    status: StatefulSetStatus,
) -> Result<(), ControllerError> {
    common::store_status(store, key, status, |o| match o {
        Object::StatefulSet(s) => Some(&mut s.status),
        _ => None,
    })
    .await
}
