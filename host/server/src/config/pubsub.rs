//! Pub/sub settings: per-route slow-consumer handling and fan-out, and
//! per-tenant limits.

/// The default bound on bytes queued for one subscriber (`max_backpressure`).
pub const DEFAULT_MAX_BACKPRESSURE: usize = 256 * 1024;
/// The default cap on one connection's subscriptions.
pub const DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION: u32 = 100;
/// The default cap on a tenant's publishes per second (handlers' and
/// `send-to`s together; the admin API's are not limited).
pub const DEFAULT_MAX_PUBLISHES_PER_SECOND: u32 = 10_000;

/// What happens to a subscriber over its `max_backpressure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlowConsumerPolicy {
    /// Skip messages for it while it is over (uWebSockets, Bun).
    #[default]
    Drop,
    /// Close it with 1008 "slow consumer" (Centrifugo, NATS).
    Close,
}

impl SlowConsumerPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            SlowConsumerPolicy::Drop => "drop",
            SlowConsumerPolicy::Close => "close",
        }
    }
}

/// How published messages reach a route's subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fanout {
    /// Encoded once (compressed once per set of shared compression
    /// settings), the same bytes queued on every subscriber.
    #[default]
    Shared,
    /// Each subscriber's connection encodes the message itself, compressing
    /// it with its own compressor when it negotiated permessage-deflate:
    /// what a server compressing per connection does. A benchmark baseline.
    PerConnection,
}

impl Fanout {
    pub fn as_str(self) -> &'static str {
        match self {
            Fanout::Shared => "shared",
            Fanout::PerConnection => "per_connection",
        }
    }
}

/// A tenant's pub/sub limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PubsubLimits {
    pub max_subscriptions_per_connection: u32,
    pub max_publishes_per_second: u32,
}

impl Default for PubsubLimits {
    fn default() -> Self {
        PubsubLimits {
            max_subscriptions_per_connection: DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION,
            max_publishes_per_second: DEFAULT_MAX_PUBLISHES_PER_SECOND,
        }
    }
}
