//! Daemon configuration, defined once in [`Config`]: built-in defaults ([`Default`]),
//! overridden by an optional TOML file (`--config`; its keys are the fields in kebab-case,
//! which are also the long flag names), overridden by the command-line flags in
//! [`DaemonFlags`]. The merge is generic (flags over file as TOML/JSON values), so adding a
//! setting is a field with its default, plus a line in [`DaemonFlags`] when it has a flag.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use kinglet_pull::hosts::Registries;

use crate::DaemonError;

/// The daemon's settings after merging all sources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// CRI gRPC unix socket (mode 0660).
    pub socket: PathBuf,
    /// Group given the socket (root-equivalent: its members can run anything as root).
    pub socket_group: Option<String>,
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
    /// Host IDs for pods with `hostUsers: false`, `FIRST:LENGTH` (both multiples of 65536,
    /// FIRST at least 65536): each such pod gets 65536 of them. Unset: the `kubelet` user's
    /// /etc/subuid and /etc/subgid entry when it has one, else 65536 and up (as the kubelet).
    pub pod_userns_ids: Option<String>,
    /// The most processes (and threads) one pod may have, applied to its cgroup
    /// `/kinglet/<pod>` (the kubelet's `podPidsLimit`); -1 or 0: unlimited. Default 4096, so a
    /// fork bomb in one pod cannot take the host's pids (the kubelet's own default is unlimited).
    /// Only for sandboxes whose cgroup parent Kinglet chooses, with the cgroupfs driver.
    pub pod_pids_limit: i64,
    /// The shim rotates a container's CRI log file at this many bytes (0: never), keeping
    /// `container-log-max-files` files in all (the kubelet's containerLogMaxSize/MaxFiles).
    pub container_log_max_size: u64,
    pub container_log_max_files: u32,
    /// The age identity that opens sealed manifests (`kinglet secret keygen`); root's, 0600.
    pub age_identity_file: PathBuf,
    /// Largest uncompressed size one image layer may unpack to (a gzip bomb stops there).
    pub max_unpacked_layer_bytes: u64,
    /// Serve Prometheus metrics on `http://ADDR/metrics` (off when unset).
    #[serde(with = "metrics_address")]
    pub metrics_address: Option<std::net::SocketAddr>,
    /// The CRI streaming server (Exec/Attach/PortForward URLs): address and port; port 0 picks
    /// a free one at each start (containerd's defaults: 127.0.0.1, 0).
    pub stream_address: std::net::IpAddr,
    pub stream_port: u16,
    // -- pull deadlines (ops) --
    /// Cancel a pull that made no progress for this long (containerd's
    /// `image_pull_progress_timeout`, 5 minutes).
    pub pull_progress_timeout_secs: u64,
    /// Give up connecting to one registry endpoint after this long.
    pub pull_connect_timeout_secs: u64,
    /// Once ready, drop the page mappings only startup used and trim the heap (see
    /// `trim.rs`): idle RSS ~29 -> ~12 MiB, but the first pods after it start ~14 % slower
    /// (their code faults back in), so off by default.
    pub trim_startup_memory: bool,
    /// Once the daemon has been idle this long (no CRI call, no pod or controller pass), drop
    /// the clean page mappings and trim the heap again (`trim.rs`); 0: never.
    pub trim_idle_secs: u64,

    // --- Cluster DNS (issue 13) ---
    /// Serve cluster DNS on the pod bridge's address, port 53, and point ClusterFirst pods
    /// at it (built-in network only; in CNI mode pods get the host's resolv.conf).
    pub cluster_dns: bool,
    /// The cluster domain (`cluster.local`).
    pub cluster_domain: String,
    /// Resolvers for names outside the cluster domain, `IP` or `IP:PORT` (default: the
    /// host's resolv.conf, systemd-resolved's upstream list when it points at the stub).
    #[serde(with = "dns_upstreams")]
    pub dns_upstreams: Vec<std::net::SocketAddr>,
    // -- This node as workload controllers (DaemonSets) see it --
    /// The node's name (default: the host name, lower-cased, as the kubelet's).
    pub node_name: Option<String>,
    /// Labels besides `kubernetes.io/hostname`, `/os` and `/arch` (which they may override).
    pub node_labels: std::collections::BTreeMap<String, String>,
    /// Taints, as the kubelet's `--register-with-taints`: `key[=value]:Effect`.
    pub node_taints: Vec<String>,
    // --- ingress (issue 13) ---
    /// The ingress proxy (`[ingress]`).
    pub ingress: crate::ingress_cli::IngressSettings,
}

/// The default `pod-pids-limit`: far above what a pod needs (a busy JVM or web server runs
/// hundreds of threads), far below the host's `pid_max` (4 194 304 on 64-bit; 32 768 on old
/// defaults), so one pod cannot exhaust it.
pub const DEFAULT_POD_PIDS_LIMIT: i64 = 4096;

impl Default for Config {
    fn default() -> Self {
        Config {
            socket: PathBuf::from("/run/kinglet/kinglet.sock"),
            socket_group: None,
            root: PathBuf::from("/var/lib/kinglet"),
            run_root: PathBuf::from("/run/kinglet"),
            systemd_cgroup: false,
            stop_timeout_secs: 10,
            crash_loop_backoff_initial_ms: 10_000,
            crash_loop_backoff_max_ms: 300_000,
            manifests: PathBuf::from("/etc/kinglet/manifests"),
            age_identity_file: PathBuf::from("/etc/kinglet/age.key"),
            container_log_max_size: 10 * 1024 * 1024,
            container_log_max_files: 5,
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
            pod_userns_ids: None,
            pod_pids_limit: DEFAULT_POD_PIDS_LIMIT,
            max_unpacked_layer_bytes: kinglet_image::DEFAULT_MAX_UNPACKED_LAYER_BYTES,
            metrics_address: None,
            stream_address: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            stream_port: 0,
            pull_progress_timeout_secs: 300,
            pull_connect_timeout_secs: 15,
            trim_startup_memory: false,
            trim_idle_secs: 30,
            cluster_dns: true,
            cluster_domain: kinglet_services::dns::DEFAULT_CLUSTER_DOMAIN.to_owned(),
            dns_upstreams: Vec::new(),
            node_name: None,
            node_labels: Default::default(),
            node_taints: Vec::new(),
            ingress: Default::default(),
        }
    }
}

/// The daemon's command-line flags (`kinglet daemon`, `check`, `reset`): each is the
/// [`Config`] field of the same name, and wins over the file. Unset flags are left out.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct DaemonFlags {
    /// TOML file with the same keys as the long flags.
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// CRI socket path [default: /run/kinglet/kinglet.sock].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket: Option<PathBuf>,
    /// Persistent state directory [default: /var/lib/kinglet].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
    /// Runtime state directory [default: /run/kinglet].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_root: Option<PathBuf>,
    /// Use the systemd cgroup driver.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub systemd_cgroup: bool,
    /// Directory of Kubernetes manifests to keep applied [default: /etc/kinglet/manifests].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifests: Option<PathBuf>,
    /// Host bridge of the built-in pod network (default kinglet0).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
    /// Pod network CIDR (default 10.85.0.0/16).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_cidr: Option<String>,
    /// Kinglet's nftables table, family ip (default kinglet).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nft_table: Option<String>,
    /// CNI mode: directory whose first *.conflist is used instead of the built-in network.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cni_conf_dir: Option<PathBuf>,
    /// CNI plugin binaries [default: /usr/lib/cni].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cni_bin_dir: Option<PathBuf>,
    /// Serve Prometheus metrics on http://ADDR/metrics, e.g. 127.0.0.1:9471 [default: off].
    #[arg(long, value_name = "IP:PORT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_address: Option<String>,
}

/// `dns-upstreams`: each `IP` (port 53) or `IP:PORT`.
mod dns_upstreams {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(list: &[SocketAddr], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(list.iter().map(|a| a.to_string()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
        super::parse_upstreams(Vec::<String>::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// `metrics-address`: `IP:PORT`, or empty (or absent) for off.
mod metrics_address {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(a: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        match a {
            Some(a) => s.collect_str(a),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(a) if a.is_empty() => Ok(None),
            Some(a) => a.parse().map(Some).map_err(|_| {
                serde::de::Error::custom(format!(
                    "metrics-address must be IP:PORT, e.g. 127.0.0.1:9471, got {a:?}"
                ))
            }),
        }
    }
}

impl Config {
    /// The Service proxy's nftables table, beside the pod network's `nft_table`.
    pub fn service_table_name(&self) -> String {
        format!("{}_svc", self.nft_table)
    }

    /// The runtime core's part of these settings.
    pub fn runtime(&self) -> kinglet_runtime::RuntimeConfig {
        kinglet_runtime::RuntimeConfig {
            socket: self.socket.clone(),
            root: self.root.clone(),
            run_root: self.run_root.clone(),
            systemd_cgroup: self.systemd_cgroup,
            bridge: self.bridge.clone(),
            pod_cidr: self.pod_cidr.clone(),
            nft_table: self.nft_table.clone(),
            cni_conf_dir: self.cni_conf_dir.clone(),
            cni_bin_dir: self.cni_bin_dir.clone(),
            cni_timeout_secs: self.cni_timeout_secs,
            docker_config: self.docker_config.clone(),
            credential_helpers_dir: self.credential_helpers_dir.clone(),
            registries: self.registries.clone(),
            image_gc_high_threshold_percent: self.image_gc_high_threshold_percent,
            image_gc_low_threshold_percent: self.image_gc_low_threshold_percent,
            image_gc_min_age_secs: self.image_gc_min_age_secs,
            image_gc_interval_secs: self.image_gc_interval_secs,
            unpack_on_pull: self.unpack_on_pull,
            pod_pids_limit: self.pod_pids_limit,
            max_unpacked_layer_bytes: self.max_unpacked_layer_bytes,
            container_log_max_size: self.container_log_max_size,
            container_log_max_files: self.container_log_max_files,
            pull_progress_timeout_secs: self.pull_progress_timeout_secs,
            pull_connect_timeout_secs: self.pull_connect_timeout_secs,
        }
    }

    /// `pod-userns-ids` checked (None: unset).
    pub fn userns_ids(&self) -> Result<Option<kinglet_kubelet::userns::IdRange>, String> {
        self.pod_userns_ids.as_deref().map(str::parse).transpose()
    }

    /// Defaults ← file ← flags, then the checks that span fields.
    pub fn load(flags: &DaemonFlags) -> Result<Config, DaemonError> {
        let path = flags.config.clone().unwrap_or_default();
        let file = match &flags.config {
            Some(p) => parse_file(p)?,
            None => Config::default(),
        };
        let mut cfg = with_flags(file, flags).map_err(|reason| DaemonError::Config {
            path: path.clone(),
            reason,
        })?;
        cfg.cluster_domain = cfg
            .cluster_domain
            .trim_end_matches('.')
            .to_ascii_lowercase();
        cfg.check(&path)?;
        Ok(cfg)
    }

    fn check(&self, path: &Path) -> Result<(), DaemonError> {
        let (cfg, path) = (self, path.to_owned());
        if let Err(reason) = cfg.node() {
            return Err(DaemonError::Config {
                path: path.clone(),
                reason: format!("node-taints: {reason}"),
            });
        }
        if !valid_domain(&cfg.cluster_domain) {
            return Err(DaemonError::Config {
                path: path.clone(),
                reason: format!(
                    "cluster-domain {:?} is not a DNS name (labels of a-z, 0-9 and '-', e.g. cluster.local)",
                    cfg.cluster_domain
                ),
            });
        }
        if let Err(reason) =
            kinglet_kubelet::sysctl::SysctlAllowlist::new(&cfg.allowed_unsafe_sysctls)
        {
            return Err(DaemonError::Config {
                path: path.clone(),
                reason: format!("allowed-unsafe-sysctls: {reason}"),
            });
        }
        if let Err(reason) = cfg.userns_ids() {
            return Err(DaemonError::Config {
                path: path.clone(),
                reason: format!("pod-userns-ids: {reason}"),
            });
        }
        if cfg.pod_pids_limit < -1 {
            return Err(DaemonError::Config {
                path: path.clone(),
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
                path: path.clone(),
                reason: format!("service-cidr: {e}"),
            })?;
        if let Ok(pods) = cfg.pod_cidr.parse::<kinglet_netns::Ipv4Cidr>() {
            if svc_cidr.contains(pods.network()) || pods.contains(svc_cidr.network()) {
                return Err(DaemonError::Config {
                    path: path.clone(),
                    reason: format!(
                        "service-cidr {svc_cidr} overlaps pod-cidr {pods}; pick a range clear of the pod network (default {})",
                        kinglet_services::alloc::DEFAULT_SERVICE_CIDR
                    ),
                });
            }
        }
        if let Err(e) = cfg.pod_cidr.parse::<kinglet_netns::Ipv4Cidr>() {
            return Err(DaemonError::Config {
                path: path.clone(),
                reason: format!("pod-cidr: {e}"),
            });
        }
        if cfg.image_gc_high_threshold_percent > 100
            || cfg.image_gc_low_threshold_percent > cfg.image_gc_high_threshold_percent
        {
            return Err(DaemonError::Config {
                path: path.clone(),
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
                    path: path.clone(),
                    reason: format!("{field} must be an absolute path, got {}", p.display()),
                });
            }
        }
        Ok(())
    }
}

/// `file` with every given flag put over it (as JSON values, so no field is merged by hand).
fn with_flags(file: Config, flags: &DaemonFlags) -> Result<Config, String> {
    let mut merged = serde_json::to_value(&file).map_err(|e| e.to_string())?;
    let given = serde_json::to_value(flags).map_err(|e| e.to_string())?;
    if let (Some(m), Some(g)) = (merged.as_object_mut(), given.as_object()) {
        m.extend(g.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    serde_json::from_value(merged).map_err(|e| e.to_string())
}

impl Config {
    /// This node (name, labels, taints) as the workload controllers see it.
    pub fn node(&self) -> Result<kinglet_controllers::node::Node, String> {
        kinglet_controllers::node::Node::new(
            &self.node_name(),
            &self.node_labels,
            &self.node_taints,
        )
    }

    /// This node's name: `node_name`, else the host name lower-cased (as the kubelet's).
    pub fn node_name(&self) -> String {
        self.node_name.clone().unwrap_or_else(|| {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "localhost".into())
                .to_lowercase()
        })
    }
}

fn parse_file(path: &Path) -> Result<Config, DaemonError> {
    let text = std::fs::read_to_string(path).map_err(|source| DaemonError::Io {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| DaemonError::Config {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// `dns-upstreams` entries as socket addresses.
fn parse_upstreams(list: Vec<String>) -> Result<Vec<std::net::SocketAddr>, String> {
    list.iter()
        .map(|s| {
            kinglet_services::dns::resolvconf::parse_upstream(s).ok_or_else(|| {
                format!(
                    "dns-upstreams: {s:?} is not IP or IP:PORT (e.g. 192.0.2.53 or 127.0.0.1:5353)"
                )
            })
        })
        .collect()
}

fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
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
        let flags = DaemonFlags {
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
    fn cluster_dns_settings() {
        let d = Config::default();
        assert!(d.cluster_dns);
        assert_eq!(d.cluster_domain, "cluster.local");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k.toml");
        let load = |text: &str| {
            std::fs::write(&f, text).unwrap();
            Config::load(&DaemonFlags {
                config: Some(f.clone()),
                ..Default::default()
            })
        };
        let c = load("cluster-domain = \"K8s.Test.\"\ndns-upstreams = [\"127.0.0.1:5353\", \"192.0.2.1\"]\ncluster-dns = false\n").unwrap();
        assert_eq!(c.cluster_domain, "k8s.test");
        assert!(!c.cluster_dns);
        assert_eq!(
            c.dns_upstreams,
            [
                "127.0.0.1:5353".parse().unwrap(),
                "192.0.2.1:53".parse().unwrap()
            ]
        );
        let e = load("dns-upstreams = [\"resolver\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("dns-upstreams") && e.contains("\"resolver\""),
            "{e}"
        );
        let e = load("cluster-domain = \"bad_domain\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cluster-domain"), "{e}");
    }

    #[test]
    fn streaming_server_address_defaults_to_loopback_any_port() {
        let d = Config::default();
        assert_eq!(d.stream_address.to_string(), "127.0.0.1");
        assert_eq!(d.stream_port, 0);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k.toml");
        std::fs::write(&f, "stream-address = \"::1\"\nstream-port = 10010\n").unwrap();
        let flags = DaemonFlags {
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
        let flags = DaemonFlags {
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
        for (bad, want) in [
            (
                "100000:65536",
                "pod-userns-ids: first ID 100000 is not a multiple of 65536",
            ),
            ("0:65536", "overlaps the host's IDs 0-65535"),
            (
                "65536:1000",
                "length 1000 is not a positive multiple of 65536",
            ),
        ] {
            std::fs::write(&f, format!("pod-userns-ids = \"{bad}\"\n")).unwrap();
            let e = Config::load(&flags).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
        std::fs::write(&f, "pod-userns-ids = \"131072:655360\"\n").unwrap();
        let r = Config::load(&flags).unwrap().userns_ids().unwrap().unwrap();
        assert_eq!((r.first, r.length), (131072, 655360));
    }

    #[test]
    fn metrics_address_from_file_or_flag_and_refused_when_not_ip_port() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k.toml");
        std::fs::write(&f, "metrics-address = \"127.0.0.1:9471\"\n").unwrap();
        let mut flags = DaemonFlags {
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

    #[test]
    fn every_flag_wins_over_the_file_and_unset_flags_leave_it() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k.toml");
        std::fs::write(
            &f,
            "systemd-cgroup = true\nbridge = \"filebr\"\nstop-timeout-secs = 3\nmetrics-address = \"127.0.0.1:1\"\n",
        )
        .unwrap();
        // No flags: the file's values, defaults elsewhere.
        let mut flags = DaemonFlags {
            config: Some(f),
            ..Default::default()
        };
        let c = Config::load(&flags).unwrap();
        assert!(
            c.systemd_cgroup,
            "an absent --systemd-cgroup keeps the file's true"
        );
        assert_eq!((c.bridge.as_str(), c.stop_timeout_secs), ("filebr", 3));
        assert_eq!(c.root, Config::default().root);
        // Every flag set: each lands in its field (a flag without a Config field is refused).
        flags = DaemonFlags {
            config: flags.config,
            socket: Some("/s/k.sock".into()),
            root: Some("/s/root".into()),
            run_root: Some("/s/run".into()),
            systemd_cgroup: true,
            manifests: Some("/s/m".into()),
            bridge: Some("flagbr".into()),
            pod_cidr: Some("10.99.0.0/16".into()),
            nft_table: Some("t2".into()),
            cni_conf_dir: Some("/s/cni".into()),
            cni_bin_dir: Some("/s/bin".into()),
            metrics_address: Some(String::new()),
        };
        let c = Config::load(&flags).unwrap();
        assert_eq!(
            (c.socket, c.root, c.run_root, c.manifests),
            (
                PathBuf::from("/s/k.sock"),
                PathBuf::from("/s/root"),
                PathBuf::from("/s/run"),
                PathBuf::from("/s/m")
            )
        );
        assert_eq!(
            (c.bridge.as_str(), c.pod_cidr.as_str(), c.nft_table.as_str()),
            ("flagbr", "10.99.0.0/16", "t2")
        );
        assert_eq!(c.cni_conf_dir, Some(PathBuf::from("/s/cni")));
        assert_eq!(c.cni_bin_dir, PathBuf::from("/s/bin"));
        assert_eq!(
            c.metrics_address, None,
            "an empty flag turns the file's address off"
        );
        assert_eq!(c.stop_timeout_secs, 3, "file-only keys stay");
    }

    #[test]
    fn no_file_and_no_flags_is_the_defaults() {
        assert_eq!(
            Config::load(&DaemonFlags::default()).unwrap(),
            Config::default()
        );
    }
}
