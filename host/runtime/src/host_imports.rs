//! The host functions a handler imports (`wsbox:websocket/connection`,
//! `logging` and `pubsub`, and the 0.1.0 forms).
//! `connection`'s act on the instance's own connection only, and only by
//! recording an [`Effect`]: the connection task applies the effects to its
//! protocol engine and socket after the call returns. `pubsub`'s act on
//! the hub at once (a publish's report counts the subscribers it reached)
//! and reach other connections only through their mailboxes.

use wsbox_protocol::CloseError as EngineCloseError;

use wasmtime::component::Resource;

use super::bindings::v0_2::wsbox::websocket::{connection, logging, pubsub, types};
use super::bindings::{
    BrokerError, BrokerPublishReport, CloseError, ConnectionResource, IpAddress, LogLevel, Message,
    MessageBatch, PingError, PublishOptions, PublishReport, PubsubError, SocketAddress,
    UpgradeRequest, WriteError,
};
use super::effects::{Effect, WriteBatch};
use super::instance::{ConnState, HostState};
use crate::pubsub::{PubsubError as HubError, PubsubPort};

impl types::Host for HostState {}

/// The largest frame header: 2 bytes, 8 of extended length (the server
/// does not mask).
const MAX_FRAME_HEADER: usize = 10;

impl ConnState {
    /// Whether the handler may queue `frames` frames carrying `payload`
    /// bytes: the connection must be open and the cap on queued output,
    /// checked *before* queueing, not exceeded. Over the cap nothing is
    /// queued, the handler's writes fail from now on and the connection
    /// task closes the connection (1011, "output limit exceeded").
    fn admit_output(&mut self, payload: usize, frames: usize) -> bool {
        if !self.open || self.output_overflow {
            return false;
        }
        let wanted = self
            .queued
            .saturating_add(payload)
            .saturating_add(frames.saturating_mul(MAX_FRAME_HEADER));
        if wanted <= self.max_pending_output {
            self.queued = wanted;
            return true;
        }
        tracing::warn!(
            conn = self.id,
            queued = self.queued,
            wanted,
            limit = self.max_pending_output,
            "handler tried to queue more output than allowed; closing the connection"
        );
        self.output_overflow = true;
        false
    }
}

impl ConnState {
    fn write(&mut self, message: Message) -> Result<(), WriteError> {
        let len = match &message {
            Message::Text(text) => text.len(),
            Message::Binary(data) => data.len(),
        };
        if !self.admit_output(len, 1) {
            return Err(WriteError::Closed);
        }
        self.effects.push(Effect::Write(message));
        Ok(())
    }

    fn write_batch(&mut self, batch: MessageBatch) -> wasmtime::Result<Result<(), WriteError>> {
        let batch = match WriteBatch::new(batch) {
            Ok(batch) => batch,
            Err(e) => wasmtime::bail!("write-messages: {e}"),
        };
        if !self.admit_output(batch.data_len(), batch.len()) {
            return Ok(Err(WriteError::Closed));
        }
        self.effects.push(Effect::WriteBatch(batch));
        Ok(Ok(()))
    }

    fn ping(&mut self, data: Vec<u8>) -> Result<(), PingError> {
        if data.len() > 125 {
            return Err(PingError::PayloadTooLong);
        }
        // Pings count against the output cap like messages: a handler
        // pinging in a loop must not queue without bound either.
        if !self.admit_output(data.len(), 1) {
            return Err(PingError::Closed);
        }
        self.effects.push(Effect::Ping(data));
        Ok(())
    }

    fn close(&mut self, code: Option<u16>, reason: Option<String>) -> Result<(), CloseError> {
        let reason = reason.unwrap_or_default();
        // Validate even when there is nothing left to close, so a bad
        // argument is always reported the same way.
        wsbox_protocol::close::validate_outgoing(code, &reason).map_err(|e| match e {
            EngineCloseError::InvalidCode(_) => CloseError::InvalidCode,
            EngineCloseError::ReasonTooLong(_) => CloseError::ReasonTooLong,
            EngineCloseError::ReasonWithoutCode => CloseError::ReasonWithoutCode,
        })?;
        // Not open (called from `upgrade`, or already closing): nothing to close.
        if !self.open {
            return Ok(());
        }
        self.open = false;
        self.effects.push(Effect::Close { code, reason });
        Ok(())
    }

    fn set_nodelay(&mut self, enabled: bool) {
        self.effects.push(Effect::SetNodelay(enabled));
    }
}

impl HostState {
    fn log(&mut self, level: LogLevel, message: String) {
        let id = self.conn.id;
        let Some(dropped) = self.log_budget.admit(message.len()) else {
            return;
        };
        super::guest_log::report_dropped(id, dropped);
        let message = super::log_budget::truncate_line(&message);
        match level {
            LogLevel::Trace => tracing::trace!(target: "wsbox::guest", conn = id, "{message}"),
            LogLevel::Debug => tracing::debug!(target: "wsbox::guest", conn = id, "{message}"),
            LogLevel::Info => tracing::info!(target: "wsbox::guest", conn = id, "{message}"),
            LogLevel::Warn => tracing::warn!(target: "wsbox::guest", conn = id, "{message}"),
            LogLevel::Error => tracing::error!(target: "wsbox::guest", conn = id, "{message}"),
        }
    }
}

impl connection::Host for HostState {}

/// `wsbox:websocket/connection@0.2.0`: the methods of the connection a
/// handler was lent. An instance serves one connection, so the handle
/// names it without a lookup.
impl connection::HostConnection for HostState {
    fn id(&mut self, _conn: Resource<ConnectionResource>) -> u64 {
        self.conn.id
    }

    fn request(&mut self, _conn: Resource<ConnectionResource>) -> UpgradeRequest {
        self.conn
            .request
            .as_ref()
            .and_then(|packed| packed.unpack())
            .unwrap_or_else(|| empty_request(self.conn.id))
    }

    fn write_message(
        &mut self,
        _conn: Resource<ConnectionResource>,
        message: Message,
    ) -> Result<(), WriteError> {
        self.conn.write(message)
    }

    fn write_messages(
        &mut self,
        _conn: Resource<ConnectionResource>,
        batch: MessageBatch,
    ) -> wasmtime::Result<Result<(), WriteError>> {
        self.conn.write_batch(batch)
    }

    fn ping(
        &mut self,
        _conn: Resource<ConnectionResource>,
        data: Vec<u8>,
    ) -> Result<(), PingError> {
        self.conn.ping(data)
    }

    fn close(
        &mut self,
        _conn: Resource<ConnectionResource>,
        code: Option<u16>,
        reason: Option<String>,
    ) -> Result<(), CloseError> {
        self.conn.close(code, reason)
    }

    fn set_nodelay(&mut self, _conn: Resource<ConnectionResource>, enabled: bool) {
        self.conn.set_nodelay(enabled);
    }

    fn drop(&mut self, _conn: Resource<ConnectionResource>) -> wasmtime::Result<()> {
        // Handlers are only lent the connection; there is nothing to free.
        Ok(())
    }
}

/// A request for a connection whose `upgrade` never ran (cannot happen
/// today: the host always calls it). Empty rather than a trap.
pub(crate) fn empty_request(connection_id: u64) -> UpgradeRequest {
    UpgradeRequest {
        connection_id,
        path: String::new(),
        query: String::new(),
        headers: Vec::new(),
        positional_captures: Vec::new(),
        named_captures: Vec::new(),
        remote_address: SocketAddress {
            address: IpAddress::Ipv4((0, 0, 0, 0)),
            port: 0,
        },
        subprotocols: Vec::new(),
        origin: None,
        origin_allowed: false,
    }
}

fn hub_error(e: HubError) -> PubsubError {
    match e {
        HubError::EmptyTopic => PubsubError::EmptyTopic,
        HubError::TopicTooLong => PubsubError::TopicTooLong,
        HubError::TooManySubscriptions => PubsubError::TooManySubscriptions,
        HubError::RateExceeded => PubsubError::RateExceeded,
        HubError::UnknownConnection => PubsubError::UnknownConnection,
        HubError::Closed => PubsubError::Closed,
    }
}

fn wire_message(message: Message) -> wsbox_protocol::Message {
    match message {
        Message::Text(text) => wsbox_protocol::Message::Text(text),
        Message::Binary(data) => wsbox_protocol::Message::Binary(data.into()),
    }
}

impl ConnState {
    /// The hub, for a connection that has been accepted.
    fn pubsub(&self) -> Result<&dyn PubsubPort, PubsubError> {
        self.pubsub.as_deref().ok_or(PubsubError::Closed)
    }

    /// Subscribing needs an open connection; publishing, counting and
    /// sending also work from `on-close` (a "left the room" notice).
    fn pubsub_open(&self) -> Result<&dyn PubsubPort, PubsubError> {
        if !self.open {
            return Err(PubsubError::Closed);
        }
        self.pubsub()
    }

    fn log_refusal(&self, call: &str, topic: &str, e: PubsubError) {
        let tenant = self.pubsub.as_ref().map_or("", |hub| hub.tenant());
        tracing::debug!(tenant, conn = self.id, call, topic, error = ?e, "pubsub call refused");
    }
}

/// `wsbox:websocket/pubsub@0.2.3`: topics of the connection's tenant.
impl pubsub::Host for HostState {
    fn subscribe(
        &mut self,
        _conn: Resource<ConnectionResource>,
        topic: String,
    ) -> Result<(), PubsubError> {
        let result = self
            .conn
            .pubsub_open()
            .and_then(|hub| hub.subscribe(&topic).map_err(hub_error));
        if let Err(e) = result {
            self.conn.log_refusal("subscribe", &topic, e);
        }
        result
    }

    fn unsubscribe(
        &mut self,
        _conn: Resource<ConnectionResource>,
        topic: String,
    ) -> Result<bool, PubsubError> {
        self.conn
            .pubsub()
            .and_then(|hub| hub.unsubscribe(&topic).map_err(hub_error))
    }

    fn publish(
        &mut self,
        conn: Resource<ConnectionResource>,
        topic: String,
        message: Message,
        options: PublishOptions,
    ) -> Result<PublishReport, PubsubError> {
        self.publish_with_broker_report(conn, topic, message, options)
            .map(|report| report.here)
    }

    fn publish_with_broker_report(
        &mut self,
        _conn: Resource<ConnectionResource>,
        topic: String,
        message: Message,
        options: PublishOptions,
    ) -> Result<BrokerPublishReport, PubsubError> {
        let message = wire_message(message);
        let result = self.conn.pubsub().and_then(|hub| {
            hub.publish(&topic, &message, options.exclude_self)
                .map_err(hub_error)
        });
        match result {
            Ok(report) => Ok(BrokerPublishReport {
                here: PublishReport {
                    delivered: report.delivered,
                    skipped: report.skipped,
                },
                broker_error: report.broker_error.map(|e| match e {
                    crate::pubsub::BrokerError::Unavailable => BrokerError::Unavailable,
                    crate::pubsub::BrokerError::Backlog => BrokerError::Backlog,
                }),
            }),
            Err(e) => {
                self.conn.log_refusal("publish", &topic, e);
                Err(e)
            }
        }
    }

    fn subscriber_count(
        &mut self,
        _conn: Resource<ConnectionResource>,
        topic: String,
    ) -> Result<u32, PubsubError> {
        self.conn
            .pubsub()
            .and_then(|hub| hub.subscriber_count(&topic).map_err(hub_error))
    }

    fn send_to(
        &mut self,
        _conn: Resource<ConnectionResource>,
        connection_id: u64,
        message: Message,
    ) -> Result<bool, PubsubError> {
        let message = wire_message(message);
        self.conn
            .pubsub()
            .and_then(|hub| hub.send_to(connection_id, &message).map_err(hub_error))
    }
}

impl logging::Host for HostState {
    fn log(&mut self, level: LogLevel, message: String) {
        HostState::log(self, level, message);
    }
}

/// `wsbox:websocket@0.1.0`, adapted to the same effects.
mod v0_1_imports {
    use super::super::bindings::v0_1::wsbox::websocket::{connection as old, types as old_types};
    use super::super::contract::v0_1_adapt;
    use super::{CloseError, HostState, PingError, WriteError};

    impl old_types::Host for HostState {}

    impl old::Host for HostState {
        fn write_message(&mut self, message: old_types::Message) -> Result<(), old::WriteError> {
            self.conn
                .write(v0_1_adapt::message_from_old(message))
                .map_err(|WriteError::Closed| old::WriteError::Closed)
        }

        fn write_messages(
            &mut self,
            batch: old_types::MessageBatch,
        ) -> wasmtime::Result<Result<(), old::WriteError>> {
            Ok(self
                .conn
                .write_batch(v0_1_adapt::batch_from_old(batch))?
                .map_err(|WriteError::Closed| old::WriteError::Closed))
        }

        fn ping(&mut self, data: Vec<u8>) -> Result<(), old::PingError> {
            self.conn.ping(data).map_err(|e| match e {
                PingError::Closed => old::PingError::Closed,
                PingError::PayloadTooLong => old::PingError::PayloadTooLong,
            })
        }

        fn close(
            &mut self,
            code: Option<u16>,
            reason: Option<String>,
        ) -> Result<(), old::CloseError> {
            self.conn.close(code, reason).map_err(|e| match e {
                CloseError::InvalidCode => old::CloseError::InvalidCode,
                CloseError::ReasonTooLong => old::CloseError::ReasonTooLong,
                CloseError::ReasonWithoutCode => old::CloseError::ReasonWithoutCode,
            })
        }

        fn set_nodelay(&mut self, enabled: bool) {
            self.conn.set_nodelay(enabled);
        }

        fn log(&mut self, level: old_types::LogLevel, message: String) {
            HostState::log(self, v0_1_adapt::log_level(level), message);
        }
    }
}
