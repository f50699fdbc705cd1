//! Deletion propagation as `kubectl delete --cascade` asks for it: background (the default;
//! the controllers' garbage collector deletes what the object owned), orphan (the owned
//! objects stay, their ownerReferences to it removed, before the owner goes) or foreground
//! (the owner gets a deletionTimestamp and the `foregroundDeletion` finalizer and stays,
//! visible, until the garbage collector has deleted its dependents; see
//! `kinglet_controllers::foreground`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kinglet_manifest::{Object, ObjectKey};

use crate::objects::ObjectStore;
use crate::KubeletError;

/// The finalizer of an owner waiting for its dependents' deletion.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

/// The propagation policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Orphan,
    Foreground,
}

/// Mark `o` as deleted in foreground: deletionTimestamp `now` (kept when already set) and the
/// `foregroundDeletion` finalizer. False when it was marked already.
pub fn mark_foreground(o: &mut Object, now: Time) -> bool {
    let m = o.meta_mut();
    let finalizers = m.finalizers.get_or_insert_with(Vec::new);
    let had = finalizers.iter().any(|f| f == FOREGROUND_FINALIZER);
    if !had {
        finalizers.push(FOREGROUND_FINALIZER.into());
    }
    let unmarked = m.deletion_timestamp.is_none();
    m.deletion_timestamp.get_or_insert(now);
    !had || unmarked
}

/// Delete `k` in foreground when it is a kind that owns objects (a Pod or a Namespace is
/// deleted as usual: false). True when it was marked.
pub(crate) fn delete_foreground(
    store: &mut ObjectStore,
    k: &ObjectKey,
) -> Result<bool, KubeletError> {
    if matches!(k.kind, "Pod" | "Namespace") {
        return Ok(false);
    }
    let Some(mut o) = store.map.get(k).cloned() else {
        return Ok(false);
    };
    if mark_foreground(&mut o, crate::status::now_time()) {
        store.put(o)?;
    }
    Ok(true)
}

/// kubectl's `--cascade` value (also the API's propagationPolicy names).
pub fn parse(s: &str) -> Result<Propagation, KubeletError> {
    match s.to_ascii_lowercase().as_str() {
        "" | "background" | "true" => Ok(Propagation::Background),
        "orphan" | "false" => Ok(Propagation::Orphan),
        "foreground" => Ok(Propagation::Foreground),
        other => Err(KubeletError::invalid(
            "--cascade",
            format!("{other:?}: must be background, foreground or orphan"),
        )),
    }
}

/// Remove every ownerReference to `uid` from the stored objects; how many objects changed.
pub fn orphan_dependents(store: &mut ObjectStore, uid: &str) -> Result<usize, KubeletError> {
    let owned: Vec<_> = store
        .map
        .values()
        .filter(|o| {
            o.meta()
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.uid == uid)
        })
        .cloned()
        .collect();
    let n = owned.len();
    for mut o in owned {
        let m = o.meta_mut();
        if let Some(refs) = &mut m.owner_references {
            refs.retain(|r| r.uid != uid);
            if refs.is_empty() {
                m.owner_references = None;
            }
        }
        store.put(o)?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cascade_values() {
        assert_eq!(parse("").unwrap(), Propagation::Background);
        assert_eq!(parse("Background").unwrap(), Propagation::Background);
        assert_eq!(parse("orphan").unwrap(), Propagation::Orphan);
        assert_eq!(parse("false").unwrap(), Propagation::Orphan);
        assert_eq!(parse("Foreground").unwrap(), Propagation::Foreground);
        let e = parse("sideways").unwrap_err().to_string();
        assert!(e.contains("background, foreground or orphan"), "{e}");
    }

    #[test]
    fn foreground_marks_once_and_keeps_the_first_time() {
        let mut o = kinglet_manifest::parse(
            "t",
            "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec: {containers: [{name: c, image: i}]}\n",
        )
        .unwrap()
        .remove(0);
        let t0 = crate::status::now_time();
        assert!(mark_foreground(&mut o, t0.clone()));
        let later = Time(t0.0 + k8s_openapi::jiff::SignedDuration::from_secs(5));
        assert!(!mark_foreground(&mut o, later));
        let m = o.meta();
        assert_eq!(m.deletion_timestamp, Some(t0));
        assert_eq!(
            m.finalizers.as_deref(),
            Some(&[FOREGROUND_FINALIZER.to_string()][..])
        );
    }
}
