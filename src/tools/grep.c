/* The grep tool. Like the reference: ripgrep's semantics when an `rg` is on
 * the tools' PATH (and does not live inside a root the agent can write;
 * grep_rg.c: rg or grep_rglist.c names the files, shed opens and searches
 * them), else shed's own walker with the reference's rules: .git and
 * node_modules skipped, symlinks and special files skipped, files read in 64 KiB chunks and cut
 * into lines at \n, \r\n and \r (Node's readline), a chunk holding a NUL ends
 * the file after its complete lines, lines over 2000 UTF-16 units skipped,
 * output "path:line:text" capped at 100 KiB with the reference's marker.
 * The regex is PCRE2 with the options closest to JavaScript's RegExp
 * (docs/toolset.md lists what still differs); invalid-pattern messages use
 * V8's wording where PCRE2 reports the same fault. Never reads a file
 * through a symlink; never holds more than the output cap.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pcre2.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/cleanup.h"
#include "base/clock.h"
#include "tools/internal.h"

#define GREP_OUTPUT_LIMIT (100 * 1024)
#define GREP_TIMEOUT_MS 60000
#define GREP_MAX_LINE_LENGTH 2000
#define GREP_CHUNK (64 * 1024)
#define WALK_MAX_DEPTH 40
#define WALK_MAX_ENTRIES 50000

typedef struct search {
    pcre2_code *re;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    buf_t hits;        /* lines joined by '\n' */
    size_t nhits;
    long budget;       /* UTF-16 units left, as the reference counts */
    bool full;         /* truncated: stop */
    bool cut;          /* deadline or cancel: stop */
    bool cancelled;
    int64_t deadline;  /* clock_mono_ms */
    int cancel_fd;
    long remaining;    /* walk entries */
    size_t checks;
} search_t;

static bool stop_now(search_t *s)
{
    if (s->full || s->cut) return true;
    if ((++s->checks & 63) != 0) return false;
    if (clock_mono_ms() >= s->deadline) s->cut = true;
    if (s->cancel_fd >= 0) {
        struct pollfd p = {.fd = s->cancel_fd, .events = POLLIN};
        if (poll(&p, 1, 0) > 0) s->cut = s->cancelled = true;
    }
    return s->cut;
}

static bool push_hit(search_t *s, const char *file, unsigned long n, const char *line, size_t len)
{
    char num[32];
    int nl = snprintf(num, sizeof(num), ":%lu:", n);
    size_t flen = strlen(file);
    s->budget -= (long)(tools_utf16_len(file, flen) + (size_t)nl + tools_utf16_len(line, len) + 1);
    if (s->hits.len) buf_putc(&s->hits, '\n');
    if (s->budget < 0) {
        buf_printf(&s->hits, "[output truncated at %d bytes]", GREP_OUTPUT_LIMIT);
        s->nhits++;
        s->full = true;
        return false;
    }
    buf_append(&s->hits, file, flen);
    buf_append(&s->hits, num, (size_t)nl);
    buf_append(&s->hits, line, len);
    s->nhits++;
    return true;
}

/* One line: skip if too long, else match and record. false = stop the file. */
static bool grep_line(search_t *s, const char *file, unsigned long n, const char *raw, size_t len, buf_t *tmp)
{
    buf_reset(tmp);
    if (tools_utf8_sanitize(tmp, raw, len) < 0) return false;
    const char *line = tmp->data ? tmp->data : "";
    if (tools_utf16_len(line, tmp->len) > GREP_MAX_LINE_LENGTH) return true;
    int rc = pcre2_match(s->re, (PCRE2_SPTR)line, tmp->len, 0, PCRE2_NO_UTF_CHECK, s->md, s->mctx);
    if (rc >= 0) return push_hit(s, file, n, line, tmp->len);
    if (rc == PCRE2_ERROR_NOMATCH) return true;
    return false; /* match limit: the reference stops at a line its regex fails on */
}

static void grep_file(search_t *s, int fd, const char *file)
{
    _cleanup_free_ char *chunk = malloc(GREP_CHUNK);
    _cleanup_buf_ buf_t line, tmp;
    buf_init(&line, GREP_MAX_LINE_LENGTH * 4 + 16); /* longer lines are skipped anyway */
    buf_init(&tmp, 0);
    if (!chunk) return;
    unsigned long n = 0;
    bool too_long = false, skip_lf = false;
    for (;;) {
        ssize_t r = read(fd, chunk, GREP_CHUNK);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        bool nul = memchr(chunk, 0, (size_t)r) != NULL;
        for (ssize_t i = 0; i < r; i++) {
            char c = chunk[i];
            if (skip_lf) {
                skip_lf = false;
                if (c == '\n') continue;
            }
            if (c == '\n' || c == '\r') {
                n++;
                if (!too_long && !grep_line(s, file, n, line.data ? line.data : "", line.len, &tmp)) return;
                buf_reset(&line);
                too_long = false;
                if (c == '\r') skip_lf = true;
                if (stop_now(s)) return;
                continue;
            }
            if (!too_long && buf_putc(&line, c) < 0) too_long = true;
        }
        if (nul) return; /* the reference closes its reader: the partial line is dropped */
    }
    if (line.len > 0 || too_long) {
        n++;
        if (!too_long) grep_line(s, file, n, line.data, line.len, &tmp);
    }
}

typedef struct dent {
    char *name;
    unsigned char type;
} dent_t;

static int dent_cmp(const void *a, const void *b)
{
    return strcmp(((const dent_t *)a)->name, ((const dent_t *)b)->name);
}

static bool walk_dir(search_t *s, int dirfd, const char *path, int depth)
{
    if (depth > WALK_MAX_DEPTH) return true;
    if (stop_now(s)) return false;
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return true;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return true;
    }
    dent_t *v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        /* not reachable for the reference, which decodes names lossily */
        if (!tools_utf8_valid(de->d_name, strlen(de->d_name))) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            dent_t *nv = realloc(v, cap * sizeof(*nv));
            if (!nv) break;
            v = nv;
        }
        unsigned char type = de->d_type;
        if (type == DT_UNKNOWN) {
            struct stat st;
            if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
                type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_UNKNOWN;
        }
        if (!(v[n].name = strdup(de->d_name))) break;
        v[n++].type = type;
    }
    closedir(d);
    if (n > 1) qsort(v, n, sizeof(*v), dent_cmp); /* libuv's scandir order */
    bool go = true;
    for (size_t i = 0; i < n && go; i++) {
        const char *name = v[i].name;
        if (!strcmp(name, ".git") || !strcmp(name, "node_modules")) continue;
        if (s->remaining-- <= 0 || stop_now(s)) {
            go = false;
            break;
        }
        char *child = NULL;
        if (asprintf(&child, "%s%s%s", path, strcmp(path, "/") ? "/" : "", name) < 0) break;
        if (v[i].type == DT_DIR) {
            int sub = tools_openat_beneath(dirfd, name, O_PATH | O_DIRECTORY, 0);
            if (sub >= 0) {
                go = walk_dir(s, sub, child, depth + 1);
                close(sub);
            }
        } else if (v[i].type == DT_REG) {
            int f = tools_openat_beneath(dirfd, name, O_RDONLY | O_NOCTTY | O_NONBLOCK, 0);
            if (f >= 0) {
                struct stat st;
                if (fstat(f, &st) == 0 && S_ISREG(st.st_mode)) grep_file(s, f, child);
                close(f);
            }
            if (s->full || s->cut) go = false;
        }
        free(child);
    }
    for (size_t i = 0; i < n; i++) free(v[i].name);
    free(v);
    return go;
}

static const char *v8_reason(int ec)
{
    switch (ec) {
    case PCRE2_ERROR_END_BACKSLASH: return "\\ at end of pattern";
    case PCRE2_ERROR_QUANTIFIER_OUT_OF_ORDER: return "numbers out of order in {} quantifier";
    case PCRE2_ERROR_MISSING_SQUARE_BRACKET: return "Unterminated character class";
    case PCRE2_ERROR_CLASS_RANGE_ORDER: return "Range out of order in character class";
    case PCRE2_ERROR_QUANTIFIER_INVALID: return "Nothing to repeat";
    case PCRE2_ERROR_MISSING_CLOSING_PARENTHESIS: return "Unterminated group";
    case PCRE2_ERROR_UNMATCHED_CLOSING_PARENTHESIS: return "Unmatched ')'";
    case PCRE2_ERROR_DUPLICATE_SUBPATTERN_NAME: return "Duplicate capture group name";
    case PCRE2_ERROR_UNRECOGNIZED_AFTER_QUERY_P: return "Invalid group";
    default: return NULL;
    }
}

static json_t *walk_grep(const char *pattern, size_t plen, const char *root, int64_t timeout_ms, int cancel_fd,
                         int rootfd, int file_fd)
{
    pcre2_compile_context *cc = pcre2_compile_context_create(NULL);
    if (cc) pcre2_set_compile_extra_options(cc, PCRE2_EXTRA_ALT_BSUX);
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, plen,
                                   PCRE2_UTF | PCRE2_ALT_BSUX | PCRE2_ALLOW_EMPTY_CLASS | PCRE2_MATCH_UNSET_BACKREF,
                                   &ec, &eo, cc);
    pcre2_compile_context_free(cc);
    if (!re) {
        const char *reason = v8_reason(ec);
        char msg[256];
        if (!reason) {
            pcre2_get_error_message(ec, (PCRE2_UCHAR *)msg, sizeof(msg));
            reason = msg;
        }
        _cleanup_buf_ buf_t b;
        buf_init(&b, 0);
        buf_puts(&b, "grep: invalid regex: Invalid regular expression: /");
        tools_utf8_sanitize(&b, pattern, plen);
        buf_printf(&b, "/: %s", reason);
        return tools_text_result(true, b.data, b.len);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    search_t s = {.re = re, .budget = GREP_OUTPUT_LIMIT, .cancel_fd = cancel_fd, .remaining = WALK_MAX_ENTRIES};
    s.md = pcre2_match_data_create(1, NULL);
    s.mctx = pcre2_match_context_create(NULL);
    if (s.mctx) pcre2_set_match_limit(s.mctx, 10000000);
    int64_t limit = GREP_TIMEOUT_MS;
    if (timeout_ms > 0 && timeout_ms < limit) limit = timeout_ms;
    s.deadline = clock_mono_ms() + limit;
    buf_init(&s.hits, 0);
    if (file_fd >= 0)
        grep_file(&s, file_fd, root);
    else if (rootfd >= 0)
        walk_dir(&s, rootfd, root, 0);
    pcre2_match_data_free(s.md);
    pcre2_match_context_free(s.mctx);
    pcre2_code_free(re);
    json_t *res;
    if (s.cancelled)
        res = tools_errorf("grep: aborted");
    else if (s.cut && !s.full) {
        if (s.nhits == 0)
            res = tools_errorf("grep: timed out after %llds", (long long)(limit / 1000));
        else {
            buf_printf(&s.hits, "\n[the search was cut short after %lld ms]", (long long)limit);
            res = tools_text_result(false, s.hits.data, s.hits.len);
        }
    } else if (s.nhits == 0)
        res = tools_text_result(false, "no matches", 10);
    else
        res = tools_text_result(false, s.hits.data, s.hits.len);
    buf_free(&s.hits);
    return res;
}

/* ---- ripgrep ---- */

/* The reference's findExecutable('rg', roots): the first executable regular
 * file named rg on PATH whose real path is not inside a root. */
static char *find_rg(tools_t *t)
{
    const char *path = NULL;
    for (char **e = t->env; e && *e; e++)
        if (!strncmp(*e, "PATH=", 5)) path = *e + 5;
    if (!path) path = getenv("PATH");
    if (!path) return NULL;
    _cleanup_free_ char *copy = strdup(path);
    if (!copy) return NULL;
    char *save = NULL;
    for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
        if (dir[0] != '/') continue;
        _cleanup_free_ char *cand = NULL;
        if (asprintf(&cand, "%s/rg", dir) < 0) return NULL;
        struct stat st;
        if (access(cand, X_OK) < 0 || stat(cand, &st) < 0 || !S_ISREG(st.st_mode)) continue;
        char *real = realpath(cand, NULL);
        if (!real) continue;
        bool inside = false;
        for (size_t i = 0; i < t->nroots; i++) {
            const char *r = t->roots[i].real ? t->roots[i].real : t->roots[i].path;
            size_t n = strlen(r);
            if (!strncasecmp(real, r, n) && (real[n] == 0 || real[n] == '/')) inside = true;
        }
        if (!inside) return real;
        free(real);
    }
    return NULL;
}

json_t *tools_grep(tools_t *t, json_t *input, int64_t timeout_ms, int cancel_fd)
{
    json_t *jp = json_object_get(input, "pattern");
    json_t *jpath = json_object_get(input, "path");
    if (jp && !json_is_null(jp) && !json_is_string(jp)) return tools_errorf("grep: pattern must be a string");
    if (jpath && !json_is_null(jpath) && !json_is_string(jpath)) return tools_errorf("grep: path must be a string");
    const char *pattern = json_is_string(jp) ? json_string_value(jp) : NULL;
    size_t plen = pattern ? json_string_length(jp) : 0;
    if (!pattern || !plen) return tools_errorf("grep: pattern is required");
    tools_target tg = {0};
    const char *sp = json_is_string(jpath) ? json_string_value(jpath) : NULL;
    if (sp && *sp) {
        json_t *err = tools_resolve(t, sp, json_string_length(jpath), &tg);
        if (err) return err;
    } else if (t->roots[0].fd < 0)
        return tools_errorf("grep: the working directory is not available");
    const char *root = tg.real ? tg.real : t->roots[0].real;
    json_t *res;
    _cleanup_free_ char *rg = find_rg(t);
    if (rg) {
        res = tools_grep_rg(t, rg, pattern, plen, tg.real ? &tg : NULL, timeout_ms, cancel_fd);
    } else {
        int rootfd = -1, file_fd = -1;
        if (tg.real) {
            _cleanup_close_ int pfd = tools_open_target(t, &tg, O_PATH, 0);
            struct stat st;
            if (pfd >= 0 && fstat(pfd, &st) == 0) {
                if (S_ISREG(st.st_mode))
                    file_fd = tools_open_target(t, &tg, O_RDONLY | O_NOCTTY | O_NONBLOCK, 0);
                else if (S_ISDIR(st.st_mode))
                    rootfd = steal_fd(&pfd);
            }
        } else
            rootfd = fcntl(t->roots[0].fd, F_DUPFD_CLOEXEC, 0);
        res = walk_grep(pattern, plen, root, timeout_ms, cancel_fd, rootfd, file_fd);
        if (rootfd >= 0) close(rootfd);
        if (file_fd >= 0) close(file_fd);
    }
    tools_target_free(&tg);
    return res;
}
