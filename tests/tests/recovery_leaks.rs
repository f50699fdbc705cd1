//! What a crash of the daemon in the middle of creating a pod leaves must not outlive the next
//! start: a pod init (the PID 1 of a pod-wide PID namespace) started for a pod whose sandbox
//! was never recorded is ended, while the pod init of a recorded pod is kept. It must not even
//! wait for that start: a pod init is tied to the daemon until its sandbox record is saved, and
//! ends by itself when the daemon dies before.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use kinglet_proto::v1;
use kinglet_tests::*;

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// Pod inits of this daemon's run root, by their command line.
fn pod_inits(d: &Daemon) -> Vec<u32> {
    kinglet_netns::find_pod_inits(&d.run_root.join("pods"))
        .into_iter()
        .map(|(pid, _, _)| pid)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_init_without_a_sandbox_record_is_ended_at_start() {
    let mut d = Daemon::start().await;
    let mut rt = d.runtime().await;
    let cfg = with_pod_pid_namespace(pod_config("pidshare", &d.dir.path().join("logs")));
    let pod = run_pod(&mut rt, &cfg).await;
    let kept = pod_inits(&d);
    assert_eq!(kept.len(), 1, "the recorded pod's init: {kept:?}");

    // What a crash between starting the pod init and saving the sandbox record leaves: a pod
    // init whose pod has no record (the daemon's own helper, as the sandbox code runs it).
    d.kill9();
    let pin_dir = d.run_root.join("pods").join("crashed-pod").join("ns");
    std::fs::create_dir_all(&pin_dir).unwrap();
    let pin = pin_dir.join("pid");
    let orphan = kinglet_netns::spawn_pod_init(&kinglet_bin(), &pin).expect("kinglet pod-init");
    assert!(alive(orphan));
    assert!(pod_inits(&d).contains(&orphan));

    d.spawn().await;
    wait_for(
        "the orphan pod init to end",
        Duration::from_secs(10),
        || !alive(orphan),
    );
    assert!(!pin_dir.exists(), "the leftover directory is removed");
    assert_eq!(pod_inits(&d), kept, "the recorded pod keeps its init");
    assert!(d.log().contains("ended the pod init of a pod that is gone"));

    let mut rt = d.runtime().await;
    remove_pod(&mut rt, &pod).await;
    assert!(pod_inits(&d).is_empty());
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_init_ends_with_a_crash_before_its_record_even_without_a_restart() {
    require_root();
    let mut d = Daemon::start().await;
    d.kill9();
    let logs = d.dir.path().join("logs");
    // Every crash point between starting the pod init and saving the sandbox record.
    for point in [
        "sandbox.after-pod-init",
        "sandbox.after-shm",
        "sandbox.after-cgroup",
    ] {
        d.start_armed(point).await;
        let mut rt = d.runtime().await;
        let cfg = with_pod_pid_namespace(pod_config("tied", &logs));
        let res = rt
            .run_pod_sandbox(v1::RunPodSandboxRequest {
                config: Some(cfg),
                ..Default::default()
            })
            .await;
        // A daemon built without crash points (release) answers: this then fails.
        assert!(
            res.is_err(),
            "{point} never reached: RunPodSandbox answered {res:?}"
        );
        let st = d.child().expect("started").wait().expect("wait daemon");
        assert_eq!(st.signal(), Some(libc::SIGABRT), "{point}: {st}");
        // The daemon stays down: the pod init, started before the crash, ends by itself.
        wait_for(
            &format!("the pod init of a crash at {point} to end without a restart"),
            Duration::from_secs(10),
            || pod_inits(&d).is_empty(),
        );
        // The next start removes what else the crash left.
        d.spawn().await;
        let left: Vec<_> = std::fs::read_dir(d.run_root.join("pods"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "{point}: pod directories left: {left:?}");
        assert!(pod_inits(&d).is_empty());
        d.kill9();
    }

    // Released once recorded: a pod's init outlives a kill -9 of the daemon.
    d.spawn().await;
    let mut rt = d.runtime().await;
    let pod = run_pod(&mut rt, &with_pod_pid_namespace(pod_config("kept", &logs))).await;
    let kept = pod_inits(&d);
    assert_eq!(kept.len(), 1, "{kept:?}");
    d.kill9();
    std::thread::sleep(Duration::from_millis(500));
    assert!(alive(kept[0]), "a recorded pod's init died with the daemon");
    d.spawn().await;
    assert_eq!(pod_inits(&d), kept);
    let mut rt = d.runtime().await;
    remove_pod(&mut rt, &pod).await;
    assert!(pod_inits(&d).is_empty());
    d.shutdown().await;
}
