/* Memory stores: the working copy of a session's memory stores and its
 * three-way sync with the remote store, as the official TypeScript worker
 * does it (SDK src/tools/agent-toolset/memories.ts, sync-interval.ts,
 * internal/file-store.ts; ../shared/reference/work-api.md §4.2).
 *
 * The engine is step-driven and never blocks on the network: every remote
 * call goes through a memory_remote_t (a struct of function pointers the
 * worker implements with its async HTTP client, tests with an in-process
 * store) and completes through memory_req_done(); time is a value the
 * caller passes in. Local file access is relative to the store directory's
 * fd, O_NOFOLLOW at every level.
 *
 * Never: follow a symlink in a store folder, write outside it, sync a folder
 * whose marker is missing or names another store, push from a read-only
 * store, delete a remote memory on the first sync that notices a local
 * deletion, or more than the per-sync cap of them. */
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/crypto.h"
#include "base/err.h"

/* Constants of memories.ts / sync-interval.ts. */
#define MEMORY_MARKER_NAME              ".anthropic-memory-store"
#define MEMORY_MARKER_VERSION           1
#define MEMORY_DEFAULT_SYNC_INTERVAL_MS 15000
#define MEMORY_MIN_SYNC_INTERVAL_MS     5000
#define MEMORY_DELETE_CORROBORATION_MS  30000
#define MEMORY_FLUSH_TIMEOUT_MS         30000
#define MEMORY_LIST_PAGE_SIZE           100
#define MEMORY_FULL_LIST_PAGE_SIZE      20
#define MEMORY_FETCH_CONCURRENCY        16
#define MEMORY_UPLOAD_CONCURRENCY       32
#define MEMORY_DELETE_CAP_FLOOR         8
#define MEMORY_DELETE_CAP_CEILING       50
/* shed's own bounds: a local file larger than this is refused without a
 * round trip (the API caps content at 100 kB and would answer 413); a store
 * folder with more files than this is not synced (the API caps a store at
 * 2000 memories), nor a listing longer than that or than MEMORY_MAX_LIST_PAGES;
 * nesting deeper than this is not walked. */
#define MEMORY_MAX_FILE_BYTES  (1u << 20)
#define MEMORY_MAX_LOCAL_FILES 20000
#define MEMORY_MAX_DEPTH       64
#define MEMORY_MAX_LIST_PAGES                                                                      \
    2000 /* a pass's listing: 20000 memories at 20 a page (a full pull) is 1000 */

/* Whether a locally deleted file may delete its memory on the server. */
typedef enum memory_delete_mode {
    MEMORY_DELETE_ENABLED = 0, /* send the delete */
    MEMORY_DELETE_LOG_ONLY,    /* run the checks, only log */
    MEMORY_DELETE_DISABLED,    /* never delete */
} memory_delete_mode_t;

/* "enabled" | "log_only" | "disabled" -> mode; -EINVAL otherwise. */
int memory_parse_delete_mode(const char *s, memory_delete_mode_t *out);
/* checkMemorySyncInterval: -EINVAL with a message below the minimum. */
int memory_check_sync_interval(int64_t ms, shed_err *err);
/* isPathLegal: absolute, no ".." component. */
int memory_mount_path_legal(const char *p);
/* The marker's exact bytes, "version 1\n<memory_store_id>"; returns its length. */
size_t memory_marker_content(const char *memory_store_id, char *out, size_t outlen);

/* ---- the remote side --------------------------------------------------- */

/* One memory as the API returns it (BetaManagedAgentsMemory); `content` only
 * in the full view. */
typedef struct memory_item {
    char *id;
    char *path; /* wire path, starting with '/' */
    char sha[SHA256_HEX_LEN];
    char *content;
    size_t content_len;
    int is_prefix; /* a memory_prefix rollup, not a memory */
} memory_item_t;

typedef enum memory_op {
    MEMORY_OP_LIST,   /* GET  /v1/memory_stores/{store}/memories?view&limit&page&path_prefix */
    MEMORY_OP_GET,    /* GET  .../memories/{id}?view=full */
    MEMORY_OP_CREATE, /* POST .../memories {path, content} */
    MEMORY_OP_UPDATE, /* POST .../memories/{id} {content, precondition:{content_sha256}} */
    MEMORY_OP_DELETE, /* DELETE .../memories/{id}?expected_content_sha256= */
} memory_op_t;

typedef struct memory_store memory_store_t;

/* One remote call. The engine fills the request fields and owns the struct;
 * the remote fills the result fields (with the helpers below) and then calls
 * memory_req_done(), at once or later from its event loop. */
typedef struct memory_req {
    /* request */
    memory_op_t op;
    const char *store_id;
    const char *view;        /* LIST: "basic" | "full" */
    const char *path_prefix; /* LIST: NULL = the whole store */
    int limit;               /* LIST: page size */
    const char *page;        /* LIST: cursor from the previous page, NULL first */
    const char *memory_id;   /* GET, UPDATE, DELETE */
    const char *path;        /* CREATE: wire path "/rel" */
    const char *content;     /* CREATE, UPDATE */
    size_t content_len;
    const char *sha; /* UPDATE: precondition content_sha256; DELETE: expected_content_sha256 */

    /* result */
    int status; /* HTTP status; 0 when no response arrived (transport error) */
    char error[256];
    memory_item_t item;   /* GET, CREATE, UPDATE */
    memory_item_t *items; /* LIST page */
    size_t n_items, cap_items;
    char *next_page; /* LIST: NULL on the last page */

    /* engine-private */
    memory_store_t *store;
    struct memory_task *task;
    struct memory_req *next;
    int finished;
} memory_req_t;

/* What the worker (or a test) provides. Each call starts `req` and returns
 * 0, and later calls memory_req_done(req) exactly once; or returns -errno
 * without ever calling it (counted as a transport failure). After cancel()
 * returns, the remote never touches req again. */
typedef struct memory_remote {
    void *ctx;
    int (*list)(void *ctx, memory_req_t *req);
    int (*get)(void *ctx, memory_req_t *req);
    int (*create)(void *ctx, memory_req_t *req);
    int (*update)(void *ctx, memory_req_t *req);
    int (*del)(void *ctx, memory_req_t *req);
    void (*cancel)(void *ctx, memory_req_t *req);
} memory_remote_t;

/* Result helpers for remotes (copy their arguments). */
int memory_req_set_item(memory_req_t *req, const char *id, const char *path, const char *sha,
                        const char *content, size_t content_len);
int memory_req_add_item(memory_req_t *req, const char *id, const char *path, const char *sha,
                        const char *content, size_t content_len, int is_prefix);
int memory_req_set_next_page(memory_req_t *req, const char *cursor);
/* Fill the result from an API response: a memory object (GET, CREATE,
 * UPDATE) or a page {data:[...], next_page} (LIST). Bad shapes are -EPROTO. */
struct json_t;
int memory_req_set_json(memory_req_t *req, int status, struct json_t *body);
/* The request is complete; hands it back to the engine (which may run its
 * wake callback). Safe to call from inside the remote call itself. */
void memory_req_done(memory_req_t *req);

/* ---- one attached store ------------------------------------------------- */

typedef struct memory_store_config {
    const char *memory_store_id;
    int read_only; /* access == "read_only": pull, never push */
    memory_delete_mode_t delete_mode;
    uid_t owner_uid; /* created files and dirs are chowned to these; -1 keeps */
    gid_t owner_gid;
    const char *session_id; /* for log lines */
    unsigned max_inflight;  /* concurrent remote calls; 0 = MEMORY_FETCH_CONCURRENCY */
    /* The folder may already exist as an EMPTY directory (not a link): the
     * worker creates it to bind it into the sandbox before the store is
     * mounted. Anything else at the path is still refused. */
    int adopt_empty_dir;
} memory_store_config_t;

typedef struct memory_store_stats {
    unsigned pulled, pushed, created, deleted_remote, deleted_local, refused, conflicts;
    unsigned deletes_capped, deletes_logged, deletes_suppressed, recoveries, failed_syncs;
    unsigned unsent; /* changed files a cut-off flush did not finish */
} memory_store_stats_t;

/* Mount a store at `name` inside the directory `parent_fd`: `name` must not
 * exist ("something already exists at the memory store's path"; with
 * cfg->adopt_empty_dir an empty directory is taken over instead); it is
 * created 0700, the marker written, and a full pull started. Run the store
 * until idle, then memory_store_mount_result() says whether the pull
 * succeeded; on failure call memory_store_dispose() (the half-downloaded
 * folder is removed) and fail the work item, as the reference does. */
int memory_store_mount(memory_store_t **out, const memory_store_config_t *cfg,
                       const memory_remote_t *remote, int parent_fd, const char *name,
                       int64_t now_ms, shed_err *err);
int memory_store_mount_result(const memory_store_t *s, shed_err *err);

/* Start one three-way sync; `final` (the session's last sync) skips the
 * delete wait. -EBUSY while another pass runs. */
int memory_store_sync_start(memory_store_t *s, int final, int64_t now_ms);
/* Start the push-only flush (flushWrites): uploads new and changed files,
 * sends no deletes, pulls nothing. -EBUSY while another pass runs. */
int memory_store_flush_start(memory_store_t *s, int64_t now_ms);
/* Advance the current pass as far as it goes without waiting; 1 while it
 * still waits on remote calls, 0 when idle. Never fails: problems are logged
 * and counted, as the reference's syncs never throw. */
int memory_store_run(memory_store_t *s, int64_t now_ms);
int memory_store_busy(const memory_store_t *s);
/* Cut the current pass off (the flush's 30 s bound): in-flight calls are
 * cancelled, no new one starts; a flush logs how many files it left unsent. */
void memory_store_abort(memory_store_t *s);
/* Called after every memory_req_done(), e.g. to schedule a run on the loop. */
void memory_store_set_wake(memory_store_t *s, void (*wake)(void *ctx), void *ctx);
void memory_store_get_stats(const memory_store_t *s, memory_store_stats_t *out);
const char *memory_store_id(const memory_store_t *s);
int memory_store_read_only(const memory_store_t *s);
/* Remove the store folder, unless it fails the marker check and holds files
 * (then it is left as found, with a warning). Aborts a running pass first. */
int memory_store_dispose(memory_store_t *s, shed_err *err);
/* Abort and free; the folder stays (dispose first to remove it). */
void memory_store_free(memory_store_t *s);

/* ---- a session's stores -------------------------------------------------- */

typedef struct memory_session memory_session_t;

/* interval_ms below MEMORY_MIN_SYNC_INTERVAL_MS is refused. */
int memory_session_new(memory_session_t **out, int64_t interval_ms, int64_t now_ms, shed_err *err);
/* Takes ownership of a mounted store (at most 8 per session, as the API). */
int memory_session_add(memory_session_t *m, memory_store_t *s, shed_err *err);
size_t memory_session_count(const memory_session_t *m);
memory_store_t *memory_session_store(memory_session_t *m, size_t i);
/* The download is done: the interval counts from now. */
void memory_session_mounted(memory_session_t *m, int64_t now_ms);
/* syncIfDue, after each tool call: starts a sync of every store when the
 * interval has passed since the last one ended and none is running. 1 when
 * started. */
int memory_session_sync_if_due(memory_session_t *m, int64_t now_ms);
/* finish(): the last sync, once (-EALREADY the second time). */
int memory_session_finish(memory_session_t *m, int64_t now_ms, shed_err *err);
/* flushWrites() on every store. */
int memory_session_flush(memory_session_t *m, int64_t now_ms);
/* Run every store; 1 while any is busy. Records the end of a sync. */
int memory_session_run(memory_session_t *m, int64_t now_ms);
void memory_session_abort(memory_session_t *m);
/* dispose() every store (errors logged), then free everything. */
void memory_session_dispose_free(memory_session_t *m);
