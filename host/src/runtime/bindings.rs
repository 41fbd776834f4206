//! Host-side bindings generated from `wit/websocket.wit`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "websocket-handler",
    // Exports run on a fiber so that epoch deadlines can yield to tokio and
    // a looping guest never blocks a worker thread. Imports are cheap and
    // synchronous.
    exports: { default: async },
});

pub use self::wsbox::websocket::connection::{CloseError, PingError, WriteError};
pub use self::wsbox::websocket::types::{
    Accept, CloseCause, CloseInfo, ConnectionInfo, Header, LogLevel, Message, NamedCapture,
    OriginDecision, Reject, UpgradeDecision, UpgradeRequest,
};
