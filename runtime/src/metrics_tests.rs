//! Unit tests of the cgroup, /proc and net/dev parsing behind the CRI metrics.

use super::*;

fn files<'a>(pairs: &[(&'a str, &str)]) -> HashMap<&'a str, String> {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

fn value(samples: &[Sample], name: &str, extra: &[&str]) -> Option<u64> {
    samples
        .iter()
        .find(|s| s.name == name && s.extra == extra)
        .map(|s| s.value)
}

#[test]
fn every_descriptor_has_help_and_labels_and_a_unique_name() {
    let d = descriptors();
    let mut names: Vec<&str> = d.iter().map(|d| d.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), d.len());
    assert!(d
        .iter()
        .all(|d| !d.help.is_empty() && d.label_keys.len() >= BASE_LABELS.len()));
}

#[test]
fn cgroup_v1_files_become_cadvisor_metrics() {
    let f = files(&[
        ("cpuacct.usage", "2500000000\n"),
        ("cpuacct.stat", "user 150\nsystem 60\n"),
        (
            "cpu.stat",
            "nr_periods 10\nnr_throttled 3\nthrottled_time 2000000000\n",
        ),
        ("cpu.cfs_period_us", "100000\n"),
        ("cpu.cfs_quota_us", "-1\n"),
        ("cpu.shares", "1024\n"),
        (
            "memory.stat",
            "total_cache 4096\ntotal_rss 8192\ntotal_mapped_file 512\ntotal_inactive_file 1000\n\
             total_pgfault 70\ntotal_pgmajfault 2\npgfault 60\npgmajfault 1\n",
        ),
        ("memory.usage_in_bytes", "20000\n"),
        ("memory.memsw.usage_in_bytes", "20500\n"),
        ("memory.max_usage_in_bytes", "30000\n"),
        ("memory.failcnt", "4\n"),
        ("memory.kmem.usage_in_bytes", "700\n"),
        (
            "memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        ),
        ("memory.limit_in_bytes", "67108864\n"),
        ("memory.memsw.limit_in_bytes", "9223372036854771712\n"),
        ("pids.max", "max\n"),
        (
            "blkio.throttle.io_service_bytes_recursive",
            "8:0 Read 4096\n8:0 Write 8192\nTotal 12288\n",
        ),
        (
            "blkio.throttle.io_serviced_recursive",
            "8:0 Read 1\n8:0 Write 2\n",
        ),
    ]);
    let got = cgroup_v1(&f);
    let v = |n: &str| value(&got, n, &[]);
    assert_eq!(
        value(&got, "container_cpu_usage_seconds_total", &["total"]),
        Some(2)
    );
    assert_eq!(
        (
            v("container_cpu_user_seconds_total"),
            v("container_cpu_system_seconds_total")
        ),
        (Some(1), Some(0))
    );
    assert_eq!(v("container_cpu_cfs_throttled_periods_total"), Some(3));
    assert_eq!(v("container_cpu_cfs_throttled_seconds_total"), Some(2));
    assert_eq!(v("container_memory_working_set_bytes"), Some(19_000));
    assert_eq!(v("container_memory_swap"), Some(500));
    assert_eq!(v("container_memory_kernel_usage"), Some(700));
    assert_eq!(v("container_oom_events_total"), Some(1));
    assert_eq!(
        value(
            &got,
            "container_memory_failures_total",
            &["pgmajfault", "hierarchy"]
        ),
        Some(2)
    );
    assert_eq!(
        value(
            &got,
            "container_memory_failures_total",
            &["pgfault", "container"]
        ),
        Some(60)
    );
    // No quota, no swap limit, no pids limit: quota left out, the others 0.
    assert_eq!(v("container_spec_cpu_quota"), None);
    assert_eq!(v("container_spec_memory_swap_limit_bytes"), Some(0));
    assert_eq!(v("container_spec_memory_limit_bytes"), Some(64 << 20));
    assert_eq!(v("container_threads_max"), Some(0));
    assert_eq!(
        value(&got, "container_fs_writes_bytes_total", &["8:0"]),
        Some(8192)
    );
    assert_eq!(value(&got, "container_fs_reads_total", &["8:0"]), Some(1));
    assert_eq!(
        value(
            &got,
            "container_blkio_device_usage_total",
            &["8:0", "8", "0", "Read"]
        ),
        Some(4096)
    );
}

#[test]
fn cgroup_v2_files_become_cadvisor_metrics() {
    let f = files(&[
        ("cpu.stat", "usage_usec 3000000\nuser_usec 2000000\nsystem_usec 1000000\nnr_periods 5\nnr_throttled 1\nthrottled_usec 1000000\n"),
        ("cpu.max", "20000 100000\n"),
        ("cpu.weight", "100\n"),
        ("memory.stat", "anon 100\nfile 200\nfile_mapped 30\nkernel 40\ninactive_file 50\npgfault 9\npgmajfault 1\n"),
        ("memory.current", "1000\n"),
        ("memory.peak", "2000\n"),
        ("memory.events", "low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\n"),
        ("memory.max", "max\n"),
        ("pids.max", "1024\n"),
        ("io.stat", "8:16 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n"),
    ]);
    let got = cgroup_v2(&f);
    let v = |n: &str| value(&got, n, &[]);
    assert_eq!(
        value(&got, "container_cpu_usage_seconds_total", &["total"]),
        Some(3)
    );
    assert_eq!(v("container_spec_cpu_quota"), Some(20_000));
    assert_eq!(v("container_spec_cpu_period"), Some(100_000));
    // cpu.weight 100 is the kubelet's conversion of 1024 shares (rounded down).
    assert_eq!(
        v("container_spec_cpu_shares"),
        Some(2 + 99 * 262_142 / 9999)
    );
    assert_eq!(v("container_memory_working_set_bytes"), Some(950));
    assert_eq!(
        (
            v("container_memory_failcnt"),
            v("container_memory_max_usage_bytes")
        ),
        (Some(7), Some(2000))
    );
    assert_eq!(v("container_spec_memory_limit_bytes"), Some(0));
    assert_eq!(v("container_threads_max"), Some(1024));
    assert_eq!(value(&got, "container_fs_writes_total", &["8:16"]), Some(2));
    // Nothing readable: nothing reported.
    assert!(cgroup_v2(&HashMap::new()).is_empty());
}

#[test]
fn network_counters_per_interface_without_loopback() {
    let text = "Inter-|   Receive                            |  Transmit\n \
        face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
        lo: 100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n  \
        eth0: 5000 40 1 2 0 0 0 0 3000 30 3 4 0 0 0 0\n";
    let got = network(text);
    assert_eq!(got.len(), 8);
    assert_eq!(
        value(
            &got,
            "container_network_receive_packets_dropped_total",
            &["eth0"]
        ),
        Some(2)
    );
    assert_eq!(
        value(&got, "container_network_transmit_bytes_total", &["eth0"]),
        Some(3000)
    );
}

#[test]
fn processes_count_threads_descriptors_and_sockets() {
    let me = std::process::id();
    let got = processes(Path::new("/proc"), &[me]);
    assert_eq!(value(&got, "container_processes", &[]), Some(1));
    assert!(value(&got, "container_threads", &[]).unwrap() >= 1);
    assert!(value(&got, "container_file_descriptors", &[]).unwrap() >= 3);
}

#[test]
fn metrics_carry_the_base_labels_then_their_own() {
    let base: Vec<String> = ["c", "id", "img", "id", "ns", "pod"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let m = to_metrics(network("eth0: 1 2 3 4 0 0 0 0 5 6 7 8 0 0 0 0\n"), &base, 7);
    assert_eq!(m[0].label_values.len(), BASE_LABELS.len() + 1);
    assert_eq!(m[0].metric_type, v1::MetricType::Counter as i32);
    assert_eq!(m[0].timestamp, 7);
}
