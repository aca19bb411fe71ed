/* The worker's HTTP/1.1 client; see http.h. One request at a time per
 * connection (no pipelining); idle connections wait in a per-client list and
 * are watched, so a close by the server is seen before reuse. Everything
 * runs on the loop thread except getaddrinfo, which runs on a detached thread
 * per resolution and reports through an eventfd. A request is never freed
 * from inside its own callback (cancellation there is deferred), and never
 * calls back from http_start. Error messages name the host (and the proxy,
 * without its user information) and what failed, never a header (the
 * Authorization header holds a key; Proxy-Authorization the proxy's
 * password). The only log line: which way an origin goes when a proxy is set.
 */
#include "worker/http.h"

#include "base/clock.h"
#include "base/log.h"
#include "worker/http_proxy.h"
#include "worker/http_resp.h"
#include "worker/proto.h"

#include "base/lazy_ssl.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define HTTP_DEFAULT_MAX_BODY   (16u << 20)
#define HTTP_CONNECT_DEFAULT_MS 10000
#define HTTP_IDLE_MAX_MS        60000 /* an idle connection is closed after this */
#define HTTP_MAX_IDLE           1024  /* idle connections kept */
#define HTTP_DNS_TTL_MS         60000
#define HTTP_MAX_ADDRS          8
#define HTTP_MAX_HEAD           (64u << 10) /* our request line + headers */
#define HTTP_READ_CHUNK         16384

typedef struct conn conn_t;
typedef struct origin origin_t;

/* A name resolution on its own thread. `abandoned` (under res_mu) tells the
 * thread that the client is gone: it then frees the job and touches nothing. */
typedef struct resolve_job {
    char host[256];
    char port[8];
    struct addrinfo *res;
    int gai_rc;
    bool done, abandoned;
    int efd;
} resolve_job;

static pthread_mutex_t res_mu = PTHREAD_MUTEX_INITIALIZER;

struct origin {
    bool tls;
    char host[256];     /* brackets removed */
    char hostport[270]; /* the Host header */
    int port;
    bool numeric;
    struct sockaddr_storage addrs[HTTP_MAX_ADDRS];
    socklen_t alens[HTTP_MAX_ADDRS];
    int naddrs;
    int64_t resolved_at; /* mono ms; 0 = not resolved */
    char resolve_err[160];
    resolve_job *job;    /* in flight */
    http_req_t *waiting; /* requests waiting for addresses (wnext) */
    /* Through a forward proxy: px its settings, via the proxy's own origin
     * (its addresses, resolution and waiting list); this origin's host is
     * then never resolved here (the proxy does). Connections are kept per
     * origin, so per (proxy, origin): a tunnel never serves another origin. */
    const http_proxy *px;
    origin_t *via;
    origin_t *next;
};

enum { C_CONNECTING = 1, C_TUNNEL, C_TLS, C_READY };

struct conn {
    http_t *h;
    origin_t *o;
    int fd;
    SSL *ssl;
    int state;
    int addr;        /* index of the address being tried */
    bool reused;     /* has carried a complete response */
    uint32_t events; /* what the loop watches */
    http_req_t *req; /* NULL when idle */
    int64_t idle_since;
    conn_t *prev, *next; /* idle list */
    /* C_TUNNEL: our CONNECT request and the parser of the proxy's answer */
    buf_t tun_out;
    size_t tun_off;
    http_resp tun;
    bool tun_live;
};

enum { R_START = 1, R_WAIT_ADDR, R_CONNECT, R_SEND, R_RECV };

struct http {
    loop_t *loop;
    http_req_t *reqs; /* all live requests */
    conn_t *idle;
    int nidle;
    uint64_t idle_timer;
    origin_t *origins;
    SSL_CTX *ssl_ctx;
    int efd; /* resolver completions */
    int active;
    http_proxy_env px; /* from the environment, at http_new */
};

struct http_req {
    http_t *h;
    origin_t *o;
    conn_t *c;
    int state;
    buf_t out; /* request head + body */
    size_t out_off;
    bool head_method;
    http_resp parser;
    bool parser_live;
    buf_t resp;
    http_data_cb on_data;
    http_headers_cb on_headers;
    http_done_cb on_done;
    void *arg;
    int64_t start_ms, connect_ms, timeout_ms, stall_ms, last_rx_ms, connect_start_ms;
    uint64_t timer;
    bool in_cb, cancelled, headers_done, streaming_ok, resent;
    int64_t retry_after_ms;
    bool retry_after_is_ms;
    int should_retry;
    bool fatal;
    bool body_over; /* the buffered body passed max_body */
    long proxy_status; /* a plain http:// request's proxy answered 407 */
    char errmsg[400];
    http_req_t *prev, *next;
    http_req_t *wnext;
};

static void conn_io(loop_t *l, int fd, uint32_t events, void *arg);
static void http_resolved(loop_t *l, int fd, uint32_t events, void *arg);
static void req_step(http_req_t *r);
static void req_arm(http_req_t *r);
static const http_resp_cbs http_cbs;

/* Where a connection for origin o goes: the proxy, or the origin itself. */
static origin_t *dial_of(origin_t *o)
{
    return o->via ? o->via : o;
}

/* " through the proxy http://h:p (from VAR)" for messages, or "". */
static const char *via_str(const origin_t *o, char *b, size_t n)
{
    if (!o->px) return "";
    snprintf(b, n, " through the proxy %s (from %s)", o->px->shown, o->px->var);
    return b;
}

/* ---------- small helpers ---------- */

static void conn_watch(conn_t *c, uint32_t ev)
{
    if (c->events == ev) return;
    if (c->events == 0)
        loop_add(c->h->loop, c->fd, ev, conn_io, c);
    else
        loop_mod(c->h->loop, c->fd, ev);
    c->events = ev;
}

static void idle_unlink(conn_t *c)
{
    http_t *h = c->h;
    if (c->prev) c->prev->next = c->next;
    else if (h->idle == c) h->idle = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
    h->nidle--;
}

static void conn_close(conn_t *c)
{
    if (!c) return;
    if (c->fd >= 0) {
        if (c->events) loop_del(c->h->loop, c->fd);
        close(c->fd);
    }
    if (c->ssl) SSL_free(c->ssl);
    if (c->tun_live) http_resp_free(&c->tun);
    buf_free(&c->tun_out);
    free(c);
}

static void waiting_unlink(http_req_t *r)
{
    if (!r->o) return;
    for (http_req_t **p = &dial_of(r->o)->waiting; *p; p = &(*p)->wnext)
        if (*p == r) {
            *p = r->wnext;
            r->wnext = NULL;
            return;
        }
}

/* Unlink and free a request; its connection (if any) is closed. */
static void req_free(http_req_t *r)
{
    http_t *h = r->h;
    if (r->prev) r->prev->next = r->next;
    else if (h->reqs == r) h->reqs = r->next;
    if (r->next) r->next->prev = r->prev;
    waiting_unlink(r);
    if (r->timer) loop_timer_cancel(h->loop, r->timer);
    if (r->c) {
        r->c->req = NULL;
        conn_close(r->c);
    }
    if (r->parser_live) http_resp_free(&r->parser);
    buf_free(&r->out);
    buf_free(&r->resp);
    h->active--;
    free(r);
}

/* The request ends: its callback, then it is freed. The connection has been
 * released (kept or closed) before, so a request started from the callback
 * may reuse it. */
static void req_finish(http_req_t *r, int net_err, const char *msg)
{
    if (r->c) {
        r->c->req = NULL;
        conn_close(r->c);
        r->c = NULL;
    }
    if (net_err && msg && msg != r->errmsg) snprintf(r->errmsg, sizeof(r->errmsg), "%s", msg);
    http_result res = {
        .status = net_err && !r->headers_done ? 0 : r->parser_live ? r->parser.status : 0,
        .net_err = net_err,
        .error = net_err ? r->errmsg : NULL,
        .fatal = net_err ? r->fatal : false,
        .body = &r->resp,
        .elapsed_ms = clock_mono_ms() - r->start_ms,
        .retry_after_ms = r->retry_after_ms,
        .should_retry = r->should_retry,
    };
    if (res.status < 200) res.status = 0;
    if (r->timer) loop_timer_cancel(r->h->loop, r->timer);
    r->timer = 0;
    r->cancelled = true; /* an http_cancel from the callback is harmless */
    r->in_cb = true;
    if (r->on_done) r->on_done(&res, r->arg);
    req_free(r);
}

static void req_fail(http_req_t *r, int net_err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void req_fail(http_req_t *r, int net_err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->errmsg, sizeof(r->errmsg), fmt, ap);
    va_end(ap);
    req_finish(r, net_err, r->errmsg);
}

static const char *ssl_errstr(char *b, size_t n)
{
    unsigned long e = ERR_get_error();
    if (!e) return "unknown error";
    ERR_error_string_n(e, b, n);
    ERR_clear_error();
    return b;
}

/* ---------- idle connections ---------- */

static void idle_sweep(loop_t *l, void *arg)
{
    (void)l;
    http_t *h = arg;
    h->idle_timer = 0;
    int64_t now = clock_mono_ms(), next = 0;
    for (conn_t *c = h->idle, *nx; c; c = nx) {
        nx = c->next;
        if (now - c->idle_since >= HTTP_IDLE_MAX_MS) {
            idle_unlink(c);
            conn_close(c);
        } else if (!next || c->idle_since + HTTP_IDLE_MAX_MS < next) {
            next = c->idle_since + HTTP_IDLE_MAX_MS;
        }
    }
    if (next) h->idle_timer = loop_timer(h->loop, next - now, idle_sweep, h);
}

static void conn_keep(conn_t *c)
{
    http_t *h = c->h;
    c->req = NULL;
    if (h->nidle >= HTTP_MAX_IDLE) {
        conn_close(c);
        return;
    }
    c->reused = true;
    c->idle_since = clock_mono_ms();
    conn_watch(c, EPOLLIN); /* readable while idle = closed (or garbage): drop it */
    c->next = h->idle;
    c->prev = NULL;
    if (h->idle) h->idle->prev = c;
    h->idle = c;
    h->nidle++;
    if (!h->idle_timer) h->idle_timer = loop_timer(h->loop, HTTP_IDLE_MAX_MS, idle_sweep, h);
}

static conn_t *conn_take_idle(http_t *h, origin_t *o)
{
    for (conn_t *c = h->idle; c; c = c->next)
        if (c->o == o) {
            idle_unlink(c);
            return c;
        }
    return NULL;
}

/* ---------- name resolution ---------- */

static void *resolve_thread(void *arg)
{
    resolve_job *j = arg;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(j->host, j->port, &hints, &res);
    pthread_mutex_lock(&res_mu);
    if (j->abandoned) {
        pthread_mutex_unlock(&res_mu);
        if (res) freeaddrinfo(res);
        free(j);
        return NULL;
    }
    j->res = res;
    j->gai_rc = rc;
    j->done = true;
    uint64_t one = 1;
    if (write(j->efd, &one, sizeof(one)) < 0) { /* the counter cannot overflow here */
    }
    pthread_mutex_unlock(&res_mu);
    return NULL;
}

static int resolve_start(http_t *h, origin_t *o)
{
    if (h->efd < 0) {
        int hi;
        h->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (h->efd < 0) return -errno;
        if ((hi = fcntl(h->efd, F_DUPFD_CLOEXEC, 1024)) >= 0) {
            close(h->efd);
            h->efd = hi;
        }
        if (loop_add(h->loop, h->efd, EPOLLIN, http_resolved, h) < 0) {
            close(h->efd);
            h->efd = -1;
            return -EIO;
        }
    }
    resolve_job *j = calloc(1, sizeof(*j));
    if (!j) return -ENOMEM;
    snprintf(j->host, sizeof(j->host), "%s", o->host);
    snprintf(j->port, sizeof(j->port), "%d", o->port);
    j->efd = h->efd;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&at, 1 << 20);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old); /* the thread takes no signal */
    pthread_t t;
    int rc = pthread_create(&t, &at, resolve_thread, j);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&at);
    if (rc) {
        free(j);
        return -rc;
    }
    o->job = j;
    return 0;
}

static void origin_wake(origin_t *o)
{
    /* One at a time: a callback may cancel any other waiting request. */
    while (o->waiting) {
        http_req_t *r = o->waiting;
        o->waiting = r->wnext;
        r->wnext = NULL;
        req_step(r);
    }
}

static void http_resolved(loop_t *l, int fd, uint32_t events, void *arg)
{
    (void)l;
    (void)events;
    http_t *h = arg;
    uint64_t n;
    if (read(fd, &n, sizeof(n)) < 0) { /* EAGAIN: spurious */
    }
    for (origin_t *o = h->origins; o; o = o->next) {
        resolve_job *j = o->job;
        if (!j) continue;
        pthread_mutex_lock(&res_mu);
        bool done = j->done;
        pthread_mutex_unlock(&res_mu);
        if (!done) continue;
        o->job = NULL;
        o->naddrs = 0;
        if (j->gai_rc) {
            snprintf(o->resolve_err, sizeof(o->resolve_err), "cannot resolve %s: %s", o->host,
                     j->gai_rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(j->gai_rc));
            o->resolved_at = 0;
        } else {
            /* IPv4 first, then IPv6, as they come within each family. */
            for (int fam = 0; fam < 2; fam++)
                for (struct addrinfo *a = j->res; a && o->naddrs < HTTP_MAX_ADDRS; a = a->ai_next) {
                    if (a->ai_family != (fam ? AF_INET6 : AF_INET) || a->ai_addrlen > sizeof(o->addrs[0])) continue;
                    memcpy(&o->addrs[o->naddrs], a->ai_addr, a->ai_addrlen);
                    o->alens[o->naddrs++] = a->ai_addrlen;
                }
            if (o->naddrs) {
                o->resolved_at = clock_mono_ms();
                o->resolve_err[0] = 0;
            } else {
                snprintf(o->resolve_err, sizeof(o->resolve_err), "cannot resolve %s: no address", o->host);
            }
        }
        if (j->res) freeaddrinfo(j->res);
        free(j);
        if (o->naddrs) {
            origin_wake(o);
        } else {
            while (o->waiting) { /* one at a time: a callback may cancel any other */
                http_req_t *r = o->waiting;
                o->waiting = r->wnext;
                r->wnext = NULL;
                if (r->o->px)
                    req_fail(r, -EHOSTUNREACH, "%s (the proxy %s from %s, for %s)", o->resolve_err, r->o->px->shown,
                             r->o->px->var, r->o->hostport);
                else
                    req_fail(r, -EHOSTUNREACH, "%s", o->resolve_err);
            }
        }
        /* Origins are freed only by http_free (never from a callback) and
         * new ones go in front: o->next is still valid here. */
    }
}

/* ---------- URL and origins ---------- */

typedef struct url_parts {
    bool tls;
    char host[256];
    int port;
    bool port_given;
    const char *target; /* path + query, points into the URL */
} url_parts;

static int parse_url(const char *url, url_parts *u, shed_err *err)
{
    memset(u, 0, sizeof(*u));
    const char *p;
    if (!strncasecmp(url, "http://", 7)) {
        p = url + 7;
    } else if (!strncasecmp(url, "https://", 8)) {
        p = url + 8;
        u->tls = true;
    } else {
        return err_msg(err, EINVAL, "URL %.100s: only http:// and https:// are supported", url);
    }
    const char *end = p + strcspn(p, "/?#");
    const char *portp;
    if (memchr(p, '@', (size_t)(end - p)))
        return err_msg(err, EINVAL, "URL %.100s: user information in a URL is not supported", url);
    switch (http_hostport_split(p, end, u->host, sizeof(u->host), &portp)) {
    case 0: break;
    case HTTP_HOST_UNCLOSED: return err_msg(err, EINVAL, "URL %.100s: unclosed [ in the host", url);
    case HTTP_HOST_BAD_CHAR: return err_msg(err, EINVAL, "URL %.100s: bad character in the host", url);
    default: return err_msg(err, EINVAL, "URL %.100s: bad host", url);
    }
    u->port = u->tls ? 443 : 80;
    if (portp) {
        if (portp == end) return err_msg(err, EINVAL, "URL %.100s: empty port", url);
        int port = http_port_parse(portp, end);
        if (port < 0) return err_msg(err, EINVAL, "URL %.100s: bad port", url);
        u->port = port;
        u->port_given = true;
    }
    u->target = *end == '#' || !*end ? "/" : end;
    for (const char *q = u->target; *q; q++)
        if ((unsigned char)*q <= 0x20 || *q == 0x7f || *q == '#')
            return err_msg(err, EINVAL, "URL path holds a space, a control character or '#'");
    return 0;
}

/* The origin of that scheme, host and port reached through px (NULL: directly). */
static origin_t *origin_find(http_t *h, const url_parts *u, const http_proxy *px, bool *created)
{
    *created = false;
    for (origin_t *o = h->origins; o; o = o->next)
        if (o->tls == u->tls && o->port == u->port && o->px == px && !strcasecmp(o->host, u->host)) return o;
    origin_t *o = calloc(1, sizeof(*o));
    if (!o) return NULL;
    *created = true;
    o->px = px;
    o->tls = u->tls;
    o->port = u->port;
    snprintf(o->host, sizeof(o->host), "%s", u->host);
    bool v6 = strchr(u->host, ':') != NULL;
    if (u->port_given)
        snprintf(o->hostport, sizeof(o->hostport), "%s%s%s:%d", v6 ? "[" : "", u->host, v6 ? "]" : "", u->port);
    else
        snprintf(o->hostport, sizeof(o->hostport), "%s%s%s", v6 ? "[" : "", u->host, v6 ? "]" : "");
    struct sockaddr_in *s4 = (struct sockaddr_in *)&o->addrs[0];
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&o->addrs[0];
    if (inet_pton(AF_INET, u->host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)u->port);
        o->alens[0] = sizeof(*s4);
        o->naddrs = 1;
        o->numeric = true;
    } else if (inet_pton(AF_INET6, u->host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)u->port);
        o->alens[0] = sizeof(*s6);
        o->naddrs = 1;
        o->numeric = true;
    }
    o->next = h->origins;
    h->origins = o;
    return o;
}

/* The origin a URL names, with the forward proxy the environment gives its
 * scheme unless NO_PROXY exempts its host. The first time an origin is seen
 * while a proxy is configured, one line says which way it goes. */
static origin_t *origin_get(http_t *h, const url_parts *u)
{
    const http_proxy *set = u->tls ? &h->px.https : &h->px.http;
    const http_proxy *px = http_proxy_for(&h->px, u->tls, u->host);
    origin_t *via = NULL;
    bool created;
    if (px) { /* the proxy's origin first: a proxied origin always has its via */
        url_parts pu = {.tls = false, .port = px->port, .port_given = true};
        snprintf(pu.host, sizeof(pu.host), "%s", px->host);
        via = origin_find(h, &pu, NULL, &created);
        if (!via) return NULL;
    }
    origin_t *o = origin_find(h, u, px, &created);
    if (!o || !created) return o;
    o->via = via;
    if (px)
        log_info("%s://%s: through the proxy %s (from %s)%s", u->tls ? "https" : "http", o->hostport, px->shown,
                 px->var, u->tls ? ", a CONNECT tunnel with TLS to the origin inside" : "");
    else if (set->set)
        log_info("%s://%s: direct, not through the proxy in %s (%s exempts it)", u->tls ? "https" : "http",
                 o->hostport, set->var, h->px.no_proxy_var);
    return o;
}

/* ---------- TLS ---------- */

static int tls_ctx(http_t *h, char *msg, size_t n)
{
    if (h->ssl_ctx) return 0;
    char eb[200];
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(msg, n, "TLS: SSL_CTX_new: %s", ssl_errstr(eb, sizeof(eb)));
        return -ENOMEM;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /* OpenSSL's default trust store; SSL_CERT_FILE / SSL_CERT_DIR override it. */
    if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        snprintf(msg, n, "TLS: cannot load the default trust store: %s", ssl_errstr(eb, sizeof(eb)));
        SSL_CTX_free(ctx);
        return -EIO;
    }
    ERR_clear_error();
    h->ssl_ctx = ctx;
    return 0;
}

/* ---------- connections ---------- */

static int conn_socket(conn_t *c)
{
    origin_t *o = dial_of(c->o);
    const struct sockaddr *sa = (const struct sockaddr *)&o->addrs[c->addr];
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    /* Long-lived sockets live at fd numbers >= 1024 when the limit allows:
     * the low numbers stay free for what needs them (a sandbox's setup
     * opens files after lowering its own RLIMIT_NOFILE, in a child that
     * still holds a copy of this process's fd table). */
    int hi = fcntl(fd, F_DUPFD_CLOEXEC, 1024);
    if (hi >= 0) {
        close(fd);
        fd = hi;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    c->fd = fd;
    c->events = 0;
    if (connect(fd, sa, o->alens[c->addr]) < 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        c->fd = -1;
        return -e;
    }
    c->state = C_CONNECTING;
    conn_watch(c, EPOLLOUT);
    return 0;
}

static void addr_str(const origin_t *o, int i, char *b, size_t n)
{
    const struct sockaddr *sa = (const struct sockaddr *)&o->addrs[i];
    char ip[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, ip, sizeof(ip));
    else
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, ip, sizeof(ip));
    snprintf(b, n, sa->sa_family == AF_INET6 ? "[%s]:%d" : "%s:%d", ip, o->port);
}

/* Try the addresses from c->addr on; on the last failure, fail the request. */
static void conn_connect_next(http_req_t *r, int last_err)
{
    conn_t *c = r->c;
    origin_t *o = dial_of(r->o);
    for (; c->addr < o->naddrs; c->addr++) {
        int rc = conn_socket(c);
        if (rc == 0) return;
        last_err = rc;
    }
    char a[64];
    addr_str(o, o->naddrs - 1, a, sizeof(a));
    if (!o->numeric) o->resolved_at = 0; /* resolve again next time */
    r->c = NULL;
    conn_close(c);
    int e = last_err ? -last_err : ECONNREFUSED;
    if (r->o->px && r->o->px->numeric)
        req_fail(r, -e, "connect to the proxy %s (from %s) for %s: %s", r->o->px->shown, r->o->px->var,
                 r->o->hostport, strerror(e));
    else if (r->o->px)
        req_fail(r, -e, "connect to the proxy %s (%s, from %s) for %s: %s", r->o->px->shown, a, r->o->px->var,
                 r->o->hostport, strerror(e));
    else
        req_fail(r, -e, "connect to %s (%s): %s", o->hostport, a, strerror(e));
}

static void req_send(http_req_t *r);

/* now: send at once (a kept connection, writable as a rule): EPOLLOUT is
 * armed only if the socket is full, so a request on a kept connection costs
 * no epoll_ctl at all (its idle watch is already EPOLLIN). Otherwise wait
 * for EPOLLOUT (a connection just made). */
static void req_send_begin(http_req_t *r, bool now)
{
    r->state = R_SEND;
    r->out_off = 0;
    if (r->parser_live) http_resp_free(&r->parser);
    http_resp_init(&r->parser, &http_cbs, r, r->head_method);
    r->parser_live = true;
    req_arm(r);
    if (now)
        req_send(r);
    else
        conn_watch(r->c, EPOLLOUT);
}

static void tls_step(http_req_t *r)
{
    conn_t *c = r->c;
    ERR_clear_error();
    int rc = SSL_connect(c->ssl);
    if (rc == 1) {
        c->state = C_READY;
        req_send_begin(r, false);
        return;
    }
    int e = SSL_get_error(c->ssl, rc);
    if (e == SSL_ERROR_WANT_READ) {
        conn_watch(c, EPOLLIN);
        return;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        conn_watch(c, EPOLLOUT);
        return;
    }
    long v = SSL_get_verify_result(c->ssl);
    if (v != X509_V_OK) {
        r->fatal = true;
        ERR_clear_error();
        req_fail(r, -EPROTO,
                 "TLS certificate of %s failed verification: %s; make the server present a "
                 "certificate for %s signed by a trusted CA, or trust its CA with SSL_CERT_FILE=<PEM "
                 "file> (or SSL_CERT_DIR)",
                 r->o->hostport, X509_verify_cert_error_string(v), r->o->host);
        return;
    }
    char eb[200];
    const char *why = e == SSL_ERROR_SYSCALL && errno ? strerror(errno) : ssl_errstr(eb, sizeof(eb));
    req_fail(r, -EPROTO, "TLS handshake with %s failed: %s", r->o->hostport, why);
}

static void tls_begin(http_req_t *r)
{
    conn_t *c = r->c;
    http_t *h = r->h;
    char msg[300];
    if (tls_ctx(h, msg, sizeof(msg)) < 0) {
        req_fail(r, -EIO, "%s", msg);
        return;
    }
    c->ssl = SSL_new(h->ssl_ctx);
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1) {
        req_fail(r, -ENOMEM, "TLS: SSL_new failed");
        return;
    }
    if (r->o->numeric) {
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), r->o->host) != 1) {
            req_fail(r, -EINVAL, "TLS: cannot verify against the address %s", r->o->host);
            return;
        }
    } else {
        if (SSL_set_tlsext_host_name(c->ssl, r->o->host) != 1 || SSL_set1_host(c->ssl, r->o->host) != 1) {
            req_fail(r, -EINVAL, "TLS: cannot set the host name %s", r->o->host);
            return;
        }
    }
    c->state = C_TLS;
    tls_step(r);
}

/* ---------- CONNECT tunnel through a proxy (https:// origins) ---------- */

static int tun_headers_done(long status, void *arg)
{
    (void)status;
    (void)arg;
    return 0;
}

/* The proxy's fields are never looked at (nor kept: they never reach a message). */
static const http_resp_cbs tun_cbs = {.on_headers_done = tun_headers_done};

static void tunnel_failed_status(http_req_t *r, long st)
{
    const http_proxy *px = r->o->px;
    const char *host = r->o->host;
    if (st == 407) {
        r->fatal = true; /* only other credentials (a restart) can fix it */
        req_fail(r, -EACCES, "the proxy %s (from %s) refused CONNECT to %s: HTTP 407 (%s); %s %s", px->shown,
                 px->var, r->o->hostport, px->auth ? "authentication failed" : "authentication required",
                 px->auth ? "correct the user:password in" : "give http://user:password@host:port in", px->var);
    } else if (st == 403) {
        r->fatal = true; /* the proxy's policy: retrying cannot change it */
        req_fail(r, -EACCES, "the proxy %s (from %s) refused CONNECT to %s: HTTP 403; allow it on the proxy, or "
                 "add %s to NO_PROXY", px->shown, px->var, r->o->hostport, host);
    } else {
        req_fail(r, -ECONNREFUSED, "the proxy %s (from %s) refused CONNECT to %s: HTTP %ld", px->shown, px->var,
                 r->o->hostport, st);
    }
}

/* Send "CONNECT host:port", read the answer (bounded by the parser; its
 * fields skipped; no body for a 2xx, as RFC 9110 says), then TLS with the
 * origin inside the tunnel. Only the Host, User-Agent and Proxy-Authorization
 * fields go to the proxy: the request's own headers (the API key) only ever
 * travel inside the TLS session. */
static void tunnel_step(http_req_t *r)
{
    conn_t *c = r->c;
    const http_proxy *px = r->o->px;
    while (c->tun_off < c->tun_out.len) {
        ssize_t w = send(c->fd, c->tun_out.data + c->tun_off, c->tun_out.len - c->tun_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR) return conn_watch(c, EPOLLOUT);
            int e = errno;
            req_fail(r, -e, "send CONNECT to the proxy %s (from %s) for %s: %s", px->shown, px->var, r->o->hostport,
                     strerror(e));
            return;
        }
        c->tun_off += (size_t)w;
    }
    conn_watch(c, EPOLLIN);
    char b[4096];
    for (;;) {
        ssize_t n = recv(c->fd, b, sizeof(b), 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) return;
            int e = errno;
            req_fail(r, -e, "receive the answer to CONNECT from the proxy %s (from %s) for %s: %s", px->shown,
                     px->var, r->o->hostport, strerror(e));
            return;
        }
        if (n == 0) {
            req_fail(r, -EPIPE, "the proxy %s (from %s) closed the connection without answering CONNECT %s",
                     px->shown, px->var, r->o->hostport);
            return;
        }
        size_t used = 0;
        int rc = http_resp_feed(&c->tun, b, (size_t)n, &used);
        if (rc < 0) {
            req_fail(r, rc == -EMSGSIZE ? -EMSGSIZE : -EPROTO, "the proxy %s (from %s) for %s: bad answer to CONNECT: %s",
                     px->shown, px->var, r->o->hostport, c->tun.why ? c->tun.why : strerror(-rc));
            return;
        }
        if (rc == HTTP_RESP_DONE) {
            long st = c->tun.status;
            http_resp_free(&c->tun);
            c->tun_live = false;
            buf_free(&c->tun_out);
            if (st < 200 || st > 299) {
                tunnel_failed_status(r, st);
                return;
            }
            if (used != (size_t)n) { /* the origin's TLS server never speaks first */
                req_fail(r, -EPROTO, "the proxy %s (from %s) sent bytes after its answer to CONNECT %s", px->shown,
                         px->var, r->o->hostport);
                return;
            }
            tls_begin(r);
            return;
        }
    }
}

static void tunnel_begin(http_req_t *r)
{
    conn_t *c = r->c;
    const http_proxy *px = r->o->px;
    bool v6 = strchr(r->o->host, ':') != NULL;
    char target[280];
    snprintf(target, sizeof(target), "%s%s%s:%d", v6 ? "[" : "", r->o->host, v6 ? "]" : "", r->o->port);
    buf_init(&c->tun_out, 8192);
    int rc = buf_printf(&c->tun_out, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: shed-worker/" SHED_VERSION "\r\n",
                        target, target);
    if (rc == 0 && px->auth) rc = buf_printf(&c->tun_out, "Proxy-Authorization: %s\r\n", px->auth);
    if (rc == 0) rc = buf_puts(&c->tun_out, "\r\n");
    if (rc < 0) {
        req_fail(r, -ENOMEM, "CONNECT request for %s: out of memory", r->o->hostport);
        return;
    }
    c->tun_off = 0;
    http_resp_init(&c->tun, &tun_cbs, c, true); /* true: no body, whatever the fields say */
    c->tun_live = true;
    c->state = C_TUNNEL;
    tunnel_step(r);
}

static void conn_connected(http_req_t *r)
{
    conn_t *c = r->c;
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) soerr = errno;
    if (soerr) {
        loop_del(r->h->loop, c->fd);
        close(c->fd);
        c->fd = -1;
        c->events = 0;
        c->addr++;
        conn_connect_next(r, -soerr);
        return;
    }
    if (r->o->px && r->o->tls) {
        tunnel_begin(r);
    } else if (r->o->tls) {
        tls_begin(r);
    } else {
        c->state = C_READY;
        req_send_begin(r, false);
    }
}

/* A reused connection died before any byte of the response: send again on a
 * new one (once). Returns true when it did. */
static bool req_resend(http_req_t *r)
{
    if (r->resent || !r->c || !r->c->reused || (r->parser_live && r->parser.started)) return false;
    r->resent = true;
    r->c->req = NULL;
    conn_close(r->c);
    r->c = NULL;
    r->state = R_START;
    req_step(r);
    return true;
}

static void req_send(http_req_t *r)
{
    conn_t *c = r->c;
    while (r->out_off < r->out.len) {
        size_t n = r->out.len - r->out_off;
        ssize_t w;
        if (c->ssl) {
            ERR_clear_error();
            int rc = SSL_write(c->ssl, r->out.data + r->out_off, n > INT32_MAX ? INT32_MAX : (int)n);
            if (rc <= 0) {
                int e = SSL_get_error(c->ssl, rc);
                if (e == SSL_ERROR_WANT_WRITE) return conn_watch(c, EPOLLOUT);
                if (e == SSL_ERROR_WANT_READ) return conn_watch(c, EPOLLIN);
                if (req_resend(r)) return;
                char eb[200];
                req_fail(r, -ECONNRESET, "send to %s: %s", r->o->hostport,
                         e == SSL_ERROR_SYSCALL && errno ? strerror(errno) : ssl_errstr(eb, sizeof(eb)));
                return;
            }
            w = rc;
        } else {
            w = send(c->fd, r->out.data + r->out_off, n, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EAGAIN || errno == EINTR) return conn_watch(c, EPOLLOUT);
                int e = errno;
                if (req_resend(r)) return;
                req_fail(r, -e, "send to %s: %s", r->o->hostport, strerror(e));
                return;
            }
        }
        r->out_off += (size_t)w;
    }
    r->state = R_RECV; /* r->out is kept until a response byte comes: a resend needs it */
    conn_watch(c, EPOLLIN);
}

/* The response is complete: keep or close the connection, then call back. */
static void req_complete(http_req_t *r, bool reusable)
{
    conn_t *c = r->c;
    r->c = NULL;
    if (reusable && !r->parser.close)
        conn_keep(c);
    else
        conn_close(c);
    req_finish(r, 0, NULL);
}

/* A parse error or a callback's stop: end the request accordingly. */
static void req_parse_failed(http_req_t *r, int rc)
{
    if (r->cancelled) {
        req_free(r);
        return;
    }
    if (r->body_over) {
        req_finish(r, -EMSGSIZE, r->errmsg); /* our own body bound: message already set */
        return;
    }
    if (r->proxy_status == 407) {
        const http_proxy *px = r->o->px;
        r->fatal = true; /* only other credentials (a restart) can fix it */
        req_fail(r, -EACCES, "the proxy %s (from %s) refused the request for %s: HTTP 407 (%s); %s %s", px->shown,
                 px->var, r->o->hostport, px->auth ? "authentication failed" : "authentication required",
                 px->auth ? "correct the user:password in" : "give http://user:password@host:port in", px->var);
        return;
    }
    if (rc == -ECANCELED) {
        req_fail(r, -ECANCELED, "response from %s abandoned by the receiver", r->o->hostport);
        return;
    }
    req_fail(r, rc, "bad response from %s: %s", r->o->hostport, r->parser.why ? r->parser.why : strerror(-rc));
}

static void req_recv(http_req_t *r)
{
    conn_t *c = r->c;
    char b[HTTP_READ_CHUNK];
    for (;;) {
        ssize_t n;
        if (c->ssl) {
            ERR_clear_error();
            int rc = SSL_read(c->ssl, b, sizeof(b));
            if (rc <= 0) {
                int e = SSL_get_error(c->ssl, rc);
                if (e == SSL_ERROR_WANT_READ) return conn_watch(c, EPOLLIN);
                if (e == SSL_ERROR_WANT_WRITE) return conn_watch(c, EPOLLOUT);
                if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0) || e == SSL_ERROR_SSL) {
                    if (e == SSL_ERROR_SSL && ERR_peek_last_error() &&
                        ERR_GET_REASON(ERR_peek_last_error()) != SSL_R_UNEXPECTED_EOF_WHILE_READING) {
                        char eb[200];
                        if (req_resend(r)) return;
                        req_fail(r, -EPROTO, "TLS read from %s: %s", r->o->hostport, ssl_errstr(eb, sizeof(eb)));
                        return;
                    }
                    n = 0;
                } else {
                    int en = errno ? errno : ECONNRESET;
                    if (req_resend(r)) return;
                    req_fail(r, -en, "receive from %s: %s", r->o->hostport, strerror(en));
                    return;
                }
            } else {
                n = rc;
            }
        } else {
            n = recv(c->fd, b, sizeof(b), 0);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) return;
                int en = errno;
                if (req_resend(r)) return;
                req_fail(r, -en, "receive from %s: %s", r->o->hostport, strerror(en));
                return;
            }
        }
        if (n == 0) {
            int rc = http_resp_eof(&r->parser);
            if (rc == HTTP_RESP_DONE) {
                r->c->reused = false;
                req_complete(r, false);
                return;
            }
            if (req_resend(r)) return;
            req_fail(r, -EPIPE, "%s: %s", r->o->hostport, r->parser.why);
            return;
        }
        r->last_rx_ms = clock_mono_ms();
        if (r->out.data) buf_free(&r->out); /* no resend once the response began */
        size_t used = 0;
        r->in_cb = true;
        int rc = http_resp_feed(&r->parser, b, (size_t)n, &used);
        r->in_cb = false;
        if (rc < 0) {
            req_parse_failed(r, rc);
            return;
        }
        if (r->cancelled) {
            req_free(r);
            return;
        }
        if (rc == HTTP_RESP_DONE) {
            /* Bytes after the response, or a TLS record still buffered: not
             * a connection to reuse. */
            bool clean = used == (size_t)n && (!c->ssl || SSL_pending(c->ssl) == 0);
            req_complete(r, clean);
            return;
        }
    }
}

static void conn_io(loop_t *l, int fd, uint32_t events, void *arg)
{
    (void)l;
    (void)fd;
    (void)events; /* what the socket can do is found by trying (errors included) */
    conn_t *c = arg;
    http_req_t *r = c->req;
    if (!r) { /* idle: the server closed it (or sent something unasked) */
        idle_unlink(c);
        conn_close(c);
        return;
    }
    switch (c->state) {
    case C_CONNECTING:
        conn_connected(r);
        return;
    case C_TUNNEL:
        tunnel_step(r);
        return;
    case C_TLS:
        tls_step(r);
        return;
    }
    if (r->state == R_SEND) req_send(r);
    else if (r->state == R_RECV) req_recv(r);
}

/* ---------- parser callbacks ---------- */

static int cb_header(const char *name, size_t nl, const char *v, size_t vl, const char *line, size_t ll, void *arg)
{
    http_req_t *r = arg;
    if (nl == 14 && !strncasecmp(name, "x-should-retry", 14)) {
        r->should_retry = (vl == 4 && !strncmp(v, "true", 4)) ? 1 : (vl == 5 && !strncmp(v, "false", 5)) ? 0 : -1;
    } else if (nl >= 11 && (name[0] == 'r' || name[0] == 'R')) {
        bool is_ms = false;
        int64_t ra = proto_retry_after_header(line, ll, clock_wall_ms() / 1000, &is_ms);
        if (ra > 0 && (is_ms || !r->retry_after_is_ms)) {
            r->retry_after_ms = ra;
            r->retry_after_is_ms = is_ms;
        }
    }
    return 0;
}

static int cb_headers_done(long status, void *arg)
{
    http_req_t *r = arg;
    if (status == 407 && r->o->px && !r->o->tls) { /* the proxy's, not the origin's: see req_parse_failed */
        r->proxy_status = status;
        return 1;
    }
    r->headers_done = true;
    r->streaming_ok = r->on_data && status >= 200 && status < 300;
    if (r->on_headers && r->on_headers(status, r->arg)) return 1;
    return r->cancelled ? 1 : 0;
}

static int cb_body(const char *data, size_t len, void *arg)
{
    http_req_t *r = arg;
    if (r->streaming_ok) {
        if (r->on_data(data, len, r->arg)) return 1;
        return r->cancelled ? 1 : 0;
    }
    if (buf_append(&r->resp, data, len) < 0) {
        r->body_over = true;
        snprintf(r->errmsg, sizeof(r->errmsg), "response body from %s larger than %zu bytes", r->o->hostport,
                 r->resp.limit);
        return -1;
    }
    return 0;
}

static const http_resp_cbs http_cbs = {.on_header = cb_header, .on_headers_done = cb_headers_done, .on_body = cb_body};

/* ---------- request state and timers ---------- */

static void req_timer(loop_t *l, void *arg)
{
    (void)l;
    http_req_t *r = arg;
    r->timer = 0;
    if (r->state == R_START) {
        req_step(r);
        return;
    }
    int64_t now = clock_mono_ms();
    bool connecting = r->state == R_WAIT_ADDR || r->state == R_CONNECT;
    char vb[340];
    if (r->timeout_ms > 0 && now - r->start_ms >= r->timeout_ms) {
        req_fail(r, -ETIMEDOUT, "%s: timed out after %lld ms%s%s", r->o->hostport, (long long)(now - r->start_ms),
                 connecting ? " (connecting)" : "", via_str(r->o, vb, sizeof(vb)));
        return;
    }
    if (connecting && now - r->connect_start_ms >= r->connect_ms) {
        req_fail(r, -ETIMEDOUT, "%s: connect timed out after %lld ms%s", r->o->hostport,
                 (long long)(now - r->connect_start_ms), via_str(r->o, vb, sizeof(vb)));
        return;
    }
    if (r->stall_ms > 0 && now - r->last_rx_ms >= r->stall_ms) {
        req_fail(r, -ETIMEDOUT, "%s: no data for %lld ms", r->o->hostport, (long long)(now - r->last_rx_ms));
        return;
    }
    req_arm(r);
}

/* The timer at the nearest deadline. */
static void req_arm(http_req_t *r)
{
    int64_t now = clock_mono_ms(), at = 0;
    if (r->timeout_ms > 0) at = r->start_ms + r->timeout_ms;
    if (r->state == R_WAIT_ADDR || r->state == R_CONNECT) {
        int64_t d = r->connect_start_ms + r->connect_ms;
        if (!at || d < at) at = d;
    }
    if (r->stall_ms > 0) {
        int64_t d = r->last_rx_ms + r->stall_ms;
        if (!at || d < at) at = d;
    }
    if (r->timer) loop_timer_cancel(r->h->loop, r->timer);
    r->timer = 0;
    if (at) r->timer = loop_timer(r->h->loop, at > now ? at - now : 0, req_timer, r);
}

/* Move a request on: a connection (idle, or a new one), or wait for the
 * origin's addresses. */
static void req_step(http_req_t *r)
{
    http_t *h = r->h;
    origin_t *o = dial_of(r->o); /* the proxy's origin when there is one */
    conn_t *c = conn_take_idle(h, r->o);
    if (c) {
        c->req = r;
        r->c = c;
        req_send_begin(r, true);
        return;
    }
    r->connect_start_ms = clock_mono_ms();
    if (!o->numeric && (!o->resolved_at || clock_mono_ms() - o->resolved_at > HTTP_DNS_TTL_MS)) {
        r->state = R_WAIT_ADDR;
        req_arm(r);
        if (!o->job) {
            int rc = resolve_start(h, o);
            if (rc < 0) {
                req_fail(r, rc, "resolve %s: %s", o->host, strerror(-rc));
                return;
            }
            o->resolve_err[0] = 0;
        }
        r->wnext = o->waiting;
        o->waiting = r;
        return;
    }
    if (!o->naddrs) {
        req_fail(r, -EHOSTUNREACH, "%s", o->resolve_err[0] ? o->resolve_err : "no address");
        return;
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        req_fail(r, -ENOMEM, "out of memory");
        return;
    }
    c->h = h;
    c->o = r->o;
    c->fd = -1;
    c->req = r;
    r->c = c;
    r->state = R_CONNECT;
    req_arm(r);
    conn_connect_next(r, 0);
}

/* ---------- public ---------- */

int http_new(loop_t *loop, http_t **out, shed_err *err)
{
    http_t *h = calloc(1, sizeof(*h));
    if (!h) return err_set(err, ENOMEM, "http_new");
    h->loop = loop;
    h->efd = -1;
    int rc = http_proxy_env_load(&h->px, NULL, NULL, err);
    if (rc < 0) {
        free(h);
        return rc;
    }
    *out = h;
    return 0;
}

void http_free(http_t *h)
{
    if (!h) return;
    while (h->reqs) req_free(h->reqs);
    while (h->idle) {
        conn_t *c = h->idle;
        idle_unlink(c);
        conn_close(c);
    }
    if (h->idle_timer) loop_timer_cancel(h->loop, h->idle_timer);
    pthread_mutex_lock(&res_mu);
    for (origin_t *o = h->origins; o; o = o->next)
        if (o->job) {
            if (o->job->done) {
                if (o->job->res) freeaddrinfo(o->job->res);
                free(o->job);
            } else {
                o->job->abandoned = true; /* the thread frees it */
            }
            o->job = NULL;
        }
    pthread_mutex_unlock(&res_mu);
    if (h->efd >= 0) {
        loop_del(h->loop, h->efd);
        close(h->efd);
    }
    while (h->origins) {
        origin_t *o = h->origins;
        h->origins = o->next;
        free(o);
    }
    if (h->ssl_ctx) SSL_CTX_free(h->ssl_ctx);
    http_proxy_env_free(&h->px);
    free(h);
}

int http_active(const http_t *h)
{
    return h->active;
}

void http_cancel(http_req_t *r)
{
    if (!r || r->cancelled) return;
    r->cancelled = true;
    if (r->in_cb) return; /* freed once its callback returns */
    req_free(r);
}

http_req_t *http_start(http_t *h, const http_opts *o, shed_err *err)
{
    url_parts u;
    if (parse_url(o->url, &u, err) < 0) return NULL;
    const char *method = o->method ? o->method : "GET";
    for (const char *m = method; *m; m++)
        if (*m < 'A' || *m > 'Z') {
            err_msg(err, EINVAL, "bad HTTP method");
            return NULL;
        }
    for (const char *const *hd = o->headers; hd && *hd; hd++)
        if (strpbrk(*hd, "\r\n") || !strchr(*hd, ':')) {
            err_msg(err, EINVAL, "bad request header (a CR, an LF or no colon)");
            return NULL;
        }
    origin_t *org = origin_get(h, &u);
    http_req_t *r = org ? calloc(1, sizeof(*r)) : NULL;
    if (!r) {
        err_set(err, ENOMEM, "http request");
        return NULL;
    }
    r->h = h;
    r->o = org;
    r->should_retry = -1;
    r->on_data = o->on_data;
    r->on_headers = o->on_headers;
    r->on_done = o->on_done;
    r->arg = o->arg;
    r->start_ms = r->last_rx_ms = r->connect_start_ms = clock_mono_ms();
    r->timeout_ms = o->timeout_ms;
    r->connect_ms = o->connect_timeout_ms ? o->connect_timeout_ms : HTTP_CONNECT_DEFAULT_MS;
    r->stall_ms = o->stall_timeout_ms;
    r->head_method = !strcmp(method, "HEAD");
    buf_init(&r->resp, o->max_body ? o->max_body : HTTP_DEFAULT_MAX_BODY);
    buf_init(&r->out, HTTP_MAX_HEAD + o->body_len);
    /* Through a proxy, an http:// request names its origin in the request
     * line (absolute form) and carries the proxy's credentials; an https://
     * one goes inside a CONNECT tunnel as it would directly. */
    bool absolute = org->px && !org->tls;
    int rc = buf_printf(&r->out, "%s %s%s%s HTTP/1.1\r\nHost: %s\r\nUser-Agent: shed-worker/" SHED_VERSION "\r\n",
                        method, absolute ? "http://" : "", absolute ? org->hostport : "", u.target, org->hostport);
    if (rc == 0 && absolute && org->px->auth) rc = buf_printf(&r->out, "Proxy-Authorization: %s\r\n", org->px->auth);
    for (const char *const *hd = o->headers; rc == 0 && hd && *hd; hd++) rc = buf_printf(&r->out, "%s\r\n", *hd);
    if (rc == 0 && (o->body_len || !strcmp(method, "POST") || !strcmp(method, "PUT")))
        rc = buf_printf(&r->out, "Content-Length: %zu\r\n", o->body_len);
    if (rc == 0) rc = buf_puts(&r->out, "\r\n");
    if (rc == 0 && o->body_len) rc = buf_append(&r->out, o->body, o->body_len);
    if (rc < 0) {
        buf_free(&r->out);
        free(r);
        err_msg(err, rc == -EMSGSIZE ? EMSGSIZE : ENOMEM, "HTTP request head too large");
        return NULL;
    }
    r->next = h->reqs;
    if (h->reqs) h->reqs->prev = r;
    h->reqs = r;
    h->active++;
    r->state = R_START;
    r->timer = loop_timer(h->loop, 0, req_timer, r); /* the work starts on the loop */
    if (!r->timer) {
        req_free(r);
        err_set(err, ENOMEM, "http request timer");
        return NULL;
    }
    return r;
}
