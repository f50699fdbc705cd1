//! A full disk under the daemon's root (a small tmpfs mounted at `--root`, filled by a file):
//! pulling from a registry (full, or with less space than the image needs) and importing an
//! image (blob ingest and unpack) fail with a clear error and leave no image visible, and work
//! once space is back; a pod whose records cannot be written is refused
//! and leaves no record, and a daemon restarted afterwards recovers; a container whose log
//! cannot be written keeps running, its shim logs the failure once, and its log resumes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kinglet_proto::v1;
use kinglet_tests::registry::{Mode, Registry};
use kinglet_tests::*;

/// Fill the file system holding `dir` with one file, until ENOSPC.
fn fill(dir: &Path) -> PathBuf {
    let p = dir.join("filler");
    let mut f = std::fs::File::create(&p).unwrap();
    let chunk = vec![0xa5u8; 64 * 1024];
    loop {
        if let Err(e) = f.write_all(&chunk) {
            assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
            break;
        }
    }
    // Small leftovers (a partial chunk) too.
    while f.write_all(&[0u8; 512]).is_ok() {}
    p
}

struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

fn mount_tmpfs(at: &Path, size: &str) -> Tmpfs {
    std::fs::create_dir_all(at).unwrap();
    sh(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0700"),
            "tmpfs",
            at.to_str().unwrap(),
        ],
    );
    Tmpfs(at.to_owned())
}

fn lines_of(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" stdout F n "))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_fails_imports_pods_and_logs_cleanly_and_recovers() {
    let mut d = Daemon::unstarted("", |_| Vec::new());
    let _root_fs = mount_tmpfs(&d.root, "48m");
    d.spawn().await;

    // Image import (ingest + unpack) on a full disk: a clear error, no image listed.
    let filler = fill(&d.root);
    let (_, archive) = test_image();
    let out = d.cli(&["image", "import", archive.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "import succeeded on a full disk");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(
        !d.cli_ok(&["image", "ls"]).contains("busybox"),
        "no half image is visible"
    );
    std::fs::remove_file(&filler).unwrap();
    d.import_test_image().await;
    assert!(d.cli_ok(&["image", "ls"]).contains("busybox"));

    // A running container whose log cannot be written keeps running; its log resumes.
    let mut rt = d.runtime().await;
    let logs = d.root.join("pod-logs");
    let cfg = pod_config("logger", &logs);
    let pod = run_pod(&mut rt, &cfg).await;
    let c = run_container(
        &mut rt,
        &pod,
        &cfg,
        sh_container(
            "c",
            "i=0; while true; do echo n $i; i=$((i+1)); sleep 0.1; done",
        ),
    )
    .await;
    let log = logs.join("c.log");
    wait_for("log lines", Duration::from_secs(20), || lines_of(&log) > 5);
    let filler = fill(&d.root);
    // The log file's last page takes a few more lines; then writes fail and it stops growing.
    let mut last = (lines_of(&log), std::time::Instant::now());
    wait_for("the log to stop growing", Duration::from_secs(60), || {
        let n = lines_of(&log);
        if n != last.0 {
            last = (n, std::time::Instant::now());
        }
        last.1.elapsed() > Duration::from_secs(2)
    });
    let st = status(&mut rt, &c).await;
    assert_eq!(st.state, v1::ContainerState::ContainerRunning as i32);
    // Pod records cannot be written either: refused, and no record is left.
    let before = rt
        .list_pod_sandbox(v1::ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items
        .len();
    let refused = rt
        .run_pod_sandbox(v1::RunPodSandboxRequest {
            config: Some(pod_config("nospace", &logs)),
            ..Default::default()
        })
        .await;
    let e = refused.expect_err("RunPodSandbox on a full disk");
    assert!(e.message().contains("No space left on device"), "{e:?}");
    let after = rt
        .list_pod_sandbox(v1::ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(after.len(), before, "{after:?}");
    // What it had set up before the failing write is rolled back: one address, one pod dir.
    let count = |d: PathBuf| std::fs::read_dir(d).map_or(0, |r| r.count());
    assert_eq!(count(d.run_root.join("network/ipam")), 1);
    assert_eq!(count(d.run_root.join("network/pods")), 1);
    assert_eq!(count(d.run_root.join("pods")), 1);

    let n = lines_of(&log);
    std::fs::remove_file(&filler).unwrap();
    wait_for("the log resumes", Duration::from_secs(20), || {
        lines_of(&log) > n + 5
    });
    let shim_log = std::fs::read_to_string(
        d.run_root
            .join("containers")
            .join(&c)
            .join("shim")
            .join("shim.log"),
    )
    .unwrap_or_default();
    assert_eq!(
        shim_log.matches("writing container log failed").count(),
        1,
        "the failure is logged once: {shim_log}"
    );
    assert!(
        shim_log.contains("container log written again"),
        "{shim_log}"
    );

    // Every record on disk parses, and a restarted daemon recovers all of it.
    for kind in ["sandboxes", "containers"] {
        for e in std::fs::read_dir(d.root.join("state").join(kind))
            .unwrap()
            .flatten()
        {
            let b = std::fs::read(e.path()).unwrap();
            serde_json::from_slice::<serde_json::Value>(&b)
                .unwrap_or_else(|err| panic!("{}: {err}", e.path().display()));
        }
    }
    d.kill9();
    d.spawn().await;
    let mut rt = d.runtime().await;
    assert_eq!(
        status(&mut rt, &c).await.state,
        v1::ContainerState::ContainerRunning as i32
    );
    let again = run_pod(&mut rt, &pod_config("nospace", &logs)).await;
    remove_pod(&mut rt, &again).await;
    remove_pod(&mut rt, &pod).await;
    d.shutdown().await;
}

async fn pull(d: &Daemon, image: &str) -> Result<String, tonic::Status> {
    d.images()
        .await
        .pull_image(v1::PullImageRequest {
            image: Some(v1::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().image_ref)
}

async fn images(d: &Daemon) -> usize {
    d.images()
        .await
        .list_images(v1::ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images
        .len()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pull_on_a_full_disk_fails_clearly_and_works_once_space_is_back() {
    let reg = Registry::start(Mode::Open);
    reg.push(&test_image().0, IMAGE, "team/busybox:latest");
    let image = format!("{}/team/busybox:latest", reg.host);
    let mut d = Daemon::unstarted("", |_| Vec::new());
    let _root_fs = mount_tmpfs(&d.root, "48m");
    d.spawn().await;

    // No space at all, then 512 KiB: less than the image's layer and its unpacked files.
    let filler = fill(&d.root);
    for free in [0u64, 512 * 1024] {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&filler)
            .unwrap();
        let len = f.metadata().unwrap().len();
        f.set_len(len - free).unwrap();
        let e = pull(&d, &image).await.expect_err("a pull on a full disk");
        assert!(
            e.message().contains("No space left on device"),
            "{free} bytes free: {e:?}"
        );
        assert_eq!(
            images(&d).await,
            0,
            "no image is visible after a failed pull"
        );
    }
    std::fs::remove_file(&filler).unwrap();
    let id = pull(&d, &image).await.expect("the pull once space is back");
    assert!(id.starts_with("sha256:"), "{id}");
    // The image is whole: a container runs from it.
    let mut rt = d.runtime().await;
    let cfg = pod_config("afterfull", &d.dir.path().join("logs"));
    let pod = run_pod(&mut rt, &cfg).await;
    let mut c = sh_container("c", "echo ok");
    c.image = Some(v1::ImageSpec {
        image: image.clone(),
        ..Default::default()
    });
    let c = run_container(&mut rt, &pod, &cfg, c).await;
    let st = wait_exited(&mut rt, &c, Duration::from_secs(30)).await;
    assert_eq!(st.exit_code, 0, "{st:?}");
    remove_pod(&mut rt, &pod).await;
    d.shutdown().await;
}
