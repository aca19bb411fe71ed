/* The agent toolset (bash, read, write, edit, glob, grep), run inside the
 * sandbox by init as the sandbox user. Behaves like the reference toolset in
 * @anthropic-ai/sdk (tools/agent-toolset/node.ts); deviations are listed in
 * docs/toolset.md. Knows nothing of the worker or the protocol; never trusts
 * a path: file tools are confined with openat2(RESOLVE_BENEATH) or an
 * O_NOFOLLOW walk, never string prefix checks.
 */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/err.h"

typedef struct tools tools_t;

typedef struct tools_config {
    const char *workdir;                   /* absolute, e.g. "/workspace"; must exist */
    const char *const *allowed_roots;      /* extra roots (memory stores); NULL-terminated;
                                              may appear later (opened on first use) */
    const char *const *read_only_roots;    /* write/edit refused under these */
    char *const *env;                      /* bash (and rg) environment; NULL = this process's.
                                              ANTHROPIC_* (any case) removed, PS1= PS2=
                                              TERM=dumb added by tools; its PATH decides rg */
    int64_t default_timeout_ms;            /* bash default: 120000 (<= 0 = that) */
} tools_config;

int tools_new(const tools_config *cfg, tools_t **out, shed_err *err);
void tools_free(tools_t *t); /* kills the persistent bash */

/* Run one call, synchronously. Returns a new object {"is_error":bool,
 * "content":[blocks...]}, never NULL, never an empty text (the reference's
 * "(no output)"); a text may contain U+0000 (use json_string_length).
 * timeout_ms > 0 is bash's timeout for a call whose input has no timeout_ms
 * (else cfg->default_timeout_ms), and caps grep's walker (else 60 s).
 * If cancel_fd >= 0 becomes readable (or hangs up) during bash or grep, the
 * call is aborted: bash's process group is killed (the next call gets a new
 * shell) and the result is "bash: This operation was aborted" / "grep:
 * aborted". read/write/edit/glob are bounded and do not watch cancel_fd.
 * An unknown tool or bad input is an error result. The persistent bash is a
 * child of the caller, in its own session and process group; tools reaps it
 * itself when it ends during a call. A shell that dies between calls (and is
 * reaped by the caller's waitpid(-1)) is noticed at the next call, which then
 * says "bash: bash session terminated", as the reference does. */
json_t *tools_call(tools_t *t, const char *name, json_t *input, int64_t timeout_ms, int cancel_fd);

/* The persistent bash lent to a caller that drives it itself (the worker's
 * direct path, bash_proto.h): kills the current shell (lent or not), starts
 * a fresh one and hands out its stdin (a socket, write end) and its merged
 * stdout/stderr (a pipe, read end), both O_NONBLOCK|O_CLOEXEC, the caller's
 * to close. tools keeps the process: it never touches those fds again,
 * kills the shell's process group on tools_bash_kill, on a bash tools_call
 * (which takes the session back with a fresh shell) and on tools_free. */
int tools_bash_lend(tools_t *t, int *in, int *out, pid_t *pid, shed_err *err);
/* SIGKILL the shell's process group and reap it; the next bash call starts
 * a fresh shell. No-op without a shell. */
void tools_bash_kill(tools_t *t);
