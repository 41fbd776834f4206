// Type declarations for wsbox.js: wsbox handlers in the style of `ws`.

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';

/** Write a line to the host's log, tagged with the connection and route. */
export function log(message: unknown, level?: LogLevel): void;

/** The opening handshake. */
export class UpgradeRequest {
  readonly connectionId: bigint;
  /** Path and query, as in `IncomingMessage.url`. */
  readonly url: string;
  readonly path: string;
  readonly query: string;
  /** Headers by lower-case name (the last one of a name wins). */
  readonly headers: Record<string, string>;
  /** The route's unnamed captures, in order. */
  readonly pathArgs: string[];
  /** The route's named captures. */
  readonly pathKwargs: Record<string, string>;
  readonly subprotocols: string[];
  readonly origin: string | undefined;
  /** The host's origin verdict (same host as `Host` by default). */
  readonly originAllowed: boolean;
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** The query's parameters (no percent-decoding). */
  readonly searchParams: Map<string, string>;
}

export interface WebSocketEvents {
  /** Text arrives as a string, binary as a Uint8Array. */
  message: (data: string | Uint8Array, isBinary: boolean) => void;
  /** `code` is 1005 when the close frame carried none. */
  close: (code: number, reason: string) => void;
  ping: (data: Uint8Array) => void;
  pong: (data: Uint8Array) => void;
}

/** The WIT name of a pub/sub refusal. */
export type PubsubErrorKind =
  | 'empty-topic'
  | 'topic-too-long'
  | 'too-many-subscriptions'
  | 'rate-exceeded'
  | 'unknown-connection'
  | 'closed';

/** The host refused a pub/sub call; nothing was done. */
export class PubsubError extends Error {
  /** A topic is 1 to 256 bytes of UTF-8; this one is empty. */
  static readonly EMPTY_TOPIC: 'empty-topic';
  /** The topic is longer than 256 bytes. */
  static readonly TOPIC_TOO_LONG: 'topic-too-long';
  /** The connection has as many subscriptions as its tenant allows. */
  static readonly TOO_MANY_SUBSCRIPTIONS: 'too-many-subscriptions';
  /** The tenant published more messages this second than it may. */
  static readonly RATE_EXCEEDED: 'rate-exceeded';
  /** No open connection of this tenant has that id (`sendTo`). */
  static readonly UNKNOWN_CONNECTION: 'unknown-connection';
  /** The connection is not open. */
  static readonly CLOSED: 'closed';
  constructor(kind: PubsubErrorKind);
  readonly kind: PubsubErrorKind;
}

/** Why a published message did not go to the other nodes (with a broker). */
export type BrokerError = 'unavailable' | 'backlog';

/** What `publish` did, counting the subscribers on this server. */
export interface Published {
  /** Subscribers the message was queued on. */
  delivered: number;
  /** Subscribers skipped as slow consumers (over their route's `max_backpressure`). */
  skipped: number;
  /** With several nodes sharing topics through a broker: why the message did not go
   * to the other nodes; undefined when it went (always on a single node). */
  brokerError: BrokerError | undefined;
  /** `brokerError` explained, for a user. */
  brokerErrorMessage: string | undefined;
}

export interface PublishOptions {
  /** Do not deliver to this connection even if it subscribes to the topic. */
  excludeSelf?: boolean;
  /** As `send`'s option: a string as binary, or bytes as text with `false`. */
  binary?: boolean;
}

/** Called by `wsbox-pubsub.js` with the host's pubsub interface. */
export function usePubsub(host: object): void;

/** One connection, like `ws`'s WebSocket. */
export class WebSocket {
  static readonly CONNECTING: 0;
  static readonly OPEN: 1;
  static readonly CLOSING: 2;
  static readonly CLOSED: 3;
  readonly readyState: 0 | 1 | 2 | 3;
  readonly request: UpgradeRequest;
  /** The selected subprotocol, or ''. */
  readonly protocol: string;
  readonly extensions: string;
  /** Per-connection state: saved as JSON while the connection hibernates. */
  data: Record<string, unknown>;
  /** True on a WebSocket made again after a hibernation ('connection' is emitted again). */
  readonly resumed: boolean;
  on<E extends keyof WebSocketEvents>(event: E, listener: WebSocketEvents[E]): this;
  once<E extends keyof WebSocketEvents>(event: E, listener: WebSocketEvents[E]): this;
  off<E extends keyof WebSocketEvents>(event: E, listener: WebSocketEvents[E]): this;
  addEventListener<E extends keyof WebSocketEvents>(event: E, listener: WebSocketEvents[E]): this;
  /** Queue a message; on a closing connection `cb` gets an Error (without `cb`, it throws). */
  send(data: string | Uint8Array | ArrayBuffer, options?: { binary?: boolean }, cb?: (err: Error | null) => void): void;
  send(data: string | Uint8Array | ArrayBuffer, cb: (err: Error | null) => void): void;
  /** At most 125 bytes; the answer arrives as 'pong'. */
  ping(data?: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
  terminate(): void;
  setNoDelay(enabled?: boolean): void;

  // Pub/sub: import './wsbox-pubsub.js' and build against `websocket-pubsub-handler`
  // (or `websocket-host`); without it these throw an Error saying so.
  /** Subscribe this connection to a topic: published messages reach the peer from the host. */
  subscribe(topic: string): void;
  /** True if the connection was subscribed. */
  unsubscribe(topic: string): boolean;
  /** Publish to every subscriber of a topic of this tenant (this connection too unless `excludeSelf`). */
  publish(topic: string, data: string | Uint8Array | ArrayBuffer, options?: PublishOptions): Published;
  /** How many connections of this tenant subscribe to the topic, on this server. */
  subscriberCount(topic: string): number;
  /** Send to one connection of this tenant by id; false when skipped as a slow consumer. */
  sendTo(connectionId: bigint | number, data: string | Uint8Array | ArrayBuffer, options?: { binary?: boolean }): boolean;
}

export interface VerifyClientInfo {
  origin: string | undefined;
  req: UpgradeRequest;
  originAllowed: boolean;
}

export interface ServerOptions {
  /** Call `done(true)` to accept, `done(false, status, message, headers)` to refuse. Synchronous. */
  verifyClient?: (
    info: VerifyClientInfo,
    done: (ok: boolean, status?: number, message?: string, headers?: Record<string, string>) => void,
  ) => void;
  /** Pick a subprotocol among those offered, or return false. */
  handleProtocols?: (protocols: Set<string>, request: UpgradeRequest) => string | false;
  /** Extra headers for the 101 response. */
  headers?: (request: UpgradeRequest) => Record<string, string>;
  /** Let an idle connection hibernate on a route with `hibernate_after` (`ws.data` is kept). */
  hibernate?: boolean;
  /** Asked before each hibernation: false keeps the connection awake for now. */
  mayHibernate?: (ws: WebSocket) => boolean;
}

/** The component's exports, for `export const { handler, batchHandler, hibernation } = wss.exports();`
 * (`hibernation` for the world `websocket-host`). */
export interface Exports {
  handler: object;
  batchHandler: object;
  hibernation: object;
}

export class WebSocketServer {
  constructor(options?: ServerOptions);
  readonly clients: Map<bigint, WebSocket>;
  on(event: 'connection', listener: (ws: WebSocket, request: UpgradeRequest) => void): this;
  exports(): Exports;
}
