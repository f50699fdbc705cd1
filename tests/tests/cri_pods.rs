//! End to end over the CRI socket: a pod of two containers sharing the pod's namespaces,
//! ExecSync, CRI log files, exit codes and reasons, OOM kills, and cleanup.

use std::path::Path;
use std::time::Duration;

use kinglet_proto::v1;
use kinglet_tests::*;

fn ns_inode(pid: i32, ns: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_of_two_containers_shares_namespaces_and_loopback() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let mut rt = d.runtime().await;
    let logs = d.dir.path().join("logs");
    let pod_cfg = pod_config("web", &logs);
    let pod = run_pod(&mut rt, &pod_cfg).await;

    let server = run_container(
        &mut rt,
        &pod,
        &pod_cfg,
        sh_container(
            "server",
            "mkdir -p /www && echo hello-from-server > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www",
        ),
    )
    .await;
    let client = run_container(
        &mut rt,
        &pod,
        &pod_cfg,
        sh_container("client", "echo client up; exec sleep 3600"),
    )
    .await;

    // The client reaches the server over the pod's loopback.
    let mut body = String::new();
    for _ in 0..100 {
        let (out, _, code) = exec(
            &mut rt,
            &client,
            &["wget", "-q", "-O", "-", "http://127.0.0.1:8080/"],
        )
        .await;
        if code == 0 {
            body = out;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(body, "hello-from-server\n");

    // Both see the pod's hostname, and share net/ipc/uts namespaces that are not the host's.
    for c in [&server, &client] {
        let (out, _, code) = exec(&mut rt, c, &["hostname"]).await;
        assert_eq!((out.as_str(), code), ("web\n", 0));
    }
    let (sp, cp) = (
        init_pid(&mut rt, &server).await,
        init_pid(&mut rt, &client).await,
    );
    for ns in ["net", "ipc", "uts"] {
        assert_eq!(ns_inode(sp, ns), ns_inode(cp, ns), "{ns} shared");
        assert_ne!(
            ns_inode(sp, ns),
            ns_inode(1, ns),
            "{ns} is the pod's, not the host's"
        );
    }
    // The CRI's default pid mode is POD: one PID namespace for the pod, with its own init.
    assert_eq!(ns_inode(sp, "pid"), ns_inode(cp, "pid"));
    assert_ne!(ns_inode(sp, "pid"), ns_inode(1, "pid"));
    let (out, _, _) = exec(&mut rt, &client, &["ps", "-o", "pid,args"]).await;
    assert!(out.contains("httpd") && out.contains("sleep 3600"), "{out}");
    // A container asking for pid mode CONTAINER sees only itself, as PID 1.
    let mut solo_cfg = sh_container("solo", "exec sleep 3603");
    solo_cfg.linux = Some(v1::LinuxContainerConfig {
        security_context: Some(v1::LinuxContainerSecurityContext {
            namespace_options: Some(v1::NamespaceOption {
                pid: v1::NamespaceMode::Container as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let solo = run_container(&mut rt, &pod, &pod_cfg, solo_cfg).await;
    let (out, _, _) = exec(&mut rt, &solo, &["cat", "/proc/1/cmdline"]).await;
    assert_eq!(out, "sleep\u{0}3603\u{0}");
    let (out, _, _) = exec(&mut rt, &solo, &["ps", "-o", "pid,args"]).await;
    assert!(!out.contains("httpd"), "{out}");
    let solo_pid = init_pid(&mut rt, &solo).await;
    assert_ne!(ns_inode(solo_pid, "pid"), ns_inode(sp, "pid"));
    assert_eq!(ns_inode(solo_pid, "net"), ns_inode(sp, "net"));

    // containerd's default capability set, nothing more (the well-known Docker mask).
    let (out, _, _) = exec(
        &mut rt,
        &client,
        &["grep", "^Cap[EPB]", "/proc/self/status"],
    )
    .await;
    assert_eq!(
        out,
        "CapPrm:\t00000000a80425fb\nCapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\n"
    );

    // ExecSync returns stdout, stderr and the exit code.
    let (out, err, code) = exec(
        &mut rt,
        &client,
        &["sh", "-c", "echo out; echo err >&2; exit 5"],
    )
    .await;
    assert_eq!((out.as_str(), err.as_str(), code), ("out\n", "err\n", 5));

    // A container exiting 3 reports exit code 3, reason Error, and its output in CRI log format.
    let failing = run_container(
        &mut rt,
        &pod,
        &pod_cfg,
        sh_container("failing", "echo line1; echo line2 >&2; exit 3"),
    )
    .await;
    let st = wait_exited(&mut rt, &failing, Duration::from_secs(20)).await;
    assert_eq!((st.exit_code, st.reason.as_str()), (3, "Error"));
    assert!(st.started_at > 0 && st.finished_at >= st.started_at && st.created_at > 0);
    assert_eq!(st.log_path, logs.join("failing.log").display().to_string());
    let log = std::fs::read_to_string(&st.log_path).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    let mut seen = Vec::new();
    for l in &lines {
        let parsed = kinglet_shim_log_line(l);
        seen.push(parsed);
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            ("stderr".to_string(), "F".to_string(), "line2".to_string()),
            ("stdout".into(), "F".into(), "line1".into())
        ]
    );

    // A clean exit is Completed.
    let ok = run_container(&mut rt, &pod, &pod_cfg, sh_container("ok", "true")).await;
    let st = wait_exited(&mut rt, &ok, Duration::from_secs(20)).await;
    assert_eq!((st.exit_code, st.reason.as_str()), (0, "Completed"));

    // Listing with filters.
    let running = rt
        .list_containers(v1::ListContainersRequest {
            filter: Some(v1::ContainerFilter {
                pod_sandbox_id: pod.clone(),
                state: Some(v1::ContainerStateValue {
                    state: v1::ContainerState::ContainerRunning as i32,
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    let mut ids: Vec<String> = running.into_iter().map(|c| c.id).collect();
    ids.sort();
    let mut want = vec![server.clone(), client.clone(), solo.clone()];
    want.sort();
    assert_eq!(ids, want);

    // Stop with a grace period: httpd dies on SIGTERM.
    rt.stop_container(v1::StopContainerRequest {
        container_id: server.clone(),
        timeout: 10,
    })
    .await
    .unwrap();
    let st = status(&mut rt, &server).await;
    assert_eq!(st.state, v1::ContainerState::ContainerExited as i32);

    // Remove the pod: nothing of it is left.
    rt.stop_pod_sandbox(v1::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    rt.remove_pod_sandbox(v1::RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    assert!(
        !Path::new(&format!("/proc/{cp}")).exists(),
        "client process gone"
    );
    assert!(
        mounts_under(d.dir.path()).is_empty(),
        "mounts left: {:?}",
        mounts_under(d.dir.path())
    );
    assert!(!d.run_root.join("pods").join(&pod).exists());
    for id in [&server, &client, &failing, &ok, &solo] {
        assert!(!d.run_root.join("containers").join(id).exists());
        assert!(!d.root.join("containers").join(id).exists());
        assert!(!d.run_root.join("runtime").join(id).exists());
    }
    for ctl in ["memory", "pids", "cpu"] {
        let p = Path::new("/sys/fs/cgroup")
            .join(ctl)
            .join("kinglet")
            .join(&pod);
        assert!(!p.exists(), "cgroup {} left", p.display());
    }
    assert!(!Path::new("/sys/fs/cgroup/kinglet").join(&pod).exists());
    let left = rt
        .list_pod_sandbox(v1::ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(left.is_empty());
    d.shutdown().await;
}

/// (stream, tag, content) of one CRI log line, checking the timestamp is RFC 3339 UTC.
fn kinglet_shim_log_line(l: &str) -> (String, String, String) {
    let mut it = l.splitn(4, ' ');
    let ts = it.next().unwrap();
    assert!(ts.ends_with('Z') && ts.contains('T'), "timestamp {ts:?}");
    (
        it.next().unwrap().to_owned(),
        it.next().unwrap().to_owned(),
        it.next().unwrap_or("").to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_limit_reports_oom_killed() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let mut rt = d.runtime().await;
    let pod_cfg = pod_config("oom", &d.dir.path().join("logs"));
    let pod = run_pod(&mut rt, &pod_cfg).await;
    let mut cfg = sh_container("hog", "exec dd if=/dev/zero of=/dev/null bs=128M count=4");
    cfg.linux = Some(v1::LinuxContainerConfig {
        resources: Some(v1::LinuxContainerResources {
            memory_limit_in_bytes: 32 << 20,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = run_container(&mut rt, &pod, &pod_cfg, cfg).await;
    let st = wait_exited(&mut rt, &id, Duration::from_secs(30)).await;
    assert_eq!((st.exit_code, st.reason.as_str()), (137, "OOMKilled"));
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_pid_namespace_and_read_only_rootfs() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let mut rt = d.runtime().await;
    let mut pod_cfg = pod_config("pidshare", &d.dir.path().join("logs"));
    pod_cfg.linux = Some(v1::LinuxPodSandboxConfig {
        security_context: Some(v1::LinuxSandboxSecurityContext {
            namespace_options: Some(v1::NamespaceOption {
                pid: v1::NamespaceMode::Pod as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let pod = run_pod(&mut rt, &pod_cfg).await;
    let pod_ns = |mut c: v1::ContainerConfig| {
        c.linux = Some(v1::LinuxContainerConfig {
            security_context: Some(v1::LinuxContainerSecurityContext {
                namespace_options: Some(v1::NamespaceOption {
                    pid: v1::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                readonly_rootfs: true,
                ..Default::default()
            }),
            ..Default::default()
        });
        c
    };
    let a = run_container(
        &mut rt,
        &pod,
        &pod_cfg,
        pod_ns(sh_container("a", "exec sleep 3601")),
    )
    .await;
    let b = run_container(
        &mut rt,
        &pod,
        &pod_cfg,
        pod_ns(sh_container("b", "exec sleep 3602")),
    )
    .await;
    // b sees a's process, and pid 1 is the pod's init, not a container.
    let (out, _, _) = exec(&mut rt, &b, &["ps", "-o", "pid,args"]).await;
    assert!(
        out.contains("sleep 3601") && out.contains("sleep 3602"),
        "{out}"
    );
    let (ap, bp) = (init_pid(&mut rt, &a).await, init_pid(&mut rt, &b).await);
    assert_eq!(ns_inode(ap, "pid"), ns_inode(bp, "pid"));
    // The pod's PID 1 runs the small `kinglet-pod-init` binary, not a copy of the daemon.
    let run = d.run_root.to_string_lossy().into_owned();
    let inits: Vec<std::path::PathBuf> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).into_owned();
            if !(cmd.contains("pod-init") && cmd.contains(&run)) {
                return None;
            }
            std::fs::read_link(e.path().join("exe")).ok()
        })
        .collect();
    assert_eq!(inits.len(), 1, "one pod init expected: {inits:?}");
    assert_eq!(
        inits[0].file_name().unwrap(),
        "kinglet-pod-init",
        "{inits:?}"
    );
    // Read-only root filesystem: writes fail, /tmp as well (not a volume).
    let (_, err, code) = exec(&mut rt, &a, &["touch", "/newfile"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("Read-only file system"), "{err}");
    rt.remove_pod_sandbox(v1::RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .unwrap();
    assert!(
        mounts_under(d.dir.path()).is_empty(),
        "mounts left: {:?}",
        mounts_under(d.dir.path())
    );
    d.shutdown().await;
}
