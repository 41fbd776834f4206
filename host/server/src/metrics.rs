//! Prometheus metrics (`GET /metrics` on the admin listener), labelled by
//! tenant / route / module / version only: never per connection.
//!
//! Counters live here and are updated where things happen; gauges (open
//! connections, their bytes, instance memory) are computed from the live
//! state at each scrape, so they cannot drift from it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use crate::server::routes::ServedModule;

/// Which module version of which route.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModuleLabels {
    pub tenant: String,
    pub route: String,
    pub module: String,
    /// The registry version, or `config` for a module from the config file.
    pub version: String,
}

impl ModuleLabels {
    pub fn new(route: &str, module: &ServedModule) -> ModuleLabels {
        ModuleLabels {
            tenant: module.tenant.clone(),
            route: route.to_string(),
            module: module.name.clone(),
            version: module
                .version
                .map_or_else(|| "config".to_string(), |v| v.to_string()),
        }
    }
}

/// A handler failure (or refused instantiation) of a module version of a
/// route, by kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub tenant: String,
    pub route: String,
    pub module: String,
    pub version: String,
    pub kind: String,
}

impl FailureLabels {
    fn new(labels: &ModuleLabels, kind: &str) -> FailureLabels {
        FailureLabels {
            tenant: labels.tenant.clone(),
            route: labels.route.clone(),
            module: labels.module.clone(),
            version: labels.version.clone(),
            kind: kind.to_string(),
        }
    }
}

/// Why a handler's connection was closed with 1011.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// It trapped (a panic, an out-of-bounds access, a memory limit).
    Trap,
    /// It ran past its CPU time for one event.
    CpuDeadline,
    /// A call did not return within its wall-clock bound.
    WallTime,
    /// It queued more output than its route allows.
    OutputLimit,
}

impl FailureKind {
    const ALL: [FailureKind; 4] = [
        FailureKind::Trap,
        FailureKind::CpuDeadline,
        FailureKind::WallTime,
        FailureKind::OutputLimit,
    ];

    fn as_str(self) -> &'static str {
        match self {
            FailureKind::Trap => "trap",
            FailureKind::CpuDeadline => "cpu_deadline",
            FailureKind::WallTime => "wall_time",
            FailureKind::OutputLimit => "output_limit",
        }
    }
}

/// Upper bounds of the handler CPU time buckets, in nanoseconds: 10 µs to
/// ~2.6 s, ×4 each.
const CPU_BUCKETS_NS: [u64; 10] = [
    10_000,
    40_000,
    160_000,
    640_000,
    2_560_000,
    10_240_000,
    40_960_000,
    163_840_000,
    655_360_000,
    2_621_440_000,
];

/// A histogram of handler CPU times that costs two relaxed atomic adds
/// per observation (prometheus-client's takes a lock): it is recorded for
/// every handler call.
#[derive(Clone, Default, Debug)]
pub struct CpuHistogram(Arc<CpuHistogramInner>);

#[derive(Default, Debug)]
struct CpuHistogramInner {
    /// Per bucket (not cumulative); the last one is over every bound.
    buckets: [AtomicU64; CPU_BUCKETS_NS.len() + 1],
    sum_ns: AtomicU64,
}

impl CpuHistogram {
    pub fn observe(&self, time: std::time::Duration) {
        let ns = u64::try_from(time.as_nanos()).unwrap_or(u64::MAX);
        let i = CPU_BUCKETS_NS
            .iter()
            .position(|b| ns <= *b)
            .unwrap_or(CPU_BUCKETS_NS.len());
        self.0.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.0.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }
}

impl TypedMetric for CpuHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for CpuHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // Per bucket, as prometheus-client's own histogram hands them over:
        // the encoder makes them cumulative.
        let mut buckets = Vec::with_capacity(CPU_BUCKETS_NS.len() + 1);
        let mut count = 0;
        for (i, bound) in CPU_BUCKETS_NS.iter().chain([&u64::MAX]).enumerate() {
            let n = self.0.buckets[i].load(Ordering::Relaxed);
            count += n;
            let bound = if *bound == u64::MAX {
                f64::MAX
            } else {
                *bound as f64 / 1e9
            };
            buckets.push((bound, n));
        }
        let sum = self.0.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// One module version of one route's metrics, looked up once and shared
/// by its connections (each holds an `Arc`, not a map lookup per event).
pub struct ModuleMetrics {
    /// CPU time of each handler call (an event, or a batch of messages).
    pub calls: CpuHistogram,
    pub messages_in: Counter,
    pub messages_out: Counter,
    failures: [Counter; 4],
    /// Calls that waited because the connection or route was over its CPU
    /// time per second.
    pub throttled: Counter,
}

impl ModuleMetrics {
    pub fn failed(&self, kind: FailureKind) {
        let i = FailureKind::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(0);
        self.failures[i].inc();
    }
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn call_histogram() -> Histogram {
    // 10 µs to ~2.6 s.
    Histogram::new(exponential_buckets(0.000_01, 4.0, 10))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeployLabels {
    pub tenant: String,
    pub module: String,
    /// `upload`, `deploy` or `rollback`.
    pub action: String,
}

/// A tenant, for the pub/sub counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    pub tenant: String,
}

/// The process's metrics.
pub struct Metrics {
    /// Messages published (by handlers and through the admin API), per tenant.
    pub pubsub_publishes: Family<TenantLabels, Counter>,
    /// Published messages queued on a subscriber (or `send-to` targets), per tenant.
    pub pubsub_deliveries: Family<TenantLabels, Counter>,
    /// Deliveries skipped because the subscriber was over its route's
    /// `max_backpressure`, per tenant.
    pub pubsub_drops: Family<TenantLabels, Counter>,
    /// Subscribers closed (1008) as slow consumers, per tenant.
    pub pubsub_slow_consumer_closes: Family<TenantLabels, Counter>,
    /// Messages for other nodes (publishes and `send-to`s) that did not
    /// reach the broker, per tenant.
    pub pubsub_broker_errors: Family<TenantLabels, Counter>,
    /// Messages from other nodes, through the broker, per tenant.
    pub pubsub_broker_received: Family<TenantLabels, Counter>,
    /// 1 while the node is connected to its broker (0 while it reconnects).
    pub pubsub_broker_connected: Gauge,
    /// Times the node (re)connected to its broker.
    pub pubsub_broker_connects: Counter,
    pub connections_accepted: Family<ModuleLabels, Counter>,
    /// Answers to HTTP requests on the WebSocket listener, by status (101
    /// for accepted upgrades; 4xx/5xx for refused ones).
    pub http_responses: Family<StatusLabels, Counter>,
    pub control_actions: Family<DeployLabels, Counter>,
    pub compile_seconds: Histogram,
    pub handler_cpu_seconds: Family<ModuleLabels, CpuHistogram>,
    pub messages_received: Family<ModuleLabels, Counter>,
    pub messages_sent: Family<ModuleLabels, Counter>,
    pub handler_failures: Family<FailureLabels, Counter>,
    pub handler_throttled: Family<ModuleLabels, Counter>,
    pub instantiate_seconds: HistogramFamily<ModuleLabels>,
    /// Instantiations refused, by kind (`memory_budget`, `failed`).
    pub instantiate_failures: Family<FailureLabels, Counter>,
    modules: Mutex<HashMap<ModuleLabels, Arc<ModuleMetrics>>>,
    /// Bytes of connections that have closed, by labels (the open ones'
    /// are added at scrape time).
    closed_bytes: Mutex<HashMap<ModuleLabels, (u64, u64)>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            pubsub_publishes: Family::default(),
            pubsub_deliveries: Family::default(),
            pubsub_drops: Family::default(),
            pubsub_slow_consumer_closes: Family::default(),
            pubsub_broker_errors: Family::default(),
            pubsub_broker_received: Family::default(),
            pubsub_broker_connected: Gauge::default(),
            pubsub_broker_connects: Counter::default(),
            connections_accepted: Family::default(),
            http_responses: Family::default(),
            control_actions: Family::default(),
            // 1 ms to ~33 s.
            compile_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            handler_cpu_seconds: Family::default(),
            messages_received: Family::default(),
            messages_sent: Family::default(),
            handler_failures: Family::default(),
            handler_throttled: Family::default(),
            instantiate_seconds: Family::new_with_constructor(call_histogram),
            instantiate_failures: Family::default(),
            modules: Mutex::default(),
            closed_bytes: Mutex::default(),
        }
    }
}

/// What a scrape reads from the live state.
/// An open connection, as the metrics see it.
pub struct LiveConnection {
    pub labels: ModuleLabels,
    /// (bytes in, bytes out).
    pub traffic: (u64, u64),
    /// Hibernated now: its instance was given back.
    pub hibernated: bool,
}

pub struct LiveState {
    pub connections: Vec<LiveConnection>,
    pub instance_memory_bytes: u64,
    /// Handler instances alive, and the pool's slots.
    pub pool: (u64, u64),
    pub compiles: u64,
    pub compiled_cache_hits: u64,
}

impl Metrics {
    /// The metrics of one module version of one route, shared by its
    /// connections.
    pub fn for_module(&self, labels: &ModuleLabels) -> Arc<ModuleMetrics> {
        let mut modules = self.modules.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = modules.get(labels) {
            return Arc::clone(m);
        }
        let m = Arc::new(ModuleMetrics {
            calls: self.handler_cpu_seconds.get_or_create(labels).clone(),
            messages_in: self.messages_received.get_or_create(labels).clone(),
            messages_out: self.messages_sent.get_or_create(labels).clone(),
            failures: FailureKind::ALL.map(|k| {
                self.handler_failures
                    .get_or_create(&FailureLabels::new(labels, k.as_str()))
                    .clone()
            }),
            throttled: self.handler_throttled.get_or_create(labels).clone(),
        });
        modules.insert(labels.clone(), Arc::clone(&m));
        m
    }

    /// Counts a refused instantiation.
    pub fn instantiate_failed(&self, labels: &ModuleLabels, kind: &str) {
        self.instantiate_failures
            .get_or_create(&FailureLabels::new(labels, kind))
            .inc();
    }

    /// Adds a closed connection's bytes to its labels' totals.
    pub fn connection_closed(&self, labels: ModuleLabels, bytes: (u64, u64)) {
        let mut closed = self.closed_bytes.lock().unwrap_or_else(|e| e.into_inner());
        let entry = closed.entry(labels).or_default();
        entry.0 += bytes.0;
        entry.1 += bytes.1;
    }

    /// The exposition in the OpenMetrics text format (what
    /// `prometheus-client` writes); see [`to_prometheus_text`] for 0.0.4.
    pub fn encode(&self, live: LiveState) -> Result<String, std::fmt::Error> {
        let mut registry = Registry::with_prefix("wsbox");
        registry.register(
            "connections_accepted",
            "WebSocket connections accepted (101 sent)",
            self.connections_accepted.clone(),
        );
        registry.register(
            "http_responses",
            "Answers on the WebSocket listener by status: 101 accepted, others refused",
            self.http_responses.clone(),
        );
        registry.register(
            "pubsub_publishes",
            "Messages published to a topic (by handlers and the admin API)",
            self.pubsub_publishes.clone(),
        );
        registry.register(
            "pubsub_deliveries",
            "Published or sent-to messages queued on a subscriber's socket",
            self.pubsub_deliveries.clone(),
        );
        registry.register(
            "pubsub_drops",
            "Deliveries skipped: the subscriber was over its route's max_backpressure",
            self.pubsub_drops.clone(),
        );
        registry.register(
            "pubsub_slow_consumer_closes",
            "Subscribers closed with 1008 as slow consumers (slow_consumer = \"close\")",
            self.pubsub_slow_consumer_closes.clone(),
        );
        registry.register(
            "pubsub_broker_errors",
            "Messages for other nodes that did not reach the broker (it was unreachable or too far behind)",
            self.pubsub_broker_errors.clone(),
        );
        registry.register(
            "pubsub_broker_received",
            "Messages from other nodes received through the broker",
            self.pubsub_broker_received.clone(),
        );
        registry.register(
            "pubsub_broker_connected",
            "1 while this node is connected to its pub/sub broker",
            self.pubsub_broker_connected.clone(),
        );
        registry.register(
            "pubsub_broker_connects",
            "Connections made to the pub/sub broker (the first and every reconnection)",
            self.pubsub_broker_connects.clone(),
        );
        registry.register(
            "control_actions",
            "Control-plane changes: uploads, deploys, rollbacks",
            self.control_actions.clone(),
        );
        registry.register(
            "handler_cpu_seconds",
            "CPU time of handler calls (one event, or one batch of messages; a call shorter than an epoch tick counts its wall time)",
            self.handler_cpu_seconds.clone(),
        );
        registry.register(
            "messages_received",
            "WebSocket messages received from clients (complete, after reassembly)",
            self.messages_received.clone(),
        );
        registry.register(
            "messages_sent",
            "WebSocket messages sent to clients (handler writes, pub/sub deliveries, admin sends)",
            self.messages_sent.clone(),
        );
        registry.register(
            "handler_failures",
            "Connections closed with 1011 because their handler failed, by kind: trap, cpu_deadline, wall_time, output_limit",
            self.handler_failures.clone(),
        );
        registry.register(
            "handler_throttled",
            "Handler calls that waited: the connection or route was over its CPU time per second",
            self.handler_throttled.clone(),
        );
        registry.register(
            "instantiate_seconds",
            "Time to create a handler instance for a new connection",
            self.instantiate_seconds.clone(),
        );
        registry.register(
            "instantiate_failures",
            "New connections refused because no handler instance could be made, by kind: memory_budget, failed",
            self.instantiate_failures.clone(),
        );
        registry.register(
            "module_compile_seconds",
            "Time to compile an uploaded component",
            self.compile_seconds.clone(),
        );
        registry.register(
            "module_compiles",
            "Components compiled since start (uploads and cache misses)",
            ConstCounter::new(live.compiles),
        );
        registry.register(
            "compiled_cache_hits",
            "Components loaded from the compiled-code cache since start",
            ConstCounter::new(live.compiled_cache_hits),
        );
        let memory: Gauge = Gauge::default();
        memory.set(i64::try_from(live.instance_memory_bytes).unwrap_or(i64::MAX));
        registry.register(
            "instance_memory_bytes",
            "Linear memory held by the live handler instances",
            memory,
        );
        let instances: Gauge = Gauge::default();
        instances.set(i64::try_from(live.pool.0).unwrap_or(i64::MAX));
        registry.register(
            "pool_instances",
            "Handler instances alive in the instance pool",
            instances,
        );
        let slots: Gauge = Gauge::default();
        slots.set(i64::try_from(live.pool.1).unwrap_or(i64::MAX));
        registry.register(
            "pool_instances_max",
            "Instance slots in the pool (runtime.max_instances): new connections get 503 when all are taken",
            slots,
        );
        let open: Family<ModuleLabels, Gauge> = Family::default();
        let hibernated: Family<ModuleLabels, Gauge> = Family::default();
        let mut bytes: HashMap<ModuleLabels, (u64, u64)> = self
            .closed_bytes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for connection in live.connections {
            let LiveConnection {
                labels,
                traffic: (bytes_in, bytes_out),
                hibernated: asleep,
            } = connection;
            open.get_or_create(&labels).inc();
            if asleep {
                hibernated.get_or_create(&labels).inc();
            }
            let entry = bytes.entry(labels).or_default();
            entry.0 += bytes_in;
            entry.1 += bytes_out;
        }
        registry.register("connections_open", "Open WebSocket connections", open);
        registry.register(
            "connections_hibernated",
            "Open WebSocket connections that are hibernated (no handler instance; see hibernate_after)",
            hibernated,
        );
        let received: Family<ModuleLabels, Counter> = Family::default();
        let sent: Family<ModuleLabels, Counter> = Family::default();
        for (labels, (bytes_in, bytes_out)) in bytes {
            received.get_or_create(&labels).inc_by(bytes_in);
            sent.get_or_create(&labels).inc_by(bytes_out);
        }
        registry.register(
            "received_bytes",
            "Bytes read from WebSocket clients (frames as on the wire)",
            received,
        );
        registry.register(
            "sent_bytes",
            "Bytes written to WebSocket clients (frames as on the wire)",
            sent,
        );
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry)?;
        Ok(out)
    }
}

/// OpenMetrics text as Prometheus text format 0.0.4, for scrapers and
/// tools (`promtool check metrics`) that read only the older format. The
/// two differ, for what we emit, in the counters' names: OpenMetrics names
/// a counter family `x` and its samples `x_total`; 0.0.4 names both
/// `x_total`. And 0.0.4 has no `# EOF`.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 64);
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::to_prometheus_text;

    #[test]
    fn cpu_histogram_buckets_are_cumulative_with_sum_and_count() {
        let h = super::CpuHistogram::default();
        for us in [5u64, 10, 11, 3_000_000] {
            h.observe(std::time::Duration::from_micros(us));
        }
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("cpu", "x", h);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        for line in [
            "cpu_bucket{le=\"0.00001\"} 2",
            "cpu_bucket{le=\"0.00004\"} 3",
            "cpu_bucket{le=\"2.62144\"} 3",
            "cpu_bucket{le=\"+Inf\"} 4",
            "cpu_count 4",
        ] {
            assert!(out.contains(line), "{line} in {out}");
        }
        assert!(out.contains("cpu_sum 3.000026"), "{out}");
    }

    #[test]
    fn counters_are_renamed_for_the_old_format() {
        let om = "# HELP a_x Things.\n# TYPE a_x counter\na_x_total{k=\"v\"} 1\n\
                  # HELP a_g Level.\n# TYPE a_g gauge\na_g 2\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP a_x_total Things.\n# TYPE a_x_total counter\na_x_total{k=\"v\"} 1\n\
             # HELP a_g Level.\n# TYPE a_g gauge\na_g 2\n"
        );
    }
}
