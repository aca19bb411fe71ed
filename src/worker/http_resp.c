/* HTTP/1.1 response parser; see http_resp.h. Lines end in CRLF (a bare LF
 * is accepted, a bare CR or any other control byte in a line is refused);
 * obsolete line folding is refused; a Content-Length must be digits, the
 * same in every copy; Transfer-Encoding ending in "chunked" wins over a
 * Content-Length (and the connection is then not reused), any other
 * transfer coding means "read until close". Never trusts a size from the
 * peer beyond its bound. */
#include "worker/http_resp.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

enum {
    S_STATUS = 0,
    S_HEADERS,
    S_BODY_LEN,
    S_BODY_CLOSE,
    S_CHUNK_SIZE,
    S_CHUNK_DATA,
    S_CHUNK_END,
    S_TRAILERS,
    S_DONE,
    S_ERROR,
};

void http_resp_init(http_resp *p, const http_resp_cbs *cbs, void *arg, bool head_request)
{
    memset(p, 0, sizeof(*p));
    p->state = S_STATUS;
    p->content_length = -1;
    p->head = head_request;
    p->cbs = cbs;
    p->arg = arg;
    buf_init(&p->line, HTTP_RESP_MAX_HEADER_BLOCK);
}

void http_resp_free(http_resp *p)
{
    buf_free(&p->line);
}

bool http_resp_done(const http_resp *p)
{
    return p->state == S_DONE;
}

static int fail(http_resp *p, int rc, const char *why)
{
    p->state = S_ERROR;
    p->why = why;
    return rc;
}

static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* The last element of a comma-separated list, trimmed. */
static void last_element(const char *v, size_t vl, const char **out, size_t *ol)
{
    const char *s = v;
    for (size_t i = 0; i < vl; i++)
        if (v[i] == ',') s = v + i + 1;
    size_t n = (size_t)(v + vl - s);
    while (n && (*s == ' ' || *s == '\t')) s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    *out = s;
    *ol = n;
}

static bool has_token(const char *v, size_t vl, const char *tok)
{
    size_t tl = strlen(tok), i = 0;
    while (i < vl) {
        while (i < vl && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) i++;
        size_t s = i;
        while (i < vl && v[i] != ',') i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t')) e--;
        if (e - s == tl && !strncasecmp(v + s, tok, tl)) return true;
    }
    return false;
}

static int status_line(http_resp *p, const char *l, size_t n)
{
    /* HTTP/1.x SP 3DIGIT [SP reason] */
    if (n < 12 || memcmp(l, "HTTP/1.", 7) || l[7] < '0' || l[7] > '9' || l[8] != ' ')
        return fail(p, -EPROTO, "bad status line");
    if (l[9] < '1' || l[9] > '9' || l[10] < '0' || l[10] > '9' || l[11] < '0' || l[11] > '9')
        return fail(p, -EPROTO, "bad status code");
    if (n > 12 && l[12] != ' ') return fail(p, -EPROTO, "bad status line");
    p->minor = l[7] - '0';
    p->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
    p->state = S_HEADERS;
    p->fields = 0;
    if (p->status >= 200) {
        p->content_length = -1;
        p->chunked = p->te = false;
        p->close = p->minor == 0;
    }
    return 0;
}

static int field_line(http_resp *p, const char *l, size_t n, bool trailer)
{
    if (++p->fields > HTTP_RESP_MAX_FIELDS) return fail(p, -EMSGSIZE, "too many header fields");
    if (l[0] == ' ' || l[0] == '\t') return fail(p, -EPROTO, "folded header line");
    const char *colon = memchr(l, ':', n);
    if (!colon || colon == l) return fail(p, -EPROTO, "bad header line");
    size_t nl = (size_t)(colon - l);
    for (size_t i = 0; i < nl; i++)
        if (!is_tchar((unsigned char)l[i])) return fail(p, -EPROTO, "bad header name");
    const char *v = colon + 1;
    size_t vl = n - nl - 1;
    while (vl && (*v == ' ' || *v == '\t')) v++, vl--;
    while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) vl--;
    if (trailer || p->status < 200) return 0; /* trailers and 1xx fields are skipped */
    if (nl == 14 && !strncasecmp(l, "content-length", 14)) {
        if (!vl) return fail(p, -EPROTO, "bad Content-Length");
        uint64_t cl = 0;
        for (size_t i = 0; i < vl; i++) {
            if (v[i] < '0' || v[i] > '9') return fail(p, -EPROTO, "bad Content-Length");
            if (cl > (HTTP_RESP_MAX_CHUNK * 1024) / 10) return fail(p, -EMSGSIZE, "Content-Length too large");
            cl = cl * 10 + (uint64_t)(v[i] - '0');
        }
        if (p->content_length >= 0 && (uint64_t)p->content_length != cl)
            return fail(p, -EPROTO, "conflicting Content-Length");
        p->content_length = (int64_t)cl;
    } else if (nl == 17 && !strncasecmp(l, "transfer-encoding", 17)) {
        const char *last;
        size_t ll;
        last_element(v, vl, &last, &ll);
        p->te = true;
        p->chunked = ll == 7 && !strncasecmp(last, "chunked", 7);
    } else if (nl == 10 && !strncasecmp(l, "connection", 10)) {
        if (has_token(v, vl, "close")) p->close = true;
    }
    if (p->cbs && p->cbs->on_header && p->cbs->on_header(l, nl, v, vl, l, n, p->arg))
        return fail(p, -ECANCELED, "stopped by the receiver");
    return 0;
}

static int headers_done(http_resp *p)
{
    if (p->status < 200) {
        if (p->status == 101) return fail(p, -EPROTO, "unexpected 101 Switching Protocols");
        p->state = S_STATUS; /* an interim response: the real one follows */
        p->block = 0;
        return 0;
    }
    /* A transfer coding wins over a Content-Length (and the connection is not
     * reused); another coding than chunked last: the body ends at the close. */
    if (p->te && p->content_length >= 0) p->close = true;
    if (p->te && !p->chunked) p->content_length = -1;
    if (p->cbs && p->cbs->on_headers_done && p->cbs->on_headers_done(p->status, p->arg))
        return fail(p, -ECANCELED, "stopped by the receiver");
    if (p->head || p->status == 204 || p->status == 304) {
        p->state = S_DONE;
    } else if (p->chunked) {
        p->state = S_CHUNK_SIZE;
    } else if (p->content_length >= 0) {
        p->left = (uint64_t)p->content_length;
        p->state = p->left ? S_BODY_LEN : S_DONE;
    } else {
        p->close = true;
        p->state = S_BODY_CLOSE;
    }
    buf_free(&p->line); /* a streamed body may last hours: hold no line buffer */
    return 0;
}

static int chunk_size_line(http_resp *p, const char *l, size_t n)
{
    uint64_t v = 0;
    size_t i = 0;
    for (; i < n; i++) {
        char c = l[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) break;
        v = v * 16 + (uint64_t)d;
        if (v > HTTP_RESP_MAX_CHUNK) return fail(p, -EMSGSIZE, "chunk size too large");
    }
    if (i == 0) return fail(p, -EPROTO, "bad chunk size");
    /* What follows the size: whitespace, then nothing or ';' extensions. */
    while (i < n && (l[i] == ' ' || l[i] == '\t')) i++;
    if (i < n && l[i] != ';') return fail(p, -EPROTO, "bad chunk size");
    p->left = v;
    if (v == 0) {
        p->state = S_TRAILERS;
        p->block = 0;
        p->fields = 0;
    } else {
        p->state = S_CHUNK_DATA;
    }
    return 0;
}

/* One complete line (CRLF/LF stripped) in a line-oriented state. */
static int on_line(http_resp *p, const char *l, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)l[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) return fail(p, -EPROTO, "control character in a header line");
    }
    switch (p->state) {
    case S_STATUS:
        return n ? status_line(p, l, n) : 0; /* an empty line before it is ignored (RFC 9112 2.2) */
    case S_HEADERS:
        return n ? field_line(p, l, n, false) : headers_done(p);
    case S_CHUNK_SIZE:
        return chunk_size_line(p, l, n);
    case S_CHUNK_END:
        if (n) return fail(p, -EPROTO, "chunk data longer than its size");
        p->state = S_CHUNK_SIZE;
        return 0;
    case S_TRAILERS:
        if (!n) {
            p->state = S_DONE;
            return 0;
        }
        return field_line(p, l, n, true);
    }
    return fail(p, -EPROTO, "parser state");
}

static size_t line_limit(const http_resp *p)
{
    if (p->state == S_CHUNK_SIZE || p->state == S_CHUNK_END) return HTTP_RESP_MAX_CHUNK_LINE;
    return HTTP_RESP_MAX_HEADER_BLOCK;
}

int http_resp_feed(http_resp *p, const char *data, size_t len, size_t *used)
{
    size_t i = 0;
    int rc = HTTP_RESP_MORE;
    if (len) p->started = true;
    while (i < len) {
        if (p->state == S_ERROR) {
            rc = -EPROTO;
            break;
        }
        if (p->state == S_DONE) break;
        if (p->state == S_BODY_LEN || p->state == S_CHUNK_DATA || p->state == S_BODY_CLOSE) {
            size_t n = len - i;
            if (p->state != S_BODY_CLOSE && n > p->left) n = (size_t)p->left;
            if (p->cbs && p->cbs->on_body && p->cbs->on_body(data + i, n, p->arg)) {
                rc = fail(p, -ECANCELED, "stopped by the receiver");
                i += n;
                break;
            }
            i += n;
            if (p->state == S_BODY_CLOSE) continue;
            p->left -= n;
            if (!p->left) p->state = p->state == S_BODY_LEN ? S_DONE : S_CHUNK_END;
            continue;
        }
        /* Line-oriented states. */
        const char *start = data + i;
        const char *nl = memchr(start, '\n', len - i);
        size_t seg = nl ? (size_t)(nl - start) : len - i;
        bool counts = p->state == S_STATUS || p->state == S_HEADERS || p->state == S_TRAILERS;
        if (counts && p->block + p->line.len + seg > HTTP_RESP_MAX_HEADER_BLOCK) {
            rc = fail(p, -EMSGSIZE, "response header block too large");
            break;
        }
        if (p->line.len + seg > line_limit(p)) {
            rc = fail(p, -EMSGSIZE, "chunk size line too long");
            break;
        }
        if (!nl) {
            if (buf_append(&p->line, start, seg) < 0) {
                rc = fail(p, -ENOMEM, "out of memory");
                break;
            }
            i = len;
            break;
        }
        const char *l = start;
        size_t n = seg;
        if (p->line.len) {
            if (buf_append(&p->line, start, seg) < 0) {
                rc = fail(p, -ENOMEM, "out of memory");
                break;
            }
            l = p->line.data;
            n = p->line.len;
        }
        if (n && l[n - 1] == '\r') n--;
        if (counts) p->block += n + 2;
        i += seg + 1;
        rc = on_line(p, l, n);
        buf_reset(&p->line);
        if (rc < 0) break;
    }
    if (used) *used = i;
    if (rc < 0) return rc;
    if (p->state == S_ERROR) return -EPROTO;
    return p->state == S_DONE ? HTTP_RESP_DONE : HTTP_RESP_MORE;
}

int http_resp_eof(http_resp *p)
{
    if (p->state == S_DONE) return HTTP_RESP_DONE;
    if (p->state == S_BODY_CLOSE) {
        p->state = S_DONE;
        return HTTP_RESP_DONE;
    }
    if (p->state == S_ERROR) return -EPROTO;
    return fail(p, -EPIPE, p->started ? "connection closed before the response was complete"
                                      : "connection closed before any response");
}
