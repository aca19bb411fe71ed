/* Sandbox bridge; see sbx.h. */
#include "worker/sbx.h"

#include "base/cleanup.h"
#include "base/log.h"
#include "sandbox/ctl.h"
#include "egress/egress.h"
#include "sandbox/sandbox.h"
#include "worker/pool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct sbx {
    loop_t *loop;
    egress_t *egress; /* attached under label */
    sandbox_t *sb;
    int fd;
    ctl_reader rd;
    bool dead;
    sbx_result_cb on_result;
    sbx_dead_cb on_dead;
    void *arg;
    char label[160];
    char desc[512];
};

int sbx_available(shed_err *err)
{
    (void)err;
    return 0;
}

int sbx_policy_load(const char *path, sandbox_policy **out, shed_err *err)
{
    int rc = sbx_available(err);
    if (rc < 0) return rc;
    return sandbox_policy_load(path, out, err);
}

void sbx_policy_free(sandbox_policy *p)
{
    if (p) sandbox_policy_free(p);
}

int sbx_reconcile(const char *state_dir, shed_err *err)
{
    return sandbox_reconcile(state_dir, err);
}

static void mark_dead(sbx_t *s, const char *why)
{
    if (s->dead) return;
    s->dead = true;
    if (loop_has(s->loop, s->fd)) loop_del(s->loop, s->fd);
    if (s->on_dead) s->on_dead(s, why, s->arg);
}

static bool handle_msg(sbx_t *s, json_t *m);

/* Keep long-lived fds at numbers >= 1024 when the limit allows, so the low
 * numbers stay free for a sandbox child that lowers RLIMIT_NOFILE before it
 * opens files (it holds a copy of this process's fd table). */
static int fd_high(int fd)
{
    if (fd < 0 || fd >= 1024) return fd;
    int hi = fcntl(fd, F_DUPFD_CLOEXEC, 1024);
    if (hi < 0) return fd;
    close(fd);
    return hi;
}

static void on_ctl(loop_t *l, int fd, uint32_t events, void *arg)
{
    (void)l;
    sbx_t *s = arg;
    if (!(events & EPOLLIN)) {
        mark_dead(s, "control channel closed");
        return;
    }
    (void)l;
    for (;;) {
        json_t *msg = NULL;
        int fds[CTL_MAX_FDS];
        int nfds = 0;
        shed_err err = {0};
        int rc = ctl_read(&s->rd, fd, &msg, fds, &nfds, &err);
        for (int i = 0; i < nfds; i++) close(fds[i]);
        if (rc == -EAGAIN) return;
        if (rc < 0) {
            mark_dead(s, rc == -EPIPE ? "sandbox init exited" : err.msg);
            return;
        }
        bool dead = handle_msg(s, msg);
        json_decref(msg);
        if (dead) return;
    }
}

/* Returns true when s may be gone (a callback ran). */
static bool handle_msg(sbx_t *s, json_t *m)
{
    const char *type = json_string_value(json_object_get(m, "type"));
    json_t *idj = json_object_get(m, "id");
    uint64_t id = json_is_integer(idj) ? (uint64_t)json_integer_value(idj) : 0;
    if (!type) return false;
    if (!strcmp(type, "result")) {
        json_t *content = json_object_get(m, "content");
        json_t *res = json_pack("{s:b,s:O}", "is_error", json_is_true(json_object_get(m, "is_error")),
                                "content", json_is_array(content) ? content : json_array());
        if (!json_is_array(content)) {
            json_decref(res);
            res = json_pack("{s:b,s:[{s:s,s:s}]}", "is_error", 1, "content", "type", "text", "text",
                            "sandbox returned a result without content");
        }
        if (res && s->on_result) s->on_result(s, id, res, s->arg);
        json_decref(res);
        return true;
    } else if (!strcmp(type, "error")) {
        const char *msgs = json_string_value(json_object_get(m, "message"));
        json_t *res = json_pack("{s:b,s:[{s:s,s:s}]}", "is_error", 1, "content", "type", "text",
                                "text", msgs && *msgs ? msgs : "sandbox error");
        if (res && s->on_result) s->on_result(s, id, res, s->arg);
        json_decref(res);
        return true;
    } else if (!strcmp(type, "limit")) {
        log_warn("sandbox %s hit a limit: %s", s->label,
                 json_string_value(json_object_get(m, "what")) ?: "?");
    }
    /* "ready", "exit", others: nothing to do for the worker. */
    return false;
}

static int sbx_attach(sbx_t *s, const sbx_opts *o, const char *workdir, shed_err *err);

static int sbx_make(const sbx_opts *o, sbx_t **out, const char **workdir, shed_err *err)
{
    int rc;
    sbx_t *s = calloc(1, sizeof(*s));
    if (!s) return err_set(err, ENOMEM, "sandbox");
    s->loop = o->loop;
    s->on_result = o->on_result;
    s->on_dead = o->on_dead;
    s->arg = o->arg;
    snprintf(s->label, sizeof(s->label), "%s", o->label);
    /* The tools' environment: built from nothing, never the worker's own
     * (which may hold ANTHROPIC_* credentials). */
    static char *const env[] = {"HOME=/tmp", "LANG=C.UTF-8",
                                "PATH=/usr/local/bin:/usr/bin:/bin", NULL};
    sandbox_opts so = {
        .workspace = o->workspace,
        .workdir = o->workdir ? o->workdir : "/workspace",
        .label = o->label,
        .state_dir = o->state_dir,
        .slot = -1,
        .env = env,
        .ro_binds = o->ro_binds,
        .rw_binds = o->rw_binds,
    };
    rc = sandbox_create(o->policy, &so, &s->sb, err);
    if (rc < 0) {
        free(s);
        return rc;
    }
    *workdir = so.workdir;
    *out = s;
    return 0;
}

int sbx_create(const sbx_opts *o, sbx_t **out, shed_err *err)
{
    sbx_t *s = NULL;
    const char *workdir = NULL;
    int rc = sbx_make(o, &s, &workdir, err);
    if (rc < 0) return rc;
    rc = sbx_attach(s, o, workdir, err);
    if (rc < 0) return rc;
    *out = s;
    return 0;
}

/* On the loop thread: watch the control channel. Frees s on failure. */
static int sbx_attach(sbx_t *s, const sbx_opts *o, const char *workdir, shed_err *err)
{
    int rc;
    s->fd = sandbox_ctl_fd(s->sb);
    ctl_reader_init(&s->rd);
    /* The egress listeners init made inside the sandbox's netns: served by
     * the worker's egress proxy on this loop (deny by default), or closed,
     * which leaves the sandbox with loopback only. */
    int hfd = -1, sfd = -1, dfd = -1;
    sandbox_take_listeners(s->sb, &hfd, &sfd, &dfd);
    hfd = fd_high(hfd);
    sfd = fd_high(sfd);
    dfd = fd_high(dfd);
    const char *net = "loopback only (no egress)";
    if (o->egress) {
        shed_err eerr = {0};
        if (egress_attach(o->egress, s->label, o->egress_policy, hfd, sfd, dfd, &eerr) < 0) {
            ctl_reader_free(&s->rd);
            sandbox_destroy(s->sb, 0, NULL);
            free(s);
            return err_msg(err, EIO, "egress for the sandbox: %s", eerr.msg);
        }
        s->egress = o->egress;
        net = o->egress_policy ? "loopback + egress proxy (policy allow-list, deny by default)"
                               : "loopback + egress proxy (deny all)";
    } else {
        if (hfd >= 0) close(hfd);
        if (sfd >= 0) close(sfd);
        if (dfd >= 0) close(dfd);
    }
    int fl = fcntl(s->fd, F_GETFL);
    if (fl >= 0) fcntl(s->fd, F_SETFL, fl | O_NONBLOCK);
    rc = loop_add(o->loop, s->fd, EPOLLIN, on_ctl, s);
    if (rc < 0) {
        ctl_reader_free(&s->rd);
        sandbox_destroy(s->sb, 0, NULL);
        free(s);
        return err_set(err, -rc, "watch the sandbox control channel");
    }
    (void)o;
    snprintf(s->desc, sizeof(s->desc),
             "init pid %d, host uid %u, network: %s, cgroup %s limits, "
             "policy %.12s, workspace %s at %s",
             (int)sandbox_init_pid(s->sb), (unsigned)sandbox_host_uid(s->sb), net,
             sandbox_cgroup_mode(s->sb), sandbox_policy_digest(o->policy), o->workspace, workdir);
    return 0;
}

typedef struct destroy_job destroy_job;
struct destroy_job {
    sbx_t *s;
    int grace_ms;
    sbx_gone_cb done;
    void *arg;
};
static void destroy_work(void *arg);
static void destroy_done(void *arg);

struct sbx_pending {
    pool_t *pool;
    sbx_opts o;
    char *label, *workspace, *workdir, *state_dir;
    char **ro_binds, **rw_binds; /* copies: the pool thread reads them */
    sbx_ready_cb ready;
    bool abandoned;
    sbx_gone_cb gone;
    void *gone_arg;
    /* filled on the pool thread */
    sbx_t *s;
    const char *made_workdir;
    int rc;
    shed_err err;
};

static void strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++) free(v[i]);
    free(v);
}

/* A copy of a NULL-terminated list; *ok false on ENOMEM. */
static char **strv_dup(const char *const *v, bool *ok)
{
    if (!v) return NULL;
    size_t n = 0;
    while (v[n]) n++;
    char **c = calloc(n + 1, sizeof(*c));
    if (!c) {
        *ok = false;
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        if (!(c[i] = strdup(v[i]))) {
            *ok = false;
            strv_free(c);
            return NULL;
        }
    return c;
}

static void pending_free(sbx_pending_t *p)
{
    strv_free(p->ro_binds);
    strv_free(p->rw_binds);
    free(p->label);
    free(p->workspace);
    free(p->workdir);
    free(p->state_dir);
    free(p);
}

static void create_work(void *arg)
{
    sbx_pending_t *p = arg;
    p->rc = sbx_make(&p->o, &p->s, &p->made_workdir, &p->err);
}

static void create_done(void *arg)
{
    sbx_pending_t *p = arg;
    if (p->abandoned) {
        if (p->rc == 0) {
            /* Never attached: nothing on the loop to detach; destroy it on the pool. */
            destroy_job *d = calloc(1, sizeof(*d));
            if (d) {
                d->s = p->s;
                d->done = p->gone;
                d->arg = p->gone_arg;
                if (pool_submit(p->pool, destroy_work, destroy_done, d) == 0) {
                    pending_free(p);
                    return;
                }
                free(d);
            }
            shed_err err = {0};
            if (sandbox_destroy(p->s->sb, 0, &err) < 0) log_warn("destroy sandbox: %s", err.msg);
            free(p->s);
        }
        if (p->gone) p->gone(p->gone_arg);
        pending_free(p);
        return;
    }
    if (p->rc == 0 && sbx_attach(p->s, &p->o, p->workdir ? p->workdir : "/workspace", &p->err) < 0)
        p->rc = -1;
    if (p->rc == 0)
        p->ready(p->s, NULL, p->o.arg);
    else
        p->ready(NULL, p->err.msg[0] ? p->err.msg : "sandbox creation failed", p->o.arg);
    pending_free(p);
}

sbx_pending_t *sbx_create_async(pool_t *pool, const sbx_opts *o, sbx_ready_cb ready, shed_err *err)
{
    sbx_pending_t *p = calloc(1, sizeof(*p));
    if (!p) {
        err_set(err, ENOMEM, "sandbox");
        return NULL;
    }
    p->pool = pool;
    p->o = *o;
    p->ready = ready;
    p->label = o->label ? strdup(o->label) : NULL;
    p->workspace = o->workspace ? strdup(o->workspace) : NULL;
    p->workdir = o->workdir ? strdup(o->workdir) : NULL;
    p->state_dir = o->state_dir ? strdup(o->state_dir) : NULL;
    p->o.label = p->label;
    p->o.workspace = p->workspace;
    p->o.workdir = p->workdir;
    p->o.state_dir = p->state_dir;
    bool ok = true;
    p->ro_binds = strv_dup(o->ro_binds, &ok);
    p->rw_binds = strv_dup(o->rw_binds, &ok);
    p->o.ro_binds = (const char *const *)p->ro_binds;
    p->o.rw_binds = (const char *const *)p->rw_binds;
    if (!ok || pool_submit(pool, create_work, create_done, p) < 0) {
        pending_free(p);
        err_set(err, ENOMEM, "sandbox");
        return NULL;
    }
    return p;
}

void sbx_create_abandon(sbx_pending_t *p, sbx_gone_cb gone, void *arg)
{
    if (!p) return;
    p->abandoned = true;
    p->gone = gone;
    p->gone_arg = arg;
}



static void destroy_work(void *arg)
{
    destroy_job *d = arg;
    shed_err err = {0};
    if (sandbox_destroy(d->s->sb, d->grace_ms, &err) < 0)
        log_warn("destroy sandbox %s: %s", d->s->label, err.msg);
}

static void destroy_done(void *arg)
{
    destroy_job *d = arg;
    free(d->s);
    if (d->done) d->done(d->arg);
    free(d);
}

void sbx_destroy_async(pool_t *pool, sbx_t *s, int grace_ms, sbx_gone_cb done, void *arg)
{
    if (!s) return;
    if (s->egress) egress_detach(s->egress, s->label);
    s->egress = NULL;
    if (loop_has(s->loop, s->fd)) loop_del(s->loop, s->fd);
    ctl_reader_free(&s->rd);
    destroy_job *d = calloc(1, sizeof(*d));
    if (d) {
        d->s = s;
        d->grace_ms = grace_ms;
        d->done = done;
        d->arg = arg;
        if (pool_submit(pool, destroy_work, destroy_done, d) == 0) return;
        free(d);
    }
    /* No memory for a job: do it here. */
    shed_err err = {0};
    if (sandbox_destroy(s->sb, grace_ms, &err) < 0) log_warn("destroy sandbox %s: %s", s->label, err.msg);
    free(s);
    if (done) done(arg);
}

int sbx_call(sbx_t *s, uint64_t call_id, const char *tool, json_t *input, int64_t timeout_ms,
             shed_err *err)
{
    if (s->dead) return err_msg(err, EPIPE, "sandbox %s is gone", s->label);
    _cleanup_json_ json_t *m = json_pack("{s:s,s:I,s:s,s:O,s:I}", "type", "tool", "id",
                                         (json_int_t)call_id, "tool", tool, "input",
                                         input ? input : json_object(), "timeout_ms",
                                         (json_int_t)timeout_ms);
    if (!m) return err_set(err, ENOMEM, "tool request");
    return ctl_send(s->fd, m, NULL, 0, err);
}

int sbx_cancel(sbx_t *s, uint64_t call_id)
{
    if (s->dead) return -EPIPE;
    _cleanup_json_ json_t *m = json_pack("{s:s,s:I}", "type", "cancel", "id", (json_int_t)call_id);
    shed_err err = {0};
    return m ? ctl_send(s->fd, m, NULL, 0, &err) : -ENOMEM;
}

void sbx_destroy(sbx_t *s, int grace_ms)
{
    if (!s) return;
    if (s->egress) egress_detach(s->egress, s->label);
    s->egress = NULL;
    if (loop_has(s->loop, s->fd)) loop_del(s->loop, s->fd);
    ctl_reader_free(&s->rd);
    shed_err err = {0};
    if (sandbox_destroy(s->sb, grace_ms, &err) < 0)
        log_warn("destroy sandbox %s: %s", s->label, err.msg);
    free(s);
}

uid_t sbx_uid(const sbx_t *s)
{
    return sandbox_host_uid(s->sb);
}

pid_t sbx_pid(const sbx_t *s)
{
    return sandbox_init_pid(s->sb);
}

const char *sbx_describe(const sbx_t *s)
{
    return s->desc;
}
