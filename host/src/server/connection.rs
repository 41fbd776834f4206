//! One task per connection: drives the sans-IO engine over the socket and
//! calls the handler instance for each event.

use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use wsbox_protocol::deflate::Negotiated;
use wsbox_protocol::{Config as EngineConfig, Connection, Event, Role, State};

use super::inbox::Inbox;
use crate::config::Keepalive;
use crate::runtime::{CallError, CloseCause, CloseInfo, ConnectionInfo, HandlerInstance};

/// How long to wait for the peer's close frame after we sent ours.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to drain the socket after our side is finished, so that the
/// peer reads our close frame before the socket is reset.
const LINGER_TIMEOUT: Duration = Duration::from_secs(2);
/// After this long without traffic, an idle connection's buffers are freed and
/// its compression state is compacted to its history window (see
/// `Connection::compact_idle`).
const IDLE_COMPACT_AFTER: Duration = Duration::from_secs(5);
/// How long the last queued frames may take to go out once we are done.
const FINAL_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);
/// Stop reading while this much output is queued: a peer that sends
/// without reading gets backpressure instead of growing our buffers.
const OUTPUT_HIGH_WATER: usize = 1 << 20;
/// The close reason when a handler exceeds its output cap.
const OUTPUT_LIMIT_REASON: &str = "output limit exceeded";
/// Size of the per-thread read buffer shared by all connections on a thread.
const READ_CHUNK: usize = 64 * 1024;

thread_local! {
    // Idle connections hold no read buffer of their own: bytes go straight
    // from this scratch buffer into the engine.
    static READ_SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_CHUNK]);
}

/// A socket the connection runs over.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send {
    /// Sets `TCP_NODELAY` on the underlying TCP socket.
    fn set_nodelay(&self, enabled: bool) -> io::Result<()>;
}

impl Transport for TcpStream {
    fn set_nodelay(&self, enabled: bool) -> io::Result<()> {
        TcpStream::set_nodelay(self, enabled)
    }
}

impl Transport for tokio_rustls::server::TlsStream<TcpStream> {
    fn set_nodelay(&self, enabled: bool) -> io::Result<()> {
        self.get_ref().0.set_nodelay(enabled)
    }
}

/// What the connection task needs besides the socket and the instance.
pub struct ConnectionSetup {
    pub info: ConnectionInfo,
    pub max_message_size: usize,
    pub keepalive: Keepalive,
    /// permessage-deflate, when negotiated.
    pub deflate: Option<Negotiated>,
    /// Cancelled when the server shuts down: the connection then closes with 1001.
    pub shutdown: CancellationToken,
}

/// The outcome of one wait on the socket.
enum Io {
    Read,
    Wrote(usize),
    Eof,
    Failed(io::Error),
    /// The server is shutting down.
    Shutdown,
    /// A deadline in [`Timers`] is due.
    Timer,
}

/// Serves one upgraded connection until it is closed.
pub async fn run<S: Transport>(
    mut stream: S,
    leftover: Bytes,
    mut instance: HandlerInstance,
    setup: ConnectionSetup,
) {
    // Built in a block so that the moved-out `engine` takes no room in this
    // future, which every connection keeps for its lifetime.
    instance.attach_engine({
        let mut engine = Connection::with_deflate(
            EngineConfig {
                role: Role::Server,
                max_message_size: setup.max_message_size,
            },
            setup.deflate,
        );
        engine.receive(&leftover);
        engine
    });
    tracing::debug!(extensions = %setup.info.extensions, "connection open");

    let mut close_info: Option<CloseInfo> = None;
    if let Err(e) = instance.on_open(&setup.info).await {
        handler_failed(&mut instance, &e);
    }
    // The request (headers and all) is not needed again: don't keep it for
    // the connection's lifetime.
    drop(setup.info);

    let mut timers = Timers::new(setup.keepalive);
    timers.activity();
    let mut shutdown = Box::pin(setup.shutdown.cancelled_owned());
    let mut shutting_down = false;
    let mut sleep = Box::pin(tokio::time::sleep_until(Instant::now()));
    let mut eof = false;
    let mut overflow_closed = false;
    loop {
        if let Some(enabled) = instance.take_nodelay_request()
            && let Err(e) = stream.set_nodelay(enabled)
        {
            tracing::debug!(error = %e, "set_nodelay failed");
        }
        if instance.output_overflowed() && !overflow_closed {
            // The handler tried to queue more than it may. What it queued
            // before (within the cap) goes out, then a close frame that
            // says why; its further writes fail with `closed`.
            overflow_closed = true;
            if let Some(engine) = instance.engine_mut()
                && engine.state() == State::Open
            {
                let _ = engine.close(Some(1011), OUTPUT_LIMIT_REASON);
                close_info.get_or_insert(CloseInfo {
                    code: Some(1011),
                    reason: OUTPUT_LIMIT_REASON.into(),
                    cause: CloseCause::HandlerClosed,
                });
            }
        }

        // Dispatch every complete event to the handler: consecutive
        // messages in batches, so a busy connection makes one call for many.
        let mut inbox = Inbox::new();
        loop {
            // Replies to the gathered messages must go out before whatever
            // parsing the next frame queues (a pong, a close reply, an error
            // close), so they are handed over first unless it is another
            // plain message.
            if !inbox.is_empty()
                && !instance
                    .engine()
                    .is_some_and(Connection::next_is_plain_message)
            {
                deliver(&mut instance, &mut inbox).await;
            }
            let Some(event) = instance.engine_mut().and_then(Connection::next_event) else {
                break;
            };
            let event = match event {
                Event::Message(message) => {
                    inbox.push(message);
                    if inbox.is_full() {
                        deliver(&mut instance, &mut inbox).await;
                    }
                    continue;
                }
                other => other,
            };
            deliver(&mut instance, &mut inbox).await;
            if matches!(event, Event::Pong(_)) {
                timers.pong_deadline = None;
            }
            if let Some(info) = dispatch(&mut instance, event).await {
                close_info.get_or_insert(info);
            }
        }
        deliver(&mut instance, &mut inbox).await;
        inbox.recycle();

        let Some(engine) = instance.engine() else {
            break;
        };
        let state = engine.state();
        let pending = engine.pending_output().len();
        if (state == State::Closed || eof) && pending == 0 {
            break;
        }
        if state == State::Closing && timers.close_deadline.is_none() {
            timers.close_deadline = Some(Instant::now() + CLOSE_TIMEOUT);
        }
        if state != State::Open {
            timers.next_ping = None;
            timers.pong_deadline = None;
        }
        let wake_at = timers.next_wake();
        if let Some(at) = wake_at {
            sleep.as_mut().reset(at);
        }

        let reading = !eof && state != State::Closed && pending < OUTPUT_HIGH_WATER;
        let watch_shutdown = !shutting_down;
        let io = poll_fn(|cx| {
            let Some(engine) = instance.engine_mut() else {
                return Poll::Ready(Io::Eof);
            };
            let out = engine.pending_output();
            if !out.is_empty() {
                match Pin::new(&mut stream).poll_write(cx, out) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Io::Eof),
                    Poll::Ready(Ok(n)) => return Poll::Ready(Io::Wrote(n)),
                    Poll::Ready(Err(e)) => return Poll::Ready(Io::Failed(e)),
                    Poll::Pending => {}
                }
            }
            if reading {
                let read = READ_SCRATCH.with_borrow_mut(|scratch| {
                    let mut buf = ReadBuf::new(scratch);
                    match Pin::new(&mut stream).poll_read(cx, &mut buf) {
                        Poll::Ready(Ok(())) if buf.filled().is_empty() => Poll::Ready(Io::Eof),
                        Poll::Ready(Ok(())) => {
                            engine.receive(buf.filled());
                            Poll::Ready(Io::Read)
                        }
                        Poll::Ready(Err(e)) => Poll::Ready(Io::Failed(e)),
                        Poll::Pending => Poll::Pending,
                    }
                });
                if read.is_ready() {
                    return read;
                }
            }
            if watch_shutdown && shutdown.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Io::Shutdown);
            }
            if wake_at.is_some() && sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Io::Timer);
            }
            Poll::Pending
        })
        .await;

        match io {
            Io::Read => timers.activity(),
            Io::Wrote(n) => {
                timers.activity();
                if let Some(engine) = instance.engine_mut() {
                    engine.consume_output(n);
                }
            }
            Io::Eof => {
                eof = true;
                let clean = instance.engine_mut().is_some_and(Connection::receive_eof);
                if !clean {
                    close_info.get_or_insert(CloseInfo {
                        code: None,
                        reason: String::new(),
                        cause: CloseCause::ConnectionLost,
                    });
                }
                // Whatever is still queued cannot be delivered reliably.
                break;
            }
            Io::Failed(e) => {
                tracing::debug!(error = %e, "socket error");
                close_info.get_or_insert(CloseInfo {
                    code: None,
                    reason: String::new(),
                    cause: CloseCause::ConnectionLost,
                });
                break;
            }
            Io::Shutdown => {
                shutting_down = true;
                if let Some(engine) = instance.engine_mut()
                    && engine.state() == State::Open
                {
                    let _ = engine.close(Some(1001), "server shutting down");
                    close_info.get_or_insert(CloseInfo {
                        code: Some(1001),
                        reason: "server shutting down".into(),
                        cause: CloseCause::GoingAway,
                    });
                }
            }
            Io::Timer => {
                let now = Instant::now();
                if timers.close_deadline.is_some_and(|t| t <= now) {
                    tracing::debug!("peer did not answer our close frame in time");
                    let sent = instance.engine().and_then(|e| e.close_sent());
                    close_info.get_or_insert(CloseInfo {
                        code: sent.map(|f| f.code),
                        reason: sent.map(|f| f.reason.clone()).unwrap_or_default(),
                        cause: if instance.handler_closed() {
                            CloseCause::HandlerClosed
                        } else {
                            CloseCause::ConnectionLost
                        },
                    });
                    break;
                }
                if timers.pong_deadline.is_some_and(|t| t <= now) {
                    tracing::info!("keepalive ping not answered in time; closing with 1011");
                    if let Some(engine) = instance.engine_mut() {
                        let _ = engine.close(Some(1011), "keepalive ping timeout");
                    }
                    close_info.get_or_insert(CloseInfo {
                        code: Some(1011),
                        reason: "keepalive ping timeout".into(),
                        cause: CloseCause::PingTimeout,
                    });
                    // The peer is unresponsive: don't wait for its close.
                    break;
                }
                if timers.compact_at.is_some_and(|t| t <= now) {
                    timers.compact_at = None;
                    if let Some(engine) = instance.engine_mut() {
                        engine.compact_idle();
                        super::memory::request_trim();
                    }
                }
                if timers.next_ping.is_some_and(|t| t <= now) {
                    if let Some(engine) = instance.engine_mut() {
                        let _ = engine.send_ping(b"");
                    }
                    timers.ping_sent(now);
                }
            }
        }
    }

    if !eof {
        // Boxed: the largest future awaited here (it holds a read buffer),
        // needed once, at the end.
        Box::pin(finish(&mut stream, &mut instance)).await;
    }

    let info = close_info.unwrap_or(CloseInfo {
        code: None,
        reason: String::new(),
        cause: CloseCause::ConnectionLost,
    });
    tracing::debug!(code = ?info.code, reason = %info.reason, cause = ?info.cause, "connection closed");
    if !instance.is_dead()
        && let Err(e) = instance.on_close(&info).await
    {
        tracing::warn!(error = %e, "handler failed in on_close");
    }
}

/// Deadlines of one connection: keepalive pings and the closing handshake.
struct Timers {
    interval: Option<Duration>,
    timeout: Duration,
    /// When to send the next keepalive ping.
    next_ping: Option<Instant>,
    /// When an unanswered ping times out.
    pong_deadline: Option<Instant>,
    /// When to give up waiting for the peer's close frame.
    close_deadline: Option<Instant>,
    /// When to free an idle connection's buffers and compact its compression
    /// state; `None` once done, until the next traffic.
    compact_at: Option<Instant>,
}

impl Timers {
    fn new(keepalive: Keepalive) -> Timers {
        let interval = keepalive.ping_interval;
        Timers {
            interval,
            timeout: keepalive.effective_timeout().unwrap_or(Duration::MAX),
            next_ping: interval.map(|i| Instant::now() + i),
            pong_deadline: None,
            close_deadline: None,
            compact_at: None,
        }
    }

    /// Traffic happened: push idle compaction back.
    fn activity(&mut self) {
        self.compact_at = Some(Instant::now() + IDLE_COMPACT_AFTER);
    }

    fn ping_sent(&mut self, now: Instant) {
        // Like Tornado, one ping in flight at a time; an earlier deadline
        // still pending is kept.
        if self.pong_deadline.is_none() {
            self.pong_deadline = now.checked_add(self.timeout);
        }
        self.next_ping = self.interval.and_then(|i| now.checked_add(i));
    }

    fn next_wake(&self) -> Option<Instant> {
        [
            self.next_ping,
            self.pong_deadline,
            self.close_deadline,
            self.compact_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// Writes what is still queued (our close frame, typically) within a short
/// time, then lingers so the peer reads it before the socket goes away.
async fn finish<S: Transport>(stream: &mut S, instance: &mut HandlerInstance) {
    let flush = async {
        while let Some(engine) = instance.engine_mut() {
            let out = engine.pending_output();
            if out.is_empty() {
                break;
            }
            match stream.write(out).await {
                Ok(0) | Err(_) => break,
                Ok(n) => engine.consume_output(n),
            }
        }
    };
    let _ = tokio::time::timeout(FINAL_FLUSH_TIMEOUT, flush).await;
    linger(stream).await;
}

/// Sends FIN and reads until the peer closes too (or a short timeout), so
/// our last frames are not lost to a reset.
pub(crate) async fn linger<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) {
    let drain = async {
        let _ = stream.shutdown().await;
        let mut buf = [0u8; 1024];
        loop {
            match tokio::io::AsyncReadExt::read(stream, &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIMEOUT, drain).await;
}

/// Hands the gathered messages to the handler.
async fn deliver(instance: &mut HandlerInstance, inbox: &mut Inbox) {
    if let Err(e) = inbox.deliver(instance).await {
        handler_failed(instance, &e);
    }
}

/// Hands one engine event other than a message to the handler. Returns how
/// the connection ended if this event ended it.
async fn dispatch(instance: &mut HandlerInstance, event: Event) -> Option<CloseInfo> {
    let result = match event {
        // Messages go to the handler through the `Inbox`.
        Event::Message(_) => return None,
        Event::Ping(data) => {
            if instance.is_dead() {
                return None;
            }
            instance.on_ping(&data).await
        }
        Event::Pong(data) => {
            if instance.is_dead() {
                return None;
            }
            instance.on_pong(&data).await
        }
        Event::Closed(frame) => {
            let cause = if instance.handler_closed() {
                CloseCause::HandlerClosed
            } else {
                CloseCause::PeerClosed
            };
            return Some(match frame {
                Some(f) => CloseInfo {
                    code: Some(f.code),
                    reason: f.reason,
                    cause,
                },
                None => CloseInfo {
                    code: None,
                    reason: String::new(),
                    cause,
                },
            });
        }
        Event::ProtocolError(e) => {
            let code = e.close_code();
            tracing::debug!(error = %e, code, "peer broke the protocol");
            return Some(CloseInfo {
                code: Some(code),
                reason: e.to_string(),
                cause: if code == 1009 {
                    CloseCause::MessageTooBig
                } else {
                    CloseCause::ProtocolError
                },
            });
        }
    };
    if let Err(e) = result {
        handler_failed(instance, &e);
    }
    None
}

/// A call failed: the instance is dead; close with 1011 (internal error).
fn handler_failed(instance: &mut HandlerInstance, error: &CallError) {
    tracing::warn!(error = %error, "handler failed; closing the connection with 1011");
    if let Some(engine) = instance.engine_mut()
        && engine.state() == State::Open
    {
        let _ = engine.close(Some(1011), "handler error");
    }
}
