//! Invalid CRI requests get the right gRPC code and a message naming the field or object; unknown
//! ids are fine for Stop/Remove; duplicates are refused naming the existing id; a corrupt image
//! archive is refused and leaves nothing behind.

use kinglet_proto::v1;
use kinglet_tests::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_refused_clearly() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let mut rt = d.runtime().await;

    let e = rt
        .run_pod_sandbox(v1::RunPodSandboxRequest {
            config: Some(v1::PodSandboxConfig::default()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("config.metadata"), "{}", e.message());

    let pod_cfg = pod_config("dup", &d.dir.path().join("logs"));
    let req = v1::RunPodSandboxRequest {
        config: Some(pod_cfg.clone()),
        ..Default::default()
    };
    let pod = rt
        .run_pod_sandbox(req.clone())
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let e = rt.run_pod_sandbox(req).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    assert!(e.message().contains(&pod), "{}", e.message());

    // Unknown image.
    let mut c = sh_container("x", "true");
    c.image = Some(v1::ImageSpec {
        image: "no.such/image:1".into(),
        ..Default::default()
    });
    let e = rt
        .create_container(v1::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(c),
            sandbox_config: Some(pod_cfg.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("no.such/image:1"), "{}", e.message());

    // Unknown sandbox.
    let e = rt
        .create_container(v1::CreateContainerRequest {
            pod_sandbox_id: "feedface".into(),
            config: Some(sh_container("x", "true")),
            sandbox_config: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // Missing container name.
    let mut c = sh_container("", "true");
    c.metadata.as_mut().unwrap().name.clear();
    let e = rt
        .create_container(v1::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(c),
            sandbox_config: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("config.metadata.name"),
        "{}",
        e.message()
    );

    // Duplicate container name.
    let first = run_container(&mut rt, &pod, &pod_cfg, sh_container("same", "sleep 60")).await;
    let e = rt
        .create_container(v1::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(sh_container("same", "sleep 60")),
            sandbox_config: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    assert!(e.message().contains(&first), "{}", e.message());

    // Unknown ids: stop/remove succeed, status/start do not.
    rt.stop_container(v1::StopContainerRequest {
        container_id: "0123abcd".into(),
        timeout: 0,
    })
    .await
    .unwrap();
    rt.remove_container(v1::RemoveContainerRequest {
        container_id: "0123abcd".into(),
    })
    .await
    .unwrap();
    rt.stop_pod_sandbox(v1::StopPodSandboxRequest {
        pod_sandbox_id: "0123abcd".into(),
    })
    .await
    .unwrap();
    rt.remove_pod_sandbox(v1::RemovePodSandboxRequest {
        pod_sandbox_id: "0123abcd".into(),
    })
    .await
    .unwrap();
    let e = rt
        .start_container(v1::StartContainerRequest {
            container_id: "0123abcd".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = rt
        .container_status(v1::ContainerStatusRequest {
            container_id: "0123abcd".into(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // Starting twice is a precondition failure.
    let e = rt
        .start_container(v1::StartContainerRequest {
            container_id: first.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    // An image in use is not removed.
    let e = d
        .images()
        .await
        .remove_image(v1::RemoveImageRequest {
            image: Some(v1::ImageSpec {
                image: IMAGE.into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);

    // A truncated archive is refused and nothing is imported.
    let (_, archive) = test_image();
    let bytes = std::fs::read(archive).unwrap();
    let cut = d.dir.path().join("cut.tar");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let out = d.cli(&[
        "image",
        "import",
        cut.to_str().unwrap(),
        "--name",
        "cut/image:1",
    ]);
    assert!(!out.status.success());
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(msg.contains("cut.tar"), "{msg}");
    let imgs = d
        .images()
        .await
        .list_images(v1::ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images;
    assert_eq!(imgs.len(), 1, "only the test image: {imgs:?}");

    // Images: status by name and by id, fs info.
    let mut is = d.images().await;
    let st = is
        .image_status(v1::ImageStatusRequest {
            image: Some(v1::ImageSpec {
                image: IMAGE.into(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .image
        .expect("image found by name");
    assert!(st.repo_tags.contains(&IMAGE.to_string()));
    let by_id = is
        .image_status(v1::ImageStatusRequest {
            image: Some(v1::ImageSpec {
                image: st.id.clone(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .image
        .expect("image found by id");
    assert_eq!(by_id.id, st.id);
    let fs = is
        .image_fs_info(v1::ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(fs.image_filesystems[0].used_bytes.as_ref().unwrap().value > 0);
    d.shutdown().await;
}
