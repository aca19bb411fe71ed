/* Request helpers shared by shed serve's route files (routes.c,
 * routes_objects.c): what every route does with a request before its own
 * logic. Answers only with a 400 the caller asks for. */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "base/buf.h"
#include "base/lazy_mhd.h"

/* Answers 400 with the formatted message (at most 511 bytes) in the API's
 * error envelope (http_error). */
enum MHD_Result server_bad_request(struct MHD_Connection *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The request body as a JSON object (parsed within max_body bytes and depth
 * levels); an empty body is {} when empty_ok. NULL with msg saying what is
 * wrong ("request body ...") otherwise. */
json_t *server_body_object(const buf_t *body, size_t max_body, int depth, bool empty_ok, char *msg,
                           size_t n);
