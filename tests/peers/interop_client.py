"""Interop client: round-trips text and binary messages with a wsbox echo
route using an independent WebSocket library, compression on, and prints one
JSON line with what was negotiated and how the round trips went.

usage: interop_client.py (websockets|tornado) URL
"""

import asyncio
import json
import sys

SIZES = [10, 10 * 1024, 1024 * 1024]


def payloads():
    for size in SIZES:
        # Compressible but not trivial: repeated JSON-ish text.
        text = ('{"n": %d, "msg": "hello wsbox"} ' % size) * (size // 20 + 1)
        yield text[:size]
        yield bytes((i * 7) % 251 for i in range(size))


async def with_websockets(url):
    import websockets

    async with websockets.connect(
        url, compression="deflate", max_size=16 * 1024 * 1024, ping_interval=None
    ) as ws:
        ext = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        count = 0
        for p in payloads():
            await ws.send(p)
            back = await asyncio.wait_for(ws.recv(), 30)
            if back != p:
                return {"ok": False, "error": f"mismatch at size {len(p)}", "extensions": ext}
            count += 1
        await ws.close(1000, "done")
        return {"ok": True, "round_trips": count, "extensions": ext}


async def with_tornado(url):
    from tornado.websocket import websocket_connect

    conn = await asyncio.wait_for(
        websocket_connect(url, compression_options={}, max_message_size=16 * 1024 * 1024), 30
    )
    ext = conn.headers.get("Sec-WebSocket-Extensions", "") if conn.headers else ""
    count = 0
    for p in payloads():
        await conn.write_message(p, binary=isinstance(p, bytes))
        back = await asyncio.wait_for(conn.read_message(), 30)
        if back != p:
            return {"ok": False, "error": f"mismatch at size {len(p)}", "extensions": ext}
        count += 1
    conn.close(1000, "done")
    return {"ok": True, "round_trips": count, "extensions": ext}


def main():
    lib, url = sys.argv[1], sys.argv[2]
    run = {"websockets": with_websockets, "tornado": with_tornado}[lib]
    try:
        result = asyncio.run(run(url))
    except Exception as e:  # report, don't hide: the Rust test prints it
        result = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
