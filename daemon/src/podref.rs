//! Which pod and container a client verb (`logs`, `exec`) means, as kubectl decides it: the
//! named container, else the pod's `kubectl.kubernetes.io/default-container` annotation, else
//! its first container (saying so on stderr, as kubectl does, when there were others); a pod
//! that does not exist is kubectl's NotFound error.

use k8s_openapi::api::core::v1::Pod;
use kinglet_proto::admin;
use kinglet_proto::admin::objects_client::ObjectsClient;
use tonic::transport::Channel;

/// The annotation naming the container `logs` and `exec` use without `-c`.
pub const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";

/// kubectl's error for a missing object, printed as is (without the `kinglet:` prefix).
#[derive(Debug, thiserror::Error)]
#[error("Error from server (NotFound): {resource} \"{name}\" not found")]
pub struct NotFound {
    pub resource: &'static str,
    pub name: String,
}

/// Errors already printed on stderr in kubectl's words (several NotFound lines of one
/// `delete`): the command fails without a further message.
#[derive(Debug, thiserror::Error)]
#[error("errors were printed above")]
pub struct Reported;

/// The pod object `ns/name` from the daemon's store, when there is one (pods made through
/// the CRI alone have none).
pub async fn pod_object(ch: Channel, name: &str, ns: &str) -> Option<Pod> {
    let r = ObjectsClient::new(ch)
        .get(admin::GetRequest {
            kind: "pods".into(),
            namespace: ns.into(),
            all_namespaces: false,
            name: name.into(),
            label_selector: String::new(),
        })
        .await
        .ok()?
        .into_inner();
    r.objects
        .iter()
        .filter_map(|o| serde_json::from_str::<Pod>(o).ok())
        .find(|p| p.metadata.name.as_deref() == Some(name))
}

/// The container kubectl uses without `-c`: the annotation's, when the pod has it, else the
/// first container.
pub fn default_container(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    let annotated = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DEFAULT_CONTAINER_ANNOTATION))
        .filter(|n| names.contains(&n.as_str()));
    annotated
        .map(String::as_str)
        .or_else(|| names.first().copied())
        .map(str::to_owned)
}

/// kubectl's note on stderr when it picks the first of several containers without `-c` (none
/// when the annotation names one, or the pod has one container and no others):
/// `Defaulted container "a" out of: a, b, e (ephem), i (init)`.
pub fn defaulted_note(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let annotated = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DEFAULT_CONTAINER_ANNOTATION))
        .is_some_and(|n| spec.containers.iter().any(|c| &c.name == n));
    let ephemeral = spec.ephemeral_containers.iter().flatten();
    let init = spec.init_containers.iter().flatten();
    if annotated
        || (spec.containers.len() < 2 && ephemeral.clone().count() + init.clone().count() == 0)
    {
        return None;
    }
    let all: Vec<String> = spec
        .containers
        .iter()
        .map(|c| c.name.clone())
        .chain(ephemeral.map(|c| format!("{} (ephem)", c.name)))
        .chain(init.map(|c| format!("{} (init)", c.name)))
        .collect();
    Some(format!(
        "Defaulted container {:?} out of: {}",
        spec.containers.first()?.name,
        all.join(", ")
    ))
}

/// Why pod `name` has no CRI container named `container`, in kubectl's words.
pub fn no_container(pod: Option<&Pod>, name: &str, container: &str) -> anyhow::Error {
    let declared = pod.and_then(|p| p.spec.as_ref()).is_some_and(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
            .any(|c| c.name == container)
    });
    if declared {
        anyhow::anyhow!("container \"{container}\" in pod \"{name}\" is waiting to start")
    } else {
        anyhow::anyhow!("container {container} is not valid for pod {name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn the_default_container_is_the_annotated_one_else_the_first() {
        let two = "metadata: {name: p}\nspec:\n  containers: [{name: a}, {name: b}]\n";
        assert_eq!(default_container(&pod(two)).as_deref(), Some("a"));
        let annotated = "metadata:\n  name: p\n  annotations: {kubectl.kubernetes.io/default-container: b}\nspec:\n  containers: [{name: a}, {name: b}]\n";
        assert_eq!(default_container(&pod(annotated)).as_deref(), Some("b"));
        // An annotation naming no container is ignored, as kubectl does.
        let wrong = annotated.replace("container: b}", "container: zz}");
        assert_eq!(default_container(&pod(&wrong)).as_deref(), Some("a"));
        // kubectl's note when it picks the first of several.
        assert_eq!(
            defaulted_note(&pod(two)).as_deref(),
            Some("Defaulted container \"a\" out of: a, b")
        );
        assert_eq!(defaulted_note(&pod(annotated)), None);
        assert!(defaulted_note(&pod(&wrong)).is_some());
        let one = "metadata: {name: p}\nspec:\n  containers: [{name: a}]\n";
        assert_eq!(defaulted_note(&pod(one)), None);
        let init = "metadata: {name: p}\nspec:\n  initContainers: [{name: i}]\n  containers: [{name: a}]\n";
        assert_eq!(
            defaulted_note(&pod(init)).as_deref(),
            Some("Defaulted container \"a\" out of: a, i (init)")
        );
    }

    #[test]
    fn errors_read_like_kubectl() {
        let e = NotFound {
            resource: "pods",
            name: "nopod".into(),
        };
        assert_eq!(
            e.to_string(),
            "Error from server (NotFound): pods \"nopod\" not found"
        );
        let p = pod("metadata: {name: p}\nspec:\n  containers: [{name: a}]\n");
        assert_eq!(
            no_container(Some(&p), "p", "zz").to_string(),
            "container zz is not valid for pod p"
        );
        assert_eq!(
            no_container(Some(&p), "p", "a").to_string(),
            "container \"a\" in pod \"p\" is waiting to start"
        );
    }
}
