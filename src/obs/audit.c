/* The audit log: one JSON line per event, hash-chained (each line carries
 * the SHA-256 hex of the previous line's exact bytes, newline excluded), and
 * its verifier. Must never write a credential (every string is redacted,
 * credential-named keys are masked), never block the caller for long or
 * forever (a failed write is dropped, counted and reported in the chain
 * later), and never leave a partial line behind for the next record.
 *
 * Files: the live file is opts.path; rotation renames it to path.NNNNNN
 * (never renamed again) and starts a new live file whose first record names
 * the rotated file in "prev_file" and continues the chain. */
#include "obs/obs.h"

#include "obs/internal.h"

#include "base/cleanup.h"
#include "base/clock.h"
#include "base/crypto.h"
#include "base/json.h"
#include "base/log.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef SHED_VERSION
#define SHED_VERSION "unknown"
#endif

#define DROP_LOG_INTERVAL_MS 60000
#define SANITIZE_DEPTH       8
#define SANITIZE_ARRAY_MAX   256
#define ROTATE_DIGITS        6
#define AUDIT_QUEUE_MAX      8192       /* records waiting for the writer */
#define AUDIT_QUEUE_BYTES    (64 << 20) /* and their bytes */
#define AUDIT_CLOSE_WAIT_S   10

/* A record waiting for the writer thread: sanitized on the caller's thread,
 * chained (seq, prev) and written on the writer's. */
typedef struct audit_item {
    struct audit_item *next;
    char ts[RFC3339_LEN];
    char event[64];
    json_t *body;
    size_t bytes;
} audit_item;

struct audit {
    /* mu: the queue and the drop accounting. Never held across I/O, so
     * audit_write never waits for the disk. */
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_idle;
    audit_item *qhead, *qtail;
    size_t qlen, qbytes;
    bool busy, stopping, started;
    pthread_t thr;
    uint64_t dropped; /* records dropped since the last audit.records_dropped note */
    int drop_errno;
    int last_err;                                 /* for audit_flush */
    int64_t last_drop_log_ms, last_resume_log_ms; /* log at most once a minute */
    bool drop_logged, resume_logged;
    /* io_mu: the file and the chain position (the writer thread, open, close, head). */
    pthread_mutex_t io_mu;
    int fd;
    char *path; /* live file */
    char *dir;
    char *base;
    uint64_t size;
    uint64_t rotate_bytes;
    bool fsync_each;
    audit_content content;
    uint64_t seq;  /* seq of the last record in the chain */
    char head[65]; /* hash of the last record in the chain */
    unsigned rot_index;
    char cont_file[NAME_MAX + 1]; /* the file the live file continues ("" = none) */
};

int audit_parse_content(const char *s, audit_content *out)
{
    if (!s) return -EINVAL;
    if (!strcmp(s, "none"))
        *out = AUDIT_CONTENT_NONE;
    else if (!strcmp(s, "metadata"))
        *out = AUDIT_CONTENT_METADATA;
    else if (!strcmp(s, "full"))
        *out = AUDIT_CONTENT_FULL;
    else
        return -EINVAL;
    return 0;
}

static const char *content_name(audit_content c)
{
    return c == AUDIT_CONTENT_NONE ? "none" : c == AUDIT_CONTENT_FULL ? "full" : "metadata";
}

/* ------------------------------------------------------------ redaction */

/* Does this key name a credential? Split on non-alphanumerics and case
 * changes are ignored (lower-cased): "x-api-key", "sessions_token",
 * "Authorization", "clientSecret", "password" all match; "input_tokens" and
 * "keyboard" do not. */
static bool secret_key(const char *key)
{
    static const char *const EXACT[] = {"key",           "apikey",   "secret",     "secrets",
                                        "token",         "password", "passwd",     "passphrase",
                                        "authorization", "auth",     "cookie",     "credential",
                                        "credentials",   "bearer",   "privatekey", "pwd"};
    static const char *const SUFFIX[] = {"token", "secret", "password", "apikey", "privatekey"};
    char tok[64];
    size_t t = 0;
    for (const char *p = key;; p++) {
        if (*p && isalnum((unsigned char)*p)) {
            if (t + 1 < sizeof(tok)) tok[t++] = (char)tolower((unsigned char)*p);
            continue;
        }
        tok[t] = '\0';
        if (t) {
            for (size_t i = 0; i < ARRAY_SIZE(EXACT); i++)
                if (!strcmp(tok, EXACT[i])) return true;
            for (size_t i = 0; i < ARRAY_SIZE(SUFFIX); i++) {
                size_t sl = strlen(SUFFIX[i]);
                if (t > sl && !strcmp(tok + t - sl, SUFFIX[i])) return true;
            }
        }
        t = 0;
        if (!*p) break;
    }
    return false;
}

bool obs_may_hold_credential(const char *s)
{
    return strstr(s, "sk-") || strstr(s, "whsec_") || strcasestr(s, "bearer") ||
           strcasestr(s, "api-key");
}

/* Cut s (len bytes) at cap on a UTF-8 boundary, then redact credentials. */
static json_t *clean_string(const char *s, size_t len, size_t cap)
{
    size_t keep = len;
    if (keep > cap) {
        keep = cap;
        while (keep > 0 && ((unsigned char)s[keep] & 0xc0) == 0x80) keep--;
    }
    _cleanup_free_ char *cut = strndup(s, keep);
    if (!cut) return NULL;
    if (keep == len && !obs_may_hold_credential(cut)) {
        json_t *j = json_string(cut);
        return j ? j : json_string("[not valid UTF-8]");
    }
    size_t outlen = strlen(cut) * 3 + 64;
    _cleanup_free_ char *red = malloc(outlen + 64);
    if (!red) return NULL;
    size_t n = log_redact(cut, red, outlen);
    if (keep < len) snprintf(red + n, 64, "...[cut %zu bytes]", len - keep);
    json_t *j = json_string(red);
    return j ? j : json_string("[not valid UTF-8]");
}

static json_t *sanitize(json_t *v, size_t cap, int depth)
{
    if (depth > SANITIZE_DEPTH) return json_string("[nested too deep]");
    switch (json_typeof(v)) {
    case JSON_STRING:
        return clean_string(json_string_value(v), json_string_length(v), cap);
    case JSON_OBJECT: {
        json_t *o = json_object();
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x)
        {
            json_t *c = secret_key(k) ? json_string("[REDACTED]") : sanitize(x, cap, depth + 1);
            if (c) json_object_set_new(o, k, c);
        }
        return o;
    }
    case JSON_ARRAY: {
        json_t *a = json_array();
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x)
        {
            if (i == SANITIZE_ARRAY_MAX) {
                json_array_append_new(a, json_sprintf("...[%zu more]", json_array_size(v) - i));
                break;
            }
            json_t *c = sanitize(x, cap, depth + 1);
            if (c) json_array_append_new(a, c);
        }
        return a;
    }
    default:
        return json_copy(v);
    }
}

static size_t json_size(json_t *v)
{
    if (json_is_string(v)) return json_string_length(v);
    return json_dumpb(v, NULL, 0, JSON_COMPACT);
}

static bool reserved_key(const char *k)
{
    return !strcmp(k, "ts") || !strcmp(k, "seq") || !strcmp(k, "event") || !strcmp(k, "prev") ||
           !strcmp(k, "prev_file");
}

static bool content_key(const char *k)
{
    return !strcmp(k, "input") || !strcmp(k, "output") || !strcmp(k, "content");
}

/* Copy fields into rec under the content mode; lean=true drops all content
 * (the record would otherwise exceed AUDIT_MAX_LINE). */
static void add_fields(json_t *rec, json_t *fields, audit_content mode, bool lean)
{
    if (!json_is_object(fields)) return;
    const char *k;
    json_t *v;
    json_object_foreach(fields, k, v)
    {
        if (reserved_key(k)) continue;
        if (secret_key(k)) {
            json_object_set_new(rec, k, json_string("[REDACTED]"));
            continue;
        }
        if (!content_key(k)) {
            json_t *c = sanitize(v, AUDIT_FIELD_CAP, 0);
            if (c) json_object_set_new(rec, k, c);
            continue;
        }
        bool keep = !lean && (mode == AUDIT_CONTENT_FULL ||
                              (mode == AUDIT_CONTENT_METADATA && !strcmp(k, "input")));
        if (keep) {
            size_t cap = mode == AUDIT_CONTENT_FULL ? AUDIT_FULL_CAP : AUDIT_META_CAP;
            json_t *c = sanitize(v, cap, 0);
            if (c) json_object_set_new(rec, k, c);
        } else {
            char name[32];
            snprintf(name, sizeof(name), "%s_bytes", k);
            if (!json_object_get(fields, name))
                json_object_set_new(rec, name, json_integer((json_int_t)json_size(v)));
        }
    }
    if (lean) json_object_set_new(rec, "content_cut", json_true());
}

/* ------------------------------------------------------------- writing */

static int sync_dir(const char *dir)
{
    _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0) return -errno;
    return 0;
}

/* The sanitized body of a record (reserved keys dropped, content mode
 * applied); lean when the full body would not fit in a line. */
static json_t *make_body(audit_content mode, json_t *fields, size_t *bytes)
{
    for (int lean = 0; lean < 2; lean++) {
        json_t *body = json_object();
        if (!body) return NULL;
        add_fields(body, fields, mode, lean);
        *bytes = json_dumpb(body, NULL, 0, JSON_COMPACT);
        if (*bytes + 1024 <= AUDIT_MAX_LINE) return body;
        json_decref(body);
    }
    return NULL;
}

/* Serialize a record at this chain position. Caller holds a->io_mu. */
static char *build_line(audit_t *a, const char *ts, const char *event, json_t *body, size_t *len)
{
    /* The first record of a file that continues another names it. */
    const char *prev_file = a->size == 0 && a->cont_file[0] ? a->cont_file : NULL;
    _cleanup_json_ json_t *rec = json_object();
    if (!rec) return NULL;
    json_object_set_new(rec, "ts", json_string(ts));
    json_object_set_new(rec, "seq", json_integer((json_int_t)(a->seq + 1)));
    json_t *evj = json_string(event);
    json_object_set_new(rec, "event", evj ? evj : json_string("invalid"));
    const char *k;
    json_t *v;
    json_object_foreach(body, k, v) json_object_set(rec, k, v);
    if (prev_file) json_object_set_new(rec, "prev_file", json_string(prev_file));
    json_object_set_new(rec, "prev", json_string(a->head));
    char *line = json_dumps(rec, JSON_COMPACT);
    if (!line) return NULL;
    *len = strlen(line);
    if (*len < AUDIT_MAX_LINE) return line;
    free(line);
    errno = EMSGSIZE;
    return NULL;
}

/* Append one line (newline added) with one write(); on failure cut the file
 * back so no partial line stays. Caller holds a->io_mu. 0 or -errno. */
static int append_line(audit_t *a, const char *line, size_t len)
{
    if (a->fd < 0) return -EBADF;
    _cleanup_free_ char *buf = malloc(len + 1);
    if (!buf) return -ENOMEM;
    memcpy(buf, line, len);
    buf[len] = '\n';
    errno = 0;
    ssize_t w = write(a->fd, buf, len + 1);
    if (w >= 0 && w < (ssize_t)(len + 1)) {
        /* short write: the rest either goes through or tells us why not */
        ssize_t w2 = write(a->fd, buf + w, len + 1 - (size_t)w);
        if (w2 > 0)
            w += w2;
        else if (w2 == 0)
            errno = ENOSPC;
    }
    if (w != (ssize_t)(len + 1)) {
        int e = errno ? errno : EIO;
        if (w > 0 && ftruncate(a->fd, (off_t)a->size) < 0)
            log_error("audit: cut back %s after a short write: %s", a->path, strerror(errno));
        return -e;
    }
    if (a->fsync_each && fdatasync(a->fd) < 0) {
        /* The bytes are in the page cache and part of the chain; say so, go on. */
        log_warn("audit: fdatasync %s: %s", a->path, strerror(errno));
    }
    a->size += len + 1;
    a->seq++;
    crypto_sha256_hex(line, len, a->head);
    metrics_inc(obs_m.audit_records, NULL, 1);
    return 0;
}

static int write_line(audit_t *a, const char *ts, const char *event, json_t *body)
{
    size_t len;
    _cleanup_free_ char *line = build_line(a, ts, event, body, &len);
    if (!line) return -(errno ? errno : ENOMEM);
    return append_line(a, line, len);
}

static void rotated_name(const audit_t *a, unsigned idx, char *out, size_t n)
{
    snprintf(out, n, "%s.%0*u", a->path, ROTATE_DIGITS, idx);
}

/* Rename the live file away and start a new one that continues the chain.
 * Caller holds a->io_mu. On failure the current file stays in use. */
static int rotate(audit_t *a)
{
    if (fsync(a->fd) < 0) log_warn("audit: fsync %s before rotation: %s", a->path, strerror(errno));
    char to[PATH_MAX];
    unsigned idx = a->rot_index;
    int rc;
    for (int tries = 0;; tries++) {
        rotated_name(a, ++idx, to, sizeof(to));
        if (renameat2(AT_FDCWD, a->path, AT_FDCWD, to, RENAME_NOREPLACE) == 0) break;
        if (errno != EEXIST || tries > 1000) return -errno;
    }
    int fd = open(a->path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        if (rename(to, a->path) < 0)
            log_error("audit: could not rename %s back to %s: %s", to, a->path, strerror(errno));
        return rc;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) log_warn("audit: flock %s: %s", a->path, strerror(errno));
    close(a->fd);
    a->fd = fd;
    a->size = 0;
    a->rot_index = idx;
    sync_dir(a->dir);
    const char *slash = strrchr(to, '/');
    snprintf(a->cont_file, sizeof(a->cont_file), "%s", slash ? slash + 1 : to);
    char ts[RFC3339_LEN];
    clock_rfc3339_us(clock_wall_us(), ts);
    _cleanup_json_ json_t *f = json_pack("{s:I}", "rotate_bytes", (json_int_t)a->rotate_bytes);
    rc = write_line(a, ts, "audit.rotated", f);
    log_info("audit: rotated %s to %s at seq %" PRIu64 " (chain head %s)", a->path, to, a->seq,
             a->head);
    return rc;
}

/* Count a dropped record. Caller holds a->mu. */
static void note_drop_locked(audit_t *a, int rc)
{
    a->dropped++;
    a->drop_errno = -rc;
    a->last_err = -rc;
    metrics_inc(obs_m.audit_records_dropped, NULL, 1);
    int64_t now = clock_mono_ms();
    if (!a->drop_logged || now - a->last_drop_log_ms >= DROP_LOG_INTERVAL_MS) {
        log_error("audit: dropped a record for %s: %s (%" PRIu64
                  " dropped so far; free disk space or fix the file: writing resumes by itself)",
                  a->path, strerror(-rc), a->dropped);
        a->last_drop_log_ms = now;
        a->drop_logged = true;
    }
}

/* Write one record at the end of the chain: rotate first if it would not
 * fit, and first of all note records dropped since the last good write.
 * Caller holds a->io_mu (not a->mu). */
static int write_record_at(audit_t *a, const char *ts, const char *event, json_t *body)
{
    size_t len;
    _cleanup_free_ char *line = build_line(a, ts, event, body, &len);
    if (!line) return -(errno ? errno : ENOMEM);
    pthread_mutex_lock(&a->mu);
    uint64_t dropped = a->dropped;
    int drop_errno = a->drop_errno;
    pthread_mutex_unlock(&a->mu);
    uint64_t need = len + 1 + (dropped ? 256 : 0);
    if (a->rotate_bytes && a->size > 0 && a->size + need > a->rotate_bytes) {
        int r = rotate(a);
        if (r < 0 && a->fd >= 0)
            log_warn("audit: rotate %s: %s (still writing to it)", a->path, strerror(-r));
    }
    if (dropped) {
        char nts[RFC3339_LEN];
        clock_rfc3339_us(clock_wall_us(), nts);
        _cleanup_json_ json_t *f =
            json_pack("{s:I,s:s}", "count", (json_int_t)dropped, "error", strerror(drop_errno));
        int rc = write_line(a, nts, "audit.records_dropped", f);
        if (rc < 0) return rc;
        pthread_mutex_lock(&a->mu);
        a->dropped -= dropped; /* more may have been dropped meanwhile */
        int64_t now = clock_mono_ms();
        bool say = now - a->last_resume_log_ms >= DROP_LOG_INTERVAL_MS || !a->resume_logged;
        if (say) {
            a->last_resume_log_ms = now;
            a->resume_logged = true;
        }
        pthread_mutex_unlock(&a->mu);
        if (say)
            log_warn("audit: writing %s again after %" PRIu64 " dropped records", a->path, dropped);
    }
    return write_line(a, ts, event, body);
}

static int write_record_now(audit_t *a, const char *event, json_t *body)
{
    char ts[RFC3339_LEN];
    clock_rfc3339_us(clock_wall_us(), ts);
    return write_record_at(a, ts, event, body);
}

static void *writer_main(void *arg)
{
    audit_t *a = arg;
    pthread_mutex_lock(&a->mu);
    for (;;) {
        while (!a->qhead && !a->stopping) pthread_cond_wait(&a->cv_work, &a->mu);
        audit_item *it = a->qhead;
        if (!it) break; /* stopping, and nothing left */
        a->qhead = it->next;
        if (!a->qhead) a->qtail = NULL;
        a->qlen--;
        a->qbytes -= it->bytes;
        a->busy = true;
        pthread_mutex_unlock(&a->mu);

        pthread_mutex_lock(&a->io_mu);
        int rc = write_record_at(a, it->ts, it->event, it->body);
        pthread_mutex_unlock(&a->io_mu);
        json_decref(it->body);
        free(it);

        pthread_mutex_lock(&a->mu);
        if (rc < 0) note_drop_locked(a, rc);
        a->busy = false;
        if (!a->qhead) pthread_cond_broadcast(&a->cv_idle);
    }
    pthread_cond_broadcast(&a->cv_idle);
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

int audit_write(audit_t *a, const char *event, json_t *fields)
{
    if (!a) return 0;
    audit_item *it = calloc(1, sizeof(*it));
    if (!it) return -ENOMEM;
    clock_rfc3339_us(clock_wall_us(), it->ts);
    log_redact(event && *event ? event : "unknown", it->event, sizeof(it->event));
    it->body = make_body(a->content, fields, &it->bytes);
    int rc = it->body ? 0 : -EMSGSIZE;
    pthread_mutex_lock(&a->mu);
    if (rc == 0 &&
        (a->stopping || a->qlen >= AUDIT_QUEUE_MAX || a->qbytes + it->bytes > AUDIT_QUEUE_BYTES))
        rc = a->stopping ? -ESHUTDOWN : -ENOBUFS;
    if (rc < 0) {
        note_drop_locked(a, rc);
        pthread_mutex_unlock(&a->mu);
        json_decref(it->body);
        free(it);
        return rc;
    }
    if (a->qtail)
        a->qtail->next = it;
    else
        a->qhead = it;
    a->qtail = it;
    a->qlen++;
    a->qbytes += it->bytes;
    pthread_cond_signal(&a->cv_work);
    pthread_mutex_unlock(&a->mu);
    return 0;
}

static void deadline_after(struct timespec *ts, int timeout_ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += timeout_ms / 1000;
    ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

int audit_flush(audit_t *a, int timeout_ms)
{
    if (!a) return 0;
    struct timespec dl;
    deadline_after(&dl, timeout_ms);
    pthread_mutex_lock(&a->mu);
    while ((a->qhead || a->busy) && a->started)
        if (pthread_cond_timedwait(&a->cv_idle, &a->mu, &dl) == ETIMEDOUT) break;
    int rc = (a->qhead || a->busy) ? -ETIMEDOUT : -a->last_err;
    if (rc != -ETIMEDOUT) a->last_err = 0;
    pthread_mutex_unlock(&a->mu);
    return rc;
}

void audit_head(audit_t *a, char hex[65], uint64_t *seq)
{
    if (!a) {
        snprintf(hex, 65, "%s", AUDIT_GENESIS);
        if (seq) *seq = 0;
        return;
    }
    pthread_mutex_lock(&a->io_mu);
    memcpy(hex, a->head, 65);
    if (seq) *seq = a->seq;
    pthread_mutex_unlock(&a->io_mu);
}

/* -------------------------------------------------------------- opening */

/* Read the last complete line of fd (size bytes). Returns its length (0
 * when there is none) into line (malloc'd), and the offset just past it. */
static int read_last_line(int fd, uint64_t size, char **line, size_t *len, uint64_t *end)
{
    *line = NULL;
    *len = 0;
    *end = 0;
    uint64_t want = size < (uint64_t)AUDIT_MAX_LINE * 2 ? size : (uint64_t)AUDIT_MAX_LINE * 2;
    _cleanup_free_ char *tail = malloc(want + 1);
    if (!tail) return -ENOMEM;
    uint64_t off = size - want;
    size_t got = 0;
    while (got < want) {
        ssize_t r = pread(fd, tail + got, want - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return r < 0 ? -errno : -EIO;
        got += (size_t)r;
    }
    /* last newline = end of the last complete line */
    ssize_t nl = (ssize_t)want - 1;
    while (nl >= 0 && tail[nl] != '\n') nl--;
    if (nl < 0) {
        if (off > 0) return -EMSGSIZE; /* a line longer than any record can be */
        return 0;                      /* no complete line: all of it is a partial write */
    }
    *end = off + (uint64_t)nl + 1;
    ssize_t start = nl - 1;
    while (start >= 0 && tail[start] != '\n') start--;
    if (start < 0 && off > 0) return -EMSGSIZE;
    start++;
    *len = (size_t)(nl - start);
    *line = strndup(tail + start, *len);
    return *line ? 0 : -ENOMEM;
}

/* Continue the chain from the last record of the file at fd: seq, head. */
static int chain_from(int fd, const char *name, audit_t *a, uint64_t *end, shed_err *err)
{
    struct stat st;
    if (fstat(fd, &st) < 0) return err_set(err, errno, "stat audit log %s", name);
    _cleanup_free_ char *line = NULL;
    size_t len;
    int rc = read_last_line(fd, (uint64_t)st.st_size, &line, &len, end);
    if (rc < 0)
        return err_set(err, -rc,
                       "read the last record of audit log %s (move the file aside to "
                       "start a new chain)",
                       name);
    if (!line || len == 0) {
        if (*end == 0) return 1; /* no complete record */
        return err_msg(err, EBADMSG, "audit log %s ends with an empty line: move it aside", name);
    }
    audit_record r;
    shed_err perr;
    if (audit_parse_line(line, len, &r, &perr) < 0)
        return err_msg(err, EBADMSG,
                       "audit log %s: its last record is not an audit record (%s); check it with "
                       "`shed audit verify`, move it aside and start again",
                       name, perr.msg);
    a->seq = (uint64_t)r.seq;
    crypto_sha256_hex(line, len, a->head);
    return 0;
}

/* Highest NNNNNN among base.NNNNNN in dir (0 when there is none). */
static unsigned highest_rotated(const char *dir, const char *base)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    unsigned best = 0;
    size_t bl = strlen(base);
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        if (strncmp(n, base, bl) || n[bl] != '.') continue;
        const char *digits = n + bl + 1;
        size_t k = 0;
        while (isdigit((unsigned char)digits[k])) k++;
        if (k == 0 || digits[k] || k > 9) continue;
        unsigned v = (unsigned)strtoul(digits, NULL, 10);
        if (v > best) best = v;
    }
    closedir(d);
    return best;
}

static void audit_free(audit_t *a)
{
    if (!a) return;
    if (a->fd >= 0) close(a->fd);
    for (audit_item *it = a->qhead, *next; it; it = next) {
        next = it->next;
        json_decref(it->body);
        free(it);
    }
    free(a->path);
    free(a->dir);
    free(a->base);
    pthread_mutex_destroy(&a->mu);
    pthread_mutex_destroy(&a->io_mu);
    pthread_cond_destroy(&a->cv_work);
    pthread_cond_destroy(&a->cv_idle);
    free(a);
}

static inline void audit_freep(audit_t **a)
{
    audit_free(*a);
}

int audit_open(const audit_opts *opts, audit_t **out, shed_err *err)
{
    *out = NULL;
    if (!opts || !opts->path || !*opts->path)
        return err_msg(err, EINVAL, "audit log: no path given (--audit-log FILE)");
    obs_catalog_init();
    __attribute__((cleanup(audit_freep))) audit_t *a = calloc(1, sizeof(*a));
    if (!a) return err_set(err, ENOMEM, "audit log %s", opts->path);
    pthread_mutex_init(&a->mu, NULL);
    pthread_mutex_init(&a->io_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&a->cv_work, &ca);
    pthread_cond_init(&a->cv_idle, &ca);
    pthread_condattr_destroy(&ca);
    a->fd = -1;
    a->rotate_bytes = opts->rotate_bytes;
    a->fsync_each = opts->fsync_each;
    a->content = opts->content;
    a->path = strdup(opts->path);
    _cleanup_free_ char *c1 = strdup(opts->path), *c2 = strdup(opts->path);
    if (!a->path || !c1 || !c2) return err_set(err, ENOMEM, "audit log %s", opts->path);
    a->dir = strdup(dirname(c1));
    a->base = strdup(basename(c2));
    if (!a->dir || !a->base) return err_set(err, ENOMEM, "audit log %s", opts->path);
    snprintf(a->head, sizeof(a->head), "%s", AUDIT_GENESIS);

    a->fd = open(a->path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (a->fd < 0 && errno == ENOENT && mkdir(a->dir, 0700) == 0) /* one level, private */
        a->fd = open(a->path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (a->fd < 0)
        return err_set(err, errno,
                       "open audit log %s (create its directory, owned by the "
                       "user shed runs as, mode 0700)",
                       a->path);
    if (flock(a->fd, LOCK_EX | LOCK_NB) < 0)
        return err_set(err, errno,
                       "lock audit log %s: another shed process writes it; give "
                       "each process its own --audit-log",
                       a->path);
    a->rot_index = highest_rotated(a->dir, a->base);

    uint64_t end = 0;
    struct stat st;
    if (fstat(a->fd, &st) < 0) return err_set(err, errno, "stat audit log %s", a->path);
    int rc = chain_from(a->fd, a->path, a, &end, err);
    if (rc < 0) return rc;
    uint64_t cut = (uint64_t)st.st_size - end;
    if (cut > 0) {
        /* A crash mid-write left an incomplete line: cut it, and say so below. */
        if (ftruncate(a->fd, (off_t)end) < 0)
            return err_set(err, errno, "cut the incomplete last line of audit log %s", a->path);
        log_warn("audit: cut %" PRIu64 " bytes of an incomplete last line from %s", cut, a->path);
    }
    a->size = end;
    if (rc == 1 && a->rot_index > 0) {
        /* No live file (or an empty one) but rotated files: continue the newest. */
        char rp[PATH_MAX];
        rotated_name(a, a->rot_index, rp, sizeof(rp));
        _cleanup_close_ int rfd = open(rp, O_RDONLY | O_CLOEXEC);
        if (rfd < 0) return err_set(err, errno, "open rotated audit log %s", rp);
        uint64_t rend;
        int r2 = chain_from(rfd, rp, a, &rend, err);
        if (r2 < 0) return r2;
        const char *slash = strrchr(rp, '/');
        if (r2 == 0) snprintf(a->cont_file, sizeof(a->cont_file), "%s", slash ? slash + 1 : rp);
    }
    _cleanup_json_ json_t *f = json_pack("{s:i,s:s,s:s}", "pid", (int)getpid(), "version",
                                         SHED_VERSION, "content_mode", content_name(a->content));
    if (cut > 0) json_object_set_new(f, "cut_incomplete_bytes", json_integer((json_int_t)cut));
    if ((rc = write_record_now(a, "audit.opened", f)) < 0)
        return err_set(err, -rc, "write to audit log %s", a->path);
    if (fsync(a->fd) < 0 && errno != EINVAL) /* EINVAL: a pipe, nothing to sync */
        return err_set(err, errno, "fsync audit log %s", a->path);
    if ((rc = pthread_create(&a->thr, NULL, writer_main, a)) != 0)
        return err_set(err, rc, "start the audit writer thread for %s", a->path);
    a->started = true;
    log_info("audit: writing %s (content %s, chain at seq %" PRIu64 ")", a->path,
             content_name(a->content), a->seq);
    *out = steal_pointer(&a);
    return 0;
}

void audit_close(audit_t *a)
{
    if (!a) return;
    pthread_mutex_lock(&a->mu);
    a->stopping = true;
    pthread_cond_signal(&a->cv_work);
    size_t left = a->qlen;
    pthread_mutex_unlock(&a->mu);
    if (a->started) {
        /* Drain the queue, but never wait forever for a hung disk. */
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += AUDIT_CLOSE_WAIT_S;
        int rc = pthread_timedjoin_np(a->thr, NULL, &dl);
        if (rc != 0) {
            log_error("audit: the writer of %s is stuck (hung disk?) with %zu records queued; "
                      "exiting without them",
                      a->path, left);
            return; /* the writer still uses a: leave it */
        }
    }
    pthread_mutex_lock(&a->io_mu);
    if (a->fd >= 0) {
        pthread_mutex_lock(&a->mu);
        uint64_t dropped = a->dropped;
        pthread_mutex_unlock(&a->mu);
        _cleanup_json_ json_t *f = json_pack("{s:I}", "dropped", (json_int_t)dropped);
        int rc = write_record_now(a, "audit.closed", f);
        if (rc < 0) {
            pthread_mutex_lock(&a->mu);
            note_drop_locked(a, rc);
            pthread_mutex_unlock(&a->mu);
        }
        if (fsync(a->fd) < 0) log_warn("audit: fsync %s: %s", a->path, strerror(errno));
        log_info("audit: closed %s at seq %" PRIu64 ", chain head %s", a->path, a->seq, a->head);
    }
    pthread_mutex_unlock(&a->io_mu);
    audit_free(a);
}

/* ------------------------------------------------------------ verifying */

static bool is_hex64(const char *s, size_t n)
{
    if (n != 64) return false;
    for (size_t i = 0; i < 64; i++)
        if (!isdigit((unsigned char)s[i]) && !(s[i] >= 'a' && s[i] <= 'f')) return false;
    return true;
}

int audit_parse_line(const char *line, size_t n, audit_record *out, shed_err *err)
{
    memset(out, 0, sizeof(*out));
    if (n == 0) return err_msg(err, EBADMSG, "empty line");
    if (n >= AUDIT_MAX_LINE)
        return err_msg(err, EBADMSG, "line longer than %d bytes", AUDIT_MAX_LINE);
    if (memchr(line, '\n', n)) return err_msg(err, EBADMSG, "line contains a newline");
    shed_err jerr;
    _cleanup_json_ json_t *j = json_parse(line, n, AUDIT_MAX_LINE, 32, &jerr);
    if (!j) return err_msg(err, EBADMSG, "not JSON: %s", jerr.msg);
    if (!json_is_object(j)) return err_msg(err, EBADMSG, "not a JSON object");
    int64_t seq;
    const char *prev, *event, *ts, *pf = NULL;
    if (json_get_int(j, "seq", true, &seq, err) < 0 ||
        json_get_str(j, "prev", true, &prev, err) < 0 ||
        json_get_str(j, "event", true, &event, err) < 0 ||
        json_get_str(j, "ts", true, &ts, err) < 0 ||
        json_get_str(j, "prev_file", false, &pf, err) < 0)
        return -EBADMSG;
    if (seq < 1) return err_msg(err, EBADMSG, "seq %" PRId64 " is not positive", seq);
    json_t *pv = json_object_get(j, "prev");
    if (!is_hex64(prev, json_string_length(pv)))
        return err_msg(err, EBADMSG, "prev is not 64 lower-case hex digits");
    if (strlen(event) >= sizeof(out->event)) return err_msg(err, EBADMSG, "event name too long");
    if (pf && (strlen(pf) >= sizeof(out->prev_file) || !*pf || strchr(pf, '/')))
        return err_msg(err, EBADMSG, "prev_file is not a file name");
    out->seq = seq;
    memcpy(out->prev, prev, 65);
    snprintf(out->event, sizeof(out->event), "%s", event);
    if (pf) snprintf(out->prev_file, sizeof(out->prev_file), "%s", pf);
    return 0;
}

void audit_verifier_init(audit_verifier *v)
{
    memset(v, 0, sizeof(*v));
    snprintf(v->head, sizeof(v->head), "%s", AUDIT_GENESIS);
}

void audit_verifier_file(audit_verifier *v, const char *name)
{
    if (v->rc) return;
    if (v->file[0] && !v->file_empty) snprintf(v->prev_file, sizeof(v->prev_file), "%s", v->file);
    const char *b = strrchr(name, '/');
    snprintf(v->file, sizeof(v->file), "%s", b ? b + 1 : name);
    v->line = 0;
    v->file_empty = true;
}

__attribute__((format(printf, 2, 3))) static int vfail(audit_verifier *v, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    v->rc = err_msg(&v->err, EBADMSG, "%s:%" PRIu64 ": %s", v->file, v->line, msg);
    return v->rc;
}

int audit_verifier_line(audit_verifier *v, const char *line, size_t n, bool complete)
{
    if (v->rc) return v->rc;
    v->line++;
    if (!complete)
        return vfail(v, "incomplete record (no newline at the end): the write was cut short "
                        "or the file was truncated");
    audit_record r;
    shed_err perr;
    if (audit_parse_line(line, n, &r, &perr) < 0)
        return vfail(v, "not an audit record: %s", perr.msg);
    bool first_in_file = v->file_empty;
    v->file_empty = false;
    if (!v->started) {
        /* The first record given: a chain start, or a continuation from a
         * file that is no longer there (retention removed it). */
        if (!strcmp(r.prev, AUDIT_GENESIS) && !r.prev_file[0]) {
            if (r.seq != 1)
                return vfail(v,
                             "chain starts at seq %" PRId64 ", not 1: records before it were "
                             "deleted",
                             r.seq);
        } else if (r.prev_file[0]) {
            snprintf(v->continued_from, sizeof(v->continued_from), "%s", r.prev_file);
        } else {
            return vfail(v, "the first record is neither a chain start nor a continuation from "
                            "a named file: records before it were deleted");
        }
    } else if (first_in_file) {
        if (!r.prev_file[0])
            return vfail(v,
                         "this file does not continue the chain of %s (its first record "
                         "names no previous file): give the files in rotation order",
                         v->prev_file);
        if (strcmp(r.prev_file, v->prev_file))
            return vfail(v,
                         "this file continues the chain from %s, but the file given before "
                         "it is %s: %s is missing, or the files are out of rotation order",
                         r.prev_file, v->prev_file, r.prev_file);
        if (strcmp(r.prev, v->head))
            return vfail(v,
                         "prev is not the hash of the last record of %s: the end of %s was "
                         "edited, cut or extended",
                         v->prev_file, v->prev_file);
    } else if (strcmp(r.prev, v->head)) {
        if (r.seq == v->seq + 1)
            return vfail(v,
                         "prev is not the hash of line %" PRIu64 ": record %" PRIu64
                         " (seq %" PRId64 ") was edited",
                         v->line - 1, v->line - 1, v->seq);
        if (r.seq > v->seq + 1)
            return vfail(v,
                         "prev is not the hash of line %" PRIu64 " and seq jumps from %" PRId64
                         " to %" PRId64 ": records before this one were deleted or moved",
                         v->line - 1, v->seq, r.seq);
        return vfail(v,
                     "prev is not the hash of line %" PRIu64 " and seq %" PRId64
                     " does not follow %" PRId64 ": records were inserted or reordered here",
                     v->line - 1, r.seq, v->seq);
    } else if (r.prev_file[0]) {
        return vfail(v, "a continuation record (prev_file %s) in the middle of a file",
                     r.prev_file);
    }
    if (v->started && r.seq != v->seq + 1)
        return vfail(v,
                     "seq %" PRId64 " does not follow %" PRId64
                     " although the hash chain holds: the record was rewritten",
                     r.seq, v->seq);
    v->started = true;
    v->seq = r.seq;
    crypto_sha256_hex(line, n, v->head);
    v->records++;
    return 0;
}

/* Feed one file, line by line, with a bounded line buffer. */
static int verify_file(audit_verifier *v, const char *path, shed_err *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return err_set(err, errno, "open audit log %s", path);
    audit_verifier_file(v, path);
    buf_t b;
    buf_init(&b, AUDIT_MAX_LINE + 65536);
    char chunk[65536];
    int rc = 0, tail_waits = 0;
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof(chunk));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            rc = err_set(err, errno, "read audit log %s", path);
            break;
        }
        if (r == 0) {
            /* A live log may have a line in flight (the worker writes it with
             * one write(), which a reader can see half done): look again. */
            if (b.len && tail_waits++ < 3) {
                usleep(100 * 1000);
                continue;
            }
            if (b.len) rc = audit_verifier_line(v, b.data, b.len, false);
            break;
        }
        if (buf_append(&b, chunk, (size_t)r) < 0) {
            v->line++;
            rc = vfail(v, "line longer than %d bytes: not an audit record", AUDIT_MAX_LINE);
            break;
        }
        size_t start = 0;
        char *nl;
        while (rc == 0 && (nl = memchr(b.data + start, '\n', b.len - start))) {
            rc = audit_verifier_line(v, b.data + start, (size_t)(nl - (b.data + start)), true);
            start = (size_t)(nl - b.data) + 1;
        }
        if (rc) break;
        buf_consume(&b, start);
    }
    buf_free(&b);
    if (rc && v->rc && err) *err = v->err;
    return rc;
}

int audit_verify(const char *const *paths, int n, audit_verifier *vout, shed_err *err)
{
    audit_verifier local, *v = vout ? vout : &local;
    audit_verifier_init(v);
    if (n <= 0) return err_msg(err, EINVAL, "audit verify: no files given");
    for (int i = 0; i < n; i++) {
        int rc = verify_file(v, paths[i], err);
        if (rc < 0) return rc;
    }
    if (!v->started) return err_msg(err, EBADMSG, "%s: no audit records", paths[n - 1]);
    return 0;
}
