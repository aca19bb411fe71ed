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

static int v1_create(const char *base, const char *name, const cgroup_limits *lim,
                     sandbox_cgroup **out, shed_err *err)
{
    sandbox_cgroup *cg = cgroup_alloc(&cgroup_v1_backend);
    if (!cg) return err_set(err, ENOMEM, "cgroup");
    for (int i = 0; i < CGROUP_MAX_DIRS; i++) {
        char own[2048], parent[4096];
        if (cgroup_v1_self(CTRLS[i], own, sizeof(own)) < 0) own[0] = 0;
        snprintf(parent, sizeof(parent), "%s/%s%s/shed", base, CTRLS[i], own);
        if (mkdir(parent, 0755) < 0 && errno != EEXIST) {
            int e = errno;
            cgroup_destroy(cg, NULL);
            return err_set(err, e, "mkdir cgroup %s (v1 %s controller)", parent, CTRLS[i]);
        }
        char *dir;
        if (asprintf(&dir, "%s/%s", parent, name) < 0) {
            cgroup_destroy(cg, NULL);
            return err_set(err, ENOMEM, "cgroup");
        }
        if (mkdir(dir, 0755) < 0) {
            int e = errno;
            free(dir);
            cgroup_destroy(cg, NULL);
            return err_set(err, e, "mkdir cgroup %s/%s", parent, name);
        }
        cg->dirs[cg->ndirs++] = dir;
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
    if (rc) {
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
    .attach = v1_attach,
    .open_join = v1_open_join,
    .kill_all = v1_kill_all,
    .oom_kills = v1_oom_kills,
    .pids_denied = v1_pids_denied,
};
