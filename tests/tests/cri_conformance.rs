//! CRI behaviour that the upstream critest suite checks (scripts/conformance.sh runs it), here
//! with real containers over the CRI socket: a sandbox's default hostname, privileged
//! capabilities bounded by the daemon's own, RunAsGroup without a user refused, and image
//! volumes (read-only, sub-path, image digest in ContainerStatus, unmounted on removal).

use kinglet_proto::v1;
use kinglet_tests::*;

fn with_sc(
    mut c: v1::ContainerConfig,
    sc: v1::LinuxContainerSecurityContext,
) -> v1::ContainerConfig {
    c.linux = Some(v1::LinuxContainerConfig {
        security_context: Some(sc),
        ..Default::default()
    });
    c
}

/// The `CapBnd:` line of a `/proc/<pid>/status` text.
fn cap_bnd(status: &str) -> String {
    status
        .lines()
        .find(|l| l.starts_with("CapBnd:"))
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_hostname_is_the_hosts_and_privileged_holds_the_daemons_capabilities() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let mut rt = d.runtime().await;
    let logs = d.dir.path().join("logs");
    // A pod name longer than a hostname may be, and no hostname: the host's name is used.
    let mut pod_cfg = pod_config(&"long-pod-name-".repeat(6), &logs);
    pod_cfg.hostname.clear();
    let pod = run_pod(&mut rt, &pod_cfg).await;
    let plain = run_container(
        &mut rt,
        &pod,
        &pod_cfg,
        sh_container("plain", "exec sleep 3600"),
    )
    .await;
    let (out, _, code) = exec(&mut rt, &plain, &["hostname"]).await;
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    assert_eq!((out.trim(), code), (host.as_str(), 0));

    // Privileged and add: [ALL]: exactly the daemon's bounding set, whatever the host lacks.
    let daemon_bnd =
        cap_bnd(&std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap());
    let privileged = with_sc(
        sh_container("privileged", "exec sleep 3600"),
        v1::LinuxContainerSecurityContext {
            privileged: true,
            ..Default::default()
        },
    );
    let all = with_sc(
        sh_container("all", "exec sleep 3600"),
        v1::LinuxContainerSecurityContext {
            capabilities: Some(v1::Capability {
                add_capabilities: vec!["ALL".into()],
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    for cfg in [privileged, all] {
        let id = run_container(&mut rt, &pod, &pod_cfg, cfg).await;
        let (out, _, code) = exec(&mut rt, &id, &["cat", "/proc/self/status"]).await;
        assert_eq!(code, 0);
        assert_eq!(cap_bnd(&out), daemon_bnd);
    }

    // A group without a user is refused, as containerd refuses it.
    let group_only = with_sc(
        sh_container("group-only", "exec sleep 3600"),
        v1::LinuxContainerSecurityContext {
            run_as_group: Some(v1::Int64Value { value: 3000 }),
            ..Default::default()
        },
    );
    let e = rt
        .create_container(v1::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(group_only),
            sandbox_config: Some(pod_cfg.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    assert!(e.message().contains("run_as_group"), "{e}");
    d.shutdown().await;
}

fn image_volume(container: &str, image: &str, sub: &str, readonly: bool) -> v1::ContainerConfig {
    let mut c = sh_container(container, "exec sleep 3600");
    c.mounts = vec![v1::Mount {
        container_path: "/mnt/image".into(),
        readonly,
        image: Some(v1::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        image_sub_path: sub.into(),
        ..Default::default()
    }];
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn image_volumes_are_read_only_with_sub_paths_and_report_their_image() {
    let d = Daemon::start().await;
    let image_id = d.import_test_image().await;
    let mut rt = d.runtime().await;
    let logs = d.dir.path().join("logs");
    let pod_cfg = pod_config("imgvol", &logs);
    let pod = run_pod(&mut rt, &pod_cfg).await;

    let whole = run_container(
        &mut rt,
        &pod,
        &pod_cfg,
        image_volume("whole", IMAGE, "", true),
    )
    .await;
    // The image's files, executable, and not writable.
    let (out, _, code) = exec(
        &mut rt,
        &whole,
        &["/mnt/image/bin/busybox", "cat", "/mnt/image/etc/passwd"],
    )
    .await;
    assert_eq!(code, 0);
    assert!(out.starts_with("root:"), "{out}");
    let (_, err, code) = exec(&mut rt, &whole, &["touch", "/mnt/image/written"]).await;
    assert_ne!(code, 0, "an image volume must be read-only");
    assert!(err.contains("Read-only"), "{err}");
    let st = status(&mut rt, &whole).await;
    let m = st
        .mounts
        .iter()
        .find(|m| m.container_path == "/mnt/image")
        .expect("image volume in ContainerStatus mounts");
    let img = m.image.as_ref().expect("mount names its image");
    assert_eq!(
        (img.image.as_str(), img.image_ref.as_str()),
        (IMAGE, image_id.as_str())
    );
    assert!(m.readonly && m.host_path.is_empty());

    // A sub-path: only that directory.
    let sub = run_container(
        &mut rt,
        &pod,
        &pod_cfg,
        image_volume("sub", IMAGE, "etc", true),
    )
    .await;
    let (_, _, code) = exec(&mut rt, &sub, &["test", "-f", "/mnt/image/passwd"]).await;
    assert_eq!(code, 0);
    let (_, _, code) = exec(&mut rt, &sub, &["test", "-e", "/mnt/image/etc"]).await;
    assert_ne!(code, 0);

    // Refused: writable, a missing or escaping sub-path, an image that is not pulled.
    for (name, cfg, field) in [
        ("rw", image_volume("rw", IMAGE, "", false), "readonly"),
        (
            "missing",
            image_volume("missing", IMAGE, "no-such-dir", true),
            "image_sub_path",
        ),
        (
            "escape",
            image_volume("escape", IMAGE, "../..", true),
            "image_sub_path",
        ),
        (
            "absent",
            image_volume("absent", "example.org/absent:1", "", true),
            "image.image",
        ),
    ] {
        let e = rt
            .create_container(v1::CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(cfg),
                sandbox_config: Some(pod_cfg.clone()),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{name}: {e}");
        assert!(e.message().contains(field), "{name}: {e}");
    }

    // Removing the container unmounts its image volume.
    let volumes = d
        .run_root
        .join("containers")
        .join(&whole)
        .join("image-volumes");
    assert!(!mounts_under(&volumes).is_empty(), "image volume mounted");
    rt.stop_container(v1::StopContainerRequest {
        container_id: whole.clone(),
        timeout: 0,
    })
    .await
    .unwrap();
    rt.remove_container(v1::RemoveContainerRequest {
        container_id: whole.clone(),
    })
    .await
    .unwrap();
    assert!(
        mounts_under(&volumes).is_empty(),
        "image volume left mounted"
    );
    // Nothing of the refused creates is left mounted either.
    let all: Vec<String> = all_mounts_under(&d.run_root.join("containers"))
        .into_iter()
        .filter(|m| m.contains("image-volumes"))
        .collect();
    assert_eq!(
        all.len(),
        1,
        "only the sub-path container's volume: {all:?}"
    );
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn status_advertises_what_works_and_recursive_read_only_mounts_hold() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let mut rt = d.runtime().await;
    let st = rt
        .status(v1::StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    let handler = &st.runtime_handlers[0];
    assert_eq!(st.runtime_handlers.len(), 1);
    assert_eq!(handler.name, "");
    let f = handler.features.as_ref().unwrap();
    assert!(f.recursive_read_only_mounts && f.user_namespaces);
    assert!(st.features.as_ref().unwrap().supplemental_groups_policy);

    // A host directory with a tmpfs mounted below it.
    let host = d.dir.path().join("rro-src");
    let sub = host.join("tmpfs");
    std::fs::create_dir_all(&sub).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &sub,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=1m"),
    )
    .unwrap();
    let logs = d.dir.path().join("logs");
    let pod_cfg = pod_config("rro", &logs);
    let pod = run_pod(&mut rt, &pod_cfg).await;
    let with_mount = |name: &str, readonly: bool, rro: bool, propagation: v1::MountPropagation| {
        let mut c = sh_container(name, "exec sleep 3600");
        c.mounts = vec![v1::Mount {
            container_path: "/mnt".into(),
            host_path: host.display().to_string(),
            readonly,
            recursive_read_only: rro,
            propagation: propagation as i32,
            ..Default::default()
        }];
        c
    };
    let private = v1::MountPropagation::PropagationPrivate;
    // Plain read-only: the submount stays writable; recursive: it is read-only too.
    let ro = run_container(
        &mut rt,
        &pod,
        &pod_cfg,
        with_mount("ro", true, false, private),
    )
    .await;
    let (_, err, code) = exec(&mut rt, &ro, &["touch", "/mnt/tmpfs/a"]).await;
    assert_eq!(code, 0, "{err}");
    let rro = run_container(
        &mut rt,
        &pod,
        &pod_cfg,
        with_mount("rro", true, true, private),
    )
    .await;
    let (_, err, code) = exec(&mut rt, &rro, &["touch", "/mnt/tmpfs/b"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("Read-only file system"), "{err}");
    for (name, cfg) in [
        ("rw", with_mount("rw", false, true, private)),
        (
            "slave",
            with_mount(
                "slave",
                true,
                true,
                v1::MountPropagation::PropagationHostToContainer,
            ),
        ),
    ] {
        let e = rt
            .create_container(v1::CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(cfg),
                sandbox_config: Some(pod_cfg.clone()),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{name}: {e}");
        assert!(e.message().contains("recursive_read_only"), "{name}: {e}");
    }
    d.shutdown().await;
    let _ = nix::mount::umount2(&sub, nix::mount::MntFlags::MNT_DETACH);
}

#[tokio::test(flavor = "multi_thread")]
async fn supplemental_groups_policy_strict_leaves_out_the_images_groups() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let mut rt = d.runtime().await;
    let logs = d.dir.path().join("logs");
    let pod_cfg = pod_config("groups", &logs);
    let pod = run_pod(&mut rt, &pod_cfg).await;
    // In the test image, kinglet (1000) is a member of users (100).
    for (name, policy, want_groups, want_status) in [
        (
            "merge",
            v1::SupplementalGroupsPolicy::Merge,
            "1000 100 1234",
            vec![100, 1000, 1234],
        ),
        (
            "strict",
            v1::SupplementalGroupsPolicy::Strict,
            "1000 1234",
            vec![1000, 1234],
        ),
    ] {
        let cfg = with_sc(
            sh_container(name, "exec sleep 3600"),
            v1::LinuxContainerSecurityContext {
                run_as_user: Some(v1::Int64Value { value: 1000 }),
                supplemental_groups: vec![1234],
                supplemental_groups_policy: policy as i32,
                ..Default::default()
            },
        );
        let id = run_container(&mut rt, &pod, &pod_cfg, cfg).await;
        let (out, _, code) = exec(&mut rt, &id, &["id", "-G"]).await;
        assert_eq!((out.trim(), code), (want_groups, 0), "{name}");
        let user = status(&mut rt, &id).await.user.expect("status.user");
        let linux = user.linux.unwrap();
        assert_eq!(
            (linux.uid, linux.gid, linux.supplemental_groups),
            (1000, 1000, want_status),
            "{name}"
        );
    }
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_sandbox_metrics_come_from_the_containers_cgroup_proc_and_network() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let mut rt = d.runtime().await;
    let logs = d.dir.path().join("logs");
    let pod_cfg = pod_config("metrics", &logs);
    let pod = run_pod(&mut rt, &pod_cfg).await;
    let mut cfg = sh_container("worker", "sleep 3600 & sleep 3600 & wait");
    cfg.linux = Some(v1::LinuxContainerConfig {
        resources: Some(v1::LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            cpu_period: 100_000,
            cpu_quota: 20_000,
            cpu_shares: 512,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = run_container(&mut rt, &pod, &pod_cfg, cfg).await;
    let descs = rt
        .list_metric_descriptors(v1::ListMetricDescriptorsRequest {})
        .await
        .unwrap()
        .into_inner()
        .descriptors;
    let keys = |name: &str| {
        descs
            .iter()
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("no descriptor {name}"))
            .label_keys
            .len()
    };
    // The shell and its two sleeps.
    let mut processes = 0;
    let mut all = v1::PodSandboxMetrics::default();
    for _ in 0..50 {
        all = rt
            .list_pod_sandbox_metrics(v1::ListPodSandboxMetricsRequest {})
            .await
            .unwrap()
            .into_inner()
            .pod_metrics
            .into_iter()
            .find(|p| p.pod_sandbox_id == pod)
            .expect("metrics of the pod");
        let c = all
            .container_metrics
            .iter()
            .find(|c| c.container_id == id)
            .unwrap();
        processes = c
            .metrics
            .iter()
            .find(|m| m.name == "container_processes")
            .map_or(0, |m| m.value.as_ref().unwrap().value);
        if processes == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(processes, 3);
    let c = all
        .container_metrics
        .iter()
        .find(|c| c.container_id == id)
        .unwrap();
    let get = |name: &str| {
        let m = c
            .metrics
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no metric {name}"));
        assert_eq!(m.label_values.len(), keys(name), "{name}");
        assert_eq!(m.label_values[0], "worker");
        m.value.as_ref().unwrap().value
    };
    assert_eq!(get("container_spec_memory_limit_bytes"), 64 << 20);
    assert_eq!(get("container_spec_cpu_period"), 100_000);
    assert_eq!(get("container_spec_cpu_quota"), 20_000);
    assert_eq!(get("container_spec_cpu_shares"), 512);
    assert!(get("container_memory_usage_bytes") > 0);
    assert!(get("container_threads") >= 3);
    assert!(get("container_file_descriptors") >= 3);
    assert!(get("container_fs_limit_bytes") > 0);
    let started = status(&mut rt, &id).await.started_at / 1_000_000_000;
    assert_eq!(get("container_start_time_seconds"), started as u64);
    // The pod's network: eth0, with the bytes the pod sent so far.
    let eth0 = all
        .metrics
        .iter()
        .find(|m| m.name == "container_network_transmit_packets_total")
        .expect("pod network metrics");
    assert_eq!(eth0.label_values[0], "POD");
    assert_eq!(eth0.label_values.last().unwrap(), "eth0");
    assert_eq!(
        eth0.label_values.len(),
        keys("container_network_transmit_packets_total")
    );
    d.shutdown().await;
}

/// A cgroup file of the process `pid`, found through `/proc/<pid>/cgroup` (v1 or v2).
fn cgroup_file(pid: i32, v1_controller: &str, v1_file: &str, v2_file: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let (ctrl, file) = if v2 {
        ("", v2_file)
    } else {
        (v1_controller, v1_file)
    };
    let path = text
        .lines()
        .find_map(|l| {
            let mut it = l.splitn(3, ':');
            let (_, ctrls, path) = (it.next()?, it.next()?, it.next()?);
            let hit = if ctrl.is_empty() {
                ctrls.is_empty()
            } else {
                ctrls.split(',').any(|c| c == ctrl)
            };
            hit.then(|| {
                format!(
                    "/sys/fs/cgroup/{ctrl}/{}/{file}",
                    path.trim_start_matches('/')
                )
            })
        })
        .unwrap();
    std::fs::read_to_string(path).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn update_container_resources_changes_the_running_containers_cgroup() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let mut rt = d.runtime().await;
    let logs = d.dir.path().join("logs");
    let pod_cfg = pod_config("resize", &logs);
    let pod = run_pod(&mut rt, &pod_cfg).await;
    let mut cfg = sh_container("app", "exec sleep 3600");
    cfg.linux = Some(v1::LinuxContainerConfig {
        resources: Some(v1::LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            cpu_period: 100_000,
            cpu_quota: 20_000,
            cpu_shares: 512,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = run_container(&mut rt, &pod, &pod_cfg, cfg).await;
    let pid = init_pid(&mut rt, &id).await;
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    assert_eq!(
        cgroup_file(pid, "memory", "memory.limit_in_bytes", "memory.max"),
        (64u64 << 20).to_string()
    );
    let new = v1::LinuxContainerResources {
        memory_limit_in_bytes: 128 << 20,
        cpu_period: 100_000,
        cpu_quota: 50_000,
        cpu_shares: 256,
        ..Default::default()
    };
    rt.update_container_resources(v1::UpdateContainerResourcesRequest {
        container_id: id.clone(),
        linux: Some(new.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(
        cgroup_file(pid, "memory", "memory.limit_in_bytes", "memory.max"),
        (128u64 << 20).to_string()
    );
    if v2 {
        assert_eq!(cgroup_file(pid, "", "", "cpu.max"), "50000 100000");
    } else {
        assert_eq!(cgroup_file(pid, "cpu", "cpu.cfs_quota_us", ""), "50000");
        assert_eq!(cgroup_file(pid, "cpu", "cpu.shares", ""), "256");
    }
    // ContainerStatus reports what is in force now.
    let st = status(&mut rt, &id).await;
    assert_eq!(st.resources.unwrap().linux.unwrap(), new);

    // Bad values and stopped containers are refused.
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
    rt.stop_container(v1::StopContainerRequest {
        container_id: id.clone(),
        timeout: 0,
    })
    .await
    .unwrap();
    let e = rt
        .update_container_resources(v1::UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(new),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e}");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn container_events_stream_created_started_stopped_deleted_with_pod_status() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let mut rt = d.runtime().await;
    let mut events = rt
        .get_container_events(v1::GetEventsRequest {})
        .await
        .unwrap()
        .into_inner();
    let logs = d.dir.path().join("logs");
    let pod_cfg = pod_config("events", &logs);
    let pod = run_pod(&mut rt, &pod_cfg).await;
    // Exits by itself: STOPPED comes from the exit watcher, not from StopContainer.
    let id = run_container(&mut rt, &pod, &pod_cfg, sh_container("brief", "exit 3")).await;
    wait_exited(&mut rt, &id, std::time::Duration::from_secs(20)).await;
    rt.remove_container(v1::RemoveContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();
    use v1::ContainerEventType as T;
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let ev = tokio::time::timeout(std::time::Duration::from_secs(20), events.message())
            .await
            .expect("an event within 20 s")
            .unwrap()
            .expect("stream open");
        assert_eq!(ev.container_id, id);
        assert!(ev.created_at > 0);
        let pod_status = ev.pod_sandbox_status.as_ref().expect("pod status");
        assert_eq!(pod_status.id, pod);
        let mine = ev.containers_statuses.iter().find(|c| c.id == id);
        match T::try_from(ev.container_event_type).unwrap() {
            T::ContainerCreatedEvent => {
                assert_eq!(
                    mine.unwrap().state,
                    v1::ContainerState::ContainerCreated as i32
                )
            }
            T::ContainerStartedEvent => {
                assert_ne!(
                    mine.unwrap().state,
                    v1::ContainerState::ContainerCreated as i32
                )
            }
            T::ContainerStoppedEvent => {
                let s = mine.unwrap();
                assert_eq!(
                    (s.state, s.exit_code),
                    (v1::ContainerState::ContainerExited as i32, 3)
                );
            }
            T::ContainerDeletedEvent => assert!(mine.is_none(), "deleted container still listed"),
        }
        seen.push(ev.container_event_type);
    }
    assert_eq!(
        seen,
        [
            T::ContainerCreatedEvent,
            T::ContainerStartedEvent,
            T::ContainerStoppedEvent,
            T::ContainerDeletedEvent
        ]
        .map(|t| t as i32)
    );
    d.shutdown().await;
}
