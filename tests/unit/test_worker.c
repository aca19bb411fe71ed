/* Unit tests for the worker's pure logic: SSE framing, the work secret,
 * transient/fatal classification and backoff, the lease keeper, the session
 * runner's reconcile/dedupe/permission gate/idle clock, the state directory,
 * key file permissions. */
#include "test.h"

#include "base/b64.h"
#include "base/cleanup.h"
#include "base/json.h"
#include "worker/api.h"
#include "worker/proto.h"
#include "worker/runner.h"
#include "worker/sse.h"
#include "worker/state.h"
#include "worker/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------- SSE ---------- */

typedef struct {
    char log[4096];
    int n;
} sse_rec;

static int rec_cb(const sse_event *ev, void *arg)
{
    sse_rec *r = arg;
    size_t l = strlen(r->log);
    snprintf(r->log + l, sizeof(r->log) - l, "[%s|%s|%s]", ev->type, ev->data, ev->id);
    r->n++;
    return 0;
}

static void sse_all(const char *in, size_t chunk, char *out, size_t outlen)
{
    sse_rec r = {0};
    sse_parser p;
    sse_init(&p, rec_cb, &r);
    size_t n = strlen(in);
    for (size_t i = 0; i < n; i += chunk) {
        size_t k = n - i < chunk ? n - i : chunk;
        ASSERT_EQ_INT(sse_feed(&p, in + i, k), 0);
    }
    sse_free(&p);
    snprintf(out, outlen, "%s", r.log);
}

TEST(sse_basic_framing_any_chunking)
{
    const char *in = "\xEF\xBB\xBF: comment\n"
                     "event: agent.tool_use\n"
                     "data: {\"a\":1}\n\n"
                     "event: ping\r\ndata: {}\r\n\r\n"
                     "data: line1\rdata: line2\r\rid: 7\n"
                     "event: x\ndata\n\n"
                     "event: noflush\n\n"
                     "data:nospace\n\n";
    const char *want = "[agent.tool_use|{\"a\":1}|][ping|{}|][message|line1\nline2|]"
                       "[x||7][message|nospace|7]";
    for (size_t chunk = 1; chunk <= strlen(in); chunk++) {
        char out[4096];
        sse_all(in, chunk, out, sizeof(out));
        if (strcmp(out, want)) test_fail(__FILE__, __LINE__, "chunk %zu: got %s", chunk, out);
    }
}

TEST(sse_incomplete_event_not_dispatched)
{
    char out[256];
    sse_all("event: a\ndata: 1\n", 3, out, sizeof(out));
    ASSERT_EQ_STR(out, "");
}

TEST(sse_line_limit)
{
    sse_rec r = {0};
    sse_parser p;
    sse_init(&p, rec_cb, &r);
    size_t n = SSE_MAX_LINE + 10;
    char *big = malloc(n);
    memset(big, 'a', n);
    ASSERT_EQ_INT(sse_feed(&p, big, n), -EMSGSIZE);
    free(big);
    sse_free(&p);
}

static int stop_cb(const sse_event *ev, void *arg)
{
    (void)ev;
    (*(int *)arg)++;
    return 5;
}

TEST(sse_callback_stops)
{
    int n = 0;
    sse_parser p;
    sse_init(&p, stop_cb, &n);
    ASSERT_EQ_INT(sse_feed(&p, "data: 1\n\ndata: 2\n\n", 18), 5);
    ASSERT_EQ_INT(n, 1);
    sse_free(&p);
}

/* ---------- secret ---------- */

static char *enc(const char *json, bool url, bool pad)
{
    return b64_encode_alloc(json, strlen(json), url, pad);
}

TEST(secret_decodes_url_unpadded_and_standard)
{
    /* A token whose base64 contains '-'/'_' in url form. */
    const char *json = "{\"sessions_token\":\"sk-shed-req-abc?>>>~~\",\"api_base_url\":\"http://x\"}";
    for (int v = 0; v < 4; v++) {
        _cleanup_free_ char *s = enc(json, v & 1, v & 2);
        char *tok = NULL, *url = NULL;
        ASSERT_EQ_INT(proto_secret_decode(s, &tok, &url, NULL), 0);
        ASSERT_EQ_STR(tok, "sk-shed-req-abc?>>>~~");
        ASSERT_EQ_STR(url, "http://x");
        free(tok);
        free(url);
    }
}

TEST(secret_rejects_bad_input_without_quoting_it)
{
    const char *bad[] = {"", "!!!!", "e30", /* {} */ NULL};
    for (int i = 0; bad[i]; i++) {
        char *tok = NULL;
        shed_err err = {0};
        ASSERT_TRUE(proto_secret_decode(bad[i], &tok, NULL, &err) < 0);
        ASSERT_TRUE(tok == NULL);
    }
    const char *jsons[] = {"[1]", "{\"sessions_token\":\"\"}", "{\"sessions_token\":5}",
                           "{\"sessions_token\":\"a b\"}", "{\"sessions_token\":\"x\\u0000y\"}", NULL};
    for (int i = 0; jsons[i]; i++) {
        _cleanup_free_ char *s = enc(jsons[i], true, false);
        char *tok = NULL;
        shed_err err = {0};
        ASSERT_TRUE(proto_secret_decode(s, &tok, NULL, &err) < 0);
        ASSERT_NOT_CONTAINS(err.msg, s);
    }
    char *tok = NULL;
    ASSERT_TRUE(proto_secret_decode(NULL, &tok, NULL, NULL) < 0);
}

/* ---------- classification, backoff ---------- */

TEST(classification_matches_sdk)
{
    long fatal[] = {400, 401, 403, 404, 412, 413, 422};
    long transient[] = {0, 408, 409, 429, 500, 502, 503, 504, 529};
    for (size_t i = 0; i < ARRAY_SIZE(fatal); i++) ASSERT_TRUE(proto_is_fatal(fatal[i]));
    for (size_t i = 0; i < ARRAY_SIZE(transient); i++) ASSERT_FALSE(proto_is_fatal(transient[i]));
    ASSERT_FALSE(proto_is_fatal(200));
    ASSERT_TRUE(proto_is_success(204));
}

TEST(backoff_doubles_clamps_and_jitters)
{
    ASSERT_EQ_INT(proto_backoff_ms(0, 1000, 60000), 1000);
    ASSERT_EQ_INT(proto_backoff_ms(3, 1000, 60000), 8000);
    ASSERT_EQ_INT(proto_backoff_ms(6, 1000, 60000), 60000);
    ASSERT_EQ_INT(proto_backoff_ms(1000, 1000, 60000), 60000);
    for (int i = 0; i < 1000; i++) {
        int64_t j = proto_apply_jitter(1000);
        ASSERT_TRUE(j > 750 - 1 && j <= 1000);
        int64_t u = proto_jitter(1000, 3000);
        ASSERT_TRUE(u >= 1000 && u < 3000);
    }
}

/* ---------- lease ---------- */

static json_t *hb(const char *last, int ttl, const char *state, bool ext)
{
    return json_pack("{s:s,s:s,s:i,s:s,s:b}", "type", "work_heartbeat", "last_heartbeat", last,
                     "ttl_seconds", ttl, "state", state, "lease_extended", ext);
}

TEST(lease_no_heartbeat_then_echo_and_interval)
{
    lease_t l;
    lease_init(&l, 0);
    ASSERT_EQ_STR(lease_expected(&l), "NO_HEARTBEAT");
    ASSERT_EQ_INT(l.interval_ms, 30000);
    ASSERT_EQ_INT(l.ttl_ms, 90000);
    _cleanup_json_ json_t *r1 = hb("2026-11-27T00:00:01.5Z", 60, "active", true);
    ASSERT_EQ_INT(lease_on_response(&l, 10, r1), LEASE_HELD);
    ASSERT_EQ_STR(lease_expected(&l), "2026-11-27T00:00:01.5Z");
    ASSERT_EQ_INT(l.interval_ms, 30000); /* min(60/2, 30) */
    _cleanup_json_ json_t *r2 = hb("t2", 20, "active", true);
    lease_on_response(&l, 20, r2);
    ASSERT_EQ_INT(l.interval_ms, 10000);
    ASSERT_EQ_STR(lease_expected(&l), "t2");
    _cleanup_json_ json_t *r3 = hb("t3", 1, "active", true);
    lease_on_response(&l, 30, r3);
    ASSERT_EQ_INT(l.interval_ms, 1000); /* max(1 s, ...) */
    _cleanup_json_ json_t *r4 = hb("t4", 600, "active", true);
    lease_on_response(&l, 40, r4);
    ASSERT_EQ_INT(l.interval_ms, 30000);
    ASSERT_EQ_INT(l.ttl_ms, 600000);
}

TEST(lease_stop_states_and_not_extended)
{
    const char *states[] = {"stopping", "stopped"};
    for (int i = 0; i < 2; i++) {
        lease_t l;
        lease_init(&l, 0);
        _cleanup_json_ json_t *r = hb("t", 60, states[i], true);
        ASSERT_EQ_INT(lease_on_response(&l, 1, r), LEASE_END_STOP);
        ASSERT_FALSE(lease_is_lost(&l));
    }
    lease_t l;
    lease_init(&l, 0);
    _cleanup_json_ json_t *r = hb("t", 60, "active", false);
    ASSERT_EQ_INT(lease_on_response(&l, 1, r), LEASE_END_STOP);
}

TEST(lease_412_lost_fatal_rejected_transient_then_assumed_lost)
{
    lease_t l;
    lease_init(&l, 0);
    ASSERT_EQ_INT(lease_on_failure(&l, 5, 412), LEASE_END_LOST);
    ASSERT_TRUE(lease_is_lost(&l));
    /* First reason wins. */
    lease_finish(&l, LEASE_END_DONE);
    ASSERT_EQ_INT(l.end, LEASE_END_LOST);

    lease_init(&l, 0);
    ASSERT_EQ_INT(lease_on_failure(&l, 5, 403), LEASE_END_REJECTED);
    ASSERT_FALSE(lease_is_lost(&l));

    lease_init(&l, 0);
    _cleanup_json_ json_t *r = hb("t", 10, "active", true);
    lease_on_response(&l, 1000, r);
    ASSERT_EQ_INT(lease_on_failure(&l, 5000, 503), LEASE_HELD);
    ASSERT_EQ_INT(lease_on_failure(&l, 9000, 0), LEASE_HELD);
    ASSERT_EQ_INT(lease_on_failure(&l, 11001, 429), LEASE_END_ASSUMED_LOST);
    ASSERT_TRUE(lease_is_lost(&l));
}

/* ---------- runner ---------- */

typedef struct {
    char notes[2048];
} notes_t;

static bool owns(const char *name, void *arg)
{
    (void)arg;
    return worker_owns_tool(name);
}

static void note(runner_note what, json_t *ev, void *arg)
{
    notes_t *n = arg;
    static const char *names[] = {"held", "denied", "confirmed", "unowned", "dropped", "queued"};
    size_t l = strlen(n->notes);
    snprintf(n->notes + l, sizeof(n->notes) - l, "%s:%s ", names[what],
             json_string_value(json_object_get(ev, "id")));
}

static json_t *tool_use(const char *id, const char *name, const char *perm)
{
    json_t *e = json_pack("{s:s,s:s,s:s,s:{}}", "type", "agent.tool_use", "id", id, "name", name,
                          "input");
    if (perm) json_object_set_new(e, "evaluated_permission", json_string(perm));
    return e;
}

static json_t *ev2(const char *type, const char *k, const char *v)
{
    return json_pack("{s:s,s:s}", "type", type, k, v);
}

static char *drain_ids(runner_t *r)
{
    static char buf[512];
    buf[0] = 0;
    json_t *ev;
    while ((ev = runner_next(r))) {
        const char *id = json_string_value(json_object_get(ev, "id"));
        strcat(buf, id);
        strcat(buf, " ");
        runner_call_done(r, id, true, 0);
        json_decref(ev);
    }
    return buf;
}

TEST(runner_reconcile_skips_answered_and_dedupes_stream)
{
    notes_t n = {{0}};
    runner_t *r = runner_new(60000, owns, note, &n);
    runner_history_begin(r);
    json_t *h[] = {tool_use("a", "bash", NULL), tool_use("b", "read", NULL),
                   ev2("user.tool_result", "tool_use_id", "a"), tool_use("c", "write", "allow")};
    for (size_t i = 0; i < ARRAY_SIZE(h); i++) runner_history_event(r, h[i]);
    runner_history_end(r, true, 0);
    /* The stream repeats b (already seen) and brings d. */
    ASSERT_FALSE(runner_stream_event(r, h[1], 0));
    ASSERT_TRUE(runner_is_answered(r, "a"));
    json_t *d = tool_use("d", "grep", NULL);
    runner_stream_event(r, d, 0);
    runner_stream_event(r, d, 0);
    ASSERT_EQ_STR(drain_ids(r), "b c d ");
    /* d is new to the listing: the stream has caught up, so a (answered in
     * the listing) cannot come again on it and is forgotten. */
    ASSERT_FALSE(runner_is_answered(r, "a"));
    ASSERT_TRUE(runner_is_answered(r, "d"));
    for (size_t i = 0; i < ARRAY_SIZE(h); i++) json_decref(h[i]);
    json_decref(d);
    runner_free(r);
}

TEST(runner_failed_listing_dispatches_nothing)
{
    runner_t *r = runner_new(60000, owns, NULL, NULL);
    runner_history_begin(r);
    json_t *a = tool_use("a", "bash", NULL);
    runner_history_event(r, a);
    runner_history_end(r, false, 0);
    ASSERT_TRUE(runner_next(r) == NULL);
    /* A later successful reconcile picks it up (seen was undone). */
    runner_history_begin(r);
    runner_history_event(r, a);
    runner_history_end(r, true, 0);
    ASSERT_EQ_STR(drain_ids(r), "a ");
    json_decref(a);
    runner_free(r);
}

TEST(runner_one_call_at_a_time_and_inflight_not_requeued)
{
    runner_t *r = runner_new(60000, owns, NULL, NULL);
    json_t *a = tool_use("a", "bash", NULL), *b = tool_use("b", "bash", NULL);
    runner_stream_event(r, a, 0);
    runner_stream_event(r, b, 0);
    json_t *x = runner_next(r);
    ASSERT_EQ_STR(json_string_value(json_object_get(x, "id")), "a");
    ASSERT_TRUE(runner_next(r) == NULL); /* a is in flight */
    /* A reconnect's reconcile while a is in flight must not queue it again. */
    runner_history_begin(r);
    runner_history_event(r, a);
    runner_history_event(r, b);
    runner_history_end(r, true, 0);
    runner_call_done(r, "a", true, 0);
    ASSERT_EQ_STR(drain_ids(r), "b ");
    json_decref(x);
    json_decref(a);
    json_decref(b);
    runner_free(r);
}

TEST(runner_permission_gate)
{
    notes_t n = {{0}};
    runner_t *r = runner_new(60000, owns, note, &n);
    json_t *evs[] = {
        tool_use("deny1", "bash", "deny"),
        tool_use("ask1", "bash", "ask"),
        tool_use("ask2", "bash", "ask"),
        tool_use("weird", "bash", "something-new"), /* unknown: held (fail closed) */
        tool_use("allow1", "bash", "allow"),
    };
    for (size_t i = 0; i < ARRAY_SIZE(evs); i++) runner_stream_event(r, evs[i], 0);
    ASSERT_EQ_STR(drain_ids(r), "allow1 ");
    _cleanup_json_ json_t *c1 =
        json_pack("{s:s,s:s,s:s}", "type", "user.tool_confirmation", "tool_use_id", "ask1", "result", "allow");
    _cleanup_json_ json_t *c2 =
        json_pack("{s:s,s:s,s:s}", "type", "user.tool_confirmation", "tool_use_id", "ask2", "result", "deny");
    _cleanup_json_ json_t *c3 = json_pack("{s:s,s:s,s:s}", "type", "user.tool_confirmation",
                                          "tool_use_id", "weird", "result", "maybe");
    runner_stream_event(r, c1, 0);
    runner_stream_event(r, c2, 0);
    runner_stream_event(r, c3, 0);
    ASSERT_EQ_STR(drain_ids(r), "ask1 ");
    ASSERT_TRUE(runner_is_answered(r, "deny1"));
    ASSERT_TRUE(runner_is_answered(r, "ask2"));
    ASSERT_TRUE(runner_is_answered(r, "weird"));
    ASSERT_CONTAINS(n.notes, "denied:deny1");
    ASSERT_CONTAINS(n.notes, "held:ask1");
    ASSERT_CONTAINS(n.notes, "held:weird");
    ASSERT_CONTAINS(n.notes, "denied:ask2");
    ASSERT_EQ_INT(runner_get_stats(r).executed, 2);
    for (size_t i = 0; i < ARRAY_SIZE(evs); i++) json_decref(evs[i]);
    runner_free(r);
}

TEST(runner_confirmation_in_history_before_routing)
{
    runner_t *r = runner_new(60000, owns, NULL, NULL);
    runner_history_begin(r);
    json_t *a = tool_use("a", "bash", "ask");
    _cleanup_json_ json_t *c =
        json_pack("{s:s,s:s,s:s}", "type", "user.tool_confirmation", "tool_use_id", "a", "result", "allow");
    runner_history_event(r, a);
    runner_history_event(r, c);
    runner_history_end(r, true, 0);
    ASSERT_EQ_STR(drain_ids(r), "a ");
    json_decref(a);
    runner_free(r);
}

TEST(runner_unknown_tools_left_pending)
{
    notes_t n = {{0}};
    runner_t *r = runner_new(60000, owns, note, &n);
    json_t *a = tool_use("a", "web_search", NULL);
    /* A custom tool is the app's, even when it is called "bash". */
    _cleanup_json_ json_t *c = json_pack("{s:s,s:s,s:s,s:{}}", "type", "agent.custom_tool_use", "id",
                                         "c", "name", "bash", "input");
    runner_stream_event(r, a, 0);
    runner_stream_event(r, c, 0);
    ASSERT_TRUE(runner_next(r) == NULL);
    ASSERT_FALSE(runner_is_answered(r, "a"));
    ASSERT_CONTAINS(n.notes, "unowned:a");
    ASSERT_CONTAINS(n.notes, "unowned:c");
    json_decref(a);
    runner_free(r);
}

TEST(runner_idle_clock)
{
    runner_t *r = runner_new(1000, owns, NULL, NULL);
    ASSERT_EQ_INT(runner_idle_deadline(r), -1);
    _cleanup_json_ json_t *idle = json_pack("{s:s,s:{s:s}}", "type", "session.status_idle",
                                            "stop_reason", "type", "end_turn");
    _cleanup_json_ json_t *ra = json_pack("{s:s,s:{s:s}}", "type", "session.status_idle",
                                          "stop_reason", "type", "requires_action");
    _cleanup_json_ json_t *msg = json_pack("{s:s}", "type", "user.message");
    runner_stream_event(r, idle, 100);
    ASSERT_EQ_INT(runner_idle_deadline(r), 1100);
    runner_stream_event(r, msg, 200);
    ASSERT_EQ_INT(runner_idle_deadline(r), -1);
    runner_stream_event(r, ra, 300);
    ASSERT_EQ_INT(runner_idle_deadline(r), -1);
    /* A held call defers the clock; its denial starts it fresh. */
    json_t *ask = tool_use("x", "bash", "ask");
    runner_stream_event(r, ask, 400);
    runner_stream_event(r, idle, 500);
    ASSERT_EQ_INT(runner_idle_deadline(r), -1);
    _cleanup_json_ json_t *deny = json_pack("{s:s,s:s,s:s}", "type", "user.tool_confirmation",
                                            "tool_use_id", "x", "result", "deny");
    runner_stream_event(r, deny, 600);
    ASSERT_EQ_INT(runner_idle_deadline(r), 1600);
    /* A running call defers it too. */
    json_t *b = tool_use("b", "bash", NULL);
    runner_stream_event(r, b, 700);
    json_t *x = runner_next(r);
    runner_stream_event(r, idle, 800);
    ASSERT_EQ_INT(runner_idle_deadline(r), -1);
    runner_call_done(r, "b", true, 900);
    ASSERT_EQ_INT(runner_idle_deadline(r), 1900);
    /* Disabled with 0. */
    runner_t *r0 = runner_new(0, owns, NULL, NULL);
    runner_stream_event(r0, idle, 1);
    ASSERT_EQ_INT(runner_idle_deadline(r0), -1);
    runner_free(r0);
    json_decref(x);
    json_decref(b);
    json_decref(ask);
    runner_free(r);
}

/* SDK SessionToolRunner: a call of a tool the runner does not own that is
 * confirmed (allow) disarms the idle clock; its owner answers it. */
TEST(runner_confirmed_unowned_call_disarms_idle_clock)
{
    runner_t *r = runner_new(1000, owns, NULL, NULL);
    _cleanup_json_ json_t *idle = json_pack("{s:s,s:{s:s}}", "type", "session.status_idle",
                                            "stop_reason", "type", "end_turn");
    _cleanup_json_ json_t *ask = tool_use("m", "mcp_thing", "ask");
    runner_stream_event(r, ask, 100);
    runner_stream_event(r, idle, 200);
    ASSERT_EQ_INT(runner_idle_deadline(r), -1); /* held: armed later */
    _cleanup_json_ json_t *allow = json_pack("{s:s,s:s,s:s}", "type", "user.tool_confirmation",
                                             "tool_use_id", "m", "result", "allow");
    runner_stream_event(r, allow, 300);
    ASSERT_EQ_INT(runner_idle_deadline(r), -1);
    ASSERT_TRUE(runner_next(r) == NULL);
    /* A call of ours confirmed the same way runs and then arms the clock. */
    _cleanup_json_ json_t *ask2 = tool_use("b", "bash", "ask");
    runner_stream_event(r, ask2, 400);
    runner_stream_event(r, idle, 500);
    _cleanup_json_ json_t *allow2 = json_pack("{s:s,s:s,s:s}", "type", "user.tool_confirmation",
                                              "tool_use_id", "b", "result", "allow");
    runner_stream_event(r, allow2, 600);
    json_t *x = runner_next(r);
    ASSERT_TRUE(x != NULL);
    ASSERT_EQ_INT(runner_idle_deadline(r), -1);
    runner_call_done(r, "b", true, 700);
    ASSERT_EQ_INT(runner_idle_deadline(r), 1700);
    json_decref(x);
    runner_free(r);
}

/* SDK core client retryRequest: retry-after-ms, else retry-after in seconds
 * or as an HTTP date; zero, negative, past or unparsable values are no
 * request. shed clamps what it honours to PROTO_RETRY_AFTER_MAX_MS. */
TEST(retry_after_header_parsing)
{
    bool ms = false;
#define RA(s, now) proto_retry_after_header(s, strlen(s), now, &ms)
    ASSERT_EQ_INT(RA("Retry-After: 3\r\n", 0), 3000);
    ASSERT_TRUE(!ms);
    ASSERT_EQ_INT(RA("retry-after:2.5\r\n", 0), 2500);
    ASSERT_EQ_INT(RA("retry-after-ms: 1500\r\n", 0), 1500);
    ASSERT_TRUE(ms);
    ASSERT_EQ_INT(RA("RETRY-AFTER-MS: 0.4\r\n", 0), 1);
    ASSERT_EQ_INT(RA("Retry-After: 0\r\n", 0), -1);
    ASSERT_EQ_INT(RA("Retry-After: -4\r\n", 0), -1);
    ASSERT_EQ_INT(RA("Retry-After: soon\r\n", 0), -1);
    ASSERT_EQ_INT(RA("Retry-After: 3x\r\n", 0), -1);
    ASSERT_EQ_INT(RA("Retry-After:\r\n", 0), -1);
    ASSERT_EQ_INT(RA("Retry-After-Ms: Wed, 21 Oct 2015 07:28:00 GMT\r\n", 0), -1);
    ASSERT_EQ_INT(RA("X-Retry-After: 3\r\n", 0), -1);
    ASSERT_EQ_INT(RA("Retry-After: 86400\r\n", 0), PROTO_RETRY_AFTER_MAX_MS);
    /* 1445412480 = Wed, 21 Oct 2015 07:28:00 GMT */
    ASSERT_EQ_INT(RA("Retry-After: Wed, 21 Oct 2015 07:28:00 GMT\r\n", 1445412480 - 7), 7000);
    ASSERT_EQ_INT(RA("Retry-After: Wed, 21 Oct 2015 07:28:00 GMT\r\n", 1445412480 + 7), -1);
#undef RA
    ASSERT_EQ_INT(proto_retry_wait(1000, 0), 1000);
    ASSERT_EQ_INT(proto_retry_wait(1000, 5000), 5000);
    ASSERT_EQ_INT(proto_retry_wait(8000, 5000), 8000);
    ASSERT_EQ_INT(proto_retry_wait(10, 999999), PROTO_RETRY_AFTER_MAX_MS);
}

/* SDK SessionToolRunner toSessionContent. */
TEST(result_content_shaped_like_the_sdk)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"[]", "[{\"type\": \"text\", \"text\": \"(no output)\"}]"},
        {"null", "[{\"type\": \"text\", \"text\": \"(no output)\"}]"},
        {"[{\"type\":\"text\",\"text\":\"\"}]", "[{\"type\": \"text\", \"text\": \"(no output)\"}]"},
        {"[{\"type\":\"text\"}]", "[{\"type\": \"text\", \"text\": \"(no output)\"}]"},
        {"[{\"type\":\"text\",\"text\":\"hi\"}]", "[{\"type\": \"text\", \"text\": \"hi\"}]"},
        {"[{\"type\":\"image\",\"source\":{}}]", "[{\"type\": \"image\", \"source\": {}}]"},
        {"[{\"type\":\"weird\",\"x\":1}]", "[{\"type\": \"text\", \"text\": \"{\\\"type\\\":\\\"weird\\\",\\\"x\\\":1}\"}]"},
        {"[3]", "[{\"type\": \"text\", \"text\": \"3\"}]"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        _cleanup_json_ json_t *in = json_loads(cases[i].in, JSON_DECODE_ANY, NULL);
        _cleanup_json_ json_t *out = proto_result_content(in);
        ASSERT_TRUE(out != NULL);
        _cleanup_free_ char *d = json_dumps(out, JSON_PRESERVE_ORDER);
        ASSERT_EQ_STR(d, cases[i].out);
    }
}

TEST(runner_idle_armed_by_history_end_turn)
{
    runner_t *r = runner_new(1000, owns, NULL, NULL);
    _cleanup_json_ json_t *idle = json_pack("{s:s,s:{s:s}}", "type", "session.status_idle",
                                            "stop_reason", "type", "end_turn");
    json_t *a = tool_use("a", "bash", NULL);
    _cleanup_json_ json_t *res = ev2("user.tool_result", "tool_use_id", "a");
    runner_history_begin(r);
    runner_history_event(r, a);
    runner_history_event(r, res);
    runner_history_event(r, idle);
    runner_history_end(r, true, 50);
    ASSERT_EQ_INT(runner_idle_deadline(r), 1050);
    ASSERT_TRUE(runner_next(r) == NULL);
    json_decref(a);
    runner_free(r);
}

TEST(runner_terminated_session_and_threads)
{
    runner_t *r = runner_new(1000, owns, NULL, NULL);
    json_t *a = tool_use("a", "bash", "ask");
    json_object_set_new(a, "session_thread_id", json_string("th1"));
    runner_stream_event(r, a, 0);
    _cleanup_json_ json_t *tt = ev2("session.thread_status_terminated", "session_thread_id", "th1");
    runner_stream_event(r, tt, 0);
    json_t *b = tool_use("b", "bash", NULL);
    json_object_set_new(b, "session_thread_id", json_string("th1"));
    runner_stream_event(r, b, 0);
    ASSERT_TRUE(runner_next(r) == NULL);
    _cleanup_json_ json_t *term = json_pack("{s:s}", "type", "session.status_terminated");
    ASSERT_TRUE(runner_stream_event(r, term, 0));
    json_decref(a);
    json_decref(b);
    runner_free(r);
}

/* A session that terminated before the stream opened: only its history says
 * so (the stream never replays it), and that ends the session. */
TEST(runner_history_shows_session_ended)
{
    runner_t *r = runner_new(1000, owns, NULL, NULL);
    runner_history_begin(r);
    json_t *a = tool_use("a", "bash", NULL);
    runner_history_event(r, a);
    runner_history_end(r, true, 0);
    ASSERT_TRUE(!runner_ended(r));
    runner_history_begin(r);
    runner_history_event(r, a);
    _cleanup_json_ json_t *term = json_pack("{s:s,s:s}", "type", "session.status_terminated", "id", "sevt_t");
    runner_history_event(r, term);
    runner_history_end(r, true, 0);
    ASSERT_TRUE(runner_ended(r));
    json_decref(a);
    runner_free(r);
}

static json_t *result_ev(const char *evid, const char *tid)
{
    return json_pack("{s:s,s:s,s:s}", "type", "user.tool_result", "id", evid, "tool_use_id", tid);
}

/* A long session: every call's id is forgotten once its result came back on
 * the stream, so the runner's id sets stay the size of the open calls. */
TEST(runner_forgets_answered_ids_memory_bounded)
{
    runner_t *r = runner_new(60000, owns, NULL, NULL);
    runner_history_begin(r);
    runner_history_end(r, true, 0);
    char id[32], evid[32];
    long max_ids = 0, max_bytes = 0;
    for (int i = 0; i < 20000; i++) {
        snprintf(id, sizeof(id), "toolu_%d", i);
        snprintf(evid, sizeof(evid), "sevt_r%d", i);
        json_t *u = tool_use(id, i % 2 ? "bash" : "read", NULL), *res = result_ev(evid, id);
        runner_stream_event(r, u, i);
        json_t *x = runner_next(r);
        ASSERT_TRUE(x != NULL);
        ASSERT_EQ_STR(json_string_value(json_object_get(x, "id")), id);
        /* Half the time the result comes on the stream before the post
         * returns: forgotten only once the call has left the runner. */
        if (i % 2) runner_stream_event(r, res, i);
        ASSERT_TRUE(runner_is_answered(r, id) == (i % 2 == 1));
        runner_call_done(r, id, true, i);
        ASSERT_TRUE(runner_is_answered(r, id) == (i % 2 == 0));
        if (i % 2 == 0) runner_stream_event(r, res, i);
        ASSERT_FALSE(runner_is_answered(r, id));
        runner_stats st = runner_get_stats(r);
        if (st.ids > max_ids) max_ids = st.ids;
        if (st.id_bytes > max_bytes) max_bytes = st.id_bytes;
        json_decref(x);
        json_decref(u);
        json_decref(res);
    }
    ASSERT_EQ_INT(runner_get_stats(r).executed, 20000);
    ASSERT_EQ_INT(runner_get_stats(r).ids, 0);
    ASSERT_TRUE(max_ids <= 3);
    ASSERT_TRUE(max_bytes <= 3 * 16 * 8);
    runner_free(r);
}

/* A reconnect's listing shows answered calls; they are kept (a call emitted
 * after the stream opened may still arrive on it) until the stream brings
 * an event the listing did not have, then forgotten. Never run again, also
 * when a later listing shows them once more. */
TEST(runner_listing_ids_kept_until_stream_catches_up)
{
    runner_t *r = runner_new(60000, owns, NULL, NULL);
    char id[32], evid[32];
    json_t *hist = json_array();
    for (int i = 0; i < 1000; i++) {
        snprintf(id, sizeof(id), "toolu_%d", i);
        snprintf(evid, sizeof(evid), "sevt_r%d", i);
        json_array_append_new(hist, tool_use(id, "bash", NULL));
        json_array_append_new(hist, result_ev(evid, id));
    }
    json_array_append_new(hist, tool_use("open1", "bash", NULL));
    size_t i;
    json_t *ev;
    runner_history_begin(r);
    json_array_foreach(hist, i, ev) runner_history_event(r, ev);
    runner_history_end(r, true, 0);
    ASSERT_EQ_STR(drain_ids(r), "open1 ");
    ASSERT_TRUE(runner_get_stats(r).ids >= 2000);
    /* The stream's copies of listed events (the overlap): nothing runs. */
    for (i = 1900; i < json_array_size(hist); i++) runner_stream_event(r, json_array_get(hist, i), 0);
    ASSERT_TRUE(runner_next(r) == NULL);
    ASSERT_FALSE(runner_is_answered(r, "toolu_999")); /* its result came on the stream */
    ASSERT_TRUE(runner_is_answered(r, "toolu_100"));  /* only listed: kept */
    /* open1's result, new to the listing: caught up. */
    _cleanup_json_ json_t *r1 = result_ev("sevt_open1", "open1");
    runner_stream_event(r, r1, 0);
    ASSERT_FALSE(runner_is_answered(r, "toolu_100"));
    ASSERT_EQ_INT(runner_get_stats(r).ids, 0);
    ASSERT_TRUE(runner_get_stats(r).id_bytes == 0);
    /* A later reconcile lists everything again: still nothing to run. */
    json_array_append(hist, r1);
    runner_history_begin(r);
    json_array_foreach(hist, i, ev) runner_history_event(r, ev);
    runner_history_end(r, true, 0);
    ASSERT_TRUE(runner_next(r) == NULL);
    ASSERT_EQ_INT(runner_get_stats(r).executed, 1);
    json_decref(hist);
    runner_free(r);
}

/* A result that arrives while its call waits in the queue: the call is not
 * run, and its id is forgotten when it leaves the queue. A held call is never
 * forgotten (a later "allow" must not run a call answered elsewhere). */
TEST(runner_result_while_queued_or_held)
{
    runner_t *r = runner_new(60000, owns, NULL, NULL);
    json_t *a = tool_use("a", "bash", NULL), *b = tool_use("b", "bash", NULL), *c = tool_use("c", "bash", "ask");
    runner_stream_event(r, a, 0);
    runner_stream_event(r, b, 0);
    runner_stream_event(r, c, 0);
    json_t *x = runner_next(r); /* a in flight, b queued, c held */
    _cleanup_json_ json_t *rb = result_ev("e_rb", "b");
    _cleanup_json_ json_t *rc = result_ev("e_rc", "c");
    runner_stream_event(r, rb, 0);
    runner_stream_event(r, rc, 0);
    ASSERT_TRUE(runner_is_answered(r, "b"));
    ASSERT_TRUE(runner_is_answered(r, "c"));
    runner_call_done(r, "a", true, 0);
    ASSERT_TRUE(runner_next(r) == NULL); /* b answered elsewhere: skipped */
    ASSERT_FALSE(runner_is_answered(r, "b"));
    _cleanup_json_ json_t *allow =
        json_pack("{s:s,s:s,s:s}", "type", "user.tool_confirmation", "tool_use_id", "c", "result", "allow");
    runner_stream_event(r, allow, 0);
    ASSERT_TRUE(runner_next(r) == NULL);
    ASSERT_EQ_INT(runner_get_stats(r).executed, 1);
    json_decref(x);
    json_decref(a);
    json_decref(b);
    json_decref(c);
    runner_free(r);
}

/* A model of the session's event log and of the worker around the runner:
 * streams that open at the log's end and deliver it in order, histories
 * listed after the stream opened (stream events buffered meanwhile, as
 * worker.c does), listings that fail midway, disconnects that lose events
 * to the next listing, results posted after a call ran (the stream may
 * bring them before the post returns). Over random schedules: no call runs
 * twice, every call runs once by the end, and the runner ends up holding
 * no id. */
typedef struct {
    json_t *log;    /* the server's events */
    json_t *buffer; /* stream events that arrived while listing */
    bool connected, listing;
    size_t pos;     /* next log index the stream delivers */
    int *runs;
    bool *told;   /* the runner was given the call's result (stream or listing) */
    bool *others; /* another client answered the call */
    runner_t *r;
    json_t *running;
    bool posted;
    uint64_t rng;
} sim_t;

static uint32_t sim_rand(sim_t *m, uint32_t n)
{
    m->rng = m->rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(m->rng >> 33) % n;
}

static void sim_feed(sim_t *m, json_t *ev, bool history)
{
    const char *tid = json_string_value(json_object_get(ev, "tool_use_id"));
    if (tid) m->told[atoi(tid + 1)] = true;
    if (history)
        runner_history_event(m->r, ev);
    else
        runner_stream_event(m->r, ev, 0);
}

static void sim_deliver(sim_t *m, json_t *ev)
{
    if (m->listing)
        json_array_append(m->buffer, ev);
    else
        sim_feed(m, ev, false);
}

static void sim_list(sim_t *m, bool fail)
{
    size_t n = json_array_size(m->log);
    if (fail) n = sim_rand(m, (uint32_t)n + 1);
    runner_history_begin(m->r);
    for (size_t i = 0; i < n; i++) sim_feed(m, json_array_get(m->log, i), true);
    runner_history_end(m->r, !fail, 0);
    m->listing = false;
    size_t i;
    json_t *ev;
    json_array_foreach(m->buffer, i, ev) sim_feed(m, ev, false);
    json_array_clear(m->buffer);
}

static void sim_step(sim_t *m, int *calls, int max_calls, bool quiet)
{
    char id[32];
    switch (sim_rand(m, 10)) {
    case 0: /* the agent calls a tool */
        if (quiet || *calls >= max_calls) break;
        snprintf(id, sizeof(id), "t%d", (*calls)++);
        json_array_append_new(m->log, tool_use(id, "bash", NULL));
        break;
    case 1: case 2: /* the stream delivers */
        if (m->connected && m->pos < json_array_size(m->log)) sim_deliver(m, json_array_get(m->log, m->pos++));
        break;
    case 3: /* the running call ends; its result is posted (the server has it) */
        if (m->running && !m->posted) {
            const char *tid = json_string_value(json_object_get(m->running, "id"));
            snprintf(id, sizeof(id), "r_%s", tid);
            json_array_append_new(m->log, result_ev(id, tid));
            m->posted = true;
        }
        break;
    case 4: /* the post returns */
        if (m->running && m->posted) {
            runner_call_done(m->r, json_string_value(json_object_get(m->running, "id")), true, 0);
            json_decref(m->running);
            m->running = NULL;
            m->posted = false;
        }
        break;
    case 5: /* the history listing after a (re)connect, now and then failing */
        if (m->connected && m->listing) sim_list(m, !quiet && sim_rand(m, 4) == 0);
        break;
    case 6: /* the stream drops; events until the next one opens are not streamed */
        if (!quiet && m->connected && sim_rand(m, 3) == 0) m->connected = m->listing = false, json_array_clear(m->buffer);
        break;
    case 7: /* it opens again at the log's end, then lists the history */
        if (!m->connected) m->connected = m->listing = true, m->pos = json_array_size(m->log);
        break;
    case 8: /* another client answers a call (its owner, a user) */
        if (!quiet && *calls > 0 && sim_rand(m, 4) == 0) {
            int k = (int)sim_rand(m, (uint32_t)*calls);
            snprintf(id, sizeof(id), "t%d", k);
            char evid[40];
            snprintf(evid, sizeof(evid), "o_%s_%u", id, sim_rand(m, 1000000));
            json_array_append_new(m->log, result_ev(evid, id));
            m->others[k] = true;
        }
        break;
    default: /* a failed listing is read again while the stream stays up */
        if (!quiet && m->connected && !m->listing && sim_rand(m, 6) == 0) m->listing = true;
        break;
    }
    if (!m->running && (m->running = runner_next(m->r))) {
        const char *tid = json_string_value(json_object_get(m->running, "id"));
        /* Never one whose result the runner has been given. */
        if (m->told[atoi(tid + 1)]) fprintf(stderr, "call %s handed out after its result\n", tid);
        ASSERT_FALSE(m->told[atoi(tid + 1)]);
        m->runs[atoi(tid + 1)]++;
    }
}

TEST(runner_forgetting_never_runs_a_call_twice_model)
{
    enum { CALLS = 60, SEEDS = 150 };
    for (int seed = 1; seed <= SEEDS; seed++) {
        int runs[CALLS + 1] = {0}, calls = 0;
        bool told[CALLS + 1] = {0}, others[CALLS + 1] = {0};
        sim_t m = {.log = json_array(), .buffer = json_array(), .runs = runs, .told = told, .others = others,
                   .rng = (uint64_t)seed};
        m.r = runner_new(60000, owns, NULL, NULL);
        for (int step = 0; step < 1500; step++) sim_step(&m, &calls, CALLS, false);
        /* Quiet end: no more drops; everything is delivered and answered. */
        for (int step = 0; step < 4000; step++) sim_step(&m, &calls, CALLS, true);
        /* One last call, new to every listing: once the stream brings it,
         * it has caught up and the listed ids go too. */
        if (!m.connected) m.connected = m.listing = true, m.pos = json_array_size(m.log);
        if (m.listing) sim_list(&m, false);
        calls = CALLS;
        json_t *last = tool_use("t60", "bash", NULL);
        json_array_append(m.log, last);
        for (int step = 0; step < 4000; step++) sim_step(&m, &calls, CALLS, true);
        json_decref(last);
        for (int k = 0; k <= CALLS; k++) {
            /* Once, or not at all when another client answered it first. */
            if (runs[k] != 1 && !(others[k] && runs[k] == 0))
                fprintf(stderr, "seed %d: call t%d ran %d times\n", seed, k, runs[k]);
            ASSERT_TRUE(runs[k] == 1 || (others[k] && runs[k] == 0));
        }
        ASSERT_TRUE(m.running == NULL);
        ASSERT_EQ_INT(runner_get_stats(m.r).ids, 0);
        runner_free(m.r);
        json_decref(m.log);
        json_decref(m.buffer);
    }
}

/* ---------- state dir ---------- */

TEST(state_call_records_and_ids)
{
    char dir[] = "/tmp/shed-wstate-XXXXXX";
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    wstate_t *s = NULL;
    ASSERT_EQ_INT(wstate_open(dir, &s, NULL), 0);
    char *ws = NULL;
    ASSERT_EQ_INT(wstate_session_workspace(s, "sesn_1", &ws, NULL), 0);
    struct stat st;
    ASSERT_EQ_INT(stat(ws, &st), 0);
    ASSERT_TRUE(S_ISDIR(st.st_mode));
    json_t *res = NULL;
    ASSERT_EQ_INT(wstate_call_get(s, "sesn_1", "sevt_1", &res), WSTATE_CALL_NONE);
    ASSERT_EQ_INT(wstate_call_started(s, "sesn_1", "sevt_1", NULL), 0);
    ASSERT_EQ_INT(wstate_call_get(s, "sesn_1", "sevt_1", &res), WSTATE_CALL_STARTED);
    _cleanup_json_ json_t *r = json_pack("{s:b,s:[{s:s,s:s}]}", "is_error", 0, "content", "type",
                                         "text", "text", "ok");
    ASSERT_EQ_INT(wstate_call_result(s, "sesn_1", "sevt_1", r, NULL), 0);
    ASSERT_EQ_INT(wstate_call_get(s, "sesn_1", "sevt_1", &res), WSTATE_CALL_RESULT);
    ASSERT_TRUE(json_equal(res, r));
    json_decref(res);
    char tmpf[600];
    snprintf(tmpf, sizeof(tmpf), "%s/sessions/sesn_1/calls/sevt_2.tmp", dir);
    int tfd = open(tmpf, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    close(tfd);
    ASSERT_EQ_INT(wstate_sweep_tmp(s), 1);
    ASSERT_TRUE(access(tmpf, F_OK) < 0);
    ASSERT_EQ_INT(wstate_call_clear(s, "sesn_1", "sevt_1"), 0);
    ASSERT_EQ_INT(wstate_call_get(s, "sesn_1", "sevt_1", &res), WSTATE_CALL_NONE);
    /* Agent/server-chosen ids never become paths. */
    ASSERT_FALSE(wstate_id_ok("../x"));
    ASSERT_FALSE(wstate_id_ok("a/b"));
    ASSERT_FALSE(wstate_id_ok(""));
    ASSERT_FALSE(wstate_id_ok(".."));
    ASSERT_TRUE(wstate_call_started(s, "sesn_1", "../../etc", NULL) < 0);
    ASSERT_TRUE(wstate_session_workspace(s, "..", &ws, NULL) < 0);
    /* A symlink in the workspace is removed, never followed. */
    char outside[300];
    snprintf(outside, sizeof(outside), "%s/outside", dir);
    ASSERT_EQ_INT(mkdir(outside, 0700), 0);
    char keep[400];
    snprintf(keep, sizeof(keep), "%s/keep", outside);
    int fd = open(keep, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    close(fd);
    char link[600];
    snprintf(link, sizeof(link), "%s/evil", ws);
    ASSERT_EQ_INT(symlink(outside, link), 0);
    ASSERT_EQ_INT(wstate_session_remove(s, "sesn_1", NULL), 0);
    ASSERT_EQ_INT(access(keep, F_OK), 0);
    ASSERT_TRUE(access(ws, F_OK) < 0);
    free(ws);
    _cleanup_json_ json_t *items = json_pack("[{s:s,s:s}]", "work_id", "w1", "session_id", "s1");
    ASSERT_EQ_INT(wstate_write_items(s, "wid", items, NULL), 0);
    _cleanup_json_ json_t *back = wstate_read_items(s);
    ASSERT_TRUE(json_equal(json_object_get(back, "items"), items));
    wstate_close(s);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    ASSERT_EQ_INT(system(cmd), 0);
}

/* ---------- key file ---------- */

TEST(key_file_permissions_and_reload)
{
    char path[] = "/tmp/shed-key-XXXXXX";
    int fd = mkstemp(path);
    ASSERT_TRUE(fd >= 0);
    ASSERT_EQ_INT(write(fd, "sk-shed-env-one\n", 16), 16);
    close(fd);
    chmod(path, 0640);
    api_keyring k = {0};
    shed_err err = {0};
    ASSERT_EQ_INT(api_keyring_load_file(&k, path, &err), -EPERM);
    ASSERT_CONTAINS(err.msg, "chmod 600");
    ASSERT_NOT_CONTAINS(err.msg, "sk-shed-env-one");
    chmod(path, 0600);
    ASSERT_EQ_INT(api_keyring_load_file(&k, path, &err), 0);
    ASSERT_EQ_STR(k.key, "sk-shed-env-one");
    ASSERT_EQ_INT(api_keyring_reload(&k, &err), 0);
    fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    ASSERT_EQ_INT(write(fd, "sk-shed-env-two", 15), 15);
    close(fd);
    int64_t gen = k.generation;
    ASSERT_EQ_INT(api_keyring_reload(&k, &err), 1);
    ASSERT_EQ_STR(k.key, "sk-shed-env-two");
    ASSERT_TRUE(k.generation > gen);
    chmod(path, 0604);
    ASSERT_EQ_INT(api_keyring_reload(&k, &err), -EPERM);
    ASSERT_EQ_STR(k.key, "sk-shed-env-two"); /* the old key stays in use */
    api_keyring_free(&k);
    unlink(path);
}

TEST(escape_path_segments)
{
    _cleanup_free_ char *e = api_escape("a b/c?d&e=f~_.-");
    ASSERT_EQ_STR(e, "a%20b%2Fc%3Fd%26e%3Df~_.-");
}
