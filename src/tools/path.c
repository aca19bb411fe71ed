/* Path confinement for the file tools. A path the agent names is resolved
 * the way the reference does it (lexical "..", then every symlink including
 * the leaf, a dangling one too) and must land inside the workdir or an
 * allowed root; the file is then opened with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS) relative to the root's directory fd, so that a
 * component swapped for a symlink (or moved) between the check and the use
 * makes the open fail instead of leading out. The canonical string is only
 * used to find the root and the relative path; the kernel enforces the
 * boundary. Never follows a symlink in the final open; never trusts a path.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/cleanup.h"
#include "tools/internal.h"

#define MAX_SYMLINK_HOPS 40

/* path.normalize of an absolute path: collapse "//", "." and ".." (".." at
 * "/" stays "/"); no trailing slash except for "/" itself. */
char *tools_path_normalize(const char *abs)
{
    size_t n = strlen(abs);
    char *out = malloc(n + 2);
    if (!out) return NULL;
    size_t o = 0;
    out[o++] = '/';
    const char *p = abs;
    while (*p) {
        while (*p == '/') p++;
        if (!*p) break;
        const char *s = p;
        while (*p && *p != '/') p++;
        size_t len = (size_t)(p - s);
        if (len == 1 && s[0] == '.') continue;
        if (len == 2 && s[0] == '.' && s[1] == '.') {
            if (o > 1) {
                while (o > 1 && out[o - 1] != '/') o--;
                if (o > 1) o--; /* drop the '/' too, unless it is the root */
            }
            continue;
        }
        if (o > 1) out[o++] = '/';
        memcpy(out + o, s, len);
        o += len;
    }
    out[o] = 0;
    return out;
}

/* path.resolve(base, rel): rel absolute wins; result normalised. */
char *tools_path_resolve(const char *base, const char *rel)
{
    if (rel[0] == '/') return tools_path_normalize(rel);
    _cleanup_free_ char *joined = NULL;
    if (asprintf(&joined, "%s/%s", base, rel) < 0) return NULL;
    return tools_path_normalize(joined);
}

bool tools_path_within(const char *root, const char *p)
{
    size_t n = strlen(root);
    if (n == 1 && root[0] == '/') return p[0] == '/';
    return strncmp(p, root, n) == 0 && (p[n] == 0 || p[n] == '/');
}

static char *dirname_of(const char *p)
{
    const char *slash = strrchr(p, '/');
    if (!slash || slash == p) return strdup("/");
    return strndup(p, (size_t)(slash - p));
}

/* The reference's canonicalize(): realpath the longest existing prefix and
 * re-append the rest, but read any symlink leaf and continue from its target.
 * Returns 0 and a malloc'd path, or -errno. */
int tools_canonicalize(const char *abs, char **out)
{
    _cleanup_free_ char *prefix = strdup(abs);
    /* tail components, in reverse order of appearance */
    char *tail[PATH_MAX / 2];
    size_t ntail = 0;
    int hops = 0, rc = 0;
    if (!prefix) return -ENOMEM;
    for (;;) {
        char *real = realpath(prefix, NULL);
        if (real) {
            buf_t b;
            buf_init(&b, 0);
            buf_puts(&b, real);
            free(real);
            for (size_t i = ntail; i > 0; i--) {
                if (!(b.len == 1 && b.data[0] == '/')) buf_putc(&b, '/');
                buf_puts(&b, tail[i - 1]);
            }
            *out = buf_steal(&b);
            rc = *out ? 0 : -ENOMEM;
            break;
        }
        int rerr = errno;
        struct stat st;
        if (lstat(prefix, &st) < 0) {
            int lerr = errno;
            if (lerr != ENOENT && lerr != ENOTDIR) {
                rc = -lerr;
                break;
            }
            char *parent = dirname_of(prefix);
            if (!parent) {
                rc = -ENOMEM;
                break;
            }
            if (!strcmp(parent, prefix) || ntail >= ARRAY_SIZE(tail)) {
                free(parent);
                rc = ntail >= ARRAY_SIZE(tail) ? -ENAMETOOLONG : -lerr;
                break;
            }
            const char *base = strrchr(prefix, '/');
            tail[ntail] = strdup(base ? base + 1 : prefix);
            if (!tail[ntail]) {
                free(parent);
                rc = -ENOMEM;
                break;
            }
            ntail++;
            free(prefix);
            prefix = parent;
            continue;
        }
        if (!S_ISLNK(st.st_mode)) {
            rc = -rerr;
            break;
        }
        if (++hops > MAX_SYMLINK_HOPS) {
            rc = -ELOOP;
            break;
        }
        _cleanup_free_ char *dir = dirname_of(prefix);
        _cleanup_free_ char *parent = dir ? realpath(dir, NULL) : NULL;
        if (!parent) {
            rc = dir ? -errno : -ENOMEM;
            break;
        }
        char target[PATH_MAX];
        ssize_t tn = readlink(prefix, target, sizeof(target) - 1);
        if (tn < 0) {
            rc = -errno;
            break;
        }
        target[tn] = 0;
        buf_t b;
        buf_init(&b, 0);
        if (target[0] == '/') {
            buf_puts(&b, target);
        } else {
            buf_puts(&b, parent);
            buf_putc(&b, '/');
            buf_puts(&b, target);
        }
        for (size_t i = ntail; i > 0; i--) {
            buf_putc(&b, '/');
            buf_puts(&b, tail[i - 1]);
            free(tail[i - 1]);
        }
        ntail = 0;
        char *next = tools_path_normalize(b.data ? b.data : "/");
        buf_free(&b);
        if (!next) {
            rc = -ENOMEM;
            break;
        }
        free(prefix);
        prefix = next;
    }
    for (size_t i = 0; i < ntail; i++) free(tail[i]);
    return rc;
}

/* JSON.stringify of a string, for the reference's error texts. */
void tools_json_quote(buf_t *b, const char *s, size_t n)
{
    buf_putc(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': buf_puts(b, "\\\""); break;
        case '\\': buf_puts(b, "\\\\"); break;
        case '\b': buf_puts(b, "\\b"); break;
        case '\f': buf_puts(b, "\\f"); break;
        case '\n': buf_puts(b, "\\n"); break;
        case '\r': buf_puts(b, "\\r"); break;
        case '\t': buf_puts(b, "\\t"); break;
        default:
            if (c < 0x20)
                buf_printf(b, "\\u%04x", c);
            else
                buf_putc(b, (char)c);
        }
    }
    buf_putc(b, '"');
}

/* Node's error code names for the reference's fsErrorMessage() default case. */
const char *tools_errno_code(int e)
{
    const char *n = strerrorname_np(e);
    return n ? n : "EIO";
}

/* The reference's fsErrorMessage(): "<file>: <reason>". */
void tools_fs_error(buf_t *b, int e, const char *file)
{
    buf_puts(b, file);
    buf_puts(b, ": ");
    switch (e) {
    case ENOENT: buf_puts(b, "no such file or directory"); break;
    case EACCES:
    case EPERM: buf_puts(b, "permission denied"); break;
    case ENOTDIR: buf_puts(b, "not a directory"); break;
    case EISDIR: buf_puts(b, "is a directory"); break;
    case ELOOP: buf_puts(b, "too many levels of symbolic links"); break;
    case ENAMETOOLONG: buf_puts(b, "file name too long"); break;
    case ENOSPC: buf_puts(b, "no space left on device"); break;
    case EMFILE:
    case ENFILE: buf_puts(b, "too many open files"); break;
    default: buf_printf(b, "i/o error (%s)", tools_errno_code(e));
    }
}

json_t *tools_fs_error_result(const char *tool, int e, const char *file)
{
    _cleanup_buf_ buf_t b;
    buf_init(&b, 0);
    if (tool) buf_printf(&b, "%s: ", tool);
    tools_fs_error(&b, e, file);
    return tools_text_result(true, b.data, b.len);
}

/* Open a root's directory fd if not open yet (a memory store may appear
 * after tools_new). */
static int root_fd(tools_root *r)
{
    if (r->fd >= 0) return r->fd;
    char *real = realpath(r->path, NULL);
    if (!real) return -errno;
    int fd = open(real, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        free(real);
        return -e;
    }
    free(r->real);
    r->real = real;
    r->fd = fd;
    return fd;
}

json_t *tools_resolve(tools_t *t, const char *p, size_t plen, tools_target *out)
{
    memset(out, 0, sizeof(*out));
    tools_root *wd = &t->roots[0];
    if (root_fd(wd) < 0) return tools_errorf("the working directory %s is not available", wd->path);
    _cleanup_buf_ buf_t q;
    buf_init(&q, 0);
    tools_json_quote(&q, p, plen);
    if (memchr(p, 0, plen)) /* what Node's fs says about a NUL in a path */
        return tools_errorf("path %s: i/o error (ERR_INVALID_ARG_VALUE)", q.data);
    _cleanup_free_ char *lexical = tools_path_resolve(wd->real, p);
    if (!lexical) return tools_errorf("path %s: i/o error (ENOMEM)", q.data);
    char *real = NULL;
    int rc = tools_canonicalize(lexical, &real);
    if (rc < 0) {
        _cleanup_buf_ buf_t b;
        buf_init(&b, 0);
        buf_printf(&b, "path %s", q.data);
        _cleanup_buf_ buf_t m;
        buf_init(&m, 0);
        tools_fs_error(&m, -rc, b.data);
        return tools_text_result(true, m.data, m.len);
    }
    for (size_t i = 0; i < t->nroots; i++) {
        tools_root *r = &t->roots[i];
        if (root_fd(r) < 0) continue;
        if (tools_path_within(r->real, real)) {
            out->real = real;
            out->root = i;
            size_t n = strlen(r->real);
            const char *rel = real + n;
            if (n == 1) rel = real; /* root "/" */
            while (*rel == '/') rel++;
            out->rel = *rel ? rel : ".";
            return NULL;
        }
    }
    free(real);
    return tools_errorf("path %s is outside %s", q.data,
                        t->nroots > 1 ? "the session's working directory and its other permitted directories"
                                      : "the session's working directory");
}

void tools_target_free(tools_target *tg)
{
    free(tg->real);
    tg->real = NULL;
}

const char *tools_read_only_root(tools_t *t, const char *real)
{
    for (size_t i = 0; i < t->nro_roots; i++) {
        _cleanup_free_ char *lex = tools_path_normalize(t->ro_roots[i]);
        char *canon = NULL;
        if (!lex || tools_canonicalize(lex, &canon) < 0) continue;
        bool in = tools_path_within(canon, real);
        free(canon);
        if (in) return t->ro_roots[i];
    }
    return NULL;
}

static bool have_openat2 = true;

/* Walk rel component by component with O_NOFOLLOW, for kernels (or seccomp
 * policies) without openat2. ".." never occurs in a canonical rel. */
static int open_walk(int dirfd, const char *rel, int flags, mode_t mode)
{
    _cleanup_free_ char *copy = strdup(rel);
    if (!copy) return -ENOMEM;
    _cleanup_close_ int cur = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    if (cur < 0) return -errno;
    char *save = NULL;
    char *comp = strtok_r(copy, "/", &save);
    while (comp) {
        char *next = strtok_r(NULL, "/", &save);
        if (!strcmp(comp, "..")) return -EXDEV;
        if (!next) {
            int fd = openat(cur, comp, flags | O_NOFOLLOW | O_CLOEXEC, mode);
            if (fd < 0) return errno == ELOOP || errno == EMLINK ? -ELOOP : -errno;
            return fd;
        }
        int fd = openat(cur, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) return -errno;
        close(cur);
        cur = fd;
        comp = next;
    }
    int fd = openat(cur, ".", flags | O_CLOEXEC, mode);
    return fd < 0 ? -errno : fd;
}

int tools_openat_beneath(int dirfd, const char *rel, int flags, mode_t mode)
{
    if (have_openat2) {
        struct open_how how = {
            .flags = (uint64_t)(flags | O_CLOEXEC),
            .mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
            .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
        };
        long fd;
        do {
            fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
        } while (fd < 0 && errno == EAGAIN);
        if (fd >= 0) return (int)fd;
        if (errno != ENOSYS && errno != EPERM) return -errno;
        if (errno == ENOSYS) have_openat2 = false;
    }
    return open_walk(dirfd, rel, flags, mode);
}

int tools_open_target(tools_t *t, const tools_target *tg, int flags, mode_t mode)
{
    tools_root *r = &t->roots[tg->root];
    if (r->fd < 0) return -ENOENT;
    return tools_openat_beneath(r->fd, tg->rel, flags, mode);
}
