//! PullImage end to end: real `docker-registry` instances on 127.0.0.1 (open, htpasswd basic
//! auth, TLS with a test CA), the test image pushed with skopeo, pulled through the CRI by a
//! real daemon, and run.

use std::time::Duration;

use kinglet_proto::v1;
use kinglet_proto::v1::image_service_client::ImageServiceClient;
use kinglet_tests::registry::{Mode, Registry};
use kinglet_tests::*;
use tonic::transport::Channel;

const PASSWORD: &str = "pw-Zq81-not-in-logs";

fn layout() -> &'static std::path::Path {
    &test_image().0
}

async fn pull(
    img: &mut ImageServiceClient<Channel>,
    image: &str,
    auth: Option<v1::AuthConfig>,
) -> Result<String, tonic::Status> {
    img.pull_image(v1::PullImageRequest {
        image: Some(v1::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        auth,
        sandbox_config: None,
    })
    .await
    .map(|r| r.into_inner().image_ref)
}

async fn image_status(img: &mut ImageServiceClient<Channel>, image: &str) -> Option<v1::Image> {
    img.image_status(v1::ImageStatusRequest {
        image: Some(v1::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        verbose: false,
    })
    .await
    .expect("ImageStatus")
    .into_inner()
    .image
}

fn basic(user: &str, password: &str) -> v1::AuthConfig {
    v1::AuthConfig {
        username: user.into(),
        password: password.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_pull_by_tag_and_digest_then_run_and_remove() {
    let reg = Registry::start(Mode::Open);
    reg.push(layout(), IMAGE, "team/busybox:latest");
    reg.push(layout(), IMAGE, "team/busybox:v2");
    let d = Daemon::start().await;
    let mut img = d.images().await;
    let latest = format!("{}/team/busybox:latest", reg.host);
    let id = pull(&mut img, &latest, None).await.expect("PullImage");
    assert!(id.starts_with("sha256:"), "{id}");

    // A second tag of the same manifest is the same image, with both tags.
    let v2 = format!("{}/team/busybox:v2", reg.host);
    assert_eq!(pull(&mut img, &v2, None).await.expect("pull v2"), id);
    let st = image_status(&mut img, &latest)
        .await
        .expect("image present");
    assert_eq!(st.id, id);
    assert!(
        st.repo_tags.contains(&latest) && st.repo_tags.contains(&v2),
        "{:?}",
        st.repo_tags
    );
    assert_eq!(st.repo_digests.len(), 1, "{:?}", st.repo_digests);
    let by_digest = st.repo_digests[0].clone();
    assert!(by_digest.starts_with(&format!("{}/team/busybox@sha256:", reg.host)));
    assert_eq!(
        st.uid,
        Some(v1::Int64Value { value: 0 }),
        "image user is root"
    );

    // Pull by digest: the same image; it resolves by digest too.
    assert_eq!(
        pull(&mut img, &by_digest, None)
            .await
            .expect("pull by digest"),
        id
    );
    assert_eq!(
        image_status(&mut img, &by_digest).await.map(|i| i.id),
        Some(id.clone())
    );

    // Run a container from the pulled image.
    let mut rt = d.runtime().await;
    let logs = d.dir.path().join("logs");
    let pod_cfg = pod_config("pulled", &logs);
    let pod = run_pod(&mut rt, &pod_cfg).await;
    let mut cfg = sh_container("hello", "echo pulled-ok; exit 3");
    cfg.image = Some(v1::ImageSpec {
        image: latest.clone(),
        ..Default::default()
    });
    let c = run_container(&mut rt, &pod, &pod_cfg, cfg).await;
    let s = wait_exited(&mut rt, &c, Duration::from_secs(20)).await;
    assert_eq!(s.exit_code, 3);
    // The image in use, by repo digest (as containerd reports it) or id.
    assert!(
        s.image_ref == by_digest || s.image_ref == id,
        "{}",
        s.image_ref
    );
    let log = std::fs::read_to_string(logs.join("hello.log")).unwrap();
    assert!(log.contains("pulled-ok"), "{log}");

    // In use: RemoveImage refuses; once the pod is gone, removal by a tag removes the image.
    let e = img
        .remove_image(v1::RemoveImageRequest {
            image: Some(v1::ImageSpec {
                image: v2.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e}");
    rt.remove_pod_sandbox(v1::RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .expect("RemovePodSandbox");
    img.remove_image(v1::RemoveImageRequest {
        image: Some(v1::ImageSpec {
            image: v2.clone(),
            ..Default::default()
        }),
    })
    .await
    .expect("RemoveImage");
    assert!(image_status(&mut img, &latest).await.is_none());

    // Unknown tags and repositories are NotFound.
    let e = pull(&mut img, &format!("{}/team/busybox:nope", reg.host), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e}");
    let e = pull(&mut img, &format!("{}/nobody/here:1", reg.host), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e}");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_pulls_of_one_image_share_one_download() {
    let reg = Registry::start(Mode::Open);
    reg.push(layout(), IMAGE, "busybox:latest");
    let d = Daemon::start().await;
    let name = format!("{}/busybox:latest", reg.host);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let mut img = d.images().await;
        let name = name.clone();
        tasks.push(tokio::spawn(
            async move { pull(&mut img, &name, None).await },
        ));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap().expect("PullImage"));
    }
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    // Every blob (config and layer) was fetched once.
    let blob_gets = reg
        .log()
        .lines()
        .filter(|l| l.contains("\"GET /v2/busybox/blobs/sha256:") && l.contains("\" 200 "))
        .count();
    assert_eq!(
        blob_gets,
        2,
        "config + one layer, once each:\n{}",
        reg.log()
    );
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn private_registry_with_auth_config_and_clear_errors() {
    let reg = Registry::start(Mode::Basic {
        user: "alice".into(),
        password: PASSWORD.into(),
    });
    reg.push(layout(), IMAGE, "private/busybox:1");
    let d = Daemon::start().await;
    let mut img = d.images().await;
    let name = format!("{}/private/busybox:1", reg.host);

    // Anonymous: refused, clearly.
    let e = pull(&mut img, &name, None).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
    assert!(e.message().contains(&reg.host), "{e}");
    // Wrong password: refused, naming the registry and never the secret.
    let wrong = format!("{PASSWORD}-wrong");
    let e = pull(&mut img, &name, Some(basic("alice", &wrong)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
    assert!(
        e.message().contains(&reg.host) && e.message().contains("unauthorized"),
        "{e}"
    );
    assert!(
        !e.message().contains(&wrong) && !e.message().contains(PASSWORD),
        "{e}"
    );
    eprintln!("wrong credentials: {}", e.message());

    // Username/password, then the base64 `auth` form.
    let id = pull(&mut img, &name, Some(basic("alice", PASSWORD)))
        .await
        .expect("pull with AuthConfig");
    img.remove_image(v1::RemoveImageRequest {
        image: Some(v1::ImageSpec {
            image: id.clone(),
            ..Default::default()
        }),
    })
    .await
    .unwrap();
    let auth = v1::AuthConfig {
        auth: b64(&format!("alice:{PASSWORD}")),
        ..Default::default()
    };
    assert_eq!(
        pull(&mut img, &name, Some(auth))
            .await
            .expect("pull with auth"),
        id
    );

    // The CLI: `image pull --creds`, progress lines, then `image rm`.
    let out = d.cli(&["image", "rm", &name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = d.cli(&[
        "image",
        "pull",
        &name,
        "--creds",
        &format!("alice:{PASSWORD}"),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&format!("pulled {id}")), "{stdout}");
    let out = d.cli(&["image", "pull", &name, "--creds", "alice:nope"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("unauthorized"),
        "{stderr}"
    );
    assert!(!stderr.contains("nope"), "{stderr}");

    // The secret is in no log or state file.
    assert!(!d.log().contains(PASSWORD), "daemon log holds the password");
    assert_no_file_contains(&d.root, PASSWORD);
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_config_json_and_credential_helper() {
    let reg = Registry::start(Mode::Basic {
        user: "bob".into(),
        password: PASSWORD.into(),
    });
    reg.push(layout(), IMAGE, "private/busybox:1");
    let name = format!("{}/private/busybox:1", reg.host);
    let cfg_dir = tempfile::tempdir().unwrap();

    // `auths` with base64 `auth`.
    let docker_cfg = cfg_dir.path().join("config.json");
    std::fs::write(
        &docker_cfg,
        format!(
            r#"{{"auths": {{"{}": {{"auth": "{}"}}}}}}"#,
            reg.host,
            b64(&format!("bob:{PASSWORD}"))
        ),
    )
    .unwrap();
    let d = Daemon::start_with_config(&format!("docker-config = {:?}\n", docker_cfg)).await;
    let mut img = d.images().await;
    pull(&mut img, &name, None)
        .await
        .expect("pull with config.json auths");
    d.shutdown().await;

    // `credHelpers` through a docker-credential-* helper script.
    let helpers = cfg_dir.path().join("helpers");
    std::fs::create_dir(&helpers).unwrap();
    let script = helpers.join("docker-credential-kinglet-test");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\necho \"$server\" > {}\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"bob\",\"Secret\":\"{PASSWORD}\"}}' \"$server\"\n",
            cfg_dir.path().join("asked").display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let helper_cfg = cfg_dir.path().join("helper.json");
    std::fs::write(
        &helper_cfg,
        format!(r#"{{"credHelpers": {{"{}": "kinglet-test"}}}}"#, reg.host),
    )
    .unwrap();
    let d = Daemon::start_with_config(&format!(
        "docker-config = {:?}\ncredential-helpers-dir = {:?}\n",
        helper_cfg, helpers
    ))
    .await;
    let mut img = d.images().await;
    pull(&mut img, &name, None)
        .await
        .expect("pull with a credential helper");
    let asked = std::fs::read_to_string(cfg_dir.path().join("asked")).unwrap();
    assert_eq!(asked.trim(), reg.host);
    assert!(!d.log().contains(PASSWORD));
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_registry_needs_its_ca() {
    let reg = Registry::start(Mode::Tls);
    reg.push(layout(), IMAGE, "busybox:tls");
    let name = format!("{}/busybox:tls", reg.host);
    // Without the CA: the certificate is refused (and plain HTTP does not help).
    let d = Daemon::start().await;
    let mut img = d.images().await;
    let e = pull(&mut img, &name, None).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e}");
    assert!(
        e.message().contains(&reg.host) && e.message().contains("certificate"),
        "{e}"
    );
    eprintln!("TLS without CA: {:?}: {}", e.code(), e.message());
    d.shutdown().await;
    // With the CA configured for this host: pulled over verified TLS.
    let d = Daemon::start_with_config(&format!(
        "[registries.\"{}\"]\nca-file = {:?}\n",
        reg.host,
        reg.ca()
    ))
    .await;
    let mut img = d.images().await;
    pull(&mut img, &name, None)
        .await
        .expect("pull over TLS with the CA");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mirror_serves_an_image_under_another_registry_name() {
    let reg = Registry::start(Mode::Open);
    reg.push(layout(), IMAGE, "pause:3.10");
    let d = Daemon::start_with_config(&format!(
        "[registries.\"registry.k8s.io\"]\nmirrors = [\"http://{}\"]\n",
        reg.host
    ))
    .await;
    let mut img = d.images().await;
    let id = pull(&mut img, "registry.k8s.io/pause:3.10", None)
        .await
        .expect("pull through the mirror");
    let st = image_status(&mut img, &id).await.unwrap();
    assert_eq!(st.repo_tags, ["registry.k8s.io/pause:3.10"]);
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_for_another_platform_only_is_a_clear_error() {
    let reg = Registry::start(Mode::Open);
    // A copy of the test image whose config says arm64 (or amd64 on an arm64 host).
    let other = if cfg!(target_arch = "x86_64") {
        "arm64"
    } else {
        "amd64"
    };
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("layout");
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(layout())
        .arg(&copy)
        .status()
        .unwrap();
    assert!(ok.success());
    let ok = std::process::Command::new("umoci")
        .args(["config", "--image"])
        .arg(format!("{}:{IMAGE}", copy.display()))
        .arg(format!("--architecture={other}"))
        .status()
        .unwrap();
    assert!(ok.success());
    reg.push(&copy, IMAGE, "busybox:other");
    let d = Daemon::start().await;
    let mut img = d.images().await;
    let e = pull(&mut img, &format!("{}/busybox:other", reg.host), None)
        .await
        .unwrap_err();
    assert!(
        e.message().contains(&format!("linux/{other}")) && e.message().contains("no image for"),
        "{e}"
    );
    eprintln!("other platform: {}", e.message());
    // Only the config was fetched: no layer of an unusable image.
    assert_eq!(
        reg.log()
            .lines()
            .filter(|l| l.contains("\"GET /v2/busybox/blobs/") && l.contains("\" 200 "))
            .count(),
        1,
        "{}",
        reg.log()
    );
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_index_gives_this_hosts_manifest_and_resolves_by_its_digest() {
    let reg = Registry::start(Mode::Open);
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("layout");
    sh(&format!("cp -a {} {}", layout().display(), copy.display()));
    let other = if cfg!(target_arch = "x86_64") {
        "arm64"
    } else {
        "amd64"
    };
    let ours = if other == "arm64" { "amd64" } else { "arm64" };
    sh(&format!(
        "umoci config --image {}:{IMAGE} --tag other --architecture={other}",
        copy.display()
    ));
    // An OCI index listing the other platform first, then ours.
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(copy.join("index.json")).unwrap()).unwrap();
    let desc = |tag: &str| {
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| {
                let n = m["annotations"]["org.opencontainers.image.ref.name"].as_str();
                n == Some(tag)
            })
            .unwrap_or_else(|| panic!("{tag} in {index}"))
            .clone()
    };
    let with_platform = |mut d: serde_json::Value, arch: &str| {
        d.as_object_mut().unwrap().remove("annotations");
        d["platform"] = serde_json::json!({"os": "linux", "architecture": arch});
        d
    };
    let multi = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [with_platform(desc("other"), other), with_platform(desc(IMAGE), ours)],
    });
    let bytes = serde_json::to_vec(&multi).unwrap();
    let blob = dir.path().join("index.blob");
    std::fs::write(&blob, &bytes).unwrap();
    let hex = sh(&format!("sha256sum {} | cut -d' ' -f1", blob.display()));
    std::fs::copy(&blob, copy.join("blobs/sha256").join(&hex)).unwrap();
    let mut top = index.clone();
    top["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": format!("sha256:{hex}"),
            "size": bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multi"},
        }));
    std::fs::write(copy.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    reg.push(&copy, "multi", "busybox:multi");
    reg.push(&copy, IMAGE, "busybox:single");

    let d = Daemon::start().await;
    let mut img = d.images().await;
    let single = pull(&mut img, &format!("{}/busybox:single", reg.host), None)
        .await
        .expect("pull single");
    let id = pull(&mut img, &format!("{}/busybox:multi", reg.host), None)
        .await
        .expect("pull through the index");
    assert_eq!(
        id, single,
        "the index's {ours} manifest is the single image"
    );
    let by_index = format!("{}/busybox@sha256:{hex}", reg.host);
    assert_eq!(
        pull(&mut img, &by_index, None)
            .await
            .expect("pull by index digest"),
        id
    );
    assert_eq!(
        image_status(&mut img, &by_index).await.map(|i| i.id),
        Some(id)
    );
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_that_never_answers_gives_deadline_exceeded() {
    // A listener that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = silent.local_addr().unwrap().to_string();
    let d = Daemon::start().await;
    let mut img = d.images().await;
    let mut req = tonic::Request::new(v1::PullImageRequest {
        image: Some(v1::ImageSpec {
            image: format!("{host}/busybox:1"),
            ..Default::default()
        }),
        ..Default::default()
    });
    req.set_timeout(Duration::from_secs(2));
    let started = std::time::Instant::now();
    let e = img.pull_image(req).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::DeadlineExceeded, "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(silent);
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_layer_leaves_no_image_and_the_next_pull_completes() {
    let reg = Registry::start(Mode::Open);
    reg.push(layout(), IMAGE, "busybox:1");
    // The layer as the registry stores it: replace its bytes (same size) with garbage.
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(layout().join("index.json")).unwrap())
            .unwrap();
    let mdigest = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(layout().join("blobs/sha256").join(&mdigest[7..])).unwrap(),
    )
    .unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap()[7..].to_owned();
    let data = reg
        .dir
        .path()
        .join("data/docker/registry/v2/blobs/sha256")
        .join(&layer[..2])
        .join(&layer)
        .join("data");
    let good = std::fs::read(&data).expect("layer in registry storage");
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(&data, &bad).unwrap();

    let d = Daemon::start().await;
    let mut img = d.images().await;
    let name = format!("{}/busybox:1", reg.host);
    let e = pull(&mut img, &name, None).await.unwrap_err();
    assert!(e.message().contains(&layer), "names the blob: {e}");
    assert!(
        image_status(&mut img, &name).await.is_none(),
        "no image after a failed pull"
    );
    // The registry is fixed: the next pull completes.
    std::fs::write(&data, &good).unwrap();
    let id = pull(&mut img, &name, None)
        .await
        .expect("pull after repair");
    assert_eq!(image_status(&mut img, &name).await.map(|i| i.id), Some(id));
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn image_gc_removes_unused_images_only() {
    let reg = Registry::start(Mode::Open);
    reg.push(layout(), IMAGE, "busybox:used");
    // A second image (another config, same layer).
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("layout");
    sh(&format!("cp -a {} {}", layout().display(), copy.display()));
    sh(&format!(
        "umoci config --image {}:{IMAGE} --config.env GC_TEST=1",
        copy.display()
    ));
    reg.push(&copy, IMAGE, "busybox:unused");
    // Thresholds at 0%: any usage is above them, so GC frees every image it may once it is
    // older than the minimum age (which gives the test time to create its container).
    let d = Daemon::start_with_config(
        "image-gc-high-threshold-percent = 0\nimage-gc-low-threshold-percent = 0\nimage-gc-min-age-secs = 4\nimage-gc-interval-secs = 1\n",
    )
    .await;
    let mut img = d.images().await;
    let used = format!("{}/busybox:used", reg.host);
    let unused = format!("{}/busybox:unused", reg.host);
    let used_id = pull(&mut img, &used, None).await.expect("pull used");
    let unused_id = pull(&mut img, &unused, None).await.expect("pull unused");
    assert_ne!(used_id, unused_id);
    let mut rt = d.runtime().await;
    let pod_cfg = pod_config("gc", &d.dir.path().join("logs"));
    let pod = run_pod(&mut rt, &pod_cfg).await;
    let mut cfg = sh_container("keep", "sleep 3600");
    cfg.image = Some(v1::ImageSpec {
        image: used.clone(),
        ..Default::default()
    });
    run_container(&mut rt, &pod, &pod_cfg, cfg).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while image_status(&mut img, &unused_id).await.is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "unused image not collected:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Several more passes: the image in use stays.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        image_status(&mut img, &used).await.map(|i| i.id),
        Some(used_id)
    );
    d.shutdown().await;
}

/// Run a shell command, fail on error, return its trimmed stdout.
fn sh(cmd: &str) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Fail if any regular file under `dir` contains `needle`.
fn assert_no_file_contains(dir: &std::path::Path, needle: &str) {
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file() && m.len() < 16 << 20 {
                let bytes = std::fs::read(&p).unwrap_or_default();
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "{} contains a secret",
                    p.display()
                );
            }
        }
    }
}
