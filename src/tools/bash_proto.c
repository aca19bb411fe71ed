/* The bash tool's protocol with its shell, without i/o (bash_proto.h):
 * input, the bytes to write, the output ring and the sentinel search, the
 * result. Shared by init's synchronous driver (bash.c) and the worker's
 * event-loop driver (worker/sbx.c). Never does i/o; never trusts the output
 * (bounded whatever arrives).
 */
#include "tools/bash_proto.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "base/buf.h"
#include "base/cleanup.h"
#include "base/clock.h"
#include "tools/internal.h"

#define BASH_OUTPUT_LIMIT (100 * 1024) /* UTF-16 units, as the reference counts */
/* Raw bytes kept while streaming: enough for BASH_OUTPUT_LIMIT units of any
 * UTF-8 (≤ 3 bytes per unit) plus the sentinel line. */
#define BASH_RING_BYTES (3 * BASH_OUTPUT_LIMIT + 4096)
#define BASH_RING_FIRST 4096 /* the ring's first allocation; it doubles up to BASH_RING_BYTES */

json_t *tools_bash_parse(json_t *input, int64_t call_timeout_ms, int64_t default_timeout_ms,
                         tools_bash_req *req)
{
    *req = (tools_bash_req){0};
    json_t *jcmd = json_object_get(input, "command");
    json_t *jrestart = json_object_get(input, "restart");
    json_t *jtimeout = json_object_get(input, "timeout_ms");
    bool restart = jrestart && json_is_true(jrestart);
    if (jcmd && !json_is_null(jcmd) && !json_is_string(jcmd)) return tools_errorf("bash: command must be a string");
    if (jtimeout && !json_is_null(jtimeout) && !json_is_number(jtimeout))
        return tools_errorf("bash: timeout_ms must be an integer");
    req->restart = restart;
    const char *cmd = json_is_string(jcmd) ? json_string_value(jcmd) : NULL;
    size_t cmdlen = cmd ? json_string_length(jcmd) : 0;
    if (!cmd || cmdlen == 0) {
        if (restart) return tools_text_result(false, "bash session restarted", 22);
        return tools_errorf("bash: command is required");
    }
    if (cmdlen > TOOLS_BASH_MAX_COMMAND)
        return tools_errorf("bash: command is %zu bytes, over the %d-byte limit", cmdlen, TOOLS_BASH_MAX_COMMAND);
    double timeout = (double)(call_timeout_ms > 0 ? call_timeout_ms : default_timeout_ms);
    if (jtimeout && json_is_number(jtimeout) && json_number_value(jtimeout) > 0) timeout = json_number_value(jtimeout);
    int64_t tmo = timeout > 9e15 ? (int64_t)9e15 : (int64_t)timeout;
    req->cmd = cmd;
    req->cmdlen = cmdlen;
    req->timeout = timeout;
    req->timeout_ms = tmo < 1 ? 1 : tmo;
    return NULL;
}

json_t *tools_bash_end_result(enum tools_bash_end end, const tools_bash_req *req)
{
    switch (end) {
    case TOOLS_BASH_TIMEOUT:
        if (req->timeout == (double)(int64_t)req->timeout)
            return tools_errorf("bash: bash command timed out after %lldms", (long long)req->timeout);
        return tools_errorf("bash: bash command timed out after %gms", req->timeout);
    case TOOLS_BASH_CANCEL: return tools_errorf("bash: This operation was aborted");
    case TOOLS_BASH_DIED: return tools_errorf("bash: bash session terminated");
    default: return tools_errorf("bash: i/o error talking to the shell");
    }
}

static void make_sentinel(char out[64])
{
    unsigned char u[16];
    if (getrandom(u, sizeof(u), 0) != (ssize_t)sizeof(u)) {
        /* never fails for 16 bytes on Linux ≥ 3.17 once seeded; fall back to time */
        int64_t ns = clock_mono_ns();
        memcpy(u, &ns, sizeof(ns));
        memcpy(u + 8, &ns, sizeof(ns));
    }
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    snprintf(out, 64,
             "__ANT_CMD_%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x_DONE__", u[0],
             u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}

int tools_bash_run_start(tools_bash_run *r, const tools_bash_req *req)
{
    *r = (tools_bash_run){0};
    buf_init(&r->in, 0);
    make_sentinel(r->sentinel);
    r->slen = strlen(r->sentinel);
    char split[80];
    snprintf(split, sizeof(split), "%.8s''%s", r->sentinel, r->sentinel + 8);
    if (buf_reserve(&r->in, req->cmdlen + 128) < 0 || buf_puts(&r->in, "{ ") < 0 ||
        buf_append(&r->in, req->cmd, req->cmdlen) < 0 ||
        buf_printf(&r->in, "\n} </dev/null 2>&1; printf '\\n%s%%d\\n' $?\n", split) < 0) {
        buf_free(&r->in);
        return -ENOMEM;
    }
    return 0;
}

void tools_bash_run_free(tools_bash_run *r)
{
    buf_free(&r->in);
    free(r->ring);
    r->ring = NULL;
    r->cap = r->start = r->len = 0;
}

/* Keep the last BASH_RING_BYTES of the output. The ring stays linear
 * (start 0) while it grows; it wraps only at its full size (or at the size
 * it had when growing failed: fewer bytes kept, never a crash). */
static void ring_append(tools_bash_run *r, const char *s, size_t n)
{
    r->total += n;
    if (n >= BASH_RING_BYTES) {
        s += n - BASH_RING_BYTES;
        n = BASH_RING_BYTES;
        r->start = 0;
        r->len = 0;
    }
    if (r->len + n > r->cap && r->cap < BASH_RING_BYTES && r->start == 0) {
        size_t want = r->cap ? r->cap * 2 : BASH_RING_FIRST;
        while (want < r->len + n) want *= 2;
        if (want > BASH_RING_BYTES) want = BASH_RING_BYTES;
        char *d = realloc(r->ring, want);
        if (d) {
            r->ring = d;
            r->cap = want;
        }
    }
    size_t cap = r->cap;
    if (cap == 0) return; /* no memory at all: the bytes are counted as dropped */
    if (n > cap) {
        s += n - cap;
        n = cap;
    }
    for (size_t i = 0; i < n;) {
        size_t end = (r->start + r->len) % cap;
        size_t chunk = cap - end;
        if (chunk > n - i) chunk = n - i;
        memcpy(r->ring + end, s + i, chunk);
        r->len += chunk;
        if (r->len > cap) {
            size_t over = r->len - cap;
            r->start = (r->start + over) % cap;
            r->len = cap;
        }
        i += chunk;
    }
}

/* The call is done at the newline that ends the sentinel's line (the exit
 * code is in it: a read may end between the sentinel and its digits). */
static bool line_end(tools_bash_run *r, const char *p, size_t n)
{
    if (memchr(p, '\n', n)) r->seen = true;
    return r->seen;
}

bool tools_bash_run_feed(tools_bash_run *r, const char *p, size_t n)
{
    if (r->seen || n == 0) return r->seen;
    ring_append(r, p, n);
    if (r->found) return line_end(r, p, n);
    /* look for the sentinel across chunk boundaries */
    size_t slen = r->slen;
    size_t head = n < slen ? n : slen;
    char probe[256];
    memcpy(probe, r->carry, r->ncarry);
    memcpy(probe + r->ncarry, p, head);
    const char *at = memmem(probe, r->ncarry + head, r->sentinel, slen);
    size_t after = 0; /* offset in p just past the sentinel */
    if (at) {
        after = (size_t)(at - probe) + slen - r->ncarry;
    } else if ((at = memmem(p, n, r->sentinel, slen))) {
        after = (size_t)(at - p) + slen;
    }
    if (at) {
        r->found = true;
        return line_end(r, p + after, n - after);
    }
    if (n >= slen) {
        memcpy(r->carry, p + n - (slen - 1), slen - 1);
        r->ncarry = slen - 1;
    } else {
        size_t keep = r->ncarry + n > slen - 1 ? slen - 1 : r->ncarry + n;
        memmove(probe, probe + (r->ncarry + n - keep), keep);
        memcpy(r->carry, probe, keep);
        r->ncarry = keep;
    }
    return false;
}

/* The reference's ANSI_RE: \x1b\[[0-9;?]*[ -/]*[@-~] */
static size_t strip_ansi(char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] == 0x1b && i + 1 < n && s[i + 1] == '[') {
            size_t j = i + 2;
            while (j < n && ((s[j] >= '0' && s[j] <= '9') || s[j] == ';' || s[j] == '?')) j++;
            while (j < n && s[j] >= ' ' && s[j] <= '/') j++;
            if (j < n && s[j] >= '@' && s[j] <= '~') {
                i = j + 1;
                continue;
            }
        }
        s[o++] = s[i++];
    }
    return o;
}

json_t *tools_bash_run_result(tools_bash_run *r)
{
    /* a linear copy of the ring's content */
    size_t rawlen = r->len;
    _cleanup_free_ char *raw = malloc(rawlen + 1);
    if (!raw) return tools_errorf("bash: out of memory");
    if (rawlen) {
        size_t first = r->cap - r->start;
        if (first > rawlen) first = rawlen;
        memcpy(raw, r->ring + r->start, first);
        memcpy(raw + first, r->ring, rawlen - first);
    }
    raw[rawlen] = 0;
    bool dropped = r->total > r->len;
    _cleanup_buf_ buf_t text;
    buf_init(&text, 0);
    /* Dropped bytes may have cut a character: start at a character boundary. */
    size_t skip = 0;
    if (dropped)
        while (skip < rawlen && skip < 4 && ((unsigned char)raw[skip] & 0xC0) == 0x80) skip++;
    if (tools_utf8_sanitize(&text, raw + skip, rawlen - skip) < 0) return tools_errorf("bash: out of memory");
    /* Keep the last BASH_OUTPUT_LIMIT UTF-16 units of everything received,
     * as the reference's string buffer does. */
    size_t units = tools_utf16_len(text.data, text.len);
    bool truncated = dropped || units > BASH_OUTPUT_LIMIT;
    size_t begin = 0;
    if (units > BASH_OUTPUT_LIMIT) {
        size_t drop = units - BASH_OUTPUT_LIMIT;
        while (begin < text.len && drop > 0) {
            unsigned char c = (unsigned char)text.data[begin];
            size_t l = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
            size_t u = l == 4 ? 2 : 1;
            begin += l;
            drop = drop > u ? drop - u : 0;
        }
    }
    char *s = text.data + begin;
    size_t slen = text.len - begin;
    char *at = memmem(s, slen, r->sentinel, r->slen);
    if (!at) return tools_errorf("bash: bash session terminated");
    const char *tail = at + r->slen;
    long long code = -1;
    char *endp;
    errno = 0;
    long long v = strtoll(tail, &endp, 10);
    if (endp != tail && errno == 0 && (tail[0] == '-' || (tail[0] >= '0' && tail[0] <= '9'))) code = v;
    size_t outlen = strip_ansi(s, (size_t)(at - s));
    while (outlen > 0 && s[outlen - 1] == '\n') outlen--;
    _cleanup_buf_ buf_t res;
    buf_init(&res, 0);
    if (truncated) buf_puts(&res, "[output truncated]\n");
    buf_append(&res, s, outlen);
    if (code != 0) {
        if (res.len == 0) buf_printf(&res, "exit %lld", code);
        return tools_text_result(true, res.data, res.len);
    }
    return tools_text_result(false, res.data, res.len);
}
