//! The namespace controller: the built-in namespaces exist as objects (`get ns` lists them),
//! every Namespace shows phase Active until deleted, and a deleted (Terminating) Namespace has
//! everything in it deleted — workloads first, so their pods are not re-created — and is
//! removed once nothing is left.

use k8s_openapi::api::core::v1::{Namespace, NamespaceStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kinglet_kubelet::namespaces::{namespace_key, BUILT_IN};
use kinglet_manifest::{Object, ObjectKey};

use crate::{ControllerError, Store};

/// Namespaced kinds in deletion order: owners before what they own.
pub const NAMESPACED: &[&str] = &[
    "CronJob",
    "Deployment",
    "DaemonSet",
    "StatefulSet",
    "ControllerRevision",
    "Job",
    "ReplicaSet",
    "Pod",
    "PersistentVolumeClaim",
    "Service",
    "ConfigMap",
    "Secret",
];

fn active() -> Option<NamespaceStatus> {
    Some(NamespaceStatus {
        phase: Some("Active".into()),
        conditions: None,
    })
}

/// One round over the namespaces.
pub async fn sync<S: Store + ?Sized>(store: &S) -> Result<(), ControllerError> {
    for name in BUILT_IN {
        if store.get(&namespace_key(name)).await.is_none() {
            let ns = Namespace {
                metadata: ObjectMeta {
                    name: Some((*name).into()),
                    ..Default::default()
                },
                spec: None,
                status: active(),
            };
            store.create(Object::Namespace(Box::new(ns))).await?;
        }
    }
    for o in store.list("Namespace").await {
        let Object::Namespace(ns) = o else { continue };
        let key = namespace_key(ns.metadata.name.as_deref().unwrap_or_default());
        if ns.metadata.deletion_timestamp.is_none() {
            if ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Active") {
                store
                    .modify(
                        &key,
                        false,
                        Box::new(|o| match o {
                            Object::Namespace(n) => {
                                n.status = active();
                                true
                            }
                            _ => false,
                        }),
                    )
                    .await?;
            }
            continue;
        }
        if empty_namespace(store, &key.name).await? {
            tracing::info!(namespace = %key.name, "namespace is empty: removing it");
            store.delete(&key).await?;
        }
    }
    Ok(())
}

/// Delete the first non-empty kind of namespace `ns` (one kind per round, owners first);
/// true when nothing is left.
async fn empty_namespace<S: Store + ?Sized>(store: &S, ns: &str) -> Result<bool, ControllerError> {
    for kind in NAMESPACED {
        let keys: Vec<ObjectKey> = store
            .list(kind)
            .await
            .iter()
            .map(Object::key)
            .filter(|k| k.namespace == ns)
            .collect();
        if keys.is_empty() {
            continue;
        }
        for k in &keys {
            tracing::info!(namespace = %ns, object = %k, "namespace terminating: deleting");
            store.delete(k).await?;
        }
        return Ok(false);
    }
    Ok(true)
}
