//! Per-tenant connection caps and shares: each connection holds an
//! [`Admission`] of its tenant from before its instance is created until it
//! closes, and each instance gets its tenant's [`TenantShare`] (memory
//! budget, turns, log rate) through its route.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use crate::config::TenantLimits;
use wsbox_runtime::TenantShare;
use wsbox_runtime::log_budget::SharedLogRate;
use wsbox_runtime::memory_budget::MemoryBudget;

/// One tenant's live connection count and cap, and what its instances
/// share.
#[derive(Debug)]
struct Gate {
    /// `u64::MAX` when the tenant has no cap.
    max_connections: AtomicU64,
    live: AtomicU64,
    memory: Arc<MemoryBudget>,
    log: Arc<SharedLogRate>,
    /// The bound on running calls (`None`: the default, one less than the
    /// worker threads) and its semaphore; replaced when the bound changes
    /// (instances made before keep the old one).
    turns: Mutex<(Option<u32>, Arc<Semaphore>)>,
    /// For instances made from now on.
    clock_resolution_ms: AtomicU64,
    /// Caps on its connections' message size and output (`u64::MAX`:
    /// their routes' alone), for connections opened from now on.
    max_message_size: AtomicU64,
    max_output_buffer: AtomicU64,
    memory_limit: AtomicU64,
    cpu_time_per_event_ms: AtomicU64,
}

/// A tenant's caps on one connection, applied over its route's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionCaps {
    pub max_message_size: u64,
    pub max_output_buffer: u64,
    pub memory_limit: u64,
    pub cpu_time_per_event_ms: u64,
}

/// The tenants' gates, by name; created on first use.
#[derive(Debug, Default)]
pub struct TenantGates {
    gates: Mutex<HashMap<String, Arc<Gate>>>,
}

/// A tenant is at its connection cap.
#[derive(Debug, thiserror::Error)]
#[error("tenant `{tenant}` is at its limit of {max} open connections")]
pub struct AtCapacity {
    pub tenant: String,
    pub max: u64,
}

/// A connection's place in its tenant's count; released when dropped.
#[derive(Debug)]
pub struct Admission {
    gate: Arc<Gate>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.gate.live.fetch_sub(1, Ordering::AcqRel);
    }
}

impl TenantGates {
    fn gate(&self, tenant: &str) -> Arc<Gate> {
        let mut gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
        // Looked up first: every upgrade comes here, and `entry` would
        // allocate the key each time.
        if let Some(gate) = gates.get(tenant) {
            return Arc::clone(gate);
        }
        Arc::clone(gates.entry(tenant.to_string()).or_insert_with(|| {
            Arc::new(Gate {
                max_connections: AtomicU64::new(u64::MAX),
                live: AtomicU64::new(0),
                memory: Arc::new(MemoryBudget::for_tenant(tenant, u64::MAX)),
                log: Arc::default(),
                turns: Mutex::new((None, wsbox_runtime::turns::route_turns(None))),
                clock_resolution_ms: AtomicU64::new(0),
                max_message_size: AtomicU64::new(u64::MAX),
                max_output_buffer: AtomicU64::new(u64::MAX),
                memory_limit: AtomicU64::new(u64::MAX),
                cpu_time_per_event_ms: AtomicU64::new(u64::MAX),
            })
        }))
    }

    /// Sets a tenant's cap and shared limits. Connections already open stay
    /// open; a lower memory budget refuses growth and new instances.
    pub fn set_limits(&self, tenant: &str, max_connections: Option<u64>, limits: &TenantLimits) {
        let gate = self.gate(tenant);
        gate.max_connections
            .store(max_connections.unwrap_or(u64::MAX), Ordering::Release);
        gate.memory
            .set_limit(limits.max_memory_total.unwrap_or(u64::MAX));
        gate.log
            .set(limits.log_lines_per_second, limits.log_bytes_per_second);
        gate.clock_resolution_ms
            .store(limits.clock_resolution_ms.unwrap_or(0), Ordering::Release);
        gate.max_message_size.store(
            limits.max_message_size.unwrap_or(u64::MAX),
            Ordering::Release,
        );
        gate.max_output_buffer.store(
            limits.max_output_buffer.unwrap_or(u64::MAX),
            Ordering::Release,
        );
        gate.memory_limit
            .store(limits.memory_limit.unwrap_or(u64::MAX), Ordering::Release);
        gate.cpu_time_per_event_ms.store(
            limits.cpu_time_per_event_ms.unwrap_or(u64::MAX),
            Ordering::Release,
        );
        let mut turns = gate.turns.lock().unwrap_or_else(|e| e.into_inner());
        if turns.0 != limits.max_concurrent_calls {
            *turns = (
                limits.max_concurrent_calls,
                wsbox_runtime::turns::route_turns(limits.max_concurrent_calls),
            );
        }
    }

    /// What the tenant's instances share, for a route being built.
    pub fn share(&self, tenant: &str) -> TenantShare {
        let gate = self.gate(tenant);
        let turns = Arc::clone(&gate.turns.lock().unwrap_or_else(|e| e.into_inner()).1);
        TenantShare {
            memory: Some(Arc::clone(&gate.memory)),
            turns: Some(turns),
            log: Some(Arc::clone(&gate.log)),
            clock_resolution: match gate.clock_resolution_ms.load(Ordering::Acquire) {
                0 => None,
                ms => Some(std::time::Duration::from_millis(ms)),
            },
        }
    }

    /// The tenant's caps on a new connection (`u64::MAX`: none).
    pub fn connection_caps(&self, tenant: &str) -> ConnectionCaps {
        let gate = self.gate(tenant);
        ConnectionCaps {
            max_message_size: gate.max_message_size.load(Ordering::Acquire),
            max_output_buffer: gate.max_output_buffer.load(Ordering::Acquire),
            memory_limit: gate.memory_limit.load(Ordering::Acquire),
            cpu_time_per_event_ms: gate.cpu_time_per_event_ms.load(Ordering::Acquire),
        }
    }

    /// Bytes of handler memory the tenant's instances use now.
    pub fn memory_used(&self, tenant: &str) -> u64 {
        self.gate(tenant).memory.used()
    }

    /// Counts a new connection of `tenant`, unless it is at its cap.
    pub fn admit(&self, tenant: &str) -> Result<Admission, AtCapacity> {
        let gate = self.gate(tenant);
        let max = gate.max_connections.load(Ordering::Acquire);
        let mut live = gate.live.load(Ordering::Acquire);
        loop {
            if live >= max {
                return Err(AtCapacity {
                    tenant: tenant.to_string(),
                    max,
                });
            }
            match gate
                .live
                .compare_exchange(live, live + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(Admission { gate }),
                Err(now) => live = now,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_refuses_until_an_admission_ends() {
        let gates = TenantGates::default();
        gates.set_limits("acme", Some(2), &TenantLimits::default());
        let a = gates.admit("acme").unwrap();
        let _b = gates.admit("acme").unwrap();
        let refused = gates.admit("acme").unwrap_err();
        assert_eq!(refused.max, 2);
        assert!(
            gates.admit("other").is_ok(),
            "other tenants are not affected"
        );
        drop(a);
        assert!(gates.admit("acme").is_ok());
    }
}
