/* Safe extraction of a skill archive with libarchive (see skills.h). The
 * archive is untrusted: every member name is checked before anything is
 * created, every file is created O_EXCL|O_NOFOLLOW relative to a directory fd
 * of our own fresh stage, every directory is opened O_NOFOLLOW, sizes are
 * counted as read. Never follows a link, never creates one, never trusts a
 * header's size or mode, never leaves a partial tree at the destination. */
#include "base/lazy_archive.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/crypto.h"
#include "base/id.h"
#include "base/tree.h"
#include "skills/skills.h"

#define DIR_MODE     0700 /* fs-util.ts DIR_CREATE_MODE */
#define READ_CHUNK   (64 * 1024)
#define STAGE_PREFIX ".skill-stage-"
#define INCONSISTENT "skill archive listing is inconsistent; refusing to extract"

void skills_opts_default(skills_opts_t *l)
{
    l->owner_uid = (uid_t)-1;
    l->owner_gid = (gid_t)-1;
    l->max_total_bytes = SKILLS_DEFAULT_MAX_TOTAL_BYTES;
    l->max_entry_bytes = SKILLS_DEFAULT_MAX_ENTRY_BYTES;
    l->max_entries = SKILLS_DEFAULT_MAX_ENTRIES;
    l->max_path_len = SKILLS_DEFAULT_MAX_PATH_LEN;
    l->max_depth = SKILLS_DEFAULT_MAX_DEPTH;
}

typedef struct extract {
    struct archive *a;
    int stage_fd;
    skills_opts_t lim;
    skills_extract_stats_t st;
    char *buf;
    /* archiveTopDir() of skills.ts, computed over the plain members. */
    char *top;
    int top_differs;
    int nested;
} extract_t;

/* Hand a created file or directory to the configured owner. */
static int own(const extract_t *x, int fd, const char *member, shed_err *err)
{
    if (x->lim.owner_uid == (uid_t)-1 && x->lim.owner_gid == (gid_t)-1) return 0;
    if (fchown(fd, x->lim.owner_uid, x->lim.owner_gid) < 0)
        return err_set(err, errno, "skill archive: chown member '%s'", member);
    return 0;
}

static void cleanup_archivep(struct archive **a)
{
    if (*a) archive_read_free(*a);
}
#define _cleanup_archive_ __attribute__((cleanup(cleanup_archivep)))

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* assertSafeMemberNames: the trimmed name must not be absolute nor hold a
 * `..` component, splitting on '/' and '\\' alike. Applies to every member,
 * skipped ones included. */
static int member_name_safe(const char *raw)
{
    const char *b = raw, *e = raw + strlen(raw);
    while (b < e && is_space((unsigned char)*b)) b++;
    while (e > b && is_space((unsigned char)e[-1])) e--;
    if (b == e) return 1;
    if (*b == '/') return 0;
    const char *p = b;
    while (p <= e) {
        const char *q = p;
        while (q < e && *q != '/' && *q != '\\') q++;
        if (q - p == 2 && p[0] == '.' && p[1] == '.') return 0;
        p = q + 1;
    }
    return 1;
}

/* Split `name` (modified in place) into its components, dropping empty and
 * "." ones. Returns the count, or -1 past `max`. */
static int split_components(char *name, char **comps, int max)
{
    int n = 0;
    for (char *save = NULL, *c = strtok_r(name, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        if (!strcmp(c, ".")) continue;
        if (n >= max) return -1;
        comps[n++] = c;
    }
    return n;
}

/* mkdir (0700) and open one directory level below `dirfd`, never through a
 * link. A non-directory in the way is a conflict inside the archive. */
static int open_subdir(int dirfd, const char *comp, const char *member, int *created, shed_err *err)
{
    *created = 0;
    if (mkdirat(dirfd, comp, DIR_MODE) == 0)
        *created = 1;
    else if (errno != EEXIST)
        return err_set(err, errno, "skill archive: mkdir for member '%s'", member);
    int fd = openat(dirfd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOTDIR || errno == ELOOP)
            return err_msg(err, EEXIST,
                           "skill archive: member '%s' needs a directory where another member "
                           "is a file; refusing to extract",
                           member);
        return err_set(err, errno, "skill archive: open directory for member '%s'", member);
    }
    if (*created && fchmod(fd, DIR_MODE) < 0) {
        int e = errno;
        close(fd);
        return err_set(err, e, "skill archive: chmod directory for member '%s'", member);
    }
    return fd;
}

/* Walk comps[0..n-1) from the stage, creating directories; returns the fd of
 * the last directory (the stage itself dup'ed when n == 0). */
static int open_parent(extract_t *x, char **comps, int n, const char *member, shed_err *err)
{
    int fd = fcntl(x->stage_fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) return err_set(err, errno, "dup");
    for (int i = 0; i < n; i++) {
        int created;
        int sub = open_subdir(fd, comps[i], member, &created, err);
        close(fd);
        if (sub < 0) return sub;
        if (created) {
            x->st.dirs++;
            int r = own(x, sub, member, err);
            if (r < 0) {
                close(sub);
                return r;
            }
        }
        fd = sub;
    }
    return fd;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int extract_file(extract_t *x, int dirfd, const char *leaf, const char *member, mode_t perm,
                        shed_err *err)
{
    int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
    _cleanup_close_ int fd = openat(dirfd, leaf, flags, 0600);
    if (fd < 0 && errno == EEXIST) {
        /* A later member of the same name replaces the earlier one, as tar
         * and `unzip -o` do; a directory in the way is a conflict. */
        if (unlinkat(dirfd, leaf, 0) < 0)
            return err_msg(err, EEXIST,
                           "skill archive: member '%s' is both a directory and a file; refusing "
                           "to extract",
                           member);
        fd = openat(dirfd, leaf, flags, 0600);
    }
    if (fd < 0) return err_set(err, errno, "skill archive: create member '%s'", member);
    uint64_t entry = 0;
    for (;;) {
        la_ssize_t n = archive_read_data(x->a, x->buf, READ_CHUNK);
        if (n == 0) break;
        if (n < 0)
            return err_msg(err, EIO, "skill archive: read member '%s': %s", member,
                           archive_error_string(x->a) ? archive_error_string(x->a) : "error");
        entry += (uint64_t)n;
        x->st.bytes += (uint64_t)n;
        if (entry > x->lim.max_entry_bytes)
            return err_msg(err, EFBIG,
                           "skill archive: member '%s' is larger than %llu bytes; refusing to "
                           "extract",
                           member, (unsigned long long)x->lim.max_entry_bytes);
        if (x->st.bytes > x->lim.max_total_bytes)
            return err_msg(err, EFBIG,
                           "skill archive expands to more than %llu bytes; refusing to extract",
                           (unsigned long long)x->lim.max_total_bytes);
        int r = write_all(fd, x->buf, (size_t)n);
        if (r < 0) return err_set(err, -r, "skill archive: write member '%s'", member);
    }
    /* normalizeEntryModes: 0755 if any execute bit, else 0644. */
    if (fchmod(fd, (perm & 0111) ? 0755 : 0644) < 0)
        return err_set(err, errno, "skill archive: chmod member '%s'", member);
    int r = own(x, fd, member, err);
    if (r < 0) return r;
    x->st.files++;
    return 0;
}

static void note_top(extract_t *x, char **comps, int n)
{
    if (n == 0) return;
    if (!x->top)
        x->top = strdup(comps[0]);
    else if (strcmp(x->top, comps[0]) != 0)
        x->top_differs = 1;
    if (n > 1) x->nested = 1;
}

static int extract_entry(extract_t *x, struct archive_entry *e, shed_err *err)
{
    const char *raw = archive_entry_pathname(e);
    if (!raw) raw = archive_entry_pathname_utf8(e);
    if (!raw) return err_msg(err, EINVAL, "skill archive: a member has no readable name; refusing");
    size_t len = strlen(raw);
    if (len > x->lim.max_path_len)
        return err_msg(err, ENAMETOOLONG,
                       "skill archive: a member name is %zu bytes, over the %u-byte limit; "
                       "refusing to extract",
                       len, x->lim.max_path_len);
    if (!member_name_safe(raw))
        return err_msg(err, EPERM, "refusing to extract unsafe archive member: %s", raw);

    _cleanup_free_ char *copy = strdup(raw);
    _cleanup_free_ char **comps = calloc(x->lim.max_depth + 1, sizeof(char *));
    if (!copy || !comps) return err_set(err, ENOMEM, "skill archive");
    int n = split_components(copy, comps, (int)x->lim.max_depth);
    if (n < 0)
        return err_msg(err, ELOOP,
                       "skill archive: member '%s' is nested deeper than %u levels; refusing to "
                       "extract",
                       raw, x->lim.max_depth);
    for (int i = 0; i < n; i++) /* belt and braces: checked above already */
        if (!strcmp(comps[i], ".."))
            return err_msg(err, EPERM, "refusing to extract unsafe archive member: %s", raw);

    mode_t type = archive_entry_filetype(e);
    /* Links, devices, fifos, sockets and unknown types are excluded, not
     * rejected, as skills.ts does; a hardlink member may carry AE_IFREG. */
    if (archive_entry_hardlink(e) || (type != AE_IFREG && type != AE_IFDIR)) {
        x->st.skipped++;
        return 0;
    }
    if (n == 0) return 0; /* "./" or "": the stage itself */
    note_top(x, comps, n);

    if (type == AE_IFDIR) {
        _cleanup_close_ int fd = open_parent(x, comps, n, raw, err);
        return fd < 0 ? fd : 0;
    }
    _cleanup_close_ int dirfd = open_parent(x, comps, n - 1, raw, err);
    if (dirfd < 0) return dirfd;
    if (archive_entry_size_is_set(e) && archive_entry_size(e) > 0 &&
        (uint64_t)archive_entry_size(e) > x->lim.max_entry_bytes)
        return err_msg(err, EFBIG,
                       "skill archive: member '%s' is larger than %llu bytes; refusing to extract",
                       raw, (unsigned long long)x->lim.max_entry_bytes);
    return extract_file(x, dirfd, comps[n - 1], raw, archive_entry_perm(e), err);
}

static int setup_reader(struct archive *a, shed_err *err)
{
    /* Only the formats skills come in. Never archive_read_support_format_all:
     * mtree, for one, reads file contents from the host by path. */
    if (archive_read_support_format_tar(a) != ARCHIVE_OK ||
        archive_read_support_format_zip_seekable(a) != ARCHIVE_OK)
        return err_msg(err, ENOTSUP, "libarchive: tar/zip support missing: %s",
                       archive_error_string(a));
    /* ARCHIVE_WARN means an external program would run: refuse that too. */
    if (archive_read_support_filter_gzip(a) != ARCHIVE_OK ||
        archive_read_support_filter_bzip2(a) != ARCHIVE_OK ||
        archive_read_support_filter_xz(a) != ARCHIVE_OK)
        return err_msg(err, ENOTSUP,
                       "libarchive lacks built-in gzip/bzip2/xz support; install a libarchive "
                       "built with zlib, libbz2 and liblzma");
    return 0;
}

/* Random stage name beside the destination. */
static int make_stage(const extract_t *x, int parent_fd, char *name, size_t len, shed_err *err)
{
    for (int tries = 0; tries < 8; tries++) {
        unsigned char rnd[8];
        char hex[17];
        int r = id_random(rnd, sizeof rnd);
        if (r < 0) return err_set(err, -r, "getrandom");
        crypto_hex(rnd, sizeof rnd, hex);
        snprintf(name, len, STAGE_PREFIX "%s", hex);
        if (mkdirat(parent_fd, name, DIR_MODE) == 0) {
            int fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            int rc = fd < 0 ? err_set(err, errno, "open skill stage %s", name) : 0;
            if (rc == 0 && fchmod(fd, DIR_MODE) < 0)
                rc = err_set(err, errno, "chmod skill stage %s", name);
            if (rc == 0) rc = own(x, fd, name, err);
            if (rc == 0) return fd;
            if (fd >= 0) close(fd);
            unlinkat(parent_fd, name, AT_REMOVEDIR);
            return rc;
        }
        if (errno != EEXIST) return err_set(err, errno, "mkdir skill stage %s", name);
    }
    return err_msg(err, EEXIST, "mkdir skill stage: no free name");
}

/* Put the finished tree (src_name in src_fd) at `name` in parent_fd,
 * atomically replacing what was there; the replaced tree is left at src. */
static int promote(int src_fd, const char *src_name, int parent_fd, const char *name, shed_err *err)
{
    if (renameat2(src_fd, src_name, parent_fd, name, RENAME_NOREPLACE) == 0) return 0;
    if (errno != EEXIST) return err_set(err, errno, "rename the extracted skill to %s", name);
    if (renameat2(src_fd, src_name, parent_fd, name, RENAME_EXCHANGE) < 0)
        return err_set(err, errno, "replace skill directory %s", name);
    return 0;
}

static int extract_common(struct archive *a, int parent_fd, const char *name,
                          const skills_opts_t *opts, skills_extract_stats_t *stats, shed_err *err)
{
    if (!name || !*name || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
        return err_msg(err, EINVAL, "skill directory '%s' is not a single path component",
                       name ? name : "");
    extract_t x = {.a = a, .stage_fd = -1};
    if (opts)
        x.lim = *opts;
    else
        skills_opts_default(&x.lim);
    if (x.lim.max_depth == 0 || x.lim.max_depth > 4096) x.lim.max_depth = SKILLS_DEFAULT_MAX_DEPTH;

    char stage[64];
    x.stage_fd = make_stage(&x, parent_fd, stage, sizeof stage, err);
    if (x.stage_fd < 0) return x.stage_fd;
    x.buf = malloc(READ_CHUNK);
    int r = x.buf ? 0 : err_set(err, ENOMEM, "skill archive");

    uint32_t entries = 0;
    while (r == 0) {
        struct archive_entry *e;
        int ar = archive_read_next_header(a, &e);
        if (ar == ARCHIVE_EOF) break;
        if (ar != ARCHIVE_OK && ar != ARCHIVE_WARN) { /* RETRY too: no entry to read */
            const char *m = archive_error_string(a);
            r = err_msg(err, EINVAL, "skill archive: %s", m ? m : "cannot read the archive");
            break;
        }
        if (++entries > x.lim.max_entries) {
            r = err_msg(err, E2BIG, "skill archive has more than %u members; refusing to extract",
                        x.lim.max_entries);
            break;
        }
        r = extract_entry(&x, e, err);
    }

    int src_fd = parent_fd;
    const char *src_name = stage;
    if (r == 0 && x.top && !x.top_differs && x.nested) {
        /* Strip the wrapper: its contents become the skill directory. */
        int fd = openat(x.stage_fd, x.top, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            r = err_msg(err, EINVAL, INCONSISTENT);
        else
            close(fd);
        src_fd = x.stage_fd;
        src_name = x.top;
        x.st.stripped = 1;
    }
    if (r == 0) r = promote(src_fd, src_name, parent_fd, name, err);

    shed_err cerr = {0};
    int cr = tree_remove_at(parent_fd, stage, &cerr);
    if (cr < 0 && r == 0) {
        r = cr;
        if (err) {
            *err = cerr;
            err_wrap(err, "remove skill stage %s", stage);
        }
    }
    close(x.stage_fd);
    free(x.buf);
    free(x.top);
    if (r == 0 && stats) *stats = x.st;
    return r;
}

int skills_extract_fd(int archive_fd, int parent_fd, const char *name, const skills_opts_t *opts,
                      skills_extract_stats_t *stats, shed_err *err)
{
    _cleanup_archive_ struct archive *a = archive_read_new();
    if (!a) return err_set(err, ENOMEM, "archive_read_new");
    int r = setup_reader(a, err);
    if (r < 0) return r;
    if (lseek(archive_fd, 0, SEEK_SET) < 0)
        return err_set(err, errno, "skill archive: seek to the start");
    if (archive_read_open_fd(a, archive_fd, READ_CHUNK) != ARCHIVE_OK)
        return err_msg(err, EINVAL, "skill archive: %s",
                       archive_error_string(a) ? archive_error_string(a) : "cannot open");
    return extract_common(a, parent_fd, name, opts, stats, err);
}

int skills_extract_mem(const void *data, size_t len, int parent_fd, const char *name,
                       const skills_opts_t *opts, skills_extract_stats_t *stats, shed_err *err)
{
    _cleanup_archive_ struct archive *a = archive_read_new();
    if (!a) return err_set(err, ENOMEM, "archive_read_new");
    int r = setup_reader(a, err);
    if (r < 0) return r;
    if (archive_read_open_memory(a, data, len) != ARCHIVE_OK)
        return err_msg(err, EINVAL, "skill archive: %s",
                       archive_error_string(a) ? archive_error_string(a) : "cannot open");
    return extract_common(a, parent_fd, name, opts, stats, err);
}
