/* The set-up objects of `shed serve`: agents, skills (with uploaded files and
 * their archive), memory stores and their memories — the public Managed
 * Agents shapes the official SDK reads (docs/protocol.md, "Agents, skills
 * and memory stores"). Also what a new session takes from them: the agent
 * snapshot and the memory_store resources.
 *
 * Scopes: the admin key may do everything. The environment key and a
 * sessions token may read skills (a worker downloads them); only a sessions
 * token whose session attached a memory store may use that store's
 * memories, and never write a read_only one; the environment key is refused
 * on memory stores, as Anthropic's API refuses it. Never answers with data a
 * principal may not see; never trusts a name, path or size from a request
 * beyond the checks here. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cleanup.h"
#include "base/crypto.h"
#include "base/json.h"
#include "base/log.h"
#include "server/http.h"
#include "server/multipart.h"
#include "server/request.h"
#include "server/skill_pack.h"

#define JSON_MAX_DEPTH     32
#define MEMORY_MAX_BYTES   102400 /* content of one memory (the API's 100 kB) */
#define MEMORY_PATH_MAX    1024
#define MEMORY_MAX_SEGS    20
#define SESSION_MAX_STORES 8
#define SKILL_ARCHIVE_MAX  (8u << 20)

typedef struct obj_ctx {
    server_t *srv;
    struct MHD_Connection *c;
    req_t *r;
    const store_principal_t *who;
    const char *method;
    char **seg;
    int nseg;
} obj_ctx_t;

#define OPS(x)   ((x)->srv->store->ops)
#define STORE(x) ((x)->srv->store)

/* 400 with a formatted message (server_bad_request). */
#define bad(x, ...) server_bad_request((x)->c, __VA_ARGS__)

static json_t *json_incref_or_null(json_t *v)
{
    return v ? json_incref(v) : json_null();
}

static enum MHD_Result method_not_allowed(obj_ctx_t *x)
{
    return http_error(x->c, 405, "invalid_request_error", "method not allowed");
}

static enum MHD_Result not_found(obj_ctx_t *x, const char *what, const char *id)
{
    char msg[256];
    snprintf(msg, sizeof(msg), "no %s '%.80s'", what, id);
    return http_error(x->c, 404, NULL, msg);
}

static const char *qarg(obj_ctx_t *x, const char *name)
{
    return MHD_lookup_connection_value(x->c, MHD_GET_ARGUMENT_KIND, name);
}

static bool is_admin(obj_ctx_t *x)
{
    return x->who->kind == PRINCIPAL_ADMIN;
}

static json_t *body_object(obj_ctx_t *x, enum MHD_Result *ret)
{
    char msg[512];
    json_t *j = server_body_object(&x->r->body, x->srv->cfg.max_body, JSON_MAX_DEPTH, false, msg,
                                   sizeof(msg));
    if (!j) *ret = bad(x, "%s", msg);
    return j;
}

/* Strict decimal in [lo, hi]: 1 absent, 0 ok, -1 invalid. */
static int parse_int(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    if (!s) return 1;
    if (!*s || strlen(s) > 9) return -1;
    int64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        v = v * 10 + (*p - '0');
    }
    if (v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int page_args(obj_ctx_t *x, store_page_t *pg, int64_t def, int64_t max, enum MHD_Result *ret)
{
    memset(pg, 0, sizeof(*pg));
    int64_t limit = def;
    if (parse_int(qarg(x, "limit"), 1, 1000, &limit) < 0) {
        *ret = bad(x, "query parameter 'limit' must be an integer from 1 to 1000");
        return -1;
    }
    pg->limit = (int)(limit > max ? max : limit);
    pg->cursor = qarg(x, "page");
    if (pg->cursor && !*pg->cursor) pg->cursor = NULL;
    return 0;
}

static bool opt_str(json_t *o, const char *key, size_t maxlen, bool null_ok, char *msg, size_t n)
{
    json_t *v = json_object_get(o, key);
    if (!v || (null_ok && json_is_null(v))) return true;
    if (!json_is_string(v) || json_string_length(v) > maxlen) {
        snprintf(msg, n, "field '%s' must be a string of at most %zu characters%s", key, maxlen,
                 null_ok ? " or null" : "");
        return false;
    }
    return true;
}

static bool check_metadata(json_t *md, char *msg, size_t n)
{
    if (!json_is_object(md) || json_object_size(md) > 64) {
        snprintf(msg, n, "field 'metadata' must be an object of at most 64 strings");
        return false;
    }
    const char *k;
    json_t *v;
    json_object_foreach(md, k, v)
    {
        if (!*k || strlen(k) > 64 || !json_is_string(v) || json_string_length(v) > 512) {
            snprintf(msg, n,
                     "field 'metadata.%.64s': keys 1-64 characters, values strings of at "
                     "most 512",
                     k);
            return false;
        }
    }
    return true;
}

/* -------------------------------------------------------------- agents */

/* skills[] of an agent: {type:"anthropic"|"custom", skill_id, version?}. */
static int normalize_skills(server_t *srv, json_t *skills, const char *field, json_t **out,
                            char *msg, size_t n)
{
    if (!json_is_array(skills) || json_array_size(skills) > 64) {
        snprintf(msg, n, "field '%s' must be an array of at most 64 skills", field);
        return 400;
    }
    json_t *res = json_array();
    size_t i;
    json_t *s;
    json_array_foreach(skills, i, s)
    {
        const char *t = json_string_value(json_object_get(s, "type"));
        const char *id = json_string_value(json_object_get(s, "skill_id"));
        json_t *v = json_object_get(s, "version");
        if (!json_is_object(s) || !t || (strcmp(t, "custom") && strcmp(t, "anthropic"))) {
            snprintf(msg, n, "field '%s[%zu].type' must be 'custom' or 'anthropic'", field, i);
            goto fail;
        }
        if (!id || !*id || strlen(id) > 128) {
            snprintf(msg, n, "field '%s[%zu].skill_id' is required", field, i);
            goto fail;
        }
        if (v && !json_is_null(v) && (!json_is_string(v) || json_string_length(v) > 64)) {
            snprintf(msg, n, "field '%s[%zu].version' must be a version id or 'latest'", field, i);
            goto fail;
        }
        const char *ver =
            json_is_string(v) && json_string_length(v) ? json_string_value(v) : "latest";
        if (!strcmp(t, "custom")) {
            json_t *sv = NULL;
            shed_err err = {0};
            int rc = srv->store->ops->skill_version_get(srv->store, id, ver, &sv, &err);
            if (rc == -ENOENT) {
                snprintf(msg, n, "field '%s[%zu]': %s", field, i, err.msg);
                goto fail;
            }
            if (rc < 0) {
                log_error("store: %s", err.msg);
                snprintf(msg, n, "internal error looking up skill '%.80s'", id);
                json_decref(res);
                return 500;
            }
            json_decref(sv);
        }
        json_array_append_new(
            res, json_pack("{s:s,s:s,s:s}", "type", t, "skill_id", id, "version", ver));
    }
    *out = res;
    return 0;
fail:
    json_decref(res);
    return 400;
}

static json_t *model_config(json_t *m)
{
    if (json_is_string(m)) return json_pack("{s:O}", "id", m);
    return json_deep_copy(m);
}

static bool model_ok(json_t *m)
{
    if (json_is_string(m)) return json_string_length(m) > 0 && json_string_length(m) <= 128;
    json_t *id = json_object_get(m, "id");
    return json_is_object(m) && json_is_string(id) && json_string_length(id) <= 128;
}

static bool tools_ok(json_t *t, const char *field, char *msg, size_t n)
{
    if (!json_is_array(t) || json_array_size(t) > 128) {
        snprintf(msg, n, "field '%s' must be an array of at most 128 tools", field);
        return false;
    }
    size_t i;
    json_t *v;
    json_array_foreach(t, i, v)
    {
        if (!json_is_object(v) || !json_is_string(json_object_get(v, "type"))) {
            snprintf(msg, n, "field '%s[%zu].type' is required", field, i);
            return false;
        }
    }
    return true;
}

static enum MHD_Result agent_create(obj_ctx_t *x)
{
    if (!is_admin(x)) return http_error(x->c, 403, NULL, "creating an agent needs the admin key");
    enum MHD_Result ret;
    _cleanup_json_ json_t *b = body_object(x, &ret);
    if (!b) return ret;
    char msg[512];
    json_t *name = json_object_get(b, "name");
    if (!json_is_string(name) || !json_string_length(name) || json_string_length(name) > 256)
        return bad(x, "field 'name' is required (a string of 1-256 characters)");
    json_t *model = json_object_get(b, "model");
    if (!model || !model_ok(model))
        return bad(x, "field 'model' is required (a model id or {\"id\": ...})");
    if (!opt_str(b, "system", 100000, true, msg, sizeof(msg)) ||
        !opt_str(b, "description", 2048, true, msg, sizeof(msg)))
        return bad(x, "%s", msg);
    json_t *md = json_object_get(b, "metadata");
    if (md && !json_is_null(md) && !check_metadata(md, msg, sizeof(msg))) return bad(x, "%s", msg);
    json_t *tools = json_object_get(b, "tools");
    if (tools && !json_is_null(tools) && !tools_ok(tools, "tools", msg, sizeof(msg)))
        return bad(x, "%s", msg);
    json_t *mcp = json_object_get(b, "mcp_servers");
    if (mcp && !json_is_null(mcp) && (!json_is_array(mcp) || json_array_size(mcp) > 32))
        return bad(x, "field 'mcp_servers' must be an array of at most 32 servers");
    json_t *skills = json_array();
    json_t *sk = json_object_get(b, "skills");
    if (sk && !json_is_null(sk)) {
        json_decref(skills);
        skills = NULL;
        int st = normalize_skills(x->srv, sk, "skills", &skills, msg, sizeof(msg));
        if (st) return http_error(x->c, (unsigned)st, NULL, msg);
    }
    json_t *a = json_object();
    json_object_set_new(a, "type", json_string("agent"));
    json_object_set(a, "name", name);
    json_object_set_new(a, "description", json_incref_or_null(json_object_get(b, "description")));
    json_object_set_new(a, "model", model_config(model));
    json_object_set_new(a, "system", json_incref_or_null(json_object_get(b, "system")));
    json_object_set_new(a, "tools", json_is_array(tools) ? json_deep_copy(tools) : json_array());
    json_object_set_new(a, "skills", skills);
    json_object_set_new(a, "mcp_servers", json_is_array(mcp) ? json_deep_copy(mcp) : json_array());
    json_object_set_new(a, "metadata", json_is_object(md) ? json_deep_copy(md) : json_object());
    json_object_set_new(a, "multiagent", json_null());
    json_object_set_new(a, "execution_identity", json_null());
    json_object_set_new(a, "version", json_integer(1));
    json_object_set_new(a, "archived_at", json_null());
    json_t *out = NULL;
    shed_err err = {0};
    int rc = OPS(x)->obj_create(STORE(x), "agent", "agent", a, &out, &err);
    json_decref(a);
    if (rc < 0) return http_store_error(x->srv, x->c, rc, &err);
    return http_json(x->c, 200, out);
}

static enum MHD_Result agent_routes(obj_ctx_t *x)
{
    /* agents [id] */
    if (x->nseg == 1) {
        if (!strcmp(x->method, "POST")) return agent_create(x);
        if (strcmp(x->method, "GET")) return method_not_allowed(x);
    }
    if (!is_admin(x)) return http_error(x->c, 403, NULL, "agents are read with the admin key");
    if (x->nseg > 2) return not_found(x, "route", x->seg[2]);
    if (strcmp(x->method, "GET")) return method_not_allowed(x);
    json_t *out = NULL;
    shed_err err = {0};
    int rc;
    if (x->nseg == 1) {
        enum MHD_Result ret;
        store_page_t pg;
        if (page_args(x, &pg, 20, 1000, &ret) < 0) return ret;
        rc = OPS(x)->obj_list(STORE(x), "agent", &pg, &out, &err);
    } else {
        if (!id_valid(x->seg[1], "agent")) return not_found(x, "agent", x->seg[1]);
        rc = OPS(x)->obj_get(STORE(x), "agent", x->seg[1], &out, &err);
    }
    if (rc < 0) return http_store_error(x->srv, x->c, rc, &err);
    return http_json(x->c, 200, out);
}

int routes_session_agent(server_t *srv, json_t *agent, json_t **out, char *msg, size_t n)
{
    *out = NULL;
    const char *id = NULL;
    const char *type = NULL;
    if (json_is_string(agent)) {
        id = json_string_value(agent);
    } else if (json_is_object(agent)) {
        type = json_string_value(json_object_get(agent, "type"));
        id = json_string_value(json_object_get(agent, "id"));
        if (type && strcmp(type, "agent") && strcmp(type, "agent_with_overrides")) {
            snprintf(msg, n, "field 'agent.type' must be 'agent' or 'agent_with_overrides'");
            return 400;
        }
    }
    /* Not an id this server issues: the legacy inline snapshot (routes.c). */
    if (!id || !id_valid(id, "agent")) {
        if (type && !strcmp(type, "agent_with_overrides")) {
            snprintf(msg, n, "field 'agent.id' must name an agent (agent_...)");
            return 400;
        }
        return 0;
    }
    json_t *a = NULL;
    shed_err err = {0};
    int rc = srv->store->ops->obj_get(srv->store, "agent", id, &a, &err);
    if (rc == -ENOENT) {
        snprintf(msg, n, "field 'agent': no agent '%.80s'", id);
        return 400;
    }
    if (rc < 0) {
        log_error("store: %s", err.msg);
        snprintf(msg, n, "internal error looking up the agent");
        return 500;
    }
    json_t *ver = json_is_object(agent) ? json_object_get(agent, "version") : NULL;
    if (ver && !json_is_null(ver) &&
        (!json_is_integer(ver) ||
         json_integer_value(ver) != json_integer_value(json_object_get(a, "version")))) {
        json_decref(a);
        snprintf(msg, n, "field 'agent.version': agent '%.80s' has only version 1", id);
        return 400;
    }
    if (type && !strcmp(type, "agent_with_overrides")) {
        json_t *v;
        if ((v = json_object_get(agent, "skills")) && !json_is_null(v)) {
            json_t *sk = NULL;
            int st = normalize_skills(srv, v, "agent.skills", &sk, msg, n);
            if (st) {
                json_decref(a);
                return st;
            }
            json_object_set_new(a, "skills", sk);
        }
        if ((v = json_object_get(agent, "tools")) && !json_is_null(v)) {
            if (!tools_ok(v, "agent.tools", msg, n)) {
                json_decref(a);
                return 400;
            }
            json_object_set_new(a, "tools", json_deep_copy(v));
        }
        if ((v = json_object_get(agent, "mcp_servers")) && !json_is_null(v)) {
            if (!json_is_array(v) || json_array_size(v) > 32) {
                json_decref(a);
                snprintf(msg, n, "field 'agent.mcp_servers' must be an array");
                return 400;
            }
            json_object_set_new(a, "mcp_servers", json_deep_copy(v));
        }
        if ((v = json_object_get(agent, "model")) && !json_is_null(v)) {
            if (!model_ok(v)) {
                json_decref(a);
                snprintf(msg, n, "field 'agent.model' must be a model id or {\"id\": ...}");
                return 400;
            }
            json_object_set_new(a, "model", model_config(v));
        }
    }
    /* The session's agent (BetaManagedAgentsSessionAgent): no timestamps or metadata. */
    json_object_del(a, "created_at");
    json_object_del(a, "updated_at");
    json_object_del(a, "archived_at");
    json_object_del(a, "metadata");
    *out = a;
    return 0;
}

/* -------------------------------------------------------- memory stores */

/* mount_path as the API derives it: /mnt/memory/<slug of the store's name>. */
static void store_slug(const char *name, const char *id, char *out, size_t n)
{
    size_t o = 0;
    bool dash = false;
    for (const char *p = name; *p && o + 1 < n && o < 64; p++) {
        char c = *p;
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_') {
            if (dash && o) out[o++] = '-';
            dash = false;
            if (o + 1 < n) out[o++] = c;
        } else {
            dash = true;
        }
    }
    out[o] = '\0';
    if (!o) snprintf(out, n, "%s", id);
}

int routes_session_resources(server_t *srv, json_t *res, char *msg, size_t n)
{
    if (!json_is_array(res)) {
        snprintf(msg, n, "field 'resources' must be an array");
        return 400;
    }
    size_t i;
    json_t *it;
    size_t stores = 0;
    json_t *out = json_array();
    json_array_foreach(res, i, it)
    {
        const char *t = json_string_value(json_object_get(it, "type"));
        if (!json_is_object(it) || !t) {
            snprintf(msg, n, "field 'resources[%zu].type' is required", i);
            goto fail;
        }
        if (strcmp(t, "memory_store")) {
            snprintf(msg, n,
                     "field 'resources[%zu].type': '%.40s' resources are not supported on "
                     "self-hosted environments (only memory_store)",
                     i, t);
            goto fail;
        }
        if (++stores > SESSION_MAX_STORES) {
            snprintf(msg, n, "field 'resources': at most %d memory stores per session",
                     SESSION_MAX_STORES);
            goto fail;
        }
        const char *sid = json_string_value(json_object_get(it, "memory_store_id"));
        if (!sid || !id_valid(sid, "memstore")) {
            snprintf(msg, n,
                     "field 'resources[%zu].memory_store_id' must be a memory store id "
                     "(memstore_...)",
                     i);
            goto fail;
        }
        json_t *acc = json_object_get(it, "access");
        const char *access = "read_write";
        if (acc && !json_is_null(acc)) {
            access = json_string_value(acc);
            if (!access || (strcmp(access, "read_write") && strcmp(access, "read_only"))) {
                snprintf(msg, n,
                         "field 'resources[%zu].access' must be 'read_write' or 'read_only'", i);
                goto fail;
            }
        }
        json_t *ins = json_object_get(it, "instructions");
        if (ins && !json_is_null(ins) && (!json_is_string(ins) || json_string_length(ins) > 4096)) {
            snprintf(msg, n,
                     "field 'resources[%zu].instructions' must be a string of at most 4096 "
                     "characters",
                     i);
            goto fail;
        }
        size_t j;
        json_t *prev;
        json_array_foreach(out, j, prev)
        {
            if (!strcmp(json_string_value(json_object_get(prev, "memory_store_id")), sid)) {
                snprintf(msg, n, "field 'resources[%zu]': memory store '%s' is attached twice", i,
                         sid);
                goto fail;
            }
        }
        json_t *ms = NULL;
        shed_err err = {0};
        int rc = srv->store->ops->obj_get(srv->store, "memory_store", sid, &ms, &err);
        if (rc == -ENOENT) {
            snprintf(msg, n, "field 'resources[%zu].memory_store_id': no memory store '%s'", i,
                     sid);
            goto fail;
        }
        if (rc < 0) {
            log_error("store: %s", err.msg);
            snprintf(msg, n, "internal error looking up memory store '%s'", sid);
            json_decref(out);
            return 500;
        }
        const char *name = json_string_value(json_object_get(ms, "name"));
        char slug[80], mount[128];
        store_slug(name ? name : "", sid, slug, sizeof(slug));
        snprintf(mount, sizeof(mount), "/mnt/memory/%s", slug);
        /* Two stores with one slug: the later ones get -2, -3, ... */
        for (int k = 2; k < 20; k++) {
            bool clash = false;
            json_array_foreach(out, j, prev) clash |=
                !strcmp(json_string_value(json_object_get(prev, "mount_path")), mount);
            if (!clash) break;
            snprintf(mount, sizeof(mount), "/mnt/memory/%s-%d", slug, k);
        }
        json_t *r =
            json_pack("{s:s,s:s,s:s,s:s,s:O,s:O}", "type", "memory_store", "memory_store_id", sid,
                      "access", access, "mount_path", mount, "name", json_object_get(ms, "name"),
                      "description", json_object_get(ms, "description"));
        json_object_set_new(r, "instructions",
                            json_is_string(ins) ? json_incref(ins) : json_null());
        json_decref(ms);
        json_array_append_new(out, r);
    }
    json_array_clear(res);
    json_array_extend(res, out);
    json_decref(out);
    return 0;
fail:
    json_decref(out);
    return 400;
}

/* May this principal use memory store `sid`? 0 = yes (*read_only set), else
 * an HTTP status (answered). */
static enum MHD_Result store_access(obj_ctx_t *x, const char *sid, bool write, bool *ok)
{
    *ok = false;
    if (is_admin(x)) {
        *ok = true;
        return MHD_YES;
    }
    if (x->who->kind == PRINCIPAL_ENV_KEY)
        return http_error(x->c, 403, NULL,
                          "memory stores do not accept the environment key: use the work item's "
                          "sessions token (or the admin key)");
    if (x->who->kind != PRINCIPAL_SESSIONS_TOKEN) return http_error(x->c, 403, NULL, "not allowed");
    _cleanup_json_ json_t *s = NULL;
    shed_err err = {0};
    int rc = OPS(x)->session_get(STORE(x), x->who->session_id, &s, &err);
    if (rc < 0) return http_store_error(x->srv, x->c, rc, &err);
    size_t i;
    json_t *it;
    json_array_foreach(json_object_get(s, "resources"), i, it)
    {
        const char *id = json_string_value(json_object_get(it, "memory_store_id"));
        if (!id || strcmp(id, sid)) continue;
        const char *acc = json_string_value(json_object_get(it, "access"));
        if (write && acc && !strcmp(acc, "read_only"))
            return http_error(x->c, 403, NULL,
                              "this session attached the memory store read_only: writes are "
                              "refused");
        *ok = true;
        return MHD_YES;
    }
    return not_found(x, "memory store", sid);
}

static enum MHD_Result memstore_create(obj_ctx_t *x)
{
    if (!is_admin(x))
        return http_error(x->c, 403, NULL, "creating a memory store needs the admin key");
    enum MHD_Result ret;
    _cleanup_json_ json_t *b = body_object(x, &ret);
    if (!b) return ret;
    char msg[512];
    json_t *name = json_object_get(b, "name");
    if (!json_is_string(name) || !json_string_length(name) || json_string_length(name) > 256)
        return bad(x, "field 'name' is required (a string of 1-256 characters)");
    if (!opt_str(b, "description", 4096, false, msg, sizeof(msg))) return bad(x, "%s", msg);
    json_t *md = json_object_get(b, "metadata");
    if (md && !json_is_null(md) && !check_metadata(md, msg, sizeof(msg))) return bad(x, "%s", msg);
    json_t *d = json_object_get(b, "description");
    json_t *ms = json_pack("{s:s,s:O,s:s,s:o,s:n}", "type", "memory_store", "name", name,
                           "description", json_is_string(d) ? json_string_value(d) : "", "metadata",
                           json_is_object(md) ? json_deep_copy(md) : json_object(), "archived_at");
    json_t *out = NULL;
    shed_err err = {0};
    int rc = OPS(x)->obj_create(STORE(x), "memory_store", "memstore", ms, &out, &err);
    json_decref(ms);
    if (rc < 0) return http_store_error(x->srv, x->c, rc, &err);
    return http_json(x->c, 200, out);
}

/* Path rules of the API: "/" + 1-20 non-empty segments, no "." or "..", no
 * control or format characters, no U+2028/U+2029, at most 1024 bytes.
 * (Unicode NFC is not checked.) */
static bool memory_path_ok(const char *p, const char *field, char *msg, size_t n)
{
    size_t len = strlen(p);
    if (len < 2 || len > MEMORY_PATH_MAX || p[0] != '/') {
        snprintf(msg, n, "field '%s' must start with '/' and be 2-%d bytes", field,
                 MEMORY_PATH_MAX);
        return false;
    }
    int segs = 0;
    for (const char *s = p + 1;;) {
        const char *e = strchr(s, '/');
        size_t cl = e ? (size_t)(e - s) : strlen(s);
        if (!cl || (cl == 1 && s[0] == '.') || (cl == 2 && !strncmp(s, "..", 2))) {
            snprintf(msg, n, "field '%s': segments must not be empty, '.' or '..'", field);
            return false;
        }
        if (++segs > MEMORY_MAX_SEGS) {
            snprintf(msg, n, "field '%s' has more than %d segments", field, MEMORY_MAX_SEGS);
            return false;
        }
        if (!e) break;
        s = e + 1;
    }
    for (const unsigned char *u = (const unsigned char *)p; *u; u++) {
        if (*u < 0x20 || *u == 0x7f) goto ctl;
        if (u[0] == 0xc2 && u[1] >= 0x80 && u[1] <= 0x9f) goto ctl; /* C1 */
        if (u[0] == 0xc2 && u[1] == 0xad) goto ctl;                 /* soft hyphen */
        if (u[0] == 0xe2 && u[1] == 0x80 &&
            ((u[2] >= 0x8b && u[2] <= 0x8f) || (u[2] >= 0xa8 && u[2] <= 0xae)))
            goto ctl; /* ZW*, LRM/RLM, U+2028/2029, bidi embeddings */
        if (u[0] == 0xe2 && u[1] == 0x81 && u[2] >= 0xa0 && u[2] <= 0xaf) goto ctl;
        if (u[0] == 0xef && u[1] == 0xbb && u[2] == 0xbf) goto ctl; /* BOM */
    }
    return true;
ctl:
    snprintf(msg, n, "field '%s' contains a control or format character", field);
    return false;
}

static int view_arg(obj_ctx_t *x, bool def_full, bool *full, enum MHD_Result *ret)
{
    const char *v = qarg(x, "view");
    *full = def_full;
    if (!v || !*v) return 0;
    if (!strcmp(v, "full"))
        *full = true;
    else if (!strcmp(v, "basic"))
        *full = false;
    else {
        *ret = bad(x, "query parameter 'view' must be 'basic' or 'full'");
        return -1;
    }
    return 0;
}

static enum MHD_Result memory_store_error(obj_ctx_t *x, int rc, const shed_err *err,
                                          json_t *conflict)
{
    if (rc == -ESTALE) return http_error(x->c, 409, "memory_precondition_failed_error", err->msg);
    if (rc == -EEXIST) {
        json_t *e =
            json_pack("{s:s,s:s}", "type", "memory_path_conflict_error", "message", err->msg);
        if (conflict) json_object_update(e, conflict);
        json_decref(conflict);
        return http_json(x->c, 409, json_pack("{s:s,s:o}", "type", "error", "error", e));
    }
    json_decref(conflict);
    return http_store_error(x->srv, x->c, rc, err);
}

/* content: a string of at most 100 kB (413 over), or null for "". */
static int content_arg(obj_ctx_t *x, json_t *b, bool required, const char **c, size_t *len,
                       enum MHD_Result *ret)
{
    json_t *v = json_object_get(b, "content");
    *c = NULL;
    *len = 0;
    if (!v) {
        if (required) {
            *ret = bad(x, "field 'content' is required (a string)");
            return -1;
        }
        return 0;
    }
    if (json_is_null(v)) {
        *c = "";
        return 0;
    }
    if (!json_is_string(v)) {
        *ret = bad(x, "field 'content' must be a string");
        return -1;
    }
    *len = json_string_length(v);
    if (*len > MEMORY_MAX_BYTES) {
        char msg[128];
        snprintf(msg, sizeof(msg), "field 'content' is %zu bytes; a memory holds at most %d", *len,
                 MEMORY_MAX_BYTES);
        *ret = http_error(x->c, 413, NULL, msg);
        return -1;
    }
    *c = json_string_value(v);
    return 0;
}

static bool sha_ok(const char *s)
{
    if (!s || strlen(s) != 64) return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return false;
    return true;
}

static enum MHD_Result memories(obj_ctx_t *x, const char *sid)
{
    /* memory_stores sid memories [mem_id] */
    bool write = strcmp(x->method, "GET") != 0;
    bool ok;
    enum MHD_Result ret = store_access(x, sid, write, &ok);
    if (!ok) return ret;
    json_t *out = NULL, *conflict = NULL;
    shed_err err = {0};
    int rc;
    bool full;
    if (x->nseg == 3) {
        if (!strcmp(x->method, "GET")) {
            if (view_arg(x, false, &full, &ret) < 0) return ret;
            store_page_t pg;
            if (page_args(x, &pg, 20, full ? 20 : 100, &ret) < 0) return ret;
            const char *pfx = qarg(x, "path_prefix");
            char msg[256];
            if (pfx && *pfx) {
                size_t pl = strlen(pfx);
                if (pfx[0] != '/' || pfx[pl - 1] != '/' || pl > MEMORY_PATH_MAX)
                    return bad(x, "query parameter 'path_prefix' must start and end with '/'");
                if (pl > 1) {
                    char tmp[MEMORY_PATH_MAX + 1];
                    snprintf(tmp, sizeof(tmp), "%.*s", (int)(pl - 1), pfx);
                    if (!memory_path_ok(tmp, "path_prefix", msg, sizeof(msg)))
                        return bad(x, "%s", msg);
                }
            } else {
                pfx = NULL;
            }
            int64_t depth = 0;
            if (parse_int(qarg(x, "depth"), 0, MEMORY_MAX_SEGS, &depth) < 0)
                return bad(x, "query parameter 'depth' must be an integer from 0 to %d",
                           MEMORY_MAX_SEGS);
            rc = OPS(x)->memory_list(STORE(x), sid, pfx, (int)depth, full, &pg, &out, &err);
        } else if (!strcmp(x->method, "POST")) {
            if (view_arg(x, false, &full, &ret) < 0) return ret;
            _cleanup_json_ json_t *b = body_object(x, &ret);
            if (!b) return ret;
            const char *path = json_string_value(json_object_get(b, "path"));
            char msg[256];
            if (!path) return bad(x, "field 'path' is required (a string)");
            if (!memory_path_ok(path, "path", msg, sizeof(msg))) return bad(x, "%s", msg);
            const char *c;
            size_t len;
            if (content_arg(x, b, true, &c, &len, &ret) < 0) return ret;
            rc = OPS(x)->memory_create(STORE(x), sid, path, c, len, full, &out, &conflict, &err);
        } else {
            return method_not_allowed(x);
        }
    } else {
        const char *mid = x->seg[3];
        if (!id_valid(mid, "mem")) return not_found(x, "memory", mid);
        if (!strcmp(x->method, "GET")) {
            if (view_arg(x, true, &full, &ret) < 0) return ret;
            rc = OPS(x)->memory_get(STORE(x), sid, mid, full, &out, &err);
        } else if (!strcmp(x->method, "POST")) {
            if (view_arg(x, false, &full, &ret) < 0) return ret;
            _cleanup_json_ json_t *b = body_object(x, &ret);
            if (!b) return ret;
            char msg[256];
            json_t *pv = json_object_get(b, "path");
            const char *path = NULL;
            if (pv && !json_is_null(pv)) {
                if (!(path = json_string_value(pv))) return bad(x, "field 'path' must be a string");
                if (!memory_path_ok(path, "path", msg, sizeof(msg))) return bad(x, "%s", msg);
            }
            const char *c;
            size_t len;
            if (content_arg(x, b, false, &c, &len, &ret) < 0) return ret;
            json_t *pre = json_object_get(b, "precondition");
            const char *expect = NULL;
            if (pre && !json_is_null(pre)) {
                const char *t = json_string_value(json_object_get(pre, "type"));
                if (!json_is_object(pre) || !t || strcmp(t, "content_sha256"))
                    return bad(x, "field 'precondition.type' must be 'content_sha256'");
                json_t *h = json_object_get(pre, "content_sha256");
                if (h && !json_is_null(h)) {
                    expect = json_string_value(h);
                    if (!sha_ok(expect))
                        return bad(x, "field 'precondition.content_sha256' must be 64 lowercase "
                                      "hex characters");
                }
            }
            rc = OPS(x)->memory_update(STORE(x), sid, mid, path, c, len, expect, full, &out,
                                       &conflict, &err);
        } else if (!strcmp(x->method, "DELETE")) {
            const char *expect = qarg(x, "expected_content_sha256");
            if (expect && !*expect) expect = NULL;
            if (expect && !sha_ok(expect))
                return bad(x, "query parameter 'expected_content_sha256' must be 64 lowercase hex "
                              "characters");
            rc = OPS(x)->memory_delete(STORE(x), sid, mid, expect, &err);
            if (rc == 0) out = json_pack("{s:s,s:s}", "id", mid, "type", "memory_deleted");
        } else {
            return method_not_allowed(x);
        }
    }
    if (rc < 0) return memory_store_error(x, rc, &err, conflict);
    json_decref(conflict);
    return http_json(x->c, 200, out);
}

static enum MHD_Result memstore_routes(obj_ctx_t *x)
{
    /* memory_stores [id [memories [mem_id]]] */
    if (x->nseg == 1) {
        if (!strcmp(x->method, "POST")) return memstore_create(x);
        if (strcmp(x->method, "GET")) return method_not_allowed(x);
        if (x->who->kind == PRINCIPAL_ENV_KEY)
            return http_error(x->c, 403, NULL, "memory stores do not accept the environment key");
        if (!is_admin(x))
            return http_error(x->c, 403, NULL, "listing memory stores needs the admin key");
        enum MHD_Result ret;
        store_page_t pg;
        if (page_args(x, &pg, 20, 1000, &ret) < 0) return ret;
        json_t *out = NULL;
        shed_err err = {0};
        int rc = OPS(x)->obj_list(STORE(x), "memory_store", &pg, &out, &err);
        if (rc < 0) return http_store_error(x->srv, x->c, rc, &err);
        return http_json(x->c, 200, out);
    }
    const char *sid = x->seg[1];
    if (!id_valid(sid, "memstore")) return not_found(x, "memory store", sid);
    if (x->nseg >= 3) {
        if (strcmp(x->seg[2], "memories") || x->nseg > 4) return not_found(x, "route", x->seg[2]);
        return memories(x, sid);
    }
    if (strcmp(x->method, "GET")) return method_not_allowed(x);
    bool ok;
    enum MHD_Result ret = store_access(x, sid, false, &ok);
    if (!ok) return ret;
    json_t *out = NULL;
    shed_err err = {0};
    int rc = OPS(x)->obj_get(STORE(x), "memory_store", sid, &out, &err);
    if (rc < 0) return http_store_error(x->srv, x->c, rc, &err);
    return http_json(x->c, 200, out);
}

/* --------------------------------------------------------------- skills */

/* Files and display_name from a multipart upload. Returns the file count or -1 (answered). */
static int skill_upload(obj_ctx_t *x, multipart_part_t *parts, skill_file_t *files, char *display,
                        size_t dlen, skill_meta_t *meta, enum MHD_Result *ret)
{
    char msg[512];
    const char *ct = MHD_lookup_connection_value(x->c, MHD_HEADER_KIND, "Content-Type");
    int np = multipart_parse(ct, x->r->body.data ? x->r->body.data : "", x->r->body.len, parts,
                             MULTIPART_MAX_PARTS, msg, sizeof(msg));
    if (np < 0) {
        *ret = bad(x, "%s", msg);
        return -1;
    }
    int nf = 0;
    if (display) display[0] = '\0';
    for (int i = 0; i < np; i++) {
        if (!strcmp(parts[i].name, "files[]") || !strcmp(parts[i].name, "files")) {
            if (!parts[i].has_filename) {
                *ret = bad(x, "field 'files': part %d has no filename", i);
                return -1;
            }
            if (nf == SKILL_MAX_FILES) {
                *ret = bad(x, "field 'files': more than %d files", SKILL_MAX_FILES);
                return -1;
            }
            files[nf].path = parts[i].filename;
            files[nf].data = parts[i].data;
            files[nf].len = parts[i].len;
            nf++;
        } else if (display && !strcmp(parts[i].name, "display_name")) {
            if (parts[i].len >= dlen || memchr(parts[i].data, 0, parts[i].len)) {
                *ret = bad(x, "field 'display_name' must be at most %zu characters", dlen - 1);
                return -1;
            }
            memcpy(display, parts[i].data, parts[i].len);
            display[parts[i].len] = '\0';
        }
    }
    if (skill_check(files, nf, meta, msg, sizeof(msg)) < 0) {
        *ret = bad(x, "%s", msg);
        return -1;
    }
    return nf;
}

static enum MHD_Result skill_create(obj_ctx_t *x, const char *skill_id)
{
    if (!is_admin(x)) return http_error(x->c, 403, NULL, "uploading a skill needs the admin key");
    _cleanup_free_ multipart_part_t *parts = calloc(MULTIPART_MAX_PARTS, sizeof(*parts));
    _cleanup_free_ skill_file_t *files = calloc(SKILL_MAX_FILES, sizeof(*files));
    if (!parts || !files) return http_error(x->c, 500, NULL, "out of memory");
    char display[257];
    skill_meta_t meta;
    enum MHD_Result ret;
    int nf = skill_upload(x, parts, files, skill_id ? NULL : display, sizeof(display), &meta, &ret);
    if (nf < 0) return ret;
    _cleanup_buf_ buf_t zip;
    buf_init(&zip, SKILL_ARCHIVE_MAX);
    char msg[256];
    int prc = skill_pack_zip(files, nf, &zip, msg, sizeof(msg));
    if (prc == -EFBIG) return http_error(x->c, 413, NULL, "the skill's archive is over 8 MiB");
    if (prc < 0) {
        log_error("skill archive: %s", msg);
        return http_error(x->c, 500, NULL, "could not build the skill's archive");
    }
    _cleanup_json_ json_t *ver = json_pack("{s:s,s:s,s:s}", "name", meta.name, "description",
                                           meta.description, "directory", meta.directory);
    json_t *out = NULL;
    shed_err err = {0};
    int rc;
    if (skill_id) {
        if (!id_valid(skill_id, "skill")) return not_found(x, "skill", skill_id);
        rc = OPS(x)->skill_version_create(STORE(x), skill_id, ver, zip.data, zip.len, &out, &err);
    } else {
        _cleanup_json_ json_t *sk =
            json_pack("{s:s,s:s,s:{s:s}}", "type", "skill", "display_name",
                      display[0] ? display : meta.name, "source", "type", "custom");
        rc = OPS(x)->skill_create(STORE(x), sk, ver, zip.data, zip.len, &out, &err);
    }
    if (rc < 0) return http_store_error(x->srv, x->c, rc, &err);
    return http_json(x->c, 200, out);
}

static enum MHD_Result skill_content(obj_ctx_t *x, const char *skill_id, const char *ver)
{
    void *data = NULL;
    size_t len = 0;
    shed_err err = {0};
    int rc = OPS(x)->skill_version_content(STORE(x), skill_id, ver, &data, &len, &err);
    if (rc < 0) return http_store_error(x->srv, x->c, rc, &err);
    struct MHD_Response *r = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(data);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "application/zip");
    char cd[128];
    snprintf(cd, sizeof(cd), "attachment; filename=\"%.40s-%.24s.zip\"", skill_id, ver);
    MHD_add_response_header(r, "Content-Disposition", cd);
    enum MHD_Result q = MHD_queue_response(x->c, 200, r);
    MHD_destroy_response(r);
    return q;
}

static bool version_ok(const char *v)
{
    if (!strcmp(v, "latest")) return true;
    size_t n = strlen(v);
    if (!n || n > 20) return false;
    for (const char *p = v; *p; p++)
        if (*p < '0' || *p > '9') return false;
    return true;
}

static enum MHD_Result skill_routes(obj_ctx_t *x)
{
    /* skills [id [versions [version [content]]]] */
    bool get = !strcmp(x->method, "GET");
    if (x->nseg == 1 && !strcmp(x->method, "POST")) return skill_create(x, NULL);
    if (x->nseg == 3 && !strcmp(x->method, "POST") && !strcmp(x->seg[2], "versions"))
        return skill_create(x, x->seg[1]);
    if (!get) return method_not_allowed(x);
    /* Reading: admin, or a worker (environment key or sessions token). */
    if (x->who->kind == PRINCIPAL_NONE) return http_error(x->c, 403, NULL, "not allowed");
    json_t *out = NULL;
    shed_err err = {0};
    int rc;
    enum MHD_Result ret;
    store_page_t pg;
    if (x->nseg == 1) {
        if (!is_admin(x)) return http_error(x->c, 403, NULL, "listing skills needs the admin key");
        if (page_args(x, &pg, 20, 1000, &ret) < 0) return ret;
        rc = OPS(x)->obj_list(STORE(x), "skill", &pg, &out, &err);
    } else {
        const char *id = x->seg[1];
        if (!id_valid(id, "skill")) return not_found(x, "skill", id);
        if (x->nseg == 2) {
            rc = OPS(x)->obj_get(STORE(x), "skill", id, &out, &err);
        } else if (strcmp(x->seg[2], "versions") || x->nseg > 5) {
            return not_found(x, "route", x->seg[2]);
        } else if (x->nseg == 3) {
            if (page_args(x, &pg, 20, 1000, &ret) < 0) return ret;
            rc = OPS(x)->skill_version_list(STORE(x), id, &pg, &out, &err);
        } else {
            const char *v = x->seg[3];
            if (!version_ok(v)) return not_found(x, "skill version", v);
            if (x->nseg == 5) {
                if (strcmp(x->seg[4], "content")) return not_found(x, "route", x->seg[4]);
                return skill_content(x, id, v);
            }
            rc = OPS(x)->skill_version_get(STORE(x), id, v, &out, &err);
        }
    }
    if (rc < 0) return http_store_error(x->srv, x->c, rc, &err);
    return http_json(x->c, 200, out);
}

enum MHD_Result routes_objects(server_t *srv, struct MHD_Connection *c, req_t *r,
                               const store_principal_t *who, const char *method, char **seg,
                               int nseg)
{
    obj_ctx_t x = {
        .srv = srv, .c = c, .r = r, .who = who, .method = method, .seg = seg, .nseg = nseg};
    if (!strcmp(seg[0], "agents")) return agent_routes(&x);
    if (!strcmp(seg[0], "skills")) return skill_routes(&x);
    return memstore_routes(&x);
}
