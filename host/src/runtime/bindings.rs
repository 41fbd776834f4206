//! Host-side bindings generated from `wit/websocket.wit`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "websocket-handler",
    // Exports run on a fiber so that epoch deadlines can yield to tokio and
    // a looping guest never blocks a worker thread. Imports are cheap and
    // synchronous.
    exports: { default: async },
    // A malformed batch is a handler bug the host cannot answer with a WIT
    // error: it traps, like an invalid string would.
    imports: { "wsbox:websocket/connection.write-messages": trappable },
});

pub use self::wsbox::websocket::connection::{CloseError, PingError, WriteError};
pub use self::wsbox::websocket::types::{
    Accept, CloseCause, CloseInfo, ConnectionInfo, Header, LogLevel, Message, MessageBatch,
    MessageKind, MessageSpan, NamedCapture, OriginDecision, Reject, UpgradeDecision,
    UpgradeRequest,
};
