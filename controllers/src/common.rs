//! What the controllers share: owner references, generated names, pods from templates, and
//! pod readiness/availability as upstream's `podutil` judges them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodStatus, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use rand::Rng;

/// The alphabet of generated names and hashes (upstream's: no vowels, no confusable digits).
pub const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `<prefix><5 random chars>`, as `generateName` does.
pub fn generate_name(prefix: &str) -> String {
    let mut rng = rand::thread_rng();
    let suffix: String = (0..5)
        .map(|_| ALPHANUMS[rng.gen_range(0..ALPHANUMS.len())] as char)
        .collect();
    format!("{prefix}{suffix}")
}

/// An ownerReference naming `meta`'s object as the controller.
pub fn controller_ref(api_version: &str, kind: &str, meta: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The controller ownerReference of an object, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
}

/// Whether `meta` is controlled by the object with `uid`.
pub fn owned_by(meta: &ObjectMeta, uid: &str) -> bool {
    controller_of(meta).is_some_and(|o| o.uid == uid)
}

/// A Pod from a template: the template's labels, annotations and spec, `name` in `ns`,
/// controlled by `owner`.
pub fn pod_from_template(
    t: &PodTemplateSpec,
    name: String,
    ns: &str,
    owner: OwnerReference,
) -> Pod {
    let tm = t.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(ns.to_owned()),
            labels: tm.labels,
            annotations: tm.annotations,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: t.spec.clone(),
        status: None,
    }
}

pub fn labels_of(meta: &ObjectMeta) -> BTreeMap<String, String> {
    meta.labels.clone().unwrap_or_default()
}

/// Succeeded or Failed: the pod's containers are done and will not run again.
pub fn is_terminal(st: &PodStatus) -> bool {
    matches!(st.phase.as_deref(), Some("Succeeded" | "Failed"))
}

pub fn is_ready(st: &PodStatus) -> bool {
    st.conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Sum of the restart counts of a pod's containers.
pub fn restarts(st: &PodStatus) -> i32 {
    st.container_statuses
        .iter()
        .flatten()
        .map(|c| c.restart_count)
        .sum()
}

/// When a pod's containers last started running (the latest start of a running container):
/// the earliest a pod could have become Ready, used when the controller did not see the moment.
pub fn running_since(st: &PodStatus) -> Option<Timestamp> {
    st.container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.running.as_ref()?.started_at.as_ref())
        .map(|t| t.0)
        .max()
}

/// Available: Ready for at least `min_ready_seconds` (upstream's `IsPodAvailable`).
pub fn is_available(
    ready_since: Option<Timestamp>,
    min_ready_seconds: i32,
    now: Timestamp,
) -> bool {
    let Some(since) = ready_since else {
        return false;
    };
    min_ready_seconds <= 0
        || since
            .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(
                min_ready_seconds as i64,
            ))
            .is_ok_and(|t| t <= now)
}

/// Make `owner` the controller of the object at `key` (adoption of an orphan that matches the
/// owner's selector); the updated object, or None when it is gone.
pub async fn adopt<S: crate::Store + ?Sized>(
    store: &S,
    key: &kinglet_manifest::ObjectKey,
    owner: OwnerReference,
) -> Result<Option<kinglet_manifest::Object>, crate::ControllerError> {
    store
        .modify(
            key,
            false,
            Box::new(move |o| {
                o.meta_mut()
                    .owner_references
                    .get_or_insert_with(Vec::new)
                    .push(owner);
                true
            }),
        )
        .await
}

/// The pods in `key`'s namespace that `owner` controls and `sel` selects, adopting matching
/// orphans and releasing owned pods that no longer match (upstream's `PodControllerRefManager`).
pub async fn claim_pods<S: crate::Store + ?Sized>(
    store: &S,
    key: &kinglet_manifest::ObjectKey,
    owner: &OwnerReference,
    sel: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
) -> Result<Vec<Pod>, crate::ControllerError> {
    use kinglet_manifest::Object;
    let mut owned = Vec::new();
    for o in store.list("Pod").await {
        let Object::Pod(p) = o else { continue };
        if p.metadata.namespace.as_deref() != Some(&key.namespace) {
            continue;
        }
        let matches =
            kinglet_manifest::selector_matches(sel, &labels_of(&p.metadata)).map_err(|reason| {
                crate::ControllerError::Invalid {
                    object: key.to_string(),
                    reason,
                }
            })?;
        let pk = kinglet_manifest::ObjectKey {
            kind: "Pod",
            namespace: key.namespace.clone(),
            name: p.metadata.name.clone().unwrap_or_default(),
        };
        if owned_by(&p.metadata, &owner.uid) {
            if matches {
                owned.push(*p);
                continue;
            }
            let uid = owner.uid.clone();
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
            tracing::info!(owner = %key, pod = %pk.name, "released pod (labels no longer match)");
        } else if matches && controller_of(&p.metadata).is_none() {
            if let Some(Object::Pod(p)) = adopt(store, &pk, owner.clone()).await? {
                tracing::info!(owner = %key, pod = %pk.name, "adopted pod");
                owned.push(*p);
            }
        }
    }
    Ok(owned)
}

/// Store `status` as the status of the object at `key` when it differs from the stored one
/// (no write, so no wake-up, when unchanged). `field` picks the status field of the kind, None
/// for another kind.
pub async fn store_status<S, T>(
    store: &S,
    key: &kinglet_manifest::ObjectKey,
    status: T,
    field: fn(&mut kinglet_manifest::Object) -> Option<&mut Option<T>>,
) -> Result<(), crate::ControllerError>
where
    S: crate::Store + ?Sized,
    T: PartialEq + Send + 'static,
{
    store
        .modify(
            key,
            false,
            Box::new(move |o| match field(o) {
                Some(s) if s.as_ref() != Some(&status) => {
                    *s = Some(status);
                    true
                }
                _ => false,
            }),
        )
        .await?;
    Ok(())
}
