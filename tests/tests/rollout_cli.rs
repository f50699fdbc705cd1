//! `rollout pause|resume|history` for a Deployment with real containers: a paused Deployment
//! takes a new template without rolling it out (and refuses undo and restart), resuming rolls
//! it out, and history lists the revisions and shows one revision's template.

use std::time::Duration;

use kinglet_tests::*;

fn deployment(version: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: kinglet.test/busybox:latest
        imagePullPolicy: IfNotPresent
        command: [sleep, '3600']
        env: [{{name: VERSION, value: '{version}'}}]
"#
    )
}

fn rs_count(d: &Daemon) -> usize {
    let v: serde_json::Value =
        serde_json::from_str(&d.cli_ok(&["get", "rs", "-o", "json"])).unwrap();
    v["items"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread")]
async fn paused_deployment_waits_for_resume_and_history_lists_revisions() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let dir = d.dir.path().to_owned();
    let f = write(&dir, "web.yaml", &deployment("1"));
    d.cli_ok(&["apply", "-f", &f]);
    let st = d.cli(&["rollout", "status", "deploy/web", "--timeout-secs", "60"]);
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stdout)
    );

    assert_eq!(
        d.cli_ok(&["rollout", "pause", "deploy/web"]),
        "deployment.apps/web paused\n"
    );
    let again = d.cli(&["rollout", "pause", "deploy/web"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already paused"));
    // A new template while paused: no new ReplicaSet.
    std::fs::write(
        &f,
        deployment("2").replace("spec:\n  replicas", "spec:\n  paused: true\n  replicas"),
    )
    .unwrap();
    d.cli_ok(&["apply", "-f", &f]);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(rs_count(&d), 1, "a paused Deployment does not roll out");
    let undo = d.cli(&["rollout", "undo", "deploy/web"]);
    assert!(String::from_utf8_lossy(&undo.stderr).contains("cannot rollback a paused deployment"));
    let restart = d.cli(&["rollout", "restart", "deploy/web"]);
    assert!(String::from_utf8_lossy(&restart.stderr).contains("can't restart paused deployment"));

    assert_eq!(
        d.cli_ok(&["rollout", "resume", "deploy/web"]),
        "deployment.apps/web resumed\n"
    );
    wait_for("the second ReplicaSet", Duration::from_secs(30), || {
        rs_count(&d) == 2
    });
    let st = d.cli(&["rollout", "status", "deploy/web", "--timeout-secs", "60"]);
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stdout)
    );

    let h = d.cli_ok(&["rollout", "history", "deploy/web"]);
    assert_eq!(
        h,
        "deployment.apps/web\nREVISION  CHANGE-CAUSE\n1         <none>\n2         <none>\n"
    );
    let one = d.cli_ok(&["rollout", "history", "deploy/web", "--revision", "1"]);
    assert!(
        one.starts_with("deployment.apps/web with revision #1\nPod Template:"),
        "{one}"
    );
    assert!(
        one.contains("value: '1'") || one.contains("value: \"1\""),
        "{one}"
    );
    let missing = d.cli(&["rollout", "history", "deploy/web", "--revision", "9"]);
    assert!(String::from_utf8_lossy(&missing.stderr)
        .contains("unable to find the specified revision 9"));
    d.shutdown().await;
}

/// The docs' "rolling back a Deployment": an update to an image that cannot be pulled stalls
/// (the old pods stay, maxUnavailable 0 of 2), `rollout undo` goes back to the previous
/// template, the stalled ReplicaSet is scaled to 0 and `rollout status` finishes.
#[tokio::test(flavor = "multi_thread")]
async fn undo_of_a_stalled_update_finishes_the_rollout() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let dir = d.dir.path().to_owned();
    let two = |image: &str| {
        deployment("1")
            .replace("replicas: 1", "replicas: 2")
            .replace("kinglet.test/busybox:latest", image)
    };
    let f = write(&dir, "web.yaml", &two("kinglet.test/busybox:latest"));
    d.cli_ok(&["apply", "-f", &f]);
    let st = d.cli(&["rollout", "status", "deploy/web", "--timeout-secs", "60"]);
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stdout)
    );
    std::fs::write(&f, two("kinglet.test/busybox:no-such-tag")).unwrap();
    d.cli_ok(&["apply", "-f", &f]);
    wait_for("the stalled ReplicaSet", Duration::from_secs(30), || {
        rs_count(&d) == 2
    });
    std::thread::sleep(Duration::from_secs(3));
    let stalled = d.cli(&["rollout", "status", "deploy/web", "--timeout-secs", "2"]);
    assert!(!stalled.status.success(), "the bad image cannot roll out");
    assert_eq!(
        d.cli_ok(&["rollout", "undo", "deploy/web"]),
        "deployment.apps/web rolled back\n"
    );
    let st = d.cli(&["rollout", "status", "deploy/web", "--timeout-secs", "60"]);
    assert!(
        st.status.success(),
        "{}{}",
        String::from_utf8_lossy(&st.stdout),
        String::from_utf8_lossy(&st.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(&d.cli_ok(&["get", "rs", "-o", "json"])).unwrap();
    let mut replicas: Vec<(String, i64)> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rs| {
            (
                rs["spec"]["template"]["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                rs["spec"]["replicas"].as_i64().unwrap(),
            )
        })
        .collect();
    replicas.sort();
    assert_eq!(
        replicas,
        vec![
            ("kinglet.test/busybox:latest".to_owned(), 2),
            ("kinglet.test/busybox:no-such-tag".to_owned(), 0)
        ]
    );
    d.shutdown().await;
}
