//! Load: a hundred pods crash-looping at once. The back-off holds (no pod restarts more often
//! than the sequence allows), the daemon keeps answering, its memory stays flat, and all of it
//! is removed cleanly. A file of its own so that it runs alone (test binaries run one by one)
//! and its load does not skew the timing of other tests.

use std::time::{Duration, Instant};

use kinglet_tests::*;

const IMG: &str = "image: kinglet.test/busybox:latest\n    imagePullPolicy: IfNotPresent";

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// User+system CPU time of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_pods_crash_looping_at_once() {
    const PODS: usize = 100;
    // Short constants so that the back-off reaches its cap within the test: 0.5 s doubling
    // to 4 s.
    let d = Daemon::start_with_config(
        "crash-loop-backoff-initial-ms = 500\ncrash-loop-backoff-max-ms = 4000\n",
    )
    .await;
    d.import_test_image().await;
    let yaml: Vec<String> = (0..PODS)
        .map(|i| {
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: crash-{i}}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    {IMG}\n    command: [sh, -c, 'exit 2']\n"
            )
        })
        .collect();
    let f = write(d.dir.path(), "many.yaml", &yaml.join("---\n"));
    let t0 = Instant::now();
    d.cli_ok(&["apply", "-f", &f]);

    let counts = || -> Vec<i64> {
        let out = d.cli_ok(&["get", "pods", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                p["status"]["containerStatuses"][0]["restartCount"]
                    .as_i64()
                    .unwrap_or(0)
            })
            .collect()
    };
    // Every pod gets to its third restart (0 + 0.5 + 1 s of back-off at least).
    wait_for(
        "every pod's third restart",
        Duration::from_secs(120),
        || {
            let c = counts();
            c.len() == PODS && c.iter().all(|&n| n >= 3)
        },
    );
    let (rss1, cpu1, at1) = (rss_kib(d.pid()), cpu_ticks(d.pid()), Instant::now());
    // Another 20 s at the cap: memory stays flat, the daemon keeps answering at once.
    let mut slowest = Duration::ZERO;
    while at1.elapsed() < Duration::from_secs(20) {
        let t = Instant::now();
        d.cli_ok(&["get", "pods"]);
        slowest = slowest.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(500));
    }
    let (rss2, cpu2) = (rss_kib(d.pid()), cpu_ticks(d.pid()));
    let elapsed = t0.elapsed();
    let c = counts();
    // Back-off holds: with 0.5, 1, 2, 4, 4, ... s between restarts, no pod can have
    // restarted more often than that sequence allows in the time elapsed.
    let mut bound = 1;
    let (mut t, mut step) = (0.0, 0.5);
    while t + step <= elapsed.as_secs_f64() {
        t += step;
        bound += 1;
        step = f64::min(step * 2.0, 4.0);
    }
    let max = *c.iter().max().unwrap();
    assert!(
        max <= bound,
        "a pod restarted {max} times in {elapsed:?}: more than the back-off allows ({bound})"
    );
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .unwrap()
        .unwrap() as f64;
    let cpu_share = (cpu2 - cpu1) as f64 / ticks / at1.elapsed().as_secs_f64();
    eprintln!(
        "{PODS} pods crash-looping: restarts min {} max {max} (bound {bound}) in {elapsed:?}; daemon RSS {rss1} -> {rss2} KiB; daemon CPU {:.0}% of one core; slowest `get pods` {slowest:?}",
        c.iter().min().unwrap(),
        cpu_share * 100.0
    );
    assert!(
        rss2 < rss1 + 8 * 1024,
        "daemon RSS grew from {rss1} to {rss2} KiB in 20 s of crash loops"
    );
    assert!(
        slowest < Duration::from_secs(3),
        "`get pods` took {slowest:?}"
    );

    // All of it goes away cleanly.
    d.cli_ok(&["delete", "-f", &f]);
    wait_for("every pod to go", Duration::from_secs(120), || {
        std::fs::read_dir(d.run_root.join("pods"))
            .map(|r| r.count())
            .unwrap_or(0)
            == 0
    });
    d.shutdown().await;
}
