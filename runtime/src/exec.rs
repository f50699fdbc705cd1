//! ExecSync: run a command in a container through a short-lived `kinglet shim exec` process
//! (libcontainer's tenant builder must not run in this multi-threaded daemon) and collect its
//! output.

use std::process::Stdio;
use std::time::Duration;

use kinglet_cri::CriError;
use kinglet_proto::v1;
use kinglet_shim::protocol::{read_record, ExecResult};
use tokio::io::AsyncReadExt;

use super::{new_id, Runtime};

/// Output kept per stream; the rest is dropped (as CRI-O caps ExecSync output).
const MAX_OUTPUT: usize = 16 << 20;

async fn read_capped(mut r: impl tokio::io::AsyncRead + Unpin) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => {
                let room = MAX_OUTPUT.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

impl Runtime {
    /// The start of every exec helper's command line (`shim exec --id … --runtime-root …
    /// --result …`); callers add their options, `--` and the command.
    pub(crate) fn exec_helper(
        &self,
        id: &str,
        result: &std::path::Path,
    ) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.shim_exe);
        cmd.arg("shim")
            .arg("exec")
            .arg("--id")
            .arg(id)
            .arg("--runtime-root")
            .arg(self.paths.runtime_root())
            .arg("--result")
            .arg(result);
        cmd
    }

    pub async fn exec_sync(
        &self,
        req: v1::ExecSyncRequest,
    ) -> Result<v1::ExecSyncResponse, CriError> {
        if req.cmd.is_empty() {
            return Err(CriError::invalid("cmd", "must not be empty"));
        }
        let id = self
            .running_container(&req.container_id, "ExecSync")
            .await?;
        let result_path = self.paths.exec_dir().join(format!("{}.json", new_id()));
        let mut cmd = self.exec_helper(&id, &result_path);
        cmd.arg("--timeout")
            .arg(req.timeout.max(0).to_string())
            .arg("--")
            .args(&req.cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("RUST_LOG", "off")
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| {
            CriError::internal(format!("start exec helper {}", self.shim_exe.display()), e)
        })?;
        let out = tokio::spawn(read_capped(child.stdout.take().expect("piped")));
        let err = tokio::spawn(read_capped(child.stderr.take().expect("piped")));
        // The helper enforces the timeout itself; this is only a backstop against a stuck helper.
        let backstop = if req.timeout > 0 {
            Duration::from_secs(req.timeout as u64 + 30)
        } else {
            Duration::from_secs(u32::MAX as u64)
        };
        let waited = tokio::time::timeout(backstop, child.wait()).await;
        if waited.is_err() {
            let _ = child.kill().await;
        }
        let stdout = out.await.unwrap_or_default();
        let stderr = err.await.unwrap_or_default();
        let result = read_record::<ExecResult>(&result_path)
            .map_err(|e| CriError::internal(format!("read {}", result_path.display()), e))?;
        let _ = std::fs::remove_file(&result_path);
        let result = result.ok_or_else(|| {
            CriError::internal(
                format!("exec in container {id}"),
                std::io::Error::other("exec helper ended without a result"),
            )
        })?;
        if let Some(e) = result.error {
            return Err(CriError::internal(
                format!("exec in container {id}"),
                std::io::Error::other(e),
            ));
        }
        if result.timed_out {
            return Err(CriError::DeadlineExceeded {
                what: format!("command {:?} in container {id}", req.cmd),
                seconds: req.timeout,
            });
        }
        Ok(v1::ExecSyncResponse {
            stdout,
            stderr,
            exit_code: result.exit_code,
        })
    }
}
