//! The CLI's streaming verbs, through the daemon's streaming server like any CRI client:
//! `kinglet exec -i/-t` and `attach` (the Exec or Attach RPC's URL, WebSocket `v5.channel.k8s.io`, the local terminal
//! in raw mode and its size followed) and `kinglet port-forward` (one PortForward URL per
//! local connection, WebSocket `v4.channel.k8s.io`).

use std::os::fd::AsFd;

use anyhow::{bail, Context};
use kinglet_proto::v1;
use kinglet_streaming::TermSize;
use tonic::transport::Channel;
use v1::runtime_service_client::RuntimeServiceClient;

use crate::kubectl::{find_container, status_err};
use kinglet_kubelet::podspec::{LABEL_POD_NAME, LABEL_POD_NAMESPACE};

/// The local terminal in raw mode until dropped.
struct RawTerminal {
    saved: nix::sys::termios::Termios,
}

impl RawTerminal {
    fn enter() -> anyhow::Result<RawTerminal> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let saved = tcgetattr(stdin.as_fd()).context("read the terminal's settings")?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).context("set the terminal raw")?;
        Ok(RawTerminal { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        use nix::sys::termios::{tcsetattr, SetArg};
        let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

fn terminal_size() -> Option<TermSize> {
    kinglet_runtime::sys::get_winsize(std::io::stdout().as_fd())
        .ok()
        .map(|(width, height)| TermSize { width, height })
}

/// `kinglet exec -i/-t POD -- CMD`: returns the command's exit code.
pub async fn exec(
    ch: Channel,
    pod: &str,
    ns: &str,
    container: Option<&str>,
    cmd: Vec<String>,
    stdin: bool,
    tty: bool,
) -> anyhow::Result<i32> {
    let mut rt = RuntimeServiceClient::new(ch.clone());
    let c = find_container(ch, &mut rt, pod, ns, container, false).await?;
    let url = rt
        .exec(v1::ExecRequest {
            container_id: c.id,
            cmd,
            tty,
            stdin,
            stdout: true,
            stderr: !tty,
        })
        .await
        .map_err(status_err("exec"))?
        .into_inner()
        .url;
    stream(&url, stdin, tty).await
}

/// `kinglet attach POD [-c C] [-i] [-t]`: the container's output (and with -i, this stdin to
/// its stdin) until it ends or the input ends. `tty`: the container's terminal (it must have
/// one), this terminal raw when it is one.
pub async fn attach(
    ch: Channel,
    pod: &str,
    ns: &str,
    container: Option<&str>,
    stdin: bool,
    tty: bool,
) -> anyhow::Result<()> {
    let mut rt = RuntimeServiceClient::new(ch.clone());
    let c = find_container(ch, &mut rt, pod, ns, container, false).await?;
    let url = rt
        .attach(v1::AttachRequest {
            container_id: c.id,
            stdin,
            tty,
            stdout: true,
            stderr: !tty,
        })
        .await
        .map_err(status_err("attach"))?
        .into_inner()
        .url;
    stream(&url, stdin, tty).await.map(|_| ())
}

/// Run an exec or attach `url` on this process's stdio: this terminal raw when it is one and
/// `tty` and `stdin` are asked for, its size followed. Returns the exit code.
async fn stream(url: &str, stdin: bool, tty: bool) -> anyhow::Result<i32> {
    let is_tty = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let raw = if tty && stdin && is_tty {
        Some(RawTerminal::enter()?)
    } else {
        None
    };
    let resize = tty.then(|| {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        if let Some(size) = terminal_size() {
            let _ = tx.send(size);
        }
        if let Ok(mut winch) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        {
            tokio::spawn(async move {
                while winch.recv().await.is_some() {
                    if let Some(size) = terminal_size() {
                        if tx.send(size).is_err() {
                            return;
                        }
                    }
                }
            });
        }
        rx
    });
    let code = kinglet_streaming::client::exec(
        url,
        stdin.then(tokio::io::stdin),
        tokio::io::stdout(),
        tokio::io::stderr(),
        resize,
    )
    .await;
    drop(raw);
    Ok(code?)
}

/// `LOCAL:REMOTE` or `PORT` (the same on both sides); LOCAL may be 0 (any free port).
pub fn parse_ports(spec: &str) -> anyhow::Result<(u16, u16)> {
    let port = |s: &str, which: &str| -> anyhow::Result<u16> {
        s.parse::<u16>()
            .with_context(|| format!("{which} port {s:?} in {spec:?} is not a number 0-65535"))
    };
    let (local, remote) = match spec.split_once(':') {
        Some((l, r)) => (port(l, "local")?, port(r, "remote")?),
        None => {
            let p = port(spec, "remote")?;
            (p, p)
        }
    };
    if remote == 0 {
        bail!("remote port in {spec:?} must be 1-65535");
    }
    Ok((local, remote))
}

/// `kinglet port-forward POD LOCAL:REMOTE`: serve until interrupted.
pub async fn port_forward(ch: Channel, pod: &str, ns: &str, spec: &str) -> anyhow::Result<()> {
    let (local, remote) = parse_ports(spec)?;
    let mut rt = RuntimeServiceClient::new(ch);
    let selector = [
        (LABEL_POD_NAME.to_string(), pod.to_string()),
        (LABEL_POD_NAMESPACE.to_string(), ns.to_string()),
    ]
    .into_iter()
    .collect();
    let sandboxes = rt
        .list_pod_sandbox(v1::ListPodSandboxRequest {
            filter: Some(v1::PodSandboxFilter {
                state: Some(v1::PodSandboxStateValue {
                    state: v1::PodSandboxState::SandboxReady as i32,
                }),
                label_selector: selector,
                ..Default::default()
            }),
        })
        .await
        .map_err(status_err("list pod sandboxes"))?
        .into_inner()
        .items;
    let Some(sandbox) = sandboxes.into_iter().max_by_key(|s| s.created_at) else {
        bail!("pod {ns}/{pod} has no ready sandbox (is it running? see kinglet get pods)");
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", local))
        .await
        .with_context(|| format!("listen on 127.0.0.1:{local}"))?;
    let bound = listener.local_addr()?.port();
    println!("Forwarding from 127.0.0.1:{bound} -> {remote}");
    loop {
        let (conn, _) = listener.accept().await?;
        let mut rt = rt.clone();
        let id = sandbox.id.clone();
        tokio::spawn(async move {
            let url = match rt
                .port_forward(v1::PortForwardRequest {
                    pod_sandbox_id: id,
                    port: vec![remote as i32],
                })
                .await
            {
                Ok(r) => r.into_inner().url,
                Err(e) => {
                    eprintln!("port-forward: {}", e.message());
                    return;
                }
            };
            if let Err(e) = kinglet_streaming::client::forward(&url, remote, conn).await {
                eprintln!("port-forward: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs() {
        assert_eq!(parse_ports("8080:80").unwrap(), (8080, 80));
        assert_eq!(parse_ports("80").unwrap(), (80, 80));
        assert_eq!(parse_ports("0:80").unwrap(), (0, 80));
        assert!(parse_ports("80:0").is_err());
        let e = parse_ports("x:80").unwrap_err().to_string();
        assert!(e.contains("local port \"x\""), "{e}");
    }
}
