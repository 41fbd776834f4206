//! The config file's shape as serde reads it: every value kept with its
//! place in the file (`Spanned`) so that errors can name the line.

use serde::Deserialize;
use toml::Spanned;
use wsbox_io::units::{DurationValue, SizeValue};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) listen: Option<Spanned<String>>,
    pub(super) server: Option<RawServer>,
    pub(super) tls: Option<RawTls>,
    pub(super) runtime: Option<RawRuntime>,
    #[serde(default)]
    pub(super) route: Vec<RawRoute>,
    #[serde(default)]
    pub(super) tenant: Vec<RawTenant>,
    #[serde(default)]
    pub(super) page: Vec<RawPage>,
    pub(super) admin: Option<RawAdmin>,
    pub(super) pubsub: Option<RawPubsub>,
    /// `[build]`: a handler project's (`wsbox new`), read by `wsbox
    /// build`; serving checks it and otherwise ignores it.
    pub(super) build: Option<RawBuild>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBuild {
    pub(super) language: Spanned<String>,
    pub(super) name: Spanned<String>,
    pub(super) world: Option<Spanned<String>>,
}

/// `[pubsub]`: the default limits (a tenant's own are in its
/// `[[tenant]]` section).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPubsub {
    pub(super) max_subscriptions_per_connection: Option<Spanned<u32>>,
    pub(super) max_publishes_per_second: Option<Spanned<u32>>,
    pub(super) backend: Option<Spanned<String>>,
    pub(super) node_id: Option<Spanned<u32>>,
    pub(super) channel_prefix: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPubsubLimits {
    pub(super) max_subscriptions_per_connection: Option<Spanned<u32>>,
    pub(super) max_publishes_per_second: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTenant {
    pub(super) name: Spanned<String>,
    pub(super) path_prefix: Option<Spanned<String>>,
    pub(super) max_connections: Option<Spanned<u64>>,
    pub(super) max_memory_total: Option<Spanned<SizeValue>>,
    pub(super) max_concurrent_calls: Option<Spanned<u32>>,
    pub(super) log_lines_per_second: Option<Spanned<u32>>,
    pub(super) log_bytes_per_second: Option<Spanned<SizeValue>>,
    pub(super) clock_resolution_ms: Option<Spanned<u64>>,
    pub(super) max_subscriptions_per_connection: Option<Spanned<u32>>,
    pub(super) max_publishes_per_second: Option<Spanned<u32>>,
    pub(super) max_message_size: Option<Spanned<SizeValue>>,
    pub(super) max_output_buffer: Option<Spanned<SizeValue>>,
    pub(super) memory_limit: Option<Spanned<SizeValue>>,
    pub(super) cpu_time_per_event_ms: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub(super) listen: Option<Spanned<String>>,
    pub(super) data_dir: Option<Spanned<String>>,
    pub(super) max_module_size: Option<Spanned<SizeValue>>,
    pub(super) max_compile_time: Option<Spanned<DurationValue>>,
    pub(super) tls: Option<RawTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPage {
    pub(super) path: Spanned<String>,
    pub(super) file: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) cert: Spanned<String>,
    pub(super) key: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) handshake_timeout: Option<Spanned<DurationValue>>,
    pub(super) max_header_bytes: Option<Spanned<SizeValue>>,
    pub(super) drain_time: Option<Spanned<DurationValue>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRuntime {
    pub(super) max_instances: Option<Spanned<u32>>,
    pub(super) max_memory_per_instance: Option<Spanned<SizeValue>>,
    pub(super) max_memory_total: Option<Spanned<SizeValue>>,
    pub(super) epoch_tick: Option<Spanned<DurationValue>>,
    pub(super) max_core_instances_per_component: Option<Spanned<u32>>,
    pub(super) max_memories_per_component: Option<Spanned<u32>>,
    pub(super) max_tables_per_component: Option<Spanned<u32>>,
    pub(super) compiled_cache: Option<Spanned<String>>,
    pub(super) compiled_cache_max_size: Option<Spanned<SizeValue>>,
    pub(super) memory_keep_resident: Option<Spanned<SizeValue>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) path: Spanned<String>,
    pub(super) tenant: Option<Spanned<String>>,
    pub(super) module: Spanned<String>,
    pub(super) max_message_size: Option<Spanned<SizeValue>>,
    pub(super) memory_limit: Option<Spanned<SizeValue>>,
    pub(super) cpu_time_per_event: Option<Spanned<DurationValue>>,
    pub(super) cpu_time_per_second: Option<Spanned<DurationValue>>,
    pub(super) route_cpu_time_per_second: Option<Spanned<DurationValue>>,
    pub(super) wall_time_per_call: Option<Spanned<DurationValue>>,
    pub(super) log_lines_per_second: Option<Spanned<u32>>,
    pub(super) log_bytes_per_second: Option<Spanned<SizeValue>>,
    pub(super) clock_resolution: Option<Spanned<DurationValue>>,
    pub(super) max_concurrent_calls: Option<Spanned<u32>>,
    pub(super) allowed_origins: Option<Spanned<Vec<String>>>,
    pub(super) origin_policy: Option<Spanned<String>>,
    pub(super) ping_interval: Option<Spanned<DurationValue>>,
    pub(super) ping_timeout: Option<Spanned<DurationValue>>,
    pub(super) max_backpressure: Option<Spanned<SizeValue>>,
    pub(super) slow_consumer: Option<Spanned<String>>,
    pub(super) pubsub_fanout: Option<Spanned<String>>,
    pub(super) compression: Option<RawCompression>,
    pub(super) hibernate_after: Option<Spanned<DurationValue>>,
    pub(super) max_attachment: Option<Spanned<SizeValue>>,
    pub(super) auto_response: Option<RawAutoResponse>,
}

/// `[route.auto_response]`: a text answered without waking a hibernated
/// connection.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAutoResponse {
    pub(super) request: String,
    pub(super) response: String,
}

/// `[route.compression]`: present (even empty) turns permessage-deflate on.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCompression {
    pub(super) compression_level: Option<Spanned<i64>>,
    pub(super) mem_level: Option<Spanned<i64>>,
    pub(super) server_max_window_bits: Option<Spanned<i64>>,
    pub(super) client_max_window_bits: Option<Spanned<i64>>,
    pub(super) server_no_context_takeover: Option<bool>,
    pub(super) client_no_context_takeover: Option<bool>,
    pub(super) min_size: Option<Spanned<SizeValue>>,
}
