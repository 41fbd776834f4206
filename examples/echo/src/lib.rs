//! The bundled wsbox demo handler: echoes text as text and binary as binary.
//!
//! When the route captured parts of the path, `open` first sends one
//! greeting listing them; without captures the handler is a pure echo (the
//! Autobahn conformance suite runs against it).

use wsbox_guest::{CloseInfo, ConnectionInfo, Message, WebSocketHandler, log, write_message};

/// Per-connection state: the host runs one instance per connection.
#[derive(Default)]
struct Echo {
    echoed: u64,
}

impl WebSocketHandler for Echo {
    fn open(&mut self, conn: &ConnectionInfo) {
        let request = &conn.request;
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
        let _ = write_message(greeting);
    }

    fn on_message(&mut self, message: Message) {
        // Fails only when the connection is closing: then there is nobody to answer.
        if write_message(message).is_ok() {
            self.echoed += 1;
        }
    }

    fn on_close(&mut self, info: &CloseInfo) {
        let code = info.code.map_or("none".to_owned(), |code| code.to_string());
        log::info(format!(
            "echo closed: code={code} reason={:?} echoed={} messages",
            info.reason, self.echoed
        ));
    }
}

wsbox_guest::export_handler!(Echo);
