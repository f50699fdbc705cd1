//! The reconciler harness, in the shape of kube-runtime's `Controller`: a [`Reconciler`] says
//! what one pass over one object does; the [`Controller`] owns the queueing. Per key (a pod
//! uid, later a Deployment's name, ...) it runs one worker task that owns the key's state, so
//! passes over one object never overlap and a slow object never delays another:
//!
//! - **coalesced wake-ups**: any number of [`Controller::trigger`]s (or [`Wake::wake`]s from
//!   the object's own tasks) during a pass make exactly one more pass;
//! - **requeue-after**: [`Action::Requeue`] makes a pass after the given time, unless a
//!   trigger comes first;
//! - **back-off on error**: a failed pass is retried after the reconciler's hint, else after
//!   [`RetryPolicy`]'s delay, doubling with each failure in a row and reset by a success;
//! - **end**: [`Action::Done`] ends the worker and drops its state — unless a trigger came
//!   during that pass, in which case the worker goes on (the object came back).

use std::collections::HashMap;
use std::fmt::Display;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// What a pass asks of its worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Look again after this long, or at the next trigger.
    Requeue(Duration),
    /// Look again at the next trigger.
    AwaitChange,
    /// The object is gone and cleaned up: end the worker, drop its state.
    Done,
}

/// One kind of object's reconciliation.
#[async_trait::async_trait]
pub trait Reconciler: Send + Sync + 'static {
    type Key: Clone + Eq + Hash + Display + Send + Sync + 'static;
    /// What the worker of one key keeps between passes.
    type State: Send + 'static;
    /// What others may read of a key's worker while it runs (e.g. for status).
    type Handle: Clone + Send + Sync + 'static;
    type Error: std::error::Error + Send + Sync + 'static;

    /// The state of a key seen for the first time; `wake` triggers its worker.
    fn init(&self, key: &Self::Key, wake: Wake) -> (Self::State, Self::Handle);

    async fn reconcile(
        &self,
        key: &Self::Key,
        state: &mut Self::State,
    ) -> Result<Action, Self::Error>;

    /// When to retry after `err` (None: the controller's back-off decides).
    fn retry_after(&self, _err: &Self::Error) -> Option<Duration> {
        None
    }
}

/// Back-off of failed passes: `initial`, doubling with each failure in a row, up to `max`.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The delay after the `failures`-th failure in a row (1 = the first).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(20);
        (self.initial * 2u32.pow(doublings)).min(self.max)
    }
}

/// A key's wake-up signal: `dirty` says a wake came since the worker last looked (only the
/// first one notifies, so any number of wakes make one pass).
#[derive(Default)]
struct Signal {
    dirty: AtomicBool,
    notify: Notify,
}

/// Triggers one key's worker (for the tasks that worker starts). Does nothing once the
/// worker has ended (or, for `Wake::default()`, ever: for tests that drive passes).
#[derive(Clone, Default)]
pub struct Wake(Arc<Signal>);

impl Wake {
    pub fn wake(&self) {
        // Only the first wake since the worker last looked needs to reach it.
        if !self.0.dirty.swap(true, Ordering::SeqCst) {
            self.0.notify.notify_one();
        }
    }
}

struct Slot<H> {
    signal: Arc<Signal>,
    task: JoinHandle<()>,
    handle: H,
}

/// Runs a [`Reconciler`]'s workers (see the module docs).
pub struct Controller<R: Reconciler> {
    r: Arc<R>,
    policy: RetryPolicy,
    slots: Mutex<HashMap<R::Key, Slot<R::Handle>>>,
}

impl<R: Reconciler> Controller<R> {
    pub fn new(r: Arc<R>, policy: RetryPolicy) -> Arc<Self> {
        Arc::new(Controller {
            r,
            policy,
            slots: Mutex::default(),
        })
    }

    fn slots(&self) -> MutexGuard<'_, HashMap<R::Key, Slot<R::Handle>>> {
        // Only plain inserts and removes happen under this lock.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Make a pass over `key` soon: wake its worker, or start one.
    pub fn trigger(self: &Arc<Self>, key: &R::Key) {
        let mut slots = self.slots();
        match slots.get(key) {
            Some(s) if !s.task.is_finished() => Wake(s.signal.clone()).wake(),
            _ => {
                let signal = Arc::new(Signal::default());
                let (state, handle) = self.r.init(key, Wake(signal.clone()));
                Wake(signal.clone()).wake();
                let task = tokio::spawn(self.clone().work(key.clone(), state, signal.clone()));
                slots.insert(
                    key.clone(),
                    Slot {
                        signal,
                        task,
                        handle,
                    },
                );
            }
        }
    }

    /// Wake `key`'s worker if it has one; false if it has none.
    pub fn wake_if_running(&self, key: &R::Key) -> bool {
        match self.slots().get(key) {
            Some(s) if !s.task.is_finished() => {
                Wake(s.signal.clone()).wake();
                true
            }
            _ => false,
        }
    }

    /// The handle of `key`'s worker, while it runs.
    pub fn handle(&self, key: &R::Key) -> Option<R::Handle> {
        self.slots().get(key).map(|s| s.handle.clone())
    }

    /// The queue depth (client-go's `workqueue_depth`): workers woken and waiting for their
    /// pass to start.
    pub fn depth(&self) -> usize {
        self.slots()
            .values()
            .filter(|s| s.signal.dirty.load(Ordering::SeqCst) && !s.task.is_finished())
            .count()
    }

    /// The keys with a worker.
    pub fn keys(&self) -> Vec<R::Key> {
        self.slots().keys().cloned().collect()
    }

    async fn work(self: Arc<Self>, key: R::Key, mut state: R::State, signal: Arc<Signal>) {
        let mut due: Option<Instant> = None;
        let mut failures = 0u32;
        loop {
            let at = due.unwrap_or_else(Instant::now);
            tokio::select! {
                _ = signal.notify.notified() => {}
                _ = tokio::time::sleep_until(at), if due.is_some() => {}
            }
            signal.dirty.store(false, Ordering::SeqCst);
            kinglet_util::activity::touch();
            due = match self.r.reconcile(&key, &mut state).await {
                Ok(Action::Requeue(after)) => {
                    failures = 0;
                    Some(Instant::now() + after)
                }
                Ok(Action::AwaitChange) => {
                    failures = 0;
                    None
                }
                Ok(Action::Done) => {
                    failures = 0;
                    let mut slots = self.slots();
                    // Triggered during this pass: the object is back, go on.
                    if signal.dirty.load(Ordering::SeqCst) {
                        continue;
                    }
                    slots.remove(&key);
                    return;
                }
                Err(e) => {
                    failures += 1;
                    let after = self
                        .r
                        .retry_after(&e)
                        .unwrap_or_else(|| self.policy.delay(failures));
                    tracing::warn!(key = %key, err = %crate::error::chain(&e), retry_in = ?after, "reconcile failed");
                    Some(Instant::now() + after)
                }
            };
        }
    }
}

#[cfg(test)]
mod tests;
