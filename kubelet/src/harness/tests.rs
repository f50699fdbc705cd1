//! The harness on tokio's paused clock: when passes happen, to the millisecond.

use std::sync::Mutex;

use super::*;

/// What the test reconciler does on each pass of a key.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Plan {
    Ok(Action),
    Fail,
    /// Takes this long, then succeeds.
    Slow(Duration),
}

#[derive(Debug, thiserror::Error)]
#[error("planned failure")]
struct Planned;

#[derive(Default)]
struct Recorder {
    t0: Mutex<Option<Instant>>,
    plans: Mutex<HashMap<String, Vec<Plan>>>,
    /// (key, millis since start, pass number of that key's state).
    passes: Mutex<Vec<(String, u128, u32)>>,
    inits: Mutex<Vec<String>>,
}

impl Recorder {
    fn plan(&self, key: &str, plans: &[Plan]) {
        self.plans
            .lock()
            .unwrap()
            .insert(key.into(), plans.to_vec());
    }

    fn start(&self) {
        *self.t0.lock().unwrap() = Some(Instant::now());
    }

    fn passes_of(&self, key: &str) -> Vec<u128> {
        let p = self.passes.lock().unwrap();
        p.iter().filter(|x| x.0 == key).map(|x| x.1).collect()
    }
}

#[async_trait::async_trait]
impl Reconciler for Recorder {
    type Key = String;
    type State = u32;
    type Handle = String;
    type Error = Planned;

    fn init(&self, key: &String, _wake: Wake) -> (u32, String) {
        self.inits.lock().unwrap().push(key.clone());
        (0, format!("handle of {key}"))
    }

    async fn reconcile(&self, key: &String, state: &mut u32) -> Result<Action, Planned> {
        *state += 1;
        let t0 = self.t0.lock().unwrap().expect("started");
        let ms = Instant::now().duration_since(t0).as_millis();
        self.passes.lock().unwrap().push((key.clone(), ms, *state));
        let plan = {
            let mut plans = self.plans.lock().unwrap();
            let list = plans.entry(key.clone()).or_default();
            if list.len() > 1 {
                list.remove(0)
            } else {
                list.first()
                    .copied()
                    .unwrap_or(Plan::Ok(Action::AwaitChange))
            }
        };
        match plan {
            Plan::Ok(a) => Ok(a),
            Plan::Fail => Err(Planned),
            Plan::Slow(d) => {
                tokio::time::sleep(d).await;
                Ok(Action::AwaitChange)
            }
        }
    }
}

fn setup() -> (Arc<Recorder>, Arc<Controller<Recorder>>) {
    let r = Arc::new(Recorder::default());
    r.start();
    let c = Controller::new(r.clone(), RetryPolicy::default());
    (r, c)
}

async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn triggers_during_a_pass_coalesce_into_one_more_pass() {
    let (r, c) = setup();
    r.plan(
        "a",
        &[
            Plan::Slow(Duration::from_secs(5)),
            Plan::Ok(Action::AwaitChange),
        ],
    );
    let key = "a".to_string();
    c.trigger(&key);
    settle().await;
    for _ in 0..10 {
        c.trigger(&key);
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        r.passes_of("a"),
        [0, 5000],
        "one pass, then exactly one more"
    );
    assert_eq!(r.inits.lock().unwrap().len(), 1, "one worker");
}

#[tokio::test(start_paused = true)]
async fn requeue_after_makes_a_pass_at_that_time_unless_triggered_first() {
    let (r, c) = setup();
    let key = "a".to_string();
    r.plan("a", &[Plan::Ok(Action::Requeue(Duration::from_secs(10)))]);
    c.trigger(&key);
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(r.passes_of("a"), [0, 10_000, 20_000]);
    tokio::time::sleep(Duration::from_secs(2)).await; // t = 27
    c.trigger(&key);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        r.passes_of("a"),
        [0, 10_000, 20_000, 27_000],
        "the trigger moved it"
    );
}

#[tokio::test(start_paused = true)]
async fn failures_back_off_doubling_and_a_success_resets() {
    let (r, c) = setup();
    let key = "a".to_string();
    r.plan(
        "a",
        &[
            Plan::Fail,
            Plan::Fail,
            Plan::Fail,
            Plan::Ok(Action::Requeue(Duration::from_secs(100))),
            Plan::Fail,
            Plan::Ok(Action::AwaitChange),
        ],
    );
    c.trigger(&key);
    tokio::time::sleep(Duration::from_secs(200)).await;
    // Fails at 0, 1, 3; succeeds at 7; fails at 107 (back-off starts again at 1 s); 108.
    assert_eq!(r.passes_of("a"), [0, 1000, 3000, 7000, 107_000, 108_000]);
    assert_eq!(
        RetryPolicy::default().delay(30),
        Duration::from_secs(60),
        "capped"
    );
}

#[tokio::test(start_paused = true)]
async fn a_slow_key_never_delays_another() {
    let (r, c) = setup();
    r.plan("slow", &[Plan::Slow(Duration::from_secs(30))]);
    c.trigger(&"slow".to_string());
    settle().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.trigger(&"fast".to_string());
    settle().await;
    assert_eq!(r.passes_of("fast"), [1000]);
    assert_eq!(c.handle(&"fast".into()).as_deref(), Some("handle of fast"));
}

#[tokio::test(start_paused = true)]
async fn done_ends_the_worker_and_its_state_unless_triggered_meanwhile() {
    let (r, c) = setup();
    let key = "a".to_string();
    r.plan("a", &[Plan::Ok(Action::Done)]);
    c.trigger(&key);
    settle().await;
    assert!(c.keys().is_empty(), "the worker ended");
    assert!(!c.wake_if_running(&key));
    c.trigger(&key);
    settle().await;
    assert_eq!(
        r.inits.lock().unwrap().len(),
        2,
        "a new worker, fresh state"
    );
    let states: Vec<u32> = r.passes.lock().unwrap().iter().map(|p| p.2).collect();
    assert_eq!(states, [1, 1]);

    // A trigger during the final pass keeps the worker (and its state).
    r.plan(
        "b",
        &[
            Plan::Slow(Duration::from_secs(5)),
            Plan::Ok(Action::AwaitChange),
        ],
    );
    let b = "b".to_string();
    c.trigger(&b);
    settle().await;
    c.trigger(&b);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(c.keys().contains(&b));
    assert_eq!(r.passes_of("b").len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_wake_from_the_objects_own_tasks_makes_a_pass() {
    #[derive(Default)]
    struct Waker {
        wake: Mutex<Option<Wake>>,
        passes: Mutex<u32>,
    }
    #[async_trait::async_trait]
    impl Reconciler for Waker {
        type Key = String;
        type State = ();
        type Handle = ();
        type Error = Planned;
        fn init(&self, _key: &String, wake: Wake) -> ((), ()) {
            *self.wake.lock().unwrap() = Some(wake);
            ((), ())
        }
        async fn reconcile(&self, _key: &String, _s: &mut ()) -> Result<Action, Planned> {
            *self.passes.lock().unwrap() += 1;
            Ok(Action::AwaitChange)
        }
    }
    let r = Arc::new(Waker::default());
    let c = Controller::new(r.clone(), RetryPolicy::default());
    c.trigger(&"a".to_string());
    settle().await;
    assert_eq!(*r.passes.lock().unwrap(), 1);
    let w = r.wake.lock().unwrap().clone().unwrap();
    w.wake();
    w.wake();
    settle().await;
    assert_eq!(*r.passes.lock().unwrap(), 2);
}

#[tokio::test(start_paused = true)]
async fn depth_counts_the_workers_woken_and_not_yet_in_their_pass() {
    let (r, c) = setup();
    r.plan(
        "a",
        &[
            Plan::Slow(Duration::from_secs(5)),
            Plan::Ok(Action::AwaitChange),
        ],
    );
    r.plan("b", &[Plan::Ok(Action::AwaitChange)]);
    let (a, b) = ("a".to_string(), "b".to_string());
    c.trigger(&a);
    c.trigger(&b);
    assert_eq!(c.depth(), 2, "both woken, neither started");
    settle().await;
    assert_eq!(c.depth(), 0, "a in its slow pass, b done and waiting");
    c.trigger(&a);
    c.trigger(&a);
    assert_eq!(
        c.depth(),
        1,
        "a woken again during its pass: one more pass queued"
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(c.depth(), 0);
    assert_eq!(r.passes_of("a").len(), 2);
}
