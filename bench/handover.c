/* What one process hand-over costs on this machine: two processes pass one
 * byte back and forth over a socketpair, each blocking in read() until the
 * other writes (the way serve, the worker, init and bash hand a tool call
 * along). Printed: the round trip (two hand-overs) p50/p90 when the
 * scheduler places the two freely (on a VM, waking a sleeping vCPU is most of
 * it), and when both are pinned to one CPU (the wake-up is a plain context
 * switch). An anchor for bench/worker.sh: a call's latency is a chain of such
 * hand-overs. Never fails; prints figures only.
 *   handover [ROUNDS]
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* cpu < 0: both free; else the parent on cpu and the child on ccpu. */
static int run(int rounds, int cpu, int ccpu, double *p50, double *p90)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return -1;
    cpu_set_t set, cset;
    CPU_ZERO(&set);
    CPU_ZERO(&cset);
    if (cpu >= 0) {
        CPU_SET(cpu, &set);
        CPU_SET(ccpu, &cset);
    }
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        if (cpu >= 0) sched_setaffinity(0, sizeof(cset), &cset);
        char c;
        for (int i = 0; i < rounds + 100; i++)
            if (read(sv[1], &c, 1) != 1 || write(sv[1], &c, 1) != 1) _exit(1);
        _exit(0);
    }
    cpu_set_t old;
    sched_getaffinity(0, sizeof(old), &old);
    if (cpu >= 0) sched_setaffinity(0, sizeof(set), &set);
    double *l = malloc(sizeof(double) * (size_t)rounds);
    if (!l) return -1;
    char c = 'x';
    for (int i = 0; i < rounds + 100; i++) {
        /* a pause between round trips, as between calls: both sides asleep */
        struct timespec ts = {0, 20000};
        nanosleep(&ts, NULL);
        double t0 = now_us();
        if (write(sv[0], &c, 1) != 1 || read(sv[0], &c, 1) != 1) break;
        if (i >= 100) l[i - 100] = now_us() - t0;
    }
    sched_setaffinity(0, sizeof(old), &old);
    close(sv[0]);
    close(sv[1]);
    waitpid(pid, NULL, 0);
    qsort(l, (size_t)rounds, sizeof(double), cmp);
    *p50 = l[rounds / 2];
    *p90 = l[rounds * 9 / 10];
    free(l);
    return 0;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 5000;
    if (rounds < 10) rounds = 10;
    double a50, a90, b50, b90, c50, c90;
    int two = sysconf(_SC_NPROCESSORS_ONLN) > 1;
    if (run(rounds, -1, 0, &a50, &a90) < 0 || run(rounds, 0, 0, &b50, &b90) < 0 ||
        (two && run(rounds, 0, 1, &c50, &c90) < 0)) {
        printf("handover: could not measure\n");
        return 0;
    }
    printf("process hand-over (socketpair round trip = 2 hand-overs, %d rounds, p50/p90 us): "
           "placed by the scheduler %.1f/%.1f; one CPU %.1f/%.1f",
           rounds, a50, a90, b50, b90);
    if (two) printf("; CPUs 0 and 1 %.1f/%.1f", c50, c90);
    printf("\n");
    return 0;
}
