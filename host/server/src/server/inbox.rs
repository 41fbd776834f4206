//! Messages gathered for the handler: a message that arrives alone goes to
//! `on-message` as it is; several that are ready together go to
//! `on-messages` in one batch, so a busy connection crosses into wasm once
//! for many messages.

use std::cell::RefCell;

use wsbox_runtime::{CallError, HandlerInstance, Message, MessageBatch, MessageKind, MessageSpan};

/// A batch takes messages until it holds this much payload (a larger
/// message goes alone)...
const BATCH_MAX_BYTES: usize = 64 * 1024;
/// ...or this many messages.
const BATCH_MAX_MESSAGES: usize = 256;
/// A batch buffer larger than this is not kept for reuse.
const BATCH_KEEP_BYTES: usize = 256 * 1024;

thread_local! {
    // Connections own no batch buffer: one takes this while it dispatches
    // and gives it back (to whichever thread it is on by then).
    static SCRATCH: RefCell<Option<MessageBatch>> = const { RefCell::new(None) };
}

/// The messages received but not yet handed to the handler.
pub(super) struct Inbox {
    /// A message on its own, kept as the engine made it.
    first: Option<wsbox_protocol::Message>,
    /// Two or more messages, the first one included.
    batch: MessageBatch,
}

impl Inbox {
    /// An empty inbox, with this thread's spare batch buffers if any.
    pub(super) fn new() -> Inbox {
        let batch = SCRATCH
            .with_borrow_mut(Option::take)
            .unwrap_or_else(|| MessageBatch {
                data: Vec::new(),
                spans: Vec::new(),
            });
        Inbox { first: None, batch }
    }

    /// Returns the batch buffers for the next connection on this thread.
    pub(super) fn recycle(self) {
        if self.batch.data.capacity() <= BATCH_KEEP_BYTES {
            SCRATCH.with_borrow_mut(|slot| *slot = Some(self.batch));
        }
    }

    /// How many messages it holds.
    pub(super) fn len(&self) -> usize {
        if self.first.is_some() {
            1
        } else {
            self.batch.spans.len()
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.first.is_none() && self.batch.spans.is_empty()
    }

    /// Whether the batch has reached its size: deliver before adding more.
    pub(super) fn is_full(&self) -> bool {
        self.batch.data.len() >= BATCH_MAX_BYTES || self.batch.spans.len() >= BATCH_MAX_MESSAGES
    }

    pub(super) fn push(&mut self, message: wsbox_protocol::Message) {
        if self.is_empty() {
            self.first = Some(message);
            return;
        }
        if let Some(first) = self.first.take() {
            self.append(first);
        }
        self.append(message);
    }

    /// Moves the messages the engine took straight from reads into the
    /// batch (the engine's buffer itself when the batch is empty).
    pub(super) fn take_from(&mut self, engine: &mut wsbox_protocol::Connection) {
        if let Some(first) = self.first.take() {
            self.append(first);
        }
        let MessageBatch { data, spans } = &mut self.batch;
        engine.drain_taken(data, |text, len| {
            spans.push(MessageSpan {
                kind: if text {
                    MessageKind::Text
                } else {
                    MessageKind::Binary
                },
                // Lengths fit: max_message_size is at most 1 GiB.
                len: u32::try_from(len).unwrap_or(u32::MAX),
            });
        });
    }

    fn append(&mut self, message: wsbox_protocol::Message) {
        let batch = &mut self.batch;
        let (kind, bytes) = match message {
            wsbox_protocol::Message::Text(text) => (MessageKind::Text, text.into_bytes()),
            wsbox_protocol::Message::Binary(data) => (MessageKind::Binary, Vec::from(data)),
        };
        // Lengths fit: max_message_size is at most 1 GiB.
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        if batch.spans.is_empty() && bytes.len() > batch.data.capacity() {
            // The reused buffer is too small: the batch grows from the first
            // message's buffer instead (a batch always gets a second message,
            // so lending an exact-size buffer otherwise only moves the copy
            // into a reallocation, and drops the reused buffer).
            batch.data = bytes;
        } else {
            batch.data.extend_from_slice(&bytes);
        }
        batch.spans.push(MessageSpan { kind, len });
    }

    /// Drops what the inbox holds (the handler is gone).
    pub(super) fn clear(&mut self) {
        self.first = None;
        self.batch.data.clear();
        self.batch.spans.clear();
    }

    /// Hands what the inbox holds to the handler and empties it. Nothing is
    /// called on a dead instance.
    pub(super) async fn deliver(
        &mut self,
        instance: &mut HandlerInstance,
    ) -> Result<(), CallError> {
        let result = if instance.is_dead() {
            Ok(())
        } else if let Some(first) = self.first.take() {
            let message = match first {
                wsbox_protocol::Message::Text(text) => Message::Text(text),
                wsbox_protocol::Message::Binary(data) => Message::Binary(Vec::from(data)),
            };
            instance.on_message(message).await
        } else if !self.batch.spans.is_empty() {
            instance.on_messages(&mut self.batch).await
        } else {
            Ok(())
        };
        self.clear();
        result
    }
}
