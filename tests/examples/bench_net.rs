//! Pod network setup + teardown latency of the built-in network, measured in-process through
//! `kinglet-netns` (no daemon, no containers): per pod, a pinned network namespace is made
//! (not timed), then `setup_pod` (address, veth, route, one hostPort) and `teardown_pod` are
//! timed. Prints p50/p99 over `--pods N` pods. Run as root by `scripts/bench-net.sh`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use kinglet_netns::{Network, NetworkConfig, PinRequest, PortMapping, Protocol};

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
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
    let (mut setup, mut teardown, mut total) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..pods {
        let pod = format!("{i:064x}");
        let ns_dir = dir.path().join(format!("pods/{i}"));
        let pinned = kinglet_netns::pin_namespaces(&PinRequest {
            dir: ns_dir.clone(),
            net: true,
            ipc: false,
            uts: false,
            hostname: None,
        })?;
        let netns = pinned.net.expect("net pinned");
        let ports = [PortMapping {
            protocol: Protocol::Tcp,
            host_ip: None,
            host_port: 30000 + i as u16,
            container_port: 80,
        }];
        let t0 = Instant::now();
        net.setup_pod(&pod, &netns, &ports)?;
        let t1 = Instant::now();
        net.teardown_pod(&pod)?;
        let t2 = Instant::now();
        kinglet_netns::unpin_namespaces(&ns_dir)?;
        setup.push(t1 - t0);
        teardown.push(t2 - t1);
        total.push(t2 - t0);
    }
    net.delete_table()?;
    let _ = std::process::Command::new("ip")
        .args(["link", "del", "kbench0"])
        .status();
    for (name, v) in [
        ("setup", &mut setup),
        ("teardown", &mut teardown),
        ("setup+teardown", &mut total),
    ] {
        v.sort();
        println!(
            "builtin {name:<15} p50 {:7.2} ms  p99 {:7.2} ms  (n={pods})",
            pct(v, 0.5),
            pct(v, 0.99)
        );
    }
    Ok(())
}
