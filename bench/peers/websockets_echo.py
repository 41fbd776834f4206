"""Benchmark peer: a minimal Python `websockets` (asyncio API) echo server.

Echoes text as text and binary as binary. Listens on 127.0.0.1 only.
Keepalive pings are off, like the other peers.

Usage: python websockets_echo.py [--port PORT] [--compress]
(or env PORT / COMPRESS=1). --compress enables permessage-deflate
(the library's default; off otherwise).
"""

import argparse
import asyncio
import os

from websockets.asyncio.server import serve

MAX_MESSAGE_SIZE = 64 * 1024 * 1024


async def echo(ws):
    async for message in ws:
        await ws.send(message)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "9000")))
    parser.add_argument("--compress", action="store_true", default=os.environ.get("COMPRESS") == "1")
    args = parser.parse_args()
    async with serve(
        echo,
        "127.0.0.1",
        args.port,
        compression="deflate" if args.compress else None,
        max_size=MAX_MESSAGE_SIZE,
        ping_interval=None,
    ):
        print(f"websockets-echo listening on 127.0.0.1:{args.port} compress={args.compress}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())
