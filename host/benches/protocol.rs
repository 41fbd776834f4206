//! Micro-benchmarks of the sans-IO protocol engine (`wsbox-protocol`):
//! frame header parse and encode, unmasking against a `memcpy` of the same
//! buffer (the physical floor), UTF-8 validation, the engine's whole
//! receive path (parse + unmask + validate + assemble) per message, and
//! permessage-deflate per message (compress; compress + inflate).
//!
//! Run: `cargo bench -p wsbox --bench protocol` (criterion; add
//! `-- --warm-up-time 1 --measurement-time 2` for a quick pass).

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wsbox::protocol::deflate::{DeflateConfig, Negotiated};
use wsbox::protocol::frame::{OpCode, apply_mask, encode_frame, parse_header};
use wsbox::protocol::{Config, Connection, Event, Role};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const SIZES: [usize; 3] = [20, 4096, 65536];

fn text_payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Text mixing 1-, 2-, 3- and 4-byte sequences, cut to at most `len` bytes
/// on a character boundary.
fn multibyte_text(len: usize) -> String {
    let unit = "plain ascii, κόσμε, ✓ check, 𝄞 clef; ";
    let mut s = unit.repeat(len / unit.len() + 1);
    let mut cut = len.min(s.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s
}

fn masked_frames(opcode: OpCode, payload: &[u8], count: usize) -> Vec<u8> {
    let mut out = BytesMut::new();
    for _ in 0..count {
        encode_frame(&mut out, true, false, opcode, payload, Some(KEY));
    }
    out.to_vec()
}

fn frame_header(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame/parse_header");
    for size in SIZES {
        let frame = masked_frames(OpCode::Binary, &vec![0u8; size], 1);
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::from_parameter(size), &frame, |b, frame| {
            b.iter(|| parse_header(black_box(frame)))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("frame/encode_unmasked");
    for size in SIZES {
        let payload = text_payload(size);
        let mut out = BytesMut::with_capacity(size + 16);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &payload, |b, p| {
            b.iter(|| {
                out.clear();
                encode_frame(&mut out, true, false, OpCode::Text, black_box(p), None);
                black_box(out.len())
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("frame/encode_masked");
    for size in SIZES {
        let payload = text_payload(size);
        let mut out = BytesMut::with_capacity(size + 16);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &payload, |b, p| {
            b.iter(|| {
                out.clear();
                encode_frame(&mut out, true, false, OpCode::Text, black_box(p), Some(KEY));
                black_box(out.len())
            })
        });
    }
    g.finish();
}

fn masking(c: &mut Criterion) {
    let mut g = c.benchmark_group("mask");
    for size in [4096usize, 65536, 1 << 20] {
        g.throughput(Throughput::Bytes(size as u64));
        let src = text_payload(size);
        let mut dst = vec![0u8; size];
        g.bench_function(BenchmarkId::new("memcpy", size), |b| {
            b.iter(|| {
                dst.copy_from_slice(black_box(&src));
                black_box(&dst);
            })
        });
        let mut buf = src.clone();
        g.bench_function(BenchmarkId::new("apply_mask", size), |b| {
            b.iter(|| {
                apply_mask(black_box(&mut buf), KEY, 0);
                black_box(&buf);
            })
        });
        // The receive path unmasks at arbitrary offsets into the payload and
        // arbitrary alignments of the buffer.
        let mut buf = vec![0u8; size + 1];
        g.bench_function(BenchmarkId::new("apply_mask_unaligned", size), |b| {
            b.iter(|| {
                apply_mask(black_box(&mut buf[1..]), KEY, 3);
                black_box(&buf);
            })
        });
    }
    g.finish();
}

fn utf8(c: &mut Criterion) {
    let mut g = c.benchmark_group("utf8");
    for size in [4096usize, 65536] {
        g.throughput(Throughput::Bytes(size as u64));
        let ascii = text_payload(size);
        let multi = multibyte_text(size).into_bytes();
        g.bench_function(BenchmarkId::new("from_utf8_ascii", size), |b| {
            b.iter(|| std::str::from_utf8(black_box(&ascii)).is_ok())
        });
        g.bench_function(BenchmarkId::new("from_utf8_multibyte", size), |b| {
            b.iter(|| std::str::from_utf8(black_box(&multi)).is_ok())
        });
    }
    g.finish();
}

/// The engine's receive path for a batch of masked client frames, as the
/// server sees them: `receive` + `next_event` until the batch is consumed.
fn engine_receive(c: &mut Criterion) {
    const BATCH: usize = 16;
    let mut g = c.benchmark_group("engine/receive");
    for size in SIZES {
        g.throughput(Throughput::Bytes((size * BATCH) as u64));
        let text = text_payload(size);
        for (name, opcode, payload) in [
            ("text", OpCode::Text, text.clone()),
            ("binary", OpCode::Binary, text.clone()),
            (
                "text_multibyte",
                OpCode::Text,
                multibyte_text(size).into_bytes(),
            ),
        ] {
            let wire = masked_frames(opcode, &payload, BATCH);
            let mut conn = Connection::new(Config::new(Role::Server));
            g.bench_function(BenchmarkId::new(name, size), |b| {
                b.iter(|| {
                    conn.receive(black_box(&wire));
                    let mut n = 0;
                    while let Some(event) = conn.next_event() {
                        if let Event::Message(m) = event {
                            n += m.len();
                        }
                    }
                    assert_eq!(n, payload.len() * BATCH);
                })
            });
        }
    }
    g.finish();

    // Server send path: one message queued and taken.
    let mut g = c.benchmark_group("engine/send");
    for size in SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        let text = String::from_utf8(text_payload(size)).unwrap_or_default();
        let mut conn = Connection::new(Config::new(Role::Server));
        g.bench_function(BenchmarkId::new("text", size), |b| {
            b.iter(|| {
                let _ = conn.send_text(black_box(&text));
                let n = conn.pending_output_len();
                conn.consume_output(n);
            })
        });
    }
    g.finish();
}

/// A JSON-like text of about `len` bytes: repetitive, so it compresses.
fn json_like(len: usize) -> String {
    let mut s = String::from(r#"{"type":"order.update","items":["#);
    let mut i = 0u64;
    while s.len() + 80 < len {
        let r = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
        s.push_str(&format!(
            r#"{{"sku":"SKU-{:05}","qty":{},"price":{}.{:02},"tags":["blue","sale"]}},"#,
            r % 100_000,
            r % 9 + 1,
            r % 500,
            r % 100
        ));
        i += 1;
    }
    s.push_str(r#"{"end":true}]}"#);
    s
}

/// permessage-deflate per message (RFC 7692, both sides keeping their
/// context, 15-bit windows): a client engine compressing a 1 KiB JSON-like
/// message, and the same plus a server engine inflating it.
fn deflate(c: &mut Criterion) {
    let mut g = c.benchmark_group("deflate");
    let config = DeflateConfig {
        min_compress_size: 0,
        ..DeflateConfig::default()
    };
    for size in [1024usize, 16384] {
        let text = json_like(size);
        g.throughput(Throughput::Bytes(text.len() as u64));
        let mut client = Connection::with_deflate(
            Config::new(Role::Client),
            Some(Negotiated::with_defaults(&config)),
        );
        g.bench_function(BenchmarkId::new("compress", size), |b| {
            b.iter(|| {
                let _ = client.send_text(black_box(&text));
                let n = client.pending_output_len();
                client.consume_output(n);
                n
            })
        });
        let mut client = Connection::with_deflate(
            Config::new(Role::Client),
            Some(Negotiated::with_defaults(&config)),
        );
        let mut server = Connection::with_deflate(
            Config::new(Role::Server),
            Some(Negotiated::with_defaults(&config)),
        );
        g.bench_function(BenchmarkId::new("compress_then_inflate", size), |b| {
            b.iter(|| {
                let _ = client.send_text(black_box(&text));
                server.receive(&client.take_output());
                let mut n = 0;
                while let Some(event) = server.next_event() {
                    if let Event::Message(m) = event {
                        n += m.len();
                    }
                }
                assert_eq!(n, text.len());
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    frame_header,
    masking,
    utf8,
    engine_receive,
    deflate
);
criterion_main!(benches);
