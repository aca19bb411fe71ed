/* The endpoints of `shed serve` (shared/design/local-control-plane.md):
 * parse and validate each request, check the principal's scope, make one
 * store call, answer in the public API's shape. Odd corners of the protocol
 * (204 empty polls, NO_HEARTBEAT, stop by holder vs operator) are described
 * in docs/protocol.md.
 *
 * Never answers with another environment's or session's data; never puts a
 * credential in a log line or an error message. */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "base/b64.h"
#include "base/cleanup.h"
#include "base/clock.h"
#include "base/crypto.h"
#include "base/json.h"
#include "base/log.h"
#include "server/http.h"
#include "server/request.h"
#include "server/validate.h"

#define JSON_MAX_DEPTH 32
#define MAX_SEGS       8
#define MAX_EVENTS     STORE_APPEND_MAX

typedef struct route_ctx {
    server_t *srv;
    struct MHD_Connection *c;
    req_t *r;
    const char *method;
    char *seg[MAX_SEGS];
    int nseg;
    store_principal_t who;
} route_ctx_t;

#define STORE(x) ((x)->srv->store)
#define OPS(x)   ((x)->srv->store->ops)

/* ------------------------------------------------------------ validation */

/* 400 with a formatted message (server_bad_request). */
#define bad(x, ...) server_bad_request((x)->c, __VA_ARGS__)

static const char *qarg(route_ctx_t *x, const char *name)
{
    return MHD_lookup_connection_value(x->c, MHD_GET_ARGUMENT_KIND, name);
}

/* Strict decimal integer in [lo, hi]. 1 = absent, 0 = ok, -1 = invalid. */
static int parse_int(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    if (!s) return 1;
    if (!*s || strlen(s) > 18) return -1;
    int64_t v = 0;
    bool neg = false;
    const char *p = s;
    if (*p == '-') {
        neg = true;
        p++;
    }
    if (!*p) return -1;
    for (; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        v = v * 10 + (*p - '0');
    }
    if (neg) v = -v;
    if (v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

/* Parse the request body as a JSON object; an empty body is {} when allowed. */
static json_t *body_object(route_ctx_t *x, bool empty_ok, enum MHD_Result *ret)
{
    char msg[512];
    json_t *j = server_body_object(&x->r->body, x->srv->cfg.max_body, JSON_MAX_DEPTH, empty_ok, msg,
                                   sizeof(msg));
    if (!j) *ret = bad(x, "%s", msg);
    return j;
}

/* metadata: object of string values (null allowed when patching). */
static bool check_metadata(json_t *md, bool nulls_ok, const char *field, char *msg, size_t n)
{
    if (!json_is_object(md)) {
        snprintf(msg, n, "field '%s' must be an object of strings", field);
        return false;
    }
    if (json_object_size(md) > 64) {
        snprintf(msg, n, "field '%s' has more than 64 keys", field);
        return false;
    }
    const char *k;
    json_t *v;
    json_object_foreach(md, k, v)
    {
        if (strlen(k) > 64 || !*k) {
            snprintf(msg, n, "field '%s': keys must be 1-64 characters", field);
            return false;
        }
        if (json_is_string(v) ? json_string_length(v) > 512 : !(nulls_ok && json_is_null(v))) {
            snprintf(msg, n, "field '%s.%.64s' must be a string of at most 512 characters%s", field,
                     k, nulls_ok ? " or null" : "");
            return false;
        }
    }
    return true;
}

static bool check_str(json_t *o, const char *key, bool required, size_t maxlen, char *msg, size_t n)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (required) snprintf(msg, n, "field '%s' is required (a string)", key);
        return !required;
    }
    if (!json_is_string(v)) {
        snprintf(msg, n, "field '%s' must be a string", key);
        return false;
    }
    if (json_string_length(v) > maxlen) {
        snprintf(msg, n, "field '%s' is longer than %zu characters", key, maxlen);
        return false;
    }
    return true;
}

static int page_ok(route_ctx_t *x, store_page_t *pg, int64_t def, enum MHD_Result *ret)
{
    memset(pg, 0, sizeof(*pg));
    int64_t limit = def;
    if (parse_int(qarg(x, "limit"), 1, 1000, &limit) < 0) {
        *ret = bad(x, "query parameter 'limit' must be an integer from 1 to 1000");
        return -1;
    }
    pg->limit = (int)limit;
    pg->cursor = qarg(x, "page");
    if (pg->cursor && !*pg->cursor) pg->cursor = NULL;
    const char *order = qarg(x, "order");
    pg->desc = false;
    if (order) {
        if (!strcmp(order, "desc"))
            pg->desc = true;
        else if (strcmp(order, "asc")) {
            *ret = bad(x, "query parameter 'order' must be 'asc' or 'desc'");
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------ scope checks */

static enum MHD_Result forbid(route_ctx_t *x, const char *why)
{
    return http_error(x->c, 403, NULL, why);
}

static bool is_admin(route_ctx_t *x)
{
    return x->who.kind == PRINCIPAL_ADMIN;
}

/* Admin, or an environment key of that environment. */
static bool env_scope(route_ctx_t *x, const char *env_id)
{
    return is_admin(x) || (x->who.kind == PRINCIPAL_ENV_KEY && !strcmp(x->who.env_id, env_id));
}

static bool valid_id(const char *s, const char *prefix)
{
    return s && id_valid(s, prefix);
}

static enum MHD_Result not_found(route_ctx_t *x, const char *what, const char *id)
{
    char msg[256];
    snprintf(msg, sizeof(msg), "no %s '%.80s'", what, id);
    return http_error(x->c, 404, NULL, msg);
}

/* Load a session the principal may see; answers 404 otherwise (never data). */
static json_t *session_for(route_ctx_t *x, const char *sid, enum MHD_Result *ret)
{
    if (!valid_id(sid, "sesn")) {
        *ret = not_found(x, "session", sid);
        return NULL;
    }
    json_t *s = NULL;
    shed_err err = {0};
    int rc = OPS(x)->session_get(STORE(x), sid, &s, &err);
    if (rc < 0) {
        *ret = http_store_error(x->srv, x->c, rc, &err);
        return NULL;
    }
    const char *env = json_string_value(json_object_get(s, "environment_id"));
    bool ok = is_admin(x) ||
              (x->who.kind == PRINCIPAL_ENV_KEY && env && !strcmp(env, x->who.env_id)) ||
              (x->who.kind == PRINCIPAL_SESSIONS_TOKEN && !strcmp(x->who.session_id, sid));
    if (!ok) {
        json_decref(s);
        *ret = not_found(x, "session", sid);
        return NULL;
    }
    return s;
}

/* session_for without building the session: its existence and the caller's
 * right to it, from its environment id; `status` (32 bytes) gets its status.
 * The events routes' per-request check. */
static bool session_access(route_ctx_t *x, const char *sid, char *status, enum MHD_Result *ret)
{
    if (!valid_id(sid, "sesn")) {
        *ret = not_found(x, "session", sid);
        return false;
    }
    char env[ID_MAX];
    shed_err err = {0};
    int rc = OPS(x)->session_head(STORE(x), sid, env, status, &err);
    if (rc < 0) {
        *ret = http_store_error(x->srv, x->c, rc, &err);
        return false;
    }
    bool ok = is_admin(x) || (x->who.kind == PRINCIPAL_ENV_KEY && !strcmp(env, x->who.env_id)) ||
              (x->who.kind == PRINCIPAL_SESSIONS_TOKEN && !strcmp(x->who.session_id, sid));
    if (!ok) *ret = not_found(x, "session", sid);
    return ok;
}

/* --------------------------------------------------------- environments */

static enum MHD_Result env_create(route_ctx_t *x)
{
    if (!is_admin(x)) return forbid(x, "creating an environment needs the admin key");
    enum MHD_Result ret;
    _cleanup_json_ json_t *b = body_object(x, false, &ret);
    if (!b) return ret;
    char msg[256];
    if (!check_str(b, "name", true, 256, msg, sizeof(msg)) ||
        !check_str(b, "description", false, 4096, msg, sizeof(msg)) ||
        !check_str(b, "scope", false, 64, msg, sizeof(msg)))
        return bad(x, "%s", msg);
    if (!json_string_length(json_object_get(b, "name")))
        return bad(x, "field 'name' must not be empty");
    json_t *cfg = json_object_get(b, "config");
    if (!cfg || json_is_null(cfg))
        return bad(x, "field 'config' is required ({\"type\":\"self_hosted\"})");
    if (!json_is_object(cfg)) return bad(x, "field 'config' must be an object");
    const char *t = json_string_value(json_object_get(cfg, "type"));
    if (!t || strcmp(t, "self_hosted"))
        return bad(x, "field 'config.type' must be 'self_hosted' (this control plane runs no cloud "
                      "sandboxes)");
    json_t *md = json_object_get(b, "metadata");
    if (md && !json_is_null(md) && !check_metadata(md, false, "metadata", msg, sizeof(msg)))
        return bad(x, "%s", msg);
    if (md && json_is_null(md)) json_object_del(b, "metadata");
    json_object_set_new(b, "config", json_pack("{s:s}", "type", "self_hosted"));
    json_t *out = NULL;
    shed_err err = {0};
    int rc = OPS(x)->env_create(STORE(x), b, &out, &err);
    if (rc < 0) return http_store_error(x->srv, x->c, rc, &err);
    return http_json(x->c, 200, out);
}

static enum MHD_Result env_list(route_ctx_t *x)
{
    if (!is_admin(x)) return forbid(x, "listing environments needs the admin key");
    enum MHD_Result ret;
    store_page_t pg;
    if (page_ok(x, &pg, 20, &ret) < 0) return ret;
    const char *ia = qarg(x, "include_archived");
    bool include = ia && (!strcmp(ia, "true") || !strcmp(ia, "1"));
    if (ia && !include && strcmp(ia, "false") && strcmp(ia, "0"))
        return bad(x, "query parameter 'include_archived' must be true or false");
    json_t *out = NULL;
    shed_err err = {0};
    int rc = OPS(x)->env_list(STORE(x), include, &pg, &out, &err);
    if (rc < 0) return http_store_error(x->srv, x->c, rc, &err);
    return http_json(x->c, 200, out);
}

static enum MHD_Result env_one(route_ctx_t *x, const char *id)
{
    if (!is_admin(x)) {
        if (x->who.kind == PRINCIPAL_ENV_KEY && !strcmp(x->who.env_id, id) &&
            !strcmp(x->method, "GET")) {
            /* an environment key may read its own environment */
        } else {
            return forbid(x, "managing environments needs the admin key");
        }
    }
    json_t *out = NULL;
    shed_err err = {0};
    int rc;
    if (!strcmp(x->method, "GET")) {
        rc = OPS(x)->env_get(STORE(x), id, &out, &err);
    } else if (!strcmp(x->method, "DELETE")) {
        rc = OPS(x)->env_delete(STORE(x), id, &err);
        if (rc == 0) out = json_pack("{s:s,s:s}", "id", id, "type", "environment_deleted");
    } else if (!strcmp(x->method, "POST")) {
        enum MHD_Result ret;
        _cleanup_json_ json_t *b = body_object(x, true, &ret);
        if (!b) return ret;
        char msg[256];
        json_t *v;
        if (json_is_null(json_object_get(b, "name"))) json_object_del(b, "name");
        if (!check_str(b, "name", false, 256, msg, sizeof(msg)) ||
            !check_str(b, "scope", false, 64, msg, sizeof(msg)))
            return bad(x, "%s", msg);
        if ((v = json_object_get(b, "description")) && !json_is_null(v) && !json_is_string(v))
            return bad(x, "field 'description' must be a string or null");
        if ((v = json_object_get(b, "config")) && !json_is_null(v)) {
            const char *t = json_string_value(json_object_get(v, "type"));
            if (!json_is_object(v) || !t || strcmp(t, "self_hosted"))
                return bad(x, "field 'config.type' must be 'self_hosted'");
            json_object_set_new(b, "config", json_pack("{s:s}", "type", "self_hosted"));
        } else {
            json_object_del(b, "config");
        }
        if ((v = json_object_get(b, "metadata")) && !json_is_null(v) &&
            !check_metadata(v, true, "metadata", msg, sizeof(msg)))
            return bad(x, "%s", msg);
        if (v && json_is_null(v)) json_object_del(b, "metadata");
        rc = OPS(x)->env_update(STORE(x), id, b, &out, &err);
    } else {
        return http_error(x->c, 405, "invalid_request_error", "method not allowed");
    }
    if (rc < 0) return http_store_error(x->srv, x->c, rc, &err);
    return http_json(x->c, 200, out);
}

static enum MHD_Result env_archive(route_ctx_t *x, const char *id)
{
    if (!is_admin(x)) return forbid(x, "archiving an environment needs the admin key");
    json_t *out = NULL;
    shed_err err = {0};
    int rc = OPS(x)->env_archive(STORE(x), id, &out, &err);
    if (rc < 0) return http_store_error(x->srv, x->c, rc, &err);
    return http_json(x->c, 200, out);
}

/* ------------------------------------------------------------------ keys */

static enum MHD_Result keys(route_ctx_t *x, const char *env_id, const char *key_id)
{
    if (!is_admin(x)) return forbid(x, "environment keys are managed with the admin key");
    shed_err err = {0};
    json_t *out = NULL;
    int rc;
    if (key_id) {
        if (strcmp(x->method, "DELETE"))
            return http_error(x->c, 405, "invalid_request_error", "method not allowed");
        if (!valid_id(key_id, "envkey")) return not_found(x, "environment key", key_id);
        rc = OPS(x)->key_revoke(STORE(x), env_id, key_id, &err);
        if (rc < 0) return http_store_error(x->srv, x->c, rc, &err);
        return http_json(x->c, 200,
                         json_pack("{s:s,s:s}", "id", key_id, "type", "environment_key_revoked"));
    }
    if (!strcmp(x->method, "GET")) {
        rc = OPS(x)->key_list(STORE(x), env_id, &out, &err);
        if (rc < 0) return http_store_error(x->srv, x->c, rc, &err);
        return http_json(x->c, 200, out);
    }
    if (strcmp(x->method, "POST"))
        return http_error(x->c, 405, "invalid_request_error", "method not allowed");
    char key[128];
    if (server_new_secret(SERVER_ENV_KEY_PREFIX, key, sizeof(key)) < 0)
        return http_error(x->c, 500, NULL, "could not generate a key");
    char hex[SHA256_HEX_LEN];
    crypto_sha256_hex(key, strlen(key), hex);
    rc = OPS(x)->key_create(STORE(x), env_id, hex, &out, &err);
    if (rc < 0) {
        explicit_bzero(key, sizeof(key));
        return http_store_error(x->srv, x->c, rc, &err);
    }
    json_object_set_new(out, "key", json_string(key)); /* shown once, never stored */
    explicit_bzero(key, sizeof(key));
    return http_json(x->c, 201, out);
}

/* ------------------------------------------------------------------ work */

static enum MHD_Result poll_try(route_ctx_t *x)
{
    req_t *r = x->r;
    char token[128], hex[SHA256_HEX_LEN];
    if (server_new_secret(SERVER_TOKEN_PREFIX, token, sizeof(token)) < 0)
        return http_error(x->c, 500, NULL, "could not generate a sessions token");
    crypto_sha256_hex(token, strlen(token), hex);
    json_t *w = NULL;
    shed_err err = {0};
    int rc = OPS(x)->work_poll(STORE(x), r->env_id, r->worker_id[0] ? r->worker_id : NULL,
                               r->reclaim_ms, hex, clock_wall_us(), &w, &err);
    if (rc < 0) {
        explicit_bzero(token, sizeof(token));
        return http_store_error(x->srv, x->c, rc, &err);
    }
    if (w) {
        _cleanup_json_ json_t *payload = json_pack("{s:s}", "sessions_token", token);
        _cleanup_free_ char *ps = json_dumps(payload, JSON_COMPACT);
        explicit_bzero(token, sizeof(token));
        _cleanup_free_ char *secret = ps ? b64_encode_alloc(ps, strlen(ps), true, false) : NULL;
        if (ps) explicit_bzero(ps, strlen(ps));
        if (!secret) {
            json_decref(w);
            return http_error(x->c, 500, NULL, "could not encode the work secret");
        }
        json_object_set_new(w, "secret", json_string(secret));
        explicit_bzero(secret, strlen(secret));
        return http_json(x->c, 200, w);
    }
    explicit_bzero(token, sizeof(token));
    int64_t now = clock_mono_ms();
    if (r->deadline_ms > now && !x->srv->stopping) {
        MHD_suspend_connection(x->c);
        http_wait(x->srv, &r->waiter, x->c, WAIT_POLL, r->env_id, r->deadline_ms);
        return MHD_YES;
    }
    return http_empty(x->c, 204); /* empty poll: see docs/protocol.md */
}

static enum MHD_Result work_poll(route_ctx_t *x, const char *env_id)
{
    req_t *r = x->r;
    if (r->polling) return poll_try(x); /* resumed after a wait */
    if (strcmp(x->method, "GET"))
        return http_error(x->c, 405, "invalid_request_error", "method not allowed");
    if (!env_scope(x, env_id))
        return forbid(x, "polling needs this environment's key or the admin key");
    int64_t block = 0, reclaim = x->srv->cfg.reclaim_ms;
    if (parse_int(qarg(x, "block_ms"), 1, 999, &block) < 0)
        return bad(x, "query parameter 'block_ms' must be an integer from 1 to 999");
    if (parse_int(qarg(x, "reclaim_older_than_ms"), 1, 86400000, &reclaim) < 0)
        return bad(x, "query parameter 'reclaim_older_than_ms' must be an integer >= 1");
    const char *wid = MHD_lookup_connection_value(x->c, MHD_HEADER_KIND, "Anthropic-Worker-ID");
    if (wid && strlen(wid) >= sizeof(r->worker_id))
        return bad(x, "header 'Anthropic-Worker-ID' is longer than %zu characters",
                   sizeof(r->worker_id) - 1);
    /* The environment must exist (a poll on a deleted one is a fatal 404 for workers). */
    json_t *env = NULL;
    shed_err err = {0};
    int rc = OPS(x)->env_get(STORE(x), env_id, &env, &err);
    if (rc < 0) return http_store_error(x->srv, x->c, rc, &err);
    json_decref(env);
    r->polling = true;
    snprintf(r->env_id, sizeof(r->env_id), "%s", env_id);
    snprintf(r->worker_id, sizeof(r->worker_id), "%s", wid ? wid : "");
    r->reclaim_ms = reclaim;
    r->deadline_ms = clock_mono_ms() + block;
    if (wid && *wid) http_note_worker(x->srv, env_id, wid);
    return poll_try(x);
}

/* ack / heartbeat / stop: admin, the environment's key, or this item's token. */
static bool item_scope(route_ctx_t *x, const char *env_id, const char *work_id, int64_t *gen)
{
    *gen = -1;
    if (env_scope(x, env_id)) return true;
    if (x->who.kind == PRINCIPAL_SESSIONS_TOKEN && !strcmp(x->who.work_id, work_id) &&
        !strcmp(x->who.env_id, env_id)) {
        *gen = x->who.gen;
        return true;
    }
    return false;
}

static json_t *lease_state(const store_heartbeat_t *hb)
{
    return json_pack("{s:s,s:I,s:o,s:b}", "state", hb->state, "ttl_seconds",
                     (json_int_t)hb->ttl_seconds, "last_heartbeat",
                     hb->last_heartbeat[0] ? json_string(hb->last_heartbeat) : json_null(),
                     "lease_extended", hb->lease_extended);
}

static enum MHD_Result work_action(route_ctx_t *x, const char *env_id, const char *work_id,
                                   const char *action)
{
    if (strcmp(x->method, "POST"))
        return http_error(x->c, 405, "invalid_request_error", "method not allowed");
    int64_t gen;
    if (!item_scope(x, env_id, work_id, &gen))
        return forbid(x, "this credential does not hold that work item");
    shed_err err = {0};
    int64_t now = clock_wall_us();
    int rc;
    if (!strcmp(action, "ack")) {
        json_t *out = NULL;
        rc = OPS(x)->work_ack(STORE(x), env_id, work_id, gen, now, &out, &err);
        if (rc < 0) return http_store_error(x->srv, x->c, rc, &err);
        return http_json(x->c, 200, out);
    }
    if (!strcmp(action, "heartbeat")) {
        const char *expected = qarg(x, "expected_last_heartbeat");
        int64_t ttl = 0;
        if (parse_int(qarg(x, "desired_ttl_seconds"), 1, 3600, &ttl) < 0)
            return bad(x,
                       "query parameter 'desired_ttl_seconds' must be an integer from 1 to 3600");
        if (!expected || !*expected)
            return bad(x, "query parameter 'expected_last_heartbeat' is required (NO_HEARTBEAT on "
                          "the first beat)");
        store_heartbeat_t hb = {0};
        rc = OPS(x)->work_heartbeat(STORE(x), env_id, work_id, gen, expected, ttl, now, &hb, &err);
        if (rc == -ESTALE) {
            json_t *details = json_pack("{s:s,s:o}", "error_code", "heartbeat_precondition_failed",
                                        "current_state", lease_state(&hb));
            return http_error_details(x->c, 412, "precondition_failed", err.msg, details);
        }
        if (rc < 0) return http_store_error(x->srv, x->c, rc, &err);
        return http_json(x->c, 200,
                         json_pack("{s:s,s:s,s:b,s:s,s:I}", "type", "work_heartbeat",
                                   "last_heartbeat", hb.last_heartbeat, "lease_extended",
                                   hb.lease_extended, "state", hb.state, "ttl_seconds",
                                   (json_int_t)hb.ttl_seconds));
    }
    /* stop */
    enum MHD_Result ret;
    _cleanup_json_ json_t *b = body_object(x, true, &ret);
    if (!b) return ret;
    bool force = false;
    if (json_get_bool(b, "force", false, &force, &err) < 0) return bad(x, "%s", err.msg);
    rc = OPS(x)->work_stop(STORE(x), env_id, work_id, gen, force, !is_admin(x), now, &err);
    if (rc < 0) return http_store_error(x->srv, x->c, rc, &err);
    return http_empty(x->c, 204);
}

static enum MHD_Result work_read(route_ctx_t *x, const char *env_id, const char *work_id)
{
    if (!env_scope(x, env_id))
        return forbid(x, "reading work items needs this environment's key or the admin key");
    shed_err err = {0};
    json_t *out = NULL;
    int rc;
    if (!work_id) {
        if (strcmp(x->method, "GET"))
            return http_error(x->c, 405, "invalid_request_error", "method not allowed");
        enum MHD_Result ret;
        store_page_t pg;
        if (page_ok(x, &pg, 20, &ret) < 0) return ret;
        rc = OPS(x)->work_list(STORE(x), env_id, &pg, clock_wall_us(), &out, &err);
    } else if (!strcmp(work_id, "stats")) {
        if (strcmp(x->method, "GET"))
            return http_error(x->c, 405, "invalid_request_error", "method not allowed");
        rc = OPS(x)->work_stats(STORE(x), env_id, clock_wall_us(), &out, &err);
        if (rc == 0)
            json_object_set_new(out, "workers_polling",
                                json_integer(http_workers_polling(x->srv, env_id)));
    } else if (!valid_id(work_id, "work")) {
        return not_found(x, "work item", work_id);
    } else if (!strcmp(x->method, "GET")) {
        rc = OPS(x)->work_get(STORE(x), env_id, work_id, clock_wall_us(), &out, &err);
    } else if (!strcmp(x->method, "POST")) {
        enum MHD_Result ret;
        _cleanup_json_ json_t *b = body_object(x, false, &ret);
        if (!b) return ret;
        json_t *md = json_object_get(b, "metadata");
        char msg[256];
        if (!md) return bad(x, "field 'metadata' is required (an object of strings or nulls)");
        if (!check_metadata(md, true, "metadata", msg, sizeof(msg))) return bad(x, "%s", msg);
        rc = OPS(x)->work_update(STORE(x), env_id, work_id, md, &out, &err);
    } else {
        return http_error(x->c, 405, "invalid_request_error", "method not allowed");
    }
    if (rc < 0) return http_store_error(x->srv, x->c, rc, &err);
    return http_json(x->c, 200, out);
}

/* -------------------------------------------------------------- sessions */

/* The agent snapshot a session carries: the worker reads skills/tools from it. */
static json_t *agent_snapshot(json_t *agent)
{
    json_t *a;
    if (json_is_string(agent)) {
        a = json_pack("{s:s,s:s}", "id", json_string_value(agent), "name",
                      json_string_value(agent));
    } else if (json_is_object(agent)) {
        a = json_deep_copy(agent);
    } else {
        a = json_pack("{s:s,s:s}", "id", "agent_local", "name", "local");
    }
    json_object_set_new(a, "type", json_string("agent"));
    if (!json_is_string(json_object_get(a, "id")))
        json_object_set_new(a, "id", json_string("agent_local"));
    if (!json_is_string(json_object_get(a, "name")))
        json_object_set_new(a, "name", json_string("local"));
    if (!json_is_integer(json_object_get(a, "version")))
        json_object_set_new(a, "version", json_integer(1));
    if (!json_is_array(json_object_get(a, "skills")))
        json_object_set_new(a, "skills", json_array());
    if (!json_is_array(json_object_get(a, "mcp_servers")))
        json_object_set_new(a, "mcp_servers", json_array());
    if (!json_is_array(json_object_get(a, "tools")))
        json_object_set_new(a, "tools", json_pack("[{s:s}]", "type", "agent_toolset_20260401"));
    if (!json_object_get(a, "description")) json_object_set_new(a, "description", json_null());
    if (!json_object_get(a, "system")) json_object_set_new(a, "system", json_null());
    return a;
}

static enum MHD_Result session_create(route_ctx_t *x)
{
    if (!is_admin(x)) return forbid(x, "creating a session needs the admin key");
    enum MHD_Result ret;
    _cleanup_json_ json_t *b = body_object(x, false, &ret);
    if (!b) return ret;
    char msg[256];
    if (!check_str(b, "environment_id", true, 64, msg, sizeof(msg)) ||
        !check_str(b, "title", false, 512, msg, sizeof(msg)))
        return bad(x, "%s", msg);
    const char *env_id = json_string_value(json_object_get(b, "environment_id"));
    if (!valid_id(env_id, "env"))
        return bad(x, "field 'environment_id' is not an environment id (env_...)");
    json_t *agent = json_object_get(b, "agent");
    if (agent && !json_is_null(agent) && !json_is_string(agent) && !json_is_object(agent))
        return bad(x, "field 'agent' must be an agent id or an object");
    json_t *skills = json_is_object(agent) ? json_object_get(agent, "skills") : NULL;
    if (skills && !json_is_null(skills) && !json_is_array(skills))
        return bad(x, "field 'agent.skills' must be an array");
    json_t *md = json_object_get(b, "metadata");
    if (md && !json_is_null(md) && !check_metadata(md, false, "metadata", msg, sizeof(msg)))
        return bad(x, "%s", msg);
    if (md && json_is_null(md)) json_object_del(b, "metadata");
    json_t *res = json_object_get(b, "resources");
    if (res && !json_is_null(res)) {
        int st = routes_session_resources(x->srv, res, msg, sizeof(msg));
        if (st) return http_error(x->c, (unsigned)st, NULL, msg);
    } else if (res) {
        json_object_del(b, "resources");
    }
    json_t *snap = NULL;
    int ast = routes_session_agent(x->srv, agent, &snap, msg, sizeof(msg));
    if (ast) return http_error(x->c, (unsigned)ast, NULL, msg);
    json_object_set_new(b, "agent", snap ? snap : agent_snapshot(agent));
    json_t *out = NULL;
    shed_err err = {0};
    int rc = OPS(x)->session_create(STORE(x), b, &out, &err);
    if (rc < 0) return http_store_error(x->srv, x->c, rc, &err);
    http_notify_one(x->srv, WAIT_POLL, env_id);
    return http_json(x->c, 200, out);
}

static enum MHD_Result session_list(route_ctx_t *x)
{
    const char *env = qarg(x, "environment_id");
    if (!is_admin(x)) {
        if (x->who.kind != PRINCIPAL_ENV_KEY)
            return forbid(x, "listing sessions needs the admin key");
        env = x->who.env_id;
    }
    enum MHD_Result ret;
    store_page_t pg;
    if (page_ok(x, &pg, 20, &ret) < 0) return ret;
    json_t *out = NULL;
    shed_err err = {0};
    int rc = OPS(x)->session_list(STORE(x), env, &pg, &out, &err);
    if (rc < 0) return http_store_error(x->srv, x->c, rc, &err);
    return http_json(x->c, 200, out);
}

typedef struct push_ctx {
    const store_append_result_t *res;
    uint64_t before, after; /* srv->appends before and after this append */
} push_ctx_t;
static bool sse_push(waiter_t *w, bool same_session, void *ctx);

static enum MHD_Result events_send(route_ctx_t *x, const char *sid)
{
    enum MHD_Result ret;
    _cleanup_json_ json_t *b = body_object(x, false, &ret);
    if (!b) return ret;
    json_t *evs = json_object_get(b, "events");
    if (!evs || !json_is_array(evs) || json_array_size(evs) == 0)
        return bad(x, "field 'events' is required (a non-empty array)");
    if (json_array_size(evs) > MAX_EVENTS)
        return bad(x, "field 'events' has more than %d events", MAX_EVENTS);
    char msg[256];
    size_t i;
    json_t *ev;
    json_array_foreach(evs, i, ev)
    {
        int st = server_check_event(ev, i, is_admin(x), msg, sizeof(msg));
        if (st == 403) return forbid(x, msg);
        if (st) return bad(x, "%s", msg);
    }
    /* The admin, or a sessions token posting to its own session, may post
     * to the session if it exists, and the append looks it up anyway (404
     * if there is none, the same answer session_access gives): no read of
     * its own. Anyone else is checked first, as every route does. */
    bool own =
        is_admin(x) || (x->who.kind == PRINCIPAL_SESSIONS_TOKEN && !strcmp(x->who.session_id, sid));
    char status[32];
    if ((!own || !valid_id(sid, "sesn")) && !session_access(x, sid, status, &ret)) return ret;
    store_append_result_t res;
    shed_err err = {0};
    int rc = OPS(x)->events_append(STORE(x), sid, evs, STORE_APPEND_EARLY, &res, &err);
    if (rc < 0) return http_store_error(x->srv, x->c, rc, &err);
    /* The committed events go to the session's waiting streams now, before
     * the answer (sse_push); a stream that cannot take them so is resumed.
     * With --sync full they go while the disk has not got them yet: the
     * fsync follows (ops->sync) and the POST, the only acknowledgement, is
     * answered after it; anything that acts on these events and is itself
     * acknowledged (a tool result) commits after them, so its own fsync
     * covers them too (docs/protocol.md, "Durability"). */
    push_ctx_t pc = {.res = &res, .before = x->srv->appends, .after = ++x->srv->appends};
    http_notify_visit(x->srv, WAIT_STREAM, sid, sse_push, &pc);
    if (res.sync_pending && (rc = OPS(x)->sync(STORE(x), &err)) < 0) {
        json_decref(res.events);
        return http_store_error(x->srv, x->c, rc, &err);
    }
    if (res.work_enqueued) http_notify_one(x->srv, WAIT_POLL, res.env_id);
    if (res.answer) {
        json_decref(res.events);
        return http_json_text(x->c, 200, res.answer);
    }
    return http_json(x->c, 200, json_pack("{s:o}", "data", res.events));
}

typedef struct types_acc {
    store_page_t *pg;
    bool bad;
} types_acc_t;

/* Collect `types[]=a&types[]=b` (the SDKs' bracket format; `types=a` too). */
static enum MHD_Result collect_type(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    (void)kind;
    types_acc_t *a = cls;
    if (strcmp(key, "types[]") && strcmp(key, "types")) return MHD_YES;
    size_t n = value ? strlen(value) : 0;
    bool ok = n > 0 && n < 64 && a->pg->ntypes < STORE_MAX_TYPES;
    for (size_t i = 0; ok && i < n; i++)
        ok = (value[i] >= 'a' && value[i] <= 'z') || value[i] == '.' || value[i] == '_';
    if (!ok) {
        a->bad = true;
        return MHD_NO;
    }
    a->pg->types[a->pg->ntypes++] = value;
    return MHD_YES;
}

static enum MHD_Result events_list(route_ctx_t *x, const char *sid)
{
    enum MHD_Result ret;
    store_page_t pg;
    if (page_ok(x, &pg, 100, &ret) < 0) return ret;
    types_acc_t acc = {.pg = &pg};
    MHD_get_connection_values(x->c, MHD_GET_ARGUMENT_KIND, collect_type, &acc);
    if (acc.bad)
        return bad(x, "query parameter 'types[]' must be event types (at most %d)",
                   STORE_MAX_TYPES);
    char status[32];
    if (!session_access(x, sid, status, &ret)) return ret;
    json_t *out = NULL;
    shed_err err = {0};
    int rc = OPS(x)->events_list(STORE(x), sid, &pg, &out, &err);
    if (rc < 0) return http_store_error(x->srv, x->c, rc, &err);
    return http_json(x->c, 200, out);
}

/* ------------------------------------------------------------------- SSE */

/* A stream's bytes go out two ways. libmicrohttpd sends what sse_read
 * returns (the first events, catch-up after a resume, pings). An append
 * whose stream is waiting (suspended) and has everything before it sends
 * the new events itself, straight to the socket, right after the commit
 * and before the append is answered (sse_push): no wake-up through the
 * daemon's eventfd, no second epoll pass, no query. That is sound because
 * the stream's body is not chunked (MHD_RF_HTTP_1_0_COMPATIBLE_STRICT:
 * HTTP/1.1, `Connection: close`, the body ends with the connection), so
 * bytes written either way are the same stream, and because libmicrohttpd
 * calls sse_read only once all it was given before is sent, and touches no
 * suspended connection: a waiting stream has nothing of the daemon's in
 * flight. Plain TCP only (serve has no TLS). */
typedef struct sse {
    server_t *srv;
    struct MHD_Connection *conn;
    char session_id[ID_MAX];
    int64_t last_seq;
    int64_t next_ping_ms;
    uint64_t caught_up; /* srv->appends when the stream last had all there was */
    bool queried;       /* caught_up is set */
    bool closing;
    bool dead;      /* a direct send failed: the peer is gone */
    bool mhd_wrote; /* the daemon sent on the socket since the last direct send */
    int fd;         /* the socket, for direct sends; -1: none */
    buf_t out;
    size_t off;
    waiter_t waiter;
} sse_t;

static void sse_free(void *cls)
{
    sse_t *s = cls;
    /* Never listed here: a waiter is unlisted before its connection resumes,
     * and a connection is only freed while it runs. */
    buf_free(&s->out);
    free(s);
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    sse_t *s = cls;
    s->mhd_wrote = true; /* the daemon sends what this returns (and may cork the socket) */
    if (s->dead) return MHD_CONTENT_READER_END_WITH_ERROR;
    for (int round = 0; round < 2; round++) {
        if (s->off < s->out.len) {
            size_t n = s->out.len - s->off;
            if (n > max) n = max;
            memcpy(buf, s->out.data + s->off, n);
            s->off += n;
            if (s->off == s->out.len) {
                buf_reset(&s->out);
                s->off = 0;
            }
            return (ssize_t)n;
        }
        if (s->srv->stopping || s->closing) return MHD_CONTENT_READER_END_OF_STREAM;
        store_stream_event_t evs[32];
        shed_err err = {0};
        int n = 0;
        /* Nothing was appended anywhere since this stream last read all there
         * was (just now, typically: the call right after sending an event):
         * no query, straight to waiting. */
        if (!s->queried || s->caught_up != s->srv->appends) {
            uint64_t gen = s->srv->appends;
            n = s->srv->store->ops->events_after(s->srv->store, s->session_id, s->last_seq, evs,
                                                 (int)ARRAY_SIZE(evs), &err);
            if (n < 0) return MHD_CONTENT_READER_END_WITH_ERROR;
            if (n < (int)ARRAY_SIZE(evs)) {
                s->caught_up = gen;
                s->queried = true;
            }
        }
        for (int i = 0; i < n; i++) {
            bool full = false;
            if (!s->closing) {
                size_t before = s->out.len;
                if (buf_printf(&s->out, "event: %s\ndata: %s\n\n", evs[i].type, evs[i].json) == 0) {
                    s->last_seq = evs[i].seq;
                    if (!strcmp(evs[i].type, "session.status_terminated")) s->closing = true;
                } else if (before > 0) {
                    s->out.len = before; /* no room now: send what is there, this one next time */
                    s->out.data[before] = '\0';
                    full = true;
                } else {
                    /* cannot happen: the buffer holds any event a request body can carry */
                    log_error("SSE: event %" PRId64 " of %s too large to stream; skipped",
                              evs[i].seq, s->session_id);
                    s->last_seq = evs[i].seq;
                }
            }
            free(evs[i].json);
            if (full) {
                s->queried = false; /* the rest is still to read */
                for (int j = i + 1; j < n; j++) free(evs[j].json);
                break;
            }
        }
        if (s->out.len) continue;
        int64_t now = clock_mono_ms();
        if (now >= s->next_ping_ms) {
            buf_puts(&s->out, "event: ping\ndata: {\"type\":\"ping\"}\n\n");
            s->next_ping_ms = now + s->srv->cfg.sse_ping_ms;
            continue;
        }
        MHD_suspend_connection(s->conn);
        http_wait(s->srv, &s->waiter, s->conn, WAIT_STREAM, s->session_id, s->next_ping_ms);
        return 0;
    }
    return 0;
}

/* An append's visit of a waiting stream (http_notify_visit: on the HTTP
 * thread, the waiters' lock held, the stream's connection suspended). A
 * stream of another session that had all there was still has. A stream of
 * this session that had everything before this append is sent the new
 * events directly; true if it had them all (it keeps waiting). false
 * resumes it: it then reads what it lacks from the store as before, or
 * sends the rest of a direct send the socket did not take. */
static bool sse_push(waiter_t *w, bool same_session, void *ctx)
{
    const push_ctx_t *p = ctx;
    sse_t *s = (sse_t *)(void *)((char *)w - offsetof(sse_t, waiter));
    if (!s->queried || s->caught_up != p->before) return false;
    if (!same_session) {
        s->caught_up = p->after; /* nothing of its session was appended */
        return true;
    }
    const store_append_result_t *r = p->res;
    if (s->fd < 0 || s->closing || s->srv->stopping || s->out.len || !r->answer ||
        r->nappended == 0 || r->appended[0].seq <= s->last_seq)
        return false;
    for (int i = 0; i < r->nappended; i++) {
        const store_appended_t *a = &r->appended[i];
        /* the end of the stream stays sse_read's (it closes the connection) */
        if (!strcmp(a->type, "session.status_terminated") ||
            buf_printf(&s->out, "event: %s\ndata: %.*s\n\n", a->type, (int)a->len,
                       r->answer + a->off) < 0) {
            buf_reset(&s->out);
            return false;
        }
    }
    if (s->mhd_wrote) {
        /* libmicrohttpd may have left the socket corked after its last send */
        int on = 1, off = 0;
        setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
        setsockopt(s->fd, IPPROTO_TCP, TCP_CORK, &off, sizeof(off));
        s->mhd_wrote = false;
    }
    ssize_t n = send(s->fd, s->out.data, s->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        buf_reset(&s->out);
        s->dead = true; /* the client reconnects and lists the history */
        return false;
    }
    s->last_seq = r->appended[r->nappended - 1].seq;
    s->caught_up = p->after;
    if (n == (ssize_t)s->out.len) {
        buf_reset(&s->out);
        return true;
    }
    s->off = n > 0 ? (size_t)n : 0; /* the rest goes through sse_read */
    return false;
}

static enum MHD_Result events_stream(route_ctx_t *x, const char *sid)
{
    enum MHD_Result ret;
    char status[32];
    if (!session_access(x, sid, status, &ret)) return ret;
    sse_t *s = calloc(1, sizeof(*s));
    if (!s) return MHD_NO;
    s->srv = x->srv;
    s->conn = x->c;
    snprintf(s->session_id, sizeof(s->session_id), "%s", sid);
    buf_init(&s->out, x->srv->cfg.max_body + (256u << 10)); /* room for the largest event */
    shed_err err = {0};
    int rc = OPS(x)->events_last_seq(STORE(x), sid, &s->last_seq, &err);
    if (rc < 0) {
        sse_free(s);
        return http_store_error(x->srv, x->c, rc, &err);
    }
    /* A stream of a terminated session ends at once: there is nothing to wait for. */
    if (!strcmp(status, "terminated")) s->closing = true;
    s->next_ping_ms = clock_mono_ms() + x->srv->cfg.sse_ping_ms;
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, sse_read, s, sse_free);
    if (!r) {
        sse_free(s);
        return MHD_NO;
    }
    /* Not chunked: the body ends with the connection (see sse_t). */
    s->fd = -1;
    s->mhd_wrote = true;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(x->c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci && MHD_set_response_options(r, MHD_RF_HTTP_1_0_COMPATIBLE_STRICT, MHD_RO_END) == MHD_YES)
        s->fd = ci->connect_fd;
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    enum MHD_Result q = MHD_queue_response(x->c, 200, r);
    MHD_destroy_response(r);
    return q;
}

static enum MHD_Result session_routes(route_ctx_t *x)
{
    /* seg: sessions [id [events [stream]]] */
    if (x->nseg == 1) {
        if (!strcmp(x->method, "POST")) return session_create(x);
        if (!strcmp(x->method, "GET")) return session_list(x);
        return http_error(x->c, 405, "invalid_request_error", "method not allowed");
    }
    const char *sid = x->seg[1];
    enum MHD_Result ret;
    if (x->nseg == 2) {
        if (strcmp(x->method, "GET"))
            return http_error(x->c, 405, "invalid_request_error", "method not allowed");
        json_t *s = session_for(x, sid, &ret);
        if (!s) return ret;
        return http_json(x->c, 200, s);
    }
    if (strcmp(x->seg[2], "events")) return not_found(x, "route", x->seg[2]);
    if (x->nseg == 3) {
        if (!strcmp(x->method, "POST")) return events_send(x, sid);
        if (!strcmp(x->method, "GET")) return events_list(x, sid);
        return http_error(x->c, 405, "invalid_request_error", "method not allowed");
    }
    if (x->nseg == 4 && !strcmp(x->seg[3], "stream") && !strcmp(x->method, "GET"))
        return events_stream(x, sid);
    return not_found(x, "route", x->seg[3]);
}

static enum MHD_Result env_routes(route_ctx_t *x)
{
    /* seg: environments [id [archive | keys [kid] | work [poll|stats|wid [ack|heartbeat|stop]]]] */
    if (x->nseg == 1) {
        if (!strcmp(x->method, "POST")) return env_create(x);
        if (!strcmp(x->method, "GET")) return env_list(x);
        return http_error(x->c, 405, "invalid_request_error", "method not allowed");
    }
    const char *env_id = x->seg[1];
    if (!valid_id(env_id, "env")) return not_found(x, "environment", env_id);
    if (x->nseg == 2) return env_one(x, env_id);
    const char *sub = x->seg[2];
    if (!strcmp(sub, "archive") && x->nseg == 3) {
        if (strcmp(x->method, "POST"))
            return http_error(x->c, 405, "invalid_request_error", "method not allowed");
        return env_archive(x, env_id);
    }
    if (!strcmp(sub, "keys") && x->nseg <= 4)
        return keys(x, env_id, x->nseg == 4 ? x->seg[3] : NULL);
    if (strcmp(sub, "work")) return not_found(x, "route", sub);
    if (x->nseg == 3) return work_read(x, env_id, NULL);
    if (!strcmp(x->seg[3], "poll") && x->nseg == 4) return work_poll(x, env_id);
    if (x->nseg == 4) return work_read(x, env_id, x->seg[3]);
    const char *wid = x->seg[3];
    if (!valid_id(wid, "work")) return not_found(x, "work item", wid);
    if (x->nseg == 5 && (!strcmp(x->seg[4], "ack") || !strcmp(x->seg[4], "heartbeat") ||
                         !strcmp(x->seg[4], "stop")))
        return work_action(x, env_id, wid, x->seg[4]);
    return not_found(x, "route", x->seg[4]);
}

enum MHD_Result routes_dispatch(server_t *srv, struct MHD_Connection *c, req_t *r, const char *url,
                                const char *method)
{
    route_ctx_t x = {.srv = srv, .c = c, .r = r, .method = method};
    char path[512];
    if (strlen(url) >= sizeof(path)) return http_error(c, 404, NULL, "no such route");
    snprintf(path, sizeof(path), "%s", url);
    char *save = NULL;
    char *p = strtok_r(path, "/", &save);
    if (!p || strcmp(p, "v1"))
        return http_error(c, 404, NULL, "no such route (the API lives under /v1)");
    while ((p = strtok_r(NULL, "/", &save))) {
        if (x.nseg == MAX_SEGS) return http_error(c, 404, NULL, "no such route");
        x.seg[x.nseg++] = p;
    }
    if (x.nseg == 0) return http_error(c, 404, NULL, "no such route");
    if (r->polling) {
        x.who = r->who;
        return poll_try(&x);
    }
    const char *msg = NULL;
    int st = http_authenticate(srv, c, &x.who, &msg);
    if (st) return http_error(c, (unsigned)st, NULL, msg);
    r->who = x.who;
    if (!strcmp(x.seg[0], "environments")) return env_routes(&x);
    if (!strcmp(x.seg[0], "sessions")) return session_routes(&x);
    if (!strcmp(x.seg[0], "agents") || !strcmp(x.seg[0], "skills") ||
        !strcmp(x.seg[0], "memory_stores"))
        return routes_objects(srv, c, r, &x.who, method, x.seg, x.nseg);
    return http_error(c, 404, NULL, "no such route");
}
