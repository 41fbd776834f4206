//! Arbitrary bytes fed to a connection in arbitrary-sized chunks: never panics, and
//! the event stream stays well-formed.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wsbox_protocol::deflate::{DeflateConfig, Negotiated};
use wsbox_protocol::{Config, Connection, Message, Role};

#[path = "common.rs"]
mod common;
use common::{Reader, drain, max_message_size};

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    let flags = r.byte();
    let role = if flags & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    let max = max_message_size(r.byte());
    // Sometimes with deflate, so RSV1 frames get past the header checks.
    let deflate = (flags & 2 != 0).then(|| Negotiated {
        min_compress_size: 0,
        ..Negotiated::with_defaults(&DeflateConfig::default())
    });
    let mut conn = Connection::with_deflate(
        Config {
            role,
            max_message_size: max,
        },
        deflate,
    );
    // The chunk schedule comes from a separate byte so the payload stays contiguous.
    let mut schedule = r.byte() as u32 | 1;
    let mut finished = false;
    while !r.is_empty() {
        schedule ^= schedule << 13;
        schedule ^= schedule >> 17;
        schedule ^= schedule << 5;
        let chunk = r.take(1 + (schedule % 300) as usize);
        conn.receive(chunk);
        drain(&mut conn, max, &mut finished);
        if flags & 4 != 0 && schedule.is_multiple_of(7) {
            let _ = conn.send_message(&Message::Text("interleaved".into()));
            let _ = conn.send_ping(b"p");
        }
        if flags & 8 != 0 && schedule.is_multiple_of(31) {
            let _ = conn.close(Some(1000), "bye");
        }
        // The host writes output as it goes.
        let n = conn.pending_output_len() / 2;
        conn.consume_output(n);
    }
    conn.receive_eof();
    drain(&mut conn, max, &mut finished);
});
