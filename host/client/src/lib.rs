//! A WebSocket client on wsbox's own protocol engine, modelled on Tornado's
//! `tornado.websocket.websocket_connect`.
//!
//! [`connect`] opens a `ws://` or `wss://` connection and returns a
//! [`WebSocketClient`]. A background tokio task drives the sans-IO engine
//! ([`wsbox_protocol::Connection`] in the client role): it reads and writes
//! the socket, answers pings, sends keepalive pings and enforces their
//! timeout. The client offers three ways to receive messages:
//!
//! - [`WebSocketClient::read_message`], Tornado's coroutine style: the next
//!   message, or `None` once the connection is closed;
//! - [`WebSocketClient`] is a [`futures_util::Stream`] of [`Message`]s;
//! - [`connect_with_callback`], Tornado's `on_message_callback`: a callback
//!   gets `Some(message)` for each message and `None` when the connection
//!   closes.
//!
//! Writing ([`ClientHandle::write_message`], [`ClientHandle::write_json`],
//! [`ClientHandle::ping`], [`ClientHandle::close`]) goes through a
//! [`ClientHandle`], which [`WebSocketClient`] dereferences to and which can
//! be cloned into other tasks. After the close, [`ClientHandle::close_code`]
//! and [`ClientHandle::close_reason`] give the server's close frame and
//! [`ClientHandle::close_info`] tells how the connection ended.
//!
//! ```no_run
//! use std::time::Duration;
//! use wsbox_client::{ClientOptions, Message, connect};
//! use wsbox_protocol::deflate::DeflateConfig;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let options = ClientOptions {
//!     compression: Some(DeflateConfig::default()), // offer permessage-deflate
//!     ping_interval: Some(Duration::from_secs(20)),
//!     subprotocols: vec!["chat".into()],
//!     headers: vec![("Authorization".into(), "Bearer s3cret".into())],
//!     ..ClientOptions::default()
//! };
//! let mut ws = connect("ws://127.0.0.1:8080/echo", options).await?;
//! println!("subprotocol {:?}, extensions {:?}", ws.selected_subprotocol(), ws.extensions());
//!
//! ws.write_message(Message::Text("hello".into())).await?;
//! ws.write_json(&serde_json::json!({"n": 42})).await?;
//! while let Some(message) = ws.read_message().await {
//!     match message {
//!         Message::Text(text) => println!("text: {text}"),
//!         Message::Binary(data) => println!("{} bytes", data.len()),
//!     }
//!     ws.close(Some(1000), "done")?; // the close handshake runs in the background
//! }
//! // read_message returned None: the connection is closed.
//! let info = ws.closed().await;
//! println!("server closed with {:?} {:?} ({})", info.code, info.reason, info.cause);
//! # Ok(())
//! # }
//! ```

pub mod cli;
mod handshake;
mod task;

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio_util::sync::{CancellationToken, DropGuard};
use wsbox_protocol::deflate::{DeflateConfig, DeflateNegotiationError};
use wsbox_protocol::handshake::HandshakeError;
use wsbox_protocol::{CloseError, CloseFrame, Connection, ProtocolError, SendError, State};

pub use wsbox_protocol::Message;

/// Default for [`ClientOptions::connect_timeout`]: 20 s, Tornado's default
/// `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Default for [`ClientOptions::close_timeout`].
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default for [`ClientOptions::max_message_size`]: 10 MiB, as Tornado's
/// `max_message_size`.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = wsbox_protocol::DEFAULT_MAX_MESSAGE_SIZE;

/// Settings of one client connection. Build it with struct update syntax
/// from [`ClientOptions::default()`] or with the `with_*` methods.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// How long the whole opening may take: DNS, TCP connect, TLS and the
    /// HTTP upgrade. Default [`DEFAULT_CONNECT_TIMEOUT`] (20 s).
    pub connect_timeout: Duration,
    /// Offer permessage-deflate (RFC 7692) with these settings; the server
    /// may decline. Same meaning as the server's compression settings.
    /// Default `None`: no compression is offered (Tornado's default).
    pub compression: Option<DeflateConfig>,
    /// Send a ping this often. Default `None`: no keepalive pings.
    pub ping_interval: Option<Duration>,
    /// Close with 1011 when a keepalive ping is not answered within this
    /// time. Default `None`: the ping interval. Must not exceed
    /// `ping_interval`, and needs it.
    pub ping_timeout: Option<Duration>,
    /// Largest message accepted from the server; a larger one makes the
    /// client close with 1009 "message too big". Default 10 MiB.
    pub max_message_size: usize,
    /// Subprotocols offered (`Sec-WebSocket-Protocol`), in order of
    /// preference. Default: none.
    pub subprotocols: Vec<String>,
    /// Extra request headers, e.g. `Authorization`, `Origin` or `Cookie`.
    /// A `Host` given here replaces the one derived from the URL. The
    /// handshake's own headers (`Upgrade`, `Connection`, `Sec-WebSocket-*`)
    /// may not be set here: they come from the other options.
    pub headers: Vec<(String, String)>,
    /// A PEM file of CA certificates to trust for `wss://` besides the web
    /// PKI roots, e.g. the development certificate of `wsbox cert --dev`.
    pub ca_file: Option<PathBuf>,
    /// How long to wait for the server's close frame after sending ours
    /// before dropping the connection. Default [`DEFAULT_CLOSE_TIMEOUT`] (5 s).
    pub close_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            compression: None,
            ping_interval: None,
            ping_timeout: None,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            subprotocols: Vec::new(),
            headers: Vec::new(),
            ca_file: None,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
        }
    }
}

impl ClientOptions {
    /// Offers permessage-deflate with `config`.
    pub fn with_compression(mut self, config: DeflateConfig) -> Self {
        self.compression = Some(config);
        self
    }

    /// Adds a subprotocol to offer.
    pub fn with_subprotocol(mut self, name: impl Into<String>) -> Self {
        self.subprotocols.push(name.into());
        self
    }

    /// Adds a request header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sends keepalive pings every `interval`, closing with 1011 when one is
    /// not answered within `timeout` (`None`: within `interval`).
    pub fn with_ping(mut self, interval: Duration, timeout: Option<Duration>) -> Self {
        self.ping_interval = Some(interval);
        self.ping_timeout = timeout;
        self
    }

    /// Trusts the CA certificates in `path` for `wss://`.
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Checks the options that do not depend on the URL.
    fn validate(&self) -> Result<Keepalive, ClientError> {
        let invalid = |reason: String| Err(ClientError::InvalidOptions(reason));
        if self.connect_timeout.is_zero() {
            return invalid("connect_timeout must be positive".into());
        }
        if self.max_message_size == 0 {
            return invalid("max_message_size must be positive".into());
        }
        match (self.ping_interval, self.ping_timeout) {
            (None, None) => Ok(Keepalive::default()),
            (None, Some(_)) => invalid("ping_timeout needs ping_interval".into()),
            (Some(interval), _) if interval.is_zero() => {
                invalid("ping_interval must be positive".into())
            }
            (Some(interval), timeout) => {
                let timeout = timeout.unwrap_or(interval);
                if timeout.is_zero() {
                    return invalid("ping_timeout must be positive".into());
                }
                if timeout > interval {
                    return invalid(format!(
                        "ping_timeout ({timeout:?}) must not exceed ping_interval ({interval:?})"
                    ));
                }
                Ok(Keepalive {
                    interval: Some(interval),
                    timeout,
                })
            }
        }
    }
}

/// Validated keepalive settings.
#[derive(Debug, Clone, Copy, Default)]
struct Keepalive {
    interval: Option<Duration>,
    timeout: Duration,
}

/// Why [`connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid WebSocket URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("invalid client options: {0}")]
    InvalidOptions(String),
    #[error("invalid request header {name:?}: {reason}")]
    InvalidHeader { name: String, reason: String },
    #[error("TLS setup failed: {0:#}")]
    TlsSetup(anyhow::Error),
    #[error("connecting to {addr} failed: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS handshake with {host} failed: {source}")]
    Tls {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("opening handshake with {url} timed out after {timeout:?} ({stage})")]
    Timeout {
        url: String,
        timeout: Duration,
        /// What was under way: "connecting", "TLS handshake", "waiting for the response", ...
        stage: &'static str,
    },
    #[error("I/O error during the opening handshake: {0}")]
    Io(#[source] std::io::Error),
    #[error("the server closed the connection before answering the upgrade request")]
    NoResponse,
    #[error("malformed HTTP response to the upgrade request: {0}")]
    MalformedResponse(String),
    /// The server answered with a status other than 101, e.g. 403 or 401.
    #[error("server refused the WebSocket upgrade: HTTP {status}{}{}",
        if reason.is_empty() { String::new() } else { format!(" {reason}") },
        if body.is_empty() { String::new() } else { format!(": {body}") })]
    HttpStatus {
        status: u16,
        /// The reason phrase of the status line.
        reason: String,
        /// The response headers (boxed: they are large and rarely needed).
        headers: Box<HeaderMap>,
        /// The start of the response body (at most 1 KiB), lossily decoded.
        body: String,
    },
    /// The 101 response is not a valid WebSocket answer (bad
    /// `Sec-WebSocket-Accept`, missing `Upgrade`, an unoffered subprotocol, ...).
    #[error("invalid WebSocket handshake response: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("server's permessage-deflate answer is unacceptable: {0}")]
    Deflate(#[from] DeflateNegotiationError),
    #[error("server accepted extensions we did not offer: {0}")]
    UnofferedExtension(String),
}

/// Why a write, ping or close was refused. Nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The connection is closing or closed (Tornado's `WebSocketClosedError`).
    #[error("the WebSocket connection is closed")]
    Closed,
    #[error("ping payload of {0} bytes is over the 125 byte limit")]
    PingTooLong(usize),
    /// An invalid close code, or a reason over 123 bytes.
    #[error(transparent)]
    InvalidClose(#[from] CloseError),
    #[error("serializing the JSON message failed: {0}")]
    Json(String),
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseCause {
    /// The server sent a close frame first; we answered it.
    ServerClosed,
    /// We sent a close frame first ([`ClientHandle::close`]) and the server
    /// answered it.
    ClientClosed,
    /// A keepalive ping went unanswered; we closed with 1011.
    PingTimeout,
    /// The server broke the protocol, or sent a message over
    /// `max_message_size`; we closed with [`ProtocolError::close_code`]
    /// (1009 for a message too big).
    ProtocolError(ProtocolError),
    /// We sent a close frame and the server did not answer in time.
    CloseTimeout,
    /// The connection ended without a close handshake (EOF or an I/O error).
    ConnectionLost(String),
}

impl std::fmt::Display for CloseCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseCause::ServerClosed => f.write_str("closed by the server"),
            CloseCause::ClientClosed => f.write_str("closed by the client"),
            CloseCause::PingTimeout => f.write_str("keepalive ping timeout"),
            CloseCause::ProtocolError(e) => write!(f, "protocol error: {e}"),
            CloseCause::CloseTimeout => f.write_str("the server did not answer our close frame"),
            CloseCause::ConnectionLost(why) => write!(f, "connection lost: {why}"),
        }
    }
}

/// The end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseInfo {
    /// The status code of the server's close frame (`None`: no close frame,
    /// or one without a code). Tornado's `close_code`.
    pub code: Option<u16>,
    /// The reason of the server's close frame (empty if none). Tornado's
    /// `close_reason`.
    pub reason: String,
    /// The close frame we sent, if it had a code.
    pub sent: Option<CloseFrame>,
    pub cause: CloseCause,
}

impl CloseInfo {
    /// A normal end: the close handshake completed and the server's code is
    /// 1000, 1001 or absent (as Python `websockets`' `ConnectionClosedOK`).
    pub fn is_normal(&self) -> bool {
        matches!(
            self.cause,
            CloseCause::ServerClosed | CloseCause::ClientClosed
        ) && matches!(self.code, None | Some(1000) | Some(1001))
    }
}

/// Opens a WebSocket connection to `url` (`ws://` or `wss://`).
///
/// Fails on an invalid URL or options, when the server cannot be reached,
/// refuses the upgrade (with its HTTP status and the start of the body),
/// answers with an invalid handshake, or does not finish the opening within
/// [`ClientOptions::connect_timeout`]. Must be called within a tokio runtime.
pub async fn connect(url: &str, options: ClientOptions) -> Result<WebSocketClient, ClientError> {
    let keepalive = options.validate()?;
    let opened = handshake::open(url, &options).await?;
    Ok(task::spawn(opened, &options, keepalive))
}

/// Like [`connect`], but every message goes to `callback` (Tornado's
/// `on_message_callback`): `Some(message)` for each message, then `None`
/// once when the connection is closed. The callback runs on a tokio task;
/// it should not block. The returned handle writes and closes; dropping it
/// leaves the connection open until the server closes it.
pub async fn connect_with_callback<F>(
    url: &str,
    options: ClientOptions,
    mut callback: F,
) -> Result<ClientHandle, ClientError>
where
    F: FnMut(Option<Message>) + Send + 'static,
{
    let mut client = connect(url, options).await?;
    let handle = client.handle.clone();
    tokio::spawn(async move {
        while let Some(message) = client.messages.recv().await {
            callback(Some(message));
        }
        callback(None);
    });
    Ok(handle)
}

/// An open client connection: receives messages, and writes through
/// [`ClientHandle`] (it dereferences to one).
///
/// Dropping the client and every [`ClientHandle`] cloned from it closes the
/// connection with 1001 "going away".
#[derive(Debug)]
pub struct WebSocketClient {
    handle: ClientHandle,
    messages: mpsc::Receiver<Message>,
}

impl WebSocketClient {
    /// The next message from the server, or `None` once the connection is
    /// closed (then see [`ClientHandle::close_info`]). Messages that arrived
    /// before the close are all returned first.
    pub async fn read_message(&mut self) -> Option<Message> {
        self.messages.recv().await
    }

    /// A handle for writing from other tasks.
    pub fn handle(&self) -> ClientHandle {
        self.handle.clone()
    }
}

impl std::ops::Deref for WebSocketClient {
    type Target = ClientHandle;
    fn deref(&self) -> &ClientHandle {
        &self.handle
    }
}

impl futures_util::Stream for WebSocketClient {
    type Item = Message;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.messages.poll_recv(cx)
    }
}

/// Writes to, pings and closes a connection, and tells how it ended. Cheap
/// to clone; all clones act on the same connection.
#[derive(Debug, Clone)]
pub struct ClientHandle {
    shared: Arc<Shared>,
    /// When the last handle goes, the connection closes (1001).
    _alive: Arc<DropGuard>,
}

/// State shared by the handles and the connection task.
#[derive(Debug)]
struct Shared {
    engine: Mutex<EngineState>,
    /// Wakes the task: something was queued for it to write.
    wake: Notify,
    /// Wakes writers waiting for the output queue to drain.
    drained: Notify,
    closed: watch::Receiver<Option<CloseInfo>>,
    subprotocol: Option<String>,
    extensions: Option<String>,
    response_headers: HeaderMap,
}

#[derive(Debug)]
struct EngineState {
    conn: Connection,
    /// Set once the task ended; from then on writes fail with `Closed`.
    done: bool,
    /// We started the close handshake (as opposed to answering the server's).
    client_initiated_close: bool,
    /// Callers of [`ClientHandle::ping_roundtrip`] waiting for their pong.
    pong_waiters: Vec<(Bytes, oneshot::Sender<()>)>,
}

/// Writers wait while more than this is queued for the socket.
const OUTPUT_HIGH_WATER: usize = 1 << 20;

impl ClientHandle {
    fn engine(&self) -> MutexGuard<'_, EngineState> {
        // A panic while holding the lock cannot leave the engine in a state
        // worse than a panic anywhere else; keep going.
        self.shared
            .engine
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues one frame through `send`, then waits until the output queue
    /// is below the high-water mark (or the connection ends).
    async fn send_with<F>(&self, send: F) -> Result<(), WriteError>
    where
        F: FnOnce(&mut Connection) -> Result<(), SendError>,
    {
        {
            let mut state = self.engine();
            if state.done {
                return Err(WriteError::Closed);
            }
            // Data messages have no size limit: the only error is `Closed`.
            send(&mut state.conn).map_err(|_: SendError| WriteError::Closed)?;
        }
        self.shared.wake.notify_one();
        loop {
            let drained = self.shared.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            {
                let state = self.engine();
                if state.done || state.conn.pending_output_len() <= OUTPUT_HIGH_WATER {
                    return Ok(());
                }
            }
            drained.await;
        }
    }

    /// Sends a text or binary message (Tornado's `write_message`). Returns
    /// once the message is queued and the send queue is below 1 MiB, so a
    /// fast writer is slowed down to the network's pace.
    pub async fn write_message(&self, message: Message) -> Result<(), WriteError> {
        self.send_with(|conn| conn.send_message(&message)).await
    }

    /// Sends a text message.
    pub async fn write_text(&self, text: &str) -> Result<(), WriteError> {
        self.send_with(|conn| conn.send_text(text)).await
    }

    /// Sends a binary message.
    pub async fn write_binary(&self, data: &[u8]) -> Result<(), WriteError> {
        self.send_with(|conn| conn.send_binary(data)).await
    }

    /// Sends `value` as a JSON text message (Tornado's `write_message` of a dict).
    pub async fn write_json<T: serde::Serialize + ?Sized>(
        &self,
        value: &T,
    ) -> Result<(), WriteError> {
        let text = serde_json::to_string(value).map_err(|e| WriteError::Json(e.to_string()))?;
        self.write_text(&text).await
    }

    /// Sends a ping with `data` (at most 125 bytes). The server's pong is
    /// not reported; see [`Self::ping_roundtrip`] to wait for it.
    pub fn ping(&self, data: &[u8]) -> Result<(), WriteError> {
        {
            let mut state = self.engine();
            if state.done {
                return Err(WriteError::Closed);
            }
            state.conn.send_ping(data).map_err(|e| match e {
                SendError::Closed => WriteError::Closed,
                SendError::PayloadTooLong => WriteError::PingTooLong(data.len()),
            })?;
        }
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Sends a ping with `data` and waits for the pong that echoes it;
    /// returns the round-trip time. Fails with `Closed` if the connection
    /// closes first.
    pub async fn ping_roundtrip(&self, data: &[u8]) -> Result<Duration, WriteError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut state = self.engine();
            if state.done {
                return Err(WriteError::Closed);
            }
            state.conn.send_ping(data).map_err(|e| match e {
                SendError::Closed => WriteError::Closed,
                SendError::PayloadTooLong => WriteError::PingTooLong(data.len()),
            })?;
            state.pong_waiters.push((Bytes::copy_from_slice(data), tx));
        }
        let start = tokio::time::Instant::now();
        self.shared.wake.notify_one();
        rx.await.map_err(|_| WriteError::Closed)?;
        Ok(start.elapsed())
    }

    /// Starts the closing handshake (Tornado's `close(code, reason)`) and
    /// returns at once; [`WebSocketClient::read_message`] returns `None` and
    /// [`Self::closed`] completes when it is over. The code must be sendable
    /// (1000-1003, 1007-1014, 3000-4999) and the reason at most 123 bytes. Does
    /// nothing if the connection is already closing or closed.
    pub fn close(&self, code: Option<u16>, reason: &str) -> Result<(), WriteError> {
        {
            let mut state = self.engine();
            if state.done || state.conn.state() != State::Open {
                return Ok(());
            }
            state.conn.close(code, reason)?;
            state.client_initiated_close = true;
        }
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Waits until the connection is closed and tells how it ended.
    pub async fn closed(&self) -> CloseInfo {
        let mut closed = self.shared.closed.clone();
        match closed.wait_for(Option::is_some).await {
            Ok(info) => info.clone().unwrap_or_else(task_vanished),
            Err(_) => task_vanished(),
        }
    }

    /// How the connection ended, once it has.
    pub fn close_info(&self) -> Option<CloseInfo> {
        self.shared.closed.borrow().clone()
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.borrow().is_some()
    }

    /// The status code of the server's close frame, once closed (Tornado's
    /// `close_code`). `None` while open, and when the server sent no code.
    pub fn close_code(&self) -> Option<u16> {
        self.shared.closed.borrow().as_ref().and_then(|i| i.code)
    }

    /// The reason of the server's close frame, once closed (Tornado's
    /// `close_reason`). `None` while open, and when the server gave none.
    pub fn close_reason(&self) -> Option<String> {
        self.shared
            .closed
            .borrow()
            .as_ref()
            .filter(|i| i.code.is_some())
            .map(|i| i.reason.clone())
    }

    /// The subprotocol the server selected (Tornado's `selected_subprotocol`).
    pub fn selected_subprotocol(&self) -> Option<&str> {
        self.shared.subprotocol.as_deref()
    }

    /// The negotiated `Sec-WebSocket-Extensions` value, e.g.
    /// `permessage-deflate; client_max_window_bits=12`; `None` if none.
    pub fn extensions(&self) -> Option<&str> {
        self.shared.extensions.as_deref()
    }

    /// Whether permessage-deflate is in use.
    pub fn is_compressed(&self) -> bool {
        self.engine().conn.is_deflate_enabled()
    }

    /// The headers of the server's 101 response.
    pub fn response_headers(&self) -> &HeaderMap {
        &self.shared.response_headers
    }
}

fn task_vanished() -> CloseInfo {
    CloseInfo {
        code: None,
        reason: String::new(),
        sent: None,
        cause: CloseCause::ConnectionLost("the connection task ended unexpectedly".into()),
    }
}

/// Creates the shared state, the handle and the message channel for a
/// freshly opened connection.
fn new_handle(
    conn: Connection,
    opened: &handshake::Opened,
) -> (
    ClientHandle,
    Arc<Shared>,
    watch::Sender<Option<CloseInfo>>,
    CancellationToken,
) {
    let (closed_tx, closed_rx) = watch::channel(None);
    let shared = Arc::new(Shared {
        engine: Mutex::new(EngineState {
            conn,
            done: false,
            client_initiated_close: false,
            pong_waiters: Vec::new(),
        }),
        wake: Notify::new(),
        drained: Notify::new(),
        closed: closed_rx,
        subprotocol: opened.subprotocol.clone(),
        extensions: opened.extensions.clone(),
        response_headers: opened.response_headers.clone(),
    });
    let alive = CancellationToken::new();
    let handle = ClientHandle {
        shared: shared.clone(),
        _alive: Arc::new(alive.clone().drop_guard()),
    };
    (handle, shared, closed_tx, alive)
}

#[cfg(test)]
mod tests;
