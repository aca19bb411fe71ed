/* Sandbox lifecycle: create (plan the mounts in the parent, clone into new
 * namespaces, apply the plan in the child, exec init from an fd), destroy
 * (kill ladder, remove everything), reconcile, probe. The child between
 * clone and exec only makes syscalls on data prepared before the clone and
 * reports failures through a CLOEXEC error pipe naming the step and errno.
 * Must never: give the sandbox a capability, a host uid shared with
 * another slot, a host path the policy did not name, or an fd of the
 * creator other than the control channel. */
#include "sandbox/sandbox.h"

#include "base/cleanup.h"
#include "base/clock.h"
#include "base/b64.h"
#include "base/id.h"
#include "base/json.h"
#include "base/log.h"
#include "sandbox/cgroup.h"
#include "sandbox/ctl.h"
#include "sandbox/internal.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <grp.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/mount.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#if defined(__x86_64__)
#include <sys/platform/x86.h> /* glibc's CPU features (no cpuid: libgcc's __builtin_cpu_supports runs ~40 at start-up, each a VM exit) */
#endif
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif

struct sandbox {
    pid_t init_pid;
    int pidfd;
    int ctl_fd;
    int listeners[3];
    uid_t host_uid;
    int slot;
    char *label;
    char *dir;       /* state_dir/sandboxes/<label>: the state file (JSON; init's pid in
                        <label>.init); a directory holding state.json in older versions */
    bool dir_is_dir; /* that older layout (reconcile only) */
    char *slot_path; /* state_dir/slots/<n> or NULL */
    char *workspace; /* host path or NULL */
    sandbox_cgroup *cg;
    int64_t deadline_ms;
    bool via_zygote; /* init is the zygote's child: wait on the pidfd */
    bool ready;      /* sandbox_create_finish() saw "ready" */
    int err_fd;      /* the child's error pipe until then */
    int state_fd;    /* the state file, from its O_EXCL create until written once */
    int64_t started_ns;
};

/* ---------- process-wide state: init exe fd, cgroup detection ---------- */

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_exe_fd = -1;
static atomic_uint g_seq;

int sandbox_set_init_exe(const char *path, shed_err *err)
{
    int fd = open(path, O_PATH | O_CLOEXEC);
    if (fd < 0) return err_set(err, errno, "open init binary %s", path);
    pthread_mutex_lock(&g_lock);
    if (g_exe_fd >= 0) close(g_exe_fd);
    g_exe_fd = fd;
    pthread_mutex_unlock(&g_lock);
    return 0;
}

static int exe_fd(shed_err *err)
{
    pthread_mutex_lock(&g_lock);
    if (g_exe_fd < 0) {
        const char *env = getenv("SHED_INIT_EXE");
        g_exe_fd = open(env && *env ? env : "/proc/self/exe", O_PATH | O_CLOEXEC);
    }
    int fd = g_exe_fd;
    pthread_mutex_unlock(&g_lock);
    if (fd < 0) return err_set(err, errno, "open /proc/self/exe (the init binary)");
    return fd;
}

/* ---------- the mount plan ---------- */

enum {
    OP_MKDIR,
    OP_MKFILE,
    OP_SYMLINK,
    OP_WRITE,
    OP_BIND_RO,
    OP_BIND_RW,
    OP_BIND_DEV, /* device node: bind, keep dev */
    OP_TMPFS,
    OP_PROC,
    OP_DEVPTS,
    OP_PROC_RO,  /* bind a /proc subpath read-only over itself (if present) */
    OP_MASK,     /* deny_read: inside path hidden (tmpfs or /dev/null) if present */
    OP_DENYWRITE,/* inside path made read-only if present */
    OP_RDONLY,   /* this mount (not its submounts) read-only */
};

typedef struct mop {
    int kind;
    char *src;  /* host path, symlink text, file content, tmpfs options */
    char *dst;  /* absolute path in the child's view before pivot_root */
    size_t len; /* content length for OP_WRITE */
} mop;

typedef struct plan {
    mop *ops;
    size_t n, cap;
    char *root; /* the new root's mount point (host path, under the state dir) */
} plan;

static void plan_free(plan *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->ops[i].src);
        free(p->ops[i].dst);
    }
    free(p->ops);
    free(p->root);
    memset(p, 0, sizeof(*p));
}

static int plan_add(plan *p, int kind, const char *src, const char *inside)
{
    if (p->n == p->cap) {
        size_t c = p->cap ? p->cap * 2 : 64;
        mop *o = realloc(p->ops, c * sizeof(*o));
        if (!o) return -ENOMEM;
        p->ops = o;
        p->cap = c;
    }
    mop *o = &p->ops[p->n];
    memset(o, 0, sizeof(*o));
    o->kind = kind;
    if (src && !(o->src = strdup(src))) return -ENOMEM;
    o->len = src ? strlen(src) : 0;
    if (asprintf(&o->dst, "%s%s", p->root, inside) < 0) {
        free(o->src);
        return -ENOMEM;
    }
    p->n++;
    return 0;
}

/* mkdir -p of every parent of `inside` in the new root (which is empty, so
 * each component is created by us: no symlink can be in the way). */
static int plan_parents(plan *p, const char *inside)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s", inside);
    for (char *s = strchr(tmp + 1, '/'); s; s = strchr(s + 1, '/')) {
        *s = 0;
        int rc = plan_add(p, OP_MKDIR, NULL, tmp);
        *s = '/';
        if (rc < 0) return rc;
    }
    return 0;
}

/* Bind host path `src` at `inside`: directory or file mount point, or a
 * symlink mirrored as a symlink (merged-/usr hosts: /bin -> usr/bin). */
static int plan_bind(plan *p, const char *src, const char *inside, int kind, bool mirror_links,
                     bool optional, shed_err *err)
{
    struct stat st;
    if (lstat(src, &st) < 0) {
        if (optional && errno == ENOENT) return 0;
        return err_set(err, errno, "mount source %s", src);
    }
    int rc = plan_parents(p, inside);
    if (rc < 0) return rc;
    if (S_ISLNK(st.st_mode) && mirror_links) {
        char link[4096];
        ssize_t n = readlink(src, link, sizeof(link) - 1);
        if (n < 0) return err_set(err, errno, "readlink %s", src);
        link[n] = 0;
        return plan_add(p, OP_SYMLINK, link, inside);
    }
    if (stat(src, &st) < 0) {
        if (optional && errno == ENOENT) return 0;
        return err_set(err, errno, "mount source %s", src);
    }
    if ((rc = plan_add(p, S_ISDIR(st.st_mode) ? OP_MKDIR : OP_MKFILE, NULL, inside)) < 0) return rc;
    return plan_add(p, kind, src, inside);
}

static int plan_write(plan *p, const char *inside, const char *content)
{
    return plan_add(p, OP_WRITE, content, inside);
}

typedef struct create_cfg {
    const sandbox_policy *pol;
    const sandbox_opts *opts;
    const char *workdir;
    const char *hostname;
    uint64_t memory_max, pids_max;
    bool cgroup_on;
} create_cfg;

static int build_plan(plan *p, const create_cfg *c, const char *workspace, shed_err *err)
{
    const sandbox_policy *pol = c->pol;
    const char *base = pol->rootfs ? pol->rootfs : "";
    char src[4096];
    int rc;
#define TRY(x)                                                                                  \
    do {                                                                                        \
        if ((rc = (x)) < 0) {                                                                   \
            if (err && !err->code) err_set(err, -rc, "sandbox mount plan");                     \
            return rc;                                                                          \
        }                                                                                       \
    } while (0)
    if (err) err->code = 0;
    static const char *const TOP[] = {"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64",
                                      "/libx32"};
    for (size_t i = 0; i < ARRAY_SIZE(TOP); i++) {
        snprintf(src, sizeof(src), "%s%s", base, TOP[i]);
        TRY(plan_bind(p, src, TOP[i], OP_BIND_RO, true, i > 0, err));
    }
    /* a minimal /etc */
    TRY(plan_add(p, OP_MKDIR, NULL, "/etc"));
    char buf[1024];
    snprintf(buf, sizeof(buf),
             "root:x:0:0:root:/root:/usr/sbin/nologin\n"
             "sandbox:x:%d:%d:shed sandbox:%s:/bin/bash\n"
             "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
             SANDBOX_UID, SANDBOX_GID, c->workdir);
    TRY(plan_write(p, "/etc/passwd", buf));
    snprintf(buf, sizeof(buf), "root:x:0:\nsandbox:x:%d:\nnogroup:x:65534:\n", SANDBOX_GID);
    TRY(plan_write(p, "/etc/group", buf));
    snprintf(buf, sizeof(buf), "127.0.0.1\tlocalhost %s\n::1\tlocalhost ip6-localhost\n",
             c->hostname);
    TRY(plan_write(p, "/etc/hosts", buf));
    TRY(plan_write(p, "/etc/hostname", c->hostname));
    /* the in-sandbox DNS stub (egress) */
    TRY(plan_write(p, "/etc/resolv.conf", "nameserver 127.0.0.1\noptions ndots:0 attempts:1\n"));
    TRY(plan_write(p, "/etc/nsswitch.conf", "passwd: files\ngroup: files\nshadow: files\n"
                                            "hosts: files dns\nnetworks: files\n"
                                            "protocols: files\nservices: files\n"));
    static const char *const ETC[] = {"/etc/ssl", "/etc/ca-certificates", "/etc/ca-certificates.conf",
                                      "/etc/alternatives", "/etc/ld.so.cache", "/etc/ld.so.conf",
                                      "/etc/ld.so.conf.d", "/etc/localtime", "/etc/bash.bashrc",
                                      "/etc/profile", "/etc/inputrc", "/etc/services",
                                      "/etc/protocols", "/etc/mime.types", "/etc/magic",
                                      "/etc/pki", "/etc/python3"};
    for (size_t i = 0; i < ARRAY_SIZE(ETC); i++) {
        snprintf(src, sizeof(src), "%s%s", base, ETC[i]);
        TRY(plan_bind(p, src, ETC[i], OP_BIND_RO, false, true, err));
    }
    /* /dev */
    TRY(plan_add(p, OP_MKDIR, NULL, "/dev"));
    TRY(plan_add(p, OP_TMPFS, "mode=0755,size=64k,nr_inodes=64", "/dev"));
    static const char *const DEV[] = {"null", "zero", "full", "random", "urandom", "tty"};
    for (size_t i = 0; i < ARRAY_SIZE(DEV); i++) {
        char in[64], host[64];
        snprintf(in, sizeof(in), "/dev/%s", DEV[i]);
        snprintf(host, sizeof(host), "/dev/%s", DEV[i]);
        TRY(plan_add(p, OP_MKFILE, NULL, in));
        TRY(plan_add(p, OP_BIND_DEV, host, in));
    }
    TRY(plan_add(p, OP_MKDIR, NULL, "/dev/pts"));
    TRY(plan_add(p, OP_DEVPTS, "newinstance,ptmxmode=0666,mode=0620", "/dev/pts"));
    TRY(plan_add(p, OP_SYMLINK, "pts/ptmx", "/dev/ptmx"));
    TRY(plan_add(p, OP_MKDIR, NULL, "/dev/shm"));
    TRY(plan_add(p, OP_TMPFS, "mode=1777,size=64m,nr_inodes=16384", "/dev/shm"));
    TRY(plan_add(p, OP_SYMLINK, "/proc/self/fd", "/dev/fd"));
    TRY(plan_add(p, OP_SYMLINK, "/proc/self/fd/0", "/dev/stdin"));
    TRY(plan_add(p, OP_SYMLINK, "/proc/self/fd/1", "/dev/stdout"));
    TRY(plan_add(p, OP_SYMLINK, "/proc/self/fd/2", "/dev/stderr"));
    TRY(plan_add(p, OP_RDONLY, NULL, "/dev"));
    /* /proc: fresh, in the new pid namespace; kernel knobs read-only */
    TRY(plan_add(p, OP_MKDIR, NULL, "/proc"));
    TRY(plan_add(p, OP_PROC, NULL, "/proc"));
    static const char *const PROC_RO[] = {"/proc/sys", "/proc/sysrq-trigger", "/proc/irq",
                                          "/proc/bus", "/proc/fs"};
    for (size_t i = 0; i < ARRAY_SIZE(PROC_RO); i++) TRY(plan_add(p, OP_PROC_RO, NULL, PROC_RO[i]));
    /* /tmp */
    /* nr_inodes: tmpfs inodes are kernel memory the memory cgroup alone
     * charges (none when it is waived): bounded, in proportion to the size */
    snprintf(buf, sizeof(buf), "mode=1777,size=%llu,nr_inodes=%llu", (unsigned long long)pol->tmp_size,
             (unsigned long long)(pol->tmp_size / 4096 > 16384 ? pol->tmp_size / 4096 : 16384));
    TRY(plan_add(p, OP_MKDIR, NULL, "/tmp"));
    TRY(plan_add(p, OP_TMPFS, buf, "/tmp"));
    /* the workspace */
    TRY(plan_parents(p, c->workdir));
    TRY(plan_add(p, OP_MKDIR, NULL, c->workdir));
    if (workspace) {
        TRY(plan_add(p, OP_BIND_RW, workspace, c->workdir));
    } else {
        uint64_t ni = pol->workspace_max / 4096 > 16384 ? pol->workspace_max / 4096 : 16384;
        if (ni > pol->workspace_files_max + 1) ni = pol->workspace_files_max + 1; /* + the root */
        snprintf(buf, sizeof(buf), "mode=0700,uid=%d,gid=%d,size=%llu,nr_inodes=%llu", SANDBOX_UID,
                 SANDBOX_GID, (unsigned long long)pol->workspace_max, (unsigned long long)ni);
        TRY(plan_add(p, OP_TMPFS, buf, c->workdir));
    }
    /* the operator's mounts: policy, then opts */
    for (size_t i = 0; i < pol->nmounts; i++)
        TRY(plan_bind(p, pol->mounts[i].source, pol->mounts[i].target,
                      pol->mounts[i].writable ? OP_BIND_RW : OP_BIND_RO, false, false, err));
    for (int rw = 0; rw < 2; rw++) {
        const char *const *l = rw ? c->opts->rw_binds : c->opts->ro_binds;
        for (; l && *l; l++) {
            const char *colon = strchr(*l, ':');
            if (!colon || colon == *l || colon[1] != '/' || (*l)[0] != '/')
                return err_msg(err, EINVAL, "bind \"%s\": expected \"/host/path:/inside/path\"",
                               *l);
            char host[4096];
            snprintf(host, sizeof(host), "%.*s", (int)(colon - *l), *l);
            TRY(plan_bind(p, host, colon + 1, rw ? OP_BIND_RW : OP_BIND_RO, false, false, err));
        }
    }
    for (char **d = pol->deny_write; d && *d; d++) TRY(plan_add(p, OP_DENYWRITE, NULL, *d));
    for (char **d = pol->deny_read; d && *d; d++) TRY(plan_add(p, OP_MASK, NULL, *d));
#undef TRY
    return 0;
}

/* ---------- the child: between clone and exec ---------- */

typedef struct child_args {
    const plan *pl;
    const create_cfg *cfg;
    int sync_fd, sync2_fd, err_fd, ctl_fd, exe_fd;
    bool privileged;
    int cap_last;
    const struct sock_fprog *prog; /* NULL when waived */
    struct rlimit nofile, fsize, nproc;
    bool nproc_on;
    bool no_exec; /* forked by the zygote, or in place: become init without an exec */
    /* in place (opts->init_in_place): the creator's stack, [stack_lo,
     * stack_hi), its argv strings from arg_start (scrub_caller) */
    uintptr_t arg_start, stack_lo, stack_hi;
    /* in place: the creator's /proc/self/stat fields 26-28 and 45-51
     * (start_code .. env_end), for trim_args */
    unsigned long long mmf[52];
    int ncg; /* v1: how many "tasks" files come with the second release (cgroup_join) */
} child_args;

struct child_err {
    int err;
    char step[248];
};

__attribute__((noreturn)) static void child_die(const child_args *a, int e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void child_die(const child_args *a, int e, const char *fmt, ...)
{
    struct child_err ce = {.err = e};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ce.step, sizeof(ce.step), fmt, ap);
    va_end(ap);
    ssize_t w = write(a->err_fd, &ce, sizeof(ce));
    (void)w;
    _exit(125);
}

static int sys_mount_setattr(const char *path, unsigned flags, uint64_t set, uint64_t clr)
{
    struct mount_attr attr = {.attr_set = set, .attr_clr = clr};
    return (int)syscall(SYS_mount_setattr, AT_FDCWD, path, flags, &attr, sizeof(attr));
}

static void child_bind(const child_args *a, const mop *o, uint64_t attrs)
{
    if (mount(o->src, o->dst, NULL, MS_BIND | MS_REC, NULL) < 0)
        child_die(a, errno, "bind mount %s", o->src);
    if (sys_mount_setattr(o->dst, AT_RECURSIVE, attrs, 0) < 0)
        child_die(a, errno, "mount_setattr %s", o->src);
}

static void child_write(const child_args *a, const char *path, const char *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) child_die(a, errno, "create %s", path);
    if (write(fd, data, len) != (ssize_t)len) child_die(a, errno, "write %s", path);
    close(fd);
}

static void child_run_plan(const child_args *a)
{
    const plan *p = a->pl;
    for (size_t i = 0; i < p->n; i++) {
        const mop *o = &p->ops[i];
        struct stat st;
        switch (o->kind) {
        case OP_MKDIR:
            if (mkdir(o->dst, 0755) < 0 && errno != EEXIST) child_die(a, errno, "mkdir %s", o->dst);
            break;
        case OP_MKFILE: {
            int fd = open(o->dst, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0444);
            if (fd < 0 && errno != EEXIST) child_die(a, errno, "create mount point %s", o->dst);
            if (fd >= 0) close(fd);
            break;
        }
        case OP_SYMLINK:
            if (symlink(o->src, o->dst) < 0 && errno != EEXIST)
                child_die(a, errno, "symlink %s", o->dst);
            break;
        case OP_WRITE:
            child_write(a, o->dst, o->src, o->len);
            break;
        case OP_BIND_RO:
            child_bind(a, o, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
            break;
        case OP_BIND_RW:
            child_bind(a, o, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
            break;
        case OP_BIND_DEV:
            child_bind(a, o, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC);
            break;
        case OP_TMPFS:
            if (mount("tmpfs", o->dst, "tmpfs", MS_NOSUID | MS_NODEV, o->src) < 0)
                child_die(a, errno, "mount tmpfs on %s", o->dst);
            break;
        case OP_PROC:
            if (mount("proc", o->dst, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
                child_die(a, errno,
                          "mount proc on %s (fix: a host or container that allows mounting "
                          "procfs in a user namespace, e.g. without masked /proc paths)",
                          o->dst);
            break;
        case OP_DEVPTS:
            if (mount("devpts", o->dst, "devpts", MS_NOSUID | MS_NOEXEC, o->src) < 0)
                child_die(a, errno, "mount devpts on %s", o->dst);
            break;
        case OP_PROC_RO:
            if (lstat(o->dst, &st) < 0) break;
            if (mount(o->dst, o->dst, NULL, MS_BIND | MS_REC, NULL) < 0)
                child_die(a, errno, "bind %s", o->dst);
            if (sys_mount_setattr(o->dst, AT_RECURSIVE, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID |
                                                            MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
                                  0) < 0)
                child_die(a, errno, "make %s read-only", o->dst);
            break;
        case OP_DENYWRITE:
            if (lstat(o->dst, &st) < 0 || S_ISLNK(st.st_mode)) break;
            if (mount(o->dst, o->dst, NULL, MS_BIND | MS_REC, NULL) < 0)
                child_die(a, errno, "bind %s (denyWrite)", o->dst);
            if (sys_mount_setattr(o->dst, AT_RECURSIVE, MOUNT_ATTR_RDONLY, 0) < 0)
                child_die(a, errno, "make %s read-only (denyWrite)", o->dst);
            break;
        case OP_RDONLY:
            if (sys_mount_setattr(o->dst, 0, MOUNT_ATTR_RDONLY, 0) < 0)
                child_die(a, errno, "make %s read-only", o->dst);
            break;
        case OP_MASK:
            if (lstat(o->dst, &st) < 0 || S_ISLNK(st.st_mode)) break;
            if (S_ISDIR(st.st_mode)) {
                if (mount("tmpfs", o->dst, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY,
                          "mode=0000,size=4k,nr_inodes=1") < 0)
                    child_die(a, errno, "hide %s (denyRead)", o->dst);
            } else {
                char null[4200];
                snprintf(null, sizeof(null), "%s/dev/null", p->root);
                if (mount(null, o->dst, NULL, MS_BIND, NULL) < 0)
                    child_die(a, errno, "hide %s (denyRead)", o->dst);
                sys_mount_setattr(o->dst, 0, MOUNT_ATTR_RDONLY, 0);
            }
            break;
        }
    }
}

static int move_fd_high(int fd)
{
    return fd < 0 ? fd : fcntl(fd, F_DUPFD_CLOEXEC, 64);
}

static int listen_on(int type, int port)
{
    int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) return -errno;
    if (type == SOCK_STREAM && listen(fd, 128) < 0) return -errno;
    return fd;
}

/* The creator's release byte, with fds (SCM_RIGHTS). Returns how many fds
 * came (received CLOEXEC), or -1 when the creator is gone. */
static int recv_release(int sock, int *fds)
{
    char c;
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int) * CTL_MAX_FDS)];
    } u;
    struct iovec iov = {.iov_base = &c, .iov_len = 1};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                        .msg_controllen = sizeof(u.buf)};
    ssize_t r;
    do
        r = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    while (r < 0 && errno == EINTR);
    if (r != 1) return -1;
    int n = 0;
    for (struct cmsghdr *h = CMSG_FIRSTHDR(&mh); h; h = CMSG_NXTHDR(&mh, h)) {
        if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS) continue;
        int k = (int)((h->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (int i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof(int));
            if (n < CTL_MAX_FDS)
                fds[n++] = fd;
            else
                close(fd);
        }
    }
    if (mh.msg_flags & MSG_CTRUNC) {
        for (int i = 0; i < n; i++) close(fds[i]);
        return -1;
    }
    return n;
}

static int send_release(int sock, const int *fds, int n)
{
    char c = 'x';
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int) * CGROUP_MAX_DIRS)];
    } u;
    memset(&u, 0, sizeof(u));
    struct iovec iov = {.iov_base = &c, .iov_len = 1};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (n > 0) {
        mh.msg_control = u.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * n);
        struct cmsghdr *h = CMSG_FIRSTHDR(&mh);
        h->cmsg_level = SOL_SOCKET;
        h->cmsg_type = SCM_RIGHTS;
        h->cmsg_len = CMSG_LEN(sizeof(int) * n);
        memcpy(CMSG_DATA(h), fds, sizeof(int) * n);
    }
    return sendmsg(sock, &mh, MSG_NOSIGNAL) == 1 ? 0 : -1;
}

/* Init in place (opts->init_in_place, see in_place_ok): the child is a
 * copy of the creator, whose stack holds its argv and environment strings
 * (kernel-copied at exec, with the auxv and AT_EXECFN, at the top) and, in
 * dead parts of frames, whatever else passed through it: vector registers
 * spilled by the loader's lazy binding (_dl_runtime_resolve saves them all
 * on the stack, and glibc's string functions leave 32-64 bytes of what they
 * scanned in them: the test found the last environment string that way).
 * The child never returns to any of those frames, so it drops the whole
 * stack but this function's own frame: above it, every caller's frame, the
 * auxv and the strings are zeroed; below it, the pages are discarded
 * (MADV_DONTNEED: zero pages on the next touch); then the vector registers
 * are cleared, so that no later spill brings anything back. Not
 * instrumented: ASan would see writes to its poisoned redzones. It never
 * returns (its callers' frames are gone): it goes on as init. */
__attribute__((noinline, noreturn, no_sanitize_address)) static void become_init(uintptr_t arg_start,
                                                                                 uintptr_t lo,
                                                                                 uintptr_t hi)
{
#if defined(__x86_64__)
    if (!hi) goto init; /* the zygote's child: nothing to drop */
    uintptr_t sp, fp = (uintptr_t)__builtin_frame_address(0);
    __asm__ volatile("mov %%rsp, %0" : "=r"(sp));
    /* the registers first: the first call to a function (madvise below)
     * goes through the lazy binder, which spills them to the stack */
    /* vzeroall clears ymm0-15, not bits 511:256 of zmm0-15 nor zmm16-31,
     * which glibc's EVEX string functions use: the first test run found 32
     * bytes of the environment in an xsave spill after vzeroall alone,
     * and before it, one spilled by the call to madvise after the zeroing */
    if (CPU_FEATURE_ACTIVE(AVX512F)) {
        __asm__ volatile(
            "vpxord %%zmm0, %%zmm0, %%zmm0\n\tvpxord %%zmm1, %%zmm1, %%zmm1\n\t"
            "vpxord %%zmm2, %%zmm2, %%zmm2\n\tvpxord %%zmm3, %%zmm3, %%zmm3\n\t"
            "vpxord %%zmm4, %%zmm4, %%zmm4\n\tvpxord %%zmm5, %%zmm5, %%zmm5\n\t"
            "vpxord %%zmm6, %%zmm6, %%zmm6\n\tvpxord %%zmm7, %%zmm7, %%zmm7\n\t"
            "vpxord %%zmm8, %%zmm8, %%zmm8\n\tvpxord %%zmm9, %%zmm9, %%zmm9\n\t"
            "vpxord %%zmm10, %%zmm10, %%zmm10\n\tvpxord %%zmm11, %%zmm11, %%zmm11\n\t"
            "vpxord %%zmm12, %%zmm12, %%zmm12\n\tvpxord %%zmm13, %%zmm13, %%zmm13\n\t"
            "vpxord %%zmm14, %%zmm14, %%zmm14\n\tvpxord %%zmm15, %%zmm15, %%zmm15\n\t"
            "vpxord %%zmm16, %%zmm16, %%zmm16\n\tvpxord %%zmm17, %%zmm17, %%zmm17\n\t"
            "vpxord %%zmm18, %%zmm18, %%zmm18\n\tvpxord %%zmm19, %%zmm19, %%zmm19\n\t"
            "vpxord %%zmm20, %%zmm20, %%zmm20\n\tvpxord %%zmm21, %%zmm21, %%zmm21\n\t"
            "vpxord %%zmm22, %%zmm22, %%zmm22\n\tvpxord %%zmm23, %%zmm23, %%zmm23\n\t"
            "vpxord %%zmm24, %%zmm24, %%zmm24\n\tvpxord %%zmm25, %%zmm25, %%zmm25\n\t"
            "vpxord %%zmm26, %%zmm26, %%zmm26\n\tvpxord %%zmm27, %%zmm27, %%zmm27\n\t"
            "vpxord %%zmm28, %%zmm28, %%zmm28\n\tvpxord %%zmm29, %%zmm29, %%zmm29\n\t"
            "vpxord %%zmm30, %%zmm30, %%zmm30\n\tvpxord %%zmm31, %%zmm31, %%zmm31\n\t" ::
                : "memory");
    } else if (CPU_FEATURE_ACTIVE(AVX)) {
        __asm__ volatile("vzeroall" ::: "memory");
    } else {
        __asm__ volatile(
            "pxor %%xmm0, %%xmm0\n\tpxor %%xmm1, %%xmm1\n\t"
            "pxor %%xmm2, %%xmm2\n\tpxor %%xmm3, %%xmm3\n\t"
            "pxor %%xmm4, %%xmm4\n\tpxor %%xmm5, %%xmm5\n\t"
            "pxor %%xmm6, %%xmm6\n\tpxor %%xmm7, %%xmm7\n\t"
            "pxor %%xmm8, %%xmm8\n\tpxor %%xmm9, %%xmm9\n\t"
            "pxor %%xmm10, %%xmm10\n\tpxor %%xmm11, %%xmm11\n\t"
            "pxor %%xmm12, %%xmm12\n\tpxor %%xmm13, %%xmm13\n\t"
            "pxor %%xmm14, %%xmm14\n\tpxor %%xmm15, %%xmm15\n\t" ::
                : "memory");
    }

    /* below: a few pages by hand (the syscall below needs the stack),
     * the rest discarded */
    uintptr_t near = (sp & ~(uintptr_t)4095) - 8192;
    for (volatile uint64_t *w = (uint64_t *)near; (uintptr_t)w < sp - 256; w++) *w = 0;
    if (near > lo) madvise((void *)lo, near - lo, MADV_DONTNEED); /* ENOMEM for the holes */
    /* above: every caller's frame up to the top of the stack */
    for (volatile uint64_t *w = (uint64_t *)(fp + 16); (uintptr_t)w < hi; w++) *w = 0;
    /* /proc/1/cmdline (world-readable) reads "shed init" */
    static const char title[] = "shed\0init";
    for (size_t i = 0; i < sizeof(title); i++) ((volatile char *)arg_start)[i] = title[i];
    static char *no_env[] = {NULL};
    environ = no_env;
init:
#else
    (void)arg_start, (void)lo, (void)hi; /* in_place_ok never allows a scrub here */
#endif
    /* every signal back to its default, as an exec would leave it (a
     * handler of the creator's stays out of pid 1) */
    for (int sig = 1; sig < NSIG; sig++) signal(sig, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    char *argv0[] = {"shed", "init", NULL};
    _exit(sandbox_init_main(2, argv0));
}

/* Init in place: /proc/1/cmdline (world-readable) reads arg_start..arg_end,
 * so after become_init's "shed\0init" it would go on with as many zero
 * bytes as the creator's argv had: its length, for the sandbox to see
 * (escape3_inplace.sh). Shrink the kernel's argv range to the title and the
 * environment range to one byte (PR_SET_MM_MAP, no capability needed
 * without exe_fd; the other fields as they are). Before the seccomp filter.
 * Best effort: a kernel without CONFIG_CHECKPOINT_RESTORE refuses it, and
 * then only the length shows (the bytes are zeroed). */
static void trim_args(const child_args *a)
{
    const unsigned long long *f = a->mmf;
    struct prctl_mm_map m = {
        .start_code = f[26],
        .end_code = f[27],
        .start_stack = f[28],
        .start_data = f[45],
        .end_data = f[46],
        .start_brk = f[47],
        .brk = (uintptr_t)sbrk(0),
        .arg_start = f[48],
        .arg_end = f[48] + 10, /* "shed\0init\0" */
        .env_start = f[48] + 10,
        .env_end = f[48] + 11, /* a zero byte: the kernel wants env_start < env_end */
        .exe_fd = (uint32_t)-1,
    };
    (void)prctl(PR_SET_MM, PR_SET_MM_MAP, (unsigned long)&m, sizeof(m), 0);
}

__attribute__((noreturn)) static void child_main(child_args *a)
{
    char c;
    /* Wait until the parent wrote our id maps and put us in the cgroup. */
    ssize_t r;
    do
        r = read(a->sync_fd, &c, 1);
    while (r < 0 && errno == EINTR);
    if (r != 1) _exit(125); /* parent gone */
    close(a->sync_fd);

    /* Become the sandbox user now (caps are kept: uid 0 is not mapped, so the
     * kernel's setuid cap-clearing rule does not apply) so that files we
     * create on our tmpfs have a mapped owner.
     * Raw syscalls: glibc's wrappers in a process it believes to be
     * multithreaded (a clone of a creator with threads) signal the other
     * threads to change theirs too and wait for them forever (__nptl_setxid);
     * the child has one thread, and the kernel's credentials are per thread. */
    if (a->privileged && syscall(SYS_setgroups, 0, NULL) < 0) child_die(a, errno, "setgroups");
    if (syscall(SYS_setresgid, SANDBOX_GID, SANDBOX_GID, SANDBOX_GID) < 0)
        child_die(a, errno, "setresgid");
    if (syscall(SYS_setresuid, SANDBOX_UID, SANDBOX_UID, SANDBOX_UID) < 0)
        child_die(a, errno, "setresuid");

    /* Private, not slave: with a slave, a mount the host makes later under a
     * bound path (a shared mount on systemd hosts) propagates in with the
     * host's flags, not our ro/nosuid/nodev (escape_mounts.sh). */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        child_die(a, errno, "make / a private mount");
    const char *root = a->pl->root;
    if (mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m,nr_inodes=4096") < 0)
        child_die(a, errno, "mount the root tmpfs on %s", root);
    child_run_plan(a);
    /* The root itself read-only (the tmpfs holding /etc's files). */
    if (sys_mount_setattr(root, 0, MOUNT_ATTR_RDONLY, 0) < 0)
        child_die(a, errno, "make the root read-only");
    if (chdir(root) < 0) child_die(a, errno, "chdir %s", root);
    if (syscall(SYS_pivot_root, ".", ".") < 0) child_die(a, errno, "pivot_root");
    if (umount2(".", MNT_DETACH) < 0) child_die(a, errno, "detach the old root");
    if (chdir(a->cfg->workdir) < 0) child_die(a, errno, "chdir %s", a->cfg->workdir);

    if (sethostname(a->cfg->hostname, strlen(a->cfg->hostname)) < 0)
        child_die(a, errno, "sethostname");
    /* lo up: an ioctl is enough, no netlink needed */
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) child_die(a, errno, "socket for lo");
    struct ifreq ifr = {0};
    strcpy(ifr.ifr_name, "lo");
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) child_die(a, errno, "SIOCGIFFLAGS lo");
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) child_die(a, errno, "bring lo up (SIOCSIFFLAGS)");
    close(s);
    /* the egress listeners (port 53 needs our capability, so before the drop) */
    int lfd[3] = {listen_on(SOCK_STREAM, 3128), listen_on(SOCK_STREAM, 1080),
                  listen_on(SOCK_DGRAM, 53)};
    static const char *const LN[] = {"127.0.0.1:3128", "127.0.0.1:1080", "udp 127.0.0.1:53"};
    for (int i = 0; i < 3; i++) {
        if (lfd[i] < 0) child_die(a, -lfd[i], "egress listener %s", LN[i]);
        lfd[i] = move_fd_high(lfd[i]);
    }

    /* Opened before RLIMIT_NOFILE drops: a creator with more fds open than
     * the sandbox's limit (a worker serving many sessions) leaves no free
     * fd number below it until exec closes the inherited ones. */
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0) child_die(a, errno, "open /dev/null");

    /* rlimits: second layer */
    struct rlimit zero = {0, 0};
    if (setrlimit(RLIMIT_CORE, &zero) < 0) child_die(a, errno, "setrlimit core");
    if (setrlimit(RLIMIT_NOFILE, &a->nofile) < 0) child_die(a, errno, "setrlimit nofile");
    if (setrlimit(RLIMIT_FSIZE, &a->fsize) < 0) child_die(a, errno, "setrlimit fsize");
    if (a->nproc_on && setrlimit(RLIMIT_NPROC, &a->nproc) < 0) child_die(a, errno, "setrlimit nproc");

    /* Second release: the creator made our cgroup while we were mounting;
     * v1: join it now, by ourselves (a thread moving itself takes no
     * threadgroup lock, so no RCU grace period: cgroup.h, cgroup_join). */
    int cgf[CTL_MAX_FDS];
    int ncgf = recv_release(a->sync2_fd, cgf);
    if (ncgf < 0) _exit(125);
    close(a->sync2_fd);
    if (ncgf != a->ncg) {
        for (int i = 0; i < ncgf; i++) close(cgf[i]);
        child_die(a, EPROTO, "join the sandbox's cgroup: %d of %d v1 tasks files came", ncgf, a->ncg);
    }
    for (int i = 0; i < ncgf; i++) {
        if (write(cgf[i], "0", 1) != 1)
            child_die(a, errno, "join the sandbox's cgroup (v1 tasks file %d of %d)", i + 1, ncgf);
        close(cgf[i]);
    }
    if (a->cfg->cgroup_on && unshare(CLONE_NEWCGROUP) < 0)
        child_die(a, errno, "unshare cgroup namespace");

    if (setsid() < 0) child_die(a, errno, "setsid");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) child_die(a, errno, "PR_SET_NO_NEW_PRIVS");
    for (int cap = 0; cap <= a->cap_last; cap++)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
            child_die(a, errno, "drop capability %d from the bounding set", cap);
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        child_die(a, errno, "clear ambient capabilities");
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2] = {{0}};
    if (syscall(SYS_capset, &hdr, data) < 0) child_die(a, errno, "capset (drop all)");
    /* after the last credential change, which would clear it */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) child_die(a, errno, "PR_SET_PDEATHSIG");

    /* fds: 0,1 /dev/null, 2 the creator's stderr (init's log), 3 ctl, 4-6 listeners */
    if (dup2(devnull, 0) < 0 || dup2(devnull, 1) < 0) child_die(a, errno, "dup2 stdio");
    if (dup2(a->ctl_fd, SANDBOX_FD_CTL) < 0 || dup2(lfd[0], SANDBOX_FD_HTTP) < 0 ||
        dup2(lfd[1], SANDBOX_FD_SOCKS) < 0 || dup2(lfd[2], SANDBOX_FD_DNS) < 0)
        child_die(a, errno, "dup2 control/listener fds");
    if (syscall(SYS_close_range, 7, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
        child_die(a, errno, "close_range");

    if (a->no_exec && a->stack_hi) trim_args(a);
    if (a->prog && prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, a->prog, 0, 0) < 0)
        child_die(a, errno, "install the seccomp filter");
    if (a->no_exec) {
        /* Become init without an exec: the zygote's image was exec'd from
         * the binary's fd and never held anything but mount plans; a
         * creator that asked for init_in_place holds nothing the sandbox is
         * not given anyway, but its argv and environment, which become_init
         * drops with the whole stack (docs/security.md, "Init in place").
         * Everything but 0-6 is closed now (the error pipe too: EOF =
         * "started"). */
        syscall(SYS_close_range, 7, ~0U, 0);
        become_init(a->arg_start, a->stack_lo, a->stack_hi);
    }
    char *const argv[] = {"shed", "init", NULL};
    /* init never uses TLS: skip GnuTLS's constructor (pulled in by libcurl),
     * a measurable part of init's start-up. Commands get their own env. */
    char *const envp[] = {"PATH=/usr/local/bin:/usr/bin:/bin", "GNUTLS_NO_IMPLICIT_INIT=1", NULL};
    syscall(SYS_execveat, a->exe_fd, "", argv, envp, AT_EMPTY_PATH);
    child_die(a, errno, "execveat shed init");
}

/* clone3 into new namespaces (the caller's child returns 0). With
 * cgroup_fd >= 0, the child is born in that cgroup (v2 CLONE_INTO_CGROUP);
 * where the kernel or the hierarchy cannot (before 5.7, a non-cgroupfs
 * directory), clone without it and *joined = false: the creator attaches.
 * (internal.h: exposed for the unit test of that fallback) */
pid_t sandbox_clone(int cgroup_fd, int *pidfd, bool *joined)
{
    struct clone_args ca = {0};
    ca.flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS |
               CLONE_NEWNET | CLONE_PIDFD;
    ca.pidfd = (uint64_t)(uintptr_t)pidfd;
    ca.exit_signal = SIGCHLD;
    *joined = true;
    if (cgroup_fd >= 0) {
        ca.flags |= CLONE_INTO_CGROUP;
        ca.cgroup = (uint64_t)cgroup_fd;
        pid_t pid = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
        if (pid >= 0 || (errno != EINVAL && errno != EBADF && errno != E2BIG &&
                         errno != EOPNOTSUPP && errno != ENOSYS))
            return pid;
        ca.flags &= ~(uint64_t)CLONE_INTO_CGROUP;
        ca.cgroup = 0;
        *joined = false;
    }
    return (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
}

/* ---------- the zygote ----------
 * Optional (sandbox_zygote_start): a `shed init --zygote` process exec'd
 * once from the binary's fd; each create asks it to clone the sandbox child,
 * which then becomes init without an exec. This saves the dynamic loading
 * of shed's ~40 shared libraries per sandbox (most of a create's CPU). */

static int g_zyg_fd = -1;
static pid_t g_zyg_pid = -1;
static pthread_mutex_t g_zyg_lock = PTHREAD_MUTEX_INITIALIZER;

static json_t *encode_child(const child_args *a)
{
    json_t *ops = json_array();
    for (size_t i = 0; i < a->pl->n; i++) {
        const mop *o = &a->pl->ops[i];
        json_array_append_new(ops, json_pack("[i,s?,s]", o->kind, o->src, o->dst));
    }
    json_t *j = json_pack("{s:s,s:o,s:s,s:s,s:b,s:b,s:i,s:I,s:I,s:I,s:b}", "type", "clone", "ops",
                          ops, "root", a->pl->root, "workdir", a->cfg->workdir, "cgroup_on",
                          a->cfg->cgroup_on, "privileged", a->privileged, "cap_last", a->cap_last,
                          "nofile", (json_int_t)a->nofile.rlim_cur, "fsize",
                          (json_int_t)a->fsize.rlim_cur, "nproc", (json_int_t)a->nproc.rlim_cur,
                          "nproc_on", a->nproc_on);
    if (!j) return NULL;
    json_object_set_new(j, "hostname", json_string(a->cfg->hostname));
    if (a->ncg) json_object_set_new(j, "cg_n", json_integer(a->ncg));
    if (a->prog) {
        char *b = b64_encode_alloc(a->prog->filter, a->prog->len * sizeof(struct sock_filter),
                                   false, true);
        json_object_set_new(j, "bpf", json_string(b ? b : ""));
        free(b);
    }
    return j;
}

/* In the zygote: decode a request into storage that lives until the fork. */
static int decode_child(json_t *j, child_args *a, plan *pl, create_cfg *cfg,
                        struct sock_fprog *prog)
{
    json_t *ops = json_object_get(j, "ops");
    const char *root = json_string_value(json_object_get(j, "root"));
    cfg->workdir = json_string_value(json_object_get(j, "workdir"));
    cfg->hostname = json_string_value(json_object_get(j, "hostname"));
    if (!json_is_array(ops) || !root || !cfg->workdir || !cfg->hostname) return -EINVAL;
    pl->root = strdup(root);
    size_t i;
    json_t *o;
    json_array_foreach(ops, i, o) {
        if (pl->n == pl->cap) {
            size_t c = pl->cap ? pl->cap * 2 : 64;
            mop *m = realloc(pl->ops, c * sizeof(*m));
            if (!m) return -ENOMEM;
            pl->ops = m;
            pl->cap = c;
        }
        const char *src = json_string_value(json_array_get(o, 1));
        const char *dst = json_string_value(json_array_get(o, 2));
        if (!dst) return -EINVAL;
        mop *m = &pl->ops[pl->n++];
        m->kind = (int)json_integer_value(json_array_get(o, 0));
        m->src = src ? strdup(src) : NULL;
        m->len = src ? strlen(src) : 0;
        m->dst = strdup(dst);
    }
    cfg->cgroup_on = json_is_true(json_object_get(j, "cgroup_on"));
    a->pl = pl;
    a->cfg = cfg;
    a->privileged = json_is_true(json_object_get(j, "privileged"));
    a->cap_last = (int)json_integer_value(json_object_get(j, "cap_last"));
    rlim_t v = (rlim_t)json_integer_value(json_object_get(j, "nofile"));
    a->nofile = (struct rlimit){v, v};
    v = (rlim_t)json_integer_value(json_object_get(j, "fsize"));
    a->fsize = (struct rlimit){v, v};
    v = (rlim_t)json_integer_value(json_object_get(j, "nproc"));
    a->nproc = (struct rlimit){v, v};
    a->nproc_on = json_is_true(json_object_get(j, "nproc_on"));
    const char *b = json_string_value(json_object_get(j, "bpf"));
    if (b) {
        size_t n = 0;
        void *f = b64_decode_alloc(b, strlen(b), false, &n);
        if (!f || n == 0 || n % sizeof(struct sock_filter)) {
            free(f);
            return -EINVAL;
        }
        prog->filter = f;
        prog->len = (unsigned short)(n / sizeof(struct sock_filter));
        a->prog = prog;
    }
    a->no_exec = true;
    return 0;
}

static void zyg_reap(void)
{
    while (waitpid(-1, NULL, WNOHANG) > 0) {}
}

int sandbox_zygote_main(void)
{
    const int fd = SANDBOX_FD_CTL;
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (getppid() == 1) return 1;
    /* stays dumpable: an unprivileged creator writes its children's id maps
     * (each init makes itself non-dumpable) */
    signal(SIGCHLD, SIG_DFL);
    for (;;) {
        zyg_reap();
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 200) == 0) continue; /* also reaps every 200 ms */
        json_t *req = NULL;
        int fds[CTL_MAX_FDS], nfds = 0;
        shed_err err;
        int rc = ctl_recv(fd, &req, fds, &nfds, &err);
        if (rc == -EPIPE) return 0;
        if (rc < 0) return 1;
        child_args a = {0};
        plan pl = {0};
        create_cfg cfg = {0};
        struct sock_fprog prog = {0};
        json_t *reply;
        int pidfd = -1;
        json_int_t cg_n = json_integer_value(json_object_get(req, "cg_n"));
        bool cg_into = json_is_true(json_object_get(req, "cg_into"));
        if (cg_n < 0 || cg_n > CGROUP_MAX_DIRS || (cg_into && cg_n) || nfds != 4 + cg_into ||
            decode_child(req, &a, &pl, &cfg, &prog) < 0) {
            reply = json_pack("{s:s}", "error", "bad clone request");
        } else {
            a.ncg = (int)cg_n;
            bool joined = true;
            pid_t pid = sandbox_clone(cg_into ? fds[4] : -1, &pidfd, &joined);
            if (pid == 0) {
                a.ctl_fd = move_fd_high(fds[0]);
                a.err_fd = move_fd_high(fds[1]);
                a.sync_fd = move_fd_high(fds[2]);
                a.sync2_fd = move_fd_high(fds[3]);
                a.exe_fd = -1;
                if (a.ctl_fd < 0 || a.err_fd < 0 || a.sync_fd < 0 || a.sync2_fd < 0) _exit(125);
                close(fd);
                child_main(&a);
            }
            reply = pid < 0 ? json_pack("{s:s,s:i}", "error", "clone3", "errno", errno)
                            : json_pack("{s:i,s:b}", "pid", (int)pid, "joined", joined);
        }
        for (int i = 0; i < nfds; i++) close(fds[i]);
        rc = ctl_send(fd, reply, pidfd >= 0 ? &pidfd : NULL, pidfd >= 0 ? 1 : 0, &err);
        if (pidfd >= 0) close(pidfd);
        json_decref(reply);
        json_decref(req);
        free((void *)prog.filter);
        plan_free(&pl);
        if (rc < 0) return 1;
    }
}

int sandbox_zygote_start(shed_err *err)
{
    int efd = exe_fd(err);
    if (efd < 0) return efd;
    pthread_mutex_lock(&g_zyg_lock);
    if (g_zyg_fd >= 0) {
        pthread_mutex_unlock(&g_zyg_lock);
        return 0;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        pthread_mutex_unlock(&g_zyg_lock);
        return err_set(err, errno, "socketpair for the zygote");
    }
    pid_t pid = fork();
    if (pid == 0) {
        int x = move_fd_high(efd), y = move_fd_high(sv[1]);
        if (x < 0 || y < 0 || dup2(y, SANDBOX_FD_CTL) < 0) _exit(125);
        efd = x;
        int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (devnull >= 0) dup2(devnull, 0), dup2(devnull, 1);
        syscall(SYS_close_range, 4, ~0U, CLOSE_RANGE_CLOEXEC);
        char *const argv[] = {"shed", "init", "--zygote", NULL};
        char *const envp[] = {"PATH=/usr/local/bin:/usr/bin:/bin", "GNUTLS_NO_IMPLICIT_INIT=1",
                              NULL};
        syscall(SYS_execveat, efd, "", argv, envp, AT_EMPTY_PATH);
        _exit(127);
    }
    int e = errno;
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        pthread_mutex_unlock(&g_zyg_lock);
        return err_set(err, e, "fork the zygote");
    }
    g_zyg_fd = sv[0];
    g_zyg_pid = pid;
    pthread_mutex_unlock(&g_zyg_lock);
    return 0;
}

void sandbox_zygote_stop(void)
{
    pthread_mutex_lock(&g_zyg_lock);
    if (g_zyg_fd >= 0) {
        close(g_zyg_fd);
        kill(g_zyg_pid, SIGKILL);
        while (waitpid(g_zyg_pid, NULL, 0) < 0 && errno == EINTR) {}
    }
    g_zyg_fd = -1;
    g_zyg_pid = -1;
    pthread_mutex_unlock(&g_zyg_lock);
}

/* Ask the zygote to clone; returns the pid (and *pidfd) or -errno. */
static pid_t zygote_clone(const child_args *a, int ctl, int err_w, int sync_r, int sync2_r,
                          const cgroup_join *join, int *pidfd, bool *joined, shed_err *err)
{
    _cleanup_json_ json_t *req = encode_child(a);
    if (!req) return err_set(err, ENOMEM, "zygote request");
    int fds[5] = {ctl, err_w, sync_r, sync2_r, -1};
    int nfds = 4;
    if (join->clone_into) {
        fds[nfds++] = join->fds[0];
        json_object_set_new(req, "cg_into", json_true());
    }
    pthread_mutex_lock(&g_zyg_lock);
    if (g_zyg_fd < 0) {
        pthread_mutex_unlock(&g_zyg_lock);
        return err_msg(err, ESRCH, "the zygote is not running");
    }
    int rc = ctl_send(g_zyg_fd, req, fds, nfds, err);
    _cleanup_json_ json_t *rep = NULL;
    int got[CTL_MAX_FDS], n = 0;
    if (rc == 0) rc = ctl_recv(g_zyg_fd, &rep, got, &n, err);
    pthread_mutex_unlock(&g_zyg_lock);
    if (rc < 0) {
        err_wrap(err, "zygote");
        return rc;
    }
    json_t *pj = json_object_get(rep, "pid");
    if (!json_is_integer(pj) || n != 1) {
        for (int i = 0; i < n; i++) close(got[i]);
        int e = (int)json_integer_value(json_object_get(rep, "errno"));
        return err_set(err, e > 0 ? e : EPROTO, "zygote: %s",
                       json_string_value(json_object_get(rep, "error")) ?: "bad reply");
    }
    *pidfd = got[0];
    *joined = json_is_true(json_object_get(rep, "joined"));
    return (pid_t)json_integer_value(pj);
}

/* ---------- helpers in the parent ---------- */

static int write_file(const char *path, const char *data, shed_err *err)
{
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return err_set(err, errno, "open %s", path);
    size_t n = strlen(data);
    if (write(fd, data, n) != (ssize_t)n) return err_set(err, errno, "write %s", path);
    return 0;
}

static int mkdir_p(const char *path, mode_t mode)
{
    /* usually there already: one syscall, not one per component */
    if (mkdir(path, mode) == 0 || errno == EEXIST) return 0;
    if (errno != ENOENT) return -errno;
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *s = strchr(tmp + 1, '/'); s; s = strchr(s + 1, '/')) {
        *s = 0;
        if (mkdir(tmp, mode) < 0 && errno != EEXIST) return -errno;
        *s = '/';
    }
    if (mkdir(tmp, mode) < 0 && errno != EEXIST) return -errno;
    return 0;
}

char *sandbox_default_state_dir(void)
{
    char *s = NULL;
    if (geteuid() == 0) return strdup("/run/shed");
    const char *x = getenv("XDG_RUNTIME_DIR");
    if (x && *x == '/' && access(x, W_OK) == 0) {
        if (asprintf(&s, "%s/shed", x) < 0) return NULL;
        return s;
    }
    if (asprintf(&s, "/tmp/shed-%u", (unsigned)getuid()) < 0) return NULL;
    return s;
}

/* Start time of a process (field 22 of /proc/pid/stat), 0 if gone. */
static unsigned long long proc_start(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    if (n <= 0) return 0;
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return 0;
    unsigned long long v = 0;
    int field = 2;
    for (char *t = strtok(p + 1, " "); t; t = strtok(NULL, " "))
        if (++field == 22) {
            v = strtoull(t, NULL, 10);
            break;
        }
    return v;
}

static bool label_ok(const char *l)
{
    size_t n = strlen(l);
    if (n == 0 || n > 64) return false;
    for (const char *c = l; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '_' || *c == '-'))
            return false;
    return true;
}

static int cap_last(void)
{
    static int v = -1;
    if (v >= 0) return v;
    char buf[16] = {0};
    int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (read(fd, buf, sizeof(buf) - 1) < 0) buf[0] = 0;
        close(fd);
    }
    v = buf[0] ? atoi(buf) : 63;
    return v;
}

/* Give the slot's host uid the workspace (root only): the top directory,
 * and everything below it when the top had another owner (first use, or a
 * slot change). Never follows a symlink. */
static int chown_tree(int dfd, uid_t uid, gid_t gid, int depth)
{
    if (depth > 256) return -ELOOP;
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return -errno;
    }
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (fchownat(dirfd(d), e->d_name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0) rc = -errno;
        if (e->d_type == DT_DIR) {
            int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0) {
                int r2 = chown_tree(sub, uid, gid, depth + 1);
                if (r2 < 0) rc = r2;
            }
        }
    }
    closedir(d);
    return rc;
}

/* Slots are host-wide (not per state dir): a worker and a `shed run` with
 * different state dirs must still never share a host uid. */
#define SANDBOX_SLOT_DIR "/run/shed/slots"

static int claim_slot(int want, const char *owner_dir, char **path, shed_err *err)
{
    const char *dir = SANDBOX_SLOT_DIR;
    int mrc = mkdir_p(dir, 0700);
    if (mrc < 0) return err_set(err, -mrc, "mkdir %s", dir);
    unsigned start = want >= 0 ? (unsigned)want : (unsigned)(getpid() * 131u + atomic_fetch_add(&g_seq, 1) * 7919u);
    int tries = want >= 0 ? 1 : 4096;
    for (int i = 0; i < tries; i++) {
        unsigned slot = (start + (unsigned)i) % SANDBOX_SLOTS;
        char p[4200];
        snprintf(p, sizeof(p), "%s/%u", dir, slot);
        int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0) {
            if (errno == EEXIST) continue;
            return err_set(err, errno, "claim slot %s", p);
        }
        ssize_t w = write(fd, owner_dir, strlen(owner_dir));
        (void)w;
        close(fd);
        *path = strdup(p);
        return (int)slot;
    }
    if (want >= 0) return err_msg(err, EBUSY, "slot %d is in use (file %s/%d)", want, dir, want);
    return err_msg(err, EBUSY, "no free sandbox slot under %s", dir);
}

/* The bookkeeping is plain files written once, in place: no directory per
 * sandbox, no rename over an existing file and no O_TRUNC. On ext4 each of
 * those forces the file's block allocation (auto_da_alloc: a truncate to 0
 * or a rename over a file allocates at close, ~0.1 ms), and on hosts mounted
 * with -o discard, freeing that block at destroy is a synchronous discard
 * (0.3-2 ms); a small file written and removed within seconds never gets a
 * block. The state file is written through the fd of its O_EXCL create.
 * A write cut short (machine crash) leaves a file reconcile cannot parse:
 * removed after 60 s, as a create that died before writing any state. */
static int write_json_fd(int fd, const char *path, json_t *j, shed_err *err)
{
    _cleanup_free_ char *text = json_dumps(j, JSON_COMPACT);
    if (!text) return err_set(err, ENOMEM, "state");
    size_t n = strlen(text);
    if (pwrite(fd, text, n, 0) != (ssize_t)n) return err_set(err, errno ? errno : EIO, "write %s", path);
    return 0;
}

static int write_json_file(const char *path, int flags, json_t *j, shed_err *err)
{
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW | flags, 0600);
    if (fd < 0) return err_set(err, errno, "write %s", path);
    return write_json_fd(fd, path, j, err);
}

/* init's pid, once known: in the state file when that is written after the
 * clone (v1, no cgroup), else (v2) in <state>.init next to it (never rewritten). */
static int write_state(sandbox_t *sb, const char *root, shed_err *err)
{
    _cleanup_json_ json_t *st = json_pack("{s:i,s:I,s:i,s:I,s:i,s:s,s:s?}", "owner_pid",
                                          (int)getpid(), "owner_start",
                                          (json_int_t)proc_start(getpid()), "init_pid",
                                          (int)sb->init_pid, "init_start",
                                          (json_int_t)proc_start(sb->init_pid), "slot", sb->slot,
                                          "root", root, "slot_path", sb->slot_path);
    if (!st) return err_set(err, ENOMEM, "state");
    if (sb->cg) {
        json_t *d = json_array();
        for (int i = 0; i < sb->cg->ndirs; i++) json_array_append_new(d, json_string(sb->cg->dirs[i]));
        json_object_set_new(st, "cgroup", json_string(sb->cg->be->name));
        json_object_set_new(st, "cgroup_dirs", d);
    }
    /* once, through the fd of the O_EXCL create (see write_json_fd) */
    int rc = write_json_fd(sb->state_fd, sb->dir, st, err);
    close(steal_fd(&sb->state_fd));
    return rc;
}

static int write_init_state(sandbox_t *sb, shed_err *err)
{
    _cleanup_json_ json_t *st = json_pack("{s:i,s:I}", "init_pid", (int)sb->init_pid, "init_start",
                                          (json_int_t)proc_start(sb->init_pid));
    if (!st) return err_set(err, ENOMEM, "state");
    char path[4300];
    snprintf(path, sizeof(path), "%s.init", sb->dir);
    return write_json_file(path, O_CREAT | O_EXCL, st, err);
}

/* ---------- probe ---------- */

static int g_probed; /* 1 = ok for userns; guarded by g_lock */

int sandbox_probe(const sandbox_policy *pol, shed_err *err)
{
    pthread_mutex_lock(&g_lock);
    int done = g_probed;
    pthread_mutex_unlock(&g_lock);
    if (!done) {
        pid_t pid = fork();
        if (pid < 0) return err_set(err, errno, "probe: fork");
        if (pid == 0) {
            if (unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET) < 0) _exit(10);
            _exit(0);
        }
        int st = 0;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            return err_msg(err, EPERM,
                           "user namespaces are not available to this user (unshare(CLONE_NEWUSER) "
                           "failed); fix: sysctl kernel.unprivileged_userns_clone=1, "
                           "kernel.apparmor_restrict_unprivileged_userns=0 (Ubuntu >= 23.10) or an "
                           "AppArmor profile allowing userns for shed, or run shed as root; in a "
                           "container, allow clone(CLONE_NEWUSER) in its seccomp profile");
        char buf[4096];
        int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
        if (fd >= 0) close(fd);
        buf[n > 0 ? n : 0] = 0;
        if (pol && !(pol->waived & SANDBOX_WAIVE_SECCOMP) && !strstr(buf, "Seccomp:"))
            return err_msg(err, ENOTSUP,
                           "seccomp is not available in this kernel (CONFIG_SECCOMP_FILTER); fix: "
                           "a kernel with seccomp filters, or waive \"seccomp\" in the policy");
        pthread_mutex_lock(&g_lock);
        g_probed = 1;
        pthread_mutex_unlock(&g_lock);
    }
    if (pol && !(pol->waived & SANDBOX_WAIVE_CGROUP)) {
        const cgroup_backend *be;
        _cleanup_free_ char *base = NULL;
        int rc = cgroup_detect(&be, &base, err);
        if (rc < 0) return rc;
    }
    return 0;
}

/* ---------- create ---------- */

static int cgroup_error(const cgroup_backend *be, int rc, shed_err *err)
{
    if (rc == -EACCES || rc == -EPERM || rc == -EROFS)
        err_wrap(err, "cgroup (%s) not writable: fix: run shed as root, delegate a cgroup "
                      "to this user, or waive \"cgroup\" in the policy to use the "
                      "rlimit fallback",
                 be->name);
    return rc;
}

static void sandbox_free(sandbox_t *sb)
{
    if (!sb) return;
    if (sb->ctl_fd >= 0) close(sb->ctl_fd);
    if (sb->pidfd >= 0) close(sb->pidfd);
    if (sb->err_fd >= 0) close(sb->err_fd);
    if (sb->state_fd >= 0) close(sb->state_fd);
    for (int i = 0; i < 3; i++)
        if (sb->listeners[i] >= 0) close(sb->listeners[i]);
    free(sb->label);
    free(sb->dir);
    free(sb->slot_path);
    free(sb->workspace);
    free(sb);
}

static void cleanup_sandboxp(sandbox_t **sb)
{
    if (*sb) sandbox_destroy(*sb, 0, NULL);
}
static void cleanup_planp(plan *p)
{
    plan_free(p);
}

/* opts->init_in_place: may this process's own image become init? Only
 * when it is single-threaded now (a raw clone3 of a multithreaded process
 * can inherit a lock another thread holds, e.g. malloc's; no thread can
 * start between this check and the clone, we are the only one) and the
 * only copies of its argv and environment are the strings the kernel put
 * on the stack at exec, [arg_start, env_end) (every environ entry inside
 * that block: no setenv, whose strings live on the heap) plus AT_EXECFN;
 * the loader keeps copies of LD_* and GLIBC_TUNABLES values, glibc of
 * MALLOC_* and TZ ones: with any of those set, no. */
static bool in_place_ok(child_args *a)
{
#if defined(__SANITIZE_ADDRESS__)
    /* the sanitizer runtime keeps its own copy of /proc/self/environ
     * (sanitizer_common's GetEnv): an ASan build always execs init */
    (void)a;
    return false;
#endif
    char buf[2048];
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) return false;
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return false;
    /* fields after the comm: 3 state ... 20 num_threads ... 48 arg_start,
     * 49 arg_end, 50 env_start, 51 env_end */
    unsigned long long f[52] = {0};
    int i = 2;
    char *save = NULL;
    for (char *t = strtok_r(p + 1, " ", &save); t && i < 51; t = strtok_r(NULL, " ", &save))
        f[++i] = strtoull(t, NULL, 10);
    if (i < 51 || f[20] != 1 || !f[48] || f[51] <= f[48] || f[49] < f[48] + 10) return false;
    for (char **e = environ; e && *e; e++) {
        uintptr_t v = (uintptr_t)*e;
        if (v < f[50] || v >= f[51]) return false;
        if (!strncmp(*e, "LD_", 3) || !strncmp(*e, "GLIBC_", 6) || !strncmp(*e, "MALLOC_", 7))
            return false;
        /* glibc's tzset_internal strdup()s TZ's value on the first
         * gmtime_r/localtime (clock.c formats every log line's time: an
         * unprivileged caller's waived-layer warning came before the clone
         * and left TZ's value on the heap, escape3_inplace.sh) */
        if (!strncmp(*e, "TZ=", 3)) return false;
    }
#if defined(__x86_64__)
    /* The top of the stack: the kernel copies AT_EXECFN's string last, to
     * end sizeof(void *) below it (fs/exec.c, bprm->p = vm_end - 8). */
    const char *fn = (const char *)getauxval(AT_EXECFN);
    if (!fn || (uintptr_t)fn < f[51]) return false;
    uintptr_t hi = (uintptr_t)fn + strlen(fn) + 1 + sizeof(void *);
    if (hi & 4095) return false;
    /* Below, down to the stack's limit: the kernel keeps other mappings out
     * of that range (mmap_base lies under it, mm/util.c mmap_base) */
    struct rlimit rl;
    uint64_t span = 64ull << 20;
    if (getrlimit(RLIMIT_STACK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < span)
        span = rl.rlim_cur;
    a->arg_start = (uintptr_t)f[48];
    memcpy(a->mmf, f, sizeof(a->mmf));
    a->stack_hi = hi;
    a->stack_lo = hi - span;
    a->no_exec = true;
    return true;
#else
    return false;
#endif
}

int sandbox_create_start(const sandbox_policy *pol, const sandbox_opts *opts, sandbox_t **out,
                         shed_err *err)
{
    static const sandbox_opts no_opts = {.slot = -1};
    if (!opts) opts = &no_opts;
    int rc;
    bool privileged = geteuid() == 0;
    static int trace = -1;
    if (trace < 0) trace = getenv("SHED_SANDBOX_TRACE") != NULL;
    int64_t tr[12] = {clock_mono_ns()};
    int ntr = 1;
#define TRACE() (tr[ntr < 12 ? ntr++ : 11] = clock_mono_ns())
    __attribute__((cleanup(cleanup_sandboxp))) sandbox_t *sb = calloc(1, sizeof(*sb));
    if (!sb) return err_set(err, ENOMEM, "sandbox");
    sb->ctl_fd = sb->pidfd = sb->err_fd = sb->state_fd = -1;
    sb->listeners[0] = sb->listeners[1] = sb->listeners[2] = -1;
    sb->slot = -1;

    char label[80];
    if (opts->label) {
        if (!label_ok(opts->label))
            return err_msg(err, EINVAL, "sandbox label \"%s\": use 1-64 of [A-Za-z0-9_-]",
                           opts->label);
        snprintf(label, sizeof(label), "%s", opts->label);
    } else {
        unsigned char rnd[4];
        id_random(rnd, sizeof(rnd));
        snprintf(label, sizeof(label), "sb-%d-%u-%02x%02x%02x%02x", (int)getpid(),
                 atomic_fetch_add(&g_seq, 1), rnd[0], rnd[1], rnd[2], rnd[3]);
    }
    if (!(sb->label = strdup(label))) return err_set(err, ENOMEM, "sandbox");
    _cleanup_free_ char *state_dir = opts->state_dir ? strdup(opts->state_dir) : sandbox_default_state_dir();
    if (!state_dir) return err_set(err, ENOMEM, "sandbox");
    char path[4200];
    snprintf(path, sizeof(path), "%s/sandboxes", state_dir);
    if ((rc = mkdir_p(path, 0711)) < 0) return err_set(err, -rc, "create state dir %s", path);
    if (asprintf(&sb->dir, "%s/sandboxes/%s", state_dir, label) < 0)
        return err_set(err, ENOMEM, "sandbox");
    int sfd = open(sb->dir, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (sfd < 0) {
        int e = errno;
        free(steal_pointer(&sb->dir));
        return err_set(err, e, "create %s/%s (is label \"%s\" in use?)", path, label, label);
    }
    sb->state_fd = sfd; /* written once, below (write_state) */
    /* The new root's mount point: one empty directory shared by every
     * sandbox (each mounts its tmpfs there in its own mount namespace). */
    char root[4300];
    snprintf(root, sizeof(root), "%s/mnt", state_dir);
    if (mkdir(root, 0755) < 0 && errno != EEXIST) return err_set(err, errno, "mkdir %s", root);

    /* host ids */
    gid_t host_gid;
    if (privileged) {
        rc = claim_slot(opts->slot, sb->dir, &sb->slot_path, err);
        if (rc < 0) return rc;
        sb->slot = rc;
        sb->host_uid = SANDBOX_HOST_ID_BASE + (unsigned)sb->slot;
        host_gid = SANDBOX_HOST_ID_BASE + (unsigned)sb->slot;
    } else {
        sb->host_uid = getuid();
        host_gid = getgid();
    }

    TRACE(); /* 1: state dir, slot */
    create_cfg cfg = {.pol = pol, .opts = opts};
    cfg.workdir = opts->workdir ? opts->workdir : "/workspace";
    cfg.hostname = opts->hostname ? opts->hostname : label;
    if (cfg.workdir[0] != '/' || strstr(cfg.workdir, "..") || !strcmp(cfg.workdir, "/"))
        return err_msg(err, EINVAL, "workdir \"%s\" must be an absolute path below /", cfg.workdir);
    cfg.memory_max = opts->memory_max ? opts->memory_max : pol->memory_max;
    cfg.pids_max = opts->pids_max ? opts->pids_max : pol->pids_max;
    int64_t lifetime = opts->timeout_ms ? opts->timeout_ms : pol->timeout_ms;
    sb->deadline_ms = lifetime > 0 ? clock_mono_ms() + lifetime : 0;

    /* cgroup: v2 makes the leaf now (the child is cloned into it); v1 only
     * names the leaves now and makes them while the child mounts */
    cgroup_limits lim = {cfg.memory_max, cfg.pids_max, pol->cpus};
    bool cg_late = false;
    if (!(pol->waived & SANDBOX_WAIVE_CGROUP)) {
        const cgroup_backend *be;
        _cleanup_free_ char *base = NULL;
        if ((rc = cgroup_detect(&be, &base, err)) < 0) return rc;
        cg_late = be->plan != NULL;
        rc = cg_late ? be->plan(base, label, &sb->cg, err)
                     : be->create(base, label, &lim, &sb->cg, err);
        if (rc < 0) return cgroup_error(be, rc, err);
        cfg.cgroup_on = true;
        /* v2 made the leaf: recorded now, so that reconcile finds it even if
         * we die before the clone (init's pid goes to <state>.init). v1 makes
         * its leaves after the clone: the state, init's pid included, is
         * written once then, before they exist. */
        if (!cg_late && (rc = write_state(sb, root, err)) < 0) return rc;
    } else {
        slog(LOG_WARN, label, NULL,
             "sandbox %s: layer \"cgroup\" waived by the policy: memory/pids limits fall back to "
             "RLIMIT_AS/RLIMIT_NPROC of each command, no cpu limit",
             label);
    }
    if (pol->waived & SANDBOX_WAIVE_SECCOMP)
        slog(LOG_WARN, label, NULL, "sandbox %s: layer \"seccomp\" waived by the policy", label);

    TRACE(); /* 2: cgroup */
    /* workspace */
    _cleanup_free_ char *ws = NULL;
    if (opts->workspace) {
        ws = realpath(opts->workspace, NULL);
        struct stat st;
        if (!ws || stat(ws, &st) < 0) return err_set(err, errno, "workspace %s", opts->workspace);
        if (!S_ISDIR(st.st_mode)) return err_msg(err, ENOTDIR, "workspace %s: not a directory", ws);
        if (privileged && (st.st_uid != sb->host_uid || st.st_gid != host_gid)) {
            if (chown(ws, sb->host_uid, host_gid) < 0)
                return err_set(err, errno, "chown workspace %s to uid %u", ws, sb->host_uid);
            int dfd = open(ws, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (dfd >= 0 && (rc = chown_tree(dfd, sb->host_uid, host_gid, 0)) < 0)
                return err_set(err, -rc, "chown the contents of workspace %s", ws);
            chmod(ws, 0700);
        }
        if (!(sb->workspace = strdup(ws))) return err_set(err, ENOMEM, "sandbox");
    }

    __attribute__((cleanup(cleanup_planp))) plan pl = {0};
    if (!(pl.root = strdup(root))) return err_set(err, ENOMEM, "sandbox");
    if ((rc = build_plan(&pl, &cfg, ws, err)) < 0) return rc;

    TRACE(); /* 3: plan */
    /* channels */
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return err_set(err, errno, "socketpair for the control channel");
    sb->ctl_fd = sv[0];
    _cleanup_close_ int child_ctl = sv[1];
    /* release "pipes" are sockets: send(MSG_NOSIGNAL) to a child that
     * already died must be EPIPE, not SIGPIPE in the creator */
    int syncp[2], errp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, syncp) < 0)
        return err_set(err, errno, "socketpair");
    _cleanup_close_ int sync_r = syncp[0], sync_w = syncp[1];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, syncp) < 0)
        return err_set(err, errno, "socketpair");
    _cleanup_close_ int sync2_r = syncp[0], sync2_w = syncp[1];
    if (pipe2(errp, O_CLOEXEC) < 0) return err_set(err, errno, "pipe");
    _cleanup_close_ int err_r = errp[0], err_w = errp[1];

    struct sock_fprog prog = {.len = pol->bpf_len, .filter = pol->bpf};
    child_args a = {.pl = &pl, .cfg = &cfg, .privileged = privileged, .cap_last = cap_last(),
                    .prog = pol->bpf ? &prog : NULL};
    uint64_t fsz = pol->fsize_max;
    if (!ws && pol->workspace_max && pol->workspace_max < fsz) fsz = pol->workspace_max;
    a.nofile = (struct rlimit){pol->nofile, pol->nofile};
    a.fsize = (struct rlimit){fsz ? fsz : RLIM_INFINITY, fsz ? fsz : RLIM_INFINITY};
    if (!cfg.cgroup_on && cfg.pids_max) {
        a.nproc_on = true;
        a.nproc = (struct rlimit){cfg.pids_max, cfg.pids_max};
    }

    /* the child joins its cgroup by itself (cgroup.h, cgroup_join): v2 now
     * (CLONE_INTO_CGROUP), v1 with its second release */
    __attribute__((cleanup(cgroup_join_close))) cgroup_join join = {.n = 0};
    if (sb->cg && !cg_late && (rc = sb->cg->be->open_join(sb->cg, &join, err)) < 0) return rc;
    if (cg_late) a.ncg = sb->cg->ndirs;
    bool joined = true;
    int pidfd = -1;
    pid_t pid;
    pthread_mutex_lock(&g_zyg_lock);
    bool zyg = g_zyg_fd >= 0;
    pthread_mutex_unlock(&g_zyg_lock);
    if (zyg) {
        pid = zygote_clone(&a, child_ctl, err_w, sync_r, sync2_r, &join, &pidfd, &joined, err);
        if (pid >= 0) {
            sb->via_zygote = true;
            goto cloned;
        }
        if (pid != -EPIPE && pid != -ECONNRESET) return pid;
        /* the zygote is gone (killed?): forget it, clone ourselves */
        log_warn("sandbox: the zygote is gone (%s); cloning directly", err ? err->msg : "");
        sandbox_zygote_stop();
    }
    int efd = -1;
    if (!(opts->init_in_place && in_place_ok(&a)) && (efd = exe_fd(err)) < 0) return efd;
    pid = sandbox_clone(join.clone_into ? join.fds[0] : -1, &pidfd, &joined);
    if (pid < 0) {
        int e = errno;
        if (e == EPERM || e == ENOSPC || e == EACCES || e == EINVAL) {
            shed_err pe;
            if (sandbox_probe(pol, &pe) < 0) return err_msg(err, pe.code, "%s", pe.msg);
        }
        return err_set(err, e, "clone3 into new namespaces (user, mount, pid, ipc, uts, net)");
    }
    if (pid == 0) {
        a.sync_fd = move_fd_high(sync_r);
        a.sync2_fd = move_fd_high(sync2_r);
        a.err_fd = move_fd_high(err_w);
        a.ctl_fd = move_fd_high(child_ctl);
        a.exe_fd = a.no_exec ? -1 : move_fd_high(efd);
        if (a.sync_fd < 0 || a.sync2_fd < 0 || a.err_fd < 0 || a.ctl_fd < 0 ||
            (a.exe_fd < 0 && !a.no_exec))
            _exit(125);
        child_main(&a);
    }
cloned:
    TRACE(); /* 4: clone */
    sb->init_pid = pid;
    sb->pidfd = pidfd;
    close(steal_fd(&child_ctl));
    close(steal_fd(&err_w));
    close(steal_fd(&sync_r));
    close(steal_fd(&sync2_r));

    /* id maps: the sandbox user 1000 is this slot's host uid (root) or the caller */
    char m[128];
    snprintf(path, sizeof(path), "/proc/%d/setgroups", (int)pid);
    if (!privileged && (rc = write_file(path, "deny", err)) < 0) return rc;
    snprintf(m, sizeof(m), "%d %u 1\n", SANDBOX_UID, (unsigned)sb->host_uid);
    snprintf(path, sizeof(path), "/proc/%d/uid_map", (int)pid);
    if ((rc = write_file(path, m, err)) < 0) return rc;
    snprintf(m, sizeof(m), "%d %u 1\n", SANDBOX_GID, (unsigned)host_gid);
    snprintf(path, sizeof(path), "/proc/%d/gid_map", (int)pid);
    if ((rc = write_file(path, m, err)) < 0) return rc;
    TRACE(); /* 5: maps */
    if (send(sync_w, "x", 1, MSG_NOSIGNAL) != 1) goto child_failed;
    close(steal_fd(&sync_w));
    cgroup_join_close(&join);
    /* v1 and no cgroup: the state, once, with init's pid (while the child
     * mounts; if we die before this, the child dies with us: EOF on its
     * release socket, or PR_SET_PDEATHSIG) */
    bool state_early = cfg.cgroup_on && !cg_late;
    if (!state_early && (rc = write_state(sb, root, err)) < 0) return rc;
    if (cg_late) {
        /* v1: make the leaves while the child mounts, then hand it the
         * "tasks" files with its release */
        if ((rc = sb->cg->be->make(sb->cg, &lim, err)) < 0) return cgroup_error(sb->cg->be, rc, err);
        if ((rc = sb->cg->be->open_join(sb->cg, &join, err)) < 0) return rc;
    }
    /* the fallback: the creator moves the child (v2 without CLONE_INTO_CGROUP) */
    if (sb->cg && !joined && (rc = sb->cg->be->attach(sb->cg, pid, err)) < 0) return rc;
    TRACE(); /* 6: cgroup made and attached */
    if (send_release(sync2_w, join.fds, join.n) < 0) goto child_failed;
    close(steal_fd(&sync2_w));
    cgroup_join_close(&join);
    /* v2: init's pid for reconcile, next to the state written before the clone */
    if (state_early && (rc = write_init_state(sb, err)) < 0) return rc;
child_failed:;
    TRACE(); /* 7: released */
    /* The configuration waits in the socket until init reads it. */
    _cleanup_json_ json_t *conf = json_pack(
        "{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:b}", "type", "config", "workdir", cfg.workdir, "label",
        label, "command_timeout_ms", (json_int_t)pol->command_timeout_ms, "disk_max",
        (json_int_t)(ws ? pol->workspace_max : 0), "fallback_as",
        (json_int_t)(cfg.cgroup_on ? 0 : cfg.memory_max), "fallback_nproc",
        (json_int_t)(cfg.cgroup_on ? 0 : cfg.pids_max), "log_debug", log_level() >= LOG_DEBUG);
    json_t *env = json_array();
    json_object_set_new(conf, "env", env);
    json_object_set_new(conf, "files_max", json_integer((json_int_t)pol->workspace_files_max));
    for (char **e = pol->env; e && *e; e++) json_array_append_new(env, json_string(*e));
    for (char *const *e = opts->env; e && *e; e++) json_array_append_new(env, json_string(*e));
    json_t *roots = json_array(), *ro_roots = json_array();
    json_object_set_new(conf, "roots", roots);
    json_object_set_new(conf, "ro_roots", ro_roots);
    for (int rw = 0; rw < 2; rw++)
        for (const char *const *l = rw ? opts->rw_binds : opts->ro_binds; l && *l; l++) {
            const char *in = strchr(*l, ':') + 1; /* validated by build_plan */
            json_array_append_new(roots, json_string(in));
            if (!rw) json_array_append_new(ro_roots, json_string(in));
        }
    /* a child that died already closed its end: EPIPE here, the reason is in
     * the error pipe, which finish reads */
    if (ctl_send(sb->ctl_fd, conf, NULL, 0, NULL) < 0) {}
    sb->err_fd = steal_fd(&err_r);
    if (trace) {
        static const char *const N[] = {"", "state", "cgroup", "plan", "clone", "maps", "attach", "released"};
        char line[512];
        int o = 0;
        for (int i = 1; i < ntr && i < 8; i++)
            o += snprintf(line + o, sizeof(line) - o, " %s=%.2f", N[i], (tr[i] - tr[i - 1]) / 1e6);
        fprintf(stderr, "sandbox_create_start trace (ms):%s total=%.2f\n", line,
                (tr[ntr - 1] - tr[0]) / 1e6);
    }
    sb->started_ns = tr[0];
    *out = steal_pointer(&sb);
    return 0;
}

/* The child's report, if any: 1 = none yet, 0 = exec'd (EOF), <0 = its error. */
/* The child resolves the mount point and the workspace as the sandbox's
 * host uid, so every directory above them must be searchable by others. On
 * EACCES, name the first one that is not, and the fix (errors only: the
 * check costs nothing on the hot path). */
static void untraversable_hint(const sandbox_t *sb, char *out, size_t n)
{
    const char *paths[] = {sb->dir, sb->workspace};
    out[0] = '\0';
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        if (!paths[i] || paths[i][0] != '/') continue;
        char buf[PATH_MAX];
        snprintf(buf, sizeof(buf), "%s", paths[i]);
        for (char *p = strchr(buf + 1, '/');; p = strchr(p + 1, '/')) {
            if (p) *p = '\0';
            struct stat st;
            if (stat(buf, &st) == 0 && S_ISDIR(st.st_mode) && !(st.st_mode & S_IXOTH)) {
                snprintf(out, n,
                         "; %s is mode %04o, which the sandbox user (host uid %u) cannot "
                         "traverse: chmod o+x %s, or choose a directory under a "
                         "world-traversable path",
                         buf, (unsigned)(st.st_mode & 07777), (unsigned)sb->host_uid, buf);
                return;
            }
            if (!p) break;
            *p = '/';
        }
    }
}

static int read_setup_error(sandbox_t *sb, int timeout_ms, shed_err *err)
{
    if (sb->err_fd < 0) return 0;
    struct pollfd ep = {.fd = sb->err_fd, .events = POLLIN};
    int r;
    do
        r = poll(&ep, 1, timeout_ms);
    while (r < 0 && errno == EINTR);
    if (r == 0) return 1;
    struct child_err ce;
    ssize_t n;
    do
        n = read(sb->err_fd, &ce, sizeof(ce));
    while (n < 0 && errno == EINTR);
    close(sb->err_fd);
    sb->err_fd = -1;
    if (n == (ssize_t)sizeof(ce)) {
        ce.step[sizeof(ce.step) - 1] = 0;
        char hint[PATH_MAX + 200] = "";
        if (ce.err == EACCES) untraversable_hint(sb, hint, sizeof(hint));
        if (hint[0])
            return err_msg(err, ce.err, "sandbox setup: %s: %s%s", ce.step, strerror(ce.err), hint);
        return err_set(err, ce.err ? ce.err : EIO, "sandbox setup: %s", ce.step);
    }
    if (n != 0) return err_msg(err, EIO, "sandbox setup: the child died before exec");
    return 0;
}

int sandbox_create_finish(sandbox_t *sb, shed_err *err)
{
    if (sb->ready) return 0;
    int rc = read_setup_error(sb, 0, err);
    if (rc < 0) return rc;
    struct pollfd pf = {.fd = sb->ctl_fd, .events = POLLIN};
    int pr;
    do
        pr = poll(&pf, 1, 0);
    while (pr < 0 && errno == EINTR);
    if (pr == 0) return -EAGAIN;
    _cleanup_json_ json_t *ready = NULL;
    int fds[CTL_MAX_FDS], nfds = 0;
    if ((rc = ctl_recv(sb->ctl_fd, &ready, fds, &nfds, err)) < 0) {
        /* the child or init died: the error pipe says why, if it was setup */
        int r2 = read_setup_error(sb, 2000, err);
        if (r2 < 0) return r2;
        err_wrap(err, "sandbox init exited during startup (see its message above)");
        return rc;
    }
    const char *type = json_string_value(json_object_get(ready, "type"));
    if (!type || strcmp(type, "ready") || nfds != 3) {
        for (int i = 0; i < nfds; i++) close(fds[i]);
        const char *msg = json_string_value(json_object_get(ready, "message"));
        return err_msg(err, EPROTO, "sandbox init: %s", msg ? msg : "unexpected first message");
    }
    for (int i = 0; i < 3; i++) sb->listeners[i] = fds[i];
    if (sb->err_fd >= 0) {
        close(sb->err_fd);
        sb->err_fd = -1;
    }
    sb->ready = true;
    if (getenv("SHED_SANDBOX_TRACE"))
        fprintf(stderr, "sandbox_create ready after %.2f ms\n",
                (clock_mono_ns() - sb->started_ns) / 1e6);
    slog(LOG_DEBUG, sb->label, NULL, "sandbox %s: init pid %d, host uid %u, cgroup %s", sb->label,
         (int)sb->init_pid, (unsigned)sb->host_uid, sb->cg ? sb->cg->be->name : "none");
    return 0;
}

int sandbox_create_wait(sandbox_t *sb, shed_err *err)
{
    int rc;
    int64_t end = clock_mono_ms() + 20000;
    for (;;) {
        rc = sandbox_create_finish(sb, err);
        if (rc != -EAGAIN) break;
        int64_t left = end - clock_mono_ms();
        if (left <= 0) {
            rc = err_msg(err, ETIMEDOUT, "sandbox init did not report ready within 20 s");
            break;
        }
        struct pollfd p[2] = {{.fd = sb->ctl_fd, .events = POLLIN},
                              {.fd = sb->err_fd, .events = POLLIN}};
        int np = sb->err_fd >= 0 ? 2 : 1;
        if (poll(p, np, (int)left) < 0 && errno != EINTR) {
            rc = err_set(err, errno, "poll");
            break;
        }
        /* exec'd: the error pipe is at EOF; stop watching it */
        if (np == 2 && (p[1].revents & (POLLIN | POLLHUP)) && !(p[0].revents & POLLIN)) {
            int r2 = read_setup_error(sb, 0, err);
            if (r2 < 0) {
                rc = r2;
                break;
            }
        }
    }
    return rc;
}

int sandbox_create(const sandbox_policy *pol, const sandbox_opts *opts, sandbox_t **out,
                   shed_err *err)
{
    sandbox_t *sb = NULL;
    int rc = sandbox_create_start(pol, opts, &sb, err);
    if (rc < 0) return rc;
    if ((rc = sandbox_create_wait(sb, err)) < 0) {
        sandbox_destroy(sb, 0, NULL);
        return rc;
    }
    *out = sb;
    return 0;
}

/* ---------- accessors ---------- */

int sandbox_ctl_fd(const sandbox_t *sb) { return sb->ctl_fd; }
pid_t sandbox_init_pid(const sandbox_t *sb) { return sb->init_pid; }
uid_t sandbox_host_uid(const sandbox_t *sb) { return sb->host_uid; }
const char *sandbox_workspace(const sandbox_t *sb) { return sb->workspace; }
const char *sandbox_label(const sandbox_t *sb) { return sb->label; }
int64_t sandbox_deadline_ms(const sandbox_t *sb) { return sb->deadline_ms; }
int64_t sandbox_oom_kills(const sandbox_t *sb) { return sb->cg ? sb->cg->be->oom_kills(sb->cg) : 0; }
int64_t sandbox_pids_denied(const sandbox_t *sb) { return sb->cg ? sb->cg->be->pids_denied(sb->cg) : 0; }
const char *sandbox_cgroup_mode(const sandbox_t *sb)
{
    return sb->cg ? sb->cg->be->name : "none (waived: rlimit fallback)";
}
int64_t sandbox_policy_command_timeout_ms(const sandbox_policy *p) { return p->command_timeout_ms; }

void sandbox_take_listeners(sandbox_t *sb, int *http_fd, int *socks_fd, int *dns_fd)
{
    *http_fd = steal_fd(&sb->listeners[0]);
    *socks_fd = steal_fd(&sb->listeners[1]);
    *dns_fd = steal_fd(&sb->listeners[2]);
}

/* ---------- destroy ---------- */

static bool pid_alive(pid_t pid, int pidfd)
{
    if (pidfd >= 0) {
        struct pollfd p = {.fd = pidfd, .events = POLLIN};
        return poll(&p, 1, 0) == 0;
    }
    return kill(pid, 0) == 0;
}

void sandbox_kill(sandbox_t *sb)
{
    if (!sb || sb->init_pid <= 0) return;
    if (sb->pidfd >= 0)
        syscall(SYS_pidfd_send_signal, sb->pidfd, SIGKILL, NULL, 0);
    else
        kill(sb->init_pid, SIGKILL);
}

int sandbox_destroy(sandbox_t *sb, int grace_ms, shed_err *err)
{
    if (!sb) return 0;
    int rc = 0;
    shed_err e2;
    int64_t t0 = clock_mono_ns(), t1 = t0, t2 = t0;
    /* init seen gone: the kernel killed and reaped every other process of
     * its pid namespace before (zap_pid_ns_processes), each of them past
     * cgroup_exit, so nothing is left in the cgroup to kill */
    bool init_gone = false;
    if (sb->init_pid > 0) {
        if (grace_ms > 0 && sb->ctl_fd >= 0 && pid_alive(sb->init_pid, sb->pidfd)) {
            /* 1. SIGTERM every process but init, done by init (kill(-1)). */
            _cleanup_json_ json_t *m = json_pack("{s:s}", "type", "terminate");
            if (ctl_send(sb->ctl_fd, m, NULL, 0, NULL) == 0) {
                int64_t end = clock_mono_ms() + grace_ms;
                while (clock_mono_ms() < end) {
                    char buf[64];
                    /* only init left? (cgroup.procs holds one line) */
                    if (sb->cg && cgroup_read(sb->cg->dirs[0], "cgroup.procs", buf, sizeof(buf)) > 0 &&
                        strchr(buf, '\n') == buf + strlen(buf) - 1)
                        break;
                    if (!pid_alive(sb->init_pid, sb->pidfd)) break;
                    struct timespec ts = {0, 10 * 1000 * 1000};
                    nanosleep(&ts, NULL);
                }
            }
        }
        /* 2. kill init: the kernel kills the rest of the pid namespace
         * atomically (no fork can race it); init is reaped only after all. */
        sandbox_kill(sb);
        if (sb->via_zygote) {
            /* not our child: the pidfd turns readable when init (and so the
             * whole pid namespace) is gone; the zygote reaps it */
            struct pollfd p = {.fd = sb->pidfd, .events = POLLIN};
            int r;
            while ((r = poll(&p, 1, 10000)) < 0 && errno == EINTR) {}
            init_gone = r > 0;
        } else {
            pid_t w;
            while ((w = waitpid(sb->init_pid, NULL, 0)) < 0 && errno == EINTR) {}
            init_gone = w == sb->init_pid;
        }
    }
    t1 = clock_mono_ns();
    /* 3. cgroup kill (v2 cgroup.kill, v1 freeze/kill/thaw) for anything
     * still charged to the cgroup (reconcile of a sandbox whose init is gone). */
    if (sb->cg && !init_gone) {
        char buf[64];
        int left = 0;
        for (int i = 0; i < sb->cg->ndirs; i++)
            if (cgroup_read(sb->cg->dirs[i], "cgroup.procs", buf, sizeof(buf)) > 0) left = 1;
        if (left && sb->cg->be->kill_all(sb->cg, &e2) < 0 && !rc) {
            rc = -e2.code;
            if (err) *err = e2;
        }
    }
    if (sb->cg) {
        if (cgroup_destroy(steal_pointer(&sb->cg), &e2) < 0 && !rc) {
            rc = -e2.code;
            if (err) *err = e2;
        }
    }
    t2 = clock_mono_ns();
    /* the slot first: a sweep must never see a slot whose state dir is gone
     * while it is still ours (it would free it under a new claimant) */
    if (sb->slot_path) unlink(sb->slot_path);
    if (sb->dir && sb->dir_is_dir) {
        char p[4300];
        static const char *const F[] = {"state.json", "state.json.tmp", "init.json",
                                        "init.json.tmp", "root"};
        for (size_t i = 0; i < ARRAY_SIZE(F); i++) {
            snprintf(p, sizeof(p), "%s/%s", sb->dir, F[i]);
            if (unlink(p) < 0 && errno == EISDIR) rmdir(p);
        }
        if (rmdir(sb->dir) < 0 && errno != ENOENT && !rc)
            rc = err_set(err, errno, "remove sandbox state %s", sb->dir);
    } else if (sb->dir) {
        char p[4300];
        snprintf(p, sizeof(p), "%s.init", sb->dir);
        unlink(p);
        if (unlink(sb->dir) < 0 && errno != ENOENT && !rc)
            rc = err_set(err, errno, "remove sandbox state %s", sb->dir);
    }
    if (getenv("SHED_SANDBOX_TRACE"))
        fprintf(stderr, "sandbox_destroy trace (ms): kill=%.2f cgroup=%.2f state=%.2f\n",
                (t1 - t0) / 1e6, (t2 - t1) / 1e6, (clock_mono_ns() - t2) / 1e6);
    sandbox_free(sb);
    return rc;
}

/* ---------- reconcile ---------- */

/* Slot files name their sandbox's state dir: without it, the slot is stale
 * (its creator's state dir was removed whole). A stale slot only shrinks
 * the pool (claim_slot skips taken slots), so the sweep, which reads every
 * slot file, runs at most once a minute host-wide (every `shed run`
 * reconciles; a host with a few hundred slots paid ~1 ms each time). */
static void sweep_slots(void)
{
    const char *marker = SANDBOX_SLOT_DIR "/.swept";
    struct stat ms;
    if (stat(marker, &ms) == 0 && time(NULL) - ms.st_mtime < 60 && ms.st_mtime <= time(NULL))
        return;
    int mfd = open(marker, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (mfd < 0) return; /* no slot dir yet: nothing to sweep */
    futimens(mfd, NULL);
    close(mfd);
    DIR *sd = opendir(SANDBOX_SLOT_DIR);
    struct dirent *e;
    while (sd && (e = readdir(sd))) {
        if (e->d_name[0] == '.') continue;
        char owner[4200] = "";
        int fd = openat(dirfd(sd), e->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) continue;
        ssize_t n = read(fd, owner, sizeof(owner) - 1);
        close(fd);
        owner[n > 0 ? n : 0] = 0;
        struct stat st;
        if (owner[0] == '/' && stat(owner, &st) < 0 && errno == ENOENT)
            unlinkat(dirfd(sd), e->d_name, 0);
    }
    if (sd) closedir(sd);
}

int sandbox_reconcile(const char *state_dir, shed_err *err)
{
    _cleanup_free_ char *sd = state_dir ? strdup(state_dir) : sandbox_default_state_dir();
    if (!sd) return err_set(err, ENOMEM, "reconcile");
    char dir[4200];
    snprintf(dir, sizeof(dir), "%s/sandboxes", sd);
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? 0 : err_set(err, errno, "open %s", dir);
    int swept = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || !label_ok(e->d_name)) continue;
        char sp[4400], ip_path[4400];
        struct stat est;
        snprintf(sp, sizeof(sp), "%s/%s", dir, e->d_name);
        if (lstat(sp, &est) < 0) continue;
        bool is_dir = S_ISDIR(est.st_mode); /* the layout before the state files */
        if (!is_dir && !S_ISREG(est.st_mode)) continue;
        if (is_dir) {
            snprintf(ip_path, sizeof(ip_path), "%s/init.json", sp);
            snprintf(sp, sizeof(sp), "%s/%s/state.json", dir, e->d_name);
        } else {
            snprintf(ip_path, sizeof(ip_path), "%s.init", sp);
        }
        json_error_t je;
        _cleanup_json_ json_t *st = json_load_file(sp, 0, &je);
        if (!st) {
            /* a create that died before writing its state (or mid-write) */
            if (time(NULL) - est.st_mtime > 60) {
                sandbox_t *sb = calloc(1, sizeof(*sb));
                if (!sb) break;
                sb->ctl_fd = sb->pidfd = sb->err_fd = sb->state_fd = -1;
                sb->listeners[0] = sb->listeners[1] = sb->listeners[2] = -1;
                sb->dir_is_dir = is_dir;
                if (asprintf(&sb->dir, "%s/%s", dir, e->d_name) < 0) sb->dir = NULL;
                if (sandbox_destroy(sb, 0, NULL) == 0) swept++;
            }
            continue;
        }
        pid_t owner = (pid_t)json_integer_value(json_object_get(st, "owner_pid"));
        unsigned long long ostart = (unsigned long long)json_integer_value(json_object_get(st, "owner_start"));
        if (owner > 0 && proc_start(owner) == ostart && ostart) continue; /* creator alive */
        sandbox_t *sb = calloc(1, sizeof(*sb));
        if (!sb) break;
        sb->ctl_fd = sb->pidfd = sb->err_fd = sb->state_fd = -1;
        sb->listeners[0] = sb->listeners[1] = sb->listeners[2] = -1;
        pid_t ip = (pid_t)json_integer_value(json_object_get(st, "init_pid"));
        unsigned long long istart = (unsigned long long)json_integer_value(json_object_get(st, "init_start"));
        if (ip <= 0) {
            _cleanup_json_ json_t *in = json_load_file(ip_path, 0, &je);
            ip = (pid_t)json_integer_value(json_object_get(in, "init_pid"));
            istart = (unsigned long long)json_integer_value(json_object_get(in, "init_start"));
        }
        if (ip > 0 && istart && proc_start(ip) == istart) {
            sb->pidfd = (int)syscall(SYS_pidfd_open, ip, 0);
            if (sb->pidfd >= 0 && proc_start(ip) != istart) { /* raced with pid reuse */
                close(sb->pidfd);
                sb->pidfd = -1;
            }
            if (sb->pidfd >= 0) syscall(SYS_pidfd_send_signal, sb->pidfd, SIGKILL, NULL, 0);
        }
        json_t *cgd = json_object_get(st, "cgroup_dirs");
        const char *cgn = json_string_value(json_object_get(st, "cgroup"));
        if (json_is_array(cgd) && cgn) {
            char *dirs[CGROUP_MAX_DIRS];
            int n = 0;
            size_t i;
            json_t *v;
            json_array_foreach(cgd, i, v) {
                if (n < CGROUP_MAX_DIRS && json_is_string(v)) dirs[n++] = (char *)json_string_value(v);
            }
            sb->cg = cgroup_from_dirs(!strcmp(cgn, "v2") ? &cgroup_v2_backend : &cgroup_v1_backend,
                                      dirs, n);
            if (sb->cg) sb->cg->be->kill_all(sb->cg, NULL);
        }
        const char *slotp = json_string_value(json_object_get(st, "slot_path"));
        if (slotp) sb->slot_path = strdup(slotp);
        if (asprintf(&sb->dir, "%s/%s", dir, e->d_name) < 0) sb->dir = NULL;
        sb->dir_is_dir = is_dir;
        /* not our child: wait for the pid namespace to die via the pidfd */
        if (sb->pidfd >= 0) {
            struct pollfd p = {.fd = sb->pidfd, .events = POLLIN};
            poll(&p, 1, 2000);
        }
        shed_err e2;
        if (sandbox_destroy(sb, 0, &e2) < 0)
            log_warn("reconcile %s: %s", e->d_name, e2.msg);
        else
            swept++;
        log_info("reconcile: swept sandbox %s left by dead creator pid %d", e->d_name, (int)owner);
    }
    closedir(d);
    if (geteuid() == 0) sweep_slots();
    return swept;
}
