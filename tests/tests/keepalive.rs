//! Keeping pods running across the daemon's own restarts and through whole pod lifetimes:
//! CrashLoopBackOff state that survives `kill -9` of the daemon while healthy containers keep
//! their processes, and native sidecars that start first and stop last.

use std::path::Path;
use std::time::{Duration, Instant};

use kinglet_tests::*;

fn restart_count(d: &Daemon, pod: &str) -> i64 {
    pod_json(d, pod)["status"]["containerStatuses"][0]["restartCount"]
        .as_i64()
        .unwrap_or(0)
}

fn waiting_reason(d: &Daemon, pod: &str) -> String {
    pod_json(d, pod)["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

const IMG: &str = "image: kinglet.test/busybox:latest\n    imagePullPolicy: IfNotPresent";

#[tokio::test(flavor = "multi_thread")]
async fn daemon_kill9_keeps_healthy_pods_and_the_crash_loop_back_off() {
    // Back-off 4 s doubling: restart 1 at once, restart 2 after 4 s, restart 3 after 8 s.
    let mut d = Daemon::start_with_config(
        "crash-loop-backoff-initial-ms = 4000\ncrash-loop-backoff-max-ms = 60000\n",
    )
    .await;
    d.import_test_image().await;
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: healthy}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    {IMG}\n    command: [sleep, '1000']\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: looper}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    {IMG}\n    command: [sh, -c, 'sleep 0.5; exit 1']\n"
    );
    let f = write(d.dir.path(), "pods.yaml", &yaml);
    d.cli_ok(&["apply", "-f", &f]);
    wait_for("the healthy pod", Duration::from_secs(20), || {
        pod_json(&d, "healthy")["status"]["containerStatuses"][0]["state"]["running"].is_object()
    });
    let healthy_id = container_id(&pod_json(&d, "healthy"), "c");
    let mut rt = d.runtime().await;
    let healthy_pid = init_pid(&mut rt, healthy_id.trim_start_matches("kinglet://")).await;

    // Kill the daemon as soon as the second restart is seen: that run (0.5 s) ends while the
    // daemon is down, and the next restart is due 8 s after it started.
    wait_for("the second restart", Duration::from_secs(30), || {
        restart_count(&d, "looper") >= 2
    });
    let second = Instant::now();
    d.kill9();
    tokio::time::sleep(Duration::from_secs(1)).await;
    d.spawn().await;

    // The back-off is remembered: the container that died during the outage waits in
    // CrashLoopBackOff instead of being restarted at once by the new daemon.
    let mut seen_waiting = false;
    wait_for("the third restart", Duration::from_secs(30), || {
        seen_waiting |= waiting_reason(&d, "looper") == "CrashLoopBackOff";
        restart_count(&d, "looper") >= 3
    });
    assert!(
        seen_waiting,
        "no CrashLoopBackOff seen after the daemon's restart"
    );
    let waited = second.elapsed();
    assert!(
        waited >= Duration::from_millis(6500),
        "the third restart came {waited:?} after the second: the 8 s back-off was lost"
    );
    let p = pod_json(&d, "looper");
    assert_eq!(
        p["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"], 1,
        "{p}"
    );

    // The healthy pod kept its container and process through all this.
    let p = pod_json(&d, "healthy");
    assert_eq!(container_id(&p, "c"), healthy_id);
    assert_eq!(p["status"]["containerStatuses"][0]["restartCount"], 0);
    let mut rt = d.runtime().await;
    assert_eq!(
        init_pid(&mut rt, healthy_id.trim_start_matches("kinglet://")).await,
        healthy_pid
    );
    assert!(Path::new(&format!("/proc/{healthy_pid}")).exists());
    d.shutdown().await;
}

/// Lines of the shared order log, as the containers wrote them.
fn order(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A sidecar: records its start and its SIGTERM in the shared log; a startup probe that sees
/// its start line holds the next container back until then.
fn sidecar(name: &str) -> String {
    format!(
        "  - name: {name}\n    {IMG}\n    restartPolicy: Always\n    command: [sh, -c, 'trap \"echo {name}-stop >> /log/order; exit 0\" TERM; echo {name}-start >> /log/order; while true; do sleep 0.1; done']\n    startupProbe:\n      exec: {{command: [grep, -q, {name}-start, /log/order]}}\n      periodSeconds: 1\n    volumeMounts: [{{name: log, mountPath: /log}}]\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn sidecars_start_first_stop_last_and_end_with_the_pod() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let logs = tempfile::tempdir().unwrap();
    let pod = |name: &str, policy: &str, app: &str| {
        let dir = logs.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: {policy}\n  terminationGracePeriodSeconds: 10\n  volumes: [{{name: log, hostPath: {{path: {}}}}}]\n  initContainers:\n{}{}  containers:\n  - name: app\n    {IMG}\n    command: [sh, -c, '{app}']\n    volumeMounts: [{{name: log, mountPath: /log}}]\n",
            dir.display(),
            sidecar("first"),
            sidecar("second"),
        )
    };
    // A job-like pod: the app finishes, then the sidecars stop (last first) and the pod
    // succeeds. A service-like pod: deleted, its app stops first, then the sidecars.
    let job = pod(
        "job",
        "Never",
        "echo app-start >> /log/order; sleep 1; echo app-done >> /log/order",
    );
    let svc = pod(
        "svc",
        "Always",
        "trap \"echo app-stop >> /log/order; exit 0\" TERM; echo app-start >> /log/order; while true; do sleep 0.1; done",
    );
    let jf = write(d.dir.path(), "job.yaml", &job);
    let sf = write(d.dir.path(), "svc.yaml", &svc);
    d.cli_ok(&["apply", "-f", &jf]);
    d.cli_ok(&["apply", "-f", &sf]);

    wait_for("the job to succeed", Duration::from_secs(40), || {
        pod_json(&d, "job")["status"]["phase"] == "Succeeded"
    });
    let job_log = order(&logs.path().join("job").join("order"));
    assert_eq!(
        job_log,
        [
            "first-start",
            "second-start",
            "app-start",
            "app-done",
            "second-stop",
            "first-stop"
        ],
        "job pod order"
    );
    let p = pod_json(&d, "job");
    for s in p["status"]["initContainerStatuses"].as_array().unwrap() {
        assert_eq!(s["state"]["terminated"]["exitCode"], 0, "{s}");
    }
    // The finished pod's sidecars stay stopped.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(order(&logs.path().join("job").join("order")).len(), 6);

    wait_for("the service pod to run", Duration::from_secs(40), || {
        order(&logs.path().join("svc").join("order")).len() == 3
    });
    // Sidecars are restarted when they crash (restartPolicy Always on the sidecar).
    let svc_json = pod_json(&d, "svc");
    let first = svc_json["status"]["initContainerStatuses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "first")
        .unwrap()
        .clone();
    let first_id = first["containerID"].as_str().unwrap().to_owned();
    let mut rt = d.runtime().await;
    let pid = init_pid(&mut rt, first_id.trim_start_matches("kinglet://")).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for("the sidecar's restart", Duration::from_secs(20), || {
        pod_json(&d, "svc")["status"]["initContainerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| {
                s["name"] == "first" && s["restartCount"] == 1 && s["state"]["running"].is_object()
            })
    });
    let svc_log = logs.path().join("svc").join("order");
    let before = order(&svc_log).len();
    assert_eq!(order(&svc_log)[before - 1], "first-start");

    d.cli_ok(&["delete", "-f", &sf]);
    wait_for("the service pod to go", Duration::from_secs(40), || {
        d.cli_ok(&["get", "pods"])
            .lines()
            .all(|l| !l.starts_with("svc"))
            && order(&svc_log).len() == before + 3
    });
    assert_eq!(
        order(&svc_log)[before..],
        ["app-stop", "second-stop", "first-stop"],
        "deletion order"
    );
    d.shutdown().await;
}
