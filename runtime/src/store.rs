//! Pod sandbox and container records: what the daemon must remember across its own restarts.
//!
//! Records live as one JSON file per object under `<root>/state/{sandboxes,containers}/`.
//! Every change is written to disk (temp + fsync + rename) *before* the in-memory copy is
//! updated, so memory never claims more than the disk does, and a restarted daemon rebuilds
//! exactly what was published.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kinglet_cri::CriError;
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Mutex, RwLock};

/// Kubernetes-style object metadata of a sandbox or container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub name: String,
    pub uid: String,
    pub namespace: String,
    pub attempt: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxState {
    Ready,
    NotReady,
}

/// Namespace modes as the CRI names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum NsMode {
    #[default]
    Pod,
    Container,
    Node,
    Target,
}

impl NsMode {
    pub fn from_cri(v: i32) -> NsMode {
        match v {
            1 => NsMode::Container,
            2 => NsMode::Node,
            3 => NsMode::Target,
            _ => NsMode::Pod,
        }
    }
    pub fn to_cri(self) -> i32 {
        match self {
            NsMode::Pod => 0,
            NsMode::Container => 1,
            NsMode::Node => 2,
            NsMode::Target => 3,
        }
    }
}

/// Where a pod's shared namespaces are pinned (absent = the host's).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodNamespaces {
    pub network: NsMode,
    pub pid: NsMode,
    pub ipc: NsMode,
    pub net_path: Option<PathBuf>,
    pub ipc_path: Option<PathBuf>,
    pub uts_path: Option<PathBuf>,
    pub pid_path: Option<PathBuf>,
    /// Host pid of the pod's PID-namespace init (only with a pod-wide PID namespace).
    pub pid_init: Option<u32>,
    /// Pin of the pod's own user namespace (`hostUsers: false`), owner of its net/ipc/uts.
    #[serde(default)]
    pub user_path: Option<PathBuf>,
    /// The mappings of that user namespace.
    #[serde(default)]
    pub userns: Option<crate::userns::UsernsRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: String,
    pub meta: Meta,
    pub state: SandboxState,
    pub created_at: i64,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub runtime_handler: String,
    pub hostname: String,
    pub log_directory: String,
    pub cgroup_parent: String,
    /// Whether Kinglet made `cgroup_parent` (and so removes it).
    pub owns_cgroup_parent: bool,
    pub namespaces: PodNamespaces,
    /// The pod's /dev/shm (a tmpfs Kinglet mounted), absent for host IPC.
    pub shm: Option<PathBuf>,
    /// The PodSandboxConfig as the client sent it (protobuf bytes, hex).
    pub config: String,
    /// The pod's IPv4 address on the built-in network (none for host network, or once stopped).
    #[serde(default)]
    pub ip: Option<std::net::Ipv4Addr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

/// A CRI bind mount, as reported back in ContainerStatus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRecord {
    pub container_path: String,
    pub host_path: String,
    pub readonly: bool,
    pub propagation: i32,
    /// An image volume: the image as the client named it, and its id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<(String, String)>,
    /// An image volume's sub-directory.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_sub_path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub sandbox_id: String,
    pub meta: Meta,
    pub state: ContainerState,
    /// The image as the client named it.
    pub image: String,
    /// The resolved image id (`sha256:...`).
    pub image_id: String,
    /// A digest reference to the image, when it has one, else the id.
    pub image_ref: String,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub mounts: Vec<MountRecord>,
    /// Absolute path of the CRI log file ("" when none was asked for).
    pub log_path: String,
    pub stop_signal: i32,
    pub shim_pid: i32,
    pub init_pid: i32,
    pub init_start_ticks: u64,
    /// The ContainerConfig as the client sent it (protobuf bytes, hex).
    pub config: String,
    /// LinuxContainerResources last set by UpdateContainerResources (protobuf, hex; "" when
    /// never updated: the config's).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resources: String,
    /// The identity the first process was given: uid, gid, supplementary groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<(u32, u32, Vec<u32>)>,
}

/// A container's record with a channel that fires on every state change.
pub struct ContainerEntry {
    pub record: Mutex<ContainerRecord>,
    pub state_tx: watch::Sender<ContainerState>,
    /// Held while StartContainer launches the container's shim, and by a stop: a stop waits
    /// for a start in progress rather than racing it.
    pub start: Mutex<()>,
}

pub struct SandboxEntry {
    pub record: Mutex<SandboxRecord>,
}

/// In-memory index of records, backed by files.
pub struct Store {
    dir: PathBuf,
    pub sandboxes: RwLock<HashMap<String, Arc<SandboxEntry>>>,
    pub containers: RwLock<HashMap<String, Arc<ContainerEntry>>>,
}

impl Store {
    pub fn new(root: &Path) -> Store {
        Store {
            dir: root.join("state"),
            sandboxes: RwLock::default(),
            containers: RwLock::default(),
        }
    }

    fn sandbox_path(&self, id: &str) -> PathBuf {
        self.dir.join("sandboxes").join(format!("{id}.json"))
    }

    fn container_path(&self, id: &str) -> PathBuf {
        self.dir.join("containers").join(format!("{id}.json"))
    }

    /// Read every record on disk (used once, at start).
    pub fn load_all(&self) -> Result<(Vec<SandboxRecord>, Vec<ContainerRecord>), CriError> {
        Ok((
            load_dir(&self.dir.join("sandboxes"))?,
            load_dir(&self.dir.join("containers"))?,
        ))
    }

    pub async fn save_sandbox(&self, rec: &SandboxRecord) -> Result<(), CriError> {
        write_json(&self.sandbox_path(&rec.id), rec).await
    }

    pub async fn save_container(&self, rec: &ContainerRecord) -> Result<(), CriError> {
        write_json(&self.container_path(&rec.id), rec).await
    }

    pub async fn delete_sandbox(&self, id: &str) -> Result<(), CriError> {
        remove_file(&self.sandbox_path(id)).await?;
        self.sandboxes.write().await.remove(id);
        Ok(())
    }

    pub async fn delete_container(&self, id: &str) -> Result<(), CriError> {
        remove_file(&self.container_path(id)).await?;
        self.containers.write().await.remove(id);
        Ok(())
    }

    pub async fn insert_sandbox(&self, rec: SandboxRecord) -> Result<Arc<SandboxEntry>, CriError> {
        self.save_sandbox(&rec).await?;
        let id = rec.id.clone();
        let e = Arc::new(SandboxEntry {
            record: Mutex::new(rec),
        });
        self.sandboxes.write().await.insert(id, e.clone());
        Ok(e)
    }

    pub async fn insert_container(
        &self,
        rec: ContainerRecord,
        persist: bool,
    ) -> Result<Arc<ContainerEntry>, CriError> {
        if persist {
            self.save_container(&rec).await?;
        }
        let id = rec.id.clone();
        let (state_tx, _) = watch::channel(rec.state);
        let e = Arc::new(ContainerEntry {
            record: Mutex::new(rec),
            state_tx,
            start: Mutex::new(()),
        });
        self.containers.write().await.insert(id, e.clone());
        Ok(e)
    }

    /// Apply `f` to a container's record, persist, then publish.
    pub async fn update_container<F>(&self, e: &ContainerEntry, f: F) -> Result<(), CriError>
    where
        F: FnOnce(&mut ContainerRecord),
    {
        let mut guard = e.record.lock().await;
        let mut next = guard.clone();
        f(&mut next);
        if next != *guard {
            self.save_container(&next).await?;
            let state = next.state;
            *guard = next;
            e.state_tx.send_replace(state);
        }
        Ok(())
    }

    /// Apply `f` to a sandbox's record, persist, then publish.
    pub async fn update_sandbox<F>(&self, e: &SandboxEntry, f: F) -> Result<(), CriError>
    where
        F: FnOnce(&mut SandboxRecord),
    {
        let mut guard = e.record.lock().await;
        let mut next = guard.clone();
        f(&mut next);
        if next != *guard {
            self.save_sandbox(&next).await?;
            *guard = next;
        }
        Ok(())
    }

    pub async fn sandbox(&self, id: &str) -> Option<Arc<SandboxEntry>> {
        self.sandboxes.read().await.get(id).cloned()
    }

    pub async fn container(&self, id: &str) -> Option<Arc<ContainerEntry>> {
        self.containers.read().await.get(id).cloned()
    }

    /// Find a sandbox by full id or unique id prefix.
    pub async fn find_sandbox(&self, id: &str) -> Option<Arc<SandboxEntry>> {
        let map = self.sandboxes.read().await;
        find_by_prefix(&map, id)
    }

    /// Find a container by full id or unique id prefix.
    pub async fn find_container(&self, id: &str) -> Option<Arc<ContainerEntry>> {
        let map = self.containers.read().await;
        find_by_prefix(&map, id)
    }

    pub async fn all_containers(&self) -> Vec<Arc<ContainerEntry>> {
        self.containers.read().await.values().cloned().collect()
    }

    pub async fn all_sandboxes(&self) -> Vec<Arc<SandboxEntry>> {
        self.sandboxes.read().await.values().cloned().collect()
    }
}

fn find_by_prefix<T>(map: &HashMap<String, Arc<T>>, id: &str) -> Option<Arc<T>> {
    if id.is_empty() {
        return None;
    }
    if let Some(e) = map.get(id) {
        return Some(e.clone());
    }
    let mut found = map.iter().filter(|(k, _)| k.starts_with(id));
    match (found.next(), found.next()) {
        (Some((_, e)), None) => Some(e.clone()),
        _ => None,
    }
}

fn load_dir<T: for<'de> Deserialize<'de>>(dir: &Path) -> Result<Vec<T>, CriError> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(CriError::internal(format!("read {}", dir.display()), e)),
    };
    for ent in rd.flatten() {
        let p = ent.path();
        if p.extension().and_then(|e| e.to_str()) != Some("json") {
            // A temp file of an interrupted write: the rename never happened, drop it.
            let _ = std::fs::remove_file(&p);
            continue;
        }
        match kinglet_shim::protocol::read_record::<T>(&p) {
            Ok(Some(r)) => out.push(r),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(path = %p.display(), err = %kinglet_shim::error_chain(&e), "unreadable record skipped")
            }
        }
    }
    Ok(out)
}

async fn write_json<T: Serialize + Send + Sync + Clone + 'static>(
    path: &Path,
    rec: &T,
) -> Result<(), CriError> {
    let path = path.to_owned();
    let rec = rec.clone();
    tokio::task::spawn_blocking(move || {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| CriError::internal(format!("create {}", dir.display()), e))?;
        }
        kinglet_shim::protocol::write_record(&path, &rec)
            .map_err(|e| CriError::internal(format!("write record {}", path.display()), e))
    })
    .await
    .map_err(|e| CriError::internal("record writer task", e))?
}

async fn remove_file(path: &Path) -> Result<(), CriError> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CriError::internal(format!("remove {}", path.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str) -> ContainerRecord {
        ContainerRecord {
            id: id.into(),
            sandbox_id: "s".into(),
            meta: Meta::default(),
            state: ContainerState::Created,
            image: "busybox".into(),
            image_id: "sha256:1".into(),
            image_ref: "sha256:1".into(),
            created_at: 1,
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            mounts: vec![],
            log_path: String::new(),
            stop_signal: 15,
            shim_pid: 0,
            init_pid: 0,
            init_start_ticks: 0,
            config: String::new(),
            resources: String::new(),
            user: None,
        }
    }

    #[test]
    fn records_written_before_user_and_image_volumes_still_load() {
        let mut v = serde_json::to_value(rec("old")).unwrap();
        v.as_object_mut().unwrap().remove("user");
        v["mounts"] = serde_json::json!([
            {"container_path": "/m", "host_path": "/h", "readonly": true, "propagation": 0}
        ]);
        let r: ContainerRecord = serde_json::from_value(v).unwrap();
        assert_eq!((r.user, r.mounts[0].image.clone()), (None, None));
    }

    #[tokio::test]
    async fn updates_are_persisted_before_published_and_survive_reload() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let e = store.insert_container(rec("abcdef"), true).await.unwrap();
        let mut rx = e.state_tx.subscribe();
        store
            .update_container(&e, |r| {
                r.state = ContainerState::Exited;
                r.exit_code = 7;
            })
            .await
            .unwrap();
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), ContainerState::Exited);
        let again = Store::new(dir.path());
        let (_, cs) = again.load_all().unwrap();
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].exit_code, 7);
        assert!(store.find_container("abc").await.is_some());
        store.delete_container("abcdef").await.unwrap();
        assert!(Store::new(dir.path()).load_all().unwrap().1.is_empty());
    }
}
