//! One task per connection: drives the sans-IO engine over the socket and
//! calls the handler instance for each event.

use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::io;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant as StdInstant};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wsbox_protocol::deflate::Negotiated;
use wsbox_protocol::timers::{Due, TimerConfig, Timers};
use wsbox_protocol::{Config as EngineConfig, Connection, Event, Role, State};

use super::hibernation::{Sleeping, WakeSource};
use super::inbox::Inbox;
use super::mailbox::{Command, Registration};
use super::peer_watch::PeerWatch;
use super::routes::ServedModule;
use crate::config::Keepalive;
use crate::metrics::{FailureKind, ModuleMetrics};
use wsbox_io::driver::{SocketIo, poll_socket, write_all_output};
use wsbox_io::linger::linger;
use wsbox_runtime::{
    BatchMessage, CallError, CloseCause, CloseInfo, Effect, HandlerInstance, Message, OpenInfo,
};

/// How long to wait for the peer's close frame after we sent ours.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
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
/// A handler's batch of replies at least this large is handed to the engine
/// as slices of its buffer (large messages in it are then not copied);
/// smaller ones are copied message by message, which costs less.
const SHARE_BATCH_MIN: usize = 4096;
/// Size of the per-thread read buffer shared by all connections on a thread.
const READ_CHUNK: usize = 64 * 1024;

thread_local! {
    // Idle connections hold no read buffer of their own: bytes go straight
    // from this scratch buffer into the engine.
    static READ_SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_CHUNK]);
    // Nor a buffer for their handler's effects: they are swapped into this
    // one after each call and applied.
    static EFFECTS: RefCell<Vec<Effect>> = const { RefCell::new(Vec::new()) };
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
    /// What the handshake settled, for `on-open`.
    pub info: OpenInfo,
    pub max_message_size: usize,
    /// The most bytes that may wait for the socket: beyond it the handler's
    /// writes fail and messages posted from outside are dropped.
    pub max_pending_output: usize,
    pub keepalive: Keepalive,
    /// permessage-deflate, when negotiated.
    pub deflate: Option<Negotiated>,
    /// Cancelled when the server shuts down: the connection then closes with 1001.
    pub shutdown: CancellationToken,
    /// This connection's place among the server's live connections.
    pub registration: Registration,
    /// Its place in the pub/sub hub: its subscriptions end when it drops.
    pub pubsub: super::pubsub::Membership,
    /// Where the connection's byte counts go when it closes.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Its module version's counters (calls, messages, failures).
    pub module_metrics: Arc<ModuleMetrics>,
    /// How to make a fresh instance after hibernating: `None` on a route
    /// without `hibernate_after`.
    pub wake: Option<Box<WakeSource>>,
}

/// The outcome of one wait on the socket.
enum Io {
    Socket(SocketIo),
    /// The server is shutting down.
    Shutdown,
    /// A deadline in [`Timers`] is due.
    Timer,
    /// Something was posted to the connection's mailbox.
    Mail,
}

/// The state the connection task owns: the protocol engine and, while it
/// lives, the handler instance. The instance only records effects; they
/// reach the engine here, after each call.
struct Conn {
    engine: Connection,
    /// `None` once a call failed (the instance is dropped at once, which
    /// frees its pool slot), and while hibernated. Boxed: a hibernated
    /// connection keeps this struct, and the instance takes ~400 bytes.
    instance: Option<Box<HandlerInstance>>,
    /// The handler closed the connection (its `close` effect was applied).
    handler_closed: bool,
    /// The handler overflowed its output cap and the close for it was sent.
    overflow_closed: bool,
    /// A `set-nodelay` the task has not applied to the socket yet.
    nodelay: Option<bool>,
    max_pending_output: usize,
    /// How the connection ended, once known: the first reason found wins.
    close_info: Option<CloseInfo>,
    /// The socket as seen while handler calls run.
    watch: PeerWatch,
    metrics: Arc<ModuleMetrics>,
    /// The route's way to a fresh instance, when it hibernates.
    wake: Option<Box<WakeSource>>,
    /// While hibernated (no instance): what the next one gets.
    sleeping: Option<Box<Sleeping>>,
    /// When the handler last got a message (or woke, or was asked to
    /// hibernate): `hibernate_after` counts from here.
    last_event: Instant,
    /// How many times in a row the handler declined to hibernate (or gave
    /// an attachment over the limit) since its last message: the next ask
    /// waits `hibernate_after` doubled that many times (capped), so a
    /// handler that keeps declining is not called every period.
    declined: u32,
    /// Pool pressure asked it to hibernate now.
    hibernate_now: bool,
    /// The version it woke into, for the registry to learn.
    woke_into: Option<Arc<ServedModule>>,
}

impl Conn {
    /// The instance, told the connection's state, ready for a call, and
    /// the watch to run the call under.
    fn ready_instance(&mut self) -> Option<(&mut HandlerInstance, &mut PeerWatch)> {
        let open = self.engine.state() == State::Open && !self.handler_closed;
        let queued = self.engine.pending_output_len();
        let instance = self.instance.as_deref_mut()?;
        instance.set_connection(open, queued);
        Some((instance, &mut self.watch))
    }

    /// After a call: applies what the handler asked for, in order, then
    /// handles a failed call.
    fn after_call(&mut self, result: Result<(), CallError>) {
        if let Some(instance) = self.instance.as_mut() {
            let (cpu, throttled) = instance.take_call_stats();
            self.metrics.calls.observe(cpu);
            if throttled {
                self.metrics.throttled.inc();
            }
            let mut sent = 0;
            EFFECTS.with_borrow_mut(|effects| {
                instance.take_effects(effects);
                for effect in effects.drain(..) {
                    sent += apply(
                        &mut self.engine,
                        effect,
                        &mut self.handler_closed,
                        &mut self.nodelay,
                    );
                }
            });
            self.metrics.messages_out.inc_by(sent);
            if instance.output_overflowed() && !self.overflow_closed {
                // What the handler queued before (within the cap) goes out,
                // then a close frame that says why.
                self.overflow_closed = true;
                self.metrics.failed(FailureKind::OutputLimit);
                self.close_with(1011, OUTPUT_LIMIT_REASON, CloseCause::OutputLimit);
            }
        }
        if let Err(CallError::PeerGone) = result {
            tracing::debug!("the peer went away during a handler call; call cancelled");
            self.instance = None;
            return;
        }
        if let Err(e) = result {
            match e {
                CallError::Trap(_) => self.metrics.failed(FailureKind::Trap),
                CallError::Deadline(_) => self.metrics.failed(FailureKind::CpuDeadline),
                CallError::WallTime(_) => self.metrics.failed(FailureKind::WallTime),
                _ => {}
            }
            if wsbox_runtime::log_budget::process_allows(std::time::Instant::now()) {
                tracing::warn!(error = %e, "handler failed; closing the connection with 1011");
            } else {
                tracing::debug!(error = %e, "handler failed; closing the connection with 1011");
            }
            self.instance = None;
            self.close_with(1011, "handler error", CloseCause::HandlerClosed);
        }
    }

    /// When to ask the handler to hibernate: `None` unless the route
    /// hibernates, the connection is open and its handler is awake and
    /// exports `hibernation`.
    fn hibernate_at(&self) -> Option<Instant> {
        let after = self.wake.as_ref()?.config().after?;
        let instance = self.instance.as_ref()?;
        let open = self.engine.state() == State::Open && !self.handler_closed;
        (open && instance.hibernates() && !instance.is_dead())
            .then(|| {
                self.last_event
                    .checked_add(declined_backoff(after, self.declined))
            })
            .flatten()
    }

    /// Whether the route answers a text request itself (`auto_response`).
    fn has_auto_response(&self) -> bool {
        self.wake
            .as_ref()
            .is_some_and(|w| w.config().auto_response.is_some())
    }

    /// Whether `message` is the route's auto-response request, which the
    /// host answers itself, awake or hibernated, without a handler call.
    fn is_auto_request(&self, message: &wsbox_protocol::Message) -> bool {
        let auto = self
            .wake
            .as_ref()
            .and_then(|w| w.config().auto_response.as_ref());
        matches!((auto, message), (Some(auto), wsbox_protocol::Message::Text(text)) if *text == auto.request)
    }

    /// Sends the route's auto-response.
    fn auto_respond(&mut self) {
        let Some(auto) = self
            .wake
            .as_ref()
            .and_then(|w| w.config().auto_response.as_ref())
        else {
            return;
        };
        if self.engine.send_text(&auto.response).is_ok() {
            self.metrics.messages_out.inc();
        }
        tracing::debug!(hibernated = self.sleeping.is_some(), "auto-response sent");
    }

    /// The socket reached EOF: a connection not closed cleanly was lost.
    fn peer_eof(&mut self) {
        if !self.engine.receive_eof() {
            self.close_info.get_or_insert(CloseInfo {
                code: None,
                reason: String::new(),
                cause: CloseCause::ConnectionLost,
            });
        }
    }

    /// Starts the closing handshake from the host's side, if still open.
    fn close_with(&mut self, code: u16, reason: &str, cause: CloseCause) {
        if self.engine.state() == State::Open {
            let _ = self.engine.close(Some(code), reason);
            self.close_info.get_or_insert(CloseInfo {
                code: Some(code),
                reason: reason.into(),
                cause,
            });
        }
    }

    /// Applies what was posted to the mailbox.
    fn apply_mail(&mut self, commands: std::collections::VecDeque<Command>) {
        for command in commands {
            match command {
                Command::Send(message) => {
                    let len = message.len();
                    let queued = self.engine.pending_output_len();
                    if self.engine.state() != State::Open {
                        tracing::debug!("message posted to a closing connection dropped");
                    } else if queued.saturating_add(len) > self.max_pending_output {
                        tracing::warn!(
                            queued,
                            len,
                            "message posted to a connection over its output limit dropped"
                        );
                    } else if self.engine.send_owned(message).is_ok() {
                        self.metrics.messages_out.inc();
                    }
                }
                Command::Frame(frame) => {
                    // The poster (pub/sub fan-out) already applied the
                    // slow-consumer bound; a closing connection drops it.
                    if self.engine.send_encoded(frame).is_err() {
                        tracing::debug!("published frame for a closing connection dropped");
                    } else {
                        self.metrics.messages_out.inc();
                    }
                }
                Command::Close { code, reason } => {
                    // The server (an operator, a backend) closed it.
                    self.close_with(code, &reason, CloseCause::ClosedByServer);
                }
                // Pool pressure: hibernate at the next turn of the loop.
                Command::Hibernate => self.hibernate_now = true,
            }
        }
    }
}

/// The most times `hibernate_after` is doubled for a handler that keeps
/// declining: 64 periods (10 s becomes about 11 minutes).
const MAX_DECLINED_DOUBLINGS: u32 = 6;

/// How long after its last ask a handler that declined `declined` times
/// in a row is asked again: `after`, doubled per refusal, at most
/// 2^[`MAX_DECLINED_DOUBLINGS`] times `after`.
fn declined_backoff(after: Duration, declined: u32) -> Duration {
    after.saturating_mul(1 << declined.min(MAX_DECLINED_DOUBLINGS))
}

/// Applies one effect of a handler call to the engine. Returns how many
/// messages it queued.
fn apply(
    engine: &mut Connection,
    effect: Effect,
    handler_closed: &mut bool,
    nodelay: &mut Option<bool>,
) -> u64 {
    // The host imports accepted these only while the connection was open
    // and checked their arguments, so the engine's own refusals (closing
    // meanwhile) need no answer.
    match effect {
        // Payloads are handed over, not copied: a large one is written
        // after its frame header from the handler's own buffer.
        Effect::Write(Message::Text(text)) => {
            return u64::from(engine.send_payload(true, Bytes::from(text)).is_ok());
        }
        Effect::Write(Message::Binary(data)) => {
            return u64::from(engine.send_payload(false, Bytes::from(data)).is_ok());
        }
        Effect::WriteBatch(batch) if batch.data_len() >= SHARE_BATCH_MIN => {
            let mut sent = 0;
            for (text, payload) in batch.into_messages() {
                sent += u64::from(engine.send_payload(text, payload).is_ok());
            }
            return sent;
        }
        Effect::WriteBatch(batch) => {
            let mut sent = 0;
            for message in batch.messages() {
                let result = match message {
                    BatchMessage::Text(text) => engine.send_text(text),
                    BatchMessage::Binary(bytes) => engine.send_binary(bytes),
                };
                sent += u64::from(result.is_ok());
            }
            return sent;
        }
        Effect::Ping(data) => {
            let _ = engine.send_ping(&data);
        }
        Effect::Close { code, reason } => {
            if engine.state() == State::Open && engine.close(code, &reason).is_ok() {
                *handler_closed = true;
            }
        }
        Effect::SetNodelay(enabled) => *nodelay = Some(enabled),
    }
    0
}

/// Serves one upgraded connection until it is closed.
///
/// Handler calls (`deliver`, `dispatch`) box their futures: a future is as
/// large as its largest await, and every connection keeps its run future
/// for its lifetime, idle or hibernated. Inline, the call futures made it
/// ~3.2 KB; boxed, each call allocates its future once (per delivered
/// batch, not per message: small next to a wasm call).
pub async fn run<S: Transport>(
    mut stream: S,
    leftover: Bytes,
    instance: Box<HandlerInstance>,
    setup: Box<ConnectionSetup>,
) {
    // Boxed arguments, unboxed here: an async fn keeps room for its
    // arguments for its whole life (the instance alone is ~400 bytes), and
    // every connection, hibernated ones too, keeps this future.
    let setup = *setup;
    // Built in a block so that the moved-out `engine` takes no room in this
    // future, which every connection keeps for its lifetime.
    let mut conn = Box::new(Conn {
        engine: {
            let mut engine = Connection::with_deflate(
                EngineConfig {
                    role: Role::Server,
                    max_message_size: setup.max_message_size,
                },
                setup.deflate,
            );
            engine.receive(&leftover);
            engine
        },
        instance: Some(instance),
        handler_closed: false,
        overflow_closed: false,
        nodelay: None,
        max_pending_output: setup.max_pending_output,
        close_info: None,
        watch: PeerWatch::default(),
        metrics: setup.module_metrics,
        wake: setup.wake,
        sleeping: None,
        last_event: Instant::now(),
        declined: 0,
        hibernate_now: false,
        woke_into: None,
    });
    tracing::debug!(extensions = %setup.info.extensions, "connection open");

    let registration = setup.registration;
    let count_in = |n: usize| registration.mailbox().count_in(n);
    if let Some((instance, watch)) = conn.ready_instance() {
        // Boxed: needed once (see `close_handler`).
        let result =
            Box::pin(watch.run(&mut stream, count_in, instance.on_open(&setup.info))).await;
        conn.after_call(result);
    }
    drop(setup.info);
    let membership = setup.pubsub;
    let metrics = setup.metrics;

    let mut timers = Timers::new(timer_config(setup.keepalive), StdInstant::now());
    let mut shutdown = Box::pin(setup.shutdown.cancelled_owned());
    let mut shutting_down = false;
    let mut sleep = Box::pin(tokio::time::sleep_until(Instant::now()));
    let mut eof = false;
    loop {
        if let Some(enabled) = conn.nodelay.take()
            && let Err(e) = stream.set_nodelay(enabled)
        {
            tracing::debug!(error = %e, "set_nodelay failed");
        }

        // What was posted before the input just read goes out before the
        // handler's answers to that input (a published message the peer
        // could see before its own request's answer).
        if registration.mailbox().take_posted() {
            conn.apply_mail(registration.mailbox().take());
        }
        if std::mem::take(&mut conn.hibernate_now) {
            Box::pin(hibernate(&mut conn, &mut stream, count_in)).await;
        }

        // Dispatch every complete event to the handler: consecutive
        // messages in batches, so a busy connection makes one call for many.
        let mut inbox = Inbox::new();
        loop {
            // Replies to the gathered messages must go out before whatever
            // parsing the next frame queues (a pong, a close reply, an error
            // close), so they are handed over first unless it is another
            // plain message.
            if !inbox.is_empty() && !conn.engine.next_is_plain_message() {
                deliver(&mut conn, &mut inbox, &mut stream, count_in).await;
            }
            // Messages taken straight from reads go into the batch in one
            // move (unless the route answers some text itself); a lone one
            // goes on its own, as a message.
            let taken = conn.engine.taken_messages();
            if (taken > 1 || (taken == 1 && !inbox.is_empty())) && !conn.has_auto_response() {
                inbox.take_from(&mut conn.engine);
                if inbox.is_full() {
                    deliver(&mut conn, &mut inbox, &mut stream, count_in).await;
                }
                continue;
            }
            let Some(event) = conn.engine.next_event() else {
                break;
            };
            let event = match event {
                Event::Message(message) => {
                    if conn.is_auto_request(&message) {
                        // Answered by the host, after the replies to what
                        // came before it; the handler never sees it.
                        deliver(&mut conn, &mut inbox, &mut stream, count_in).await;
                        conn.auto_respond();
                        continue;
                    }
                    inbox.push(message);
                    if inbox.is_full() {
                        deliver(&mut conn, &mut inbox, &mut stream, count_in).await;
                    }
                    continue;
                }
                other => other,
            };
            deliver(&mut conn, &mut inbox, &mut stream, count_in).await;
            if matches!(event, Event::Pong(_)) {
                timers.pong_received();
            }
            if let Some(info) = Box::pin(dispatch(&mut conn, event, &mut stream, count_in)).await {
                conn.close_info.get_or_insert(info);
            }
        }
        deliver(&mut conn, &mut inbox, &mut stream, count_in).await;
        inbox.recycle();
        if let Some(module) = conn.woke_into.take() {
            // The registry (admin API, metrics) sees the version it woke into.
            registration.meta().module.store(module);
        }
        if conn.watch.gone {
            eof = true;
            conn.peer_eof();
            break;
        }
        if !conn.watch.ahead.is_empty() {
            // Read while a call ran: parse it before reading more.
            let ahead = std::mem::take(&mut conn.watch.ahead);
            conn.engine.receive(&ahead);
            timers.activity(StdInstant::now());
            continue;
        }

        let state = conn.engine.state();
        let pending = conn.engine.pending_output_len();
        // What pub/sub's slow-consumer bound sees.
        registration.mailbox().set_backlog(pending);
        registration
            .mailbox()
            .set_hibernated(conn.sleeping.is_some());
        if conn.sleeping.is_some() {
            super::traced::may_drop_span(registration.mailbox());
        }
        if (state == State::Closed || eof) && pending == 0 {
            break;
        }
        timers.observe(state, StdInstant::now());
        let hibernate_at = conn.hibernate_at();
        // What pool pressure sees: whether it could hibernate, and since when.
        registration
            .mailbox()
            .set_hibernatable(hibernate_at.map(|_| conn.last_event.into_std()));
        let wake_at = [timers.next_wake().map(Instant::from_std), hibernate_at]
            .into_iter()
            .flatten()
            .min();
        if let Some(at) = wake_at {
            sleep.as_mut().reset(at);
        }

        let reading = !eof && state != State::Closed && pending < OUTPUT_HIGH_WATER;
        let watch_shutdown = !shutting_down;
        let io = poll_fn(|cx| {
            let step = READ_SCRATCH.with_borrow_mut(|scratch| {
                let read_buf = reading.then_some(&mut scratch[..]);
                poll_socket(&mut stream, cx, &mut conn.engine, read_buf)
            });
            if let Poll::Ready(step) = step {
                // Counted here, before anything else runs: a peer that got
                // the bytes may already ask the admin API about them.
                match step {
                    SocketIo::Wrote(n) => registration.mailbox().count_out(n),
                    SocketIo::Read(n) => registration.mailbox().count_in(n),
                    _ => {}
                }
                return Poll::Ready(Io::Socket(step));
            }
            if registration.mailbox().poll_posted(cx).is_ready() {
                return Poll::Ready(Io::Mail);
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
        // A hibernated connection has no span (see `traced`): it gets it
        // back for what may wake or close it, not for frames delivered to
        // it and written out.
        if conn.sleeping.is_some() && !matches!(io, Io::Mail | Io::Socket(SocketIo::Wrote(_))) {
            super::traced::ensure_span(registration.mailbox()).await;
        }

        match io {
            Io::Socket(SocketIo::Read(_) | SocketIo::Wrote(_)) => {
                timers.activity(StdInstant::now());
            }
            Io::Mail => conn.apply_mail(registration.mailbox().take()),
            Io::Socket(SocketIo::Eof) => {
                eof = true;
                conn.peer_eof();
                // Whatever is still queued cannot be delivered reliably.
                break;
            }
            Io::Socket(SocketIo::Failed(e)) => {
                tracing::debug!(error = %e, "socket error");
                conn.close_info.get_or_insert(CloseInfo {
                    code: None,
                    reason: String::new(),
                    cause: CloseCause::ConnectionLost,
                });
                break;
            }
            Io::Shutdown => {
                shutting_down = true;
                conn.close_with(1001, "server shutting down", CloseCause::GoingAway);
            }
            Io::Timer => {
                let now = StdInstant::now();
                let mut ended = false;
                while let Some(due) = timers.poll(now) {
                    match due {
                        Due::CloseTimeout => {
                            tracing::debug!("peer did not answer our close frame in time");
                            let sent = conn.engine.close_sent();
                            let info = CloseInfo {
                                code: sent.map(|f| f.code),
                                reason: sent.map(|f| f.reason.clone()).unwrap_or_default(),
                                cause: if conn.handler_closed {
                                    CloseCause::HandlerClosed
                                } else {
                                    CloseCause::ConnectionLost
                                },
                            };
                            conn.close_info.get_or_insert(info);
                            ended = true;
                            break;
                        }
                        Due::PongTimeout => {
                            tracing::info!(
                                "keepalive ping not answered in time; closing with 1011"
                            );
                            conn.close_with(
                                1011,
                                "keepalive ping timeout",
                                CloseCause::PingTimeout,
                            );
                            // The peer is unresponsive: don't wait for its close.
                            ended = true;
                            break;
                        }
                        Due::Idle => {
                            conn.engine.compact_idle();
                            super::memory::request_trim();
                        }
                        Due::Ping => {
                            let _ = conn.engine.send_ping(b"");
                        }
                    }
                }
                if ended {
                    break;
                }
                if hibernate_at.is_some_and(|t| t <= Instant::now()) {
                    Box::pin(hibernate(&mut conn, &mut stream, count_in)).await;
                }
            }
        }
    }
    // No more mail: the connection is ending.
    if conn.sleeping.is_some() {
        super::traced::ensure_span(registration.mailbox()).await;
    }
    let meta = registration.meta();
    metrics.connection_closed(
        crate::metrics::ModuleLabels::new(&meta.route, &meta.module.load()),
        registration.mailbox().traffic(),
    );
    // Its subscriptions end before `on_close`, which may still publish
    // (a "left the room" notice).
    drop(membership);
    drop(registration);

    if !eof {
        // Boxed: the largest future awaited here (it holds a read buffer),
        // needed once, at the end.
        Box::pin(finish(&mut stream, &mut conn.engine)).await;
    }

    let info = conn.close_info.take().unwrap_or(CloseInfo {
        code: None,
        reason: String::new(),
        cause: CloseCause::ConnectionLost,
    });
    tracing::debug!(code = ?info.code, reason = %info.reason, cause = ?info.cause, "connection closed");
    // Boxed, like the other calls made once per connection (or per wake or
    // hibernation): the run future, which every connection keeps for its
    // lifetime, hibernated ones too, is as large as its largest await.
    Box::pin(close_handler(&mut conn, info)).await;
}

/// Tells the handler how the connection ended (`on-close`), waking a
/// hibernated one for it first.
async fn close_handler(conn: &mut Conn, info: CloseInfo) {
    if conn.sleeping.is_some() {
        // The close wakes a hibernated connection, for `on-close`. The
        // socket is done: the call runs unwatched, like `on-close`.
        if let Some(mut instance) = woken_instance(conn).await {
            let attachment = conn.sleeping.take().map(|s| s.attachment);
            instance.set_connection(false, 0);
            match instance
                .on_wake(attachment.as_deref().unwrap_or_default())
                .await
            {
                Ok(()) => conn.instance = Some(Box::new(instance)),
                Err(e) => tracing::warn!(error = %e, "handler failed in on_wake before on_close"),
            }
        }
    }
    if let Some(instance) = conn.instance.as_mut() {
        // Writes from `on_close` fail with `closed`.
        instance.set_connection(false, 0);
        if let Err(e) = instance.on_close(&info).await {
            tracing::warn!(error = %e, "handler failed in on_close");
        }
        let dropped = instance.log_lines_dropped();
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "guest log lines dropped over the rate limit on this connection"
            );
        }
    }
}

/// The connection's deadlines: keepalive as configured, the closing
/// handshake, and idle compaction.
fn timer_config(keepalive: Keepalive) -> TimerConfig {
    TimerConfig {
        ping_interval: keepalive.ping_interval,
        pong_timeout: keepalive.effective_timeout().unwrap_or(Duration::MAX),
        close_timeout: CLOSE_TIMEOUT,
        idle_after: Some(IDLE_COMPACT_AFTER),
    }
}

/// Writes what is still queued (our close frame, typically) within a short
/// time, then lingers so the peer reads it before the socket goes away.
async fn finish<S: Transport>(stream: &mut S, engine: &mut Connection) {
    let flush = write_all_output(stream, engine);
    let _ = tokio::time::timeout(FINAL_FLUSH_TIMEOUT, flush).await;
    linger(stream).await;
}

/// `hibernate_after` passed without messages: asks the handler for its
/// attachment and, when it gives one within the limit, drops the instance
/// (freeing its pool slot) and keeps the attachment.
async fn hibernate<S: Transport>(conn: &mut Conn, stream: &mut S, count_in: impl Fn(usize)) {
    if conn.hibernate_at().is_none() {
        return;
    }
    try_hibernate(conn, stream, count_in).await;
    // Whatever the outcome, an upgrade waiting under pool pressure may go on.
    if let Some(source) = &conn.wake {
        source.attempt_ended();
    }
}

/// One hibernation attempt (see [`hibernate`]).
async fn try_hibernate<S: Transport>(conn: &mut Conn, stream: &mut S, count_in: impl Fn(usize)) {
    conn.last_event = Instant::now();
    let Some(max) = conn.wake.as_ref().map(|w| w.config().max_attachment) else {
        return;
    };
    let Some((instance, watch)) = conn.ready_instance() else {
        return;
    };
    let mut answer = None;
    let result = watch
        .run(stream, &count_in, async {
            answer = instance
                .on_hibernate(u32::try_from(max).unwrap_or(u32::MAX))
                .await?;
            Ok(())
        })
        .await;
    conn.after_call(result);
    if conn.instance.is_none() || conn.engine.state() != State::Open || conn.handler_closed {
        return;
    }
    let Some(attachment) = answer else {
        conn.declined = conn.declined.saturating_add(1);
        tracing::debug!(
            declined = conn.declined,
            "handler declined to hibernate; it stays awake"
        );
        return;
    };
    if attachment.len() > max {
        conn.declined = conn.declined.saturating_add(1);
        tracing::info!(
            size = attachment.len(),
            max,
            "hibernation refused: attachment too large; the handler stays awake"
        );
        if let Some((instance, watch)) = conn.ready_instance() {
            let size = attachment.len();
            let result = watch
                .run(stream, &count_in, instance.on_attachment_too_large(size))
                .await;
            conn.after_call(result);
        }
        return;
    }
    let Some(mut instance) = conn.instance.take() else {
        return;
    };
    let resumable = instance.take_resumable();
    let dropped = instance.log_lines_dropped();
    if dropped > 0 {
        tracing::warn!(
            dropped,
            "guest log lines dropped over the rate limit on this connection"
        );
    }
    drop(instance);
    tracing::debug!(attachment = attachment.len(), "connection hibernated");
    conn.declined = 0;
    conn.sleeping = Some(Box::new(Sleeping::new(
        attachment.into_boxed_slice(),
        resumable,
    )));
    conn.engine.compact_idle();
    super::memory::request_trim();
}

/// A fresh instance for a hibernated connection, of its route's version in
/// force now, given what the old one kept; `None` (and the connection
/// closing with 1011, or 1013 when there is no room for an instance) when
/// there can be none.
async fn woken_instance(conn: &mut Conn) -> Option<HandlerInstance> {
    let source = conn.wake.as_ref()?;
    let started = std::time::Instant::now();
    match source.instantiate().await {
        Ok(woken) => {
            let mut instance = woken.instance;
            if let Some(sleeping) = conn.sleeping.as_mut() {
                instance
                    .resume(sleeping.take_resumable(source.pubsub_handle(&woken.module.tenant)));
            }
            conn.metrics = woken.metrics;
            conn.woke_into = Some(woken.module.clone());
            tracing::debug!(
                module = %woken.module.name,
                version = ?woken.module.version,
                instantiate_us = started.elapsed().as_micros() as u64,
                "hibernated connection woke"
            );
            Some(instance)
        }
        Err(e) => {
            let code = match &e {
                super::hibernation::WakeError::Instantiate {
                    error: CallError::MemoryBudget(_) | CallError::Instantiate(_),
                    ..
                } => 1013,
                _ => 1011,
            };
            tracing::warn!(error = %e, code, "hibernated connection cannot wake; closing it");
            conn.sleeping = None;
            conn.close_with(code, "handler unavailable", CloseCause::HandlerClosed);
            None
        }
    }
}

/// Wakes a hibernated connection before its next event: a fresh instance,
/// then `on-wake` with the attachment. A failing `on-wake` closes the
/// connection with 1011, as any failed call does.
async fn wake<S: Transport>(conn: &mut Conn, stream: &mut S, count_in: &impl Fn(usize)) {
    let Some(instance) = woken_instance(conn).await else {
        return;
    };
    conn.instance = Some(Box::new(instance));
    let attachment = conn.sleeping.take().map(|s| s.attachment);
    if let Some((instance, watch)) = conn.ready_instance() {
        let result = watch
            .run(
                stream,
                count_in,
                instance.on_wake(attachment.as_deref().unwrap_or_default()),
            )
            .await;
        conn.after_call(result);
    }
}

/// Hands the gathered messages, if any, to the handler (or drops them when
/// the handler is gone). The call's future is boxed (see [`run`]) and only
/// made when there is something to hand over.
async fn deliver<S: Transport>(
    conn: &mut Conn,
    inbox: &mut Inbox,
    stream: &mut S,
    count_in: impl Fn(usize),
) {
    if !inbox.is_empty() {
        Box::pin(deliver_batch(conn, inbox, stream, count_in)).await;
    }
}

async fn deliver_batch<S: Transport>(
    conn: &mut Conn,
    inbox: &mut Inbox,
    stream: &mut S,
    count_in: impl Fn(usize),
) {
    conn.last_event = Instant::now();
    // Activity: a handler that declined is asked again after one period.
    conn.declined = 0;
    if conn.sleeping.is_some() {
        // Boxed: once per wake, and the largest future here (it makes an
        // instance), which the run future would otherwise keep inline.
        Box::pin(wake(conn, stream, &count_in)).await;
    }
    // Counted here, once per batch: the counter is shared by the route.
    conn.metrics.messages_in.inc_by(inbox.len() as u64);
    match conn.ready_instance() {
        Some((instance, watch)) => {
            let result = watch.run(stream, count_in, inbox.deliver(instance)).await;
            conn.after_call(result);
        }
        None => inbox.clear(),
    }
}

/// Hands one engine event other than a message to the handler. Returns how
/// the connection ended if this event ended it.
async fn dispatch<S: Transport>(
    conn: &mut Conn,
    event: Event,
    stream: &mut S,
    count_in: impl Fn(usize),
) -> Option<CloseInfo> {
    match event {
        // Messages go to the handler through the `Inbox`.
        Event::Message(_) => None,
        Event::Ping(data) => {
            if let Some((instance, watch)) = conn.ready_instance() {
                let result = watch.run(stream, count_in, instance.on_ping(&data)).await;
                conn.after_call(result);
            }
            None
        }
        Event::Pong(data) => {
            if let Some((instance, watch)) = conn.ready_instance() {
                let result = watch.run(stream, count_in, instance.on_pong(&data)).await;
                conn.after_call(result);
            }
            None
        }
        Event::Closed(frame) => {
            let cause = if conn.handler_closed {
                CloseCause::HandlerClosed
            } else {
                CloseCause::PeerClosed
            };
            Some(match frame {
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
            })
        }
        Event::ProtocolError(e) => {
            let code = e.close_code();
            tracing::debug!(error = %e, code, "peer broke the protocol");
            Some(CloseInfo {
                code: Some(code),
                reason: e.to_string(),
                cause: if code == 1009 {
                    CloseCause::MessageTooBig
                } else {
                    CloseCause::ProtocolError
                },
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declining_handler_is_asked_again_later_and_later_up_to_a_cap() {
        let after = Duration::from_secs(10);
        assert_eq!(declined_backoff(after, 0), after);
        assert_eq!(declined_backoff(after, 1), after * 2);
        assert_eq!(declined_backoff(after, 3), after * 8);
        assert_eq!(declined_backoff(after, 6), after * 64);
        assert_eq!(declined_backoff(after, 7), after * 64);
        assert_eq!(declined_backoff(after, u32::MAX), after * 64);
        assert_eq!(
            declined_backoff(Duration::MAX, 6),
            Duration::MAX,
            "saturates"
        );
    }
}
