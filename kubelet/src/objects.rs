//! The objects applied to this node (Pods, ConfigMaps, Secrets, Services, workloads), persisted so they survive a
//! daemon restart: Pods, ConfigMaps, Services and workloads as JSON under `<root>/objects/`, Secrets only under
//! `<run-root>/secrets/`, a tmpfs the daemon mounts itself — Secret bytes never reach a disk.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;

use crate::error::KubeletError;
use kinglet_manifest::{Object, ObjectKey};

/// Objects by key, with their files.
pub struct ObjectStore {
    objects_dir: PathBuf,
    secrets_dir: PathBuf,
    pub map: BTreeMap<ObjectKey, Object>,
    /// The store's write counter: bumped by every `put` and `remove`.
    revision: u64,
    /// Each Pod's revision (the counter at its last `put`), by uid: the dispatcher's cue that
    /// a Pod changed, without comparing Pods.
    pod_revs: HashMap<String, u64>,
    /// The counter at the last write of a kind the pods' [`crate::world::Snapshot`] holds
    /// (ConfigMap, Secret, Service, PersistentVolumeClaim).
    deps_rev: u64,
}

/// Whether objects of `kind` are part of what pods read besides themselves (the snapshot).
fn pods_read(kind: &str) -> bool {
    matches!(
        kind,
        "ConfigMap" | "Secret" | "Service" | "PersistentVolumeClaim"
    )
}

fn file_name(k: &ObjectKey) -> String {
    format!("{}_{}_{}.json", k.kind.to_lowercase(), k.namespace, k.name)
}

impl ObjectStore {
    /// Open (and load) the store; mounts the secrets tmpfs.
    pub fn open(root: &Path, run_root: &Path) -> Result<ObjectStore, KubeletError> {
        let objects_dir = root.join("objects");
        let secrets_dir = run_root.join("secrets");
        std::fs::create_dir_all(&objects_dir)
            .map_err(|e| KubeletError::internal(format!("create {}", objects_dir.display()), e))?;
        kinglet_volumes::tmpfs::mount_tmpfs_mode(&secrets_dir, 64 << 20, 0o700)
            .map_err(|e| KubeletError::internal("mount the secrets tmpfs", e))?;
        let mut store = ObjectStore {
            objects_dir,
            secrets_dir,
            map: BTreeMap::new(),
            revision: 0,
            pod_revs: HashMap::new(),
            deps_rev: 0,
        };
        for dir in [store.objects_dir.clone(), store.secrets_dir.clone()] {
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().and_then(|x| x.to_str()) != Some("json") {
                    let _ = std::fs::remove_file(&p);
                    continue;
                }
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                match kinglet_manifest::parse(&p.display().to_string(), &text) {
                    Ok(objs) => {
                        for o in objs {
                            store.note(&o);
                            store.map.insert(o.key(), o);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(path = %p.display(), err = %e, "stored object unreadable, skipped")
                    }
                }
            }
        }
        Ok(store)
    }

    fn path(&self, k: &ObjectKey) -> PathBuf {
        let dir = if k.kind == "Secret" {
            &self.secrets_dir
        } else {
            &self.objects_dir
        };
        dir.join(file_name(k))
    }

    /// Persist then publish.
    pub fn put(&mut self, obj: Object) -> Result<(), KubeletError> {
        let k = obj.key();
        let json = obj
            .to_json()
            .map_err(|e| KubeletError::internal(format!("encode {k}"), e))?;
        let path = self.path(&k);
        kinglet_util::write_atomic(&path, json.to_string().as_bytes())
            .map_err(|e| KubeletError::internal(format!("store {k}"), e))?;
        let uid = match &obj {
            Object::Pod(p) => p.metadata.uid.clone(),
            _ => None,
        };
        self.note(&obj);
        if let Some(Object::Pod(old)) = self.map.insert(k, obj) {
            // Replaced by a Pod of another uid: the old uid's revision goes.
            if old.metadata.uid != uid {
                self.pod_revs
                    .remove(old.metadata.uid.as_deref().unwrap_or_default());
            }
        }
        Ok(())
    }

    /// Count a write of `obj` (see [`ObjectStore::pod_revision`], [`ObjectStore::deps_revision`]).
    fn note(&mut self, obj: &Object) {
        self.revision += 1;
        match obj {
            Object::Pod(p) => {
                let uid = p.metadata.uid.clone().unwrap_or_default();
                self.pod_revs.insert(uid, self.revision);
            }
            Object::ConfigMap(_)
            | Object::Secret(_)
            | Object::Service(_)
            | Object::PersistentVolumeClaim(_) => self.deps_rev = self.revision,
            _ => {}
        }
    }

    /// The stored Pods with their revisions (Pods sort together: keys order by kind first).
    pub fn pods(&self) -> impl Iterator<Item = (&Pod, u64)> {
        let first = ObjectKey {
            kind: "Pod",
            namespace: String::new(),
            name: String::new(),
        };
        self.map.range(first..).map_while(|(_, o)| match o {
            Object::Pod(p) => {
                let uid = p.metadata.uid.as_deref().unwrap_or_default();
                Some((&**p, self.pod_revision(uid)))
            }
            _ => None,
        })
    }

    /// The revision of the Pod with `uid` (the store's write counter at its last write; 0
    /// when unknown): it changes whenever the Pod is written.
    pub fn pod_revision(&self, uid: &str) -> u64 {
        self.pod_revs.get(uid).copied().unwrap_or(0)
    }

    /// The store's write counter at the last write or removal of a ConfigMap, Secret, Service
    /// or PersistentVolumeClaim: when it changes, every pod's inputs may have.
    pub fn deps_revision(&self) -> u64 {
        self.deps_rev
    }

    pub fn remove(&mut self, k: &ObjectKey) -> Result<Option<Object>, KubeletError> {
        let path = self.path(k);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(KubeletError::internal(
                    format!("remove {}", path.display()),
                    e,
                ))
            }
        }
        self.revision += 1;
        if k.kind == "Pod" {
            if let Some(Object::Pod(p)) = self.map.get(k) {
                self.pod_revs
                    .remove(p.metadata.uid.as_deref().unwrap_or_default());
            }
        } else if pods_read(k.kind) {
            self.deps_rev = self.revision;
        }
        Ok(self.map.remove(k))
    }
}
