"""Benchmark peer: a minimal Tornado WebSocket broadcast server.

Every text or binary message a client sends is sent to every other
connected client (the protocol of `wsbox bench broadcast`), looping over
the waiters as Tornado's chat demo does (`for waiter in cls.waiters:
waiter.write_message(...)`). Listens on 127.0.0.1 only.

Usage: python tornado_broadcast.py [--port PORT] [--compress]
(or env PORT / COMPRESS=1). --compress enables permessage-deflate; each
connection then compresses for itself.
"""

import argparse
import asyncio
import os

import tornado.web
import tornado.websocket

MAX_MESSAGE_SIZE = 64 * 1024 * 1024


def make_handler(compress):
    class Broadcast(tornado.websocket.WebSocketHandler):
        waiters = set()

        def check_origin(self, origin):
            return True

        def get_compression_options(self):
            # None disables permessage-deflate; {} enables it with defaults.
            return {} if compress else None

        def open(self):
            # Small deliveries, latency measured: no Nagle delay, as every
            # broadcast peer (Tornado's default keeps it).
            self.set_nodelay(True)
            Broadcast.waiters.add(self)

        def on_close(self):
            Broadcast.waiters.discard(self)

        def on_message(self, message):
            binary = isinstance(message, bytes)
            for waiter in Broadcast.waiters:
                if waiter is not self:
                    try:
                        waiter.write_message(message, binary=binary)
                    except tornado.websocket.WebSocketClosedError:
                        pass

    return Broadcast


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "9000")))
    parser.add_argument("--compress", action="store_true", default=os.environ.get("COMPRESS") == "1")
    args = parser.parse_args()
    app = tornado.web.Application(
        [(r"/.*", make_handler(args.compress))],
        websocket_max_message_size=MAX_MESSAGE_SIZE,
    )
    app.listen(args.port, address="127.0.0.1")
    print(f"tornado-broadcast listening on 127.0.0.1:{args.port} compress={args.compress}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
