// Package wsbox: wsbox handlers in Go, over the bindings `wit-bindgen go`
// generates (guest-sdk/go/bindings).
//
// A handler is any type with some of the optional methods below (Prepare,
// SelectSubprotocol, Open, OnMessage, OnPing, OnPong, OnClose). Put it in
// package `app` of the build (see examples/echo-go) and register a
// constructor in init:
//
//	func init() { wsbox.Register(func() any { return &Echo{} }) }
//
// The host makes one instance per connection, so one handler value lives
// per connection.
//
// Pub/sub (topics and direct messages between the connections of a
// tenant, the host doing the fan-out) is on Ws: Subscribe, Publish,
// PublishToOthers, SubscriberCount, SendTo, ... (pubsub.go; see
// examples/chat-go).
//
// Hibernation: a handler that implements StateSaver (and StateLoader) may
// hibernate on a route with `hibernate_after`. When the connection has
// been idle that long, SaveState gives the handler's state as bytes (ok
// false keeps it awake); the instance is dropped. The next message wakes
// a fresh instance: the SDK makes a new handler with the registered
// constructor, calls LoadState with those bytes (Open is not called
// again), then delivers the message. JSON is the easy choice:
//
//	func (e *Echo) SaveState() ([]byte, bool) { b, err := json.Marshal(e); return b, err == nil }
//	func (e *Echo) LoadState(ws *wsbox.Ws, state []byte) error { return json.Unmarshal(state, e) }
//
// Garbage collection: the SDK turns Go's automatic GC off
// (debug.SetGCPercent(-1)) and collects itself between events (and between
// the messages of a batch) when the heap allocated since the last
// collection exceeds what was live after it, and at least 4 MiB: GOGC=100's
// pacing. It reads the heap every 16 events, or sooner once 256 KiB of
// messages came in. Why: the host passes a message (any list or string)
// into the instance through the guest's cabi_realloc, whose allocation
// could otherwise start or finish a collection, and a collection reads the
// clock, an import call that the component model forbids there (the
// instance trapped; 1 MiB messages did). So garbage made within one event
// waits for its end: a handler that allocates a lot in one event may call
// runtime.GC() itself (in a handler, it is safe). Don't turn the GC back on.
package wsbox

import (
	"encoding/json"
	"errors"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"

	witTypes "go.bytecodealliance.org/pkg/wit/types"
	conn "wit_component/wsbox_websocket_connection"
	"wit_component/wsbox_websocket_logging"
	types "wit_component/wsbox_websocket_types"
)

// ErrClosed is returned by writes on a closing or closed connection
// (Tornado's WebSocketClosedError).
var ErrClosed = errors.New("wsbox: the connection is closed")

// Request is the opening handshake.
type Request struct {
	ConnectionID uint64
	Path, Query  string
	// Headers by lower-case name (the last one of a name wins).
	Headers map[string]string
	// Args are the route's unnamed captures, Kwargs its named ones
	// (KwargNames in the route's order).
	Args       []string
	Kwargs     map[string]string
	KwargNames []string
	// Subprotocols offered by the client, in its order of preference.
	Subprotocols []string
	// Origin is "" when the request had none.
	Origin string
}

// QueryArg returns a query parameter (no percent-decoding).
func (r *Request) QueryArg(name string) (string, bool) {
	for _, part := range strings.Split(r.Query, "&") {
		k, v, _ := strings.Cut(part, "=")
		if k == name && part != "" {
			return v, true
		}
	}
	return "", false
}

// Reject refuses an upgrade: return one from Prepare.
type Reject struct {
	Status  uint16
	Reason  string
	Headers map[string]string
}

// The optional methods of a handler.
type (
	Preparer            interface{ Prepare(*Request) *Reject }
	SubprotocolSelector interface {
		SelectSubprotocol(*Request) string
	}
	Opener         interface{ Open(*Ws) }
	MessageHandler interface {
		OnMessage(ws *Ws, data []byte, text bool)
	}
	PingHandler  interface{ OnPing(ws *Ws, data []byte) }
	PongHandler  interface{ OnPong(ws *Ws, data []byte) }
	CloseHandler interface {
		// code is -1 when the close frame carried none.
		OnClose(ws *Ws, code int, reason string)
	}
	// StateSaver lets a connection hibernate: SaveState returns the
	// handler's state (at most the route's max_attachment bytes), or ok
	// false to stay awake for now.
	StateSaver interface {
		SaveState() (state []byte, ok bool)
	}
	// StateLoader restores what SaveState gave on a fresh handler, before
	// the message (or close) that woke the connection. An error traps the
	// instance (the connection closes with 1011).
	StateLoader interface {
		LoadState(ws *Ws, state []byte) error
	}
)

// Ws is the connection during one event.
type Ws struct {
	c *conn.Connection
}

var (
	newHandler func() any
	handler    any
	request    *Request
	closing    bool
)

// Register names the constructor of the handler, one per connection.
func Register(constructor func() any) { newHandler = constructor }

func current() any {
	if handler == nil {
		if newHandler == nil {
			panic("wsbox: no handler registered: call wsbox.Register in an init function of package app")
		}
		handler = newHandler()
	}
	return handler
}

// Request returns the opening handshake.
func (w *Ws) Request() *Request {
	if request == nil {
		request = convert(w.c.Request())
	}
	return request
}

// ID is the connection's host-wide id.
func (w *Ws) ID() uint64 { return w.c.Id() }

func (w *Ws) write(m types.Message) error {
	if closing {
		return ErrClosed
	}
	if w.c.WriteMessage(m).IsErr() {
		closing = true
		return ErrClosed
	}
	return nil
}

// WriteText sends a text message.
func (w *Ws) WriteText(text string) error { return w.write(types.MakeMessageText(text)) }

// WriteBinary sends a binary message.
func (w *Ws) WriteBinary(data []byte) error { return w.write(types.MakeMessageBinary(data)) }

// WriteJSON sends v as a JSON text message.
func (w *Ws) WriteJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return w.WriteText(string(b))
}

// Ping sends a ping (at most 125 bytes); the answer arrives in OnPong.
func (w *Ws) Ping(data []byte) error {
	if closing {
		return ErrClosed
	}
	r := w.c.Ping(data)
	if r.IsErr() {
		if r.Err() == conn.PingErrorClosed {
			return ErrClosed
		}
		return errors.New("wsbox: a ping payload is at most 125 bytes")
	}
	return nil
}

// Close starts the closing handshake; code < 0 sends none.
func (w *Ws) Close(code int, reason string) error {
	if closing {
		return nil
	}
	c := witTypes.None[uint16]()
	r := witTypes.None[string]()
	if code >= 0 {
		c = witTypes.Some(uint16(code))
		r = witTypes.Some(reason)
	}
	if w.c.Close(c, r).IsErr() {
		return errors.New("wsbox: invalid close code or reason")
	}
	closing = true
	return nil
}

// Log writes a line to the host's log at level Info.
func Log(message string) { LogAt(LevelInfo, message) }

// LogLevel is the severity of a log line.
type LogLevel uint8

// The log levels, as the WIT's `log-level`.
const (
	LevelTrace LogLevel = iota
	LevelDebug
	LevelInfo
	LevelWarn
	LevelError
)

// LogAt writes a line to the host's log at the given level.
func LogAt(level LogLevel, message string) {
	wsbox_websocket_logging.Log(types.LogLevel(level), message)
}

func convert(raw types.UpgradeRequest) *Request {
	r := &Request{
		ConnectionID: raw.ConnectionId,
		Path:         raw.Path,
		Query:        raw.Query,
		Headers:      map[string]string{},
		Args:         raw.PositionalCaptures,
		Kwargs:       map[string]string{},
		Subprotocols: raw.Subprotocols,
		Origin:       raw.Origin.SomeOr(""),
	}
	for _, h := range raw.Headers {
		r.Headers[h.Name] = string(h.Value)
	}
	for _, c := range raw.NamedCaptures {
		r.Kwargs[c.Name] = c.Value
		r.KwargNames = append(r.KwargNames, c.Name)
	}
	return r
}

// ---- garbage collection (see the package comment) ----

const (
	// gcMinimum is the least heap growth that makes a collection, as Go's
	// own 4 MiB minimum heap.
	gcMinimum = 4 << 20
	// Reading the heap's size costs about as much as echoing a small
	// message, so it is read once this many events, or this many bytes of
	// messages, have come in since the last reading.
	gcCheckEvents = 16
	gcCheckBytes  = 256 << 10
)

var (
	// Heap bytes allocated so far, and live after the last collection.
	gcSamples      = []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/heap/live:bytes"}}
	allocsAtLastGC uint64
	// Events and message bytes since the heap was last read.
	gcEvents, gcBytes int
)

func init() { debug.SetGCPercent(-1) }

// collect ends an event that brought `in` bytes into the instance: it
// runs a collection when the heap allocated since the last one exceeds
// max(live heap after it, gcMinimum). Only where imports are allowed: in
// an export's body, never from cabi_realloc.
func collect(in int) {
	gcEvents++
	gcBytes += in
	if gcEvents < gcCheckEvents && gcBytes < gcCheckBytes {
		return
	}
	gcEvents, gcBytes = 0, 0
	metrics.Read(gcSamples)
	if gcSamples[0].Value.Kind() != metrics.KindUint64 || gcSamples[1].Value.Kind() != metrics.KindUint64 {
		// A runtime without these metrics: collect every time.
		runtime.GC()
		return
	}
	allocated := gcSamples[0].Value.Uint64() - allocsAtLastGC
	if allocated < max(gcSamples[1].Value.Uint64(), gcMinimum) {
		return
	}
	runtime.GC()
	metrics.Read(gcSamples[:1])
	allocsAtLastGC = gcSamples[0].Value.Uint64()
}

// ---- called by the export packages ----

// Upgrade decides the handshake.
func Upgrade(raw types.UpgradeRequest) types.UpgradeDecision {
	decision := upgrade(raw)
	collect(0)
	return decision
}

func upgrade(raw types.UpgradeRequest) types.UpgradeDecision {
	request = convert(raw)
	h := current()
	if p, ok := h.(Preparer); ok {
		if rej := p.Prepare(request); rej != nil {
			var headers []types.Header
			for k, v := range rej.Headers {
				headers = append(headers, types.Header{Name: strings.ToLower(k), Value: []byte(v)})
			}
			return types.MakeUpgradeDecisionReject(types.Reject{Status: rej.Status, Reason: rej.Reason, Headers: headers})
		}
	}
	sub := witTypes.None[string]()
	if s, ok := h.(SubprotocolSelector); ok {
		if chosen := s.SelectSubprotocol(request); chosen != "" {
			sub = witTypes.Some(chosen)
		}
	}
	return types.MakeUpgradeDecisionAccept(types.Accept{Subprotocol: sub, Origin: types.OriginDecisionHostVerdict})
}

// with runs one event, which brought `in` bytes, on the handler.
func with(c *conn.Connection, in int, f func(h any, ws *Ws)) {
	// The lent connection must be dropped before the export returns.
	defer c.Drop()
	f(current(), &Ws{c})
	collect(in)
}

// OnOpen: the connection is open.
func OnOpen(c *conn.Connection, _ types.OpenInfo) {
	with(c, 0, func(h any, ws *Ws) {
		ws.Request()
		if o, ok := h.(Opener); ok {
			o.Open(ws)
		}
	})
}

func deliver(h any, ws *Ws, data []byte, text bool) {
	if m, ok := h.(MessageHandler); ok && !closing {
		m.OnMessage(ws, data, text)
	}
}

// OnMessage: one message.
func OnMessage(c *conn.Connection, m types.Message) {
	text := m.Tag() == types.MessageText
	var data []byte
	if text {
		data = []byte(m.Text())
	} else {
		data = m.Binary()
	}
	with(c, len(data), func(h any, ws *Ws) { deliver(h, ws, data, text) })
}

// OnMessages: a batch (each message counts as an event, the batch as one more).
func OnMessages(c *conn.Connection, batch types.MessageBatch) {
	with(c, 0, func(h any, ws *Ws) {
		at := uint32(0)
		for _, span := range batch.Spans {
			deliver(h, ws, batch.Data[at:at+span.Len], span.Kind == types.MessageKindText)
			at += span.Len
			collect(int(span.Len))
		}
	})
}

// OnPing: a ping arrived.
func OnPing(c *conn.Connection, data []byte) {
	with(c, len(data), func(h any, ws *Ws) {
		if p, ok := h.(PingHandler); ok {
			p.OnPing(ws, data)
		}
	})
}

// OnPong: a pong arrived.
func OnPong(c *conn.Connection, data []byte) {
	with(c, len(data), func(h any, ws *Ws) {
		if p, ok := h.(PongHandler); ok {
			p.OnPong(ws, data)
		}
	})
}

// OnClose: the connection closed.
func OnClose(c *conn.Connection, info types.CloseInfo) {
	with(c, len(info.Reason), func(h any, ws *Ws) {
		closing = true
		code := -1
		if info.Code.IsSome() {
			code = int(info.Code.Some())
		}
		if cl, ok := h.(CloseHandler); ok {
			cl.OnClose(ws, code, info.Reason)
		}
	})
}

// OnHibernate: the connection has been idle for the route's
// hibernate_after. The state to keep, or ok false to stay awake.
func OnHibernate(c *conn.Connection, maxAttachment uint32) (state []byte, ok bool) {
	defer c.Drop()
	state, ok = hibernate()
	collect(0)
	return state, ok
}

func hibernate() (state []byte, ok bool) {
	if closing {
		return nil, false
	}
	s, isSaver := current().(StateSaver)
	if !isSaver {
		return nil, false
	}
	state, ok = s.SaveState()
	if state == nil {
		state = []byte{}
	}
	return state, ok
}

// OnHibernateError: the state was over max_attachment; the handler stays awake.
func OnHibernateError(c *conn.Connection, size uint32) {
	defer c.Drop()
	Log("hibernation refused: the state is too large (" + strconv.Itoa(int(size)) + " bytes)")
	collect(0)
}

// OnWake: a fresh instance for a hibernated connection.
func OnWake(c *conn.Connection, state []byte) {
	with(c, len(state), func(h any, ws *Ws) {
		if l, ok := h.(StateLoader); ok {
			if err := l.LoadState(ws, state); err != nil {
				panic("wsbox: LoadState: " + err.Error())
			}
		}
	})
}
