//! A connection with permessage-deflate that calls `compact_idle` at fuzz-chosen
//! points (between messages, and mid-message where it must change nothing).
//!
//! Raw mode: well-formed frames (mostly with RSV1) whose payloads are arbitrary:
//! inflating never panics, never yields a message over the limit, and what the
//! connection sends is received unchanged by a peer that never compacts.
//!
//! Peer mode: fuzz-chosen messages compressed by a peer that never compacts arrive
//! unchanged, so the inflater's window survives compaction.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wsbox_protocol::deflate::Negotiated;
use wsbox_protocol::{Config, Connection, Event, Message, Role};

#[path = "common.rs"]
mod common;
use common::Reader;

const KEY: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

/// Frame header bit (RSV3 position, never sent) that asks for a compaction.
const COMPACT: u8 = 0x10;

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    let flags = r.byte();
    let role = if flags & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    let peer_role = match role {
        Role::Server => Role::Client,
        Role::Client => Role::Server,
    };
    let max = usize::from(r.u16() % 8192);
    let negotiated = Negotiated {
        server_no_context_takeover: flags & 2 != 0,
        client_no_context_takeover: flags & 4 != 0,
        server_max_window_bits: 8 + r.byte() % 8,
        client_max_window_bits: 8 + r.byte() % 8,
        compression_level: u32::from(r.byte() % 10),
        mem_level: 1 + r.byte() % 9,
        min_compress_size: usize::from(r.byte()),
    };
    let config = |role, max_message_size| Config {
        role,
        max_message_size,
    };
    let peer_mode = flags & 8 != 0;
    let mut conn = Connection::with_deflate(
        config(role, if peer_mode { usize::MAX } else { max }),
        Some(negotiated.clone()),
    );
    // Never compacts; checks what `conn` sends (raw mode) or sends to it (peer mode).
    let mut peer = Connection::with_deflate(config(peer_role, usize::MAX), Some(negotiated));
    if peer_mode {
        peer_mode_run(&mut r, &mut conn, &mut peer);
    } else {
        raw_mode_run(&mut r, role, max, &mut conn, &mut peer);
    }
});

fn raw_mode_run(
    r: &mut Reader<'_>,
    role: Role,
    max: usize,
    conn: &mut Connection,
    peer: &mut Connection,
) {
    let mut finished = false;
    let mut sent: Vec<Message> = Vec::new();
    while !r.is_empty() {
        // Frame header byte: FIN, RSV1 and the opcode from the input (RSV2/3 left
        // out: they only fail the header check).
        let control = r.byte();
        let b0 = control & 0xCF;
        let len = usize::from(r.u16() % 2048);
        let payload = r.take(len);
        let mut frame = vec![b0];
        let mask_bit = if role == Role::Server { 0x80 } else { 0 };
        match payload.len() {
            n @ 0..=125 => frame.push(mask_bit | n as u8),
            n => {
                frame.push(mask_bit | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        let start = frame.len() + if role == Role::Server { 4 } else { 0 };
        if role == Role::Server {
            frame.extend_from_slice(&KEY);
        }
        frame.extend_from_slice(payload);
        if role == Role::Server {
            for (i, b) in frame[start..].iter_mut().enumerate() {
                *b ^= KEY[i % 4];
            }
        }
        // Sometimes in two pieces, compacting in between (mid-frame).
        let cut = if control & COMPACT != 0 {
            frame.len() / 2
        } else {
            frame.len()
        };
        conn.receive(&frame[..cut]);
        if control & COMPACT != 0 {
            conn.compact_idle();
        }
        conn.receive(&frame[cut..]);
        while let Some(event) = conn.next_event() {
            assert!(!finished, "event after the connection finished: {event:?}");
            match event {
                Event::Message(message) => {
                    assert!(message.len() <= max, "{} > {max}", message.len());
                    if conn.send_message(&message).is_ok() {
                        sent.push(message);
                    }
                }
                Event::Ping(payload) | Event::Pong(payload) => assert!(payload.len() <= 125),
                Event::Closed(_) | Event::ProtocolError(_) => finished = true,
            }
        }
        if control & COMPACT != 0 {
            conn.compact_idle();
        }
        if control & 0x20 != 0 {
            // Exercise our compressor with the same (fuzzed) bytes.
            let message = Message::Binary(payload.to_vec().into());
            if conn.send_message(&message).is_ok() {
                sent.push(message);
            }
        }
        check_received(conn, peer, &mut sent);
    }
}

/// Deliver `conn`'s output to `peer`, which must receive exactly the messages in `sent`.
fn check_received(conn: &mut Connection, peer: &mut Connection, sent: &mut Vec<Message>) {
    peer.receive(&conn.take_output());
    while let Some(event) = peer.next_event() {
        match event {
            Event::Message(message) => {
                assert!(!sent.is_empty(), "peer received an unsent {message:?}");
                assert_eq!(message, sent.remove(0), "peer received something else");
            }
            Event::ProtocolError(error) => panic!("peer failed on what we sent: {error}"),
            Event::Ping(_) | Event::Pong(_) | Event::Closed(_) => {}
        }
    }
    let _ = peer.take_output();
}

fn peer_mode_run(r: &mut Reader<'_>, conn: &mut Connection, peer: &mut Connection) {
    while !r.is_empty() {
        let control = r.byte();
        let len = usize::from(r.u16() % 4096);
        let payload = r.take(len);
        let message = Message::Binary(payload.to_vec().into());
        let sent = match control & 3 {
            0 => peer.send_message(&message),
            fragment => peer.send_fragmented(&message, usize::from(fragment) * 7),
        };
        assert_eq!(sent, Ok(()));
        let output = peer.take_output();
        let cut = usize::from(r.u16()) % (output.len() + 1);
        conn.receive(&output[..cut]);
        if control & COMPACT != 0 {
            conn.compact_idle();
        }
        conn.receive(&output[cut..]);
        let events: Vec<Event> = std::iter::from_fn(|| conn.next_event()).collect();
        assert_eq!(events, [Event::Message(message)]);
        if control & 0x20 != 0 {
            conn.compact_idle();
        }
        let _ = conn.take_output();
    }
}
