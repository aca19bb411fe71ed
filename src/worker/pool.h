/* A small thread pool for the few things that cannot be made non-blocking
 * (creating and destroying sandboxes: clone, mounts, cgroup writes, the kill
 * ladder's waits). Jobs run on the pool's threads; their completions run on
 * the event loop's thread (an eventfd wakes the loop), so all worker state
 * is still touched by one thread only. Threads block every signal.
 */
#pragma once
#include "base/err.h"
#include "base/loop.h"

typedef struct pool pool_t;
typedef void (*pool_fn)(void *arg);

int pool_new(loop_t *loop, int threads, pool_t **out, shed_err *err);
/* Run work(arg) on a pool thread, then done(arg) on the loop thread.
 * Threads start on demand, up to `threads`. Returns 0, -ENOMEM, or -EAGAIN
 * when the pool has no thread and none could be started. */
int pool_submit(pool_t *p, pool_fn work, pool_fn done, void *arg);
int pool_pending(const pool_t *p);
/* Waits for every submitted job (running their completions), then stops. */
void pool_free(pool_t *p);
