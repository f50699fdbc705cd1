//! Workload controllers end to end with real containers: a Deployment applied with the CLI
//! becomes a ReplicaSet and running pods (visible over the CRI), scales, rolls out a new
//! template and back, survives a kill -9 of the daemon without losing or duplicating pods,
//! and takes its ReplicaSets and pods with it when deleted; a rollout interrupted by a kill -9
//! finishes after the restart; Indexed and failing Jobs; a bad document in a file or in the
//! manifests directory does not stop the others. One test also measures a 20-replica rollout.

use std::time::Duration;

use kinglet_proto::v1;

use kinglet_tests::*;

fn deployment(replicas: u32, env: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  strategy: {{rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: kinglet.test/busybox:latest
        imagePullPolicy: IfNotPresent
        command: [sleep, '3600']
        env: [{{name: VERSION, value: '{env}'}}]
"#
    )
}

/// The names of a Job's pods.
fn pod_names(d: &Daemon, job: &str) -> Vec<String> {
    let sel = format!("job-name={job}");
    json(d, &["get", "pods", "-l", &sel])["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}

fn json(d: &Daemon, args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    serde_json::from_str(&d.cli_ok(&a)).unwrap()
}

/// Names of the pods `get pods -l app=web` lists, and how many of them are Ready.
fn web_pods(d: &Daemon) -> (Vec<String>, usize) {
    let list = json(d, &["get", "pods", "-l", "app=web"]);
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let ready = items
        .iter()
        .filter(|p| {
            p["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
        .count();
    let names = items
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    (names, ready)
}

async fn ready_sandboxes(d: &Daemon) -> usize {
    let mut rt = d.runtime().await;
    rt.list_pod_sandbox(v1::ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items
        .iter()
        .filter(|s| s.state == v1::PodSandboxState::SandboxReady as i32)
        .count()
}

fn available(d: &Daemon) -> i64 {
    let out = d.cli(&["get", "deploy", "web", "-o", "json"]);
    if !out.status.success() {
        return 0; // not there yet
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["status"]["availableReplicas"].as_i64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn deployment_scales_rolls_out_undoes_and_is_collected() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let dir = d.dir.path().to_owned();
    // A ReplicationController (unsupported) between two good documents: reported, the others applied.
    let text = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cfg}}\ndata: {{a: b}}\n---\napiVersion: v1\nkind: ReplicationController\nmetadata: {{name: rc}}\n---\n{}",
        deployment(3, "1")
    );
    let f = write(&dir, "web.yaml", &text);
    let out = d.cli(&["apply", "-f", &f]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success(), "a bad document makes apply fail");
    assert_eq!(
        stdout,
        "configmap/cfg created\ndeployment.apps/web created\n"
    );
    assert!(
        stderr.contains("document 2") && stderr.contains("ReplicationController"),
        "{stderr}"
    );

    wait_for("3 available replicas", Duration::from_secs(60), || {
        available(&d) == 3
    });
    let (pods, ready) = web_pods(&d);
    assert_eq!((pods.len(), ready), (3, 3), "{pods:?}");
    let rs = json(&d, &["get", "rs"]);
    let rs = &rs["items"][0];
    let rs_name = rs["metadata"]["name"].as_str().unwrap().to_owned();
    let hash = rs["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap();
    assert_eq!(rs_name, format!("web-{hash}"));
    assert_eq!(rs["metadata"]["ownerReferences"][0]["kind"], "Deployment");
    assert_eq!(
        rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    for p in &pods {
        let suffix = p
            .strip_prefix(&format!("{rs_name}-"))
            .expect("pod named <rs>-<suffix>");
        assert_eq!(suffix.len(), 5, "{p}");
    }
    assert_eq!(ready_sandboxes(&d).await, 3, "pods run as real sandboxes");
    let table = d.cli_ok(&["get", "deploy,rs"]);
    assert!(
        table.contains("UP-TO-DATE") && table.contains("DESIRED"),
        "{table}"
    );
    let line = table.lines().find(|l| l.starts_with("web ")).unwrap();
    assert!(line.contains("3/3"), "{table}");
    let wide = d.cli_ok(&["get", "deploy,rs,pods", "-o", "wide", "-l", "app=web"]);
    println!("{wide}");
    assert!(
        wide.contains("SELECTOR") && wide.contains("kinglet.test/busybox:latest"),
        "{wide}"
    );
    let describe = d.cli_ok(&["describe", "deploy", "web"]);
    println!("{describe}");
    assert!(
        describe.contains("NewReplicaSetAvailable")
            && describe.contains("MinimumReplicasAvailable"),
        "{describe}"
    );

    // Scale down: one pod stays.
    assert_eq!(
        d.cli_ok(&["scale", "deploy/web", "--replicas", "1"]),
        "deployment.apps/web scaled\n"
    );
    wait_for("one pod left", Duration::from_secs(30), || {
        web_pods(&d).0.len() == 1
    });
    assert!(
        pods.contains(&web_pods(&d).0[0]),
        "a surviving pod, not a new one"
    );

    // A new template: a second ReplicaSet, revision 2, the rollout finishes.
    let f2 = write(&dir, "web2.yaml", &deployment(2, "2"));
    d.cli_ok(&["apply", "-f", &f2]);
    let st = d.cli(&["rollout", "status", "deploy/web", "--timeout-secs", "60"]);
    let st_out = String::from_utf8_lossy(&st.stdout);
    assert!(
        st.status.success() && st_out.contains("successfully rolled out"),
        "{st_out}"
    );
    let dep = json(&d, &["get", "deploy", "web"]);
    assert_eq!(
        dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );
    assert_eq!(
        json(&d, &["get", "rs"])["items"].as_array().unwrap().len(),
        2
    );
    wait_for("2 new pods only", Duration::from_secs(30), || {
        let (p, r) = web_pods(&d);
        p.len() == 2 && r == 2 && !p.iter().any(|n| n.starts_with(&format!("{rs_name}-")))
    });

    // Undo: back to the first template, as revision 3, on the first ReplicaSet.
    assert_eq!(
        d.cli_ok(&["rollout", "undo", "deploy/web"]),
        "deployment.apps/web rolled back\n"
    );
    d.cli_ok(&["rollout", "status", "deploy/web", "--timeout-secs", "60"]);
    let first = json(&d, &["get", "rs", &rs_name]);
    assert_eq!(
        first["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );
    assert_eq!(first["spec"]["replicas"], 2);

    // Restart: a template annotation, hence a new ReplicaSet and revision 4.
    assert_eq!(
        d.cli_ok(&["rollout", "restart", "deploy/web"]),
        "deployment.apps/web restarted\n"
    );
    d.cli_ok(&["rollout", "status", "deploy/web", "--timeout-secs", "60"]);
    let dep = json(&d, &["get", "deploy", "web"]);
    assert_eq!(
        dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "4"
    );
    assert!(dep["spec"]["template"]["metadata"]["annotations"]
        ["kubectl.kubernetes.io/restartedAt"]
        .is_string());
    assert_eq!(
        json(&d, &["get", "rs"])["items"].as_array().unwrap().len(),
        3
    );

    // Background cascading deletion: ReplicaSets, pods and their sandboxes go.
    assert_eq!(
        d.cli_ok(&["delete", "deploy/web"]),
        "deployment.apps \"web\" deleted\n"
    );
    wait_for("pods collected", Duration::from_secs(30), || {
        web_pods(&d).0.is_empty()
            && json(&d, &["get", "rs"])["items"]
                .as_array()
                .unwrap()
                .is_empty()
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while ready_sandboxes(&d).await > 0 {
        assert!(std::time::Instant::now() < deadline, "sandboxes left");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn replica_set_continues_after_kill_9_without_losing_or_duplicating_pods() {
    let mut d = Daemon::start().await;
    d.import_test_image().await;
    let dir = d.dir.path().to_owned();
    let rs = r#"apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {name: c, image: kinglet.test/busybox:latest, imagePullPolicy: IfNotPresent, command: [sleep, '3600']}
"#;
    let f = write(&dir, "rs.yaml", rs);
    d.cli_ok(&["apply", "-f", &f]);
    wait_for("2 ready pods", Duration::from_secs(60), || {
        web_pods(&d).1 == 2
    });
    let before = web_pods(&d).0;
    d.kill9();
    d.spawn().await;
    // Several controller rounds after the restart.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (after, ready) = web_pods(&d);
    assert_eq!(after, before, "same pods after the restart");
    assert_eq!(ready, 2);
    assert_eq!(ready_sandboxes(&d).await, 2);
    let st = json(&d, &["get", "rs", "web"])["status"].clone();
    assert_eq!(
        (st["replicas"].as_i64(), st["readyReplicas"].as_i64()),
        (Some(2), Some(2)),
        "{st}"
    );
    // Deleting a pod of the ReplicaSet: replaced by a new one.
    d.cli_ok(&["delete", "pod", &before[0]]);
    wait_for("replacement pod", Duration::from_secs(30), || {
        let (p, r) = web_pods(&d);
        p.len() == 2 && r == 2 && !p.contains(&before[0])
    });
    d.shutdown().await;
}

/// Ready pods labelled `app=bench`, over the objects API (no CLI process per sample).
async fn ready_bench_pods(
    c: &mut kinglet_proto::admin::objects_client::ObjectsClient<tonic::transport::Channel>,
) -> usize {
    let r = c
        .get(kinglet_proto::admin::GetRequest {
            kind: "pods".into(),
            label_selector: "app=bench".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    r.objects
        .iter()
        .filter(|o| {
            let v: serde_json::Value = serde_json::from_str(o).unwrap();
            v["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
        .count()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The measure of the issue: a 20-replica Deployment from apply to all Ready, then a rolling
/// update with maxUnavailable 0 during which the Ready count, sampled every 100 ms, never
/// drops below 20. Prints the figures.
#[tokio::test(flavor = "multi_thread")]
async fn rolling_update_of_20_replicas_never_drops_below_20_ready() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let dir = d.dir.path().to_owned();
    let spec = |v: &str| {
        deployment(20, v)
            .replace("name: web", "name: bench")
            .replace("app: web", "app: bench")
            .replace("maxSurge: 1", "maxSurge: 25%")
    };
    let mut c =
        kinglet_proto::admin::objects_client::ObjectsClient::new(connect(&d.socket).await.unwrap());
    let rss0 = rss_kib(d.pid());
    let t0 = std::time::Instant::now();
    d.cli_ok(&["apply", "-f", &write(&dir, "b1.yaml", &spec("1"))]);
    while ready_bench_pods(&mut c).await < 20 {
        assert!(
            t0.elapsed() < Duration::from_secs(180),
            "20 replicas not ready in 180 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let to_ready = t0.elapsed();
    let rss1 = rss_kib(d.pid());
    let t1 = std::time::Instant::now();
    d.cli_ok(&["apply", "-f", &write(&dir, "b2.yaml", &spec("2"))]);
    let mut low = usize::MAX;
    let mut samples = 0;
    loop {
        let ready = ready_bench_pods(&mut c).await;
        low = low.min(ready);
        samples += 1;
        let st = json(&d, &["get", "deploy", "bench"])["status"].clone();
        let done =
            st["updatedReplicas"] == 20 && st["replicas"] == 20 && st["availableReplicas"] == 20;
        if done {
            break;
        }
        assert!(
            t1.elapsed() < Duration::from_secs(300),
            "rollout not done in 300 s: {st}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rollout = t1.elapsed();
    let rss2 = rss_kib(d.pid());
    println!(
        "MEASURE 20 replicas apply->all Ready: {:.1} s; rolling update (maxSurge 25%, maxUnavailable 0): {:.1} s, {samples} samples, min Ready {low}; daemon RSS {rss0} KiB before, {rss1} KiB at 20 Ready, {rss2} KiB after the rollout",
        to_ready.as_secs_f64(),
        rollout.as_secs_f64()
    );
    assert!(low >= 20, "Ready pods dropped to {low} during the rollout");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn indexed_job_completes_and_a_failing_job_hits_its_backoff_limit() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let dir = d.dir.path().to_owned();
    let job = |name: &str, extra: &str, script: &str| {
        format!(
            r#"apiVersion: batch/v1
kind: Job
metadata: {{name: {name}}}
spec:
{extra}
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: kinglet.test/busybox:latest
        imagePullPolicy: IfNotPresent
        command: [sh, -c, '{script}']
"#
        )
    };
    let text = format!(
        "{}---\n{}",
        job(
            "idx",
            "  completions: 3\n  parallelism: 2\n  completionMode: Indexed",
            "echo index=$JOB_COMPLETION_INDEX host=$(hostname)"
        ),
        job("bad", "  backoffLimit: 0", "exit 3")
    );
    d.cli_ok(&["apply", "-f", &write(&dir, "jobs.yaml", &text)]);
    let cond = |name: &str, t: &str| -> Option<String> {
        let j = json(&d, &["get", "job", name]);
        j["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == t && c["status"] == "True")
            .map(|c| c["reason"].as_str().unwrap_or("").to_owned())
    };
    wait_for("job idx complete", Duration::from_secs(60), || {
        cond("idx", "Complete").is_some()
    });
    let st = json(&d, &["get", "job", "idx"])["status"].clone();
    assert_eq!(
        (st["succeeded"].as_i64(), st["completedIndexes"].as_str()),
        (Some(3), Some("0-2")),
        "{st}"
    );
    let pods = json(&d, &["get", "pods", "-l", "job-name=idx"]);
    let pods = pods["items"].as_array().unwrap();
    assert_eq!(pods.len(), 3);
    for p in pods {
        let name = p["metadata"]["name"].as_str().unwrap();
        let i = p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
            .as_str()
            .unwrap();
        assert!(name.starts_with(&format!("idx-{i}-")), "{name}");
        assert_eq!(p["status"]["phase"], "Succeeded");
        let log = d.cli_ok(&["logs", name]);
        assert_eq!(log, format!("index={i} host=idx-{i}\n"), "{name}");
    }
    let describe = d.cli_ok(&["describe", "job", "idx"]);
    assert!(
        describe.contains("0 Active (0 Ready) / 3 Succeeded / 0 Failed")
            && describe.contains("Completed Indexes:      0-2")
            && describe.contains("CompletionsReached"),
        "{describe}"
    );
    let table = d.cli_ok(&["get", "jobs"]);
    println!("{table}");
    let line = table.lines().find(|l| l.starts_with("idx ")).unwrap();
    assert!(line.contains("Complete") && line.contains("3/3"), "{table}");

    wait_for("job bad failed", Duration::from_secs(60), || {
        cond("bad", "Failed").is_some()
    });
    assert_eq!(
        cond("bad", "Failed").as_deref(),
        Some("BackoffLimitExceeded")
    );
    assert_eq!(json(&d, &["get", "job", "bad"])["status"]["failed"], 1);
    assert_eq!(
        json(&d, &["get", "pods", "-l", "job-name=bad"])["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // The finished pods stay (their sandboxes and exited containers too) but hold no mount:
    // no overlay root, image volume or /dev/shm is left for each finished pod.
    let (containers, pods) = (d.run_root.join("containers"), d.run_root.join("pods"));
    wait_for("finished pods unmounted", Duration::from_secs(30), || {
        mounts_under(&containers).is_empty() && mounts_under(&pods).is_empty()
    });
    let kept = std::fs::read_dir(&pods).unwrap().count();
    assert_eq!(kept, 4, "the 4 finished pods keep their sandboxes");
    assert_eq!(
        d.cli_ok(&["logs", &pod_names(&d, "idx")[0]])
            .lines()
            .count(),
        1
    );
    // Deleting the Job deletes its pods.
    d.cli_ok(&["delete", "job/idx"]);
    wait_for("job pods collected", Duration::from_secs(30), || {
        json(&d, &["get", "pods", "-l", "job-name=idx"])["items"]
            .as_array()
            .unwrap()
            .is_empty()
    });
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rollout_finishes_after_kill_9_mid_way_and_the_manifests_directory_skips_bad_documents() {
    let mut d = Daemon::start().await;
    d.import_test_image().await;
    // In the manifests directory: a bad document (unsupported kind) and a Deployment.
    let text = format!(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: sts}}\n---\n{}",
        deployment(4, "1")
    );
    std::fs::write(d.manifests().join("web.yaml"), &text).unwrap();
    wait_for("4 available replicas", Duration::from_secs(60), || {
        available(&d) == 4
    });
    let log = d.log();
    assert!(
        log.contains("StatefulSet") && log.contains("document 1"),
        "the bad document is logged"
    );

    // A new template; kill -9 the daemon as soon as the rollout has started.
    std::fs::write(d.manifests().join("web.yaml"), deployment(4, "2")).unwrap();
    wait_for("rollout started", Duration::from_secs(30), || {
        json(&d, &["get", "rs"])["items"].as_array().unwrap().len() == 2
    });
    d.kill9();
    d.spawn().await;
    let st = d.cli(&["rollout", "status", "deploy/web", "--timeout-secs", "90"]);
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stdout)
    );
    let revision = json(&d, &["get", "deploy", "web"])["metadata"]["annotations"]
        ["deployment.kubernetes.io/revision"]
        .clone();
    assert_eq!(revision, "2");
    // Exactly 4 pods, all of the new ReplicaSet, and as many sandboxes: none lost or doubled.
    wait_for("old pods gone", Duration::from_secs(30), || {
        let (pods, ready) = web_pods(&d);
        pods.len() == 4 && ready == 4
    });
    let rs = json(&d, &["get", "rs"]);
    let new_rs = rs["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2")
        .unwrap()["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(web_pods(&d)
        .0
        .iter()
        .all(|p| p.starts_with(&format!("{new_rs}-"))));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while ready_sandboxes(&d).await != 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "sandboxes: {}",
            ready_sandboxes(&d).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn job_completes_after_kill_9_without_extra_pods() {
    let mut d = Daemon::start().await;
    d.import_test_image().await;
    let dir = d.dir.path().to_owned();
    let job = r#"apiVersion: batch/v1
kind: Job
metadata: {name: w}
spec:
  completions: 4
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 1
      containers:
      - {name: c, image: kinglet.test/busybox:latest, imagePullPolicy: IfNotPresent, command: [sleep, '2']}
"#;
    d.cli_ok(&["apply", "-f", &write(&dir, "job.yaml", job)]);
    wait_for("2 pods running", Duration::from_secs(30), || {
        json(&d, &["get", "job", "w"])["status"]["active"] == 2
    });
    d.kill9();
    d.spawn().await;
    wait_for("job complete", Duration::from_secs(60), || {
        json(&d, &["get", "job", "w"])["status"]["conditions"]
            .as_array()
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Complete" && c["status"] == "True")
            })
    });
    let pods = json(&d, &["get", "pods", "-l", "job-name=w"]);
    let phases: Vec<&str> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["status"]["phase"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["Succeeded"; 4], "exactly 4 pods, all succeeded");
    assert_eq!(json(&d, &["get", "job", "w"])["status"]["succeeded"], 4);
    d.shutdown().await;
}
