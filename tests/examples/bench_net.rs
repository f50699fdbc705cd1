//! Pod network setup + teardown latency, built-in network vs the CNI bridge path, measured
//! in-process through `kinglet-netns` (no daemon, no containers): per pod, a pinned network
//! namespace is made (not timed), then setup (address, veth, route, one hostPort) and teardown
//! are timed. Built-in: `Network::setup_pod`/`teardown_pod`; CNI: `Cni::add`/`del` with Debian's
//! bridge + host-local + portmap plugins. Prints p50/p99 over `--pods N` pods each. Run as root
//! by `scripts/bench-net.sh`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use std::path::{Path, PathBuf};

use kinglet_netns::{Cni, CniConfig, Network, NetworkConfig, PinRequest, PortMapping, Protocol};

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

type Times = [Vec<Duration>; 3];

/// Per pod: pin a netns, time `setup` then `teardown`, unpin. Returns (setup, teardown, total).
fn measure(
    dir: &Path,
    tag: &str,
    pods: usize,
    setup: impl Fn(&str, &Path, &[PortMapping]) -> Result<(), kinglet_netns::NetnsError>,
    teardown: impl Fn(&str) -> Result<(), kinglet_netns::NetnsError>,
) -> anyhow::Result<Times> {
    let mut t: Times = Default::default();
    for i in 0..pods {
        let pod = format!("{tag}{i:063x}");
        let ns_dir = dir.join(format!("pods/{tag}{i}"));
        let pinned = kinglet_netns::pin_namespaces(&PinRequest {
            dir: ns_dir.clone(),
            net: true,
            ipc: false,
            uts: false,
            hostname: None,
            sysctls: Vec::new(),
            userns: None,
        })?;
        let netns = pinned.net.expect("net pinned");
        let ports = [PortMapping {
            protocol: Protocol::Tcp,
            host_port: 30000 + i as u16,
            host_ip: None,
            container_port: 80,
        }];
        let t0 = Instant::now();
        setup(&pod, &netns, &ports)?;
        let t1 = Instant::now();
        teardown(&pod)?;
        let t2 = Instant::now();
        kinglet_netns::unpin_namespaces(&ns_dir)?;
        t[0].push(t1 - t0);
        t[1].push(t2 - t1);
        t[2].push(t2 - t0);
    }
    Ok(t)
}

fn report(mode: &str, mut t: Times, pods: usize) {
    for (name, v) in ["setup", "teardown", "setup+teardown"]
        .iter()
        .zip(t.iter_mut())
    {
        v.sort();
        println!(
            "{mode:<8} {name:<15} p50 {:7.2} ms  p99 {:7.2} ms  (n={pods})",
            pct(v, 0.5),
            pct(v, 0.99)
        );
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let pods: usize = args
        .iter()
        .position(|a| a == "--pods")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(100);
    let dir = tempfile::Builder::new()
        .prefix("kinglet-bench-net-")
        .tempdir()?;
    let net = Network::new(NetworkConfig {
        bridge: "kbench0".into(),
        cidr: "10.212.0.0/16".parse()?,
        table: "kinglet_bench".into(),
        ..NetworkConfig::with_defaults(dir.path().join("network"))
    })?;
    net.init(&HashSet::new())?;
    let builtin = measure(
        dir.path(),
        "b",
        pods,
        |pod, netns, ports| net.setup_pod(pod, netns, ports).map(drop),
        |pod| net.teardown_pod(pod),
    )?;
    net.delete_table()?;
    let _ = std::process::Command::new("ip")
        .args(["link", "del", "kbench0"])
        .status();
    report("builtin", builtin, pods);

    let conf = dir.path().join("cni-conf");
    std::fs::create_dir_all(&conf)?;
    std::fs::write(
        conf.join("10-bench.conflist"),
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "kinglet-bench",
            "plugins": [
                {"type": "bridge", "bridge": "kbenchc0", "isGateway": true, "ipMasq": true,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.211.0.0/16"}]],
                          "routes": [{"dst": "0.0.0.0/0"}],
                          "dataDir": dir.path().join("cni-ipam")}},
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        })
        .to_string(),
    )?;
    let cni = Cni::load(CniConfig {
        conf_dir: conf,
        bin_dir: PathBuf::from("/usr/lib/cni"),
        state_dir: dir.path().join("cni-state"),
        timeout: Duration::from_secs(30),
    })?
    .expect("conflist written above");
    let cni_times = measure(
        dir.path(),
        "c",
        pods,
        |pod, netns, ports| cni.add(pod, netns, ports).map(drop),
        |pod| cni.del(pod),
    )?;
    let _ = std::process::Command::new("ip")
        .args(["link", "del", "kbenchc0"])
        .status();
    report("cni", cni_times, pods);
    Ok(())
}
