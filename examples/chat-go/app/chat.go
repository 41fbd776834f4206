// The chat example in Go: the behaviour of examples/chat (Rust), line for
// line, on the host's pub/sub. One room per route capture
// (`/chat/<room>`); the handler never loops over the room's members: it
// publishes to the room's topic and the host delivers. Checked by the
// chat suite (tests/polyglot_chat.rs).
//
// Every line the client sends is a chat message to the room, except:
//
//   - `/nick <name>`: change nickname (1 to 24 of `A-Z a-z 0-9 _ -`); the
//     first one can also come in the query, `/chat/lobby?nick=alice`;
//   - `/msg <name> <text>`: a private message to whoever goes by `<name>`
//     (in any room);
//   - `/who`: how many are in the room.
//
// What the client receives is plain text lines: `alice: hello` for a room
// message, `* alice joined lobby (2 here)` and `* alice left` for notices,
// `[private] alice: psst` and `[to bob] psst` for private messages, and
// `! ...` for errors.
package app

import (
	"errors"
	"fmt"
	"strings"

	"wit_component/wsbox"
)

// Chat is the per-connection state: the room and the nickname.
type Chat struct {
	room, nick string
}

func init() { wsbox.Register(func() any { return &Chat{} }) }

// roomTopic is the topic of a room's messages.
func roomTopic(room string) string { return "room:" + room }

// userTopic is the topic a user's private messages go to.
func userTopic(nick string) string { return "user:" + nick }

func validNick(nick string) bool {
	if len(nick) < 1 || len(nick) > 24 {
		return false
	}
	for i := 0; i < len(nick); i++ {
		b := nick[i]
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '_' || b == '-') {
			return false
		}
	}
	return true
}

func (c *Chat) notice(ws *wsbox.Ws, text string) {
	if _, err := ws.Publish(roomTopic(c.room), "* "+text); err != nil {
		ws.WriteText("! notice not sent: " + err.Error())
	}
}

func (c *Chat) rename(ws *wsbox.Ws, nick string) {
	if !validNick(nick) {
		ws.WriteText("! a nickname is 1 to 24 letters, digits, _ or -")
		return
	}
	if err := ws.Subscribe(userTopic(nick)); err != nil {
		ws.WriteText("! cannot take that nickname: " + err.Error())
		return
	}
	// Renaming to the same name keeps its private topic.
	if c.nick != nick {
		ws.Unsubscribe(userTopic(c.nick))
	}
	old := c.nick
	c.nick = nick
	c.notice(ws, old+" is now known as "+nick)
}

func (c *Chat) private(ws *wsbox.Ws, to, text string) {
	if !validNick(to) || text == "" {
		ws.WriteText("! usage: /msg <name> <text>")
		return
	}
	p, err := ws.PublishToOthers(userTopic(to), "[private] "+c.nick+": "+text)
	switch {
	case err != nil:
		ws.WriteText("! not sent: " + err.Error())
	case p.Delivered > 0:
		ws.WriteText("[to " + to + "] " + text)
	default:
		ws.WriteText("! nobody here goes by " + to)
	}
}

func (c *Chat) say(ws *wsbox.Ws, text string) {
	p, err := ws.Publish(roomTopic(c.room), c.nick+": "+text)
	switch {
	case errors.Is(err, wsbox.ErrRateExceeded):
		ws.WriteText("! slow down: the server is over its message rate")
	case err != nil:
		ws.WriteText("! not sent: " + err.Error())
	case p.BrokerError != nil:
		// Several servers share the room through a broker: say when the
		// others' users did not get it.
		ws.WriteText("! only this server's users got it: " + p.BrokerError.Error())
	}
}

func (c *Chat) Open(ws *wsbox.Ws) {
	r := ws.Request()
	c.room = "lobby"
	if room, ok := r.Kwargs["room"]; ok {
		c.room = room
	}
	if nick, ok := r.QueryArg("nick"); ok && validNick(nick) {
		c.nick = nick
	} else {
		c.nick = fmt.Sprintf("guest%d", ws.ID())
	}
	err := ws.Subscribe(roomTopic(c.room))
	if err == nil {
		err = ws.Subscribe(userTopic(c.nick))
	}
	if err != nil {
		wsbox.LogAt(wsbox.LevelWarn, fmt.Sprintf("chat: cannot join %s: %v", c.room, err))
		ws.Close(1011, "cannot join the room")
		return
	}
	here, err := ws.SubscriberCount(roomTopic(c.room))
	if err != nil {
		here = 1
	}
	ws.WriteText(fmt.Sprintf("welcome to %s, %s: /nick <name>, /msg <name> <text>, /who", c.room, c.nick))
	c.notice(ws, fmt.Sprintf("%s joined %s (%d here)", c.nick, c.room, here))
}

func (c *Chat) OnMessage(ws *wsbox.Ws, data []byte, text bool) {
	if !text {
		ws.WriteText("! binary messages are not chat")
		return
	}
	line := strings.TrimSpace(string(data))
	if nick, ok := strings.CutPrefix(line, "/nick "); ok {
		c.rename(ws, strings.TrimSpace(nick))
	} else if rest, ok := strings.CutPrefix(line, "/msg "); ok {
		rest = strings.TrimSpace(rest)
		to, body, _ := strings.Cut(rest, " ")
		c.private(ws, to, strings.TrimSpace(body))
	} else if line == "/who" {
		here, err := ws.SubscriberCount(roomTopic(c.room))
		if err != nil {
			here = 0
		}
		ws.WriteText(fmt.Sprintf("* %d here in %s", here, c.room))
	} else if line != "" {
		c.say(ws, line)
	}
}

func (c *Chat) OnClose(ws *wsbox.Ws, code int, reason string) {
	if c.room != "" {
		// Subscriptions have ended: this reaches the others only.
		c.notice(ws, c.nick+" left")
	}
}
