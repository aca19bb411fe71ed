/* Scope-bound cleanup (bubblewrap/systemd style): one happy path, early
 * returns, no goto ladders. steal_pointer()/steal_fd() hand ownership out. */
#pragma once
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <jansson.h>

static inline void cleanup_freep(void *p)
{
    free(*(void **)p);
}
static inline void cleanup_closep(int *fd)
{
    if (*fd >= 0) {
        int saved = errno;
        close(*fd);
        errno = saved;
    }
}
static inline void cleanup_fclosep(FILE **f)
{
    if (*f) fclose(*f);
}
static inline void cleanup_jsonp(json_t **j)
{
    if (*j) json_decref(*j);
}

#define _cleanup_free_   __attribute__((cleanup(cleanup_freep)))
#define _cleanup_close_  __attribute__((cleanup(cleanup_closep)))
#define _cleanup_fclose_ __attribute__((cleanup(cleanup_fclosep)))
#define _cleanup_json_   __attribute__((cleanup(cleanup_jsonp)))

static inline void *steal_pointer_impl(void *pp)
{
    void **p = pp;
    void *v = *p;
    *p = NULL;
    return v;
}
#define steal_pointer(pp) ((__typeof__(*(pp)))steal_pointer_impl(pp))

static inline int steal_fd(int *fd)
{
    int v = *fd;
    *fd = -1;
    return v;
}

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
