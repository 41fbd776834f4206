//! The server's TOML configuration: the settings types and their defaults
//! (here), the file's serde shape ([`raw`]), and loading with validation
//! ([`load`]). Sizes and durations are parsed by `wsbox_io::units`.
//!
//! Every error names the file, the line and the key at fault, so that an
//! operator can fix a config without reading the source.

pub mod build;
mod load;
pub mod origin;
pub mod pubsub;
mod raw;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use pubsub::{Fanout, PubsubLimits, SlowConsumerPolicy};
use serde::{Deserialize, Serialize};
use wsbox_io::units::{DurationValue, SizeValue, parse_duration, parse_size};
pub use wsbox_protocol::deflate::DeflateConfig;
use wsbox_runtime::limits::SandboxSettings;
pub use wsbox_runtime::settings::{
    DEFAULT_MAX_CORE_INSTANCES_PER_COMPONENT, DEFAULT_MAX_INSTANCES,
    DEFAULT_MAX_MEMORIES_PER_COMPONENT, DEFAULT_MAX_MEMORY_PER_INSTANCE,
    DEFAULT_MAX_TABLES_PER_COMPONENT, DEFAULT_MEMORY_KEEP_RESIDENT, ModuleSource, RuntimeConfig,
    default_compiled_cache,
};

/// The default `max_message_size`, Tornado's `websocket_max_message_size`.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 10 * 1024 * 1024;
/// The largest `max_message_size` accepted.
pub const MAX_MESSAGE_SIZE_LIMIT: u64 = 1024 * 1024 * 1024;
/// The default cap on one instance's linear memory.
pub const DEFAULT_MEMORY_LIMIT: u64 = 64 * 1024 * 1024;
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

/// A route's path pattern, compiled once when the route is configured (or
/// bound through the admin API): the regex as written, and its anchored
/// form that must match the whole path (Tornado anchors its patterns the
/// same way).
#[derive(Debug, Clone)]
pub struct RoutePattern {
    /// Shared with every connection's registry entry.
    source: std::sync::Arc<str>,
    regex: regex::Regex,
}

impl RoutePattern {
    /// Compiles `pattern`; the error says what is wrong with the regex.
    pub fn new(pattern: impl Into<String>) -> Result<RoutePattern, regex::Error> {
        let source: String = pattern.into();
        let regex = regex::Regex::new(&anchor(&source))?;
        Ok(RoutePattern {
            source: source.into(),
            regex,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The pattern as written, shared.
    pub fn shared(&self) -> &std::sync::Arc<str> {
        &self.source
    }

    /// The anchored regex paths are matched with.
    pub fn regex(&self) -> &regex::Regex {
        &self.regex
    }
}

impl std::fmt::Display for RoutePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

/// Anchors a route pattern so it must match the whole path, as Tornado does.
pub fn anchor(pattern: &str) -> String {
    format!("^(?:{pattern})$")
}

/// The tenant of config-file routes, and of a config without tenants.
pub const DEFAULT_TENANT: &str = "default";

/// One route: a path pattern and the handler that serves it.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// The path regex as written; it must match the whole path (Tornado
    /// anchors its patterns the same way). A tenant's route is matched
    /// under its `path_prefix`.
    pub pattern: RoutePattern,
    /// The tenant the route belongs to (`default` unless it names one).
    pub tenant: String,
    /// The handler component.
    pub module: ModuleSource,
    /// Limits for this route's connections.
    pub limits: RouteLimits,
    /// Which browser origins may connect.
    pub origin: origin::OriginPolicy,
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

/// The largest `max_attachment` a route may set.
pub const MAX_ATTACHMENT_LIMIT: u64 = 1 << 20;

/// A route's hibernation settings: `hibernate_after`, `max_attachment`,
/// `[route.auto_response]`. Config routes read them from the file, routes
/// bound through the admin API from the deployment request (the same
/// names, units and rules: [`Hibernation::parse_after`],
/// [`Hibernation::parse_max_attachment`], [`AutoResponse::new`]).
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

impl Hibernation {
    /// `hibernate_after` as written (`"10s"`, `"500ms"`, `2.5` seconds);
    /// 0 leaves hibernation off, like an absent key. The error says what
    /// is wrong with the value, without the key.
    pub fn parse_after(value: &DurationValue) -> Result<Option<Duration>, String> {
        let v = parse_duration(value)?;
        Ok((!v.is_zero()).then_some(v))
    }

    /// `max_attachment` as written (`"16KiB"`, `4096`): at most 1 MiB.
    pub fn parse_max_attachment(value: &SizeValue) -> Result<usize, String> {
        let n = parse_size(value)?;
        if n > MAX_ATTACHMENT_LIMIT {
            return Err(
                "must be at most 1MiB (a hibernated connection is meant to be small; the default is 16KiB)"
                    .into(),
            );
        }
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

/// A request text and the host's response to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoResponse {
    /// The whole text message to answer (compared exactly).
    pub request: String,
    /// The text message sent back.
    pub response: String,
}

impl AutoResponse {
    /// A pair as written: the request may not be empty (the error names
    /// which of the two keys is wrong: `request`).
    pub fn new(request: &str, response: &str) -> Result<AutoResponse, (&'static str, String)> {
        if request.is_empty() {
            return Err(("request", "must not be empty".into()));
        }
        Ok(AutoResponse {
            request: request.to_string(),
            response: response.to_string(),
        })
    }
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

impl RouteLimits {
    /// The part of these limits the wasm runtime enforces.
    pub fn sandbox(&self) -> SandboxSettings {
        SandboxSettings {
            max_message_size: self.max_message_size,
            memory_limit: self.memory_limit,
            cpu_time_per_event: self.cpu_time_per_event,
            cpu_time_per_second: self.cpu_time_per_second,
            route_cpu_time_per_second: self.route_cpu_time_per_second,
            wall_time_per_call: self.wall_time_per_call,
            log_lines_per_second: self.log_lines_per_second,
            log_bytes_per_second: self.log_bytes_per_second,
            clock_resolution: self.clock_resolution,
            max_concurrent_calls: self.max_concurrent_calls,
        }
    }
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
            max_backpressure: pubsub::DEFAULT_MAX_BACKPRESSURE,
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
