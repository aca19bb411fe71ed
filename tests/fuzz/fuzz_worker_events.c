/* Fuzz the session runner with event JSON from the network: a history page
 * and stream events built from the input must never crash it, and a call it
 * hands out is an agent.tool_use of a tool the worker runs, never one that
 * was denied or already answered. */
#include "base/json.h"
#include "worker/runner.h"
#include "worker/worker.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static bool owns(const char *name, void *arg)
{
    (void)arg;
    return worker_owns_tool(name);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    shed_err err;
    json_t *doc = json_parse((const char *)data, size, 1 << 20, 32, &err);
    if (!doc) return 0;
    runner_t *r = runner_new(1000, owns, NULL, NULL);
    json_t *hist = json_is_object(doc) ? json_object_get(doc, "history") : NULL;
    json_t *live = json_is_object(doc) ? json_object_get(doc, "live") : doc;
    size_t i;
    json_t *ev;
    runner_history_begin(r);
    if (json_is_array(hist))
        json_array_foreach(hist, i, ev) if (json_is_object(ev)) runner_history_event(r, ev);
    runner_history_end(r, size % 2 == 0, 1);
    int64_t now = 2;
    if (json_is_array(live)) {
        json_array_foreach(live, i, ev)
        {
            if (!json_is_object(ev)) continue;
            runner_stream_event(r, ev, now++);
            json_t *c = runner_next(r);
            if (c) {
                const char *t = json_string_value(json_object_get(c, "type"));
                const char *n = json_string_value(json_object_get(c, "name"));
                const char *id = json_string_value(json_object_get(c, "id"));
                const char *perm = json_string_value(json_object_get(c, "evaluated_permission"));
                if (!t || strcmp(t, "agent.tool_use") || !worker_owns_tool(n) || !id) abort();
                if (perm && !strcmp(perm, "deny")) abort();
                if (runner_is_answered(r, id)) abort();
                runner_call_done(r, id, (i & 1) != 0, now++);
                json_decref(c);
            }
        }
    }
    runner_free(r);
    json_decref(doc);
    return 0;
}
