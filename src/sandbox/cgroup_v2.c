/* cgroup v2 backend: one leaf per sandbox under <creator's cgroup>/shed with
 * memory.max, memory.swap.max = 0, memory.oom.group = 1, pids.max, cpu.max;
 * killed with cgroup.kill (or freeze/kill/thaw on kernels before 5.14).
 * Runs for real on v2 hosts; on this project's v1 dev machines it is
 * exercised against a directory tree shaped like cgroupfs (unit tests).
 * `base` is the creator's cgroup directory. The "no internal processes"
 * rule: if enabling controllers in base fails with EBUSY, the creator moves
 * itself into base/shed/self.<pid> first (as nsjail does). */
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

static int enable_controllers(const char *dir, shed_err *err)
{
    char have[512];
    if (cgroup_read(dir, "cgroup.controllers", have, sizeof(have)) < 0)
        return err_set(err, errno ? errno : EIO, "read %s/cgroup.controllers", dir);
    char want[128] = "";
    static const char *const C[] = {"memory", "pids", "cpu"};
    for (size_t i = 0; i < ARRAY_SIZE(C); i++) {
        if (!strstr(have, C[i])) {
            if (!strcmp(C[i], "cpu")) continue; /* cpu is optional */
            return err_msg(err, ENOTSUP,
                           "cgroup %s lacks the %s controller; fix: delegate it to shed "
                           "(systemd: Delegate=yes) or waive \"cgroup\" in the policy",
                           dir, C[i]);
        }
        strcat(want, "+");
        strcat(want, C[i]);
        strcat(want, " ");
    }
    want[strlen(want) - 1] = 0;
    return cgroup_write(dir, "cgroup.subtree_control", want, err);
}

static int v2_create(const char *base, const char *name, const cgroup_limits *lim,
                     sandbox_cgroup **out, shed_err *err)
{
    char parent[4096];
    snprintf(parent, sizeof(parent), "%s/shed", base);
    if (mkdir(parent, 0755) < 0 && errno != EEXIST)
        return err_set(err, errno, "mkdir cgroup %s", parent);
    shed_err e1;
    int rc = enable_controllers(base, &e1);
    if (rc == -EBUSY) {
        /* base has processes (us): move ourselves to a leaf, then retry. */
        char self[4096], pid[32];
        snprintf(self, sizeof(self), "%s/self.%d", parent, (int)getpid());
        if (mkdir(self, 0755) < 0 && errno != EEXIST)
            return err_set(err, errno, "mkdir cgroup %s", self);
        snprintf(pid, sizeof(pid), "%d", (int)getpid());
        if ((rc = cgroup_write(self, "cgroup.procs", pid, err)) < 0) return rc;
        rc = enable_controllers(base, &e1);
    }
    if (rc < 0) {
        if (err) *err = e1;
        return rc;
    }
    if ((rc = enable_controllers(parent, err)) < 0) return rc;
    sandbox_cgroup *cg = cgroup_alloc(&cgroup_v2_backend);
    if (!cg) return err_set(err, ENOMEM, "cgroup");
    if (asprintf(&cg->dirs[0], "%s/%s", parent, name) < 0) {
        free(cg);
        return err_set(err, ENOMEM, "cgroup");
    }
    if (mkdir(cg->dirs[0], 0755) < 0) {
        rc = err_set(err, errno, "mkdir cgroup %s", cg->dirs[0]);
        cgroup_free(cg);
        return rc;
    }
    cg->ndirs = 1;
    const char *d = cg->dirs[0];
    char v[64];
    if (lim->memory_max) {
        snprintf(v, sizeof(v), "%llu", (unsigned long long)lim->memory_max);
        rc = cgroup_write(d, "memory.max", v, err);
        if (!rc) rc = cgroup_write(d, "memory.swap.max", "0", err);
        if (!rc) rc = cgroup_write(d, "memory.oom.group", "1", err);
    }
    if (!rc && lim->pids_max) {
        snprintf(v, sizeof(v), "%llu", (unsigned long long)lim->pids_max);
        rc = cgroup_write(d, "pids.max", v, err);
    }
    if (!rc && lim->cpus > 0) {
        snprintf(v, sizeof(v), "%lld 100000", (long long)(lim->cpus * 100000));
        rc = cgroup_write(d, "cpu.max", v, err);
    }
    if (rc) {
        cgroup_destroy(cg, NULL);
        return rc;
    }
    *out = cg;
    return 0;
}

static int v2_attach(sandbox_cgroup *cg, pid_t pid, shed_err *err)
{
    char v[32];
    snprintf(v, sizeof(v), "%d", (int)pid);
    return cgroup_write(cg->dirs[0], "cgroup.procs", v, err);
}

static int v2_open_join(sandbox_cgroup *cg, cgroup_join *out, shed_err *err)
{
    out->n = 0;
    out->clone_into = true;
    int fd = open(cg->dirs[0], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return err_set(err, errno, "open cgroup %s", cg->dirs[0]);
    out->fds[out->n++] = fd;
    return 0;
}

static void sleep_ms(int ms)
{
    nanosleep(&(struct timespec){ms / 1000, (ms % 1000) * 1000000L}, NULL);
}

static int v2_kill_all(sandbox_cgroup *cg, shed_err *err)
{
    const char *d = cg->dirs[0];
    char probe[8];
    if (cgroup_read(d, "cgroup.kill", probe, sizeof(probe)) >= 0 ||
        access(d, F_OK) == 0) {
        if (cgroup_write(d, "cgroup.kill", "1", NULL) < 0) {
            /* before 5.14: freeze, kill each, always thaw */
            cgroup_write(d, "cgroup.freeze", "1", NULL);
            cgroup_kill_procs(d);
            cgroup_write(d, "cgroup.freeze", "0", NULL);
        }
    }
    for (int t = 0; t < 1000; t++) {
        if (cgroup_read_key(d, "cgroup.events", "populated") <= 0) {
            char buf[64];
            if (cgroup_read(d, "cgroup.procs", buf, sizeof(buf)) <= 0) return 0;
        }
        if (t % 100 == 99) cgroup_kill_procs(d);
        sleep_ms(2);
    }
    return err_msg(err, EBUSY, "cgroup %s still has processes after cgroup.kill", d);
}

static int64_t v2_oom_kills(sandbox_cgroup *cg)
{
    return cgroup_read_key(cg->dirs[0], "memory.events", "oom_kill");
}

static int64_t v2_pids_denied(sandbox_cgroup *cg)
{
    return cgroup_read_key(cg->dirs[0], "pids.events", "max");
}

const cgroup_backend cgroup_v2_backend = {
    .name = "v2",
    .create = v2_create,
    .attach = v2_attach,
    .open_join = v2_open_join,
    .kill_all = v2_kill_all,
    .oom_kills = v2_oom_kills,
    .pids_denied = v2_pids_denied,
};
