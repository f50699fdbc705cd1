//! A container writing to stdout as fast as it can: the shim rotates its CRI log within
//! `container-log-max-size` × `container-log-max-files`, the container keeps running, and
//! another pod's log lines keep arriving; rotated files but the newest are gzip-compressed (by
//! the time the container is stopped). Prints the daemon's and the flooding shim's CPU %
//! and peak RSS, and the bytes written and kept. `KINGLET_FLOOD_SECS` (default 10) sets the
//! flood's length; `scripts/bench-logflood.sh` runs it for 60 s.

use std::path::Path;
use std::time::{Duration, Instant};

use kinglet_proto::v1;
use kinglet_tests::*;

const MAX_SIZE: u64 = 1024 * 1024;
const MAX_FILES: u64 = 3;

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // Fields 14 and 15 of stat(5), counted from the state (field 3) here.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The log file and its rotated files: (count, bytes).
fn log_files(dir: &Path, name: &str) -> (u64, u64) {
    let mut n = 0;
    let mut bytes = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with(name) {
            n += 1;
            bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
        }
    }
    (n, bytes)
}

fn shim_pid(d: &Daemon, container: &str) -> u32 {
    let p = d
        .run_root
        .join("containers")
        .join(container)
        .join("shim/shim.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
    v["shim_pid"].as_u64().unwrap() as u32
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_flood_stays_within_rotation_limits_and_other_pods_keep_logging() {
    let secs: u64 = std::env::var("KINGLET_FLOOD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let d = Daemon::start_with_config(&format!(
        "container-log-max-size = {MAX_SIZE}\ncontainer-log-max-files = {MAX_FILES}\n"
    ))
    .await;
    d.import_test_image().await;
    let mut rt = d.runtime().await;

    let flood_dir = d.dir.path().join("flood-logs");
    let flood_cfg = pod_config("flood", &flood_dir);
    let flood_pod = run_pod(&mut rt, &flood_cfg).await;
    let quiet_dir = d.dir.path().join("quiet-logs");
    let quiet_cfg = pod_config("quiet", &quiet_dir);
    let quiet_pod = run_pod(&mut rt, &quiet_cfg).await;
    let quiet = run_container(
        &mut rt,
        &quiet_pod,
        &quiet_cfg,
        sh_container(
            "ticker",
            "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done",
        ),
    )
    .await;
    let flood = run_container(
        &mut rt,
        &flood_pod,
        &flood_cfg,
        sh_container("yes", "yes 'flood flood flood flood flood flood flood'"),
    )
    .await;

    let (daemon, shim) = (d.pid(), shim_pid(&d, &flood));
    let (d0, s0) = (cpu_ticks(daemon), cpu_ticks(shim));
    let (mut daemon_rss, mut shim_rss, mut peak_bytes, mut peak_files) = (0, 0, 0, 0);
    let quiet_log = quiet_dir.join("ticker.log");
    let ticks = || {
        std::fs::read_to_string(&quiet_log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(" stdout F tick "))
            .count()
    };
    let start = Instant::now();
    let mut ticks_seen = Vec::new();
    while start.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        daemon_rss = daemon_rss.max(rss_kib(daemon));
        shim_rss = shim_rss.max(rss_kib(shim));
        let (n, bytes) = log_files(&flood_dir, "yes.log");
        peak_files = peak_files.max(n);
        peak_bytes = peak_bytes.max(bytes);
        ticks_seen.push(ticks());
    }
    let elapsed = start.elapsed().as_secs_f64();
    let hz = 100.0; // USER_HZ on Linux
    let cpu = |t0: u64, t1: u64| (t1 - t0) as f64 / hz / elapsed * 100.0;
    let (daemon_cpu, shim_cpu) = (cpu(d0, cpu_ticks(daemon)), cpu(s0, cpu_ticks(shim)));
    let st = status(&mut rt, &flood).await;
    let rotated_away = std::fs::read_dir(&flood_dir).unwrap().count();
    println!(
        "log flood {secs} s: daemon CPU {daemon_cpu:.1} % peak RSS {} KiB; flooding shim CPU \
         {shim_cpu:.1} % peak RSS {} KiB; log files kept: peak {peak_files} files, {peak_bytes} \
         bytes (limit {MAX_FILES} x {MAX_SIZE} = {} bytes); quiet pod: {} lines",
        daemon_rss,
        shim_rss,
        MAX_FILES * MAX_SIZE,
        ticks()
    );

    assert_eq!(
        st.state,
        v1::ContainerState::ContainerRunning as i32,
        "the flooding container keeps running"
    );
    assert!(rotated_away <= MAX_FILES as usize, "{rotated_away} files");
    assert!(peak_files <= MAX_FILES, "{peak_files} log files at once");
    // The shim rotates before a write would pass the size: no file is larger.
    assert!(
        peak_bytes <= MAX_FILES * MAX_SIZE,
        "{peak_bytes} bytes kept"
    );
    assert!(
        peak_files == MAX_FILES,
        "the flood filled every file (it rotated)"
    );
    // The quiet pod's lines arrive all along: at 5 a second, more than one a second in each
    // half of the flood, however loaded the host.
    let half = ticks_seen.len() / 2;
    let (first, last) = (ticks_seen[half], *ticks_seen.last().unwrap());
    assert!(
        first as f64 >= secs as f64 / 2.0 && (last - first) as f64 >= secs as f64 / 2.0,
        "quiet pod's lines: {ticks_seen:?}"
    );
    for c in [&flood, &quiet] {
        rt.stop_container(v1::StopContainerRequest {
            container_id: c.to_string(),
            timeout: 0,
        })
        .await
        .unwrap();
    }
    // Stopped, the shim has finished compressing: as the kubelet leaves them, every rotated
    // file but the newest is gzip-compressed (whole CRI entries), the newest is not.
    let mut rotated: Vec<_> = std::fs::read_dir(&flood_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("yes.log."))
        .collect();
    rotated.sort();
    assert_eq!(rotated.len(), MAX_FILES as usize - 1, "{rotated:?}");
    let (newest, older) = rotated.split_last().unwrap();
    assert!(!newest.to_string_lossy().ends_with(".gz"), "{newest:?}");
    for gz in older {
        assert!(
            gz.to_string_lossy().ends_with(".gz"),
            "{gz:?} not compressed"
        );
        let text = sh("gzip", &["-dc", gz.to_str().unwrap()]);
        let n = text.lines().count();
        assert!(
            n > 1000
                && text.len() as u64 <= MAX_SIZE
                && text
                    .lines()
                    .all(|l| l.contains(" stdout F flood flood ") || l.contains(" stdout P ")),
            "{gz:?}: {n} lines, {} bytes",
            text.len()
        );
    }
    remove_pod(&mut rt, &flood_pod).await;
    remove_pod(&mut rt, &quiet_pod).await;
    d.shutdown().await;
}
