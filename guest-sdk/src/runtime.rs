//! Glue between the generated bindings and a [`WebSocketHandler`], used by
//! [`export_handler!`](crate::export_handler). Not public API.

use std::cell::RefCell;

use crate::backend::Conn;
use crate::bindings::wsbox::websocket::connection as host;
use crate::bindings::wsbox::websocket::types as wit;
use crate::handler::WebSocketHandler;
use crate::types::{Message, UpgradeRequest, wit_headers};
use crate::ws::ConnData;

/// The per-instance handler value and what the SDK keeps for its
/// connection. An instance serves one connection and is single-threaded;
/// the component model forbids re-entering an export while a host call is
/// running, so the `RefCell`s are never contended.
#[doc(hidden)]
pub struct Slot<H> {
    handler: RefCell<Option<H>>,
    conn: RefCell<ConnData>,
    /// The `max-attachment` of the last `on-hibernate`, for the error that
    /// may follow it.
    max_attachment: std::cell::Cell<u32>,
}

impl<H: WebSocketHandler> Default for Slot<H> {
    fn default() -> Self {
        Self::new()
    }
}

impl<H: WebSocketHandler> Slot<H> {
    pub const fn new() -> Self {
        Self {
            handler: RefCell::new(None),
            conn: RefCell::new(ConnData::new()),
            max_attachment: std::cell::Cell::new(0),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut H) -> R) -> R {
        let mut handler = self.handler.borrow_mut();
        f(handler.get_or_insert_with(H::default))
    }

    /// The handler value, once an event created it.
    pub(crate) fn handler(&self) -> std::cell::Ref<'_, Option<H>> {
        self.handler.borrow()
    }

    pub fn upgrade(&self, request: wit::UpgradeRequest) -> wit::UpgradeDecision {
        self.upgrade_with(request.into())
    }

    pub fn on_open(&self, conn: &host::Connection, info: wit::OpenInfo) {
        self.on_open_with(Conn::Host(conn), info);
    }

    pub fn on_message(&self, conn: &host::Connection, message: wit::MessageResult) {
        self.on_message_with(Conn::Host(conn), message);
    }

    pub fn on_messages(&self, conn: &host::Connection, batch: wit::MessageBatchResult) {
        self.on_messages_with(Conn::Host(conn), batch);
    }

    pub fn on_ping(&self, conn: &host::Connection, data: Vec<u8>) {
        self.on_ping_with(Conn::Host(conn), data);
    }

    pub fn on_pong(&self, conn: &host::Connection, data: Vec<u8>) {
        self.on_pong_with(Conn::Host(conn), data);
    }

    pub fn on_close(&self, conn: &host::Connection, info: wit::CloseInfo) {
        self.on_close_with(Conn::Host(conn), info);
    }

    pub(crate) fn upgrade_with(&self, request: UpgradeRequest) -> wit::UpgradeDecision {
        let conn = self.conn.borrow();
        let request = conn.set_request(request);
        self.with(|handler| decide(handler, request))
    }

    pub(crate) fn on_open_with(&self, backend: Conn<'_>, info: wit::OpenInfo) {
        self.conn
            .borrow_mut()
            .opened(info.subprotocol, info.extensions);
        let conn = self.conn.borrow();
        let ws = conn.ws(backend);
        self.with(|handler| handler.open(&ws));
    }

    pub(crate) fn on_message_with(&self, backend: Conn<'_>, message: wit::MessageResult) {
        let message = match message {
            wit::MessageResult::Text(text) => Message::Text(text),
            wit::MessageResult::Binary(data) => Message::Binary(data),
        };
        let conn = self.conn.borrow();
        let ws = conn.ws(backend);
        self.with(|handler| handler.on_message(&ws, message));
    }

    pub(crate) fn on_messages_with(&self, backend: Conn<'_>, batch: wit::MessageBatchResult) {
        let conn = self.conn.borrow();
        conn.begin_batch();
        let ws = conn.ws(backend);
        self.with(|handler| {
            let wit::MessageBatchResult { data, spans } = batch;
            if let [span] = spans.as_slice() {
                // One message: it owns the batch's buffer, no copy.
                handler.on_message(&ws, message(span.kind, data));
            } else {
                let mut rest = data.as_slice();
                for span in &spans {
                    if conn.is_closing() {
                        break;
                    }
                    let len = (span.len as usize).min(rest.len());
                    let (bytes, tail) = rest.split_at(len);
                    rest = tail;
                    handler.on_message(&ws, message(span.kind, bytes.to_vec()));
                }
            }
        });
        conn.end_batch(backend);
    }

    pub(crate) fn on_ping_with(&self, backend: Conn<'_>, data: Vec<u8>) {
        let conn = self.conn.borrow();
        let ws = conn.ws(backend);
        self.with(|handler| handler.on_ping(&ws, &data));
    }

    pub(crate) fn on_pong_with(&self, backend: Conn<'_>, data: Vec<u8>) {
        let conn = self.conn.borrow();
        let ws = conn.ws(backend);
        self.with(|handler| handler.on_pong(&ws, &data));
    }

    pub(crate) fn on_close_with(&self, backend: Conn<'_>, info: wit::CloseInfo) {
        self.conn.borrow_mut().closed(info.into());
        let conn = self.conn.borrow();
        let ws = conn.ws(backend);
        let Some(info) = ws.close_info() else {
            return;
        };
        self.with(|handler| handler.on_close(&ws, info));
    }
}

/// What a hibernating SDK handler's attachment holds: its state and what
/// the SDK keeps of the connection (the subprotocol and extensions in
/// force), as JSON.
#[derive(serde::Serialize)]
struct AttachmentOut<'a, H> {
    state: &'a H,
    subprotocol: &'a Option<String>,
    extensions: &'a str,
}

#[derive(serde::Deserialize)]
struct AttachmentIn<H> {
    state: H,
    subprotocol: Option<String>,
    extensions: String,
}

impl<H: WebSocketHandler + serde::Serialize + serde::de::DeserializeOwned> Slot<H> {
    pub fn on_hibernate(&self, conn: &host::Connection, max_attachment: u32) -> Option<Vec<u8>> {
        self.on_hibernate_with(Conn::Host(conn), max_attachment)
    }

    pub fn on_hibernate_error(&self, conn: &host::Connection, size: u32) {
        self.on_hibernate_error_with(Conn::Host(conn), size);
    }

    pub fn on_wake(&self, conn: &host::Connection, attachment: Vec<u8>) {
        self.on_wake_with(Conn::Host(conn), &attachment);
    }

    /// The handler's state as the attachment, unless it declines
    /// ([`WebSocketHandler::may_hibernate`]).
    pub(crate) fn on_hibernate_with(
        &self,
        backend: Conn<'_>,
        max_attachment: u32,
    ) -> Option<Vec<u8>> {
        let conn = self.conn.borrow();
        let ws = conn.ws(backend);
        if !self.with(|handler| handler.may_hibernate(&ws)) {
            return None;
        }
        let (subprotocol, extensions) = conn.opened_info();
        let handler = self.handler.borrow();
        let state = handler.as_ref()?;
        match serde_json::to_vec(&AttachmentOut {
            state,
            subprotocol,
            extensions,
        }) {
            // The host checks the size, and says so when it is over.
            Ok(bytes) => {
                self.max_attachment.set(max_attachment);
                Some(bytes)
            }
            Err(e) => {
                crate::log::warn(format!(
                    "wsbox-guest: the handler's state cannot be serialized ({e}); staying awake"
                ));
                None
            }
        }
    }

    pub(crate) fn on_hibernate_error_with(&self, backend: Conn<'_>, size: u32) {
        let conn = self.conn.borrow();
        let ws = conn.ws(backend);
        let max = self.max_attachment.get() as usize;
        self.with(|handler| handler.on_attachment_too_large(&ws, size as usize, max));
    }

    /// Restores the state from the attachment, then calls
    /// [`WebSocketHandler::on_wake`]. An attachment that does not
    /// deserialize (a new version changed the state's type incompatibly)
    /// panics: the host closes the connection with 1011.
    pub(crate) fn on_wake_with(&self, backend: Conn<'_>, attachment: &[u8]) {
        let restored: AttachmentIn<H> = match serde_json::from_slice(attachment) {
            Ok(r) => r,
            Err(e) => panic!("wsbox-guest: the hibernated state cannot be restored: {e}"),
        };
        self.conn
            .borrow_mut()
            .opened(restored.subprotocol, restored.extensions);
        *self.handler.borrow_mut() = Some(restored.state);
        let conn = self.conn.borrow();
        let ws = conn.ws(backend);
        self.with(|handler| handler.on_wake(&ws));
    }
}

fn message(kind: wit::MessageKind, bytes: Vec<u8>) -> Message {
    match kind {
        wit::MessageKind::Text => {
            debug_assert!(
                std::str::from_utf8(&bytes).is_ok(),
                "host sent invalid UTF-8"
            );
            // SAFETY: the WIT contract: the host validated every text span
            // as UTF-8 (it closes with 1007 otherwise), just as it validates
            // a `string` it lowers, which wit-bindgen lifts unchecked too.
            // Checking again in wasm would be a third pass over every text.
            Message::Text(unsafe { String::from_utf8_unchecked(bytes) })
        }
        wit::MessageKind::Binary => Message::Binary(bytes),
    }
}

/// Tornado's order: `prepare`, then the origin check, then the subprotocol.
fn decide<H: WebSocketHandler>(handler: &mut H, request: &UpgradeRequest) -> wit::UpgradeDecision {
    if let Err(reject) = handler.prepare(request) {
        return wit::UpgradeDecision::Reject(wit::Reject {
            status: reject.status,
            reason: reject.reason,
            headers: wit_headers(reject.headers),
        });
    }
    let verdict = request.origin_allowed;
    let origin = match &request.origin {
        Some(origin) => match handler.check_origin(origin, verdict) {
            answer if answer == verdict => wit::OriginDecision::HostVerdict,
            true => wit::OriginDecision::Allow,
            false => wit::OriginDecision::Deny,
        },
        None => wit::OriginDecision::HostVerdict,
    };
    let subprotocol = handler.select_subprotocol(&request.subprotocols);
    let headers = wit_headers(handler.upgrade_headers(request));
    wit::UpgradeDecision::Accept(wit::Accept {
        subprotocol,
        headers,
        origin,
    })
}
