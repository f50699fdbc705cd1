//! Containers outlive the daemon: after `kill -9` and a new start, a running container keeps
//! its process, and one that exited during the outage reports its real exit code.

use std::time::Duration;

use kinglet_proto::v1;
use kinglet_tests::*;

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_and_restart_keeps_containers_and_records_exits() {
    let mut d = Daemon::start().await;
    d.import_test_image().await;
    let mut rt = d.runtime().await;
    let pod_cfg = pod_config("survivor", &d.dir.path().join("logs"));
    let pod = run_pod(&mut rt, &pod_cfg).await;
    let long = run_container(
        &mut rt,
        &pod,
        &pod_cfg,
        sh_container("long", "trap '' TERM; exec sleep 3600"),
    )
    .await;
    let short = run_container(
        &mut rt,
        &pod,
        &pod_cfg,
        sh_container("short", "sleep 2; exit 7"),
    )
    .await;
    let created = {
        let mut c = sh_container("created", "exit 0");
        c.log_path = String::new();
        rt.create_container(v1::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(c),
            sandbox_config: Some(pod_cfg.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id
    };
    let pid = init_pid(&mut rt, &long).await;
    let before = status(&mut rt, &long).await;

    d.kill9();
    tokio::time::sleep(Duration::from_secs(4)).await; // `short` exits while the daemon is down
    d.spawn().await;
    let mut rt = d.runtime().await;

    let after = status(&mut rt, &long).await;
    assert_eq!(after.state, v1::ContainerState::ContainerRunning as i32);
    assert_eq!(after.started_at, before.started_at);
    assert_eq!(init_pid(&mut rt, &long).await, pid);
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "same process still runs"
    );
    let (out, _, code) = exec(&mut rt, &long, &["echo", "still here"]).await;
    assert_eq!((out.as_str(), code), ("still here\n", 0));

    let st = status(&mut rt, &short).await;
    assert_eq!(st.state, v1::ContainerState::ContainerExited as i32);
    assert_eq!((st.exit_code, st.reason.as_str()), (7, "Error"));

    // A created-but-not-started container can still be started after the restart.
    assert_eq!(
        status(&mut rt, &created).await.state,
        v1::ContainerState::ContainerCreated as i32
    );
    rt.start_container(v1::StartContainerRequest {
        container_id: created.clone(),
    })
    .await
    .unwrap();
    let st = wait_exited(&mut rt, &created, Duration::from_secs(20)).await;
    assert_eq!(st.reason, "Completed");

    // Every pod and container is listed again with the same ids.
    let pods = rt
        .list_pod_sandbox(v1::ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0].id, pod);
    let cs = rt
        .list_containers(v1::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(cs.len(), 3);

    // Stop with the default signal: `long` ignores SIGTERM, so SIGKILL follows after 1 s.
    let t = std::time::Instant::now();
    rt.stop_container(v1::StopContainerRequest {
        container_id: long.clone(),
        timeout: 1,
    })
    .await
    .unwrap();
    assert!(t.elapsed() >= Duration::from_millis(900));
    let st = status(&mut rt, &long).await;
    assert_eq!(st.exit_code, 137);
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn leftovers_of_an_interrupted_create_are_cleaned_at_start() {
    let mut d = Daemon::start().await;
    d.kill9();
    // What a crash between "mount the pod's /dev/shm" and "write the record" leaves behind.
    let pod_dir = d.run_root.join("pods").join("deadbeef");
    let shm = pod_dir.join("shm");
    std::fs::create_dir_all(&shm).unwrap();
    nix::mount::mount(
        Some("shm"),
        &shm,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=1m"),
    )
    .unwrap();
    let ctr_dir = d.root.join("containers").join("cafebabe").join("upper");
    std::fs::create_dir_all(&ctr_dir).unwrap();
    assert!(!mounts_under(&d.run_root).is_empty());
    d.spawn().await;
    assert!(
        mounts_under(&d.run_root).is_empty(),
        "left: {:?}",
        mounts_under(&d.run_root)
    );
    assert!(!pod_dir.exists());
    assert!(!d.root.join("containers").join("cafebabe").exists());
    d.shutdown().await;
}
