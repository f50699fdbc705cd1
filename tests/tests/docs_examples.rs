//! The Kubernetes documentation's example manifests (kubernetes.io/examples), run as its task
//! pages run them with kubectl, against a real daemon: only the image is swapped for the test
//! image (with `imagePullPolicy: IfNotPresent`, as the offline test image has no registry), and
//! the programs it lacks (perl, nginx) for busybox ones doing the same.

use std::time::Duration;

use kinglet_tests::*;

/// `controllers/job.yaml` (pi to 2000 places by perl; here printed by sh).
const JOB: &str = r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: pi
spec:
  template:
    spec:
      containers:
      - name: pi
        image: kinglet.test/busybox:latest
        imagePullPolicy: IfNotPresent
        command: ["sh",  "-c", "echo 3.14159265358979"]
      restartPolicy: Never
  backoffLimit: 4
"#;

/// `application/deployment.yaml` (nginx; here busybox httpd on port 80).
const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: nginx-deployment
spec:
  selector:
    matchLabels:
      app: nginx
  replicas: 2 # tells deployment to run 2 pods matching the template
  template:
    metadata:
      labels:
        app: nginx
    spec:
      containers:
      - name: nginx
        image: kinglet.test/busybox:latest
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "echo serving; exec httpd -f -p 80"]
        ports:
        - containerPort: 80
"#;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// "Running Jobs" and "Run a stateless application using a Deployment": `logs jobs/pi`,
/// `get pods -l app=nginx`, then `get pods A B` (several names, kubectl's NotFound for a missing
/// one) and `logs deploy/NAME`.
#[tokio::test(flavor = "multi_thread")]
async fn job_and_deployment_pages_as_kubectl_shows_them() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let dir = d.dir.path().to_owned();
    let job = write(&dir, "job.yaml", JOB);
    assert_eq!(
        d.cli_ok(&["apply", "-f", &job]).trim(),
        "job.batch/pi created"
    );
    wait_for("job pi to complete", Duration::from_secs(120), || {
        d.cli_ok(&["get", "jobs", "pi", "-o", "jsonpath={.status.succeeded}"]) == "1"
    });
    let out = d.cli(&["logs", "jobs/pi"]);
    assert!(out.status.success(), "logs jobs/pi: {}", stderr(&out));
    assert_eq!(stdout(&out), "3.14159265358979\n");
    let out = d.cli(&["logs", "job/nope"]);
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out).trim(),
        "Error from server (NotFound): jobs.batch \"nope\" not found"
    );

    let deploy = write(&dir, "deployment.yaml", DEPLOYMENT);
    d.cli_ok(&["apply", "-f", &deploy]);
    let out = d.cli(&["rollout", "status", "deployment/nginx-deployment"]);
    assert!(out.status.success(), "rollout status: {}", stderr(&out));
    let names: Vec<String> = d
        .cli_ok(&["get", "pods", "-l", "app=nginx", "-o", "name"])
        .lines()
        .map(|l| l.trim_start_matches("pod/").to_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    // Several names: one table, its header once, a row per pod.
    let table = d.cli_ok(&["get", "pods", &names[0], &names[1]]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("NAME "), "{table}");
    for (line, name) in lines[1..].iter().zip(&names) {
        assert!(line.starts_with(name.as_str()), "{table}");
        assert!(line.contains("Running"), "{table}");
    }
    // A missing one: kubectl's NotFound on stderr, the other still listed, exit 1.
    let out = d.cli(&["get", "pods", &names[0], "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        "Error from server (NotFound): pods \"nope\" not found"
    );
    assert_eq!(stdout(&out).lines().count(), 2, "{}", stdout(&out));
    // KIND/NAME forms, a table per kind.
    let out = d.cli_ok(&["get", "deploy/nginx-deployment", "job/pi"]);
    assert!(out.contains("\n\nNAME "), "{out}");
    assert!(out.contains("nginx-deployment   2/2"), "{out}");
    // An empty table names the namespace.
    let out = d.cli(&["get", "cronjobs"]);
    assert!(out.status.success());
    assert_eq!(
        stderr(&out).trim(),
        "No resources found in default namespace."
    );
    // logs of the deployment: one of its pods, saying which.
    let out = d.cli(&["logs", "deploy/nginx-deployment"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "serving\n");
    assert!(
        stderr(&out).starts_with("Found 2 pods, using pod/nginx-deployment-"),
        "{}",
        stderr(&out)
    );
    d.shutdown().await;
}
