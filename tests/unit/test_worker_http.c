/* The worker's HTTP/1.1 client: the response parser (worker/http_resp.c) fed
 * at every split point, its bounds and refusals; the client (worker/http.c)
 * against a small scripted server on loopback: keep-alive reuse, a request
 * resent after the server closed an idle connection, timeouts, the body
 * bound, a refused connect, name resolution, a streamed chunked body. */
#include "test.h"

#include "base/buf.h"
#include "base/clock.h"
#include "base/loop.h"
#include "worker/http.h"
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
    char last_req[4096];
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

static void *srv_main(void *arg)
{
    srv_t *s = arg;
    for (;;) {
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0) return NULL;
        s->accepted++;
        srv_conn(s, fd);
        close(fd);
    }
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
