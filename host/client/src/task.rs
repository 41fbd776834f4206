//! The connection task: drives the sans-IO engine over the socket, delivers
//! messages to the client, and runs keepalive pings and the close timeouts.
//! The mirror image of `crate::server::connection`.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io;
use std::sync::{Arc, MutexGuard};
use std::task::Poll;
use std::time::{Duration, Instant as StdInstant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, PollSender};
use wsbox_protocol::timers::{Due, TimerConfig, Timers};
use wsbox_protocol::{Config, Connection, Event, Message, Role, State};

use super::handshake::Opened;
use super::{
    ClientOptions, CloseCause, CloseInfo, EngineState, Keepalive, OUTPUT_HIGH_WATER, Shared,
    WebSocketClient, new_handle,
};
use wsbox_io::driver::{SocketIo, poll_socket};

/// Messages read ahead of the application; beyond them the task stops
/// reading the socket (backpressure to the server).
const MESSAGE_QUEUE: usize = 16;
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 64 * 1024;
/// How long the last queued frames may take to go out once we are done.
const FINAL_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// Starts the connection task for a completed opening handshake.
pub(super) fn spawn(
    opened: Opened,
    options: &ClientOptions,
    keepalive: Keepalive,
) -> WebSocketClient {
    let mut config = Config::new(Role::Client);
    config.max_message_size = options.max_message_size;
    let mut conn = Connection::with_deflate(config, opened.negotiated.clone());
    conn.receive(&opened.leftover);
    let (handle, shared, closed_tx, alive) = new_handle(conn, &opened);
    let (tx, rx) = mpsc::channel(MESSAGE_QUEUE);
    let settings = Settings {
        keepalive,
        close_timeout: options.close_timeout,
    };
    tracing::debug!(
        subprotocol = ?opened.subprotocol,
        extensions = ?opened.extensions,
        "client connection open"
    );
    tokio::spawn(run(opened.stream, shared, tx, closed_tx, alive, settings));
    WebSocketClient {
        handle,
        messages: rx,
    }
}

struct Settings {
    keepalive: Keepalive,
    close_timeout: Duration,
}

/// The outcome of one wait.
enum Io {
    /// A message was handed to the application, or bytes were read or
    /// written.
    Progress,
    Eof,
    Failed(io::Error),
    /// A handle queued something to write.
    Woken,
    /// Every handle was dropped.
    HandlesGone,
    /// A deadline in [`Timers`] is due.
    Timer,
}

fn lock(shared: &Shared) -> MutexGuard<'_, EngineState> {
    shared
        .engine
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Handles one engine event. Messages go to `deliver`.
fn on_event(
    state: &mut EngineState,
    event: Event,
    timers: &mut Timers,
    cause: &mut Option<CloseCause>,
    deliver: &mut VecDeque<Message>,
) {
    match event {
        Event::Message(message) => deliver.push_back(message),
        Event::Ping(_) => {} // the engine has queued the pong
        Event::Pong(data) => {
            timers.pong_received();
            let waiters = std::mem::take(&mut state.pong_waiters);
            for (payload, waiter) in waiters {
                if payload == data {
                    let _ = waiter.send(());
                } else {
                    state.pong_waiters.push((payload, waiter));
                }
            }
        }
        Event::Closed(frame) => {
            tracing::debug!(?frame, "close frame received");
            cause.get_or_insert(if state.client_initiated_close {
                CloseCause::ClientClosed
            } else {
                CloseCause::ServerClosed
            });
        }
        Event::ProtocolError(error) => {
            tracing::debug!(%error, "server broke the protocol; closing with {}", error.close_code());
            cause.get_or_insert(CloseCause::ProtocolError(error));
        }
    }
}

async fn run<S>(
    mut stream: S,
    shared: Arc<Shared>,
    messages: mpsc::Sender<Message>,
    closed_tx: watch::Sender<Option<CloseInfo>>,
    alive: CancellationToken,
    settings: Settings,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut sender = PollSender::new(messages);
    let mut undelivered: VecDeque<Message> = VecDeque::new();
    let mut cause: Option<CloseCause> = None;
    let mut timers = Timers::new(
        TimerConfig {
            ping_interval: settings.keepalive.interval,
            pong_timeout: settings.keepalive.timeout,
            close_timeout: settings.close_timeout,
            idle_after: None,
        },
        StdInstant::now(),
    );
    let mut sleep = Box::pin(tokio::time::sleep_until(Instant::now()));
    let mut handles_gone = Box::pin(alive.cancelled_owned());
    let mut watch_handles = true;
    let mut eof = false;
    let mut read_buf = vec![0u8; READ_CHUNK];

    loop {
        let (state, pending) = {
            let mut guard = lock(&shared);
            let st = &mut *guard;
            // One message at a time: the engine parses no further until the
            // application took it, which is what gives backpressure.
            while undelivered.is_empty() {
                let Some(event) = st.conn.next_event() else {
                    break;
                };
                on_event(st, event, &mut timers, &mut cause, &mut undelivered);
            }
            (st.conn.state(), st.conn.pending_output_len())
        };
        if pending <= OUTPUT_HIGH_WATER {
            shared.drained.notify_waiters();
        }
        if (state == State::Closed || eof) && pending == 0 && undelivered.is_empty() {
            break;
        }
        timers.observe(state, StdInstant::now());
        let wake_at = timers.next_wake();
        if let Some(at) = wake_at {
            sleep.as_mut().reset(Instant::from_std(at));
        }

        let reading =
            !eof && state != State::Closed && pending < OUTPUT_HIGH_WATER && undelivered.is_empty();
        let mut woken = std::pin::pin!(shared.wake.notified());
        let io = poll_fn(|cx| {
            if !undelivered.is_empty() {
                match sender.poll_reserve(cx) {
                    Poll::Ready(Ok(())) => {
                        if let Some(message) = undelivered.pop_front() {
                            // Cannot fail right after a successful reserve.
                            let _ = sender.send_item(message);
                        }
                        return Poll::Ready(Io::Progress);
                    }
                    Poll::Ready(Err(_)) => {
                        // Nobody reads messages any more (the client was
                        // dropped, a handle lives on): discard them.
                        undelivered.clear();
                        return Poll::Ready(Io::Progress);
                    }
                    Poll::Pending => {}
                }
            }
            let step = {
                let mut guard = lock(&shared);
                let read_buf = reading.then_some(&mut read_buf[..]);
                poll_socket(&mut stream, cx, &mut guard.conn, read_buf)
            };
            match step {
                Poll::Ready(SocketIo::Read(_) | SocketIo::Wrote(_)) => {
                    return Poll::Ready(Io::Progress);
                }
                Poll::Ready(SocketIo::Eof) => return Poll::Ready(Io::Eof),
                Poll::Ready(SocketIo::Failed(e)) => return Poll::Ready(Io::Failed(e)),
                Poll::Pending => {}
            }
            if woken.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Io::Woken);
            }
            if watch_handles && handles_gone.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Io::HandlesGone);
            }
            if wake_at.is_some() && sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Io::Timer);
            }
            Poll::Pending
        })
        .await;

        match io {
            Io::Progress | Io::Woken => {}
            Io::Eof => {
                eof = true;
                let clean = lock(&shared).conn.receive_eof();
                if !clean {
                    cause.get_or_insert(CloseCause::ConnectionLost(
                        "the server closed the connection without a close handshake".into(),
                    ));
                }
            }
            Io::Failed(e) => {
                tracing::debug!(error = %e, "client socket error");
                cause.get_or_insert(CloseCause::ConnectionLost(e.to_string()));
                lock(&shared).conn.receive_eof();
                eof = true;
            }
            Io::HandlesGone => {
                watch_handles = false;
                let mut st = lock(&shared);
                if st.conn.state() == State::Open {
                    tracing::debug!("every client handle dropped; closing with 1001");
                    let _ = st.conn.close(Some(1001), "going away");
                    st.client_initiated_close = true;
                }
            }
            Io::Timer => match timers.poll(StdInstant::now()) {
                Some(Due::CloseTimeout) => {
                    tracing::debug!("server did not answer our close frame in time");
                    cause.get_or_insert(CloseCause::CloseTimeout);
                    break;
                }
                Some(Due::PongTimeout) => {
                    tracing::info!("keepalive ping not answered in time; closing with 1011");
                    let _ = lock(&shared)
                        .conn
                        .close(Some(1011), "keepalive ping timeout");
                    cause.get_or_insert(CloseCause::PingTimeout);
                    // The server is unresponsive: don't wait for its close.
                    break;
                }
                Some(Due::Ping) => {
                    let _ = lock(&shared).conn.send_ping(b"");
                }
                // Several at once: the loop comes back for the rest.
                Some(Due::Idle) | None => {}
            },
        }
    }

    // Events parsed but not handled yet (after a message the loop did not
    // pull further) still count: messages are delivered, a close is noted.
    let info = {
        let mut guard = lock(&shared);
        let st = &mut *guard;
        while let Some(event) = st.conn.next_event() {
            on_event(st, event, &mut timers, &mut cause, &mut undelivered);
        }
        st.done = true;
        st.pong_waiters.clear();
        let received = st.conn.close_received();
        CloseInfo {
            code: received.map(|f| f.code),
            reason: received.map(|f| f.reason.clone()).unwrap_or_default(),
            sent: st.conn.close_sent().cloned(),
            cause: cause.unwrap_or_else(|| {
                CloseCause::ConnectionLost("the connection ended without a close handshake".into())
            }),
        }
    };
    tracing::debug!(code = ?info.code, reason = %info.reason, cause = %info.cause, "client connection closed");
    shared.drained.notify_waiters();
    closed_tx.send_replace(Some(info));

    let deliver = async {
        if let Some(tx) = sender.get_ref().cloned() {
            drop(sender);
            for message in undelivered {
                if tx.send(message).await.is_err() {
                    break;
                }
            }
        }
    };
    let finish = async {
        if !eof {
            let output = lock(&shared).conn.take_output();
            if !output.is_empty() {
                let _ = tokio::time::timeout(FINAL_FLUSH_TIMEOUT, stream.write_all(&output)).await;
            }
            wsbox_io::linger::linger(&mut stream).await;
        }
    };
    tokio::join!(deliver, finish);
}
