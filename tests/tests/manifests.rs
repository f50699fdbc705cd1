//! The mini-kubelet side end to end: Kubernetes YAML applied with the CLI runs as real pods
//! through the same runtime (visible over the CRI), with ConfigMap and Secret volumes and env,
//! live ConfigMap updates, replacement on spec change, restarts, and clear errors.

use std::path::Path;
use std::time::{Duration, Instant};

use kinglet_proto::v1;
use kinglet_tests::*;

fn example() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/web-pod.yaml");
    std::fs::read_to_string(p).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn example_pod_with_configmap_and_secret_volumes_and_env() {
    let mut d = Daemon::start().await;
    d.import_test_image().await;
    let dir = d.dir.path().to_owned();
    let f = write(&dir, "web.yaml", &example());
    let out = d.cli_ok(&["apply", "-f", &f]);
    assert_eq!(
        out,
        "configmap/web-content created\nsecret/web-credentials created\npod/web created\n"
    );
    assert_eq!(
        d.cli_ok(&["apply", "-f", &f]).matches("unchanged").count(),
        3
    );

    wait_for("pod web running", Duration::from_secs(30), || {
        pod_json(&d, "web")["status"]["phase"] == "Running"
            && pod_json(&d, "web")["status"]["containerStatuses"]
                .as_array()
                .is_some_and(|a| a.iter().all(|c| c["ready"] == true))
    });
    let uid = pod_json(&d, "web")["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let uid = uid.as_str();
    let table = d.cli_ok(&["get", "pods"]);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.lines().nth(1).unwrap().contains("2/2") && table.contains("Running"),
        "{table}"
    );

    // Files from the ConfigMap and the Secret, with their modes; env from both.
    let ex = |c: &str, cmd: &[&str]| {
        let mut a = vec!["exec", "web", "-c", c, "--"];
        a.extend_from_slice(cmd);
        d.cli_ok(&a)
    };
    assert_eq!(
        ex("server", &["cat", "/www/index.html"]),
        "<h1>Hello from a Kinglet pod</h1>\n"
    );
    assert_eq!(
        ex("client", &["cat", "/etc/credentials/password"]),
        "s3cr3t-kinglet-demo"
    );
    assert_eq!(
        ex(
            "client",
            &["stat", "-L", "-c", "%a", "/etc/credentials/password"]
        ),
        "400\n"
    );
    assert_eq!(
        ex("server", &["stat", "-L", "-c", "%a", "/www/index.html"]),
        "644\n"
    );
    let env = ex("client", &["env"]);
    for want in [
        "GREETING=hello",
        "USERNAME=admin",
        "CRED_password=s3cr3t-kinglet-demo",
    ] {
        assert!(env.lines().any(|l| l == want), "{want} in {env}");
    }
    // The secret volume is a tmpfs, and the secret's bytes are in no file under --root.
    let mounts = ex("client", &["cat", "/proc/mounts"]);
    assert!(
        mounts
            .lines()
            .any(|l| l.contains(" /etc/credentials ") && l.starts_with("tmpfs ")),
        "{mounts}"
    );
    let grep = std::process::Command::new("grep")
        .args(["-r", "-l", "s3cr3t-kinglet-demo"])
        .arg(&d.root)
        .output()
        .unwrap();
    assert!(
        grep.stdout.is_empty(),
        "secret found on disk: {}",
        String::from_utf8_lossy(&grep.stdout)
    );
    // The pod's containers are visible through the CRI like any other.
    let mut rt = d.runtime().await;
    let cs = rt
        .list_containers(v1::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(cs.len(), 2);
    // Logs through the CLI.
    wait_for("client output", Duration::from_secs(15), || {
        d.cli_ok(&["logs", "web", "-c", "client"])
            .contains("hello admin: <h1>Hello from a Kinglet pod</h1>")
    });

    // A ConfigMap update reaches the running container within a second, through a ..data swap,
    // without a restart.
    let before = pod_json(&d, "web");
    let data_before = ex("server", &["readlink", "/www/..data"]);
    let f2 = write(
        &dir,
        "web2.yaml",
        &example().replace("<h1>Hello from a Kinglet pod</h1>", "<h1>Updated</h1>"),
    );
    let out = d.cli_ok(&["apply", "-f", &f2]);
    assert!(
        out.contains("configmap/web-content configured") && out.contains("pod/web unchanged"),
        "{out}"
    );
    let t = Instant::now();
    wait_for(
        "configmap update inside the container",
        Duration::from_secs(2),
        || ex("server", &["cat", "/www/index.html"]) == "<h1>Updated</h1>\n",
    );
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    assert_ne!(ex("server", &["readlink", "/www/..data"]), data_before);
    let after = pod_json(&d, "web");
    assert_eq!(
        container_id(&before, "server"),
        container_id(&after, "server")
    );

    // Applied objects survive a daemon restart, and the running containers are kept.
    d.kill9();
    d.spawn().await;
    let again = pod_json(&d, "web");
    assert_eq!(
        container_id(&again, "server"),
        container_id(&after, "server")
    );
    assert_eq!(again["status"]["phase"], "Running");

    // A changed pod spec replaces the pod.
    let f3 = write(&dir, "web3.yaml", &example().replace("sleep 5", "sleep 4"));
    assert!(d
        .cli_ok(&["apply", "-f", &f3])
        .contains("pod/web configured"));
    wait_for("replacement", Duration::from_secs(30), || {
        let p = pod_json(&d, "web");
        let id = container_id(&p, "client");
        !id.is_empty() && id != container_id(&after, "client") && p["status"]["phase"] == "Running"
    });

    // Deleting the manifest's objects removes the pod and everything of it.
    d.cli_ok(&["delete", "-f", &f3]);
    wait_for(
        "pod and its volumes removed",
        Duration::from_secs(30),
        || {
            pods_left(&d) == 0
                && mounts_under(&d.run_root)
                    .iter()
                    .all(|m| m.ends_with("/secrets"))
        },
    );
    assert!(!d.run_root.join("volumes").join(uid).exists());
    d.shutdown().await;
}

fn pods_left(d: &Daemon) -> usize {
    let out = std::process::Command::new(kinglet_bin())
        .args(["get", "pods", "--socket"])
        .arg(&d.socket)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
        + std::fs::read_dir(d.run_root.join("pods"))
            .map(|r| r.count())
            .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn crashing_containers_restart_and_bad_input_is_reported() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let dir = d.dir.path().to_owned();
    let crash = write(
        &dir,
        "crash.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: crasher}\nspec:\n  nodeSelector: {disk: ssd}\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: kinglet.test/busybox:latest\n    imagePullPolicy: IfNotPresent\n    command: [sh, -c, 'echo run; exit 3']\n",
    );
    let out = d.cli(&["apply", "-f", &crash]);
    assert!(out.status.success());
    let warn = String::from_utf8_lossy(&out.stderr);
    assert!(
        warn.contains(
            "Warning: pod/crasher: spec.nodeSelector is not supported by kinglet and is ignored"
        ),
        "{warn}"
    );
    // First restart at once, then back-off: restartCount grows, lastState keeps the exit.
    wait_for("a restart", Duration::from_secs(20), || {
        let p = pod_json(&d, "crasher");
        p["status"]["containerStatuses"][0]["restartCount"]
            .as_i64()
            .unwrap_or(0)
            >= 1
    });
    let p = pod_json(&d, "crasher");
    let cs = &p["status"]["containerStatuses"][0];
    let last = &cs["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 3, "{cs}");
    wait_for("CrashLoopBackOff", Duration::from_secs(20), || {
        let p = pod_json(&d, "crasher");
        p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    });
    assert!(d.cli_ok(&["get", "pods"]).contains("CrashLoopBackOff"));
    let desc = d.cli_ok(&["describe", "pod", "crasher"]);
    for want in [
        "Name:         crasher",
        "Restart Count:",
        "Exit Code:    3",
        "BackOff",
        "Back-off restarting failed container c",
    ] {
        assert!(desc.contains(want), "{want:?} in:\n{desc}");
    }
    assert!(d.cli_ok(&["logs", "crasher", "--previous"]).contains("run"));

    // Bad input: each names the file, object and field; the running pod is unaffected.
    let bad = [
        ("typo.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: t}\nspec:\n  containers:\n  - name: c\n    imagee: x\n", "spec.containers[0].imagee"),
        ("kind.yaml", "apiVersion: apps/v9\nkind: Gizmo\nmetadata: {name: g}\n", "Gizmo"),
        ("syntax.yaml", "apiVersion: v1\nkind: [Pod\n", "syntax.yaml"),
        ("b64.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {k: '!!!'}\n", "data"),
    ];
    for (name, text, needle) in bad {
        let f = write(&dir, name, text);
        let out = d.cli(&["apply", "-f", &f]);
        assert!(!out.status.success(), "{name} accepted");
        let msg = String::from_utf8_lossy(&out.stderr);
        assert!(msg.contains(needle) && msg.contains(name), "{name}: {msg}");
    }
    // A missing ConfigMap key: CreateContainerConfigError naming the key.
    let missing = write(
        &dir,
        "missing.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata: {a: b}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: needs-key}\nspec:\n  containers:\n  - name: c\n    image: kinglet.test/busybox:latest\n    imagePullPolicy: IfNotPresent\n    command: [sleep, '60']\n    env:\n    - name: X\n      valueFrom: {configMapKeyRef: {name: cm, key: nokey}}\n",
    );
    d.cli_ok(&["apply", "-f", &missing]);
    wait_for(
        "CreateContainerConfigError",
        Duration::from_secs(10),
        || {
            let p = pod_json(&d, "needs-key");
            let w = &p["status"]["containerStatuses"][0]["state"]["waiting"];
            w["reason"] == "CreateContainerConfigError"
                && w["message"].as_str().unwrap_or("").contains("nokey")
        },
    );
    assert!(
        pod_json(&d, "crasher")["status"]["containerStatuses"][0]["restartCount"]
            .as_i64()
            .unwrap()
            >= 1
    );
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_manifests_directory_is_kept_applied() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let dir = d.manifests();
    std::fs::create_dir_all(&dir).unwrap();
    let web = dir.join("web.yaml");
    std::fs::write(&web, example()).unwrap();
    wait_for(
        "pod from the manifests directory",
        Duration::from_secs(30),
        || {
            d.cli(&["get", "pod", "web", "-o", "json"]).status.success()
                && pod_json(&d, "web")["status"]["phase"] == "Running"
        },
    );
    let id = container_id(&pod_json(&d, "web"), "server");
    // Editing the ConfigMap in the file reaches the running container within a second.
    let t = Instant::now();
    std::fs::write(
        &web,
        example().replace("<h1>Hello from a Kinglet pod</h1>", "<h1>Edited</h1>"),
    )
    .unwrap();
    wait_for(
        "edit visible in the container",
        Duration::from_secs(3),
        || {
            d.cli_ok(&[
                "exec",
                "web",
                "-c",
                "server",
                "--",
                "cat",
                "/www/index.html",
            ]) == "<h1>Edited</h1>\n"
        },
    );
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(
        container_id(&pod_json(&d, "web"), "server"),
        id,
        "not restarted"
    );
    // A broken file beside it is reported and changes nothing else.
    std::fs::write(
        dir.join("broken.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: b}\nspec: {containers: [], hostNetworkk: true}\n",
    )
    .unwrap();
    wait_for(
        "the error, with file and field, in the daemon log",
        Duration::from_secs(5),
        || d.log().contains("broken.yaml") && d.log().contains("spec.hostNetworkk"),
    );
    assert_eq!(container_id(&pod_json(&d, "web"), "server"), id);
    // Removing the file removes its objects and the pod.
    std::fs::remove_file(&web).unwrap();
    wait_for("pod removed", Duration::from_secs(30), || {
        pods_left(&d) == 0
    });
    assert!(!d.cli(&["get", "configmap", "web-content"]).status.success());
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn init_containers_run_in_order_before_the_app() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let dir = d.dir.path().to_owned();
    let f = write(
        &dir,
        "init.yaml",
        r#"apiVersion: v1
kind: Pod
metadata: {name: staged}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: first
    image: kinglet.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'echo first >> /work/order; sleep 1']
    volumeMounts: [{name: work, mountPath: /work}]
  - name: second
    image: kinglet.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'echo second >> /work/order']
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: app
    image: kinglet.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'echo app >> /work/order; exec sleep 3600']
    volumeMounts: [{name: work, mountPath: /work}]
  volumes:
  - name: work
    emptyDir: {}
---
apiVersion: v1
kind: Pod
metadata: {name: blocked}
spec:
  restartPolicy: Never
  initContainers:
  - name: fails
    image: kinglet.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'exit 4']
  containers:
  - name: app
    image: kinglet.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sleep, '3600']
"#,
    );
    d.cli_ok(&["apply", "-f", &f]);
    wait_for("staged running", Duration::from_secs(30), || {
        pod_json(&d, "staged")["status"]["phase"] == "Running"
    });
    let order = d.cli_ok(&["exec", "staged", "--", "cat", "/work/order"]);
    assert_eq!(order, "first\nsecond\napp\n");
    let p = pod_json(&d, "staged");
    let inits = p["status"]["initContainerStatuses"].as_array().unwrap();
    assert!(
        inits
            .iter()
            .all(|c| c["state"]["terminated"]["exitCode"] == 0),
        "{inits:?}"
    );
    wait_for("blocked failed", Duration::from_secs(20), || {
        pod_json(&d, "blocked")["status"]["phase"] == "Failed"
    });
    let p = pod_json(&d, "blocked");
    assert_eq!(
        p["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"],
        4
    );
    assert_eq!(p["status"]["containerStatuses"][0]["ready"], false);
    assert!(
        p["status"]["containerStatuses"][0]["containerID"].is_null(),
        "app never created"
    );
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_and_liveness_probes() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let f = write(
        d.dir.path(),
        "probed.yaml",
        r#"apiVersion: v1
kind: Pod
metadata: {name: probed}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: kinglet.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'mkdir -p /www && echo ok > /www/index.html && touch /tmp/alive && exec httpd -f -p 8080 -h /www']
    ports: [{name: http, containerPort: 8080}]
    readinessProbe:
      httpGet: {path: /ready, port: http}
      periodSeconds: 1
      failureThreshold: 1
    livenessProbe:
      exec: {command: [test, -f, /tmp/alive]}
      periodSeconds: 1
      failureThreshold: 2
    startupProbe:
      tcpSocket: {port: 8080}
      periodSeconds: 1
"#,
    );
    d.cli_ok(&["apply", "-f", &f]);
    wait_for("running", Duration::from_secs(30), || {
        pod_json(&d, "probed")["status"]["containerStatuses"][0]["state"]["running"].is_object()
    });
    // Not ready while /ready is missing (404).
    std::thread::sleep(Duration::from_secs(3));
    let p = pod_json(&d, "probed");
    assert_eq!(
        p["status"]["containerStatuses"][0]["ready"], false,
        "{}",
        p["status"]
    );
    assert!(d.cli_ok(&["get", "pods"]).contains("0/1"));
    d.cli_ok(&["exec", "probed", "--", "sh", "-c", "echo yes > /www/ready"]);
    wait_for("ready", Duration::from_secs(10), || {
        pod_json(&d, "probed")["status"]["containerStatuses"][0]["ready"] == true
    });
    let cond = pod_json(&d, "probed")["status"]["conditions"].clone();
    assert!(
        cond.as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True"),
        "{cond}"
    );
    // Liveness failure restarts the container.
    d.cli_ok(&["exec", "probed", "--", "rm", "/tmp/alive"]);
    wait_for(
        "restart after liveness failure",
        Duration::from_secs(20),
        || {
            pod_json(&d, "probed")["status"]["containerStatuses"][0]["restartCount"]
                .as_i64()
                .unwrap_or(0)
                >= 1
        },
    );
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn image_pull_secrets_pull_from_a_private_registry() {
    use kinglet_tests::registry::{Mode, Registry};
    let reg = Registry::start(Mode::Basic {
        user: "bob".into(),
        password: "pull-secret-pw".into(),
    });
    let (layout, _) = test_image();
    reg.push(layout, IMAGE, "team/busybox:1.0");
    let d = Daemon::start().await;
    let image = format!("{}/team/busybox:1.0", reg.host);
    let auth = base64_encode(b"bob:pull-secret-pw");
    let docker_config = format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.host);
    let pod = |secret: &str| {
        format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: private}}
spec:
  terminationGracePeriodSeconds: 1
  imagePullSecrets: [{{name: {secret}}}]
  containers:
  - name: c
    image: {image}
    command: [sleep, '3600']
"#
        )
    };
    // Without a matching secret: ErrImagePull, then ImagePullBackOff, naming the registry.
    let f = write(d.dir.path(), "nosecret.yaml", &pod("missing"));
    d.cli_ok(&["apply", "-f", &f]);
    wait_for("pull failure", Duration::from_secs(20), || {
        let p = pod_json(&d, "private");
        let w = &p["status"]["containerStatuses"][0]["state"]["waiting"];
        matches!(
            w["reason"].as_str(),
            Some("ErrImagePull" | "ImagePullBackOff")
        ) && w["message"].as_str().unwrap_or("").contains(&reg.host)
    });
    assert!(!d.log().contains("pull-secret-pw"));
    d.cli_ok(&["delete", "pod", "private"]);
    // With the dockerconfigjson secret: pulled and running.
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: regcred}}\ntype: kubernetes.io/dockerconfigjson\nstringData:\n  .dockerconfigjson: '{docker_config}'\n"
    );
    let f = write(
        d.dir.path(),
        "withsecret.yaml",
        &format!("{secret}---\n{}", pod("regcred")),
    );
    d.cli_ok(&["apply", "-f", &f]);
    wait_for(
        "running from the private registry",
        Duration::from_secs(60),
        || pod_json(&d, "private")["status"]["phase"] == "Running",
    );
    assert!(d
        .cli_ok(&["describe", "pod", "private"])
        .contains("Successfully pulled image"));
    assert!(
        !d.log().contains("pull-secret-pw"),
        "the password is never logged"
    );
    d.shutdown().await;
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[tokio::test(flavor = "multi_thread")]
async fn projected_and_downward_api_volumes_and_resource_env() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let f = write(
        d.dir.path(),
        "proj.yaml",
        r#"apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {mode: fast}
---
apiVersion: v1
kind: Secret
metadata: {name: token}
stringData: {token: abc123}
---
apiVersion: v1
kind: Pod
metadata:
  name: proj
  labels: {tier: back, app: proj}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: kinglet.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sleep, '3600']
    resources: {limits: {memory: 64Mi}}
    env:
    - name: MEM_MI
      valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}
    volumeMounts:
    - {name: info, mountPath: /etc/podinfo}
    - {name: all, mountPath: /etc/all}
  volumes:
  - name: info
    downwardAPI:
      items:
      - {path: name, fieldRef: {fieldPath: metadata.name}}
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
  - name: all
    projected:
      sources:
      - configMap: {name: settings}
      - secret: {name: token, items: [{key: token, path: secret/token}]}
      - downwardAPI: {items: [{path: ns, fieldRef: {fieldPath: metadata.namespace}}]}
"#,
    );
    d.cli_ok(&["apply", "-f", &f]);
    wait_for("proj running", Duration::from_secs(30), || {
        pod_json(&d, "proj")["status"]["phase"] == "Running"
    });
    let ex = |cmd: &[&str]| {
        let mut a = vec!["exec", "proj", "--"];
        a.extend_from_slice(cmd);
        d.cli_ok(&a)
    };
    assert_eq!(ex(&["cat", "/etc/podinfo/name"]), "proj");
    assert_eq!(
        ex(&["cat", "/etc/podinfo/labels"]),
        // As the kubelet's FormatMap: no newline after the last line.
        "app=\"proj\"\ntier=\"back\""
    );
    assert_eq!(ex(&["cat", "/etc/all/mode"]), "fast");
    assert_eq!(ex(&["cat", "/etc/all/secret/token"]), "abc123");
    assert_eq!(ex(&["cat", "/etc/all/ns"]), "default");
    assert!(ex(&["cat", "/proc/mounts"])
        .lines()
        .any(|l| l.starts_with("tmpfs /etc/all ")));
    assert_eq!(ex(&["sh", "-c", "echo $MEM_MI"]), "64\n");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn post_start_and_pre_stop_hooks() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let host = d.dir.path().join("hooklog");
    std::fs::create_dir_all(&host).unwrap();
    let f = write(
        d.dir.path(),
        "hooks.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: hooked}}
spec:
  terminationGracePeriodSeconds: 10
  containers:
  - name: c
    image: kinglet.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'trap "echo term >> /log/events; exit 0" TERM; while true; do sleep 0.1; done']
    lifecycle:
      postStart:
        exec: {{command: [sh, -c, 'echo poststart >> /log/events']}}
      preStop:
        exec: {{command: [sh, -c, 'echo prestop >> /log/events; sleep 1']}}
    volumeMounts: [{{name: log, mountPath: /log}}]
  volumes:
  - name: log
    hostPath: {{path: {}, type: Directory}}
"#,
            host.display()
        ),
    );
    d.cli_ok(&["apply", "-f", &f]);
    wait_for("running", Duration::from_secs(30), || {
        pod_json(&d, "hooked")["status"]["phase"] == "Running"
    });
    assert_eq!(
        std::fs::read_to_string(host.join("events")).unwrap(),
        "poststart\n"
    );
    let t = Instant::now();
    d.cli_ok(&["delete", "pod", "hooked"]);
    wait_for("pod gone", Duration::from_secs(30), || pods_left(&d) == 0);
    // preStop ran (and was waited for) before the stop signal; the container then exited on
    // its TERM trap long before the 10 s grace period would have forced a SIGKILL.
    assert_eq!(
        std::fs::read_to_string(host.join("events")).unwrap(),
        "poststart\nprestop\nterm\n"
    );
    assert!(
        t.elapsed() >= Duration::from_secs(1) && t.elapsed() < Duration::from_secs(9),
        "{:?}",
        t.elapsed()
    );
    d.shutdown().await;
}
