//! The errors of a handler's calls on its connection. They all implement
//! [`std::error::Error`], so a helper returning
//! `Result<(), Box<dyn std::error::Error>>` can use `?` on any of them.

use std::fmt;

/// The connection is closing or closed, so nothing more can be sent
/// (Tornado's `WebSocketClosedError`).
///
/// Writes fail with this after [`Ws::close`](crate::Ws::close) was called, once the peer started
/// the closing handshake, from [`on_close`](crate::WebSocketHandler::on_close),
/// and during the upgrade phase (the connection is not open yet).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Closed;

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the WebSocket connection is closed")
    }
}

impl std::error::Error for Closed {}

/// Why [`Ws::ping`](crate::Ws::ping) failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PingError {
    /// The connection is closing or closed.
    Closed,
    /// The payload is longer than 125 bytes (RFC 6455 §5.5).
    PayloadTooLong,
}

impl PingError {
    /// The WIT name of the error, e.g. `"payload-too-long"`.
    pub fn name(self) -> &'static str {
        match self {
            PingError::Closed => "closed",
            PingError::PayloadTooLong => "payload-too-long",
        }
    }
}

impl fmt::Display for PingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PingError::Closed => "cannot ping: the WebSocket connection is closed",
            PingError::PayloadTooLong => "a ping payload may be at most 125 bytes",
        })
    }
}

impl std::error::Error for PingError {}

impl From<Closed> for PingError {
    fn from(_: Closed) -> Self {
        PingError::Closed
    }
}

/// Why [`Ws::close`](crate::Ws::close) failed. Nothing was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseError {
    /// The code may not be sent on the wire: it must be 1000-1003,
    /// 1007-1014 or 3000-4999 (RFC 6455 §7.4).
    InvalidCode,
    /// The reason is longer than 123 bytes of UTF-8.
    ReasonTooLong,
    /// A reason was given without a code.
    ReasonWithoutCode,
}

impl CloseError {
    /// The WIT name of the error, e.g. `"invalid-code"`.
    pub fn name(self) -> &'static str {
        match self {
            CloseError::InvalidCode => "invalid-code",
            CloseError::ReasonTooLong => "reason-too-long",
            CloseError::ReasonWithoutCode => "reason-without-code",
        }
    }
}

impl fmt::Display for CloseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CloseError::InvalidCode => {
                "invalid close code: it must be 1000-1003, 1007-1014 or 3000-4999"
            }
            CloseError::ReasonTooLong => "the close reason is longer than 123 bytes",
            CloseError::ReasonWithoutCode => "a close reason needs a close code",
        })
    }
}

impl std::error::Error for CloseError {}

/// Why [`Ws::write_json`](crate::Ws::write_json) failed.
#[derive(Debug)]
pub enum JsonError {
    /// The value could not be serialized (e.g. a map with non-string keys).
    Serialize(serde_json::Error),
    /// The connection is closing or closed.
    Closed,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::Serialize(e) => write!(f, "cannot serialize the message as JSON: {e}"),
            JsonError::Closed => Closed.fmt(f),
        }
    }
}

impl std::error::Error for JsonError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JsonError::Serialize(e) => Some(e),
            JsonError::Closed => None,
        }
    }
}

impl From<Closed> for JsonError {
    fn from(_: Closed) -> Self {
        JsonError::Closed
    }
}

impl From<serde_json::Error> for JsonError {
    fn from(e: serde_json::Error) -> Self {
        JsonError::Serialize(e)
    }
}

/// Why a pub/sub call failed ([`Ws::subscribe`](crate::Ws::subscribe),
/// [`Ws::publish`](crate::Ws::publish), ...). Nothing was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PubsubError {
    /// A topic is 1 to 256 bytes; this one is empty.
    EmptyTopic,
    /// The topic is longer than 256 bytes.
    TopicTooLong,
    /// The connection has as many subscriptions as its tenant allows.
    TooManySubscriptions,
    /// The tenant published more this second than it may.
    RateExceeded,
    /// No open connection of this tenant has that id.
    UnknownConnection,
    /// The connection is not open (from `prepare`, or after it closed).
    Closed,
}

impl PubsubError {
    /// The WIT name of the error, e.g. `"rate-exceeded"`.
    pub fn name(self) -> &'static str {
        match self {
            PubsubError::EmptyTopic => "empty-topic",
            PubsubError::TopicTooLong => "topic-too-long",
            PubsubError::TooManySubscriptions => "too-many-subscriptions",
            PubsubError::RateExceeded => "rate-exceeded",
            PubsubError::UnknownConnection => "unknown-connection",
            PubsubError::Closed => "closed",
        }
    }
}

impl fmt::Display for PubsubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PubsubError::EmptyTopic => "the topic is empty",
            PubsubError::TopicTooLong => "the topic is longer than 256 bytes",
            PubsubError::TooManySubscriptions => {
                "the connection has as many subscriptions as its tenant allows"
            }
            PubsubError::RateExceeded => "the tenant is over its publishes per second",
            PubsubError::UnknownConnection => "no open connection of this tenant has that id",
            PubsubError::Closed => "the WebSocket connection is not open",
        })
    }
}

impl std::error::Error for PubsubError {}

/// Why a published message did not go to the other nodes (several nodes
/// share topics through a broker). This node's subscribers got it anyway;
/// nothing is retried (at most once).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BrokerError {
    /// The broker is unreachable; the node is reconnecting to it.
    Unavailable,
    /// Too many messages are waiting for the broker.
    Backlog,
}

impl fmt::Display for BrokerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BrokerError::Unavailable => {
                "the pub/sub broker is unreachable: the other nodes did not get the message"
            }
            BrokerError::Backlog => {
                "too many messages wait for the pub/sub broker: the other nodes did not get the message"
            }
        })
    }
}

impl std::error::Error for BrokerError {}
