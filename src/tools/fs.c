/* The file tools read, write and edit, with the reference's texts and limits.
 * Every file is reached through tools_resolve() + an openat2 beneath its
 * root (see path.c); sizes are checked on the open file before anything is
 * read, so a huge file or a FIFO never costs memory or blocks. Writes are
 * atomic (sibling temp file, fsync, rename), as the reference does them.
 * Never follows a symlink when opening; never reads more than the limit.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/b64.h"
#include "base/buf.h"
#include "base/cleanup.h"
#include "tools/internal.h"

#define MAX_FILE_BYTES (256 * 1024)
#define READ_CHUNK (64 * 1024)
/* Images and PDFs come back as base64 blocks (the Python reference's caps). */
#define MAX_IMAGE_BASE64_BYTES (5 * 1024 * 1024)
#define MAX_IMAGE_BYTES ((MAX_IMAGE_BASE64_BYTES / 4) * 3)
#define MAX_PDF_BYTES (20 * 1024 * 1024)

/* A required string field: NULL (and *len 0) when absent, null or empty.
 * Returns false (with *bad set) when present with another type. */
static const char *str_field(json_t *input, const char *key, size_t *len, bool *bad)
{
    json_t *v = json_object_get(input, key);
    *len = 0;
    if (!v || json_is_null(v)) return NULL;
    if (!json_is_string(v)) {
        *bad = true;
        return NULL;
    }
    *len = json_string_length(v);
    return *len ? json_string_value(v) : NULL;
}

/* JS's String(number) for the integers and simple fractions view_range holds. */
static void js_num(buf_t *b, double d)
{
    if (d == trunc(d) && fabs(d) < 1e21)
        buf_printf(b, "%.0f", d);
    else
        buf_printf(b, "%.17g", d);
}

/* Open a resolved target for reading, refusing non-regular files without
 * opening them for I/O (an O_PATH open never blocks on a FIFO). */
static int open_regular(tools_t *t, const tools_target *tg, struct stat *st, bool *not_regular)
{
    *not_regular = false;
    _cleanup_close_ int pfd = tools_open_target(t, tg, O_PATH, 0);
    if (pfd < 0) return pfd;
    if (fstat(pfd, st) < 0) return -errno;
    if (!S_ISREG(st->st_mode)) {
        *not_regular = true;
        return -EINVAL;
    }
    int fd = tools_open_target(t, tg, O_RDONLY | O_NOCTTY | O_NONBLOCK, 0);
    if (fd < 0) return fd;
    struct stat st2;
    if (fstat(fd, &st2) < 0 || st2.st_ino != st->st_ino || st2.st_dev != st->st_dev || !S_ISREG(st2.st_mode)) {
        close(fd);
        *not_regular = true; /* swapped between the two opens */
        return -EINVAL;
    }
    *st = st2;
    return fd;
}

/* Read at most max bytes (the file may grow after fstat). */
static int read_all(int fd, buf_t *b, size_t max)
{
    for (;;) {
        if (b->len >= max) return 0;
        size_t want = max - b->len < READ_CHUNK ? max - b->len : READ_CHUNK;
        if (buf_reserve(b, want) < 0) return -ENOMEM;
        ssize_t r = read(fd, b->data + b->len, want);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (r == 0) return 0;
        b->len += (size_t)r;
        b->data[b->len] = 0;
    }
}

static const char *media_type(const char *real)
{
    const char *slash = strrchr(real, '/');
    const char *base = slash ? slash + 1 : real;
    const char *dot = strrchr(base, '.');
    if (!dot || dot == base) return NULL;
    static const struct {
        const char *ext, *type;
    } map[] = {{".png", "image/png"},   {".jpg", "image/jpeg"}, {".jpeg", "image/jpeg"},
               {".gif", "image/gif"},   {".webp", "image/webp"}, {".pdf", "application/pdf"}};
    for (size_t i = 0; i < ARRAY_SIZE(map); i++)
        if (!strcasecmp(dot, map[i].ext)) return map[i].type;
    return NULL;
}

static json_t *read_media(int fd, const struct stat *st, const char *file_path, const char *type)
{
    bool pdf = !strcmp(type, "application/pdf");
    long long limit = pdf ? MAX_PDF_BYTES : MAX_IMAGE_BYTES;
    if (st->st_size > limit)
        return tools_errorf("read: %s is %lld bytes, exceeds %lld-byte limit for image/PDF files.", file_path,
                            (long long)st->st_size, limit);
    _cleanup_buf_ buf_t data;
    buf_init(&data, 0);
    int rc = read_all(fd, &data, (size_t)limit);
    if (rc < 0) return tools_fs_error_result("read", -rc, file_path);
    _cleanup_free_ char *b64 = b64_encode_alloc(data.data ? data.data : "", data.len, false, true);
    if (!b64) return tools_errorf("read: out of memory");
    json_t *block = json_pack("{s:s, s:{s:s, s:s, s:s}}", "type", pdf ? "document" : "image", "source", "type",
                              "base64", "media_type", type, "data", b64);
    return json_pack("{s:b, s:[o]}", "is_error", 0, "content", block);
}

/* The reference's LineRangeCollector: lines [start_line, end_line] of a file
 * too large to read whole, the selection capped at MAX_FILE_BYTES. */
static json_t *read_range_streaming(int fd, const char *file_path, double start_line, double end_line)
{
    double start = fmax(0, start_line - 1);
    double end = end_line > 0 ? end_line : INFINITY;
    if (end <= start) return tools_text_result(false, "", 0);
    _cleanup_buf_ buf_t out;
    buf_init(&out, 0);
    _cleanup_free_ char *chunk = malloc(READ_CHUNK);
    if (!chunk) return tools_errorf("read: out of memory");
    double line = 0;
    for (;;) {
        ssize_t r = read(fd, chunk, READ_CHUNK);
        if (r < 0) {
            if (errno == EINTR) continue;
            return tools_fs_error_result("read", errno, file_path);
        }
        if (r == 0) break;
        size_t ls = 0, n = (size_t)r;
        while (ls < n && line < end) {
            char *nl = memchr(chunk + ls, '\n', n - ls);
            size_t le = nl ? (size_t)(nl - chunk) : n;
            if (line >= start) {
                buf_append(&out, chunk + ls, le - ls);
                if (nl && line + 1 < end) buf_putc(&out, '\n');
                if (out.len > MAX_FILE_BYTES) {
                    _cleanup_buf_ buf_t m;
                    buf_init(&m, 0);
                    if (end - start == 1) {
                        buf_printf(&m, "read: line ");
                        js_num(&m, start + 1);
                        buf_printf(&m,
                                   " of %s alone exceeds %d-byte limit. The read tool cannot return part of a "
                                   "line, so view_range cannot narrow this further.",
                                   file_path, MAX_FILE_BYTES);
                    } else {
                        buf_puts(&m, "read: view_range [");
                        js_num(&m, start_line);
                        buf_puts(&m, ", ");
                        js_num(&m, end_line);
                        buf_printf(&m,
                                   "] of %s exceeds %d-byte limit. Narrow the view_range to read a smaller "
                                   "portion.",
                                   file_path, MAX_FILE_BYTES);
                    }
                    return tools_text_result(true, m.data, m.len);
                }
            }
            if (!nl) break;
            line++;
            ls = le + 1;
        }
        if (line >= end) break;
    }
    _cleanup_buf_ buf_t text;
    buf_init(&text, 0);
    tools_utf8_sanitize(&text, out.data ? out.data : "", out.len);
    return tools_text_result(false, text.data, text.len);
}

json_t *tools_read(tools_t *t, json_t *input)
{
    size_t plen;
    bool bad = false;
    const char *file_path = str_field(input, "file_path", &plen, &bad);
    if (bad) return tools_errorf("read: file_path must be a string");
    if (!file_path) return tools_errorf("read: file_path is required");
    tools_target tg;
    json_t *err = tools_resolve(t, file_path, plen, &tg);
    if (err) return err;
    json_t *vr = json_object_get(input, "view_range");
    bool has_range = false;
    double start_line = 0, end_line = 0;
    if (vr && !json_is_null(vr)) {
        if (!json_is_array(vr) || (json_array_size(vr) != 0 && json_array_size(vr) != 2) ||
            (json_array_size(vr) == 2 &&
             (!json_is_number(json_array_get(vr, 0)) || !json_is_number(json_array_get(vr, 1))))) {
            tools_target_free(&tg);
            return tools_errorf("read: view_range must be [start_line, end_line]");
        }
        if (json_array_size(vr) == 2) {
            has_range = true;
            start_line = json_number_value(json_array_get(vr, 0));
            end_line = json_number_value(json_array_get(vr, 1));
        }
    }
    struct stat st;
    bool not_regular;
    _cleanup_close_ int fd = open_regular(t, &tg, &st, &not_regular);
    const char *type = media_type(tg.real);
    tools_target_free(&tg);
    if (fd < 0) {
        if (not_regular) return tools_errorf("read: %s is not a regular file", file_path);
        return tools_fs_error_result("read", -fd, file_path);
    }
    if (type) {
        if (has_range) return tools_errorf("read: view_range is not supported for image/PDF files");
        return read_media(fd, &st, file_path, type);
    }
    if (st.st_size > MAX_FILE_BYTES) {
        if (!has_range)
            return tools_errorf("read: %s is %lld bytes, exceeds %d-byte limit. Use the view_range parameter to "
                                "read specific line ranges, e.g. view_range: [1, 500].",
                                file_path, (long long)st.st_size, MAX_FILE_BYTES);
        return read_range_streaming(fd, file_path, start_line, end_line);
    }
    _cleanup_buf_ buf_t data;
    buf_init(&data, 0);
    int rc = read_all(fd, &data, MAX_FILE_BYTES + 1);
    if (rc < 0) return tools_fs_error_result("read", -rc, file_path);
    const char *d = data.data ? data.data : "";
    size_t dlen = data.len;
    if (has_range) {
        /* lines = data.split('\n'); lines.slice(start, end).join('\n') */
        size_t nlines = 1;
        for (size_t i = 0; i < dlen; i++) nlines += d[i] == '\n';
        double start = fmax(0, start_line - 1);
        double end = end_line > 0 ? end_line : (double)nlines;
        if (end > (double)nlines) end = (double)nlines;
        size_t s = (size_t)trunc(fmin(start, (double)nlines)), e = (size_t)trunc(end);
        if (e <= s) return tools_text_result(false, "", 0);
        size_t line = 0, from = 0, to = dlen;
        bool from_set = s == 0;
        for (size_t i = 0; i < dlen; i++) {
            if (d[i] != '\n') continue;
            line++;
            if (!from_set && line == s) {
                from = i + 1;
                from_set = true;
            }
            if (line == e) {
                to = i;
                break;
            }
        }
        d += from;
        dlen = to - from;
    }
    _cleanup_buf_ buf_t text;
    buf_init(&text, 0);
    if (tools_utf8_sanitize(&text, d, dlen) < 0) return tools_errorf("read: out of memory");
    return tools_text_result(false, text.data, text.len);
}

/* mkdir -p of the directory part of rel beneath dirfd (mode 0700, as the
 * reference creates them); returns an O_PATH fd of the parent or -errno. */
static int open_parent(int rootfd, const char *rel, bool create, const char **name)
{
    const char *slash = strrchr(rel, '/');
    *name = slash ? slash + 1 : rel;
    _cleanup_close_ int cur = fcntl(rootfd, F_DUPFD_CLOEXEC, 0);
    if (cur < 0) return -errno;
    if (!slash) return steal_fd(&cur);
    _cleanup_free_ char *dir = strndup(rel, (size_t)(slash - rel));
    if (!dir) return -ENOMEM;
    char *save = NULL;
    for (char *c = strtok_r(dir, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        int fd = tools_openat_beneath(cur, c, O_PATH | O_DIRECTORY, 0);
        if (fd == -ENOENT && create) {
            if (mkdirat(cur, c, 0700) < 0 && errno != EEXIST) return -errno;
            fd = tools_openat_beneath(cur, c, O_PATH | O_DIRECTORY, 0);
        }
        if (fd == -ENOTDIR && create) {
            /* Node's mkdir -p: EEXIST when the parent itself is a file,
             * ENOTDIR when a component above it is */
            return save && *save ? -ENOTDIR : -EEXIST;
        }
        if (fd < 0) return fd;
        close(cur);
        cur = fd;
    }
    return steal_fd(&cur);
}

/* The reference's atomicWriteFile(): temp sibling, fsync, rename; a new
 * file is 0600, an existing one keeps its mode. */
static int atomic_write(int dirfd, const char *name, const char *data, size_t len)
{
    struct stat st;
    bool existing = fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
    unsigned char r[8];
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) memset(r, 0, sizeof(r));
    char tmp[64];
    snprintf(tmp, sizeof(tmp), ".tmp-%d-%02x%02x%02x%02x%02x%02x%02x%02x", (int)getpid(), r[0], r[1], r[2], r[3],
             r[4], r[5], r[6], r[7]);
    int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return -errno;
    int rc = 0;
    if (existing && fchmod(fd, st.st_mode & 0777) < 0) rc = -errno;
    for (size_t off = 0; rc == 0 && off < len;) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0) {
            if (errno == EINTR) continue;
            rc = -errno;
        } else
            off += (size_t)w;
    }
    if (rc == 0 && fsync(fd) < 0) rc = -errno;
    if (close(fd) < 0 && rc == 0) rc = -errno;
    if (rc == 0 && renameat(dirfd, tmp, dirfd, name) < 0) rc = -errno;
    if (rc < 0) unlinkat(dirfd, tmp, 0);
    return rc;
}

static json_t *write_target(tools_t *t, const tools_target *tg, bool create_parents, const char *data, size_t len,
                            int *err_out)
{
    (void)t;
    const char *name;
    if (!strcmp(tg->rel, ".")) {
        *err_out = EISDIR;
        return NULL;
    }
    _cleanup_close_ int dirfd = open_parent(t->roots[tg->root].fd, tg->rel, create_parents, &name);
    if (dirfd < 0) {
        *err_out = -dirfd;
        return NULL;
    }
    int rc = atomic_write(dirfd, name, data, len);
    *err_out = rc < 0 ? -rc : 0;
    return NULL;
}

json_t *tools_write(tools_t *t, json_t *input)
{
    size_t plen, clen;
    bool bad = false;
    const char *file_path = str_field(input, "file_path", &plen, &bad);
    if (bad) return tools_errorf("write: file_path must be a string");
    if (!file_path) return tools_errorf("write: file_path is required");
    const char *content = str_field(input, "content", &clen, &bad);
    if (bad) return tools_errorf("write: content must be a string");
    tools_target tg;
    json_t *err = tools_resolve(t, file_path, plen, &tg);
    if (err) return err;
    const char *ro = tools_read_only_root(t, tg.real);
    if (ro) {
        tools_target_free(&tg);
        return tools_errorf("write: %s is inside read-only directory %s", file_path, ro);
    }
    int e = 0;
    write_target(t, &tg, true, content ? content : "", clen, &e);
    tools_target_free(&tg);
    if (e) return tools_fs_error_result("write", e, file_path);
    _cleanup_free_ char *msg = NULL;
    if (asprintf(&msg, "wrote %zu bytes to %s", clen, file_path) < 0) return NULL;
    return tools_text_result(false, msg, strlen(msg));
}

json_t *tools_edit(tools_t *t, json_t *input)
{
    size_t plen, olen, nlen;
    bool bad = false;
    const char *file_path = str_field(input, "file_path", &plen, &bad);
    if (bad) return tools_errorf("edit: file_path must be a string");
    if (!file_path) return tools_errorf("edit: file_path is required");
    const char *old_s = str_field(input, "old_string", &olen, &bad);
    if (bad) return tools_errorf("edit: old_string must be a string");
    if (!old_s) return tools_errorf("edit: old_string is required");
    const char *new_s = str_field(input, "new_string", &nlen, &bad);
    if (bad || !json_is_string(json_object_get(input, "new_string")))
        return tools_errorf("edit: new_string must be a string");
    if (!new_s) new_s = "";
    json_t *jra = json_object_get(input, "replace_all");
    bool replace_all = jra && json_is_true(jra);
    tools_target tg;
    json_t *err = tools_resolve(t, file_path, plen, &tg);
    if (err) return err;
    const char *ro = tools_read_only_root(t, tg.real);
    if (ro) {
        tools_target_free(&tg);
        return tools_errorf("edit: %s is inside read-only directory %s", file_path, ro);
    }
    struct stat st;
    bool not_regular;
    _cleanup_close_ int fd = open_regular(t, &tg, &st, &not_regular);
    if (fd < 0) {
        tools_target_free(&tg);
        if (not_regular) return tools_errorf("edit: %s is not a regular file", file_path);
        return tools_fs_error_result("edit", -fd, file_path);
    }
    if (st.st_size > MAX_FILE_BYTES) {
        tools_target_free(&tg);
        return tools_errorf("edit: %s is %lld bytes, exceeds %d-byte limit. The edit tool loads the whole file and "
                            "cannot modify a file this large.",
                            file_path, (long long)st.st_size, MAX_FILE_BYTES);
    }
    _cleanup_buf_ buf_t raw;
    buf_init(&raw, 0);
    int rc = read_all(fd, &raw, MAX_FILE_BYTES + 1);
    if (rc < 0) {
        tools_target_free(&tg);
        return tools_fs_error_result("edit", -rc, file_path);
    }
    /* The reference edits the text decoded as UTF-8 (invalid bytes become U+FFFD). */
    _cleanup_buf_ buf_t data;
    buf_init(&data, 0);
    tools_utf8_sanitize(&data, raw.data ? raw.data : "", raw.len);
    const char *d = data.data ? data.data : "";
    size_t count = 0;
    for (const char *p = d; (p = memmem(p, data.len - (size_t)(p - d), old_s, olen)); p += olen) count++;
    if (count == 0) {
        tools_target_free(&tg);
        return tools_errorf("edit: old_string not found in %s", file_path);
    }
    if (!replace_all && count > 1) {
        tools_target_free(&tg);
        return tools_errorf("edit: old_string appears %zu times in %s (must be unique)", count, file_path);
    }
    _cleanup_buf_ buf_t upd;
    buf_init(&upd, 0);
    const char *p = d;
    for (size_t i = 0; i < (replace_all ? count : 1); i++) {
        const char *m = memmem(p, data.len - (size_t)(p - d), old_s, olen);
        buf_append(&upd, p, (size_t)(m - p));
        buf_append(&upd, new_s, nlen);
        p = m + olen;
    }
    buf_append(&upd, p, data.len - (size_t)(p - d));
    int e = 0;
    write_target(t, &tg, false, upd.data ? upd.data : "", upd.len, &e);
    tools_target_free(&tg);
    if (e) {
        _cleanup_buf_ buf_t m;
        buf_init(&m, 0);
        buf_puts(&m, "edit: write: ");
        tools_fs_error(&m, e, file_path);
        return tools_text_result(true, m.data, m.len);
    }
    _cleanup_free_ char *msg = NULL;
    if (asprintf(&msg, "edited %s (%zu replacement(s))", file_path, replace_all ? count : 1) < 0) return NULL;
    return tools_text_result(false, msg, strlen(msg));
}
