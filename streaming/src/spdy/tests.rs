//! Frame codec tests: frames laid out byte by byte as the Go framer (spdystream, used by
//! client-go and crictl) writes them, and header blocks through two independent zlib contexts.

use bytes::{Bytes, BytesMut};

use super::frame::{Codec, Frame, Head, Setting, FLAG_FIN};

fn decode(codec: &mut Codec, wire: &[u8]) -> Frame {
    let head = Head::parse(wire[..8].try_into().unwrap());
    assert_eq!(head.length, wire.len() - 8, "length field");
    codec
        .decode(head, Bytes::copy_from_slice(&wire[8..]))
        .unwrap()
}

fn encode(codec: &mut Codec, f: &Frame) -> Vec<u8> {
    let mut out = BytesMut::new();
    codec.encode(f, &mut out).unwrap();
    out.to_vec()
}

#[test]
fn data_frame_with_fin() {
    // stream 3, FIN, "hi"
    let wire = [0, 0, 0, 3, 0x01, 0, 0, 2, b'h', b'i'];
    let f = decode(&mut Codec::new(), &wire);
    assert_eq!(
        f,
        Frame::Data {
            stream_id: 3,
            flags: FLAG_FIN,
            data: Bytes::from_static(b"hi")
        }
    );
    assert_eq!(encode(&mut Codec::new(), &f), wire);
}

#[test]
fn fixed_size_control_frames() {
    let mut c = Codec::new();
    // RST_STREAM stream 5, CANCEL (5)
    let rst = [0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 5, 0, 0, 0, 5];
    assert_eq!(
        decode(&mut c, &rst),
        Frame::RstStream {
            stream_id: 5,
            status: 5
        }
    );
    // PING id 1 (client pings are odd)
    let ping = [0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1];
    assert_eq!(decode(&mut c, &ping), Frame::Ping { id: 1 });
    assert_eq!(encode(&mut c, &Frame::Ping { id: 1 }), ping);
    // GOAWAY last good stream 7, OK
    let goaway = [0x80, 3, 0, 7, 0, 0, 0, 8, 0, 0, 0, 7, 0, 0, 0, 0];
    let g = Frame::GoAway {
        last_good_stream_id: 7,
        status: 0,
    };
    assert_eq!(decode(&mut c, &goaway), g);
    assert_eq!(encode(&mut c, &g), goaway);
    // WINDOW_UPDATE stream 1, +65536
    let wu = [0x80, 3, 0, 9, 0, 0, 0, 8, 0, 0, 0, 1, 0, 1, 0, 0];
    assert_eq!(
        decode(&mut c, &wu),
        Frame::WindowUpdate {
            stream_id: 1,
            delta: 65536
        }
    );
    // SETTINGS: one entry, INITIAL_WINDOW_SIZE (7) = 65536
    let settings = [
        0x80, 3, 0, 4, 0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 7, 0, 1, 0, 0,
    ];
    assert_eq!(
        decode(&mut c, &settings),
        Frame::Settings {
            flags: 0,
            entries: vec![Setting {
                flags: 0,
                id: 7,
                value: 65536
            }]
        }
    );
}

#[test]
fn other_spdy_versions_are_refused() {
    let v2_ping = [0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1];
    let head = Head::parse(v2_ping[..8].try_into().unwrap());
    assert!(Codec::new()
        .decode(head, Bytes::copy_from_slice(&v2_ping[8..]))
        .is_err());
}

/// What client-go sends to open an exec's streams: several SYN_STREAMs whose header blocks
/// share one zlib stream (dictionary, best compression, sync flush after each).
#[test]
fn syn_streams_share_one_compression_context() {
    let mut client = Codec::new();
    let mut server = Codec::new();
    let frames: Vec<Frame> = ["error", "stdin", "stdout", "stderr"]
        .iter()
        .enumerate()
        .map(|(i, ty)| Frame::SynStream {
            stream_id: 1 + 2 * i as u32,
            associated_to: 0,
            priority: 0,
            slot: 0,
            flags: 0,
            headers: vec![("streamtype".into(), (*ty).into())],
        })
        .collect();
    for f in &frames {
        let wire = encode(&mut client, f);
        assert_eq!(&wire[..4], &[0x80, 3, 0, 1], "SYN_STREAM, version 3");
        // The first block announces the dictionary: zlib header with FDICT and its Adler-32.
        if f == &frames[0] {
            assert_eq!(wire[18] & 0x20, 0x20, "FDICT");
            assert_eq!(&wire[20..24], &[0xe3, 0xc6, 0xa7, 0xc2]);
        }
        assert_eq!(&decode(&mut server, &wire), f);
    }
}

#[test]
fn syn_reply_and_multi_value_headers() {
    let mut a = Codec::new();
    let mut b = Codec::new();
    let reply = Frame::SynReply {
        stream_id: 1,
        flags: 0,
        headers: vec![],
    };
    assert_eq!(decode(&mut b, &encode(&mut a, &reply)), reply);
    let hs = Frame::Headers {
        stream_id: 3,
        flags: FLAG_FIN,
        headers: vec![
            ("port".into(), "80".into()),
            ("x".into(), "1".into()),
            ("x".into(), "2".into()),
        ],
    };
    assert_eq!(decode(&mut b, &encode(&mut a, &hs)), hs);
}

#[test]
fn garbage_header_blocks_are_errors_not_panics() {
    let mut c = Codec::new();
    let mut wire = vec![0x80, 3, 0, 2, 0, 0, 0, 9, 0, 0, 0, 1];
    wire.extend_from_slice(&[0x78, 0xbb, 0xff, 0xff, 0xff]);
    let head = Head::parse(wire[..8].try_into().unwrap());
    assert!(c.decode(head, Bytes::copy_from_slice(&wire[8..])).is_err());
    assert!(super::frame::parse_header_block(&[0, 0, 0, 1, 0, 0, 0, 9, b'a']).is_err());
}

/// The first frames crictl 1.36 (client-go's SPDY executor, spdystream's Go framer) sent for
/// `echo hi | crictl exec -i C cat`, captured at this server: four SYN_STREAMs whose header
/// blocks continue one zlib stream, stdin data, and stdin's FIN.
#[test]
fn frames_captured_from_crictl_exec() {
    let captured: [&[u8]; 6] = [
        &[
            0x80, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x2a, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x78, 0xf9, 0xe3, 0xc6, 0xa7, 0xc2, 0x62, 0x60, 0x60, 0x60,
            0x04, 0xa7, 0xb3, 0x92, 0xa2, 0xd4, 0xc4, 0x5c, 0x68, 0x51, 0xc2, 0x9a, 0x5a, 0x54,
            0x94, 0x5f, 0x04, 0x00, 0x00, 0x00, 0xff, 0xff,
        ],
        &[
            0x80, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x17, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0xc2, 0x2e, 0x55, 0x5c, 0x92, 0x92, 0x99, 0x07, 0x00, 0x00,
            0x00, 0xff, 0xff,
        ],
        &[
            0x80, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x19, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0xc2, 0x2a, 0xc5, 0x56, 0x5c, 0x92, 0x92, 0x5f, 0x5a, 0x02,
            0x00, 0x00, 0x00, 0xff, 0xff,
        ],
        &[
            0x80, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x15, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0xc2, 0x29, 0x97, 0x5a, 0x54, 0x04, 0x00, 0x00, 0x00, 0xff,
            0xff,
        ],
        &[
            0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x03, b'h', b'i', b'\n',
        ],
        &[0x00, 0x00, 0x00, 0x03, 0x01, 0x00, 0x00, 0x00],
    ];
    let mut c = Codec::new();
    let frames: Vec<Frame> = captured.iter().map(|w| decode(&mut c, w)).collect();
    for (i, ty) in ["error", "stdin", "stdout", "stderr"].iter().enumerate() {
        match &frames[i] {
            Frame::SynStream {
                stream_id,
                associated_to: 0,
                flags: 0,
                headers,
                ..
            } => {
                assert_eq!(*stream_id, 1 + 2 * i as u32);
                assert_eq!(super::frame::header(headers, "streamType"), Some(*ty));
            }
            other => panic!("frame {i}: {other:?}"),
        }
    }
    assert_eq!(
        frames[4],
        Frame::Data {
            stream_id: 3,
            flags: 0,
            data: Bytes::from_static(b"hi\n")
        }
    );
    assert_eq!(
        frames[5],
        Frame::Data {
            stream_id: 3,
            flags: FLAG_FIN,
            data: Bytes::new()
        }
    );
}
