//! Pods exactly as the kubelet runs them, end to end through `kinglet apply` with real
//! containers: the downward API (every fieldRef, resourceFieldRef in env and in plain and
//! projected volumes), ServiceAccounts, the kubelet-managed /etc/hosts with hostAliases,
//! HOSTNAME and service link variables, supplementary groups, and a volume that cannot be
//! prepared reported as an event and a waiting message.

use std::time::Duration;

use kinglet_tests::*;

const POD: &str = r#"apiVersion: v1
kind: Service
metadata: {name: my-web}
spec:
  clusterIP: 10.220.9.10
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: bot}
---
apiVersion: v1
kind: Pod
metadata:
  name: kube
  labels: {app: kube, tier: back}
  annotations: {note: hi}
spec:
  terminationGracePeriodSeconds: 1
  serviceAccountName: bot
  hostAliases:
  - {ip: 127.0.0.1, hostnames: [foo.local, bar.local]}
  - {ip: 10.1.2.3, hostnames: [foo.remote]}
  securityContext: {runAsUser: 1001, runAsGroup: 3000, fsGroup: 2000, supplementalGroups: [4000]}
  containers:
  - name: c
    image: kinglet.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sleep, '3600']
    resources: {limits: {memory: 64Mi, cpu: 500m}, requests: {memory: 32Mi}}
    env:
    - {name: SA, valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}}
    - {name: HOST_IP, valueFrom: {fieldRef: {fieldPath: status.hostIP}}}
    - {name: POD_IPS, valueFrom: {fieldRef: {fieldPath: status.podIPs}}}
    - {name: TIER, valueFrom: {fieldRef: {fieldPath: "metadata.labels['tier']"}}}
    - {name: NOTE, valueFrom: {fieldRef: {fieldPath: "metadata.annotations['note']"}}}
    - {name: CPU_M, valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: 1m}}}
    - {name: WEB, value: "$(MY_WEB_SERVICE_HOST)"}
    volumeMounts:
    - {name: info, mountPath: /etc/podinfo}
    - {name: proj, mountPath: /etc/proj}
  volumes:
  - name: info
    downwardAPI:
      items:
      - {path: mem_limit, resourceFieldRef: {containerName: c, resource: limits.memory, divisor: 1Mi}}
      - {path: mem_request, resourceFieldRef: {containerName: c, resource: requests.memory, divisor: 1Mi}}
      - {path: cpu_limit, resourceFieldRef: {containerName: c, resource: limits.cpu, divisor: 1m}}
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
  - name: proj
    projected:
      sources:
      - downwardAPI:
          items:
          - {path: cpu_request, resourceFieldRef: {containerName: c, resource: requests.cpu, divisor: 1m}}
          - {path: tier, fieldRef: {fieldPath: "metadata.labels['tier']"}}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn pods_run_as_the_kubelet_runs_them() {
    let d = Daemon::start_with_config("service-cidr = \"10.220.9.0/24\"\n").await;
    d.import_test_image().await;
    let f = write(d.dir.path(), "kube.yaml", POD);
    let out = d.cli_ok(&["apply", "-f", &f]);
    assert!(out.contains("serviceaccount/bot created"), "{out}");
    wait_for("kube running", Duration::from_secs(60), || {
        pod_json(&d, "kube")["status"]["phase"] == "Running"
    });
    let ex = |cmd: &[&str]| {
        let mut a = vec!["exec", "kube", "--"];
        a.extend_from_slice(cmd);
        d.cli_ok(&a)
    };
    let env = |name: &str| ex(&["sh", "-c", &format!("printf %s \"${name}\"")]);
    let pod = pod_json(&d, "kube");
    let pod_ip = pod["status"]["podIP"].as_str().unwrap().to_owned();

    // 1. The downward API.
    assert_eq!(env("SA"), "bot");
    assert!(!env("HOST_IP").is_empty());
    assert_eq!(env("POD_IPS"), pod_ip);
    assert_eq!(env("TIER"), "back");
    assert_eq!(env("NOTE"), "hi");
    assert_eq!(env("CPU_M"), "500");
    assert_eq!(ex(&["cat", "/etc/podinfo/mem_limit"]), "64");
    assert_eq!(ex(&["cat", "/etc/podinfo/mem_request"]), "32");
    assert_eq!(ex(&["cat", "/etc/podinfo/cpu_limit"]), "500");
    assert_eq!(
        ex(&["cat", "/etc/podinfo/labels"]),
        "app=\"kube\"\ntier=\"back\""
    );
    // No CPU request and a limit: the API server's defaulting makes the request the limit.
    assert_eq!(ex(&["cat", "/etc/proj/cpu_request"]), "500");
    assert_eq!(ex(&["cat", "/etc/proj/tier"]), "back");

    // 2. ServiceAccounts: the default one exists; a missing one is refused as the API server
    // refuses it, and the other documents of the file are applied.
    let sas = d.cli_ok(&["get", "sa"]);
    assert!(sas.contains("default") && sas.contains("bot"), "{sas}");
    let bad = write(
        d.dir.path(),
        "bad.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: nosa}\nspec:\n  serviceAccountName: ghost\n  containers: [{name: c, image: kinglet.test/busybox:latest, imagePullPolicy: IfNotPresent, command: [sleep, '1']}]\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: beside}\ndata: {a: b}\n",
    );
    let o = d.cli(&["apply", "-f", &bad]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("pods \"nosa\" is forbidden: error looking up service account default/ghost: serviceaccount \"ghost\" not found"),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("configmap/beside created"));

    // 3. The kubelet-managed /etc/hosts.
    let hosts = ex(&["cat", "/etc/hosts"]);
    assert_eq!(
        hosts,
        format!("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n{pod_ip}\tkube\n\n# Entries added by HostAliases.\n127.0.0.1\tfoo.local\tbar.local\n10.1.2.3\tfoo.remote\n")
    );

    // 4. HOSTNAME and service links.
    assert_eq!(env("HOSTNAME"), "kube");
    assert_eq!(env("MY_WEB_SERVICE_HOST"), "10.220.9.10");
    assert_eq!(env("MY_WEB_SERVICE_PORT_HTTP"), "80");
    assert_eq!(env("MY_WEB_PORT"), "tcp://10.220.9.10:80");
    assert_eq!(env("MY_WEB_PORT_80_TCP_ADDR"), "10.220.9.10");
    assert_eq!(env("WEB"), "10.220.9.10");

    // 5. Supplementary groups as on Kubernetes (uid 1001 has no entry in the image, so no
    // groups of its own; see cri_conformance for the image's groups under Merge and Strict).
    assert_eq!(
        ex(&["id"]).trim(),
        "uid=1001 gid=3000 groups=2000,3000,4000"
    );
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_volume_that_cannot_be_prepared_is_an_event_and_a_waiting_message() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let f = write(
        d.dir.path(),
        "badvol.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: badvol}\nspec:\n  containers:\n  - {name: c, image: kinglet.test/busybox:latest, imagePullPolicy: IfNotPresent, command: [sleep, '3600'], volumeMounts: [{name: info, mountPath: /i}]}\n  volumes:\n  - name: info\n    downwardAPI:\n      items: [{path: x, resourceFieldRef: {containerName: nope, resource: limits.cpu}}]\n",
    );
    d.cli_ok(&["apply", "-f", &f]);
    let msg = |p: &serde_json::Value| {
        p["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    wait_for("a waiting message", Duration::from_secs(30), || {
        msg(&pod_json(&d, "badvol")).contains("MountVolume.SetUp failed")
    });
    let m = msg(&pod_json(&d, "badvol"));
    assert!(
        m.contains("volume \"info\"") && m.contains("\"nope\""),
        "{m}"
    );
    let desc = d.cli_ok(&["describe", "pod", "badvol"]);
    assert!(desc.contains("FailedMount"), "{desc}");
    d.shutdown().await;
}

/// The pod's row in `kinglet get pods`: (READY, STATUS, RESTARTS).
fn row(d: &Daemon, name: &str) -> (String, String, String) {
    let out = d.cli_ok(&["get", "pods", name]);
    let line = out.lines().nth(1).unwrap_or_default().to_owned();
    let cells: Vec<&str> = line.split_whitespace().collect();
    let cell = |i: usize| cells.get(i).copied().unwrap_or_default().to_owned();
    (cell(1), cell(2), cell(3))
}

#[tokio::test(flavor = "multi_thread")]
async fn init_progress_crash_loops_and_sidecars_show_as_kubectl_shows_them() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let f = write(
        d.dir.path(),
        "status.yaml",
        r#"apiVersion: v1
kind: Pod
metadata: {name: steps}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - {name: a, image: kinglet.test/busybox:latest, imagePullPolicy: IfNotPresent, command: [sleep, '3']}
  - {name: b, image: kinglet.test/busybox:latest, imagePullPolicy: IfNotPresent, command: [sleep, '3']}
  containers:
  - {name: app, image: kinglet.test/busybox:latest, imagePullPolicy: IfNotPresent, command: [sleep, '3600']}
---
apiVersion: v1
kind: Pod
metadata: {name: initcrash}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - {name: fail, image: kinglet.test/busybox:latest, imagePullPolicy: IfNotPresent, command: [sh, -c, 'exit 1']}
  containers:
  - {name: app, image: kinglet.test/busybox:latest, imagePullPolicy: IfNotPresent, command: [sleep, '3600']}
---
apiVersion: v1
kind: Pod
metadata: {name: side}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - {name: proxy, image: kinglet.test/busybox:latest, imagePullPolicy: IfNotPresent, restartPolicy: Always, command: [sleep, '3600']}
  containers:
  - {name: web, image: kinglet.test/busybox:latest, imagePullPolicy: IfNotPresent, command: [sleep, '3600']}
  - {name: log, image: kinglet.test/busybox:latest, imagePullPolicy: IfNotPresent, command: [sleep, '3600']}
"#,
    );
    d.cli_ok(&["apply", "-f", &f]);
    // Init progress, sampled: Init:0/2, then Init:1/2, then Running.
    let mut seen: Vec<String> = Vec::new();
    wait_for("steps running", Duration::from_secs(60), || {
        let (_, status, _) = row(&d, "steps");
        if seen.last() != Some(&status) {
            eprintln!("steps: {status}");
            seen.push(status.clone());
        }
        status == "Running"
    });
    let order: Vec<&str> = seen
        .iter()
        .map(String::as_str)
        .filter(|s| matches!(*s, "Init:0/2" | "Init:1/2" | "Running"))
        .collect();
    assert_eq!(order, ["Init:0/2", "Init:1/2", "Running"], "{seen:?}");
    // A crash-looping init container: its back-off and restarts.
    wait_for("Init:CrashLoopBackOff", Duration::from_secs(60), || {
        let (ready, status, restarts) = row(&d, "initcrash");
        ready == "0/1"
            && status == "Init:CrashLoopBackOff"
            && restarts.parse::<i32>().unwrap_or(0) >= 1
    });
    // A native sidecar counts in READY; describe lists init and app containers.
    wait_for("side 3/3", Duration::from_secs(60), || {
        row(&d, "side") == ("3/3".into(), "Running".into(), "0".into())
    });
    let desc = d.cli_ok(&["describe", "pod", "side"]);
    let (inits, apps) = desc.split_once("\nContainers:\n").expect(&desc);
    assert!(inits.contains("Init Containers:\n  proxy:\n"), "{desc}");
    assert!(inits.contains("Restart Policy: Always"), "{desc}");
    assert!(
        apps.contains("  web:\n") && apps.contains("  log:\n"),
        "{desc}"
    );
    assert_eq!(apps.matches("Running").count(), 2, "{desc}");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_bad_object_in_the_manifests_directory_does_not_stop_the_others() {
    let d = Daemon::start().await;
    let dir = d.manifests();
    std::fs::create_dir_all(&dir).unwrap();
    // An unsupported kind, a Pod refused at admission, and good objects around them, in one
    // file and in another.
    std::fs::write(
        dir.join("mixed.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: first}\ndata: {a: b}\n---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: nosa}\nspec:\n  serviceAccountName: ghost\n  containers: [{name: c, image: busybox}]\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: last}\ndata: {a: b}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("other.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata: {name: other}\nstringData: {k: v}\n",
    )
    .unwrap();
    wait_for("the good objects", Duration::from_secs(30), || {
        ["configmap/first", "configmap/last", "secret/other"]
            .iter()
            .all(|o| d.cli(&["get", o]).status.success())
    });
    assert!(!d.cli(&["get", "pod", "nosa"]).status.success());
    let log = d.log();
    assert!(
        log.contains("mixed.yaml: document 2") && log.contains("\"Widget\""),
        "the bad document is named: {log}"
    );
    assert!(
        log.contains("serviceaccount \\\"ghost\\\" not found")
            || log.contains("serviceaccount \"ghost\" not found"),
        "the refused pod is named: {log}"
    );
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_pod_exists_terminating_through_its_grace_period() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let f = write(
        d.dir.path(),
        "slow.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: slow}\nspec:\n  terminationGracePeriodSeconds: 20\n  containers:\n  - name: c\n    image: kinglet.test/busybox:latest\n    imagePullPolicy: IfNotPresent\n    command: [sh, -c, 'trap \"sleep 3; exit 0\" TERM; sleep 3600 & wait']\n",
    );
    d.cli_ok(&["apply", "-f", &f]);
    wait_for("slow running", Duration::from_secs(30), || {
        pod_json(&d, "slow")["status"]["phase"] == "Running"
    });
    let t0 = std::time::Instant::now();
    // `delete` waits for the pod to be gone, as kubectl does: run it beside.
    let socket = d.socket.clone();
    let deleting = tokio::task::spawn_blocking(move || {
        std::process::Command::new(kinglet_bin())
            .args(["delete", "pod", "slow", "--socket"])
            .arg(&socket)
            .output()
    });
    wait_for("slow terminating", Duration::from_secs(10), || {
        pod_json(&d, "slow")["metadata"]["deletionTimestamp"].is_string()
    });
    let p = pod_json(&d, "slow");
    assert!(p["metadata"]["deletionTimestamp"].is_string(), "{p}");
    assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 20);
    assert_eq!(row(&d, "slow").1, "Terminating");
    let out = deleting.await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("pod \"slow\" deleted"));
    // When `delete` returns, the pod is gone.
    assert!(!d.cli(&["get", "pod", "slow"]).status.success());
    // Its trap ran (about 3 s), within the 20 s grace period.
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(20),
        "{took:?}"
    );
    d.shutdown().await;
}
