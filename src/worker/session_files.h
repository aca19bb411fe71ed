/* What a session brings into its sandbox besides the workspace: its agent's
 * skills (downloaded and extracted into <workspace>/skills/<name>/) and its
 * memory stores (folders under the session's state directory, bound into
 * the sandbox at each store's mount_path and kept in sync with the remote
 * store). work-api.md §4.1/§4.2; docs/skills-and-memory.md. The engines are
 * src/skills and src/memory; this is the worker's wiring: the HTTP calls on
 * the worker's async client, extraction on a pool thread, the sync cadence
 * after tool calls, the bounded final sync and flush at the end.
 *
 * Never: let session metadata choose a host path (host folder names are
 * built from an index and a sanitized id, always under
 * <state>/sessions/<id>/), bind over a system directory or the workdir,
 * mount memory without the item's sessions token, block the event loop on a
 * download or an extraction, or fail the item for one bad skill.
 */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/err.h"
#include "base/loop.h"
#include "memory/memory.h"
#include "worker/api.h"
#include "worker/pool.h"

typedef struct sfiles sfiles_t;
typedef struct audit audit_t;

typedef struct sfiles_env {
    loop_t *loop;
    api_t *api;
    pool_t *pool;           /* extraction and removal run here */
    audit_t *audit;         /* may be NULL */
    const char *state_dir;  /* the worker's state directory */
    const char *workdir;    /* inside the sandbox, e.g. /workspace */
    int64_t sync_interval_ms; /* 0 = MEMORY_DEFAULT_SYNC_INTERVAL_MS */
    memory_delete_mode_t delete_mode;
    /* Callbacks, always from the loop (never from inside an sfiles_* call):
     * ready: set-up finished; rc < 0 when a memory store could not be
     *        mounted (the item must fail), msg says why.
     * idle:  a sync that held the next tool call finished.
     * ended: sfiles_end() is complete (skills removed, memory synced,
     *        flushed, folders removed). */
    void (*ready)(void *arg, int rc, const char *msg);
    void (*idle)(void *arg);
    void (*ended)(void *arg);
    void *arg;
} sfiles_env;

/* From the retrieved session: the skills to fetch and the memory stores to
 * mount. Creates <state>/sessions/<sid>/memory/<n>-<id>/ (empty; leftovers
 * of a dead run removed first) for the sandbox's binds. -EACCES when the
 * session has memory stores but the item carried no sessions token, -EINVAL
 * for a mount_path that cannot be used: the item must fail (as the SDK's
 * SessionMemoryError). *out is NULL when the session has neither. */
int sfiles_new(const sfiles_env *env, const char *session_id, const char *work_id, json_t *session,
               api_cred cred, bool have_token, sfiles_t **out, shed_err *err);
/* "host:inside" binds for the sandbox (NULL-terminated; owned by f). */
const char *const *sfiles_binds(const sfiles_t *f, bool rw);
/* Once the sandbox exists: mount the memory stores (full pull) and fetch the
 * skills, files owned by uid/gid (-1 = keep). env.ready is called when both
 * are done. */
void sfiles_start(sfiles_t *f, const char *workspace, uid_t uid, gid_t gid);
/* True while the set-up or a sync runs: the next tool call waits. */
bool sfiles_busy(const sfiles_t *f);
/* A tool call finished: sync the memory stores if due (the reference's
 * syncIfDue). Returns true when a sync started (env.idle follows). */
bool sfiles_after_call(sfiles_t *f);
/* The item ends: remove the skills, then (clean: the turn ended or the
 * session terminated) the final sync, then the push-only flush, each bounded
 * by MEMORY_FLUSH_TIMEOUT_MS, then remove the store folders; env.ended. */
void sfiles_end(sfiles_t *f, bool clean);
/* Abort whatever runs (no callback after this); the store folders are
 * removed; an extraction on a pool thread finishes on its own. */
void sfiles_free(sfiles_t *f);
/* The checks a memory store's mount_path (inside the sandbox) passes: clean
 * and absolute, no control character, not in the sandbox's own layout
 * (/proc, /etc, /usr, /tmp, ...), not the workdir, inside it or one of its
 * parents. */
int sfiles_mount_path_check(const char *inside, const char *workdir, shed_err *err);
/* Worker start: remove <state>/sessions/<*>/memory left by a killed worker.
 * Returns how many were removed. */
int sfiles_sweep(const char *state_dir);
