//! Probes, lifecycle hooks, grace periods, replacement, admission, configuration errors and
//! status, on the same fake runtime and paused clock as the parent module.

use super::*;

// ---- probes ---------------------------------------------------------------------------

fn probed(probe: &str, policy: &str) -> Pod {
    pod(&format!(
        "  restartPolicy: {policy}\n  containers:\n  - name: app\n    image: 'img:1'\n    {probe}\n"
    ))
}

#[tokio::test(start_paused = true)]
async fn liveness_kills_after_failure_threshold_failures_in_a_row() {
    let mut n = Node::new(probed(
        "livenessProbe: {exec: {command: [alive]}, periodSeconds: 10, failureThreshold: 3}",
        "Always",
    ));
    n.fake.script_exec("alive", 1, "dead", Duration::ZERO);
    n.pass().await;
    tokio::time::sleep(secs(15)).await;
    assert!(n.running("app"), "two failures are not enough");
    tokio::time::sleep(secs(10)).await;
    assert!(!n.running("app"), "the third kills it");
    assert_eq!(n.fake.count("exec app#0 alive"), 3);
    assert!(n.has_event("Unhealthy", "Liveness probe failed: dead"));
    assert!(n.has_event(
        "Killing",
        "Container app failed liveness probe, will be restarted"
    ));
    assert_eq!(
        n.fake.count("stop app#0 30"),
        1,
        "with the pod's grace period"
    );
    n.pass().await;
    assert!(n.running("app"), "and the policy restarts it");
    // Each run counted for the metrics (the kubelet's prober_probe_total).
    assert_eq!(
        n.state.shared.probe_results(),
        vec![(("app".to_owned(), "Liveness", "failed"), 3)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_success_between_failures_resets_the_count() {
    let mut n = Node::new(probed(
        "livenessProbe: {exec: {command: [alive]}, periodSeconds: 10, failureThreshold: 2}",
        "Always",
    ));
    n.fake.script_exec("alive", 1, "dead", Duration::ZERO);
    n.pass().await;
    tokio::time::sleep(secs(5)).await; // failure at 0
    n.fake.script_exec("alive", 0, "", Duration::ZERO);
    tokio::time::sleep(secs(10)).await; // success at 10
    n.fake.script_exec("alive", 1, "dead", Duration::ZERO);
    tokio::time::sleep(secs(10)).await; // failure at 20
    assert!(n.running("app"));
    tokio::time::sleep(secs(10)).await; // failure at 30: two in a row
    assert!(!n.running("app"));
}

#[tokio::test(start_paused = true)]
async fn a_probes_own_grace_period_wins_and_never_pods_are_not_restarted() {
    let mut n = Node::new(probed(
        "livenessProbe: {exec: {command: [alive]}, failureThreshold: 1, terminationGracePeriodSeconds: 5}",
        "Never",
    ));
    n.fake.script_exec("alive", 1, "", Duration::ZERO);
    n.pass().await;
    tokio::time::sleep(secs(1)).await;
    assert_eq!(n.fake.count("stop app#0 5"), 1, "{:?}", n.fake.calls());
    assert!(n.has_event("Killing", "Container app failed liveness probe"));
    assert!(!n
        .events()
        .iter()
        .any(|(_, m)| m.contains("will be restarted")));
    n.pass().await;
    assert_eq!(n.attempts("app"), 1);
}

#[tokio::test(start_paused = true)]
async fn readiness_follows_its_thresholds() {
    let mut n = Node::new(probed(
        "readinessProbe: {exec: {command: [ready]}, periodSeconds: 10, successThreshold: 2, failureThreshold: 2}",
        "Always",
    ));
    let ready = |s: &PodStatus| s.container_statuses.as_ref().unwrap()[0].ready;
    n.pass().await;
    assert!(
        !ready(&n.status().await),
        "not ready before its first results"
    );
    tokio::time::sleep(secs(5)).await;
    assert!(!ready(&n.status().await), "one success is not two");
    tokio::time::sleep(secs(10)).await;
    let s = n.status().await;
    assert!(ready(&s));
    assert!(s
        .conditions
        .unwrap()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True"));
    n.fake.script_exec("ready", 1, "busy", Duration::ZERO);
    tokio::time::sleep(secs(10)).await;
    assert!(ready(&n.status().await), "one failure is not two");
    tokio::time::sleep(secs(10)).await;
    assert!(!ready(&n.status().await));
    assert!(n.running("app"), "readiness never kills");
    assert_eq!(
        n.state.shared.probe_results(),
        vec![
            (("app".to_owned(), "Readiness", "failed"), 2),
            (("app".to_owned(), "Readiness", "successful"), 2),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn an_exec_probe_that_outlives_its_timeout_fails() {
    let mut n = Node::new(probed(
        "livenessProbe: {exec: {command: [slow]}, timeoutSeconds: 2, failureThreshold: 1}",
        "Always",
    ));
    n.fake.script_exec("slow", 0, "", secs(5));
    n.pass().await;
    tokio::time::sleep(secs(3)).await;
    assert!(n.has_event(
        "Unhealthy",
        "Liveness probe failed: command \"slow\" timed out"
    ));
    assert!(!n.running("app"));
}

#[tokio::test(start_paused = true)]
async fn liveness_waits_for_the_startup_probe() {
    let mut n = Node::new(probed(
        "startupProbe: {exec: {command: [started]}, periodSeconds: 10, failureThreshold: 3}\n    livenessProbe: {exec: {command: [alive]}, periodSeconds: 1}",
        "Always",
    ));
    n.fake.script_exec("started", 1, "", Duration::ZERO);
    n.pass().await;
    tokio::time::sleep(secs(15)).await;
    assert_eq!(n.fake.count("exec app#0 alive"), 0);
    let st = &n.status().await.container_statuses.unwrap()[0];
    assert_eq!(st.started, Some(false));
    tokio::time::sleep(secs(10)).await;
    assert!(n.has_event("Killing", "Container app failed startup probe"));
}

// ---- lifecycle hooks and grace periods ------------------------------------------------

fn hooked(lifecycle: &str, grace: i64) -> Pod {
    pod(&format!(
        "  terminationGracePeriodSeconds: {grace}\n  containers:\n  - name: app\n    image: 'img:1'\n    lifecycle: {lifecycle}\n"
    ))
}

#[tokio::test(start_paused = true)]
async fn a_failed_post_start_hook_kills_the_container() {
    let mut n = Node::new(hooked("{postStart: {exec: {command: [hook]}}}", 30));
    n.fake.script_exec("hook", 7, "", Duration::ZERO);
    n.pass().await;
    assert!(n.has_event(
        "FailedPostStartHook",
        "PostStart hook of app failed: command exited with 7"
    ));
    assert_eq!(n.fake.count("stop app#0 30"), 1);
    assert!(!n.has_event("Started", ""));
    n.pass().await;
    assert_eq!(n.attempt("app"), 1, "then the policy decides");
}

#[tokio::test(start_paused = true)]
async fn a_post_start_hook_is_given_up_after_30_seconds() {
    let mut n = Node::new(hooked("{postStart: {exec: {command: [hook]}}}", 30));
    n.fake.script_exec("hook", 0, "", secs(3600));
    let t = Instant::now();
    n.pass().await;
    assert_eq!(t.elapsed(), secs(30));
    assert!(n.has_event("FailedPostStartHook", "PostStart hook of app failed"));
}

#[tokio::test(start_paused = true)]
async fn a_post_start_hook_holds_the_running_state() {
    let mut n = Node::new(hooked("{postStart: {sleep: {seconds: 5}}}", 30));
    let t = Instant::now();
    n.pass().await;
    assert_eq!(t.elapsed(), secs(5), "the pass waits for the hook");
    assert!(n.has_event("Started", "Started container app"));
    let st = &n.status().await.container_statuses.unwrap()[0];
    assert!(st.state.as_ref().unwrap().running.is_some());
}

#[tokio::test(start_paused = true)]
async fn a_container_with_a_post_start_hook_is_not_running_while_its_start_returns() {
    let mut n = Node::new(hooked("{postStart: {sleep: {seconds: 5}}}", 30));
    n.fake.slow_starts(secs(1));
    let (fake, pod, shared) = (n.fake.clone(), n.pod.clone(), n.state.shared.clone());
    let during = async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(fake.count("start app#0"), 1, "the runtime runs it");
        pod_status(&*fake, &pod, Some(&shared)).await
    };
    let (_, st) = tokio::join!(n.pass(), during);
    let st = &st.container_statuses.unwrap()[0];
    let waiting = st.state.as_ref().unwrap().waiting.as_ref();
    assert_eq!(
        waiting.and_then(|w| w.message.as_deref()),
        Some("PostStart hook running")
    );
    assert_eq!(st.started, Some(false));
}

#[tokio::test(start_paused = true)]
async fn pre_stop_runs_within_the_grace_period_then_the_rest_goes_to_the_stop() {
    let mut n = Node::new(hooked("{preStop: {exec: {command: [drain]}}}", 10));
    n.fake.script_exec("drain", 0, "", secs(4));
    n.pass().await;
    let t = Instant::now();
    remove(&mut n.state, &n.env).await.unwrap();
    assert_eq!(t.elapsed(), secs(4));
    assert_eq!(n.fake.count("exec app#0 drain"), 1);
    assert_eq!(n.fake.count("stop app#0 6"), 1, "{:?}", n.fake.calls());
    assert_eq!(n.fake.sandbox_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_pre_stop_hook_is_abandoned_when_the_grace_period_is_spent() {
    let mut n = Node::new(hooked("{preStop: {exec: {command: [drain]}}}", 10));
    n.fake.script_exec("drain", 0, "", secs(3600));
    n.pass().await;
    let t = Instant::now();
    remove(&mut n.state, &n.env).await.unwrap();
    assert_eq!(t.elapsed(), secs(10));
    assert!(n.has_event("FailedPreStopHook", "PreStop hook of app failed"));
    assert_eq!(n.fake.count("stop app#0 2"), 1, "at least 2 s to stop");
}

#[tokio::test(start_paused = true)]
async fn a_zero_grace_period_still_gives_two_seconds() {
    let mut n = Node::new(hooked("{preStop: {exec: {command: [drain]}}}", 0));
    n.pass().await;
    remove(&mut n.state, &n.env).await.unwrap();
    assert_eq!(n.fake.count("exec"), 0, "no preStop without a grace period");
    assert_eq!(n.fake.count("stop app#0 2"), 1);
}

// ---- replacement, admission, configuration errors, status ------------------------------

#[tokio::test(start_paused = true)]
async fn a_changed_spec_replaces_the_sandbox_and_an_unchanged_one_keeps_it() {
    let mut n = Node::new(hooked("{preStop: {sleep: {seconds: 1}}}", 20));
    n.pass().await;
    n.pass().await;
    assert_eq!(n.fake.count("run sandbox"), 1);
    let mut changed = n.pod.clone();
    changed.spec.as_mut().unwrap().containers[0].image = Some("img:1".into());
    changed.spec.as_mut().unwrap().containers[0].args = Some(vec!["new".into()]);
    n.pod = changed;
    n.pass().await;
    assert!(n.has_event(
        "Killing",
        "Stopping the pod's containers: the pod spec changed"
    ));
    let calls = n.fake.calls();
    let at = |c: &str| calls.iter().position(|x| x.starts_with(c)).unwrap();
    assert!(at("stop app#0 19") < at("remove sandbox"), "{calls:?}");
    assert!(at("remove sandbox") < calls.iter().rposition(|x| x == "run sandbox").unwrap());
    assert_eq!(n.fake.sandbox_count(), 1);
    assert!(n.running("app"));
}

#[tokio::test(start_paused = true)]
async fn a_forbidden_sysctl_fails_the_pod_at_admission() {
    let mut n = Node::new(pod(
        "  securityContext: {sysctls: [{name: kernel.msgmax, value: '1'}]}\n  containers:\n  - {name: app, image: 'img:1'}\n",
    ));
    n.pass().await;
    assert_eq!(n.fake.sandbox_count(), 0);
    let s = n.status().await;
    assert_eq!(phase(&s), "Failed");
    assert_eq!(s.reason.as_deref(), Some("SysctlForbidden"));
    assert!(n.has_event("SysctlForbidden", "kernel.msgmax"));
}

#[tokio::test(start_paused = true)]
async fn a_missing_config_map_is_a_config_error_until_it_appears() {
    let mut n = Node::new(pod(
        "  containers:\n  - name: app\n    image: 'img:1'\n    env: [{name: X, valueFrom: {configMapKeyRef: {name: cm, key: k}}}]\n",
    ));
    n.pass().await;
    assert_eq!(
        n.reason("app").as_deref(),
        Some("CreateContainerConfigError")
    );
    assert!(n.has_event("Failed", "Error: "));
    assert_eq!(n.attempts("app"), 0);
    Arc::get_mut(&mut n.world.snap).unwrap().config_maps.insert(
        ("default".into(), "cm".into()),
        [("k".to_string(), b"v".to_vec())].into(),
    );
    n.pass().await;
    assert!(n.running("app"));
    assert_eq!(n.reason("app"), None);
}

#[tokio::test(start_paused = true)]
async fn a_missing_config_map_volume_is_one_failed_mount_event() {
    let mut n = Node::new(pod(
        "  containers:\n  - {name: app, image: 'img:1'}\n  volumes:\n  - {name: v, configMap: {name: absent}}\n",
    ));
    for _ in 0..5 {
        n.pass().await;
    }
    let mounts: Vec<(String, String)> = n
        .events()
        .into_iter()
        .filter(|(r, _)| r == "FailedMount")
        .collect();
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    assert!(
        mounts[0].1.contains("configmap default/absent not found"),
        "{mounts:?}"
    );
    assert_eq!(n.attempts("app"), 0);
}

#[tokio::test(start_paused = true)]
async fn run_as_non_root_refuses_user_zero() {
    let mut n = Node::new(pod(
        "  securityContext: {runAsNonRoot: true, runAsUser: 0}\n  containers:\n  - {name: app, image: 'img:1'}\n",
    ));
    n.pass().await;
    let (reason, message) = n.waiting("app").unwrap();
    assert_eq!(reason, "CreateContainerConfigError");
    assert!(
        message.contains("runAsUser breaks non-root policy"),
        "{message}"
    );
    assert_eq!(n.attempts("app"), 0);
}

#[tokio::test(start_paused = true)]
async fn deleting_a_pod_tears_down_its_sandbox_and_containers() {
    let mut n = Node::new(with_sidecars("Always", false));
    for _ in 0..3 {
        n.pass().await;
    }
    remove(&mut n.state, &n.env).await.unwrap();
    let stops: Vec<String> = n
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("stop"))
        .collect();
    assert_eq!(stops[0], "stop app#0 30", "the app first");
    assert_eq!(
        &stops[1..],
        ["stop s2#0 30", "stop s1#0 30", "stop sandbox"]
    );
    assert_eq!(n.fake.sandbox_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn events_are_bounded_and_repeats_replace_each_other() {
    let n = Node::new(simple("Always"));
    for i in 0..40 {
        n.state.shared.event(false, "Pulled", format!("event {i}"));
    }
    n.state.shared.event(true, "Unhealthy", "same".into());
    n.state.shared.event(true, "Unhealthy", "same".into());
    let ev = n.events();
    assert_eq!(ev.len(), EVENTS_KEPT);
    assert_eq!(ev.iter().filter(|(_, m)| m == "same").count(), 1);
    assert_eq!(ev.last().unwrap().1, "same");
}
