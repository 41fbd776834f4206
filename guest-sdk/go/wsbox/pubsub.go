package wsbox

// Pub/sub: topics and direct messages between the connections of one
// tenant, over the host's `pubsub` interface (wit/websocket.wit). The host
// does the fan-out: a message published to a topic is framed once and
// queued on every subscriber's socket, and the subscribers' handlers are
// not called. Topics and connection ids belong to the tenant of the route
// the connection came in on.
//
//	if err := ws.Subscribe("room:lobby"); err != nil { ... }
//	p, err := ws.Publish("room:lobby", "alice: hello")
//	if errors.Is(err, wsbox.ErrRateExceeded) { ... }
//
// A connection's subscriptions end when it closes. A message published to
// a topic the publisher subscribes to reaches it after the messages it
// wrote before publishing (writes go to the host at once).

import (
	pubsub "wit_component/wsbox_websocket_pubsub"
	types "wit_component/wsbox_websocket_types"
)

// PubsubError is why a pub/sub call failed; nothing was done. Its values
// are the sentinels below, one per case of the WIT's `pubsub-error`, to
// compare with errors.Is (or ==):
//
//	if errors.Is(err, wsbox.ErrRateExceeded) { ... }
type PubsubError uint8

// The pub/sub errors, in the order of the WIT's `pubsub-error` enum.
const (
	// ErrEmptyTopic: a topic is 1 to 256 bytes of UTF-8; this one is empty.
	ErrEmptyTopic PubsubError = iota
	// ErrTopicTooLong: the topic is longer than 256 bytes.
	ErrTopicTooLong
	// ErrTooManySubscriptions: the connection already has as many
	// subscriptions as its tenant allows.
	ErrTooManySubscriptions
	// ErrRateExceeded: the tenant published more messages this second than
	// it may (a send counts as a publish).
	ErrRateExceeded
	// ErrUnknownConnection: no open connection of this tenant has that id
	// (SendTo).
	ErrUnknownConnection
	// ErrNotOpen: the calling connection is closing or closed, or not open
	// yet (Prepare cannot use pub/sub). errors.Is(ErrNotOpen, ErrClosed)
	// is true.
	ErrNotOpen
)

// Error describes the failure, in the words of the Rust SDK.
func (e PubsubError) Error() string {
	switch e {
	case ErrEmptyTopic:
		return "the topic is empty"
	case ErrTopicTooLong:
		return "the topic is longer than 256 bytes"
	case ErrTooManySubscriptions:
		return "the connection has as many subscriptions as its tenant allows"
	case ErrRateExceeded:
		return "the tenant is over its publishes per second"
	case ErrUnknownConnection:
		return "no open connection of this tenant has that id"
	case ErrNotOpen:
		return "the WebSocket connection is not open"
	}
	return "unknown pub/sub error " + e.Name()
}

// Name is the WIT name of the error, e.g. "rate-exceeded".
func (e PubsubError) Name() string {
	switch e {
	case ErrEmptyTopic:
		return "empty-topic"
	case ErrTopicTooLong:
		return "topic-too-long"
	case ErrTooManySubscriptions:
		return "too-many-subscriptions"
	case ErrRateExceeded:
		return "rate-exceeded"
	case ErrUnknownConnection:
		return "unknown-connection"
	case ErrNotOpen:
		return "closed"
	}
	return "unknown"
}

// Is makes ErrNotOpen match ErrClosed, the writes' error for the same
// condition.
func (e PubsubError) Is(target error) bool {
	return e == ErrNotOpen && target == ErrClosed
}

// BrokerError is why a published message did not go to the other nodes
// (several nodes share topics through a broker). This node's subscribers
// got it anyway; nothing is retried (at most once).
type BrokerError uint8

// The broker errors, in the order of the WIT's `broker-error` enum.
const (
	// BrokerUnavailable: the broker is unreachable; the node is
	// reconnecting to it.
	BrokerUnavailable BrokerError = iota
	// BrokerBacklog: too many messages are waiting for the broker.
	BrokerBacklog
)

// Error describes the failure, in the words of the Rust SDK.
func (e BrokerError) Error() string {
	switch e {
	case BrokerUnavailable:
		return "the pub/sub broker is unreachable: the other nodes did not get the message"
	case BrokerBacklog:
		return "too many messages wait for the pub/sub broker: the other nodes did not get the message"
	}
	return "unknown pub/sub broker error"
}

// Published is what a publish did.
type Published struct {
	// Delivered counts the subscribers on this server the message was
	// queued on.
	Delivered uint32
	// Skipped counts the subscribers skipped as slow consumers (over their
	// route's max_backpressure).
	Skipped uint32
	// BrokerError, with several nodes, says why the message did not go to
	// the other nodes; nil when it went, and always nil on a single node.
	BrokerError *BrokerError
}

func pubsubError(e pubsub.PubsubError) error { return PubsubError(e) }

// Subscribe subscribes this connection to a topic of its tenant: messages
// published to it reach the peer straight from the host, without calling
// this handler. Subscribing again changes nothing.
func (w *Ws) Subscribe(topic string) error {
	r := pubsub.Subscribe(w.c, topic)
	if r.IsErr() {
		return pubsubError(r.Err())
	}
	return nil
}

// Unsubscribe unsubscribes this connection from a topic; wasSubscribed
// says whether it was subscribed.
func (w *Ws) Unsubscribe(topic string) (wasSubscribed bool, err error) {
	r := pubsub.Unsubscribe(w.c, topic)
	if r.IsErr() {
		return false, pubsubError(r.Err())
	}
	return r.Ok(), nil
}

func (w *Ws) publish(topic string, m types.Message, excludeSelf bool) (Published, error) {
	r := pubsub.PublishWithBrokerReport(w.c, topic, m, pubsub.PublishOptions{ExcludeSelf: excludeSelf})
	if r.IsErr() {
		return Published{}, pubsubError(r.Err())
	}
	report := r.Ok()
	p := Published{Delivered: report.Here.Delivered, Skipped: report.Here.Skipped}
	if report.BrokerError.IsSome() {
		e := BrokerError(report.BrokerError.Some())
		p.BrokerError = &e
	}
	return p, nil
}

// Publish sends a text message to every subscriber of a topic of this
// tenant, this connection included if it subscribes. The host frames it
// once and queues it on each subscriber; Published says how many got it
// and how many were skipped as slow consumers. Counts against the
// tenant's publish rate (ErrRateExceeded).
func (w *Ws) Publish(topic, text string) (Published, error) {
	return w.publish(topic, types.MakeMessageText(text), false)
}

// PublishBinary is Publish with a binary message.
func (w *Ws) PublishBinary(topic string, data []byte) (Published, error) {
	return w.publish(topic, types.MakeMessageBinary(data), false)
}

// PublishToOthers is Publish to every subscriber but this connection.
func (w *Ws) PublishToOthers(topic, text string) (Published, error) {
	return w.publish(topic, types.MakeMessageText(text), true)
}

// PublishBinaryToOthers is PublishBinary to every subscriber but this
// connection.
func (w *Ws) PublishBinaryToOthers(topic string, data []byte) (Published, error) {
	return w.publish(topic, types.MakeMessageBinary(data), true)
}

// SubscriberCount is how many connections of this tenant subscribe to a
// topic on this server.
func (w *Ws) SubscriberCount(topic string) (uint32, error) {
	r := pubsub.SubscriberCount(w.c, topic)
	if r.IsErr() {
		return 0, pubsubError(r.Err())
	}
	return r.Ok(), nil
}

func (w *Ws) sendTo(connID uint64, m types.Message) (bool, error) {
	r := pubsub.SendTo(w.c, connID, m)
	if r.IsErr() {
		return false, pubsubError(r.Err())
	}
	return r.Ok(), nil
}

// SendTo sends a text message to another connection of this tenant by its
// ID, without calling its handler. queued is false when the receiver was
// skipped as a slow consumer (or, with a broker, when it is on another
// node and the broker is unreachable). Counts against the tenant's
// publish rate like a publish; ErrUnknownConnection when no open
// connection of the tenant has that id.
func (w *Ws) SendTo(connID uint64, text string) (queued bool, err error) {
	return w.sendTo(connID, types.MakeMessageText(text))
}

// SendBinaryTo is SendTo with a binary message.
func (w *Ws) SendBinaryTo(connID uint64, data []byte) (queued bool, err error) {
	return w.sendTo(connID, types.MakeMessageBinary(data))
}
