//! `wsbox bench`: a WebSocket load generator in the spirit of `wrk`.
//!
//! Scenarios:
//!
//! - [`echo`]: N connections, each keeping K messages in flight; every echo
//!   is checked against what was sent (a sequence number is written into
//!   each payload, so a reordered, duplicated or corrupted echo is an error);
//! - [`connect`]: connection churn: open, one round trip, close, as fast as
//!   the server allows;
//! - [`idle`]: open N connections and hold them, reporting the server's
//!   resident memory per connection when given its PID;
//! - [`broadcast`]: N subscribers and P publishers on a server that sends
//!   every message a client sends to every other client (the protocol of
//!   `examples/broadcast` and the broadcast peers in `bench/peers`); every
//!   delivery is checked (contents, duplicates, gaps counted as drops) and
//!   timed from the send timestamp it carries.
//!
//! Every run is bounded in time: a warm-up (excluded from the results), then
//! the measured window (`--duration`, or fewer with `--messages`), then a
//! bounded drain and close. The client is tokio-tungstenite, an independent
//! implementation of the protocol, so wsbox is not measured against itself.
//!
//! The report gives messages/s, MB/s, latency percentiles (HdrHistogram),
//! connections/s and errors by kind; `--json` makes the last line printed a
//! single JSON object for scripts (see `bench/run.sh`).

mod broadcast;
mod client;
mod connect;
#[cfg(test)]
mod e2e_tests;
mod echo;
mod engine_client;
mod idle;
mod payload;
mod report;

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

pub use report::Report;

/// Longest run the command accepts: every load loop must stay bounded.
const MAX_DURATION: Duration = Duration::from_secs(3600);

/// Arguments of `wsbox bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// The load scenarios.
#[derive(Subcommand, Debug)]
pub enum Scenario {
    /// N connections, each keeping K messages in flight; echoes are verified.
    Echo(EchoArgs),
    /// Connection churn: open, one round trip, close, repeat, on N workers.
    Connect(ConnectArgs),
    /// Open N connections and hold them; with --pid, report the server's RSS
    /// per connection (from /proc/PID/status).
    Idle(IdleArgs),
    /// Fan-out: N subscribers and P publishers at a total rate; every
    /// delivery is verified and timed.
    #[command(long_about = BROADCAST_ABOUT)]
    Broadcast(BroadcastArgs),
}

const BROADCAST_ABOUT: &str = "\
Fan-out: N subscribers and P publishers on one broadcast endpoint.

The server under test must implement one protocol: every message a client
sends is sent, unchanged, to every other client connected to the same URL
(not back to the sender). wsbox does it with examples/broadcast
(bench/broadcast.toml serves it at /broadcast); bench/peers has the same
for tokio-tungstenite, Node ws, Python websockets and Tornado.

The run: open the N subscribers (--open-concurrency at a time), open the
P publishers, then publisher 0 sends probe messages (100 ms apart, the gap
doubling up to 2 s) until every subscriber has seen one, so all are
subscribed before anything is measured (at most 60 s; subscribers still
without a probe then count as `not_ready` errors).
Then the publishers send --rate binary messages per second in total, open
loop, each of --size bytes carrying its publisher id, a sequence number
and its send time; after --warmup, deliveries are counted for --duration.
Every delivery is checked: size and contents (`mismatch`), a sequence
number already seen (`duplicate`), a gap (counted as drops, as are the
messages still missing when the drain after the run times out: 5 s).
Latency is from the send timestamp to the subscriber's read.

Publishers are clients too, so with P > 1 they receive each other's
messages (read and discarded, not counted). They stay connected until the
drain is over; at the end every connection is dropped without a closing
handshake (the echo and idle scenarios test closing).

The report: deliveries/s in the measured window, latency percentiles,
drops, published messages and errors by kind; --json adds one JSON line.

Compression (--compress): subscribers offer permessage-deflate (the
publishers do not: what is measured is the server compressing its fan-out),
with client context takeover and, with --server-no-context-takeover, asking
the server to reset its compressor per message, which lets wsbox compress
each message once for all subscribers; without it wsbox sends context-
takeover subscribers the shared frame uncompressed. A server that declines
compression fails the handshake.

Example: wsbox bench broadcast --url ws://127.0.0.1:8080/broadcast -n 1000 -r 500 -s 1KiB";

/// Options every scenario has.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// The WebSocket URL (ws:// only). Default: ws://127.0.0.1:8080/echo,
    /// for `broadcast` ws://127.0.0.1:8080/broadcast.
    #[arg(long)]
    pub url: Option<String>,
    /// Print the results as one JSON object on the last line.
    #[arg(long)]
    pub json: bool,
    /// Worker threads of the client (1 = a single-threaded runtime, the
    /// cheapest when the client is pinned to one core).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: u16,
    /// No live progress line on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// Label copied into the JSON output (e.g. the peer's name).
    #[arg(long)]
    pub label: Option<String>,
}

/// `wsbox bench broadcast`.
#[derive(Args, Debug, Clone)]
pub struct BroadcastArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Subscribers: connections that only receive.
    #[arg(long, short = 'n', default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub subscribers: u32,
    /// Publishers: connections that send (what they receive is not counted).
    #[arg(long, short = 'p', default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=255))]
    pub publishers: u32,
    /// Messages published per second, all publishers together (open loop:
    /// a publisher that falls behind catches up in bursts).
    #[arg(long, short = 'r', default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate: u32,
    /// Size of each message (bytes, or with a unit: 1KiB); at least 16
    /// (publisher id, sequence number and timestamp).
    #[arg(long, short = 's', default_value = "20", value_parser = parse_broadcast_size)]
    pub size: usize,
    /// Measured duration.
    #[arg(long, short = 'd', default_value = "5s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Warm-up (publishing, not counted) before the measurement.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Connection attempts in progress at once while opening subscribers.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub open_concurrency: u32,
    /// Subscribers offer permessage-deflate (wsbox's own client engine) and
    /// messages are compressible (JSON-like after the 16-byte header).
    #[arg(long)]
    pub compress: bool,
    /// With --compress: also ask for `server_no_context_takeover`, so the
    /// server may compress each message once for all subscribers.
    #[arg(long, requires = "compress")]
    pub server_no_context_takeover: bool,
}

/// `wsbox bench echo`.
#[derive(Args, Debug, Clone)]
pub struct EchoArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Connections, all open at once.
    #[arg(long, short = 'c', default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub connections: u32,
    /// Messages in flight per connection (sent, echo not yet received).
    #[arg(long, short = 'k', default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub in_flight: u32,
    /// Payload size of each message (bytes, or with a unit: 4KiB, 64KiB).
    #[arg(long, short = 's', default_value = "20", value_parser = parse_size)]
    pub size: usize,
    /// Measured duration (e.g. 10s, 500ms, 1m); the run stops earlier when
    /// --messages is reached.
    #[arg(long, short = 'd', default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Stop after this many measured messages (echoes received).
    #[arg(long)]
    pub messages: Option<u64>,
    /// Warm-up before the measurement starts; its messages are not counted.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Send binary messages (default: text).
    #[arg(long)]
    pub binary: bool,
    /// Negotiate permessage-deflate and send a compressible JSON-like text
    /// payload. The client is then wsbox's own protocol engine (client
    /// role; tokio-tungstenite has no deflate); a server that declines
    /// compression fails the handshake.
    #[arg(long, conflicts_with = "binary")]
    pub compress: bool,
}

/// `wsbox bench connect`.
#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Concurrent workers, each opening connections one after another.
    #[arg(long, short = 'c', default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub connections: u32,
    /// Payload size of the one message each connection echoes.
    #[arg(long, short = 's', default_value = "20", value_parser = parse_size)]
    pub size: usize,
    /// Measured duration.
    #[arg(long, short = 'd', default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Stop after this many measured connections.
    #[arg(long)]
    pub messages: Option<u64>,
    /// Warm-up before the measurement starts.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Send a binary message (default: text).
    #[arg(long)]
    pub binary: bool,
}

/// `wsbox bench idle`.
#[derive(Args, Debug, Clone)]
pub struct IdleArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Connections to open and hold.
    #[arg(long, short = 'c', default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub connections: u32,
    /// How long to hold them once all are open.
    #[arg(long, short = 'd', default_value = "5s", value_parser = parse_duration)]
    pub duration: Duration,
    /// The server's PID: its VmRSS is read before and after opening.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Connection attempts in progress at once while opening.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub open_concurrency: u32,
    /// Wait this long after opening before reading the RSS (lets the server
    /// finish its bookkeeping).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub settle: Duration,
    /// Payload size of the one round trip each connection makes once open
    /// (0: none).
    #[arg(long, short = 's', default_value = "20", value_parser = parse_size)]
    pub size: usize,
}

fn parse_broadcast_size(s: &str) -> Result<usize, String> {
    let n = parse_size(s)?;
    if n < broadcast::MIN_SIZE {
        return Err(format!(
            "`{s}`: at least {} bytes (publisher id, sequence number and timestamp)",
            broadcast::MIN_SIZE
        ));
    }
    Ok(n)
}

fn parse_size(s: &str) -> Result<usize, String> {
    let n = wsbox_io::units::parse_size_text(s)?;
    match usize::try_from(n) {
        Ok(n) if n <= 64 << 20 => Ok(n),
        _ => Err(format!("`{s}`: at most 64MiB")),
    }
}

/// Parses `500ms`, `10s`, `2m`, or plain seconds (`2.5`), up to an hour.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = wsbox_io::units::parse_duration_text(s)?;
    if d > MAX_DURATION {
        return Err(format!("`{s}`: durations go from 0 to 1h"));
    }
    Ok(d)
}

/// Runs `wsbox bench` to completion and prints its report.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let common = match &args.scenario {
        Scenario::Echo(a) => &a.common,
        Scenario::Connect(a) => &a.common,
        Scenario::Idle(a) => &a.common,
        Scenario::Broadcast(a) => &a.common,
    };
    let default_url = match &args.scenario {
        Scenario::Broadcast(_) => "ws://127.0.0.1:8080/broadcast",
        _ => "ws://127.0.0.1:8080/echo",
    };
    let target = client::Target::parse(common.url.as_deref().unwrap_or(default_url))?;
    let rt = if common.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::from(common.threads))
            .enable_all()
            .build()
    }
    .context("starting the tokio runtime")?;
    let json = common.json;
    let report = rt.block_on(async {
        match args.scenario {
            Scenario::Echo(a) => echo::run(target, a).await,
            Scenario::Connect(a) => connect::run(target, a).await,
            Scenario::Idle(a) => idle::run(target, a).await,
            Scenario::Broadcast(a) => broadcast::run(target, a).await,
        }
    })?;
    report.print(json);
    if report.fatal() {
        bail!("no connection could be used; see errors above");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("2h").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("9999m").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("20"), Ok(20));
        assert!(parse_size("1GiB").is_err());
        assert_eq!(parse_broadcast_size("16"), Ok(16));
        assert!(parse_broadcast_size("15").is_err());
    }
}
