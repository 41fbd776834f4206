// The echo example in Go: the same behaviour as examples/echo (Rust),
// checked by the same conformance suite (tests/polyglot.rs).
package app

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"wit_component/wsbox"
)

type Echo struct {
	echoed int
	hooks  bool
}

func init() { wsbox.Register(func() any { return &Echo{} }) }

// echoState is what survives a hibernation (on a route with hibernate_after).
type echoState struct {
	Echoed int  `json:"echoed"`
	Hooks  bool `json:"hooks"`
}

func (e *Echo) SaveState() ([]byte, bool) {
	b, err := json.Marshal(echoState{Echoed: e.echoed, Hooks: e.hooks})
	return b, err == nil
}

func (e *Echo) LoadState(ws *wsbox.Ws, state []byte) error {
	var s echoState
	if err := json.Unmarshal(state, &s); err != nil {
		return err
	}
	e.echoed, e.hooks = s.Echoed, s.Hooks
	return nil
}

func (e *Echo) Prepare(r *wsbox.Request) *wsbox.Reject {
	if token, ok := r.QueryArg("token"); ok && token != "letmein" {
		return &wsbox.Reject{Status: 401, Reason: "bad token", Headers: map[string]string{"www-authenticate": "Bearer"}}
	}
	return nil
}

func (e *Echo) SelectSubprotocol(r *wsbox.Request) string {
	for _, p := range r.Subprotocols {
		if p == "echo.v1" {
			return p
		}
	}
	return ""
}

func (e *Echo) Open(ws *wsbox.Ws) {
	r := ws.Request()
	if len(r.Args) == 0 && len(r.Kwargs) == 0 {
		return
	}
	named := make([]string, 0, len(r.KwargNames))
	for _, k := range r.KwargNames {
		named = append(named, k+": "+r.Kwargs[k])
	}
	ws.WriteText(fmt.Sprintf("hello from wsbox echo: args=[%s] kwargs={%s}", strings.Join(r.Args, ", "), strings.Join(named, ", ")))
}

func (e *Echo) OnMessage(ws *wsbox.Ws, data []byte, text bool) {
	if text && strings.HasPrefix(string(data), "wsbox:") {
		e.command(ws, string(data[len("wsbox:"):]))
		return
	}
	var err error
	if text {
		err = ws.WriteText(string(data))
	} else {
		err = ws.WriteBinary(data)
	}
	if err == nil {
		e.echoed++
	}
}

func (e *Echo) OnPing(ws *wsbox.Ws, data []byte) {
	if e.hooks {
		ws.WriteText("on_ping: " + string(data))
	}
}

func (e *Echo) OnPong(ws *wsbox.Ws, data []byte) {
	if e.hooks {
		ws.WriteText("on_pong: " + string(data))
	}
}

func (e *Echo) OnClose(ws *wsbox.Ws, code int, reason string) {
	c := "none"
	if code >= 0 {
		c = strconv.Itoa(code)
	}
	wsbox.Log(fmt.Sprintf("echo closed: code=%s reason=%s echoed=%d messages", c, reason, e.echoed))
}

func (e *Echo) command(ws *wsbox.Ws, cmd string) {
	name, rest, _ := strings.Cut(cmd, " ")
	switch name {
	case "json":
		ws.WriteJSON(map[string]any{"echo": "json", "n": []int{1, 2}})
	case "close":
		code, reason, _ := strings.Cut(rest, " ")
		n, _ := strconv.Atoi(code)
		ws.Close(n, reason)
	case "hooks":
		e.hooks = true
		ws.WriteText("hooks on")
	case "count":
		ws.WriteText("echoed " + strconv.Itoa(e.echoed))
	case "ping":
		ws.Ping([]byte(rest))
	case "write-after-close":
		ws.Close(4001, "closing")
		if ws.WriteText("too late") == wsbox.ErrClosed {
			wsbox.Log("write after close " + rest + ": closed")
		}
	case "trap":
		panic("trap requested")
	default:
		ws.WriteText("unknown command: " + name)
	}
}
