/* The toolset's entry points: configuration, the dispatcher and result
 * helpers. Runs inside the sandbox's init; never trusts a name or an input:
 * an unknown tool or a malformed input is an error result, never a crash. */
#include "tools/tools.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/cleanup.h"
#include "tools/internal.h"

json_t *tools_text_result(bool is_error, const char *s, size_t len)
{
    if (!s || len == 0) {
        s = "(no output)";
        len = strlen(s);
    }
    /* a file name or any byte from outside may be invalid UTF-8: never let
     * it into the JSON (Node decodes such bytes to U+FFFD too) */
    json_t *text;
    if (tools_utf8_valid(s, len))
        text = json_stringn_nocheck(s, len);
    else {
        buf_t b;
        buf_init(&b, 0);
        tools_utf8_sanitize(&b, s, len);
        text = json_stringn_nocheck(b.data ? b.data : "", b.len);
        buf_free(&b);
    }
    json_t *block = json_pack("{s:s, s:o}", "type", "text", "text", text);
    return json_pack("{s:b, s:[o]}", "is_error", is_error, "content", block);
}

json_t *tools_errorf(const char *fmt, ...)
{
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return tools_text_result(true, msg, strlen(msg));
}

static void free_strv(char **v)
{
    if (!v) return;
    for (char **p = v; *p; p++) free(*p);
    free(v);
}

static char **dup_strv(const char *const *v, size_t *n)
{
    size_t c = 0;
    if (v)
        while (v[c]) c++;
    char **out = calloc(c + 1, sizeof(*out));
    if (!out) return NULL;
    for (size_t i = 0; i < c; i++)
        if (!(out[i] = strdup(v[i]))) {
            free_strv(out);
            return NULL;
        }
    if (n) *n = c;
    return out;
}

extern char **environ;

/* The bash environment: cfg->env (or ours) minus every ANTHROPIC_* variable
 * in any letter case, plus PS1= PS2= TERM=dumb. */
static char **bash_env(char *const *env)
{
    if (!env) env = environ;
    size_t n = 0;
    while (env[n]) n++;
    char **out = calloc(n + 4, sizeof(*out));
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        const char *e = env[i];
        if (!strncasecmp(e, "ANTHROPIC_", 10)) continue;
        if (!strncmp(e, "PS1=", 4) || !strncmp(e, "PS2=", 4) || !strncmp(e, "TERM=", 5)) continue;
        if (!strchr(e, '=')) continue;
        if (!(out[o++] = strdup(e))) {
            free_strv(out);
            return NULL;
        }
    }
    const char *extra[] = {"PS1=", "PS2=", "TERM=dumb"};
    for (size_t i = 0; i < 3; i++)
        if (!(out[o++] = strdup(extra[i]))) {
            free_strv(out);
            return NULL;
        }
    return out;
}

static int add_root(tools_t *t, const char *path, shed_err *err)
{
    if (!path || path[0] != '/') return err_msg(err, EINVAL, "tools_new: root '%s' must be an absolute path", path ? path : "");
    tools_root *r = &t->roots[t->nroots];
    r->fd = -1;
    r->path = tools_path_normalize(path);
    if (!r->path) return err_set(err, ENOMEM, "tools_new");
    t->nroots++;
    char *real = realpath(r->path, NULL);
    if (!real) return t->nroots == 1 ? err_set(err, errno, "tools_new: workdir %s", path) : 0;
    int fd = open(real, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        free(real);
        return t->nroots == 1 ? err_set(err, e, "tools_new: open workdir %s", path) : 0;
    }
    r->real = real;
    r->fd = fd;
    return 0;
}

int tools_new(const tools_config *cfg, tools_t **out, shed_err *err)
{
    if (!cfg || !cfg->workdir || cfg->workdir[0] != '/')
        return err_msg(err, EINVAL, "tools_new: workdir must be an absolute path");
    tools_t *t = calloc(1, sizeof(*t));
    if (!t) return err_set(err, ENOMEM, "tools_new");
    t->default_timeout_ms = cfg->default_timeout_ms > 0 ? cfg->default_timeout_ms : 120000;
    size_t nallowed = 0;
    if (cfg->allowed_roots)
        while (cfg->allowed_roots[nallowed]) nallowed++;
    t->roots = calloc(nallowed + 1, sizeof(*t->roots));
    t->ro_roots = dup_strv(cfg->read_only_roots, &t->nro_roots);
    t->env = bash_env(cfg->env);
    if (!t->roots || !t->ro_roots || !t->env) {
        tools_free(t);
        return err_set(err, ENOMEM, "tools_new");
    }
    int rc = add_root(t, cfg->workdir, err);
    for (size_t i = 0; rc == 0 && i < nallowed; i++) rc = add_root(t, cfg->allowed_roots[i], err);
    if (rc < 0) {
        tools_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void tools_free(tools_t *t)
{
    if (!t) return;
    if (t->bash) tools_bash_free(t->bash);
    for (size_t i = 0; i < t->nroots; i++) {
        free(t->roots[i].path);
        free(t->roots[i].real);
        if (t->roots[i].fd >= 0) close(t->roots[i].fd);
    }
    free(t->roots);
    free_strv(t->ro_roots);
    free_strv(t->env);
    free(t);
}

json_t *tools_call(tools_t *t, const char *name, json_t *input, int64_t timeout_ms, int cancel_fd)
{
    if (!t) return tools_errorf("tools: not initialised");
    if (!name) return tools_errorf("tool name is required");
    json_t *empty = NULL;
    if (!input || json_is_null(input)) input = empty = json_object();
    if (!json_is_object(input)) return tools_errorf("%s: input must be an object", name);
    json_t *res;
    if (!strcmp(name, "bash"))
        res = tools_bash_call(t, input, timeout_ms, cancel_fd);
    else if (!strcmp(name, "read"))
        res = tools_read(t, input);
    else if (!strcmp(name, "write"))
        res = tools_write(t, input);
    else if (!strcmp(name, "edit"))
        res = tools_edit(t, input);
    else if (!strcmp(name, "glob"))
        res = tools_glob(t, input);
    else if (!strcmp(name, "grep"))
        res = tools_grep(t, input, timeout_ms, cancel_fd);
    else
        res = tools_errorf("unknown tool: %s", name);
    if (empty) json_decref(empty);
    return res ? res : tools_errorf("%s: out of memory", name);
}
