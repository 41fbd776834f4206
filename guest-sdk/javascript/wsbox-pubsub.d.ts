// Type declarations for wsbox-pubsub.js: importing it gives wsbox.js's
// WebSocket the host's pub/sub (`ws.subscribe`, `ws.publish`, ...).
export { PubsubError } from './wsbox.js';
