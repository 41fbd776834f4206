//! Write **wsbox** WebSocket handlers in Rust.
//!
//! wsbox is a WebSocket server whose handlers are WebAssembly components.
//! The host speaks the protocol (framing, compression, origin checks,
//! keepalive, size limits, TLS); a handler decides upgrades and reacts to
//! each connection's events. This crate turns a Rust type implementing
//! [`WebSocketHandler`] into such a component with one macro,
//! [`export_handler!`].
//!
//! # One instance per connection
//!
//! The host makes a fresh instance of the component for every connection,
//! and the SDK creates one value of your handler type (with [`Default`]) in
//! that instance. So `self` *is* the per-connection state, exactly like a
//! Tornado `WebSocketHandler` object, and it lives as long as its
//! connection. Instances share nothing, so a handler cannot reach other
//! connections (no in-process broadcast).
//!
//! Every event after the upgrade gets the connection as a [`Ws`]: write,
//! ping and close through it, and read the request from it.
//!
//! A handler that panics traps. The host then closes that connection with
//! 1011 (internal error); other connections go on. The same happens when a
//! call runs past the host's CPU deadline.
//!
//! # Example
//!
//! A room handler: it refuses clients without a nickname, greets with the
//! room captured by the route (say `^/rooms/(?P<room>[a-z]+)$`), echoes
//! text messages prefixed with the nickname and binary messages as they
//! are, and logs when the connection ends.
//!
//! ```no_run
//! use wsbox_guest::{CloseInfo, Message, Reject, UpgradeRequest, WebSocketHandler, Ws, log};
//!
//! /// Per-connection state: one value per connection.
//! #[derive(Default)]
//! struct Room {
//!     nick: String,
//!     messages: u64,
//! }
//!
//! impl WebSocketHandler for Room {
//!     fn prepare(&mut self, request: &UpgradeRequest) -> Result<(), Reject> {
//!         match request.query_param("nick") {
//!             Some(nick) if !nick.is_empty() => {
//!                 self.nick = nick.to_owned();
//!                 Ok(())
//!             }
//!             _ => Err(Reject::new(400, "?nick= is required")),
//!         }
//!     }
//!
//!     fn open(&mut self, ws: &Ws) {
//!         let room = ws.request().path_kwarg("room").unwrap_or("lobby");
//!         // Writing only fails once the connection is closing; nothing to do then.
//!         let _ = ws.write_message(format!("welcome to {room}, {}", self.nick));
//!     }
//!
//!     fn on_message(&mut self, ws: &Ws, message: Message) {
//!         self.messages += 1;
//!         let _ = match message {
//!             Message::Text(text) => ws.write_message(format!("{}: {text}", self.nick)),
//!             Message::Binary(bytes) => ws.write_message(bytes),
//!         };
//!     }
//!
//!     fn on_close(&mut self, _ws: &Ws, info: &CloseInfo) {
//!         log::info(format!(
//!             "{} left after {} messages (code {:?}, reason {:?}, {})",
//!             self.nick, self.messages, info.code, info.reason, info.cause
//!         ));
//!     }
//! }
//!
//! wsbox_guest::export_handler!(Room);
//! # fn main() {}
//! ```
//!
//! # Testing
//!
//! [`testing::TestConnection`] runs a handler natively, under `cargo test`,
//! and records what it sent: no wasm, no server.
//!
//! ```
//! # use wsbox_guest::{Message, WebSocketHandler, Ws};
//! # #[derive(Default)]
//! # struct Echo;
//! # impl WebSocketHandler for Echo {
//! #     fn on_message(&mut self, ws: &Ws, message: Message) {
//! #         let _ = ws.write_message(message);
//! #     }
//! # }
//! use wsbox_guest::UpgradeRequest;
//! use wsbox_guest::testing::{Sent, TestConnection};
//!
//! let mut conn = TestConnection::<Echo>::connect(UpgradeRequest::default()).unwrap();
//! conn.receive("hi");
//! assert_eq!(conn.take_sent(), vec![Sent::Text("hi".into())]);
//! ```
//!
//! # Building
//!
//! A handler crate is a `cdylib` built for `wasm32-wasip2`, which makes the
//! compiler emit a component directly. The SDK is not on crates.io: depend
//! on it by path (a wsbox checkout) or by git URL.
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! wsbox-guest = { path = "/path/to/wsbox/guest-sdk" }
//!
//! # Optional, for small components (under 100 KB instead of ~3 MB):
//! [profile.release]
//! opt-level = "s"
//! lto = true
//! codegen-units = 1
//! strip = true
//! panic = "abort"
//! ```
//!
//! ```text
//! rustup target add wasm32-wasip2
//! cargo build --release --target wasm32-wasip2
//! # -> target/wasm32-wasip2/release/<crate_name>.wasm, ready for the host
//! #    (a crate named `my-handler` gives `my_handler.wasm`)
//! ```
//!
//! Keep the handler crate outside the wsbox checkout: inside it, cargo
//! makes it part of wsbox's workspace.
//!
//! The component implements `wsbox:websocket@0.2.3` (`wit/websocket.wit`):
//! the SDK exports the batch interface, so messages that arrive together
//! reach the instance in one call, and the `hibernation` interface, which
//! declines unless the handler opts in with
//! [`export_handler!(Type, hibernate)`](export_handler). A handler
//! that uses [`Ws::subscribe`], [`Ws::publish`] and the other pub/sub calls
//! also imports `pubsub` (world `websocket-pubsub-handler`).
//!
//! # From Tornado
//!
//! | Tornado `WebSocketHandler`          | wsbox-guest                                              |
//! |-------------------------------------|----------------------------------------------------------|
//! | handler object per connection       | handler value per connection (component instance)        |
//! | `initialize()`                      | [`Default`]                                              |
//! | `prepare()` / `raise HTTPError`     | [`WebSocketHandler::prepare`] returning [`Reject`]       |
//! | `check_origin(origin)`              | [`WebSocketHandler::check_origin`]                       |
//! | `select_subprotocol(subprotocols)`  | [`WebSocketHandler::select_subprotocol`]                 |
//! | `set_default_headers()`             | [`WebSocketHandler::upgrade_headers`]                    |
//! | `open(*args, **kwargs)`             | [`WebSocketHandler::open`], [`UpgradeRequest::path_args`] / [`path_kwargs`](UpgradeRequest::path_kwargs) |
//! | `on_message(message)`               | [`WebSocketHandler::on_message`] with [`Message`]        |
//! | `on_ping(data)` / `on_pong(data)`   | [`WebSocketHandler::on_ping`] / [`on_pong`](WebSocketHandler::on_pong) |
//! | `on_close()`                        | [`WebSocketHandler::on_close`] with [`CloseInfo`]        |
//! | `self.request`                      | [`Ws::request`]                                          |
//! | `write_message(msg, binary=...)`    | [`Ws::write_message`] (`&str`/`String` text, bytes binary) |
//! | `write_message(dict)`               | [`Ws::write_json`]                                       |
//! | `ping(data)`                        | [`Ws::ping`]                                             |
//! | `close(code, reason)`               | [`Ws::close`]                                            |
//! | `close_code` / `close_reason`       | [`Ws::close_code`] / [`Ws::close_reason`], or [`CloseInfo`] |
//! | `selected_subprotocol`              | [`Ws::selected_subprotocol`]                             |
//! | `set_nodelay(value)`                | [`Ws::set_nodelay`]                                      |
//! | `WebSocketClosedError`              | [`Closed`]                                               |
//! | `logging`                           | [`log`] (and `println!`, which the host logs too)        |
//! | `for waiter in cls.waiters: waiter.write_message(m)` | [`Ws::subscribe`] once, then [`Ws::publish`]: the host delivers |
//!
//! The errors of [`Ws`]'s calls all implement [`std::error::Error`], so a
//! helper returning `Result<(), Box<dyn std::error::Error>>` can use `?` on
//! any of them.

#![warn(missing_docs)]

mod backend;
mod errors;
mod handler;
pub mod log;
mod runtime;
pub mod testing;
mod types;
mod ws;

pub use errors::{BrokerError, CloseError, Closed, JsonError, PingError, PubsubError};
pub use handler::WebSocketHandler;
pub use types::{CloseCause, CloseInfo, Message, OutMessage, Published, Reject, UpgradeRequest};
pub use ws::Ws;

use __private::bindings;

/// Support for [`export_handler!`]; not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::runtime::Slot;

    /// The bindings generated from `wit/websocket.wit`.
    #[allow(missing_docs)]
    pub mod bindings {
        wit_bindgen::generate!({
            path: "../wit",
            // The SDK exports the batch interface for every handler: the
            // host then hands over messages that arrive together in one call.
            // It can call `pubsub`; a handler that never does does not
            // import it (unused imports do not reach the component).
            world: "websocket-host",
            pub_export_macro: true,
            default_bindings_module: "wsbox_guest::__private::bindings",
            ownership: Borrowing { duplicate_if_necessary: true },
        });
    }

    pub use bindings::exports::wsbox::websocket::batch_handler::Guest as BatchGuest;
    pub use bindings::exports::wsbox::websocket::handler::Guest;
    pub use bindings::exports::wsbox::websocket::hibernation::{
        Guest as HibernationGuest, HibernateError,
    };
    pub use bindings::wsbox::websocket::connection::Connection;
    pub use bindings::wsbox::websocket::types as wit;
}

/// Exports a [`WebSocketHandler`] type as the component's handler.
///
/// Use it once, in the crate that builds the component (a `cdylib`):
///
/// ```no_run
/// use wsbox_guest::{Message, WebSocketHandler, Ws};
///
/// #[derive(Default)]
/// struct Echo;
///
/// impl WebSocketHandler for Echo {
///     fn on_message(&mut self, ws: &Ws, message: Message) {
///         let _ = ws.write_message(message);
///     }
/// }
///
/// wsbox_guest::export_handler!(Echo);
/// # fn main() {}
/// ```
///
/// # Hibernation
///
/// `export_handler!(Type, hibernate)` opts a handler whose type is
/// `serde::Serialize + serde::Deserialize` into hibernation: on a route
/// with `hibernate_after`, an idle connection's instance is dropped and the
/// SDK keeps the handler value (as JSON, with the subprotocol and
/// extensions in force) as the connection's attachment; the next message
/// or the close restores it in a fresh instance, then calls
/// [`WebSocketHandler::on_wake`]. The handler writes no hibernation code;
/// [`WebSocketHandler::may_hibernate`] and
/// [`WebSocketHandler::on_attachment_too_large`] are there if it wants a
/// say. Without `hibernate` the component still exports the interface and
/// declines every time, so its connections keep their instances.
///
/// ```no_run
/// use wsbox_guest::{Message, WebSocketHandler, Ws};
///
/// #[derive(Default, serde::Serialize, serde::Deserialize)]
/// struct Counter { count: u64 }
///
/// impl WebSocketHandler for Counter {
///     fn on_message(&mut self, ws: &Ws, _message: Message) {
///         self.count += 1;
///         let _ = ws.write_message(self.count.to_string());
///     }
/// }
///
/// wsbox_guest::export_handler!(Counter, hibernate);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_handler {
    ($handler:ty) => {
        $crate::export_handler!(@export $handler;
            // Not opted in: the instance holds state the SDK cannot save,
            // so it declines every hibernation.
            impl $crate::__private::HibernationGuest for WsboxExport {
                fn on_hibernate(
                    _conn: &$crate::__private::Connection,
                    _max_attachment: u32,
                ) -> ::core::option::Option<::std::vec::Vec<u8>> {
                    ::core::option::Option::None
                }

                fn on_hibernate_error(
                    _conn: &$crate::__private::Connection,
                    _error: $crate::__private::HibernateError,
                ) {
                }

                // After a deploy from a version that hibernated: this one
                // cannot read the attachment and starts from `Default`.
                fn on_wake(
                    _conn: &$crate::__private::Connection,
                    _attachment: ::std::vec::Vec<u8>,
                ) {
                }
            }
        );
    };
    ($handler:ty, hibernate) => {
        $crate::export_handler!(@export $handler;
            impl $crate::__private::HibernationGuest for WsboxExport {
                fn on_hibernate(
                    conn: &$crate::__private::Connection,
                    max_attachment: u32,
                ) -> ::core::option::Option<::std::vec::Vec<u8>> {
                    WSBOX_HANDLER.with(|slot| slot.on_hibernate(conn, max_attachment))
                }

                fn on_hibernate_error(
                    conn: &$crate::__private::Connection,
                    error: $crate::__private::HibernateError,
                ) {
                    let $crate::__private::HibernateError::AttachmentTooLarge(size) = error;
                    WSBOX_HANDLER.with(|slot| slot.on_hibernate_error(conn, size))
                }

                fn on_wake(
                    conn: &$crate::__private::Connection,
                    attachment: ::std::vec::Vec<u8>,
                ) {
                    WSBOX_HANDLER.with(|slot| slot.on_wake(conn, attachment))
                }
            }
        );
    };
    (@export $handler:ty; $($hibernation:item)*) => {
        /// The exported handler type, reachable in native builds too (where
        /// nothing is exported), so that it is not dead code there.
        #[doc(hidden)]
        #[cfg(not(target_arch = "wasm32"))]
        pub fn __wsbox_exported_handler() -> $handler {
            <$handler as ::core::default::Default>::default()
        }

        const _: () = {
            ::std::thread_local! {
                static WSBOX_HANDLER: $crate::__private::Slot<$handler> =
                    const { $crate::__private::Slot::new() };
            }

            struct WsboxExport;

            impl $crate::__private::Guest for WsboxExport {
                fn upgrade(
                    request: $crate::__private::wit::UpgradeRequest,
                ) -> $crate::__private::wit::UpgradeDecision {
                    WSBOX_HANDLER.with(|slot| slot.upgrade(request))
                }

                fn on_open(
                    conn: &$crate::__private::Connection,
                    info: $crate::__private::wit::OpenInfo,
                ) {
                    WSBOX_HANDLER.with(|slot| slot.on_open(conn, info))
                }

                fn on_message(
                    conn: &$crate::__private::Connection,
                    message: $crate::__private::wit::MessageResult,
                ) {
                    WSBOX_HANDLER.with(|slot| slot.on_message(conn, message))
                }

                fn on_ping(conn: &$crate::__private::Connection, data: ::std::vec::Vec<u8>) {
                    WSBOX_HANDLER.with(|slot| slot.on_ping(conn, data))
                }

                fn on_pong(conn: &$crate::__private::Connection, data: ::std::vec::Vec<u8>) {
                    WSBOX_HANDLER.with(|slot| slot.on_pong(conn, data))
                }

                fn on_close(
                    conn: &$crate::__private::Connection,
                    info: $crate::__private::wit::CloseInfo,
                ) {
                    WSBOX_HANDLER.with(|slot| slot.on_close(conn, info))
                }
            }

            impl $crate::__private::BatchGuest for WsboxExport {
                fn on_messages(
                    conn: &$crate::__private::Connection,
                    batch: $crate::__private::wit::MessageBatchResult,
                ) {
                    WSBOX_HANDLER.with(|slot| slot.on_messages(conn, batch))
                }
            }

            $($hibernation)*

            // Natively (unit tests with `wsbox_guest::testing`) there is
            // no component to export from, and a cdylib could not be
            // linked with the component model's export names.
            #[cfg(target_arch = "wasm32")]
            $crate::__private::bindings::export!(
                WsboxExport with_types_in $crate::__private::bindings
            );
        };
    };
}
