//! The host functions a handler imports (`wsbox:websocket/connection`).
//! Each acts on the instance's own connection only, and only by recording
//! an [`Effect`]: the connection task applies the effects to its protocol
//! engine and socket after the call returns.

use wsbox_protocol::CloseError as EngineCloseError;

use super::bindings::wsbox::websocket::{connection, types};
use super::bindings::{CloseError, LogLevel, Message, MessageBatch, PingError, WriteError};
use super::effects::{Effect, WriteBatch};
use super::instance::{ConnState, HostState};

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

impl connection::Host for HostState {
    fn write_message(&mut self, message: Message) -> Result<(), WriteError> {
        let len = match &message {
            Message::Text(text) => text.len(),
            Message::Binary(data) => data.len(),
        };
        if !self.conn.admit_output(len, 1) {
            return Err(WriteError::Closed);
        }
        self.conn.effects.push(Effect::Write(message));
        Ok(())
    }

    fn write_messages(&mut self, batch: MessageBatch) -> wasmtime::Result<Result<(), WriteError>> {
        let batch = match WriteBatch::new(batch) {
            Ok(batch) => batch,
            Err(e) => wasmtime::bail!("write-messages: {e}"),
        };
        if !self.conn.admit_output(batch.data_len(), batch.len()) {
            return Ok(Err(WriteError::Closed));
        }
        self.conn.effects.push(Effect::WriteBatch(batch));
        Ok(Ok(()))
    }

    fn ping(&mut self, data: Vec<u8>) -> Result<(), PingError> {
        if data.len() > 125 {
            return Err(PingError::PayloadTooLong);
        }
        // Pings count against the output cap like messages: a handler
        // pinging in a loop must not queue without bound either.
        if !self.conn.admit_output(data.len(), 1) {
            return Err(PingError::Closed);
        }
        self.conn.effects.push(Effect::Ping(data));
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
        if !self.conn.open {
            return Ok(());
        }
        self.conn.open = false;
        self.conn.effects.push(Effect::Close { code, reason });
        Ok(())
    }

    fn set_nodelay(&mut self, enabled: bool) {
        self.conn.effects.push(Effect::SetNodelay(enabled));
    }

    fn log(&mut self, level: LogLevel, message: String) {
        let id = self.conn.id;
        let Some(dropped) = self.log_budget.admit() else {
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
