/* The worker's local admin endpoint (docs/operations.md "Stopping a stuck
 * session"): a unix stream socket, owner-only (mode 0600 and SO_PEERCRED
 * uid == the worker's euid or 0), served on the worker's event loop; one
 * JSON request per line, one JSON response per line. Commands: list, kill,
 * policy (change or reset a running session's egress policy). Also the
 * --max-session-seconds sweep. Never answers with a key, token or secret;
 * never serves a peer of another uid.
 */
#pragma once
#include <jansson.h>
#include <stdint.h>

#include "base/err.h"
#include "base/loop.h"
#include "obs/obs.h"

typedef struct admin admin_t;
struct worker;
typedef struct egress_policy egress_policy;

typedef struct admin_opts {
    loop_t *loop;
    struct worker *worker;
    audit_t *audit;               /* may be NULL */
    json_t *default_network;      /* the worker policy's network object (borrowed; NULL = deny all) */
    const char *socket_path;      /* NULL or "" = no socket */
    int64_t max_session_ms;       /* 0 = no cap */
} admin_opts;

/* Refuses (-EEXIST) a path that exists and is not a socket, or a socket a
 * live process still answers on; unlinks a stale socket. */
int admin_start(const admin_opts *o, admin_t **out, shed_err *err);
/* Closes the socket and its connections, unlinks the path. NULL is fine. */
void admin_free(admin_t *a);
/* One request line -> one response object (new reference). For tests. */
json_t *admin_handle(admin_t *a, const char *line, size_t len);

/* Implemented in worker.c (the session table is the worker's). */
/* Array of session objects (no credentials). */
json_t *worker_admin_list(struct worker *w);
/* End a session like a stop request: its in-flight call gets an error result
 * with `text` (posted), its sandbox is destroyed, the item stopped with
 * force:true; counts shed_kills_total{reason} and audits a kill record
 * (by="admin", or "worker" for max_session); its sandbox.destroyed and
 * work.stopped records give `reason` too (a string literal: it is kept).
 * -ENOENT: no such session. */
int worker_admin_kill(struct worker *w, const char *session_id, const char *work_id /* NULL = every item */,
                      const char *reason, const char *by, const char *text, shed_err *err);
/* Apply pol (NULL = the worker's own) to the session's sandbox; fills its
 * work id and sandbox pid. -ENOENT: no running sandbox for that session. */
int worker_admin_set_policy(struct worker *w, const char *session_id, const egress_policy *pol,
                            char *work_id, size_t work_id_len, int *sandbox_pid, shed_err *err);
/* Items that have run for at least max_ms: new array of {"session_id","work_id"}. */
json_t *worker_admin_expired(struct worker *w, int64_t max_ms);
