/* wsbox handlers in C: a small layer over the bindings `wit-bindgen c`
 * generates from wit/websocket.wit (world websocket-host,
 * committed in guest-sdk/c/bindings/).
 *
 * Define one `wsbox_handler` and name it with WSBOX_EXPORT_HANDLER:
 *
 *     static void on_message(wsbox_ws *ws, const uint8_t *data, size_t len, bool text) {
 *         if (text) wsbox_write_text(ws, (const char *)data, len);
 *         else wsbox_write_binary(ws, data, len);
 *     }
 *     static const wsbox_handler echo = { .on_message = on_message };
 *     WSBOX_EXPORT_HANDLER(echo)
 *
 * Every callback is optional. The host makes one instance per connection,
 * so globals are per-connection state.
 *
 * Hibernation: a handler with `save_state` (and `load_state`) may hibernate
 * on a route with `hibernate_after`. When the connection has been idle
 * that long, `save_state` returns the handler's state as bytes it
 * malloc'd (the SDK hands them to the host, which frees them), or false to
 * stay awake; the instance is then dropped, globals and all. The next
 * message wakes a fresh instance: `load_state` gets those bytes back
 * (`open` is not called again), then the message is delivered. Strings passed to callbacks are
 * NUL-terminated and valid for the call only; the SDK frees what the host
 * passed in (the generated bindings make each export free its arguments).
 */
#ifndef WSBOX_H
#define WSBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The connection during one event. */
typedef struct wsbox_ws wsbox_ws;

typedef struct {
    const char *name;
    const char *value;
} wsbox_pair;

/* The opening handshake. */
typedef struct {
    uint64_t connection_id;
    const char *path;
    const char *query;
    /* The route's unnamed captures (Tornado's open(*args)). */
    size_t n_args;
    const char **args;
    /* The route's named captures (Tornado's open(**kwargs)). */
    size_t n_kwargs;
    const wsbox_pair *kwargs;
    /* Request headers, lower-case names. */
    size_t n_headers;
    const wsbox_pair *headers;
    size_t n_subprotocols;
    const char **subprotocols;
    const char *origin; /* NULL when absent */
} wsbox_request;

/* How `prepare` refuses an upgrade: an HTTP status 400-599, a reason (the
 * body) and at most one extra header (NULL name for none). */
typedef struct {
    uint16_t status;
    const char *reason;
    const char *header_name;
    const char *header_value;
} wsbox_reject;

typedef struct {
    /* Return true to accept; false after filling *reject to refuse. */
    bool (*prepare)(const wsbox_request *req, wsbox_reject *reject);
    /* One of the offered subprotocols (a pointer into req), or NULL. */
    const char *(*select_subprotocol)(const wsbox_request *req);
    void (*open)(wsbox_ws *ws, const wsbox_request *req);
    /* `text` says whether it is a text message (valid UTF-8, NUL-terminated). */
    void (*on_message)(wsbox_ws *ws, const uint8_t *data, size_t len, bool text);
    void (*on_ping)(wsbox_ws *ws, const uint8_t *data, size_t len);
    void (*on_pong)(wsbox_ws *ws, const uint8_t *data, size_t len);
    /* code is -1 when the close frame carried none. */
    void (*on_close)(wsbox_ws *ws, int code, const char *reason);
    /* Hibernation: fill *state (malloc'd, at most max_len bytes) and *len
     * and return true to hibernate; false to stay awake for now. */
    bool (*save_state)(wsbox_ws *ws, uint8_t **state, size_t *len, size_t max_len);
    /* A fresh instance after a hibernation: the bytes save_state gave. */
    void (*load_state)(wsbox_ws *ws, const uint8_t *state, size_t len);
} wsbox_handler;

/* Results of the actions. */
enum {
    WSBOX_OK = 0,
    WSBOX_CLOSED = 1,          /* the connection is closing or closed */
    WSBOX_INVALID = 2,         /* bad close code, reason or ping payload */
};

int wsbox_write_text(wsbox_ws *ws, const char *text, size_t len);
int wsbox_write_binary(wsbox_ws *ws, const uint8_t *data, size_t len);
int wsbox_ping(wsbox_ws *ws, const uint8_t *data, size_t len);
/* code < 0: no code; reason may be NULL. */
int wsbox_close(wsbox_ws *ws, int code, const char *reason);
uint64_t wsbox_connection_id(wsbox_ws *ws);
const wsbox_request *wsbox_request_of(wsbox_ws *ws);

enum { WSBOX_TRACE, WSBOX_DEBUG, WSBOX_INFO, WSBOX_WARN, WSBOX_ERROR };
void wsbox_log(int level, const char *message);

/* ---- pub/sub ------------------------------------------------------------
 *
 * Topics and direct messages between the connections of one tenant, over
 * the host's `pubsub` interface (wit/websocket.wit). The host does the
 * fan-out: a message published to a topic is framed once and queued on
 * every subscriber's socket; the subscribers' handlers are not called.
 * A connection's subscriptions end when it closes. A message published to
 * a topic the publisher subscribes to reaches it after the messages it
 * wrote before publishing.
 *
 * Memory: every argument is borrowed for the call only (the SDK copies
 * nothing and keeps nothing; the caller frees its own buffers, before or
 * after the call as it likes). Results are written to caller-provided
 * out-parameters (each may be NULL when not wanted), plain values with
 * nothing to free. The strings of wsbox_pubsub_error_str and
 * wsbox_broker_error_str are static: never free them.
 *
 * Topics are NUL-terminated UTF-8, 1 to 256 bytes. Text messages must be
 * valid UTF-8 (the host traps the instance otherwise); binary ones are any
 * bytes. Pub/sub may be used from `open`, the message callbacks and
 * `on_close` (a leave notice reaches the others), not from `prepare`. */

/* Why a pub/sub call failed: WSBOX_PUBSUB_OK (0) when it did not, else one
 * case of the WIT's `pubsub-error`. Nothing was done when it failed. */
typedef enum {
    WSBOX_PUBSUB_OK = 0,
    /* A topic is 1 to 256 bytes; this one is empty. */
    WSBOX_PUBSUB_EMPTY_TOPIC,
    /* The topic is longer than 256 bytes. */
    WSBOX_PUBSUB_TOPIC_TOO_LONG,
    /* The connection has as many subscriptions as its tenant allows. */
    WSBOX_PUBSUB_TOO_MANY_SUBSCRIPTIONS,
    /* The tenant published more this second than it may (a send counts
     * as a publish). */
    WSBOX_PUBSUB_RATE_EXCEEDED,
    /* No open connection of this tenant has that id (wsbox_send_to). */
    WSBOX_PUBSUB_UNKNOWN_CONNECTION,
    /* The connection is closing or closed, or not open yet (`prepare`). */
    WSBOX_PUBSUB_CLOSED,
} wsbox_pubsub_error;

/* A sentence describing the error (the Rust SDK's words), e.g. "the tenant
 * is over its publishes per second"; "ok" for WSBOX_PUBSUB_OK. Static. */
const char *wsbox_pubsub_error_str(wsbox_pubsub_error error);

/* Why a published message did not go to the other nodes (several nodes
 * share topics through a broker). This node's subscribers got it anyway;
 * nothing is retried (at most once). */
typedef enum {
    /* It went (and always on a single node). */
    WSBOX_BROKER_OK = 0,
    /* The broker is unreachable; the node is reconnecting to it. */
    WSBOX_BROKER_UNAVAILABLE,
    /* Too many messages are waiting for the broker. */
    WSBOX_BROKER_BACKLOG,
} wsbox_broker_error;

/* A sentence describing the broker error; "ok" for WSBOX_BROKER_OK. Static. */
const char *wsbox_broker_error_str(wsbox_broker_error error);

/* What a publish did. */
typedef struct {
    /* Subscribers on this server the message was queued on. */
    uint32_t delivered;
    /* Subscribers skipped as slow consumers (over their route's
     * max_backpressure). */
    uint32_t skipped;
    /* With several nodes: why the message did not go to the other nodes,
     * WSBOX_BROKER_OK when it went. */
    wsbox_broker_error broker_error;
} wsbox_published;

/* Flags of wsbox_publish and wsbox_send_to; 0 is a text message. */
enum {
    /* The message is binary, not text. */
    WSBOX_MSG_BINARY = 1,
    /* wsbox_publish only: do not deliver to this connection even if it
     * subscribes to the topic. */
    WSBOX_EXCLUDE_SELF = 2,
};

/* Subscribes this connection to a topic of its tenant: messages published
 * to it reach the peer straight from the host. Subscribing again changes
 * nothing. */
wsbox_pubsub_error wsbox_subscribe(wsbox_ws *ws, const char *topic);

/* Unsubscribes this connection from a topic; *was_subscribed (if not
 * NULL) says whether it was subscribed. */
wsbox_pubsub_error wsbox_unsubscribe(wsbox_ws *ws, const char *topic, bool *was_subscribed);

/* Publishes the message (len bytes of data; text unless flags has
 * WSBOX_MSG_BINARY) to every subscriber of a topic of this tenant, this
 * connection included if it subscribes unless flags has
 * WSBOX_EXCLUDE_SELF. *published (if not NULL) is filled on success (and
 * zeroed on failure). Counts against the tenant's publish rate
 * (WSBOX_PUBSUB_RATE_EXCEEDED). */
wsbox_pubsub_error wsbox_publish(wsbox_ws *ws, const char *topic, const uint8_t *data, size_t len,
                                 int flags, wsbox_published *published);

/* How many connections of this tenant subscribe to a topic on this
 * server, in *count (if not NULL; 0 on failure). */
wsbox_pubsub_error wsbox_subscriber_count(wsbox_ws *ws, const char *topic, uint32_t *count);

/* Sends a message (text unless flags has WSBOX_MSG_BINARY) to another
 * connection of this tenant by its id (wsbox_connection_id), without
 * calling its handler. *queued (if not NULL) is false when the receiver
 * was skipped as a slow consumer (or, with a broker, is on another node
 * and the broker is unreachable). Counts against the tenant's publish
 * rate like a publish. */
wsbox_pubsub_error wsbox_send_to(wsbox_ws *ws, uint64_t connection_id, const uint8_t *data, size_t len,
                                 int flags, bool *queued);

/* Registers the handler the exports dispatch to. */
extern const wsbox_handler *const wsbox_the_handler;
#define WSBOX_EXPORT_HANDLER(h) const wsbox_handler *const wsbox_the_handler = &(h);

#endif
