//! What a crash of the daemon in the middle of creating a pod leaves must not outlive the next
//! start: a pod init (the PID 1 of a pod-wide PID namespace) started for a pod whose sandbox
//! was never recorded is ended, while the pod init of a recorded pod is kept.

use std::time::Duration;

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
