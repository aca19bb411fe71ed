/* Unit tests for src/sandbox: policy validation, the control channel's
 * framing, the cgroup v2 backend against a directory tree shaped like
 * cgroupfs (this machine's controllers are v1), the seccomp rule table, and
 * one real create/exec/destroy through the library. */
#include "test.h"

#include "base/cleanup.h"
#include "base/json.h"
#include "sandbox/cgroup.h"
#include "sandbox/ctl.h"
#include "sandbox/internal.h"
#include "sandbox/sandbox.h"

#include <dirent.h>
#include <linux/filter.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static sandbox_policy *parse(const char *text, shed_err *err)
{
    shed_err perr;
    json_t *doc = json_parse(text, strlen(text), 1 << 20, 32, &perr);
    if (!doc) test_fail(__FILE__, __LINE__, "bad test JSON: %s", perr.msg);
    sandbox_policy *p = NULL;
    int rc = sandbox_policy_parse(doc, &p, err);
    json_decref(doc);
    return rc < 0 ? NULL : p;
}

TEST(policy_defaults)
{
    sandbox_policy *p = NULL;
    shed_err err;
    ASSERT_EQ_INT(sandbox_policy_load(NULL, &p, &err), 0);
    ASSERT_EQ_INT(strlen(sandbox_policy_digest(p)), 64);
    ASSERT_TRUE(sandbox_policy_network(p) == NULL);
    ASSERT_EQ_INT(p->memory_max, 1ull << 30);
    ASSERT_EQ_INT(p->pids_max, 512);
    ASSERT_EQ_INT(p->workspace_files_max, 1000000);
    ASSERT_EQ_INT(p->deny_errno, EPERM);
    ASSERT_EQ_INT(p->waived, 0);
    ASSERT_TRUE(p->bpf != NULL && p->bpf_len > 10);
    sandbox_policy_free(p);
}

TEST(policy_errors_name_the_key)
{
    static const char *const CASES[][2] = {
        {"{\"bogus\":1}", "'bogus'"},
        {"{\"limits\":{\"memMax\":1}}", "'limits.memMax'"},
        {"{\"limits\":{\"memoryMax\":\"lots\"}}", "'limits.memoryMax'"},
        {"{\"limits\":{\"memoryMax\":1024}}", "at least 8M"},
        {"{\"limits\":{\"pidsMax\":\"x\"}}", "'limits.pidsMax'"},
        {"{\"limits\":{\"cpus\":\"two\"}}", "'limits.cpus'"},
        {"{\"limits\":{\"timeoutSeconds\":-1}}", "'limits.timeoutSeconds'"},
        {"{\"limits\":{\"workspaceFilesMax\":5}}", "'limits.workspaceFilesMax' must be between 100"},
        {"{\"limits\":{\"workspaceFilesMax\":\"1M\"}}", "'limits.workspaceFilesMax'"},
        {"{\"network\":[]}", "'network' must be an object"},
        {"{\"network\":{\"allowedDomains\":\"x\"}}", "'network.allowedDomains'"},
        {"{\"network\":{\"allowedDomains\":[\"a\",3]}}", "'network.allowedDomains[1]'"},
        {"{\"network\":{\"allowUnixSockets\":true}}", "'network.allowUnixSockets'"},
        {"{\"network\":{\"staticHosts\":{\"a\":1}}}", "'network.staticHosts.a'"},
        {"{\"filesystem\":{\"allowWrite\":[\"relative\"]}}", "'filesystem.allowWrite[0]'"},
        {"{\"filesystem\":{\"denyRead\":[\"/home/*/x\"]}}", "globs are not supported"},
        {"{\"filesystem\":{\"denyRead\":[\"/a/../b\"]}}", "'filesystem.denyRead[0]'"},
        {"{\"filesystem\":{\"allowRead\":[]}}", "'filesystem.allowRead'"},
        {"{\"mounts\":[{\"source\":\"/opt\",\"target\":\"/proc/x\"}]}", "reserved"},
        {"{\"mounts\":[{\"source\":\"/opt\",\"target\":\"/\"}]}", "reserved"},
        {"{\"mounts\":[{\"source\":\"/opt\",\"writable\":\"yes\"}]}", "'mounts[0].writable'"},
        {"{\"mounts\":[{\"src\":\"/opt\"}]}", "'mounts[0].src'"},
        {"{\"environment\":{\"1BAD\":\"x\"}}", "'environment.1BAD'"},
        {"{\"environment\":{\"OK\":1}}", "'environment.OK'"},
        {"{\"rootfs\":\"rel\"}", "'rootfs'"},
        {"{\"waive\":[\"userns\"]}", "'waive[0]'"},
        {"{\"seccomp\":{\"denyErrno\":\"EBOGUS\"}}", "'seccomp.denyErrno'"},
        {"[]", "must be an object"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(CASES); i++) {
        shed_err err = {0};
        sandbox_policy *p = parse(CASES[i][0], &err);
        if (p) test_fail(__FILE__, __LINE__, "accepted %s", CASES[i][0]);
        ASSERT_CONTAINS(err.msg, CASES[i][1]);
    }
}

TEST(policy_full_document)
{
    shed_err err;
    sandbox_policy *p = parse(
        "{\"comment\":\"x\",\"network\":{\"allowedDomains\":[\"example.com\",\"*.pypi.org\"],"
        "\"deniedDomains\":[\"bad.example.com\"],\"staticHosts\":{\"a.test\":\"127.0.0.2\"},"
        "\"allowCidrs\":[\"10.0.0.0/8\"]},"
        "\"filesystem\":{\"allowWrite\":[\"/srv/cache\"],\"denyRead\":[\"/etc/ssl/private\"],"
        "\"denyWrite\":[\"/workspace/.git/hooks\"]},"
        "\"limits\":{\"memoryMax\":\"512M\",\"pidsMax\":64,\"cpus\":1.5,\"nofile\":256,"
        "\"fileSizeMax\":\"1G\",\"tmpSize\":\"64m\",\"workspaceMax\":2147483648,\"workspaceFilesMax\":2000,"
        "\"timeoutSeconds\":3600,\"commandTimeoutSeconds\":1.5},"
        "\"mounts\":[{\"source\":\"/opt/skills\",\"target\":\"/skills\"},"
        "{\"source\":\"/srv/mem\",\"writable\":true}],"
        "\"environment\":{\"LANG\":\"C.UTF-8\"},\"seccomp\":{\"denyErrno\":\"ENOSYS\"},"
        "\"waive\":[\"cgroup\"]}",
        &err);
    if (!p) test_fail(__FILE__, __LINE__, "rejected: %s", err.msg);
    ASSERT_EQ_INT(p->memory_max, 512ull << 20);
    ASSERT_EQ_INT(p->pids_max, 64);
    ASSERT_EQ_INT((int)(p->cpus * 10), 15);
    ASSERT_EQ_INT(p->nofile, 256);
    ASSERT_EQ_INT(p->fsize_max, 1ull << 30);
    ASSERT_EQ_INT(p->tmp_size, 64ull << 20);
    ASSERT_EQ_INT(p->workspace_max, 2147483648ull);
    ASSERT_EQ_INT(p->workspace_files_max, 2000);
    ASSERT_EQ_INT(p->timeout_ms, 3600000);
    ASSERT_EQ_INT(sandbox_policy_command_timeout_ms(p), 1500);
    ASSERT_EQ_INT(p->nmounts, 3);
    ASSERT_EQ_STR(p->mounts[0].target, "/skills");
    ASSERT_FALSE(p->mounts[0].writable);
    ASSERT_EQ_STR(p->mounts[1].target, "/srv/mem");
    ASSERT_TRUE(p->mounts[1].writable);
    ASSERT_EQ_STR(p->mounts[2].source, "/srv/cache"); /* allowWrite = rw bind, same path */
    ASSERT_TRUE(p->mounts[2].writable);
    ASSERT_EQ_STR(p->deny_read[0], "/etc/ssl/private");
    ASSERT_EQ_STR(p->deny_write[0], "/workspace/.git/hooks");
    ASSERT_EQ_STR(p->env[0], "LANG=C.UTF-8");
    ASSERT_EQ_INT(p->deny_errno, ENOSYS);
    ASSERT_EQ_INT(p->waived, SANDBOX_WAIVE_CGROUP);
    json_t *net = sandbox_policy_network(p);
    ASSERT_TRUE(json_is_object(net));
    ASSERT_EQ_INT(json_array_size(json_object_get(net, "allowedDomains")), 2);
    sandbox_policy_free(p);
}

TEST(policy_digest_is_canonical)
{
    shed_err err;
    sandbox_policy *a = parse("{\"limits\":{\"pidsMax\":9,\"nofile\":99}}", &err);
    sandbox_policy *b = parse("{ \"limits\" : { \"nofile\" : 99, \"pidsMax\" : 9 } }", &err);
    sandbox_policy *c = parse("{\"limits\":{\"pidsMax\":10,\"nofile\":99}}", &err);
    ASSERT_TRUE(a && b && c);
    ASSERT_EQ_STR(sandbox_policy_digest(a), sandbox_policy_digest(b));
    ASSERT_TRUE(strcmp(sandbox_policy_digest(a), sandbox_policy_digest(c)) != 0);
    sandbox_policy_free(a);
    sandbox_policy_free(b);
    sandbox_policy_free(c);
}

TEST(policy_load_file_errors)
{
    sandbox_policy *p = NULL;
    shed_err err;
    ASSERT_TRUE(sandbox_policy_load("/nonexistent/policy.json", &p, &err) < 0);
    ASSERT_CONTAINS(err.msg, "/nonexistent/policy.json");
    char path[] = "/tmp/shed-policy-XXXXXX";
    int fd = mkstemp(path);
    ASSERT_TRUE(fd >= 0);
    ASSERT_TRUE(write(fd, "{\"limits\":", 10) == 10);
    close(fd);
    ASSERT_TRUE(sandbox_policy_load(path, &p, &err) < 0);
    ASSERT_CONTAINS(err.msg, path);
    ASSERT_CONTAINS(err.msg, "invalid JSON");
    unlink(path);
}

TEST(parse_size_suffixes)
{
    uint64_t v;
    ASSERT_EQ_INT(sandbox_parse_size("0", &v), 0);
    ASSERT_EQ_INT(v, 0);
    ASSERT_EQ_INT(sandbox_parse_size("64K", &v), 0);
    ASSERT_EQ_INT(v, 65536);
    ASSERT_EQ_INT(sandbox_parse_size("2GiB", &v), 0);
    ASSERT_EQ_INT(v, 2ull << 30);
    ASSERT_EQ_INT(sandbox_parse_size("1.5G", &v), -EINVAL);
    ASSERT_EQ_INT(sandbox_parse_size("-1", &v), -EINVAL);
    ASSERT_EQ_INT(sandbox_parse_size("99999999999999999999", &v), -EINVAL);
    ASSERT_EQ_INT(sandbox_parse_size("17179869184T", &v), -EINVAL);
}

TEST(seccomp_rules_resolve)
{
    size_t n;
    const sandbox_seccomp_rule *r = sandbox_seccomp_rules(&n);
    ASSERT_GE_INT(n, 60);
    int resolved = 0;
    for (size_t i = 0; i < n; i++)
        if (sandbox_seccomp_nr(r[i].syscall) >= 0) resolved++;
    /* on x86_64 every rule's syscall exists */
#ifdef __x86_64__
    ASSERT_EQ_INT(resolved, n);
#endif
    ASSERT_GE_INT(resolved, 50);
}

/* The compiled filter cached in <state>/bpf/<key>: a second compile reads the
 * file (proved by a filter that differs from the compiled one), and a file or
 * directory others could write, or a file of the wrong size, is ignored. */
static void bpf_file(const char *dir, char *out, size_t n)
{
    DIR *d = opendir(dir);
    ASSERT_TRUE(d != NULL);
    struct dirent *e;
    int found = 0;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') {
            snprintf(out, n, "%s/%s", dir, e->d_name);
            found++;
        }
    closedir(d);
    ASSERT_EQ_INT(found, 1);
}

static void put_bytes(const char *path, const void *b, size_t n, mode_t mode)
{
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    ASSERT_TRUE(fd >= 0);
    ASSERT_EQ_INT((int)write(fd, b, n), (int)n);
    close(fd);
    ASSERT_EQ_INT(chmod(path, mode), 0);
}

TEST(seccomp_filter_cache)
{
    shed_err err = {0};
    sandbox_policy *pol = NULL;
    ASSERT_EQ_INT(sandbox_policy_load(NULL, &pol, &err), 0);
    struct sandbox_policy *p = (struct sandbox_policy *)pol;
    ASSERT_EQ_INT(sandbox_seccomp_compile_cached(p, NULL, &err), 0);
    size_t len = p->bpf_len * sizeof(struct sock_filter);
    ASSERT_TRUE(len > 0);
    _cleanup_free_ struct sock_filter *fresh = malloc(len);
    memcpy(fresh, p->bpf, len);

    char state[] = "/tmp/shed-bpf-XXXXXX", bdir[64], file[400];
    ASSERT_TRUE(mkdtemp(state) != NULL);
    ASSERT_EQ_INT(sandbox_seccomp_compile_cached(p, state, &err), 0);
    ASSERT_EQ_INT(p->bpf_len * (int)sizeof(struct sock_filter), (int)len);
    ASSERT_MEM_EQ(p->bpf, fresh, len);
    snprintf(bdir, sizeof(bdir), "%s/bpf", state);
    bpf_file(bdir, file, sizeof(file));
    struct stat st;
    ASSERT_EQ_INT(stat(file, &st), 0);
    ASSERT_EQ_INT((int)(st.st_mode & 0777), 0600);
    ASSERT_EQ_INT((int)st.st_size, (int)len);

    /* read back: a marked filter in the file comes out of the next compile */
    _cleanup_free_ struct sock_filter *marked = malloc(len);
    memcpy(marked, fresh, len);
    marked[0].k ^= 1;
    put_bytes(file, marked, len, 0600);
    ASSERT_EQ_INT(sandbox_seccomp_compile_cached(p, state, &err), 0);
    ASSERT_MEM_EQ(p->bpf, marked, len);

    /* a file others can write is ignored, and replaced by the compiled filter */
    put_bytes(file, marked, len, 0622);
    ASSERT_EQ_INT(sandbox_seccomp_compile_cached(p, state, &err), 0);
    ASSERT_MEM_EQ(p->bpf, fresh, len);
    ASSERT_EQ_INT(stat(file, &st), 0);
    ASSERT_EQ_INT((int)(st.st_mode & 0777), 0600);

    /* a size that is not whole instructions is ignored */
    put_bytes(file, marked, len - 3, 0600);
    ASSERT_EQ_INT(sandbox_seccomp_compile_cached(p, state, &err), 0);
    ASSERT_MEM_EQ(p->bpf, fresh, len);

    /* a cache directory others can write is not used at all */
    put_bytes(file, marked, len, 0600);
    ASSERT_EQ_INT(chmod(bdir, 0777), 0);
    ASSERT_EQ_INT(sandbox_seccomp_compile_cached(p, state, &err), 0);
    ASSERT_MEM_EQ(p->bpf, fresh, len);
    ASSERT_EQ_INT(chmod(bdir, 0700), 0);

    /* nor is a state directory others can write */
    ASSERT_EQ_INT(chmod(state, 0777), 0);
    ASSERT_EQ_INT(sandbox_seccomp_compile_cached(p, state, &err), 0);
    ASSERT_MEM_EQ(p->bpf, fresh, len);

    unlink(file);
    rmdir(bdir);
    rmdir(state);
    sandbox_policy_free(pol);
}

/* ---- control channel ---- */

static void pair(int sv[2])
{
    ASSERT_EQ_INT(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
}

TEST(ctl_roundtrip_with_fds)
{
    int sv[2], p[2];
    pair(sv);
    ASSERT_EQ_INT(pipe(p), 0);
    shed_err err;
    json_t *m = json_pack("{s:s,s:i,s:[s,s]}", "type", "exec", "id", 7, "argv", "a", "b");
    int fds[2] = {p[0], p[1]};
    ASSERT_EQ_INT(ctl_send(sv[0], m, fds, 2, &err), 0);
    json_decref(m);
    json_t *got = NULL;
    int rfds[CTL_MAX_FDS], n = 0;
    ASSERT_EQ_INT(ctl_recv(sv[1], &got, rfds, &n, &err), 0);
    ASSERT_EQ_INT(n, 2);
    ASSERT_EQ_STR(json_string_value(json_object_get(got, "type")), "exec");
    ASSERT_EQ_INT(json_integer_value(json_object_get(got, "id")), 7);
    ASSERT_TRUE(fcntl(rfds[0], F_GETFD) & FD_CLOEXEC);
    ASSERT_EQ_INT(write(rfds[1], "z", 1), 1);
    char c = 0;
    ASSERT_EQ_INT(read(p[0], &c, 1), 1);
    ASSERT_EQ_INT(c, 'z');
    json_decref(got);
}

TEST(ctl_large_message_is_split_and_reassembled)
{
    int sv[2];
    pair(sv);
    size_t big = 3 * CTL_MAX_MSG + 123;
    char *s = malloc(big + 1);
    for (size_t i = 0; i < big; i++) s[i] = (char)('a' + i % 26);
    s[big] = 0;
    json_t *m = json_pack("{s:s,s:s}", "type", "result", "blob", s);
    shed_err err;
    int p[2];
    ASSERT_EQ_INT(pipe(p), 0);
    /* a blocking sender in a child: the socket buffer may not hold it all */
    pid_t pid = fork();
    if (pid == 0) {
        _exit(ctl_send(sv[0], m, &p[0], 1, &err) == 0 ? 0 : 1);
    }
    /* the first datagram starts with 'P' and carries the fd */
    char peek[8];
    ASSERT_EQ_INT(recv(sv[1], peek, 1, MSG_PEEK), 1);
    ASSERT_EQ_INT(peek[0], 'P');
    json_t *got = NULL;
    int rfds[CTL_MAX_FDS], n = 0;
    ASSERT_EQ_INT(ctl_recv(sv[1], &got, rfds, &n, &err), 0);
    int st;
    waitpid(pid, &st, 0);
    ASSERT_EQ_INT(WEXITSTATUS(st), 0);
    ASSERT_EQ_INT(n, 1);
    ASSERT_EQ_STR(json_string_value(json_object_get(got, "blob")), s);
    json_decref(got);
    json_decref(m);
    free(s);
}

TEST(ctl_reader_incremental_nonblocking)
{
    int sv[2];
    pair(sv);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    ctl_reader r;
    ctl_reader_init(&r);
    json_t *got = NULL;
    shed_err err;
    ASSERT_EQ_INT(ctl_read(&r, sv[1], &got, NULL, NULL, &err), -EAGAIN);
    ASSERT_EQ_INT(send(sv[0], "P{\"type\":", 9, 0), 9);
    ASSERT_EQ_INT(ctl_read(&r, sv[1], &got, NULL, NULL, &err), -EAGAIN);
    ASSERT_EQ_INT(send(sv[0], "L\"exit\",\"id\":3}", 15, 0), 15);
    ASSERT_EQ_INT(ctl_read(&r, sv[1], &got, NULL, NULL, &err), 0);
    ASSERT_EQ_STR(json_string_value(json_object_get(got, "type")), "exit");
    json_decref(got);
    ASSERT_EQ_INT(send(sv[0], "{\"type\":\"ready\"}", 16, 0), 16);
    ASSERT_EQ_INT(ctl_read(&r, sv[1], &got, NULL, NULL, &err), 0);
    json_decref(got);
    ctl_reader_free(&r);
}

TEST(ctl_rejects_malformed_datagrams)
{
    static const char *const BAD[] = {"xyz", "[1,2]", "{\"a\":", "L{}trailing"};
    for (size_t i = 0; i < ARRAY_SIZE(BAD); i++) {
        int sv[2];
        pair(sv);
        ASSERT_EQ_INT(send(sv[0], BAD[i], strlen(BAD[i]), 0), (long long)strlen(BAD[i]));
        json_t *got = NULL;
        shed_err err;
        int rc = ctl_recv(sv[1], &got, NULL, NULL, &err);
        if (rc != -EPROTO) test_fail(__FILE__, __LINE__, "'%s': rc %d (%s)", BAD[i], rc, err.msg);
        ASSERT_TRUE(got == NULL);
        close(sv[0]);
        close(sv[1]);
    }
    /* a message inside a part sequence */
    int sv[2];
    pair(sv);
    send(sv[0], "P{\"a\":", 6, 0);
    send(sv[0], "{\"b\":1}", 7, 0);
    json_t *got = NULL;
    shed_err err;
    ASSERT_EQ_INT(ctl_recv(sv[1], &got, NULL, NULL, &err), -EPROTO);
    /* orderly close */
    close(sv[0]);
    ASSERT_EQ_INT(ctl_recv(sv[1], &got, NULL, NULL, &err), -EPIPE);
}

/* ---- cgroup v2 backend against a cgroupfs-shaped tree ---- */

static void put(const char *dir, const char *file, const char *text)
{
    char p[4096];
    snprintf(p, sizeof(p), "%s/%s", dir, file);
    FILE *f = fopen(p, "w");
    ASSERT_TRUE(f != NULL);
    fputs(text, f);
    fclose(f);
}

static char *get(const char *dir, const char *file)
{
    static char buf[4096];
    ASSERT_TRUE(cgroup_read(dir, file, buf, sizeof(buf)) >= 0);
    return buf;
}

static void rm_tree(const char *path)
{
    DIR *d = opendir(path);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[4096];
        snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
        if (e->d_type == DT_DIR)
            rm_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(path);
}

TEST(cgroup_v2_backend_on_a_fake_tree)
{
    char base[] = "/tmp/shed-cg2-XXXXXX";
    ASSERT_TRUE(mkdtemp(base) != NULL);
    put(base, "cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n");
    put(base, "cgroup.subtree_control", "");
    char shed[4200];
    snprintf(shed, sizeof(shed), "%s/shed", base);
    ASSERT_EQ_INT(mkdir(shed, 0755), 0);
    /* the kernel fills a new cgroup's files; the fake does it by hand */
    put(shed, "cgroup.controllers", "cpu memory pids\n");
    put(shed, "cgroup.subtree_control", "");
    cgroup_limits lim = {.memory_max = 256ull << 20, .pids_max = 64, .cpus = 1.5};
    sandbox_cgroup *cg = NULL;
    shed_err err;
    int rc = cgroup_v2_backend.create(base, "sb1", &lim, &cg, &err);
    if (rc < 0) test_fail(__FILE__, __LINE__, "create: %s", err.msg);
    ASSERT_EQ_INT(cg->ndirs, 1);
    ASSERT_CONTAINS(cg->dirs[0], "/shed/sb1");
    ASSERT_EQ_STR(get(base, "cgroup.subtree_control"), "+memory +pids +cpu");
    ASSERT_EQ_STR(get(shed, "cgroup.subtree_control"), "+memory +pids +cpu");
    ASSERT_EQ_STR(get(cg->dirs[0], "memory.max"), "268435456");
    ASSERT_EQ_STR(get(cg->dirs[0], "memory.swap.max"), "0");
    ASSERT_EQ_STR(get(cg->dirs[0], "memory.oom.group"), "1");
    ASSERT_EQ_STR(get(cg->dirs[0], "pids.max"), "64");
    ASSERT_EQ_STR(get(cg->dirs[0], "cpu.max"), "150000 100000");
    ASSERT_EQ_INT(cgroup_v2_backend.attach(cg, 4242, &err), 0);
    ASSERT_EQ_STR(get(cg->dirs[0], "cgroup.procs"), "4242");
    /* counters */
    put(cg->dirs[0], "memory.events", "low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\n");
    put(cg->dirs[0], "pids.events", "max 5\n");
    ASSERT_EQ_INT(cgroup_v2_backend.oom_kills(cg), 2);
    ASSERT_EQ_INT(cgroup_v2_backend.pids_denied(cg), 5);
    /* kill: cgroup.kill written; done once the kernel reports it empty */
    put(cg->dirs[0], "cgroup.procs", "");
    put(cg->dirs[0], "cgroup.events", "populated 0\nfrozen 0\n");
    ASSERT_EQ_INT(cgroup_v2_backend.kill_all(cg, &err), 0);
    ASSERT_EQ_STR(get(cg->dirs[0], "cgroup.kill"), "1");
    /* destroy: the kernel removes the files with the directory */
    char leaf[4200];
    snprintf(leaf, sizeof(leaf), "%s", cg->dirs[0]);
    DIR *d = opendir(leaf);
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') unlinkat(dirfd(d), e->d_name, 0);
    closedir(d);
    ASSERT_EQ_INT(cgroup_destroy(cg, &err), 0);
    struct stat st;
    ASSERT_TRUE(stat(leaf, &st) < 0 && errno == ENOENT);
    rm_tree(base);
}

/* The child joins its cgroup by itself: v2 hands a directory fd for
 * clone3(CLONE_INTO_CGROUP); v1 hands the leaves' "tasks" files. */
TEST(cgroup_join_handles)
{
    char base[] = "/tmp/shed-cg2-XXXXXX";
    ASSERT_TRUE(mkdtemp(base) != NULL);
    char leaf[4200];
    snprintf(leaf, sizeof(leaf), "%s/sb1", base);
    ASSERT_EQ_INT(mkdir(leaf, 0755), 0);
    char *dirs[] = {leaf};
    sandbox_cgroup *cg = cgroup_from_dirs(&cgroup_v2_backend, dirs, 1);
    cgroup_join j = {.n = 0};
    shed_err err;
    ASSERT_EQ_INT(cgroup_v2_backend.open_join(cg, &j, &err), 0);
    ASSERT_EQ_INT(j.n, 1);
    ASSERT_TRUE(j.clone_into);
    struct stat a, b;
    ASSERT_EQ_INT(fstat(j.fds[0], &a), 0);
    ASSERT_EQ_INT(stat(leaf, &b), 0);
    ASSERT_TRUE(S_ISDIR(a.st_mode) && a.st_ino == b.st_ino);
    ASSERT_TRUE(fcntl(j.fds[0], F_GETFD) & FD_CLOEXEC);
    cgroup_join_close(&j);
    ASSERT_EQ_INT(j.n, 0);
    /* v1 without a "tasks" file: an error naming the file */
    cg->be = &cgroup_v1_backend;
    ASSERT_TRUE(cgroup_v1_backend.open_join(cg, &j, &err) < 0);
    ASSERT_CONTAINS(err.msg, "/sb1/tasks");
    ASSERT_EQ_INT(j.n, 0);
    cgroup_free(cg);
    rm_tree(base);
    if (geteuid() != 0 || access("/sys/fs/cgroup/memory/tasks", F_OK) != 0) return;
    /* for real on v1: a child writing "0" lands in every leaf */
    const cgroup_backend *be;
    char *root = NULL;
    ASSERT_EQ_INT(cgroup_detect(&be, &root, &err), 0);
    if (be != &cgroup_v1_backend) {
        free(root);
        return;
    }
    cgroup_limits lim = {.pids_max = 16};
    char name[64];
    snprintf(name, sizeof(name), "unit-join-%d", (int)getpid());
    ASSERT_EQ_INT(be->create(root, name, &lim, &cg, &err), 0);
    free(root);
    ASSERT_EQ_INT(be->open_join(cg, &j, &err), 0);
    ASSERT_EQ_INT(j.n, cg->ndirs);
    ASSERT_FALSE(j.clone_into);
    int sv[2];
    ASSERT_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    pid_t pid = fork();
    if (pid == 0) {
        for (int i = 0; i < j.n; i++)
            if (write(j.fds[i], "0", 1) != 1) _exit(1);
        char c;
        _exit(write(sv[1], "x", 1) == 1 && read(sv[1], &c, 1) == 1 ? 0 : 2);
    }
    cgroup_join_close(&j);
    char c;
    ASSERT_EQ_INT(read(sv[0], &c, 1), 1);
    char want[32];
    snprintf(want, sizeof(want), "%d\n", (int)pid);
    for (int i = 0; i < cg->ndirs; i++) ASSERT_EQ_STR(get(cg->dirs[i], "cgroup.procs"), want);
    ASSERT_EQ_INT(write(sv[0], "x", 1), 1);
    int st;
    waitpid(pid, &st, 0);
    ASSERT_EQ_INT(WEXITSTATUS(st), 0);
    close(sv[0]);
    close(sv[1]);
    ASSERT_EQ_INT(cgroup_destroy(cg, &err), 0);
}

/* v2: the child is born in its cgroup (CLONE_INTO_CGROUP), with every
 * namespace flag; where the directory is not a cgroup (or the kernel is
 * older than 5.7) the clone still happens and says the creator must attach. */
static void clone_into(const char *dir, bool want_joined)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT_TRUE(fd >= 0);
    int sv[2];
    ASSERT_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    int pidfd = -1;
    bool joined = !want_joined;
    pid_t pid = sandbox_clone(fd, &pidfd, &joined);
    if (pid == 0) {
        char buf[4096] = "";
        int f = open("/proc/self/cgroup", O_RDONLY | O_CLOEXEC);
        ssize_t n = f >= 0 ? read(f, buf, sizeof(buf) - 1) : -1;
        if (n > 0 && write(sv[1], buf, (size_t)n) != n) _exit(1);
        _exit(0);
    }
    ASSERT_TRUE(pid > 0);
    close(sv[1]);
    ASSERT_EQ_INT(joined, want_joined);
    char got[4096] = "";
    ssize_t n = read(sv[0], got, sizeof(got) - 1);
    ASSERT_TRUE(n > 0);
    got[n] = 0;
    int st;
    waitpid(pid, &st, 0);
    ASSERT_EQ_INT(WEXITSTATUS(st), 0);
    if (want_joined) {
        char line[4200];
        snprintf(line, sizeof(line), "0::/%s\n", strrchr(dir, '/') + 1);
        ASSERT_CONTAINS(got, line);
    }
    close(sv[0]);
    close(pidfd);
    close(fd);
}

TEST(clone_into_cgroup_or_fall_back)
{
    if (geteuid() != 0) test_skip("creates a cgroup and namespaces as root");
    char notcg[] = "/tmp/shed-notcg-XXXXXX";
    ASSERT_TRUE(mkdtemp(notcg) != NULL);
    clone_into(notcg, false);
    rmdir(notcg);
    /* a cgroup2 hierarchy we can write at its root (this VM: the unified
     * mount without controllers; a v2 host: /sys/fs/cgroup) */
    const char *roots[] = {"/sys/fs/cgroup/unified", "/sys/fs/cgroup"};
    for (size_t i = 0; i < 2; i++) {
        char probe[4200], dir[4200];
        snprintf(probe, sizeof(probe), "%s/cgroup.procs", roots[i]);
        snprintf(dir, sizeof(dir), "%s/shed-unit-clone-%d", roots[i], (int)getpid());
        struct stat st;
        if (access(probe, W_OK) != 0 || stat(roots[i], &st) < 0) continue;
        char self[256] = "";
        FILE *f = fopen("/proc/self/cgroup", "r");
        while (f && fgets(self, sizeof(self), f))
            if (!strncmp(self, "0::", 3)) break;
        if (f) fclose(f);
        if (strncmp(self, "0::/\n", 5) != 0) continue; /* not at that hierarchy's root */
        if (mkdir(dir, 0755) < 0) continue;
        clone_into(dir, true);
        ASSERT_EQ_INT(rmdir(dir), 0);
        return;
    }
}

TEST(cgroup_v2_missing_controller_names_the_fix)
{
    char base[] = "/tmp/shed-cg2-XXXXXX";
    ASSERT_TRUE(mkdtemp(base) != NULL);
    put(base, "cgroup.controllers", "cpu io\n");
    cgroup_limits lim = {.memory_max = 1 << 30, .pids_max = 64};
    sandbox_cgroup *cg = NULL;
    shed_err err;
    ASSERT_TRUE(cgroup_v2_backend.create(base, "sb1", &lim, &cg, &err) < 0);
    ASSERT_CONTAINS(err.msg, "lacks the memory controller");
    ASSERT_CONTAINS(err.msg, "Delegate=yes");
    rm_tree(base);
}

/* ---- the real thing, through the library ---- */

TEST(create_exec_destroy_leaves_nothing)
{
    const char *shed = getenv("SHED");
    if (!shed) test_skip("SHED is not set (make check sets it)");
    shed_err err;
    ASSERT_EQ_INT(sandbox_set_init_exe(shed, &err), 0);
    sandbox_policy *p = parse(geteuid() == 0 ? "{}" : "{\"waive\":[\"cgroup\"]}", &err);
    ASSERT_TRUE(p != NULL);
    char state[] = "/tmp/shed-state-XXXXXX";
    ASSERT_TRUE(mkdtemp(state) != NULL);
    chmod(state, 0711);
    sandbox_opts o = {.slot = -1, .state_dir = state, .label = "unit-sb1"};
    sandbox_t *sb = NULL;
    if (sandbox_create(p, &o, &sb, &err) < 0) test_fail(__FILE__, __LINE__, "create: %s", err.msg);
    ASSERT_EQ_STR(sandbox_label(sb), "unit-sb1");
    ASSERT_TRUE(sandbox_workspace(sb) == NULL);
    int h, s2, d;
    sandbox_take_listeners(sb, &h, &s2, &d);
    ASSERT_TRUE(h >= 0 && s2 >= 0 && d >= 0);
    int typ;
    socklen_t tl = sizeof(typ);
    ASSERT_EQ_INT(getsockopt(d, SOL_SOCKET, SO_TYPE, &typ, &tl), 0);
    ASSERT_EQ_INT(typ, SOCK_DGRAM);
    close(h), close(s2), close(d);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    int fds[3] = {null, null, null};
    json_t *m = json_pack("{s:s,s:i,s:[s,s,s]}", "type", "exec", "id", 5, "argv", "/bin/sh", "-c",
                          "test \"$(id -u)\" = 1000 && exit 7");
    ASSERT_EQ_INT(ctl_send(sandbox_ctl_fd(sb), m, fds, 3, &err), 0);
    json_decref(m);
    close(null);
    json_t *r = NULL;
    ASSERT_EQ_INT(ctl_recv(sandbox_ctl_fd(sb), &r, NULL, NULL, &err), 0);
    ASSERT_EQ_STR(json_string_value(json_object_get(r, "type")), "exit");
    ASSERT_EQ_INT(json_integer_value(json_object_get(r, "id")), 5);
    ASSERT_EQ_INT(json_integer_value(json_object_get(r, "status")), 7);
    json_decref(r);
    /* a bad request gets an error, the channel stays up */
    m = json_pack("{s:s,s:i}", "type", "nonsense", "id", 9);
    ASSERT_EQ_INT(ctl_send(sandbox_ctl_fd(sb), m, NULL, 0, &err), 0);
    json_decref(m);
    ASSERT_EQ_INT(ctl_recv(sandbox_ctl_fd(sb), &r, NULL, NULL, &err), 0);
    ASSERT_EQ_STR(json_string_value(json_object_get(r, "type")), "error");
    ASSERT_CONTAINS(json_string_value(json_object_get(r, "message")), "nonsense");
    json_decref(r);
    pid_t init = sandbox_init_pid(sb);
    ASSERT_EQ_INT(sandbox_destroy(sb, 100, &err), 0);
    ASSERT_TRUE(kill(init, 0) < 0);
    char dir[4200];
    snprintf(dir, sizeof(dir), "%s/sandboxes/unit-sb1", state);
    struct stat st;
    ASSERT_TRUE(stat(dir, &st) < 0 && errno == ENOENT);
    /* nothing for reconcile to do */
    ASSERT_EQ_INT(sandbox_reconcile(state, &err), 0);
    rm_tree(state);
    sandbox_policy_free(p);
}

TEST(create_reports_the_failing_step)
{
    const char *shed = getenv("SHED");
    if (!shed) test_skip("SHED is not set (make check sets it)");
    shed_err err;
    ASSERT_EQ_INT(sandbox_set_init_exe(shed, &err), 0);
    sandbox_policy *p = parse(geteuid() == 0 ? "{\"mounts\":[{\"source\":\"/nonexistent-src\"}]}"
                                             : "{\"mounts\":[{\"source\":\"/nonexistent-src\"}],"
                                               "\"waive\":[\"cgroup\"]}",
                              &err);
    ASSERT_TRUE(p != NULL);
    sandbox_t *sb = NULL;
    sandbox_opts o = {.slot = -1, .workdir = "/work"};
    ASSERT_TRUE(sandbox_create(p, &o, &sb, &err) < 0);
    ASSERT_CONTAINS(err.msg, "/nonexistent-src");
    sandbox_policy_free(p);
    /* a bad label */
    p = parse("{}", &err);
    sandbox_opts o2 = {.slot = -1, .label = "../x"};
    ASSERT_TRUE(sandbox_create(p, &o2, &sb, &err) < 0);
    ASSERT_CONTAINS(err.msg, "label");
    sandbox_policy_free(p);
}

static json_t *roundtrip(sandbox_t *sb, json_t *m)
{
    shed_err err;
    if (ctl_send(sandbox_ctl_fd(sb), m, NULL, 0, &err) < 0)
        test_fail(__FILE__, __LINE__, "send: %s", err.msg);
    json_decref(m);
    json_t *r = NULL;
    if (ctl_recv(sandbox_ctl_fd(sb), &r, NULL, NULL, &err) < 0)
        test_fail(__FILE__, __LINE__, "recv: %s", err.msg);
    return r;
}

TEST(tool_calls_run_inside_and_cancel)
{
    const char *shed = getenv("SHED");
    if (!shed) test_skip("SHED is not set (make check sets it)");
    shed_err err;
    ASSERT_EQ_INT(sandbox_set_init_exe(shed, &err), 0);
    sandbox_policy *p = parse(geteuid() == 0 ? "{}" : "{\"waive\":[\"cgroup\"]}", &err);
    sandbox_t *sb = NULL;
    sandbox_opts o = {.slot = -1};
    if (sandbox_create(p, &o, &sb, &err) < 0) test_fail(__FILE__, __LINE__, "create: %s", err.msg);
    json_t *r = roundtrip(sb, json_pack("{s:s,s:i,s:s,s:{s:s}}", "type", "tool", "id", 11, "tool",
                                        "bash", "input", "command", "echo hi $(id -u) $PWD"));
    ASSERT_EQ_STR(json_string_value(json_object_get(r, "type")), "result");
    ASSERT_EQ_INT(json_integer_value(json_object_get(r, "id")), 11);
    ASSERT_FALSE(json_is_true(json_object_get(r, "is_error")));
    _cleanup_free_ char *text = json_compact(json_object_get(r, "content"));
    ASSERT_CONTAINS(text, "hi 1000 /workspace");
    json_decref(r);
    /* a result larger than one datagram comes back in parts */
    r = roundtrip(sb, json_pack("{s:s,s:i,s:s,s:{s:s}}", "type", "tool", "id", 15, "tool", "bash",
                                "input", "command", "head -c 90000 /dev/zero | tr '\\0' x"));
    _cleanup_free_ char *big = json_compact(json_object_get(r, "content"));
    ASSERT_GE_INT(strlen(big), CTL_MAX_MSG + 1000);
    ASSERT_CONTAINS(big, "xxxxxxxxxxxxxxxx");
    json_decref(r);
    /* write then read through the file tools, confined to the workspace */
    r = roundtrip(sb, json_pack("{s:s,s:i,s:s,s:{s:s,s:s}}", "type", "tool", "id", 12, "tool",
                                "write", "input", "file_path", "/workspace/a.txt", "content", "abc\n"));
    ASSERT_FALSE(json_is_true(json_object_get(r, "is_error")));
    json_decref(r);
    r = roundtrip(sb, json_pack("{s:s,s:i,s:s,s:{s:s}}", "type", "tool", "id", 13, "tool", "read",
                                "input", "file_path", "/etc/shadow"));
    ASSERT_TRUE(json_is_true(json_object_get(r, "is_error")));
    json_decref(r);
    /* cancel: a message arriving mid-call aborts it */
    json_t *m = json_pack("{s:s,s:i,s:s,s:{s:s}}", "type", "tool", "id", 14, "tool", "bash",
                          "input", "command", "sleep 30");
    ASSERT_EQ_INT(ctl_send(sandbox_ctl_fd(sb), m, NULL, 0, &err), 0);
    json_decref(m);
    usleep(200 * 1000);
    m = json_pack("{s:s,s:i}", "type", "cancel", "id", 14);
    ASSERT_EQ_INT(ctl_send(sandbox_ctl_fd(sb), m, NULL, 0, &err), 0);
    json_decref(m);
    struct pollfd pf = {.fd = sandbox_ctl_fd(sb), .events = POLLIN};
    ASSERT_EQ_INT(poll(&pf, 1, 10000), 1);
    ASSERT_EQ_INT(ctl_recv(sandbox_ctl_fd(sb), &r, NULL, NULL, &err), 0);
    ASSERT_EQ_INT(json_integer_value(json_object_get(r, "id")), 14);
    ASSERT_TRUE(json_is_true(json_object_get(r, "is_error")));
    json_decref(r);
    ASSERT_EQ_INT(sandbox_destroy(sb, 0, &err), 0);
    sandbox_policy_free(p);
}

TEST(zygote_creates_sandboxes_without_exec)
{
    const char *shed = getenv("SHED");
    if (!shed) test_skip("SHED is not set (make check sets it)");
    shed_err err;
    ASSERT_EQ_INT(sandbox_set_init_exe(shed, &err), 0);
    if (sandbox_zygote_start(&err) < 0) test_fail(__FILE__, __LINE__, "zygote: %s", err.msg);
    sandbox_policy *p = parse(geteuid() == 0 ? "{}" : "{\"waive\":[\"cgroup\"]}", &err);
    for (int round = 0; round < 3; round++) {
        sandbox_t *sb = NULL;
        sandbox_opts o = {.slot = -1};
        if (sandbox_create(p, &o, &sb, &err) < 0)
            test_fail(__FILE__, __LINE__, "create: %s", err.msg);
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        int fds[3] = {null, null, null};
        json_t *m = json_pack("{s:s,s:i,s:[s,s,s]}", "type", "exec", "id", 1, "argv", "/bin/sh",
                              "-c", "test \"$(id -u)\" = 1000 && test ! -e /etc/shadow && exit 7");
        ASSERT_EQ_INT(ctl_send(sandbox_ctl_fd(sb), m, fds, 3, &err), 0);
        json_decref(m);
        close(null);
        json_t *r = NULL;
        ASSERT_EQ_INT(ctl_recv(sandbox_ctl_fd(sb), &r, NULL, NULL, &err), 0);
        ASSERT_EQ_INT(json_integer_value(json_object_get(r, "status")), 7);
        json_decref(r);
        r = roundtrip(sb, json_pack("{s:s,s:i,s:s,s:{s:s}}", "type", "tool", "id", 2, "tool",
                                    "bash", "input", "command", "grep -c Seccomp:.2 /proc/self/status"));
        _cleanup_free_ char *text = json_compact(json_object_get(r, "content"));
        ASSERT_CONTAINS(text, "1");
        json_decref(r);
        ASSERT_EQ_INT(sandbox_destroy(sb, 0, &err), 0);
    }
    /* a step failing in the child is still reported through the error pipe
     * (a work dir inside /proc cannot be created) */
    sandbox_t *sb = NULL;
    sandbox_opts o = {.slot = -1, .workdir = "/proc/shed-test"};
    ASSERT_TRUE(sandbox_create(p, &o, &sb, &err) < 0);
    ASSERT_CONTAINS(err.msg, "sandbox setup: mkdir");
    ASSERT_CONTAINS(err.msg, "/proc/shed-test");
    sandbox_zygote_stop();
    sandbox_policy_free(p);
}

/* init_in_place: init is the clone child itself only while the creator is
 * single-threaded (and never in an ASan build); an exec'd init has its own
 * environment block (PATH, GNUTLS_NO_IMPLICIT_INIT), an init in place a
 * zeroed one. Root only: init is not dumpable, its environ is root's to read. */
static int init_path(const sandbox_policy *p, shed_err *err)
{
    sandbox_t *sb = NULL;
    sandbox_opts o = {.slot = -1, .init_in_place = true};
    if (sandbox_create(p, &o, &sb, err) < 0) test_fail(__FILE__, __LINE__, "create: %s", err->msg);
    json_t *r = roundtrip(sb, json_pack("{s:s,s:i,s:s,s:{s:s}}", "type", "tool", "id", 1, "tool",
                                        "bash", "input", "command", "echo inside-ok"));
    _cleanup_free_ char *text = json_compact(json_object_get(r, "content"));
    ASSERT_CONTAINS(text, "inside-ok");
    json_decref(r);
    char path[64], env[4096];
    snprintf(path, sizeof(path), "/proc/%d/environ", (int)sandbox_init_pid(sb));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ASSERT_TRUE(fd >= 0);
    ssize_t n = read(fd, env, sizeof(env) - 1);
    close(fd);
    ASSERT_TRUE(n > 0);
    for (ssize_t i = 0; i < n; i++)
        if (!env[i]) env[i] = '\n';
    env[n] = 0;
    int exec_d = strstr(env, "GNUTLS_NO_IMPLICIT_INIT=1") != NULL;
    if (!exec_d)
        for (ssize_t i = 0; i < n; i++) ASSERT_TRUE(env[i] == '\n'); /* every byte zeroed */
    ASSERT_EQ_INT(sandbox_destroy(sb, 0, err), 0);
    return exec_d;
}

static void *idle_thread(void *arg)
{
    char c;
    if (read(*(int *)arg, &c, 1) < 0) {}
    return NULL;
}

TEST(init_in_place_only_while_single_threaded)
{
    const char *shed = getenv("SHED");
    if (!shed) test_skip("SHED is not set (make check sets it)");
    if (geteuid() != 0) test_skip("init's environ is root's to read (init is not dumpable)");
    /* TZ means an exec'd init (glibc's tzset keeps a copy); unsetenv only
     * drops the pointer, the entries left stay in the kernel's block */
    unsetenv("TZ");
    shed_err err;
    ASSERT_EQ_INT(sandbox_set_init_exe(shed, &err), 0);
    sandbox_policy *p = parse("{}", &err);
#if defined(__SANITIZE_ADDRESS__)
    ASSERT_EQ_INT(init_path(p, &err), 1); /* the ASan runtime holds a copy of the environment */
#else
    ASSERT_EQ_INT(init_path(p, &err), 0);
#endif
    int pp[2];
    ASSERT_EQ_INT(pipe2(pp, O_CLOEXEC), 0);
    pthread_t th;
    ASSERT_EQ_INT(pthread_create(&th, NULL, idle_thread, &pp[0]), 0);
    ASSERT_EQ_INT(init_path(p, &err), 1); /* another thread: exec'd */
    close(pp[1]);
    pthread_join(th, NULL);
    close(pp[0]);
    sandbox_policy_free(p);
}

TEST(child_step_failure_names_step_and_errno)
{
    const char *shed = getenv("SHED");
    if (!shed) test_skip("SHED is not set (make check sets it)");
    shed_err err;
    ASSERT_EQ_INT(sandbox_set_init_exe(shed, &err), 0);
    sandbox_policy *p = parse(geteuid() == 0 ? "{}" : "{\"waive\":[\"cgroup\"]}", &err);
    sandbox_t *sb = NULL;
    sandbox_opts o = {.slot = -1, .workdir = "/proc/shed-test"};
    ASSERT_TRUE(sandbox_create(p, &o, &sb, &err) < 0);
    ASSERT_CONTAINS(err.msg, "sandbox setup: mkdir");
    ASSERT_CONTAINS(err.msg, "/proc/shed-test: ");
    sandbox_policy_free(p);
}

TEST(reconcile_sweeps_what_a_dead_creator_left)
{
    const char *shed = getenv("SHED");
    if (!shed) test_skip("SHED is not set (make check sets it)");
    shed_err err;
    char state[] = "/tmp/shed-state-XXXXXX";
    ASSERT_TRUE(mkdtemp(state) != NULL);
    chmod(state, 0711);
    int pipefd[2];
    ASSERT_EQ_INT(pipe(pipefd), 0);
    pid_t creator = fork();
    if (creator == 0) {
        /* a creator that dies with its sandbox up */
        if (sandbox_set_init_exe(shed, &err) < 0) _exit(2);
        sandbox_policy *p = parse(geteuid() == 0 ? "{}" : "{\"waive\":[\"cgroup\"]}", &err);
        sandbox_opts o = {.slot = -1, .state_dir = state, .label = "orphan-1"};
        sandbox_t *sb;
        if (!p || sandbox_create(p, &o, &sb, &err) < 0) {
            fprintf(stderr, "create: %s\n", err.msg);
            _exit(3);
        }
        char line[64];
        int n = snprintf(line, sizeof(line), "%d\n", (int)sandbox_init_pid(sb));
        if (write(pipefd[1], line, n) != n) _exit(4);
        _exit(0); /* no destroy */
    }
    close(pipefd[1]);
    char buf[64] = {0};
    ASSERT_TRUE(read(pipefd[0], buf, sizeof(buf) - 1) > 0);
    int st;
    waitpid(creator, &st, 0);
    ASSERT_EQ_INT(WEXITSTATUS(st), 0);
    char dir[4200];
    snprintf(dir, sizeof(dir), "%s/sandboxes/orphan-1", state); /* the state file */
    struct stat sst;
    ASSERT_EQ_INT(stat(dir, &sst), 0); /* left behind */
    json_t *sj = json_load_file(dir, 0, NULL);
    ASSERT_TRUE(sj != NULL);
    json_t *d0 = json_array_get(json_object_get(sj, "cgroup_dirs"), 0);
    char cg0[4096] = "";
    if (d0) snprintf(cg0, sizeof(cg0), "%s", json_string_value(d0));
    json_decref(sj);
    ASSERT_EQ_INT(sandbox_reconcile(state, &err), 1);
    ASSERT_TRUE(stat(dir, &sst) < 0 && errno == ENOENT);
    if (cg0[0]) ASSERT_TRUE(stat(cg0, &sst) < 0 && errno == ENOENT);
    /* gone, or a zombie waiting for whoever inherited it */
    char sp[64], stat_line[512] = "";
    snprintf(sp, sizeof(sp), "/proc/%d/stat", atoi(buf));
    FILE *f = fopen(sp, "r");
    if (f) {
        if (!fgets(stat_line, sizeof(stat_line), f)) stat_line[0] = 0;
        fclose(f);
        char *rp = strrchr(stat_line, ')');
        ASSERT_TRUE(rp && rp[2] == 'Z');
    }
    ASSERT_EQ_INT(sandbox_reconcile(state, &err), 0);
    rm_tree(state);
}

/* The event-loop way: start, wait for the ctl fd, finish. */
static int finish_by_polling(sandbox_t *sb, shed_err *err)
{
    for (int i = 0; i < 400; i++) {
        int rc = sandbox_create_finish(sb, err);
        if (rc != -EAGAIN) return rc;
        struct pollfd p = {.fd = sandbox_ctl_fd(sb), .events = POLLIN};
        poll(&p, 1, 50);
    }
    return -ETIMEDOUT;
}

TEST(create_in_two_steps_for_event_loops)
{
    const char *shed = getenv("SHED");
    if (!shed) test_skip("SHED is not set (make check sets it)");
    shed_err err;
    ASSERT_EQ_INT(sandbox_set_init_exe(shed, &err), 0);
    sandbox_policy *p = parse(geteuid() == 0 ? "{}" : "{\"waive\":[\"cgroup\"]}", &err);
    sandbox_t *sb = NULL;
    sandbox_opts o = {.slot = -1};
    ASSERT_EQ_INT(sandbox_create_start(p, &o, &sb, &err), 0);
    int rc = finish_by_polling(sb, &err);
    if (rc < 0) test_fail(__FILE__, __LINE__, "finish: %s", err.msg);
    ASSERT_EQ_INT(sandbox_create_finish(sb, &err), 0); /* idempotent */
    int h, s2, d;
    sandbox_take_listeners(sb, &h, &s2, &d);
    ASSERT_TRUE(h >= 0);
    close(h), close(s2), close(d);
    ASSERT_EQ_INT(sandbox_destroy(sb, 0, &err), 0);
    /* a setup failure surfaces from finish, naming the step */
    sandbox_opts bad = {.slot = -1, .workdir = "/proc/shed-test"};
    ASSERT_EQ_INT(sandbox_create_start(p, &bad, &sb, &err), 0);
    rc = finish_by_polling(sb, &err);
    ASSERT_TRUE(rc < 0 && rc != -ETIMEDOUT);
    ASSERT_CONTAINS(err.msg, "sandbox setup: mkdir");
    ASSERT_EQ_INT(sandbox_destroy(sb, 0, &err), 0);
    sandbox_policy_free(p);
}
