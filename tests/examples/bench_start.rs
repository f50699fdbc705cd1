//! Pod start latency through the CRI socket: RunPodSandbox + CreateContainer + StartContainer
//! with the image present, for N pods one after another; prints p50/p90/max and the removal
//! time. Used by `scripts/bench.sh`, which runs the reference beside it.
//!
//! Usage: `bench_start --socket PATH [--pods N] [--image REF]`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use kinglet_proto::v1;
use kinglet_tests::{connect, pod_config, sh_container};
use v1::runtime_service_client::RuntimeServiceClient;

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut socket = PathBuf::from("/run/kinglet/kinglet.sock");
    let mut pods = 20usize;
    let mut image = kinglet_tests::IMAGE.to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--socket" => socket = args.next().expect("--socket PATH").into(),
            "--pods" => pods = args.next().expect("--pods N").parse()?,
            "--image" => image = args.next().expect("--image REF"),
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let mut rt = RuntimeServiceClient::new(connect(&socket).await?);
    let logs = std::env::temp_dir().join("kinglet-bench-logs");
    let mut starts = Vec::new();
    let mut ids = Vec::new();
    for i in 0..pods {
        let cfg = pod_config(&format!("bench-{i}"), &logs);
        let mut c = sh_container("sleeper", "exec sleep 3600");
        c.image = Some(v1::ImageSpec {
            image: image.clone(),
            ..Default::default()
        });
        let t = Instant::now();
        let pod = rt
            .run_pod_sandbox(v1::RunPodSandboxRequest {
                config: Some(cfg.clone()),
                ..Default::default()
            })
            .await?
            .into_inner()
            .pod_sandbox_id;
        let id = rt
            .create_container(v1::CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(c),
                sandbox_config: Some(cfg),
            })
            .await?
            .into_inner()
            .container_id;
        rt.start_container(v1::StartContainerRequest { container_id: id })
            .await?;
        starts.push(t.elapsed());
        ids.push(pod);
    }
    let t = Instant::now();
    for pod in &ids {
        rt.stop_pod_sandbox(v1::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await?;
        rt.remove_pod_sandbox(v1::RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await?;
    }
    let removal = t.elapsed() / pods.max(1) as u32;
    starts.sort();
    println!(
        "kinglet pod start (sandbox+create+start), {pods} pods: p50 {:.1} ms  p90 {:.1} ms  max {:.1} ms",
        pct(&starts, 0.5),
        pct(&starts, 0.9),
        pct(&starts, 1.0)
    );
    println!(
        "kinglet pod stop+remove: mean {:.1} ms",
        removal.as_secs_f64() * 1000.0
    );
    println!("RESULT kinglet_p50_ms {:.2}", pct(&starts, 0.5));
    Ok(())
}
