//! StopContainer right after StartContainer, from many clients at once (what `critest
//! -benchmark` does with 10 pods × 10 containers in parallel): the stop signal must reach the
//! program the container runs, not the runtime's container init before it has exec'd it. A
//! container's PID 1 discards a signal it has no handler for, so a SIGTERM that arrives before
//! the exec is lost and the stop waits out its whole timeout.

use std::time::{Duration, Instant};

use kinglet_proto::v1;
use kinglet_tests::*;

const PODS: usize = 10;
const PER_POD: usize = 8;

#[tokio::test(flavor = "multi_thread")]
async fn stop_right_after_start_is_never_lost_under_parallel_load() {
    let d = Daemon::start().await;
    d.import_test_image().await;
    let logs = d.dir.path().join("logs");
    let mut tasks = Vec::new();
    for p in 0..PODS {
        let mut rt = d.runtime().await;
        let cfg = pod_config(&format!("race{p}"), &logs);
        tasks.push(tokio::spawn(async move {
            let pod = run_pod(&mut rt, &cfg).await;
            let mut times = Vec::new();
            for c in 0..PER_POD {
                // busybox `top` catches SIGTERM and exits on it, but only once it runs.
                let mut ctr = sh_container(&format!("c{c}"), "");
                ctr.command = vec!["top".into()];
                let id = run_container(&mut rt, &pod, &cfg, ctr).await;
                let t = Instant::now();
                rt.stop_container(v1::StopContainerRequest {
                    container_id: id.clone(),
                    timeout: 20,
                })
                .await
                .expect("StopContainer");
                times.push((t.elapsed(), id));
            }
            remove_pod(&mut rt, &pod).await;
            times
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let slow: Vec<_> = all
        .iter()
        .filter(|(t, _)| *t > Duration::from_secs(5))
        .collect();
    eprintln!(
        "{} stops: p50 {:?}, max {:?}",
        all.len(),
        all[all.len() / 2].0,
        all[all.len() - 1].0
    );
    assert!(
        slow.is_empty(),
        "{} of {} stops waited out the timeout (SIGTERM lost): {slow:?}",
        slow.len(),
        all.len()
    );
    d.shutdown().await;
}
