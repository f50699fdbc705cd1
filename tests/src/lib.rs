//! Support for Kinglet's end-to-end tests: real daemons on private paths, driven over their
//! unix socket with the project's own CRI client, running real containers from a test image the
//! tests build from Debian's `busybox-static`.
//!
//! These tests need root (namespaces, mounts, cgroups). Without it they fail loudly rather than
//! pass: see [`require_root`].

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use kinglet_proto::v1;
use kinglet_proto::v1::image_service_client::ImageServiceClient;
use kinglet_proto::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

pub mod registry;

/// Name the test image is tagged with.
pub const IMAGE: &str = "kinglet.test/busybox:latest";

/// Fail (never skip silently) when not root: these tests exercise kernel features that need it.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this end-to-end test needs root (namespaces, mounts, cgroups); run it as root, as CI does"
    );
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The `kinglet` binary under test: `$KINGLET_BIN`, else the workspace's debug build.
pub fn kinglet_bin() -> PathBuf {
    let p = std::env::var_os("KINGLET_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/debug/kinglet"));
    assert!(
        p.exists(),
        "kinglet binary not found at {} (build it first: cargo build --bin kinglet, or set KINGLET_BIN)",
        p.display()
    );
    p
}

/// The test image, built once per test process: (OCI layout dir, oci-archive tar).
pub fn test_image() -> &'static (PathBuf, PathBuf) {
    static IMG: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    IMG.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("kinglet-test-image-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let script = workspace().join("tests/images/build-busybox-image.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .arg(IMAGE)
            .output()
            .expect("run build-busybox-image.sh");
        assert!(
            out.status.success(),
            "building the test image failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (dir.join("layout"), dir.join("busybox.tar"))
    })
}

/// A gRPC channel over a unix socket.
pub async fn connect(path: &Path) -> Result<Channel, tonic::transport::Error> {
    let path = path.to_owned();
    Endpoint::try_from("http://[::1]:50051")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let s = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(s))
            }
        }))
        .await
}

/// One daemon with its own socket, root and run-root, in a temporary directory.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub root: PathBuf,
    pub run_root: PathBuf,
    /// Daemon config file passed with `--config`, if any.
    pub config: Option<PathBuf>,
    child: Option<Child>,
}

impl Daemon {
    /// Start a daemon and wait until its socket answers.
    pub async fn start() -> Daemon {
        Self::start_with_config("").await
    }

    /// Start a daemon with `toml` as its config file (none when empty).
    pub async fn start_with_config(toml: &str) -> Daemon {
        require_root();
        let mut dir = tempfile::Builder::new()
            .prefix("kinglet-e2e-")
            .tempdir()
            .unwrap();
        // KINGLET_TEST_KEEP=1 keeps each test's directory (daemon log, shim logs) for debugging.
        if std::env::var_os("KINGLET_TEST_KEEP").is_some() {
            dir.disable_cleanup(true);
            eprintln!("keeping {}", dir.path().display());
        }
        let mut d = Daemon {
            socket: dir.path().join("kinglet.sock"),
            root: dir.path().join("root"),
            run_root: dir.path().join("run"),
            config: None,
            dir,
            child: None,
        };
        if !toml.is_empty() {
            let p = d.dir.path().join("kinglet.toml");
            std::fs::write(&p, toml).unwrap();
            d.config = Some(p);
        }
        d.spawn().await;
        d
    }

    /// (Re)start the daemon process on the same paths.
    pub async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("daemon.log"))
            .unwrap();
        let mut cmd = Command::new(kinglet_bin());
        cmd.arg("daemon");
        if let Some(c) = &self.config {
            cmd.arg("--config").arg(c);
        }
        let child = cmd
            .arg("--socket")
            .arg(&self.socket)
            .arg("--root")
            .arg(&self.root)
            .arg("--run-root")
            .arg(&self.run_root)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start kinglet daemon");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(ch) = connect(&self.socket).await {
                if RuntimeServiceClient::new(ch)
                    .version(v1::VersionRequest::default())
                    .await
                    .is_ok()
                {
                    return;
                }
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("daemon exited at start ({st}); log:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not answer within 20 s; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The daemon's own log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// SIGKILL the daemon (containers must survive it).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub async fn runtime(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(connect(&self.socket).await.expect("connect"))
    }

    pub async fn images(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(connect(&self.socket).await.expect("connect"))
    }

    /// Run `kinglet` CLI against this daemon.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut all: Vec<&str> = Vec::new();
        let sock = self.socket.display().to_string();
        all.extend_from_slice(args);
        let mut cmd = Command::new(kinglet_bin());
        cmd.args(&all).arg("--socket").arg(&sock);
        cmd.output().expect("run kinglet cli")
    }

    /// Import the test image through the CLI; returns its image id.
    pub async fn import_test_image(&self) -> String {
        let (_, archive) = test_image();
        let out = self.cli(&["image", "import", archive.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "kinglet image import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.split_whitespace()
            .next()
            .expect("image id printed")
            .to_owned()
    }

    /// Remove every pod through the CRI, then stop the daemon.
    pub async fn shutdown(mut self) {
        if self.child.is_some() {
            let mut rt = self.runtime().await;
            let pods = rt
                .list_pod_sandbox(v1::ListPodSandboxRequest::default())
                .await
                .map(|r| r.into_inner().items)
                .unwrap_or_default();
            for p in pods {
                let _ = rt
                    .remove_pod_sandbox(v1::RemovePodSandboxRequest {
                        pod_sandbox_id: p.id,
                    })
                    .await;
            }
        }
        self.kill9();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
        // Last-resort cleanup after a failed test: kill container inits, unmount what is left.
        if let Ok(rd) = std::fs::read_dir(self.run_root.join("containers")) {
            for e in rd.flatten() {
                let rec = e.path().join("shim/shim.json");
                if let Ok(text) = std::fs::read_to_string(rec) {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                        for k in ["init_pid", "shim_pid"] {
                            if let Some(pid) = v[k].as_i64() {
                                let _ = nix::sys::signal::kill(
                                    nix::unistd::Pid::from_raw(pid as i32),
                                    nix::sys::signal::Signal::SIGKILL,
                                );
                            }
                        }
                    }
                }
            }
        }
        for m in mounts_under(self.dir.path()).into_iter().rev() {
            let _ = nix::mount::umount2(Path::new(&m), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Mount points at or below `dir`, in mount order.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|m| m.starts_with(&prefix))
        .collect()
}

/// A pod sandbox config with the usual metadata.
pub fn pod_config(name: &str, log_dir: &Path) -> v1::PodSandboxConfig {
    v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: log_dir.display().to_string(),
        ..Default::default()
    }
}

/// A container config running `sh -c script` from the test image.
pub fn sh_container(name: &str, script: &str) -> v1::ContainerConfig {
    v1::ContainerConfig {
        metadata: Some(v1::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(v1::ImageSpec {
            image: IMAGE.into(),
            ..Default::default()
        }),
        command: vec!["sh".into(), "-c".into(), script.into()],
        log_path: format!("{name}.log"),
        ..Default::default()
    }
}

/// Create and start a container; returns its id.
pub async fn run_container(
    rt: &mut RuntimeServiceClient<Channel>,
    pod: &str,
    pod_cfg: &v1::PodSandboxConfig,
    cfg: v1::ContainerConfig,
) -> String {
    let id = rt
        .create_container(v1::CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(cfg),
            sandbox_config: Some(pod_cfg.clone()),
        })
        .await
        .expect("CreateContainer")
        .into_inner()
        .container_id;
    rt.start_container(v1::StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .expect("StartContainer");
    id
}

/// ContainerStatus of `id`.
pub async fn status(rt: &mut RuntimeServiceClient<Channel>, id: &str) -> v1::ContainerStatus {
    rt.container_status(v1::ContainerStatusRequest {
        container_id: id.into(),
        verbose: true,
    })
    .await
    .expect("ContainerStatus")
    .into_inner()
    .status
    .expect("status present")
}

/// The container's init pid from the verbose status.
pub async fn init_pid(rt: &mut RuntimeServiceClient<Channel>, id: &str) -> i32 {
    let info = rt
        .container_status(v1::ContainerStatusRequest {
            container_id: id.into(),
            verbose: true,
        })
        .await
        .expect("ContainerStatus")
        .into_inner()
        .info;
    let v: serde_json::Value = serde_json::from_str(&info["info"]).unwrap();
    v["pid"].as_i64().unwrap() as i32
}

/// Wait until the container has exited; returns its status.
pub async fn wait_exited(
    rt: &mut RuntimeServiceClient<Channel>,
    id: &str,
    within: Duration,
) -> v1::ContainerStatus {
    let deadline = Instant::now() + within;
    loop {
        let s = status(rt, id).await;
        if s.state == v1::ContainerState::ContainerExited as i32 {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "container {id} still {:?} after {within:?}",
            s.state
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// ExecSync, returning (stdout, stderr, exit code).
pub async fn exec(
    rt: &mut RuntimeServiceClient<Channel>,
    id: &str,
    cmd: &[&str],
) -> (String, String, i32) {
    let r = rt
        .exec_sync(v1::ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: 30,
        })
        .await
        .unwrap_or_else(|e| panic!("ExecSync {cmd:?}: {e}"))
        .into_inner();
    (
        String::from_utf8_lossy(&r.stdout).into_owned(),
        String::from_utf8_lossy(&r.stderr).into_owned(),
        r.exit_code,
    )
}
