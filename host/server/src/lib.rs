//! The wsbox server: the listener, the opening handshake, connection tasks,
//! routes, the pub/sub hub (and its brokers), hibernation, the module
//! registry, the control plane and its admin API, metrics, and the config
//! that sets them up.
//!
//! The protocol engine is `wsbox-protocol`, the wasm runtime
//! `wsbox-runtime`, the socket driver and TLS `wsbox-io`.
//!
//! - [`config`]: the TOML configuration and its defaults.
//! - [`server`]: the listener, the opening handshake and the connection task.
//! - [`registry`], [`control`], [`admin`]: versioned modules, deploys and the
//!   admin API (and its command-line client).
//! - [`metrics`]: the Prometheus metrics.
//! - [`bundled`]: the demo handlers and pages compiled into the binary.

pub mod admin;
pub mod bundled;
pub mod config;
pub mod control;
pub mod dev_cert;
pub mod metrics;
pub mod registry;
pub mod server;
