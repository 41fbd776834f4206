//! How much a handler may log: a token bucket per connection (its `log`
//! calls and its stdout/stderr lines together) and one for the whole
//! process, so a flooding handler can neither fill the disk nor slow the
//! host. Lines over the budget are dropped and counted; the count is
//! reported with the next line that gets through, and when the connection
//! ends.

use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The longest guest log line kept; longer ones are cut with a marker.
pub const MAX_LOG_LINE: usize = 4096;
/// Lines per second the whole process logs for all handlers together.
const PROCESS_LINES_PER_SECOND: f64 = 2000.0;
const PROCESS_BURST: f64 = 4000.0;
/// The smallest burst a connection gets, whatever its rate.
const MIN_BURST: f64 = 100.0;

/// A token bucket: `rate` lines per second, up to `burst` saved up.
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

    fn take(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last {
            let refill = now.saturating_duration_since(last).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + refill).min(self.burst);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

static PROCESS: Mutex<Bucket> = Mutex::new(Bucket::new(PROCESS_LINES_PER_SECOND, PROCESS_BURST));

/// Whether the process-wide budget has room for one more line about a
/// handler (also used for the host's own reports of handler failures).
pub fn process_allows(now: Instant) -> bool {
    PROCESS.lock().unwrap_or_else(|e| e.into_inner()).take(now)
}

/// A tenant's log lines per second, shared by all its connections; no
/// limit until one is set.
#[derive(Debug, Default)]
pub struct SharedLogRate {
    bucket: Mutex<Option<Bucket>>,
}

impl SharedLogRate {
    /// Sets (or, with `None`, lifts) the rate.
    pub fn set(&self, lines_per_second: Option<u32>) {
        *self.bucket.lock().unwrap_or_else(|e| e.into_inner()) = lines_per_second.map(|n| {
            let rate = f64::from(n.max(1));
            Bucket::new(rate, rate.max(MIN_BURST))
        });
    }

    fn allows(&self, now: Instant) -> bool {
        self.bucket
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
            .is_none_or(|b| b.take(now))
    }
}

/// One connection's log budget.
#[derive(Debug)]
pub struct LogBudget {
    inner: Mutex<(Bucket, u64)>,
    tenant: Option<Arc<SharedLogRate>>,
}

impl LogBudget {
    /// `lines_per_second` for this connection (at least 1 is kept), within
    /// its tenant's rate, if any.
    pub fn new(lines_per_second: u32, tenant: Option<Arc<SharedLogRate>>) -> LogBudget {
        let rate = f64::from(lines_per_second.max(1));
        LogBudget {
            inner: Mutex::new((Bucket::new(rate, rate.max(MIN_BURST)), 0)),
            tenant,
        }
    }

    /// Admits one line: `Some(n)` with the number of lines dropped since the
    /// last admitted one, or `None` when this one must be dropped.
    pub fn admit(&self) -> Option<u64> {
        let now = Instant::now();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (bucket, dropped) = &mut *inner;
        if bucket.take(now)
            && self.tenant.as_ref().is_none_or(|t| t.allows(now))
            && process_allows(now)
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
        tenant.set(Some(1));
        let a = LogBudget::new(1000, Some(Arc::clone(&tenant)));
        let b = LogBudget::new(1000, Some(Arc::clone(&tenant)));
        let admitted = (0..150).filter(|_| a.admit().is_some()).count()
            + (0..150).filter(|_| b.admit().is_some()).count();
        assert!((100..=102).contains(&admitted), "{admitted}");
        tenant.set(None);
        assert!(b.admit().is_some(), "lifted");
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
        let budget = LogBudget::new(1, None);
        let admitted = (0..150).filter(|_| budget.admit().is_some()).count();
        assert!((100..=101).contains(&admitted), "{admitted}");
        assert_eq!(budget.take_dropped(), 150 - admitted as u64);
        assert_eq!(budget.take_dropped(), 0);
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
