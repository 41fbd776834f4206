// Benchmark peer: a minimal Node `ws` broadcast server.
//
// Every text or binary message a client sends is sent to every other
// connected client (the protocol of `wsbox bench broadcast`), looping over
// the server's clients as ws's README does. Listens on 127.0.0.1 only.
// Usage: node broadcast.js [--port PORT] [--compress]  (or env PORT / COMPRESS=1).
// --compress enables permessage-deflate (threshold 0: every message is
// compressed, by each connection for itself). The loop is the plain one
// (`client.send` per client: ws frames the message for each).
'use strict';

const { WebSocketServer, WebSocket } = require('ws');

const args = process.argv.slice(2);
let port = Number(process.env.PORT || 9000);
let compress = process.env.COMPRESS === '1';
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--port') port = Number(args[++i]);
  else if (args[i] === '--compress') compress = true;
  else {
    console.error('usage: node broadcast.js [--port PORT] [--compress]');
    process.exit(2);
  }
}

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port,
  clientTracking: true,
  maxPayload: 64 * 1024 * 1024,
  perMessageDeflate: compress ? { threshold: 0 } : false,
});
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    for (const client of wss.clients) {
      if (client !== ws && client.readyState === WebSocket.OPEN) {
        client.send(data, { binary: isBinary });
      }
    }
  });
  ws.on('error', () => {});
});
wss.on('listening', () => {
  console.log(`node-ws-broadcast listening on 127.0.0.1:${port} compress=${compress}`);
});
