//! Per-tenant connection caps: each connection holds an [`Admission`] of
//! its tenant from before its instance is created until it closes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One tenant's live connection count and cap.
#[derive(Debug)]
struct Gate {
    /// `u64::MAX` when the tenant has no cap.
    max_connections: AtomicU64,
    live: AtomicU64,
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
            })
        }))
    }

    /// Sets a tenant's cap; connections already open stay open.
    pub fn set_limit(&self, tenant: &str, max_connections: Option<u64>) {
        self.gate(tenant)
            .max_connections
            .store(max_connections.unwrap_or(u64::MAX), Ordering::Release);
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
        gates.set_limit("acme", Some(2));
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
