//! A StatefulSet's revisions as ControllerRevision objects `<set>-<hash>` (owned by the set,
//! `data` = `{"spec": {"template": ...}}` as upstream stores them, `revision` counting up):
//! the update revision is the current template's; the current one is `status.currentRevision`.
//! Revisions other than these two beyond `revisionHistoryLimit` (default 10) are deleted,
//! oldest first.

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kinglet_manifest::{Object, ObjectKey};

use crate::common;
use crate::deployment::rollout::template_hash;
use crate::{ControllerError, Store};

/// The set's current and update revisions (names), and the current one's template.
pub struct Revisions {
    pub current: String,
    pub update: String,
    current_template: Option<PodTemplateSpec>,
}

impl Revisions {
    /// The template of revision `rev`: the current one's when that is `rev`, else `update`.
    pub fn template_of(&self, rev: &str, update: &PodTemplateSpec) -> PodTemplateSpec {
        match &self.current_template {
            Some(t) if rev == self.current && rev != self.update => t.clone(),
            _ => update.clone(),
        }
    }
}

fn template_in(r: &ControllerRevision) -> Option<PodTemplateSpec> {
    let t = r.data.as_ref()?.0.pointer("/spec/template")?.clone();
    serde_json::from_value(t).ok()
}

/// Make sure the update revision exists (newest), find the current one, trim the history.
pub async fn sync<S: Store + ?Sized>(
    store: &S,
    key: &ObjectKey,
    set: &StatefulSet,
    owner: &OwnerReference,
    collision: Option<i32>,
) -> Result<Revisions, ControllerError> {
    let spec = set.spec.clone().unwrap_or_default();
    let update = format!("{}-{}", key.name, template_hash(&spec.template, collision));
    let mut owned: Vec<ControllerRevision> = store
        .list("ControllerRevision")
        .await
        .into_iter()
        .filter_map(|o| match o {
            Object::ControllerRevision(r)
                if r.metadata.namespace.as_deref() == Some(&key.namespace) =>
            {
                Some(*r)
            }
            _ => None,
        })
        .filter(|r| common::owned_by(&r.metadata, &owner.uid))
        .collect();
    let newest = owned.iter().map(|r| r.revision).max().unwrap_or(0);
    let rkey = |name: &str| ObjectKey {
        kind: "ControllerRevision",
        namespace: key.namespace.clone(),
        name: name.to_owned(),
    };
    match owned
        .iter_mut()
        .find(|r| r.metadata.name.as_deref() == Some(&update))
    {
        // Back to an earlier template: that revision becomes the newest again.
        Some(r) if r.revision < newest => {
            r.revision = newest + 1;
            store
                .modify(
                    &rkey(&update),
                    false,
                    Box::new(move |o| match o {
                        Object::ControllerRevision(r) => {
                            r.revision = newest + 1;
                            true
                        }
                        _ => false,
                    }),
                )
                .await?;
        }
        Some(_) => {}
        None => owned.push(create(store, key, &spec.template, owner, &update, newest + 1).await?),
    }
    let current = set
        .status
        .as_ref()
        .and_then(|s| s.current_revision.clone())
        .filter(|c| owned.iter().any(|r| r.metadata.name.as_deref() == Some(c)))
        .unwrap_or_else(|| update.clone());
    let current_template = owned
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some(&current))
        .and_then(template_in);
    trim_history(
        store,
        key,
        &owned,
        &[&current, &update],
        spec.revision_history_limit,
    )
    .await?;
    Ok(Revisions {
        current,
        update,
        current_template,
    })
}

/// Delete the oldest revisions other than `keep` beyond `limit` (default 10).
async fn trim_history<S: Store + ?Sized>(
    store: &S,
    key: &ObjectKey,
    owned: &[ControllerRevision],
    keep: &[&String],
    limit: Option<i32>,
) -> Result<(), ControllerError> {
    let limit = limit.unwrap_or(10).max(0) as usize;
    let mut old: Vec<&ControllerRevision> = owned
        .iter()
        .filter(|r| !keep.iter().any(|k| r.metadata.name.as_ref() == Some(*k)))
        .collect();
    old.sort_by_key(|r| r.revision);
    let extra = old.len().saturating_sub(limit);
    for r in &old[..extra] {
        let k = ObjectKey {
            kind: "ControllerRevision",
            namespace: key.namespace.clone(),
            name: r.metadata.name.clone().unwrap_or_default(),
        };
        store.delete(&k).await?;
    }
    Ok(())
}

/// A new revision `name` of `template`, numbered `revision`.
async fn create<S: Store + ?Sized>(
    store: &S,
    key: &ObjectKey,
    template: &PodTemplateSpec,
    owner: &OwnerReference,
    name: &str,
    revision: i64,
) -> Result<ControllerRevision, ControllerError> {
    let mut labels = template
        .metadata
        .clone()
        .and_then(|m| m.labels)
        .unwrap_or_default();
    labels.insert(super::REVISION_LABEL.into(), name.to_owned());
    let mut t = serde_json::to_value(template).unwrap_or_default();
    t["$patch"] = "replace".into();
    let r = ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(key.namespace.clone()),
            labels: Some(labels),
            owner_references: Some(vec![owner.clone()]),
            ..Default::default()
        },
        data: Some(RawExtension(serde_json::json!({"spec": {"template": t}}))),
        revision,
    };
    store
        .create(Object::ControllerRevision(Box::new(r.clone())))
        .await?;
    Ok(r)
}
