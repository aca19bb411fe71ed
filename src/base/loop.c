/* epoll + timer heap; see loop.h. */
#include "base/loop.h"

#include "base/clock.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    loop_fd_cb cb;
    void *arg;
    uint32_t gen;
    bool used;
} watcher_t;

typedef struct {
    int64_t deadline;
    uint64_t id;
    loop_timer_cb cb;
    void *arg;
} timer_t_;

struct loop {
    int epfd;
    watcher_t *w;
    int nw;
    uint32_t gen;
    timer_t_ *heap;
    size_t nheap, capheap;
    uint64_t next_id;
    int64_t now;
    bool stop;
};

loop_t *loop_new(void)
{
    loop_t *l = calloc(1, sizeof(*l));
    if (!l) return NULL;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0) {
        free(l);
        return NULL;
    }
    l->now = clock_mono_ms();
    return l;
}

void loop_free(loop_t *l)
{
    if (!l) return;
    close(l->epfd);
    free(l->w);
    free(l->heap);
    free(l);
}

static int grow_watchers(loop_t *l, int fd)
{
    if (fd < l->nw) return 0;
    int n = l->nw ? l->nw : 64;
    while (n <= fd) n *= 2;
    watcher_t *w = realloc(l->w, (size_t)n * sizeof(*w));
    if (!w) return -ENOMEM;
    memset(w + l->nw, 0, (size_t)(n - l->nw) * sizeof(*w));
    l->w = w;
    l->nw = n;
    return 0;
}

int loop_add(loop_t *l, int fd, uint32_t events, loop_fd_cb cb, void *arg)
{
    if (fd < 0) return -EBADF;
    int rc = grow_watchers(l, fd);
    if (rc < 0) return rc;
    watcher_t *w = &l->w[fd];
    if (w->used) return -EEXIST;
    w->gen = ++l->gen;
    struct epoll_event ev = {.events = events, .data.u64 = ((uint64_t)w->gen << 32) | (uint32_t)fd};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) return -errno;
    w->cb = cb;
    w->arg = arg;
    w->used = true;
    return 0;
}

int loop_mod(loop_t *l, int fd, uint32_t events)
{
    if (fd < 0 || fd >= l->nw || !l->w[fd].used) return -ENOENT;
    struct epoll_event ev = {.events = events,
                             .data.u64 = ((uint64_t)l->w[fd].gen << 32) | (uint32_t)fd};
    return epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}

int loop_del(loop_t *l, int fd)
{
    if (fd < 0 || fd >= l->nw || !l->w[fd].used) return -ENOENT;
    l->w[fd].used = false;
    l->w[fd].gen = 0;
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
    return 0;
}

bool loop_has(loop_t *l, int fd)
{
    return fd >= 0 && fd < l->nw && l->w[fd].used;
}

static void heap_swap(timer_t_ *a, timer_t_ *b)
{
    timer_t_ t = *a;
    *a = *b;
    *b = t;
}

static bool heap_less(const timer_t_ *a, const timer_t_ *b)
{
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->id < b->id);
}

static void heap_up(loop_t *l, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&l->heap[i], &l->heap[p])) break;
        heap_swap(&l->heap[i], &l->heap[p]);
        i = p;
    }
}

static void heap_down(loop_t *l, size_t i)
{
    for (;;) {
        size_t a = 2 * i + 1, b = a + 1, m = i;
        if (a < l->nheap && heap_less(&l->heap[a], &l->heap[m])) m = a;
        if (b < l->nheap && heap_less(&l->heap[b], &l->heap[m])) m = b;
        if (m == i) break;
        heap_swap(&l->heap[i], &l->heap[m]);
        i = m;
    }
}

static void heap_remove(loop_t *l, size_t i)
{
    l->nheap--;
    if (i == l->nheap) return;
    l->heap[i] = l->heap[l->nheap];
    heap_down(l, i);
    heap_up(l, i);
}

uint64_t loop_timer(loop_t *l, int64_t delay_ms, loop_timer_cb cb, void *arg)
{
    if (l->nheap == l->capheap) {
        size_t n = l->capheap ? l->capheap * 2 : 64;
        timer_t_ *h = realloc(l->heap, n * sizeof(*h));
        if (!h) return 0;
        l->heap = h;
        l->capheap = n;
    }
    if (delay_ms < 0) delay_ms = 0;
    timer_t_ *t = &l->heap[l->nheap];
    t->deadline = clock_mono_ms() + delay_ms;
    t->id = ++l->next_id;
    t->cb = cb;
    t->arg = arg;
    heap_up(l, l->nheap++);
    return l->next_id;
}

void loop_timer_cancel(loop_t *l, uint64_t id)
{
    if (!id) return;
    for (size_t i = 0; i < l->nheap; i++) {
        if (l->heap[i].id == id) {
            heap_remove(l, i);
            return;
        }
    }
}

int64_t loop_now_ms(loop_t *l)
{
    return l->now;
}

static void run_timers(loop_t *l)
{
    l->now = clock_mono_ms();
    /* Timers added by callbacks in this pass fire next pass at the earliest. */
    uint64_t last = l->next_id;
    while (l->nheap > 0 && l->heap[0].deadline <= l->now && l->heap[0].id <= last) {
        timer_t_ t = l->heap[0];
        heap_remove(l, 0);
        t.cb(l, t.arg);
        if (l->stop) return;
    }
}

int loop_once(loop_t *l, int max_wait_ms)
{
    struct epoll_event evs[64];
    run_timers(l);
    int timeout = max_wait_ms;
    if (l->nheap > 0) {
        int64_t d = l->heap[0].deadline - clock_mono_ms();
        if (d < 0) d = 0;
        if (timeout < 0 || d < timeout) timeout = (int)(d > 1000000 ? 1000000 : d);
    }
    int n = epoll_wait(l->epfd, evs, 64, timeout);
    if (n < 0) return errno == EINTR ? 0 : -errno;
    l->now = clock_mono_ms();
    for (int i = 0; i < n && !l->stop; i++) {
        int fd = (int)(uint32_t)evs[i].data.u64;
        uint32_t gen = (uint32_t)(evs[i].data.u64 >> 32);
        if (fd >= l->nw || !l->w[fd].used || l->w[fd].gen != gen) continue;
        l->w[fd].cb(l, fd, evs[i].events, l->w[fd].arg);
    }
    run_timers(l);
    return 0;
}

int loop_run(loop_t *l)
{
    l->stop = false;
    while (!l->stop) {
        int rc = loop_once(l, -1);
        if (rc < 0) return rc;
    }
    return 0;
}

void loop_stop(loop_t *l)
{
    l->stop = true;
}
