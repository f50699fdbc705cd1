//! DaemonSets end to end with real containers on a node whose labels and taints come from the
//! daemon's config: the Kubernetes docs' fluentd-elasticsearch example (its tolerations admit
//! the tainted node) runs one pod; a DaemonSet that does not tolerate the taint runs none; a
//! nodeSelector on a config label runs, rolls a new template out (the pod replaced, the status
//! counts it), keeps its one pod across a kill -9 of the daemon, and its pod goes with it.

use std::time::Duration;

use kinglet_tests::*;

const CONFIG: &str = r#"
node-name = "edge-1"
node-labels = { disk = "ssd" }
node-taints = ["node-role.kubernetes.io/control-plane:NoSchedule"]
"#;

/// The docs' example (concepts/workloads/controllers/daemonset), image swapped for the test
/// image (with a command that keeps running) and a short grace period.
const FLUENTD: &str = r#"apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: fluentd-elasticsearch
  namespace: kube-system
  labels:
    k8s-app: fluentd-logging
spec:
  selector:
    matchLabels:
      name: fluentd-elasticsearch
  template:
    metadata:
      labels:
        name: fluentd-elasticsearch
    spec:
      tolerations:
      # these tolerations are to have the daemonset runnable on control plane nodes
      # remove them if your control plane nodes should not run pods
      - key: node-role.kubernetes.io/control-plane
        operator: Exists
        effect: NoSchedule
      - key: node-role.kubernetes.io/master
        operator: Exists
        effect: NoSchedule
      containers:
      - name: fluentd-elasticsearch
        image: kinglet.test/busybox:latest
        imagePullPolicy: IfNotPresent
        command: [sleep, '3600']
        resources:
          limits:
            memory: 200Mi
          requests:
            cpu: 100m
            memory: 200Mi
        volumeMounts:
        - name: varlog
          mountPath: /var/log
      terminationGracePeriodSeconds: 1
      volumes:
      - name: varlog
        hostPath:
          path: /var/log
"#;

fn agent(name: &str, selector: &str, tolerate: bool, version: &str) -> String {
    let tol = if tolerate {
        "      tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists}]\n"
    } else {
        ""
    };
    format!(
        r#"apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: {name}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      nodeSelector: {selector}
{tol}      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: kinglet.test/busybox:latest
        imagePullPolicy: IfNotPresent
        command: [sleep, '3600']
        env: [{{name: VERSION, value: '{version}'}}]
"#
    )
}

fn json(d: &Daemon, args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    serde_json::from_str(&d.cli_ok(&a)).unwrap()
}

/// (name, ready, VERSION env) of each pod selected by `sel` in `ns`.
fn pods(d: &Daemon, sel: &str, ns: &str) -> Vec<(String, bool, String)> {
    let list = json(d, &["get", "pods", "-l", sel, "-n", ns]);
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|p| {
            let ready = p["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
            let version = p["spec"]["containers"][0]["env"][0]["value"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            (
                p["metadata"]["name"].as_str().unwrap().to_owned(),
                ready,
                version,
            )
        })
        .collect()
}

fn ds_status(d: &Daemon, name: &str, ns: &str) -> serde_json::Value {
    let out = d.cli(&["get", "ds", name, "-n", ns, "-o", "json"]);
    if !out.status.success() {
        return serde_json::Value::Null;
    }
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["status"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn daemon_sets_follow_node_labels_and_taints_and_roll_out() {
    let mut d = Daemon::start_with_config(CONFIG).await;
    d.import_test_image().await;
    let dir = d.dir.path().to_owned();
    d.cli_ok(&["apply", "-f", &write(&dir, "fluentd.yaml", FLUENTD)]);
    let sel = "name=fluentd-elasticsearch";
    wait_for("the fluentd pod Ready", Duration::from_secs(60), || {
        let p = pods(&d, sel, "kube-system");
        p.len() == 1 && p[0].1
    });
    wait_for("fluentd status", Duration::from_secs(20), || {
        let s = ds_status(&d, "fluentd-elasticsearch", "kube-system");
        s["desiredNumberScheduled"] == 1 && s["numberReady"] == 1 && s["numberAvailable"] == 1
    });
    let pod = json(&d, &["get", "pods", "-l", sel, "-n", "kube-system"])["items"][0].clone();
    assert!(pod["metadata"]["labels"]["controller-revision-hash"].is_string());
    assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "DaemonSet");
    let table = d.cli_ok(&["get", "ds", "-n", "kube-system"]);
    assert!(
        table.starts_with("NAME") && table.contains("NODE SELECTOR"),
        "{table}"
    );
    let row = table.lines().nth(1).unwrap();
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        &cols[..7],
        ["fluentd-elasticsearch", "1", "1", "1", "1", "1", "<none>"],
        "{table}"
    );

    // Without the toleration the tainted node runs nothing; with it and a nodeSelector on a
    // config label, one pod.
    d.cli_ok(&[
        "apply",
        "-f",
        &write(
            &dir,
            "blocked.yaml",
            &agent("blocked", "{disk: ssd}", false, "1"),
        ),
    ]);
    d.cli_ok(&[
        "apply",
        "-f",
        &write(
            &dir,
            "wrongdisk.yaml",
            &agent("wrongdisk", "{disk: hdd}", true, "1"),
        ),
    ]);
    let agent_file = write(
        &dir,
        "agent.yaml",
        &agent("agent", "{disk: ssd}", true, "1"),
    );
    d.cli_ok(&["apply", "-f", &agent_file]);
    wait_for("the agent pod Ready", Duration::from_secs(60), || {
        let p = pods(&d, "app=agent", "default");
        p.len() == 1 && p[0].1
    });
    for name in ["blocked", "wrongdisk"] {
        wait_for("status written", Duration::from_secs(20), || {
            ds_status(&d, name, "default")["desiredNumberScheduled"] == 0
        });
        assert!(
            pods(&d, &format!("app={name}"), "default").is_empty(),
            "{name}"
        );
    }
    let describe = d.cli_ok(&["describe", "ds", "agent"]);
    assert!(describe.contains("Node-Selector:  disk=ssd"), "{describe}");
    assert!(describe.contains("Pods Status:  1 Running"), "{describe}");

    // A new template: the pod is replaced (RollingUpdate, maxUnavailable 1).
    let before = pods(&d, "app=agent", "default")[0].0.clone();
    std::fs::write(&agent_file, agent("agent", "{disk: ssd}", true, "2")).unwrap();
    d.cli_ok(&["apply", "-f", &agent_file]);
    wait_for("the new pod Ready", Duration::from_secs(60), || {
        let p = pods(&d, "app=agent", "default");
        p.len() == 1 && p[0].1 && p[0].2 == "2"
    });
    let after = pods(&d, "app=agent", "default")[0].0.clone();
    assert_ne!(before, after);
    wait_for("updated status", Duration::from_secs(20), || {
        let s = ds_status(&d, "agent", "default");
        s["updatedNumberScheduled"] == 1
            && s["numberAvailable"] == 1
            && s["observedGeneration"] == 2
    });

    // A kill -9 of the daemon: the same one pod afterwards, none added.
    d.kill9();
    d.spawn().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    wait_for(
        "agent pod Ready after restart",
        Duration::from_secs(60),
        || {
            let p = pods(&d, "app=agent", "default");
            p.len() == 1 && p[0].1
        },
    );
    assert_eq!(pods(&d, "app=agent", "default")[0].0, after);

    // Deleting the DaemonSet takes its pod.
    d.cli_ok(&["delete", "ds", "agent"]);
    wait_for("agent pod collected", Duration::from_secs(30), || {
        pods(&d, "app=agent", "default").is_empty()
    });
    d.shutdown().await;
}
