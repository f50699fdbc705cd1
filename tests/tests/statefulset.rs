//! StatefulSets and PersistentVolumeClaims end to end with real containers: a claim applied
//! directly binds to a local directory and a pod waiting on a missing claim starts once it is
//! applied; a 3-replica OrderedReady set behind a headless Service comes up in ordinal order
//! with stable names and hostnames, `web-0.nginx.default.svc.cluster.local` resolves from
//! another pod, data in a claim survives deleting the pod and scaling to 1 and back to 3, a
//! rolling update interrupted by a kill -9 of the daemon finishes afterwards with no pod
//! duplicated, and deleting the set keeps its claims (Retain) until they are deleted.

use std::time::Duration;

use kinglet_tests::*;

const SET: &str = r#"apiVersion: v1
kind: Service
metadata: {name: nginx}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 80, name: web}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: nginx
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: kinglet.test/busybox:latest
        imagePullPolicy: IfNotPresent
        command: [sleep, '3600']
        env: [{name: VERSION, value: 'VER'}]
        volumeMounts: [{name: www, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: www}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
"#;

const CLAIM_POD: &str = r#"apiVersion: v1
kind: Pod
metadata: {name: user}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: kinglet.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sleep, '3600']
    volumeMounts: [{name: d, mountPath: /data}]
  volumes: [{name: d, persistentVolumeClaim: {claimName: data}}]
"#;

const CLAIM: &str = r#"apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 100Mi}}
"#;

const CLIENT: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: client}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: kinglet.test/busybox:latest\n    imagePullPolicy: IfNotPresent\n    command: [sleep, '3600']\n";

fn json(d: &Daemon, args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    serde_json::from_str(&d.cli_ok(&a)).unwrap()
}

/// (name, ready, VERSION, uid) of the set's pods, by name.
fn pods(d: &Daemon) -> Vec<(String, bool, String, String)> {
    let list = json(d, &["get", "pods", "-l", "app=web"]);
    let mut v: Vec<_> = list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|p| {
            let ready = p["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
            (
                p["metadata"]["name"].as_str().unwrap().to_owned(),
                ready && p["metadata"]["deletionTimestamp"].is_null(),
                p["spec"]["containers"][0]["env"][0]["value"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
                p["metadata"]["uid"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

fn all_ready(d: &Daemon, n: usize, version: &str) -> bool {
    let p = pods(d);
    p.len() == n
        && p.iter()
            .enumerate()
            .all(|(i, x)| x.0 == format!("web-{i}") && x.1 && x.2 == version)
}

fn exec(d: &Daemon, pod: &str, script: &str) -> String {
    d.cli_ok(&["exec", pod, "--", "sh", "-c", script])
}

/// Ready sandboxes per pod name, from the CRI.
async fn sandboxes(d: &Daemon) -> std::collections::BTreeMap<String, usize> {
    let mut rt = d.runtime().await;
    let list = rt
        .list_pod_sandbox(kinglet_proto::v1::ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    let mut m = std::collections::BTreeMap::new();
    for s in list {
        if s.state == kinglet_proto::v1::PodSandboxState::SandboxReady as i32 {
            let name = s.metadata.map(|m| m.name).unwrap_or_default();
            *m.entry(name).or_default() += 1;
        }
    }
    m
}

#[tokio::test(flavor = "multi_thread")]
async fn claims_bind_and_a_pod_waits_for_its_claim() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let dir = d.dir.path().to_owned();
    d.cli_ok(&["apply", "-f", &write(&dir, "user.yaml", CLAIM_POD)]);
    wait_for(
        "a FailedMount event naming the claim",
        Duration::from_secs(30),
        || {
            let ev = d.cli_ok(&["get", "events"]);
            ev.contains("FailedMount") && ev.contains("persistentvolumeclaim \"data\" not found")
        },
    );
    let p = pod_json(&d, "user");
    assert_eq!(p["status"]["phase"], "Pending", "{p}");
    assert_eq!(
        p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"],
        "ContainerCreating"
    );
    d.cli_ok(&["apply", "-f", &write(&dir, "claim.yaml", CLAIM)]);
    wait_for(
        "the pod running on its claim",
        Duration::from_secs(60),
        || pod_json(&d, "user")["status"]["phase"] == "Running",
    );
    let c = json(&d, &["get", "pvc", "data"]);
    assert_eq!(c["status"]["phase"], "Bound");
    let uid = c["metadata"]["uid"].as_str().unwrap();
    assert_eq!(c["spec"]["volumeName"], format!("pvc-{uid}"));
    let host = d.root.join(format!("volumes/pvc/default/data-{uid}"));
    exec(&d, "user", "echo kept > /data/f");
    assert_eq!(std::fs::read_to_string(host.join("f")).unwrap(), "kept\n");
    let table = d.cli_ok(&["get", "pvc"]);
    assert!(
        table.starts_with("NAME") && table.contains("ACCESS MODES"),
        "{table}"
    );
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        &row[..5],
        ["data", "Bound", &*format!("pvc-{uid}"), "100Mi", "RWO"],
        "{table}"
    );
    // The claim outlives the pod; deleting the claim removes its directory.
    d.cli_ok(&["delete", "pod", "user"]);
    wait_for("the pod gone", Duration::from_secs(30), || {
        !d.cli_ok(&["get", "pods"]).contains("user")
    });
    assert!(host.join("f").exists());
    d.cli_ok(&["delete", "pvc", "data"]);
    wait_for(
        "the claim's directory removed",
        Duration::from_secs(10),
        || !host.exists(),
    );
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stateful_set_runs_in_order_keeps_data_and_survives_a_kill_mid_rollout() {
    let mut d = Daemon::start_with_config("dns-upstreams = [\"127.0.0.1:9\"]\n").await;
    d.import_test_image().await;
    let dir = d.dir.path().to_owned();
    let file = write(&dir, "web.yaml", &SET.replace("VER", "1"));
    d.cli_ok(&["apply", "-f", &write(&dir, "client.yaml", CLIENT)]);
    d.cli_ok(&["apply", "-f", &file]);
    // OrderedReady: web-N exists only once web-0..N-1 do and are Ready.
    let mut seen = 0;
    wait_for("3 pods in order", Duration::from_secs(120), || {
        let p = pods(&d);
        for (i, x) in p.iter().enumerate() {
            assert_eq!(x.0, format!("web-{i}"), "ordinal gap: {p:?}");
            if i + 1 < p.len() {
                assert!(x.1, "web-{} exists before web-{i} is Ready: {p:?}", i + 1);
            }
        }
        seen = seen.max(p.len());
        all_ready(&d, 3, "1")
    });
    assert_eq!(seen, 3);
    for i in 0..3 {
        let name = format!("web-{i}");
        assert_eq!(exec(&d, &name, "hostname").trim(), name);
        let p = pod_json(&d, &name);
        assert_eq!(
            p["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"],
            *name
        );
        assert_eq!(
            p["metadata"]["labels"]["apps.kubernetes.io/pod-index"],
            i.to_string()
        );
        assert_eq!(p["spec"]["subdomain"], "nginx");
    }
    // The set's status follows its pods at the controller's next pass.
    let ready_column = |table: &str| -> Vec<String> {
        let row = table.lines().nth(1).unwrap_or_default();
        row.split_whitespace().take(2).map(str::to_owned).collect()
    };
    wait_for("the set's status at 3/3", Duration::from_secs(30), || {
        ready_column(&d.cli_ok(&["get", "sts"])) == ["web", "3/3"]
    });
    let table = d.cli_ok(&["get", "sts"]);
    assert_eq!(ready_column(&table), ["web", "3/3"], "{table}");
    let all = d.cli_ok(&["get", "all"]);
    assert!(
        all.contains("statefulset.apps/web") || all.contains("\nweb "),
        "{all}"
    );
    let pvcs = d.cli_ok(&["get", "pvc", "-o", "name"]);
    assert_eq!(
        pvcs.lines().collect::<Vec<_>>(),
        [
            "persistentvolumeclaim/www-web-0",
            "persistentvolumeclaim/www-web-1",
            "persistentvolumeclaim/www-web-2"
        ]
    );

    // Cluster DNS: web-0's own name, from another pod.
    let ip0 = pod_json(&d, "web-0")["status"]["podIP"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_for("web-0.nginx resolves", Duration::from_secs(30), || {
        let out = d.cli(&[
            "exec",
            "client",
            "--",
            "nslookup",
            "-type=a",
            "web-0.nginx.default.svc.cluster.local",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.split_once("Name:")
            .is_some_and(|(_, a)| a.contains(&ip0))
    });

    // Data in a claim survives the pod's deletion.
    exec(&d, "web-0", "echo zero > /data/f");
    exec(&d, "web-2", "echo two > /data/f");
    let uid0 = pods(&d)[0].3.clone();
    d.cli_ok(&["delete", "pod", "web-0"]);
    wait_for("web-0 back", Duration::from_secs(60), || {
        let p = pods(&d);
        all_ready(&d, 3, "1") && p[0].3 != uid0
    });
    assert_eq!(exec(&d, "web-0", "cat /data/f"), "zero\n");

    // Scale to 1 (web-2 goes first, then web-1), claims kept; back to 3 finds the data.
    d.cli_ok(&["scale", "sts", "web", "--replicas", "1"]);
    wait_for("one pod", Duration::from_secs(60), || all_ready(&d, 1, "1"));
    assert_eq!(d.cli_ok(&["get", "pvc", "-o", "name"]).lines().count(), 3);
    d.cli_ok(&["scale", "sts/web", "--replicas=3"]);
    wait_for("three pods again", Duration::from_secs(120), || {
        all_ready(&d, 3, "1")
    });
    assert_eq!(exec(&d, "web-2", "cat /data/f"), "two\n");

    // A rolling update (web-2, web-1, web-0 in turn), the daemon killed once web-2 is updated.
    std::fs::write(&file, SET.replace("VER", "2")).unwrap();
    d.cli_ok(&["apply", "-f", &file]);
    wait_for("web-2 updated", Duration::from_secs(60), || {
        let p = pods(&d);
        p.len() == 3 && p[2].2 == "2" && p[0].2 == "1"
    });
    d.kill9();
    d.spawn().await;
    let out = d.cli(&["rollout", "status", "sts/web", "--timeout-secs", "120"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("statefulset rolling update complete 3 pods"),
        "{text}"
    );
    wait_for("all updated", Duration::from_secs(30), || {
        all_ready(&d, 3, "2")
    });
    let sb = sandboxes(&d).await;
    for i in 0..3 {
        assert_eq!(
            sb.get(&format!("web-{i}")),
            Some(&1),
            "one sandbox per ordinal: {sb:?}"
        );
    }
    assert_eq!(exec(&d, "web-2", "cat /data/f"), "two\n");
    let s = json(&d, &["get", "sts", "web"])["status"].clone();
    assert_eq!(s["currentRevision"], s["updateRevision"], "{s}");
    assert_eq!(
        (s["updatedReplicas"].as_i64(), s["readyReplicas"].as_i64()),
        (Some(3), Some(3)),
        "{s}"
    );
    let describe = d.cli_ok(&["describe", "sts", "web"]);
    assert!(
        describe.contains("3 desired | 3 total") && describe.contains("www"),
        "{describe}"
    );

    // Deleting the set takes its pods and keeps its claims (Retain).
    d.cli_ok(&["delete", "sts", "web"]);
    wait_for("pods collected", Duration::from_secs(60), || {
        pods(&d).is_empty()
    });
    assert_eq!(d.cli_ok(&["get", "pvc", "-o", "name"]).lines().count(), 3);
    d.shutdown().await;
}
