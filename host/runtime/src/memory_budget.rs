//! The memory all handler instances of the process may use together
//! (`runtime.max_memory_total`): each instance's linear memory is charged
//! as it grows and released when the instance is dropped. A new instance
//! that would go over is refused (the connection gets 503) and a growing
//! one traps (its connection closes with 1011), so the process is never the
//! one the kernel's OOM killer picks for a handler's sake. A tenant may
//! have a budget of its own (`max_memory_total` in its settings), charged
//! beside the process's, so one tenant cannot spend the others' share.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::{ResourceLimiter, StoreLimits};

/// The budget was spent: nothing was allocated.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{owner} memory for handlers is spent ({limit} bytes in use or asked for; {setting})")]
pub struct MemoryBudgetSpent {
    pub limit: u64,
    /// Whose: "the server's", "tenant `acme`'s".
    pub owner: String,
    /// The setting that sets it.
    pub setting: &'static str,
}

/// A budget: the process's, or one tenant's.
#[derive(Debug)]
pub struct MemoryBudget {
    /// Changed by the operator while instances run; growth is checked
    /// against the limit of the moment.
    limit: AtomicU64,
    used: AtomicU64,
    owner: String,
    setting: &'static str,
}

impl MemoryBudget {
    /// The process-wide budget.
    pub fn new(limit: u64) -> MemoryBudget {
        MemoryBudget {
            limit: AtomicU64::new(limit),
            used: AtomicU64::new(0),
            owner: "the server's".into(),
            setting: "runtime.max_memory_total",
        }
    }

    /// A tenant's budget (`u64::MAX`: none).
    pub fn for_tenant(tenant: &str, limit: u64) -> MemoryBudget {
        MemoryBudget {
            limit: AtomicU64::new(limit),
            used: AtomicU64::new(0),
            owner: format!("tenant `{tenant}`'s"),
            setting: "the tenant's max_memory_total",
        }
    }

    /// Changes the limit; what is in use stays.
    pub fn set_limit(&self, limit: u64) {
        self.limit.store(limit, Ordering::Release);
    }

    /// Bytes charged to live instances now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    fn charge(&self, bytes: u64) -> Result<(), MemoryBudgetSpent> {
        let limit = self.limit.load(Ordering::Acquire);
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let next = used.saturating_add(bytes);
            if next > limit {
                return Err(MemoryBudgetSpent {
                    limit,
                    owner: self.owner.clone(),
                    setting: self.setting,
                });
            }
            match self
                .used
                .compare_exchange_weak(used, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(actual) => used = actual,
            }
        }
    }

    fn release(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// The default budget: half of the machine's memory, or 4 GiB where that
/// cannot be read.
pub fn default_limit() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
                .map(|kib| kib.saturating_mul(1024))
        });
    total.map_or(4 << 30, |bytes| bytes / 2)
}

/// One instance's limiter: its own caps (`StoreLimits`) and its share of
/// the process's and its tenant's budgets, released when the instance is
/// dropped.
pub struct InstanceLimiter {
    limits: StoreLimits,
    budget: Arc<MemoryBudget>,
    tenant: Option<Arc<MemoryBudget>>,
    charged: u64,
    /// Charged by the last `memory_growing`, released again if the growth
    /// then fails.
    pending: u64,
}

impl InstanceLimiter {
    pub fn new(
        limits: StoreLimits,
        budget: Arc<MemoryBudget>,
        tenant: Option<Arc<MemoryBudget>>,
    ) -> InstanceLimiter {
        InstanceLimiter {
            limits,
            budget,
            tenant,
            charged: 0,
            pending: 0,
        }
    }
}

impl InstanceLimiter {
    /// Charges the tenant's budget, then the process's; all or nothing.
    fn charge(&self, bytes: u64) -> Result<(), MemoryBudgetSpent> {
        if let Some(tenant) = &self.tenant {
            tenant.charge(bytes)?;
        }
        self.budget.charge(bytes).inspect_err(|_| {
            if let Some(tenant) = &self.tenant {
                tenant.release(bytes);
            }
        })
    }

    fn release(&self, bytes: u64) {
        if let Some(tenant) = &self.tenant {
            tenant.release(bytes);
        }
        self.budget.release(bytes);
    }
}

impl Drop for InstanceLimiter {
    fn drop(&mut self) {
        self.release(self.charged);
    }
}

impl ResourceLimiter for InstanceLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.pending = 0;
        if !self.limits.memory_growing(current, desired, maximum)? {
            return Ok(false);
        }
        let grow = u64::try_from(desired.saturating_sub(current)).unwrap_or(u64::MAX);
        self.charge(grow)?;
        self.charged += grow;
        self.pending = grow;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        let pending = std::mem::take(&mut self.pending);
        self.release(pending);
        self.charged -= pending;
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::StoreLimitsBuilder;

    #[test]
    fn growth_is_charged_and_released_with_the_instance() {
        let budget = Arc::new(MemoryBudget::new(3 << 16));
        let limits = || StoreLimitsBuilder::new().memory_size(1 << 20).build();
        let mut a = InstanceLimiter::new(limits(), Arc::clone(&budget), None);
        assert!(a.memory_growing(0, 2 << 16, None).unwrap());
        let mut b = InstanceLimiter::new(limits(), Arc::clone(&budget), None);
        assert!(b.memory_growing(0, 1 << 16, None).unwrap());
        assert_eq!(budget.used(), 3 << 16);
        let spent = b.memory_growing(1 << 16, 2 << 16, None).unwrap_err();
        assert!(
            spent.downcast_ref::<MemoryBudgetSpent>().is_some(),
            "{spent:#}"
        );
        assert_eq!(budget.used(), 3 << 16, "nothing charged for the refusal");
        drop(a);
        // A permitted growth that then fails gives its charge back.
        assert!(b.memory_growing(1 << 16, 2 << 16, None).unwrap());
        let _ = b.memory_grow_failed(wasmtime::Error::msg("no"));
        assert_eq!(budget.used(), 1 << 16);
        assert!(b.memory_growing(1 << 16, 3 << 16, None).unwrap());
        assert_eq!(budget.used(), 3 << 16);
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_tenant_budget_is_charged_beside_the_process_budget() {
        let process = Arc::new(MemoryBudget::new(4 << 16));
        let acme = Arc::new(MemoryBudget::for_tenant("acme", 2 << 16));
        let limits = || StoreLimitsBuilder::new().memory_size(1 << 20).build();
        let tenant = || Some(Arc::clone(&acme));
        let mut a = InstanceLimiter::new(limits(), Arc::clone(&process), tenant());
        assert!(a.memory_growing(0, 2 << 16, None).unwrap());
        let mut b = InstanceLimiter::new(limits(), Arc::clone(&process), tenant());
        let spent = b.memory_growing(0, 1 << 16, None).unwrap_err();
        let spent = spent.downcast_ref::<MemoryBudgetSpent>().unwrap();
        assert!(spent.to_string().contains("tenant `acme`'s"), "{spent}");
        // Another tenant still finds the process's room.
        let mut other = InstanceLimiter::new(limits(), Arc::clone(&process), None);
        assert!(other.memory_growing(0, 2 << 16, None).unwrap());
        // Refused by the process: the tenant's charge is given back.
        acme.set_limit(u64::MAX);
        assert!(b.memory_growing(0, 1 << 16, None).is_err());
        assert_eq!(acme.used(), 2 << 16);
        drop(a);
        assert_eq!((acme.used(), process.used()), (0, 2 << 16));
    }

    #[test]
    fn the_default_is_half_the_machine() {
        assert!(default_limit() >= 1 << 30);
    }
}
