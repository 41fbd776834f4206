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
