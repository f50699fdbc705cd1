//! CronJobs end to end with real containers: the Kubernetes docs' `hello` CronJob (every
//! minute) makes a Job `hello-<minutes since the epoch>` at the minute, whose pod prints the
//! greeting; the status records the schedule and the success; `get cronjob` shows kubectl's
//! columns; deleting the CronJob takes its Jobs and their pods. An ignored test measures the
//! schedule precision (`scripts/bench-workloads.sh`).

use std::time::Duration;

use kinglet_tests::*;

/// The docs' example (concepts/workloads/controllers/cron-jobs), image swapped.
fn hello(name: &str) -> String {
    format!(
        r#"apiVersion: batch/v1
kind: CronJob
metadata:
  name: {name}
spec:
  schedule: "* * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          terminationGracePeriodSeconds: 1
          containers:
          - name: hello
            image: kinglet.test/busybox:latest
            imagePullPolicy: IfNotPresent
            command:
            - /bin/sh
            - -c
            - date; echo Hello from the Kubernetes cluster
          restartPolicy: OnFailure
"#
    )
}

fn json(d: &Daemon, args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    serde_json::from_str(&d.cli_ok(&a)).unwrap()
}

fn items(v: &serde_json::Value) -> Vec<serde_json::Value> {
    v["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_docs_hello_cron_job_runs_at_the_minute_and_is_collected() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let dir = d.dir.path().to_owned();
    d.cli_ok(&["apply", "-f", &write(&dir, "hello.yaml", &hello("hello"))]);
    wait_for("a job of hello", Duration::from_secs(75), || {
        !items(&json(&d, &["get", "jobs"])).is_empty()
    });
    let job = items(&json(&d, &["get", "jobs"]))[0].clone();
    let name = job["metadata"]["name"].as_str().unwrap().to_owned();
    let minutes: i64 = name.strip_prefix("hello-").unwrap().parse().unwrap();
    let stamp = job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
        .as_str()
        .unwrap();
    let scheduled = chrono_secs(stamp);
    assert_eq!(scheduled, minutes * 60, "{name} vs {stamp}");
    assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "CronJob");
    wait_for("the job Complete", Duration::from_secs(60), || {
        json(&d, &["get", "job", &name])["status"]["conditions"]
            .as_array()
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Complete" && c["status"] == "True")
            })
    });
    let pods = items(&json(
        &d,
        &["get", "pods", "-l", &format!("job-name={name}")],
    ));
    let pod = pods[0]["metadata"]["name"].as_str().unwrap().to_owned();
    let logs = d.cli_ok(&["logs", &pod]);
    assert!(logs.contains("Hello from the Kubernetes cluster"), "{logs}");
    wait_for("lastSuccessfulTime", Duration::from_secs(20), || {
        let s = &json(&d, &["get", "cronjob", "hello"])["status"];
        s["lastSuccessfulTime"].is_string() && s["lastScheduleTime"].is_string()
    });
    let table = d.cli_ok(&["get", "cj"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap()
        .split("  ")
        .filter(|s| !s.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "SCHEDULE",
            "TIMEZONE",
            "SUSPEND",
            "ACTIVE",
            "LAST SCHEDULE",
            "AGE"
        ],
        "{table}"
    );
    assert!(
        table.lines().nth(1).unwrap().starts_with("hello"),
        "{table}"
    );
    let describe = d.cli_ok(&["describe", "cronjob", "hello"]);
    assert!(
        describe.contains("Concurrency Policy:") && describe.contains("Allow"),
        "{describe}"
    );

    d.cli_ok(&["delete", "cronjob", "hello"]);
    wait_for("jobs and pods collected", Duration::from_secs(30), || {
        items(&json(&d, &["get", "jobs"])).is_empty()
            && items(&json(&d, &["get", "pods"])).is_empty()
    });
    d.shutdown().await;
}

/// Seconds since the epoch of an RFC 3339 time.
fn chrono_secs(s: &str) -> i64 {
    let out = sh("date", &["-d", s, "+%s"]);
    out.trim().parse().unwrap()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Schedule precision: CRON_BENCH_JOBS CronJobs (default 10) every minute for
/// CRON_BENCH_MINUTES (default 3); how late after the scheduled minute each Job was created
/// (the controller's `late_ms`, from the daemon log) and each Job's pod started (status
/// startTime, whole seconds). Prints p50/p99.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: minutes of wall time; run scripts/bench-workloads.sh"]
async fn bench_cron_job_schedule_precision() {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (n, minutes) = (env("CRON_BENCH_JOBS", 10), env("CRON_BENCH_MINUTES", 3));
    let d = Daemon::start().await;
    d.import_test_image().await;
    let dir = d.dir.path().to_owned();
    let text: Vec<String> = (0..n).map(|i| hello(&format!("c{i}"))).collect();
    d.cli_ok(&[
        "apply",
        "-f",
        &write(&dir, "cron.yaml", &text.join("---\n")),
    ]);
    tokio::time::sleep(Duration::from_secs(60 * minutes as u64 + 30)).await;
    let mut late: Vec<f64> = d
        .log()
        .lines()
        .filter(|l| l.contains("created job"))
        .filter_map(|l| {
            let v = l.split("late_ms=").nth(1)?;
            v.split(|c: char| !c.is_ascii_digit() && c != '-')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    late.sort_by(f64::total_cmp);
    assert!(!late.is_empty(), "no job created");
    let jobs = items(&json(&d, &["get", "jobs"]));
    let mut start: Vec<f64> = jobs
        .iter()
        .filter_map(|j| {
            let name = j["metadata"]["name"].as_str()?;
            let minutes: i64 = name.rsplit('-').next()?.parse().ok()?;
            let started = chrono_secs(j["status"]["startTime"].as_str()?);
            Some((started - minutes * 60) as f64 * 1000.0)
        })
        .collect();
    start.sort_by(f64::total_cmp);
    println!(
        "MEASURE cronjob precision ({} jobs from {n} CronJobs over {minutes} min): job created after the scheduled minute p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; job startTime after it (1 s resolution) p50 {:.0} ms, p99 {:.0} ms",
        late.len(),
        percentile(&late, 0.5),
        percentile(&late, 0.99),
        late[late.len() - 1],
        start.first().map(|_| percentile(&start, 0.5)).unwrap_or(f64::NAN),
        start.first().map(|_| percentile(&start, 0.99)).unwrap_or(f64::NAN),
    );
    d.shutdown().await;
}
