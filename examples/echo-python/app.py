"""The echo example in Python: the same behaviour as examples/echo (Rust),
checked by the same conformance suite (tests/polyglot.rs)."""

from wsbox import HTTPError, WebSocketClosedError, WebSocketHandler, exports_hibernating, log


class Echo(WebSocketHandler):
    # On a route with hibernate_after, an idle connection hibernates: its
    # attributes (echoed, hooks) are saved and come back on wake.
    hibernate = True

    def prepare(self):
        token = self.request.get_query_argument("token")
        if token is not None and token != "letmein":
            raise HTTPError(401, "bad token", {"www-authenticate": "Bearer"})

    def select_subprotocol(self, subprotocols):
        return "echo.v1" if "echo.v1" in subprotocols else None

    def open(self, *args, **kwargs):
        self.echoed = 0
        self.hooks = False
        if args or kwargs:
            named = ", ".join(f"{k}: {v}" for k, v in kwargs.items())
            self.write_message(f"hello from wsbox echo: args=[{', '.join(args)}] kwargs={{{named}}}")

    def on_message(self, message):
        if isinstance(message, str) and message.startswith("wsbox:"):
            self.command(message[len("wsbox:"):])
            return
        self.write_message(message)
        self.echoed += 1

    def on_ping(self, data):
        if self.hooks:
            self.write_message("on_ping: " + data.decode(errors="replace"))

    def on_pong(self, data):
        if self.hooks:
            self.write_message("on_pong: " + data.decode(errors="replace"))

    def on_close(self):
        code = "none" if self.close_code is None else self.close_code
        log(f"echo closed: code={code} reason={self.close_reason or ''} echoed={self.echoed} messages")

    def command(self, command):
        name, _, rest = command.partition(" ")
        if name == "json":
            self.write_message({"echo": "json", "n": [1, 2]})
        elif name == "close":
            code, _, reason = rest.partition(" ")
            self.close(int(code), reason)
        elif name == "hooks":
            self.hooks = True
            self.write_message("hooks on")
        elif name == "count":
            self.write_message(f"echoed {self.echoed}")
        elif name == "ping":
            self.ping(rest)
        elif name == "write-after-close":
            self.close(4001, "closing")
            try:
                self.write_message("too late")
            except WebSocketClosedError:
                log(f"write after close {rest}: closed")
        elif name == "trap":
            raise RuntimeError("trap requested")
        else:
            self.write_message(f"unknown command: {name}")


Handler, BatchHandler, Hibernation = exports_hibernating(Echo)
