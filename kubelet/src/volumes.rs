//! Volumes of pods from manifests, prepared on the host and handed to containers as CRI mounts:
//! `configMap` and `secret` (AtomicWriter layout; secrets on a tmpfs of their own), `emptyDir`
//! (disk, or `medium: Memory` on tmpfs), `hostPath` (with its `type` checks), and
//! `persistentVolumeClaim` (the claim's directory from the local provisioner, `crate::pvc`).
//!
//! ConfigMap and Secret volumes are rewritten on every reconcile pass; the AtomicWriter makes
//! that a no-op when nothing changed and an atomic swap when something did.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{KeyToPath, Pod, Volume};
use kinglet_volumes::atomic::{AtomicWriter, FileProjection};
use kinglet_volumes::ownership::ChangePolicy;

use super::downward::{self, Allocatable};
use super::podspec::{ConfigError, PodFields, Sources};

/// Where one pod's volumes live.
pub struct VolumeRoots {
    /// Runtime volumes (configMap, secret tmpfs, memory emptyDir): `<run-root>/volumes/<uid>`.
    pub run: PathBuf,
    /// Disk emptyDirs: `<root>/volumes/<uid>`.
    pub disk: PathBuf,
}

fn project(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: Option<i32>,
    what: &str,
    optional: bool,
) -> Result<BTreeMap<String, FileProjection>, ConfigError> {
    let mode = default_mode.unwrap_or(0o644) as u32;
    let mut out = BTreeMap::new();
    match items {
        Some(items) if !items.is_empty() => {
            for it in items {
                match data.get(&it.key) {
                    Some(v) => {
                        out.insert(
                            it.path.clone(),
                            FileProjection {
                                data: v.clone(),
                                mode: it.mode.map(|m| m as u32).unwrap_or(mode),
                            },
                        );
                    }
                    None if optional => {}
                    None => return Err(ConfigError(format!("key {} not found in {what}", it.key))),
                }
            }
        }
        _ => {
            for (k, v) in data {
                out.insert(
                    k.clone(),
                    FileProjection {
                        data: v.clone(),
                        mode,
                    },
                );
            }
        }
    }
    Ok(out)
}

fn write(
    dir: &Path,
    payload: &BTreeMap<String, FileProjection>,
    fs_group: Option<u32>,
) -> Result<(), ConfigError> {
    AtomicWriter::new(dir)
        .fs_group(fs_group)
        .write(payload)
        .map(|_| ())
        .map_err(|e| ConfigError(format!("write volume {}: {e}", dir.display())))
}

/// The downward API as files (`crate::downward` resolves each item): fieldRef items from
/// the volume list of field paths, resourceFieldRef items of the named container.
fn downward_files(
    pod: &Pod,
    node: &Allocatable,
    items: Option<&Vec<k8s_openapi::api::core::v1::DownwardAPIVolumeFile>>,
    default_mode: Option<i32>,
    out: &mut BTreeMap<String, FileProjection>,
) -> Result<(), ConfigError> {
    let m = &pod.metadata;
    let fields = PodFields {
        name: m.name.as_deref().unwrap_or_default(),
        namespace: m.namespace.as_deref().unwrap_or("default"),
        uid: m.uid.as_deref().unwrap_or_default(),
        pod_ip: "",
        node_name: "",
        host_ip: "",
        allocatable: *node,
    };
    let spec = pod.spec.clone().unwrap_or_default();
    for it in items.into_iter().flatten() {
        let named =
            |e: ConfigError| ConfigError(format!("downwardAPI item {:?}: {}", it.path, e.0));
        let value = match (&it.field_ref, &it.resource_field_ref) {
            (Some(f), None) => downward::field_value(pod, &fields, f, downward::Use::Volume),
            (None, Some(r)) => {
                let name = r.container_name.as_deref().unwrap_or_default();
                let c = spec
                    .containers
                    .iter()
                    .chain(spec.init_containers.iter().flatten())
                    .find(|c| c.name == name)
                    .ok_or_else(|| {
                        ConfigError(format!(
                            "resourceFieldRef.containerName: {name:?} is not a container of the pod"
                        ))
                    });
                c.and_then(|c| downward::resource_value(c, r, node))
            }
            _ => Err(ConfigError(
                "exactly one of fieldRef and resourceFieldRef must be set".into(),
            )),
        }
        .map_err(named)?;
        out.insert(
            it.path.clone(),
            FileProjection {
                data: value.into_bytes(),
                mode: it.mode.or(default_mode).unwrap_or(0o644) as u32,
            },
        );
    }
    Ok(())
}

/// The pod's `fsGroup` and `fsGroupChangePolicy`.
fn fs_group(pod: &Pod) -> Result<(Option<u32>, ChangePolicy), ConfigError> {
    let sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let gid = match sc.and_then(|s| s.fs_group) {
        None => None,
        Some(g) => Some(u32::try_from(g).map_err(|_| {
            ConfigError(format!(
                "spec.securityContext.fsGroup: {g} is not a group id"
            ))
        })?),
    };
    let policy = ChangePolicy::from_k8s(sc.and_then(|s| s.fs_group_change_policy.as_deref()));
    Ok((gid, policy))
}

/// Prepare (or refresh) every volume of `pod`; returns volume name → host path. With an
/// `fsGroup`, every volume but hostPath is given to that group (`kinglet_volumes::ownership`).
pub fn prepare(
    pod: &Pod,
    ns: &str,
    roots: &VolumeRoots,
    src: &dyn Sources,
    node: &Allocatable,
) -> Result<HashMap<String, PathBuf>, ConfigError> {
    let mut out = HashMap::new();
    let (fs_group, fs_group_policy) = fs_group(pod)?;
    let vols: Vec<Volume> = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    for v in vols {
        let path = if let Some(cm) = &v.config_map {
            let dir = roots.run.join(&v.name);
            let optional = cm.optional.unwrap_or(false);
            let data = match src.config_map(ns, &cm.name) {
                Some(d) => d,
                None if optional => BTreeMap::new(),
                None => return Err(ConfigError(format!("configmap {ns}/{} not found", cm.name))),
            };
            let what = format!("ConfigMap {ns}/{}", cm.name);
            write(
                &dir,
                &project(&data, cm.items.as_ref(), cm.default_mode, &what, optional)?,
                fs_group,
            )?;
            dir
        } else if let Some(s) = &v.secret {
            let dir = roots.run.join(&v.name);
            let name = s.secret_name.clone().unwrap_or_default();
            let optional = s.optional.unwrap_or(false);
            let data = match src.secret(ns, &name) {
                Some(d) => d,
                None if optional => BTreeMap::new(),
                None => return Err(ConfigError(format!("secret {ns}/{name} not found"))),
            };
            kinglet_volumes::tmpfs::mount_tmpfs(&dir, 16 << 20)
                .map_err(|e| ConfigError(format!("secret volume {}: {e}", v.name)))?;
            let what = format!("Secret {ns}/{name}");
            write(
                &dir,
                &project(&data, s.items.as_ref(), s.default_mode, &what, optional)?,
                fs_group,
            )?;
            dir
        } else if let Some(e) = &v.empty_dir {
            empty_dir(roots, &v, e, fs_group, fs_group_policy)?
        } else if let Some(da) = &v.downward_api {
            let dir = roots.run.join(&v.name);
            let mut payload = BTreeMap::new();
            downward_files(pod, node, da.items.as_ref(), da.default_mode, &mut payload)
                .map_err(|e| ConfigError(format!("volume {:?}: {}", v.name, e.0)))?;
            write(&dir, &payload, fs_group)?;
            dir
        } else if let Some(pr) = &v.projected {
            projected(pod, ns, (roots, node), src, &v, pr, fs_group)?
        } else if let Some(c) = &v.persistent_volume_claim {
            claim_volume(ns, src, &c.claim_name)?
        } else if let Some(h) = &v.host_path {
            host_path(&h.path, h.type_.as_deref().unwrap_or(""))
                .map_err(|m| ConfigError(format!("hostPath volume {}: {m}", v.name)))?;
            PathBuf::from(&h.path)
        } else {
            return Err(ConfigError(format!(
                "volume {}: only configMap, secret, emptyDir, hostPath, projected, downwardAPI and persistentVolumeClaim volumes are supported",
                v.name
            )));
        };
        out.insert(v.name.clone(), path);
    }
    Ok(out)
}

/// A persistentVolumeClaim volume: the claim's bound directory, bind-mounted; a claim that is
/// missing or not bound yet makes the pod wait (its event names the claim), as the kubelet does.
fn claim_volume(ns: &str, src: &dyn Sources, claim: &str) -> Result<PathBuf, ConfigError> {
    match src.claim(ns, claim) {
        crate::pvc::Claim::Bound(dir) if dir.is_dir() => Ok(dir),
        crate::pvc::Claim::Missing => Err(ConfigError(format!(
            "error processing PVC {ns}/{claim}: persistentvolumeclaim {claim:?} not found (apply it, or the StatefulSet that makes it)"
        ))),
        _ => Err(ConfigError(format!(
            "error processing PVC {ns}/{claim}: PVC is not bound"
        ))),
    }
}

/// An emptyDir: on disk, or a tmpfs for `medium: Memory`; made world-writable when new, and
/// given to the fsGroup when new or when its root lacks the group.
fn empty_dir(
    roots: &VolumeRoots,
    v: &Volume,
    e: &k8s_openapi::api::core::v1::EmptyDirVolumeSource,
    fs_group: Option<u32>,
    fs_group_policy: ChangePolicy,
) -> Result<PathBuf, ConfigError> {
    let err = |e: &dyn std::fmt::Display| ConfigError(format!("emptyDir {}: {e}", v.name));
    let (dir, fresh) = if e.medium.as_deref() == Some("Memory") {
        let dir = roots.run.join(&v.name);
        let size = e
            .size_limit
            .as_ref()
            .and_then(|q| super::podspec::parse_quantity(&q.0))
            .map(|n| n as u64)
            .unwrap_or(64 << 20);
        let fresh = !kinglet_volumes::tmpfs::is_tmpfs(&dir);
        kinglet_volumes::tmpfs::mount_tmpfs(&dir, size).map_err(|e| err(&e))?;
        (dir, fresh)
    } else {
        let dir = roots.disk.join(&v.name);
        let fresh = !dir.exists();
        std::fs::create_dir_all(&dir).map_err(|e| err(&e))?;
        (dir, fresh)
    };
    // The kubelet's emptyDir is world-writable (0777), whoever the containers run as.
    if fresh {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
            .map_err(|e| err(&e))?;
    }
    // fsGroup: when the volume is set up, and again whenever its root lacks the group
    // (fsGroup changed); not on every pass, which would undo the containers' chmods.
    if let Some(gid) = fs_group {
        if fresh || kinglet_volumes::ownership::requires_change(&dir, gid, false) {
            kinglet_volumes::ownership::set_volume_ownership(&dir, gid, false, fs_group_policy)
                .map_err(|e| err(&e))?;
        }
    }
    Ok(dir)
}

/// A projected volume: all its sources in one payload, on a tmpfs (secrets may be among them).
fn projected(
    pod: &Pod,
    ns: &str,
    (roots, node): (&VolumeRoots, &Allocatable),
    src: &dyn Sources,
    v: &Volume,
    pr: &k8s_openapi::api::core::v1::ProjectedVolumeSource,
    fs_group: Option<u32>,
) -> Result<PathBuf, ConfigError> {
    // All sources into one payload; secrets are among them, so a tmpfs.
    let dir = roots.run.join(&v.name);
    let mut payload = BTreeMap::new();
    for (i, source) in pr.sources.iter().flatten().enumerate() {
        if let Some(cm) = &source.config_map {
            let optional = cm.optional.unwrap_or(false);
            let data = match src.config_map(ns, &cm.name) {
                Some(d) => d,
                None if optional => BTreeMap::new(),
                None => return Err(ConfigError(format!("configmap {ns}/{} not found", cm.name))),
            };
            let what = format!("ConfigMap {ns}/{}", cm.name);
            payload.extend(project(
                &data,
                cm.items.as_ref(),
                pr.default_mode,
                &what,
                optional,
            )?);
        } else if let Some(sec) = &source.secret {
            let optional = sec.optional.unwrap_or(false);
            let data = match src.secret(ns, &sec.name) {
                Some(d) => d,
                None if optional => BTreeMap::new(),
                None => return Err(ConfigError(format!("secret {ns}/{} not found", sec.name))),
            };
            let what = format!("Secret {ns}/{}", sec.name);
            payload.extend(project(
                &data,
                sec.items.as_ref(),
                pr.default_mode,
                &what,
                optional,
            )?);
        } else if let Some(da) = &source.downward_api {
            downward_files(pod, node, da.items.as_ref(), pr.default_mode, &mut payload)
                .map_err(|e| ConfigError(format!("volume {:?}: {}", v.name, e.0)))?;
        } else {
            return Err(ConfigError(format!(
                "volume {}: projected source {i}: only configMap, secret and downwardAPI sources are supported",
                v.name
            )));
        }
    }
    kinglet_volumes::tmpfs::mount_tmpfs(&dir, 16 << 20)
        .map_err(|e| ConfigError(format!("projected volume {}: {e}", v.name)))?;
    write(&dir, &payload, fs_group)?;
    Ok(dir)
}

/// The kubelet's hostPath `type` checks.
fn host_path(path: &str, typ: &str) -> Result<(), String> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(format!("{path:?} is not absolute"));
    }
    let meta = std::fs::metadata(p);
    let is = |f: fn(&std::fs::Metadata) -> bool| meta.as_ref().map(f).unwrap_or(false);
    match typ {
        "" => Ok(()),
        "DirectoryOrCreate" => std::fs::create_dir_all(p).map_err(|e| e.to_string()),
        "Directory" if is(|m| m.is_dir()) => Ok(()),
        "FileOrCreate" => {
            if meta.is_err() {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            } else if is(|m| m.is_file()) {
                Ok(())
            } else {
                Err(format!("{path} is not a file"))
            }
        }
        "File" if is(|m| m.is_file()) => Ok(()),
        "Socket" if is(|m| m.file_type().is_socket()) => Ok(()),
        "CharDevice" if is(|m| m.file_type().is_char_device()) => Ok(()),
        "BlockDevice" if is(|m| m.file_type().is_block_device()) => Ok(()),
        "Directory" | "File" | "Socket" | "CharDevice" | "BlockDevice" => {
            Err(format!("{path} is not a {typ}"))
        }
        other => Err(format!("unknown hostPath type {other:?}")),
    }
}

/// Remove a pod's volumes (unmounting tmpfs volumes first).
pub fn remove(roots: &VolumeRoots) {
    for dir in [&roots.run, &roots.disk] {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let _ = kinglet_volumes::tmpfs::unmount_tmpfs(&e.path());
            }
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_path_types_are_checked() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x");
        let s = p.to_str().unwrap();
        assert!(host_path(s, "Directory").is_err());
        host_path(s, "DirectoryOrCreate").unwrap();
        host_path(s, "Directory").unwrap();
        assert!(host_path(s, "File").unwrap_err().contains("not a File"));
        let f = d.path().join("f");
        host_path(f.to_str().unwrap(), "FileOrCreate").unwrap();
        host_path(f.to_str().unwrap(), "File").unwrap();
        assert!(host_path("relative", "").is_err());
        assert!(host_path(s, "Bogus").is_err());
    }

    #[test]
    fn items_select_and_rename_keys() {
        let data: BTreeMap<String, Vec<u8>> = [
            ("a".to_string(), b"1".to_vec()),
            ("b".to_string(), b"2".to_vec()),
        ]
        .into_iter()
        .collect();
        let items = vec![KeyToPath {
            key: "a".into(),
            path: "dir/renamed".into(),
            mode: Some(0o400),
        }];
        let p = project(&data, Some(&items), None, "cm", false).unwrap();
        assert_eq!(p.keys().collect::<Vec<_>>(), ["dir/renamed"]);
        assert_eq!(p["dir/renamed"].mode, 0o400);
        let all = project(&data, None, Some(0o600), "cm", false).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all["a"].mode, 0o600);
        let missing = vec![KeyToPath {
            key: "zz".into(),
            path: "zz".into(),
            mode: None,
        }];
        assert!(project(&data, Some(&missing), None, "cm", false)
            .unwrap_err()
            .0
            .contains("zz"));
        assert!(project(&data, Some(&missing), None, "cm", true)
            .unwrap()
            .is_empty());
    }
}
