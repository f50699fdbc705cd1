//! The objects applied to this node (Pods, ConfigMaps, Secrets, Services, workloads), persisted so they survive a
//! daemon restart: Pods, ConfigMaps, Services and workloads as JSON under `<root>/objects/`, Secrets only under
//! `<run-root>/secrets/`, a tmpfs the daemon mounts itself — Secret bytes never reach a disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::KubeletError;
use kinglet_manifest::{Object, ObjectKey};

/// Objects by key, with their files.
pub struct ObjectStore {
    objects_dir: PathBuf,
    secrets_dir: PathBuf,
    pub map: BTreeMap<ObjectKey, Object>,
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
        self.map.insert(k, obj);
        Ok(())
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
        Ok(self.map.remove(k))
    }
}
