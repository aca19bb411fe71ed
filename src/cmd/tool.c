/* shed tool: run agent tool calls (bash, read, write, edit, glob, grep) in
 * one fresh sandbox, in order, with one persistent bash across them, and
 * print one JSON line per call: {"name","is_error","content"}. It is how a
 * person tries a tool by hand and how the conformance suite drives shed's
 * side (tests/compat/). The calls run inside the sandbox's init through the
 * control channel, exactly as the worker runs them; this command never runs
 * a tool on the host. The first SIGINT cancels the call in flight through
 * the channel (as the worker cancels); SIGTERM/SIGHUP or a second SIGINT
 * tear the sandbox down. */
#include "cmd/cmd.h"

#include "base/cleanup.h"
#include "base/clock.h"
#include "base/json.h"
#include "sandbox/ctl.h"
#include "sandbox/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#define CALLS_MAX_BYTES (64 << 20)
#define MAX_ENV 64

static const char USAGE[] =
    "usage: shed tool [--workspace DIR] [--policy FILE] [--workdir PATH] [--env K=V]...\n"
    "                 [--timeout-ms N] [--repeat N] [--timing] --calls FILE\n"
    "  Run the tool calls in FILE (a JSON array of {\"name\", \"input\"}) in order in one\n"
    "  fresh sandbox (one persistent bash across them) and print one JSON line per call:\n"
    "  {\"name\", \"is_error\", \"content\"}. FILE \"-\" reads stdin.\n"
    "  --workspace DIR  host directory mounted at the work directory (default: a tmpfs)\n"
    "  --policy FILE    sandbox policy (docs/policy.md); default: built-in, deny by default\n"
    "  --workdir PATH   the work directory inside the sandbox (default /workspace)\n"
    "  --env K=V        add K=V to the tools' environment (repeatable)\n"
    "  --timeout-ms N   per-call deadline passed with each call (bash's default timeout)\n"
    "  --repeat N       run the whole list N times in the same sandbox (benchmarks)\n"
    "  --timing         add \"elapsed_us\" (request sent to result received) to each line,\n"
    "                   and print init's and its children's RSS to stderr at the end\n"
    "  ^C cancels the call in flight (its result says so) and stops; a second ^C, or\n"
    "  SIGTERM/SIGHUP, tears the sandbox down at once.\n"
    "  Exit status: 0 when every call ran (a call's own error is in its line), 1 when\n"
    "  the sandbox stopped answering, 125 when it could not be set up, 2 on bad usage.\n";

static char *slurp(const char *path, size_t *len, shed_err *err)
{
    _cleanup_close_ int fd = strcmp(path, "-") ? open(path, O_RDONLY | O_CLOEXEC) : dup(0);
    if (fd < 0) {
        err_set(err, errno, "open %s", path);
        return NULL;
    }
    size_t cap = 65536, n = 0;
    char *b = malloc(cap);
    while (b) {
        if (n == cap) {
            if (cap >= CALLS_MAX_BYTES) {
                free(b);
                err_msg(err, EFBIG, "%s is larger than %d bytes", path, CALLS_MAX_BYTES);
                return NULL;
            }
            char *nb = realloc(b, cap * 2);
            if (!nb) break;
            b = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, b + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            err_set(err, errno, "read %s", path);
            free(b);
            return NULL;
        }
        if (r == 0) {
            *len = n;
            return b;
        }
        n += (size_t)r;
    }
    free(b);
    err_set(err, ENOMEM, "read %s", path);
    return NULL;
}

static void print_line(const char *name, json_t *is_error, json_t *content, int64_t elapsed_us)
{
    json_t *line = json_object();
    json_object_set_new(line, "name", json_string(name));
    json_object_set(line, "is_error", is_error ? is_error : json_true());
    json_object_set(line, "content", content);
    if (elapsed_us >= 0) json_object_set_new(line, "elapsed_us", json_integer(elapsed_us));
    _cleanup_free_ char *s = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(line);
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
        fflush(stdout);
    }
}

/* VmRSS of pid in KiB, or -1. */
static long rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    _cleanup_fclose_ FILE *f = fopen(path, "re");
    if (!f) return -1;
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, "VmRSS:", 6)) return strtol(line + 6, NULL, 10);
    return -1;
}

/* init's RSS and the sum over its direct children (the persistent bash). */
static void print_rss(pid_t init)
{
    long children = 0;
    int nchildren = 0;
    char path[96];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)init, (int)init);
    _cleanup_fclose_ FILE *f = fopen(path, "re");
    int pid;
    while (f && fscanf(f, "%d", &pid) == 1) {
        long r = rss_kb(pid);
        if (r > 0) children += r, nchildren++;
    }
    fprintf(stderr, "{\"init_rss_kb\":%ld,\"children\":%d,\"children_rss_kb\":%ld}\n", rss_kb(init), nchildren,
            children);
}

static void print_error_line(const char *name, const char *msg)
{
    json_t *content = json_pack("[{s:s, s:s}]", "type", "text", "text", msg);
    print_line(name, json_true(), content, -1);
    json_decref(content);
}

int cmd_tool(int argc, char **argv)
{
    static const struct option OPTS[] = {
        {"workspace", required_argument, NULL, 'w'}, {"policy", required_argument, NULL, 'p'},
        {"calls", required_argument, NULL, 'c'},     {"workdir", required_argument, NULL, 'd'},
        {"env", required_argument, NULL, 'e'},       {"timeout-ms", required_argument, NULL, 't'},
        {"repeat", required_argument, NULL, 'r'},    {"timing", no_argument, NULL, 'T'},
        {"help", no_argument, NULL, 'h'},            {NULL, 0, NULL, 0}};
    long repeat = 1;
    bool timing = false;
    const char *policy = NULL, *calls_path = NULL;
    sandbox_opts o = {.slot = -1};
    char *env[MAX_ENV + 1] = {0};
    int nenv = 0;
    long long timeout_ms = 0;
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "+h", OPTS, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'h': fputs(USAGE, stdout); return 0;
        case 'w': o.workspace = optarg; break;
        case 'p': policy = optarg; break;
        case 'c': calls_path = optarg; break;
        case 'd': o.workdir = optarg; break;
        case 'e':
            if (!strchr(optarg, '=') || optarg[0] == '=')
                return cmd_usage_error("tool", USAGE, "--env: expected K=V, got '%s'", optarg);
            if (nenv == MAX_ENV) return cmd_usage_error("tool", USAGE, "--env: at most %d", MAX_ENV);
            env[nenv++] = optarg;
            break;
        case 't':
            timeout_ms = strtoll(optarg, &end, 10);
            if (*end || !*optarg || timeout_ms <= 0)
                return cmd_usage_error("tool", USAGE, "--timeout-ms: bad number '%s'", optarg);
            break;
        case 'r':
            repeat = strtol(optarg, &end, 10);
            if (*end || !*optarg || repeat <= 0 || repeat > 10000000)
                return cmd_usage_error("tool", USAGE, "--repeat: bad number '%s'", optarg);
            break;
        case 'T': timing = true; break;
        default: return cmd_usage_error("tool", USAGE, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return cmd_usage_error("tool", USAGE, "unexpected argument '%s'", argv[optind]);
    if (!calls_path) return cmd_usage_error("tool", USAGE, "--calls FILE is required");
    o.env = nenv ? env : NULL;

    shed_err err = {0};
    size_t len = 0;
    _cleanup_free_ char *text = slurp(calls_path, &len, &err);
    if (!text) {
        fprintf(stderr, "shed tool: %s\n", err.msg);
        return EXIT_USAGE;
    }
    /* as the worker takes them from the API: a string may hold U+0000 */
    _cleanup_json_ json_t *calls = json_parse_flags(text, len, CALLS_MAX_BYTES, JSON_TOOL_INPUT_DEPTH, JSON_ALLOW_NUL, &err);
    if (!calls) {
        fprintf(stderr, "shed tool: %s: %s\n", calls_path, err.msg);
        return EXIT_USAGE;
    }
    if (!json_is_array(calls)) {
        fprintf(stderr, "shed tool: %s: expected a JSON array of {\"name\", \"input\"}\n", calls_path);
        return EXIT_USAGE;
    }
    size_t i;
    json_t *call;
    json_array_foreach(calls, i, call)
    {
        json_t *in = json_object_get(call, "input");
        if (!json_is_object(call) || !json_is_string(json_object_get(call, "name")) ||
            (in && !json_is_object(in) && !json_is_null(in))) {
            fprintf(stderr, "shed tool: %s: call %zu: expected {\"name\": string, \"input\": object}\n",
                    calls_path, i);
            return EXIT_USAGE;
        }
    }

    _cleanup_close_ int sfd = cmd_block_signals();

    sandbox_policy *pol = NULL;
    if (sandbox_policy_load(policy, &pol, &err) < 0) {
        fprintf(stderr, "shed tool: %s\n", err.msg);
        return EXIT_SETUP;
    }
    sandbox_t *sb = NULL;
    if (sandbox_create(pol, &o, &sb, &err) < 0) {
        fprintf(stderr, "shed tool: %s\n", err.msg);
        sandbox_policy_free(pol);
        return EXIT_SETUP;
    }
    /* No egress here: the listeners are closed, connections to the proxy refused. */
    int lf[3];
    sandbox_take_listeners(sb, &lf[0], &lf[1], &lf[2]);
    for (int k = 0; k < 3; k++)
        if (lf[k] >= 0) close(lf[k]);

    int rc = 0, sig_got = 0, cancel_sent = 0;
    int ctl = sandbox_ctl_fd(sb);
    json_int_t next_id = 1;
    for (long rep = 0; rep < repeat && !rc && !sig_got; rep++) {
    json_array_foreach(calls, i, call)
    {
        const char *name = json_string_value(json_object_get(call, "name"));
        json_t *in = json_object_get(call, "input");
        json_int_t id = next_id++;
        json_t *input = json_is_object(in) ? json_incref(in) : json_object();
        _cleanup_json_ json_t *req = json_pack("{s:s, s:I, s:s, s:o}", "type", "tool", "id", id, "tool", name,
                                               "input", input);
        if (timeout_ms > 0) json_object_set_new(req, "timeout_ms", json_integer(timeout_ms));
        int64_t t0 = clock_mono_ns();
        if (ctl_send(ctl, req, NULL, 0, &err) < 0) {
            if (err.code == ELOOP || err.code == EMSGSIZE) {
                /* the input cannot cross the channel: answered, as the worker does */
                char msg[sizeof(err.msg) + 64];
                snprintf(msg, sizeof(msg), "the sandbox could not take the call: %s", err.msg);
                print_error_line(name, msg);
                continue;
            }
            fprintf(stderr, "shed tool: %s\n", err.msg);
            rc = 1;
            break;
        }
        bool done = false;
        while (!done && !rc && !sig_got) {
            int64_t deadline = sandbox_deadline_ms(sb);
            int wait = -1;
            if (deadline) {
                int64_t left = deadline - clock_mono_ms();
                wait = left < 0 ? 0 : (int)(left > 1000000 ? 1000000 : left);
            }
            struct pollfd p[2] = {{.fd = ctl, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
            int n = poll(p, 2, wait);
            if (n < 0 && errno == EINTR) continue;
            if (n == 0) {
                fprintf(stderr, "shed tool: the sandbox outlived its deadline; killed\n");
                rc = 1;
                break;
            }
            if (p[1].revents) {
                struct signalfd_siginfo si;
                if (read(sfd, &si, sizeof(si)) != sizeof(si)) continue;
                if (cancel_sent || si.ssi_signo != SIGINT) {
                    sig_got = (int)si.ssi_signo; /* a second signal: tear down now */
                    break;
                }
                /* the first ^C cancels the call in flight, as the worker would;
                 * its result (the abort) is printed, then we stop */
                _cleanup_json_ json_t *cm = json_pack("{s:s, s:I}", "type", "cancel", "id", id);
                if (ctl_send(ctl, cm, NULL, 0, &err) < 0) {
                    sig_got = (int)si.ssi_signo;
                    break;
                }
                cancel_sent = (int)si.ssi_signo;
                continue;
            }
            json_t *m = NULL;
            if (ctl_recv(ctl, &m, NULL, NULL, &err) < 0) {
                fprintf(stderr, "shed tool: the sandbox's init ended unexpectedly: %s\n", err.msg);
                rc = 1;
                break;
            }
            const char *type = json_string_value(json_object_get(m, "type"));
            json_int_t mid = json_integer_value(json_object_get(m, "id"));
            if (type && mid == id && !strcmp(type, "result")) {
                json_t *content = json_object_get(m, "content");
                json_t *is_error = json_object_get(m, "is_error");
                if (!json_is_array(content) || !json_is_boolean(is_error)) {
                    print_error_line(name, "shed tool: init sent a malformed result");
                    rc = 1;
                } else
                    print_line(name, is_error, content, timing ? (clock_mono_ns() - t0) / 1000 : -1);
                done = true;
            } else if (type && !strcmp(type, "error") && (mid == id || mid == 0)) {
                char msg[1024];
                snprintf(msg, sizeof(msg), "shed tool: init: %s",
                         json_string_value(json_object_get(m, "message")) ?: "error");
                fprintf(stderr, "%s\n", msg);
                print_error_line(name, msg);
                rc = 1;
                done = true;
            } else if (type && !strcmp(type, "limit")) {
                fprintf(stderr, "shed tool: the sandbox hit its %s limit; its processes were killed\n",
                        json_string_value(json_object_get(m, "what")) ?: "resource");
            }
            json_decref(m);
        }
        if (cancel_sent && !sig_got) sig_got = cancel_sent;
        if (rc || sig_got) break;
    }
    }
    if (sig_got) rc = 128 + sig_got;
    if (timing) print_rss(sandbox_init_pid(sb));
    if (sandbox_destroy(sb, 0, &err) < 0) fprintf(stderr, "shed tool: tearing the sandbox down: %s\n", err.msg);
    sandbox_policy_free(pol);
    return rc;
}
