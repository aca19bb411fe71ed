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

#include "base/cleanup.h"
#include "tools/internal.h"

json_t *tools_text_result(bool is_error, const char *s, size_t len)
{
    if (!s || len == 0) {
        s = "(no output)";
        len = strlen(s);
    }
    json_t *text = json_stringn_nocheck(s, len);
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

int tools_new(const tools_config *cfg, tools_t **out, shed_err *err)
{
    if (!cfg || !cfg->workdir || cfg->workdir[0] != '/')
        return err_msg(err, EINVAL, "tools_new: workdir must be an absolute path");
    tools_t *t = calloc(1, sizeof(*t));
    if (!t) return err_set(err, ENOMEM, "tools_new");
    t->default_timeout_ms = cfg->default_timeout_ms > 0 ? cfg->default_timeout_ms : 120000;
    t->roots = calloc(1, sizeof(*t->roots));
    if (!t->roots) {
        tools_free(t);
        return err_set(err, ENOMEM, "tools_new");
    }
    t->nroots = 1;
    t->roots[0].fd = -1;
    t->roots[0].path = strdup(cfg->workdir);
    if (!t->roots[0].path) {
        tools_free(t);
        return err_set(err, ENOMEM, "tools_new");
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
    (void)timeout_ms;
    (void)cancel_fd;
    if (!t) return tools_errorf("tools: not initialised");
    if (!name) return tools_errorf("tool name is required");
    if (input && !json_is_object(input)) return tools_errorf("%s: input must be an object", name);
    static const char *const known[] = {"bash", "read", "write", "edit", "glob", "grep"};
    for (size_t i = 0; i < ARRAY_SIZE(known); i++)
        if (!strcmp(name, known[i])) return tools_errorf("%s: not available yet", name);
    return tools_errorf("unknown tool: %s", name);
}

/* Placeholder until bash.c lands in the next commit. */
json_t *tools_bash_call(tools_t *t, json_t *input, int64_t deadline_ms, int cancel_fd)
{
    (void)t, (void)input, (void)deadline_ms, (void)cancel_fd;
    return tools_errorf("bash: not available yet");
}
void tools_bash_free(tools_bash *b)
{
    (void)b;
}
