/* Unit tests for the control plane's store and queue logic (store.h,
 * SQLite backend): claims, reclaim, ack, heartbeat echo and 412s, lease
 * expiry, stop semantics, event validation and atomicity, persistence.
 * Time is injected (now_us), so nothing here sleeps. */
#include "test.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/clock.h"
#include "base/crypto.h"
#include "server/server.h"
#include "server/store.h"

#define S 1000000LL /* one second in microseconds */

static char dbpath[256];

static store_t *open_store_cfg(const store_queue_cfg_t *extra)
{
    if (!dbpath[0]) {
        snprintf(dbpath, sizeof(dbpath), "/tmp/shed-test-store.XXXXXX");
        int fd = mkstemp(dbpath);
        if (fd < 0) test_fail(__FILE__, __LINE__, "mkstemp");
        close(fd);
        unlink(dbpath);
    }
    store_queue_cfg_t cfg = {.default_ttl_s = 10, .default_reclaim_ms = 5000};
    if (extra) {
        cfg.sync_normal = extra->sync_normal;
        cfg.sync_strict = extra->sync_strict;
    }
    store_t *s = NULL;
    shed_err err = {0};
    int rc = store_open(dbpath, &cfg, &s, &err);
    if (rc < 0) test_fail(__FILE__, __LINE__, "store_open: %s", err.msg);
    return s;
}

static store_t *open_store(void)
{
    return open_store_cfg(NULL);
}

static void cleanup_db(void)
{
    char p[300];
    unlink(dbpath);
    snprintf(p, sizeof(p), "%s-wal", dbpath);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", dbpath);
    unlink(p);
}

static char *new_env(store_t *s)
{
    _cleanup_json_ json_t *f =
        json_pack("{s:s,s:{s:s}}", "name", "t", "config", "type", "self_hosted");
    json_t *e = NULL;
    shed_err err = {0};
    ASSERT_EQ_INT(s->ops->env_create(s, f, &e, &err), 0);
    char *id = strdup(json_string_value(json_object_get(e, "id")));
    json_decref(e);
    return id;
}

static char *new_session(store_t *s, const char *env)
{
    _cleanup_json_ json_t *f = json_pack("{s:s}", "environment_id", env);
    json_t *o = NULL;
    shed_err err = {0};
    ASSERT_EQ_INT(s->ops->session_create(s, f, &o, &err), 0);
    char *id = strdup(json_string_value(json_object_get(o, "id")));
    json_decref(o);
    return id;
}

/* Poll once at `now`; returns the work id (malloc'd) or NULL. */
static char *poll_at(store_t *s, const char *env, const char *token_hash, int64_t now,
                     int64_t reclaim_ms)
{
    json_t *w = NULL;
    shed_err err = {0};
    ASSERT_EQ_INT(s->ops->work_poll(s, env, "w", reclaim_ms, token_hash, now, &w, &err), 0);
    if (!w) return NULL;
    char *id = strdup(json_string_value(json_object_get(w, "id")));
    json_decref(w);
    return id;
}

/* Ack (the answer dropped): the store's return value. */
static int ack(store_t *s, const char *env, const char *w, int64_t gen, int64_t now)
{
    json_t *a = NULL;
    shed_err err = {0};
    int rc = s->ops->work_ack(s, env, w, gen, now, &a, &err);
    json_decref(a);
    return rc;
}

static void close_store(store_t *s)
{
    s->ops->close(s);
    cleanup_db();
}

static int64_t token_gen(store_t *s, const char *hash)
{
    store_principal_t p;
    shed_err err = {0};
    ASSERT_EQ_INT(s->ops->auth_sessions_token(s, hash, &p, &err), 0);
    ASSERT_EQ_INT(p.kind, PRINCIPAL_SESSIONS_TOKEN);
    return p.gen;
}

TEST(poll_claims_once_and_reclaims_after_the_window)
{
    store_t *s = open_store();
    _cleanup_free_ char *env = new_env(s);
    _cleanup_free_ char *sid = new_session(s, env);
    int64_t t = clock_wall_us();
    _cleanup_free_ char *w1 = poll_at(s, env, "h1", t, 5000);
    ASSERT_TRUE(w1 != NULL);
    ASSERT_TRUE(poll_at(s, env, "h2", t + 1 * S, 5000) == NULL);
    _cleanup_free_ char *w2 = poll_at(s, env, "h3", t + 6 * S, 5000);
    ASSERT_EQ_STR(w2, w1);
    ASSERT_TRUE(token_gen(s, "h3") > token_gen(s, "h1"));
    /* stats: the reclaimed item is pending again */
    json_t *st = NULL;
    shed_err err = {0};
    ASSERT_EQ_INT(s->ops->work_stats(s, env, t + 6 * S, &st, &err), 0);
    ASSERT_EQ_INT(json_integer_value(json_object_get(st, "pending")), 1);
    ASSERT_EQ_INT(json_integer_value(json_object_get(st, "depth")), 0);
    json_decref(st);
    close_store(s);
}

TEST(ack_heartbeat_echo_and_stale_412)
{
    store_t *s = open_store();
    _cleanup_free_ char *env = new_env(s);
    _cleanup_free_ char *sid = new_session(s, env);
    int64_t t = clock_wall_us();
    shed_err err = {0};
    store_heartbeat_t hb;
    _cleanup_free_ char *w = poll_at(s, env, "h1", t, 5000);
    int64_t gen = token_gen(s, "h1");
    /* heartbeat before ack: the item is queued, no lease */
    ASSERT_EQ_INT(s->ops->work_heartbeat(s, env, w, gen, "NO_HEARTBEAT", 0, t, &hb, &err), -ESTALE);
    ASSERT_EQ_STR(hb.state, "queued");
    json_t *a = NULL;
    ASSERT_EQ_INT(s->ops->work_ack(s, env, w, gen, t, &a, &err), 0);
    ASSERT_EQ_STR(json_string_value(json_object_get(a, "state")), "starting");
    json_decref(a);
    ASSERT_EQ_INT(ack(s, env, w, gen + 1, t), -EEXIST);
    ASSERT_EQ_INT(s->ops->work_heartbeat(s, env, w, gen, "2020-01-01T00:00:00Z", 0, t, &hb, &err),
                  -ESTALE);
    ASSERT_EQ_INT(s->ops->work_heartbeat(s, env, w, gen, "NO_HEARTBEAT", 0, t, &hb, &err), 0);
    ASSERT_EQ_STR(hb.state, "active");
    ASSERT_TRUE(hb.lease_extended);
    ASSERT_EQ_INT(hb.ttl_seconds, 10);
    char first[64];
    snprintf(first, sizeof(first), "%s", hb.last_heartbeat);
    /* same instant again: the value still changes (strictly increasing) */
    ASSERT_EQ_INT(s->ops->work_heartbeat(s, env, w, gen, first, 30, t, &hb, &err), 0);
    ASSERT_TRUE(strcmp(first, hb.last_heartbeat) != 0);
    ASSERT_EQ_INT(hb.ttl_seconds, 30);
    store_heartbeat_t cur = hb;
    ASSERT_EQ_INT(s->ops->work_heartbeat(s, env, w, gen, first, 0, t, &hb, &err), -ESTALE);
    ASSERT_EQ_STR(hb.last_heartbeat, cur.last_heartbeat);
    ASSERT_EQ_STR(hb.state, "active");
    ASSERT_EQ_INT(s->ops->work_heartbeat(s, env, w, -1, "NO_HEARTBEAT", 0, t, &hb, &err), -ESTALE);
    close_store(s);
}

TEST(lease_expiry_requeues_same_id_and_fences_the_old_holder)
{
    store_t *s = open_store();
    _cleanup_free_ char *env = new_env(s);
    _cleanup_free_ char *sid = new_session(s, env);
    int64_t t = clock_wall_us();
    shed_err err = {0};
    store_heartbeat_t hb;
    _cleanup_free_ char *w = poll_at(s, env, "h1", t, 5000);
    int64_t gen = token_gen(s, "h1");
    ASSERT_EQ_INT(ack(s, env, w, gen, t), 0);
    ASSERT_EQ_INT(s->ops->work_heartbeat(s, env, w, gen, "NO_HEARTBEAT", 0, t, &hb, &err), 0);
    char last[64];
    snprintf(last, sizeof(last), "%s", hb.last_heartbeat);
    /* within the lease: nobody else gets it */
    ASSERT_TRUE(poll_at(s, env, "h2", t + 9 * S, 1) == NULL);
    /* after it: same id, back to queued */
    _cleanup_free_ char *w2 = poll_at(s, env, "h3", t + 11 * S, 1);
    ASSERT_EQ_STR(w2, w);
    ASSERT_EQ_INT(s->ops->work_heartbeat(s, env, w, gen, last, 0, t + 11 * S, &hb, &err), -ESTALE);
    ASSERT_EQ_INT(s->ops->work_heartbeat(s, env, w, -1, last, 0, t + 11 * S, &hb, &err), -ESTALE);
    ASSERT_EQ_STR(hb.state, "queued");
    ASSERT_EQ_INT(s->ops->work_stop(s, env, w, gen, true, true, t + 11 * S, &err), -EEXIST);
    close_store(s);
}

static const char *state_of(store_t *s, const char *env, const char *w)
{
    static char st[32];
    json_t *o = NULL;
    shed_err err = {0};
    ASSERT_EQ_INT(s->ops->work_get(s, env, w, clock_wall_us(), &o, &err), 0);
    snprintf(st, sizeof(st), "%s", json_string_value(json_object_get(o, "state")));
    json_decref(o);
    return st;
}

TEST(stop_by_operator_and_by_holder)
{
    store_t *s = open_store();
    _cleanup_free_ char *env = new_env(s);
    _cleanup_free_ char *s1 = new_session(s, env);
    int64_t t = clock_wall_us();
    shed_err err = {0};
    _cleanup_free_ char *w = poll_at(s, env, "h1", t, 5000);
    ASSERT_EQ_INT(ack(s, env, w, -1, t), 0);
    ASSERT_EQ_INT(s->ops->work_stop(s, env, w, -1, false, false, t, &err), 0);
    ASSERT_EQ_STR(state_of(s, env, w), "stopping");
    ASSERT_EQ_INT(s->ops->work_stop(s, env, w, -1, false, false, t, &err), 0);
    ASSERT_EQ_STR(state_of(s, env, w), "stopping");
    ASSERT_EQ_INT(s->ops->work_stop(s, env, w, -1, false, true, t, &err), 0);
    ASSERT_EQ_STR(state_of(s, env, w), "stopped");
    ASSERT_EQ_INT(s->ops->work_stop(s, env, w, -1, true, false, t, &err), -EEXIST);
    /* a queued item stops at once, even gracefully */
    _cleanup_free_ char *s2 = new_session(s, env);
    _cleanup_free_ char *w2 = poll_at(s, env, "h2", t, 5000);
    ASSERT_EQ_INT(s->ops->work_stop(s, env, w2, -1, false, false, t, &err), 0);
    ASSERT_EQ_STR(state_of(s, env, w2), "stopped");
    ASSERT_EQ_INT(
        s->ops->work_stop(s, env, "work_00000000000000000000000000", -1, true, false, t, &err),
        -ENOENT);
    close_store(s);
}

static json_t *ev_tool_use(void)
{
    return json_pack("{s:s,s:s,s:{}}", "type", "agent.tool_use", "name", "bash", "input");
}

TEST(events_validate_references_and_write_all_or_nothing)
{
    store_t *s = open_store();
    _cleanup_free_ char *env = new_env(s);
    _cleanup_free_ char *sid = new_session(s, env);
    shed_err err = {0};
    store_append_result_t r;
    _cleanup_json_ json_t *one = json_pack("[o]", ev_tool_use());
    ASSERT_EQ_INT(s->ops->events_append(s, sid, one, 0, &r, &err), 0);
    ASSERT_FALSE(r.work_enqueued); /* the session's first item is still queued */
    {
        /* the HTTP answer is the stored events' compact JSON, byte for byte */
        json_t *wrap = json_pack("{s:O}", "data", r.events);
        _cleanup_free_ char *want = json_dumps(wrap, JSON_COMPACT | JSON_ENCODE_ANY);
        json_decref(wrap);
        ASSERT_TRUE(r.answer != NULL);
        ASSERT_EQ_STR(r.answer, want);
    }
    const char *use = json_string_value(json_object_get(json_array_get(r.events, 0), "id"));
    char use_id[64];
    snprintf(use_id, sizeof(use_id), "%s", use);
    json_decref(r.events);
    _cleanup_json_ json_t *bad =
        json_pack("[{s:s,s:s}]", "type", "user.tool_result", "tool_use_id", "sevt_nope");
    ASSERT_EQ_INT(s->ops->events_append(s, sid, bad, 0, &r, &err), -EINVAL);
    ASSERT_CONTAINS(err.msg, "tool_use_id");
    _cleanup_json_ json_t *dup =
        json_pack("[{s:s,s:s},{s:s,s:s}]", "type", "user.tool_result", "tool_use_id", use_id,
                  "type", "user.tool_result", "tool_use_id", use_id);
    ASSERT_EQ_INT(s->ops->events_append(s, sid, dup, 0, &r, &err), -EEXIST);
    int64_t last = -1;
    ASSERT_EQ_INT(s->ops->events_last_seq(s, sid, &last, &err), 0);
    store_stream_event_t evs[8];
    int n = s->ops->events_after(s, sid, 0, evs, 8, &err);
    ASSERT_EQ_INT(n, 1); /* nothing of the failed batch was written */
    for (int i = 0; i < n; i++) free(evs[i].json);
    _cleanup_json_ json_t *res =
        json_pack("[{s:s,s:s}]", "type", "user.tool_result", "tool_use_id", use_id);
    ASSERT_EQ_INT(s->ops->events_append(s, sid, res, 0, &r, &err), 0);
    json_decref(r.events);
    ASSERT_EQ_INT(s->ops->events_append(s, sid, res, 0, &r, &err), -EEXIST);
    /* a custom result must answer a custom call */
    _cleanup_json_ json_t *cr =
        json_pack("[{s:s,s:s}]", "type", "user.custom_tool_result", "custom_tool_use_id", use_id);
    ASSERT_EQ_INT(s->ops->events_append(s, sid, cr, 0, &r, &err), -EINVAL);
    /* termination: no more events */
    _cleanup_json_ json_t *term = json_pack("[{s:s}]", "type", "session.status_terminated");
    ASSERT_EQ_INT(s->ops->events_append(s, sid, term, 0, &r, &err), 0);
    json_decref(r.events);
    ASSERT_EQ_INT(s->ops->events_append(s, sid, one, 0, &r, &err), -EINVAL);
    close_store(s);
}

TEST(a_tool_call_wakes_a_dormant_session_once)
{
    store_t *s = open_store();
    _cleanup_free_ char *env = new_env(s);
    _cleanup_free_ char *sid = new_session(s, env);
    int64_t t = clock_wall_us();
    shed_err err = {0};
    _cleanup_free_ char *w = poll_at(s, env, "h1", t, 5000);
    ASSERT_EQ_INT(s->ops->work_stop(s, env, w, -1, true, false, t, &err), 0);
    store_append_result_t r;
    _cleanup_json_ json_t *one = json_pack("[o]", ev_tool_use());
    ASSERT_EQ_INT(s->ops->events_append(s, sid, one, 0, &r, &err), 0);
    ASSERT_TRUE(r.work_enqueued);
    ASSERT_EQ_STR(r.env_id, env);
    json_decref(r.events);
    ASSERT_EQ_INT(s->ops->events_append(s, sid, one, 0, &r, &err), 0);
    ASSERT_FALSE(r.work_enqueued);
    json_decref(r.events);
    json_t *sess = NULL;
    ASSERT_EQ_INT(s->ops->session_get(s, sid, &sess, &err), 0);
    ASSERT_EQ_STR(json_string_value(json_object_get(sess, "status")), "running");
    json_decref(sess);
    close_store(s);
}

TEST(keys_hashed_revocation_and_pages)
{
    store_t *s = open_store();
    _cleanup_free_ char *env = new_env(s);
    shed_err err = {0};
    json_t *k = NULL;
    char hex[SHA256_HEX_LEN];
    crypto_sha256_hex("sk-shed-env-x", 13, hex);
    ASSERT_EQ_INT(s->ops->key_create(s, env, hex, &k, &err), 0);
    char kid[64];
    snprintf(kid, sizeof(kid), "%s", json_string_value(json_object_get(k, "id")));
    json_decref(k);
    store_principal_t p;
    ASSERT_EQ_INT(s->ops->auth_env_key(s, hex, &p, &err), 0);
    ASSERT_EQ_STR(p.env_id, env);
    ASSERT_EQ_INT(s->ops->key_revoke(s, env, kid, &err), 0);
    ASSERT_EQ_INT(s->ops->auth_env_key(s, hex, &p, &err), -ENOENT);
    ASSERT_EQ_INT(s->ops->key_revoke(s, "env_00000000000000000000000000", kid, &err), -ENOENT);
    /* pages of environments */
    _cleanup_free_ char *e2 = new_env(s);
    _cleanup_free_ char *e3 = new_env(s);
    store_page_t pg = {.limit = 2};
    json_t *page = NULL;
    ASSERT_EQ_INT(s->ops->env_list(s, false, &pg, &page, &err), 0);
    ASSERT_EQ_INT(json_array_size(json_object_get(page, "data")), 2);
    const char *next = json_string_value(json_object_get(page, "next_page"));
    ASSERT_TRUE(next != NULL);
    char cur[64];
    snprintf(cur, sizeof(cur), "%s", next);
    json_decref(page);
    pg.cursor = cur;
    ASSERT_EQ_INT(s->ops->env_list(s, false, &pg, &page, &err), 0);
    ASSERT_EQ_INT(json_array_size(json_object_get(page, "data")), 1);
    ASSERT_TRUE(json_is_null(json_object_get(page, "next_page")));
    json_decref(page);
    pg.cursor = "pg_12x";
    ASSERT_EQ_INT(s->ops->env_list(s, false, &pg, &page, &err), -EINVAL);
    pg.cursor = "pg_99999999999999999999"; /* would overflow int64 */
    ASSERT_EQ_INT(s->ops->env_list(s, false, &pg, &page, &err), -EINVAL);
    pg.cursor = "bogus";
    ASSERT_EQ_INT(s->ops->env_list(s, false, &pg, &page, &err), -EINVAL);
    close_store(s);
}

TEST(state_survives_reopen)
{
    store_t *s = open_store();
    _cleanup_free_ char *env = new_env(s);
    _cleanup_free_ char *sid = new_session(s, env);
    int64_t t = clock_wall_us();
    shed_err err = {0};
    _cleanup_free_ char *w = poll_at(s, env, "h1", t, 5000);
    ASSERT_EQ_INT(ack(s, env, w, -1, t), 0);
    s->ops->close(s);
    s = open_store();
    ASSERT_EQ_STR(state_of(s, env, w), "starting");
    ASSERT_EQ_INT(token_gen(s, "h1"), 1);
    json_t *sess = NULL;
    ASSERT_EQ_INT(s->ops->session_get(s, sid, &sess, &err), 0);
    json_decref(sess);
    close_store(s);
}

TEST(secret_format)
{
    char k[128];
    ASSERT_EQ_INT(server_new_secret(SERVER_TOKEN_PREFIX, k, sizeof(k)), 0);
    ASSERT_EQ_INT(strlen(k), strlen(SERVER_TOKEN_PREFIX) + 43);
    char k2[128];
    ASSERT_EQ_INT(server_new_secret(SERVER_TOKEN_PREFIX, k2, sizeof(k2)), 0);
    ASSERT_TRUE(strcmp(k, k2) != 0);
    char small[20];
    ASSERT_EQ_INT(server_new_secret(SERVER_TOKEN_PREFIX, small, sizeof(small)), -ENAMETOOLONG);
}

TEST(store_open_refuses_unknown_backends)
{
    store_queue_cfg_t cfg = {.default_ttl_s = 10, .default_reclaim_ms = 5000};
    store_t *s = NULL;
    shed_err err = {0};
    ASSERT_EQ_INT(store_open("postgres://x/y", &cfg, &s, &err), -ENOTSUP);
    ASSERT_CONTAINS(err.msg, "sqlite:PATH");
    ASSERT_EQ_INT(store_open("mysql://x", &cfg, &s, &err), -EINVAL);
    ASSERT_TRUE(store_open("sqlite:/nonexistent-dir/x.db", &cfg, &s, &err) < 0);
}

TEST(ack_is_idempotent_for_one_delivery_and_first_wins_after_redelivery)
{
    store_t *s = open_store();
    _cleanup_free_ char *env = new_env(s);
    _cleanup_free_ char *sid = new_session(s, env);
    int64_t t = clock_wall_us();
    /* one delivery: a retried ack (lost answer) is fine, with or without the token */
    _cleanup_free_ char *w = poll_at(s, env, "h1", t, 5000);
    ASSERT_EQ_INT(ack(s, env, w, -1, t), 0);
    ASSERT_EQ_INT(ack(s, env, w, -1, t), 0);
    ASSERT_EQ_INT(ack(s, env, w, token_gen(s, "h1"), t), 0);
    /* two deliveries (the first was slow to ack): the first ack holds it */
    _cleanup_free_ char *s2 = new_session(s, env);
    _cleanup_free_ char *w2 = poll_at(s, env, "h2", t, 5000);
    _cleanup_free_ char *w3 = poll_at(s, env, "h3", t + 6 * S, 5000);
    ASSERT_EQ_STR(w3, w2);
    ASSERT_EQ_INT(ack(s, env, w2, -1, t + 6 * S), 0);
    ASSERT_EQ_INT(ack(s, env, w2, -1, t + 6 * S), -EEXIST);
    ASSERT_EQ_INT(ack(s, env, w2, token_gen(s, "h2"), t + 6 * S), -EEXIST);
    ASSERT_EQ_INT(ack(s, env, w2, token_gen(s, "h3"), t + 6 * S), -EEXIST);
    /* ... and when the current delivery's token acked first, only it may repeat */
    _cleanup_free_ char *s3 = new_session(s, env);
    _cleanup_free_ char *w4 = poll_at(s, env, "h4", t, 5000);
    _cleanup_free_ char *w5 = poll_at(s, env, "h5", t + 6 * S, 5000);
    ASSERT_EQ_STR(w5, w4);
    ASSERT_EQ_INT(ack(s, env, w4, token_gen(s, "h5"), t + 6 * S), 0);
    ASSERT_EQ_INT(ack(s, env, w4, token_gen(s, "h5"), t + 6 * S), 0);
    ASSERT_EQ_INT(ack(s, env, w4, -1, t + 6 * S), -EEXIST);
    close_store(s);
}

TEST(append_answer_is_the_stored_events_and_session_head_matches)
{
    store_t *s = open_store();
    _cleanup_free_ char *env = new_env(s);
    _cleanup_free_ char *sid = new_session(s, env);
    shed_err err = {0};
    char henv[ID_MAX], status[32];
    ASSERT_EQ_INT(s->ops->session_head(s, sid, henv, status, &err), 0);
    ASSERT_EQ_STR(henv, env);
    ASSERT_EQ_INT(s->ops->session_head(s, "sesn_nope", henv, status, &err), -ENOENT);
    store_append_result_t r;
    _cleanup_json_ json_t *three = json_pack("[o,{s:s,s:[{s:s,s:s}]},{s:s}]", ev_tool_use(), "type",
                                             "agent.message", "content", "type", "text", "text",
                                             "h\u00e9 \"q\" \\n", "type", "session.status_idle");
    ASSERT_EQ_INT(s->ops->events_append(s, sid, three, 0, &r, &err), 0);
    json_t *wrap = json_pack("{s:O}", "data", r.events);
    _cleanup_free_ char *want = json_dumps(wrap, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(wrap);
    ASSERT_TRUE(r.answer != NULL);
    ASSERT_EQ_STR(r.answer, want);
    ASSERT_EQ_INT((int)json_array_size(r.events), 3);
    /* each stored event located in the answer, with its seq (what a waiting
     * stream is sent without a query): the same as events_after gives */
    ASSERT_EQ_INT(r.nappended, 3);
    store_stream_event_t ev[4];
    ASSERT_EQ_INT(s->ops->events_after(s, sid, r.appended[0].seq - 1, ev, 4, &err), 3);
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ_INT((int)r.appended[i].seq, (int)ev[i].seq);
        ASSERT_EQ_STR(r.appended[i].type, ev[i].type);
        ASSERT_EQ_INT((int)r.appended[i].len, (int)strlen(ev[i].json));
        ASSERT_TRUE(!memcmp(r.answer + r.appended[i].off, ev[i].json, r.appended[i].len));
        free(ev[i].json);
    }
    json_decref(r.events);
    ASSERT_EQ_INT(s->ops->session_head(s, sid, henv, status, &err), 0);
    ASSERT_EQ_STR(status, "idle");
    s->ops->close(s);
}

/* An early append (the POST route's) commits without its fsync and says so;
 * the events are readable at once; ops->sync flushes; later appends and
 * other writes work and commits stay whole across a reopen. --sync strict
 * and normal never leave a sync pending, nor does an append not asked early. */
TEST(early_append_leaves_the_fsync_to_sync_in_full_mode_only)
{
    struct {
        store_queue_cfg_t cfg;
        bool pending;
    } modes[] = {{{0}, true}, {{.sync_strict = true}, false}, {{.sync_normal = true}, false}};
    for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
        store_t *s = open_store_cfg(&modes[m].cfg);
        _cleanup_free_ char *env = new_env(s);
        _cleanup_free_ char *sid = new_session(s, env);
        shed_err err = {0};
        store_append_result_t r;
        _cleanup_json_ json_t *one = json_pack("[o]", ev_tool_use());
        ASSERT_EQ_INT(s->ops->sync(s, &err), 0); /* nothing pending: nothing to do */
        ASSERT_EQ_INT(s->ops->events_append(s, sid, one, STORE_APPEND_EARLY, &r, &err), 0);
        ASSERT_EQ_INT(r.sync_pending, modes[m].pending);
        int64_t seq = r.appended[0].seq;
        json_decref(r.events);
        store_stream_event_t got[4];
        memset(got, 0, sizeof(got));
        ASSERT_EQ_INT(s->ops->events_after(s, sid, 0, got, 4, &err), 1);
        ASSERT_TRUE(got[0].seq == seq);
        free(got[0].json);
        ASSERT_EQ_INT(s->ops->sync(s, &err), 0);
        ASSERT_EQ_INT(s->ops->events_append(s, sid, one, 0, &r, &err), 0);
        ASSERT_FALSE(r.sync_pending); /* not asked early: the fsync was inside */
        json_decref(r.events);
        ASSERT_EQ_INT(s->ops->events_append(s, sid, one, STORE_APPEND_EARLY, &r, &err), 0);
        json_decref(r.events);
        ASSERT_EQ_INT(s->ops->sync(s, &err), 0);
        s->ops->close(s);
        s = open_store_cfg(&modes[m].cfg);
        ASSERT_EQ_INT(s->ops->events_after(s, sid, 0, got, 4, &err), 3);
        for (int i = 0; i < 3; i++) free(got[i].json);
        close_store(s);
    }
}
