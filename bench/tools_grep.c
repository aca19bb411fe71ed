/* bench/tools.sh helper: grep speed on realistic trees, the module alone in
 * this process (no sandbox, no channel). For each call: p50 wall time and
 * CPU per call (this process and its children: rg, when it lists), and the
 * same search by `rg --no-config -n --no-heading -e PAT -- PATH` run
 * directly (what the reference runs) as the anchor.
 * usage: tools_grep WORKDIR CALLS REPEAT   (calls: [{"label","input"}]) */
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tools/tools.h"
#include "tools_bench.h"

extern char **environ;

static double cpu_us(void)
{
    struct rusage a, b;
    getrusage(RUSAGE_SELF, &a);
    getrusage(RUSAGE_CHILDREN, &b);
    return (double)(a.ru_utime.tv_sec + b.ru_utime.tv_sec + a.ru_stime.tv_sec + b.ru_stime.tv_sec) * 1e6 +
           (double)(a.ru_utime.tv_usec + b.ru_utime.tv_usec + a.ru_stime.tv_usec + b.ru_stime.tv_usec);
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void run_rg(const char *pattern, const char *path)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    char *argv[] = {"rg", "--no-config", "-n", "--no-heading", "-e", (char *)pattern, "--", (char *)path, NULL};
    pid_t pid;
    if (posix_spawnp(&pid, "rg", &fa, NULL, argv, environ) == 0) waitpid(pid, NULL, 0);
    posix_spawn_file_actions_destroy(&fa);
}

int main(int argc, char **argv)
{
    tools_t *t;
    json_t *calls;
    long R;
    int rc = bench_tools_open(argc, argv, &t, &calls, &R);
    if (rc) return rc;
    double *w = malloc(sizeof(double) * (size_t)R);
    printf("%-34s %10s %10s %10s %10s\n", "search (rg on PATH)", "shed p50", "shed cpu", "rg p50", "rg cpu");
    size_t i;
    json_t *c;
    json_array_foreach(calls, i, c)
    {
        json_t *in = json_object_get(c, "input");
        json_decref(tools_call(t, "grep", in, 0, -1)); /* warm the page cache */
        double c0 = cpu_us();
        for (long r = 0; r < R; r++) {
            double t0 = now_us();
            json_decref(tools_call(t, "grep", in, 0, -1));
            w[r] = now_us() - t0;
        }
        double cpu = (cpu_us() - c0) / (double)R;
        qsort(w, (size_t)R, sizeof(double), cmp);
        double p50 = w[R / 2];
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", argv[1], json_string_value(json_object_get(in, "path")));
        const char *pat = json_string_value(json_object_get(in, "pattern"));
        c0 = cpu_us();
        for (long r = 0; r < R; r++) {
            double t0 = now_us();
            run_rg(pat, path);
            w[r] = now_us() - t0;
        }
        double rcpu = (cpu_us() - c0) / (double)R;
        qsort(w, (size_t)R, sizeof(double), cmp);
        printf("%-34s %8.1fms %8.1fms %8.1fms %8.1fms\n", json_string_value(json_object_get(c, "label")), p50 / 1e3,
               cpu / 1e3, w[R / 2] / 1e3, rcpu / 1e3);
    }
    free(w);
    tools_free(t);
    return 0;
}
