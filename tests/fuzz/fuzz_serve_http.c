/* Fuzzes every endpoint of `shed serve` through its real HTTP front end: a
 * server started in this process (in-memory SQLite, loopback port), fed one
 * request per input over a socket — any method, path, query string and body,
 * with the admin key, an environment key, a work item's sessions token, no
 * credential or a bad one. Checks what must hold for any request: the server
 * answers (never crashes, never hangs), never answers 500, and never shows a
 * caller of environment A (its key or its item's token) anything of
 * environment B (its id or its session's id in a 2xx answer).
 *
 * Input: byte 0 picks the credential; the rest is "METHOD PATH\nBODY" where
 * $E/$S/$W/$K stand for environment A's id, its session, its work item and
 * its key id, and $e/$s for environment B's id and session. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/json.h"
#include "server/server.h"
#include "worker/proto.h"

#define ADMIN "sk-shed-admin-fuzz-0123456789abcdef0123456789"

static server_t *S;
static int PORT;
static char ENV_A[64], ENV_B[64], SID_A[64], SID_B[64], WORK_A[64], KEYID_A[64];
static char KEY_A[128], TOKEN_A[256];

/* One request; returns the status (0: no answer) and the body (malloc'd). */
static int req(const char *auth_hdr, const char *method, const char *path, const char *body, size_t blen,
               char **out)
{
    *out = NULL;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    struct timeval tv = {.tv_sec = 8};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)PORT)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(fd);
        return 0;
    }
    char head[8192];
    int n = snprintf(head, sizeof(head),
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nanthropic-version: 2023-06-01\r\n%s"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                     method, path, auth_hdr, blen);
    if (n <= 0 || (size_t)n >= sizeof(head) || send(fd, head, (size_t)n, MSG_NOSIGNAL) != n ||
        (blen && send(fd, body, blen, MSG_NOSIGNAL) != (ssize_t)blen)) {
        close(fd);
        return -1; /* the server may refuse a request early (413, 431): fine */
    }
    buf_t b;
    buf_init(&b, 8u << 20);
    char chunk[16384];
    for (;;) {
        ssize_t r = recv(fd, chunk, sizeof(chunk), 0);
        if (r <= 0) break;
        if (buf_append(&b, chunk, (size_t)r) < 0) break;
        /* an event stream never ends: the headers are enough */
        if (memmem(b.data, b.len, "text/event-stream", 17) && memmem(b.data, b.len, "\r\n\r\n", 4)) break;
    }
    close(fd);
    int status = 0;
    if (b.len > 12 && !memcmp(b.data, "HTTP/1.", 7)) status = atoi(b.data + 9);
    if (buf_append(&b, "", 1) == 0) {
        char *p = strstr(b.data, "\r\n\r\n");
        *out = strdup(p ? p + 4 : "");
    }
    buf_free(&b);
    return status;
}

static json_t *must(const char *auth, const char *method, const char *path, const char *body)
{
    char *out = NULL;
    int st = req(auth, method, path, body, body ? strlen(body) : 0, &out);
    json_t *j = out ? json_loads(out, 0, NULL) : NULL;
    if (st < 200 || st > 299 || !j) {
        fprintf(stderr, "setup: %s %s: %d %s\n", method, path, st, out ? out : "");
        abort();
    }
    free(out);
    return j;
}

static void copy(char *dst, size_t n, json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    if (!v) abort();
    snprintf(dst, n, "%s", v);
}

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    server_config_t cfg;
    server_config_defaults(&cfg);
    cfg.listen = "127.0.0.1:0";
    cfg.db_url = "sqlite::memory:";
    cfg.admin_key = ADMIN;
    cfg.sse_ping_ms = 200;
    shed_err err = {0};
    if (server_start(&cfg, &S, &err) < 0) {
        fprintf(stderr, "server_start: %s\n", err.msg);
        abort();
    }
    PORT = server_port(S);
    const char *adm = "x-api-key: " ADMIN "\r\n";
    char path[512], auth[512];
    json_t *j;
    for (int i = 0; i < 2; i++) {
        j = must(adm, "POST", "/v1/environments", "{\"name\":\"fuzz\",\"config\":{\"type\":\"self_hosted\"}}");
        copy(i ? ENV_B : ENV_A, 64, j, "id");
        json_decref(j);
        char body[256];
        snprintf(body, sizeof(body), "{\"environment_id\":\"%s\"}", i ? ENV_B : ENV_A);
        j = must(adm, "POST", "/v1/sessions", body);
        copy(i ? SID_B : SID_A, 64, j, "id");
        json_decref(j);
    }
    snprintf(path, sizeof(path), "/v1/environments/%s/keys", ENV_A);
    j = must(adm, "POST", path, NULL);
    copy(KEY_A, sizeof(KEY_A), j, "key");
    copy(KEYID_A, sizeof(KEYID_A), j, "id");
    json_decref(j);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n", KEY_A);
    snprintf(path, sizeof(path), "/v1/environments/%s/work/poll?block_ms=1", ENV_A);
    j = must(auth, "GET", path, NULL);
    copy(WORK_A, sizeof(WORK_A), j, "id");
    char *tok = NULL;
    if (proto_secret_decode(json_string_value(json_object_get(j, "secret")), &tok, NULL, &err) < 0) abort();
    snprintf(TOKEN_A, sizeof(TOKEN_A), "%s", tok);
    free(tok);
    json_decref(j);
}

/* Expand $E $S $W $K $e $s into buf. */
static size_t expand(const uint8_t *p, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 80 < cap; i++) {
        const char *v = NULL;
        if (p[i] == '$' && i + 1 < n) {
            switch (p[i + 1]) {
            case 'E': v = ENV_A; break;
            case 'S': v = SID_A; break;
            case 'W': v = WORK_A; break;
            case 'K': v = KEYID_A; break;
            case 'e': v = ENV_B; break;
            case 's': v = SID_B; break;
            }
        }
        if (v) {
            size_t l = strlen(v);
            memcpy(out + o, v, l);
            o += l;
            i++;
        } else {
            out[o++] = (char)p[i];
        }
    }
    out[o] = 0;
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!S) setup();
    if (size < 2 || size > 65536) return 0;
    int cred = data[0] % 6;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    const uint8_t *nl = memchr(p, '\n', n);
    size_t line = nl ? (size_t)(nl - p) : n;
    if (line > 2000) return 0;
    static char buf[2 * 65536 + 8192], body[2 * 65536 + 8192];
    size_t blen = nl ? expand(nl + 1, n - line - 1, body, sizeof(body)) : 0;
    expand(p, line, buf, 4096);
    /* "METHOD PATH": the method is letters; the path is made a valid request target */
    char method[16] = "GET", path[8192];
    char *sp = strchr(buf, ' ');
    const char *target = buf;
    if (sp && sp - buf > 0 && sp - buf < (long)sizeof(method)) {
        size_t ml = (size_t)(sp - buf), k = 0;
        for (size_t i = 0; i < ml; i++)
            if ((buf[i] >= 'A' && buf[i] <= 'Z') || (buf[i] >= 'a' && buf[i] <= 'z')) method[k++] = buf[i];
        method[k] = 0;
        if (!k) strcpy(method, "GET");
        target = sp + 1;
    }
    size_t o = 0;
    if (target[0] != '/') path[o++] = '/';
    for (const char *c = target; *c && o + 4 < sizeof(path); c++) {
        unsigned char ch = (unsigned char)*c;
        if (ch <= 0x20 || ch >= 0x7f) o += (size_t)snprintf(path + o, 4, "%%%02X", ch);
        else path[o++] = (char)ch;
    }
    path[o] = 0;
    /* keep A's environment and key alive, so later inputs can use them */
    if (!strcmp(method, "DELETE") || strstr(path, "archive") || strstr(path, "keys"))
        if (strstr(path, ENV_A) || strstr(path, KEYID_A) || strstr(path, "%")) return 0;
    char auth[512];
    switch (cred) {
    case 0: snprintf(auth, sizeof(auth), "x-api-key: %s\r\n", ADMIN); break;
    case 1: snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n", KEY_A); break;
    case 2: snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n", TOKEN_A); break;
    case 3: auth[0] = 0; break;
    case 4: snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n", "sk-shed-env-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"); break;
    default: snprintf(auth, sizeof(auth), "x-api-key: %.*s\r\n", 40, ADMIN); break;
    }
    char *out = NULL;
    int st = req(auth, method, path, body, blen, &out);
    if (st == 0) {
        /* a connection reset can race an early answer: ask once more */
        free(out);
        st = req(auth, method, path, body, blen, &out);
    }
    if (st == 0) {
        fprintf(stderr, "no answer to %s %s (%zu body bytes)\n", method, path, blen);
        abort();
    }
    if (st >= 500 && st != 503) {
        fprintf(stderr, "%d for %s %s: %s\n", st, method, path, out ? out : "");
        abort();
    }
    if ((cred == 1 || cred == 2) && st >= 200 && st < 300 && out &&
        (strstr(out, ENV_B) || strstr(out, SID_B))) {
        fprintf(stderr, "a credential of environment A saw environment B: %s %s -> %d %s\n", method, path, st, out);
        abort();
    }
    /* /metrics, /healthz and /readyz answer without a credential by design
     * (src/server/http.c; docs/operations.md): the URL MHD matches is the
     * path without its query. */
    char url[sizeof(path)];
    size_t u = 0;
    for (size_t i = 0; path[i] && path[i] != '?'; i++) { /* unescape as MHD does */
        unsigned hi, lo;
        if (path[i] == '%' && sscanf(path + i + 1, "%1x%1x", &hi, &lo) == 2) {
            url[u++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            url[u++] = path[i];
        }
    }
    url[u] = 0; /* a decoded NUL ends the URL the server compares, too */
    bool open_path = !strcmp(url, "/metrics") || !strcmp(url, "/healthz") || !strcmp(url, "/readyz");
    if (cred >= 3 && st >= 200 && st < 300 && !open_path) {
        fprintf(stderr, "no/bad credential accepted: %s %s -> %d\n", method, path, st);
        abort();
    }
    free(out);
    return 0;
}
