//! `delete --cascade` with real containers: orphan keeps a Deployment's ReplicaSet and pod
//! (their ownerReferences to it removed, the pod still running); background (the default)
//! then takes the ReplicaSet's pod with it; foreground keeps the Deployment, being deleted,
//! until its ReplicaSet and pod are gone.

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

    assert_eq!(
        d.cli_ok(&["delete", "deploy", "web", "--cascade=orphan"]),
        "deployment.apps \"web\" deleted\n"
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

/// The Deployment named `web`, if present.
fn deployment(d: &Daemon) -> Option<serde_json::Value> {
    items(d, "deploy")
        .into_iter()
        .find(|x| x["metadata"]["name"] == "web")
}

#[tokio::test(flavor = "multi_thread")]
async fn foreground_deletes_the_pods_and_replica_set_before_the_deployment() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let dir = d.dir.path().to_owned();
    // A grace period long enough to see the Deployment wait for its terminating pod.
    let web = WEB.replace(
        "terminationGracePeriodSeconds: 1",
        "terminationGracePeriodSeconds: 3",
    );
    d.cli_ok(&["apply", "-f", &write(&dir, "web.yaml", &web)]);
    wait_for("the pod Running", Duration::from_secs(60), || {
        items(&d, "pods")
            .iter()
            .any(|p| p["status"]["phase"] == "Running")
    });
    // As kubectl: the command returns once the Deployment is gone.
    let mut cmd = std::process::Command::new(kinglet_bin());
    cmd.arg("delete").arg("--socket").arg(&d.socket).args([
        "deploy",
        "web",
        "--cascade=foreground",
    ]);
    let child = std::thread::spawn(move || cmd.output().unwrap());
    let mut seen_waiting = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the Deployment is not gone"
        );
        // In this order: once the Deployment is gone, nothing it owned may be left.
        let dep = deployment(&d);
        let (rs, pods) = (items(&d, "rs"), items(&d, "pods"));
        match dep {
            Some(dep) => {
                if dep["metadata"]["deletionTimestamp"].is_string() && !pods.is_empty() {
                    assert_eq!(
                        dep["metadata"]["finalizers"],
                        serde_json::json!(["foregroundDeletion"])
                    );
                    seen_waiting = true;
                }
            }
            None => {
                assert!(
                    rs.is_empty(),
                    "ReplicaSet left after the Deployment: {rs:?}"
                );
                assert!(pods.is_empty(), "pods left after the Deployment");
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        seen_waiting,
        "the Deployment was seen being deleted while its pod terminated"
    );
    let out = child.join().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "deployment.apps \"web\" deleted\n"
    );
    d.shutdown().await;
}
