/* In-process tests of the egress proxy: the test creates the listening
 * sockets init would create (real sockets on 127.0.0.x), attaches them, runs
 * the egress on a loop thread, and drives real clients (HTTP CONNECT, plain
 * HTTP, SOCKS5, DNS over UDP) against real upstream servers on loopback. */
#include "test.h"

#include "base/cleanup.h"
#include "base/json.h"
#include "base/loop.h"
#include "egress/egress.h"
#include "egress/egress_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---------- fixture ---------- */

#define MAX_EVENTS 512
typedef struct {
    char proto[16], host[256], address[64], rule[EGRESS_RULE_MAX], error[128];
    int port;
    bool allowed;
    uint64_t up, down;
} ev_t;

static struct {
    loop_t *loop;
    egress_t *eg;
    egress_policy *pol;
    pthread_t th;
    int stopfd;
    int http_port, socks_port, dns_port;
    struct sockaddr_in http_sa, socks_sa, dns_sa;
    pthread_mutex_t mu;
    ev_t ev[MAX_EVENTS];
    int nev;
} F;

static void on_event(const egress_event *e, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&F.mu);
    if (F.nev < MAX_EVENTS) {
        ev_t *v = &F.ev[F.nev++];
        snprintf(v->proto, sizeof(v->proto), "%s", e->proto);
        snprintf(v->host, sizeof(v->host), "%s", e->host);
        snprintf(v->address, sizeof(v->address), "%s", e->address ? e->address : "");
        snprintf(v->rule, sizeof(v->rule), "%s", e->rule ? e->rule : "");
        snprintf(v->error, sizeof(v->error), "%s", e->error ? e->error : "");
        v->port = e->port;
        v->allowed = e->allowed;
        v->up = e->bytes_up;
        v->down = e->bytes_down;
    }
    pthread_mutex_unlock(&F.mu);
}

/* Wait (up to 5 s) for an event about host and return a copy. */
static ev_t wait_event(const char *proto, const char *host)
{
    for (int i = 0; i < 500; i++) {
        pthread_mutex_lock(&F.mu);
        for (int k = 0; k < F.nev; k++) {
            if (strcmp(F.ev[k].host, host) == 0 && strcmp(F.ev[k].proto, proto) == 0) {
                ev_t v = F.ev[k];
                F.ev[k].host[0] = '\0'; /* consumed */
                pthread_mutex_unlock(&F.mu);
                return v;
            }
        }
        pthread_mutex_unlock(&F.mu);
        usleep(10000);
    }
    test_fail(__FILE__, __LINE__, "no %s event for %s", proto, host);
}

static int listen_on(const char *ip, int type, struct sockaddr_in *sa)
{
    int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    ASSERT_TRUE(fd >= 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, ip, &a.sin_addr);
    ASSERT_EQ_INT(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    if (type == SOCK_STREAM) ASSERT_EQ_INT(listen(fd, 512), 0);
    socklen_t sl = sizeof(*sa);
    getsockname(fd, (struct sockaddr *)sa, &sl);
    return fd;
}

static void on_stop(loop_t *l, int fd, uint32_t ev, void *arg)
{
    (void)fd;
    (void)ev;
    (void)arg;
    loop_stop(l);
}

static void *loop_main(void *arg)
{
    (void)arg;
    loop_run(F.loop);
    return NULL;
}

static egress_policy *policy(const char *json)
{
    shed_err err = {0};
    _cleanup_json_ json_t *j = json_parse(json, strlen(json), 1 << 20, 16, &err);
    if (!j) test_fail(__FILE__, __LINE__, "policy json: %s", err.msg);
    egress_policy *p = NULL;
    if (egress_policy_parse(j, &p, &err) < 0) test_fail(__FILE__, __LINE__, "policy: %s", err.msg);
    return p;
}

/* Start the egress with a policy (JSON with %d replaced by nothing: the test
 * builds it). Listeners on 127.0.0.2 stand in for init's. */
static void start(const char *pol_json)
{
    signal(SIGPIPE, SIG_IGN);
    pthread_mutex_init(&F.mu, NULL);
    F.loop = loop_new();
    ASSERT_TRUE(F.loop != NULL);
    shed_err err = {0};
    ASSERT_EQ_INT(egress_new(F.loop, on_event, NULL, &F.eg, &err), 0);
    F.pol = policy(pol_json);
    int h = listen_on("127.0.0.2", SOCK_STREAM, &F.http_sa);
    int s = listen_on("127.0.0.2", SOCK_STREAM, &F.socks_sa);
    int d = listen_on("127.0.0.2", SOCK_DGRAM, &F.dns_sa);
    if (egress_attach(F.eg, "sess_test", F.pol, h, s, d, &err) < 0)
        test_fail(__FILE__, __LINE__, "attach: %s", err.msg);
    F.stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    loop_add(F.loop, F.stopfd, EPOLLIN, on_stop, NULL);
    pthread_create(&F.th, NULL, loop_main, NULL);
}

static void stop(void)
{
    uint64_t one = 1;
    ssize_t w = write(F.stopfd, &one, sizeof(one));
    (void)w;
    pthread_join(F.th, NULL);
    loop_del(F.loop, F.stopfd);
    close(F.stopfd);
    egress_free(F.eg);
    egress_policy_free(F.pol);
    loop_free(F.loop);
}

/* ---------- upstream servers (threads, blocking) ---------- */

typedef struct {
    int lfd;
    int port;
    int mode; /* 0 echo, 1 http */
    pthread_t th;
    char last_head[8192];
    pthread_mutex_t mu;
} srv_t;

static void *serve_one(void *arg)
{
    intptr_t pair = (intptr_t)arg;
    int fd = (int)(pair & 0xffffffff);
    int mode = (int)(pair >> 32);
    srv_t *sv = NULL;
    (void)sv;
    char buf[65536];
    if (mode == 0) {
        for (;;) {
            ssize_t n = read(fd, buf, sizeof(buf));
            if (n <= 0) break;
            for (ssize_t o = 0; o < n;) {
                ssize_t w = write(fd, buf + o, (size_t)(n - o));
                if (w <= 0) goto out;
                o += w;
            }
        }
        shutdown(fd, SHUT_WR);
        /* drain until the peer closes */
        while (read(fd, buf, sizeof(buf)) > 0) {}
    }
out:
    close(fd);
    return NULL;
}

static srv_t *http_srv_global;

static void *http_one(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[8192];
    size_t len = 0;
    while (len < sizeof(buf) - 1) {
        ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (n <= 0) break;
        len += (size_t)n;
        buf[len] = '\0';
        if (strstr(buf, "\r\n\r\n")) break;
    }
    buf[len] = '\0';
    pthread_mutex_lock(&http_srv_global->mu);
    snprintf(http_srv_global->last_head, sizeof(http_srv_global->last_head), "%s", buf);
    pthread_mutex_unlock(&http_srv_global->mu);
    char resp[256];
    int n = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
    ssize_t w = write(fd, resp, (size_t)n);
    (void)w;
    close(fd);
    return NULL;
}

/* Recording upstreams: everything any of them receives, in order. */
static struct {
    pthread_mutex_t mu;
    char *data;
    size_t len;
    int conns;
} REC = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void rec_add(const char *p, size_t n)
{
    pthread_mutex_lock(&REC.mu);
    REC.data = realloc(REC.data, REC.len + n + 1);
    memcpy(REC.data + REC.len, p, n);
    REC.len += n;
    REC.data[REC.len] = '\0';
    pthread_mutex_unlock(&REC.mu);
}

static void rec_reset(void)
{
    pthread_mutex_lock(&REC.mu);
    REC.len = 0;
    REC.conns = 0;
    if (REC.data) REC.data[0] = '\0';
    pthread_mutex_unlock(&REC.mu);
}

static void write_str(int fd, const char *s)
{
    for (size_t o = 0, n = strlen(s); o < n;) {
        ssize_t w = write(fd, s + o, n - o);
        if (w <= 0) return;
        o += (size_t)w;
    }
}

/* mode 2: record until EOF, then answer (an upstream that would serve any
 * number of pipelined requests). mode 3: answer the head with 101 and echo.
 * mode 4: answer the head with a keep-alive 200 (ignoring Connection:
 * close), then record what else comes until EOF. */
static void *rec_one(void *arg)
{
    intptr_t pair = (intptr_t)arg;
    int fd = (int)(pair & 0xffffffff);
    int mode = (int)(pair >> 32);
    pthread_mutex_lock(&REC.mu);
    REC.conns++;
    pthread_mutex_unlock(&REC.mu);
    char buf[65536];
    if (mode == 3 || mode == 4) {
        size_t hl = 0;
        while (hl < 4 || memcmp(buf + hl - 4, "\r\n\r\n", 4) != 0) {
            if (hl == sizeof(buf) || read(fd, buf + hl, 1) != 1) goto out;
            hl++;
        }
        rec_add(buf, hl);
        write_str(fd, mode == 3 ? "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n"
                                  "Connection: Upgrade\r\n\r\n"
                                : "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    }
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n <= 0) break;
        rec_add(buf, (size_t)n);
        if (mode == 3 && write(fd, buf, (size_t)n) != n) break;
    }
    if (mode == 2) write_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
out:
    close(fd);
    return NULL;
}

static void *srv_main(void *arg)
{
    srv_t *sv = arg;
    for (;;) {
        int fd = accept4(sv->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) return NULL;
        pthread_t t;
        if (sv->mode == 0)
            pthread_create(&t, NULL, serve_one, (void *)(intptr_t)fd);
        else if (sv->mode >= 2)
            pthread_create(&t, NULL, rec_one, (void *)((intptr_t)fd | ((intptr_t)sv->mode << 32)));
        else
            pthread_create(&t, NULL, http_one, (void *)(intptr_t)fd);
        pthread_detach(t);
    }
}

static srv_t *srv_start(int mode)
{
    srv_t *sv = calloc(1, sizeof(*sv));
    struct sockaddr_in sa;
    sv->lfd = listen_on("127.0.0.1", SOCK_STREAM, &sa);
    sv->port = ntohs(sa.sin_port);
    sv->mode = mode;
    pthread_mutex_init(&sv->mu, NULL);
    if (mode == 1) http_srv_global = sv;
    pthread_create(&sv->th, NULL, srv_main, sv);
    pthread_detach(sv->th);
    return sv;
}

/* ---------- clients ---------- */

static int dial(const struct sockaddr_in *sa)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_TRUE(fd >= 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    ASSERT_EQ_INT(connect(fd, (const struct sockaddr *)sa, sizeof(*sa)), 0);
    return fd;
}

static void send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w <= 0) test_fail(__FILE__, __LINE__, "send: %s", strerror(errno));
        c += w;
        n -= (size_t)w;
    }
}

static void send_str(int fd, const char *s)
{
    send_all(fd, s, strlen(s));
}

/* Read until EOF (or cap); returns malloc'd NUL-terminated text. */
static char *read_all(int fd, size_t cap, size_t *outlen)
{
    char *b = malloc(cap + 1);
    size_t len = 0;
    while (len < cap) {
        ssize_t n = read(fd, b + len, cap - len);
        if (n <= 0) break;
        len += (size_t)n;
    }
    b[len] = '\0';
    if (outlen) *outlen = len;
    return b;
}

/* Read an HTTP response head (up to the blank line). */
static void read_head(int fd, char *out, size_t cap)
{
    size_t len = 0;
    while (len < cap - 1) {
        ssize_t n = read(fd, out + len, 1);
        if (n <= 0) break;
        len++;
        out[len] = '\0';
        if (len >= 4 && memcmp(out + len - 4, "\r\n\r\n", 4) == 0) break;
    }
    out[len] = '\0';
}

static int connect_via(const char *authority, char *head, size_t cap)
{
    int fd = dial(&F.http_sa);
    char req[512];
    snprintf(req, sizeof(req), "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", authority, authority);
    send_str(fd, req);
    read_head(fd, head, cap);
    return fd;
}

static void echo_roundtrip(int fd, const char *msg)
{
    send_str(fd, msg);
    char got[256] = "";
    size_t want = strlen(msg), len = 0;
    while (len < want) {
        ssize_t n = read(fd, got + len, want - len);
        if (n <= 0) break;
        len += (size_t)n;
    }
    got[len] = '\0';
    ASSERT_EQ_STR(got, msg);
}

static const char *BASE_POLICY =
    "{\"allowedDomains\":[\"ok.test\",\"*.example.test\",\"private.test\",\"127.0.0.1\","
    "\"gone.test\"],"
    " \"deniedDomains\":[\"bad.example.test\"],"
    " \"staticHosts\":{\"ok.test\":\"127.0.0.1\",\"a.example.test\":\"127.0.0.1\","
    "   \"example.test\":\"127.0.0.1\",\"evilexample.test\":\"127.0.0.1\","
    "   \"bad.example.test\":\"127.0.0.1\",\"private.test\":[\"10.1.2.3\",\"fd00::1\"],"
    "   \"gone.test\":\"127.0.0.1\"},"
    " \"allowCidrs\":[\"127.0.0.0/8\"], \"headerTimeoutMs\":400, \"connectTimeoutMs\":2000}";

/* ---------- tests ---------- */

TEST(egress_connect_allowed_relays_bytes)
{
    srv_t *echo = srv_start(0);
    start(BASE_POLICY);
    char auth[64], head[1024];
    snprintf(auth, sizeof(auth), "ok.test:%d", echo->port);
    int fd = connect_via(auth, head, sizeof(head));
    ASSERT_CONTAINS(head, "HTTP/1.1 200");
    echo_roundtrip(fd, "ping through the tunnel");
    shutdown(fd, SHUT_WR);
    size_t n;
    free(read_all(fd, 1024, &n));
    ASSERT_EQ_INT(n, 0);
    close(fd);
    ev_t e = wait_event("connect", "ok.test");
    ASSERT_TRUE(e.allowed);
    ASSERT_EQ_STR(e.address, "127.0.0.1");
    ASSERT_EQ_INT(e.port, echo->port);
    ASSERT_CONTAINS(e.rule, "allowedDomains[0]");
    ASSERT_EQ_INT(e.down, 23);
    stop();
}

TEST(egress_connect_denied_is_403_naming_the_rule)
{
    start(BASE_POLICY);
    char head[2048];
    int fd = connect_via("evil.test:443", head, sizeof(head));
    ASSERT_CONTAINS(head, "HTTP/1.1 403");
    ASSERT_CONTAINS(head, "X-Shed-Denied: no network.allowedDomains entry matches evil.test:443");
    char *body = read_all(fd, 4096, NULL);
    ASSERT_CONTAINS(body, "shed egress policy denied evil.test:443");
    free(body);
    close(fd);
    ev_t e = wait_event("connect", "evil.test");
    ASSERT_FALSE(e.allowed);
    stop();
}

TEST(egress_wildcard_edges)
{
    srv_t *echo = srv_start(0);
    start(BASE_POLICY);
    struct {
        const char *host;
        bool ok;
        const char *why;
    } cases[] = {
        {"a.example.test", true, "allowedDomains[1]"},
        {"A.Example.TEST.", true, "allowedDomains[1]"},
        {"example.test", false, "no network.allowedDomains entry"},
        {"evilexample.test", false, "no network.allowedDomains entry"},
        {"bad.example.test", false, "deniedDomains[0]"},
        {"BAD.example.test.", false, "deniedDomains[0]"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        char auth[300], head[2048];
        snprintf(auth, sizeof(auth), "%s:%d", cases[i].host, echo->port);
        int fd = connect_via(auth, head, sizeof(head));
        if (cases[i].ok) {
            ASSERT_CONTAINS(head, "HTTP/1.1 200");
            echo_roundtrip(fd, "x");
        } else {
            ASSERT_CONTAINS(head, "HTTP/1.1 403");
            ASSERT_CONTAINS(head, cases[i].why);
        }
        close(fd);
    }
    stop();
}

TEST(egress_allowed_name_into_refused_range_is_denied)
{
    start(BASE_POLICY);
    char head[2048];
    int fd = connect_via("private.test:443", head, sizeof(head));
    ASSERT_CONTAINS(head, "HTTP/1.1 403");
    ASSERT_CONTAINS(head, "10.0.0.0/8");
    ASSERT_CONTAINS(head, "network.allowCidrs");
    close(fd);
    ev_t e = wait_event("connect", "private.test");
    ASSERT_FALSE(e.allowed);
    ASSERT_EQ_STR(e.address, "10.1.2.3");
    stop();
}

TEST(egress_refused_range_without_allow_cidrs)
{
    srv_t *echo = srv_start(0);
    start("{\"allowedDomains\":[\"ok.test\"],\"staticHosts\":{\"ok.test\":\"127.0.0.1\"}}");
    char auth[64], head[2048];
    snprintf(auth, sizeof(auth), "ok.test:%d", echo->port);
    int fd = connect_via(auth, head, sizeof(head));
    ASSERT_CONTAINS(head, "HTTP/1.1 403");
    ASSERT_CONTAINS(head, "127.0.0.0/8");
    close(fd);
    stop();
}

TEST(egress_ip_literals_pass_only_when_listed)
{
    srv_t *echo = srv_start(0);
    start(BASE_POLICY);
    char auth[64], head[2048];
    snprintf(auth, sizeof(auth), "127.0.0.1:%d", echo->port);
    int fd = connect_via(auth, head, sizeof(head));
    ASSERT_CONTAINS(head, "HTTP/1.1 200"); /* listed in allowedDomains */
    echo_roundtrip(fd, "lit");
    close(fd);
    /* ([::ffff:127.0.0.1] is the listed address itself, so it passes.) */
    const char *unlisted[] = {"127.0.0.5", "[::1]", "[::ffff:127.0.0.5]", "2130706433", "127.1",
                              "0x7f.0.0.1", "[::127.0.0.1]"};
    for (size_t i = 0; i < ARRAY_SIZE(unlisted); i++) {
        snprintf(auth, sizeof(auth), "%s:%d", unlisted[i], echo->port);
        fd = connect_via(auth, head, sizeof(head));
        if (!strstr(head, "HTTP/1.1 403"))
            test_fail(__FILE__, __LINE__, "%s: expected 403, got \"%.60s\"", unlisted[i], head);
        close(fd);
    }
    snprintf(auth, sizeof(auth), "[::ffff:127.0.0.1]:%d", echo->port);
    fd = connect_via(auth, head, sizeof(head));
    ASSERT_CONTAINS(head, "HTTP/1.1 200");
    close(fd);
    stop();
}

TEST(egress_plain_http_rewrites_the_request)
{
    srv_t *hs = srv_start(1);
    start(BASE_POLICY);
    int fd = dial(&F.http_sa);
    char req[512];
    snprintf(req, sizeof(req),
             "GET http://ok.test:%d/path?q=1 HTTP/1.1\r\nHost: evil.test\r\n"
             "Proxy-Authorization: Basic c2VjcmV0\r\nProxy-Connection: keep-alive\r\n"
             "User-Agent: t\r\n\r\n",
             hs->port);
    send_str(fd, req);
    char *resp = read_all(fd, 8192, NULL);
    ASSERT_CONTAINS(resp, "HTTP/1.1 200 OK");
    ASSERT_CONTAINS(resp, "hello");
    free(resp);
    close(fd);
    pthread_mutex_lock(&hs->mu);
    char got[8192];
    snprintf(got, sizeof(got), "%s", hs->last_head);
    pthread_mutex_unlock(&hs->mu);
    ASSERT_CONTAINS(got, "GET /path?q=1 HTTP/1.1\r\n");
    char host[64];
    snprintf(host, sizeof(host), "Host: ok.test:%d\r\n", hs->port);
    ASSERT_CONTAINS(got, host);
    ASSERT_CONTAINS(got, "Connection: close\r\n");
    ASSERT_CONTAINS(got, "User-Agent: t\r\n");
    ASSERT_NOT_CONTAINS(got, "evil.test");
    ASSERT_NOT_CONTAINS(got, "Proxy-");
    ev_t e = wait_event("http", "ok.test");
    ASSERT_TRUE(e.allowed);
    stop();
}

TEST(egress_plain_http_denied)
{
    start(BASE_POLICY);
    int fd = dial(&F.http_sa);
    send_str(fd, "GET http://evil.test/ HTTP/1.1\r\nHost: evil.test\r\n\r\n");
    char *resp = read_all(fd, 8192, NULL);
    ASSERT_CONTAINS(resp, "HTTP/1.1 403");
    ASSERT_CONTAINS(resp, "X-Shed-Denied:");
    free(resp);
    close(fd);
    stop();
}

/* Send a whole client stream to the proxy, half-close, read the answer. */
static char *plain_exchange(const void *req, size_t len)
{
    int fd = dial(&F.http_sa);
    send_all(fd, req, len);
    shutdown(fd, SHUT_WR);
    char *resp = read_all(fd, 1 << 16, NULL);
    close(fd);
    return resp;
}

/* Wait (5 s) until the recorders are done with the connections (the proxy
 * reports a connection once both sides are closed). */
static ev_t plain_event(void)
{
    return wait_event("http", "ok.test");
}

TEST(egress_plain_http_pipelined_request_never_reaches_upstream)
{
    srv_t *rs = srv_start(2);
    start(BASE_POLICY);
    char req[1024];
    int n = snprintf(req, sizeof(req),
                     "GET http://ok.test:%d/first HTTP/1.1\r\nHost: ok.test\r\n\r\n"
                     "GET http://evil.test:%d/second HTTP/1.1\r\nHost: evil.test\r\n\r\n"
                     "GET /third HTTP/1.1\r\nHost: evil.test\r\n\r\n"
                     "GET http://ok.test:%d/fourth HTTP/1.1\r\nHost: ok.test\r\n\r\n",
                     rs->port, rs->port, rs->port);
    char *resp = plain_exchange(req, (size_t)n);
    ASSERT_CONTAINS(resp, "HTTP/1.1 200 OK");
    free(resp);
    plain_event();
    char want[256];
    snprintf(want, sizeof(want),
             "GET /first HTTP/1.1\r\nHost: ok.test:%d\r\nConnection: close\r\n\r\n", rs->port);
    pthread_mutex_lock(&REC.mu);
    ASSERT_EQ_STR(REC.data ? REC.data : "", want);
    ASSERT_EQ_INT(REC.conns, 1);
    pthread_mutex_unlock(&REC.mu);
    /* An upstream that ignores Connection: close and keeps reading gets
     * nothing after the first request either. */
    srv_t *ka = srv_start(4);
    rec_reset();
    n = snprintf(req, sizeof(req),
                 "GET http://ok.test:%d/a HTTP/1.1\r\n\r\n"
                 "GET http://evil.test/b HTTP/1.1\r\nHost: evil.test\r\n\r\n",
                 ka->port);
    resp = plain_exchange(req, (size_t)n);
    ASSERT_CONTAINS(resp, "HTTP/1.1 200 OK");
    free(resp);
    plain_event();
    pthread_mutex_lock(&REC.mu);
    ASSERT_TRUE(REC.data && strstr(REC.data, "GET /a HTTP/1.1\r\n"));
    ASSERT_NOT_CONTAINS(REC.data, "evil");
    ASSERT_EQ_INT(REC.conns, 1);
    pthread_mutex_unlock(&REC.mu);
    stop();
}

TEST(egress_plain_http_bodies_byte_exact)
{
    srv_t *rs = srv_start(2);
    start(BASE_POLICY);
    /* Content-Length: 200 KiB of binary, then a pipelined request. */
    size_t blen = 200 * 1024;
    char *body = malloc(blen);
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < blen; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        body[i] = (char)x;
    }
    char head[512];
    int hl = snprintf(head, sizeof(head),
                      "POST http://ok.test:%d/up HTTP/1.1\r\nContent-Length: %zu\r\n\r\n",
                      rs->port, blen);
    const char *tail = "GET http://evil.test/ HTTP/1.1\r\nHost: evil.test\r\n\r\n";
    size_t rlen = (size_t)hl + blen + strlen(tail);
    char *req = malloc(rlen);
    memcpy(req, head, (size_t)hl);
    memcpy(req + hl, body, blen);
    memcpy(req + hl + blen, tail, strlen(tail));
    char *resp = plain_exchange(req, rlen);
    ASSERT_CONTAINS(resp, "HTTP/1.1 200 OK");
    free(resp);
    plain_event();
    char whead[512];
    int wl = snprintf(whead, sizeof(whead),
                      "POST /up HTTP/1.1\r\nHost: ok.test:%d\r\nContent-Length: %zu\r\n"
                      "Connection: close\r\n\r\n",
                      rs->port, blen);
    pthread_mutex_lock(&REC.mu);
    ASSERT_EQ_INT(REC.len, (size_t)wl + blen);
    ASSERT_MEM_EQ(REC.data, whead, (size_t)wl);
    ASSERT_MEM_EQ(REC.data + wl, body, blen);
    pthread_mutex_unlock(&REC.mu);
    rec_reset();
    free(req);
    free(body);

    /* Chunked, with an extension and a trailer, sent in pieces. */
    const char *chunks = "5\r\nhello\r\nA;ext=\"1\"\r\n0123456789\r\n0\r\nX-T: t\r\n\r\n";
    int fd = dial(&F.http_sa);
    snprintf(head, sizeof(head),
             "POST http://ok.test:%d/c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhe",
             rs->port);
    send_str(fd, head);
    usleep(20000);
    send_str(fd, "llo\r\nA;ext=\"1\"\r\n0123456789\r");
    usleep(20000);
    send_str(fd, "\n0\r\nX-T: t\r\n\r\nPOST http://evil.test/ HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    shutdown(fd, SHUT_WR);
    resp = read_all(fd, 8192, NULL);
    ASSERT_CONTAINS(resp, "HTTP/1.1 200 OK");
    free(resp);
    close(fd);
    plain_event();
    snprintf(whead, sizeof(whead),
             "POST /c HTTP/1.1\r\nHost: ok.test:%d\r\nTransfer-Encoding: chunked\r\n"
             "Connection: close\r\n\r\n%s",
             rs->port, chunks);
    pthread_mutex_lock(&REC.mu);
    ASSERT_EQ_STR(REC.data, whead);
    pthread_mutex_unlock(&REC.mu);
    stop();
}

TEST(egress_plain_http_upgrade_only_after_101)
{
    srv_t *up = srv_start(3);
    srv_t *no = srv_start(4);
    start(BASE_POLICY);
    /* 101: what follows is the new protocol, relayed both ways. */
    int fd = dial(&F.http_sa);
    char req[512];
    snprintf(req, sizeof(req),
             "GET http://ok.test:%d/ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n",
             up->port);
    send_str(fd, req);
    char head[1024];
    read_head(fd, head, sizeof(head));
    ASSERT_CONTAINS(head, "HTTP/1.1 101");
    echo_roundtrip(fd, "frames after the switch");
    close(fd);
    plain_event();
    /* Not 101: the connection stays one request; later bytes are dropped. */
    rec_reset();
    fd = dial(&F.http_sa);
    snprintf(req, sizeof(req),
             "GET http://ok.test:%d/ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n",
             no->port);
    send_str(fd, req);
    read_head(fd, head, sizeof(head));
    ASSERT_CONTAINS(head, "HTTP/1.1 200");
    send_str(fd, "GET http://evil.test/ HTTP/1.1\r\nHost: evil.test\r\n\r\n");
    shutdown(fd, SHUT_WR);
    free(read_all(fd, 8192, NULL));
    close(fd);
    plain_event();
    pthread_mutex_lock(&REC.mu);
    ASSERT_TRUE(REC.data && strstr(REC.data, "GET /ws HTTP/1.1\r\n"));
    ASSERT_NOT_CONTAINS(REC.data, "evil");
    pthread_mutex_unlock(&REC.mu);
    stop();
}

static int socks_connect(const uint8_t *req, size_t len, uint8_t rep[10])
{
    int fd = dial(&F.socks_sa);
    send_all(fd, "\x05\x01\x00", 3);
    uint8_t m[2];
    ASSERT_EQ_INT(read(fd, m, 2), 2);
    ASSERT_EQ_INT(m[0], 5);
    ASSERT_EQ_INT(m[1], 0);
    send_all(fd, req, len);
    size_t got = 0;
    while (got < 10) {
        ssize_t n = read(fd, rep + got, 10 - got);
        if (n <= 0) break;
        got += (size_t)n;
    }
    ASSERT_EQ_INT(got, 10);
    return fd;
}

static size_t socks_name_req(uint8_t *b, const char *name, int port)
{
    size_t n = strlen(name);
    b[0] = 5;
    b[1] = 1;
    b[2] = 0;
    b[3] = 3;
    b[4] = (uint8_t)n;
    memcpy(b + 5, name, n);
    b[5 + n] = (uint8_t)(port >> 8);
    b[6 + n] = (uint8_t)port;
    return 7 + n;
}

TEST(egress_socks5_by_name_and_address)
{
    srv_t *echo = srv_start(0);
    start(BASE_POLICY);
    uint8_t req[300], rep[10];
    size_t n = socks_name_req(req, "ok.test", echo->port);
    int fd = socks_connect(req, n, rep);
    ASSERT_EQ_INT(rep[1], 0);
    echo_roundtrip(fd, "socks!");
    close(fd);
    ev_t e = wait_event("socks5", "ok.test");
    ASSERT_TRUE(e.allowed);

    n = socks_name_req(req, "evil.test", echo->port);
    fd = socks_connect(req, n, rep);
    ASSERT_EQ_INT(rep[1], 2); /* connection not allowed by ruleset */
    close(fd);
    e = wait_event("socks5", "evil.test");
    ASSERT_FALSE(e.allowed);

    /* By address: 127.0.0.1 is listed, 127.0.0.9 is not. */
    uint8_t v4[10] = {5, 1, 0, 1, 127, 0, 0, 1, (uint8_t)(echo->port >> 8), (uint8_t)echo->port};
    fd = socks_connect(v4, 10, rep);
    ASSERT_EQ_INT(rep[1], 0);
    echo_roundtrip(fd, "v4");
    close(fd);
    v4[7] = 9;
    fd = socks_connect(v4, 10, rep);
    ASSERT_EQ_INT(rep[1], 2);
    close(fd);
    stop();
}

TEST(egress_socks5_malformed_and_unsupported)
{
    start(BASE_POLICY);
    uint8_t rep[10];
    uint8_t bind_cmd[10] = {5, 2, 0, 1, 127, 0, 0, 1, 0, 80};
    int fd = socks_connect(bind_cmd, 10, rep);
    ASSERT_EQ_INT(rep[1], 7);
    close(fd);
    uint8_t bad_atyp[10] = {5, 1, 0, 9, 127, 0, 0, 1, 0, 80};
    fd = socks_connect(bad_atyp, 10, rep);
    ASSERT_EQ_INT(rep[1], 8);
    close(fd);
    /* No acceptable method: 0xff, then close. */
    fd = dial(&F.socks_sa);
    send_all(fd, "\x05\x01\x02", 3);
    uint8_t m[4];
    ASSERT_EQ_INT(read(fd, m, 4), 2);
    ASSERT_EQ_INT(m[1], 0xff);
    close(fd);
    stop();
}

static int dns_query(const char *name, int qtype, uint8_t *resp, size_t cap)
{
    uint8_t q[512];
    size_t off = 12;
    memset(q, 0, 12);
    q[0] = 0x12;
    q[1] = 0x34;
    q[2] = 0x01; /* RD */
    q[5] = 1;
    const char *p = name;
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t l = dot ? (size_t)(dot - p) : strlen(p);
        q[off++] = (uint8_t)l;
        memcpy(q + off, p, l);
        off += l;
        p += l + (dot ? 1 : 0);
    }
    q[off++] = 0;
    q[off++] = 0;
    q[off++] = (uint8_t)qtype;
    q[off++] = 0;
    q[off++] = 1;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    sendto(fd, q, off, 0, (struct sockaddr *)&F.dns_sa, sizeof(F.dns_sa));
    ssize_t n = recv(fd, resp, cap, 0);
    close(fd);
    return (int)n;
}

TEST(egress_dns_stub_answers_allowed_refuses_rest)
{
    start(BASE_POLICY);
    uint8_t r[512];
    int n = dns_query("ok.test", 1, r, sizeof(r));
    ASSERT_GE_INT(n, 12);
    ASSERT_EQ_INT(r[0], 0x12);
    ASSERT_EQ_INT(r[1], 0x34);
    ASSERT_EQ_INT(r[3] & 0xf, 0);  /* NOERROR */
    ASSERT_EQ_INT(r[7], 1);        /* one answer */
    ASSERT_EQ_INT(r[n - 4], 127);  /* 127.0.0.1 */
    ASSERT_EQ_INT(r[n - 1], 1);
    n = dns_query("evil.test", 1, r, sizeof(r));
    ASSERT_GE_INT(n, 12);
    ASSERT_EQ_INT(r[3] & 0xf, 5); /* REFUSED */
    ASSERT_EQ_INT(r[7], 0);
    n = dns_query("bad.example.test", 1, r, sizeof(r));
    ASSERT_EQ_INT(r[3] & 0xf, 5);
    /* Exfiltration shape: a long label under an allowed wildcard's parent
     * that is not itself allowed. */
    n = dns_query("c2VjcmV0.evilexample.test", 1, r, sizeof(r));
    ASSERT_EQ_INT(r[3] & 0xf, 5);
    /* AAAA of a v4-only allowed name: NOERROR, no answer. */
    n = dns_query("ok.test", 28, r, sizeof(r));
    ASSERT_EQ_INT(r[3] & 0xf, 0);
    ASSERT_EQ_INT(r[7], 0);
    /* Allowed name into refused ranges: no address given out. */
    n = dns_query("private.test", 1, r, sizeof(r));
    ASSERT_EQ_INT(r[3] & 0xf, 0);
    ASSERT_EQ_INT(r[7], 0);
    ev_t e = wait_event("dns", "evil.test");
    ASSERT_FALSE(e.allowed);
    stop();
}

TEST(egress_socks5_to_address_from_dns_stub_counts_as_the_name)
{
    srv_t *echo = srv_start(0);
    /* ok.test -> 127.0.0.7, not listed as a literal. */
    start("{\"allowedDomains\":[\"ok.test\"],\"staticHosts\":{\"ok.test\":\"127.0.0.7\"},"
          "\"allowCidrs\":[\"127.0.0.0/8\"]}");
    uint8_t v4[10] = {5, 1, 0, 1, 127, 0, 0, 7, (uint8_t)(echo->port >> 8), (uint8_t)echo->port};
    uint8_t rep[10];
    int fd = socks_connect(v4, 10, rep);
    ASSERT_EQ_INT(rep[1], 2); /* not issued yet: an unlisted literal */
    close(fd);
    uint8_t r[512];
    dns_query("ok.test", 1, r, sizeof(r));
    /* the echo server listens on 127.0.0.1 only; bind 127.0.0.7 too */
    fd = socks_connect(v4, 10, rep);
    ASSERT_TRUE(rep[1] == 0 || rep[1] == 5); /* allowed: connected or refused by the host */
    close(fd);
    ev_t e = wait_event("socks5", "ok.test");
    ASSERT_TRUE(e.allowed);
    ASSERT_EQ_STR(e.address, "127.0.0.7");
    stop();
}

TEST(egress_malformed_requests)
{
    start(BASE_POLICY);
    const char *bad[] = {
        "CONNECT ok.test HTTP/1.1\r\n\r\n",          /* no port */
        "CONNECT ok.test:0 HTTP/1.1\r\n\r\n",
        "CONNECT ok.test:99999 HTTP/1.1\r\n\r\n",
        "CONNECT  ok.test:443 HTTP/1.1\r\n\r\n",
        "CONNECT ok.test:443 HTTP/2.0\r\n\r\n",
        "CONNECT ok.test:443\r\n\r\n",
        "GET /relative HTTP/1.1\r\nHost: ok.test\r\n\r\n",
        "GET http://user@ok.test/ HTTP/1.1\r\n\r\n",
        "GET http://ok.test/ HTTP/1.1\r\n folded\r\n\r\n",
        "GET http://ok.test/ HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET http://ok.test/ HTTP/1.1\r\nBad Header: x\r\n\r\n",
        /* Request smuggling: framing an upstream could read another way. */
        "POST http://ok.test/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        "POST http://ok.test/ HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        "POST http://ok.test/ HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n",
        "POST http://ok.test/ HTTP/1.1\r\nContent-Length: 1234567890123456789\r\n\r\n",
        "POST http://ok.test/ HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        "POST http://ok.test/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
        "chunked\r\n\r\n",
        "POST http://ok.test/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST http://ok.test/ HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n",
        "POST http://ok.test/ HTTP/1.1\r\nX: a\r\n Transfer-Encoding: chunked\r\n\r\n",
        "GET http://ok.test/ HTTP/1.1\nX: a\n\n",
        "GET http://ok.test/ HTTP/1.1\r\nX: a\n\r\n",
        "POST http://ok.test/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "POST http://ok.test/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n",
        "POST http://ok.test/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n 3\r\nabc\r\n",
        "\x16\x03\x01\x02\x01\x01\x01\x01\xfc\x03\x03\r\n\r\n",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        int fd = dial(&F.http_sa);
        send_str(fd, bad[i]);
        char *resp = read_all(fd, 8192, NULL);
        if (!strstr(resp, "HTTP/1.1 400"))
            test_fail(__FILE__, __LINE__, "case %zu: expected 400, got \"%.80s\"", i, resp);
        free(resp);
        close(fd);
    }
    stop();
}

TEST(egress_oversized_head_is_431)
{
    start(BASE_POLICY);
    int fd = dial(&F.http_sa);
    send_str(fd, "CONNECT ok.test:443 HTTP/1.1\r\n");
    char line[1024];
    memset(line, 'a', sizeof(line));
    memcpy(line, "X-Pad: ", 7);
    line[sizeof(line) - 2] = '\r';
    line[sizeof(line) - 1] = '\n';
    bool got = false;
    for (int i = 0; i < 64; i++) {
        if (send(fd, line, sizeof(line), MSG_NOSIGNAL) < 0) break;
    }
    char *resp = read_all(fd, 8192, NULL);
    got = strstr(resp, "HTTP/1.1 431") != NULL;
    free(resp);
    close(fd);
    ASSERT_TRUE(got);
    stop();
}

TEST(egress_client_that_never_sends_times_out)
{
    start(BASE_POLICY);
    int fd = dial(&F.http_sa);
    send_str(fd, "CONNECT ok.te"); /* slowloris: never finishes */
    char *resp = read_all(fd, 8192, NULL);
    ASSERT_CONTAINS(resp, "HTTP/1.1 408");
    free(resp);
    close(fd);
    int s = dial(&F.socks_sa); /* SOCKS client that never greets: closed */
    size_t n;
    free(read_all(s, 64, &n));
    ASSERT_EQ_INT(n, 0);
    close(s);
    stop();
}

TEST(egress_half_open_client_still_gets_the_reply)
{
    srv_t *echo = srv_start(0);
    start(BASE_POLICY);
    char auth[64], head[1024];
    snprintf(auth, sizeof(auth), "ok.test:%d", echo->port);
    int fd = connect_via(auth, head, sizeof(head));
    ASSERT_CONTAINS(head, "200");
    send_str(fd, "half-open request");
    shutdown(fd, SHUT_WR);
    char *got = read_all(fd, 1024, NULL);
    ASSERT_EQ_STR(got, "half-open request");
    free(got);
    close(fd);
    stop();
}

typedef struct {
    int fd;
    const uint8_t *data;
    size_t len;
} writer_arg;

static void *writer(void *arg)
{
    writer_arg *w = arg;
    send_all(w->fd, w->data, w->len);
    shutdown(w->fd, SHUT_WR);
    return NULL;
}

TEST(egress_large_transfer_byte_exact_both_ways)
{
    srv_t *echo = srv_start(0);
    start(BASE_POLICY);
    size_t len = 24u << 20;
    uint8_t *data = malloc(len);
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data[i] = (uint8_t)x;
    }
    char auth[64], head[1024];
    snprintf(auth, sizeof(auth), "ok.test:%d", echo->port);
    int fd = connect_via(auth, head, sizeof(head));
    ASSERT_CONTAINS(head, "200");
    writer_arg w = {fd, data, len};
    pthread_t t;
    pthread_create(&t, NULL, writer, &w);
    size_t got;
    char *back = read_all(fd, len + 16, &got);
    pthread_join(t, NULL);
    ASSERT_EQ_INT(got, len);
    ASSERT_MEM_EQ(back, data, len);
    free(back);
    free(data);
    close(fd);
    ev_t e = wait_event("connect", "ok.test");
    ASSERT_EQ_INT(e.up, len + strlen("CONNECT  HTTP/1.1\r\nHost: \r\n\r\n") + 2 * strlen(auth));
    ASSERT_EQ_INT(e.down, len);
    stop();
}

TEST(egress_refused_address_falls_through_to_the_next)
{
    /* The echo server listens on 127.0.0.1 only: 127.0.0.9 refuses the
     * same port (on loopback, usually before connect() returns). */
    srv_t *echo = srv_start(0);
    start("{\"allowedDomains\":[\"two.test\"],\"staticHosts\":{\"two.test\":"
          "[\"127.0.0.9\",\"127.0.0.1\"]},\"allowCidrs\":[\"127.0.0.0/8\"]}");
    char auth[64], head[1024];
    snprintf(auth, sizeof(auth), "two.test:%d", echo->port);
    int fd = connect_via(auth, head, sizeof(head));
    ASSERT_CONTAINS(head, "HTTP/1.1 200");
    echo_roundtrip(fd, "second address");
    close(fd);
    ev_t e = wait_event("connect", "two.test");
    ASSERT_EQ_STR(e.address, "127.0.0.1");
    ASSERT_EQ_STR(e.error, "");
    stop();
}

TEST(egress_hundred_concurrent_connections)
{
    srv_t *echo = srv_start(0);
    start(BASE_POLICY);
    enum { N = 100 };
    int fds[N];
    char auth[64];
    snprintf(auth, sizeof(auth), "ok.test:%d", echo->port);
    for (int i = 0; i < N; i++) {
        fds[i] = dial(&F.http_sa);
        char req[128];
        snprintf(req, sizeof(req), "CONNECT %s HTTP/1.1\r\n\r\n", auth);
        send_str(fds[i], req);
    }
    for (int i = 0; i < N; i++) {
        char head[256];
        read_head(fds[i], head, sizeof(head));
        ASSERT_CONTAINS(head, "200");
    }
    for (int i = 0; i < N; i++) {
        char msg[32];
        snprintf(msg, sizeof(msg), "conn %d", i);
        send_str(fds[i], msg);
    }
    for (int i = 0; i < N; i++) {
        char msg[32], got[32] = "";
        snprintf(msg, sizeof(msg), "conn %d", i);
        size_t want = strlen(msg), len = 0;
        while (len < want) {
            ssize_t n = read(fds[i], got + len, want - len);
            if (n <= 0) break;
            len += (size_t)n;
        }
        got[len] = '\0';
        ASSERT_EQ_STR(got, msg);
        close(fds[i]);
    }
    stop();
}

TEST(egress_connection_cap_queues_not_refuses)
{
    srv_t *echo = srv_start(0);
    start("{\"allowedDomains\":[\"ok.test\"],\"staticHosts\":{\"ok.test\":\"127.0.0.1\"},"
          "\"allowCidrs\":[\"127.0.0.0/8\"],\"maxConnections\":2}");
    char auth[64], head[256];
    snprintf(auth, sizeof(auth), "ok.test:%d", echo->port);
    int a = connect_via(auth, head, sizeof(head));
    ASSERT_CONTAINS(head, "200");
    int b = connect_via(auth, head, sizeof(head));
    ASSERT_CONTAINS(head, "200");
    /* The third waits in the listener's backlog... */
    int c = dial(&F.http_sa);
    char req[128];
    snprintf(req, sizeof(req), "CONNECT %s HTTP/1.1\r\n\r\n", auth);
    send_str(c, req);
    struct pollfd p = {.fd = c, .events = POLLIN};
    ASSERT_EQ_INT(poll(&p, 1, 300), 0);
    /* ...and is served once one closes. */
    close(a);
    read_head(c, head, sizeof(head));
    ASSERT_CONTAINS(head, "200");
    echo_roundtrip(c, "third");
    close(b);
    close(c);
    stop();
}

TEST(egress_set_policy_closes_what_is_no_longer_allowed)
{
    srv_t *echo = srv_start(0);
    start(BASE_POLICY);
    char auth[64], head[256];
    snprintf(auth, sizeof(auth), "ok.test:%d", echo->port);
    int fd = connect_via(auth, head, sizeof(head));
    ASSERT_CONTAINS(head, "200");
    echo_roundtrip(fd, "before");
    /* Change the policy on the loop thread: stop, change, restart. */
    uint64_t one = 1;
    ssize_t w = write(F.stopfd, &one, sizeof(one));
    (void)w;
    pthread_join(F.th, NULL);
    uint64_t v;
    w = read(F.stopfd, &v, sizeof(v));
    egress_policy *closed = policy("{\"allowedDomains\":[\"other.test\"]}");
    ASSERT_EQ_INT(egress_set_policy(F.eg, "sess_test", closed), 0);
    egress_policy_free(closed);
    ASSERT_EQ_INT(egress_set_policy(F.eg, "nope", F.pol), -ENOENT);
    pthread_create(&F.th, NULL, loop_main, NULL);
    size_t n;
    free(read_all(fd, 64, &n));
    ASSERT_EQ_INT(n, 0);
    close(fd);
    ev_t e = wait_event("connect", "ok.test");
    ASSERT_FALSE(e.allowed);
    ASSERT_CONTAINS(e.rule, "policy changed");
    fd = connect_via(auth, head, sizeof(head));
    ASSERT_CONTAINS(head, "403");
    close(fd);
    stop();
}

TEST(egress_connect_refused_upstream_is_502)
{
    start(BASE_POLICY);
    struct sockaddr_in sa;
    int l = listen_on("127.0.0.1", SOCK_STREAM, &sa);
    close(l); /* nobody listens there now */
    char auth[64], head[1024];
    snprintf(auth, sizeof(auth), "ok.test:%d", ntohs(sa.sin_port));
    int fd = connect_via(auth, head, sizeof(head));
    ASSERT_CONTAINS(head, "HTTP/1.1 502");
    close(fd);
    ev_t e = wait_event("connect", "ok.test");
    ASSERT_TRUE(e.allowed);
    ASSERT_EQ_STR(e.error, "connect failed");
    stop();
}

TEST(egress_empty_policy_means_no_network)
{
    start("{}");
    char head[1024];
    int fd = connect_via("ok.test:443", head, sizeof(head));
    ASSERT_CONTAINS(head, "403");
    ASSERT_CONTAINS(head, "no network");
    close(fd);
    uint8_t r[512];
    dns_query("ok.test", 1, r, sizeof(r));
    ASSERT_EQ_INT(r[3] & 0xf, 5);
    stop();
}

TEST(egress_detach_closes_everything)
{
    srv_t *echo = srv_start(0);
    start(BASE_POLICY);
    char auth[64], head[256];
    snprintf(auth, sizeof(auth), "ok.test:%d", echo->port);
    int fd = connect_via(auth, head, sizeof(head));
    ASSERT_CONTAINS(head, "200");
    int idle = dial(&F.http_sa);
    uint64_t one = 1;
    ssize_t w = write(F.stopfd, &one, sizeof(one));
    (void)w;
    pthread_join(F.th, NULL);
    egress_detach(F.eg, "sess_test");
    size_t n;
    free(read_all(fd, 64, &n));
    ASSERT_EQ_INT(n, 0);
    free(read_all(idle, 64, &n));
    ASSERT_EQ_INT(n, 0);
    close(fd);
    close(idle);
    ev_t e = wait_event("connect", "ok.test");
    ASSERT_EQ_STR(e.error, "sandbox detached");
    pthread_create(&F.th, NULL, loop_main, NULL);
    stop();
}

static void pause_loop(void)
{
    uint64_t one = 1, v;
    ssize_t w = write(F.stopfd, &one, sizeof(one));
    pthread_join(F.th, NULL);
    w = read(F.stopfd, &v, sizeof(v));
    (void)w;
}

static void resume_loop(void)
{
    pthread_create(&F.th, NULL, loop_main, NULL);
}

TEST(egress_one_sandbox_flood_does_not_starve_another)
{
    srv_t *echo = srv_start(0);
    /* Sandbox A: slowloris and connect flood, capped at 8 connections, and
     * its half-sent heads time out only after 30 s. */
    start("{\"allowedDomains\":[\"ok.test\"],\"staticHosts\":{\"ok.test\":\"127.0.0.1\"},"
          "\"allowCidrs\":[\"127.0.0.0/8\"],\"maxConnections\":8,\"headerTimeoutMs\":30000}");
    pause_loop();
    egress_policy *pb = policy("{\"allowedDomains\":[\"ok.test\"],\"staticHosts\":{\"ok.test\":"
                               "\"127.0.0.1\"},\"allowCidrs\":[\"127.0.0.0/8\"]}");
    struct sockaddr_in b_sa;
    int bl = listen_on("127.0.0.3", SOCK_STREAM, &b_sa);
    shed_err err = {0};
    if (egress_attach(F.eg, "sess_b", pb, bl, -1, -1, &err) < 0)
        test_fail(__FILE__, __LINE__, "attach b: %s", err.msg);
    egress_policy_free(pb);
    resume_loop();

    enum { FLOOD = 200 };
    int *flood = malloc(FLOOD * sizeof(int));
    for (int i = 0; i < FLOOD; i++) {
        flood[i] = dial(&F.http_sa); /* the backlog takes them; the egress serves 8 */
        send_str(flood[i], "CONNECT ok.test:1 HTTP/1.1\r\nX-Slow: ");
    }
    /* B is served while all of A's connections hang. */
    char auth[64], head[256], req[128];
    snprintf(auth, sizeof(auth), "ok.test:%d", echo->port);
    for (int k = 0; k < 5; k++) {
        int fd = dial(&b_sa);
        snprintf(req, sizeof(req), "CONNECT %s HTTP/1.1\r\n\r\n", auth);
        send_str(fd, req);
        read_head(fd, head, sizeof(head));
        ASSERT_CONTAINS(head, "HTTP/1.1 200");
        echo_roundtrip(fd, "b is fine");
        close(fd);
    }
    /* A got no answer on any of them (heads unfinished, 30 s to go). */
    for (int i = 0; i < FLOOD; i++) {
        struct pollfd p = {.fd = flood[i], .events = POLLIN};
        ASSERT_EQ_INT(poll(&p, 1, 0), 0);
        close(flood[i]);
    }
    free(flood);
    stop();
}

/* Names resolved by the resolver pool (getaddrinfo, here through the host's
 * /etc/hosts), many at once: the per-sandbox lookup queue must serve them all. */
TEST(egress_real_resolution_and_lookup_queue)
{
    srv_t *echo = srv_start(0);
    start("{\"allowedDomains\":[\"localhost\"],\"allowCidrs\":[\"127.0.0.0/8\",\"::1\"]}");
    enum { N = 40 };
    int fds[N];
    char req[128];
    snprintf(req, sizeof(req), "CONNECT localhost:%d HTTP/1.1\r\n\r\n", echo->port);
    for (int i = 0; i < N; i++) {
        fds[i] = dial(&F.http_sa);
        send_str(fds[i], req);
    }
    int ok = 0;
    for (int i = 0; i < N; i++) {
        char head[256];
        read_head(fds[i], head, sizeof(head));
        /* localhost may resolve to ::1 first, where nobody listens: the
         * proxy then tries the next address. */
        ok += strstr(head, "HTTP/1.1 200") != NULL;
        close(fds[i]);
    }
    ASSERT_EQ_INT(ok, N);
    uint8_t r[512];
    for (int i = 0; i < 10; i++) {
        int n = dns_query("localhost", 1, r, sizeof(r));
        ASSERT_GE_INT(n, 12);
        ASSERT_EQ_INT(r[3] & 0xf, 0);
        ASSERT_EQ_INT(r[7], 1);
        ASSERT_EQ_INT(r[n - 4], 127);
    }
    /* 60 questions at once (glibc asks A and AAAA in parallel): all queue
     * behind the 4 lookups in flight and are all answered. */
    int u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(u, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    static const uint8_t q[] = {0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 9, 'l', 'o', 'c', 'a', 'l',
                                'h', 'o', 's', 't', 0, 0, 1, 0, 1};
    for (int i = 0; i < 60; i++) {
        uint8_t p[sizeof(q)];
        memcpy(p, q, sizeof(q));
        p[1] = (uint8_t)i;
        sendto(u, p, sizeof(p), 0, (struct sockaddr *)&F.dns_sa, sizeof(F.dns_sa));
    }
    bool seen[60] = {false};
    for (int i = 0; i < 60; i++) {
        ssize_t n = recv(u, r, sizeof(r), 0);
        ASSERT_GE_INT(n, 12);
        ASSERT_EQ_INT(r[3] & 0xf, 0);
        ASSERT_TRUE(r[1] < 60 && !seen[r[1]]);
        seen[r[1]] = true;
    }
    close(u);
    ev_t e = wait_event("connect", "localhost");
    ASSERT_TRUE(e.allowed);
    ASSERT_EQ_STR(e.address, "127.0.0.1");
    stop();
}

static void *v6_echo(void *arg)
{
    int l = (int)(intptr_t)arg;
    int fd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    char b[64];
    ssize_t n = read(fd, b, sizeof(b));
    if (n > 0) {
        ssize_t w = write(fd, b, (size_t)n);
        (void)w;
    }
    close(fd);
    return NULL;
}

TEST(egress_ipv6_upstream)
{
    int l = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    if (bind(l, (struct sockaddr *)&a, sizeof(a)) < 0) test_skip("no IPv6 loopback");
    listen(l, 8);
    socklen_t sl = sizeof(a);
    getsockname(l, (struct sockaddr *)&a, &sl);
    pthread_t t;
    pthread_create(&t, NULL, v6_echo, (void *)(intptr_t)l);
    start("{\"allowedDomains\":[\"v6.test\",\"[::1]:1\"],\"staticHosts\":{\"v6.test\":\"::1\"},"
          "\"allowCidrs\":[\"::1/128\"]}");
    char auth[64], head[512];
    snprintf(auth, sizeof(auth), "v6.test:%d", ntohs(a.sin6_port));
    int fd = connect_via(auth, head, sizeof(head));
    ASSERT_CONTAINS(head, "HTTP/1.1 200");
    echo_roundtrip(fd, "over v6");
    close(fd);
    pthread_join(t, NULL);
    ev_t e = wait_event("connect", "v6.test");
    ASSERT_EQ_STR(e.address, "::1");
    /* The literal is listed on port 1 only. */
    snprintf(auth, sizeof(auth), "[::1]:%d", ntohs(a.sin6_port));
    fd = connect_via(auth, head, sizeof(head));
    ASSERT_CONTAINS(head, "HTTP/1.1 403");
    close(fd);
    close(l);
    stop();
}

TEST(egress_idle_connection_is_closed)
{
    srv_t *echo = srv_start(0);
    start("{\"allowedDomains\":[\"ok.test\"],\"staticHosts\":{\"ok.test\":\"127.0.0.1\"},"
          "\"allowCidrs\":[\"127.0.0.0/8\"],\"idleTimeoutMs\":300}");
    char auth[64], head[256];
    snprintf(auth, sizeof(auth), "ok.test:%d", echo->port);
    int fd = connect_via(auth, head, sizeof(head));
    ASSERT_CONTAINS(head, "200");
    echo_roundtrip(fd, "then silence");
    size_t n;
    free(read_all(fd, 64, &n)); /* returns at EOF: the proxy closed it */
    ASSERT_EQ_INT(n, 0);
    close(fd);
    ev_t e = wait_event("connect", "ok.test");
    ASSERT_EQ_STR(e.error, "idle timeout");
    stop();
}
