//! Glue between the generated bindings and a [`WebSocketHandler`], used by
//! [`export_handler!`](crate::export_handler). Not public API.

use std::cell::RefCell;

use crate::bindings::wsbox::websocket::types as wit;
use crate::conn;
use crate::handler::WebSocketHandler;
use crate::types::{Message, UpgradeRequest, wit_headers};

/// The per-instance handler value. An instance serves one connection and
/// is single-threaded; the component model forbids re-entering an export
/// while a host call is running, so the `RefCell` is never contended.
#[doc(hidden)]
pub struct Slot<H> {
    handler: RefCell<Option<H>>,
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
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut H) -> R) -> R {
        let mut handler = self.handler.borrow_mut();
        f(handler.get_or_insert_with(H::default))
    }

    pub fn upgrade(&self, request: wit::UpgradeRequest) -> wit::UpgradeDecision {
        let request = conn::store_request(request.into());
        self.with(|handler| decide(handler, request))
    }

    pub fn on_open(&self, info: wit::ConnectionInfo) {
        let info = conn::store_connection(info.into());
        self.with(|handler| handler.open(info));
    }

    pub fn on_message(&self, message: wit::MessageResult) {
        let message = match message {
            wit::MessageResult::Text(text) => Message::Text(text),
            wit::MessageResult::Binary(data) => Message::Binary(data),
        };
        self.with(|handler| handler.on_message(message));
    }

    pub fn on_messages(&self, batch: wit::MessageBatchResult) {
        conn::begin_batch();
        self.with(|handler| {
            let wit::MessageBatchResult { data, spans } = batch;
            if let [span] = spans.as_slice() {
                // One message: it owns the batch's buffer, no copy.
                handler.on_message(message(span.kind, data));
            } else {
                let mut rest = data.as_slice();
                for span in &spans {
                    if conn::is_closed() {
                        break;
                    }
                    let len = (span.len as usize).min(rest.len());
                    let (bytes, tail) = rest.split_at(len);
                    rest = tail;
                    handler.on_message(message(span.kind, bytes.to_vec()));
                }
            }
        });
        conn::end_batch();
    }

    pub fn on_ping(&self, data: Vec<u8>) {
        self.with(|handler| handler.on_ping(&data));
    }

    pub fn on_pong(&self, data: Vec<u8>) {
        self.with(|handler| handler.on_pong(&data));
    }

    pub fn on_close(&self, info: wit::CloseInfo) {
        conn::mark_closed();
        let info = conn::store_close_info(info.into());
        self.with(|handler| handler.on_close(info));
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
