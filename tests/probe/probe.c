/* The probe: a static binary with adversarial verbs, run inside sandboxes.
 * Each verb tries one thing and prints a verdict; the tests compare verdicts
 * with the policy (bubblewrap's try-syscall, crun's tests/init.c).
 * Convention for adversarial verbs: one line per attempt,
 *   "BLOCKED <what>: <why>"  or  "ESCAPE <what>: <detail>",
 * exit 0 when every attempt was blocked, 1 when anything escaped, 2 on usage.
 * Positive controls (an allowed action that must work, so a broken probe
 * cannot pass) print "OK <what>" and "FAILED <what>" (exit 1) when they do not.
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
#include <sys/personality.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <termios.h>
#include <time.h>
#include <mqueue.h>
#include <pthread.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/msg.h>
#include <sys/shm.h>
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

/* ---- escape campaign (issue #10); docs/security.md "Escape campaign" ---- */

static int controls_failed;

static void ok(const char *what, const char *detail)
{
    printf("OK %s: %s\n", what, detail);
}

static void control(const char *what, long rc)
{
    if (rc < 0) {
        printf("FAILED %s: %s\n", what, strerrorname_np(errno) ? strerrorname_np(errno) : strerror(errno));
        controls_failed = 1;
    } else {
        ok(what, "works");
    }
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* try_open: open(path, flags) and, if it opened, read or write one byte */
static void try_open(const char *path, int flags)
{
    char what[4300];
    snprintf(what, sizeof(what), "open %s %s", path,
             (flags & O_ACCMODE) == O_WRONLY ? "O_WRONLY" :
             (flags & O_ACCMODE) == O_RDWR ? "O_RDWR" : (flags & O_PATH) ? "O_PATH" : "O_RDONLY");
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0) return blocked(what, errno);
    if (flags & O_PATH) {
        /* an O_PATH handle of a plain /proc file is only a name; what counts
         * is whether it leads anywhere: reopen it through /proc/self/fd */
        char fp[64];
        snprintf(fp, sizeof(fp), "/proc/self/fd/%d", fd);
        int r = open(fp, O_RDONLY | O_CLOEXEC);
        if (r < 0) {
            int e = errno;
            close(fd);
            snprintf(what + strlen(what), sizeof(what) - strlen(what), " + reopen via /proc/self/fd");
            return blocked(what, e);
        }
        close(r);
        close(fd);
        return escape(what, "opened and reopened for reading");
    }
    char b[16];
    ssize_t n = (flags & O_ACCMODE) == O_RDONLY ? read(fd, b, sizeof(b)) : write(fd, "", 0);
    close(fd);
    if (n < 0)
        blocked(what, errno);
    else
        escape(what, "opened and usable");
}

/* CVE-2019-5736 (runc /proc/self/exe overwrite) and its relatives: init is
 * the shed binary started from an fd; nothing inside may get a handle on it.
 * `exe [DEV INO MS]`: also scan every process's /proc/PID/exe for MS ms and
 * report any that resolves to the file DEV:INO (the host's shed binary). */
static int v_exe(int argc, char **argv)
{
    /* positive control: our own exe is reachable read-only (the probe) */
    int self = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    control("open /proc/self/exe O_RDONLY (the probe itself)", self);
    if (self >= 0) close(self);
    try_open("/proc/self/exe", O_WRONLY);
    try_open("/proc/self/exe", O_RDWR);
    static const char *const P[] = {"/proc/1/exe", "/proc/1/mem", "/proc/1/environ", "/proc/1/root",
                                    "/proc/1/cwd", "/proc/1/fd", "/proc/1/fd/3", "/proc/1/map_files",
                                    "/proc/1/maps", "/proc/1/auxv", "/proc/1/stack", "/proc/1/syscall",
                                    "/proc/1/pagemap", "/proc/1/personality", "/proc/1/timers"};
    for (size_t i = 0; i < sizeof(P) / sizeof(P[0]); i++) {
        try_open(P[i], O_PATH);
        try_open(P[i], O_RDONLY);
    }
    try_open("/proc/1/exe", O_WRONLY);
    try_open("/proc/1/mem", O_RDWR);
    try_open("/proc/1/attr/current", O_WRONLY);
    try_open("/proc/1/oom_score_adj", O_WRONLY);
    char l[512];
    verdict("readlink /proc/1/exe", readlink("/proc/1/exe", l, sizeof(l)));
    verdict("readlink /proc/1/cwd", readlink("/proc/1/cwd", l, sizeof(l)));
    if (argc < 5) return escaped || controls_failed;
    dev_t dev = (dev_t)strtoull(argv[2], NULL, 0);
    ino_t ino = (ino_t)strtoull(argv[3], NULL, 0);
    int64_t end = now_ms() + atol(argv[4]);
    long tries = 0, opened = 0;
    while (now_ms() < end) {
        DIR *d = opendir("/proc");
        if (!d) break;
        struct dirent *e;
        while ((e = readdir(d))) {
            int pid = atoi(e->d_name);
            if (pid <= 0 || pid == getpid()) continue;
            char p[64];
            snprintf(p, sizeof(p), "/proc/%d/exe", pid);
            tries++;
            int fd = open(p, O_PATH | O_CLOEXEC);
            if (fd < 0) continue;
            opened++;
            struct stat st;
            if (fstat(fd, &st) == 0 && st.st_dev == dev && st.st_ino == ino) {
                char fp[64];
                snprintf(fp, sizeof(fp), "/proc/self/fd/%d", fd);
                int w = open(fp, O_WRONLY | O_CLOEXEC);
                snprintf(l, sizeof(l), "pid %d exposes the runtime binary (reopen for write: %s)", pid,
                         w >= 0 ? "succeeded" : strerror(errno));
                escape("/proc/PID/exe of a shed process", l);
                if (w >= 0) close(w);
                close(fd);
                closedir(d);
                return 1;
            }
            close(fd);
        }
        closedir(d);
    }
    snprintf(l, sizeof(l), "/proc/PID/exe scan (%ld tries, %ld other binaries opened, none is shed)", tries,
             opened);
    printf("BLOCKED %s: not found\n", l);
    return escaped || controls_failed;
}

/* CVE-2017-5226 (bubblewrap TIOCSTI), CVE-2016-9016 (firejail), TIOCLINUX
 * (CVE-2023-1523 snapd): push input into the caller's terminal. Run with a
 * terminal on fd 0. */
static int v_tty(void)
{
    control("isatty(0) (the caller's terminal was passed)", isatty(0) ? 0 : -1);
    char c = 'X';
    verdict("ioctl(0, TIOCSTI) into the caller's terminal", ioctl(0, TIOCSTI, &c));
    char lin[2] = {6 /* TIOCL_GETFGCONSOLE-ish: any subcode */, 0};
    verdict("ioctl(0, TIOCLINUX)", ioctl(0, TIOCLINUX, lin));
    verdict("ioctl(0, TIOCCONS) (redirect the console)", ioctl(0, TIOCCONS));
    int on = 1;
    (void)on;
    pid_t pg = getpgrp();
    verdict("tcsetpgrp(0) (become the terminal's foreground group)", tcsetpgrp(0, pg));
    /* no controlling terminal at all: /dev/tty cannot be opened */
    int fd = open("/dev/tty", O_RDWR | O_CLOEXEC);
    verdict("open /dev/tty (a controlling terminal)", fd);
    if (fd >= 0) close(fd);
    /* a new session that steals the terminal as its controlling tty */
    pid_t p = fork();
    if (p == 0) {
        setsid();
        if (ioctl(0, TIOCSCTTY, 0) == 0) _exit(10);
        int e = errno;
        if (ioctl(0, TIOCSCTTY, 1) == 0) _exit(11);
        _exit(e & 0xff);
    }
    int st = 0;
    waitpid(p, &st, 0);
    if (WIFEXITED(st) && WEXITSTATUS(st) < 10) {
        errno = WEXITSTATUS(st);
        blocked("setsid + TIOCSCTTY (steal the caller's terminal)", errno);
    } else {
        escape("setsid + TIOCSCTTY (steal the caller's terminal)", "became the controlling terminal");
    }
    printf("OK session: sid=%d pgid=%d (init's session, not the caller's)\n", (int)getsid(0), (int)getpgrp());
    return escaped || controls_failed;
}

/* Every fd of every process we can see: `fdscan`. Prints "FD pid fd target"
 * lines for the test (which compares socket inodes with init's control
 * channel and listeners, read on the host) and BLOCKED for init's table. */
static int v_fdscan(void)
{
    DIR *d = opendir("/proc");
    if (!d) return 2;
    struct dirent *e;
    while ((e = readdir(d))) {
        int pid = atoi(e->d_name);
        if (pid <= 0) continue;
        char p[64];
        snprintf(p, sizeof(p), "/proc/%d/fd", pid);
        DIR *fdd = opendir(p);
        if (!fdd) {
            char what[96];
            snprintf(what, sizeof(what), "list fds of pid %d", pid);
            if (pid == 1)
                blocked(what, errno);
            else
                printf("GONE %s: %s\n", what, strerror(errno));
            continue;
        }
        struct dirent *f;
        while ((f = readdir(fdd))) {
            if (f->d_name[0] == '.') continue;
            if (pid == getpid() && atoi(f->d_name) == dirfd(fdd)) continue;
            char lp[400], t[256];
            snprintf(lp, sizeof(lp), "%s/%s", p, f->d_name);
            ssize_t n = readlink(lp, t, sizeof(t) - 1);
            t[n > 0 ? n : 0] = 0;
            if (pid == 1) {
                char d2[600];
                snprintf(d2, sizeof(d2), "fd %s of init: %s", f->d_name, t);
                escape("list fds of pid 1", d2);
            }
            printf("FD %d %s %s\n", pid, f->d_name, t);
        }
        closedir(fdd);
    }
    closedir(d);
    return escaped;
}

/* Symlink/rename race against the file tools (CVE-2018-15664 docker cp,
 * CVE-2021-30465 runc mount race, CVE-2017-1002101 k8s subpath): `swap A B MS`
 * exchanges A and B with renameat2(RENAME_EXCHANGE) in bursts of 256 (an
 * even count, so each burst ends where it began) as fast as it can, resting
 * 0.5 ms between bursts: the tools then also meet the unswapped tree, so a
 * test can assert they worked at all (a loaded 2-core machine otherwise
 * starves them of every consistent moment). */
static volatile sig_atomic_t swap_stop;
static void on_term(int sig)
{
    (void)sig;
    swap_stop = 1;
}

static int v_swap(int argc, char **argv)
{
    if (argc < 5) return 2;
    signal(SIGTERM, on_term); /* stopped by the test: print the count */
    int64_t end = now_ms() + atol(argv[4]);
    long n = 0;
    while (!swap_stop && now_ms() < end) {
        for (int i = 0; i < 256; i++)
            if (syscall(SYS_renameat2, AT_FDCWD, argv[2], AT_FDCWD, argv[3], 2 /* RENAME_EXCHANGE */) == 0)
                n++;
        usleep(500);
    }
    printf("OK swapped %ld times\n", n);
    return n > 0 ? 0 : 1;
}

/* ptrace and its relatives against processes of the same sandbox (a sibling
 * command, init): seccomp denies ptrace, process_vm_*, pidfd_getfd, kcmp;
 * init is non-dumpable. `ptrace PID...` (signals between siblings are
 * legitimate and not tried here). */
static int v_ptrace(int argc, char **argv)
{
    for (int i = 2; i < argc; i++) {
        pid_t pid = atoi(argv[i]);
        char what[128];
        snprintf(what, sizeof(what), "ptrace(ATTACH) %d", pid);
        verdict(what, ptrace(PTRACE_ATTACH, pid, 0, 0));
        snprintf(what, sizeof(what), "ptrace(SEIZE) %d", pid);
        verdict(what, ptrace(PTRACE_SEIZE, pid, 0, 0));
        char buf[16];
        struct iovec l = {buf, sizeof(buf)}, r = {(void *)0x400000, sizeof(buf)};
        snprintf(what, sizeof(what), "process_vm_readv %d", pid);
        verdict(what, syscall(SYS_process_vm_readv, pid, &l, 1, &r, 1, 0));
        snprintf(what, sizeof(what), "process_vm_writev %d", pid);
        verdict(what, syscall(SYS_process_vm_writev, pid, &l, 1, &r, 1, 0));
        int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
        snprintf(what, sizeof(what), "pidfd_getfd %d fd 0..9", pid);
        long got = -1;
        int e = EBADF;
        for (int fd = 0; pfd >= 0 && fd < 10 && got < 0; fd++) {
            got = syscall(SYS_pidfd_getfd, pfd, fd, 0);
            if (got < 0) e = errno;
        }
        errno = e;
        verdict(what, got);
        if (pfd >= 0) close(pfd);
        snprintf(what, sizeof(what), "kcmp %d", pid);
        verdict(what, syscall(SYS_kcmp, getpid(), pid, 0 /* KCMP_FILE */, 0, 0));
        char p[64];
        snprintf(p, sizeof(p), "/proc/%d/mem", pid);
        if (pid == 1) {
            try_open(p, O_RDWR); /* init: non-dumpable */
        } else {
            /* a sibling is the agent's own process, same uid, dumpable:
             * its memory is the agent's already (not judged) */
            int fd = open(p, O_RDWR | O_CLOEXEC);
            printf("OK %s of a sibling: %s (same trust domain)\n", p, fd >= 0 ? "opens" : "refused");
            if (fd >= 0) close(fd);
        }
    }
    return escaped;
}

/* Abstract unix sockets are scoped to the network namespace: `abstract NAME`
 * connects to @NAME (a listener the test runs on the host). */
static int v_abstract(int argc, char **argv)
{
    if (argc < 3) return 2;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(argv[2]);
    if (len > sizeof(sa.sun_path) - 2) return 2;
    memcpy(sa.sun_path + 1, argv[2], len);
    socklen_t sl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len);
    for (int type = 0; type < 2; type++) {
        int fd = socket(AF_UNIX, (type ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            blocked("socket(AF_UNIX)", errno);
            continue;
        }
        char what[200];
        snprintf(what, sizeof(what), "connect to the host's abstract socket @%s (%s)", argv[2],
                 type ? "dgram" : "stream");
        if (connect(fd, (struct sockaddr *)&sa, sl) < 0) {
            blocked(what, errno);
        } else {
            char buf[64] = {0};
            ssize_t n = type ? 0 : read(fd, buf, sizeof(buf) - 1);
            escape(what, n > 0 ? buf : "connected");
        }
        close(fd);
    }
    /* positive control: our own abstract listener works inside */
    int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un me = {.sun_family = AF_UNIX};
    memcpy(me.sun_path + 1, "shed-probe-inside", 17);
    socklen_t ml = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 18);
    int rc = l >= 0 && bind(l, (struct sockaddr *)&me, ml) == 0 && listen(l, 1) == 0 ? 0 : -1;
    int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (rc == 0) rc = connect(c, (struct sockaddr *)&me, ml);
    control("an abstract socket of our own inside the sandbox", rc);
    close(c);
    close(l);
    return escaped || controls_failed;
}

/* cgroup escapes: CVE-2022-0492 (release_agent), the 2019 "notify_on_release"
 * container escape, mounting cgroupfs, moving into another cgroup. */
static int v_cgroup(void)
{
    verdict("mount cgroup (v1, memory)", mount("cgroup", "/tmp", "cgroup", 0, "memory"));
    verdict("mount cgroup (v1, none,name=x with release_agent)",
            mount("cgroup", "/tmp", "cgroup", 0, "none,name=shedx"));
    verdict("mount cgroup2", mount("cgroup2", "/tmp", "cgroup2", 0, NULL));
    static const char *const W[] = {"/sys/fs/cgroup/release_agent", "/sys/fs/cgroup/memory/release_agent",
                                    "/sys/fs/cgroup/memory/notify_on_release",
                                    "/sys/fs/cgroup/cgroup.procs", "/sys/fs/cgroup/memory/cgroup.procs",
                                    "/sys/fs/cgroup/unified/cgroup.procs", "/sys/kernel/uevent_helper",
                                    "/proc/sys/kernel/core_pattern", "/proc/sys/kernel/modprobe",
                                    "/proc/sys/kernel/hotplug", "/proc/sysrq-trigger",
                                    "/proc/sys/fs/binfmt_misc/register", "/proc/sys/kernel/hostname",
                                    "/proc/sys/kernel/ns_last_pid", "/proc/self/setgroups",
                                    "/proc/self/uid_map", "/proc/self/gid_map"};
    for (size_t i = 0; i < sizeof(W) / sizeof(W[0]); i++) try_open(W[i], O_WRONLY);
    /* the host's cgroup tree is not in view */
    DIR *d = opendir("/sys/fs/cgroup");
    if (!d) {
        blocked("list /sys/fs/cgroup", errno);
    } else {
        escape("list /sys/fs/cgroup", "visible");
        closedir(d);
    }
    /* our cgroup, as the (cgroup) namespace shows it */
    char b[512];
    int fd = open("/proc/self/cgroup", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, b, sizeof(b) - 1) : -1;
    if (fd >= 0) close(fd);
    b[n > 0 ? n : 0] = 0;
    for (char *l = strtok(b, "\n"); l; l = strtok(NULL, "\n")) printf("OK /proc/self/cgroup: %s\n", l);
    return escaped;
}

/* The kernel surfaces named by CVEs of the last years: keyrings
 * (CVE-2016-0728), userfaultfd (race amplifier in many), io_uring
 * (CVE-2022-29582, CVE-2023-2598), perf (CVE-2013-2094), bpf (CVE-2021-3490),
 * kexec, modules, chroot/pivot_root, clone3 with namespace flags, setns,
 * i386/x32 syscalls (seccomp bypass of CVE-2009-0835 kind), personality. */
static int v_kernel2(void)
{
    verdict("request_key", syscall(SYS_request_key, "user", "shed-probe", NULL, -3));
    verdict("keyctl(JOIN_SESSION_KEYRING)", syscall(SYS_keyctl, 1, "shed-probe"));
    verdict("userfaultfd(UFFD_USER_MODE_ONLY)", syscall(SYS_userfaultfd, 1));
    int uf = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    verdict("open /dev/userfaultfd", uf);
    verdict("io_uring_enter", syscall(SYS_io_uring_enter, 0, 0, 0, 0, NULL, 0));
    verdict("io_uring_register", syscall(SYS_io_uring_register, 0, 0, NULL, 0));
    verdict("kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, 0));
    verdict("kexec_file_load", syscall(SYS_kexec_file_load, -1, -1, 0, "", 0));
    verdict("init_module", syscall(SYS_init_module, "", 0, ""));
    verdict("finit_module", syscall(SYS_finit_module, 0, "", 0));
    verdict("delete_module", syscall(SYS_delete_module, "loop", 0));
    verdict("chroot /", chroot("/"));
    verdict("pivot_root . .", syscall(SYS_pivot_root, ".", "."));
    verdict("mount --bind / /tmp", mount("/", "/tmp", NULL, MS_BIND | MS_REC, NULL));
    verdict("move_mount", syscall(SYS_move_mount, -1, "", -1, "/tmp", 0));
    verdict("mount_setattr", syscall(SYS_mount_setattr, AT_FDCWD, "/", 0, NULL, 0));
    static const struct {
        unsigned long long flag;
        const char *name;
    } NS[] = {{CLONE_NEWNS, "NEWNS"}, {CLONE_NEWNET, "NEWNET"}, {CLONE_NEWPID, "NEWPID"},
              {CLONE_NEWCGROUP, "NEWCGROUP"}, {0x80, "NEWTIME"}, {CLONE_NEWIPC, "NEWIPC"},
              {CLONE_NEWUTS, "NEWUTS"}, {CLONE_NEWUSER | CLONE_NEWNS, "NEWUSER|NEWNS"}};
    for (size_t i = 0; i < sizeof(NS) / sizeof(NS[0]); i++) {
        char what[64];
        struct clone_args ca = {.flags = NS[i].flag, .exit_signal = SIGCHLD};
        long rc = syscall(SYS_clone3, &ca, sizeof(ca));
        if (rc == 0) _exit(0);
        if (rc > 0) waitpid((pid_t)rc, NULL, 0);
        snprintf(what, sizeof(what), "clone3(CLONE_%s)", NS[i].name);
        verdict(what, rc);
        if (NS[i].flag == 0x80) continue; /* clone() has no room for CLONE_NEWTIME (exit signal bits) */
        snprintf(what, sizeof(what), "clone(CLONE_%s)", NS[i].name);
        rc = syscall(SYS_clone, (unsigned long)NS[i].flag | SIGCHLD, 0, 0, 0, 0);
        if (rc == 0) _exit(0);
        if (rc > 0) waitpid((pid_t)rc, NULL, 0);
        verdict(what, rc);
    }
    static const char *const NSF[] = {"/proc/1/ns/mnt", "/proc/1/ns/user", "/proc/1/ns/net",
                                      "/proc/self/ns/mnt", "/proc/self/ns/cgroup", "/proc/self/ns/uts",
                                      "/proc/self/ns/ipc", "/proc/self/ns/time"};
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
    /* i386 int 0x80 and x32: seccomp kills (run in children) */
    static const char *const ABI[] = {"i386 int 0x80 getpid", "x32 getpid"};
    for (int k = 0; k < 2; k++) {
        pid_t p = fork();
        if (p == 0) {
            long r;
            if (k == 0) {
                long eax = 20; /* i386 getpid */
                __asm__ volatile("int $0x80" : "+a"(eax) : : "memory");
                r = eax;
            } else {
                r = syscall(0x40000000L | SYS_getpid);
            }
            _exit(r > 0 ? 0 : 3);
        }
        int st = 0;
        waitpid(p, &st, 0);
        char what[96];
        if (WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS) {
            snprintf(what, sizeof(what), "%s (killed by SIGSYS)", ABI[k]);
            printf("BLOCKED %s: SIGSYS\n", what);
        } else {
            escape(ABI[k], WIFEXITED(st) && WEXITSTATUS(st) == 0 ? "ran" : "not killed");
        }
    }
    /* personality: allowed (harmless under NNP and with uid 0 unmapped);
     * READ_IMPLIES_EXEC etc. give no privilege. Shown, not judged. */
    int per = personality(0xffffffff);
    printf("OK personality query: %#x (allowed; no privilege attached)\n", per);
    return escaped;
}

/* /sys, /dev, uts: `sysdev` */
static int v_sysdev(void)
{
    static const char *const DEVS[] = {"/dev/mem", "/dev/kmem", "/dev/port", "/dev/kmsg", "/dev/sda",
                                       "/dev/vda", "/dev/nvme0n1", "/dev/loop0", "/dev/loop-control",
                                       "/dev/console", "/dev/tty0", "/dev/tty1", "/dev/fuse",
                                       "/dev/net/tun", "/dev/kvm", "/dev/vsock", "/dev/cpu/0/msr",
                                       "/dev/uinput", "/dev/userfaultfd", "/dev/mapper/control",
                                       "/dev/btrfs-control", "/dev/autofs", "/dev/vhost-net",
                                       "/dev/snapshot", "/dev/watchdog", "/dev/hpet"};
    for (size_t i = 0; i < sizeof(DEVS) / sizeof(DEVS[0]); i++) try_open(DEVS[i], O_RDONLY);
    /* positive control: the harmless devices are there */
    int z = open("/dev/zero", O_RDONLY | O_CLOEXEC);
    control("open /dev/zero", z);
    if (z >= 0) close(z);
    /* every entry of /dev is one we expect */
    static const char *const OKDEV[] = {"null", "zero", "full", "random", "urandom", "tty", "pts",
                                        "ptmx", "shm", "fd", "stdin", "stdout", "stderr"};
    DIR *d = opendir("/dev");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        int known = 0;
        for (size_t i = 0; i < sizeof(OKDEV) / sizeof(OKDEV[0]); i++)
            if (!strcmp(e->d_name, OKDEV[i])) known = 1;
        char what[300];
        snprintf(what, sizeof(what), "/dev/%s", e->d_name);
        if (!known) escape(what, "unexpected entry in /dev");
    }
    if (d) closedir(d);
    static const char *const SYSW[] = {"/sys/kernel/uevent_helper", "/sys/power/state",
                                       "/sys/kernel/mm/transparent_hugepage/enabled",
                                       "/sys/class/net/lo/mtu", "/sys/module/kernel/parameters/panic",
                                       "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                       "/sys/kernel/debug/x", "/sys/firmware/efi/efivars/x",
                                       "/sys/kernel/security/apparmor/.access"};
    for (size_t i = 0; i < sizeof(SYSW) / sizeof(SYSW[0]); i++) try_open(SYSW[i], O_WRONLY);
    verdict("mount sysfs", mount("sysfs", "/tmp", "sysfs", 0, NULL));
    verdict("mount proc (a second one)", mount("proc", "/tmp", "proc", 0, NULL));
    verdict("mount devpts", mount("devpts", "/tmp", "devpts", 0, "newinstance"));
    verdict("sethostname", sethostname("escaped", 7));
    verdict("setdomainname", setdomainname("escaped", 7));
    struct utsname u;
    uname(&u);
    printf("OK hostname inside: %s\n", u.nodename);
    return escaped || controls_failed;
}

/* The sandbox's own loopback: binding any port is its own business (its own
 * netns), but nothing reaches the host's. `ports PORT...` binds each port on
 * 127.0.0.1 inside and connects to it (positive control), then connects to
 * the same ports, which on the host have listeners, from a fresh socket
 * (must reach only our own listener: the reply is empty, not the host's). */
static int v_ports(int argc, char **argv)
{
    for (int i = 2; i < argc; i++) {
        int port = atoi(argv[i]);
        char what[96];
        snprintf(what, sizeof(what), "connect 127.0.0.1:%d (a host loopback service)", port);
        int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
        if (connect(c, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            blocked(what, errno);
        } else {
            char buf[64] = {0};
            ssize_t n = read(c, buf, sizeof(buf) - 1);
            escape(what, n > 0 ? buf : "connected");
        }
        close(c);
        /* the same port is free inside: bind and serve ourselves */
        int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        int rc = bind(l, (struct sockaddr *)&sa, sizeof(sa));
        if (rc == 0) rc = listen(l, 1);
        c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (rc == 0) rc = connect(c, (struct sockaddr *)&sa, sizeof(sa));
        snprintf(what, sizeof(what), "bind+connect 127.0.0.1:%d inside (own netns)", port);
        control(what, rc);
        close(c);
        close(l);
    }
    /* the egress ports are init's: taken */
    static const int EG[] = {3128, 1080};
    for (int i = 0; i < 2; i++) {
        int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)EG[i])};
        inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
        char what[96];
        int one = 1; /* SO_REUSEPORT: join the listener's group if it had one */
        setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        setsockopt(l, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
        snprintf(what, sizeof(what), "bind 127.0.0.1:%d with SO_REUSEPORT (hijack an egress listener)", EG[i]);
        verdict(what, bind(l, (struct sockaddr *)&sa, sizeof(sa)));
        close(l);
    }
    /* other addresses: only lo exists */
    int u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in out = {.sin_family = AF_INET, .sin_port = htons(53)};
    inet_pton(AF_INET, "8.8.8.8", &out.sin_addr);
    verdict("connect udp 8.8.8.8:53 (a route out)", connect(u, (struct sockaddr *)&out, sizeof(out)));
    close(u);
    return escaped || controls_failed;
}

/* `argv KB`: exec ourselves with a huge argument and environment; the
 * kernel's limit (E2BIG) or success, never a crash of anything but us. */
static int v_bigargs(int argc, char **argv)
{
    long kb = argc > 2 ? atol(argv[2]) : 4096;
    size_t n = (size_t)kb * 1024;
    char *big = malloc(n + 1);
    if (!big) return 2;
    memset(big, 'a', n);
    big[n] = 0;
    char *env = malloc(n + 8);
    memcpy(env, "BIG=", 4);
    memcpy(env + 4, big, n + 1);
    char *av[] = {argv[0], "uid", big, NULL}, *ev[] = {env, NULL};
    pid_t p = fork();
    if (p == 0) {
        execve("/proc/self/exe", av, ev);
        _exit(errno == E2BIG ? 7 : 8);
    }
    int st = 0;
    waitpid(p, &st, 0);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 7)
        printf("BLOCKED execve with %ld KB argv and env: E2BIG\n", kb);
    else if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        printf("OK execve with %ld KB argv and env: ran (within the kernel's limit)\n", kb);
    else
        escape("execve with huge argv", "unexpected status");
    return escaped;
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

/* ---- escape campaign, second round (issue #10, escape2_*) ---- */

/* ipc host MQ KEY: create a POSIX queue /MQ and a SysV segment and queue with
 * KEY (on the host; they persist). ipc clean MQ KEY: remove them (host).
 * ipc check MQ KEY (inside): the host's must be invisible, our own must work. */
static int v_ipc(int argc, char **argv)
{
    if (argc < 5) return fprintf(stderr, "usage: probe ipc host|clean|check MQ KEY\n"), 2;
    char mq[300];
    snprintf(mq, sizeof(mq), "/%s", argv[3]);
    key_t key = (key_t)strtol(argv[4], NULL, 0);
    if (!strcmp(argv[2], "host")) {
        struct mq_attr a = {.mq_maxmsg = 4, .mq_msgsize = 64};
        mqd_t q = mq_open(mq, O_CREAT | O_RDWR | O_CLOEXEC, 0666, &a);
        if (q == (mqd_t)-1) return printf("FAILED host mq_open %s: %s\n", mq, strerror(errno)), 1;
        mq_send(q, "host-secret", 11, 0);
        mq_close(q);
        if (shmget(key, 4096, IPC_CREAT | 0666) < 0) return printf("FAILED host shmget: %s\n", strerror(errno)), 1;
        if (msgget(key, IPC_CREAT | 0666) < 0) return printf("FAILED host msgget: %s\n", strerror(errno)), 1;
        return printf("OK host ipc objects made\n"), 0;
    }
    if (!strcmp(argv[2], "clean")) {
        mq_unlink(mq);
        int id = shmget(key, 0, 0);
        if (id >= 0) shmctl(id, IPC_RMID, NULL);
        id = msgget(key, 0);
        if (id >= 0) msgctl(id, IPC_RMID, NULL);
        return 0;
    }
    char what[400];
    snprintf(what, sizeof(what), "mq_open host queue %s", mq);
    mqd_t q = mq_open(mq, O_RDWR | O_CLOEXEC);
    if (q == (mqd_t)-1) blocked(what, errno);
    else escape(what, "opened the host's queue"), mq_close(q);
    snprintf(what, sizeof(what), "shmget host key 0x%x", (unsigned)key);
    verdict(what, shmget(key, 0, 0));
    snprintf(what, sizeof(what), "msgget host key 0x%x", (unsigned)key);
    verdict(what, msgget(key, 0));
    /* walk every SysV id the kernel shows us */
    int found = 0;
    for (int i = 0; i < 4096; i++) {
        struct shmid_ds ds;
        if (shmctl(i, SHM_STAT, &ds) >= 0 && ds.shm_perm.__key == key) found = 1;
    }
    if (found) escape("SHM_STAT scan", "the host's segment is listed");
    else printf("BLOCKED SHM_STAT scan: the host's segment is not listed\n");
    /* positive controls: the sandbox's own IPC works */
    struct mq_attr a = {.mq_maxmsg = 4, .mq_msgsize = 64};
    char own[310];
    snprintf(own, sizeof(own), "%s-own", mq);
    q = mq_open(own, O_CREAT | O_RDWR | O_CLOEXEC, 0600, &a);
    if (q == (mqd_t)-1) printf("FAILED own mq_open: %s\n", strerror(errno)), escaped = 1;
    else printf("OK own POSIX queue\n"), mq_close(q), mq_unlink(own);
    int id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
    if (id < 0) printf("FAILED own shmget: %s\n", strerror(errno)), escaped = 1;
    else printf("OK own SysV segment\n"), shmctl(id, IPC_RMID, NULL);
    return escaped;
}

/* net2 [STUBPORT]: raw and ICMP sockets, UDP out, garbage to the DNS stub
 * followed by a real query that must still be answered (positive control). */
static int v_net2(int argc, char **argv)
{
    int port = argc > 2 ? atoi(argv[2]) : 53;
    verdict("socket(AF_INET, SOCK_RAW, ICMP)", socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP));
    verdict("socket(AF_INET6, SOCK_RAW, ICMPV6)", socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMPV6));
    verdict("socket(AF_INET, SOCK_DGRAM, ICMP) (ping socket)", socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, IPPROTO_ICMP));
    verdict("socket(AF_INET6, SOCK_DGRAM, ICMPV6) (ping socket)",
            socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, IPPROTO_ICMPV6));
    int u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in g = {.sin_family = AF_INET, .sin_port = htons(53)};
    inet_pton(AF_INET, "8.8.8.8", &g.sin_addr);
    verdict("UDP sendto 8.8.8.8:53", sendto(u, "x", 1, 0, (struct sockaddr *)&g, sizeof(g)));
    int u6 = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in6 g6 = {.sin6_family = AF_INET6, .sin6_port = htons(53)};
    inet_pton(AF_INET6, "2001:4860:4860::8888", &g6.sin6_addr);
    verdict("UDP sendto [2001:4860:4860::8888]:53", sendto(u6, "x", 1, 0, (struct sockaddr *)&g6, sizeof(g6)));
    inet_pton(AF_INET6, "::ffff:8.8.8.8", &g6.sin6_addr);
    verdict("UDP sendto [::ffff:8.8.8.8]:53", sendto(u6, "x", 1, 0, (struct sockaddr *)&g6, sizeof(g6)));
    /* garbage to the stub: truncated header, a compression loop, 64 KB, a response bit */
    struct sockaddr_in st = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &st.sin_addr);
    static unsigned char junk[65000];
    unsigned char loop[] = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1};
    unsigned char resp[] = {0x12, 0x35, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 1, 'a', 0, 0, 1, 0, 1};
    sendto(u, junk, 5, 0, (struct sockaddr *)&st, sizeof(st));
    sendto(u, loop, sizeof(loop), 0, (struct sockaddr *)&st, sizeof(st));
    sendto(u, resp, sizeof(resp), 0, (struct sockaddr *)&st, sizeof(st));
    memset(junk, 0xff, sizeof(junk));
    sendto(u, junk, sizeof(junk), 0, (struct sockaddr *)&st, sizeof(st));
    /* drain whatever the stub answered to those, then ask a real question */
    struct timeval tv = {.tv_sec = 0, .tv_usec = 300000};
    setsockopt(u, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    unsigned char buf[1500];
    while (recv(u, buf, sizeof(buf), 0) > 0) {
    }
    unsigned char q[] = {0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 7, 'e', 'x', 'a', 'm', 'p', 'l',
                         'e', 4, 't', 'e', 's', 't', 0, 0, 1, 0, 1};
    tv.tv_sec = 5;
    setsockopt(u, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    int answered = 0;
    for (int i = 0; i < 3 && !answered; i++) {
        sendto(u, q, sizeof(q), 0, (struct sockaddr *)&st, sizeof(st));
        ssize_t n;
        while ((n = recv(u, buf, sizeof(buf), 0)) > 0)
            if (n >= 12 && buf[0] == 0xab && buf[1] == 0xcd && (buf[2] & 0x80)) {
                answered = 1;
                break;
            }
    }
    if (answered) printf("OK the DNS stub answers after garbage (rcode %d)\n", buf[3] & 0xf);
    else printf("FAILED the DNS stub did not answer after garbage\n"), escaped = 1;
    return escaped;
}

static void *thr_wait(void *a)
{
    (void)a;
    pause();
    return NULL;
}

/* threads N: start up to N threads; the pids limit must stop them. */
static int v_threads(int argc, char **argv)
{
    int want = argc > 2 ? atoi(argv[2]) : 10000, n = 0, e = 0;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setstacksize(&at, 65536);
    for (; n < want; n++) {
        pthread_t t;
        if ((e = pthread_create(&t, &at, thr_wait, NULL)) != 0) break;
    }
    char what[96];
    snprintf(what, sizeof(what), "threads (stopped after %d of %d)", n, want);
    if (n < want) blocked(what, e);
    else escape(what, "all started");
    if (n < 1) printf("FAILED no thread at all\n"), escaped = 1;
    else printf("OK %d threads ran\n", n);
    fflush(stdout);
    _exit(escaped);
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
               "  syscall-table           check seccomp verdicts read from stdin\n"
               "  exe [DEV INO MS]        /proc/self/exe, /proc/1/* (CVE-2019-5736); scan /proc/*/exe\n"
               "  tty                     TIOCSTI, TIOCLINUX, TIOCSCTTY on fd 0 (CVE-2017-5226)\n"
               "  fdscan                  every fd of every visible process\n"
               "  swap A B MS             RENAME_EXCHANGE A and B for MS ms (race the file tools)\n"
               "  abstract NAME           connect to the abstract unix socket @NAME\n"
               "  cgroup                  release_agent, cgroup mounts, core_pattern (CVE-2022-0492)\n"
               "  kernel2                 keyrings, uffd, io_uring, kexec, modules, clone3, i386/x32\n"
               "  sysdev                  /dev contents, /sys writes, sysfs/proc mounts, hostname\n"
               "  ports PORT...           host loopback ports vs the sandbox's own loopback\n"
               "  bigargs [KB]            execve with a huge argv and environment\n"
               "  ptrace PID...           ptrace, process_vm_*, pidfd_getfd, kcmp, /proc/PID/mem\n"
               "  ipc host|clean|check MQ KEY  POSIX/SysV IPC of the host vs the sandbox's own\n"
               "  net2 [STUBPORT]         raw/ICMP sockets, UDP out, garbage to the DNS stub\n"
               "  threads [N]             start N threads (vs the pids limit)\n");
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
    if (!strcmp(v, "exe")) return v_exe(argc, argv);
    if (!strcmp(v, "tty")) return v_tty();
    if (!strcmp(v, "fdscan")) return v_fdscan();
    if (!strcmp(v, "swap")) return v_swap(argc, argv);
    if (!strcmp(v, "abstract")) return v_abstract(argc, argv);
    if (!strcmp(v, "cgroup")) return v_cgroup();
    if (!strcmp(v, "kernel2")) return v_kernel2();
    if (!strcmp(v, "sysdev")) return v_sysdev();
    if (!strcmp(v, "ports")) return v_ports(argc, argv);
    if (!strcmp(v, "bigargs")) return v_bigargs(argc, argv);
    if (!strcmp(v, "ptrace")) return v_ptrace(argc, argv);
    if (!strcmp(v, "ipc")) return v_ipc(argc, argv);
    if (!strcmp(v, "net2")) return v_net2(argc, argv);
    if (!strcmp(v, "threads")) return v_threads(argc, argv);
    fprintf(stderr, "probe: unknown verb '%s'\n", v);
    return 2;
}
