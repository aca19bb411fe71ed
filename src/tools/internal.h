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

/* A path resolved and confined by tools_resolve(). */
typedef struct tools_target {
    char *real;      /* canonical absolute path (malloc'd) */
    size_t root;     /* index in t->roots */
    const char *rel; /* real relative to the root ("." for the root itself) */
} tools_target;

/* Results. text_result copies s; an empty text becomes "(no output)". */
json_t *tools_text_result(bool is_error, const char *s, size_t len);
json_t *tools_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

struct buf;
/* Paths (path.c). */
char *tools_path_normalize(const char *abs);
char *tools_path_resolve(const char *base, const char *rel);
bool tools_path_within(const char *root, const char *p);
int tools_canonicalize(const char *abs, char **out);
void tools_json_quote(struct buf *b, const char *s, size_t n);
const char *tools_errno_code(int e);
void tools_fs_error(struct buf *b, int e, const char *file);
json_t *tools_fs_error_result(const char *tool, int e, const char *file);
/* NULL on success (out filled), else the error result to return. */
json_t *tools_resolve(tools_t *t, const char *p, size_t plen, tools_target *out);
void tools_target_free(tools_target *tg);
/* The read-only root (as configured) that contains real, or NULL. */
const char *tools_read_only_root(tools_t *t, const char *real);
/* openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS) or an O_NOFOLLOW walk. fd or -errno. */
int tools_openat_beneath(int dirfd, const char *rel, int flags, mode_t mode);
int tools_open_target(tools_t *t, const tools_target *tg, int flags, mode_t mode);

/* UTF-8 (utf8.c): copy with each invalid sequence replaced by U+FFFD the way
 * WHATWG/Node decoders do (maximal subpart). */
int tools_utf8_sanitize(struct buf *out, const char *s, size_t n);
bool tools_utf8_valid(const char *s, size_t n);
/* Length in UTF-16 code units of valid UTF-8. */
size_t tools_utf16_len(const char *s, size_t n);

json_t *tools_bash_call(tools_t *t, json_t *input, int64_t deadline_ms, int cancel_fd);
void tools_bash_free(tools_bash *b);
json_t *tools_read(tools_t *t, json_t *input);
json_t *tools_write(tools_t *t, json_t *input);
json_t *tools_edit(tools_t *t, json_t *input);
json_t *tools_glob(tools_t *t, json_t *input);
json_t *tools_grep(tools_t *t, json_t *input, int64_t deadline_ms, int cancel_fd);
/* grep with ripgrep's semantics (grep_rg.c); tg NULL = the workdir. */
json_t *tools_grep_rg(tools_t *t, const char *rg, const char *pattern, size_t plen, const tools_target *tg,
                      int64_t timeout_ms, int cancel_fd);
/* What `rg --no-config --files --null --sort path -- dir` prints, computed
 * in-process (grep_rglist.c) when that is exact: 0 and the NUL-terminated
 * names in out; TOOLS_RGLIST_FALLBACK (why says what rg would have to
 * decide: an ignore file, .git, an error rg would print, a bound) or
 * -errno, out empty. dirfd: an fd of dir, the canonical absolute path. */
#define TOOLS_RGLIST_FALLBACK 1
int tools_rg_list(int dirfd, const char *dir, struct buf *out, const char **why);
