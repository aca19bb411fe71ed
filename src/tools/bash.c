/* The bash tool's synchronous driver and its shell: one persistent
 * /bin/bash --noprofile --norc per tools_t, driven with the protocol of
 * bash_proto.h (input, bytes to write, output ring, sentinel, result) by
 * poll(2) here, in the caller's thread (init's tool requests, `shed tool`).
 * The shell may also be lent (tools_bash_lend): its two fds go to a caller
 * that drives the same protocol on its own event loop (the worker), while
 * tools keeps the process to kill and reap. A timeout or a cancel kills the
 * shell's whole process group and the next call starts a fresh shell.
 * Never lets a command's output grow memory without bound; never blocks on a
 * pipe in either direction (both are polled); never reads a lent shell's fds.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/cleanup.h"
#include "base/clock.h"
#include "tools/bash_proto.h"
#include "tools/internal.h"


struct tools_bash {
    pid_t pid; /* also the process group (setsid) */
    int in;    /* bash's stdin (socket, written with MSG_NOSIGNAL); -1 when lent */
    int out;   /* bash's stdout+stderr (pipe read end, non-blocking); -1 when lent */
};

static void bash_kill(tools_bash *b)
{
    if (!b) return;
    if (b->pid > 0) {
        kill(-b->pid, SIGKILL);
        kill(b->pid, SIGKILL);
        while (waitpid(b->pid, NULL, 0) < 0 && errno == EINTR) {
        }
    }
    if (b->in >= 0) close(b->in);
    if (b->out >= 0) close(b->out);
    free(b);
}

void tools_bash_free(tools_bash *b)
{
    bash_kill(b);
}

extern char **environ;

static int bash_start(tools_t *t, tools_bash **out, shed_err *err)
{
    int sv[2] = {-1, -1}, po[2] = {-1, -1};
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return err_set(err, errno, "socketpair");
    if (pipe2(po, O_CLOEXEC) < 0) {
        int e = errno;
        close(sv[0]), close(sv[1]);
        return err_set(err, e, "pipe2");
    }
    /* fork + exec rather than posix_spawn: the child must become a child
     * subreaper before the exec. Between fork and exec only syscalls. */
    int ep[2] = {-1, -1}; /* exec failure: the child writes errno; EOF = exec'd */
    if (pipe2(ep, O_CLOEXEC) < 0) {
        int e = errno;
        close(sv[0]), close(sv[1]), close(po[0]), close(po[1]);
        return err_set(err, e, "pipe2");
    }
    const char *dir = t->roots[0].real ? t->roots[0].real : t->roots[0].path;
    char *argv[] = {"/bin/bash", "--noprofile", "--norc", NULL};
    pid_t pid = fork();
    if (pid == 0) {
        setsid();
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        for (int sig = 1; sig < NSIG; sig++) signal(sig, SIG_DFL);
        int in = fcntl(sv[1], F_DUPFD, 10), o = fcntl(po[1], F_DUPFD, 10),
            ew = fcntl(ep[1], F_DUPFD, 10);
        if (in < 0 || o < 0 || ew < 0 || dup2(in, 0) < 0 || dup2(o, 1) < 0 ||
            dup2(o, 2) < 0 || dup2(ew, 3) < 0 || fcntl(3, F_SETFD, FD_CLOEXEC) < 0)
            _exit(127);
        /* nothing else of the caller's (init's control channel above all)
         * may reach the agent's processes, CLOEXEC or not */
        syscall(SYS_close_range, 4, ~0U, 0);
        int e = 0;
        if (chdir(dir) < 0) e = errno;
        /* orphans of the agent's commands reparent to bash, which reaps
         * every child it gets: no zombies pile up during a long call */
        if (!e) prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        if (!e) execve("/bin/bash", argv, t->env);
        if (!e) e = errno;
        if (write(3, &e, sizeof(e)) < 0) {}
        _exit(127);
    }
    int fe = pid < 0 ? errno : 0;
    close(sv[1]);
    close(po[1]);
    close(ep[1]);
    if (pid > 0) {
        int ce = 0;
        ssize_t n;
        while ((n = read(ep[0], &ce, sizeof(ce))) < 0 && errno == EINTR) {
        }
        if (n == (ssize_t)sizeof(ce)) {
            while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
            }
            fe = ce ? ce : EIO;
        }
    }
    close(ep[0]);
    if (fe != 0) {
        close(sv[0]);
        close(po[0]);
        return err_set(err, fe, pid < 0 ? "fork for /bin/bash" : "spawn /bin/bash");
    }
    fcntl(po[0], F_SETFL, O_NONBLOCK);
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    tools_bash *b = calloc(1, sizeof(*b));
    if (!b) {
        kill(-pid, SIGKILL);
        waitpid(pid, NULL, 0);
        close(sv[0]);
        close(po[0]);
        return err_set(err, ENOMEM, "bash");
    }
    b->pid = pid;
    b->in = sv[0];
    b->out = po[0];
    *out = b;
    return 0;
}

void tools_bash_kill(tools_t *t)
{
    bash_kill(t->bash);
    t->bash = NULL;
}

int tools_bash_lend(tools_t *t, int *in, int *out, pid_t *pid, shed_err *err)
{
    tools_bash_kill(t);
    int rc = bash_start(t, &t->bash, err);
    if (rc < 0) return rc;
    *in = t->bash->in;
    *out = t->bash->out;
    *pid = t->bash->pid;
    t->bash->in = t->bash->out = -1; /* the borrower's now: never read here */
    return 0;
}

static enum tools_bash_end bash_exec(tools_bash *b, tools_bash_run *run, int64_t timeout_ms, int cancel_fd)
{
    /* Whatever a background job printed since the last call is not this call's. */
    char scratch[TOOLS_BASH_CHUNK];
    for (int i = 0; i < TOOLS_BASH_DRAIN_READS && read(b->out, scratch, sizeof(scratch)) > 0; i++) {
    }
    int64_t deadline = clock_mono_ms() + timeout_ms;
    for (;;) {
        struct pollfd p[3];
        int np = 0;
        p[np++] = (struct pollfd){.fd = b->out, .events = POLLIN};
        int in_i = -1, c_i = -1;
        if (run->sent < run->in.len) {
            in_i = np;
            p[np++] = (struct pollfd){.fd = b->in, .events = POLLOUT};
        }
        if (cancel_fd >= 0) {
            c_i = np;
            p[np++] = (struct pollfd){.fd = cancel_fd, .events = POLLIN};
        }
        int64_t left = deadline - clock_mono_ms();
        if (left <= 0) return TOOLS_BASH_TIMEOUT;
        int n = poll(p, (nfds_t)np, left > 1000000 ? 1000000 : (int)left);
        if (n < 0) {
            if (errno == EINTR) continue;
            return TOOLS_BASH_FAIL;
        }
        if (n == 0) continue;
        if (c_i >= 0 && (p[c_i].revents & (POLLIN | POLLHUP | POLLERR))) return TOOLS_BASH_CANCEL;
        if (in_i >= 0 && (p[in_i].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t w = send(b->in, run->in.data + run->sent, run->in.len - run->sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0)
                run->sent += (size_t)w;
            else if (w < 0 && errno != EAGAIN && errno != EINTR)
                run->sent = run->in.len; /* the shell is gone: its output will end */
        }
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            /* a few chunks per wakeup, so that a flood (`yes &`) cannot keep
             * us from the deadline and the cancel fd */
            for (int chunks = 0; chunks < TOOLS_BASH_READS_WAKE; chunks++) {
                ssize_t r = read(b->out, scratch, sizeof(scratch));
                if (r > 0) {
                    /* the sentinel ends the call: what follows is not ours */
                    if (tools_bash_run_feed(run, scratch, (size_t)r)) return 0;
                    continue;
                }
                if (r == 0) return TOOLS_BASH_DIED;
                if (errno == EINTR) continue;
                break; /* EAGAIN */
            }
        }
    }
}

json_t *tools_bash_call(tools_t *t, json_t *input, int64_t call_timeout_ms, int cancel_fd)
{
    tools_bash_req req;
    json_t *res = tools_bash_parse(input, call_timeout_ms, t->default_timeout_ms, &req);
    if (req.restart) tools_bash_kill(t);
    if (res) return res;
    /* a lent shell is the borrower's: take the session back with a fresh one */
    if (t->bash && t->bash->in < 0) tools_bash_kill(t);
    if (!t->bash) {
        shed_err err = {0};
        if (bash_start(t, &t->bash, &err) < 0) return tools_errorf("bash: %s", err.msg);
    }
    tools_bash_run run;
    if (tools_bash_run_start(&run, &req) < 0) return tools_errorf("bash: out of memory");
    int end = bash_exec(t->bash, &run, req.timeout_ms, cancel_fd);
    if (end != 0) {
        tools_bash_run_free(&run);
        tools_bash_kill(t);
        return tools_bash_end_result((enum tools_bash_end)end, &req);
    }
    res = tools_bash_run_result(&run);
    tools_bash_run_free(&run);
    return res;
}
