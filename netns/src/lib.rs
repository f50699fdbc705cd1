//! Pod namespaces for Kinglet.
//!
//! Owns the Linux namespaces a pod sandbox shares between its containers, and the pod network
//! plumbing that lives in them (bridge, veth pairs, IPAM, NAT, hostPorts).
//!
//! - [`pin`]: new net/ipc/uts namespaces, created on a dedicated short-lived thread and kept
//!   alive by bind mounts ("pins") in a per-pod directory. No pause process holds them;
//!   containers join them by path.
//! - [`pidns`]: a shared PID namespace, which (unlike the others) needs a PID 1: a tiny pod init
//!   started as `kinglet pod-init --pin PATH` and pinned the same way.
//! - [`network`]: the built-in pod network (bridge, veth per pod, address, route, NAT,
//!   hostPorts), built from [`ipam`] (address allocation files), [`nft`] (Kinglet's own
//!   nftables table) and [`link`] (rtnetlink on dedicated threads).
//! - [`cni`]: CNI mode, the same job done by standard CNI plugins from a conflist.
//! - [`userns`]: a pod's own user namespace (`hostUsers: false`), owning its net/ipc/uts
//!   namespaces, and idmapped mounts through it (`userns_sys` holds its kernel calls).
//! - [`sysctl`]: which namespace a pod sysctl belongs to, and its `/proc/sys` file.
//! - [`sys`]: the safe wrappers over every kernel call above; the only module with `unsafe`.
//! - [`ns`]: namespace kinds and identities shared by all of them.
//!
//! Process-model invariants (see `ARCHITECTURE.md`): nothing here calls `unshare`/`setns`/`fork`
//! on the calling thread of a library function. Namespaces are created on a fresh `std::thread`
//! spawned and joined per call, or in a separate helper process. Every path (the pin directory,
//! the helper binary) is a parameter; no run-root is hard-coded.

pub mod cni;
pub mod error;
pub mod ipam;
pub mod link;
pub mod network;
pub mod nft;
pub mod ns;
pub mod pidns;
pub mod pin;
pub mod sys;
pub mod sysctl;
pub mod userns;
mod userns_sys;

use std::error::Error as StdError;
use std::fmt;

pub use cni::{Cni, CniConfig};
pub use error::NetnsError;
pub use ipam::{Ipam, Ipv4Cidr};
pub use network::{Network, NetworkConfig, PodNetwork};
pub use nft::{PortMapping, Protocol};
pub use ns::{NsId, NsKind};
pub use pidns::{
    find_pod_inits, kill_orphan_pod_init, pod_init_args, pod_init_main, spawn_pod_init,
    spawn_pod_init_in, spawn_tied_pod_init, stop_pod_init, PodInitTie, POD_INIT_SUBCOMMAND,
    POD_INIT_USERNS_ENV,
};
pub use pin::{pin_namespaces, unpin_namespaces, PinRequest, PinnedNamespaces};
pub use userns::{idmap_mount, IdMap, UserNsMaps};

/// Displays an error followed by its `source()` chain, `outer: inner: innermost`.
pub(crate) struct ErrorChain<'a>(pub &'a (dyn StdError + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(err) = source {
            write!(f, ": {err}")?;
            source = err.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn error_messages_name_namespace_and_path_without_repeating_the_cause() {
        let err = NetnsError::BindMount {
            kind: NsKind::Uts,
            source_path: PathBuf::from("/proc/self/task/7/ns/uts"),
            path: PathBuf::from("/run/kinglet/pods/p/ns/uts"),
            source: io::Error::from_raw_os_error(libc::EPERM),
        };
        let top = err.to_string();
        assert!(
            top.contains("uts") && top.contains("/run/kinglet/pods/p/ns/uts"),
            "{top}"
        );
        assert!(!top.to_lowercase().contains("not permitted"), "{top}");
        let chain = ErrorChain(&err).to_string();
        assert!(
            chain.starts_with(&top) && chain.contains("not permitted"),
            "{chain}"
        );
    }
}
