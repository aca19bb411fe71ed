/* The egress proxy: serves a sandbox's listeners (HTTP proxy, SOCKS5, DNS
 * stub), created by init inside the sandbox's network namespace, on the
 * creator's event loop. Each destination is decided by the policy; names are
 * resolved here (staticHosts, else getaddrinfo in the resolver pool) and the
 * connection goes from the host's namespace to that resolution. It must
 * never connect to an address the sandbox chose (only to literals the
 * policy lists, or to what this proxy resolved), never block the loop, and
 * never let one sandbox's connections starve another's: connections per
 * sandbox are capped (the listener pauses at the cap), accepts and reads per
 * wake-up are bounded, and every phase has a deadline. */
#include "egress/egress.h"

#include "base/buf.h"
#include "base/cleanup.h"
#include "base/clock.h"
#include "base/log.h"
#include "egress/egress_int.h"
#include "egress/resolve.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define RELAY_BUF (128 * 1024)   /* per direction, when splice is not available */
#define PIPE_SIZE (1024 * 1024)  /* per direction once bulk: splice(2) moves pages, no copy */
#define PIPE_GROW_AT (64 * 1024) /* moved in one wake-up: a bulk transfer, grow the pipe */
#define PUMP_BUDGET (1024 * 1024) /* taken in per direction per wake-up, then others' turn */
#define ACCEPTS_PER_WAKE 16
#define DNS_PER_WAKE 16
#define DNS_PENDING_MAX 64       /* per sandbox */
#define RESOLVING_MAX 4          /* lookups in flight per sandbox (the pool has 8 threads);
                                  * the rest queue per sandbox */
#define LINGER_MS 2000
#define SWEEP_MS 250
#define ISSUED_MAX 256           /* addresses the DNS stub handed out, per sandbox */
#define ISSUED_TTL_MS (10 * 60 * 1000)

enum kind { K_HTTP, K_SOCKS };
enum state {
    S_HEAD,        /* HTTP request head */
    S_SOCKS_GREET,
    S_SOCKS_REQ,
    S_RESOLVE_WAIT, /* queued behind this sandbox's lookups */
    S_RESOLVE,
    S_CONNECT,
    S_RELAY,
    S_CLOSING,     /* flushing an error reply to the client */
    S_LINGER,      /* reply sent; discarding input until EOF so no RST eats it */
};

typedef struct sbx sbx_t;
typedef struct conn conn_t;

/* One direction of a connection: bytes we produced or must rewrite (replies,
 * the rewritten request head) sit in buf and always leave first; relayed
 * bytes go through a pipe with splice(2) (zero copy), or through buf when no
 * pipe could be had (out of fds). */
typedef struct dir {
    char *buf;
    size_t cap, off, len;
    int pr, pw;         /* pipe, or -1 */
    size_t inpipe, pcap; /* bytes in the pipe, what it may hold */
    bool grown;         /* the pipe was (or could not be) made big */
    bool pipe_full;     /* splice into the pipe said EAGAIN with bytes in it */
    bool eof, shut;
} dir_t;

struct conn {
    conn_t *prev, *next;
    conn_t *wait_next; /* S_RESOLVE_WAIT queue */
    sbx_t *sb;
    enum kind kind;
    bool plain;        /* absolute-URI HTTP (else CONNECT) */
    enum state state;
    int cfd, ufd;
    uint32_t cev, uev;
    bool cparked, uparked;  /* hung up and out of epoll for now */
    bool chup, uhup;        /* hang-up seen */
    buf_t in;
    dir_t up, down; /* client->upstream, upstream->client */
    char host[EGRESS_NAME_MAX + 3];
    bool host_is_ip;
    int port;
    egress_addr addrs[EGRESS_ADDRS_MAX];
    int naddrs, ai;
    bool fixed_addr;   /* the address came from the DNS stub's own answer */
    char addr_str[64];
    char rule[EGRESS_RULE_MAX];
    const char *error;
    bool allowed, reported;
    uint64_t bytes_up, bytes_down;
    int64_t start_ms, deadline_ms;
    resolve_job *job;
    /* Plain HTTP: exactly the first request goes upstream (head + body as
     * framed); every later client byte is read and dropped, unless the
     * upstream answered an Upgrade request with 101 (then opaque). */
    bool req_done;     /* the request's last byte is queued upstream */
    bool body_chunked;
    uint64_t body_left; /* Content-Length bytes still to forward */
    egress_chunked ck;
    bool want_upgrade, upgrade_decided, upgraded;
    char status[12];   /* the first bytes of the upstream's answer */
    size_t nstatus;
};

typedef struct dnsq {
    struct dnsq *prev, *next;
    struct dnsq *wait_next; /* queued behind this sandbox's lookups */
    sbx_t *sb;
    struct sockaddr_storage from;
    socklen_t fromlen;
    uint8_t pkt[512];
    size_t len;
    egress_dns_q q;
    resolve_job *job;
    int64_t start_ms;
} dnsq_t;

typedef struct issued {
    egress_addr a;
    char name[EGRESS_NAME_MAX + 1];
    int64_t expires;
} issued_t;

struct sbx {
    sbx_t *next;
    egress_t *e;
    char label[128];
    egress_policy *pol;
    int http_fd, socks_fd, dns_fd;
    bool paused, detaching;
    conn_t *conns;
    int nconns;
    int nresolving;
    conn_t *wait_head, *wait_tail;
    dnsq_t *dnsqs;
    int ndnsq;
    dnsq_t *dwait_head, *dwait_tail;
    bool dns_turn; /* queued lookups alternate between connections and DNS */
    issued_t issued[ISSUED_MAX];
    int issued_next;
};

struct egress {
    loop_t *loop;
    egress_event_cb cb;
    void *cb_arg;
    resolver *res;
    sbx_t *sbxs;
    uint64_t sweep;
};

static void conn_close(conn_t *c);
static void conn_update(conn_t *c);
static void on_conn_fd(loop_t *l, int fd, uint32_t events, void *arg);
static void start_resolve(conn_t *c);
static void wait_remove(sbx_t *sb, conn_t *c);
static void sbx_lookup_done(sbx_t *sb);
static void dns_start(dnsq_t *d);

/* ---------- events ---------- */

static void report(sbx_t *sb, const char *proto, const char *host, int port, const char *addr,
                   bool allowed, const char *rule, const char *error, uint64_t up, uint64_t down,
                   int64_t dur)
{
    if (!sb->e->cb) return;
    egress_event ev = {.label = sb->label, .proto = proto, .host = host, .port = port,
                       .address = addr && addr[0] ? addr : NULL, .allowed = allowed,
                       .rule = rule, .error = error, .bytes_up = up, .bytes_down = down,
                       .duration_ms = dur};
    sb->e->cb(&ev, sb->e->cb_arg);
}

static const char *conn_proto(const conn_t *c)
{
    if (c->kind == K_SOCKS) return "socks5";
    return c->plain ? "http" : "connect";
}

static void conn_report(conn_t *c, const char *proto)
{
    if (c->reported || !c->host[0]) return;
    c->reported = true;
    report(c->sb, proto, c->host, c->port, c->addr_str, c->allowed, c->rule, c->error,
           c->bytes_up, c->bytes_down, clock_mono_ms() - c->start_ms);
}

/* ---------- buffers ---------- */

static int dir_alloc(dir_t *d, size_t cap)
{
    if (d->cap >= cap) return 0;
    char *b = realloc(d->buf, cap);
    if (!b) return -ENOMEM;
    d->buf = b;
    d->cap = cap;
    return 0;
}

static int dir_put(dir_t *d, const void *data, size_t n)
{
    if (d->off + d->len + n > d->cap) {
        if (d->off) {
            memmove(d->buf, d->buf + d->off, d->len);
            d->off = 0;
        }
        if (d->len + n > d->cap && dir_alloc(d, d->len + n) < 0) return -ENOMEM;
    }
    memcpy(d->buf + d->off + d->len, data, n);
    d->len += n;
    return 0;
}

static bool dir_can_read(const dir_t *d)
{
    if (d->eof) return false;
    if (d->pr >= 0) return !d->pipe_full && d->inpipe < d->pcap;
    return d->off + d->len < d->cap;
}

static bool dir_has_out(const dir_t *d)
{
    return d->len > 0 || d->inpipe > 0;
}

static void dir_pipe(dir_t *d)
{
    int p[2];
    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0) return;
    int sz = fcntl(p[1], F_GETPIPE_SZ);
    d->pcap = sz > 0 ? (size_t)sz : 4096;
    d->pr = p[0];
    d->pw = p[1];
}

/* A connection that fills its pipe moves bulk data: give it a big pipe
 * (fewer wake-ups, bigger sends per MiB). Small exchanges keep the default
 * one, so idle connections do not eat the per-user pipe quota; when the
 * quota says no, the current size still works. */
static void dir_grow(dir_t *d)
{
    if (d->pr < 0 || d->grown) return;
    d->grown = true;
    int sz = fcntl(d->pw, F_SETPIPE_SZ, PIPE_SIZE);
    if (sz > 0 && (size_t)sz > d->pcap) {
        d->pcap = (size_t)sz;
        d->pipe_full = false;
    }
}

static void dir_close(dir_t *d)
{
    if (d->pr >= 0) close(d->pr);
    if (d->pw >= 0) close(d->pw);
    d->pr = d->pw = -1;
    free(d->buf);
    d->buf = NULL;
}

/* ---------- replies ---------- */

static const char *http_reason(int status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 431: return "Request Header Fields Too Large";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Error";
    }
}

static int socks_code_for(int status)
{
    switch (status) {
    case 403: return SOCKS_REP_RULESET;
    case 504: return SOCKS_REP_TTL;
    case 502: return SOCKS_REP_HOSTUNREACH;
    default: return SOCKS_REP_FAIL;
    }
}

/* Queue an error reply, then close. `denied` marks a policy decision. */
static void conn_fail(conn_t *c, int status, bool denied, const char *why, int socks_code)
{
    if (c->ufd >= 0) {
        if (!c->uparked) loop_del(c->sb->e->loop, c->ufd);
        close(c->ufd);
        c->ufd = -1;
        c->uev = 0;
    }
    if (c->state == S_RESOLVE_WAIT) wait_remove(c->sb, c);
    if (c->job) {
        resolver_cancel(c->job);
        c->job = NULL;
        sbx_lookup_done(c->sb);
    }
    /* Only our own replies (the SOCKS method choice) can be queued here. */
    c->down.eof = true;
    if (dir_alloc(&c->down, c->down.len + 1024) < 0) {
        conn_close(c);
        return;
    }
    if (c->kind == K_HTTP) {
        buf_t b;
        buf_init(&b, 4096);
        char body[EGRESS_RULE_MAX + 256];
        if (denied)
            snprintf(body, sizeof(body), "shed egress policy denied %s:%d: %s\n", c->host, c->port,
                     why);
        else
            snprintf(body, sizeof(body), "shed egress: %s\n", why);
        buf_printf(&b, "HTTP/1.1 %d %s\r\n", status, http_reason(status));
        if (denied) buf_printf(&b, "X-Shed-Denied: %s\r\n", why);
        else buf_printf(&b, "X-Shed-Error: %s\r\n", why);
        buf_printf(&b, "Content-Type: text/plain; charset=utf-8\r\nContent-Length: %zu\r\n"
                       "Connection: close\r\n\r\n%s",
                   strlen(body), body);
        if (b.data) dir_put(&c->down, b.data, b.len);
        buf_free(&b);
    } else {
        uint8_t rep[10] = {5, (uint8_t)(socks_code ? socks_code : socks_code_for(status)), 0, 1};
        /* Before the greeting was answered there is no request to reply to. */
        if (c->state == S_SOCKS_GREET) {
            rep[1] = 0xff;
            dir_put(&c->down, rep, 2);
        } else {
            dir_put(&c->down, rep, sizeof(rep));
        }
    }
    c->state = S_CLOSING;
    c->deadline_ms = loop_now_ms(c->sb->e->loop) + LINGER_MS;
    conn_update(c);
}

static void conn_deny(conn_t *c, const char *rule)
{
    c->allowed = false;
    snprintf(c->rule, sizeof(c->rule), "%s", rule);
    conn_report(c, conn_proto(c));
    conn_fail(c, 403, true, c->rule, SOCKS_REP_RULESET);
}

/* ---------- lifecycle ---------- */

static void sbx_resume_accept(sbx_t *sb)
{
    if (!sb->paused || sb->detaching || sb->nconns >= sb->pol->max_connections) return;
    sb->paused = false;
    if (sb->http_fd >= 0) loop_mod(sb->e->loop, sb->http_fd, EPOLLIN);
    if (sb->socks_fd >= 0) loop_mod(sb->e->loop, sb->socks_fd, EPOLLIN);
}

static void wait_remove(sbx_t *sb, conn_t *c)
{
    conn_t **pp = &sb->wait_head, *prev = NULL;
    while (*pp && *pp != c) {
        prev = *pp;
        pp = &(*pp)->wait_next;
    }
    if (!*pp) return;
    *pp = c->wait_next;
    if (sb->wait_tail == c) sb->wait_tail = prev;
    c->wait_next = NULL;
}

/* A lookup of this sandbox ended: start queued ones, connections and DNS
 * questions in turn, so neither kind can crowd the other out. */
static void sbx_lookup_done(sbx_t *sb)
{
    sb->nresolving--;
    if (sb->detaching) return;
    while (sb->nresolving < RESOLVING_MAX && (sb->wait_head || sb->dwait_head)) {
        bool dns = sb->dwait_head && (sb->dns_turn || !sb->wait_head);
        sb->dns_turn = !dns;
        if (dns) {
            dnsq_t *d = sb->dwait_head;
            sb->dwait_head = d->wait_next;
            if (!sb->dwait_head) sb->dwait_tail = NULL;
            d->wait_next = NULL;
            dns_start(d);
        } else {
            conn_t *c = sb->wait_head;
            sb->wait_head = c->wait_next;
            if (!sb->wait_head) sb->wait_tail = NULL;
            c->wait_next = NULL;
            start_resolve(c);
        }
    }
}

static void conn_close(conn_t *c)
{
    sbx_t *sb = c->sb;
    loop_t *l = sb->e->loop;
    conn_report(c, conn_proto(c));
    if (c->state == S_RESOLVE_WAIT) wait_remove(sb, c);
    if (c->job) {
        resolver_cancel(c->job);
        c->job = NULL;
        sbx_lookup_done(sb);
    }
    if (c->cfd >= 0) {
        if (!c->cparked) loop_del(l, c->cfd);
        close(c->cfd);
    }
    if (c->ufd >= 0) {
        if (!c->uparked) loop_del(l, c->ufd);
        close(c->ufd);
    }
    buf_free(&c->in);
    dir_close(&c->up);
    dir_close(&c->down);
    if (c->prev)
        c->prev->next = c->next;
    else
        sb->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    sb->nconns--;
    free(c);
    sbx_resume_accept(sb);
}

/* ---------- relay ---------- */

/* How many of the n client bytes at p belong to the first request (the
 * rest is dropped); sets req_done at its end. -1: malformed chunked body. */
static long plain_take(conn_t *c, const char *p, size_t n)
{
    if (c->req_done) return 0;
    if (c->body_chunked) {
        bool done;
        long k = egress_chunked_scan(&c->ck, p, n, &done);
        if (k < 0) return -1;
        if (done) c->req_done = true;
        return k;
    }
    size_t k = (uint64_t)n < c->body_left ? n : (size_t)c->body_left;
    c->body_left -= k;
    if (c->body_left == 0) c->req_done = true;
    return (long)k;
}

/* Client bytes of a plain-HTTP connection (not upgraded): the first
 * request's go to d->buf, anything after it is read and dropped; while an
 * Upgrade waits for the upstream's answer, nothing is read. Returns what
 * recv returned, -2 to stop for now, -3 for a malformed body. */
static ssize_t plain_in(conn_t *c, dir_t *d, int src)
{
    if (c->req_done) {
        if (c->want_upgrade && !c->upgrade_decided) return -2;
        char sink[16384];
        return recv(src, sink, sizeof(sink), MSG_DONTWAIT);
    }
    if (d->off && d->off + d->len == d->cap) {
        memmove(d->buf, d->buf + d->off, d->len);
        d->off = 0;
    }
    size_t space = d->cap - d->off - d->len;
    if (space == 0) return -2;
    if (!c->body_chunked && c->body_left < space) space = (size_t)c->body_left;
    ssize_t n = recv(src, d->buf + d->off + d->len, space, MSG_DONTWAIT);
    if (n > 0) {
        long k = plain_take(c, d->buf + d->off + d->len, (size_t)n);
        if (k < 0) {
            c->error = "malformed chunked request body";
            return -3;
        }
        d->len += (size_t)k;
    }
    return n;
}

/* The upstream's first 12 bytes decide an Upgrade: "HTTP/1.x 101" or not. */
static void saw_status(conn_t *c, const char *p, size_t n, bool eof)
{
    size_t k = sizeof(c->status) - c->nstatus;
    if (k > n) k = n;
    memcpy(c->status + c->nstatus, p, k);
    c->nstatus += k;
    if (c->nstatus == sizeof(c->status) || eof) {
        c->upgrade_decided = true;
        c->upgraded = c->nstatus == sizeof(c->status) &&
                      (memcmp(c->status, "HTTP/1.1 101", 12) == 0 ||
                       memcmp(c->status, "HTTP/1.0 101", 12) == 0);
    }
}

/* Can client bytes be taken now? */
static bool up_can_read(const conn_t *c)
{
    if (c->plain && c->req_done && c->want_upgrade && !c->upgrade_decided) return false;
    return dir_can_read(&c->up);
}

/* Move bytes one way until the source has nothing more, the destination
 * takes nothing more, or this wake-up's budget is spent (other connections
 * on the loop get their turn; level triggering brings us back). False if the
 * connection must end (an error). */
static bool pump(conn_t *c, dir_t *d, int src, int dst, uint64_t *count, bool *progress)
{
    size_t budget = PUMP_BUDGET;
    for (;;) {
        /* Out: our own bytes first, then the pipe. */
        if (d->len > 0 && dst >= 0) {
            ssize_t n = send(dst, d->buf + d->off, d->len, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0) {
                d->off += (size_t)n;
                d->len -= (size_t)n;
                if (d->len == 0) d->off = 0;
                *progress = true;
            } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                return false;
            }
        }
        if (d->len == 0 && d->inpipe > 0 && dst >= 0) {
            ssize_t n = splice(d->pr, NULL, dst, NULL, d->inpipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n > 0) {
                d->inpipe -= (size_t)n;
                d->pipe_full = false;
                *progress = true;
            } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                return false;
            }
        }
        if (d->eof || src < 0 || budget == 0 || !dir_can_read(d)) break;
        /* In. */
        ssize_t n;
        if (c->plain && d == &c->up && !c->upgraded) {
            n = plain_in(c, d, src);
            if (n == -2) break;
            if (n == -3) return false;
        } else if (d->pr >= 0) {
            n = splice(src, NULL, d->pw, NULL, d->pcap - d->inpipe,
                       SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n > 0) d->inpipe += (size_t)n;
            /* EAGAIN with bytes in the pipe: the pipe may be full (it counts
             * pages, not bytes); stop watching the source until it drains. */
            if (n < 0 && errno == EAGAIN && d->inpipe > 0) d->pipe_full = true;
            if (!d->grown && (d->pipe_full || PUMP_BUDGET - budget + (size_t)(n > 0 ? n : 0) >=
                                                   PIPE_GROW_AT))
                dir_grow(d);
        } else {
            if (d->off && d->off + d->len == d->cap) {
                memmove(d->buf, d->buf + d->off, d->len);
                d->off = 0;
            }
            n = recv(src, d->buf + d->off + d->len, d->cap - d->off - d->len, MSG_DONTWAIT);
            if (n >= 0 && d == &c->down && c->want_upgrade && !c->upgrade_decided)
                saw_status(c, d->buf + d->off + d->len, (size_t)n, n == 0);
            if (n > 0) d->len += (size_t)n;
        }
        if (n > 0) {
            *count += (uint64_t)n;
            *progress = true;
            budget -= (size_t)n < budget ? (size_t)n : budget;
        } else if (n == 0) {
            d->eof = true;
        } else if (errno != EAGAIN && errno != EINTR) {
            return false;
        } else {
            break;
        }
    }
    if (d->eof && !dir_has_out(d) && !d->shut && dst >= 0) {
        shutdown(dst, SHUT_WR);
        d->shut = true;
    }
    return true;
}

static void set_interest(conn_t *c, int fd, uint32_t *cur, bool *parked, uint32_t want)
{
    if (fd < 0 || *parked) return;
    if (*cur != want) {
        loop_mod(c->sb->e->loop, fd, want);
        *cur = want;
    }
}

static void conn_update(conn_t *c)
{
    uint32_t cw = 0, uw = 0;
    switch (c->state) {
    case S_HEAD:
    case S_SOCKS_GREET:
    case S_SOCKS_REQ:
        cw = EPOLLIN;
        if (c->down.len) cw |= EPOLLOUT;
        break;
    case S_RESOLVE_WAIT:
    case S_RESOLVE:
        break;
    case S_CONNECT:
        uw = EPOLLOUT;
        break;
    case S_RELAY:
        if (up_can_read(c)) cw |= EPOLLIN;
        if (dir_has_out(&c->down)) cw |= EPOLLOUT;
        if (dir_can_read(&c->down)) uw |= EPOLLIN;
        if (dir_has_out(&c->up)) uw |= EPOLLOUT;
        break;
    case S_CLOSING:
        cw = EPOLLOUT;
        break;
    case S_LINGER:
        cw = EPOLLIN;
        break;
    }
    /* A parked (hung-up) fd comes back as soon as its data can be taken:
     * its hang-up then reports again and the rest, EOF included, is read. */
    loop_t *l = c->sb->e->loop;
    if (c->cparked && c->cfd >= 0 && up_can_read(c) &&
        loop_add(l, c->cfd, cw, on_conn_fd, c) == 0) {
        c->cparked = false;
        c->cev = cw;
    }
    if (c->uparked && c->ufd >= 0 && dir_can_read(&c->down) &&
        loop_add(l, c->ufd, uw, on_conn_fd, c) == 0) {
        c->uparked = false;
        c->uev = uw;
    }
    set_interest(c, c->cfd, &c->cev, &c->cparked, cw);
    set_interest(c, c->ufd, &c->uev, &c->uparked, uw);
}

static void relay(conn_t *c, int fd, uint32_t events)
{
    loop_t *l = c->sb->e->loop;
    bool progress = false;
    if (events & EPOLLERR) {
        c->error = fd == c->cfd ? "client connection error" : "upstream connection error";
        conn_close(c);
        return;
    }
    if (!pump(c, &c->up, c->cfd, c->ufd, &c->bytes_up, &progress) ||
        !pump(c, &c->down, c->ufd, c->cfd, &c->bytes_down, &progress)) {
        if (!c->error) c->error = "connection reset";
        conn_close(c);
        return;
    }
    if (progress) c->deadline_ms = loop_now_ms(l) + c->sb->pol->idle_timeout_ms;
    if (events & EPOLLHUP) {
        if (fd == c->cfd) c->chup = true;
        else c->uhup = true;
    }
    /* Done when both directions are, or when a hung-up peer (it can take
     * nothing more) has been given everything the other side sent. */
    if ((c->up.shut && c->down.shut) || (c->uhup && c->down.shut) || (c->chup && c->up.shut)) {
        conn_close(c);
        return;
    }
    /* A hung-up socket reports forever under level triggering; while its
     * data cannot be taken (pipe/buffer full, or EOF already seen), stop
     * watching it. conn_update() brings it back when it can be read. */
    if (events & EPOLLHUP) {
        if (fd == c->cfd && !c->cparked && !up_can_read(c)) {
            loop_del(l, fd);
            c->cparked = true;
        } else if (fd == c->ufd && !c->uparked && !dir_can_read(&c->down)) {
            loop_del(l, fd);
            c->uparked = true;
        }
    }
    conn_update(c);
}

/* ---------- connecting ---------- */

static void connect_ok(conn_t *c)
{
    int one = 1;
    setsockopt(c->ufd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* Plain HTTP's request bytes are scanned (framing), so they go through
     * buf; so does the answer to an Upgrade (its status line decides). */
    if (!c->plain) dir_pipe(&c->up);
    if (!c->want_upgrade) dir_pipe(&c->down);
    if ((c->up.pr < 0 && dir_alloc(&c->up, RELAY_BUF) < 0) ||
        (c->down.pr < 0 && dir_alloc(&c->down, RELAY_BUF) < 0) || dir_alloc(&c->down, 64) < 0) {
        c->error = "out of memory";
        conn_fail(c, 503, false, "out of memory", SOCKS_REP_FAIL);
        return;
    }
    if (c->kind == K_SOCKS) {
        uint8_t rep[22] = {5, 0, 0};
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        size_t n = 10;
        memset(&ss, 0, sizeof(ss));
        getsockname(c->ufd, (struct sockaddr *)&ss, &sl);
        if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
            rep[3] = 4;
            memcpy(rep + 4, &s6->sin6_addr, 16);
            memcpy(rep + 20, &s6->sin6_port, 2);
            n = 22;
        } else {
            struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
            rep[3] = 1;
            memcpy(rep + 4, &s4->sin_addr, 4);
            memcpy(rep + 8, &s4->sin_port, 2);
        }
        dir_put(&c->down, rep, n);
    } else if (!c->plain) {
        static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
        dir_put(&c->down, ok, sizeof(ok) - 1);
    }
    c->state = S_RELAY;
    c->deadline_ms = loop_now_ms(c->sb->e->loop) + c->sb->pol->idle_timeout_ms;
    relay(c, c->cfd, 0);
}

static void on_conn_fd(loop_t *l, int fd, uint32_t events, void *arg);

static void try_next_addr(conn_t *c, int last_errno)
{
    loop_t *l = c->sb->e->loop;
    if (c->ufd >= 0) {
        loop_del(l, c->ufd);
        close(c->ufd);
        c->ufd = -1;
        c->uev = 0;
    }
    while (c->ai < c->naddrs) {
        const egress_addr *a = &c->addrs[c->ai++];
        egress_addr_str(a, c->addr_str, sizeof(c->addr_str));
        struct sockaddr_storage ss;
        socklen_t sl;
        egress_addr_to_sockaddr(a, c->port, &ss, &sl);
        int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            last_errno = errno;
            continue;
        }
        if (connect(fd, (struct sockaddr *)&ss, sl) < 0 && errno != EINPROGRESS) {
            last_errno = errno;
            close(fd);
            continue;
        }
        c->ufd = fd;
        c->uev = EPOLLOUT;
        if (loop_add(l, fd, EPOLLOUT, on_conn_fd, c) < 0) {
            close(fd);
            c->ufd = -1;
            last_errno = ENOMEM;
            continue;
        }
        c->state = S_CONNECT;
        /* On loopback the handshake (or the refusal) is usually over by
         * the time connect() returns: a second connect() says so, and we
         * save a trip through the loop. It also consumes the socket's
         * error, so a failure is handled here, not left to EPOLLERR. */
        if (connect(fd, (struct sockaddr *)&ss, sl) == 0 || errno == EISCONN) {
            connect_ok(c);
            return;
        }
        if (errno == EALREADY || errno == EINPROGRESS || errno == EINTR) return;
        last_errno = errno;
        loop_del(l, fd);
        close(fd);
        c->ufd = -1;
        c->uev = 0;
    }
    char msg[128];
    snprintf(msg, sizeof(msg), "connect to %s port %d: %s", c->addr_str, c->port,
             strerror(last_errno ? last_errno : EHOSTUNREACH));
    c->error = "connect failed";
    conn_report(c, conn_proto(c));
    conn_fail(c, 502, false, msg,
              last_errno == ECONNREFUSED ? SOCKS_REP_REFUSED
              : last_errno == ENETUNREACH ? SOCKS_REP_NETUNREACH
                                           : SOCKS_REP_HOSTUNREACH);
}

/* Keep only addresses outside the refused ranges; deny if none is left. */
static void with_addresses(conn_t *c, const egress_addr *addrs, int n)
{
    c->naddrs = 0;
    const char *why = NULL;
    char first[64] = "";
    for (int i = 0; i < n && c->naddrs < EGRESS_ADDRS_MAX; i++) {
        const char *r = egress_addr_refused(c->sb->pol, &addrs[i]);
        if (r) {
            if (!why) {
                why = r;
                egress_addr_str(&addrs[i], first, sizeof(first));
            }
            continue;
        }
        c->addrs[c->naddrs++] = addrs[i];
    }
    if (c->naddrs == 0) {
        char rule[EGRESS_RULE_MAX];
        snprintf(c->addr_str, sizeof(c->addr_str), "%s", first);
        snprintf(rule, sizeof(rule),
                 "address %s is in %s, refused by default (list it in network.allowCidrs to "
                 "allow)",
                 first, why ? why : "?");
        conn_deny(c, rule);
        return;
    }
    c->allowed = true;
    c->ai = 0;
    c->state = S_CONNECT;
    try_next_addr(c, 0);
}

static void on_resolved(void *arg, int gai_rc, const egress_addr *addrs, int naddrs)
{
    conn_t *c = arg;
    c->job = NULL;
    sbx_lookup_done(c->sb);
    /* The policy may have changed while we looked the name up. */
    char rule[EGRESS_RULE_MAX];
    if (!egress_decide_name(c->sb->pol, c->host, c->port, rule)) {
        conn_deny(c, rule);
        return;
    }
    if (gai_rc != 0 || naddrs == 0) {
        char msg[EGRESS_NAME_MAX + 64];
        snprintf(msg, sizeof(msg), "cannot resolve %s", c->host);
        c->allowed = true;
        c->error = "resolution failed";
        conn_report(c, conn_proto(c));
        conn_fail(c, 502, false, msg, SOCKS_REP_HOSTUNREACH);
        return;
    }
    with_addresses(c, addrs, naddrs);
}

static void start_resolve(conn_t *c)
{
    sbx_t *sb = c->sb;
    if (sb->nresolving >= RESOLVING_MAX) {
        c->state = S_RESOLVE_WAIT;
        if (sb->wait_tail)
            sb->wait_tail->wait_next = c;
        else
            sb->wait_head = c;
        sb->wait_tail = c;
        conn_update(c);
        return;
    }
    c->job = resolver_start(sb->e->res, c->host, on_resolved, c);
    if (!c->job) {
        c->error = "resolver busy";
        conn_fail(c, 503, false, "resolver queue full, try again", SOCKS_REP_FAIL);
        return;
    }
    sb->nresolving++;
    c->state = S_RESOLVE;
    conn_update(c);
}

static const char *issued_lookup(sbx_t *sb, const egress_addr *a, int64_t now)
{
    for (int i = 0; i < ISSUED_MAX; i++) {
        issued_t *it = &sb->issued[i];
        if (it->expires > now && memcmp(&it->a, a, sizeof(*a)) == 0) return it->name;
    }
    return NULL;
}

/* The destination is known (host, port): decide, then resolve or connect. */
static void start_dest(conn_t *c)
{
    sbx_t *sb = c->sb;
    char rule[EGRESS_RULE_MAX];
    c->deadline_ms = loop_now_ms(sb->e->loop) + sb->pol->connect_timeout_ms;
    if (c->host_is_ip) {
        egress_addr a;
        egress_ip_parse(c->host, strlen(c->host), &a);
        egress_addr_str(&a, c->host, sizeof(c->host));
        snprintf(c->addr_str, sizeof(c->addr_str), "%s", c->host);
        if (egress_decide_ip(sb->pol, &a, c->port, rule)) {
            snprintf(c->rule, sizeof(c->rule), "%s", rule);
            with_addresses(c, &a, 1);
            return;
        }
        /* An address this proxy's DNS stub gave out for an allowed name
         * (clients that resolve first, e.g. socks5:// without the h) is that
         * name: judged as the name, connected to our own answer. */
        const char *name = issued_lookup(sb, &a, loop_now_ms(sb->e->loop));
        if (name && egress_decide_name(sb->pol, name, c->port, c->rule)) {
            snprintf(c->host, sizeof(c->host), "%s", name);
            c->host_is_ip = false;
            c->fixed_addr = true;
            with_addresses(c, &a, 1);
            return;
        }
        conn_deny(c, rule);
        return;
    }
    char norm[EGRESS_NAME_MAX + 1];
    if (egress_name_normalize(c->host, strlen(c->host), norm) < 0) {
        snprintf(c->host, sizeof(c->host), "(invalid)");
        conn_deny(c, "not a valid host name (ASCII letters, digits, '-', '_' and dots; write "
                     "international names in their xn-- form)");
        return;
    }
    snprintf(c->host, sizeof(c->host), "%s", norm);
    if (!egress_decide_name(sb->pol, norm, c->port, rule)) {
        conn_deny(c, rule);
        return;
    }
    snprintf(c->rule, sizeof(c->rule), "%s", rule);
    const egress_static *st = egress_static_lookup(sb->pol, norm);
    if (st) {
        with_addresses(c, st->addrs, st->n);
        return;
    }
    start_resolve(c);
}

/* ---------- request heads ---------- */

/* Read what is there into c->in; false if the connection ended. */
static bool read_in(conn_t *c, size_t limit, bool *eof)
{
    *eof = false;
    if (c->in.len >= limit) return true;
    if (buf_reserve(&c->in, limit - c->in.len) < 0) return false;
    ssize_t n = recv(c->cfd, c->in.data + c->in.len, limit - c->in.len, MSG_DONTWAIT);
    if (n > 0) {
        c->in.len += (size_t)n;
        c->in.data[c->in.len] = '\0';
        c->bytes_up += (uint64_t)n;
    } else if (n == 0) {
        *eof = true;
    } else if (errno != EAGAIN && errno != EINTR) {
        return false;
    }
    return true;
}

static void handle_head(conn_t *c)
{
    bool eof;
    if (!read_in(c, EGRESS_HEAD_MAX, &eof)) {
        conn_close(c);
        return;
    }
    egress_http_req r;
    int rc = egress_http_parse(c->in.data ? c->in.data : "", c->in.len, &r);
    if (rc == 0) {
        if (eof) conn_close(c); /* gone before finishing a request */
        else conn_update(c);
        return;
    }
    if (rc < 0) {
        egress_http_req_clear(&r);
        const char *why = -rc == 431 ? "request head larger than 32 KiB or more than 100 headers"
                          : "malformed proxy request (expected \"CONNECT host:port HTTP/1.1\" or "
                            "an absolute http:// URI)";
        conn_fail(c, -rc, false, why, 0);
        return;
    }
    snprintf(c->host, sizeof(c->host), "%s", r.host);
    c->host_is_ip = r.host_is_ip;
    c->port = r.port;
    /* Whatever followed the head goes upstream after it. */
    size_t rest = c->in.len - r.head_len;
    size_t need = r.upstream_len + rest + 64;
    if (dir_alloc(&c->up, need) < 0) {
        egress_http_req_clear(&r);
        conn_close(c);
        return;
    }
    c->plain = !r.is_connect;
    if (c->plain) {
        /* Only this request's body follows its head; what comes after it
         * (a pipelined request) is dropped, never sent unchecked. */
        c->body_chunked = r.chunked;
        c->body_left = r.content_length;
        c->want_upgrade = r.upgrade;
        c->req_done = !r.chunked && r.content_length == 0;
        long k = plain_take(c, c->in.data + r.head_len, rest);
        if (k < 0) {
            egress_http_req_clear(&r);
            conn_fail(c, 400, false, "malformed chunked request body", 0);
            return;
        }
        rest = (size_t)k;
        dir_put(&c->up, r.upstream, r.upstream_len);
    }
    dir_put(&c->up, c->in.data + r.head_len, rest);
    if (eof) c->up.eof = true;
    buf_free(&c->in);
    egress_http_req_clear(&r);
    c->state = S_RESOLVE;
    start_dest(c);
}

static void handle_socks(conn_t *c)
{
    bool eof;
    if (!read_in(c, 600, &eof)) {
        conn_close(c);
        return;
    }
    const uint8_t *d = (const uint8_t *)c->in.data;
    if (c->state == S_SOCKS_GREET) {
        bool noauth = false;
        int n = c->in.len ? egress_socks_greeting(d, c->in.len, &noauth) : 0;
        if (n == 0) {
            if (eof) conn_close(c);
            else conn_update(c);
            return;
        }
        if (n < 0 || !noauth) {
            conn_fail(c, 400, false, "SOCKS5 greeting without the no-authentication method", 0);
            return;
        }
        buf_consume(&c->in, (size_t)n);
        static const uint8_t choose[2] = {5, 0};
        if (dir_alloc(&c->down, 64) < 0) {
            conn_close(c);
            return;
        }
        dir_put(&c->down, choose, 2);
        c->state = S_SOCKS_REQ;
        d = (const uint8_t *)c->in.data;
    }
    egress_socks_req r;
    int n = c->in.len ? egress_socks_request(d, c->in.len, &r) : 0;
    if (n == 0) {
        if (eof) conn_close(c);
        else conn_update(c);
        return;
    }
    if (n < 0) {
        conn_fail(c, 400, false, "malformed or unsupported SOCKS5 request", -n);
        return;
    }
    snprintf(c->host, sizeof(c->host), "%s", r.host);
    c->host_is_ip = r.host_is_ip;
    c->port = r.port;
    size_t rest = c->in.len - (size_t)n;
    if (dir_alloc(&c->up, rest + 64) < 0) {
        conn_close(c);
        return;
    }
    dir_put(&c->up, c->in.data + n, rest);
    if (eof) c->up.eof = true;
    buf_free(&c->in);
    c->state = S_RESOLVE;
    start_dest(c);
}

static void on_conn_fd(loop_t *l, int fd, uint32_t events, void *arg)
{
    conn_t *c = arg;
    switch (c->state) {
    case S_HEAD:
    case S_SOCKS_GREET:
    case S_SOCKS_REQ:
        if (events & EPOLLERR) {
            conn_close(c);
            return;
        }
        if ((events & EPOLLOUT) && c->down.len) {
            bool progress;
            if (!pump(c, &c->down, -1, c->cfd, &c->bytes_down, &progress)) {
                conn_close(c);
                return;
            }
        }
        if (events & (EPOLLIN | EPOLLHUP)) {
            if (c->kind == K_HTTP) handle_head(c);
            else handle_socks(c);
            return;
        }
        conn_update(c);
        return;
    case S_RESOLVE_WAIT:
    case S_RESOLVE:
        /* The client is watched only for hang-up while we look up. */
        if (fd == c->cfd && (events & (EPOLLHUP | EPOLLERR))) conn_close(c);
        return;
    case S_CONNECT:
        if (fd == c->cfd) {
            if (events & (EPOLLHUP | EPOLLERR)) conn_close(c);
            return;
        }
        {
            int soerr = 0;
            socklen_t sl = sizeof(soerr);
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) soerr = errno;
            if (soerr == 0 && (events & EPOLLOUT) && !(events & EPOLLERR)) {
                connect_ok(c);
                return;
            }
            try_next_addr(c, soerr ? soerr : ECONNREFUSED);
        }
        return;
    case S_RELAY:
        relay(c, fd, events);
        return;
    case S_CLOSING: {
        bool progress = false;
        if (events & EPOLLERR || !pump(c, &c->down, -1, c->cfd, &c->bytes_down, &progress)) {
            conn_close(c);
            return;
        }
        if (c->down.len == 0) {
            shutdown(c->cfd, SHUT_WR);
            c->state = S_LINGER;
            c->deadline_ms = loop_now_ms(l) + LINGER_MS;
        }
        conn_update(c);
        return;
    }
    case S_LINGER: {
        char sink[4096];
        ssize_t n = recv(c->cfd, sink, sizeof(sink), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) || (events & EPOLLERR))
            conn_close(c);
        return;
    }
    }
}

/* ---------- accepting ---------- */

static void sbx_pause_accept(sbx_t *sb)
{
    if (sb->paused) return;
    sb->paused = true;
    if (sb->http_fd >= 0) loop_mod(sb->e->loop, sb->http_fd, 0);
    if (sb->socks_fd >= 0) loop_mod(sb->e->loop, sb->socks_fd, 0);
}

static void on_accept(loop_t *l, int fd, uint32_t events, void *arg)
{
    (void)events;
    sbx_t *sb = arg;
    bool socks = fd == sb->socks_fd;
    for (int i = 0; i < ACCEPTS_PER_WAKE; i++) {
        if (sb->nconns >= sb->pol->max_connections) {
            sbx_pause_accept(sb);
            return;
        }
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                /* Out of fds: stop accepting until one of ours closes, or
                 * the level-triggered listener would spin. */
                slog(LOG_WARN, sb->label, NULL, "egress: accept: %s; pausing this sandbox's "
                     "listeners (raise RLIMIT_NOFILE)", strerror(errno));
                if (sb->nconns > 0) sbx_pause_accept(sb);
            }
            return;
        }
        conn_t *c = calloc(1, sizeof(*c));
        if (!c) {
            close(cfd);
            return;
        }
        c->sb = sb;
        c->cfd = cfd;
        c->ufd = -1;
        c->up.pr = c->up.pw = c->down.pr = c->down.pw = -1;
        c->kind = socks ? K_SOCKS : K_HTTP;
        c->state = socks ? S_SOCKS_GREET : S_HEAD;
        buf_init(&c->in, EGRESS_HEAD_MAX);
        c->start_ms = loop_now_ms(l);
        c->deadline_ms = c->start_ms + sb->pol->header_timeout_ms;
        int one = 1;
        setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (loop_add(l, cfd, EPOLLIN, on_conn_fd, c) < 0) {
            close(cfd);
            free(c);
            return;
        }
        c->cev = EPOLLIN;
        c->next = sb->conns;
        if (sb->conns) sb->conns->prev = c;
        sb->conns = c;
        sb->nconns++;
        /* The request often came with the connection: take it now rather
         * than on the next trip through the loop (nothing there is fine).
         * c may be gone after this. */
        on_conn_fd(l, cfd, EPOLLIN, c);
    }
}

/* ---------- DNS stub ---------- */

static void dns_send(sbx_t *sb, const struct sockaddr_storage *to, socklen_t tolen,
                     const uint8_t *pkt, const egress_dns_q *q, int rcode,
                     const egress_addr *addrs, int n)
{
    uint8_t out[512];
    size_t len = egress_dns_answer(pkt, q, rcode, addrs, n, out, sizeof(out));
    if (len) sendto(sb->dns_fd, out, len, MSG_DONTWAIT, (const struct sockaddr *)to, tolen);
}

static void issued_add(sbx_t *sb, const char *name, const egress_addr *a, int n)
{
    int64_t exp = loop_now_ms(sb->e->loop) + ISSUED_TTL_MS;
    for (int i = 0; i < n; i++) {
        issued_t *it = NULL;
        for (int k = 0; k < ISSUED_MAX && !it; k++)
            if (memcmp(&sb->issued[k].a, &a[i], sizeof(a[i])) == 0 &&
                strcmp(sb->issued[k].name, name) == 0)
                it = &sb->issued[k];
        if (!it) {
            it = &sb->issued[sb->issued_next];
            sb->issued_next = (sb->issued_next + 1) % ISSUED_MAX;
        }
        it->a = a[i];
        snprintf(it->name, sizeof(it->name), "%s", name);
        it->expires = exp;
    }
}

/* Answer with the addresses the proxy itself would connect to. */
static void dns_answer_addrs(sbx_t *sb, const struct sockaddr_storage *to, socklen_t tolen,
                             const uint8_t *pkt, const egress_dns_q *q, const char *name,
                             const egress_addr *addrs, int n, int64_t start)
{
    egress_addr ok[EGRESS_ADDRS_MAX];
    int nok = 0;
    for (int i = 0; i < n && nok < EGRESS_ADDRS_MAX; i++)
        if (!egress_addr_refused(sb->pol, &addrs[i])) ok[nok++] = addrs[i];
    issued_add(sb, name, ok, nok);
    dns_send(sb, to, tolen, pkt, q, DNS_NOERROR, ok, nok);
    char first[64] = "";
    if (nok) egress_addr_str(&ok[0], first, sizeof(first));
    char rule[EGRESS_RULE_MAX];
    egress_name_allowed_any_port(sb->pol, name, rule);
    report(sb, "dns", name, 53, first, true, rule, nok ? NULL : "no address outside the refused ranges",
           0, 0, loop_now_ms(sb->e->loop) - start);
}

static void dnsq_free(dnsq_t *d)
{
    sbx_t *sb = d->sb;
    if (d->prev)
        d->prev->next = d->next;
    else
        sb->dnsqs = d->next;
    if (d->next) d->next->prev = d->prev;
    sb->ndnsq--;
    free(d);
}

static void on_dns_resolved(void *arg, int gai_rc, const egress_addr *addrs, int n)
{
    dnsq_t *d = arg;
    sbx_t *sb = d->sb;
    d->job = NULL;
    char name[EGRESS_NAME_MAX + 1];
    egress_name_normalize(d->q.name, strlen(d->q.name), name);
    if (gai_rc != 0) {
        dns_send(sb, &d->from, d->fromlen, d->pkt, &d->q,
                 gai_rc == EAI_NONAME ? DNS_NXDOMAIN : DNS_SERVFAIL, NULL, 0);
        char rule[EGRESS_RULE_MAX];
        egress_name_allowed_any_port(sb->pol, name, rule);
        report(sb, "dns", name, 53, NULL, true, rule, "resolution failed", 0, 0,
               loop_now_ms(sb->e->loop) - d->start_ms);
    } else {
        dns_answer_addrs(sb, &d->from, d->fromlen, d->pkt, &d->q, name, addrs, n, d->start_ms);
    }
    dnsq_free(d);
    sbx_lookup_done(sb);
}

static void dns_start(dnsq_t *d)
{
    sbx_t *sb = d->sb;
    char name[EGRESS_NAME_MAX + 1];
    egress_name_normalize(d->q.name, strlen(d->q.name), name);
    d->job = resolver_start(sb->e->res, name, on_dns_resolved, d);
    if (!d->job) {
        dns_send(sb, &d->from, d->fromlen, d->pkt, &d->q, DNS_SERVFAIL, NULL, 0);
        dnsq_free(d);
        return;
    }
    sb->nresolving++;
}

static void dns_one(sbx_t *sb, const uint8_t *pkt, size_t len, struct sockaddr_storage *from,
                    socklen_t fromlen)
{
    egress_dns_q q;
    int rc = egress_dns_parse(pkt, len, &q);
    if (rc < 0) return;
    if (rc > 0) {
        dns_send(sb, from, fromlen, pkt, &q, rc, NULL, 0);
        return;
    }
    char name[EGRESS_NAME_MAX + 1], rule[EGRESS_RULE_MAX];
    int64_t now = loop_now_ms(sb->e->loop);
    if (!q.name_ok || egress_name_normalize(q.name, strlen(q.name), name) < 0) {
        dns_send(sb, from, fromlen, pkt, &q, DNS_REFUSED, NULL, 0);
        report(sb, "dns", "(invalid)", 53, NULL, false, "not a valid host name", NULL, 0, 0, 0);
        return;
    }
    if (q.qclass != 1 || !egress_name_allowed_any_port(sb->pol, name, rule)) {
        dns_send(sb, from, fromlen, pkt, &q, DNS_REFUSED, NULL, 0);
        report(sb, "dns", name, 53, NULL, false, q.qclass != 1 ? "DNS class other than IN" : rule,
               NULL, 0, 0, 0);
        return;
    }
    if (q.qtype != 1 && q.qtype != 28) {
        /* An allowed name, a type we do not serve: an empty answer. */
        dns_send(sb, from, fromlen, pkt, &q, DNS_NOERROR, NULL, 0);
        return;
    }
    const egress_static *st = egress_static_lookup(sb->pol, name);
    if (st) {
        dns_answer_addrs(sb, from, fromlen, pkt, &q, name, st->addrs, st->n, now);
        return;
    }
    if (sb->ndnsq >= DNS_PENDING_MAX) {
        dns_send(sb, from, fromlen, pkt, &q, DNS_SERVFAIL, NULL, 0);
        return;
    }
    dnsq_t *d = calloc(1, sizeof(*d));
    if (!d) return;
    d->sb = sb;
    memcpy(&d->from, from, fromlen);
    d->fromlen = fromlen;
    memcpy(d->pkt, pkt, len < sizeof(d->pkt) ? len : sizeof(d->pkt));
    d->len = len;
    d->q = q;
    if (d->q.qend > sizeof(d->pkt)) d->q.qend = 0;
    d->start_ms = now;
    d->next = sb->dnsqs;
    if (sb->dnsqs) sb->dnsqs->prev = d;
    sb->dnsqs = d;
    sb->ndnsq++;
    if (sb->nresolving < RESOLVING_MAX) {
        dns_start(d);
    } else {
        if (sb->dwait_tail)
            sb->dwait_tail->wait_next = d;
        else
            sb->dwait_head = d;
        sb->dwait_tail = d;
    }
}

static void on_dns(loop_t *l, int fd, uint32_t events, void *arg)
{
    (void)l;
    (void)events;
    sbx_t *sb = arg;
    for (int i = 0; i < DNS_PER_WAKE; i++) {
        uint8_t pkt[1500];
        struct sockaddr_storage from;
        socklen_t fromlen = sizeof(from);
        ssize_t n = recvfrom(fd, pkt, sizeof(pkt), MSG_DONTWAIT, (struct sockaddr *)&from, &fromlen);
        if (n < 0) return;
        dns_one(sb, pkt, (size_t)n, &from, fromlen);
    }
}

/* ---------- timers ---------- */

static void sweep(loop_t *l, void *arg)
{
    egress_t *e = arg;
    int64_t now = clock_mono_ms();
    for (sbx_t *sb = e->sbxs; sb; sb = sb->next) {
        conn_t *c = sb->conns;
        while (c) {
            conn_t *next = c->next;
            if (c->deadline_ms && now >= c->deadline_ms) {
                switch (c->state) {
                case S_HEAD:
                    conn_fail(c, 408, false, "request head not received in time", 0);
                    break;
                case S_SOCKS_GREET:
                case S_SOCKS_REQ:
                    conn_close(c);
                    break;
                case S_RESOLVE_WAIT:
                case S_RESOLVE:
                case S_CONNECT:
                    c->allowed = true; /* only allowed destinations get this far */
                    c->error = "connect timeout";
                    conn_report(c, conn_proto(c));
                    conn_fail(c, 504, false, "timed out resolving or connecting", SOCKS_REP_TTL);
                    break;
                case S_RELAY:
                    c->error = "idle timeout";
                    conn_close(c);
                    break;
                case S_CLOSING:
                case S_LINGER:
                    conn_close(c);
                    break;
                }
            }
            c = next;
        }
    }
    e->sweep = loop_timer(l, SWEEP_MS, sweep, e);
}

/* ---------- API ---------- */

int egress_new(loop_t *loop, egress_event_cb cb, void *cb_arg, egress_t **out, shed_err *err)
{
    egress_t *e = calloc(1, sizeof(*e));
    if (!e) return err_set(err, ENOMEM, "egress");
    /* Each relayed connection holds two sockets and two pipes: let this
     * process use the fds it is allowed (soft limit up to the hard one). */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    e->loop = loop;
    e->cb = cb;
    e->cb_arg = cb_arg;
    int rc = resolver_new(loop, &e->res, err);
    if (rc < 0) {
        free(e);
        return rc;
    }
    e->sweep = loop_timer(loop, SWEEP_MS, sweep, e);
    *out = e;
    return 0;
}

void egress_free(egress_t *e)
{
    if (!e) return;
    while (e->sbxs) egress_detach(e, e->sbxs->label);
    loop_timer_cancel(e->loop, e->sweep);
    resolver_free(e->res);
    free(e);
}

static sbx_t *find(egress_t *e, const char *label)
{
    for (sbx_t *sb = e->sbxs; sb; sb = sb->next)
        if (strcmp(sb->label, label) == 0) return sb;
    return NULL;
}

static int listen_fd_check(int fd, int type, const char *what, shed_err *err)
{
    if (fd < 0) return 0;
    int t = 0;
    socklen_t sl = sizeof(t);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &t, &sl) < 0)
        return err_set(err, errno, "egress_attach: %s fd %d", what, fd);
    if (t != type)
        return err_msg(err, EINVAL, "egress_attach: %s fd %d is not a %s socket", what, fd,
                       type == SOCK_STREAM ? "stream" : "datagram");
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return err_set(err, errno, "egress_attach: O_NONBLOCK on %s fd", what);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    return 0;
}

int egress_attach(egress_t *e, const char *label, const egress_policy *pol, int http_fd,
                  int socks_fd, int dns_fd, shed_err *err)
{
    int fds[3] = {http_fd, socks_fd, dns_fd};
    int rc = 0;
    if (!label || !*label || strlen(label) >= sizeof(((sbx_t *)0)->label))
        rc = err_msg(err, EINVAL, "egress_attach: label must be 1..127 characters");
    else if (!pol)
        rc = err_msg(err, EINVAL, "egress_attach %s: no policy (parse network.* first)", label);
    else if (find(e, label))
        rc = err_msg(err, EEXIST, "egress_attach %s: already attached", label);
    if (rc == 0) rc = listen_fd_check(http_fd, SOCK_STREAM, "HTTP proxy", err);
    if (rc == 0) rc = listen_fd_check(socks_fd, SOCK_STREAM, "SOCKS5", err);
    if (rc == 0) rc = listen_fd_check(dns_fd, SOCK_DGRAM, "DNS", err);
    sbx_t *sb = rc == 0 ? calloc(1, sizeof(*sb)) : NULL;
    if (rc == 0 && !sb) rc = err_set(err, ENOMEM, "egress_attach %s", label);
    if (rc < 0) {
        for (int i = 0; i < 3; i++)
            if (fds[i] >= 0) close(fds[i]);
        return rc;
    }
    sb->e = e;
    snprintf(sb->label, sizeof(sb->label), "%s", label);
    sb->pol = egress_policy_ref(pol);
    sb->http_fd = http_fd;
    sb->socks_fd = socks_fd;
    sb->dns_fd = dns_fd;
    struct {
        int fd;
        loop_fd_cb cb;
    } ls[3] = {{http_fd, on_accept}, {socks_fd, on_accept}, {dns_fd, on_dns}};
    for (int i = 0; i < 3; i++) {
        if (ls[i].fd < 0) continue;
        int r = loop_add(e->loop, ls[i].fd, EPOLLIN, ls[i].cb, sb);
        if (r < 0) {
            for (int k = 0; k < i; k++)
                if (ls[k].fd >= 0) loop_del(e->loop, ls[k].fd);
            for (int k = 0; k < 3; k++)
                if (fds[k] >= 0) close(fds[k]);
            egress_policy_free(sb->pol);
            free(sb);
            return err_set(err, -r, "egress_attach %s: loop_add", label);
        }
    }
    sb->next = e->sbxs;
    e->sbxs = sb;
    return 0;
}

int egress_set_policy(egress_t *e, const char *label, const egress_policy *pol)
{
    sbx_t *sb = find(e, label);
    if (!sb) return -ENOENT;
    if (!pol) return -EINVAL;
    egress_policy *old = sb->pol;
    sb->pol = egress_policy_ref(pol);
    egress_policy_free(old);
    /* Connections the new policy would not allow end now. */
    conn_t *c = sb->conns;
    while (c) {
        conn_t *next = c->next;
        if (c->state == S_CONNECT || c->state == S_RELAY) {
            char rule[EGRESS_RULE_MAX];
            egress_addr a;
            bool ok;
            if (c->host_is_ip && egress_ip_parse(c->host, strlen(c->host), &a))
                ok = egress_decide_ip(sb->pol, &a, c->port, rule);
            else
                ok = egress_decide_name(sb->pol, c->host, c->port, rule);
            const egress_addr *cur = c->ai > 0 ? &c->addrs[c->ai - 1] : NULL;
            if (ok && cur && egress_addr_refused(sb->pol, cur)) {
                ok = false;
                snprintf(rule, sizeof(rule), "address %s is now refused by default",
                         c->addr_str);
            }
            if (!ok) {
                c->allowed = false;
                snprintf(c->rule, sizeof(c->rule), "policy changed: %s", rule);
                c->error = "closed by a policy change";
                conn_close(c);
            }
        }
        c = next;
    }
    sbx_resume_accept(sb);
    return 0;
}

void egress_detach(egress_t *e, const char *label)
{
    sbx_t **pp = &e->sbxs;
    while (*pp && strcmp((*pp)->label, label) != 0) pp = &(*pp)->next;
    sbx_t *sb = *pp;
    if (!sb) return;
    *pp = sb->next;
    int fds[3] = {sb->http_fd, sb->socks_fd, sb->dns_fd};
    for (int i = 0; i < 3; i++) {
        if (fds[i] < 0) continue;
        loop_del(e->loop, fds[i]);
        close(fds[i]);
    }
    sb->detaching = true; /* conn_close must not re-arm the closed listeners */
    while (sb->conns) {
        if (!sb->conns->error) sb->conns->error = "sandbox detached";
        conn_close(sb->conns);
    }
    sb->dwait_head = sb->dwait_tail = NULL;
    while (sb->dnsqs) {
        resolver_cancel(sb->dnsqs->job);
        dnsq_free(sb->dnsqs);
    }
    egress_policy_free(sb->pol);
    free(sb);
}
