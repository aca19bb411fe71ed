/* Incremental HTTP/1.1 response parser (RFC 9112) for the worker's HTTP
 * client (http.c): status line, header fields, Content-Length, chunked
 * transfer coding (extensions and trailers skipped), bodies delimited by the
 * connection's close, 1xx interim responses skipped, no body for 204/304 or a
 * HEAD request. Fed arbitrary byte chunks from the network. Every size is
 * bounded (the header block, one chunk-size line, a chunk's size): bad input
 * is an error code with a reason, never a crash or unbounded growth. Knows
 * nothing of sockets; never logs (header values may hold anything).
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

#define HTTP_RESP_MAX_HEADER_BLOCK (64u << 10) /* status line + fields (or trailers) */
#define HTTP_RESP_MAX_FIELDS       256         /* fields in one block */
#define HTTP_RESP_MAX_CHUNK_LINE   4096        /* chunk size + extensions */
#define HTTP_RESP_MAX_CHUNK        ((uint64_t)1 << 40)

/* Return values of http_resp_feed / http_resp_eof. Errors are negative:
 * -EPROTO malformed, -EMSGSIZE over a bound, -ECANCELED a callback said
 * stop, -EPIPE the connection closed before the response was complete. */
#define HTTP_RESP_MORE 0
#define HTTP_RESP_DONE 1

typedef struct http_resp_cbs {
    /* One field of the final response (never of a 1xx); name and value
     * trimmed, not NUL-terminated; line is "name: value" as received. */
    int (*on_header)(const char *name, size_t nlen, const char *value, size_t vlen,
                     const char *line, size_t line_len, void *arg);
    /* The final response's header block is complete. */
    int (*on_headers_done)(long status, void *arg);
    /* Body bytes (chunked framing removed). */
    int (*on_body)(const char *data, size_t len, void *arg);
} http_resp_cbs;

typedef struct http_resp {
    int state;
    long status;
    int minor;              /* HTTP/1.<minor> */
    int64_t content_length; /* -1: none */
    uint64_t left;          /* body or chunk bytes still to come */
    bool chunked;
    bool te;                /* a Transfer-Encoding field was seen */
    bool close;             /* the connection cannot carry another response */
    bool head;              /* the request was HEAD: no body whatever the headers say */
    bool started;           /* a byte of the response has arrived */
    size_t block;           /* bytes of the current header/trailer block */
    int fields;
    buf_t line;             /* a partial line */
    const char *why;        /* the reason of the last error (static string) */
    const http_resp_cbs *cbs;
    void *arg;
} http_resp;

void http_resp_init(http_resp *p, const http_resp_cbs *cbs, void *arg, bool head_request);
void http_resp_free(http_resp *p);
/* Feed bytes. Returns HTTP_RESP_MORE (all consumed, more needed),
 * HTTP_RESP_DONE (the response is complete; *used bytes were consumed, the
 * rest is not part of it), or a negative error (p->why says what). */
int http_resp_feed(http_resp *p, const char *data, size_t len, size_t *used);
/* The peer closed the connection: HTTP_RESP_DONE when that completes the
 * response (a body delimited by the close), else -EPIPE. */
int http_resp_eof(http_resp *p);
bool http_resp_done(const http_resp *p);
