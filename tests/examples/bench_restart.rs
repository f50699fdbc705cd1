//! Restart latency of crashed containers in pods from manifests: N running pods whose
//! container exits (one pod at a time, when told to) on its first run; latency = the exit recorded by the shim (finished_at of attempt 0)
//! to the new process running (started_at of attempt 1), from the runtime's own CRI records.
//! No back-off is pending for a first restart. Used by `scripts/bench.sh`.
//!
//! Usage: `bench_restart --socket PATH [--pods N]`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use kinglet_proto::admin::objects_client::ObjectsClient;
use kinglet_proto::{admin, v1};
use kinglet_tests::connect;
use v1::runtime_service_client::RuntimeServiceClient;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut socket = PathBuf::from("/run/kinglet/kinglet.sock");
    let mut pods = 20usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--socket" => socket = args.next().expect("--socket PATH").into(),
            "--pods" => pods = args.next().expect("--pods N").parse()?,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let ch = connect(&socket).await?;
    let mut objects = ObjectsClient::new(ch.clone());
    let mut rt = RuntimeServiceClient::new(ch);
    let mut yaml = String::new();
    for i in 0..pods {
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: crash-{i}}}\nspec:\n  terminationGracePeriodSeconds: 0\n  containers:\n  - name: c\n    image: {img}\n    imagePullPolicy: IfNotPresent\n    command: [sh, -c, 'if [ -f /w/ran ]; then exec sleep 3600; fi; touch /w/ran; while [ ! -f /w/go ]; do sleep 0.05; done; exit 1']\n    volumeMounts: [{{name: w, mountPath: /w}}]\n  volumes: [{{name: w, emptyDir: {{}}}}]\n",
            img = kinglet_tests::IMAGE
        ));
    }
    objects
        .apply(admin::ApplyRequest {
            source: "bench".into(),
            content: yaml.clone(),
            create_only: false,
            ..Default::default()
        })
        .await?;
    // Wait until every pod runs its first attempt (steady state), then crash them one by one.
    let deadline = Instant::now() + Duration::from_secs(300);
    for i in 0..pods {
        loop {
            let r = rt
                .list_containers(v1::ListContainersRequest {
                    filter: Some(v1::ContainerFilter {
                        label_selector: [(
                            "io.kubernetes.pod.name".to_string(),
                            format!("crash-{i}"),
                        )]
                        .into_iter()
                        .collect(),
                        state: Some(v1::ContainerStateValue {
                            state: v1::ContainerState::ContainerRunning as i32,
                        }),
                        ..Default::default()
                    }),
                })
                .await?
                .into_inner()
                .containers;
            if !r.is_empty() {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "pod crash-{i} did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut lat = Vec::new();
    for i in 0..pods {
        let first = rt
            .list_containers(v1::ListContainersRequest {
                filter: Some(v1::ContainerFilter {
                    label_selector: [("io.kubernetes.pod.name".to_string(), format!("crash-{i}"))]
                        .into_iter()
                        .collect(),
                    ..Default::default()
                }),
            })
            .await?
            .into_inner()
            .containers;
        let id = first.first().map(|c| c.id.clone()).unwrap_or_default();
        rt.exec_sync(v1::ExecSyncRequest {
            container_id: id,
            cmd: vec!["touch".into(), "/w/go".into()],
            timeout: 10,
        })
        .await?;
        let sel: std::collections::HashMap<String, String> =
            [("io.kubernetes.pod.name".to_string(), format!("crash-{i}"))]
                .into_iter()
                .collect();
        loop {
            let cs = rt
                .list_containers(v1::ListContainersRequest {
                    filter: Some(v1::ContainerFilter {
                        label_selector: sel.clone(),
                        ..Default::default()
                    }),
                })
                .await?
                .into_inner()
                .containers;
            let find = |a: u32| {
                cs.iter()
                    .find(|c| c.metadata.as_ref().map(|m| m.attempt) == Some(a))
                    .map(|c| c.id.clone())
            };
            if let (Some(a0), Some(a1)) = (find(0), find(1)) {
                let st = |id: String| {
                    let mut rt = rt.clone();
                    async move {
                        rt.container_status(v1::ContainerStatusRequest {
                            container_id: id,
                            verbose: false,
                        })
                        .await
                        .map(|r| r.into_inner().status.unwrap_or_default())
                    }
                };
                let (s0, s1) = (st(a0).await?, st(a1).await?);
                if s1.started_at > 0 && s0.finished_at > 0 {
                    lat.push(Duration::from_nanos(
                        (s1.started_at - s0.finished_at).max(0) as u64,
                    ));
                    break;
                }
            }
            anyhow::ensure!(Instant::now() < deadline, "pod crash-{i} did not restart");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    objects
        .delete(admin::DeleteRequest {
            source: "bench".into(),
            content: yaml,
            ..Default::default()
        })
        .await?;
    lat.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p = |q: f64| ms(lat[((lat.len() as f64 - 1.0) * q).round() as usize]);
    println!("kinglet restart latency (exit → new process running), {pods} pods: p50 {:.1} ms  p90 {:.1} ms  max {:.1} ms", p(0.5), p(0.9), p(1.0));
    println!("RESULT kinglet_restart_p50_ms {:.2}", p(0.5));
    Ok(())
}
