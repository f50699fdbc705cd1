//! SPDY/3.1 frames: the binary layout of every frame type Kubernetes clients send or expect,
//! and the connection's two header-compression contexts.
//!
//! Layout (draft-mbelshe-httpbis-spdy-00, version 3): every frame starts with 8 bytes. A control
//! frame has the high bit set, a 15-bit version (3) and a 16-bit type; a data frame has the
//! high bit clear and a 31-bit stream id. Then 8 bits of flags and a 24-bit payload length.
//! Name/value header blocks (SYN_STREAM, SYN_REPLY, HEADERS) are zlib-compressed with the
//! SPDY/3 dictionary, one zlib stream per direction for the whole connection, each block ended
//! with a sync flush — which is what the Go framer used by spdystream (client-go, crictl) does.

use bytes::{BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::dictionary::header_dictionary;
use crate::StreamingError;

pub const VERSION: u16 = 3;
/// The most a frame's payload can hold (24-bit length).
pub const MAX_PAYLOAD: usize = (1 << 24) - 1;
/// Largest header block we accept after decompression (kubelet clients send a few hundred bytes).
const MAX_HEADER_BLOCK: usize = 1 << 20;

pub const FLAG_FIN: u8 = 0x01;
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

/// RST_STREAM status codes used here.
pub const RST_PROTOCOL_ERROR: u32 = 1;
pub const RST_CANCEL: u32 = 5;
pub const RST_INTERNAL_ERROR: u32 = 6;

/// Header name/value pairs in the order sent; names are lowercase on the wire. A name with
/// several values appears once per value.
pub type Headers = Vec<(String, String)>;

/// First value of header `name` (case-insensitive, as Go's `http.Header.Get`).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub flags: u8,
    pub id: u32,
    pub value: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        slot: u8,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings {
        flags: u8,
        entries: Vec<Setting>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        flags: u8,
        data: Bytes,
    },
    /// A control frame of a type this version does not define (e.g. CREDENTIAL); ignored.
    Unknown {
        frame_type: u16,
    },
}

/// The 8-byte frame head: what kind of frame and how many payload bytes follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    word0: u32,
    pub flags: u8,
    pub length: usize,
}

impl Head {
    pub fn parse(b: [u8; 8]) -> Head {
        Head {
            word0: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            flags: b[4],
            length: u32::from_be_bytes([0, b[5], b[6], b[7]]) as usize,
        }
    }
    fn is_control(&self) -> bool {
        self.word0 & 0x8000_0000 != 0
    }
}

fn proto(what: impl Into<String>) -> StreamingError {
    StreamingError::Spdy {
        reason: what.into(),
    }
}

fn u32_at(p: &[u8], at: usize) -> Result<u32, StreamingError> {
    p.get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| proto("frame payload too short"))
}

/// One connection's header compression state: a deflater for what we send and an inflater for
/// what we receive, each primed with the SPDY/3 dictionary.
pub struct Codec {
    deflate: Compress,
    inflate: Decompress,
}

impl Default for Codec {
    fn default() -> Self {
        Codec::new()
    }
}

impl Codec {
    pub fn new() -> Codec {
        let mut deflate = Compress::new(Compression::best(), true);
        deflate
            .set_dictionary(header_dictionary())
            .expect("a fresh deflate stream accepts a dictionary");
        Codec {
            deflate,
            inflate: Decompress::new(true),
        }
    }

    /// Decode the payload of a frame whose head is `head`.
    pub fn decode(&mut self, head: Head, payload: Bytes) -> Result<Frame, StreamingError> {
        if !head.is_control() {
            return Ok(Frame::Data {
                stream_id: head.word0 & 0x7fff_ffff,
                flags: head.flags,
                data: payload,
            });
        }
        let version = ((head.word0 >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(proto(format!(
                "control frame of SPDY version {version}, only {VERSION} is spoken"
            )));
        }
        let p = &payload[..];
        let flags = head.flags;
        let id = |at| u32_at(p, at).map(|v| v & 0x7fff_ffff);
        Ok(match (head.word0 & 0xffff) as u16 {
            TYPE_SYN_STREAM => {
                if p.len() < 10 {
                    return Err(proto("SYN_STREAM shorter than 10 bytes"));
                }
                Frame::SynStream {
                    stream_id: id(0)?,
                    associated_to: id(4)?,
                    priority: p[8] >> 5,
                    slot: p[9],
                    flags,
                    headers: self.inflate_headers(&p[10..])?,
                }
            }
            TYPE_SYN_REPLY => Frame::SynReply {
                stream_id: id(0)?,
                flags,
                headers: self.inflate_headers(p.get(4..).unwrap_or_default())?,
            },
            TYPE_HEADERS => Frame::Headers {
                stream_id: id(0)?,
                flags,
                headers: self.inflate_headers(p.get(4..).unwrap_or_default())?,
            },
            TYPE_RST_STREAM => Frame::RstStream {
                stream_id: id(0)?,
                status: u32_at(p, 4)?,
            },
            TYPE_SETTINGS => {
                let n = u32_at(p, 0)? as usize;
                let mut entries = Vec::with_capacity(n.min(64));
                for i in 0..n {
                    let at = 4 + 8 * i;
                    let w = u32_at(p, at)?;
                    entries.push(Setting {
                        flags: (w >> 24) as u8,
                        id: w & 0x00ff_ffff,
                        value: u32_at(p, at + 4)?,
                    });
                }
                Frame::Settings { flags, entries }
            }
            TYPE_PING => Frame::Ping { id: u32_at(p, 0)? },
            TYPE_GOAWAY => Frame::GoAway {
                last_good_stream_id: id(0)?,
                status: u32_at(p, 4).unwrap_or(0),
            },
            TYPE_WINDOW_UPDATE => Frame::WindowUpdate {
                stream_id: id(0)?,
                delta: u32_at(p, 4)? & 0x7fff_ffff,
            },
            other => Frame::Unknown { frame_type: other },
        })
    }

    /// Append the wire form of `frame` to `out`.
    pub fn encode(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), StreamingError> {
        let control = |out: &mut BytesMut, ty: u16, flags: u8, payload: &[u8]| {
            out.put_u16(0x8000 | VERSION);
            out.put_u16(ty);
            out.put_u32(((flags as u32) << 24) | payload.len() as u32);
            out.put_slice(payload);
        };
        let mut p = Vec::new();
        match frame {
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                if data.len() > MAX_PAYLOAD {
                    return Err(proto("DATA payload over 16 MiB"));
                }
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(((*flags as u32) << 24) | data.len() as u32);
                out.put_slice(data);
            }
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                slot,
                flags,
                headers,
            } => {
                p.put_u32(*stream_id);
                p.put_u32(*associated_to);
                p.put_u8(priority << 5);
                p.put_u8(*slot);
                self.deflate_headers(headers, &mut p)?;
                control(out, TYPE_SYN_STREAM, *flags, &p);
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            } => {
                p.put_u32(*stream_id);
                self.deflate_headers(headers, &mut p)?;
                control(out, TYPE_SYN_REPLY, *flags, &p);
            }
            Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                p.put_u32(*stream_id);
                self.deflate_headers(headers, &mut p)?;
                control(out, TYPE_HEADERS, *flags, &p);
            }
            Frame::RstStream { stream_id, status } => {
                p.put_u32(*stream_id);
                p.put_u32(*status);
                control(out, TYPE_RST_STREAM, 0, &p);
            }
            Frame::Settings { flags, entries } => {
                p.put_u32(entries.len() as u32);
                for e in entries {
                    p.put_u32(((e.flags as u32) << 24) | (e.id & 0x00ff_ffff));
                    p.put_u32(e.value);
                }
                control(out, TYPE_SETTINGS, *flags, &p);
            }
            Frame::Ping { id } => control(out, TYPE_PING, 0, &id.to_be_bytes()),
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                p.put_u32(*last_good_stream_id);
                p.put_u32(*status);
                control(out, TYPE_GOAWAY, 0, &p);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                p.put_u32(*stream_id);
                p.put_u32(*delta);
                control(out, TYPE_WINDOW_UPDATE, 0, &p);
            }
            Frame::Unknown { frame_type } => {
                return Err(proto(format!("cannot send frame type {frame_type}")))
            }
        }
        Ok(())
    }

    fn deflate_headers(
        &mut self,
        headers: &Headers,
        out: &mut Vec<u8>,
    ) -> Result<(), StreamingError> {
        // Several values of one name travel as one pair, NUL-separated.
        let mut merged: Vec<(String, Vec<&str>)> = Vec::new();
        for (n, v) in headers {
            let n = n.to_ascii_lowercase();
            match merged.iter_mut().find(|(m, _)| *m == n) {
                Some((_, vs)) => vs.push(v),
                None => merged.push((n, vec![v])),
            }
        }
        let mut raw = Vec::new();
        raw.put_u32(merged.len() as u32);
        for (n, vs) in &merged {
            let v = vs.join("\0");
            raw.put_u32(n.len() as u32);
            raw.put_slice(n.as_bytes());
            raw.put_u32(v.len() as u32);
            raw.put_slice(v.as_bytes());
        }
        let mut input = &raw[..];
        loop {
            out.reserve(raw.len() + 64);
            let before_in = self.deflate.total_in();
            self.deflate
                .compress_vec(input, out, FlushCompress::Sync)
                .map_err(|e| proto(format!("compress header block: {e}")))?;
            let used = (self.deflate.total_in() - before_in) as usize;
            input = &input[used..];
            // A sync flush is complete once all input is taken and spare room was left over.
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(());
            }
        }
    }

    fn inflate_headers(&mut self, block: &[u8]) -> Result<Headers, StreamingError> {
        let mut raw: Vec<u8> = Vec::with_capacity(block.len() * 4 + 64);
        let mut input = block;
        loop {
            if raw.len() == raw.capacity() {
                if raw.len() >= MAX_HEADER_BLOCK {
                    return Err(proto("header block larger than 1 MiB"));
                }
                raw.reserve(raw.len().max(256));
            }
            let before_in = self.inflate.total_in();
            let before_out = raw.len();
            let res = self
                .inflate
                .decompress_vec(input, &mut raw, FlushDecompress::Sync);
            let used = (self.inflate.total_in() - before_in) as usize;
            input = &input[used..];
            match res {
                Ok(Status::StreamEnd) => break,
                Ok(_) => {
                    if input.is_empty() && raw.len() < raw.capacity() {
                        break;
                    }
                    if used == 0 && raw.len() == before_out && raw.len() < raw.capacity() {
                        return Err(proto("truncated header block"));
                    }
                }
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(header_dictionary())
                        .map_err(|e| proto(format!("header dictionary refused: {e}")))?;
                }
                Err(e) => return Err(proto(format!("decompress header block: {e}"))),
            }
        }
        parse_header_block(&raw)
    }
}

/// Parse an uncompressed name/value block (32-bit counts and lengths).
pub fn parse_header_block(raw: &[u8]) -> Result<Headers, StreamingError> {
    let n = u32_at(raw, 0)? as usize;
    let mut at = 4;
    let mut out = Headers::new();
    let take = |at: &mut usize| -> Result<&[u8], StreamingError> {
        let len = u32_at(raw, *at)? as usize;
        let s = raw
            .get(*at + 4..*at + 4 + len)
            .ok_or_else(|| proto("header block entry runs past its end"))?;
        *at += 4 + len;
        Ok(s)
    };
    for _ in 0..n {
        let name = take(&mut at)?;
        if name.is_empty() {
            return Err(proto("empty header name"));
        }
        let name = String::from_utf8_lossy(name).into_owned();
        let value = take(&mut at)?;
        for v in value.split(|b| *b == 0) {
            out.push((name.clone(), String::from_utf8_lossy(v).into_owned()));
        }
    }
    Ok(out)
}
