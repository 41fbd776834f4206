use super::*;
use crate::frame::{apply_mask, parse_header};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::IoSlice;

use ProtocolError as PE;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn server() -> Connection {
    Connection::new(Config::default())
}

fn client() -> Connection {
    Connection::new(Config::new(Role::Client))
}

fn server_with_max(max: usize) -> Connection {
    Connection::new(Config {
        role: Role::Server,
        max_message_size: max,
    })
}

/// A frame with the given first byte and minimal length encoding, masked with `mask`.
fn raw_frame(b0: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut out = vec![b0];
    match payload.len() {
        n @ 0..=125 => out.push(mask_bit | n as u8),
        n @ 126..=0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mut body = payload.to_vec();
    if let Some(key) = mask {
        out.extend_from_slice(&key);
        apply_mask(&mut body, key, 0);
    }
    out.extend_from_slice(&body);
    out
}

/// A frame as a client sends it (masked).
fn masked(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame((u8::from(fin) << 7) | opcode, payload, Some(KEY))
}

/// A frame as a server sends it (unmasked).
fn unmasked(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame((u8::from(fin) << 7) | opcode, payload, None)
}

fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    p
}

fn events(conn: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| conn.next_event()).collect()
}

/// Decode (and unmask) every frame in `bytes` as (fin, opcode, payload).
fn frames(bytes: &[u8]) -> Vec<(bool, u8, Vec<u8>)> {
    let mut rest = bytes;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (h, n) = parse_header(rest).unwrap().expect("complete frame");
        let len = h.payload_len as usize;
        let mut payload = rest[n..n + len].to_vec();
        if let Some(key) = h.mask {
            apply_mask(&mut payload, key, 0);
        }
        out.push((h.fin, h.opcode, payload));
        rest = &rest[n + len..];
    }
    out
}

fn take_frames(conn: &mut Connection) -> Vec<(bool, u8, Vec<u8>)> {
    frames(&conn.take_output())
}

/// The status code of the close frame(s) in `conn`'s output.
fn sent_close_codes(conn: &mut Connection) -> Vec<Option<u16>> {
    take_frames(conn)
        .into_iter()
        .filter(|f| f.1 == 8)
        .map(|(_, _, p)| (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]])))
        .collect()
}

fn text(s: &str) -> Event {
    Event::Message(Message::Text(s.to_owned()))
}

fn binary(b: &[u8]) -> Event {
    Event::Message(Message::Binary(Bytes::copy_from_slice(b)))
}

// ----- malformed input table -----

fn malformed_cases() -> Vec<(String, Vec<u8>, ProtocolError, u16)> {
    let mut cases: Vec<(String, Vec<u8>, ProtocolError, u16)> = vec![
        (
            "unmasked text".into(),
            unmasked(true, 1, b"hi"),
            PE::UnmaskedFrame,
            1002,
        ),
        (
            "unmasked close".into(),
            unmasked(true, 8, b""),
            PE::UnmaskedFrame,
            1002,
        ),
        (
            "rsv1".into(),
            raw_frame(0xC1, b"hi", Some(KEY)),
            PE::ReservedBits,
            1002,
        ),
        (
            "rsv2".into(),
            raw_frame(0xA2, b"hi", Some(KEY)),
            PE::ReservedBits,
            1002,
        ),
        (
            "rsv3".into(),
            raw_frame(0x91, b"hi", Some(KEY)),
            PE::ReservedBits,
            1002,
        ),
        (
            "rsv1 ping".into(),
            raw_frame(0xC9, b"", Some(KEY)),
            PE::ReservedBits,
            1002,
        ),
        (
            "ping 126 bytes".into(),
            masked(true, 9, &[b'x'; 126]),
            PE::ControlFrameTooLong,
            1002,
        ),
        (
            "pong 126 bytes".into(),
            masked(true, 10, &[b'x'; 126]),
            PE::ControlFrameTooLong,
            1002,
        ),
        (
            "close 126 bytes".into(),
            masked(true, 8, &[b'x'; 126]),
            PE::ControlFrameTooLong,
            1002,
        ),
        (
            "fragmented ping".into(),
            masked(false, 9, b"p"),
            PE::FragmentedControlFrame,
            1002,
        ),
        (
            "fragmented close".into(),
            masked(false, 8, b""),
            PE::FragmentedControlFrame,
            1002,
        ),
        (
            "continuation first".into(),
            masked(true, 0, b"x"),
            PE::UnexpectedContinuation,
            1002,
        ),
        (
            "continuation after complete message".into(),
            [masked(true, 1, b"a"), masked(true, 0, b"b")].concat(),
            PE::UnexpectedContinuation,
            1002,
        ),
        (
            "text inside fragmented text".into(),
            [masked(false, 1, b"a"), masked(true, 1, b"b")].concat(),
            PE::ExpectedContinuation,
            1002,
        ),
        (
            "binary inside fragmented text".into(),
            [masked(false, 1, b"a"), masked(false, 2, b"b")].concat(),
            PE::ExpectedContinuation,
            1002,
        ),
        (
            "64-bit length with MSB".into(),
            vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4],
            PE::FrameLengthInvalid,
            1002,
        ),
        (
            "invalid UTF-8".into(),
            masked(true, 1, b"ab\xffcd"),
            PE::InvalidUtf8,
            1007,
        ),
        (
            "surrogate".into(),
            masked(true, 1, b"\xed\xa0\x80"),
            PE::InvalidUtf8,
            1007,
        ),
        (
            "overlong".into(),
            masked(true, 1, b"\xc0\xaf"),
            PE::InvalidUtf8,
            1007,
        ),
        (
            "text ends mid-sequence".into(),
            masked(true, 1, b"a\xe2\x82"),
            PE::InvalidUtf8,
            1007,
        ),
        (
            "fragmented text ends mid-sequence".into(),
            [masked(false, 1, b"a\xe2"), masked(true, 0, b"\x82")].concat(),
            PE::InvalidUtf8,
            1007,
        ),
        (
            "invalid UTF-8 in later fragment".into(),
            [masked(false, 1, b"ok"), masked(true, 0, b"\xff")].concat(),
            PE::InvalidUtf8,
            1007,
        ),
        (
            "close length 1".into(),
            masked(true, 8, b"\x03"),
            PE::InvalidClosePayload,
            1002,
        ),
        (
            "close reason not UTF-8".into(),
            masked(true, 8, b"\x03\xe8\xff"),
            PE::InvalidCloseReason,
            1007,
        ),
    ];
    for op in (3..=7).chain(0xB..=0xF) {
        cases.push((
            format!("reserved opcode {op:#x}"),
            masked(true, op, b""),
            PE::ReservedOpcode(op),
            1002,
        ));
    }
    for code in [
        0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535,
    ] {
        cases.push((
            format!("close code {code}"),
            masked(true, 8, &close_payload(code, "")),
            PE::InvalidCloseCode(code),
            1002,
        ));
    }
    cases
}

#[test]
fn malformed_input_table() {
    for (name, bytes, error, code) in malformed_cases() {
        assert_eq!(error.close_code(), code, "{name}");
        // Whole, and byte by byte: same single error, same close frame.
        for byte_by_byte in [false, true] {
            let mut conn = server();
            if byte_by_byte {
                for b in &bytes {
                    conn.receive(std::slice::from_ref(b));
                }
            } else {
                conn.receive(&bytes);
            }
            let evs = events(&mut conn);
            assert_eq!(
                evs.last(),
                Some(&Event::ProtocolError(error.clone())),
                "{name} (byte by byte: {byte_by_byte}): {evs:?}"
            );
            assert_eq!(
                evs.iter()
                    .filter(|e| matches!(e, Event::ProtocolError(_)))
                    .count(),
                1
            );
            assert_eq!(conn.state(), State::Closed, "{name}");
            assert_eq!(conn.close_sent().map(|c| c.code), Some(code), "{name}");
            assert_eq!(sent_close_codes(&mut conn), [Some(code)], "{name}");
            // Everything after the error is ignored.
            conn.receive(&masked(true, 1, b"more"));
            conn.receive(&masked(true, 8, b""));
            assert_eq!(events(&mut conn), []);
            assert!(!conn.has_pending_output());
            assert!(!conn.receive_eof(), "{name}: not a clean close");
        }
    }
}

#[test]
fn error_close_frame_has_reason() {
    let mut conn = server();
    conn.receive(&masked(true, 3, b""));
    let sent = conn.close_sent().unwrap();
    assert_eq!(sent.code, 1002);
    assert_eq!(sent.reason, "reserved opcode 0x3");
    let out = take_frames(&mut conn);
    assert_eq!(out, [(true, 8, close_payload(1002, "reserved opcode 0x3"))]);
}

#[test]
fn events_before_the_error_are_kept() {
    let mut conn = server();
    conn.receive(&[masked(true, 1, b"first"), masked(true, 0xB, b"")].concat());
    assert_eq!(
        events(&mut conn),
        [text("first"), Event::ProtocolError(PE::ReservedOpcode(0xB))]
    );
}

#[test]
fn valid_close_codes_are_accepted() {
    for code in (1000..=1003)
        .chain(1007..=1014)
        .chain([3000, 3999, 4000, 4999])
    {
        let mut conn = server();
        conn.receive(&masked(true, 8, &close_payload(code, "r")));
        assert_eq!(
            events(&mut conn),
            [Event::Closed(Some(CloseFrame {
                code,
                reason: "r".into()
            }))]
        );
        assert_eq!(sent_close_codes(&mut conn), [Some(code)]);
    }
}

#[test]
fn non_minimal_length_is_accepted() {
    let mut conn = server();
    let mut bytes = vec![0x81, 0x80 | 126, 0, 2];
    bytes.extend_from_slice(&KEY);
    bytes.extend([b'h' ^ KEY[0], b'i' ^ KEY[1]]);
    conn.receive(&bytes);
    assert_eq!(events(&mut conn), [text("hi")]);
}

// ----- masking by role -----

#[test]
fn client_rejects_masked_frames() {
    let mut conn = client();
    conn.receive(&masked(true, 1, b"hi"));
    assert_eq!(events(&mut conn), [Event::ProtocolError(PE::MaskedFrame)]);
    assert_eq!(sent_close_codes(&mut conn), [Some(1002)]);
}

#[test]
fn server_never_masks_client_always_masks() {
    let mut s = server();
    s.send_text("hello").unwrap();
    assert_eq!(s.pending_output(), b"\x81\x05hello");

    let mut c = client();
    c.send_text("hello").unwrap();
    c.send_text("hello").unwrap();
    let out = c.take_output();
    let (h1, n1) = parse_header(&out).unwrap().unwrap();
    let (h2, _) = parse_header(&out[n1 + 5..]).unwrap().unwrap();
    assert!(h1.mask.is_some() && h2.mask.is_some());
    assert_ne!(h1.mask, h2.mask, "a fresh key per frame");
    assert_ne!(&out[n1..n1 + 5], b"hello");
    assert_eq!(
        frames(&out),
        [(true, 1, b"hello".to_vec()), (true, 1, b"hello".to_vec())]
    );
}

#[test]
fn client_server_round_trip() {
    let mut c = client();
    let mut s = server();
    let big: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();

    c.send_text("from client").unwrap();
    c.send_binary(&big).unwrap();
    c.send_ping(b"cp").unwrap();
    s.receive(&c.take_output());
    assert_eq!(
        events(&mut s),
        [
            text("from client"),
            binary(&big),
            Event::Ping(Bytes::from_static(b"cp"))
        ]
    );

    s.send_message(&Message::Text("from server".into()))
        .unwrap();
    s.send_message(&Message::Binary(Bytes::from(big.clone())))
        .unwrap();
    s.send_ping(b"sp").unwrap();
    c.receive(&s.take_output()); // includes the pong for "cp"
    assert_eq!(
        events(&mut c),
        [
            Event::Pong(Bytes::from_static(b"cp")),
            text("from server"),
            binary(&big),
            Event::Ping(Bytes::from_static(b"sp")),
        ]
    );
    s.receive(&c.take_output()); // the client's masked pong
    assert_eq!(events(&mut s), [Event::Pong(Bytes::from_static(b"sp"))]);

    // Client-initiated close handshake.
    c.close(Some(1000), "done").unwrap();
    assert_eq!(c.state(), State::Closing);
    s.receive(&c.take_output());
    assert_eq!(
        events(&mut s),
        [Event::Closed(Some(CloseFrame {
            code: 1000,
            reason: "done".into()
        }))]
    );
    assert_eq!(s.state(), State::Closed);
    c.receive(&s.take_output());
    assert_eq!(
        events(&mut c),
        [Event::Closed(Some(CloseFrame {
            code: 1000,
            reason: "done".into()
        }))]
    );
    assert_eq!(c.state(), State::Closed);
    assert!(!c.has_pending_output(), "no second close frame");
    assert!(s.receive_eof() && c.receive_eof());
}

// ----- streaming: splits anywhere -----

fn sample_stream() -> Vec<u8> {
    let big: Vec<u8> = (0..70_000u32).map(|i| (i * 7) as u8).collect();
    let mid: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    let word = "héllo wörld €𝄞".as_bytes();
    [
        masked(true, 1, b"hello"),
        masked(true, 2, &mid),
        // Fragmented text, multi-byte characters split between fragments, with
        // control frames in between.
        masked(false, 1, &word[..2]),
        masked(true, 9, b"ping-1"),
        masked(false, 0, &word[2..13]),
        masked(true, 10, b"pong-1"),
        masked(false, 0, &word[13..17]),
        masked(true, 0, &word[17..]),
        masked(true, 2, &big),
        masked(true, 1, b""),
        masked(true, 2, b""),
        masked(false, 2, b""),
        masked(true, 0, b"x"),
        masked(true, 9, b""),
        masked(true, 8, &close_payload(1000, "bye")),
        // After the close everything is ignored.
        masked(true, 1, b"ignored"),
        vec![0xFF, 0xFF],
    ]
    .concat()
}

fn feed_in_pieces(stream: &[u8], splits: &[usize]) -> (Vec<Event>, Vec<u8>) {
    let mut conn = server();
    let mut out = Vec::new();
    let mut evs = Vec::new();
    let mut pos = 0;
    for &end in splits.iter().chain(std::iter::once(&stream.len())) {
        conn.receive(&stream[pos..end]);
        pos = end;
        evs.extend(events(&mut conn));
        // Drain output in odd-sized writes, like a transport would.
        while conn.has_pending_output() {
            let n = conn.pending_output().len().min(7);
            out.extend_from_slice(&conn.pending_output()[..n]);
            conn.consume_output(n);
        }
    }
    (evs, out)
}

#[test]
fn whole_stream_events() {
    let stream = sample_stream();
    let (evs, out) = feed_in_pieces(&stream, &[]);
    let big: Vec<u8> = (0..70_000u32).map(|i| (i * 7) as u8).collect();
    let mid: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    assert_eq!(
        evs,
        [
            text("hello"),
            binary(&mid),
            Event::Ping(Bytes::from_static(b"ping-1")),
            Event::Pong(Bytes::from_static(b"pong-1")),
            text("héllo wörld €𝄞"),
            binary(&big),
            text(""),
            binary(b""),
            binary(b"x"),
            Event::Ping(Bytes::new()),
            Event::Closed(Some(CloseFrame {
                code: 1000,
                reason: "bye".into()
            })),
        ]
    );
    assert_eq!(
        frames(&out),
        [
            (true, 10, b"ping-1".to_vec()),
            (true, 10, b"".to_vec()),
            (true, 8, close_payload(1000, "bye")),
        ]
    );
}

#[test]
fn byte_at_a_time_and_random_splits_equal_whole() {
    let stream = sample_stream();
    let whole = feed_in_pieces(&stream, &[]);
    let every_byte: Vec<usize> = (1..stream.len()).collect();
    assert_eq!(feed_in_pieces(&stream, &every_byte), whole);

    let mut rng = StdRng::seed_from_u64(0x6455);
    for _ in 0..200 {
        let mut splits: Vec<usize> = (0..rng.random_range(1..60))
            .map(|_| rng.random_range(0..=stream.len()))
            .collect();
        splits.sort_unstable();
        assert_eq!(feed_in_pieces(&stream, &splits), whole, "splits {splits:?}");
    }
}

#[test]
fn fragmented_message_with_pings_between_fragments() {
    let mut conn = server();
    conn.receive(&masked(false, 1, b"Hel"));
    conn.receive(&masked(true, 9, b"p"));
    // The ping is answered before the message is complete.
    assert_eq!(events(&mut conn), [Event::Ping(Bytes::from_static(b"p"))]);
    assert_eq!(take_frames(&mut conn), [(true, 10, b"p".to_vec())]);
    conn.receive(
        &[
            masked(false, 0, b"lo"),
            masked(true, 9, b"q"),
            masked(true, 0, b"!"),
        ]
        .concat(),
    );
    assert_eq!(
        events(&mut conn),
        [Event::Ping(Bytes::from_static(b"q")), text("Hello!")]
    );
    assert_eq!(take_frames(&mut conn), [(true, 10, b"q".to_vec())]);
}

#[test]
fn one_mib_messages() {
    let mib = 1024 * 1024;
    let data: Vec<u8> = (0..mib).map(|i| (i % 251) as u8).collect();
    let mut conn = server();
    for chunk in masked(true, 2, &data).chunks(16 * 1024) {
        conn.receive(chunk);
    }
    assert_eq!(events(&mut conn), [binary(&data)]);

    let text_data: String = "wsbox ünïcödé ".chars().cycle().take(mib).collect();
    let bytes = text_data.as_bytes();
    let quarter = bytes.len() / 4 + 1; // splits inside multi-byte characters
    let mut stream = Vec::new();
    for (i, part) in bytes.chunks(quarter).enumerate() {
        let fin = (i + 1) * quarter >= bytes.len();
        stream.extend(masked(fin, if i == 0 { 1 } else { 0 }, part));
    }
    for chunk in stream.chunks(64 * 1024 + 3) {
        conn.receive(chunk);
    }
    assert_eq!(events(&mut conn), [text(&text_data)]);
}

// ----- incremental, fail-fast UTF-8 -----

#[test]
fn invalid_utf8_reported_before_frame_is_complete() {
    for fin in [true, false] {
        let mut payload = b"hello".to_vec();
        payload.push(0xFF);
        payload.resize(100, b'a');
        let frame = masked(fin, 1, &payload);
        let mut conn = server();
        // Header (2 + 4 mask bytes) plus 10 of the 100 payload bytes.
        conn.receive(&frame[..6 + 10]);
        assert_eq!(
            events(&mut conn),
            [Event::ProtocolError(PE::InvalidUtf8)],
            "fin {fin}"
        );
        assert_eq!(sent_close_codes(&mut conn), [Some(1007)]);
    }
}

#[test]
fn invalid_utf8_in_first_fragment_reported_before_the_rest() {
    let mut conn = server();
    conn.receive(&masked(false, 1, b"ok \xF4\x90 then more"));
    assert_eq!(events(&mut conn), [Event::ProtocolError(PE::InvalidUtf8)]);
}

#[test]
fn invalid_utf8_reported_at_the_offending_byte() {
    // "ab" then F4 90: F4 starts a sequence, 90 makes it exceed U+10FFFF.
    let frame = masked(true, 1, b"ab\xF4\x90\x80\x80cd");
    let mut conn = server();
    let bad_at = 6 + 3; // index of 0x90 in the frame
    for (i, b) in frame.iter().enumerate() {
        conn.receive(std::slice::from_ref(b));
        let evs = events(&mut conn);
        if i < bad_at {
            assert!(evs.is_empty(), "byte {i}: {evs:?}");
        } else {
            assert_eq!(evs, [Event::ProtocolError(PE::InvalidUtf8)], "byte {i}");
            break;
        }
    }
}

#[test]
fn valid_utf8_split_everywhere_is_fine() {
    let word = "a€𝄞ü".as_bytes();
    for cut in 0..=word.len() {
        let stream = [
            masked(false, 1, &word[..cut]),
            masked(true, 0, &word[cut..]),
        ]
        .concat();
        let mut conn = server();
        for b in &stream {
            conn.receive(std::slice::from_ref(b));
        }
        assert_eq!(events(&mut conn), [text("a€𝄞ü")], "cut {cut}");
    }
}

#[test]
fn invalid_utf8_only_in_completing_chunk_still_fails() {
    // The last chunk skips the incremental check; the final check must catch it.
    let mut conn = server();
    let frame = masked(true, 1, b"abcdef\xFF");
    conn.receive(&frame[..8]);
    assert_eq!(events(&mut conn), []);
    conn.receive(&frame[8..]);
    assert_eq!(events(&mut conn), [Event::ProtocolError(PE::InvalidUtf8)]);
}

// ----- max message size -----

#[test]
fn oversized_frame_fails_on_header_alone() {
    let mut conn = server_with_max(100);
    let frame = masked(true, 2, &[0; 101]);
    conn.receive(&frame[..2]); // length byte says 101; the mask is not even here
    assert_eq!(events(&mut conn), []);
    conn.receive(&frame[2..6]);
    assert_eq!(
        events(&mut conn),
        [Event::ProtocolError(PE::MessageTooBig {
            size: 101,
            max: 100
        })]
    );
    assert_eq!(sent_close_codes(&mut conn), [Some(1009)]);
}

#[test]
fn message_at_the_limit_is_accepted() {
    let mut conn = server_with_max(100);
    conn.receive(&masked(true, 2, &[7; 100]));
    conn.receive(
        &[
            masked(false, 1, &[b'a'; 50]),
            masked(true, 9, &[0; 125]),
            masked(true, 0, &[b'b'; 50]),
        ]
        .concat(),
    );
    let evs = events(&mut conn);
    assert_eq!(evs.len(), 3, "{evs:?}");
    assert_eq!(evs[0], binary(&[7; 100]));
    assert!(matches!(&evs[2], Event::Message(Message::Text(t)) if t.len() == 100));
}

#[test]
fn fragments_add_up_to_too_big() {
    let mut conn = server_with_max(100);
    conn.receive(&masked(false, 2, &[0; 60]));
    let second = masked(true, 0, &[0; 41]);
    conn.receive(&second[..6]);
    assert_eq!(
        events(&mut conn),
        [Event::ProtocolError(PE::MessageTooBig {
            size: 101,
            max: 100
        })]
    );
}

#[test]
fn huge_declared_length_fails_without_allocating() {
    let mut conn = server();
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 62).to_be_bytes());
    header.extend_from_slice(&KEY);
    conn.receive(&header);
    assert_eq!(
        events(&mut conn),
        [Event::ProtocolError(PE::MessageTooBig {
            size: 1 << 62,
            max: DEFAULT_MAX_MESSAGE_SIZE
        })]
    );

    // Unlimited: the same header just waits for its payload.
    let mut conn = server_with_max(usize::MAX);
    conn.receive(&header);
    conn.receive(&[1, 2, 3]);
    assert_eq!(events(&mut conn), []);
    assert_eq!(conn.state(), State::Open);
}

// ----- close handshake -----

#[test]
fn peer_closes_first() {
    let mut conn = server();
    conn.receive(&masked(true, 8, &close_payload(1001, "going away")));
    let peer = CloseFrame {
        code: 1001,
        reason: "going away".into(),
    };
    assert_eq!(events(&mut conn), [Event::Closed(Some(peer.clone()))]);
    assert_eq!(conn.state(), State::Closed);
    assert_eq!(conn.close_received(), Some(&peer));
    assert_eq!(conn.close_sent().map(|c| c.code), Some(1001));
    assert_eq!(
        conn.pending_output(),
        b"\x88\x0c\x03\xe9going away",
        "echo: same code and reason"
    );
    assert_eq!(conn.send_text("late"), Err(SendError::Closed));
    assert_eq!(conn.close(Some(1000), ""), Ok(()));
    conn.consume_output(14);
    assert!(!conn.has_pending_output());
    assert!(conn.receive_eof(), "clean close");
}

#[test]
fn peer_closes_with_empty_payload() {
    let mut conn = server();
    conn.receive(&masked(true, 8, b""));
    assert_eq!(events(&mut conn), [Event::Closed(None)]);
    assert_eq!(conn.pending_output(), b"\x88\x00", "empty echo");
    assert_eq!(conn.close_received(), None);
    assert!(conn.receive_eof());
}

#[test]
fn we_close_first() {
    let mut conn = server();
    conn.close(Some(1001), "going away").unwrap();
    assert_eq!(conn.state(), State::Closing);
    assert_eq!(
        take_frames(&mut conn),
        [(true, 8, close_payload(1001, "going away"))]
    );
    assert_eq!(
        conn.close_sent(),
        Some(&CloseFrame {
            code: 1001,
            reason: "going away".into()
        })
    );
    // Nothing else may be sent; a second close is a no-op.
    assert_eq!(conn.send_text("x"), Err(SendError::Closed));
    assert_eq!(conn.send_binary(b"x"), Err(SendError::Closed));
    assert_eq!(conn.send_ping(b"x"), Err(SendError::Closed));
    assert_eq!(conn.send_pong(b"x"), Err(SendError::Closed));
    assert_eq!(
        conn.send_encoded(Bytes::from_static(b"\x81\x00")),
        Err(SendError::Closed)
    );
    assert_eq!(conn.close(Some(1000), ""), Ok(()));
    assert_eq!(
        conn.close(Some(5), ""),
        Ok(()),
        "no validation once closing"
    );
    assert!(!conn.has_pending_output());

    // Data (even fragmented or invalid) and pings from the peer are ignored.
    conn.receive(&masked(true, 1, b"data"));
    conn.receive(&masked(false, 1, b"\xff"));
    conn.receive(&masked(true, 0, b"tail"));
    conn.receive(&masked(true, 9, b"ping"));
    assert_eq!(events(&mut conn), []);
    assert!(!conn.has_pending_output(), "no pong after our close");

    conn.receive(&masked(true, 8, &close_payload(1001, "")));
    assert_eq!(
        events(&mut conn),
        [Event::Closed(Some(CloseFrame {
            code: 1001,
            reason: String::new()
        }))]
    );
    assert_eq!(conn.state(), State::Closed);
    assert!(!conn.has_pending_output(), "no second close frame");
    assert!(conn.receive_eof());
}

#[test]
fn close_while_receiving_a_message() {
    let mut conn = server();
    conn.receive(&masked(false, 1, b"first part"));
    let second = masked(true, 0, &[b'z'; 1000]);
    conn.receive(&second[..500]);
    conn.close(Some(1000), "").unwrap();
    conn.receive(&second[500..]);
    conn.receive(&masked(true, 8, b""));
    assert_eq!(events(&mut conn), [Event::Closed(None)]);
    assert!(conn.receive_eof());
}

#[test]
fn protocol_error_while_closing_sends_no_second_close() {
    let mut conn = server();
    conn.close(None, "").unwrap();
    assert_eq!(take_frames(&mut conn), [(true, 8, vec![])]);
    assert_eq!(conn.close_sent(), None);
    conn.receive(&masked(true, 4, b""));
    assert_eq!(
        events(&mut conn),
        [Event::ProtocolError(PE::ReservedOpcode(4))]
    );
    assert_eq!(conn.state(), State::Closed);
    assert!(!conn.has_pending_output());
    assert!(!conn.receive_eof());
}

#[test]
fn close_argument_validation() {
    let mut conn = server();
    assert_eq!(conn.close(None, "why"), Err(CloseError::ReasonWithoutCode));
    assert_eq!(
        conn.close(Some(1005), ""),
        Err(CloseError::InvalidCode(1005))
    );
    assert_eq!(conn.close(Some(999), ""), Err(CloseError::InvalidCode(999)));
    assert_eq!(
        conn.close(Some(1000), &"é".repeat(62)),
        Err(CloseError::ReasonTooLong(124))
    );
    assert_eq!(conn.state(), State::Open);
    assert!(!conn.has_pending_output());
    conn.close(Some(4000), &"r".repeat(123)).unwrap();
    assert_eq!(conn.state(), State::Closing);
}

#[test]
fn eof_without_close_is_abnormal() {
    let mut conn = server();
    conn.receive(&masked(false, 1, b"partial"));
    assert!(!conn.receive_eof());
    assert_eq!(conn.state(), State::Closed);
    assert_eq!(events(&mut conn), []);
    assert!(!conn.has_pending_output());
    conn.receive(&masked(true, 1, b"after eof"));
    assert_eq!(events(&mut conn), []);
    assert_eq!(conn.send_text("x"), Err(SendError::Closed));
    assert!(!conn.receive_eof(), "still not clean");

    let mut closing = server();
    closing.close(Some(1000), "").unwrap();
    assert!(!closing.receive_eof(), "peer never answered our close");
}

// ----- sending -----

#[test]
fn control_payload_limit_on_send() {
    let mut conn = server();
    assert_eq!(conn.send_ping(&[0; 126]), Err(SendError::PayloadTooLong));
    assert_eq!(conn.send_pong(&[0; 126]), Err(SendError::PayloadTooLong));
    assert!(!conn.has_pending_output());
    conn.send_ping(&[1; 125]).unwrap();
    conn.send_pong(b"").unwrap();
    assert_eq!(
        take_frames(&mut conn),
        [(true, 9, vec![1; 125]), (true, 10, vec![])]
    );
}

#[test]
fn output_length_encodings_and_partial_consumption() {
    let mut conn = server();
    for len in [0usize, 125, 126, 65535, 65536] {
        conn.send_binary(&vec![b'x'; len]).unwrap();
    }
    let mut all = Vec::new();
    while conn.has_pending_output() {
        let n = conn.pending_output().len().min(1000);
        all.extend_from_slice(&conn.pending_output()[..n]);
        conn.consume_output(n);
    }
    conn.consume_output(10); // more than pending: harmless
    let lens: Vec<usize> = frames(&all).iter().map(|f| f.2.len()).collect();
    assert_eq!(lens, [0, 125, 126, 65535, 65536]);
    assert_eq!(&all[..2], b"\x82\x00");
    assert_eq!(&all[2..4], b"\x82\x7d");
}

#[test]
fn send_encoded_passes_frames_through() {
    let mut shared = BytesMut::new();
    frame::encode_frame(&mut shared, true, false, OpCode::Text, b"fan-out", None);
    let mut conn = server();
    conn.send_encoded(shared.freeze()).unwrap();
    assert_eq!(take_frames(&mut conn), [(true, 1, b"fan-out".to_vec())]);
}

// ----- robustness -----

#[test]
fn random_garbage_never_panics() {
    let mut rng = StdRng::seed_from_u64(42);
    let valid = sample_stream();
    for i in 0..3000 {
        let role = if i % 2 == 0 {
            Role::Server
        } else {
            Role::Client
        };
        let mut conn = Connection::new(Config {
            role,
            max_message_size: rng.random_range(0..100_000),
        });
        let mut input = if i % 3 == 0 {
            let mut v = vec![0u8; rng.random_range(0..300)];
            rng.fill(&mut v[..]);
            v
        } else {
            // A valid stream with a few bits flipped.
            let mut v = valid[..rng.random_range(0..valid.len())].to_vec();
            for _ in 0..rng.random_range(1..4) {
                if !v.is_empty() {
                    let at = rng.random_range(0..v.len());
                    v[at] ^= 1 << rng.random_range(0..8);
                }
            }
            v
        };
        if i % 5 == 0 {
            input.truncate(input.len() / 2);
        }
        let mut pos = 0;
        while pos < input.len() {
            let end = (pos + rng.random_range(1..5000)).min(input.len());
            conn.receive(&input[pos..end]);
            pos = end;
            if rng.random_range(0..10) == 0 {
                let _ = conn.send_text("interleaved");
            }
        }
        let evs = events(&mut conn);
        let errors = evs
            .iter()
            .filter(|e| matches!(e, Event::ProtocolError(_)))
            .count();
        let closes = evs.iter().filter(|e| matches!(e, Event::Closed(_))).count();
        assert!(errors + closes <= 1, "{evs:?}");
        if errors + closes == 1 {
            assert!(matches!(
                evs.last(),
                Some(Event::ProtocolError(_) | Event::Closed(_))
            ));
            assert_eq!(conn.state(), State::Closed);
        }
        conn.receive_eof();
    }
}

#[test]
fn connection_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Connection>();
    assert_send_sync::<Event>();
}

#[test]
fn large_buffers_are_released_when_drained() {
    let mut conn = server();
    let big = vec![b'a'; 2_000_000];
    for chunk in masked(true, 1, &big).chunks(100_000) {
        conn.receive(chunk);
    }
    assert_eq!(events(&mut conn).len(), 1);
    assert_eq!(conn.input.capacity(), 0);

    conn.send_binary(&big).unwrap();
    while conn.has_pending_output() {
        let n = conn.pending_output().len().min(65_536);
        conn.consume_output(n);
    }
    assert_eq!(conn.output.tail_capacity(), 0);
    assert_eq!((conn.input_peak, conn.output.tail_peak()), (0, 0));
}

#[test]
fn small_buffers_are_kept_until_compacted() {
    let mut conn = server();
    // A fragment goes through the buffer (a whole message in one read, or
    // one cut off after its header, is not buffered at all).
    let frame = masked(false, 2, &[7u8; 50_000]);
    conn.receive(&frame);
    conn.receive(&masked(true, 0, b""));
    assert_eq!(events(&mut conn).len(), 1);
    conn.send_binary(&[7u8; 50_000]).unwrap();
    let n = conn.pending_output_len();
    conn.consume_output(n);
    // Kept for the next burst (a released buffer resets its peak)...
    assert!(conn.input_peak >= 50_000 && conn.output.tail_peak() >= 50_000);
    // ...until the connection is idle.
    conn.compact_idle();
    assert_eq!((conn.input.capacity(), conn.output.tail_capacity()), (0, 0));
    assert_eq!((conn.input_peak, conn.output.tail_peak()), (0, 0));
}

#[test]
fn replies_to_valid_messages_go_out_before_the_error_close() {
    // A valid message and a bad frame in one read: the host's reply to the
    // first must precede the close for the second (Autobahn 3.2, 4.1.3, ...).
    let mut conn = server();
    let mut input = masked(true, 1, b"first");
    input.extend_from_slice(&masked(true, 3, b""));
    conn.receive(&input);
    let Some(Event::Message(Message::Text(text))) = conn.next_event() else {
        panic!("the valid message comes first");
    };
    conn.send_text(&text).unwrap();
    assert!(matches!(conn.next_event(), Some(Event::ProtocolError(_))));
    let out = frames(&conn.take_output());
    assert_eq!(out[0], (true, 1, b"first".to_vec()));
    assert_eq!(out[1].1, 8, "then the close");
}

/// "one", b"two", a ping, "three": whole plain messages, then a control frame.
fn two_messages_then_a_ping() -> Vec<u8> {
    [
        masked(true, 1, b"one"),
        masked(true, 2, b"two"),
        masked(true, 9, b"ping"),
        masked(true, 1, b"three"),
    ]
    .concat()
}

/// After the two messages of [`two_messages_then_a_ping`]: no pong queued
/// before the host replied to them, then the ping and "three".
fn expect_the_ping_then_three(conn: &mut Connection) {
    assert!(
        !conn.has_pending_output(),
        "no pong before the host's replies"
    );
    assert_eq!(
        conn.next_event(),
        Some(Event::Ping(Bytes::from_static(b"ping")))
    );
    assert_eq!(conn.next_event(), Some(text("three")));
}

#[test]
fn whole_messages_in_one_read_are_taken_without_buffering_and_keep_their_order() {
    // Whole plain messages are taken straight from the read; a ping, a
    // cut-off frame and a bad frame after them still wait for their turn.
    let mut conn = server();
    let input = [
        two_messages_then_a_ping(),
        masked(true, 1, b"bad \xff"),
        masked(true, 1, b"never"),
    ]
    .concat();
    conn.receive(&input);
    assert_eq!(
        conn.input.len(),
        input.len() - 2 * 9,
        "two taken, the rest buffered"
    );
    assert_eq!(conn.next_event(), Some(text("one")));
    assert_eq!(conn.next_event(), Some(binary(b"two")));
    expect_the_ping_then_three(&mut conn);
    assert_eq!(
        conn.next_event(),
        Some(Event::ProtocolError(PE::InvalidUtf8))
    );
    assert_eq!(conn.next_event(), None);
    let out = take_frames(&mut conn);
    assert_eq!(out[0], (true, 10, b"ping".to_vec()));
    assert_eq!(out[1].1, 8, "then the error close");

    // Invalid UTF-8 at the front is not taken either: it fails as before,
    // after the valid message in front of it.
    let mut conn = server();
    conn.receive(&[masked(true, 1, b"ok"), masked(true, 1, b"\xc0\xaf")].concat());
    assert_eq!(
        events(&mut conn),
        [text("ok"), Event::ProtocolError(PE::InvalidUtf8)]
    );

    // A read full of tiny messages queues a bounded number of events at once.
    let mut conn = server();
    conn.receive(&masked(true, 1, b"x").repeat(TAKE_MAX_MESSAGES + 36));
    assert_eq!(conn.input.len(), 36 * 7);
    assert_eq!(events(&mut conn).len(), TAKE_MAX_MESSAGES + 36);

    // A client takes unmasked frames the same way; a cut-off header waits in
    // the buffer.
    let mut conn = client();
    let frame = unmasked(true, 1, b"from the server");
    conn.receive(&[&frame[..], &frame[..1]].concat());
    assert_eq!(conn.input.len(), 1);
    conn.receive(&frame[1..]);
    assert_eq!(
        events(&mut conn),
        [text("from the server"), text("from the server")]
    );
}

#[test]
fn taken_messages_are_drained_into_one_buffer_in_order() {
    let mut conn = server();
    conn.receive(&two_messages_then_a_ping());
    assert_eq!(conn.taken_messages(), 2);
    assert!(conn.next_is_plain_message());
    // Into an empty buffer: the engine's own buffer, no copy.
    let mut data = Vec::new();
    let mut spans = Vec::new();
    conn.drain_taken(&mut data, |text, len| spans.push((text, len)));
    assert_eq!(
        (data.as_slice(), spans.as_slice()),
        (&b"onetwo"[..], &[(true, 3), (false, 3)][..])
    );
    assert_eq!(conn.taken_messages(), 0);
    expect_the_ping_then_three(&mut conn);

    // Into a buffer that holds something: appended after it; next_event
    // hands out what drain_taken did not take.
    let mut conn = server();
    conn.receive(
        &[
            masked(true, 1, b"a"),
            masked(true, 1, b"b"),
            masked(true, 1, b"c"),
        ]
        .concat(),
    );
    assert_eq!(conn.next_event(), Some(text("a")));
    let mut data = b"x".to_vec();
    let mut spans = Vec::new();
    conn.drain_taken(&mut data, |text, len| spans.push((text, len)));
    assert_eq!(
        (data.as_slice(), spans.as_slice()),
        (&b"xbc"[..], &[(true, 1), (true, 1)][..])
    );
    assert_eq!(conn.next_event(), None);

    // Messages taken while events are queued come after them.
    let mut conn = server();
    let big = masked(true, 2, &[5u8; 3000]);
    conn.receive(&big[..100]);
    conn.receive(&[&big[100..], &masked(true, 1, b"after")[..]].concat());
    assert_eq!(conn.taken_messages(), 0, "queued behind the filled message");
    assert_eq!(events(&mut conn), [binary(&[5u8; 3000]), text("after")]);
}

#[test]
fn a_message_cut_off_by_reads_is_filled_without_buffering() {
    let payload = "é".repeat(40_000);
    let frame = masked(true, 1, payload.as_bytes());
    // Cut after the header, inside a two-byte character, and with the next
    // message's start in the last read.
    let next = masked(true, 2, b"next");
    let last = [&frame[20_001..], &next[..3]].concat();
    let mut conn = server();
    for read in [&frame[..20], &frame[20..20_001], &last[..]] {
        conn.receive(read);
    }
    assert_eq!(
        (conn.input.len(), conn.input_peak),
        (3, 3),
        "only the next header's start is buffered"
    );
    conn.receive(&next[3..]);
    assert_eq!(events(&mut conn), [text(&payload), binary(b"next")]);
}

#[test]
fn invalid_utf8_in_a_message_being_filled_fails_fast_after_the_messages_before_it() {
    let frame = masked(
        true,
        1,
        &[b"valid, then \xff".as_slice(), &[b'x'; 1000]].concat(),
    );
    // Nothing queued before it: the connection fails at once, before the
    // rest of the message comes.
    let mut conn = server();
    conn.receive(&frame[..30]);
    assert_eq!(events(&mut conn), [Event::ProtocolError(PE::InvalidUtf8)]);
    assert_eq!(sent_close_codes(&mut conn), [Some(1007)]);
    conn.receive(&frame[30..]);
    assert_eq!(events(&mut conn), []);

    // A message before it: its reply goes out first, then the close.
    let mut conn = server();
    conn.receive(&[&masked(true, 1, b"first")[..], &frame[..30]].concat());
    assert!(conn.next_is_plain_message());
    assert_eq!(conn.next_event(), Some(text("first")));
    assert!(!conn.has_pending_output(), "no close before the reply");
    assert!(!conn.next_is_plain_message());
    conn.receive(&frame[30..]);
    conn.send_text("first").unwrap();
    assert_eq!(
        conn.next_event(),
        Some(Event::ProtocolError(PE::InvalidUtf8))
    );
    let out = take_frames(&mut conn);
    assert_eq!(out[0], (true, 1, b"first".to_vec()));
    assert_eq!(out[1].1, 8, "then the close");
    assert_eq!(conn.next_event(), None);

    // The peer goes away first: an abnormal closure, as when the bad frame
    // waits in the buffer.
    let mut conn = server();
    conn.receive(&[&masked(true, 1, b"first")[..], &frame[..30]].concat());
    assert!(!conn.receive_eof());
    assert_eq!(events(&mut conn), [text("first")]);
}

mod deflate;

// ----- next_is_plain_message: gathering messages before reacting -----

/// Whenever `next_is_plain_message` says yes, the next event is a message
/// and parsing it queued nothing and changed no state.
fn check_plain_message_promise(stream: &[u8], splits: &[usize]) -> usize {
    let mut conn = server();
    let mut promises = 0;
    let mut pos = 0;
    for &end in splits.iter().chain(std::iter::once(&stream.len())) {
        conn.receive(&stream[pos..end]);
        pos = end;
        loop {
            let promised = conn.next_is_plain_message();
            let (output, state) = (conn.pending_output_len(), conn.state());
            let Some(event) = conn.next_event() else {
                break;
            };
            // Invalid UTF-8 is the documented exception: it is only found
            // while the message is parsed.
            if promised && event != Event::ProtocolError(PE::InvalidUtf8) {
                promises += 1;
                assert!(
                    matches!(event, Event::Message(_)),
                    "promised a message, got {event:?}"
                );
                assert_eq!(conn.pending_output_len(), output, "parsing queued output");
                assert_eq!(conn.state(), state);
            }
        }
        let n = conn.pending_output_len();
        conn.consume_output(n);
    }
    promises
}

#[test]
fn plain_message_promise_holds_on_the_sample_stream() {
    let stream = sample_stream();
    // "hello", the 300 B binary, the 70 KB binary, "", b"" are plain messages.
    assert_eq!(check_plain_message_promise(&stream, &[]), 5);
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..200 {
        let mut splits: Vec<usize> = (0..rng.random_range(0..6))
            .map(|_| rng.random_range(0..stream.len()))
            .collect();
        splits.sort_unstable();
        check_plain_message_promise(&stream, &splits);
    }
}

#[test]
fn plain_message_promise_holds_before_every_malformed_frame() {
    for (name, bad, _, _) in malformed_cases() {
        let stream = [masked(true, 1, b"first"), masked(true, 1, b"second"), bad].concat();
        let promises = check_plain_message_promise(&stream, &[]);
        assert!(
            promises >= 1,
            "{name}: the valid message after the first is plain"
        );
    }
}

#[test]
fn plain_message_is_no_for_control_frames_fragments_and_oversize() {
    let mut conn = server_with_max(10);
    conn.receive(
        &[
            masked(true, 1, b"a"),
            masked(true, 1, b"b"),
            masked(true, 9, b"p"),
            masked(true, 2, b"c"),
            masked(false, 1, b"frag"),
            masked(true, 0, b"ment"),
            masked(true, 1, b"way too long for ten"),
        ]
        .concat(),
    );
    let mut seen = Vec::new();
    while let Some(event) = {
        seen.push(conn.next_is_plain_message());
        conn.next_event()
    } {
        let _ = event;
    }
    // a (parsed on receive), b, ping, c, fragmented, oversize -> error, end.
    assert_eq!(seen, [true, true, false, true, false, false, false]);
}

#[test]
fn owned_large_payloads_are_queued_by_reference_after_their_header() {
    let mut conn = server();
    let big = Bytes::from(vec![b'x'; 4096]);
    conn.send_owned(Message::Binary(big.clone())).unwrap();
    conn.send_owned(Message::Text("small".into())).unwrap();
    let mut slices = [IoSlice::new(&[]); 8];
    let n = conn.pending_output_vectored(&mut slices);
    assert_eq!(n, 3, "header, the payload itself, then the small frame");
    assert_eq!(slices[1].as_ptr(), big.as_ptr(), "not copied");
    assert_eq!(conn.pending_output_len(), 4 + 4096 + 7);
    let out = frames(&conn.take_output());
    assert_eq!(out[0], (true, 2, big.to_vec()));
    assert_eq!(out[1], (true, 1, b"small".to_vec()));
}

#[test]
fn owned_payloads_are_masked_copies_for_clients() {
    let mut conn = client();
    let big = Bytes::from(vec![b'y'; 4096]);
    conn.send_owned(Message::Binary(big.clone())).unwrap();
    let mut slices = [IoSlice::new(&[]); 8];
    assert_eq!(conn.pending_output_vectored(&mut slices), 1);
    let out = frames(&conn.take_output());
    assert_eq!(out, vec![(true, 2, big.to_vec())]);
}

#[test]
fn shared_encoded_frames_keep_their_place_in_the_output() {
    let mut conn = server();
    let mut encoded = BytesMut::new();
    frame::encode_frame(&mut encoded, true, false, OpCode::Text, &[b'p'; 1000], None);
    let encoded = encoded.freeze();
    conn.send_text("before").unwrap();
    conn.send_encoded(encoded.clone()).unwrap();
    conn.send_encoded(Bytes::from_static(b"\x81\x02hi"))
        .unwrap();
    conn.send_text("after").unwrap();
    // Written a few bytes at a time, across buffer boundaries.
    let mut wire = Vec::new();
    while conn.has_pending_output() {
        let n = conn.pending_output().len().min(333);
        wire.extend_from_slice(&conn.pending_output()[..n]);
        conn.consume_output(n);
    }
    let texts: Vec<Vec<u8>> = frames(&wire).into_iter().map(|f| f.2).collect();
    assert_eq!(
        texts,
        vec![
            b"before".to_vec(),
            vec![b'p'; 1000],
            b"hi".to_vec(),
            b"after".to_vec()
        ]
    );
    conn.close(Some(1000), "").unwrap();
    assert_eq!(conn.send_encoded(encoded), Err(SendError::Closed));
}
