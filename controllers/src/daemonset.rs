//! The DaemonSet controller on Kinglet's one node: one daemon pod when the node passes the
//! template's nodeSelector, required node affinity and taints ([`crate::node::should_run`]),
//! none otherwise (a pod whose node stops admitting it keeps running unless a NoExecute taint
//! is untolerated, as upstream). Pods are `<ds>-<5 chars>`, carry `controller-revision-hash`
//! (the template's hash) and `pod-template-generation`, the DaemonSet tolerations and a node
//! affinity pinning them to the node. Failed pods are deleted and replaced after a back-off.
//! Updates: RollingUpdate (maxUnavailable, default 1: the old pod is deleted, then replaced;
//! maxSurge: the new pod starts beside the old one, which goes once the new one is available)
//! or OnDelete (a new template reaches the node when its pod is deleted). Status as upstream's
//! `updateDaemonSetStatus` counts it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus, RollingUpdateDaemonSet};
use k8s_openapi::api::core::v1::{
    Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodSpec,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kinglet_kubelet::harness::{Action, Reconciler, Wake};
use kinglet_manifest::{Object, ObjectKey};

use crate::common;
use crate::deployment::rollout::{scaled_value, template_hash};
use crate::node::{self, Node};
use crate::{ControllerError, Store};

pub const REVISION_LABEL: &str = "controller-revision-hash";
pub const GENERATION_LABEL: &str = "pod-template-generation";

/// Back-off before a failed daemon pod is replaced: doubles from 1 s up to 15 min.
const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(900);

/// One daemon pod as the decisions see it.
#[derive(Debug, Clone, PartialEq)]
pub struct DsPod {
    pub name: String,
    /// Its `controller-revision-hash` is the current template's.
    pub updated: bool,
    pub ready: bool,
    pub available: bool,
    pub terminal: bool,
    pub created: Option<Timestamp>,
}

/// How a DaemonSet updates its pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    OnDelete,
    Rolling {
        max_surge: i32,
        max_unavailable: i32,
    },
}

/// The strategy with maxSurge/maxUnavailable resolved against `desired` nodes (percentages
/// rounded up; defaults maxUnavailable 1, maxSurge 0; both 0 → maxUnavailable 1).
pub fn strategy(ds: &DaemonSet, desired: i32) -> Result<Strategy, String> {
    let s = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.clone())
        .unwrap_or_default();
    if s.type_.as_deref() == Some("OnDelete") {
        return Ok(Strategy::OnDelete);
    }
    let ru: RollingUpdateDaemonSet = s.rolling_update.unwrap_or_default();
    let surge = scaled_value(
        ru.max_surge.as_ref().unwrap_or(&IntOrString::Int(0)),
        desired,
        true,
    )?;
    let unavail = scaled_value(
        ru.max_unavailable.as_ref().unwrap_or(&IntOrString::Int(1)),
        desired,
        true,
    )?;
    Ok(if surge == 0 && unavail == 0 {
        Strategy::Rolling {
            max_surge: 0,
            max_unavailable: 1,
        }
    } else {
        Strategy::Rolling {
            max_surge: surge,
            max_unavailable: unavail,
        }
    })
}

/// What one pass does on the node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub create: bool,
    pub delete: Vec<String>,
    /// Failed pods among `delete` (they start the back-off).
    pub failed: usize,
}

fn oldest_first(pods: &mut [&DsPod]) {
    pods.sort_by(|a, b| match (a.created, b.created) {
        (Some(x), Some(y)) => x.cmp(&y).then(a.name.cmp(&b.name)),
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, None) => a.name.cmp(&b.name),
    });
}

/// Upstream's `manage` and `rollingUpdate` for one node: which pods to delete and whether to
/// create one, given whether the node should run (and keep running) the daemon.
pub fn plan(should_run: bool, should_continue: bool, pods: &[DsPod], s: Strategy) -> Plan {
    let mut p = Plan::default();
    for x in pods.iter().filter(|x| x.terminal) {
        p.delete.push(x.name.clone());
        p.failed += 1;
    }
    let mut live: Vec<&DsPod> = pods.iter().filter(|x| !x.terminal).collect();
    oldest_first(&mut live);
    if !should_run {
        if !should_continue {
            p.delete.extend(live.iter().map(|x| x.name.clone()));
        }
        return p;
    }
    if live.is_empty() {
        p.create = true;
        return p;
    }
    let surging = matches!(s, Strategy::Rolling { max_surge, .. } if max_surge > 0);
    if !surging {
        // One pod per node: the oldest stays.
        p.delete.extend(live[1..].iter().map(|x| x.name.clone()));
        let kept = live[0];
        if let Strategy::Rolling {
            max_unavailable, ..
        } = s
        {
            // An unavailable old pod goes at once; an available one within maxUnavailable
            // (nothing else on this node is unavailable).
            if !kept.updated && (!kept.available || max_unavailable >= 1) {
                p.delete.push(kept.name.clone());
            }
        }
        return p;
    }
    // Surge: at most one old and one new pod (the oldest of each).
    let (new, old): (Vec<&DsPod>, Vec<&DsPod>) = live.iter().partition(|x| x.updated);
    p.delete.extend(
        new.iter()
            .skip(1)
            .chain(old.iter().skip(1))
            .map(|x| x.name.clone()),
    );
    match (old.first(), new.first()) {
        (None, _) => {}
        // Unavailable: replace without surge budget; available: surge (budget >= 1 here).
        (Some(_), None) => p.create = true,
        (Some(o), Some(n)) if n.available => p.delete.push(o.name.clone()),
        (Some(_), Some(_)) => {}
    }
    p
}

/// Upstream's status counts for the node, from the pods left after a pass.
pub fn status_of(
    should_run: bool,
    pods: &[DsPod],
    generation: Option<i64>,
    collision_count: Option<i32>,
) -> DaemonSetStatus {
    let mut live: Vec<&DsPod> = pods.iter().filter(|x| !x.terminal).collect();
    oldest_first(&mut live);
    let first = live.first().filter(|_| should_run);
    let desired = should_run as i32;
    let available = first.is_some_and(|p| p.ready && p.available) as i32;
    DaemonSetStatus {
        desired_number_scheduled: desired,
        current_number_scheduled: first.is_some() as i32,
        number_misscheduled: (!should_run && !live.is_empty()) as i32,
        number_ready: first.is_some_and(|p| p.ready) as i32,
        number_available: Some(available),
        number_unavailable: Some(desired - available),
        updated_number_scheduled: Some(first.is_some_and(|p| p.updated) as i32),
        observed_generation: generation,
        collision_count,
        conditions: None,
    }
}

/// The daemon pod's spec: DaemonSet tolerations, and a required node affinity naming `node`
/// (upstream's `ReplaceDaemonSetPodNodeNameNodeAffinity`).
pub fn daemon_pod_spec(template: &PodSpec, node: &str) -> PodSpec {
    let mut spec = template.clone();
    node::add_daemon_tolerations(&mut spec);
    let pin = NodeSelectorTerm {
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "In".into(),
            values: Some(vec![node.to_owned()]),
        }]),
        match_expressions: None,
    };
    let aff = spec.affinity.get_or_insert_with(Affinity::default);
    let na = aff.node_affinity.get_or_insert_with(NodeAffinity::default);
    na.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![pin],
    });
    spec
}

pub struct DaemonSetReconciler<S: Store> {
    store: Arc<S>,
    node: Arc<Node>,
}

impl<S: Store> DaemonSetReconciler<S> {
    pub fn new(store: Arc<S>, node: Arc<Node>) -> Self {
        DaemonSetReconciler { store, node }
    }
}

/// A DaemonSet worker's memory: when each pod became Ready, and the failed-pod back-off.
#[derive(Debug, Default)]
pub struct DsState {
    ready_since: HashMap<String, Timestamp>,
    seen_once: bool,
    failures: u32,
    retry_at: Option<Timestamp>,
}

#[async_trait::async_trait]
impl<S: Store> Reconciler for DaemonSetReconciler<S> {
    type Key = ObjectKey;
    type State = DsState;
    type Handle = ();
    type Error = ControllerError;

    fn init(&self, _key: &ObjectKey, _wake: Wake) -> (DsState, ()) {
        (DsState::default(), ())
    }

    async fn reconcile(
        &self,
        key: &ObjectKey,
        st: &mut DsState,
    ) -> Result<Action, ControllerError> {
        let Some(Object::DaemonSet(ds)) = self.store.get(key).await else {
            return Ok(Action::Done);
        };
        if crate::foreground::being_deleted(&ds.metadata) {
            return Ok(Action::AwaitChange);
        }
        sync(&*self.store, &self.node, key, &ds, st).await
    }
}

fn pod_key(ns: &str, name: &str) -> ObjectKey {
    ObjectKey {
        kind: "Pod",
        namespace: ns.to_owned(),
        name: name.to_owned(),
    }
}

/// The DaemonSet's pods as `plan` sees them. A pod being deleted is no longer the node's
/// daemon pod (upstream skips it too).
async fn view_pods<S: Store + ?Sized>(
    store: &S,
    pods: &[k8s_openapi::api::core::v1::Pod],
    st: &mut DsState,
    hash: &str,
    min_ready: i32,
    now: Timestamp,
) -> Vec<DsPod> {
    let first = !st.seen_once;
    st.seen_once = true;
    let mut views = Vec::new();
    for p in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let status = store.pod_status(p).await;
        let uid = p.metadata.uid.clone().unwrap_or_default();
        let ready = common::is_ready(&status);
        let since = if ready {
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
        views.push(DsPod {
            name: p.metadata.name.clone().unwrap_or_default(),
            updated: common::labels_of(&p.metadata)
                .get(REVISION_LABEL)
                .map(String::as_str)
                == Some(hash),
            ready,
            available: ready && common::is_available(since, min_ready, now),
            terminal: common::is_terminal(&status),
            created: p.metadata.creation_timestamp.as_ref().map(|t| t.0),
        });
    }
    views
}

/// One pass over DaemonSet `ds` on `node`.
pub async fn sync<S: Store + ?Sized>(
    store: &S,
    node: &Node,
    key: &ObjectKey,
    ds: &DaemonSet,
    st: &mut DsState,
) -> Result<Action, ControllerError> {
    let invalid = |reason: String| ControllerError::Invalid {
        object: key.to_string(),
        reason,
    };
    let spec = ds.spec.clone().ok_or_else(|| invalid("no spec".into()))?;
    let now = store.now();
    let owner = common::controller_ref("apps/v1", "DaemonSet", &ds.metadata);
    let collision = ds.status.as_ref().and_then(|s| s.collision_count);
    let hash = template_hash(&spec.template, collision);
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let pods = common::claim_pods(store, key, &owner, &spec.selector).await?;
    let mut views = view_pods(store, &pods, st, &hash, min_ready, now).await;
    let template_spec = spec.template.spec.clone().unwrap_or_default();
    let (run, keep) = node::should_run(&daemon_pod_spec(&template_spec, &node.name), node);
    let strat = strategy(ds, run as i32).map_err(invalid)?;
    let mut plan = plan(run, keep, &views, strat);
    if plan.failed > 0 {
        st.failures += 1;
        let backoff = BACKOFF_INITIAL
            .saturating_mul(1 << (st.failures - 1).min(10))
            .min(BACKOFF_MAX);
        st.retry_at = Some(now + SignedDuration::try_from(backoff).unwrap_or_default());
        tracing::warn!(daemonset = %key, backoff_secs = backoff.as_secs(), "daemon pod failed: deleting it, replacing it after a back-off");
    }
    let mut requeue = None;
    if plan.create {
        if let Some(at) = st.retry_at.filter(|at| *at > now) {
            plan.create = false;
            let wait = (at.as_millisecond() - now.as_millisecond()).max(0) as u64;
            requeue = Some(Duration::from_millis(wait));
        }
    }
    for name in &plan.delete {
        tracing::info!(daemonset = %key, pod = %name, "deleting daemon pod");
        store.delete(&pod_key(&key.namespace, name)).await?;
    }
    views.retain(|v| !plan.delete.contains(&v.name));
    if plan.create {
        let created = create_pod(store, key, ds, &hash, &template_spec, node, owner).await?;
        views.push(created);
    }
    if views.iter().any(|v| v.available) {
        st.failures = 0;
        st.retry_at = None;
    }
    let status = status_of(run, &views, ds.metadata.generation, collision);
    write_status(store, key, status).await?;
    // A Ready pod not yet available becomes so at a known time.
    let due = views
        .iter()
        .filter(|v| v.ready && !v.available)
        .filter_map(|v| {
            let uid = pods
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(&v.name))?
                .metadata
                .uid
                .clone()?;
            let since = st.ready_since.get(&uid)?;
            let left = since.as_second() + min_ready as i64 - now.as_second();
            Some(Duration::from_secs(left.max(0) as u64) + Duration::from_millis(100))
        })
        .chain(requeue)
        .min();
    Ok(due.map(Action::Requeue).unwrap_or(Action::AwaitChange))
}

async fn create_pod<S: Store + ?Sized>(
    store: &S,
    key: &ObjectKey,
    ds: &DaemonSet,
    hash: &str,
    template_spec: &PodSpec,
    node: &Node,
    owner: k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
) -> Result<DsPod, ControllerError> {
    let t = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let taken: Vec<String> = store
        .list("Pod")
        .await
        .iter()
        .filter(|o| o.key().namespace == key.namespace)
        .map(|o| o.key().name)
        .collect();
    let name = loop {
        let n = common::generate_name(&format!("{}-", key.name));
        if !taken.contains(&n) {
            break n;
        }
    };
    let mut pod = common::pod_from_template(&t, name.clone(), &key.namespace, owner);
    let labels = pod.metadata.labels.get_or_insert_with(Default::default);
    labels.insert(REVISION_LABEL.into(), hash.to_owned());
    labels.insert(
        GENERATION_LABEL.into(),
        ds.metadata.generation.unwrap_or(1).to_string(),
    );
    pod.spec = Some(daemon_pod_spec(template_spec, &node.name));
    let stored = store.create(Object::Pod(Box::new(pod))).await?;
    tracing::info!(daemonset = %key, pod = %name, node = %node.name, "created daemon pod");
    Ok(DsPod {
        name,
        updated: true,
        ready: false,
        available: false,
        terminal: false,
        created: stored.meta().creation_timestamp.as_ref().map(|t| t.0),
    })
}

async fn write_status<S: Store + ?Sized>(
    store: &S,
    key: &ObjectKey,
    status: DaemonSetStatus,
) -> Result<(), ControllerError> {
    crate::common::store_status(store, key, status, |o| match o {
        Object::DaemonSet(d) => Some(&mut d.status),
        _ => None,
    })
    .await
}
