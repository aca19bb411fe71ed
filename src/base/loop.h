/* The event loop: epoll for fds, a binary heap for timers. One thread, no
 * blocking calls. Callbacks may add, modify or delete any fd or timer,
 * including their own, while the loop is dispatching. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

typedef struct loop loop_t;
typedef void (*loop_fd_cb)(loop_t *l, int fd, uint32_t events, void *arg);
typedef void (*loop_timer_cb)(loop_t *l, void *arg);

loop_t *loop_new(void);
void loop_free(loop_t *l);

/* events: EPOLLIN | EPOLLOUT | ... (level-triggered unless EPOLLET is given). */
int loop_add(loop_t *l, int fd, uint32_t events, loop_fd_cb cb, void *arg);
int loop_mod(loop_t *l, int fd, uint32_t events);
int loop_del(loop_t *l, int fd);
bool loop_has(loop_t *l, int fd);

/* One-shot timer after delay_ms; returns an id > 0 (0 on allocation failure). */
uint64_t loop_timer(loop_t *l, int64_t delay_ms, loop_timer_cb cb, void *arg);
/* Cancelling an id that already fired or was cancelled is a no-op. */
void loop_timer_cancel(loop_t *l, uint64_t id);

/* Runs until loop_stop(); returns 0, or -errno if epoll_wait failed. */
int loop_run(loop_t *l);
/* One iteration waiting at most max_wait_ms (-1 = until something happens). */
int loop_once(loop_t *l, int max_wait_ms);
void loop_stop(loop_t *l);
/* Cached monotonic time of the current iteration, in ms. */
int64_t loop_now_ms(loop_t *l);
