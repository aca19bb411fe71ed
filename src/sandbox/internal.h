/* Internals shared by the files of src/sandbox/ (not for other modules).
 * The policy is parsed into this struct first, then applied (parse first,
 * act later). */
#pragma once
#include <linux/filter.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/err.h"
#include "sandbox/sandbox.h"

/* Layers a policy may waive explicitly ("waive": [...]). */
enum {
    SANDBOX_WAIVE_CGROUP = 1 << 0,  /* no cgroup: rlimit fallback (RLIMIT_NPROC, RLIMIT_AS) */
    SANDBOX_WAIVE_SECCOMP = 1 << 1, /* no seccomp filter */
};

typedef struct sandbox_mount {
    char *source; /* host path (absolute) */
    char *target; /* path inside (absolute) */
    bool writable;
} sandbox_mount;

struct sandbox_policy {
    json_t *doc; /* the validated document (for digest and network) */
    char digest[65];
    json_t *network; /* borrowed from doc, may be NULL */
    /* limits */
    uint64_t memory_max, pids_max, nofile, fsize_max, tmp_size, workspace_max;
    uint64_t workspace_files_max; /* entries in the workspace (init's watchdog, tmpfs nr_inodes) */
    double cpus; /* 0 = no cpu limit */
    int64_t timeout_ms, command_timeout_ms;
    /* mounts */
    sandbox_mount *mounts;
    size_t nmounts;
    char *rootfs;
    char **env;        /* "K=V", NULL-terminated */
    char **deny_read;  /* paths inside, NULL-terminated */
    char **deny_write; /* paths inside, NULL-terminated */
    unsigned waived;
    int deny_errno;
    /* seccomp, compiled once per policy */
    struct sock_filter *bpf;
    unsigned short bpf_len;
};

/* policy.c */
int sandbox_parse_size(const char *s, uint64_t *out);
/* Minimal shape check of the "network" object until the egress module's
 * egress_policy_parse() is in main; see docs/policy.md. */
int sandbox_policy_network_check(json_t *network, shed_err *err);

/* sandbox.c: /run/shed as root, else $XDG_RUNTIME_DIR/shed or /tmp/shed-<uid>
 * (malloc'd, NULL on ENOMEM). */
char *sandbox_default_state_dir(void);

/* seccomp.c */
typedef struct sandbox_seccomp_rule {
    const char *syscall;
    int arg;         /* -1: any arguments; else index of the compared argument */
    uint64_t mask;   /* (arg & mask) == value */
    uint64_t value;
    int action;      /* SANDBOX_SC_DENY (policy errno), SANDBOX_SC_ENOSYS, SANDBOX_SC_KILL */
    const char *why;
} sandbox_seccomp_rule;
enum { SANDBOX_SC_DENY = 0, SANDBOX_SC_ENOSYS = 1, SANDBOX_SC_KILL = 2 };
const sandbox_seccomp_rule *sandbox_seccomp_rules(size_t *n);
int sandbox_seccomp_compile(struct sandbox_policy *p, shed_err *err);
/* The same, with the compiled filter cached in <state_dir>/bpf/<key>, the key
 * a SHA-256 of the rule table, the policy's errno, the libseccomp version and
 * the kernel: read instead of compiled when the directory and the file belong
 * to this euid and nobody else can write them (the trust of the state files).
 * sandbox_seccomp_compile uses sandbox_default_state_dir(); NULL: no cache. */
int sandbox_seccomp_compile_cached(struct sandbox_policy *p, const char *state_dir,
                                   shed_err *err);
/* Syscall number on this architecture, or -1. */
int sandbox_seccomp_nr(const char *name);

/* Fixed ids inside every sandbox. */
#define SANDBOX_UID 1000
#define SANDBOX_GID 1000
/* As root, slot N maps the sandbox user to host uid/gid SANDBOX_HOST_ID_BASE + N. */
#define SANDBOX_HOST_ID_BASE 1800000000u
#define SANDBOX_SLOTS 65536
/* In init: the inherited fds. */
#define SANDBOX_FD_CTL 3
#define SANDBOX_FD_HTTP 4
#define SANDBOX_FD_SOCKS 5
#define SANDBOX_FD_DNS 6

/* init.c: the body of `shed init` (pid 1 inside the sandbox). */
int sandbox_init_main(int argc, char **argv);
/* sandbox.c: the body of `shed init --zygote`. */
int sandbox_zygote_main(void);
/* sandbox.c: clone3 into the sandbox's namespaces (returns 0 in the child);
 * cgroup_fd >= 0 asks for CLONE_INTO_CGROUP, and *joined says whether the
 * kernel did it (else the creator must attach the child). */
pid_t sandbox_clone(int cgroup_fd, int *pidfd, bool *joined);
