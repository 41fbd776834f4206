//! The CPU time a handler call uses, measured as the thread CPU time of
//! the worker running it (not epoch ticks, which count wall time while the
//! guest runs and so stretch or shrink with the load on the machine).
//!
//! A call may be suspended and resumed on another worker thread (each
//! epoch tick yields to tokio). The meter is therefore restarted on every
//! resume and only time run on one thread since the last mark is charged;
//! what a thread did for other tasks in between is not.

use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

/// The CPU time this thread has used.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant
    // every Linux supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// Where the meter last started: the thread and its CPU time then.
type Mark = Option<(ThreadId, Duration)>;

/// The CPU time one call has used so far.
#[derive(Debug)]
pub struct CpuMeter {
    used: Duration,
    /// When the call started, and whether it has reached its first tick.
    started: Instant,
    first_tick_pending: bool,
    /// The most the first segment is charged: one epoch tick.
    tick: Duration,
    /// Shared with the futures that resume a yielded call; made at the
    /// first tick (most instances never reach one, and keep no allocation).
    mark: Option<Arc<Mutex<Mark>>>,
}

impl CpuMeter {
    /// A meter for calls checked every `tick`.
    pub fn new(tick: Duration) -> CpuMeter {
        CpuMeter {
            used: Duration::ZERO,
            started: Instant::now(),
            first_tick_pending: false,
            tick,
            mark: None,
        }
    }

    /// A new call starts. Reading a thread's CPU clock is a system call,
    /// too dear for every call when most end within a tick: until its
    /// first tick a call is charged its wall time, capped at one tick (a
    /// call that first waited in WASI is charged at most that tick).
    pub fn start(&mut self) {
        self.used = Duration::ZERO;
        self.started = Instant::now();
        self.first_tick_pending = true;
    }

    /// Charges the time since the last mark (if still on the same thread)
    /// and returns the total so far.
    pub fn charge(&mut self) -> Duration {
        let now = (std::thread::current().id(), thread_cpu_time());
        let mut mark = self
            .mark
            .get_or_insert_with(Arc::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if std::mem::take(&mut self.first_tick_pending) {
            self.used += self.started.elapsed().min(self.tick);
        } else if let Some((thread, at)) = *mark
            && thread == now.0
        {
            self.used += now.1.saturating_sub(at);
        }
        *mark = Some(now);
        self.used
    }

    /// The call is over: its total. A call that never reached a tick is
    /// charged its wall time, capped at one tick, with no system call.
    pub fn finish(&mut self) -> Duration {
        if std::mem::take(&mut self.first_tick_pending) {
            self.used += self.started.elapsed().min(self.tick);
            self.used
        } else {
            self.charge()
        }
    }

    /// A handle that restarts the meter on the current thread, from the
    /// future that resumes a yielded call.
    pub fn restarter(&mut self) -> impl FnOnce() + Send + 'static {
        let mark = Arc::clone(self.mark.get_or_insert_with(Arc::default));
        move || {
            *mark.lock().unwrap_or_else(|e| e.into_inner()) =
                Some((std::thread::current().id(), thread_cpu_time()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin_for(cpu: Duration) {
        let start = thread_cpu_time();
        while thread_cpu_time() - start < cpu {
            std::hint::black_box(0u64);
        }
    }

    #[test]
    fn charges_cpu_time_on_this_thread_only() {
        let mut meter = CpuMeter::new(Duration::from_millis(10));
        meter.start();
        std::thread::sleep(Duration::from_millis(30));
        // Up to the first tick: wall time, capped at one tick.
        let used = meter.charge();
        assert_eq!(used, Duration::from_millis(10));
        spin_for(Duration::from_millis(20));
        let more = meter.charge();
        assert!(more - used >= Duration::from_millis(20), "{more:?}");
        // Sleeping uses no CPU.
        std::thread::sleep(Duration::from_millis(30));
        let after_sleep = meter.charge();
        assert!(
            after_sleep - more < Duration::from_millis(10),
            "{after_sleep:?}"
        );
        // Work done before a restart (another task's, after a yield) is not charged.
        spin_for(Duration::from_millis(20));
        (meter.restarter())();
        assert!(meter.charge() - after_sleep < Duration::from_millis(10));
    }
}
