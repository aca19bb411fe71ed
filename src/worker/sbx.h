/* The worker's bridge to a session's sandbox (sandbox.h + ctl.h): create it
 * for a session, send one tool call at a time over the control channel and
 * get its result on the event loop (the channel fd is watched by the loop,
 * never read blocking), cancel a call, destroy the sandbox. Never passes a
 * credential into the sandbox: its environment is built here from nothing.
 */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/err.h"
#include "base/loop.h"

typedef struct sbx sbx_t;
typedef struct sandbox_policy sandbox_policy;

/* result: {"is_error":bool,"content":[...]} (borrowed). */
typedef void (*sbx_result_cb)(sbx_t *s, uint64_t call_id, json_t *result, void *arg);
/* The sandbox died or its channel broke; no more results will come. */
typedef void (*sbx_dead_cb)(sbx_t *s, const char *why, void *arg);

/* 0 when the sandbox runtime is linked in; else -ENOSYS and a message naming
 * what is missing. */
int sbx_available(shed_err *err);
int sbx_policy_load(const char *path, sandbox_policy **out, shed_err *err);
void sbx_policy_free(sandbox_policy *p);
int sbx_reconcile(const char *state_dir, shed_err *err);

typedef struct egress egress_t;
typedef struct egress_policy egress_policy;

typedef struct sbx_opts {
    loop_t *loop;
    egress_t *egress;                   /* serves the sandbox's listeners; NULL = close them */
    const egress_policy *egress_policy; /* NULL = deny all */
    const sandbox_policy *policy;
    const char *label;      /* session id */
    const char *workspace;  /* host dir */
    const char *workdir;    /* inside, default /workspace */
    const char *state_dir;
    const char *const *ro_binds; /* "host:inside", NULL-terminated (memory stores) */
    const char *const *rw_binds;
    sbx_result_cb on_result;
    sbx_dead_cb on_dead;
    void *arg;
} sbx_opts;

int sbx_create(const sbx_opts *o, sbx_t **out, shed_err *err);

/* The same on a pool thread (creating a sandbox blocks for tens of ms):
 * ready(s, NULL, arg) or ready(NULL, error, arg) later on the loop thread. */
typedef struct pool pool_t;
typedef struct sbx_pending sbx_pending_t;
typedef void (*sbx_ready_cb)(sbx_t *s, const char *error, void *arg);
sbx_pending_t *sbx_create_async(pool_t *pool, const sbx_opts *o, sbx_ready_cb ready,
                                shed_err *err);
/* The caller no longer wants it: ready is never called; the sandbox, if it
 * gets made, is destroyed; then gone(arg) runs on the loop thread. */
typedef void (*sbx_gone_cb)(void *arg);
void sbx_create_abandon(sbx_pending_t *p, sbx_gone_cb gone, void *arg);
/* Stop watching it now; the kill ladder runs on a pool thread; frees s.
 * done(arg) runs on the loop thread once the sandbox is gone (may be NULL). */
void sbx_destroy_async(pool_t *pool, sbx_t *s, int grace_ms, sbx_gone_cb done, void *arg);
int sbx_call(sbx_t *s, uint64_t call_id, const char *tool, json_t *input, int64_t timeout_ms,
             shed_err *err);
int sbx_cancel(sbx_t *s, uint64_t call_id);
/* Kill ladder and cleanup; frees s. */
void sbx_destroy(sbx_t *s, int grace_ms);
uid_t sbx_uid(const sbx_t *s);
pid_t sbx_pid(const sbx_t *s);
/* One line describing the sandbox (uid, network, limits) for reports. */
const char *sbx_describe(const sbx_t *s);
