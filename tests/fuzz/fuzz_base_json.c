/* Fuzz the bounded JSON parser and the typed getters every decoder uses. */
#include "base/json.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    shed_err err;
    json_t *j = json_parse((const char *)data, size, 1 << 20, 32, &err);
    if (!j) return 0;
    const char *s;
    int64_t i;
    bool b;
    json_t *o;
    json_get_str(j, "type", false, &s, &err);
    json_get_int(j, "id", false, &i, &err);
    json_get_bool(j, "is_error", false, &b, &err);
    json_get_obj(j, "input", false, &o, &err);
    json_get_arr(j, "content", false, &o, &err);
    char *c = json_compact(j);
    free(c);
    json_decref(j);
    return 0;
}
