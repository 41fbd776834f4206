//! Per-message compression and decompression (RFC 7692 §7.2) on zlib-rs raw deflate.
//!
//! Both streams are created on first use and, when their side resets its context
//! after each message, dropped at the end of each message, so an idle connection
//! without context takeover holds no zlib state at all.

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

    /// Approximate bytes of zlib state currently allocated.
    pub(crate) fn memory_estimate(&self) -> usize {
        self.compressor.memory_estimate() + self.decompressor.memory_estimate()
    }
}

/// Our side's deflate stream.
pub(crate) struct Compressor {
    stream: Option<Deflate>,
    level: i32,
    mem_level: i32,
    /// What zlib-rs is given: 9-15 (see `strategy`).
    window_bits: u8,
    /// Huffman-only when the agreed window is 8 bits: zlib cannot compress raw deflate
    /// with 8, and without back-references the window size does not matter.
    strategy: Strategy,
    /// Our no_context_takeover: reset after every message.
    reset_after_message: bool,
}

impl fmt::Debug for Compressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compressor")
            .field("active", &self.stream.is_some())
            .field("level", &self.level)
            .field("window_bits", &self.window_bits)
            .field("reset_after_message", &self.reset_after_message)
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
        }
    }

    /// Compress one whole message: the deflate data with the trailing empty stored
    /// block removed. `None` if zlib failed; the stream is then dropped (a fresh one
    /// is always safe at a message boundary) and the caller sends uncompressed.
    pub(crate) fn compress(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        let result = self.compress_inner(data);
        if result.is_none() || self.reset_after_message {
            self.stream = None;
        }
        result
    }

    fn compress_inner(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        let (level, mem_level, window_bits, strategy) =
            (self.level, self.mem_level, self.window_bits, self.strategy);
        let stream = self.stream.get_or_insert_with(|| {
            Deflate::new_with_config(zlib_rs::DeflateConfig {
                level,
                method: zlib_rs::Method::Deflated,
                // Negative: raw deflate, no zlib header or checksum.
                window_bits: -i32::from(window_bits),
                mem_level,
                strategy,
            })
        });
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
        if self.stream.is_none() {
            return 0;
        }
        // zlib-rs: a doubled window, the prev chain (u16 per window byte), a 64 Ki-entry
        // u16 hash head, and 7 bytes per literal buffer entry; plus ~6 KiB of state.
        let window = 1usize << self.window_bits;
        let lit_bufsize = 1usize << (self.mem_level + 6);
        2 * window + 2 * window + 2 * 65_536 + 7 * lit_bufsize + 6 * 1024
    }
}

/// The inflater for the peer's messages.
pub(crate) struct Decompressor {
    stream: Option<Inflate>,
    window_bits: u8,
    /// The peer's no_context_takeover: its messages never refer to earlier ones.
    reset_after_message: bool,
    /// The peer ended the deflate stream (BFINAL) inside the current message; the
    /// rest of the message is ignored and the stream starts afresh after it.
    ended: bool,
}

impl fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decompressor")
            .field("active", &self.stream.is_some())
            .field("window_bits", &self.window_bits)
            .field("reset_after_message", &self.reset_after_message)
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
        if self.ended {
            return Ok(());
        }
        let window_bits = self.window_bits;
        let stream = self
            .stream
            .get_or_insert_with(|| Inflate::new(false, window_bits));
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
    }

    fn memory_estimate(&self) -> usize {
        // zlib-rs always allocates a 32 KiB window (+64 padding) and ~7 KiB of state.
        match self.stream {
            Some(_) => (1usize << MAX_WINDOW_BITS) + 64 + 7 * 1024,
            None => 0,
        }
    }
}
