//! The bundled wsbox demo handler: echoes text as text and binary as binary.
//!
//! When the route captured parts of the path, `open` first sends one
//! greeting listing them; without captures the handler is a pure echo (the
//! Autobahn conformance suite runs against it).
//!
//! It is also the reference for the echo example of every guest language
//! (`examples/echo-*`), which all pass the same conformance suite
//! (`tests/polyglot.rs`). Besides echoing, they all do this:
//!
//! - `prepare`: a `token` query parameter other than `letmein` is refused
//!   with 401 `bad token` and `www-authenticate: Bearer`;
//! - `select_subprotocol`: `echo.v1` when the client offers it;
//! - text commands starting with `wsbox:` (which no echo client sends):
//!   `wsbox:json` writes `{"echo":"json","n":[1,2]}` as JSON;
//!   `wsbox:close CODE REASON` closes with that code and reason;
//!   `wsbox:hooks` answers `hooks on` and from then on reports each ping
//!   and pong as `on_ping: DATA` / `on_pong: DATA`;
//!   `wsbox:ping DATA` sends a ping;
//!   `wsbox:write-after-close TAG` closes with 4001 and writes, and logs
//!   `write after close TAG: closed` when the write failed as it must;
//!   `wsbox:trap` traps (a panic);
//!   `wsbox:count` answers `echoed N`, the messages echoed so far;
//! - `on_close` logs `echo closed: code=CODE reason=REASON`;
//! - on a route with `hibernate_after` an idle connection hibernates, and
//!   its state (the echo count, the hooks flag) survives to the wake, with
//!   each SDK's own hibernation support. In Rust that is the `hibernate`
//!   feature: the bundled demo is built without it, since saving the state
//!   as JSON makes the component half as big again, and every live
//!   instance maps that much more of it (12.8 KiB more memory per idle
//!   connection, measured: `bench/ANALYSIS.md`).

use wsbox_guest::{CloseInfo, Message, Reject, UpgradeRequest, WebSocketHandler, Ws, log};

/// Per-connection state: the host runs one instance per connection. Saved
/// (as JSON, by the SDK) while the connection hibernates (with the
/// `hibernate` feature).
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Echo {
    echoed: u64,
    hooks: bool,
}

impl WebSocketHandler for Echo {
    fn prepare(&mut self, request: &UpgradeRequest) -> Result<(), Reject> {
        match request.query_pairs().find(|(name, _)| *name == "token") {
            Some((_, token)) if token != "letmein" => {
                Err(Reject::new(401, "bad token").header("www-authenticate", "Bearer"))
            }
            _ => Ok(()),
        }
    }

    fn select_subprotocol(&mut self, offered: &[String]) -> Option<String> {
        offered.iter().find(|p| *p == "echo.v1").cloned()
    }

    fn open(&mut self, ws: &Ws) {
        let request = ws.request();
        if request.path_args.is_empty() && request.path_kwargs.is_empty() {
            return;
        }
        let kwargs: Vec<String> = request
            .path_kwargs
            .iter()
            .map(|(name, value)| format!("{name}: {value}"))
            .collect();
        let greeting = format!(
            "hello from wsbox echo: args=[{}] kwargs={{{}}}",
            request.path_args.join(", "),
            kwargs.join(", "),
        );
        let _ = ws.write_message(greeting);
    }

    fn on_message(&mut self, ws: &Ws, message: Message) {
        if let Message::Text(text) = &message
            && let Some(command) = text.strip_prefix("wsbox:")
        {
            self.command(ws, command);
            return;
        }
        // Fails only when the connection is closing: then there is nobody to answer.
        if ws.write_message(message).is_ok() {
            self.echoed += 1;
        }
    }

    fn on_ping(&mut self, ws: &Ws, data: &[u8]) {
        if self.hooks {
            let _ = ws.write_message(format!("on_ping: {}", String::from_utf8_lossy(data)));
        }
    }

    fn on_pong(&mut self, ws: &Ws, data: &[u8]) {
        if self.hooks {
            let _ = ws.write_message(format!("on_pong: {}", String::from_utf8_lossy(data)));
        }
    }

    fn on_close(&mut self, _ws: &Ws, info: &CloseInfo) {
        let code = info.code.map_or("none".to_owned(), |code| code.to_string());
        log::info(format!(
            "echo closed: code={code} reason={} echoed={} messages",
            info.reason, self.echoed
        ));
    }
}

impl Echo {
    fn command(&mut self, ws: &Ws, command: &str) {
        let (name, rest) = command.split_once(' ').unwrap_or((command, ""));
        match name {
            "json" => {
                let _ = ws.write_json(&serde_json::json!({"echo": "json", "n": [1, 2]}));
            }
            "close" => {
                let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
                let _ = ws.close(code.parse().ok(), Some(reason));
            }
            "hooks" => {
                self.hooks = true;
                let _ = ws.write_message("hooks on");
            }
            "count" => {
                let _ = ws.write_message(format!("echoed {}", self.echoed));
            }
            "ping" => {
                let _ = ws.ping(rest);
            }
            "write-after-close" => {
                let _ = ws.close(Some(4001), Some("closing"));
                if ws.write_message("too late").is_err() {
                    log::info(format!("write after close {rest}: closed"));
                }
            }
            "trap" => panic!("trap requested"),
            _ => {
                let _ = ws.write_message(format!("unknown command: {name}"));
            }
        }
    }
}

#[cfg(feature = "hibernate")]
wsbox_guest::export_handler!(Echo, hibernate);
#[cfg(not(feature = "hibernate"))]
wsbox_guest::export_handler!(Echo);

#[cfg(test)]
mod tests {
    use super::Echo;
    use wsbox_guest::UpgradeRequest;
    use wsbox_guest::testing::{Sent, TestConnection};

    #[test]
    fn echoes_each_message_with_its_type() {
        let mut conn = TestConnection::<Echo>::connect(UpgradeRequest::default()).unwrap();
        conn.receive("hello");
        conn.receive(vec![0u8, 1, 2]);
        assert_eq!(
            conn.take_sent(),
            vec![Sent::Text("hello".into()), Sent::Binary(vec![0, 1, 2])]
        );
        assert_eq!(conn.handler().echoed, 2);
    }

    #[test]
    fn a_batch_is_echoed_in_order_and_stops_after_the_peer_closes() {
        let mut conn = TestConnection::<Echo>::connect(UpgradeRequest::default()).unwrap();
        conn.receive_batch(["a", "b", "c"]);
        let sent = conn.take_sent();
        assert_eq!(sent, ["a", "b", "c"].map(|t| Sent::Text(t.into())).to_vec());
        conn.close_from_peer(Some(1000), "bye");
        conn.receive("too late");
        assert!(conn.take_sent().is_empty());
        assert_eq!(conn.handler().echoed, 3);
    }

    #[test]
    fn route_captures_are_greeted() {
        let request = UpgradeRequest {
            path: "/echo/lobby".into(),
            path_kwargs: vec![("room".into(), "lobby".into())],
            ..UpgradeRequest::default()
        };
        let mut conn = TestConnection::<Echo>::connect(request).unwrap();
        assert_eq!(
            conn.take_sent(),
            vec![Sent::Text(
                "hello from wsbox echo: args=[] kwargs={room: lobby}".into()
            )]
        );
    }
}
