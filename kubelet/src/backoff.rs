//! CrashLoopBackOff as the kubelet does it — the delay arithmetic and its state per
//! container — and the file that keeps that state across a restart of the daemon.
//!
//! Times are `tokio::time::Instant`s so the arithmetic can be tested on a paused clock; on
//! disk they are unix milliseconds (an `Instant` means nothing to the next process).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// The back-off constants.
#[derive(Debug, Clone, Copy)]
pub struct BackoffPolicy {
    pub initial: Duration,
    pub cap: Duration,
    /// Running this long resets the back-off.
    pub reset_after: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_secs(10),
            cap: Duration::from_secs(300),
            reset_after: Duration::from_secs(600),
        }
    }
}

/// Back-off state of one container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the next restart (zero: restart at once).
    pub next: Duration,
    pub not_before: Option<Instant>,
}

impl Backoff {
    /// Record a restart made at `now`: the next one may come `next` later, which doubles
    /// (to the cap) with every restart. The first restart needs no wait.
    pub fn restarted(&mut self, now: Instant, p: &BackoffPolicy) {
        self.next = if self.next.is_zero() {
            p.initial
        } else {
            (self.next * 2).min(p.cap)
        };
        self.not_before = Some(now + self.next);
    }

    /// Whether a container that exited after running for `ran` may be restarted at `now`;
    /// a run of `reset_after` or more forgets the back-off first.
    pub fn ready(&mut self, now: Instant, ran: Duration, p: &BackoffPolicy) -> bool {
        if ran >= p.reset_after {
            *self = Backoff::default();
        }
        self.not_before.is_none_or(|nb| now >= nb)
    }
}

/// Back-off state by (pod uid, container name).
pub type BackoffMap = HashMap<(String, String), Backoff>;

/// One entry of the state file.
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    pod: String,
    container: String,
    next_ms: u64,
    /// Unix time in milliseconds before which no restart is made.
    not_before_ms: Option<u64>,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// Where the back-off state is kept under the daemon's root.
pub fn state_file(root: &Path) -> PathBuf {
    root.join("supervisor").join("backoff.json")
}

/// Read the state saved by an earlier daemon (none when missing or unreadable: the worst
/// outcome is one restart without its wait, which is logged).
pub fn load(path: &Path) -> BackoffMap {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return BackoffMap::new(),
        Err(e) => {
            tracing::warn!(path = %path.display(), err = %e, "back-off state not read");
            return BackoffMap::new();
        }
    };
    let saved: Vec<Saved> = match serde_json::from_slice(&text) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(path = %path.display(), err = %e, "back-off state not valid; starting afresh");
            return BackoffMap::new();
        }
    };
    let (now, wall) = (Instant::now(), unix_ms(SystemTime::now()));
    saved
        .into_iter()
        .map(|s| {
            let b = Backoff {
                next: Duration::from_millis(s.next_ms),
                not_before: s
                    .not_before_ms
                    .map(|nb| now + Duration::from_millis(nb.saturating_sub(wall))),
            };
            ((s.pod, s.container), b)
        })
        .collect()
}

/// Write the state atomically (a new file renamed over the old one).
pub fn save(path: &Path, map: &BackoffMap) -> std::io::Result<()> {
    let (now, wall) = (Instant::now(), SystemTime::now());
    let mut saved: Vec<Saved> = map
        .iter()
        .map(|((pod, container), b)| Saved {
            pod: pod.clone(),
            container: container.clone(),
            next_ms: b.next.as_millis() as u64,
            not_before_ms: b
                .not_before
                .map(|nb| unix_ms(wall + nb.saturating_duration_since(now))),
        })
        .collect();
    saved.sort_by(|a, b| (&a.pod, &a.container).cmp(&(&b.pod, &b.container)));
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    serde_json::to_writer(&mut tmp, &saved)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// A container that crashes right after each start, on a paused clock: the first restart
    /// is at once, then 10 s doubling to 300 s; a run of 10 minutes resets the sequence.
    #[tokio::test(start_paused = true)]
    async fn crash_loop_back_off_sequence_and_reset() {
        let p = BackoffPolicy::default();
        let mut b = Backoff::default();
        let mut waits = Vec::new();
        for _ in 0..8 {
            // Exited: how long until a restart is allowed?
            let exited = Instant::now();
            while !b.ready(Instant::now(), Duration::ZERO, &p) {
                tokio::time::advance(Duration::from_millis(500)).await;
            }
            waits.push(Instant::now().duration_since(exited).as_secs());
            b.restarted(Instant::now(), &p);
        }
        assert_eq!(waits, [0, 10, 20, 40, 80, 160, 300, 300]);

        // Still capped for a container that ran only 9 minutes...
        tokio::time::advance(secs(540)).await;
        let mut held = b;
        assert!(held.ready(Instant::now(), secs(540), &p));
        assert_eq!(held.next, secs(300), "a short run keeps the back-off");
        // ...but a 10-minute run forgets it: the next restart is immediate and the one after
        // waits the initial delay again.
        tokio::time::advance(secs(60)).await;
        assert!(b.ready(Instant::now(), secs(600), &p));
        assert_eq!(b, Backoff::default());
        b.restarted(Instant::now(), &p);
        assert_eq!(b.next, secs(10));
    }

    #[test]
    fn configured_constants_are_used() {
        let p = BackoffPolicy {
            initial: Duration::from_secs(1),
            cap: Duration::from_secs(60),
            ..BackoffPolicy::default()
        };
        let mut b = Backoff::default();
        let mut nexts = Vec::new();
        for _ in 0..8 {
            b.restarted(Instant::now(), &p);
            nexts.push(b.next.as_secs());
        }
        assert_eq!(nexts, [1, 2, 4, 8, 16, 32, 60, 60]);
    }

    #[test]
    fn state_survives_a_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = state_file(dir.path());
        let now = Instant::now();
        let mut m = BackoffMap::new();
        m.insert(
            ("uid-1".into(), "app".into()),
            Backoff {
                next: secs(40),
                not_before: Some(now + secs(30)),
            },
        );
        m.insert(("uid-2".into(), "web".into()), Backoff::default());
        save(&path, &m).unwrap();
        let back = load(&path);
        assert_eq!(back.len(), 2);
        let b = back[&("uid-1".to_string(), "app".to_string())];
        assert_eq!(b.next, secs(40));
        let left = b.not_before.unwrap().duration_since(Instant::now());
        assert!(left > secs(28) && left <= secs(30), "{left:?}");
        assert_eq!(
            back[&("uid-2".to_string(), "web".to_string())],
            Backoff::default()
        );
        // A damaged file starts afresh instead of failing the daemon.
        std::fs::write(&path, b"{not json").unwrap();
        assert!(load(&path).is_empty());
    }
}
