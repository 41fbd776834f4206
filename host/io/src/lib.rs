//! What the server, the client and the load generator share around a
//! socket: the I/O step that drives a protocol engine ([`driver`]), the
//! lingering end of a connection ([`linger`]), TLS set-up ([`tls`]), and the
//! sizes and durations their flags and configs are written in ([`units`]).
//!
//! The protocol engine itself does no I/O (`wsbox-protocol`); this crate is
//! where its bytes meet tokio sockets.

pub mod driver;
pub mod linger;
pub mod tls;
pub mod units;
