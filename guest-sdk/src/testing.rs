//! Unit-test a handler natively: `cargo test` on your machine, no wasm and
//! no server.
//!
//! A [`TestConnection`] plays the host: it runs the upgrade, opens the
//! connection, delivers messages, pings and the close to your handler
//! through the same code the component uses, and records what the handler
//! sent, checked as the host checks it (ping payloads, close codes and
//! reasons, writes after a close).
//!
//! ```
//! use wsbox_guest::testing::{Sent, TestConnection};
//! use wsbox_guest::{Message, UpgradeRequest, WebSocketHandler, Ws};
//!
//! #[derive(Default)]
//! struct Shout;
//!
//! impl WebSocketHandler for Shout {
//!     fn on_message(&mut self, ws: &Ws, message: Message) {
//!         if let Some(text) = message.as_text() {
//!             let _ = ws.write_message(text.to_uppercase());
//!         }
//!     }
//! }
//!
//! let mut conn = TestConnection::<Shout>::connect(UpgradeRequest::default()).unwrap();
//! conn.receive("hello");
//! assert_eq!(conn.take_sent(), vec![Sent::Text("HELLO".into())]);
//! ```
//!
//! Pub/sub works too: connections made with the same [`TestHub`] share
//! topics, and what is published to a topic shows up in each subscriber's
//! [`take_sent`](TestConnection::take_sent), as the host would deliver it
//! (the publisher's own copy after the writes of the event that published
//! it). The hub plays one tenant with no limits: topics are checked for
//! length, not for counts or rates.

use std::cell::{Cell, Ref, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use crate::backend::{Backend, Conn};
use crate::bindings::wsbox::websocket::types as wit;
use crate::errors::{CloseError, Closed, PingError, PubsubError};
use crate::handler::WebSocketHandler;
use crate::runtime::Slot;
use crate::types::{CloseCause, CloseInfo, Message, OutMessage, Published, Reject, UpgradeRequest};

/// The topics several [`TestConnection`]s share, as one tenant's on the
/// host. Cheap to clone: clones are the same hub.
#[derive(Clone, Default)]
pub struct TestHub(Rc<RefCell<HubState>>);

#[derive(Default)]
struct HubState {
    /// topic → subscribers' connection ids.
    topics: BTreeMap<String, BTreeSet<u64>>,
    /// The open connections' recorded output, by id.
    members: BTreeMap<u64, Rc<RefCell<Vec<Sent>>>>,
}

impl TestHub {
    /// A hub with no connections.
    pub fn new() -> TestHub {
        TestHub::default()
    }

    /// How many connections subscribe to `topic`.
    pub fn subscriber_count(&self, topic: &str) -> u32 {
        let state = self.0.borrow();
        u32::try_from(state.topics.get(topic).map_or(0, BTreeSet::len)).unwrap_or(u32::MAX)
    }

    fn join(&self, id: u64, sent: Rc<RefCell<Vec<Sent>>>) {
        self.0.borrow_mut().members.insert(id, sent);
    }

    fn leave(&self, id: u64) {
        let mut state = self.0.borrow_mut();
        state.members.remove(&id);
        for subscribers in state.topics.values_mut() {
            subscribers.remove(&id);
        }
        state.topics.retain(|_, s| !s.is_empty());
    }
}

fn check_topic(topic: &str) -> Result<(), PubsubError> {
    if topic.is_empty() {
        Err(PubsubError::EmptyTopic)
    } else if topic.len() > 256 {
        Err(PubsubError::TopicTooLong)
    } else {
        Ok(())
    }
}

fn sent_message(message: &OutMessage<'_>) -> Sent {
    match message {
        OutMessage::Text(text) => Sent::Text(text.to_string()),
        OutMessage::Binary(bytes) => Sent::Binary(bytes.to_vec()),
    }
}

/// What a handler sent, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sent {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// A ping with its payload.
    Ping(Vec<u8>),
    /// The handler started the closing handshake.
    Close {
        /// The close code, if one was given.
        code: Option<u16>,
        /// The close reason, empty if none.
        reason: String,
    },
    /// The handler set `TCP_NODELAY`.
    Nodelay(bool),
}

/// The handler's answer to the upgrade, when it accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The subprotocol it selected.
    pub subprotocol: Option<String>,
    /// The extra headers for the 101 response.
    pub headers: Vec<(String, String)>,
    /// Whether the request's origin is allowed, after the handler's
    /// `check_origin` (the host would answer 403 otherwise).
    pub origin_allowed: bool,
}

/// Why [`TestConnection::hibernate`] left the handler awake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotHibernated {
    /// The handler declined ([`WebSocketHandler::may_hibernate`]).
    Declined,
    /// Its attachment was this many bytes, over the limit; the handler was
    /// told ([`WebSocketHandler::on_attachment_too_large`]).
    TooLarge(usize),
}

/// Restores a hibernated handler in a fresh slot (set by
/// [`TestConnection::hibernate`], which knows the handler is serde).
type Restore<H> = fn(&Slot<H>, Conn<'_>, &[u8]);

/// One connection to a handler of type `H`, driven by the test.
pub struct TestConnection<H: WebSocketHandler> {
    slot: Slot<H>,
    fake: Fake,
    request: UpgradeRequest,
    accepted: Option<Accepted>,
    opened: bool,
    closed: bool,
    /// While hibernated: the attachment and how to restore it.
    sleeping: Option<(Vec<u8>, Restore<H>)>,
}

impl<H: WebSocketHandler> TestConnection<H> {
    /// A connection that will present `request`; nothing is called yet.
    /// It has a [`TestHub`] of its own.
    pub fn new(request: UpgradeRequest) -> Self {
        Self::new_in(&TestHub::new(), request)
    }

    /// A connection in `hub`, sharing its topics with the hub's other
    /// connections. Give each one its own `connection_id`.
    pub fn new_in(hub: &TestHub, request: UpgradeRequest) -> Self {
        TestConnection {
            slot: Slot::new(),
            fake: Fake {
                id: request.connection_id,
                request: request.clone(),
                sent: Rc::new(RefCell::new(Vec::new())),
                own_deliveries: RefCell::new(Vec::new()),
                closing: Cell::new(false),
                own_close: RefCell::new(None),
                hub: hub.clone(),
                member: Cell::new(false),
            },
            request,
            accepted: None,
            opened: false,
            closed: false,
            sleeping: None,
        }
    }

    /// Runs the upgrade and opens the connection, as the host does: `Err`
    /// when the handler rejects it, or refuses its origin (a 403 then).
    pub fn connect(request: UpgradeRequest) -> Result<Self, Reject> {
        Self::connect_in(&TestHub::new(), request)
    }

    /// [`connect`](Self::connect) in `hub`.
    pub fn connect_in(hub: &TestHub, request: UpgradeRequest) -> Result<Self, Reject> {
        let mut conn = Self::new_in(hub, request);
        let accepted = conn.upgrade()?;
        if !accepted.origin_allowed {
            return Err(Reject::new(
                403,
                "cross-origin WebSocket connection refused",
            ));
        }
        conn.open();
        Ok(conn)
    }

    /// Runs the upgrade phase: `prepare`, `check_origin`,
    /// `select_subprotocol`, `upgrade_headers`.
    pub fn upgrade(&mut self) -> Result<Accepted, Reject> {
        match self.slot.upgrade_with(self.request.clone()) {
            wit::UpgradeDecision::Reject(r) => Err(Reject {
                status: r.status,
                reason: r.reason,
                headers: text_headers(r.headers),
            }),
            wit::UpgradeDecision::Accept(a) => {
                let accepted = Accepted {
                    subprotocol: a.subprotocol,
                    headers: text_headers(a.headers),
                    origin_allowed: match a.origin {
                        wit::OriginDecision::HostVerdict => self.request.origin_allowed,
                        wit::OriginDecision::Allow => true,
                        wit::OriginDecision::Deny => false,
                    },
                };
                self.accepted = Some(accepted.clone());
                Ok(accepted)
            }
        }
    }

    /// Opens the connection (`open`), with the subprotocol the upgrade
    /// selected, if it ran.
    pub fn open(&mut self) {
        let subprotocol = self.accepted.as_ref().and_then(|a| a.subprotocol.clone());
        self.opened = true;
        self.fake.hub.join(self.fake.id, Rc::clone(&self.fake.sent));
        self.fake.member.set(true);
        self.slot.on_open_with(
            Conn::Fake(&self.fake),
            wit::OpenInfo {
                subprotocol,
                extensions: String::new(),
            },
        );
        self.fake.settle();
    }

    /// Delivers one message, as the host does for a message that arrives
    /// alone. Ignored once the connection is closing, as the host does.
    pub fn receive(&mut self, message: impl Into<Message>) {
        if self.fake.closing.get() {
            return;
        }
        self.wake();
        let message = match message.into() {
            Message::Text(text) => wit::MessageResult::Text(text),
            Message::Binary(data) => wit::MessageResult::Binary(data),
        };
        self.slot.on_message_with(Conn::Fake(&self.fake), message);
        self.fake.settle();
    }

    /// Delivers several messages in one batch, as the host does for
    /// messages that arrive together: the handler's writes are handed over
    /// together at the end.
    pub fn receive_batch<M: Into<Message>>(&mut self, messages: impl IntoIterator<Item = M>) {
        if self.fake.closing.get() {
            return;
        }
        self.wake();
        let mut data = Vec::new();
        let mut spans = Vec::new();
        for message in messages {
            let (kind, bytes) = match message.into() {
                Message::Text(text) => (wit::MessageKind::Text, text.into_bytes()),
                Message::Binary(bytes) => (wit::MessageKind::Binary, bytes),
            };
            data.extend_from_slice(&bytes);
            spans.push(wit::MessageSpan {
                kind,
                len: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
            });
        }
        self.slot.on_messages_with(
            Conn::Fake(&self.fake),
            wit::MessageBatchResult { data, spans },
        );
        self.fake.settle();
    }

    /// Delivers a ping from the peer (the host has answered it already).
    /// A hibernated handler is not woken: the host answers alone.
    pub fn ping(&mut self, data: &[u8]) {
        if self.sleeping.is_some() {
            return;
        }
        self.slot
            .on_ping_with(Conn::Fake(&self.fake), data.to_vec());
        self.fake.settle();
    }

    /// Delivers a pong from the peer (not to a hibernated handler).
    pub fn pong(&mut self, data: &[u8]) {
        if self.sleeping.is_some() {
            return;
        }
        self.slot
            .on_pong_with(Conn::Fake(&self.fake), data.to_vec());
        self.fake.settle();
    }

    /// The peer closes with `code` and `reason`: `on_close` runs with cause
    /// [`CloseCause::PeerClosed`] (or [`CloseCause::HandlerClosed`] with the
    /// handler's own code when the handler closed first, as on the wire).
    pub fn close_from_peer(&mut self, code: Option<u16>, reason: &str) {
        let info = match self.fake.own_close.take() {
            Some((code, reason)) => CloseInfo {
                code,
                reason,
                cause: CloseCause::HandlerClosed,
            },
            None => CloseInfo {
                code,
                reason: reason.to_owned(),
                cause: CloseCause::PeerClosed,
            },
        };
        self.finish(info);
    }

    /// Ends the connection with `info` (`on_close`), whatever the cause.
    /// Called at most once; later calls do nothing.
    pub fn finish(&mut self, info: CloseInfo) {
        if self.closed || !self.opened {
            return;
        }
        self.closed = true;
        // A hibernated connection wakes for `on_close`, as on the host.
        self.wake();
        self.fake.closing.set(true);
        // Its subscriptions end before `on_close`, as on the host.
        self.fake.hub.leave(self.fake.id);
        self.fake.member.set(false);
        let info = wit::CloseInfo {
            code: info.code,
            reason: info.reason,
            cause: match info.cause {
                CloseCause::PeerClosed => wit::CloseCause::PeerClosed,
                CloseCause::HandlerClosed => wit::CloseCause::HandlerClosed,
                CloseCause::ProtocolError => wit::CloseCause::ProtocolError,
                CloseCause::MessageTooBig => wit::CloseCause::MessageTooBig,
                CloseCause::PingTimeout => wit::CloseCause::PingTimeout,
                CloseCause::GoingAway => wit::CloseCause::GoingAway,
                CloseCause::ConnectionLost => wit::CloseCause::ConnectionLost,
                CloseCause::OutputLimit => wit::CloseCause::OutputLimit,
                CloseCause::ClosedByServer => wit::CloseCause::ClosedByServer,
            },
        };
        self.slot.on_close_with(Conn::Fake(&self.fake), info);
        self.fake.settle();
    }

    /// Whether the connection is hibernated: its handler value is gone and
    /// only its attachment is kept.
    pub fn is_hibernated(&self) -> bool {
        self.sleeping.is_some()
    }

    /// Wakes a hibernated connection now, as its next message would: a
    /// fresh handler value restored from the attachment, then
    /// [`on_wake`](WebSocketHandler::on_wake). Nothing when awake.
    pub fn wake(&mut self) {
        let Some((attachment, restore)) = self.sleeping.take() else {
            return;
        };
        self.slot = Slot::new();
        restore(&self.slot, Conn::Fake(&self.fake), &attachment);
        self.fake.settle();
    }

    /// What the handler sent since the last call, in order.
    pub fn take_sent(&mut self) -> Vec<Sent> {
        self.fake.sent.take()
    }

    /// This connection's id (the request's `connection_id`).
    pub fn id(&self) -> u64 {
        self.fake.id
    }

    /// Whether the connection is closing: the handler closed it, or it
    /// ended.
    pub fn is_closing(&self) -> bool {
        self.fake.closing.get()
    }

    /// The handler value (created by the first event).
    ///
    /// # Panics
    ///
    /// If no event has reached the handler yet.
    pub fn handler(&self) -> Ref<'_, H> {
        Ref::map(self.slot.handler(), |h| {
            h.as_ref()
                .expect("no event has reached the handler yet: call upgrade or open first")
        })
    }
}

impl<H> TestConnection<H>
where
    H: WebSocketHandler + serde::Serialize + serde::de::DeserializeOwned,
{
    /// Hibernates the connection as the host does for a handler exported
    /// with `export_handler!(Type, hibernate)` once its route's
    /// `hibernate_after` passed: the SDK serializes the handler value; within
    /// `max_attachment` bytes the value is dropped and only the attachment
    /// kept (its size is returned), and the next [`receive`](Self::receive),
    /// [`receive_batch`](Self::receive_batch) or close restores it in a
    /// fresh value. Pings and pongs do not wake it.
    pub fn hibernate(&mut self, max_attachment: usize) -> Result<usize, NotHibernated> {
        if self.sleeping.is_some() {
            return Ok(self.sleeping.as_ref().map_or(0, |(a, _)| a.len()));
        }
        let max = u32::try_from(max_attachment).unwrap_or(u32::MAX);
        let answer = self.slot.on_hibernate_with(Conn::Fake(&self.fake), max);
        self.fake.settle();
        let Some(attachment) = answer else {
            return Err(NotHibernated::Declined);
        };
        if attachment.len() > max_attachment {
            let size = u32::try_from(attachment.len()).unwrap_or(u32::MAX);
            self.slot
                .on_hibernate_error_with(Conn::Fake(&self.fake), size);
            self.fake.settle();
            return Err(NotHibernated::TooLarge(attachment.len()));
        }
        let size = attachment.len();
        self.slot = Slot::new();
        self.sleeping = Some((attachment, |slot, backend, attachment| {
            slot.on_wake_with(backend, attachment)
        }));
        Ok(size)
    }
}

fn text_headers(headers: Vec<wit::Header>) -> Vec<(String, String)> {
    headers
        .into_iter()
        .map(|h| (h.name, String::from_utf8_lossy(&h.value).into_owned()))
        .collect()
}

/// The host's side, recorded.
struct Fake {
    id: u64,
    request: UpgradeRequest,
    /// Shared with the hub, which delivers other connections' publishes.
    sent: Rc<RefCell<Vec<Sent>>>,
    /// This connection's own publishes to itself, delivered after the
    /// event's writes.
    own_deliveries: RefCell<Vec<Sent>>,
    closing: Cell<bool>,
    /// The handler's own close, which the peer echoes.
    own_close: RefCell<Option<(Option<u16>, String)>>,
    hub: TestHub,
    /// Open and in the hub.
    member: Cell<bool>,
}

impl Drop for Fake {
    /// A connection dropped without closing leaves its hub too.
    fn drop(&mut self) {
        if self.member.get() {
            self.hub.leave(self.id);
        }
    }
}

impl Fake {
    /// After an event: the connection's own publishes follow its writes.
    fn settle(&self) {
        let own = self.own_deliveries.take();
        self.sent.borrow_mut().extend(own);
    }

    fn deliver(&self, to: u64, message: Sent) {
        if to == self.id {
            self.own_deliveries.borrow_mut().push(message);
        } else if let Some(sent) = self.hub.0.borrow().members.get(&to) {
            sent.borrow_mut().push(message);
        }
    }
}

impl Backend for Fake {
    fn id(&self) -> u64 {
        self.id
    }

    fn request(&self) -> UpgradeRequest {
        self.request.clone()
    }

    fn write_message(&self, message: &OutMessage<'_>) -> Result<(), Closed> {
        if self.closing.get() {
            return Err(Closed);
        }
        self.sent.borrow_mut().push(match message {
            OutMessage::Text(text) => Sent::Text(text.to_string()),
            OutMessage::Binary(bytes) => Sent::Binary(bytes.to_vec()),
        });
        Ok(())
    }

    fn write_messages(&self, data: &[u8], spans: &[wit::MessageSpan]) -> Result<(), Closed> {
        if self.closing.get() {
            return Err(Closed);
        }
        let mut rest = data;
        let mut sent = self.sent.borrow_mut();
        for span in spans {
            let (bytes, tail) = rest.split_at((span.len as usize).min(rest.len()));
            rest = tail;
            sent.push(match span.kind {
                wit::MessageKind::Text => {
                    Sent::Text(String::from_utf8(bytes.to_vec()).expect(
                        "the host traps a handler that writes a text span that is not UTF-8",
                    ))
                }
                wit::MessageKind::Binary => Sent::Binary(bytes.to_vec()),
            });
        }
        Ok(())
    }

    fn ping(&self, data: &[u8]) -> Result<(), PingError> {
        if data.len() > 125 {
            return Err(PingError::PayloadTooLong);
        }
        if self.closing.get() {
            return Err(PingError::Closed);
        }
        self.sent.borrow_mut().push(Sent::Ping(data.to_vec()));
        Ok(())
    }

    fn close(&self, code: Option<u16>, reason: Option<&str>) -> Result<(), CloseError> {
        let reason = reason.unwrap_or_default();
        match code {
            Some(1000..=1003 | 1007..=1014 | 3000..=4999) => {}
            Some(_) => return Err(CloseError::InvalidCode),
            None if !reason.is_empty() => return Err(CloseError::ReasonWithoutCode),
            None => {}
        }
        if reason.len() > 123 {
            return Err(CloseError::ReasonTooLong);
        }
        if !self.closing.replace(true) {
            *self.own_close.borrow_mut() = Some((code, reason.to_owned()));
            self.sent.borrow_mut().push(Sent::Close {
                code,
                reason: reason.to_owned(),
            });
        }
        Ok(())
    }

    fn set_nodelay(&self, enabled: bool) {
        self.sent.borrow_mut().push(Sent::Nodelay(enabled));
    }

    fn subscribe(&self, topic: &str) -> Result<(), PubsubError> {
        check_topic(topic)?;
        if !self.member.get() || self.closing.get() {
            return Err(PubsubError::Closed);
        }
        self.hub
            .0
            .borrow_mut()
            .topics
            .entry(topic.to_owned())
            .or_default()
            .insert(self.id);
        Ok(())
    }

    fn unsubscribe(&self, topic: &str) -> Result<bool, PubsubError> {
        check_topic(topic)?;
        let mut state = self.hub.0.borrow_mut();
        let was = state
            .topics
            .get_mut(topic)
            .is_some_and(|s| s.remove(&self.id));
        state.topics.retain(|_, s| !s.is_empty());
        Ok(was)
    }

    fn publish(
        &self,
        topic: &str,
        message: &OutMessage<'_>,
        exclude_self: bool,
    ) -> Result<Published, PubsubError> {
        check_topic(topic)?;
        let subscribers: Vec<u64> = self
            .hub
            .0
            .borrow()
            .topics
            .get(topic)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        let mut report = Published::default();
        for id in subscribers {
            if exclude_self && id == self.id {
                continue;
            }
            self.deliver(id, sent_message(message));
            report.delivered += 1;
        }
        Ok(report)
    }

    fn subscriber_count(&self, topic: &str) -> Result<u32, PubsubError> {
        check_topic(topic)?;
        Ok(self.hub.subscriber_count(topic))
    }

    fn send_to(&self, connection_id: u64, message: &OutMessage<'_>) -> Result<bool, PubsubError> {
        if !self.hub.0.borrow().members.contains_key(&connection_id) {
            return Err(PubsubError::UnknownConnection);
        }
        self.deliver(connection_id, sent_message(message));
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::{Sent, TestConnection};
    use crate::{
        CloseCause, CloseError, CloseInfo, Closed, Message, PingError, Reject, UpgradeRequest,
        WebSocketHandler, Ws,
    };

    /// Closes on "bye", answers "ping" with a too-long and a good ping,
    /// echoes the rest; remembers what it saw.
    #[derive(Default)]
    struct Probe {
        closed_with: Option<CloseInfo>,
        write_after_close: Option<Result<(), Closed>>,
    }

    impl WebSocketHandler for Probe {
        fn prepare(&mut self, request: &UpgradeRequest) -> Result<(), Reject> {
            match request.query_param("token") {
                Some("good") => Ok(()),
                _ => Err(Reject::new(401, "bad token")),
            }
        }

        fn select_subprotocol(&mut self, offered: &[String]) -> Option<String> {
            offered.iter().find(|p| *p == "v2").cloned()
        }

        fn on_message(&mut self, ws: &Ws, message: Message) {
            match message.as_text() {
                Some("bye") => {
                    assert_eq!(ws.close(Some(999), None), Err(CloseError::InvalidCode));
                    assert_eq!(
                        ws.close(None, Some("why")),
                        Err(CloseError::ReasonWithoutCode)
                    );
                    ws.close(Some(4000), Some("done")).unwrap();
                    self.write_after_close = Some(ws.write_message("late"));
                }
                Some("ping") => {
                    assert_eq!(ws.ping([0u8; 126]), Err(PingError::PayloadTooLong));
                    ws.ping(b"p").unwrap();
                }
                Some("proto") => {
                    let _ = ws.write_message(ws.selected_subprotocol().unwrap_or("none"));
                }
                _ => {
                    let _ = ws.write_message(message);
                }
            }
        }

        fn on_close(&mut self, ws: &Ws, info: &CloseInfo) {
            assert_eq!(ws.close_code(), info.code);
            self.closed_with = Some(info.clone());
        }
    }

    fn request(query: &str) -> UpgradeRequest {
        UpgradeRequest {
            query: query.into(),
            subprotocols: vec!["v1".into(), "v2".into()],
            ..UpgradeRequest::default()
        }
    }

    #[test]
    fn the_upgrade_phase_runs_as_on_the_host() {
        let rejected = TestConnection::<Probe>::connect(request("token=bad"))
            .err()
            .unwrap();
        assert_eq!(
            (rejected.status, rejected.reason.as_str()),
            (401, "bad token")
        );

        let mut conn = TestConnection::<Probe>::connect(request("token=good")).unwrap();
        conn.receive("proto");
        assert_eq!(conn.take_sent(), vec![Sent::Text("v2".into())]);
    }

    #[test]
    fn a_close_in_a_batch_flushes_what_came_before_and_skips_the_rest() {
        let mut conn = TestConnection::<Probe>::connect(request("token=good")).unwrap();
        conn.receive_batch(["a", "ping", "bye", "never"]);
        assert_eq!(
            conn.take_sent(),
            vec![
                Sent::Text("a".into()),
                Sent::Ping(b"p".to_vec()),
                Sent::Close {
                    code: Some(4000),
                    reason: "done".into()
                },
            ]
        );
        assert!(conn.is_closing());
        assert_eq!(conn.handler().write_after_close, Some(Err(Closed)));

        conn.close_from_peer(Some(4000), "done");
        let info = conn.handler().closed_with.clone().unwrap();
        assert_eq!(info.cause, CloseCause::HandlerClosed);
        assert_eq!(info.code, Some(4000));
    }

    #[test]
    fn messages_after_the_peer_closed_do_not_reach_the_handler() {
        let mut conn = TestConnection::<Probe>::connect(request("token=good")).unwrap();
        conn.close_from_peer(Some(1001), "away");
        conn.receive("x");
        assert!(conn.take_sent().is_empty());
        let info = conn.handler().closed_with.clone().unwrap();
        assert_eq!(
            (info.code, info.reason.as_str(), info.cause),
            (Some(1001), "away", CloseCause::PeerClosed)
        );
    }

    /// Subscribes to "t" on open; "pub X" publishes X to "t", "others X"
    /// to everyone else, "to N X" sends X to connection N.
    #[derive(Default)]
    struct Room;

    impl WebSocketHandler for Room {
        fn open(&mut self, ws: &Ws) {
            ws.subscribe("t").unwrap();
        }

        fn on_message(&mut self, ws: &Ws, message: Message) {
            let text = message.as_text().unwrap_or_default();
            let _ = ws.write_message("before");
            if let Some(rest) = text.strip_prefix("pub ") {
                let published = ws.publish("t", rest).unwrap();
                let _ = ws.write_message(format!("delivered {}", published.delivered));
            } else if let Some(rest) = text.strip_prefix("others ") {
                let published = ws.publish_to_others("t", rest).unwrap();
                let _ = ws.write_message(format!("delivered {}", published.delivered));
            } else if let Some(rest) = text.strip_prefix("to ") {
                let (id, body) = rest.split_once(' ').unwrap_or((rest, ""));
                let result = ws.send_to(id.parse().unwrap_or(0), body);
                let _ = ws.write_message(format!("{result:?}"));
            }
        }
    }

    fn in_room(hub: &super::TestHub, id: u64) -> TestConnection<Room> {
        TestConnection::connect_in(
            hub,
            UpgradeRequest {
                connection_id: id,
                ..UpgradeRequest::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn a_hub_delivers_publishes_like_the_host() {
        let text = |s: &str| Sent::Text(s.into());
        let hub = super::TestHub::new();
        let mut a = in_room(&hub, 1);
        let mut b = in_room(&hub, 2);
        assert_eq!(hub.subscriber_count("t"), 2);
        a.receive("pub hi");
        // The publisher's own copy comes after the event's writes.
        assert_eq!(
            a.take_sent(),
            vec![text("before"), text("delivered 2"), text("hi")]
        );
        assert_eq!(b.take_sent(), vec![text("hi")]);
        b.receive("others psst");
        assert_eq!(a.take_sent(), vec![text("psst")]);
        assert_eq!(b.take_sent(), vec![text("before"), text("delivered 1")]);
        a.receive("to 2 direct");
        assert_eq!(b.take_sent(), vec![text("direct")]);
        a.receive("to 9 nobody");
        assert_eq!(
            a.take_sent(),
            vec![
                text("before"),
                text("Ok(true)"),
                text("before"),
                text("Err(UnknownConnection)")
            ]
        );
        // Closing ends its subscriptions.
        b.close_from_peer(Some(1000), "");
        assert_eq!(hub.subscriber_count("t"), 1);
        a.receive("pub alone");
        assert_eq!(
            a.take_sent(),
            vec![text("before"), text("delivered 1"), text("alone")]
        );
    }
}
