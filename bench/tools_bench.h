/* bench/tools_bench.h: what bench/tools_inproc.c and bench/tools_grep.c
 * share — the clock and opening the toolset on WORKDIR with its calls file.
 * Header only: bench/tools.sh builds each helper alone
 * (`cc ... bench/<x>.c build/libshed.a`), and the quoted include finds this
 * file next to it. Never part of build/shed; it measures, it never decides. */
#ifndef SHED_BENCH_TOOLS_BENCH_H
#define SHED_BENCH_TOOLS_BENCH_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "tools/tools.h"

static inline double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

/* argv is WORKDIR CALLS REPEAT: the toolset on WORKDIR into *t, the JSON
 * array in the file CALLS into *calls, REPEAT into *repeat. Returns 0, or
 * main's exit status: 2 for a wrong argument count, 1 if the toolset (its
 * error on stderr) or the calls file could not be opened. */
static inline int bench_tools_open(int argc, char **argv, tools_t **t, json_t **calls, long *repeat)
{
    if (argc != 4) return 2;
    tools_config cfg = {.workdir = argv[1]};
    shed_err err;
    if (tools_new(&cfg, t, &err) < 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    json_error_t je;
    *calls = json_load_file(argv[2], 0, &je);
    if (!*calls) return 1;
    *repeat = atol(argv[3]);
    return 0;
}

#endif
