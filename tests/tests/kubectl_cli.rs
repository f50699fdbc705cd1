//! The kubectl-shaped CLI against a real daemon and real containers: the default container
//! of `logs`/`exec` (and kubectl's note naming it), kubectl's NotFound, `logs --tail/--since/--timestamps/-f`, `get -o
//! name/jsonpath`, `delete -l/--all`, `version`, `image ls`.

use std::time::{Duration, Instant};

use kinglet_tests::*;

const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: two
  labels: {app: two}
  annotations: {kubectl.kubernetes.io/default-container: second}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: first
    image: kinglet.test/busybox:latest
    imagePullPolicy: Never
    env: [{name: WHO, value: first}]
    command: ["sh", "-c", "echo first-1; echo first-2; echo first-3; exec sleep 3600"]
  - name: second
    image: kinglet.test/busybox:latest
    imagePullPolicy: Never
    env: [{name: WHO, value: second}]
    command: ["sh", "-c", "echo second-1; exec sleep 3600"]
---
apiVersion: v1
kind: Pod
metadata:
  name: tick
  labels: {app: tick}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 0
  containers:
  - name: a
    image: kinglet.test/busybox:latest
    imagePullPolicy: Never
    env: [{name: WHO, value: a}]
    command: ["sh", "-c", "sleep 2; for i in 1 2 3 4 5 6; do echo tick-$i; sleep 0.5; done"]
  - name: b
    image: kinglet.test/busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", "exec sleep 3600"]
"#;

const MORE: &str = r#"
apiVersion: v1
kind: Secret
metadata: {name: creds}
data: {password: aHVudGVyMg==}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: conf}
data: {mode: fast}
---
apiVersion: v1
kind: Pod
metadata: {name: nocm}
spec:
  containers:
  - {name: c, image: kinglet.test/busybox:latest, imagePullPolicy: Never}
  volumes:
  - {name: v, configMap: {name: absent}}
"#;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_verbs_pick_containers_filter_logs_and_select() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let f = write(d.dir.path(), "pods.yaml", PODS);
    d.cli_ok(&["apply", "-f", &f]);
    // `logs -f` on the ticking container from its start: it follows by inotify and ends
    // when the container exits.
    wait_for("tick's container a", Duration::from_secs(60), || {
        d.cli(&["logs", "tick", "-c", "a"]).status.success()
    });
    let follow = {
        let mut cmd = std::process::Command::new(kinglet_bin());
        cmd.args(["logs", "--socket"])
            .arg(&d.socket)
            .args(["tick", "-f", "-c", "a"]);
        cmd.stdout(std::process::Stdio::piped()).spawn().unwrap()
    };
    let followed_at = Instant::now();
    wait_for("pod two running", Duration::from_secs(60), || {
        d.cli_ok(&["get", "pods", "two"]).contains("2/2")
    });
    wait_for("both logs", Duration::from_secs(20), || {
        d.cli_ok(&["logs", "two", "-c", "first"])
            .contains("first-3")
            && d.cli_ok(&["logs", "two"]).contains("second-1")
    });

    // The default container: the annotation's, else the first.
    assert_eq!(d.cli_ok(&["logs", "two"]), "second-1\n");
    assert_eq!(
        d.cli_ok(&["exec", "two", "--", "sh", "-c", "echo $WHO"]),
        "second\n"
    );
    assert_eq!(
        d.cli_ok(&["exec", "tick", "--", "sh", "-c", "echo $WHO"]),
        "a\n"
    );
    // kubectl's note when it picks the first of several (not for the annotated one).
    let out = d.cli(&["exec", "tick", "--", "true"]);
    assert_eq!(stderr(&out), "Defaulted container \"a\" out of: a, b\n");
    assert_eq!(stderr(&d.cli(&["logs", "two"])), "");
    // Filters.
    assert_eq!(
        d.cli_ok(&["logs", "two", "-c", "first", "--tail", "2"]),
        "first-2\nfirst-3\n"
    );
    assert_eq!(
        d.cli_ok(&["logs", "two", "-c", "first", "--since", "1h"])
            .lines()
            .count(),
        3
    );
    let stamped = d.cli_ok(&["logs", "two", "-c", "first", "--timestamps", "--tail", "1"]);
    let (ts, rest) = stamped.trim_end().split_once(' ').unwrap();
    assert_eq!(rest, "first-3");
    assert!(
        ts.len() >= 20 && ts.ends_with('Z') && ts.contains('T'),
        "{stamped}"
    );

    // kubectl's errors.
    let out = d.cli(&["logs", "nopod"]);
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out),
        "Error from server (NotFound): pods \"nopod\" not found\n"
    );
    let out = d.cli(&["logs", "two", "-c", "zz"]);
    assert!(
        stderr(&out).contains("container zz is not valid for pod two"),
        "{}",
        stderr(&out)
    );
    let out = d.cli(&["exec", "nopod", "--", "true"]);
    assert!(
        stderr(&out).contains("pods \"nopod\" not found"),
        "{}",
        stderr(&out)
    );

    // Output forms.
    assert_eq!(
        d.cli_ok(&["get", "pods", "-o", "name"]),
        "pod/tick\npod/two\n"
    );
    assert_eq!(
        d.cli_ok(&["get", "pods", "-o", "jsonpath={.items[*].metadata.name}"]),
        "tick two"
    );
    assert_eq!(
        d.cli_ok(&[
            "get",
            "pods",
            "-o",
            r#"jsonpath={range .items[*]}{.metadata.name}:{.metadata.labels.app}{"\n"}{end}"#
        ]),
        "tick:tick\ntwo:two\n"
    );
    // Every pod is bound to this node (the host name, lower-cased, as the kubelet's), as a
    // scheduler would have bound it; `-o wide` shows the same.
    let node = nix::unistd::gethostname()
        .unwrap()
        .into_string()
        .unwrap()
        .to_lowercase();
    assert_eq!(
        d.cli_ok(&["get", "pods", "-o", "jsonpath={.items[*].spec.nodeName}"]),
        format!("{node} {node}")
    );
    let wide = d.cli_ok(&["get", "pod", "tick", "-o", "wide"]);
    let cells = |l: &str| -> Vec<String> {
        l.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect()
    };
    let mut lines = wide.lines();
    let header = [
        "NAME",
        "READY",
        "STATUS",
        "RESTARTS",
        "AGE",
        "IP",
        "NODE",
        "NOMINATED NODE",
        "READINESS GATES",
    ];
    assert_eq!(cells(lines.next().unwrap()), header, "{wide}");
    let row = cells(lines.next().unwrap());
    assert_eq!(row[6..], [node.as_str(), "<none>", "<none>"], "{wide}");
    // -o custom-columns: kubectl's table of chosen fields; a missing one is <none>.
    assert_eq!(
        d.cli_ok(&[
            "get",
            "pods",
            "-o",
            "custom-columns=NAME:.metadata.name,APP:{.metadata.labels.app},NOM:status.nominatedNodeName"
        ]),
        "NAME   APP    NOM\ntick   tick   <none>\ntwo    two    <none>\n"
    );
    // --show-labels: a LABELS column last, as kubectl.
    let shown = d.cli_ok(&["get", "pods", "--show-labels"]);
    let mut lines = shown.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "LABELS"],
        "{shown}"
    );
    let labels: Vec<(&str, &str)> = lines
        .map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            (cells[0], *cells.last().unwrap())
        })
        .collect();
    assert_eq!(
        labels,
        [("tick", "app=tick"), ("two", "app=two")],
        "{shown}"
    );

    // The follower saw every tick and ended with the container.
    let out = tokio::task::spawn_blocking(move || follow.wait_with_output().unwrap())
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert_eq!(
        text,
        "tick-1\ntick-2\ntick-3\ntick-4\ntick-5\ntick-6\n",
        "followed for {:?}",
        followed_at.elapsed()
    );

    // describe of ConfigMaps and Secrets (values hidden), events of a missing ConfigMap.
    let f = write(d.dir.path(), "more.yaml", MORE);
    d.cli_ok(&["apply", "-f", &f]);
    let secret = d.cli_ok(&["describe", "secret", "creds"]);
    assert!(
        secret.contains("\nType:  Opaque\n\nData\n====\npassword:  7 bytes\n"),
        "{secret}"
    );
    assert!(!secret.contains("hunter2"), "{secret}");
    let cm = d.cli_ok(&["describe", "configmap", "conf"]);
    assert!(cm.contains("\nData\n====\nmode:\n----\nfast\n"), "{cm}");
    let out = d.cli(&["describe", "secret", "nosecret"]);
    assert!(
        stderr(&out).contains("secrets \"nosecret\" not found"),
        "{}",
        stderr(&out)
    );
    wait_for("FailedMount event", Duration::from_secs(30), || {
        d.cli_ok(&["get", "events"]).contains("FailedMount")
    });
    let events = d.cli_ok(&["get", "events"]);
    assert!(events.starts_with("LAST SEEN"), "{events}");
    let line = events.lines().find(|l| l.contains("FailedMount")).unwrap();
    assert!(
        line.contains("Warning") && line.contains("pod/nocm"),
        "{events}"
    );
    assert!(
        line.contains("configmap default/absent not found"),
        "{events}"
    );
    assert_eq!(events.matches("FailedMount").count(), 1, "{events}");
    let json: serde_json::Value =
        serde_json::from_str(&d.cli_ok(&["get", "events", "-o", "json"])).unwrap();
    let times: Vec<&str> = json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["lastTimestamp"].as_str().unwrap())
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "events oldest first");
    let all = d.cli_ok(&["get", "all"]);
    assert!(all.contains("nocm") && all.contains("two"), "{all}");

    // Selection.
    assert_eq!(
        d.cli_ok(&["delete", "pods", "-l", "app=tick"]),
        "pod \"tick\" deleted\n"
    );
    assert_eq!(
        d.cli_ok(&["get", "pods", "-o", "name"]),
        "pod/nocm\npod/two\n"
    );
    // Several names, one missing: the others are deleted, the missing one is kubectl's
    // NotFound, and the command fails.
    let out = d.cli(&["delete", "pod", "nocm", "missing"]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "pod \"nocm\" deleted\n"
    );
    assert_eq!(
        stderr(&out).trim(),
        "Error from server (NotFound): pods \"missing\" not found"
    );
    assert_eq!(
        d.cli_ok(&["delete", "pods", "--all"]),
        "pod \"two\" deleted\n"
    );
    let out = d.cli(&["get", "pods"]);
    assert!(
        stderr(&out).contains("No resources found"),
        "{}",
        stderr(&out)
    );

    let v = d.cli_ok(&["version"]);
    assert!(
        v.starts_with("Client Version: ") && v.contains("\nServer Version: "),
        "{v}"
    );
    let images = d.cli_ok(&["image", "ls"]);
    let mut lines = images.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("IMAGE ") && header.ends_with("SIZE"),
        "{images}"
    );
    let row = lines.next().unwrap();
    assert!(
        row.starts_with("kinglet.test/busybox   latest   "),
        "{images}"
    );
    assert!(row.ends_with("MB") || row.ends_with("kB"), "{images}");
    d.shutdown().await;
}
