/* The worker's state directory (architecture.md "State on the host"):
 *   worker.json                     the work items this worker holds
 *   sessions/<session_id>/workspace the session's workspace (persists across items)
 *   sessions/<session_id>/calls/slot.rec
 *                                   the session's live call record: "started" before
 *                                   a call goes to the sandbox, then its result until
 *                                   the result is posted (overwritten in place)
 *   sessions/<session_id>/calls/<tool_use_id>
 *                                   a record the next call displaced (never posted)
 * The call records make a restart safe: a call whose result was recorded is
 * posted, not run again; a call that was only started is answered with an
 * error ("worker restarted while this call was running"), never re-run.
 * See docs/reliability.md. Never stores a key, token or secret.
 */
#pragma once
#include <jansson.h>
#include <stdbool.h>

#include "base/err.h"

typedef struct wstate wstate_t;

int wstate_open(const char *dir, wstate_t **out, shed_err *err);
void wstate_close(wstate_t *s);
const char *wstate_dir(const wstate_t *s);

/* Ids used as file names: [A-Za-z0-9_-]{1,128}. */
bool wstate_id_ok(const char *id);

/* Create (if needed) sessions/<sid>/workspace; returns its path (malloc'd). */
int wstate_session_workspace(wstate_t *s, const char *sid, char **path, shed_err *err);
/* Remove sessions/<sid> entirely (the session terminated). */
int wstate_session_remove(wstate_t *s, const char *sid, shed_err *err);
/* Session ids present on disk (new array of strings). */
json_t *wstate_sessions(wstate_t *s);

enum wstate_call { WSTATE_CALL_NONE = 0, WSTATE_CALL_STARTED, WSTATE_CALL_RESULT };
int wstate_call_started(wstate_t *s, const char *sid, const char *call_id, shed_err *err);
/* result: {"is_error":..,"content":[...]} */
int wstate_call_result(wstate_t *s, const char *sid, const char *call_id, json_t *result,
                       shed_err *err);
int wstate_call_clear(wstate_t *s, const char *sid, const char *call_id);
/* Look a call up; *result (new ref) when WSTATE_CALL_RESULT. */
enum wstate_call wstate_call_get(wstate_t *s, const char *sid, const char *call_id,
                                 json_t **result);

/* Remove half-written records (*.tmp) a dead worker left; returns how many. */
int wstate_sweep_tmp(wstate_t *s);

/* worker.json: items held (array of {"work_id","session_id"}), rewritten atomically. */
int wstate_write_items(wstate_t *s, const char *worker_id, json_t *items, shed_err *err);
json_t *wstate_read_items(wstate_t *s);
