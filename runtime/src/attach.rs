//! Attach, the daemon's side: a connection to the container's shim (`attach` on its control
//! socket, then frames; see `kinglet_shim::protocol::CMD_ATTACH`) turned into the stdio ends
//! the streaming server pumps.

use std::path::Path;

use kinglet_shim::protocol::{
    next_frame, push_frame, CMD_ATTACH, CONTROL_SOCKET, FRAME_RESIZE, FRAME_STDERR, FRAME_STDIN,
    FRAME_STDIN_EOF, FRAME_STDOUT,
};
use kinglet_streaming::{Process, TermSize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

/// Buffer of each in-memory pipe between the shim connection and the streaming server.
const PIPE: usize = 64 * 1024;

/// Connect to the shim and ask to attach; the connection then carries frames.
async fn handshake(state_dir: &Path, stdin: bool) -> std::io::Result<UnixStream> {
    // State directories can be deeper than a socket address allows: connect through the fd.
    let dir = std::fs::File::open(state_dir)?;
    let mut sock = UnixStream::connect(kinglet_shim::protocol::socket_path_via_fd(
        &dir,
        CONTROL_SOCKET,
    ))
    .await?;
    drop(dir);
    let cmd = if stdin {
        format!("{CMD_ATTACH} stdin\n")
    } else {
        format!("{CMD_ATTACH}\n")
    };
    sock.write_all(cmd.as_bytes()).await?;
    // The reply line, byte by byte: frames follow it on the same connection.
    let mut reply = Vec::new();
    loop {
        let b = sock.read_u8().await?;
        if b == b'\n' || reply.len() > 4096 {
            break;
        }
        reply.push(b);
    }
    if reply != b"ok" {
        return Err(std::io::Error::other(
            String::from_utf8_lossy(&reply).into_owned(),
        ));
    }
    Ok(sock)
}

/// Shim → client: demultiplex stdout and stderr frames into two pipes; `done` fires when the
/// shim closes the connection, or when a frame announces more than
/// [`kinglet_shim::protocol::MAX_FRAME`] bytes (the connection is then dropped, never buffered
/// towards it).
fn spawn_demux(
    mut rd: impl AsyncRead + Unpin + Send + 'static,
    mut out_w: DuplexStream,
    mut err_w: DuplexStream,
    done: oneshot::Sender<()>,
) {
    tokio::spawn(async move {
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 32 * 1024];
        'read: loop {
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            loop {
                let (ty, payload) = match next_frame(&mut buf) {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(err) => {
                        tracing::warn!(%err, "attach: the shim sent an oversized frame; session dropped");
                        break 'read;
                    }
                };
                let res = match ty {
                    FRAME_STDOUT => out_w.write_all(&payload).await,
                    FRAME_STDERR => err_w.write_all(&payload).await,
                    _ => Ok(()),
                };
                if res.is_err() {
                    break 'read;
                }
            }
        }
        let _ = done.send(());
    });
}

/// Client stdin as frames: what is written to the returned pipe, then its end.
fn stdin_frames(frames: mpsc::Sender<Vec<u8>>) -> DuplexStream {
    let (w, mut r) = tokio::io::duplex(PIPE);
    tokio::spawn(async move {
        let mut chunk = vec![0u8; 32 * 1024];
        loop {
            match r.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut f = Vec::with_capacity(n + 5);
                    push_frame(&mut f, FRAME_STDIN, &chunk[..n]);
                    if frames.send(f).await.is_err() {
                        return;
                    }
                }
            }
        }
        let mut f = Vec::new();
        push_frame(&mut f, FRAME_STDIN_EOF, &[]);
        let _ = frames.send(f).await;
    });
    w
}

/// Terminal sizes as frames.
fn resize_frames(frames: mpsc::Sender<Vec<u8>>) -> mpsc::UnboundedSender<TermSize> {
    let (tx, mut rx) = mpsc::unbounded_channel::<TermSize>();
    tokio::spawn(async move {
        while let Some(size) = rx.recv().await {
            let mut payload = size.width.to_be_bytes().to_vec();
            payload.extend_from_slice(&size.height.to_be_bytes());
            let mut f = Vec::new();
            push_frame(&mut f, FRAME_RESIZE, &payload);
            if frames.send(f).await.is_err() {
                return;
            }
        }
    });
    tx
}

/// Attach to the container whose shim state directory is `state_dir`.
pub async fn attach(state_dir: &Path, tty: bool, stdin: bool) -> std::io::Result<Process> {
    let (rd, mut wr) = handshake(state_dir, stdin).await?.into_split();
    let (out_w, out_r) = tokio::io::duplex(PIPE);
    let (err_w, err_r) = tokio::io::duplex(PIPE);
    let (done_tx, done_rx) = oneshot::channel::<()>();
    spawn_demux(rd, out_w, err_w, done_tx);
    // Client → shim: stdin data, its end, and terminal sizes, through one writer.
    let (frames_tx, mut frames_rx) = mpsc::channel::<Vec<u8>>(16);
    tokio::spawn(async move {
        while let Some(f) = frames_rx.recv().await {
            if wr.write_all(&f).await.is_err() {
                break;
            }
        }
    });
    let stdin_end =
        stdin.then(|| Box::pin(stdin_frames(frames_tx.clone())) as kinglet_streaming::BoxWrite);
    let resize = tty.then(|| resize_frames(frames_tx.clone()));
    drop(frames_tx);
    Ok(Process {
        stdin: stdin_end,
        stdout: Some(Box::pin(out_r)),
        stderr: (!tty).then(|| Box::pin(err_r) as kinglet_streaming::BoxRead),
        resize,
        // The session ends when the shim closes the connection (container exit, or end of
        // this client's input).
        wait: Box::pin(async move {
            let _ = done_rx.await;
            Ok(0)
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames to stdout and stderr, then a frame announcing more than MAX_FRAME: the demux
    /// delivers the first two and ends the session at the third without waiting for its bytes.
    #[tokio::test]
    async fn an_oversized_frame_ends_the_session() {
        let (mut shim, rd) = tokio::io::duplex(PIPE);
        let (out_w, mut out_r) = tokio::io::duplex(PIPE);
        let (err_w, mut err_r) = tokio::io::duplex(PIPE);
        let (done_tx, done_rx) = oneshot::channel();
        spawn_demux(rd, out_w, err_w, done_tx);
        let mut wire = Vec::new();
        push_frame(&mut wire, FRAME_STDOUT, b"out");
        push_frame(&mut wire, FRAME_STDERR, b"err");
        let huge = u32::try_from(kinglet_shim::protocol::MAX_FRAME + 1).unwrap();
        wire.push(FRAME_STDOUT);
        wire.extend_from_slice(&huge.to_be_bytes());
        wire.extend_from_slice(&[0u8; 100]);
        shim.write_all(&wire).await.unwrap();
        // The shim side stays open: only the size check can end the session.
        tokio::time::timeout(std::time::Duration::from_secs(30), done_rx)
            .await
            .expect("the demux kept reading after an oversized frame")
            .unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        out_r.read_to_end(&mut out).await.unwrap();
        err_r.read_to_end(&mut err).await.unwrap();
        assert_eq!((out.as_slice(), err.as_slice()), (&b"out"[..], &b"err"[..]));
        drop(shim);
    }
}
