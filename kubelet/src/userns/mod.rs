//! The user-namespace manager for pods with `spec.hostUsers: false`, as the kubelet's
//! (`pkg/kubelet/userns`): each such pod gets its own 65536 host IDs (uids and gids alike,
//! container ID 0 → the block's first host ID) from the node's range ([`range::IdRange`]),
//! kept in one file per pod under `<root>/userns/` before the sandbox asking for it is made,
//! read back by a restarted daemon (so a running pod keeps its mapping and no block is handed
//! out twice), and freed when the pod's sandboxes are removed or, at the dispatcher's sandbox
//! listing, when neither the pod nor a sandbox of it exists any more.
//!
//! The decisions are [`range::Allocator`]'s; this module adds the files and the lock.

pub mod range;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use kinglet_proto::v1;
use serde::{Deserialize, Serialize};

pub use range::{host_range, Allocator, IdRange, IDS_PER_POD};

/// Why a pod cannot have its own user namespace.
#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    /// The node's range is unusable (bad subordinate IDs of the kubelet user).
    #[error("the node's user namespace IDs: {reason}")]
    Range { reason: String },
    #[error(
        "no free user namespace: all {} ranges of {IDS_PER_POD} IDs in {range} are held by {pods} pods; \
         delete a pod with hostUsers: false or widen pod-userns-ids",
        range.blocks()
    )]
    Exhausted { range: IdRange, pods: usize },
    #[error("user namespace file {path} of the pod")]
    Persist {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("pod uid {uid:?} cannot name a file")]
    BadUid { uid: String },
}

/// One mapping line, as the kubelet keeps it in the pod's `userns` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdMapping {
    host_id: u32,
    container_id: u32,
    length: u32,
}

/// A pod's persisted user namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MappingsFile {
    uid_mappings: Vec<IdMapping>,
    gid_mappings: Vec<IdMapping>,
}

impl MappingsFile {
    fn of(first: u32) -> MappingsFile {
        let m = IdMapping {
            host_id: first,
            container_id: 0,
            length: IDS_PER_POD,
        };
        MappingsFile {
            uid_mappings: vec![m],
            gid_mappings: vec![m],
        }
    }

    /// The one mapping of a file this manager wrote: one line each, identical, from 0.
    fn single(&self) -> Result<IdMapping, String> {
        match (&self.uid_mappings[..], &self.gid_mappings[..]) {
            ([u], [g]) if u == g && u.container_id == 0 => Ok(*u),
            _ => Err("not one identical uid and gid mapping of container ID 0".into()),
        }
    }
}

/// The CRI's user namespace options for a pod whose mapping starts at host ID `first`.
pub fn to_cri(first: u32) -> v1::UserNamespace {
    let m = vec![v1::IdMapping {
        host_id: first,
        container_id: 0,
        length: IDS_PER_POD,
    }];
    v1::UserNamespace {
        mode: v1::NamespaceMode::Pod as i32,
        uids: m.clone(),
        gids: m,
    }
}

/// Whether `pod` asks for its own user namespace (`spec.hostUsers: false`).
pub fn wants_userns(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.host_users) == Some(false)
}

struct Inner {
    alloc: Allocator,
    /// Files found at start that could not be taken back (removed as orphans).
    stray: bool,
    /// Why the node's range is unusable (new pods are refused with it).
    range_error: Option<String>,
}

/// The node's user namespaces for pods: the allocator and its files.
pub struct UsernsManager {
    dir: PathBuf,
    inner: Mutex<Inner>,
}

impl UsernsManager {
    /// The manager over `dir` (`<root>/userns`), taking back every mapping kept there. A file
    /// that cannot be read or taken back is logged and left in place (its pod, if it runs,
    /// keeps its sandbox; the file goes when the pod is removed).
    pub fn open(dir: &Path, range: Result<IdRange, String>) -> UsernsManager {
        let (range, range_error) = match range {
            Ok(r) => (r, None),
            Err(e) => (
                IdRange {
                    length: 0,
                    ..IdRange::DEFAULT
                },
                Some(e),
            ),
        };
        let mut alloc = Allocator::new(range);
        let mut stray = false;
        for (uid, path) in files(dir) {
            let taken = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<MappingsFile>(&b).map_err(|e| e.to_string()))
                .and_then(|f| f.single())
                .and_then(|m| alloc.record(&uid, m.host_id, m.length));
            match taken {
                Ok(()) => {
                    tracing::debug!(pod = %uid, first = alloc.get(&uid), "user namespace taken back")
                }
                Err(reason) => {
                    stray = true;
                    tracing::error!(
                        pod = %uid, file = %path.display(), %reason,
                        "a pod's user namespace file cannot be taken back"
                    )
                }
            }
        }
        UsernsManager {
            dir: dir.to_owned(),
            inner: Mutex::new(Inner {
                alloc,
                stray,
                range_error,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn file(&self, uid: &str) -> Result<PathBuf, UsernsError> {
        let safe = !uid.is_empty()
            && !uid.starts_with('.')
            && uid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if !safe {
            return Err(UsernsError::BadUid {
                uid: uid.to_owned(),
            });
        }
        Ok(self.dir.join(format!("{uid}.json")))
    }

    /// The first host ID of `pod`'s mapping, if it has one (no file access).
    pub fn get(&self, pod: &str) -> Option<u32> {
        self.lock().alloc.get(pod)
    }

    /// `pod`'s mapping: the one it has, else a new one, on disk before this returns (so a
    /// daemon killed after the sandbox is made finds it). Blocking: file writes and fsync.
    pub fn get_or_create(&self, pod: &str) -> Result<u32, UsernsError> {
        let path = self.file(pod)?;
        let mut inner = self.lock();
        if let Some(first) = inner.alloc.get(pod) {
            return Ok(first);
        }
        if let Some(reason) = &inner.range_error {
            return Err(UsernsError::Range {
                reason: reason.clone(),
            });
        }
        let first = inner.alloc.allocate(pod)?;
        let bytes = serde_json::to_vec(&MappingsFile::of(first)).unwrap_or_default();
        let written = std::fs::create_dir_all(&self.dir)
            .and_then(|()| kinglet_util::write_atomic(&path, &bytes));
        if let Err(source) = written {
            inner.alloc.release(pod);
            return Err(UsernsError::Persist { path, source });
        }
        tracing::info!(pod = %pod, first, length = IDS_PER_POD, "user namespace allocated");
        Ok(first)
    }

    /// Free `pod`'s mapping and remove its file (blocking).
    pub fn release(&self, pod: &str) {
        let Ok(path) = self.file(pod) else {
            return;
        };
        let mut inner = self.lock();
        if let Some(first) = inner.alloc.release(pod) {
            tracing::info!(pod = %pod, first, "user namespace released");
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(pod = %pod, err = %e, "removing the pod's user namespace file")
            }
        }
    }

    /// Whether any mapping (or a file that could not be taken back) is held: else there is
    /// nothing for [`Self::release_orphans`] to look at.
    pub fn holds_any(&self) -> bool {
        let inner = self.lock();
        inner.stray || inner.alloc.pods().next().is_some()
    }

    /// Free the mappings (and files) of pods for which `known` is false: neither the pod nor
    /// a sandbox of it exists (the kubelet's `CleanupOrphanedPodUsernsAllocations`).
    /// Blocking. The pods freed.
    pub fn release_orphans(&self, known: impl Fn(&str) -> bool) -> Vec<String> {
        let mut held: Vec<String> = self.lock().alloc.pods().cloned().collect();
        held.extend(files(&self.dir).into_iter().map(|(uid, _)| uid));
        held.sort();
        held.dedup();
        let orphans: Vec<String> = held.into_iter().filter(|u| !known(u)).collect();
        for uid in &orphans {
            self.release(uid);
        }
        self.lock().stray = false;
        orphans
    }
}

/// The mapping files in `dir`, by pod uid (none when it does not exist).
fn files(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let uid = name.strip_suffix(".json").filter(|u| !u.starts_with('.'))?;
            Some((uid.to_owned(), e.path()))
        })
        .collect()
}

/// Free the mappings of pods that are neither stored (`pods`), nor have a sandbox
/// (`with_sandbox`), nor a running worker (`workers`): called at the dispatcher's sandbox
/// listing.
pub(crate) async fn sweep(
    m: &std::sync::Arc<UsernsManager>,
    pods: &std::collections::HashMap<String, u64>,
    with_sandbox: &std::collections::HashSet<String>,
    workers: &[String],
) {
    if !m.holds_any() {
        return;
    }
    let mut known: std::collections::HashSet<String> = pods.keys().cloned().collect();
    known.extend(with_sandbox.iter().cloned());
    known.extend(workers.iter().cloned());
    let m = m.clone();
    let freed = tokio::task::spawn_blocking(move || m.release_orphans(|u| known.contains(u))).await;
    match freed {
        Ok(f) if !f.is_empty() => {
            tracing::info!(pods = ?f, "freed the user namespaces of pods that are gone")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(err = %e, "user namespace sweep task failed"),
    }
}
