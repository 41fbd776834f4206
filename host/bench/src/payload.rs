//! Message payloads: a fixed template per run with the message's sequence
//! number written into it, so that each echo can be checked exactly.
//!
//! - text: printable ASCII from a fixed pseudo-random sequence;
//! - binary: pseudo-random bytes (incompressible);
//! - JSON-like (for compression): an object with realistic, repetitive
//!   fields, padded with spaces to the exact size (valid JSON from ~100 B).
//!
//! The sequence number goes in as 16 lowercase hex digits (so text stays
//! ASCII); payloads shorter than 16 bytes carry its low digits only.

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Message;

/// Digits of the sequence number embedded in a payload.
const SEQ_DIGITS: usize = 16;

/// What kind of payload a run sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Binary,
    Json,
}

/// The payload template of one run.
#[derive(Debug, Clone)]
pub struct Payload {
    kind: Kind,
    template: Vec<u8>,
    /// Where the sequence number's digits go, and how many fit.
    seq_at: usize,
    seq_len: usize,
}

/// A small deterministic generator (xorshift64*): payloads are the same in
/// every run, so every peer gets the same bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

impl Payload {
    pub fn new(kind: Kind, size: usize) -> Payload {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let (template, seq_at) = match kind {
            Kind::Text => {
                const ALPHABET: &[u8; 64] =
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 .";
                let t = (0..size)
                    .map(|_| ALPHABET[(rng.next() >> 58) as usize])
                    .collect();
                (t, 0)
            }
            Kind::Binary => ((0..size).map(|_| (rng.next() >> 56) as u8).collect(), 0),
            Kind::Json => json_like(size, &mut rng),
        };
        let seq_len = SEQ_DIGITS.min(template.len().saturating_sub(seq_at));
        Payload {
            kind,
            template,
            seq_at,
            seq_len,
        }
    }

    pub fn size(&self) -> usize {
        self.template.len()
    }

    pub fn is_text(&self) -> bool {
        self.kind != Kind::Binary
    }

    fn write_seq(&self, buf: &mut [u8], seq: u64) {
        let digits = hex16(seq);
        buf[self.seq_at..self.seq_at + self.seq_len]
            .copy_from_slice(&digits[SEQ_DIGITS - self.seq_len..]);
    }

    /// The payload bytes of message `seq`.
    pub fn bytes(&self, seq: u64) -> Vec<u8> {
        let mut buf = self.template.clone();
        self.write_seq(&mut buf, seq);
        buf
    }

    /// Message `seq`, ready to send.
    pub fn message(&self, seq: u64) -> Message {
        let buf = self.bytes(seq);
        if self.is_text() {
            // The template and the digits are ASCII.
            match String::from_utf8(buf) {
                Ok(s) => Message::text(s),
                Err(e) => Message::binary(e.into_bytes()),
            }
        } else {
            Message::Binary(Bytes::from(buf))
        }
    }

    /// Whether `data` is exactly payload `seq`, of the right type.
    pub fn matches(&self, seq: u64, text: bool, data: &[u8]) -> bool {
        if text != self.is_text() || data.len() != self.template.len() {
            return false;
        }
        let (at, len) = (self.seq_at, self.seq_len);
        let digits = hex16(seq);
        data[at..at + len] == digits[SEQ_DIGITS - len..]
            && data[..at] == self.template[..at]
            && data[at + len..] == self.template[at + len..]
    }
}

fn hex16(n: u64) -> [u8; SEQ_DIGITS] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; SEQ_DIGITS];
    for (i, d) in out.iter_mut().enumerate() {
        *d = HEX[((n >> (60 - 4 * i)) & 0xF) as usize];
    }
    out
}

/// A JSON-like object of `size` bytes; returns it and where its `seq`
/// value's digits start.
fn json_like(size: usize, rng: &mut Rng) -> (Vec<u8>, usize) {
    const HEAD: &str = r#"{"seq":""#;
    const NAMES: [&str; 6] = [
        "widget",
        "gadget",
        "doohickey",
        "sprocket",
        "gizmo",
        "thingamajig",
    ];
    const TAGS: [&str; 5] = ["blue", "large", "sale", "new", "fragile"];
    let mut s = String::with_capacity(size + 256);
    s.push_str(HEAD);
    s.push_str(&"0".repeat(SEQ_DIGITS));
    s.push_str(r#"","type":"order.update","user":{"id":48213,"name":"alice","roles":["buyer","reviewer"]},"items":["#);
    let mut first = true;
    loop {
        let r = rng.next();
        let item = format!(
            r#"{}{{"sku":"SKU-{:05}","name":"{}","qty":{},"price":{}.{:02},"tags":["{}","{}"],"in_stock":{}}}"#,
            if first { "" } else { "," },
            r % 100_000,
            NAMES[((r >> 17) % 6) as usize],
            (r >> 20) % 10 + 1,
            (r >> 24) % 500,
            (r >> 33) % 100,
            TAGS[((r >> 40) % 5) as usize],
            TAGS[((r >> 43) % 5) as usize],
            (r >> 50) & 1 == 1,
        );
        if s.len() + item.len() + 2 > size {
            break;
        }
        s.push_str(&item);
        first = false;
    }
    s.push_str("]}");
    let mut bytes = s.into_bytes();
    if bytes.len() <= size {
        // Whitespace before the final brace keeps it valid JSON.
        let pad = size - bytes.len();
        let close = bytes.pop();
        bytes.extend(std::iter::repeat_n(b' ', pad));
        bytes.extend(close);
    } else {
        // Too small for the envelope: a truncated, still ASCII, prefix.
        bytes.truncate(size);
    }
    (bytes, HEAD.len().min(size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_exact_and_echoes_verify() {
        for kind in [Kind::Text, Kind::Binary, Kind::Json] {
            for size in [0, 1, 5, 16, 20, 100, 1024, 4096, 65536] {
                let p = Payload::new(kind, size);
                assert_eq!(p.size(), size);
                for seq in [0, 1, 0xabc, u64::MAX] {
                    let b = p.bytes(seq);
                    assert_eq!(b.len(), size);
                    assert!(p.matches(seq, p.is_text(), &b));
                    assert!(!p.matches(seq, !p.is_text(), &b));
                    if p.seq_len > 0 {
                        assert!(!p.matches(seq ^ 1, p.is_text(), &b), "{kind:?} {size}");
                    }
                    if size > 0 {
                        let mut bad = b.clone();
                        bad[size - 1] ^= 1;
                        assert!(!p.matches(seq, p.is_text(), &bad));
                    }
                    if kind != Kind::Binary {
                        assert!(std::str::from_utf8(&b).is_ok());
                    }
                }
            }
        }
    }

    #[test]
    fn json_like_is_json_and_compressible() {
        let p = Payload::new(Kind::Json, 1024);
        let b = p.bytes(42);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["seq"], "000000000000002a");
        // Repetitive enough to compress: few distinct bytes.
        let distinct = b.iter().collect::<std::collections::HashSet<_>>().len();
        assert!(distinct < 70, "{distinct}");
    }

    #[test]
    fn hex() {
        assert_eq!(&hex16(0x1234_abcd), b"000000001234abcd");
    }
}
