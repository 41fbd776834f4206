//! A sans-IO WebSocket (RFC 6455) protocol engine: bytes in, events and bytes out.
//!
//! No sockets, no async runtime: the host reads from its transport and calls
//! [`Connection::receive`], drains [`Connection::next_event`], and writes
//! [`Connection::pending_output_vectored`] (or [`Connection::pending_output`], one
//! buffer at a time), then [`Connection::consume_output`]. The design
//! follows Python's `websockets` and `h11`.
//!
//! ```
//! use wsbox_protocol::{Config, Connection, Event, Message};
//!
//! let mut conn = Connection::new(Config::default()); // server role
//! // A masked text frame "Hi" from a client.
//! conn.receive(&[0x81, 0x82, 1, 2, 3, 4, b'H' ^ 1, b'i' ^ 2]);
//! while let Some(event) = conn.next_event() {
//!     if let Event::Message(Message::Text(text)) = event {
//!         conn.send_text(&text).unwrap(); // echo
//!     }
//! }
//! assert_eq!(conn.pending_output(), &[0x81, 0x02, b'H', b'i']);
//! ```
//!
//! The opening handshake lives in [`handshake`]; once it succeeded, the host creates a
//! [`Connection`] and feeds it the bytes that follow the HTTP response/request.
//! permessage-deflate (RFC 7692) is negotiated with [`deflate`] and enabled with
//! [`Connection::with_deflate`].

pub mod close;
pub mod deflate;
pub mod frame;
pub mod handshake;
pub mod timers;

mod connection;
mod output;
mod utf8;

pub use connection::*;
