/* The session tool runner's decisions (work-api.md §3.4, mirroring the SDK's
 * SessionToolRunner): history reconcile, de-duplication by event id, the
 * permission gate (allow/ask/deny + user.tool_confirmation), partial
 * fulfilment (tools we do not own stay pending), terminated threads, the
 * serial call queue and the idle clock. Pure logic: no I/O, no timers; the
 * session driver feeds it events and asks it what to run next and when the
 * idle deadline is. Never executes anything itself.
 */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct runner runner_t;

/* Does this worker run a tool of that name? (bash/read/write/edit/glob/grep) */
typedef bool (*runner_owns_fn)(const char *name, void *arg);

typedef enum {
    RUNNER_NOTE_HELD,      /* ask-gated call held for confirmation */
    RUNNER_NOTE_DENIED,    /* denied (server or user): never executed, nothing posted */
    RUNNER_NOTE_CONFIRMED, /* confirmation allowed a held call */
    RUNNER_NOTE_UNOWNED,   /* not our tool: left pending for its owner */
    RUNNER_NOTE_THREAD_DROPPED, /* call of a terminated session thread */
    RUNNER_NOTE_QUEUED,
} runner_note;
typedef void (*runner_note_fn)(runner_note what, json_t *ev, void *arg);

runner_t *runner_new(int64_t max_idle_ms, runner_owns_fn owns, runner_note_fn note, void *arg);
void runner_free(runner_t *r);

/* Reconcile: after the stream is (re)opened, feed the whole history in order. */
void runner_history_begin(runner_t *r);
void runner_history_event(runner_t *r, json_t *ev);
/* ok=false: the listing failed midway; nothing it found is dispatched. */
void runner_history_end(runner_t *r, bool ok, int64_t now_ms);
/* A listing showed the session terminated or deleted (the stream never replays it). */
bool runner_ended(const runner_t *r);

/* A live stream event. Returns true when the session ended (terminated/deleted). */
bool runner_stream_event(runner_t *r, json_t *ev, int64_t now_ms);

/* The next call to execute (new reference to its agent.tool_use event), or
 * NULL when one is in flight or none is ready. One at a time per session. */
json_t *runner_next(runner_t *r);
/* The in-flight call finished. posted=false: its result did not reach the
 * session; it is not run again by this runner. */
void runner_call_done(runner_t *r, const char *id, bool posted, int64_t now_ms);

/* Known answered. A call's id is forgotten once its result came on the
 * stream (or a listing showed it and the stream has since caught up with
 * that listing) and the call is no longer queued, in flight or held: it can
 * then only come again in a listing, which shows its result with it. So this
 * is false again for such an id, and the runner's memory is bounded by the
 * open calls, not by the session's length. */
bool runner_is_answered(const runner_t *r, const char *id);
bool runner_busy(const runner_t *r); /* a call queued or in flight */
int runner_queued(const runner_t *r);
/* Ids queued (not yet started), for cancellation at teardown. */
json_t *runner_take_queue(runner_t *r); /* new array of events; queue emptied */

/* Idle clock: absolute deadline (ms, same clock as now_ms), or -1 when not armed. */
int64_t runner_idle_deadline(const runner_t *r);
/* Counters for reports. */
typedef struct runner_stats {
    int executed, denied, unowned, held, deduped;
    long ids;      /* entries in the id sets now */
    long id_bytes; /* heap bytes of the id sets now */
} runner_stats;
runner_stats runner_get_stats(const runner_t *r);
