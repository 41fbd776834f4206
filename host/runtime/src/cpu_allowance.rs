//! A connection's CPU time per second (`cpu_time_per_second`): a token
//! bucket refilled at that rate and holding at most one call's budget.
//! Each call is charged what it used; a connection in debt waits before its
//! next call until the debt is repaid. The socket is not read meanwhile, so
//! a client sending work faster than its allowance gets TCP backpressure,
//! and the handler is throttled, not killed, whatever the batch sizes.

use std::time::{Duration, Instant};

/// One connection's bucket.
#[derive(Debug)]
pub struct CpuAllowance {
    /// Refill rate: CPU seconds per wall second.
    rate: f64,
    /// The most that can be saved up, in seconds.
    capacity: f64,
    /// Seconds available now; negative while in debt.
    balance: f64,
    at: Instant,
}

impl CpuAllowance {
    /// A full bucket refilled at `per_second` of CPU time per second,
    /// holding at most `burst`.
    pub fn new(per_second: Duration, burst: Duration, now: Instant) -> CpuAllowance {
        let capacity = burst.max(per_second).as_secs_f64();
        CpuAllowance {
            rate: per_second.as_secs_f64(),
            capacity,
            balance: capacity,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.balance = (self.balance + elapsed * self.rate).min(self.capacity);
        self.at = now;
    }

    /// Charges a call's CPU time.
    pub fn charge(&mut self, used: Duration, now: Instant) {
        self.refill(now);
        self.balance -= used.as_secs_f64();
    }

    /// How long the next call must wait for the debt to be repaid.
    pub fn wait(&mut self, now: Instant) -> Option<Duration> {
        self.refill(now);
        // A nanosecond's rounding is no debt.
        if self.balance > -1e-9 || self.rate <= 0.0 {
            return None;
        }
        Some(Duration::from_secs_f64(-self.balance / self.rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_burst_is_free_then_calls_wait_for_the_debt() {
        let t0 = Instant::now();
        let mut a = CpuAllowance::new(250 * MS, 500 * MS, t0);
        a.charge(400 * MS, t0);
        assert_eq!(a.wait(t0), None, "within the burst");
        a.charge(400 * MS, t0);
        // 300 ms in debt at 250 ms/s: 1.2 s.
        let wait = a.wait(t0).unwrap();
        assert!((wait.as_secs_f64() - 1.2).abs() < 1e-6, "{wait:?}");
        assert_eq!(a.wait(t0 + Duration::from_millis(1200)), None);
    }

    #[test]
    fn savings_are_capped_at_the_burst() {
        let t0 = Instant::now();
        let mut a = CpuAllowance::new(250 * MS, 500 * MS, t0);
        let later = t0 + Duration::from_secs(60);
        a.charge(600 * MS, later);
        let wait = a.wait(later).unwrap();
        assert!((wait.as_secs_f64() - 0.4).abs() < 1e-6, "{wait:?}");
    }

    #[test]
    fn many_small_calls_add_up() {
        let t0 = Instant::now();
        let mut a = CpuAllowance::new(100 * MS, 100 * MS, t0);
        for _ in 0..20 {
            a.charge(10 * MS, t0);
        }
        let wait = a.wait(t0).unwrap();
        assert!((wait.as_secs_f64() - 1.0).abs() < 1e-6, "{wait:?}");
    }
}
