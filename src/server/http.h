/* Internal to src/server: the server object shared by http.c (daemon, auth,
 * waiters) and routes.c (endpoint handlers). Not for other modules. */
#pragma once
#include <jansson.h>
#include "base/lazy_mhd.h"
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/crypto.h"
#include "base/id.h"
#include "server/server.h"
#include "server/store.h"

enum { WAIT_POLL = 1, WAIT_STREAM = 2 };

typedef struct waiter {
    struct MHD_Connection *conn;
    int kind;
    char key[ID_MAX];    /* environment id (poll) or session id (stream) */
    int64_t deadline_ms; /* monotonic */
    struct waiter *next, *prev;
    bool listed;
} waiter_t;

#define WORKER_SLOTS 4096
typedef struct worker_seen {
    char env_id[ID_MAX];
    char worker_id[128];
    int64_t last_ms;
} worker_seen_t;

struct server {
    server_config_t cfg;
    unsigned char admin_digest[SHA256_LEN];
    store_t *store;
    struct MHD_Daemon *mhd;
    int port;
    /* waiters: guarded by wlock (the MHD thread adds, both threads resume) */
    pthread_mutex_t wlock;
    pthread_cond_t wcond;
    pthread_t waker;
    waiter_t *waiters;
    int nwaiters;
    int64_t waker_next_ms; /* when the waker wakes by itself (monotonic; 0 before its first pass, which scans every waiter) */
    bool stopping, waker_quit;
    /* workers_polling: MHD thread only */
    worker_seen_t workers[WORKER_SLOTS];
    /* Event appends so far (MHD thread only, as every append): a stream that
     * read everything when this was N needs no query while it is still N. */
    uint64_t appends;
};

/* Per-request state (MHD's con_cls). */
typedef struct req {
    buf_t body;
    bool too_large;
    /* long-poll state across suspend/resume */
    bool polling;
    int64_t deadline_ms;
    int64_t reclaim_ms;
    char worker_id[128];
    store_principal_t who;
    char env_id[ID_MAX];
    waiter_t waiter;
} req_t;

enum MHD_Result routes_dispatch(server_t *srv, struct MHD_Connection *c, req_t *r, const char *url,
                                const char *method);

enum MHD_Result http_json(struct MHD_Connection *c, unsigned status, json_t *body);
/* The same for an answer already encoded as JSON (copied). */
enum MHD_Result http_json_text(struct MHD_Connection *c, unsigned status, const char *json);
enum MHD_Result http_empty(struct MHD_Connection *c, unsigned status);
enum MHD_Result http_error(struct MHD_Connection *c, unsigned status, const char *type,
                           const char *msg);
enum MHD_Result http_error_details(struct MHD_Connection *c, unsigned status, const char *type,
                                   const char *msg, json_t *details);
enum MHD_Result http_store_error(server_t *srv, struct MHD_Connection *c, int rc,
                                 const shed_err *err);
int http_authenticate(server_t *srv, struct MHD_Connection *c, store_principal_t *p,
                      const char **msg);

void http_wait(server_t *srv, waiter_t *w, struct MHD_Connection *conn, int kind, const char *key,
               int64_t deadline_ms);
/* Every listed waiter of `kind`: `visit(w, same_key, ctx)` runs with the
 * waiters' lock held (so a listed waiter's connection stays suspended and
 * untouched by libmicrohttpd meanwhile); a waiter of `key` for which it
 * returns false is unlisted and resumed; the rest stay waiting. */
void http_notify_visit(server_t *srv, int kind, const char *key,
                       bool (*visit)(waiter_t *w, bool same_key, void *ctx), void *ctx);
void http_notify_one(server_t *srv, int kind, const char *key);
void http_note_worker(server_t *srv, const char *env_id, const char *worker_id);
int http_workers_polling(server_t *srv, const char *env_id);

/* routes_objects.c: agents, skills, memory stores and memories. */
enum MHD_Result routes_objects(server_t *srv, struct MHD_Connection *c, req_t *r,
                               const store_principal_t *who, const char *method, char **seg,
                               int nseg);
/* The agent snapshot a new session carries, from the `agent` field of
 * POST /v1/sessions (an agent id, {type:"agent",id,version?},
 * {type:"agent_with_overrides",...} or a legacy inline object). 0, or an HTTP
 * status with msg naming the field. */
int routes_session_agent(server_t *srv, json_t *agent, json_t **out, char *msg, size_t n);
/* Validate and complete `resources` of POST /v1/sessions in place
 * (memory_store only; access, mount_path, name, description). 0 or a status. */
int routes_session_resources(server_t *srv, json_t *res, char *msg, size_t n);
