//! Host-side bindings generated from the WIT, one module per contract
//! version the host runs: `wit/websocket.wit` (0.2.3, the current one;
//! 0.2.0, 0.2.1 and 0.2.2 components link to it through wasmtime's semver-compatible
//! lookup) and the frozen `wit/v0.1.0/websocket.wit`.

/// `wsbox:websocket@0.2.3`. Its types are the ones the rest of the host
/// uses; components of older versions are adapted to them.
pub mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../../wit",
        // The world with every import and every optional export: the host
        // looks up each exported interface on its own, so a component that
        // has only the required ones fits too, and a component imports
        // only what it uses.
        world: "websocket-host",
        // Exports run on a fiber so that epoch deadlines can yield to tokio
        // and a looping guest never blocks a worker thread. Imports are
        // cheap and synchronous.
        exports: { default: async },
        // A malformed batch is a handler bug the host cannot answer with a
        // WIT error: it traps, like an invalid string would.
        imports: { "wsbox:websocket/connection.[method]connection.write-messages": trappable },
        with: { "wsbox:websocket/connection.connection": super::ConnectionResource },
    });
}

/// `wsbox:websocket@0.1.0`: ambient connection, `on-messages` required.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../../wit/v0.1.0",
        world: "websocket-handler",
        exports: { default: async },
        imports: { "wsbox:websocket/connection.write-messages": trappable },
    });
}

/// What a `borrow<connection>` handed to a 0.2 handler points at. The
/// resource's representation is the connection's slot in its instance
/// (always 0 while an instance serves one connection).
pub struct ConnectionResource;

pub use v0_2::exports::wsbox::websocket::{batch_handler, handler, hibernation};
pub use v0_2::wsbox::websocket::connection::{CloseError, PingError, WriteError};
pub use v0_2::wsbox::websocket::pubsub::{
    BrokerError, BrokerPublishReport, PublishOptions, PublishReport, PubsubError,
};
pub use v0_2::wsbox::websocket::types::{
    Accept, CloseCause, CloseInfo, Header, IpAddress, LogLevel, Message, MessageBatch, MessageKind,
    MessageSpan, NamedCapture, OpenInfo, OriginDecision, Reject, SocketAddress, UpgradeDecision,
    UpgradeRequest,
};

/// The WIT form of a socket address.
pub fn to_socket_address(addr: std::net::SocketAddr) -> SocketAddress {
    let address = match addr.ip() {
        std::net::IpAddr::V4(ip) => {
            let [a, b, c, d] = ip.octets();
            IpAddress::Ipv4((a, b, c, d))
        }
        std::net::IpAddr::V6(ip) => {
            let [a, b, c, d, e, f, g, h] = ip.segments();
            IpAddress::Ipv6((a, b, c, d, e, f, g, h))
        }
    };
    SocketAddress {
        address,
        port: addr.port(),
    }
}

/// The standard library's form of a WIT socket address.
pub fn from_socket_address(addr: &SocketAddress) -> std::net::SocketAddr {
    let ip = match addr.address {
        IpAddress::Ipv4((a, b, c, d)) => std::net::IpAddr::from([a, b, c, d]),
        IpAddress::Ipv6((a, b, c, d, e, f, g, h)) => {
            std::net::IpAddr::from([a, b, c, d, e, f, g, h])
        }
    };
    std::net::SocketAddr::new(ip, addr.port)
}
