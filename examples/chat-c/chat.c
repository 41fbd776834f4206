/* The chat example in C: the behaviour of examples/chat (Rust), line for
 * line, on the host's pub/sub. One room per route capture (`/chat/<room>`);
 * the handler never loops over the room's members: it publishes to the
 * room's topic and the host delivers. Checked by the chat suite
 * (tests/polyglot_chat.rs).
 *
 * Every line the client sends is a chat message to the room, except:
 *
 * - `/nick <name>`: change nickname (1 to 24 of `A-Z a-z 0-9 _ -`); the
 *   first one can also come in the query, `/chat/lobby?nick=alice`;
 * - `/msg <name> <text>`: a private message to whoever goes by `<name>`
 *   (in any room);
 * - `/who`: how many are in the room.
 *
 * What the client receives is plain text lines: `alice: hello` for a room
 * message, `* alice joined lobby (2 here)` and `* alice left` for notices,
 * `[private] alice: psst` and `[to bob] psst` for private messages, and
 * `! ...` for errors.
 *
 * Every string is allocated to its length: a long room name or line is
 * never cut. Lines are handled as (pointer, length), so a NUL inside a
 * text message goes through like any other character. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wsbox.h"

/* ---- strings ------------------------------------------------------------ */

/* A growing string, NUL-terminated (it may also hold NULs inside). */
typedef struct {
    char *ptr;
    size_t len;
} str;

static void append(str *s, const char *data, size_t len) {
    char *grown = realloc(s->ptr, s->len + len + 1);
    if (!grown) abort();
    if (len) memcpy(grown + s->len, data, len);
    s->ptr = grown;
    s->len += len;
    s->ptr[s->len] = 0;
}

static void append_z(str *s, const char *z) { append(s, z, strlen(z)); }

static void append_u64(str *s, uint64_t n) {
    char digits[24];
    int len = snprintf(digits, sizeof digits, "%" PRIu64, n);
    append(s, digits, (size_t)len);
}

/* The concatenation of up to four NUL-terminated parts (NULL ends early). */
static str cat(const char *a, const char *b, const char *c, const char *d) {
    str s = {NULL, 0};
    append(&s, "", 0);
    const char *parts[] = {a, b, c, d};
    for (size_t i = 0; i < 4 && parts[i]; i++) append_z(&s, parts[i]);
    return s;
}

static char *dup_n(const char *data, size_t len) {
    str s = {NULL, 0};
    append(&s, data, len);
    return s.ptr;
}

static bool starts_with(const char *data, size_t len, const char *prefix) {
    size_t plen = strlen(prefix);
    return len >= plen && memcmp(data, prefix, plen) == 0;
}

/* The code point starting at p (valid UTF-8: the host checked text
 * messages), and its length in bytes in *n. */
static uint32_t decode(const unsigned char *p, size_t *n) {
    if (p[0] < 0x80) { *n = 1; return p[0]; }
    if (p[0] < 0xE0) { *n = 2; return (uint32_t)(p[0] & 0x1F) << 6 | (p[1] & 0x3F); }
    if (p[0] < 0xF0) { *n = 3; return (uint32_t)(p[0] & 0x0F) << 12 | (uint32_t)(p[1] & 0x3F) << 6 | (p[2] & 0x3F); }
    *n = 4;
    return (uint32_t)(p[0] & 0x07) << 18 | (uint32_t)(p[1] & 0x3F) << 12 | (uint32_t)(p[2] & 0x3F) << 6 | (p[3] & 0x3F);
}

/* Unicode White_Space, as Rust's str::trim and Go's strings.TrimSpace. */
static bool is_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
           c == 0x3000;
}

/* Trims white space from both ends of (*data, *len). */
static void trim(const char **data, size_t *len) {
    const unsigned char *p = (const unsigned char *)*data;
    size_t start = 0, end = *len, n;
    while (start < end && is_space(decode(p + start, &n))) start += n;
    while (end > start) {
        size_t at = end - 1;
        while (at > start && (p[at] & 0xC0) == 0x80) at--;
        if (!is_space(decode(p + at, &n))) break;
        end = at;
    }
    *data += start;
    *len = end - start;
}

/* ---- the chat ----------------------------------------------------------- */

/* Per-connection state (one instance per connection): the room and the
 * nickname, both malloc'd. */
static char *room;
static char *nick;

static void write_str(wsbox_ws *ws, str s) {
    wsbox_write_text(ws, s.ptr, s.len);
    free(s.ptr);
}

static void write_z(wsbox_ws *ws, const char *z) { wsbox_write_text(ws, z, strlen(z)); }

/* The topic of a room's messages (malloc'd). */
static char *room_topic(const char *r) { return cat("room:", r, NULL, NULL).ptr; }

/* The topic a user's private messages go to (malloc'd). */
static char *user_topic(const char *n) { return cat("user:", n, NULL, NULL).ptr; }

static bool valid_nick(const char *n, size_t len) {
    if (len < 1 || len > 24) return false;
    for (size_t i = 0; i < len; i++) {
        char b = n[i];
        if (!((b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') || b == '_' || b == '-'))
            return false;
    }
    return true;
}

/* Publishes `* <text>` to the room; takes text. */
static void notice(wsbox_ws *ws, str text) {
    str line = cat("* ", NULL, NULL, NULL);
    append(&line, text.ptr, text.len);
    free(text.ptr);
    char *topic = room_topic(room);
    wsbox_pubsub_error e = wsbox_publish(ws, topic, (const uint8_t *)line.ptr, line.len, 0, NULL);
    if (e != WSBOX_PUBSUB_OK) write_str(ws, cat("! notice not sent: ", wsbox_pubsub_error_str(e), NULL, NULL));
    free(topic);
    free(line.ptr);
}

static void rename_to(wsbox_ws *ws, const char *name, size_t len) {
    if (!valid_nick(name, len)) {
        write_z(ws, "! a nickname is 1 to 24 letters, digits, _ or -");
        return;
    }
    char *new_nick = dup_n(name, len);
    char *topic = user_topic(new_nick);
    wsbox_pubsub_error e = wsbox_subscribe(ws, topic);
    free(topic);
    if (e != WSBOX_PUBSUB_OK) {
        write_str(ws, cat("! cannot take that nickname: ", wsbox_pubsub_error_str(e), NULL, NULL));
        free(new_nick);
        return;
    }
    /* Renaming to the same name keeps its private topic. */
    if (strcmp(nick, new_nick) != 0) {
        topic = user_topic(nick);
        wsbox_unsubscribe(ws, topic, NULL);
        free(topic);
    }
    char *old = nick;
    nick = new_nick;
    notice(ws, cat(old, " is now known as ", nick, NULL));
    free(old);
}

static void private_message(wsbox_ws *ws, const char *to, size_t to_len, const char *text, size_t len) {
    if (!valid_nick(to, to_len) || len == 0) {
        write_z(ws, "! usage: /msg <name> <text>");
        return;
    }
    char *name = dup_n(to, to_len);
    str line = cat("[private] ", nick, ": ", NULL);
    append(&line, text, len);
    char *topic = user_topic(name);
    wsbox_published p;
    wsbox_pubsub_error e = wsbox_publish(ws, topic, (const uint8_t *)line.ptr, line.len, WSBOX_EXCLUDE_SELF, &p);
    free(topic);
    free(line.ptr);
    if (e != WSBOX_PUBSUB_OK) {
        write_str(ws, cat("! not sent: ", wsbox_pubsub_error_str(e), NULL, NULL));
    } else if (p.delivered > 0) {
        str sent = cat("[to ", name, "] ", NULL);
        append(&sent, text, len);
        write_str(ws, sent);
    } else {
        write_str(ws, cat("! nobody here goes by ", name, NULL, NULL));
    }
    free(name);
}

static void say(wsbox_ws *ws, const char *text, size_t len) {
    str line = cat(nick, ": ", NULL, NULL);
    append(&line, text, len);
    char *topic = room_topic(room);
    wsbox_published p;
    wsbox_pubsub_error e = wsbox_publish(ws, topic, (const uint8_t *)line.ptr, line.len, 0, &p);
    free(topic);
    free(line.ptr);
    if (e == WSBOX_PUBSUB_RATE_EXCEEDED) {
        write_z(ws, "! slow down: the server is over its message rate");
    } else if (e != WSBOX_PUBSUB_OK) {
        write_str(ws, cat("! not sent: ", wsbox_pubsub_error_str(e), NULL, NULL));
    } else if (p.broker_error != WSBOX_BROKER_OK) {
        /* Several servers share the room through a broker: say when the
         * others' users did not get it. */
        write_str(ws, cat("! only this server's users got it: ", wsbox_broker_error_str(p.broker_error), NULL, NULL));
    }
}

/* The raw (not percent-decoded) value of the first query parameter called
 * `name`, malloc'd, or NULL (as the Rust SDK's query_param). */
static char *query_param(const char *query, const char *name) {
    size_t name_len = strlen(name);
    for (const char *q = query; q && *q;) {
        const char *end = strchr(q, '&');
        size_t len = end ? (size_t)(end - q) : strlen(q);
        const char *eq = memchr(q, '=', len);
        size_t key_len = eq ? (size_t)(eq - q) : len;
        if (len > 0 && key_len == name_len && memcmp(q, name, name_len) == 0)
            return eq ? dup_n(eq + 1, len - key_len - 1) : dup_n("", 0);
        q = end ? end + 1 : NULL;
    }
    return NULL;
}

static void open_(wsbox_ws *ws, const wsbox_request *req) {
    const char *r = "lobby";
    for (size_t i = 0; i < req->n_kwargs; i++)
        if (strcmp(req->kwargs[i].name, "room") == 0) {
            r = req->kwargs[i].value;
            break;
        }
    room = dup_n(r, strlen(r));
    char *n = query_param(req->query, "nick");
    if (n && valid_nick(n, strlen(n))) {
        nick = n;
    } else {
        free(n);
        str guest = cat("guest", NULL, NULL, NULL);
        append_u64(&guest, wsbox_connection_id(ws));
        nick = guest.ptr;
    }
    char *topic = room_topic(room);
    wsbox_pubsub_error e = wsbox_subscribe(ws, topic);
    if (e == WSBOX_PUBSUB_OK) {
        char *user = user_topic(nick);
        e = wsbox_subscribe(ws, user);
        free(user);
    }
    if (e != WSBOX_PUBSUB_OK) {
        str line = cat("chat: cannot join ", room, ": ", wsbox_pubsub_error_str(e));
        wsbox_log(WSBOX_WARN, line.ptr);
        free(line.ptr);
        wsbox_close(ws, 1011, "cannot join the room");
        free(topic);
        return;
    }
    uint32_t here;
    if (wsbox_subscriber_count(ws, topic, &here) != WSBOX_PUBSUB_OK) here = 1;
    free(topic);
    str welcome = cat("welcome to ", room, ", ", nick);
    append_z(&welcome, ": /nick <name>, /msg <name> <text>, /who");
    write_str(ws, welcome);
    str joined = cat(nick, " joined ", room, " (");
    append_u64(&joined, here);
    append_z(&joined, " here)");
    notice(ws, joined);
}

static void on_message(wsbox_ws *ws, const uint8_t *data, size_t len, bool text) {
    if (!text) {
        write_z(ws, "! binary messages are not chat");
        return;
    }
    const char *line = (const char *)data;
    trim(&line, &len);
    if (starts_with(line, len, "/nick ")) {
        const char *name = line + 6;
        size_t name_len = len - 6;
        trim(&name, &name_len);
        rename_to(ws, name, name_len);
    } else if (starts_with(line, len, "/msg ")) {
        const char *rest = line + 5;
        size_t rest_len = len - 5;
        trim(&rest, &rest_len);
        const char *space = memchr(rest, ' ', rest_len);
        size_t to_len = space ? (size_t)(space - rest) : rest_len;
        const char *body = space ? space + 1 : rest + rest_len;
        size_t body_len = space ? rest_len - to_len - 1 : 0;
        trim(&body, &body_len);
        private_message(ws, rest, to_len, body, body_len);
    } else if (len == 4 && memcmp(line, "/who", 4) == 0) {
        char *topic = room_topic(room);
        uint32_t here;
        if (wsbox_subscriber_count(ws, topic, &here) != WSBOX_PUBSUB_OK) here = 0;
        free(topic);
        str answer = cat("* ", NULL, NULL, NULL);
        append_u64(&answer, here);
        append_z(&answer, " here in ");
        append_z(&answer, room);
        write_str(ws, answer);
    } else if (len > 0) {
        say(ws, line, len);
    }
}

static void on_close(wsbox_ws *ws, int code, const char *reason) {
    (void)code;
    (void)reason;
    if (room && *room) {
        /* Subscriptions have ended: this reaches the others only. */
        notice(ws, cat(nick, " left", NULL, NULL));
    }
    free(room);
    free(nick);
    room = nick = NULL;
}

static const wsbox_handler chat = {.open = open_, .on_message = on_message, .on_close = on_close};
WSBOX_EXPORT_HANDLER(chat)
