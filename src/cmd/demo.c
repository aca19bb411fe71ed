/* shed demo: an embedded `shed serve` (a child process of this binary on a
 * free loopback port, temporary SQLite), a `shed worker` (another child),
 * an environment with a key, and two sessions, each run for real in its own
 * sandbox: session one writes report.txt and reads it back, session two runs
 * python3. Prints what happened, then shuts everything down and removes what
 * it made. Never pretends: when a part it needs is not built in, it says
 * which and exits non-zero; a check that fails makes it exit 1.
 */
#include "cmd/cmd.h"

#include "base/cleanup.h"
#include "base/clock.h"
#include "base/id.h"
#include "base/json.h"
#include "client/client.h"
#include "worker/sbx.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char USAGE[] =
    "usage: shed demo [--help] [--keep]\n"
    "\n"
    "Start a local control plane (shed serve, temporary SQLite) and a worker,\n"
    "create an environment and two sessions, and run them for real, each in its\n"
    "own sandbox: session one writes report.txt and reads it back; session two\n"
    "runs python3. Prints what happened, then removes everything it made\n"
    "(--keep leaves the temporary directory for inspection).\n";

#define REPORT_TEXT "hello from a claimed self-hosted work item"

typedef struct demo {
    char dir[256];
    pid_t serve_pid, worker_pid;
    client_t cl;
    char env_id[128];
    char worker_log[300];
    long log_off;
    int failures;
} demo_t;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

static void check(demo_t *d, int ok, const char *what)
{
    say("  %s %s", ok ? "[ok]  " : "[FAIL]", what);
    if (!ok) d->failures++;
}

/* Print the worker's new log lines that tell the story. */
static void worker_news(demo_t *d)
{
    FILE *f = fopen(d->worker_log, "re");
    if (!f) return;
    fseek(f, d->log_off, SEEK_SET);
    char line[2048];
    static const char *const keep[] = {"claimed work", "lease held", "sandbox ready", "running call",
                                       "finished", "result posted", "ending", "sandbox destroyed",
                                       "work item stopped", "workspace removed", "denied",
                                       "worker stopped", "started:", "error", "FAIL"};
    while (fgets(line, sizeof(line), f)) {
        for (size_t i = 0; i < ARRAY_SIZE(keep); i++) {
            if (strstr(line, keep[i])) {
                printf("    worker | %s", line);
                break;
            }
        }
    }
    d->log_off = ftell(f);
    fclose(f);
    fflush(stdout);
}

static pid_t spawn(char *const argv[], const char *out_path, int *ready_fd)
{
    int p[2] = {-1, -1};
    if (ready_fd && pipe2(p, O_CLOEXEC) < 0) return -1;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int fd = open(out_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd >= 0) {
            dup2(fd, 2);
            if (!ready_fd) dup2(fd, 1);
        }
        if (ready_fd) dup2(p[1], 1);
        int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (nul >= 0) dup2(nul, 0);
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    if (ready_fd) {
        close(p[1]);
        *ready_fd = p[0];
    }
    return pid;
}

static int stop_child(pid_t pid, int timeout_ms)
{
    if (pid <= 0) return 0;
    kill(pid, SIGTERM);
    int64_t end = clock_mono_ms() + timeout_ms;
    int st = 0;
    while (clock_mono_ms() < end) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        usleep(20000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

static json_t *call(demo_t *d, const char *method, const char *path, json_t *body, long want)
{
    long status = 0;
    json_t *resp = NULL;
    shed_err err = {0};
    if (client_request(&d->cl, method, path, body, &status, &resp, &err) < 0) {
        say("  request %s %s failed: %s", method, path, err.msg);
        return NULL;
    }
    if (status != want) {
        say("  %s %s: HTTP %ld: %s", method, path, status, client_error_message(resp));
        json_decref(resp);
        return NULL;
    }
    return resp ? resp : json_object();
}

/* Post an agent.tool_use and wait for its user.tool_result. */
static json_t *run_tool(demo_t *d, const char *sid, const char *name, json_t *input)
{
    char path[256];
    snprintf(path, sizeof(path), "/v1/sessions/%s/events", sid);
    _cleanup_json_ json_t *body =
        json_pack("{s:[{s:s,s:s,s:o}]}", "events", "type", "agent.tool_use", "name", name, "input", input);
    _cleanup_json_ json_t *r = call(d, "POST", path, body, 200);
    const char *id = r ? json_string_value(json_object_get(json_array_get(json_object_get(r, "data"), 0), "id")) : NULL;
    if (!id) return NULL;
    char tid[128];
    snprintf(tid, sizeof(tid), "%s", id);
    _cleanup_free_ char *in = json_dumps(json_object_get(json_array_get(json_object_get(body, "events"), 0), "input"), JSON_COMPACT);
    say("  agent  | %s: agent.tool_use %s %s", sid, name, in);
    int64_t end = clock_mono_ms() + 60000;
    char lpath[300];
    snprintf(lpath, sizeof(lpath), "/v1/sessions/%s/events?limit=1000", sid);
    while (clock_mono_ms() < end) {
        _cleanup_json_ json_t *ev = call(d, "GET", lpath, NULL, 200);
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(ev, "data"), i, e)
        {
            const char *t = json_string_value(json_object_get(e, "type"));
            const char *u = json_string_value(json_object_get(e, "tool_use_id"));
            if (t && u && !strcmp(t, "user.tool_result") && !strcmp(u, tid)) {
                worker_news(d);
                json_t *res = json_incref(e);
                const char *text = json_string_value(json_object_get(json_array_get(json_object_get(e, "content"), 0), "text"));
                say("  agent  | %s: user.tool_result%s: %s", sid,
                    json_is_true(json_object_get(e, "is_error")) ? " (error)" : "", text ? text : "");
                return res;
            }
        }
        usleep(50000);
    }
    say("  no result for %s within 60 s", tid);
    return NULL;
}

static const char *result_text(json_t *r)
{
    const char *t = json_string_value(json_object_get(json_array_get(json_object_get(r, "content"), 0), "text"));
    return t ? t : "";
}

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)f;
    return (flag == FTW_DP || flag == FTW_D) ? rmdir(p) : unlink(p);
}

static int wait_stopped(demo_t *d, const char *sid, int timeout_ms)
{
    char path[300];
    snprintf(path, sizeof(path), "/v1/environments/%s/work?limit=1000", d->env_id);
    int64_t end = clock_mono_ms() + timeout_ms;
    while (clock_mono_ms() < end) {
        _cleanup_json_ json_t *w = call(d, "GET", path, NULL, 200);
        size_t i;
        json_t *it;
        int open = 0, seen = 0;
        json_array_foreach(json_object_get(w, "data"), i, it)
        {
            const char *s = json_string_value(json_object_get(json_object_get(it, "data"), "id"));
            const char *st = json_string_value(json_object_get(it, "state"));
            if (!s || strcmp(s, sid)) continue;
            seen++;
            if (st && strcmp(st, "stopped")) open++;
        }
        if (seen && !open) return 0;
        usleep(100000);
    }
    return -ETIMEDOUT;
}

static int demo_run(demo_t *d)
{
    say("shed demo: a local control plane, a worker, two sessions, each in its own sandbox");
    say("  scratch directory %s (removed at the end)", d->dir);

    /* 1. shed serve, embedded. */
    char sdir[300], slog[300];
    snprintf(sdir, sizeof(sdir), "%s/serve", d->dir);
    snprintf(slog, sizeof(slog), "%s/serve.log", d->dir);
    mkdir(sdir, 0700);
    char *sargv[] = {"shed", "serve", "--listen", "127.0.0.1:0", "--state-dir", sdir, NULL};
    int rfd = -1;
    d->serve_pid = spawn(sargv, slog, &rfd);
    if (d->serve_pid < 0) return say("cannot start shed serve: %s", strerror(errno)), -1;
    char line[512] = {0};
    FILE *rf = fdopen(rfd, "r");
    if (!rf || !fgets(line, sizeof(line), rf)) {
        say("shed serve did not start; its log: %s", slog);
        return -1;
    }
    fclose(rf);
    char *url = strstr(line, "http://");
    if (!url) return say("shed serve: unexpected ready line: %s", line), -1;
    url[strcspn(url, "\r\n")] = 0;
    say("\n1. shed serve listening on %s (SQLite in %s)", url, sdir);
    shed_err err = {0};
    if (client_init(&d->cl, url, NULL, NULL, &err) < 0) return say("client: %s", err.msg), -1;

    /* 2. environment + key file. */
    _cleanup_json_ json_t *eb = json_pack("{s:s,s:{s:s}}", "name", "shed-demo", "config", "type", "self_hosted");
    _cleanup_json_ json_t *env = call(d, "POST", "/v1/environments", eb, 200);
    if (!env) return -1;
    snprintf(d->env_id, sizeof(d->env_id), "%s", json_string_value(json_object_get(env, "id")));
    char kpath[300];
    snprintf(kpath, sizeof(kpath), "/v1/environments/%s/keys", d->env_id);
    _cleanup_json_ json_t *key = call(d, "POST", kpath, NULL, 201);
    if (!key) return -1;
    char keyfile[300];
    snprintf(keyfile, sizeof(keyfile), "%s/environment.key", d->dir);
    int kfd = open(keyfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    const char *k = json_string_value(json_object_get(key, "key"));
    if (kfd < 0 || !k || write(kfd, k, strlen(k)) != (ssize_t)strlen(k)) return say("write key file failed"), -1;
    close(kfd);
    json_object_del(key, "key");
    say("2. environment %s, key written to %s (mode 0600; never printed)", d->env_id, keyfile);

    /* 3. shed worker. */
    char wdir[300];
    snprintf(wdir, sizeof(wdir), "%s/worker", d->dir);
    snprintf(d->worker_log, sizeof(d->worker_log), "%s/worker.log", d->dir);
    char *wargv[] = {"shed", "worker", "--environment-id", d->env_id, "--environment-key-file", keyfile,
                     "--base-url", url, "--state-dir", wdir, "--max-idle", "2", "--max-sessions", "4", NULL};
    d->worker_pid = spawn(wargv, d->worker_log, NULL);
    if (d->worker_pid < 0) return say("cannot start the worker"), -1;
    say("3. shed worker started (pid %d), state in %s", (int)d->worker_pid, wdir);

    /* 4. two sessions. */
    _cleanup_json_ json_t *sb = json_pack("{s:s}", "environment_id", d->env_id);
    _cleanup_json_ json_t *s1 = call(d, "POST", "/v1/sessions", sb, 200);
    _cleanup_json_ json_t *s2 = call(d, "POST", "/v1/sessions", sb, 200);
    if (!s1 || !s2) return -1;
    const char *sid1 = json_string_value(json_object_get(s1, "id"));
    const char *sid2 = json_string_value(json_object_get(s2, "id"));
    say("4. sessions %s and %s created: each enqueues a work item", sid1, sid2);

    say("\n5. session one: write report.txt, read it back");
    _cleanup_json_ json_t *w1 = run_tool(d, sid1, "write",
                                         json_pack("{s:s,s:s}", "file_path", "report.txt", "content", REPORT_TEXT "\n"));
    check(d, w1 && !json_is_true(json_object_get(w1, "is_error")), "write succeeded");
    _cleanup_json_ json_t *r1 = run_tool(d, sid1, "read", json_pack("{s:s}", "file_path", "report.txt"));
    check(d, r1 && strstr(result_text(r1), REPORT_TEXT), "read returns '" REPORT_TEXT "'");

    say("\n6. session two: python3 in its own sandbox and workspace");
    _cleanup_json_ json_t *p2 = run_tool(d, sid2, "bash",
                                         json_pack("{s:s}", "command", "python3 -c 'import sys; print(\"sandbox argv ok\")'"));
    check(d, p2 && strstr(result_text(p2), "sandbox argv ok"), "python3 printed 'sandbox argv ok'");
    _cleanup_json_ json_t *l2 = run_tool(d, sid2, "bash", json_pack("{s:s}", "command", "ls -A; id -u; hostname"));
    check(d, l2 && !strstr(result_text(l2), "report.txt"), "session two does not see session one's report.txt");

    say("\n   what the sandbox of session two sees: its user, limits and network");
    _cleanup_json_ json_t *lim = run_tool(
        d, sid2, "bash",
        json_pack("{s:s}", "command",
                  "echo \"uid $(id -u) gid $(id -g), caps $(grep CapEff /proc/self/status | cut -f2)\"; "
                  "grep -E '^(Max open files|Max processes|Max file size)' /proc/self/limits; "
                  "echo \"interfaces: $(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ' ')\"; "
                  "curl -sS -m 5 -o /dev/null -w 'egress to example.com: HTTP %{http_code}\\n' http://example.com/ 2>&1 || true"));
    check(d, lim && strstr(result_text(lim), "CapEff") == NULL && strstr(result_text(lim), "caps 0000000000000000"),
          "no capabilities inside the sandbox");
    check(d, lim && strstr(result_text(lim), "interfaces: lo"), "loopback only");
    check(d, lim && strstr(result_text(lim), "HTTP 403"), "egress denied by the default policy");

    say("\n7. both turns end; the sessions terminate");
    for (int i = 0; i < 2; i++) {
        const char *sid = i ? sid2 : sid1;
        char path[256];
        snprintf(path, sizeof(path), "/v1/sessions/%s/events", sid);
        _cleanup_json_ json_t *b = json_pack("{s:[{s:s,s:{s:s}},{s:s}]}", "events", "type", "session.status_idle",
                                             "stop_reason", "type", "end_turn", "type", "session.status_terminated");
        _cleanup_json_ json_t *r = call(d, "POST", path, b, 200);
        check(d, r != NULL, "idle + terminated posted");
    }
    check(d, wait_stopped(d, sid1, 30000) == 0, "session one's work item stopped");
    check(d, wait_stopped(d, sid2, 30000) == 0, "session two's work item stopped");
    usleep(300000);
    worker_news(d);

    say("\n8. shutting down");
    int wrc = stop_child(d->worker_pid, 30000);
    d->worker_pid = 0;
    worker_news(d);
    check(d, wrc == 0, "worker exited 0 on SIGTERM");
    int src = stop_child(d->serve_pid, 15000);
    d->serve_pid = 0;
    check(d, src == 0, "shed serve exited 0 on SIGTERM");
    char ws[400];
    snprintf(ws, sizeof(ws), "%s/sessions/%s", wdir, sid1);
    check(d, access(ws, F_OK) < 0, "terminated sessions' workspaces removed");
    return 0;
}

int cmd_demo(int argc, char **argv)
{
    if (cmd_wants_help(argc, argv)) {
        fputs(USAGE, stdout);
        return 0;
    }
    bool keep = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--keep")) keep = true;
        else return cmd_usage_error("demo", USAGE, "unknown option '%s'", argv[i]);
    }
    shed_err err = {0};
    if (sbx_available(&err) < 0) {
        fprintf(stderr, "shed demo: cannot run: %s\n", err.msg);
        return 1;
    }
    demo_t d = {0};
    snprintf(d.dir, sizeof(d.dir), "/tmp/shed-demo.XXXXXX");
    if (!mkdtemp(d.dir)) {
        fprintf(stderr, "shed demo: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    chmod(d.dir, 0711);
    /* A fresh admin key for the embedded server, shared through the environment. */
    char admin[64];
    if (id_new("sk-shed-admin", admin, sizeof(admin)) < 0) return 1;
    setenv("SHED_ADMIN_KEY", admin, 1);
    signal(SIGPIPE, SIG_IGN);
    int rc = demo_run(&d);
    if (d.worker_pid) stop_child(d.worker_pid, 20000);
    if (d.serve_pid) stop_child(d.serve_pid, 10000);
    unsetenv("SHED_ADMIN_KEY");
    explicit_bzero(admin, sizeof(admin));
    if (rc < 0 || d.failures) {
        fprintf(stderr, "shed demo: FAILED (%d check(s)); logs kept in %s\n", d.failures, d.dir);
        return 1;
    }
    if (keep) {
        say("\ndone; kept %s", d.dir);
    } else {
        nftw(d.dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
        say("\ndone: every check passed; %s removed, nothing left behind", d.dir);
    }
    return 0;
}
