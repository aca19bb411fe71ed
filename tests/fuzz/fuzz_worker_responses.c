/* Fuzzes how the worker reads the server's answers outside the event
 * stream: a sequence of heartbeat answers (2xx bodies and failure statuses)
 * through the lease keeper, the echo of last_heartbeat escaped into the next
 * query string, and a poll answer's work item (ids checked before they name
 * a state directory, the secret decoded). Must never crash, and: a lease
 * that ended stays ended with its first reason; the beat interval stays in
 * [1 s, 30 s]; the escaped echo is a valid query value; an id the worker
 * accepts can never name a path outside its state directory.
 *
 * Input: JSON {"beats":[{"status":N,"body":{...}}...], "poll":{...}}. */
#include "base/json.h"
#include "worker/api.h"
#include "worker/proto.h"
#include "worker/state.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_id(const char *id)
{
    if (!id || !wstate_id_ok(id)) return;
    if (!*id || strchr(id, '/') || !strcmp(id, ".") || !strcmp(id, "..")) abort();
    for (const char *c = id; *c; c++)
        if ((unsigned char)*c < 0x21 || (unsigned char)*c > 0x7e) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    shed_err err;
    json_t *doc = json_parse((const char *)data, size, 1 << 20, 32, &err);
    if (!doc) return 0;
    lease_t l;
    int64_t now = 1000;
    lease_init(&l, now);
    lease_end first = LEASE_HELD;
    size_t i;
    json_t *b;
    json_array_foreach(json_object_get(doc, "beats"), i, b)
    {
        now += json_integer_value(json_object_get(b, "dt")) & 0xffffff;
        json_int_t st = json_integer_value(json_object_get(b, "status"));
        json_t *body = json_object_get(b, "body");
        lease_end e = (st >= 200 && st < 300 && json_is_object(body)) ? lease_on_response(&l, now, body)
                                                                      : lease_on_failure(&l, now, (long)st);
        if (first != LEASE_HELD && e != first) abort(); /* the first reason wins */
        if (e != LEASE_HELD) first = e;
        if (l.interval_ms < 1000 || l.interval_ms > PROTO_HEARTBEAT_DEFAULT_MS) abort();
        if (lease_is_lost(&l) != (e == LEASE_END_LOST || e == LEASE_END_ASSUMED_LOST)) abort();
        char *q = api_escape(lease_expected(&l));
        if (!q) abort();
        for (const char *c = q; *c; c++) {
            if (*c == '%') {
                if (!c[1] || !c[2]) abort();
                continue;
            }
            if (strchr("&=#?+ /\r\n", *c)) abort();
        }
        free(q);
        if (!lease_end_name(e)) abort();
    }
    json_t *poll = json_object_get(doc, "poll");
    if (json_is_object(poll)) {
        check_id(json_string_value(json_object_get(poll, "id")));
        check_id(json_string_value(json_object_get(json_object_get(poll, "data"), "id")));
        char *tok = NULL, *url = NULL;
        const char *secret = json_string_value(json_object_get(poll, "secret"));
        if (secret && proto_secret_decode(secret, &tok, &url, &err) == 0 && (!tok || !*tok)) abort();
        free(tok);
        free(url);
    }
    json_decref(doc);
    return 0;
}
