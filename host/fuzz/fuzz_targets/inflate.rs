//! A connection with permessage-deflate and a small message limit, fed well-formed
//! frames (mostly with RSV1) whose payloads are arbitrary: inflating never panics,
//! never yields a message over the limit, and the compressor keeps working.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wsbox_protocol::deflate::Negotiated;
use wsbox_protocol::{Config, Connection, Role};

#[path = "common.rs"]
mod common;
use common::{Reader, drain};

const KEY: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    let flags = r.byte();
    let role = if flags & 1 == 0 {
        Role::Server
    } else {
        Role::Client
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
    let mut conn = Connection::with_deflate(
        Config {
            role,
            max_message_size: max,
        },
        Some(negotiated),
    );
    let mut finished = false;
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
        conn.receive(&frame);
        drain(&mut conn, max, &mut finished);
        if control & 0x20 != 0 {
            // Exercise our compressor with the same (fuzzed) bytes.
            let _ = conn.send_binary(payload);
        }
        conn.consume_output(usize::MAX);
    }
});
