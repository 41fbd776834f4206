//! The handler trait.

use crate::types::{CloseInfo, Message, Reject, UpgradeRequest};
use crate::ws::Ws;

/// A WebSocket handler: the Rust counterpart of Tornado's
/// `tornado.websocket.WebSocketHandler`.
///
/// The host runs one instance of the component per connection, and the SDK
/// creates one value of the handler type (with [`Default`]) per instance, so
/// `self` is per-connection state, like a Tornado handler object. Every
/// method has a default; implement the ones you need and export the type
/// with [`export_handler!`](crate::export_handler).
///
/// The methods after the upgrade get the connection as a [`Ws`]: write,
/// ping and close through it, and find the request there.
///
/// Event order for one connection:
///
/// 1. the upgrade phase, before the `101 Switching Protocols` response:
///    [`prepare`](Self::prepare), [`check_origin`](Self::check_origin) (only
///    when the client sent an `Origin` header),
///    [`select_subprotocol`](Self::select_subprotocol),
///    [`upgrade_headers`](Self::upgrade_headers). Only logging works here:
///    the connection is not open yet;
/// 2. [`open`](Self::open), once the connection is established;
/// 3. any number of [`on_message`](Self::on_message),
///    [`on_ping`](Self::on_ping) and [`on_pong`](Self::on_pong);
/// 4. [`on_close`](Self::on_close), exactly once.
///
/// A handler value created after the upgrade phase (which a host may do,
/// e.g. after giving an idle connection's instance back) finds the request
/// through [`Ws::request`].
///
/// A handler that panics traps: the host closes its connection with 1011
/// (internal error) and other connections go on. The same happens when a
/// call runs past the host's CPU deadline.
pub trait WebSocketHandler: Default + 'static {
    /// Called first in the upgrade phase (Tornado's `prepare`). Return
    /// `Err(Reject)` to refuse the connection with an HTTP error; the
    /// remaining upgrade methods are then not called.
    ///
    /// The default accepts.
    fn prepare(&mut self, request: &UpgradeRequest) -> Result<(), Reject> {
        let _ = request;
        Ok(())
    }

    /// Decides whether the request's `Origin` is acceptable (Tornado's
    /// `check_origin`). `host_verdict` is the host's own answer, from the
    /// route's origin policy (by default: same host as the `Host` header).
    ///
    /// Only called when the client sent an `Origin` header, like in Tornado;
    /// a route that pins its origin policy (`origin_policy = "enforce"`)
    /// ignores an answer that would allow what the host refuses.
    ///
    /// The default keeps the host's verdict.
    fn check_origin(&mut self, origin: &str, host_verdict: bool) -> bool {
        let _ = origin;
        host_verdict
    }

    /// Picks a subprotocol among those the client offered in
    /// `Sec-WebSocket-Protocol`, in its order of preference (Tornado's
    /// `select_subprotocol`). Called even when the client offered none.
    /// Returning one the client did not offer is a handler error: the host
    /// logs it and answers without a subprotocol.
    ///
    /// The default selects none.
    fn select_subprotocol(&mut self, offered: &[String]) -> Option<String> {
        let _ = offered;
        None
    }

    /// Extra `(name, value)` headers for the `101` response (Tornado's
    /// `set_default_headers`). `upgrade`, `connection` and `sec-websocket-*`
    /// belong to the host and cannot be set.
    ///
    /// The default adds none.
    fn upgrade_headers(&mut self, request: &UpgradeRequest) -> Vec<(String, String)> {
        let _ = request;
        Vec::new()
    }

    /// The connection is open (Tornado's `open(*args, **kwargs)`: the route's
    /// captures are in `ws.request().path_args` and `ws.request().path_kwargs`).
    /// The handler may write from here on.
    fn open(&mut self, ws: &Ws) {
        let _ = ws;
    }

    /// A complete message arrived (Tornado's `on_message`).
    ///
    /// Messages that arrive together reach the instance in one call from the
    /// host, and this is called for each in order; the replies written from
    /// here are handed back together when the last one returns. After the
    /// handler [`close`](Ws::close)s, the rest of such a batch is skipped,
    /// as the host would have dropped it.
    ///
    /// The default ignores it.
    fn on_message(&mut self, ws: &Ws, message: Message) {
        let _ = (ws, message);
    }

    /// A ping arrived (Tornado's `on_ping`). The host has already queued the
    /// pong.
    fn on_ping(&mut self, ws: &Ws, data: &[u8]) {
        let _ = (ws, data);
    }

    /// A pong arrived, in answer to a [`ping`](Ws::ping) or unsolicited
    /// (Tornado's `on_pong`).
    fn on_pong(&mut self, ws: &Ws, data: &[u8]) {
        let _ = (ws, data);
    }

    /// The connection is closed (Tornado's `on_close`). Called exactly once
    /// for an opened connection; writes from here fail with
    /// [`Closed`](crate::Closed). [`Ws::close_code`] and
    /// [`Ws::close_reason`] are set from here on.
    fn on_close(&mut self, ws: &Ws, info: &CloseInfo) {
        let _ = (ws, info);
    }

    /// Only for a handler exported with
    /// [`export_handler!(Type, hibernate)`](crate::export_handler): whether
    /// it may hibernate now, when its route's `hibernate_after` has passed
    /// without messages. Writes made here go out.
    ///
    /// The default agrees.
    fn may_hibernate(&mut self, ws: &Ws) -> bool {
        let _ = ws;
        true
    }

    /// Only for a hibernating handler: the value was restored from its
    /// attachment in a fresh instance (perhaps of a newer version of the
    /// module), just before the message or close that woke it.
    ///
    /// The default does nothing.
    fn on_wake(&mut self, ws: &Ws) {
        let _ = ws;
    }

    /// Only for a hibernating handler: its state serialized to `size`
    /// bytes, over the route's `max_attachment`, so the host kept it
    /// awake (it asks again after another `hibernate_after`).
    ///
    /// The default logs a warning.
    fn on_attachment_too_large(&mut self, ws: &Ws, size: usize, max: usize) {
        let _ = ws;
        crate::log::warn(format!(
            "wsbox-guest: state of {size} bytes is over the route's max_attachment of {max}; not hibernating"
        ));
    }
}
