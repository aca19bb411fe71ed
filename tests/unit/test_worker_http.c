/* The worker's HTTP/1.1 client: the response parser (worker/http_resp.c) fed
 * at every split point, its bounds and refusals; the client (worker/http.c)
 * against a small scripted server on loopback: keep-alive reuse, a request
 * resent after the server closed an idle connection, timeouts, the body
 * bound, a refused connect, name resolution, a streamed chunked body; the
 * forward-proxy settings (worker/http_proxy.c: the environment as libcurl
 * reads it, NO_PROXY as curl matches it) and the client through a scripted
 * proxy (absolute form, CONNECT and its refusals, NO_PROXY, a proxy down,
 * connections kept per (proxy, origin)). */
#include "test.h"

#include "base/buf.h"
#include "base/clock.h"
#include "base/loop.h"
#include "worker/http.h"
#include "worker/http_proxy.h"
#include "worker/http_resp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---------- parser ---------- */

typedef struct got {
    long status;
    int headers_done;
    buf_t body;
    buf_t hdrs; /* "name=value;" */
    int stop_at_headers;
} got;

static int g_header(const char *n, size_t nl, const char *v, size_t vl, const char *line, size_t ll, void *arg)
{
    (void)line;
    (void)ll;
    got *g = arg;
    buf_append(&g->hdrs, n, nl);
    buf_putc(&g->hdrs, '=');
    buf_append(&g->hdrs, v, vl);
    buf_putc(&g->hdrs, ';');
    return 0;
}

static int g_done(long status, void *arg)
{
    got *g = arg;
    g->status = status;
    g->headers_done++;
    return g->stop_at_headers;
}

static int g_body(const char *d, size_t n, void *arg)
{
    got *g = arg;
    return buf_append(&g->body, d, n) < 0;
}

static const http_resp_cbs gcbs = {.on_header = g_header, .on_headers_done = g_done, .on_body = g_body};

static void got_init(got *g)
{
    memset(g, 0, sizeof(*g));
    buf_init(&g->body, 1 << 20);
    buf_init(&g->hdrs, 1 << 20);
}

static void got_free(got *g)
{
    buf_free(&g->body);
    buf_free(&g->hdrs);
}

/* Feed msg in two pieces split at `cut`; then eof when `eof`. Returns the
 * final code; *used_total is how many bytes were consumed. */
static int feed2(http_resp *p, const char *msg, size_t len, size_t cut, bool eof, size_t *used_total)
{
    size_t u1 = 0, u2 = 0;
    int rc = http_resp_feed(p, msg, cut, &u1);
    *used_total = u1;
    if (rc != HTTP_RESP_MORE) return rc;
    rc = http_resp_feed(p, msg + cut, len - cut, &u2);
    *used_total += u2;
    if (rc == HTTP_RESP_MORE && eof) rc = http_resp_eof(p);
    return rc;
}

static void check_every_split(const char *msg, bool eof, long status, const char *body, const char *hdrs,
                              size_t expect_used)
{
    size_t len = strlen(msg);
    for (size_t cut = 0; cut <= len; cut++) {
        got g;
        got_init(&g);
        http_resp p;
        http_resp_init(&p, &gcbs, &g, false);
        size_t used = 0;
        int rc = feed2(&p, msg, len, cut, eof, &used);
        if (rc != HTTP_RESP_DONE) test_fail(__FILE__, __LINE__, "cut %zu: rc %d (%s)", cut, rc, p.why ? p.why : "");
        ASSERT_EQ_INT(g.status, status);
        ASSERT_EQ_INT(g.headers_done, 1);
        ASSERT_EQ_STR(g.body.data ? g.body.data : "", body);
        if (hdrs) ASSERT_EQ_STR(g.hdrs.data ? g.hdrs.data : "", hdrs);
        ASSERT_EQ_INT(used, expect_used);
        http_resp_free(&p);
        got_free(&g);
    }
    /* And one byte at a time. */
    got g;
    got_init(&g);
    http_resp p;
    http_resp_init(&p, &gcbs, &g, false);
    int rc = HTTP_RESP_MORE;
    size_t total = 0;
    for (size_t i = 0; i < len && rc == HTTP_RESP_MORE; i++) {
        size_t u = 0;
        rc = http_resp_feed(&p, msg + i, 1, &u);
        total += u;
    }
    if (rc == HTTP_RESP_MORE && eof) rc = http_resp_eof(&p);
    ASSERT_EQ_INT(rc, HTTP_RESP_DONE);
    ASSERT_EQ_STR(g.body.data ? g.body.data : "", body);
    ASSERT_EQ_INT(total, expect_used);
    http_resp_free(&p);
    got_free(&g);
}

/* One feed of the whole message: the return code and the parser's reason. */
static int feed_all(const char *msg, size_t len, bool head, bool eof, const char **why, got *g)
{
    static http_resp p;
    http_resp_init(&p, &gcbs, g, head);
    size_t used;
    int rc = http_resp_feed(&p, msg, len, &used);
    if (rc == HTTP_RESP_MORE && eof) rc = http_resp_eof(&p);
    *why = p.why;
    http_resp_free(&p);
    return rc;
}

static int feed_str(const char *msg, const char **why)
{
    got g;
    got_init(&g);
    int rc = feed_all(msg, strlen(msg), false, false, why, &g);
    got_free(&g);
    return rc;
}

TEST(http_resp_content_length_every_split)
{
    const char *m = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n"
                    "X-Should-Retry: false\r\n\r\n{\"a\":\"bcd\"}";
    check_every_split(m, false, 200, "{\"a\":\"bcd\"}",
                      "Content-Type=application/json;Content-Length=11;X-Should-Retry=false;", strlen(m));
}

TEST(http_resp_chunked_extensions_trailers_every_split)
{
    const char *m = "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "5;name=value;x=\"q\"\r\nhello\r\n"
                    "1\r\n \r\n"
                    "A \r\n0123456789\r\n"
                    "0;last\r\nX-Trailer: t\r\nOther: 2\r\n\r\n";
    check_every_split(m, false, 201, "hello 0123456789", "Transfer-Encoding=chunked;", strlen(m));
}

TEST(http_resp_until_close_and_interim)
{
    /* 100 and 103 interim responses are skipped, their fields unseen; the body ends at the close. */
    const char *m = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                    "HTTP/1.1 200 OK\r\nServer: x\r\n\r\nstream until close";
    check_every_split(m, true, 200, "stream until close", "Server=x;", strlen(m));
}

TEST(http_resp_lf_only_and_leftover)
{
    /* Bare-LF lines are taken; bytes after the response are left unconsumed. */
    const char *m = "HTTP/1.1 404 Not Found\nContent-Length: 2\n\nnoEXTRA";
    check_every_split(m, false, 404, "no", NULL, strlen(m) - 5);
}

TEST(http_resp_no_body_statuses)
{
    const char *why;
    got g;
    got_init(&g);
    const char *m204 = "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n";
    ASSERT_EQ_INT(feed_all(m204, strlen(m204), false, false, &why, &g), HTTP_RESP_DONE);
    const char *m304 = "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n";
    ASSERT_EQ_INT(feed_all(m304, strlen(m304), false, false, &why, &g), HTTP_RESP_DONE);
    const char *mhead = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
    ASSERT_EQ_INT(feed_all(mhead, strlen(mhead), true, false, &why, &g), HTTP_RESP_DONE);
    ASSERT_EQ_INT(g.body.len, 0);
    const char *m0 = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    ASSERT_EQ_INT(feed_all(m0, strlen(m0), false, false, &why, &g), HTTP_RESP_DONE);
    got_free(&g);
}

TEST(http_resp_connection_reuse_flags)
{
    got g;
    got_init(&g);
    http_resp p;
    size_t u;
    const char *m = "HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n";
    http_resp_init(&p, &gcbs, &g, false);
    ASSERT_EQ_INT(http_resp_feed(&p, m, strlen(m), &u), HTTP_RESP_DONE);
    ASSERT_TRUE(p.close);
    http_resp_free(&p);
    m = "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
    http_resp_init(&p, &gcbs, &g, false);
    ASSERT_EQ_INT(http_resp_feed(&p, m, strlen(m), &u), HTTP_RESP_DONE);
    ASSERT_TRUE(p.close);
    http_resp_free(&p);
    m = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    http_resp_init(&p, &gcbs, &g, false);
    ASSERT_EQ_INT(http_resp_feed(&p, m, strlen(m), &u), HTTP_RESP_DONE);
    ASSERT_FALSE(p.close);
    http_resp_free(&p);
    /* Both framings: chunked wins and the connection is not reused. */
    m = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n";
    http_resp_init(&p, &gcbs, &g, false);
    ASSERT_EQ_INT(http_resp_feed(&p, m, strlen(m), &u), HTTP_RESP_DONE);
    ASSERT_TRUE(p.close);
    ASSERT_EQ_STR(g.body.data, "ab");
    http_resp_free(&p);
    /* Another coding last: the body runs to the close. */
    buf_reset(&g.body);
    m = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\nContent-Length: 1\r\n\r\nxyz";
    http_resp_init(&p, &gcbs, &g, false);
    ASSERT_EQ_INT(http_resp_feed(&p, m, strlen(m), &u), HTTP_RESP_MORE);
    ASSERT_EQ_INT(http_resp_eof(&p), HTTP_RESP_DONE);
    ASSERT_EQ_STR(g.body.data, "xyz");
    http_resp_free(&p);
    got_free(&g);
}

TEST(http_resp_refusals)
{
    const char *why = NULL;
    struct {
        const char *msg;
        int rc;
        const char *why;
    } cases[] = {
        {"HTTP/2 200 OK\r\n\r\n", -EPROTO, "bad status line"},
        {"HTTP/1.1 20 OK\r\n\r\n", -EPROTO, "bad status code"},
        {"HTTP/1.1 099 x\r\n\r\n", -EPROTO, "bad status code"},
        {"HTTP/1.1 200OK\r\n\r\n", -EPROTO, "bad status line"},
        {"SSH-2.0-OpenSSH\r\n", -EPROTO, "bad status line"},
        {"HTTP/1.1 101 Switching Protocols\r\n\r\n", -EPROTO, "101"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", -EPROTO, "conflicting"},
        {"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", -EPROTO, "Content-Length"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n\r\n", -EPROTO, "Content-Length"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n", -EMSGSIZE, "too large"},
        {"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n", -EPROTO, "folded"},
        {"HTTP/1.1 200 OK\r\nBad Name: a\r\n\r\n", -EPROTO, "header name"},
        {"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n", -EPROTO, "bad header line"},
        {"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", -EPROTO, "control character"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", -EPROTO, "bad chunk size"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", -EPROTO, "bad chunk size"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", -EPROTO, "bad chunk size"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1 x\r\n", -EPROTO, "bad chunk size"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n", -EMSGSIZE, "chunk size too large"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", -EPROTO, "longer than its size"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = feed_str(cases[i].msg, &why);
        if (rc != cases[i].rc || !why || !strstr(why, cases[i].why))
            test_fail(__FILE__, __LINE__, "case %zu: rc %d why %s", i, rc, why ? why : "(null)");
    }
}

TEST(http_resp_bounds)
{
    const char *why = NULL;
    /* A header block past 64 KiB, in one line and in many. */
    buf_t m;
    buf_init(&m, 0);
    buf_puts(&m, "HTTP/1.1 200 OK\r\nX-Big: ");
    for (unsigned i = 0; i < HTTP_RESP_MAX_HEADER_BLOCK; i++) buf_putc(&m, 'a');
    buf_puts(&m, "\r\n\r\n");
    ASSERT_EQ_INT(feed_str(m.data, &why), -EMSGSIZE);
    ASSERT_CONTAINS(why, "header block too large");
    buf_reset(&m);
    buf_puts(&m, "HTTP/1.1 200 OK\r\n");
    for (unsigned i = 0; i < 3000; i++) buf_printf(&m, "X-H%u: %040u\r\n", i, i);
    buf_puts(&m, "\r\n");
    ASSERT_TRUE(feed_str(m.data, &why) == -EMSGSIZE);
    /* Too many small fields. */
    buf_reset(&m);
    buf_puts(&m, "HTTP/1.1 200 OK\r\n");
    for (unsigned i = 0; i < HTTP_RESP_MAX_FIELDS + 1; i++) buf_puts(&m, "A: b\r\n");
    buf_puts(&m, "\r\n");
    ASSERT_EQ_INT(feed_str(m.data, &why), -EMSGSIZE);
    ASSERT_CONTAINS(why, "too many header fields");
    /* A chunk-size line longer than its bound (extensions). */
    buf_reset(&m);
    buf_puts(&m, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;");
    for (unsigned i = 0; i < HTTP_RESP_MAX_CHUNK_LINE; i++) buf_putc(&m, 'e');
    ASSERT_EQ_INT(feed_str(m.data, &why), -EMSGSIZE);
    /* Trailers count against the block bound too. */
    buf_reset(&m);
    buf_puts(&m, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n");
    for (unsigned i = 0; i < 3000; i++) buf_printf(&m, "T%u: %040u\r\n", i, i);
    ASSERT_EQ_INT(feed_str(m.data, &why), -EMSGSIZE);
    /* Many interim responses: each block is bounded, and they only cost time. */
    buf_reset(&m);
    for (unsigned i = 0; i < 1000; i++) buf_puts(&m, "HTTP/1.1 100 Continue\r\n\r\n");
    buf_puts(&m, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    ASSERT_EQ_INT(feed_str(m.data, &why), HTTP_RESP_DONE);
    buf_free(&m);
}

TEST(http_resp_early_close)
{
    const char *why = NULL;
    got g;
    got_init(&g);
    ASSERT_EQ_INT(feed_all("", 0, false, true, &why, &g), -EPIPE);
    ASSERT_CONTAINS(why, "before any response");
    const char *m = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
    ASSERT_EQ_INT(feed_all(m, strlen(m), false, true, &why, &g), -EPIPE);
    ASSERT_CONTAINS(why, "before the response was complete");
    m = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab";
    ASSERT_EQ_INT(feed_all(m, strlen(m), false, true, &why, &g), -EPIPE);
    m = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n";
    ASSERT_EQ_INT(feed_all(m, strlen(m), false, true, &why, &g), -EPIPE);
    m = "HTTP/1.1 200 OK\r\nContent-Le";
    ASSERT_EQ_INT(feed_all(m, strlen(m), false, true, &why, &g), -EPIPE);
    got_free(&g);
}

TEST(http_resp_callback_stop)
{
    const char *why = NULL;
    got g;
    got_init(&g);
    g.stop_at_headers = 1;
    const char *m = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
    ASSERT_EQ_INT(feed_all(m, strlen(m), false, false, &why, &g), -ECANCELED);
    ASSERT_EQ_INT(g.body.len, 0);
    got_free(&g);
}

/* ---------- client against a scripted loopback server ---------- */

/* The server: accepts connections, reads a request head (and a
 * Content-Length body), answers with the next scripted reply. A reply of
 * "" closes the connection without answering; "HANG" never answers;
 * "CLOSE-AFTER:" prefixes a reply after which the connection is closed. */
typedef struct srv {
    int lfd;
    int port;
    const char *replies[16];
    int nreplies, next;
    int accepted;
    bool threaded; /* a thread per connection (else one connection at a time) */
    char last_req[4096];
    char all_reqs[16384]; /* every request head, in order */
    pthread_t t;
} srv_t;

static void *srv_conn(srv_t *s, int fd)
{
    char b[8192];
    for (;;) {
        size_t have = 0;
        char *end = NULL;
        while (!end) {
            ssize_t n = read(fd, b + have, sizeof(b) - 1 - have);
            if (n <= 0) return NULL;
            have += (size_t)n;
            b[have] = 0;
            end = strstr(b, "\r\n\r\n");
        }
        size_t body_have = have - (size_t)(end + 4 - b);
        char *cl = strcasestr(b, "content-length:");
        size_t want = cl ? (size_t)atoi(cl + 15) : 0;
        while (body_have < want) {
            ssize_t n = read(fd, b + have, sizeof(b) - 1 - have);
            if (n <= 0) return NULL;
            have += (size_t)n;
            body_have += (size_t)n;
        }
        b[have] = 0;
        snprintf(s->last_req, sizeof(s->last_req), "%s", b);
        size_t al = strlen(s->all_reqs);
        snprintf(s->all_reqs + al, sizeof(s->all_reqs) - al, "%s", b);
        const char *rep = s->next < s->nreplies ? s->replies[s->next++] : "";
        if (!*rep) return NULL;
        if (!strcmp(rep, "HANG")) {
            sleep(30);
            return NULL;
        }
        bool close_after = !strncmp(rep, "CLOSE-AFTER:", 12);
        if (close_after) rep += 12;
        if (write(fd, rep, strlen(rep)) < 0) return NULL;
        if (close_after) return NULL;
    }
}

typedef struct srv_job {
    srv_t *s;
    int fd;
} srv_job;

static void *srv_conn_thread(void *arg)
{
    srv_job *j = arg;
    srv_conn(j->s, j->fd);
    close(j->fd);
    free(j);
    return NULL;
}

static void *srv_main(void *arg)
{
    srv_t *s = arg;
    for (;;) {
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0) return NULL;
        s->accepted++;
        if (s->threaded) {
            srv_job *j = malloc(sizeof(*j));
            j->s = s;
            j->fd = fd;
            pthread_t t;
            pthread_create(&t, NULL, srv_conn_thread, j);
            pthread_detach(t);
            continue;
        }
        srv_conn(s, fd);
        close(fd);
    }
}

/* The client tests run without the proxy variables of whoever runs them. */
static void clear_proxy_env(void)
{
    const char *names[] = {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                           "ALL_PROXY",  "no_proxy",   "NO_PROXY"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) unsetenv(names[i]);
}

static void srv_start(srv_t *s)
{
    signal(SIGPIPE, SIG_IGN);
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ASSERT_EQ_INT(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    ASSERT_EQ_INT(listen(s->lfd, 16), 0);
    socklen_t al = sizeof(a);
    getsockname(s->lfd, (struct sockaddr *)&a, &al);
    s->port = ntohs(a.sin_port);
    pthread_create(&s->t, NULL, srv_main, s);
}

typedef struct res {
    bool done;
    long status;
    int net_err;
    bool fatal;
    char error[300];
    char body[4096];
    buf_t streamed;
    int64_t retry_after_ms;
    int should_retry;
} res_t;

static void on_done(const http_result *r, void *arg)
{
    res_t *o = arg;
    o->done = true;
    o->status = r->status;
    o->net_err = r->net_err;
    o->fatal = r->fatal;
    o->retry_after_ms = r->retry_after_ms;
    o->should_retry = r->should_retry;
    snprintf(o->error, sizeof(o->error), "%s", r->error ? r->error : "");
    snprintf(o->body, sizeof(o->body), "%s", r->body && r->body->data ? r->body->data : "");
}

static int on_data(const char *d, size_t n, void *arg)
{
    res_t *o = arg;
    buf_append(&o->streamed, d, n);
    return 0;
}

static void run_req(loop_t *l, http_t *h, const char *url, const char *method, const char *body,
                    int64_t timeout_ms, size_t max_body, bool stream, res_t *o)
{
    memset(o, 0, sizeof(*o));
    buf_init(&o->streamed, 1 << 20);
    const char *hdrs[] = {"Authorization: Bearer sk-secret", "Accept: application/json", NULL};
    http_opts opts = {.method = method,
                      .url = url,
                      .headers = hdrs,
                      .body = body,
                      .body_len = body ? strlen(body) : 0,
                      .timeout_ms = timeout_ms,
                      .max_body = max_body,
                      .on_data = stream ? on_data : NULL,
                      .on_done = on_done,
                      .arg = o};
    shed_err err = {0};
    http_req_t *r = http_start(h, &opts, &err);
    if (!r) test_fail(__FILE__, __LINE__, "http_start: %s", err.msg);
    int64_t until = clock_mono_ms() + 20000;
    while (!o->done && clock_mono_ms() < until) loop_once(l, 100);
    ASSERT_TRUE(o->done);
}

TEST(http_client_keepalive_and_resend)
{
    static srv_t s; /* the server thread may outlive the test function */
    s.replies[s.nreplies++] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nRetry-After-Ms: 1500\r\nX-Should-Retry: true\r\n\r\nhi";
    s.replies[s.nreplies++] = "CLOSE-AFTER:HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    s.replies[s.nreplies++] = "HTTP/1.1 500 Oops\r\nContent-Length: 5\r\nRetry-After: 2\r\n\r\nerror";
    s.replies[s.nreplies++] = ""; /* closes the kept connection without an answer: resent */
    s.replies[s.nreplies++] = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlast";
    clear_proxy_env();
    srv_start(&s);
    loop_t *l = loop_new();
    http_t *h;
    shed_err err = {0};
    ASSERT_EQ_INT(http_new(l, &h, &err), 0);
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/x?beta=true", s.port);
    res_t o;
    run_req(l, h, url, "GET", NULL, 5000, 0, false, &o);
    ASSERT_EQ_INT(o.status, 200);
    ASSERT_EQ_INT(o.net_err, 0);
    ASSERT_EQ_STR(o.body, "hi");
    ASSERT_EQ_INT(o.retry_after_ms, 1500);
    ASSERT_EQ_INT(o.should_retry, 1);
    ASSERT_CONTAINS(s.last_req, "GET /v1/x?beta=true HTTP/1.1\r\n");
    ASSERT_CONTAINS(s.last_req, "Host: 127.0.0.1:");
    run_req(l, h, url, "POST", "{\"k\":1}", 5000, 0, false, &o);
    ASSERT_EQ_INT(o.status, 201);
    ASSERT_EQ_STR(o.body, "abc");
    ASSERT_EQ_INT(s.accepted, 1); /* the first connection was reused */
    ASSERT_CONTAINS(s.last_req, "Content-Length: 7\r\n\r\n{\"k\":1}");
    /* The server closed that one: the next request opens a new connection. */
    run_req(l, h, url, "POST", NULL, 5000, 0, false, &o);
    if (o.status != 500) test_fail(__FILE__, __LINE__, "got %ld %d %s", o.status, o.net_err, o.error);
    ASSERT_EQ_STR(o.body, "error");
    ASSERT_EQ_INT(o.retry_after_ms, 2000);
    ASSERT_EQ_INT(o.should_retry, -1);
    ASSERT_CONTAINS(s.last_req, "Content-Length: 0\r\n");
    ASSERT_EQ_INT(s.accepted, 2);
    /* The kept connection is dropped with the request unanswered: sent again on a new one. */
    run_req(l, h, url, "GET", NULL, 5000, 0, false, &o);
    ASSERT_EQ_INT(o.net_err, 0);
    ASSERT_EQ_STR(o.body, "last");
    ASSERT_EQ_INT(s.accepted, 3);
    http_free(h);
    loop_free(l);
    shutdown(s.lfd, SHUT_RDWR);
}

TEST(http_client_failures)
{
    static srv_t s; /* the server thread may outlive the test function */
    s.replies[s.nreplies++] = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789012345678901234567890123456789"
                              "012345678901234567890123456789012345678901234567890123456789";
    s.replies[s.nreplies++] = "CLOSE-AFTER:HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort";
    s.replies[s.nreplies++] = "CLOSE-AFTER:HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n";
    s.replies[s.nreplies++] = "HANG";
    clear_proxy_env();
    srv_start(&s);
    loop_t *l = loop_new();
    http_t *h;
    shed_err err = {0};
    ASSERT_EQ_INT(http_new(l, &h, &err), 0);
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/p", s.port);
    res_t o;
    run_req(l, h, url, "GET", NULL, 5000, 10, false, &o); /* the body bound */
    ASSERT_EQ_INT(o.net_err, -EMSGSIZE);
    ASSERT_CONTAINS(o.error, "larger than 10 bytes");
    run_req(l, h, url, "GET", NULL, 5000, 0, false, &o); /* closed early */
    ASSERT_EQ_INT(o.net_err, -EPIPE);
    ASSERT_CONTAINS(o.error, "closed before the response was complete");
    run_req(l, h, url, "GET", NULL, 5000, 0, false, &o); /* bad chunk size */
    ASSERT_EQ_INT(o.net_err, -EPROTO);
    ASSERT_CONTAINS(o.error, "bad chunk size");
    run_req(l, h, url, "GET", NULL, 300, 0, false, &o); /* no answer */
    ASSERT_EQ_INT(o.net_err, -ETIMEDOUT);
    ASSERT_EQ_INT(o.status, 0);
    ASSERT_CONTAINS(o.error, "timed out");
    ASSERT_NOT_CONTAINS(o.error, "sk-secret");
    /* Nothing listens: refused. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(fd, (struct sockaddr *)&a, sizeof(a));
    socklen_t al = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &al);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/p", ntohs(a.sin_port));
    run_req(l, h, url, "GET", NULL, 5000, 0, false, &o);
    close(fd);
    ASSERT_EQ_INT(o.net_err, -ECONNREFUSED);
    ASSERT_CONTAINS(o.error, "connect to 127.0.0.1:");
    /* Bad URLs and headers are refused at the start. */
    http_opts bad = {.url = "ftp://x/", .on_done = on_done, .arg = &o};
    ASSERT_TRUE(http_start(h, &bad, &err) == NULL);
    bad.url = "http://user@host/";
    ASSERT_TRUE(http_start(h, &bad, &err) == NULL);
    bad.url = "http://host:99999/";
    ASSERT_TRUE(http_start(h, &bad, &err) == NULL);
    const char *inj[] = {"X: a\r\nInjected: b", NULL};
    bad.url = "http://127.0.0.1:1/";
    bad.headers = inj;
    ASSERT_TRUE(http_start(h, &bad, &err) == NULL);
    http_free(h);
    loop_free(l);
    shutdown(s.lfd, SHUT_RDWR);
}

TEST(http_client_resolves_and_streams)
{
    static srv_t s; /* the server thread may outlive the test function */
    s.replies[s.nreplies++] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "7\r\ndata: 1\r\n8\r\n\n\ndata: \r\n3\r\n2\n\n\r\n0\r\n\r\n";
    s.replies[s.nreplies++] = "HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy";
    clear_proxy_env();
    srv_start(&s);
    loop_t *l = loop_new();
    http_t *h;
    shed_err err = {0};
    ASSERT_EQ_INT(http_new(l, &h, &err), 0);
    char url[128];
    /* "localhost": resolved on a thread (127.0.0.1 first). */
    snprintf(url, sizeof(url), "http://localhost:%d/stream", s.port);
    res_t o;
    run_req(l, h, url, "GET", NULL, 0, 0, true, &o);
    ASSERT_EQ_INT(o.net_err, 0);
    ASSERT_EQ_INT(o.status, 200);
    ASSERT_EQ_STR(o.streamed.data, "data: 1\n\ndata: 2\n\n");
    ASSERT_CONTAINS(s.last_req, "Host: localhost:");
    /* A non-2xx answer to a stream is buffered, not streamed. */
    buf_free(&o.streamed);
    run_req(l, h, url, "GET", NULL, 0, 0, true, &o);
    ASSERT_EQ_INT(o.status, 503);
    ASSERT_EQ_STR(o.body, "busy");
    ASSERT_EQ_INT(o.streamed.len, 0);
    ASSERT_EQ_INT(s.accepted, 1);
    buf_free(&o.streamed);
    /* A name that does not resolve. */
    run_req(l, h, "http://no-such-host.invalid/x", "GET", NULL, 5000, 0, false, &o);
    ASSERT_TRUE(o.net_err != 0);
    ASSERT_CONTAINS(o.error, "no-such-host.invalid");
    http_free(h);
    loop_free(l);
    shutdown(s.lfd, SHUT_RDWR);
}

/* ---------- forward proxy: the environment ---------- */

typedef struct fake_env {
    const char *kv[16]; /* name, value, name, value, ..., NULL */
} fake_env;

static const char *fake_get(const char *name, void *arg)
{
    fake_env *e = arg;
    for (int i = 0; e->kv[i]; i += 2)
        if (!strcmp(e->kv[i], name)) return e->kv[i + 1];
    return NULL;
}

/* Load; returns rc, the https proxy's shown URL and var, the http one's. */
static int load(fake_env *e, http_proxy_env *pe, shed_err *err)
{
    memset(err, 0, sizeof(*err));
    return http_proxy_env_load(pe, fake_get, e, err);
}

TEST(http_proxy_env_precedence)
{
    http_proxy_env pe;
    shed_err err;
    /* Nothing set: direct. */
    fake_env e0 = {{NULL}};
    ASSERT_EQ_INT(load(&e0, &pe, &err), 0);
    ASSERT_FALSE(pe.https.set);
    ASSERT_FALSE(pe.http.set);
    ASSERT_TRUE(http_proxy_for(&pe, true, "api.example") == NULL);
    http_proxy_env_free(&pe);
    /* Lowercase first for https, then uppercase, then all_proxy, then ALL_PROXY. */
    fake_env e1 = {{"https_proxy", "http://lower:1", "HTTPS_PROXY", "http://upper:2", "all_proxy", "all:3",
                    "ALL_PROXY", "http://ALL:4", NULL}};
    ASSERT_EQ_INT(load(&e1, &pe, &err), 0);
    ASSERT_EQ_STR(pe.https.var, "https_proxy");
    ASSERT_EQ_STR(pe.https.shown, "http://lower:1");
    ASSERT_EQ_STR(pe.http.var, "all_proxy"); /* no http_proxy: all_proxy */
    ASSERT_EQ_STR(pe.http.shown, "http://all:3");
    http_proxy_env_free(&pe);
    fake_env e2 = {{"https_proxy", "", "HTTPS_PROXY", "upper:2", "ALL_PROXY", "http://ALL:4", NULL}};
    ASSERT_EQ_INT(load(&e2, &pe, &err), 0);
    ASSERT_EQ_STR(pe.https.var, "HTTPS_PROXY"); /* an empty variable counts as unset */
    ASSERT_EQ_STR(pe.https.hostport, "upper:2");
    ASSERT_EQ_STR(pe.http.var, "ALL_PROXY");
    http_proxy_env_free(&pe);
    /* HTTP_PROXY (uppercase) is never read, as curl: a CGI request can set it. */
    fake_env e3 = {{"HTTP_PROXY", "http://evil:3128", NULL}};
    ASSERT_EQ_INT(load(&e3, &pe, &err), 0);
    ASSERT_FALSE(pe.http.set);
    ASSERT_FALSE(pe.https.set);
    http_proxy_env_free(&pe);
    fake_env e4 = {{"http_proxy", "http://p:8080/", "HTTPS_PROXY", "p6", "NO_PROXY", "b", "no_proxy", "a", NULL}};
    ASSERT_EQ_INT(load(&e4, &pe, &err), 0);
    ASSERT_EQ_STR(pe.http.var, "http_proxy");
    ASSERT_EQ_STR(pe.http.hostport, "p:8080");
    ASSERT_EQ_INT(pe.https.port, 1080); /* curl's default proxy port */
    ASSERT_EQ_STR(pe.no_proxy, "a");    /* no_proxy before NO_PROXY */
    ASSERT_EQ_STR(pe.no_proxy_var, "no_proxy");
    ASSERT_TRUE(http_proxy_for(&pe, true, "a") == NULL);
    ASSERT_TRUE(http_proxy_for(&pe, true, "b") == &pe.https);
    ASSERT_TRUE(http_proxy_for(&pe, false, "x.b") == &pe.http);
    http_proxy_env_free(&pe);
}

TEST(http_proxy_env_urls_and_refusals)
{
    http_proxy p;
    shed_err err = {0};
    /* User information: %-decoded, Basic, never in the shown URL. */
    ASSERT_EQ_INT(http_proxy_parse("HTTP://us%65r:p%40ss:w@[::1]:3128/ignored", "HTTPS_PROXY", &p, &err), 0);
    ASSERT_EQ_STR(p.host, "::1");
    ASSERT_EQ_STR(p.hostport, "[::1]:3128");
    ASSERT_EQ_STR(p.shown, "http://[::1]:3128");
    ASSERT_TRUE(p.numeric);
    ASSERT_EQ_STR(p.auth, "Basic dXNlcjpwQHNzOnc="); /* base64("user:p@ss:w") */
    http_proxy_clear(&p);
    ASSERT_EQ_INT(http_proxy_parse("alice@proxy.corp", "http_proxy", &p, &err), 0);
    ASSERT_EQ_STR(p.auth, "Basic YWxpY2U6"); /* "alice:" */
    ASSERT_EQ_STR(p.hostport, "proxy.corp:1080");
    ASSERT_FALSE(p.numeric);
    http_proxy_clear(&p);
    struct {
        const char *url, *want;
    } bad[] = {
        {"https://u:secretpw@proxy:443", "an https:// proxy (TLS to the proxy) is not supported"},
        {"socks5://u:secretpw@proxy:1080", "SOCKS proxies (socks5://) are not supported"},
        {"socks5h://proxy:1080", "SOCKS proxies (socks5h://) are not supported"},
        {"socks4a://proxy", "SOCKS"},
        {"ftp://proxy", "unsupported proxy scheme"},
        {"http://u:secretpw@proxy:99999", "bad port"},
        {"http://proxy:12x", "bad port"},
        {"http://u:secretpw@", "bad host"},
        {"http://[::1", "bad host"},
        {"http://[proxy]:80", "bad host"},
        {"http://pro xy:80", "bad host"},
        {"http://u%zz:secretpw@proxy", "bad %-escape"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&err, 0, sizeof(err));
        int rc = http_proxy_parse(bad[i].url, "HTTPS_PROXY", &p, &err);
        if (rc != -EINVAL || !strstr(err.msg, bad[i].want) || !strstr(err.msg, "HTTPS_PROXY") ||
            strstr(err.msg, "secretpw"))
            test_fail(__FILE__, __LINE__, "%s: rc %d: %s", bad[i].url, rc, err.msg);
        ASSERT_TRUE(p.auth == NULL);
    }
    /* A refused variable refuses the whole load, naming it; one that would
     * not be used (HTTPS_PROXY set: all_proxy is not read for https) is
     * still read for http:// URLs. */
    http_proxy_env pe;
    fake_env e = {{"HTTPS_PROXY", "socks5h://proxy:1080", NULL}};
    ASSERT_EQ_INT(load(&e, &pe, &err), -EINVAL);
    ASSERT_CONTAINS(err.msg, "HTTPS_PROXY: SOCKS proxies");
    fake_env e2 = {{"https_proxy", "http://ok:1", "all_proxy", "socks5://x", NULL}};
    ASSERT_EQ_INT(load(&e2, &pe, &err), -EINVAL);
    ASSERT_CONTAINS(err.msg, "all_proxy");
    fake_env e3 = {{"https_proxy", "http://ok:1", "http_proxy", "http://ok:2", "all_proxy", "socks5://x", NULL}};
    ASSERT_EQ_INT(load(&e3, &pe, &err), 0); /* all_proxy is never used here */
    http_proxy_env_free(&pe);
}

TEST(http_proxy_noproxy_matching)
{
    struct {
        const char *list, *host;
        bool match;
    } cases[] = {
        {"*", "anything.example", true},
        {"*", "10.0.0.1", true},
        {"", "a.example", false},
        {NULL, "a.example", false},
        {"*.example", "a.example", false}, /* "*" is only a wildcard alone */
        {"example.com", "example.com", true},
        {"example.com", "www.example.com", true},
        {"example.com", "a.b.example.com", true},
        {"example.com", "notexample.com", false},
        {"example.com", "example.com.org", false},
        {".example.com", "example.com", true}, /* the leading dot is optional */
        {".example.com", "www.example.com", true},
        {"EXAMPLE.com.", "www.Example.COM.", true}, /* case and trailing dots ignored */
        {"a.example, b.example ,c.example", "b.example", true},
        {"a.example,,c.example", "c.example", true},
        {"a.example b.example", "b.example", true},
        {"example.com:8443", "example.com", true}, /* the port of an entry is ignored */
        {"localhost", "localhost", true},
        {"localhost", "127.0.0.1", false}, /* names are never resolved */
        {"127.0.0.1", "127.0.0.1", true},
        {"127.0.0.1", "127.0.0.10", false},
        {"127.0.0.1:80", "127.0.0.1", true},
        {"10.0.0.0/8", "10.200.3.4", true},
        {"10.0.0.0/8", "11.0.0.1", false},
        {"192.168.0.0/16", "192.168.255.1", true},
        {"192.168.0.0/17", "192.168.128.1", false},
        {"0.0.0.0/0", "8.8.8.8", true},
        {"10.0.0.0/33", "10.0.0.1", false},
        {"10.0.0.0/x", "10.0.0.1", false},
        {"10.0.0.0/8", "ten.example", false},
        {"0.0.1", "10.0.0.1", false}, /* an address is not a domain */
        {"::1", "::1", true},
        {"::1", "[::1]", true},
        {"[::1]", "::1", true},
        {"[::1]:8080", "::1", true},
        {"fd00::/8", "fd12:3456::1", true},
        {"fd00::/8", "fe80::1", false},
        {"2001:db8::/33", "2001:db8:7fff::1", true},
        {"2001:db8::/33", "2001:db8:8000::1", false},
        {"[2001:db8::]/32", "2001:db8:1::1", true},
        {"10.0.0.0/8", "::ffff:10.0.0.1", false}, /* families do not mix */
        {"::1", "127.0.0.1", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (http_noproxy_match(cases[i].list, cases[i].host) != cases[i].match)
            test_fail(__FILE__, __LINE__, "NO_PROXY=%s host %s: want %s", cases[i].list ? cases[i].list : "(unset)",
                      cases[i].host, cases[i].match ? "match" : "no match");
}

/* ---------- forward proxy: the client through a scripted proxy ---------- */

static void run_req_env(loop_t *l, http_t *h, const char *url, res_t *o)
{
    run_req(l, h, url, "GET", NULL, 5000, 0, false, o);
}

TEST(http_proxy_client_absolute_form_and_keying)
{
    static srv_t px; /* plays the proxy; a thread per connection */
    px.threaded = true;
    px.replies[px.nreplies++] = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na";
    px.replies[px.nreplies++] = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb";
    px.replies[px.nreplies++] = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nc";
    px.replies[px.nreplies++] = "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n";
    clear_proxy_env();
    srv_start(&px);
    char v[128];
    snprintf(v, sizeof(v), "http://al%%69ce:s3cr%%40t@127.0.0.1:%d", px.port);
    setenv("http_proxy", v, 1);
    setenv("HTTPS_PROXY", "http://127.0.0.1:1", 1);
    loop_t *l = loop_new();
    http_t *h;
    shed_err err = {0};
    ASSERT_EQ_INT(http_new(l, &h, &err), 0);
    res_t o;
    /* api.invalid never resolves: only the proxy's name is resolved here. */
    run_req_env(l, h, "http://api.invalid:8080/v1/x?beta=true", &o);
    if (o.net_err) test_fail(__FILE__, __LINE__, "%s", o.error);
    ASSERT_EQ_STR(o.body, "a");
    ASSERT_CONTAINS(px.last_req, "GET http://api.invalid:8080/v1/x?beta=true HTTP/1.1\r\n");
    ASSERT_CONTAINS(px.last_req, "Host: api.invalid:8080\r\n");
    ASSERT_CONTAINS(px.last_req, "Proxy-Authorization: Basic YWxpY2U6czNjckB0\r\n"); /* alice:s3cr@t */
    ASSERT_CONTAINS(px.last_req, "Authorization: Bearer sk-secret\r\n");
    /* The same origin again: the kept connection. */
    run_req_env(l, h, "http://api.invalid:8080/v1/y", &o);
    ASSERT_EQ_STR(o.body, "b");
    ASSERT_EQ_INT(px.accepted, 1);
    /* Another origin through the same proxy: never that connection. */
    run_req_env(l, h, "http://other.invalid/z", &o);
    ASSERT_EQ_STR(o.body, "c");
    ASSERT_CONTAINS(px.last_req, "GET http://other.invalid/z HTTP/1.1\r\nHost: other.invalid\r\n");
    ASSERT_EQ_INT(px.accepted, 2);
    /* The proxy's 407 to a plain request: a clear error, fatal, no credentials. */
    run_req_env(l, h, "http://api.invalid:8080/v1/w", &o);
    ASSERT_EQ_INT(o.net_err, -EACCES);
    ASSERT_TRUE(o.fatal);
    ASSERT_EQ_INT(o.status, 0);
    ASSERT_CONTAINS(o.error, "proxy http://127.0.0.1:");
    ASSERT_CONTAINS(o.error, "(from http_proxy)");
    ASSERT_CONTAINS(o.error, "407");
    ASSERT_NOT_CONTAINS(o.error, "s3cr");
    ASSERT_NOT_CONTAINS(o.error, "YWxpY2U6");
    http_free(h);
    loop_free(l);
    shutdown(px.lfd, SHUT_RDWR);
}

TEST(http_proxy_client_connect_refusals)
{
    static srv_t px;
    px.threaded = true;
    px.replies[px.nreplies++] = "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic "
                                "realm=\"p\"\r\nContent-Length: 5\r\n\r\ndenied";
    px.replies[px.nreplies++] = "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
    px.replies[px.nreplies++] = "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n";
    px.replies[px.nreplies++] = ""; /* closes without an answer */
    px.replies[px.nreplies++] = "HTTP/1.1 200 Connection established\r\n\r\nnot TLS";
    px.replies[px.nreplies++] = "HANG"; /* never answers CONNECT */
    px.replies[px.nreplies++] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    clear_proxy_env();
    srv_start(&px);
    char v[128];
    snprintf(v, sizeof(v), "http://bob:pw-secret@127.0.0.1:%d", px.port);
    setenv("https_proxy", v, 1);
    setenv("NO_PROXY", "direct.invalid,127.0.0.0/8", 1);
    loop_t *l = loop_new();
    http_t *h;
    shed_err err = {0};
    ASSERT_EQ_INT(http_new(l, &h, &err), 0);
    res_t o;
    run_req_env(l, h, "https://api.invalid/v1/poll", &o);
    ASSERT_EQ_INT(o.net_err, -EACCES);
    ASSERT_TRUE(o.fatal);
    ASSERT_CONTAINS(o.error, "refused CONNECT to api.invalid: HTTP 407");
    ASSERT_CONTAINS(o.error, "(from https_proxy)");
    ASSERT_CONTAINS(o.error, "(authentication failed); correct the user:password in https_proxy");
    ASSERT_NOT_CONTAINS(o.error, "pw-secret");
    /* What the proxy saw: CONNECT with its credentials, never the request's own headers. */
    ASSERT_CONTAINS(px.last_req, "CONNECT api.invalid:443 HTTP/1.1\r\nHost: api.invalid:443\r\n");
    ASSERT_CONTAINS(px.last_req, "Proxy-Authorization: Basic Ym9iOnB3LXNlY3JldA==\r\n");
    ASSERT_NOT_CONTAINS(px.last_req, "sk-secret");
    ASSERT_NOT_CONTAINS(px.last_req, "/v1/poll");
    run_req_env(l, h, "https://api.invalid:8443/v1/poll", &o);
    ASSERT_EQ_INT(o.net_err, -EACCES);
    ASSERT_TRUE(o.fatal);
    ASSERT_CONTAINS(o.error, "refused CONNECT to api.invalid:8443: HTTP 403");
    ASSERT_CONTAINS(o.error, "NO_PROXY");
    ASSERT_CONTAINS(px.last_req, "CONNECT api.invalid:8443 HTTP/1.1\r\n");
    run_req_env(l, h, "https://api.invalid/v1/poll", &o);
    ASSERT_EQ_INT(o.net_err, -ECONNREFUSED);
    ASSERT_FALSE(o.fatal); /* a 502: the proxy could not reach it this time */
    ASSERT_CONTAINS(o.error, "HTTP 502");
    run_req_env(l, h, "https://api.invalid/v1/poll", &o);
    ASSERT_EQ_INT(o.net_err, -EPIPE);
    ASSERT_CONTAINS(o.error, "closed the connection without answering CONNECT api.invalid");
    run_req_env(l, h, "https://api.invalid/v1/poll", &o);
    ASSERT_EQ_INT(o.net_err, -EPROTO);
    ASSERT_CONTAINS(o.error, "sent bytes after its answer to CONNECT");
    run_req(l, h, "https://api.invalid/v1/poll", "GET", NULL, 300, 0, false, &o);
    ASSERT_EQ_INT(o.net_err, -ETIMEDOUT);
    ASSERT_CONTAINS(o.error, "(connecting) through the proxy http://127.0.0.1:");
    ASSERT_EQ_INT(px.accepted, 6);
    /* NO_PROXY: an address in 127.0.0.0/8 goes direct (here to the same
     * server, which sees an origin-form request). */
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/direct", px.port);
    setenv("http_proxy", "http://127.0.0.1:1", 1); /* would fail: nothing listens on port 1 */
    http_free(h);
    ASSERT_EQ_INT(http_new(l, &h, &err), 0);
    run_req_env(l, h, url, &o);
    if (o.net_err) test_fail(__FILE__, __LINE__, "%s", o.error);
    ASSERT_EQ_STR(o.body, "ok");
    ASSERT_CONTAINS(px.last_req, "GET /direct HTTP/1.1\r\n");
    ASSERT_NOT_CONTAINS(px.last_req, "Proxy-Authorization");
    /* The proxy down: the error names it (without its credentials) and the origin. */
    run_req_env(l, h, "http://api.invalid/x", &o);
    ASSERT_EQ_INT(o.net_err, -ECONNREFUSED);
    ASSERT_FALSE(o.fatal);
    ASSERT_CONTAINS(o.error, "connect to the proxy http://127.0.0.1:1 (from http_proxy) for api.invalid: Connection refused");
    http_free(h);
    /* An unsupported proxy refuses the client at its start, naming the variable. */
    setenv("https_proxy", "socks5h://u:pw-secret@127.0.0.1:1080", 1);
    ASSERT_EQ_INT(http_new(l, &h, &err), -EINVAL);
    ASSERT_CONTAINS(err.msg, "https_proxy: SOCKS proxies (socks5h://) are not supported");
    ASSERT_NOT_CONTAINS(err.msg, "pw-secret");
    loop_free(l);
    shutdown(px.lfd, SHUT_RDWR);
}
