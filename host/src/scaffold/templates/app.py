"""__NAME__: a wsbox WebSocket handler, in the shape of Tornado's
WebSocketHandler. The host makes one handler object per connection.

`wsbox build` builds __NAME__.wasm; `wsbox serve --config wsbox.toml`
serves it at /__NAME__ and /__NAME__/<room>.
"""

from wsbox import WebSocketHandler, exports


class Echo(WebSocketHandler):
    def open(self, *args, **kwargs):
        # The route's captures: /__NAME__/lobby matches
        # /__NAME__/(?P<room>[^/]+) in wsbox.toml, so kwargs == {"room": "lobby"}.
        if args or kwargs:
            named = ", ".join(f"{k}: {v}" for k, v in kwargs.items())
            self.write_message(f"hello from __NAME__: args=[{', '.join(args)}] kwargs={{{named}}}")

    def on_message(self, message):
        # str for a text message, bytes for a binary one: echoed as it came.
        self.write_message(message)


# componentize-py looks for these two names in module `app`.
# For pub/sub (self.subscribe, self.publish, ...), build against the world
# that imports it: `world = "websocket-pubsub-handler"` under [build] in
# wsbox.toml (examples/chat-python in the wsbox repository is a chat).
Handler, BatchHandler = exports(Echo)
