//! wsbox: a WebSocket server whose handlers are WebAssembly components.
//!
//! This crate is the `wsbox` command; its library re-exports the crates it
//! assembles, one per job, under one name:
//!
//! - [`protocol`] (`wsbox-protocol`): the sans-IO RFC 6455 engine, with
//!   permessage-deflate, timers and the client handshake; no I/O, no clock.
//! - [`io`] (`wsbox-io`): the socket step that drives an engine, TLS set-up,
//!   size and duration units.
//! - [`runtime`] (`wsbox-runtime`): the wasmtime engine, the pool, modules
//!   and per-connection handler instances; it knows nothing of sockets.
//! - [`server`], [`config`], [`registry`], [`control`], [`admin`],
//!   [`metrics`], [`bundled`] (`wsbox-server`): the listener, connection
//!   tasks, routes, pub/sub, hibernation, the registry and admin API.
//! - [`client`] (`wsbox-client`): a WebSocket client, Tornado's
//!   `websocket_connect`, and `wsbox connect`.
//! - [`bench`] (`wsbox-bench`): `wsbox bench`, the load generator.
//! - [`scaffold`]: `wsbox new` and `wsbox build`, handler projects in every
//!   supported language.

pub mod scaffold;

pub use wsbox_bench as bench;
pub use wsbox_client as client;
pub use wsbox_io as io;
pub use wsbox_protocol as protocol;
pub use wsbox_runtime as runtime;
pub use wsbox_server::{admin, bundled, config, control, metrics, registry, server};

/// TLS set-up (`wsbox-io`) and `wsbox cert --dev`'s certificate.
pub mod tls {
    pub use wsbox_io::tls::*;
    pub use wsbox_server::dev_cert::*;
}
