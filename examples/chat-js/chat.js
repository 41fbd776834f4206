// The chat demo in JavaScript: the same behaviour as the bundled Rust chat
// (examples/chat/src/lib.rs), checked by the same suite
// (tests/polyglot_chat.rs). One room per route capture (`/chat/<room>`), on
// the host's pub/sub: the handler never loops over the room's members, it
// publishes to the room's topic and the host delivers.
//
// Every line the client sends is a chat message to the room, except:
//
// - `/nick <name>`: change nickname (1 to 24 of `A-Z a-z 0-9 _ -`); the
//   first one can also come in the query, `/chat/lobby?nick=alice`;
// - `/msg <name> <text>`: a private message to whoever goes by `<name>`
//   (in any room);
// - `/who`: how many are in the room.
//
// What the client receives is plain text lines: `alice: hello` for a room
// message, `* alice joined lobby (2 here)` and `* alice left` for notices,
// `[private] alice: psst` and `[to bob] psst` for private messages, and
// `! ...` for errors.
import { WebSocketServer, log } from './wsbox.js';
import { PubsubError } from './wsbox-pubsub.js';

/** The topic of a room's messages. */
const roomTopic = (room) => `room:${room}`;

/** The topic a user's private messages go to. */
const userTopic = (nick) => `user:${nick}`;

const validNick = (nick) => /^[A-Za-z0-9_-]{1,24}$/.test(nick);

/** For sends whose failure (the connection is closing) is of no interest. */
const ignoreClosed = () => {};

const wss = new WebSocketServer();

wss.on('connection', (ws, request) => {
  // Per-connection state: the room and the nickname.
  let room = '';
  let nick = '';

  const tell = (line) => ws.send(line, ignoreClosed);

  const notice = (text) => {
    try {
      ws.publish(roomTopic(room), `* ${text}`);
    } catch (e) {
      if (!(e instanceof PubsubError)) throw e;
      tell(`! notice not sent: ${e.message}`);
    }
  };

  const rename = (name) => {
    if (!validNick(name)) {
      tell('! a nickname is 1 to 24 letters, digits, _ or -');
      return;
    }
    try {
      ws.subscribe(userTopic(name));
    } catch (e) {
      if (!(e instanceof PubsubError)) throw e;
      tell(`! cannot take that nickname: ${e.message}`);
      return;
    }
    // Renaming to the same name keeps its private topic.
    if (name !== nick) {
      try {
        ws.unsubscribe(userTopic(nick));
      } catch (e) {
        if (!(e instanceof PubsubError)) throw e;
      }
    }
    const old = nick;
    nick = name;
    notice(`${old} is now known as ${name}`);
  };

  const privately = (to, text) => {
    if (!validNick(to) || text === '') {
      tell('! usage: /msg <name> <text>');
      return;
    }
    let published;
    try {
      published = ws.publish(userTopic(to), `[private] ${nick}: ${text}`, { excludeSelf: true });
    } catch (e) {
      if (!(e instanceof PubsubError)) throw e;
      tell(`! not sent: ${e.message}`);
      return;
    }
    if (published.delivered > 0) tell(`[to ${to}] ${text}`);
    else tell(`! nobody here goes by ${to}`);
  };

  const say = (text) => {
    let published;
    try {
      published = ws.publish(roomTopic(room), `${nick}: ${text}`);
    } catch (e) {
      if (!(e instanceof PubsubError)) throw e;
      if (e.kind === PubsubError.RATE_EXCEEDED) tell('! slow down: the server is over its message rate');
      else tell(`! not sent: ${e.message}`);
      return;
    }
    // Several servers share the room through a broker: say when the
    // others' users did not get it.
    if (published.brokerError !== undefined) {
      tell(`! only this server's users got it: ${published.brokerErrorMessage}`);
    }
  };

  const count = (fallback) => {
    try {
      return ws.subscriberCount(roomTopic(room));
    } catch (e) {
      if (!(e instanceof PubsubError)) throw e;
      return fallback;
    }
  };

  ws.on('message', (data, isBinary) => {
    if (isBinary) {
      tell('! binary messages are not chat');
      return;
    }
    const text = data.trim();
    if (text.startsWith('/nick ')) {
      rename(text.slice('/nick '.length).trim());
    } else if (text.startsWith('/msg ')) {
      const rest = text.slice('/msg '.length).trim();
      const space = rest.indexOf(' ');
      const to = space < 0 ? rest : rest.slice(0, space);
      const body = space < 0 ? '' : rest.slice(space + 1);
      privately(to, body.trim());
    } else if (text === '/who') {
      tell(`* ${count(0)} here in ${room}`);
    } else if (text !== '') {
      say(text);
    }
  });

  ws.on('close', () => {
    if (room !== '') {
      // Subscriptions have ended: this reaches the others only.
      notice(`${nick} left`);
    }
  });

  room = request.pathKwargs.room ?? 'lobby';
  const asked = request.searchParams.get('nick');
  nick = asked !== undefined && validNick(asked) ? asked : `guest${request.connectionId}`;
  try {
    ws.subscribe(roomTopic(room));
    ws.subscribe(userTopic(nick));
  } catch (e) {
    if (!(e instanceof PubsubError)) throw e;
    log(`chat: cannot join ${room}: ${e.message}`, 'warn');
    ws.close(1011, 'cannot join the room');
    return;
  }
  const here = count(1);
  tell(`welcome to ${room}, ${nick}: /nick <name>, /msg <name> <text>, /who`);
  notice(`${nick} joined ${room} (${here} here)`);
});

// The world `websocket-pubsub-handler` exports `handler` only.
export const { handler } = wss.exports();
