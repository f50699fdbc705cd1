//! The daemon's threads and memory through a burst of pod deletions (issue 12: deleting a
//! Job's 1000 pods took the daemon from 82 to 257 MiB, and it stayed there). Many pods are
//! created, then deleted at once with a short grace period; the deletion must finish, the
//! daemon's thread count must stay under its bounded blocking pool while it runs and return
//! afterwards, and its anonymous memory must come back near where it was before the pods
//! (the heap is returned to the kernel once the burst of teardowns is over).
//!
//! `KINGLET_BURST_PODS` sets the number of pods (default 120).

use std::time::{Duration, Instant};

use kinglet_proto::v1;
use kinglet_tests::*;

/// (Threads, VmRSS KiB, RssAnon KiB) of a process now.
fn sample(pid: u32) -> (u64, u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("Threads:"), field("VmRSS:"), field("RssAnon:"))
}

/// The daemon's blocking-pool bound on this host (`kinglet::heap::blocking_threads_for`).
fn blocking_bound() -> u64 {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    (cpus * 16).clamp(32, 256)
}

async fn sandboxes(d: &Daemon) -> usize {
    d.runtime()
        .await
        .list_pod_sandbox(v1::ListPodSandboxRequest::default())
        .await
        .expect("list sandboxes")
        .into_inner()
        .items
        .len()
}

/// Sample the daemon every 500 ms until `done` holds or `limit` passes; the highest
/// thread count seen. Panics when `limit` passes.
async fn watch_until<F, Fut>(d: &Daemon, what: &str, limit: Duration, mut done: F) -> u64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    let mut peak = 0;
    loop {
        peak = peak.max(sample(d.pid()).0);
        if done().await {
            return peak;
        }
        assert!(
            start.elapsed() < limit,
            "{what} within {limit:?}; daemon log:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_many_pods_at_once_finishes_and_threads_and_memory_come_back() {
    require_root();
    let n: usize = std::env::var("KINGLET_BURST_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    let d = Daemon::start().await;
    d.import_test_image().await;
    let pid = d.pid();
    // Idle blocking threads end after 10 s: start from a settled daemon.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let (threads0, rss0, anon0) = sample(pid);

    let mut docs: Vec<String> =
        vec!["apiVersion: v1\nkind: Namespace\nmetadata: {name: burst}\n".into()];
    docs.extend((0..n)
        .map(|i| {
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: burst-{i}, namespace: burst}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: c, image: {IMAGE}, imagePullPolicy: IfNotPresent, command: [sleep, '3600']}}\n"
            )
        }));
    let f = write(d.dir.path(), "burst.yaml", &docs.join("---\n"));
    d.cli_ok(&["apply", "-f", &f]);
    let running = || async {
        let out = d.cli_ok(&["get", "pods", "-n", "burst"]);
        out.lines().filter(|l| l.contains(" Running ")).count() == n
    };
    watch_until(
        &d,
        "every pod Running",
        Duration::from_secs(60 + 3 * n as u64),
        running,
    )
    .await;
    let (_, rss_live, anon_live) = sample(pid);

    let deleting = Instant::now();
    // Deleting the namespace deletes its pods all at once (`delete pods --all` would
    // delete them one after another, waiting for each).
    d.cli_ok(&["delete", "namespace", "burst"]);
    let gone = || async {
        d.cli_ok(&["get", "pods", "-A", "-o", "name"])
            .trim()
            .is_empty()
            && sandboxes(&d).await == 0
    };
    // Teardowns run a few at a time: still well within a second per pod on a loaded host.
    let peak = watch_until(
        &d,
        "every pod deleted",
        Duration::from_secs(30 + n as u64),
        gone,
    )
    .await;
    let took = deleting.elapsed();
    let (_, rss_deleted, anon_deleted) = sample(pid);

    // The heap is trimmed 2 s after the last teardown; idle blocking threads end after 10 s.
    tokio::time::sleep(Duration::from_secs(12)).await;
    // The fewest over 5 s: a periodic pass may have a blocking thread at work at any instant.
    let (mut threads1, mut rss1, mut anon1) = sample(pid);
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (t, r, a) = sample(pid);
        (threads1, rss1, anon1) = (threads1.min(t), rss1.min(r), anon1.min(a));
    }
    println!(
        "MEASURE burst of {n} pods: threads {threads0} before, peak {peak} while deleting, \
         {threads1} after; RSS/anon KiB: before {rss0}/{anon0}, live {rss_live}/{anon_live}, \
         deleted {rss_deleted}/{anon_deleted}, settled {rss1}/{anon1}; deletion took {:.1} s",
        took.as_secs_f64()
    );
    let bound = threads0 + blocking_bound() + 8;
    assert!(
        peak <= bound,
        "threads while deleting {n} pods: {peak} (bound {bound}: {threads0} + the blocking pool)"
    );
    assert!(
        threads1 <= threads0 + 4,
        "threads after the burst: {threads1} (before: {threads0})"
    );
    // Anonymous memory back near where it was: what the pods' objects needed is freed and
    // the heap trimmed (margin for what the allocator cannot return, fragments, caches).
    let anon_bound = anon0 * 3 / 2 + 8 * 1024;
    assert!(
        anon1 <= anon_bound,
        "anonymous memory after deleting {n} pods: {anon1} KiB (before {anon0} KiB, with \
         the pods {anon_live} KiB, bound {anon_bound} KiB)"
    );
    d.shutdown().await;
}
