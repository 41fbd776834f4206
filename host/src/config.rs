//! The server's TOML configuration: parsing, defaults and validation.
//!
//! Every error names the file, the line and the key at fault, so that an
//! operator can fix a config without reading the source.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::server::pubsub::{Fanout, PubsubLimits, SlowConsumerPolicy};
use serde::{Deserialize, Serialize};
use toml::Spanned;
pub use wsbox_protocol::deflate::DeflateConfig;

/// The default `max_message_size`, Tornado's `websocket_max_message_size`.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 10 * 1024 * 1024;
/// The largest `max_message_size` accepted.
pub const MAX_MESSAGE_SIZE_LIMIT: u64 = 1024 * 1024 * 1024;
/// The default cap on one instance's linear memory.
pub const DEFAULT_MEMORY_LIMIT: u64 = 64 * 1024 * 1024;
/// The default size of a pool slot: the most memory any instance can be given.
pub const DEFAULT_MAX_MEMORY_PER_INSTANCE: u64 = 128 * 1024 * 1024;
/// The default CPU time a handler may spend in one event before it is stopped.
pub const DEFAULT_CPU_TIME_PER_EVENT: Duration = Duration::from_millis(500);
/// The default wall-clock time one handler call may take.
/// Half a core per connection, sustained.
pub const DEFAULT_CPU_TIME_PER_SECOND: Duration = Duration::from_millis(500);
pub const DEFAULT_WALL_TIME_PER_CALL: Duration = Duration::from_secs(10);
/// The default resolution of the clocks a handler sees.
pub const DEFAULT_CLOCK_RESOLUTION: Duration = Duration::from_millis(1);
/// The default rate of guest log lines per connection.
pub const DEFAULT_LOG_LINES_PER_SECOND: u32 = 20;
/// The default rate of guest log bytes per connection (bursts of 64 KiB).
pub const DEFAULT_LOG_BYTES_PER_SECOND: u64 = 16 * 1024;
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
/// The default listen address of the bundled demo and of configs without one.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// A validated server configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The address the server listens on.
    pub listen: SocketAddr,
    /// HTTP-level settings of the listener.
    pub server: ServerConfig,
    /// TLS: when set, the listener speaks `wss://` only.
    pub tls: Option<TlsConfig>,
    /// Engine-wide settings shared by every route.
    pub runtime: RuntimeConfig,
    /// The routes, tried in order; the first whose pattern matches the path wins.
    pub routes: Vec<RouteConfig>,
    /// Tenants declared in the file (`[[tenant]]`); routes name theirs.
    pub tenants: Vec<TenantConfig>,
    /// Plain HTTP pages served beside the routes (a page that talks to them
    /// from the same origin, so the default origin rule lets it in).
    pub pages: Vec<PageConfig>,
    /// The control plane (admin API and module registry): on when the
    /// config has an `[admin]` section, and for `wsbox serve` without a
    /// config.
    pub admin: Option<AdminConfig>,
    /// Pub/sub limits per tenant (`[pubsub]`).
    pub pubsub: PubsubConfig,
}

/// `[pubsub]`: limits on what a tenant's handlers may do with topics.
#[derive(Debug, Clone, Default)]
pub struct PubsubConfig {
    /// The limits of every tenant that does not set its own (a tenant's
    /// `max_subscriptions_per_connection` and `max_publishes_per_second`).
    pub default_limits: PubsubLimits,
    /// Where topics meet other nodes' (`backend`): `None` is this node
    /// alone (`"local"`, the default).
    pub broker: Option<BrokerConfig>,
}

/// `[pubsub] backend = "redis://..." | "nats://..."`: several nodes share
/// topics and reach each other's connections through a broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    pub kind: BrokerKind,
    /// The broker's URL as configured.
    pub url: String,
    /// This node's id (`node_id`, 1 to 65535; default: random at start).
    /// Connection ids carry it, so `send-to` can find another node's.
    pub node_id: Option<u16>,
    /// What the broker's channel (subject) names start with, so that
    /// several clusters can share one broker (`channel_prefix`).
    pub channel_prefix: String,
}

/// Which broker protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    Redis,
    Nats,
}

impl BrokerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BrokerKind::Redis => "redis",
            BrokerKind::Nats => "nats",
        }
    }
}

/// The default `[pubsub] channel_prefix`.
pub const DEFAULT_CHANNEL_PREFIX: &str = "wsbox";

/// Parses `[pubsub] backend`: `"local"`, `redis://host:port[/db]` or
/// `nats://host:port`.
pub fn parse_backend(value: &str) -> Result<Option<(BrokerKind, String)>, String> {
    if value == "local" {
        return Ok(None);
    }
    let scheme = value.split_once("://").map(|(s, _)| s);
    let kind = match scheme {
        Some("redis") => BrokerKind::Redis,
        Some("nats") => BrokerKind::Nats,
        Some("rediss" | "tls") => {
            return Err(format!(
                "`{value}`: TLS to the broker is not supported yet; use redis:// or nats:// on a private network"
            ));
        }
        _ => {
            return Err(format!(
                "`{value}` is not a backend: use \"local\" (one node), \"redis://host:6379\" or \"nats://host:4222\""
            ));
        }
    };
    let rest = &value[value.find("://").map_or(0, |i| i + 3)..];
    if rest.is_empty() || rest.starts_with(['/', ':']) {
        return Err(format!(
            "`{value}` names no host, as in \"{}://127.0.0.1:{}\"",
            kind.as_str(),
            match kind {
                BrokerKind::Redis => 6379,
                BrokerKind::Nats => 4222,
            }
        ));
    }
    if kind == BrokerKind::Redis && redis::Client::open(value).is_err() {
        return Err(format!(
            "`{value}` is not a Redis URL such as \"redis://127.0.0.1:6379\""
        ));
    }
    Ok(Some((kind, value.to_string())))
}

/// The default address of the admin API.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
/// The default cap on an uploaded module's size.
pub const DEFAULT_MAX_MODULE_SIZE: u64 = 128 * 1024 * 1024;

/// The control plane's settings (`[admin]`).
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Where the admin API listens (keep it on loopback or a private
    /// network: it deploys code).
    pub listen: SocketAddr,
    /// The registry's data directory.
    pub data_dir: PathBuf,
    /// The largest module accepted for upload.
    pub max_module_size: u64,
    /// Serve the admin API over TLS (`[admin.tls]`: `cert`, `key`).
    pub tls: Option<TlsConfig>,
    /// The longest an upload may take to compile; a slower one is refused
    /// (422) and not stored.
    pub max_compile_time: Duration,
}

/// The default cap on compiling one upload.
pub const DEFAULT_MAX_COMPILE_TIME: Duration = Duration::from_secs(120);

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            data_dir: default_data_dir(),
            max_module_size: DEFAULT_MAX_MODULE_SIZE,
            tls: None,
            max_compile_time: DEFAULT_MAX_COMPILE_TIME,
        }
    }
}

/// `$XDG_DATA_HOME/wsbox`, else `~/.local/share/wsbox`, else (no home)
/// `./wsbox-data`.
pub fn default_data_dir() -> PathBuf {
    let nonempty = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty());
    if let Some(xdg) = nonempty("XDG_DATA_HOME") {
        return PathBuf::from(xdg).join("wsbox");
    }
    match nonempty("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/wsbox"),
        None => PathBuf::from("wsbox-data"),
    }
}

/// A static page: answered to `GET`/`HEAD` of exactly `path`.
#[derive(Debug, Clone)]
pub struct PageConfig {
    /// The request path, e.g. `/` or `/chat.html`.
    pub path: String,
    /// Where the page's bytes come from.
    pub source: PageSource,
}

/// Where a page's bytes come from.
#[derive(Debug, Clone)]
pub enum PageSource {
    /// A file, read when the server starts (restart to pick up changes).
    File(PathBuf),
    /// A page compiled into the `wsbox` binary (the bundled demo's).
    Bundled(&'static str),
}

impl PageConfig {
    /// The `Content-Type` for the page, from its file extension (HTML for a
    /// bundled page).
    pub fn content_type(&self) -> &'static str {
        let ext = match &self.source {
            PageSource::Bundled(_) => return "text/html; charset=utf-8",
            PageSource::File(p) => p
                .extension()
                .map(|e| e.to_string_lossy().to_ascii_lowercase())
                .unwrap_or_default(),
        };
        match ext.as_str() {
            "html" | "htm" => "text/html; charset=utf-8",
            "js" | "mjs" => "text/javascript; charset=utf-8",
            "css" => "text/css; charset=utf-8",
            "json" => "application/json",
            "svg" => "image/svg+xml",
            "png" => "image/png",
            "ico" => "image/x-icon",
            "txt" => "text/plain; charset=utf-8",
            _ => "application/octet-stream",
        }
    }
}

/// The listener's certificate and key (PEM files).
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// HTTP-level settings of the listener.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// How long a client may take to send its request head; a client that
    /// connects and sends nothing, or trickles headers (slowloris), is dropped.
    pub handshake_timeout: Duration,
    /// The most bytes of request head accepted; more gets 431.
    pub max_header_bytes: usize,
    /// On shutdown, how long connections get to finish their close handshake.
    pub drain_time: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            handshake_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            drain_time: Duration::from_secs(10),
        }
    }
}

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

/// The default compiled-code cache: `$XDG_CACHE_HOME/wsbox/compiled`, else
/// `~/.cache/wsbox/compiled`; none without a home directory.
pub fn default_compiled_cache() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("wsbox").join("compiled"))
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_instances: DEFAULT_MAX_INSTANCES,
            max_memory_per_instance: DEFAULT_MAX_MEMORY_PER_INSTANCE,
            max_memory_total: crate::runtime::memory_budget::default_limit(),
            epoch_tick: Duration::from_millis(10),
            max_core_instances_per_component: DEFAULT_MAX_CORE_INSTANCES_PER_COMPONENT,
            max_memories_per_component: DEFAULT_MAX_MEMORIES_PER_COMPONENT,
            max_tables_per_component: DEFAULT_MAX_TABLES_PER_COMPONENT,
            compiled_cache: default_compiled_cache(),
            compiled_cache_max_size: crate::runtime::compiled_cache::DEFAULT_MAX_SIZE,
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

/// One route: a path pattern and the handler that serves it.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// The path regex as written; it must match the whole path (Tornado
    /// anchors its patterns the same way). A tenant's route is matched
    /// under its `path_prefix`.
    pub pattern: String,
    /// The tenant the route belongs to (`default` unless it names one).
    pub tenant: String,
    /// The handler component.
    pub module: ModuleSource,
    /// Limits for this route's connections.
    pub limits: RouteLimits,
    /// Which browser origins may connect.
    pub origin: OriginConfig,
    /// Keepalive pings.
    pub keepalive: Keepalive,
    /// permessage-deflate (Tornado's `get_compression_options()`): `None`
    /// means off, Tornado's default.
    pub compression: Option<DeflateConfig>,
    /// Hibernation of idle connections (off by default).
    pub hibernation: Hibernation,
}

/// The recommended `hibernate_after`: long enough that a connection in a
/// conversation keeps its instance, short enough that idle ones give theirs
/// back within seconds (Cloudflare evicts after about 10 s).
pub const RECOMMENDED_HIBERNATE_AFTER: Duration = Duration::from_secs(10);

/// The default (and recommended) largest attachment a hibernated
/// connection keeps: Cloudflare's `serializeAttachment` limit.
pub const DEFAULT_MAX_ATTACHMENT: usize = 16 * 1024;

/// A route's hibernation settings: `hibernate_after`, `max_attachment`,
/// `[route.auto_response]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hibernation {
    /// Drop the instance of a connection that has had no events for this
    /// long (when its handler exports `hibernation` and agrees); `None`
    /// (the default) never does.
    pub after: Option<Duration>,
    /// The largest attachment kept per hibernated connection.
    pub max_attachment: usize,
    /// A text message answered by the host with a text, without creating
    /// an instance while the connection hibernates (Cloudflare's
    /// `setWebSocketAutoResponse`).
    pub auto_response: Option<AutoResponse>,
}

impl Default for Hibernation {
    fn default() -> Self {
        Hibernation {
            after: None,
            max_attachment: DEFAULT_MAX_ATTACHMENT,
            auto_response: None,
        }
    }
}

/// A request text and the host's response to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoResponse {
    /// The whole text message to answer (compared exactly).
    pub request: String,
    /// The text message sent back.
    pub response: String,
}

/// A route's origin policy (Tornado's `check_origin`).
#[derive(Debug, Clone, Default)]
pub struct OriginConfig {
    /// Origins allowed besides the same origin: exact (`https://app.example.com`),
    /// wildcard subdomains (`https://*.example.com`), or `*` for any.
    pub allowed: Vec<String>,
    /// When true the host's verdict is final: the handler cannot override it.
    pub enforce: bool,
}

/// Keepalive pings (Tornado's `websocket_ping_interval` and `websocket_ping_timeout`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Keepalive {
    /// Send a ping this often; `None` sends none.
    pub ping_interval: Option<Duration>,
    /// Close the connection (1011) when a ping is not answered within this
    /// time. Defaults to the interval and may not exceed it.
    pub ping_timeout: Option<Duration>,
}

impl Keepalive {
    /// The timeout in force: the configured one, or the interval.
    pub fn effective_timeout(&self) -> Option<Duration> {
        self.ping_timeout.or(self.ping_interval)
    }
}

/// Per-route limits: the protocol's and the sandbox's.
#[derive(Debug, Clone)]
pub struct RouteLimits {
    /// The largest message accepted from a peer; larger ones are refused
    /// with close code 1009 while reading.
    pub max_message_size: u64,
    /// The most linear memory one handler instance may grow to.
    pub memory_limit: u64,
    /// The CPU time one handler call (one event) may use before the
    /// connection is closed with 1011.
    pub cpu_time_per_event: Duration,
    /// The CPU time all of the route's connections together may use per
    /// second; over it, the route's next calls wait until it is back
    /// within it. `None`: one second per worker thread but one (at least
    /// one), so a route full of busy handlers leaves a worker to others.
    pub route_cpu_time_per_second: Option<Duration>,
    /// The CPU time one connection's handler may use per second, on
    /// average, whatever its batches: a connection over it waits before its
    /// next call (and is not read meanwhile) until it is back within it.
    /// Up to `cpu_time_per_event` can be used at once.
    pub cpu_time_per_second: Duration,
    /// The wall-clock time any one handler call may take, whatever it
    /// waits for (a sleep, a starved worker) and however many messages it
    /// holds; beyond it the call is cancelled and the connection closed
    /// with 1011 (a refused upgrade answers 503).
    pub wall_time_per_call: Duration,
    /// Log lines per second one connection's handler may write (its `log`
    /// calls and its stdout/stderr lines together); more are dropped and
    /// counted.
    pub log_lines_per_second: u32,
    /// Log bytes per second one connection's handler may write (the same
    /// lines, by size, after the 4 KiB cut); more are dropped and counted.
    pub log_bytes_per_second: u64,
    /// The resolution of the wall and monotonic clocks the handler sees;
    /// zero gives it the host's own.
    pub clock_resolution: Duration,
    /// How many of this route's handler calls may run at once; more wait
    /// their turn, so one route cannot take every worker thread while
    /// others have work. `None`: one less than the worker threads (at
    /// least 1).
    pub max_concurrent_calls: Option<u32>,
    /// Pub/sub: the most bytes that may wait for one connection's socket
    /// before messages published to it count it as a slow consumer.
    pub max_backpressure: usize,
    /// Pub/sub: what happens to a slow consumer (skip its messages, or
    /// close it with 1008).
    pub slow_consumer: SlowConsumerPolicy,
    /// Pub/sub: `shared` (the default: each published message encoded and
    /// compressed once for all subscribers) or `per_connection` (each
    /// subscriber's connection encodes and compresses it itself: the
    /// baseline of `wsbox bench broadcast --compress`).
    pub pubsub_fanout: Fanout,
}

impl Default for RouteLimits {
    fn default() -> Self {
        RouteLimits {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            memory_limit: DEFAULT_MEMORY_LIMIT,
            cpu_time_per_event: DEFAULT_CPU_TIME_PER_EVENT,
            cpu_time_per_second: DEFAULT_CPU_TIME_PER_SECOND,
            route_cpu_time_per_second: None,
            wall_time_per_call: DEFAULT_WALL_TIME_PER_CALL,
            log_lines_per_second: DEFAULT_LOG_LINES_PER_SECOND,
            log_bytes_per_second: DEFAULT_LOG_BYTES_PER_SECOND,
            clock_resolution: DEFAULT_CLOCK_RESOLUTION,
            max_concurrent_calls: None,
            max_backpressure: crate::server::pubsub::DEFAULT_MAX_BACKPRESSURE,
            slow_consumer: SlowConsumerPolicy::Drop,
            pubsub_fanout: Fanout::Shared,
        }
    }
}

/// The limits all of a tenant's connections share; each is unbounded when
/// absent (the process's own limits still hold).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct TenantLimits {
    /// Bytes of linear memory all its instances may use together; a new
    /// instance over it is refused with 503, a growing one traps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory_total: Option<u64>,
    /// Handler calls of the tenant that may run past an epoch tick at once,
    /// across its routes; more wait their turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_calls: Option<u32>,
    /// Guest log lines per second for all its connections together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_lines_per_second: Option<u32>,
    /// Guest log bytes per second for all its connections together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_bytes_per_second: Option<u64>,
    /// Topics one of its connections may subscribe to (default: `[pubsub]`'s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_subscriptions_per_connection: Option<u32>,
    /// Publishes (and `send-to` messages) per second for all its
    /// connections together (default: `[pubsub]`'s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_publishes_per_second: Option<u32>,
    /// The resolution, in milliseconds, of the clocks all its handlers
    /// see, when coarser than their routes' `clock_resolution` (a defence
    /// against timing attacks between tenants).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_resolution_ms: Option<u64>,
    /// The largest message its connections may receive, when smaller than
    /// their routes' `max_message_size` (1009 beyond it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_message_size: Option<u64>,
    /// The most bytes that may wait to be sent on one of its connections,
    /// when smaller than their routes' (the handler's writes fail beyond
    /// it, and its connection closes with 1011 "output limit exceeded").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_buffer: Option<u64>,
    /// The most linear memory one of its instances may grow to, when
    /// smaller than their routes' `memory_limit` (it traps beyond).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<u64>,
    /// The CPU time, in milliseconds, one call of its handlers may take,
    /// when shorter than their routes' `cpu_time_per_event` (1011 beyond).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_time_per_event_ms: Option<u64>,
}

/// A tenant declared in the config file (`[[tenant]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantConfig {
    pub name: String,
    /// The namespace its routes are matched under (`/acme`).
    pub path_prefix: Option<String>,
    /// Connections it may have open at once (503 beyond).
    pub max_connections: Option<u64>,
    /// What all its instances share.
    pub limits: TenantLimits,
}

/// The pattern a tenant's route is matched with: under its namespace
/// (`/acme` + `/chat` → `/acme/(?:chat)`), so the pattern cannot escape it.
/// `None` when the pattern does not start with `/`.
pub fn namespaced(prefix: &str, pattern: &str) -> Option<String> {
    let rest = pattern.strip_prefix('/')?;
    Some(format!("{}/(?:{rest})", regex::escape(prefix)))
}

/// Checks a tenant's path prefix: `/name` or `/name/sub`, no regex or URL
/// syntax.
pub fn check_path_prefix(prefix: &str) -> Result<(), String> {
    let ok = prefix.len() >= 2
        && prefix.len() <= 64
        && prefix.starts_with('/')
        && !prefix.ends_with('/')
        && !prefix.contains("//")
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "path prefix {prefix:?} must look like /name or /name/sub: letters, digits, '-', '_', '.', no trailing '/'"
        ))
    }
}

/// Whether two namespaces overlap (equal, or one inside the other).
pub fn prefixes_overlap(a: &str, b: &str) -> bool {
    a == b || a.starts_with(&format!("{b}/")) || b.starts_with(&format!("{a}/"))
}

/// A config error, located in its file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}:{line}: `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
}

impl Config {
    /// The built-in default: the bundled demos on `127.0.0.1:8080`.
    ///
    /// The route `/echo` is a plain echo; `/echo/<room>` also greets with
    /// its capture, to show route captures reaching the handler.
    /// `/chat/<room>` is the chat demo (pub/sub). The page at `/` is the
    /// chat's, the echo's is at `/echo.html`.
    pub fn bundled_demo() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            server: ServerConfig::default(),
            tls: None,
            runtime: RuntimeConfig::default(),
            routes: vec![
                RouteConfig {
                    pattern: r"/echo(?:/(?P<room>[^/]+))?".to_string(),
                    tenant: crate::server::routes::DEFAULT_TENANT.to_string(),
                    module: ModuleSource::Bundled {
                        name: "echo",
                        bytes: crate::bundled::ECHO_WASM,
                    },
                    limits: RouteLimits::default(),
                    origin: OriginConfig::default(),
                    keepalive: Keepalive::default(),
                    // The demo shows off compression: browsers always offer it.
                    compression: Some(DeflateConfig::default()),
                    hibernation: Hibernation::default(),
                },
                RouteConfig {
                    pattern: r"/chat/(?P<room>[A-Za-z0-9_-]{1,32})".to_string(),
                    tenant: crate::server::routes::DEFAULT_TENANT.to_string(),
                    module: ModuleSource::Bundled {
                        name: "chat",
                        bytes: crate::bundled::CHAT_WASM,
                    },
                    limits: RouteLimits::default(),
                    origin: OriginConfig::default(),
                    keepalive: Keepalive::default(),
                    compression: Some(DeflateConfig::default()),
                    hibernation: Hibernation::default(),
                },
            ],
            pages: vec![
                PageConfig {
                    path: "/".to_string(),
                    source: PageSource::Bundled(crate::bundled::CHAT_PAGE),
                },
                PageConfig {
                    path: "/echo.html".to_string(),
                    source: PageSource::Bundled(crate::bundled::ECHO_PAGE),
                },
            ],
            tenants: Vec::new(),
            admin: Some(AdminConfig::default()),
            pubsub: PubsubConfig::default(),
        }
    }

    /// Reads and validates a config file. Relative module paths are taken
    /// from the config file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates config text; `path` is used in errors and to
    /// resolve relative module paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let located = Locator { text, path };

        let listen = match &raw.listen {
            None => Config::bundled_demo().listen,
            Some(s) => s.get_ref().parse().map_err(|e| {
                located.error(
                    s.span().start,
                    "listen",
                    format!(
                        "`{}` is not an address like 127.0.0.1:8080: {e}",
                        s.get_ref()
                    ),
                )
            })?,
        };

        let mut server = ServerConfig::default();
        if let Some(sv) = &raw.server {
            if let Some(d) = &sv.handshake_timeout {
                server.handshake_timeout = located.duration(d, "server.handshake_timeout")?;
                if server.handshake_timeout.is_zero() {
                    return Err(located.error(
                        d.span().start,
                        "server.handshake_timeout",
                        "must be greater than zero",
                    ));
                }
            }
            if let Some(size) = &sv.max_header_bytes {
                let n = located.size(size, "server.max_header_bytes")?;
                // hyper needs room for at least a minimal request.
                if n < 8192 {
                    return Err(located.error(
                        size.span().start,
                        "server.max_header_bytes",
                        "must be at least 8KiB",
                    ));
                }
                server.max_header_bytes = usize::try_from(n).unwrap_or(usize::MAX);
            }
            if let Some(d) = &sv.drain_time {
                server.drain_time = located.duration(d, "server.drain_time")?;
            }
        }

        let existing_file = |value: &Spanned<String>, key: &str| {
            let path = base.join(value.get_ref());
            if path.is_file() {
                Ok(path)
            } else {
                Err(located.error(
                    value.span().start,
                    key,
                    format!(
                        "no such file: {} (`wsbox cert --dev` writes a self-signed pair)",
                        path.display()
                    ),
                ))
            }
        };
        let tls = match &raw.tls {
            None => None,
            Some(t) => Some(TlsConfig {
                cert: existing_file(&t.cert, "tls.cert")?,
                key: existing_file(&t.key, "tls.key")?,
            }),
        };

        let mut runtime = RuntimeConfig::default();
        if let Some(rt) = &raw.runtime {
            if let Some(n) = &rt.max_instances {
                if *n.get_ref() == 0 {
                    return Err(located.error(
                        n.span().start,
                        "runtime.max_instances",
                        "must be at least 1",
                    ));
                }
                runtime.max_instances = *n.get_ref();
            }
            if let Some(size) = &rt.max_memory_per_instance {
                runtime.max_memory_per_instance =
                    located.size(size, "runtime.max_memory_per_instance")?;
            }
            if let Some(size) = &rt.max_memory_total {
                runtime.max_memory_total = located.size(size, "runtime.max_memory_total")?;
                if runtime.max_memory_total == 0 {
                    return Err(located.error(
                        size.span().start,
                        "runtime.max_memory_total",
                        "must be greater than zero",
                    ));
                }
            }
            for (value, key, field) in [
                (
                    &rt.max_core_instances_per_component,
                    "runtime.max_core_instances_per_component",
                    &mut runtime.max_core_instances_per_component,
                ),
                (
                    &rt.max_memories_per_component,
                    "runtime.max_memories_per_component",
                    &mut runtime.max_memories_per_component,
                ),
                (
                    &rt.max_tables_per_component,
                    "runtime.max_tables_per_component",
                    &mut runtime.max_tables_per_component,
                ),
            ] {
                if let Some(n) = value {
                    if *n.get_ref() == 0 {
                        return Err(located.error(n.span().start, key, "must be at least 1"));
                    }
                    *field = *n.get_ref();
                }
            }
            if let Some(dir) = &rt.compiled_cache {
                runtime.compiled_cache = if dir.get_ref().is_empty() {
                    None
                } else {
                    Some(base.join(dir.get_ref()))
                };
            }
            if let Some(size) = &rt.compiled_cache_max_size {
                runtime.compiled_cache_max_size =
                    located.size(size, "runtime.compiled_cache_max_size")?;
            }
            if let Some(size) = &rt.memory_keep_resident {
                runtime.memory_keep_resident =
                    located.size(size, "runtime.memory_keep_resident")?;
            }
            if let Some(tick) = &rt.epoch_tick {
                runtime.epoch_tick = located.duration(tick, "runtime.epoch_tick")?;
                if runtime.epoch_tick.is_zero() {
                    return Err(located.error(
                        tick.span().start,
                        "runtime.epoch_tick",
                        "must be greater than zero",
                    ));
                }
            }
        }

        if let Some(build) = &raw.build {
            crate::scaffold::Language::parse(build.language.get_ref()).map_err(|e| {
                located.error(build.language.span().start, "build.language", e.to_string())
            })?;
            crate::scaffold::project::check_name(build.name.get_ref())
                .map_err(|e| located.error(build.name.span().start, "build.name", e.to_string()))?;
        }

        let admin = match &raw.admin {
            None => None,
            Some(a) => {
                let mut admin = AdminConfig::default();
                if let Some(l) = &a.listen {
                    admin.listen = l.get_ref().parse().map_err(|e| {
                        located.error(
                            l.span().start,
                            "admin.listen",
                            format!(
                                "`{}` is not an address like 127.0.0.1:9090: {e}",
                                l.get_ref()
                            ),
                        )
                    })?;
                }
                if let Some(d) = &a.data_dir {
                    admin.data_dir = base.join(d.get_ref());
                }
                if let Some(size) = &a.max_module_size {
                    admin.max_module_size = located.size(size, "admin.max_module_size")?;
                }
                if let Some(t) = &a.max_compile_time {
                    admin.max_compile_time = located.duration(t, "admin.max_compile_time")?;
                    if admin.max_compile_time.is_zero() {
                        return Err(located.error(
                            t.span().start,
                            "admin.max_compile_time",
                            "must be greater than zero",
                        ));
                    }
                }
                if let Some(t) = &a.tls {
                    admin.tls = Some(TlsConfig {
                        cert: existing_file(&t.cert, "admin.tls.cert")?,
                        key: existing_file(&t.key, "admin.tls.key")?,
                    });
                }
                Some(admin)
            }
        };

        // With a control plane, routes can come from deploys instead.
        if raw.route.is_empty() && admin.is_none() {
            return Err(ConfigError::Parse {
                path: path.to_path_buf(),
                message: "no routes: add at least one [[route]] with `path` and `module`, or an [admin] section to deploy routes through the admin API"
                    .to_string(),
            });
        }
        let tenants = located.tenants(&raw.tenant)?;
        let mut routes = Vec::with_capacity(raw.route.len());
        for (i, r) in raw.route.iter().enumerate() {
            let key = |k: &str| format!("route[{i}].{k}");
            let pattern = r.path.get_ref().clone();
            let tenant = match &r.tenant {
                None => crate::server::routes::DEFAULT_TENANT.to_string(),
                Some(t) => {
                    let declared = tenants.iter().find(|d| &d.name == t.get_ref());
                    match declared {
                        Some(d) if d.path_prefix.is_some() => d.name.clone(),
                        Some(_) => {
                            return Err(located.error(
                                t.span().start,
                                &key("tenant"),
                                format!(
                                    "tenant `{}` has no path_prefix: give it one, its routes are matched under it",
                                    t.get_ref()
                                ),
                            ));
                        }
                        None if t.get_ref() == crate::server::routes::DEFAULT_TENANT => {
                            t.get_ref().clone()
                        }
                        None => {
                            return Err(located.error(
                                t.span().start,
                                &key("tenant"),
                                format!(
                                    "no tenant `{}`: declare it with a [[tenant]] section (name, path_prefix)",
                                    t.get_ref()
                                ),
                            ));
                        }
                    }
                }
            };
            // A tenant's route is matched under its namespace, as the
            // admin API binds them.
            let prefix = tenants
                .iter()
                .find(|d| d.name == tenant)
                .and_then(|d| d.path_prefix.as_deref());
            let pattern = match prefix {
                None => pattern,
                Some(prefix) => namespaced(prefix, &pattern).ok_or_else(|| {
                    located.error(
                        r.path.span().start,
                        &key("path"),
                        format!("`{pattern}` must start with `/`: a tenant's routes are matched under its path_prefix"),
                    )
                })?,
            };
            if let Err(e) = regex::Regex::new(&crate::server::routes::anchor(&pattern)) {
                return Err(located.error(
                    r.path.span().start,
                    &key("path"),
                    format!("invalid regular expression: {e}"),
                ));
            }
            let module_path = base.join(r.module.get_ref());
            if !module_path.is_file() {
                return Err(located.error(
                    r.module.span().start,
                    &key("module"),
                    format!("no such file: {}", module_path.display()),
                ));
            }
            let mut limits = RouteLimits::default();
            if let Some(s) = &r.max_message_size {
                limits.max_message_size = located.size(s, &key("max_message_size"))?;
                if limits.max_message_size == 0 {
                    return Err(located.error(
                        s.span().start,
                        &key("max_message_size"),
                        "must be greater than zero",
                    ));
                }
                if limits.max_message_size > MAX_MESSAGE_SIZE_LIMIT {
                    return Err(located.error(
                        s.span().start,
                        &key("max_message_size"),
                        "must be at most 1GiB: a message has to fit in the handler's 32-bit memory",
                    ));
                }
            }
            if let Some(s) = &r.memory_limit {
                limits.memory_limit = located.size(s, &key("memory_limit"))?;
                if limits.memory_limit > runtime.max_memory_per_instance {
                    return Err(located.error(
                        s.span().start,
                        &key("memory_limit"),
                        format!(
                            "{} bytes is more than runtime.max_memory_per_instance ({} bytes)",
                            limits.memory_limit, runtime.max_memory_per_instance
                        ),
                    ));
                }
            } else {
                limits.memory_limit = limits.memory_limit.min(runtime.max_memory_per_instance);
            }
            if let Some(d) = &r.cpu_time_per_event {
                limits.cpu_time_per_event = located.duration(d, &key("cpu_time_per_event"))?;
                if limits.cpu_time_per_event.is_zero() {
                    return Err(located.error(
                        d.span().start,
                        &key("cpu_time_per_event"),
                        "must be greater than zero",
                    ));
                }
            }
            if let Some(d) = &r.cpu_time_per_second {
                limits.cpu_time_per_second = located.duration(d, &key("cpu_time_per_second"))?;
                if limits.cpu_time_per_second.is_zero()
                    || limits.cpu_time_per_second > Duration::from_secs(1)
                {
                    return Err(located.error(
                        d.span().start,
                        &key("cpu_time_per_second"),
                        "must be greater than zero and at most 1s (one core)",
                    ));
                }
            }
            if let Some(d) = &r.route_cpu_time_per_second {
                let v = located.duration(d, &key("route_cpu_time_per_second"))?;
                if v.is_zero() {
                    return Err(located.error(
                        d.span().start,
                        &key("route_cpu_time_per_second"),
                        "must be greater than zero (\"1s\" is one core)",
                    ));
                }
                limits.route_cpu_time_per_second = Some(v);
            }
            if let Some(d) = &r.wall_time_per_call {
                limits.wall_time_per_call = located.duration(d, &key("wall_time_per_call"))?;
                if limits.wall_time_per_call.is_zero() {
                    return Err(located.error(
                        d.span().start,
                        &key("wall_time_per_call"),
                        "must be greater than zero",
                    ));
                }
            }
            if let Some(n) = &r.log_lines_per_second {
                if *n.get_ref() == 0 {
                    return Err(located.error(
                        n.span().start,
                        &key("log_lines_per_second"),
                        "must be at least 1 (guest logs cannot be switched off here; lower RUST_LOG instead)",
                    ));
                }
                limits.log_lines_per_second = *n.get_ref();
            }
            if let Some(n) = &r.log_bytes_per_second {
                limits.log_bytes_per_second = located.size(n, &key("log_bytes_per_second"))?;
                if limits.log_bytes_per_second == 0 {
                    return Err(located.error(
                        n.span().start,
                        &key("log_bytes_per_second"),
                        "must be at least 1 (guest logs cannot be switched off here; lower RUST_LOG instead)",
                    ));
                }
            }
            if let Some(d) = &r.clock_resolution {
                limits.clock_resolution = located.duration(d, &key("clock_resolution"))?;
                if limits.clock_resolution > Duration::from_secs(1) {
                    return Err(located.error(
                        d.span().start,
                        &key("clock_resolution"),
                        "must be at most 1s (0 gives handlers the host's own resolution)",
                    ));
                }
            }
            if let Some(n) = &r.max_concurrent_calls {
                if *n.get_ref() == 0 {
                    return Err(located.error(
                        n.span().start,
                        &key("max_concurrent_calls"),
                        "must be at least 1",
                    ));
                }
                limits.max_concurrent_calls = Some(*n.get_ref());
            }
            if let Some(s) = &r.max_backpressure {
                let n = located.size(s, &key("max_backpressure"))?;
                if n < 1024 {
                    return Err(located.error(
                        s.span().start,
                        &key("max_backpressure"),
                        "must be at least 1KiB",
                    ));
                }
                limits.max_backpressure = usize::try_from(n).unwrap_or(usize::MAX);
            }
            if let Some(policy) = &r.slow_consumer {
                limits.slow_consumer = match policy.get_ref().as_str() {
                    "drop" => SlowConsumerPolicy::Drop,
                    "close" => SlowConsumerPolicy::Close,
                    other => {
                        return Err(located.error(
                            policy.span().start,
                            &key("slow_consumer"),
                            format!("`{other}` is not a policy: use \"drop\" (the default: skip messages for it while it is over max_backpressure) or \"close\" (close it with 1008)"),
                        ));
                    }
                };
            }
            if let Some(fanout) = &r.pubsub_fanout {
                limits.pubsub_fanout = match fanout.get_ref().as_str() {
                    "shared" => Fanout::Shared,
                    "per_connection" => Fanout::PerConnection,
                    other => {
                        return Err(located.error(
                            fanout.span().start,
                            &key("pubsub_fanout"),
                            format!("`{other}` is not a fan-out: use \"shared\" (the default: encode and compress once for every subscriber) or \"per_connection\" (each connection compresses itself; a benchmark baseline)"),
                        ));
                    }
                };
            }
            let mut origin = OriginConfig::default();
            if let Some(list) = &r.allowed_origins {
                for o in list.get_ref() {
                    if let Err(m) = crate::server::origin::validate_allowed(o) {
                        return Err(located.error(list.span().start, &key("allowed_origins"), m));
                    }
                    origin.allowed.push(o.clone());
                }
            }
            if let Some(policy) = &r.origin_policy {
                origin.enforce = match policy.get_ref().as_str() {
                    "enforce" => true,
                    "handler" => false,
                    other => {
                        return Err(located.error(
                            policy.span().start,
                            &key("origin_policy"),
                            format!("`{other}` is not a policy: use \"handler\" (the default: the handler may override the host's verdict) or \"enforce\""),
                        ));
                    }
                };
            }
            let mut keepalive = Keepalive::default();
            if let Some(d) = &r.ping_interval {
                let v = located.duration(d, &key("ping_interval"))?;
                // 0 disables pings, as in Tornado.
                keepalive.ping_interval = (!v.is_zero()).then_some(v);
            }
            if let Some(d) = &r.ping_timeout {
                let v = located.duration(d, &key("ping_timeout"))?;
                if v.is_zero() {
                    return Err(located.error(
                        d.span().start,
                        &key("ping_timeout"),
                        "must be greater than zero (leave it out to use ping_interval)",
                    ));
                }
                match keepalive.ping_interval {
                    None => {
                        return Err(located.error(
                            d.span().start,
                            &key("ping_timeout"),
                            "needs ping_interval: without pings there is nothing to time out",
                        ));
                    }
                    Some(interval) if v > interval => {
                        return Err(located.error(
                            d.span().start,
                            &key("ping_timeout"),
                            format!(
                                "{v:?} is longer than ping_interval ({interval:?}); like Tornado 6.5, the timeout may not exceed the interval"
                            ),
                        ));
                    }
                    Some(_) => keepalive.ping_timeout = Some(v),
                }
            }
            let compression = match &r.compression {
                None => None,
                Some(c) => Some(located.compression(c, &key("compression"))?),
            };
            let mut hibernation = Hibernation::default();
            if let Some(d) = &r.hibernate_after {
                let v = located.duration(d, &key("hibernate_after"))?;
                // 0 leaves hibernation off, like an absent key.
                hibernation.after = (!v.is_zero()).then_some(v);
            }
            if let Some(s) = &r.max_attachment {
                let n = located.size(s, &key("max_attachment"))?;
                if n > 1 << 20 {
                    return Err(located.error(
                        s.span().start,
                        &key("max_attachment"),
                        "must be at most 1MiB (a hibernated connection is meant to be small; the default is 16KiB)",
                    ));
                }
                hibernation.max_attachment = usize::try_from(n).unwrap_or(usize::MAX);
            }
            if let Some(a) = &r.auto_response {
                if a.request.is_empty() {
                    return Err(located.error(
                        r.path.span().start,
                        &key("auto_response.request"),
                        "must not be empty",
                    ));
                }
                hibernation.auto_response = Some(AutoResponse {
                    request: a.request.clone(),
                    response: a.response.clone(),
                });
            }
            routes.push(RouteConfig {
                pattern,
                tenant,
                module: ModuleSource::File(module_path),
                limits,
                origin,
                keepalive,
                compression,
                hibernation,
            });
        }
        let mut pages: Vec<PageConfig> = Vec::with_capacity(raw.page.len());
        for (i, p) in raw.page.iter().enumerate() {
            let key = |k: &str| format!("page[{i}].{k}");
            let page_path = p.path.get_ref();
            if !page_path.starts_with('/') || page_path.contains(['?', '#']) {
                return Err(located.error(
                    p.path.span().start,
                    &key("path"),
                    format!("`{page_path}` is not a request path like \"/\" or \"/chat.html\""),
                ));
            }
            if pages.iter().any(|other| &other.path == page_path) {
                return Err(located.error(
                    p.path.span().start,
                    &key("path"),
                    format!("`{page_path}` is already served by an earlier [[page]]"),
                ));
            }
            let file = base.join(p.file.get_ref());
            if !file.is_file() {
                return Err(located.error(
                    p.file.span().start,
                    &key("file"),
                    format!("no such file: {}", file.display()),
                ));
            }
            pages.push(PageConfig {
                path: page_path.clone(),
                source: PageSource::File(file),
            });
        }
        let mut pubsub = PubsubConfig::default();
        if let Some(raw_pubsub) = &raw.pubsub {
            let own = RawPubsubLimits {
                max_subscriptions_per_connection: raw_pubsub
                    .max_subscriptions_per_connection
                    .clone(),
                max_publishes_per_second: raw_pubsub.max_publishes_per_second.clone(),
            };
            pubsub.default_limits =
                located.pubsub_limits(&own, PubsubLimits::default(), "pubsub")?;
            pubsub.broker = located.broker(raw_pubsub)?;
        }
        Ok(Config {
            listen,
            server,
            tls,
            runtime,
            routes,
            tenants,
            pages,
            admin,
            pubsub,
        })
    }
}

/// Turns byte offsets into `file:line` errors.
struct Locator<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Locator<'_> {
    fn error(&self, offset: usize, key: &str, message: impl Into<String>) -> ConfigError {
        let line = self
            .text
            .get(..offset)
            .map(|before| before.matches('\n').count() + 1)
            .unwrap_or(1);
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line,
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// The `[[tenant]]` sections: names valid and unique, namespaces that
    /// do not nest, limits of at least 1.
    fn tenants(&self, raw: &[RawTenant]) -> Result<Vec<TenantConfig>, ConfigError> {
        let mut tenants: Vec<TenantConfig> = Vec::with_capacity(raw.len());
        for (i, t) in raw.iter().enumerate() {
            let key = |k: &str| format!("tenant[{i}].{k}");
            let name = t.name.get_ref().clone();
            if let Err(e) = crate::registry::check_name("tenant", &name) {
                return Err(self.error(t.name.span().start, &key("name"), e.to_string()));
            }
            if tenants.iter().any(|o| o.name == name) {
                return Err(self.error(
                    t.name.span().start,
                    &key("name"),
                    format!("tenant `{name}` is declared twice"),
                ));
            }
            let path_prefix = match &t.path_prefix {
                None => None,
                Some(p) => {
                    let prefix = p.get_ref();
                    if name == crate::server::routes::DEFAULT_TENANT {
                        return Err(self.error(
                            p.span().start,
                            &key("path_prefix"),
                            "the default tenant has no namespace: its routes are matched as written",
                        ));
                    }
                    check_path_prefix(prefix)
                        .map_err(|m| self.error(p.span().start, &key("path_prefix"), m))?;
                    if let Some(o) = tenants.iter().find(|o| {
                        o.path_prefix
                            .as_deref()
                            .is_some_and(|q| prefixes_overlap(q, prefix))
                    }) {
                        return Err(self.error(
                            p.span().start,
                            &key("path_prefix"),
                            format!("{prefix} overlaps tenant `{}`'s namespace: namespaces must not nest", o.name),
                        ));
                    }
                    Some(prefix.clone())
                }
            };
            let at_least_1 =
                |v: Option<u64>, span: Option<std::ops::Range<usize>>, k: &str| match (v, span) {
                    (Some(0), Some(span)) => Err(self.error(
                        span.start,
                        &key(k),
                        "must be at least 1 (leave it out for no limit)",
                    )),
                    _ => Ok(v),
                };
            let size =
                |v: &Option<Spanned<SizeValue>>, k: &str| -> Result<Option<u64>, ConfigError> {
                    match v {
                        None => Ok(None),
                        Some(v) => at_least_1(Some(self.size(v, &key(k))?), Some(v.span()), k),
                    }
                };
            let max_connections = at_least_1(
                t.max_connections.as_ref().map(|v| *v.get_ref()),
                t.max_connections.as_ref().map(|v| v.span()),
                "max_connections",
            )?;
            let small = |v: &Option<Spanned<u32>>, k: &str| {
                at_least_1(
                    v.as_ref().map(|v| u64::from(*v.get_ref())),
                    v.as_ref().map(|v| v.span()),
                    k,
                )
                .map(|v| v.map(|n| u32::try_from(n).unwrap_or(u32::MAX)))
            };
            let limits = TenantLimits {
                max_memory_total: size(&t.max_memory_total, "max_memory_total")?,
                max_concurrent_calls: small(&t.max_concurrent_calls, "max_concurrent_calls")?,
                log_lines_per_second: small(&t.log_lines_per_second, "log_lines_per_second")?,
                log_bytes_per_second: size(&t.log_bytes_per_second, "log_bytes_per_second")?,
                clock_resolution_ms: t.clock_resolution_ms.as_ref().map(|v| *v.get_ref()),
                max_subscriptions_per_connection: small(
                    &t.max_subscriptions_per_connection,
                    "max_subscriptions_per_connection",
                )?,
                max_publishes_per_second: small(
                    &t.max_publishes_per_second,
                    "max_publishes_per_second",
                )?,
                max_message_size: size(&t.max_message_size, "max_message_size")?,
                max_output_buffer: size(&t.max_output_buffer, "max_output_buffer")?,
                memory_limit: size(&t.memory_limit, "memory_limit")?,
                cpu_time_per_event_ms: at_least_1(
                    t.cpu_time_per_event_ms.as_ref().map(|v| *v.get_ref()),
                    t.cpu_time_per_event_ms.as_ref().map(|v| v.span()),
                    "cpu_time_per_event_ms",
                )?,
            };
            tenants.push(TenantConfig {
                name,
                path_prefix,
                max_connections,
                limits,
            });
        }
        Ok(tenants)
    }

    fn size(&self, value: &Spanned<SizeValue>, key: &str) -> Result<u64, ConfigError> {
        parse_size(value.get_ref()).map_err(|m| self.error(value.span().start, key, m))
    }

    fn compression(&self, raw: &RawCompression, key: &str) -> Result<DeflateConfig, ConfigError> {
        let mut c = DeflateConfig::default();
        let in_range = |v: &Spanned<i64>, name: &str, lo: i64, hi: i64| {
            let n = *v.get_ref();
            if (lo..=hi).contains(&n) {
                Ok(n)
            } else {
                Err(self.error(
                    v.span().start,
                    &format!("{key}.{name}"),
                    format!("{n} is out of range: use {lo} to {hi}"),
                ))
            }
        };
        if let Some(v) = &raw.compression_level {
            c.compression_level = in_range(v, "compression_level", 0, 9)? as u32;
        }
        if let Some(v) = &raw.mem_level {
            c.mem_level = in_range(v, "mem_level", 1, 9)? as u8;
        }
        if let Some(v) = &raw.server_max_window_bits {
            c.server_max_window_bits = in_range(v, "server_max_window_bits", 8, 15)? as u8;
        }
        if let Some(v) = &raw.client_max_window_bits {
            c.client_max_window_bits = in_range(v, "client_max_window_bits", 8, 15)? as u8;
        }
        if let Some(v) = raw.server_no_context_takeover {
            c.server_no_context_takeover = v;
        }
        if let Some(v) = raw.client_no_context_takeover {
            c.client_no_context_takeover = v;
        }
        if let Some(v) = &raw.min_size {
            c.min_compress_size =
                usize::try_from(self.size(v, &format!("{key}.min_size"))?).unwrap_or(usize::MAX);
        }
        Ok(c)
    }

    fn pubsub_limits(
        &self,
        raw: &RawPubsubLimits,
        defaults: PubsubLimits,
        key: &str,
    ) -> Result<PubsubLimits, ConfigError> {
        let mut limits = defaults;
        let at_least_one = |v: &Spanned<u32>, name: &str| {
            if *v.get_ref() == 0 {
                Err(self.error(
                    v.span().start,
                    &format!("{key}.{name}"),
                    "must be at least 1",
                ))
            } else {
                Ok(*v.get_ref())
            }
        };
        if let Some(v) = &raw.max_subscriptions_per_connection {
            limits.max_subscriptions_per_connection =
                at_least_one(v, "max_subscriptions_per_connection")?;
        }
        if let Some(v) = &raw.max_publishes_per_second {
            limits.max_publishes_per_second = at_least_one(v, "max_publishes_per_second")?;
        }
        Ok(limits)
    }

    fn broker(&self, raw: &RawPubsub) -> Result<Option<BrokerConfig>, ConfigError> {
        let backend = match &raw.backend {
            Some(b) => parse_backend(b.get_ref())
                .map_err(|m| self.error(b.span().start, "pubsub.backend", m))?,
            None => None,
        };
        let Some((kind, url)) = backend else {
            for (span, name) in [
                (raw.node_id.as_ref().map(|v| v.span()), "node_id"),
                (
                    raw.channel_prefix.as_ref().map(|v| v.span()),
                    "channel_prefix",
                ),
            ] {
                if let Some(span) = span {
                    return Err(self.error(
                        span.start,
                        &format!("pubsub.{name}"),
                        "only means something with a broker: set `backend` to a redis:// or nats:// URL",
                    ));
                }
            }
            return Ok(None);
        };
        let node_id = match &raw.node_id {
            Some(v) => match u16::try_from(*v.get_ref()) {
                Ok(id) if id > 0 => Some(id),
                _ => {
                    return Err(self.error(
                        v.span().start,
                        "pubsub.node_id",
                        "must be 1 to 65535, and different on every node",
                    ));
                }
            },
            None => None,
        };
        let channel_prefix = match &raw.channel_prefix {
            Some(p) => {
                let prefix = p.get_ref();
                let ok = !prefix.is_empty()
                    && prefix.len() <= 64
                    && prefix
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
                if !ok {
                    return Err(self.error(
                        p.span().start,
                        "pubsub.channel_prefix",
                        "must be 1 to 64 letters, digits, `-` or `_`",
                    ));
                }
                prefix.clone()
            }
            None => DEFAULT_CHANNEL_PREFIX.to_string(),
        };
        Ok(Some(BrokerConfig {
            kind,
            url,
            node_id,
            channel_prefix,
        }))
    }

    fn duration(&self, value: &Spanned<DurationValue>, key: &str) -> Result<Duration, ConfigError> {
        parse_duration(value.get_ref()).map_err(|m| self.error(value.span().start, key, m))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<Spanned<String>>,
    server: Option<RawServer>,
    tls: Option<RawTls>,
    runtime: Option<RawRuntime>,
    #[serde(default)]
    route: Vec<RawRoute>,
    #[serde(default)]
    tenant: Vec<RawTenant>,
    #[serde(default)]
    page: Vec<RawPage>,
    admin: Option<RawAdmin>,
    pubsub: Option<RawPubsub>,
    /// `[build]`: a handler project's (`wsbox new`), read by `wsbox
    /// build`; serving checks it and otherwise ignores it.
    build: Option<RawBuild>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuild {
    language: Spanned<String>,
    name: Spanned<String>,
}

/// `[pubsub]`: the default limits (a tenant's own are in its
/// `[[tenant]]` section).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPubsub {
    max_subscriptions_per_connection: Option<Spanned<u32>>,
    max_publishes_per_second: Option<Spanned<u32>>,
    backend: Option<Spanned<String>>,
    node_id: Option<Spanned<u32>>,
    channel_prefix: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPubsubLimits {
    max_subscriptions_per_connection: Option<Spanned<u32>>,
    max_publishes_per_second: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    name: Spanned<String>,
    path_prefix: Option<Spanned<String>>,
    max_connections: Option<Spanned<u64>>,
    max_memory_total: Option<Spanned<SizeValue>>,
    max_concurrent_calls: Option<Spanned<u32>>,
    log_lines_per_second: Option<Spanned<u32>>,
    log_bytes_per_second: Option<Spanned<SizeValue>>,
    clock_resolution_ms: Option<Spanned<u64>>,
    max_subscriptions_per_connection: Option<Spanned<u32>>,
    max_publishes_per_second: Option<Spanned<u32>>,
    max_message_size: Option<Spanned<SizeValue>>,
    max_output_buffer: Option<Spanned<SizeValue>>,
    memory_limit: Option<Spanned<SizeValue>>,
    cpu_time_per_event_ms: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<Spanned<String>>,
    data_dir: Option<Spanned<String>>,
    max_module_size: Option<Spanned<SizeValue>>,
    max_compile_time: Option<Spanned<DurationValue>>,
    tls: Option<RawTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPage {
    path: Spanned<String>,
    file: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Spanned<String>,
    key: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    handshake_timeout: Option<Spanned<DurationValue>>,
    max_header_bytes: Option<Spanned<SizeValue>>,
    drain_time: Option<Spanned<DurationValue>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuntime {
    max_instances: Option<Spanned<u32>>,
    max_memory_per_instance: Option<Spanned<SizeValue>>,
    max_memory_total: Option<Spanned<SizeValue>>,
    epoch_tick: Option<Spanned<DurationValue>>,
    max_core_instances_per_component: Option<Spanned<u32>>,
    max_memories_per_component: Option<Spanned<u32>>,
    max_tables_per_component: Option<Spanned<u32>>,
    compiled_cache: Option<Spanned<String>>,
    compiled_cache_max_size: Option<Spanned<SizeValue>>,
    memory_keep_resident: Option<Spanned<SizeValue>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    path: Spanned<String>,
    tenant: Option<Spanned<String>>,
    module: Spanned<String>,
    max_message_size: Option<Spanned<SizeValue>>,
    memory_limit: Option<Spanned<SizeValue>>,
    cpu_time_per_event: Option<Spanned<DurationValue>>,
    cpu_time_per_second: Option<Spanned<DurationValue>>,
    route_cpu_time_per_second: Option<Spanned<DurationValue>>,
    wall_time_per_call: Option<Spanned<DurationValue>>,
    log_lines_per_second: Option<Spanned<u32>>,
    log_bytes_per_second: Option<Spanned<SizeValue>>,
    clock_resolution: Option<Spanned<DurationValue>>,
    max_concurrent_calls: Option<Spanned<u32>>,
    allowed_origins: Option<Spanned<Vec<String>>>,
    origin_policy: Option<Spanned<String>>,
    ping_interval: Option<Spanned<DurationValue>>,
    ping_timeout: Option<Spanned<DurationValue>>,
    max_backpressure: Option<Spanned<SizeValue>>,
    slow_consumer: Option<Spanned<String>>,
    pubsub_fanout: Option<Spanned<String>>,
    compression: Option<RawCompression>,
    hibernate_after: Option<Spanned<DurationValue>>,
    max_attachment: Option<Spanned<SizeValue>>,
    auto_response: Option<RawAutoResponse>,
}

/// `[route.auto_response]`: a text answered without waking a hibernated
/// connection.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAutoResponse {
    request: String,
    response: String,
}

/// `[route.compression]`: present (even empty) turns permessage-deflate on.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompression {
    compression_level: Option<Spanned<i64>>,
    mem_level: Option<Spanned<i64>>,
    server_max_window_bits: Option<Spanned<i64>>,
    client_max_window_bits: Option<Spanned<i64>>,
    server_no_context_takeover: Option<bool>,
    client_no_context_takeover: Option<bool>,
    min_size: Option<Spanned<SizeValue>>,
}

/// A size: a number of bytes, or a string with a unit (`"10MiB"`, `"512 KiB"`, `"1GB"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Bytes(i64),
    Text(String),
}

/// A duration: a number of seconds (Tornado's style, e.g. `0.5`), or a
/// string with a unit (`"500ms"`, `"10s"`, `"2m"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum DurationValue {
    Seconds(f64),
    Text(String),
}

/// Parses a size with an optional unit (`"10MiB"`, `"512 KiB"`, `"1GB"`, `"4096"`).
pub fn parse_size_text(text: &str) -> Result<u64, String> {
    parse_size(&SizeValue::Text(text.to_string()))
}

fn parse_size(value: &SizeValue) -> Result<u64, String> {
    match value {
        SizeValue::Bytes(n) => {
            u64::try_from(*n).map_err(|_| format!("{n} is not a size: it must not be negative"))
        }
        SizeValue::Text(s) => {
            let t = s.trim();
            let split = t
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(t.len());
            let (num, unit) = t.split_at(split);
            let num: f64 = num
                .parse()
                .map_err(|_| format!("`{s}` is not a size like \"10MiB\" or 1048576"))?;
            let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
                "" | "b" => 1,
                "k" | "kb" => 1000,
                "kib" => 1 << 10,
                "m" | "mb" => 1_000_000,
                "mib" => 1 << 20,
                "g" | "gb" => 1_000_000_000,
                "gib" => 1 << 30,
                other => {
                    return Err(format!(
                        "unknown size unit `{other}` in `{s}` (use B, KiB, MiB, GiB, KB, MB or GB)"
                    ));
                }
            };
            let bytes = num * mult as f64;
            if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
                return Err(format!("`{s}` is out of range"));
            }
            Ok(bytes as u64)
        }
    }
}

/// Parses seconds (`2.5`) or a number with a unit (`"500ms"`, `"10s"`, `"2m"`, `"1h"`).
pub fn parse_duration_text(text: &str) -> Result<Duration, String> {
    parse_duration(&DurationValue::Text(text.to_string()))
}

fn parse_duration(value: &DurationValue) -> Result<Duration, String> {
    let (num, unit, original) = match value {
        DurationValue::Seconds(n) => (*n, "s".to_string(), n.to_string()),
        DurationValue::Text(s) => {
            let t = s.trim();
            let split = t
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(t.len());
            let (num, unit) = t.split_at(split);
            let num: f64 = num
                .parse()
                .map_err(|_| format!("`{s}` is not a duration like \"500ms\", \"10s\" or 2.5"))?;
            (num, unit.trim().to_ascii_lowercase(), s.clone())
        }
    };
    let secs = match unit.as_str() {
        "ms" => num / 1000.0,
        "" | "s" => num,
        "m" | "min" => num * 60.0,
        "h" => num * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit `{other}` in `{original}` (use ms, s, m or h)"
            ));
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{original}` is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in(dir: &Path, text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, &dir.join("wsbox.toml"))
    }

    fn temp_dir_with_module() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "wsbox-config-test-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("echo.wasm"), b"not really wasm").unwrap();
        dir
    }

    fn rand_suffix() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }

    #[test]
    fn compiled_cache_max_size_takes_a_size() {
        let dir = temp_dir_with_module();
        let route = "[[route]]\npath = \"/echo\"\nmodule = \"echo.wasm\"\n";
        let cfg = parse_in(&dir, route).unwrap();
        assert_eq!(cfg.runtime.compiled_cache_max_size, 2 << 30);
        let text = format!("[runtime]\ncompiled_cache_max_size = \"500MiB\"\n{route}");
        let cfg = parse_in(&dir, &text).unwrap();
        assert_eq!(cfg.runtime.compiled_cache_max_size, 500 << 20);
        let text = format!("[runtime]\nmemory_keep_resident = \"4MiB\"\n{route}");
        assert_eq!(
            parse_in(&dir, &text).unwrap().runtime.memory_keep_resident,
            4 << 20
        );
        let text = format!("[runtime]\ncompiled_cache_max_size = \"lots\"\n{route}");
        let e = parse_in(&dir, &text).unwrap_err().to_string();
        assert!(e.contains(":2: `runtime.compiled_cache_max_size`"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_build_section_is_checked_and_otherwise_ignored() {
        let dir = temp_dir_with_module();
        let route = "[[route]]\npath = \"/echo\"\nmodule = \"echo.wasm\"\n";
        let ok = format!("[build]\nlanguage = \"python\"\nname = \"echo\"\n{route}");
        assert_eq!(parse_in(&dir, &ok).unwrap().routes.len(), 1);
        let bad = format!("[build]\nlanguage = \"cobol\"\nname = \"echo\"\n{route}");
        assert_eq!(
            parse_in(&dir, &bad).unwrap_err().to_string(),
            format!(
                "{}:2: `build.language`: unknown language `cobol`: wsbox supports rust, python, javascript, go, c",
                dir.join("wsbox.toml").display()
            )
        );
        let bad = format!("[build]\nlanguage = \"c\"\nname = \"a b\"\n{route}");
        let e = parse_in(&dir, &bad).unwrap_err().to_string();
        assert!(
            e.contains(":3: `build.name`: `a b` cannot name a handler"),
            "{e}"
        );
        let bad = format!("[build]\nlanguage = \"c\"\nname = \"x\"\nout = \"y\"\n{route}");
        let e = parse_in(&dir, &bad).unwrap_err().to_string();
        assert!(e.contains("unknown field `out`"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn full_config_parses_with_units() {
        let dir = temp_dir_with_module();
        let cfg = parse_in(
            &dir,
            r#"
listen = "127.0.0.1:9000"
[server]
handshake_timeout = "3s"
max_header_bytes = "16KiB"
drain_time = 2
[runtime]
max_instances = 500
max_memory_per_instance = "256MiB"
epoch_tick = "5ms"
max_core_instances_per_component = 40
max_memories_per_component = 3
max_tables_per_component = 9

[[route]]
path = "/chat/(?P<room>\\w+)"
module = "echo.wasm"
max_message_size = "32MiB"
memory_limit = 100000000
cpu_time_per_event = 0.25
wall_time_per_call = "3s"
cpu_time_per_second = "200ms"
log_bytes_per_second = "1MiB"
"#,
        )
        .unwrap();
        assert_eq!(cfg.listen.port(), 9000);
        assert_eq!(cfg.server.handshake_timeout, Duration::from_secs(3));
        assert_eq!(cfg.server.max_header_bytes, 16 * 1024);
        assert_eq!(cfg.server.drain_time, Duration::from_secs(2));
        assert_eq!(cfg.runtime.max_instances, 500);
        assert_eq!(cfg.runtime.max_memory_per_instance, 256 << 20);
        assert_eq!(cfg.runtime.epoch_tick, Duration::from_millis(5));
        assert_eq!(cfg.runtime.max_core_instances_per_component, 40);
        assert_eq!(cfg.runtime.max_memories_per_component, 3);
        assert_eq!(cfg.runtime.max_tables_per_component, 9);
        let r = &cfg.routes[0];
        assert_eq!(r.limits.max_message_size, 32 << 20);
        assert_eq!(r.limits.memory_limit, 100_000_000);
        assert_eq!(r.limits.cpu_time_per_event, Duration::from_millis(250));
        assert_eq!(r.limits.wall_time_per_call, Duration::from_secs(3));
        assert_eq!(r.limits.cpu_time_per_second, Duration::from_millis(200));
        assert_eq!(r.limits.log_bytes_per_second, 1 << 20);
        assert_eq!(r.module, ModuleSource::File(dir.join("echo.wasm")));
    }

    #[test]
    fn defaults_apply() {
        let dir = temp_dir_with_module();
        let cfg = parse_in(&dir, "[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\n").unwrap();
        assert_eq!(cfg.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(cfg.routes[0].limits.max_message_size, 10 * 1024 * 1024);
    }

    fn err(text: &str) -> String {
        let dir = temp_dir_with_module();
        parse_in(&dir, text).unwrap_err().to_string()
    }

    #[test]
    fn tenants_are_declared_and_their_routes_live_under_their_prefix() {
        let dir = temp_dir_with_module();
        let cfg = parse_in(
            &dir,
            r#"
[[tenant]]
name = "acme"
path_prefix = "/acme"
max_connections = 5
max_memory_total = "64MiB"
max_concurrent_calls = 1
log_lines_per_second = 50
log_bytes_per_second = "32KiB"
clock_resolution_ms = 10

[[route]]
tenant = "acme"
path = '/chat/(\w+)'
module = "echo.wasm"

[[route]]
path = "/e"
module = "echo.wasm"
"#,
        )
        .unwrap();
        let acme = &cfg.tenants[0];
        assert_eq!(acme.path_prefix.as_deref(), Some("/acme"));
        assert_eq!(acme.max_connections, Some(5));
        assert_eq!(
            acme.limits,
            TenantLimits {
                max_memory_total: Some(64 << 20),
                max_concurrent_calls: Some(1),
                log_lines_per_second: Some(50),
                log_bytes_per_second: Some(32 << 10),
                clock_resolution_ms: Some(10),
                max_subscriptions_per_connection: None,
                max_publishes_per_second: None,
                max_message_size: None,
                max_output_buffer: None,
                memory_limit: None,
                cpu_time_per_event_ms: None,
            }
        );
        assert_eq!(cfg.routes[0].tenant, "acme");
        assert_eq!(cfg.routes[0].pattern, r"/acme/(?:chat/(\w+))");
        assert_eq!(cfg.routes[1].tenant, "default");
        assert_eq!(cfg.routes[1].pattern, "/e");

        let route = "[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\n";
        let e = err(&format!("{route}tenant = \"nobody\"\n"));
        assert!(
            e.contains("route[0].tenant") && e.contains("no tenant `nobody`"),
            "{e}"
        );
        let e = err(&format!(
            "[[tenant]]\nname = \"t\"\n{route}tenant = \"t\"\n"
        ));
        assert!(e.contains("has no path_prefix"), "{e}");
        let e = err(
            "[[tenant]]\nname = \"a\"\npath_prefix = \"/a\"\n[[tenant]]\nname = \"b\"\npath_prefix = \"/a/b\"\n[admin]\n",
        );
        assert!(
            e.contains("tenant[1].path_prefix") && e.contains("must not nest"),
            "{e}"
        );
        let e = err("[[tenant]]\nname = \"a\"\npath_prefix = \"a(\"\n[admin]\n");
        assert!(e.contains("must look like /name"), "{e}");
        let e = err("[[tenant]]\nname = \"a\"\nmax_connections = 0\n[admin]\n");
        assert!(
            e.contains("tenant[0].max_connections") && e.contains("at least 1"),
            "{e}"
        );
        let e = err("[[tenant]]\nname = \"a\"\n[[tenant]]\nname = \"a\"\n[admin]\n");
        assert!(e.contains("declared twice"), "{e}");
        let e = err("[[tenant]]\nname = \"default\"\npath_prefix = \"/d\"\n[admin]\n");
        assert!(e.contains("default tenant has no namespace"), "{e}");
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = err(
            "[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\nmax_message_size = \"10 parsecs\"\n",
        );
        assert!(e.contains("wsbox.toml:4:"), "{e}");
        assert!(e.contains("route[0].max_message_size"), "{e}");
        assert!(e.contains("unknown size unit"), "{e}");

        let e = err("[[route]]\npath = \"/e(\"\nmodule = \"echo.wasm\"\n");
        assert!(
            e.contains(":2:") && e.contains("route[0].path") && e.contains("regular expression"),
            "{e}"
        );

        let e = err("[[route]]\npath = \"/e\"\nmodule = \"missing.wasm\"\n");
        assert!(e.contains(":3:") && e.contains("no such file"), "{e}");

        let e = err("listen = \"nowhere\"\n[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\n");
        assert!(e.contains(":1:") && e.contains("`listen`"), "{e}");

        let e =
            err("[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\nmax_message_size = \"2GiB\"\n");
        assert!(e.contains(":4:") && e.contains("at most 1GiB"), "{e}");
    }

    #[test]
    fn unknown_keys_and_syntax_errors_are_reported_with_lines() {
        let e = err("[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\nmax_mesage_size = 5\n");
        assert!(e.contains("line 4") && e.contains("max_mesage_size"), "{e}");
        let e = err("[[route]\n");
        assert!(e.contains("line 1"), "{e}");
        let e = err("listen = \"127.0.0.1:1\"\n");
        assert!(e.contains("no routes"), "{e}");
    }

    #[test]
    fn pubsub_settings_and_their_errors() {
        let dir = temp_dir_with_module();
        let cfg = parse_in(
            &dir,
            "[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\nmax_backpressure = \"64KiB\"\nslow_consumer = \"close\"\npubsub_fanout = \"per_connection\"\n\
             [pubsub]\nmax_subscriptions_per_connection = 5\n\
             [[tenant]]\nname = \"acme\"\nmax_publishes_per_second = 7\n",
        )
        .unwrap();
        let r = &cfg.routes[0];
        assert_eq!(r.limits.max_backpressure, 64 * 1024);
        assert_eq!(r.limits.slow_consumer, SlowConsumerPolicy::Close);
        assert_eq!(r.limits.pubsub_fanout, Fanout::PerConnection);
        assert_eq!(
            cfg.pubsub.default_limits.max_subscriptions_per_connection,
            5
        );
        assert_eq!(cfg.tenants[0].limits.max_publishes_per_second, Some(7));
        assert_eq!(cfg.tenants[0].limits.max_subscriptions_per_connection, None);
        let defaults =
            parse_in(&dir, "[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\n").unwrap();
        assert_eq!(defaults.routes[0].limits.max_backpressure, 256 * 1024);
        assert_eq!(
            defaults.routes[0].limits.slow_consumer,
            SlowConsumerPolicy::Drop
        );
        let _ = std::fs::remove_dir_all(&dir);

        let e = err("[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\nslow_consumer = \"wait\"\n");
        assert!(
            e.contains(":4:") && e.contains("route[0].slow_consumer"),
            "{e}"
        );
        let e = err("[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\npubsub_fanout = \"each\"\n");
        assert!(e.contains("route[0].pubsub_fanout"), "{e}");
        let e = err("[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\nmax_backpressure = 10\n");
        assert!(e.contains("at least 1KiB"), "{e}");
        let e = err(
            "[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\n[[tenant]]\nname = \"x\"\nmax_publishes_per_second = 0\n",
        );
        assert!(
            e.contains(":6:") && e.contains("tenant[0].max_publishes_per_second"),
            "{e}"
        );
    }

    #[test]
    fn tenants_cap_message_size_and_output() {
        let dir = temp_dir_with_module();
        let cfg = parse_in(
            &dir,
            "[[tenant]]\nname = \"acme\"\npath_prefix = \"/acme\"\nmax_message_size = \"64KiB\"\nmax_output_buffer = \"1MiB\"\nmemory_limit = \"16MiB\"\ncpu_time_per_event_ms = 50\n[admin]\n",
        )
        .unwrap();
        let limits = &cfg.tenants[0].limits;
        assert_eq!(
            (limits.max_message_size, limits.max_output_buffer),
            (Some(64 << 10), Some(1 << 20))
        );
        assert_eq!(
            (limits.memory_limit, limits.cpu_time_per_event_ms),
            (Some(16 << 20), Some(50))
        );
        let e = parse_in(
            &dir,
            "[[tenant]]\nname = \"acme\"\npath_prefix = \"/acme\"\nmax_output_buffer = 0\n[admin]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("tenant[0].max_output_buffer"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_admin_api_takes_a_certificate_pair() {
        let dir = temp_dir_with_module();
        std::fs::write(dir.join("a.pem"), "x").unwrap();
        std::fs::write(dir.join("k.pem"), "x").unwrap();
        let cfg = parse_in(
            &dir,
            "[admin]\n[admin.tls]\ncert = \"a.pem\"\nkey = \"k.pem\"\n",
        )
        .unwrap();
        let tls = cfg.admin.unwrap().tls.unwrap();
        assert_eq!((tls.cert, tls.key), (dir.join("a.pem"), dir.join("k.pem")));
        let e = parse_in(
            &dir,
            "[admin]\n[admin.tls]\ncert = \"a.pem\"\nkey = \"missing.pem\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("admin.tls.key") && e.contains("missing.pem"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn pubsub_backends_name_a_broker_and_say_what_is_wrong() {
        let route = "[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\n";
        let dir = temp_dir_with_module();
        let cfg = parse_in(
            &dir,
            &format!("{route}[pubsub]\nbackend = \"nats://127.0.0.1:4222\"\nnode_id = 3\n"),
        )
        .unwrap();
        assert_eq!(
            cfg.pubsub.broker,
            Some(BrokerConfig {
                kind: BrokerKind::Nats,
                url: "nats://127.0.0.1:4222".into(),
                node_id: Some(3),
                channel_prefix: DEFAULT_CHANNEL_PREFIX.into(),
            })
        );
        let cfg = parse_in(
            &dir,
            &format!("{route}[pubsub]\nbackend = \"redis://10.0.0.5:6379/2\"\nchannel_prefix = \"prod-eu\"\n"),
        )
        .unwrap();
        let broker = cfg.pubsub.broker.unwrap();
        assert_eq!((broker.kind, broker.node_id), (BrokerKind::Redis, None));
        assert_eq!(broker.channel_prefix, "prod-eu");
        let local = parse_in(&dir, &format!("{route}[pubsub]\nbackend = \"local\"\n")).unwrap();
        assert_eq!(local.pubsub.broker, None);
        let _ = std::fs::remove_dir_all(&dir);

        for (toml, needles) in [
            (
                "backend = \"kafka://x\"",
                &["pubsub.backend", "\"local\"", "redis://", "nats://"][..],
            ),
            ("backend = \"rediss://x:6380\"", &["TLS to the broker"][..]),
            (
                "backend = \"redis://\"",
                &["names no host", "redis://127.0.0.1:6379"][..],
            ),
            (
                "backend = \"nats://h:4222\"\nnode_id = 0",
                &["pubsub.node_id", "1 to 65535"][..],
            ),
            (
                "backend = \"nats://h:4222\"\nnode_id = 70000",
                &["1 to 65535"][..],
            ),
            (
                "backend = \"nats://h:4222\"\nchannel_prefix = \"a.b\"",
                &["pubsub.channel_prefix", "letters, digits"][..],
            ),
            (
                "node_id = 2",
                &["pubsub.node_id", "only means something with a broker"][..],
            ),
        ] {
            let e = err(&format!("{route}[pubsub]\n{toml}\n"));
            for needle in needles {
                assert!(e.contains(needle), "{toml}: {e}");
            }
            assert!(
                e.contains(":5:") || e.contains(":6:"),
                "{toml}: no line in {e}"
            );
        }
    }

    #[test]
    fn hibernation_settings() {
        let dir = temp_dir_with_module();
        let cfg = parse_in(
            &dir,
            "[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\nhibernate_after = \"10s\"\nmax_attachment = \"4KiB\"\n[route.auto_response]\nrequest = \"ping\"\nresponse = \"pong\"\n",
        )
        .unwrap();
        let h = &cfg.routes[0].hibernation;
        assert_eq!(h.after, Some(Duration::from_secs(10)));
        assert_eq!(h.max_attachment, 4096);
        assert_eq!(
            h.auto_response,
            Some(AutoResponse {
                request: "ping".into(),
                response: "pong".into()
            })
        );
        // Off by default, with the 16 KiB attachment limit.
        let cfg = parse_in(&dir, "[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\n").unwrap();
        assert_eq!(cfg.routes[0].hibernation, Hibernation::default());
        assert_eq!(cfg.routes[0].hibernation.after, None);
        assert_eq!(cfg.routes[0].hibernation.max_attachment, 16 * 1024);
        let e =
            err("[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\nmax_attachment = \"2MiB\"\n");
        assert!(
            e.contains("max_attachment") && e.contains("at most 1MiB"),
            "{e}"
        );
    }

    #[test]
    fn origin_and_keepalive_settings() {
        let dir = temp_dir_with_module();
        let cfg = parse_in(
            &dir,
            "[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\nallowed_origins = [\"https://*.example.com\", \"http://localhost:3000\"]\norigin_policy = \"enforce\"\nping_interval = \"20s\"\nping_timeout = 5\n",
        )
        .unwrap();
        let r = &cfg.routes[0];
        assert_eq!(r.origin.allowed.len(), 2);
        assert!(r.origin.enforce);
        assert_eq!(r.keepalive.ping_interval, Some(Duration::from_secs(20)));
        assert_eq!(
            r.keepalive.effective_timeout(),
            Some(Duration::from_secs(5))
        );

        let cfg = parse_in(
            &dir,
            "[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\nping_interval = 3\n",
        )
        .unwrap();
        assert_eq!(
            cfg.routes[0].keepalive.effective_timeout(),
            Some(Duration::from_secs(3))
        );
    }

    #[test]
    fn compression_absent_is_off_empty_is_on_and_values_are_checked() {
        let dir = temp_dir_with_module();
        let base = "[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\n";
        let cfg = parse_in(&dir, base).unwrap();
        assert!(cfg.routes[0].compression.is_none());
        let cfg = parse_in(&dir, &format!("{base}[route.compression]\n")).unwrap();
        assert_eq!(cfg.routes[0].compression, Some(DeflateConfig::default()));
        let cfg = parse_in(
            &dir,
            &format!("{base}[route.compression]\ncompression_level = 1\nmem_level = 4\nclient_max_window_bits = 10\nserver_no_context_takeover = true\nmin_size = \"1KiB\"\n"),
        )
        .unwrap();
        let c = cfg.routes[0].compression.clone().unwrap();
        assert_eq!(
            (c.compression_level, c.mem_level, c.client_max_window_bits),
            (1, 4, 10)
        );
        assert!(c.server_no_context_takeover && !c.client_no_context_takeover);
        assert_eq!(c.min_compress_size, 1024);
        let e = err(&format!(
            "{base}[route.compression]\nserver_max_window_bits = 16\n"
        ));
        assert!(
            e.contains(":5:") && e.contains("route[0].compression.server_max_window_bits"),
            "{e}"
        );
    }

    #[test]
    fn keepalive_and_origin_errors() {
        let base = "[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\n";
        let e = err(&format!("{base}ping_interval = 5\nping_timeout = 10\n"));
        assert!(
            e.contains(":5:") && e.contains("may not exceed the interval"),
            "{e}"
        );
        let e = err(&format!("{base}ping_timeout = 10\n"));
        assert!(e.contains("needs ping_interval"), "{e}");
        let e = err(&format!("{base}origin_policy = \"lax\"\n"));
        assert!(e.contains(":4:") && e.contains("origin_policy"), "{e}");
        let e = err(&format!("{base}allowed_origins = [\"example.com\"]\n"));
        assert!(e.contains(":4:") && e.contains("allowed_origins"), "{e}");
    }

    #[test]
    fn memory_limit_must_fit_the_pool() {
        let e = err(
            "[runtime]\nmax_memory_per_instance = \"16MiB\"\n[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\nmemory_limit = \"32MiB\"\n",
        );
        assert!(
            e.contains(":6:") && e.contains("max_memory_per_instance"),
            "{e}"
        );
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size(&SizeValue::Text("1.5KiB".into())), Ok(1536));
        assert_eq!(parse_size(&SizeValue::Text("2 MB".into())), Ok(2_000_000));
        assert!(parse_size(&SizeValue::Bytes(-1)).is_err());
        assert!(parse_size(&SizeValue::Text("MiB".into())).is_err());
        assert_eq!(
            parse_duration(&DurationValue::Text("250ms".into())),
            Ok(Duration::from_millis(250))
        );
        assert_eq!(
            parse_duration(&DurationValue::Seconds(2.0)),
            Ok(Duration::from_secs(2))
        );
        assert!(parse_duration(&DurationValue::Seconds(-1.0)).is_err());
        assert!(parse_duration(&DurationValue::Text("5 fortnights".into())).is_err());
    }
}
