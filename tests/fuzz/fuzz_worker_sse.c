/* Fuzz the SSE parser: arbitrary bytes, split at a data-chosen point, must
 * never crash, overrun or grow past the limits; chunking must not change
 * what is dispatched. */
#include "worker/sse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint64_t hash;
    size_t n;
} acc_t;

static int cb(const sse_event *ev, void *arg)
{
    acc_t *a = arg;
    a->n++;
    const char *parts[3] = {ev->type, ev->data, ev->id};
    for (int i = 0; i < 3; i++)
        for (const char *p = parts[i]; *p; p++) a->hash = a->hash * 1099511628211ULL ^ (uint8_t)*p;
    if (strlen(ev->data) > ev->data_len) abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    acc_t one = {0}, two = {0};
    sse_parser p;
    sse_init(&p, cb, &one);
    int r1 = sse_feed(&p, (const char *)data, size);
    sse_free(&p);
    sse_init(&p, cb, &two);
    size_t cut = size ? data[0] % size : 0;
    int r2 = sse_feed(&p, (const char *)data, cut);
    if (r2 == 0) r2 = sse_feed(&p, (const char *)data + cut, size - cut);
    sse_free(&p);
    if (r1 == 0 && r2 == 0 && (one.n != two.n || one.hash != two.hash)) abort();
    return 0;
}
