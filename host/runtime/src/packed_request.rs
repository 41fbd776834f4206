//! The request a connection was opened with, packed into one allocation.

use crate::{Header, NamedCapture, SocketAddress, UpgradeRequest};

/// The request a connection was opened with, as its instance keeps it (and
/// a hibernated connection without an instance): one allocation of its
/// strings' bytes, each length-prefixed, instead of a string or vector per
/// header, capture and subprotocol. Unpacked it takes two to three times as
/// much (allocator overhead, vector headers), for every connection; it is
/// unpacked only when a handler asks for it (`connection.request`).
pub struct PackedRequest {
    strings: Box<[u8]>,
    connection_id: u64,
    remote_address: SocketAddress,
    origin_allowed: bool,
}

impl PackedRequest {
    /// Packs `request`.
    pub fn pack(request: &UpgradeRequest) -> PackedRequest {
        let mut out = Vec::new();
        let put = |out: &mut Vec<u8>, bytes: &[u8]| {
            out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
            out.extend_from_slice(&bytes[..bytes.len().min(u32::MAX as usize)]);
        };
        let count = |out: &mut Vec<u8>, n: usize| {
            out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
        };
        put(&mut out, request.path.as_bytes());
        put(&mut out, request.query.as_bytes());
        count(&mut out, request.headers.len());
        for header in &request.headers {
            put(&mut out, header.name.as_bytes());
            put(&mut out, &header.value);
        }
        count(&mut out, request.positional_captures.len());
        for capture in &request.positional_captures {
            put(&mut out, capture.as_bytes());
        }
        count(&mut out, request.named_captures.len());
        for capture in &request.named_captures {
            put(&mut out, capture.name.as_bytes());
            put(&mut out, capture.value.as_bytes());
        }
        count(&mut out, request.subprotocols.len());
        for protocol in &request.subprotocols {
            put(&mut out, protocol.as_bytes());
        }
        match &request.origin {
            Some(origin) => {
                count(&mut out, 1);
                put(&mut out, origin.as_bytes());
            }
            None => count(&mut out, 0),
        }
        PackedRequest {
            strings: out.into_boxed_slice(),
            connection_id: request.connection_id,
            remote_address: request.remote_address,
            origin_allowed: request.origin_allowed,
        }
    }

    /// The request again; `None` if the bytes do not parse (they always
    /// do: [`PackedRequest::pack`] wrote them).
    pub fn unpack(&self) -> Option<UpgradeRequest> {
        let mut at: &[u8] = &self.strings;
        fn number(at: &mut &[u8]) -> Option<usize> {
            let (n, rest) = at.split_first_chunk::<4>()?;
            *at = rest;
            usize::try_from(u32::from_le_bytes(*n)).ok()
        }
        fn bytes(at: &mut &[u8]) -> Option<Vec<u8>> {
            let n = number(at)?;
            let (b, rest) = at.split_at_checked(n)?;
            *at = rest;
            Some(b.to_vec())
        }
        fn string(at: &mut &[u8]) -> Option<String> {
            String::from_utf8(bytes(at)?).ok()
        }
        let path = string(&mut at)?;
        let query = string(&mut at)?;
        let headers = (0..number(&mut at)?)
            .map(|_| {
                Some(Header {
                    name: string(&mut at)?,
                    value: bytes(&mut at)?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        let positional_captures = (0..number(&mut at)?)
            .map(|_| string(&mut at))
            .collect::<Option<Vec<_>>>()?;
        let named_captures = (0..number(&mut at)?)
            .map(|_| {
                Some(NamedCapture {
                    name: string(&mut at)?,
                    value: string(&mut at)?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        let subprotocols = (0..number(&mut at)?)
            .map(|_| string(&mut at))
            .collect::<Option<Vec<_>>>()?;
        let origin = match number(&mut at)? {
            0 => None,
            _ => Some(string(&mut at)?),
        };
        Some(UpgradeRequest {
            connection_id: self.connection_id,
            path,
            query,
            headers,
            positional_captures,
            named_captures,
            remote_address: self.remote_address,
            subprotocols,
            origin,
            origin_allowed: self.origin_allowed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::to_socket_address;

    #[test]
    fn a_packed_request_unpacks_to_the_same_request() {
        let request = UpgradeRequest {
            connection_id: 42,
            path: "/rooms/lobby".into(),
            query: "token=x&é=1".into(),
            headers: vec![
                Header {
                    name: "host".into(),
                    value: b"example.com".to_vec(),
                },
                Header {
                    name: "x-bin".into(),
                    value: vec![0, 255, 10],
                },
            ],
            positional_captures: vec!["lobby".into(), String::new()],
            named_captures: vec![NamedCapture {
                name: "room".into(),
                value: "lobby".into(),
            }],
            remote_address: to_socket_address("[::1]:8080".parse().expect("address")),
            subprotocols: vec!["chat.v1".into()],
            origin: Some("https://example.com".into()),
            origin_allowed: true,
        };
        let unpacked = PackedRequest::pack(&request).unpack().expect("unpacks");
        assert_eq!(format!("{unpacked:?}"), format!("{request:?}"));
        let no_origin = UpgradeRequest {
            origin: None,
            headers: Vec::new(),
            ..request
        };
        let unpacked = PackedRequest::pack(&no_origin).unpack().expect("unpacks");
        assert_eq!(format!("{unpacked:?}"), format!("{no_origin:?}"));
    }
}
