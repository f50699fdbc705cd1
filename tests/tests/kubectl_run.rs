//! `kinglet run` and `attach` against a real daemon, as the Kubernetes docs use kubectl's: a
//! pod from a command line, an interactive `run -i --rm --restart=Never` whose stdin reaches
//! the container and whose exit code is `run`'s, and `attach` to a running container.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use kinglet_tests::*;

/// `kinglet run ARGS` with `input` on its stdin, killed after 60 s.
fn run_with_input(d: &Daemon, args: &[&str], input: &str) -> Output {
    let socket = d.socket.to_str().unwrap();
    let mut child = Command::new("timeout")
        .arg("60")
        .arg(kinglet_bin())
        .args(["run", "--socket", socket])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn run_and_attach_as_kubectl() {
    require_root();
    let d = Daemon::start().await;
    d.import_test_image().await;
    let image = format!("--image={IMAGE}");
    let pull = "--image-pull-policy=IfNotPresent";

    // A pod from a command line: labelled run=NAME, the arguments after -- as its args.
    assert_eq!(
        d.cli_ok(&["run", "sleeper", &image, pull, "--", "sleep", "3600"]),
        "pod/sleeper created\n"
    );
    d.wait_or_explain("sleeper running", Duration::from_secs(60), || {
        pod_json(&d, "sleeper")["status"]["phase"] == "Running"
    });
    // wait: a condition, a JSONPath; a timeout is kubectl's error.
    assert_eq!(
        d.cli_ok(&[
            "wait",
            "--for=condition=Ready",
            "pod/sleeper",
            "--timeout=30s"
        ]),
        "pod/sleeper condition met\n"
    );
    assert_eq!(
        d.cli_ok(&[
            "wait",
            "pods",
            "-l",
            "run=sleeper",
            "--for=jsonpath={.status.phase}=Running"
        ]),
        "pod/sleeper condition met\n"
    );
    let out = d.cli(&[
        "wait",
        "pod/sleeper",
        "--for=condition=Ready=false",
        "--timeout=1s",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("error: timed out waiting for the condition on pods/sleeper"),
        "{}",
        text(&out.stderr)
    );
    let p = pod_json(&d, "sleeper");
    assert_eq!(p["metadata"]["labels"]["run"], "sleeper");
    assert_eq!(p["spec"]["containers"][0]["args"][0], "sleep");
    assert_eq!(p["spec"]["restartPolicy"], "Always");
    // A second run of the same name is kubectl's AlreadyExists.
    let out = d.cli(&["run", "sleeper", &image]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr)
            .contains("Error from server (AlreadyExists): pods \"sleeper\" already exists"),
        "{}",
        text(&out.stderr)
    );

    // label and annotate: set, refuse a changed value without --overwrite, remove; the pod
    // keeps running (the same container: metadata is not the spec).
    let cid = |d: &Daemon| {
        pod_json(d, "sleeper")["status"]["containerStatuses"][0]["containerID"].clone()
    };
    let before = cid(&d);
    assert_eq!(
        d.cli_ok(&["label", "pods", "sleeper", "env=prod"]),
        "pod/sleeper labeled\n"
    );
    assert_eq!(
        d.cli_ok(&["get", "pods", "-l", "env=prod", "-o", "name"]),
        "pod/sleeper\n"
    );
    let out = d.cli(&["label", "pod/sleeper", "env=dev"]);
    assert!(
        text(&out.stderr).contains("'env' already has a value (prod), and --overwrite is false"),
        "{}",
        text(&out.stderr)
    );
    d.cli_ok(&["label", "pod/sleeper", "env=dev", "--overwrite"]);
    assert_eq!(
        d.cli_ok(&["get", "pods", "-l", "env=dev", "-o", "name"]),
        "pod/sleeper\n"
    );
    assert_eq!(
        d.cli_ok(&["label", "pod", "sleeper", "env-"]),
        "pod/sleeper unlabeled\n"
    );
    assert_eq!(
        d.cli_ok(&["annotate", "pod", "sleeper", "note=hello world"]),
        "pod/sleeper annotated\n"
    );
    assert_eq!(
        d.cli_ok(&[
            "get",
            "pod",
            "sleeper",
            "-o",
            "jsonpath={.metadata.annotations.note}"
        ]),
        "hello world"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(cid(&d), before, "relabelling does not restart the pod");
    assert_eq!(pod_json(&d, "sleeper")["status"]["phase"], "Running");

    // set image: a Deployment's template changes, and so a new ReplicaSet rolls out.
    let f = d.dir.path().join("web.yaml");
    std::fs::write(
        &f,
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      containers:\n      - {{name: web, image: '{IMAGE}', imagePullPolicy: IfNotPresent, command: [sleep, '3600']}}\n"
        ),
    )
    .unwrap();
    d.cli_ok(&["apply", "-f", f.to_str().unwrap()]);
    assert_eq!(
        d.cli_ok(&[
            "set",
            "image",
            "deployment/web",
            "web=kinglet.test/busybox:2.0"
        ]),
        "deployment.apps/web image updated\n"
    );
    assert_eq!(
        d.cli_ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}"
        ]),
        "kinglet.test/busybox:2.0"
    );
    d.wait_or_explain("a second ReplicaSet", Duration::from_secs(30), || {
        d.cli_ok(&["get", "rs", "-l", "app=web", "-o", "name"])
            .lines()
            .count()
            == 2
    });
    let out = d.cli(&["set", "image", "deploy/web", "nope=x:1"]);
    assert!(
        text(&out.stderr).contains("unable to find container named \"nope\""),
        "{}",
        text(&out.stderr)
    );

    // Interactive: this stdin reaches the container's (closed after it: stdinOnce), its
    // output comes back, and --rm deletes the pod afterwards.
    let args = ["-i", "--rm", "--restart=Never", "upper", &image, pull];
    let out = run_with_input(
        &d,
        &[&args[..], &["--", "tr", "a-z", "A-Z"]].concat(),
        "hello\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "HELLO\npod \"upper\" deleted\n");
    let out = d.cli(&["wait", "--for=delete", "pod/upper", "--timeout=30s"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let gone = d.cli(&["get", "pod", "upper"]);
    assert!(!gone.status.success(), "the pod was removed");

    // The command's exit code is run's (restart Never).
    let args = [
        "-i",
        "--restart=Never",
        "fails",
        &image,
        pull,
        "--command",
        "--",
    ];
    let cmd = ["sh", "-c", "read line; echo \"got $line\"; exit 3"];
    let out = run_with_input(&d, &[&args[..], &cmd].concat(), "it\n");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "got it\n");
    assert_eq!(
        pod_json(&d, "fails")["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        3
    );

    // attach: the output of a running container, until it ends.
    let script = "sleep 3; for i in 1 2 3; do echo tick $i; sleep 0.3; done";
    let talker = ["talker", &image, pull, "--restart=Never", "--command", "--"];
    d.cli_ok(&[&["run"], &talker[..], &["sh", "-c", script]].concat());
    d.wait_or_explain("talker running", Duration::from_secs(60), || {
        pod_json(&d, "talker")["status"]["phase"] == "Running"
    });
    let out = d.cli_ok(&["attach", "talker"]);
    assert!(out.ends_with("tick 1\ntick 2\ntick 3\n"), "{out}");

    // A dry run prints the pod and creates nothing.
    let yaml = d.cli_ok(&["run", "dry", &image, "--dry-run=client", "-o", "yaml"]);
    assert!(
        yaml.contains("kind: Pod") && yaml.contains("run: dry"),
        "{yaml}"
    );
    assert!(!d.cli(&["get", "pod", "dry"]).status.success());

    d.shutdown().await;
}
