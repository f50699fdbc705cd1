//! The daemon's activity clock: when it last did work for someone (a CRI call, a pod or
//! controller pass). The idle trimmer (`daemon/src/trim.rs`) reads it to release memory only
//! once nothing has happened for a while, never while busy.
//!
//! Process-wide and lock-free: marking costs one atomic store of a coarse clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The process's reference instant (the first use of the clock).
static EPOCH: OnceLock<Instant> = OnceLock::new();
/// Milliseconds after `EPOCH` of the last activity, plus one (0: none yet).
static LAST: AtomicU64 = AtomicU64::new(0);

fn since_epoch(now: Instant) -> u64 {
    let epoch = *EPOCH.get_or_init(|| now);
    now.saturating_duration_since(epoch).as_millis() as u64 + 1
}

/// Mark the daemon busy now.
pub fn touch() {
    LAST.fetch_max(since_epoch(Instant::now()), Ordering::Relaxed);
}

/// An opaque mark of the last activity: equal marks mean nothing happened in between.
pub fn mark() -> u64 {
    LAST.load(Ordering::Relaxed)
}

/// How long ago the last activity was (since the clock's first use when there was none).
pub fn idle_for() -> Duration {
    let now = since_epoch(Instant::now());
    Duration::from_millis(now.saturating_sub(LAST.load(Ordering::Relaxed).max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touching_resets_the_idle_time_and_moves_the_mark() {
        let before = mark();
        std::thread::sleep(Duration::from_millis(30));
        touch();
        assert_ne!(mark(), before, "a touch moves the mark");
        assert!(idle_for() < Duration::from_millis(30), "{:?}", idle_for());
        let m = mark();
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(mark(), m, "no activity: same mark");
        assert!(idle_for() >= Duration::from_millis(40), "{:?}", idle_for());
    }
}
