//! How much a handler may log: lines and bytes per second for each
//! connection (its `log` calls and its stdout/stderr lines together), for
//! its tenant (when the operator sets a rate) and for the whole process,
//! so a flooding handler can neither fill the disk nor slow the host. Lines
//! over a budget are dropped and counted; the count is reported with the
//! next line that gets through, and when the connection ends.

use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The longest guest log line kept; longer ones are cut with a marker.
pub const MAX_LOG_LINE: usize = 4096;
/// What the whole process logs for all handlers together.
const PROCESS_LINES_PER_SECOND: f64 = 2000.0;
const PROCESS_LINES_BURST: f64 = 4000.0;
const PROCESS_BYTES_PER_SECOND: f64 = 4.0 * 1024.0 * 1024.0;
const PROCESS_BYTES_BURST: f64 = 8.0 * 1024.0 * 1024.0;
/// The smallest bursts a connection or tenant gets, whatever its rates.
const MIN_BURST: f64 = 100.0;
const MIN_BYTES_BURST: f64 = 64.0 * 1024.0;

/// A token bucket: `rate` tokens per second, up to `burst` saved up.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl Bucket {
    const fn new(rate: f64, burst: f64) -> Bucket {
        Bucket {
            rate,
            burst,
            tokens: burst,
            last: None,
        }
    }

    fn refill(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let refill = now.saturating_duration_since(last).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + refill).min(self.burst);
        }
        self.last = Some(now);
    }

    /// Whether `n` tokens are there (a take larger than the burst needs a
    /// full bucket).
    fn has(&self, n: f64) -> bool {
        self.tokens >= n.min(self.burst)
    }

    fn spend(&mut self, n: f64) {
        self.tokens -= n.min(self.burst);
    }

    #[cfg(test)]
    fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        let ok = self.has(1.0);
        if ok {
            self.spend(1.0);
        }
        ok
    }
}

/// Lines and bytes per second; either may be unbounded.
#[derive(Debug, Default)]
struct Rate {
    lines: Option<Bucket>,
    bytes: Option<Bucket>,
}

impl Rate {
    fn new(lines_per_second: Option<f64>, bytes_per_second: Option<f64>) -> Rate {
        Rate {
            lines: lines_per_second.map(|r| Bucket::new(r, r.max(MIN_BURST))),
            bytes: bytes_per_second.map(|r| Bucket::new(r, r.max(MIN_BYTES_BURST))),
        }
    }

    /// Takes one line of `len` bytes if both budgets have room for it, and
    /// nothing otherwise.
    fn take(&mut self, now: Instant, len: usize) -> bool {
        let len = len as f64;
        for b in [&mut self.lines, &mut self.bytes].into_iter().flatten() {
            b.refill(now);
        }
        let ok = self.lines.as_ref().is_none_or(|b| b.has(1.0))
            && self.bytes.as_ref().is_none_or(|b| b.has(len));
        if ok {
            if let Some(b) = &mut self.lines {
                b.spend(1.0);
            }
            if let Some(b) = &mut self.bytes {
                b.spend(len);
            }
        }
        ok
    }
}

static PROCESS: Mutex<Rate> = Mutex::new(Rate {
    lines: Some(Bucket::new(PROCESS_LINES_PER_SECOND, PROCESS_LINES_BURST)),
    bytes: Some(Bucket::new(PROCESS_BYTES_PER_SECOND, PROCESS_BYTES_BURST)),
});

/// Whether the process-wide budget has room for one more line about a
/// handler (also used for the host's own reports of handler failures).
pub fn process_allows(now: Instant) -> bool {
    process_allows_bytes(now, 256)
}

fn process_allows_bytes(now: Instant, len: usize) -> bool {
    PROCESS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take(now, len)
}

/// A tenant's log rate, shared by all its connections; no limit until one
/// is set.
#[derive(Debug, Default)]
pub struct SharedLogRate {
    rate: Mutex<Rate>,
}

impl SharedLogRate {
    /// Sets (or, with `None`, lifts) the rates.
    pub fn set(&self, lines_per_second: Option<u32>, bytes_per_second: Option<u64>) {
        *self.rate.lock().unwrap_or_else(|e| e.into_inner()) = Rate::new(
            lines_per_second.map(|n| f64::from(n.max(1))),
            bytes_per_second.map(|n| n.max(1) as f64),
        );
    }

    fn allows(&self, now: Instant, len: usize) -> bool {
        self.rate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(now, len)
    }
}

/// One connection's log budget.
#[derive(Debug)]
pub struct LogBudget {
    inner: Mutex<(Rate, u64)>,
    tenant: Option<Arc<SharedLogRate>>,
}

impl LogBudget {
    /// `lines_per_second` and `bytes_per_second` for this connection (at
    /// least 1 is kept), within its tenant's rates, if any.
    pub fn new(
        lines_per_second: u32,
        bytes_per_second: u64,
        tenant: Option<Arc<SharedLogRate>>,
    ) -> LogBudget {
        let rate = Rate::new(
            Some(f64::from(lines_per_second.max(1))),
            Some(bytes_per_second.max(1) as f64),
        );
        LogBudget {
            inner: Mutex::new((rate, 0)),
            tenant,
        }
    }

    /// Admits one line of `len` bytes (as it will be written, after any
    /// cut): `Some(n)` with the number of lines dropped since the last
    /// admitted one, or `None` when this one must be dropped.
    pub fn admit(&self, len: usize) -> Option<u64> {
        let len = len.min(MAX_LOG_LINE);
        let now = Instant::now();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (rate, dropped) = &mut *inner;
        if rate.take(now, len)
            && self.tenant.as_ref().is_none_or(|t| t.allows(now, len))
            && process_allows_bytes(now, len)
        {
            Some(std::mem::take(dropped))
        } else {
            *dropped += 1;
            None
        }
    }

    /// Lines dropped and not yet reported; resets the count.
    pub fn take_dropped(&self) -> u64 {
        std::mem::take(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()).1)
    }
}

/// Cuts `line` to [`MAX_LOG_LINE`] bytes with a marker.
pub fn truncate_line(line: &str) -> std::borrow::Cow<'_, str> {
    cut(line, MAX_LOG_LINE)
}

/// Cuts `text` to at most `max` bytes (at a character boundary) with a
/// marker saying how long it was.
pub fn cut(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let end = text.floor_char_boundary(max);
    format!("{}… [cut: {} bytes in all]", &text[..end], text.len()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_tenants_rate_is_shared_by_its_connections() {
        let tenant = Arc::new(SharedLogRate::default());
        tenant.set(Some(1), None);
        let a = LogBudget::new(1000, 1 << 30, Some(Arc::clone(&tenant)));
        let b = LogBudget::new(1000, 1 << 30, Some(Arc::clone(&tenant)));
        let admitted = (0..150).filter(|_| a.admit(10).is_some()).count()
            + (0..150).filter(|_| b.admit(10).is_some()).count();
        assert!((100..=102).contains(&admitted), "{admitted}");
        tenant.set(None, None);
        assert!(b.admit(10).is_some(), "lifted");
    }

    #[test]
    fn a_bucket_refills_at_its_rate_up_to_its_burst() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10.0, 3.0);
        assert!(b.take(t0) && b.take(t0) && b.take(t0));
        assert!(!b.take(t0), "burst spent");
        assert!(
            b.take(t0 + Duration::from_millis(100)),
            "one token after 0.1 s"
        );
        assert!(!b.take(t0 + Duration::from_millis(100)));
        // A long pause refills to the burst only.
        let later = t0 + Duration::from_secs(60);
        assert!(b.take(later) && b.take(later) && b.take(later));
        assert!(!b.take(later));
    }

    #[test]
    fn drops_are_counted_and_reported_once() {
        let budget = LogBudget::new(1, 1 << 30, None);
        let admitted = (0..150).filter(|_| budget.admit(10).is_some()).count();
        assert!((100..=101).contains(&admitted), "{admitted}");
        assert_eq!(budget.take_dropped(), 150 - admitted as u64);
        assert_eq!(budget.take_dropped(), 0);
    }

    #[test]
    fn bytes_are_budgeted_beside_lines() {
        // 64 KiB of burst at 1 KiB/s: sixteen 4 KiB lines, then none.
        let budget = LogBudget::new(1000, 1024, None);
        let admitted = (0..40)
            .filter(|_| budget.admit(MAX_LOG_LINE).is_some())
            .count();
        assert_eq!(admitted, 16);
        // A line longer than the cut is charged as cut.
        let budget = LogBudget::new(1000, 1024, None);
        assert!(budget.admit(1 << 30).is_some());
        let tenant = Arc::new(SharedLogRate::default());
        tenant.set(None, Some(1));
        let a = LogBudget::new(1000, 1 << 30, Some(Arc::clone(&tenant)));
        let b = LogBudget::new(1000, 1 << 30, Some(tenant));
        let admitted = (0..20).filter(|_| a.admit(MAX_LOG_LINE).is_some()).count()
            + (0..20).filter(|_| b.admit(MAX_LOG_LINE).is_some()).count();
        assert_eq!(admitted, 16, "the tenant's bytes are shared");
    }

    #[test]
    fn long_lines_are_cut_at_a_character_boundary() {
        assert_eq!(truncate_line("short"), "short");
        let long = "é".repeat(MAX_LOG_LINE); // 2 bytes each
        let cut = truncate_line(&long);
        assert!(cut.len() < MAX_LOG_LINE + 64, "{}", cut.len());
        assert!(cut.ends_with(&format!("[cut: {} bytes in all]", long.len())));
    }
}
