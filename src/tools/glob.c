/* The glob tool: the reference's semantics (Node 22's fs.glob, which is
 * minimatch with dot:false) over a walk confined to the search root.
 * Supported: brace expansion ({a,b}, {1..3}), *, ?, [...] with ranges,
 * negation and POSIX classes, extglobs @() *() +() ?() !(), and ** for any
 * number of directories. As in the reference: wildcards do not match names
 * that start with "." unless the pattern segment does, ** never enters a
 * symlinked directory (a literal segment that names one is followed), only
 * regular files are reported, .git and node_modules are never entered, every match
 * must resolve inside the root, results are newest first, at most 200.
 * Never opens a directory outside the root: a symlink named by a literal
 * segment is resolved and confined like any tool path.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/cleanup.h"
#include "tools/internal.h"

#define GLOB_RESULT_LIMIT 200
#define WALK_MAX_ENTRIES 50000    /* matches collected (the reference's cap) */
#define WALK_MAX_VISITS 1000000   /* directory entries looked at (a bound of our own) */
#define WALK_MAX_DEPTH 64
#define MAX_EXPANSIONS 1024
#define MAX_BRACE_DEPTH 128
#define MAX_EXTGLOB_DEPTH 32
#define MAX_PATTERN_BYTES (32 * 1024)

typedef struct seg {
    enum { SEG_LITERAL, SEG_MAGIC, SEG_GLOBSTAR } kind;
    char *text;       /* literal name */
    pcre2_code *re;   /* magic */
} seg_t;

typedef struct match {
    char *path; /* absolute, as reported */
    double mtime;
    size_t order;
} match_t;

typedef struct walk {
    tools_t *t;
    const char *root;      /* search root, canonical */
    size_t rootlen;
    int rootfd;
    seg_t *segs;
    size_t nseg;
    match_t *m;
    size_t nm, capm;
    size_t visits;
    bool stop;
    pcre2_match_data *md;
} walk_t;

/* ---- brace expansion (minimatch/brace-expansion semantics, simplified) ---- */

static int expand(const char *p, char ***out, size_t *n, size_t *cap, int depth);

static int push_exp(char ***out, size_t *n, size_t *cap, char *s)
{
    if (*n >= MAX_EXPANSIONS) {
        free(s);
        return -E2BIG;
    }
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        char **v = realloc(*out, nc * sizeof(*v));
        if (!v) {
            free(s);
            return -ENOMEM;
        }
        *out = v;
        *cap = nc;
    }
    (*out)[(*n)++] = s;
    return 0;
}

/* Find the first top-level {...} containing a ',' or '..' sequence. */
static int expand(const char *p, char ***out, size_t *n, size_t *cap, int level)
{
    if (level > MAX_BRACE_DEPTH) return -E2BIG; /* bounded stack and memory */
    size_t len = strlen(p);
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '[') { /* skip classes */
            size_t j = i + 1;
            if (j < len && (p[j] == '!' || p[j] == '^')) j++;
            if (j < len && p[j] == ']') j++;
            while (j < len && p[j] != ']') j++;
            if (j < len) i = j;
            continue;
        }
        if (p[i] != '{') continue;
        int depth = 0;
        size_t close = 0;
        bool comma = false;
        for (size_t j = i; j < len; j++) {
            if (p[j] == '{') depth++;
            else if (p[j] == '}') {
                if (--depth == 0) {
                    close = j;
                    break;
                }
            } else if (p[j] == ',' && depth == 1)
                comma = true;
        }
        if (!close) return push_exp(out, n, cap, strdup(p));
        const char *body = p + i + 1;
        size_t blen = close - i - 1;
        if (!comma) {
            /* sequence {a..b} of integers or single letters */
            char tmp[64];
            long a, b;
            char ca, cb;
            if (blen < sizeof(tmp)) {
                memcpy(tmp, body, blen);
                tmp[blen] = 0;
                int consumed = 0;
                if (sscanf(tmp, "%ld..%ld%n", &a, &b, &consumed) == 2 && (size_t)consumed == blen) {
                    long step = a <= b ? 1 : -1;
                    for (long v = a;; v += step) {
                        char *s = NULL;
                        if (asprintf(&s, "%.*s%ld%s", (int)i, p, v, p + close + 1) < 0) return -ENOMEM;
                        int rc = expand(s, out, n, cap, level + 1);
                        free(s);
                        if (rc < 0) return rc;
                        if (v == b) break;
                    }
                    return 0;
                }
                if (blen == 4 && sscanf(tmp, "%c..%c", &ca, &cb) == 2 && tmp[1] == '.' && tmp[2] == '.') {
                    int step = ca <= cb ? 1 : -1;
                    for (int v = ca;; v += step) {
                        char *s = NULL;
                        if (asprintf(&s, "%.*s%c%s", (int)i, p, v, p + close + 1) < 0) return -ENOMEM;
                        int rc = expand(s, out, n, cap, level + 1);
                        free(s);
                        if (rc < 0) return rc;
                        if (v == cb) break;
                    }
                    return 0;
                }
            }
            continue; /* a literal {x}: look further */
        }
        depth = 0;
        size_t start = 0;
        for (size_t j = 0; j <= blen; j++) {
            char c = j < blen ? body[j] : ',';
            if (c == '{') depth++;
            else if (c == '}') depth--;
            if (c == ',' && depth == 0) {
                char *s = NULL;
                if (asprintf(&s, "%.*s%.*s%s", (int)i, p, (int)(j - start), body + start, p + close + 1) < 0)
                    return -ENOMEM;
                int rc = expand(s, out, n, cap, level + 1);
                free(s);
                if (rc < 0) return rc;
                start = j + 1;
            }
        }
        return 0;
    }
    return push_exp(out, n, cap, strdup(p));
}

/* ---- one segment to a regex ---- */

static bool is_magic(const char *s)
{
    for (; *s; s++) {
        if (*s == '*' || *s == '?' || *s == '[') return true;
        if ((*s == '+' || *s == '@' || *s == '!') && s[1] == '(') return true;
    }
    return false;
}

static void re_lit(buf_t *b, char c)
{
    if (strchr("\\^$.|?*+()[]{}/", c)) buf_putc(b, '\\');
    buf_putc(b, c);
}

/* Translate s[*i..] up to an unmatched ')' or '|' (when in extglob) or end. */
static int seg_re(buf_t *b, const char *s, size_t *i, int depth)
{
    if (depth > MAX_EXTGLOB_DEPTH) return -1;
    while (s[*i]) {
        char c = s[*i];
        if (depth > 0 && (c == ')' || c == '|')) return 0;
        if ((c == '*' || c == '?' || c == '+' || c == '@' || c == '!') && s[*i + 1] == '(') {
            *i += 2;
            if (c == '!') buf_puts(b, "(?:(?!(?:");
            else buf_puts(b, "(?:");
            for (;;) {
                if (seg_re(b, s, i, depth + 1) < 0) return -1;
                if (s[*i] == '|') {
                    buf_putc(b, '|');
                    (*i)++;
                    continue;
                }
                if (s[*i] != ')') return -1;
                (*i)++;
                break;
            }
            switch (c) {
            case '*': buf_puts(b, ")*"); break;
            case '+': buf_puts(b, ")+"); break;
            case '?': buf_puts(b, ")?"); break;
            case '@': buf_puts(b, ")"); break;
            case '!': buf_puts(b, ")$)[^/]*?)"); break;
            }
            continue;
        }
        if (c == '*') {
            while (s[*i] == '*') (*i)++;
            buf_puts(b, "[^/]*?");
            continue;
        }
        if (c == '?') {
            buf_puts(b, "[^/]");
            (*i)++;
            continue;
        }
        if (c == '[') {
            size_t j = *i + 1;
            bool neg = false;
            if (s[j] == '!' || s[j] == '^') {
                neg = true;
                j++;
            }
            size_t body = j;
            if (s[j] == ']') j++;
            while (s[j] && s[j] != ']') {
                if (s[j] == '[' && s[j + 1] == ':') {
                    const char *e = strstr(s + j + 2, ":]");
                    if (e) {
                        j = (size_t)(e - s) + 2;
                        continue;
                    }
                }
                j++;
            }
            if (!s[j]) { /* no closing ']': a literal '[' */
                re_lit(b, '[');
                (*i)++;
                continue;
            }
            buf_puts(b, neg ? "[^" : "[");
            for (size_t k = body; k < j; k++) {
                if (s[k] == '[' && s[k + 1] == ':') {
                    const char *e = strstr(s + k + 2, ":]");
                    if (e) {
                        buf_append(b, s + k, (size_t)(e - (s + k)) + 2);
                        k = (size_t)(e - s) + 1;
                        continue;
                    }
                }
                if (s[k] == '\\' || s[k] == '[' || s[k] == ']' || s[k] == '^') buf_putc(b, '\\');
                buf_putc(b, s[k]);
            }
            buf_putc(b, ']');
            *i = j + 1;
            continue;
        }
        re_lit(b, c);
        (*i)++;
    }
    return depth > 0 ? -1 : 0;
}

static pcre2_code *compile_seg(const char *s)
{
    _cleanup_buf_ buf_t b;
    buf_init(&b, 0);
    buf_puts(&b, "^");
    if (s[0] != '.') buf_puts(&b, "(?!\\.)");
    size_t i = 0;
    if (seg_re(&b, s, &i, 0) < 0 || s[i]) return NULL;
    buf_puts(&b, "$");
    int ec;
    PCRE2_SIZE eo;
    return pcre2_compile((PCRE2_SPTR)b.data, b.len, PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_DOTALL, &ec, &eo,
                         NULL);
}

static void segs_free(seg_t *segs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(segs[i].text);
        if (segs[i].re) pcre2_code_free(segs[i].re);
    }
    free(segs);
}

/* Split one expanded pattern; NULL with *n = 0 when it cannot match. */
static seg_t *parse_pattern(const char *p, size_t *n, bool *invalid)
{
    _cleanup_free_ char *copy = strdup(p);
    if (!copy) return NULL;
    for (char *c = copy; *c; c++)
        if (*c == '\\') *c = '/'; /* windowsPathsNoEscape: a backslash separates */
    size_t cap = 8, k = 0;
    seg_t *segs = calloc(cap, sizeof(*segs));
    if (!segs) return NULL;
    char *save = NULL;
    for (char *tok = strtok_r(copy, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
        if (!strcmp(tok, ".")) continue;
        if (k == cap) {
            seg_t *v = realloc(segs, cap * 2 * sizeof(*v));
            if (!v) {
                segs_free(segs, k);
                return NULL;
            }
            segs = v;
            cap *= 2;
        }
        seg_t *s = &segs[k];
        memset(s, 0, sizeof(*s));
        if (!strcmp(tok, "**")) {
            if (k > 0 && segs[k - 1].kind == SEG_GLOBSTAR) continue;
            s->kind = SEG_GLOBSTAR;
        } else if (is_magic(tok)) {
            s->kind = SEG_MAGIC;
            s->re = compile_seg(tok);
            if (!s->re) {
                *invalid = true;
                segs_free(segs, k);
                return NULL;
            }
        } else {
            s->kind = SEG_LITERAL;
            s->text = strdup(tok);
        }
        k++;
    }
    /* a pattern ending in '/' names directories only: never a file */
    size_t plen = strlen(p);
    if (k == 0 || (plen && (p[plen - 1] == '/' || p[plen - 1] == '\\'))) {
        segs_free(segs, k);
        *n = 0;
        return NULL;
    }
    *n = k;
    return segs;
}

/* ---- the walk ---- */

static bool skip_name(const char *name)
{
    return !strcmp(name, ".git") || !strcmp(name, "node_modules");
}

static void add_match(walk_t *w, const char *rel)
{
    if (w->nm >= WALK_MAX_ENTRIES) {
        w->stop = true;
        return;
    }
    char *full = NULL;
    if (asprintf(&full, "%s%s%s", w->root, w->rootlen == 1 ? "" : "/", rel) < 0) return;
    /* the reference drops any match whose real path leaves the root */
    char *real = realpath(full, NULL);
    if (!real || !tools_path_within(w->root, real)) {
        free(real);
        free(full);
        return;
    }
    free(real);
    struct stat st;
    double mtime = 0;
    if (stat(full, &st) == 0) mtime = (double)st.st_mtim.tv_sec * 1000.0 + (double)st.st_mtim.tv_nsec / 1e6;
    if (w->nm == w->capm) {
        size_t nc = w->capm ? w->capm * 2 : 64;
        match_t *v = realloc(w->m, nc * sizeof(*v));
        if (!v) {
            free(full);
            return;
        }
        w->m = v;
        w->capm = nc;
    }
    w->m[w->nm] = (match_t){.path = full, .mtime = mtime, .order = w->nm};
    w->nm++;
}

static bool seg_match(walk_t *w, const seg_t *s, const char *name)
{
    if (s->kind == SEG_LITERAL) return !strcmp(s->text, name);
    return pcre2_match(s->re, (PCRE2_SPTR)name, strlen(name), 0, 0, w->md, NULL) >= 0;
}

typedef struct ent {
    char *name;
    unsigned char type;
} ent_t;

static int ent_cmp(const void *a, const void *b)
{
    return strcmp(((const ent_t *)a)->name, ((const ent_t *)b)->name);
}

/* Entries of dirfd, sorted as libuv's scandir sorts them (strcmp). */
static ent_t *list_dir(walk_t *w, int dirfd, size_t *n)
{
    *n = 0;
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return NULL;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return NULL;
    }
    size_t cap = 0;
    ent_t *v = NULL;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        /* Node reads names as UTF-8 with U+FFFD for bad bytes, so the
         * reference can never open such an entry: it is not there for it */
        if (!tools_utf8_valid(de->d_name, strlen(de->d_name))) continue;
        if (++w->visits > WALK_MAX_VISITS) {
            w->stop = true;
            break;
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 32;
            ent_t *nv = realloc(v, cap * sizeof(*nv));
            if (!nv) break;
            v = nv;
        }
        unsigned char type = de->d_type;
        if (type == DT_UNKNOWN) {
            struct stat st;
            if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
                type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : S_ISLNK(st.st_mode) ? DT_LNK : DT_UNKNOWN;
        }
        v[*n].name = strdup(de->d_name);
        v[*n].type = type;
        if (v[*n].name) (*n)++;
    }
    closedir(d);
    if (*n > 1) qsort(v, *n, sizeof(*v), ent_cmp);
    return v;
}

static void ents_free(ent_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++) free(v[i].name);
    free(v);
}

static char *join_rel(const char *rel, const char *name)
{
    char *s = NULL;
    if (asprintf(&s, "%s%s%s", rel, *rel ? "/" : "", name) < 0) return NULL;
    return s;
}

static void walk_at(walk_t *w, int dirfd, const char *rel, size_t idx, int depth);

/* Descend into name (a directory entry of dirfd) and continue at idx. */
static void descend(walk_t *w, int dirfd, const char *rel, const char *name, size_t idx, int depth, bool follow)
{
    if (depth >= WALK_MAX_DEPTH || w->stop) return;
    /* the reference's exclude: never enter .git or node_modules */
    if (skip_name(name)) return;
    _cleanup_free_ char *sub = join_rel(rel, name);
    if (!sub) return;
    int fd;
    if (follow) {
        /* a symlink named by a literal segment: resolve it like a tool path
         * and go on only if it stays inside the root */
        _cleanup_free_ char *lex = NULL;
        if (asprintf(&lex, "%s/%s", w->root, sub) < 0) return;
        _cleanup_free_ char *real = NULL;
        if (tools_canonicalize(lex, &real) < 0 || !tools_path_within(w->root, real)) return;
        const char *r = real + w->rootlen;
        while (*r == '/') r++;
        fd = *r ? tools_openat_beneath(w->rootfd, r, O_PATH | O_DIRECTORY, 0) : fcntl(w->rootfd, F_DUPFD_CLOEXEC, 0);
    } else {
        fd = tools_openat_beneath(dirfd, name, O_PATH | O_DIRECTORY, 0);
    }
    if (fd < 0) return;
    walk_at(w, fd, sub, idx, depth + 1);
    close(fd);
}

static void walk_at(walk_t *w, int dirfd, const char *rel, size_t idx, int depth)
{
    if (w->stop || idx >= w->nseg) return;
    const seg_t *s = &w->segs[idx];
    bool last = idx + 1 == w->nseg;
    if (s->kind == SEG_LITERAL) {
        struct stat st;
        if (fstatat(dirfd, s->text, &st, AT_SYMLINK_NOFOLLOW) < 0) return;
        if (last) {
            if (S_ISREG(st.st_mode)) {
                _cleanup_free_ char *sub = join_rel(rel, s->text);
                if (sub) add_match(w, sub);
            }
            return;
        }
        if (S_ISDIR(st.st_mode))
            descend(w, dirfd, rel, s->text, idx + 1, depth, false);
        else if (S_ISLNK(st.st_mode))
            descend(w, dirfd, rel, s->text, idx + 1, depth, true);
        return;
    }
    size_t n;
    ent_t *ents = list_dir(w, dirfd, &n);
    if (!ents) return;
    for (size_t i = 0; i < n && !w->stop; i++) {
        const char *name = ents[i].name;
        unsigned char type = ents[i].type;
        if (s->kind == SEG_GLOBSTAR) {
            /* under **, .git and node_modules are not even matched */
            if (skip_name(name)) continue;
            bool dot = name[0] == '.';
            if (last) {
                if (dot) continue;
                if (type == DT_REG) {
                    _cleanup_free_ char *sub = join_rel(rel, name);
                    if (sub) add_match(w, sub);
                } else if (type == DT_DIR)
                    descend(w, dirfd, rel, name, idx, depth, false);
                continue;
            }
            /* ** matching zero directories here: the next segment on this entry */
            const seg_t *next = &w->segs[idx + 1];
            bool next_last = idx + 2 == w->nseg;
            if (next->kind != SEG_GLOBSTAR && seg_match(w, next, name)) {
                if (next_last) {
                    if (type == DT_REG) {
                        _cleanup_free_ char *sub = join_rel(rel, name);
                        if (sub) add_match(w, sub);
                    }
                } else if (type == DT_DIR)
                    descend(w, dirfd, rel, name, idx + 2, depth, false);
            }
            if (type == DT_DIR && !dot) descend(w, dirfd, rel, name, idx, depth, false);
            continue;
        }
        if (!seg_match(w, s, name)) continue;
        if (last) {
            if (type == DT_REG) {
                _cleanup_free_ char *sub = join_rel(rel, name);
                if (sub) add_match(w, sub);
            }
        } else if (type == DT_DIR)
            descend(w, dirfd, rel, name, idx + 1, depth, false);
    }
    ents_free(ents, n);
}

static int match_cmp(const void *a, const void *b)
{
    const match_t *x = a, *y = b;
    if (x->mtime != y->mtime) return x->mtime < y->mtime ? 1 : -1;
    return x->order < y->order ? -1 : x->order > y->order;
}

static int path_cmp(const void *a, const void *b)
{
    const match_t *x = a, *y = b;
    int c = strcmp(x->path, y->path);
    if (c) return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

static bool pattern_can_ascend(const char *p)
{
    const char *s = p;
    for (;;) {
        size_t n = strcspn(s, "\\/{},");
        if (n == 2 && s[0] == '.' && s[1] == '.') return true;
        if (!s[n]) return false;
        s += n + 1;
    }
}

json_t *tools_glob(tools_t *t, json_t *input)
{
    json_t *jp = json_object_get(input, "pattern");
    json_t *jpath = json_object_get(input, "path");
    if (jp && !json_is_null(jp) && !json_is_string(jp)) return tools_errorf("glob: pattern must be a string");
    if (jpath && !json_is_null(jpath) && !json_is_string(jpath)) return tools_errorf("glob: path must be a string");
    const char *pattern = json_is_string(jp) ? json_string_value(jp) : NULL;
    if (!pattern || !*pattern) return tools_errorf("glob: pattern is required");
    if (pattern[0] == '/')
        return tools_errorf("glob: absolute pattern not permitted; pass a relative pattern (and optionally path)");
    if (pattern_can_ascend(pattern)) return tools_errorf("glob: \"..\" is not permitted in the pattern");
    if (json_string_length(jp) > MAX_PATTERN_BYTES)
        return tools_errorf("glob: the pattern is longer than %d bytes", MAX_PATTERN_BYTES);
    if (strlen(pattern) != json_string_length(jp)) return tools_text_result(false, "no matches", 10);
    tools_target tg = {0};
    const char *sp = json_is_string(jpath) ? json_string_value(jpath) : NULL;
    int rootfd;
    _cleanup_close_ int ownfd = -1;
    if (sp && *sp) {
        json_t *err = tools_resolve(t, sp, json_string_length(jpath), &tg);
        if (err) return err;
        ownfd = tools_open_target(t, &tg, O_PATH | O_DIRECTORY, 0);
        rootfd = ownfd;
    } else {
        if (t->roots[0].fd < 0) return tools_errorf("glob: the working directory is not available");
        rootfd = t->roots[0].fd;
    }
    walk_t w = {.t = t, .root = tg.real ? tg.real : t->roots[0].real};
    w.rootlen = strlen(w.root);
    w.rootfd = rootfd;
    w.md = pcre2_match_data_create(1, NULL);
    char **pats = NULL;
    size_t np = 0, capp = 0;
    int rc = expand(pattern, &pats, &np, &capp, 0);
    bool invalid = false;
    for (size_t i = 0; rc == 0 && rootfd >= 0 && i < np && !w.stop; i++) {
        size_t nseg = 0;
        seg_t *segs = parse_pattern(pats[i], &nseg, &invalid);
        if (!segs) continue;
        w.segs = segs;
        w.nseg = nseg;
        walk_at(&w, rootfd, "", 0, 0);
        segs_free(segs, nseg);
    }
    for (size_t i = 0; i < np; i++) free(pats[i]);
    free(pats);
    pcre2_match_data_free(w.md);
    /* one result per path (brace alternatives may find a file twice) */
    if (w.nm > 1) qsort(w.m, w.nm, sizeof(*w.m), path_cmp);
    size_t u = 0;
    for (size_t i = 0; i < w.nm; i++) {
        if (u > 0 && !strcmp(w.m[u - 1].path, w.m[i].path)) {
            free(w.m[i].path);
            continue;
        }
        w.m[u++] = w.m[i];
    }
    w.nm = u;
    if (w.nm > 1) qsort(w.m, w.nm, sizeof(*w.m), match_cmp);
    json_t *res;
    if (rc == -E2BIG)
        res = tools_errorf("glob: the pattern expands to more than %d patterns (or nests braces deeper than %d)",
                           MAX_EXPANSIONS, MAX_BRACE_DEPTH);
    else if (rc < 0)
        res = tools_errorf("glob: out of memory");
    else if (w.nm == 0)
        res = tools_text_result(false, "no matches", 10);
    else {
        _cleanup_buf_ buf_t out;
        buf_init(&out, 0);
        for (size_t i = 0; i < w.nm && i < GLOB_RESULT_LIMIT; i++) {
            if (i) buf_putc(&out, '\n');
            buf_puts(&out, w.m[i].path);
        }
        res = tools_text_result(false, out.data, out.len);
    }
    for (size_t i = 0; i < w.nm; i++) free(w.m[i].path);
    free(w.m);
    tools_target_free(&tg);
    return res;
}
