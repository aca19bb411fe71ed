/* Server-sent events parser (WHATWG "event stream" framing) for the session
 * event stream. Fed arbitrary byte chunks; calls back once per dispatched
 * event. Bounded: a line or an event's data past its limit is an error, never
 * unbounded growth. Knows nothing of HTTP or of the events' JSON.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "base/buf.h"

#define SSE_MAX_LINE  (16u << 20) /* one line (a data: line carries one event's JSON) */
#define SSE_MAX_EVENT (16u << 20) /* data of one event, lines joined */

/* One dispatched event. type is "message" when no event: field was given.
 * data is NUL-terminated (data_len bytes, without the trailing newline). */
typedef struct sse_event {
    const char *type;
    const char *data;
    size_t data_len;
    const char *id; /* last event id seen on the stream, "" if none */
} sse_event;

/* Return non-zero to stop parsing (sse_feed returns that value). */
typedef int (*sse_event_cb)(const sse_event *ev, void *arg);

typedef struct sse_parser {
    buf_t line;  /* partial line */
    buf_t data;  /* data of the event being built */
    buf_t type;  /* event: field of the event being built */
    buf_t last_id;
    bool has_data;
    bool seen_bom_check;
    bool cr_pending; /* last chunk ended in CR: a following LF belongs to it */
    sse_event_cb cb;
    void *arg;
} sse_parser;

void sse_init(sse_parser *p, sse_event_cb cb, void *arg);
void sse_free(sse_parser *p);
/* Reset to a fresh stream (after a reconnect). */
void sse_reset(sse_parser *p);
/* Feed bytes. Returns 0, the callback's non-zero value, or -EMSGSIZE when a
 * line or an event is over its limit (the stream should then be dropped). */
int sse_feed(sse_parser *p, const char *data, size_t len);
