//! The runtime core: pod sandboxes and containers, in CRI terms. The CRI server (`cri/`) and,
//! later, the manifest supervisor both drive this one implementation.
//!
//! Owns: the record store, the image store handle, the per-object directories under `--root`
//! and `--run-root`, and the exit watchers of running containers. Multi-step operations keep a
//! rollback list that runs in reverse when a step fails.

mod attach;
pub mod cgroups;
pub mod config;
mod container;
mod container_create;
mod error;
mod events;
mod exec;
mod image_gc;
mod image_usage;
mod image_volume;
mod images;
pub mod metrics;
mod metrics_rpc;
pub mod mounts;
pub mod perms;
pub mod podnet;
mod recover;
mod release;
mod removal;
mod resources;
mod sandbox;
mod sandbox_run;
pub mod seccomp;
pub mod shim;
pub mod spec;
mod start;
pub mod stats;
mod stats_rpc;
pub mod store;
mod stream;
pub mod sys;
pub mod userns;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use kinglet_cri::CriError;
use kinglet_image::ImageStore;
use tokio::sync::Mutex;

pub use config::RuntimeConfig;
pub use error::RuntimeError;
use store::Store;

/// Directory layout of one daemon.
#[derive(Debug, Clone)]
pub struct Paths {
    pub root: PathBuf,
    pub run_root: PathBuf,
}

impl Paths {
    pub fn images(&self) -> PathBuf {
        self.root.join("images")
    }
    /// Writable layers of containers (persistent).
    pub fn container_root(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }
    /// Bundle, rootfs mount and shim state of a container (runtime).
    pub fn container_run(&self, id: &str) -> PathBuf {
        self.run_root.join("containers").join(id)
    }
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.container_run(id).join("bundle")
    }
    pub fn shim_state(&self, id: &str) -> PathBuf {
        shim::state_dir(&self.run_root, id)
    }
    /// libcontainer's state root.
    pub fn runtime_root(&self) -> PathBuf {
        self.run_root.join("runtime")
    }
    pub fn pod_run(&self, id: &str) -> PathBuf {
        self.run_root.join("pods").join(id)
    }
    pub fn exec_dir(&self) -> PathBuf {
        self.run_root.join("exec")
    }
    /// Address allocations and per-pod network state.
    pub fn network(&self) -> PathBuf {
        self.run_root.join("network")
    }
}

/// A cleanup step of a half-done operation.
type Undo = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// Steps to undo, run in reverse order unless the operation commits.
#[derive(Default)]
pub(crate) struct Rollback {
    steps: Vec<(String, Undo)>,
}

impl Rollback {
    pub fn push<F, Fut>(&mut self, what: impl Into<String>, f: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.steps
            .push((what.into(), Box::new(move || Box::pin(f()))));
    }

    pub fn commit(mut self) {
        self.steps.clear();
    }

    pub async fn run(mut self) {
        while let Some((what, f)) = self.steps.pop() {
            tracing::debug!(step = %what, "rolling back");
            f().await;
        }
    }
}

/// The runtime core.
pub struct Runtime {
    pub config: RuntimeConfig,
    pub paths: Paths,
    pub store: Store,
    pub images: Arc<ImageStore>,
    /// Registry pulls into `images`.
    pub puller: Arc<kinglet_pull::Puller>,
    /// Last use (unix ns) of images since the daemon started, for GC (else their creation).
    pub(crate) image_last_used: std::sync::Mutex<HashMap<String, i64>>,
    /// The shim binary (`kinglet-shim`, run as shim and exec helper) and the pod init binary
    /// (`kinglet-pod-init`), each beside the daemon's; when one is missing, the daemon's own
    /// binary, which has both as hidden subcommands.
    pub shim_exe: PathBuf,
    pub pod_init_exe: PathBuf,
    /// The daemon's oom_score_adj (a floor for containers').
    pub min_oom_score_adj: i32,
    /// The capabilities of the daemon's bounding set: what "all capabilities" means for a
    /// privileged container or `add: [ALL]` (as containerd: what the runtime itself holds).
    pub host_caps: Vec<String>,
    /// Names being created right now (name key → id), so two concurrent creates of one name
    /// cannot both win while neither has a record yet.
    pub(crate) reserved: Arc<std::sync::Mutex<HashMap<String, String>>>,
    /// Serialises the check-and-reserve step.
    pub(crate) names: Mutex<()>,
    /// Fires whenever a container's exit is recorded (the supervisor restarts without waiting
    /// for its next pass).
    pub exits: Arc<tokio::sync::Notify>,
    /// The labels of the containers whose exits were recorded since the supervisor last
    /// looked (so it wakes only their pods).
    pub exited: Arc<std::sync::Mutex<Vec<BTreeMap<String, String>>>>,
    /// The built-in pod network (bridge, addresses, NAT, hostPorts).
    pub network: Arc<podnet::PodNet>,
    /// The last CPU sample (unix ns, cumulative CPU ns) per container and pod, for the stats
    /// RPCs' nanocores.
    pub(crate) cpu_samples: std::sync::Mutex<HashMap<String, (i64, u64)>>,
    /// Container lifecycle events for GetContainerEvents subscribers.
    pub events: tokio::sync::broadcast::Sender<kinglet_proto::v1::ContainerEventResponse>,
    /// ImageFsInfo's last measurement of the image store.
    pub(crate) image_usage: image_usage::UsageCache,
}

/// A name reservation, released when dropped (the record, if any, then holds the name).
pub(crate) struct Reservation {
    map: Arc<std::sync::Mutex<HashMap<String, String>>>,
    key: String,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(&self.key);
        }
    }
}

impl Runtime {
    /// Reserve `key` for `id`, or return the id already holding it. Call with `names` held and
    /// after checking the records.
    pub(crate) fn reserve(&self, key: &str, id: &str) -> Result<Reservation, String> {
        let mut m = self.reserved.lock().expect("reservation lock");
        if let Some(other) = m.get(key) {
            return Err(other.clone());
        }
        m.insert(key.to_owned(), id.to_owned());
        Ok(Reservation {
            map: self.reserved.clone(),
            key: key.to_owned(),
        })
    }
}

impl Runtime {
    /// Open the state under the configured roots and recover what a previous daemon left.
    pub async fn start(config: RuntimeConfig) -> Result<Arc<Runtime>, RuntimeError> {
        let paths = Paths {
            root: config.root.clone(),
            run_root: config.run_root.clone(),
        };
        // Also creates the run root's directories (runtime/, exec/, ...), each 0700.
        perms::secure_roots(&paths.root, &paths.run_root, &config.socket)?;
        let images_dir = paths.images();
        let images = tokio::task::spawn_blocking(move || ImageStore::open(&images_dir))
            .await
            .map_err(|e| RuntimeError::Startup(format!("image store task: {e}")))?
            .map_err(|source| RuntimeError::Images { source })?;
        images.set_max_unpacked_layer_bytes(config.max_unpacked_layer_bytes);
        let exe = std::env::current_exe().map_err(|source| RuntimeError::Io {
            path: PathBuf::from("/proc/self/exe"),
            source,
        })?;
        let shim_exe = helper_exe(&exe, SHIM_BIN);
        let pod_init_exe = helper_exe(&exe, POD_INIT_BIN);
        let min_oom_score_adj = std::fs::read_to_string("/proc/self/oom_score_adj")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let host_caps = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| spec::bounding_set_from_status(&s))
            .map(spec::caps_from_mask)
            .unwrap_or_else(spec::all_caps);
        let network = kinglet_netns::Network::new(kinglet_netns::NetworkConfig {
            bridge: config.bridge.clone(),
            cidr: config.pod_cidr.parse().map_err(|e| RuntimeError::Config {
                path: PathBuf::new(),
                reason: format!("pod-cidr: {e}"),
            })?,
            table: config.nft_table.clone(),
            ..kinglet_netns::NetworkConfig::with_defaults(paths.network())
        })
        .map_err(|e| RuntimeError::Config {
            path: PathBuf::new(),
            reason: kinglet_cri::chain(&e),
        })?;
        let cni = match &config.cni_conf_dir {
            Some(dir) => kinglet_netns::Cni::load(kinglet_netns::CniConfig {
                conf_dir: dir.clone(),
                bin_dir: config.cni_bin_dir.clone(),
                state_dir: paths.network(),
                timeout: std::time::Duration::from_secs(config.cni_timeout_secs),
            })
            .map_err(|e| RuntimeError::Config {
                path: dir.clone(),
                reason: kinglet_cri::chain(&e),
            })?,
            None => None,
        };
        let network = match cni {
            Some(cni) => podnet::PodNet::Cni(cni, config.nft_table.clone()),
            None => podnet::PodNet::Builtin(network),
        };
        tracing::info!(mode = network.mode(), "pod network");
        let images = Arc::new(images);
        let puller = kinglet_pull::Puller::new(
            images.clone(),
            kinglet_pull::PullConfig {
                registries: config.registries.clone(),
                docker_config: config.docker_config.clone(),
                credential_helpers_dir: config.credential_helpers_dir.clone(),
                unpack_on_pull: config.unpack_on_pull,
                progress_timeout: std::time::Duration::from_secs(config.pull_progress_timeout_secs),
                connect_timeout: std::time::Duration::from_secs(config.pull_connect_timeout_secs),
            },
        );
        let rt = Arc::new(Runtime {
            network: Arc::new(network),
            store: Store::new(&paths.root),
            config,
            paths,
            images,
            puller,
            image_last_used: std::sync::Mutex::new(HashMap::new()),
            shim_exe,
            pod_init_exe,
            min_oom_score_adj,
            host_caps,
            reserved: Arc::default(),
            names: Mutex::new(()),
            exits: Arc::default(),
            exited: Arc::default(),
            cpu_samples: std::sync::Mutex::default(),
            events: tokio::sync::broadcast::channel(1024).0,
            image_usage: Default::default(),
        });
        rt.recover()
            .await
            .map_err(|e| RuntimeError::Startup(kinglet_cri::chain(&e)))?;
        tokio::spawn(rt.clone().image_gc_loop());
        Ok(rt)
    }
}

/// The names of the helper binaries installed beside the daemon's.
pub const SHIM_BIN: &str = "kinglet-shim";
pub const POD_INIT_BIN: &str = "kinglet-pod-init";

/// The helper binary `name` beside `exe`; when it is missing, `exe` itself (its hidden
/// subcommands work the same, but each helper then maps the whole daemon binary).
fn helper_exe(exe: &Path, name: &str) -> PathBuf {
    let beside = exe.with_file_name(name);
    if beside.is_file() {
        return beside;
    }
    tracing::warn!(
        missing = %beside.display(),
        "helpers re-execute the daemon binary (more memory per pod); install {name} beside it"
    );
    exe.to_owned()
}

/// A fresh 64-hex-digit object id.
pub fn new_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

pub use kinglet_util::now_nanos;

/// Run a blocking closure on the blocking pool and flatten its result.
pub async fn blocking<T, F>(what: &str, f: F) -> Result<T, CriError>
where
    F: FnOnce() -> Result<T, CriError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CriError::internal(format!("{what} task"), e))?
}

/// Encode a protobuf message for a record.
pub fn encode_hex<M: prost::Message>(m: &M) -> String {
    hex::encode(m.encode_to_vec())
}

/// Decode a protobuf message from a record (default on damage).
pub fn decode_hex<M: prost::Message + Default>(s: &str) -> M {
    hex::decode(s)
        .ok()
        .and_then(|b| M::decode(b.as_slice()).ok())
        .unwrap_or_default()
}

/// Whether every `selector` label is present with the same value.
pub fn labels_match(
    labels: &std::collections::BTreeMap<String, String>,
    selector: &std::collections::HashMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Create `path` and its parents.
pub fn mkdir(path: &Path) -> Result<(), CriError> {
    std::fs::create_dir_all(path)
        .map_err(|e| CriError::internal(format!("create {}", path.display()), e))
}
