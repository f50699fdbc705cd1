//! The CRI ImageService over the image store, and the admin import call.

use kinglet_cri::CriError;
use kinglet_image::ImageRecord;
use kinglet_proto::{admin, v1};

use super::{blocking, Runtime};

fn image_err(what: String) -> impl FnOnce(kinglet_image::ImageError) -> CriError {
    move |e| CriError::internal(what, e)
}

/// The CRI error for a failed pull of `name`.
fn pull_error(name: &str, e: &kinglet_pull::PullError) -> CriError {
    use kinglet_pull::PullError as P;
    let what = format!("pull {name}: {}", kinglet_cri::chain(e));
    match e {
        P::Unauthorized { .. } => CriError::Unauthenticated { what },
        P::NotFound { .. } => CriError::NotFound {
            kind: "image",
            id: format!("{name} ({})", kinglet_cri::chain(e)),
        },
        P::Unreachable { .. } => CriError::Unavailable { what },
        P::Reference { .. } | P::BadCredentials { .. } => CriError::invalid("image", what),
        _ => CriError::internal(format!("pull {name}"), kinglet_cri::chain(e)),
    }
}

/// The CRI view of a stored image.
pub fn cri_image(r: &ImageRecord) -> v1::Image {
    let user = r.config.user.split(':').next().unwrap_or("");
    let (uid, username) = match user.parse::<i64>() {
        Ok(u) => (Some(v1::Int64Value { value: u }), String::new()),
        Err(_) if user.is_empty() => (Some(v1::Int64Value { value: 0 }), String::new()),
        Err(_) => (None, user.to_owned()),
    };
    v1::Image {
        id: r.id.clone(),
        repo_tags: r.repo_tags.clone(),
        repo_digests: r.repo_digests.clone(),
        size: r.size,
        uid,
        username,
        spec: Some(v1::ImageSpec {
            image: r.id.clone(),
            ..Default::default()
        }),
        pinned: false,
    }
}

impl Runtime {
    pub async fn list_images(
        &self,
        req: v1::ListImagesRequest,
    ) -> Result<v1::ListImagesResponse, CriError> {
        let images = &self.images;
        let want = req
            .filter
            .and_then(|f| f.image)
            .map(|i| i.image)
            .unwrap_or_default();
        // No blocking hop: the store's readers take only the short snapshot lock, never one
        // held across I/O (see kinglet_image's store invariants).
        // Each CRI image is built from the snapshot's record by reference (never a clone of the
        // whole record, whose image config the listing does not need).
        let images = if want.is_empty() {
            images.map_all(cri_image)
        } else {
            images.map_resolved(&want, cri_image).into_iter().collect()
        };
        Ok(v1::ListImagesResponse { images })
    }

    pub async fn image_status(
        &self,
        req: v1::ImageStatusRequest,
    ) -> Result<v1::ImageStatusResponse, CriError> {
        let name = req.image.map(|i| i.image).unwrap_or_default();
        if name.is_empty() {
            return Err(CriError::invalid("image.image", "must not be empty"));
        }
        // Read from the store's snapshot by reference, as ListImages.
        let found = self.images.map_resolved(&name, |r| {
            let mut info = std::collections::HashMap::new();
            if req.verbose {
                info.insert(
                    "info".to_owned(),
                    serde_json::json!({ "config": r.config, "manifestDigest": r.manifest_digest })
                        .to_string(),
                );
            }
            (cri_image(r), info)
        });
        let (image, info) = found.map_or((None, Default::default()), |(i, info)| (Some(i), info));
        Ok(v1::ImageStatusResponse { image, info })
    }

    pub async fn remove_image(&self, req: v1::RemoveImageRequest) -> Result<(), CriError> {
        let name = req.image.map(|i| i.image).unwrap_or_default();
        if name.is_empty() {
            return Err(CriError::invalid("image.image", "must not be empty"));
        }
        let Some(found) = self.images.resolve(&name) else {
            return Ok(());
        };
        for c in self.store.all_containers().await {
            let r = c.record.lock().await;
            if r.image_id == found.id {
                return Err(CriError::FailedPrecondition {
                    kind: "image",
                    id: found.id.clone(),
                    state: format!("in use by container {}", r.id),
                    action: "RemoveImage",
                    needed: "unused",
                });
            }
        }
        let images = self.images.clone();
        let id = found.id.clone();
        blocking("remove image", move || {
            images
                .remove(&id)
                .map_err(image_err(format!("remove image {id}")))
        })
        .await?;
        self.image_usage.invalidate().await;
        tracing::info!(image = %found.id, "image removed");
        Ok(())
    }

    /// PullImage: fetch `image` from its registry (or a mirror), with the request's
    /// AuthConfig tried first. Returns the image id.
    pub async fn pull_image(
        &self,
        req: v1::PullImageRequest,
    ) -> Result<v1::PullImageResponse, CriError> {
        let name = req.image.map(|i| i.image).unwrap_or_default();
        if name.is_empty() {
            return Err(CriError::invalid("image.image", "must not be empty"));
        }
        let explicit = match &req.auth {
            Some(a) => kinglet_pull::auth::from_auth_config(
                &a.username,
                &a.password,
                &a.auth,
                &a.identity_token,
                &a.registry_token,
            )
            .map_err(|e| CriError::invalid("auth", kinglet_cri::chain(&e)))?,
            None => None,
        };
        let record = self
            .puller
            .pull(&name, explicit.into_iter().collect())
            .await
            .map_err(|e| pull_error(&name, &e))?;
        self.image_usage.invalidate().await;
        self.touch_image(&record.id);
        Ok(v1::PullImageResponse {
            image_ref: record.id,
        })
    }

    pub async fn image_fs_info(&self) -> Result<v1::ImageFsInfoResponse, CriError> {
        let images = self.images.clone();
        let measured = self
            .image_usage
            .get(|| {
                blocking("image fs usage", move || {
                    images
                        .usage()
                        .map_err(image_err("measure the image store".into()))
                })
            })
            .await?;
        let usage = measured.usage;
        let fs = v1::FilesystemUsage {
            timestamp: measured.timestamp,
            fs_id: Some(v1::FilesystemIdentifier {
                mountpoint: usage.mountpoint.display().to_string(),
            }),
            used_bytes: Some(v1::UInt64Value {
                value: usage.used_bytes,
            }),
            inodes_used: Some(v1::UInt64Value {
                value: usage.inodes_used,
            }),
        };
        Ok(v1::ImageFsInfoResponse {
            image_filesystems: vec![fs.clone()],
            container_filesystems: vec![fs],
        })
    }

    pub async fn import_image(
        &self,
        req: admin::ImportImageRequest,
    ) -> Result<admin::ImportImageResponse, CriError> {
        if !req.path.starts_with('/') {
            return Err(CriError::invalid(
                "path",
                format!("{:?} is not an absolute path", req.path),
            ));
        }
        let images = self.images.clone();
        let path = std::path::PathBuf::from(&req.path);
        let name = (!req.name.is_empty()).then(|| req.name.clone());
        let imported = blocking("import image", move || {
            images
                .import(&path, name.as_deref())
                .map_err(|e| CriError::invalid("path", kinglet_cri::chain(&e)))
        })
        .await?;
        for r in &imported {
            tracing::info!(image = %r.id, tags = ?r.repo_tags, "image imported");
        }
        Ok(admin::ImportImageResponse {
            images: imported
                .iter()
                .map(|r| admin::ImportedImage {
                    id: r.id.clone(),
                    repo_tags: r.repo_tags.clone(),
                    repo_digests: r.repo_digests.clone(),
                    size: r.size,
                })
                .collect(),
        })
    }
}
