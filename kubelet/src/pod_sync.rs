//! Which pod workers a dispatch wakes, so that the work of one dispatch is proportional to what
//! changed rather than to every pod ever applied (as the kubelet's pod workers sync a pod on
//! its own events and a periodic resync, never all pods on every change):
//!
//! - a Pod that is new or was written since the last dispatch (spec, labels, annotations,
//!   deletion), seen through the object store's per-pod revision;
//! - every applied Pod when a ConfigMap, Secret, Service or PersistentVolumeClaim was written or
//!   removed (their volumes, env and service links read them);
//! - a Pod no longer stored: its worker, if it still runs, tears it down;
//! - in a round that listed the sandboxes (the first dispatch, every [`RESYNC`], and while Pods
//!   are being deleted): pods that have a sandbox but are not applied (deleted while the daemon
//!   was down) and workers whose Pod is gone;
//! - the periodic resync: a Pod not synced for [`RESYNC`], unless it is finished (its containers
//!   exited for good and its sandbox stopped: nothing can change it but its object).
//!
//! A container's exit wakes its pod's worker directly (`Supervisor::wake_exited`), and each
//! worker's own tasks (pulls, probers, back-offs) wake it; neither goes through here.
//!
//! [`PodSync`] also keeps each published Pod shared ([`Arc`]) between dispatches, so publishing
//! copies only the Pods that changed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tokio::time::Instant;

use crate::world::Snapshot;

/// How often a pod that is not finished is synced without an event (the kubelet's
/// `syncFrequency` is a minute; shorter here, as a pod waiting on something outside the store,
/// like an image imported by hand, retries on it).
pub const RESYNC: Duration = Duration::from_secs(10);

/// What one dispatch saw.
pub(crate) struct Seen<'a> {
    /// The stored Pods' revisions, by uid.
    pub pods: &'a HashMap<String, u64>,
    /// A ConfigMap, Secret, Service or PersistentVolumeClaim changed.
    pub deps_changed: bool,
    /// The pods with a sandbox, when this round listed them.
    pub with_sandbox: Option<&'a HashSet<String>>,
    /// The pods whose worker runs.
    pub workers: &'a [String],
    /// Whether the pod's worker last found it finished.
    pub finished: &'a dyn Fn(&str) -> bool,
    pub now: Instant,
}

/// What to do with the workers after one dispatch.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Make a pass (starting a worker if it has none).
    pub trigger: Vec<String>,
    /// Make a pass only if the worker runs (its Pod is gone: a new worker has nothing to do).
    pub wake: Vec<String>,
}

/// The dispatcher's memory of what it published (see the module docs).
#[derive(Default)]
pub(crate) struct PodSync {
    /// Each stored Pod's revision as last dispatched, by uid.
    revs: HashMap<String, u64>,
    /// When each stored Pod's worker was last triggered.
    synced: HashMap<String, Instant>,
    /// When the sandboxes were last listed (None: never).
    listed: Option<Instant>,
    /// The published Pods, kept to be shared again while unchanged.
    published: HashMap<String, (u64, Arc<Pod>)>,
    /// The published snapshot and the store's dependency revision it was made at.
    snap: Option<(u64, Arc<Snapshot>)>,
}

impl PodSync {
    /// Whether this round should list the sandboxes: at the first dispatch, every [`RESYNC`],
    /// and while some Pod is being deleted (it is removed once it has none left).
    pub fn list_due(&self, terminating: bool, now: Instant) -> bool {
        terminating || self.listed.is_none_or(|t| now.duration_since(t) >= RESYNC)
    }

    /// Decide which workers to wake, and remember this round (see the module docs).
    pub fn plan(&mut self, seen: &Seen<'_>) -> Plan {
        let mut plan = Plan::default();
        let mut triggered: HashSet<&str> = HashSet::new();
        for (uid, rev) in seen.pods {
            let changed = self.revs.get(uid) != Some(rev);
            let due = self
                .synced
                .get(uid)
                .is_none_or(|t| seen.now.duration_since(*t) >= RESYNC);
            if changed || seen.deps_changed || (due && !(seen.finished)(uid)) {
                triggered.insert(uid);
            }
        }
        for uid in self.revs.keys() {
            if !seen.pods.contains_key(uid) {
                plan.wake.push(uid.clone());
            }
        }
        if let Some(with_sandbox) = seen.with_sandbox {
            self.listed = Some(seen.now);
            let orphans = with_sandbox.iter().chain(seen.workers);
            for uid in orphans.filter(|u| !seen.pods.contains_key(*u)) {
                triggered.insert(uid);
            }
        }
        plan.trigger = triggered.into_iter().map(str::to_owned).collect();
        plan.trigger.sort();
        plan.wake.sort();
        for uid in &plan.trigger {
            if seen.pods.contains_key(uid) {
                self.synced.insert(uid.clone(), seen.now);
            }
        }
        self.synced.retain(|uid, _| seen.pods.contains_key(uid));
        self.revs = seen.pods.clone();
        plan
    }

    /// The stored Pods (with their revisions) by uid, shared with the last publication where
    /// unchanged (only changed Pods are copied), and their revisions.
    pub fn pods<'p>(
        &mut self,
        stored: impl Iterator<Item = (&'p Pod, u64)>,
    ) -> (HashMap<String, Arc<Pod>>, HashMap<String, u64>) {
        let mut pods = HashMap::new();
        let mut revs = HashMap::new();
        for (p, rev) in stored {
            let uid = p.metadata.uid.clone().unwrap_or_default();
            let shared = match self.published.get(&uid) {
                Some((r, p)) if *r == rev => p.clone(),
                _ => Arc::new(p.clone()),
            };
            revs.insert(uid.clone(), rev);
            pods.insert(uid, shared);
        }
        self.published = pods
            .iter()
            .map(|(uid, p)| (uid.clone(), (revs[uid], p.clone())))
            .collect();
        (pods, revs)
    }

    /// The snapshot for this round, made again only when its objects changed (`make`); true
    /// when it did (every pod then reads its inputs again).
    pub fn snapshot(
        &mut self,
        deps_rev: u64,
        make: impl FnOnce() -> Snapshot,
    ) -> (Arc<Snapshot>, bool) {
        match &self.snap {
            Some((r, s)) if *r == deps_rev => (s.clone(), false),
            _ => {
                let s = Arc::new(make());
                self.snap = Some((deps_rev, s.clone()));
                (s, true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revs(pairs: &[(&str, u64)]) -> HashMap<String, u64> {
        pairs.iter().map(|(u, r)| (u.to_string(), *r)).collect()
    }

    fn seen<'a>(
        pods: &'a HashMap<String, u64>,
        now: Instant,
        finished: &'a dyn Fn(&str) -> bool,
    ) -> Seen<'a> {
        Seen {
            pods,
            deps_changed: false,
            with_sandbox: None,
            workers: &[],
            finished,
            now,
        }
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn only_new_and_changed_pods_are_triggered() {
        let mut s = PodSync::default();
        let never = |_: &str| false;
        let now = Instant::now();
        let pods = revs(&[("a", 1), ("b", 2)]);
        assert_eq!(
            s.plan(&seen(&pods, now, &never)).trigger,
            names(&["a", "b"])
        );
        // Nothing changed: nothing to do, however many pods there are.
        let now = now + Duration::from_millis(300);
        assert_eq!(s.plan(&seen(&pods, now, &never)), Plan::default());
        // b written, c created.
        let pods = revs(&[("a", 1), ("b", 5), ("c", 6)]);
        assert_eq!(
            s.plan(&seen(&pods, now, &never)).trigger,
            names(&["b", "c"])
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_config_map_or_secret_triggers_every_pod() {
        let mut s = PodSync::default();
        let never = |_: &str| false;
        let now = Instant::now();
        let pods = revs(&[("a", 1), ("b", 2)]);
        s.plan(&seen(&pods, now, &never));
        let mut x = seen(&pods, now, &never);
        x.deps_changed = true;
        assert_eq!(s.plan(&x).trigger, names(&["a", "b"]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_removed_pod_wakes_its_running_worker_only() {
        let mut s = PodSync::default();
        let never = |_: &str| false;
        let now = Instant::now();
        s.plan(&seen(&revs(&[("a", 1), ("b", 2)]), now, &never));
        let plan = s.plan(&seen(&revs(&[("a", 1)]), now, &never));
        assert_eq!(
            plan,
            Plan {
                trigger: vec![],
                wake: names(&["b"])
            }
        );
        // Said once.
        assert_eq!(
            s.plan(&seen(&revs(&[("a", 1)]), now, &never)),
            Plan::default()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_resync_skips_finished_pods() {
        let mut s = PodSync::default();
        let done = |u: &str| u == "done";
        let now = Instant::now();
        let pods = revs(&[("run", 1), ("done", 2)]);
        s.plan(&seen(&pods, now, &done));
        let early = now + RESYNC - Duration::from_millis(1);
        assert_eq!(s.plan(&seen(&pods, early, &done)), Plan::default());
        let later = now + RESYNC;
        assert_eq!(s.plan(&seen(&pods, later, &done)).trigger, names(&["run"]));
        // Synced now: not due again until another RESYNC.
        assert_eq!(s.plan(&seen(&pods, later, &done)), Plan::default());
        // A finished pod's object change still triggers it.
        let pods = revs(&[("run", 1), ("done", 9)]);
        assert_eq!(s.plan(&seen(&pods, later, &done)).trigger, names(&["done"]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_listing_round_triggers_sandboxes_and_workers_without_a_pod() {
        let mut s = PodSync::default();
        let never = |_: &str| false;
        let now = Instant::now();
        assert!(s.list_due(false, now), "the first round lists");
        let pods = revs(&[("a", 1)]);
        let with_sandbox: HashSet<String> = ["a", "gone"].map(String::from).into();
        let workers = names(&["a", "ended"]);
        let mut x = seen(&pods, now, &never);
        x.with_sandbox = Some(&with_sandbox);
        x.workers = &workers;
        assert_eq!(s.plan(&x).trigger, names(&["a", "ended", "gone"]));
        assert!(!s.list_due(false, now + Duration::from_secs(1)));
        assert!(
            s.list_due(true, now + Duration::from_secs(1)),
            "a pod is being deleted"
        );
        assert!(s.list_due(false, now + RESYNC));
    }

    #[test]
    fn unchanged_pods_are_shared_not_copied() {
        let pod = |uid: &str| {
            let mut p = Pod::default();
            p.metadata.uid = Some(uid.to_owned());
            p
        };
        let (a, b) = (pod("a"), pod("b"));
        let mut s = PodSync::default();
        let (first, _) = s.pods([(&a, 1), (&b, 2)].into_iter());
        let (second, revs) = s.pods([(&a, 1), (&b, 3)].into_iter());
        assert!(Arc::ptr_eq(&first["a"], &second["a"]));
        assert!(!Arc::ptr_eq(&first["b"], &second["b"]));
        assert_eq!(revs, super::tests::revs(&[("a", 1), ("b", 3)]));
    }
}
