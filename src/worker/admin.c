/* The worker's local admin endpoint: see admin.h. Bounded everywhere: at most
 * ADMIN_MAX_CONNS connections, ADMIN_MAX_LINE bytes per request, a connection
 * idle for ADMIN_IDLE_MS is closed. Never serves a peer whose uid is not the
 * worker's euid or root; never puts a key, token or secret in an answer.
 */
#include "worker/admin.h"

#include "base/cleanup.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/crypto.h"
#include "base/json.h"
#include "base/log.h"
#include "egress/egress.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define ADMIN_MAX_CONNS 16
#define ADMIN_MAX_LINE  (256 * 1024)
#define ADMIN_MAX_OUT   (16 * 1024 * 1024)
#define ADMIN_IDLE_MS   60000
#define ADMIN_SWEEP_MS  1000

typedef struct aconn aconn_t;
struct aconn {
    admin_t *a;
    aconn_t *next;
    int fd;
    buf_t in, out;
    uint64_t idle_timer;
    bool closing; /* close once out is written */
};

struct admin {
    loop_t *loop;
    struct worker *w;
    audit_t *audit;
    json_t *default_network;
    char *path;
    int fd;
    aconn_t *conns;
    int nconns;
    int64_t max_session_ms;
    uint64_t sweep_timer;
    json_t *overrides; /* session id -> {"pid":N,"network":{...}}: the policy set by `policy` */
};

static void conn_close(aconn_t *c)
{
    admin_t *a = c->a;
    for (aconn_t **pp = &a->conns; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    a->nconns--;
    if (c->idle_timer) loop_timer_cancel(a->loop, c->idle_timer);
    loop_del(a->loop, c->fd);
    close(c->fd);
    buf_free(&c->in);
    buf_free(&c->out);
    free(c);
}

static json_t *fail_json(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static json_t *fail_json(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return json_pack("{s:b,s:s}", "ok", 0, "error", msg);
}

/* sha256 of the canonical network object; "deny-all" for none. */
static void network_digest(json_t *net, char out[SHA256_HEX_LEN])
{
    if (!net) {
        snprintf(out, SHA256_HEX_LEN, "deny-all");
        return;
    }
    _cleanup_free_ char *s = json_dumps(net, JSON_COMPACT | JSON_SORT_KEYS);
    if (!s || crypto_sha256_hex(s, strlen(s), out) < 0) snprintf(out, SHA256_HEX_LEN, "unknown");
}

/* The network object in force for a session's sandbox (borrowed). */
static json_t *current_network(admin_t *a, const char *sid, int pid, bool *overridden)
{
    json_t *o = json_object_get(a->overrides, sid);
    if (o && json_integer_value(json_object_get(o, "pid")) == pid) {
        *overridden = true;
        return json_object_get(o, "network");
    }
    *overridden = false;
    return a->default_network;
}

/* Forget overrides of sandboxes that are gone (bounded by the sessions served). */
static void prune_overrides(admin_t *a)
{
    _cleanup_json_ json_t *list = worker_admin_list(a->w);
    const char *sid;
    json_t *o, *tmp;
    json_object_foreach_safe(a->overrides, tmp, sid, o)
    {
        bool live = false;
        size_t i;
        json_t *s;
        json_array_foreach(list, i, s)
        {
            const char *ssid = json_string_value(json_object_get(s, "session_id"));
            if (ssid && !strcmp(ssid, sid) &&
                json_integer_value(json_object_get(s, "sandbox_pid")) == json_integer_value(json_object_get(o, "pid")))
                live = true;
        }
        if (!live) json_object_del(a->overrides, sid);
    }
}

static json_t *cmd_list(admin_t *a)
{
    json_t *list = worker_admin_list(a->w);
    if (!list) return fail_json("list: out of memory");
    size_t i;
    json_t *s;
    json_array_foreach(list, i, s)
    {
        const char *sid = json_string_value(json_object_get(s, "session_id"));
        json_t *pid = json_object_get(s, "sandbox_pid");
        if (!sid || !json_is_integer(pid)) continue;
        bool ov;
        json_t *net = current_network(a, sid, (int)json_integer_value(pid), &ov);
        char dg[SHA256_HEX_LEN];
        network_digest(net, dg);
        json_object_set_new(s, "network_policy", json_string(ov ? "admin" : "worker"));
        json_object_set_new(s, "network_digest", json_string(dg));
    }
    return json_pack("{s:b,s:o}", "ok", 1, "sessions", list);
}

static json_t *cmd_kill(admin_t *a, json_t *req)
{
    shed_err err = {0};
    const char *sid = NULL, *reason = NULL;
    if (json_get_str(req, "session_id", true, &sid, &err) < 0) return fail_json("%s", err.msg);
    if (json_get_str(req, "reason", false, &reason, &err) < 0) return fail_json("%s", err.msg);
    char text[600];
    if (reason && *reason)
        snprintf(text, sizeof(text), "killed by the worker's operator: %.400s", reason);
    else
        snprintf(text, sizeof(text), "killed by the worker's operator");
    if (worker_admin_kill(a->w, sid, NULL, "admin", "admin", text, &err) < 0) return fail_json("%s", err.msg);
    log_info("admin: killed session %s%s%s", sid, reason ? ": " : "", reason ? reason : "");
    return json_pack("{s:b,s:s}", "ok", 1, "session_id", sid);
}

static json_t *cmd_policy(admin_t *a, json_t *req)
{
    shed_err err = {0};
    const char *sid = NULL;
    bool reset = false;
    json_t *net = NULL;
    if (json_get_str(req, "session_id", true, &sid, &err) < 0) return fail_json("%s", err.msg);
    if (json_get_bool(req, "reset", false, &reset, &err) < 0) return fail_json("%s", err.msg);
    if (json_get_obj(req, "network", false, &net, &err) < 0) return fail_json("%s", err.msg);
    if (reset == !!net) return fail_json("policy: give either \"network\" (an object) or \"reset\":true");
    prune_overrides(a);
    egress_policy *pol = NULL;
    if (net && egress_policy_parse(net, &pol, &err) < 0) return fail_json("%s", err.msg);
    char work_id[256] = "";
    int pid = 0;
    int rc = worker_admin_set_policy(a->w, sid, reset ? NULL : pol, work_id, sizeof(work_id), &pid, &err);
    egress_policy_free(pol); /* the proxy holds its own reference */
    if (rc < 0) return fail_json("%s", err.msg);
    /* Find the old network of this very sandbox before recording the new one. */
    json_t *old = json_object_get(a->overrides, sid);
    bool had = old && json_integer_value(json_object_get(old, "pid")) == pid;
    _cleanup_json_ json_t *old_net = json_incref(had ? json_object_get(old, "network") : a->default_network);
    char od[SHA256_HEX_LEN], nd[SHA256_HEX_LEN];
    network_digest(old_net, od);
    if (reset) {
        json_object_del(a->overrides, sid);
        network_digest(a->default_network, nd);
    } else {
        json_object_set_new(a->overrides, sid, json_pack("{s:i,s:O}", "pid", pid, "network", net));
        network_digest(net, nd);
    }
    json_t *f = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:O,s:O}", "session_id", sid, "work_id", work_id, "by",
                          "admin", "old_digest", od, "new_digest", nd, "policy", reset ? "worker" : "admin",
                          "old_network", old_net ?: json_null(),
                          "network", (reset ? a->default_network : net) ?: json_null());
    if (a->audit && f) audit_write(a->audit, "policy.changed", f);
    json_decref(f);
    log_info("admin: egress policy of session %s %s (digest %.12s -> %.12s)", sid,
             reset ? "reset to the worker's" : "changed", od, nd);
    return json_pack("{s:b,s:s,s:s,s:s,s:s}", "ok", 1, "session_id", sid, "policy", reset ? "worker" : "admin",
                     "old_digest", od, "new_digest", nd);
}

json_t *admin_handle(admin_t *a, const char *line, size_t len)
{
    shed_err err = {0};
    _cleanup_json_ json_t *req = json_parse(line, len, ADMIN_MAX_LINE, 32, &err);
    if (!req) return fail_json("request: %s", err.msg);
    if (!json_is_object(req)) return fail_json("request: expected a JSON object");
    const char *cmd = NULL;
    if (json_get_str(req, "cmd", true, &cmd, &err) < 0) return fail_json("%s", err.msg);
    if (!strcmp(cmd, "list")) return cmd_list(a);
    if (!strcmp(cmd, "kill")) return cmd_kill(a, req);
    if (!strcmp(cmd, "policy")) return cmd_policy(a, req);
    return fail_json("cmd: unknown command '%.64s' (list, kill, policy)", cmd);
}

static void conn_io(loop_t *l, int fd, uint32_t events, void *arg);

static void conn_flush(aconn_t *c)
{
    while (c->out.len) {
        ssize_t n = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            conn_close(c);
            return;
        }
        buf_consume(&c->out, (size_t)n);
    }
    if (!c->out.len && c->closing) {
        conn_close(c);
        return;
    }
    loop_mod(c->a->loop, c->fd, c->out.len ? EPOLLOUT : EPOLLIN);
}

static void conn_reply(aconn_t *c, json_t *resp)
{
    _cleanup_free_ char *s = resp ? json_dumps(resp, JSON_COMPACT) : NULL;
    json_decref(resp);
    if (!s || buf_puts(&c->out, s) < 0 || buf_putc(&c->out, '\n') < 0) {
        buf_reset(&c->out);
        buf_puts(&c->out, "{\"ok\":false,\"error\":\"response too large\"}\n");
    }
}

static void conn_idle(loop_t *l, void *arg)
{
    (void)l;
    aconn_t *c = arg;
    c->idle_timer = 0;
    conn_close(c);
}

static void conn_io(loop_t *l, int fd, uint32_t events, void *arg)
{
    (void)fd;
    aconn_t *c = arg;
    if (c->idle_timer) loop_timer_cancel(l, c->idle_timer);
    c->idle_timer = loop_timer(l, ADMIN_IDLE_MS, conn_idle, c);
    if (events & EPOLLOUT) {
        conn_flush(c);
        return;
    }
    char tmp[8192];
    ssize_t n = recv(c->fd, tmp, sizeof(tmp), 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) {
        /* EOF: answer what is complete, then close. */
        c->closing = true;
        conn_flush(c);
        return;
    }
    if (buf_append(&c->in, tmp, (size_t)n) < 0) {
        conn_reply(c, fail_json("request: longer than %d bytes", ADMIN_MAX_LINE));
        c->closing = true;
        conn_flush(c);
        return;
    }
    char *nl;
    while (!c->closing && (nl = memchr(c->in.data, '\n', c->in.len))) {
        size_t len = (size_t)(nl - c->in.data);
        if (len) conn_reply(c, admin_handle(c->a, c->in.data, len));
        buf_consume(&c->in, len + 1);
    }
    conn_flush(c);
}

static void on_accept(loop_t *l, int fd, uint32_t events, void *arg)
{
    (void)events;
    admin_t *a = arg;
    for (;;) {
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) return;
        struct ucred uc;
        socklen_t ul = sizeof(uc);
        if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &uc, &ul) < 0 || (uc.uid != geteuid() && uc.uid != 0)) {
            static const char no[] = "{\"ok\":false,\"error\":\"admin socket: only the worker's user or root may use it\"}\n";
            log_warn("admin: refused a connection from uid %d", ul == sizeof(uc) ? (int)uc.uid : -1);
            (void)!send(cfd, no, sizeof(no) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            close(cfd);
            continue;
        }
        if (a->nconns >= ADMIN_MAX_CONNS) {
            static const char busy[] = "{\"ok\":false,\"error\":\"admin socket: too many connections\"}\n";
            (void)!send(cfd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            close(cfd);
            continue;
        }
        aconn_t *c = calloc(1, sizeof(*c));
        if (!c) {
            close(cfd);
            continue;
        }
        c->a = a;
        c->fd = cfd;
        buf_init(&c->in, ADMIN_MAX_LINE);
        buf_init(&c->out, ADMIN_MAX_OUT);
        if (loop_add(l, cfd, EPOLLIN, conn_io, c) < 0) {
            close(cfd);
            buf_free(&c->in);
            buf_free(&c->out);
            free(c);
            continue;
        }
        c->next = a->conns;
        a->conns = c;
        a->nconns++;
        c->idle_timer = loop_timer(l, ADMIN_IDLE_MS, conn_idle, c);
    }
}

static void sweep(loop_t *l, void *arg)
{
    admin_t *a = arg;
    a->sweep_timer = 0;
    _cleanup_json_ json_t *ids = worker_admin_expired(a->w, a->max_session_ms);
    size_t i;
    json_t *id;
    json_array_foreach(ids, i, id)
    {
        char text[200];
        snprintf(text, sizeof(text), "the session reached the worker's session time limit (--max-session-seconds %lld)",
                 (long long)(a->max_session_ms / 1000));
        shed_err err = {0};
        const char *sid = json_string_value(json_object_get(id, "session_id"));
        const char *wid = json_string_value(json_object_get(id, "work_id"));
        if (!sid || !wid) continue;
        log_warn("session %s (work %s) reached --max-session-seconds; ending it", sid, wid);
        if (worker_admin_kill(a->w, sid, wid, "max_session", "worker", text, &err) < 0)
            log_warn("max-session-seconds: %s", err.msg);
    }
    a->sweep_timer = loop_timer(l, ADMIN_SWEEP_MS, sweep, a);
}

/* Is a live worker answering on this socket? A connect alone does not say:
 * the listening socket of a worker killed a moment ago can outlive it (its
 * exit still in progress, or a copy of the fd in a child that has not reached
 * its exec yet), and the kernel queues connections nobody will accept. So ask
 * (`list`, read-only) and wait up to 3 s for any byte of an answer. */
static bool admin_socket_served(const struct sockaddr_un *sa)
{
    _cleanup_close_ int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe < 0 || connect(probe, (const struct sockaddr *)sa, sizeof(*sa)) < 0) return false;
    static const char ask[] = "{\"cmd\":\"list\"}\n";
    if (send(probe, ask, sizeof(ask) - 1, MSG_NOSIGNAL) < 0) return false;
    int64_t deadline = clock_mono_ms() + 3000;
    for (;;) {
        int64_t left = deadline - clock_mono_ms();
        if (left <= 0) return false;
        struct pollfd p = {.fd = probe, .events = POLLIN};
        int n = poll(&p, 1, (int)left);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        char c;
        return recv(probe, &c, 1, MSG_DONTWAIT) == 1;
    }
}

static int listen_unix(const char *path, shed_err *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return err_msg(err, ENAMETOOLONG, "--admin-socket %s: longer than %zu bytes; choose a shorter path", path,
                       sizeof(sa.sun_path) - 1);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return err_msg(err, EEXIST, "--admin-socket %s exists and is not a socket; remove it or choose another path",
                           path);
        if (admin_socket_served(&sa))
            return err_msg(err, EEXIST, "--admin-socket %s: another process is serving it (another worker on this "
                           "state dir?); stop it or choose another path", path);
        if (unlink(path) < 0) return err_set(err, errno, "--admin-socket %s: remove the stale socket", path);
    } else if (errno != ENOENT) {
        return err_set(err, errno, "--admin-socket %s", path);
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return err_set(err, errno, "admin socket");
    /* Owner-only from the start: bind creates the node with ~umask, so it is
     * chmod'ed at once; peers of another uid are refused anyway (SO_PEERCRED). */
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0600) < 0 || listen(fd, 16) < 0) {
        int e = errno;
        close(fd);
        unlink(path);
        return err_set(err, e, "--admin-socket %s", path);
    }
    return fd;
}

int admin_start(const admin_opts *o, admin_t **out, shed_err *err)
{
    admin_t *a = calloc(1, sizeof(*a));
    if (!a) return err_set(err, ENOMEM, "admin");
    a->loop = o->loop;
    a->w = o->worker;
    a->audit = o->audit;
    a->default_network = o->default_network;
    a->max_session_ms = o->max_session_ms;
    a->fd = -1;
    a->overrides = json_object();
    if (o->socket_path && *o->socket_path) {
        int fd = listen_unix(o->socket_path, err);
        if (fd < 0) {
            admin_free(a);
            return fd;
        }
        a->fd = fd;
        a->path = strdup(o->socket_path);
        if (!a->path || loop_add(a->loop, fd, EPOLLIN, on_accept, a) < 0) {
            int rc = err_set(err, errno ? errno : ENOMEM, "admin socket");
            admin_free(a);
            return rc;
        }
        log_info("admin socket %s (owner only)", a->path);
    }
    if (a->max_session_ms > 0) a->sweep_timer = loop_timer(a->loop, ADMIN_SWEEP_MS, sweep, a);
    *out = a;
    return 0;
}

void admin_free(admin_t *a)
{
    if (!a) return;
    while (a->conns) conn_close(a->conns);
    if (a->sweep_timer) loop_timer_cancel(a->loop, a->sweep_timer);
    if (a->fd >= 0) {
        loop_del(a->loop, a->fd);
        close(a->fd);
    }
    if (a->path) unlink(a->path);
    free(a->path);
    json_decref(a->overrides);
    free(a);
}
