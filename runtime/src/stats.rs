//! Reading resource usage for the stats RPCs: a cgroup's CPU time, memory and process count
//! (cgroup v1 controllers or the v2 unified hierarchy, found under a cgroup root given as a
//! parameter), a writable layer's size, and a network namespace's interface counters.
//!
//! Everything here reads files and blocks: call it on the blocking pool. A missing cgroup (a
//! container that exited and whose cgroup was removed) reads as "nothing known", not as an
//! error. Memory follows cAdvisor and containerd: the working set is the usage minus the
//! inactive file cache, never below zero.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Memory of one cgroup, in bytes (faults in events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub usage: u64,
    pub working_set: u64,
    pub rss: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
}

/// What one cgroup reports; `None` where the file is missing or unreadable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupUsage {
    /// Cumulative CPU time of all its tasks, in nanoseconds.
    pub cpu_ns: Option<u64>,
    pub memory: Option<Memory>,
    /// Processes (tasks) in it and below.
    pub pids: Option<u64>,
}

/// Parse a flat-keyed cgroup file (`memory.stat`, `cpu.stat`): `key value` per line.
pub fn parse_flat_keyed(text: &str) -> HashMap<&str, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?, it.next()?.parse().ok()?))
        })
        .collect()
}

/// Memory from cgroup v1 `memory.usage_in_bytes` and `memory.stat` (the hierarchical
/// `total_*` counters, which include child cgroups).
pub fn memory_v1(usage_in_bytes: &str, stat: &str) -> Option<Memory> {
    let usage: u64 = usage_in_bytes.trim().parse().ok()?;
    let s = parse_flat_keyed(stat);
    let get = |k: &str| s.get(k).copied().unwrap_or(0);
    Some(Memory {
        usage,
        working_set: usage.saturating_sub(get("total_inactive_file")),
        rss: get("total_rss"),
        page_faults: get("total_pgfault"),
        major_page_faults: get("total_pgmajfault"),
    })
}

/// Memory from cgroup v2 `memory.current` and `memory.stat`.
pub fn memory_v2(current: &str, stat: &str) -> Option<Memory> {
    let usage: u64 = current.trim().parse().ok()?;
    let s = parse_flat_keyed(stat);
    let get = |k: &str| s.get(k).copied().unwrap_or(0);
    Some(Memory {
        usage,
        working_set: usage.saturating_sub(get("inactive_file")),
        rss: get("anon"),
        page_faults: get("pgfault"),
        major_page_faults: get("pgmajfault"),
    })
}

/// CPU time in nanoseconds from cgroup v2 `cpu.stat` (`usage_usec`).
pub fn cpu_v2(cpu_stat: &str) -> Option<u64> {
    parse_flat_keyed(cpu_stat)
        .get("usage_usec")
        .map(|us| us.saturating_mul(1000))
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn read_u64(path: &Path) -> Option<u64> {
    read(path)?.trim().parse().ok()
}

/// Whether `cgroup_root` is a cgroup v2 (unified) mount.
pub fn is_v2(cgroup_root: &Path) -> bool {
    cgroup_root.join("cgroup.controllers").exists()
}

/// Read the cgroup `rel` (e.g. `/kinglet/<pod>/<container>`) under `cgroup_root`
/// (`/sys/fs/cgroup`): v2 when the root is a unified mount, else the v1 `cpuacct`, `memory`
/// and `pids` hierarchies.
pub fn read_cgroup(cgroup_root: &Path, rel: &str) -> CgroupUsage {
    let rel = rel.trim_start_matches('/');
    if is_v2(cgroup_root) {
        let dir = cgroup_root.join(rel);
        CgroupUsage {
            cpu_ns: read(&dir.join("cpu.stat")).and_then(|s| cpu_v2(&s)),
            memory: read(&dir.join("memory.current"))
                .zip(read(&dir.join("memory.stat")))
                .and_then(|(c, s)| memory_v2(&c, &s)),
            pids: read_u64(&dir.join("pids.current")).or_else(|| count_procs(&dir)),
        }
    } else {
        let mem = cgroup_root.join("memory").join(rel);
        CgroupUsage {
            cpu_ns: read_u64(&cgroup_root.join("cpuacct").join(rel).join("cpuacct.usage")),
            memory: read(&mem.join("memory.usage_in_bytes"))
                .zip(read(&mem.join("memory.stat")))
                .and_then(|(u, s)| memory_v1(&u, &s)),
            pids: read_u64(&cgroup_root.join("pids").join(rel).join("pids.current"))
                .or_else(|| count_procs(&mem)),
        }
    }
}

/// Processes listed in `cgroup.procs` of `dir` and of every cgroup below it.
fn count_procs(dir: &Path) -> Option<u64> {
    let own = read(&dir.join("cgroup.procs"))?.lines().count() as u64;
    let children: u64 = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter_map(|e| count_procs(&e.path()))
        .sum();
    Some(own + children)
}

/// Bytes (allocated blocks, as `du` counts) and inodes used by the tree at `dir`, itself
/// included; hard links are counted once. A missing tree is `(0, 0)`.
pub fn dir_usage(dir: &Path) -> (u64, u64) {
    let mut seen = std::collections::HashSet::new();
    let (mut bytes, mut inodes) = (0u64, 0u64);
    let mut stack = vec![dir.to_owned()];
    while let Some(p) = stack.pop() {
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if md.nlink() > 1 && !md.is_dir() && !seen.insert((md.dev(), md.ino())) {
            continue;
        }
        bytes += md.blocks() * 512;
        inodes += 1;
        if md.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        }
    }
    (bytes, inodes)
}

/// The mount point of the filesystem holding `path`: the topmost ancestor on the same device.
pub fn mountpoint_of(path: &Path) -> PathBuf {
    let Ok(dev) = std::fs::metadata(path).map(|m| m.dev()) else {
        return path.to_owned();
    };
    let mut top = path.to_owned();
    for a in path.ancestors().skip(1) {
        match std::fs::metadata(a) {
            Ok(m) if m.dev() == dev => top = a.to_owned(),
            _ => break,
        }
    }
    top
}

/// Counters of one network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_errors: u64,
    pub tx_bytes: u64,
    pub tx_errors: u64,
}

/// Parse `/proc/<pid>/net/dev` (the interfaces of that process's network namespace), leaving
/// out the loopback.
pub fn parse_net_dev(text: &str) -> Vec<Interface> {
    text.lines()
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let name = name.trim();
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|v| v.parse().ok())
                .collect::<Option<_>>()?;
            // rx: bytes packets errs drop fifo frame compressed multicast; then tx likewise.
            (f.len() >= 16 && name != "lo").then(|| Interface {
                name: name.to_owned(),
                rx_bytes: f[0],
                rx_errors: f[2],
                tx_bytes: f[8],
                tx_errors: f[10],
            })
        })
        .collect()
}

/// Average CPU use in nanocores between two samples `(timestamp ns, cumulative cpu ns)`;
/// `None` when the time did not advance or the counter went back (a new cgroup).
pub fn nano_cores(prev: (i64, u64), cur: (i64, u64)) -> Option<u64> {
    let dt = u128::try_from(cur.0.checked_sub(prev.0)?).ok()?;
    let used = u128::from(cur.1.checked_sub(prev.1)?);
    if dt == 0 {
        return None;
    }
    u64::try_from(used * 1_000_000_000 / dt).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1_STAT: &str = "cache 4096\nrss 1000\ntotal_cache 8192\ntotal_rss 21000000\n\
        total_inactive_file 3000000\ntotal_pgfault 5000\ntotal_pgmajfault 7\ninactive_file 1\n";
    const V2_STAT: &str = "anon 22000000\nfile 4000000\ninactive_file 1000000\n\
        active_file 3000000\npgfault 6000\npgmajfault 9\n";

    #[test]
    fn v1_memory_uses_hierarchical_totals() {
        let m = memory_v1("25000000\n", V1_STAT).unwrap();
        assert_eq!(
            m,
            Memory {
                usage: 25_000_000,
                working_set: 22_000_000,
                rss: 21_000_000,
                page_faults: 5000,
                major_page_faults: 7,
            }
        );
        // Inactive file cache larger than the usage: the working set floors at zero.
        assert_eq!(memory_v1("10", V1_STAT).unwrap().working_set, 0);
        assert_eq!(memory_v1("", V1_STAT), None);
    }

    #[test]
    fn v2_memory_and_cpu() {
        let m = memory_v2("27000000\n", V2_STAT).unwrap();
        assert_eq!(m.working_set, 26_000_000);
        assert_eq!(
            (m.usage, m.rss, m.page_faults, m.major_page_faults),
            (27_000_000, 22_000_000, 6000, 9)
        );
        let cpu = "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 0\n";
        assert_eq!(cpu_v2(cpu), Some(1_500_000));
        assert_eq!(cpu_v2("user_usec 3\n"), None);
    }

    #[test]
    fn reads_a_fake_v2_tree_and_a_fake_v1_tree() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::write(root.join("cgroup.controllers"), "cpu memory pids").unwrap();
        let pod = root.join("kinglet/p1");
        let c = pod.join("c1");
        std::fs::create_dir_all(&c).unwrap();
        std::fs::write(c.join("cpu.stat"), "usage_usec 42\n").unwrap();
        std::fs::write(c.join("memory.current"), "27000000").unwrap();
        std::fs::write(c.join("memory.stat"), V2_STAT).unwrap();
        std::fs::write(pod.join("cgroup.procs"), "").unwrap();
        std::fs::write(c.join("cgroup.procs"), "10\n11\n").unwrap();
        let u = read_cgroup(root, "/kinglet/p1/c1");
        assert_eq!(u.cpu_ns, Some(42_000));
        assert_eq!(u.memory.unwrap().working_set, 26_000_000);
        // No pids controller: processes counted from cgroup.procs down the tree.
        assert_eq!(read_cgroup(root, "/kinglet/p1").pids, Some(2));
        std::fs::write(pod.join("pids.current"), "3\n").unwrap();
        assert_eq!(read_cgroup(root, "/kinglet/p1").pids, Some(3));
        assert_eq!(read_cgroup(root, "/kinglet/gone"), CgroupUsage::default());

        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        for (ctl, file, text) in [
            ("cpuacct", "cpuacct.usage", "123456789\n"),
            ("memory", "memory.usage_in_bytes", "25000000\n"),
            ("memory", "memory.stat", V1_STAT),
            ("pids", "pids.current", "4\n"),
        ] {
            let dir = root.join(ctl).join("kinglet/p1");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(file), text).unwrap();
        }
        let u = read_cgroup(root, "kinglet/p1");
        assert_eq!(u.cpu_ns, Some(123_456_789));
        assert_eq!(u.memory.unwrap().working_set, 22_000_000);
        assert_eq!(u.pids, Some(4));
    }

    #[test]
    fn net_dev_skips_loopback_and_headers() {
        let text = "Inter-|   Receive                            |  Transmit\n \
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0\n  \
eth0:    5000      40    1    0    0     0          0         0     3000      30    2    0    0     0       0          0\n";
        assert_eq!(
            parse_net_dev(text),
            vec![Interface {
                name: "eth0".into(),
                rx_bytes: 5000,
                rx_errors: 1,
                tx_bytes: 3000,
                tx_errors: 2,
            }]
        );
    }

    #[test]
    fn dir_usage_counts_files_and_inodes() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(d.path().join("etc/big"), vec![1u8; 64 * 1024]).unwrap();
        std::fs::hard_link(d.path().join("etc/big"), d.path().join("again")).unwrap();
        let (bytes, inodes) = dir_usage(d.path());
        assert_eq!(inodes, 3, "the root, etc and one file (linked twice)");
        assert!(bytes >= 64 * 1024, "{bytes}");
        assert_eq!(dir_usage(&d.path().join("missing")), (0, 0));
        assert!(mountpoint_of(d.path()).is_absolute());
    }

    #[test]
    fn nano_cores_from_two_samples() {
        assert_eq!(
            nano_cores((1_000_000_000, 0), (3_000_000_000, 1_000_000_000)),
            Some(500_000_000)
        );
        assert_eq!(nano_cores((5, 10), (5, 20)), None);
        assert_eq!(nano_cores((1, 10), (5, 5)), None);
    }
}
