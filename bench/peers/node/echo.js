// Benchmark peer: a minimal Node `ws` echo server.
//
// Echoes text as text and binary as binary. Listens on 127.0.0.1 only.
// Usage: node echo.js [--port PORT] [--compress]  (or env PORT / COMPRESS=1).
// --compress enables permessage-deflate (ws's server default is off);
// threshold 0 so that every message is compressed, as the other peers do.
'use strict';

const { WebSocketServer } = require('ws');

const args = process.argv.slice(2);
let port = Number(process.env.PORT || 9000);
let compress = process.env.COMPRESS === '1';
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--port') port = Number(args[++i]);
  else if (args[i] === '--compress') compress = true;
  else {
    console.error('usage: node echo.js [--port PORT] [--compress]');
    process.exit(2);
  }
}

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port,
  clientTracking: false,
  maxPayload: 64 * 1024 * 1024,
  perMessageDeflate: compress ? { threshold: 0 } : false,
});
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});
wss.on('listening', () => {
  console.log(`node-ws-echo listening on 127.0.0.1:${port} compress=${compress}`);
});
