//! What a [`Ws`](crate::Ws) talks to: the host's `connection` resource in a
//! component, or a recording fake in native tests ([`testing`](crate::testing)).

use crate::bindings::wsbox::websocket::connection as host;
use crate::bindings::wsbox::websocket::types as wit;
use crate::errors::{CloseError, Closed, PingError};
use crate::types::{OutMessage, UpgradeRequest};

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
    /// The host's resource itself, when there is one.
    fn host(&self) -> Option<&host::Connection> {
        None
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

    fn host(&self) -> Option<&host::Connection> {
        Some(self.0)
    }
}
