//! CRI metrics (ListMetricDescriptors, ListPodSandboxMetrics): cAdvisor's `container_*`
//! metrics, which the kubelet serves on `/metrics/cadvisor` when its CRI stats provider asks
//! the runtime for them. What they are made of, all read (never invented):
//! - CPU, memory, pids and block I/O from the container's cgroup (v1 controllers or v2), the
//!   spec metrics (period, shares, limits) from the limits set in that cgroup;
//! - threads, descriptors and sockets from `/proc/<pid>` of the processes in the cgroup;
//! - the writable layer's usage, and its file system's size and inodes (`statvfs`);
//! - network counters from the pod's network namespace (`/proc/<pid>/net/dev`).
//!
//! Every metric carries cAdvisor's labels `container, id, image, name, namespace, pod`, plus
//! its own (`cpu`, `interface`, `device`, `failure_type`/`scope`, ...). Integer values: the
//! CRI carries a `uint64`, so `_seconds` metrics are whole seconds. A metric whose source is
//! missing on a host (no swap accounting, no blkio stats) is left out, not reported as 0.
//! Pure parsing here; reading files is in [`collect`], called on the blocking pool.

use std::collections::HashMap;
use std::path::Path;

use kinglet_proto::v1;

use super::stats::parse_flat_keyed;

/// The labels of every metric, in order.
pub const BASE_LABELS: &[&str] = &["container", "id", "image", "name", "namespace", "pod"];

/// One metric Kinglet reports: name, help, labels beyond [`BASE_LABELS`], counter or gauge.
pub struct Descriptor {
    pub name: &'static str,
    pub help: &'static str,
    pub extra: &'static [&'static str],
    pub counter: bool,
}

const fn d(
    name: &'static str,
    help: &'static str,
    extra: &'static [&'static str],
    counter: bool,
) -> Descriptor {
    Descriptor {
        name,
        help,
        extra,
        counter,
    }
}

const DEV: &[&str] = &["device"];
const IFACE: &[&str] = &["interface"];

/// Everything ListPodSandboxMetrics can report.
#[rustfmt::skip]
pub const DESCRIPTORS: &[Descriptor] = &[
    d("container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.", &["cpu"], true),
    d("container_cpu_user_seconds_total", "Cumulative user cpu time consumed in seconds.", &[], true),
    d("container_cpu_system_seconds_total", "Cumulative system cpu time consumed in seconds.", &[], true),
    d("container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", &[], true),
    d("container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", &[], true),
    d("container_cpu_cfs_throttled_seconds_total", "Total time duration the container has been throttled, in seconds.", &[], true),
    d("container_memory_cache", "Number of bytes of page cache memory.", &[], false),
    d("container_memory_rss", "Size of RSS in bytes.", &[], false),
    d("container_memory_mapped_file", "Size of memory mapped files in bytes.", &[], false),
    d("container_memory_swap", "Container swap usage in bytes.", &[], false),
    d("container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed.", &[], false),
    d("container_memory_working_set_bytes", "Current working set in bytes.", &[], false),
    d("container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes.", &[], false),
    d("container_memory_failcnt", "Number of memory usage hits limits.", &[], true),
    d("container_memory_kernel_usage", "Size of kernel memory allocated in bytes.", &[], false),
    d("container_memory_failures_total", "Cumulative count of memory allocation failures.", &["failure_type", "scope"], true),
    d("container_oom_events_total", "Count of out of memory events observed for the container.", &[], true),
    d("container_processes", "Number of processes running inside the container.", &[], false),
    d("container_threads", "Number of threads running inside the container.", &[], false),
    d("container_threads_max", "Maximum number of threads allowed inside the container, 0 if unlimited.", &[], false),
    d("container_file_descriptors", "Number of open file descriptors for the container.", &[], false),
    d("container_sockets", "Number of open sockets for the container.", &[], false),
    d("container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem.", DEV, false),
    d("container_fs_limit_bytes", "Number of bytes that can be consumed by the container on this filesystem.", DEV, false),
    d("container_fs_inodes_free", "Number of available Inodes.", DEV, false),
    d("container_fs_inodes_total", "Number of Inodes.", DEV, false),
    d("container_fs_reads_bytes_total", "Cumulative count of bytes read.", DEV, true),
    d("container_fs_reads_total", "Cumulative count of reads completed.", DEV, true),
    d("container_fs_writes_bytes_total", "Cumulative count of bytes written.", DEV, true),
    d("container_fs_writes_total", "Cumulative count of writes completed.", DEV, true),
    d("container_blkio_device_usage_total", "Blkio device bytes usage.", &["device", "major", "minor", "operation"], true),
    d("container_spec_cpu_period", "CPU period of the container.", &[], false),
    d("container_spec_cpu_quota", "CPU quota of the container.", &[], false),
    d("container_spec_cpu_shares", "CPU share of the container.", &[], false),
    d("container_spec_memory_limit_bytes", "Memory limit for the container.", &[], false),
    d("container_spec_memory_swap_limit_bytes", "Memory swap limit for the container.", &[], false),
    d("container_start_time_seconds", "Start time of the container since unix epoch in seconds.", &[], false),
    d("container_last_seen", "Last time a container was seen by the exporter.", &[], false),
    d("container_network_receive_bytes_total", "Cumulative count of bytes received.", IFACE, true),
    d("container_network_receive_packets_total", "Cumulative count of packets received.", IFACE, true),
    d("container_network_receive_errors_total", "Cumulative count of errors encountered while receiving.", IFACE, true),
    d("container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving.", IFACE, true),
    d("container_network_transmit_bytes_total", "Cumulative count of bytes transmitted.", IFACE, true),
    d("container_network_transmit_packets_total", "Cumulative count of packets transmitted.", IFACE, true),
    d("container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting.", IFACE, true),
    d("container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting.", IFACE, true),
];

/// ListMetricDescriptors' answer.
pub fn descriptors() -> Vec<v1::MetricDescriptor> {
    DESCRIPTORS
        .iter()
        .map(|d| v1::MetricDescriptor {
            name: d.name.into(),
            help: d.help.into(),
            label_keys: BASE_LABELS
                .iter()
                .chain(d.extra)
                .map(|s| s.to_string())
                .collect(),
        })
        .collect()
}

/// One value of one metric, with the values of its own labels (after the base ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub name: &'static str,
    pub extra: Vec<String>,
    pub value: u64,
}

fn s(name: &'static str, value: u64) -> Sample {
    Sample {
        name,
        extra: Vec::new(),
        value,
    }
}

fn sx(name: &'static str, extra: &[&str], value: u64) -> Sample {
    Sample {
        name,
        extra: extra.iter().map(|e| e.to_string()).collect(),
        value,
    }
}

/// Turn samples into CRI metrics with the base label values `base` (in [`BASE_LABELS`]
/// order), stamped `timestamp` (ns).
pub fn to_metrics(samples: Vec<Sample>, base: &[String], timestamp: i64) -> Vec<v1::Metric> {
    samples
        .into_iter()
        .filter_map(|smp| {
            let desc = DESCRIPTORS.iter().find(|d| d.name == smp.name)?;
            Some(v1::Metric {
                name: smp.name.into(),
                timestamp,
                metric_type: if desc.counter {
                    v1::MetricType::Counter
                } else {
                    v1::MetricType::Gauge
                } as i32,
                label_values: base.iter().cloned().chain(smp.extra).collect(),
                value: Some(v1::UInt64Value { value: smp.value }),
            })
        })
        .collect()
}

/// A cgroup limit file's value; "max" and v1's "unlimited" (a huge number) are `0`.
fn limit(text: &str) -> Option<u64> {
    let t = text.trim();
    if t == "max" {
        return Some(0);
    }
    let v: i64 = t.parse().ok()?;
    // v1 writes "no limit" as PAGE_COUNTER_MAX pages or -1.
    Some(if !(0..0x7FFF_FFFF_FFFF_F000).contains(&v) {
        0
    } else {
        v as u64
    })
}

/// Memory and CPU samples from cgroup v1 files, given by name (file → content).
pub fn cgroup_v1(f: &HashMap<&str, String>) -> Vec<Sample> {
    let mut out = Vec::new();
    let num = |k: &str| f.get(k).and_then(|t| t.trim().parse::<u64>().ok());
    if let Some(ns) = num("cpuacct.usage") {
        out.push(sx(
            "container_cpu_usage_seconds_total",
            &["total"],
            ns / 1_000_000_000,
        ));
    }
    if let Some(st) = f.get("cpuacct.stat").map(|t| parse_flat_keyed(t)) {
        // USER_HZ ticks (100 a second on Linux).
        for (k, name) in [
            ("user", "container_cpu_user_seconds_total"),
            ("system", "container_cpu_system_seconds_total"),
        ] {
            if let Some(t) = st.get(k) {
                out.push(s(name, t / 100));
            }
        }
    }
    if let Some(st) = f.get("cpu.stat").map(|t| parse_flat_keyed(t)) {
        cfs(&mut out, &st, "throttled_time", 1_000_000_000);
    }
    let st = f
        .get("memory.stat")
        .map(|t| parse_flat_keyed(t))
        .unwrap_or_default();
    let get = |k: &str| st.get(k).copied();
    let usage = num("memory.usage_in_bytes");
    for (k, name) in [
        ("total_cache", "container_memory_cache"),
        ("total_rss", "container_memory_rss"),
        ("total_mapped_file", "container_memory_mapped_file"),
    ] {
        if let Some(v) = get(k) {
            out.push(s(name, v));
        }
    }
    if let (Some(sw), Some(u)) = (num("memory.memsw.usage_in_bytes"), usage) {
        out.push(s("container_memory_swap", sw.saturating_sub(u)));
    }
    if let Some(u) = usage {
        out.push(s("container_memory_usage_bytes", u));
        let inactive = get("total_inactive_file").unwrap_or(0);
        out.push(s(
            "container_memory_working_set_bytes",
            u.saturating_sub(inactive),
        ));
    }
    for (k, name) in [
        (
            "memory.max_usage_in_bytes",
            "container_memory_max_usage_bytes",
        ),
        ("memory.failcnt", "container_memory_failcnt"),
        (
            "memory.kmem.usage_in_bytes",
            "container_memory_kernel_usage",
        ),
    ] {
        if let Some(v) = num(k) {
            out.push(s(name, v));
        }
    }
    faults(
        &mut out,
        get("total_pgfault"),
        get("total_pgmajfault"),
        get("pgfault"),
        get("pgmajfault"),
    );
    if let Some(oom) = f.get("memory.oom_control").map(|t| parse_flat_keyed(t)) {
        if let Some(v) = oom.get("oom_kill") {
            out.push(s("container_oom_events_total", *v));
        }
    }
    spec_limits(
        &mut out,
        f.get("cpu.cfs_period_us"),
        f.get("cpu.cfs_quota_us"),
        num("cpu.shares"),
        f.get("memory.limit_in_bytes"),
        f.get("memory.memsw.limit_in_bytes"),
    );
    if let Some(v) = f.get("pids.max").and_then(|t| limit(t)) {
        out.push(s("container_threads_max", v));
    }
    if let Some(t) = f.get("blkio.throttle.io_service_bytes_recursive") {
        blkio_v1(&mut out, t, f.get("blkio.throttle.io_serviced_recursive"));
    }
    out
}

/// Memory and CPU samples from cgroup v2 files, given by name.
pub fn cgroup_v2(f: &HashMap<&str, String>) -> Vec<Sample> {
    let mut out = Vec::new();
    let num = |k: &str| f.get(k).and_then(|t| t.trim().parse::<u64>().ok());
    if let Some(st) = f.get("cpu.stat").map(|t| parse_flat_keyed(t)) {
        for (k, name, extra) in [
            (
                "usage_usec",
                "container_cpu_usage_seconds_total",
                &["total"][..],
            ),
            ("user_usec", "container_cpu_user_seconds_total", &[][..]),
            ("system_usec", "container_cpu_system_seconds_total", &[][..]),
        ] {
            if let Some(us) = st.get(k) {
                out.push(sx(name, extra, us / 1_000_000));
            }
        }
        cfs(&mut out, &st, "throttled_usec", 1_000_000);
    }
    let st = f
        .get("memory.stat")
        .map(|t| parse_flat_keyed(t))
        .unwrap_or_default();
    let get = |k: &str| st.get(k).copied();
    for (k, name) in [
        ("file", "container_memory_cache"),
        ("anon", "container_memory_rss"),
        ("file_mapped", "container_memory_mapped_file"),
        ("kernel", "container_memory_kernel_usage"),
    ] {
        if let Some(v) = get(k) {
            out.push(s(name, v));
        }
    }
    if let Some(v) = num("memory.swap.current") {
        out.push(s("container_memory_swap", v));
    }
    if let Some(u) = num("memory.current") {
        out.push(s("container_memory_usage_bytes", u));
        let inactive = get("inactive_file").unwrap_or(0);
        out.push(s(
            "container_memory_working_set_bytes",
            u.saturating_sub(inactive),
        ));
    }
    if let Some(v) = num("memory.peak") {
        out.push(s("container_memory_max_usage_bytes", v));
    }
    if let Some(ev) = f.get("memory.events").map(|t| parse_flat_keyed(t)) {
        if let Some(v) = ev.get("max") {
            out.push(s("container_memory_failcnt", *v));
        }
        if let Some(v) = ev.get("oom_kill") {
            out.push(s("container_oom_events_total", *v));
        }
    }
    // v2 has no per-cgroup-only counters: the hierarchy's stand for both scopes.
    faults(
        &mut out,
        get("pgfault"),
        get("pgmajfault"),
        get("pgfault"),
        get("pgmajfault"),
    );
    let (period, quota) = match f
        .get("cpu.max")
        .map(|t| t.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
    {
        Some(v) if v.len() == 2 => (Some(v[1].clone()), Some(v[0].clone())),
        _ => (None, None),
    };
    // cpu.weight 1..10000 back to shares 2..262144, as the kubelet converts them.
    let shares = num("cpu.weight").map(|w| 2 + (w.saturating_sub(1)) * 262_142 / 9999);
    spec_limits(
        &mut out,
        period.as_ref(),
        quota.as_ref(),
        shares,
        f.get("memory.max"),
        f.get("memory.swap.max"),
    );
    if let Some(v) = f.get("pids.max").and_then(|t| limit(t)) {
        out.push(s("container_threads_max", v));
    }
    if let Some(t) = f.get("io.stat") {
        io_v2(&mut out, t);
    }
    out
}

fn cfs(out: &mut Vec<Sample>, st: &HashMap<&str, u64>, throttled_key: &str, per_second: u64) {
    for (k, name) in [
        ("nr_periods", "container_cpu_cfs_periods_total"),
        ("nr_throttled", "container_cpu_cfs_throttled_periods_total"),
    ] {
        if let Some(v) = st.get(k) {
            out.push(s(name, *v));
        }
    }
    if let Some(v) = st.get(throttled_key) {
        out.push(s(
            "container_cpu_cfs_throttled_seconds_total",
            v / per_second,
        ));
    }
}

fn faults(
    out: &mut Vec<Sample>,
    hier_pgfault: Option<u64>,
    hier_pgmajfault: Option<u64>,
    own_pgfault: Option<u64>,
    own_pgmajfault: Option<u64>,
) {
    for (scope, pgfault, pgmajfault) in [
        ("hierarchy", hier_pgfault, hier_pgmajfault),
        ("container", own_pgfault, own_pgmajfault),
    ] {
        for (kind, v) in [("pgfault", pgfault), ("pgmajfault", pgmajfault)] {
            if let Some(v) = v {
                out.push(sx("container_memory_failures_total", &[kind, scope], v));
            }
        }
    }
}

fn spec_limits(
    out: &mut Vec<Sample>,
    period: Option<&String>,
    quota: Option<&String>,
    shares: Option<u64>,
    memory: Option<&String>,
    swap: Option<&String>,
) {
    if let Some(v) = period.and_then(|t| t.trim().parse().ok()) {
        out.push(s("container_spec_cpu_period", v));
    }
    // No quota ("max", -1): cAdvisor leaves the metric out.
    if let Some(v) = quota.and_then(|t| limit(t)).filter(|v| *v > 0) {
        out.push(s("container_spec_cpu_quota", v));
    }
    if let Some(v) = shares {
        out.push(s("container_spec_cpu_shares", v));
    }
    if let Some(v) = memory.and_then(|t| limit(t)) {
        out.push(s("container_spec_memory_limit_bytes", v));
    }
    if let Some(v) = swap.and_then(|t| limit(t)) {
        out.push(s("container_spec_memory_swap_limit_bytes", v));
    }
}

/// v1 `blkio.throttle.io_service_bytes_recursive` (+ `io_serviced_recursive`):
/// `MAJ:MIN Read|Write|... N` lines.
fn blkio_v1(out: &mut Vec<Sample>, bytes: &str, ops: Option<&String>) {
    let parse = |t: &str| -> Vec<(String, String, u64)> {
        t.lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                let (dev, op, v) = (it.next()?, it.next()?, it.next()?.parse().ok()?);
                dev.contains(':')
                    .then(|| (dev.to_owned(), op.to_owned(), v))
            })
            .collect()
    };
    for (dev, op, v) in parse(bytes) {
        let (maj, min) = dev.split_once(':').unwrap_or(("", ""));
        out.push(sx(
            "container_blkio_device_usage_total",
            &[&dev, maj, min, &op],
            v,
        ));
        match op.as_str() {
            "Read" => out.push(sx("container_fs_reads_bytes_total", &[&dev], v)),
            "Write" => out.push(sx("container_fs_writes_bytes_total", &[&dev], v)),
            _ => {}
        }
    }
    for (dev, op, v) in ops.map(|t| parse(t)).unwrap_or_default() {
        match op.as_str() {
            "Read" => out.push(sx("container_fs_reads_total", &[&dev], v)),
            "Write" => out.push(sx("container_fs_writes_total", &[&dev], v)),
            _ => {}
        }
    }
}

/// v2 `io.stat`: `MAJ:MIN rbytes=N wbytes=N rios=N wios=N ...` lines.
fn io_v2(out: &mut Vec<Sample>, text: &str) {
    for l in text.lines() {
        let mut it = l.split_whitespace();
        let Some(dev) = it.next() else { continue };
        let (maj, min) = dev.split_once(':').unwrap_or(("", ""));
        for kv in it {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(v) = v.parse::<u64>() else { continue };
            let (name, op) = match k {
                "rbytes" => ("container_fs_reads_bytes_total", "Read"),
                "wbytes" => ("container_fs_writes_bytes_total", "Write"),
                "rios" => ("container_fs_reads_total", ""),
                "wios" => ("container_fs_writes_total", ""),
                _ => continue,
            };
            out.push(sx(name, &[dev], v));
            if !op.is_empty() {
                out.push(sx(
                    "container_blkio_device_usage_total",
                    &[dev, maj, min, op],
                    v,
                ));
            }
        }
    }
}

/// Per-process samples: threads, descriptors and sockets of the processes `pids`, from
/// `/proc` under `proc_root`.
pub fn processes(proc_root: &Path, pids: &[u32]) -> Vec<Sample> {
    let (mut threads, mut fds, mut sockets) = (0u64, 0u64, 0u64);
    for pid in pids {
        let dir = proc_root.join(pid.to_string());
        if let Ok(st) = std::fs::read_to_string(dir.join("status")) {
            threads += st
                .lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
        }
        if let Ok(rd) = std::fs::read_dir(dir.join("fd")) {
            for e in rd.flatten() {
                fds += 1;
                if std::fs::read_link(e.path())
                    .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"))
                {
                    sockets += 1;
                }
            }
        }
    }
    vec![
        s("container_processes", pids.len() as u64),
        s("container_threads", threads),
        s("container_file_descriptors", fds),
        s("container_sockets", sockets),
    ]
}

/// Network samples from a `/proc/<pid>/net/dev` text (loopback left out).
pub fn network(net_dev: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for l in net_dev.lines() {
        let Some((name, rest)) = l.split_once(':') else {
            continue;
        };
        let name = name.trim();
        let f: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        if name == "lo" || f.len() < 16 {
            continue;
        }
        for (i, metric) in [
            (0, "container_network_receive_bytes_total"),
            (1, "container_network_receive_packets_total"),
            (2, "container_network_receive_errors_total"),
            (3, "container_network_receive_packets_dropped_total"),
            (8, "container_network_transmit_bytes_total"),
            (9, "container_network_transmit_packets_total"),
            (10, "container_network_transmit_errors_total"),
            (11, "container_network_transmit_packets_dropped_total"),
        ] {
            out.push(sx(metric, &[name], f[i]));
        }
    }
    out
}

/// The writable layer's usage on its file system `device`, with that file system's size
/// and inodes (`statvfs` of `mountpoint`).
pub fn filesystem(device: &str, used_bytes: u64, mountpoint: &Path) -> Vec<Sample> {
    let mut out = vec![sx("container_fs_usage_bytes", &[device], used_bytes)];
    if let Ok(st) = nix::sys::statvfs::statvfs(mountpoint) {
        // fsblkcnt_t and fsfilcnt_t are u64 on the 64-bit Linux targets Kinglet builds for.
        let (frag, blocks, files, free): (u64, u64, u64, u64) =
            (st.fragment_size(), st.blocks(), st.files(), st.files_free());
        out.push(sx("container_fs_limit_bytes", &[device], blocks * frag));
        out.push(sx("container_fs_inodes_total", &[device], files));
        out.push(sx("container_fs_inodes_free", &[device], free));
    }
    out
}

const V1_FILES: &[(&str, &str)] = &[
    ("cpuacct", "cpuacct.usage"),
    ("cpuacct", "cpuacct.stat"),
    ("cpu", "cpu.stat"),
    ("cpu", "cpu.cfs_period_us"),
    ("cpu", "cpu.cfs_quota_us"),
    ("cpu", "cpu.shares"),
    ("memory", "memory.stat"),
    ("memory", "memory.usage_in_bytes"),
    ("memory", "memory.memsw.usage_in_bytes"),
    ("memory", "memory.max_usage_in_bytes"),
    ("memory", "memory.failcnt"),
    ("memory", "memory.kmem.usage_in_bytes"),
    ("memory", "memory.oom_control"),
    ("memory", "memory.limit_in_bytes"),
    ("memory", "memory.memsw.limit_in_bytes"),
    ("pids", "pids.max"),
    ("blkio", "blkio.throttle.io_service_bytes_recursive"),
    ("blkio", "blkio.throttle.io_serviced_recursive"),
];

const V2_FILES: &[&str] = &[
    "cpu.stat",
    "cpu.max",
    "cpu.weight",
    "memory.stat",
    "memory.current",
    "memory.swap.current",
    "memory.peak",
    "memory.events",
    "memory.max",
    "memory.swap.max",
    "pids.max",
    "io.stat",
];

/// Read the cgroup `rel` under `cgroup_root` (v2, else the v1 controllers): its samples and
/// the processes in it and below. A cgroup that is gone gives nothing.
pub fn collect_cgroup(cgroup_root: &Path, rel: &str) -> (Vec<Sample>, Vec<u32>) {
    let rel = rel.trim_start_matches('/');
    let read = |p: &Path| std::fs::read_to_string(p).ok();
    if super::stats::is_v2(cgroup_root) {
        let dir = cgroup_root.join(rel);
        let files: HashMap<&str, String> = V2_FILES
            .iter()
            .filter_map(|f| Some((*f, read(&dir.join(f))?)))
            .collect();
        (cgroup_v2(&files), procs(&dir))
    } else {
        let files: HashMap<&str, String> = V1_FILES
            .iter()
            .filter_map(|(c, f)| Some((*f, read(&cgroup_root.join(c).join(rel).join(f))?)))
            .collect();
        (
            cgroup_v1(&files),
            procs(&cgroup_root.join("memory").join(rel)),
        )
    }
}

/// The processes in `cgroup.procs` of `dir` and every cgroup below it.
fn procs(dir: &Path) -> Vec<u32> {
    let mut out: Vec<u32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(procs(&e.path()));
            }
        }
    }
    out
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
