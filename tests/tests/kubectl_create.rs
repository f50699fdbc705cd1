//! `kinglet create` and `expose` against a real daemon, as kubectl's are used in the
//! Kubernetes docs: generators (`create deployment|configmap|secret|cronjob|job|namespace`)
//! whose objects really run, a Deployment exposed as a Service, `create -f` that refuses an object that exists (AlreadyExists) where `apply`
//! updates it, and `--dry-run=client -o yaml` that prints what `create` would send.

use std::time::Duration;

use kinglet_tests::*;

/// The test image under a tag that is not `latest`, so the generators' pods (which set no
/// imagePullPolicy) use it without pulling.
const IMAGE_1_0: &str = "kinglet.test/busybox:1.0";

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn create_generators_and_files_as_kubectl() {
    require_root();
    let d = Daemon::start().await;
    d.import_test_image().await;
    // The test image again under the 1.0 tag: its layout, with the index's name changed.
    let (layout, _) = test_image();
    let tagged = d.dir.path().join("layout-1.0");
    sh(
        "cp",
        &["-a", layout.to_str().unwrap(), tagged.to_str().unwrap()],
    );
    let index = tagged.join("index.json");
    let text = std::fs::read_to_string(&index).unwrap();
    std::fs::write(&index, text.replace(IMAGE, IMAGE_1_0)).unwrap();
    d.cli_ok(&["image", "import", tagged.to_str().unwrap()]);

    // A Deployment from a generator: its pods run the command given after --.
    assert_eq!(
        d.cli_ok(&[
            "create",
            "deployment",
            "web",
            "--image",
            IMAGE_1_0,
            "--replicas",
            "2",
            "--",
            "sleep",
            "3600",
        ]),
        "deployment.apps/web created\n"
    );
    d.wait_or_explain("2 web pods running", Duration::from_secs(60), || {
        d.cli_ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].status.phase}",
        ]) == "Running Running"
    });
    // Exposed as kubectl exposes it: the Deployment's selector and labels, the given ports;
    // its EndpointSlice then lists both pods.
    assert_eq!(
        d.cli_ok(&[
            "expose",
            "deployment",
            "web",
            "--port",
            "80",
            "--target-port",
            "8080"
        ]),
        "service/web exposed\n"
    );
    let svc: serde_json::Value =
        serde_json::from_str(&d.cli_ok(&["get", "svc", "web", "-o", "json"])).unwrap();
    assert_eq!(svc["spec"]["selector"], serde_json::json!({"app": "web"}));
    assert_eq!(svc["metadata"]["labels"], serde_json::json!({"app": "web"}));
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    assert!(
        d.cli_ok(&["get", "svc", "web"]).contains("ClusterIP"),
        "a ClusterIP Service"
    );
    d.wait_or_explain("2 endpoints for web", Duration::from_secs(30), || {
        let v: serde_json::Value =
            serde_json::from_str(&d.cli_ok(&["get", "endpointslices", "-o", "json"])).unwrap();
        let items = v["items"].as_array().cloned().unwrap_or_default();
        let n: usize = items
            .iter()
            .filter(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] == "web")
            .map(|s| s["endpoints"].as_array().map_or(0, Vec::len))
            .sum();
        n == 2
    });
    let out = d.cli(&["expose", "deployment", "web", "--port", "81"]);
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out).trim(),
        "Error from server (AlreadyExists): services \"web\" already exists"
    );
    let out = d.cli(&["expose", "deployment", "nope", "--port", "81"]);
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out).trim(),
        "Error from server (NotFound): deployments.apps \"nope\" not found"
    );

    // Created again: kubectl's AlreadyExists, and nothing changes.
    let out = d.cli(&[
        "create",
        "deployment",
        "web",
        "--image",
        "other",
        "--replicas",
        "1",
    ]);
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out).trim(),
        "Error from server (AlreadyExists): deployments.apps \"web\" already exists"
    );
    assert_eq!(
        d.cli_ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "2"
    );

    // ConfigMap and Secret from literals and files.
    let dir = d.dir.path().to_owned();
    let props = write(&dir, "ui.properties", "color=blue\n");
    assert_eq!(
        d.cli_ok(&[
            "create",
            "configmap",
            "game",
            "--from-literal=lives=3",
            &format!("--from-file={props}"),
        ]),
        "configmap/game created\n"
    );
    assert_eq!(
        d.cli_ok(&["get", "cm", "game", "-o", "jsonpath={.data.lives}"]),
        "3"
    );
    assert_eq!(
        d.cli_ok(&[
            "get",
            "cm",
            "game",
            "-o",
            "jsonpath={.data['ui.properties']}"
        ]),
        "color=blue\n"
    );
    assert_eq!(
        d.cli_ok(&[
            "create",
            "secret",
            "generic",
            "db",
            "--from-literal=password=s3cret"
        ]),
        "secret/db created\n"
    );
    assert_eq!(
        d.cli_ok(&[
            "get",
            "secret",
            "db",
            "--reveal",
            "-o",
            "jsonpath={.data.password}"
        ]),
        "czNjcmV0"
    );
    assert_eq!(
        d.cli_ok(&[
            "create",
            "secret",
            "docker-registry",
            "regcred",
            "--docker-server=registry.example:5000",
            "--docker-username=tester",
            "--docker-password=pw",
        ]),
        "secret/regcred created\n"
    );
    assert_eq!(
        d.cli_ok(&["get", "secret", "regcred", "-o", "jsonpath={.type}"]),
        "kubernetes.io/dockerconfigjson"
    );

    // create -f refuses what exists; apply -f updates it.
    let cm = write(
        &dir,
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: filecm}\ndata: {k: one}\n",
    );
    assert_eq!(
        d.cli_ok(&["create", "-f", &cm]),
        "configmap/filecm created\n"
    );
    let out = d.cli(&["create", "-f", &cm]);
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out).trim(),
        "Error from server (AlreadyExists): configmaps \"filecm\" already exists"
    );
    let cm2 = write(
        &dir,
        "cm2.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: filecm}\ndata: {k: two}\n",
    );
    assert_eq!(
        d.cli_ok(&["apply", "-f", &cm2]),
        "configmap/filecm configured\n"
    );

    // A CronJob, and a Job made from it by hand, which runs to completion.
    assert_eq!(
        d.cli_ok(&[
            "create",
            "cronjob",
            "hello",
            "--image",
            IMAGE_1_0,
            "--schedule",
            "0 0 1 1 *",
            "--",
            "echo",
            "hello",
        ]),
        "cronjob.batch/hello created\n"
    );
    assert_eq!(
        d.cli_ok(&["create", "job", "hello-now", "--from=cronjob/hello"]),
        "job.batch/hello-now created\n"
    );
    assert_eq!(
        d.cli_ok(&[
            "get",
            "job",
            "hello-now",
            "-o",
            "jsonpath={.metadata.ownerReferences[0].kind}"
        ]),
        "CronJob"
    );
    d.wait_or_explain("the manual job to succeed", Duration::from_secs(60), || {
        d.cli_ok(&[
            "get",
            "job",
            "hello-now",
            "-o",
            "jsonpath={.status.succeeded}",
        ]) == "1"
    });
    let logs = d.cli_ok(&["logs", "job/hello-now"]);
    assert_eq!(logs, "hello\n");

    // A namespace, and a dry run into it that prints the object and creates nothing.
    assert_eq!(
        d.cli_ok(&["create", "namespace", "team"]),
        "namespace/team created\n"
    );
    let yaml = d.cli_ok(&[
        "create",
        "deploy",
        "api",
        "--image",
        IMAGE_1_0,
        "-n",
        "team",
        "--dry-run=client",
        "-o",
        "yaml",
    ]);
    assert!(
        yaml.contains("kind: Deployment") && yaml.contains("namespace: team"),
        "{yaml}"
    );
    let out = d.cli(&["get", "deploy", "-n", "team"]);
    assert!(
        stderr(&out).contains("No resources found in team namespace."),
        "{}",
        stderr(&out)
    );
    // Without -n, the dry run names no namespace (as kubectl's).
    let yaml = d.cli_ok(&[
        "create",
        "cm",
        "x",
        "--from-literal=a=b",
        "--dry-run=client",
        "-o",
        "yaml",
    ]);
    assert!(!yaml.contains("namespace:"), "{yaml}");

    // apply and create -n: a manifest naming no namespace goes there; one naming another
    // namespace is refused with kubectl's error, and the rest of the file is applied.
    let f = d.dir.path().join("quota.yaml");
    std::fs::write(
        &f,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: limits}\ndata: {cpu: '1'}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {name: elsewhere, namespace: default}\n",
    )
    .unwrap();
    let out = d.cli(&["apply", "-f", f.to_str().unwrap(), "--namespace=team"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "configmap/limits created\n"
    );
    assert!(
        stderr(&out).contains("error: the namespace from the provided object \"default\" does not match the namespace \"team\". You must pass '--namespace=default' to perform this operation."),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        d.cli_ok(&[
            "get",
            "cm",
            "limits",
            "-n",
            "team",
            "-o",
            "jsonpath={.data.cpu}"
        ]),
        "1"
    );
    let out = d.cli(&["get", "cm", "limits"]);
    assert!(!out.status.success(), "not in default");
    let one = d.dir.path().join("one.yaml");
    std::fs::write(
        &one,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: once}\n",
    )
    .unwrap();
    assert_eq!(
        d.cli_ok(&["create", "-f", one.to_str().unwrap(), "-n", "team"]),
        "configmap/once created\n"
    );
    assert_eq!(
        d.cli_ok(&["get", "cm", "-n", "team", "-o", "name"]),
        "configmap/limits\nconfigmap/once\n"
    );

    d.shutdown().await;
}
