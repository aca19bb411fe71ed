/* The HTTP side of `shed serve`: libmicrohttpd daemon, routing, auth, the
 * long-poll and SSE machinery. Handlers live in routes.c.
 *
 * Threading: one libmicrohttpd thread in epoll mode
 * (MHD_USE_EPOLL_INTERNAL_THREAD) with MHD_ALLOW_SUSPEND_RESUME. Every
 * request, and every store call, runs on that thread, so the store needs no
 * locking and a poll's claim can never interleave with another's. A waiting
 * long-poll or an idle SSE stream is a *suspended* connection, not a thread:
 * thousands cost only their sockets. One small "waker" thread owns the
 * deadlines (block_ms, ping interval) and resumes connections when they
 * expire; a commit that enqueues work resumes a poll of that environment at
 * once, and one that appends events sends them to the session's waiting
 * streams itself (routes.c, sse_push) or resumes them. Thread-per-connection would grow
 * without bound with idle workers; a thread pool would need the store to be
 * locked anyway, since SQLite serializes writers.
 *
 * Never logs a credential, a request body or a secret. */
#include "server/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/b64.h"
#include "base/cleanup.h"
#include "base/clock.h"
#include "base/crypto.h"
#include "base/id.h"
#include "base/log.h"
#include "obs/obs.h"

/* ----------------------------------------------------------------- waiters */

static void waiter_unlink(server_t *srv, waiter_t *w)
{
    if (!w->listed) return;
    if (w->prev)
        w->prev->next = w->next;
    else
        srv->waiters = w->next;
    if (w->next) w->next->prev = w->prev;
    w->next = w->prev = NULL;
    w->listed = false;
}

/* Call with the connection already suspended (so a resume can never precede it). */
void http_wait(server_t *srv, waiter_t *w, struct MHD_Connection *conn, int kind, const char *key,
               int64_t deadline_ms)
{
    w->conn = conn;
    w->kind = kind;
    snprintf(w->key, sizeof(w->key), "%s", key);
    w->deadline_ms = deadline_ms;
    pthread_mutex_lock(&srv->wlock);
    if (srv->stopping) {
        pthread_mutex_unlock(&srv->wlock);
        MHD_resume_connection(conn);
        return;
    }
    w->prev = NULL;
    w->next = srv->waiters;
    if (srv->waiters) srv->waiters->prev = w;
    srv->waiters = w;
    w->listed = true;
    srv->nwaiters++;
    /* Wake the waker only when this deadline comes before the one it sleeps
     * until: a stream re-suspending after each event would otherwise wake a
     * second thread per event, which competes with the push on a busy box. */
    if (deadline_ms < srv->waker_next_ms) pthread_cond_signal(&srv->wcond);
    pthread_mutex_unlock(&srv->wlock);
}

void http_notify_visit(server_t *srv, int kind, const char *key,
                       bool (*visit)(waiter_t *w, bool same_key, void *ctx), void *ctx)
{
    pthread_mutex_lock(&srv->wlock);
    for (waiter_t *w = srv->waiters, *next; w; w = next) {
        next = w->next;
        if (w->kind != kind) continue;
        bool same = !strcmp(w->key, key);
        if (!visit(w, same, ctx) && same) {
            waiter_unlink(srv, w);
            srv->nwaiters--;
            MHD_resume_connection(w->conn);
        }
    }
    pthread_mutex_unlock(&srv->wlock);
}

/* Wake the longest-waiting waiter of that key only: one new work item can
 * satisfy one poll, so waking every poller would only make them race. */
void http_notify_one(server_t *srv, int kind, const char *key)
{
    pthread_mutex_lock(&srv->wlock);
    waiter_t *pick = NULL;
    for (waiter_t *w = srv->waiters; w; w = w->next)
        if (w->kind == kind && !strcmp(w->key, key))
            pick = w; /* newest first: the last is the oldest */
    if (pick) {
        waiter_unlink(srv, pick);
        srv->nwaiters--;
        MHD_resume_connection(pick->conn);
    }
    pthread_mutex_unlock(&srv->wlock);
}

static void *waker_main(void *arg)
{
    server_t *srv = arg;
    pthread_mutex_lock(&srv->wlock);
    while (!srv->waker_quit) {
        int64_t now = clock_mono_ms(), next = now + 1000;
        for (waiter_t *w = srv->waiters, *nx; w; w = nx) {
            nx = w->next;
            if (w->deadline_ms <= now) {
                waiter_unlink(srv, w);
                srv->nwaiters--;
                MHD_resume_connection(w->conn);
            } else if (w->deadline_ms < next) {
                next = w->deadline_ms;
            }
        }
        srv->waker_next_ms = next;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t wait_ms = next - now;
        ts.tv_sec += wait_ms / 1000;
        ts.tv_nsec += (wait_ms % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&srv->wcond, &srv->wlock, &ts);
    }
    pthread_mutex_unlock(&srv->wlock);
    return NULL;
}

/* ------------------------------------------------------- workers_polling */

void http_note_worker(server_t *srv, const char *env_id, const char *worker_id)
{
    int64_t now = clock_mono_ms();
    int free_slot = -1, oldest = 0;
    for (int i = 0; i < WORKER_SLOTS; i++) {
        worker_seen_t *w = &srv->workers[i];
        if (w->last_ms && !strcmp(w->env_id, env_id) && !strcmp(w->worker_id, worker_id)) {
            w->last_ms = now;
            return;
        }
        if (!w->last_ms || now - w->last_ms > 30000) {
            if (free_slot < 0) free_slot = i;
        } else if (w->last_ms < srv->workers[oldest].last_ms) {
            oldest = i;
        }
    }
    worker_seen_t *w = &srv->workers[free_slot >= 0 ? free_slot : oldest];
    snprintf(w->env_id, sizeof(w->env_id), "%s", env_id);
    snprintf(w->worker_id, sizeof(w->worker_id), "%s", worker_id);
    w->last_ms = now;
}

int http_workers_polling(server_t *srv, const char *env_id)
{
    int64_t now = clock_mono_ms();
    int n = 0;
    for (int i = 0; i < WORKER_SLOTS; i++) {
        worker_seen_t *w = &srv->workers[i];
        if (w->last_ms && now - w->last_ms <= 30000 && !strcmp(w->env_id, env_id)) n++;
    }
    return n;
}

/* -------------------------------------------------------------- responses */

/* The status of the answer queued by the current handler call (one MHD thread). */
static unsigned last_status;

static enum MHD_Result queue(struct MHD_Connection *c, unsigned status, char *body, size_t len,
                             const char *ctype)
{
    last_status = status;
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, body, body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    if (ctype) MHD_add_response_header(r, "Content-Type", ctype);
    /* 4xx answers are final: tell Anthropic's SDKs not to retry them (they retry 409 by default).
     */
    if (status >= 400 && status < 500 && status != 408 && status != 429)
        MHD_add_response_header(r, "x-should-retry", "false");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

enum MHD_Result http_json(struct MHD_Connection *c, unsigned status, json_t *body)
{
    char *s = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(body);
    if (!s) return http_error(c, 500, "api_error", "could not encode the response");
    return queue(c, status, s, strlen(s), "application/json");
}

enum MHD_Result http_json_text(struct MHD_Connection *c, unsigned status, const char *json)
{
    char *s = strdup(json);
    if (!s) return http_error(c, 500, "api_error", "out of memory");
    return queue(c, status, s, strlen(s), "application/json");
}

enum MHD_Result http_empty(struct MHD_Connection *c, unsigned status)
{
    return queue(c, status, NULL, 0, NULL);
}

static const char *error_type(unsigned status)
{
    switch (status) {
    case 400:
        return "invalid_request_error";
    case 401:
        return "authentication_error";
    case 403:
        return "permission_error";
    case 404:
        return "not_found_error";
    case 409:
        return "conflict_error";
    case 412:
        return "precondition_failed";
    case 413:
        return "request_too_large";
    case 429:
        return "rate_limit_error";
    default:
        return "api_error";
    }
}

enum MHD_Result http_error_details(struct MHD_Connection *c, unsigned status, const char *type,
                                   const char *msg, json_t *details)
{
    json_t *e = json_pack("{s:s,s:s}", "type", type ? type : error_type(status), "message", msg);
    if (!e && msg) {
        /* The message quotes a request part that is not UTF-8 (e.g. a path
         * segment): answer the error anyway, those bytes shown as '?'. */
        char safe[512];
        size_t i = 0;
        for (; msg[i] && i + 1 < sizeof(safe); i++)
            safe[i] = (unsigned char)msg[i] < 0x80 ? msg[i] : '?';
        safe[i] = 0;
        e = json_pack("{s:s,s:s}", "type", type ? type : error_type(status), "message", safe);
    }
    if (details) json_object_set_new(e, "details", details);
    return http_json(c, status, json_pack("{s:s,s:o}", "type", "error", "error", e));
}

enum MHD_Result http_error(struct MHD_Connection *c, unsigned status, const char *type,
                           const char *msg)
{
    return http_error_details(c, status, type, msg, NULL);
}

enum MHD_Result http_store_error(server_t *srv, struct MHD_Connection *c, int rc,
                                 const shed_err *err)
{
    (void)srv;
    switch (rc) {
    case -ENOENT:
        return http_error(c, 404, NULL, err->msg);
    case -EEXIST:
        return http_error(c, 409, NULL, err->msg);
    case -ESTALE:
        return http_error(c, 412, NULL, err->msg);
    case -EINVAL:
        return http_error(c, 400, NULL, err->msg);
    case -EACCES:
        return http_error(c, 403, NULL, err->msg);
    case -EROFS:
        log_error("store: %s", err->msg);
        return http_error(c, 503, NULL,
                          "the control plane's store refuses writes since a flush to disk "
                          "failed; check the disk, then restart shed serve (its log says more)");
    default:
        log_error("store: %s", err->msg);
        return http_error(c, 500, NULL, "internal error in the control plane's store; see its log");
    }
}

/* ------------------------------------------------------------------ auth */

int server_new_secret(const char *prefix, char *out, size_t outlen)
{
    unsigned char raw[32];
    int rc = id_random(raw, sizeof(raw));
    if (rc < 0) return rc;
    size_t plen = strlen(prefix);
    if (outlen < plen + b64_encoded_size(sizeof(raw), false)) return -ENAMETOOLONG;
    memcpy(out, prefix, plen);
    b64_encode(raw, sizeof(raw), out + plen, true, false);
    return 0;
}

/* Resolve the request's credential. Returns 0, or an HTTP status (401) with msg. */
int http_authenticate(server_t *srv, struct MHD_Connection *c, store_principal_t *p,
                      const char **msg)
{
    memset(p, 0, sizeof(*p));
    p->gen = -1;
    const char *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "x-api-key");
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    const char *cred = NULL;
    if (auth && *auth) {
        if (strncasecmp(auth, "Bearer ", 7)) {
            *msg = "Authorization header must be 'Bearer <key>'";
            return 401;
        }
        cred = auth + 7;
        while (*cred == ' ') cred++;
    } else if (key && *key) {
        cred = key;
    }
    if (!cred || !*cred) {
        *msg = "missing credential: send 'x-api-key: <admin key>' or 'Authorization: Bearer "
               "<environment key>'";
        return 401;
    }
    if (strlen(cred) > 256) {
        *msg = "invalid credential";
        return 401;
    }
    unsigned char d[SHA256_LEN];
    crypto_sha256(cred, strlen(cred), d);
    if (crypto_equal(d, srv->admin_digest, SHA256_LEN)) {
        p->kind = PRINCIPAL_ADMIN;
        return 0;
    }
    char hex[SHA256_HEX_LEN];
    crypto_hex(d, SHA256_LEN, hex);
    shed_err err = {0};
    int rc = -ENOENT;
    if (!strncmp(cred, SERVER_ENV_KEY_PREFIX, strlen(SERVER_ENV_KEY_PREFIX)))
        rc = srv->store->ops->auth_env_key(srv->store, hex, p, &err);
    else if (!strncmp(cred, SERVER_TOKEN_PREFIX, strlen(SERVER_TOKEN_PREFIX)))
        rc = srv->store->ops->auth_sessions_token(srv->store, hex, p, &err);
    if (rc == 0) return 0;
    if (rc != -ENOENT) {
        log_error("auth: %s", err.msg);
        *msg = "credential check failed: internal error";
        return 500;
    }
    *msg = "invalid, revoked or unknown credential";
    return 401;
}

/* ---------------------------------------------------------------- metrics */

/* The route pattern of a path for metric labels: literal segments kept, any
 * other (ids, versions) replaced by {id}. Never a raw path: no id becomes a
 * label value. */
static void route_pattern(const char *url, char *out, size_t n)
{
    static const char *const LIT[] = {
        "v1",     "environments", "sessions", "events",        "stream",   "work",    "poll",
        "ack",    "heartbeat",    "stop",     "stats",         "keys",     "archive", "agents",
        "skills", "versions",     "content",  "memory_stores", "memories", "latest",
    };
    size_t o = 0;
    out[0] = '\0';
    const char *p = url;
    while (*p && o + 8 < n) {
        while (*p == '/') p++;
        if (!*p) break;
        const char *e = strchr(p, '/');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        const char *seg = "{id}";
        for (size_t i = 0; i < ARRAY_SIZE(LIT); i++)
            if (strlen(LIT[i]) == l && !memcmp(LIT[i], p, l)) seg = LIT[i];
        o += (size_t)snprintf(out + o, n - o, "/%s", seg);
        if (o >= n) o = n - 1;
        p += l;
    }
    if (!out[0]) snprintf(out, n, "/");
}

/* Refresh shed_serve_store_failed and the queue gauges of every live
 * environment (at most 256) from the store, on the HTTP thread (the store's
 * only thread), just before a scrape. */
static void refresh_queue_gauges(server_t *srv)
{
    metrics_set(obs_m.store_failed, NULL, srv->store->ops->write_refused(srv->store) ? 1 : 0);
    store_page_t pg = {.limit = 256};
    json_t *page = NULL;
    shed_err err = {0};
    if (srv->store->ops->env_list(srv->store, false, &pg, &page, &err) < 0) {
        log_warn("metrics: list environments: %s", err.msg);
        return;
    }
    size_t i;
    json_t *env;
    json_array_foreach(json_object_get(page, "data"), i, env)
    {
        const char *id = json_string_value(json_object_get(env, "id"));
        json_t *st = NULL;
        if (!id || srv->store->ops->work_stats(srv->store, id, clock_wall_us(), &st, &err) < 0)
            continue;
        json_object_set_new(st, "workers_polling", json_integer(http_workers_polling(srv, id)));
        if (obs_queue_stats_update(id, st, &err) < 0) log_warn("metrics: %s", err.msg);
        json_decref(st);
    }
    json_decref(page);
}

/* /readyz: the database answers a read and takes writes, and the server
 * is not stopping. */
static int serve_ready(void *arg, char *why, size_t n)
{
    server_t *srv = arg;
    if (srv->stopping) {
        snprintf(why, n, "shutting down");
        return 1;
    }
    const char *refused = srv->store->ops->write_refused(srv->store);
    if (refused) {
        snprintf(why, n, "db refuses writes since a flush failed (%s): check the disk, restart",
                 refused);
        return 1;
    }
    store_page_t pg = {.limit = 1};
    json_t *page = NULL;
    shed_err err = {0};
    if (srv->store->ops->env_list(srv->store, true, &pg, &page, &err) < 0) {
        snprintf(why, n, "db: %s", err.msg);
        return 1;
    }
    json_decref(page);
    return 0;
}

/* GET /metrics, /healthz, /readyz (no credential: keep --listen local or
 * firewalled, as for the worker's --metrics-listen). 1 if answered. */
static int obs_route(server_t *srv, struct MHD_Connection *c, const char *url, const char *method,
                     enum MHD_Result *ret)
{
    if (strcmp(url, "/metrics") && strcmp(url, "/healthz") && strcmp(url, "/readyz")) return 0;
    if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
        *ret = http_error(c, 405, "invalid_request_error", "method not allowed");
        return 1;
    }
    if (!strcmp(url, "/metrics")) refresh_queue_gauges(srv);
    int status = 500;
    const char *ctype = "text/plain";
    char *body = NULL;
    size_t len = 0;
    if (!obs_http_answer(url, serve_ready, srv, &status, &ctype, &body, &len)) return 0;
    last_status = (unsigned)status;
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        *ret = MHD_NO;
        return 1;
    }
    MHD_add_response_header(r, "Content-Type", ctype);
    *ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return 1;
}

/* ---------------------------------------------------------------- daemon */

static void request_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                              enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    req_t *r = *con_cls;
    if (!r) return;
    buf_free(&r->body);
    free(r);
    *con_cls = NULL;
}

static enum MHD_Result access_handler(void *cls, struct MHD_Connection *c, const char *url,
                                      const char *method, const char *version, const char *upload,
                                      size_t *upload_size, void **con_cls)
{
    (void)version;
    server_t *srv = cls;
    req_t *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof(*r));
        if (!r) return MHD_NO;
        buf_init(&r->body, srv->cfg.max_body);
        *con_cls = r;
        return MHD_YES;
    }
    if (*upload_size) {
        if (!r->too_large && buf_append(&r->body, upload, *upload_size) < 0) r->too_large = true;
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->too_large) {
        char msg[128];
        snprintf(msg, sizeof(msg), "request body is over the %zu-byte limit", srv->cfg.max_body);
        return http_error(c, 413, NULL, msg);
    }
    last_status = 0;
    int64_t t0 = clock_mono_ns();
    enum MHD_Result ret;
    if (!r->polling && obs_route(srv, c, url, method, &ret)) return ret;
    ret = routes_dispatch(srv, c, r, url, method);
    if (last_status) {
        char route[160], code[8];
        route_pattern(url, route, sizeof(route));
        snprintf(code, sizeof(code), "%u", last_status);
        metrics_inc(obs_m.http_requests, LV(route, code), 1);
        metrics_observe(obs_m.http_request_seconds, LV(route),
                        (double)(clock_mono_ns() - t0) / 1e9);
    }
    /* Access log (debug): method, path (never the query or a header), status. */
    if (last_status && log_level() >= LOG_DEBUG)
        log_debug("%s %s -> %u (%.2f ms)", method, url, last_status,
                  (double)(clock_mono_ns() - t0) / 1e6);
    return ret;
}

static int parse_listen(const char *listen, struct sockaddr_storage *ss, shed_err *err)
{
    memset(ss, 0, sizeof(*ss));
    char host[128];
    const char *colon;
    if (listen[0] == '[') {
        const char *end = strchr(listen, ']');
        if (!end || end[1] != ':' || (size_t)(end - listen - 1) >= sizeof(host)) goto bad;
        memcpy(host, listen + 1, (size_t)(end - listen - 1));
        host[end - listen - 1] = '\0';
        colon = end + 1;
    } else {
        colon = strrchr(listen, ':');
        if (!colon || (size_t)(colon - listen) >= sizeof(host)) goto bad;
        memcpy(host, listen, (size_t)(colon - listen));
        host[colon - listen] = '\0';
    }
    if (!strcmp(host, "localhost")) snprintf(host, sizeof(host), "127.0.0.1");
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || port < 0 || port > 65535) goto bad;
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        return 0;
    }
bad:
    return err_msg(err, EINVAL, "--listen '%s': expected IPV4:PORT or [IPV6]:PORT", listen);
}

void server_config_defaults(server_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->listen = "127.0.0.1:8790";
    cfg->lease_ttl_s = 60;
    cfg->reclaim_ms = 5000;
    cfg->sse_ping_ms = 15000;
    cfg->max_body = 4u << 20;
    cfg->max_connections = 1000;
}

int server_start(const server_config_t *cfg, server_t **out, shed_err *err)
{
    if (!cfg->admin_key || strlen(cfg->admin_key) < 16)
        return err_msg(err, EINVAL, "admin key missing or shorter than 16 characters");
    struct sockaddr_storage ss;
    int rc = parse_listen(cfg->listen, &ss, err);
    if (rc < 0) return rc;
    server_t *srv = calloc(1, sizeof(*srv));
    if (!srv) return err_set(err, ENOMEM, "server");
    srv->cfg = *cfg;
    srv->cfg.admin_key = NULL; /* only the digest stays */
    obs_catalog_init();
    crypto_sha256(cfg->admin_key, strlen(cfg->admin_key), srv->admin_digest);
    store_queue_cfg_t qc = {.default_ttl_s = cfg->lease_ttl_s,
                            .default_reclaim_ms = cfg->reclaim_ms,
                            .sync_normal = cfg->sync_normal,
                            .sync_strict = cfg->sync_strict};
    if ((rc = store_open(cfg->db_url, &qc, &srv->store, err)) < 0) {
        free(srv);
        return rc;
    }
    pthread_mutex_init(&srv->wlock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&srv->wcond, &ca);
    pthread_condattr_destroy(&ca);
    if ((rc = pthread_create(&srv->waker, NULL, waker_main, srv)) != 0) {
        srv->store->ops->close(srv->store);
        free(srv);
        return err_set(err, rc, "pthread_create");
    }
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (ss.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
    srv->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, access_handler, srv, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_NOTIFY_COMPLETED, request_completed, srv,
        /* Per-connection memory (request line + headers + buffers): bounds header size. */
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024), MHD_OPTION_CONNECTION_LIMIT,
        cfg->max_connections, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)300, MHD_OPTION_END);
    if (!srv->mhd) {
        pthread_mutex_lock(&srv->wlock);
        srv->waker_quit = true;
        pthread_cond_signal(&srv->wcond);
        pthread_mutex_unlock(&srv->wlock);
        pthread_join(srv->waker, NULL);
        srv->store->ops->close(srv->store);
        free(srv);
        return err_msg(
            err, EADDRINUSE,
            "listen on %s: cannot bind (address in use or not local?); pick another --listen",
            cfg->listen);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(srv->mhd, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = di ? di->port : 0;
    *out = srv;
    return 0;
}

int server_port(const server_t *srv)
{
    return srv->port;
}

void server_stop(server_t *srv)
{
    if (!srv) return;
    MHD_socket lsock = MHD_quiesce_daemon(srv->mhd);
    pthread_mutex_lock(&srv->wlock);
    srv->stopping = true;
    for (waiter_t *w = srv->waiters, *next; w; w = next) {
        next = w->next;
        waiter_unlink(srv, w);
        MHD_resume_connection(w->conn);
    }
    srv->nwaiters = 0;
    srv->waker_quit = true;
    pthread_cond_signal(&srv->wcond);
    pthread_mutex_unlock(&srv->wlock);
    pthread_join(srv->waker, NULL);
    /* Give resumed polls and streams a moment to send their last bytes. */
    struct timespec ts = {0, 100 * 1000000};
    nanosleep(&ts, NULL);
    MHD_stop_daemon(srv->mhd);
    if (lsock != MHD_INVALID_SOCKET) close(lsock); /* ours after quiesce, closed after the stop */
    srv->store->ops->close(srv->store);
    pthread_cond_destroy(&srv->wcond);
    pthread_mutex_destroy(&srv->wlock);
    explicit_bzero(srv->admin_digest, sizeof(srv->admin_digest));
    free(srv);
}
