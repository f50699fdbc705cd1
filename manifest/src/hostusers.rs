//! The API server's checks of `spec.hostUsers: false` (a pod in its own user namespace): it
//! cannot share the host's network, PID or IPC namespace, which belong to the host's user
//! namespace (`validateHostUsers`).

use k8s_openapi::api::core::v1::Pod;

/// The first field that `hostUsers: false` forbids, with the reason (None: fine).
pub(crate) fn check(p: &Pod) -> Option<(String, String)> {
    let spec = p.spec.as_ref()?;
    if spec.host_users != Some(false) {
        return None;
    }
    let shared = [
        ("hostNetwork", spec.host_network),
        ("hostPID", spec.host_pid),
        ("hostIPC", spec.host_ipc),
    ];
    let (field, _) = shared.into_iter().find(|(_, set)| *set == Some(true))?;
    Some((
        format!("spec.{field}"),
        format!(
            "Forbidden: when `hostUsers` is false (a pod with its own user namespace cannot \
             use the host's namespaces): remove {field} or hostUsers: false"
        ),
    ))
}

#[cfg(test)]
mod tests {
    fn check(spec: &str) -> Option<String> {
        let y = format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n{spec}  containers: [{{name: c, image: b}}]\n");
        crate::parse("t.yaml", &y).err().map(|e| e.to_string())
    }

    #[test]
    fn host_users_false_refuses_host_namespaces_as_the_api_server() {
        assert_eq!(check("  hostUsers: false\n"), None);
        assert_eq!(check("  hostUsers: true\n  hostNetwork: true\n"), None);
        assert_eq!(check("  hostNetwork: true\n  hostPID: true\n"), None);
        for field in ["hostNetwork", "hostPID", "hostIPC"] {
            let e = check(&format!("  hostUsers: false\n  {field}: true\n")).unwrap();
            assert!(
                e.contains(&format!(
                    "field spec.{field}: Forbidden: when `hostUsers` is false"
                )),
                "{e}"
            );
        }
        // In a workload's pod template too.
        let y = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec:\n      hostUsers: false\n      hostIPC: true\n      containers: [{name: c, image: b}]\n";
        let e = crate::parse("t.yaml", y).unwrap_err().to_string();
        assert!(e.contains("spec.template.spec.hostIPC: Forbidden"), "{e}");
    }
}
