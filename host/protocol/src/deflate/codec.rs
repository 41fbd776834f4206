//! Per-message compression and decompression (RFC 7692 §7.2) on zlib-rs raw deflate.
//!
//! Both streams are created on first use and, when their side resets its context
//! after each message, dropped at the end of each message, so an idle connection
//! without context takeover holds no zlib state at all.
//!
//! With context takeover, [`PerMessageDeflate::compact_idle`] drops both streams
//! between messages and keeps only the window each one needs to carry on: the last
//! `2^window_bits` bytes of plaintext. The next message re-creates the stream and loads
//! that window as a preset dictionary, so the peer, which kept its context, sees no
//! difference. Our compressor's window is copied as messages are compressed (zlib-rs
//! cannot give it back). The inflater's window is read back from the stream itself when
//! compacting (see [`window_copy_block`]), so receiving costs nothing extra meanwhile.

use std::collections::VecDeque;
use std::fmt;

use zlib_rs::{Deflate, DeflateFlush, Inflate, InflateFlush, Status, Strategy};

use super::{MAX_WINDOW_BITS, Negotiated, clamp_bits};
use crate::Role;

/// The empty stored block a sync flush ends with; stripped from every compressed
/// message and appended again before inflating its end (§7.2.1, §7.2.2).
pub(crate) const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Most inflate output zero-filled ahead of one zlib call, so that many small
/// frames do not each pay for the whole spare capacity of a large message buffer.
const INFLATE_STEP: usize = 32 * 1024;

/// Smallest growth of the inflate output buffer.
const INFLATE_MIN_GROWTH: usize = 4 * 1024;

/// How inflating a message can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// The output would exceed the size limit.
    TooBig,
    /// The input is not valid deflate data (or uses a window larger than agreed).
    Corrupt,
}

/// The permessage-deflate state of one connection: our compressor and the inflater
/// for the peer's messages.
#[derive(Debug)]
pub(crate) struct PerMessageDeflate {
    pub(crate) compressor: Compressor,
    pub(crate) decompressor: Decompressor,
    pub(crate) min_compress_size: usize,
}

impl PerMessageDeflate {
    /// Our side's parameters drive the compressor, the peer's the inflater.
    pub(crate) fn new(role: Role, n: &Negotiated) -> Self {
        let (ours, theirs) = match role {
            Role::Server => (
                (n.server_max_window_bits, n.server_no_context_takeover),
                (n.client_max_window_bits, n.client_no_context_takeover),
            ),
            Role::Client => (
                (n.client_max_window_bits, n.client_no_context_takeover),
                (n.server_max_window_bits, n.server_no_context_takeover),
            ),
        };
        Self {
            compressor: Compressor::new(n.compression_level, n.mem_level, ours.0, ours.1),
            decompressor: Decompressor::new(theirs.0, theirs.1),
            min_compress_size: n.min_compress_size,
        }
    }

    /// Approximate bytes of zlib state and saved windows currently allocated.
    pub(crate) fn memory_estimate(&self) -> usize {
        self.compressor.memory_estimate() + self.decompressor.memory_estimate()
    }

    /// Drop both zlib streams, keeping only the windows context takeover needs. A side
    /// in the middle of a message is left as it is.
    pub(crate) fn compact_idle(&mut self) {
        self.compressor.compact_idle();
        self.decompressor.compact_idle();
    }

    /// Drop everything: for a connection that will neither send nor inflate again.
    pub(crate) fn release(&mut self) {
        self.compressor.release();
        self.decompressor.release();
    }
}

/// Our side's deflate stream.
pub(crate) struct Compressor {
    /// Boxed: a stream is ~130 B and an idle connection holds none.
    stream: Option<Box<Deflate>>,
    level: i32,
    mem_level: i32,
    /// What zlib-rs is given: 9-15 (see `strategy`).
    window_bits: u8,
    /// Huffman-only when the agreed window is 8 bits: zlib cannot compress raw deflate
    /// with 8, and without back-references the window size does not matter.
    strategy: Strategy,
    /// Our no_context_takeover: reset after every message.
    reset_after_message: bool,
    /// The last `2^window_bits` bytes of the messages we sent compressed: the peer's
    /// window, from which a new stream is primed. Only kept when later messages may
    /// refer back to earlier ones (see `keeps_history`).
    history: VecDeque<u8>,
}

impl fmt::Debug for Compressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compressor")
            .field("active", &self.stream.is_some())
            .field("level", &self.level)
            .field("window_bits", &self.window_bits)
            .field("reset_after_message", &self.reset_after_message)
            .field("history", &self.history.len())
            .finish()
    }
}

impl Compressor {
    pub(crate) fn new(level: u32, mem_level: u8, window_bits: u8, reset: bool) -> Self {
        let bits = clamp_bits(window_bits);
        Self {
            stream: None,
            level: level.min(9) as i32,
            mem_level: i32::from(mem_level.clamp(1, 9)),
            window_bits: bits.max(9),
            strategy: if bits < 9 {
                Strategy::HuffmanOnly
            } else {
                Strategy::Default
            },
            reset_after_message: reset,
            history: VecDeque::new(),
        }
    }

    /// Whether a message may refer back to earlier ones, so that a new stream must
    /// start from the old window. Level 0 (stored blocks) and Huffman-only never do.
    fn keeps_history(&self) -> bool {
        !self.reset_after_message && self.level > 0 && self.strategy != Strategy::HuffmanOnly
    }

    /// Compress one whole message: the deflate data with the trailing empty stored
    /// block removed. `None` if zlib failed; the stream is then dropped and the caller
    /// sends uncompressed. The peer's window is unchanged by that message, so the next
    /// stream, primed from `history`, continues where the peer is.
    pub(crate) fn compress(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        if data.is_empty() {
            // Shorter uncompressed than as deflate data; and a sync flush with no input
            // right after another gives zlib nothing to do, which it reports as failure.
            return None;
        }
        let result = self.compress_inner(data);
        if result.is_none() || self.reset_after_message {
            self.stream = None;
        } else if self.keeps_history() {
            self.remember(data);
        }
        result
    }

    /// Append `data` to `history`, keeping its last `2^window_bits` bytes.
    fn remember(&mut self, data: &[u8]) {
        let cap = 1usize << self.window_bits;
        let data = data
            .get(data.len().saturating_sub(cap)..)
            .unwrap_or_default();
        let excess = (self.history.len() + data.len()).saturating_sub(cap);
        self.history.drain(..excess.min(self.history.len()));
        let needed = self.history.len() + data.len();
        if needed > self.history.capacity() {
            // Geometric growth, but never past the window: it is held for good.
            let target = needed.max(self.history.capacity() * 2).min(cap);
            self.history.reserve_exact(target - self.history.len());
        }
        self.history.extend(data);
    }

    /// Drop the stream; the next message re-creates it from `history`.
    fn compact_idle(&mut self) {
        self.stream = None;
    }

    fn release(&mut self) {
        self.stream = None;
        self.history = VecDeque::new();
    }

    fn compress_inner(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        if self.stream.is_none() {
            let mut stream = Deflate::new_with_config(zlib_rs::DeflateConfig {
                level: self.level,
                method: zlib_rs::Method::Deflated,
                // Negative: raw deflate, no zlib header or checksum.
                window_bits: -i32::from(self.window_bits),
                mem_level: self.mem_level,
                strategy: self.strategy,
            });
            if !self.history.is_empty() {
                stream.set_dictionary(self.history.make_contiguous()).ok()?;
            }
            self.stream = Some(Box::new(stream));
        }
        let stream = self.stream.as_mut()?;
        let mut out = Vec::with_capacity(data.len() / 2 + 64);
        let mut input = data;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(1024));
            }
            let start = out.len();
            out.resize(out.capacity(), 0);
            let space = out.len() - start;
            let (in_before, out_before) = (stream.total_in(), stream.total_out());
            let status = stream.compress(input, &mut out[start..], DeflateFlush::SyncFlush);
            let consumed = usize::try_from(stream.total_in() - in_before).ok()?;
            let produced = usize::try_from(stream.total_out() - out_before).ok()?;
            out.truncate(start + produced);
            input = input.get(consumed..)?;
            status.ok()?;
            // zlib's rule for a flush: done once a call leaves output space unused.
            if input.is_empty() && produced < space {
                break;
            }
            if consumed == 0 && produced == 0 {
                return None;
            }
        }
        // A sync flush always ends with the empty stored block.
        if !out.ends_with(&TAIL) {
            return None;
        }
        out.truncate(out.len() - TAIL.len());
        Some(out)
    }

    fn memory_estimate(&self) -> usize {
        let history = self.history.capacity();
        if self.stream.is_none() {
            return history;
        }
        // zlib-rs: a doubled window, the prev chain (u16 per window byte), a 64 Ki-entry
        // u16 hash head, and 7 bytes per literal buffer entry; plus ~6 KiB of state.
        let window = 1usize << self.window_bits;
        let lit_bufsize = 1usize << (self.mem_level + 6);
        2 * window + 2 * window + 2 * 65_536 + 7 * lit_bufsize + 6 * 1024 + history
    }
}

/// The inflater for the peer's messages.
pub(crate) struct Decompressor {
    /// Boxed, as the compressor's.
    stream: Option<Box<Inflate>>,
    window_bits: u8,
    /// The peer's no_context_takeover: its messages never refer to earlier ones.
    reset_after_message: bool,
    /// The peer ended the deflate stream (BFINAL) inside the current message; the
    /// rest of the message is ignored and the stream starts afresh after it.
    ended: bool,
    /// Between `inflate` and `finish`: the stream holds a partial message.
    in_message: bool,
    /// While compacted: the stream's window, loaded into the next stream.
    history: Vec<u8>,
    /// Bytes of window `stream` started with, so that with its output it tells how
    /// much window the stream has.
    primed: u64,
}

impl fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decompressor")
            .field("active", &self.stream.is_some())
            .field("window_bits", &self.window_bits)
            .field("reset_after_message", &self.reset_after_message)
            .field("history", &self.history.len())
            .finish()
    }
}

impl Decompressor {
    pub(crate) fn new(window_bits: u8, reset: bool) -> Self {
        Self {
            stream: None,
            // 9 bits decode all an 8-bit stream can hold, and what older zlib wrote
            // when asked for 8 (it silently used 9).
            window_bits: clamp_bits(window_bits).max(9),
            reset_after_message: reset,
            ended: false,
            in_message: false,
            history: Vec::new(),
            primed: 0,
        }
    }

    /// Inflate the next piece of the current message, appending to `out`, which never
    /// grows beyond `max + 1` bytes: past `max` this fails with `TooBig`.
    pub(crate) fn inflate(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), InflateError> {
        self.in_message = true;
        if self.ended {
            return Ok(());
        }
        if self.stream.is_none() {
            let mut stream = Inflate::new(false, self.window_bits);
            if !self.history.is_empty() {
                // Cannot fail on a raw stream; if it did, the peer's back-references
                // could not be resolved, which is what Corrupt reports.
                stream
                    .set_dictionary(&self.history)
                    .map_err(|_| InflateError::Corrupt)?;
            }
            self.primed = self.history.len() as u64;
            self.history = Vec::new();
            self.stream = Some(Box::new(stream));
        }
        let stream = self.stream.as_mut().ok_or(InflateError::Corrupt)?;
        let limit = max.saturating_add(1);
        loop {
            if out.len() > max {
                return Err(InflateError::TooBig);
            }
            if out.capacity() - out.len() < INFLATE_MIN_GROWTH {
                // Geometric growth, straight to the limit once it is in reach, so the
                // last step is not a reallocation for the 1 byte that detects overflow.
                let mut target = out
                    .capacity()
                    .saturating_mul(2)
                    .max(out.len().saturating_add(INFLATE_MIN_GROWTH));
                if target >= max {
                    target = limit;
                }
                out.reserve_exact(target.saturating_sub(out.len()));
            }
            let start = out.len();
            let end = out
                .capacity()
                .min(limit)
                .min(start.saturating_add(INFLATE_STEP));
            out.resize(end, 0);
            let space = end - start;
            let (in_before, out_before) = (stream.total_in(), stream.total_out());
            let status = stream.decompress(input, &mut out[start..], InflateFlush::NoFlush);
            let consumed = usize::try_from(stream.total_in() - in_before).unwrap_or(usize::MAX);
            let produced = usize::try_from(stream.total_out() - out_before).unwrap_or(usize::MAX);
            out.truncate(start.saturating_add(produced));
            input = input.get(consumed..).ok_or(InflateError::Corrupt)?;
            match status {
                Err(_) => return Err(InflateError::Corrupt),
                Ok(Status::StreamEnd) => {
                    self.ended = true;
                    return if out.len() > max {
                        Err(InflateError::TooBig)
                    } else {
                        Ok(())
                    };
                }
                Ok(Status::Ok | Status::BufError) => {}
            }
            if out.len() > max {
                return Err(InflateError::TooBig);
            }
            // All input taken and output space left over: zlib has nothing pending.
            if input.is_empty() && produced < space {
                return Ok(());
            }
            if consumed == 0 && produced == 0 {
                // No progress with both input and output space: cannot happen with
                // valid data; bail out rather than loop.
                return Err(InflateError::Corrupt);
            }
        }
    }

    /// Inflate the stripped tail of the message and end it.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>, max: usize) -> Result<(), InflateError> {
        self.inflate(&TAIL, out, max)?;
        self.end_message();
        Ok(())
    }

    /// Between messages: drop the stream if the peer does not keep its context (or
    /// ended its stream, which cannot be continued).
    fn end_message(&mut self) {
        if self.reset_after_message || self.ended {
            self.stream = None;
        }
        self.ended = false;
        self.in_message = false;
    }

    /// Between messages, replace the stream by a copy of its window.
    fn compact_idle(&mut self) {
        if self.in_message {
            return;
        }
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        let window = (1u64 << self.window_bits).min(self.primed + stream.total_out());
        // `window` fits in usize: it is at most 2^15.
        match read_window(stream, window as usize) {
            Some(history) => self.history = history,
            None => {
                // The stream was not where a compliant peer leaves it (at a block
                // boundary) and is now spoilt. Starting afresh is all that is left: if
                // the peer refers back, its next message fails as corrupt.
                self.history = Vec::new();
            }
        }
        self.stream = None;
    }

    fn release(&mut self) {
        self.stream = None;
        self.history = Vec::new();
        self.ended = false;
        self.in_message = false;
    }

    fn memory_estimate(&self) -> usize {
        // zlib-rs always allocates a 32 KiB window (+64 padding) and ~7 KiB of state.
        let stream = match self.stream {
            Some(_) => (1usize << MAX_WINDOW_BITS) + 64 + 7 * 1024,
            None => 0,
        };
        stream + self.history.capacity()
    }
}

/// Marks the end of [`window_copy_block`]'s output, so that a stream which was not at a
/// block boundary (and so decoded something else) is caught.
const WINDOW_MARKER: [u8; 8] = *b"wsbox\x00\xff\x5a";

/// Longest deflate match.
const MAX_MATCH: usize = 258;

/// The last `n` bytes of `stream`'s window, which must hold at least `n` bytes and be at
/// a block boundary, as it is between messages. zlib-rs cannot return its window
/// (no `inflateGetDictionary`), but inflating back-references that point `n` bytes back
/// copies it out. The stream is left mid-block and must be dropped afterwards.
fn read_window(stream: &mut Inflate, n: usize) -> Option<Vec<u8>> {
    if n == 0 {
        return Some(Vec::new());
    }
    let (input, copied) = window_copy_block(n)?;
    let expected = copied + WINDOW_MARKER.len();
    let mut out = vec![0u8; expected];
    let before = stream.total_out();
    stream
        .decompress(&input, &mut out, InflateFlush::NoFlush)
        .ok()?;
    let produced = usize::try_from(stream.total_out() - before).ok()?;
    if produced != expected || out.get(copied..)? != WINDOW_MARKER {
        return None;
    }
    out.truncate(n);
    out.shrink_to_fit();
    Some(out)
}

/// Deflate data that, decoded by a stream at a block boundary, outputs the last `n`
/// bytes of its window (1 ≤ `n` ≤ 32768) followed by [`WINDOW_MARKER`]: a fixed-Huffman
/// block of length-258 matches at distance `n` (they may copy past `n`, repeating the
/// window), then a stored block holding the marker. Returns the data and how many bytes
/// the matches produce.
fn window_copy_block(n: usize) -> Option<(Vec<u8>, usize)> {
    if !(1..=1 << MAX_WINDOW_BITS).contains(&n) {
        return None;
    }
    let matches = n.div_ceil(MAX_MATCH);
    let mut w = BitWriter::default();
    // BFINAL 0, BTYPE 01 (fixed Huffman codes).
    w.bits(0b010, 3);
    let (dist_code, extra_bits, extra) = distance_code(n);
    for _ in 0..matches {
        // Length 258 is symbol 285, fixed code 11000101 (8 bits), no extra bits.
        w.huffman(0b1100_0101, 8);
        w.huffman(dist_code, 5);
        w.bits(extra, extra_bits);
    }
    // End of block: symbol 256, fixed code 0000000.
    w.huffman(0, 7);
    // BFINAL 0, BTYPE 00 (stored), then LEN and NLEN from the next byte boundary.
    w.bits(0, 3);
    let mut out = w.finish();
    let len = WINDOW_MARKER.len() as u16;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(&WINDOW_MARKER);
    Some((out, matches * MAX_MATCH))
}

/// Deflate distance code, number of extra bits and their value for `dist` (1-32768),
/// RFC 1951 §3.2.5: codes 0-3 are 1-4; above, each pair of codes doubles the range.
fn distance_code(dist: usize) -> (u32, u32, u32) {
    let d = (dist.saturating_sub(1) & 0x7fff) as u32;
    if d < 4 {
        return (d, 0, 0);
    }
    let top = 31 - d.leading_zeros(); // 2..=14
    let extra_bits = top - 1;
    let code = 2 * top + ((d >> extra_bits) & 1);
    (code, extra_bits, d & ((1 << extra_bits) - 1))
}

/// Deflate's bit order: fields least significant bit first, Huffman codes most
/// significant bit first.
#[derive(Default)]
struct BitWriter {
    out: Vec<u8>,
    acc: u32,
    count: u32,
}

impl BitWriter {
    fn bits(&mut self, value: u32, count: u32) {
        for i in 0..count {
            self.acc |= ((value >> i) & 1) << self.count;
            self.count += 1;
            if self.count == 8 {
                self.out.push(self.acc as u8);
                self.acc = 0;
                self.count = 0;
            }
        }
    }

    fn huffman(&mut self, code: u32, len: u32) {
        let reversed = code.reverse_bits() >> (32 - len);
        self.bits(reversed, len);
    }

    /// The bytes written, the last one padded with zero bits.
    fn finish(mut self) -> Vec<u8> {
        if self.count > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

#[cfg(test)]
mod tests;
