/* Fuzz harness for the bash tool's protocol (src/tools/bash_proto.c): the
 * worker feeds it whatever the sandbox's shell writes. Input: one byte of
 * chunk size, then the output stream, in which each "@S" becomes the call's
 * sentinel. Checks: no crash or leak on any bytes, and the same result fed
 * whole and fed in chunks (up to the sentinel's line). */
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"

#include "tools/bash_proto.h"

static char *run(const unsigned char *data, size_t size, size_t chunk)
{
    tools_bash_req req = {.cmd = "x", .cmdlen = 1, .timeout = 1, .timeout_ms = 1};
    tools_bash_run r;
    if (tools_bash_run_start(&r, &req) < 0) return NULL;
    buf_t s;
    buf_init(&s, 0);
    for (size_t i = 0; i < size; i++) {
        if (data[i] == '@' && i + 1 < size && data[i + 1] == 'S') {
            buf_puts(&s, r.sentinel);
            i++;
        } else {
            buf_putc(&s, (char)data[i]);
        }
    }
    /* what follows the sentinel's line is not the call's, and how much of
     * it a read brings varies: end the stream there, so that chunking is
     * the only difference between the two runs */
    char *at = s.len ? memmem(s.data, s.len, r.sentinel, r.slen) : NULL;
    char *nl = at ? memchr(at + r.slen, '\n', s.len - (size_t)(at + r.slen - s.data)) : NULL;
    if (nl) s.len = (size_t)(nl - s.data) + 1;
    bool seen = false;
    for (size_t off = 0; off < s.len && !seen;) {
        size_t n = s.len - off < chunk ? s.len - off : chunk;
        seen = tools_bash_run_feed(&r, s.data + off, n);
        off += n;
    }
    json_t *res = seen ? tools_bash_run_result(&r) : tools_bash_end_result(TOOLS_BASH_DIED, &req);
    char *out = res ? json_dumps(res, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(res);
    tools_bash_run_free(&r);
    buf_free(&s);
    return out;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size < 1 || size > (1 << 20)) return 0;
    size_t chunk = data[0] ? data[0] : 1;
    char *a = run(data + 1, size - 1, (size_t)-1);
    char *b = run(data + 1, size - 1, chunk);
    if (a && b && strcmp(a, b) != 0) abort();
    free(a);
    free(b);
    return 0;
}
