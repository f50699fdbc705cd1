//! How many pod sandboxes are torn down at once, and the end of a burst of teardowns.
//!
//! Deleting many pods at once (a finished Job's 1000 pods, a namespace, `delete pods --all`)
//! wakes every pod's worker together. Unbounded, each tears its sandbox down at the same time
//! (the pod init, the network namespace and its nftables rules, cgroups, mounts, the records):
//! hundreds of blocking-pool threads and buffers live at once, and the allocator keeps the
//! high-water mark after they are freed (issue 12: 82 → 257 MiB when a Job's 1000 pods went).
//! [`Teardowns`] admits a few sandbox teardowns at a time, first come first served (tokio's
//! semaphore is fair), so deleting many pods completes in the order it was asked for. Only
//! the sandbox's own teardown holds a place: stopping the containers within their grace
//! period (preStop hooks, stop signals) runs for every pod at once, as the kubelet does, so a
//! pod with a long grace period never delays another pod's deletion.
//!
//! When the last teardown of a burst ends and none starts for [`QUIET`], the `drained` hook
//! runs once on the blocking pool (the daemon returns the allocator's free heap to the
//! kernel there).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

/// How long no teardown must run before a burst counts as over.
pub const QUIET: Duration = Duration::from_secs(2);

/// Sandbox teardowns at once for a host with `cpus` CPUs: eight per CPU (a teardown mostly
/// waits for the kernel and helper processes), at least 8 and at most 64. Measured (debug
/// build, 120 pods deleted with their namespace, loaded 2-core host): 17.6 s with 4 per CPU,
/// 13.1 s with 8, 11.9 s unbounded.
pub fn limit_for(cpus: usize) -> usize {
    cpus.saturating_mul(8).clamp(8, 64)
}

/// The bound on sandbox teardowns (see the module docs). Cheap to share behind an `Arc`.
pub struct Teardowns {
    limit: usize,
    permits: Arc<Semaphore>,
    /// Teardowns started so far: a burst is over only if none started during the quiet time.
    started: Arc<AtomicU64>,
    /// `started` when the hook last ran (it runs once per burst).
    hooked: Arc<AtomicU64>,
    drained: Option<fn()>,
}

impl Teardowns {
    /// At most `limit` (at least 1) teardowns at once; `drained` runs after each burst.
    pub fn new(limit: usize, drained: Option<fn()>) -> Teardowns {
        let limit = limit.max(1);
        Teardowns {
            limit,
            permits: Arc::new(Semaphore::new(limit)),
            started: Arc::default(),
            hooked: Arc::default(),
            drained,
        }
    }

    /// The host's bound ([`limit_for`] its CPUs).
    pub fn for_host(drained: Option<fn()>) -> Teardowns {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Teardowns::new(limit_for(cpus), drained)
    }

    /// How many teardowns may run at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Run one teardown when its turn comes (in the order of the calls).
    pub async fn run<F: Future>(&self, teardown: F) -> F::Output {
        let permit = self
            .permits
            .acquire()
            .await
            .expect("the teardown semaphore is never closed");
        self.started.fetch_add(1, Ordering::SeqCst);
        let out = teardown.await;
        drop(permit);
        self.after_one();
        out
    }

    /// After a teardown: when none runs or waits, run the hook once nothing started for
    /// [`QUIET`].
    fn after_one(&self) {
        let Some(hook) = self.drained else { return };
        if self.permits.available_permits() < self.limit {
            return; // Another teardown runs (or was just admitted): it will look again.
        }
        let seq = self.started.load(Ordering::SeqCst);
        let (permits, started, hooked) = (
            self.permits.clone(),
            self.started.clone(),
            self.hooked.clone(),
        );
        let limit = self.limit;
        tokio::spawn(async move {
            tokio::time::sleep(QUIET).await;
            if started.load(Ordering::SeqCst) == seq
                && permits.available_permits() == limit
                && hooked.swap(seq, Ordering::SeqCst) != seq
            {
                tracing::debug!(teardowns = seq, "a burst of pod teardowns is over");
                let _ = tokio::task::spawn_blocking(hook).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Mutex;

    #[test]
    fn the_limit_follows_the_host_within_bounds() {
        assert_eq!(limit_for(0), 8);
        assert_eq!(limit_for(1), 8);
        assert_eq!(limit_for(2), 16);
        assert_eq!(limit_for(6), 48);
        assert_eq!(limit_for(64), 64);
        assert_eq!(Teardowns::new(0, None).limit(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_the_limit_run_at_once_in_the_order_asked() {
        let t = Arc::new(Teardowns::new(3, None));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..20 {
            let (t, running, most, order) =
                (t.clone(), running.clone(), most.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                t.run(async {
                    order.lock().unwrap().push(i);
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    i
                })
                .await
            }));
            // Each asks after the one before (the order the workers asked in).
            tokio::task::yield_now().await;
        }
        let started = tokio::time::Instant::now();
        for (i, task) in tasks.into_iter().enumerate() {
            assert_eq!(
                task.await.unwrap(),
                i,
                "every teardown ran and returned its result"
            );
        }
        assert_eq!(
            most.load(Ordering::SeqCst),
            3,
            "never more than the limit at once"
        );
        assert_eq!(*order.lock().unwrap(), (0..20).collect::<Vec<_>>());
        // 20 teardowns of 100 ms, 3 at a time: 7 rounds, not 20.
        assert!(started.elapsed() <= Duration::from_millis(700));
    }

    static DRAINED: AtomicUsize = AtomicUsize::new(0);
    fn count_drained() {
        DRAINED.fetch_add(1, Ordering::SeqCst);
    }

    #[tokio::test(start_paused = true)]
    async fn the_hook_runs_once_after_a_burst_and_not_while_teardowns_go_on() {
        let t = Arc::new(Teardowns::new(2, Some(count_drained)));
        let burst = |n: u64| {
            let t = t.clone();
            async move {
                let all = (0..n).map(|i| {
                    let t = t.clone();
                    tokio::spawn(async move {
                        t.run(tokio::time::sleep(Duration::from_millis(10 * i)))
                            .await
                    })
                });
                for task in all.collect::<Vec<_>>() {
                    task.await.unwrap();
                }
            }
        };
        burst(10).await;
        // A teardown within the quiet time continues the burst.
        tokio::time::sleep(QUIET / 2).await;
        burst(1).await;
        tokio::time::sleep(QUIET / 2).await;
        assert_eq!(DRAINED.load(Ordering::SeqCst), 0, "not during the burst");
        tokio::time::sleep(QUIET).await;
        // The hook runs on the blocking pool: let it finish.
        for _ in 0..100 {
            if DRAINED.load(Ordering::SeqCst) > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(DRAINED.load(Ordering::SeqCst), 1, "once after the burst");
        tokio::time::sleep(QUIET * 5).await;
        assert_eq!(
            DRAINED.load(Ordering::SeqCst),
            1,
            "and not again without teardowns"
        );
    }
}
