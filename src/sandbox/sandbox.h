/* The sandbox runtime: one Linux sandbox per session. Knows nothing of HTTP
 * or the Managed Agents protocol. A sandbox is a set of namespaces whose
 * pid 1 is shed's init (`shed init`, started from an fd opened before the
 * clone), a cgroup with limits, a workspace, and a control channel
 * (SOCK_SEQPACKET) to init. Every layer is on by default; a policy may
 * waive one explicitly, and a waived layer is logged at every start.
 * Layers and the tests that prove them: docs/security.md.
 *
 * CONTRACT (shared by the worker, `shed run`, `shed tool`, egress):
 *   sandbox_policy_load()  parse + validate a policy file (or the default)
 *   sandbox_create()       build the sandbox, return when init is ready
 *   sandbox_ctl_fd()       the control channel, see ctl.h
 *   sandbox_take_listeners() the egress listeners init made inside the netns
 *   sandbox_destroy()      kill ladder, then remove cgroup/dirs; leaves nothing
 *   sandbox_reconcile()    sweep what a dead creator left behind
 * Thread-safety: different sandboxes may be created/destroyed from different
 * threads; one sandbox_t is used by one thread at a time.
 */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/err.h"

typedef struct sandbox_policy sandbox_policy; /* opaque; see policy.c and docs/policy.md */
typedef struct sandbox sandbox_t;

/* Load and fully validate a policy (JSON file; NULL = built-in default).
 * Unknown keys and wrong types are errors naming the key. The seccomp
 * filter is compiled here, once per policy, and reused by every create. */
int sandbox_policy_load(const char *path, sandbox_policy **out, shed_err *err);
int sandbox_policy_parse(json_t *doc, sandbox_policy **out, shed_err *err);
void sandbox_policy_free(sandbox_policy *p);
/* SHA-256 hex of the canonical policy (for the audit log). */
const char *sandbox_policy_digest(const sandbox_policy *p);
/* The "network" section as given (borrowed; validated by egress_policy_parse
 * in the egress module; until that is merged, by a minimal shape check). NULL if absent. */
json_t *sandbox_policy_network(const sandbox_policy *p);
/* Per-command timeout from the policy (ms, 0 = none). */
int64_t sandbox_policy_command_timeout_ms(const sandbox_policy *p);

typedef struct sandbox_opts {
    const char *workspace;   /* host dir bind-mounted rw at workdir; NULL = a size-limited
                                tmpfs inside the sandbox (nothing on the host, gone at destroy) */
    const char *workdir;     /* path inside; default "/workspace" */
    const char *hostname;    /* default derived from label */
    const char *label;       /* e.g. session id; names the cgroup/state entries;
                                [A-Za-z0-9_-]{1,64}; NULL = generated */
    const char *state_dir;   /* bookkeeping (reconcile keys on it); NULL = /run/shed as root,
                                else $XDG_RUNTIME_DIR/shed or /tmp/shed-<uid> */
    int slot;                /* >= 0: host uid for this slot when root; -1 = pick a free one */
    /* Overrides of the policy's limits (0 = keep the policy's). */
    uint64_t memory_max;
    uint64_t pids_max;
    int64_t timeout_ms;      /* lifetime of the whole sandbox (see sandbox_deadline_ms) */
    /* Extra read-only / read-write binds chosen by the operator (skills, memory stores). */
    const char *const *ro_binds; /* NULL-terminated "host:inside" strings */
    const char *const *rw_binds;
    char *const *env;            /* extra environment for tools, "K=V", NULL-terminated */
    /* Init without an exec of its own: the clone child becomes init in
     * place (one exec less per sandbox, ~1.3 ms of CPU here). Only for a
     * creator whose memory holds nothing the sandbox may not see except
     * its argv and environment (`shed run`): the child zeroes those
     * strings. Ignored (init exec'd from the binary, as without it) while
     * the process has another thread, an environment string outside the
     * kernel's original block (setenv), or loader variables (LD_*,
     * GLIBC_*, MALLOC_*), and when a zygote runs. docs/security.md,
     * "Init in place". */
    bool init_in_place;
} sandbox_opts;

int sandbox_create(const sandbox_policy *pol, const sandbox_opts *opts, sandbox_t **out,
                   shed_err *err);
/* For event loops: the same in two steps. start returns once the child is
 * cloned, its cgroup made (v1: the child joins it by itself before init
 * starts, see cgroup.h) and the child released (it blocks only for that:
 * a few ms); then wait for sandbox_ctl_fd() to
 * be readable and call finish, which returns -EAGAIN until init reported
 * "ready" (or fills err with the failing setup step). Until finish returned
 * 0, the only valid calls are finish, wait, sandbox_ctl_fd (to send, not to
 * receive), sandbox_init_pid, sandbox_label and sandbox_destroy.
 * sandbox_create() = start + sandbox_create_wait(). */
int sandbox_create_start(const sandbox_policy *pol, const sandbox_opts *opts, sandbox_t **out,
                         shed_err *err);
int sandbox_create_finish(sandbox_t *sb, shed_err *err);
/* Blocking: finish, waiting up to 20 s for "ready" (sandbox_create() =
 * start + wait, destroying the sandbox on error; after a failed wait the
 * caller destroys it). Between start and wait a creator may already send
 * requests on sandbox_ctl_fd(): init reads them after its "ready" (`shed
 * run` sends its command so, saving a round trip). */
int sandbox_create_wait(sandbox_t *sb, shed_err *err);
/* The control channel to init (SOCK_SEQPACKET, CLOEXEC, owned by the sandbox). */
int sandbox_ctl_fd(const sandbox_t *sb);
/* The egress listeners from init's "ready" message, handed over once (the
 * caller owns them; -1 when already taken): http (127.0.0.1:3128), socks
 * (127.0.0.1:1080), dns (UDP 127.0.0.1:53), all inside the sandbox's netns. */
void sandbox_take_listeners(sandbox_t *sb, int *http_fd, int *socks_fd, int *dns_fd);
pid_t sandbox_init_pid(const sandbox_t *sb);
/* uid of the sandbox user on the host (for reports and tests). */
uid_t sandbox_host_uid(const sandbox_t *sb);
/* Host path of the workspace, or NULL when it is a tmpfs inside the sandbox. */
const char *sandbox_workspace(const sandbox_t *sb);
const char *sandbox_label(const sandbox_t *sb);
/* Absolute CLOCK_MONOTONIC deadline in ms for the whole sandbox, 0 = none.
 * The creator enforces it (sandbox_destroy with SANDBOX_KILL_TIMEOUT). */
int64_t sandbox_deadline_ms(const sandbox_t *sb);
/* Why processes died: the cgroup's counters (0 when there is no cgroup). */
int64_t sandbox_oom_kills(const sandbox_t *sb);
int64_t sandbox_pids_denied(const sandbox_t *sb);
/* "v1", "v2" or "none (waived: rlimit fallback)". */
const char *sandbox_cgroup_mode(const sandbox_t *sb);

enum sandbox_kill_reason {
    SANDBOX_KILL_NONE = 0,
    SANDBOX_KILL_TIMEOUT,
    SANDBOX_KILL_OOM,
    SANDBOX_KILL_PIDS,
    SANDBOX_KILL_STOP,
    SANDBOX_KILL_SHUTDOWN,
};
/* Kill ladder: SIGTERM every process but init (by init, kill(-1)), wait up
 * to grace_ms for them to go, cgroup kill (v2 cgroup.kill; v1
 * freeze/kill/thaw), kill init; then remove the cgroup and what create made.
 * grace_ms 0 skips the SIGTERM step. Frees sb even on error; never fails
 * silently. */
int sandbox_destroy(sandbox_t *sb, int grace_ms, shed_err *err);
/* SIGKILL init now, without waiting (the kernel kills the rest of the pid
 * namespace with it): the first step of sandbox_destroy(sb, 0, ...), for a
 * creator with other work to do meanwhile; sandbox_destroy is still the
 * call that waits and removes everything. */
void sandbox_kill(sandbox_t *sb);

/* Remove sandboxes (processes, cgroups, dirs) recorded under state_dir
 * (NULL = default) whose creator is no longer alive. Returns how many were swept. */
int sandbox_reconcile(const char *state_dir, shed_err *err);

/* Startup probe: can this host provide every non-waived layer? Fills err with
 * what is missing and how to fix it. */
int sandbox_probe(const sandbox_policy *pol, shed_err *err);

/* Optional, for long-lived creators (the worker): start a zygote, a
 * `shed init --zygote` process exec'd once from the binary's fd, which
 * clones every later sandbox; each sandbox's init is then a fork of that
 * clean image instead of a fresh exec (no per-sandbox dynamic loading).
 * Call from the main thread (the zygote dies with the thread that started
 * it, PR_SET_PDEATHSIG). Without it, each init is exec'd from the fd. */
int sandbox_zygote_start(shed_err *err);
void sandbox_zygote_stop(void);

/* The binary started as init (default: this process's own executable, opened
 * once). Tests that link the library use it to point at build/shed. */
int sandbox_set_init_exe(const char *path, shed_err *err);
