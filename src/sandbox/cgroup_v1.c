/* cgroup v1 backend: one leaf per sandbox under <ctrl>/<creator's cgroup>/shed
 * for memory (limit + memsw = limit, i.e. no swap), pids, cpu (CFS quota)
 * and freezer (for the kill ladder: freeze, kill each, thaw). `base` is the
 * v1 mount root (/sys/fs/cgroup). Never touches a cgroup it did not create. */
#include "sandbox/cgroup.h"

#include "base/cleanup.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *const CTRLS[CGROUP_MAX_DIRS] = {"memory", "pids", "cpu", "freezer"};
enum { V1_MEMORY, V1_PIDS, V1_CPU, V1_FREEZER };

/* The creator's own path below each controller, from one read of
 * /proc/self/cgroup. */
static void v1_own_paths(char own[CGROUP_MAX_DIRS][2048])
{
    for (int i = 0; i < CGROUP_MAX_DIRS; i++) own[i][0] = 0;
    _cleanup_fclose_ FILE *f = fopen("/proc/self/cgroup", "re");
    char line[4096];
    while (f && fgets(line, sizeof(line), f)) {
        char *a = strchr(line, ':'), *b = a ? strchr(a + 1, ':') : NULL;
        if (!b) continue;
        *b = 0;
        char *path = b + 1;
        path[strcspn(path, "\n")] = 0;
        if (!strcmp(path, "/")) path = "";
        for (char *c = strtok(a + 1, ","); c; c = strtok(NULL, ","))
            for (int i = 0; i < CGROUP_MAX_DIRS; i++)
                if (!strcmp(c, CTRLS[i])) snprintf(own[i], sizeof(own[i]), "%s", path);
    }
}

static int v1_plan(const char *base, const char *name, sandbox_cgroup **out, shed_err *err)
{
    sandbox_cgroup *cg = cgroup_alloc(&cgroup_v1_backend);
    if (!cg) return err_set(err, ENOMEM, "cgroup");
    char own[CGROUP_MAX_DIRS][2048];
    v1_own_paths(own);
    for (int i = 0; i < CGROUP_MAX_DIRS; i++) {
        if (asprintf(&cg->dirs[i], "%s/%s%s/shed/%s", base, CTRLS[i], own[i], name) < 0) {
            cg->dirs[i] = NULL;
            cgroup_free(cg);
            return err_set(err, ENOMEM, "cgroup");
        }
        cg->ndirs++;
    }
    *out = cg;
    return 0;
}

static int v1_make(sandbox_cgroup *cg, const cgroup_limits *lim, shed_err *err)
{
    for (int i = 0; i < cg->ndirs; i++) {
        if (mkdir(cg->dirs[i], 0755) == 0) continue;
        if (errno == ENOENT) { /* the "shed" parent first */
            char parent[4096];
            snprintf(parent, sizeof(parent), "%s", cg->dirs[i]);
            *strrchr(parent, '/') = 0;
            if (mkdir(parent, 0755) < 0 && errno != EEXIST)
                return err_set(err, errno, "mkdir cgroup %s (v1 %s controller)", parent, CTRLS[i]);
            if (mkdir(cg->dirs[i], 0755) == 0) continue;
        }
        return err_set(err, errno, "mkdir cgroup %s", cg->dirs[i]);
    }
    char v[64];
    int rc = 0;
    if (lim->memory_max) {
        snprintf(v, sizeof(v), "%llu", (unsigned long long)lim->memory_max);
        rc = cgroup_write(cg->dirs[V1_MEMORY], "memory.limit_in_bytes", v, err);
        /* memsw = memory: no swap. Absent when swap accounting is off, in
         * which case there is no swap to account (documented). */
        char probe[64];
        if (!rc && cgroup_read(cg->dirs[V1_MEMORY], "memory.memsw.limit_in_bytes", probe,
                               sizeof(probe)) >= 0)
            rc = cgroup_write(cg->dirs[V1_MEMORY], "memory.memsw.limit_in_bytes", v, err);
        if (!rc) rc = cgroup_write(cg->dirs[V1_MEMORY], "memory.swappiness", "0", NULL) ? 0 : 0;
    }
    if (!rc && lim->pids_max) {
        snprintf(v, sizeof(v), "%llu", (unsigned long long)lim->pids_max);
        rc = cgroup_write(cg->dirs[V1_PIDS], "pids.max", v, err);
    }
    if (!rc && lim->cpus > 0) {
        snprintf(v, sizeof(v), "%lld", (long long)(lim->cpus * 100000));
        rc = cgroup_write(cg->dirs[V1_CPU], "cpu.cfs_period_us", "100000", err);
        if (!rc) rc = cgroup_write(cg->dirs[V1_CPU], "cpu.cfs_quota_us", v, err);
    }
    return rc;
}

static int v1_create(const char *base, const char *name, const cgroup_limits *lim,
                     sandbox_cgroup **out, shed_err *err)
{
    sandbox_cgroup *cg;
    int rc = v1_plan(base, name, &cg, err);
    if (rc < 0) return rc;
    if ((rc = v1_make(cg, lim, err)) < 0) {
        cgroup_destroy(cg, NULL);
        return rc;
    }
    *out = cg;
    return 0;
}

static int v1_attach(sandbox_cgroup *cg, pid_t pid, shed_err *err)
{
    char v[32];
    snprintf(v, sizeof(v), "%d", (int)pid);
    for (int i = 0; i < cg->ndirs; i++) {
        int rc = cgroup_write(cg->dirs[i], "cgroup.procs", v, err);
        if (rc < 0) return rc;
    }
    return 0;
}

static int v1_open_join(sandbox_cgroup *cg, cgroup_join *out, shed_err *err)
{
    out->n = 0;
    out->clone_into = false;
    for (int i = 0; i < cg->ndirs; i++) {
        char path[4200];
        snprintf(path, sizeof(path), "%s/tasks", cg->dirs[i]);
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            cgroup_join_close(out);
            return err_set(err, e, "open cgroup %s", path);
        }
        out->fds[out->n++] = fd;
    }
    return 0;
}

static void sleep_ms(int ms)
{
    nanosleep(&(struct timespec){ms / 1000, (ms % 1000) * 1000000L}, NULL);
}

/* crun's cgroup_killall_path: freeze so nothing can fork, kill each, always thaw. */
static int v1_kill_all(sandbox_cgroup *cg, shed_err *err)
{
    if (cg->ndirs < CGROUP_MAX_DIRS) return 0;
    const char *fz = cg->dirs[V1_FREEZER];
    int rc = cgroup_write(fz, "freezer.state", "FROZEN", err);
    if (rc == 0) {
        char st[64];
        for (int t = 0; t < 200; t++) {
            if (cgroup_read(fz, "freezer.state", st, sizeof(st)) < 0 || !strncmp(st, "FROZEN", 6))
                break;
            sleep_ms(1);
        }
    }
    cgroup_kill_procs(fz);
    cgroup_write(fz, "freezer.state", "THAWED", NULL);
    for (int t = 0; t < 1000; t++) {
        char buf[64];
        if (cgroup_read(cg->dirs[V1_PIDS], "cgroup.procs", buf, sizeof(buf)) <= 0) return 0;
        if (t % 100 == 99) cgroup_kill_procs(cg->dirs[V1_PIDS]);
        sleep_ms(2);
    }
    return err_msg(err, EBUSY, "cgroup %s still has processes after SIGKILL", cg->dirs[V1_PIDS]);
}

static int64_t v1_oom_kills(sandbox_cgroup *cg)
{
    return cg->ndirs > V1_MEMORY ? cgroup_read_key(cg->dirs[V1_MEMORY], "memory.oom_control",
                                                   "oom_kill")
                                 : 0;
}

static int64_t v1_pids_denied(sandbox_cgroup *cg)
{
    return cg->ndirs > V1_PIDS ? cgroup_read_key(cg->dirs[V1_PIDS], "pids.events", "max") : 0;
}

const cgroup_backend cgroup_v1_backend = {
    .name = "v1",
    .create = v1_create,
    .plan = v1_plan,
    .make = v1_make,
    .attach = v1_attach,
    .open_join = v1_open_join,
    .kill_all = v1_kill_all,
    .oom_kills = v1_oom_kills,
    .pids_denied = v1_pids_denied,
};
