//! The runtime core's settings: the part of the daemon's configuration that sandboxes,
//! containers, the pod network and images read. The daemon fills it from its own config.

use std::path::PathBuf;

use kinglet_pull::hosts::Registries;

/// What the runtime core needs to know (see the daemon's `Config` for each field's meaning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    pub socket: PathBuf,
    pub root: PathBuf,
    pub run_root: PathBuf,
    pub systemd_cgroup: bool,
    pub bridge: String,
    pub pod_cidr: String,
    pub nft_table: String,
    pub cni_conf_dir: Option<PathBuf>,
    pub cni_bin_dir: PathBuf,
    pub cni_timeout_secs: u64,
    pub docker_config: Option<PathBuf>,
    pub credential_helpers_dir: Option<PathBuf>,
    pub registries: Registries,
    pub image_gc_high_threshold_percent: u8,
    pub image_gc_low_threshold_percent: u8,
    pub image_gc_min_age_secs: u64,
    pub image_gc_interval_secs: u64,
    pub unpack_on_pull: bool,
    pub pod_pids_limit: i64,
    pub container_log_max_size: u64,
    pub container_log_max_files: u32,
    pub max_unpacked_layer_bytes: u64,
    pub pull_progress_timeout_secs: u64,
    pub pull_connect_timeout_secs: u64,
}
