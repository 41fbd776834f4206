/* The exports of a wsbox handler in C, dispatching to the wsbox_handler
 * the program registers (wsbox.h), over the generated bindings. */
#include <stdlib.h>
#include <string.h>

#include "websocket_host.h"
#include "wsbox.h"

typedef websocket_host_string_t str_t;
typedef wsbox_websocket_types_upgrade_request_t raw_request_t;

struct wsbox_ws {
    wsbox_websocket_connection_borrow_connection_t conn;
    bool closing;
};

/* One connection per instance: its request, converted once. */
static wsbox_request the_request;
static bool have_request;
static bool closing;

static char *dup_str(const uint8_t *ptr, size_t len) {
    char *s = malloc(len + 1);
    if (!s) abort();
    if (len) memcpy(s, ptr, len);
    s[len] = 0;
    return s;
}

static void convert_request(const raw_request_t *raw) {
    wsbox_request *r = &the_request;
    r->connection_id = raw->connection_id;
    r->path = dup_str(raw->path.ptr, raw->path.len);
    r->query = dup_str(raw->query.ptr, raw->query.len);
    r->n_args = raw->positional_captures.len;
    const char **args = calloc(r->n_args + 1, sizeof *args);
    for (size_t i = 0; i < r->n_args; i++)
        args[i] = dup_str(raw->positional_captures.ptr[i].ptr, raw->positional_captures.ptr[i].len);
    r->args = args;
    r->n_kwargs = raw->named_captures.len;
    wsbox_pair *kwargs = calloc(r->n_kwargs + 1, sizeof *kwargs);
    for (size_t i = 0; i < r->n_kwargs; i++) {
        kwargs[i].name = dup_str(raw->named_captures.ptr[i].name.ptr, raw->named_captures.ptr[i].name.len);
        kwargs[i].value = dup_str(raw->named_captures.ptr[i].value.ptr, raw->named_captures.ptr[i].value.len);
    }
    r->kwargs = kwargs;
    r->n_headers = raw->headers.len;
    wsbox_pair *headers = calloc(r->n_headers + 1, sizeof *headers);
    for (size_t i = 0; i < r->n_headers; i++) {
        headers[i].name = dup_str(raw->headers.ptr[i].name.ptr, raw->headers.ptr[i].name.len);
        headers[i].value = dup_str(raw->headers.ptr[i].value.ptr, raw->headers.ptr[i].value.len);
    }
    r->headers = headers;
    r->n_subprotocols = raw->subprotocols.len;
    const char **subs = calloc(r->n_subprotocols + 1, sizeof *subs);
    for (size_t i = 0; i < r->n_subprotocols; i++)
        subs[i] = dup_str(raw->subprotocols.ptr[i].ptr, raw->subprotocols.ptr[i].len);
    r->subprotocols = subs;
    r->origin = raw->origin.is_some ? dup_str(raw->origin.val.ptr, raw->origin.val.len) : NULL;
    have_request = true;
}

static void ensure_request(wsbox_websocket_connection_borrow_connection_t conn) {
    if (have_request) return;
    raw_request_t raw;
    wsbox_websocket_connection_method_connection_request(conn, &raw);
    convert_request(&raw);
    wsbox_websocket_types_upgrade_request_free(&raw);
}

static str_t borrowed_str(const char *s) {
    str_t out = {(uint8_t *)s, strlen(s)};
    return out;
}

static str_t owned_str(const char *s) {
    str_t out;
    websocket_host_string_dup(&out, s);
    return out;
}

/* ---- actions ---------------------------------------------------------- */

/* A borrowed message over the caller's bytes: nothing to free. */
static wsbox_websocket_types_message_t borrowed_message(const uint8_t *data, size_t len, int flags) {
    wsbox_websocket_types_message_t m;
    if (flags & WSBOX_MSG_BINARY) {
        m.tag = WSBOX_WEBSOCKET_TYPES_MESSAGE_BINARY;
        m.val.binary.ptr = (uint8_t *)data;
        m.val.binary.len = len;
    } else {
        m.tag = WSBOX_WEBSOCKET_TYPES_MESSAGE_TEXT;
        m.val.text.ptr = (uint8_t *)data;
        m.val.text.len = len;
    }
    return m;
}

static int write(wsbox_ws *ws, bool text, const uint8_t *data, size_t len) {
    if (ws->closing || closing) return WSBOX_CLOSED;
    wsbox_websocket_types_message_t m = borrowed_message(data, len, text ? 0 : WSBOX_MSG_BINARY);
    wsbox_websocket_connection_write_error_t err;
    if (!wsbox_websocket_connection_method_connection_write_message(ws->conn, &m, &err)) {
        ws->closing = closing = true;
        return WSBOX_CLOSED;
    }
    return WSBOX_OK;
}

int wsbox_write_text(wsbox_ws *ws, const char *text, size_t len) {
    return write(ws, true, (const uint8_t *)text, len);
}

int wsbox_write_binary(wsbox_ws *ws, const uint8_t *data, size_t len) {
    return write(ws, false, data, len);
}

int wsbox_ping(wsbox_ws *ws, const uint8_t *data, size_t len) {
    if (ws->closing || closing) return WSBOX_CLOSED;
    websocket_host_list_u8_t payload = {(uint8_t *)data, len};
    wsbox_websocket_connection_ping_error_t err;
    if (!wsbox_websocket_connection_method_connection_ping(ws->conn, &payload, &err))
        return err == WSBOX_WEBSOCKET_CONNECTION_PING_ERROR_CLOSED ? WSBOX_CLOSED : WSBOX_INVALID;
    return WSBOX_OK;
}

int wsbox_close(wsbox_ws *ws, int code, const char *reason) {
    if (ws->closing || closing) return WSBOX_OK;
    websocket_host_option_u16_t c = {code >= 0, (uint16_t)(code >= 0 ? code : 0)};
    websocket_host_option_string_t r;
    r.is_some = reason != NULL;
    if (reason) r.val = borrowed_str(reason);
    wsbox_websocket_connection_close_error_t err;
    if (!wsbox_websocket_connection_method_connection_close(ws->conn, code >= 0 ? &c.val : NULL, reason ? &r.val : NULL, &err))
        return WSBOX_INVALID;
    ws->closing = closing = true;
    return WSBOX_OK;
}

uint64_t wsbox_connection_id(wsbox_ws *ws) {
    return wsbox_websocket_connection_method_connection_id(ws->conn);
}

const wsbox_request *wsbox_request_of(wsbox_ws *ws) {
    ensure_request(ws->conn);
    return &the_request;
}

void wsbox_log(int level, const char *message) {
    str_t m = borrowed_str(message);
    wsbox_websocket_logging_log((wsbox_websocket_logging_log_level_t)level, &m);
}

/* ---- pub/sub ----------------------------------------------------------- */

const char *wsbox_pubsub_error_str(wsbox_pubsub_error error) {
    switch (error) {
    case WSBOX_PUBSUB_OK: return "ok";
    case WSBOX_PUBSUB_EMPTY_TOPIC: return "the topic is empty";
    case WSBOX_PUBSUB_TOPIC_TOO_LONG: return "the topic is longer than 256 bytes";
    case WSBOX_PUBSUB_TOO_MANY_SUBSCRIPTIONS: return "the connection has as many subscriptions as its tenant allows";
    case WSBOX_PUBSUB_RATE_EXCEEDED: return "the tenant is over its publishes per second";
    case WSBOX_PUBSUB_UNKNOWN_CONNECTION: return "no open connection of this tenant has that id";
    case WSBOX_PUBSUB_CLOSED: return "the WebSocket connection is not open";
    }
    return "unknown pub/sub error";
}

const char *wsbox_broker_error_str(wsbox_broker_error error) {
    switch (error) {
    case WSBOX_BROKER_OK: return "ok";
    case WSBOX_BROKER_UNAVAILABLE:
        return "the pub/sub broker is unreachable: the other nodes did not get the message";
    case WSBOX_BROKER_BACKLOG:
        return "too many messages wait for the pub/sub broker: the other nodes did not get the message";
    }
    return "unknown pub/sub broker error";
}

/* The WIT's pubsub-error (0-5) as the SDK's enum (1-6). */
static wsbox_pubsub_error pubsub_error(wsbox_websocket_pubsub_pubsub_error_t err) {
    return (wsbox_pubsub_error)(err + 1);
}

wsbox_pubsub_error wsbox_subscribe(wsbox_ws *ws, const char *topic) {
    str_t t = borrowed_str(topic);
    wsbox_websocket_pubsub_pubsub_error_t err;
    if (!wsbox_websocket_pubsub_subscribe(ws->conn, &t, &err)) return pubsub_error(err);
    return WSBOX_PUBSUB_OK;
}

wsbox_pubsub_error wsbox_unsubscribe(wsbox_ws *ws, const char *topic, bool *was_subscribed) {
    str_t t = borrowed_str(topic);
    bool was = false;
    wsbox_websocket_pubsub_pubsub_error_t err;
    bool ok = wsbox_websocket_pubsub_unsubscribe(ws->conn, &t, &was, &err);
    if (was_subscribed) *was_subscribed = ok && was;
    return ok ? WSBOX_PUBSUB_OK : pubsub_error(err);
}

wsbox_pubsub_error wsbox_publish(wsbox_ws *ws, const char *topic, const uint8_t *data, size_t len,
                                 int flags, wsbox_published *published) {
    str_t t = borrowed_str(topic);
    wsbox_websocket_types_message_t m = borrowed_message(data, len, flags);
    wsbox_websocket_pubsub_publish_options_t options = {(flags & WSBOX_EXCLUDE_SELF) != 0};
    wsbox_websocket_pubsub_broker_publish_report_t report;
    wsbox_websocket_pubsub_pubsub_error_t err;
    if (published) memset(published, 0, sizeof *published);
    if (!wsbox_websocket_pubsub_publish_with_broker_report(ws->conn, &t, &m, &options, &report, &err))
        return pubsub_error(err);
    if (published) {
        published->delivered = report.here.delivered;
        published->skipped = report.here.skipped;
        published->broker_error =
            report.broker_error.is_some ? (wsbox_broker_error)(report.broker_error.val + 1) : WSBOX_BROKER_OK;
    }
    return WSBOX_PUBSUB_OK;
}

wsbox_pubsub_error wsbox_subscriber_count(wsbox_ws *ws, const char *topic, uint32_t *count) {
    str_t t = borrowed_str(topic);
    uint32_t n = 0;
    wsbox_websocket_pubsub_pubsub_error_t err;
    bool ok = wsbox_websocket_pubsub_subscriber_count(ws->conn, &t, &n, &err);
    if (count) *count = ok ? n : 0;
    return ok ? WSBOX_PUBSUB_OK : pubsub_error(err);
}

wsbox_pubsub_error wsbox_send_to(wsbox_ws *ws, uint64_t connection_id, const uint8_t *data, size_t len,
                                 int flags, bool *queued) {
    wsbox_websocket_types_message_t m = borrowed_message(data, len, flags);
    bool q = false;
    wsbox_websocket_pubsub_pubsub_error_t err;
    bool ok = wsbox_websocket_pubsub_send_to(ws->conn, connection_id, &m, &q, &err);
    if (queued) *queued = ok && q;
    return ok ? WSBOX_PUBSUB_OK : pubsub_error(err);
}

/* ---- exports ---------------------------------------------------------- */

void exports_wsbox_websocket_handler_upgrade(exports_wsbox_websocket_handler_upgrade_request_t *request,
                                             exports_wsbox_websocket_handler_upgrade_decision_t *ret) {
    convert_request(request);
    wsbox_websocket_types_upgrade_request_free(request);
    const wsbox_handler *h = wsbox_the_handler;
    wsbox_reject reject = {401, "unauthorized", NULL, NULL};
    if (h->prepare && !h->prepare(&the_request, &reject)) {
        ret->tag = WSBOX_WEBSOCKET_TYPES_UPGRADE_DECISION_REJECT;
        ret->val.reject.status = reject.status;
        ret->val.reject.reason = owned_str(reject.reason ? reject.reason : "");
        ret->val.reject.headers.len = 0;
        ret->val.reject.headers.ptr = NULL;
        if (reject.header_name) {
            wsbox_websocket_types_header_t *hd = malloc(sizeof *hd);
            hd->name = owned_str(reject.header_name);
            str_t v = owned_str(reject.header_value ? reject.header_value : "");
            hd->value.ptr = v.ptr;
            hd->value.len = v.len;
            ret->val.reject.headers.ptr = hd;
            ret->val.reject.headers.len = 1;
        }
        return;
    }
    ret->tag = WSBOX_WEBSOCKET_TYPES_UPGRADE_DECISION_ACCEPT;
    const char *sub = h->select_subprotocol ? h->select_subprotocol(&the_request) : NULL;
    ret->val.accept.subprotocol.is_some = sub != NULL;
    if (sub) ret->val.accept.subprotocol.val = owned_str(sub);
    ret->val.accept.headers.ptr = NULL;
    ret->val.accept.headers.len = 0;
    ret->val.accept.origin = WSBOX_WEBSOCKET_TYPES_ORIGIN_DECISION_HOST_VERDICT;
}

void exports_wsbox_websocket_handler_on_open(exports_wsbox_websocket_handler_borrow_connection_t conn,
                                             exports_wsbox_websocket_handler_open_info_t *info) {
    wsbox_websocket_types_open_info_free(info);
    ensure_request(conn);
    wsbox_ws ws = {conn, false};
    if (wsbox_the_handler->open) wsbox_the_handler->open(&ws, &the_request);
    /* The generated bindings leave dropping the lent connection to us. */
    wsbox_websocket_connection_connection_drop_borrow(conn);
}

static void deliver(wsbox_ws *ws, bool text, const uint8_t *data, size_t len) {
    if (closing || !wsbox_the_handler->on_message) return;
    if (text) {
        /* NUL-terminated for the handler's convenience. */
        char *copy = dup_str(data, len);
        wsbox_the_handler->on_message(ws, (const uint8_t *)copy, len, true);
        free(copy);
    } else {
        wsbox_the_handler->on_message(ws, data, len, false);
    }
}

void exports_wsbox_websocket_handler_on_message(exports_wsbox_websocket_handler_borrow_connection_t conn,
                                                exports_wsbox_websocket_handler_message_t *message) {
    wsbox_ws ws = {conn, false};
    if (message->tag == WSBOX_WEBSOCKET_TYPES_MESSAGE_TEXT)
        deliver(&ws, true, message->val.text.ptr, message->val.text.len);
    else
        deliver(&ws, false, message->val.binary.ptr, message->val.binary.len);
    wsbox_websocket_types_message_free(message);
    /* The generated bindings leave dropping the lent connection to us. */
    wsbox_websocket_connection_connection_drop_borrow(conn);
}

void exports_wsbox_websocket_batch_handler_on_messages(exports_wsbox_websocket_batch_handler_borrow_connection_t conn,
                                                       exports_wsbox_websocket_batch_handler_message_batch_t *batch) {
    wsbox_ws ws = {conn, false};
    size_t at = 0;
    for (size_t i = 0; i < batch->spans.len; i++) {
        wsbox_websocket_types_message_span_t span = batch->spans.ptr[i];
        deliver(&ws, span.kind == WSBOX_WEBSOCKET_TYPES_MESSAGE_KIND_TEXT, batch->data.ptr + at, span.len);
        at += span.len;
    }
    wsbox_websocket_types_message_batch_free(batch);
    /* The generated bindings leave dropping the lent connection to us. */
    wsbox_websocket_connection_connection_drop_borrow(conn);
}

void exports_wsbox_websocket_handler_on_ping(exports_wsbox_websocket_handler_borrow_connection_t conn,
                                             websocket_host_list_u8_t *data) {
    wsbox_ws ws = {conn, false};
    if (wsbox_the_handler->on_ping) wsbox_the_handler->on_ping(&ws, data->ptr, data->len);
    websocket_host_list_u8_free(data);
    /* The generated bindings leave dropping the lent connection to us. */
    wsbox_websocket_connection_connection_drop_borrow(conn);
}

void exports_wsbox_websocket_handler_on_pong(exports_wsbox_websocket_handler_borrow_connection_t conn,
                                             websocket_host_list_u8_t *data) {
    wsbox_ws ws = {conn, false};
    if (wsbox_the_handler->on_pong) wsbox_the_handler->on_pong(&ws, data->ptr, data->len);
    websocket_host_list_u8_free(data);
    /* The generated bindings leave dropping the lent connection to us. */
    wsbox_websocket_connection_connection_drop_borrow(conn);
}

void exports_wsbox_websocket_handler_on_close(exports_wsbox_websocket_handler_borrow_connection_t conn,
                                              exports_wsbox_websocket_handler_close_info_t *info) {
    wsbox_ws ws = {conn, true};
    closing = true;
    char *reason = dup_str(info->reason.ptr, info->reason.len);
    int code = info->code.is_some ? info->code.val : -1;
    wsbox_websocket_types_close_info_free(info);
    if (wsbox_the_handler->on_close) wsbox_the_handler->on_close(&ws, code, reason);
    free(reason);
    /* The generated bindings leave dropping the lent connection to us. */
    wsbox_websocket_connection_connection_drop_borrow(conn);
}

/* ---- hibernation ------------------------------------------------------ */

bool exports_wsbox_websocket_hibernation_on_hibernate(exports_wsbox_websocket_hibernation_borrow_connection_t conn,
                                                      uint32_t max_attachment, websocket_host_list_u8_t *ret) {
    wsbox_ws ws = {conn, false};
    bool hibernate = false;
    if (!closing && wsbox_the_handler->save_state) {
        uint8_t *state = NULL;
        size_t len = 0;
        hibernate = wsbox_the_handler->save_state(&ws, &state, &len, max_attachment);
        if (hibernate) {
            /* Handed over: the bindings' post-return frees it. */
            ret->ptr = state;
            ret->len = len;
        } else {
            free(state);
        }
    }
    /* The generated bindings leave dropping the lent connection to us. */
    wsbox_websocket_connection_connection_drop_borrow(conn);
    return hibernate;
}

void exports_wsbox_websocket_hibernation_on_hibernate_error(exports_wsbox_websocket_hibernation_borrow_connection_t conn,
                                                            exports_wsbox_websocket_hibernation_hibernate_error_t *error) {
    (void)error;
    wsbox_log(WSBOX_WARN, "hibernation refused: the state is over max_attachment");
    wsbox_websocket_connection_connection_drop_borrow(conn);
}

void exports_wsbox_websocket_hibernation_on_wake(exports_wsbox_websocket_hibernation_borrow_connection_t conn,
                                                 websocket_host_list_u8_t *attachment) {
    ensure_request(conn);
    wsbox_ws ws = {conn, false};
    if (wsbox_the_handler->load_state) wsbox_the_handler->load_state(&ws, attachment->ptr, attachment->len);
    websocket_host_list_u8_free(attachment);
    wsbox_websocket_connection_connection_drop_borrow(conn);
}
