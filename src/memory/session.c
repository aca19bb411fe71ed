/* A session's memory stores together: the sync cadence (syncIfDue after each
 * tool call), the one final sync, the push-only flush, and cleanup — the
 * session-level half of SessionMemoryStores. Never runs two passes on one
 * store at once; never runs finish() twice (it skips the delete wait). */
#include <errno.h>
#include <stdlib.h>

#include "base/log.h"
#include "memory/memory.h"

#define MAX_STORES 8

struct memory_session {
    int64_t interval_ms;
    int64_t last_sync_ms;
    int finished;
    int syncing; /* a sync_if_due/finish pass is running */
    memory_store_t *stores[MAX_STORES];
    size_t n;
};

int memory_session_new(memory_session_t **out, int64_t interval_ms, int64_t now_ms, shed_err *err)
{
    *out = NULL;
    int r = memory_check_sync_interval(interval_ms, err);
    if (r < 0) return r;
    memory_session_t *m = calloc(1, sizeof *m);
    if (!m) return err_set(err, ENOMEM, "memory session");
    m->interval_ms = interval_ms;
    m->last_sync_ms = now_ms;
    *out = m;
    return 0;
}

int memory_session_add(memory_session_t *m, memory_store_t *s, shed_err *err)
{
    if (m->n >= MAX_STORES)
        return err_msg(err, E2BIG, "a session has at most %d memory stores", MAX_STORES);
    m->stores[m->n++] = s;
    return 0;
}

size_t memory_session_count(const memory_session_t *m)
{
    return m->n;
}

memory_store_t *memory_session_store(memory_session_t *m, size_t i)
{
    return i < m->n ? m->stores[i] : NULL;
}

void memory_session_mounted(memory_session_t *m, int64_t now_ms)
{
    m->last_sync_ms = now_ms;
}

static int any_busy(const memory_session_t *m)
{
    for (size_t i = 0; i < m->n; i++)
        if (memory_store_busy(m->stores[i])) return 1;
    return 0;
}

static void start_all(memory_session_t *m, int final, int64_t now_ms)
{
    for (size_t i = 0; i < m->n; i++) memory_store_sync_start(m->stores[i], final, now_ms);
    m->syncing = 1;
}

int memory_session_sync_if_due(memory_session_t *m, int64_t now_ms)
{
    if (m->finished || m->n == 0 || any_busy(m)) return 0;
    if (now_ms - m->last_sync_ms < m->interval_ms) return 0;
    start_all(m, 0, now_ms);
    return 1;
}

int memory_session_finish(memory_session_t *m, int64_t now_ms, shed_err *err)
{
    if (m->finished)
        return err_msg(err, EALREADY,
                       "finish was already called: it is the session's last sync and runs once");
    m->finished = 1;
    /* a periodic sync still running is cut off; the last one starts over */
    for (size_t i = 0; i < m->n; i++) memory_store_abort(m->stores[i]);
    start_all(m, 1, now_ms);
    return 0;
}

int memory_session_flush(memory_session_t *m, int64_t now_ms)
{
    for (size_t i = 0; i < m->n; i++) {
        memory_store_abort(m->stores[i]);
        memory_store_flush_start(m->stores[i], now_ms);
    }
    m->syncing = 0;
    return 0;
}

int memory_session_run(memory_session_t *m, int64_t now_ms)
{
    int busy = 0;
    for (size_t i = 0; i < m->n; i++) busy |= memory_store_run(m->stores[i], now_ms);
    if (!busy && m->syncing) {
        m->syncing = 0;
        m->last_sync_ms = now_ms;
    }
    return busy;
}

void memory_session_abort(memory_session_t *m)
{
    for (size_t i = 0; i < m->n; i++) memory_store_abort(m->stores[i]);
    m->syncing = 0;
}

void memory_session_dispose_free(memory_session_t *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->n; i++) {
        shed_err err = {0};
        if (memory_store_dispose(m->stores[i], &err) < 0)
            log_warn("memory store %s: failed to remove the memory store folder: %s",
                     memory_store_id(m->stores[i]), err.msg);
        memory_store_free(m->stores[i]);
    }
    free(m);
}
