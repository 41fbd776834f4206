//! Frame-level codec (RFC 6455 §5.2): header parsing and encoding, opcodes, and masking.
//!
//! This module knows the wire format only. Policy (which bits and opcodes are allowed,
//! who must mask, size limits) belongs to [`crate::Connection`], because it depends on
//! the role and on negotiated extensions.

use bytes::{BufMut, BytesMut};

use crate::ProtocolError;

/// Largest payload a control frame may carry (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Longest possible frame header: 2 fixed bytes, 8 length bytes, 4 mask bytes.
pub const MAX_HEADER_LEN: usize = 14;

/// The opcodes RFC 6455 defines; the others are reserved and rejected by the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OpCode {
    Continuation = 0x0,
    Text = 0x1,
    Binary = 0x2,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xA,
}

impl OpCode {
    /// Decode a 4-bit opcode; `None` for reserved values (3-7, 0xB-0xF) and anything wider.
    pub fn from_u8(value: u8) -> Option<Self> {
        match value {
            0x0 => Some(Self::Continuation),
            0x1 => Some(Self::Text),
            0x2 => Some(Self::Binary),
            0x8 => Some(Self::Close),
            0x9 => Some(Self::Ping),
            0xA => Some(Self::Pong),
            _ => None,
        }
    }

    /// The wire value.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// Control frames (close, ping, pong) have the high opcode bit set.
    pub fn is_control(self) -> bool {
        self.as_u8() & 0x8 != 0
    }

    /// Data frames: text, binary and continuation.
    pub fn is_data(self) -> bool {
        !self.is_control()
    }
}

/// A parsed frame header. `opcode` is kept raw so reserved values can be reported;
/// `mask` is the masking key if the MASK bit was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    pub rsv1: bool,
    pub rsv2: bool,
    pub rsv3: bool,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
}

/// Parse a frame header from the start of `buf`.
///
/// Returns `Ok(None)` while the header is incomplete, otherwise the header and its
/// length in bytes (the payload starts right after it). The only error detected here is
/// a 64-bit length with the most significant bit set ([`ProtocolError::FrameLengthInvalid`]);
/// it is reported as soon as the length bytes are present, before the masking key.
/// Non-minimal length encodings are accepted, as most implementations do.
pub fn parse_header(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    let (payload_len, len_end) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(&[hi, lo]) => (u64::from(u16::from_be_bytes([hi, lo])), 4),
            _ => return Ok(None),
        },
        127 => match buf.get(2..10).and_then(|s| <[u8; 8]>::try_from(s).ok()) {
            Some(bytes) => {
                let len = u64::from_be_bytes(bytes);
                if len >> 63 != 0 {
                    return Err(ProtocolError::FrameLengthInvalid);
                }
                (len, 10)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    let (mask, header_len) = if b1 & 0x80 != 0 {
        match buf
            .get(len_end..len_end + 4)
            .and_then(|s| <[u8; 4]>::try_from(s).ok())
        {
            Some(key) => (Some(key), len_end + 4),
            None => return Ok(None),
        }
    } else {
        (None, len_end)
    };
    let header = FrameHeader {
        fin: b0 & 0x80 != 0,
        rsv1: b0 & 0x40 != 0,
        rsv2: b0 & 0x20 != 0,
        rsv3: b0 & 0x10 != 0,
        opcode: b0 & 0x0F,
        mask,
        payload_len,
    };
    Ok(Some((header, header_len)))
}

/// Length of the (minimal) header that [`encode_header`] writes for this payload length.
pub fn header_len(payload_len: u64, masked: bool) -> usize {
    let len_bytes = match payload_len {
        0..=125 => 0,
        126..=0xFFFF => 2,
        _ => 8,
    };
    2 + len_bytes + if masked { 4 } else { 0 }
}

/// Encode just a frame header (minimal length encoding), for callers that write the
/// payload themselves (e.g. vectored writes). `payload_len` must be below 2^63.
pub fn encode_header(
    out: &mut BytesMut,
    fin: bool,
    rsv1: bool,
    opcode: OpCode,
    payload_len: u64,
    mask: Option<[u8; 4]>,
) {
    let b0 = (u8::from(fin) << 7) | (u8::from(rsv1) << 6) | opcode.as_u8();
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    out.reserve(header_len(payload_len, mask.is_some()));
    out.put_u8(b0);
    match payload_len {
        // The match arm guarantees the value fits in 7 bits.
        0..=125 => out.put_u8(mask_bit | payload_len as u8),
        126..=0xFFFF => {
            out.put_u8(mask_bit | 126);
            out.put_u16(payload_len as u16);
        }
        _ => {
            out.put_u8(mask_bit | 127);
            out.put_u64(payload_len & (u64::MAX >> 1));
        }
    }
    if let Some(key) = mask {
        out.put_slice(&key);
    }
}

/// Encode a complete frame (header + payload) into `out`, masking the payload with
/// `mask` if given. Server-side callers pass `None`; this is what lets pub/sub fan-out
/// encode a frame once and write the same bytes to many connections.
pub fn encode_frame(
    out: &mut BytesMut,
    fin: bool,
    rsv1: bool,
    opcode: OpCode,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) {
    out.reserve(header_len(payload.len() as u64, mask.is_some()) + payload.len());
    encode_header(out, fin, rsv1, opcode, payload.len() as u64, mask);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key, 0);
    }
}

/// XOR `buf` with the masking `key` (RFC 6455 §5.3), in place.
///
/// `offset` is the position of `buf[0]` within the masked payload, so a payload that
/// arrives in several pieces can be unmasked piece by piece. Works eight bytes at a
/// time; unaligned buffers are fine because the words are read and written as byte
/// arrays.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let mut key = key;
    key.rotate_left(offset % 4);
    let word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let (words, tail) = buf.as_chunks_mut::<8>();
    for chunk in words {
        *chunk = (u64::from_ne_bytes(*chunk) ^ word).to_ne_bytes();
    }
    // The word part has a length divisible by 4, so the tail starts at key[0] again.
    for (byte, k) in tail.iter_mut().zip(key.iter().cycle()) {
        *byte ^= k;
    }
}

/// Appends `src` XORed with the masking `key` (from the payload's start) to
/// `out`: one pass over the bytes instead of a copy and then [`apply_mask`].
pub fn extend_unmasked(out: &mut Vec<u8>, src: &[u8], key: [u8; 4]) {
    let word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let old_len = out.len();
    out.reserve(src.len());
    let spare = &mut out.spare_capacity_mut()[..src.len()];
    let (words, tail) = src.as_chunks::<8>();
    let (out_words, out_tail) = spare.split_at_mut(words.len() * 8);
    for (dst, chunk) in out_words.chunks_exact_mut(8).zip(words) {
        let unmasked = (u64::from_ne_bytes(*chunk) ^ word).to_ne_bytes();
        for (d, b) in dst.iter_mut().zip(unmasked) {
            d.write(b);
        }
    }
    // The word part has a length divisible by 4, so the tail starts at key[0] again.
    for ((d, b), k) in out_tail.iter_mut().zip(tail).zip(key.iter().cycle()) {
        d.write(b ^ k);
    }
    // SAFETY: the loops above wrote the `src.len()` bytes after `old_len`.
    unsafe { out.set_len(old_len + src.len()) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn naive_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= key[(offset + i) % 4];
        }
    }

    #[test]
    fn masking_matches_naive_xor() {
        let mut rng = StdRng::seed_from_u64(0x5eed);
        for _ in 0..2000 {
            let len = rng.random_range(0..200);
            // Slice at a random start so the buffer is misaligned in every way.
            let start = rng.random_range(0..8);
            let mut data = vec![0u8; start + len];
            rng.fill(&mut data[..]);
            let key: [u8; 4] = rng.random();
            let offset = rng.random_range(0..1000);
            let mut fast = data.clone();
            let mut slow = data.clone();
            apply_mask(&mut fast[start..], key, offset);
            naive_mask(&mut slow[start..], key, offset);
            assert_eq!(fast, slow, "len {len} start {start} offset {offset}");
            let mut from_start = data[start..].to_vec();
            naive_mask(&mut from_start, key, 0);
            let mut copy = b"kept".to_vec();
            extend_unmasked(&mut copy, &data[start..], key);
            assert_eq!(copy[4..], from_start, "copy: len {len} start {start}");
            assert_eq!(&copy[..4], b"kept");
        }
    }

    #[test]
    fn apply_mask_in_pieces_equals_whole() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut data = vec![0u8; 1000];
        rng.fill(&mut data[..]);
        let key = [1, 2, 3, 4];
        let mut whole = data.clone();
        apply_mask(&mut whole, key, 0);
        let mut pieces = data.clone();
        let mut pos = 0;
        while pos < pieces.len() {
            let end = (pos + rng.random_range(1..40)).min(pieces.len());
            apply_mask(&mut pieces[pos..end], key, pos);
            pos = end;
        }
        assert_eq!(whole, pieces);
    }

    #[test]
    fn opcode_values() {
        for v in 0..=255u8 {
            match OpCode::from_u8(v) {
                Some(op) => assert_eq!(op.as_u8(), v),
                None => assert!(matches!(v, 3..=7 | 0xB..=0xFF)),
            }
        }
        assert!(OpCode::Ping.is_control() && OpCode::Close.is_control());
        assert!(OpCode::Continuation.is_data() && OpCode::Binary.is_data());
    }

    #[test]
    fn encode_then_parse_round_trip() {
        for &len in &[0usize, 1, 125, 126, 127, 65535, 65536, 100_000] {
            for mask in [None, Some([9, 8, 7, 6])] {
                let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let mut out = BytesMut::new();
                encode_frame(&mut out, true, false, OpCode::Binary, &payload, mask);
                let (h, hlen) = parse_header(&out).unwrap().unwrap();
                assert_eq!(hlen, header_len(len as u64, mask.is_some()));
                assert_eq!(h.payload_len, len as u64);
                assert_eq!(h.mask, mask);
                assert!(h.fin && !h.rsv1 && !h.rsv2 && !h.rsv3);
                assert_eq!(h.opcode, 2);
                let mut body = out[hlen..].to_vec();
                if let Some(key) = mask {
                    apply_mask(&mut body, key, 0);
                }
                assert_eq!(body, payload);
                // Every strict prefix of the header is "incomplete", never an error.
                for cut in 0..hlen {
                    assert_eq!(parse_header(&out[..cut]), Ok(None));
                }
            }
        }
    }

    #[test]
    fn header_flags_and_rsv1() {
        let mut out = BytesMut::new();
        encode_frame(&mut out, false, true, OpCode::Text, b"x", None);
        assert_eq!(out[0], 0x41);
        let (h, _) = parse_header(&[0xF9, 0x00]).unwrap().unwrap();
        assert!(h.fin && h.rsv1 && h.rsv2 && h.rsv3);
        assert_eq!(h.opcode, 9);
    }

    #[test]
    fn non_minimal_lengths_are_accepted() {
        // Length 5 encoded with 16 and with 64 bits.
        let (h, n) = parse_header(&[0x82, 126, 0, 5]).unwrap().unwrap();
        assert_eq!((h.payload_len, n), (5, 4));
        let (h, n) = parse_header(&[0x82, 127, 0, 0, 0, 0, 0, 0, 0, 5])
            .unwrap()
            .unwrap();
        assert_eq!((h.payload_len, n), (5, 10));
    }

    #[test]
    fn msb_length_is_rejected_before_mask_arrives() {
        let buf = [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(parse_header(&buf), Err(ProtocolError::FrameLengthInvalid));
        let ok = [0x82, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
        let (h, _) = parse_header(&ok).unwrap().unwrap();
        assert_eq!(h.payload_len, u64::MAX >> 1);
    }
}
