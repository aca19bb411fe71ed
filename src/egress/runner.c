/* An egress for a creator that has no event loop of its own (`shed run`,
 * whose main thread waits in poll on the control channel): a private loop on
 * one thread serving one sandbox. The worker does not use this; it attaches
 * sandboxes to the egress on its own loop. Decisions are logged (denials at
 * info, the rest at debug); never logs payload bytes. */
#include "egress/egress.h"

#include "base/log.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct egress_runner {
    loop_t *loop;
    egress_t *eg;
    pthread_t th;
    int stopfd;
    bool started;
};

static void log_event(const egress_event *ev, void *arg)
{
    (void)arg;
    if (!ev->allowed)
        slog(LOG_INFO, ev->label, NULL, "egress denied %s %s:%d%s%s: %s", ev->proto, ev->host,
             ev->port, ev->address ? " -> " : "", ev->address ? ev->address : "", ev->rule);
    else
        log_debug("egress %s %s %s:%d -> %s: %s, %llu bytes up, %llu down, %lld ms%s%s", ev->label,
                  ev->proto, ev->host, ev->port, ev->address ? ev->address : "-", ev->rule,
                  (unsigned long long)ev->bytes_up, (unsigned long long)ev->bytes_down,
                  (long long)ev->duration_ms, ev->error ? ", " : "", ev->error ? ev->error : "");
}

static void on_stop(loop_t *l, int fd, uint32_t events, void *arg)
{
    (void)fd;
    (void)events;
    (void)arg;
    loop_stop(l);
}

static void *run(void *arg)
{
    egress_runner *r = arg;
    loop_run(r->loop);
    return NULL;
}

int egress_runner_start(const char *label, const egress_policy *pol, int http_fd, int socks_fd,
                        int dns_fd, egress_runner **out, shed_err *err)
{
    int fds[3] = {http_fd, socks_fd, dns_fd};
    egress_runner *r = calloc(1, sizeof(*r));
    int rc = 0;
    if (!r || !(r->loop = loop_new())) {
        rc = err_set(err, ENOMEM, "egress: event loop");
        goto fail;
    }
    r->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (r->stopfd < 0) {
        rc = err_set(err, errno, "egress: eventfd");
        goto fail;
    }
    if ((rc = loop_add(r->loop, r->stopfd, EPOLLIN, on_stop, r)) < 0) {
        rc = err_set(err, -rc, "egress: loop_add");
        goto fail;
    }
    if ((rc = egress_new(r->loop, log_event, NULL, &r->eg, err)) < 0) goto fail;
    rc = egress_attach(r->eg, label, pol, http_fd, socks_fd, dns_fd, err);
    fds[0] = fds[1] = fds[2] = -1; /* attach owns them now, even on failure */
    if (rc < 0) goto fail;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int prc = pthread_create(&r->th, NULL, run, r);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (prc != 0) {
        rc = err_set(err, prc, "egress: pthread_create");
        goto fail;
    }
    r->started = true;
    *out = r;
    return 0;
fail:
    for (int i = 0; i < 3; i++)
        if (fds[i] >= 0) close(fds[i]);
    egress_runner_stop(r);
    return rc < 0 ? rc : -EINVAL;
}

void egress_runner_stop(egress_runner *r)
{
    if (!r) return;
    if (r->started) {
        uint64_t one = 1;
        ssize_t w = write(r->stopfd, &one, sizeof(one));
        (void)w;
        pthread_join(r->th, NULL);
    }
    egress_free(r->eg);
    if (r->stopfd > 0) {
        loop_del(r->loop, r->stopfd);
        close(r->stopfd);
    }
    loop_free(r->loop);
    free(r);
}
