//! Kinglet's Ingress controller as a library: the networking.k8s.io/v1 Ingresses of
//! Kinglet's class turned into a routing table ([`routes`]), certificates from their TLS
//! Secrets chosen by SNI ([`tls`]), and the proxy that serves them on the host's ports
//! ([`server`], one request in [`proxy`]), built on hyper and rustls.
//!
//! The mini-kubelet (`kinglet-kubelet`) feeds it the Ingresses, Services, EndpointSlices and
//! Secrets at each pass of its services loop; this crate knows nothing of the daemon.

pub mod proxy;
pub mod routes;
pub mod server;
pub mod tls;
mod upstream;

pub use routes::{is_ours, Routes, CLASS_NAME, CONTROLLER};
pub use server::{IngressConfig, IngressProxy};
pub use tls::CertMap;

/// What went wrong in the ingress proxy.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    /// A listener could not be bound (the port is taken, or needs privileges).
    #[error("ingress listener {addr}: cannot bind; free the port or set other ingress ports in the config")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// No endpoint of a backend accepted a connection.
    #[error("no endpoint of {service} accepted a connection")]
    NoEndpoint { service: String },
    /// A certificate or key cannot be used.
    #[error("TLS certificate: {reason}")]
    Certificate { reason: String },
}

/// The host's address for Ingress status: the IPv4 address of the interface of the default
/// route (`route` is `/proc/net/route`), else the first non-loopback IPv4 address; None on a
/// host without either.
pub fn host_address(route: &str) -> Option<std::net::Ipv4Addr> {
    let iface = route.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 2 && f[1] == "00000000").then(|| f[0].to_owned())
    });
    let addrs = nix_ifaddrs();
    iface
        .and_then(|i| addrs.iter().find(|(n, _)| *n == i).map(|(_, a)| *a))
        .or_else(|| addrs.iter().map(|(_, a)| *a).find(|a| !a.is_loopback()))
}

/// Every interface's IPv4 addresses, by interface name.
fn nix_ifaddrs() -> Vec<(String, std::net::Ipv4Addr)> {
    let Ok(list) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    list.filter_map(|i| {
        let a = i.address?.as_sockaddr_in()?.ip();
        Some((i.interface_name, a))
    })
    .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_address_is_never_loopback() {
        // Whatever this host has: an address that is not 127.0.0.0/8.
        if let Some(a) =
            super::host_address("Iface\tDestination\tGateway\nnosuchif\t00000000\t01020304\n")
        {
            assert!(!a.is_loopback());
        }
    }
}
