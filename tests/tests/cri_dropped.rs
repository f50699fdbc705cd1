//! What interrupted requests and helpers leave behind goes without waiting for a crash
//! recovery: a RunPodSandbox whose client gives up mid-way (a deadline shorter than the work)
//! leaves no sandbox, directory, mount or pod init once it has run to its end; and files a
//! crashed exec helper left in `<run-root>/exec` (a result's `.tmp-*` never renamed, a result
//! nobody read) are removed when the daemon starts.

use std::time::Duration;

use kinglet_proto::v1;
use kinglet_tests::*;

fn entries(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_pod_sandbox_its_client_gave_up_on_leaves_nothing() {
    require_root();
    let d = Daemon::start().await;
    let mut rt = d.runtime().await;
    let logs = d.dir.path().join("logs");
    // Deadlines far below what a RunPodSandbox takes: each request is dropped mid-way.
    let mut dropped = 0;
    for (i, ms) in [5u64, 10, 20, 40].into_iter().enumerate() {
        let cfg = with_pod_pid_namespace(pod_config(&format!("dropped{i}"), &logs));
        let mut req = tonic::Request::new(v1::RunPodSandboxRequest {
            config: Some(cfg),
            ..Default::default()
        });
        req.set_timeout(Duration::from_millis(ms));
        match rt.run_pod_sandbox(req).await {
            Err(s) => {
                assert!(
                    matches!(
                        s.code(),
                        tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
                    ),
                    "{s:?}"
                );
                dropped += 1;
            }
            // Done within the deadline: an ordinary pod, removed as usual.
            Ok(r) => remove_pod(&mut rt, &r.into_inner().pod_sandbox_id).await,
        }
    }
    assert!(
        dropped > 0,
        "no request was cut short: the test proves nothing"
    );
    // Each dropped request runs to its end, and what it made is taken down at once.
    let pods_dir = d.run_root.join("pods");
    wait_for(
        "nothing left of the dropped pods",
        Duration::from_secs(30),
        || {
            entries(&pods_dir).is_empty()
                && kinglet_netns::find_pod_inits(&pods_dir).is_empty()
                && mounts_under(&d.run_root).is_empty()
        },
    );
    let list = rt
        .list_pod_sandbox(v1::ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(list.items.is_empty(), "{:?}", list.items);
    assert!(entries(&d.root.join("pods")).is_empty());
    // The names are free again: the same pod can be made.
    let pod = run_pod(&mut rt, &pod_config("dropped0", &logs)).await;
    remove_pod(&mut rt, &pod).await;
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_exec_helper_files_are_removed_at_daemon_start() {
    require_root();
    let mut d = Daemon::start().await;
    let exec = d.run_root.join("exec");
    for f in [".tmp-Xy12ab", "0123456789abcdef.json"] {
        std::fs::write(exec.join(f), b"{\"exit_code\"").unwrap();
    }
    d.kill9();
    d.spawn().await;
    assert_eq!(entries(&exec), Vec::<String>::new());
    d.shutdown().await;
}
