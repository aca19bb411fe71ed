/* Differential tests of grep's in-process ripgrep listing (src/tools/
 * grep_rglist.c) against ripgrep itself: many randomised trees (hidden
 * files and directories, nesting, symlinks in and out, dangling links,
 * fifos, sockets, names that are not UTF-8 or hold a newline, empty
 * directories, ignore files and .git at various depths and in parents),
 * each listed by tools_rg_list and by `rg --no-config --files --null --sort
 * path`, byte for byte; the whole grep tool against `rg -n --no-heading
 * --sort path` on the same trees; permissions rg complains about (as an
 * unprivileged user); and a directory swapped for a link to the outside
 * during the walk. Skipped (77) only when rg is not installed.
 */
#include "test.h"

#include "base/buf.h"
#include "base/cleanup.h"
#include "tools/internal.h"
#include "tools/tools.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_dir[256];

static void remove_workdir(void)
{
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "chmod -R u+rwx '%s' 2>/dev/null; rm -rf '%s'", g_dir, g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
}

static const char *workdir(void)
{
    if (!g_dir[0]) {
        snprintf(g_dir, sizeof(g_dir), "/tmp/shed-rglist-test.XXXXXX");
        if (!mkdtemp(g_dir)) test_fail(__FILE__, __LINE__, "mkdtemp: %s", strerror(errno));
        chmod(g_dir, 0755); /* the unprivileged child enters it */
        atexit(remove_workdir);
    }
    return g_dir;
}

static const char *find_rg(void)
{
    static char found[PATH_MAX];
    const char *path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        const char *c = strchr(path, ':');
        size_t l = c ? (size_t)(c - path) : strlen(path);
        snprintf(found, sizeof(found), "%.*s/rg", (int)l, path);
        if (access(found, X_OK) == 0) return found;
        path += l + (c ? 1 : 0);
    }
    return NULL;
}

/* Runs argv; stdout and stderr captured (bounded), returns the wait status. */
static int run(char *const argv[], buf_t *out, buf_t *err)
{
    int po[2], pe[2];
    if (pipe2(po, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0) test_fail(__FILE__, __LINE__, "pipe2");
    pid_t pid = fork();
    if (pid < 0) test_fail(__FILE__, __LINE__, "fork");
    if (pid == 0) {
        dup2(po[1], 1);
        dup2(pe[1], 2);
        int nul = open("/dev/null", O_RDONLY);
        dup2(nul, 0);
        execv(argv[0], argv);
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    /* rg's stderr stays small here; read stdout to its end, then stderr */
    char chunk[8192];
    ssize_t r;
    while ((r = read(po[0], chunk, sizeof(chunk))) > 0) buf_append(out, chunk, (size_t)r);
    while ((r = read(pe[0], chunk, sizeof(chunk))) > 0) buf_append(err, chunk, (size_t)r);
    close(po[0]);
    close(pe[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    return st;
}

/* ---- random trees ---- */

static uint64_t g_rng;
static uint32_t rnd(uint32_t n)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng % n);
}

static void rand_name(char *out, size_t cap, bool hidden)
{
    static const char *const parts[] = {"a", "b", "A", "Z", "_", "-", "0", "9", ".", "x.txt", "é", "\xff", "\xc3",
                                        " ", "~", "a-b", "a.b", "ab", "\n", "needle", "\xe2\x82\xac", "z"};
    size_t n = 0;
    if (hidden) out[n++] = '.';
    int k = 1 + (int)rnd(3);
    for (int i = 0; i < k; i++) {
        const char *p = parts[rnd(sizeof(parts) / sizeof(parts[0]))];
        if (n == 0 && p[0] == '.') p = "q"; /* hidden only when asked */
        size_t l = strlen(p);
        if (n + l + 1 >= cap) break;
        memcpy(out + n, p, l);
        n += l;
    }
    out[n] = 0;
    if (!strcmp(out, ".") || !strcmp(out, "..")) strcpy(out, ".h");
}

static const char *const CONTROL[] = {".ignore", ".rgignore", ".gitignore", ".git", ".IGNORE", ".jj"};
static const char *const IGNORE_TEXT[] = {"*.txt\n", "a*\n!ab\n", "/b\n", "needle*\n", "*\n", "z/\n", "# only\n"};

typedef struct gen {
    int files, triggers;
    char out[PATH_MAX]; /* a directory outside the tree */
} gen_t;

static void write_file(int dfd, const char *name, uint32_t kind)
{
    int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return; /* a name drawn twice */
    char text[256];
    int n = 0;
    switch (kind % 4) {
    case 0: n = snprintf(text, sizeof(text), "hay\nneedle one\nhay\n"); break;
    case 1: n = snprintf(text, sizeof(text), "no match here\n"); break;
    case 2: n = snprintf(text, sizeof(text), "needle\nneedle two\n"); break;
    default: break; /* empty */
    }
    if (n > 0 && write(fd, text, (size_t)n) != n) test_fail(__FILE__, __LINE__, "write");
    close(fd);
}

/* visible: every component from the search root down is not hidden. */
static void gen_dir(gen_t *g, int dfd, int depth, bool visible)
{
    int n = (int)rnd(depth == 0 ? 8 : 6);
    char name[64];
    for (int i = 0; i < n; i++) {
        uint32_t k = rnd(100);
        bool hidden = rnd(6) == 0;
        rand_name(name, sizeof(name), hidden);
        struct stat st;
        /* ".x.": hidden to us, not to rg 13 (left to rg) */
        bool quirk = name[0] == '.' && name[strlen(name) - 1] == '.' && fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0;
        if (k < 40) {
            write_file(dfd, name, rnd(4));
            g->files++;
        } else if (k < 62 && depth < 4) {
            if (mkdirat(dfd, name, 0755) < 0) continue;
            int c = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (c < 0) test_fail(__FILE__, __LINE__, "open dir");
            gen_dir(g, c, depth + 1, visible && !hidden);
            close(c);
        } else if (k < 68) {
            symlinkat(rnd(2) ? "../" : ".", dfd, name); /* a link to a directory inside */
        } else if (k < 73) {
            symlinkat(g->out, dfd, name); /* a link out */
        } else if (k < 77) {
            symlinkat("missing", dfd, name); /* dangling */
        } else if (k < 82) {
            char target[80];
            rand_name(target, sizeof(target), false);
            write_file(dfd, target, 0);
            symlinkat(target, dfd, name); /* a link to a file inside */
        } else if (k < 86) {
            mkfifoat(dfd, name, 0644);
        } else if (k < 89) {
            mknodat(dfd, name, S_IFSOCK | 0644, 0);
        } else if (k < 90) {
            mknodat(dfd, name, S_IFCHR | 0644, makedev(1, 3)); /* fails without CAP_MKNOD: fine */
        } else if (k < 93) {
            mkdirat(dfd, name, 0755); /* empty */
        } else if (k < 97 || rnd(3) == 0) {
            /* an ignore file or a .git: rg's listing then needs rg */
            const char *c = CONTROL[rnd(sizeof(CONTROL) / sizeof(CONTROL[0]))];
            int made;
            if (!strcmp(c, ".git") && rnd(2))
                made = mkdirat(dfd, c, 0755);
            else {
                int fd = openat(dfd, c, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
                made = fd >= 0 ? 0 : -1;
                if (fd >= 0) {
                    const char *t = IGNORE_TEXT[rnd(sizeof(IGNORE_TEXT) / sizeof(IGNORE_TEXT[0]))];
                    if (write(fd, t, strlen(t)) < 0) test_fail(__FILE__, __LINE__, "write");
                    close(fd);
                }
            }
            if (made == 0 && visible) g->triggers++;
        }
        if (quirk && visible && fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) g->triggers++;
    }
}

/* Tree i: WORKDIR/tI/p/q/root, with control files sometimes in p or q. */
static void make_tree(int i, gen_t *g, char *root, size_t cap)
{
    g_rng = 0x9E3779B97F4A7C15ULL ^ ((uint64_t)i * 0x100000001B3ULL + 1);
    for (int k = 0; k < 4; k++) rnd(2);
    memset(g, 0, sizeof(*g));
    snprintf(g->out, sizeof(g->out), "%s/out", workdir());
    if (mkdir(g->out, 0755) == 0) {
        char cmd[PATH_MAX + 64];
        snprintf(cmd, sizeof(cmd), "echo 'needle SECRET' > '%s/secret.txt'", g->out);
        if (system(cmd) != 0) test_fail(__FILE__, __LINE__, "%s", cmd);
    }
    static const char *const levels[] = {"", "/p", "/p/q", "/p/q/root"};
    for (size_t k = 0; k < 4; k++) {
        snprintf(root, cap, "%s/t%d%s", workdir(), i, levels[k]);
        if (mkdir(root, 0755) < 0 && errno != EEXIST) test_fail(__FILE__, __LINE__, "mkdir %s", root);
    }
    for (int lvl = 0; lvl < 2; lvl++)
        if (rnd(10) == 0) {
            char p[PATH_MAX];
            const char *c = CONTROL[rnd(4)];
            snprintf(p, sizeof(p), "%s/t%d/p%s/%s", workdir(), i, lvl ? "/q" : "", c);
            if (!strcmp(c, ".git") ? mkdir(p, 0755) == 0 : creat(p, 0644) >= 0) g->triggers++;
        }
    int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) test_fail(__FILE__, __LINE__, "open %s", root);
    gen_dir(g, fd, 0, true);
    close(fd);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st, (void)f;
    return flag == FTW_DP ? rmdir(p) : unlink(p);
}

static void rm_tree(int i)
{
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/t%d", workdir(), i);
    if (nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0) test_fail(__FILE__, __LINE__, "rm -r %s", p);
}

/* The listing: tools_rg_list against rg --files. Returns 1 when it listed. */
static int compare_listing(const char *rg, const char *root, bool expect_list, int tree)
{
    int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) test_fail(__FILE__, __LINE__, "open %s", root);
    _cleanup_buf_ buf_t mine, out, err;
    buf_init(&mine, 0);
    buf_init(&out, 0);
    buf_init(&err, 0);
    const char *why = NULL;
    int rc = tools_rg_list(fd, root, &mine, &why);
    close(fd);
    char *argv[] = {(char *)rg, "--no-config", "--files", "--null", "--sort", "path", "--", (char *)root, NULL};
    int st = run(argv, &out, &err);
    if (rc == 0) {
        if (!WIFEXITED(st) || WEXITSTATUS(st) > 1 || err.len)
            test_fail(__FILE__, __LINE__, "tree %d listed in-process, but rg complained (status %d): %s", tree, st,
                      err.data ? err.data : "");
        if (out.len != mine.len || (out.len && memcmp(out.data, mine.data, out.len))) {
            for (size_t k = 0; k < out.len; k++)
                if (out.data[k] == 0) out.data[k] = '|';
            for (size_t k = 0; k < mine.len; k++)
                if (mine.data[k] == 0) mine.data[k] = '|';
            test_fail(__FILE__, __LINE__, "tree %d: listings differ\n  rg:   %s\n  shed: %s", tree,
                      out.data ? out.data : "", mine.data ? mine.data : "");
        }
    } else {
        ASSERT_EQ_INT(rc, TOOLS_RGLIST_FALLBACK);
        ASSERT_EQ_INT(mine.len, 0);
    }
    if (expect_list && rc != 0) test_fail(__FILE__, __LINE__, "tree %d: no trigger, yet it fell back: %s", tree, why);
    if (!expect_list && rc == 0) test_fail(__FILE__, __LINE__, "tree %d: an ignore file or .git, yet it listed", tree);
    return rc == 0;
}

TEST(rglist_matches_rg_files_on_random_trees)
{
    const char *rg = find_rg();
    if (!rg) test_skip("rg is not installed (scripts/install-deps installs ripgrep)");
    int listed = 0, fell = 0, files = 0;
    for (int i = 0; i < 250; i++) {
        gen_t g;
        char root[PATH_MAX];
        make_tree(i, &g, root, sizeof(root));
        int l = compare_listing(rg, root, g.triggers == 0, i);
        listed += l;
        fell += !l;
        files += g.files;
        rm_tree(i);
    }
    printf("trees listed in-process: %d, left to rg: %d, files made: %d\n", listed, fell, files);
    /* both branches were exercised */
    ASSERT_GE_INT(listed, 100);
    ASSERT_GE_INT(fell, 20);
}

/* The whole grep tool (rg on PATH) against rg searching the tree itself in
 * the same order: identical text, whichever way the listing was made. */
TEST(rglist_grep_results_equal_rg_on_random_trees)
{
    const char *rg = find_rg();
    if (!rg) test_skip("rg is not installed (scripts/install-deps installs ripgrep)");
    char pathenv[64];
    snprintf(pathenv, sizeof(pathenv), "PATH=/usr/local/bin:/usr/bin:/bin");
    char *env[] = {pathenv, NULL};
    int compared = 0;
    for (int i = 0; i < 80; i++) {
        gen_t g;
        char root[PATH_MAX];
        make_tree(1000 + i, &g, root, sizeof(root));
        char wd[PATH_MAX];
        snprintf(wd, sizeof(wd), "%s/t%d", workdir(), 1000 + i);
        tools_config cfg = {.workdir = wd, .env = env};
        tools_t *t = NULL;
        shed_err se = {0};
        ASSERT_EQ_INT(tools_new(&cfg, &t, &se), 0);
        json_t *in = json_pack("{s:s, s:s}", "pattern", "needle", "path", "p/q/root");
        json_t *r = tools_call(t, "grep", in, 0, -1);
        json_decref(in);
        const char *text = json_string_value(json_object_get(json_array_get(json_object_get(r, "content"), 0), "text"));
        ASSERT_TRUE(text != NULL);
        ASSERT_FALSE(json_is_true(json_object_get(r, "is_error")));
        _cleanup_buf_ buf_t out, err, want;
        buf_init(&out, 0);
        buf_init(&err, 0);
        buf_init(&want, 0);
        char *argv[] = {(char *)rg, "--no-config", "-n", "--no-heading", "--sort", "path",
                        "-e", "needle", "--", root, NULL};
        int st = run(argv, &out, &err);
        ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) <= 1);
        tools_utf8_sanitize(&want, out.data ? out.data : "", out.len);
        ASSERT_EQ_STR(text, want.len ? want.data : "no matches");
        compared++;
        json_decref(r);
        tools_free(t);
        rm_tree(1000 + i);
    }
    ASSERT_EQ_INT(compared, 80);
}

/* What rg complains about (a directory it cannot read or enter) is left to
 * rg; a directory it can read but not enter is listed as rg lists it. Run
 * as an unprivileged user, for whom permissions mean something. */
TEST(rglist_unreadable_directories_are_left_to_rg)
{
    const char *rg = find_rg();
    if (!rg) test_skip("rg is not installed (scripts/install-deps installs ripgrep)");
    char base[PATH_MAX], cmd[PATH_MAX * 2];
    snprintf(base, sizeof(base), "%s/perm", workdir());
    static const struct {
        const char *setup;
        bool listed;
    } cases[] = {
        {"mkdir -p d/x && touch d/x/f a && chmod 000 d/x", false},          /* cannot read */
        {"mkdir -p d/x && touch d/x/f a && chmod 311 d/x", false},          /* cannot list */
        {"mkdir -p d/x && touch d/x/f d/x/g a && chmod 644 d/x", true},     /* can list, not enter */
        {"mkdir -p d/x/y && touch d/x/y/f a && chmod 644 d/x", false},      /* a directory in one */
        {"mkdir -p d/.h && touch d/.h/f a && chmod 000 d/.h", true},        /* hidden: never read */
        {"mkdir -p d && touch d/f a && chmod 000 d/f", true},               /* files are not opened */
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mkdir -p '%s' && cd '%s' && %s", base, base, base, cases[c].setup);
        if (system(cmd) != 0) test_fail(__FILE__, __LINE__, "%s", cmd);
        pid_t pid = fork();
        if (pid == 0) {
            if (geteuid() == 0 && (setgroups(0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 ||
                                   setresuid(65534, 65534, 65534) < 0))
                _exit(3);
            char root[PATH_MAX];
            snprintf(root, sizeof(root), "%s/d", base);
            int l = compare_listing(rg, root, cases[c].listed, (int)c);
            _exit(l == (int)cases[c].listed ? 0 : 4);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            test_fail(__FILE__, __LINE__, "case %zu (%s): child status %d", c, cases[c].setup, st);
    }
    snprintf(cmd, sizeof(cmd), "chmod -R u+rwx '%s'; rm -rf '%s'", base, base);
    if (system(cmd) != 0) test_fail(__FILE__, __LINE__, "%s", cmd);
}

/* A directory swapped for a link to the outside (renameat2 RENAME_EXCHANGE,
 * as fast as a child can) while the listing walks: no name from the
 * outside ever appears. */
TEST(rglist_walk_never_leaves_the_tree_under_swaps)
{
    char root[PATH_MAX], out[PATH_MAX], cmd[PATH_MAX * 3];
    snprintf(root, sizeof(root), "%s/race", workdir());
    snprintf(out, sizeof(out), "%s/outside", workdir());
    snprintf(cmd, sizeof(cmd),
             "mkdir -p '%s/real/sub' '%s/sub' && touch '%s/real/in.txt' '%s/real/sub/in2.txt' '%s/SECRET.txt' "
             "'%s/sub/SECRET2.txt' && ln -s '%s' '%s/link'",
             root, out, root, root, out, out, out, root);
    if (system(cmd) != 0) test_fail(__FILE__, __LINE__, "%s", cmd);
    int rfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT_TRUE(rfd >= 0);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlives a failed test */
        for (;;) syscall(SYS_renameat2, rfd, "real", rfd, "link", 2 /* RENAME_EXCHANGE */);
    }
    int listed = 0, as_link = 0;
    for (int i = 0; i < 3000; i++) {
        _cleanup_buf_ buf_t l;
        buf_init(&l, 0);
        if (tools_rg_list(rfd, root, &l, NULL) != 0) continue;
        listed++;
        for (size_t k = 0; k < l.len; k++)
            if (l.data[k] == 0) l.data[k] = '\n';
        ASSERT_NOT_CONTAINS(l.data ? l.data : "", "SECRET");
        if (l.data && strstr(l.data, "/link/")) as_link++; /* the race is live: the directory read under its other name */
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(rfd);
    printf("listings completed under swaps: %d of 3000, %d of them read the directory as link/\n", listed, as_link);
    ASSERT_GE_INT(listed, 1);
}

/* The directory searched may itself be hidden, or named like rg's quirk:
 * rg never applies its hidden rule to the path it is given. */
TEST(rglist_hidden_search_roots_are_walked)
{
    const char *rg = find_rg();
    if (!rg) test_skip("rg is not installed (scripts/install-deps installs ripgrep)");
    static const char *const roots[] = {".h", ".h.", "..x", "plain"};
    for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
        char root[PATH_MAX], cmd[PATH_MAX * 2];
        snprintf(root, sizeof(root), "%s/t%zu/%s", workdir(), 2000 + i, roots[i]);
        snprintf(cmd, sizeof(cmd), "mkdir -p '%s/d/e' '%s/.in' && touch '%s/a' '%s/d/b' '%s/d/e/c' '%s/.in/x'", root,
                 root, root, root, root, root);
        if (system(cmd) != 0) test_fail(__FILE__, __LINE__, "%s", cmd);
        ASSERT_EQ_INT(compare_listing(rg, root, true, (int)(2000 + i)), 1);
        rm_tree((int)(2000 + i));
    }
}
