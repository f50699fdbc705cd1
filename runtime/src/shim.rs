//! The daemon's side of the shim protocol: start a shim, send it control commands, and learn
//! when it (and so its container) has exited. Shims are not the daemon's children after they
//! detach, so exits are observed through a pidfd, which works for any process.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use kinglet_cri::CriError;
use kinglet_shim::protocol::{CONTROL_SOCKET, SHIM_LOG};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// How long creating a container may take before the daemon gives up on the shim.
const CREATE_TIMEOUT: Duration = Duration::from_secs(60);

/// What a shim needs to be started.
pub struct ShimLaunch<'a> {
    pub exe: &'a Path,
    pub id: &'a str,
    pub bundle: &'a Path,
    pub runtime_root: &'a Path,
    pub state_dir: &'a Path,
    pub log_path: Option<&'a Path>,
    /// Rotate the log at this many bytes (0: never), keeping this many files.
    pub log_max_size: u64,
    pub log_max_files: u32,
    pub systemd_cgroup: bool,
    /// CRI `stdin` / `stdin_once`: keep a stdin for attach clients.
    pub stdin: bool,
    pub stdin_once: bool,
}

/// Start `kinglet shim run` and wait for it to report the created container.
/// Returns (init pid, shim pid).
pub async fn spawn(l: &ShimLaunch<'_>) -> Result<(i32, i32), CriError> {
    tokio::fs::create_dir_all(l.state_dir)
        .await
        .map_err(|e| CriError::internal(format!("create {}", l.state_dir.display()), e))?;
    let mut cmd = tokio::process::Command::new(l.exe);
    cmd.arg("shim")
        .arg("run")
        .arg("--id")
        .arg(l.id)
        .arg("--bundle")
        .arg(l.bundle)
        .arg("--runtime-root")
        .arg(l.runtime_root)
        .arg("--state-dir")
        .arg(l.state_dir);
    if let Some(p) = l.log_path {
        cmd.arg("--log-path").arg(p);
        if l.log_max_size > 0 {
            cmd.arg("--log-max-size")
                .arg(l.log_max_size.to_string())
                .arg("--log-max-files")
                .arg(l.log_max_files.to_string());
        }
    }
    if l.systemd_cgroup {
        cmd.arg("--systemd-cgroup");
    }
    if l.stdin {
        cmd.arg("--stdin");
    }
    if l.stdin_once {
        cmd.arg("--stdin-once");
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env("RUST_LOG", "warn")
        .kill_on_drop(false);
    let mut child = cmd
        .spawn()
        .map_err(|e| CriError::internal(format!("start shim {}", l.exe.display()), e))?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let read = async {
        let mut out = String::new();
        stdout.read_to_string(&mut out).await.map(|_| out)
    };
    let out = match tokio::time::timeout(CREATE_TIMEOUT, read).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return Err(CriError::internal("read shim report", e)),
        Err(_) => {
            return Err(CriError::DeadlineExceeded {
                what: format!("creating container {}", l.id),
                seconds: CREATE_TIMEOUT.as_secs() as i64,
            })
        }
    };
    // The first process exits right after detaching; reap it.
    let _ = child.wait().await;
    parse_report(&out, l.state_dir)
}

fn parse_report(out: &str, state_dir: &Path) -> Result<(i32, i32), CriError> {
    let line = out.lines().next().unwrap_or("");
    if let Some(rest) = line.strip_prefix("ok ") {
        let mut it = rest.split_whitespace().map(str::parse::<i32>);
        if let (Some(Ok(init)), Some(Ok(shim))) = (it.next(), it.next()) {
            return Ok((init, shim));
        }
    }
    // libcontainer logs the detail of a failure (which syscall, which path) to the shim's log.
    let diag = std::fs::read_to_string(state_dir.join(SHIM_LOG)).unwrap_or_default();
    let detail: Vec<&str> = diag
        .lines()
        .filter(|l| l.contains("ERROR"))
        .map(strip_ansi_prefix)
        .collect();
    let detail = detail[detail.len().saturating_sub(3)..].join("; ");
    let msg = match line.strip_prefix("error ") {
        Some(msg) if detail.is_empty() => msg.to_owned(),
        Some(msg) => format!("{msg} ({detail})"),
        None => format!(
            "shim exited without a report (its log: {})",
            diag.lines().last().unwrap_or("empty")
        ),
    };
    Err(CriError::internal(
        "create container",
        std::io::Error::other(msg),
    ))
}

/// A tracing line without its timestamp and level columns.
fn strip_ansi_prefix(l: &str) -> &str {
    l.find("ERROR").map(|i| l[i + 5..].trim()).unwrap_or(l)
}

/// Send one control command to a shim and return its reply (without the `ok` prefix).
pub async fn control(state_dir: &Path, cmd: &str) -> Result<String, CriError> {
    let sock = state_dir.join(CONTROL_SOCKET);
    let fut = async {
        // State directories can be deeper than a socket address allows: connect through the fd.
        let dir = std::fs::File::open(state_dir)?;
        let mut s = UnixStream::connect(kinglet_shim::protocol::socket_path_via_fd(
            &dir,
            CONTROL_SOCKET,
        ))
        .await?;
        drop(dir);
        s.write_all(format!("{cmd}\n").as_bytes()).await?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).await?;
        Ok::<_, std::io::Error>(line)
    };
    let line = tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .map_err(|_| CriError::DeadlineExceeded {
            what: format!("shim command {cmd:?} on {}", sock.display()),
            seconds: 30,
        })?
        .map_err(|e| {
            CriError::internal(format!("shim command {cmd:?} on {}", sock.display()), e)
        })?;
    let line = line.trim_end();
    if let Some(rest) = line.strip_prefix("ok") {
        return Ok(rest.trim().to_owned());
    }
    Err(CriError::internal(
        format!("shim command {cmd:?}"),
        std::io::Error::other(line.strip_prefix("error ").unwrap_or(line).to_owned()),
    ))
}

/// Whether `pid` is the shim of container `id` (guards against pid reuse after a restart).
pub fn is_shim_of(pid: i32, id: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
            args.contains(&&b"shim"[..]) && args.contains(&id.as_bytes())
        })
        .unwrap_or(false)
}

/// Resolve when process `pid` has exited (immediately if it is already gone).
pub async fn wait_exit(pid: i32) {
    let fd = match kinglet_shim::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(_) => return,
    };
    let Ok(afd) = crate::sys::async_pidfd(fd) else {
        return;
    };
    if let Ok(mut guard) = afd.readable().await {
        guard.retain_ready();
    }
}

/// The shim state directory of a container.
pub fn state_dir(run_root: &Path, id: &str) -> PathBuf {
    run_root.join("containers").join(id).join("shim")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_parse() {
        let d = Path::new("/nonexistent");
        assert_eq!(parse_report("ok 12 34\n", d).unwrap(), (12, 34));
        let e = parse_report("error libcontainer could not create container x: boom\n", d)
            .unwrap_err()
            .to_string();
        assert!(e.contains("boom"), "{e}");
        let e = parse_report("", d).unwrap_err().to_string();
        assert!(e.contains("without a report"), "{e}");
    }
}
