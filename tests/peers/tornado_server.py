"""Test peer for tests/client.rs: a Tornado WebSocket server with
permessage-deflate on (`get_compression_options` returns {}).

Listens on 127.0.0.1 on a free port and prints `READY <port>`; then one
line per finished connection: `closed <path> code=<code> reason=<reason>`
(the client's close frame, Tornado's close_code/close_reason).

Routes (query parameters in brackets):
  /echo                 echoes text as text and binary as binary
  /headers              first sends the request headers as a JSON object, then echoes
  /subprotocol          first sends the selected subprotocol ("" if none), then echoes
  /close[code,reason]   closes at once with that code and reason
  /big[size]            sends one binary message of `size` random bytes
  /unauthorized         refuses the upgrade with 401 and a text body
"""

import asyncio
import json
import os

import tornado.netutil
import tornado.httpserver
import tornado.web
import tornado.websocket

SUBPROTOCOLS = ["chat", "superchat"]


class Peer(tornado.websocket.WebSocketHandler):
    def check_origin(self, origin):
        return True

    def get_compression_options(self):
        return {}

    def prepare(self):
        if self.request.path == "/unauthorized":
            self.set_status(401)
            self.finish("unauthorized by the tornado test peer\n")

    def select_subprotocol(self, subprotocols):
        for protocol in subprotocols:
            if protocol in SUBPROTOCOLS:
                return protocol
        return None

    def open(self):
        route = self.request.path
        if route == "/headers":
            headers = {name.lower(): value for name, value in self.request.headers.get_all()}
            self.write_message(json.dumps(headers))
        elif route == "/subprotocol":
            self.write_message(self.selected_subprotocol or "")
        elif route == "/close":
            code = int(self.get_query_argument("code"))
            self.close(code, self.get_query_argument("reason", ""))
        elif route == "/big":
            size = int(self.get_query_argument("size"))
            self.write_message(os.urandom(size), binary=True)
        elif route != "/echo":
            self.close(4404, "no such route")

    def on_message(self, message):
        if self.request.path in ("/echo", "/headers", "/subprotocol"):
            self.write_message(message, binary=isinstance(message, bytes))

    def on_close(self):
        print(
            f"closed {self.request.path} code={self.close_code} reason={self.close_reason}",
            flush=True,
        )


async def main():
    app = tornado.web.Application(
        [(r"/.*", Peer)], websocket_max_message_size=16 * 1024 * 1024
    )
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets(sockets)
    print(f"READY {sockets[0].getsockname()[1]}", flush=True)
    await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    asyncio.run(main())
