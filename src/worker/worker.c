/* The worker: poll loop, per-item lease keeper, session runner driver,
 * sandbox calls, result posting, shutdown. One thread, one event loop; all
 * HTTP through api.c (http.c: its own HTTP/1.1 client), all sandbox I/O through sbx.c.
 * The ordering rules of work-api.md §2.5/§2.6/§3.4 are marked where they
 * apply. Never logs a key, token or secret; never runs a tool outside a
 * sandbox; never runs a call again whose result the session already has.
 */
#include "worker/worker.h"

#include "base/cleanup.h"
#include "base/clock.h"
#include "base/id.h"
#include "base/json.h"
#include "base/log.h"
#include "egress/egress.h"
#include "obs/obs.h"
#include "sandbox/sandbox.h"
#include "worker/admin.h"
#include "worker/memtrim.h"
#include "worker/pool.h"
#include "worker/proto.h"
#include "worker/runner.h"
#include "worker/sbx.h"
#include "worker/session_files.h"
#include "worker/state.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/sysinfo.h>
#include <sys/un.h>
#include <unistd.h>

#define POLL_TIMEOUT_MS      (PROTO_POLL_BLOCK_MS + 15000)
#define CALL_TIMEOUT_MS      30000
#define STREAM_STALL_MS      45000 /* server pings at least every 15 s */
#define CANCEL_WAIT_MS       5000  /* wait for a cancelled call's result */
#define TEARDOWN_POST_MS     10000 /* bound on posting a cancelled call's result at teardown */
#define HB_QUICK_RETRIES     2     /* the SDK client's maxRetries, for a heartbeat */
#define LIST_PAGE            "limit=1000"
#define RESTART_MSG          "worker restarted while this call was running; it may have partially run"

typedef struct worker worker_t;
typedef struct wsess wsess_t;

enum phase {
    PH_WAIT_PREV,  /* acked + heartbeating; an earlier item of the same session is still ending */
    PH_RETRIEVE,
    PH_RUN,
    PH_ENDING,     /* cancelling the in-flight call / posting its result */
    PH_STOPPING,   /* sandbox gone; posting stop */
};

struct wsess {
    worker_t *w;
    wsess_t *next;
    char work_id[ID_MAX * 2];
    char session_id[ID_MAX * 2];
    char *token;           /* sessions token from the secret (never logged) */
    api_cred cred;
    enum phase phase;
    /* lease */
    lease_t lease;
    uint64_t hb_timer;
    api_call_t *hb_call;
    bool first_beat_done;
    int hb_retries; /* quick retries of the current beat after a transient failure */
    /* retrieve */
    api_call_t *get_call;
    int get_attempt;
    uint64_t get_timer;
    /* events */
    runner_t *runner;
    api_call_t *stream;
    bool stream_open;
    int64_t stream_backoff;
    uint64_t stream_timer;
    api_call_t *list_call;
    bool listing;
    uint64_t list_timer;
    int list_attempt;
    json_t *stream_buffer; /* stream events that arrived while the history was being read */
    bool terminated;
    /* sandbox */
    sbx_t *sb;
    sbx_pending_t *sb_pending;
    int64_t sb_start_ms;
    int sb_attempt;
    uint64_t sb_timer;
    bool wait_destroy; /* the previous sandbox of this session is still going away */
    bool sb_failed;    /* no sandbox could be made: calls get an error result, never run */
    char *workspace;
    /* the one in-flight call */
    json_t *call_ev;
    uint64_t call_seq;
    uint64_t call_timer;
    bool call_cancelled;
    int64_t call_start_ms;
    /* posting its result */
    api_call_t *post_call;
    json_t *post_event;    /* the user.tool_result being posted */
    char post_id[ID_MAX * 2];
    int post_attempt;
    int64_t post_start_ms;
    int64_t post_window_ms;
    uint64_t post_timer;
    /* idle clock */
    uint64_t idle_timer;
    int64_t idle_deadline;
    /* end */
    lease_end end_reason;
    const char *killed; /* admin / max_session when worker_admin_kill ended it (audit) */
    bool post_on_end;      /* post the cancelled call's result (not when the lease is lost) */
    uint64_t end_timer;
    api_call_t *stop_call;
    int stop_attempt;
    uint64_t stop_timer;
    uint64_t finish_timer;
    int64_t started_ms;
    int calls_done;
    const char *kill_reason; /* why the in-flight call was cancelled (metrics/audit) */
    /* skills and memory stores (session_files.c) */
    sfiles_t *files;
    bool files_ended;
    bool files_ready; /* set-up done: the session is retrieved once more, then the runner starts */
    bool clean_end; /* the turn ended (idle) or the session terminated: final memory sync */
};

struct worker {
    worker_config cfg;
    loop_t *loop;
    http_t *http;
    api_t *api;
    pool_t *pool;
    pool_t *files_pool; /* skill extraction and removal */
    egress_t *egress;
    egress_policy *egress_policy;
    audit_t *audit;
    obs_http_t *obs_http;
    json_t *destroying; /* session id -> sandboxes of it still being destroyed */
    uint64_t stats_timer;
    api_call_t *stats_call;
    wstate_t *state;
    sandbox_policy *policy;
    char sandbox_dir[4200]; /* the sandboxes' bookkeeping, under the state dir */
    char worker_id[256];
    wsess_t *sessions;
    int nsessions;
    /* poller */
    api_call_t *poll_call;
    uint64_t poll_timer;
    int poll_attempt;
    int64_t idle_since_ms, idle_report_ms;
    bool shutting_down;
    int signals;
    int sigfd;
    uint64_t shutdown_timer;
    int exit_code;
    int acking; /* acks in flight: they count against --max-sessions */
    struct ack_ctx *acks; /* those acks (their call or retry timer), freed at exit */
    shed_err fatal;
    bool fatal_set;
    /* run_one */
    bool run_done;
    admin_t *admin; /* admin socket and --max-session-seconds (admin.c) */
};

static void sess_end(wsess_t *s, lease_end why);
static void sess_finish_later(wsess_t *s);
static void sess_begin(wsess_t *s);
static void sess_pump(wsess_t *s);
static void sess_finish(wsess_t *s);
static void worker_maybe_poll(worker_t *w);
static void worker_check_done(worker_t *w);
static void worker_shutdown(worker_t *w, const char *why);
static int worker_admin_start(worker_t *w, shed_err *err);
static void sess_stop_tail(wsess_t *s);

bool worker_owns_tool(const char *name)
{
    static const char *const tools[] = {"bash", "read", "write", "edit", "glob", "grep"};
    for (size_t i = 0; i < ARRAY_SIZE(tools); i++)
        if (name && !strcmp(name, tools[i])) return true;
    return false;
}

int worker_default_max_sessions(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    struct sysinfo si;
    long by_mem = 256;
    if (sysinfo(&si) == 0) by_mem = (long)((uint64_t)si.totalram * si.mem_unit / (128ULL << 20));
    long n = (cpus > 0 ? cpus : 1) * 32;
    if (n > by_mem) n = by_mem;
    if (n > 1024) n = 1024;
    return n < 1 ? 1 : (int)n;
}

/* ---------- small helpers ---------- */

static const char *jstr(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* One audit record (a NULL audit log does nothing); fields is stolen. */
static void audit_ev(worker_t *w, const char *event, json_t *fields)
{
    if (w->audit && fields) audit_write(w->audit, event, fields);
    json_decref(fields);
}

static void sessions_gauge(worker_t *w)
{
    metrics_set(obs_m.sessions_active, NULL, w->nsessions);
}

static char *path_fmt(const char *fmt, const char *a, const char *b)
{
    _cleanup_free_ char *ea = api_escape(a), *eb = b ? api_escape(b) : NULL;
    char *p = NULL;
    if (!ea || (b && !eb)) return NULL;
    int rc = b ? asprintf(&p, fmt, ea, eb) : asprintf(&p, fmt, ea);
    return rc < 0 ? NULL : p;
}

static void timer_clear(worker_t *w, uint64_t *t)
{
    if (*t) loop_timer_cancel(w->loop, *t);
    *t = 0;
}

static void write_items(worker_t *w)
{
    if (!w->state) return;
    _cleanup_json_ json_t *items = json_array();
    for (wsess_t *s = w->sessions; s; s = s->next)
        json_array_append_new(items, json_pack("{s:s,s:s}", "work_id", s->work_id, "session_id",
                                               s->session_id));
    shed_err err = {0};
    if (wstate_write_items(w->state, w->worker_id, items, &err) < 0)
        log_warn("record held work items: %s", err.msg);
}

/* ---------- lease keeper (§2.5) ---------- */

static void hb_schedule(wsess_t *s);
static void hb_schedule_in(wsess_t *s, int64_t ms);

static void on_heartbeat(const api_result *r, void *arg)
{
    wsess_t *s = arg;
    worker_t *w = s->w;
    s->hb_call = NULL;
    int64_t now = clock_mono_ms();
    lease_end e;
    if (r->ok && json_is_object(r->json)) {
        e = lease_on_response(&s->lease, now, r->json);
        metrics_inc(obs_m.heartbeats, LV(e == LEASE_END_STOP ? "stopping" : "ok"), 1);
        slog(LOG_DEBUG, s->session_id, s->work_id, "heartbeat ok: state %s, ttl %llds, next in %llds",
             s->lease.state, (long long)(s->lease.ttl_ms / 1000),
             (long long)(s->lease.interval_ms / 1000));
        if (s->lease.beats == 1)
            slog(LOG_INFO, s->session_id, s->work_id, "lease held: first heartbeat ok (ttl %llds)",
                 (long long)(s->lease.ttl_ms / 1000));
    } else {
        e = lease_on_failure(&s->lease, now, r->status);
        metrics_inc(obs_m.heartbeats, LV(lease_is_lost(&s->lease) ? "lease_lost" : "error"), 1);
        if (lease_is_lost(&s->lease)) metrics_inc(obs_m.leases_lost, NULL, 1);
        if (r->status == 412) {
            json_t *cs = json_object_get(json_object_get(json_object_get(r->json, "error"), "details"),
                                         "current_state");
            slog(LOG_ERROR, s->session_id, s->work_id,
                 "lease lost: heartbeat precondition failed (server state %s)",
                 jstr(cs, "state") ? jstr(cs, "state") : "?");
        } else if (e == LEASE_HELD) {
            slog(LOG_WARN, s->session_id, s->work_id, "transient heartbeat failure: %s", r->msg);
        } else {
            slog(LOG_ERROR, s->session_id, s->work_id, "heartbeat: %s: %s", lease_end_name(e),
                 r->msg);
        }
    }
    bool first = !s->first_beat_done;
    s->first_beat_done = true;
    if (e != LEASE_HELD) {
        if (e == LEASE_END_STOP)
            slog(LOG_INFO, s->session_id, s->work_id, "heartbeat signals shutdown (state %s%s)",
                 s->lease.state, s->lease.state[0] ? "" : "?");
        /* A lost lease: the item is someone else's now. Keep no heartbeat. */
        if (s->phase < PH_ENDING) {
            sess_end(s, e);
            return;
        }
        /* Already ending: stop beating; a lost lease cancels the stop. */
        if (lease_is_lost(&s->lease)) s->post_on_end = false;
        return;
    }
    (void)w;
    if (!r->ok && s->hb_retries < HB_QUICK_RETRIES) {
        /* A transient failure: the SDK's client retries the beat twice at
         * once (0.5 s, 1 s, jittered; the server's Retry-After if longer),
         * all within the beat's cut-off, before waiting a whole interval.
         * Waiting the interval alone would leave a lease of ttl = 2
         * intervals renewed only at its very end. */
        int64_t wait = proto_retry_wait(proto_apply_jitter(proto_backoff_ms(s->hb_retries, 500, 8000)),
                                        r->retry_after_ms);
        s->hb_retries++;
        hb_schedule_in(s, wait < s->lease.interval_ms ? wait : s->lease.interval_ms);
    } else {
        s->hb_retries = 0;
        hb_schedule(s);
    }
    if (first && s->phase == PH_RETRIEVE) sess_begin(s);
}

static void hb_fire(loop_t *l, void *arg)
{
    (void)l;
    wsess_t *s = arg;
    worker_t *w = s->w;
    s->hb_timer = 0;
    if (s->hb_call || s->lease.end != LEASE_HELD) return;
    _cleanup_free_ char *path =
        path_fmt("/v1/environments/%s/work/%s/heartbeat", api_environment_id(w->api), s->work_id);
    _cleanup_free_ char *exp = api_escape(lease_expected(&s->lease));
    _cleanup_free_ char *q = NULL;
    if (!path || !exp || asprintf(&q, "expected_last_heartbeat=%s", exp) < 0) {
        hb_schedule(s);
        return;
    }
    shed_err err = {0};
    /* Each heartbeat is cut off after the current interval (SDK). */
    s->hb_call = api_request(w->api, "POST", path, q, NULL, s->cred, false, s->lease.interval_ms,
                             on_heartbeat, s, &err);
    if (!s->hb_call) {
        slog(LOG_WARN, s->session_id, s->work_id, "heartbeat not sent: %s", err.msg);
        hb_schedule(s);
    }
}

static void hb_schedule_in(wsess_t *s, int64_t ms)
{
    timer_clear(s->w, &s->hb_timer);
    if (s->lease.end != LEASE_HELD) return;
    s->hb_timer = loop_timer(s->w->loop, ms, hb_fire, s);
}

static void hb_schedule(wsess_t *s)
{
    hb_schedule_in(s, s->lease.interval_ms);
}

/* ---------- idle clock ---------- */

static void on_idle_timer(loop_t *l, void *arg)
{
    (void)l;
    wsess_t *s = arg;
    s->idle_timer = 0;
    int64_t d = runner_idle_deadline(s->runner);
    if (d < 0) return;
    if (clock_mono_ms() + 5 < d) {
        s->idle_timer = loop_timer(s->w->loop, d - clock_mono_ms(), on_idle_timer, s);
        return;
    }
    slog(LOG_INFO, s->session_id, s->work_id, "session idle after its turn ended; stopping (max idle %llds)",
         (long long)(s->w->cfg.max_idle_ms / 1000));
    s->clean_end = true;
    sess_end(s, LEASE_END_DONE);
}

static void idle_sync(wsess_t *s)
{
    if (!s->runner) return;
    int64_t d = runner_idle_deadline(s->runner);
    if (d == s->idle_deadline && (d < 0 || s->idle_timer)) return;
    timer_clear(s->w, &s->idle_timer);
    s->idle_deadline = d;
    if (d >= 0) s->idle_timer = loop_timer(s->w->loop, d - clock_mono_ms(), on_idle_timer, s);
}

/* ---------- posting results (§3.4 step 7) ---------- */

static void post_send(wsess_t *s);

static void post_finished(wsess_t *s, bool posted)
{
    json_decref(s->post_event);
    s->post_event = NULL;
    timer_clear(s->w, &s->post_timer);
    if (posted) {
        wstate_call_clear(s->w->state, s->session_id, s->post_id);
        s->calls_done++;
    }
    if (s->runner) runner_call_done(s->runner, s->post_id, posted, clock_mono_ms());
    s->post_id[0] = 0;
    if (s->phase == PH_ENDING) {
        sess_end(s, s->end_reason); /* continue the teardown */
        return;
    }
    idle_sync(s);
    sess_pump(s);
}

static void post_retry(loop_t *l, void *arg)
{
    (void)l;
    wsess_t *s = arg;
    s->post_timer = 0;
    post_send(s);
}

static void on_posted(const api_result *r, void *arg)
{
    wsess_t *s = arg;
    s->post_call = NULL;
    /* A 409 the server marks final (x-should-retry: false): the session
     * already has a result for this id and the first one stands (shed
     * serve's answer to a duplicate). Any other 409 is transient, as for
     * the SDK (a lock timeout): retried inside the window. */
    if (r->ok || (r->status == 409 && r->should_retry == 0)) {
        slog(LOG_INFO, s->session_id, s->work_id, "result posted for %s (%lld ms)", s->post_id,
             (long long)(clock_mono_ms() - s->call_start_ms));
        post_finished(s, true);
        return;
    }
    int64_t elapsed = clock_mono_ms() - s->post_start_ms;
    int64_t remaining = s->post_window_ms - elapsed;
    if (r->fatal || remaining <= 0 || (s->phase == PH_ENDING && !s->post_on_end)) {
        slog(LOG_ERROR, s->session_id, s->work_id, "failed to post the result for %s after %d attempts: %s",
             s->post_id, s->post_attempt, r->msg);
        post_finished(s, false);
        return;
    }
    int64_t wait = proto_retry_wait(
        proto_apply_jitter(proto_backoff_ms(s->post_attempt - 1, PROTO_SEND_BACKOFF_BASE,
                                            PROTO_SEND_BACKOFF_CAP)),
        r->retry_after_ms);
    if (wait > remaining) wait = remaining;
    slog(LOG_WARN, s->session_id, s->work_id, "posting the result for %s failed (attempt %d): %s; retrying in %lld ms",
         s->post_id, s->post_attempt, r->msg, (long long)wait);
    s->post_timer = loop_timer(s->w->loop, wait, post_retry, s);
}

static void post_send(wsess_t *s)
{
    worker_t *w = s->w;
    s->post_attempt++;
    _cleanup_free_ char *path = path_fmt("/v1/sessions/%s/events", s->session_id, NULL);
    _cleanup_json_ json_t *body = json_pack("{s:[O]}", "events", s->post_event);
    shed_err err = {0};
    if (path && body)
        s->post_call = api_request(w->api, "POST", path, NULL, body, s->cred, false, CALL_TIMEOUT_MS,
                                   on_posted, s, &err);
    if (!s->post_call) {
        api_result r = {.status = 0};
        snprintf(r.msg, sizeof(r.msg), "%s", err.msg[0] ? err.msg : "out of memory");
        on_posted(&r, s);
    }
}

/* Post `result` ({is_error, content}) for the call `ev`. */
static void post_result(wsess_t *s, json_t *ev, json_t *result)
{
    const char *id = jstr(ev, "id");
    snprintf(s->post_id, sizeof(s->post_id), "%s", id ? id : "");
    /* Shaped like the SDK's (never an empty text block or no block). */
    json_t *content = proto_result_content(json_object_get(result, "content"));
    s->post_event = content ? json_pack("{s:s,s:s,s:b,s:o}", "type", "user.tool_result", "tool_use_id",
                                        s->post_id, "is_error",
                                        json_is_true(json_object_get(result, "is_error")), "content",
                                        content)
                            : NULL;
    s->post_attempt = 0;
    s->post_start_ms = clock_mono_ms();
    /* Retry inside the lease window (SDK: the live lease TTL). */
    s->post_window_ms = s->phase == PH_ENDING ? TEARDOWN_POST_MS : s->lease.ttl_ms;
    post_send(s);
}

static json_t *error_result(const char *text)
{
    return json_pack("{s:b,s:[{s:s,s:s}]}", "is_error", 1, "content", "type", "text", "text", text);
}

/* ---------- running calls in the sandbox ---------- */

static void call_complete(wsess_t *s, json_t *result)
{
    timer_clear(s->w, &s->call_timer);
    json_t *ev = s->call_ev;
    s->call_ev = NULL;
    const char *id = jstr(ev, "id");
    const char *name = jstr(ev, "name");
    bool is_error = json_is_true(json_object_get(result, "is_error"));
    int64_t ms = clock_mono_ms() - s->call_start_ms;
    slog(LOG_INFO, s->session_id, s->work_id, "call %s (%s) finished%s in %lld ms", id, name,
         is_error ? " with an error" : "", (long long)ms);
    const char *outcome = s->kill_reason ? (!strcmp(s->kill_reason, "timeout") ? "timeout" : "killed")
                                         : (is_error ? "error" : "ok");
    metrics_inc(obs_m.tool_calls, LV(name, outcome), 1);
    metrics_observe(obs_m.tool_call_seconds, LV(name), (double)ms / 1000.0);
    if (s->kill_reason) metrics_inc(obs_m.kills, LV(s->kill_reason), 1);
    if (s->w->audit) {
        size_t out_bytes = 0;
        size_t bi;
        json_t *blk;
        json_array_foreach(json_object_get(result, "content"), bi, blk)
        {
            json_t *t = json_object_get(blk, "text");
            if (json_is_string(t)) out_bytes += json_string_length(t);
        }
        json_t *f = json_pack("{s:s,s:s,s:s,s:s,s:O,s:b,s:f,s:I,s:O}", "session_id", s->session_id,
                              "work_id", s->work_id, "tool_use_id", id, "tool", name, "input",
                              json_object_get(ev, "input") ?: json_null(), "is_error", is_error,
                              "duration_s", (double)ms / 1000.0, "output_bytes", (json_int_t)out_bytes,
                              "output", json_object_get(result, "content") ?: json_null());
        if (s->kill_reason && f) json_object_set_new(f, "killed", json_string(s->kill_reason));
        audit_ev(s->w, "tool.call", f);
        if (s->kill_reason)
            audit_ev(s->w, "kill", json_pack("{s:s,s:s,s:s,s:s}", "session_id", s->session_id, "work_id",
                                             s->work_id, "reason", s->kill_reason, "by",
                                             strcmp(s->kill_reason, "admin") ? "worker" : "admin"));
    }
    s->kill_reason = NULL;
    shed_err err = {0};
    /* Record the result before posting: after a crash it is posted, not re-run. */
    if (wstate_call_result(s->w->state, s->session_id, id, result, &err) < 0)
        slog(LOG_WARN, s->session_id, s->work_id, "record result of %s: %s", id, err.msg);
    /* Memory stores: sync if due (the next call waits for it, as in the SDK). */
    if (s->files && s->phase == PH_RUN) sfiles_after_call(s->files);
    if (s->phase == PH_ENDING && !s->post_on_end) {
        /* Lease lost: the item is no longer ours; the recorded result is
         * posted if this session's work comes back to this worker. */
        if (s->runner) runner_call_done(s->runner, id, false, clock_mono_ms());
        json_decref(ev);
        sess_end(s, s->end_reason);
        return;
    }
    post_result(s, ev, result);
    json_decref(ev);
}

static void on_sbx_result(sbx_t *sb, uint64_t call_id, json_t *result, void *arg)
{
    (void)sb;
    wsess_t *s = arg;
    if (!s->call_ev || call_id != s->call_seq) return; /* a stale answer */
    call_complete(s, result);
}

static void on_sbx_dead(sbx_t *sb, const char *why, void *arg)
{
    (void)sb;
    wsess_t *s = arg;
    slog(LOG_ERROR, s->session_id, s->work_id, "sandbox died: %s", why);
    if (s->call_ev) {
        _cleanup_json_ json_t *r = error_result("the sandbox of this session died while the call was running");
        call_complete(s, r);
    }
    if (s->phase < PH_ENDING) sess_end(s, LEASE_END_DONE);
}

static void on_call_timeout(loop_t *l, void *arg)
{
    (void)l;
    wsess_t *s = arg;
    s->call_timer = 0;
    if (!s->call_ev) return;
    if (!s->call_cancelled) {
        /* Outer deadline (SDK: 120 s): ask init to abort, give it a moment. */
        s->call_cancelled = true;
        s->kill_reason = "timeout";
        slog(LOG_WARN, s->session_id, s->work_id, "call %s timed out; cancelling", jstr(s->call_ev, "id"));
        sbx_cancel(s->sb, s->call_seq);
        s->call_timer = loop_timer(s->w->loop, CANCEL_WAIT_MS, on_call_timeout, s);
        return;
    }
    char msg[160];
    if (s->phase == PH_ENDING)
        snprintf(msg, sizeof(msg), "tool '%s' was cancelled: the worker stopped serving this session",
                 jstr(s->call_ev, "name"));
    else
        snprintf(msg, sizeof(msg), "tool '%s' timed out", jstr(s->call_ev, "name"));
    _cleanup_json_ json_t *r = error_result(msg);
    call_complete(s, r);
}

/* Start the next call, if any (one at a time per session). */
static void sess_pump(wsess_t *s)
{
    worker_t *w = s->w;
    while (s->phase == PH_RUN && !s->call_ev && !s->post_event && s->runner && !sfiles_busy(s->files)) {
        json_t *ev = runner_next(s->runner);
        if (!ev) break;
        const char *id = jstr(ev, "id");
        const char *name = jstr(ev, "name");
        s->call_start_ms = clock_mono_ms();
        /* Crash safety: what does the state dir know about this call? */
        json_t *recorded = NULL;
        enum wstate_call st = wstate_call_get(w->state, s->session_id, id, &recorded);
        if (st == WSTATE_CALL_RESULT) {
            slog(LOG_INFO, s->session_id, s->work_id,
                 "call %s (%s) already ran before a restart; posting its recorded result", id, name);
            post_result(s, ev, recorded);
            json_decref(recorded);
            json_decref(ev);
            return;
        }
        if (st == WSTATE_CALL_STARTED) {
            slog(LOG_WARN, s->session_id, s->work_id,
                 "call %s (%s) was running when a previous worker stopped; not running it again", id,
                 name);
            _cleanup_json_ json_t *r = error_result(RESTART_MSG);
            wstate_call_result(w->state, s->session_id, id, r, NULL);
            post_result(s, ev, r);
            json_decref(ev);
            return;
        }
        if (s->sb_failed) {
            slog(LOG_WARN, s->session_id, s->work_id, "call %s (%s) not run: this session has no sandbox", id,
                 name);
            _cleanup_json_ json_t *r = error_result(
                "the sandbox for this session could not be created, so the call was not run "
                "(the worker's log names the cause)");
            wstate_call_result(w->state, s->session_id, id, r, NULL);
            post_result(s, ev, r);
            json_decref(ev);
            return;
        }
        shed_err err = {0};
        if (wstate_call_started(w->state, s->session_id, id, &err) < 0) {
            /* Without the record a crash could re-run it: refuse to run it. */
            slog(LOG_ERROR, s->session_id, s->work_id, "record start of %s: %s", id, err.msg);
            _cleanup_json_ json_t *r = error_result("the worker could not record this call in its state directory; not run");
            post_result(s, ev, r);
            json_decref(ev);
            return;
        }
        s->call_ev = ev;
        s->call_seq++;
        s->call_cancelled = false;
        json_t *input = json_object_get(ev, "input");
        slog(LOG_INFO, s->session_id, s->work_id, "running call %s (%s)", id, name);
        if (sbx_call(s->sb, s->call_seq, name, json_is_object(input) ? input : NULL,
                     w->cfg.tool_timeout_ms, &err) < 0) {
            /* an input too large or too deeply nested for the channel, or
             * a sandbox that is gone: either way the call is answered */
            char text[sizeof(err.msg) + 64];
            snprintf(text, sizeof(text), "the sandbox could not take the call: %s", err.msg);
            _cleanup_json_ json_t *r = error_result(text);
            slog(LOG_ERROR, s->session_id, s->work_id, "send call %s to the sandbox: %s", id, err.msg);
            call_complete(s, r);
            return;
        }
        s->call_timer = loop_timer(w->loop, w->cfg.tool_timeout_ms + 2000, on_call_timeout, s);
        return;
    }
    idle_sync(s);
}

/* ---------- runner notes (logging) ---------- */

static void on_runner_note(runner_note what, json_t *ev, void *arg)
{
    wsess_t *s = arg;
    const char *id = jstr(ev, "id"), *name = jstr(ev, "name");
    switch (what) {
    case RUNNER_NOTE_HELD:
        slog(LOG_INFO, s->session_id, s->work_id, "call %s (%s) awaiting confirmation; holding", id, name);
        break;
    case RUNNER_NOTE_DENIED:
        slog(LOG_INFO, s->session_id, s->work_id, "call %s (%s) denied; not executing", id, name);
        break;
    case RUNNER_NOTE_CONFIRMED:
        slog(LOG_INFO, s->session_id, s->work_id, "call %s (%s) confirmed", id, name);
        break;
    case RUNNER_NOTE_UNOWNED:
        slog(LOG_INFO, s->session_id, s->work_id,
             "call %s (%s) is not a tool this worker runs; leaving it pending for its owner", id,
             name ? name : "?");
        break;
    case RUNNER_NOTE_THREAD_DROPPED:
        slog(LOG_INFO, s->session_id, s->work_id, "call %s: its session thread terminated; not executing", id);
        break;
    case RUNNER_NOTE_QUEUED:
        slog(LOG_DEBUG, s->session_id, s->work_id, "call %s (%s) queued", id, name);
        break;
    }
}

static bool owns_cb(const char *name, void *arg)
{
    (void)arg;
    return worker_owns_tool(name);
}

/* ---------- event stream + history (§3.4 steps 1, 2, 8) ---------- */

static void stream_open(wsess_t *s);

/* The session ended (terminated or deleted): a clean end, final sync. */
static void sess_terminated(wsess_t *s, const char *how)
{
    slog(LOG_INFO, s->session_id, s->work_id, "session terminated%s", how);
    s->terminated = true;
    s->clean_end = true;
    sess_end(s, LEASE_END_DONE);
}

static void handle_event(wsess_t *s, json_t *ev)
{
    if (runner_stream_event(s->runner, ev, clock_mono_ms())) {
        sess_terminated(s, "");
        return;
    }
    idle_sync(s);
    sess_pump(s);
}

static void list_page(wsess_t *s, const char *page);
static void history_read(wsess_t *s);

static void list_retry(loop_t *l, void *arg)
{
    (void)l;
    wsess_t *s = arg;
    s->list_timer = 0;
    if (s->phase == PH_RUN && s->stream_open && !s->listing) history_read(s);
}

static void on_list(const api_result *r, void *arg)
{
    wsess_t *s = arg;
    s->list_call = NULL;
    if (!r->ok || !json_is_object(r->json) || !json_is_array(json_object_get(r->json, "data"))) {
        /* §3.4: if listing fails midway, dispatch nothing from it. */
        slog(LOG_WARN, s->session_id, s->work_id, "reading the session history failed: %s",
             r->ok ? "malformed page" : r->msg);
        runner_history_end(s->runner, false, clock_mono_ms());
        s->listing = false;
        if (r->fatal) {
            sess_end(s, LEASE_END_DONE);
            return;
        }
        /* Unlike the SDK (which waits for the next reconnect), read the
         * history again soon: a quiet session would otherwise leave its
         * unanswered calls alone until the stream drops. */
        if (s->phase == PH_RUN && s->stream_open && !s->list_timer) {
            int64_t wait = proto_retry_wait(
                proto_apply_jitter(proto_backoff_ms(s->list_attempt++, 500, 10000)), r->retry_after_ms);
            s->list_timer = loop_timer(s->w->loop, wait, list_retry, s);
        }
    } else {
        s->list_attempt = 0;
        size_t i;
        json_t *ev;
        json_array_foreach(json_object_get(r->json, "data"), i, ev)
        {
            if (json_is_object(ev)) runner_history_event(s->runner, ev);
        }
        const char *next = jstr(r->json, "next_page");
        if (next && *next) {
            list_page(s, next);
            return;
        }
        runner_history_end(s->runner, true, clock_mono_ms());
        s->listing = false;
        slog(LOG_DEBUG, s->session_id, s->work_id, "history reconciled");
        if (runner_ended(s->runner)) {
            /* terminated before the stream could say so: it never will */
            json_decref(s->stream_buffer);
            s->stream_buffer = NULL;
            sess_terminated(s, " (history)");
            return;
        }
    }
    /* Events that arrived on the stream meanwhile, de-duplicated by id. */
    json_t *buffered = s->stream_buffer;
    s->stream_buffer = NULL;
    size_t i;
    json_t *ev;
    json_array_foreach(buffered, i, ev)
    {
        if (s->phase != PH_RUN) break;
        handle_event(s, ev);
    }
    json_decref(buffered);
    if (s->phase == PH_RUN) {
        idle_sync(s);
        sess_pump(s);
    }
}

static void list_page(wsess_t *s, const char *page)
{
    _cleanup_free_ char *path = path_fmt("/v1/sessions/%s/events", s->session_id, NULL);
    _cleanup_free_ char *q = NULL;
    if (page) {
        _cleanup_free_ char *ep = api_escape(page);
        if (ep && asprintf(&q, LIST_PAGE "&page=%s", ep) < 0) q = NULL;
    } else {
        q = strdup(LIST_PAGE);
    }
    shed_err err = {0};
    if (path && q)
        s->list_call = api_request(s->w->api, "GET", path, q, NULL, s->cred, false, CALL_TIMEOUT_MS,
                                   on_list, s, &err);
    if (!s->list_call) {
        api_result r = {0};
        snprintf(r.msg, sizeof(r.msg), "%s", err.msg);
        on_list(&r, s);
    }
}

/* Read the whole history; stream events meanwhile are buffered. */
static void history_read(wsess_t *s)
{
    s->listing = true;
    json_decref(s->stream_buffer);
    s->stream_buffer = json_array();
    runner_history_begin(s->runner);
    list_page(s, NULL);
}

static void on_stream_open(void *arg)
{
    wsess_t *s = arg;
    /* Stream first, then history: nothing emitted in between is lost. */
    s->stream_open = true;
    timer_clear(s->w, &s->list_timer);
    if (s->list_call) {
        api_cancel(s->list_call);
        s->list_call = NULL;
    }
    history_read(s);
}

static void on_stream_event(json_t *ev, void *arg)
{
    wsess_t *s = arg;
    s->stream_backoff = PROTO_STREAM_BACKOFF_BASE;
    if (s->phase != PH_RUN) return;
    if (s->listing) {
        json_array_append(s->stream_buffer, ev);
        return;
    }
    handle_event(s, ev);
}

static void stream_retry(loop_t *l, void *arg)
{
    (void)l;
    wsess_t *s = arg;
    s->stream_timer = 0;
    stream_open(s);
}

static void on_stream_end(const api_result *r, void *arg)
{
    wsess_t *s = arg;
    s->stream = NULL;
    s->stream_open = false;
    timer_clear(s->w, &s->list_timer);
    if (s->list_call) {
        api_cancel(s->list_call);
        s->list_call = NULL;
        runner_history_end(s->runner, false, clock_mono_ms());
        s->listing = false;
    }
    if (s->phase != PH_RUN) return;
    if (r->fatal) {
        slog(LOG_ERROR, s->session_id, s->work_id, "permanent stream failure: %s", r->msg);
        sess_end(s, LEASE_END_DONE);
        return;
    }
    int64_t wait = proto_retry_wait(s->stream_backoff, r->retry_after_ms);
    slog(LOG_WARN, s->session_id, s->work_id, "event stream ended (%s); reconnecting in %lld ms",
         r->ok ? "closed by the server" : r->msg, (long long)wait);
    s->stream_timer = loop_timer(s->w->loop, wait, stream_retry, s);
    s->stream_backoff *= 2;
    if (s->stream_backoff > PROTO_STREAM_BACKOFF_CAP) s->stream_backoff = PROTO_STREAM_BACKOFF_CAP;
}

static void stream_open(wsess_t *s)
{
    shed_err err = {0};
    s->stream = api_stream(s->w->api, s->session_id, s->cred, STREAM_STALL_MS, on_stream_open,
                           on_stream_event, on_stream_end, s, &err);
    if (!s->stream) {
        api_result r = {0};
        snprintf(r.msg, sizeof(r.msg), "%s", err.msg);
        on_stream_end(&r, s);
    }
}

/* ---------- session start: retrieve, sandbox ---------- */

static void start_run(wsess_t *s);

static void sb_retry(loop_t *l, void *arg)
{
    (void)l;
    wsess_t *s = arg;
    s->sb_timer = 0;
    start_run(s);
}

/* The layer a sandbox creation failed at, for shed_sandbox_failures_total and
 * the audit record (bounded labels; docs/operations.md's catalogue). The
 * sandbox runtime's messages name the failing step; map the step's words. */
static const char *failure_layer(const char *error)
{
    static const struct {
        const char *word, *layer;
    } MAP[] = {
        {"uid_map", "userns"},        {"gid_map", "userns"},          {"setgroups", "userns"},
        {"setresuid", "userns"},      {"setresgid", "userns"},        {"user namespace", "userns"},
        {"clone3", "userns"},         {"seccomp", "seccomp"},         {"cgroup", "cgroup"},
        {"memory.", "cgroup"},        {"pids.", "cgroup"},            {"cpu.", "cgroup"},
        {"setrlimit", "limits"},      {"lo ", "net"},                 {"lo)", "net"},
        {"egress listener", "net"},   {"socket for lo", "net"},       {"capab", "spawn"},
        {"PR_SET", "spawn"},          {"setsid", "spawn"},            {"execveat", "spawn"},
        {"dup2", "spawn"},            {"pid namespace", "pid"},       {"init", "init"},
        {"mount", "mount"},           {"pivot_root", "mount"},        {"bind", "mount"},
        {"tmpfs", "mount"},           {"chdir", "mount"},             {"symlink", "mount"},
        {"mkdir", "mount"},           {"read-only", "mount"},         {"the old root", "mount"},
    };
    for (size_t i = 0; error && i < sizeof(MAP) / sizeof(MAP[0]); i++)
        if (strstr(error, MAP[i].word)) return MAP[i].layer;
    return "other";
}

static void start_runner(wsess_t *s);

static void on_sandbox_ready(sbx_t *sb, const char *error, void *arg)
{
    wsess_t *s = arg;
    worker_t *w = s->w;
    s->sb_pending = NULL;
    if (!sb && ++s->sb_attempt < 4) {
        /* Often transient (fds, pids, memory under load): try again shortly. */
        int64_t wait = proto_apply_jitter(1000LL << (s->sb_attempt - 1));
        slog(LOG_WARN, s->session_id, s->work_id, "sandbox: %s; retrying in %lld ms", error, (long long)wait);
        metrics_inc(obs_m.sandbox_failures, LV(failure_layer(error)), 1);
        s->sb_timer = loop_timer(w->loop, wait, sb_retry, s);
        return;
    }
    if (!sb) {
        slog(LOG_ERROR, s->session_id, s->work_id, "sandbox: %s", error);
        metrics_inc(obs_m.sandbox_failures, LV(failure_layer(error)), 1);
        audit_ev(w, "sandbox.failed", json_pack("{s:s,s:s,s:s,s:s}", "session_id", s->session_id, "work_id",
                                                s->work_id, "layer", failure_layer(error), "error", error));
        /* /readyz turns red until a sandbox is made again: a host that cannot
         * make sandboxes any more should leave the rollout gate. */
        char why[300];
        snprintf(why, sizeof(why), "the last sandbox creation failed at layer %s", failure_layer(error));
        obs_ready_set("sandbox", false, why);
        /* Keep serving the session without a sandbox: each of its calls gets
         * an error result (never run), so the agent is told instead of
         * waiting on a call nobody answers; the idle timer ends the item. */
        s->sb_failed = true;
    }
    s->sb = sb;
    if (s->sb_failed) goto run;
    obs_ready_set("sandbox", true, NULL);
    double secs = (double)(clock_mono_ms() - s->sb_start_ms) / 1000.0;
    metrics_observe(obs_m.sandbox_create_seconds, NULL, secs);
    audit_ev(w, "sandbox.created", json_pack("{s:s,s:s,s:s,s:f,s:s}", "session_id", s->session_id, "work_id",
                                             s->work_id, "policy_digest", sandbox_policy_digest(w->policy),
                                             "duration_s", secs, "network",
                                             w->egress_policy ? "egress proxy (policy)" : "egress proxy (deny all)"));
    slog(LOG_INFO, s->session_id, s->work_id, "sandbox ready in %lld ms: %s",
         (long long)(clock_mono_ms() - s->sb_start_ms), sbx_describe(s->sb));
run:
    if (s->files && !s->sb_failed) {
        /* Skills and memory stores first; calls wait for them (the lease is
         * kept by the heartbeat meanwhile). */
        bool root = geteuid() == 0;
        uid_t uid = root ? sbx_uid(s->sb) : (uid_t)-1;
        sfiles_start(s->files, s->workspace, uid, root ? (gid_t)uid : (gid_t)-1);
        return;
    }
    start_runner(s);
}

static void get_session(wsess_t *s);

/* The skills and memory stores are in place (or a store failed: the item
 * fails). Retrieve the session once more, then start the runner. */
static void on_files_ready(void *arg, int rc, const char *msg)
{
    wsess_t *s = arg;
    if (s->phase != PH_RETRIEVE) return;
    if (rc < 0) {
        slog(LOG_ERROR, s->session_id, s->work_id, "failing the work item: %s", msg);
        sess_end(s, LEASE_END_DONE);
        return;
    }
    /* The set-up may have taken seconds: a session terminated meanwhile
     * would only show as a stream that ends at once. Ask again. */
    s->files_ready = true;
    s->get_attempt = 0;
    get_session(s);
}

static void on_files_idle(void *arg)
{
    wsess_t *s = arg;
    if (s->phase == PH_RUN) sess_pump(s);
}

static void on_files_ended(void *arg)
{
    wsess_t *s = arg;
    s->files_ended = true;
    if (s->phase == PH_STOPPING) sess_stop_tail(s);
}

static void start_runner(wsess_t *s)
{
    worker_t *w = s->w;
    s->runner = runner_new(w->cfg.max_idle_ms, owns_cb, on_runner_note, s);
    if (!s->runner) {
        sess_end(s, LEASE_END_DONE);
        return;
    }
    s->phase = PH_RUN;
    s->stream_backoff = PROTO_STREAM_BACKOFF_BASE;
    stream_open(s);
}

typedef struct gone_ctx {
    worker_t *w;
    char session_id[ID_MAX * 2];
} gone_ctx;

static void start_run(wsess_t *s);

/* A sandbox is gone: a new one with the same label (session id) may be made. */
static void on_sandbox_gone(void *arg)
{
    gone_ctx *g = arg;
    worker_t *w = g->w;
    json_t *n = json_object_get(w->destroying, g->session_id);
    if (n && json_integer_value(n) > 1)
        json_object_set_new(w->destroying, g->session_id, json_integer(json_integer_value(n) - 1));
    else
        json_object_del(w->destroying, g->session_id);
    if (!json_object_get(w->destroying, g->session_id)) {
        for (wsess_t *o = w->sessions; o; o = o->next) {
            if (o->wait_destroy && !strcmp(o->session_id, g->session_id)) {
                o->wait_destroy = false;
                start_run(o);
                break;
            }
        }
    }
    free(g);
}

static gone_ctx *gone_new(wsess_t *s)
{
    worker_t *w = s->w;
    gone_ctx *g = calloc(1, sizeof(*g));
    if (g) {
        g->w = w;
        snprintf(g->session_id, sizeof(g->session_id), "%s", s->session_id);
        json_t *n = json_object_get(w->destroying, s->session_id);
        json_object_set_new(w->destroying, s->session_id, json_integer(n ? json_integer_value(n) + 1 : 1));
    }
    return g;
}

/* Destroy the session's sandbox (or the one being made) on the pool. */
static void sandbox_release(wsess_t *s, int grace_ms)
{
    if (s->sb_pending) {
        gone_ctx *g = gone_new(s);
        sbx_create_abandon(s->sb_pending, g ? on_sandbox_gone : NULL, g);
        s->sb_pending = NULL;
    }
    if (!s->sb) return;
    gone_ctx *g = gone_new(s);
    sbx_destroy_async(s->w->pool, s->sb, grace_ms, g ? on_sandbox_gone : NULL, g);
    s->sb = NULL;
}

static void start_run(wsess_t *s)
{
    worker_t *w = s->w;
    shed_err err = {0};
    if (s->phase != PH_RETRIEVE || s->sb || s->sb_pending) return;
    if (json_object_get(w->destroying, s->session_id)) {
        /* Same label: wait until the previous sandbox is really gone. */
        s->wait_destroy = true;
        return;
    }
    free(s->workspace); /* a retry asks again */
    s->workspace = NULL;
    if (wstate_session_workspace(w->state, s->session_id, &s->workspace, &err) < 0) {
        slog(LOG_ERROR, s->session_id, s->work_id, "workspace: %s", err.msg);
        sess_end(s, LEASE_END_DONE);
        return;
    }
    sbx_opts o = {
        .loop = w->loop,
        .policy = w->policy,
        .label = s->session_id,
        .workspace = s->workspace,
        .workdir = w->cfg.workdir,
        .state_dir = w->sandbox_dir,
        .egress = w->egress,
        .egress_policy = w->egress_policy,
        .ro_binds = sfiles_binds(s->files, false),
        .rw_binds = sfiles_binds(s->files, true),
        .on_result = on_sbx_result,
        .on_dead = on_sbx_dead,
        .arg = s,
    };
    s->sb_start_ms = clock_mono_ms();
    /* Made on a pool thread: the loop keeps serving the other sessions. */
    s->sb_pending = sbx_create_async(w->pool, &o, on_sandbox_ready, &err);
    if (!s->sb_pending) {
        slog(LOG_ERROR, s->session_id, s->work_id, "sandbox: %s", err.msg);
        sess_end(s, LEASE_END_DONE);
    }
}

static void get_session(wsess_t *s);

static void get_retry(loop_t *l, void *arg)
{
    (void)l;
    wsess_t *s = arg;
    s->get_timer = 0;
    get_session(s);
}

static void on_session(const api_result *r, void *arg)
{
    wsess_t *s = arg;
    s->get_call = NULL;
    if (!r->ok || !json_is_object(r->json)) {
        if (!r->fatal && ++s->get_attempt < 5) {
            int64_t wait = proto_retry_wait(
                proto_apply_jitter(proto_backoff_ms(s->get_attempt - 1, 500, 8000)), r->retry_after_ms);
            slog(LOG_WARN, s->session_id, s->work_id, "session retrieve failed: %s; retrying", r->msg);
            s->get_timer = loop_timer(s->w->loop, wait, get_retry, s);
            return;
        }
        slog(LOG_ERROR, s->session_id, s->work_id, "session retrieve failed: %s", r->msg);
        sess_end(s, LEASE_END_DONE);
        return;
    }
    const char *status = jstr(r->json, "status");
    if (status && !strcmp(status, "terminated")) {
        slog(LOG_INFO, s->session_id, s->work_id, "skipping the work item of a terminated session");
        s->terminated = true;
        sess_end(s, LEASE_END_DONE);
        return;
    }
    if (s->files_ready) {
        start_runner(s);
        return;
    }
    if (!s->files) {
        worker_t *w = s->w;
        sfiles_env fe = {.loop = w->loop,
                         .api = w->api,
                         .pool = w->files_pool,
                         .audit = w->audit,
                         .state_dir = wstate_dir(w->state),
                         .workdir = w->cfg.workdir,
                         .sync_interval_ms = w->cfg.memory_sync_ms,
                         .delete_mode = (memory_delete_mode_t)w->cfg.memory_delete_mode,
                         .ready = on_files_ready,
                         .idle = on_files_idle,
                         .ended = on_files_ended,
                         .arg = s};
        shed_err err = {0};
        /* The session's directory holds the store folders: make it now. */
        free(s->workspace);
        s->workspace = NULL;
        if (wstate_session_workspace(w->state, s->session_id, &s->workspace, &err) < 0) {
            slog(LOG_ERROR, s->session_id, s->work_id, "workspace: %s", err.msg);
            sess_end(s, LEASE_END_DONE);
            return;
        }
        if (sfiles_new(&fe, s->session_id, s->work_id, r->json, s->cred, s->token != NULL, &s->files, &err) < 0) {
            slog(LOG_ERROR, s->session_id, s->work_id, "failing the work item: %s", err.msg);
            audit_ev(w, "memory.failed", json_pack("{s:s,s:s,s:s}", "session_id", s->session_id, "work_id",
                                                   s->work_id, "error", err.msg));
            sess_end(s, LEASE_END_DONE);
            return;
        }
    }
    start_run(s);
}

static void get_session(wsess_t *s)
{
    _cleanup_free_ char *path = path_fmt("/v1/sessions/%s", s->session_id, NULL);
    shed_err err = {0};
    if (path)
        s->get_call = api_request(s->w->api, "GET", path, NULL, NULL, s->cred, false, CALL_TIMEOUT_MS,
                                  on_session, s, &err);
    if (!s->get_call) {
        api_result r = {.fatal = true};
        snprintf(r.msg, sizeof(r.msg), "%s", err.msg);
        on_session(&r, s);
    }
}

/* Called when the first heartbeat has answered (or for a waiting item when
 * the previous item of its session is gone). */
static void sess_begin(wsess_t *s)
{
    if (s->phase != PH_RETRIEVE || s->get_call || s->runner || s->sb_pending || s->sb) return;
    get_session(s);
}

/* ---------- ending an item ---------- */

static void stop_send(wsess_t *s);

static void stop_retry(loop_t *l, void *arg)
{
    (void)l;
    wsess_t *s = arg;
    s->stop_timer = 0;
    stop_send(s);
}

static void on_stopped(const api_result *r, void *arg)
{
    wsess_t *s = arg;
    s->stop_call = NULL;
    if (r->ok || r->status == 409) {
        slog(LOG_INFO, s->session_id, s->work_id, "work item stopped");
        metrics_inc(obs_m.stops, LV(r->ok ? "ok" : "conflict"), 1);
    } else if (!r->fatal && ++s->stop_attempt < 3) {
        slog(LOG_WARN, s->session_id, s->work_id, "stop failed: %s; retrying", r->msg);
        s->stop_timer = loop_timer(
            s->w->loop, proto_retry_wait(proto_apply_jitter(1000 * s->stop_attempt), r->retry_after_ms),
            stop_retry, s);
        return;
    } else {
        slog(LOG_ERROR, s->session_id, s->work_id, "force-stop on exit failed: %s", r->msg);
        metrics_inc(obs_m.stops, LV("error"), 1);
    }
    sess_finish_later(s);
}

static void stop_send(wsess_t *s)
{
    _cleanup_free_ char *path =
        path_fmt("/v1/environments/%s/work/%s/stop", api_environment_id(s->w->api), s->work_id);
    _cleanup_json_ json_t *body = json_pack("{s:b}", "force", 1);
    shed_err err = {0};
    if (path && body)
        s->stop_call = api_request(s->w->api, "POST", path, NULL, body, s->cred, false, CALL_TIMEOUT_MS,
                                   on_stopped, s, &err);
    if (!s->stop_call) {
        api_result r = {.fatal = true};
        snprintf(r.msg, sizeof(r.msg), "%s", err.msg);
        on_stopped(&r, s);
    }
}

static void on_end_timeout(loop_t *l, void *arg)
{
    (void)l;
    wsess_t *s = arg;
    s->end_timer = 0;
    /* The in-flight call did not answer its cancel in time. */
    if (s->call_ev) {
        char msg[200];
        snprintf(msg, sizeof(msg), "tool '%s' was cancelled: the worker stopped serving this session",
                 jstr(s->call_ev, "name"));
        _cleanup_json_ json_t *r = error_result(msg);
        call_complete(s, r);
    }
}

/* End the item: first reason wins. Cancels the in-flight call (posting its
 * result unless the lease is lost), destroys the sandbox, stops the item
 * with force:true unless the lease is lost (§2.6 step 6). Re-entered as each
 * step completes. */
static void sess_end(wsess_t *s, lease_end why)
{
    worker_t *w = s->w;
    if (s->phase < PH_ENDING) {
        s->phase = PH_ENDING;
        lease_finish(&s->lease, why);
        s->end_reason = s->lease.end;
        s->post_on_end = !lease_is_lost(&s->lease);
        slog(LOG_INFO, s->session_id, s->work_id, "ending: %s", lease_end_name(s->end_reason));
        timer_clear(w, &s->idle_timer);
        timer_clear(w, &s->stream_timer);
        timer_clear(w, &s->get_timer);
        timer_clear(w, &s->sb_timer);
        timer_clear(w, &s->list_timer);
        if (s->stream) api_cancel(s->stream);
        s->stream = NULL;
        if (s->list_call) api_cancel(s->list_call);
        s->list_call = NULL;
        if (s->get_call) api_cancel(s->get_call);
        s->get_call = NULL;
        if (s->sb_pending) sandbox_release(s, 0);
        if (lease_is_lost(&s->lease)) {
            timer_clear(w, &s->hb_timer);
            if (s->hb_call) api_cancel(s->hb_call);
            s->hb_call = NULL;
        }
        if (s->call_ev) {
            if (!s->call_cancelled) {
                s->call_cancelled = true;
                s->kill_reason = w->shutting_down ? "shutdown"
                                 : s->end_reason == LEASE_END_STOP ? "stop_request"
                                 : "idle";
                if (lease_is_lost(&s->lease)) s->kill_reason = "stop_request";
                slog(LOG_INFO, s->session_id, s->work_id, "cancelling call %s", jstr(s->call_ev, "id"));
                sbx_cancel(s->sb, s->call_seq);
            }
            timer_clear(w, &s->call_timer);
            s->end_timer = loop_timer(w->loop, CANCEL_WAIT_MS, on_end_timeout, s);
        }
    }
    if (s->phase != PH_ENDING) return;
    if (s->call_ev || s->post_event) return; /* wait for the call / its post */
    timer_clear(w, &s->end_timer);
    s->phase = PH_STOPPING;
    if (s->sb) {
        sandbox_release(s, 500);
        slog(LOG_INFO, s->session_id, s->work_id, "sandbox destroyed");
        audit_ev(w, "sandbox.destroyed", json_pack("{s:s,s:s,s:s}", "session_id", s->session_id, "work_id",
                                                   s->work_id, "reason",
                                                   s->killed ? s->killed : lease_end_name(s->end_reason)));
    }
    if (s->files && !s->files_ended) {
        /* Skills removed, memory synced (finish on a clean end), flushed and
         * removed; the heartbeat keeps the lease meanwhile. */
        sfiles_end(s->files, s->clean_end && !w->shutting_down);
        return;
    }
    sess_stop_tail(s);
}

static void sess_stop_tail(wsess_t *s)
{
    if (lease_is_lost(&s->lease)) {
        slog(LOG_INFO, s->session_id, s->work_id, "lease lost; released without stopping it");
        sess_finish_later(s);
        return;
    }
    stop_send(s);
}

static void sess_free(wsess_t *s)
{
    worker_t *w = s->w;
    timer_clear(w, &s->hb_timer);
    timer_clear(w, &s->get_timer);
    timer_clear(w, &s->stream_timer);
    timer_clear(w, &s->call_timer);
    timer_clear(w, &s->post_timer);
    timer_clear(w, &s->idle_timer);
    timer_clear(w, &s->end_timer);
    timer_clear(w, &s->stop_timer);
    timer_clear(w, &s->finish_timer);
    timer_clear(w, &s->sb_timer);
    timer_clear(w, &s->list_timer);
    api_cancel(s->hb_call);
    api_cancel(s->get_call);
    api_cancel(s->stream);
    api_cancel(s->list_call);
    api_cancel(s->post_call);
    api_cancel(s->stop_call);
    sandbox_release(s, 0);
    sfiles_free(s->files);
    runner_free(s->runner);
    json_decref(s->stream_buffer);
    json_decref(s->call_ev);
    json_decref(s->post_event);
    if (s->token) explicit_bzero(s->token, strlen(s->token));
    free(s->token);
    free(s->workspace);
    free(s);
}

/* The item is done: drop it, start a waiting item of the same session, poll. */
static void sess_finish(wsess_t *s)
{
    worker_t *w = s->w;
    timer_clear(w, &s->hb_timer);
    if (s->hb_call) api_cancel(s->hb_call);
    s->hb_call = NULL;
    for (wsess_t **pp = &w->sessions; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    w->nsessions--;
    sessions_gauge(w);
    {
        const char *why = s->killed ? s->killed
                          : w->shutting_down ? "shutdown"
                          : s->end_reason == LEASE_END_STOP ? "stop_request"
                          : lease_is_lost(&s->lease) ? "lease_lost"
                          : s->end_reason == LEASE_END_REJECTED ? "error"
                          : s->terminated ? "end_turn" : "idle";
        audit_ev(w, "work.stopped", json_pack("{s:s,s:s,s:s,s:b,s:i}", "session_id", s->session_id, "work_id",
                                              s->work_id, "reason", why, "stopped", !lease_is_lost(&s->lease),
                                              "calls", s->calls_done));
    }
    slog(LOG_INFO, s->session_id, s->work_id, "work item done: %d call(s) served in %lld ms",
         s->calls_done, (long long)(clock_mono_ms() - s->started_ms));
    bool waiting = false;
    for (wsess_t *o = w->sessions; o; o = o->next)
        if (!strcmp(o->session_id, s->session_id)) waiting = true;
    if (s->terminated && !waiting) {
        shed_err err = {0};
        if (wstate_session_remove(w->state, s->session_id, &err) < 0)
            slog(LOG_WARN, s->session_id, s->work_id, "remove the session's workspace: %s", err.msg);
        else
            slog(LOG_INFO, s->session_id, s->work_id, "session terminated: workspace removed");
    }
    char sid[sizeof(s->session_id)];
    snprintf(sid, sizeof(sid), "%s", s->session_id);
    sess_free(s);
    write_items(w);
    for (wsess_t *o = w->sessions; o; o = o->next) {
        if (o->phase == PH_WAIT_PREV && !strcmp(o->session_id, sid)) {
            o->phase = PH_RETRIEVE;
            if (o->first_beat_done) sess_begin(o);
            break;
        }
    }
    if (w->cfg.run_one) w->run_done = true;
    worker_check_done(w);
    worker_maybe_poll(w);
}

static void finish_fire(loop_t *l, void *arg)
{
    (void)l;
    wsess_t *s = arg;
    s->finish_timer = 0;
    sess_finish(s);
}

/* Never free a session from inside one of its own callbacks. */
static void sess_finish_later(wsess_t *s)
{
    if (!s->finish_timer) s->finish_timer = loop_timer(s->w->loop, 0, finish_fire, s);
}

/* ---------- a new item ---------- */

static void sess_start(worker_t *w, const char *work_id, const char *session_id, const char *secret)
{
    wsess_t *s = calloc(1, sizeof(*s));
    if (!s) return;
    s->w = w;
    s->started_ms = clock_mono_ms();
    s->idle_deadline = -1;
    snprintf(s->work_id, sizeof(s->work_id), "%s", work_id);
    snprintf(s->session_id, sizeof(s->session_id), "%s", session_id);
    shed_err err = {0};
    if (secret && *secret) {
        if (proto_secret_decode(secret, &s->token, NULL, &err) < 0)
            slog(LOG_WARN, s->session_id, s->work_id,
                 "work item carried a secret but no sessions token could be extracted (%s); "
                 "falling back to the environment key",
                 err.msg);
    }
    s->cred.token = s->token; /* NULL = the environment key */
    lease_init(&s->lease, clock_mono_ms());
    bool prev = false;
    for (wsess_t *o = w->sessions; o; o = o->next)
        if (!strcmp(o->session_id, session_id)) prev = true;
    s->phase = prev ? PH_WAIT_PREV : PH_RETRIEVE;
    s->next = w->sessions;
    w->sessions = s;
    w->nsessions++;
    sessions_gauge(w);
    metrics_inc(obs_m.work_claimed, NULL, 1);
    audit_ev(w, "work.claimed", json_pack("{s:s,s:s,s:s}", "session_id", s->session_id, "work_id", s->work_id,
                                          "environment_id", api_environment_id(w->api)));
    write_items(w);
    slog(LOG_INFO, s->session_id, s->work_id, "serving work item (%s credential)%s",
         s->token ? "sessions token" : "environment key",
         prev ? "; waiting for the previous item of this session to end" : "");
    /* §2.5: the first heartbeat goes out before anything else. */
    hb_fire(w->loop, s);
}

/* ---------- poll loop (§2.6) ---------- */

static void poll_now(loop_t *l, void *arg);

static void poll_later(worker_t *w, int64_t ms)
{
    timer_clear(w, &w->poll_timer);
    w->poll_timer = loop_timer(w->loop, ms, poll_now, w);
}

typedef struct ack_ctx {
    worker_t *w;
    struct ack_ctx *next, **pprev; /* worker_t.acks */
    api_call_t *call;              /* the ack request in flight, or */
    uint64_t retry_timer;          /* the wait before the next attempt */
    char work_id[ID_MAX * 2];
    char session_id[ID_MAX * 2];
    char type[32];
    char *secret;
    int attempt;
} ack_ctx;

static void on_ack(const api_result *r, void *arg);

static void ack_send(ack_ctx *a)
{
    worker_t *w = a->w;
    _cleanup_free_ char *path =
        path_fmt("/v1/environments/%s/work/%s/ack", api_environment_id(w->api), a->work_id);
    shed_err err = {0};
    a->attempt++;
    /* Ack rides the environment key, like the SDK's poller. */
    api_call_t *c = path ? api_request(w->api, "POST", path, NULL, NULL, (api_cred){0}, false,
                                       CALL_TIMEOUT_MS, on_ack, a, &err)
                         : NULL;
    a->call = c;
    if (!c) {
        api_result rr = {.fatal = true};
        snprintf(rr.msg, sizeof(rr.msg), "%s", err.msg);
        on_ack(&rr, a);
    }
}

static void ack_retry(loop_t *l, void *arg)
{
    (void)l;
    ack_ctx *a = arg;
    a->retry_timer = 0;
    ack_send(a);
}

static void ack_free(ack_ctx *a)
{
    if (a->pprev) {
        *a->pprev = a->next;
        if (a->next) a->next->pprev = a->pprev;
    }
    if (a->secret) explicit_bzero(a->secret, strlen(a->secret));
    free(a->secret);
    free(a);
}

/* At exit: an ack still in flight or waiting to retry is abandoned (the
 * server re-delivers an unacked item to the next poll). */
static void acks_abandon(worker_t *w)
{
    while (w->acks) {
        ack_ctx *a = w->acks;
        if (a->call) api_cancel(a->call);
        if (a->retry_timer) loop_timer_cancel(w->loop, a->retry_timer);
        ack_free(a);
    }
}

/* The sessions token of a non-session item's stop (NULL: the environment
 * key), kept while the call runs. */
static void on_nonsession_stopped(const api_result *r, void *arg)
{
    (void)r;
    char *token = arg;
    if (token) explicit_bzero(token, strlen(token));
    free(token);
}

static void on_ack(const api_result *r, void *arg)
{
    ack_ctx *a = arg;
    worker_t *w = a->w;
    a->call = NULL;
    if (!r->ok && !r->fatal && a->attempt < 4 && !w->shutting_down) {
        /* A repeated ack of the same delivery is harmless; a lost answer is not. */
        slog(LOG_WARN, a->session_id, a->work_id, "ack failed: %s; retrying", r->msg);
        a->retry_timer = loop_timer(
            w->loop, proto_retry_wait(proto_apply_jitter(250LL << a->attempt), r->retry_after_ms),
            ack_retry, a);
        return;
    }
    w->acking--;
    metrics_inc(obs_m.acks, LV(r->ok ? "ok" : "error"), 1);
    if (!r->ok) {
        slog(LOG_ERROR, a->session_id, a->work_id, "ack failed: %s", r->msg);
    } else if (strcmp(a->type, "session")) {
        /* Non-session work (health checks): nothing to run; stop it. */
        slog(LOG_INFO, NULL, a->work_id, "skipping a work item of type '%s'", a->type);
        _cleanup_free_ char *path =
            path_fmt("/v1/environments/%s/work/%s/stop", api_environment_id(w->api), a->work_id);
        _cleanup_json_ json_t *body = json_pack("{s:b}", "force", 1);
        /* With the item's sessions token when it has one, like every
         * per-item call (the SDK's handler stops it with its token too). */
        char *token = NULL;
        shed_err terr = {0};
        if (a->secret && *a->secret) proto_secret_decode(a->secret, &token, NULL, &terr);
        if (path && body &&
            api_request(w->api, "POST", path, NULL, body, (api_cred){.token = token}, false,
                        CALL_TIMEOUT_MS, on_nonsession_stopped, token, NULL))
            token = NULL;
        if (token) explicit_bzero(token, strlen(token));
        free(token);
    } else if (w->shutting_down) {
        slog(LOG_INFO, a->session_id, a->work_id, "shutting down: not serving the item just acked");
    } else {
        sess_start(w, a->work_id, a->session_id, a->secret);
    }
    ack_free(a);
    worker_maybe_poll(w);
}

static void on_poll(const api_result *r, void *arg)
{
    worker_t *w = arg;
    w->poll_call = NULL;
    if (w->shutting_down) return;
    if (!r->ok) {
        metrics_inc(obs_m.polls, LV(r->status == 401 || r->status == 403 ? "unauthorized" : "error"), 1);
        obs_ready_set_for("poll", false, r->msg, 60000);
        if (r->fatal) {
            log_error("poll failed permanently, stopping: %s", r->msg);
            err_msg(&w->fatal, EACCES, "poll: %s", r->msg);
            w->fatal_set = true;
            w->exit_code = 1;
            /* End the items being served (their sessions tokens still work). */
            worker_shutdown(w, "poll failed permanently");
            return;
        }
        /* The server's Retry-After (a 429 or 503) when it asks for longer. */
        int64_t wait = proto_retry_wait(
            proto_apply_jitter(
                proto_backoff_ms(w->poll_attempt, PROTO_POLL_BACKOFF_BASE, PROTO_POLL_BACKOFF_CAP)),
            r->retry_after_ms);
        w->poll_attempt++;
        log_warn("poll failed, backing off %lld ms: %s", (long long)wait, r->msg);
        poll_later(w, wait);
        return;
    }
    w->poll_attempt = 0;
    obs_ready_set_for("poll", true, NULL, 60000);
    wmem_started();
    json_t *j = r->json;
    const char *id = json_is_object(j) ? jstr(j, "id") : NULL;
    metrics_inc(obs_m.polls, LV(id && *id ? "work" : "empty"), 1);
    if (!id || !*id) {
        /* Empty: 204, 200 + null, or 200 + empty body. */
        int64_t now = clock_mono_ms();
        if (!w->idle_since_ms) {
            w->idle_since_ms = w->idle_report_ms = now;
            log_info("idle; polling for work");
        } else if (now - w->idle_report_ms >= 300000) {
            w->idle_report_ms = now;
            log_info("still polling; idle for %llds", (long long)((now - w->idle_since_ms) / 1000));
        }
        /* The server held the poll open (block_ms): poll again at once, with
         * a little jitter. If it answered at once, pause like the SDK. */
        poll_later(w, r->elapsed_ms >= 500 ? proto_jitter(0, 100) : proto_jitter(1000, 3000));
        return;
    }
    w->idle_since_ms = 0;
    json_t *data = json_object_get(j, "data");
    const char *type = json_is_object(data) ? jstr(data, "type") : NULL;
    const char *sid = json_is_object(data) ? jstr(data, "id") : NULL;
    ack_ctx *a = calloc(1, sizeof(*a));
    if (!a) {
        poll_later(w, 1000);
        return;
    }
    a->w = w;
    snprintf(a->work_id, sizeof(a->work_id), "%s", id);
    snprintf(a->type, sizeof(a->type), "%s", type ? type : "?");
    snprintf(a->session_id, sizeof(a->session_id), "%s", sid ? sid : "");
    const char *secret = jstr(j, "secret");
    if (secret) a->secret = strdup(secret);
    if (!wstate_id_ok(id) || (!strcmp(a->type, "session") && !wstate_id_ok(a->session_id))) {
        log_error("work item with a malformed id or session id; ignoring it");
        free(a->secret);
        free(a);
        poll_later(w, 0);
        return;
    }
    slog(LOG_INFO, a->session_id[0] ? a->session_id : NULL, a->work_id, "claimed work (type %s)", a->type);
    w->acking++;
    a->next = w->acks;
    if (a->next) a->next->pprev = &a->next;
    a->pprev = &w->acks;
    w->acks = a;
    ack_send(a);
}

static int pending_acks(worker_t *w)
{
    return w->acking;
}

static void poll_now(loop_t *l, void *arg)
{
    (void)l;
    worker_t *w = arg;
    w->poll_timer = 0;
    if (w->shutting_down || w->cfg.run_one || w->poll_call) return;
    if (w->nsessions + pending_acks(w) >= w->cfg.max_sessions) return;
    _cleanup_free_ char *path = path_fmt("/v1/environments/%s/work/poll", api_environment_id(w->api), NULL);
    shed_err err = {0};
    if (path)
        w->poll_call = api_request(w->api, "GET", path, "block_ms=999", NULL, (api_cred){0}, true,
                                   POLL_TIMEOUT_MS, on_poll, w, &err);
    if (!w->poll_call) {
        log_error("poll: %s", err.msg);
        poll_later(w, 1000);
    }
}

static void worker_maybe_poll(worker_t *w)
{
    if (w->shutting_down || w->cfg.run_one || w->poll_call || w->poll_timer) return;
    if (w->nsessions + w->acking >= w->cfg.max_sessions) return;
    poll_later(w, 0);
}

/* ---------- shutdown (SIGTERM/SIGINT) ---------- */

static void worker_check_done(worker_t *w)
{
    if (w->cfg.run_one && w->run_done && !w->sessions) loop_stop(w->loop);
    if (w->shutting_down && !w->sessions) loop_stop(w->loop);
}

static void on_shutdown_deadline(loop_t *l, void *arg)
{
    worker_t *w = arg;
    w->shutdown_timer = 0;
    log_error("shutdown did not finish within %lld ms; leaving now",
              (long long)w->cfg.shutdown_grace_ms);
    while (w->sessions) {
        wsess_t *s = w->sessions;
        w->sessions = s->next;
        sess_free(s);
    }
    w->nsessions = 0;
    write_items(w);
    loop_stop(l);
}

static void worker_shutdown(worker_t *w, const char *why)
{
    if (w->shutting_down && w->shutdown_timer) return;
    w->shutting_down = true;
    log_info("%s: stop polling, cancel in-flight calls, stop %d item(s)", why, w->nsessions);
    timer_clear(w, &w->poll_timer);
    if (w->poll_call) api_cancel(w->poll_call);
    w->poll_call = NULL;
    timer_clear(w, &w->stats_timer);
    if (w->stats_call) api_cancel(w->stats_call);
    w->stats_call = NULL;
    w->shutdown_timer = loop_timer(w->loop, w->cfg.shutdown_grace_ms, on_shutdown_deadline, w);
    /* sess_end may free a session synchronously: walk a snapshot. */
    int n = w->nsessions;
    wsess_t **list = calloc((size_t)n + 1, sizeof(*list));
    int k = 0;
    for (wsess_t *s = w->sessions; s && list && k < n; s = s->next) list[k++] = s;
    for (int i = 0; i < k; i++) {
        bool alive = false;
        for (wsess_t *s = w->sessions; s; s = s->next)
            if (s == list[i]) alive = true;
        if (!alive) continue;
        wsess_t *s = list[i];
        if (s->phase < PH_ENDING) sess_end(s, LEASE_END_STOP);
    }
    free(list);
    worker_check_done(w);
}

static void on_signal(loop_t *l, int fd, uint32_t events, void *arg)
{
    (void)l;
    (void)events;
    worker_t *w = arg;
    struct signalfd_siginfo si;
    while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGHUP) {
            shed_err err = {0};
            int rc = api_keyring_reload(w->cfg.keys, &err);
            if (rc < 0)
                log_error("SIGHUP: re-reading the environment key file failed: %s", err.msg);
            else
                log_info("SIGHUP: environment key %s", rc ? "reloaded (changed)" : "unchanged");
            continue;
        }
        if (++w->signals > 1) {
            log_error("second signal: exiting at once");
            _exit(1);
        }
        worker_shutdown(w, si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
    }
}

/* ---------- egress decisions ---------- */

static void on_egress_event(const egress_event *ev, void *arg)
{
    worker_t *w = arg;
    metrics_inc(obs_m.egress_decisions, LV(ev->proto, ev->allowed ? "allow" : "deny"), 1);
    if (w->audit) {
        json_t *f = json_pack("{s:s,s:s,s:s,s:i,s:s,s:s,s:I,s:I,s:f}", "session_id", ev->label ? ev->label : "",
                              "proto", ev->proto ? ev->proto : "", "host", ev->host ? ev->host : "", "port",
                              ev->port, "verdict", ev->allowed ? "allow" : "deny", "rule", ev->rule ? ev->rule : "",
                              "bytes_up", (json_int_t)ev->bytes_up, "bytes_down", (json_int_t)ev->bytes_down,
                              "duration_s", (double)ev->duration_ms / 1000.0);
        if (f && ev->address) json_object_set_new(f, "address", json_string(ev->address));
        if (f && ev->error) json_object_set_new(f, "error", json_string(ev->error));
        audit_ev(w, "egress.decision", f);
    }
    /* The label is the session id. Denials at info, the rest at debug. */
    int lvl = ev->allowed ? LOG_DEBUG : LOG_INFO;
    if (log_level() < lvl) return;
    slog(lvl, ev->label, NULL, "egress %s %s:%d %s (rule %s)%s%s", ev->proto, ev->host, ev->port,
         ev->allowed ? "allowed" : "denied", ev->rule ? ev->rule : "-", ev->error ? ": " : "",
         ev->error ? ev->error : "");
}

/* ---------- queue gauges (metrics) ---------- */

static void stats_fire(loop_t *l, void *arg);

static void on_stats(const api_result *r, void *arg)
{
    worker_t *w = arg;
    w->stats_call = NULL;
    if (r->ok && json_is_object(r->json)) obs_queue_stats_update(api_environment_id(w->api), r->json, NULL);
    if (!w->shutting_down) w->stats_timer = loop_timer(w->loop, 15000, stats_fire, w);
}

static void stats_fire(loop_t *l, void *arg)
{
    (void)l;
    worker_t *w = arg;
    w->stats_timer = 0;
    _cleanup_free_ char *path = path_fmt("/v1/environments/%s/work/stats", api_environment_id(w->api), NULL);
    if (path)
        w->stats_call = api_request(w->api, "GET", path, NULL, NULL, (api_cred){0}, false, CALL_TIMEOUT_MS,
                                    on_stats, w, NULL);
    if (!w->stats_call && !w->shutting_down) w->stats_timer = loop_timer(w->loop, 15000, stats_fire, w);
}

/* ---------- start ---------- */

static void make_worker_id(char *out, size_t n)
{
    char host[128] = "shed";
    gethostname(host, sizeof(host) - 1);
    unsigned char r[8];
    char hex[17];
    id_random(r, sizeof(r));
    for (int i = 0; i < 8; i++) sprintf(hex + 2 * i, "%02x", r[i]);
    snprintf(out, n, "%s-%s", host, hex);
}

static void reconcile_start(worker_t *w)
{
    shed_err err = {0};
    int n = sbx_reconcile(w->sandbox_dir, &err);
    if (n < 0)
        log_warn("reconcile sandboxes left by a previous worker: %s", err.msg);
    else if (n > 0)
        log_info("removed %d sandbox(es) left by a previous worker", n);
    int mem = sfiles_sweep(wstate_dir(w->state));
    if (mem > 0) log_info("removed the memory store folders of %d session(s) left by a previous worker", mem);
    int tmp = wstate_sweep_tmp(w->state);
    if (tmp > 0) log_info("removed %d half-written call record(s) left by a previous worker", tmp);
    _cleanup_json_ json_t *prev = wstate_read_items(w->state);
    json_t *items = json_object_get(prev, "items");
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it)
    {
        /* Not stopped: the session may still have work; the server re-queues
         * the item when its lease lapses and a worker (maybe us) serves it. */
        slog(LOG_INFO, jstr(it, "session_id"), jstr(it, "work_id"),
             "a previous worker held this item; its lease will lapse and the item be re-queued");
    }
    write_items(w);
}

/* Each session holds several fds (control channel, egress listeners and
 * connections, its HTTP streams): use the hard limit. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int worker_run(const worker_config *cfg, shed_err *err)
{
    worker_t w = {0};
    w.cfg = *cfg;
    w.sigfd = -1;
    if (!w.cfg.workdir) w.cfg.workdir = "/workspace";
    if (w.cfg.max_sessions <= 0) w.cfg.max_sessions = worker_default_max_sessions();
    if (w.cfg.tool_timeout_ms <= 0) w.cfg.tool_timeout_ms = PROTO_TOOL_TIMEOUT_MS;
    if (w.cfg.shutdown_grace_ms <= 0) w.cfg.shutdown_grace_ms = 20000;
    if (cfg->worker_id && *cfg->worker_id)
        snprintf(w.worker_id, sizeof(w.worker_id), "%s", cfg->worker_id);
    else
        make_worker_id(w.worker_id, sizeof(w.worker_id));

    raise_nofile();
    wmem_init(); /* one malloc arena: before any thread */
    int rc = sbx_policy_load(cfg->policy_path, &w.policy, err);
    if (rc < 0) return rc;
    rc = wstate_open(cfg->state_dir, &w.state, err);
    if (rc < 0) goto out;
    /* The sandbox runtime keeps its bookkeeping in <state>/sandboxes/<label>
     * (and a shared mount point, <state>/mnt). */
    snprintf(w.sandbox_dir, sizeof(w.sandbox_dir), "%s", wstate_dir(w.state));
    w.loop = loop_new();
    if (!w.loop) {
        rc = err_set(err, ENOMEM, "event loop");
        goto out;
    }
    wmem_start(w.loop, 30000); /* free heap pages back every 30 s */
    rc = http_new(w.loop, &w.http, err);
    if (rc < 0) goto out;
    api_config ac = {.loop = w.loop,
                     .http = w.http,
                     .base_url = cfg->base_url,
                     .environment_id = cfg->environment_id,
                     .worker_id = w.worker_id,
                     .keys = cfg->keys};
    rc = api_new(&ac, &w.api, err);
    if (rc < 0) goto out;

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    w.sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (w.sigfd < 0 || loop_add(w.loop, w.sigfd, EPOLLIN, on_signal, &w) < 0) {
        rc = err_set(err, errno, "signalfd");
        goto out;
    }
    /* After the signal mask: the pool's threads must not take signals. */
    rc = pool_new(w.loop, 4, &w.pool, err);
    if (rc < 0) goto out;
    rc = pool_new(w.loop, 2, &w.files_pool, err);
    if (rc < 0) goto out;
    w.destroying = json_object();
    /* Egress: the sandboxes' only way out, served on this loop. */
    rc = egress_policy_parse(sandbox_policy_network(w.policy), &w.egress_policy, err);
    if (rc < 0) {
        err_wrap(err, "sandbox policy");
        goto out;
    }
    rc = egress_new(w.loop, on_egress_event, &w, &w.egress, err);
    if (rc < 0) goto out;
    if (cfg->metrics_listen) {
        obs_catalog_worker();
        rc = obs_http_start(cfg->metrics_listen, NULL, NULL, &w.obs_http, err);
        if (rc < 0) {
            err_wrap(err, "--metrics-listen %s", cfg->metrics_listen);
            goto out;
        }
        log_info("metrics on http://%s/metrics (port %d)", cfg->metrics_listen, obs_http_port(w.obs_http));
        if (!cfg->run_one) w.stats_timer = loop_timer(w.loop, 0, stats_fire, &w);
    }
    if (cfg->audit_log) {
        audit_opts ao = {.path = cfg->audit_log,
                         .rotate_bytes = cfg->audit_rotate_bytes,
                         .fsync_each = cfg->audit_fsync,
                         .content = (audit_content)cfg->audit_content};
        rc = audit_open(&ao, &w.audit, err);
        if (rc < 0) {
            err_wrap(err, "--audit-log %s", cfg->audit_log);
            goto out;
        }
    }
    rc = worker_admin_start(&w, err);
    if (rc < 0) goto out;
    reconcile_start(&w);
    log_info("worker %s started: environment %s, %s, up to %d session(s), state %s", w.worker_id,
             cfg->environment_id, api_base_url(w.api), w.cfg.max_sessions, wstate_dir(w.state));
    if (cfg->run_one)
        sess_start(&w, cfg->run_work_id, cfg->run_session_id, cfg->run_secret);
    else
        worker_maybe_poll(&w);
    rc = loop_run(w.loop);
    if (rc < 0) err_set(err, -rc, "event loop");
    if (w.fatal_set) {
        *err = w.fatal;
        rc = -EACCES;
    }
    log_info("worker stopped");
out:
    while (w.sessions) {
        wsess_t *s = w.sessions;
        w.sessions = s->next;
        sess_free(s);
    }
    if (w.poll_call) api_cancel(w.poll_call);
    if (w.stats_call) api_cancel(w.stats_call);
    acks_abandon(&w);
    timer_clear(&w, &w.stats_timer);
    timer_clear(&w, &w.poll_timer);
    timer_clear(&w, &w.shutdown_timer);
    /* Waits for the sandboxes still being made or destroyed. */
    pool_free(w.pool);
    pool_free(w.files_pool);
    json_decref(w.destroying);
    admin_free(w.admin);
    egress_free(w.egress);
    egress_policy_free(w.egress_policy);
    audit_close(w.audit);
    obs_http_stop(w.obs_http);
    if (w.sigfd >= 0) close(w.sigfd);
    api_free(w.api);
    http_free(w.http);
    if (w.loop) wmem_stop(w.loop);
    if (w.loop) loop_free(w.loop);
    if (w.state) {
        w.nsessions = 0;
        write_items(&w);
    }
    wstate_close(w.state);
    sbx_policy_free(w.policy);
    return rc;
}

/* ---------- operator controls (admin.c: admin socket, --max-session-seconds) ---------- */

static int worker_admin_start(worker_t *w, shed_err *err)
{
    _cleanup_free_ char *def = NULL;
    const char *path = w->cfg.admin_socket;
    if (!path) {
        if (asprintf(&def, "%s/admin.sock", wstate_dir(w->state)) < 0) return err_set(err, ENOMEM, "admin socket");
        path = def;
        if (strlen(def) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
            log_warn("no admin socket: %s is too long for a unix socket; give --admin-socket PATH", def);
            path = "";
        }
    }
    admin_opts o = {.loop = w->loop,
                    .worker = w,
                    .audit = w->audit,
                    .default_network = sandbox_policy_network(w->policy),
                    .socket_path = path,
                    .max_session_ms = w->cfg.max_session_ms};
    return admin_start(&o, &w->admin, err);
}

json_t *worker_admin_list(worker_t *w)
{
    static const char *const phases[] = {"waiting_previous", "retrieving", "running", "ending", "stopping"};
    json_t *out = json_array();
    int64_t now = clock_mono_ms();
    for (wsess_t *s = w->sessions; s && out; s = s->next) {
        char at[RFC3339_LEN];
        clock_rfc3339(clock_wall_ms() - (now - s->started_ms), at);
        json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:f,s:i}", "session_id", s->session_id, "work_id", s->work_id,
                              "state", phases[s->phase], "started_at", at, "seconds_running",
                              (double)(now - s->started_ms) / 1000.0, "calls_served", s->calls_done);
        if (!o) continue;
        if (s->sb) {
            json_object_set_new(o, "sandbox_pid", json_integer(sbx_pid(s->sb)));
            json_object_set_new(o, "host_uid", json_integer(sbx_uid(s->sb)));
        } else {
            json_object_set_new(o, "sandbox_pid", json_null());
            json_object_set_new(o, "host_uid", json_null());
        }
        if (s->call_ev)
            json_object_set_new(o, "current_call",
                                json_pack("{s:s?,s:s?,s:I}", "tool", jstr(s->call_ev, "name"), "tool_use_id",
                                          jstr(s->call_ev, "id"), "running_ms",
                                          (json_int_t)(now - s->call_start_ms)));
        else
            json_object_set_new(o, "current_call", json_null());
        json_array_append_new(out, o);
    }
    return out;
}

int worker_admin_kill(worker_t *w, const char *sid, const char *work_id, const char *reason, const char *by,
                      const char *text, shed_err *err)
{
    int n = 0;
    for (wsess_t *s = w->sessions; s; s = s->next) {
        if (strcmp(s->session_id, sid) || (work_id && strcmp(s->work_id, work_id)) || s->phase >= PH_ENDING)
            continue;
        n++;
        slog(LOG_WARN, s->session_id, s->work_id, "killed (%s)", reason);
        s->killed = reason;
        if (s->call_ev) {
            /* Its result names why; the kill is counted and audited with it
             * (call_complete). The sandbox goes away right after. */
            s->call_cancelled = true;
            s->kill_reason = reason;
            sbx_cancel(s->sb, s->call_seq);
        } else {
            metrics_inc(obs_m.kills, LV(reason), 1);
            audit_ev(w, "kill", json_pack("{s:s,s:s,s:s,s:s}", "session_id", s->session_id, "work_id", s->work_id,
                                          "reason", reason, "by", by));
        }
        sess_end(s, LEASE_END_STOP);
        if (s->call_ev) {
            char msg[800];
            snprintf(msg, sizeof(msg), "tool '%s' was killed: %s", jstr(s->call_ev, "name"), text);
            _cleanup_json_ json_t *r = error_result(msg);
            call_complete(s, r);
        }
    }
    if (!n) return err_msg(err, ENOENT, "session_id: no session %s is being served by this worker", sid);
    return 0;
}

int worker_admin_set_policy(worker_t *w, const char *sid, const egress_policy *pol, char *work_id,
                            size_t work_id_len, int *sandbox_pid, shed_err *err)
{
    for (wsess_t *s = w->sessions; s; s = s->next) {
        if (strcmp(s->session_id, sid) || !s->sb || s->phase >= PH_STOPPING) continue;
        int rc = egress_set_policy(w->egress, s->session_id, pol ? pol : w->egress_policy);
        if (rc < 0) return err_set(err, -rc, "egress policy of session %s", sid);
        snprintf(work_id, work_id_len, "%s", s->work_id);
        *sandbox_pid = (int)sbx_pid(s->sb);
        return 0;
    }
    return err_msg(err, ENOENT, "session_id: session %s has no running sandbox on this worker", sid);
}

json_t *worker_admin_expired(worker_t *w, int64_t max_ms)
{
    json_t *ids = json_array();
    int64_t now = clock_mono_ms();
    for (wsess_t *s = w->sessions; s && ids; s = s->next)
        if (max_ms > 0 && s->phase < PH_ENDING && now - s->started_ms >= max_ms)
            json_array_append_new(ids, json_pack("{s:s,s:s}", "session_id", s->session_id, "work_id", s->work_id));
    return ids;
}
