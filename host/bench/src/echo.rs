//! The `echo` scenario: N connections, each keeping K messages in flight.
//!
//! Each connection is one task running one state machine over its
//! WebSocket (no split halves, no channels): it reads every echo that is
//! ready, checks it against the message it answers (same type, length and
//! bytes, including the sequence number, so reordering is caught too),
//! refills the window of K messages and flushes them with one write. The
//! latency of a message is from just before it was queued to the moment its
//! echo was read.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::{Sink, Stream};
use serde_json::json;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use super::EchoArgs;
use super::client::{self, ErrorKind, Target, Ws};
use super::engine_client::{self, EngineWs};
use super::payload::{Kind, Payload};
use super::report::{Progress, Report, Shared, drive_phases};

/// How long connections may take, once the run is over, to receive the
/// echoes still in flight; those missing then count as `unanswered`.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long opening all connections may take.
const OPEN_DEADLINE: Duration = Duration::from_secs(60);
/// Connection attempts in progress at once while opening.
const OPEN_CONCURRENCY: usize = 256;
/// Latency samples a connection collects before adding them to the shared
/// histogram (one lock per batch).
const SAMPLE_BATCH: usize = 256;

pub async fn run(target: Target, args: EchoArgs) -> anyhow::Result<Report> {
    let kind = if args.compress {
        Kind::Json
    } else if args.binary {
        Kind::Binary
    } else {
        Kind::Text
    };
    let payload = Arc::new(Payload::new(kind, args.size));
    let shared = Arc::new(Shared::new(args.messages));
    let window = args.in_flight as usize;
    let n = args.connections as usize;
    // Big enough read/write buffers for a whole window per syscall.
    let config = client::ws_config(window.saturating_mul(args.size + 14));

    let progress = Progress::new("echo", args.common.quiet);
    let on_progress = |k: usize| progress.line(&format!("opening: {k}/{n}"));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    let target = Arc::new(target);
    let connected = if args.compress {
        // tokio-tungstenite has no permessage-deflate: wsbox's own engine.
        let conns = client::open_many(
            n,
            OPEN_CONCURRENCY,
            &shared,
            OPEN_DEADLINE,
            |_| {
                let target = Arc::clone(&target);
                async move { engine_client::open(&target).await }
            },
            on_progress,
        )
        .await;
        let connected = conns.len();
        for ws in conns {
            let (payload, shared) = (Arc::clone(&payload), Arc::clone(&shared));
            tasks.spawn(connection(Conn::Engine(ws), payload, shared, window));
        }
        connected
    } else {
        let conns = client::open_many(
            n,
            OPEN_CONCURRENCY,
            &shared,
            OPEN_DEADLINE,
            |seq| client::open_probed(Arc::clone(&target), config, None, seq),
            on_progress,
        )
        .await;
        let connected = conns.len();
        for ws in conns {
            let (payload, shared) = (Arc::clone(&payload), Arc::clone(&shared));
            tasks.spawn(connection(Conn::Tungstenite(ws), payload, shared, window));
        }
        connected
    };
    let open_s = started.elapsed().as_secs_f64();
    if connected > 0 {
        drive_phases(
            &shared,
            "echo",
            args.warmup,
            args.duration,
            args.common.quiet,
        )
        .await;
    }
    // Each connection drains and closes within its own time limits; this
    // outer bound only guards against a stuck task.
    let all_done = async { while tasks.join_next().await.is_some() {} };
    let bound = DRAIN_TIMEOUT + client::CLOSE_TIMEOUT + Duration::from_secs(2);
    if tokio::time::timeout(bound, all_done).await.is_err() {
        tasks.abort_all();
    }

    let mut report = Report::new("echo", args.common.label.as_deref(), &shared);
    report.no_connection = connected == 0;
    let rate = report.fields["events_per_s"].clone();
    report.set("messages_per_s", rate);
    report.set("url", json!(target.url));
    report.set("connections", json!(n));
    report.set("connected", json!(connected));
    report.set("open_s", json!(super::report::round3(open_s)));
    report.set("in_flight", json!(window));
    report.set("size", json!(args.size));
    report.set(
        "payload",
        json!(match kind {
            Kind::Text => "text",
            Kind::Binary => "binary",
            Kind::Json => "json-text",
        }),
    );
    report.set("compress", json!(args.compress));
    report.set("warmup_s", json!(args.warmup.as_secs_f64()));
    report.text.push(format!(
        "echo {}: {connected}/{n} connections x {window} in flight, {} B {} messages",
        target.url,
        args.size,
        if payload.is_text() { "text" } else { "binary" },
    ));
    let f = |k: &str| report.fields[k].as_f64().unwrap_or(0.0);
    report.text.push(format!(
        "  measured        {:.2} s, {} messages (after {:.1} s warm-up)",
        f("measured_s"),
        report.fields["events"],
        args.warmup.as_secs_f64()
    ));
    report.text.push(format!(
        "  throughput      {:.0} messages/s, {:.2} MB/s of payload each way",
        f("messages_per_s"),
        f("mb_per_s")
    ));
    if let Some(spread) = shared.connection_spread() {
        report.text.push(format!(
            "  per connection  {} / {} / {} messages (min / median / max), Jain's fairness index {}",
            spread["min"], spread["p50"], spread["max"], spread["jain"]
        ));
        report.set("per_connection_messages", spread);
    }
    Ok(report)
}

/// One benchmark connection: tokio-tungstenite, or wsbox's engine for
/// `--compress` (tokio-tungstenite has no permessage-deflate).
enum Conn {
    Tungstenite(Ws),
    Engine(EngineWs),
}

/// One connection's messages in flight and the latencies measured so far.
pub(super) struct InFlight {
    sent_at: VecDeque<Instant>,
    samples: Vec<u64>,
    next_seq: u64,
    expect: u64,
    /// Echoes received in the measured phase.
    measured: u64,
}

impl InFlight {
    fn new(window: usize) -> InFlight {
        InFlight {
            sent_at: VecDeque::with_capacity(window),
            samples: Vec::with_capacity(SAMPLE_BATCH),
            next_seq: 0,
            expect: 0,
            measured: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.sent_at.len()
    }

    /// A message is about to be sent: returns its sequence number.
    pub(super) fn send(&mut self) -> u64 {
        self.sent_at.push_back(Instant::now());
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// An echo arrived: it must answer the oldest message in flight, byte
    /// for byte. Records its latency.
    pub(super) fn answered(
        &mut self,
        payload: &Payload,
        shared: &Shared,
        text: bool,
        data: &[u8],
    ) -> Result<(), ErrorKind> {
        // None: a message nobody asked for.
        let sent = self.sent_at.pop_front().ok_or(ErrorKind::Mismatch)?;
        if !payload.matches(self.expect, text, data) {
            return Err(ErrorKind::Mismatch);
        }
        self.expect += 1;
        if shared.event(data.len()) {
            self.measured += 1;
            self.samples.push(sent.elapsed().as_nanos() as u64);
            if self.samples.len() >= SAMPLE_BATCH {
                shared.record_latencies(&mut self.samples);
            }
        }
        Ok(())
    }
}

/// Runs one connection until the run stops and its window has drained,
/// then closes it.
async fn connection(mut conn: Conn, payload: Arc<Payload>, shared: Arc<Shared>, window: usize) {
    let mut in_flight = InFlight::new(window);
    let mut stop_signal = shared.stop_signal();
    let result = {
        let load = async {
            match &mut conn {
                Conn::Tungstenite(ws) => pump(ws, &payload, &shared, window, &mut in_flight).await,
                Conn::Engine(ws) => {
                    engine_client::pump(ws, &payload, &shared, window, &mut in_flight).await
                }
            }
        };
        let drain_expired = async {
            let _ = stop_signal.wait_for(|stopped| *stopped).await;
            tokio::time::sleep(DRAIN_TIMEOUT).await;
        };
        tokio::select! {
            r = load => r,
            () = drain_expired => Err(ErrorKind::Unanswered),
        }
    };
    shared.record_latencies(&mut in_flight.samples);
    shared.record_connection_events(in_flight.measured);
    match result {
        Ok(()) => {
            let closed = match conn {
                Conn::Tungstenite(ws) => client::close(ws).await,
                Conn::Engine(ws) => engine_client::close(ws).await,
            };
            if let Err(kind) = closed {
                shared.error(kind);
            }
        }
        Err(ErrorKind::Unanswered) => {
            shared.errors_add(ErrorKind::Unanswered, in_flight.len() as u64);
        }
        // The connection is unusable; dropping it closes the socket.
        Err(kind) => shared.error(kind),
    }
}

/// The load loop of one connection: returns `Ok` once the run stopped and
/// every message sent was answered.
fn pump<'a>(
    ws: &'a mut Ws,
    payload: &'a Payload,
    shared: &'a Shared,
    window: usize,
    in_flight: &'a mut InFlight,
) -> impl Future<Output = Result<(), ErrorKind>> + 'a {
    let mut unflushed = false;
    poll_fn(move |cx| {
        // Everything that has arrived.
        loop {
            match Pin::new(&mut *ws).poll_next(cx) {
                Poll::Ready(Some(Ok(msg))) => {
                    let (text, data): (bool, &[u8]) = match &msg {
                        Message::Text(t) => (true, t.as_bytes()),
                        Message::Binary(b) => (false, b),
                        Message::Close(_) => return Poll::Ready(Err(ErrorKind::Closed)),
                        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                    };
                    if let Err(kind) = in_flight.answered(payload, shared, text, data) {
                        return Poll::Ready(Err(kind));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(Err(ErrorKind::of_ws_error(&e)));
                }
                Poll::Ready(None) => return Poll::Ready(Err(ErrorKind::Closed)),
                Poll::Pending => break,
            }
        }
        // Refill the window.
        let stopping = shared.stopping();
        while !stopping && in_flight.len() < window {
            match Pin::new(&mut *ws).poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(ErrorKind::of_ws_error(&e))),
                Poll::Pending => break,
            }
            let seq = in_flight.send();
            if let Err(e) = Pin::new(&mut *ws).start_send(payload.message(seq)) {
                return Poll::Ready(Err(ErrorKind::of_ws_error(&e)));
            }
            unflushed = true;
        }
        if unflushed {
            match Pin::new(&mut *ws).poll_flush(cx) {
                Poll::Ready(Ok(())) => unflushed = false,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(ErrorKind::of_ws_error(&e))),
                Poll::Pending => {}
            }
        }
        if stopping && in_flight.len() == 0 {
            return Poll::Ready(Ok(()));
        }
        Poll::Pending
    })
}
