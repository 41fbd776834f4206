//! The data a handler receives: the upgrade request, messages and close
//! information.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::bindings::wsbox::websocket::types as wit;

/// The opening handshake as the handler sees it (Tornado's `self.request`,
/// plus the route's captures).
///
/// Header names are lower-case as the host received them; use
/// [`header`](Self::header) for a case-insensitive lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// A host-wide unique id of this connection, for logs and for keying
    /// per-connection state ([`Ws::id`](crate::Ws::id)).
    pub connection_id: u64,
    /// The request path, not percent-decoded (`/chat/room%201`).
    pub path: String,
    /// The raw query string without the `?`, empty if none.
    pub query: String,
    /// Every request header as `(name, value)`, in the order received.
    /// Values are the bytes received: HTTP allows non-ASCII octets, so use
    /// [`header`](Self::header) for the value as text.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The route's unnamed captures in order: Tornado's `open(*args)`.
    /// A capture that did not participate in the match is an empty string.
    pub path_args: Vec<String>,
    /// The route's named captures as `(name, value)`, in the order the host
    /// sent them: Tornado's `open(**kwargs)`.
    pub path_kwargs: Vec<(String, String)>,
    /// The peer's address (the TCP peer: a proxy's address when the client
    /// connects through one).
    pub remote_addr: SocketAddr,
    /// The subprotocols the client offered in `Sec-WebSocket-Protocol`, in
    /// its order of preference.
    pub subprotocols: Vec<String>,
    /// The `Origin` header, if the client sent one (browsers always do).
    pub origin: Option<String>,
    /// The host's own origin verdict: `true` when there is no `Origin` header
    /// or when the route's origin policy allows it.
    pub origin_allowed: bool,
}

impl Default for UpgradeRequest {
    /// `GET /` from `127.0.0.1:0`, without headers: a starting point for
    /// tests (see [`testing`](crate::testing)).
    fn default() -> Self {
        Self {
            connection_id: 1,
            path: "/".to_owned(),
            query: String::new(),
            headers: Vec::new(),
            path_args: Vec::new(),
            path_kwargs: Vec::new(),
            remote_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            subprotocols: Vec::new(),
            origin: None,
            origin_allowed: true,
        }
    }
}

impl UpgradeRequest {
    /// The value of the first header called `name` (compared
    /// case-insensitively) as text; `None` when there is none or its value
    /// is not UTF-8 (see [`header_bytes`](Self::header_bytes)).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).next()
    }

    /// The value of the first header called `name` (case-insensitive), as
    /// the bytes received.
    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The values of every header called `name` (case-insensitive) that
    /// are UTF-8, in the order received.
    pub fn header_values<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .filter_map(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The `index`-th unnamed route capture.
    pub fn path_arg(&self, index: usize) -> Option<&str> {
        self.path_args.get(index).map(String::as_str)
    }

    /// The named route capture `name` (`(?P<name>...)`).
    pub fn path_kwarg(&self, name: &str) -> Option<&str> {
        self.path_kwargs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The query string split into `(name, value)` pairs at `&` and `=`.
    ///
    /// Nothing is percent-decoded and `+` is left alone; a pair without `=`
    /// has an empty value.
    pub fn query_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
    }

    /// The raw (not percent-decoded) value of the first query parameter
    /// called `name`.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query_pairs().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

impl From<wit::UpgradeRequest> for UpgradeRequest {
    fn from(r: wit::UpgradeRequest) -> Self {
        Self {
            connection_id: r.connection_id,
            path: r.path,
            query: r.query,
            headers: r.headers.into_iter().map(|h| (h.name, h.value)).collect(),
            path_args: r.positional_captures,
            path_kwargs: r
                .named_captures
                .into_iter()
                .map(|c| (c.name, c.value))
                .collect(),
            remote_addr: socket_addr(&r.remote_address),
            subprotocols: r.subprotocols,
            origin: r.origin,
            origin_allowed: r.origin_allowed,
        }
    }
}

fn socket_addr(a: &wit::SocketAddress) -> SocketAddr {
    let ip = match a.address {
        wit::IpAddress::Ipv4((a, b, c, d)) => IpAddr::from([a, b, c, d]),
        wit::IpAddress::Ipv6((a, b, c, d, e, f, g, h)) => IpAddr::from([a, b, c, d, e, f, g, h]),
    };
    SocketAddr::new(ip, a.port)
}

/// One complete message received from the peer, reassembled and
/// decompressed by the host.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Message {
    /// A text message; the host has validated it as UTF-8.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

impl Message {
    /// Whether this is a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Message::Text(_))
    }

    /// The text of a text message, `None` for a binary one.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Message::Text(s) => Some(s),
            Message::Binary(_) => None,
        }
    }

    /// The payload bytes, whatever the message type.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(s) => s.as_bytes(),
            Message::Binary(b) => b,
        }
    }

    /// The payload length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<&str> for Message {
    fn from(text: &str) -> Self {
        Message::Text(text.to_owned())
    }
}

impl From<String> for Message {
    fn from(text: String) -> Self {
        Message::Text(text)
    }
}

impl From<&[u8]> for Message {
    fn from(bytes: &[u8]) -> Self {
        Message::Binary(bytes.to_vec())
    }
}

impl From<Vec<u8>> for Message {
    fn from(bytes: Vec<u8>) -> Self {
        Message::Binary(bytes)
    }
}

/// A message to send with [`Ws::write_message`](crate::Ws::write_message), borrowed
/// or owned.
///
/// You rarely name this type: `&str`, `String` and `&String` convert into a
/// text message; `&[u8]`, `&[u8; N]`, `Vec<u8>` and `&Vec<u8>` into a binary
/// one; a received [`Message`] keeps its type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutMessage<'a> {
    /// A text message.
    Text(Cow<'a, str>),
    /// A binary message.
    Binary(Cow<'a, [u8]>),
}

impl OutMessage<'_> {
    pub(crate) fn as_wit(&self) -> wit::MessageParam<'_> {
        match self {
            OutMessage::Text(s) => wit::MessageParam::Text(s),
            OutMessage::Binary(b) => wit::MessageParam::Binary(b),
        }
    }

    pub(crate) fn kind(&self) -> wit::MessageKind {
        match self {
            OutMessage::Text(_) => wit::MessageKind::Text,
            OutMessage::Binary(_) => wit::MessageKind::Binary,
        }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            OutMessage::Text(s) => s.as_bytes(),
            OutMessage::Binary(b) => b,
        }
    }
}

impl<'a> From<&'a str> for OutMessage<'a> {
    fn from(s: &'a str) -> Self {
        OutMessage::Text(Cow::Borrowed(s))
    }
}

impl<'a> From<&'a String> for OutMessage<'a> {
    fn from(s: &'a String) -> Self {
        OutMessage::Text(Cow::Borrowed(s))
    }
}

impl From<String> for OutMessage<'static> {
    fn from(s: String) -> Self {
        OutMessage::Text(Cow::Owned(s))
    }
}

impl<'a> From<&'a [u8]> for OutMessage<'a> {
    fn from(b: &'a [u8]) -> Self {
        OutMessage::Binary(Cow::Borrowed(b))
    }
}

impl<'a, const N: usize> From<&'a [u8; N]> for OutMessage<'a> {
    fn from(b: &'a [u8; N]) -> Self {
        OutMessage::Binary(Cow::Borrowed(b))
    }
}

impl<'a> From<&'a Vec<u8>> for OutMessage<'a> {
    fn from(b: &'a Vec<u8>) -> Self {
        OutMessage::Binary(Cow::Borrowed(b))
    }
}

impl From<Vec<u8>> for OutMessage<'static> {
    fn from(b: Vec<u8>) -> Self {
        OutMessage::Binary(Cow::Owned(b))
    }
}

impl From<Message> for OutMessage<'static> {
    fn from(m: Message) -> Self {
        match m {
            Message::Text(s) => s.into(),
            Message::Binary(b) => b.into(),
        }
    }
}

impl<'a> From<&'a Message> for OutMessage<'a> {
    fn from(m: &'a Message) -> Self {
        match m {
            Message::Text(s) => s.into(),
            Message::Binary(b) => b.into(),
        }
    }
}

/// Why a connection ended, from the host's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseCause {
    /// The peer sent a close frame.
    PeerClosed,
    /// The handler called [`Ws::close`](crate::Ws::close).
    HandlerClosed,
    /// The peer broke the protocol (1002), sent invalid UTF-8 (1007) or
    /// another invalid payload.
    ProtocolError,
    /// The peer sent a message over the route's `max_message_size` (1009).
    MessageTooBig,
    /// The peer did not answer a keepalive ping in time.
    PingTimeout,
    /// The host is shutting down or the handler is being replaced (1001).
    GoingAway,
    /// The TCP connection ended or failed without a close handshake (1006).
    ConnectionLost,
    /// The handler queued more output than its route allows while the peer
    /// was not reading: the host closed with 1011 "output limit exceeded".
    OutputLimit,
    /// The server closed the connection on someone else's request (an
    /// operator through the admin API), with the code and reason they gave.
    ClosedByServer,
}

impl CloseCause {
    /// The WIT name of the cause, e.g. `"peer-closed"`.
    pub fn name(self) -> &'static str {
        match self {
            CloseCause::PeerClosed => "peer-closed",
            CloseCause::HandlerClosed => "handler-closed",
            CloseCause::ProtocolError => "protocol-error",
            CloseCause::MessageTooBig => "message-too-big",
            CloseCause::PingTimeout => "ping-timeout",
            CloseCause::GoingAway => "going-away",
            CloseCause::ConnectionLost => "connection-lost",
            CloseCause::OutputLimit => "output-limit",
            CloseCause::ClosedByServer => "closed-by-server",
        }
    }
}

/// Shows the WIT name, e.g. `peer-closed`.
impl fmt::Display for CloseCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<wit::CloseCause> for CloseCause {
    fn from(c: wit::CloseCause) -> Self {
        match c {
            wit::CloseCause::PeerClosed => CloseCause::PeerClosed,
            wit::CloseCause::HandlerClosed => CloseCause::HandlerClosed,
            wit::CloseCause::ProtocolError => CloseCause::ProtocolError,
            wit::CloseCause::MessageTooBig => CloseCause::MessageTooBig,
            wit::CloseCause::PingTimeout => CloseCause::PingTimeout,
            wit::CloseCause::GoingAway => CloseCause::GoingAway,
            wit::CloseCause::ConnectionLost => CloseCause::ConnectionLost,
            wit::CloseCause::OutputLimit => CloseCause::OutputLimit,
            wit::CloseCause::ClosedByServer => CloseCause::ClosedByServer,
        }
    }
}

/// How a connection ended, passed to
/// [`on_close`](crate::WebSocketHandler::on_close).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseInfo {
    /// The close code the peer sent, or the one the host sent when the peer
    /// sent none (Tornado's `close_code`). `None` when no close frame carried
    /// a code (1005 / 1006 in RFC 6455 terms).
    pub code: Option<u16>,
    /// The close reason that came with `code` (Tornado's `close_reason`).
    pub reason: String,
    /// Why the connection ended.
    pub cause: CloseCause,
}

impl From<wit::CloseInfo> for CloseInfo {
    fn from(c: wit::CloseInfo) -> Self {
        Self {
            code: c.code,
            reason: c.reason,
            cause: c.cause.into(),
        }
    }
}

/// Refuse the upgrade with an HTTP error, returned from
/// [`prepare`](crate::WebSocketHandler::prepare) (Tornado's `prepare`
/// raising `HTTPError`).
///
/// ```
/// use wsbox_guest::Reject;
///
/// let reject = Reject::new(401, "bad token").header("www-authenticate", "Bearer");
/// assert_eq!(reject.status, 401);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    /// An HTTP status from 400 to 599.
    pub status: u16,
    /// A short explanation, sent as the plain-text body.
    pub reason: String,
    /// Extra response headers as `(name, value)`.
    pub headers: Vec<(String, String)>,
}

impl Reject {
    /// A rejection with `status` (400-599) and a plain-text `reason`.
    pub fn new(status: u16, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a response header.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "upgrade rejected with {}: {}", self.status, self.reason)
    }
}

impl std::error::Error for Reject {}

pub(crate) fn wit_headers(headers: Vec<(String, String)>) -> Vec<wit::Header> {
    headers
        .into_iter()
        .map(|(name, value)| wit::Header {
            name,
            value: value.into_bytes(),
        })
        .collect()
}

/// What a [`Ws::publish`](crate::Ws::publish) did, counting the
/// subscribers on this server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Published {
    /// Subscribers the message was queued on.
    pub delivered: u32,
    /// Subscribers skipped as slow consumers (over their route's
    /// `max_backpressure`).
    pub skipped: u32,
    /// With several nodes (a broker): why the message did not go to the
    /// other nodes, if it did not. Always `None` on a single node.
    pub broker_error: Option<crate::BrokerError>,
}
