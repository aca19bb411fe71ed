/* A small blocking libcurl client of the local control plane, for the
 * command-line (`shed env`, `shed session`): one request at a time, JSON in
 * and out, the admin key as `x-api-key`. Also where `shed serve` and its
 * clients agree on the state directory and the admin key file.
 *
 * Never prints or logs the key; never follows redirects (a key must not be
 * sent to another host). */
#pragma once
#include <jansson.h>
#include <stddef.h>

#include "base/err.h"

typedef struct client {
    char base_url[512];
    char admin_key[256];
    long timeout_ms;
} client_t;

/* Default state dir: /var/lib/shed as root, else $XDG_STATE_HOME/shed or ~/.local/state/shed. */
int client_default_state_dir(char *out, size_t n);
/* Read a key file (first line, trimmed); refuses group/world-readable files. */
int client_read_key_file(const char *path, char *out, size_t n, shed_err *err);
/* Base URL from the flag, SHED_BASE_URL, or the default; admin key from
 * SHED_ADMIN_KEY, the key file, or $STATE_DIR/admin.key. */
int client_init(client_t *c, const char *base_url, const char *key_file, const char *state_dir,
                shed_err *err);

/* One request. body may be NULL. On an HTTP answer returns 0 and fills
 * *status and *resp (parsed JSON, or NULL for an empty body); -errno if the
 * server could not be reached. */
int client_request(client_t *c, const char *method, const char *path, json_t *body, long *status,
                   json_t **resp, shed_err *err);
/* The message of an error envelope, or a generic one. */
const char *client_error_message(json_t *resp);
/* client_request for a command-line tool: 0 with *out when the server answered
 * `want`; otherwise 1 after printing "shed CMD: ..." (why the request failed,
 * or the status and the server's message) to stderr, *out NULL. */
int client_call(client_t *c, const char *cmd, const char *method, const char *path, json_t *body,
                long want, json_t **out);

/* Stream an SSE endpoint: on_open(arg) once the response head arrived (the
 * stream is attached), then on_event(type, data_json, arg) per event (pings
 * skipped); a non-zero return from either stops. Returns when the stream ends. */
int client_stream(client_t *c, const char *path, int (*on_open)(void *),
                  int (*on_event)(const char *, const char *, void *), void *arg, shed_err *err);
