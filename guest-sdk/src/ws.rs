//! [`Ws`]: the connection a handler's event is about, and what the SDK
//! keeps per connection (the request, the settled handshake, the close
//! information, the writes waiting to be handed over in one batch).

use std::cell::{OnceCell, RefCell};

use crate::backend::Conn;
use crate::bindings::wsbox::websocket::types as wit;
use crate::errors::{CloseError, Closed, JsonError, PingError, PubsubError};
use crate::types::{CloseInfo, OutMessage, Published, UpgradeRequest};

/// The connection an event is about (Tornado's `WebSocketHandler` methods
/// that act on the connection: `write_message`, `ping`, `close`,
/// `request`, `selected_subprotocol`, `close_code`, ...).
///
/// Every handler method after the upgrade gets one; it is valid for that
/// call. Writes are queued and go out, in order, when the call returns.
pub struct Ws<'a> {
    backend: Conn<'a>,
    conn: &'a ConnData,
}

/// What the SDK keeps for one connection.
pub(crate) struct ConnData {
    /// From `upgrade`, or asked of the host when this instance did not see it.
    request: OnceCell<UpgradeRequest>,
    subprotocol: Option<String>,
    extensions: String,
    close_info: Option<CloseInfo>,
    outbox: RefCell<Outbox>,
}

impl ConnData {
    pub(crate) const fn new() -> ConnData {
        ConnData {
            request: OnceCell::new(),
            subprotocol: None,
            extensions: String::new(),
            close_info: None,
            outbox: RefCell::new(Outbox::new()),
        }
    }

    pub(crate) fn set_request(&self, request: UpgradeRequest) -> &UpgradeRequest {
        self.request.get_or_init(|| request)
    }

    /// What `opened` recorded: the subprotocol and extensions in force.
    pub(crate) fn opened_info(&self) -> (&Option<String>, &str) {
        (&self.subprotocol, &self.extensions)
    }

    pub(crate) fn opened(&mut self, subprotocol: Option<String>, extensions: String) {
        self.subprotocol = subprotocol;
        self.extensions = extensions;
    }

    /// `on-close` came: writes fail from here on.
    pub(crate) fn closed(&mut self, info: CloseInfo) {
        self.outbox.get_mut().closed = true;
        self.close_info = Some(info);
    }

    /// From here until [`end_batch`](Self::end_batch), writes are queued.
    pub(crate) fn begin_batch(&self) {
        self.outbox.borrow_mut().batching = true;
    }

    /// Hands what the batch wrote to the host.
    pub(crate) fn end_batch(&self, backend: Conn<'_>) {
        let mut out = self.outbox.borrow_mut();
        // A failure marks the outbox closed; the handler learns of it on
        // its next write.
        let _ = out.flush(backend);
        out.batching = false;
    }

    /// Whether the connection is known to be closing: messages after the
    /// handler's own `close` in a batch are skipped, as the host would
    /// have dropped them.
    pub(crate) fn is_closing(&self) -> bool {
        self.outbox.borrow().closed
    }

    pub(crate) fn ws<'a>(&'a self, backend: Conn<'a>) -> Ws<'a> {
        Ws {
            backend,
            conn: self,
        }
    }
}

impl Ws<'_> {
    /// The connection's host-wide unique id: a key for state kept per
    /// connection.
    pub fn id(&self) -> u64 {
        match self.conn.request.get() {
            Some(request) => request.connection_id,
            None => self.backend.id(),
        }
    }

    /// The upgrade request of this connection (Tornado's `self.request`),
    /// with the route's captures.
    pub fn request(&self) -> &UpgradeRequest {
        self.conn.request.get_or_init(|| self.backend.request())
    }

    /// The subprotocol in force (Tornado's `selected_subprotocol`), `None`
    /// if none was selected.
    pub fn selected_subprotocol(&self) -> Option<&str> {
        self.conn.subprotocol.as_deref()
    }

    /// The negotiated extensions as answered in `Sec-WebSocket-Extensions`,
    /// empty when none.
    pub fn extensions(&self) -> &str {
        &self.conn.extensions
    }

    /// How the connection ended, `None` before
    /// [`on_close`](crate::WebSocketHandler::on_close).
    pub fn close_info(&self) -> Option<&CloseInfo> {
        self.conn.close_info.as_ref()
    }

    /// The close code (Tornado's `close_code`): `None` before
    /// [`on_close`](crate::WebSocketHandler::on_close) or when no close
    /// frame carried a code.
    pub fn close_code(&self) -> Option<u16> {
        self.conn.close_info.as_ref()?.code
    }

    /// The close reason (Tornado's `close_reason`): `None` before
    /// [`on_close`](crate::WebSocketHandler::on_close).
    pub fn close_reason(&self) -> Option<&str> {
        self.conn.close_info.as_ref().map(|c| c.reason.as_str())
    }

    /// Whether the connection is closing or closed, as far as the handler
    /// knows: it closed it, a write found it closing, or `on_close` came.
    pub fn is_closing(&self) -> bool {
        self.conn.is_closing()
    }

    /// Sends a message to the peer (Tornado's `write_message`). Messages go
    /// out in the order written.
    ///
    /// `&str` and `String` are sent as text, `&[u8]` and `Vec<u8>` as
    /// binary, and a received [`Message`](crate::Message) keeps its type.
    ///
    /// From [`on_message`](crate::WebSocketHandler::on_message), writes are
    /// gathered and handed to the host together when the handler returns
    /// (or once 64 KiB are waiting): one call into the host for a batch of
    /// messages instead of one per write. Nothing goes out later than it
    /// would have: the host writes to the socket only after the handler
    /// returns.
    pub fn write_message<'m>(&self, message: impl Into<OutMessage<'m>>) -> Result<(), Closed> {
        let message = message.into();
        let mut out = self.conn.outbox.borrow_mut();
        if out.closed {
            return Err(Closed);
        }
        let bytes = message.bytes();
        // Outside a batch, or a large message with nothing queued before
        // it: straight to the host, without a copy into the outbox.
        if !out.batching || (out.spans.is_empty() && bytes.len() >= OUTBOX_FLUSH_AT) {
            let result = self.backend.write_message(&message);
            if result.is_err() {
                out.closed = true;
            }
            return result;
        }
        out.data.extend_from_slice(bytes);
        out.spans.push(wit::MessageSpan {
            kind: message.kind(),
            // The host refuses messages of 4 GiB long before this.
            len: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
        });
        if out.data.len() >= OUTBOX_FLUSH_AT {
            out.flush(self.backend)
        } else {
            Ok(())
        }
    }

    /// Serializes `value` as JSON and sends it as a text message (Tornado's
    /// `write_message` with a `dict`).
    pub fn write_json<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<(), JsonError> {
        let text = serde_json::to_string(value)?;
        self.write_message(text)?;
        Ok(())
    }

    /// Sends a ping with `data` as payload (at most 125 bytes). The peer's
    /// pong arrives in [`on_pong`](crate::WebSocketHandler::on_pong).
    pub fn ping(&self, data: impl AsRef<[u8]>) -> Result<(), PingError> {
        self.flush();
        self.backend.ping(data.as_ref())
    }

    /// Starts the closing handshake with an optional code and reason
    /// (Tornado's `close(code, reason)`).
    ///
    /// Closing an already closing connection does nothing and succeeds.
    /// [`on_close`](crate::WebSocketHandler::on_close) follows once the
    /// handshake is over; writes fail from now on.
    pub fn close(&self, code: Option<u16>, reason: Option<&str>) -> Result<(), CloseError> {
        self.flush();
        self.backend.close(code, reason)?;
        self.conn.outbox.borrow_mut().closed = true;
        Ok(())
    }

    /// Sets `TCP_NODELAY` on the connection's socket (Tornado's
    /// `set_nodelay`): small messages go out at once instead of being
    /// coalesced. Off by default.
    pub fn set_nodelay(&self, enabled: bool) {
        self.backend.set_nodelay(enabled);
    }

    /// Subscribes this connection to a topic of its tenant: messages
    /// published to it reach the peer straight from the host, without
    /// calling this handler. Subscribing again changes nothing.
    /// Subscriptions end when the connection closes.
    pub fn subscribe(&self, topic: &str) -> Result<(), PubsubError> {
        match self.backend {
            Conn::Host(conn) => crate::backend::host_subscribe(conn, topic),
            Conn::Fake(fake) => fake.subscribe(topic),
        }
    }

    /// Unsubscribes from a topic; `Ok(true)` if it was subscribed.
    pub fn unsubscribe(&self, topic: &str) -> Result<bool, PubsubError> {
        match self.backend {
            Conn::Host(conn) => crate::backend::host_unsubscribe(conn, topic),
            Conn::Fake(fake) => fake.unsubscribe(topic),
        }
    }

    /// Publishes a message to every subscriber of a topic of this tenant,
    /// this connection included if it subscribes (it gets the message
    /// after this call's writes). The host frames it once and queues it on
    /// each subscriber; [`Published`] says how many got it and how many
    /// were skipped as slow consumers, and, with several nodes, whether
    /// it went to the other nodes ([`Published::broker_error`]).
    pub fn publish<'m>(
        &self,
        topic: &str,
        message: impl Into<OutMessage<'m>>,
    ) -> Result<Published, PubsubError> {
        self.publish_as(topic, &message.into(), false)
    }

    /// [`publish`](Self::publish) to everyone but this connection.
    pub fn publish_to_others<'m>(
        &self,
        topic: &str,
        message: impl Into<OutMessage<'m>>,
    ) -> Result<Published, PubsubError> {
        self.publish_as(topic, &message.into(), true)
    }

    fn publish_as(
        &self,
        topic: &str,
        message: &OutMessage<'_>,
        exclude_self: bool,
    ) -> Result<Published, PubsubError> {
        // This call's writes go out before its own copy of the message.
        self.flush();
        match self.backend {
            Conn::Host(conn) => crate::backend::host_publish(conn, topic, message, exclude_self),
            Conn::Fake(fake) => fake.publish(topic, message, exclude_self),
        }
    }

    /// How many connections of this tenant subscribe to a topic on this
    /// server.
    pub fn subscriber_count(&self, topic: &str) -> Result<u32, PubsubError> {
        match self.backend {
            Conn::Host(conn) => crate::backend::host_subscriber_count(conn, topic),
            Conn::Fake(fake) => fake.subscriber_count(topic),
        }
    }

    /// Sends a message to another connection of this tenant by its
    /// [`id`](Self::id), without calling its handler. `Ok(false)` when it
    /// was skipped as a slow consumer.
    pub fn send_to<'m>(
        &self,
        connection_id: u64,
        message: impl Into<OutMessage<'m>>,
    ) -> Result<bool, PubsubError> {
        let message = message.into();
        match self.backend {
            Conn::Host(conn) => crate::backend::host_send_to(conn, connection_id, &message),
            Conn::Fake(fake) => fake.send_to(connection_id, &message),
        }
    }

    /// The host's `connection` resource, for calls the SDK does not wrap
    /// (`None` in native tests). Not public API.
    #[doc(hidden)]
    pub fn __host_connection(&self) -> Option<&crate::__private::Connection> {
        self.backend.host()
    }

    /// Queued writes go out before a ping or close, which must follow them.
    fn flush(&self) {
        let _ = self.conn.outbox.borrow_mut().flush(self.backend);
    }
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
    const fn new() -> Outbox {
        Outbox {
            batching: false,
            closed: false,
            data: Vec::new(),
            spans: Vec::new(),
        }
    }

    fn flush(&mut self, backend: Conn<'_>) -> Result<(), Closed> {
        if self.spans.is_empty() {
            return Ok(());
        }
        let result = backend.write_messages(&self.data, &self.spans);
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
