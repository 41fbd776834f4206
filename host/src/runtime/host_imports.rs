//! The host functions a handler imports (`wsbox:websocket/connection`).
//! Each acts on the instance's own connection only.

use wsbox_protocol::{CloseError as EngineCloseError, SendError, State};

use super::bindings::wsbox::websocket::{connection, types};
use super::bindings::{
    CloseError, LogLevel, Message, MessageBatch, MessageKind, PingError, WriteError,
};
use super::instance::{ConnState, HostState};

impl types::Host for HostState {}

impl ConnState {
    /// The engine, if the connection is open and the handler may still write.
    fn writable_engine(&mut self) -> Option<&mut wsbox_protocol::Connection> {
        if self.output_overflow {
            return None;
        }
        self.engine.as_mut().filter(|e| e.state() == State::Open)
    }

    /// Checks the cap on queued output *before* queueing `frames` frames
    /// carrying `payload` bytes: over it, nothing is queued, the handler's
    /// writes fail from now on and the connection task closes the
    /// connection (1011, "output limit exceeded").
    fn admit_output(&mut self, payload: usize, frames: usize) -> bool {
        let pending = self.engine.as_ref().map_or(0, |e| e.pending_output().len());
        let wanted = pending
            .saturating_add(payload)
            .saturating_add(frames.saturating_mul(MAX_FRAME_HEADER));
        if wanted <= self.max_pending_output {
            return true;
        }
        tracing::warn!(
            conn = self.id,
            pending,
            wanted,
            limit = self.max_pending_output,
            "handler tried to queue more output than allowed; closing the connection"
        );
        self.output_overflow = true;
        false
    }
}

/// The largest frame header: 2 bytes, 8 of extended length (the server
/// does not mask).
const MAX_FRAME_HEADER: usize = 10;

impl connection::Host for HostState {
    fn write_message(&mut self, message: Message) -> Result<(), WriteError> {
        let len = match &message {
            Message::Text(text) => text.len(),
            Message::Binary(data) => data.len(),
        };
        if self.conn.writable_engine().is_none() || !self.conn.admit_output(len, 1) {
            return Err(WriteError::Closed);
        }
        let engine = self.conn.writable_engine().ok_or(WriteError::Closed)?;
        let sent = match &message {
            Message::Text(text) => engine.send_text(text),
            Message::Binary(data) => engine.send_binary(data),
        };
        sent.map_err(|_: SendError| WriteError::Closed)
    }

    fn write_messages(&mut self, batch: MessageBatch) -> wasmtime::Result<Result<(), WriteError>> {
        let total = batch
            .spans
            .iter()
            .try_fold(0usize, |sum, span| sum.checked_add(span.len as usize));
        if total != Some(batch.data.len()) {
            wasmtime::bail!(
                "write-messages: the spans do not add up to the batch's {} bytes of data",
                batch.data.len()
            );
        }
        if self.conn.writable_engine().is_none()
            || !self.conn.admit_output(batch.data.len(), batch.spans.len())
        {
            return Ok(Err(WriteError::Closed));
        }
        let Some(engine) = self.conn.writable_engine() else {
            return Ok(Err(WriteError::Closed));
        };
        let mut rest = batch.data.as_slice();
        for (i, span) in batch.spans.iter().enumerate() {
            let (bytes, tail) = rest.split_at(span.len as usize);
            rest = tail;
            let sent = match span.kind {
                MessageKind::Text => match std::str::from_utf8(bytes) {
                    Ok(text) => engine.send_text(text),
                    // The instance dies with the trap, so what this batch
                    // queued before goes out with the 1011 close at most.
                    Err(_) => wasmtime::bail!("write-messages: text span {i} is not valid UTF-8"),
                },
                MessageKind::Binary => engine.send_binary(bytes),
            };
            if sent.is_err() {
                return Ok(Err(WriteError::Closed));
            }
        }
        Ok(Ok(()))
    }

    fn ping(&mut self, data: Vec<u8>) -> Result<(), PingError> {
        if data.len() > 125 {
            return Err(PingError::PayloadTooLong);
        }
        // Pings count against the output cap like messages: a handler
        // pinging in a loop must not queue without bound either.
        if self.conn.writable_engine().is_none() || !self.conn.admit_output(data.len(), 1) {
            return Err(PingError::Closed);
        }
        let engine = self.conn.writable_engine().ok_or(PingError::Closed)?;
        engine.send_ping(&data).map_err(|e| match e {
            SendError::PayloadTooLong => PingError::PayloadTooLong,
            SendError::Closed => PingError::Closed,
        })
    }

    fn close(&mut self, code: Option<u16>, reason: Option<String>) -> Result<(), CloseError> {
        let reason = reason.unwrap_or_default();
        // Validate even when there is nothing left to close, so a bad
        // argument is always reported the same way.
        if let Some(c) = code {
            if !wsbox_protocol::close::is_sendable_code(c) {
                return Err(CloseError::InvalidCode);
            }
        } else if !reason.is_empty() {
            return Err(CloseError::ReasonWithoutCode);
        }
        if reason.len() > 123 {
            return Err(CloseError::ReasonTooLong);
        }
        let Some(engine) = self.conn.engine.as_mut() else {
            // Not open yet (called from `upgrade`): nothing to close.
            return Ok(());
        };
        if engine.state() != State::Open {
            return Ok(());
        }
        engine.close(code, &reason).map_err(|e| match e {
            EngineCloseError::InvalidCode(_) => CloseError::InvalidCode,
            EngineCloseError::ReasonTooLong(_) => CloseError::ReasonTooLong,
            EngineCloseError::ReasonWithoutCode => CloseError::ReasonWithoutCode,
        })?;
        self.conn.handler_closed = true;
        Ok(())
    }

    fn set_nodelay(&mut self, enabled: bool) {
        self.conn.nodelay = Some(enabled);
    }

    fn log(&mut self, level: LogLevel, message: String) {
        let id = self.conn.id;
        match level {
            LogLevel::Trace => tracing::trace!(target: "wsbox::guest", conn = id, "{message}"),
            LogLevel::Debug => tracing::debug!(target: "wsbox::guest", conn = id, "{message}"),
            LogLevel::Info => tracing::info!(target: "wsbox::guest", conn = id, "{message}"),
            LogLevel::Warn => tracing::warn!(target: "wsbox::guest", conn = id, "{message}"),
            LogLevel::Error => tracing::error!(target: "wsbox::guest", conn = id, "{message}"),
        }
    }
}
