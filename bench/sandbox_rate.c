/* Benchmark driver for bench/sandbox.sh: sandboxes created, used once
 * (exec /bin/true through init) and destroyed, back to back, from one
 * long-lived process (the worker's path). Prints rate, and median/p99 of
 * create, exec and destroy. Links build/libshed.a; never used by shed itself.
 *   sandbox_rate SHED_BINARY SECONDS [POLICY [THREADS [zygote]]]
 * THREADS > 1: that many threads each run the loop (sandbox_create is
 * thread-safe for different sandboxes), as a worker with a creation pool would. */
#include "base/clock.h"
#include "sandbox/ctl.h"
#include "sandbox/sandbox.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <string.h>
#include <unistd.h>

static int cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *what, int64_t *v, int n)
{
    qsort(v, n, sizeof(*v), cmp);
    printf("  %-8s median %7.2f ms   p99 %7.2f ms\n", what, v[n / 2] / 1e6,
           v[(int)(n * 0.99) < n ? (int)(n * 0.99) : n - 1] / 1e6);
}

typedef struct job {
    sandbox_policy *pol;
    int64_t end;
    int64_t *tc, *te, *td;
    int n, max, failed;
} job;

static void *loop(void *arg)
{
    job *j = arg;
    shed_err err;
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    int fds[3] = {null, null, null};
    while (j->n < j->max && clock_mono_ns() < j->end) {
        sandbox_opts o = {.slot = -1};
        sandbox_t *sb;
        int64_t t0 = clock_mono_ns();
        if (sandbox_create(j->pol, &o, &sb, &err) < 0) {
            fprintf(stderr, "sandbox_rate: create: %s\n", err.msg);
            j->failed = 1;
            break;
        }
        int lf[3];
        sandbox_take_listeners(sb, &lf[0], &lf[1], &lf[2]);
        for (int i = 0; i < 3; i++) close(lf[i]);
        int64_t t1 = clock_mono_ns();
        json_t *m = json_pack("{s:s,s:i,s:[s]}", "type", "exec", "id", 1, "argv", "/bin/true");
        json_t *r = NULL;
        if (ctl_send(sandbox_ctl_fd(sb), m, fds, 3, &err) < 0 ||
            ctl_recv(sandbox_ctl_fd(sb), &r, NULL, NULL, &err) < 0 ||
            json_integer_value(json_object_get(r, "status")) != 0) {
            fprintf(stderr, "sandbox_rate: exec /bin/true failed: %s\n", err.msg);
            j->failed = 1;
            break;
        }
        json_decref(m);
        json_decref(r);
        int64_t t2 = clock_mono_ns();
        if (sandbox_destroy(sb, 0, &err) < 0) {
            fprintf(stderr, "sandbox_rate: destroy: %s\n", err.msg);
            j->failed = 1;
            break;
        }
        int64_t t3 = clock_mono_ns();
        j->tc[j->n] = t1 - t0, j->te[j->n] = t2 - t1, j->td[j->n] = t3 - t2;
        j->n++;
    }
    close(null);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: sandbox_rate SHED SECONDS [POLICY [THREADS]]\n");
        return 2;
    }
    shed_err err;
    sandbox_policy *pol;
    if (sandbox_set_init_exe(argv[1], &err) < 0 ||
        sandbox_policy_load(argc > 3 ? argv[3] : NULL, &pol, &err) < 0) {
        fprintf(stderr, "sandbox_rate: %s\n", err.msg);
        return 1;
    }
    int nt = argc > 4 ? atoi(argv[4]) : 1;
    bool zygote = argc > 5 && !strcmp(argv[5], "zygote");
    if (zygote && sandbox_zygote_start(&err) < 0) {
        fprintf(stderr, "sandbox_rate: %s\n", err.msg);
        return 1;
    }
    if (nt < 1 || nt > 64) nt = 1;
    enum { MAX = 100000 };
    int64_t start = clock_mono_ns(), end = start + (int64_t)(atof(argv[2]) * 1e9);
    job jobs[64];
    pthread_t th[64];
    for (int i = 0; i < nt; i++) {
        jobs[i] = (job){.pol = pol, .end = end, .max = MAX};
        jobs[i].tc = malloc(MAX * 8), jobs[i].te = malloc(MAX * 8), jobs[i].td = malloc(MAX * 8);
        pthread_create(&th[i], NULL, loop, &jobs[i]);
    }
    int n = 0, failed = 0;
    for (int i = 0; i < nt; i++) {
        pthread_join(th[i], NULL);
        n += jobs[i].n;
        failed |= jobs[i].failed;
    }
    if (failed || n == 0) return 1;
    int64_t *tc = malloc(n * 8), *te = malloc(n * 8), *td = malloc(n * 8);
    for (int i = 0, k = 0; i < nt; i++)
        for (int x = 0; x < jobs[i].n; x++, k++)
            tc[k] = jobs[i].tc[x], te[k] = jobs[i].te[x], td[k] = jobs[i].td[x];
    double el = (clock_mono_ns() - start) / 1e9;
    printf("sandboxes created, used once, destroyed: %d in %.2f s = %.0f/s (one process, %d thread%s, init %s)\n",
           n, el, n / el, nt, nt > 1 ? "s" : "", zygote ? "forked by the zygote" : "exec'd per sandbox");
    struct rusage self, kids;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &kids);
#define MS(tv) ((tv).tv_sec * 1e3 + (tv).tv_usec / 1e3)
    printf("  cpu per sandbox: creator %.2f ms user + %.2f ms sys; sandbox processes %.2f ms user + "
           "%.2f ms sys\n",
           MS(self.ru_utime) / n, MS(self.ru_stime) / n, MS(kids.ru_utime) / n,
           MS(kids.ru_stime) / n);
    report("create", tc, n);
    report("exec", te, n);
    report("destroy", td, n);
    sandbox_policy_free(pol);
    return 0;
}
