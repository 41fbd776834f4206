//! The `idle` scenario: open N connections (each makes one verified round
//! trip, so the server has done its per-connection setup), hold them, and
//! report the server's resident memory per connection: VmRSS from
//! `/proc/PID/status` before opening and after (plus its memory mappings,
//! which the wasm pool uses several of per instance).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::IdleArgs;
use super::client::{self, Target};
use super::payload::{Kind, Payload};
use super::report::{Progress, Report, Shared, round3};

/// How long opening all connections may take.
const OPEN_DEADLINE: Duration = Duration::from_secs(120);

/// Memory figures of a process, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    pub rss_kib: u64,
    pub anon_kib: u64,
    pub file_kib: u64,
    pub maps: u64,
}

impl Memory {
    /// Reads `/proc/PID/status` and counts `/proc/PID/maps` lines.
    pub fn read(pid: u32) -> Option<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| -> Option<u64> {
            let line = status.lines().find(|l| l.starts_with(name))?;
            line[name.len()..]
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        };
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
            .map(|m| m.lines().count() as u64)
            .unwrap_or(0);
        Some(Memory {
            rss_kib: field("VmRSS:")?,
            anon_kib: field("RssAnon:").unwrap_or(0),
            file_kib: field("RssFile:").unwrap_or(0),
            maps,
        })
    }

    fn json(&self) -> Value {
        json!({"rss_kib": self.rss_kib, "anon_kib": self.anon_kib, "file_kib": self.file_kib, "maps": self.maps})
    }
}

pub async fn run(target: Target, args: IdleArgs) -> anyhow::Result<Report> {
    let shared = Shared::new(None);
    let n = args.connections as usize;
    let probe = (args.size > 0).then(|| Arc::new(Payload::new(Kind::Text, args.size)));
    let config = client::ws_config(args.size);
    let progress = Progress::new("idle", args.common.quiet);
    let read_memory = |pid: Option<u32>| pid.and_then(Memory::read);
    if let Some(pid) = args.pid
        && Memory::read(pid).is_none()
    {
        anyhow::bail!("cannot read /proc/{pid}/status: no such process, or no permission");
    }

    let before = read_memory(args.pid);
    let started = Instant::now();
    let target = Arc::new(target);
    let conns = client::open_many(
        n,
        args.open_concurrency as usize,
        &shared,
        OPEN_DEADLINE,
        |seq| client::open_probed(Arc::clone(&target), config, probe.clone(), seq),
        |k| progress.line(&format!("opening: {k}/{n}")),
    )
    .await;
    let open_s = started.elapsed().as_secs_f64();
    let held = conns.len();
    progress.line(&format!(
        "{held}/{n} open in {open_s:.1} s; settling {:.1} s",
        args.settle.as_secs_f64()
    ));
    tokio::time::sleep(args.settle).await;
    let after = read_memory(args.pid);

    // Hold: nothing to do but wait (the server could ping; tungstenite
    // answers when the connection is next polled, at close).
    let hold_start = Instant::now();
    while hold_start.elapsed() < args.duration {
        let left = args.duration.saturating_sub(hold_start.elapsed());
        tokio::time::sleep(left.min(Duration::from_secs(1))).await;
        progress.line(&format!(
            "holding {held} connections: {:.0}/{:.0} s",
            hold_start.elapsed().as_secs_f64(),
            args.duration.as_secs_f64()
        ));
    }
    let end = read_memory(args.pid);

    // Closing handshakes: a connection the server dropped meanwhile fails here.
    let close_started = Instant::now();
    let closed = client::close_many(conns, args.open_concurrency as usize, &shared).await;
    let close_s = close_started.elapsed().as_secs_f64();
    progress.done();

    let mut report = Report::new("idle", args.common.label.as_deref(), &shared);
    report.no_connection = held == 0;
    // The generic throughput fields mean nothing here.
    for k in [
        "measured_s",
        "events",
        "events_per_s",
        "mb_per_s",
        "latency_us",
    ] {
        report.fields.remove(k);
    }
    report.set("url", json!(target.url));
    report.set("connections", json!(n));
    report.set("held", json!(held));
    report.set("closed_cleanly", json!(closed));
    report.set("open_s", json!(round3(open_s)));
    let open_rate = if open_s > 0.0 {
        held as f64 / open_s
    } else {
        0.0
    };
    report.set("connections_per_s", json!(open_rate.round()));
    report.set("close_s", json!(round3(close_s)));
    report.set("hold_s", json!(args.duration.as_secs_f64()));
    report.text.push(format!(
        "idle {}: {held}/{n} connections opened in {open_s:.2} s ({open_rate:.0}/s), held {:.1} s, {closed} closed cleanly in {close_s:.2} s",
        target.url,
        args.duration.as_secs_f64()
    ));
    if let (Some(pid), Some(b), Some(a)) = (args.pid, before, after) {
        let per_conn = |x: u64, y: u64| {
            if held > 0 {
                (x as f64 - y as f64) / held as f64
            } else {
                0.0
            }
        };
        let rss_per = per_conn(a.rss_kib, b.rss_kib);
        report.set("pid", json!(pid));
        report.set("memory_before", b.json());
        report.set("memory_after", a.json());
        if let Some(e) = end {
            report.set("memory_end", e.json());
        }
        report.set("rss_per_connection_kib", json!(round3(rss_per)));
        report.set(
            "anon_per_connection_kib",
            json!(round3(per_conn(a.anon_kib, b.anon_kib))),
        );
        report.set(
            "maps_per_connection",
            json!(round3(per_conn(a.maps, b.maps))),
        );
        report.text.push(format!(
            "  server RSS      {} KiB -> {} KiB: {rss_per:.1} KiB per connection (anon {:.1} KiB); maps {} -> {}",
            b.rss_kib,
            a.rss_kib,
            per_conn(a.anon_kib, b.anon_kib),
            b.maps,
            a.maps
        ));
    }
    Ok(report)
}
