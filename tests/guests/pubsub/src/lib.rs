//! A handler on the bare bindings of `wsbox:websocket@0.2.2`, world
//! `websocket-pubsub-handler`, for the pub/sub end-to-end tests. Each text
//! message is one command, answered with one text message:
//!
//! | command | answer |
//! |---|---|
//! | `id` | `id <connection id>` |
//! | `echo <text>` | `<text>` (a handler's own write: compressed when the route compresses) |
//! | `tag <word>` | `tagged`; `on-close` then logs `pubsub guest closed: <word>` |
//! | `sub <topic>` | `subscribed` or `error <pubsub-error>` |
//! | `unsub <topic>` | `unsubscribed <was subscribed>` or `error ...` |
//! | `pub <topic> <text>` | `published <delivered> <skipped>` or `error ...` |
//! | `pubx <topic> <text>` | the same, excluding this connection |
//! | `flood <topic> <n> <size>` | publishes n binary messages of size bytes: `flooded <delivered> <skipped> <errors>` |
//! | `count <topic>` | `count <n>` or `error ...` |
//! | `send <id> <text>` | `sent <queued>` or `error ...` |
//!
//! Errors are answered with the WIT name, e.g. `error rate-exceeded`.
//! A topic may not contain spaces here (the WIT allows them). `sub` of
//! an empty topic is written `sub` alone. On open, a route capture
//! `topic` is subscribed to.

use std::cell::RefCell;

wit_bindgen::generate!({
    path: "../../../wit",
    world: "websocket-pubsub-handler",
});

use exports::wsbox::websocket::handler::Guest;
use wsbox::websocket::connection::Connection;
use wsbox::websocket::logging::log;
use wsbox::websocket::pubsub::{self, BrokerError, PublishOptions, PubsubError};
use wsbox::websocket::types::{
    Accept, CloseInfo, LogLevel, Message, OpenInfo, OriginDecision, UpgradeDecision, UpgradeRequest,
};

thread_local! {
    static TAG: RefCell<String> = const { RefCell::new(String::new()) };
}

struct PubsubGuest;

fn error(e: PubsubError) -> String {
    format!("error {}", e.name())
}

/// `published <delivered> <skipped>`, and the broker error if the
/// message did not go to the other nodes (`published 1 0 unavailable`).
fn publish(conn: &Connection, topic: &str, message: &Message, exclude_self: bool) -> String {
    match pubsub::publish_with_broker_report(conn, topic, message, PublishOptions { exclude_self })
    {
        Ok(r) => {
            let broker = match r.broker_error {
                None => "",
                Some(BrokerError::Unavailable) => " unavailable",
                Some(BrokerError::Backlog) => " backlog",
            };
            format!("published {} {}{broker}", r.here.delivered, r.here.skipped)
        }
        Err(e) => error(e),
    }
}

fn command(conn: &Connection, text: &str) -> String {
    let mut words = text.splitn(3, ' ');
    let verb = words.next().unwrap_or("");
    let first = words.next().unwrap_or("");
    let rest = words.next().unwrap_or("");
    match verb {
        "id" => format!("id {}", conn.id()),
        "echo" => text.strip_prefix("echo ").unwrap_or("").to_string(),
        "tag" => {
            TAG.with_borrow_mut(|t| *t = first.to_string());
            "tagged".to_string()
        }
        "sub" => match pubsub::subscribe(conn, first) {
            Ok(()) => "subscribed".to_string(),
            Err(e) => error(e),
        },
        "unsub" => match pubsub::unsubscribe(conn, first) {
            Ok(was) => format!("unsubscribed {was}"),
            Err(e) => error(e),
        },
        "pub" => publish(conn, first, &Message::Text(rest.to_string()), false),
        "pubx" => publish(conn, first, &Message::Text(rest.to_string()), true),
        "flood" => {
            let mut args = rest.split(' ');
            let n: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
            let size: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
            let payload = Message::Binary(vec![7u8; size]);
            let (mut delivered, mut skipped, mut errors) = (0u32, 0u32, 0u32);
            for _ in 0..n {
                match pubsub::publish(conn, first, &payload, PublishOptions { exclude_self: true })
                {
                    Ok(r) => {
                        delivered += r.delivered;
                        skipped += r.skipped;
                    }
                    Err(_) => errors += 1,
                }
            }
            format!("flooded {delivered} {skipped} {errors}")
        }
        "count" => match pubsub::subscriber_count(conn, first) {
            Ok(n) => format!("count {n}"),
            Err(e) => error(e),
        },
        "send" => {
            let id: u64 = first.parse().unwrap_or(u64::MAX);
            match pubsub::send_to(conn, id, &Message::Text(rest.to_string())) {
                Ok(queued) => format!("sent {queued}"),
                Err(e) => error(e),
            }
        }
        other => format!("unknown command {other:?}"),
    }
}

impl Guest for PubsubGuest {
    fn upgrade(_request: UpgradeRequest) -> UpgradeDecision {
        UpgradeDecision::Accept(Accept {
            subprotocol: None,
            headers: Vec::new(),
            origin: OriginDecision::HostVerdict,
        })
    }

    fn on_open(conn: &Connection, _info: OpenInfo) {
        let request = conn.request();
        if let Some(topic) = request.named_captures.iter().find(|c| c.name == "topic")
            && !topic.value.is_empty()
            && let Err(e) = pubsub::subscribe(conn, &topic.value)
        {
            let _ = conn.write_message(&Message::Text(error(e)));
        }
    }

    fn on_message(conn: &Connection, message: Message) {
        if let Message::Text(text) = message {
            let reply = command(conn, &text);
            let _ = conn.write_message(&Message::Text(reply));
        }
    }

    fn on_ping(_conn: &Connection, _data: Vec<u8>) {}

    fn on_pong(_conn: &Connection, _data: Vec<u8>) {}

    fn on_close(conn: &Connection, _info: CloseInfo) {
        // Subscriptions have ended by now; publishing still works.
        let count = pubsub::subscriber_count(conn, "t").map_or(u32::MAX, |n| n);
        TAG.with_borrow(|tag| {
            if !tag.is_empty() {
                log(
                    LogLevel::Info,
                    &format!("pubsub guest closed: {tag} (t has {count})"),
                );
            }
        });
    }
}

export!(PubsubGuest);
