//! The client's opening handshake without I/O: the request's bytes out, the
//! response's bytes in (RFC 6455 §4.1).
//!
//! ```
//! use wsbox_protocol::handshake::{self, client::ClientHandshake};
//!
//! let key = handshake::generate_key();
//! let headers = handshake::client_request_headers("example.com", &key, &[], None).unwrap();
//! let (mut opening, request) = ClientHandshake::new("/chat", &headers, key.clone(), vec![]);
//! assert!(request.starts_with(b"GET /chat HTTP/1.1\r\n"));
//! // ... write `request`, then feed what the server answers:
//! let answer = format!(
//!     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
//!      Sec-WebSocket-Accept: {}\r\n\r\n",
//!     handshake::accept_key(&key)
//! );
//! let mut bytes = answer.into_bytes();
//! bytes.extend_from_slice(b"\x81\x02hi");
//! let head = opening.receive(&bytes).unwrap().expect("a whole head");
//! assert_eq!(head.status, 101);
//! assert_eq!(head.rest, b"\x81\x02hi"); // the first frame, for the engine
//! let info = opening.validate(&head).unwrap();
//! assert_eq!(info.subprotocol, None);
//! ```

use http::StatusCode;
use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::{HandshakeError, ResponseInfo, validate_response};

/// A response head larger than this is refused.
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// Headers a response may have at most.
const MAX_HEADERS: usize = 128;

/// The request head: `GET resource HTTP/1.1`, `headers` (from
/// [`super::client_request_headers`] plus the caller's own), and the blank line.
pub fn encode_request(resource: &str, headers: &HeaderMap) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"GET ");
    head.extend_from_slice(resource.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// A server's response head, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub reason: String,
    pub headers: HeaderMap,
    /// The bytes that followed the head: after a 101, the first frames; after a
    /// refusal, the start of its body.
    pub rest: Vec<u8>,
}

/// Why a response head could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("the server answered with TLS: it serves wss://, not ws:// (use a wss:// URL)")]
    TlsAnswer,
    #[error("response head over {MAX_RESPONSE_HEAD} bytes")]
    TooLarge,
    #[error("malformed response: {0}")]
    Malformed(String),
}

/// The client's side of one opening handshake.
#[derive(Debug)]
pub struct ClientHandshake {
    key: String,
    subprotocols: Vec<String>,
    buf: Vec<u8>,
}

impl ClientHandshake {
    /// Starts a handshake for `resource` (path and query) with `headers`, which
    /// carry `key` as `Sec-WebSocket-Key` and offer `subprotocols`; returns it and
    /// the request bytes to write.
    pub fn new(
        resource: &str,
        headers: &HeaderMap,
        key: String,
        subprotocols: Vec<String>,
    ) -> (Self, Vec<u8>) {
        let request = encode_request(resource, headers);
        let opening = Self {
            key,
            subprotocols,
            buf: Vec::new(),
        };
        (opening, request)
    }

    /// The `Sec-WebSocket-Key` the request carries.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Feeds bytes read from the server: `Ok(Some(head))` once the whole head
    /// is there (later bytes are in `head.rest`), `Ok(None)` while more is
    /// needed.
    pub fn receive(&mut self, data: &[u8]) -> Result<Option<ResponseHead>, ResponseError> {
        self.buf.extend_from_slice(data);
        let head = parse_response_head(&self.buf)?;
        if head.is_none() && self.buf.len() > MAX_RESPONSE_HEAD {
            return Err(ResponseError::TooLarge);
        }
        Ok(head)
    }

    /// Checks a response head against the request (status 101, upgrade
    /// headers, accept key, offered subprotocols); what it agreed to.
    pub fn validate(&self, head: &ResponseHead) -> Result<ResponseInfo, HandshakeError> {
        validate_response(head.status, &head.headers, &self.key, &self.subprotocols)
    }
}

/// Parses a response head from the start of `buf`: `Ok(None)` while incomplete.
pub fn parse_response_head(buf: &[u8]) -> Result<Option<ResponseHead>, ResponseError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut slots);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => {
            // A TLS record (handshake 0x16 or alert 0x15, version 3.x): the
            // server speaks TLS and was sent plain HTTP.
            if let [0x15 | 0x16, 0x03, ..] = buf {
                return Err(ResponseError::TlsAnswer);
            }
            let start = String::from_utf8_lossy(&buf[..buf.len().min(80)]).into_owned();
            return Err(ResponseError::Malformed(format!(
                "{e} (response starts with {start:?})"
            )));
        }
    };
    let status = parsed
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or_else(|| ResponseError::Malformed("no valid status code".into()))?;
    let mut headers = HeaderMap::new();
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| ResponseError::Malformed(format!("invalid header name {:?}", h.name)))?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| {
            ResponseError::Malformed(format!("invalid value of header {:?}", h.name))
        })?;
        headers.append(name, value);
    }
    Ok(Some(ResponseHead {
        status,
        reason: parsed.reason.unwrap_or_default().to_owned(),
        headers,
        rest: buf[len..].to_vec(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::{accept_key, client_request_headers};

    fn opening(subprotocols: &[&str]) -> (ClientHandshake, String) {
        let key = "dGhlIHNhbXBsZSBub25jZQ==".to_owned();
        let offered: Vec<String> = subprotocols.iter().map(|s| s.to_string()).collect();
        let headers = client_request_headers("h:1", &key, &offered, None).unwrap();
        let (opening, request) = ClientHandshake::new("/a?b=1", &headers, key.clone(), offered);
        let text = String::from_utf8(request).unwrap();
        assert!(
            text.starts_with("GET /a?b=1 HTTP/1.1\r\nhost: h:1\r\n"),
            "{text}"
        );
        assert!(text.ends_with("\r\n\r\n"));
        (opening, accept_key(&key))
    }

    #[test]
    fn a_head_in_pieces_is_parsed_once_whole_with_what_follows() {
        let (mut opening, accept) = opening(&["chat"]);
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: chat\r\n\r\n"
        );
        let mut bytes = answer.into_bytes();
        bytes.extend_from_slice(b"\x81\x00");
        for byte in &bytes[..bytes.len() - 3] {
            assert_eq!(opening.receive(std::slice::from_ref(byte)), Ok(None));
        }
        let head = opening.receive(&bytes[bytes.len() - 3..]).unwrap().unwrap();
        assert_eq!(head.status, StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(head.reason, "Switching Protocols");
        assert_eq!(head.rest, b"\x81\x00");
        let info = opening.validate(&head).unwrap();
        assert_eq!(info.subprotocol.as_deref(), Some("chat"));
    }

    #[test]
    fn wrong_answers_are_told_apart() {
        let (mut opening, _) = opening(&[]);
        let head = opening
            .receive(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno")
            .unwrap()
            .unwrap();
        assert_eq!(
            (head.status, head.rest.as_slice()),
            (StatusCode::FORBIDDEN, &b"no"[..])
        );
        assert!(matches!(
            opening.validate(&head),
            Err(HandshakeError::UnexpectedStatus(s)) if s == StatusCode::FORBIDDEN
        ));
        let bad_accept = parse_response_head(
            b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            opening.validate(&bad_accept),
            Err(HandshakeError::InvalidAccept)
        );
        assert_eq!(
            parse_response_head(b"\x16\x03\x01\x00\x05hello"),
            Err(ResponseError::TlsAnswer)
        );
        assert!(matches!(
            parse_response_head(b"SSH-2.0-OpenSSH\r\n\r\n"),
            Err(ResponseError::Malformed(m)) if m.contains("SSH-2.0")
        ));
        let mut endless = ClientHandshake::new("/", &HeaderMap::new(), String::new(), vec![]).0;
        let line = b"X-A: b\r\n".repeat(MAX_RESPONSE_HEAD / 8 + 1);
        assert_eq!(endless.receive(b"HTTP/1.1 101 OK\r\n"), Ok(None));
        // Too many headers is malformed for httparse before it is too large.
        assert!(endless.receive(&line).is_err());
    }
}
