//! When the supervisor's loops wake without an event, so that an idle daemon sleeps (issue
//! 10's idle-RSS goal: each timer pass faults the code it runs back into memory).
//!
//! - The dispatcher (publish the objects, trigger pod workers, the controllers' round) wakes
//!   at once on an apply or delete, a container's exit, the end of a deleted pod's worker. Its
//!   timer only stands in for what has no event: while a stored Pod is live or being deleted
//!   the pod status it publishes changes without one (containers starting, becoming ready),
//!   so it looks every [`LIVE_TICK`]; with only finished Pods, or workers of Pods gone, at the
//!   pod resync ([`crate::pod_sync::RESYNC`]: list the sandboxes, find orphans); with no Pod
//!   and no worker, never.
//! - The services loop (EndpointSlices, proxy rules, cluster DNS, Ingress) wakes at once when
//!   objects are applied or deleted, readiness changes or the objects are published. It polls
//!   every [`SERVICES_TICK`] only while there is something of its kind (a Service, an
//!   EndpointSlice, an Ingress of ours) whose endpoints follow pod status, or something to
//!   retry (the first proxy table after a start, a DNS or Ingress listener not bound yet);
//!   otherwise it never runs, and never runs `nft`.

use std::time::Duration;

use crate::pod_sync::RESYNC;

/// The dispatcher's look while some stored Pod is live or being deleted.
pub(crate) const LIVE_TICK: Duration = Duration::from_secs(1);
/// The services loop's look while there are Services, slices or Ingresses, or a retry.
pub(crate) const SERVICES_TICK: Duration = Duration::from_millis(500);

/// What the dispatcher saw in its last pass.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct DispatchSeen {
    /// Stored Pods.
    pub pods: usize,
    /// Pod workers running (some may be tearing down a Pod that is gone).
    pub workers: usize,
    /// A stored Pod whose worker has not found it finished.
    pub live: bool,
    /// A stored Pod being deleted.
    pub terminating: bool,
}

/// How long the dispatcher sleeps without an event (None: until one).
pub(crate) fn dispatch_wait(s: DispatchSeen) -> Option<Duration> {
    if s.live || s.terminating {
        Some(LIVE_TICK)
    } else if s.pods > 0 || s.workers > 0 {
        Some(RESYNC)
    } else {
        None
    }
}

/// What the services loop saw in its last pass.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ServicesSeen {
    /// A Service, EndpointSlice or Endpoints is stored.
    pub services: bool,
    /// An Ingress of Kinglet's class is stored.
    pub ingresses: bool,
    /// Something to retry: the first proxy table, the DNS or Ingress listeners.
    pub pending: bool,
}

/// How long the services loop sleeps without an event (None: until one).
pub(crate) fn services_wait(s: ServicesSeen) -> Option<Duration> {
    (s.services || s.ingresses || s.pending).then_some(SERVICES_TICK)
}

/// Sleep for `wait`, or forever when None (the caller selects it against its events).
pub(crate) async fn sleep_for(wait: Option<Duration>) {
    match wait {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_daemon_dispatches_only_on_events() {
        assert_eq!(dispatch_wait(DispatchSeen::default()), None);
    }

    #[test]
    fn live_or_terminating_pods_keep_the_one_second_look() {
        let live = DispatchSeen {
            pods: 3,
            workers: 3,
            live: true,
            terminating: false,
        };
        assert_eq!(dispatch_wait(live), Some(LIVE_TICK));
        let deleting = DispatchSeen {
            pods: 1,
            workers: 1,
            live: false,
            terminating: true,
        };
        assert_eq!(dispatch_wait(deleting), Some(LIVE_TICK));
    }

    #[test]
    fn finished_pods_or_leftover_workers_wake_only_at_the_resync() {
        let finished = DispatchSeen {
            pods: 2,
            workers: 2,
            live: false,
            terminating: false,
        };
        assert_eq!(dispatch_wait(finished), Some(RESYNC));
        let leftover = DispatchSeen {
            pods: 0,
            workers: 1,
            ..Default::default()
        };
        assert_eq!(dispatch_wait(leftover), Some(RESYNC));
        assert!(RESYNC >= Duration::from_secs(10), "a slow resync");
    }

    #[test]
    fn no_service_no_ingress_nothing_to_retry_means_no_services_pass() {
        assert_eq!(services_wait(ServicesSeen::default()), None);
        for s in [
            ServicesSeen {
                services: true,
                ..Default::default()
            },
            ServicesSeen {
                ingresses: true,
                ..Default::default()
            },
            ServicesSeen {
                pending: true,
                ..Default::default()
            },
        ] {
            assert_eq!(services_wait(s), Some(SERVICES_TICK), "{s:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn no_wait_sleeps_until_an_event() {
        let forever = tokio::time::timeout(Duration::from_secs(3600), sleep_for(None)).await;
        assert!(forever.is_err(), "None never wakes by itself");
        let t = tokio::time::Instant::now();
        sleep_for(Some(RESYNC)).await;
        assert_eq!(t.elapsed(), RESYNC);
    }
}
