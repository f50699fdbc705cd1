//! Deletion propagation as `kubectl delete --cascade` asks for it: background (the default;
//! the controllers' garbage collector deletes what the object owned) or orphan (the owned
//! objects stay, their ownerReferences to it removed, before the owner goes). Foreground
//! (owner kept until its dependents are gone) is refused for now.

use crate::objects::ObjectStore;
use crate::KubeletError;

/// The propagation policies Kinglet implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Orphan,
}

/// kubectl's `--cascade` value (also the API's propagationPolicy names).
pub fn parse(s: &str) -> Result<Propagation, KubeletError> {
    match s.to_ascii_lowercase().as_str() {
        "" | "background" | "true" => Ok(Propagation::Background),
        "orphan" | "false" => Ok(Propagation::Orphan),
        "foreground" => Err(KubeletError::invalid(
            "--cascade",
            "foreground deletion is not supported yet: use background (the default) or orphan",
        )),
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
        let e = parse("foreground").unwrap_err().to_string();
        assert!(e.contains("not supported yet"), "{e}");
        let e = parse("sideways").unwrap_err().to_string();
        assert!(e.contains("background, foreground or orphan"), "{e}");
    }
}
