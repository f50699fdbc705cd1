//! Namespaces as objects with real containers: the built-in ones are listed, an object in a
//! missing namespace is refused as the API server refuses it, a created namespace holds a
//! Deployment and a Pod, and deleting it deletes everything in it (and stops the pods); the
//! built-in namespaces may not be deleted.

use std::time::Duration;

use kinglet_tests::*;

const TEAM: &str = r#"apiVersion: v1
kind: Namespace
metadata: {name: team-a}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: team-a}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {name: c, image: kinglet.test/busybox:latest, imagePullPolicy: IfNotPresent, command: [sleep, '3600']}
"#;

const POD: &str = r#"apiVersion: v1
kind: Pod
metadata: {name: solo, namespace: team-a}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: kinglet.test/busybox:latest, imagePullPolicy: IfNotPresent, command: [sleep, '3600']}
"#;

fn json(d: &Daemon, args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    serde_json::from_str(&d.cli_ok(&a)).unwrap()
}

fn count(v: &serde_json::Value) -> usize {
    v["items"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread")]
async fn namespaces_admit_hold_and_take_their_objects_with_them() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let dir = d.dir.path().to_owned();
    wait_for("built-in namespaces", Duration::from_secs(10), || {
        d.cli_ok(&["get", "ns"]).contains("kube-system")
    });
    let table = d.cli_ok(&["get", "ns"]);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("default") && l.contains("Active")),
        "{table}"
    );

    let pod = write(&dir, "pod.yaml", POD);
    let out = d.cli(&["apply", "-f", &pod]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("namespaces \"team-a\" not found"), "{err}");

    d.cli_ok(&["apply", "-f", &write(&dir, "team.yaml", TEAM)]);
    d.cli_ok(&["apply", "-f", &pod]);
    wait_for("3 pods in team-a Running", Duration::from_secs(60), || {
        let v = json(&d, &["get", "pods", "-n", "team-a"]);
        v["items"]
            .as_array()
            .is_some_and(|a| a.len() == 3 && a.iter().all(|p| p["status"]["phase"] == "Running"))
    });
    assert_eq!(count(&json(&d, &["get", "pods"])), 0, "nothing in default");

    let refused = d.cli(&["delete", "ns", "default"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("may not be deleted"));

    assert_eq!(
        d.cli_ok(&["delete", "ns", "team-a"]),
        "namespace \"team-a\" deleted\n"
    );
    wait_for(
        "team-a emptied and removed",
        Duration::from_secs(30),
        || {
            count(&json(&d, &["get", "pods", "-n", "team-a"])) == 0
                && count(&json(&d, &["get", "deploy", "-n", "team-a"])) == 0
                && !d.cli_ok(&["get", "ns"]).contains("team-a")
        },
    );
    // The pods' sandboxes are stopped too.
    let mut rt = d.runtime().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let n = rt
            .list_pod_sandbox(kinglet_proto::v1::ListPodSandboxRequest::default())
            .await
            .unwrap()
            .into_inner()
            .items
            .iter()
            .filter(|s| s.state == kinglet_proto::v1::PodSandboxState::SandboxReady as i32)
            .count();
        if n == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{n} ready sandboxes left"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    d.shutdown().await;
}
