//! What a [`Ws`](crate::Ws) talks to: the host's `connection` resource in a
//! component, or a recording fake in native tests ([`testing`](crate::testing)).

use crate::bindings::wsbox::websocket::connection as host;
use crate::bindings::wsbox::websocket::pubsub as host_pubsub;
use crate::bindings::wsbox::websocket::types as wit;
use crate::errors::{CloseError, Closed, PingError, PubsubError};
use crate::types::{OutMessage, Published, UpgradeRequest};

/// The calls a handler makes on its connection.
pub(crate) trait Backend {
    fn id(&self) -> u64;
    /// The request the connection was opened with, when the SDK did not
    /// see `upgrade` (an instance created after it).
    fn request(&self) -> UpgradeRequest;
    fn write_message(&self, message: &OutMessage<'_>) -> Result<(), Closed>;
    /// Messages lie back to back in `data`, as `spans` say.
    fn write_messages(&self, data: &[u8], spans: &[wit::MessageSpan]) -> Result<(), Closed>;
    fn ping(&self, data: &[u8]) -> Result<(), PingError>;
    fn close(&self, code: Option<u16>, reason: Option<&str>) -> Result<(), CloseError>;
    fn set_nodelay(&self, enabled: bool);
    // Pub/sub, for the test fake. With the host's resource, `Ws` calls the
    // host's `pubsub` functions below directly, so a component imports
    // `pubsub` only if its handler uses it (through the trait object,
    // every handler would).
    fn subscribe(&self, _topic: &str) -> Result<(), PubsubError> {
        Err(PubsubError::Closed)
    }
    fn unsubscribe(&self, _topic: &str) -> Result<bool, PubsubError> {
        Err(PubsubError::Closed)
    }
    fn publish(
        &self,
        _topic: &str,
        _message: &OutMessage<'_>,
        _exclude_self: bool,
    ) -> Result<Published, PubsubError> {
        Err(PubsubError::Closed)
    }
    fn subscriber_count(&self, _topic: &str) -> Result<u32, PubsubError> {
        Err(PubsubError::Closed)
    }
    fn send_to(&self, _connection_id: u64, _message: &OutMessage<'_>) -> Result<bool, PubsubError> {
        Err(PubsubError::Closed)
    }
}

/// What a [`Ws`](crate::Ws) talks to. The host's connection is called
/// directly, not through the trait object: in a component a call through a
/// vtable is a `call_indirect`, whose first use writes the instance's
/// function table, one more 4 KiB page for every live instance (measured
/// with the idle benchmark: `bench/ANALYSIS.md`).
#[derive(Clone, Copy)]
pub(crate) enum Conn<'a> {
    Host(&'a host::Connection),
    /// The native test fake ([`testing`](crate::testing)).
    Fake(&'a dyn Backend),
}

macro_rules! dispatch {
    ($self:ident, $method:ident($($arg:expr),*)) => {
        match $self {
            Conn::Host(conn) => HostConnection(conn).$method($($arg),*),
            Conn::Fake(backend) => backend.$method($($arg),*),
        }
    };
}

impl<'a> Conn<'a> {
    pub(crate) fn id(self) -> u64 {
        dispatch!(self, id())
    }

    pub(crate) fn request(self) -> UpgradeRequest {
        dispatch!(self, request())
    }

    pub(crate) fn write_message(self, message: &OutMessage<'_>) -> Result<(), Closed> {
        dispatch!(self, write_message(message))
    }

    pub(crate) fn write_messages(
        self,
        data: &[u8],
        spans: &[wit::MessageSpan],
    ) -> Result<(), Closed> {
        dispatch!(self, write_messages(data, spans))
    }

    pub(crate) fn ping(self, data: &[u8]) -> Result<(), PingError> {
        dispatch!(self, ping(data))
    }

    pub(crate) fn close(self, code: Option<u16>, reason: Option<&str>) -> Result<(), CloseError> {
        dispatch!(self, close(code, reason))
    }

    pub(crate) fn set_nodelay(self, enabled: bool) {
        dispatch!(self, set_nodelay(enabled))
    }

    /// The host's resource itself, when there is one.
    pub(crate) fn host(self) -> Option<&'a host::Connection> {
        match self {
            Conn::Host(conn) => Some(conn),
            Conn::Fake(_) => None,
        }
    }
}

/// The connection the host lent for the current event.
pub(crate) struct HostConnection<'a>(pub(crate) &'a host::Connection);

impl Backend for HostConnection<'_> {
    fn id(&self) -> u64 {
        self.0.id()
    }

    fn request(&self) -> UpgradeRequest {
        self.0.request().into()
    }

    fn write_message(&self, message: &OutMessage<'_>) -> Result<(), Closed> {
        self.0
            .write_message(message.as_wit())
            .map_err(|host::WriteError::Closed| Closed)
    }

    fn write_messages(&self, data: &[u8], spans: &[wit::MessageSpan]) -> Result<(), Closed> {
        self.0
            .write_messages(wit::MessageBatchParam { data, spans })
            .map_err(|host::WriteError::Closed| Closed)
    }

    fn ping(&self, data: &[u8]) -> Result<(), PingError> {
        self.0.ping(data).map_err(|e| match e {
            host::PingError::Closed => PingError::Closed,
            host::PingError::PayloadTooLong => PingError::PayloadTooLong,
        })
    }

    fn close(&self, code: Option<u16>, reason: Option<&str>) -> Result<(), CloseError> {
        self.0.close(code, reason).map_err(|e| match e {
            host::CloseError::InvalidCode => CloseError::InvalidCode,
            host::CloseError::ReasonTooLong => CloseError::ReasonTooLong,
            host::CloseError::ReasonWithoutCode => CloseError::ReasonWithoutCode,
        })
    }

    fn set_nodelay(&self, enabled: bool) {
        self.0.set_nodelay(enabled);
    }
}

fn pubsub_error(e: host_pubsub::PubsubError) -> PubsubError {
    match e {
        host_pubsub::PubsubError::EmptyTopic => PubsubError::EmptyTopic,
        host_pubsub::PubsubError::TopicTooLong => PubsubError::TopicTooLong,
        host_pubsub::PubsubError::TooManySubscriptions => PubsubError::TooManySubscriptions,
        host_pubsub::PubsubError::RateExceeded => PubsubError::RateExceeded,
        host_pubsub::PubsubError::UnknownConnection => PubsubError::UnknownConnection,
        host_pubsub::PubsubError::Closed => PubsubError::Closed,
    }
}

/// `pubsub.subscribe` on the host.
pub(crate) fn host_subscribe(conn: &host::Connection, topic: &str) -> Result<(), PubsubError> {
    host_pubsub::subscribe(conn, topic).map_err(pubsub_error)
}

/// `pubsub.unsubscribe` on the host.
pub(crate) fn host_unsubscribe(conn: &host::Connection, topic: &str) -> Result<bool, PubsubError> {
    host_pubsub::unsubscribe(conn, topic).map_err(pubsub_error)
}

/// `pubsub.publish` on the host.
pub(crate) fn host_publish(
    conn: &host::Connection,
    topic: &str,
    message: &OutMessage<'_>,
    exclude_self: bool,
) -> Result<Published, PubsubError> {
    host_pubsub::publish_with_broker_report(
        conn,
        topic,
        message.as_wit(),
        host_pubsub::PublishOptions { exclude_self },
    )
    .map(|r| Published {
        delivered: r.here.delivered,
        skipped: r.here.skipped,
        broker_error: r.broker_error.map(|e| match e {
            host_pubsub::BrokerError::Unavailable => crate::BrokerError::Unavailable,
            host_pubsub::BrokerError::Backlog => crate::BrokerError::Backlog,
        }),
    })
    .map_err(pubsub_error)
}

/// `pubsub.subscriber-count` on the host.
pub(crate) fn host_subscriber_count(
    conn: &host::Connection,
    topic: &str,
) -> Result<u32, PubsubError> {
    host_pubsub::subscriber_count(conn, topic).map_err(pubsub_error)
}

/// `pubsub.send-to` on the host.
pub(crate) fn host_send_to(
    conn: &host::Connection,
    connection_id: u64,
    message: &OutMessage<'_>,
) -> Result<bool, PubsubError> {
    host_pubsub::send_to(conn, connection_id, message.as_wit()).map_err(pubsub_error)
}
