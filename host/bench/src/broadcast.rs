//! The `broadcast` scenario: N subscribers, P publishers at a total rate,
//! on a server that sends every message a client sends to every other
//! client of the same URL (see `BROADCAST_ABOUT` in the parent module for
//! the protocol and the phases).
//!
//! A message is binary, `size` bytes: a 16-byte header, then a fixed
//! filler (printable text, or JSON-like text with `--compress`):
//!
//! | bytes | content |
//! |---|---|
//! | 0 | `0xB7` data, `0xB8` readiness probe |
//! | 1 | publisher id |
//! | 2..8 | sequence number, 48 bits little-endian, from 0 per publisher |
//! | 8..16 | send time, ns since the run's epoch, little-endian |
//!
//! Each subscriber checks every delivery against the template (size, magic,
//! publisher, filler) and the sequence numbers it has seen per publisher:
//! an older or repeated one is a `duplicate` error, a gap counts the
//! skipped messages as drops, and so does what is still missing when the
//! drain after the run ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use super::BroadcastArgs;
use super::client::{self, ErrorKind, Target, Ws};
use super::engine_client::{self, EngineWs};
use super::payload::{Kind, Payload};
use super::report::{Progress, Report, Shared, drive_phases, round3};

/// Bytes of the header every message starts with.
pub const MIN_SIZE: usize = 16;
const MAGIC_DATA: u8 = 0xB7;
const MAGIC_PROBE: u8 = 0xB8;
const SEQ_MASK: u64 = (1 << 48) - 1;

/// How long opening all subscribers may take.
const OPEN_DEADLINE: Duration = Duration::from_secs(120);
/// How long it may take until every subscriber has seen a probe.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Time between readiness probes: the first, doubling up to the last (a
/// slow server is not sent probes faster than it delivers them).
const PROBE_INTERVAL: Duration = Duration::from_millis(100);
const PROBE_INTERVAL_MAX: Duration = Duration::from_secs(2);
/// How long subscribers may take, once publishing stopped, to receive what
/// was published; what is still missing then counts as dropped.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Publisher pacing: how often it checks what is due, and the most it
/// sends at once when behind.
const PUBLISH_TICK: Duration = Duration::from_millis(1);
const MAX_BURST: u64 = 1000;
/// Latency samples a subscriber collects before adding them to the shared
/// histogram.
const SAMPLE_BATCH: usize = 256;
/// Read buffer of a compressed subscriber (wsbox's engine client).
const ENGINE_READ_CHUNK: usize = 16 * 1024;

/// The message template of a run: the filler every message carries.
#[derive(Debug, Clone)]
pub struct Template {
    bytes: Vec<u8>,
}

/// What a subscriber received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Probe,
    Data {
        publisher: u8,
        seq: u64,
        sent_ns: u64,
    },
}

impl Template {
    /// A template of `size` bytes (at least [`MIN_SIZE`]); `compressible`
    /// makes the filler JSON-like.
    pub fn new(size: usize, compressible: bool) -> Template {
        let kind = if compressible { Kind::Json } else { Kind::Text };
        let mut bytes = Payload::new(kind, size.max(MIN_SIZE)).bytes(0);
        bytes[..MIN_SIZE].fill(0);
        Template { bytes }
    }

    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    fn with_header(&self, magic: u8, publisher: u8, seq: u64, sent_ns: u64) -> Vec<u8> {
        let mut m = self.bytes.clone();
        m[0] = magic;
        m[1] = publisher;
        m[2..8].copy_from_slice(&(seq & SEQ_MASK).to_le_bytes()[..6]);
        m[8..16].copy_from_slice(&sent_ns.to_le_bytes());
        m
    }

    /// Message `seq` of `publisher`, sent at `sent_ns`.
    pub fn data(&self, publisher: u8, seq: u64, sent_ns: u64) -> Vec<u8> {
        self.with_header(MAGIC_DATA, publisher, seq, sent_ns)
    }

    /// A readiness probe.
    pub fn probe(&self, publisher: u8) -> Vec<u8> {
        self.with_header(MAGIC_PROBE, publisher, 0, 0)
    }

    /// Checks a delivery: binary, the right size, a known magic and
    /// publisher, the filler intact.
    pub fn parse(
        &self,
        binary: bool,
        data: &[u8],
        publishers: usize,
    ) -> Result<Delivery, ErrorKind> {
        if !binary || data.len() != self.bytes.len() || data[MIN_SIZE..] != self.bytes[MIN_SIZE..] {
            return Err(ErrorKind::Mismatch);
        }
        let publisher = data[1];
        if usize::from(publisher) >= publishers {
            return Err(ErrorKind::Mismatch);
        }
        match data[0] {
            MAGIC_PROBE => Ok(Delivery::Probe),
            MAGIC_DATA => {
                let mut seq = [0u8; 8];
                seq[..6].copy_from_slice(&data[2..8]);
                let mut sent = [0u8; 8];
                sent.copy_from_slice(&data[8..16]);
                Ok(Delivery::Data {
                    publisher,
                    seq: u64::from_le_bytes(seq),
                    sent_ns: u64::from_le_bytes(sent),
                })
            }
            _ => Err(ErrorKind::Mismatch),
        }
    }
}

/// One subscriber's view of the sequence numbers: the next it expects
/// from each publisher, and the drops seen so far.
#[derive(Debug, Clone)]
pub struct Checker {
    next: Vec<u64>,
    pub drops: u64,
}

impl Checker {
    pub fn new(publishers: usize) -> Checker {
        Checker {
            next: vec![0; publishers],
            drops: 0,
        }
    }

    /// Message `seq` of `publisher` arrived: a gap before it counts as
    /// drops; an old one is a duplicate (not counted as a delivery).
    pub fn accept(&mut self, publisher: u8, seq: u64) -> Result<(), ErrorKind> {
        let next = self
            .next
            .get_mut(usize::from(publisher))
            .ok_or(ErrorKind::Mismatch)?;
        if seq < *next {
            return Err(ErrorKind::Duplicate);
        }
        self.drops += seq - *next;
        *next = seq + 1;
        Ok(())
    }

    /// Whether everything `published` (per publisher) has arrived.
    pub fn complete(&self, published: &[u64]) -> bool {
        self.next.iter().zip(published).all(|(n, p)| n >= p)
    }

    /// The run is over: what never arrived counts as dropped.
    pub fn finish(&mut self, published: &[u64]) {
        for (n, p) in self.next.iter().zip(published) {
            self.drops += p.saturating_sub(*n);
        }
    }
}

/// A subscriber connection: tokio-tungstenite, or wsbox's engine when it
/// negotiates permessage-deflate.
enum SubConn {
    Tungstenite(Box<Ws>),
    Engine(Box<EngineWs>),
}

impl SubConn {
    /// The next data message: `(binary, payload)`.
    async fn recv(&mut self) -> Result<(bool, Vec<u8>), ErrorKind> {
        match self {
            SubConn::Tungstenite(ws) => loop {
                match ws.next().await {
                    Some(Ok(Message::Binary(b))) => return Ok((true, b.to_vec())),
                    Some(Ok(Message::Text(t))) => return Ok((false, t.as_bytes().to_vec())),
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Close(_))) | None => return Err(ErrorKind::Closed),
                    Some(Err(e)) => return Err(ErrorKind::of_ws_error(&e)),
                }
            },
            SubConn::Engine(ws) => match ws.recv().await? {
                wsbox_protocol::Message::Binary(b) => Ok((true, b.to_vec())),
                wsbox_protocol::Message::Text(t) => Ok((false, t.into_bytes())),
            },
        }
    }
}

/// What subscribers and publishers share.
struct Ctx {
    shared: Shared,
    template: Template,
    publishers: usize,
    subscribers: usize,
    /// The run's clock: send timestamps are ns since this instant.
    epoch: Instant,
    /// Subscribers that have seen a probe; `all_ready` fires at N.
    ready: AtomicUsize,
    all_ready: Notify,
    /// Messages sent per publisher (its next sequence number).
    published: Vec<AtomicU64>,
    /// Set once every publisher has stopped: `published` is final.
    publishing_done: watch::Sender<Option<Instant>>,
    drops: AtomicU64,
}

impl Ctx {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn published(&self) -> Vec<u64> {
        self.published
            .iter()
            .map(|p| p.load(Ordering::Relaxed))
            .collect()
    }
}

pub async fn run(target: Target, args: BroadcastArgs) -> anyhow::Result<Report> {
    let n = args.subscribers as usize;
    let p = args.publishers as usize;
    let ctx = Arc::new(Ctx {
        shared: Shared::new(None),
        template: Template::new(args.size, args.compress),
        publishers: p,
        subscribers: n,
        epoch: Instant::now(),
        ready: AtomicUsize::new(0),
        all_ready: Notify::new(),
        published: (0..p).map(|_| AtomicU64::new(0)).collect(),
        publishing_done: watch::Sender::new(None),
        drops: AtomicU64::new(0),
    });
    let shared = &ctx.shared;
    let progress = Progress::new("broadcast", args.common.quiet);
    let target = Arc::new(target);
    let config = client::ws_config(args.size);

    // 1. Subscribers, each reading from the moment it is open.
    let started = Instant::now();
    let on_progress = |k: usize| progress.line(&format!("opening subscribers: {k}/{n}"));
    let subs: Vec<SubConn> = if args.compress {
        let offer = engine_client::offer_config(args.server_no_context_takeover);
        client::open_many(
            n,
            args.open_concurrency as usize,
            shared,
            OPEN_DEADLINE,
            |_| {
                let (target, offer) = (Arc::clone(&target), offer.clone());
                async move {
                    engine_client::open_with(&target, offer, ENGINE_READ_CHUNK)
                        .await
                        .map(|ws| SubConn::Engine(Box::new(ws)))
                }
            },
            on_progress,
        )
        .await
    } else {
        client::open_many(
            n,
            args.open_concurrency as usize,
            shared,
            OPEN_DEADLINE,
            |seq| {
                let target = Arc::clone(&target);
                async move {
                    client::open_probed(target, config, None, seq)
                        .await
                        .map(|ws| SubConn::Tungstenite(Box::new(ws)))
                }
            },
            on_progress,
        )
        .await
    };
    let connected = subs.len();
    let mut sub_tasks = JoinSet::new();
    for conn in subs {
        sub_tasks.spawn(subscriber(conn, Arc::clone(&ctx)));
    }
    let open_s = started.elapsed().as_secs_f64();

    // 2. Publishers.
    let pubs = client::open_many(
        p,
        p,
        shared,
        OPEN_DEADLINE,
        |seq| client::open_probed(Arc::clone(&target), config, None, seq),
        |_| {},
    )
    .await;
    let publishers_open = pubs.len();

    // 3. Readiness: probes until every open subscriber has seen one.
    let ready_started = Instant::now();
    let mut pubs = pubs.into_iter();
    let mut first = pubs.next();
    if let Some(ws) = first.as_mut()
        && connected > 0
    {
        let probe = ctx.template.probe(0);
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        let mut interval = PROBE_INTERVAL;
        while ctx.ready.load(Ordering::Relaxed) < connected {
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            if let Err(e) = ws.send(Message::binary(probe.clone())).await {
                shared.error(ErrorKind::of_ws_error(&e));
                break;
            }
            let notified = ctx.all_ready.notified();
            if ctx.ready.load(Ordering::Relaxed) >= connected {
                break;
            }
            let _ = tokio::time::timeout(interval, notified).await;
            interval = (interval * 2).min(PROBE_INTERVAL_MAX);
            progress.line(&format!(
                "waiting for subscribers: {}/{connected} ready",
                ctx.ready.load(Ordering::Relaxed)
            ));
        }
    }
    let ready = ctx.ready.load(Ordering::Relaxed);
    let ready_s = ready_started.elapsed().as_secs_f64();
    shared.errors_add(ErrorKind::NotReady, connected.saturating_sub(ready) as u64);
    progress.line(&format!(
        "{connected}/{n} subscribers open in {open_s:.1} s, {ready} ready after {ready_s:.1} s; publishing"
    ));

    // 4. Publish through the warm-up and the measured window.
    let mut pub_tasks = JoinSet::new();
    for (id, ws) in first.into_iter().chain(pubs).enumerate() {
        let rate = f64::from(args.rate) / p as f64;
        pub_tasks.spawn(publisher(ws, id, rate, Arc::clone(&ctx)));
    }
    let mut measured = false;
    if publishers_open > 0 && connected > 0 {
        drive_phases(
            shared,
            "broadcast",
            args.warmup,
            args.duration,
            args.common.quiet,
        )
        .await;
        measured = true;
    } else {
        shared.stop();
    }
    // Publishers stop at the end of the window (each within one tick and
    // its last writes).
    // They stay connected until the drain is over: a server may drop what
    // a closed connection sent but it had not handled yet.
    let bound = client::CLOSE_TIMEOUT + Duration::from_secs(10);
    let mut open_publishers = Vec::new();
    let all_done = async {
        while let Some(done) = pub_tasks.join_next().await {
            if let Ok(Some(conn)) = done {
                open_publishers.push(conn);
            }
        }
    };
    if tokio::time::timeout(bound, all_done).await.is_err() {
        pub_tasks.abort_all();
    }
    let published = ctx.published();
    ctx.publishing_done
        .send_replace(Some(Instant::now() + DRAIN_TIMEOUT));

    // 5. Drain: subscribers finish once they have everything, or at the
    // drain deadline (the outer bound guards against a stuck task).
    let all_done = async { while sub_tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN_TIMEOUT + Duration::from_secs(5), all_done)
        .await
        .is_err()
    {
        sub_tasks.abort_all();
    }
    progress.done();
    for (sink, reader) in open_publishers {
        reader.abort();
        drop(sink);
    }

    let drops = ctx.drops.load(Ordering::Relaxed);
    let total_published: u64 = published.iter().sum();
    let mut report = Report::new("broadcast", args.common.label.as_deref(), shared);
    report.no_connection = connected == 0 || publishers_open == 0 || !measured;
    let rate = report.fields["events_per_s"].clone();
    report.set("deliveries_per_s", rate);
    report.set("url", json!(target.url));
    report.set("subscribers", json!(n));
    report.set("connected", json!(connected));
    report.set("ready", json!(ready));
    report.set("publishers", json!(p));
    report.set("publishers_open", json!(publishers_open));
    report.set("rate", json!(args.rate));
    report.set("size", json!(ctx.template.size()));
    report.set("compress", json!(args.compress));
    report.set(
        "server_no_context_takeover",
        json!(args.server_no_context_takeover),
    );
    report.set("published", json!(total_published));
    report.set("drops", json!(drops));
    report.set("open_s", json!(round3(open_s)));
    report.set("ready_s", json!(round3(ready_s)));
    report.set("warmup_s", json!(args.warmup.as_secs_f64()));
    report.text.push(format!(
        "broadcast {}: {ready}/{n} subscribers ready ({connected} open in {open_s:.2} s), {publishers_open} publisher(s) at {} msg/s, {} B binary{}",
        target.url,
        args.rate,
        args.size,
        match (args.compress, args.server_no_context_takeover) {
            (false, _) => "",
            (true, false) => ", permessage-deflate offered",
            (true, true) => ", permessage-deflate offered with server_no_context_takeover",
        }
    ));
    let f = |k: &str| report.fields[k].as_f64().unwrap_or(0.0);
    report.text.push(format!(
        "  measured        {:.2} s, {} deliveries (after {:.1} s warm-up); {total_published} published in all",
        f("measured_s"),
        report.fields["events"],
        args.warmup.as_secs_f64()
    ));
    report.text.push(format!(
        "  throughput      {:.0} deliveries/s, {:.2} MB/s of payload",
        f("deliveries_per_s"),
        f("mb_per_s")
    ));
    report.text.push(format!(
        "  drops           {drops} (sequence gaps, and messages missing after the {} s drain)",
        DRAIN_TIMEOUT.as_secs()
    ));
    Ok(report)
}

/// One subscriber: reads and checks every delivery until publishing is
/// done and it has everything, or the drain deadline passes.
async fn subscriber(mut conn: SubConn, ctx: Arc<Ctx>) {
    let shared = &ctx.shared;
    let mut checker = Checker::new(ctx.publishers);
    let mut samples: Vec<u64> = Vec::with_capacity(SAMPLE_BATCH);
    let mut probed = false;
    let mut done = ctx.publishing_done.subscribe();
    let mut alive = true;
    loop {
        let deadline = *done.borrow_and_update();
        let next = match deadline {
            Some(deadline) => {
                if checker.complete(&ctx.published()) {
                    break;
                }
                match tokio::time::timeout_at(deadline.into(), conn.recv()).await {
                    Ok(r) => r,
                    Err(_) => break,
                }
            }
            None => {
                tokio::select! {
                    r = conn.recv() => r,
                    _ = done.changed() => continue,
                }
            }
        };
        let (binary, data) = match next {
            Ok(m) => m,
            Err(kind) => {
                shared.error(kind);
                alive = false;
                break;
            }
        };
        match ctx.template.parse(binary, &data, ctx.publishers) {
            Ok(Delivery::Probe) => {
                if !probed {
                    probed = true;
                    if ctx.ready.fetch_add(1, Ordering::Relaxed) + 1 >= ctx.subscribers {
                        ctx.all_ready.notify_one();
                    }
                }
            }
            Ok(Delivery::Data {
                publisher,
                seq,
                sent_ns,
            }) => match checker.accept(publisher, seq) {
                Ok(()) => {
                    if shared.event(data.len()) {
                        samples.push(ctx.now_ns().saturating_sub(sent_ns));
                        if samples.len() >= SAMPLE_BATCH {
                            shared.record_latencies(&mut samples);
                        }
                    }
                }
                Err(kind) => shared.error(kind),
            },
            Err(kind) => shared.error(kind),
        }
    }
    shared.record_latencies(&mut samples);
    if alive {
        // A lost connection is an error already; its missing messages are
        // not also drops.
        checker.finish(&ctx.published());
    }
    ctx.drops.fetch_add(checker.drops, Ordering::Relaxed);
    // Dropped without a closing handshake: 10,000 closes would outlast the
    // run (the echo and idle scenarios check closing).
    drop(conn);
}

/// A publisher's connection, kept open until the drain is over: its sink
/// and the task reading (and discarding) what it receives.
type OpenPublisher = (
    futures_util::stream::SplitSink<Ws, Message>,
    tokio::task::JoinHandle<()>,
);

/// One publisher: `rate` messages per second until the run stops. What it
/// receives (other publishers' messages) is read and discarded. Returns
/// its connection unless it failed.
async fn publisher(ws: Ws, id: usize, rate: f64, ctx: Arc<Ctx>) -> Option<OpenPublisher> {
    let shared = &ctx.shared;
    let (mut sink, mut stream) = ws.split();
    let reader = tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
    let publisher = u8::try_from(id).unwrap_or(u8::MAX);
    let start = Instant::now();
    let mut tick = tokio::time::interval(PUBLISH_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sent = 0u64;
    let result = async {
        while !shared.stopping() {
            tick.tick().await;
            let due = (start.elapsed().as_secs_f64() * rate) as u64;
            let burst = due.saturating_sub(sent).min(MAX_BURST);
            if burst == 0 {
                continue;
            }
            for _ in 0..burst {
                let message = ctx.template.data(publisher, sent, ctx.now_ns());
                sink.feed(Message::binary(message)).await?;
                sent += 1;
            }
            sink.flush().await?;
            ctx.published[id].store(sent, Ordering::Relaxed);
        }
        Ok::<(), tokio_tungstenite::tungstenite::Error>(())
    }
    .await;
    ctx.published[id].store(sent, Ordering::Relaxed);
    if let Err(e) = result {
        shared.error(ErrorKind::of_ws_error(&e));
        reader.abort();
        return None;
    }
    Some((sink, reader))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_corruption_is_caught() {
        for compressible in [false, true] {
            for size in [16, 20, 100, 1024] {
                let t = Template::new(size, compressible);
                assert_eq!(t.size(), size);
                let m = t.data(2, 0x1234_5678_9abc, 987_654_321);
                assert_eq!(m.len(), size);
                assert_eq!(
                    t.parse(true, &m, 3),
                    Ok(Delivery::Data {
                        publisher: 2,
                        seq: 0x1234_5678_9abc,
                        sent_ns: 987_654_321
                    })
                );
                assert_eq!(t.parse(true, &t.probe(0), 3), Ok(Delivery::Probe));
                // Unknown publisher, text instead of binary, wrong size.
                assert_eq!(t.parse(true, &m, 2), Err(ErrorKind::Mismatch));
                assert_eq!(t.parse(false, &m, 3), Err(ErrorKind::Mismatch));
                assert_eq!(t.parse(true, &m[..size - 1], 3), Err(ErrorKind::Mismatch));
                let mut bad = m.clone();
                bad[0] = 0;
                assert_eq!(t.parse(true, &bad, 3), Err(ErrorKind::Mismatch), "magic");
                if size > MIN_SIZE {
                    let mut bad = m.clone();
                    bad[size - 1] ^= 1;
                    assert_eq!(t.parse(true, &bad, 3), Err(ErrorKind::Mismatch), "filler");
                }
            }
        }
    }

    #[test]
    fn gaps_are_drops_and_repeats_are_duplicates() {
        let mut c = Checker::new(2);
        c.accept(0, 0).unwrap();
        c.accept(0, 1).unwrap();
        c.accept(1, 0).unwrap();
        assert_eq!(c.drops, 0);
        // 2 and 3 of publisher 0 are missing.
        c.accept(0, 4).unwrap();
        assert_eq!(c.drops, 2);
        assert_eq!(c.accept(0, 4), Err(ErrorKind::Duplicate));
        assert_eq!(
            c.accept(0, 3),
            Err(ErrorKind::Duplicate),
            "late = reordered"
        );
        assert_eq!(c.accept(5, 0), Err(ErrorKind::Mismatch));
        assert!(c.complete(&[5, 1]));
        assert!(!c.complete(&[6, 1]));
        // Publisher 1 sent 3: two never arrived.
        c.finish(&[5, 3]);
        assert_eq!(c.drops, 4);
        // The first message missing is a drop too.
        let mut c = Checker::new(1);
        c.accept(0, 3).unwrap();
        assert_eq!(c.drops, 3);
    }

    #[test]
    fn compressible_filler_compresses() {
        let t = Template::new(1024, true);
        let m = t.data(0, 1, 2);
        let distinct = m[MIN_SIZE..]
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len();
        assert!(distinct < 70, "{distinct}");
    }
}
