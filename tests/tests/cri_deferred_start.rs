//! CreateContainer prepares, StartContainer launches (as containerd): a created container has
//! no process yet, resources updated before the start are in its cgroup once it runs, and a
//! never-started container stops and is removed cleanly.

use std::time::Duration;

use kinglet_proto::v1;
use kinglet_proto::v1::runtime_service_client::RuntimeServiceClient;
use kinglet_tests::*;
use tonic::transport::Channel;

/// A cgroup file of `pid`'s cgroup (v2: the unified hierarchy; v1: the named controller's).
fn cgroup_file(pid: i32, v1_controller: &str, v1_file: &str, v2_file: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let path = text
        .lines()
        .find_map(|l| {
            let mut it = l.splitn(3, ':');
            let (_, ctrls, p) = (it.next()?, it.next()?, it.next()?);
            let hit = if v2 {
                ctrls.is_empty()
            } else {
                ctrls.split(',').any(|c| c == v1_controller)
            };
            hit.then(|| {
                let sub = if v2 { "" } else { v1_controller };
                let file = if v2 { v2_file } else { v1_file };
                std::path::Path::new("/sys/fs/cgroup")
                    .join(sub)
                    .join(p.trim_start_matches('/'))
                    .join(file)
            })
        })
        .unwrap();
    std::fs::read_to_string(path).unwrap().trim().to_owned()
}

async fn create(
    rt: &mut RuntimeServiceClient<Channel>,
    pod: &str,
    pod_cfg: &v1::PodSandboxConfig,
    cfg: v1::ContainerConfig,
) -> String {
    rt.create_container(v1::CreateContainerRequest {
        pod_sandbox_id: pod.into(),
        config: Some(cfg),
        sandbox_config: Some(pod_cfg.clone()),
    })
    .await
    .expect("CreateContainer")
    .into_inner()
    .container_id
}

#[tokio::test(flavor = "multi_thread")]
async fn created_containers_run_nothing_until_started_and_get_resources_set_meanwhile() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let mut rt = d.runtime().await;
    let pod_cfg = pod_config("deferred", &d.dir.path().join("logs"));
    let pod = run_pod(&mut rt, &pod_cfg).await;

    let id = create(
        &mut rt,
        &pod,
        &pod_cfg,
        sh_container("app", "exec sleep 3600"),
    )
    .await;
    let st = status(&mut rt, &id).await;
    assert_eq!(st.state, v1::ContainerState::ContainerCreated as i32);
    assert_eq!(
        init_pid(&mut rt, &id).await,
        0,
        "no process before StartContainer"
    );
    let listed = rt
        .list_containers(v1::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, v1::ContainerState::ContainerCreated as i32);

    // Resources updated before the start: refused when invalid, else in force once it runs.
    let e = rt
        .update_container_resources(v1::UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(v1::LinuxContainerResources {
                memory_limit_in_bytes: -1,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    rt.update_container_resources(v1::UpdateContainerResourcesRequest {
        container_id: id.clone(),
        linux: Some(v1::LinuxContainerResources {
            memory_limit_in_bytes: 96 << 20,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    rt.start_container(v1::StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();
    let st = status(&mut rt, &id).await;
    assert_eq!(st.state, v1::ContainerState::ContainerRunning as i32);
    let pid = init_pid(&mut rt, &id).await;
    assert!(pid > 0 && std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(
        cgroup_file(pid, "memory", "memory.limit_in_bytes", "memory.max"),
        (96u64 << 20).to_string()
    );
    // A second start is refused: the container is no longer CREATED.
    let e = rt
        .start_container(v1::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e}");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_never_started_container_stops_as_exited_and_is_removed() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let mut rt = d.runtime().await;
    let pod_cfg = pod_config("unstarted", &d.dir.path().join("logs"));
    let pod = run_pod(&mut rt, &pod_cfg).await;
    let id = create(&mut rt, &pod, &pod_cfg, sh_container("idle", "exit 0")).await;
    rt.stop_container(v1::StopContainerRequest {
        container_id: id.clone(),
        timeout: 10,
    })
    .await
    .unwrap();
    let st = wait_exited(&mut rt, &id, Duration::from_secs(5)).await;
    assert_eq!(st.exit_code, 137);
    let e = rt
        .start_container(v1::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e}");
    rt.remove_container(v1::RemoveContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();
    let e = rt
        .container_status(v1::ContainerStatusRequest {
            container_id: id,
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e}");
    d.shutdown().await;
}
