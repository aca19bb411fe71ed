/* The sandbox's seccomp filter: a deny-list (architecture page, "Layers"),
 * compiled with libseccomp once per policy into BPF kept in the policy, so
 * that the child between clone and exec only calls prctl(). Wrong-arch
 * (i386 int 0x80) and x32 syscalls kill the process. Must never allow a
 * rule to be skipped silently: a syscall name this libseccomp cannot
 * resolve on a native arch is an error, except where noted. */
#include "base/cleanup.h"
#include "base/crypto.h"
#include "sandbox/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <linux/sched.h>
#include <seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

#define ANY -1, 0, 0
#define NS(sys, flag) {sys, 0, flag, flag, SANDBOX_SC_DENY, "new namespaces"}

static const sandbox_seccomp_rule RULES[] = {
    {"ptrace", ANY, SANDBOX_SC_DENY, "inspect or control other processes"},
    {"process_vm_readv", ANY, SANDBOX_SC_DENY, "read another process's memory"},
    {"process_vm_writev", ANY, SANDBOX_SC_DENY, "write another process's memory"},
    {"pidfd_getfd", ANY, SANDBOX_SC_DENY, "steal another process's fds"},
    {"kcmp", ANY, SANDBOX_SC_DENY, "compare kernel objects of other processes"},
    {"mount", ANY, SANDBOX_SC_DENY, "change the mount table"},
    {"umount2", ANY, SANDBOX_SC_DENY, "uncover mounts"},
    {"pivot_root", ANY, SANDBOX_SC_DENY, "change the root"},
    {"chroot", ANY, SANDBOX_SC_DENY, "change the root"},
    {"move_mount", ANY, SANDBOX_SC_DENY, "new mount API"},
    {"open_tree", ANY, SANDBOX_SC_DENY, "new mount API"},
    {"fsopen", ANY, SANDBOX_SC_DENY, "new mount API"},
    {"fsconfig", ANY, SANDBOX_SC_DENY, "new mount API"},
    {"fsmount", ANY, SANDBOX_SC_DENY, "new mount API"},
    {"fspick", ANY, SANDBOX_SC_DENY, "new mount API"},
    {"mount_setattr", ANY, SANDBOX_SC_DENY, "new mount API"},
    {"setns", ANY, SANDBOX_SC_DENY, "join other namespaces"},
    NS("unshare", CLONE_NEWNS),
    NS("unshare", CLONE_NEWCGROUP),
    NS("unshare", CLONE_NEWUTS),
    NS("unshare", CLONE_NEWIPC),
    NS("unshare", CLONE_NEWUSER),
    NS("unshare", CLONE_NEWPID),
    NS("unshare", CLONE_NEWNET),
    NS("unshare", CLONE_NEWTIME),
    NS("clone", CLONE_NEWNS),
    NS("clone", CLONE_NEWCGROUP),
    NS("clone", CLONE_NEWUTS),
    NS("clone", CLONE_NEWIPC),
    NS("clone", CLONE_NEWUSER),
    NS("clone", CLONE_NEWPID),
    NS("clone", CLONE_NEWNET),
    /* clone3 passes its flags in memory, which BPF cannot read: ENOSYS makes
     * libc fall back to clone(), whose flags are checked above. */
    {"clone3", ANY, SANDBOX_SC_ENOSYS, "namespace flags hidden in memory"},
    {"bpf", ANY, SANDBOX_SC_DENY, "kernel attack surface"},
    {"perf_event_open", ANY, SANDBOX_SC_DENY, "kernel attack surface, side channels"},
    {"keyctl", ANY, SANDBOX_SC_DENY, "kernel keyrings are not namespaced"},
    {"add_key", ANY, SANDBOX_SC_DENY, "kernel keyrings are not namespaced"},
    {"request_key", ANY, SANDBOX_SC_DENY, "kernel keyrings are not namespaced"},
    {"userfaultfd", ANY, SANDBOX_SC_DENY, "exploit primitive (race widening)"},
    {"io_uring_setup", ANY, SANDBOX_SC_DENY, "bypasses syscall filtering (e.g. sockets)"},
    {"io_uring_enter", ANY, SANDBOX_SC_DENY, "bypasses syscall filtering"},
    {"io_uring_register", ANY, SANDBOX_SC_DENY, "bypasses syscall filtering"},
    {"kexec_load", ANY, SANDBOX_SC_DENY, "replace the kernel"},
    {"kexec_file_load", ANY, SANDBOX_SC_DENY, "replace the kernel"},
    {"init_module", ANY, SANDBOX_SC_DENY, "load kernel code"},
    {"finit_module", ANY, SANDBOX_SC_DENY, "load kernel code"},
    {"delete_module", ANY, SANDBOX_SC_DENY, "unload kernel code"},
    {"open_by_handle_at", ANY, SANDBOX_SC_DENY, "open files outside the mount tree"},
    {"name_to_handle_at", ANY, SANDBOX_SC_DENY, "file handles (pairs with open_by_handle_at)"},
    {"syslog", ANY, SANDBOX_SC_DENY, "kernel log"},
    {"reboot", ANY, SANDBOX_SC_DENY, "reboot"},
    {"swapon", ANY, SANDBOX_SC_DENY, "swap"},
    {"swapoff", ANY, SANDBOX_SC_DENY, "swap"},
    {"acct", ANY, SANDBOX_SC_DENY, "process accounting"},
    {"quotactl", ANY, SANDBOX_SC_DENY, "disk quotas"},
    {"lookup_dcookie", ANY, SANDBOX_SC_DENY, "kernel internals"},
    {"iopl", ANY, SANDBOX_SC_DENY, "port I/O"},
    {"ioperm", ANY, SANDBOX_SC_DENY, "port I/O"},
    {"fanotify_init", ANY, SANDBOX_SC_DENY, "filesystem-wide monitoring"},
    {"settimeofday", ANY, SANDBOX_SC_DENY, "host clock"},
    {"clock_settime", ANY, SANDBOX_SC_DENY, "host clock"},
    {"clock_adjtime", ANY, SANDBOX_SC_DENY, "host clock"},
    {"vhangup", ANY, SANDBOX_SC_DENY, "terminals"},
    {"socket", 0, ~0ull, AF_NETLINK, SANDBOX_SC_DENY, "netlink: kernel configuration surface"},
    {"socket", 0, ~0ull, AF_PACKET, SANDBOX_SC_DENY, "raw packets"},
    {"socket", 0, ~0ull, AF_VSOCK, SANDBOX_SC_DENY, "talk to the hypervisor"},
    {"ioctl", 1, 0xffffffffull, TIOCSTI, SANDBOX_SC_DENY, "inject input into a terminal"},
    {"ioctl", 1, 0xffffffffull, TIOCLINUX, SANDBOX_SC_DENY, "virtual console control"},
};

const sandbox_seccomp_rule *sandbox_seccomp_rules(size_t *n)
{
    *n = ARRAY_SIZE(RULES);
    return RULES;
}

int sandbox_seccomp_nr(const char *name)
{
    return seccomp_syscall_resolve_name(name);
}

static int seccomp_compile(struct sandbox_policy *p, shed_err *err);

static void ctx_release(scmp_filter_ctx *c)
{
    if (*c) seccomp_release(*c);
}

/* The compiled filter depends only on RULES, the policy's errno, this
 * libseccomp, the kernel (which actions it supports) and seccomp_compile's
 * attributes: all of them go into the cache key, so a changed rule table,
 * library, kernel or shed version compiles anew. Bump the "shed-bpf" tag when
 * an attribute set in seccomp_compile changes. */
static int cache_key(const struct sandbox_policy *p, char out[SHA256_HEX_LEN])
{
    char buf[16384];
    size_t n = 0;
    struct utsname u;
    const struct scmp_version *v = seccomp_version();
    if (uname(&u) < 0 || !v) return -1;
    n += snprintf(buf + n, sizeof(buf) - n, "shed-bpf 2 tree kill-badarch\n%s\n%s %s %s %s\n%u.%u.%u\n%d\n",
                  SHED_VERSION, u.sysname, u.release, u.version, u.machine, v->major, v->minor, v->micro, p->deny_errno);
    for (size_t i = 0; i < ARRAY_SIZE(RULES) && n < sizeof(buf); i++)
        n += snprintf(buf + n, sizeof(buf) - n, "%s %d %llx %llx %d\n", RULES[i].syscall,
                      RULES[i].arg, (unsigned long long)RULES[i].mask,
                      (unsigned long long)RULES[i].value, RULES[i].action);
    if (n >= sizeof(buf)) return -1;
    return crypto_sha256_hex(buf, n, out);
}

/* A directory or file this euid owns that nobody else can write. */
static bool trusted(int fd, bool dir)
{
    struct stat st;
    return fstat(fd, &st) == 0 && st.st_uid == geteuid() && !(st.st_mode & 022) &&
           (dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode));
}

/* <state dir>/bpf, opened only if it and the state dir are ours and not
 * writable by others (the state dir is /run/shed as root); -1 otherwise. */
static int cache_dir_open(const char *state_dir)
{
    _cleanup_close_ int sd = open(state_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sd < 0 || !trusted(sd, true)) return -1;
    int fd = openat(sd, "bpf", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && (mkdirat(sd, "bpf", 0700) == 0 || errno == EEXIST))
        fd = openat(sd, "bpf", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0 && !trusted(fd, true)) {
        close(fd);
        return -1;
    }
    return fd;
}

static struct sock_filter *cache_read(int dfd, const char *key, unsigned short *len)
{
    _cleanup_close_ int fd = openat(dfd, key, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || !trusted(fd, false) || fstat(fd, &st) < 0) return NULL;
    if (st.st_size <= 0 || st.st_size % sizeof(struct sock_filter) ||
        st.st_size / sizeof(struct sock_filter) > 4096)
        return NULL;
    struct sock_filter *f = malloc(st.st_size);
    if (!f) return NULL;
    if (pread(fd, f, st.st_size, 0) != st.st_size) {
        free(f);
        return NULL;
    }
    *len = (unsigned short)(st.st_size / sizeof(struct sock_filter));
    return f;
}

/* Written to a private temporary name, then renamed: a reader sees a whole
 * filter or none. Failures only cost the next run a compile. */
static void cache_write(int dfd, const char *key, const struct sock_filter *f, unsigned short len)
{
    char tmp[128];
    snprintf(tmp, sizeof(tmp), ".%s.%d", key, (int)getpid());
    int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return;
    size_t n = len * sizeof(*f);
    bool ok = write(fd, f, n) == (ssize_t)n;
    if (close(fd) < 0) ok = false;
    if (!ok || renameat(dfd, tmp, dfd, key) < 0) unlinkat(dfd, tmp, 0);
}

int sandbox_seccomp_compile(struct sandbox_policy *p, shed_err *err)
{
    _cleanup_free_ char *sd = sandbox_default_state_dir();
    return sandbox_seccomp_compile_cached(p, sd, err);
}

int sandbox_seccomp_compile_cached(struct sandbox_policy *p, const char *state_dir,
                                   shed_err *err)
{
    char key[SHA256_HEX_LEN];
    _cleanup_close_ int dfd = -1;
    if (state_dir && cache_key(p, key) == 0 && (dfd = cache_dir_open(state_dir)) >= 0) {
        unsigned short len = 0;
        struct sock_filter *f = cache_read(dfd, key, &len);
        if (f) {
            free(p->bpf);
            p->bpf = f;
            p->bpf_len = len;
            return 0;
        }
    }
    int rc = seccomp_compile(p, err);
    if (rc == 0 && dfd >= 0) cache_write(dfd, key, p->bpf, p->bpf_len);
    return rc;
}

static int seccomp_compile(struct sandbox_policy *p, shed_err *err)
{
    __attribute__((cleanup(ctx_release))) scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx) return err_msg(err, ENOMEM, "seccomp_init failed");
    /* Only the native arch is added: any other arch (i386 via int 0x80) and
     * x32 syscall numbers hit the bad-arch action. */
    int rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
    if (rc < 0) return err_set(err, -rc, "seccomp: set bad-arch action");
    if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0)) < 0)
        return err_set(err, -rc, "seccomp: attribute NNP");
    /* A binary tree of syscall numbers instead of a linear list: the kernel
     * emulates the filter for every syscall number when it is loaded (the
     * allow-bitmap cache, under the task's siglock), and runs it at every
     * syscall the cache cannot answer (ioctl, socket, clone, unshare): both
     * walk O(log rules) jumps instead of O(rules). */
    if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2)) < 0)
        return err_set(err, -rc, "seccomp: attribute optimize (binary tree)");
    for (size_t i = 0; i < ARRAY_SIZE(RULES); i++) {
        const sandbox_seccomp_rule *r = &RULES[i];
        int nr = seccomp_syscall_resolve_name(r->syscall);
        if (nr == __NR_SCMP_ERROR)
            return err_msg(err, ENOSYS, "seccomp: syscall '%s' unknown to this libseccomp",
                           r->syscall);
        if (nr < 0) continue; /* not on this architecture */
        uint32_t act = r->action == SANDBOX_SC_KILL     ? SCMP_ACT_KILL_PROCESS
                       : r->action == SANDBOX_SC_ENOSYS ? SCMP_ACT_ERRNO(ENOSYS)
                                                        : SCMP_ACT_ERRNO(p->deny_errno);
        if (r->arg < 0)
            rc = seccomp_rule_add(ctx, act, nr, 0);
        else
            rc = seccomp_rule_add(ctx, act, nr, 1,
                                  SCMP_CMP((unsigned)r->arg, SCMP_CMP_MASKED_EQ, r->mask, r->value));
        if (rc < 0) return err_set(err, -rc, "seccomp: add rule for %s", r->syscall);
    }
    _cleanup_close_ int mfd = memfd_create("shed-seccomp", MFD_CLOEXEC);
    if (mfd < 0) return err_set(err, errno, "memfd_create for the seccomp filter");
    if ((rc = seccomp_export_bpf(ctx, mfd)) < 0) return err_set(err, -rc, "seccomp_export_bpf");
    off_t len = lseek(mfd, 0, SEEK_END);
    if (len <= 0 || len % sizeof(struct sock_filter) || len / sizeof(struct sock_filter) > 4096)
        return err_msg(err, EINVAL, "seccomp: exported filter has a bad size (%lld)", (long long)len);
    struct sock_filter *bpf = malloc(len);
    if (!bpf) return err_set(err, ENOMEM, "seccomp filter");
    if (pread(mfd, bpf, len, 0) != len) {
        free(bpf);
        return err_set(err, EIO, "read back the seccomp filter");
    }
    free(p->bpf);
    p->bpf = bpf;
    p->bpf_len = (unsigned short)(len / sizeof(struct sock_filter));
    return 0;
}
