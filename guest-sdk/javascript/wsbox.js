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
//
// Pub/sub: the host's topics and direct messages between the connections of
// one tenant. `ws.subscribe(topic)`, `ws.unsubscribe(topic)`,
// `ws.publish(topic, data, { excludeSelf, binary })` (returns a Published:
// `{ delivered, skipped, brokerError, brokerErrorMessage }`),
// `ws.subscriberCount(topic)` and `ws.sendTo(connectionId, data)`; the host
// delivers to every subscriber's socket itself (their handlers are not
// called), and a refusal throws a PubsubError with `.kind` (e.g.
// 'rate-exceeded'). They work in the 'connection' listener and every event
// up to 'close' included (a publish from 'close' reaches the others: the
// subscriptions have ended). The host's pub/sub is an import this module
// does not make, so that handlers without it build against worlds without
// it: a handler that uses pub/sub imports './wsbox-pubsub.js' once and is
// built against the world `websocket-pubsub-handler` (or `websocket-host`);
// examples/chat-js is a whole chat on it.
//
//   import './wsbox-pubsub.js';
//   wss.on('connection', (ws, request) => {
//     const topic = `room:${request.pathKwargs.room}`;
//     ws.subscribe(topic);
//     ws.on('message', (data) => ws.publish(topic, data, { excludeSelf: true }));
//   });
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

/** A string as a text message (binary with `{ binary: true }`), bytes as binary
 * (text with `{ binary: false }`), anything else as its string's text. */
function toMessage(data, options = {}) {
  if (typeof data === 'string') {
    return options.binary ? { tag: 'binary', val: te.encode(data) } : { tag: 'text', val: data };
  }
  if (ArrayBuffer.isView(data) || data instanceof ArrayBuffer || Array.isArray(data)) {
    const bytes = toBytes(data);
    return options.binary === false ? { tag: 'text', val: td.decode(bytes) } : { tag: 'binary', val: bytes };
  }
  return { tag: 'text', val: String(data) };
}

const PUBSUB_ERRORS = {
  'empty-topic': 'the topic is empty',
  'topic-too-long': 'the topic is longer than 256 bytes',
  'too-many-subscriptions': 'the connection has as many subscriptions as its tenant allows',
  'rate-exceeded': 'the tenant is over its publishes per second',
  'unknown-connection': 'no open connection of this tenant has that id',
  closed: 'the WebSocket connection is not open',
};

const BROKER_ERRORS = {
  unavailable: 'the pub/sub broker is unreachable: the other nodes did not get the message',
  backlog: 'too many messages wait for the pub/sub broker: the other nodes did not get the message',
};

/** The host refused a pub/sub call; nothing was done. `kind` is the reason's
 * WIT name (one of the static constants), `message` explains it. */
export class PubsubError extends Error {
  /** A topic is 1 to 256 bytes of UTF-8; this one is empty. */
  static EMPTY_TOPIC = 'empty-topic';
  /** The topic is longer than 256 bytes. */
  static TOPIC_TOO_LONG = 'topic-too-long';
  /** The connection has as many subscriptions as its tenant allows. */
  static TOO_MANY_SUBSCRIPTIONS = 'too-many-subscriptions';
  /** The tenant published more messages this second than it may. */
  static RATE_EXCEEDED = 'rate-exceeded';
  /** No open connection of this tenant has that id (`sendTo`). */
  static UNKNOWN_CONNECTION = 'unknown-connection';
  /** The connection is not open (in `verifyClient`, or after 'close'). */
  static CLOSED = 'closed';

  constructor(kind) {
    super(PUBSUB_ERRORS[kind] ?? String(kind));
    this.name = 'PubsubError';
    this.kind = kind;
  }
}

/** The host's pub/sub import, given by './wsbox-pubsub.js'. */
let pubsubHost = null;

/** Called by './wsbox-pubsub.js' with the host's `pubsub` interface. */
export function usePubsub(host) {
  pubsubHost = host;
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
    const message = toMessage(data, options || {});
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

  // ---- pub/sub (import './wsbox-pubsub.js' to use these) ----

  /** Subscribe this connection to a topic of its tenant: messages published to it
   * reach the peer straight from the host. Subscribing again changes nothing;
   * subscriptions end when the connection closes. Throws a PubsubError. */
  subscribe(topic) {
    this._pubsub((host, conn) => host.subscribe(conn, topic));
  }

  /** Unsubscribe from a topic: true if the connection was subscribed. Throws a PubsubError. */
  unsubscribe(topic) {
    return this._pubsub((host, conn) => host.unsubscribe(conn, topic));
  }

  /** Publish `data` (as `send` takes it, `options.binary` too) to every subscriber of a
   * topic of this tenant: this connection too if it subscribes (after this event's own
   * sends), unless `options.excludeSelf`. Returns a Published. Counts against the
   * tenant's publish rate: over it, throws a PubsubError of kind 'rate-exceeded'. */
  publish(topic, data, options = {}) {
    const message = toMessage(data, options);
    const report = this._pubsub((host, conn) =>
      host.publishWithBrokerReport(conn, topic, message, { excludeSelf: Boolean(options.excludeSelf) }));
    const brokerError = report.brokerError ?? undefined;
    return {
      delivered: report.here.delivered,
      skipped: report.here.skipped,
      brokerError,
      brokerErrorMessage: brokerError === undefined ? undefined : BROKER_ERRORS[brokerError] ?? String(brokerError),
    };
  }

  /** How many connections of this tenant subscribe to a topic, on this server.
   * Throws a PubsubError. */
  subscriberCount(topic) {
    return this._pubsub((host, conn) => host.subscriberCount(conn, topic));
  }

  /** Send `data` to one connection of this tenant by its id (`request.connectionId`,
   * a bigint; a number is taken too), without calling its handler. False when it was
   * skipped as a slow consumer (or, with a broker, could not reach another node's
   * connection). Counts against the publish rate. Throws a PubsubError
   * ('unknown-connection' when no open connection of the tenant has that id). */
  sendTo(connectionId, data, options = {}) {
    const message = toMessage(data, options);
    return this._pubsub((host, conn) => host.sendTo(conn, BigInt(connectionId), message));
  }

  /** `call(host, conn)`, its refusal as a PubsubError. */
  _pubsub(call) {
    if (!pubsubHost) {
      throw new Error("pub/sub is not in this component: import './wsbox-pubsub.js' in the handler "
        + 'and build it against the world `websocket-pubsub-handler` (or `websocket-host`)');
    }
    if (!this._conn) throw new PubsubError(PubsubError.CLOSED);
    try {
      return call(pubsubHost, this._conn);
    } catch (e) {
      // The bindings throw the WIT error (a string enum) as `payload`.
      const kind = e && Object.prototype.hasOwnProperty.call(e, 'payload') ? e.payload : e;
      if (typeof kind === 'string' && kind in PUBSUB_ERRORS) throw new PubsubError(kind);
      throw e;
    }
  }
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
