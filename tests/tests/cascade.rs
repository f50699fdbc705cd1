//! `delete --cascade` with real containers: orphan keeps a Deployment's ReplicaSet and pod
//! (their ownerReferences to it removed, the pod still running); background (the default)
//! then takes the ReplicaSet's pod with it; foreground is refused with a clear error.

use std::time::Duration;

use kinglet_tests::*;

const WEB: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {name: c, image: kinglet.test/busybox:latest, imagePullPolicy: IfNotPresent, command: [sleep, '3600']}
"#;

fn items(d: &Daemon, kind: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_str(&d.cli_ok(&["get", kind, "-o", "json"])).unwrap();
    v["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn orphan_keeps_dependents_and_background_collects_them() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let dir = d.dir.path().to_owned();
    d.cli_ok(&["apply", "-f", &write(&dir, "web.yaml", WEB)]);
    wait_for("the pod Running", Duration::from_secs(60), || {
        items(&d, "pods")
            .iter()
            .any(|p| p["status"]["phase"] == "Running")
    });
    let pod = items(&d, "pods")[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();

    let fg = d.cli(&["delete", "deploy", "web", "--cascade=foreground"]);
    assert!(!fg.status.success());
    assert!(
        String::from_utf8_lossy(&fg.stderr).contains("foreground deletion is not supported yet")
    );

    assert_eq!(
        d.cli_ok(&["delete", "deploy", "web", "--cascade=orphan"]),
        "deployment/web deleted\n"
    );
    // Several garbage-collection rounds later the ReplicaSet and the pod are still there.
    std::thread::sleep(Duration::from_secs(3));
    let rs = items(&d, "rs");
    assert_eq!(rs.len(), 1);
    assert!(
        rs[0]["metadata"]["ownerReferences"].is_null(),
        "{}",
        rs[0]["metadata"]
    );
    let pods = items(&d, "pods");
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0]["metadata"]["name"], pod.as_str());
    assert_eq!(pods[0]["status"]["phase"], "Running");
    assert_eq!(
        pods[0]["metadata"]["ownerReferences"][0]["kind"],
        "ReplicaSet"
    );

    let rs_name = rs[0]["metadata"]["name"].as_str().unwrap().to_owned();
    d.cli_ok(&["delete", "rs", &rs_name]);
    wait_for("the pod collected", Duration::from_secs(30), || {
        items(&d, "pods").is_empty()
    });
    d.shutdown().await;
}
