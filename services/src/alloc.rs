//! ClusterIP allocation from the service CIDR (`service-cidr`, default 10.96.0.0/16 as
//! kubeadm's, clear of the pod CIDR). The network address, `.1` (the `kubernetes` Service's
//! address in a cluster) and the broadcast address are never handed out. Addresses are
//! handed out lowest first; the caller passes the addresses stored Services hold, so there is
//! no allocation state besides the Services themselves.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::str::FromStr;

use crate::ServicesError;

/// The default service CIDR.
pub const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/16";

/// An IPv4 network for Service addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceCidr {
    base: u32,
    prefix: u8,
}

impl FromStr for ServiceCidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ip, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not an IPv4 CIDR (e.g. 10.96.0.0/16)"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("{s:?}: {ip:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (8..=29).contains(p))
            .ok_or_else(|| format!("{s:?}: the prefix length must be 8 to 29"))?;
        let mask = u32::MAX << (32 - prefix);
        if u32::from(ip) & !mask != 0 {
            return Err(format!(
                "{s:?}: host bits are set (the network is {}/{prefix})",
                Ipv4Addr::from(u32::from(ip) & mask)
            ));
        }
        Ok(ServiceCidr {
            base: u32::from(ip),
            prefix,
        })
    }
}

impl std::fmt::Display for ServiceCidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

impl ServiceCidr {
    fn last(&self) -> u32 {
        self.base | !(u32::MAX << (32 - self.prefix))
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base)
    }

    /// Whether `ip` is inside the network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (self.base..=self.last()).contains(&u32::from(ip))
    }

    /// Whether `ip` may be given to a Service (inside, not network, `.1` or broadcast).
    fn assignable(&self, ip: Ipv4Addr) -> bool {
        let n = u32::from(ip);
        n > self.base + 1 && n < self.last()
    }
}

/// The ClusterIP of a Service: `requested` is its `spec.clusterIP` ("" to allocate, "None" for
/// a headless Service, else an address to honour); `used` holds the addresses of the other
/// Services. `Ok(None)` for headless.
pub fn allocate(
    object: &str,
    cidr: &ServiceCidr,
    used: &BTreeSet<Ipv4Addr>,
    requested: &str,
) -> Result<Option<Ipv4Addr>, ServicesError> {
    let invalid = |reason: String| ServicesError::Invalid {
        object: object.to_owned(),
        field: "spec.clusterIP",
        reason,
    };
    match requested {
        "None" => Ok(None),
        "" => (cidr.base + 2..cidr.last())
            .map(Ipv4Addr::from)
            .find(|ip| !used.contains(ip))
            .map(Some)
            .ok_or_else(|| invalid(format!("no address left in the service CIDR {cidr}"))),
        s => {
            let ip: Ipv4Addr = s.parse().map_err(|_| {
                invalid(format!("{s:?} is not an IPv4 address (leave it empty to have one allocated, or \"None\" for a headless Service)"))
            })?;
            if !cidr.contains(ip) {
                return Err(invalid(format!("{ip} is not in the service CIDR {cidr}")));
            }
            if !cidr.assignable(ip) {
                return Err(invalid(format!("{ip} is reserved in the service CIDR {cidr} (network, .1 and broadcast addresses)")));
            }
            if used.contains(&ip) {
                return Err(invalid(format!(
                    "{ip} is already allocated to another Service; pick another or leave it empty"
                )));
            }
            Ok(Some(ip))
        }
    }
}

/// The NodePort range, as the API server's default `--service-node-port-range`.
pub const NODE_PORTS: std::ops::RangeInclusive<i32> = 30000..=32767;

/// The nodePort of one Service port: `requested` honoured when in range and free, else the
/// lowest free port. `used` holds the nodePorts of the other Service ports (same protocol).
pub fn allocate_node_port(
    object: &str,
    used: &BTreeSet<i32>,
    requested: Option<i32>,
) -> Result<i32, ServicesError> {
    let invalid = |reason: String| ServicesError::Invalid {
        object: object.to_owned(),
        field: "spec.ports[].nodePort",
        reason,
    };
    match requested.filter(|p| *p != 0) {
        Some(p) if !NODE_PORTS.contains(&p) => Err(invalid(format!(
            "{p} is outside the node port range 30000-32767"
        ))),
        Some(p) if used.contains(&p) => Err(invalid(format!(
            "{p} is already allocated to another Service; pick another or leave it out"
        ))),
        Some(p) => Ok(p),
        None => NODE_PORTS
            .clone()
            .find(|p| !used.contains(p))
            .ok_or_else(|| invalid("no node port left in 30000-32767".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> ServiceCidr {
        s.parse().unwrap()
    }

    #[test]
    fn allocates_lowest_free_skipping_reserved() {
        let c = cidr("10.96.0.0/16");
        let mut used = BTreeSet::new();
        let a = allocate("s", &c, &used, "").unwrap().unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 96, 0, 2));
        used.insert(a);
        let b = allocate("s", &c, &used, "").unwrap().unwrap();
        assert_eq!(b, Ipv4Addr::new(10, 96, 0, 3));
    }

    #[test]
    fn honours_or_refuses_a_requested_address() {
        let c = cidr("10.96.0.0/16");
        let used: BTreeSet<_> = [Ipv4Addr::new(10, 96, 0, 10)].into();
        assert_eq!(
            allocate("s", &c, &used, "10.96.3.4").unwrap(),
            Some(Ipv4Addr::new(10, 96, 3, 4))
        );
        let taken = allocate("Service default/web", &c, &used, "10.96.0.10")
            .unwrap_err()
            .to_string();
        assert!(
            taken.contains("Service default/web")
                && taken.contains("spec.clusterIP")
                && taken.contains("already allocated"),
            "{taken}"
        );
        for bad in [
            "10.97.0.5",
            "10.96.0.1",
            "10.96.255.255",
            "10.96.0.0",
            "abc",
        ] {
            assert!(allocate("s", &c, &used, bad).is_err(), "{bad} accepted");
        }
        assert_eq!(allocate("s", &c, &used, "None").unwrap(), None);
    }

    #[test]
    fn full_cidr_is_an_error() {
        let c = cidr("10.96.0.0/29");
        let used: BTreeSet<_> = (2..7).map(|i| Ipv4Addr::new(10, 96, 0, i)).collect();
        let e = allocate("s", &c, &used, "").unwrap_err().to_string();
        assert!(e.contains("no address left"), "{e}");
    }

    #[test]
    fn node_ports() {
        let used: BTreeSet<i32> = [30000, 30001].into();
        assert_eq!(allocate_node_port("s", &used, None).unwrap(), 30002);
        assert_eq!(allocate_node_port("s", &used, Some(0)).unwrap(), 30002);
        assert_eq!(allocate_node_port("s", &used, Some(31000)).unwrap(), 31000);
        assert!(allocate_node_port("s", &used, Some(30001)).is_err());
        let e = allocate_node_port("Service default/web", &used, Some(8080))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("Service default/web") && e.contains("nodePort") && e.contains("range"),
            "{e}"
        );
    }

    #[test]
    fn cidr_parsing() {
        assert!("10.96.0.0/16".parse::<ServiceCidr>().is_ok());
        assert!("10.96.0.1/16".parse::<ServiceCidr>().is_err());
        assert!("10.96.0.0".parse::<ServiceCidr>().is_err());
        assert!("10.96.0.0/31".parse::<ServiceCidr>().is_err());
    }
}
