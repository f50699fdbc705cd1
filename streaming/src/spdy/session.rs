//! A server-side SPDY/3.1 session over an upgraded HTTP connection, as spdystream's server
//! side behaves for Kubernetes clients.
//!
//! One reader task decodes frames and routes them; one writer task owns the write half and the
//! deflate context. Streams are opened by the client only (odd ids); every SYN_STREAM is
//! answered at once with an empty SYN_REPLY (the kubelet's stream handler replies to every
//! stream it accepts), then handed to the protocol handler as a [`Stream`].
//!
//! Flow control: spdystream (the client side of client-go and crictl) neither sends
//! WINDOW_UPDATE nor waits for one, so a peer honouring the 64 KiB initial window would stall
//! after 64 KiB. Windows are therefore not enforced in either direction; received
//! WINDOW_UPDATE and SETTINGS frames are accepted and ignored, as spdystream does. Back-pressure
//! comes from the bounded channel between the reader and each stream's consumer.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::frame::{Codec, Frame, Head, Headers, FLAG_FIN, MAX_PAYLOAD, RST_PROTOCOL_ERROR};
use crate::StreamingError;

/// Largest DATA frame we send; spdystream reads whatever comes, this keeps latency low.
const DATA_CHUNK: usize = 32 * 1024;

/// Data arriving on one stream; `None` from `recv` means the peer finished (FIN) or reset it.
pub struct Stream {
    pub id: u32,
    pub headers: Headers,
    pub rx: mpsc::Receiver<Bytes>,
    pub tx: StreamWriter,
}

enum Out {
    Frame(Frame),
    /// Send GOAWAY, flush, and shut the connection's write side.
    Close,
}

/// The sending half of a stream. Writes to a stream the peer reset are dropped.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    out: mpsc::Sender<Out>,
    reset: Arc<Mutex<HashSet<u32>>>,
}

impl StreamWriter {
    fn is_reset(&self) -> bool {
        self.reset.lock().expect("reset set").contains(&self.id)
    }

    /// Send `data` as DATA frames (split at 32 KiB).
    pub async fn write(&self, data: &[u8]) -> Result<(), StreamingError> {
        for chunk in data.chunks(DATA_CHUNK) {
            if self.is_reset() {
                return Err(StreamingError::StreamReset { stream: self.id });
            }
            let frame = Frame::Data {
                stream_id: self.id,
                flags: 0,
                data: Bytes::copy_from_slice(chunk),
            };
            self.out
                .send(Out::Frame(frame))
                .await
                .map_err(|_| StreamingError::SessionClosed)?;
        }
        Ok(())
    }

    /// Half-close: an empty DATA frame with FIN.
    pub async fn finish(&self) {
        if self.is_reset() {
            return;
        }
        let frame = Frame::Data {
            stream_id: self.id,
            flags: FLAG_FIN,
            data: Bytes::new(),
        };
        let _ = self.out.send(Out::Frame(frame)).await;
    }

    /// Abort the stream (RST_STREAM).
    pub async fn reset(&self, status: u32) {
        if self.is_reset() {
            return;
        }
        let frame = Frame::RstStream {
            stream_id: self.id,
            status,
        };
        let _ = self.out.send(Out::Frame(frame)).await;
    }
}

/// Handle on a running session: new streams arrive on `streams`; `close` ends it.
pub struct Session {
    pub streams: mpsc::Receiver<Stream>,
    out: mpsc::Sender<Out>,
    /// Becomes true when the peer is gone (connection closed or broken).
    pub gone: tokio::sync::watch::Receiver<bool>,
}

impl Session {
    /// Start serving SPDY on `io` (already upgraded).
    pub fn start<IO>(io: IO) -> Session
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (rd, wr) = tokio::io::split(io);
        let (out_tx, out_rx) = mpsc::channel::<Out>(64);
        let (streams_tx, streams_rx) = mpsc::channel(16);
        let reset = Arc::new(Mutex::new(HashSet::new()));
        tokio::spawn(write_loop(wr, out_rx));
        let (gone_tx, gone) = tokio::sync::watch::channel(false);
        let out_tx2 = out_tx.clone();
        tokio::spawn(async move {
            read_loop(rd, out_tx2, streams_tx, reset).await;
            let _ = gone_tx.send(true);
        });
        Session {
            streams: streams_rx,
            out: out_tx,
            gone,
        }
    }

    /// GOAWAY, then close the connection once everything queued before it is written.
    pub async fn close(&self) {
        let _ = self.out.send(Out::Close).await;
    }
}

async fn write_loop<W: AsyncWrite>(wr: W, mut rx: mpsc::Receiver<Out>) {
    tokio::pin!(wr);
    let mut codec = Codec::new();
    let mut buf = BytesMut::with_capacity(DATA_CHUNK + 64);
    let mut last_stream = 0;
    while let Some(out) = rx.recv().await {
        buf.clear();
        let close = match out {
            Out::Frame(f) => {
                if let Frame::SynReply { stream_id, .. } = f {
                    last_stream = stream_id;
                }
                if let Err(e) = codec.encode(&f, &mut buf) {
                    tracing::debug!(err = %e, "SPDY frame not sent");
                    continue;
                }
                false
            }
            Out::Close => {
                let goaway = Frame::GoAway {
                    last_good_stream_id: last_stream,
                    status: 0,
                };
                let _ = codec.encode(&goaway, &mut buf);
                true
            }
        };
        // Coalesce whatever else is already queued into one write.
        let mut closing = close;
        while !closing && buf.len() < 256 * 1024 {
            match rx.try_recv() {
                Ok(Out::Frame(f)) => {
                    if let Frame::SynReply { stream_id, .. } = f {
                        last_stream = stream_id;
                    }
                    let _ = codec.encode(&f, &mut buf);
                }
                Ok(Out::Close) => {
                    let goaway = Frame::GoAway {
                        last_good_stream_id: last_stream,
                        status: 0,
                    };
                    let _ = codec.encode(&goaway, &mut buf);
                    closing = true;
                }
                Err(_) => break,
            }
        }
        if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
            return;
        }
        if closing {
            let _ = wr.shutdown().await;
            return;
        }
    }
    let _ = wr.shutdown().await;
}

async fn read_frame<R: AsyncRead + Unpin>(
    rd: &mut R,
    codec: &mut Codec,
) -> Result<Option<Frame>, StreamingError> {
    let mut head = [0u8; 8];
    match rd.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(StreamingError::Io { source: e }),
    }
    let head = Head::parse(head);
    if head.length > MAX_PAYLOAD {
        return Err(StreamingError::Spdy {
            reason: "frame too long".into(),
        });
    }
    let mut payload = vec![0u8; head.length];
    rd.read_exact(&mut payload)
        .await
        .map_err(|e| StreamingError::Io { source: e })?;
    codec.decode(head, Bytes::from(payload)).map(Some)
}

async fn read_loop<R: AsyncRead>(
    rd: R,
    out: mpsc::Sender<Out>,
    streams: mpsc::Sender<Stream>,
    reset: Arc<Mutex<HashSet<u32>>>,
) {
    tokio::pin!(rd);
    let mut codec = Codec::new();
    let mut open: HashMap<u32, mpsc::Sender<Bytes>> = HashMap::new();
    loop {
        let frame = match read_frame(&mut rd, &mut codec).await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(err = %e, "SPDY session ends");
                break;
            }
        };
        match frame {
            Frame::SynStream {
                stream_id,
                flags,
                headers,
                ..
            } => {
                if stream_id % 2 == 0 || open.contains_key(&stream_id) {
                    let rst = Frame::RstStream {
                        stream_id,
                        status: RST_PROTOCOL_ERROR,
                    };
                    let _ = out.send(Out::Frame(rst)).await;
                    continue;
                }
                let reply = Frame::SynReply {
                    stream_id,
                    flags: 0,
                    headers: Headers::new(),
                };
                if out.send(Out::Frame(reply)).await.is_err() {
                    break;
                }
                let (tx, rx) = mpsc::channel(16);
                if flags & FLAG_FIN == 0 {
                    open.insert(stream_id, tx);
                }
                let stream = Stream {
                    id: stream_id,
                    headers,
                    rx,
                    tx: StreamWriter {
                        id: stream_id,
                        out: out.clone(),
                        reset: reset.clone(),
                    },
                };
                // The handler may have stopped taking streams; the stream is then just dropped.
                let _ = streams.send(stream).await;
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                if let Some(tx) = open.get(&stream_id) {
                    if !data.is_empty() && tx.send(data).await.is_err() {
                        // Nobody reads this stream any more: drop what comes.
                    }
                }
                if flags & FLAG_FIN != 0 {
                    open.remove(&stream_id);
                }
            }
            Frame::RstStream { stream_id, .. } => {
                open.remove(&stream_id);
                reset.lock().expect("reset set").insert(stream_id);
            }
            Frame::Ping { id } => {
                // Client pings have odd ids; echo them. Even ones would answer our own pings.
                if id % 2 == 1 && out.send(Out::Frame(Frame::Ping { id })).await.is_err() {
                    break;
                }
            }
            Frame::SynReply { .. }
            | Frame::Headers { .. }
            | Frame::Settings { .. }
            | Frame::WindowUpdate { .. }
            | Frame::GoAway { .. }
            | Frame::Unknown { .. } => {}
        }
    }
    // Peer gone: every open stream ends, and no new ones come.
    open.clear();
}
