//! RunPodSandbox runs to its end whatever its client does. A client that goes away mid-way (a
//! deadline, a dropped connection) makes tonic drop the request's future; dropped at an await
//! point, a half-made sandbox would keep its directories, pins and pod cgroup until the next
//! daemon start (its rollback is async and cannot run in a destructor). So the work runs in a
//! task of its own: a failure rolls back as usual, and a sandbox finished for a client that is
//! gone is stopped and removed at once (nobody has its id), as containerd's cleanup does when
//! the request's context is cancelled.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use kinglet_cri::CriError;
use kinglet_proto::v1;

use super::Runtime;

/// Set when the request's future is dropped before the task's answer was taken.
struct Abandoned(Arc<AtomicBool>);

impl Drop for Abandoned {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Runtime {
    pub async fn run_pod_sandbox(
        self: &Arc<Self>,
        req: v1::RunPodSandboxRequest,
    ) -> Result<v1::RunPodSandboxResponse, CriError> {
        let flag = Arc::new(AtomicBool::new(false));
        // Dropped after the task's answer is taken (normal end), or with this future.
        let _abandoned = Abandoned(flag.clone());
        let rt = self.clone();
        tokio::spawn(async move {
            let result = rt.make_pod_sandbox(req).await;
            if let Ok(r) = &result {
                if flag.load(Ordering::SeqCst) {
                    rt.remove_abandoned(&r.pod_sandbox_id).await;
                }
            }
            result
        })
        .await
        .map_err(|e| CriError::internal("RunPodSandbox task", e))?
    }

    /// Stop and remove sandbox `id`, made for a RunPodSandbox whose client went away.
    async fn remove_abandoned(&self, id: &str) {
        tracing::info!(pod = %id, "RunPodSandbox's client went away: removing the sandbox it asked for");
        let done = match self.stop_pod_sandbox(id).await {
            Ok(()) => self.remove_pod_sandbox(id).await,
            Err(e) => Err(e),
        };
        if let Err(e) = done {
            tracing::warn!(pod = %id, err = %kinglet_cri::chain(&e), "abandoned sandbox not removed");
        }
    }
}
