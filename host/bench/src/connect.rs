//! The `connect` scenario: connection churn. Each of N workers opens a
//! connection (TCP + opening handshake), makes one verified round trip,
//! closes it with the closing handshake, and starts over. The latency
//! reported is that of the whole cycle.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::task::JoinSet;

use super::ConnectArgs;
use super::client::{self, Target};
use super::payload::{Kind, Payload};
use super::report::{Report, Shared, drive_phases};

/// Pause after a failed attempt, so a dead server is not hammered.
const FAILURE_BACKOFF: Duration = Duration::from_millis(5);

pub async fn run(target: Target, args: ConnectArgs) -> anyhow::Result<Report> {
    let kind = if args.binary {
        Kind::Binary
    } else {
        Kind::Text
    };
    let payload = Arc::new(Payload::new(kind, args.size));
    let shared = Arc::new(Shared::new(args.messages));
    let config = client::ws_config(args.size);
    let target = Arc::new(target);

    let mut tasks = JoinSet::new();
    for worker in 0..args.connections {
        let (target, payload, shared) = (
            Arc::clone(&target),
            Arc::clone(&payload),
            Arc::clone(&shared),
        );
        tasks.spawn(async move {
            let mut samples = Vec::with_capacity(256);
            let mut seq = u64::from(worker) << 40;
            while !shared.stopping() {
                let t0 = Instant::now();
                let this_seq = seq;
                seq += 1;
                let cycle = async {
                    let mut ws = client::open(&target, config).await?;
                    shared
                        .opened
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    client::round_trip(&mut ws, &payload, this_seq).await?;
                    client::close(ws).await
                };
                match cycle.await {
                    Ok(()) => {
                        if shared.event(payload.size()) {
                            samples.push(t0.elapsed().as_nanos() as u64);
                            if samples.len() >= 256 {
                                shared.record_latencies(&mut samples);
                            }
                        }
                    }
                    Err(kind) => {
                        shared.error(kind);
                        tokio::time::sleep(FAILURE_BACKOFF).await;
                    }
                }
            }
            shared.record_latencies(&mut samples);
        });
    }
    drive_phases(
        &shared,
        "connect",
        args.warmup,
        args.duration,
        args.common.quiet,
    )
    .await;
    // A cycle in progress finishes within its own timeouts.
    let bound = client::CONNECT_TIMEOUT
        + client::ROUND_TRIP_TIMEOUT
        + client::CLOSE_TIMEOUT
        + Duration::from_secs(1);
    let all_done = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(bound, all_done).await.is_err() {
        tasks.abort_all();
    }

    let mut report = Report::new("connect", args.common.label.as_deref(), &shared);
    let opened = shared.opened.load(std::sync::atomic::Ordering::Relaxed);
    report.no_connection = opened == 0;
    let rate = report.fields["events_per_s"].clone();
    report.set("connections_per_s", rate);
    report.set("url", json!(target.url));
    report.set("workers", json!(args.connections));
    report.set("size", json!(args.size));
    report.set("opened_total", json!(opened));
    report.set("warmup_s", json!(args.warmup.as_secs_f64()));
    let f = |k: &str| report.fields[k].as_f64().unwrap_or(0.0);
    report.text.push(format!(
        "connect {}: {} workers, each: open, one {} B round trip, close",
        target.url, args.connections, args.size
    ));
    report.text.push(format!(
        "  measured        {:.2} s, {} connections (after {:.1} s warm-up)",
        f("measured_s"),
        report.fields["events"],
        args.warmup.as_secs_f64()
    ));
    report.text.push(format!(
        "  throughput      {:.0} connections/s (full cycles)",
        f("connections_per_s")
    ));
    Ok(report)
}
