/* Internals shared by the tool implementations in src/tools. Not part of
 * the contract: callers use tools.h only. */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tools/tools.h"

/* One confinement root: the workdir or an allowed root, opened O_PATH. */
typedef struct tools_root {
    char *path;     /* as configured, absolute, normalised (no trailing '/') */
    char *real;     /* canonical (symlinks resolved at tools_new time) */
    int fd;         /* O_PATH|O_DIRECTORY of real */
    bool read_only; /* write/edit refused */
} tools_root;

typedef struct tools_bash tools_bash;

struct tools {
    tools_root *roots; /* roots[0] is the workdir */
    size_t nroots;
    char **ro_roots;   /* read-only roots as configured (for the error text) */
    size_t nro_roots;
    char **env;        /* bash environment, ANTHROPIC_* removed, PS1/PS2/TERM set */
    int64_t default_timeout_ms;
    tools_bash *bash;  /* NULL until the first bash call */
};

/* Results. text_result copies s; an empty text becomes "(no output)". */
json_t *tools_text_result(bool is_error, const char *s, size_t len);
json_t *tools_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

json_t *tools_bash_call(tools_t *t, json_t *input, int64_t deadline_ms, int cancel_fd);
void tools_bash_free(tools_bash *b);
