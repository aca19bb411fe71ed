/* shed session: create sessions on a local control plane, play the agent's
 * side of a session (post a tool call and wait for its result), and read a
 * session's events. Uses the admin key; never prints it. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/clock.h"
#include "base/json.h"
#include "client/client.h"
#include "cmd/cmd.h"

static const char USAGE[] =
    "usage: shed session create --environment-id ID [--metadata k=v]... [--title T] [--json]\n"
    "       shed session tool SESSION_ID NAME 'JSON_INPUT' [--wait SECONDS] [--json]\n"
    "       shed session send SESSION_ID 'EVENT_JSON'...\n"
    "       shed session events SESSION_ID [--follow]\n"
    "       shed session get SESSION_ID\n"
    "Common: [--base-url URL] [--admin-key-file FILE] [--state-dir DIR]\n"
    "'tool' posts an agent.tool_use, waits (default 60 s; 0 = do not wait) for its\n"
    "user.tool_result and prints the result's text (--json: the whole event). Exit 0\n"
    "when the tool succeeded, 1 when it reported an error, 3 when no result came in time.\n"
    "'events' prints one JSON event per line; --follow keeps streaming until the\n"
    "session terminates.\n";

typedef struct sess_opts {
    const char *base_url, *key_file, *state_dir, *env_id, *title;
    json_t *metadata;
    double wait_s;
    bool json, follow;
} sess_opts_t;

static int api(client_t *c, const char *method, const char *path, json_t *body, json_t **out)
{
    return client_call(c, "session", method, path, body, 200, out);
}

static void print_compact(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);
    if (s) puts(s);
    free(s);
    fflush(stdout);
}

static int do_create(client_t *c, sess_opts_t *o)
{
    if (!o->env_id)
        return cmd_usage_error("session", USAGE, "session create needs --environment-id");
    _cleanup_json_ json_t *body = json_pack("{s:s}", "environment_id", o->env_id);
    if (o->metadata) json_object_set(body, "metadata", o->metadata);
    if (o->title) json_object_set_new(body, "title", json_string(o->title));
    _cleanup_json_ json_t *s = NULL;
    if (api(c, "POST", "/v1/sessions", body, &s)) return 1;
    if (o->json)
        print_compact(s);
    else
        printf("%s\n", json_string_value(json_object_get(s, "id")));
    return 0;
}

static int do_tool(client_t *c, sess_opts_t *o, const char *sid, const char *name,
                   const char *input)
{
    shed_err err = {0};
    _cleanup_json_ json_t *in = json_parse(input, strlen(input), 1u << 20, 64, &err);
    if (!in || !json_is_object(in))
        return cmd_usage_error("session", USAGE, "JSON_INPUT must be a JSON object%s%s",
                               in ? "" : ": ", in ? "" : err.msg);
    _cleanup_json_ json_t *body = json_pack("{s:[{s:s,s:s,s:O}]}", "events", "type",
                                            "agent.tool_use", "name", name, "input", in);
    char path[256];
    snprintf(path, sizeof(path), "/v1/sessions/%.64s/events", sid);
    _cleanup_json_ json_t *r = NULL;
    if (api(c, "POST", path, body, &r)) return 1;
    const char *use_id =
        json_string_value(json_object_get(json_array_get(json_object_get(r, "data"), 0), "id"));
    if (!use_id) {
        fprintf(stderr, "shed session: the server returned no event id\n");
        return 1;
    }
    if (o->wait_s <= 0) {
        printf("%s\n", use_id);
        return 0;
    }
    int64_t deadline = clock_mono_ms() + (int64_t)(o->wait_s * 1000);
    snprintf(path, sizeof(path), "/v1/sessions/%.64s/events?order=desc&limit=100", sid);
    while (clock_mono_ms() < deadline) {
        _cleanup_json_ json_t *l = NULL;
        if (api(c, "GET", path, NULL, &l)) return 1;
        size_t i;
        json_t *ev;
        json_array_foreach(json_object_get(l, "data"), i, ev)
        {
            const char *t = json_string_value(json_object_get(ev, "type"));
            const char *ref = json_string_value(json_object_get(ev, "tool_use_id"));
            if (!t || strcmp(t, "user.tool_result") || !ref || strcmp(ref, use_id)) continue;
            bool is_error = json_is_true(json_object_get(ev, "is_error"));
            if (o->json) {
                print_compact(ev);
            } else {
                size_t k;
                json_t *blk;
                json_array_foreach(json_object_get(ev, "content"), k, blk)
                {
                    const char *txt = json_string_value(json_object_get(blk, "text"));
                    if (txt) fputs(txt, stdout);
                    if (txt && (!*txt || txt[strlen(txt) - 1] != '\n')) fputc('\n', stdout);
                }
            }
            return is_error ? 1 : 0;
        }
        struct timespec ts = {0, 100 * 1000000};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr,
            "shed session: no result for %s within %.0f s (is a worker serving environment of "
            "session %s?)\n",
            use_id, o->wait_s, sid);
    return 3;
}

static int do_send(client_t *c, const char *sid, int n, char **evs)
{
    _cleanup_json_ json_t *arr = json_array();
    for (int i = 0; i < n; i++) {
        shed_err err = {0};
        json_t *e = json_parse(evs[i], strlen(evs[i]), 1u << 20, 64, &err);
        if (!e) return cmd_usage_error("session", USAGE, "event %d: %s", i + 1, err.msg);
        json_array_append_new(arr, e);
    }
    _cleanup_json_ json_t *body = json_pack("{s:O}", "events", arr);
    char path[256];
    snprintf(path, sizeof(path), "/v1/sessions/%.64s/events", sid);
    _cleanup_json_ json_t *r = NULL;
    if (api(c, "POST", path, body, &r)) return 1;
    size_t i;
    json_t *ev;
    json_array_foreach(json_object_get(r, "data"), i, ev) print_compact(ev);
    return 0;
}

/* ---- events (--follow: stream first, then list, dedupe by id) ---- */

typedef struct follow {
    client_t *c;
    const char *sid;
    char **seen;
    size_t nseen, cap;
    bool failed;
} follow_t;

static bool seen(follow_t *f, const char *id)
{
    for (size_t i = 0; i < f->nseen; i++)
        if (!strcmp(f->seen[i], id)) return true;
    if (f->nseen == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 256;
        char **n = realloc(f->seen, cap * sizeof(*n));
        if (!n) return false;
        f->seen = n;
        f->cap = cap;
    }
    f->seen[f->nseen++] = strdup(id);
    return false;
}

static int list_all(follow_t *f)
{
    char path[512];
    _cleanup_free_ char *cursor = NULL;
    for (;;) {
        if (cursor)
            snprintf(path, sizeof(path), "/v1/sessions/%.64s/events?limit=1000&page=%.64s", f->sid,
                     cursor);
        else
            snprintf(path, sizeof(path), "/v1/sessions/%.64s/events?limit=1000", f->sid);
        _cleanup_json_ json_t *l = NULL;
        if (api(f->c, "GET", path, NULL, &l)) return 1;
        size_t i;
        json_t *ev;
        json_array_foreach(json_object_get(l, "data"), i, ev)
        {
            const char *id = json_string_value(json_object_get(ev, "id"));
            if (id && !seen(f, id)) print_compact(ev);
        }
        const char *next = json_string_value(json_object_get(l, "next_page"));
        free(cursor);
        cursor = next ? strdup(next) : NULL;
        if (!cursor) return 0;
    }
}

/* The stream is attached: list the history now, so nothing falls in between. */
static int on_open(void *arg)
{
    follow_t *f = arg;
    if (list_all(f)) {
        f->failed = true;
        return 1;
    }
    return 0;
}

static int on_stream(const char *type, const char *data, void *arg)
{
    follow_t *f = arg;
    (void)type;
    shed_err err = {0};
    _cleanup_json_ json_t *ev = json_parse(data, strlen(data), 8u << 20, 64, &err);
    if (!ev) return 0;
    const char *id = json_string_value(json_object_get(ev, "id"));
    if (id && !seen(f, id)) print_compact(ev);
    return 0;
}

static int do_events(client_t *c, sess_opts_t *o, const char *sid)
{
    follow_t f = {.c = c, .sid = sid};
    int rc = 0;
    if (!o->follow) {
        rc = list_all(&f);
    } else {
        char path[256];
        snprintf(path, sizeof(path), "/v1/sessions/%.64s/events/stream", sid);
        shed_err err = {0};
        c->timeout_ms = 0;
        if (client_stream(c, path, on_open, on_stream, &f, &err) < 0) {
            fprintf(stderr, "shed session: %s\n", err.msg);
            rc = 1;
        }
        if (f.failed) rc = 1;
    }
    for (size_t i = 0; i < f.nseen; i++) free(f.seen[i]);
    free(f.seen);
    return rc;
}

int cmd_session(int argc, char **argv)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'},
        {"base-url", required_argument, NULL, 'u'},
        {"admin-key-file", required_argument, NULL, 'a'},
        {"state-dir", required_argument, NULL, 's'},
        {"environment-id", required_argument, NULL, 'e'},
        {"metadata", required_argument, NULL, 'm'},
        {"title", required_argument, NULL, 't'},
        {"wait", required_argument, NULL, 'w'},
        {"follow", no_argument, NULL, 'f'},
        {"json", no_argument, NULL, 'j'},
        {0, 0, 0, 0},
    };
    sess_opts_t o = {.wait_s = 60};
    _cleanup_json_ json_t *md = json_object();
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, ":hf", opts, NULL)) != -1) {
        char *end;
        switch (ch) {
        case 'h':
            fputs(USAGE, stdout);
            return 0;
        case 'u':
            o.base_url = optarg;
            break;
        case 'a':
            o.key_file = optarg;
            break;
        case 's':
            o.state_dir = optarg;
            break;
        case 'e':
            o.env_id = optarg;
            break;
        case 't':
            o.title = optarg;
            break;
        case 'f':
            o.follow = true;
            break;
        case 'j':
            o.json = true;
            break;
        case 'w':
            o.wait_s = strtod(optarg, &end);
            if (*end || o.wait_s < 0 || o.wait_s > 86400)
                return cmd_usage_error("session", USAGE, "--wait must be 0..86400 seconds");
            break;
        case 'm': {
            char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg)
                return cmd_usage_error("session", USAGE, "--metadata needs k=v");
            *eq = '\0';
            json_object_set_new(md, optarg, json_string(eq + 1));
            *eq = '=';
            o.metadata = md;
            break;
        }
        case ':':
            return cmd_usage_error("session", USAGE, "option '%s' needs a value", argv[optind - 1]);
        default:
            return cmd_usage_error("session", USAGE, "unknown option '%s'", argv[optind - 1]);
        }
    }
    int nargs = argc - optind;
    char **args = argv + optind;
    if (nargs < 1) return cmd_usage_error("session", USAGE, "missing subcommand");
    const char *sub = args[0];
    client_t c;
    shed_err err = {0};
    if (client_init(&c, o.base_url, o.key_file, o.state_dir, &err) < 0) {
        fprintf(stderr, "shed session: %s\n", err.msg);
        return EXIT_SETUP;
    }
    if (!strcmp(sub, "create")) {
        if (nargs != 1)
            return cmd_usage_error("session", USAGE, "unexpected argument '%s'", args[1]);
        return do_create(&c, &o);
    }
    if (!strcmp(sub, "tool")) {
        if (nargs != 4)
            return cmd_usage_error("session", USAGE,
                                   "session tool needs SESSION_ID NAME 'JSON_INPUT'");
        return do_tool(&c, &o, args[1], args[2], args[3]);
    }
    if (!strcmp(sub, "send")) {
        if (nargs < 3)
            return cmd_usage_error("session", USAGE, "session send needs SESSION_ID and events");
        return do_send(&c, args[1], nargs - 2, args + 2);
    }
    if (!strcmp(sub, "events")) {
        if (nargs != 2) return cmd_usage_error("session", USAGE, "session events needs SESSION_ID");
        return do_events(&c, &o, args[1]);
    }
    if (!strcmp(sub, "get")) {
        if (nargs != 2) return cmd_usage_error("session", USAGE, "session get needs SESSION_ID");
        char path[256];
        snprintf(path, sizeof(path), "/v1/sessions/%.64s", args[1]);
        _cleanup_json_ json_t *s = NULL;
        if (api(&c, "GET", path, NULL, &s)) return 1;
        print_compact(s);
        return 0;
    }
    return cmd_usage_error("session", USAGE, "unknown subcommand '%s'", sub);
}
