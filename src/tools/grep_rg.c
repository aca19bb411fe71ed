/* The grep tool when ripgrep is on the tools' PATH (the reference then runs
 * `rg --no-config -n --no-heading -e PAT -- PATH`). ripgrep walks by path
 * name, so a directory swapped for a symlink during its walk would lead it
 * out of the workspace; here rg is never given the contents. The files it
 * would search are listed in-process when no ignore rule can apply
 * (grep_rglist.c: no rg started), else by rg (`rg --files`: its exact
 * hidden-file, .gitignore, .ignore and .rgignore rules); rg also checks a
 * pattern shed's matcher cannot vouch for. shed opens each named file
 * itself with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) relative to
 * the root's directory fd, and searches it
 * with PCRE2 the way rg would: lines cut at \n only (a \r stays in the
 * text), a UTF-8 BOM dropped, 64 KiB reads in which a NUL byte ends the file
 * (with rg's warning after a match); a single file named explicitly as rg
 * maps it: a NUL in its first 64 KiB turns the first match into "binary file
 * matches". A name that does not open beneath the root (it led through a
 * symlink, or vanished) is skipped: every byte of a result comes from a file
 * the kernel opened beneath the root. Never holds more than the output cap
 * and one line (at most RG_MAX_LINE).
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <fcntl.h>
#include <pcre2.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/cleanup.h"
#include "base/clock.h"
#include "tools/internal.h"

#define RG_OUTPUT_LIMIT (100 * 1024) /* UTF-16 units, as the reference counts */
#define RG_BUFFER (64 * 1024)        /* ripgrep's DEFAULT_BUFFER_CAPACITY */
#define RG_MAX_LINE (4 << 20)        /* longer lines: their first RG_MAX_LINE bytes are searched */
#define RG_STDERR_LIMIT (64 * 1024)
#define RG_NAME_MAX (64 * 1024)

typedef struct rgs {
    pcre2_code *re;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    bool per_line;   /* the region-wide search hit a limit: match line by line */
    const char *lit; /* the pattern when it is a plain literal: memmem prefilter */
    size_t litlen;
    buf_t out;       /* the result text, at most RG_OUTPUT_LIMIT units */
    size_t units;
    buf_t tmp;
    buf_t errs;      /* rg-style "PATH: reason (os error N)" lines */
    bool full, cut, cancelled;
    int64_t deadline; /* -1: none */
    int cancel_fd;
    size_t checks;
    char *buf;
    size_t cap;
} rgs_t;

static bool rg_stop(rgs_t *s)
{
    if (s->full || s->cut) return true;
    if ((++s->checks & 255) != 0) return false;
    if (s->deadline >= 0 && clock_mono_ms() >= s->deadline) s->cut = true;
    if (s->cancel_fd >= 0) {
        struct pollfd p = {.fd = s->cancel_fd, .events = POLLIN};
        if (poll(&p, 1, 0) > 0) s->cut = s->cancelled = true;
    }
    return s->cut;
}

/* Append raw bytes to the result as the reference's string would hold them
 * (invalid UTF-8 → U+FFFD), keeping at most RG_OUTPUT_LIMIT UTF-16 units. */
static void emit(rgs_t *s, const char *p, size_t n)
{
    if (s->full) return;
    const char *d = p;
    if (!tools_utf8_valid(p, n)) {
        buf_reset(&s->tmp);
        tools_utf8_sanitize(&s->tmp, p, n);
        d = s->tmp.data ? s->tmp.data : "";
        n = s->tmp.len;
    }
    size_t u = tools_utf16_len(d, n);
    if (s->units + u <= RG_OUTPUT_LIMIT) {
        buf_append(&s->out, d, n);
        s->units += u;
        return;
    }
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)d[i];
        size_t l = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        size_t cu = l == 4 ? 2 : 1;
        if (s->units + cu > RG_OUTPUT_LIMIT) break;
        s->units += cu;
        i += l;
    }
    buf_append(&s->out, d, i);
    s->full = true;
}

/* Newlines in [p, p+n), eight bytes at a time. */
static size_t count_nl(const char *p, size_t n)
{
    const uint64_t lo7 = 0x7f7f7f7f7f7f7f7fULL, nl = 0x0a0a0a0a0a0a0a0aULL;
    size_t c = 0, i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        v ^= nl; /* a zero byte where p had '\n' */
        uint64_t t = ((v & lo7) + lo7) | v;
        c += (size_t)((((~t & ~lo7) >> 7) * 0x0101010101010101ULL) >> 56);
    }
    for (; i < n; i++) c += p[i] == '\n';
    return c;
}

static bool line_matches(rgs_t *s, const char *p, size_t n)
{
    if (s->lit && (n < s->litlen || !memmem(p, n, s->lit, s->litlen))) return false;
    return pcre2_match(s->re, (PCRE2_SPTR)p, n, 0, 0, s->md, s->mctx) >= 0;
}

static void emit_line(rgs_t *s, const char *name, size_t namelen, unsigned long num, const char *p, size_t n)
{
    char nb[32];
    int nl;
    if (name) {
        emit(s, name, namelen);
        nl = snprintf(nb, sizeof(nb), ":%lu:", num);
    } else
        nl = snprintf(nb, sizeof(nb), "%lu:", num);
    emit(s, nb, (size_t)nl);
    emit(s, p, n);
    emit(s, "\n", 1);
}

static int grow(rgs_t *s, size_t cap)
{
    if (s->cap >= cap) return 0;
    char *nb = realloc(s->buf, cap);
    if (!nb) return -ENOMEM;
    s->buf = nb;
    s->cap = cap;
    return 0;
}

/* One file. explicit: the single file the call names (rg maps it: only the
 * first 64 KiB decide whether it is binary, and then the first match ends
 * the search with a note); else a file of a walk (rg reads it 64 KiB at a
 * time and stops at a read that brings a NUL byte). name NULL: no
 * "name:" prefix (rg searching one file). */
static void search_fd(rgs_t *s, int fd, const char *name, size_t namelen, bool explicit)
{
    size_t cap = RG_BUFFER, left = 0;
    unsigned long lineno = 0;
    uint64_t abs = 0; /* stream offset of buf[0] */
    bool matched = false, binary = false, first = true, skipping = false;
    uint64_t binoff = 0;
    if (grow(s, cap) < 0) return;
    for (;;) {
        if (left == cap) {
            if (cap >= RG_MAX_LINE) {
                /* one enormous line: search its head, skip the rest */
                if (!skipping && line_matches(s, s->buf, left)) {
                    if (binary) goto binary_match;
                    emit_line(s, name, namelen, lineno + 1, s->buf, left);
                    matched = true;
                }
                skipping = true;
                abs += left;
                left = 0;
            } else {
                cap *= 2;
                if (grow(s, cap) < 0) return;
            }
        }
        ssize_t r;
        size_t want = cap - left;
        if (explicit && first) {
            /* the whole first 64 KiB, for the binary check */
            size_t got = 0;
            r = 0;
            while (got < want) {
                ssize_t k = read(fd, s->buf + left + got, want - got);
                if (k < 0 && errno == EINTR) continue;
                if (k <= 0) {
                    if (k < 0 && got == 0) r = -1;
                    break;
                }
                got += (size_t)k;
            }
            if (r == 0) r = (ssize_t)got;
        } else {
            do
                r = read(fd, s->buf + left, want);
            while (r < 0 && errno == EINTR);
        }
        if (r < 0) {
            if (name) buf_printf(&s->errs, "%.*s: %s (os error %d)\n", (int)namelen, name, strerror(errno), errno);
            return;
        }
        char *nu = s->buf + left;
        if (first && r >= 3 && !memcmp(nu, "\xEF\xBB\xBF", 3)) {
            memmove(nu, nu + 3, (size_t)r - 3);
            r -= 3;
        }
        if (r == 0) break;
        char *z = memchr(nu, 0, (size_t)r);
        if (z) {
            if (!explicit) {
                if (matched) {
                    char m[128];
                    int ml = snprintf(m, sizeof(m),
                                      ": WARNING: stopped searching binary file after match (found \"\\0\" byte "
                                      "around offset %llu)\n",
                                      (unsigned long long)(abs + (uint64_t)(z - s->buf)));
                    emit(s, name, namelen);
                    emit(s, m, (size_t)ml);
                }
                return;
            }
            if (first) {
                binary = true;
                binoff = abs + (uint64_t)(z - s->buf);
            }
        }
        first = false;
        size_t end = left + (size_t)r;
        char *p = s->buf, *e = s->buf + end;
        if (skipping) {
            char *nl = memchr(p, '\n', (size_t)(e - p));
            if (!nl) {
                abs += end;
                left = 0;
                continue;
            }
            skipping = false;
            lineno++;
            p = nl + 1;
        }
        /* complete lines in [p, lim) */
        char *last = memrchr(p, '\n', (size_t)(e - p));
        char *lim = last ? last + 1 : p;
        while (p < lim) {
            /* the next candidate: the literal, or a match of the regex over the whole region
             * (leftmost; it may span lines, so the line it starts in is checked on its own) */
            char *ms = NULL;
            if (s->lit)
                ms = memmem(p, (size_t)(lim - p), s->lit, s->litlen);
            else if (!s->per_line) {
                int rc = pcre2_match(s->re, (PCRE2_SPTR)s->buf, (size_t)(lim - s->buf), (size_t)(p - s->buf), 0,
                                     s->md, s->mctx);
                if (rc >= 0) {
                    size_t off = pcre2_get_ovector_pointer(s->md)[0];
                    ms = off < (size_t)(lim - s->buf) ? s->buf + off : NULL;
                } else if (rc != PCRE2_ERROR_NOMATCH)
                    s->per_line = true; /* a limit: this and later regions line by line */
            }
            /* the candidate line [p, nl): the next line when matching line by line, else the
             * line the match starts in */
            char *nl;
            if (!ms && s->per_line && !s->lit) {
                nl = memchr(p, '\n', (size_t)(lim - p));
            } else if (!ms) {
                lineno += count_nl(p, (size_t)(lim - p));
                p = lim;
                break;
            } else {
                char *ls = memrchr(p, '\n', (size_t)(ms - p));
                if (ls) {
                    lineno += count_nl(p, (size_t)(ls + 1 - p));
                    p = ls + 1;
                }
                nl = memchr(ms, '\n', (size_t)(lim - ms));
            }
            lineno++;
            if (pcre2_match(s->re, (PCRE2_SPTR)p, (size_t)(nl - p), 0, 0, s->md, s->mctx) >= 0) {
                if (binary) goto binary_match;
                emit_line(s, name, namelen, lineno, p, (size_t)(nl - p));
                matched = true;
            }
            p = nl + 1;
            if (rg_stop(s)) return;
        }
        left = (size_t)(e - p);
        abs += (uint64_t)(p - s->buf);
        if (left) memmove(s->buf, p, left);
    }
    if (left > 0 && !skipping && line_matches(s, s->buf, left)) {
        if (binary) goto binary_match;
        emit_line(s, name, namelen, lineno + 1, s->buf, left);
    }
    return;
binary_match : {
    char m[128];
    int ml = snprintf(m, sizeof(m), "binary file matches (found \"\\0\" byte around offset %llu)\n",
                      (unsigned long long)binoff);
    if (name) {
        emit(s, name, namelen);
        emit(s, ": ", 2);
    }
    emit(s, m, (size_t)ml);
}
}

/* ---- rg as a helper ---- */

typedef struct rg_proc {
    pid_t pid;
    int out, err;
} rg_proc;

static int rg_spawn(tools_t *t, const char *rg, char *const argv[], rg_proc *p)
{
    int po[2], pe[2];
    if (pipe2(po, O_CLOEXEC) < 0) return -errno;
    if (pipe2(pe, O_CLOEXEC) < 0) {
        int e = errno;
        close(po[0]), close(po[1]);
        return -e;
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, po[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
    /* nothing else of the caller's (init's control channel above all) may
     * reach the agent's processes, CLOEXEC or not */
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    sigdelset(&all, SIGKILL);
    sigdelset(&all, SIGSTOP);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    int rc = posix_spawn(&p->pid, rg, &fa, &attr, argv, t->env);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(po[1]);
    close(pe[1]);
    if (rc != 0) {
        close(po[0]), close(pe[0]);
        return -rc;
    }
    p->out = po[0];
    p->err = pe[0];
    return 0;
}

/* Ends rg (killed if kill_it) and returns its wait status. */
static int rg_finish(rg_proc *p, bool kill_it)
{
    if (kill_it) kill(p->pid, SIGKILL);
    if (p->out >= 0) close(p->out);
    if (p->err >= 0) close(p->err);
    p->out = p->err = -1;
    int status = 0;
    while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR) {
    }
    return status;
}

static void drain_err(int fd, buf_t *err, bool *open)
{
    char chunk[4096];
    ssize_t r = read(fd, chunk, sizeof(chunk));
    if (r <= 0) {
        if (r == 0 || errno != EINTR) *open = false;
        return;
    }
    if (err->len < RG_STDERR_LIMIT)
        buf_append(err, chunk, (size_t)r < RG_STDERR_LIMIT - err->len ? (size_t)r : RG_STDERR_LIMIT - err->len);
}

/* Does rg accept the pattern? Asked only for a pattern PCRE2 rejects or one
 * with a construct whose meaning differs between rg's Rust regex and PCRE2.
 * Returns NULL if it does, else the error result (rg's own message). */
static json_t *rg_check_pattern(tools_t *t, const char *rg, const char *pattern, int64_t deadline, int cancel_fd)
{
    char *argv[] = {"rg", "--no-config", "-e", (char *)pattern, "--", "/dev/null", NULL};
    rg_proc p;
    int rc = rg_spawn(t, rg, argv, &p);
    if (rc < 0) return tools_errorf("grep: rg failed: spawn %s: %s", rg, strerror(-rc));
    _cleanup_buf_ buf_t err;
    buf_init(&err, RG_STDERR_LIMIT);
    bool out_open = true, err_open = true, aborted = false;
    while (out_open || err_open) {
        struct pollfd pf[3] = {{.fd = out_open ? p.out : -1, .events = POLLIN},
                               {.fd = err_open ? p.err : -1, .events = POLLIN},
                               {.fd = cancel_fd, .events = POLLIN}};
        int wait = -1;
        if (deadline >= 0) {
            int64_t l = deadline - clock_mono_ms();
            if (l <= 0) {
                aborted = true;
                break;
            }
            wait = l > 1000000 ? 1000000 : (int)l;
        }
        int n = poll(pf, 3, wait);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) break;
        if (cancel_fd >= 0 && (pf[2].revents & (POLLIN | POLLHUP | POLLERR))) {
            aborted = true;
            break;
        }
        if (pf[0].revents) {
            char sink[4096];
            if (read(p.out, sink, sizeof(sink)) <= 0) out_open = false;
        }
        if (pf[1].revents) drain_err(p.err, &err, &err_open);
    }
    int status = rg_finish(&p, aborted);
    if (aborted) return tools_errorf("grep: aborted");
    if (WIFEXITED(status) && WEXITSTATUS(status) <= 1) return NULL;
    _cleanup_buf_ buf_t m;
    buf_init(&m, 0);
    buf_puts(&m, "grep: rg failed: ");
    if (err.len)
        tools_utf8_sanitize(&m, err.data, err.len);
    else if (WIFEXITED(status))
        buf_printf(&m, "exit %d", WEXITSTATUS(status));
    else
        buf_puts(&m, "exit null");
    return tools_text_result(true, m.data, m.len);
}

/* A construct that rg's regex (Rust, as in ripgrep 13) rejects or reads
 * otherwise than PCRE2 does: then rg is asked first. Erring towards asking
 * costs one spawn. */
static bool pattern_doubtful(const char *p, size_t n, bool *rg_only)
{
    bool in_class = false;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\n' || c == '\r') return true;
        if (c == '\\') {
            if (++i >= n) return true;
            c = p[i];
            if (!strchr("\\.+*?()|[]{}^$#&-~dDwWsSbBtrfapPxuAz", c) || c == 0) return true;
            continue;
        }
        if (in_class) {
            if (c == '[' && !(i + 1 < n && p[i + 1] == ':')) return *rg_only = true; /* nested: a union in Rust */
            if (c == '[' && i + 1 < n && p[i + 1] == ':') {
                const char *close = memmem(p + i, n - i, ":]", 2);
                if (close) i = (size_t)(close - p) + 1;
                continue;
            }
            if ((c == '&' || c == '-' || c == '~') && i + 1 < n && p[i + 1] == c)
                return *rg_only = true; /* set operations */
            if (c == ']') in_class = false;
            continue;
        }
        if (c == '[') {
            in_class = true;
            if (i + 1 < n && p[i + 1] == '^') i++;
            if (i + 1 < n && p[i + 1] == ']') i++; /* a leading ] is literal */
            continue;
        }
        if (c == '(' && i + 1 < n && p[i + 1] == '?') {
            size_t j = i + 2;
            if (j < n && p[j] == ':') continue;
            if (j + 1 < n && p[j] == 'P' && p[j + 1] == '<') continue;
            while (j < n && strchr("imsxU-", p[j]) && p[j]) j++;
            if (j < n && j > i + 2 && (p[j] == ')' || p[j] == ':')) continue;
            return true; /* look-around, atomic, named (?<..>), comments, recursion... */
        }
        if ((c == '*' || c == '+' || c == '?' || c == '}') && i + 1 < n && p[i + 1] == '+') return true;
        if (c == '{' && i + 1 < n && p[i + 1] == ',') return true;
    }
    return in_class;
}

/* rg's POSIX classes are ASCII-only, PCRE2's follow PCRE2_UCP: each
 * [:name:] inside a class becomes its ASCII ranges. A negated one ([:^x:])
 * is left to PCRE2 (it differs only on non-ASCII text). */
static int rewrite_posix(buf_t *out, const char *p, size_t n)
{
    static const struct {
        const char *name, *ranges;
    } CL[] = {{"alnum", "0-9A-Za-z"}, {"alpha", "A-Za-z"},     {"ascii", "\\x00-\\x7F"},
              {"blank", "\\t "},      {"cntrl", "\\x00-\\x1F\\x7F"}, {"digit", "0-9"},
              {"graph", "!-~"},       {"lower", "a-z"},        {"print", " -~"},
              {"punct", "!-/:-@\\[-`{-~"}, {"space", "\\t\\n\\x0B\\f\\r "}, {"upper", "A-Z"},
              {"word", "0-9A-Za-z_"}, {"xdigit", "0-9A-Fa-f"}};
    bool in_class = false;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            if (buf_append(out, p + i, 2) < 0) return -ENOMEM;
            i++;
            continue;
        }
        if (!in_class && c == '[') {
            in_class = true;
            size_t k = 1;
            if (i + k < n && p[i + k] == '^') k++;
            if (i + k < n && p[i + k] == ']') k++;
            if (buf_append(out, p + i, k) < 0) return -ENOMEM;
            i += k - 1;
            continue;
        }
        if (in_class && c == '[' && i + 1 < n && p[i + 1] == ':') {
            const char *close = memmem(p + i + 2, n - i - 2, ":]", 2);
            bool done = false;
            for (size_t k = 0; close && k < ARRAY_SIZE(CL); k++) {
                size_t l = strlen(CL[k].name);
                if ((size_t)(close - (p + i + 2)) == l && !memcmp(p + i + 2, CL[k].name, l)) {
                    if (buf_puts(out, CL[k].ranges) < 0) return -ENOMEM;
                    i = (size_t)(close - p) + 1;
                    done = true;
                    break;
                }
            }
            if (done) continue;
        }
        if (in_class && c == ']') in_class = false;
        if (buf_putc(out, c) < 0) return -ENOMEM;
    }
    return 0;
}

static bool pattern_literal(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strchr("\\.+*?()|[]{}^$#", p[i]) || p[i] == 0 || (unsigned char)p[i] >= 0x80) return false;
    return n > 0;
}

/* rg's complaints about its walk, keeping only those about a path that is
 * beneath the root now: a walk misled by a swapped symlink reports names
 * from outside, which must not reach the result either. */
static void filter_walk_errors(tools_root *root, const char *search, const char *rel, const buf_t *in, buf_t *out)
{
    size_t slen = strlen(search), rlen = strcmp(rel, ".") ? strlen(rel) : 0;
    const char *p = in->data, *e = p ? p + in->len : NULL; /* an empty buffer has no data */
    _cleanup_buf_ buf_t relp;
    buf_init(&relp, 0);
    while (p && p < e) {
        const char *nl = memchr(p, '\n', (size_t)(e - p));
        const char *le = nl ? nl + 1 : e;
        bool keep = true;
        if ((size_t)(le - p) > slen + 1 && !memcmp(p, search, slen) && p[slen] == '/') {
            const char *colon = memmem(p + slen, (size_t)(le - p) - slen, ": ", 2);
            buf_reset(&relp);
            if (rlen) {
                buf_append(&relp, rel, rlen);
                buf_putc(&relp, '/');
            }
            if (colon) buf_append(&relp, p + slen + 1, (size_t)(colon - p - slen - 1));
            int fd = colon && !memchr(relp.data, 0, relp.len)
                         ? tools_openat_beneath(root->fd, relp.data, O_PATH | O_NOFOLLOW, 0)
                         : -ENOENT;
            keep = fd >= 0;
            if (fd >= 0) close(fd);
        }
        if (keep) buf_append(out, p, (size_t)(le - p));
        p = le;
    }
}

/* One name of the listing (rg's or tools_rg_list's): opened beneath the
 * root with openat2 and searched if it is a regular file there. A name
 * that does not open beneath the root (rg's walk was led through a swapped
 * link, or the file vanished) is skipped; another failure is rg's error. */
static void search_name(rgs_t *s, tools_root *root, const char *search, const char *rel, buf_t *relp, const char *nm,
                        size_t nlen)
{
    size_t slen = strlen(search), rlen = strcmp(rel, ".") ? strlen(rel) : 0;
    if (!(nlen > slen + 1 && !memcmp(nm, search, slen) && nm[slen] == '/' && !memchr(nm, 0, nlen))) return;
    buf_reset(relp);
    if (rlen) {
        buf_append(relp, rel, rlen);
        buf_putc(relp, '/');
    }
    buf_append(relp, nm + slen + 1, nlen - slen - 1);
    int fd = tools_openat_beneath(root->fd, relp->data, O_RDONLY | O_NOCTTY | O_NONBLOCK, 0);
    if (fd >= 0) {
        struct stat fs;
        if (fstat(fd, &fs) == 0 && S_ISREG(fs.st_mode)) search_fd(s, fd, nm, nlen, false);
        close(fd);
    } else if (fd != -ENOENT && fd != -ELOOP && fd != -ENOTDIR && fd != -EXDEV && fd != -ENXIO && fd != -EAGAIN) {
        /* not a swap or a vanished file: rg would say so */
        buf_printf(&s->errs, "%s: %s (os error %d)\n", nm, strerror(-fd), -fd);
    }
}

/* rg's argument path in results: as given (the root's canonical path). */
json_t *tools_grep_rg(tools_t *t, const char *rg, const char *pattern, size_t plen, const tools_target *tg,
                      int64_t timeout_ms, int cancel_fd)
{
    if (memchr(pattern, 0, plen)) return tools_errorf("grep: rg failed: the pattern contains a NUL byte");
    int64_t deadline = timeout_ms > 0 ? clock_mono_ms() + timeout_ms : -1;
    int ec;
    PCRE2_SIZE eo;
    pcre2_compile_context *cc = pcre2_compile_context_create(NULL);
    if (cc) pcre2_set_compile_extra_options(cc, PCRE2_EXTRA_ALT_BSUX);
    _cleanup_buf_ buf_t rw;
    buf_init(&rw, 0);
    if (rewrite_posix(&rw, pattern, plen) < 0) return tools_errorf("grep: out of memory");
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)(rw.data ? rw.data : ""), rw.len,
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF | PCRE2_ALT_BSUX |
                                       PCRE2_ALLOW_EMPTY_CLASS | PCRE2_MULTILINE,
                                   &ec, &eo, cc);
    pcre2_compile_context_free(cc);
    bool rg_only = false;
    if (!re || pattern_doubtful(pattern, plen, &rg_only)) {
        json_t *bad = rg_check_pattern(t, rg, pattern, deadline, cancel_fd);
        if (bad || !re || rg_only) {
            pcre2_code_free(re);
            if (bad) return bad;
            if (rg_only)
                return tools_errorf("grep: shed's matcher cannot run this pattern (ripgrep accepts it): nested "
                                    "character classes and class set operations (&&, --, ~~) are not supported; "
                                    "rewrite the class without them");
            char msg[256];
            pcre2_get_error_message(ec, (PCRE2_UCHAR *)msg, sizeof(msg));
            return tools_errorf("grep: shed's matcher cannot run this pattern (ripgrep accepts it): %s at "
                                "offset %zu; rewrite it in the common regex syntax",
                                msg, (size_t)eo);
        }
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    rgs_t s = {.re = re, .deadline = deadline, .cancel_fd = cancel_fd};
    if (pattern_literal(pattern, plen)) s.lit = pattern, s.litlen = plen;
    /* \A and \z are a line's ends for rg; over a region they would be the region's */
    for (size_t i = 0; i + 1 < plen; i++)
        if (pattern[i] == '\\') {
            if (pattern[i + 1] == 'A' || pattern[i + 1] == 'z') s.per_line = true;
            i++;
        }
    s.md = pcre2_match_data_create(1, NULL);
    s.mctx = pcre2_match_context_create(NULL);
    if (s.mctx) pcre2_set_match_limit(s.mctx, 10000000);
    buf_init(&s.out, 0);
    buf_init(&s.tmp, 0);
    buf_init(&s.errs, RG_STDERR_LIMIT);
    tools_root *root = &t->roots[tg ? tg->root : 0];
    const char *search = tg ? tg->real : root->real;
    const char *rel = tg ? tg->rel : ".";
    int status = 0;
    bool have_status = false;
    _cleanup_buf_ buf_t rgerr;
    buf_init(&rgerr, RG_STDERR_LIMIT);

    _cleanup_close_ int target = root->fd >= 0 ? tools_openat_beneath(root->fd, rel, O_RDONLY | O_NOCTTY | O_NONBLOCK, 0)
                                              : -ENOENT;
    struct stat st;
    int fsr = target >= 0 ? fstat(target, &st) : -1;
    _cleanup_buf_ buf_t list;
    buf_init(&list, 0);
    _cleanup_buf_ buf_t relp;
    buf_init(&relp, 0);
    if (target < 0) {
        /* what rg says of a path it cannot open */
        buf_printf(&s.errs, "%s: %s (os error %d)\n", search, strerror(-target), -target);
    } else if (fsr == 0 && S_ISREG(st.st_mode)) {
        search_fd(&s, target, NULL, 0, true);
    } else if (fsr == 0 && S_ISDIR(st.st_mode) && tools_rg_list(target, search, &list, NULL) == 0) {
        /* a directory where rg's listing is plain (no ignore file, no git,
         * nothing rg would complain about): listed in-process, no rg started */
        for (size_t i = 0; i < list.len && !s.full && !s.cut;) {
            size_t nlen = strlen(list.data + i);
            search_name(&s, root, search, rel, &relp, list.data + i, nlen);
            i += nlen + 1;
            rg_stop(&s);
        }
    } else {
        /* a directory (or something rg will explain): rg names the files */
        char *argv[] = {"rg", "--no-config", "--files", "--null", "--sort", "path", "--", (char *)search, NULL};
        rg_proc p;
        int rc = rg_spawn(t, rg, argv, &p);
        if (rc < 0) {
            pcre2_match_data_free(s.md);
            pcre2_match_context_free(s.mctx);
            pcre2_code_free(re);
            buf_free(&s.out), buf_free(&s.tmp), buf_free(&s.errs);
            free(s.buf);
            return tools_errorf("grep: rg failed: spawn %s: %s", rg, strerror(-rc));
        }
        _cleanup_buf_ buf_t names;
        buf_init(&names, 0);
        bool out_open = true, err_open = true, too_long = false;
        char chunk[16384];
        while ((out_open || err_open) && !s.full && !s.cut) {
            struct pollfd pf[3] = {{.fd = out_open ? p.out : -1, .events = POLLIN},
                                   {.fd = err_open ? p.err : -1, .events = POLLIN},
                                   {.fd = cancel_fd, .events = POLLIN}};
            int wait = -1;
            if (deadline >= 0) {
                int64_t l = deadline - clock_mono_ms();
                if (l <= 0) {
                    s.cut = true;
                    break;
                }
                wait = l > 1000000 ? 1000000 : (int)l;
            }
            int n = poll(pf, 3, wait);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) break;
            if (cancel_fd >= 0 && (pf[2].revents & (POLLIN | POLLHUP | POLLERR))) {
                s.cut = s.cancelled = true;
                break;
            }
            if (pf[1].revents) drain_err(p.err, &rgerr, &err_open);
            if (!pf[0].revents) continue;
            ssize_t r = read(p.out, chunk, sizeof(chunk));
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) {
                out_open = false;
                continue;
            }
            const char *c = chunk, *ce = chunk + r;
            while (c < ce && !s.full && !s.cut) {
                const char *z = memchr(c, 0, (size_t)(ce - c));
                size_t k = (size_t)((z ? z : ce) - c);
                if (!too_long && names.len + k <= RG_NAME_MAX)
                    buf_append(&names, c, k);
                else
                    too_long = true;
                c += k;
                if (!z) break;
                c++;
                /* one whole name */
                if (!too_long) search_name(&s, root, search, rel, &relp, names.data ? names.data : "", names.len);
                buf_reset(&names);
                too_long = false;
                rg_stop(&s);
            }
        }
        status = rg_finish(&p, s.full || s.cut || out_open || err_open);
        have_status = !(s.full || s.cut);
        _cleanup_buf_ buf_t raw = rgerr;
        buf_init(&rgerr, RG_STDERR_LIMIT);
        filter_walk_errors(root, search, rel, &raw, &rgerr);
        /* every complaint was about a path that is not beneath the root */
        if (raw.len && !rgerr.len && WIFEXITED(status) && WEXITSTATUS(status) == 2) status = 0;
    }
    pcre2_match_data_free(s.md);
    pcre2_match_context_free(s.mctx);
    pcre2_code_free(re);
    free(s.buf);
    buf_free(&s.tmp);
    json_t *res;
    if (s.cancelled || (s.cut && !s.full))
        res = tools_errorf("grep: aborted");
    else if (s.full) {
        buf_printf(&s.out, "\n[output truncated at %d bytes]", RG_OUTPUT_LIMIT);
        res = tools_text_result(false, s.out.data, s.out.len);
    } else if ((have_status && !(WIFEXITED(status) && WEXITSTATUS(status) <= 1)) || s.errs.len) {
        _cleanup_buf_ buf_t m;
        buf_init(&m, 0);
        buf_puts(&m, "grep: rg failed: ");
        if (rgerr.len || s.errs.len) {
            tools_utf8_sanitize(&m, rgerr.data ? rgerr.data : "", rgerr.len);
            tools_utf8_sanitize(&m, s.errs.data ? s.errs.data : "", s.errs.len);
        } else if (WIFEXITED(status))
            buf_printf(&m, "exit %d", WEXITSTATUS(status));
        else
            buf_puts(&m, "exit null");
        res = tools_text_result(true, m.data, m.len);
    } else if (s.out.len == 0)
        res = tools_text_result(false, "no matches", 10);
    else
        res = tools_text_result(false, s.out.data, s.out.len);
    buf_free(&s.out);
    buf_free(&s.errs);
    return res;
}
