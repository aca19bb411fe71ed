/* The health and metrics endpoint: GET /metrics, /healthz, /readyz on a
 * libmicrohttpd thread of its own. Must never block or call into the
 * worker's event loop: it reads only the (locked) metrics registry and the
 * readiness checks below, and serves a few small answers to few clients. */
#include "obs/obs.h"

#include "base/cleanup.h"
#include "base/clock.h"
#include "base/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include "base/lazy_mhd.h"
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CHECKS      16
#define METRICS_LIMIT   (8u << 20) /* a /metrics page is at most 8 MiB */
#define HTTP_CONN_LIMIT 16
#define HTTP_TIMEOUT_S  10

/* ------------------------------------------------------ readiness checks */

static pthread_mutex_t g_checks_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char name[32];
    bool ok;
    char why[200];
    int64_t set_ms, valid_ms; /* valid_ms 0: until set again */
} g_checks[MAX_CHECKS];
static int g_nchecks;

void obs_ready_set(const char *check, bool ok, const char *why)
{
    obs_ready_set_for(check, ok, why, 0);
}

void obs_ready_set_for(const char *check, bool ok, const char *why, int64_t valid_ms)
{
    if (!check) return;
    pthread_mutex_lock(&g_checks_mu);
    int i = 0;
    while (i < g_nchecks && strcmp(g_checks[i].name, check)) i++;
    if (i == g_nchecks && g_nchecks < MAX_CHECKS) {
        snprintf(g_checks[i].name, sizeof(g_checks[i].name), "%s", check);
        g_nchecks++;
    }
    if (i < g_nchecks) {
        g_checks[i].ok = ok;
        g_checks[i].set_ms = clock_mono_ms();
        g_checks[i].valid_ms = valid_ms > 0 ? valid_ms : 0;
        log_redact(why ? why : "", g_checks[i].why, sizeof(g_checks[i].why));
    }
    pthread_mutex_unlock(&g_checks_mu);
}

int obs_ready_checks(void *arg, char *why, size_t n)
{
    (void)arg;
    int rc = 0;
    pthread_mutex_lock(&g_checks_mu);
    if (g_nchecks == 0) {
        snprintf(why, n, "no readiness check has reported yet");
        rc = 1;
    }
    int64_t now = clock_mono_ms();
    for (int i = 0; i < g_nchecks && rc == 0; i++) {
        int64_t age = now - g_checks[i].set_ms;
        if (g_checks[i].valid_ms && age > g_checks[i].valid_ms) {
            snprintf(why, n, "%s: not reported for %lld s (is the event loop stuck?)",
                     g_checks[i].name, (long long)(age / 1000));
            rc = 1;
            break;
        }
        if (g_checks[i].ok) continue;
        snprintf(why, n, "%s: %s", g_checks[i].name,
                 g_checks[i].why[0] ? g_checks[i].why : "failing");
        rc = 1;
    }
    pthread_mutex_unlock(&g_checks_mu);
    return rc;
}

/* -------------------------------------------------------------- endpoint */

struct obs_http {
    struct MHD_Daemon *d;
    int fd;
    int port;
    obs_ready_fn ready;
    void *arg;
};

int obs_parse_listen(const char *s, char *host, size_t hostlen, int *port)
{
    if (!s || !*s) return -EINVAL;
    const char *colon;
    size_t hl;
    const char *h = s;
    if (*s == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':') return -EINVAL;
        h = s + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || memchr(s, ':', (size_t)(colon - s))) return -EINVAL; /* bare v6 needs [] */
        hl = (size_t)(colon - s);
    }
    if (hl >= hostlen) return -EINVAL;
    memcpy(host, h, hl);
    host[hl] = '\0';
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || p < 0 || p > 65535) return -EINVAL;
    *port = (int)p;
    return 0;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned code, const char *type, char *body,
                             size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned code, const char *fmt, ...)
{
    char *s = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0) return MHD_NO;
    return reply(c, code, "text/plain; charset=utf-8", s, (size_t)n);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **con_cls)
{
    (void)version;
    (void)upload_data;
    obs_http_t *h = cls;
    /* First call per request: headers only. Refuse bodies outright. */
    if (!*con_cls) {
        *con_cls = h;
        return MHD_YES;
    }
    if (*upload_data_size) return reply_text(c, MHD_HTTP_BAD_REQUEST, "no request body expected\n");
    if (strcmp(method, "GET") && strcmp(method, "HEAD"))
        return reply_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET\n");

    int status;
    const char *type;
    char *body;
    size_t len;
    if (obs_http_answer(url, h->ready, h->arg, &status, &type, &body, &len))
        return reply(c, (unsigned)status, type, body, len);
    return reply_text(c, MHD_HTTP_NOT_FOUND, "not found: try /metrics, /healthz or /readyz\n");
}

static int answer_text(int code, int *status, const char **ctype, char **body, size_t *len,
                       const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static int answer_text(int code, int *status, const char **ctype, char **body, size_t *len,
                       const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(body, fmt, ap);
    va_end(ap);
    if (n < 0) {
        *body = NULL;
        n = 0;
        code = MHD_HTTP_INTERNAL_SERVER_ERROR;
    }
    *status = code;
    *ctype = "text/plain; charset=utf-8";
    *len = (size_t)n;
    return 1;
}

int obs_http_answer(const char *path, obs_ready_fn ready, void *arg, int *status,
                    const char **ctype, char **body, size_t *len)
{
    if (!path) return 0;
    if (!strcmp(path, "/metrics")) {
        buf_t b;
        buf_init(&b, METRICS_LIMIT);
        int rc = metrics_render(&b);
        if (rc < 0) {
            buf_free(&b);
            return answer_text(MHD_HTTP_INTERNAL_SERVER_ERROR, status, ctype, body, len,
                               "render metrics: %s\n", strerror(-rc));
        }
        *len = b.len;
        *body = buf_steal(&b);
        if (!*body) *body = strdup("");
        *status = MHD_HTTP_OK;
        *ctype = METRICS_CONTENT_TYPE;
        return 1;
    }
    if (!strcmp(path, "/healthz"))
        return answer_text(MHD_HTTP_OK, status, ctype, body, len, "ok\n");
    if (!strcmp(path, "/readyz")) {
        char why[256] = "";
        int rc = (ready ? ready : obs_ready_checks)(arg, why, sizeof(why));
        if (rc == 0) return answer_text(MHD_HTTP_OK, status, ctype, body, len, "ready\n");
        char clean[256];
        log_redact(why[0] ? why : "not ready", clean, sizeof(clean));
        return answer_text(MHD_HTTP_SERVICE_UNAVAILABLE, status, ctype, body, len,
                           "not ready: %s\n", clean);
    }
    return 0;
}

static int listen_socket(const char *listen_addr, int *port_out, bool *v6, shed_err *err)
{
    char host[128];
    int port;
    if (obs_parse_listen(listen_addr, host, sizeof(host), &port) < 0)
        return err_msg(err, EINVAL,
                       "metrics listen address '%s': expected HOST:PORT, [V6]:PORT or :PORT "
                       "(e.g. 127.0.0.1:9464)",
                       listen_addr ? listen_addr : "");
    struct sockaddr_storage ss = {0};
    socklen_t sl;
    *v6 = false;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (!*host) {
        *v6 = true;
        a6->sin6_family = AF_INET6;
        a6->sin6_addr = in6addr_any;
        a6->sin6_port = htons((uint16_t)port);
        sl = sizeof(*a6);
    } else if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        sl = sizeof(*a4);
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        *v6 = true;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        sl = sizeof(*a6);
    } else {
        return err_msg(err, EINVAL,
                       "metrics listen address '%s': '%s' is not an IP address (use 127.0.0.1, "
                       "::1 or an interface address)",
                       listen_addr, host);
    }
    _cleanup_close_ int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return err_set(err, errno, "socket for metrics on %s", listen_addr);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (!*host) {
        int zero = 0; /* ":PORT" means every address, v4 included */
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    }
    if (bind(fd, (struct sockaddr *)&ss, sl) < 0)
        return err_set(err, errno, "bind metrics listener %s (choose another --metrics-listen)",
                       listen_addr);
    if (listen(fd, 64) < 0) return err_set(err, errno, "listen on %s", listen_addr);
    struct sockaddr_storage got;
    socklen_t gl = sizeof(got);
    if (getsockname(fd, (struct sockaddr *)&got, &gl) < 0)
        return err_set(err, errno, "getsockname %s", listen_addr);
    *port_out = ntohs(got.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&got)->sin6_port
                                                : ((struct sockaddr_in *)&got)->sin_port);
    return steal_fd(&fd);
}

int obs_http_start(const char *listen_addr, obs_ready_fn ready, void *arg, obs_http_t **out,
                   shed_err *err)
{
    *out = NULL;
    obs_catalog_init();
    _cleanup_free_ obs_http_t *h = calloc(1, sizeof(*h));
    if (!h) return err_set(err, ENOMEM, "metrics endpoint");
    h->ready = ready ? ready : obs_ready_checks;
    h->arg = arg;
    bool v6;
    h->fd = listen_socket(listen_addr, &h->port, &v6, err);
    if (h->fd < 0) return h->fd;
    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | (v6 ? MHD_USE_IPv6 : 0);
    h->d =
        MHD_start_daemon(flags, 0, NULL, NULL, handle, h, MHD_OPTION_LISTEN_SOCKET, h->fd,
                         MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTP_CONN_LIMIT,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_TIMEOUT_S, MHD_OPTION_END);
    if (!h->d) {
        close(h->fd);
        return err_msg(err, EIO, "start the metrics endpoint on %s (libmicrohttpd refused)",
                       listen_addr);
    }
    log_debug("metrics: serving /metrics /healthz /readyz on %s (port %d)", listen_addr, h->port);
    *out = steal_pointer(&h);
    return 0;
}

int obs_http_port(const obs_http_t *h)
{
    return h ? h->port : -1;
}

void obs_http_stop(obs_http_t *h)
{
    if (!h) return;
    MHD_stop_daemon(h->d); /* joins the thread; closes the listen socket */
    free(h);
}
