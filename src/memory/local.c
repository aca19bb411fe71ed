/* The local folder of one memory store (internal/file-store.ts of the SDK,
 * done with fds): every path is split into components and opened one level
 * at a time from the store's root fd with O_NOFOLLOW, so a symlink placed in
 * the folder (the sandbox can write there) is skipped or refused, never
 * followed. Never creates the root itself, never writes outside it. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/id.h"
#include "base/log.h"
#include "base/tree.h"
#include "memory/internal.h"
#include "memory/memory.h"

#define DIR_MODE  0700 /* OWNER_ONLY_DIR_MODE */
#define FILE_MODE 0600 /* OWNER_ONLY_FILE_MODE */
/* file-store.ts TIMESTAMP_TRUST_MARGIN_NS: files younger than this are
 * re-hashed on the next walk, because coarse clocks can repeat stamps. */
#define TRUST_MARGIN_NS 2000000000ll

typedef struct relpath {
    char *buf;
    char *c[MEMORY_MAX_DEPTH + 1];
    int n;
} relpath_t;

static void relpath_free(relpath_t *p)
{
    free(p->buf);
}
#define _cleanup_relpath_ __attribute__((cleanup(relpath_free)))

/* resolveUnderRoot: backslashes as slashes, leading slashes dropped, "" and
 * "." components dropped, ".." refused. */
static int split_rel(const char *rel, relpath_t *p, shed_err *err)
{
    p->n = 0;
    p->buf = strdup(rel);
    if (!p->buf) return err_set(err, ENOMEM, "memory path");
    for (char *q = p->buf; *q; q++)
        if (*q == '\\') *q = '/';
    for (char *save = NULL, *t = strtok_r(p->buf, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
        if (!strcmp(t, ".")) continue;
        if (!strcmp(t, "..")) return err_msg(err, EPERM, "path \"%s\" escapes the store root", rel);
        if (p->n >= MEMORY_MAX_DEPTH)
            return err_msg(err, ELOOP, "path \"%s\" is nested too deeply", rel);
        p->c[p->n++] = t;
    }
    return 0;
}

static int64_t st_ns(const struct timespec *t)
{
    return (int64_t)t->tv_sec * 1000000000ll + t->tv_nsec;
}

static int64_t wall_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return st_ns(&t);
}

/* Hand what the engine creates to the sandbox user, so the agent can read
 * and edit its memories; a failure is logged and the file stays root's. */
static void own(memory_local_t *l, int fd)
{
    if ((l->uid != (uid_t)-1 || l->gid != (gid_t)-1) && fchown(fd, l->uid, l->gid) < 0)
        log_warn("memory store: chown to %d:%d: %s", (int)l->uid, (int)l->gid, strerror(errno));
}

/* Open the directory comps[0..n) below the root; with `create`, missing
 * levels are made 0700. Returns the fd, 0-or-less: -ENOENT when absent. */
static int open_dir(memory_local_t *l, char **comps, int n, int create, const char *rel,
                    shed_err *err)
{
    int fd = fcntl(l->root_fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) return err_set(err, errno, "dup");
    for (int i = 0; i < n; i++) {
        if (create && mkdirat(fd, comps[i], DIR_MODE) < 0 && errno != EEXIST) {
            int e = errno;
            close(fd);
            return err_set(err, e, "mkdir for \"%s\"", rel);
        }
        int sub = openat(fd, comps[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int e = errno;
        close(fd);
        if (sub < 0) {
            if (e == ENOENT)
                return create ? err_set(err, e, "open directory for \"%s\"", rel) : -ENOENT;
            if (e == ELOOP) return err_msg(err, ELOOP, "path \"%s\" is a symlink", rel);
            if (e == ENOTDIR) return err_msg(err, ENOTDIR, "path \"%s\" is not a directory", rel);
            return err_set(err, e, "open directory for \"%s\"", rel);
        }
        if (create) own(l, sub);
        fd = sub;
    }
    return fd;
}

static int hash_fd(int fd, char sha[SHA256_HEX_LEN])
{
    crypto_sha256_ctx *c = crypto_sha256_begin();
    if (!c) return -ENOMEM;
    char buf[65536];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int e = errno;
            unsigned char dummy[SHA256_LEN];
            crypto_sha256_end(c, dummy);
            return -e;
        }
        if (n == 0) break;
        crypto_sha256_update(c, buf, (size_t)n);
    }
    unsigned char d[SHA256_LEN];
    crypto_sha256_end(c, d);
    crypto_hex(d, SHA256_LEN, sha);
    return 0;
}

/* hashViaCache: 1 with the sha; 0 when the file vanished or is not a plain
 * file any more; <0 on an I/O error. */
static int hash_at(memory_local_t *l, int dirfd, const char *name, const char *rel,
                   const struct stat *st, int64_t walk_start, char sha[SHA256_HEX_LEN],
                   shed_err *err)
{
    memory_map_entry_t *c = memory_map_get(&l->hash_cache, rel);
    int64_t mt = st_ns(&st->st_mtim), ct = st_ns(&st->st_ctim);
    if (c && c->a == mt && c->b == ct && c->c == (int64_t)st->st_size) {
        memcpy(sha, c->sha, SHA256_HEX_LEN);
        return 1;
    }
    _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT || errno == ELOOP) return 0;
        return err_set(err, errno, "open \"%s\"", rel);
    }
    struct stat fst;
    if (fstat(fd, &fst) < 0) return err_set(err, errno, "stat \"%s\"", rel);
    if (!S_ISREG(fst.st_mode)) return 0;
    int r = hash_fd(fd, sha);
    if (r < 0) return err_set(err, -r, "read \"%s\"", rel);
    mt = st_ns(&fst.st_mtim);
    ct = st_ns(&fst.st_ctim);
    if ((mt > ct ? mt : ct) < walk_start - TRUST_MARGIN_NS) {
        memory_map_entry_t *e = memory_map_put(&l->hash_cache, rel);
        if (e) {
            memcpy(e->sha, sha, SHA256_HEX_LEN);
            e->a = mt;
            e->b = ct;
            e->c = (int64_t)fst.st_size;
        }
    }
    return 1;
}

static int walk(memory_local_t *l, int dirfd, const char *prefix, int depth, int64_t walk_start,
                memory_map_t *files, shed_err *err)
{
    if (depth > MEMORY_MAX_DEPTH)
        return err_msg(err, ELOOP, "memory store folder is nested deeper than %d levels",
                       MEMORY_MAX_DEPTH);
    int dfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    if (dfd < 0) return err_set(err, errno, "dup");
    DIR *d = fdopendir(dfd);
    if (!d) {
        int e = errno;
        close(dfd);
        return err_set(err, e, "fdopendir");
    }
    rewinddir(d); /* the dup shares the offset a previous walk left at the end */
    int r = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno) r = err_set(err, errno, "readdir in the memory store folder");
            break;
        }
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        struct stat st;
        if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno == ENOENT) continue; /* a listing is a snapshot, not a lock */
            r = err_set(err, errno, "stat in the memory store folder");
            break;
        }
        char rel[4096];
        int len = snprintf(rel, sizeof rel, "%s%s%s", prefix, *prefix ? "/" : "", de->d_name);
        if (len < 0 || (size_t)len >= sizeof rel) continue;
        if (S_ISDIR(st.st_mode)) {
            _cleanup_close_ int sub =
                openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0) continue; /* replaced by a link or gone: not descended */
            r = walk(l, sub, rel, depth + 1, walk_start, files, err);
            if (r < 0) break;
        } else if (S_ISREG(st.st_mode)) {
            char sha[SHA256_HEX_LEN];
            int h = hash_at(l, dirfd, de->d_name, rel, &st, walk_start, sha, err);
            if (h < 0) {
                r = h;
                break;
            }
            if (h == 0) continue;
            if (files->len >= MEMORY_MAX_LOCAL_FILES) {
                r = err_msg(err, E2BIG, "memory store folder holds more than %d files",
                            MEMORY_MAX_LOCAL_FILES);
                break;
            }
            if (memory_map_set_sha(files, rel, sha) < 0) {
                r = err_set(err, ENOMEM, "memory scan");
                break;
            }
        }
    }
    closedir(d);
    return r;
}

int memory_local_scan(memory_local_t *l, const char *marker_sha, memory_map_t *files,
                      int *marker_ok, shed_err *err)
{
    *marker_ok = 0;
    int r = walk(l, l->root_fd, "", 0, wall_ns(), files, err);
    if (r < 0) return r;
    memory_map_entry_t *m = memory_map_get(files, MEMORY_MARKER_NAME);
    if (m) {
        *marker_ok = !strcmp(m->sha, marker_sha) ? 1 : -1; /* -1: present, wrong */
        memory_map_del(files, MEMORY_MARKER_NAME);
    }
    return 0;
}

int memory_local_hash(memory_local_t *l, const char *rel, char sha[SHA256_HEX_LEN], shed_err *err)
{
    _cleanup_relpath_ relpath_t p = {0};
    int r = split_rel(rel, &p, err);
    if (r < 0) return r;
    if (p.n == 0) return err_msg(err, EINVAL, "path \"%s\" is not a regular file", rel);
    _cleanup_close_ int dfd = open_dir(l, p.c, p.n - 1, 0, rel, err);
    if (dfd == -ENOENT) return 0;
    if (dfd < 0) return dfd;
    struct stat st;
    if (fstatat(dfd, p.c[p.n - 1], &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT) return 0;
        return err_set(err, errno, "stat \"%s\"", rel);
    }
    if (S_ISLNK(st.st_mode)) return err_msg(err, ELOOP, "path \"%s\" is a symlink", rel);
    if (!S_ISREG(st.st_mode)) return err_msg(err, EINVAL, "path \"%s\" is not a regular file", rel);
    /* the key as hashtree() spells it */
    char key[4096] = "";
    size_t o = 0;
    for (int i = 0; i < p.n; i++)
        o += (size_t)snprintf(key + o, sizeof key - o, "%s%s", i ? "/" : "", p.c[i]);
    r = hash_at(l, dfd, p.c[p.n - 1], key, &st, wall_ns(), sha, err);
    return r;
}

int memory_local_get(memory_local_t *l, const char *rel, size_t max, char **data, size_t *len,
                     shed_err *err)
{
    *data = NULL;
    *len = 0;
    _cleanup_relpath_ relpath_t p = {0};
    int r = split_rel(rel, &p, err);
    if (r < 0) return r;
    if (p.n == 0) return err_msg(err, EINVAL, "path \"%s\" is not a regular file", rel);
    _cleanup_close_ int dfd = open_dir(l, p.c, p.n - 1, 0, rel, err);
    if (dfd == -ENOENT) return 0;
    if (dfd < 0) return dfd;
    _cleanup_close_ int fd =
        openat(dfd, p.c[p.n - 1], O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return 0;
        if (errno == ELOOP) return err_msg(err, ELOOP, "path \"%s\" is a symlink", rel);
        return err_set(err, errno, "open \"%s\"", rel);
    }
    struct stat st;
    if (fstat(fd, &st) < 0) return err_set(err, errno, "stat \"%s\"", rel);
    if (!S_ISREG(st.st_mode)) return err_msg(err, EINVAL, "path \"%s\" is not a regular file", rel);
    if ((uint64_t)st.st_size > max)
        return err_msg(err, EFBIG, "path \"%s\" is %lld bytes, over the %zu-byte limit", rel,
                       (long long)st.st_size, max);
    char *buf = malloc(max + 1);
    if (!buf) return err_set(err, ENOMEM, "read \"%s\"", rel);
    size_t n = 0;
    for (;;) {
        ssize_t k = read(fd, buf + n, max + 1 - n);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) {
            int e = errno;
            free(buf);
            return err_set(err, e, "read \"%s\"", rel);
        }
        if (k == 0) break;
        n += (size_t)k;
        if (n > max) {
            free(buf);
            return err_msg(err, EFBIG, "path \"%s\" is over the %zu-byte limit", rel, max);
        }
    }
    buf[n] = 0;
    *data = buf;
    *len = n;
    return 1;
}

int memory_local_put(memory_local_t *l, const char *rel, const char *data, size_t len,
                     shed_err *err)
{
    size_t rl = strlen(rel);
    if (rl == 0 || rel[rl - 1] == '/' || rel[rl - 1] == '\\' || !strcmp(rel, ".") ||
        (rl >= 2 && rel[rl - 1] == '.' && (rel[rl - 2] == '/' || rel[rl - 2] == '\\')))
        return err_msg(err, EISDIR, "path \"%s\" is not a regular file", rel);
    _cleanup_relpath_ relpath_t p = {0};
    int r = split_rel(rel, &p, err);
    if (r < 0) return r;
    if (p.n == 0) return err_msg(err, EISDIR, "path \"%s\" is not a regular file", rel);
    _cleanup_close_ int dfd = open_dir(l, p.c, p.n - 1, 1, rel, err);
    if (dfd < 0) return dfd;
    unsigned char rnd[8];
    char tmp[40], hex[17];
    r = id_random(rnd, sizeof rnd);
    if (r < 0) return err_set(err, -r, "getrandom");
    crypto_hex(rnd, sizeof rnd, hex);
    snprintf(tmp, sizeof tmp, ".fs-%s.tmp", hex);
    _cleanup_close_ int fd =
        openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, FILE_MODE);
    if (fd < 0) return err_set(err, errno, "create \"%s\"", rel);
    const char *q = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, q, left);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
            int e = errno;
            unlinkat(dfd, tmp, 0);
            return err_set(err, e, "write \"%s\"", rel);
        }
        q += w;
        left -= (size_t)w;
    }
    own(l, fd);
    if (renameat(dfd, tmp, dfd, p.c[p.n - 1]) < 0) {
        int e = errno;
        unlinkat(dfd, tmp, 0);
        return err_set(err, e, "write \"%s\"", rel);
    }
    return 0;
}

int memory_local_remove(memory_local_t *l, const char *rel, shed_err *err)
{
    _cleanup_relpath_ relpath_t p = {0};
    int r = split_rel(rel, &p, err);
    if (r < 0) return r;
    if (p.n == 0) return 0; /* the root itself: banned, nothing done */
    _cleanup_close_ int dfd = open_dir(l, p.c, p.n - 1, 0, rel, err);
    if (dfd == -ENOENT) return 0;
    if (dfd < 0) return dfd;
    return tree_remove_at(dfd, p.c[p.n - 1], err);
}

int memory_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *e = p + n;
    while (p < e) {
        unsigned c = *p;
        if (c < 0x80) {
            p++;
            continue;
        }
        int k;
        unsigned min, cp;
        if ((c & 0xe0) == 0xc0)
            k = 1, min = 0x80, cp = c & 0x1f;
        else if ((c & 0xf0) == 0xe0)
            k = 2, min = 0x800, cp = c & 0x0f;
        else if ((c & 0xf8) == 0xf0)
            k = 3, min = 0x10000, cp = c & 0x07;
        else
            return 0;
        if (e - p <= k) return 0;
        for (int i = 1; i <= k; i++) {
            if ((p[i] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
        p += k + 1;
    }
    return 1;
}
