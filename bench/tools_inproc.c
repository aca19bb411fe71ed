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
#include "tools_bench.h"

int main(int argc, char **argv)
{
    tools_t *t;
    json_t *calls;
    long repeat;
    int rc = bench_tools_open(argc, argv, &t, &calls, &repeat);
    if (rc) return rc;
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
