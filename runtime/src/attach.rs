//! Attach, the daemon's side: a connection to the container's shim (`attach` on its control
//! socket, then frames; see `kinglet_shim::protocol::CMD_ATTACH`) turned into the stdio ends
//! the streaming server pumps.

use std::path::Path;

use kinglet_shim::protocol::{
    push_frame, take_frame, CMD_ATTACH, CONTROL_SOCKET, FRAME_RESIZE, FRAME_STDERR, FRAME_STDIN,
    FRAME_STDIN_EOF, FRAME_STDOUT,
};
use kinglet_streaming::{Process, TermSize};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::unix::OwnedReadHalf;
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
/// shim closes the connection.
fn spawn_demux(
    mut rd: OwnedReadHalf,
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
            while let Some((ty, payload)) = take_frame(&mut buf) {
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
