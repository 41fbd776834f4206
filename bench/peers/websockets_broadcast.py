"""Benchmark peer: a minimal Python `websockets` (asyncio API) broadcast server.

Every text or binary message a client sends is sent to every other
connected client (the protocol of `wsbox bench broadcast`) with
`websockets.broadcast()`, which writes to every connection without
waiting (no backpressure: what a slow connection cannot take piles up in
its write buffer; connections that are not open are skipped). Listens on
127.0.0.1 only. Keepalive pings are off, like the other peers.

Usage: python websockets_broadcast.py [--port PORT] [--compress]
(or env PORT / COMPRESS=1). --compress enables permessage-deflate
(the library's default; off otherwise); each connection then compresses
for itself.
"""

import argparse
import asyncio
import os

from websockets.asyncio.server import broadcast, serve

MAX_MESSAGE_SIZE = 64 * 1024 * 1024

CLIENTS = set()


async def handler(ws):
    CLIENTS.add(ws)
    try:
        async for message in ws:
            broadcast(CLIENTS - {ws}, message)
    finally:
        CLIENTS.discard(ws)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "9000")))
    parser.add_argument("--compress", action="store_true", default=os.environ.get("COMPRESS") == "1")
    args = parser.parse_args()
    async with serve(
        handler,
        "127.0.0.1",
        args.port,
        compression="deflate" if args.compress else None,
        max_size=MAX_MESSAGE_SIZE,
        ping_interval=None,
    ):
        print(f"websockets-broadcast listening on 127.0.0.1:{args.port} compress={args.compress}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())
