"""The chat demo in Python: the same behaviour as the bundled Rust chat
(``examples/chat/src/lib.rs``), checked by the same suite
(``tests/polyglot_chat.rs``). One room per route capture
(``/chat/<room>``), on the host's pub/sub: the handler never loops over
the room's members, it publishes to the room's topic and the host
delivers.

Every line the client sends is a chat message to the room, except:

- ``/nick <name>``: change nickname (1 to 24 of ``A-Z a-z 0-9 _ -``); the
  first one can also come in the query, ``/chat/lobby?nick=alice``;
- ``/msg <name> <text>``: a private message to whoever goes by ``<name>``
  (in any room);
- ``/who``: how many are in the room.

What the client receives is plain text lines: ``alice: hello`` for a
room message, ``* alice joined lobby (2 here)`` and ``* alice left`` for
notices, ``[private] alice: psst`` and ``[to bob] psst`` for private
messages, and ``! ...`` for errors.
"""

import re

from wsbox import PubsubError, WebSocketClosedError, WebSocketHandler, exports, log

_NICK = re.compile(r"[A-Za-z0-9_-]{1,24}")


def room_topic(room: str) -> str:
    """The topic of a room's messages."""
    return f"room:{room}"


def user_topic(nick: str) -> str:
    """The topic a user's private messages go to."""
    return f"user:{nick}"


def valid_nick(nick: str) -> bool:
    return _NICK.fullmatch(nick) is not None


class Chat(WebSocketHandler):
    """One chat connection: its room and its nickname."""

    room = ""
    nick = ""

    def tell(self, line: str) -> None:
        """A line to this connection's own peer (dropped once it is
        closing, like the Rust chat's ``let _ = ws.write_message(..)``)."""
        try:
            self.write_message(line)
        except WebSocketClosedError:
            pass

    def notice(self, text: str) -> None:
        try:
            self.publish(room_topic(self.room), f"* {text}")
        except PubsubError as e:
            self.tell(f"! notice not sent: {e}")

    def open(self, *args: str, room: str = "lobby", **kwargs: str) -> None:
        self.room = room
        nick = self.request.get_query_argument("nick")
        self.nick = nick if nick is not None and valid_nick(nick) else f"guest{self.connection_id}"
        try:
            self.subscribe(room_topic(self.room))
            self.subscribe(user_topic(self.nick))
        except PubsubError as e:
            log(f"chat: cannot join {self.room}: {e}", "warn")
            self.close(1011, "cannot join the room")
            return
        try:
            here = self.subscriber_count(room_topic(self.room))
        except PubsubError:
            here = 1
        self.tell(f"welcome to {self.room}, {self.nick}: /nick <name>, /msg <name> <text>, /who")
        self.notice(f"{self.nick} joined {self.room} ({here} here)")

    def on_message(self, message) -> None:
        if not isinstance(message, str):
            self.tell("! binary messages are not chat")
            return
        text = message.strip()
        if text.startswith("/nick "):
            self.rename(text[len("/nick "):].strip())
        elif text.startswith("/msg "):
            to, _, body = text[len("/msg "):].strip().partition(" ")
            self.private(to, body.strip())
        elif text == "/who":
            try:
                here = self.subscriber_count(room_topic(self.room))
            except PubsubError:
                here = 0
            self.tell(f"* {here} here in {self.room}")
        elif text:
            self.say(text)

    def on_close(self) -> None:
        if self.room:
            # Subscriptions have ended: this reaches the others only.
            self.notice(f"{self.nick} left")

    def rename(self, nick: str) -> None:
        if not valid_nick(nick):
            self.tell("! a nickname is 1 to 24 letters, digits, _ or -")
            return
        try:
            self.subscribe(user_topic(nick))
        except PubsubError as e:
            self.tell(f"! cannot take that nickname: {e}")
            return
        # Renaming to the same name keeps its private topic.
        if nick != self.nick:
            try:
                self.unsubscribe(user_topic(self.nick))
            except PubsubError:
                pass
        old, self.nick = self.nick, nick
        self.notice(f"{old} is now known as {nick}")

    def private(self, to: str, text: str) -> None:
        if not valid_nick(to) or not text:
            self.tell("! usage: /msg <name> <text>")
            return
        try:
            published = self.publish(user_topic(to), f"[private] {self.nick}: {text}", exclude_self=True)
        except PubsubError as e:
            self.tell(f"! not sent: {e}")
            return
        if published.delivered > 0:
            self.tell(f"[to {to}] {text}")
        else:
            self.tell(f"! nobody here goes by {to}")

    def say(self, text: str) -> None:
        try:
            published = self.publish(room_topic(self.room), f"{self.nick}: {text}")
        except PubsubError as e:
            if e.kind == PubsubError.RATE_EXCEEDED:
                self.tell("! slow down: the server is over its message rate")
            else:
                self.tell(f"! not sent: {e}")
            return
        # Several servers share the room through a broker: say when the
        # others' users did not get it.
        if published.broker_error is not None:
            self.tell(f"! only this server's users got it: {published.broker_error_message}")


# The world `websocket-pubsub-handler` exports `handler` only: componentize-py
# takes `Handler` (BatchHandler is for the batch worlds).
Handler, BatchHandler = exports(Chat)
