/* Sandbox bridge; see sbx.h. */
#include "worker/sbx.h"

#include "base/cleanup.h"
#include "base/log.h"
#include "sandbox/ctl.h"
#include "sandbox/sandbox.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Until the sandbox runtime is merged these resolve to NULL and the worker
 * refuses to start with a message saying so (it never runs tools outside a
 * sandbox). */
#pragma weak sandbox_policy_load
#pragma weak sandbox_policy_free
#pragma weak sandbox_create
#pragma weak sandbox_ctl_fd
#pragma weak sandbox_init_pid
#pragma weak sandbox_host_uid
#pragma weak sandbox_destroy
#pragma weak sandbox_reconcile
#pragma weak ctl_send
#pragma weak ctl_recv

struct sbx {
    loop_t *loop;
    sandbox_t *sb;
    int fd;
    bool dead;
    sbx_result_cb on_result;
    sbx_dead_cb on_dead;
    void *arg;
    char label[160];
    char desc[512];
};

int sbx_available(shed_err *err)
{
    if (!sandbox_create || !ctl_send || !ctl_recv || !sandbox_policy_load)
        return err_msg(err, ENOSYS,
                       "the sandbox runtime (src/sandbox, issue: sandbox) is not built into this "
                       "binary; shed never runs a tool outside a sandbox");
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
    if (p && sandbox_policy_free) sandbox_policy_free(p);
}

int sbx_reconcile(const char *state_dir, shed_err *err)
{
    if (!sandbox_reconcile) return 0;
    return sandbox_reconcile(state_dir, err);
}

static void mark_dead(sbx_t *s, const char *why)
{
    if (s->dead) return;
    s->dead = true;
    if (loop_has(s->loop, s->fd)) loop_del(s->loop, s->fd);
    if (s->on_dead) s->on_dead(s, why, s->arg);
}

static void on_ctl(loop_t *l, int fd, uint32_t events, void *arg)
{
    (void)l;
    sbx_t *s = arg;
    if (!(events & EPOLLIN)) {
        mark_dead(s, "control channel closed");
        return;
    }
    json_t *msg = NULL;
    int fds[CTL_MAX_FDS];
    int nfds = 0;
    shed_err err = {0};
    int rc = ctl_recv(fd, &msg, fds, &nfds, &err);
    for (int i = 0; i < nfds; i++) close(fds[i]); /* egress listeners: not served here yet */
    if (rc < 0) {
        mark_dead(s, rc == -EPIPE ? "sandbox init exited" : err.msg);
        return;
    }
    _cleanup_json_ json_t *m = msg;
    const char *type = json_string_value(json_object_get(m, "type"));
    json_t *idj = json_object_get(m, "id");
    uint64_t id = json_is_integer(idj) ? (uint64_t)json_integer_value(idj) : 0;
    if (!type) return;
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
    } else if (!strcmp(type, "error")) {
        const char *msgs = json_string_value(json_object_get(m, "message"));
        json_t *res = json_pack("{s:b,s:[{s:s,s:s}]}", "is_error", 1, "content", "type", "text",
                                "text", msgs && *msgs ? msgs : "sandbox error");
        if (res && s->on_result) s->on_result(s, id, res, s->arg);
        json_decref(res);
    }
    /* "ready", "exit", others: nothing to do for the worker. */
}

int sbx_create(const sbx_opts *o, sbx_t **out, shed_err *err)
{
    int rc = sbx_available(err);
    if (rc < 0) return rc;
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
    };
    rc = sandbox_create(o->policy, &so, &s->sb, err);
    if (rc < 0) {
        free(s);
        return rc;
    }
    s->fd = sandbox_ctl_fd(s->sb);
    rc = loop_add(o->loop, s->fd, EPOLLIN, on_ctl, s);
    if (rc < 0) {
        sandbox_destroy(s->sb, 0, NULL);
        free(s);
        return err_set(err, -rc, "watch the sandbox control channel");
    }
    snprintf(s->desc, sizeof(s->desc), "init pid %d, host uid %u, workspace %s at %s",
             (int)sandbox_init_pid(s->sb), (unsigned)sandbox_host_uid(s->sb), o->workspace,
             so.workdir);
    *out = s;
    return 0;
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
    if (loop_has(s->loop, s->fd)) loop_del(s->loop, s->fd);
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
