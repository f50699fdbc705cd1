//! ExecSync timeouts, log reopening after rotation, images referenced by id, the image's and
//! the config's user, and removal of an unused image.

use std::time::{Duration, Instant};

use kinglet_proto::v1;
use kinglet_tests::*;

#[tokio::test(flavor = "multi_thread")]
async fn exec_timeout_log_rotation_user_and_image_by_id() {
    let d = Daemon::start().await;
    let image_id = d.import_test_image().await;
    let mut rt = d.runtime().await;
    let logs = d.dir.path().join("logs");
    let pod_cfg = pod_config("misc", &logs);
    let pod = run_pod(&mut rt, &pod_cfg).await;

    // The image named by id; a user from the security context.
    let mut cfg = sh_container(
        "talker",
        "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done",
    );
    cfg.image = Some(v1::ImageSpec {
        image: image_id.clone(),
        ..Default::default()
    });
    cfg.linux = Some(v1::LinuxContainerConfig {
        security_context: Some(v1::LinuxContainerSecurityContext {
            run_as_user: Some(v1::Int64Value { value: 1000 }),
            seccomp: Some(v1::SecurityProfile {
                profile_type: v1::security_profile::ProfileType::RuntimeDefault as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = run_container(&mut rt, &pod, &pod_cfg, cfg).await;
    let st = status(&mut rt, &id).await;
    assert_eq!(st.image_id, image_id);
    assert!(
        st.image_ref.starts_with("kinglet.test/busybox@sha256:"),
        "{}",
        st.image_ref
    );
    let (out, _, _) = exec(&mut rt, &id, &["id"]).await;
    assert!(
        out.starts_with("uid=1000(kinglet) gid=1000(kinglet)"),
        "{out}"
    );

    // The RuntimeDefault seccomp filter is in force (mode 2 = filter), for exec'd commands too.
    let (out, _, _) = exec(&mut rt, &id, &["grep", "^Seccomp:", "/proc/self/status"]).await;
    assert_eq!(out, "Seccomp:\t2\n");
    let pid = init_pid(&mut rt, &id).await;
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        st.contains("Seccomp:\t2\n"),
        "container init is filtered too"
    );

    // ExecSync past its timeout: DeadlineExceeded, and the command does not linger.
    let t = Instant::now();
    let e = rt
        .exec_sync(v1::ExecSyncRequest {
            container_id: id.clone(),
            cmd: vec!["sleep".into(), "30".into()],
            timeout: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::DeadlineExceeded, "{}", e.message());
    assert!(t.elapsed() < Duration::from_secs(10));
    let (out, _, _) = exec(&mut rt, &id, &["ps", "-o", "args"]).await;
    assert!(!out.contains("sleep 30"), "{out}");

    // Log rotation: rename the file, ReopenContainerLog, new lines land in a new file.
    let log = logs.join("talker.log");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rotated = logs.join("talker.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    rt.reopen_container_log(v1::ReopenContainerLogRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fresh = std::fs::read_to_string(&log).unwrap();
    assert!(fresh.lines().count() >= 2, "{fresh}");
    assert!(
        fresh.lines().all(|l| l.contains(" stdout F tick ")),
        "{fresh}"
    );
    let old = std::fs::read_to_string(&rotated).unwrap();
    let last_old: u32 = old
        .lines()
        .last()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let first_new: u32 = fresh
        .lines()
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        first_new,
        last_old + 1,
        "no line lost or repeated across the reopen"
    );

    // Reopening the log of a container that is not running is refused.
    rt.stop_container(v1::StopContainerRequest {
        container_id: id.clone(),
        timeout: 0,
    })
    .await
    .unwrap();
    let e = rt
        .reopen_container_log(v1::ReopenContainerLogRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);

    // Once no container uses it, the image can be removed; removing it again is fine.
    rt.remove_pod_sandbox(v1::RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .unwrap();
    let mut images = d.images().await;
    for _ in 0..2 {
        images
            .remove_image(v1::RemoveImageRequest {
                image: Some(v1::ImageSpec {
                    image: IMAGE.into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
    }
    let left = images
        .list_images(v1::ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images;
    assert!(left.is_empty(), "{left:?}");
    assert!(mounts_under(d.dir.path()).is_empty());
    d.shutdown().await;
}
