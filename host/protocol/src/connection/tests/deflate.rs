//! permessage-deflate in the connection: RFC 7692 §7.2.3 examples, context takeover,
//! bombs, and RSV1 rules.

use super::*;
use crate::deflate::codec::{Decompressor, InflateError};
use crate::deflate::{DeflateConfig, Negotiated};

fn negotiated() -> Negotiated {
    Negotiated {
        min_compress_size: 0,
        ..Negotiated::with_defaults(&DeflateConfig::default())
    }
}

fn deflate_conn(role: Role, max: usize, n: Negotiated) -> Connection {
    Connection::with_deflate(
        Config {
            role,
            max_message_size: max,
        },
        Some(n),
    )
}

fn deflate_server() -> Connection {
    deflate_conn(Role::Server, DEFAULT_MAX_MESSAGE_SIZE, negotiated())
}

fn deflate_client() -> Connection {
    deflate_conn(Role::Client, DEFAULT_MAX_MESSAGE_SIZE, negotiated())
}

/// Decode every frame in `bytes` as (fin, rsv1, opcode, unmasked payload).
fn frames_rsv(bytes: &[u8]) -> Vec<(bool, bool, u8, Vec<u8>)> {
    let mut rest = bytes;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (h, n) = parse_header(rest).unwrap().expect("complete frame");
        let len = h.payload_len as usize;
        let mut payload = rest[n..n + len].to_vec();
        if let Some(key) = h.mask {
            apply_mask(&mut payload, key, 0);
        }
        out.push((h.fin, h.rsv1, h.opcode, payload));
        rest = &rest[n + len..];
    }
    out
}

/// A client frame (masked) with RSV1 set.
fn masked_rsv1(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame((u8::from(fin) << 7) | 0x40 | opcode, payload, Some(KEY))
}

fn error_of(conn: &mut Connection) -> ProtocolError {
    let evs = events(conn);
    match evs.last() {
        Some(Event::ProtocolError(e)) => e.clone(),
        other => panic!("expected a protocol error, got {other:?} in {evs:?}"),
    }
}

/// Raw deflate `data` as a compressed message payload (sync flush, tail stripped).
fn compress(data: &[u8]) -> Vec<u8> {
    let mut c = crate::deflate::codec::Compressor::new(9, 8, 15, true);
    c.compress(data).unwrap()
}

// ----- RFC 7692 §7.2.3 examples -----

const HELLO: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];

#[test]
fn rfc_hello_is_sent_as_in_the_rfc() {
    let mut conn = deflate_server();
    conn.send_text("Hello").unwrap();
    let mut expected = vec![0xc1, 0x07];
    expected.extend_from_slice(&HELLO);
    assert_eq!(conn.take_output().as_ref(), expected);
    // §7.2.3.2: with context takeover the second "Hello" is a back-reference.
    conn.send_text("Hello").unwrap();
    assert_eq!(
        conn.take_output().as_ref(),
        [0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00]
    );
}

#[test]
fn rfc_hello_without_context_takeover_repeats() {
    let mut conn = deflate_conn(
        Role::Server,
        1000,
        Negotiated {
            server_no_context_takeover: true,
            ..negotiated()
        },
    );
    for _ in 0..2 {
        conn.send_text("Hello").unwrap();
        assert_eq!(
            frames_rsv(&conn.take_output()),
            [(true, true, 1, HELLO.to_vec())]
        );
        // Nothing is kept between messages.
        assert_eq!(conn.deflate_memory_estimate(), 0);
    }
}

#[test]
fn rfc_examples_are_received() {
    let cases: &[(&str, Vec<Vec<u8>>)] = &[
        // §7.2.3.1: one compressed frame, then the same message in two fragments.
        ("single", vec![masked_rsv1(true, 1, &HELLO)]),
        (
            "fragmented",
            vec![
                masked_rsv1(false, 1, &HELLO[..3]),
                masked(true, 0, &HELLO[3..]),
            ],
        ),
        // §7.2.3.3: a stored (uncompressed) block.
        (
            "stored block",
            vec![masked_rsv1(
                true,
                1,
                &[
                    0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
                ],
            )],
        ),
        // §7.2.3.4: BFINAL set (the appended tail is then ignored).
        (
            "bfinal",
            vec![masked_rsv1(
                true,
                1,
                &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00],
            )],
        ),
        // §7.2.3.5: two deflate blocks in one message.
        (
            "two blocks",
            vec![masked_rsv1(
                true,
                1,
                &[
                    0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
                ],
            )],
        ),
    ];
    for (name, frames) in cases {
        let mut conn = deflate_server();
        for f in frames {
            conn.receive(f);
        }
        assert_eq!(events(&mut conn), [text("Hello")], "{name}");
    }
}

#[test]
fn rfc_context_takeover_is_received() {
    let mut conn = deflate_server();
    conn.receive(&masked_rsv1(true, 1, &HELLO));
    conn.receive(&masked_rsv1(true, 1, &[0xf2, 0x00, 0x11, 0x00, 0x00]));
    assert_eq!(events(&mut conn), [text("Hello"), text("Hello")]);
    // §7.2.3.6: an empty message can be a single 0x00 byte; messages may also go
    // uncompressed, and the context carries on past them.
    conn.receive(&masked_rsv1(true, 2, &[0x00]));
    conn.receive(&masked(true, 1, b"plain"));
    conn.receive(&masked_rsv1(true, 1, &[0xf2, 0x00, 0x11, 0x00, 0x00]));
    assert_eq!(
        events(&mut conn),
        [binary(b""), text("plain"), text("Hello")]
    );
}

#[test]
fn peer_without_context_takeover_lets_us_drop_the_inflater() {
    let mut conn = deflate_conn(
        Role::Server,
        1000,
        Negotiated {
            client_no_context_takeover: true,
            ..negotiated()
        },
    );
    conn.receive(&masked_rsv1(true, 1, &HELLO));
    assert_eq!(events(&mut conn), [text("Hello")]);
    assert_eq!(conn.deflate_memory_estimate(), 0);
    conn.receive(&masked_rsv1(true, 1, &HELLO));
    assert_eq!(events(&mut conn), [text("Hello")]);
    // With takeover the inflater stays (a client's window lives in it).
    let mut conn = deflate_server();
    assert_eq!(conn.deflate_memory_estimate(), 0, "created lazily");
    conn.receive(&masked_rsv1(true, 1, &HELLO));
    assert_eq!(events(&mut conn), [text("Hello")]);
    assert!(conn.deflate_memory_estimate() > 32 * 1024);
}

// ----- compact_idle -----

#[test]
fn rfc_hello_twice_across_compaction() {
    let mut conn = deflate_server();
    conn.send_text("Hello").unwrap();
    assert_eq!(frames_rsv(&conn.take_output())[0].3, HELLO);
    assert!(conn.deflate_memory_estimate() > 100 * 1024);
    conn.compact_idle();
    // Only the 5 bytes of history are left.
    assert!(conn.deflate_memory_estimate() < 64);
    // §7.2.3.2: still a back-reference into the first message.
    conn.send_text("Hello").unwrap();
    assert_eq!(
        conn.take_output().as_ref(),
        [0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00]
    );
}

#[test]
fn context_takeover_is_received_across_compaction() {
    let mut conn = deflate_server();
    conn.receive(&masked_rsv1(true, 1, &HELLO));
    assert_eq!(events(&mut conn), [text("Hello")]);
    assert!(conn.deflate_memory_estimate() > 32 * 1024);
    conn.compact_idle();
    assert_eq!(conn.deflate_memory_estimate(), 5);
    conn.receive(&masked_rsv1(true, 1, &[0xf2, 0x00, 0x11, 0x00, 0x00]));
    assert_eq!(events(&mut conn), [text("Hello")]);
    // Uncompressed messages do not enter the window, on either side.
    conn.receive(&masked(true, 1, b"plain"));
    conn.compact_idle();
    conn.receive(&masked_rsv1(true, 1, &[0xf2, 0x00, 0x11, 0x00, 0x00]));
    assert_eq!(events(&mut conn), [text("plain"), text("Hello")]);
}

#[test]
fn compaction_mid_message_waits_for_its_end() {
    let mut conn = deflate_server();
    conn.receive(&masked_rsv1(true, 1, &HELLO));
    assert_eq!(events(&mut conn), [text("Hello")]);
    // A fragmented message, compacted between fragments and inside a frame: the
    // inflater holds part of the message and is kept.
    conn.receive(&masked_rsv1(false, 1, &[0xf2, 0x00]));
    conn.compact_idle();
    assert!(conn.deflate_memory_estimate() > 32 * 1024);
    let last = masked(true, 0, &[0x11, 0x00, 0x00]);
    conn.receive(&last[..4]);
    conn.compact_idle();
    assert!(conn.deflate_memory_estimate() > 32 * 1024);
    conn.receive(&last[4..]);
    assert_eq!(events(&mut conn), [text("Hello")]);
    conn.compact_idle();
    assert_eq!(conn.deflate_memory_estimate(), 10);
    conn.receive(&masked_rsv1(true, 1, &[0xf2, 0x00, 0x11, 0x00, 0x00]));
    assert_eq!(events(&mut conn), [text("Hello")]);
}

#[test]
fn compaction_round_trips_in_both_roles() {
    for bits in [9u8, 12, 15] {
        let n = Negotiated {
            server_max_window_bits: bits,
            client_max_window_bits: bits,
            ..negotiated()
        };
        let mut server = deflate_conn(Role::Server, 1 << 20, n.clone());
        let mut client = deflate_conn(Role::Client, 1 << 20, n);
        let mut rng = StdRng::seed_from_u64(u64::from(bits));
        let mut sent = Vec::new();
        for i in 0..20 {
            // Mostly repeats of what went before, so that back-references abound.
            let mut data = Vec::new();
            while data.len() < 3000 {
                if !sent.is_empty() && rng.random_bool(0.7) {
                    let at = rng.random_range(0..sent.len());
                    let end = (at + rng.random_range(3..300)).min(sent.len());
                    data.extend_from_slice(&sent[at..end]);
                } else {
                    data.push(rng.random_range(b'a'..=b'z'));
                }
            }
            sent.extend_from_slice(&data);
            let message = Message::Binary(Bytes::from(data));
            // One side compacts, the other never does; they take turns.
            let (compacting, other) = if i < 10 {
                (&mut server, &mut client)
            } else {
                (&mut client, &mut server)
            };
            compacting.send_message(&message).unwrap();
            other.receive(&compacting.take_output());
            assert_eq!(events(other), [Event::Message(message.clone())]);
            compacting.compact_idle();
            other.send_message(&message).unwrap();
            compacting.receive(&other.take_output());
            assert_eq!(events(compacting), [Event::Message(message)]);
            compacting.compact_idle();
            let estimate = compacting.deflate_memory_estimate();
            if sent.len() >= 1 << bits {
                assert_eq!(estimate, 2 << bits, "{bits} {i}");
            }
            assert!(estimate <= 2 << bits, "{bits} {i}");
        }
    }
}

#[test]
fn compaction_without_anything_to_compact() {
    // No permessage-deflate; nothing sent yet; closing; closed.
    let mut plain = server();
    plain.compact_idle();
    plain.receive(&masked(true, 1, b"still works"));
    assert_eq!(events(&mut plain), [text("still works")]);
    let mut conn = deflate_server();
    conn.compact_idle();
    assert_eq!(conn.deflate_memory_estimate(), 0);
    conn.receive(&masked_rsv1(true, 1, &HELLO));
    conn.send_text("Hello").unwrap();
    conn.close(Some(1000), "").unwrap();
    conn.compact_idle();
    // Closing: nothing more is sent or inflated, so nothing is kept.
    assert_eq!(conn.deflate_memory_estimate(), 0);
    conn.receive(&masked_rsv1(true, 1, &[0xf2, 0x00, 0x11, 0x00, 0x00]));
    conn.receive(&masked(true, 8, &close_payload(1000, "")));
    assert_eq!(
        events(&mut conn),
        [
            text("Hello"),
            Event::Closed(Some(CloseFrame {
                code: 1000,
                reason: String::new()
            }))
        ]
    );
    conn.compact_idle();
    assert_eq!(conn.state(), State::Closed);
    // After a protocol error, mid-message.
    let mut conn = deflate_server();
    conn.receive(&masked_rsv1(false, 1, &[0xff, 0xff]));
    conn.receive(&masked(true, 0, &[0xff]));
    assert_eq!(error_of(&mut conn), PE::InvalidCompressedData);
    conn.compact_idle();
    assert_eq!(conn.deflate_memory_estimate(), 0);
}

// ----- sending -----

#[test]
fn small_messages_and_control_frames_go_out_uncompressed() {
    let mut conn = deflate_conn(
        Role::Server,
        1000,
        Negotiated::with_defaults(&DeflateConfig::default()),
    );
    conn.send_text("short").unwrap();
    conn.send_ping(b"ping ping ping ping ping ping").unwrap();
    let big = "a".repeat(300);
    conn.send_text(&big).unwrap();
    conn.close(Some(1000), "bye bye bye bye bye bye bye")
        .unwrap();
    let out = frames_rsv(&conn.take_output());
    assert_eq!(out[0], (true, false, 1, b"short".to_vec()));
    assert!(!out[1].1);
    assert!(out[2].1 && out[2].3.len() < 20, "{:?}", out[2]);
    assert!(!out[3].1);
    assert!(conn.deflate_memory_estimate() > 0, "context kept");
}

#[test]
fn fragmented_send_sets_rsv1_on_the_first_frame_only() {
    let mut server = deflate_server();
    let message = Message::Text("fragment me ".repeat(50));
    server.send_fragmented(&message, 7).unwrap();
    let out = server.take_output();
    let frames = frames_rsv(&out);
    assert!(frames.len() > 2);
    assert!(frames[0].1 && frames[0].2 == 1 && !frames[0].0);
    assert!(
        frames[1..]
            .iter()
            .all(|f| !f.1 && f.2 == 0 && f.3.len() <= 7)
    );
    assert!(frames.last().unwrap().0);
    let mut client = deflate_client();
    client.receive(&out);
    assert_eq!(events(&mut client), [Event::Message(message)]);
    // Uncompressed messages fragment too; empty ones are one frame.
    let mut plain = super::server();
    plain
        .send_fragmented(&Message::Binary(Bytes::from_static(b"abcde")), 2)
        .unwrap();
    plain
        .send_fragmented(&Message::Binary(Bytes::new()), 0)
        .unwrap();
    assert_eq!(
        take_frames(&mut plain),
        [
            (false, 2, b"ab".to_vec()),
            (false, 0, b"cd".to_vec()),
            (true, 0, b"e".to_vec()),
            (true, 2, vec![]),
        ]
    );
}

#[test]
fn client_and_server_round_trip_with_every_window() {
    for bits in 8..=15u8 {
        for no_takeover in [false, true] {
            let n = Negotiated {
                server_max_window_bits: bits,
                client_max_window_bits: bits,
                server_no_context_takeover: no_takeover,
                client_no_context_takeover: no_takeover,
                ..negotiated()
            };
            let mut server = deflate_conn(Role::Server, 1 << 20, n.clone());
            let mut client = deflate_conn(Role::Client, 1 << 20, n);
            let mut rng = StdRng::seed_from_u64(u64::from(bits));
            for i in 0..6 {
                let len = rng.random_range(0..5000);
                let data: Vec<u8> = (0..len).map(|_| rng.random_range(b'a'..=b'h')).collect();
                let message = Message::Binary(Bytes::from(data));
                client.send_fragmented(&message, 1 + i * 300).unwrap();
                server.receive(&client.take_output());
                assert_eq!(events(&mut server), [Event::Message(message.clone())]);
                server.send_message(&message).unwrap();
                client.receive(&server.take_output());
                assert_eq!(events(&mut client), [Event::Message(message)]);
            }
        }
    }
}

#[test]
fn window_of_8_bits_is_respected() {
    // zlib cannot deflate raw with 8 bits; a strict 8-bit inflater must still cope.
    let n = Negotiated {
        server_max_window_bits: 8,
        ..negotiated()
    };
    let mut conn = deflate_conn(Role::Server, 1 << 20, n);
    let data: Vec<u8> = (0..20_000u32)
        .map(|i| (i % 251) as u8 ^ (i / 700) as u8)
        .collect();
    conn.send_binary(&data).unwrap();
    let (_, rsv1, _, mut payload) = frames_rsv(&conn.take_output()).remove(0);
    assert!(rsv1);
    payload.extend_from_slice(&crate::deflate::codec::TAIL);
    let mut strict = zlib_rs::Inflate::new(false, 8);
    let mut out = vec![0u8; data.len() + 16];
    strict
        .decompress(&payload, &mut out, zlib_rs::InflateFlush::SyncFlush)
        .unwrap();
    out.truncate(strict.total_out() as usize);
    assert_eq!(out, data);
}

// ----- errors -----

#[test]
fn rsv1_is_only_allowed_on_the_first_data_frame() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("ping", masked_rsv1(true, 9, b"")),
        ("pong", masked_rsv1(true, 0xA, b"")),
        ("close", masked_rsv1(true, 8, &close_payload(1000, ""))),
        (
            "continuation",
            [
                masked_rsv1(false, 1, &HELLO[..3]),
                masked_rsv1(true, 0, &HELLO[3..]),
            ]
            .concat(),
        ),
        (
            "continuation of uncompressed",
            [masked(false, 1, b"a"), masked_rsv1(true, 0, b"b")].concat(),
        ),
        ("rsv2", raw_frame(0xA1, b"", Some(KEY))),
        ("rsv3", raw_frame(0x91, b"", Some(KEY))),
    ];
    for (name, input) in cases {
        let mut conn = deflate_server();
        conn.receive(&input);
        assert_eq!(error_of(&mut conn), PE::ReservedBits, "{name}");
        assert_eq!(sent_close_codes(&mut conn), [Some(1002)], "{name}");
    }
}

#[test]
fn rsv1_without_negotiation_is_a_protocol_error() {
    for mut conn in [server(), Connection::with_deflate(Config::default(), None)] {
        assert!(!conn.is_deflate_enabled());
        conn.receive(&masked_rsv1(true, 1, &HELLO));
        assert_eq!(error_of(&mut conn), PE::ReservedBits);
        assert_eq!(sent_close_codes(&mut conn), [Some(1002)]);
    }
    let mut client = client();
    client.receive(&raw_frame(0xC1, &HELLO, None));
    assert_eq!(error_of(&mut client), PE::ReservedBits);
}

#[test]
fn corrupt_data_fails_with_1007() {
    for payload in [
        &[0xff, 0xff, 0xff][..],
        &[0x07],
        &[0xf2, 0x00, 0x11, 0x00, 0x00],
    ] {
        let mut conn = deflate_server();
        conn.receive(&masked_rsv1(true, 2, payload));
        assert_eq!(
            error_of(&mut conn),
            PE::InvalidCompressedData,
            "{payload:?}"
        );
        assert_eq!(sent_close_codes(&mut conn), [Some(1007)]);
    }
}

#[test]
fn compressed_invalid_utf8_fails_with_1007() {
    let mut conn = deflate_server();
    conn.receive(&masked_rsv1(true, 1, &compress(b"ok \xff not ok")));
    assert_eq!(error_of(&mut conn), PE::InvalidUtf8);
    assert_eq!(sent_close_codes(&mut conn), [Some(1007)]);
    // In a fragmented message it is reported before the message ends.
    let mut conn = deflate_server();
    let payload = compress(&[b"valid start ".as_slice(), &[0xc0, 0x80], &[b'x'; 2000]].concat());
    conn.receive(&masked_rsv1(false, 1, &payload));
    assert_eq!(error_of(&mut conn), PE::InvalidUtf8);
}

#[test]
fn inflate_bomb_fails_with_1009_within_the_limit() {
    let max = 64 * 1024;
    let bomb = compress(&vec![0u8; 50 * 1024 * 1024]);
    assert!(bomb.len() < 60 * 1024, "{}", bomb.len());
    let mut conn = deflate_conn(Role::Server, max, negotiated());
    conn.receive(&masked_rsv1(true, 2, &bomb));
    assert_eq!(error_of(&mut conn), PE::InflatedTooBig { max });
    assert_eq!(sent_close_codes(&mut conn), [Some(1009)]);
    // The same bomb spread over many fragments.
    let mut conn = deflate_conn(Role::Server, max, negotiated());
    let mut input = masked_rsv1(false, 2, &bomb[..10]);
    for chunk in bomb[10..].chunks(100) {
        input.extend_from_slice(&masked(false, 0, chunk));
    }
    conn.receive(&input);
    assert_eq!(error_of(&mut conn), PE::InflatedTooBig { max });
    assert_eq!(sent_close_codes(&mut conn), [Some(1009)]);
}

#[test]
fn inflater_never_holds_more_than_the_limit() {
    let bomb = compress(&vec![b'z'; 10 * 1024 * 1024]);
    for max in [0, 1, 100, 4095, 4096, 65_536, 1_000_000] {
        let mut d = Decompressor::new(15, false);
        let mut out = Vec::new();
        assert_eq!(d.inflate(&bomb, &mut out, max), Err(InflateError::TooBig));
        assert!(out.capacity() <= max + 1, "{max}: {}", out.capacity());
    }
}

#[test]
fn inflated_message_at_the_limit_is_accepted() {
    let data = vec![b'q'; 10_000];
    let mut conn = deflate_conn(Role::Server, 10_000, negotiated());
    conn.receive(&masked_rsv1(true, 2, &compress(&data)));
    assert_eq!(events(&mut conn), [binary(&data)]);
    let mut conn = deflate_conn(Role::Server, 9_999, negotiated());
    conn.receive(&masked_rsv1(true, 2, &compress(&data)));
    assert_eq!(error_of(&mut conn), PE::InflatedTooBig { max: 9_999 });
}

#[test]
fn incompressible_message_near_the_limit_is_accepted() {
    // Compressed data may be a little larger than the message itself.
    let mut rng = StdRng::seed_from_u64(3);
    let mut data = vec![0u8; 100_000];
    rng.fill(&mut data[..]);
    let payload = compress(&data);
    assert!(payload.len() > data.len());
    let mut conn = deflate_conn(Role::Server, data.len(), negotiated());
    conn.receive(&masked_rsv1(true, 2, &payload));
    assert_eq!(events(&mut conn), [binary(&data)]);
}

#[test]
fn close_in_the_middle_of_a_compressed_message() {
    let mut conn = deflate_server();
    conn.receive(&masked_rsv1(false, 1, &HELLO[..3]));
    conn.close(Some(1000), "").unwrap();
    conn.receive(&masked(true, 0, &HELLO[3..]));
    conn.receive(&masked(true, 8, &close_payload(1000, "")));
    assert_eq!(
        events(&mut conn),
        [Event::Closed(Some(CloseFrame {
            code: 1000,
            reason: String::new()
        }))]
    );
}

#[test]
fn random_garbage_with_deflate_never_panics() {
    let mut rng = StdRng::seed_from_u64(99);
    for i in 0..2000 {
        let mut n = negotiated();
        n.server_max_window_bits = rng.random_range(8..=15);
        n.client_max_window_bits = rng.random_range(8..=15);
        n.client_no_context_takeover = rng.random();
        let mut conn = deflate_conn(Role::Server, rng.random_range(0..5000), n);
        let mut input = Vec::new();
        for _ in 0..rng.random_range(1..4) {
            let mut payload = if i % 2 == 0 {
                compress(&vec![b'x'; rng.random_range(0..10_000)])
            } else {
                vec![0u8; rng.random_range(0..200)]
            };
            for _ in 0..rng.random_range(0..4) {
                if !payload.is_empty() {
                    let at = rng.random_range(0..payload.len());
                    payload[at] = rng.random();
                }
            }
            let b0 = (rng.random::<u8>() & 0xCF) | (0x80 * u8::from(rng.random::<bool>()));
            input.extend_from_slice(&raw_frame(b0 | 0x40, &payload, Some(KEY)));
        }
        for chunk in input.chunks(rng.random_range(1..3000)) {
            conn.receive(chunk);
            let _ = conn.send_binary(&[b'y'; 300]);
        }
        let evs = events(&mut conn);
        assert!(
            evs.iter()
                .filter(|e| matches!(e, Event::ProtocolError(_) | Event::Closed(_)))
                .count()
                <= 1
        );
    }
}
