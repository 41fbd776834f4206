//! __NAME__: a wsbox WebSocket handler. The host makes one instance per
//! connection, so the struct's fields are per-connection state.
//!
//! `wsbox build` builds __NAME__.wasm; `wsbox serve --config wsbox.toml`
//! serves it at /__NAME__ and /__NAME__/<room>.

use wsbox_guest::{Message, WebSocketHandler, Ws};

#[derive(Default)]
struct Echo;

impl WebSocketHandler for Echo {
    /// Greets with the route's captures: `/__NAME__/lobby` matches
    /// `/__NAME__/(?P<room>[^/]+)` in wsbox.toml, so `room` is `lobby`.
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
        let _ = ws.write_message(format!(
            "hello from __NAME__: args=[{}] kwargs={{{}}}",
            request.path_args.join(", "),
            kwargs.join(", ")
        ));
    }

    /// Echoes text as text and binary as binary.
    fn on_message(&mut self, ws: &Ws, message: Message) {
        // Fails only when the connection is closing: nobody to answer then.
        let _ = ws.write_message(message);
    }
}

wsbox_guest::export_handler!(Echo);

// `cargo test` runs these natively: no wasm, no server.
#[cfg(test)]
mod tests {
    use wsbox_guest::UpgradeRequest;
    use wsbox_guest::testing::{Sent, TestConnection};

    #[test]
    fn echoes_text() {
        let mut conn = TestConnection::<super::Echo>::connect(UpgradeRequest::default()).unwrap();
        conn.take_sent();
        conn.receive("hi");
        assert_eq!(conn.take_sent(), vec![Sent::Text("hi".into())]);
    }
}
