//! The clocks a handler sees, coarsened to a route's `clock_resolution`:
//! handlers of different tenants share CPU caches, and a precise clock is
//! what cache-timing attacks measure with (browsers and Cloudflare Workers
//! coarsen theirs for the same reason).

use std::time::{Duration, Instant, SystemTime};

use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

/// Rounds `t` down to a multiple of `step` (nanoseconds; 0 or 1 = as is).
fn floor(t: u128, step: u128) -> u128 {
    if step <= 1 { t } else { t - t % step }
}

/// `wasi:clocks/wall-clock`, to the resolution given.
pub struct CoarseWallClock {
    pub resolution: Duration,
}

impl HostWallClock for CoarseWallClock {
    fn resolution(&self) -> Duration {
        self.resolution.max(Duration::from_nanos(1))
    }

    fn now(&self) -> Duration {
        let since_epoch = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let nanos = floor(since_epoch.as_nanos(), self.resolution.as_nanos());
        Duration::new(
            u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX),
            u32::try_from(nanos % 1_000_000_000).unwrap_or(0),
        )
    }
}

/// `wasi:clocks/monotonic-clock`, to the resolution given, counted from
/// when the instance was made, plus one step: the first reading is never
/// zero (Go's runtime dies with "nanotime returning zero" on a zero).
pub struct CoarseMonotonicClock {
    pub resolution: Duration,
    pub start: Instant,
}

impl HostMonotonicClock for CoarseMonotonicClock {
    fn resolution(&self) -> u64 {
        u64::try_from(self.resolution.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    fn now(&self) -> u64 {
        let step = self.resolution.as_nanos().max(1);
        let nanos = floor(self.start.elapsed().as_nanos(), self.resolution.as_nanos()) + step;
        u64::try_from(nanos).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_are_multiples_of_the_resolution() {
        let ms = Duration::from_millis(1);
        let wall = CoarseWallClock { resolution: ms };
        assert_eq!(wall.now().subsec_nanos() % 1_000_000, 0);
        assert_eq!(wall.resolution(), ms);
        let mono = CoarseMonotonicClock {
            resolution: ms,
            start: Instant::now() - Duration::from_nanos(2_500_001),
        };
        assert_eq!(mono.now() % 1_000_000, 0);
        assert!(mono.now() >= 2_000_000);
        assert_eq!(mono.resolution(), 1_000_000);
        // Zero means the host's own resolution.
        let fine = CoarseMonotonicClock {
            resolution: Duration::ZERO,
            start: Instant::now(),
        };
        assert_eq!(fine.resolution(), 1);
        // A fresh instance's first reading is not zero.
        let fresh = CoarseMonotonicClock {
            resolution: Duration::from_secs(1),
            start: Instant::now(),
        };
        assert_eq!(fresh.now(), 1_000_000_000);
    }
}
