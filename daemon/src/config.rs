//! Daemon configuration: built-in defaults, overridden by an optional TOML file (`--config`),
//! overridden by command-line flags. The TOML keys are the long flag names.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::pull::hosts::Registries;
use crate::DaemonError;

/// The daemon's settings after merging all sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// CRI gRPC unix socket (mode 0660).
    pub socket: PathBuf,
    /// Persistent state: images, pod and container records, writable layers.
    pub root: PathBuf,
    /// Runtime state (tmpfs on most hosts): shim state, namespace pins, bundles, mounts.
    pub run_root: PathBuf,
    /// Use the systemd cgroup driver instead of cgroupfs.
    pub systemd_cgroup: bool,
    /// Grace period applied by StopPodSandbox to containers still running.
    pub stop_timeout_secs: u64,
    /// CrashLoopBackOff: the first delay after the immediate first restart, and the cap
    /// (the kubelet's 10 s and 300 s by default).
    pub crash_loop_backoff_initial_ms: u64,
    pub crash_loop_backoff_max_ms: u64,
    /// Directory of Kubernetes manifests kept applied (watched with inotify).
    pub manifests: PathBuf,
    /// Host bridge of the built-in pod network.
    pub bridge: String,
    /// Pod network (IPv4 CIDR); the bridge holds its first address.
    pub pod_cidr: String,
    /// Kinglet's own nftables table (family `ip`) for NAT and hostPorts.
    pub nft_table: String,
    /// ClusterIPs come from this IPv4 CIDR (kube-proxy rules in table `<nft-table>_svc`).
    pub service_cidr: String,
    /// CNI mode: a directory whose first `*.conflist` replaces the built-in network when present.
    pub cni_conf_dir: Option<PathBuf>,
    /// CNI plugin binaries.
    pub cni_bin_dir: PathBuf,
    /// Upper bound on one CNI plugin run.
    pub cni_timeout_secs: u64,
    /// Docker `config.json` with registry credentials (`auths`, `credHelpers`, `credsStore`).
    pub docker_config: Option<PathBuf>,
    /// Directory of `docker-credential-*` helpers (default: `PATH`).
    pub credential_helpers_dir: Option<PathBuf>,
    /// Per-registry settings: mirrors, plain HTTP, TLS verification, CA certificates.
    pub registries: Registries,
    /// Image GC starts when the image file system is this % used (100 disables GC).
    pub image_gc_high_threshold_percent: u8,
    /// ... and removes unused images, least recently used first, down to this %.
    pub image_gc_low_threshold_percent: u8,
    /// Images used more recently than this are never collected.
    pub image_gc_min_age_secs: u64,
    /// How often GC checks the disk.
    pub image_gc_interval_secs: u64,
    /// Unpack an image's layers when it is pulled (else at its first container).
    pub unpack_on_pull: bool,
    /// Unsafe sysctls pods from manifests may set, besides the safe set (the kubelet's
    /// `--allowed-unsafe-sysctls`): names or prefixes ending in `*` (`net.core.*`,
    /// `kernel.msg*`), each of a namespace the pod owns (net or ipc); others are refused here.
    pub allowed_unsafe_sysctls: Vec<String>,
    /// The most processes (and threads) one pod may have, applied to its cgroup
    /// `/kinglet/<pod>` (the kubelet's `podPidsLimit`); -1 or 0: unlimited. Default 4096, so a
    /// fork bomb in one pod cannot take the host's pids (the kubelet's own default is unlimited).
    /// Only for sandboxes whose cgroup parent Kinglet chooses, with the cgroupfs driver.
    pub pod_pids_limit: i64,
    /// Largest uncompressed size one image layer may unpack to (a gzip bomb stops there).
    pub max_unpacked_layer_bytes: u64,
    /// Serve Prometheus metrics on `http://ADDR/metrics` (off when unset).
    pub metrics_address: Option<std::net::SocketAddr>,
    /// The CRI streaming server (Exec/Attach/PortForward URLs): address and port; port 0 picks
    /// a free one at each start (containerd's defaults: 127.0.0.1, 0).
    pub stream_address: std::net::IpAddr,
    pub stream_port: u16,
}

/// The default `pod-pids-limit`: far above what a pod needs (a busy JVM or web server runs
/// hundreds of threads), far below the host's `pid_max` (4 194 304 on 64-bit; 32 768 on old
/// defaults), so one pod cannot exhaust it.
pub const DEFAULT_POD_PIDS_LIMIT: i64 = 4096;

impl Default for Config {
    fn default() -> Self {
        Config {
            socket: PathBuf::from("/run/kinglet/kinglet.sock"),
            root: PathBuf::from("/var/lib/kinglet"),
            run_root: PathBuf::from("/run/kinglet"),
            systemd_cgroup: false,
            stop_timeout_secs: 10,
            crash_loop_backoff_initial_ms: 10_000,
            crash_loop_backoff_max_ms: 300_000,
            manifests: PathBuf::from("/etc/kinglet/manifests"),
            bridge: kinglet_netns::network::DEFAULT_BRIDGE.to_owned(),
            pod_cidr: kinglet_netns::network::DEFAULT_POD_CIDR.to_owned(),
            nft_table: kinglet_netns::network::DEFAULT_NFT_TABLE.to_owned(),
            service_cidr: kinglet_services::alloc::DEFAULT_SERVICE_CIDR.to_owned(),
            cni_conf_dir: None,
            cni_bin_dir: PathBuf::from("/usr/lib/cni"),
            cni_timeout_secs: 30,
            docker_config: None,
            credential_helpers_dir: None,
            registries: Registries::new(),
            image_gc_high_threshold_percent: 85,
            image_gc_low_threshold_percent: 80,
            image_gc_min_age_secs: 120,
            image_gc_interval_secs: 300,
            unpack_on_pull: true,
            allowed_unsafe_sysctls: Vec::new(),
            pod_pids_limit: DEFAULT_POD_PIDS_LIMIT,
            max_unpacked_layer_bytes: kinglet_image::DEFAULT_MAX_UNPACKED_LAYER_BYTES,
            metrics_address: None,
            stream_address: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            stream_port: 0,
        }
    }
}

/// The TOML file: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub socket: Option<PathBuf>,
    pub root: Option<PathBuf>,
    pub run_root: Option<PathBuf>,
    pub systemd_cgroup: Option<bool>,
    pub stop_timeout_secs: Option<u64>,
    pub crash_loop_backoff_initial_ms: Option<u64>,
    pub crash_loop_backoff_max_ms: Option<u64>,
    pub manifests: Option<PathBuf>,
    pub bridge: Option<String>,
    pub pod_cidr: Option<String>,
    pub nft_table: Option<String>,
    pub service_cidr: Option<String>,
    pub cni_conf_dir: Option<PathBuf>,
    pub cni_bin_dir: Option<PathBuf>,
    pub cni_timeout_secs: Option<u64>,
    pub docker_config: Option<PathBuf>,
    pub credential_helpers_dir: Option<PathBuf>,
    #[serde(default)]
    pub registries: Registries,
    pub image_gc_high_threshold_percent: Option<u8>,
    pub image_gc_low_threshold_percent: Option<u8>,
    pub image_gc_min_age_secs: Option<u64>,
    pub image_gc_interval_secs: Option<u64>,
    pub unpack_on_pull: Option<bool>,
    pub allowed_unsafe_sysctls: Option<Vec<String>>,
    pub pod_pids_limit: Option<i64>,
    pub max_unpacked_layer_bytes: Option<u64>,
    pub metrics_address: Option<String>,
    pub stream_address: Option<std::net::IpAddr>,
    pub stream_port: Option<u16>,
}

/// Settings given on the command line (all optional).
#[derive(Debug, Default, Clone)]
pub struct FlagConfig {
    pub config: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    pub root: Option<PathBuf>,
    pub run_root: Option<PathBuf>,
    pub systemd_cgroup: Option<bool>,
    pub manifests: Option<PathBuf>,
    pub bridge: Option<String>,
    pub pod_cidr: Option<String>,
    pub nft_table: Option<String>,
    pub cni_conf_dir: Option<PathBuf>,
    pub cni_bin_dir: Option<PathBuf>,
    pub metrics_address: Option<String>,
}

impl Config {
    /// Defaults ← file ← flags.
    pub fn load(flags: &FlagConfig) -> Result<Config, DaemonError> {
        let file = match &flags.config {
            Some(p) => parse_file(p)?,
            None => FileConfig::default(),
        };
        let d = Config::default();
        let metrics_address = match flags.metrics_address.clone().or(file.metrics_address) {
            None => None,
            Some(a) if a.is_empty() => None,
            Some(a) => Some(a.parse().map_err(|_| DaemonError::Config {
                path: flags.config.clone().unwrap_or_default(),
                reason: format!("metrics-address must be IP:PORT, e.g. 127.0.0.1:9471, got {a:?}"),
            })?),
        };
        let cfg = Config {
            metrics_address,
            socket: flags.socket.clone().or(file.socket).unwrap_or(d.socket),
            root: flags.root.clone().or(file.root).unwrap_or(d.root),
            run_root: flags
                .run_root
                .clone()
                .or(file.run_root)
                .unwrap_or(d.run_root),
            systemd_cgroup: flags
                .systemd_cgroup
                .or(file.systemd_cgroup)
                .unwrap_or(d.systemd_cgroup),
            stop_timeout_secs: file.stop_timeout_secs.unwrap_or(d.stop_timeout_secs),
            crash_loop_backoff_initial_ms: file
                .crash_loop_backoff_initial_ms
                .unwrap_or(d.crash_loop_backoff_initial_ms),
            crash_loop_backoff_max_ms: file
                .crash_loop_backoff_max_ms
                .unwrap_or(d.crash_loop_backoff_max_ms),
            manifests: flags
                .manifests
                .clone()
                .or(file.manifests)
                .unwrap_or(d.manifests),
            bridge: flags.bridge.clone().or(file.bridge).unwrap_or(d.bridge),
            pod_cidr: flags
                .pod_cidr
                .clone()
                .or(file.pod_cidr)
                .unwrap_or(d.pod_cidr),
            nft_table: flags
                .nft_table
                .clone()
                .or(file.nft_table)
                .unwrap_or(d.nft_table),
            service_cidr: file.service_cidr.unwrap_or(d.service_cidr),
            cni_conf_dir: flags.cni_conf_dir.clone().or(file.cni_conf_dir),
            cni_bin_dir: flags
                .cni_bin_dir
                .clone()
                .or(file.cni_bin_dir)
                .unwrap_or(d.cni_bin_dir),
            cni_timeout_secs: file.cni_timeout_secs.unwrap_or(d.cni_timeout_secs),
            docker_config: file.docker_config,
            credential_helpers_dir: file.credential_helpers_dir,
            registries: file.registries,
            image_gc_high_threshold_percent: file
                .image_gc_high_threshold_percent
                .unwrap_or(d.image_gc_high_threshold_percent),
            image_gc_low_threshold_percent: file
                .image_gc_low_threshold_percent
                .unwrap_or(d.image_gc_low_threshold_percent),
            image_gc_min_age_secs: file
                .image_gc_min_age_secs
                .unwrap_or(d.image_gc_min_age_secs),
            image_gc_interval_secs: file
                .image_gc_interval_secs
                .unwrap_or(d.image_gc_interval_secs),
            unpack_on_pull: file.unpack_on_pull.unwrap_or(d.unpack_on_pull),
            allowed_unsafe_sysctls: file
                .allowed_unsafe_sysctls
                .unwrap_or(d.allowed_unsafe_sysctls),
            pod_pids_limit: file.pod_pids_limit.unwrap_or(d.pod_pids_limit),
            max_unpacked_layer_bytes: file
                .max_unpacked_layer_bytes
                .unwrap_or(d.max_unpacked_layer_bytes),
            stream_address: file.stream_address.unwrap_or(d.stream_address),
            stream_port: file.stream_port.unwrap_or(d.stream_port),
        };
        if let Err(reason) =
            kinglet_kubelet::sysctl::SysctlAllowlist::new(&cfg.allowed_unsafe_sysctls)
        {
            return Err(DaemonError::Config {
                path: flags.config.clone().unwrap_or_default(),
                reason: format!("allowed-unsafe-sysctls: {reason}"),
            });
        }
        if cfg.pod_pids_limit < -1 {
            return Err(DaemonError::Config {
                path: flags.config.clone().unwrap_or_default(),
                reason: format!(
                    "pod-pids-limit must be -1 (unlimited) or more, got {}",
                    cfg.pod_pids_limit
                ),
            });
        }
        let svc_cidr = cfg
            .service_cidr
            .parse::<kinglet_services::alloc::ServiceCidr>()
            .map_err(|e| DaemonError::Config {
                path: flags.config.clone().unwrap_or_default(),
                reason: format!("service-cidr: {e}"),
            })?;
        if let Ok(pods) = cfg.pod_cidr.parse::<kinglet_netns::Ipv4Cidr>() {
            if svc_cidr.contains(pods.network()) || pods.contains(svc_cidr.network()) {
                return Err(DaemonError::Config {
                    path: flags.config.clone().unwrap_or_default(),
                    reason: format!(
                        "service-cidr {svc_cidr} overlaps pod-cidr {pods}; pick a range clear of the pod network (default {})",
                        kinglet_services::alloc::DEFAULT_SERVICE_CIDR
                    ),
                });
            }
        }
        if let Err(e) = cfg.pod_cidr.parse::<kinglet_netns::Ipv4Cidr>() {
            return Err(DaemonError::Config {
                path: flags.config.clone().unwrap_or_default(),
                reason: format!("pod-cidr: {e}"),
            });
        }
        if cfg.image_gc_high_threshold_percent > 100
            || cfg.image_gc_low_threshold_percent > cfg.image_gc_high_threshold_percent
        {
            return Err(DaemonError::Config {
                path: flags.config.clone().unwrap_or_default(),
                reason: format!(
                    "need image-gc-low-threshold-percent ({}) <= image-gc-high-threshold-percent ({}) <= 100",
                    cfg.image_gc_low_threshold_percent, cfg.image_gc_high_threshold_percent
                ),
            });
        }
        for (field, p) in [
            ("socket", &cfg.socket),
            ("root", &cfg.root),
            ("run-root", &cfg.run_root),
            ("manifests", &cfg.manifests),
        ] {
            if !p.is_absolute() {
                return Err(DaemonError::Config {
                    path: flags.config.clone().unwrap_or_default(),
                    reason: format!("{field} must be an absolute path, got {}", p.display()),
                });
            }
        }
        Ok(cfg)
    }
}

fn parse_file(path: &Path) -> Result<FileConfig, DaemonError> {
    let text = std::fs::read_to_string(path).map_err(|source| DaemonError::Io {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| DaemonError::Config {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k.toml");
        std::fs::write(&f, "root = \"/srv/k\"\nrun-root = \"/run/k2\"\n").unwrap();
        let flags = FlagConfig {
            config: Some(f),
            run_root: Some("/run/k3".into()),
            ..Default::default()
        };
        let c = Config::load(&flags).unwrap();
        assert_eq!(c.root, PathBuf::from("/srv/k"));
        assert_eq!(c.run_root, PathBuf::from("/run/k3"));
        assert_eq!(c.socket, PathBuf::from("/run/kinglet/kinglet.sock"));
        assert_eq!(
            (c.bridge.as_str(), c.pod_cidr.as_str(), c.nft_table.as_str()),
            ("kinglet0", "10.85.0.0/16", "kinglet")
        );
    }

    #[test]
    fn streaming_server_address_defaults_to_loopback_any_port() {
        let d = Config::default();
        assert_eq!(d.stream_address.to_string(), "127.0.0.1");
        assert_eq!(d.stream_port, 0);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k.toml");
        std::fs::write(&f, "stream-address = \"::1\"\nstream-port = 10010\n").unwrap();
        let flags = FlagConfig {
            config: Some(f.clone()),
            ..Default::default()
        };
        let c = Config::load(&flags).unwrap();
        assert_eq!(
            (c.stream_address.to_string(), c.stream_port),
            ("::1".into(), 10010)
        );
        std::fs::write(&f, "stream-address = \"localhost\"\n").unwrap();
        let e = Config::load(&flags).unwrap_err();
        assert!(
            kinglet_cri::chain(&e).contains("stream-address"),
            "{}",
            kinglet_cri::chain(&e)
        );
    }

    #[test]
    fn unknown_keys_and_relative_paths_are_refused_with_the_field_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k.toml");
        std::fs::write(&f, "rooot = \"/x\"\n").unwrap();
        let flags = FlagConfig {
            config: Some(f.clone()),
            ..Default::default()
        };
        let e = Config::load(&flags).unwrap_err().to_string();
        assert!(e.contains("rooot"), "{e}");
        std::fs::write(&f, "root = \"rel\"\n").unwrap();
        let e = Config::load(&flags).unwrap_err().to_string();
        assert!(e.contains("root must be an absolute path"), "{e}");
        std::fs::write(&f, "pod-cidr = \"10.85.0.0/33\"\n").unwrap();
        let e = Config::load(&flags).unwrap_err().to_string();
        assert!(e.contains("pod-cidr"), "{e}");
        std::fs::write(&f, "service-cidr = \"10.85.128.0/20\"\n").unwrap();
        let e = Config::load(&flags).unwrap_err().to_string();
        assert!(
            e.contains("service-cidr 10.85.128.0/20 overlaps pod-cidr 10.85.0.0/16"),
            "{e}"
        );
        std::fs::write(&f, "service-cidr = \"10.96.0.1/16\"\n").unwrap();
        let e = Config::load(&flags).unwrap_err().to_string();
        assert!(e.contains("service-cidr"), "{e}");
        std::fs::write(&f, "allowed-unsafe-sysctls = [\"vm.swappiness\"]\n").unwrap();
        let e = Config::load(&flags).unwrap_err().to_string();
        assert!(
            e.contains("allowed-unsafe-sysctls") && e.contains("vm.swappiness"),
            "{e}"
        );
        std::fs::write(
            &f,
            "allowed-unsafe-sysctls = [\"net.core.*\", \"kernel.msgmax\"]\npod-pids-limit = 100\n",
        )
        .unwrap();
        let c = Config::load(&flags).unwrap();
        assert_eq!(c.allowed_unsafe_sysctls, ["net.core.*", "kernel.msgmax"]);
        assert_eq!(c.pod_pids_limit, 100);
        assert_eq!(c.metrics_address, None, "metrics are off by default");
    }

    #[test]
    fn metrics_address_from_file_or_flag_and_refused_when_not_ip_port() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k.toml");
        std::fs::write(&f, "metrics-address = \"127.0.0.1:9471\"\n").unwrap();
        let mut flags = FlagConfig {
            config: Some(f.clone()),
            ..Default::default()
        };
        let c = Config::load(&flags).unwrap();
        assert_eq!(c.metrics_address, Some("127.0.0.1:9471".parse().unwrap()));
        flags.metrics_address = Some("[::1]:9000".into());
        let c = Config::load(&flags).unwrap();
        assert_eq!(c.metrics_address, Some("[::1]:9000".parse().unwrap()));
        flags.metrics_address = Some("localhost:9471".into());
        let e = Config::load(&flags).unwrap_err().to_string();
        assert!(e.contains("metrics-address must be IP:PORT"), "{e}");
    }
}
