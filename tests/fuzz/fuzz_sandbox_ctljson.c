/* Fuzz the control channel's JSON decoder (ctl_decode) against jansson: a
 * hostile init sends these bytes. Whatever ctl_decode accepts, jansson must
 * accept too and read as the same value; what it decodes must encode
 * (ctl_encode) to a text that decodes to the same value again. */
#include "base/buf.h"
#include "sandbox/ctl.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    shed_err err;
    json_t *v = ctl_decode((const char *)data, size, &err);
    if (!v) return 0;
    if (!json_is_object(v)) abort();
    json_error_t je;
    json_t *j = json_loadb((const char *)data, size, JSON_ALLOW_NUL, &je);
    if (!j || !json_equal(v, j)) abort();
    buf_t b;
    buf_init(&b, 0);
    if (ctl_encode(&b, v) < 0) abort();
    json_t *again = ctl_decode(b.data, b.len, &err);
    if (!again || !json_equal(v, again)) abort();
    json_decref(again);
    buf_free(&b);
    json_decref(j);
    json_decref(v);
    return 0;
}
