/* Sandbox bridge; see sbx.h. A bash call takes the direct path: init lends
 * the session's shell once (ctl.h "shell": its stdin and output fds) and
 * this file writes each call's bytes and reads the output itself, on the
 * loop, with the protocol of tools/bash_proto.h, so a call's bytes never
 * pass through init; init stays the shell's parent and kills it on
 * "shell_kill" (timeout, cancel, death, restart). Other tools go to init as
 * "tool" requests. Never trusts what the shell writes (bounded ring, bounded
 * reads per wake-up) nor the fds init passes (a pipe and a socket, checked).
 */
#include "worker/sbx.h"

#include "base/cleanup.h"
#include "base/log.h"
#include "sandbox/ctl.h"
#include "egress/egress.h"
#include "sandbox/sandbox.h"
#include "tools/bash_proto.h"
#include "worker/pool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* The session's shell lent by init, and the bash call on it. */
enum bash_phase {
    BP_IDLE,
    BP_OPENING, /* "shell" sent, waiting for the fds */
    BP_RUNNING, /* the command written / the output read on the loop */
    BP_KILLING, /* "shell_kill" sent; result delivered on "shell_killed" */
    BP_DELIVER, /* result delivered by a 0 ms timer (never inside sbx_call) */
};

typedef struct sbx_bash {
    int in, out;          /* the lent shell (socket write end, pipe read end); -1 = none */
    enum bash_phase phase;
    uint64_t id;          /* the call's */
    json_t *input;        /* held: req.cmd points into it */
    tools_bash_req req;
    tools_bash_run run;
    bool run_live;        /* run holds memory */
    bool cancelled;       /* sbx_cancel while OPENING */
    json_t *result;       /* KILLING/DELIVER: what to deliver */
    uint64_t timer;
    uint64_t limits_at_start;
} sbx_bash;

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
    sbx_bash bash;
    uint64_t limits;       /* "limit" messages received */
    char limit_text[256];  /* the last one, as the call's result says it */
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

static void bash_reset(sbx_t *s);

static void mark_dead(sbx_t *s, const char *why)
{
    if (s->dead) return;
    s->dead = true;
    bash_reset(s); /* on_dead answers the call */
    if (loop_has(s->loop, s->fd)) loop_del(s->loop, s->fd);
    if (s->on_dead) s->on_dead(s, why, s->arg);
}

static bool handle_msg(sbx_t *s, json_t *m, int *fds, int nfds);

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
        if (rc == -EAGAIN) return;
        if (rc < 0) {
            for (int i = 0; i < nfds; i++) close(fds[i]);
            mark_dead(s, rc == -EPIPE ? "sandbox init exited" : err.msg);
            return;
        }
        bool dead = handle_msg(s, msg, fds, nfds); /* takes the fds */
        json_decref(msg);
        if (dead) return;
    }
}

static bool bash_on_shell(sbx_t *s, uint64_t id, int *fds, int nfds);
static bool bash_on_killed(sbx_t *s, uint64_t id);
static void bash_on_limit(sbx_t *s, json_t *m);

/* Returns true when s may be gone (a callback ran). Takes the fds. */
static bool handle_msg(sbx_t *s, json_t *m, int *fds, int nfds)
{
    const char *type = json_string_value(json_object_get(m, "type"));
    json_t *idj = json_object_get(m, "id");
    uint64_t id = json_is_integer(idj) ? (uint64_t)json_integer_value(idj) : 0;
    if (type && !strcmp(type, "shell")) return bash_on_shell(s, id, fds, nfds);
    for (int i = 0; i < nfds; i++) close(fds[i]);
    if (!type) return false;
    if (!strcmp(type, "shell_killed")) return bash_on_killed(s, id);
    if (!strcmp(type, "error") && s->bash.phase != BP_IDLE && s->bash.id == id)
        bash_reset(s); /* the shell could not be lent: the error is the call's result */
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
        bash_on_limit(s, m);
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
    s->bash.in = s->bash.out = -1;
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
    bash_reset(s);
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

static int bash_call(sbx_t *s, uint64_t call_id, json_t *input, int64_t timeout_ms, shed_err *err);

int sbx_call(sbx_t *s, uint64_t call_id, const char *tool, json_t *input, int64_t timeout_ms,
             shed_err *err)
{
    if (s->dead) return err_msg(err, EPIPE, "sandbox %s is gone", s->label);
    if (!strcmp(tool, "bash")) return bash_call(s, call_id, input, timeout_ms, err);
    _cleanup_json_ json_t *m = json_pack("{s:s,s:I,s:s,s:O,s:I}", "type", "tool", "id",
                                         (json_int_t)call_id, "tool", tool, "input",
                                         input ? input : json_object(), "timeout_ms",
                                         (json_int_t)timeout_ms);
    if (!m) return err_set(err, ENOMEM, "tool request");
    return ctl_send(s->fd, m, NULL, 0, err);
}

static int bash_cancel(sbx_t *s);

int sbx_cancel(sbx_t *s, uint64_t call_id)
{
    if (s->dead) return -EPIPE;
    if (s->bash.phase != BP_IDLE && s->bash.id == call_id) return bash_cancel(s);
    _cleanup_json_ json_t *m = json_pack("{s:s,s:I}", "type", "cancel", "id", (json_int_t)call_id);
    shed_err err = {0};
    return m ? ctl_send(s->fd, m, NULL, 0, &err) : -ENOMEM;
}

void sbx_destroy(sbx_t *s, int grace_ms)
{
    if (!s) return;
    bash_reset(s);
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

/* ---- bash, the direct path (see the top of this file) ---- */

/* Reads of the shell's output: one loop thread, one buffer. */
static char bash_chunk[TOOLS_BASH_CHUNK];

static void bash_unwatch(sbx_t *s)
{
    sbx_bash *b = &s->bash;
    if (b->out >= 0 && loop_has(s->loop, b->out)) loop_del(s->loop, b->out);
    if (b->in >= 0 && loop_has(s->loop, b->in)) loop_del(s->loop, b->in);
}

static void bash_close_shell(sbx_t *s)
{
    sbx_bash *b = &s->bash;
    bash_unwatch(s);
    if (b->in >= 0) close(b->in);
    if (b->out >= 0) close(b->out);
    b->in = b->out = -1;
}

/* The call's timer and protocol state gone (the shell untouched). */
static void bash_stop_run(sbx_t *s)
{
    sbx_bash *b = &s->bash;
    if (b->timer) loop_timer_cancel(s->loop, b->timer);
    b->timer = 0;
    if (b->run_live) tools_bash_run_free(&b->run);
    b->run_live = false;
}

/* Forget the call in progress (no callback). The shell stays. */
static void bash_clear_call(sbx_t *s)
{
    sbx_bash *b = &s->bash;
    bash_unwatch(s);
    bash_stop_run(s);
    json_decref(b->input);
    b->input = NULL;
    json_decref(b->result);
    b->result = NULL;
    b->cancelled = false;
    b->phase = BP_IDLE;
}

/* Forget the call and the shell (the sandbox is going, or the shell's
 * state is unknown: the next call asks for a fresh one). */
static void bash_reset(sbx_t *s)
{
    bash_clear_call(s);
    bash_close_shell(s);
}

/* The call's result to the caller; may free s. */
static void bash_deliver(sbx_t *s, json_t *res)
{
    sbx_bash *b = &s->bash;
    uint64_t id = b->id;
    if (res && s->limits != b->limits_at_start) {
        /* a workspace limit killed the call's processes: say why, as init
         * says it for a tool call */
        json_t *content = json_object_get(res, "content");
        if (json_is_array(content)) {
            json_array_append_new(content, json_pack("{s:s,s:s}", "type", "text", "text", s->limit_text));
            json_object_set_new(res, "is_error", json_true());
        }
    }
    bash_clear_call(s);
    if (!res)
        res = json_pack("{s:b,s:[{s:s,s:s}]}", "is_error", 1, "content", "type", "text", "text",
                        "bash: out of memory");
    if (res && s->on_result) s->on_result(s, id, res, s->arg);
    json_decref(res);
}

static void bash_on_deliver_timer(loop_t *l, void *arg)
{
    (void)l;
    sbx_t *s = arg;
    s->bash.timer = 0;
    json_t *res = s->bash.result;
    s->bash.result = NULL;
    bash_deliver(s, res);
}

/* Deliver res on the next loop turn (never inside sbx_call). */
static int bash_deliver_later(sbx_t *s, json_t *res)
{
    sbx_bash *b = &s->bash;
    b->phase = BP_DELIVER;
    b->result = res;
    b->timer = loop_timer(s->loop, 0, bash_on_deliver_timer, s);
    if (!b->timer) {
        bash_clear_call(s);
        return -ENOMEM;
    }
    return 0;
}

/* The shell is done for (timeout, cancel, death, restart): close our ends,
 * have init kill its group, deliver res once init says it is gone. Never
 * calls back itself: a channel that broke is noticed by on_ctl (mark_dead:
 * on_dead answers the call), one that stays full by the caller's own
 * deadline. */
static void bash_kill_then(sbx_t *s, json_t *res)
{
    sbx_bash *b = &s->bash;
    bash_close_shell(s);
    bash_stop_run(s);
    json_decref(b->result);
    b->result = res;
    b->phase = BP_KILLING;
    _cleanup_json_ json_t *m = json_pack("{s:s,s:I}", "type", "shell_kill", "id", (json_int_t)b->id);
    shed_err err = {0};
    if (!m || ctl_send(s->fd, m, NULL, 0, &err) < 0)
        log_warn("sandbox %s: ask init to kill the shell: %s", s->label, m ? err.msg : "out of memory");
}

static void bash_end(sbx_t *s, enum tools_bash_end end)
{
    bash_kill_then(s, tools_bash_end_result(end, &s->bash.req));
}

static bool bash_on_killed(sbx_t *s, uint64_t id)
{
    sbx_bash *b = &s->bash;
    if (b->phase != BP_KILLING || b->id != id) return false; /* a call given up on */
    json_t *res = b->result;
    b->result = NULL;
    bash_deliver(s, res);
    return true;
}

static void bash_on_limit(sbx_t *s, json_t *m)
{
    const char *what = json_string_value(json_object_get(m, "what"));
    unsigned long long used = (unsigned long long)json_integer_value(json_object_get(m, "used"));
    unsigned long long max = (unsigned long long)json_integer_value(json_object_get(m, "max"));
    if (what && !strcmp(what, "files"))
        snprintf(s->limit_text, sizeof(s->limit_text),
                 "shed: the workspace holds more than %llu files and directories "
                 "(its limit); every process of the sandbox was killed", max);
    else if (what && !strcmp(what, "unreadable"))
        snprintf(s->limit_text, sizeof(s->limit_text),
                 "shed: the workspace holds a directory its size watchdog cannot "
                 "read (not owned by the sandbox user, or deeper than 512 levels); every process "
                 "of the sandbox was killed");
    else
        snprintf(s->limit_text, sizeof(s->limit_text),
                 "shed: the workspace grew over its limit (%llu > %llu bytes); "
                 "every process of the sandbox was killed", used, max);
    s->limits++;
}

static void bash_on_timeout(loop_t *l, void *arg)
{
    (void)l;
    sbx_t *s = arg;
    s->bash.timer = 0;
    bash_end(s, TOOLS_BASH_TIMEOUT);
}

static void bash_on_out(loop_t *l, int fd, uint32_t events, void *arg);

/* Write what the shell's socket takes now; watch it for more when needed. */
static void bash_write(sbx_t *s)
{
    sbx_bash *b = &s->bash;
    tools_bash_run *r = &b->run;
    while (r->sent < r->in.len) {
        ssize_t w = send(b->in, r->in.data + r->sent, r->in.len - r->sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            r->sent += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) break;
        r->sent = r->in.len; /* the shell is gone: its output will end */
    }
    bool more = r->sent < r->in.len;
    if (more && !loop_has(s->loop, b->in)) {
        if (loop_add(s->loop, b->in, EPOLLOUT, bash_on_out, s) < 0) r->sent = r->in.len;
    } else if (!more && loop_has(s->loop, b->in)) {
        loop_del(s->loop, b->in);
    }
}

/* Both fds of the running call: output readable, or the socket writable. */
static void bash_on_out(loop_t *l, int fd, uint32_t events, void *arg)
{
    (void)l;
    (void)events;
    sbx_t *s = arg;
    sbx_bash *b = &s->bash;
    if (b->phase != BP_RUNNING) return;
    if (fd == b->in) {
        bash_write(s);
        return;
    }
    /* a few chunks per wake-up: a flood (`yes &`) cannot starve the loop */
    for (int i = 0; i < TOOLS_BASH_READS_WAKE; i++) {
        ssize_t r = read(b->out, bash_chunk, sizeof(bash_chunk));
        if (r > 0) {
            if (tools_bash_run_feed(&b->run, bash_chunk, (size_t)r)) {
                json_t *res = tools_bash_run_result(&b->run);
                bash_deliver(s, res);
                return;
            }
            continue;
        }
        if (r == 0) return bash_end(s, TOOLS_BASH_DIED);
        if (errno == EINTR) continue;
        if (errno == EAGAIN) return;
        return bash_end(s, TOOLS_BASH_FAIL);
    }
}

/* The shell is ours: drain stale output, write the command, watch. */
static void bash_run(sbx_t *s)
{
    sbx_bash *b = &s->bash;
    /* whatever a background job printed since the last call is not this call's */
    for (int i = 0; i < TOOLS_BASH_DRAIN_READS && read(b->out, bash_chunk, sizeof(bash_chunk)) > 0; i++) {
    }
    if (tools_bash_run_start(&b->run, &b->req) < 0) {
        bash_end(s, TOOLS_BASH_FAIL);
        return;
    }
    b->run_live = true;
    b->phase = BP_RUNNING;
    b->timer = loop_timer(s->loop, b->req.timeout_ms, bash_on_timeout, s);
    if (!b->timer || loop_add(s->loop, b->out, EPOLLIN, bash_on_out, s) < 0) {
        bash_end(s, TOOLS_BASH_FAIL);
        return;
    }
    bash_write(s);
}

/* A fd init passed for the shell: a pipe (out) or a socket (in), nothing else. */
static bool bash_fd_ok(int fd, bool sock)
{
    struct stat st;
    if (fstat(fd, &st) < 0) return false;
    if (sock ? !S_ISSOCK(st.st_mode) : !S_ISFIFO(st.st_mode)) return false;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || (sock ? (fl & O_ACCMODE) != O_RDWR : (fl & O_ACCMODE) != O_RDONLY)) return false;
    if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return false;
    return true;
}

static bool bash_on_shell(sbx_t *s, uint64_t id, int *fds, int nfds)
{
    sbx_bash *b = &s->bash;
    if (b->phase != BP_OPENING || b->id != id || nfds != 2 || !bash_fd_ok(fds[0], true) ||
        !bash_fd_ok(fds[1], false)) {
        for (int i = 0; i < nfds; i++) close(fds[i]);
        if (b->phase == BP_OPENING && b->id == id) {
            /* not what ctl.h says: the shell is unusable */
            log_warn("sandbox %s lent its shell with %d unexpected fds", s->label, nfds);
            bash_end(s, TOOLS_BASH_FAIL);
            return true;
        }
        return false;
    }
    bash_close_shell(s);
    b->in = fd_high(fds[0]);
    b->out = fd_high(fds[1]);
    if (b->cancelled) {
        bash_end(s, TOOLS_BASH_CANCEL);
        return true;
    }
    bash_run(s);
    return true;
}

static int bash_call(sbx_t *s, uint64_t call_id, json_t *input, int64_t timeout_ms, shed_err *err)
{
    sbx_bash *b = &s->bash;
    /* a call the caller gave up on: the shell's state is unknown */
    if (b->phase != BP_IDLE) bash_reset(s);
    json_t *empty = NULL;
    if (!input || json_is_null(input)) input = empty = json_object();
    if (!input) return err_set(err, ENOMEM, "bash call");
    b->id = call_id;
    b->limits_at_start = s->limits;
    b->input = json_incref(input);
    json_decref(empty);
    json_t *res = tools_bash_parse(b->input, timeout_ms, 120000, &b->req);
    if (b->req.restart) {
        if (!res) {
            /* a fresh shell for the command: "shell" kills the old one */
            bash_close_shell(s);
        } else {
            bash_kill_then(s, res);
            return 0;
        }
    }
    if (res) {
        if (bash_deliver_later(s, res) < 0) return err_set(err, ENOMEM, "bash call");
        return 0;
    }
    if (b->in >= 0) {
        bash_run(s);
        return 0;
    }
    b->phase = BP_OPENING;
    _cleanup_json_ json_t *m = json_pack("{s:s,s:I}", "type", "shell", "id", (json_int_t)call_id);
    if (!m) {
        bash_clear_call(s);
        return err_set(err, ENOMEM, "bash call");
    }
    int rc = ctl_send(s->fd, m, NULL, 0, err);
    if (rc < 0) bash_clear_call(s);
    return rc;
}

static int bash_cancel(sbx_t *s)
{
    sbx_bash *b = &s->bash;
    if (b->phase == BP_OPENING) {
        b->cancelled = true; /* ended when the fds arrive */
    } else if (b->phase == BP_RUNNING) {
        bash_end(s, TOOLS_BASH_CANCEL);
    }
    return 0;
}
