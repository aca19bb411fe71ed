/* Benchmark driver for bench/sandbox.sh: sandboxes created, used once
 * (exec /bin/true through init) and destroyed, back to back, from one
 * long-lived process (the worker's path). Prints rate, and median/p99 of
 * create, exec and destroy. Links build/libshed.a; never used by shed itself.
 *   sandbox_rate SHED_BINARY SECONDS [POLICY]                              */
#include "base/clock.h"
#include "sandbox/ctl.h"
#include "sandbox/sandbox.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
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

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: sandbox_rate SHED SECONDS [POLICY]\n");
        return 2;
    }
    shed_err err;
    sandbox_policy *pol;
    if (sandbox_set_init_exe(argv[1], &err) < 0 ||
        sandbox_policy_load(argc > 3 ? argv[3] : NULL, &pol, &err) < 0) {
        fprintf(stderr, "sandbox_rate: %s\n", err.msg);
        return 1;
    }
    double secs = atof(argv[2]);
    enum { MAX = 100000 };
    int64_t *tc = malloc(MAX * 8), *te = malloc(MAX * 8), *td = malloc(MAX * 8);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    int fds[3] = {null, null, null};
    int64_t start = clock_mono_ns(), end = start + (int64_t)(secs * 1e9);
    int n = 0;
    while (n < MAX && clock_mono_ns() < end) {
        sandbox_opts o = {.slot = -1};
        sandbox_t *sb;
        int64_t t0 = clock_mono_ns();
        if (sandbox_create(pol, &o, &sb, &err) < 0) {
            fprintf(stderr, "sandbox_rate: create: %s\n", err.msg);
            return 1;
        }
        int lf[3];
        sandbox_take_listeners(sb, &lf[0], &lf[1], &lf[2]);
        for (int i = 0; i < 3; i++) close(lf[i]);
        int64_t t1 = clock_mono_ns();
        json_t *m = json_pack("{s:s,s:i,s:[s]}", "type", "exec", "id", 1, "argv", "/bin/true");
        json_t *r = NULL;
        if (ctl_send(sandbox_ctl_fd(sb), m, fds, 3, &err) < 0 ||
            ctl_recv(sandbox_ctl_fd(sb), &r, NULL, NULL, &err) < 0) {
            fprintf(stderr, "sandbox_rate: exec: %s\n", err.msg);
            return 1;
        }
        if (json_integer_value(json_object_get(r, "status")) != 0) {
            fprintf(stderr, "sandbox_rate: /bin/true failed\n");
            return 1;
        }
        json_decref(m);
        json_decref(r);
        int64_t t2 = clock_mono_ns();
        if (sandbox_destroy(sb, 0, &err) < 0) {
            fprintf(stderr, "sandbox_rate: destroy: %s\n", err.msg);
            return 1;
        }
        int64_t t3 = clock_mono_ns();
        tc[n] = t1 - t0, te[n] = t2 - t1, td[n] = t3 - t2;
        n++;
    }
    double el = (clock_mono_ns() - start) / 1e9;
    printf("sandboxes created, used once, destroyed: %d in %.2f s = %.0f/s (one process, sequential)\n",
           n, el, n / el);
    report("create", tc, n);
    report("exec", te, n);
    report("destroy", td, n);
    sandbox_policy_free(pol);
    return 0;
}
