/* Fuzzes the file tools' input decoding and path confinement: tools_call()
 * for read, write, edit, glob and grep with agent-chosen JSON input, in a
 * workdir (/mnt/w) next to a directory it must never reach (/mnt/o, holding
 * a marker text and symlinks pointing at it from inside the workdir).
 *
 * Runs in a private mount namespace where every mount is read-only except a
 * tmpfs on /mnt and the fuzzer's own output directory (build/fuzz), so a
 * confinement bug cannot damage the host: it shows up as a changed /mnt/o or
 * as the marker in a result. Never runs bash (it is unconfined by design:
 * the sandbox confines it).
 *
 * Input: first byte picks the tool; the rest is the JSON input object. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/mount.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/json.h"
#include "tools/tools.h"

#define ROOT    "/mnt"
#define WORK    ROOT "/w"
#define OUTSIDE ROOT "/o"

static tools_t *T;
/* Random per run, and searched for with a plain loop, so the fuzzer cannot
 * learn it from intercepted comparisons and write it into the workdir. */
static char MARKER[40];
static unsigned long long outside_sig;

static void die(const char *what)
{
    fprintf(stderr, "fuzz_tools_fs setup: %s: %s\n", what, strerror(errno));
    abort();
}

static void put(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) die(path);
    if (write(fd, text, strlen(text)) != (ssize_t)strlen(text)) die(path);
    close(fd);
}

/* A signature of everything under /mnt/o and of /mnt itself: names, sizes,
 * modes, mtimes, link targets. Any change means a tool reached outside. */
static unsigned long long sig;
static int sig_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)flag;
    (void)f;
    for (const char *c = p; *c; c++) sig = sig * 1099511628211ull ^ (unsigned char)*c;
    sig = sig * 31 + (unsigned long long)st->st_size;
    sig = sig * 31 + st->st_mode;
    sig = sig * 31 + (unsigned long long)st->st_mtim.tv_sec * 1000000000ull + (unsigned long long)st->st_mtim.tv_nsec;
    sig = sig * 31 + st->st_nlink;
    return 0;
}

static unsigned long long outside_signature(void)
{
    sig = 14695981039346656037ull;
    if (nftw(OUTSIDE, sig_one, 16, FTW_PHYS) != 0) die("nftw " OUTSIDE);
    /* /mnt's own entries: only w and o may exist */
    struct stat st;
    if (stat(ROOT, &st) < 0) die(ROOT);
    sig = sig * 31 + st.st_nlink;
    sig = sig * 31 + (unsigned long long)st.st_mtim.tv_sec * 1000000000ull + (unsigned long long)st.st_mtim.tv_nsec;
    return sig;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    if (f->level > 0) remove(p);
    return 0;
}

static void reset_workdir(void)
{
    nftw(WORK, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    if (mkdir(WORK "/sub", 0755) < 0 && errno != EEXIST) die("mkdir sub");
    put(WORK "/a.txt", "alpha\nbeta\ngamma\n");
    put(WORK "/sub/b.c", "int main(void) { return 0; }\n");
    if (symlink(OUTSIDE, WORK "/out") < 0) die("symlink out");
    if (symlink("../o/secret", WORK "/rel") < 0) die("symlink rel");
    if (symlink(OUTSIDE "/secret", WORK "/sub/abs") < 0) die("symlink abs");
    if (symlink("sub/../../o", WORK "/dotdot") < 0) die("symlink dotdot");
    if (symlink("a.txt", WORK "/ok-link") < 0) die("symlink ok");
}

static void setup(void)
{
    char cwd[4096];
    if (!getcwd(cwd, sizeof(cwd))) die("getcwd");
    if (unshare(CLONE_NEWNS) < 0) {
        /* not root: a user namespace gives us the right to mount */
        uid_t uid = getuid();
        gid_t gid = getgid();
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0) die("unshare (this harness needs root or user namespaces)");
        char m[64];
        int fd = open("/proc/self/setgroups", O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
            if (write(fd, "deny", 4) < 0) die("setgroups");
            close(fd);
        }
        snprintf(m, sizeof(m), "0 %u 1", uid);
        fd = open("/proc/self/uid_map", O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, m, strlen(m)) < 0) die("uid_map");
        close(fd);
        snprintf(m, sizeof(m), "0 %u 1", gid);
        fd = open("/proc/self/gid_map", O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, m, strlen(m)) < 0) die("gid_map");
        close(fd);
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) die("make / private");
    /* the fuzzer's output stays writable: its own bind mount */
    char out[4200];
    snprintf(out, sizeof(out), "%s/build/fuzz", cwd);
    if (access(out, F_OK) < 0) snprintf(out, sizeof(out), "%s", cwd);
    if (mount(out, out, NULL, MS_BIND | MS_REC, NULL) < 0) die("bind the fuzz output");
    struct mount_attr ro = {.attr_set = MOUNT_ATTR_RDONLY};
    if (syscall(SYS_mount_setattr, AT_FDCWD, "/", AT_RECURSIVE, &ro, sizeof(ro)) < 0) die("mount_setattr / read-only");
    struct mount_attr rw = {.attr_clr = MOUNT_ATTR_RDONLY};
    if (syscall(SYS_mount_setattr, AT_FDCWD, out, AT_RECURSIVE, &rw, sizeof(rw)) < 0) die("mount_setattr output rw");
    if (mount("tmpfs", ROOT, "tmpfs", MS_NOSUID | MS_NODEV, "size=64m,mode=0755") < 0) die("tmpfs on /mnt");
    if (mkdir(WORK, 0755) < 0 || mkdir(OUTSIDE, 0755) < 0 || mkdir(OUTSIDE "/d", 0755) < 0) die("mkdir");
    int ur = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    unsigned char rnd[12];
    if (ur < 0 || read(ur, rnd, sizeof(rnd)) != (ssize_t)sizeof(rnd)) die("/dev/urandom");
    close(ur);
    for (size_t i = 0; i < sizeof(rnd); i++) snprintf(MARKER + 2 * i, 3, "%02x", rnd[i]);
    put(OUTSIDE "/secret", MARKER);
    put(OUTSIDE "/d/deep.txt", MARKER);
    if (symlink(WORK, OUTSIDE "/back") < 0) die("symlink back");
    reset_workdir();
    outside_sig = outside_signature();
    tools_config cfg = {.workdir = WORK, .default_timeout_ms = 5000};
    shed_err err = {0};
    if (tools_new(&cfg, &T, &err) < 0) {
        fprintf(stderr, "tools_new: %s\n", err.msg);
        abort();
    }
}

static bool has_marker(json_t *res)
{
    char *s = json_dumps(res, JSON_COMPACT | JSON_ENSURE_ASCII);
    bool found = false;
    size_t m = strlen(MARKER);
    for (const char *p = s; p && *p && !found; p++) {
        size_t k = 0;
        while (k < m && p[k] == MARKER[k]) k++;
        found = k == m;
    }
    free(s);
    return found;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[] = {"read", "write", "edit", "glob", "grep"};
    static unsigned calls;
    if (!T) setup();
    if (size < 1) return 0;
    const char *name = names[data[0] % 5];
    shed_err err;
    json_t *in = json_parse((const char *)data + 1, size - 1, 1 << 16, 16, &err);
    if (!in) return 0;
    json_t *res = tools_call(T, name, in, 5000, -1);
    if (!res || !json_is_array(json_object_get(res, "content"))) abort();
    if (has_marker(res)) {
        fprintf(stderr, "%s returned the content of a file outside the workdir\n", name);
        abort();
    }
    json_decref(res);
    json_decref(in);
    if (outside_signature() != outside_sig) {
        fprintf(stderr, "%s changed something outside the workdir\n", name);
        abort();
    }
    if (++calls % 500 == 0) reset_workdir(); /* keep the workdir small */
    return 0;
}
