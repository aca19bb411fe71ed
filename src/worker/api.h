/* The Managed Agents calls a worker makes (work-api.md §1–§3), on the
 * non-blocking HTTP client: headers (anthropic-version, anthropic-beta,
 * Bearer credential, Anthropic-Worker-ID), ?beta=true, JSON bodies, the
 * error envelope, SSE event streams. A 401 on the environment key re-reads
 * the key file and retries once with the new key, so keys rotate without a
 * restart. Never logs or returns a credential.
 */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"
#include "base/loop.h"
#include "worker/http.h"

#define API_VERSION "2023-06-01"
#define API_BETA    "managed-agents-2026-04-01"
#define API_MAX_KEY 4096

/* The environment key: from a flag/variable (fixed) or a file (re-read on
 * SIGHUP and on a 401). A file readable by group or others is refused. */
typedef struct api_keyring {
    char *key;
    char *file;      /* NULL when the key was given directly */
    int64_t generation;
} api_keyring;

int api_keyring_load_file(api_keyring *k, const char *path, shed_err *err);
int api_keyring_set(api_keyring *k, const char *key, shed_err *err);
/* Re-read the file; 1 when the key changed, 0 when same, -errno on error. */
int api_keyring_reload(api_keyring *k, shed_err *err);
void api_keyring_free(api_keyring *k);
/* Check the file's permissions (regular file, not group/world readable). */
int api_key_file_check(const char *path, shed_err *err);

typedef struct api api_t;

typedef struct api_config {
    loop_t *loop;
    http_t *http;
    const char *base_url;
    const char *environment_id;
    const char *worker_id;
    api_keyring *keys;
} api_config;

int api_new(const api_config *cfg, api_t **out, shed_err *err);
void api_free(api_t *a);
const char *api_base_url(const api_t *a);
const char *api_environment_id(const api_t *a);

/* Which credential a call carries: the environment key (current one at send
 * time) or a per-item sessions token (borrowed; must outlive the call). */
typedef struct api_cred {
    const char *token; /* NULL = environment key */
} api_cred;

typedef struct api_result {
    long status;        /* 0 = no response */
    bool ok;            /* 2xx */
    bool fatal;         /* permanent: 4xx other than 408/409/429 */
    json_t *json;       /* parsed body (borrowed; NULL when empty/not JSON) */
    char msg[300];      /* what failed, for logs: "POST .../ack: 404 not_found_error: ..." */
    int64_t elapsed_ms;
    int64_t retry_after_ms; /* the server's Retry-After (ms, clamped), 0 = none */
    int should_retry;       /* the server's x-should-retry: 1 true, 0 false, -1 absent */
    const char *body;   /* the raw body (borrowed; NULL when empty), e.g. a skill archive */
    size_t body_len;
} api_result;

typedef void (*api_cb)(const api_result *res, void *arg);
typedef struct api_call api_call_t;

/* method "GET"/"POST"; path like "/v1/sessions/ID" (query appended after
 * ?beta=true, e.g. "block_ms=999"); body may be NULL (POST sends nothing).
 * worker_header adds Anthropic-Worker-ID. timeout_ms 0 = 60 s. */
api_call_t *api_request(api_t *a, const char *method, const char *path, const char *query,
                        json_t *body, api_cred cred, bool worker_header, int64_t timeout_ms,
                        api_cb cb, void *arg, shed_err *err);
void api_cancel(api_call_t *c);

/* The same with more headers: `accept` replaces "application/json" (e.g.
 * "application/binary" for a skill archive; the raw body is in
 * api_result.body), `beta` is appended to anthropic-beta (e.g.
 * "skills-2025-10-02"); either may be NULL. max_body 0 = 64 MiB. */
typedef struct api_req_opts {
    const char *accept;
    const char *beta;
    size_t max_body;
} api_req_opts;
api_call_t *api_request_ex(api_t *a, const char *method, const char *path, const char *query,
                           json_t *body, api_cred cred, const api_req_opts *opts,
                           int64_t timeout_ms, api_cb cb, void *arg, shed_err *err);

/* Session event stream: each event's JSON (with "type" injected from the SSE
 * event name when absent) goes to on_event; ping and unknown non-JSON data are
 * skipped. on_open is called once the response is 2xx (stream established).
 * on_end: the stream ended (res->ok true when it closed cleanly). */
typedef void (*api_event_cb)(json_t *ev, void *arg);
typedef void (*api_open_cb)(void *arg);
api_call_t *api_stream(api_t *a, const char *session_id, api_cred cred, int64_t stall_ms,
                       api_open_cb on_open, api_event_cb on_event, api_cb on_end, void *arg,
                       shed_err *err);

/* Percent-encode a path segment or query value (caller frees). */
char *api_escape(const char *s);
