//! Netlink (rtnetlink) operations on links, addresses and routes.
//!
//! Every operation runs on a fresh `std::thread` spawned and joined by [`on_netlink_thread`],
//! with its own single-threaded tokio runtime and its own netlink socket. When a network
//! namespace is given, that thread first `setns`es into it, so the socket (which belongs to the
//! namespace of the thread that opens it) configures the pod's namespace; the thread then ends,
//! and no other thread's namespace ever changes. Never a tokio worker, never a pooled thread.
//!
//! Invariants:
//! - A pod's veth pair is created in one request with its peer already named `eth0` inside the
//!   pod's namespace (`IFLA_NET_NS_FD` on the peer), so no temporary name ever appears on the
//!   host and two pods set up at once cannot collide on it.
//! - Deleting one end of a veth pair deletes both; [`delete_link`] treats a missing link as done.

use std::fs::File;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::thread;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkMessage};
use rtnetlink::{Handle, LinkBridge, LinkBridgePort, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::error::NetnsError;
use crate::ipam::Ipv4Cidr;
use crate::sys;

/// The interface name of a pod's end of its veth pair.
pub const POD_INTERFACE: &str = "eth0";

fn nl_io(e: rtnetlink::Error) -> io::Error {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io(),
        other => io::Error::other(other.to_string()),
    }
}

/// Wrap a netlink failure of `step` on `link`.
fn nl_err(step: &'static str, link: &str) -> impl FnOnce(rtnetlink::Error) -> NetnsError {
    let link = link.to_owned();
    move |e| NetnsError::Netlink {
        step,
        link,
        source: nl_io(e),
    }
}

/// Run `f` with a netlink handle on a fresh thread, inside `netns` if given.
pub(crate) fn on_netlink_thread<T, F, Fut>(netns: Option<&Path>, f: F) -> Result<T, NetnsError>
where
    T: Send,
    F: FnOnce(Handle) -> Fut + Send,
    Fut: Future<Output = Result<T, NetnsError>>,
{
    let ns_label = netns.map(|p| p.display().to_string()).unwrap_or_default();
    thread::scope(|scope| {
        let handle = thread::Builder::new()
            .name("kinglet-netlink".into())
            .spawn_scoped(scope, move || {
                let thread_err = |step, source| NetnsError::NetlinkThread {
                    step,
                    netns: netns.map(Path::to_path_buf),
                    source,
                };
                if let Some(path) = netns {
                    let ns = File::open(path).map_err(|e| thread_err("open netns", e))?;
                    sys::setns_net(ns.as_fd()).map_err(|e| thread_err("setns", e))?;
                }
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()
                    .map_err(|e| thread_err("start runtime", e))?;
                rt.block_on(async move {
                    let (conn, handle, _) =
                        rtnetlink::new_connection().map_err(|e| thread_err("connect", e))?;
                    let conn = tokio::spawn(conn);
                    let out = f(handle).await;
                    conn.abort();
                    out
                })
            })
            .map_err(|source| NetnsError::NetlinkThread {
                step: "spawn",
                netns: netns.map(Path::to_path_buf),
                source,
            })?;
        handle.join().unwrap_or_else(|_| {
            Err(NetnsError::NetlinkThread {
                step: "join",
                netns: netns.map(Path::to_path_buf),
                source: io::Error::other(format!("netlink thread for {ns_label} panicked")),
            })
        })
    })
}

/// The link named `name`, if it exists.
async fn find_link(h: &Handle, name: &str) -> Result<Option<LinkMessage>, NetnsError> {
    let mut req = h.link().get().match_name(name.to_owned()).execute();
    match req.try_next().await {
        Ok(m) => Ok(m),
        Err(rtnetlink::Error::NetlinkError(m))
            if m.raw_code().abs() == libc::ENODEV || m.raw_code().abs() == libc::ENOENT =>
        {
            Ok(None)
        }
        Err(e) => Err(nl_err("look up", name)(e)),
    }
}

/// Create the bridge `name` if missing, give it `cidr`'s gateway address, and bring it up.
/// Returns its interface index.
pub fn ensure_bridge(name: &str, cidr: Ipv4Cidr) -> Result<u32, NetnsError> {
    on_netlink_thread(None, |h| async move {
        let link = match find_link(&h, name).await? {
            Some(l) => l,
            None => {
                h.link()
                    .add(LinkBridge::new(name).build())
                    .execute()
                    .await
                    .map_err(nl_err("create bridge", name))?;
                find_link(&h, name)
                    .await?
                    .ok_or_else(|| NetnsError::Netlink {
                        step: "find the new bridge",
                        link: name.to_owned(),
                        source: io::Error::from_raw_os_error(libc::ENODEV),
                    })?
            }
        };
        let index = link.header.index;
        let gw = IpAddr::V4(cidr.gateway());
        let mut addrs = h
            .address()
            .get()
            .set_link_index_filter(index)
            .set_address_filter(gw)
            .execute();
        if addrs
            .try_next()
            .await
            .map_err(nl_err("list addresses", name))?
            .is_none()
        {
            h.address()
                .add(index, gw, cidr.prefix())
                .execute()
                .await
                .map_err(nl_err("add the gateway address", name))?;
        }
        h.link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(nl_err("bring up", name))?;
        Ok(index)
    })
}

/// Whether the link `name` exists and is up (in the calling process's namespace).
pub fn link_is_up(name: &str) -> Result<bool, NetnsError> {
    on_netlink_thread(None, |h| async move {
        Ok(find_link(&h, name).await?.is_some_and(|l| {
            l.header
                .flags
                .contains(rtnetlink::packet_route::link::LinkFlags::Up)
        }))
    })
}

/// Create the veth pair `host` ↔ `eth0` (inside the namespace pinned at `netns`), attach `host`
/// to the bridge `bridge_index` and bring it up.
pub fn create_pod_veth(host: &str, netns: &Path, bridge_index: u32) -> Result<(), NetnsError> {
    let ns = File::open(netns).map_err(|source| NetnsError::NetlinkThread {
        step: "open netns",
        netns: Some(netns.to_path_buf()),
        source,
    })?;
    let ns_fd = ns.as_raw_fd();
    on_netlink_thread(None, move |h| async move {
        let peer = LinkUnspec::new_with_name(POD_INTERFACE)
            .setns_by_fd(ns_fd)
            .build();
        let msg = LinkVeth::new(host, POD_INTERFACE)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .controller(bridge_index)
            .up()
            .build();
        h.link()
            .add(msg)
            .execute()
            .await
            .map_err(nl_err("create veth pair", host))?;
        // Hairpin, so that a pod reaching its own hostPort (DNAT back to itself) gets its
        // frames back when bridged traffic goes through netfilter (br_netfilter).
        let index = find_link(&h, host)
            .await?
            .ok_or_else(|| NetnsError::Netlink {
                step: "find the new veth",
                link: host.to_owned(),
                source: io::Error::from_raw_os_error(libc::ENODEV),
            })?
            .header
            .index;
        h.link()
            .set_port(LinkBridgePort::new(index).hairpin(true).build())
            .execute()
            .await
            .map_err(nl_err("set hairpin mode on", host))
    })?;
    drop(ns);
    Ok(())
}

/// Inside the namespace pinned at `netns`: give `eth0` the address `ip/prefix`, bring it up and
/// add the default route via `gateway`.
pub fn configure_pod_interface(
    netns: &Path,
    ip: Ipv4Addr,
    prefix: u8,
    gateway: Ipv4Addr,
) -> Result<(), NetnsError> {
    on_netlink_thread(Some(netns), |h| async move {
        let link = find_link(&h, POD_INTERFACE)
            .await?
            .ok_or_else(|| NetnsError::Netlink {
                step: "find the pod interface",
                link: POD_INTERFACE.to_owned(),
                source: io::Error::from_raw_os_error(libc::ENODEV),
            })?;
        let index = link.header.index;
        h.address()
            .add(index, IpAddr::V4(ip), prefix)
            .execute()
            .await
            .map_err(nl_err("add the pod address", POD_INTERFACE))?;
        h.link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(nl_err("bring up", POD_INTERFACE))?;
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gateway)
            .output_interface(index)
            .build();
        h.route()
            .add(route)
            .execute()
            .await
            .map_err(nl_err("add the default route", POD_INTERFACE))
    })
}

/// Delete the link `name` (for a veth, both ends). A missing link is fine.
pub fn delete_link(name: &str) -> Result<(), NetnsError> {
    on_netlink_thread(None, |h| async move {
        let Some(link) = find_link(&h, name).await? else {
            return Ok(());
        };
        match h.link().del(link.header.index).execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code().abs() == libc::ENODEV => Ok(()),
            Err(e) => Err(nl_err("delete", name)(e)),
        }
    })
}

/// Names of the links attached to the bridge `bridge` (empty if it does not exist).
pub fn bridge_ports(bridge: &str) -> Result<Vec<String>, NetnsError> {
    on_netlink_thread(None, |h| async move {
        let Some(br) = find_link(&h, bridge).await? else {
            return Ok(Vec::new());
        };
        let mut links = h.link().get().execute();
        let mut out = Vec::new();
        while let Some(l) = links
            .try_next()
            .await
            .map_err(nl_err("list links", bridge))?
        {
            let attrs = &l.attributes;
            if attrs
                .iter()
                .any(|a| matches!(a, LinkAttribute::Controller(i) if *i == br.header.index))
            {
                if let Some(name) = attrs.iter().find_map(|a| match a {
                    LinkAttribute::IfName(n) => Some(n.clone()),
                    _ => None,
                }) {
                    out.push(name);
                }
            }
        }
        Ok(out)
    })
}
