/* SSE framing; see sse.h. Line endings CRLF, LF or CR; ':' comments; field
 * "data" joined with '\n'; blank line dispatches; a leading UTF-8 BOM is
 * skipped. Never trusts a length from the peer. */
#include "worker/sse.h"

#include <errno.h>
#include <string.h>

void sse_init(sse_parser *p, sse_event_cb cb, void *arg)
{
    memset(p, 0, sizeof(*p));
    buf_init(&p->line, SSE_MAX_LINE);
    buf_init(&p->data, SSE_MAX_EVENT);
    buf_init(&p->type, 256);
    buf_init(&p->last_id, 1024);
    p->cb = cb;
    p->arg = arg;
}

void sse_free(sse_parser *p)
{
    buf_free(&p->line);
    buf_free(&p->data);
    buf_free(&p->type);
    buf_free(&p->last_id);
}

void sse_reset(sse_parser *p)
{
    buf_reset(&p->line);
    buf_reset(&p->data);
    buf_reset(&p->type);
    buf_reset(&p->last_id);
    p->has_data = false;
    p->seen_bom_check = false;
    p->cr_pending = false;
}

static int dispatch(sse_parser *p)
{
    int rc = 0;
    if (p->has_data) {
        sse_event ev = {
            .type = p->type.len ? p->type.data : "message",
            .data = p->data.data ? p->data.data : "",
            .data_len = p->data.len,
            .id = p->last_id.data ? p->last_id.data : "",
        };
        rc = p->cb(&ev, p->arg);
    }
    buf_reset(&p->data);
    buf_reset(&p->type);
    p->has_data = false;
    return rc;
}

static int process_line(sse_parser *p, const char *line, size_t len)
{
    if (len == 0) return dispatch(p);
    if (line[0] == ':') return 0; /* comment / keep-alive */
    const char *colon = memchr(line, ':', len);
    size_t nlen = colon ? (size_t)(colon - line) : len;
    const char *val = colon ? colon + 1 : line + len;
    size_t vlen = colon ? len - nlen - 1 : 0;
    if (vlen && *val == ' ') {
        val++;
        vlen--;
    }
    int rc = 0;
    if (nlen == 4 && !memcmp(line, "data", 4)) {
        if (p->has_data) rc = buf_putc(&p->data, '\n');
        if (rc == 0) rc = buf_append(&p->data, val, vlen);
        p->has_data = true;
    } else if (nlen == 5 && !memcmp(line, "event", 5)) {
        buf_reset(&p->type);
        rc = buf_append(&p->type, val, vlen);
    } else if (nlen == 2 && !memcmp(line, "id", 2)) {
        if (!memchr(val, '\0', vlen)) {
            buf_reset(&p->last_id);
            rc = buf_append(&p->last_id, val, vlen);
        }
    }
    /* "retry" and unknown fields are ignored: reconnect timing is ours. */
    return rc < 0 ? -EMSGSIZE : 0;
}

int sse_feed(sse_parser *p, const char *data, size_t len)
{
    size_t i = 0;
    if (!p->seen_bom_check) {
        /* A BOM may be split across chunks; wait for 3 bytes or a mismatch. */
        static const char bom[3] = {'\xEF', '\xBB', '\xBF'};
        size_t have = p->line.len;
        while (i < len && have + i < 3 && data[i] == bom[have + i]) i++;
        if (have + i == 3) {
            buf_reset(&p->line);
            p->seen_bom_check = true;
        } else if (i == len && have + i < 3) {
            if (buf_append(&p->line, data, len) < 0) return -EMSGSIZE;
            return 0;
        } else {
            /* Not a BOM: whatever we held back is ordinary line content. */
            p->seen_bom_check = true;
            i = 0;
        }
    }
    while (i < len) {
        if (p->cr_pending) {
            p->cr_pending = false;
            if (data[i] == '\n') {
                i++;
                continue;
            }
        }
        const char *start = data + i;
        size_t n = len - i;
        const char *nl = memchr(start, '\n', n);
        const char *cr = memchr(start, '\r', nl ? (size_t)(nl - start) : n);
        const char *end = cr ? cr : nl;
        if (!end) {
            if (buf_append(&p->line, start, n) < 0) return -EMSGSIZE;
            return 0;
        }
        size_t seg = (size_t)(end - start);
        int rc;
        if (p->line.len) {
            if (buf_append(&p->line, start, seg) < 0) return -EMSGSIZE;
            rc = process_line(p, p->line.data, p->line.len);
            buf_reset(&p->line);
        } else {
            rc = process_line(p, start, seg);
        }
        i += seg + 1;
        if (end == cr) {
            if (i < len) {
                if (data[i] == '\n') i++;
            } else {
                p->cr_pending = true;
            }
        }
        if (rc) return rc;
    }
    return 0;
}
