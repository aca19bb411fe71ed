/* shed worker: claims work items from a self_hosted environment and serves
 * each session in its own sandbox, many at once, on one event loop
 * (architecture.md "Process model"). Implements work-api.md §2–§3 like the
 * SDK's EnvironmentWorker/WorkPoller/SessionToolRunner; differences are in
 * docs/worker.md. Never logs a key, token or secret, never hands one to a
 * sandbox, never runs a tool outside a sandbox.
 */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"
#include "worker/api.h"

typedef struct worker_config {
    const char *environment_id;
    api_keyring *keys;          /* environment key (may be empty in `run` with a secret) */
    const char *worker_id;      /* NULL: <hostname>-<random> */
    const char *base_url;
    const char *workdir;        /* inside the sandbox, default /workspace */
    int64_t max_idle_ms;        /* idle exit after end_turn; 0 = never */
    int max_sessions;           /* concurrent sessions */
    const char *policy_path;    /* sandbox policy file, NULL = default */
    const char *state_dir;
    int64_t tool_timeout_ms;    /* per call, default 120 s */
    int64_t shutdown_grace_ms;  /* SIGTERM: bound on the whole shutdown, default 20 s */
    /* Observability (src/obs): NULL = off. */
    const char *metrics_listen;  /* "127.0.0.1:9464" */
    const char *audit_log;       /* path of the hash-chained audit log */
    int audit_content;           /* audit_content (obs.h) */
    uint64_t audit_rotate_bytes;
    bool audit_fsync;
    /* `shed worker run`: serve this one already-claimed item, then exit. */
    bool run_one;
    const char *run_work_id;
    const char *run_session_id;
    const char *run_secret;     /* raw secret (base64url JSON), may be NULL */
    /* Operator controls (src/worker/admin.c). */
    const char *admin_socket;   /* NULL: <state_dir>/admin.sock; "" = none */
    int64_t max_session_ms;     /* wall-clock cap per work item from its claim; 0 = none */
    /* Memory stores (session_files.c): sync interval (0 = 15 s), deletion mode
     * (memory_delete_mode_t: 0 enabled, 1 log_only, 2 disabled). */
    int64_t memory_sync_ms;
    int memory_delete_mode;
} worker_config;

/* Runs until SIGTERM/SIGINT (or, with run_one, until the item is done).
 * Returns 0 on a clean end, else -errno with err set. */
int worker_run(const worker_config *cfg, shed_err *err);
/* Default --max-sessions for this machine. */
int worker_default_max_sessions(void);
/* Tools the worker runs in sandboxes (the agent toolset). */
bool worker_owns_tool(const char *name);
