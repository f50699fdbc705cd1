//! Pods that controllers create and delete go through the same admission and graceful deletion
//! as applied ones: a Deployment whose template names a missing ServiceAccount gets no pod (its
//! ReplicaSet reports ReplicaFailure/FailedCreate with the API server's message) until the
//! ServiceAccount exists; a pod the ReplicaSet deletes on scale-down is shown Terminating
//! through its grace period, then removed.

use std::time::Duration;

use kinglet_tests::*;

const WEB: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      serviceAccountName: robot
      terminationGracePeriodSeconds: 4
      containers:
      - {name: c, image: kinglet.test/busybox:latest, imagePullPolicy: IfNotPresent, command: [sleep, '3600']}
"#;

fn items(d: &Daemon, kind: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_str(&d.cli_ok(&["get", kind, "-o", "json"])).unwrap();
    v["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn controller_pods_are_admitted_and_deleted_gracefully() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let dir = d.dir.path().to_owned();
    d.cli_ok(&["apply", "-f", &write(&dir, "web.yaml", WEB)]);
    wait_for(
        "the ReplicaFailure condition",
        Duration::from_secs(30),
        || {
            items(&d, "rs").iter().any(|rs| {
                let c = &rs["status"]["conditions"][0];
                c["type"] == "ReplicaFailure"
                    && c["reason"] == "FailedCreate"
                    && c["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("serviceaccount \"robot\" not found"))
            })
        },
    );
    assert!(
        items(&d, "pods").is_empty(),
        "no pod without its ServiceAccount"
    );

    let sa = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: robot}\n";
    d.cli_ok(&["apply", "-f", &write(&dir, "sa.yaml", sa)]);
    wait_for("two pods Running", Duration::from_secs(90), || {
        let pods = items(&d, "pods");
        pods.len() == 2 && pods.iter().all(|p| p["status"]["phase"] == "Running")
    });
    for p in items(&d, "pods") {
        assert_eq!(p["spec"]["serviceAccountName"], "robot");
    }
    wait_for("the condition gone", Duration::from_secs(10), || {
        items(&d, "rs")[0]["status"]["conditions"].is_null()
    });

    d.cli_ok(&["scale", "deploy/web", "--replicas", "1"]);
    wait_for("a pod Terminating", Duration::from_secs(10), || {
        d.cli_ok(&["get", "pods"]).contains("Terminating")
    });
    let terminating: Vec<serde_json::Value> = items(&d, "pods")
        .into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_string())
        .collect();
    assert_eq!(terminating.len(), 1, "{terminating:?}");
    assert_eq!(terminating[0]["metadata"]["deletionGracePeriodSeconds"], 4);
    // `sleep` ignores SIGTERM: the pod goes after its grace period, not before.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(items(&d, "pods").len(), 2, "still within the grace period");
    wait_for("the pod removed", Duration::from_secs(30), || {
        items(&d, "pods").len() == 1
    });
    d.shutdown().await;
}
