/* Fuzz the worker's HTTP/1.1 response parser (worker/http_resp.c):
 * arbitrary bytes, whole and split at data-chosen points, then the close,
 * must never crash, overrun or grow past the bounds; and chunking must not
 * change the outcome: the same result code, status, fields and body. The
 * first input byte says whether the request was HEAD (a CONNECT answer is
 * parsed as one). The same bytes also go to the forward-proxy settings
 * (worker/http_proxy.c): as a proxy URL (a parsed one never shows its user
 * information) and, split at the first newline, as a NO_PROXY list and a host
 * (a match never crashes; "*" matches every host). */
#include "worker/http_proxy.h"
#include "worker/http_resp.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint64_t hash;
    size_t body;
    long status;
    int done_calls;
} acc_t;

static void mix(acc_t *a, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) a->hash = a->hash * 1099511628211ULL ^ (uint8_t)p[i];
}

static int on_header(const char *n, size_t nl, const char *v, size_t vl, const char *line, size_t ll, void *arg)
{
    acc_t *a = arg;
    if (nl == 0 || nl > ll || vl > ll || n != line) abort();
    mix(a, n, nl);
    mix(a, "=", 1);
    mix(a, v, vl);
    return 0;
}

static int on_done(long status, void *arg)
{
    acc_t *a = arg;
    if (status < 200 || status > 999) abort();
    a->status = status;
    a->done_calls++;
    return 0;
}

static int on_body(const char *d, size_t n, void *arg)
{
    acc_t *a = arg;
    if (n == 0 || a->done_calls != 1) abort();
    a->body += n;
    mix(a, d, n);
    return 0;
}

static const http_resp_cbs cbs = {.on_header = on_header, .on_headers_done = on_done, .on_body = on_body};

static int run(const char *d, size_t n, const size_t *cuts, int ncuts, bool head, acc_t *a, size_t *used)
{
    http_resp p;
    http_resp_init(&p, &cbs, a, head);
    int rc = HTTP_RESP_MORE;
    size_t off = 0;
    *used = 0;
    for (int i = 0; i <= ncuts && rc == HTTP_RESP_MORE; i++) {
        size_t end = i < ncuts ? cuts[i] : n;
        if (end < off) end = off;
        size_t u = 0;
        rc = http_resp_feed(&p, d + off, end - off, &u);
        if (u > end - off) abort();
        *used += u;
        off = end;
    }
    if (rc == HTTP_RESP_MORE) rc = http_resp_eof(&p);
    if (rc < 0 && !p.why) abort();
    if (p.line.len > HTTP_RESP_MAX_HEADER_BLOCK) abort();
    http_resp_free(&p);
    return rc;
}

static void fuzz_proxy(const char *d, size_t n)
{
    if (n > 4096) return;
    char *s = malloc(n + 1);
    if (!s) return;
    memcpy(s, d, n);
    s[n] = 0;
    http_proxy px;
    shed_err err = {0};
    if (http_proxy_parse(s, "HTTPS_PROXY", &px, &err) == 0) {
        if (!px.set || !px.host[0] || px.port < 1 || px.port > 65535 || strchr(px.shown, '@') ||
            strncmp(px.shown, "http://", 7))
            abort();
        if (px.auth && strncmp(px.auth, "Basic ", 6)) abort();
        http_proxy_clear(&px);
    } else if (px.auth || !err.msg[0]) {
        abort();
    }
    char *nl = strchr(s, '\n');
    const char *host = "api.example.com";
    if (nl) {
        *nl = 0;
        host = nl + 1;
    }
    (void)http_noproxy_match(s, host);
    if (*host && !http_noproxy_match("*", host)) abort();
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    bool head = data[0] & 1;
    const char *d = (const char *)data + 1;
    size_t n = size - 1;
    acc_t one = {0}, two = {0}, three = {0};
    size_t u1, u2, u3;
    int r1 = run(d, n, NULL, 0, head, &one, &u1);
    size_t cuts[2] = {n ? data[0] % (n + 1) : 0, n ? (size_t)(data[0] * 7919u) % (n + 1) : 0};
    if (cuts[1] < cuts[0]) {
        size_t t = cuts[0];
        cuts[0] = cuts[1];
        cuts[1] = t;
    }
    int r2 = run(d, n, cuts, 2, head, &two, &u2);
    if (r1 != r2 || one.hash != two.hash || one.body != two.body || one.status != two.status) abort();
    if (r1 == HTTP_RESP_DONE && u1 != u2) abort();
    /* Byte by byte, for short inputs. */
    if (n <= 512) {
        size_t c[512];
        for (size_t i = 0; i < n; i++) c[i] = i;
        int r3 = run(d, n, c, (int)n, head, &three, &u3);
        if (r1 != r3 || one.hash != three.hash || one.body != three.body) abort();
    }
    fuzz_proxy(d, n);
    return 0;
}
