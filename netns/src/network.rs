//! The built-in pod network: a host bridge, a veth pair and an IPv4 address per pod, outbound
//! masquerade and hostPorts.
//!
//! Owns, for one daemon: the bridge named in [`NetworkConfig::bridge`], the veths attached to
//! it, the nftables table [`NetworkConfig::table`], and the state directory it is given:
//!
//! ```text
//! <state_dir>/ipam/<address>      one file per allocated address, holding the pod id (ipam)
//! <state_dir>/pods/<pod id>.json  what was set up for a pod (address, host veth, hostPorts)
//! ```
//!
//! Invariants:
//! - A pod's state file is written (atomically) right after its address is allocated and
//!   before any kernel change for it, and removed last on teardown. So whatever a crash
//!   interrupts is named by a state file or an allocation, and [`Network::init`] can undo it.
//! - Setups and teardowns are serialised by one lock, so the hostPort conflict check and the
//!   state files it reads are consistent; the kernel work of a pod takes a few milliseconds.
//!   The one exception: a teardown deletes the veth (15-20 ms in the kernel) between two locked
//!   steps, hostPorts before it and the address and state file after it.
//! - The host end of a pod's veth is named `kl` + the first 12 characters of the pod id; the
//!   pod end is `eth0` in the pod's namespace (see [`crate::link`]).
//! - [`Network::teardown_pod`] is idempotent and tolerates every partial state.
//! - Host settings changed: `net.ipv4.ip_forward=1` and `route_localnet=1` on the bridge only
//!   (needed to DNAT hostPorts reached through 127.0.0.1; set only once the table, whose
//!   `localnet_guard` chain keeps pods off the host's loopback services, is in place).

use std::collections::HashSet;
use std::fs;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::error::NetnsError;
use crate::ipam::{Ipam, Ipv4Cidr};
use crate::nft::{self, PortMapping, TableSpec};
use crate::{link, ErrorChain};

/// Default bridge name.
pub const DEFAULT_BRIDGE: &str = "kinglet0";
/// Default pod network: clear of podman's 10.88.0.0/16 and Docker's 172.17.0.0/16.
pub const DEFAULT_POD_CIDR: &str = "10.85.0.0/16";
/// Default nftables table (family `ip`).
pub const DEFAULT_NFT_TABLE: &str = "kinglet";

/// Settings of the built-in network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Host bridge the pods' veths attach to.
    pub bridge: String,
    /// Pod network; the bridge gets its first address.
    pub cidr: Ipv4Cidr,
    /// Kinglet's nftables table (family `ip`).
    pub table: String,
    /// Directory for allocations and per-pod state (e.g. `<run-root>/network`).
    pub state_dir: PathBuf,
    /// The `nft` binary.
    pub nft: PathBuf,
    /// Root of the sysctl tree (`/proc/sys`).
    pub sysctl_root: PathBuf,
}

impl NetworkConfig {
    /// The defaults, keeping state under `state_dir`.
    pub fn with_defaults(state_dir: impl Into<PathBuf>) -> Self {
        NetworkConfig {
            bridge: DEFAULT_BRIDGE.to_owned(),
            cidr: DEFAULT_POD_CIDR.parse().expect("valid default CIDR"),
            table: DEFAULT_NFT_TABLE.to_owned(),
            state_dir: state_dir.into(),
            nft: PathBuf::from("nft"),
            sysctl_root: PathBuf::from("/proc/sys"),
        }
    }

    fn validate(&self) -> Result<(), NetnsError> {
        let b = &self.bridge;
        if b.is_empty()
            || b.len() >= libc::IFNAMSIZ
            || !b
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(NetnsError::InvalidNetworkConfig {
                field: "bridge",
                value: b.clone(),
                reason: "must be 1-15 characters of letters, digits, '-', '_' or '.'",
            });
        }
        if !nft::valid_table_name(&self.table) {
            return Err(NetnsError::InvalidNetworkConfig {
                field: "nft-table",
                value: self.table.clone(),
                reason: "must start with a letter and hold only letters, digits and '_'",
            });
        }
        Ok(())
    }
}

/// What was set up for one pod (persisted as its state file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodNetwork {
    pub pod: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub host_veth: String,
    pub ports: Vec<PortMapping>,
}

/// The built-in network of one daemon.
#[derive(Debug)]
pub struct Network {
    cfg: NetworkConfig,
    ipam: Ipam,
    /// Serialises setups and teardowns; holds the bridge's index once [`Network::init`] ran.
    state: Mutex<Option<u32>>,
    /// How many teardowns are deleting a veth (outside `state`), at most
    /// [`CONCURRENT_DELETIONS`]: each runs on a netlink thread of its own, so a burst of
    /// teardowns adds a few threads, not one per blocking thread; a few at once still share
    /// the kernel's RCU grace periods (120 pods deleted: 4.6 s with one deletion per blocking
    /// thread, 7.3 s one at a time).
    deleting: (Mutex<usize>, Condvar),
}

/// Veth deletions at once (see [`Network::teardown_pod`]).
const CONCURRENT_DELETIONS: usize = 4;

/// Host-side veth name for a pod.
pub fn host_veth_name(pod: &str) -> String {
    let id: String = pod
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect();
    format!("kl{id}")
}

impl Network {
    /// A network with `cfg`; nothing on the host changes until [`Network::init`].
    pub fn new(cfg: NetworkConfig) -> Result<Self, NetnsError> {
        cfg.validate()?;
        Ok(Network {
            ipam: Ipam::new(cfg.state_dir.join("ipam"), cfg.cidr),
            cfg,
            state: Mutex::new(None),
            deleting: (Mutex::new(0), Condvar::new()),
        })
    }

    /// The settings.
    pub fn config(&self) -> &NetworkConfig {
        &self.cfg
    }

    fn pods_dir(&self) -> PathBuf {
        self.cfg.state_dir.join("pods")
    }

    fn pod_file(&self, pod: &str) -> PathBuf {
        self.pods_dir().join(format!("{pod}.json"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<u32>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Set up the host side (sysctls, bridge, nftables table) and reconcile with `live_pods`
    /// (pods whose network should exist): everything set up for any other pod is torn down, and
    /// the table is rebuilt holding exactly the live pods' hostPorts. Idempotent.
    pub fn init(&self, live_pods: &HashSet<String>) -> Result<(), NetnsError> {
        let mut state = self.lock();
        let index = self.host_setup()?;

        // Pods with state but no live sandbox: a crash interrupted their setup or teardown.
        let mut live = Vec::new();
        for rec in self.load_all()? {
            if live_pods.contains(&rec.pod) {
                live.push(rec);
            } else {
                info!(pod = %rec.pod, ip = %rec.ip, "removing the network of a pod that is gone");
                self.teardown_locked(&rec.pod, false)?;
            }
        }
        // Allocations without state (a crash between allocation and state file).
        let live_ids: HashSet<&str> = live.iter().map(|r| r.pod.as_str()).collect();
        for (ip, owner) in self.ipam.list()? {
            if !live_ids.contains(owner.as_str()) {
                info!(pod = %owner, %ip, "releasing a leftover address allocation");
                self.ipam.release(&owner)?;
            }
        }
        // Veths on our bridge that belong to no live pod.
        let keep: HashSet<&str> = live.iter().map(|r| r.host_veth.as_str()).collect();
        for port in link::bridge_ports(&self.cfg.bridge)? {
            if !keep.contains(port.as_str()) {
                info!(veth = %port, "removing a leftover pod veth");
                link::delete_link(&port)?;
            }
        }
        let script = nft::table_script(
            &self.table_spec(),
            &live
                .iter()
                .map(|r| (r.ip, r.ports.clone()))
                .collect::<Vec<_>>(),
        );
        nft::apply(&self.cfg.nft, &self.cfg.table, &script)?;
        self.enable_localnet()?;
        *state = Some(index);
        info!(bridge = %self.cfg.bridge, cidr = %self.cfg.cidr, table = %self.cfg.table, "pod network ready");
        Ok(())
    }

    /// `ip_forward` and the bridge; returns the bridge's index. Idempotent.
    fn host_setup(&self) -> Result<u32, NetnsError> {
        self.write_sysctl("net/ipv4/ip_forward", "1")?;
        link::ensure_bridge(&self.cfg.bridge, self.cfg.cidr)
    }

    /// `route_localnet=1` on the bridge, which the replies of hostPorts on 127.0.0.1 need. Only
    /// called once the table (with its `localnet_guard` chain) is in place, so there is no
    /// moment in which pods could reach the host's loopback services.
    fn enable_localnet(&self) -> Result<(), NetnsError> {
        self.write_sysctl(
            &format!("net/ipv4/conf/{}/route_localnet", self.cfg.bridge),
            "1",
        )
    }

    /// After a failed [`Network::init`] (say `nft` was missing): set the host side up again and
    /// rebuild the table from every state file. Unlike `init` it tears nothing down, because a
    /// pod being set up right now has a state file but no sandbox record yet.
    fn repair_locked(&self, state: &mut Option<u32>) -> Result<u32, NetnsError> {
        let index = self.host_setup()?;
        let pods: Vec<_> = self
            .load_all()?
            .into_iter()
            .map(|r| (r.ip, r.ports))
            .collect();
        nft::apply(
            &self.cfg.nft,
            &self.cfg.table,
            &nft::table_script(&self.table_spec(), &pods),
        )?;
        self.enable_localnet()?;
        *state = Some(index);
        info!(bridge = %self.cfg.bridge, "pod network set up after an earlier failure");
        Ok(index)
    }

    /// Whether the network is usable: the host side is set up (retried here if the start-up
    /// [`Network::init`] failed) and the bridge is up.
    pub fn ready(&self) -> Result<(), String> {
        {
            let mut state = self.lock();
            if state.is_none() {
                if let Err(e) = self.repair_locked(&mut state) {
                    return Err(format!("the pod network is not set up: {}", ErrorChain(&e)));
                }
            }
        }
        match link::link_is_up(&self.cfg.bridge) {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!("bridge {} is missing or down", self.cfg.bridge)),
            Err(e) => Err(ErrorChain(&e).to_string()),
        }
    }

    fn table_spec(&self) -> TableSpec {
        TableSpec {
            table: self.cfg.table.clone(),
            bridge: self.cfg.bridge.clone(),
            cidr: self.cfg.cidr,
        }
    }

    fn write_sysctl(&self, key: &str, value: &str) -> Result<(), NetnsError> {
        let path = self.cfg.sysctl_root.join(key);
        if fs::read_to_string(&path).is_ok_and(|v| v.trim() == value) {
            return Ok(());
        }
        fs::write(&path, value).map_err(|source| NetnsError::Sysctl { path, source })
    }

    /// Every pod state file.
    pub fn load_all(&self) -> Result<Vec<PodNetwork>, NetnsError> {
        let dir = self.pods_dir();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(NetnsError::PodState { path: dir, source }),
        };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let path = e.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            match read_state(&path) {
                Ok(r) => out.push(r),
                Err(err) => {
                    // A torn write cannot happen (temp + rename); anything else is not ours.
                    warn!(path = %path.display(), err = %ErrorChain(&err), "ignoring unreadable pod network state");
                }
            }
        }
        Ok(out)
    }

    /// The state of `pod`'s network, if it has one.
    pub fn pod(&self, pod: &str) -> Option<PodNetwork> {
        read_state(&self.pod_file(pod)).ok()
    }

    /// Give `pod` (whose network namespace is pinned at `netns`) its address, veth, route and
    /// hostPorts. On failure everything done for it is undone.
    pub fn setup_pod(
        &self,
        pod: &str,
        netns: &Path,
        ports: &[PortMapping],
    ) -> Result<PodNetwork, NetnsError> {
        let mut state = self.lock();
        let bridge_index = match *state {
            Some(index) => index,
            None => self.repair_locked(&mut state)?,
        };
        // 1. hostPorts: no two of this pod's, nor any other pod's, may claim the same port.
        let others = self.load_all()?;
        for (i, m) in ports.iter().enumerate() {
            if ports[..i].iter().any(|p| p.conflicts_with(m)) {
                return Err(NetnsError::PortConflict {
                    mapping: m.to_string(),
                    pod: pod.to_owned(),
                    other: pod.to_owned(),
                });
            }
            if let Some(other) = others
                .iter()
                .find(|o| o.pod != pod && o.ports.iter().any(|p| p.conflicts_with(m)))
            {
                return Err(NetnsError::PortConflict {
                    mapping: m.to_string(),
                    pod: pod.to_owned(),
                    other: other.pod.clone(),
                });
            }
        }
        // 2. Address, then the state file naming everything that follows.
        let ip = self.ipam.allocate(pod)?;
        kinglet_fault::crash_point!("netns.setup.after-ipam");
        let rec = PodNetwork {
            pod: pod.to_owned(),
            ip,
            prefix: self.cfg.cidr.prefix(),
            gateway: self.cfg.cidr.gateway(),
            host_veth: host_veth_name(pod),
            ports: ports.to_vec(),
        };
        let result = self.write_state(&rec).and_then(|()| {
            kinglet_fault::crash_point!("netns.setup.after-state");
            // 3. veth pair into the pod, 4. address and route inside, 5. hostPorts.
            link::create_pod_veth(&rec.host_veth, netns, bridge_index)?;
            kinglet_fault::crash_point!("netns.setup.after-veth");
            link::configure_pod_interface(netns, rec.ip, rec.prefix, rec.gateway)?;
            nft::apply(
                &self.cfg.nft,
                &self.cfg.table,
                &nft::add_pod_script(&self.cfg.table, rec.ip, &rec.ports),
            )?;
            kinglet_fault::crash_point!("netns.setup.after-nft");
            Ok(())
        });
        if let Err(err) = result {
            if let Err(undo) = self.teardown_locked(pod, true) {
                warn!(%pod, err = %ErrorChain(&undo), "rollback of pod network failed");
            }
            return Err(err);
        }
        debug!(%pod, %ip, veth = %rec.host_veth, "pod network set up");
        Ok(rec)
    }

    /// Remove `pod`'s hostPorts, veth, address and state. Idempotent.
    ///
    /// The veth is deleted between two locked steps, not under the lock: the kernel takes
    /// 15-20 ms to unregister a device, and other pods' setups need not queue behind it (at
    /// most [`CONCURRENT_DELETIONS`] deletions at once). The address is released only once the veth (and with it the pod's end,
    /// which answers ARP for the address) is gone.
    pub fn teardown_pod(&self, pod: &str) -> Result<(), NetnsError> {
        let veth = {
            let _state = self.lock();
            self.remove_ports_locked(pod, true)?
        };
        self.delete_veth(&veth)?;
        kinglet_fault::crash_point!("netns.teardown.after-veth");
        let _state = self.lock();
        self.release_locked(pod)
    }

    /// Delete `veth` once fewer than [`CONCURRENT_DELETIONS`] others are being deleted.
    fn delete_veth(&self, veth: &str) -> Result<(), NetnsError> {
        let (count, freed) = &self.deleting;
        {
            let mut n = count.lock().unwrap_or_else(|e| e.into_inner());
            while *n >= CONCURRENT_DELETIONS {
                n = freed.wait(n).unwrap_or_else(|e| e.into_inner());
            }
            *n += 1;
        }
        let result = link::delete_link(veth);
        *count.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        freed.notify_one();
        result
    }

    fn teardown_locked(&self, pod: &str, remove_ports: bool) -> Result<(), NetnsError> {
        let veth = self.remove_ports_locked(pod, remove_ports)?;
        link::delete_link(&veth)?;
        kinglet_fault::crash_point!("netns.teardown.after-veth");
        self.release_locked(pod)
    }

    /// Take `pod`'s hostPorts out of the table (when `remove_ports`); returns its host veth's
    /// name. The state file stays, naming the rest.
    fn remove_ports_locked(&self, pod: &str, remove_ports: bool) -> Result<String, NetnsError> {
        let rec = read_state(&self.pod_file(pod)).ok();
        if let (Some(rec), true) = (&rec, remove_ports) {
            if !rec.ports.is_empty() {
                nft::apply(
                    &self.cfg.nft,
                    &self.cfg.table,
                    &nft::remove_pod_script(&self.cfg.table, rec.ip, &rec.ports),
                )?;
            }
        }
        kinglet_fault::crash_point!("netns.teardown.after-nft");
        Ok(rec.map_or_else(|| host_veth_name(pod), |r| r.host_veth))
    }

    /// Release `pod`'s address and remove its state file: the last step of a teardown.
    fn release_locked(&self, pod: &str) -> Result<(), NetnsError> {
        self.ipam.release(pod)?;
        let path = self.pod_file(pod);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(NetnsError::PodState { path, source }),
        }
        debug!(%pod, "pod network torn down");
        Ok(())
    }

    fn write_state(&self, rec: &PodNetwork) -> Result<(), NetnsError> {
        let dir = self.pods_dir();
        let path = self.pod_file(&rec.pod);
        let tmp = dir.join(format!(".{}.tmp", rec.pod));
        let io_err = |source| NetnsError::PodState {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(&dir).map_err(io_err)?;
        let body = serde_json::to_vec_pretty(rec).map_err(|e| io_err(io::Error::other(e)))?;
        let mut f = fs::File::create(&tmp).map_err(io_err)?;
        f.write_all(&body)
            .and_then(|()| f.sync_all())
            .map_err(io_err)?;
        fs::rename(&tmp, &path).map_err(io_err)
    }

    /// Remove the table (for a daemon that is uninstalled, and tests). The bridge is left.
    pub fn delete_table(&self) -> Result<(), NetnsError> {
        nft::apply(
            &self.cfg.nft,
            &self.cfg.table,
            &nft::delete_table_script(&self.cfg.table),
        )
    }
}

fn read_state(path: &Path) -> Result<PodNetwork, NetnsError> {
    let text = fs::read(path).map_err(|source| NetnsError::PodState {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&text).map_err(|e| NetnsError::PodState {
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidData, e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_are_validated() {
        let mut c = NetworkConfig::with_defaults("/nonexistent");
        assert!(Network::new(c.clone()).is_ok());
        c.bridge = "a-bridge-name-too-long".into();
        let e = Network::new(c.clone()).unwrap_err().to_string();
        assert!(e.contains("bridge"), "{e}");
        c.bridge = "kt0".into();
        c.table = "bad table".into();
        let e = Network::new(c).unwrap_err().to_string();
        assert!(e.contains("nft-table"), "{e}");
    }

    #[test]
    fn host_veth_names_fit_ifnamsiz() {
        let n = host_veth_name(&"ab".repeat(32));
        assert_eq!(n, "klabababababab");
        assert!(n.len() < libc::IFNAMSIZ);
    }

    #[test]
    fn a_host_that_cannot_be_set_up_refuses_pods_without_side_effects() {
        let tmp = tempfile::tempdir().unwrap();
        let net = Network::new(NetworkConfig {
            // Host setup starts with a sysctl: under a missing root it fails before any change.
            sysctl_root: tmp.path().join("no-proc-sys"),
            ..NetworkConfig::with_defaults(tmp.path())
        })
        .unwrap();
        let e = net
            .setup_pod("p", Path::new("/nonexistent"), &[])
            .unwrap_err();
        assert!(matches!(e, NetnsError::Sysctl { .. }), "{e}");
        let reason = net.ready().unwrap_err();
        assert!(
            reason.contains("not set up") && reason.contains("ip_forward"),
            "{reason}"
        );
        assert!(net.load_all().unwrap().is_empty());
        assert!(!tmp.path().join("ipam").exists());
    }
}
