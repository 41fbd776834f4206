"""Test peer for tests/client.rs: a Python `websockets` server.

Listens on 127.0.0.1 on a free port and prints `READY <port>` when it
accepts connections; then one line per finished connection:
`closed <path> code=<code> reason=<reason>` (the client's close frame).

Routes (query parameters in brackets):
  /echo                 echoes text as text and binary as binary
  /headers              first sends the request headers as a JSON object, then echoes
  /subprotocol          first sends the selected subprotocol ("" if none), then echoes
  /close[code,reason]   closes at once with that code and reason
  /big[size]            sends one binary message of `size` random bytes
  /forbidden            refuses the upgrade with 403 and a text body
permessage-deflate is on (the library's default); messages up to 16 MiB.
"""

import asyncio
import json
import os
import sys
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import serve

SUBPROTOCOLS = ["chat", "superchat"]


def select_subprotocol(connection, offered):
    for protocol in offered:
        if protocol in SUBPROTOCOLS:
            return protocol
    return None


def process_request(connection, request):
    if urlsplit(request.path).path == "/forbidden":
        return connection.respond(HTTPStatus.FORBIDDEN, "forbidden by the websockets test peer\n")
    return None


async def echo(ws):
    async for message in ws:
        await ws.send(message)


async def handler(ws):
    url = urlsplit(ws.request.path)
    query = parse_qs(url.query)
    route = url.path
    try:
        if route == "/echo":
            await echo(ws)
        elif route == "/headers":
            headers = {name.lower(): value for name, value in ws.request.headers.raw_items()}
            await ws.send(json.dumps(headers))
            await echo(ws)
        elif route == "/subprotocol":
            await ws.send(ws.subprotocol or "")
            await echo(ws)
        elif route == "/close":
            await ws.close(int(query["code"][0]), query.get("reason", [""])[0])
        elif route == "/big":
            await ws.send(os.urandom(int(query["size"][0])))
            await ws.wait_closed()
        else:
            await ws.close(4404, "no such route")
    except Exception:  # the close line below is what tests look at
        pass
    finally:
        print(f"closed {route} code={ws.close_code} reason={ws.close_reason}", flush=True)


async def main():
    async with serve(
        handler,
        "127.0.0.1",
        0,
        select_subprotocol=select_subprotocol,
        process_request=process_request,
        max_size=16 * 1024 * 1024,
        ping_interval=None,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"READY {port}", flush=True)
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
