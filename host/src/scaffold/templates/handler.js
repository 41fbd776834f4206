// __NAME__: a wsbox WebSocket handler, in the style of the `ws` package.
// The host runs one instance per connection.
//
// `wsbox build` builds __NAME__.wasm; `wsbox serve --config wsbox.toml`
// serves it at /__NAME__ and /__NAME__/<room>.
import { WebSocketServer } from './wsbox.js';

const wss = new WebSocketServer();

wss.on('connection', (ws, request) => {
  // The route's captures: /__NAME__/lobby matches /__NAME__/(?P<room>[^/]+)
  // in wsbox.toml, so request.pathKwargs is { room: 'lobby' }.
  const kwargs = Object.entries(request.pathKwargs);
  if (request.pathArgs.length > 0 || kwargs.length > 0) {
    const named = kwargs.map(([k, v]) => `${k}: ${v}`).join(', ');
    ws.send(`hello from __NAME__: args=[${request.pathArgs.join(', ')}] kwargs={${named}}`);
  }
  // Echoes text as text and binary as binary.
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});

// For pub/sub (ws.subscribe, ws.publish, ...), `import './wsbox-pubsub.js'`,
// set `world = "websocket-pubsub-handler"` under [build] in wsbox.toml and
// export only `handler` (that world has no batches; examples/chat-js in
// the wsbox repository is a chat).
export const { handler, batchHandler } = wss.exports();
