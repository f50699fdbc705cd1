//! Namespaces as the API server admits objects into them: an object may only be created in
//! a namespace that exists (`namespaces "x" not found`) and is not being terminated; the
//! built-in namespaces always exist and may not be deleted. Deleting a Namespace marks it
//! Terminating (deletionTimestamp, status.phase); the namespace controller
//! (`kinglet-controllers`) then deletes what is in it, and the Namespace last.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::NamespaceStatus;
use kinglet_manifest::{Object, ObjectKey};

use crate::KubeletError;

/// Namespaces that always exist (and that a delete refuses).
pub const BUILT_IN: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

pub fn namespace_key(name: &str) -> ObjectKey {
    ObjectKey {
        kind: "Namespace",
        namespace: String::new(),
        name: name.to_owned(),
    }
}

/// kubectl's `-n NS` on apply and create: namespaced objects naming none go into `ns`; one
/// naming another is refused with kubectl's error line, the others kept.
pub fn enforce(objs: Vec<Object>, ns: &str) -> (Vec<Object>, Vec<String>) {
    let mut errors = Vec::new();
    let mut kept = Vec::with_capacity(objs.len());
    for mut o in objs {
        if matches!(o, Object::Namespace(_) | Object::IngressClass(_)) {
            kept.push(o);
            continue;
        }
        let meta = o.meta_mut();
        match meta.namespace.as_deref() {
            None | Some("") => meta.namespace = Some(ns.to_owned()),
            Some(given) if given != ns => {
                errors.push(format!("error: the namespace from the provided object \"{given}\" does not match the namespace \"{ns}\". You must pass '--namespace={given}' to perform this operation."));
                continue;
            }
            Some(_) => {}
        }
        kept.push(o);
    }
    (kept, errors)
}

/// Whether a new object at `k` may be stored: its namespace exists and is not terminating.
pub fn admit(map: &BTreeMap<ObjectKey, Object>, k: &ObjectKey) -> Result<(), KubeletError> {
    if k.kind == "Namespace" || BUILT_IN.contains(&k.namespace.as_str()) {
        return Ok(());
    }
    match map.get(&namespace_key(&k.namespace)) {
        None => Err(KubeletError::not_found("namespaces", &k.namespace)),
        Some(Object::Namespace(n)) if n.metadata.deletion_timestamp.is_some() => {
            Err(KubeletError::invalid(
                format!("{} {}", k.kind.to_lowercase(), k.name),
                format!(
                    "unable to create new content in namespace {} because it is being terminated",
                    k.namespace
                ),
            ))
        }
        Some(_) => Ok(()),
    }
}

/// A delete of Namespace `name`: marked Terminating (the controller finishes it). Built-in
/// ones are refused.
pub fn mark_terminating(
    o: &mut Object,
    now: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> Result<(), KubeletError> {
    let Object::Namespace(n) = o else {
        return Ok(());
    };
    let name = n.metadata.name.clone().unwrap_or_default();
    if BUILT_IN[..3].contains(&name.as_str()) {
        return Err(KubeletError::invalid(
            format!("namespaces {name:?}"),
            "forbidden: this namespace may not be deleted",
        ));
    }
    n.metadata.deletion_timestamp.get_or_insert(now);
    n.status = Some(NamespaceStatus {
        phase: Some("Terminating".into()),
        conditions: None,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(name: &str, terminating: bool) -> (ObjectKey, Object) {
        let mut n = k8s_openapi::api::core::v1::Namespace::default();
        n.metadata.name = Some(name.into());
        if terminating {
            n.metadata.deletion_timestamp = Some(crate::status::now_time());
        }
        (namespace_key(name), Object::Namespace(Box::new(n)))
    }

    fn pod_in(ns: &str) -> ObjectKey {
        ObjectKey {
            kind: "Pod",
            namespace: ns.into(),
            name: "p".into(),
        }
    }

    #[test]
    fn dash_n_fills_in_the_namespace_and_refuses_another() {
        let text = "kind: ConfigMap\napiVersion: v1\nmetadata: {name: a}\n---\n\
            kind: ConfigMap\napiVersion: v1\nmetadata: {name: b, namespace: team}\n---\n\
            kind: ConfigMap\napiVersion: v1\nmetadata: {name: c, namespace: other}\n---\n\
            kind: Namespace\napiVersion: v1\nmetadata: {name: other}\n";
        let objs = kinglet_manifest::parse("t", text).unwrap();
        let (kept, errors) = enforce(objs, "team");
        let keys: Vec<String> = kept.iter().map(|o| o.key().to_string()).collect();
        let want = [
            ObjectKey {
                kind: "ConfigMap",
                namespace: "team".into(),
                name: "a".into(),
            },
            ObjectKey {
                kind: "ConfigMap",
                namespace: "team".into(),
                name: "b".into(),
            },
            namespace_key("other"),
        ];
        let want: Vec<String> = want.iter().map(ToString::to_string).collect();
        assert_eq!(keys, want);
        assert_eq!(errors, ["error: the namespace from the provided object \"other\" does not match the namespace \"team\". You must pass '--namespace=other' to perform this operation."]);
    }

    #[test]
    fn objects_need_an_existing_live_namespace() {
        let map: BTreeMap<ObjectKey, Object> = [ns("team-a", false), ns("old", true)].into();
        admit(&map, &pod_in("default")).unwrap();
        admit(&map, &pod_in("kube-system")).unwrap();
        admit(&map, &pod_in("team-a")).unwrap();
        let e = admit(&map, &pod_in("x")).unwrap_err().to_string();
        assert_eq!(e, "namespaces \"x\" not found");
        let e = admit(&map, &pod_in("old")).unwrap_err().to_string();
        assert!(e.contains("because it is being terminated"), "{e}");
        admit(&map, &namespace_key("new")).unwrap();
    }

    #[test]
    fn deleting_marks_terminating_and_built_ins_are_kept() {
        let (_, mut o) = ns("team-a", false);
        mark_terminating(&mut o, crate::status::now_time()).unwrap();
        let Object::Namespace(n) = &o else { panic!() };
        assert!(n.metadata.deletion_timestamp.is_some());
        assert_eq!(
            n.status.as_ref().unwrap().phase.as_deref(),
            Some("Terminating")
        );
        let (_, mut d) = ns("default", false);
        let e = mark_terminating(&mut d, crate::status::now_time())
            .unwrap_err()
            .to_string();
        assert!(e.contains("may not be deleted"), "{e}");
    }
}
