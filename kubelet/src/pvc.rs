//! The local provisioner for PersistentVolumeClaims, in the style of rancher's local-path
//! provisioner: each claim is bound to a directory of its own,
//! `<root>/volumes/pvc/<namespace>/<name>-<uid>` (mode 0777 as local-path makes it), created
//! when the claim is bound (status `Bound`, `volumeName` `pvc-<uid>` as dynamic provisioning
//! names volumes, capacity = the request) and removed only once the claim is deleted and no
//! stored pod names it any more (the `kubernetes.io/pvc-protection` rule). The directory
//! keeps its data across pod restarts, pod deletion, updates and scale-down.
//!
//! One pass ([`Supervisor::provision`]) runs before each publication of the objects; it is the
//! only creator and remover of claim directories, so binding and sweeping never race.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::PersistentVolumeClaimStatus;
use kinglet_manifest::{Object, ObjectKey};

use crate::Supervisor;

/// A claim as a pod's volume setup sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// No such claim in the pod's namespace.
    Missing,
    /// Stored, not bound yet.
    Pending,
    /// Bound to this directory.
    Bound(PathBuf),
}

/// Where claims' directories live under the daemon's root.
pub fn claims_root(root: &Path) -> PathBuf {
    root.join("volumes").join("pvc")
}

/// The directory bound to claim `name` (uid `uid`) of `ns`.
pub fn claim_dir(root: &Path, ns: &str, name: &str, uid: &str) -> PathBuf {
    claims_root(root).join(ns).join(format!("{name}-{uid}"))
}

/// One claim to bind.
struct Unbound {
    key: ObjectKey,
    dir: PathBuf,
}

/// The claims' directories that should exist ((namespace, entry name)), the claims in use by
/// a stored pod ((namespace, claim name)), and the claims to bind.
type Wanted = (
    HashSet<(String, String)>,
    HashSet<(String, String)>,
    Vec<Unbound>,
);

fn wanted(root: &Path, objects: &std::collections::BTreeMap<ObjectKey, Object>) -> Wanted {
    let (mut keep, mut used, mut bind) = (HashSet::new(), HashSet::new(), Vec::new());
    for (k, o) in objects {
        match o {
            Object::PersistentVolumeClaim(c) => {
                let uid = c.metadata.uid.clone().unwrap_or_default();
                keep.insert((k.namespace.clone(), format!("{}-{uid}", k.name)));
                let bound = c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
                let dir = claim_dir(root, &k.namespace, &k.name, &uid);
                if !bound || !dir.is_dir() {
                    bind.push(Unbound {
                        key: k.clone(),
                        dir,
                    });
                }
            }
            Object::Pod(p) => {
                let vols = p.spec.as_ref().and_then(|s| s.volumes.as_ref());
                for v in vols.into_iter().flatten() {
                    if let Some(c) = &v.persistent_volume_claim {
                        used.insert((k.namespace.clone(), c.claim_name.clone()));
                    }
                }
            }
            _ => {}
        }
    }
    (keep, used, bind)
}

/// Make the directories of `bind`; remove those of claims that are gone and unused. Blocking.
fn sync_dirs(
    root: &Path,
    bind: &[&Path],
    keep: &HashSet<(String, String)>,
    used: &HashSet<(String, String)>,
) -> Vec<std::io::Result<()>> {
    use std::os::unix::fs::PermissionsExt;
    let made = bind
        .iter()
        .map(|d| {
            std::fs::create_dir_all(d)?;
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777))
        })
        .collect();
    let Ok(nss) = std::fs::read_dir(claims_root(root)) else {
        return made;
    };
    for ns in nss.flatten() {
        let ns_name = ns.file_name().to_string_lossy().into_owned();
        let Ok(entries) = std::fs::read_dir(ns.path()) else {
            continue;
        };
        for e in entries.flatten() {
            let entry = e.file_name().to_string_lossy().into_owned();
            if keep.contains(&(ns_name.clone(), entry.clone())) {
                continue;
            }
            // `<name>-<uid>`: a uid is 36 characters.
            let claim = entry
                .len()
                .checked_sub(37)
                .and_then(|n| entry.get(..n))
                .unwrap_or(&entry);
            if used.contains(&(ns_name.clone(), claim.to_owned())) {
                continue;
            }
            match std::fs::remove_dir_all(e.path()) {
                Ok(()) => {
                    tracing::info!(namespace = %ns_name, dir = %entry, "claim deleted: its volume directory removed")
                }
                Err(err) => {
                    tracing::warn!(namespace = %ns_name, dir = %entry, %err, "removing a deleted claim's volume directory")
                }
            }
        }
    }
    made
}

impl Supervisor {
    /// Bind every unbound claim to a new directory, and remove the directories of deleted
    /// claims no pod uses.
    pub(crate) async fn provision(&self) {
        let root = self.cfg.root.clone();
        let (keep, used, bind) = wanted(&root, &self.store.lock().await.map);
        let dirs: Vec<PathBuf> = bind.iter().map(|b| b.dir.clone()).collect();
        let r = tokio::task::spawn_blocking(move || {
            let refs: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();
            sync_dirs(&root, &refs, &keep, &used)
        })
        .await;
        let Ok(made) = r else { return };
        for (b, res) in bind.into_iter().zip(made) {
            if let Err(err) = res {
                tracing::warn!(claim = %b.key, dir = %b.dir.display(), %err, "provisioning a claim's volume directory failed");
                continue;
            }
            let r = self
                .modify_object(&b.key, false, |o| {
                    let Object::PersistentVolumeClaim(c) = o else {
                        return false;
                    };
                    let uid = c.metadata.uid.clone().unwrap_or_default();
                    let spec = c.spec.get_or_insert_with(Default::default);
                    spec.volume_name.get_or_insert_with(|| format!("pvc-{uid}"));
                    let status = PersistentVolumeClaimStatus {
                        phase: Some("Bound".into()),
                        access_modes: spec.access_modes.clone(),
                        capacity: spec.resources.as_ref().and_then(|r| r.requests.clone()),
                        ..Default::default()
                    };
                    let changed = c.status.as_ref() != Some(&status);
                    c.status = Some(status);
                    changed
                })
                .await;
            match r {
                Ok(_) => {
                    tracing::info!(claim = %b.key, dir = %b.dir.display(), "claim bound to a local volume directory")
                }
                Err(err) => tracing::warn!(claim = %b.key, %err, "binding a claim failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deleted_claims_dirs_go_unless_a_pod_names_them() {
        let d = tempfile::tempdir().unwrap();
        let uid = "0123456789abcdef0123456789abcdef0123";
        let a = claim_dir(d.path(), "default", "www-web-0", uid);
        let b = claim_dir(d.path(), "default", "www-web-1", uid);
        let c = claim_dir(d.path(), "default", "old", uid);
        let all: HashSet<_> = ["www-web-0", "www-web-1", "old"]
            .map(|n| ("default".to_string(), format!("{n}-{uid}")))
            .into();
        for r in sync_dirs(d.path(), &[&a, &b, &c], &all, &HashSet::new()) {
            r.unwrap();
        }
        assert!(a.is_dir() && b.is_dir() && c.is_dir());
        let keep: HashSet<_> = [("default".to_string(), format!("www-web-0-{uid}"))].into();
        let used: HashSet<_> = [("default".to_string(), "www-web-1".to_string())].into();
        std::fs::write(a.join("f"), "data").unwrap();
        sync_dirs(d.path(), &[], &keep, &used);
        assert_eq!(std::fs::read_to_string(a.join("f")).unwrap(), "data");
        assert!(b.is_dir(), "a pod still names the claim");
        assert!(
            !c.exists(),
            "a deleted, unused claim's directory is removed"
        );
    }
}
