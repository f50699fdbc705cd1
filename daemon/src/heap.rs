//! The daemon's bounds on memory kept after bursts of work (issue 12: a Job's 1000 pods
//! deleted at once took the daemon from 82 to 257 MiB, and it stayed there).
//!
//! Measured during such deletions (`/proc/PID/status`, glibc's `malloc_stats` through gdb):
//! the blocking pool grew to hundreds of threads (tokio's default allows 512), and after the
//! burst the allocator's arenas held ~34 MB of which ~1.7 MB were in use — free memory kept
//! for reuse, spread over up to 8 arenas per CPU. So the daemon
//! - bounds its blocking pool ([`blocking_threads_for`]): beyond it, blocking work queues
//!   (every blocking task of the daemon is short; none waits on another);
//! - lets an idle blocking thread end after [`BLOCKING_KEEP_ALIVE`] instead of tokio's 10 s:
//!   the pool wakes its idle threads in turn, so the daemon's periodic blocking work (a task
//!   or more a second) kept ~10 threads of a past burst alive for good;
//! - caps glibc's arenas ([`arena_max_for`], `M_ARENA_MAX`, set before any thread starts):
//!   fewer arenas keep less free memory apart;
//! - returns free heap to the kernel once a burst of pod teardowns is over
//!   (`kinglet_kubelet::teardowns`, calling [`crate::trim::malloc_trim`]).

/// How long an idle blocking thread waits for work before it ends.
pub const BLOCKING_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(2);

/// Threads of the blocking pool for a host with `cpus` CPUs: 16 per CPU, at least 32 and
/// at most 256 (tokio's default is 512 on any host).
pub fn blocking_threads_for(cpus: usize) -> usize {
    cpus.saturating_mul(16).clamp(32, 256)
}

/// glibc malloc arenas for a host with `cpus` CPUs: one per CPU, at least 2 and at most 8
/// (glibc's default is 8 per CPU).
pub fn arena_max_for(cpus: usize) -> usize {
    cpus.clamp(2, 8)
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The blocking pool's bound on this host.
pub fn blocking_threads() -> usize {
    blocking_threads_for(cpus())
}

/// Cap the allocator's arenas (see the module docs). Call before starting threads: arenas
/// already made stay.
pub fn limit_arenas() {
    #[cfg(target_env = "gnu")]
    {
        let n = i32::try_from(arena_max_for(cpus())).unwrap_or(8);
        // SAFETY: mallopt only changes a parameter of the allocator (under its own lock);
        // no memory is touched and no pointer is invalidated.
        if unsafe { libc::mallopt(libc::M_ARENA_MAX, n) } != 1 {
            tracing::debug!(arenas = n, "mallopt(M_ARENA_MAX) refused");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blocking_pool_follows_the_host_within_bounds() {
        assert_eq!(blocking_threads_for(1), 32);
        assert_eq!(blocking_threads_for(2), 32);
        assert_eq!(blocking_threads_for(4), 64);
        assert_eq!(blocking_threads_for(64), 256);
    }

    #[test]
    fn arenas_follow_the_host_within_bounds() {
        assert_eq!(arena_max_for(0), 2);
        assert_eq!(arena_max_for(2), 2);
        assert_eq!(arena_max_for(6), 6);
        assert_eq!(arena_max_for(96), 8);
    }
}
