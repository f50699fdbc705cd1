//! Support for Kinglet's end-to-end tests: real daemons on private paths, driven over their
//! unix socket with the project's own CRI client, running real containers from a test image the
//! tests build from Debian's `busybox-static`.
//!
//! These tests need root (namespaces, mounts, cgroups). Without it they fail loudly rather than
//! pass: see [`require_root`].

mod diag;
pub mod rawnet;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
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
        "kinglet binary not found at {} (build it first: cargo build --bin kinglet --bin kinglet-shim --bin kinglet-pod-init, or set KINGLET_BIN)",
        p.display()
    );
    p
}

/// The test image: (OCI layout dir, oci-archive tar). Built once per set of inputs (the build
/// script and the host's busybox) into `target/test-image/<key>/` and shared by every test
/// process from then on, so test runs leave nothing in the temporary directory.
pub fn test_image() -> &'static (PathBuf, PathBuf) {
    static IMG: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    IMG.get_or_init(|| {
        use std::hash::{Hash, Hasher};
        let script = workspace().join("tests/images/build-busybox-image.sh");
        let mut key = std::collections::hash_map::DefaultHasher::new();
        std::fs::read(&script).unwrap_or_default().hash(&mut key);
        IMAGE.hash(&mut key);
        if let Ok(m) = std::fs::metadata("/bin/busybox") {
            (m.len(), m.modified().ok()).hash(&mut key);
        }
        let cache = workspace().join("target/test-image");
        let dir = cache.join(format!("{:016x}", key.finish()));
        if !dir.join("busybox.tar").exists() {
            // Built aside and renamed into place, so a concurrent test process never sees half
            // an image; the loser of a race uses the winner's.
            let tmp = cache.join(format!("building-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&tmp);
            std::fs::create_dir_all(&cache).unwrap();
            let out = Command::new("bash")
                .arg(&script)
                .arg(&tmp)
                .arg(IMAGE)
                .output()
                .expect("run build-busybox-image.sh");
            assert!(
                out.status.success(),
                "building the test image failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if std::fs::rename(&tmp, &dir).is_err() {
                let _ = std::fs::remove_dir_all(&tmp);
            }
        }
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

/// The pod network of one test daemon: a bridge, CIDR and nftables table of its own, so that
/// daemons of tests running side by side never share addresses or rules.
#[derive(Debug, Clone)]
pub struct TestNet {
    pub bridge: String,
    /// The /24 pod network, e.g. `10.213.7.0/24`.
    pub cidr: String,
    /// Its third octet.
    pub octet: u8,
    pub table: String,
}

impl TestNet {
    fn next() -> TestNet {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let octet = ((pid.wrapping_mul(16).wrapping_add(n)) % 250 + 1) as u8;
        TestNet {
            bridge: format!("kt{}x{n}", pid % 1_000_000),
            cidr: format!("10.213.{octet}.0/24"),
            octet,
            table: format!("kt_{pid}_{n}"),
        }
    }

    /// The bridge's (gateway) address.
    pub fn gateway(&self) -> String {
        format!("10.213.{}.1", self.octet)
    }
}

/// One daemon with its own socket, root and run-root, in a temporary directory.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub root: PathBuf,
    pub run_root: PathBuf,
    pub net: TestNet,
    /// Extra daemon flags (e.g. CNI mode).
    pub extra_args: Vec<String>,
    /// Daemon config file passed with `--config`, if any.
    pub config: Option<PathBuf>,
    child: Option<Child>,
}

impl Daemon {
    /// Start a daemon and wait until its socket answers.
    pub async fn start() -> Daemon {
        Daemon::start_configured(|_| Vec::new()).await
    }

    /// Start a daemon in CNI mode: a conflist of Debian's `bridge` (with `host-local` IPAM on
    /// `10.215.<octet>.0/24`, masquerade) and `portmap` plugins, on the daemon's own bridge.
    pub async fn start_cni() -> Daemon {
        Daemon::start_configured(|d| {
            let conf = d.dir.path().join("cni-conf");
            std::fs::create_dir_all(&conf).unwrap();
            let list = serde_json::json!({
                "cniVersion": "1.0.0",
                "name": format!("kinglet-test-{}", d.net.octet),
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": d.net.bridge,
                        "isGateway": true,
                        "ipMasq": true,
                        "hairpinMode": true,
                        "ipam": {
                            "type": "host-local",
                            "ranges": [[{"subnet": format!("10.215.{}.0/24", d.net.octet)}]],
                            "routes": [{"dst": "0.0.0.0/0"}],
                            "dataDir": d.dir.path().join("cni-ipam"),
                        }
                    },
                    {"type": "portmap", "capabilities": {"portMappings": true}}
                ]
            });
            std::fs::write(conf.join("10-kinglet-test.conflist"), list.to_string()).unwrap();
            vec!["--cni-conf-dir".into(), conf.display().to_string()]
        })
        .await
    }

    /// Start a daemon with extra flags computed from its paths and network names.
    pub async fn start_configured(extra: impl FnOnce(&Daemon) -> Vec<String>) -> Daemon {
        Self::start_full("", extra).await
    }

    /// Start a daemon with `toml` as its config file (none when empty).
    pub async fn start_with_config(toml: &str) -> Daemon {
        Self::start_full(toml, |_| Vec::new()).await
    }

    async fn start_full(toml: &str, extra: impl FnOnce(&Daemon) -> Vec<String>) -> Daemon {
        let mut d = Daemon::unstarted(toml, extra);
        d.spawn().await;
        d
    }

    /// A daemon's paths, network and config, not started yet: a test that starts the process
    /// itself uses [`Daemon::command`] and hands the child to [`Daemon::adopt`] (for cleanup).
    pub fn unstarted(toml: &str, extra: impl FnOnce(&Daemon) -> Vec<String>) -> Daemon {
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
            net: TestNet::next(),
            extra_args: Vec::new(),
            child: None,
        };
        d.extra_args = extra(&d);
        if !toml.is_empty() {
            let p = d.dir.path().join("kinglet.toml");
            std::fs::write(&p, toml).unwrap();
            d.config = Some(p);
        }
        d
    }

    /// The daemon's command line on its paths and network, logging to its `daemon.log`.
    pub fn command(&self) -> Command {
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
        cmd.arg("--socket")
            .arg(&self.socket)
            .arg("--root")
            .arg(&self.root)
            .arg("--run-root")
            .arg(&self.run_root)
            .arg("--manifests")
            .arg(self.manifests())
            .args(self.net_args())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        cmd
    }

    /// Take over a daemon process started from [`Daemon::command`].
    pub fn adopt(&mut self, child: Child) {
        self.child = Some(child);
    }

    /// The daemon process, when running.
    pub fn child(&mut self) -> Option<&mut Child> {
        self.child.as_mut()
    }

    /// Network flags: the test network's, unless `extra_args` sets one itself; then the extras.
    fn net_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (flag, value) in [
            ("--bridge", &self.net.bridge),
            ("--pod-cidr", &self.net.cidr),
            ("--nft-table", &self.net.table),
        ] {
            if !self.extra_args.iter().any(|a| a == flag) {
                out.extend([flag.to_owned(), value.clone()]);
            }
        }
        out.extend(self.extra_args.iter().cloned());
        out
    }

    /// (Re)start the daemon process on the same paths.
    pub async fn spawn(&mut self) {
        let child = self.command().spawn().expect("start kinglet daemon");
        self.child = Some(child);
        self.wait_answering(None).await;
    }

    /// (Re)start the daemon with the crash point `point` armed (`kinglet_fault::ENV`) and wait
    /// until it answers; unlike [`Daemon::spawn`] an exit is not checked here (the point may be
    /// hit by the caller's next request).
    pub async fn start_armed(&mut self, point: &str) {
        let mut cmd = self.command();
        cmd.env(kinglet_fault::ENV, point);
        self.adopt(cmd.spawn().expect("start kinglet daemon"));
        self.wait_answering(Some(point)).await;
    }

    /// Wait up to 20 s until the daemon answers Version; an exit at start fails at once unless
    /// a crash point (`armed`) may end it.
    async fn wait_answering(&mut self, armed: Option<&str>) {
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
            if armed.is_none() {
                if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                    panic!("daemon exited at start ({st}); log:\n{}", self.log());
                }
            }
            assert!(
                Instant::now() < deadline,
                "daemon{} did not answer within 20 s; log:\n{}",
                armed
                    .map(|p| format!(" (armed at {p})"))
                    .unwrap_or_default(),
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The daemon's manifests directory.
    pub fn manifests(&self) -> PathBuf {
        self.dir.path().join("manifests")
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

    /// Run the `kinglet` CLI against this daemon: `--socket` goes right after the verb.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(kinglet_bin());
        if let Some((verb, rest)) = args.split_first() {
            cmd.arg(verb).arg("--socket").arg(&self.socket).args(rest);
        }
        cmd.output().expect("run kinglet cli")
    }

    /// Run the CLI and return its stdout, failing the test (with stderr) if it fails.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "kinglet {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
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
        // Helpers whose arguments point into this daemon's run root: shims, pod inits, container
        // inits that never exec'd (a controller may create a pod while `shutdown` removes the
        // others).
        // A shim forks itself while starting: scan until a pass finds nothing.
        let mine = self.run_root.display().to_string();
        for _ in 0..20 {
            let mut found = false;
            for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<i32>().ok()) else {
                    continue;
                };
                let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmdline).contains(&mine) {
                    found = true;
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            if !found {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for m in all_mounts_under(self.dir.path()).into_iter().rev() {
            let _ = nix::mount::umount2(Path::new(&m), nix::mount::MntFlags::MNT_DETACH);
        }
        remove_pod_cgroups(&self.run_root);
        // The daemon leaves its bridge and table for the next start; a test daemon has none.
        let _ = Command::new("ip")
            .args(["link", "del", &self.net.bridge])
            .stderr(Stdio::null())
            .status();
        for table in [self.net.table.clone(), format!("{}_svc", self.net.table)] {
            let _ = Command::new("nft")
                .args(["delete", "table", "ip", &table])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Remove the pod cgroups (`/kinglet/<sandbox id>` in every hierarchy, containers' below them)
/// of the sandboxes still recorded under `run_root`: a daemon killed with pods running leaves
/// them (its processes are gone by now), and empty cgroups pile up on the host otherwise.
fn remove_pod_cgroups(run_root: &Path) {
    let Ok(pods) = std::fs::read_dir(run_root.join("pods")) else {
        return;
    };
    let ids: Vec<_> = pods.flatten().map(|e| e.file_name()).collect();
    let hierarchies: Vec<_> = std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .chain([PathBuf::from("/sys/fs/cgroup")])
        .collect();
    for h in &hierarchies {
        for id in &ids {
            let pod = h.join("kinglet").join(id);
            for c in std::fs::read_dir(&pod).into_iter().flatten().flatten() {
                if c.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    let _ = std::fs::remove_dir(c.path());
                }
            }
            let _ = std::fs::remove_dir(&pod);
        }
    }
}

/// Run a command, panicking with its output when it fails; returns its stdout.
pub fn sh(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace the test makes to stand for a machine outside the node: joined to the
/// host by its own veth pair on a /30 (`10.214.<octet>.1` on the host, `.2` inside), with no
/// route to the pod network, so pods reach it only through the node's masquerade.
pub struct OutsideNs {
    pub name: String,
    pub host_veth: String,
    pub host_ip: String,
    pub ns_ip: String,
}

impl OutsideNs {
    pub fn new(net: &TestNet) -> OutsideNs {
        let name = format!("{}o", net.table);
        let host_veth = format!("{}h", net.bridge);
        let peer = format!("{}p", net.bridge);
        let (host_ip, ns_ip) = (
            format!("10.214.{}.1", net.octet),
            format!("10.214.{}.2", net.octet),
        );
        let o = OutsideNs {
            name: name.clone(),
            host_veth: host_veth.clone(),
            host_ip: host_ip.clone(),
            ns_ip: ns_ip.clone(),
        };
        sh("ip", &["netns", "add", &name]);
        sh(
            "ip",
            &[
                "link", "add", &host_veth, "type", "veth", "peer", "name", &peer, "netns", &name,
            ],
        );
        sh(
            "ip",
            &["addr", "add", &format!("{host_ip}/30"), "dev", &host_veth],
        );
        sh("ip", &["link", "set", &host_veth, "up"]);
        let ns_cidr = format!("{ns_ip}/30");
        for args in [
            ["addr", "add", ns_cidr.as_str(), "dev", peer.as_str()],
            ["link", "set", peer.as_str(), "up", ""],
            ["link", "set", "lo", "up", ""],
        ] {
            let mut all = vec!["-n", name.as_str()];
            all.extend(args.iter().copied().filter(|a| !a.is_empty()));
            sh("ip", &all);
        }
        o
    }

    /// A command running inside the namespace (not waited for).
    pub fn spawn(&self, args: &[&str]) -> Child {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn in outside netns")
    }

    /// Run a command inside the namespace to completion.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .expect("run in outside netns")
    }
}

impl Drop for OutsideNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_veth])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Mount points at or below `dir`, in mount order, except the daemon's own secrets store
/// (`<run-root>/secrets`, a tmpfs that lives as long as the daemon's state).
pub fn mounts_under(dir: &Path) -> Vec<String> {
    all_mounts_under(dir)
        .into_iter()
        .filter(|m| !m.ends_with("/run/secrets"))
        .collect()
}

/// Every mount point at or below `dir`, in mount order.
pub fn all_mounts_under(dir: &Path) -> Vec<String> {
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

/// Run a pod sandbox; returns its id.
pub async fn run_pod(rt: &mut RuntimeServiceClient<Channel>, cfg: &v1::PodSandboxConfig) -> String {
    rt.run_pod_sandbox(v1::RunPodSandboxRequest {
        config: Some(cfg.clone()),
        ..Default::default()
    })
    .await
    .expect("RunPodSandbox")
    .into_inner()
    .pod_sandbox_id
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

// ---- pods from manifests (`kinglet apply` / `get -o json`) ----

/// Write `text` to `dir/name`; the path as a string.
pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// The pod as `kinglet get pod NAME -o json` shows it.
pub fn pod_json(d: &Daemon, name: &str) -> serde_json::Value {
    serde_json::from_str(&d.cli_ok(&["get", "pod", name, "-o", "json"])).unwrap()
}

/// Poll `f` every 100 ms until it holds; panic naming `what` after `within`.
pub fn wait_for(what: &str, within: Duration, f: impl FnMut() -> bool) {
    assert!(poll_until(within, f), "timed out waiting for {what}");
}

/// Poll `f` every 100 ms until it holds (true) or `within` has passed (false).
pub fn poll_until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while !f() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

/// The containerID of container `name` in a pod's JSON status ("" while it has none).
pub fn container_id(pod: &serde_json::Value, name: &str) -> String {
    pod["status"]["containerStatuses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .and_then(|c| c["containerID"].as_str())
        .unwrap_or("")
        .to_string()
}

/// An HTTP GET from the host (this test process), retried while the server starts.
pub fn http_get_from_host(addr: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let attempt = (|| -> std::io::Result<String> {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect_timeout(
                &addr.parse().unwrap(),
                Duration::from_secs(3),
            )?;
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })();
        match attempt {
            Ok(body) if body.contains("200 OK") => return body,
            other => assert!(Instant::now() < deadline, "GET {addr}: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Stop and remove a pod sandbox (and so its containers), failing the test on an error.
pub async fn remove_pod(rt: &mut RuntimeServiceClient<Channel>, pod: &str) {
    rt.stop_pod_sandbox(v1::StopPodSandboxRequest {
        pod_sandbox_id: pod.into(),
    })
    .await
    .expect("StopPodSandbox");
    rt.remove_pod_sandbox(v1::RemovePodSandboxRequest {
        pod_sandbox_id: pod.into(),
    })
    .await
    .expect("RemovePodSandbox");
}

/// `cfg` with one PID namespace for the whole pod (CRI `NamespaceMode::POD`).
pub fn with_pod_pid_namespace(mut cfg: v1::PodSandboxConfig) -> v1::PodSandboxConfig {
    cfg.linux = Some(v1::LinuxPodSandboxConfig {
        security_context: Some(v1::LinuxSandboxSecurityContext {
            namespace_options: Some(v1::NamespaceOption {
                pid: v1::NamespaceMode::Pod as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    cfg
}
