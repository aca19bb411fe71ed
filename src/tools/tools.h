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

#include "base/err.h"

typedef struct tools tools_t;

typedef struct tools_config {
    const char *workdir;                   /* absolute, e.g. "/workspace" */
    const char *const *allowed_roots;      /* extra roots (memory stores); NULL-terminated */
    const char *const *read_only_roots;    /* write/edit refused under these */
    char *const *env;                      /* bash environment (ANTHROPIC_* removed by tools) */
    int64_t default_timeout_ms;            /* bash default: 120000 */
} tools_config;

int tools_new(const tools_config *cfg, tools_t **out, shed_err *err);
void tools_free(tools_t *t); /* kills the persistent bash */

/* Run one call. Returns a new object {"is_error":bool,"content":[blocks...]},
 * never NULL, never an empty text (the reference's "(no output)"). If
 * cancel_fd >= 0 becomes readable during the call, the call is aborted and
 * an error result returned. An unknown tool or bad input is an error result. */
json_t *tools_call(tools_t *t, const char *name, json_t *input, int64_t timeout_ms, int cancel_fd);
