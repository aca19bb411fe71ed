/* curl multi-socket glue; see http.h. curl tells us which fds to watch
 * (socket callback) and when to wake it (timer callback); the loop calls
 * curl_multi_socket_action; finished transfers are reaped in one place. A
 * request is never freed from inside one of curl's callbacks. */
#include "worker/http.h"

#include "base/clock.h"
#include "worker/proto.h"

#include "base/lazy_curl.h"
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HTTP_DEFAULT_MAX_BODY (16u << 20)

struct http {
    loop_t *loop;
    CURLM *multi;
    uint64_t timer;
    int active;
    bool in_action;
    http_req_t *reqs; /* all live requests (for http_free) */
    uint64_t reap_timer;
};

struct http_req {
    http_t *h;
    CURL *easy;
    struct curl_slist *hdrs;
    char *body;
    buf_t resp;
    http_data_cb on_data;
    http_headers_cb on_headers;
    http_done_cb on_done;
    bool added;   /* handed to the multi handle */
    bool headers_done;
    void *arg;
    int64_t start_ms;
    bool cancelled;
    bool streaming_ok; /* status known to be 2xx */
    bool status_checked;
    int64_t retry_after_ms;  /* from the current response's headers; 0 = none */
    bool retry_after_is_ms;  /* it came from retry-after-ms (which wins) */
    int should_retry;        /* x-should-retry: 1 true, 0 false, -1 absent */
    http_req_t *prev, *next;
};

static void check_multi(http_t *h);
static void add_pending(http_t *h);

static void req_free(http_req_t *r)
{
    http_t *h = r->h;
    if (r->prev) r->prev->next = r->next;
    else h->reqs = r->next;
    if (r->next) r->next->prev = r->prev;
    if (r->added) curl_multi_remove_handle(h->multi, r->easy);
    curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->hdrs);
    free(r->body);
    buf_free(&r->resp);
    h->active--;
    free(r);
}

static void on_fd(loop_t *l, int fd, uint32_t events, void *arg)
{
    (void)l;
    http_t *h = arg;
    int flags = 0;
    if (events & EPOLLIN) flags |= CURL_CSELECT_IN;
    if (events & EPOLLOUT) flags |= CURL_CSELECT_OUT;
    if (events & (EPOLLERR | EPOLLHUP)) flags |= CURL_CSELECT_ERR;
    int running;
    h->in_action = true;
    curl_multi_socket_action(h->multi, fd, flags, &running);
    h->in_action = false;
    check_multi(h);
    add_pending(h);
}

static int sock_cb(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)e;
    (void)socketp;
    http_t *h = userp;
    if (what == CURL_POLL_REMOVE) {
        loop_del(h->loop, s);
        return 0;
    }
    uint32_t ev = 0;
    if (what & CURL_POLL_IN) ev |= EPOLLIN;
    if (what & CURL_POLL_OUT) ev |= EPOLLOUT;
    if (loop_has(h->loop, s))
        loop_mod(h->loop, s, ev);
    else
        loop_add(h->loop, s, ev, on_fd, h);
    return 0;
}

static void on_timer(loop_t *l, void *arg)
{
    (void)l;
    http_t *h = arg;
    h->timer = 0;
    int running;
    h->in_action = true;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    h->in_action = false;
    check_multi(h);
    add_pending(h);
}

static int timer_cb(CURLM *m, long timeout_ms, void *userp)
{
    (void)m;
    http_t *h = userp;
    if (h->timer) loop_timer_cancel(h->loop, h->timer);
    h->timer = 0;
    if (timeout_ms >= 0) h->timer = loop_timer(h->loop, timeout_ms, on_timer, h);
    return 0;
}

int http_new(loop_t *loop, http_t **out, shed_err *err)
{
    static bool global_done;
    if (!global_done) {
        /* This first curl call dlopens libcurl (base/lazy_curl.h), and with
         * it librtmp's GnuTLS, whose constructor would initialize GnuTLS
         * (~0.6 MB of the worker's idle RSS) for rtmp:// URLs shed never
         * uses; curl's TLS is OpenSSL. GnuTLS skips only that implicit init
         * (an explicit gnutls_global_init still works). Called before any
         * thread exists; an operator's own setting is left alone. */
        bool set_env = !getenv("GNUTLS_NO_IMPLICIT_INIT") && setenv("GNUTLS_NO_IMPLICIT_INIT", "1", 0) == 0;
        CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
        if (set_env) unsetenv("GNUTLS_NO_IMPLICIT_INIT");
        if (rc != CURLE_OK) return err_msg(err, EIO, "curl_global_init failed");
        global_done = true;
    }
    http_t *h = calloc(1, sizeof(*h));
    if (!h) return err_set(err, ENOMEM, "http_new");
    h->loop = loop;
    h->multi = curl_multi_init();
    if (!h->multi) {
        free(h);
        return err_msg(err, ENOMEM, "curl_multi_init failed");
    }
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, 1024L);
    *out = h;
    return 0;
}

void http_free(http_t *h)
{
    if (!h) return;
    while (h->reqs) req_free(h->reqs);
    if (h->timer) loop_timer_cancel(h->loop, h->timer);
    if (h->reap_timer) loop_timer_cancel(h->loop, h->reap_timer);
    curl_multi_cleanup(h->multi);
    free(h);
}

int http_active(const http_t *h)
{
    return h->active;
}

/* Long-lived sockets live at fd numbers >= 1024 when the limit allows:
 * the low numbers stay free for what needs them (a sandbox's setup opens
 * files after lowering its own RLIMIT_NOFILE, in a child that still holds a
 * copy of this process's fd table). */
static curl_socket_t open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
    (void)arg;
    (void)purpose;
    int fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    if (fd < 0) return CURL_SOCKET_BAD;
    int hi = fcntl(fd, F_DUPFD_CLOEXEC, 1024);
    if (hi >= 0) {
        close(fd);
        fd = hi;
    }
    return fd;
}

static size_t write_cb(char *ptr, size_t size, size_t n, void *arg)
{
    http_req_t *r = arg;
    size_t len = size * n;
    if (r->cancelled) return len ? 0 : 1; /* any mismatch aborts */
    if (r->on_data && !r->status_checked) {
        long st = 0;
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &st);
        r->streaming_ok = st >= 200 && st < 300;
        r->status_checked = true;
    }
    if (r->on_data && r->streaming_ok) {
        if (r->on_data(ptr, len, r->arg)) return len ? 0 : 1;
        if (r->cancelled) return len ? 0 : 1;
        return len;
    }
    if (buf_append(&r->resp, ptr, len) < 0) return len ? 0 : 1;
    return len;
}

static size_t header_cb(char *ptr, size_t size, size_t n, void *arg)
{
    http_req_t *r = arg;
    size_t len = size * n;
    if (r->cancelled) return len ? 0 : 1;
    if (len >= 5 && !strncmp(ptr, "HTTP/", 5)) {
        /* A new response (after a 1xx or a redirect): forget the last one's. */
        r->retry_after_ms = 0;
        r->retry_after_is_ms = false;
        r->should_retry = -1;
    } else if (len > 15 && !strncasecmp(ptr, "x-should-retry:", 15)) {
        const char *v = ptr + 15;
        while (v < ptr + len && (*v == ' ' || *v == '\t')) v++;
        size_t vl = (size_t)(ptr + len - v);
        while (vl > 0 && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' ')) vl--;
        r->should_retry = (vl == 4 && !strncmp(v, "true", 4)) ? 1 : (vl == 5 && !strncmp(v, "false", 5)) ? 0 : -1;
    } else if (len > 12 && (ptr[0] == 'r' || ptr[0] == 'R')) {
        bool is_ms = false;
        int64_t ra = proto_retry_after_header(ptr, len, clock_wall_ms() / 1000, &is_ms);
        if (ra > 0 && (is_ms || !r->retry_after_is_ms)) {
            r->retry_after_ms = ra;
            r->retry_after_is_ms = is_ms;
        }
    }
    if (len <= 2 && (len == 0 || ptr[0] == '\r' || ptr[0] == '\n')) {
        long st = 0;
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &st);
        if (st >= 200 && !r->headers_done) {
            r->headers_done = true;
            if (r->on_headers && r->on_headers(st, r->arg)) return len ? 0 : 1;
            if (r->cancelled) return len ? 0 : 1;
        }
    }
    return len;
}

/* Requests started from inside a curl callback are added afterwards: curl
 * refuses curl_multi_add_handle while it is dispatching. */
static void add_pending(http_t *h)
{
    for (http_req_t *r = h->reqs, *next; r; r = next) {
        next = r->next;
        if (r->added || r->cancelled) continue;
        r->added = true;
        CURLMcode mc = curl_multi_add_handle(h->multi, r->easy);
        if (mc != CURLM_OK) {
            http_result res = {.curl_code = CURLE_FAILED_INIT, .error = curl_multi_strerror(mc), .should_retry = -1,
                               .body = &r->resp};
            r->cancelled = true;
            if (r->on_done) r->on_done(&res, r->arg);
            req_free(r);
        }
    }
}

static void check_multi(http_t *h)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(h->multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        http_req_t *r = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        if (!r) continue;
        CURLcode code = m->data.result;
        curl_multi_remove_handle(h->multi, r->easy);
        r->added = false;
        if (r->cancelled) {
            req_free(r);
            continue;
        }
        http_result res = {0};
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &res.status);
        res.curl_code = (int)code;
        res.error = code ? curl_easy_strerror(code) : NULL;
        res.body = &r->resp;
        res.elapsed_ms = clock_mono_ms() - r->start_ms;
        res.retry_after_ms = r->retry_after_ms;
        res.should_retry = r->should_retry;
        r->cancelled = true; /* the callback may call http_cancel on us: harmless */
        if (r->on_done) r->on_done(&res, r->arg);
        req_free(r);
    }
}

static void reap(loop_t *l, void *arg)
{
    (void)l;
    http_t *h = arg;
    h->reap_timer = 0;
    for (http_req_t *r = h->reqs, *next; r; r = next) {
        next = r->next;
        if (r->cancelled) req_free(r);
    }
}

void http_cancel(http_req_t *r)
{
    if (!r || r->cancelled) return;
    r->cancelled = true;
    http_t *h = r->h;
    /* Never remove a handle from inside curl; reap on the next loop pass. */
    if (!h->reap_timer) h->reap_timer = loop_timer(h->loop, 0, reap, h);
}

http_req_t *http_start(http_t *h, const http_opts *o, shed_err *err)
{
    http_req_t *r = calloc(1, sizeof(*r));
    if (!r) {
        err_set(err, ENOMEM, "http request");
        return NULL;
    }
    r->h = h;
    r->should_retry = -1;
    r->on_data = o->on_data;
    r->on_headers = o->on_headers;
    r->on_done = o->on_done;
    r->arg = o->arg;
    r->start_ms = clock_mono_ms();
    buf_init(&r->resp, o->max_body ? o->max_body : HTTP_DEFAULT_MAX_BODY);
    r->easy = curl_easy_init();
    if (!r->easy) {
        free(r);
        err_msg(err, ENOMEM, "curl_easy_init failed");
        return NULL;
    }
    for (const char *const *hd = o->headers; hd && *hd; hd++) {
        struct curl_slist *n = curl_slist_append(r->hdrs, *hd);
        if (!n) goto oom;
        r->hdrs = n;
    }
    /* No "Expect: 100-continue" round trip on POST bodies. */
    struct curl_slist *n = curl_slist_append(r->hdrs, "Expect:");
    if (!n) goto oom;
    r->hdrs = n;
    CURL *e = r->easy;
    curl_easy_setopt(e, CURLOPT_URL, o->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)(o->connect_timeout_ms ? o->connect_timeout_ms : 10000));
    if (o->timeout_ms > 0) curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)o->timeout_ms);
    if (o->stall_timeout_ms > 0) {
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
        long s = (long)((o->stall_timeout_ms + 999) / 1000);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, s);
    }
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "shed-worker/" SHED_VERSION);
    const char *method = o->method ? o->method : "GET";
    if (!strcmp(method, "POST")) {
        r->body = malloc(o->body_len + 1);
        if (!r->body) goto oom;
        if (o->body_len) memcpy(r->body, o->body, o->body_len);
        r->body[o->body_len] = 0;
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
    } else if (strcmp(method, "GET")) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    }
    r->next = h->reqs;
    if (h->reqs) h->reqs->prev = r;
    h->reqs = r;
    h->active++;
    if (h->in_action) return r; /* added by add_pending() once curl returns */
    r->added = true;
    CURLMcode mc = curl_multi_add_handle(h->multi, e);
    if (mc != CURLM_OK) {
        err_msg(err, EIO, "curl_multi_add_handle: %s", curl_multi_strerror(mc));
        r->added = false;
        req_free(r);
        return NULL;
    }
    return r;
oom:
    curl_slist_free_all(r->hdrs);
    curl_easy_cleanup(r->easy);
    buf_free(&r->resp);
    free(r->body);
    free(r);
    err_set(err, ENOMEM, "http request");
    return NULL;
}
