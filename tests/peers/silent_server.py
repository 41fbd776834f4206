"""Test peer for tests/client.rs: completes the WebSocket opening handshake,
then never answers anything, pings included. It parses the client's frames
and prints one line per frame: `frame opcode=<n>`, and for a close frame
`close code=<code>`; `eof` when the client closes the TCP connection.

Listens on 127.0.0.1 on a free port and prints `READY <port>`.
"""

import asyncio
import base64
import hashlib
import struct

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frames(buf):
    """The complete (opcode, unmasked payload) frames at the start of buf,
    and the bytes left over."""
    out = []
    while len(buf) >= 2:
        opcode = buf[0] & 0x0F
        masked = buf[1] & 0x80
        length = buf[1] & 0x7F
        pos = 2
        if length == 126:
            if len(buf) < 4:
                break
            length = struct.unpack("!H", buf[2:4])[0]
            pos = 4
        elif length == 127:
            if len(buf) < 10:
                break
            length = struct.unpack("!Q", buf[2:10])[0]
            pos = 10
        mask = b""
        if masked:
            mask = buf[pos : pos + 4]
            pos += 4
        if len(buf) < pos + length:
            break
        payload = buf[pos : pos + length]
        if masked:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        out.append((opcode, payload))
        buf = buf[pos + length :]
    return out, buf


async def handle(reader, writer):
    head = await reader.readuntil(b"\r\n\r\n")
    key = b""
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            key = value.strip()
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    writer.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    await writer.drain()
    print("handshake done", flush=True)
    buf = b""
    while True:
        data = await reader.read(65536)
        if not data:
            print("eof", flush=True)
            break
        parsed, buf = frames(buf + data)
        for opcode, payload in parsed:
            print(f"frame opcode={opcode}", flush=True)
            if opcode == 8 and len(payload) >= 2:
                print(f"close code={struct.unpack('!H', payload[:2])[0]}", flush=True)
    writer.close()


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
