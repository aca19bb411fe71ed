/* Fuzzes what `shed serve` does with a posted events body: bounded JSON
 * parsing, the per-event shape checks (validate.c), then the store's append
 * (references, duplicates, status effects, wake-ups, all-or-nothing) and a
 * list with a fuzzed page cursor, against an in-memory SQLite store. Must
 * never crash, leak or write half a batch. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "server/store.h"
#include "server/validate.h"

static store_t *S;
static char SID[ID_MAX];

static void setup(void)
{
    store_queue_cfg_t cfg = {.default_ttl_s = 60, .default_reclaim_ms = 5000};
    shed_err err = {0};
    if (store_sqlite_open(":memory:", &cfg, &S, &err) < 0) abort();
    json_t *f = json_pack("{s:s,s:{s:s}}", "name", "fuzz", "config", "type", "self_hosted");
    json_t *e = NULL;
    if (S->ops->env_create(S, f, &e, &err) < 0) abort();
    json_decref(f);
    f = json_pack("{s:s}", "environment_id", json_string_value(json_object_get(e, "id")));
    json_t *s = NULL;
    if (S->ops->session_create(S, f, &s, &err) < 0) abort();
    snprintf(SID, sizeof(SID), "%s", json_string_value(json_object_get(s, "id")));
    json_decref(f);
    json_decref(e);
    json_decref(s);
    /* one tool call to answer, so results can be valid */
    json_t *evs = json_pack("[{s:s,s:s,s:{}}]", "type", "agent.tool_use", "name", "bash", "input");
    store_append_result_t r;
    if (S->ops->events_append(S, SID, evs, 0, &r, &err) < 0) abort();
    json_decref(r.events);
    json_decref(evs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!S) setup();
    shed_err err = {0};
    json_t *body = json_parse((const char *)data, size, 1u << 20, 32, &err);
    if (!body) return 0;
    json_t *evs = json_object_get(body, "events");
    if (json_is_array(evs) && json_array_size(evs) > 0 && json_array_size(evs) <= 100) {
        bool ok = true;
        size_t i;
        json_t *ev;
        char msg[256];
        json_array_foreach(evs, i, ev) if (server_check_event(ev, i, true, msg, sizeof(msg))) ok =
            false;
        if (ok) {
            int64_t before = 0, after = 0;
            S->ops->events_last_seq(S, SID, &before, &err);
            store_append_result_t r;
            int rc = S->ops->events_append(S, SID, evs, 0, &r, &err);
            S->ops->events_last_seq(S, SID, &after, &err);
            if (rc < 0 && after != before) abort(); /* a refused batch wrote something */
            if (rc == 0) json_decref(r.events);
        }
    }
    const char *cursor = json_string_value(json_object_get(body, "page"));
    if (cursor) {
        store_page_t pg = {.limit = 5, .cursor = cursor};
        json_t *page = NULL;
        if (S->ops->events_list(S, SID, &pg, &page, &err) == 0) json_decref(page);
    }
    json_decref(body);
    return 0;
}
