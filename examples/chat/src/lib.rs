//! The bundled chat demo: one room per route capture (`/chat/<room>`), on
//! the host's pub/sub. The handler never loops over the room's members: it
//! publishes to the room's topic and the host delivers.
//!
//! Every line the client sends is a chat message to the room, except:
//!
//! - `/nick <name>`: change nickname (1 to 24 of `A-Z a-z 0-9 _ -`); the
//!   first one can also come in the query, `/chat/lobby?nick=alice`;
//! - `/msg <name> <text>`: a private message to whoever goes by `<name>`
//!   (in any room);
//! - `/who`: how many are in the room.
//!
//! What the client receives is plain text lines: `alice: hello` for a
//! room message, `* alice joined lobby (2 here)` and `* alice left` for
//! notices, `[private] alice: psst` and `[to bob] psst` for private
//! messages, and `! ...` for errors.

use wsbox_guest::{Message, PubsubError, WebSocketHandler, Ws, log};

/// Per-connection state: the room and the nickname.
#[derive(Default)]
struct Chat {
    room: String,
    nick: String,
}

/// The topic of a room's messages.
fn room_topic(room: &str) -> String {
    format!("room:{room}")
}

/// The topic a user's private messages go to.
fn user_topic(nick: &str) -> String {
    format!("user:{nick}")
}

fn valid_nick(nick: &str) -> bool {
    (1..=24).contains(&nick.len())
        && nick
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Chat {
    fn notice(&self, ws: &Ws, text: &str) {
        if let Err(e) = ws.publish(&room_topic(&self.room), format!("* {text}")) {
            let _ = ws.write_message(format!("! notice not sent: {e}"));
        }
    }

    fn rename(&mut self, ws: &Ws, nick: &str) {
        if !valid_nick(nick) {
            let _ = ws.write_message("! a nickname is 1 to 24 letters, digits, _ or -");
            return;
        }
        if let Err(e) = ws.subscribe(&user_topic(nick)) {
            let _ = ws.write_message(format!("! cannot take that nickname: {e}"));
            return;
        }
        // Renaming to the same name keeps its private topic.
        if self.nick != nick {
            let _ = ws.unsubscribe(&user_topic(&self.nick));
        }
        let old = std::mem::replace(&mut self.nick, nick.to_owned());
        self.notice(ws, &format!("{old} is now known as {nick}"));
    }

    fn private(&self, ws: &Ws, to: &str, text: &str) {
        if !valid_nick(to) || text.is_empty() {
            let _ = ws.write_message("! usage: /msg <name> <text>");
            return;
        }
        let line = format!("[private] {}: {text}", self.nick);
        match ws.publish_to_others(&user_topic(to), line) {
            Ok(p) if p.delivered > 0 => {
                let _ = ws.write_message(format!("[to {to}] {text}"));
            }
            Ok(_) => {
                let _ = ws.write_message(format!("! nobody here goes by {to}"));
            }
            Err(e) => {
                let _ = ws.write_message(format!("! not sent: {e}"));
            }
        }
    }

    fn say(&self, ws: &Ws, text: &str) {
        let line = format!("{}: {text}", self.nick);
        match ws.publish(&room_topic(&self.room), line) {
            Ok(published) => {
                // Several servers share the room through a broker: say
                // when the others' users did not get it.
                if let Some(e) = published.broker_error {
                    let _ = ws.write_message(format!("! only this server's users got it: {e}"));
                }
            }
            Err(PubsubError::RateExceeded) => {
                let _ = ws.write_message("! slow down: the server is over its message rate");
            }
            Err(e) => {
                let _ = ws.write_message(format!("! not sent: {e}"));
            }
        }
    }
}

impl WebSocketHandler for Chat {
    fn open(&mut self, ws: &Ws) {
        let request = ws.request();
        self.room = request.path_kwarg("room").unwrap_or("lobby").to_owned();
        self.nick = match request.query_param("nick") {
            Some(nick) if valid_nick(nick) => nick.to_owned(),
            _ => format!("guest{}", ws.id()),
        };
        let joined = ws
            .subscribe(&room_topic(&self.room))
            .and_then(|()| ws.subscribe(&user_topic(&self.nick)));
        if let Err(e) = joined {
            log::warn(format!("chat: cannot join {}: {e}", self.room));
            let _ = ws.close(Some(1011), Some("cannot join the room"));
            return;
        }
        let here = ws.subscriber_count(&room_topic(&self.room)).unwrap_or(1);
        let _ = ws.write_message(format!(
            "welcome to {}, {}: /nick <name>, /msg <name> <text>, /who",
            self.room, self.nick
        ));
        self.notice(
            ws,
            &format!("{} joined {} ({here} here)", self.nick, self.room),
        );
    }

    fn on_message(&mut self, ws: &Ws, message: Message) {
        let Some(text) = message.as_text() else {
            let _ = ws.write_message("! binary messages are not chat");
            return;
        };
        let text = text.trim();
        if let Some(nick) = text.strip_prefix("/nick ") {
            self.rename(ws, nick.trim());
        } else if let Some(rest) = text.strip_prefix("/msg ") {
            let (to, body) = rest.trim().split_once(' ').unwrap_or((rest.trim(), ""));
            self.private(ws, to, body.trim());
        } else if text == "/who" {
            let here = ws.subscriber_count(&room_topic(&self.room)).unwrap_or(0);
            let _ = ws.write_message(format!("* {here} here in {}", self.room));
        } else if !text.is_empty() {
            self.say(ws, text);
        }
    }

    fn on_close(&mut self, ws: &Ws, _info: &wsbox_guest::CloseInfo) {
        if !self.room.is_empty() {
            // Subscriptions have ended: this reaches the others only.
            self.notice(ws, &format!("{} left", self.nick));
        }
    }
}

wsbox_guest::export_handler!(Chat);

#[cfg(test)]
mod tests {
    use super::Chat;
    use wsbox_guest::UpgradeRequest;
    use wsbox_guest::testing::{Sent, TestConnection, TestHub};

    fn join(hub: &TestHub, id: u64, room: &str, nick: &str) -> TestConnection<Chat> {
        let request = UpgradeRequest {
            connection_id: id,
            path: format!("/chat/{room}"),
            query: format!("nick={nick}"),
            path_kwargs: vec![("room".into(), room.into())],
            ..UpgradeRequest::default()
        };
        TestConnection::connect_in(hub, request).unwrap()
    }

    fn texts(conn: &mut TestConnection<Chat>) -> Vec<String> {
        conn.take_sent()
            .into_iter()
            .map(|s| match s {
                Sent::Text(t) => t,
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_room_chats_and_another_room_does_not_hear_it() {
        let hub = TestHub::new();
        let mut alice = join(&hub, 1, "lobby", "alice");
        assert_eq!(
            texts(&mut alice),
            [
                "welcome to lobby, alice: /nick <name>, /msg <name> <text>, /who",
                "* alice joined lobby (1 here)"
            ]
        );
        let mut bob = join(&hub, 2, "lobby", "bob");
        let mut carol = join(&hub, 3, "attic", "carol");
        assert_eq!(texts(&mut alice), ["* bob joined lobby (2 here)"]);
        texts(&mut bob);
        texts(&mut carol);

        bob.receive("hi all");
        assert_eq!(texts(&mut alice), ["bob: hi all"]);
        assert_eq!(texts(&mut bob), ["bob: hi all"]);
        assert!(texts(&mut carol).is_empty(), "another room");

        // A private message crosses rooms, to that name only.
        carol.receive("/msg alice psst");
        assert_eq!(texts(&mut alice), ["[private] carol: psst"]);
        assert_eq!(texts(&mut carol), ["[to alice] psst"]);
        assert!(texts(&mut bob).is_empty());
        carol.receive("/msg nobody x");
        assert_eq!(texts(&mut carol), ["! nobody here goes by nobody"]);

        alice.receive("/nick al");
        assert_eq!(texts(&mut bob), ["* alice is now known as al"]);
        texts(&mut alice);
        bob.receive("/who");
        assert_eq!(texts(&mut bob), ["* 2 here in lobby"]);

        alice.close_from_peer(Some(1000), "");
        assert_eq!(texts(&mut bob), ["* al left"]);
        assert_eq!(hub.subscriber_count("room:lobby"), 1);
    }
}
