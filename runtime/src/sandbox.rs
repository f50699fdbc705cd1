//! Pod sandboxes: RunPodSandbox, StopPodSandbox, RemovePodSandbox, PodSandboxStatus,
//! ListPodSandbox.
//!
//! A sandbox is a directory under `<run-root>/pods/<id>` holding the pins of its namespaces
//! (`ns/`), its /dev/shm tmpfs (`shm/`) and the hostname/hosts/resolv.conf files its
//! containers bind-mount. No process represents it, except a tiny init when the pod shares one
//! PID namespace.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kinglet_cri::CriError;
use std::net::Ipv4Addr;

use kinglet_netns::{PinRequest, PinnedNamespaces, PortMapping, Protocol};
use kinglet_proto::v1;

use super::store::{ContainerState, Meta, NsMode, PodNamespaces, SandboxRecord, SandboxState};
use super::{
    blocking, cgroups, encode_hex, labels_match, mkdir, mounts, new_id, now_nanos, userns,
    Reservation, Rollback, Runtime,
};

const HOSTS_HEADER: &str = "# Kubernetes-style hosts file, managed by kinglet.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n";

/// What `setup_sandbox` made: namespaces, /dev/shm, hostname, address, the pod init's tie.
type SetUp = (
    PodNamespaces,
    Option<PathBuf>,
    String,
    Option<Ipv4Addr>,
    Option<kinglet_netns::PodInitTie>,
);

fn netns_err(what: &'static str) -> impl FnOnce(kinglet_netns::NetnsError) -> CriError {
    move |e| CriError::internal(what, e)
}

/// A pod network failure in CRI terms: port conflicts are the client's, exhaustion is a limit.
fn network_err(e: kinglet_netns::NetnsError) -> CriError {
    use kinglet_netns::NetnsError as N;
    match e {
        N::PortConflict { .. } => CriError::invalid("config.port_mappings", e.to_string()),
        N::AddressesExhausted { .. } => CriError::ResourceExhausted {
            what: e.to_string(),
        },
        N::CniPlugin { .. } => CriError::internal("set up the pod network (CNI)", e),
        other => CriError::internal("set up the pod network", other),
    }
}

/// The hostPort mappings of a PodSandboxConfig (entries without a host port publish nothing).
pub fn port_mappings(config: &v1::PodSandboxConfig) -> Result<Vec<PortMapping>, CriError> {
    let mut out = Vec::new();
    for (i, m) in config.port_mappings.iter().enumerate() {
        let field = |f: &str| format!("config.port_mappings[{i}].{f}");
        if m.host_port == 0 {
            continue;
        }
        let protocol = match v1::Protocol::try_from(m.protocol) {
            Ok(v1::Protocol::Tcp) => Protocol::Tcp,
            Ok(v1::Protocol::Udp) => Protocol::Udp,
            _ => {
                return Err(CriError::invalid(
                    field("protocol"),
                    "only TCP and UDP are supported",
                ))
            }
        };
        let port = |v: i32, f: &str| {
            u16::try_from(v)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| CriError::invalid(field(f), format!("{v} is not a port number")))
        };
        let host_ip = match m.host_ip.as_str() {
            "" | "0.0.0.0" => None,
            s => Some(s.parse::<Ipv4Addr>().map_err(|_| {
                CriError::invalid(field("host_ip"), format!("{s:?} is not an IPv4 address"))
            })?),
        };
        out.push(PortMapping {
            protocol,
            host_ip,
            host_port: port(m.host_port, "host_port")?,
            container_port: port(m.container_port, "container_port")?,
        });
    }
    Ok(out)
}

/// The sandbox's sysctls, sorted by key (the CRI gives a map).
fn sysctls(config: &v1::PodSandboxConfig) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = config
        .linux
        .as_ref()
        .map(|l| l.sysctls.clone().into_iter().collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Check that each sysctl of the sandbox belongs to a namespace the pod gets of its own
/// (its own network namespace for `net.*`, IPC for `kernel.shm*`, ...): anything else would
/// change the host, and is the client's error.
pub fn check_sysctls(
    config: &v1::PodSandboxConfig,
    net: NsMode,
    ipc: NsMode,
) -> Result<(), CriError> {
    use kinglet_netns::NsKind;
    let mut kinds = Vec::new();
    if net != NsMode::Node {
        kinds.extend([NsKind::Net, NsKind::Uts]);
    }
    if ipc != NsMode::Node {
        kinds.push(NsKind::Ipc);
    }
    kinglet_netns::sysctl::check(&sysctls(config), &kinds)
        .map_err(|e| CriError::invalid("config.linux.sysctls", e.to_string()))
}

/// A failure to make the pod's namespaces; a sysctl the kernel refused is the client's error.
fn pin_err(e: kinglet_netns::NetnsError) -> CriError {
    use kinglet_netns::NetnsError as N;
    match e {
        N::InvalidSysctl { .. } | N::PodSysctl { .. } => {
            CriError::invalid("config.linux.sysctls", kinglet_cri::chain(&e))
        }
        other => CriError::internal("pin pod namespaces", other),
    }
}

/// resolv.conf content for a DNSConfig (None → use the host's file).
pub fn resolv_conf(dns: Option<&v1::DnsConfig>) -> Option<String> {
    let dns = dns?;
    if dns.servers.is_empty() && dns.searches.is_empty() && dns.options.is_empty() {
        return None;
    }
    let mut out = String::new();
    if !dns.searches.is_empty() {
        out.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for s in &dns.servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !dns.options.is_empty() {
        out.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    Some(out)
}

fn host_hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Longest name `sethostname(2)` takes (`HOST_NAME_MAX`).
const HOSTNAME_MAX: usize = 64;

/// The UTS hostname of a sandbox, as containerd and CRI-O choose it: the host's own for a
/// host-network pod, else the config's `hostname`, else (empty) the host's. The kubelet
/// sends the pod's name already truncated to 63; a longer one from any client is refused
/// here rather than by the kernel.
fn sandbox_hostname(
    configured: &str,
    host_net: bool,
    host: impl FnOnce() -> String,
) -> Result<String, CriError> {
    if host_net || configured.is_empty() {
        return Ok(host());
    }
    if configured.len() > HOSTNAME_MAX || configured.contains('\0') {
        return Err(CriError::invalid(
            "PodSandboxConfig.hostname",
            format!(
                "{configured:?} is not a valid hostname: at most {HOSTNAME_MAX} bytes and no \
                 NUL; leave it empty for the host's name"
            ),
        ));
    }
    Ok(configured.to_owned())
}

/// The pod's network, PID and IPC namespace modes (TARGET is refused: containers only).
fn namespace_modes(
    linux: &v1::LinuxPodSandboxConfig,
) -> Result<(NsMode, NsMode, NsMode), CriError> {
    let nsopt = linux
        .security_context
        .as_ref()
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default();
    let net = NsMode::from_cri(nsopt.network);
    let pid = NsMode::from_cri(nsopt.pid);
    let ipc = NsMode::from_cri(nsopt.ipc);
    if net == NsMode::Target || ipc == NsMode::Target {
        return Err(CriError::invalid(
            "config.linux.security_context.namespace_options",
            "TARGET mode is only valid for the pid namespace of a container",
        ));
    }
    Ok((net, pid, ipc))
}

/// Pin the pod's own namespaces `pin` asks for (none: nothing pinned), unpinned by `rb`.
async fn pin_pod_namespaces(
    pin: PinRequest,
    rb: &mut Rollback,
) -> Result<PinnedNamespaces, CriError> {
    if !(pin.net || pin.ipc || pin.uts) {
        return Ok(PinnedNamespaces::default());
    }
    let ns_dir = pin.dir.clone();
    let p = blocking("pin namespaces", move || {
        kinglet_netns::pin_namespaces(&pin).map_err(pin_err)
    })
    .await?;
    rb.push("unpin namespaces", move || async move {
        let _ = blocking("unpin", move || {
            kinglet_netns::unpin_namespaces(&ns_dir).map_err(netns_err("unpin"))
        })
        .await;
    });
    Ok(p)
}

/// The files every container of the pod bind-mounts: hostname, hosts (the host's for
/// host-network pods, else the pod's address and name) and resolv.conf (from the DNS config,
/// else the host's).
fn write_pod_files(
    dir: &Path,
    config: &v1::PodSandboxConfig,
    host_net: bool,
    hostname: &str,
    ip: Option<Ipv4Addr>,
) -> Result<(), CriError> {
    let hosts = if host_net {
        std::fs::read_to_string("/etc/hosts").unwrap_or_else(|_| HOSTS_HEADER.to_owned())
    } else {
        let mut h = HOSTS_HEADER.to_owned();
        if let Some(ip) = ip {
            h.push_str(&format!("{ip}\t{hostname}\n"));
        }
        h
    };
    let resolv = match resolv_conf(config.dns_config.as_ref()) {
        Some(r) => r,
        None => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
    };
    for (name, content) in [
        ("hostname", format!("{hostname}\n")),
        ("hosts", hosts),
        ("resolv.conf", resolv),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, content)
            .map_err(|e| CriError::internal(format!("write {}", p.display()), e))?;
    }
    Ok(())
}

/// The sandbox's metadata from a RunPodSandbox config, checked: name, namespace and uid set,
/// the log directory (if any) absolute.
fn request_meta(config: &v1::PodSandboxConfig) -> Result<Meta, CriError> {
    let md = config
        .metadata
        .as_ref()
        .ok_or_else(|| CriError::invalid("config.metadata", "is required"))?;
    for (field, v) in [
        ("config.metadata.name", &md.name),
        ("config.metadata.namespace", &md.namespace),
        ("config.metadata.uid", &md.uid),
    ] {
        if v.is_empty() {
            return Err(CriError::invalid(field, "must not be empty"));
        }
    }
    if !config.log_directory.is_empty() && !config.log_directory.starts_with('/') {
        return Err(CriError::invalid(
            "config.log_directory",
            "must be an absolute path",
        ));
    }
    Ok(Meta {
        name: md.name.clone(),
        uid: md.uid.clone(),
        namespace: md.namespace.clone(),
        attempt: md.attempt,
    })
}

impl Runtime {
    /// RunPodSandbox itself (see `sandbox_run` for how it is run).
    pub(crate) async fn make_pod_sandbox(
        &self,
        req: v1::RunPodSandboxRequest,
    ) -> Result<v1::RunPodSandboxResponse, CriError> {
        let config = req
            .config
            .ok_or_else(|| CriError::invalid("config", "is required"))?;
        let meta = request_meta(&config)?;
        let ports = port_mappings(&config)?;
        let linux = config.linux.clone().unwrap_or_default();
        let (net, pid, ipc) = namespace_modes(&linux)?;
        check_sysctls(&config, net, ipc)?;
        let nsopt = linux.security_context.as_ref();
        let nsopt = nsopt.and_then(|s| s.namespace_options.as_ref());
        let userns =
            userns::pod_userns(nsopt.and_then(|n| n.userns_options.as_ref()), net, ipc, pid)?;
        if userns.is_some() {
            userns::check_kernel()?;
            userns::check_reachable(&self.paths.run_root)?;
        }

        let (name, namespace) = (meta.name.clone(), meta.namespace.clone());
        let id = new_id();
        let _reservation = self.reserve_sandbox_name(&meta, &id).await?;
        let dir = self.paths.pod_run(&id);
        let mut rb = Rollback::default();
        match self
            .setup_sandbox(&id, &dir, &config, &ports, (net, pid, ipc), userns, &mut rb)
            .await
        {
            Ok(made) => {
                let (namespaces, shm, hostname, ip, pod_init_tie) = made;
                let (cgroup_parent, owns_cgroup_parent) = if linux.cgroup_parent.is_empty() {
                    (format!("/kinglet/{id}"), true)
                } else {
                    (linux.cgroup_parent.clone(), false)
                };
                if owns_cgroup_parent {
                    if let Err(e) = self.set_pod_pids_limit(&id, &cgroup_parent).await {
                        rb.run().await;
                        return Err(e);
                    }
                }
                let rec = SandboxRecord {
                    id: id.clone(),
                    meta,
                    state: SandboxState::Ready,
                    created_at: now_nanos(),
                    labels: config.labels.clone().into_iter().collect(),
                    annotations: config.annotations.clone().into_iter().collect(),
                    runtime_handler: req.runtime_handler.clone(),
                    hostname,
                    log_directory: config.log_directory.clone(),
                    cgroup_parent,
                    owns_cgroup_parent,
                    namespaces,
                    shm,
                    config: encode_hex(&config),
                    ip,
                };
                if let Err(e) = self.store.insert_sandbox(rec).await {
                    rb.run().await;
                    return Err(e);
                }
                // The record names the pod init now: it may outlive the daemon.
                if let Some(Err(e)) = pod_init_tie.map(kinglet_netns::PodInitTie::release) {
                    tracing::warn!(pod = %id, err = %kinglet_cri::chain(&e), "pod init gone");
                }
                kinglet_fault::crash_point!("sandbox.after-record");
                rb.commit();
                tracing::info!(pod = %id, name = %name, namespace = %namespace, "pod sandbox ready");
                Ok(v1::RunPodSandboxResponse { pod_sandbox_id: id })
            }
            Err(e) => {
                rb.run().await;
                Err(e)
            }
        }
    }

    /// Reserve `<name>_<namespace>_<uid>_<attempt>` for `id`: AlreadyExists when a sandbox has
    /// that metadata or a RunPodSandbox of it is under way (records and reservations are
    /// checked, then the name reserved, under one lock).
    async fn reserve_sandbox_name(&self, meta: &Meta, id: &str) -> Result<Reservation, CriError> {
        let key = format!(
            "{}_{}_{}_{}",
            meta.name, meta.namespace, meta.uid, meta.attempt
        );
        let taken = |other: String| CriError::AlreadyExists {
            kind: "pod sandbox",
            name: key.clone(),
            id: other,
        };
        let _names = self.names.lock().await;
        for s in self.store.all_sandboxes().await {
            let r = s.record.lock().await;
            if r.meta == *meta {
                return Err(taken(r.id.clone()));
            }
        }
        self.reserve(&format!("pod/{key}"), id).map_err(taken)
    }

    /// The node's pod pids limit, on the pod cgroup `cgroup_parent` Kinglet owns (a client that
    /// gives its own cgroup parent manages that cgroup itself, as a kubelet does). On failure
    /// the cgroup is removed.
    async fn set_pod_pids_limit(&self, id: &str, cgroup_parent: &str) -> Result<(), CriError> {
        let limit = self.config.pod_pids_limit;
        if limit <= 0 || self.config.systemd_cgroup {
            return Ok(());
        }
        let parent = cgroup_parent.to_owned();
        let set = blocking("set the pod pids limit", move || {
            cgroups::set_pids_limit(Path::new("/sys/fs/cgroup"), &parent, limit)
                .map_err(|e| CriError::internal("set the pod's pids limit", e))
        })
        .await;
        if let Err(e) = set {
            let parent = cgroup_parent.to_owned();
            let _ = blocking("remove pod cgroup", move || {
                cgroups::remove_cgroup(Path::new("/sys/fs/cgroup"), &parent);
                Ok(())
            })
            .await;
            return Err(e);
        }
        tracing::debug!(pod = %id, limit, "pod pids limit set");
        kinglet_fault::crash_point!("sandbox.after-cgroup");
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn setup_sandbox(
        &self,
        id: &str,
        dir: &Path,
        config: &v1::PodSandboxConfig,
        ports: &[PortMapping],
        (net, pid, ipc): (NsMode, NsMode, NsMode),
        userns: Option<userns::UsernsRecord>,
        rb: &mut Rollback,
    ) -> Result<SetUp, CriError> {
        userns::own_dir(dir, userns.as_ref())?;
        {
            let d = dir.to_owned();
            rb.push("remove pod dir", move || async move {
                let _ = blocking("remove pod dir", move || mounts::remove_tree(&d)).await;
            });
        }
        kinglet_fault::crash_point!("sandbox.after-dir");
        let host_net = net == NsMode::Node;
        let hostname = sandbox_hostname(&config.hostname, host_net, host_hostname)?;
        let ns_dir = dir.join("ns");
        let pin = PinRequest {
            dir: ns_dir.clone(),
            net: !host_net,
            ipc: ipc != NsMode::Node,
            uts: !host_net,
            hostname: (!host_net).then(|| hostname.clone()),
            sysctls: sysctls(config),
            userns: userns.as_ref().map(userns::UsernsRecord::maps),
        };
        let pinned = pin_pod_namespaces(pin, rb).await?;
        kinglet_fault::crash_point!("sandbox.after-pin");
        // The pod's network: veth into the pinned namespace, address, route, hostPorts.
        let ip = match (&pinned.net, net) {
            (Some(netns), NsMode::Pod) => Some(self.setup_pod_network(id, netns, ports, rb).await?),
            _ => None,
        };
        kinglet_fault::crash_point!("sandbox.after-network");
        let mut namespaces = PodNamespaces {
            network: net,
            pid,
            ipc,
            net_path: pinned.net.clone(),
            ipc_path: pinned.ipc.clone(),
            uts_path: pinned.uts.clone(),
            pid_path: None,
            pid_init: None,
            user_path: pinned.user.clone(),
            userns,
        };
        let mut tie = None;
        if pid == NsMode::Pod {
            let user = pinned.user.clone();
            let (pin_path, init, t) = self.start_pod_init(&ns_dir, user, rb).await?;
            (namespaces.pid_path, namespaces.pid_init, tie) = (Some(pin_path), Some(init), Some(t));
            kinglet_fault::crash_point!("sandbox.after-pod-init");
        }
        let shm = if ipc != NsMode::Node {
            let shm = dir.join("shm");
            let s = shm.clone();
            blocking("mount shm", move || mounts::mount_shm(&s)).await?;
            kinglet_fault::crash_point!("sandbox.after-shm");
            Some(shm)
        } else {
            None
        };
        write_pod_files(dir, config, host_net, &hostname, ip)?;
        if !config.log_directory.is_empty() {
            mkdir(Path::new(&config.log_directory))?;
        }
        tracing::debug!(pod = %id, ?ip, "sandbox namespaces, network and files ready");
        Ok((namespaces, shm, hostname, ip, tie))
    }

    /// The pod's network in its pinned namespace `netns` (veth, address, route, hostPorts),
    /// torn down by `rb`. Returns the pod's address.
    async fn setup_pod_network(
        &self,
        id: &str,
        netns: &Path,
        ports: &[PortMapping],
        rb: &mut Rollback,
    ) -> Result<Ipv4Addr, CriError> {
        let network = self.network.clone();
        let (pod, ns, ports) = (id.to_owned(), netns.to_owned(), ports.to_vec());
        let made = blocking("set up pod network", move || {
            network.setup(&pod, &ns, &ports).map_err(network_err)
        })
        .await?;
        let (network, pod) = (self.network.clone(), id.to_owned());
        rb.push("tear down pod network", move || async move {
            let _ = blocking("tear down pod network", move || {
                network
                    .teardown(&pod)
                    .map_err(netns_err("tear down pod network"))
            })
            .await;
        });
        Ok(made)
    }

    /// Start the init of the pod's shared PID namespace, pinned at `<ns_dir>/pid` (owned by
    /// the pod's user namespace `userns`, if any), stopped by `rb`. Returns the pin, the
    /// init's pid and its tie (released once the record is saved).
    async fn start_pod_init(
        &self,
        ns_dir: &Path,
        userns: Option<PathBuf>,
        rb: &mut Rollback,
    ) -> Result<(PathBuf, u32, kinglet_netns::PodInitTie), CriError> {
        mkdir(ns_dir)?;
        let pin_path = ns_dir.join("pid");
        let exe = self.pod_init_exe.clone();
        let pp = pin_path.clone();
        let (init, tie) = blocking("start pod init", move || {
            kinglet_netns::spawn_tied_pod_init(&exe, &pp, userns.as_deref())
                .map_err(netns_err("start the pod's pid namespace init"))
        })
        .await?;
        let pp = pin_path.clone();
        rb.push("stop pod init", move || async move {
            let _ = blocking("stop pod init", move || {
                kinglet_netns::stop_pod_init(init, &pp).map_err(netns_err("stop pod init"))
            })
            .await;
        });
        Ok((pin_path, init, tie))
    }

    /// Stop every container of the sandbox and release its namespaces. Idempotent.
    pub async fn stop_pod_sandbox(&self, id: &str) -> Result<(), CriError> {
        if id.is_empty() {
            return Err(CriError::invalid("pod_sandbox_id", "must not be empty"));
        }
        let Some(entry) = self.store.find_sandbox(id).await else {
            return Ok(());
        };
        let rec = entry.record.lock().await.clone();
        for c in self.store.all_containers().await {
            let (cid, sid, state) = {
                let r = c.record.lock().await;
                (r.id.clone(), r.sandbox_id.clone(), r.state)
            };
            if sid == rec.id && matches!(state, ContainerState::Running | ContainerState::Created) {
                self.stop_container_entry(&c, &cid, 0).await?;
            }
        }
        kinglet_fault::crash_point!("sandbox.stop.after-containers");
        self.release_namespaces(&rec).await?;
        self.release_sandbox_shm(&rec).await;
        kinglet_fault::crash_point!("sandbox.stop.after-release");
        self.store
            .update_sandbox(&entry, |r| {
                r.state = SandboxState::NotReady;
                r.namespaces.pid_init = None;
                r.ip = None;
            })
            .await?;
        tracing::info!(pod = %rec.id, "pod sandbox stopped");
        Ok(())
    }

    async fn release_namespaces(&self, rec: &SandboxRecord) -> Result<(), CriError> {
        let ns_dir = self.paths.pod_run(&rec.id).join("ns");
        let init = rec.namespaces.pid_init;
        if rec.namespaces.network == NsMode::Pod {
            let (network, pod) = (self.network.clone(), rec.id.clone());
            blocking("tear down pod network", move || {
                network
                    .teardown(&pod)
                    .map_err(netns_err("tear down pod network"))
            })
            .await?;
        }
        blocking("release namespaces", move || {
            if let Some(pid) = init {
                kinglet_netns::stop_pod_init(pid, &ns_dir.join("pid"))
                    .map_err(netns_err("stop pod init"))?;
            }
            kinglet_netns::unpin_namespaces(&ns_dir).map_err(netns_err("unpin pod namespaces"))
        })
        .await
    }

    /// Remove the sandbox, its containers and everything made for it. Idempotent.
    pub async fn remove_pod_sandbox(&self, id: &str) -> Result<(), CriError> {
        if id.is_empty() {
            return Err(CriError::invalid("pod_sandbox_id", "must not be empty"));
        }
        let Some(entry) = self.store.find_sandbox(id).await else {
            return Ok(());
        };
        let rec = entry.record.lock().await.clone();
        if rec.state == SandboxState::Ready {
            self.stop_pod_sandbox(&rec.id).await?;
        }
        for c in self.store.all_containers().await {
            let (cid, sid) = {
                let r = c.record.lock().await;
                (r.id.clone(), r.sandbox_id.clone())
            };
            if sid == rec.id {
                self.remove_container(&cid).await?;
            }
        }
        kinglet_fault::crash_point!("sandbox.remove.after-containers");
        // No second release of the namespaces: the sandbox is NotReady here (stopped above or
        // before), and StopPodSandbox marks it so only once they are released (network torn
        // down, pod init stopped, pins gone). Doing it again queued RemovePodSandbox behind
        // other pods' network teardowns (the kernel unregisters one veth at a time, 15-20 ms).
        let dir = self.paths.pod_run(&rec.id);
        blocking("remove pod dir", move || mounts::remove_tree(&dir)).await?;
        kinglet_fault::crash_point!("sandbox.remove.after-dir");
        if rec.owns_cgroup_parent {
            let parent = rec.cgroup_parent.clone();
            blocking("remove pod cgroup", move || {
                cgroups::remove_cgroup(Path::new("/sys/fs/cgroup"), &parent);
                Ok(())
            })
            .await?;
        }
        kinglet_fault::crash_point!("sandbox.remove.after-cgroup");
        self.store.delete_sandbox(&rec.id).await?;
        tracing::info!(pod = %rec.id, "pod sandbox removed");
        Ok(())
    }

    pub async fn pod_sandbox_status(
        &self,
        req: v1::PodSandboxStatusRequest,
    ) -> Result<v1::PodSandboxStatusResponse, CriError> {
        let entry = self
            .store
            .find_sandbox(&req.pod_sandbox_id)
            .await
            .ok_or_else(|| CriError::not_found("pod sandbox", &req.pod_sandbox_id))?;
        let rec = entry.record.lock().await.clone();
        let mut info = std::collections::HashMap::new();
        if req.verbose {
            let mut v = serde_json::json!({
                "hostname": rec.hostname,
                "cgroupParent": rec.cgroup_parent,
                "namespaces": rec.namespaces,
                "runtimeHandler": rec.runtime_handler,
            });
            v["shm"] = serde_json::json!(rec.shm);
            if rec.ip.is_some() {
                // The network's own view: CNI CHECK, or the built-in network's state file.
                let (network, pod) = (self.network.clone(), rec.id.clone());
                v["network"] =
                    blocking("check pod network", move || Ok(network.check(&pod))).await?;
            }
            info.insert("info".to_owned(), v.to_string());
        }
        Ok(v1::PodSandboxStatusResponse {
            status: Some(sandbox_status(&rec)),
            info,
            ..Default::default()
        })
    }

    pub async fn list_pod_sandbox(
        &self,
        req: v1::ListPodSandboxRequest,
    ) -> Result<v1::ListPodSandboxResponse, CriError> {
        let f = req.filter.unwrap_or_default();
        let mut items = Vec::new();
        for e in self.store.all_sandboxes().await {
            let r = e.record.lock().await;
            if !f.id.is_empty() && !r.id.starts_with(&f.id) {
                continue;
            }
            if let Some(s) = &f.state {
                if s.state != sandbox_state(r.state) {
                    continue;
                }
            }
            if !labels_match(&r.labels, &f.label_selector) {
                continue;
            }
            items.push(v1::PodSandbox {
                id: r.id.clone(),
                metadata: Some(sandbox_meta(&r.meta)),
                state: sandbox_state(r.state),
                created_at: r.created_at,
                labels: to_map(&r.labels),
                annotations: to_map(&r.annotations),
                runtime_handler: r.runtime_handler.clone(),
            });
        }
        items.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        Ok(v1::ListPodSandboxResponse { items })
    }

    /// The sandbox a container may be created in (must exist and be ready).
    pub(crate) async fn ready_sandbox(
        &self,
        id: &str,
    ) -> Result<Arc<super::store::SandboxEntry>, CriError> {
        let e = self
            .store
            .find_sandbox(id)
            .await
            .ok_or_else(|| CriError::not_found("pod sandbox", id))?;
        let state = e.record.lock().await.state;
        if state != SandboxState::Ready {
            return Err(CriError::FailedPrecondition {
                kind: "pod sandbox",
                id: id.to_owned(),
                state: "not ready".into(),
                action: "creating a container",
                needed: "ready",
            });
        }
        Ok(e)
    }
}

pub(crate) fn to_map(m: &BTreeMap<String, String>) -> std::collections::HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn sandbox_state(s: SandboxState) -> i32 {
    match s {
        SandboxState::Ready => v1::PodSandboxState::SandboxReady as i32,
        SandboxState::NotReady => v1::PodSandboxState::SandboxNotready as i32,
    }
}

pub(crate) fn sandbox_meta(m: &Meta) -> v1::PodSandboxMetadata {
    v1::PodSandboxMetadata {
        name: m.name.clone(),
        uid: m.uid.clone(),
        namespace: m.namespace.clone(),
        attempt: m.attempt,
    }
}

pub(super) fn sandbox_status(r: &SandboxRecord) -> v1::PodSandboxStatus {
    let ns = &r.namespaces;
    v1::PodSandboxStatus {
        id: r.id.clone(),
        metadata: Some(sandbox_meta(&r.meta)),
        state: sandbox_state(r.state),
        created_at: r.created_at,
        network: Some(v1::PodSandboxNetworkStatus {
            ip: r.ip.map(|ip| ip.to_string()).unwrap_or_default(),
            additional_ips: Vec::new(),
        }),
        linux: Some(v1::LinuxPodSandboxStatus {
            namespaces: Some(v1::Namespace {
                options: Some(v1::NamespaceOption {
                    network: ns.network.to_cri(),
                    pid: ns.pid.to_cri(),
                    ipc: ns.ipc.to_cri(),
                    userns_options: ns.userns.as_ref().map(userns::UsernsRecord::to_cri),
                    ..Default::default()
                }),
            }),
        }),
        labels: to_map(&r.labels),
        annotations: to_map(&r.annotations),
        runtime_handler: r.runtime_handler.clone(),
    }
}

#[cfg(test)]
#[path = "sandbox_tests.rs"]
mod tests;
