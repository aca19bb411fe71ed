/* Unit tests for src/tools, run directly on the host against a temporary
 * work directory: the dispatcher, bash (protocol, state, timeouts, restart,
 * background jobs, cancel, huge outputs, credential scrubbing), the file
 * tools' limits and texts, path confinement (symlinks out, "..", loops,
 * a component swapped for a symlink between check and use), glob, grep, and
 * the whole conformance suite against the reference toolset under node. */
#include "test.h"

#include "base/buf.h"
#include "base/cleanup.h"
#include "base/clock.h"
#include "tools/internal.h"
#include "tools/tools.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_dir[256];
static pid_t g_dir_owner;

/* The work directory goes with the test's process (not with a child that
 * forked from it and exits). */
static void remove_workdir(void)
{
    if (!g_dir[0] || getpid() != g_dir_owner) return;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "chmod -R u+rwx '%s' 2>/dev/null; rm -rf '%s'", g_dir, g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
}

static const char *workdir(void)
{
    if (!g_dir[0]) {
        snprintf(g_dir, sizeof(g_dir), "/tmp/shed-tools-test.XXXXXX");
        if (!mkdtemp(g_dir)) test_fail(__FILE__, __LINE__, "mkdtemp: %s", strerror(errno));
        g_dir_owner = getpid();
        atexit(remove_workdir);
    }
    return g_dir;
}

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    char full[4200];
    snprintf(full, sizeof(full), "cd '%s' && %s", workdir(), cmd);
    int rc = system(full);
    if (rc != 0) test_fail(__FILE__, __LINE__, "shell failed (%d): %s", rc, cmd);
}

static tools_t *mk(char *const *env)
{
    tools_config cfg = {.workdir = workdir(), .env = env};
    tools_t *t = NULL;
    shed_err err = {0};
    if (tools_new(&cfg, &t, &err) < 0) test_fail(__FILE__, __LINE__, "tools_new: %s", err.msg);
    return t;
}

/* Call a tool with input given as JSON text; returns the first text (or the
 * whole content as JSON when it is not text) and sets *is_error. */
static char *call(tools_t *t, const char *name, const char *input_json, bool *is_error)
{
    json_error_t je;
    json_t *in = json_loads(input_json, JSON_ALLOW_NUL, &je);
    if (!in) test_fail(__FILE__, __LINE__, "bad test JSON: %s: %s", input_json, je.text);
    json_t *r = tools_call(t, name, in, 0, -1);
    json_decref(in);
    ASSERT_TRUE(r != NULL);
    *is_error = json_is_true(json_object_get(r, "is_error"));
    json_t *c0 = json_array_get(json_object_get(r, "content"), 0);
    char *out;
    if (json_is_string(json_object_get(c0, "text")))
        out = strdup(json_string_value(json_object_get(c0, "text")));
    else
        out = json_dumps(json_object_get(r, "content"), JSON_COMPACT);
    json_decref(r);
    return out;
}

#define EXPECT(t, name, input, err_expected, text_expected)                                 \
    do {                                                                                    \
        bool e_;                                                                            \
        _cleanup_free_ char *o_ = call((t), (name), (input), &e_);                          \
        ASSERT_EQ_STR(o_, (text_expected));                                                 \
        ASSERT_EQ_INT(e_, (err_expected));                                                  \
    } while (0)

TEST(dispatch_unknown_tool_and_bad_input)
{
    tools_t *t = mk(NULL);
    EXPECT(t, "nope", "{}", true, "unknown tool: nope");
    json_t *arr = json_array();
    json_t *r = tools_call(t, "read", arr, 0, -1);
    ASSERT_TRUE(json_is_true(json_object_get(r, "is_error")));
    json_decref(r);
    json_decref(arr);
    r = tools_call(t, "bash", NULL, 0, -1);
    ASSERT_EQ_STR(json_string_value(json_object_get(json_array_get(json_object_get(r, "content"), 0), "text")),
                  "bash: command is required");
    json_decref(r);
    EXPECT(t, "edit", "{\"file_path\":\"x\",\"old_string\":\"a\",\"new_string\":5}", true,
           "edit: new_string must be a string");
    tools_free(t);
}

TEST(bash_protocol_state_and_errors)
{
    tools_t *t = mk(NULL);
    EXPECT(t, "bash", "{\"command\":\"echo hello\"}", false, "hello");
    EXPECT(t, "bash", "{\"command\":\"true\"}", false, "(no output)");
    EXPECT(t, "bash", "{\"command\":\"false\"}", true, "exit 1");
    EXPECT(t, "bash", "{\"command\":\"echo out; echo err >&2; exit_=1; (exit 3)\"}", true, "out\nerr");
    EXPECT(t, "bash", "{\"command\":\"mkdir -p sub && cd sub && export V=kept\"}", false, "(no output)");
    bool e;
    _cleanup_free_ char *pwd = call(t, "bash", "{\"command\":\"pwd; echo $V\"}", &e);
    ASSERT_CONTAINS(pwd, "/sub\nkept");
    EXPECT(t, "bash", "{\"command\":\"printf '\\\\033[1;31mred\\\\033[0m\\\\n\\\\n'\"}", false, "red");
    EXPECT(t, "bash", "{\"command\":\"echo __ANT_CMD_x_DONE__0; echo more\"}", false, "__ANT_CMD_x_DONE__0\nmore");
    EXPECT(t, "bash", "{\"command\":\"cat\"}", false, "(no output)"); /* stdin is /dev/null */
    EXPECT(t, "bash", "{\"command\":\"exit 4\"}", true, "bash: bash session terminated");
    EXPECT(t, "bash", "{\"command\":\"echo [$V]\"}", false, "[]"); /* a fresh shell */
    EXPECT(t, "bash", "{}", true, "bash: command is required");
    EXPECT(t, "bash", "{\"restart\":true}", false, "bash session restarted");
    tools_free(t);
}

TEST(bash_inherits_no_descriptor_of_the_caller)
{
    /* deliberately not CLOEXEC, like a control channel left open by the caller */
    int fd = dup2(open("/dev/null", O_RDONLY), 77);
    ASSERT_EQ_INT(fd, 77);
    tools_t *t = mk(NULL);
    bool e;
    _cleanup_free_ char *o = call(t, "bash", "{\"command\":\"/bin/ls /proc/$$/fd | tr '\\\\n' ' '\"}", &e);
    ASSERT_FALSE(e);
    ASSERT_NOT_CONTAINS(o, "77");
    ASSERT_CONTAINS(o, "0 1 ");
    close(fd);
    tools_free(t);
}

TEST(bash_environment_is_scrubbed)
{
    char *env[] = {"PATH=/usr/bin:/bin", "ANTHROPIC_API_KEY=sk-secret", "anthropic_token=lower", "KEEP=yes",
                   "TERM=xterm", "PS1=$ ", NULL};
    tools_t *t = mk(env);
    EXPECT(t, "bash", "{\"command\":\"env | grep -ic anthropic; echo $KEEP [$PS1][$PS2] $TERM\"}", false,
           "0\nyes [][] dumb");
    tools_free(t);
}

TEST(bash_timeout_kills_the_group_and_restarts)
{
    tools_t *t = mk(NULL);
    EXPECT(t, "bash", "{\"command\":\"export V=1; echo $$ > shell.pid\"}", false, "(no output)");
    int64_t t0 = clock_mono_ms();
    EXPECT(t, "bash", "{\"command\":\"sleep 30 & echo $! > bg.pid; sleep 20\",\"timeout_ms\":300}", true,
           "bash: bash command timed out after 300ms");
    ASSERT_TRUE(clock_mono_ms() - t0 < 10000);
    EXPECT(t, "bash", "{\"command\":\"echo [$V]\"}", false, "[]");
    /* the background job of the timed-out call was in the killed group */
    bool e;
    _cleanup_free_ char *pid = call(t, "bash", "{\"command\":\"cat bg.pid\"}", &e);
    pid_t p = (pid_t)atoi(pid);
    ASSERT_TRUE(p > 0);
    for (int i = 0; i < 100 && kill(p, 0) == 0; i++) usleep(20000);
    ASSERT_TRUE(kill(p, 0) < 0);
    tools_free(t);
}

TEST(bash_background_job_does_not_hold_the_call)
{
    tools_t *t = mk(NULL);
    int64_t t0 = clock_mono_ms();
    EXPECT(t, "bash", "{\"command\":\"(sleep 20; echo late) & echo started\"}", false, "started");
    EXPECT(t, "bash", "{\"command\":\"sleep 20 >/dev/null & jobs | wc -l\"}", false, "2");
    ASSERT_TRUE(clock_mono_ms() - t0 < 5000);
    EXPECT(t, "bash", "{\"command\":\"echo next\"}", false, "next");
    tools_free(t);
}

TEST(bash_background_flood_does_not_stall_the_next_call)
{
    tools_t *t = mk(NULL);
    bool e;
    /* the flood starts after the call, fills the pipe between calls */
    EXPECT(t, "bash", "{\"command\":\"(sleep 0.2; exec yes flood) & echo started\"}", false, "started");
    usleep(500000);
    int64_t t0 = clock_mono_ms();
    _cleanup_free_ char *o = call(t, "bash", "{\"command\":\"kill %1; wait; echo done\"}", &e);
    ASSERT_TRUE(clock_mono_ms() - t0 < 10000);
    ASSERT_FALSE(e);
    ASSERT_TRUE(strlen(o) >= 4);
    ASSERT_EQ_STR(o + strlen(o) - 4, "done");
    /* a foreground flood still times out */
    t0 = clock_mono_ms();
    EXPECT(t, "bash", "{\"command\":\"yes\",\"timeout_ms\":300}", true, "bash: bash command timed out after 300ms");
    ASSERT_TRUE(clock_mono_ms() - t0 < 10000);
    tools_free(t);
}

TEST(bash_cancel_fd_aborts_and_restarts)
{
    tools_t *t = mk(NULL);
    EXPECT(t, "bash", "{\"command\":\"export V=1\"}", false, "(no output)");
    int p[2];
    ASSERT_EQ_INT(pipe(p), 0);
    pid_t child = fork();
    if (child == 0) {
        usleep(200000);
        if (write(p[1], "x", 1) < 0) _exit(1);
        _exit(0);
    }
    json_t *in = json_pack("{s:s}", "command", "sleep 20");
    int64_t t0 = clock_mono_ms();
    json_t *r = tools_call(t, "bash", in, 0, p[0]);
    ASSERT_TRUE(clock_mono_ms() - t0 < 10000);
    ASSERT_TRUE(json_is_true(json_object_get(r, "is_error")));
    ASSERT_EQ_STR(json_string_value(json_object_get(json_array_get(json_object_get(r, "content"), 0), "text")),
                  "bash: This operation was aborted");
    json_decref(r);
    json_decref(in);
    waitpid(child, NULL, 0);
    close(p[0]);
    close(p[1]);
    EXPECT(t, "bash", "{\"command\":\"echo [$V]\"}", false, "[]");
    tools_free(t);
}

TEST(bash_huge_output_keeps_the_tail)
{
    tools_t *t = mk(NULL);
    bool e;
    _cleanup_free_ char *o = call(t, "bash", "{\"command\":\"seq 1 200000\"}", &e);
    ASSERT_FALSE(e);
    ASSERT_TRUE(!strncmp(o, "[output truncated]\n", 19));
    ASSERT_TRUE(strlen(o) <= 19 + 100 * 1024);
    ASSERT_TRUE(strlen(o) > 100 * 1024 - 200);
    size_t n = strlen(o);
    ASSERT_EQ_STR(o + n - 7, "\n200000");
    _cleanup_free_ char *o2 = call(t, "bash", "{\"command\":\"head -c 5000000 /dev/urandom | tr -d '\\\\000'; echo; echo end\"}", &e);
    ASSERT_FALSE(e);
    ASSERT_TRUE(!strncmp(o2, "[output truncated]\n", 19));
    ASSERT_EQ_STR(o2 + strlen(o2) - 4, "\nend");
    tools_free(t);
}

TEST(read_limits_and_texts)
{
    sh("printf 'a\\nb\\nc\\n' > s.txt && head -c 300000 /dev/zero > big.bin && mkfifo ff && "
       "printf 'caf\\351\\n' > l1.txt && awk 'BEGIN{for(i=1;i<=50000;i++)print \"row\", i}' > rows.txt");
    tools_t *t = mk(NULL);
    EXPECT(t, "read", "{\"file_path\":\"s.txt\"}", false, "a\nb\nc\n");
    EXPECT(t, "read", "{\"file_path\":\"s.txt\",\"view_range\":[2,2]}", false, "b");
    EXPECT(t, "read", "{\"file_path\":\"s.txt\",\"view_range\":[2,-1]}", false, "b\nc\n");
    EXPECT(t, "read", "{\"file_path\":\"s.txt\",\"view_range\":[1,2,3]}", true,
           "read: view_range must be [start_line, end_line]");
    EXPECT(t, "read", "{\"file_path\":\"big.bin\"}", true,
           "read: big.bin is 300000 bytes, exceeds 262144-byte limit. Use the view_range parameter to read "
           "specific line ranges, e.g. view_range: [1, 500].");
    EXPECT(t, "read", "{\"file_path\":\"big.bin\",\"view_range\":[1,1]}", true,
           "read: line 1 of big.bin alone exceeds 262144-byte limit. The read tool cannot return part of a line, "
           "so view_range cannot narrow this further.");
    EXPECT(t, "read", "{\"file_path\":\"rows.txt\",\"view_range\":[49999,0]}", false, "row 49999\nrow 50000\n");
    int64_t t0 = clock_mono_ms();
    EXPECT(t, "read", "{\"file_path\":\"ff\"}", true, "read: ff is not a regular file");
    ASSERT_TRUE(clock_mono_ms() - t0 < 5000);
    EXPECT(t, "read", "{\"file_path\":\"l1.txt\"}", false, "caf\xEF\xBF\xBD\n");
    EXPECT(t, "read", "{\"file_path\":\"nope.txt\"}", true, "read: nope.txt: no such file or directory");
    EXPECT(t, "read", "{\"file_path\":\".\"}", true, "read: . is not a regular file");
    tools_free(t);
}

TEST(confinement_symlinks_dotdot_and_loops)
{
    sh("mkdir -p in && echo secret > ../shed-tools-outside-$$ 2>/dev/null; echo ok > in/f && "
       "ln -sf /etc/passwd out_abs && ln -sf /etc out_dir && ln -sf in/f in_link && "
       "ln -sf /nonexistent-shed/x dangling && ln -sf lb la && ln -sf la lb");
    tools_t *t = mk(NULL);
    EXPECT(t, "read", "{\"file_path\":\"in_link\"}", false, "ok\n");
    EXPECT(t, "read", "{\"file_path\":\"out_abs\"}", true,
           "path \"out_abs\" is outside the session's working directory");
    EXPECT(t, "read", "{\"file_path\":\"out_dir/hostname\"}", true,
           "path \"out_dir/hostname\" is outside the session's working directory");
    EXPECT(t, "read", "{\"file_path\":\"../../etc/passwd\"}", true,
           "path \"../../etc/passwd\" is outside the session's working directory");
    EXPECT(t, "read", "{\"file_path\":\"/etc/passwd\"}", true,
           "path \"/etc/passwd\" is outside the session's working directory");
    EXPECT(t, "write", "{\"file_path\":\"dangling\",\"content\":\"x\"}", true,
           "path \"dangling\" is outside the session's working directory");
    EXPECT(t, "write", "{\"file_path\":\"out_dir/shed-test\",\"content\":\"x\"}", true,
           "path \"out_dir/shed-test\" is outside the session's working directory");
    EXPECT(t, "read", "{\"file_path\":\"la\"}", true, "path \"la\": too many levels of symbolic links");
    EXPECT(t, "read", "{\"file_path\":\"in/../in/f\"}", false, "ok\n");
    EXPECT(t, "read", "{\"file_path\":\"a\\u0000b\"}", true, "path \"a\\u0000b\": i/o error (ERR_INVALID_ARG_VALUE)");
    char abs[512];
    snprintf(abs, sizeof(abs), "{\"file_path\":\"%s/in/f\"}", workdir());
    EXPECT(t, "read", abs, false, "ok\n");
    ASSERT_TRUE(access("/etc/shed-test", F_OK) < 0);
    tools_free(t);
}

TEST(confinement_survives_a_component_swapped_after_the_check)
{
    sh("mkdir -p d && echo inside > d/passwd");
    tools_t *t = mk(NULL);
    tools_target tg;
    json_t *err = tools_resolve(t, "d/passwd", 8, &tg);
    ASSERT_TRUE(err == NULL);
    /* the agent (through bash) swaps the directory for a symlink out */
    sh("mv d d.old && ln -s /etc d");
    int fd = tools_open_target(t, &tg, O_RDONLY, 0);
    ASSERT_TRUE(fd < 0);
    ASSERT_TRUE(fd == -ELOOP || fd == -EXDEV || fd == -ENOENT);
    tools_target_free(&tg);
    /* and the leaf swapped for a symlink */
    sh("rm d && mv d.old d");
    err = tools_resolve(t, "d/passwd", 8, &tg);
    ASSERT_TRUE(err == NULL);
    sh("rm d/passwd && ln -s /etc/passwd d/passwd");
    fd = tools_open_target(t, &tg, O_RDONLY, 0);
    ASSERT_TRUE(fd < 0);
    tools_target_free(&tg);
    tools_free(t);
}

TEST(write_edit_and_read_only_roots)
{
    sh("mkdir -p ro && echo keep > ro/k.txt && printf 'a b a\\n' > e.txt && chmod 755 e.txt");
    char ro[300];
    snprintf(ro, sizeof(ro), "%s/ro", workdir());
    const char *roots[] = {ro, NULL};
    tools_config cfg = {.workdir = workdir(), .read_only_roots = roots};
    tools_t *t = NULL;
    shed_err se = {0};
    ASSERT_EQ_INT(tools_new(&cfg, &t, &se), 0);
    char msg[600];
    snprintf(msg, sizeof(msg), "write: ro/k.txt is inside read-only directory %s", ro);
    EXPECT(t, "write", "{\"file_path\":\"ro/k.txt\",\"content\":\"x\"}", true, msg);
    snprintf(msg, sizeof(msg), "edit: ro/k.txt is inside read-only directory %s", ro);
    EXPECT(t, "edit", "{\"file_path\":\"ro/k.txt\",\"old_string\":\"keep\",\"new_string\":\"x\"}", true, msg);
    EXPECT(t, "write", "{\"file_path\":\"n/e/w.txt\",\"content\":\"h\xC3\xA9\"}", false, "wrote 3 bytes to n/e/w.txt");
    struct stat st;
    char p[400];
    snprintf(p, sizeof(p), "%s/n/e/w.txt", workdir());
    ASSERT_EQ_INT(stat(p, &st), 0);
    ASSERT_EQ_INT(st.st_mode & 0777, 0600);
    EXPECT(t, "edit", "{\"file_path\":\"e.txt\",\"old_string\":\"a\",\"new_string\":\"c\"}", true,
           "edit: old_string appears 2 times in e.txt (must be unique)");
    EXPECT(t, "edit", "{\"file_path\":\"e.txt\",\"old_string\":\"a\",\"new_string\":\"$&\",\"replace_all\":true}",
           false, "edited e.txt (2 replacement(s))");
    EXPECT(t, "read", "{\"file_path\":\"e.txt\"}", false, "$& b $&\n");
    snprintf(p, sizeof(p), "%s/e.txt", workdir());
    ASSERT_EQ_INT(stat(p, &st), 0);
    ASSERT_EQ_INT(st.st_mode & 0777, 0755);
    EXPECT(t, "write", "{\"file_path\":\"e.txt/x\",\"content\":\"\"}", true, "write: e.txt/x: i/o error (EEXIST)");
    tools_free(t);
}

TEST(glob_and_grep_walker)
{
    sh("mkdir -p g/sub g/.hid g/node_modules && echo 'needle one' > g/a.txt && echo 'needle two' > g/sub/b.txt && "
       "echo needle > g/.hid/c.txt && echo needle > g/node_modules/d.txt && touch -d @1700000000 g/a.txt && "
       "touch -d @1700000100 g/sub/b.txt && ln -s /etc g/etc");
    char *env[] = {"PATH=/nonexistent", NULL};
    tools_t *t = mk(env);
    char want[1024];
    snprintf(want, sizeof(want), "%s/g/sub/b.txt\n%s/g/a.txt", workdir(), workdir());
    EXPECT(t, "glob", "{\"pattern\":\"**/*.txt\",\"path\":\"g\"}", false, want);
    EXPECT(t, "glob", "{\"pattern\":\"../*\"}", true, "glob: \"..\" is not permitted in the pattern");
    EXPECT(t, "glob", "{\"pattern\":\"/etc/*\"}", true,
           "glob: absolute pattern not permitted; pass a relative pattern (and optionally path)");
    EXPECT(t, "glob", "{\"pattern\":\"g/etc/passwd\"}", false, "no matches");
    snprintf(want, sizeof(want), "%s/g/.hid/c.txt:1:needle\n%s/g/a.txt:1:needle one\n%s/g/sub/b.txt:1:needle two",
             workdir(), workdir(), workdir());
    EXPECT(t, "grep", "{\"pattern\":\"need(le)\",\"path\":\"g\"}", false, want);
    EXPECT(t, "grep", "{\"pattern\":\"(\",\"path\":\"g\"}", true,
           "grep: invalid regex: Invalid regular expression: /(/: Unterminated group");
    EXPECT(t, "grep", "{\"pattern\":\"x\",\"path\":\"g/etc\"}", true,
           "path \"g/etc\" is outside the session's working directory");
    tools_free(t);
}

/* grep with an rg on PATH: rg only names files, and a name that leads out
 * of the workspace (as rg's walk reports when a directory is swapped for a
 * symlink under it) is never opened, nor is rg's complaint about it shown.
 * A stand-in rg makes the misled walk deterministic. */
TEST(grep_rg_names_leading_out_are_never_opened)
{
    char out[300], bin[300];
    snprintf(out, sizeof(out), "%s-out", workdir());
    snprintf(bin, sizeof(bin), "%s-bin", workdir());
    sh("mkdir -p r '%s' '%s' && echo 'needle inside' > r/in.txt && echo 'needle SECRET' > '%s/secret.txt' && "
       "ln -s '%s' r/link",
       out, bin, out, out);
    FILE *f = fopen(strcat(strcpy((char[320]){0}, bin), "/rg"), "w");
    ASSERT_TRUE(f != NULL);
    fputs("#!/bin/sh\n"
          "for a; do last=$a; done\n"
          "case \" $* \" in *\" --files \"*)\n"
          "  printf '%s/in.txt\\0%s/link/secret.txt\\0%s/link\\0' \"$last\" \"$last\" \"$last\"\n"
          "  echo \"$last/link/secret.txt: Permission denied (os error 13)\" >&2; exit 2;;\n"
          "esac\n"
          "exit 1\n",
          f);
    fclose(f);
    sh("chmod 755 '%s/rg'", bin);
    char path[400];
    snprintf(path, sizeof(path), "PATH=%s", bin);
    char *env[] = {path, NULL};
    tools_t *t = mk(env);
    char want[1024];
    snprintf(want, sizeof(want), "%s/r/in.txt:1:needle inside\n", workdir());
    EXPECT(t, "grep", "{\"pattern\":\"needle\",\"path\":\"r\"}", false, want);
    EXPECT(t, "grep", "{\"pattern\":\"SECRET\"}", false, "no matches");
    /* one file named by the call: opened beneath the root, searched without a name prefix */
    EXPECT(t, "grep", "{\"pattern\":\"inside\",\"path\":\"r/in.txt\"}", false, "1:needle inside\n");
    tools_free(t);
    sh("rm -rf '%s' '%s'", out, bin);
}

/* The whole conformance suite, module against reference, on the host. */
TEST(conformance_with_the_reference_on_the_host)
{
    const char *root = getenv("SHED_ROOT");
    if (!root) test_fail(__FILE__, __LINE__, "SHED_ROOT is not set (run through tests/run)");
    char node[512], calls[512], fixture[512];
    snprintf(node, sizeof(node), "%s/node_modules/.bin/node", root);
    snprintf(calls, sizeof(calls), "%s/tests/compat/tools_calls.json", root);
    snprintf(fixture, sizeof(fixture), "%s/tests/compat/tools_fixture.sh", root);
    if (access(node, X_OK) < 0) test_fail(__FILE__, __LINE__, "%s missing: run scripts/install-deps", node);
    for (int pass = 0; pass < 2; pass++) {
        /* pass 0: the PATH given (rg when installed); pass 1: grep calls without rg */
        const char *path = pass == 0 ? "/usr/local/bin:/usr/bin:/bin" : "/nonexistent";
        char ref[300], mine[300], cf[300];
        snprintf(ref, sizeof(ref), "%s/ref%d", workdir(), pass);
        snprintf(mine, sizeof(mine), "%s/shd%d", workdir(), pass);
        snprintf(cf, sizeof(cf), "%s/calls%d.json", workdir(), pass);
        sh("'%s' '%s' && '%s' '%s'", fixture, ref, fixture, mine);
        if (pass == 0)
            sh("cp '%s' '%s'", calls, cf);
        else
            sh("'%s' -e 'const c=JSON.parse(require(\"fs\").readFileSync(process.argv[1]));"
               "process.stdout.write(JSON.stringify(c.filter(x=>x.name===\"grep\")))' '%s' > '%s'",
               node, calls, cf);
        sh("PATH=%s '%s' '%s/tests/compat/tools_ref.mjs' --workdir '%s' --calls '%s' > '%s.out'", path, node, root,
           ref, cf, ref);
        char *env[] = {NULL, NULL};
        char pe[64];
        snprintf(pe, sizeof(pe), "PATH=%s", path);
        env[0] = pe;
        tools_config cfg = {.workdir = mine, .env = env};
        tools_t *t = NULL;
        shed_err se = {0};
        ASSERT_EQ_INT(tools_new(&cfg, &t, &se), 0);
        json_error_t je;
        json_t *arr = json_load_file(cf, 0, &je);
        ASSERT_TRUE(arr != NULL);
        char outp[320];
        snprintf(outp, sizeof(outp), "%s.out", mine);
        FILE *f = fopen(outp, "w");
        ASSERT_TRUE(f != NULL);
        size_t i;
        json_t *c;
        json_array_foreach(arr, i, c)
        {
            const char *name = json_string_value(json_object_get(c, "name"));
            json_t *r = tools_call(t, name, json_object_get(c, "input"), 0, -1);
            json_t *line = json_pack("{s:s, s:O, s:O}", "name", name, "is_error", json_object_get(r, "is_error"),
                                     "content", json_object_get(r, "content"));
            _cleanup_free_ char *s = json_dumps(line, JSON_COMPACT);
            fprintf(f, "%s\n", s);
            json_decref(line);
            json_decref(r);
        }
        fclose(f);
        json_decref(arr);
        tools_free(t);
        sh("'%s' '%s/tests/compat/tools_compare.mjs' --calls '%s' --doc '%s/docs/toolset.md' --ref '%s.out' "
           "--ref-workdir '%s' --shed '%s.out' --shed-workdir '%s'",
           node, root, cf, root, ref, ref, mine, mine);
    }
}

TEST(invalid_utf8_file_names_stay_valid_json)
{
    sh("mkdir -p u && printf 'needle\\n' > \"u/bad$(printf '\\377')name.txt\"");
    char *env[] = {"PATH=/nonexistent", NULL};
    tools_t *t = mk(env);
    bool e;
    /* the reference cannot reach such a file through glob or its walker */
    EXPECT(t, "glob", "{\"pattern\":\"u/*.txt\"}", false, "no matches");
    EXPECT(t, "grep", "{\"pattern\":\"needle\",\"path\":\"u\"}", false, "no matches");
    _cleanup_free_ char *b = call(t, "bash", "{\"command\":\"/bin/ls u\"}", &e);
    ASSERT_EQ_STR(b, "bad\xEF\xBF\xBDname.txt");
    tools_free(t);
}

TEST(glob_hostile_patterns_are_bounded)
{
    tools_t *t = mk(NULL);
    buf_t p;
    buf_init(&p, 0);
    buf_puts(&p, "{\"pattern\":\"");
    for (int i = 0; i < 5000; i++) buf_puts(&p, "{a,b}");
    buf_puts(&p, "\"}");
    bool e;
    _cleanup_free_ char *o = call(t, "glob", p.data, &e);
    ASSERT_TRUE(e);
    ASSERT_CONTAINS(o, "glob: the pattern expands to more than 1024 patterns");
    buf_reset(&p);
    buf_puts(&p, "{\"pattern\":\"");
    for (int i = 0; i < 3000; i++) buf_puts(&p, "+(");
    buf_puts(&p, "x");
    for (int i = 0; i < 3000; i++) buf_puts(&p, ")");
    buf_puts(&p, "\"}");
    EXPECT(t, "glob", p.data, false, "no matches");
    buf_reset(&p);
    buf_puts(&p, "{\"pattern\":\"");
    for (int i = 0; i < 40000; i++) buf_putc(&p, 'a');
    buf_puts(&p, "\"}");
    EXPECT(t, "glob", p.data, true, "glob: the pattern is longer than 32768 bytes");
    buf_free(&p);
    tools_free(t);
}
