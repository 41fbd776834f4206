//! A handler written on the bare bindings of `wsbox:websocket@0.2.0`, world
//! `websocket-handler` (no batch interface), as a handler in another
//! language would be. It echoes every message and counts the `on-message`
//! calls; the text `!calls` is answered with `calls:<n>` (the calls before
//! it), `!request` with the path and remote address from
//! `connection.request`, `!id` with `connection.id`.

use std::cell::Cell;

wit_bindgen::generate!({
    path: "../../../wit",
    world: "websocket-handler",
});

use exports::wsbox::websocket::handler::Guest;
use wsbox::websocket::connection::Connection;
use wsbox::websocket::logging::log;
use wsbox::websocket::types::{
    Accept, CloseInfo, IpAddress, LogLevel, Message, OpenInfo, OriginDecision, UpgradeDecision,
    UpgradeRequest,
};

thread_local! {
    static CALLS: Cell<u64> = const { Cell::new(0) };
}

struct Basic;

impl Guest for Basic {
    fn upgrade(_request: UpgradeRequest) -> UpgradeDecision {
        UpgradeDecision::Accept(Accept {
            subprotocol: None,
            headers: Vec::new(),
            origin: OriginDecision::HostVerdict,
        })
    }

    fn on_open(_conn: &Connection, _info: OpenInfo) {}

    fn on_message(conn: &Connection, message: Message) {
        let before = CALLS.get();
        CALLS.set(before + 1);
        let reply = match &message {
            Message::Text(t) if t == "!calls" => Message::Text(format!("calls:{before}")),
            Message::Text(t) if t == "!id" => Message::Text(format!("id:{}", conn.id())),
            Message::Text(t) if t == "!request" => {
                let request = conn.request();
                let ip = match request.remote_address.address {
                    IpAddress::Ipv4((a, b, c, d)) => format!("{a}.{b}.{c}.{d}"),
                    IpAddress::Ipv6(_) => "ipv6".to_owned(),
                };
                let ua = request
                    .headers
                    .iter()
                    .find(|h| h.name == "x-bytes")
                    .map(|h| format!("{:?}", h.value))
                    .unwrap_or_default();
                Message::Text(format!("request:{} {ip} {ua}", request.path))
            }
            _ => message,
        };
        let _ = conn.write_message(&reply);
    }

    fn on_ping(_conn: &Connection, _data: Vec<u8>) {}

    fn on_pong(_conn: &Connection, _data: Vec<u8>) {}

    fn on_close(_conn: &Connection, info: CloseInfo) {
        log(
            LogLevel::Info,
            &format!("basic closed after {} calls: {:?}", CALLS.get(), info.cause),
        );
    }
}

export!(Basic);
