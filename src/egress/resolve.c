/* A small pool of threads that run getaddrinfo(3) for the egress and post the
 * results back to the event loop through an eventfd. getaddrinfo is the only
 * blocking call the proxy needs, and writing a resolver would mean
 * re-implementing the host's nsswitch, /etc/hosts, search and resolv.conf
 * semantics; a bounded pool keeps the loop non-blocking and honours all of
 * them. The threads touch only the job's name and result fields; everything
 * else (owner, callback, cancellation) belongs to the loop thread. Never
 * called with a name the policy has not allowed. */
#include "egress/resolve.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define POOL_THREADS 8
#define QUEUE_MAX 1024

struct resolve_job {
    resolve_job *next;
    char name[EGRESS_NAME_MAX + 1];
    egress_addr addrs[EGRESS_ADDRS_MAX];
    int naddrs;
    int gai_rc;
    resolve_cb cb;
    void *arg;
    bool cancelled;
};

struct resolver {
    loop_t *loop;
    int efd;
    pthread_t th[POOL_THREADS];
    int nth;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    resolve_job *todo_head, *todo_tail;
    resolve_job *done_head, *done_tail;
    int queued;
    int idle;      /* threads waiting for work */
    bool stop;
};

static void push(resolve_job **h, resolve_job **t, resolve_job *j)
{
    j->next = NULL;
    if (*t)
        (*t)->next = j;
    else
        *h = j;
    *t = j;
}

static resolve_job *pop(resolve_job **h, resolve_job **t)
{
    resolve_job *j = *h;
    if (!j) return NULL;
    *h = j->next;
    if (!*h) *t = NULL;
    return j;
}

static void run_gai(resolve_job *j)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    j->gai_rc = getaddrinfo(j->name, NULL, &hints, &res);
    j->naddrs = 0;
    for (struct addrinfo *ai = res; ai && j->naddrs < EGRESS_ADDRS_MAX; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
        egress_addr a;
        egress_addr_from_sockaddr(ai->ai_addr, &a);
        bool dup = false;
        for (int i = 0; i < j->naddrs; i++) dup |= memcmp(&j->addrs[i], &a, sizeof(a)) == 0;
        if (!dup) j->addrs[j->naddrs++] = a;
    }
    if (res) freeaddrinfo(res);
}

static void *worker(void *arg)
{
    resolver *r = arg;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        r->idle++;
        while (!r->stop && !r->todo_head) pthread_cond_wait(&r->cv, &r->mu);
        r->idle--;
        if (r->stop) break;
        resolve_job *j = pop(&r->todo_head, &r->todo_tail);
        pthread_mutex_unlock(&r->mu);
        run_gai(j);
        pthread_mutex_lock(&r->mu);
        push(&r->done_head, &r->done_tail, j);
        uint64_t one = 1;
        ssize_t w = write(r->efd, &one, sizeof(one));
        (void)w;
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

static void on_event(loop_t *l, int fd, uint32_t events, void *arg)
{
    (void)l;
    (void)events;
    resolver *r = arg;
    uint64_t v;
    ssize_t n = read(fd, &v, sizeof(v));
    (void)n;
    pthread_mutex_lock(&r->mu);
    resolve_job *list = r->done_head;
    r->done_head = r->done_tail = NULL;
    pthread_mutex_unlock(&r->mu);
    while (list) {
        resolve_job *j = list;
        list = j->next;
        pthread_mutex_lock(&r->mu);
        r->queued--;
        pthread_mutex_unlock(&r->mu);
        if (!j->cancelled) j->cb(j->arg, j->gai_rc, j->addrs, j->naddrs);
        free(j);
    }
}

int resolver_new(loop_t *loop, resolver **out, shed_err *err)
{
    resolver *r = calloc(1, sizeof(*r));
    if (!r) return err_set(err, ENOMEM, "egress resolver");
    r->loop = loop;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (r->efd < 0) {
        int rc = err_set(err, errno, "eventfd for the egress resolver");
        free(r);
        return rc;
    }
    int rc = loop_add(loop, r->efd, EPOLLIN, on_event, r);
    if (rc < 0) {
        close(r->efd);
        free(r);
        return err_set(err, -rc, "loop_add egress resolver eventfd");
    }
    *out = r;
    return 0;
}

void resolver_free(resolver *r)
{
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    r->stop = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    for (int i = 0; i < r->nth; i++) pthread_join(r->th[i], NULL);
    resolve_job *j;
    while ((j = pop(&r->todo_head, &r->todo_tail))) free(j);
    while ((j = pop(&r->done_head, &r->done_tail))) free(j);
    loop_del(r->loop, r->efd);
    close(r->efd);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

resolve_job *resolver_start(resolver *r, const char *name, resolve_cb cb, void *arg)
{
    resolve_job *j = calloc(1, sizeof(*j));
    if (!j) return NULL;
    snprintf(j->name, sizeof(j->name), "%s", name);
    j->cb = cb;
    j->arg = arg;
    pthread_mutex_lock(&r->mu);
    if (r->queued >= QUEUE_MAX) {
        pthread_mutex_unlock(&r->mu);
        free(j);
        return NULL;
    }
    r->queued++;
    push(&r->todo_head, &r->todo_tail, j);
    /* Threads start on demand: a sandbox that never looks a name up (no
     * network, or staticHosts only) costs no thread. */
    if (r->idle == 0 && r->nth < POOL_THREADS) {
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old); /* signals belong to the loop's thread */
        if (pthread_create(&r->th[r->nth], NULL, worker, r) == 0) r->nth++;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    if (r->nth == 0) { /* no thread at all: fail this lookup rather than hang */
        r->queued--;
        r->todo_head = r->todo_tail = NULL;
        pthread_mutex_unlock(&r->mu);
        free(j);
        return NULL;
    }
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return j;
}

void resolver_cancel(resolve_job *j)
{
    if (j) j->cancelled = true;
}
