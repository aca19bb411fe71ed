/* The worker's heap over a long run: one malloc arena (the pool's threads
 * allocate little; an arena each would keep its own free pages), and free
 * pages inside the heap handed back to the kernel now and then, so RSS
 * follows what is in use rather than the high-water mark. Never frees or
 * moves anything in use, never pages out memory in use. */
#pragma once
#include "base/loop.h"

/* Before any thread is created. */
void wmem_init(void);
/* Every period_ms on the loop (0: never); wmem_stop before freeing the loop. */
void wmem_start(loop_t *loop, int64_t period_ms);
void wmem_stop(loop_t *loop);
/* Hand free heap pages back now (e.g. after many sessions ended). */
void wmem_trim(void);
/* Start-up is over (the first poll was answered): hand back what start-up
 * allocated and freed (library initialisation, configuration). Once. */
void wmem_started(void);
