//! Returning freed memory to the OS after idle connections shed their
//! compression state.
//!
//! glibc keeps freed heap blocks for reuse, so the hundreds of KiB each idle
//! connection drops in `Connection::compact_idle` would not leave the
//! process's RSS. A fixed mmap threshold would fix that but makes every
//! large message buffer an mmap/munmap pair (2.6x slower 64 KiB echo,
//! measured), so instead compaction asks for a `malloc_trim`, done at most
//! once per period on a blocking thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static TRIM_WANTED: AtomicBool = AtomicBool::new(false);

/// How often a requested trim may run.
const TRIM_PERIOD: Duration = Duration::from_secs(5);

/// Notes that a significant amount of memory was freed.
pub fn request_trim() {
    TRIM_WANTED.store(true, Ordering::Relaxed);
}

/// Runs requested trims until the task is dropped.
pub async fn trim_periodically() {
    let mut tick = tokio::time::interval(TRIM_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if TRIM_WANTED.swap(false, Ordering::Relaxed) {
            let _ = tokio::task::spawn_blocking(trim).await;
        }
    }
}

fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only releases free memory; it is thread-safe.
        unsafe {
            libc::malloc_trim(0);
        }
        // SAFETY: mallinfo2 only reads the allocator's counters.
        let info = unsafe { libc::mallinfo2() };
        // The heap's live bytes against what it holds: what RSS per
        // connection is made of (the scale test reads this line).
        tracing::debug!(
            heap_in_use = info.uordblks,
            heap_free = info.fordblks,
            mmapped = info.hblkhd,
            arena = info.arena,
            "malloc trimmed"
        );
    }
}
