/* The memory-store sync engine: mount (marker + full pull + baseline), the
 * three-way sync, the push-only flush, dispose — a port of the SDK's
 * SessionMemoryStores (src/tools/agent-toolset/memories.ts), rule for rule,
 * made step-driven: remote calls are started through memory_remote_t and
 * come back through memory_req_done(); memory_store_run() advances as far as
 * it can and returns. Comments quote the reference's reasons where a rule is
 * subtle. Never blocks on the network, never follows a link in the folder,
 * never pushes from a read-only store or a folder that fails the marker
 * check. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/log.h"
#include "base/tree.h"
#include "memory/internal.h"
#include "memory/memory.h"

typedef enum { TASK_UPLOAD, TASK_DELETE, TASK_PULL } task_kind_t;

typedef struct memory_task {
    task_kind_t kind;
    char *rel;
    char *wire_path; /* "/" + rel, for a create */
    char local_sha[SHA256_HEX_LEN];
    int has_local;
    char *remote_id; /* existing memory (update/delete/get) */
    char remote_sha[SHA256_HEX_LEN];
    int has_remote;
    char fallback_sha[SHA256_HEX_LEN]; /* upload: baseline kept when it fails */
    int has_fallback;
    char base_sha[SHA256_HEX_LEN]; /* delete */
    char *content;
    size_t content_len;
    int flush; /* an upload of the flush: result goes straight to the baseline */
    struct memory_task *next;
} memory_task_t;

typedef enum { JOB_NONE, JOB_PULL_ALL, JOB_SYNC, JOB_FLUSH } job_t;
typedef enum { PH_START, PH_LIST, PH_DECIDE, PH_TASKS } phase_t;

#define MAX_INFLIGHT_CAP 64

struct memory_store {
    char *id;
    char *session_id;
    int read_only;
    memory_delete_mode_t delete_mode;
    unsigned max_inflight;
    memory_remote_t remote;
    void (*wake)(void *);
    void *wake_ctx;

    int parent_fd;
    char *name;
    dev_t root_dev;
    ino_t root_ino;
    memory_local_t local;
    char marker_sha[SHA256_HEX_LEN];

    /* AttachedStore */
    memory_map_t baseline; /* rel -> sha as of the last download or sync */
    memory_map_t refused;  /* rel -> sha the server refused */
    memory_map_t pending;  /* rel -> a = ms first seen missing locally */
    memory_map_t sent;     /* rel -> sha sent, outcome unknown */

    /* the pass in progress */
    job_t job;
    phase_t phase;
    int final;
    int mounting, mount_done, mount_failed;
    shed_err mount_err;
    memory_map_t j_local;  /* scan */
    memory_map_t j_remote; /* listing: sha, id */
    memory_map_t j_base;   /* the baseline this sync builds */
    memory_map_t j_dirty;  /* flush: rel -> local sha */
    memory_map_t j_unsent; /* flush: not finished */
    char *cursor;
    int list_full;
    unsigned list_pages, list_items; /* this pass's listing, bounded */
    memory_task_t *q_head, *q_tail;
    memory_req_t *inflight[MAX_INFLIGHT_CAP + 1];
    unsigned n_inflight;
    memory_req_t *done_head, *done_tail;
    int del_cap, del_attempted, del_capped, del_suppressed;

    memory_store_stats_t stats;
};

#define SLOG(s, lvl, fmt, ...)                                                                     \
    slog(lvl, (s)->session_id, NULL, "memory_store_id=%s: " fmt, (s)->id, ##__VA_ARGS__)

/* ---- small helpers -------------------------------------------------------- */

int memory_parse_delete_mode(const char *s, memory_delete_mode_t *out)
{
    if (!s) return -EINVAL;
    if (!strcmp(s, "enabled"))
        *out = MEMORY_DELETE_ENABLED;
    else if (!strcmp(s, "log_only"))
        *out = MEMORY_DELETE_LOG_ONLY;
    else if (!strcmp(s, "disabled"))
        *out = MEMORY_DELETE_DISABLED;
    else
        return -EINVAL;
    return 0;
}

int memory_check_sync_interval(int64_t ms, shed_err *err)
{
    if (ms < MEMORY_MIN_SYNC_INTERVAL_MS)
        return err_msg(err, EINVAL,
                       "memory sync interval must be at least %dms (got %lld); to run without "
                       "memory sync, disable it instead",
                       MEMORY_MIN_SYNC_INTERVAL_MS, (long long)ms);
    return 0;
}

int memory_mount_path_legal(const char *p)
{
    if (!p || p[0] != '/') return 0;
    for (const char *c = p; *c;) {
        const char *e = strchr(c, '/');
        size_t n = e ? (size_t)(e - c) : strlen(c);
        if (n == 2 && c[0] == '.' && c[1] == '.') return 0;
        if (!e) break;
        c = e + 1;
    }
    return 1;
}

size_t memory_marker_content(const char *memory_store_id, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "version %d\n%s", MEMORY_MARKER_VERSION, memory_store_id);
    return n < 0 ? 0 : (size_t)n;
}

static void sha_of(const char *data, size_t n, char out[SHA256_HEX_LEN])
{
    crypto_sha256_hex(data, n, out);
}

static int sha_eq(const char *a, const char *b)
{
    return a && b && !strcmp(a, b);
}

static const char *map_sha(const memory_map_t *m, const char *rel)
{
    memory_map_entry_t *e = memory_map_get(m, rel);
    return e ? e->sha : NULL;
}

static int status_ok(int st)
{
    return st >= 200 && st < 300;
}

/* ---- requests -------------------------------------------------------------- */

static void item_clear(memory_item_t *it)
{
    free(it->id);
    free(it->path);
    free(it->content);
    memset(it, 0, sizeof *it);
}

static void req_free(memory_req_t *r)
{
    if (!r) return;
    item_clear(&r->item);
    for (size_t i = 0; i < r->n_items; i++) item_clear(&r->items[i]);
    free(r->items);
    free(r->next_page);
    free(r);
}

static int fill_item(memory_item_t *it, const char *id, const char *path, const char *sha,
                     const char *content, size_t content_len)
{
    item_clear(it);
    it->id = strdup(id ? id : "");
    it->path = strdup(path ? path : "");
    snprintf(it->sha, sizeof it->sha, "%s", sha ? sha : "");
    if (content) {
        it->content = malloc(content_len + 1);
        if (it->content) {
            memcpy(it->content, content, content_len);
            it->content[content_len] = 0;
            it->content_len = content_len;
        }
    }
    return (!it->id || !it->path || (content && !it->content)) ? -ENOMEM : 0;
}

int memory_req_set_item(memory_req_t *req, const char *id, const char *path, const char *sha,
                        const char *content, size_t content_len)
{
    return fill_item(&req->item, id, path, sha, content, content_len);
}

int memory_req_add_item(memory_req_t *req, const char *id, const char *path, const char *sha,
                        const char *content, size_t content_len, int is_prefix)
{
    if (req->n_items == req->cap_items) {
        size_t nc = req->cap_items ? req->cap_items * 2 : 32;
        memory_item_t *n = realloc(req->items, nc * sizeof *n);
        if (!n) return -ENOMEM;
        req->items = n;
        req->cap_items = nc;
    }
    memory_item_t *it = &req->items[req->n_items];
    memset(it, 0, sizeof *it);
    req->n_items++;
    int r = fill_item(it, id, path, sha, content, content_len);
    it->is_prefix = is_prefix;
    return r;
}

int memory_req_set_next_page(memory_req_t *req, const char *cursor)
{
    free(req->next_page);
    req->next_page = cursor && *cursor ? strdup(cursor) : NULL;
    return (cursor && *cursor && !req->next_page) ? -ENOMEM : 0;
}

void memory_req_done(memory_req_t *req)
{
    memory_store_t *s = req->store;
    if (req->finished) return;
    req->finished = 1;
    for (unsigned i = 0; i < s->n_inflight; i++) {
        if (s->inflight[i] == req) {
            s->inflight[i] = s->inflight[--s->n_inflight];
            break;
        }
    }
    req->next = NULL;
    if (s->done_tail)
        s->done_tail->next = req;
    else
        s->done_head = req;
    s->done_tail = req;
    if (s->wake) s->wake(s->wake_ctx);
}

static memory_req_t *req_new(memory_store_t *s, memory_op_t op, memory_task_t *t)
{
    memory_req_t *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->op = op;
    r->store = s;
    r->task = t;
    r->store_id = s->id;
    return r;
}

static void issue(memory_store_t *s, memory_req_t *r)
{
    int (*fn)(void *, memory_req_t *) = NULL;
    switch (r->op) {
    case MEMORY_OP_LIST:
        fn = s->remote.list;
        break;
    case MEMORY_OP_GET:
        fn = s->remote.get;
        break;
    case MEMORY_OP_CREATE:
        fn = s->remote.create;
        break;
    case MEMORY_OP_UPDATE:
        fn = s->remote.update;
        break;
    case MEMORY_OP_DELETE:
        fn = s->remote.del;
        break;
    }
    s->inflight[s->n_inflight++] = r;
    int rc = fn ? fn(s->remote.ctx, r) : -ENOSYS;
    if (rc < 0 && !r->finished) {
        r->status = 0;
        snprintf(r->error, sizeof r->error, "could not send the request: %s", strerror(-rc));
        memory_req_done(r);
    }
}

static const char *req_error(const memory_req_t *r)
{
    static __thread char buf[320];
    if (r->status)
        snprintf(buf, sizeof buf, "HTTP %d%s%s", r->status, r->error[0] ? ": " : "", r->error);
    else
        snprintf(buf, sizeof buf, "%s", r->error[0] ? r->error : "no response");
    return buf;
}

/* ---- tasks ----------------------------------------------------------------- */

static void task_free(memory_task_t *t)
{
    if (!t) return;
    free(t->rel);
    free(t->wire_path);
    free(t->remote_id);
    free(t->content);
    free(t);
}

static memory_task_t *task_new(memory_store_t *s, task_kind_t kind, const char *rel)
{
    memory_task_t *t = calloc(1, sizeof *t);
    if (!t || !(t->rel = strdup(rel))) {
        free(t);
        SLOG(s, LOG_WARN, "out of memory queuing %s", rel);
        return NULL;
    }
    t->kind = kind;
    if (s->q_tail)
        s->q_tail->next = t;
    else
        s->q_head = t;
    s->q_tail = t;
    return t;
}

static void task_set_remote(memory_task_t *t, const memory_map_entry_t *remote)
{
    if (!remote) return;
    t->remote_id = strdup(remote->id ? remote->id : "");
    memcpy(t->remote_sha, remote->sha, SHA256_HEX_LEN);
    t->has_remote = 1;
}

/* ---- job lifecycle --------------------------------------------------------- */

static void drop_queue(memory_store_t *s)
{
    while (s->q_head) {
        memory_task_t *t = s->q_head;
        s->q_head = t->next;
        task_free(t);
    }
    s->q_tail = NULL;
}

static void cancel_inflight(memory_store_t *s)
{
    while (s->n_inflight > 0) {
        memory_req_t *r = s->inflight[--s->n_inflight];
        r->finished = 1;
        if (s->remote.cancel) s->remote.cancel(s->remote.ctx, r);
        task_free(r->task);
        req_free(r);
    }
    while (s->done_head) {
        memory_req_t *r = s->done_head;
        s->done_head = r->next;
        task_free(r->task);
        req_free(r);
    }
    s->done_tail = NULL;
}

static void end_job(memory_store_t *s)
{
    drop_queue(s);
    memory_map_clear(&s->j_local);
    memory_map_clear(&s->j_remote);
    memory_map_clear(&s->j_base);
    memory_map_clear(&s->j_dirty);
    memory_map_clear(&s->j_unsent);
    free(s->cursor);
    s->cursor = NULL;
    s->list_pages = s->list_items = 0;
    if (s->mounting) {
        s->mounting = 0;
        s->mount_done = 1;
    }
    s->job = JOB_NONE;
    s->phase = PH_START;
}

static void fail_job(memory_store_t *s, const char *what, const char *why)
{
    if (s->mounting) {
        s->mount_failed = 1;
        err_msg(&s->mount_err, EIO, "failed to download memory store memory_store_id=%s: %s: %s",
                s->id, what, why);
    } else {
        SLOG(s, LOG_WARN, "memory %s failed: %s: %s", s->job == JOB_FLUSH ? "flush" : "sync", what,
             why);
        s->stats.failed_syncs++;
    }
    end_job(s);
}

static void start_list(memory_store_t *s, int full)
{
    s->list_full = full;
    memory_req_t *r = req_new(s, MEMORY_OP_LIST, NULL);
    if (!r) {
        fail_job(s, "list memories", "out of memory");
        return;
    }
    r->view = full ? "full" : "basic";
    r->limit = full ? MEMORY_FULL_LIST_PAGE_SIZE : MEMORY_LIST_PAGE_SIZE;
    r->page = s->cursor;
    s->phase = PH_LIST;
    issue(s, r);
}

/* The root directory as it is now at its path: 1 ours (re-opened if a new
 * directory took its place), 0 gone, -1 something that is not a directory. */
static int revalidate_root(memory_store_t *s)
{
    struct stat st;
    if (fstatat(s->parent_fd, s->name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(st.st_mode)) return -1;
    if (st.st_dev == s->root_dev && st.st_ino == s->root_ino) return 1;
    int fd = openat(s->parent_fd, s->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat fst;
    if (fstat(fd, &fst) < 0) {
        close(fd);
        return -1;
    }
    close(s->local.root_fd);
    s->local.root_fd = fd;
    s->root_dev = fst.st_dev;
    s->root_ino = fst.st_ino;
    memory_map_clear(&s->local.hash_cache);
    return 1;
}

/* createRoot(): make the folder again when it vanished. */
static int ensure_root(memory_store_t *s, shed_err *err)
{
    int v = revalidate_root(s);
    if (v == 1) return 0;
    if (v < 0)
        return err_msg(err, ENOTDIR, "something other than a directory is at the store's path %s",
                       s->name);
    if (mkdirat(s->parent_fd, s->name, 0700) < 0 && errno != EEXIST)
        return err_set(err, errno, "create the memory store's folder %s", s->name);
    s->root_dev = 0;
    s->root_ino = 0;
    if (revalidate_root(s) != 1)
        return err_msg(err, EIO, "reopen the memory store's folder %s", s->name);
    if ((s->local.uid != (uid_t)-1 || s->local.gid != (gid_t)-1) &&
        fchown(s->local.root_fd, s->local.uid, s->local.gid) < 0)
        SLOG(s, LOG_WARN, "chown the store folder: %s", strerror(errno));
    return 0;
}

/* #stampAndPull: baseline cleared first, marker written, then every memory
 * pulled with a full listing. */
static void begin_pull_all(memory_store_t *s, const char *recover_reason)
{
    s->job = JOB_PULL_ALL;
    memory_map_clear(&s->baseline);
    memory_map_clear(&s->sent);
    memory_map_clear(&s->pending);
    memory_map_clear(&s->j_local);
    memory_map_clear(&s->j_remote);
    free(s->cursor);
    s->cursor = NULL;
    s->list_pages = s->list_items = 0;
    shed_err err = {0};
    if (recover_reason) {
        SLOG(s, LOG_WARN, "%s; re-downloading the memory store folder instead of syncing",
             recover_reason);
        s->stats.recoveries++;
        if (ensure_root(s, &err) < 0) {
            fail_job(s, "recover", err.msg);
            return;
        }
    }
    char marker[512];
    size_t n = memory_marker_content(s->id, marker, sizeof marker);
    if (memory_local_put(&s->local, MEMORY_MARKER_NAME, marker, n, &err) < 0) {
        fail_job(s, "write the marker file", err.msg);
        return;
    }
    start_list(s, 1);
}

/* #write: false (and a warning) on failure; a `..` in the wire path ends
 * here as a refused path, which is the escape guard. */
static int write_local(memory_store_t *s, const char *rel, const char *content, size_t len)
{
    shed_err err = {0};
    if (memory_local_put(&s->local, rel, content ? content : "", content ? len : 0, &err) < 0) {
        SLOG(s, LOG_WARN, "failed to write memory %s: %s", rel, err.msg);
        return 0;
    }
    return 1;
}

/* The rel path of a listed memory, NULL to skip it: prefixes, and the
 * reserved marker path with a warning. */
static const char *listed_rel(memory_store_t *s, const memory_item_t *it)
{
    if (it->is_prefix || !it->path) return NULL;
    const char *rel = it->path;
    while (*rel == '/') rel++;
    if (!strcmp(rel, MEMORY_MARKER_NAME)) {
        SLOG(s, LOG_WARN, "the server listed the reserved marker path %s; skipping", it->path);
        return NULL;
    }
    return rel;
}

static void on_list_page(memory_store_t *s, memory_req_t *r)
{
    if (!status_ok(r->status)) {
        fail_job(s, "list memories", req_error(r));
        return;
    }
    /* A server that pages forever (or lists more than a store can hold)
     * ends the pass instead of growing without bound. */
    s->list_pages++;
    s->list_items += (unsigned)r->n_items;
    if (s->list_pages > MEMORY_MAX_LIST_PAGES || s->list_items > MEMORY_MAX_LOCAL_FILES) {
        fail_job(s, "list memories", "the listing is longer than any store can be");
        return;
    }
    for (size_t i = 0; i < r->n_items; i++) {
        const memory_item_t *it = &r->items[i];
        const char *rel = listed_rel(s, it);
        if (!rel) continue;
        if (s->job == JOB_PULL_ALL) {
            if (write_local(s, rel, it->content, it->content_len)) {
                memory_map_set_sha(&s->baseline, rel, it->sha);
                s->stats.pulled++;
            }
        } else {
            memory_map_entry_t *e = memory_map_put(&s->j_remote, rel);
            if (!e) {
                fail_job(s, "list memories", "out of memory");
                return;
            }
            snprintf(e->sha, sizeof e->sha, "%s", it->sha);
            free(e->id);
            e->id = strdup(it->id ? it->id : "");
        }
    }
    free(s->cursor);
    s->cursor = r->next_page;
    r->next_page = NULL;
    if (s->cursor) {
        start_list(s, s->list_full);
        return;
    }
    if (s->job == JOB_PULL_ALL) {
        if (!s->mounting) SLOG(s, LOG_INFO, "re-downloaded %zu memories", s->baseline.len);
        end_job(s);
        return;
    }
    s->phase = PH_DECIDE;
}

/* #settleSent: a memory holding exactly the sha sent is that upload, saved
 * after all; every record is dropped after one listing. */
static void settle_sent(memory_store_t *s)
{
    for (size_t i = 0; i < s->sent.cap; i++) {
        memory_map_entry_t *e = &s->sent.slots[i];
        if (!e->key) continue;
        const char *rsha = map_sha(&s->j_remote, e->key);
        if (sha_eq(rsha, e->sha)) memory_map_set_sha(&s->baseline, e->key, e->sha);
    }
    memory_map_clear(&s->sent);
}

/* ---- the decisions of one sync (#syncStore / #syncPath / #corroboratedDelete) */

static void keep(memory_store_t *s, const char *rel, const char *sha)
{
    if (sha) memory_map_set_sha(&s->j_base, rel, sha);
}

/* #removeLocal: 0 gone (drop), 1 keep expect, 2 edited since the scan
 * (fresh sha in `fresh`). */
static int remove_local(memory_store_t *s, const char *rel, const char *expect,
                        char fresh[SHA256_HEX_LEN])
{
    shed_err err = {0};
    int h = memory_local_hash(&s->local, rel, fresh, &err);
    if (h < 0) return 1;
    if (h == 0) return 0;
    if (strcmp(fresh, expect) != 0) return 2;
    if (memory_local_remove(&s->local, rel, &err) < 0) {
        SLOG(s, LOG_WARN, "failed to remove memory %s deleted remotely: %s", rel, err.msg);
        return 1;
    }
    s->stats.deleted_local++;
    return 0;
}

static void queue_upload(memory_store_t *s, const char *rel, const char *local_sha,
                         const memory_map_entry_t *existing, const char *fallback, int flush)
{
    memory_task_t *t = task_new(s, TASK_UPLOAD, rel);
    if (!t) return;
    if (local_sha) {
        memcpy(t->local_sha, local_sha, SHA256_HEX_LEN);
        t->has_local = 1;
    }
    task_set_remote(t, existing);
    if (fallback) {
        memcpy(t->fallback_sha, fallback, SHA256_HEX_LEN);
        t->has_fallback = 1;
    }
    t->flush = flush;
}

static void queue_pull(memory_store_t *s, const char *rel, const memory_map_entry_t *remote)
{
    memory_task_t *t = task_new(s, TASK_PULL, rel);
    if (t) task_set_remote(t, remote);
}

static void corroborated_delete(memory_store_t *s, const char *rel,
                                const memory_map_entry_t *remote, const char *base, int64_t now)
{
    if (s->delete_mode == MEMORY_DELETE_DISABLED) {
        s->del_suppressed++;
        keep(s, rel, base);
        return;
    }
    memory_map_entry_t *p = memory_map_get(&s->pending, rel);
    if (!p) {
        p = memory_map_put(&s->pending, rel);
        if (p) p->a = now;
    }
    int64_t first = p ? p->a : now;
    if (!s->final && now - first < MEMORY_DELETE_CORROBORATION_MS) {
        keep(s, rel, base);
        return;
    }
    /* Re-check: the folder may have been wiped mid-sync. */
    shed_err err = {0};
    char sha[SHA256_HEX_LEN];
    int marker_ok = memory_local_hash(&s->local, MEMORY_MARKER_NAME, sha, &err) == 1 &&
                    !strcmp(sha, s->marker_sha);
    int h = memory_local_hash(&s->local, rel, sha, &err);
    int still_absent = h == 0;
    if (h < 0) marker_ok = still_absent = 0;
    if (!marker_ok) {
        keep(s, rel, base);
        return;
    }
    if (!still_absent) {
        memory_map_del(&s->pending, rel);
        keep(s, rel, base);
        return;
    }
    if (s->del_attempted >= s->del_cap) {
        s->del_capped++;
        keep(s, rel, base);
        return;
    }
    s->del_attempted++;
    if (s->delete_mode == MEMORY_DELETE_LOG_ONLY) {
        /* Repeats each sync — the log is the dry run. */
        SLOG(s, LOG_INFO, "log-only: sync would delete memory %s on the server", rel);
        s->stats.deletes_logged++;
        keep(s, rel, base);
        return;
    }
    memory_task_t *t = task_new(s, TASK_DELETE, rel);
    if (!t) {
        keep(s, rel, base);
        return;
    }
    task_set_remote(t, remote);
    memcpy(t->base_sha, base, SHA256_HEX_LEN);
}

static void sync_path(memory_store_t *s, const char *rel, const memory_map_entry_t *remote,
                      const char *local_sha)
{
    const char *base = map_sha(&s->baseline, rel);
    char fresh[SHA256_HEX_LEN];
    if (local_sha) memory_map_del(&s->pending, rel);

    if (!remote) {
        if (!local_sha) {
            memory_map_del(&s->pending, rel);
            return;
        }
        if (base) {
            if (!strcmp(local_sha, base)) {
                int r = remove_local(s, rel, base, fresh);
                if (r == 0) return;
                if (r == 1) {
                    keep(s, rel, base);
                    return;
                }
                local_sha = fresh;
            }
            /* The file holds an un-pushed edit — the only copy. */
            if (s->read_only)
                SLOG(s, LOG_WARN,
                     "memory %s deleted remotely but edited locally; keeping the file, which a "
                     "read-only store cannot push",
                     rel);
            else if (!sha_eq(map_sha(&s->refused, rel), local_sha))
                SLOG(s, LOG_INFO,
                     "memory %s deleted remotely but edited locally; re-creating it from the file",
                     rel);
        }
        if (s->read_only) return;
        if (sha_eq(map_sha(&s->refused, rel), local_sha)) return;
        queue_upload(s, rel, local_sha, NULL, NULL, 0);
        return;
    }

    const char *rsha = remote->sha;
    int remote_changed = !sha_eq(rsha, base);
    int locally_edited = local_sha && !sha_eq(local_sha, base) && !sha_eq(local_sha, rsha);
    /* Read-only stores never push, so their local edits don't count. */
    int local_changed = !s->read_only && locally_edited;

    if (!local_sha && base) {
        /* Verifiably on disk before, gone now: a real local deletion; the
         * unchanged-remote case went to corroborated_delete. */
        if (remote_changed) {
            SLOG(s, LOG_WARN,
                 "memory %s deleted locally but changed remotely; restoring the remote version",
                 rel);
            memory_map_del(&s->pending, rel);
            queue_pull(s, rel, remote);
        }
        keep(s, rel, base);
        return;
    }
    if (remote_changed) {
        if (sha_eq(local_sha, rsha)) {
            keep(s, rel, rsha);
            return;
        }
        if (locally_edited) {
            SLOG(s, LOG_WARN,
                 "memory %s changed both locally and remotely; keeping the remote version", rel);
            s->stats.conflicts++;
        }
        queue_pull(s, rel, remote);
        keep(s, rel, base);
        return;
    }
    if (local_changed) {
        if (sha_eq(map_sha(&s->refused, rel), local_sha)) {
            keep(s, rel, rsha);
            return;
        }
        queue_upload(s, rel, local_sha, remote, rsha, 0);
        return;
    }
    keep(s, rel, rsha);
}

static void decide_sync(memory_store_t *s, int64_t now)
{
    settle_sent(s);
    /* A lone file vanishing is an ordinary deletion; two or more at once with
     * nothing left is a wiped folder. */
    if (s->j_local.len == 0 && s->baseline.len > 1) {
        begin_pull_all(s, "every memory file is gone at once");
        return;
    }
    int cap = (int)(s->baseline.len / 4);
    if (cap > MEMORY_DELETE_CAP_CEILING) cap = MEMORY_DELETE_CAP_CEILING;
    if (cap < MEMORY_DELETE_CAP_FLOOR) cap = MEMORY_DELETE_CAP_FLOOR;
    s->del_cap = cap;
    s->del_attempted = s->del_capped = s->del_suppressed = 0;

    memory_map_t all = {0};
    const memory_map_t *srcs[] = {&s->j_remote, &s->j_local, &s->baseline};
    for (size_t k = 0; k < 3; k++)
        for (size_t i = 0; i < srcs[k]->cap; i++)
            if (srcs[k]->slots[i].key) memory_map_put(&all, srcs[k]->slots[i].key);
    size_t n = 0;
    const char **keys = memory_map_keys(&all, &n);
    for (size_t i = 0; keys && i < n; i++) {
        const char *rel = keys[i];
        const memory_map_entry_t *remote = memory_map_get(&s->j_remote, rel);
        const char *local_sha = map_sha(&s->j_local, rel);
        const char *base = map_sha(&s->baseline, rel);
        if (!local_sha && base && remote && sha_eq(remote->sha, base) && !s->read_only)
            corroborated_delete(s, rel, remote, base, now);
        else
            sync_path(s, rel, remote, local_sha);
    }
    free(keys);
    memory_map_clear(&all);
    s->phase = PH_TASKS;
}

static void finish_sync(memory_store_t *s)
{
    memory_map_clear(&s->baseline);
    s->baseline = s->j_base;
    memset(&s->j_base, 0, sizeof s->j_base);
    s->stats.deletes_capped += (unsigned)s->del_capped;
    s->stats.deletes_suppressed += (unsigned)s->del_suppressed;
    if (s->del_suppressed > 0)
        SLOG(s, LOG_DEBUG,
             "remote deletes are disabled; %d locally deleted memories stay on the server",
             s->del_suppressed);
    if (s->del_capped > 0)
        SLOG(s, LOG_WARN, "delete cap reached: %s %d deletes, held %d for later syncs",
             s->delete_mode == MEMORY_DELETE_LOG_ONLY ? "would send" : "sent", s->del_attempted,
             s->del_capped);
    end_job(s);
}

/* ---- flush (flushWrites) ------------------------------------------------------ */

static void decide_flush(memory_store_t *s)
{
    settle_sent(s);
    size_t n = 0;
    const char **keys = memory_map_keys(&s->j_dirty, &n);
    for (size_t i = 0; keys && i < n; i++) {
        const char *rel = keys[i];
        const char *local_sha = map_sha(&s->j_dirty, rel);
        const char *base = map_sha(&s->baseline, rel);
        const memory_map_entry_t *existing = memory_map_get(&s->j_remote, rel);
        if (sha_eq(local_sha, base)) {
            /* listed only for an unsettled send that never landed */
            memory_map_del(&s->j_unsent, rel);
            continue;
        }
        if (existing && sha_eq(existing->sha, local_sha)) {
            memory_map_set_sha(&s->baseline, rel, existing->sha);
            memory_map_del(&s->j_unsent, rel);
            continue;
        }
        if (existing && !sha_eq(existing->sha, base)) {
            SLOG(s, LOG_WARN,
                 "memory %s changed both locally and remotely; the flush leaves the remote version",
                 rel);
            memory_map_del(&s->j_unsent, rel);
            continue;
        }
        queue_upload(s, rel, local_sha, existing, NULL, 1);
    }
    free(keys);
    s->phase = PH_TASKS;
}

/* ---- running tasks ------------------------------------------------------------ */

static int permanent_local_error(int r)
{
    return r == -ELOOP || r == -EINVAL || r == -EFBIG || r == -EPERM || r == -EISDIR ||
           r == -EILSEQ || r == -ENOTDIR;
}

static void refuse(memory_store_t *s, memory_task_t *t, const char *why)
{
    if (t->has_local) memory_map_set_sha(&s->refused, t->rel, t->local_sha);
    s->stats.refused++;
    SLOG(s, LOG_WARN,
         "the server rejected memory file %s, so it stays un-synced until its content changes: %s",
         t->rel, why);
}

/* The outcome of an upload: a sha, or NULL for "keep the old baseline". */
static void upload_result(memory_store_t *s, memory_task_t *t, const char *sha)
{
    if (t->flush) {
        memory_map_del(&s->j_unsent, t->rel);
        if (sha) memory_map_set_sha(&s->baseline, t->rel, sha);
        return;
    }
    if (sha)
        keep(s, t->rel, sha);
    else if (t->has_fallback)
        keep(s, t->rel, t->fallback_sha);
}

/* Start one task; 0 when it finished at once (no request). */
static int start_upload(memory_store_t *s, memory_task_t *t)
{
    shed_err err = {0};
    char *data = NULL;
    size_t len = 0;
    int r = memory_local_get(&s->local, t->rel, MEMORY_MAX_FILE_BYTES, &data, &len, &err);
    if (r == 0) {
        upload_result(s, t, NULL);
        return 0;
    }
    if (r < 0) {
        if (permanent_local_error(r))
            refuse(s, t, err.msg);
        else
            SLOG(s, LOG_WARN, "failed to upload memory %s: %s", t->rel, err.msg);
        upload_result(s, t, NULL);
        return 0;
    }
    /* decodeUTF8 drops a byte-order mark; the sha is of the bytes sent. */
    size_t off = (len >= 3 && !memcmp(data, "\xef\xbb\xbf", 3)) ? 3 : 0;
    if (!memory_utf8_valid(data + off, len - off)) {
        free(data);
        refuse(s, t, "is not valid utf-8");
        upload_result(s, t, NULL);
        return 0;
    }
    free(t->content);
    t->content = data;
    t->content_len = len;
    if (off) {
        memmove(t->content, t->content + off, len - off + 1);
        t->content_len -= off;
    }
    char sent[SHA256_HEX_LEN];
    sha_of(t->content, t->content_len, sent);
    memory_map_set_sha(&s->sent, t->rel, sent);
    memory_req_t *q = req_new(s, t->has_remote ? MEMORY_OP_UPDATE : MEMORY_OP_CREATE, t);
    if (!q) {
        SLOG(s, LOG_WARN, "failed to upload memory %s: out of memory", t->rel);
        upload_result(s, t, NULL);
        return 0;
    }
    q->content = t->content;
    q->content_len = t->content_len;
    if (t->has_remote) {
        q->memory_id = t->remote_id;
        q->sha = t->remote_sha;
    } else {
        free(t->wire_path);
        size_t n = strlen(t->rel) + 2;
        t->wire_path = malloc(n);
        if (t->wire_path) snprintf(t->wire_path, n, "/%s", t->rel);
        q->path = t->wire_path ? t->wire_path : "/";
    }
    issue(s, q);
    return 1;
}

static void on_upload_done(memory_store_t *s, memory_task_t *t, memory_req_t *r, int *requeue)
{
    *requeue = 0;
    if (status_ok(r->status)) {
        memory_map_del(&s->refused, t->rel);
        memory_map_del(&s->sent, t->rel);
        s->stats.pushed++;
        if (r->op == MEMORY_OP_CREATE) s->stats.created++;
        char sha[SHA256_HEX_LEN];
        if (r->item.sha[0])
            snprintf(sha, sizeof sha, "%s", r->item.sha);
        else
            sha_of(t->content, t->content_len, sha);
        upload_result(s, t, sha);
        return;
    }
    if (t->has_remote && r->status == 404) {
        /* Deleted remotely since the listing: this file is now the only copy. */
        free(t->remote_id);
        t->remote_id = NULL;
        t->has_remote = 0;
        *requeue = 1;
        return;
    }
    if (t->has_remote && r->status == 409) {
        /* The precondition lost a race: the next sync pulls the winner. The
         * sent sha stays for the next listing to tell a saved retry apart. */
        SLOG(s, LOG_WARN,
             "memory %s changed both locally and remotely; the upload was refused and the local "
             "edit loses",
             t->rel);
        s->stats.conflicts++;
    } else if ((r->status == 400 || r->status == 413) && t->has_local) {
        refuse(s, t, req_error(r));
    } else {
        SLOG(s, LOG_WARN, "failed to upload memory %s: %s", t->rel, req_error(r));
    }
    upload_result(s, t, NULL);
}

static void on_delete_done(memory_store_t *s, memory_task_t *t, memory_req_t *r)
{
    if (status_ok(r->status) || r->status == 404) {
        if (status_ok(r->status)) {
            SLOG(s, LOG_INFO, "propagated local deletion of %s", t->rel);
            s->stats.deleted_remote++;
        }
        memory_map_del(&s->pending, t->rel);
        return; /* dropped from the baseline */
    }
    if (r->status == 409 || r->status == 412)
        SLOG(s, LOG_WARN,
             "memory %s deleted locally but changed remotely; keeping the remote version", t->rel);
    else
        SLOG(s, LOG_WARN, "failed to delete memory %s: %s", t->rel, req_error(r));
    keep(s, t->rel, t->base_sha);
}

static void on_pull_done(memory_store_t *s, memory_task_t *t, memory_req_t *r)
{
    if (r->status == 404) return; /* deleted after the listing: the next sync reconciles */
    if (!status_ok(r->status)) {
        SLOG(s, LOG_WARN, "failed to fetch memory content %s: %s", t->rel, req_error(r));
        return;
    }
    if (write_local(s, t->rel, r->item.content, r->item.content_len)) {
        keep(s, t->rel, r->item.sha);
        s->stats.pulled++;
    }
}

static int start_task(memory_store_t *s, memory_task_t *t)
{
    if (t->kind == TASK_UPLOAD) return start_upload(s, t);
    memory_req_t *q = req_new(s, t->kind == TASK_PULL ? MEMORY_OP_GET : MEMORY_OP_DELETE, t);
    if (!q) {
        if (t->kind == TASK_DELETE) keep(s, t->rel, t->base_sha);
        return 0;
    }
    q->memory_id = t->remote_id;
    if (t->kind == TASK_DELETE) q->sha = t->base_sha;
    issue(s, q);
    return 1;
}

static void on_done(memory_store_t *s, memory_req_t *r)
{
    if (r->op == MEMORY_OP_LIST) {
        on_list_page(s, r);
        req_free(r);
        return;
    }
    memory_task_t *t = r->task;
    int requeue = 0;
    if (t->kind == TASK_UPLOAD)
        on_upload_done(s, t, r, &requeue);
    else if (t->kind == TASK_DELETE)
        on_delete_done(s, t, r);
    else
        on_pull_done(s, t, r);
    req_free(r);
    if (requeue) {
        t->next = s->q_head;
        s->q_head = t;
        if (!s->q_tail) s->q_tail = t;
    } else {
        task_free(t);
    }
}

static unsigned job_limit(const memory_store_t *s)
{
    unsigned lim = s->max_inflight;
    if (!lim) lim = s->job == JOB_FLUSH ? MEMORY_UPLOAD_CONCURRENCY : MEMORY_FETCH_CONCURRENCY;
    return lim > MAX_INFLIGHT_CAP ? MAX_INFLIGHT_CAP : lim;
}

/* ---- the step function ------------------------------------------------------- */

static void start_sync_pass(memory_store_t *s)
{
    int v = revalidate_root(s);
    if (v < 0) {
        SLOG(s, LOG_WARN, "something other than a directory is at the store's path; not syncing");
        end_job(s);
        return;
    }
    shed_err err = {0};
    int marker_ok = 0;
    if (memory_local_scan(&s->local, s->marker_sha, &s->j_local, &marker_ok, &err) < 0) {
        fail_job(s, "scan the folder", err.msg);
        return;
    }
    if (marker_ok != 1) {
        const char *why =
            marker_ok < 0 ? "the marker file does not match this store" : "the marker file is gone";
        if (s->job == JOB_FLUSH) {
            if (!s->read_only)
                SLOG(s, LOG_WARN, "%s; not uploading anything from the memory store folder", why);
            end_job(s);
            return;
        }
        if (s->j_local.len > 0) {
            SLOG(s, LOG_WARN, "%s; leaving the memory store folder as found and not syncing", why);
            end_job(s);
            return;
        }
        begin_pull_all(s, "the folder or its marker is gone");
        return;
    }
    if (s->job == JOB_FLUSH) {
        for (size_t i = 0; i < s->j_local.cap; i++) {
            memory_map_entry_t *e = &s->j_local.slots[i];
            if (!e->key) continue;
            /* A path with an unsettled send counts even at its baseline sha. */
            int changed = !sha_eq(e->sha, map_sha(&s->baseline, e->key)) ||
                          memory_map_get(&s->sent, e->key) != NULL;
            if (changed && !sha_eq(map_sha(&s->refused, e->key), e->sha)) {
                memory_map_set_sha(&s->j_dirty, e->key, e->sha);
                memory_map_put(&s->j_unsent, e->key);
            }
        }
        if (s->j_dirty.len == 0) {
            end_job(s);
            return;
        }
    }
    start_list(s, 0);
}

static int advance(memory_store_t *s, int64_t now)
{
    if (s->job == JOB_NONE) return 0;
    switch (s->phase) {
    case PH_START:
        if (s->job == JOB_PULL_ALL)
            begin_pull_all(s, NULL);
        else
            start_sync_pass(s);
        return 1;
    case PH_LIST:
        return 0; /* the page's completion moves on */
    case PH_DECIDE:
        if (s->job == JOB_FLUSH)
            decide_flush(s);
        else
            decide_sync(s, now);
        return 1;
    case PH_TASKS: {
        int progress = 0;
        while (s->q_head && s->n_inflight < job_limit(s)) {
            memory_task_t *t = s->q_head;
            s->q_head = t->next;
            if (!s->q_head) s->q_tail = NULL;
            t->next = NULL;
            if (!start_task(s, t)) task_free(t);
            progress = 1;
        }
        if (!s->q_head && s->n_inflight == 0 && !s->done_head) {
            if (s->job == JOB_FLUSH)
                end_job(s);
            else
                finish_sync(s);
            progress = 1;
        }
        return progress;
    }
    }
    return 0;
}

int memory_store_run(memory_store_t *s, int64_t now_ms)
{
    for (;;) {
        int progress = 0;
        while (s->done_head) {
            memory_req_t *r = s->done_head;
            s->done_head = r->next;
            if (!s->done_head) s->done_tail = NULL;
            if (s->job == JOB_NONE) { /* a pass that ended: just free */
                task_free(r->task);
                req_free(r);
            } else {
                on_done(s, r);
            }
            progress = 1;
        }
        if (advance(s, now_ms)) progress = 1;
        if (!progress) break;
    }
    return s->job != JOB_NONE;
}

/* ---- public store API ------------------------------------------------------- */

/* 1 when `name` in `parent_fd` is a directory (not a link) with no entry. */
static int dir_is_empty_at(int parent_fd, const char *name)
{
    int fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return 0;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return 0;
    }
    int empty = 1;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            empty = 0;
            break;
        }
    closedir(d);
    return empty;
}

static int valid_component(const char *n)
{
    return n && *n && !strchr(n, '/') && strcmp(n, ".") && strcmp(n, "..");
}

int memory_store_mount(memory_store_t **out, const memory_store_config_t *cfg,
                       const memory_remote_t *remote, int parent_fd, const char *name,
                       int64_t now_ms, shed_err *err)
{
    (void)now_ms;
    *out = NULL;
    if (!cfg || !cfg->memory_store_id || !*cfg->memory_store_id)
        return err_msg(err, EINVAL, "memory store: no memory_store_id");
    if (!valid_component(name))
        return err_msg(err, EINVAL, "memory store %s: folder name '%s' is not one path component",
                       cfg->memory_store_id, name ? name : "");
    struct stat st;
    int adopted = 0;
    if (fstatat(parent_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && cfg->adopt_empty_dir &&
        S_ISDIR(st.st_mode) && dir_is_empty_at(parent_fd, name))
        adopted = 1;
    else if (fstatat(parent_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT)
        /* A root we did not create is a dead run's leftovers; the first sync
         * would upload them into the customer's store. */
        return err_msg(err, EEXIST,
                       "something already exists at the memory store's path: %s "
                       "(memory_store_id=%s); it must not exist when the session starts",
                       name, cfg->memory_store_id);
    if (!adopted && mkdirat(parent_fd, name, 0700) < 0)
        return err_set(err, errno,
                       "cannot create the memory store's folder: %s (memory_store_id=%s); the "
                       "worker host must make this mount path writable",
                       name, cfg->memory_store_id);
    memory_store_t *s = calloc(1, sizeof *s);
    if (!s) return err_set(err, ENOMEM, "memory store");
    s->parent_fd = fcntl(parent_fd, F_DUPFD_CLOEXEC, 0);
    s->local.root_fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    s->id = strdup(cfg->memory_store_id);
    s->name = strdup(name);
    s->session_id = cfg->session_id ? strdup(cfg->session_id) : NULL;
    if (s->parent_fd < 0 || s->local.root_fd < 0 || !s->id || !s->name ||
        (cfg->session_id && !s->session_id)) {
        int e = errno ? errno : ENOMEM;
        memory_store_free(s);
        unlinkat(parent_fd, name, AT_REMOVEDIR);
        return err_set(err, e, "open the memory store's folder %s", name);
    }
    fstat(s->local.root_fd, &st);
    s->root_dev = st.st_dev;
    s->root_ino = st.st_ino;
    s->local.uid = cfg->owner_uid;
    s->local.gid = cfg->owner_gid;
    if ((s->local.uid != (uid_t)-1 || s->local.gid != (gid_t)-1) &&
        fchown(s->local.root_fd, s->local.uid, s->local.gid) < 0)
        SLOG(s, LOG_WARN, "chown the store folder: %s", strerror(errno));
    s->read_only = cfg->read_only;
    s->delete_mode = cfg->delete_mode;
    s->max_inflight = cfg->max_inflight;
    s->remote = *remote;
    char marker[512];
    size_t n = memory_marker_content(s->id, marker, sizeof marker);
    sha_of(marker, n, s->marker_sha);
    s->mounting = 1;
    s->job = JOB_PULL_ALL;
    s->phase = PH_START;
    *out = s;
    return 0;
}

int memory_store_mount_result(const memory_store_t *s, shed_err *err)
{
    if (s->mount_failed) {
        if (err) *err = s->mount_err;
        return -s->mount_err.code;
    }
    if (!s->mount_done)
        return err_msg(err, EINPROGRESS, "memory store %s: still downloading", s->id);
    return 0;
}

int memory_store_sync_start(memory_store_t *s, int final, int64_t now_ms)
{
    (void)now_ms;
    if (s->job != JOB_NONE) return -EBUSY;
    s->job = JOB_SYNC;
    s->phase = PH_START;
    s->final = final;
    return 0;
}

int memory_store_flush_start(memory_store_t *s, int64_t now_ms)
{
    (void)now_ms;
    if (s->job != JOB_NONE) return -EBUSY;
    if (s->read_only) return 0;
    s->job = JOB_FLUSH;
    s->phase = PH_START;
    s->final = 0;
    return 0;
}

int memory_store_busy(const memory_store_t *s)
{
    return s->job != JOB_NONE;
}

void memory_store_abort(memory_store_t *s)
{
    if (s->job == JOB_NONE) return;
    if (s->job == JOB_FLUSH && s->j_unsent.len > 0) {
        SLOG(s, LOG_WARN,
             "memory flush cut off part-way; %zu of %zu changed files had not finished uploading",
             s->j_unsent.len, s->j_dirty.len);
        s->stats.unsent += (unsigned)s->j_unsent.len;
    }
    if (s->mounting) {
        s->mount_failed = 1;
        err_msg(&s->mount_err, ETIMEDOUT,
                "failed to download memory store memory_store_id=%s: cut off", s->id);
    }
    cancel_inflight(s);
    end_job(s); /* an aborted sync keeps the previous baseline */
}

void memory_store_set_wake(memory_store_t *s, void (*wake)(void *ctx), void *ctx)
{
    s->wake = wake;
    s->wake_ctx = ctx;
}

void memory_store_get_stats(const memory_store_t *s, memory_store_stats_t *out)
{
    *out = s->stats;
}

const char *memory_store_id(const memory_store_t *s)
{
    return s->id;
}

int memory_store_read_only(const memory_store_t *s)
{
    return s->read_only;
}

int memory_store_dispose(memory_store_t *s, shed_err *err)
{
    memory_store_abort(s);
    int v = revalidate_root(s);
    if (v == 0) return 0;
    if (v < 0) {
        SLOG(s, LOG_WARN, "something other than a directory is at the store's path; leaving it");
        return 0;
    }
    memory_map_t files = {0};
    int marker_ok = 0;
    shed_err serr = {0};
    int r = memory_local_scan(&s->local, s->marker_sha, &files, &marker_ok, &serr);
    size_t nfiles = files.len;
    memory_map_clear(&files);
    if (r == 0 && marker_ok != 1 && nfiles > 0) {
        SLOG(s, LOG_WARN, "%s; leaving the memory store folder on disk",
             marker_ok < 0 ? "the marker file does not match this store"
                           : "the marker file is gone");
        return 0;
    }
    r = tree_remove_at(s->parent_fd, s->name, err);
    if (r < 0) return r;
    SLOG(s, LOG_INFO, "removed memory store dir %s", s->name);
    return 0;
}

void memory_store_free(memory_store_t *s)
{
    if (!s) return;
    cancel_inflight(s);
    end_job(s);
    memory_map_clear(&s->baseline);
    memory_map_clear(&s->refused);
    memory_map_clear(&s->pending);
    memory_map_clear(&s->sent);
    memory_map_clear(&s->local.hash_cache);
    if (s->local.root_fd >= 0) close(s->local.root_fd);
    if (s->parent_fd >= 0) close(s->parent_fd);
    free(s->id);
    free(s->name);
    free(s->session_id);
    free(s);
}
