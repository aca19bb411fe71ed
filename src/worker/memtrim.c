/* Heap upkeep of the worker; see memtrim.h. Single-threaded use (the loop's
 * thread), one worker per process. */
#include "worker/memtrim.h"

#include <malloc.h>
#include <stdbool.h>

static uint64_t trim_timer;
static int64_t trim_period_ms;

void wmem_init(void)
{
    mallopt(M_ARENA_MAX, 1);
}

void wmem_trim(void)
{
    /* Keeps 64 KB at the top for the next allocations. */
    malloc_trim(64 * 1024);
}

void wmem_started(void)
{
    static bool done;
    if (done) return;
    done = true;
    wmem_trim();
}

static void on_trim(loop_t *loop, void *arg)
{
    (void)arg;
    trim_timer = 0;
    wmem_trim();
    trim_timer = loop_timer(loop, trim_period_ms, on_trim, NULL);
}

void wmem_start(loop_t *loop, int64_t period_ms)
{
    wmem_stop(loop);
    trim_period_ms = period_ms;
    if (period_ms > 0) trim_timer = loop_timer(loop, period_ms, on_trim, NULL);
}

void wmem_stop(loop_t *loop)
{
    if (trim_timer) loop_timer_cancel(loop, trim_timer);
    trim_timer = 0;
}
