//! Topics and direct messages between the connections of one tenant: the
//! host side of `wsbox:websocket/pubsub` and of the admin API's publish.
//!
//! The [`Hub`] keeps, per tenant, which connections subscribe to which
//! topic. A publish frames the message once ([`encode_frame`]) and posts
//! the same bytes to each subscriber's [`Mailbox`]: the subscribers'
//! handlers are not called, and no subscriber re-encodes it.
//!
//! permessage-deflate: a subscriber whose server-side compressor resets
//! after every message (`server_no_context_takeover` negotiated) gets a
//! message compressed once for all subscribers with the same settings
//! ([`compress_once`]), RSV1 set. Every other subscriber, compressed
//! connections with context takeover included, gets the shared frame
//! uncompressed (RSV1 clear): RFC 7692 makes compression a per-message
//! choice, and an uncompressed message leaves both sides' compression
//! contexts untouched, so this is valid for every negotiated variant; it
//! trades bandwidth for not compressing once per subscriber.
//!
//! Several nodes: with a broker (`[pubsub] backend`), a publish also goes
//! to the other nodes and theirs come in ([`super::cluster`]); the hub
//! tells the cluster which topics have local subscribers.
//!
//! A route can instead set `pubsub_fanout = "per_connection"` ([`Fanout`]):
//! each subscriber's own connection then encodes (and, with
//! permessage-deflate, compresses with its own compressor, context takeover
//! and all) every message, as a server without a shared fan-out does. It is
//! the baseline `wsbox bench broadcast --compress` compares the shared path
//! with, not a setting to serve with.
//!
//! Slow consumers: a subscriber whose socket already has queued output and
//! would go over its route's `max_backpressure` with this message is
//! skipped (`drop`, the default) or closed with 1008 "slow consumer"
//! (`close`). Either way the publisher's report counts it as skipped.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use wsbox_protocol::Message;
use wsbox_protocol::deflate::{SharedCompression, compress_once};
use wsbox_protocol::frame::{OpCode, encode_frame};

use super::cluster::{self, Cluster, envelope};
use super::mailbox::{Command, Mailbox};
use crate::metrics::{Metrics, TenantLabels};

pub use crate::config::pubsub::{
    DEFAULT_MAX_BACKPRESSURE, DEFAULT_MAX_PUBLISHES_PER_SECOND,
    DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION, Fanout, PubsubLimits, SlowConsumerPolicy,
};
pub use wsbox_runtime::pubsub::{MAX_TOPIC_LEN, PublishReport, PubsubError};
/// The close code for a slow consumer under the `close` policy (policy
/// violation), and its reason.
pub const SLOW_CONSUMER_CLOSE_CODE: u16 = 1008;
pub const SLOW_CONSUMER_REASON: &str = "slow consumer";
/// A route's slow-consumer settings (and how its subscribers get
/// published messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backpressure {
    pub max_bytes: usize,
    pub policy: SlowConsumerPolicy,
    pub fanout: Fanout,
}

impl Default for Backpressure {
    fn default() -> Self {
        Backpressure {
            max_bytes: DEFAULT_MAX_BACKPRESSURE,
            policy: SlowConsumerPolicy::Drop,
            fanout: Fanout::Shared,
        }
    }
}

/// A connection as the hub knows it.
struct Member {
    tenant: Arc<str>,
    mailbox: Arc<Mailbox>,
    backpressure: Backpressure,
    /// Set when its compressor resets after every message: it can take a
    /// message compressed once for many.
    shared_compression: Option<SharedCompression>,
    /// Closed as a slow consumer: skipped from then on.
    slow_closed: AtomicBool,
}

struct MemberEntry {
    member: Arc<Member>,
    topics: HashSet<String>,
}

/// A topic's subscribers, by connection id.
type Subscribers = HashMap<u64, Arc<Member>>;

#[derive(Default)]
struct State {
    members: HashMap<u64, MemberEntry>,
    /// tenant → topic → subscribers.
    topics: HashMap<Arc<str>, HashMap<String, Subscribers>>,
    /// Each tenant's name once, shared by its connections' members.
    tenant_names: HashSet<Arc<str>>,
}

impl State {
    fn tenant_name(&mut self, tenant: &str) -> Arc<str> {
        if let Some(name) = self.tenant_names.get(tenant) {
            return Arc::clone(name);
        }
        let name: Arc<str> = Arc::from(tenant);
        self.tenant_names.insert(Arc::clone(&name));
        name
    }
}

/// A tenant's publishes in the current one-second window.
struct RateWindow {
    started: Instant,
    count: u32,
}

/// The server's topics and the connections that may use them.
pub struct Hub {
    state: Mutex<State>,
    limits: Mutex<HashMap<String, PubsubLimits>>,
    default_limits: PubsubLimits,
    rates: Mutex<HashMap<Arc<str>, RateWindow>>,
    metrics: Arc<Metrics>,
    /// The other nodes, when there is a broker.
    cluster: OnceLock<Arc<Cluster>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The maps stay consistent if a holder panicked.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn opcode_and_payload(message: &Message) -> (OpCode, &[u8]) {
    match message {
        Message::Text(text) => (OpCode::Text, text.as_bytes()),
        Message::Binary(data) => (OpCode::Binary, &data[..]),
    }
}

/// Frames a message once, for every subscriber: one complete, unmasked,
/// uncompressed data frame.
pub fn encode_message(message: &Message) -> Bytes {
    let (opcode, payload) = opcode_and_payload(message);
    let mut out = BytesMut::new();
    encode_frame(&mut out, true, false, opcode, payload, None);
    out.freeze()
}

/// One message's frames, each made once, on first need: uncompressed, and
/// compressed per set of shared compression settings.
struct Frames<'m> {
    message: &'m Message,
    plain: Bytes,
    compressed: Vec<(SharedCompression, Bytes)>,
}

impl<'m> Frames<'m> {
    fn new(message: &'m Message) -> Frames<'m> {
        Frames {
            message,
            plain: encode_message(message),
            compressed: Vec::new(),
        }
    }

    /// The frame for a member with these settings.
    fn for_member(&mut self, shared: Option<SharedCompression>) -> &Bytes {
        let Some(settings) = shared else {
            return &self.plain;
        };
        let index = match self.compressed.iter().position(|(s, _)| *s == settings) {
            Some(i) => i,
            None => {
                let (opcode, payload) = opcode_and_payload(self.message);
                let frame = match compress_once(payload, &settings) {
                    Some(deflated) => {
                        let mut out = BytesMut::new();
                        encode_frame(&mut out, true, true, opcode, &deflated, None);
                        out.freeze()
                    }
                    // Too short, or it does not shrink: the plain frame.
                    None => self.plain.clone(),
                };
                self.compressed.push((settings, frame));
                self.compressed.len() - 1
            }
        };
        &self.compressed[index].1
    }
}

fn check_topic(topic: &str) -> Result<(), PubsubError> {
    if topic.is_empty() {
        Err(PubsubError::EmptyTopic)
    } else if topic.len() > MAX_TOPIC_LEN {
        Err(PubsubError::TopicTooLong)
    } else {
        Ok(())
    }
}

/// A connection's membership in the hub; it leaves (and loses its
/// subscriptions) when this drops.
pub struct Membership {
    hub: Arc<Hub>,
    id: u64,
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.hub.leave(self.id);
    }
}

/// The tenant of an operator's message to another node's connection: the
/// receiving node does not check it (tenant names are never empty).
const ANY_TENANT: &str = "";

/// What a connection's handler uses to reach the hub: its own id and
/// tenant are fixed, so a handler can only act as itself.
#[derive(Clone)]
pub struct PubsubHandle {
    hub: Arc<Hub>,
    id: u64,
    tenant: Arc<str>,
}

impl wsbox_runtime::pubsub::PubsubPort for PubsubHandle {
    /// The tenant this connection's topics belong to.
    fn tenant(&self) -> &str {
        &self.tenant
    }

    fn subscribe(&self, topic: &str) -> Result<(), PubsubError> {
        self.hub.subscribe(self.id, topic)
    }

    fn unsubscribe(&self, topic: &str) -> Result<bool, PubsubError> {
        self.hub.unsubscribe(self.id, topic)
    }

    /// Publishes as this connection; `exclude_self` skips it.
    fn publish(
        &self,
        topic: &str,
        message: &Message,
        exclude_self: bool,
    ) -> Result<PublishReport, PubsubError> {
        check_topic(topic)?;
        self.hub.take_rate(&self.tenant)?;
        let exclude = exclude_self.then_some(self.id);
        Ok(self.hub.fan_out(&self.tenant, topic, message, exclude))
    }

    fn subscriber_count(&self, topic: &str) -> Result<u32, PubsubError> {
        check_topic(topic)?;
        Ok(self.hub.subscriber_count(&self.tenant, topic))
    }

    /// Sends to one connection of the same tenant; `Ok(false)` when it was
    /// skipped as a slow consumer.
    fn send_to(&self, connection_id: u64, message: &Message) -> Result<bool, PubsubError> {
        self.hub.take_rate(&self.tenant)?;
        self.hub.send_to(&self.tenant, connection_id, message)
    }
}

impl Hub {
    pub fn new(metrics: Arc<Metrics>, default_limits: PubsubLimits) -> Hub {
        Hub {
            state: Mutex::default(),
            limits: Mutex::default(),
            default_limits,
            rates: Mutex::default(),
            metrics,
            cluster: OnceLock::new(),
        }
    }

    /// Connects this hub to other nodes' through a broker (once, at start).
    pub fn attach_cluster(&self, cluster: Arc<Cluster>) {
        if self.cluster.set(cluster).is_err() {
            tracing::warn!("the pub/sub hub already has a broker; ignored a second one");
        }
    }

    /// The broker side, if any.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.get()
    }

    /// Sets one tenant's limits (others keep the defaults).
    pub fn set_limits(&self, tenant: &str, limits: PubsubLimits) {
        lock(&self.limits).insert(tenant.to_string(), limits);
    }

    /// Sets one tenant's limits from its settings: what it leaves out is
    /// the default.
    pub fn set_tenant_limits(&self, tenant: &str, limits: &crate::config::TenantLimits) {
        self.set_limits(
            tenant,
            PubsubLimits {
                max_subscriptions_per_connection: limits
                    .max_subscriptions_per_connection
                    .unwrap_or(self.default_limits.max_subscriptions_per_connection),
                max_publishes_per_second: limits
                    .max_publishes_per_second
                    .unwrap_or(self.default_limits.max_publishes_per_second),
            },
        );
    }

    fn limits(&self, tenant: &str) -> PubsubLimits {
        lock(&self.limits)
            .get(tenant)
            .copied()
            .unwrap_or(self.default_limits)
    }

    /// Adds an open connection; it can be reached (by `send-to`) and can
    /// subscribe until the returned membership drops.
    pub fn join(
        self: &Arc<Self>,
        id: u64,
        tenant: &str,
        mailbox: Arc<Mailbox>,
        backpressure: Backpressure,
        shared_compression: Option<SharedCompression>,
    ) -> (Membership, PubsubHandle) {
        let mut state = lock(&self.state);
        let tenant = state.tenant_name(tenant);
        let member = Arc::new(Member {
            tenant: Arc::clone(&tenant),
            mailbox,
            backpressure,
            shared_compression,
            slow_closed: AtomicBool::new(false),
        });
        state.members.insert(
            id,
            MemberEntry {
                member,
                topics: HashSet::new(),
            },
        );
        drop(state);
        (
            Membership {
                hub: Arc::clone(self),
                id,
            },
            PubsubHandle {
                hub: Arc::clone(self),
                id,
                tenant,
            },
        )
    }

    /// The handle of connection `id` (already joined): a woken instance of
    /// a hibernated connection gets a new one.
    pub fn handle(self: &Arc<Self>, id: u64, tenant: &str) -> PubsubHandle {
        PubsubHandle {
            hub: Arc::clone(self),
            id,
            tenant: lock(&self.state).tenant_name(tenant),
        }
    }

    fn leave(&self, id: u64) {
        let mut state = lock(&self.state);
        let Some(entry) = state.members.remove(&id) else {
            return;
        };
        let tenant = Arc::clone(&entry.member.tenant);
        if let Some(topics) = state.topics.get_mut(&tenant) {
            for topic in &entry.topics {
                if let Some(subscribers) = topics.get_mut(topic.as_str()) {
                    subscribers.remove(&id);
                    if subscribers.is_empty() {
                        topics.remove(topic.as_str());
                        if let Some(cluster) = self.cluster.get() {
                            cluster.unwant(&tenant, topic);
                        }
                    }
                }
            }
            if topics.is_empty() {
                state.topics.remove(&tenant);
            }
        }
        if !entry.topics.is_empty() {
            tracing::debug!(
                tenant = %tenant,
                conn = id,
                topics = entry.topics.len(),
                "connection closed: its subscriptions ended"
            );
        }
    }

    fn subscribe(&self, id: u64, topic: &str) -> Result<(), PubsubError> {
        check_topic(topic)?;
        let mut state = lock(&self.state);
        let state = &mut *state;
        let entry = state.members.get_mut(&id).ok_or(PubsubError::Closed)?;
        if entry.topics.contains(topic) {
            return Ok(());
        }
        let max = self
            .limits(&entry.member.tenant)
            .max_subscriptions_per_connection;
        if entry.topics.len() >= max as usize {
            return Err(PubsubError::TooManySubscriptions);
        }
        entry.topics.insert(topic.to_string());
        let subscribers = state
            .topics
            .entry(Arc::clone(&entry.member.tenant))
            .or_default()
            .entry(topic.to_string())
            .or_default();
        if subscribers.is_empty()
            && let Some(cluster) = self.cluster.get()
        {
            // Under the lock, so that the broker follows subscribes and
            // unsubscribes in their order.
            cluster.want(&entry.member.tenant, topic);
        }
        subscribers.insert(id, Arc::clone(&entry.member));
        Ok(())
    }

    fn unsubscribe(&self, id: u64, topic: &str) -> Result<bool, PubsubError> {
        check_topic(topic)?;
        let mut state = lock(&self.state);
        let state = &mut *state;
        let entry = state.members.get_mut(&id).ok_or(PubsubError::Closed)?;
        if !entry.topics.remove(topic) {
            return Ok(false);
        }
        if let Some(topics) = state.topics.get_mut(&entry.member.tenant)
            && let Some(subscribers) = topics.get_mut(topic)
        {
            subscribers.remove(&id);
            if subscribers.is_empty() {
                topics.remove(topic);
                if let Some(cluster) = self.cluster.get() {
                    cluster.unwant(&entry.member.tenant, topic);
                }
            }
        }
        Ok(true)
    }

    /// Counts a publish (or send-to) against the tenant's rate.
    fn take_rate(&self, tenant: &Arc<str>) -> Result<(), PubsubError> {
        let max = self.limits(tenant).max_publishes_per_second;
        let now = Instant::now();
        let mut rates = lock(&self.rates);
        let window = rates.entry(Arc::clone(tenant)).or_insert(RateWindow {
            started: now,
            count: 0,
        });
        if now.duration_since(window.started) >= Duration::from_secs(1) {
            window.started = now;
            window.count = 0;
        }
        if window.count >= max {
            tracing::debug!(tenant = %tenant, max, "publish refused: over the tenant's rate");
            return Err(PubsubError::RateExceeded);
        }
        window.count += 1;
        Ok(())
    }

    /// How many connections of `tenant` subscribe to `topic`.
    pub fn subscriber_count(&self, tenant: &str, topic: &str) -> u32 {
        let state = lock(&self.state);
        let n = state
            .topics
            .get(tenant)
            .and_then(|topics| topics.get(topic))
            .map_or(0, HashMap::len);
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Publishes from outside (the admin API): no connection to exclude,
    /// no rate limit.
    pub fn publish(
        &self,
        tenant: &str,
        topic: &str,
        message: &Message,
    ) -> Result<PublishReport, PubsubError> {
        check_topic(topic)?;
        Ok(self.fan_out(tenant, topic, message, None))
    }

    /// Queues `frame` on one member unless it is a slow consumer. Returns
    /// whether it was queued.
    fn offer(&self, id: u64, member: &Member, frame: &Bytes, labels: &TenantLabels) -> bool {
        self.offer_with(id, member, frame.len(), labels, || {
            member.mailbox.post_frame(frame.clone());
        })
    }

    /// Like [`offer`](Self::offer) for a member whose route encodes per
    /// connection ([`Fanout::PerConnection`]): its connection gets the
    /// message to encode and compress itself.
    fn offer_message(
        &self,
        id: u64,
        member: &Member,
        message: &Message,
        labels: &TenantLabels,
    ) -> bool {
        self.offer_with(id, member, message.len(), labels, || {
            member.mailbox.post_message(message.clone());
        })
    }

    fn offer_with(
        &self,
        id: u64,
        member: &Member,
        len: usize,
        labels: &TenantLabels,
        post: impl FnOnce(),
    ) -> bool {
        if member.slow_closed.load(Ordering::Relaxed) {
            self.metrics.pubsub_drops.get_or_create(labels).inc();
            return false;
        }
        let backlog = member.mailbox.backlog();
        // A subscriber with nothing queued always takes one message, however
        // large: the bound is on what piles up.
        if backlog > 0 && backlog.saturating_add(len) > member.backpressure.max_bytes {
            match member.backpressure.policy {
                SlowConsumerPolicy::Drop => {
                    self.metrics.pubsub_drops.get_or_create(labels).inc();
                    tracing::debug!(
                        tenant = %member.tenant,
                        conn = id,
                        backlog,
                        max_backpressure = member.backpressure.max_bytes,
                        "slow consumer: message skipped"
                    );
                }
                SlowConsumerPolicy::Close => {
                    if !member.slow_closed.swap(true, Ordering::Relaxed) {
                        self.metrics
                            .pubsub_slow_consumer_closes
                            .get_or_create(labels)
                            .inc();
                        tracing::info!(
                            tenant = %member.tenant,
                            conn = id,
                            backlog,
                            max_backpressure = member.backpressure.max_bytes,
                            "slow consumer: closing it with 1008"
                        );
                        member.mailbox.post(Command::Close {
                            code: SLOW_CONSUMER_CLOSE_CODE,
                            reason: SLOW_CONSUMER_REASON.to_string(),
                        });
                    }
                    self.metrics.pubsub_drops.get_or_create(labels).inc();
                }
            }
            return false;
        }
        post();
        true
    }

    /// Publishes from this node: to its subscribers, then (with a broker)
    /// to the other nodes'.
    fn fan_out(
        &self,
        tenant: &str,
        topic: &str,
        message: &Message,
        exclude: Option<u64>,
    ) -> PublishReport {
        let labels = TenantLabels {
            tenant: tenant.to_string(),
        };
        self.metrics.pubsub_publishes.get_or_create(&labels).inc();
        let mut report = self.fan_out_here(&labels, topic, message, exclude);
        if let Some(cluster) = self.cluster.get() {
            report.broker_error = cluster.publish(tenant, topic, message).err();
        }
        report
    }

    /// Delivers to this node's subscribers of `labels.tenant`'s topic.
    fn fan_out_here(
        &self,
        labels: &TenantLabels,
        topic: &str,
        message: &Message,
        exclude: Option<u64>,
    ) -> PublishReport {
        let tenant = labels.tenant.as_str();
        let mut report = PublishReport::default();
        let state = lock(&self.state);
        let Some(subscribers) = state.topics.get(tenant).and_then(|t| t.get(topic)) else {
            return report;
        };
        // Encoded once (and compressed once per set of shared compression
        // settings); subscribers get the same bytes.
        let mut frames = Frames::new(message);
        for (&id, member) in subscribers {
            if Some(id) == exclude {
                continue;
            }
            let queued = if member.backpressure.fanout == Fanout::PerConnection {
                self.offer_message(id, member, message, labels)
            } else {
                let frame = frames.for_member(member.shared_compression);
                self.offer(id, member, frame, labels)
            };
            if queued {
                report.delivered += 1;
            } else {
                report.skipped += 1;
            }
        }
        drop(state);
        if report.delivered > 0 {
            self.metrics
                .pubsub_deliveries
                .get_or_create(labels)
                .inc_by(u64::from(report.delivered));
        }
        report
    }

    /// Sends to one connection of any tenant (the operator, through the
    /// admin API): `None` when no open connection has this id, else
    /// whether it was queued (not skipped as a slow consumer).
    ///
    /// With a broker, an id of another node's connection is sent there:
    /// `Some(true)` when the broker took it (the other node drops it if
    /// the connection is gone), `Some(false)` when the broker is
    /// unreachable.
    pub fn send_to_connection(&self, connection_id: u64, message: &Message) -> Option<bool> {
        if let Some(cluster) = self.remote_node(connection_id) {
            return Some(cluster.send_to(ANY_TENANT, connection_id, message).is_ok());
        }
        let tenant = {
            let state = lock(&self.state);
            Arc::clone(&state.members.get(&connection_id)?.member.tenant)
        };
        self.send_to(&tenant, connection_id, message).ok()
    }

    /// The cluster, when `connection_id` is another node's.
    fn remote_node(&self, connection_id: u64) -> Option<&Arc<Cluster>> {
        let cluster = self.cluster.get()?;
        let node = cluster::node_of(connection_id);
        (node != 0 && node != cluster.node()).then_some(cluster)
    }

    /// Sends to one connection of `tenant`.
    pub fn send_to(
        &self,
        tenant: &str,
        connection_id: u64,
        message: &Message,
    ) -> Result<bool, PubsubError> {
        if let Some(cluster) = self.remote_node(connection_id) {
            // At most once, as for publishes: `false` when the broker is
            // unreachable; the other node drops it if it has no such
            // connection of this tenant.
            return Ok(cluster.send_to(tenant, connection_id, message).is_ok());
        }
        self.send_here(tenant, connection_id, message)
    }

    fn send_here(
        &self,
        tenant: &str,
        connection_id: u64,
        message: &Message,
    ) -> Result<bool, PubsubError> {
        let member = {
            let state = lock(&self.state);
            match state.members.get(&connection_id) {
                Some(entry) if &*entry.member.tenant == tenant => Arc::clone(&entry.member),
                _ => return Err(PubsubError::UnknownConnection),
            }
        };
        let labels = TenantLabels {
            tenant: tenant.to_string(),
        };
        let mut frames = Frames::new(message);
        let frame = frames.for_member(member.shared_compression);
        let queued = self.offer(connection_id, &member, frame, &labels);
        if queued {
            self.metrics.pubsub_deliveries.get_or_create(&labels).inc();
        }
        Ok(queued)
    }
}

impl cluster::Deliver for Hub {
    /// A message from another node: to this node's subscribers or
    /// connection, never back to the broker.
    fn deliver(&self, envelope: envelope::Envelope) {
        match envelope.target {
            envelope::Target::Topic(topic) => {
                if check_topic(&topic).is_ok() {
                    let labels = TenantLabels {
                        tenant: envelope.tenant,
                    };
                    self.fan_out_here(&labels, &topic, &envelope.message, None);
                }
            }
            envelope::Target::Connection(id) => {
                let tenant = if envelope.tenant == ANY_TENANT {
                    let state = lock(&self.state);
                    match state.members.get(&id) {
                        Some(entry) => Arc::clone(&entry.member.tenant),
                        None => return,
                    }
                } else {
                    Arc::from(envelope.tenant.as_str())
                };
                if let Err(e) = self.send_here(&tenant, id, &envelope.message) {
                    tracing::debug!(
                        tenant = %tenant,
                        conn = id,
                        from_node = envelope.origin,
                        error = %e,
                        "message from another node dropped"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsbox_runtime::pubsub::{BrokerError, PubsubPort};

    fn hub(limits: PubsubLimits) -> Arc<Hub> {
        Arc::new(Hub::new(Arc::default(), limits))
    }

    fn frames(mailbox: &Mailbox) -> Vec<Bytes> {
        mailbox
            .take()
            .into_iter()
            .filter_map(|c| match c {
                Command::Frame(f) => Some(f),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn fan_out_shares_one_encoded_frame_within_a_tenant() {
        let hub = hub(PubsubLimits::default());
        let boxes: Vec<Arc<Mailbox>> = (0..3).map(|_| Arc::default()).collect();
        let (_m1, a) = hub.join(
            1,
            "acme",
            Arc::clone(&boxes[0]),
            Backpressure::default(),
            None,
        );
        let (_m2, b) = hub.join(
            2,
            "acme",
            Arc::clone(&boxes[1]),
            Backpressure::default(),
            None,
        );
        let (_m3, other) = hub.join(
            3,
            "other",
            Arc::clone(&boxes[2]),
            Backpressure::default(),
            None,
        );
        a.subscribe("room").unwrap();
        b.subscribe("room").unwrap();
        other.subscribe("room").unwrap();
        assert_eq!(a.subscriber_count("room"), Ok(2));
        let report = a
            .publish("room", &Message::Text("hi".into()), false)
            .unwrap();
        assert_eq!(
            report,
            PublishReport {
                delivered: 2,
                skipped: 0,
                broker_error: None
            }
        );
        let (fa, fb) = (frames(&boxes[0]), frames(&boxes[1]));
        assert_eq!(fa[0], &[0x81, 2, b'h', b'i'][..]);
        // The very same allocation, not a copy.
        assert_eq!(fa[0].as_ptr(), fb[0].as_ptr());
        assert!(frames(&boxes[2]).is_empty(), "another tenant's topic");
        let report = a.publish("room", &Message::Text("x".into()), true).unwrap();
        assert_eq!(report.delivered, 1);
        assert!(frames(&boxes[0]).is_empty(), "excluded itself");
        assert_eq!(
            a.send_to(3, &Message::Text("x".into())),
            Err(PubsubError::UnknownConnection)
        );
        assert_eq!(a.send_to(2, &Message::Text("x".into())), Ok(true));
    }

    #[test]
    fn per_connection_fanout_posts_the_message_to_encode() {
        let hub = hub(PubsubLimits::default());
        let mailbox: Arc<Mailbox> = Arc::default();
        let per_connection = Backpressure {
            fanout: Fanout::PerConnection,
            ..Backpressure::default()
        };
        let (_m, a) = hub.join(1, "t", Arc::clone(&mailbox), per_connection, None);
        a.subscribe("t").unwrap();
        let report = hub.publish("t", "t", &Message::Text("hi".into())).unwrap();
        assert_eq!(report.delivered, 1);
        let posted = mailbox.take();
        assert!(
            matches!(posted.front(), Some(Command::Send(Message::Text(t))) if t == "hi"),
            "the connection encodes it itself"
        );
        assert_eq!(mailbox.backlog(), 2, "counted against max_backpressure");
    }

    #[test]
    fn one_compressed_frame_per_set_of_settings() {
        let text = "compress me once ".repeat(100);
        let message = Message::Text(text.clone());
        let settings = SharedCompression {
            window_bits: 15,
            level: 6,
            mem_level: 8,
            min_compress_size: 256,
        };
        let mut frames = Frames::new(&message);
        let a = frames.for_member(Some(settings)).clone();
        let b = frames.for_member(Some(settings)).clone();
        assert_eq!(a.as_ptr(), b.as_ptr(), "compressed once");
        assert_eq!(a[0], 0x80 | 0x40 | 0x1, "FIN, RSV1, text");
        assert!(a.len() < text.len() / 4, "{} bytes", a.len());
        let other = frames
            .for_member(Some(SharedCompression {
                window_bits: 10,
                ..settings
            }))
            .clone();
        assert_ne!(other.as_ptr(), a.as_ptr());
        let plain = frames.for_member(None).clone();
        assert_eq!(plain[0], 0x81, "uncompressed for context takeover");
        // Below min_compress_size: the plain frame, shared.
        let short = Message::Text("hi".into());
        let mut frames = Frames::new(&short);
        let s = frames.for_member(Some(settings)).clone();
        assert_eq!(s.as_ptr(), frames.for_member(None).as_ptr());
    }

    /// What a publish to 1,000 no-context-takeover subscribers costs in
    /// compression, compressing once or once per subscriber (what the
    /// connection's own compressor would do). Numbers, not a check:
    /// `cargo test -p wsbox --lib -- --ignored --nocapture
    /// compress_once_against_per_subscriber`.
    #[test]
    #[ignore]
    fn compress_once_against_per_subscriber() {
        let settings = SharedCompression {
            window_bits: 15,
            level: 6,
            mem_level: 8,
            min_compress_size: 256,
        };
        let subscribers = 1_000;
        for size in [1024usize, 16 * 1024] {
            let payload: Vec<u8> = (0..size)
                .map(|i| b"{\"user\":\"alice\",\"text\":\"hello room\"} "[i % 37])
                .collect();
            let message = Message::Binary(Bytes::from(payload.clone()));
            let once = std::time::Instant::now();
            let mut frames = Frames::new(&message);
            let mut bytes = 0;
            for _ in 0..subscribers {
                bytes += frames.for_member(Some(settings)).len();
            }
            let once = once.elapsed();
            let each = std::time::Instant::now();
            let mut bytes_each = 0;
            for _ in 0..subscribers {
                bytes_each += compress_once(&payload, &settings).map_or(0, |c| c.len());
            }
            let each = each.elapsed();
            println!(
                "{size} B to {subscribers} subscribers: compress once {once:?} ({bytes} B queued), \
                 per subscriber {each:?} ({bytes_each} B), {:.0}x",
                each.as_secs_f64() / once.as_secs_f64()
            );
        }
    }

    /// With a broker, the node asks it for exactly the topics that have a
    /// subscriber here (and its own channel), following subscribes,
    /// unsubscribes and closes.
    #[tokio::test]
    async fn the_broker_follows_the_topics_with_local_subscribers() {
        let hub = hub(PubsubLimits::default());
        let config = crate::config::BrokerConfig {
            kind: crate::config::BrokerKind::Redis,
            // Nothing listens there: the broker task keeps retrying.
            url: "redis://127.0.0.1:1".into(),
            node_id: Some(5),
            channel_prefix: "p".into(),
        };
        let deliver: Arc<dyn cluster::Deliver> = Arc::clone(&hub) as _;
        let shutdown = tokio_util::sync::CancellationToken::new();
        let c = Cluster::start(
            &config,
            Arc::default(),
            Arc::downgrade(&deliver),
            shutdown.clone(),
        );
        hub.attach_cluster(Arc::clone(&c));
        let wanted = || {
            let mut w: Vec<String> = c.wanted().into_iter().collect();
            w.sort();
            w
        };
        assert_eq!(wanted(), ["p.n.5"]);
        let (m1, a) = hub.join(1, "t", Arc::default(), Backpressure::default(), None);
        let (_m2, b) = hub.join(2, "u", Arc::default(), Backpressure::default(), None);
        a.subscribe("x").unwrap();
        a.subscribe("y").unwrap();
        b.subscribe("x").unwrap();
        let (tx, ty, ux) = (
            c.topic_channel("t", "x"),
            c.topic_channel("t", "y"),
            c.topic_channel("u", "x"),
        );
        assert_ne!(tx, ux, "tenants have their own channels");
        let mut all = vec!["p.n.5".to_string(), tx.clone(), ty.clone(), ux.clone()];
        all.sort();
        assert_eq!(wanted(), all);
        assert_eq!(a.unsubscribe("y"), Ok(true));
        assert!(!wanted().contains(&ty));
        drop(m1);
        let mut left = vec!["p.n.5".to_string(), ux];
        left.sort();
        assert_eq!(wanted(), left);
        // Not connected: a publish is delivered here and fails for the rest.
        let report = b.publish("x", &Message::Text("m".into()), false).unwrap();
        assert_eq!(report.broker_error, Some(BrokerError::Unavailable));
        assert_eq!(
            b.send_to(7 << 36 | 1, &Message::Text("m".into())),
            Ok(false)
        );
        shutdown.cancel();
    }

    #[test]
    fn limits_topics_and_leaving() {
        let hub = hub(PubsubLimits {
            max_subscriptions_per_connection: 2,
            max_publishes_per_second: 3,
        });
        let mailbox: Arc<Mailbox> = Arc::default();
        let (membership, a) = hub.join(1, "t", Arc::clone(&mailbox), Backpressure::default(), None);
        assert_eq!(a.subscribe(""), Err(PubsubError::EmptyTopic));
        assert_eq!(
            a.subscribe(&"x".repeat(257)),
            Err(PubsubError::TopicTooLong)
        );
        a.subscribe(&"x".repeat(256)).unwrap();
        a.subscribe("b").unwrap();
        a.subscribe("b").unwrap();
        assert_eq!(a.subscribe("c"), Err(PubsubError::TooManySubscriptions));
        assert_eq!(a.unsubscribe("b"), Ok(true));
        assert_eq!(a.unsubscribe("b"), Ok(false));
        a.subscribe("c").unwrap();
        let m = Message::Text("m".into());
        for _ in 0..3 {
            a.publish("c", &m, false).unwrap();
        }
        assert_eq!(a.publish("c", &m, false), Err(PubsubError::RateExceeded));
        drop(membership);
        assert_eq!(hub.subscriber_count("t", "c"), 0);
        assert_eq!(a.subscribe("d"), Err(PubsubError::Closed));
        assert!(lock(&hub.state).topics.is_empty());
    }

    #[test]
    fn slow_consumers_are_skipped_or_closed() {
        let hub = hub(PubsubLimits::default());
        let slow: Arc<Mailbox> = Arc::default();
        let closing: Arc<Mailbox> = Arc::default();
        let bound = |policy| Backpressure {
            max_bytes: 100,
            policy,
            ..Backpressure::default()
        };
        let (_m1, a) = hub.join(
            1,
            "t",
            Arc::clone(&slow),
            bound(SlowConsumerPolicy::Drop),
            None,
        );
        let (_m2, b) = hub.join(
            2,
            "t",
            Arc::clone(&closing),
            bound(SlowConsumerPolicy::Close),
            None,
        );
        a.subscribe("t").unwrap();
        b.subscribe("t").unwrap();
        let big = Message::Binary(Bytes::from(vec![0u8; 60]));
        // Nothing queued yet: both take it, however close to the bound.
        assert_eq!(hub.publish("t", "t", &big).unwrap().delivered, 2);
        // Now 62 bytes wait on each: another 62 would pass 100.
        let report = hub.publish("t", "t", &big).unwrap();
        assert_eq!(
            report,
            PublishReport {
                delivered: 0,
                skipped: 2,
                broker_error: None
            }
        );
        let closes = closing
            .take()
            .into_iter()
            .filter(|c| matches!(c, Command::Close { code: 1008, .. }))
            .count();
        assert_eq!(closes, 1);
        // The socket drained: the `drop` subscriber takes messages again,
        // the closed one does not.
        slow.set_backlog(0);
        closing.set_backlog(0);
        let report = hub.publish("t", "t", &big).unwrap();
        assert_eq!(
            report,
            PublishReport {
                delivered: 1,
                skipped: 1,
                broker_error: None
            }
        );
    }
}
