// __NAME__: a wsbox WebSocket handler in Go. The host makes one instance
// per connection; wsbox.Register's function makes its handler value.
//
// `wsbox build` builds __NAME__.wasm; `wsbox serve --config wsbox.toml`
// serves it at /__NAME__ and /__NAME__/<room>.
package app

import (
	"fmt"
	"strings"

	"wit_component/wsbox"
)

type Echo struct{}

func init() { wsbox.Register(func() any { return &Echo{} }) }

// Open greets with the route's captures: /__NAME__/lobby matches
// /__NAME__/(?P<room>[^/]+) in wsbox.toml, so Kwargs["room"] is "lobby".
func (e *Echo) Open(ws *wsbox.Ws) {
	r := ws.Request()
	if len(r.Args) == 0 && len(r.Kwargs) == 0 {
		return
	}
	named := make([]string, 0, len(r.KwargNames))
	for _, k := range r.KwargNames {
		named = append(named, k+": "+r.Kwargs[k])
	}
	ws.WriteText(fmt.Sprintf("hello from __NAME__: args=[%s] kwargs={%s}", strings.Join(r.Args, ", "), strings.Join(named, ", ")))
}

// OnMessage echoes text as text and binary as binary.
func (e *Echo) OnMessage(ws *wsbox.Ws, data []byte, text bool) {
	if text {
		ws.WriteText(string(data))
	} else {
		ws.WriteBinary(data)
	}
}
