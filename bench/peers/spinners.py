#!/usr/bin/env python3
"""Hostile load for bench/fairness.sh: N connections to a chaos route, each
sending `!loop` (a handler that spins until its CPU budget kills it) and,
when closed, reconnecting, until the time is up. Loopback only.

Usage: spinners.py URL CONNECTIONS SECONDS   (prints the number of kills)
"""

import asyncio
import sys
import time

import websockets


async def spinner(url, deadline, kills):
    while time.monotonic() < deadline:
        try:
            async with websockets.connect(url, open_timeout=5, close_timeout=1) as ws:
                await ws.send("!loop")
                try:
                    await asyncio.wait_for(ws.wait_closed(), max(0.1, deadline - time.monotonic()))
                    kills.append(ws.close_code)
                except asyncio.TimeoutError:
                    return
        except (OSError, websockets.exceptions.WebSocketException):
            await asyncio.sleep(0.05)


async def main():
    url, n, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    host = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[0]
    if host not in ("127.0.0.1", "localhost", "[::1]"):
        sys.exit("spinners.py: loopback URLs only")
    deadline = time.monotonic() + seconds
    kills = []
    await asyncio.gather(*(spinner(url, deadline, kills) for _ in range(n)))
    print(len(kills))


asyncio.run(main())
