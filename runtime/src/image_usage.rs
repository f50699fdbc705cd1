//! ImageFsInfo's measurement of the image store, cached.
//!
//! Measuring walks every directory of every unpacked layer (milliseconds, on a blocking
//! thread), and the callers poll: crictl asks on every connection to the image service (so on
//! every `crictl exec`, before the exec itself), a kubelet every few seconds. As containerd,
//! which answers from snapshotter usage refreshed in the background (every 10 s by default),
//! an answer may be up to [`MAX_AGE`] old and carries the time it was measured in its
//! `timestamp`; a pull, a removal or an image GC pass through this daemon drops the cached
//! value, so the next call measures again. Concurrent callers share one walk.

use std::time::{Duration, Instant};

use kinglet_image::StoreUsage;

/// How long a measurement answers ImageFsInfo (containerd's default stats period).
pub(crate) const MAX_AGE: Duration = Duration::from_secs(10);

/// One measurement: when it was taken (monotonic, for its age; unix ns, for the answer).
#[derive(Debug, Clone)]
pub(crate) struct Measured {
    pub at: Instant,
    pub timestamp: i64,
    pub usage: StoreUsage,
}

impl Measured {
    /// Whether this measurement may still answer at `now`.
    fn fresh_at(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.at) < MAX_AGE
    }
}

/// The last measurement; see the module docs.
#[derive(Default)]
pub(crate) struct UsageCache {
    last: tokio::sync::Mutex<Option<Measured>>,
}

impl UsageCache {
    /// The cached measurement if fresh, else `measure()`'s (kept for the next callers, who
    /// wait for this one instead of walking the store too).
    pub async fn get<F, Fut, E>(&self, measure: F) -> Result<Measured, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<StoreUsage, E>>,
    {
        let mut last = self.last.lock().await;
        if let Some(m) = last.as_ref().filter(|m| m.fresh_at(Instant::now())) {
            return Ok(m.clone());
        }
        let usage = measure().await?;
        let m = Measured {
            at: Instant::now(),
            timestamp: kinglet_util::now_nanos(),
            usage,
        };
        *last = Some(m.clone());
        Ok(m)
    }

    /// Forget the measurement (the store changed).
    pub async fn invalidate(&self) {
        *self.last.lock().await = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn usage(bytes: u64) -> StoreUsage {
        StoreUsage {
            mountpoint: "/".into(),
            used_bytes: bytes,
            inodes_used: 1,
        }
    }

    #[test]
    fn a_measurement_is_fresh_for_max_age() {
        let t0 = Instant::now();
        let m = Measured {
            at: t0,
            timestamp: 0,
            usage: usage(1),
        };
        assert!(m.fresh_at(t0));
        assert!(m.fresh_at(t0 + MAX_AGE - Duration::from_millis(1)));
        assert!(!m.fresh_at(t0 + MAX_AGE));
    }

    #[tokio::test]
    async fn calls_share_a_fresh_measurement_until_invalidated() {
        let cache = UsageCache::default();
        let walks = AtomicU64::new(0);
        let measure = || async {
            let n = walks.fetch_add(1, Ordering::SeqCst) + 1;
            Ok::<_, std::io::Error>(usage(n * 100))
        };
        let a = cache.get(measure).await.unwrap();
        let b = cache.get(measure).await.unwrap();
        assert_eq!((a.usage.used_bytes, b.usage.used_bytes), (100, 100));
        assert_eq!(
            a.timestamp, b.timestamp,
            "the answer says when it was measured"
        );
        assert_eq!(walks.load(Ordering::SeqCst), 1);
        cache.invalidate().await;
        let c = cache.get(measure).await.unwrap();
        assert_eq!(c.usage.used_bytes, 200);
        assert_eq!(walks.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_measurement_is_not_kept() {
        let cache = UsageCache::default();
        let err = cache
            .get(|| async { Err::<StoreUsage, _>(std::io::Error::other("gone")) })
            .await;
        assert!(err.is_err());
        let ok = cache
            .get(|| async { Ok::<_, std::io::Error>(usage(7)) })
            .await
            .unwrap();
        assert_eq!(ok.usage.used_bytes, 7);
    }
}
