//! IPv4 address management for pods: one file per allocated address.
//!
//! Owns the directory it is given (e.g. `<run-root>/network/ipam`). An allocation is the file
//! `<dir>/<address>` (for example `10.85.0.7`) holding the pod id, created with `O_EXCL`: the
//! file system, not memory, decides who owns an address, so a restarted daemon (or a racing
//! thread) can never hand out an address that is still allocated.
//!
//! Invariants:
//! - The network address, the gateway (the first host address, which the bridge holds) and the
//!   broadcast address are never handed out.
//! - Allocation walks the range round-robin from just after the last address it handed out, so a
//!   freed address is not reused at once (stale ARP/conntrack entries for it can expire).
//! - [`Ipam::release`] removes every file naming the pod and is idempotent.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;

use crate::error::NetnsError;

/// An IPv4 network in CIDR notation, normalised to its network address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Cidr {
    /// The network `addr/prefix` (host bits are cleared). `prefix` must be 1..=30 so that the
    /// network holds a gateway and at least one pod.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, NetnsError> {
        if !(1..=30).contains(&prefix) {
            return Err(NetnsError::InvalidCidr {
                cidr: format!("{addr}/{prefix}"),
                reason: "prefix length must be between 1 and 30",
            });
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Ipv4Cidr {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        })
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The first host address: the bridge's, and the pods' default gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) + 1)
    }

    /// The broadcast (last) address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | (u32::MAX >> self.prefix))
    }

    /// Whether `ip` lies in this network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(ip) & mask == u32::from(self.addr)
    }

    /// Addresses pods may get: gateway + 1 ..= broadcast - 1.
    fn pod_range(&self) -> (u32, u32) {
        (
            u32::from(self.gateway()) + 1,
            u32::from(self.broadcast()) - 1,
        )
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = NetnsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason| NetnsError::InvalidCidr {
            cidr: s.to_owned(),
            reason,
        };
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| bad("expected ADDRESS/PREFIX"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad("not an IPv4 address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| bad("prefix is not a number"))?;
        Ipv4Cidr::new(addr, prefix)
    }
}

/// Address allocations of one pod network, persisted as files under a directory.
#[derive(Debug)]
pub struct Ipam {
    dir: PathBuf,
    cidr: Ipv4Cidr,
    /// The last address handed out by this process (the round-robin cursor).
    last: Mutex<Option<u32>>,
}

impl Ipam {
    /// Allocations of `cidr` kept in `dir` (created on first allocation).
    pub fn new(dir: impl Into<PathBuf>, cidr: Ipv4Cidr) -> Self {
        Ipam {
            dir: dir.into(),
            cidr,
            last: Mutex::new(None),
        }
    }

    /// The directory holding the allocation files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Allocate a free address for `pod`.
    pub fn allocate(&self, pod: &str) -> Result<Ipv4Addr, NetnsError> {
        fs::create_dir_all(&self.dir).map_err(|source| NetnsError::Ipam {
            path: self.dir.clone(),
            source,
        })?;
        let (first, last) = self.cidr.pod_range();
        let mut cursor = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let start = match *cursor {
            Some(prev) if prev >= first && prev < last => prev + 1,
            _ => first,
        };
        let count = last - first + 1;
        for i in 0..count {
            let n = first + (start - first + i) % count;
            let ip = Ipv4Addr::from(n);
            let path = self.dir.join(ip.to_string());
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    if let Err(source) = f.write_all(pod.as_bytes()).and_then(|()| f.sync_all()) {
                        let _ = fs::remove_file(&path);
                        return Err(NetnsError::Ipam { path, source });
                    }
                    *cursor = Some(n);
                    return Ok(ip);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(NetnsError::Ipam { path, source }),
            }
        }
        Err(NetnsError::AddressesExhausted {
            cidr: self.cidr,
            pod: pod.to_owned(),
        })
    }

    /// Release every address allocated to `pod`. Idempotent.
    pub fn release(&self, pod: &str) -> Result<(), NetnsError> {
        for (ip, owner) in self.list()? {
            if owner == pod {
                let path = self.dir.join(ip.to_string());
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(source) => return Err(NetnsError::Ipam { path, source }),
                }
            }
        }
        Ok(())
    }

    /// Every allocation: (address, pod id). Files that do not name an address are ignored.
    pub fn list(&self) -> Result<Vec<(Ipv4Addr, String)>, NetnsError> {
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(NetnsError::Ipam {
                    path: self.dir.clone(),
                    source,
                })
            }
        };
        let mut out = Vec::new();
        for entry in rd.flatten() {
            let Some(ip) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            let owner = fs::read_to_string(entry.path()).unwrap_or_default();
            out.push((ip, owner.trim().to_owned()));
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().expect("valid cidr")
    }

    #[test]
    fn cidr_parses_and_normalises() {
        let c = cidr("10.85.3.7/16");
        assert_eq!(c.to_string(), "10.85.0.0/16");
        assert_eq!(c.gateway(), Ipv4Addr::new(10, 85, 0, 1));
        assert_eq!(c.broadcast(), Ipv4Addr::new(10, 85, 255, 255));
        assert!(c.contains(Ipv4Addr::new(10, 85, 200, 1)));
        assert!(!c.contains(Ipv4Addr::new(10, 86, 0, 1)));
        for bad in [
            "10.85.0.0",
            "10.85.0.0/31",
            "10.85.0.0/0",
            "x/16",
            "10.85.0.0/a",
        ] {
            let e = bad.parse::<Ipv4Cidr>().unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn allocations_skip_gateway_and_broadcast_and_are_exclusive() {
        let tmp = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(tmp.path().join("ipam"), cidr("10.9.0.0/29"));
        let got: Vec<_> = (0..5)
            .map(|i| ipam.allocate(&format!("pod{i}")).unwrap())
            .collect();
        assert_eq!(
            got,
            (2..=6)
                .map(|n| Ipv4Addr::new(10, 9, 0, n))
                .collect::<Vec<_>>()
        );
        let e = ipam.allocate("pod-x").unwrap_err();
        assert!(matches!(e, NetnsError::AddressesExhausted { .. }), "{e}");
        assert!(e.to_string().contains("10.9.0.0/29"), "{e}");

        // A second instance on the same directory (a restarted daemon) never reuses a live one.
        ipam.release("pod2").unwrap();
        let fresh = Ipam::new(tmp.path().join("ipam"), cidr("10.9.0.0/29"));
        assert_eq!(fresh.allocate("pod-y").unwrap(), Ipv4Addr::new(10, 9, 0, 4));
        assert!(fresh.allocate("pod-z").is_err());
    }

    #[test]
    fn release_is_idempotent_and_round_robin_avoids_immediate_reuse() {
        let tmp = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(tmp.path(), cidr("10.9.0.0/24"));
        let a = ipam.allocate("a").unwrap();
        ipam.release("a").unwrap();
        ipam.release("a").unwrap();
        let b = ipam.allocate("b").unwrap();
        assert_ne!(a, b);
        assert_eq!(ipam.list().unwrap(), vec![(b, "b".to_owned())]);
        ipam.release("never-allocated").unwrap();
    }
}
