//! The host's resolv.conf: where it is (systemd-resolved's stub file points at 127.0.0.53,
//! so its upstream list in `/run/systemd/resolve/resolv.conf` is used instead, as kubeadm
//! configures the kubelet), and what it says (nameservers, search domains, options).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// systemd-resolved's stub listener.
const RESOLVED_STUB: &str = "127.0.0.53";

/// What a resolv.conf says, in the order it says it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// Parse resolv.conf text as the kubelet's `parseResolvConf` does: the last `search` line
/// wins (trailing dots cut, a lone `.` dropped), `options` lines add up, comments skipped.
pub fn parse(text: &str) -> ResolvConf {
    let mut out = ResolvConf::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("nameserver") => out.nameservers.extend(fields.next().map(str::to_owned)),
            Some("search") => {
                out.searches = fields
                    .filter(|s| *s != ".")
                    .map(|s| s.trim_end_matches('.').to_owned())
                    .collect();
            }
            Some("domain") => {
                out.searches = fields
                    .next()
                    .map(|s| vec![s.to_owned()])
                    .unwrap_or_default()
            }
            Some("options") => out.options.extend(fields.map(str::to_owned)),
            _ => {}
        }
    }
    out
}

/// The host's resolv.conf: `etc` (normally `/etc/resolv.conf`), unless it only names
/// systemd-resolved's stub and `resolved` (normally `/run/systemd/resolve/resolv.conf`)
/// exists, which lists the real upstreams.
pub fn host_path(etc: &Path, resolved: &Path) -> PathBuf {
    let stub_only = std::fs::read_to_string(etc).is_ok_and(|t| {
        let c = parse(&t);
        !c.nameservers.is_empty() && c.nameservers.iter().all(|n| n == RESOLVED_STUB)
    });
    if stub_only && resolved.exists() {
        resolved.to_owned()
    } else {
        etc.to_owned()
    }
}

/// The host's resolv.conf from the usual places (empty when unreadable).
pub fn host() -> ResolvConf {
    let p = host_path(
        Path::new("/etc/resolv.conf"),
        Path::new("/run/systemd/resolve/resolv.conf"),
    );
    std::fs::read_to_string(p)
        .map(|t| parse(&t))
        .unwrap_or_default()
}

/// The nameservers as socket addresses (port 53); unparsable ones are skipped. Loopback
/// ones are kept: the daemon forwards from the host side, where they answer.
pub fn upstreams(conf: &ResolvConf) -> Vec<SocketAddr> {
    conf.nameservers
        .iter()
        .filter_map(|n| n.split('%').next()?.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// An upstream as configured: `IP` or `IP:PORT` (`[IPv6]:PORT`).
pub fn parse_upstream(s: &str) -> Option<SocketAddr> {
    s.parse::<SocketAddr>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_the_kubelet() {
        let c = parse(
            "# generated\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nsearch a.example. b.example .\noptions ndots:2\noptions edns0 # trailing\n",
        );
        assert_eq!(c.nameservers, ["10.0.0.2", "fe80::1%eth0"]);
        assert_eq!(c.searches, ["a.example", "b.example"]);
        assert_eq!(c.options, ["ndots:2", "edns0"]);
        assert_eq!(
            upstreams(&c),
            [
                "10.0.0.2:53".parse().unwrap(),
                "[fe80::1]:53".parse().unwrap()
            ]
        );
        assert_eq!(parse("search x\nsearch y z\n").searches, ["y", "z"]);
        assert_eq!(
            parse_upstream("127.0.0.1:5353"),
            Some("127.0.0.1:5353".parse().unwrap())
        );
        assert_eq!(
            parse_upstream("1.2.3.4"),
            Some("1.2.3.4:53".parse().unwrap())
        );
        assert_eq!(parse_upstream("nope"), None);
    }

    #[test]
    fn systemd_resolved_stub_is_replaced_by_its_upstream_list() {
        let dir = tempfile::tempdir().unwrap();
        let (etc, resolved) = (dir.path().join("etc"), dir.path().join("resolved"));
        std::fs::write(&etc, "nameserver 127.0.0.53\noptions edns0\n").unwrap();
        // The stub alone, and no resolved file: keep what there is.
        assert_eq!(host_path(&etc, &resolved), etc);
        std::fs::write(&resolved, "nameserver 192.0.2.1\n").unwrap();
        assert_eq!(host_path(&etc, &resolved), resolved);
        // Any other nameserver: the file is used as it is.
        std::fs::write(&etc, "nameserver 127.0.0.1\n").unwrap();
        assert_eq!(host_path(&etc, &resolved), etc);
    }
}
