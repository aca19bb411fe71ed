/* Shape checks of session events (events send), shared by the HTTP layer
 * and the fuzz harness. Pure functions: no I/O, no allocation kept. */
#include "server/validate.h"

#include <stdio.h>
#include <string.h>

#include "base/cleanup.h"

/* Validate one event's shape; agent-side events need the admin key. */
static bool check_event(json_t *ev, size_t i, bool admin, char *msg, size_t n, bool *forbidden)
{
    *forbidden = false;
    if (!json_is_object(ev)) {
        snprintf(msg, n, "field 'events[%zu]' must be an object", i);
        return false;
    }
    const char *t = json_string_value(json_object_get(ev, "type"));
    if (!t) {
        snprintf(msg, n, "field 'events[%zu].type' is required (a string)", i);
        return false;
    }
    json_t *v;
#define FIELD(name) (v = json_object_get(ev, name))
#define NEED(cond, ...)                                                                            \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            snprintf(msg, n, __VA_ARGS__);                                                         \
            return false;                                                                          \
        }                                                                                          \
    } while (0)
    static const char *const AGENT_SIDE[] = {
        "agent.tool_use",           "agent.custom_tool_use", "agent.message",
        "agent.thinking",           "session.status_idle",   "session.status_running",
        "session.status_terminated"};
    bool agent_side = false;
    for (size_t k = 0; k < ARRAY_SIZE(AGENT_SIDE); k++)
        if (!strcmp(t, AGENT_SIDE[k])) agent_side = true;
    if (agent_side && !admin) {
        snprintf(msg, n, "events[%zu]: '%s' events come from the agent: they need the admin key", i,
                 t);
        *forbidden = true;
        return false;
    }
    if (!strcmp(t, "agent.tool_use") || !strcmp(t, "agent.custom_tool_use")) {
        NEED(FIELD("name") && json_is_string(v) && json_string_length(v) > 0 &&
                 json_string_length(v) <= 128,
             "field 'events[%zu].name' is required (a tool name)", i);
        NEED(FIELD("input") && json_is_object(v),
             "field 'events[%zu].input' is required (an object)", i);
        if (FIELD("evaluated_permission") && !json_is_null(v)) {
            const char *p = json_string_value(v);
            NEED(p && (!strcmp(p, "allow") || !strcmp(p, "ask") || !strcmp(p, "deny")),
                 "field 'events[%zu].evaluated_permission' must be 'allow', 'ask' or 'deny'", i);
        }
    } else if (!strcmp(t, "agent.message") || !strcmp(t, "user.message")) {
        NEED(FIELD("content") && json_is_array(v),
             "field 'events[%zu].content' is required (an array of content blocks)", i);
    } else if (!strcmp(t, "session.status_idle")) {
        NEED(!FIELD("stop_reason") || json_is_null(v) || json_is_object(v),
             "field 'events[%zu].stop_reason' must be an object", i);
    } else if (!strcmp(t, "user.tool_result") || !strcmp(t, "user.tool_confirmation")) {
        NEED(FIELD("tool_use_id") && json_is_string(v),
             "field 'events[%zu].tool_use_id' is required (a string)", i);
        if (!strcmp(t, "user.tool_confirmation")) {
            const char *res = json_string_value(json_object_get(ev, "result"));
            NEED(res && (!strcmp(res, "allow") || !strcmp(res, "deny")),
                 "field 'events[%zu].result' must be 'allow' or 'deny'", i);
        }
    } else if (!strcmp(t, "user.custom_tool_result")) {
        NEED(FIELD("custom_tool_use_id") && json_is_string(v),
             "field 'events[%zu].custom_tool_use_id' is required (a string)", i);
    } else if (strcmp(t, "agent.thinking") && strcmp(t, "session.status_running") &&
               strcmp(t, "session.status_terminated") && strcmp(t, "user.interrupt") &&
               strcmp(t, "user.define_outcome")) {
        snprintf(msg, n, "field 'events[%zu].type': unknown event type '%.64s'", i, t);
        return false;
    }
    if (!strcmp(t, "user.tool_result") || !strcmp(t, "user.custom_tool_result")) {
        NEED(!FIELD("content") || json_is_null(v) || json_is_array(v),
             "field 'events[%zu].content' must be an array of content blocks", i);
        NEED(!FIELD("is_error") || json_is_null(v) || json_is_boolean(v),
             "field 'events[%zu].is_error' must be a boolean", i);
    }
#undef FIELD
#undef NEED
    return true;
}

int server_check_event(json_t *ev, size_t i, bool admin, char *msg, size_t n)
{
    bool forbidden = false;
    if (check_event(ev, i, admin, msg, n, &forbidden)) return 0;
    return forbidden ? 403 : 400;
}
