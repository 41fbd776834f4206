//! What one node tells the others through the broker: a message for a
//! tenant's topic, or for one connection. Binary, versioned, the same for
//! Redis and NATS.
//!
//! ```text
//! u8  format (1)
//! u8  what: 0 = topic, 1 = one connection
//! u16 origin node (big-endian)
//! u64 origin process: random at start, so that two nodes given the same
//!     id are told apart
//! u8  message kind: 1 = text, 2 = binary
//! u16 tenant length, tenant bytes (UTF-8)
//! topic:      u16 topic length, topic bytes (UTF-8)
//! connection: u64 connection id
//! the payload, to the end
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use wsbox_protocol::Message;

const FORMAT: u8 = 1;
const TOPIC: u8 = 0;
const DIRECT: u8 = 1;
const TEXT: u8 = 1;
const BINARY: u8 = 2;

/// Whom a message from another node is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Topic(String),
    Connection(u64),
}

/// A message from another node, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub origin: u16,
    pub process: u64,
    pub tenant: String,
    pub target: Target,
    pub message: Message,
}

/// Why bytes from the broker are not an envelope (another program on
/// the same channels, or a newer wsbox).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a wsbox envelope: {0}")]
pub struct DecodeError(&'static str);

pub fn encode(
    (origin, process): (u16, u64),
    tenant: &str,
    target: &Target,
    message: &Message,
) -> Bytes {
    let (kind, payload) = match message {
        Message::Text(t) => (TEXT, t.as_bytes()),
        Message::Binary(b) => (BINARY, &b[..]),
    };
    let mut out = BytesMut::with_capacity(16 + tenant.len() + payload.len() + 260);
    out.put_u8(FORMAT);
    out.put_u8(match target {
        Target::Topic(_) => TOPIC,
        Target::Connection(_) => DIRECT,
    });
    out.put_u16(origin);
    out.put_u64(process);
    out.put_u8(kind);
    put_str(&mut out, tenant);
    match target {
        Target::Topic(topic) => put_str(&mut out, topic),
        Target::Connection(id) => out.put_u64(*id),
    }
    out.put_slice(payload);
    out.freeze()
}

fn put_str(out: &mut BytesMut, s: &str) {
    // Tenants and topics are far shorter than 64 KiB (topics: 256 bytes).
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    out.put_u16(len);
    out.put_slice(&s.as_bytes()[..usize::from(len)]);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError("too short"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let len = usize::from(self.u16()?);
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError("a name is not UTF-8"))
    }
}

pub fn decode(bytes: &[u8]) -> Result<Envelope, DecodeError> {
    let mut r = Reader(bytes);
    if r.u8()? != FORMAT {
        return Err(DecodeError("unknown format"));
    }
    let what = r.u8()?;
    let origin = r.u16()?;
    let process = r.u64()?;
    let kind = r.u8()?;
    let tenant = r.string()?;
    let target = match what {
        TOPIC => Target::Topic(r.string()?),
        DIRECT => Target::Connection(r.u64()?),
        _ => return Err(DecodeError("unknown target")),
    };
    let payload = r.0;
    let message = match kind {
        TEXT => Message::Text(
            String::from_utf8(payload.to_vec()).map_err(|_| DecodeError("text is not UTF-8"))?,
        ),
        BINARY => Message::Binary(Bytes::copy_from_slice(payload)),
        _ => return Err(DecodeError("unknown message kind")),
    };
    Ok(Envelope {
        origin,
        process,
        tenant,
        target,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        for (target, message) in [
            (
                Target::Topic("room/1 ü".into()),
                Message::Text("héllo".into()),
            ),
            (
                Target::Connection(7 << 36 | 42),
                Message::Binary(Bytes::from_static(&[0, 1, 2, 255])),
            ),
            (Target::Topic("t".into()), Message::Text(String::new())),
        ] {
            let bytes = encode((7, 99), "acme", &target, &message);
            let e = decode(&bytes).unwrap();
            assert_eq!(
                e,
                Envelope {
                    origin: 7,
                    process: 99,
                    tenant: "acme".into(),
                    target,
                    message
                }
            );
        }
        let good = encode(
            (1, 2),
            "a",
            &Target::Topic("t".into()),
            &Message::Text("x".into()),
        );
        for cut in 0..good.len() - 1 {
            assert!(decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = good.to_vec();
        bad[0] = 2;
        assert_eq!(decode(&bad), Err(DecodeError("unknown format")));
        let mut bad = good.to_vec();
        *bad.last_mut().unwrap() = 0xff;
        assert_eq!(decode(&bad), Err(DecodeError("text is not UTF-8")));
        assert!(decode(b"hello world").is_err());
    }
}
