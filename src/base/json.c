/* Bounded JSON parsing and typed getters; see json.h. */
#include "base/json.h"

#include <errno.h>
#include <string.h>

int json_depth(const char *data, size_t len, int limit)
{
    int depth = 0, max = 0;
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        char c = data[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
            continue;
        }
        if (c == '"') {
            in_str = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max) max = depth;
            if (max > limit) return -1;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return max;
}

json_t *json_parse(const char *data, size_t len, size_t max_bytes, int max_depth, shed_err *err)
{
    return json_parse_flags(data, len, max_bytes, max_depth, 0, err);
}

json_t *json_parse_flags(const char *data, size_t len, size_t max_bytes, int max_depth, size_t flags,
                         shed_err *err)
{
    if (!data) {
        err_msg(err, EINVAL, "empty body: expected JSON");
        return NULL;
    }
    if (max_bytes && len > max_bytes) {
        err_msg(err, EMSGSIZE, "JSON body is %zu bytes, over the %zu-byte limit", len, max_bytes);
        return NULL;
    }
    if (json_depth(data, len, max_depth) < 0) {
        err_msg(err, EINVAL, "JSON nested deeper than %d levels", max_depth);
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadb(data, len, JSON_DECODE_ANY | flags, &je);
    if (!j) {
        err_msg(err, EINVAL, "invalid JSON at line %d column %d: %s", je.line, je.column, je.text);
        return NULL;
    }
    return j;
}

static json_t *field(json_t *obj, const char *key)
{
    if (!obj || !json_is_object(obj)) return NULL;
    json_t *v = json_object_get(obj, key);
    if (v && json_is_null(v)) return NULL;
    return v;
}

#define ABSENT_OR_REQUIRED(v, required, key, err, what)                                         \
    do {                                                                                        \
        if (!(v)) {                                                                             \
            if (required) return err_msg(err, EINVAL, "field '%s' is required (%s)", key, what); \
            return 1;                                                                           \
        }                                                                                       \
    } while (0)

int json_get_str(json_t *obj, const char *key, bool required, const char **out, shed_err *err)
{
    json_t *v = field(obj, key);
    ABSENT_OR_REQUIRED(v, required, key, err, "a string");
    if (!json_is_string(v)) return err_msg(err, EINVAL, "field '%s' must be a string", key);
    *out = json_string_value(v);
    return 0;
}

int json_get_int(json_t *obj, const char *key, bool required, int64_t *out, shed_err *err)
{
    json_t *v = field(obj, key);
    ABSENT_OR_REQUIRED(v, required, key, err, "an integer");
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        /* in range first: converting an out-of-range double is undefined */
        if (d >= -9223372036854775808.0 && d < 9223372036854775808.0 && d == (double)(int64_t)d) {
            *out = (int64_t)d;
            return 0;
        }
    }
    return err_msg(err, EINVAL, "field '%s' must be an integer", key);
}

int json_get_bool(json_t *obj, const char *key, bool required, bool *out, shed_err *err)
{
    json_t *v = field(obj, key);
    ABSENT_OR_REQUIRED(v, required, key, err, "a boolean");
    if (!json_is_boolean(v)) return err_msg(err, EINVAL, "field '%s' must be a boolean", key);
    *out = json_is_true(v);
    return 0;
}

int json_get_obj(json_t *obj, const char *key, bool required, json_t **out, shed_err *err)
{
    json_t *v = field(obj, key);
    ABSENT_OR_REQUIRED(v, required, key, err, "an object");
    if (!json_is_object(v)) return err_msg(err, EINVAL, "field '%s' must be an object", key);
    *out = v;
    return 0;
}

int json_get_arr(json_t *obj, const char *key, bool required, json_t **out, shed_err *err)
{
    json_t *v = field(obj, key);
    ABSENT_OR_REQUIRED(v, required, key, err, "an array");
    if (!json_is_array(v)) return err_msg(err, EINVAL, "field '%s' must be an array", key);
    *out = v;
    return 0;
}

char *json_compact(const json_t *j)
{
    return json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
}
