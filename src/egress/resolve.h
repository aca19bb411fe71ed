/* Asynchronous getaddrinfo for the egress: a bounded thread pool whose
 * results are delivered on the loop thread. See resolve.c. */
#pragma once
#include "base/err.h"
#include "base/loop.h"
#include "egress/egress_int.h"

typedef struct resolver resolver;
typedef struct resolve_job resolve_job;
/* Called on the loop thread; gai_rc is getaddrinfo's return (0 = ok). */
typedef void (*resolve_cb)(void *arg, int gai_rc, const egress_addr *addrs, int naddrs);

int resolver_new(loop_t *loop, resolver **out, shed_err *err);
/* Joins the threads (a lookup in progress finishes first). */
void resolver_free(resolver *r);
/* NULL if the queue is full or out of memory. */
resolve_job *resolver_start(resolver *r, const char *name, resolve_cb cb, void *arg);
/* The callback will not be called; the job frees itself. Loop thread only. */
void resolver_cancel(resolve_job *j);
