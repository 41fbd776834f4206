//! The wasm runtime: one wasmtime [`Engine`] for the process, each handler
//! module compiled once, and one instance with its own [`Store`] per
//! connection, taken from a pooling allocator.

mod bindings;
mod clocks;
pub mod compiled_cache;
mod contract;
pub mod cpu_allowance;
pub mod cpu_time;
pub mod effects;
pub mod files;
pub mod fingerprint;
mod guest_log;
mod host_imports;
mod instance;
pub mod limits;
pub mod log_budget;
pub mod memory_budget;
mod packed_request;
pub mod pubsub;
pub mod settings;
pub mod turns;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{
    Config as EngineConfig, Engine, InstanceAllocationStrategy, PoolingAllocationConfig,
};

pub use bindings::{
    Accept, CloseCause, CloseInfo, Header, IpAddress, Message, MessageBatch, MessageKind,
    MessageSpan, NamedCapture, OpenInfo, OriginDecision, Reject, SocketAddress, UpgradeDecision,
    UpgradeRequest,
};
pub use bindings::{from_socket_address, to_socket_address};
pub use effects::{BatchMessage, Effect, WriteBatch};
pub use instance::{CallError, HandlerInstance, HostState, Resumable};
pub use limits::{InstanceLimits, TenantShare};
pub use packed_request::PackedRequest;

use contract::Contract;
pub use settings::{ModuleSource, RuntimeConfig};

/// Pool slots per live instance: most components need fewer of each. The
/// per-component maxima are `[runtime]` config keys
/// (`max_core_instances_per_component`, ...), whose defaults admit the
/// stock output of every supported toolchain.
const CORE_INSTANCE_SLOTS_PER_INSTANCE: u32 = 8;
const MEMORY_SLOTS_PER_INSTANCE: u32 = 2;
const TABLE_SLOTS_PER_INSTANCE: u32 = 3;
/// Dirty pages of a freed instance's tables up to this much are reset in
/// place and stay resident for the next instance (linear memory:
/// `runtime.memory_keep_resident`).
const TABLE_KEEP_RESIDENT: usize = 16 * 1024;

/// The process-wide wasm engine and linker.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    /// What all instances' linear memories may take together.
    memory_budget: Arc<memory_budget::MemoryBudget>,
    epoch_tick: Duration,
    /// Instance slots in the pool (`runtime.max_instances`).
    max_instances: u32,
    /// The per-component pool limits, for the errors that name them.
    per_component: PerComponentLimits,
    /// Where compiled code of large module files is cached, if anywhere.
    compiled_cache: Option<std::path::PathBuf>,
    /// What the cache's entries may take together
    /// (`runtime.compiled_cache_max_size`).
    compiled_cache_max_size: u64,
    _ticker: EpochTicker,
}

impl Runtime {
    /// Creates the engine with a pooling allocator sized from `config`.
    pub fn new(config: &RuntimeConfig) -> Result<Runtime> {
        let n = config.max_instances;
        let max_memory = usize::try_from(config.max_memory_per_instance)
            .context("runtime.max_memory_per_instance does not fit this platform")?;

        let per_component = PerComponentLimits {
            core_instances: config.max_core_instances_per_component,
            memories: config.max_memories_per_component,
            tables: config.max_tables_per_component,
        };
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(n)
            .total_core_instances(
                n.saturating_mul(CORE_INSTANCE_SLOTS_PER_INSTANCE)
                    .max(per_component.core_instances),
            )
            .max_core_instances_per_component(per_component.core_instances)
            .total_memories(
                n.saturating_mul(MEMORY_SLOTS_PER_INSTANCE)
                    .max(per_component.memories),
            )
            .max_memories_per_component(per_component.memories)
            .max_memories_per_module(per_component.memories)
            .total_tables(
                n.saturating_mul(TABLE_SLOTS_PER_INSTANCE)
                    .max(per_component.tables),
            )
            .max_tables_per_component(per_component.tables)
            .max_tables_per_module(per_component.tables)
            .table_elements(20_000)
            // Every live Store keeps its fiber stack once it has made an
            // async call, so there must be one stack per live instance.
            .total_stacks(n)
            .max_memory_size(max_memory);
        // Otherwise each freed instance's pages are madvise'd away and fault
        // back in for the next connection: ~18% of the server's CPU under
        // connection churn (perf). With PAGEMAP_SCAN (Linux >= 6.7) wasmtime
        // rewrites just the pages the guest dirtied; the price is that a free
        // slot stays resident (up to the limits above). Without the scan it
        // would memset the lowest addresses, which need not be the ones a
        // guest uses, so it stays off there.
        if PoolingAllocationConfig::is_pagemap_scan_available() {
            pool.pagemap_scan(wasmtime::Enabled::Yes)
                .linear_memory_keep_resident(
                    usize::try_from(config.memory_keep_resident).unwrap_or(usize::MAX),
                )
                .table_keep_resident(TABLE_KEEP_RESIDENT);
        }

        let mut cfg = EngineConfig::new();
        cfg.epoch_interruption(true)
            .wasm_component_model(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            // A slot as large as the biggest memory an instance may have:
            // the default 4 GiB per slot makes large pools impossible.
            .memory_reservation(config.max_memory_per_instance)
            .memory_guard_size(64 * 1024)
            .memory_reservation_for_growth(0);
        let engine = Engine::new(&cfg)
            .map_err(anyhow::Error::from)
            .context("creating the wasm engine")?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking WASI")?;
        // Every contract version the host runs, side by side: their
        // interfaces have distinct versioned names.
        bindings::v0_2::WebsocketHost::add_to_linker::<
            HostState,
            wasmtime::component::HasSelf<HostState>,
        >(&mut linker, |state| state)
        .map_err(anyhow::Error::from)
        .context("linking the wsbox host interface 0.2.3")?;
        bindings::v0_1::WebsocketHandler::add_to_linker::<
            HostState,
            wasmtime::component::HasSelf<HostState>,
        >(&mut linker, |state| state)
        .map_err(anyhow::Error::from)
        .context("linking the wsbox host interface 0.1.0")?;

        let ticker = EpochTicker::start(engine.clone(), config.epoch_tick)?;
        Ok(Runtime {
            engine,
            linker,
            memory_budget: Arc::new(memory_budget::MemoryBudget::new(config.max_memory_total)),
            epoch_tick: config.epoch_tick,
            max_instances: n,
            per_component,
            compiled_cache: config.compiled_cache.clone(),
            compiled_cache_max_size: config.compiled_cache_max_size,
            _ticker: ticker,
        })
    }

    /// Compiles a handler component and checks that it fits the
    /// `websocket-handler` world and the pool's per-component limits.
    pub fn load_module(&self, source: &ModuleSource) -> Result<Arc<HandlerModule>> {
        let name = source.name();
        let component = match source {
            ModuleSource::File(path) => {
                let bytes = std::fs::read(path)
                    .with_context(|| format!("reading handler component {}", path.display()))?;
                self.compile_file(&name, &bytes)
                    .with_context(|| format!("{} cannot be a handler", path.display()))?
            }
            ModuleSource::Bundled { bytes, .. } => self
                .compile(bytes)
                .with_context(|| format!("compiling bundled handler `{name}`"))?,
        };
        self.prepare(name, &component)
    }

    /// Compiles a module file's bytes, through the compiled-code cache for
    /// large ones (a Python or JavaScript component takes 10-40 s to
    /// compile; loading its cached code takes milliseconds). Says what it
    /// does when it takes long.
    fn compile_file(&self, name: &str, bytes: &[u8]) -> Result<Component> {
        const CACHE_FROM: usize = 1 << 20;
        let cache = self
            .compiled_cache
            .as_ref()
            .filter(|_| bytes.len() >= CACHE_FROM);
        let Some(dir) = cache else {
            return self.compile(bytes);
        };
        let sha256 = crate::fingerprint::sha256_hex(bytes);
        let fingerprint = crate::fingerprint::engine_fingerprint(&self.engine);
        let cached = dir.join(format!("{sha256}-{fingerprint}.cwasm"));
        if cached.is_file() {
            // SAFETY: `deserialize_file` trusts the file to be code this
            // wasmtime wrote. Files in the cache are written only below,
            // whole (through a rename), from `Component::serialize` of an
            // engine with the same fingerprint, which is part of the name.
            match unsafe { Component::deserialize_file(&self.engine, &cached) } {
                Ok(component) => {
                    compiled_cache::touch(&cached);
                    tracing::info!(module = %name, path = %cached.display(), "loaded from the compiled-code cache");
                    return Ok(component);
                }
                Err(e) => tracing::warn!(
                    module = %name,
                    path = %cached.display(),
                    error = %format!("{e:#}"),
                    "cached compiled code unusable; compiling again"
                ),
            }
        }
        let started = std::time::Instant::now();
        tracing::info!(
            module = %name,
            bytes = bytes.len(),
            "compiling a large module: this takes a while (once: its compiled code is cached)"
        );
        let component = self.compile(bytes)?;
        tracing::info!(module = %name, seconds = started.elapsed().as_secs_f64(), "compiled");
        let written = std::fs::create_dir_all(dir)
            .and_then(|()| {
                component
                    .serialize()
                    .map_err(|e| std::io::Error::other(format!("{e:#}")))
            })
            .and_then(|code| crate::files::write_atomically(&cached, &code));
        match written {
            Err(e) => {
                tracing::warn!(path = %cached.display(), error = %e, "cannot cache compiled code")
            }
            Ok(()) => match compiled_cache::evict(dir, self.compiled_cache_max_size, &cached) {
                Ok(evicted) if !evicted.files.is_empty() => tracing::info!(
                    dir = %dir.display(),
                    files = evicted.files.len(),
                    bytes = evicted.bytes,
                    max_size = self.compiled_cache_max_size,
                    "compiled-code cache over compiled_cache_max_size: removed the least recently used entries"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot trim the compiled-code cache")
                }
            },
        }
        Ok(component)
    }

    /// Compiles component bytes (CPU-heavy: seconds for a large component;
    /// keep it off the connection-serving threads). The result can be
    /// cached with [`Component::serialize`].
    pub fn compile(&self, bytes: &[u8]) -> Result<Component> {
        check_component_bytes(bytes)?;
        Component::from_binary(&self.engine, bytes)
            .map_err(|e| self.per_component.explain(anyhow::Error::from(e)))
            .context("compiling the component")
    }

    /// Checks that a compiled component is a handler this host can run (its
    /// world, its imports, the pool's per-component limits) and links it.
    pub fn prepare(&self, name: String, component: &Component) -> Result<Arc<HandlerModule>> {
        if let Some(needs) = component.resources_required() {
            let limits = &self.per_component;
            if needs.num_memories > limits.memories {
                bail!(
                    "module `{name}` has {} memories; this server allows {} per component: raise \
                     `max_memories_per_component` in the config's [runtime] table",
                    needs.num_memories,
                    limits.memories
                );
            }
            if needs.num_tables > limits.tables {
                bail!(
                    "module `{name}` has {} tables; this server allows {} per component: raise \
                     `max_tables_per_component` in the config's [runtime] table",
                    needs.num_tables,
                    limits.tables
                );
            }
        }
        Contract::check_versions(component, &self.engine)
            .with_context(|| format!("module `{name}` is not a wsbox handler"))?;
        Contract::check_imports(component, &self.engine)
            .with_context(|| format!("module `{name}` is not a wsbox handler"))?;
        let pre: InstancePre<HostState> = self
            .linker
            .instantiate_pre(component)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("module `{name}` cannot be linked"))?;
        let contract = Contract::detect(&pre)
            .with_context(|| format!("module `{name}` is not a wsbox handler"))?;
        tracing::info!(module = %name, contract = %contract.describe(), "handler module ready");
        Ok(Arc::new(HandlerModule {
            name,
            pre,
            contract,
            memory_budget: Arc::clone(&self.memory_budget),
            epoch_tick: self.epoch_tick,
            per_component: self.per_component,
        }))
    }

    /// Where compiled code of large module files is cached, if anywhere.
    pub fn compiled_cache(&self) -> Option<&std::path::Path> {
        self.compiled_cache.as_deref()
    }

    /// Handler instances alive now, and the pool's slots for them.
    pub fn pool_usage(&self) -> (u64, u64) {
        let live = self
            .engine
            .pooling_allocator_metrics()
            .map_or(0, |m| m.component_instances());
        (live, u64::from(self.max_instances))
    }

    /// Bytes of linear memory the live instances hold now.
    pub fn memory_in_use(&self) -> u64 {
        self.memory_budget.used()
    }

    /// The underlying wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// Says what a file is when it is not a WebAssembly component, before
/// wasmtime's parser gets a chance to answer with byte offsets.
/// The pool's per-component maxima (`[runtime]` config keys).
#[derive(Debug, Clone, Copy)]
struct PerComponentLimits {
    core_instances: u32,
    memories: u32,
    tables: u32,
}

impl PerComponentLimits {
    /// Adds to a pool-limit refusal from wasmtime which config key raises it.
    fn explain(&self, error: anyhow::Error) -> anyhow::Error {
        let text = format!("{error:#}");
        if !text.contains("configured maximum") {
            return error;
        }
        let (key, now) =
            if text.contains("core module instances") || text.contains("core instances") {
                ("max_core_instances_per_component", self.core_instances)
            } else if text.contains("memories") {
                ("max_memories_per_component", self.memories)
            } else if text.contains("tables") {
                ("max_tables_per_component", self.tables)
            } else {
                return error;
            };
        error.context(format!(
            "the component exceeds a per-component limit of the instance pool: raise `{key}` \
             (now {now}) in the config's [runtime] table"
        ))
    }
}

fn check_component_bytes(bytes: &[u8]) -> Result<()> {
    const MAGIC: &[u8] = b"\0asm";
    const CORE_MODULE: [u8; 4] = [1, 0, 0, 0];
    const COMPONENT_LAYER: [u8; 2] = [1, 0];
    if bytes.len() < 8 || !bytes.starts_with(MAGIC) {
        let start = &bytes[..bytes.len().min(40)];
        let what = if start.is_empty() {
            "it is empty".to_string()
        } else if std::str::from_utf8(start).is_ok_and(|t| !t.contains('\0')) {
            format!(
                "it is text (it starts with {:?})",
                String::from_utf8_lossy(start)
            )
        } else {
            "it does not start with the WebAssembly magic bytes `\\0asm`".to_string()
        };
        bail!(
            "not a WebAssembly file: {what}; point the route's `module` at the `.wasm` that \
             `cargo build --release --target wasm32-wasip2` writes (under target/wasm32-wasip2/release/)"
        );
    }
    if bytes[4..8] == CORE_MODULE {
        bail!(
            "this is a core module, not a component: run `wasm-tools component new` on it \
             (with the WASI adapter if it imports wasi_snapshot_preview1), or build it for the \
             wasm32-wasip2 target, which writes components"
        );
    }
    if bytes[6..8] != COMPONENT_LAYER {
        bail!("an unknown WebAssembly binary format (not a component of the component model)");
    }
    Ok(())
}

/// A compiled handler module, ready to be instantiated once per connection.
pub struct HandlerModule {
    name: String,
    pre: InstancePre<HostState>,
    /// Which contract version the component implements, and its exports.
    contract: Contract,
    memory_budget: Arc<memory_budget::MemoryBudget>,
    epoch_tick: Duration,
    /// The pool's per-component limits, which each Store's limits repeat.
    per_component: PerComponentLimits,
}

impl HandlerModule {
    /// The module's name, for logs.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The world the component implements, e.g.
    /// `wsbox:websocket/websocket-batch-handler@0.2.3`.
    pub fn contract(&self) -> String {
        self.contract.describe()
    }
}

/// Advances the engine's epoch every tick on a thread of its own; this is
/// what lets a running guest notice its deadline.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine, tick: Duration) -> Result<EpochTicker> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("wsbox-epoch".into())
            .spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })
            .context("starting the epoch thread")?;
        Ok(EpochTicker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_component_bytes;

    #[test]
    fn non_components_are_named() {
        let err = |b: &[u8]| format!("{:#}", check_component_bytes(b).unwrap_err());
        assert!(err(b"").contains("empty"));
        let text = err(b"<!doctype html><html>oops</html>");
        assert!(
            text.contains("it is text") && text.contains("doctype"),
            "{text}"
        );
        assert!(err(&[0xff, 0xfe, 0, 1, 2, 3, 4, 5, 6]).contains("magic"));
        assert!(
            err(b"\0asm\x01\0\0\0rest")
                .contains("this is a core module, not a component: run `wasm-tools component new`")
        );
        assert!(check_component_bytes(b"\0asm\x0d\0\x01\0rest").is_ok());
    }
}
