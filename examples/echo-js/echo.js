// The echo example in JavaScript: the same behaviour as examples/echo (Rust),
// checked by the same conformance suite (tests/polyglot.rs).
import { WebSocketServer, log } from './wsbox.js';

const wss = new WebSocketServer({
  verifyClient(info, done) {
    const token = info.req.searchParams.get('token');
    if (token !== undefined && token !== 'letmein') done(false, 401, 'bad token', { 'WWW-Authenticate': 'Bearer' });
    else done(true);
  },
  handleProtocols: (protocols) => (protocols.has('echo.v1') ? 'echo.v1' : false),
  // On a route with hibernate_after, an idle connection hibernates: ws.data
  // is saved and comes back on wake.
  hibernate: true,
});

wss.on('connection', (ws, request) => {
  // Again after a wake, with ws.data restored: then no greeting.
  if (!ws.resumed) ws.data = { echoed: 0, hooks: false };
  const state = ws.data;
  const kwargs = Object.entries(request.pathKwargs);
  if (!ws.resumed && (request.pathArgs.length > 0 || kwargs.length > 0)) {
    const named = kwargs.map(([k, v]) => `${k}: ${v}`).join(', ');
    ws.send(`hello from wsbox echo: args=[${request.pathArgs.join(', ')}] kwargs={${named}}`);
  }

  ws.on('message', (data, isBinary) => {
    if (!isBinary && data.startsWith('wsbox:')) {
      command(data.slice('wsbox:'.length));
      return;
    }
    ws.send(data, { binary: isBinary });
    state.echoed += 1;
  });
  ws.on('ping', (data) => { if (state.hooks) ws.send('on_ping: ' + new TextDecoder().decode(data)); });
  ws.on('pong', (data) => { if (state.hooks) ws.send('on_pong: ' + new TextDecoder().decode(data)); });
  ws.on('close', (code, reason) => {
    log(`echo closed: code=${code === 1005 ? 'none' : code} reason=${reason} echoed=${state.echoed} messages`);
  });

  function command(text) {
    const space = text.indexOf(' ');
    const name = space < 0 ? text : text.slice(0, space);
    const rest = space < 0 ? '' : text.slice(space + 1);
    switch (name) {
      case 'json':
        ws.send(JSON.stringify({ echo: 'json', n: [1, 2] }));
        break;
      case 'close': {
        const at = rest.indexOf(' ');
        ws.close(Number(at < 0 ? rest : rest.slice(0, at)), at < 0 ? '' : rest.slice(at + 1));
        break;
      }
      case 'hooks':
        state.hooks = true;
        ws.send('hooks on');
        break;
      case 'count':
        ws.send(`echoed ${state.echoed}`);
        break;
      case 'ping':
        ws.ping(rest);
        break;
      case 'write-after-close':
        ws.close(4001, 'closing');
        ws.send('too late', (err) => { if (err) log(`write after close ${rest}: closed`); });
        break;
      case 'trap':
        throw new Error('trap requested');
      default:
        ws.send(`unknown command: ${name}`);
    }
  }
});

export const { handler, batchHandler, hibernation } = wss.exports();
