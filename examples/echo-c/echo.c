/* The echo example in C: the same behaviour as examples/echo (Rust),
 * checked by the same conformance suite (tests/polyglot.rs). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wsbox.h"

static unsigned long echoed;
static bool hooks;

static bool prepare(const wsbox_request *req, wsbox_reject *reject) {
    /* A `token` query parameter other than `letmein` is refused. */
    const char *q = req->query;
    while (q && *q) {
        const char *end = strchr(q, '&');
        size_t len = end ? (size_t)(end - q) : strlen(q);
        if (len >= 6 && strncmp(q, "token=", 6) == 0) {
            if (!(len == 13 && strncmp(q + 6, "letmein", 7) == 0)) {
                reject->status = 401;
                reject->reason = "bad token";
                reject->header_name = "www-authenticate";
                reject->header_value = "Bearer";
                return false;
            }
        }
        q = end ? end + 1 : NULL;
    }
    return true;
}

static const char *select_subprotocol(const wsbox_request *req) {
    for (size_t i = 0; i < req->n_subprotocols; i++)
        if (strcmp(req->subprotocols[i], "echo.v1") == 0) return req->subprotocols[i];
    return NULL;
}

static void open_(wsbox_ws *ws, const wsbox_request *req) {
    if (req->n_args == 0 && req->n_kwargs == 0) return;
    char buf[1024];
    size_t at = (size_t)snprintf(buf, sizeof buf, "hello from wsbox echo: args=[");
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

static void say(wsbox_ws *ws, const char *prefix, const uint8_t *data, size_t len) {
    size_t plen = strlen(prefix);
    char *buf = malloc(plen + len + 1);
    if (!buf) return;
    memcpy(buf, prefix, plen);
    memcpy(buf + plen, data, len);
    wsbox_write_text(ws, buf, plen + len);
    free(buf);
}

static void command(wsbox_ws *ws, const char *cmd) {
    const char *space = strchr(cmd, ' ');
    size_t name_len = space ? (size_t)(space - cmd) : strlen(cmd);
    const char *rest = space ? space + 1 : "";
#define IS(name) (name_len == strlen(name) && strncmp(cmd, name, name_len) == 0)
    if (IS("json")) {
        const char *json = "{\"echo\":\"json\",\"n\":[1,2]}";
        wsbox_write_text(ws, json, strlen(json));
    } else if (IS("close")) {
        int code = atoi(rest);
        const char *reason = strchr(rest, ' ');
        wsbox_close(ws, code, reason ? reason + 1 : "");
    } else if (IS("hooks")) {
        hooks = true;
        wsbox_write_text(ws, "hooks on", 8);
    } else if (IS("count")) {
        char line[64];
        int n = snprintf(line, sizeof line, "echoed %lu", echoed);
        wsbox_write_text(ws, line, (size_t)n);
    } else if (IS("ping")) {
        wsbox_ping(ws, (const uint8_t *)rest, strlen(rest));
    } else if (IS("write-after-close")) {
        wsbox_close(ws, 4001, "closing");
        if (wsbox_write_text(ws, "too late", 8) == WSBOX_CLOSED) {
            char line[256];
            snprintf(line, sizeof line, "write after close %s: closed", rest);
            wsbox_log(WSBOX_INFO, line);
        }
    } else if (IS("trap")) {
        abort();
    } else {
        say(ws, "unknown command: ", (const uint8_t *)cmd, name_len);
    }
#undef IS
}

static void on_message(wsbox_ws *ws, const uint8_t *data, size_t len, bool text) {
    if (text && len >= 6 && memcmp(data, "wsbox:", 6) == 0) {
        command(ws, (const char *)data + 6);
        return;
    }
    int r = text ? wsbox_write_text(ws, (const char *)data, len) : wsbox_write_binary(ws, data, len);
    if (r == WSBOX_OK) echoed++;
}

static void on_ping(wsbox_ws *ws, const uint8_t *data, size_t len) {
    if (hooks) say(ws, "on_ping: ", data, len);
}

static void on_pong(wsbox_ws *ws, const uint8_t *data, size_t len) {
    if (hooks) say(ws, "on_pong: ", data, len);
}

static void on_close(wsbox_ws *ws, int code, const char *reason) {
    (void)ws;
    char line[512];
    if (code < 0)
        snprintf(line, sizeof line, "echo closed: code=none reason=%s echoed=%lu messages", reason, echoed);
    else
        snprintf(line, sizeof line, "echo closed: code=%d reason=%s echoed=%lu messages", code, reason, echoed);
    wsbox_log(WSBOX_INFO, line);
}

/* Hibernation (on a route with hibernate_after): the state is the echo
 * count and the hooks flag, as text "COUNT HOOKS". */
static bool save_state(wsbox_ws *ws, uint8_t **state, size_t *len, size_t max_len) {
    (void)ws;
    char *buf = malloc(32);
    if (!buf) return false;
    int n = snprintf(buf, 32, "%lu %d", echoed, hooks ? 1 : 0);
    if (n < 0 || (size_t)n > max_len) {
        free(buf);
        return false;
    }
    *state = (uint8_t *)buf;
    *len = (size_t)n;
    return true;
}

static void load_state(wsbox_ws *ws, const uint8_t *state, size_t len) {
    (void)ws;
    char buf[32];
    if (len >= sizeof buf) len = sizeof buf - 1;
    memcpy(buf, state, len);
    buf[len] = 0;
    int h = 0;
    if (sscanf(buf, "%lu %d", &echoed, &h) == 2) hooks = h != 0;
}

static const wsbox_handler echo = {
    .prepare = prepare,
    .select_subprotocol = select_subprotocol,
    .open = open_,
    .on_message = on_message,
    .on_ping = on_ping,
    .on_pong = on_pong,
    .on_close = on_close,
    .save_state = save_state,
    .load_state = load_state,
};

WSBOX_EXPORT_HANDLER(echo)
