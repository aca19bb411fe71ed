/* shed worker admin: the client of a running worker's admin socket
 * (src/worker/admin.c): list its sessions, kill one, change or reset one's
 * egress policy. One JSON request line, one JSON answer line. Never sends or
 * prints a key, token or secret (the worker never answers with one).
 */
#include "cmd/cmd.h"

#include "base/cleanup.h"
#include "base/json.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

int cmd_worker_admin(int argc, char **argv, const char *default_state_dir);

static const char USAGE[] =
    "usage: shed worker admin [--socket PATH] [--json] list\n"
    "       shed worker admin [--socket PATH] kill SESSION_ID [--reason TEXT]\n"
    "       shed worker admin [--socket PATH] policy SESSION_ID FILE|--reset\n"
    "\n"
    "Talk to a running worker's admin socket (owner-only; default\n"
    "<state dir>/admin.sock, see `shed worker --admin-socket`).\n"
    "\n"
    "  list        the sessions served: ids, state, sandbox pid and uid, running time,\n"
    "              calls served, the call in flight (--json: the worker's answer as is)\n"
    "  kill        cancel the session's call in flight (its error result is posted),\n"
    "              destroy its sandbox, stop its work item; audited, counted in\n"
    "              shed_kills_total{reason=\"admin\"}\n"
    "  policy      apply FILE's network policy (a policy file, or just its \"network\"\n"
    "              object) to the session's running sandbox; --reset goes back to the\n"
    "              worker's policy. Audited as policy.changed.\n"
    "\n"
    "  --socket PATH     the admin socket\n"
    "  --state-dir DIR   the worker's state dir (the socket is DIR/admin.sock)\n"
    "  --reason TEXT     kill: why (goes into the call's error result and the log)\n"
    "  --json            list: print the JSON answer\n";

enum { O_SOCKET = 256, O_STATE, O_REASON, O_JSON, O_RESET };

static int request(const char *path, json_t *req, json_t **resp)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "shed worker admin: socket path %s is too long\n", path);
        return EXIT_SETUP;
    }
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        fprintf(stderr, "shed worker admin: connect %s: %s (is the worker running, and are you its user or root?)\n",
                path, strerror(errno));
        return EXIT_SETUP;
    }
    struct timeval tv = {.tv_sec = 60};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    _cleanup_free_ char *line = json_dumps(req, JSON_COMPACT);
    if (!line) return EXIT_SETUP;
    size_t len = strlen(line);
    if (send(fd, line, len, MSG_NOSIGNAL) != (ssize_t)len || send(fd, "\n", 1, MSG_NOSIGNAL) != 1) {
        fprintf(stderr, "shed worker admin: send to %s: %s\n", path, strerror(errno));
        return EXIT_SETUP;
    }
    size_t cap = 1 << 16, n = 0, limit = 16u << 20;
    _cleanup_free_ char *buf = malloc(cap);
    if (!buf) return EXIT_SETUP;
    for (;;) {
        if (n + 1 >= cap) {
            if (cap >= limit) {
                fprintf(stderr, "shed worker admin: answer larger than %zu bytes\n", limit);
                return EXIT_SETUP;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) return EXIT_SETUP;
            buf = nb;
            cap *= 2;
        }
        ssize_t r = recv(fd, buf + n, cap - n - 1, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += (size_t)r;
        if (memchr(buf + n - r, '\n', (size_t)r)) break;
    }
    shed_err err = {0};
    *resp = n ? json_parse(buf, n, limit, 64, &err) : NULL;
    if (!*resp) {
        fprintf(stderr, "shed worker admin: no valid answer from %s%s%s\n", path, n ? ": " : "", n ? err.msg : "");
        return EXIT_SETUP;
    }
    return 0;
}

static int load_network(const char *file, json_t **out)
{
    json_error_t je;
    json_t *j = json_load_file(file, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        fprintf(stderr, "shed worker admin: %s:%d: %s\n", file, je.line, je.text);
        return -1;
    }
    json_t *net = json_object_get(j, "network");
    if (json_is_object(net)) {
        json_incref(net);
        json_decref(j);
        j = net;
    }
    if (!json_is_object(j)) {
        fprintf(stderr, "shed worker admin: %s: expected a JSON object (a policy or its \"network\")\n", file);
        json_decref(j);
        return -1;
    }
    *out = j;
    return 0;
}

static void print_table(json_t *sessions)
{
    printf("%-32s %-28s %-10s %8s %6s %9s %6s  %s\n", "SESSION", "WORK", "STATE", "PID", "UID", "RUNNING_S",
           "CALLS", "CURRENT CALL");
    size_t i;
    json_t *s;
    json_array_foreach(sessions, i, s)
    {
        char cur[128] = "-";
        json_t *c = json_object_get(s, "current_call");
        if (json_is_object(c))
            snprintf(cur, sizeof(cur), "%s (%lld ms)", json_string_value(json_object_get(c, "tool")) ?: "?",
                     (long long)json_integer_value(json_object_get(c, "running_ms")));
        json_t *pid = json_object_get(s, "sandbox_pid"), *uid = json_object_get(s, "host_uid");
        printf("%-32s %-28s %-10s %8lld %6lld %9.1f %6lld  %s\n",
               json_string_value(json_object_get(s, "session_id")) ?: "?",
               json_string_value(json_object_get(s, "work_id")) ?: "?",
               json_string_value(json_object_get(s, "state")) ?: "?", json_is_integer(pid) ? (long long)json_integer_value(pid) : -1LL,
               json_is_integer(uid) ? (long long)json_integer_value(uid) : -1LL,
               json_real_value(json_object_get(s, "seconds_running")),
               (long long)json_integer_value(json_object_get(s, "calls_served")), cur);
    }
}

int cmd_worker_admin(int argc, char **argv, const char *default_state_dir)
{
    static const struct option opts[] = {
        {"socket", required_argument, NULL, O_SOCKET}, {"state-dir", required_argument, NULL, O_STATE},
        {"reason", required_argument, NULL, O_REASON}, {"json", no_argument, NULL, O_JSON},
        {"reset", no_argument, NULL, O_RESET},         {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *sock = NULL, *state = NULL, *reason = NULL;
    bool as_json = false, reset = false;
    optind = 1;
    opterr = 0;
    int c;
    /* "+"-less: options may follow the verb (kill ID --reason R). */
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case O_SOCKET: sock = optarg; break;
        case O_STATE: state = optarg; break;
        case O_REASON: reason = optarg; break;
        case O_JSON: as_json = true; break;
        case O_RESET: reset = true; break;
        case 'h': fputs(USAGE, stdout); return 0;
        case ':': return cmd_usage_error("worker admin", USAGE, "option '%s' needs a value", argv[optind - 1]);
        default: return cmd_usage_error("worker admin", USAGE, "unknown option '%s'", argv[optind - 1]);
        }
    }
    int nargs = argc - optind;
    char **args = argv + optind;
    if (nargs < 1) return cmd_usage_error("worker admin", USAGE, "say list, kill or policy");
    _cleanup_free_ char *defsock = NULL;
    if (!sock) {
        if (asprintf(&defsock, "%s/admin.sock", state ? state : default_state_dir) < 0) return EXIT_SETUP;
        sock = defsock;
    }
    _cleanup_json_ json_t *req = NULL;
    const char *verb = args[0];
    if (!strcmp(verb, "list")) {
        if (nargs != 1) return cmd_usage_error("worker admin", USAGE, "list: unexpected argument '%s'", args[1]);
        req = json_pack("{s:s}", "cmd", "list");
    } else if (!strcmp(verb, "kill")) {
        if (nargs != 2) return cmd_usage_error("worker admin", USAGE, "kill: give one SESSION_ID");
        req = json_pack("{s:s,s:s}", "cmd", "kill", "session_id", args[1]);
        if (req && reason) json_object_set_new(req, "reason", json_string(reason));
    } else if (!strcmp(verb, "policy")) {
        if (nargs != (reset ? 2 : 3))
            return cmd_usage_error("worker admin", USAGE, "policy: give SESSION_ID and either FILE or --reset");
        req = json_pack("{s:s,s:s}", "cmd", "policy", "session_id", args[1]);
        if (req && reset) json_object_set_new(req, "reset", json_true());
        else if (req) {
            json_t *net;
            if (load_network(args[2], &net) < 0) return EXIT_USAGE;
            json_object_set_new(req, "network", net);
        }
    } else {
        return cmd_usage_error("worker admin", USAGE, "unknown command '%s' (list, kill, policy)", verb);
    }
    if (!req) return EXIT_SETUP;
    _cleanup_json_ json_t *resp = NULL;
    int rc = request(sock, req, &resp);
    if (rc) return rc;
    if (!json_is_true(json_object_get(resp, "ok"))) {
        fprintf(stderr, "shed worker admin: %s\n", json_string_value(json_object_get(resp, "error")) ?: "failed");
        return 1;
    }
    if (!strcmp(verb, "list") && !as_json) {
        print_table(json_object_get(resp, "sessions"));
    } else {
        char *s = json_dumps(resp, JSON_COMPACT);
        if (s) puts(s);
        free(s);
    }
    return 0;
}
