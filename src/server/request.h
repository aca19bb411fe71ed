/* Request helpers shared by shed serve's route files (routes.c,
 * routes_objects.c): what every route does with a request before its own
 * logic. Never answers the request itself: the caller turns a message into
 * its 400. */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "base/buf.h"

/* The request body as a JSON object (parsed within max_body bytes and depth
 * levels); an empty body is {} when empty_ok. NULL with msg saying what is
 * wrong ("request body ...") otherwise. */
json_t *server_body_object(const buf_t *body, size_t max_body, int depth, bool empty_ok, char *msg,
                           size_t n);
