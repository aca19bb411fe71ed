/* Pure pieces of the worker protocol (work-api.md §1, §2.3, §2.5, §2.6):
 * the transient/fatal classification of failed calls, backoff with jitter,
 * the work secret decoder and the lease keeper's arithmetic. No I/O here, so
 * every rule is unit-tested on its own. Never logs a secret.
 */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"

/* ---- classification (SDK isFatal4xx) ----
 * status: HTTP status, or 0 when no response arrived (connection error,
 * timeout): transient. 408, 409, 429, 5xx: transient. Other 4xx: fatal. */
bool proto_is_fatal(long status);
bool proto_is_success(long status);

/* ---- backoff ----
 * base*2^attempt clamped to cap (attempt from 0). */
int64_t proto_backoff_ms(int attempt, int64_t base_ms, int64_t cap_ms);
/* Trim up to 25% off at random (SDK applyJitter). */
int64_t proto_apply_jitter(int64_t ms);
/* Uniform in [lo, hi). */
int64_t proto_jitter(int64_t lo_ms, int64_t hi_ms);

#define PROTO_POLL_BLOCK_MS      999
#define PROTO_POLL_BACKOFF_BASE  1000
#define PROTO_POLL_BACKOFF_CAP   60000
#define PROTO_STREAM_BACKOFF_BASE 500
#define PROTO_STREAM_BACKOFF_CAP  10000
#define PROTO_SEND_BACKOFF_BASE  1000
#define PROTO_SEND_BACKOFF_CAP   30000
#define PROTO_TOOL_TIMEOUT_MS    120000

/* ---- work secret (§2.3) ----
 * base64url (or standard), padding optional, JSON {"sessions_token":..,
 * "api_base_url"?:..}. Returns 0 with *token (malloc'd, non-empty) set, or
 * -EINVAL when the secret is absent, undecodable, or carries no token (the
 * caller then falls back to the environment key). The message never quotes
 * the secret. api_base_url (optional out) is returned when present. */
#define PROTO_SECRET_MAX 16384
int proto_secret_decode(const char *secret, char **token, char **api_base_url, shed_err *err);

/* ---- lease keeper (§2.5) ---- */
#define PROTO_HEARTBEAT_DEFAULT_MS 30000
#define PROTO_HEARTBEAT_TTL_DEFAULT_MS 90000
#define PROTO_NO_HEARTBEAT "NO_HEARTBEAT"

/* Retry-After (SDK core client: `retry-after-ms`, else `retry-after` in
 * seconds or as an HTTP date). A wait the server asks for longer than this
 * is clamped to it, so a bad header cannot park a session or the poll loop. */
#define PROTO_RETRY_AFTER_MAX_MS 60000
/* One response header line ("Name: value", as received; a trailing CRLF is ignored):
 * when it is retry-after-ms or retry-after with a usable positive delay,
 * return that delay in ms (clamped to PROTO_RETRY_AFTER_MAX_MS); else -1.
 * `is_ms` reports which header it was (retry-after-ms wins over
 * retry-after). now_epoch_s is the wall clock for an HTTP date. */
int64_t proto_retry_after_header(const char *line, size_t len, int64_t now_epoch_s, bool *is_ms);
/* The wait before retrying a failed call: the computed backoff, or the
 * server's Retry-After when that is longer (retry_after_ms <= 0: none). */
int64_t proto_retry_wait(int64_t computed_ms, int64_t retry_after_ms);

/* The content of a user.tool_result as the SDK's SessionToolRunner shapes
 * it (toSessionContent): a text block with an empty or missing text says
 * "(no output)"; image, document and search_result blocks pass; any other
 * block (or a non-object) becomes a text block of its JSON; no block at all
 * becomes one "(no output)" text block. Returns a new array (NULL on ENOMEM). */
json_t *proto_result_content(json_t *content);

typedef enum {
    LEASE_HELD = 0,
    LEASE_END_STOP,      /* state stopping/stopped or lease_extended:false: end the session, stop the item */
    LEASE_END_LOST,      /* 412: someone else holds it; do NOT stop the item */
    LEASE_END_ASSUMED_LOST, /* no successful beat for > ttl; do NOT stop */
    LEASE_END_REJECTED,  /* fatal 4xx on heartbeat: end; stop is still attempted */
    LEASE_END_DONE,      /* the session ended on our side */
} lease_end;

typedef struct lease {
    int64_t interval_ms;
    int64_t ttl_ms;
    int64_t last_success_ms;
    char last[96];    /* expected_last_heartbeat to send next */
    lease_end end;    /* first reason wins */
    int beats;        /* successful heartbeats */
    char state[16];   /* last state reported */
} lease_t;

void lease_init(lease_t *l, int64_t now_ms);
/* Value for ?expected_last_heartbeat= */
const char *lease_expected(const lease_t *l);
/* A 2xx heartbeat response body. Returns the resulting end reason (LEASE_HELD to go on). */
lease_end lease_on_response(lease_t *l, int64_t now_ms, json_t *resp);
/* A failed heartbeat: status 0 for no response. */
lease_end lease_on_failure(lease_t *l, int64_t now_ms, long status);
/* Record our own end (idempotent: the first reason wins). */
void lease_finish(lease_t *l, lease_end why);
/* Lost: the item belongs to the queue or another worker: never stop it. */
bool lease_is_lost(const lease_t *l);
const char *lease_end_name(lease_end e);
