/* Request helpers shared by the route files (request.h). Parses bounded
 * input only; never logs a request's body. */
#include "server/request.h"

#include <stdarg.h>
#include <stdio.h>

#include "base/err.h"
#include "base/json.h"
#include "server/http.h"

enum MHD_Result server_bad_request(struct MHD_Connection *c, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return http_error(c, 400, NULL, msg);
}

json_t *server_body_object(const buf_t *body, size_t max_body, int depth, bool empty_ok, char *msg,
                           size_t n)
{
    if (body->len == 0) {
        if (empty_ok) return json_object();
        snprintf(msg, n, "request body is empty: expected a JSON object");
        return NULL;
    }
    shed_err err = {0};
    json_t *j = json_parse(body->data, body->len, max_body, depth, &err);
    if (!j) {
        snprintf(msg, n, "request body: %s", err.msg);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        snprintf(msg, n, "request body must be a JSON object");
        return NULL;
    }
    return j;
}
