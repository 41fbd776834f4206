//! wsbox: a WebSocket server whose handlers are WebAssembly components.
//!
//! The host runs the protocol (the sans-IO engine in [`wsbox_protocol`]);
//! each connection's events go to its own instance of a handler component
//! that implements the `wsbox:websocket` WIT world (see `wit/`).
//!
//! - [`config`]: the TOML configuration and its defaults.
//! - [`runtime`]: wasmtime engine, modules, per-connection instances and
//!   their sandbox limits.
//! - [`server`]: the listener, the opening handshake and the connection task.
//! - [`bench`]: `wsbox bench`, the WebSocket load generator.
//! - [`client`]: a WebSocket client (`wsbox connect`), Tornado's `websocket_connect`.

pub mod admin;
pub mod bench;
pub mod bundled;
pub mod client;
pub mod config;
pub mod control;
mod engine_io;
pub mod metrics;
pub mod registry;
pub mod runtime;
pub mod scaffold;
pub mod server;
pub mod tls;

pub use wsbox_protocol as protocol;
