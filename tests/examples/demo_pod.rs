//! The README's main job: against a running daemon, run an example pod of two containers (a web
//! server and a client fetching from it over the pod's loopback), show their output, and leave
//! the pod running (`--remove` removes it again).
//!
//! Usage: `demo_pod [--socket PATH] [--remove]`

use std::path::PathBuf;
use std::time::Duration;

use kinglet_proto::v1;
use kinglet_tests::{connect, pod_config, sh_container};
use v1::runtime_service_client::RuntimeServiceClient;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut socket = PathBuf::from("/run/kinglet/kinglet.sock");
    let mut remove = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--socket" => socket = args.next().expect("--socket PATH").into(),
            "--remove" => remove = true,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let mut rt = RuntimeServiceClient::new(connect(&socket).await?);
    let v = rt
        .version(v1::VersionRequest::default())
        .await?
        .into_inner();
    println!(
        "connected to {} {} (CRI {})",
        v.runtime_name, v.runtime_version, v.runtime_api_version
    );

    let logs = PathBuf::from("/var/log/kinglet-demo");
    let pod_cfg = pod_config("demo", &logs);
    // Re-running the demo replaces the previous demo pod.
    for p in rt
        .list_pod_sandbox(v1::ListPodSandboxRequest::default())
        .await?
        .into_inner()
        .items
    {
        if p.metadata.as_ref().is_some_and(|m| m.name == "demo") {
            rt.remove_pod_sandbox(v1::RemovePodSandboxRequest {
                pod_sandbox_id: p.id,
            })
            .await?;
        }
    }
    if remove {
        println!("demo pod removed");
        return Ok(());
    }
    let pod = rt
        .run_pod_sandbox(v1::RunPodSandboxRequest {
            config: Some(pod_cfg.clone()),
            ..Default::default()
        })
        .await?
        .into_inner()
        .pod_sandbox_id;
    let ip = rt
        .pod_sandbox_status(v1::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await?
        .into_inner()
        .status
        .and_then(|s| s.network)
        .map(|n| n.ip)
        .unwrap_or_default();
    println!("pod sandbox {pod} (pod IP {ip})");
    let mut ids = Vec::new();
    for cfg in [
        sh_container(
            "web",
            "mkdir -p /www && echo 'hello from the kinglet demo pod' > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www",
        ),
        sh_container(
            "client",
            "while true; do wget -q -O - http://127.0.0.1:8080/ && echo \"fetched by $(hostname)\"; sleep 5; done",
        ),
    ] {
        let name = cfg.metadata.as_ref().unwrap().name.clone();
        let id = rt
            .create_container(v1::CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(cfg),
                sandbox_config: Some(pod_cfg.clone()),
            })
            .await?
            .into_inner()
            .container_id;
        rt.start_container(v1::StartContainerRequest { container_id: id.clone() }).await?;
        println!("container {name} {id} started");
        ids.push((name, id));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (name, id) in &ids {
        let st = rt
            .container_status(v1::ContainerStatusRequest {
                container_id: id.clone(),
                verbose: false,
            })
            .await?
            .into_inner()
            .status
            .unwrap_or_default();
        println!(
            "--- {name}: state {:?}, log {}",
            v1::ContainerState::try_from(st.state)?,
            st.log_path
        );
        print!(
            "{}",
            std::fs::read_to_string(&st.log_path).unwrap_or_default()
        );
    }
    println!("the pod keeps running; remove it with: demo_pod --remove");
    Ok(())
}
