//! Sandbox limits of one handler instance: memory, CPU time per event and
//! how much output it may queue.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::log_budget::SharedLogRate;
use super::memory_budget::MemoryBudget;

/// What all instances of one tenant share: a memory budget, turns to run
/// long calls, a log rate. `None` parts are unbounded. The memory budget
/// and the log rate are shared objects whose limits the operator may
/// change while instances run; the turns bound applies to instances made
/// after a change.
#[derive(Debug, Clone, Default)]
pub struct TenantShare {
    pub memory: Option<Arc<MemoryBudget>>,
    pub turns: Option<Arc<Semaphore>>,
    pub log: Option<Arc<SharedLogRate>>,
    /// The tenant's clock resolution, when it asks for coarser clocks
    /// than its routes'.
    pub clock_resolution: Option<Duration>,
}

/// A route's sandbox settings: the part of its limits that the runtime
/// enforces (the server's route config gives them).
#[derive(Debug, Clone)]
pub struct SandboxSettings {
    /// The largest message the route accepts: output room is sized by it.
    pub max_message_size: u64,
    /// The most linear memory one instance may grow to.
    pub memory_limit: u64,
    /// CPU time per handler call (one event).
    pub cpu_time_per_event: Duration,
    /// CPU time per second, on average, for one connection's handler.
    pub cpu_time_per_second: Duration,
    /// CPU time per second for all the route's connections together;
    /// `None`: [`default_route_cpu_time_per_second`].
    pub route_cpu_time_per_second: Option<Duration>,
    /// Wall-clock time any one call may take.
    pub wall_time_per_call: Duration,
    /// Guest log lines per second per connection.
    pub log_lines_per_second: u32,
    /// Guest log bytes per second per connection.
    pub log_bytes_per_second: u64,
    /// Resolution of the clocks the handler sees.
    pub clock_resolution: Duration,
    /// How many of the route's calls may run at once (`None`: workers - 1).
    pub max_concurrent_calls: Option<u32>,
}

/// The limits one handler instance runs under.
#[derive(Debug, Clone)]
pub struct InstanceLimits {
    /// The most linear memory the instance may grow to, in bytes.
    pub memory_limit: usize,
    /// The CPU time one call into the instance may take.
    pub cpu_time_per_event: Duration,
    /// The CPU time the connection's calls may use per second, on average.
    pub cpu_time_per_second: Duration,
    /// The wall-clock time one call may take, whatever it waits for.
    pub wall_time_per_call: Duration,
    /// Guest log lines per second (`log` calls and stdout/stderr lines).
    pub log_lines_per_second: u32,
    /// Guest log bytes per second, the same lines counted by size.
    pub log_bytes_per_second: u64,
    /// The resolution of the clocks the guest sees (zero: the host's).
    pub clock_resolution: Duration,
    /// The most bytes of frames the handler may have queued for its socket
    /// before its writes fail: a handler writing in a loop must not exhaust
    /// the host's memory.
    pub max_pending_output: usize,
    /// The route's turns for running calls (shared by its instances).
    pub turns: Arc<Semaphore>,
    /// The CPU time all the route's connections may use per second
    /// (shared by its instances).
    pub route_cpu: Arc<std::sync::Mutex<super::cpu_allowance::CpuAllowance>>,
    /// What the instance shares with the rest of its tenant.
    pub tenant: TenantShare,
}

impl InstanceLimits {
    /// The coarser of the route's and the tenant's clock resolutions.
    pub fn effective_clock_resolution(&self) -> Duration {
        self.clock_resolution
            .max(self.tenant.clock_resolution.unwrap_or_default())
    }

    /// The limits for a connection on a route with these settings.
    pub fn for_route(limits: &SandboxSettings, tenant: TenantShare) -> InstanceLimits {
        let max_message = usize::try_from(limits.max_message_size).unwrap_or(usize::MAX);
        InstanceLimits {
            memory_limit: usize::try_from(limits.memory_limit).unwrap_or(usize::MAX),
            cpu_time_per_event: limits.cpu_time_per_event,
            cpu_time_per_second: limits.cpu_time_per_second,
            wall_time_per_call: limits.wall_time_per_call,
            log_lines_per_second: limits.log_lines_per_second,
            log_bytes_per_second: limits.log_bytes_per_second,
            clock_resolution: limits.clock_resolution,
            // Room for an echo of the largest message the route accepts,
            // plus headroom for small messages around it.
            max_pending_output: max_message.saturating_mul(2).saturating_add(1 << 20),
            turns: super::turns::route_turns(limits.max_concurrent_calls),
            route_cpu: Arc::new(std::sync::Mutex::new(
                super::cpu_allowance::CpuAllowance::new(
                    limits
                        .route_cpu_time_per_second
                        .unwrap_or_else(default_route_cpu_time_per_second),
                    Duration::ZERO,
                    std::time::Instant::now(),
                ),
            )),
            tenant,
        }
    }
}

/// All the worker threads but one: another route always finds CPU time.
pub fn default_route_cpu_time_per_second() -> Duration {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    Duration::from_secs(workers.saturating_sub(1).max(1) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_output_allows_an_echo_of_the_largest_message() {
        let settings = SandboxSettings {
            max_message_size: 10 << 20,
            memory_limit: 64 << 20,
            cpu_time_per_event: Duration::from_millis(500),
            cpu_time_per_second: Duration::from_millis(500),
            route_cpu_time_per_second: None,
            wall_time_per_call: Duration::from_secs(10),
            log_lines_per_second: 20,
            log_bytes_per_second: 16 << 10,
            clock_resolution: Duration::from_millis(1),
            max_concurrent_calls: None,
        };
        let l = InstanceLimits::for_route(&settings, TenantShare::default());
        assert!(l.max_pending_output > 2 * 10 * 1024 * 1024);
    }
}
