// The host's pub/sub for wsbox.js handlers. Import it once in a handler that
// uses `ws.subscribe`, `ws.publish`, ... and build against a world that
// imports `pubsub` (`websocket-pubsub-handler` or `websocket-host`):
//
//   import { WebSocketServer, PubsubError } from './wsbox.js';
//   import './wsbox-pubsub.js';
//
// It is a module of its own because componentize-js refuses an import that
// the target world lacks: handlers without pub/sub (wsbox.js alone) keep
// building against `websocket-handler` and `websocket-batch-handler`.
// It also re-exports PubsubError, so `import { PubsubError } from
// './wsbox-pubsub.js'` does both.
import * as host from 'wsbox:websocket/pubsub@0.2.3';
import { usePubsub } from './wsbox.js';

export { PubsubError } from './wsbox.js';

usePubsub(host);
