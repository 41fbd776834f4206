//! Calls into the host about this instance's connection, and their errors.

use std::cell::RefCell;
use std::fmt;
use std::sync::OnceLock;

use crate::bindings::wsbox::websocket::connection as host;
use crate::bindings::wsbox::websocket::types as wit;
use crate::types::{CloseInfo, ConnectionInfo, OutMessage, UpgradeRequest};

/// The connection is closing or closed, so nothing more can be sent
/// (Tornado's `WebSocketClosedError`).
///
/// Writes fail with this after [`close`] was called, once the peer started
/// the closing handshake, from [`on_close`](crate::WebSocketHandler::on_close),
/// and during the upgrade phase (the connection is not open yet).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Closed;

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the WebSocket connection is closed")
    }
}

impl std::error::Error for Closed {}

/// Why [`ping`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PingError {
    /// The connection is closing or closed.
    Closed,
    /// The payload is longer than 125 bytes (RFC 6455 §5.5).
    PayloadTooLong,
}

impl PingError {
    /// The WIT name of the error, e.g. `"payload-too-long"`.
    pub fn name(self) -> &'static str {
        match self {
            PingError::Closed => "closed",
            PingError::PayloadTooLong => "payload-too-long",
        }
    }
}

impl fmt::Display for PingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PingError::Closed => "cannot ping: the WebSocket connection is closed",
            PingError::PayloadTooLong => "a ping payload may be at most 125 bytes",
        })
    }
}

impl std::error::Error for PingError {}

impl From<Closed> for PingError {
    fn from(_: Closed) -> Self {
        PingError::Closed
    }
}

/// Why [`close`] failed. Nothing was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseError {
    /// The code may not be sent on the wire: it must be 1000-1003,
    /// 1007-1014 or 3000-4999 (RFC 6455 §7.4).
    InvalidCode,
    /// The reason is longer than 123 bytes of UTF-8.
    ReasonTooLong,
    /// A reason was given without a code.
    ReasonWithoutCode,
}

impl CloseError {
    /// The WIT name of the error, e.g. `"invalid-code"`.
    pub fn name(self) -> &'static str {
        match self {
            CloseError::InvalidCode => "invalid-code",
            CloseError::ReasonTooLong => "reason-too-long",
            CloseError::ReasonWithoutCode => "reason-without-code",
        }
    }
}

impl fmt::Display for CloseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CloseError::InvalidCode => {
                "invalid close code: it must be 1000-1003, 1007-1014 or 3000-4999"
            }
            CloseError::ReasonTooLong => "the close reason is longer than 123 bytes",
            CloseError::ReasonWithoutCode => "a close reason needs a close code",
        })
    }
}

impl std::error::Error for CloseError {}

/// Why [`write_json`] failed.
#[derive(Debug)]
pub enum JsonError {
    /// The value could not be serialized (e.g. a map with non-string keys).
    Serialize(serde_json::Error),
    /// The connection is closing or closed.
    Closed,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::Serialize(e) => write!(f, "cannot serialize the message as JSON: {e}"),
            JsonError::Closed => Closed.fmt(f),
        }
    }
}

impl std::error::Error for JsonError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JsonError::Serialize(e) => Some(e),
            JsonError::Closed => None,
        }
    }
}

impl From<Closed> for JsonError {
    fn from(_: Closed) -> Self {
        JsonError::Closed
    }
}

impl From<serde_json::Error> for JsonError {
    fn from(e: serde_json::Error) -> Self {
        JsonError::Serialize(e)
    }
}

/// Sends a message to the peer (Tornado's `write_message`). Messages go out
/// in the order written.
///
/// `&str` and `String` are sent as text, `&[u8]` and `Vec<u8>` as binary, and
/// a received [`Message`](crate::Message) keeps its type:
///
/// ```no_run
/// wsbox_guest::write_message("hello")?;
/// wsbox_guest::write_message(vec![0u8, 1, 2])?;
/// # Ok::<(), wsbox_guest::Closed>(())
/// ```
///
/// From [`on_message`](crate::WebSocketHandler::on_message), writes are
/// gathered and handed to the host together when the handler returns (or
/// once 64 KiB are waiting): one call into the host for a batch of messages
/// instead of one per write. Nothing goes out later than it would have: the
/// host writes to the socket only after the handler returns.
pub fn write_message<'a>(message: impl Into<OutMessage<'a>>) -> Result<(), Closed> {
    let message = message.into();
    OUTBOX.with_borrow_mut(|out| {
        if out.closed {
            return Err(Closed);
        }
        let bytes = message.bytes();
        // Outside a batch, or a large message with nothing queued before it:
        // straight to the host, without a copy into the outbox.
        if !out.batching || (out.spans.is_empty() && bytes.len() >= OUTBOX_FLUSH_AT) {
            return host::write_message(message.as_wit())
                .map_err(|host::WriteError::Closed| Closed);
        }
        out.data.extend_from_slice(bytes);
        out.spans.push(wit::MessageSpan {
            kind: message.kind(),
            // The host refuses messages of 4 GiB long before this.
            len: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
        });
        if out.data.len() >= OUTBOX_FLUSH_AT {
            out.flush()
        } else {
            Ok(())
        }
    })
}

/// Queue more than this in [`Outbox`] and it is handed to the host at once.
const OUTBOX_FLUSH_AT: usize = 64 * 1024;
/// An outbox buffer larger than this is freed after a flush.
const OUTBOX_KEEP: usize = 256 * 1024;

/// Writes made while a batch of messages is handled, handed to the host in
/// one `write-messages` call.
struct Outbox {
    /// Set while `on-messages` runs: writes are queued, not sent.
    batching: bool,
    /// The handler closed the connection or a write found it closing, or
    /// `on-close` was called: writes fail without asking the host.
    closed: bool,
    data: Vec<u8>,
    spans: Vec<wit::MessageSpan>,
}

impl Outbox {
    fn flush(&mut self) -> Result<(), Closed> {
        if self.spans.is_empty() {
            return Ok(());
        }
        let result = host::write_messages(wit::MessageBatchParam {
            data: &self.data,
            spans: &self.spans,
        })
        .map_err(|host::WriteError::Closed| Closed);
        self.data.clear();
        self.spans.clear();
        if self.data.capacity() > OUTBOX_KEEP {
            self.data = Vec::new();
        }
        if result.is_err() {
            self.closed = true;
        }
        result
    }
}

thread_local! {
    static OUTBOX: RefCell<Outbox> = const {
        RefCell::new(Outbox {
            batching: false,
            closed: false,
            data: Vec::new(),
            spans: Vec::new(),
        })
    };
}

/// From here until [`end_batch`], writes are queued in the outbox.
pub(crate) fn begin_batch() {
    OUTBOX.with_borrow_mut(|out| out.batching = true);
}

/// Hands what the batch wrote to the host.
pub(crate) fn end_batch() {
    OUTBOX.with_borrow_mut(|out| {
        // A failure marks the outbox closed; the handler learns of it on its
        // next write.
        let _ = out.flush();
        out.batching = false;
    });
}

/// Queued writes go out before a ping or close, which must follow them.
fn flush_outbox() {
    OUTBOX.with_borrow_mut(|out| {
        let _ = out.flush();
    });
}

/// Whether the connection is known to be closing: messages after the
/// handler's own `close` in a batch are skipped, as the host would have
/// dropped them.
pub(crate) fn is_closed() -> bool {
    OUTBOX.with_borrow(|out| out.closed)
}

/// `on-close` was called: writes fail from here on.
pub(crate) fn mark_closed() {
    OUTBOX.with_borrow_mut(|out| out.closed = true);
}

/// Serializes `value` as JSON and sends it as a text message (Tornado's
/// `write_message` with a `dict`).
pub fn write_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<(), JsonError> {
    let text = serde_json::to_string(value)?;
    write_message(text)?;
    Ok(())
}

/// Sends a ping with `data` as payload (at most 125 bytes). The peer's pong
/// arrives in [`on_pong`](crate::WebSocketHandler::on_pong).
pub fn ping(data: impl AsRef<[u8]>) -> Result<(), PingError> {
    flush_outbox();
    host::ping(data.as_ref()).map_err(|e| match e {
        host::PingError::Closed => PingError::Closed,
        host::PingError::PayloadTooLong => PingError::PayloadTooLong,
    })
}

/// Starts the closing handshake with an optional code and reason (Tornado's
/// `close(code, reason)`).
///
/// Closing an already closing connection does nothing and succeeds.
/// [`on_close`](crate::WebSocketHandler::on_close) follows once the handshake
/// is over.
///
/// ```no_run
/// wsbox_guest::close(Some(1000), Some("bye"))?;
/// # Ok::<(), wsbox_guest::CloseError>(())
/// ```
pub fn close(code: Option<u16>, reason: Option<&str>) -> Result<(), CloseError> {
    flush_outbox();
    host::close(code, reason).map_err(|e| match e {
        host::CloseError::InvalidCode => CloseError::InvalidCode,
        host::CloseError::ReasonTooLong => CloseError::ReasonTooLong,
        host::CloseError::ReasonWithoutCode => CloseError::ReasonWithoutCode,
    })?;
    // A close from `upgrade` closes nothing (the connection is not open
    // yet), so it must not make later writes fail.
    if connection_info().is_some() {
        OUTBOX.with_borrow_mut(|out| out.closed = true);
    }
    Ok(())
}

/// Sets `TCP_NODELAY` on the connection's socket (Tornado's `set_nodelay`):
/// small messages go out at once instead of being coalesced. Off by default.
pub fn set_nodelay(enabled: bool) {
    host::set_nodelay(enabled);
}

static REQUEST: OnceLock<UpgradeRequest> = OnceLock::new();
static CONNECTION: OnceLock<ConnectionInfo> = OnceLock::new();
static CLOSE_INFO: OnceLock<CloseInfo> = OnceLock::new();

pub(crate) fn store_request(request: UpgradeRequest) -> &'static UpgradeRequest {
    REQUEST.get_or_init(|| request)
}

pub(crate) fn store_connection(info: ConnectionInfo) -> &'static ConnectionInfo {
    CONNECTION.get_or_init(|| info)
}

pub(crate) fn store_close_info(info: CloseInfo) -> &'static CloseInfo {
    CLOSE_INFO.get_or_init(|| info)
}

/// The upgrade request of this connection (Tornado's `self.request`), or
/// `None` before the host called the handler for the first time.
pub fn request() -> Option<&'static UpgradeRequest> {
    CONNECTION
        .get()
        .map(|c| &c.request)
        .or_else(|| REQUEST.get())
}

/// The connection as established, or `None` before
/// [`open`](crate::WebSocketHandler::open).
pub fn connection_info() -> Option<&'static ConnectionInfo> {
    CONNECTION.get()
}

/// The subprotocol in force (Tornado's `selected_subprotocol`), `None` if
/// none was selected or the connection is not open yet.
pub fn selected_subprotocol() -> Option<&'static str> {
    CONNECTION.get()?.subprotocol.as_deref()
}

/// How the connection ended, or `None` before
/// [`on_close`](crate::WebSocketHandler::on_close).
pub fn close_info() -> Option<&'static CloseInfo> {
    CLOSE_INFO.get()
}

/// The close code (Tornado's `close_code`): `None` before
/// [`on_close`](crate::WebSocketHandler::on_close) or when no close frame
/// carried a code.
pub fn close_code() -> Option<u16> {
    CLOSE_INFO.get()?.code
}

/// The close reason (Tornado's `close_reason`): `None` before
/// [`on_close`](crate::WebSocketHandler::on_close).
pub fn close_reason() -> Option<&'static str> {
    CLOSE_INFO.get().map(|c| c.reason.as_str())
}
