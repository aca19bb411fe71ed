/* The probe: a static binary with adversarial verbs, run inside sandboxes.
 * Each verb tries one thing and prints a verdict; the tests compare verdicts
 * with the policy (bubblewrap's try-syscall, crun's tests/init.c).
 * Convention for adversarial verbs: one line per attempt,
 *   "BLOCKED <what>: <why>"  or  "ESCAPE <what>: <detail>",
 * exit 0 when every attempt was blocked, 1 when anything escaped, 2 on usage.
 * Extended in issue #10 (escape campaign). No libc beyond static glibc, no deps. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

static int escaped;

static void blocked(const char *what, int e)
{
    printf("BLOCKED %s: %s\n", what, strerrorname_np(e) ? strerrorname_np(e) : strerror(e));
}

static void escape(const char *what, const char *detail)
{
    printf("ESCAPE %s: %s\n", what, detail);
    escaped = 1;
}

/* rc < 0 with errno = blocked; otherwise escaped */
static void verdict(const char *what, long rc)
{
    if (rc < 0)
        blocked(what, errno);
    else
        escape(what, "succeeded");
}

static int v_read(int argc, char **argv)
{
    for (int i = 2; i < argc; i++) {
        int fd = open(argv[i], O_RDONLY | O_CLOEXEC);
        char what[4200], buf[64];
        snprintf(what, sizeof(what), "read %s", argv[i]);
        if (fd < 0) {
            blocked(what, errno);
            continue;
        }
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0)
            blocked(what, errno);
        else
            escape(what, "readable");
        close(fd);
    }
    return escaped;
}

static int v_write(int argc, char **argv)
{
    for (int i = 2; i < argc; i++) {
        char what[4200];
        snprintf(what, sizeof(what), "write %s", argv[i]);
        int fd = open(argv[i], O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            blocked(what, errno);
            continue;
        }
        if (write(fd, "x", 1) != 1)
            blocked(what, errno);
        else
            escape(what, "written");
        close(fd);
    }
    return escaped;
}

static int v_pids(void)
{
    DIR *d = opendir("/proc");
    if (!d) {
        perror("opendir /proc");
        return 2;
    }
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] >= '0' && e->d_name[0] <= '9') printf("%s\n", e->d_name);
    closedir(d);
    return 0;
}

static int v_signal(int argc, char **argv)
{
    for (int i = 2; i < argc; i++) {
        pid_t pid = atoi(argv[i]);
        char what[128];
        snprintf(what, sizeof(what), "kill %d", pid);
        verdict(what, kill(pid, 0));
        snprintf(what, sizeof(what), "ptrace attach %d", pid);
        verdict(what, ptrace(PTRACE_ATTACH, pid, 0, 0));
        snprintf(what, sizeof(what), "pidfd_open %d", pid);
        verdict(what, syscall(SYS_pidfd_open, pid, 0));
    }
    return escaped;
}

static int v_namespaces(void)
{
    verdict("mount tmpfs", mount("none", "/tmp", "tmpfs", 0, NULL));
    verdict("umount /proc", umount2("/proc", MNT_DETACH));
    verdict("remount / rw", mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND, NULL));
    verdict("pivot_root", syscall(SYS_pivot_root, "/tmp", "/tmp"));
    verdict("chroot", chroot("/tmp"));
    verdict("fsopen", syscall(SYS_fsopen, "tmpfs", 0));
    verdict("open_tree", syscall(SYS_open_tree, AT_FDCWD, "/", 1 /* OPEN_TREE_CLONE */));
    static const struct {
        int flag;
        const char *name;
    } NS[] = {{CLONE_NEWUSER, "user"}, {CLONE_NEWNS, "mount"}, {CLONE_NEWNET, "net"},
              {CLONE_NEWPID, "pid"},   {CLONE_NEWIPC, "ipc"},  {CLONE_NEWUTS, "uts"},
              {CLONE_NEWCGROUP, "cgroup"}, {0x80 /* CLONE_NEWTIME */, "time"}};
    for (size_t i = 0; i < sizeof(NS) / sizeof(NS[0]); i++) {
        char what[64];
        snprintf(what, sizeof(what), "unshare(%s)", NS[i].name);
        verdict(what, unshare(NS[i].flag));
    }
    /* a new user namespace through clone and clone3 */
    long rc = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (rc == 0) _exit(0);
    if (rc > 0) waitpid((pid_t)rc, NULL, 0);
    verdict("clone(CLONE_NEWUSER)", rc);
    struct clone_args ca = {.flags = CLONE_NEWUSER, .exit_signal = SIGCHLD};
    rc = syscall(SYS_clone3, &ca, sizeof(ca));
    if (rc == 0) _exit(0);
    if (rc > 0) waitpid((pid_t)rc, NULL, 0);
    verdict("clone3(CLONE_NEWUSER)", rc);
    static const char *const NSF[] = {"/proc/1/ns/net", "/proc/1/ns/mnt", "/proc/self/ns/user",
                                      "/proc/self/ns/pid"};
    for (size_t i = 0; i < sizeof(NSF) / sizeof(NSF[0]); i++) {
        char what[128];
        snprintf(what, sizeof(what), "setns %s", NSF[i]);
        int fd = open(NSF[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            blocked(what, errno);
            continue;
        }
        verdict(what, setns(fd, 0));
        close(fd);
    }
    return escaped;
}

static int v_sockets(void)
{
    static const struct {
        int dom, type;
        const char *name;
    } S[] = {{AF_NETLINK, SOCK_RAW, "socket(AF_NETLINK)"},
             {AF_PACKET, SOCK_RAW, "socket(AF_PACKET)"},
             {AF_VSOCK, SOCK_STREAM, "socket(AF_VSOCK)"},
             {AF_INET, SOCK_RAW, "socket(AF_INET, SOCK_RAW)"}};
    for (size_t i = 0; i < sizeof(S) / sizeof(S[0]); i++) {
        int fd = socket(S[i].dom, S[i].type, 0);
        verdict(S[i].name, fd);
        if (fd >= 0) close(fd);
    }
    return escaped;
}

static int v_kernel(void)
{
    char params[128] = {0};
    verdict("io_uring_setup", syscall(SYS_io_uring_setup, 8, params));
    verdict("bpf", syscall(SYS_bpf, 0 /* BPF_MAP_CREATE */, params, 64));
    verdict("keyctl", syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0));
    verdict("add_key", syscall(SYS_add_key, "user", "probe", "x", 1, -3));
    char attr[128] = {0};
    ((uint32_t *)attr)[1] = 128; /* size */
    verdict("perf_event_open", syscall(SYS_perf_event_open, attr, 0, -1, -1, 0));
    verdict("userfaultfd", syscall(SYS_userfaultfd, 0));
    verdict("ptrace(TRACEME)", ptrace(PTRACE_TRACEME, 0, 0, 0));
    verdict("process_vm_readv", syscall(SYS_process_vm_readv, 1, NULL, 0, NULL, 0, 0));
    verdict("syslog", syscall(SYS_syslog, 3, params, sizeof(params)));
    verdict("open_by_handle_at", syscall(SYS_open_by_handle_at, AT_FDCWD, params, O_RDONLY));
    verdict("ioctl(TIOCSTI)", ioctl(0, TIOCSTI, "x"));
    return escaped;
}

static int v_connect(int argc, char **argv)
{
    if (argc < 4) return 2;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        blocked("socket", errno);
        return 0;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[3]))};
    inet_pton(AF_INET, argv[2], &sa.sin_addr);
    char what[128];
    snprintf(what, sizeof(what), "connect %s:%s", argv[2], argv[3]);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        blocked(what, errno);
    } else {
        char buf[64] = {0};
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        escape(what, n > 0 ? buf : "connected");
    }
    close(fd);
    return escaped;
}

static int v_mknod(int argc, char **argv)
{
    const char *dir = argc > 2 ? argv[2] : "/tmp";
    char p[4200], what[4300];
    snprintf(p, sizeof(p), "%s/probe-mem", dir);
    snprintf(what, sizeof(what), "mknod char 1:1 (/dev/mem) at %s", p);
    verdict(what, mknod(p, S_IFCHR | 0666, makedev(1, 1)));
    snprintf(p, sizeof(p), "%s/probe-sda", dir);
    snprintf(what, sizeof(what), "mknod block 8:0 at %s", p);
    verdict(what, mknod(p, S_IFBLK | 0666, makedev(8, 0)));
    return escaped;
}

static int v_status(void)
{
    char buf[8192];
    int fd = open("/proc/self/status", O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
    if (n <= 0) return 2;
    buf[n] = 0;
    for (char *l = strtok(buf, "\n"); l; l = strtok(NULL, "\n"))
        if (!strncmp(l, "Cap", 3) || !strncmp(l, "NoNewPrivs", 10) || !strncmp(l, "Seccomp", 7) ||
            !strncmp(l, "Uid", 3) || !strncmp(l, "Gid", 3) || !strncmp(l, "Groups", 6))
            printf("%s\n", l);
    printf("sid=%d pgid=%d pid=%d\n", (int)getsid(0), (int)getpgid(0), (int)getpid());
    return 0;
}

static int v_proc(void)
{
    static const char *const R[] = {"/proc/1/environ", "/proc/1/mem",  "/proc/1/root/etc/passwd",
                                    "/proc/kcore",     "/proc/1/fd/3", "/proc/1/cmdline_nope",
                                    "/proc/sys/kernel/core_pattern_nope"};
    for (size_t i = 0; i < sizeof(R) / sizeof(R[0]); i++) {
        if (strstr(R[i], "_nope")) continue;
        char what[256];
        snprintf(what, sizeof(what), "read %s", R[i]);
        int fd = open(R[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            blocked(what, errno);
            continue;
        }
        char b[16];
        if (read(fd, b, sizeof(b)) < 0)
            blocked(what, errno);
        else
            escape(what, "readable");
        close(fd);
    }
    char l[256];
    ssize_t n = readlink("/proc/1/exe", l, sizeof(l) - 1);
    if (n < 0)
        blocked("readlink /proc/1/exe", errno);
    else
        escape("readlink /proc/1/exe", "visible");
    static const char *const W[] = {"/proc/sys/kernel/core_pattern", "/proc/sysrq-trigger",
                                    "/proc/sys/kernel/hostname", "/proc/1/oom_score_adj",
                                    "/proc/sys/vm/drop_caches"};
    for (size_t i = 0; i < sizeof(W) / sizeof(W[0]); i++) {
        char what[256];
        snprintf(what, sizeof(what), "write %s", W[i]);
        int fd = open(W[i], O_WRONLY | O_CLOEXEC);
        if (fd < 0) {
            blocked(what, errno);
            continue;
        }
        if (write(fd, "0", 1) < 0)
            blocked(what, errno);
        else
            escape(what, "written");
        close(fd);
    }
    /* the host's root is not reachable through our own /proc/self/root */
    int fd = open("/proc/self/root/../../../etc/shadow", O_RDONLY | O_CLOEXEC);
    verdict("read /proc/self/root/../../../etc/shadow", fd);
    if (fd >= 0) close(fd);
    return escaped;
}

static int v_forkbomb(int argc, char **argv)
{
    long max = argc > 2 ? atol(argv[2]) : 100000;
    long n = 0;
    for (; n < max; n++) {
        pid_t p = fork();
        if (p == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() == 1) _exit(0);
            pause();
            _exit(0);
        }
        if (p < 0) {
            char what[64];
            snprintf(what, sizeof(what), "fork bomb (stopped after %ld processes)", n);
            blocked(what, errno);
            return 0;
        }
    }
    char d[64];
    snprintf(d, sizeof(d), "%ld processes", n);
    escape("fork bomb", d);
    return 1;
}

static int v_memhog(int argc, char **argv)
{
    long mb = argc > 2 ? atol(argv[2]) : 4096;
    long done = 0;
    for (; done < mb; done += 16) {
        char *p = mmap(NULL, 16 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            char what[64];
            snprintf(what, sizeof(what), "memory hog (at %ld MB)", done);
            blocked(what, errno);
            return 0;
        }
        memset(p, 1, 16 << 20);
    }
    char d[64];
    snprintf(d, sizeof(d), "%ld MB touched", done);
    escape("memory hog", d);
    return 1;
}

static int v_diskfill(int argc, char **argv)
{
    const char *dir = argc > 2 ? argv[2] : ".";
    long mb = argc > 3 ? atol(argv[3]) : 4096;
    signal(SIGXFSZ, SIG_IGN);
    static char chunk[1 << 20];
    memset(chunk, 'x', sizeof(chunk));
    long done = 0;
    for (int f = 0; done < mb; f++) {
        char p[4200];
        snprintf(p, sizeof(p), "%s/fill.%d", dir, f);
        int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) {
            char what[64];
            snprintf(what, sizeof(what), "disk filler (at %ld MB)", done);
            blocked(what, errno);
            return 0;
        }
        /* many files of 8 MB: a per-file size limit alone does not stop this */
        for (int i = 0; i < 8 && done < mb; i++, done++) {
            if (write(fd, chunk, sizeof(chunk)) != (ssize_t)sizeof(chunk)) {
                char what[64];
                snprintf(what, sizeof(what), "disk filler (at %ld MB)", done);
                blocked(what, errno);
                close(fd);
                return 0;
            }
        }
        fsync(fd);
        close(fd);
    }
    char d[64];
    snprintf(d, sizeof(d), "%ld MB written", done);
    escape("disk filler", d);
    return 1;
}

static int v_spawn_bg(void)
{
    char ns[128];
    ssize_t n = readlink("/proc/self/ns/pid", ns, sizeof(ns) - 1);
    ns[n > 0 ? n : 0] = 0;
    pid_t p = fork();
    if (p == 0) {
        setsid();
        if (fork() == 0) {
            for (int fd = 0; fd < 3; fd++) close(fd);
            signal(SIGTERM, SIG_IGN);
            signal(SIGHUP, SIG_IGN);
            for (;;) pause();
        }
        _exit(0);
    }
    waitpid(p, NULL, 0);
    printf("%s\n", ns);
    return 0;
}

static int v_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) return 2;
    int self = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == self) continue;
        char p[300], t[256];
        snprintf(p, sizeof(p), "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(p, t, sizeof(t) - 1);
        t[n > 0 ? n : 0] = 0;
        printf("%s %s\n", e->d_name, t);
    }
    closedir(d);
    return 0;
}

/* Reads "NAME NR ARG MASK VALUE VERDICT" lines (shed init --seccomp-table)
 * and runs each syscall in a child, checking the verdict (errno:N or kill). */
static int v_syscall_table(void)
{
    char line[512];
    int bad = 0, n = 0;
    while (fgets(line, sizeof(line), stdin)) {
        char name[128], verdict_s[64];
        long nr;
        int arg;
        unsigned long long mask, value;
        if (sscanf(line, "%127s %li %d %lli %lli %63s", name, &nr, &arg, &mask, &value,
                   verdict_s) != 6) {
            fprintf(stderr, "probe: bad table line: %s", line);
            return 2;
        }
        n++;
        pid_t pid = fork();
        if (pid == 0) {
            long a[6] = {0, 0, 0, 0, 0, 0};
            if (arg >= 0 && arg < 6) a[arg] = (long)value;
            long rc;
            if (!strncmp(name, "i386:", 5)) {
                long eax = nr;
                __asm__ volatile("int $0x80" : "+a"(eax) : : "memory");
                rc = eax;
                if (rc < 0) {
                    errno = (int)-rc;
                    rc = -1;
                }
            } else {
                rc = syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
            }
            if (rc == 0 && (!strcmp(name, "clone") || !strcmp(name, "clone3"))) _exit(99);
            _exit(rc < 0 ? (errno & 0xff) : 0);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        char label[160];
        if (arg >= 0)
            snprintf(label, sizeof(label), "%s(arg%d=%#llx)", name, arg, value);
        else
            snprintf(label, sizeof(label), "%s", name);
        char got[64];
        if (WIFSIGNALED(st))
            snprintf(got, sizeof(got), "%s", WTERMSIG(st) == SIGSYS ? "kill" : "signal");
        else
            snprintf(got, sizeof(got), "errno:%d", WEXITSTATUS(st));
        if (!strcmp(got, verdict_s)) {
            printf("ok   %-36s %s\n", label, got);
        } else {
            printf("FAIL %-36s expected %s, got %s\n", label, verdict_s, got);
            bad = 1;
        }
    }
    printf("%d rules checked\n", n);
    return bad || n == 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2 || !strcmp(argv[1], "--help")) {
        printf("usage: probe VERB [ARGS]\n"
               "  uid | euid              print the real / effective uid\n"
               "  status                  capabilities, NoNewPrivs, Seccomp, ids, session\n"
               "  read PATH...            try to read files\n"
               "  write PATH...           try to create/write files\n"
               "  pids                    pids visible in /proc\n"
               "  signal PID...           kill(0), ptrace, pidfd_open on pids\n"
               "  namespaces              mount, pivot_root, unshare, clone(NEWUSER), setns\n"
               "  sockets                 netlink, packet, vsock, raw sockets\n"
               "  kernel                  io_uring, bpf, keyctl, perf_event_open, ...\n"
               "  connect ADDR PORT       TCP connect\n"
               "  mknod [DIR]             device nodes\n"
               "  proc                    escapes through /proc\n"
               "  forkbomb [MAX]          fork until refused\n"
               "  memhog [MB]             allocate and touch memory\n"
               "  diskfill DIR [MB]       write files until refused\n"
               "  spawn-bg                leave a daemon behind; print our pid namespace\n"
               "  fds                     list open fds\n"
               "  syscall-table           check seccomp verdicts read from stdin\n");
        return argc < 2 ? 2 : 0;
    }
    const char *v = argv[1];
    if (!strcmp(v, "uid")) return printf("%d\n", (int)getuid()), 0;
    if (!strcmp(v, "euid")) return printf("%d\n", (int)geteuid()), 0;
    if (!strcmp(v, "status")) return v_status();
    if (!strcmp(v, "read")) return v_read(argc, argv);
    if (!strcmp(v, "write")) return v_write(argc, argv);
    if (!strcmp(v, "pids")) return v_pids();
    if (!strcmp(v, "signal")) return v_signal(argc, argv);
    if (!strcmp(v, "namespaces")) return v_namespaces();
    if (!strcmp(v, "sockets")) return v_sockets();
    if (!strcmp(v, "kernel")) return v_kernel();
    if (!strcmp(v, "connect")) return v_connect(argc, argv);
    if (!strcmp(v, "mknod")) return v_mknod(argc, argv);
    if (!strcmp(v, "proc")) return v_proc();
    if (!strcmp(v, "forkbomb")) return v_forkbomb(argc, argv);
    if (!strcmp(v, "memhog")) return v_memhog(argc, argv);
    if (!strcmp(v, "diskfill")) return v_diskfill(argc, argv);
    if (!strcmp(v, "spawn-bg")) return v_spawn_bg();
    if (!strcmp(v, "fds")) return v_fds();
    if (!strcmp(v, "syscall-table")) return v_syscall_table();
    fprintf(stderr, "probe: unknown verb '%s'\n", v);
    return 2;
}
