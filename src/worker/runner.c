/* Session runner decisions; see runner.h. The SDK executes calls inline, so
 * events are not read while a call runs; here events keep arriving while a
 * call is in flight, so a queued or running call also defers the idle clock
 * (an expiry then waits until the session is quiet again). */
#include "worker/runner.h"

#include "base/idset.h"

#include <stdlib.h>
#include <string.h>

struct runner {
    int64_t max_idle_ms;
    runner_owns_fn owns;
    runner_note_fn note;
    void *arg;
    /* Id sets: digests, not strings (base/idset.h). A call's id leaves all
     * of them once it is proven answered and can no longer come again on
     * the stream (see forget()), so they hold the open calls of a session,
     * not its whole history. */
    idset_t seen;        /* tool-use ids seen (stream or history) */
    idset_t answered;    /* tool-use ids with a result (or denied) */
    idset_t dispatched;  /* ids queued, in flight or finished by this runner */
    idset_t proven;      /* answered on the stream while queued or in flight */
    /* After a reconcile, until the stream has caught up with the listing. */
    idset_t listed;      /* event ids of the tool uses and results listed */
    idset_t hist_answered; /* tool-use ids the listing showed answered */
    json_t *verdicts;    /* tool_use_id -> "allow"/"deny" */
    json_t *awaiting;    /* tool_use_id -> held event */
    json_t *blockers;    /* idle-clock blockers (gated work) */
    json_t *terminated_threads;
    json_t *queue;       /* array of events to execute, FIFO */
    json_t *history_pending; /* during reconcile */
    char *inflight;
    bool last_ended_turn;
    bool history_read;
    bool ended; /* a listing showed session.status_terminated / session.deleted */
    /* idle clock */
    bool arm_pending;
    bool idle_may_be_stale;
    int64_t deadline;
    runner_stats stats;
};

static const char *sget(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static bool has(const idset_t *set, const char *id)
{
    return idset_has(set, id);
}

static void add(idset_t *set, const char *id)
{
    idset_add(set, id); /* on ENOMEM the id is not remembered: at worst a duplicate is re-checked */
}

/* Small sets keyed by string (blockers, terminated threads). */
static bool jhas(json_t *set, const char *id)
{
    return id && json_object_get(set, id) != NULL;
}

static void jadd(json_t *set, const char *id)
{
    if (id) json_object_set_new(set, id, json_true());
}

runner_t *runner_new(int64_t max_idle_ms, runner_owns_fn owns, runner_note_fn note, void *arg)
{
    runner_t *r = calloc(1, sizeof(*r));
    if (!r) return NULL;
    r->max_idle_ms = max_idle_ms;
    r->owns = owns;
    r->note = note;
    r->arg = arg;
    r->verdicts = json_object();
    r->awaiting = json_object();
    r->blockers = json_object();
    r->terminated_threads = json_object();
    r->queue = json_array();
    r->deadline = -1;
    if (!r->verdicts || !r->awaiting ||
        !r->blockers || !r->terminated_threads || !r->queue) {
        runner_free(r);
        return NULL;
    }
    return r;
}

void runner_free(runner_t *r)
{
    if (!r) return;
    idset_free(&r->seen);
    idset_free(&r->answered);
    idset_free(&r->dispatched);
    idset_free(&r->proven);
    idset_free(&r->listed);
    idset_free(&r->hist_answered);
    json_decref(r->verdicts);
    json_decref(r->awaiting);
    json_decref(r->blockers);
    json_decref(r->terminated_threads);
    json_decref(r->queue);
    json_decref(r->history_pending);
    free(r->inflight);
    free(r);
}

static void notify(runner_t *r, runner_note what, json_t *ev)
{
    if (r->note) r->note(what, ev, r->arg);
}

/* ---- idle clock ---- */

static bool is_tool_use(const char *t)
{
    return t && (!strcmp(t, "agent.tool_use") || !strcmp(t, "agent.custom_tool_use"));
}

static bool ends_turn(json_t *ev)
{
    const char *t = sget(ev, "type");
    if (!t || strcmp(t, "session.status_idle")) return false;
    json_t *sr = json_object_get(ev, "stop_reason");
    const char *st = json_is_object(sr) ? sget(sr, "type") : NULL;
    return !st || strcmp(st, "requires_action") != 0;
}

static bool idle_neutral(const char *t)
{
    return t && (!strcmp(t, "user.tool_confirmation") ||
                 !strcmp(t, "session.thread_status_terminated"));
}

static bool blocked(const runner_t *r)
{
    return json_object_size(r->blockers) > 0 || r->inflight || json_array_size(r->queue) > 0;
}

static void idle_arm(runner_t *r, int64_t now)
{
    if (r->max_idle_ms <= 0) return;
    if (blocked(r)) {
        r->arm_pending = true;
        r->deadline = -1;
        return;
    }
    r->arm_pending = false;
    r->deadline = now + r->max_idle_ms;
}

static void idle_disarm(runner_t *r)
{
    r->arm_pending = false;
    r->deadline = -1;
}

static void idle_block(runner_t *r, const char *id)
{
    jadd(r->blockers, id);
    if (r->deadline >= 0) {
        r->arm_pending = true;
        r->deadline = -1;
    }
}

static void idle_settle(runner_t *r, int64_t now)
{
    if (r->arm_pending && !blocked(r)) idle_arm(r, now);
}

static void idle_unblock(runner_t *r, const char *id, int64_t now)
{
    json_object_del(r->blockers, id);
    idle_settle(r, now);
}

static void idle_note_event(runner_t *r, json_t *ev, int64_t now)
{
    const char *t = sget(ev, "type");
    if (r->idle_may_be_stale && t && !strcmp(t, "session.thread_status_terminated"))
        idle_disarm(r);
    if (idle_neutral(t)) return;
    r->idle_may_be_stale = false;
    if (ends_turn(ev))
        idle_arm(r, now);
    else
        idle_disarm(r);
}

int64_t runner_idle_deadline(const runner_t *r)
{
    return r->deadline;
}

/* ---- forgetting answered calls ----
 * The stream delivers a session's events once each, in the order they were
 * emitted, and never replays (work-api.md §3.4); a call's result is emitted
 * after the call. So once a result has come on the stream, its call cannot
 * come on the stream again, and every later history listing shows the
 * result with the call (history_end skips it): the id is forgotten, dropped
 * from every set with its verdict. A result seen only in a listing proves
 * less: the call may still be on its way on the stream (emitted after the
 * stream opened, before the listing). Those ids are kept until the stream
 * brings a tool use or result no listing had: everything emitted before the
 * listing has then been delivered. A call queued, in flight or held is never
 * forgotten while it is there (proven marks one queued or in flight; it is
 * forgotten when it leaves). So the sets hold a session's open calls and the
 * ids of one listing at most, never its whole history. */

static bool busy_with(const runner_t *r, uint64_t h)
{
    if (r->inflight && idset_digest(r->inflight) == h) return true;
    size_t i;
    json_t *ev;
    json_array_foreach(r->queue, i, ev)
    {
        const char *id = sget(ev, "id");
        if (id && idset_digest(id) == h) return true;
    }
    const char *k;
    json_t *v;
    json_object_foreach(r->awaiting, k, v)
    {
        if (idset_digest(k) == h) return true;
    }
    return false;
}

static void drop_digest(runner_t *r, uint64_t h)
{
    idset_del_digest(&r->seen, h);
    idset_del_digest(&r->answered, h);
    idset_del_digest(&r->dispatched, h);
    idset_del_digest(&r->proven, h);
}

/* The call's result is in the session's log and the call cannot come on the
 * stream again. */
static void forget(runner_t *r, const char *id)
{
    if (!id) return;
    uint64_t h = idset_digest(id);
    if (busy_with(r, h)) {
        add(&r->answered, id);
        if (!json_object_get(r->awaiting, id)) idset_add_digest(&r->proven, h);
        return;
    }
    drop_digest(r, h);
    json_object_del(r->verdicts, id);
}

/* A call that leaves the queue or finishes: forget it if its result came
 * on the stream meanwhile. */
static void forget_if_proven(runner_t *r, const char *id)
{
    if (id && idset_has(&r->proven, id)) forget(r, id);
}

/* The stream brought an event no listing had: every call a listing showed
 * answered has come on the stream already or never will. */
static void stream_caught_up(runner_t *r)
{
    size_t pos = 0;
    uint64_t h;
    while (idset_next(&r->hist_answered, &pos, &h)) {
        if (!busy_with(r, h))
            drop_digest(r, h);
        else if (idset_has_digest(&r->answered, h))
            idset_add_digest(&r->proven, h);
    }
    idset_free(&r->hist_answered);
    idset_free(&r->listed);
    /* Verdicts of calls no longer known (they come back with the call in a
     * listing, should it ever show the call again). */
    const char *k;
    json_t *v, *tmp;
    json_object_foreach_safe(r->verdicts, tmp, k, v)
    {
        if (!has(&r->seen, k) && !json_object_get(r->awaiting, k)) json_object_del(r->verdicts, k);
    }
}

/* A tool use or result on the stream: past the listings? */
static void stream_progress(runner_t *r, json_t *ev)
{
    if (!r->listed.n && !r->hist_answered.n) return;
    const char *id = sget(ev, "id");
    if (id && !has(&r->listed, id)) stream_caught_up(r);
}

/* ---- routing ---- */

static bool in_terminated_thread(runner_t *r, json_t *ev)
{
    const char *th = sget(ev, "session_thread_id");
    return th && *th && jhas(r->terminated_threads, th);
}

/* Queue a call of ours; false when the call is not ours (left pending). */
static bool enqueue(runner_t *r, json_t *ev)
{
    const char *id = sget(ev, "id");
    if (!id || has(&r->answered, id) || has(&r->dispatched, id)) {
        r->stats.deduped++;
        return true;
    }
    const char *name = sget(ev, "name");
    const char *type = sget(ev, "type");
    /* Only built-in agent.tool_use calls are ours; agent.custom_tool_use
     * belongs to the app that registered the tool, whatever its name. */
    if (!name || !type || strcmp(type, "agent.tool_use") || !r->owns || !r->owns(name, r->arg)) {
        /* Partial fulfilment: another client owns it. Post nothing, leave it
         * pending (not answered), so reconcile keeps surfacing it. */
        r->stats.unowned++;
        notify(r, RUNNER_NOTE_UNOWNED, ev);
        return false;
    }
    add(&r->dispatched, id);
    json_array_append(r->queue, ev);
    notify(r, RUNNER_NOTE_QUEUED, ev);
    return true;
}

static void apply_verdict(runner_t *r, json_t *ev, const char *verdict, int64_t now)
{
    const char *id = sget(ev, "id");
    bool was_held = json_object_get(r->awaiting, id) != NULL;
    json_incref(ev);
    json_object_del(r->awaiting, id);
    if (verdict && !strcmp(verdict, "allow")) {
        notify(r, RUNNER_NOTE_CONFIRMED, ev);
        bool ours = enqueue(r, ev);
        /* The queued call itself defers the clock now. */
        idle_unblock(r, id, now);
        /* A confirmed call of another owner: its answer is still to come,
         * so the session is not idle; the SDK disarms the clock here too
         * (SessionToolRunner #execute, unowned with confirmation allow). */
        if (!ours) idle_disarm(r);
    } else {
        if (was_held) idle_unblock(r, id, now);
        add(&r->answered, id);
        r->stats.denied++;
        notify(r, RUNNER_NOTE_DENIED, ev);
    }
    json_decref(ev);
}

static void route(runner_t *r, json_t *ev, int64_t now)
{
    const char *id = sget(ev, "id");
    if (!id) return;
    if (in_terminated_thread(r, ev)) {
        notify(r, RUNNER_NOTE_THREAD_DROPPED, ev);
        return;
    }
    const char *perm = sget(ev, "evaluated_permission");
    const char *verdict = (perm && !strcmp(perm, "deny")) ? "deny" : sget(r->verdicts, id);
    if (!verdict) {
        if (!perm || !strcmp(perm, "allow")) {
            enqueue(r, ev);
        } else if (!json_object_get(r->awaiting, id)) {
            /* "ask", or a permission we do not know: fail closed, hold. */
            json_object_set(r->awaiting, id, ev);
            idle_block(r, id);
            r->stats.held++;
            notify(r, RUNNER_NOTE_HELD, ev);
        }
        return;
    }
    apply_verdict(r, ev, verdict, now);
}

static void note_confirmation(runner_t *r, json_t *ev, int64_t now)
{
    const char *tid = sget(ev, "tool_use_id");
    const char *res = sget(ev, "result");
    if (!tid) return;
    /* An unknown verdict is a deny (fail closed). */
    const char *v = (res && !strcmp(res, "allow")) ? "allow" : "deny";
    json_object_set_new(r->verdicts, tid, json_string(v));
    json_t *held = json_object_get(r->awaiting, tid);
    if (held) apply_verdict(r, held, v, now);
}

static void release_terminated_holds(runner_t *r, int64_t now)
{
    const char *k;
    json_t *v, *tmp;
    json_object_foreach_safe(r->awaiting, tmp, k, v)
    {
        if (!in_terminated_thread(r, v)) continue;
        notify(r, RUNNER_NOTE_THREAD_DROPPED, v);
        char *id = strdup(k);
        json_object_del(r->awaiting, k);
        if (r->idle_may_be_stale) idle_disarm(r);
        if (id) idle_unblock(r, id, now);
        free(id);
    }
}

/* ---- history ---- */

void runner_history_begin(runner_t *r)
{
    json_decref(r->history_pending);
    r->history_pending = json_array();
    r->last_ended_turn = false;
    r->history_read = false;
}

void runner_history_event(runner_t *r, json_t *ev)
{
    const char *t = sget(ev, "type");
    if (!t || !r->history_pending) return;
    if (is_tool_use(t)) {
        const char *id = sget(ev, "id");
        if (id) {
            add(&r->seen, id);
            add(&r->listed, id);
            if (!has(&r->answered, id)) json_array_append(r->history_pending, ev);
        }
    } else if (!strcmp(t, "user.tool_result") || !strcmp(t, "user.custom_tool_result")) {
        const char *tid = sget(ev, t[5] == 'c' ? "custom_tool_use_id" : "tool_use_id");
        add(&r->listed, sget(ev, "id"));
        add(&r->answered, tid);
        add(&r->hist_answered, tid);
    } else if (!strcmp(t, "user.tool_confirmation")) {
        const char *tid = sget(ev, "tool_use_id");
        const char *res = sget(ev, "result");
        if (tid && !has(&r->answered, tid))
            json_object_set_new(r->verdicts, tid,
                                json_string(res && !strcmp(res, "allow") ? "allow" : "deny"));
    } else if (!strcmp(t, "session.thread_status_terminated")) {
        jadd(r->terminated_threads, sget(ev, "session_thread_id"));
    } else if (!strcmp(t, "session.status_terminated") || !strcmp(t, "session.deleted")) {
        /* The stream does not replay it: a session that ended before (or
         * while) the stream opened says so only in its history. */
        r->ended = true;
    }
    if (!idle_neutral(t)) r->last_ended_turn = ends_turn(ev);
}

bool runner_ended(const runner_t *r)
{
    return r->ended;
}

void runner_history_end(runner_t *r, bool ok, int64_t now)
{
    json_t *pending = r->history_pending;
    r->history_pending = NULL;
    if (!pending) return;
    if (!ok) {
        /* Undo speculative `seen` entries; dispatch nothing from a partial read. */
        size_t i;
        json_t *ev;
        json_array_foreach(pending, i, ev)
        {
            const char *id = sget(ev, "id");
            if (id && !has(&r->dispatched, id)) idset_del(&r->seen, id);
        }
        r->idle_may_be_stale = true;
        release_terminated_holds(r, now);
        json_decref(pending);
        return;
    }
    r->history_read = true;
    r->idle_may_be_stale = false;
    release_terminated_holds(r, now);
    idle_disarm(r);
    size_t i;
    json_t *ev;
    int outstanding = 0;
    json_array_foreach(pending, i, ev)
    {
        const char *id = sget(ev, "id");
        if (has(&r->answered, id)) continue;
        route(r, ev, now);
    }
    /* Held calls whose verdict arrived outside the listed window. */
    const char *k;
    json_t *v, *tmp;
    json_object_foreach_safe(r->awaiting, tmp, k, v)
    {
        const char *verdict = sget(r->verdicts, k);
        if (verdict) apply_verdict(r, v, verdict, now);
    }
    json_array_foreach(pending, i, ev)
    {
        const char *id = sget(ev, "id");
        if (!has(&r->answered, id) && !has(&r->dispatched, id) && !in_terminated_thread(r, ev) &&
            !json_object_get(r->awaiting, id))
            outstanding++;
    }
    /* Calls we run are answered once they finish (the SDK runs them inline
     * here), so they only defer the clock (idle_arm sees blocked()); calls
     * we do not own keep it disarmed, like the SDK. */
    if (r->last_ended_turn && outstanding == 0)
        idle_arm(r, now);
    else
        idle_disarm(r);
    json_decref(pending);
}

/* ---- live stream ---- */

bool runner_stream_event(runner_t *r, json_t *ev, int64_t now)
{
    const char *t = sget(ev, "type");
    if (!t) return false;
    if (is_tool_use(t)) {
        stream_progress(r, ev);
        /* Disarm before routing so the clock reflects the new work. */
        idle_note_event(r, ev, now);
        const char *id = sget(ev, "id");
        if (id && !has(&r->seen, id)) {
            add(&r->seen, id);
            route(r, ev, now);
        } else {
            r->stats.deduped++;
        }
        return false;
    }
    if (!strcmp(t, "user.tool_confirmation")) {
        idle_note_event(r, ev, now);
        note_confirmation(r, ev, now);
        return false;
    }
    if (!strcmp(t, "user.tool_result") || !strcmp(t, "user.custom_tool_result")) {
        stream_progress(r, ev);
        forget(r, sget(ev, t[5] == 'c' ? "custom_tool_use_id" : "tool_use_id"));
    } else if (!strcmp(t, "session.thread_status_terminated")) {
        idle_note_event(r, ev, now);
        jadd(r->terminated_threads, sget(ev, "session_thread_id"));
        release_terminated_holds(r, now);
        return false;
    } else if (!strcmp(t, "session.status_terminated") || !strcmp(t, "session.deleted")) {
        idle_disarm(r);
        return true;
    }
    idle_note_event(r, ev, now);
    return false;
}

/* ---- queue ---- */

json_t *runner_next(runner_t *r)
{
    while (!r->inflight && json_array_size(r->queue) > 0) {
        json_t *ev = json_incref(json_array_get(r->queue, 0));
        json_array_remove(r->queue, 0);
        const char *id = sget(ev, "id");
        if (has(&r->answered, id) || in_terminated_thread(r, ev)) {
            /* Answered elsewhere (or its thread ended) while it waited. */
            forget_if_proven(r, id);
            json_decref(ev);
            continue;
        }
        r->inflight = strdup(id);
        r->stats.executed++;
        return ev;
    }
    return NULL;
}

void runner_call_done(runner_t *r, const char *id, bool posted, int64_t now)
{
    if (posted) add(&r->answered, id);
    if (r->inflight && id && !strcmp(r->inflight, id)) {
        free(r->inflight);
        r->inflight = NULL;
        forget_if_proven(r, id);
    }
    idle_settle(r, now);
}

bool runner_is_answered(const runner_t *r, const char *id)
{
    return has(&r->answered, id);
}

bool runner_busy(const runner_t *r)
{
    return r->inflight || json_array_size(r->queue) > 0;
}

int runner_queued(const runner_t *r)
{
    return (int)json_array_size(r->queue);
}

json_t *runner_take_queue(runner_t *r)
{
    json_t *q = r->queue;
    r->queue = json_array();
    return q;
}

runner_stats runner_get_stats(const runner_t *r)
{
    runner_stats st = r->stats;
    const idset_t *sets[] = {&r->seen, &r->answered, &r->dispatched, &r->proven, &r->listed, &r->hist_answered};
    for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++) {
        st.ids += (long)sets[i]->n;
        st.id_bytes += (long)idset_bytes(sets[i]);
    }
    return st;
}
