//! Helpers shared by the fuzz targets.

#![allow(dead_code)]

use wsbox_protocol::{Connection, Event};

/// Reads small numbers off the front of the fuzz input; zeros once it runs out.
pub struct Reader<'a> {
    pub data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// A message size limit worth testing, picked by `selector`.
pub fn max_message_size(selector: u8) -> usize {
    const SIZES: [usize; 8] = [0, 1, 2, 125, 126, 1000, 65_536, 10 * 1024 * 1024];
    SIZES[usize::from(selector) % SIZES.len()]
}

/// Drain events the way a host does (echoing messages) and check the invariants:
/// messages respect the size limit, and after a terminal event nothing follows.
/// Returns whether a terminal event (Closed or ProtocolError) was seen.
pub fn drain(conn: &mut Connection, max: usize, finished: &mut bool) {
    while let Some(event) = conn.next_event() {
        assert!(!*finished, "event after the connection finished: {event:?}");
        match event {
            Event::Message(message) => {
                assert!(message.len() <= max, "{} > {max}", message.len());
                let _ = conn.send_message(&message);
            }
            Event::Ping(payload) | Event::Pong(payload) => assert!(payload.len() <= 125),
            Event::Closed(_) | Event::ProtocolError(_) => *finished = true,
        }
    }
}
