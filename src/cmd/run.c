/* shed run: one command in a fresh sandbox, one shot. The command gets this
 * process's stdin/stdout/stderr (passed to init as fds: no relay copies),
 * /workspace as its working directory, and the sandbox user. Exit status:
 * the command's; 128+N when killed by signal N; 125 when the sandbox could
 * not be set up. SIGINT/SIGTERM/SIGHUP tear the whole sandbox down. Never
 * leaves a process, cgroup or directory behind. */
#include "cmd/cmd.h"

#include "base/cleanup.h"
#include "base/clock.h"
#include "base/log.h"
#include "egress/egress.h"
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
#include <unistd.h>

static const char USAGE[] =
    "usage: shed run [--policy FILE] [--workspace DIR] [--memory-max BYTES] [--pids-max N]\n"
    "                [--timeout SECONDS] [--json-status FD] [--label NAME] -- COMMAND [ARG...]\n"
    "  Run COMMAND as the sandbox user in a fresh sandbox, /workspace as its working\n"
    "  directory (DIR on the host; without it, a size-limited tmpfs that is gone after).\n"
    "  As root, DIR is given to the sandbox's own host uid (chown): use a dedicated one.\n"
    "  --policy FILE       sandbox policy (docs/policy.md); default: built-in, deny by default\n"
    "  --memory-max BYTES  memory limit (K/M/G suffixes), overrides the policy\n"
    "  --pids-max N        process limit, overrides the policy\n"
    "  --timeout SECONDS   SIGTERM the command after SECONDS, SIGKILL 2 s later\n"
    "  --json-status FD    write JSON lines about the sandbox and the exit to FD\n"
    "  Exit status: the command's; 128+N if killed by signal N; 125 if the sandbox\n"
    "  could not be set up (the message names the step).\n";

static void status_line(int fd, json_t *j)
{
    if (fd < 0) {
        json_decref(j);
        return;
    }
    _cleanup_free_ char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (s) dprintf(fd, "%s\n", s);
}

int cmd_run(int argc, char **argv)
{
    static const struct option OPTS[] = {
        {"policy", required_argument, NULL, 'p'},  {"workspace", required_argument, NULL, 'w'},
        {"memory-max", required_argument, NULL, 'm'}, {"pids-max", required_argument, NULL, 'n'},
        {"timeout", required_argument, NULL, 't'},  {"json-status", required_argument, NULL, 'j'},
        {"label", required_argument, NULL, 'l'},    {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *policy = NULL;
    sandbox_opts o = {.slot = -1, .init_in_place = true};
    double timeout_s = 0;
    int status_fd = -1;
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "+h", OPTS, NULL)) != -1) {
        char *end;
        unsigned long long v;
        switch (c) {
        case 'h': fputs(USAGE, stdout); return 0;
        case 'p': policy = optarg; break;
        case 'w': o.workspace = optarg; break;
        case 'l': o.label = optarg; break;
        case 'm':
            if (cmd_parse_size(optarg, &v) < 0 || v == 0)
                return cmd_usage_error("run", USAGE, "--memory-max: bad size '%s'", optarg);
            o.memory_max = v;
            break;
        case 'n':
            v = strtoull(optarg, &end, 10);
            if (*end || !*optarg || v == 0)
                return cmd_usage_error("run", USAGE, "--pids-max: bad number '%s'", optarg);
            o.pids_max = v;
            break;
        case 't':
            timeout_s = strtod(optarg, &end);
            if (*end || !*optarg || timeout_s <= 0 || timeout_s > 1e8)
                return cmd_usage_error("run", USAGE, "--timeout: bad number of seconds '%s'", optarg);
            break;
        case 'j':
            status_fd = (int)strtol(optarg, &end, 10);
            if (*end || status_fd < 0 || fcntl(status_fd, F_GETFD) < 0)
                return cmd_usage_error("run", USAGE, "--json-status: '%s' is not an open fd", optarg);
            fcntl(status_fd, F_SETFD, FD_CLOEXEC);
            break;
        default:
            return cmd_usage_error("run", USAGE, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc) return cmd_usage_error("run", USAGE, "missing COMMAND (after --)");

    /* Signals first, so that an early SIGINT still tears the sandbox down. */
    _cleanup_close_ int sfd = cmd_block_signals();

    shed_err err;
    sandbox_policy *pol = NULL;
    if (sandbox_policy_load(policy, &pol, &err) < 0) {
        fprintf(stderr, "shed run: %s\n", err.msg);
        return EXIT_SETUP;
    }
    egress_policy *epol = NULL;
    if (egress_policy_parse(sandbox_policy_network(pol), &epol, &err) < 0) {
        fprintf(stderr, "shed run: policy: %s\n", err.msg);
        sandbox_policy_free(pol);
        return EXIT_SETUP;
    }
    /* Sweep sandboxes whose `shed run` was killed (owner pid gone). */
    if (sandbox_reconcile(NULL, &err) < 0) fprintf(stderr, "shed run: reconcile: %s\n", err.msg);
    if (timeout_s > 0) o.timeout_ms = (int64_t)(timeout_s * 1000) + 10000; /* backstop */
    sandbox_t *sb = NULL;
    if (sandbox_create_start(pol, &o, &sb, &err) < 0) {
        fprintf(stderr, "shed run: %s\n", err.msg);
        sandbox_policy_free(pol);
        egress_policy_free(epol);
        return EXIT_SETUP;
    }

    json_t *argv_j = json_array(), *env_j = json_array();
    for (int i = optind; i < argc; i++) json_array_append_new(argv_j, json_string(argv[i]));
    const char *term = getenv("TERM");
    if (term) {
        char buf[256];
        snprintf(buf, sizeof(buf), "TERM=%s", term);
        json_array_append_new(env_j, json_string(buf));
    }
    int64_t cmd_to = timeout_s > 0 ? (int64_t)(timeout_s * 1000) : 0;
    /* last: init ends the sandbox right after reporting the exit */
    _cleanup_json_ json_t *ex = json_pack("{s:s,s:i,s:o,s:o,s:b}", "type", "exec", "id", 1, "argv",
                                          argv_j, "env", env_j, "last", 1);
    if (cmd_to) json_object_set_new(ex, "timeout_ms", json_integer(cmd_to));
    int stdio[3] = {0, 1, 2};
    /* The command goes now, while init is still starting: init reads it
     * right after its "ready", a round trip earlier than after create. A
     * child that died during setup closed its end: the wait names why. */
    shed_err serr = {0};
    int sent = ctl_send(sandbox_ctl_fd(sb), ex, stdio, 3, &serr);
    int waited = sandbox_create_wait(sb, &err);
    if (waited < 0 || sent < 0) {
        fprintf(stderr, "shed run: %s\n", waited < 0 ? err.msg : serr.msg);
        if (sandbox_destroy(sb, 0, &err) < 0)
            fprintf(stderr, "shed run: tearing the sandbox down: %s\n", err.msg);
        sandbox_policy_free(pol);
        egress_policy_free(epol);
        return EXIT_SETUP;
    }
    if (status_fd >= 0)
        status_line(status_fd, json_pack("{s:s,s:i,s:i,s:s,s:s}", "label", sandbox_label(sb),
                                         "init-pid", (int)sandbox_init_pid(sb), "host-uid",
                                         (int)sandbox_host_uid(sb), "cgroup",
                                         sandbox_cgroup_mode(sb), "policy-digest",
                                         sandbox_policy_digest(pol)));

    int rc = EXIT_SETUP;
    int sig_got = 0;
    /* The sandbox's only way out: the egress proxy, served on its own thread
     * (this process waits in poll below). Started after the command: until
     * it runs, connections wait in the listeners' backlog and DNS queries in
     * the socket's buffer, and its start-up is off the command's path. */
    egress_runner *eg = NULL;
    int lf[3];
    sandbox_take_listeners(sb, &lf[0], &lf[1], &lf[2]);
    if (egress_runner_start(sandbox_label(sb), epol, lf[0], lf[1], lf[2], &eg, &err) < 0) {
        fprintf(stderr, "shed run: %s\n", err.msg);
        goto out;
    }
    int64_t deadline = sandbox_deadline_ms(sb);
    bool timed_out = false;
    for (;;) {
        int wait = -1;
        if (deadline) {
            int64_t left = deadline - clock_mono_ms();
            wait = left < 0 ? 0 : (int)(left > 1000000 ? 1000000 : left);
        }
        struct pollfd p[2] = {{.fd = sandbox_ctl_fd(sb), .events = POLLIN},
                              {.fd = sfd, .events = POLLIN}};
        int n = poll(p, 2, wait);
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) {
            timed_out = true;
            fprintf(stderr, "shed run: the sandbox outlived its deadline; killed\n");
            rc = 128 + SIGKILL;
            break;
        }
        if (p[1].revents) {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof(si)) == sizeof(si)) {
                sig_got = (int)si.ssi_signo;
                rc = 128 + sig_got;
                break;
            }
        }
        if (p[0].revents) {
            json_t *m = NULL;
            int got = ctl_recv(sandbox_ctl_fd(sb), &m, NULL, NULL, &err);
            if (got < 0) {
                if (sandbox_oom_kills(sb) > 0) {
                    fprintf(stderr, "shed run: the sandbox was killed by its memory limit\n");
                    rc = 128 + SIGKILL;
                } else {
                    fprintf(stderr, "shed run: the sandbox's init ended unexpectedly: %s\n",
                            err.msg);
                }
                break;
            }
            const char *type = json_string_value(json_object_get(m, "type"));
            if (type && !strcmp(type, "exit")) {
                rc = (int)json_integer_value(json_object_get(m, "status"));
                json_decref(m);
                break;
            }
            const char *what = json_string_value(json_object_get(m, "what"));
            if (type && !strcmp(type, "limit"))
                fprintf(stderr, "shed run: the workspace grew over its limit (%lld > %lld %s); "
                                "the sandbox's processes were killed\n",
                        (long long)json_integer_value(json_object_get(m, "used")),
                        (long long)json_integer_value(json_object_get(m, "max")),
                        what && !strcmp(what, "files") ? "files and directories" : "bytes");
            if (type && !strcmp(type, "error")) {
                fprintf(stderr, "shed run: %s\n",
                        json_string_value(json_object_get(m, "message")) ?: "init error");
                json_decref(m);
                break;
            }
            json_decref(m);
        }
    }
    if (rc == 128 + SIGKILL && sandbox_oom_kills(sb) > 0)
        fprintf(stderr, "shed run: the command was killed by the memory limit\n");
    if (status_fd >= 0) /* the counters are two cgroup file reads: only when asked */
        status_line(status_fd, json_pack("{s:i,s:I,s:I,s:b,s:i}", "exit-code", rc, "oom-kills",
                                         (json_int_t)sandbox_oom_kills(sb), "pids-denied",
                                         (json_int_t)sandbox_pids_denied(sb), "timed-out",
                                         timed_out, "signal", sig_got));
out:
    /* Without a grace period (not a signal), SIGKILL init first: the kernel
     * tears the pid namespace down while the egress thread stops; destroy
     * then waits for it and removes the rest. */
    if (!sig_got) sandbox_kill(sb);
    egress_runner_stop(eg);
    egress_policy_free(epol);
    if (sandbox_destroy(sb, sig_got ? 500 : 0, &err) < 0)
        fprintf(stderr, "shed run: tearing the sandbox down: %s\n", err.msg);
    sandbox_policy_free(pol);
    return rc;
}
