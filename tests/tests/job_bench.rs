//! Benchmark (run on demand, prints figures, asserts only that the Job completes): a Job of
//! `KINGLET_JOB_BENCH_COMPLETIONS` completions (default 1000), parallelism 10, pods of `true`,
//! through a real daemon. Prints completions per second and the daemon's RSS and CPU sampled
//! once a second over the run, to show whether they stay flat: per 100 completions the time they took, the rate, the RSS and
//! the daemon's CPU. `KINGLET_JOB_BENCH_SECS` caps the run (default 3 s per completion + 2
//! min); `KINGLET_JOB_BENCH_OUT` names a file for the figures as TSV
//! (`scripts/bench-workloads.sh job` compares two binaries with it).
//!
//! `cargo test -p kinglet-tests --test job_bench -- --ignored --nocapture`

use std::time::{Duration, Instant};

use kinglet_tests::*;

/// The daemon's resident set (KiB) and CPU time (clock ticks) now.
fn sample(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces): utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let cpu = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    (rss, cpu)
}

/// The daemon's thread count now.
fn threads(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The host's load averages (1, 5, 15 min).
fn loadavg() -> String {
    let l = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: run on demand with --ignored --nocapture"]
async fn job_of_many_completions() {
    let completions: u32 = std::env::var("KINGLET_JOB_BENCH_COMPLETIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let d = Daemon::start().await;
    d.import_test_image().await;
    let f = write(
        d.dir.path(),
        "job.yaml",
        &format!(
            "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: many}}\nspec:\n  completions: {completions}\n  parallelism: 10\n  backoffLimit: 100\n  ttlSecondsAfterFinished: 0\n  template:\n    spec:\n      restartPolicy: Never\n      terminationGracePeriodSeconds: 0\n      containers:\n      - {{name: t, image: {IMAGE}, imagePullPolicy: IfNotPresent, command: ['true']}}\n"
        ),
    );
    let pid = d.pid();
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let (rss0, cpu0) = sample(pid);
    let load0 = loadavg();
    let start = Instant::now();
    d.cli_ok(&["apply", "-f", &f]);
    let mut samples: Vec<(f64, u64, u64, i64)> = Vec::new();
    let mut done = 0;
    let mut threads_peak = 0;
    let limit = std::env::var("KINGLET_JOB_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(u64::from(completions) * 3 + 120));
    while start.elapsed() < limit {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let out = d.cli(&["get", "job", "many", "-o", "json"]);
        let (rss, cpu) = sample(pid);
        threads_peak = threads_peak.max(threads(pid));
        if !out.status.success() {
            // ttlSecondsAfterFinished: 0 deleted the finished Job.
            samples.push((
                start.elapsed().as_secs_f64(),
                rss,
                cpu,
                i64::from(completions),
            ));
            break;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        done = v["status"]["succeeded"].as_i64().unwrap_or(0);
        samples.push((start.elapsed().as_secs_f64(), rss, cpu, done));
        let complete = v["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Complete" && c["status"] == "True");
        if complete {
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let (_, rss_end, cpu_end, last) = *samples.last().expect("samples");
    let rss_peak = samples.iter().map(|s| s.1).max().unwrap_or(0);
    println!(
        "FIGURE job bench: {completions} completions, parallelism 10, pods of `true`: {:.1} s, {:.2} completions/s",
        secs,
        f64::from(completions) / secs
    );
    println!(
        "FIGURE job bench: daemon RSS {} KiB before, peak {} KiB, {} KiB at the end; CPU {:.1} s ({:.0}% of one core)",
        rss0,
        rss_peak,
        rss_end,
        (cpu_end - cpu0) as f64 / ticks,
        100.0 * (cpu_end - cpu0) as f64 / ticks / secs
    );
    println!(
        "FIGURE job bench: load average at the start {load0}, at the end {}",
        loadavg()
    );
    // Per 100 completions: how long they took, the rate, RSS when the 100th was seen and the
    // daemon's CPU over those seconds.
    let mut rows = Vec::new();
    let mut prev = (0.0, rss0, cpu0, 0);
    let mut next = 100;
    for s in &samples {
        if s.3 < next && s.3 < i64::from(completions) {
            continue;
        }
        let dt = (s.0 - prev.0).max(0.001);
        rows.push(format!(
            "per100_{:05}\t{}-{}\t{:.1}\t{:.2}\t{}\t{:.0}",
            (s.3 / 100) * 100,
            prev.3,
            s.3,
            dt,
            (s.3 - prev.3) as f64 / dt,
            s.1 / 1024,
            100.0 * s.2.saturating_sub(prev.2) as f64 / ticks / dt
        ));
        prev = *s;
        next = (s.3 / 100 + 1) * 100;
    }
    println!("FIGURE job bench per 100: reached\tcompletions\tseconds\tper_s\tRSS_MiB\tCPU_%");
    for r in &rows {
        println!("FIGURE job bench per 100: {r}");
    }
    // The finished Job goes (ttlSecondsAfterFinished: 0), and its pods with it.
    let gone = Instant::now();
    let mut rss_deleting_peak = 0;
    while gone.elapsed() < Duration::from_secs(120) {
        rss_deleting_peak = rss_deleting_peak.max(sample(pid).0);
        threads_peak = threads_peak.max(threads(pid));
        let out = d.cli(&["get", "pods", "-o", "name"]);
        if out.status.success() && out.stdout.iter().all(u8::is_ascii_whitespace) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (rss_clean, _) = sample(pid);
    let threads_clean = threads(pid);
    println!(
        "FIGURE job bench: {:.1} s after the Job completed its pods are gone; daemon RSS then {} KiB (peak while deleting {} KiB), {} threads (peak {})",
        gone.elapsed().as_secs_f64(),
        rss_clean,
        rss_deleting_peak,
        threads_clean,
        threads_peak
    );
    // And once the burst has settled (idle blocking threads end after 10 s; the heap is
    // trimmed once the pod workers are idle).
    let settle = std::env::var("KINGLET_JOB_BENCH_SETTLE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    tokio::time::sleep(Duration::from_secs(settle)).await;
    let (rss_settled, _) = sample(pid);
    let threads_settled = threads(pid);
    println!(
        "FIGURE job bench: {settle} s later daemon RSS {rss_settled} KiB, {threads_settled} threads"
    );
    if let Ok(out) = std::env::var("KINGLET_JOB_BENCH_OUT") {
        let summary = format!(
            "total_s\t{secs:.1}\nrss_start_kib\t{rss0}\nrss_peak_kib\t{rss_peak}\nrss_end_kib\t{rss_end}\nrss_after_cleanup_kib\t{rss_clean}\nrss_settled_kib\t{rss_settled}\nrss_deleting_peak_kib\t{rss_deleting_peak}\nthreads_after_cleanup\t{threads_clean}\nthreads_settled\t{threads_settled}\nthreads_peak\t{threads_peak}\ncpu_pct\t{:.0}\ndone\t{last}\n",
            100.0 * (cpu_end - cpu0) as f64 / ticks / secs
        );
        let text = format!("{summary}{}\n", rows.join("\n"));
        std::fs::write(&out, text).expect("write the bench summary");
    }
    assert_eq!(
        last,
        i64::from(completions),
        "the Job completed ({done} seen)"
    );
    d.shutdown().await;
}
