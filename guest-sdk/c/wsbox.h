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

/* Registers the handler the exports dispatch to. */
extern const wsbox_handler *const wsbox_the_handler;
#define WSBOX_EXPORT_HANDLER(h) const wsbox_handler *const wsbox_the_handler = &(h);

#endif
