/* Thread pool with completions on the loop; see pool.h. Threads start when
 * jobs need them (up to the maximum), so an idle worker has none. */
#include "worker/pool.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

typedef struct job {
    pool_fn work, done;
    void *arg;
    struct job *next;
} job_t;

struct pool {
    loop_t *loop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job_t *queue, *queue_tail;
    job_t *done, *done_tail;
    int efd;
    int nthreads, max_threads;
    int idle;    /* threads waiting for a job (under mu) */
    int nqueued; /* jobs not yet taken (under mu) */
    pthread_t *threads;
    int pending; /* submitted, completion not yet run (loop thread only) */
    int stopping;
};

static void push(job_t **head, job_t **tail, job_t *j)
{
    j->next = NULL;
    if (*tail)
        (*tail)->next = j;
    else
        *head = j;
    *tail = j;
}

static void *thread_main(void *arg)
{
    pool_t *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        p->idle++;
        while (!p->queue && !p->stopping) pthread_cond_wait(&p->cv, &p->mu);
        p->idle--;
        if (!p->queue && p->stopping) break;
        job_t *j = p->queue;
        p->nqueued--;
        p->queue = j->next;
        if (!p->queue) p->queue_tail = NULL;
        pthread_mutex_unlock(&p->mu);
        j->work(j->arg);
        pthread_mutex_lock(&p->mu);
        push(&p->done, &p->done_tail, j);
        uint64_t one = 1;
        ssize_t w = write(p->efd, &one, sizeof(one));
        (void)w;
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void run_completions(pool_t *p)
{
    uint64_t v;
    ssize_t r = read(p->efd, &v, sizeof(v));
    (void)r;
    pthread_mutex_lock(&p->mu);
    job_t *list = p->done;
    p->done = p->done_tail = NULL;
    pthread_mutex_unlock(&p->mu);
    while (list) {
        job_t *j = list;
        list = j->next;
        p->pending--;
        if (j->done) j->done(j->arg);
        free(j);
    }
}

static void on_efd(loop_t *l, int fd, uint32_t events, void *arg)
{
    (void)l;
    (void)fd;
    (void)events;
    run_completions(arg);
}

int pool_new(loop_t *loop, int threads, pool_t **out, shed_err *err)
{
    pool_t *p = calloc(1, sizeof(*p));
    if (!p) return err_set(err, ENOMEM, "thread pool");
    p->loop = loop;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (p->efd < 0) {
        free(p);
        return err_set(err, errno, "eventfd");
    }
    int rc = loop_add(loop, p->efd, EPOLLIN, on_efd, p);
    if (rc < 0) {
        close(p->efd);
        free(p);
        return err_set(err, -rc, "watch the pool's eventfd");
    }
    p->max_threads = threads > 0 ? threads : 1;
    p->threads = calloc((size_t)p->max_threads, sizeof(pthread_t));
    if (!p->threads) {
        pool_free(p);
        return err_set(err, ENOMEM, "thread pool");
    }
    *out = p;
    return 0;
}

/* One more thread (loop thread only); it takes no signal. */
static int spawn(pool_t *p)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&p->threads[p->nthreads], NULL, thread_main, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) return -rc;
    p->nthreads++;
    return 0;
}

int pool_submit(pool_t *p, pool_fn work, pool_fn done, void *arg)
{
    job_t *j = calloc(1, sizeof(*j));
    if (!j) return -ENOMEM;
    j->work = work;
    j->done = done;
    j->arg = arg;
    pthread_mutex_lock(&p->mu);
    bool need = p->nqueued + 1 > p->idle && p->nthreads < p->max_threads;
    pthread_mutex_unlock(&p->mu);
    /* No thread at all and none can start: refuse (the caller reports it)
     * rather than queue a job nothing would run. */
    if (need && spawn(p) < 0 && p->nthreads == 0) {
        free(j);
        return -EAGAIN;
    }
    pthread_mutex_lock(&p->mu);
    push(&p->queue, &p->queue_tail, j);
    p->nqueued++;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    p->pending++;
    return 0;
}

int pool_pending(const pool_t *p)
{
    return p->pending;
}

void pool_free(pool_t *p)
{
    if (!p) return;
    /* Drain: completions may submit more jobs (an abandoned sandbox is then
     * destroyed), so wait until nothing is pending at all. */
    while (p->pending > 0 && p->nthreads > 0) {
        struct pollfd pf = {.fd = p->efd, .events = POLLIN};
        poll(&pf, 1, 1000);
        run_completions(p);
    }
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nthreads; i++) pthread_join(p->threads[i], NULL);
    /* Every job has run; deliver the completions still queued. */
    while (p->pending > 0 && p->done) run_completions(p);
    loop_del(p->loop, p->efd);
    close(p->efd);
    free(p->threads);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
