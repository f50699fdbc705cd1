//! The manifests directory (`--manifests`, default /etc/kinglet/manifests): every `.yaml`,
//! `.yml`, `.json` and `.age` file in it is kept applied, and so are the manifests among the
//! daemon's systemd credentials (`$CREDENTIALS_DIRECTORY`, same extensions). A sealed file
//! (age, [`crate::sealed`]) is decrypted in memory; one that cannot be is reported by name and
//! its previous objects are kept, like a file that does not parse. A plain-text Secret is
//! warned about once per file. inotify wakes a re-read of the directory;
//! objects a file defines are created or updated, objects a file no longer defines (or whose
//! file is gone) are deleted. A file that does not parse is reported (file, object, field) and
//! its previous objects are left as they were — the other files' objects keep running.
//!
//! Which file defined which objects is persisted beside the objects, so a file removed while
//! the daemon was down still takes its objects with it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use inotify::{Inotify, WatchMask};
use kinglet_manifest::{Object, ObjectKey};
use serde::{Deserialize, Serialize};

use super::Supervisor;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct StoredKey {
    kind: String,
    namespace: String,
    name: String,
}

/// file → objects it defined, persisted.
pub struct Sources {
    path: PathBuf,
    map: BTreeMap<PathBuf, BTreeSet<StoredKey>>,
    /// Files already warned about for a plain-text Secret (not persisted: once per start).
    warned: BTreeSet<PathBuf>,
}

impl Sources {
    pub fn load(path: &Path) -> Sources {
        let map = std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Sources {
            path: path.to_owned(),
            map,
            warned: BTreeSet::new(),
        }
    }

    fn save(&self) {
        if let Ok(b) = serde_json::to_vec(&self.map) {
            if let Err(e) = kinglet_util::write_atomic(&self.path, &b) {
                tracing::warn!(err = %kinglet_util::chain(&e), "manifest sources not saved");
            }
        }
    }
}

fn stored(k: &ObjectKey) -> StoredKey {
    StoredKey {
        kind: k.kind.to_owned(),
        namespace: k.namespace.clone(),
        name: k.name.clone(),
    }
}

fn key_of(s: &StoredKey) -> Option<ObjectKey> {
    let kind = match s.kind.as_str() {
        "Pod" => "Pod",
        "ConfigMap" => "ConfigMap",
        "Secret" => "Secret",
        "Deployment" => "Deployment",
        "ReplicaSet" => "ReplicaSet",
        "Job" => "Job",
        "Service" => "Service",
        _ => return None,
    };
    Some(ObjectKey {
        kind,
        namespace: s.namespace.clone(),
        name: s.name.clone(),
    })
}

fn manifest_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let hidden = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            !hidden
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml" | "json" | "age")
                )
        })
        .collect();
    files.sort();
    files
}

impl Supervisor {
    /// A manifest file's text, opened in memory when sealed; and whether it was.
    fn read_manifest(&self, f: &Path) -> Result<(String, bool), String> {
        let bytes = std::fs::read(f).map_err(|e| e.to_string())?;
        let opened = self.cfg.keys.text_of(&f.display().to_string(), bytes);
        opened.map_err(|e| crate::error::chain(&e))
    }

    /// Make the stored objects match the directory's files.
    pub(super) async fn sync_dir(&self, dir: &Path) {
        let mut sources = self.sources.lock().await;
        let mut next: BTreeMap<PathBuf, BTreeSet<StoredKey>> = BTreeMap::new();
        let mut to_apply: Vec<Object> = Vec::new();
        let mut claimed: BTreeMap<StoredKey, PathBuf> = BTreeMap::new();
        let creds = self.cfg.keys.credentials_dir.as_deref();
        let mut plain_secrets = BTreeSet::new();
        for f in manifest_files(dir)
            .into_iter()
            .chain(creds.map(manifest_files).unwrap_or_default())
        {
            // A file that cannot be read or opened keeps its objects, as one that does not parse.
            let (text, sealed, failed) = match self.read_manifest(&f) {
                Ok((text, sealed)) => (text, sealed, false),
                Err(e) => {
                    tracing::error!(file = %f.display(), err = %e, "manifest not applied; the objects it defined are kept as they were");
                    (String::new(), false, true)
                }
            };
            let from_credential = creds.is_some_and(|c| f.starts_with(c));
            // Document by document, as kubectl applies: a bad document does not stop the others.
            let (objs, errors) = kinglet_manifest::parse_each(&f.display().to_string(), &text);
            let mut keys = BTreeSet::new();
            for o in objs {
                if o.kind() == "Secret" && !sealed && !from_credential {
                    plain_secrets.insert(f.clone());
                    if !sources.warned.contains(&f) {
                        tracing::warn!(file = %f.display(), object = %o.key(), "a Secret in plain text on disk: anyone who can read this file, or a backup or copy of the disk, has it; seal it (`kinglet secret seal`) or keep it out of the manifests directory (README, Trust model)");
                    }
                }
                for f in kinglet_manifest::ignored_fields(&o) {
                    tracing::warn!(file = %f.as_str(), object = %o.key(), field = %f, "field is not supported by kinglet and is ignored");
                }
                let k = stored(&o.key());
                if let Some(other) = claimed.get(&k) {
                    tracing::error!(file = %f.display(), object = %o.key(), other = %other.display(), "object defined twice; this definition is ignored");
                    continue;
                }
                claimed.insert(k.clone(), f.clone());
                keys.insert(k);
                to_apply.push(o);
            }
            if failed || !errors.is_empty() {
                for e in &errors {
                    tracing::error!(err = %e, "manifest document not applied; the objects it defined are kept as they were");
                }
                // Keep what this file defined before and no good document claims now.
                for k in sources.map.get(&f).into_iter().flatten() {
                    if !claimed.contains_key(k) {
                        claimed.insert(k.clone(), f.clone());
                        keys.insert(k.clone());
                    }
                }
            }
            next.insert(f, keys);
        }
        sources.warned = plain_secrets;
        match self.apply_objects(to_apply, false).await {
            Ok(lines) => {
                for l in lines.iter().filter(|l| !l.ends_with("unchanged")) {
                    match l.strip_prefix("error: ") {
                        // Refused at admission; the directory's other objects are applied.
                        Some(e) => {
                            tracing::error!(err = %e, "manifests directory: object not applied")
                        }
                        None => tracing::info!(change = %l, "manifests directory"),
                    }
                }
            }
            Err(e) => {
                tracing::error!(err = %crate::error::chain(&e), "applying the manifests directory failed")
            }
        }
        let gone: Vec<ObjectKey> = sources
            .map
            .values()
            .flatten()
            .filter(|k| !claimed.contains_key(*k))
            .filter_map(key_of)
            .collect();
        if !gone.is_empty() {
            match self.delete_keys(&gone).await {
                Ok(lines) => lines
                    .iter()
                    .for_each(|l| tracing::info!(change = %l, "manifests directory")),
                Err(e) => {
                    tracing::error!(err = %crate::error::chain(&e), "deleting objects of removed manifests failed")
                }
            }
        }
        if next != sources.map {
            sources.map = next;
            sources.save();
        }
    }
}

/// Watch `dir` for the daemon's lifetime.
pub async fn watch_dir(sup: Arc<Supervisor>, dir: PathBuf) {
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::error!(dir = %dir.display(), err = %e, "manifests directory unavailable");
        return;
    }
    let stream = Inotify::init().and_then(|ino| {
        ino.watches().add(
            &dir,
            WatchMask::CLOSE_WRITE
                | WatchMask::MODIFY
                | WatchMask::CREATE
                | WatchMask::DELETE
                | WatchMask::MOVED_TO
                | WatchMask::MOVED_FROM,
        )?;
        ino.into_event_stream(vec![0u8; 8192])
    });
    let mut stream = match stream {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(dir = %dir.display(), err = %e, "cannot watch the manifests directory");
            return;
        }
    };
    tracing::info!(dir = %dir.display(), "watching manifests");
    sup.sync_dir(&dir).await;
    while stream.next().await.is_some() {
        // Let a burst of events (an editor's save, a `cp` of several files) settle.
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(50), stream.next()).await
        {
        }
        sup.sync_dir(&dir).await;
    }
}
