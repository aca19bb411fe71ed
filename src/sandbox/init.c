/* `shed init`: pid 1 of a sandbox. Runs as the sandbox user with no
 * capabilities, under the seccomp filter, inside every namespace. Reaps
 * zombies, serves the control channel (ctl.h): runs commands ("exec") with
 * the fds it was passed, runs agent tools ("tool"), lends the session's bash
 * to the creator ("shell", "shell_kill"), kills on request, and
 * watches the workspace size. Never trusts a message: bad requests get an
 * "error" reply. If the creator's end closes, init exits and the kernel
 * tears the whole pid namespace down. */
#include "base/cleanup.h"
#include "base/clock.h"
#include "base/json.h"
#include "base/log.h"
#include "sandbox/ctl.h"
#include "sandbox/internal.h"
#include "tools/tools.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define INIT_MAX_EXECS 64
#define INIT_MAX_ARGS  4096
#define INIT_KILL_GRACE_MS 2000

typedef struct exec_entry {
    int64_t id;
    bool last;           /* the sandbox ends with it: init exits after its "exit" */
    pid_t pid;           /* also its process group */
    int64_t deadline_ms; /* 0 = none */
    int64_t kill_at_ms;  /* SIGKILL after SIGTERM, 0 = not yet */
} exec_entry;

typedef struct init_state {
    int ctl;
    char *workdir;
    char **env; /* base environment for commands */
    int64_t command_timeout_ms;
    uint64_t disk_max;
    uint64_t fallback_as, fallback_nproc;
    exec_entry execs[INIT_MAX_EXECS];
    int nexecs;
    tools_t *tools;  /* made on the first "tool" request */
    char **roots;    /* operator binds inside (memory stores, skills) */
    char **ro_roots; /* the read-only ones among them */
} init_state;

static void send_msg(init_state *s, json_t *m, const int *fds, int nfds)
{
    shed_err err;
    if (ctl_send(s->ctl, m, fds, nfds, &err) < 0) {
        /* the creator is gone or the channel broke: nothing to serve */
        log_error("shed init: %s", err.msg);
        _exit(1);
    }
    json_decref(m);
}

static void reply_error(init_state *s, json_int_t id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void reply_error(init_state *s, json_int_t id, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    send_msg(s, json_pack("{s:s,s:I,s:s}", "type", "error", "id", id, "message", msg), NULL, 0);
}

/* ---- environment ---- */

static int env_add(char ***env, size_t *n, const char *kv)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv) return -EINVAL;
    size_t kl = (size_t)(eq - kv) + 1;
    for (size_t i = 0; i < *n; i++)
        if (!strncmp((*env)[i], kv, kl)) {
            char *d = strdup(kv);
            if (!d) return -ENOMEM;
            free((*env)[i]);
            (*env)[i] = d;
            return 0;
        }
    char **e = realloc(*env, (*n + 2) * sizeof(char *));
    if (!e) return -ENOMEM;
    *env = e;
    if (!(e[*n] = strdup(kv))) return -ENOMEM;
    e[++*n] = NULL;
    return 0;
}

static void env_free(char **env)
{
    for (char **e = env; e && *e; e++) free(*e);
    free(env);
}

static int base_env(init_state *s, json_t *extra)
{
    size_t n = 0;
    char buf[4200];
    static const char *const FIXED[] = {
        "PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin",
        "USER=sandbox", "LOGNAME=sandbox", "SHELL=/bin/bash", "LANG=C.UTF-8",
        /* the only way out: the creator's egress proxy, reached inside the netns */
        "HTTP_PROXY=http://127.0.0.1:3128", "HTTPS_PROXY=http://127.0.0.1:3128",
        "ALL_PROXY=socks5h://127.0.0.1:1080", "NO_PROXY=localhost,127.0.0.1,::1",
        "http_proxy=http://127.0.0.1:3128", "https_proxy=http://127.0.0.1:3128",
        "all_proxy=socks5h://127.0.0.1:1080", "no_proxy=localhost,127.0.0.1,::1"};
    for (size_t i = 0; i < ARRAY_SIZE(FIXED); i++)
        if (env_add(&s->env, &n, FIXED[i]) < 0) return -ENOMEM;
    snprintf(buf, sizeof(buf), "HOME=%s", s->workdir);
    if (env_add(&s->env, &n, buf) < 0) return -ENOMEM;
    size_t i;
    json_t *v;
    json_array_foreach(extra, i, v) {
        if (json_is_string(v) && env_add(&s->env, &n, json_string_value(v)) < 0) return -ENOMEM;
    }
    return 0;
}

/* ---- exec ---- */

static exec_entry *exec_find_pid(init_state *s, pid_t pid)
{
    for (int i = 0; i < s->nexecs; i++)
        if (s->execs[i].pid == pid) return &s->execs[i];
    return NULL;
}

static exec_entry *exec_find_id(init_state *s, int64_t id)
{
    for (int i = 0; i < s->nexecs; i++)
        if (s->execs[i].id == id) return &s->execs[i];
    return NULL;
}

static void exec_remove(init_state *s, exec_entry *e)
{
    *e = s->execs[--s->nexecs];
}

static void close_fds(int *fds, int n)
{
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0) close(fds[i]);
}

static void do_exec(init_state *s, json_t *m, int *fds, int nfds)
{
    json_int_t id = json_integer_value(json_object_get(m, "id"));
    json_t *argv_j = json_object_get(m, "argv"), *env_j = json_object_get(m, "env");
    const char *cwd = json_string_value(json_object_get(m, "cwd"));
    json_t *to = json_object_get(m, "timeout_ms");
    if (nfds != 3) {
        close_fds(fds, nfds);
        return reply_error(s, id, "exec: expected 3 fds (stdin, stdout, stderr), got %d", nfds);
    }
    size_t argc = json_is_array(argv_j) ? json_array_size(argv_j) : 0;
    if (argc == 0 || argc > INIT_MAX_ARGS || (env_j && !json_is_array(env_j)) ||
        (to && !json_is_integer(to))) {
        close_fds(fds, nfds);
        return reply_error(s, id, "exec: 'argv' must be a non-empty array of strings");
    }
    if (s->nexecs == INIT_MAX_EXECS || exec_find_id(s, id)) {
        close_fds(fds, nfds);
        return reply_error(s, id, "exec: too many commands, or id %lld in use", (long long)id);
    }
    _cleanup_free_ char **argv = calloc(argc + 1, sizeof(char *));
    char **env = NULL;
    size_t en = 0;
    for (char **e = s->env; e && *e; e++) env_add(&env, &en, *e);
    size_t i;
    json_t *v;
    int bad = !argv;
    json_array_foreach(argv_j, i, v) {
        if (!bad && !json_is_string(v)) bad = 1;
        if (!bad) argv[i] = (char *)json_string_value(v);
    }
    json_array_foreach(env_j, i, v) {
        if (!json_is_string(v) || env_add(&env, &en, json_string_value(v)) < 0) bad = 1;
    }
    if (bad) {
        env_free(env);
        close_fds(fds, nfds);
        return reply_error(s, id, "exec: bad 'argv' or 'env' (strings, env as K=V)");
    }
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        env_free(env);
        close_fds(fds, nfds);
        return reply_error(s, id, "exec: fork: %s", strerror(e));
    }
    if (pid == 0) {
        setpgid(0, 0);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        for (int sig = 1; sig < NSIG; sig++) signal(sig, SIG_DFL);
        int in = fcntl(fds[0], F_DUPFD, 10), out = fcntl(fds[1], F_DUPFD, 10),
            er = fcntl(fds[2], F_DUPFD, 10);
        if (in < 0 || out < 0 || er < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(er, 2) < 0)
            _exit(126);
        syscall(SYS_close_range, 3, ~0U, 0);
        /* the OOM killer should pick a command before init (init is not
         * dumpable, so /proc/self is root's until we say otherwise) */
        prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
        int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
            if (write(fd, "500", 3) < 0) {}
            close(fd);
        }
        /* Not dumpable again until the exec (which makes the new image
         * dumpable): in between, /proc/PID/exe is the shed binary, which
         * another process of the sandbox must never get a handle on
         * (CVE-2019-5736); unprivileged, the binary may be the sandbox
         * user's own file. */
        prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        if (s->fallback_as) {
            struct rlimit rl = {s->fallback_as, s->fallback_as};
            setrlimit(RLIMIT_AS, &rl);
        }
        if (chdir(cwd ? cwd : s->workdir) < 0) {
            dprintf(2, "shed: chdir %s: %s\n", cwd ? cwd : s->workdir, strerror(errno));
            _exit(126);
        }
        environ = env;
        execvp(argv[0], argv);
        /* Only raw writes from here: with RLIMIT_AS set, a sanitizer runtime
         * cannot allocate. */
        int e = errno;
        const char *why = strerror(e);
        struct iovec iov[5] = {{"shed: exec ", 11}, {argv[0], strlen(argv[0])}, {": ", 2},
                               {(void *)why, strlen(why)}, {"\n", 1}};
        if (writev(2, iov, 5) < 0) {}
        _exit(e == ENOENT ? 127 : 126);
    }
    env_free(env);
    close_fds(fds, nfds);
    setpgid(pid, pid); /* also from here: no race with a signal to the group */
    exec_entry *e = &s->execs[s->nexecs++];
    int64_t t = to ? json_integer_value(to) : s->command_timeout_ms;
    *e = (exec_entry){.id = id, .pid = pid, .deadline_ms = t > 0 ? clock_mono_ms() + t : 0,
                      .last = json_is_true(json_object_get(m, "last"))};
}

static void watchdog_report(init_state *s);

static void reap(init_state *s)
{
    for (;;) {
        int st;
        pid_t pid = waitpid(-1, &st, WNOHANG);
        if (pid <= 0) return;
        exec_entry *e = exec_find_pid(s, pid);
        if (!e) continue; /* an orphan, or a tool's helper */
        /* a death the watchdog caused comes after its eventfd write: the
         * limit goes out before the exit */
        watchdog_report(s);
        int sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
        int status = sig ? 128 + sig : WEXITSTATUS(st);
        send_msg(s, json_pack("{s:s,s:I,s:i,s:i}", "type", "exit", "id", (json_int_t)e->id,
                              "status", status, "signal", sig),
                 NULL, 0);
        /* the creator's last command: end the sandbox now (the kernel kills
         * whatever is left in the pid namespace) instead of waiting for the
         * creator's SIGKILL, so that the teardown starts a round trip earlier */
        if (e->last) _exit(0);
        exec_remove(s, e);
    }
}

static void check_deadlines(init_state *s, int64_t now)
{
    for (int i = 0; i < s->nexecs; i++) {
        exec_entry *e = &s->execs[i];
        if (e->kill_at_ms && now >= e->kill_at_ms) {
            kill(-e->pid, SIGKILL);
            e->kill_at_ms = 0;
            e->deadline_ms = 0;
        } else if (e->deadline_ms && now >= e->deadline_ms) {
            kill(-e->pid, SIGTERM);
            e->kill_at_ms = now + INIT_KILL_GRACE_MS;
            e->deadline_ms = 0;
        }
    }
}

/* ---- workspace watchdog (bind-mounted workspaces) ----
 *
 * A thread of init, so it watches while the main thread is busy in a tool
 * call, and shares pid 1's immunity to the agent's signals. It owns the
 * inotify fd and the walk; it touches nothing of init_state. On excess it
 * records what, writes the eventfd (before the kill, so the main loop sees
 * the limit no later than the exits it causes), then kills every process of
 * the sandbox but init. The main thread sends the "limit" message. */

typedef struct watchdog {
    const char *workdir; /* init's, never freed */
    uint64_t disk_max;   /* bytes, 0 = no watchdog */
    uint64_t files_max;  /* entries (files, directories, links...), 0 = none */
    int ino_fd;          /* inotify on the workspace's directories: walk only after a change */
    int efd;             /* eventfd: a limit was hit */
    bool ino_ok;         /* every directory is watched (else: walk on every interval) */
    bool dirty;          /* something changed since the last walk */
    bool blind;          /* the last walk could not see part of the tree */
    /* the last excess, written before efd, read by the main thread after it */
    _Atomic uint64_t hit_used, hit_max;
    _Atomic int hit_files; /* 1: the entry limit, 2: an unreadable part, 0: bytes */
    _Atomic uint64_t hits; /* limits hit so far */
} watchdog;

static watchdog g_wd = {.ino_fd = -1, .efd = -1};

static void watch_dir(watchdog *w, int dfd)
{
    if (w->ino_fd < 0) return;
    char p[64];
    snprintf(p, sizeof(p), "/proc/self/fd/%d", dfd);
    if (inotify_add_watch(w->ino_fd, p, IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE |
                                            IN_DELETE | IN_MOVED_FROM | IN_ONLYDIR) < 0)
        w->ino_ok = false; /* e.g. fs.inotify.max_user_watches: fall back to ticking */
}

/* Bytes under dfd (consumed). *left counts entries down; at 0 the walk
 * stops, and the caller treats that as over the entry limit (never as
 * "done counting"). A directory the walk cannot read is made readable
 * (init is its owner: the agent's chmod 000 or 0300 would hide what it
 * holds); one that stays unreadable, or lies deeper than 512 levels, sets
 * w->blind: fail closed. */
static uint64_t usage(watchdog *w, int dfd, dev_t dev, int depth, uint64_t *left)
{
    uint64_t total = 0;
    struct stat ds;
    if (fstat(dfd, &ds) == 0 && (ds.st_mode & (S_IRUSR | S_IXUSR)) != (S_IRUSR | S_IXUSR) &&
        fchmod(dfd, (ds.st_mode & 07777) | S_IRUSR | S_IXUSR) < 0)
        w->blind = true; /* entries unreadable (x) */
    watch_dir(w, dfd);
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        w->blind = true;
        return 0;
    }
    struct dirent *de;
    while (*left > 0 && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        --*left;
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno != ENOENT) w->blind = true; /* ENOENT: deleted meanwhile */
            continue;
        }
        if (st.st_dev != dev) continue; /* another mount */
        total += (uint64_t)st.st_blocks * 512;
        if (!S_ISDIR(st.st_mode)) continue;
        if (depth >= 512) {
            w->blind = true;
            continue;
        }
        int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0 && errno == EACCES &&
            fchmodat(dirfd(d), de->d_name, (st.st_mode & 07777) | S_IRUSR | S_IXUSR, 0) == 0)
            sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub >= 0)
            total += usage(w, sub, dev, depth + 1, left);
        else if (errno == EACCES || errno == EPERM)
            w->blind = true; /* ENOENT/ENOTDIR: changed meanwhile; EMFILE: see security.md */
    }
    closedir(d);
    return total;
}

static void drain_inotify(watchdog *w)
{
    char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
    while (w->ino_fd >= 0 && read(w->ino_fd, buf, sizeof(buf)) > 0) w->dirty = true;
}

static void *watchdog_main(void *arg)
{
    watchdog *w = arg;
    int64_t next_check = 0, last_walk = 0, idle_interval = 0;
    w->dirty = true; /* the first walk also installs the watches */
    for (;;) {
        int64_t now = clock_mono_ms();
        /* Nothing changed: no walk, except a slow one (writes through mmap
         * send no inotify event). */
        int64_t due = (w->dirty || !w->ino_ok) ? next_check : last_walk + idle_interval;
        if (now < due) {
            struct pollfd p = {.fd = w->ino_fd, .events = POLLIN};
            int64_t t = due - now;
            if (poll(&p, 1, t > 1000000 ? 1000000 : (int)t) > 0) drain_inotify(w);
            continue;
        }
        drain_inotify(w);
        w->dirty = false;
        w->ino_ok = w->ino_fd >= 0;
        int64_t t0 = clock_mono_ms();
        int fd = open(w->workdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 && errno == EACCES && stat(w->workdir, &st) == 0 &&
            chmod(w->workdir, (st.st_mode & 07777) | S_IRUSR | S_IXUSR) == 0)
            fd = open(w->workdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        uint64_t used = 0, left = w->files_max ? w->files_max + 1 : UINT64_MAX;
        w->blind = fd < 0 && errno != ENOENT; /* the workspace itself unreadable: fail closed */
        if (fd >= 0 && fstat(fd, &st) == 0)
            used = usage(w, fd, st.st_dev, 0, &left);
        else if (fd >= 0)
            close(fd);
        int64_t spent = clock_mono_ms() - t0;
        /* keep the walk under ~10% of the time */
        int64_t interval = spent * 10 > 50 ? spent * 10 : 50;
        idle_interval = spent * 100 > 5000 ? spent * 100 : 5000;
        last_walk = clock_mono_ms();
        next_check = last_walk + interval;
        bool files = left == 0;
        if (files || w->blind || used > w->disk_max) {
            w->hit_files = files ? 1 : w->blind && used <= w->disk_max ? 2 : 0;
            w->hit_used = files ? w->files_max + 1 : used;
            w->hit_max = files ? w->files_max : w->disk_max;
            w->hits++;
            uint64_t one = 1;
            if (write(w->efd, &one, sizeof(one)) < 0) {} /* cannot overflow: read at each wake */
            kill(-1, SIGKILL); /* every process of the sandbox but init */
        }
    }
    return NULL;
}

/* Starts the watchdog when the workspace is a host directory with a limit.
 * Returns the eventfd to poll (-1: no watchdog). */
static int watchdog_start(init_state *s, uint64_t files_max)
{
    if (!s->disk_max) return -1;
    g_wd.workdir = s->workdir;
    g_wd.disk_max = s->disk_max;
    g_wd.files_max = files_max;
    g_wd.ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    g_wd.ino_ok = g_wd.ino_fd >= 0;
    g_wd.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (g_wd.efd < 0) {
        fprintf(stderr, "shed init: eventfd: %s\n", strerror(errno));
        return -2;
    }
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 1 << 20);
    pthread_t th;
    int rc = pthread_create(&th, &a, watchdog_main, &g_wd);
    pthread_attr_destroy(&a);
    if (rc != 0) {
        fprintf(stderr, "shed init: the workspace watchdog could not start: %s\n", strerror(rc));
        return -2;
    }
    return g_wd.efd;
}

static void watchdog_report(init_state *s)
{
    uint64_t n;
    if (g_wd.efd < 0 || read(g_wd.efd, &n, sizeof(n)) != sizeof(n)) return;
    send_msg(s, json_pack("{s:s,s:s,s:I,s:I}", "type", "limit", "what",
                          g_wd.hit_files == 1 ? "files" : g_wd.hit_files == 2 ? "unreadable" : "disk", "used", (json_int_t)g_wd.hit_used,
                          "max", (json_int_t)g_wd.hit_max),
             NULL, 0);
}

/* ---- agent tools ---- */

/* The toolset, made on first use. -1 after replying an error. */
static int ensure_tools(init_state *s, json_int_t id)
{
    if (s->tools) return 0;
    tools_config cfg = {.workdir = s->workdir,
                        .allowed_roots = (const char *const *)s->roots,
                        .read_only_roots = (const char *const *)s->ro_roots,
                        .env = s->env,
                        .default_timeout_ms = 120000};
    shed_err err;
    if (tools_new(&cfg, &s->tools, &err) < 0) {
        reply_error(s, id, "tool: the toolset could not start: %s", err.msg);
        return -1;
    }
    return 0;
}

/* The session's bash lent to the creator, which drives it over the two fds
 * (the worker's direct path): init stays its parent (reaps it, kills its
 * group on "shell_kill", on restart, on a limit) and never reads those fds.
 * Anything else the creator's bash needs from init goes through these two
 * requests, so a bash call's bytes never pass through init. */
static void do_shell(init_state *s, json_int_t id)
{
    if (ensure_tools(s, id) < 0) return;
    int fds[2] = {-1, -1};
    pid_t pid = 0;
    shed_err err = {0};
    if (tools_bash_lend(s->tools, &fds[0], &fds[1], &pid, &err) < 0)
        return reply_error(s, id, "bash: %s", err.msg);
    send_msg(s, json_pack("{s:s,s:I,s:i}", "type", "shell", "id", id, "pid", (int)pid), fds, 2);
    close_fds(fds, 2); /* the creator's now */
}

static void do_shell_kill(init_state *s, json_int_t id)
{
    if (s->tools) tools_bash_kill(s->tools);
    /* a limit that killed the shell goes out before the answer, as before a
     * tool's result */
    watchdog_report(s);
    send_msg(s, json_pack("{s:s,s:I}", "type", "shell_killed", "id", id), NULL, 0);
}

static void do_tool(init_state *s, json_t *m, json_int_t id)
{
    const char *name = json_string_value(json_object_get(m, "tool"));
    json_t *input = json_object_get(m, "input");
    json_t *to = json_object_get(m, "timeout_ms");
    if (!name || !json_is_object(input) || (to && !json_is_integer(to)))
        return reply_error(s, id, "tool: needs 'tool' (string), 'input' (object), optional "
                                  "'timeout_ms' (integer)");
    if (ensure_tools(s, id) < 0) return;
    int64_t t = to ? json_integer_value(to) : s->command_timeout_ms;
    /* A message arriving on the channel during the call aborts it (cancel_fd);
     * the main loop then reads that message. */
    uint64_t hits = g_wd.hits;
    json_t *r = tools_call(s->tools, name, input, t, s->ctl);
    json_t *rc_content = json_object_get(r, "content");
    if (g_wd.hits != hits && json_is_array(rc_content)) {
        /* the watchdog killed the call's processes: say why */
        char msg[256];
        if (g_wd.hit_files == 1)
            snprintf(msg, sizeof(msg), "shed: the workspace holds more than %llu files and directories "
                     "(its limit); every process of the sandbox was killed",
                     (unsigned long long)g_wd.hit_max);
        else if (g_wd.hit_files == 2)
            snprintf(msg, sizeof(msg), "shed: the workspace holds a directory its size watchdog cannot "
                     "read (not owned by the sandbox user, or deeper than 512 levels); every process "
                     "of the sandbox was killed");
        else
            snprintf(msg, sizeof(msg), "shed: the workspace grew over its limit (%llu > %llu bytes); "
                     "every process of the sandbox was killed",
                     (unsigned long long)g_wd.hit_used, (unsigned long long)g_wd.hit_max);
        json_array_append_new(rc_content, json_pack("{s:s,s:s}", "type", "text", "text", msg));
        json_object_set_new(r, "is_error", json_true());
        watchdog_report(s); /* the limit before the result, as before an exit */
    }
    /* the reply's text written directly around the content (no object built) */
    buf_t *b = ctl_send_buffer();
    buf_printf(b, "{\"type\":\"result\",\"id\":%" JSON_INTEGER_FORMAT ",\"is_error\":%s,\"content\":", id,
               json_is_true(json_object_get(r, "is_error")) ? "true" : "false");
    json_t *content = json_object_get(r, "content");
    int rc = json_is_array(content) ? ctl_encode(b, content) : buf_puts(b, "[]");
    if (rc == 0) rc = buf_putc(b, '}');
    json_decref(r);
    shed_err err;
    if (rc < 0) return reply_error(s, id, "tool: the result is over the channel's %d-byte limit", CTL_MAX_TOTAL);
    if (ctl_send_buffered(s->ctl, NULL, 0, &err) < 0) {
        log_error("shed init: %s", err.msg);
        _exit(1);
    }
}

static char **str_array(json_t *a)
{
    size_t n = json_is_array(a) ? json_array_size(a) : 0;
    char **l = calloc(n + 1, sizeof(char *));
    for (size_t i = 0; l && i < n; i++) {
        const char *v = json_string_value(json_array_get(a, i));
        l[i] = strdup(v ? v : "/");
    }
    return l;
}

/* ---- main ---- */

static int handle(init_state *s, json_t *m, int *fds, int nfds)
{
    const char *type = json_string_value(json_object_get(m, "type"));
    json_int_t id = json_integer_value(json_object_get(m, "id"));
    if (!type) {
        close_fds(fds, nfds);
        reply_error(s, id, "message without a 'type'");
        return 0;
    }
    if (!strcmp(type, "exec")) {
        do_exec(s, m, fds, nfds);
        return 0;
    }
    close_fds(fds, nfds);
    if (!strcmp(type, "cancel")) {
        exec_entry *e = exec_find_id(s, id);
        if (e) kill(-e->pid, SIGKILL);
    } else if (!strcmp(type, "terminate")) {
        kill(-1, SIGTERM);
    } else if (!strcmp(type, "policy")) {
        /* egress policy lives with the creator; nothing to do inside */
    } else if (!strcmp(type, "tool")) {
        do_tool(s, m, id);
    } else if (!strcmp(type, "shell")) {
        do_shell(s, id);
    } else if (!strcmp(type, "shell_kill")) {
        do_shell_kill(s, id);
    } else {
        reply_error(s, id, "unknown message type '%s'", type);
    }
    return 0;
}

int sandbox_init_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    if (getpid() != 1) {
        fprintf(stderr, "shed init: only runs as pid 1 of a sandbox (started by shed itself)\n");
        return 2;
    }
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0); /* /proc/1 closed to the sandbox user */
    init_state s = {.ctl = SANDBOX_FD_CTL};
    /* Whatever init starts must never inherit the channel to the creator
     * (tools also close everything above 2 when they spawn). */
    fcntl(s.ctl, F_SETFD, FD_CLOEXEC);
    json_t *conf = NULL;
    shed_err err;
    if (ctl_recv(s.ctl, &conf, NULL, NULL, &err) < 0) {
        fprintf(stderr, "shed init: %s\n", err.msg);
        return 1;
    }
    const char *wd = json_string_value(json_object_get(conf, "workdir"));
    s.workdir = strdup(wd ? wd : "/workspace");
    s.command_timeout_ms = json_integer_value(json_object_get(conf, "command_timeout_ms"));
    s.disk_max = (uint64_t)json_integer_value(json_object_get(conf, "disk_max"));
    uint64_t files_max = (uint64_t)json_integer_value(json_object_get(conf, "files_max"));
    s.fallback_as = (uint64_t)json_integer_value(json_object_get(conf, "fallback_as"));
    s.fallback_nproc = (uint64_t)json_integer_value(json_object_get(conf, "fallback_nproc"));
    if (json_is_true(json_object_get(conf, "log_debug"))) log_setup(LOG_DEBUG, LOG_TEXT);
    if (base_env(&s, json_object_get(conf, "env")) < 0) return 1;
#if !defined(__SANITIZE_ADDRESS__)
    /* Cgroup waived: the memory fallback also covers what init starts
     * itself (the tools' bash). Not under ASan, whose shadow mappings exceed
     * any sane RLIMIT_AS; there each exec'd command still gets it. */
    if (s.fallback_as) {
        struct rlimit rl = {s.fallback_as, s.fallback_as};
        setrlimit(RLIMIT_AS, &rl);
    }
#endif
    s.roots = str_array(json_object_get(conf, "roots"));
    s.ro_roots = str_array(json_object_get(conf, "ro_roots"));
    json_decref(conf);

    /* the watchdog thread inherits this mask: every signal goes to the signalfd */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGPIPE);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0) {
        fprintf(stderr, "shed init: signalfd: %s\n", strerror(errno));
        return 1;
    }
    int efd = watchdog_start(&s, files_max);
    if (efd == -2) return 1; /* fail closed: a limit nobody watches */
    int lfds[3] = {SANDBOX_FD_HTTP, SANDBOX_FD_SOCKS, SANDBOX_FD_DNS};
    for (int i = 0; i < 3; i++) fcntl(lfds[i], F_SETFD, FD_CLOEXEC);
    send_msg(&s,
             json_pack("{s:s,s:i,s:[sss]}", "type", "ready", "pid", (int)getpid(), "listeners",
                       "http", "socks", "dns"),
             lfds, 3);
    close_fds(lfds, 3); /* the creator holds them now */

    for (;;) {
        int64_t now = clock_mono_ms(), wait = -1;
        for (int i = 0; i < s.nexecs; i++) {
            int64_t t = s.execs[i].kill_at_ms ? s.execs[i].kill_at_ms : s.execs[i].deadline_ms;
            if (t && (wait < 0 || t - now < wait)) wait = t - now < 0 ? 0 : t - now;
        }
        struct pollfd p[3] = {{.fd = s.ctl, .events = POLLIN},
                              {.fd = sfd, .events = POLLIN},
                              {.fd = efd, .events = POLLIN}};
        int n = poll(p, 3, wait > 1000000 ? 1000000 : (int)wait);
        /* the limit before the exits it caused (the watchdog writes efd first) */
        if (n > 0 && p[2].revents) watchdog_report(&s);
        if (n < 0 && errno != EINTR) return 1;
        if (n > 0 && p[1].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof(si)) == sizeof(si)) {}
            reap(&s);
        }
        if (n > 0 && p[0].revents) {
            json_t *m = NULL;
            int fds[CTL_MAX_FDS], nfds = 0;
            int rc = ctl_recv(s.ctl, &m, fds, &nfds, &err);
            if (rc == -EPIPE) return 0; /* the creator is gone: end the sandbox */
            if (rc < 0) {
                fprintf(stderr, "shed init: %s\n", err.msg);
                return 1;
            }
            handle(&s, m, fds, nfds);
            json_decref(m);
        }
        now = clock_mono_ms();
        check_deadlines(&s, now);
    }
}
