"""Benchmark peer: a minimal Tornado WebSocket echo server.

Echoes text as text and binary as binary. Listens on 127.0.0.1 only.

Usage: python tornado_echo.py [--port PORT] [--compress]
(or env PORT / COMPRESS=1). --compress enables permessage-deflate.
"""

import argparse
import asyncio
import os

import tornado.web
import tornado.websocket

MAX_MESSAGE_SIZE = 64 * 1024 * 1024


def make_handler(compress):
    class Echo(tornado.websocket.WebSocketHandler):
        def check_origin(self, origin):
            return True

        def get_compression_options(self):
            # None disables permessage-deflate; {} enables it with defaults.
            return {} if compress else None

        def on_message(self, message):
            self.write_message(message, binary=isinstance(message, bytes))

    return Echo


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
    print(f"tornado-echo listening on 127.0.0.1:{args.port} compress={args.compress}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
