/* JSON helpers over jansson: bounded parsing (size and nesting depth) and
 * typed field access whose errors name the field ("field 'input.command'
 * must be a string"). Outside input always goes through json_parse(). */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define JSON_DEFAULT_DEPTH 64
/* A tool call as the API sends it: the agent shapes its input, so it may nest
 * deeper than our own documents (the control channel answers past its bound). */
#define JSON_TOOL_INPUT_DEPTH 512

/* Parse len bytes; refuse more than max_bytes or nesting deeper than max_depth.
 * Returns a new reference or NULL with err set (message names line/column). */
json_t *json_parse(const char *data, size_t len, size_t max_bytes, int max_depth, shed_err *err);
/* The same with extra jansson decode flags, e.g. JSON_ALLOW_NUL where a
 * string may carry U+0000 (a tool result read from a binary file) and every
 * reader uses json_string_length(). */
json_t *json_parse_flags(const char *data, size_t len, size_t max_bytes, int max_depth, size_t flags,
                         shed_err *err);
/* Deepest nesting of arrays/objects in the text (strings skipped); -1 if over limit. */
int json_depth(const char *data, size_t len, int limit);

/* Field getters. Return 0 when present with the right type, 1 when absent
 * (and !required; *out untouched), or -EINVAL with err naming `name`. A JSON
 * null counts as absent. `name` is the field's path for the message. */
int json_get_str(json_t *obj, const char *key, bool required, const char **out, shed_err *err);
int json_get_int(json_t *obj, const char *key, bool required, int64_t *out, shed_err *err);
int json_get_bool(json_t *obj, const char *key, bool required, bool *out, shed_err *err);
int json_get_obj(json_t *obj, const char *key, bool required, json_t **out, shed_err *err);
int json_get_arr(json_t *obj, const char *key, bool required, json_t **out, shed_err *err);

/* Compact serialization (caller frees); NULL on failure. */
char *json_compact(const json_t *j);
