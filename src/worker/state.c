/* State directory; see state.h. Names come from validated ids only, so no
 * agent-chosen path is ever used.
 *
 * Call records: a session runs one call at a time, so its live record sits in
 * one per-session file, sessions/<sid>/calls/slot.rec, kept open and
 * overwritten in place with pwrite (no create, rename or unlink per call:
 * those cost ~0.1-0.7 ms each on a busy ext4 journal, on the event loop).
 *   offset 0     one header line: "shed-call 1 <none|started|result> <id> <len> <fnv64>\n"
 *   offset 4096  the result JSON (len bytes) while the header says "result"
 * Each header write is a single pwrite inside one page: a process dies
 * either before or after it, never in the middle. A result is written body
 * first, header second: death in between leaves "started" (the call may have
 * run; never re-run), as the temp file + rename did. A record another call
 * would displace (its result never posted) is first copied to its own file
 * calls/<id> (temp file + rename), so no record is ever lost. Like before,
 * nothing is fsynced: records survive the worker process, not the host. */
#include "worker/state.h"

#include "base/cleanup.h"
#include "base/json.h"

#include <dirent.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WSTATE_MAX_RECORD (64u << 20)
#define SLOT_NAME         "slot.rec"
#define SLOT_BODY_OFF     4096
#define SLOT_HDR_MAX      400
#define SLOT_CACHE        64 /* open slot files kept (LRU); more sessions reopen */

enum { REC_NONE, REC_STARTED, REC_RESULT };

typedef struct slot {
    char sid[129];
    int fd;          /* -1: entry unused */
    uint64_t used;   /* LRU clock */
    bool no_spills;  /* calls/ held no per-call record when opened, and none written since */
} slot_t;

struct wstate {
    char *dir;
    slot_t slots[SLOT_CACHE];
    uint64_t clock;
};

bool wstate_id_ok(const char *id)
{
    if (!id || !*id) return false;
    size_t n = 0;
    for (const char *c = id; *c; c++, n++) {
        if (n >= 128) return false;
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '_' || *c == '-'))
            return false;
    }
    return true;
}

static int mkdir_p(const char *path, mode_t mode)
{
    char tmp[4096];
    if (strlen(path) >= sizeof(tmp)) return -ENAMETOOLONG;
    strcpy(tmp, path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, mode) < 0 && errno != EEXIST) return -errno;
        *p = '/';
    }
    if (mkdir(tmp, mode) < 0 && errno != EEXIST) return -errno;
    return 0;
}

int wstate_open(const char *dir, wstate_t **out, shed_err *err)
{
    /* 0711 down to each workspace: the sandbox (another uid, in its user
     * namespace) must traverse to bind-mount it; nothing here is listable. */
    int rc = mkdir_p(dir, 0711);
    if (rc < 0) return err_set(err, -rc, "create state directory %s", dir);
    if (chmod(dir, 0711) < 0) return err_set(err, errno, "chmod 0711 %s", dir);
    char sub[4096];
    snprintf(sub, sizeof(sub), "%s/sessions", dir);
    rc = mkdir_p(sub, 0711);
    if (rc < 0) return err_set(err, -rc, "create %s", sub);
    wstate_t *s = calloc(1, sizeof(*s));
    if (!s || !(s->dir = realpath(dir, NULL))) {
        free(s);
        return err_set(err, errno ? errno : ENOMEM, "open state directory %s", dir);
    }
    for (int i = 0; i < SLOT_CACHE; i++) s->slots[i].fd = -1;
    *out = s;
    return 0;
}

static void slot_drop(slot_t *sl)
{
    if (sl->fd >= 0) close(sl->fd);
    sl->fd = -1;
    sl->sid[0] = '\0';
}

void wstate_close(wstate_t *s)
{
    if (!s) return;
    for (int i = 0; i < SLOT_CACHE; i++) slot_drop(&s->slots[i]);
    free(s->dir);
    free(s);
}

const char *wstate_dir(const wstate_t *s)
{
    return s->dir;
}

int wstate_session_workspace(wstate_t *s, const char *sid, char **path, shed_err *err)
{
    if (!wstate_id_ok(sid)) return err_msg(err, EINVAL, "session id is not a safe name");
    char *p = NULL;
    if (asprintf(&p, "%s/sessions/%s/workspace", s->dir, sid) < 0)
        return err_set(err, ENOMEM, "workspace path");
    char calls[4096], sdir[4096];
    snprintf(calls, sizeof(calls), "%s/sessions/%s/calls", s->dir, sid);
    snprintf(sdir, sizeof(sdir), "%s/sessions/%s", s->dir, sid);
    int rc = mkdir_p(sdir, 0711);
    if (rc == 0 && chmod(sdir, 0711) < 0) rc = -errno;
    if (rc == 0) rc = mkdir_p(p, 0700);
    if (rc == 0) rc = mkdir_p(calls, 0700);
    if (rc < 0) {
        err_set(err, -rc, "create %s", p);
        free(p);
        return rc;
    }
    *path = p;
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP || flag == FTW_D)
        rmdir(path);
    else
        unlink(path);
    return 0;
}

int wstate_session_remove(wstate_t *s, const char *sid, shed_err *err)
{
    if (!wstate_id_ok(sid)) return err_msg(err, EINVAL, "session id is not a safe name");
    for (int i = 0; i < SLOT_CACHE; i++)
        if (s->slots[i].fd >= 0 && !strcmp(s->slots[i].sid, sid)) slot_drop(&s->slots[i]);
    char p[4096];
    snprintf(p, sizeof(p), "%s/sessions/%s", s->dir, sid);
    /* FTW_PHYS: never follow a symlink the agent left in its workspace. */
    if (nftw(p, rm_entry, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0 && errno != ENOENT)
        return err_set(err, errno, "remove %s", p);
    struct stat st;
    if (lstat(p, &st) == 0) return err_msg(err, ENOTEMPTY, "remove %s: not everything could be removed", p);
    return 0;
}

json_t *wstate_sessions(wstate_t *s)
{
    json_t *a = json_array();
    char p[4096];
    snprintf(p, sizeof(p), "%s/sessions", s->dir);
    DIR *d = opendir(p);
    if (!d) return a;
    struct dirent *de;
    while ((de = readdir(d)))
        if (wstate_id_ok(de->d_name)) json_array_append_new(a, json_string(de->d_name));
    closedir(d);
    return a;
}

static int call_path(wstate_t *s, const char *sid, const char *cid, char *out, size_t n)
{
    if (!wstate_id_ok(sid) || !wstate_id_ok(cid)) return -EINVAL;
    snprintf(out, n, "%s/sessions/%s/calls/%s", s->dir, sid, cid);
    return 0;
}

static int write_atomic(const char *path, const char *data, size_t len, shed_err *err)
{
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return err_set(err, errno, "write %s", tmp);
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            unlink(tmp);
            return err_set(err, e, "write %s", tmp);
        }
        off += (size_t)w;
    }
    if (rename(tmp, path) < 0) {
        int e = errno;
        unlink(tmp);
        return err_set(err, e, "rename %s", tmp);
    }
    return 0;
}

/* ---- call records: the per-session slot (see the top of this file) ---- */

static uint64_t fnv64(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ull;
    }
    return h;
}

typedef struct hdr {
    int state; /* REC_* */
    char id[129];
    size_t len;
    uint64_t sum;
} hdr_t;

/* Does calls/ hold a per-call record (a name that is an id: not slot.rec, not *.tmp)? */
static bool calls_has_records(const char *calls)
{
    DIR *d = opendir(calls);
    if (!d) return false;
    bool any = false;
    struct dirent *de;
    while (!any && (de = readdir(d))) any = wstate_id_ok(de->d_name);
    closedir(d);
    return any;
}

/* The open slot of a session (created when `create`), or NULL with *rc. */
static slot_t *slot_get(wstate_t *s, const char *sid, bool create, int *rc)
{
    slot_t *victim = &s->slots[0];
    for (int i = 0; i < SLOT_CACHE; i++) {
        slot_t *sl = &s->slots[i];
        if (sl->fd >= 0 && !strcmp(sl->sid, sid)) {
            sl->used = ++s->clock;
            return sl;
        }
        if (victim->fd >= 0 && (sl->fd < 0 || sl->used < victim->used)) victim = sl;
    }
    char calls[4096], p[4200];
    snprintf(calls, sizeof(calls), "%s/sessions/%s/calls", s->dir, sid);
    snprintf(p, sizeof(p), "%s/" SLOT_NAME, calls);
    int fd = open(p, O_RDWR | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT : 0), 0600);
    if (fd < 0) {
        *rc = -errno;
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        *rc = -EINVAL;
        return NULL;
    }
    /* Long-lived fds stay above 1024 (see worker/http.c open_socket). */
    int hi = fcntl(fd, F_DUPFD_CLOEXEC, 1024);
    if (hi >= 0) {
        close(fd);
        fd = hi;
    }
    slot_drop(victim);
    snprintf(victim->sid, sizeof(victim->sid), "%s", sid);
    victim->fd = fd;
    victim->used = ++s->clock;
    victim->no_spills = !calls_has_records(calls);
    return victim;
}

static void hdr_read(int fd, hdr_t *h)
{
    memset(h, 0, sizeof(*h));
    char b[SLOT_HDR_MAX + 1];
    ssize_t n = pread(fd, b, SLOT_HDR_MAX, 0);
    h->state = REC_NONE;
    if (n <= 0) return; /* new or empty: nothing recorded */
    b[n] = '\0';
    char *nl = memchr(b, '\n', (size_t)n);
    char st[16];
    unsigned long long len, sum;
    /* A damaged header (only a host crash can tear one) names no call. */
    if (!nl) return;
    *nl = '\0';
    if (sscanf(b, "shed-call 1 %15s %128s %llu %llx", st, h->id, &len, &sum) != 4 ||
        !wstate_id_ok(h->id)) {
        h->id[0] = '\0';
        return;
    }
    h->len = (size_t)len;
    h->sum = (uint64_t)sum;
    if (!strcmp(st, "started"))
        h->state = REC_STARTED;
    else if (!strcmp(st, "result") && h->len <= WSTATE_MAX_RECORD)
        h->state = REC_RESULT;
    else if (strcmp(st, "none"))
        h->state = REC_STARTED; /* unknown state of a named call: it may have run */
}

static int hdr_write(int fd, int state, const char *id, size_t len, uint64_t sum)
{
    static const char *const NAMES[] = {"none", "started", "result"};
    char b[SLOT_HDR_MAX];
    int n = snprintf(b, sizeof(b), "shed-call 1 %s %s %zu %llx\n", NAMES[state], id, len,
                     (unsigned long long)sum);
    if (n < 0 || n >= (int)sizeof(b)) return -ENAMETOOLONG;
    ssize_t w = pwrite(fd, b, (size_t)n, 0);
    if (w < 0) return -errno;
    return w == n ? 0 : -EIO;
}

static int pwrite_all(int fd, const char *p, size_t n, off_t off)
{
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
        off += w;
    }
    return 0;
}

/* The result JSON of a "result" header, or NULL when the body does not
 * match it (torn by a host crash: the caller treats the call as started). */
static char *body_read(int fd, const hdr_t *h)
{
    char *b = malloc(h->len + 1);
    if (!b) return NULL;
    size_t off = 0;
    while (off < h->len) {
        ssize_t r = pread(fd, b + off, h->len - off, (off_t)(SLOT_BODY_OFF + off));
        if (r <= 0) break;
        off += (size_t)r;
    }
    b[off] = '\0';
    if (off != h->len || fnv64(b, off) != h->sum) {
        free(b);
        return NULL;
    }
    return b;
}

/* Before the slot takes call `cid`: a live record of another call moves to
 * its own file calls/<id> first, and a "result" header is retired before its
 * body is overwritten. */
static int slot_make_room(wstate_t *s, const char *sid, slot_t *sl, const char *cid,
                          shed_err *err)
{
    hdr_t h;
    hdr_read(sl->fd, &h);
    if (h.state == REC_NONE) return 0;
    if (strcmp(h.id, cid)) {
        char p[4096];
        if (call_path(s, sid, h.id, p, sizeof(p)) < 0)
            return err_msg(err, EINVAL, "call record names an unsafe id");
        _cleanup_free_ char *body = h.state == REC_RESULT ? body_read(sl->fd, &h) : NULL;
        int rc = body ? write_atomic(p, body, h.len, err) : write_atomic(p, "started\n", 8, err);
        if (rc < 0) return rc;
        sl->no_spills = false;
    }
    if (h.state == REC_RESULT || strcmp(h.id, cid)) {
        int rc = hdr_write(sl->fd, REC_STARTED, cid, 0, 0);
        if (rc < 0) return err_set(err, -rc, "write the call record of session %s", sid);
    }
    return 0;
}

int wstate_call_started(wstate_t *s, const char *sid, const char *cid, shed_err *err)
{
    char p[4096];
    if (call_path(s, sid, cid, p, sizeof(p)) < 0)
        return err_msg(err, EINVAL, "tool_use id is not a safe name");
    int rc = 0;
    slot_t *sl = slot_get(s, sid, true, &rc);
    if (!sl) return err_set(err, -rc, "open the call record of session %s", sid);
    if ((rc = slot_make_room(s, sid, sl, cid, err)) < 0) return rc;
    rc = hdr_write(sl->fd, REC_STARTED, cid, 0, 0);
    return rc < 0 ? err_set(err, -rc, "write the call record of session %s", sid) : 0;
}

int wstate_call_result(wstate_t *s, const char *sid, const char *cid, json_t *result,
                       shed_err *err)
{
    char p[4096];
    if (call_path(s, sid, cid, p, sizeof(p)) < 0)
        return err_msg(err, EINVAL, "tool_use id is not a safe name");
    _cleanup_free_ char *txt = json_dumps(result, JSON_COMPACT);
    if (!txt) return err_set(err, ENOMEM, "serialize result");
    size_t len = strlen(txt);
    int rc = 0;
    slot_t *sl = slot_get(s, sid, true, &rc);
    if (!sl) return err_set(err, -rc, "open the call record of session %s", sid);
    if ((rc = slot_make_room(s, sid, sl, cid, err)) < 0) return rc;
    /* Body first, header second: until the header says "result", the
     * record says "started". */
    if ((rc = pwrite_all(sl->fd, txt, len, SLOT_BODY_OFF)) < 0 ||
        (rc = hdr_write(sl->fd, REC_RESULT, cid, len, fnv64(txt, len))) < 0)
        return err_set(err, -rc, "write the call record of session %s", sid);
    return 0;
}

int wstate_call_clear(wstate_t *s, const char *sid, const char *cid)
{
    char p[4096];
    if (call_path(s, sid, cid, p, sizeof(p)) < 0) return -EINVAL;
    int rc = 0;
    slot_t *sl = slot_get(s, sid, false, &rc);
    if (sl) {
        hdr_t h;
        hdr_read(sl->fd, &h);
        if (h.state != REC_NONE && !strcmp(h.id, cid) && (rc = hdr_write(sl->fd, REC_NONE, "-", 0, 0)) < 0)
            return rc;
        if (sl->no_spills) return 0;
    }
    return unlink(p) < 0 && errno != ENOENT ? -errno : 0;
}

static char *read_file(const char *path, size_t max, size_t *len)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return NULL;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > max) return NULL;
    char *b = malloc((size_t)st.st_size + 1);
    if (!b) return NULL;
    size_t off = 0;
    while (off < (size_t)st.st_size) {
        ssize_t r = read(fd, b + off, (size_t)st.st_size - off);
        if (r <= 0) break;
        off += (size_t)r;
    }
    b[off] = 0;
    *len = off;
    return b;
}

enum wstate_call wstate_call_get(wstate_t *s, const char *sid, const char *cid, json_t **result)
{
    *result = NULL;
    char p[4096];
    if (call_path(s, sid, cid, p, sizeof(p)) < 0) return WSTATE_CALL_NONE;
    int rc = 0;
    slot_t *sl = slot_get(s, sid, false, &rc);
    _cleanup_free_ char *b = NULL;
    size_t len = 0;
    if (sl) {
        hdr_t h;
        hdr_read(sl->fd, &h);
        if (h.state != REC_NONE && !strcmp(h.id, cid)) {
            if (h.state == REC_STARTED || !(b = body_read(sl->fd, &h)))
                return WSTATE_CALL_STARTED; /* a damaged result: "may have run" */
            len = h.len;
        } else if (sl->no_spills) {
            return WSTATE_CALL_NONE;
        }
    }
    /* A record moved out of the slot (or written by an older worker). */
    if (!b && !(b = read_file(p, WSTATE_MAX_RECORD, &len))) return WSTATE_CALL_NONE;
    if (len >= 7 && !memcmp(b, "started", 7)) return WSTATE_CALL_STARTED;
    shed_err e = {0};
    json_t *j = json_parse(b, len, WSTATE_MAX_RECORD, JSON_DEFAULT_DEPTH, &e);
    if (!j || !json_is_object(j) || !json_is_array(json_object_get(j, "content"))) {
        json_decref(j);
        return WSTATE_CALL_STARTED; /* a damaged record: treat as "may have run" */
    }
    *result = j;
    return WSTATE_CALL_RESULT;
}

int wstate_write_items(wstate_t *s, const char *worker_id, json_t *items, shed_err *err)
{
    char p[4096];
    snprintf(p, sizeof(p), "%s/worker.json", s->dir);
    _cleanup_json_ json_t *doc =
        json_pack("{s:i,s:s,s:O}", "pid", (int)getpid(), "worker_id", worker_id, "items", items);
    if (!doc) return err_set(err, ENOMEM, "worker.json");
    _cleanup_free_ char *txt = json_dumps(doc, JSON_INDENT(1));
    if (!txt) return err_set(err, ENOMEM, "worker.json");
    return write_atomic(p, txt, strlen(txt), err);
}

json_t *wstate_read_items(wstate_t *s)
{
    char p[4096];
    snprintf(p, sizeof(p), "%s/worker.json", s->dir);
    size_t len = 0;
    _cleanup_free_ char *b = read_file(p, 1 << 20, &len);
    if (!b) return NULL;
    shed_err e = {0};
    return json_parse(b, len, 1 << 20, 16, &e);
}

int wstate_sweep_tmp(wstate_t *s)
{
    int n = 0;
    _cleanup_json_ json_t *sids = wstate_sessions(s);
    size_t i;
    json_t *v;
    json_array_foreach(sids, i, v)
    {
        char p[4096];
        snprintf(p, sizeof(p), "%s/sessions/%s/calls", s->dir, json_string_value(v));
        DIR *d = opendir(p);
        if (!d) continue;
        struct dirent *de;
        while ((de = readdir(d))) {
            size_t l = strlen(de->d_name);
            if (l > 4 && !strcmp(de->d_name + l - 4, ".tmp") && unlinkat(dirfd(d), de->d_name, 0) == 0) n++;
        }
        closedir(d);
    }
    return n;
}
