#!/usr/bin/env python3
"""Hostile load for bench/fairness.sh `logs`: N connections to a chaos route,
each asking its handler over and over to log 300 lines of 10 KB and 300
stdout lines (`!logflood`), until the time is up. Loopback only.

Usage: logflood.py URL CONNECTIONS SECONDS   (prints the floods answered)
"""

import asyncio
import sys
import time

import websockets


async def flooder(url, deadline, done):
    while time.monotonic() < deadline:
        try:
            async with websockets.connect(url, open_timeout=5, close_timeout=1) as ws:
                while time.monotonic() < deadline:
                    await ws.send("!logflood 300 10000 flood")
                    left = max(0.1, deadline - time.monotonic())
                    await asyncio.wait_for(ws.recv(), left)
                    done.append(1)
        except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException):
            await asyncio.sleep(0.05)


async def main():
    url, n, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    host = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[0]
    if host not in ("127.0.0.1", "localhost", "[::1]"):
        sys.exit("logflood.py: loopback URLs only")
    deadline = time.monotonic() + seconds
    done = []
    await asyncio.gather(*(flooder(url, deadline, done) for _ in range(n)))
    print(len(done))


if __name__ == "__main__":
    asyncio.run(main())
