//! Kinglet's own nftables table: outbound masquerade for the pod network and hostPort DNAT.
//!
//! Owns exactly one table, `ip <name>` (default `kinglet`), and never reads or changes any other
//! table. Rules are generated as `nft -f` scripts by pure functions (unit-tested below) and
//! applied by piping them to `nft -f -`, so each change is one atomic netlink transaction.
//!
//! Layout:
//! - maps `hostports` (`proto . port → pod ip . port`, any host address) and `hostports_ip`
//!   (`host ip . proto . port → pod ip . port`, one host address); one element per hostPort
//!   mapping, so a pod's port rules are added and removed as elements, never by rule handle;
//! - `prerouting` and `output` (nat) send traffic for local addresses to `hostports`, which
//!   DNATs through the maps (the more specific map first);
//! - `postrouting` masquerades traffic from the pod network leaving it, DNATed traffic that
//!   came from 127.0.0.0/8 (hostPort on localhost; needs `route_localnet` on the bridge) and
//!   hairpin traffic (a pod reaching a hostPort that leads back into the pod network; marked
//!   `0x2000` by `hostports`, so pod → Service traffic the Service proxy DNATs is not). The
//!   hairpin rule matches addresses, not the output interface: with `br_netfilter` loaded such
//!   traffic is bridged and leaves through a bridge port, not the bridge device.
//! - `localnet_guard` (filter, input) drops packets to 127.0.0.0/8 that arrive on any interface
//!   but `lo` unless their connection was DNATed (the replies of a hostPort on 127.0.0.1 that
//!   the `output` chain translated). `route_localnet=1`, which those replies need, would
//!   otherwise let any pod reach the host's loopback-only services with a crafted packet
//!   (CVE-2020-8558; kube-proxy's `KUBE-FIREWALL` rule). The daemon applies the table before it
//!   turns `route_localnet` on; in CNI mode (where `portmap` turns it on) the table holds only
//!   this chain ([`guard_table_script`]).
//!
//! Invariants:
//! - [`table_script`] recreates the whole table (add, delete, define in one transaction), so
//!   applying it is how the daemon reconciles at start: the result holds exactly the elements of
//!   the live pods passed in, whatever a crash left.
//! - [`remove_pod_script`] adds then deletes each element in one transaction, so it succeeds
//!   whether or not the elements exist (teardown is idempotent).

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use crate::error::NetnsError;
use crate::ipam::Ipv4Cidr;

/// Transport protocol of a hostPort mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// One hostPort: traffic to `host_ip:host_port` (any local address when `host_ip` is None) is
/// sent to the pod's `container_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortMapping {
    pub protocol: Protocol,
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
}

impl PortMapping {
    /// Whether two mappings claim the same host port: same protocol and port, and the same
    /// host address or either one on every address.
    pub fn conflicts_with(&self, other: &PortMapping) -> bool {
        self.protocol == other.protocol
            && self.host_port == other.host_port
            && match (self.host_ip, other.host_ip) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_ip {
            Some(ip) => write!(f, "{ip}:{}/{}", self.host_port, self.protocol),
            None => write!(f, "{}/{}", self.host_port, self.protocol),
        }
    }
}

/// What the table's rules are about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    /// Table name (in family `ip`).
    pub table: String,
    /// The pod bridge.
    pub bridge: String,
    /// The pod network.
    pub cidr: Ipv4Cidr,
}

/// Whether `name` is a safe nftables identifier (letters, digits, `_`; starts with a letter).
pub fn valid_table_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64
}

/// A mapping's map, its key and its value. Each map has a set of its keys beside it
/// (`<map>_keys`): the mark rule looks keys up there, since kernels before 6.4 refuse a lookup
/// in a map that does not load its value.
fn element(pod_ip: Ipv4Addr, m: &PortMapping) -> (&'static str, String, String) {
    let value = format!("{pod_ip} . {}", m.container_port);
    match m.host_ip {
        Some(h) => (
            "hostports_ip",
            format!("{h} . {} . {}", m.protocol, m.host_port),
            value,
        ),
        None => (
            "hostports",
            format!("{} . {}", m.protocol, m.host_port),
            value,
        ),
    }
}

/// `verb element` lines for a mapping: its map entry and its key.
fn element_lines(s: &mut String, verb: &str, table: &str, pod_ip: Ipv4Addr, m: &PortMapping) {
    let (map, key, value) = element(pod_ip, m);
    let _ = writeln!(s, "{verb} element ip {table} {map} {{ {key} : {value} }}");
    let key_verb = if verb == "create" { "add" } else { verb };
    let _ = writeln!(s, "{key_verb} element ip {table} {map}_keys {{ {key} }}");
}

/// Marks a packet a hostPort mapping DNATs, so that only those (not Service traffic DNATed by
/// the Service proxy's table) are masqueraded as hairpin traffic.
const HOSTPORT_MARK: &str = "meta mark set meta mark | 0x2000";

/// The whole table, holding the port mappings of `pods` (pod ip, its mappings).
pub fn table_script(spec: &TableSpec, pods: &[(Ipv4Addr, Vec<PortMapping>)]) -> String {
    let TableSpec {
        table,
        bridge,
        cidr,
    } = spec;
    let mut s = format!(
        "table ip {table} {{\n}}\ndelete table ip {table}\ntable ip {table} {{\n\
         \tmap hostports {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}\n\
         \tmap hostports_ip {{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }}\n\
         \tset hostports_keys {{ type inet_proto . inet_service; }}\n\
         \tset hostports_ip_keys {{ type ipv4_addr . inet_proto . inet_service; }}\n\
         \tchain prerouting {{ type nat hook prerouting priority dstnat; policy accept;\n\
         \t\tfib daddr type local jump hostports\n\t}}\n\
         \tchain output {{ type nat hook output priority -100; policy accept;\n\
         \t\tfib daddr type local jump hostports\n\t}}\n\
         \tchain hostports {{\n\
         \t\tmeta l4proto {{ tcp, udp }} ip daddr . meta l4proto . th dport @hostports_ip_keys {HOSTPORT_MARK}\n\
         \t\tmeta l4proto {{ tcp, udp }} meta l4proto . th dport @hostports_keys {HOSTPORT_MARK}\n\
         \t\tmeta l4proto {{ tcp, udp }} dnat to ip daddr . meta l4proto . th dport map @hostports_ip\n\
         \t\tmeta l4proto {{ tcp, udp }} dnat to meta l4proto . th dport map @hostports\n\t}}\n\
         \tchain postrouting {{ type nat hook postrouting priority srcnat; policy accept;\n\
         \t\toifname \"{bridge}\" ip saddr 127.0.0.0/8 masquerade\n\
         \t\tip saddr {cidr} ip daddr {cidr} ct status dnat meta mark & 0x2000 == 0x2000 masquerade\n\
         \t\tip saddr {cidr} ip daddr != {cidr} masquerade\n\t}}\n\
         {LOCALNET_GUARD}}}\n"
    );
    for (ip, ports) in pods {
        for m in ports {
            element_lines(&mut s, "add", table, *ip, m);
        }
    }
    s
}

/// The input chain that keeps pods off the host's loopback services (see the module docs).
const LOCALNET_GUARD: &str =
    "\tchain localnet_guard { type filter hook input priority filter - 10; policy accept;\n\
     \t\tiifname != \"lo\" ip daddr 127.0.0.0/8 ct status & dnat != dnat counter drop\n\t}\n";

/// A table holding only the loopback guard (CNI mode), recreated atomically.
pub fn guard_table_script(table: &str) -> String {
    format!(
        "table ip {table} {{\n}}\ndelete table ip {table}\ntable ip {table} {{\n{LOCALNET_GUARD}}}\n"
    )
}

/// Add a pod's mappings; fails (changing nothing) if any host port is already mapped.
pub fn add_pod_script(table: &str, pod_ip: Ipv4Addr, ports: &[PortMapping]) -> String {
    let mut s = String::new();
    for m in ports {
        element_lines(&mut s, "create", table, pod_ip, m);
    }
    s
}

/// Remove a pod's mappings; succeeds whether or not they are present.
pub fn remove_pod_script(table: &str, pod_ip: Ipv4Addr, ports: &[PortMapping]) -> String {
    let mut s = String::new();
    for m in ports {
        element_lines(&mut s, "add", table, pod_ip, m);
        element_lines(&mut s, "delete", table, pod_ip, m);
    }
    s
}

/// Remove the whole table; succeeds whether or not it exists.
pub fn delete_table_script(table: &str) -> String {
    format!("table ip {table} {{\n}}\ndelete table ip {table}\n")
}

/// Apply `script` with `<nft> -f -` as one transaction. An empty script does nothing.
pub fn apply(nft: &Path, table: &str, script: &str) -> Result<(), NetnsError> {
    if script.is_empty() {
        return Ok(());
    }
    let spawn_err = |source| NetnsError::Nft {
        table: table.to_owned(),
        source,
    };
    let mut child = Command::new(nft)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    let written = child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(script.as_bytes()));
    let out = child.wait_with_output().map_err(spawn_err)?;
    if !out.status.success() {
        return Err(NetnsError::NftRejected {
            table: table.to_owned(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    if let Some(Err(source)) = written {
        return Err(spawn_err(source));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host_port: u16, container_port: u16) -> PortMapping {
        PortMapping {
            protocol: Protocol::Tcp,
            host_ip: None,
            host_port,
            container_port,
        }
    }

    #[test]
    fn table_names_are_checked() {
        assert!(valid_table_name("kinglet"));
        assert!(valid_table_name("kt_123_4"));
        for bad in ["", "1abc", "a-b", "a b", "a;flush ruleset"] {
            assert!(!valid_table_name(bad), "{bad}");
        }
    }

    #[test]
    fn table_script_defines_only_its_own_table_with_live_elements() {
        let spec = TableSpec {
            table: "kinglet".into(),
            bridge: "kinglet0".into(),
            cidr: "10.85.0.0/16".parse().unwrap(),
        };
        let udp53 = PortMapping {
            protocol: Protocol::Udp,
            host_ip: Some(Ipv4Addr::LOCALHOST),
            host_port: 5353,
            container_port: 53,
        };
        let s = table_script(
            &spec,
            &[(Ipv4Addr::new(10, 85, 0, 2), vec![tcp(8080, 80), udp53])],
        );
        for line in s.lines() {
            let l = line.trim();
            if l.starts_with("table")
                || l.starts_with("delete table")
                || l.starts_with("add element")
            {
                let words: Vec<_> = l.split_whitespace().collect();
                assert!(words.windows(2).any(|w| w == ["ip", "kinglet"]), "{l}");
            }
        }
        assert!(
            s.starts_with("table ip kinglet {\n}\ndelete table ip kinglet\n"),
            "{s}"
        );
        assert!(s.contains("ip saddr 10.85.0.0/16 ip daddr != 10.85.0.0/16 masquerade"));
        assert!(s.contains("oifname \"kinglet0\" ip saddr 127.0.0.0/8 masquerade"));
        assert!(s.contains("ip saddr 10.85.0.0/16 ip daddr 10.85.0.0/16 ct status dnat meta mark & 0x2000 == 0x2000 masquerade"));
        assert!(
            s.contains("meta l4proto . th dport @hostports_keys meta mark set meta mark | 0x2000")
        );
        assert!(s.contains("add element ip kinglet hostports_keys { tcp . 8080 }"));
        assert!(s.contains("add element ip kinglet hostports { tcp . 8080 : 10.85.0.2 . 80 }"));
        assert!(s.contains(
            "iifname != \"lo\" ip daddr 127.0.0.0/8 ct status & dnat != dnat counter drop"
        ));
        assert!(s.contains(
            "add element ip kinglet hostports_ip { 127.0.0.1 . udp . 5353 : 10.85.0.2 . 53 }"
        ));
    }

    #[test]
    fn guard_table_holds_only_the_loopback_guard() {
        let s = guard_table_script("kg");
        assert!(s.starts_with("table ip kg {\n}\ndelete table ip kg\ntable ip kg {\n"));
        assert!(s.contains("type filter hook input"));
        assert!(s.contains("ip daddr 127.0.0.0/8 ct status & dnat != dnat counter drop"));
        assert!(!s.contains("nat hook"), "{s}");
    }

    #[test]
    fn pod_scripts_create_then_remove_idempotently() {
        let ip = Ipv4Addr::new(10, 85, 0, 9);
        assert_eq!(
            add_pod_script("k", ip, &[tcp(80, 8080)]),
            "create element ip k hostports { tcp . 80 : 10.85.0.9 . 8080 }\n\
             add element ip k hostports_keys { tcp . 80 }\n"
        );
        assert_eq!(
            remove_pod_script("k", ip, &[tcp(80, 8080)]),
            "add element ip k hostports { tcp . 80 : 10.85.0.9 . 8080 }\n\
             add element ip k hostports_keys { tcp . 80 }\n\
             delete element ip k hostports { tcp . 80 : 10.85.0.9 . 8080 }\n\
             delete element ip k hostports_keys { tcp . 80 }\n"
        );
        assert_eq!(add_pod_script("k", ip, &[]), "");
    }

    #[test]
    fn conflicts_follow_protocol_port_and_address() {
        let any = tcp(80, 1);
        let lo = PortMapping {
            host_ip: Some(Ipv4Addr::LOCALHOST),
            ..any
        };
        let other = PortMapping {
            host_ip: Some(Ipv4Addr::new(10, 0, 0, 1)),
            ..any
        };
        let udp = PortMapping {
            protocol: Protocol::Udp,
            ..any
        };
        assert!(any.conflicts_with(&tcp(80, 2)));
        assert!(any.conflicts_with(&lo) && lo.conflicts_with(&any));
        assert!(!lo.conflicts_with(&other));
        assert!(!any.conflicts_with(&udp));
        assert!(!any.conflicts_with(&tcp(81, 1)));
        assert_eq!(lo.to_string(), "127.0.0.1:80/tcp");
    }
}
