/* __NAME__: a wsbox WebSocket handler in C. The host makes one instance
 * per connection, so globals are per-connection state.
 *
 * `wsbox build` builds __NAME__.wasm; `wsbox serve --config wsbox.toml`
 * serves it at /__NAME__ and /__NAME__/<room>. */
#include <stdio.h>

#include "wsbox.h"

/* Greets with the route's captures: /__NAME__/lobby matches
 * /__NAME__/(?P<room>[^/]+) in wsbox.toml, so kwargs has room = lobby. */
static void on_open(wsbox_ws *ws, const wsbox_request *req) {
    if (req->n_args == 0 && req->n_kwargs == 0) return;
    char buf[1024];
    size_t at = (size_t)snprintf(buf, sizeof buf, "hello from __NAME__: args=[");
    for (size_t i = 0; i < req->n_args && at < sizeof buf; i++)
        at += (size_t)snprintf(buf + at, sizeof buf - at, "%s%s", i ? ", " : "", req->args[i]);
    if (at < sizeof buf) at += (size_t)snprintf(buf + at, sizeof buf - at, "] kwargs={");
    for (size_t i = 0; i < req->n_kwargs && at < sizeof buf; i++)
        at += (size_t)snprintf(buf + at, sizeof buf - at, "%s%s: %s", i ? ", " : "",
                               req->kwargs[i].name, req->kwargs[i].value);
    if (at < sizeof buf) at += (size_t)snprintf(buf + at, sizeof buf - at, "}");
    if (at > sizeof buf - 1) at = sizeof buf - 1;
    wsbox_write_text(ws, buf, at);
}

/* Echoes text as text and binary as binary. */
static void on_message(wsbox_ws *ws, const uint8_t *data, size_t len, bool text) {
    if (text)
        wsbox_write_text(ws, (const char *)data, len);
    else
        wsbox_write_binary(ws, data, len);
}

static const wsbox_handler handler = {
    .open = on_open,
    .on_message = on_message,
};

WSBOX_EXPORT_HANDLER(handler)
