/* cgroup backends behind one interface (crun style): cgroup_v1.c for hosts
 * whose controllers are on v1 hierarchies (memory, pids, cpu, freezer), and
 * cgroup_v2.c for the unified hierarchy. Each sandbox gets one leaf named
 * after its label under "shed" below the creator's own cgroup, so the
 * enclosing limits of the creator still apply. Internal to src/sandbox/. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/err.h"

typedef struct cgroup_limits {
    uint64_t memory_max; /* bytes, swap 0; 0 = none */
    uint64_t pids_max;   /* 0 = none */
    double cpus;         /* 0 = none */
} cgroup_limits;

#define CGROUP_MAX_DIRS 4

typedef struct sandbox_cgroup sandbox_cgroup;

/* How a new sandbox joins its cgroup without the creator writing its pid to
 * cgroup.procs, which write-locks the global cgroup_threadgroup_rwsem and so
 * waits for an RCU grace period (5-15 ms on a loaded host):
 *   v1: the fds are the leaves' "tasks" files; the creator makes the leaves
 *       while the child mounts (plan + make, after the clone) and hands the
 *       fds over with the child's release; the child writes "0" to each
 *       itself (a single thread moving itself takes no threadgroup lock; the
 *       child is single-threaded, so this moves the whole process), before
 *       it drops its capabilities and long before init runs anything.
 *   v2: fds[0] is the leaf directory, for clone3(CLONE_INTO_CGROUP): the
 *       child is born in the cgroup, nothing is migrated. */
typedef struct cgroup_join {
    int fds[CGROUP_MAX_DIRS];
    int n;
    bool clone_into; /* v2: fds[0] is for CLONE_INTO_CGROUP */
} cgroup_join;
void cgroup_join_close(cgroup_join *j);

typedef struct cgroup_backend {
    const char *name; /* "v1" or "v2" */
    int (*create)(const char *base, const char *name, const cgroup_limits *lim,
                  sandbox_cgroup **out, shed_err *err);
    /* create in two steps (NULL for v2, which needs the leaf before the
     * clone): plan names the leaves without making anything, make creates
     * them and sets the limits. create = plan + make. */
    int (*plan)(const char *base, const char *name, sandbox_cgroup **out, shed_err *err);
    int (*make)(sandbox_cgroup *cg, const cgroup_limits *lim, shed_err *err);
    /* The creator moves pid in (the fallback when the join below cannot be used). */
    int (*attach)(sandbox_cgroup *cg, pid_t pid, shed_err *err);
    /* Open what the child needs to join by itself (see cgroup_join). */
    int (*open_join)(sandbox_cgroup *cg, cgroup_join *out, shed_err *err);
    /* Kill every process in the cgroup and wait (bounded) until it is empty. */
    int (*kill_all)(sandbox_cgroup *cg, shed_err *err);
    /* Counters: how many OOM kills / fork refusals happened (>= 0), -errno. */
    int64_t (*oom_kills)(sandbox_cgroup *cg);
    int64_t (*pids_denied)(sandbox_cgroup *cg);
} cgroup_backend;

struct sandbox_cgroup {
    const cgroup_backend *be;
    char *dirs[CGROUP_MAX_DIRS]; /* v1: memory, pids, cpu, freezer; v2: one */
    int ndirs;
};

extern const cgroup_backend cgroup_v1_backend;
extern const cgroup_backend cgroup_v2_backend;

/* Which backend this host has and the base directory to create under
 * (the creator's own cgroup; for v1 the path below each controller mount).
 * Returns 0, or -errno with err naming what is missing and the fix. */
int cgroup_detect(const cgroup_backend **be, char **base, shed_err *err);
/* Remove the leaf directories (retrying while busy) and free. */
int cgroup_destroy(sandbox_cgroup *cg, shed_err *err);
/* Recreate a handle from directories recorded in a state file (reconcile). */
sandbox_cgroup *cgroup_from_dirs(const cgroup_backend *be, char *const *dirs, int n);

/* helpers shared by the backends (cgroup.c) */
int cgroup_write(const char *dir, const char *file, const char *val, shed_err *err);
int cgroup_read(const char *dir, const char *file, char *out, size_t outlen);
int64_t cgroup_read_key(const char *dir, const char *file, const char *key);
sandbox_cgroup *cgroup_alloc(const cgroup_backend *be);
void cgroup_free(sandbox_cgroup *cg);
/* The creator's own cgroup path below v1 controller ctrl ("" if at the root). */
int cgroup_v1_self(const char *ctrl, char *out, size_t outlen);
/* Kill each pid listed in dir/cgroup.procs; returns how many were listed. */
int cgroup_kill_procs(const char *dir);
