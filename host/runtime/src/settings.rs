//! The runtime's settings: the engine-wide pool (`[runtime]` in the
//! config) and where a handler module comes from.

use std::path::PathBuf;
use std::time::Duration;

/// The default size of a pool slot: the most memory any instance can be given.
pub const DEFAULT_MAX_MEMORY_PER_INSTANCE: u64 = 128 * 1024 * 1024;
/// The default number of live handler instances (one per connection).
pub const DEFAULT_MAX_INSTANCES: u32 = 10_000;
/// `runtime.memory_keep_resident`'s default.
pub const DEFAULT_MEMORY_KEEP_RESIDENT: u64 = 64 * 1024;
/// The default per-component pool limits: enough for the stock output of
/// every supported toolchain (a `--stub-wasi` componentize-py build has 38
/// core instances, a QuickJS build 3 memories), far above a Rust handler's
/// (a handful of core instances, 1 memory, 2 tables).
pub const DEFAULT_MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 64;
pub const DEFAULT_MAX_MEMORIES_PER_COMPONENT: u32 = 4;
pub const DEFAULT_MAX_TABLES_PER_COMPONENT: u32 = 16;

/// Engine-wide settings (the wasm instance pool).
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// How many handler instances (connections) may be alive at once.
    pub max_instances: u32,
    /// The most linear memory any instance may be given; each route's
    /// `memory_limit` must fit in it.
    pub max_memory_per_instance: u64,
    /// What all instances' linear memory may take together; a new instance
    /// beyond it is refused (503) and a growing one traps.
    pub max_memory_total: u64,
    /// How often the engine's epoch advances: the granularity of CPU deadlines.
    pub epoch_tick: Duration,
    /// The most core module instances one component may create
    /// (`runtime.max_core_instances_per_component`).
    pub max_core_instances_per_component: u32,
    /// The most linear memories one component may define
    /// (`runtime.max_memories_per_component`).
    pub max_memories_per_component: u32,
    /// The most tables one component may define
    /// (`runtime.max_tables_per_component`).
    pub max_tables_per_component: u32,
    /// Where compiled code of large module files (1 MiB and more: Python,
    /// JavaScript) is cached, keyed by the module's SHA-256 and the
    /// engine's configuration (`runtime.compiled_cache`; `None` disables
    /// it). Default: `~/.cache/wsbox/compiled`.
    pub compiled_cache: Option<PathBuf>,
    /// What the compiled-code cache's entries may take together; past it,
    /// the least recently used go (`runtime.compiled_cache_max_size`,
    /// default 2 GiB).
    pub compiled_cache_max_size: u64,
    /// How much of a freed instance's dirtied linear memory is reset in
    /// place and stays resident for the next instance (when the kernel has
    /// PAGEMAP_SCAN); the rest is given back and faults in again
    /// (`runtime.memory_keep_resident`, default 64 KiB).
    pub memory_keep_resident: u64,
}

/// wsbox's cache directory: `$XDG_CACHE_HOME/wsbox`, else
/// `~/.cache/wsbox`; none without a home directory.
pub fn cache_home() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("wsbox"))
}

/// The default compiled-code cache: `compiled` in [`cache_home`].
pub fn default_compiled_cache() -> Option<PathBuf> {
    cache_home().map(|home| home.join("compiled"))
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_instances: DEFAULT_MAX_INSTANCES,
            max_memory_per_instance: DEFAULT_MAX_MEMORY_PER_INSTANCE,
            max_memory_total: crate::memory_budget::default_limit(),
            epoch_tick: Duration::from_millis(10),
            max_core_instances_per_component: DEFAULT_MAX_CORE_INSTANCES_PER_COMPONENT,
            max_memories_per_component: DEFAULT_MAX_MEMORIES_PER_COMPONENT,
            max_tables_per_component: DEFAULT_MAX_TABLES_PER_COMPONENT,
            compiled_cache: default_compiled_cache(),
            compiled_cache_max_size: crate::compiled_cache::DEFAULT_MAX_SIZE,
            memory_keep_resident: DEFAULT_MEMORY_KEEP_RESIDENT,
        }
    }
}

/// Where a route's handler component comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ModuleSource {
    /// A `.wasm` component file.
    File(PathBuf),
    /// A component compiled into the `wsbox` binary (the bundled demo).
    Bundled {
        name: &'static str,
        bytes: &'static [u8],
    },
}

impl ModuleSource {
    /// A short name for logs: the file stem, or the bundled module's name.
    pub fn name(&self) -> String {
        match self {
            ModuleSource::File(path) => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.display().to_string()),
            ModuleSource::Bundled { name, .. } => (*name).to_string(),
        }
    }
}
