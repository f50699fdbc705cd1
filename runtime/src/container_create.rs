//! CreateContainer, in named steps: check the request, find the ready sandbox and the image,
//! reserve the container's name, mount its root filesystem (the image's layers under a fresh
//! writable layer) and image volumes, write the OCI bundle's `config.json`, and persist the
//! record. Every step before the record is undone when a later one fails. StartContainer, which
//! launches the shim, is in `start.rs`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kinglet_cri::CriError;
use kinglet_image::ImageRecord;
use kinglet_proto::v1;
use nix::sys::signal::Signal;

use super::container::parse_signal;
use super::image_volume::MountedImage;
use super::spec::{self, SandboxFiles, SpecInput};
use super::store::{
    ContainerEntry, ContainerRecord, ContainerState, Meta, MountRecord, SandboxRecord,
};
use super::{
    blocking, encode_hex, mkdir, mounts, new_id, now_nanos, Reservation, Rollback, Runtime,
};

/// The first process's uid, gid and supplementary groups, as the record keeps them.
type UserRecord = (u32, u32, Vec<u32>);

/// The checked fields of a CreateContainerRequest.
struct Checked {
    config: v1::ContainerConfig,
    md: v1::ContainerMetadata,
    image_name: String,
}

fn check_request(req: &v1::CreateContainerRequest) -> Result<Checked, CriError> {
    if req.pod_sandbox_id.is_empty() {
        return Err(CriError::invalid("pod_sandbox_id", "must not be empty"));
    }
    let config = req
        .config
        .clone()
        .ok_or_else(|| CriError::invalid("config", "is required"))?;
    let md = config
        .metadata
        .clone()
        .ok_or_else(|| CriError::invalid("config.metadata", "is required"))?;
    if md.name.is_empty() {
        return Err(CriError::invalid(
            "config.metadata.name",
            "must not be empty",
        ));
    }
    let image_name = config
        .image
        .as_ref()
        .map(|i| i.image.clone())
        .unwrap_or_default();
    if image_name.is_empty() {
        return Err(CriError::invalid("config.image.image", "must not be empty"));
    }
    Ok(Checked {
        config,
        md,
        image_name,
    })
}

/// What one container is made from, once sandbox, image and name are settled.
struct Plan<'a> {
    id: &'a str,
    sandbox: &'a SandboxRecord,
    image: &'a ImageRecord,
    image_name: &'a str,
    config: &'a v1::ContainerConfig,
    meta: Meta,
    run_dir: PathBuf,
    root_dir: PathBuf,
}

/// The CRI log file of a container (its directory created), if it asked for one.
fn log_path(
    config: &v1::ContainerConfig,
    sandbox: &SandboxRecord,
) -> Result<Option<PathBuf>, CriError> {
    if config.log_path.is_empty() {
        return Ok(None);
    }
    if sandbox.log_directory.is_empty() {
        return Err(CriError::invalid(
            "config.log_path",
            "is set but the pod sandbox has no log_directory",
        ));
    }
    let p = Path::new(&sandbox.log_directory).join(&config.log_path);
    if let Some(parent) = p.parent() {
        mkdir(parent)?;
    }
    Ok(Some(p))
}

/// The record of a created container.
fn record(
    plan: Plan<'_>,
    volume_images: Vec<Option<MountedImage>>,
    log_path: Option<PathBuf>,
    user: Option<UserRecord>,
) -> ContainerRecord {
    let (config, image) = (plan.config, plan.image);
    let sig = image
        .config
        .stop_signal
        .as_deref()
        .and_then(parse_signal)
        .unwrap_or(Signal::SIGTERM);
    ContainerRecord {
        id: plan.id.to_owned(),
        sandbox_id: plan.sandbox.id.clone(),
        meta: plan.meta,
        state: ContainerState::Created,
        image: plan.image_name.to_owned(),
        image_id: image.id.clone(),
        image_ref: image
            .repo_digests
            .first()
            .cloned()
            .unwrap_or_else(|| image.id.clone()),
        created_at: now_nanos(),
        started_at: 0,
        finished_at: 0,
        exit_code: 0,
        reason: String::new(),
        message: String::new(),
        labels: config.labels.clone().into_iter().collect(),
        annotations: config.annotations.clone().into_iter().collect(),
        mounts: config
            .mounts
            .iter()
            .zip(volume_images)
            .map(|(m, img)| MountRecord {
                container_path: m.container_path.clone(),
                host_path: m.host_path.clone(),
                readonly: m.readonly,
                propagation: m.propagation,
                image: img.map(|i| (i.image, i.image_id)),
                image_sub_path: m.image_sub_path.clone(),
            })
            .collect(),
        log_path: log_path
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        stop_signal: sig as i32,
        // No shim yet: StartContainer launches it (start.rs).
        shim_pid: 0,
        init_pid: 0,
        init_start_ticks: 0,
        config: encode_hex(config),
        resources: String::new(),
        user,
    }
}

impl Runtime {
    pub async fn create_container(
        self: &Arc<Self>,
        req: v1::CreateContainerRequest,
    ) -> Result<v1::CreateContainerResponse, CriError> {
        let Checked {
            config,
            md,
            image_name,
        } = check_request(&req)?;
        let sandbox_entry = self.ready_sandbox(&req.pod_sandbox_id).await?;
        let sandbox = sandbox_entry.record.lock().await.clone();
        crate::userns::check_container(&config, sandbox.namespaces.userns.as_ref())?;
        // The store's readers never wait on I/O: no blocking hop needed.
        let image = self
            .images
            .resolve(&image_name)
            .ok_or_else(|| CriError::not_found("image", &image_name))?;
        self.touch_image(&image.id);

        let meta = Meta {
            name: md.name.clone(),
            uid: sandbox.meta.uid.clone(),
            namespace: sandbox.meta.namespace.clone(),
            attempt: md.attempt,
        };
        let id = new_id();
        let _reservation = self.reserve_container_name(&sandbox, &meta, &id).await?;

        let mut rb = Rollback::default();
        let (run_dir, root_dir) = (
            self.paths.container_run(&id),
            self.paths.container_root(&id),
        );
        {
            let (a, b) = (run_dir.clone(), root_dir.clone());
            rb.push("remove container dirs", move || async move {
                let _ = blocking("remove container dirs", move || {
                    mounts::remove_tree(&a)?;
                    mounts::remove_tree(&b)
                })
                .await;
            });
        }
        if let Err(e) = crate::userns::own_dir(&run_dir, sandbox.namespaces.userns.as_ref()) {
            rb.run().await;
            return Err(e);
        }
        let plan = Plan {
            id: &id,
            sandbox: &sandbox,
            image: &image,
            image_name: &image_name,
            config: &config,
            meta,
            run_dir,
            root_dir,
        };
        match self.prepare_container(plan).await {
            Ok(_entry) => {
                rb.commit();
                self.emit_event(
                    &id,
                    &sandbox.id,
                    v1::ContainerEventType::ContainerCreatedEvent,
                )
                .await;
                tracing::info!(pod = %sandbox.id, container = %id, name = %md.name, "container created");
                Ok(v1::CreateContainerResponse { container_id: id })
            }
            Err(e) => {
                rb.run().await;
                Err(e)
            }
        }
    }

    /// Reserve `<name>_<pod>_<namespace>_<uid>_<attempt>` for `id`: AlreadyExists when a
    /// container of the sandbox has that name and attempt, or a create of it is under way.
    async fn reserve_container_name(
        &self,
        sandbox: &SandboxRecord,
        meta: &Meta,
        id: &str,
    ) -> Result<Reservation, CriError> {
        let key = format!(
            "{}_{}_{}_{}_{}",
            meta.name, sandbox.meta.name, sandbox.meta.namespace, sandbox.meta.uid, meta.attempt
        );
        let taken = |other: String| CriError::AlreadyExists {
            kind: "container",
            name: key.clone(),
            id: other,
        };
        let _names = self.names.lock().await;
        for c in self.store.all_containers().await {
            let r = c.record.lock().await;
            if r.sandbox_id == sandbox.id
                && r.meta.name == meta.name
                && r.meta.attempt == meta.attempt
            {
                return Err(taken(r.id.clone()));
            }
        }
        self.reserve(&format!("container/{}/{key}", sandbox.id), id)
            .map_err(taken)
    }

    /// Root filesystem, image volumes, the bundle's spec and the log file; then the record.
    async fn prepare_container(&self, plan: Plan<'_>) -> Result<Arc<ContainerEntry>, CriError> {
        let ns = &plan.sandbox.namespaces;
        let idmap = match (
            &ns.user_path,
            ns.userns.as_ref().and_then(crate::userns::mapped_root),
        ) {
            (Some(pin), Some(root)) => Some((pin.clone(), root, plan.run_dir.join("idmap"))),
            _ => None,
        };
        let rootfs = self
            .mount_container_rootfs(plan.id, plan.image, &plan.root_dir, idmap)
            .await?;
        kinglet_fault::crash_point!("container.after-rootfs");

        // Image volumes: mounted here, then bind-mounted like host paths.
        let (spec_config, volume_images) =
            self.mount_image_volumes(plan.config, &plan.run_dir).await?;
        let user = self
            .write_container_spec(&plan, &spec_config, &rootfs)
            .await?;
        kinglet_fault::crash_point!("container.after-spec");

        let log_path = log_path(plan.config, plan.sandbox)?;
        let rec = record(plan, volume_images, log_path, user);
        let entry = self.store.insert_container(rec, true).await?;
        kinglet_fault::crash_point!("container.after-record");
        Ok(entry)
    }

    /// Mount the image's layers (unpacked on first use) under a fresh writable layer in
    /// `root_dir`, at the bundle's `rootfs`; returns that path. With `idmap` (the pod's user
    /// namespace pin, its mapped root and the container's idmap directory), from idmapped
    /// layers.
    async fn mount_container_rootfs(
        &self,
        id: &str,
        image: &ImageRecord,
        root_dir: &Path,
        idmap: Option<(PathBuf, (u32, u32), PathBuf)>,
    ) -> Result<PathBuf, CriError> {
        let images = self.images.clone();
        let img = image.clone();
        let mut lower = blocking("unpack image layers", move || {
            images
                .layer_dirs(&img)
                .map_err(|e| CriError::internal(format!("prepare layers of image {}", img.id), e))
        })
        .await?;
        lower.reverse();
        let rootfs = self.paths.bundle(id).join("rootfs");
        let (upper, work) = (root_dir.join("upper"), root_dir.join("work"));
        let r = rootfs.clone();
        blocking("mount rootfs", move || {
            let lower = match &idmap {
                Some((pin, root, dir)) => {
                    crate::userns::idmapped_layers(&lower, (&upper, &work), *root, pin, dir)?
                }
                None => lower,
            };
            mounts::mount_overlay(&lower, &upper, &work, &r)
        })
        .await?;
        Ok(rootfs)
    }

    /// Build the OCI spec (with `spec_config`, whose image volumes are host paths now), create
    /// missing host paths of CRI mounts as directories (as containerd does), and write the
    /// bundle's `config.json`. Returns the first process's uid, gid and groups.
    async fn write_container_spec(
        &self,
        plan: &Plan<'_>,
        spec_config: &v1::ContainerConfig,
        rootfs: &Path,
    ) -> Result<Option<UserRecord>, CriError> {
        let sandbox = plan.sandbox;
        let pod_dir = self.paths.pod_run(&sandbox.id);
        let files = SandboxFiles {
            hostname: pod_dir.join("hostname"),
            hosts: pod_dir.join("hosts"),
            resolv_conf: pod_dir.join("resolv.conf"),
        };
        let target_pid_ns = self.target_pid_ns(plan.config).await;
        let cgroups_path = format!(
            "{}/{}",
            sandbox.cgroup_parent.trim_end_matches('/'),
            plan.id
        );
        let cgroup_v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        let cgroup_v1_hierarchies = if cgroup_v2 {
            Vec::new()
        } else {
            crate::cgroups::v1_hierarchies(Path::new("/sys/fs/cgroup"))
        };
        let mut spec = spec::build_spec(&SpecInput {
            config: spec_config,
            sandbox,
            image: &plan.image.config,
            rootfs,
            files: &files,
            cgroups_path: &cgroups_path,
            min_oom_score_adj: self.min_oom_score_adj,
            host_caps: &self.host_caps,
            target_pid_ns,
            cgroup_v2,
            cgroup_v1_hierarchies: &cgroup_v1_hierarchies,
        })?;
        for m in &spec_config.mounts {
            let p = Path::new(&m.host_path);
            if std::fs::symlink_metadata(p).is_err() {
                mkdir(p)?;
            }
        }
        if sandbox.namespaces.user_path.is_some() {
            let (ns, dir) = (sandbox.namespaces.clone(), plan.run_dir.join("idmap"));
            spec = blocking("idmap mounts", move || {
                crate::userns::apply(spec, &ns, &dir)
            })
            .await?;
        }
        let user = spec.process().as_ref().map(|p| {
            let u = p.user();
            (
                u.uid(),
                u.gid(),
                u.additional_gids().clone().unwrap_or_default(),
            )
        });
        let cfg_path = self.paths.bundle(plan.id).join("config.json");
        spec.save(&cfg_path)
            .map_err(|e| CriError::internal(format!("write {}", cfg_path.display()), e))?;
        Ok(user)
    }
}
