//! Compaction of the codec: the window read back from an inflater, the compressor's
//! saved history, and round trips where only one side ever compacts.

use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const MAX: usize = 1 << 24;

/// A message that refers back to earlier ones: pieces of `past` mixed with fresh
/// bytes from a small alphabet.
fn message(rng: &mut StdRng, past: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        if !past.is_empty() && rng.random_bool(0.5) {
            let start = rng.random_range(0..past.len());
            let end = (start + rng.random_range(1..200)).min(past.len());
            out.extend_from_slice(&past[start..end]);
        } else {
            let n = rng.random_range(1..50);
            out.extend((0..n).map(|_| rng.random_range(b'a'..=b'p')));
        }
    }
    out.truncate(len);
    out
}

/// Empty messages go out uncompressed, so they are not drawn here.
fn message_len(rng: &mut StdRng) -> usize {
    match rng.random_range(0..10) {
        0..=5 => rng.random_range(1..300),
        6..=8 => rng.random_range(300..5000),
        _ => rng.random_range(5000..70_000),
    }
}

fn inflate_message(d: &mut Decompressor, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    d.inflate(payload, &mut out, MAX).unwrap();
    d.finish(&mut out, MAX).unwrap();
    out
}

fn expected_window(sent: &[u8], bits: u8) -> &[u8] {
    &sent[sent.len().saturating_sub(1 << bits)..]
}

#[test]
fn distance_codes_follow_rfc_1951() {
    // (base distance, extra bits) of codes 0-29.
    const TABLE: [(usize, u32); 30] = [
        (1, 0),
        (2, 0),
        (3, 0),
        (4, 0),
        (5, 1),
        (7, 1),
        (9, 2),
        (13, 2),
        (17, 3),
        (25, 3),
        (33, 4),
        (49, 4),
        (65, 5),
        (97, 5),
        (129, 6),
        (193, 6),
        (257, 7),
        (385, 7),
        (513, 8),
        (769, 8),
        (1025, 9),
        (1537, 9),
        (2049, 10),
        (3073, 10),
        (4097, 11),
        (6145, 11),
        (8193, 12),
        (12289, 12),
        (16385, 13),
        (24577, 13),
    ];
    for dist in 1..=32768usize {
        let (code, extra_bits, extra) = distance_code(dist);
        let (base, bits) = TABLE[code as usize];
        assert_eq!((extra_bits, base + extra as usize), (bits, dist), "{dist}");
        assert!(extra < 1 << bits);
    }
}

#[test]
fn window_is_read_back_exactly() {
    let mut rng = StdRng::seed_from_u64(1);
    for bits in 9..=15u8 {
        for _ in 0..6 {
            let mut c = Compressor::new(6, 8, bits, false);
            let mut d = Decompressor::new(bits, false);
            let mut sent = Vec::new();
            // Every length of window up to past the full one, 1 and 2 included.
            let target = rng.random_range(0..(3usize << bits));
            while sent.len() < target {
                let len = rng.random_range(1..=(target - sent.len()).min(3000));
                let data = message(&mut rng, &sent, len);
                let payload = c.compress(&data).unwrap();
                assert_eq!(inflate_message(&mut d, &payload), data);
                sent.extend_from_slice(&data);
            }
            let stream = d.stream.as_mut();
            let n = (1usize << bits).min(sent.len());
            let window = match stream {
                Some(stream) => read_window(stream, n),
                None => Some(Vec::new()),
            };
            assert_eq!(window.as_deref(), Some(expected_window(&sent, bits)));
        }
    }
    // The smallest windows, which matches overrun.
    for n in 1..=3 {
        let mut c = Compressor::new(6, 8, 15, true);
        let mut d = Decompressor::new(15, false);
        let data = b"xyz"[..n].to_vec();
        inflate_message(&mut d, &c.compress(&data).unwrap());
        let stream = d.stream.as_mut().unwrap();
        assert_eq!(read_window(stream, n), Some(data));
    }
}

#[test]
fn stream_not_at_a_block_boundary_is_detected() {
    // A compressor's output cut inside a Huffman block: the inflater is mid-block.
    let data: Vec<u8> = (0..20_000u32).map(|i| (i * i % 251) as u8).collect();
    let mut deflate = Deflate::new(6, false, 15);
    let mut compressed = vec![0u8; 40_000];
    deflate
        .compress(&data, &mut compressed, DeflateFlush::Finish)
        .unwrap();
    compressed.truncate(deflate.total_out() as usize);
    let mut d = Decompressor::new(15, false);
    let mut out = Vec::new();
    d.inflate(&compressed[..compressed.len() / 2], &mut out, MAX)
        .unwrap();
    assert!(!out.is_empty());
    let n = out.len().min(1 << 15);
    let stream = d.stream.as_mut().unwrap();
    assert_eq!(read_window(stream, n), None);
    // More than the window holds is refused too.
    let mut d = Decompressor::new(15, false);
    let mut c = Compressor::new(6, 8, 15, false);
    inflate_message(&mut d, &c.compress(b"hello hello").unwrap());
    assert_eq!(read_window(d.stream.as_mut().unwrap(), 12), None);
}

#[test]
fn compressor_history_is_the_last_window() {
    let mut rng = StdRng::seed_from_u64(2);
    for bits in [9u8, 12, 15] {
        let mut c = Compressor::new(6, 8, bits, false);
        let mut sent = Vec::new();
        for _ in 0..40 {
            let len = message_len(&mut rng);
            let data = message(&mut rng, &sent, len);
            c.compress(&data).unwrap();
            sent.extend_from_slice(&data);
            assert_eq!(
                c.history.iter().copied().collect::<Vec<_>>(),
                expected_window(&sent, bits)
            );
            assert!(c.history.capacity() <= 1 << bits);
        }
    }
}

#[test]
fn no_history_where_it_is_not_needed() {
    let data = b"no history needed, no history needed ".repeat(20);
    // No context takeover; level 0 (stored); 8 bits (Huffman only).
    for (level, bits, reset) in [(6, 15, true), (0, 15, false), (6, 8, false)] {
        let mut c = Compressor::new(level, 8, bits, reset);
        let mut d = Decompressor::new(bits, reset);
        for _ in 0..3 {
            assert_eq!(inflate_message(&mut d, &c.compress(&data).unwrap()), data);
            c.compact_idle();
            d.compact_idle();
            assert_eq!(c.memory_estimate(), 0, "{level} {bits} {reset}");
        }
        if reset {
            assert_eq!(d.memory_estimate(), 0);
        }
    }
}

/// One direction: `compact` says which end compacts; the other never does.
fn round_trip(seed: u64, bits: u8, level: u32, mem_level: u8, compress_side: bool) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut c = Compressor::new(level, mem_level, bits, false);
    let mut d = Decompressor::new(bits, false);
    let mut sent = Vec::new();
    for i in 0..30 {
        let len = message_len(&mut rng);
        let data = message(&mut rng, &sent, len);
        let payload = c.compress(&data).unwrap();
        // Split the payload, compacting between pieces, which must change nothing.
        let cut = rng.random_range(0..=payload.len());
        let mut out = Vec::new();
        d.inflate(&payload[..cut], &mut out, MAX).unwrap();
        d.compact_idle();
        d.inflate(&payload[cut..], &mut out, MAX).unwrap();
        d.finish(&mut out, MAX).unwrap();
        assert_eq!(out, data, "seed {seed} bits {bits} message {i}");
        sent.extend_from_slice(&data);
        if rng.random_bool(0.4) {
            if compress_side {
                c.compact_idle();
                assert!(c.stream.is_none());
                assert!(c.memory_estimate() <= 1 << bits);
            } else {
                d.compact_idle();
                assert!(d.stream.is_none());
                assert_eq!(d.history, expected_window(&sent, bits.max(9)));
                assert!(d.memory_estimate() <= 1 << bits.max(9));
            }
        }
    }
}

#[test]
fn compaction_round_trips_against_a_peer_that_keeps_its_context() {
    let mut rng = StdRng::seed_from_u64(3);
    for seed in 0..60 {
        let bits = rng.random_range(8..=15);
        let level = rng.random_range(1..=9);
        let mem_level = rng.random_range(1..=9);
        round_trip(seed, bits, level, mem_level, seed % 2 == 0);
    }
}

#[test]
fn compacting_an_unused_codec_is_harmless() {
    let mut c = Compressor::new(6, 8, 15, false);
    let mut d = Decompressor::new(15, false);
    c.compact_idle();
    d.compact_idle();
    assert_eq!(c.memory_estimate() + d.memory_estimate(), 0);
    // An empty message (RFC 7692 §7.2.3.6) leaves a stream with nothing in its window.
    assert_eq!(c.compress(b""), None, "sent uncompressed");
    assert_eq!(inflate_message(&mut d, &[0x00]), b"");
    d.compact_idle();
    assert!(d.stream.is_none() && d.history.is_empty());
    let data = b"after the empty one, after the empty one".to_vec();
    assert_eq!(inflate_message(&mut d, &c.compress(&data).unwrap()), data);
}

/// Every connection that negotiated permessage-deflate keeps this struct for
/// its lifetime, hibernated ones included: the zlib streams (~130 B each
/// even when dropped, if held inline) stay boxed.
#[test]
fn idle_codec_state_is_small() {
    assert!(
        std::mem::size_of::<PerMessageDeflate>() <= 128,
        "PerMessageDeflate is {} B",
        std::mem::size_of::<PerMessageDeflate>()
    );
}
