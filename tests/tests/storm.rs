//! 200 CRI clients calling at once (on demand: `cargo test -p kinglet-tests --test storm --
//! --ignored --nocapture`): each on its own connection calls Version, RunPodSandbox (a pod on
//! the pod network) and Version again, all released together. Every call must be answered
//! (no deadlock, no error) within a generous bound; the p50/p99 of RunPodSandbox and of Version
//! during the storm are printed. All pods are removed afterwards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kinglet_proto::v1;
use kinglet_proto::v1::runtime_service_client::RuntimeServiceClient;
use kinglet_tests::*;

const CLIENTS: usize = 200;

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark: run on demand"]
async fn two_hundred_clients_at_once() {
    let d = Daemon::start().await;
    let logs = d.dir.path().join("logs");
    let gate = Arc::new(tokio::sync::Barrier::new(CLIENTS));
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let (socket, gate, logs) = (d.socket.clone(), gate.clone(), logs.clone());
        tasks.push(tokio::spawn(async move {
            let mut rt = RuntimeServiceClient::new(connect(&socket).await.expect("connect"));
            gate.wait().await;
            let mut version = Vec::new();
            let t = Instant::now();
            rt.version(v1::VersionRequest::default())
                .await
                .expect("Version");
            version.push(t.elapsed());
            let t = Instant::now();
            let pod = rt
                .run_pod_sandbox(v1::RunPodSandboxRequest {
                    config: Some(pod_config(&format!("storm-{i}"), &logs)),
                    ..Default::default()
                })
                .await
                .expect("RunPodSandbox")
                .into_inner()
                .pod_sandbox_id;
            let run = t.elapsed();
            let t = Instant::now();
            rt.version(v1::VersionRequest::default())
                .await
                .expect("Version");
            version.push(t.elapsed());
            (pod, run, version)
        }));
    }
    let started = Instant::now();
    let mut runs = Vec::new();
    let mut versions = Vec::new();
    let mut pods = Vec::new();
    for t in tasks {
        let (pod, run, v) = tokio::time::timeout(Duration::from_secs(300), t)
            .await
            .expect("every call answered within 300 s (no deadlock)")
            .expect("client task");
        pods.push(pod);
        runs.push(run);
        versions.extend(v);
    }
    let wall = started.elapsed();
    runs.sort();
    versions.sort();
    println!(
        "storm: {CLIENTS} clients in {:.1} s; RunPodSandbox p50 {:.0} ms p99 {:.0} ms max {:.0} ms; Version p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
        wall.as_secs_f64(),
        pct(&runs, 0.5),
        pct(&runs, 0.99),
        pct(&runs, 1.0),
        pct(&versions, 0.5),
        pct(&versions, 0.99),
        pct(&versions, 1.0),
    );
    let mut rt = d.runtime().await;
    let listed = rt
        .list_pod_sandbox(v1::ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(listed.len(), CLIENTS, "every pod is there");
    for p in pods {
        remove_pod(&mut rt, &p).await;
    }
    d.shutdown().await;
}
