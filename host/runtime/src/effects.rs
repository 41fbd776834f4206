//! What a handler asks of its connection during a call. The host imports
//! only record these; the connection task applies them to its protocol
//! engine and socket when the call returns, so the instance never holds the
//! connection itself (and can be dropped while the socket lives on).

use bytes::Bytes;

use super::bindings::{Message, MessageBatch, MessageKind};

/// One request of the handler, in the order it made them.
#[derive(Debug)]
pub enum Effect {
    /// `write-message`.
    Write(Message),
    /// `write-messages`.
    WriteBatch(WriteBatch),
    /// `ping`, payload at most 125 bytes.
    Ping(Vec<u8>),
    /// `close`, code and reason already validated (RFC 6455 §7.4).
    Close { code: Option<u16>, reason: String },
    /// `set-nodelay`.
    SetNodelay(bool),
}

/// A batch from `write-messages` whose spans add up to its data and whose
/// text spans are valid UTF-8: checked once, when it is made.
#[derive(Debug)]
pub struct WriteBatch(MessageBatch);

/// One message of a [`WriteBatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchMessage<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

impl WriteBatch {
    /// Checks a batch; the error says what is wrong with it.
    pub fn new(batch: MessageBatch) -> Result<WriteBatch, String> {
        let total = batch
            .spans
            .iter()
            .try_fold(0usize, |sum, span| sum.checked_add(span.len as usize));
        if total != Some(batch.data.len()) {
            return Err(format!(
                "the spans do not add up to the batch's {} bytes of data",
                batch.data.len()
            ));
        }
        let mut offset = 0;
        for (i, span) in batch.spans.iter().enumerate() {
            let end = offset + span.len as usize;
            if span.kind == MessageKind::Text
                && simdutf8::basic::from_utf8(&batch.data[offset..end]).is_err()
            {
                return Err(format!("text span {i} is not valid UTF-8"));
            }
            offset = end;
        }
        Ok(WriteBatch(batch))
    }

    /// Payload bytes in the batch.
    pub fn data_len(&self) -> usize {
        self.0.data.len()
    }

    /// Messages in the batch.
    pub fn len(&self) -> usize {
        self.0.spans.len()
    }

    /// Whether the batch holds no message.
    pub fn is_empty(&self) -> bool {
        self.0.spans.is_empty()
    }

    /// The messages, in order, each as a slice of the batch's data (no copy):
    /// `true` for text.
    pub fn into_messages(self) -> impl Iterator<Item = (bool, Bytes)> {
        let mut data = Bytes::from(self.0.data);
        self.0.spans.into_iter().map(move |span| {
            let bytes = data.split_to((span.len as usize).min(data.len()));
            (span.kind == MessageKind::Text, bytes)
        })
    }

    /// The messages, in order.
    pub fn messages(&self) -> impl Iterator<Item = BatchMessage<'_>> {
        let mut rest = self.0.data.as_slice();
        self.0.spans.iter().map(move |span| {
            let (bytes, tail) = rest.split_at(span.len as usize);
            rest = tail;
            match span.kind {
                // SAFETY: `new` checked every text span as UTF-8, and the
                // batch cannot change afterwards (the field is private).
                MessageKind::Text => {
                    BatchMessage::Text(unsafe { std::str::from_utf8_unchecked(bytes) })
                }
                MessageKind::Binary => BatchMessage::Binary(bytes),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MessageSpan;

    fn batch(data: &[u8], spans: &[(MessageKind, u32)]) -> MessageBatch {
        MessageBatch {
            data: data.to_vec(),
            spans: spans
                .iter()
                .map(|&(kind, len)| MessageSpan { kind, len })
                .collect(),
        }
    }

    #[test]
    fn batches_are_checked_once_and_split_in_order() {
        let ok = WriteBatch::new(batch(
            b"hi\x00\x01",
            &[(MessageKind::Text, 2), (MessageKind::Binary, 2)],
        ))
        .unwrap();
        assert_eq!(
            ok.messages().collect::<Vec<_>>(),
            vec![BatchMessage::Text("hi"), BatchMessage::Binary(&[0, 1])]
        );
        assert_eq!((ok.len(), ok.data_len()), (2, 4));
        assert_eq!(
            ok.into_messages().collect::<Vec<_>>(),
            vec![
                (true, Bytes::from_static(b"hi")),
                (false, Bytes::from_static(&[0, 1]))
            ]
        );
        let short = WriteBatch::new(batch(b"abc", &[(MessageKind::Binary, 2)])).unwrap_err();
        assert!(short.contains("do not add up"), "{short}");
        let overflow = WriteBatch::new(batch(
            b"abc",
            &[
                (MessageKind::Binary, u32::MAX),
                (MessageKind::Binary, u32::MAX),
            ],
        ))
        .unwrap_err();
        assert!(overflow.contains("do not add up"), "{overflow}");
        let bad = WriteBatch::new(batch(b"ok\xff", &[(MessageKind::Text, 3)])).unwrap_err();
        assert!(bad.contains("text span 0"), "{bad}");
    }
}
