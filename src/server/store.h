/* The control plane's storage interface: every state change of the local
 * Managed Agents API (environments, keys, sessions, events, the work queue)
 * is one call here and one transaction in the backend. Backends implement
 * `struct store_ops` (store_sqlite.c today; a PostgreSQL backend later).
 *
 * Records cross this boundary as jansson objects already in the public API's
 * shape (times as RFC 3339 strings), so the HTTP layer never sees SQL and a
 * backend never sees HTTP. Credentials cross it only as SHA-256 hex digests:
 * a backend never stores or sees a key.
 *
 * Return convention: 0 on success, or
 *   -ENOENT  no such object (404)            -EEXIST  conflict (409)
 *   -ESTALE  precondition failed (412)        -EINVAL  bad input (400)
 *   -EACCES  not allowed in this state (403)  anything else: internal (500)
 * with `err` naming what and why. */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"
#include "base/id.h"

typedef struct store store_t;

/* Who made a request, resolved from a credential. */
enum { PRINCIPAL_NONE = 0, PRINCIPAL_ADMIN, PRINCIPAL_ENV_KEY, PRINCIPAL_SESSIONS_TOKEN };
typedef struct store_principal {
    int kind;
    char env_id[ID_MAX];
    char work_id[ID_MAX];    /* sessions token only */
    char session_id[ID_MAX]; /* sessions token only */
    int64_t gen;             /* sessions token only: the delivery it was minted for */
} store_principal_t;

/* A page request: items after `after` (opaque cursor decoded by the backend). */
#define STORE_MAX_TYPES 16
typedef struct store_page {
    int limit;          /* 1..1000 */
    const char *cursor; /* NULL = first page */
    bool desc;
    /* events only: keep these event types (none = all) */
    const char *types[STORE_MAX_TYPES];
    int ntypes;
} store_page_t;

/* Work-queue parameters a backend applies. */
typedef struct store_queue_cfg {
    int64_t default_ttl_s;      /* lease TTL when the worker asks for none */
    int64_t default_reclaim_ms; /* re-deliver unacked items after this long */
    bool sync_normal;           /* SQLite synchronous=NORMAL instead of FULL (see store_sqlite.c) */
    bool sync_strict;           /* with FULL: no early append (STORE_APPEND_EARLY is ignored) */
} store_queue_cfg_t;

/* Heartbeat outcome (also filled on -ESTALE, for error.details.current_state). */
typedef struct store_heartbeat {
    char state[16];
    char last_heartbeat[64]; /* "" when there has been none */
    int64_t ttl_seconds;
    bool lease_extended;
} store_heartbeat_t;

/* One event an append stored: its sequence number, type, and where its
 * stored bytes (the compact JSON a stream sends) are inside `answer`. */
typedef struct store_appended {
    int64_t seq;
    char type[64];
    size_t off, len;
} store_appended_t;

#define STORE_APPEND_MAX 100 /* events one append can carry (routes.c checks) */

/* events_append flag: with --sync full, commit without waiting for the disk
 * (the events are visible to this process at once: a stream can be sent
 * them while the disk writes them) and set res->sync_pending; the caller
 * then calls ops->sync before it acknowledges anything. Ignored with
 * --sync normal (no flush at all) and --sync strict (flush inside). */
#define STORE_APPEND_EARLY 1u

/* What an events append caused, so the HTTP layer can wake waiters. */
typedef struct store_append_result {
    json_t *events; /* the stored events, in order (new reference) */
    /* The same as the compact JSON {"data":[events...]}, byte for byte (the
     * HTTP answer), or NULL if it could not be built; owned by the store,
     * valid until its next call. */
    const char *answer;
    /* With `answer`: each stored event, in order (seq ascending), so a
     * waiting stream can be sent them without a query; 0 when not known. */
    int nappended;
    store_appended_t appended[STORE_APPEND_MAX];
    bool work_enqueued; /* a dormant session was woken up */
    bool sync_pending;  /* STORE_APPEND_EARLY: committed, not yet durable */
    char env_id[ID_MAX];
} store_append_result_t;

/* One event for an SSE stream. */
typedef struct store_stream_event {
    int64_t seq;
    char type[64];
    char *json; /* malloc'd compact JSON */
} store_stream_event_t;

struct store_ops {
    void (*close)(store_t *s);

    /* Credentials (SHA-256 hex of the presented key). */
    int (*auth_env_key)(store_t *s, const char *key_hash, store_principal_t *out, shed_err *err);
    int (*auth_sessions_token)(store_t *s, const char *token_hash, store_principal_t *out,
                               shed_err *err);

    /* Environments. `fields` is the validated request body. */
    int (*env_create)(store_t *s, json_t *fields, json_t **out, shed_err *err);
    int (*env_get)(store_t *s, const char *id, json_t **out, shed_err *err);
    int (*env_list)(store_t *s, bool include_archived, const store_page_t *pg, json_t **page_out,
                    shed_err *err);
    int (*env_update)(store_t *s, const char *id, json_t *fields, json_t **out, shed_err *err);
    int (*env_archive)(store_t *s, const char *id, json_t **out, shed_err *err);
    int (*env_delete)(store_t *s, const char *id, shed_err *err);

    /* Environment keys (LOCAL). */
    int (*key_create)(store_t *s, const char *env_id, const char *key_hash, json_t **out,
                      shed_err *err);
    int (*key_list)(store_t *s, const char *env_id, json_t **page_out, shed_err *err);
    int (*key_revoke)(store_t *s, const char *env_id, const char *key_id, shed_err *err);

    /* Sessions. Creating one enqueues its work item in the same transaction. */
    int (*session_create)(store_t *s, json_t *fields, json_t **out, shed_err *err);
    int (*session_get)(store_t *s, const char *id, json_t **out, shed_err *err);
    /* A session's environment and status only (no JSON built: the events
     * routes' per-request check); -ENOENT if there is none. */
    int (*session_head)(store_t *s, const char *id, char env_id[ID_MAX], char status[32],
                        shed_err *err);
    int (*session_list)(store_t *s, const char *env_id, const store_page_t *pg, json_t **page_out,
                        shed_err *err);

    /* Events. `events` is validated for shape; the backend checks references
     * (tool_use_id), duplicates, and applies effects, all or nothing. */
    int (*events_append)(store_t *s, const char *session_id, json_t *events, unsigned flags,
                         store_append_result_t *res, shed_err *err);
    /* Makes every commit so far durable (after a STORE_APPEND_EARLY append:
     * res->sync_pending). 0, or -EIO: then the store refuses every later
     * write (-EROFS) until it is reopened (a failed flush leaves the disk's state
     * unknown; retrying it could report a success that is not one). */
    int (*sync)(store_t *s, shed_err *err);
    /* NULL, or why the store refuses every write (a failed flush; a write
     * then fails with -EROFS). /readyz reports it. */
    const char *(*write_refused)(store_t *s);
    int (*events_list)(store_t *s, const char *session_id, const store_page_t *pg,
                       json_t **page_out, shed_err *err);
    /* Highest event seq of a session so far (0 if none): where a stream starts. */
    int (*events_last_seq)(store_t *s, const char *session_id, int64_t *seq, shed_err *err);
    /* Up to `max` events after `after_seq`; returns how many were filled:
     * fewer than `max` means there are no more (just now), or a -errno (then
     * none is filled). */
    int (*events_after)(store_t *s, const char *session_id, int64_t after_seq,
                        store_stream_event_t *out, int max, shed_err *err);

    /* The work queue. `now_us` is wall time (tests drive it). */
    int (*work_poll)(store_t *s, const char *env_id, const char *worker_id, int64_t reclaim_ms,
                     const char *token_hash, int64_t now_us, json_t **out, shed_err *err);
    /* gen < 0: caller is not bound to a delivery (admin or environment key). */
    int (*work_ack)(store_t *s, const char *env_id, const char *work_id, int64_t gen,
                    int64_t now_us, json_t **out, shed_err *err);
    int (*work_heartbeat)(store_t *s, const char *env_id, const char *work_id, int64_t gen,
                          const char *expected, int64_t desired_ttl_s, int64_t now_us,
                          store_heartbeat_t *hb, shed_err *err);
    /* by_holder: the worker (env key / token) stops its own item: always final. */
    int (*work_stop)(store_t *s, const char *env_id, const char *work_id, int64_t gen, bool force,
                     bool by_holder, int64_t now_us, shed_err *err);
    int (*work_get)(store_t *s, const char *env_id, const char *work_id, int64_t now_us,
                    json_t **out, shed_err *err);
    int (*work_list)(store_t *s, const char *env_id, const store_page_t *pg, int64_t now_us,
                     json_t **page_out, shed_err *err);
    int (*work_update)(store_t *s, const char *env_id, const char *work_id, json_t *metadata,
                       json_t **out, shed_err *err);
    int (*work_stats)(store_t *s, const char *env_id, int64_t now_us, json_t **out, shed_err *err);

    /* Objects kept as validated JSON bodies: agents ("agent"), memory stores
     * ("memory_store"), skills ("skill"). `body` gets id/created_at/updated_at
     * set by the backend (id from `prefix`). */
    int (*obj_create)(store_t *s, const char *kind, const char *prefix, json_t *body, json_t **out,
                      shed_err *err);
    int (*obj_get)(store_t *s, const char *kind, const char *id, json_t **out, shed_err *err);
    int (*obj_list)(store_t *s, const char *kind, const store_page_t *pg, json_t **page_out,
                    shed_err *err);

    /* Skills. skill_create makes the skill and its first version in one
     * transaction; version_create adds one and moves latest_version_id.
     * `version` fields: name, description, directory. The archive is stored
     * as bytes. version_get/content accept a version id or "latest". */
    int (*skill_create)(store_t *s, json_t *skill, json_t *version, const void *archive,
                        size_t archive_len, json_t **out, shed_err *err);
    int (*skill_version_create)(store_t *s, const char *skill_id, json_t *version,
                                const void *archive, size_t archive_len, json_t **out,
                                shed_err *err);
    int (*skill_version_get)(store_t *s, const char *skill_id, const char *version, json_t **out,
                             shed_err *err);
    int (*skill_version_list)(store_t *s, const char *skill_id, const store_page_t *pg,
                              json_t **page_out, shed_err *err);
    /* *data is malloc'd. */
    int (*skill_version_content)(store_t *s, const char *skill_id, const char *version, void **data,
                                 size_t *len, shed_err *err);

    /* Memories of a memory store. Paths are validated by the caller.
     * create: -EEXIST when the path, an ancestor or a descendant exists
     *   (*conflict = {conflicting_memory_id, conflicting_path}).
     * update: expected_sha (NULL = unconditional) mismatch -> -ESTALE, unless
     *   the memory already has exactly the requested content and path.
     * delete: expected_sha mismatch -> -ESTALE. */
    int (*memory_list)(store_t *s, const char *store_id, const char *path_prefix, int depth,
                       bool full, const store_page_t *pg, json_t **page_out, shed_err *err);
    int (*memory_get)(store_t *s, const char *store_id, const char *mem_id, bool full, json_t **out,
                      shed_err *err);
    int (*memory_create)(store_t *s, const char *store_id, const char *path, const char *content,
                         size_t content_len, bool full, json_t **out, json_t **conflict,
                         shed_err *err);
    int (*memory_update)(store_t *s, const char *store_id, const char *mem_id, const char *path,
                         const char *content, size_t content_len, const char *expected_sha,
                         bool full, json_t **out, json_t **conflict, shed_err *err);
    int (*memory_delete)(store_t *s, const char *store_id, const char *mem_id,
                         const char *expected_sha, shed_err *err);
};

struct store {
    const struct store_ops *ops;
    store_queue_cfg_t cfg;
};

/* Open a backend from a URL: "sqlite:PATH" (or a bare path). */
int store_open(const char *url, const store_queue_cfg_t *cfg, store_t **out, shed_err *err);

/* SQLite backend (store_sqlite.c). */
int store_sqlite_open(const char *path, const store_queue_cfg_t *cfg, store_t **out, shed_err *err);
