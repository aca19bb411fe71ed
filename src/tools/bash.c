/* The bash tool: one persistent /bin/bash --noprofile --norc per tools_t,
 * driven with the reference's sentinel protocol. Each call writes
 *   { CMD
 *   } </dev/null 2>&1; printf '\n__ANT_CM''D_<uuid>_DONE__%d\n' $?
 * and reads the merged output until the sentinel (split with '' so that the
 * shell's echo of the input, if any, never contains it). The call ends at the
 * sentinel, not at EOF, so a background job that keeps the output pipe open
 * never holds a call open. Output is kept bounded while it streams (a ring of
 * the last bytes), then cut to the reference's last 100 KiB (UTF-16 units, as
 * a JS string counts them), ANSI escapes stripped. A timeout or a cancel kills
 * the shell's whole process group and the next call starts a fresh shell.
 * Never lets a command's output grow memory without bound; never blocks on a
 * pipe in either direction (both are polled).
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
#include "tools/internal.h"

#define BASH_OUTPUT_LIMIT (100 * 1024) /* UTF-16 units, as the reference counts */
/* Raw bytes kept while streaming: enough for BASH_OUTPUT_LIMIT units of any
 * UTF-8 (≤ 3 bytes per unit) plus the sentinel line. */
#define BASH_RING_BYTES (3 * BASH_OUTPUT_LIMIT + 4096)
#define BASH_MAX_COMMAND (16 << 20)

struct tools_bash {
    pid_t pid; /* also the process group (setsid) */
    int in;    /* bash's stdin (socket, written with MSG_NOSIGNAL) */
    int out;   /* bash's stdout+stderr (pipe read end, non-blocking) */
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

/* A ring keeping the last BASH_RING_BYTES of the output. */
typedef struct ring {
    char *data;
    size_t start, len; /* logical content = data[start..start+len) mod cap */
    size_t total;      /* bytes ever appended */
} ring_t;

static void ring_append(ring_t *r, const char *s, size_t n)
{
    r->total += n;
    if (n >= BASH_RING_BYTES) {
        s += n - BASH_RING_BYTES;
        n = BASH_RING_BYTES;
        r->start = 0;
        r->len = 0;
    }
    for (size_t i = 0; i < n;) {
        size_t end = (r->start + r->len) % BASH_RING_BYTES;
        size_t chunk = BASH_RING_BYTES - end;
        if (chunk > n - i) chunk = n - i;
        memcpy(r->data + end, s + i, chunk);
        r->len += chunk;
        if (r->len > BASH_RING_BYTES) {
            size_t over = r->len - BASH_RING_BYTES;
            r->start = (r->start + over) % BASH_RING_BYTES;
            r->len = BASH_RING_BYTES;
        }
        i += chunk;
    }
}

/* Linear copy of the ring's content. */
static char *ring_linear(const ring_t *r)
{
    char *out = malloc(r->len + 1);
    if (!out) return NULL;
    size_t first = BASH_RING_BYTES - r->start;
    if (first > r->len) first = r->len;
    memcpy(out, r->data + r->start, first);
    memcpy(out + first, r->data, r->len - first);
    out[r->len] = 0;
    return out;
}

static void make_sentinel(char out[64])
{
    unsigned char u[16];
    if (getrandom(u, sizeof(u), 0) != (ssize_t)sizeof(u)) {
        /* never fails for 16 bytes on Linux ≥ 3.17 once seeded; fall back to time */
        int64_t ns = clock_mono_ns();
        memcpy(u, &ns, sizeof(ns));
        memcpy(u + 8, &ns, sizeof(ns));
    }
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    snprintf(out, 64,
             "__ANT_CMD_%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x_DONE__", u[0],
             u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}

/* The reference's ANSI_RE: \x1b\[[0-9;?]*[ -/]*[@-~] */
static size_t strip_ansi(char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] == 0x1b && i + 1 < n && s[i + 1] == '[') {
            size_t j = i + 2;
            while (j < n && ((s[j] >= '0' && s[j] <= '9') || s[j] == ';' || s[j] == '?')) j++;
            while (j < n && s[j] >= ' ' && s[j] <= '/') j++;
            if (j < n && s[j] >= '@' && s[j] <= '~') {
                i = j + 1;
                continue;
            }
        }
        s[o++] = s[i++];
    }
    return o;
}

enum exec_end { EXEC_DONE, EXEC_TIMEOUT, EXEC_CANCEL, EXEC_DIED, EXEC_FAIL };

static enum exec_end bash_exec(tools_bash *b, const char *cmd, size_t cmdlen, int64_t timeout_ms, int cancel_fd,
                               ring_t *ring, const char *sentinel)
{
    /* Whatever a background job printed since the last call is not this call's. */
    char scratch[65536];
    /* bounded: a background job may write without end (`yes &`) */
    for (int i = 0; i < 64 && read(b->out, scratch, sizeof(scratch)) > 0; i++) {
    }
    char split[80];
    snprintf(split, sizeof(split), "%.8s''%s", sentinel, sentinel + 8);
    _cleanup_buf_ buf_t in;
    buf_init(&in, 0);
    if (buf_puts(&in, "{ ") < 0 || buf_append(&in, cmd, cmdlen) < 0 ||
        buf_printf(&in, "\n} </dev/null 2>&1; printf '\\n%s%%d\\n' $?\n", split) < 0)
        return EXEC_FAIL;
    size_t sent = 0, slen = strlen(sentinel);
    char carry[128];
    size_t ncarry = 0;
    bool seen = false;
    int64_t deadline = clock_mono_ms() + timeout_ms;
    for (;;) {
        struct pollfd p[3];
        int np = 0;
        p[np++] = (struct pollfd){.fd = b->out, .events = POLLIN};
        int in_i = -1, c_i = -1;
        if (sent < in.len) {
            in_i = np;
            p[np++] = (struct pollfd){.fd = b->in, .events = POLLOUT};
        }
        if (cancel_fd >= 0) {
            c_i = np;
            p[np++] = (struct pollfd){.fd = cancel_fd, .events = POLLIN};
        }
        int64_t left = deadline - clock_mono_ms();
        if (left <= 0) return EXEC_TIMEOUT;
        int n = poll(p, (nfds_t)np, left > 1000000 ? 1000000 : (int)left);
        if (n < 0) {
            if (errno == EINTR) continue;
            return EXEC_FAIL;
        }
        if (n == 0) continue;
        if (c_i >= 0 && (p[c_i].revents & (POLLIN | POLLHUP | POLLERR))) return EXEC_CANCEL;
        if (in_i >= 0 && (p[in_i].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t w = send(b->in, in.data + sent, in.len - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0)
                sent += (size_t)w;
            else if (w < 0 && errno != EAGAIN && errno != EINTR)
                sent = in.len; /* the shell is gone: its output will end */
        }
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            /* a few chunks per wakeup, so that a flood (`yes &`) cannot keep
             * us from the deadline and the cancel fd */
            for (int chunks = 0; chunks < 16; chunks++) {
                ssize_t r = read(b->out, scratch, sizeof(scratch));
                if (r > 0) {
                    ring_append(ring, scratch, (size_t)r);
                    /* look for the sentinel across chunk boundaries */
                    if (!seen) {
                        size_t head = (size_t)r < slen ? (size_t)r : slen;
                        char probe[256];
                        memcpy(probe, carry, ncarry);
                        memcpy(probe + ncarry, scratch, head);
                        if (memmem(probe, ncarry + head, sentinel, slen) ||
                            memmem(scratch, (size_t)r, sentinel, slen))
                            seen = true;
                        if ((size_t)r >= slen) {
                            memcpy(carry, scratch + r - (slen - 1), slen - 1);
                            ncarry = slen - 1;
                        } else {
                            size_t keep = ncarry + (size_t)r > slen - 1 ? slen - 1 : ncarry + (size_t)r;
                            memmove(probe, probe + (ncarry + (size_t)r - keep), keep);
                            memcpy(carry, probe, keep);
                            ncarry = keep;
                        }
                    }
                    /* the sentinel ends the call: what follows is not ours */
                    if (seen) return EXEC_DONE;
                    continue;
                }
                if (r == 0) return seen ? EXEC_DONE : EXEC_DIED;
                if (errno == EINTR) continue;
                break; /* EAGAIN */
            }
            if (seen) return EXEC_DONE;
        }
    }
}

json_t *tools_bash_call(tools_t *t, json_t *input, int64_t call_timeout_ms, int cancel_fd)
{
    json_t *jcmd = json_object_get(input, "command");
    json_t *jrestart = json_object_get(input, "restart");
    json_t *jtimeout = json_object_get(input, "timeout_ms");
    bool restart = jrestart && json_is_true(jrestart);
    if (jcmd && !json_is_null(jcmd) && !json_is_string(jcmd)) return tools_errorf("bash: command must be a string");
    if (jtimeout && !json_is_null(jtimeout) && !json_is_number(jtimeout))
        return tools_errorf("bash: timeout_ms must be an integer");
    const char *cmd = json_is_string(jcmd) ? json_string_value(jcmd) : NULL;
    size_t cmdlen = cmd ? json_string_length(jcmd) : 0;
    if (restart && t->bash) {
        bash_kill(t->bash);
        t->bash = NULL;
    }
    if (!cmd || cmdlen == 0) {
        if (restart) return tools_text_result(false, "bash session restarted", 22);
        return tools_errorf("bash: command is required");
    }
    if (cmdlen > BASH_MAX_COMMAND) return tools_errorf("bash: command is %zu bytes, over the %d-byte limit", cmdlen, BASH_MAX_COMMAND);
    double timeout = (double)(call_timeout_ms > 0 ? call_timeout_ms : t->default_timeout_ms);
    if (jtimeout && json_is_number(jtimeout) && json_number_value(jtimeout) > 0) timeout = json_number_value(jtimeout);
    if (!t->bash) {
        shed_err err = {0};
        if (bash_start(t, &t->bash, &err) < 0) return tools_errorf("bash: %s", err.msg);
    }
    ring_t ring = {.data = malloc(BASH_RING_BYTES)};
    if (!ring.data) return tools_errorf("bash: out of memory");
    char sentinel[64];
    make_sentinel(sentinel);
    int64_t tmo = timeout > 9e15 ? (int64_t)9e15 : (int64_t)timeout;
    if (tmo < 1) tmo = 1;
    enum exec_end end = bash_exec(t->bash, cmd, cmdlen, tmo, cancel_fd, &ring, sentinel);
    if (end != EXEC_DONE) {
        free(ring.data);
        bash_kill(t->bash);
        t->bash = NULL;
        switch (end) {
        case EXEC_TIMEOUT:
            if (timeout == (double)(int64_t)timeout) return tools_errorf("bash: bash command timed out after %lldms", (long long)timeout);
            return tools_errorf("bash: bash command timed out after %gms", timeout);
        case EXEC_CANCEL: return tools_errorf("bash: This operation was aborted");
        case EXEC_DIED: return tools_errorf("bash: bash session terminated");
        default: return tools_errorf("bash: i/o error talking to the shell");
        }
    }
    _cleanup_free_ char *raw = ring_linear(&ring);
    size_t rawlen = ring.len;
    bool dropped = ring.total > ring.len;
    free(ring.data);
    if (!raw) return tools_errorf("bash: out of memory");
    _cleanup_buf_ buf_t text;
    buf_init(&text, 0);
    /* Dropped bytes may have cut a character: start at a character boundary. */
    size_t skip = 0;
    if (dropped)
        while (skip < rawlen && skip < 4 && ((unsigned char)raw[skip] & 0xC0) == 0x80) skip++;
    if (tools_utf8_sanitize(&text, raw + skip, rawlen - skip) < 0) return tools_errorf("bash: out of memory");
    /* Keep the last BASH_OUTPUT_LIMIT UTF-16 units of everything received,
     * as the reference's string buffer does. */
    size_t units = tools_utf16_len(text.data, text.len);
    bool truncated = dropped || units > BASH_OUTPUT_LIMIT;
    size_t begin = 0;
    if (units > BASH_OUTPUT_LIMIT) {
        size_t drop = units - BASH_OUTPUT_LIMIT;
        while (begin < text.len && drop > 0) {
            unsigned char c = (unsigned char)text.data[begin];
            size_t l = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
            size_t u = l == 4 ? 2 : 1;
            begin += l;
            drop = drop > u ? drop - u : 0;
        }
    }
    char *s = text.data + begin;
    size_t slen = text.len - begin;
    char *at = memmem(s, slen, sentinel, strlen(sentinel));
    if (!at) return tools_errorf("bash: bash session terminated");
    const char *tail = at + strlen(sentinel);
    long long code = -1;
    char *endp;
    errno = 0;
    long long v = strtoll(tail, &endp, 10);
    if (endp != tail && errno == 0 && (tail[0] == '-' || (tail[0] >= '0' && tail[0] <= '9'))) code = v;
    size_t outlen = strip_ansi(s, (size_t)(at - s));
    while (outlen > 0 && s[outlen - 1] == '\n') outlen--;
    _cleanup_buf_ buf_t res;
    buf_init(&res, 0);
    if (truncated) buf_puts(&res, "[output truncated]\n");
    buf_append(&res, s, outlen);
    if (code != 0) {
        if (res.len == 0) buf_printf(&res, "exit %lld", code);
        return tools_text_result(true, res.data, res.len);
    }
    return tools_text_result(false, res.data, res.len);
}
