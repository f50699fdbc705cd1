//! ServiceAccounts, as the API server's admission and the ServiceAccount controller treat
//! them: every namespace that holds objects has a `default` ServiceAccount (made when the
//! first object of the namespace is stored); a Pod's `spec.serviceAccountName` defaults to
//! `default` (or the deprecated `serviceAccount`), and a Pod naming a ServiceAccount that does
//! not exist is refused with the API server's words. Kinglet has no API server to
//! authenticate to, so it never mounts a token (`automountServiceAccountToken` changes
//! nothing).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ServiceAccount;
use kinglet_manifest::{Object, ObjectKey};

/// The ServiceAccount every namespace has.
pub const DEFAULT: &str = "default";

fn key(ns: &str, name: &str) -> ObjectKey {
    ObjectKey {
        kind: "ServiceAccount",
        namespace: ns.to_owned(),
        name: name.to_owned(),
    }
}

/// Default `spec.serviceAccountName` of a Pod and check that it exists (in `stored`, or
/// `default`, which always does). The error is the API server's message.
pub fn admit_pod(stored: &BTreeMap<ObjectKey, Object>, obj: &mut Object) -> Result<(), String> {
    let Object::Pod(pod) = obj else {
        return Ok(());
    };
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| kinglet_manifest::DEFAULT_NAMESPACE.into());
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let spec = pod.spec.get_or_insert_with(Default::default);
    let name = spec
        .service_account_name
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| spec.service_account.clone().filter(|n| !n.is_empty()))
        .unwrap_or_else(|| DEFAULT.into());
    spec.service_account_name = Some(name.clone());
    if name != DEFAULT && !stored.contains_key(&key(&ns, &name)) {
        return Err(format!(
            "pods \"{pod_name}\" is forbidden: error looking up service account {ns}/{name}: serviceaccount \"{name}\" not found"
        ));
    }
    Ok(())
}

/// The `default` ServiceAccount of `ns`, when the store lacks it.
pub fn default_if_missing(stored: &BTreeMap<ObjectKey, Object>, ns: &str) -> Option<Object> {
    if stored.contains_key(&key(ns, DEFAULT)) {
        return None;
    }
    let mut sa = ServiceAccount::default();
    sa.metadata.name = Some(DEFAULT.into());
    sa.metadata.namespace = Some(ns.into());
    Some(Object::ServiceAccount(Box::new(sa)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(yaml: &str) -> Object {
        kinglet_manifest::parse("t", yaml).unwrap().remove(0)
    }

    #[test]
    fn pods_default_to_the_default_account_and_missing_ones_are_refused() {
        let mut stored = BTreeMap::new();
        let mut p = obj("apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: team}\nspec:\n  containers: [{name: c, image: b}]\n");
        admit_pod(&stored, &mut p).unwrap();
        let Object::Pod(pod) = &p else { panic!() };
        assert_eq!(
            pod.spec.as_ref().unwrap().service_account_name.as_deref(),
            Some("default")
        );
        let mut bot = obj("apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: team}\nspec:\n  serviceAccountName: bot\n  containers: [{name: c, image: b}]\n");
        assert_eq!(
            admit_pod(&stored, &mut bot).unwrap_err(),
            "pods \"web\" is forbidden: error looking up service account team/bot: serviceaccount \"bot\" not found"
        );
        let sa =
            obj("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: bot, namespace: team}\n");
        stored.insert(sa.key(), sa);
        admit_pod(&stored, &mut bot).unwrap();
        // The deprecated field is read when the new one is unset.
        let mut old = obj("apiVersion: v1\nkind: Pod\nmetadata: {name: o, namespace: team}\nspec:\n  serviceAccount: bot\n  containers: [{name: c, image: b}]\n");
        admit_pod(&stored, &mut old).unwrap();
        let Object::Pod(pod) = &old else { panic!() };
        assert_eq!(
            pod.spec.as_ref().unwrap().service_account_name.as_deref(),
            Some("bot")
        );
    }

    #[test]
    fn each_namespace_gets_one_default_account() {
        let mut stored = BTreeMap::new();
        let d = default_if_missing(&stored, "team").unwrap();
        assert_eq!(d.key(), key("team", "default"));
        stored.insert(d.key(), d);
        assert!(default_if_missing(&stored, "team").is_none());
        assert!(default_if_missing(&stored, "other").is_some());
    }
}
