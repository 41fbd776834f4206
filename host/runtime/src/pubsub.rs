//! What a handler's pub/sub imports reach: the server's hub, through a
//! [`PubsubPort`] bound to the connection (its id and tenant fixed, so a
//! handler can only act as itself). The runtime knows the hub only by this
//! trait.

use wsbox_protocol::Message;

/// The longest topic, in bytes of UTF-8.
pub const MAX_TOPIC_LEN: usize = 256;

/// Why a pub/sub call was refused. Nothing was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PubsubError {
    #[error("the topic is empty")]
    EmptyTopic,
    #[error("the topic is longer than {MAX_TOPIC_LEN} bytes")]
    TopicTooLong,
    #[error("the connection has as many subscriptions as its tenant allows")]
    TooManySubscriptions,
    #[error("the tenant is over its publishes per second")]
    RateExceeded,
    #[error("no open connection of this tenant has that id")]
    UnknownConnection,
    #[error("the connection is not open")]
    Closed,
}

/// Why a message for other nodes did not leave this one. Local delivery
/// happened anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BrokerError {
    #[error("the pub/sub broker is unreachable; this node is reconnecting to it")]
    Unavailable,
    #[error("too many messages are waiting for the pub/sub broker")]
    Backlog,
}

/// What a publish did, counting this node's subscribers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PublishReport {
    /// Subscribers the message was queued on.
    pub delivered: u32,
    /// Subscribers skipped as slow consumers.
    pub skipped: u32,
    /// With a broker: why the message did not go to the other nodes
    /// (this node's subscribers have it anyway).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_error: Option<BrokerError>,
}

/// A connection's way to the pub/sub hub.
pub trait PubsubPort: Send + Sync {
    /// The tenant this connection's topics belong to.
    fn tenant(&self) -> &str;
    /// Subscribes the connection to a topic of its tenant.
    fn subscribe(&self, topic: &str) -> Result<(), PubsubError>;
    /// Unsubscribes it; `Ok(false)` when it was not subscribed.
    fn unsubscribe(&self, topic: &str) -> Result<bool, PubsubError>;
    /// Publishes as this connection; `exclude_self` skips it.
    fn publish(
        &self,
        topic: &str,
        message: &Message,
        exclude_self: bool,
    ) -> Result<PublishReport, PubsubError>;
    /// Subscribers of a topic of the tenant, on this node.
    fn subscriber_count(&self, topic: &str) -> Result<u32, PubsubError>;
    /// Sends to one connection of the same tenant; `Ok(false)` when it was
    /// skipped as a slow consumer.
    fn send_to(&self, connection_id: u64, message: &Message) -> Result<bool, PubsubError>;
}
