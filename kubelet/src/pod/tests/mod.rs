//! The kubelet's decisions, one pod at a time, against the in-memory runtime ([`Fake`]) on
//! tokio's paused clock: no root, no containers, exact timings.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};

use super::*;
use crate::fake::Fake;
use crate::world::World;

const UID: &str = "uid-1";

fn parse(yaml: &str) -> Pod {
    match kinglet_manifest::parse("test", yaml).unwrap().remove(0) {
        kinglet_manifest::Object::Pod(mut p) => {
            p.metadata.uid = Some(UID.into());
            p.metadata.namespace = Some("default".into());
            *p
        }
        _ => panic!("not a pod"),
    }
}

/// A pod named `p` with `spec` (YAML, indented by two spaces).
fn pod(spec: &str) -> Pod {
    parse(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n{spec}"
    ))
}

/// One app container `app` (image `img:1`) and a restart policy.
fn simple(policy: &str) -> Pod {
    pod(&format!(
        "  restartPolicy: {policy}\n  containers:\n  - {{name: app, image: 'img:1'}}\n"
    ))
}

/// One pod on a node with the fake runtime.
struct Node {
    fake: Arc<Fake>,
    state: PodState,
    env: PodEnv,
    world: World,
    pod: Pod,
    _dir: tempfile::TempDir,
}

impl Node {
    fn new(pod: Pod) -> Node {
        let fake = Arc::new(Fake::default());
        fake.add_image("img:1");
        let dir = tempfile::tempdir().unwrap();
        let env = PodEnv {
            rt: fake.clone(),
            policy: BackoffPolicy::default(),
            pod_logs: dir.path().join("pod-logs"),
            volumes: VolumeRoots {
                run: dir.path().join("run"),
                disk: dir.path().join("disk"),
            },
            node_name: "node".into(),
            host_ip: "192.168.1.5".into(),
            allocatable: crate::downward::Allocatable {
                cpu: 2.0,
                memory: 1e9,
                ephemeral_storage: 1e10,
            },
            sysctls: Arc::new(SysctlAllowlist::new(&[]).unwrap()),
            dns: None,
            book: Arc::new(crate::workers::BackoffBook::new(None, HashMap::new())),
            userns: Arc::new(crate::userns::UsernsManager::open(
                &dir.path().join("userns"),
                "655360:131072".parse(),
            )),
            teardowns: Arc::new(crate::teardowns::Teardowns::new(4, None)),
            wake: Wake::default(),
        };
        Node {
            fake,
            state: PodState::new(UID, HashMap::new()),
            env,
            world: World::default(),
            pod,
            _dir: dir,
        }
    }

    /// Let the tasks the worker started (pulls, probers) run and report, then make one pass.
    async fn pass(&mut self) -> Action {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        reconcile(&self.pod, &self.world, &mut self.state, &self.env)
            .await
            .unwrap()
    }

    /// Passes every `step` for `total` (as the worker's periodic wake-ups would).
    async fn run_for(&mut self, total: Duration, step: Duration) {
        let end = Instant::now() + total;
        while Instant::now() < end {
            self.pass().await;
            tokio::time::sleep(step).await;
        }
    }

    async fn status(&self) -> PodStatus {
        pod_status(&*self.fake, &self.pod, Some(&self.state.shared)).await
    }

    fn waiting(&self, c: &str) -> Option<(String, String)> {
        self.state
            .waiting(c)
            .map(|w| (w.reason.clone(), w.message.clone()))
    }

    fn reason(&self, c: &str) -> Option<String> {
        self.waiting(c).map(|w| w.0)
    }

    fn events(&self) -> Vec<(String, String)> {
        self.state
            .shared
            .events()
            .into_iter()
            .map(|e| (e.reason.to_owned(), e.message))
            .collect()
    }

    fn has_event(&self, reason: &str, message: &str) -> bool {
        self.events()
            .iter()
            .any(|(r, m)| r == reason && m.contains(message))
    }

    fn attempts(&self, c: &str) -> usize {
        self.fake.attempts(c).len()
    }

    /// The newest attempt number of container `c`.
    fn attempt(&self, c: &str) -> u32 {
        self.fake
            .attempts(c)
            .last()
            .and_then(|s| s.metadata.as_ref().map(|m| m.attempt))
            .unwrap_or(0)
    }

    fn running(&self, c: &str) -> bool {
        self.fake
            .attempts(c)
            .last()
            .is_some_and(|s| s.state == v1::ContainerState::ContainerRunning as i32)
    }
}

fn phase(s: &PodStatus) -> &str {
    s.phase.as_deref().unwrap_or("")
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

// ---- restart policy -------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_new_pod_gets_a_sandbox_and_its_container_runs() {
    let mut n = Node::new(simple("Always"));
    assert_eq!(n.pass().await, Action::AwaitChange);
    assert_eq!(n.fake.sandbox_count(), 1);
    assert!(n.running("app"));
    assert_eq!(
        n.fake.calls(),
        ["run sandbox", "create app#0", "start app#0"]
    );
    assert!(n.has_event("SandboxStarted", "Pod sandbox sandbox0000"));
    assert!(n.has_event("Started", "Started container app"));
    let s = n.status().await;
    assert_eq!(phase(&s), "Running");
    assert_eq!(s.pod_ip.as_deref(), Some("10.85.0.9"));
    // A second pass changes nothing.
    n.pass().await;
    assert_eq!(n.fake.calls().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn always_restarts_a_container_that_succeeded() {
    let mut n = Node::new(simple("Always"));
    n.pass().await;
    n.fake.exit("app", 0);
    n.pass().await;
    assert_eq!(n.attempt("app"), 1, "the first restart is at once");
    assert!(n.running("app"));
    assert_eq!(
        n.status().await.container_statuses.unwrap()[0].restart_count,
        1
    );
}

#[tokio::test(start_paused = true)]
async fn on_failure_restarts_failures_only() {
    let mut n = Node::new(simple("OnFailure"));
    n.pass().await;
    n.fake.exit("app", 3);
    n.pass().await;
    assert_eq!(n.attempt("app"), 1, "a failure is restarted");
    n.fake.exit("app", 0);
    n.pass().await;
    tokio::time::sleep(secs(60)).await;
    n.pass().await;
    assert_eq!(n.attempt("app"), 1, "a success is not");
    assert_eq!(phase(&n.status().await), "Succeeded");
}

#[tokio::test(start_paused = true)]
async fn never_leaves_a_failed_container_failed() {
    let mut n = Node::new(simple("Never"));
    n.pass().await;
    n.fake.exit("app", 1);
    n.pass().await;
    n.pass().await;
    assert_eq!(n.attempts("app"), 1);
    let s = n.status().await;
    assert_eq!(phase(&s), "Failed");
    let st = &s.container_statuses.unwrap()[0];
    let term = st.state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(term.exit_code, 1);
}

// ---- CrashLoopBackOff -----------------------------------------------------------------

/// A container that exits as soon as it starts: restarted at once, then after 10 s doubling
/// to the 300 s cap.
#[tokio::test(start_paused = true)]
async fn crash_loop_back_off_is_immediate_then_10s_doubling_to_300s() {
    let mut n = Node::new(simple("Always"));
    n.fake.crash_on_start("app", 1);
    let t0 = Instant::now();
    let mut starts = Vec::new();
    let mut seen = 0;
    while starts.len() < 9 {
        n.pass().await;
        let started = n.fake.count("start app#");
        if started > seen {
            seen = started;
            starts.push(Instant::now().duration_since(t0).as_secs());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let gaps: Vec<u64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps, [0, 10, 20, 40, 80, 160, 300, 300]);
}

#[tokio::test(start_paused = true)]
async fn crash_loop_is_reported_in_the_kubelets_words_and_requeued_for_its_end() {
    let mut n = Node::new(simple("Always"));
    n.fake.crash_on_start("app", 2);
    n.pass().await; // start, crash
    n.pass().await; // restart at once, crash
    let action = n.pass().await; // held back
    assert_eq!(action, Action::Requeue(secs(10)));
    assert_eq!(
        n.waiting("app"),
        Some((
            "CrashLoopBackOff".into(),
            "back-off 10s restarting failed container=app pod=p_default(uid-1)".into()
        ))
    );
    assert!(n.has_event("BackOff", "Back-off restarting failed container app"));
    let s = n.status().await;
    let st = &s.container_statuses.unwrap()[0];
    let w = st.state.as_ref().unwrap().waiting.as_ref().unwrap();
    assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
    let last = st.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(last.exit_code, 2);
}

#[tokio::test(start_paused = true)]
async fn ten_minutes_of_running_resets_the_back_off() {
    let mut n = Node::new(simple("Always"));
    n.fake.crash_on_start("app", 1);
    n.run_for(secs(100), secs(1)).await; // 0, 10, 20, 40: next wait 80 s
    let before = n.attempt("app");
    assert_eq!(before, 4);
    n.fake.stop_crashing("app");
    n.run_for(secs(80), secs(1)).await;
    assert_eq!(n.attempt("app"), 5);
    assert!(n.running("app"));
    tokio::time::sleep(secs(600)).await;
    n.fake.exit("app", 1);
    n.pass().await;
    assert_eq!(
        n.attempt("app"),
        6,
        "restarted at once after a 10-minute run"
    );
    n.fake.exit("app", 1);
    assert_eq!(n.pass().await, Action::Requeue(secs(10)), "then 10 s again");
}

#[tokio::test(start_paused = true)]
async fn a_short_run_keeps_the_back_off() {
    let mut n = Node::new(simple("Always"));
    n.fake.crash_on_start("app", 1);
    n.run_for(secs(35), secs(1)).await; // 0, 10, 20: next wait 40 s
    n.fake.stop_crashing("app");
    n.run_for(secs(50), secs(1)).await;
    assert!(n.running("app"));
    tokio::time::sleep(secs(540)).await; // 9 minutes
    n.fake.exit("app", 1);
    n.pass().await;
    assert_eq!(
        n.attempt("app"),
        5,
        "its wait has passed: restarted at once"
    );
    n.fake.exit("app", 1);
    assert_eq!(n.pass().await, Action::Requeue(secs(160)), "but not reset");
}

#[tokio::test(start_paused = true)]
async fn only_the_previous_run_is_kept() {
    let mut n = Node::new(simple("Always"));
    for _ in 0..4 {
        n.pass().await;
        n.fake.exit("app", 1);
        tokio::time::sleep(secs(400)).await;
    }
    n.pass().await;
    assert_eq!(n.attempt("app"), 4);
    assert_eq!(
        n.attempts("app"),
        2,
        "the running attempt and the one before"
    );
    assert!(n.fake.calls().contains(&"remove app#0".to_string()));
}

#[tokio::test(start_paused = true)]
async fn back_off_saved_by_an_earlier_daemon_is_honoured_and_changes_are_reported() {
    let mut n = Node::new(simple("Always"));
    let saved = Backoff {
        next: secs(40),
        not_before: Some(Instant::now() + secs(30)),
    };
    n.state = PodState::new(UID, [("app".to_string(), saved)].into());
    n.pass().await;
    n.fake.exit("app", 1);
    assert_eq!(n.pass().await, Action::Requeue(secs(30)));
    assert_eq!(n.state.take_backoff(), None, "nothing changed yet");
    tokio::time::sleep(secs(30)).await;
    n.pass().await;
    assert_eq!(n.attempt("app"), 1);
    let b = n
        .env
        .book
        .get(UID)
        .await
        .expect("a restart changes the back-off, written ahead of the restart");
    assert_eq!(b["app"].next, secs(80));
    assert_eq!(n.state.take_backoff(), None, "already written");
}

// ---- image pull policy ----------------------------------------------------------------

fn with_image(image: &str, policy: Option<&str>) -> Pod {
    let p = policy
        .map(|p| format!(", imagePullPolicy: {p}"))
        .unwrap_or_default();
    pod(&format!(
        "  containers:\n  - {{name: app, image: '{image}'{p}}}\n"
    ))
}

#[test]
fn default_pull_policy_follows_the_tag() {
    let c = |image: &str| k8s_openapi::api::core::v1::Container {
        name: "c".into(),
        image: Some(image.into()),
        ..Default::default()
    };
    assert_eq!(container::pull_policy(&c("busybox")), "Always");
    assert_eq!(container::pull_policy(&c("busybox:latest")), "Always");
    assert_eq!(container::pull_policy(&c("reg:5000/busybox")), "Always");
    assert_eq!(container::pull_policy(&c("busybox:1.36")), "IfNotPresent");
    assert_eq!(container::pull_policy(&c("reg:5000/b:2")), "IfNotPresent");
    assert_eq!(
        container::pull_policy(&c("busybox@sha256:abcd")),
        "IfNotPresent"
    );
    let mut explicit = c("busybox:latest");
    explicit.image_pull_policy = Some("Never".into());
    assert_eq!(container::pull_policy(&explicit), "Never");
}

#[tokio::test(start_paused = true)]
async fn if_not_present_uses_a_present_image_without_pulling() {
    let mut n = Node::new(with_image("img:1", None));
    n.pass().await;
    assert!(n.running("app"));
    assert_eq!(n.fake.count("pull"), 0);
}

#[tokio::test(start_paused = true)]
async fn if_not_present_pulls_a_missing_image_in_the_background() {
    let mut n = Node::new(with_image("other:2", None));
    n.pass().await;
    assert_eq!(
        n.waiting("app"),
        Some((
            "ContainerCreating".into(),
            "Pulling image \"other:2\"".into()
        ))
    );
    assert_eq!(phase(&n.status().await), "Pending");
    n.pass().await;
    assert_eq!(n.fake.count("pull other:2"), 1, "one pull at a time");
    assert!(n.running("app"));
    assert!(n.has_event("Pulling", "Pulling image \"other:2\""));
    assert!(n.has_event("Pulled", "Successfully pulled image \"other:2\""));
}

#[tokio::test(start_paused = true)]
async fn latest_is_pulled_even_when_present_once_per_container() {
    let mut n = Node::new(with_image("img:latest", None));
    n.fake.add_image("img:latest");
    n.pass().await;
    assert!(!n.running("app"), "pulled first");
    n.pass().await;
    assert!(n.running("app"));
    n.fake.exit("app", 1);
    n.pass().await;
    assert_eq!(n.attempt("app"), 1);
    assert_eq!(n.fake.count("pull"), 1, "not again for a restart");
}

#[tokio::test(start_paused = true)]
async fn never_refuses_a_missing_image() {
    let mut n = Node::new(with_image("missing:1", Some("Never")));
    n.pass().await;
    assert_eq!(
        n.waiting("app"),
        Some((
            "ErrImageNeverPull".into(),
            "Container image \"missing:1\" is not present with pull policy of Never".into()
        ))
    );
    assert_eq!(n.fake.count("pull"), 0);
    assert_eq!(n.attempts("app"), 0);
    n.fake.add_image("missing:1");
    n.pass().await;
    assert!(n.running("app"), "used once it is there");
}

#[tokio::test(start_paused = true)]
async fn failed_pulls_back_off_and_are_retried() {
    let mut n = Node::new(with_image("bad:1", None));
    n.fake.fail_pulls("bad:1", "manifest unknown");
    n.pass().await;
    // The failed pull's report: ErrImagePull, then (this same pass) ImagePullBackOff.
    assert_eq!(n.pass().await, Action::Requeue(secs(10)));
    assert!(n.has_event("Failed", "Failed to pull image \"bad:1\": manifest unknown"));
    assert_eq!(
        n.waiting("app"),
        Some((
            "ImagePullBackOff".into(),
            "Back-off pulling image \"bad:1\": manifest unknown".into()
        ))
    );
    n.pass().await;
    assert_eq!(n.fake.count("pull"), 1);
    n.fake.heal_pulls("bad:1");
    tokio::time::sleep(secs(10)).await;
    n.pass().await;
    n.pass().await;
    assert_eq!(n.fake.count("pull"), 2);
    assert!(n.running("app"));
}

#[tokio::test(start_paused = true)]
async fn the_back_off_message_does_not_grow_over_minutes_of_failed_pulls() {
    let mut n = Node::new(with_image("bad:1", None));
    n.fake.fail_pulls("bad:1", "manifest unknown");
    let want = Some((
        "ImagePullBackOff".to_string(),
        "Back-off pulling image \"bad:1\": manifest unknown".to_string(),
    ));
    // Ten minutes of passes, a few seconds apart: retries after each back-off, and the
    // passes in between re-state the same waiting message.
    for _ in 0..200 {
        n.pass().await;
        tokio::time::sleep(secs(3)).await;
        let w = n.waiting("app");
        assert!(
            w == want || w.as_ref().is_some_and(|(r, _)| r != "ImagePullBackOff"),
            "{w:?}"
        );
    }
    n.pass().await;
    assert_eq!(n.waiting("app"), want);
    assert!(
        n.fake.count("pull") >= 3,
        "retried: {}",
        n.fake.count("pull")
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_pull_of_a_local_latest_image_says_how_to_use_it() {
    let mut n = Node::new(with_image("local:latest", None));
    n.fake.add_image("local:latest");
    n.fake.fail_pulls("local:latest", "registry unreachable");
    n.pass().await;
    n.pass().await;
    let (reason, msg) = n.waiting("app").expect("waiting");
    assert_eq!(reason, "ImagePullBackOff");
    assert!(msg.starts_with("Back-off pulling image \"local:latest\": registry unreachable (image \"local:latest\" is present locally"), "{msg}");
    assert!(
        msg.contains("imagePullPolicy: IfNotPresent or Never"),
        "{msg}"
    );
    assert!(n.has_event("Failed", "imagePullPolicy defaults to Always"));
    // An explicit Always is what the user asked for: no hint.
    let mut n = Node::new(with_image("local:latest", Some("Always")));
    n.fake.add_image("local:latest");
    n.fake.fail_pulls("local:latest", "registry unreachable");
    n.pass().await;
    n.pass().await;
    let (_, msg) = n.waiting("app").expect("waiting");
    assert!(!msg.contains("present locally"), "{msg}");
}

#[tokio::test(start_paused = true)]
async fn the_batched_status_of_get_pods_is_the_per_pod_status() {
    let mut n = Node::new(pod(
        "  containers:\n  - {name: a, image: 'img:1'}\n  - {name: b, image: 'bad:1'}\n",
    ));
    n.fake.fail_pulls("bad:1", "manifest unknown");
    for _ in 0..4 {
        n.pass().await;
    }
    let view = crate::status_batch::RuntimeView::take(&*n.fake)
        .await
        .expect("view");
    let batched = view
        .pod_status(&*n.fake, &n.pod, n.state.shared.snapshot())
        .await;
    let single = n.status().await;
    assert!(single.pod_ip.is_some(), "{single:?}");
    assert_eq!(
        serde_json::to_value(&batched).unwrap(),
        serde_json::to_value(&single).unwrap()
    );
}

// ---- init containers ------------------------------------------------------------------

fn with_inits(policy: &str) -> Pod {
    pod(&format!(
        "  restartPolicy: {policy}\n  initContainers:\n  - {{name: one, image: 'img:1'}}\n  - {{name: two, image: 'img:1'}}\n  containers:\n  - {{name: app, image: 'img:1'}}\n"
    ))
}

#[tokio::test(start_paused = true)]
async fn init_containers_run_one_at_a_time_to_success_before_the_app() {
    let mut n = Node::new(with_inits("Always"));
    n.pass().await;
    assert!(n.running("one"));
    assert_eq!(n.attempts("two") + n.attempts("app"), 0);
    n.pass().await;
    assert_eq!(n.attempts("two"), 0, "not before the first succeeded");
    assert_eq!(phase(&n.status().await), "Pending");
    n.fake.exit("one", 0);
    n.pass().await;
    assert!(n.running("two"));
    assert_eq!(n.attempts("app"), 0);
    n.fake.exit("two", 0);
    n.pass().await;
    assert!(n.running("app"));
    assert_eq!(
        n.attempts("one"),
        1,
        "a succeeded init container is not rerun"
    );
    let s = n.status().await;
    assert_eq!(phase(&s), "Running");
    let init = s.conditions.unwrap();
    assert!(init
        .iter()
        .any(|c| c.type_ == "Initialized" && c.status == "True"));
}

#[tokio::test(start_paused = true)]
async fn a_failed_init_container_is_retried_with_back_off_unless_never() {
    let mut n = Node::new(with_inits("Always"));
    n.pass().await;
    n.fake.exit("one", 1);
    n.pass().await;
    assert_eq!(
        n.attempt("one"),
        1,
        "OnFailure for init containers of an Always pod"
    );
    n.fake.exit("one", 1);
    assert_eq!(n.pass().await, Action::Requeue(secs(10)));
    assert_eq!(n.attempts("app"), 0);

    let mut n = Node::new(with_inits("Never"));
    n.pass().await;
    n.fake.exit("one", 1);
    n.pass().await;
    n.pass().await;
    assert_eq!(n.attempts("one"), 1);
    assert_eq!(n.attempts("two") + n.attempts("app"), 0);
    assert_eq!(phase(&n.status().await), "Failed");
}

// ---- native sidecars ------------------------------------------------------------------

fn with_sidecars(policy: &str, startup_probe: bool) -> Pod {
    let probe = if startup_probe {
        ", startupProbe: {exec: {command: [check]}, periodSeconds: 5, failureThreshold: 30}"
    } else {
        ""
    };
    pod(&format!(
        "  restartPolicy: {policy}\n  initContainers:\n  - {{name: s1, image: 'img:1', restartPolicy: Always{probe}}}\n  - {{name: s2, image: 'img:1', restartPolicy: Always}}\n  containers:\n  - {{name: app, image: 'img:1'}}\n"
    ))
}

#[tokio::test(start_paused = true)]
async fn sidecars_start_in_order_and_the_app_waits_for_a_startup_probe() {
    let mut n = Node::new(with_sidecars("Always", true));
    n.fake.script_exec("check", 1, "not yet", Duration::ZERO);
    n.pass().await;
    assert!(n.running("s1"));
    n.run_for(secs(20), secs(1)).await;
    assert_eq!(
        n.attempts("s2") + n.attempts("app"),
        0,
        "held by s1's startup probe"
    );
    assert!(n.has_event("Unhealthy", "Startup probe failed: not yet"));
    n.fake.script_exec("check", 0, "", Duration::ZERO);
    n.run_for(secs(10), secs(1)).await;
    assert!(n.running("s2"));
    assert!(n.running("app"));
    let calls = n.fake.calls();
    let at = |c: &str| calls.iter().position(|x| x == c).unwrap();
    assert!(at("start s1#0") < at("start s2#0") && at("start s2#0") < at("start app#0"));
}

#[tokio::test(start_paused = true)]
async fn a_crashed_sidecar_restarts_even_in_a_never_pod() {
    let mut n = Node::new(with_sidecars("Never", false));
    n.pass().await;
    n.pass().await;
    n.pass().await;
    assert!(n.running("app"));
    n.fake.exit("s2", 1);
    n.pass().await;
    assert_eq!(n.attempt("s2"), 1);
    assert!(n.running("s2"));
}

#[tokio::test(start_paused = true)]
async fn a_finished_pod_stops_its_sidecars_last_first() {
    let mut n = Node::new(with_sidecars("Never", false));
    for _ in 0..3 {
        n.pass().await;
    }
    assert!(n.running("app"));
    n.fake.exit("app", 0);
    n.pass().await;
    let stops: Vec<String> = n
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("stop "))
        .collect();
    // Then, as the kubelet does for a terminal pod, its sandbox (network, address) goes.
    assert_eq!(stops, ["stop s2#0 30", "stop s1#0 30", "stop sandbox"]);
    n.pass().await;
    n.pass().await;
    assert_eq!(n.attempts("s1"), 1, "and they stay stopped");
    assert_eq!(n.attempts("app"), 1, "the stopped sandbox is not replaced");
    assert_eq!(phase(&n.status().await), "Succeeded");
}

mod lifecycle;
mod userns;
