//! Image volumes (CRI `Mount.image`, Kubernetes' ImageVolume feature): an image's file system
//! mounted read-only into a container, whole or one sub-directory of it (`image_sub_path`).
//!
//! Each volume is an overlayfs of the image's unpacked layers with no upper layer (so it is
//! read-only by construction) at `<run-root>/containers/<id>/image-volumes/<n>`, then
//! bind-mounted read-only like a host path. RemoveContainer unmounts it with the rest of the
//! container's run directory. As containerd and CRI-O: the image must already be pulled, the
//! mount must be `readonly`, and a sub-path must exist in the image.

use std::path::{Component, Path, PathBuf};

use kinglet_cri::CriError;
use kinglet_proto::v1;

use super::{blocking, mounts, Runtime};

/// The image behind one image volume, for ContainerStatus and image GC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountedImage {
    /// The image as the client named it.
    pub image: String,
    /// Its id (what PullImage returned as `image_ref`).
    pub image_id: String,
}

/// Check an image mount's own fields (not the image): no host path, read-only, and a
/// sub-path that stays inside the image.
pub fn check_image_mount(i: usize, m: &v1::Mount) -> Result<(), CriError> {
    let field = |f: &str| format!("config.mounts[{i}].{f}");
    if !m.host_path.is_empty() {
        return Err(CriError::invalid(
            field("host_path"),
            "must be empty for an image volume (image is set)",
        ));
    }
    if !m.readonly {
        return Err(CriError::invalid(
            field("readonly"),
            "must be true: image volumes are read-only",
        ));
    }
    if m.propagation != v1::MountPropagation::PropagationPrivate as i32 {
        return Err(CriError::invalid(
            field("propagation"),
            "must be PROPAGATION_PRIVATE for an image volume",
        ));
    }
    let sub = Path::new(&m.image_sub_path);
    if sub
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(CriError::invalid(
            field("image_sub_path"),
            format!(
                "{:?} must be a relative path inside the image, without '..'",
                m.image_sub_path
            ),
        ));
    }
    Ok(())
}

/// `sub` inside the mounted image `root`, symlinks resolved, refusing one that leads out of
/// it or does not exist.
pub fn resolve_sub_path(root: &Path, sub: &str, field: &str) -> Result<PathBuf, CriError> {
    if sub.is_empty() {
        return Ok(root.to_owned());
    }
    let missing = || {
        CriError::invalid(
            field,
            format!("{sub:?} does not exist in the image (or leads out of it)"),
        )
    };
    let root = root
        .canonicalize()
        .map_err(|e| CriError::internal(format!("resolve {}", root.display()), e))?;
    let p = root.join(sub).canonicalize().map_err(|_| missing())?;
    if !p.starts_with(&root) {
        return Err(missing());
    }
    Ok(p)
}

impl Runtime {
    /// Mount the image volumes of `config` under `run_dir` and return the config with each
    /// one's `host_path` set to what to bind-mount, and per mount the image behind it.
    pub(crate) async fn mount_image_volumes(
        &self,
        config: &v1::ContainerConfig,
        run_dir: &Path,
    ) -> Result<(v1::ContainerConfig, Vec<Option<MountedImage>>), CriError> {
        let mut resolved = config.clone();
        let mut images = Vec::with_capacity(config.mounts.len());
        for (i, m) in resolved.mounts.iter_mut().enumerate() {
            let Some(spec) = m.image.as_ref().filter(|s| !s.image.is_empty()) else {
                images.push(None);
                continue;
            };
            check_image_mount(i, m)?;
            let store = self.images.clone();
            let name = spec.image.clone();
            let image = blocking("resolve image volume", move || Ok(store.resolve(&name)))
                .await?
                .ok_or_else(|| {
                    CriError::invalid(
                        format!("config.mounts[{i}].image.image"),
                        format!("image {:?} is not present: pull it first", spec.image),
                    )
                })?;
            self.touch_image(&image.id);
            let store = self.images.clone();
            let img = image.clone();
            let target = run_dir.join("image-volumes").join(i.to_string());
            let empty = run_dir.join("image-volumes").join(format!("{i}-empty"));
            let sub = m.image_sub_path.clone();
            let field = format!("config.mounts[{i}].image_sub_path");
            let host = blocking("mount image volume", move || {
                let mut lower = store.layer_dirs(&img).map_err(|e| {
                    CriError::internal(format!("prepare layers of image {}", img.id), e)
                })?;
                lower.reverse();
                mounts::mount_overlay_readonly(&lower, &empty, &target)?;
                resolve_sub_path(&target, &sub, &field)
            })
            .await?;
            m.host_path = host.display().to_string();
            images.push(Some(MountedImage {
                image: spec.image.clone(),
                image_id: image.id,
            }));
        }
        Ok((resolved, images))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_mount(readonly: bool, sub: &str) -> v1::Mount {
        v1::Mount {
            container_path: "/mnt/v".into(),
            readonly,
            image: Some(v1::ImageSpec {
                image: "sha256:abc".into(),
                ..Default::default()
            }),
            image_sub_path: sub.into(),
            ..Default::default()
        }
    }

    #[test]
    fn image_mounts_are_read_only_without_host_path_and_stay_inside() {
        assert!(check_image_mount(0, &image_mount(true, "")).is_ok());
        assert!(check_image_mount(0, &image_mount(true, "etc/ssl")).is_ok());
        let e = check_image_mount(2, &image_mount(false, ""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("config.mounts[2].readonly"), "{e}");
        for bad in ["../etc", "/etc", "a/../../b"] {
            let e = check_image_mount(0, &image_mount(true, bad))
                .unwrap_err()
                .to_string();
            assert!(e.contains("image_sub_path"), "{bad}: {e}");
        }
        let mut m = image_mount(true, "");
        m.host_path = "/tmp".into();
        assert!(check_image_mount(0, &m).is_err());
    }

    #[test]
    fn sub_paths_resolve_inside_the_image_only() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::os::unix::fs::symlink("/", root.join("escape")).unwrap();
        std::os::unix::fs::symlink("etc", root.join("inside")).unwrap();
        let canon = root.canonicalize().unwrap();
        assert_eq!(resolve_sub_path(&root, "", "f").unwrap(), root);
        assert_eq!(
            resolve_sub_path(&root, "etc", "f").unwrap(),
            canon.join("etc")
        );
        assert_eq!(
            resolve_sub_path(&root, "inside", "f").unwrap(),
            canon.join("etc")
        );
        let e = resolve_sub_path(&root, "missing", "f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not exist"), "{e}");
        assert!(resolve_sub_path(&root, "escape", "f").is_err());
    }
}
