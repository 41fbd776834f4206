//! Pub/sub across nodes: topics and `send-to` reach the connections of
//! other wsbox nodes through a broker (`[pubsub] backend`, Redis or NATS).
//!
//! - Each node subscribes at the broker only to the channels of topics that
//!   have a subscriber on it ([`Cluster::want`]/[`Cluster::unwant`]); one
//!   channel per tenant and topic, so tenants never see each other's.
//! - A publish is delivered to this node's subscribers first, by the hub,
//!   then handed to the broker task ([`Cluster::publish`]); the other nodes
//!   deliver it to theirs. Nodes skip their own messages coming back.
//! - A connection id carries its node ([`node_of`]); `send-to` another
//!   node's connection goes to that node's own channel.
//! - Delivery across nodes is at most once: a message sent while the
//!   broker is unreachable, or lost with the connection to it, is gone.
//!   Such a failure is a typed [`BrokerError`], counted per tenant.
//! - When the broker goes away, local delivery goes on; the node
//!   reconnects with backoff and subscribes again to what it needs.

pub mod envelope;
mod nats;
mod redis;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use wsbox_protocol::Message;

use crate::config::{BrokerConfig, BrokerKind};
use crate::metrics::{Metrics, TenantLabels};
use envelope::Target;

/// Connection ids are `node << NODE_SHIFT | sequence`: below 2^52, so they
/// stay exact in JavaScript numbers.
pub const NODE_SHIFT: u32 = 36;
/// Messages waiting for the broker before publishes fail with
/// [`BrokerError::Backlog`].
const OUTGOING_CAPACITY: usize = 16 * 1024;

/// The node a connection id belongs to (0: a node without a broker).
pub fn node_of(connection_id: u64) -> u16 {
    u16::try_from(connection_id >> NODE_SHIFT).unwrap_or(0)
}

/// The first connection id of a node.
pub fn first_connection_id(node: u16) -> u64 {
    (u64::from(node) << NODE_SHIFT) | 1
}

pub use wsbox_runtime::pubsub::BrokerError;

/// A message on its way to the broker.
struct Outgoing {
    channel: String,
    payload: Bytes,
    tenant: Arc<str>,
}

/// What the broker task hands to the hub: an envelope from another node.
pub trait Deliver: Send + Sync + 'static {
    fn deliver(&self, envelope: envelope::Envelope);
}

/// This node's side of the cluster.
pub struct Cluster {
    node: u16,
    /// Random per process: tells this node's own messages from those of
    /// another node given the same id by mistake.
    process: u64,
    warned_same_id: AtomicBool,
    prefix: String,
    kind: BrokerKind,
    url: String,
    /// Channels this node's subscribers need; the broker task follows it.
    wanted: Mutex<HashSet<String>>,
    wanted_changed: Notify,
    outgoing: mpsc::Sender<Outgoing>,
    connected: AtomicBool,
    metrics: Arc<Metrics>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn labels(tenant: &str) -> TenantLabels {
    TenantLabels {
        tenant: tenant.to_string(),
    }
}

impl Cluster {
    /// Starts the broker task (it connects in the background and retries
    /// until `shutdown`). `deliver` receives what other nodes send.
    pub fn start(
        config: &BrokerConfig,
        metrics: Arc<Metrics>,
        deliver: Weak<dyn Deliver>,
        shutdown: CancellationToken,
    ) -> Arc<Cluster> {
        let node = config
            .node_id
            .unwrap_or_else(|| rand::random_range(1..=u16::MAX));
        let (tx, rx) = mpsc::channel(OUTGOING_CAPACITY);
        let cluster = Arc::new(Cluster {
            node,
            process: rand::random(),
            warned_same_id: AtomicBool::new(false),
            prefix: config.channel_prefix.clone(),
            kind: config.kind,
            url: config.url.clone(),
            wanted: Mutex::default(),
            wanted_changed: Notify::new(),
            outgoing: tx,
            connected: AtomicBool::new(false),
            metrics,
        });
        tracing::info!(
            node,
            broker = config.kind.as_str(),
            url = %config.url,
            "pub/sub across nodes through a broker"
        );
        let task = Arc::clone(&cluster);
        tokio::spawn(async move {
            let run = async {
                match task.kind {
                    BrokerKind::Redis => redis::run(&task, rx, deliver).await,
                    BrokerKind::Nats => nats::run(&task, rx, deliver).await,
                }
            };
            tokio::select! {
                () = run => {}
                () = shutdown.cancelled() => {}
            }
            task.set_connected(false);
        });
        cluster
    }

    /// This node's id.
    pub fn node(&self) -> u16 {
        self.node
    }

    /// Whether the node is connected to its broker now.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    fn set_connected(&self, connected: bool) {
        let was = self.connected.swap(connected, Ordering::Relaxed);
        self.metrics
            .pubsub_broker_connected
            .set(i64::from(connected));
        if connected && !was {
            self.metrics.pubsub_broker_connects.inc();
        }
    }

    /// The broker channel of a tenant's topic. Names are base64url so that
    /// any topic is a valid NATS subject token and tenants cannot collide.
    pub fn topic_channel(&self, tenant: &str, topic: &str) -> String {
        format!(
            "{}.t.{}.{}",
            self.prefix,
            URL_SAFE_NO_PAD.encode(tenant),
            URL_SAFE_NO_PAD.encode(topic)
        )
    }

    /// The channel of one node's direct messages.
    fn node_channel(&self, node: u16) -> String {
        format!("{}.n.{node}", self.prefix)
    }

    /// The first local subscriber of a topic arrived.
    pub fn want(&self, tenant: &str, topic: &str) {
        let channel = self.topic_channel(tenant, topic);
        lock(&self.wanted).insert(channel);
        self.wanted_changed.notify_one();
    }

    /// The last local subscriber of a topic left.
    pub fn unwant(&self, tenant: &str, topic: &str) {
        let channel = self.topic_channel(tenant, topic);
        lock(&self.wanted).remove(&channel);
        self.wanted_changed.notify_one();
    }

    /// The channels to subscribe to now: the topics' and this node's own.
    pub(crate) fn wanted(&self) -> HashSet<String> {
        let mut wanted = lock(&self.wanted).clone();
        wanted.insert(self.node_channel(self.node));
        wanted
    }

    /// Hands a publish to the broker for the other nodes.
    pub fn publish(&self, tenant: &str, topic: &str, message: &Message) -> Result<(), BrokerError> {
        let target = Target::Topic(topic.to_string());
        self.send(self.topic_channel(tenant, topic), tenant, &target, message)
    }

    /// Hands a message for another node's connection to the broker. The
    /// other node drops it if no connection of `tenant` has that id.
    pub fn send_to(
        &self,
        tenant: &str,
        connection_id: u64,
        message: &Message,
    ) -> Result<(), BrokerError> {
        let channel = self.node_channel(node_of(connection_id));
        self.send(channel, tenant, &Target::Connection(connection_id), message)
    }

    fn send(
        &self,
        channel: String,
        tenant: &str,
        target: &Target,
        message: &Message,
    ) -> Result<(), BrokerError> {
        let result = if !self.is_connected() {
            Err(BrokerError::Unavailable)
        } else {
            let payload = envelope::encode((self.node, self.process), tenant, target, message);
            self.outgoing
                .try_send(Outgoing {
                    channel,
                    payload,
                    tenant: Arc::from(tenant),
                })
                .map_err(|e| match e {
                    mpsc::error::TrySendError::Full(_) => BrokerError::Backlog,
                    mpsc::error::TrySendError::Closed(_) => BrokerError::Unavailable,
                })
        };
        if let Err(e) = result {
            self.count_error(tenant);
            tracing::debug!(tenant, error = %e, "message for other nodes not sent");
        }
        result
    }

    fn count_error(&self, tenant: &str) {
        self.metrics
            .pubsub_broker_errors
            .get_or_create(&labels(tenant))
            .inc();
    }

    /// Decodes what came from the broker and hands it on, unless this node
    /// sent it.
    fn received(&self, deliver: &Weak<dyn Deliver>, bytes: &[u8]) {
        let envelope = match envelope::decode(bytes) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "ignored a message on a wsbox channel of the broker");
                return;
            }
        };
        if envelope.origin == self.node {
            if envelope.process == self.process {
                return;
            }
            if !self.warned_same_id.swap(true, Ordering::Relaxed) {
                tracing::error!(
                    node = self.node,
                    "another node has this node's id: give each node its own `[pubsub] node_id` \
                     (direct messages between the two go astray)"
                );
            }
        }
        self.metrics
            .pubsub_broker_received
            .get_or_create(&labels(&envelope.tenant))
            .inc();
        if let Some(deliver) = deliver.upgrade() {
            deliver.deliver(envelope);
        }
    }

    /// Messages that were queued when the connection to the broker broke:
    /// they are lost (at most once), and counted.
    fn drop_queued(&self, rx: &mut mpsc::Receiver<Outgoing>) {
        while let Ok(lost) = rx.try_recv() {
            self.count_error(&lost.tenant);
        }
    }
}

/// Waits between reconnection attempts: 100 ms doubling to 5 s, with
/// jitter so that nodes do not return in lockstep.
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    fn new() -> Backoff {
        Backoff { next: Self::FIRST }
    }

    fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        base.mul_f64(rand::random_range(0.5..=1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_node_and_stay_exact_in_javascript() {
        assert_eq!(node_of(1), 0);
        assert_eq!(node_of(first_connection_id(7)), 7);
        let last = (u64::from(u16::MAX) << NODE_SHIFT) | ((1 << NODE_SHIFT) - 1);
        assert_eq!(node_of(last), u16::MAX);
        assert!(last < 1 << 53);
    }

    #[test]
    fn backoff_grows_to_its_cap_and_resets() {
        let mut b = Backoff::new();
        let delays: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        assert!(delays[0] <= Backoff::FIRST);
        assert!(delays.iter().all(|d| *d <= Backoff::MAX));
        assert!(delays[9] >= Backoff::MAX / 2);
        b.reset();
        assert!(b.next_delay() <= Backoff::FIRST);
    }
}
