//! A counter for the hibernation tests. Its whole state is a
//! `serde`-serializable value, and it opts into hibernation with one line
//! (`export_handler!(Counter, hibernate)`): the SDK saves the value as the
//! attachment and restores it on wake.
//!
//! Commands (text messages), each answered with one text message:
//! - `count`: `count <n> messages <m> wakes <w>`: `n` counts `count`
//!   commands, `m` every message the handler got, `w` its wakes;
//! - `id`: `counter-id <connection id>`;
//! - `sub <topic>`: subscribes, answers `subscribed <topic>`;
//! - `pub <topic> <text>`: publishes `<text>`, answers `published <delivered>`;
//! - `send <id> <text>`: `send-to` another connection, answers `sent <bool>`;
//! - `big <n>`: keeps `n` bytes more of state, answers `big <n>`;
//! - `trap-on-wake`: its next wake panics, answers `armed`;
//! - `stay-awake`: declines hibernation from now on, answers `awake`.
//!
//! When its state is over the route's `max_attachment` it writes
//! `too large <size> > <max>`.

use wsbox_guest::{Message, WebSocketHandler, Ws};

#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct Counter {
    count: u64,
    messages: u64,
    wakes: u64,
    blob: String,
    trap_on_wake: bool,
    stay_awake: bool,
}

impl WebSocketHandler for Counter {
    fn on_message(&mut self, ws: &Ws, message: Message) {
        self.messages += 1;
        let Some(text) = message.as_text() else {
            return;
        };
        let (command, rest) = text.split_once(' ').unwrap_or((text, ""));
        let reply = match command {
            "count" => {
                self.count += 1;
                format!(
                    "count {} messages {} wakes {}",
                    self.count, self.messages, self.wakes
                )
            }
            "id" => format!("counter-id {}", ws.id()),
            "sub" => match ws.subscribe(rest) {
                Ok(()) => format!("subscribed {rest}"),
                Err(e) => format!("error {e}"),
            },
            "pub" => {
                let (topic, body) = rest.split_once(' ').unwrap_or((rest, ""));
                match ws.publish(topic, body) {
                    Ok(report) => format!("published {}", report.delivered),
                    Err(e) => format!("error {e}"),
                }
            }
            "send" => {
                let (id, body) = rest.split_once(' ').unwrap_or((rest, ""));
                match id.parse::<u64>() {
                    Ok(id) => match ws.send_to(id, body) {
                        Ok(sent) => format!("sent {sent}"),
                        Err(e) => format!("error {e}"),
                    },
                    Err(_) => "error bad id".to_string(),
                }
            }
            "big" => {
                let n = rest.parse::<usize>().unwrap_or(0);
                self.blob.push_str(&"x".repeat(n));
                format!("big {n}")
            }
            "trap-on-wake" => {
                self.trap_on_wake = true;
                "armed".to_string()
            }
            "stay-awake" => {
                self.stay_awake = true;
                "awake".to_string()
            }
            other => format!("unknown {other}"),
        };
        let _ = ws.write_message(reply);
    }

    fn may_hibernate(&mut self, _ws: &Ws) -> bool {
        !self.stay_awake
    }

    fn on_wake(&mut self, _ws: &Ws) {
        assert!(!self.trap_on_wake, "told to trap on wake");
        self.wakes += 1;
    }

    fn on_attachment_too_large(&mut self, ws: &Ws, size: usize, max: usize) {
        let _ = ws.write_message(format!("too large {size} > {max}"));
    }
}

wsbox_guest::export_handler!(Counter, hibernate);

#[cfg(test)]
mod tests {
    use super::Counter;
    use wsbox_guest::UpgradeRequest;
    use wsbox_guest::testing::{NotHibernated, Sent, TestConnection};

    #[test]
    fn state_survives_hibernation_in_the_sdk() {
        let mut conn = TestConnection::<Counter>::connect(UpgradeRequest::default()).unwrap();
        conn.receive("count");
        assert_eq!(
            conn.take_sent(),
            vec![Sent::Text("count 1 messages 1 wakes 0".into())]
        );
        let size = conn.hibernate(16 * 1024).unwrap();
        assert!(size > 0);
        assert!(conn.is_hibernated());
        // The next message wakes it with its state.
        conn.receive("count");
        assert!(!conn.is_hibernated());
        assert_eq!(
            conn.take_sent(),
            vec![Sent::Text("count 2 messages 2 wakes 1".into())]
        );
    }

    #[test]
    fn too_large_state_keeps_it_awake_and_says_so() {
        let mut conn = TestConnection::<Counter>::connect(UpgradeRequest::default()).unwrap();
        conn.receive("big 2000");
        conn.take_sent();
        let Err(NotHibernated::TooLarge(size)) = conn.hibernate(1024) else {
            panic!("a 2000-byte state fits no 1024-byte attachment");
        };
        assert!(size > 2000, "{size}");
        assert!(!conn.is_hibernated());
        assert_eq!(
            conn.take_sent(),
            vec![Sent::Text(format!("too large {size} > 1024"))]
        );
    }

    #[test]
    fn a_handler_may_decline() {
        let mut conn = TestConnection::<Counter>::connect(UpgradeRequest::default()).unwrap();
        conn.receive("stay-awake");
        conn.take_sent();
        assert_eq!(conn.hibernate(16 * 1024), Err(NotHibernated::Declined));
        assert!(!conn.is_hibernated());
    }
}
