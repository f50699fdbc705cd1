//! The pull's progress deadline, as containerd's `image_pull_progress_timeout`: a pull that
//! moves no byte and finishes no step for that long is cancelled, whatever the registry does
//! (a server that accepts connections and never answers included).

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::{Progress, PullError};

/// What counts as progress: any change of these.
fn snapshot(p: &Progress) -> [u64; 5] {
    [
        p.layers_total.load(Ordering::Relaxed),
        p.layers_done.load(Ordering::Relaxed),
        p.bytes_total.load(Ordering::Relaxed),
        p.bytes_done.load(Ordering::Relaxed),
        p.steps.load(Ordering::Relaxed),
    ]
}

/// Run `pull` until it ends, or fail with [`PullError::Stalled`] once `progress` has not
/// changed for `limit`.
pub(super) async fn within_progress_deadline<T>(
    pull: impl Future<Output = Result<T, PullError>>,
    progress: &Progress,
    limit: Duration,
    image: &str,
) -> Result<T, PullError> {
    tokio::pin!(pull);
    let tick = (limit / 10).clamp(Duration::from_millis(20), Duration::from_secs(1));
    let mut last = snapshot(progress);
    let mut since = Instant::now();
    loop {
        tokio::select! {
            r = &mut pull => return r,
            _ = tokio::time::sleep(tick) => {
                let now = snapshot(progress);
                if now != last {
                    (last, since) = (now, Instant::now());
                } else if since.elapsed() >= limit {
                    return Err(PullError::Stalled {
                        image: image.to_owned(),
                        secs: limit.as_secs_f64(),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_pull_without_progress_fails_at_the_deadline() {
        let p = Progress::default();
        let started = Instant::now();
        let r: Result<(), _> = within_progress_deadline(
            std::future::pending(),
            &p,
            Duration::from_secs(300),
            "r.example/a:1",
        )
        .await;
        let e = r.unwrap_err();
        assert!(matches!(e, PullError::Stalled { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "pull of r.example/a:1 made no progress for 300 s (pull-progress-timeout-secs), cancelled"
        );
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(300) && took <= Duration::from_secs(302),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_pull_that_moves_is_not_cancelled() {
        let p = std::sync::Arc::new(Progress::default());
        let q = p.clone();
        let pull = async move {
            // 20 minutes, one byte every 4 minutes: each gap under the 5 minute deadline.
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_secs(240)).await;
                q.bytes_done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, PullError>(7)
        };
        let r = within_progress_deadline(pull, &p, Duration::from_secs(300), "a:1").await;
        assert_eq!(r.unwrap(), 7);
    }

    /// A registry that accepts connections and never answers: the pull fails at the
    /// configured progress deadline, not after every endpoint's and scheme's read timeouts.
    #[tokio::test]
    async fn a_silent_registry_fails_within_the_progress_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // Accept and hold every connection, never writing a byte.
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for s in listener.incoming().flatten() {
                held.push(s);
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let store = kinglet_image::ImageStore::open(dir.path()).unwrap();
        let puller = super::super::Puller::new(
            std::sync::Arc::new(store),
            super::super::PullConfig {
                progress_timeout: Duration::from_secs(2),
                connect_timeout: Duration::from_secs(1),
                ..Default::default()
            },
        );
        let started = std::time::Instant::now();
        let image = format!("127.0.0.1:{port}/silent/app:1");
        let e = puller.pull(&image, Vec::new()).await.unwrap_err();
        let took = started.elapsed();
        assert!(matches!(*e, PullError::Stalled { .. }), "{e:?}");
        assert!(e.to_string().contains("made no progress for 2 s"), "{e}");
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(8),
            "{took:?}"
        );
    }
}
