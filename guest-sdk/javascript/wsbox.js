// wsbox handlers in JavaScript, in the style of the `ws` package's API.
//
//   import { WebSocketServer } from './wsbox.js';
//   const wss = new WebSocketServer({ handleProtocols: (protocols) => 'echo.v1' });
//   wss.on('connection', (ws, request) => {
//     ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
//   });
//   export const { handler, batchHandler } = wss.exports();
//
// Build with componentize-js (examples/echo-js/build.sh). The host makes one
// instance per connection; the server object dispatches each event to the
// connection's WebSocket. Differences from `ws`: text messages arrive as
// strings (binary ones as Uint8Array), everything is synchronous (sends are
// queued and go out when the event handler returns), and `verifyClient`
// calls its callback before returning.
//
// Hibernation: `new WebSocketServer({ hibernate: true })` opts in. Keep a
// connection's state in `ws.data` (an object, saved as JSON): on a route
// with `hibernate_after`, an idle connection's `ws.data` is saved, its
// instance dropped, and the next message wakes a fresh one, where the SDK
// makes a new WebSocket with `ws.data` restored and `ws.resumed === true`
// and emits 'connection' again (so listeners are attached again; skip
// one-time work such as greetings when `ws.resumed`), then delivers the
// message. State kept elsewhere (closures, module variables) is lost. A
// connection stays awake when `ws.data` is not JSON, or while an
// `options.mayHibernate(ws)` returns false. Export `hibernation` too and
// build with the world `websocket-host`:
//
//   export const { handler, batchHandler, hibernation } = wss.exports();
import { log as hostLog } from 'wsbox:websocket/logging@0.2.3';

const te = new TextEncoder();
const td = new TextDecoder();

/** Bytes as a Uint8Array, whatever view or array they came in. */
function toBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return Uint8Array.from(data);
}

/** Minimal EventEmitter (`on`, `once`, `off`, `emit`). */
class Emitter {
  constructor() { this._listeners = new Map(); }
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, []);
    this._listeners.get(event).push(fn);
    return this;
  }
  addEventListener(event, fn) { return this.on(event, fn); }
  once(event, fn) {
    const wrapped = (...args) => { this.off(event, wrapped); fn(...args); };
    return this.on(event, wrapped);
  }
  off(event, fn) {
    const list = this._listeners.get(event);
    if (list) this._listeners.set(event, list.filter((f) => f !== fn));
    return this;
  }
  emit(event, ...args) {
    const list = this._listeners.get(event);
    if (!list || list.length === 0) return false;
    for (const fn of [...list]) fn(...args);
    return true;
  }
}

/** Write a line to the host's log: level is trace, debug, info, warn or error. */
export function log(message, level = 'info') {
  hostLog(level, String(message));
}

/** The opening handshake, as `ws` passes `request` (an IncomingMessage) to 'connection'. */
export class UpgradeRequest {
  constructor(raw) {
    this.connectionId = raw.connectionId;
    this.url = raw.query ? `${raw.path}?${raw.query}` : raw.path;
    this.path = raw.path;
    this.query = raw.query;
    this.headers = {};
    for (const h of raw.headers) this.headers[h.name] = td.decode(h.value);
    this.pathArgs = [...raw.positionalCaptures];
    this.pathKwargs = {};
    for (const c of raw.namedCaptures) this.pathKwargs[c.name] = c.value;
    this.subprotocols = [...raw.subprotocols];
    this.origin = raw.origin;
    this.originAllowed = raw.originAllowed;
    const a = raw.remoteAddress.address;
    this.remoteAddress = a.tag === 'ipv4' ? a.val.join('.') : a.val.map((g) => g.toString(16)).join(':');
    this.remotePort = raw.remoteAddress.port;
  }
  /** The query string's parameters (URLSearchParams semantics, no decoding). */
  get searchParams() {
    const map = new Map();
    for (const part of this.query.split('&')) {
      if (!part) continue;
      const at = part.indexOf('=');
      map.set(at < 0 ? part : part.slice(0, at), at < 0 ? '' : part.slice(at + 1));
    }
    return map;
  }
}

/** One connection, like `ws`'s WebSocket. */
export class WebSocket extends Emitter {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSING = 2;
  static CLOSED = 3;

  constructor(request) {
    super();
    this.request = request;
    this.readyState = WebSocket.CONNECTING;
    this.protocol = '';
    this.extensions = '';
    /** Per-connection state, saved as JSON across hibernations. */
    this.data = {};
    /** True on a WebSocket made again after a hibernation. */
    this.resumed = false;
    this._conn = null;
  }

  /** Send `data`: a string as text (binary with `{ binary: true }`), a Uint8Array/ArrayBuffer as binary.
   * On a closing or closed connection, `cb` gets an Error (like `ws`); without `cb` it throws. */
  send(data, options, cb) {
    if (typeof options === 'function') { cb = options; options = {}; }
    options = options || {};
    let message;
    if (typeof data === 'string') {
      message = options.binary ? { tag: 'binary', val: te.encode(data) } : { tag: 'text', val: data };
    } else if (ArrayBuffer.isView(data) || data instanceof ArrayBuffer || Array.isArray(data)) {
      const bytes = toBytes(data);
      message = options.binary === false ? { tag: 'text', val: td.decode(bytes) } : { tag: 'binary', val: bytes };
    } else {
      message = { tag: 'text', val: String(data) };
    }
    let error = null;
    if (this.readyState !== WebSocket.OPEN || !this._conn) {
      error = new Error('WebSocket is not open: readyState ' + this.readyState);
    } else {
      try {
        this._conn.writeMessage(message);
      } catch (e) {
        this.readyState = WebSocket.CLOSING;
        error = new Error('WebSocket is closed');
      }
    }
    if (cb) cb(error);
    else if (error) throw error;
  }

  /** Send a ping (at most 125 bytes); the answer arrives as a 'pong' event. */
  ping(data = new Uint8Array(0)) {
    if (this.readyState !== WebSocket.OPEN || !this._conn) throw new Error('WebSocket is not open');
    this._conn.ping(typeof data === 'string' ? te.encode(data) : toBytes(data));
  }

  /** Start the closing handshake; 'close' follows. */
  close(code, reason) {
    if (this.readyState !== WebSocket.OPEN || !this._conn) return;
    this._conn.close(code, reason);
    this.readyState = WebSocket.CLOSING;
  }

  /** Like `ws`'s terminate: here the same as close(1000). */
  terminate() { this.close(1000); }

  setNoDelay(enabled = true) { if (this._conn) this._conn.setNodelay(enabled); }
}

/** The handler: `new WebSocketServer(options)`, then `on('connection', ...)` and `exports()`.
 * Options: `handleProtocols(protocols: Set<string>, request)` returns the protocol or false;
 * `verifyClient(info, cb)` calls `cb(true)` or `cb(false, status, message, headers)`
 * (info: `{ origin, req, originAllowed }`); `headers(request)` returns extra 101 headers. */
export class WebSocketServer extends Emitter {
  constructor(options = {}) {
    super();
    this.options = options;
    this.clients = new Map();
  }

  _socket(conn) {
    const id = conn.id();
    let ws = this.clients.get(id);
    if (!ws) {
      // A fresh instance for an open connection (allowed by the contract).
      ws = new WebSocket(new UpgradeRequest(conn.request()));
      ws.readyState = WebSocket.OPEN;
      this.clients.set(id, ws);
    }
    ws._conn = conn;
    return ws;
  }

  _upgrade(raw) {
    const request = new UpgradeRequest(raw);
    let verdict = { ok: true };
    if (this.options.verifyClient) {
      this.options.verifyClient(
        { origin: request.origin, req: request, originAllowed: request.originAllowed },
        (ok, status = 401, message = 'Unauthorized', headers = {}) => { verdict = { ok, status, message, headers }; },
      );
    }
    if (!verdict.ok) {
      const headers = Object.entries(verdict.headers).map(([name, value]) => ({ name: name.toLowerCase(), value: te.encode(String(value)) }));
      return { tag: 'reject', val: { status: verdict.status, reason: verdict.message, headers } };
    }
    let subprotocol;
    if (this.options.handleProtocols && request.subprotocols.length > 0) {
      const chosen = this.options.handleProtocols(new Set(request.subprotocols), request);
      if (chosen) subprotocol = chosen;
    }
    const extra = this.options.headers ? this.options.headers(request) : {};
    const headers = Object.entries(extra).map(([name, value]) => ({ name: name.toLowerCase(), value: te.encode(String(value)) }));
    const ws = new WebSocket(request);
    this.clients.set(raw.connectionId, ws);
    return { tag: 'accept', val: { subprotocol, headers, origin: 'host-verdict' } };
  }

  /** The handler's state as JSON bytes, or undefined to stay awake. */
  _attachment(ws) {
    if (!this.options.hibernate || ws.readyState !== WebSocket.OPEN) return undefined;
    if (this.options.mayHibernate && !this.options.mayHibernate(ws)) return undefined;
    let json;
    try {
      json = JSON.stringify({ data: ws.data, protocol: ws.protocol, extensions: ws.extensions });
    } catch (e) {
      log(`ws.data is not JSON, so the connection stays awake: ${e}`, 'warn');
      return undefined;
    }
    return te.encode(json);
  }

  /** A WebSocket made again from its attachment, announced with 'connection'. */
  _wake(conn, attachment) {
    const ws = new WebSocket(new UpgradeRequest(conn.request()));
    const saved = attachment.length > 0 ? JSON.parse(td.decode(toBytes(attachment))) : {};
    ws.data = saved.data ?? {};
    ws.protocol = saved.protocol ?? '';
    ws.extensions = saved.extensions ?? '';
    ws.readyState = WebSocket.OPEN;
    ws.resumed = true;
    ws._conn = conn;
    this.clients.set(conn.id(), ws);
    this.emit('connection', ws, ws.request);
  }

  /** The component's exports: `export const { handler, batchHandler, hibernation } = wss.exports();`
   * (`hibernation` only with the world `websocket-host`). */
  exports() {
    const server = this;
    const handler = {
      upgrade: (request) => server._upgrade(request),
      onOpen(conn, info) {
        const ws = server._socket(conn);
        ws.readyState = WebSocket.OPEN;
        ws.protocol = info.subprotocol || '';
        ws.extensions = info.extensions;
        server.emit('connection', ws, ws.request);
      },
      onMessage(conn, message) {
        const ws = server._socket(conn);
        if (ws.readyState !== WebSocket.OPEN) return;
        if (message.tag === 'binary') ws.emit('message', toBytes(message.val), true);
        else ws.emit('message', message.val, false);
      },
      onPing(conn, data) { server._socket(conn).emit('ping', toBytes(data)); },
      onPong(conn, data) { server._socket(conn).emit('pong', toBytes(data)); },
      onClose(conn, info) {
        const ws = server._socket(conn);
        ws.readyState = WebSocket.CLOSED;
        try {
          ws.emit('close', info.code === undefined ? 1005 : info.code, info.reason);
        } finally {
          ws._conn = null;
          server.clients.delete(conn.id());
        }
      },
    };
    const batchHandler = {
      onMessages(conn, batch) {
        const ws = server._socket(conn);
        const data = toBytes(batch.data);
        let at = 0;
        for (const span of batch.spans) {
          const chunk = data.subarray(at, at + span.len);
          at += span.len;
          if (ws.readyState !== WebSocket.OPEN) break;
          if (span.kind === 'text') ws.emit('message', td.decode(chunk), false);
          else ws.emit('message', chunk, true);
        }
      },
    };
    const hibernation = {
      onHibernate(conn, _maxAttachment) {
        const ws = server.clients.get(conn.id());
        if (!ws) return undefined;
        // The WebSocket stays: the host drops the whole instance when it
        // hibernates, and keeps it (awake, with its state) when it does
        // not (an attachment over maxAttachment, a close meanwhile).
        return server._attachment(ws);
      },
      onHibernateError(conn, error) {
        log(`hibernation refused: attachment of ${error.val} bytes is too large`, 'warn');
      },
      onWake(conn, attachment) { server._wake(conn, attachment); },
    };
    return { handler, batchHandler, hibernation };
  }
}
