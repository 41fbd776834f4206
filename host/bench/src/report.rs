//! Counters shared by a run's connections, the measurement phases, the live
//! progress line and the final report (text and JSON).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Map, Value, json};

use super::client::ErrorKind;

/// Lowest and highest latency the histogram tracks, in nanoseconds; values
/// outside are clamped (a 60 s latency is a failure anyway).
const HIST_LOW_NS: u64 = 100;
const HIST_HIGH_NS: u64 = 60_000_000_000;

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Load runs, nothing is counted.
    Warmup = 0,
    /// Load runs and is counted.
    Measure = 1,
    /// No new load; connections finish what is in flight and close.
    Stop = 2,
}

/// What all connections of a run share.
pub struct Shared {
    phase: AtomicU8,
    measure_start: OnceLock<Instant>,
    measure_end: OnceLock<Instant>,
    /// Stop after this many measured events (messages or connections).
    pub limit: Option<u64>,
    /// Measured events: echoes received, or connections completed.
    pub events: AtomicU64,
    /// Measured payload bytes received.
    pub bytes: AtomicU64,
    /// Connections opened (all phases).
    pub opened: AtomicU64,
    /// Events in all phases, for the progress line.
    pub all_events: AtomicU64,
    errors: [AtomicU64; ErrorKind::ALL.len()],
    histogram: Mutex<Histogram<u64>>,
    /// Measured events of each connection that has finished (echo runs).
    per_connection: Mutex<Vec<u64>>,
    /// Becomes `true` when the run stops.
    stopped: tokio::sync::watch::Sender<bool>,
}

impl Shared {
    pub fn new(limit: Option<u64>) -> Shared {
        // Constant bounds: this cannot fail.
        let histogram = Histogram::new_with_bounds(HIST_LOW_NS, HIST_HIGH_NS, 3)
            .expect("valid constant histogram bounds");
        Shared {
            phase: AtomicU8::new(Phase::Warmup as u8),
            measure_start: OnceLock::new(),
            measure_end: OnceLock::new(),
            limit,
            events: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            opened: AtomicU64::new(0),
            all_events: AtomicU64::new(0),
            errors: Default::default(),
            histogram: Mutex::new(histogram),
            per_connection: Mutex::new(Vec::new()),
            stopped: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Resolves (`wait_for(|s| *s)`) once the run stops.
    pub fn stop_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopped.subscribe()
    }

    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            0 => Phase::Warmup,
            1 => Phase::Measure,
            _ => Phase::Stop,
        }
    }

    pub fn stopping(&self) -> bool {
        self.phase() == Phase::Stop
    }

    /// Warm-up over: start counting.
    pub fn start_measuring(&self) {
        let _ = self.measure_start.set(Instant::now());
        let _ = self.phase.compare_exchange(
            Phase::Warmup as u8,
            Phase::Measure as u8,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// End of the measured window (idempotent).
    pub fn stop(&self) {
        let now = Instant::now();
        if self.phase.swap(Phase::Stop as u8, Ordering::Relaxed) != Phase::Stop as u8 {
            let _ = self.measure_end.set(now);
            self.stopped.send_replace(true);
        }
    }

    /// Length of the measured window so far (or in total, once stopped).
    pub fn measured(&self) -> Duration {
        match (self.measure_start.get(), self.measure_end.get()) {
            (Some(start), Some(end)) => end.saturating_duration_since(*start),
            (Some(start), None) => start.elapsed(),
            _ => Duration::ZERO,
        }
    }

    pub fn error(&self, kind: ErrorKind) {
        self.errors[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn errors_add(&self, kind: ErrorKind, n: u64) {
        self.errors[kind.index()].fetch_add(n, Ordering::Relaxed);
    }

    pub fn errors_total(&self) -> u64 {
        self.errors.iter().map(|e| e.load(Ordering::Relaxed)).sum()
    }

    /// Counts one completed event (an echo, a connection) of `bytes` payload
    /// bytes; returns whether it was in the measured window.
    pub fn event(&self, bytes: usize) -> bool {
        self.all_events.fetch_add(1, Ordering::Relaxed);
        if self.phase() != Phase::Measure {
            return false;
        }
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        let n = self.events.fetch_add(1, Ordering::Relaxed) + 1;
        if self.limit == Some(n) {
            self.stop();
        }
        true
    }

    /// One connection's count of measured events, once it is done.
    pub fn record_connection_events(&self, n: u64) {
        if let Ok(mut all) = self.per_connection.lock() {
            all.push(n);
        }
    }

    /// How evenly the measured events were spread over the connections:
    /// the least, median and most any connection got, and Jain's fairness
    /// index ((sum x)^2 / (n * sum x^2): 1 when all got the same, 1/n when
    /// one got everything). `None` before any connection reported.
    pub fn connection_spread(&self) -> Option<Value> {
        let mut all = self.per_connection.lock().ok()?.clone();
        if all.is_empty() {
            return None;
        }
        all.sort_unstable();
        let sum: f64 = all.iter().map(|&x| x as f64).sum();
        let squares: f64 = all.iter().map(|&x| (x as f64) * (x as f64)).sum();
        let jain = if squares > 0.0 {
            sum * sum / (all.len() as f64 * squares)
        } else {
            1.0
        };
        Some(json!({
            "min": all[0],
            "p50": all[all.len() / 2],
            "max": all[all.len() - 1],
            "jain": round3(jain),
        }))
    }

    /// Adds latencies (ns) recorded by one connection.
    pub fn record_latencies(&self, samples: &mut Vec<u64>) {
        if samples.is_empty() {
            return;
        }
        if let Ok(mut h) = self.histogram.lock() {
            for &ns in samples.iter() {
                h.saturating_record(ns.clamp(HIST_LOW_NS, HIST_HIGH_NS));
            }
        }
        samples.clear();
    }

    fn latency_json(&self) -> Value {
        let Ok(h) = self.histogram.lock() else {
            return Value::Null;
        };
        if h.is_empty() {
            return Value::Null;
        }
        let us = |ns: u64| (ns as f64 / 1000.0 * 10.0).round() / 10.0;
        json!({
            "samples": h.len(),
            "mean": us(h.mean() as u64),
            "p50": us(h.value_at_quantile(0.50)),
            "p90": us(h.value_at_quantile(0.90)),
            "p99": us(h.value_at_quantile(0.99)),
            "p99_9": us(h.value_at_quantile(0.999)),
            "max": us(h.max()),
        })
    }

    /// A latency percentile in µs so far, for the progress line.
    fn p50_us(&self) -> Option<f64> {
        let h = self.histogram.lock().ok()?;
        (!h.is_empty()).then(|| h.value_at_quantile(0.5) as f64 / 1000.0)
    }

    fn errors_json(&self) -> Map<String, Value> {
        ErrorKind::ALL
            .iter()
            .filter_map(|k| {
                let n = self.errors[k.index()].load(Ordering::Relaxed);
                (n > 0).then(|| (k.name().to_string(), json!(n)))
            })
            .collect()
    }
}

/// Drives the phases (warm-up, measured window, stop) and prints the live
/// progress line on stderr until the measured window is over.
pub async fn drive_phases(
    shared: &Shared,
    scenario: &str,
    warmup: Duration,
    duration: Duration,
    quiet: bool,
) {
    let progress = Progress::new(scenario, quiet);
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut last_report = Instant::now();
    let mut last_events = 0u64;
    loop {
        tick.tick().await;
        let now = Instant::now();
        match shared.phase() {
            Phase::Warmup if now.duration_since(start) >= warmup => shared.start_measuring(),
            Phase::Measure if shared.measured() >= duration => shared.stop(),
            Phase::Stop => break,
            _ => {}
        }
        if now.duration_since(last_report) >= Duration::from_secs(1) {
            let events = shared.all_events.load(Ordering::Relaxed);
            let rate =
                (events - last_events) as f64 / now.duration_since(last_report).as_secs_f64();
            progress.line(&format!(
                "{:>5.1}s {:<7} {:>10.0}/s  p50 {}  errors {}",
                now.duration_since(start).as_secs_f64(),
                match shared.phase() {
                    Phase::Warmup => "warm-up",
                    Phase::Measure => "measure",
                    Phase::Stop => "stop",
                },
                rate,
                shared
                    .p50_us()
                    .map_or("-".to_string(), |p| format!("{p:.0}µs")),
                shared.errors_total(),
            ));
            last_report = now;
            last_events = events;
        }
    }
    progress.done();
}

/// The live progress line on stderr: rewritten in place on a terminal, one
/// line per update otherwise (logs).
pub struct Progress {
    prefix: String,
    quiet: bool,
    tty: bool,
}

impl Progress {
    pub fn new(scenario: &str, quiet: bool) -> Progress {
        Progress {
            prefix: format!("[bench {scenario}]"),
            quiet,
            tty: std::io::stderr().is_terminal(),
        }
    }

    pub fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{} {text}", self.prefix);
        } else {
            let _ = writeln!(err, "{} {text}", self.prefix);
        }
        let _ = err.flush();
    }

    pub fn done(&self) {
        if self.tty && !self.quiet {
            let _ = writeln!(std::io::stderr());
        }
    }
}

/// The outcome of a run.
pub struct Report {
    /// Scenario-specific fields, in order (numbers, strings).
    pub fields: Map<String, Value>,
    /// Lines of the human-readable report.
    pub text: Vec<String>,
    /// Nothing could be measured (every connection failed).
    pub no_connection: bool,
}

impl Report {
    /// The common part of every report: counts, rates, latency, errors.
    pub fn new(scenario: &str, label: Option<&str>, shared: &Shared) -> Report {
        let secs = shared.measured().as_secs_f64();
        let events = shared.events.load(Ordering::Relaxed);
        let bytes = shared.bytes.load(Ordering::Relaxed);
        let mut fields = Map::new();
        fields.insert("scenario".into(), json!(scenario));
        if let Some(label) = label {
            fields.insert("label".into(), json!(label));
        }
        fields.insert("measured_s".into(), json!(round3(secs)));
        fields.insert("events".into(), json!(events));
        let rate = if secs > 0.0 {
            events as f64 / secs
        } else {
            0.0
        };
        fields.insert("events_per_s".into(), json!(rate.round()));
        fields.insert(
            "mb_per_s".into(),
            json!(round3(if secs > 0.0 {
                bytes as f64 / secs / 1e6
            } else {
                0.0
            })),
        );
        fields.insert("latency_us".into(), shared.latency_json());
        fields.insert("errors".into(), json!(shared.errors_total()));
        fields.insert("errors_by_kind".into(), Value::Object(shared.errors_json()));
        Report {
            fields,
            text: Vec::new(),
            no_connection: false,
        }
    }

    pub fn set(&mut self, key: &str, value: Value) {
        self.fields.insert(key.to_string(), value);
    }

    /// Whether the run failed as a whole.
    pub fn fatal(&self) -> bool {
        self.no_connection
    }

    /// The text report on stdout; with `json`, then one JSON line (last).
    pub fn print(&self, json: bool) {
        let mut out = std::io::stdout().lock();
        for line in &self.text {
            let _ = writeln!(out, "{line}");
        }
        if let Some(Value::Object(lat)) = self.fields.get("latency_us") {
            let get = |k: &str| lat.get(k).and_then(Value::as_f64).unwrap_or(0.0);
            let _ = writeln!(
                out,
                "  latency (µs)    p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  (mean {:.1}, {} samples)",
                get("p50"),
                get("p90"),
                get("p99"),
                get("p99_9"),
                get("max"),
                get("mean"),
                lat.get("samples").and_then(Value::as_u64).unwrap_or(0)
            );
        }
        let errors = self
            .fields
            .get("errors")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let by_kind = match self.fields.get("errors_by_kind") {
            Some(Value::Object(m)) if !m.is_empty() => {
                let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                format!(" ({})", parts.join(", "))
            }
            _ => String::new(),
        };
        let _ = writeln!(out, "  errors          {errors}{by_kind}");
        if json {
            let _ = writeln!(out, "{}", Value::Object(self.fields.clone()));
        }
        let _ = out.flush();
    }
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_and_limit() {
        let s = Shared::new(Some(2));
        assert!(!s.event(10), "warm-up is not counted");
        s.start_measuring();
        assert!(s.event(10));
        assert_eq!(s.phase(), Phase::Measure);
        assert!(s.event(10));
        assert_eq!(s.phase(), Phase::Stop, "the limit stops the run");
        assert!(!s.event(10));
        assert_eq!(s.events.load(Ordering::Relaxed), 2);
        assert_eq!(s.bytes.load(Ordering::Relaxed), 20);
        assert_eq!(s.all_events.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn connection_spread_measures_fairness() {
        let s = Shared::new(None);
        assert!(s.connection_spread().is_none(), "nothing reported yet");
        for n in [10, 10, 10, 10] {
            s.record_connection_events(n);
        }
        let even = s.connection_spread().unwrap();
        assert_eq!(even["jain"], json!(1.0));
        assert_eq!(
            (even["min"].clone(), even["max"].clone()),
            (json!(10), json!(10))
        );
        let s = Shared::new(None);
        for n in [40, 0, 0, 0] {
            s.record_connection_events(n);
        }
        let skewed = s.connection_spread().unwrap();
        assert_eq!(skewed["jain"], json!(0.25), "one of four got everything");
        assert_eq!(skewed["p50"], json!(0));
        assert_eq!(skewed["max"], json!(40));
    }

    #[test]
    fn report_json_has_errors() {
        let s = Shared::new(None);
        s.start_measuring();
        s.error(ErrorKind::Mismatch);
        s.error(ErrorKind::Mismatch);
        s.record_latencies(&mut vec![1_000, 2_000, 3_000]);
        s.stop();
        let r = Report::new("echo", Some("x"), &s);
        assert_eq!(r.fields["errors"], json!(2));
        assert_eq!(r.fields["errors_by_kind"]["mismatch"], json!(2));
        assert_eq!(r.fields["latency_us"]["samples"], json!(3));
        assert_eq!(r.fields["label"], json!("x"));
    }
}
