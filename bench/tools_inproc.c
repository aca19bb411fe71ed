/* bench/tools.sh helper: the toolset module alone, in this process, no
 * sandbox and no control channel — to split a call's time into the tool's
 * own work and the hop. Prints {"label","elapsed_us"} per call, like
 * `shed tool --timing`. Built by bench/tools.sh against build/libshed.a.
 * usage: tools_inproc WORKDIR CALLS REPEAT */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "base/buf.h"
#include "sandbox/ctl.h"
#include "tools/tools.h"

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

int main(int argc, char **argv)
{
    if (argc != 4) return 2;
    tools_config cfg = {.workdir = argv[1]};
    tools_t *t;
    shed_err err;
    if (tools_new(&cfg, &t, &err) < 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    json_error_t je;
    json_t *calls = json_load_file(argv[2], 0, &je);
    if (!calls) return 1;
    long repeat = atol(argv[3]);
    for (long r = 0; r <= repeat; r++) {
        size_t i;
        json_t *c;
        json_array_foreach(calls, i, c)
        {
            double t0 = now_us();
            json_t *res = tools_call(t, json_string_value(json_object_get(c, "name")), json_object_get(c, "input"),
                                     0, -1);
            buf_t enc; /* what init must do to send it */
            buf_init(&enc, 0);
            ctl_encode(&enc, res);
            double us = now_us() - t0;
            buf_free(&enc);
            json_decref(res);
            if (r > 0)
                printf("{\"label\":\"%s\",\"elapsed_us\":%.1f}\n",
                       json_string_value(json_object_get(c, "label")), us);
        }
    }
    tools_free(t);
    return 0;
}
