//! The bundled wsbox demo handler: echoes text as text and binary as binary.
//!
//! When the route captured parts of the path, `open` first sends one
//! greeting listing them; without captures the handler is a pure echo (the
//! Autobahn conformance suite runs against it).

use wsbox_guest::{CloseInfo, Message, WebSocketHandler, Ws, log};

/// Per-connection state: the host runs one instance per connection.
#[derive(Default)]
struct Echo {
    echoed: u64,
}

impl WebSocketHandler for Echo {
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
        // Fails only when the connection is closing: then there is nobody to answer.
        if ws.write_message(message).is_ok() {
            self.echoed += 1;
        }
    }

    fn on_close(&mut self, _ws: &Ws, info: &CloseInfo) {
        let code = info.code.map_or("none".to_owned(), |code| code.to_string());
        log::info(format!(
            "echo closed: code={code} reason={:?} echoed={} messages",
            info.reason, self.echoed
        ));
    }
}

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
