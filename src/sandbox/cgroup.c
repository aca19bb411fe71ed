/* Shared cgroup plumbing: detection, file I/O, removal. The backends are in
 * cgroup_v1.c and cgroup_v2.c. Never writes outside the sandbox's own leaf
 * except to create the "shed" parent and enable controllers in it. */
#include "sandbox/cgroup.h"

#include "base/cleanup.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int cgroup_write(const char *dir, const char *file, const char *val, shed_err *err)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    /* O_CREAT only matters for a test tree; on cgroupfs the file exists or
     * creating it fails, which is the right error either way. */
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return err_set(err, errno, "open %s", path);
    size_t n = strlen(val);
    if (write(fd, val, n) != (ssize_t)n) return err_set(err, errno, "write '%s' to %s", val, path);
    return 0;
}

int cgroup_read(const char *dir, const char *file, char *out, size_t outlen)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    ssize_t n = read(fd, out, outlen - 1);
    if (n < 0) return -errno;
    out[n] = 0;
    return (int)n;
}

int64_t cgroup_read_key(const char *dir, const char *file, const char *key)
{
    char buf[4096];
    int n = cgroup_read(dir, file, buf, sizeof(buf));
    if (n < 0) return n;
    size_t kl = strlen(key);
    for (char *l = buf; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (!strncmp(l, key, kl) && l[kl] == ' ') return strtoll(l + kl + 1, NULL, 10);
    return 0;
}

void cgroup_join_close(cgroup_join *j)
{
    for (int i = 0; i < j->n; i++)
        if (j->fds[i] >= 0) close(j->fds[i]);
    j->n = 0;
}

sandbox_cgroup *cgroup_alloc(const cgroup_backend *be)
{
    sandbox_cgroup *cg = calloc(1, sizeof(*cg));
    if (cg) cg->be = be;
    return cg;
}

void cgroup_free(sandbox_cgroup *cg)
{
    if (!cg) return;
    for (int i = 0; i < cg->ndirs; i++) free(cg->dirs[i]);
    free(cg);
}

sandbox_cgroup *cgroup_from_dirs(const cgroup_backend *be, char *const *dirs, int n)
{
    sandbox_cgroup *cg = cgroup_alloc(be);
    if (!cg) return NULL;
    for (int i = 0; i < n && i < CGROUP_MAX_DIRS; i++)
        if ((cg->dirs[cg->ndirs] = strdup(dirs[i]))) cg->ndirs++;
    return cg;
}

int cgroup_kill_procs(const char *dir)
{
    char buf[65536];
    int n = cgroup_read(dir, "cgroup.procs", buf, sizeof(buf));
    if (n <= 0) return 0;
    int count = 0;
    for (char *p = buf; *p;) {
        char *end;
        long pid = strtol(p, &end, 10);
        if (end == p) break;
        if (pid > 0) {
            kill((pid_t)pid, SIGKILL);
            count++;
        }
        p = end;
        while (*p == '\n') p++;
    }
    return count;
}

int cgroup_destroy(sandbox_cgroup *cg, shed_err *err)
{
    if (!cg) return 0;
    int rc = 0;
    for (int i = cg->ndirs - 1; i >= 0; i--) {
        /* A cgroup is busy until its last task is fully gone: retry ~2 s. */
        for (int t = 0;; t++) {
            if (rmdir(cg->dirs[i]) == 0 || errno == ENOENT) break;
            if (errno != EBUSY || t >= 400) {
                rc = err_set(err, errno, "rmdir cgroup %s", cg->dirs[i]);
                break;
            }
            if (t % 50 == 49) cgroup_kill_procs(cg->dirs[i]);
            nanosleep(&(struct timespec){0, 5 * 1000 * 1000}, NULL);
        }
    }
    cgroup_free(cg);
    return rc;
}

/* The creator's cgroup path for a v1 controller ("memory") or v2 (""). */
static int self_cgroup(const char *ctrl, char *out, size_t outlen)
{
    _cleanup_fclose_ FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f) return -errno;
    char line[4096];
    while (fgets(line, sizeof(line), f)) {
        char *a = strchr(line, ':'), *b = a ? strchr(a + 1, ':') : NULL;
        if (!b) continue;
        *b = 0;
        const char *list = a + 1;
        bool match = false;
        if (!*ctrl) {
            match = !*list && !strncmp(line, "0", 1);
        } else {
            char tmp[256];
            snprintf(tmp, sizeof(tmp), "%s", list);
            for (char *s = strtok(tmp, ","); s; s = strtok(NULL, ","))
                if (!strcmp(s, ctrl)) match = true;
        }
        if (!match) continue;
        char *path = b + 1;
        path[strcspn(path, "\n")] = 0;
        if (!strcmp(path, "/")) path = "";
        snprintf(out, outlen, "%s", path);
        return 0;
    }
    return -ENOENT;
}

int cgroup_detect(const cgroup_backend **be, char **base, shed_err *err)
{
    const char *root = "/sys/fs/cgroup";
    char path[4096], own[2048];
    snprintf(path, sizeof(path), "%s/memory/cgroup.procs", root);
    if (access(path, F_OK) == 0) {
        /* v1: base is the creator's own path, the same below each controller
         * we use when they agree; memory decides. Each controller's own path
         * is resolved by the backend from this marker. */
        *be = &cgroup_v1_backend;
        *base = strdup(root);
        return *base ? 0 : -ENOMEM;
    }
    snprintf(path, sizeof(path), "%s/cgroup.controllers", root);
    char ctrls[512];
    if (cgroup_read(root, "cgroup.controllers", ctrls, sizeof(ctrls)) >= 0) {
        if (!strstr(ctrls, "memory") || !strstr(ctrls, "pids"))
            return err_msg(err, ENOTSUP,
                           "cgroup v2 at %s lacks the memory or pids controller (has: %s); fix: "
                           "enable them, or waive \"cgroup\" in the policy",
                           root, ctrls);
        int rc = self_cgroup("", own, sizeof(own));
        if (rc < 0) return err_set(err, -rc, "read /proc/self/cgroup");
        *be = &cgroup_v2_backend;
        if (asprintf(base, "%s%s", root, own) < 0) return -ENOMEM;
        return 0;
    }
    return err_msg(err, ENOTSUP,
                   "no usable cgroup hierarchy under %s (neither v1 memory nor v2 controllers); "
                   "fix: mount cgroups, or waive \"cgroup\" in the policy",
                   root);
}

int cgroup_v1_self(const char *ctrl, char *out, size_t outlen)
{
    return self_cgroup(ctrl, out, outlen);
}
