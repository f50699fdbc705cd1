//! Attach, the daemon's side: a connection to the container's shim (`attach` on its control
//! socket, then frames; see `kinglet_shim::protocol::CMD_ATTACH`) turned into the stdio ends
//! the streaming server pumps.

use std::path::Path;

use kinglet_shim::protocol::{
    push_frame, take_frame, CMD_ATTACH, CONTROL_SOCKET, FRAME_RESIZE, FRAME_STDERR, FRAME_STDIN,
    FRAME_STDIN_EOF, FRAME_STDOUT,
};
use kinglet_streaming::{Process, TermSize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

/// Buffer of each in-memory pipe between the shim connection and the streaming server.
const PIPE: usize = 64 * 1024;

/// Attach to the container whose shim state directory is `state_dir`.
pub async fn attach(state_dir: &Path, tty: bool, stdin: bool) -> std::io::Result<Process> {
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
    let (mut rd, mut wr) = sock.into_split();

    // Shim → client: demultiplex stdout and stderr frames into two pipes.
    let (mut out_w, out_r) = tokio::io::duplex(PIPE);
    let (mut err_w, err_r) = tokio::io::duplex(PIPE);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
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
        let _ = done_tx.send(());
    });

    // Client → shim: stdin data, its end, and terminal sizes, through one writer.
    let (frames_tx, mut frames_rx) = mpsc::channel::<Vec<u8>>(16);
    tokio::spawn(async move {
        while let Some(f) = frames_rx.recv().await {
            if wr.write_all(&f).await.is_err() {
                break;
            }
        }
    });
    let stdin_end = if stdin {
        let (w, mut r) = tokio::io::duplex(PIPE);
        let tx = frames_tx.clone();
        tokio::spawn(async move {
            let mut chunk = vec![0u8; 32 * 1024];
            loop {
                match r.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let mut f = Vec::with_capacity(n + 5);
                        push_frame(&mut f, FRAME_STDIN, &chunk[..n]);
                        if tx.send(f).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let mut f = Vec::new();
            push_frame(&mut f, FRAME_STDIN_EOF, &[]);
            let _ = tx.send(f).await;
        });
        Some(Box::pin(w) as kinglet_streaming::BoxWrite)
    } else {
        None
    };
    let resize = tty.then(|| {
        let (tx, mut rx) = mpsc::unbounded_channel::<TermSize>();
        let frames = frames_tx.clone();
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
    });
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
