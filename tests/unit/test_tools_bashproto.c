/* Unit tests for the bash tool's protocol pieces (tools/bash_proto.h): the
 * same output stream gives the same result whatever its chunking (one byte
 * at a time, a sentinel split anywhere, output after the sentinel), and a
 * shell lent with tools_bash_lend, driven here the way the worker drives it,
 * gives byte-identical results to the synchronous tools_call path for the
 * same commands. */
#include "test.h"

#include "base/cleanup.h"
#include "tools/bash_proto.h"
#include "tools/tools.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

static char g_dir[256];

static const char *workdir(void)
{
    if (!g_dir[0]) {
        snprintf(g_dir, sizeof(g_dir), "/tmp/shed-bashproto-test.XXXXXX");
        if (!mkdtemp(g_dir)) test_fail(__FILE__, __LINE__, "mkdtemp: %s", strerror(errno));
    }
    return g_dir;
}

static char *dump(json_t *r)
{
    ASSERT_TRUE(r != NULL);
    char *s = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    json_decref(r);
    ASSERT_TRUE(s != NULL);
    return s;
}

/* The result of one call whose shell prints pre, the sentinel, post, fed in
 * chunks of `chunk` bytes (0: all at once). */
static char *feed_stream(const char *pre, size_t prelen, const char *code_post, size_t chunk)
{
    tools_bash_req req = {.cmd = "x", .cmdlen = 1, .timeout = 1000, .timeout_ms = 1000};
    tools_bash_run r;
    ASSERT_EQ_INT(tools_bash_run_start(&r, &req), 0);
    buf_t s;
    buf_init(&s, 0);
    buf_append(&s, pre, prelen);
    buf_puts(&s, r.sentinel);
    buf_puts(&s, code_post);
    bool seen = false;
    size_t off = 0, step = chunk ? chunk : s.len;
    while (off < s.len && !seen) {
        size_t n = s.len - off < step ? s.len - off : step;
        seen = tools_bash_run_feed(&r, s.data + off, n);
        off += n;
    }
    ASSERT_TRUE(seen);
    char *out = dump(tools_bash_run_result(&r));
    tools_bash_run_free(&r);
    buf_free(&s);
    return out;
}

TEST(bash_proto_any_chunking_gives_the_same_result)
{
    static const size_t chunks[] = {1, 2, 3, 7, 52, 53, 54, 4096, 65536};
    _cleanup_free_ char *big = malloc(500001);
    memset(big, 'x', 500000);
    big[499999] = '\n';
    big[500000] = 0;
    /* 'é' (2 bytes, 1 unit) and U+1F600 (4 bytes, 2 units) across the cut */
    size_t ulen = 0;
    _cleanup_free_ char *uni = malloc(400000);
    while (ulen + 6 < 400000) {
        memcpy(uni + ulen, "\xc3\xa9\xf0\x9f\x98\x80", 6);
        ulen += 6;
    }
    struct {
        const char *pre;
        size_t prelen;
        const char *post;
    } cases[] = {
        {"hello\n\n", 7, "0\n"},
        {"", 0, "0\n"},
        {"", 0, "3\n"},
        {"a\x1b[31mred\x1b[0m\n", 15, "0\nbackground output after the sentinel"},
        {"bad \xff\xfe utf-8 \xe2\x82\n", 17, "1\n"},
        {"nul \0 inside\n", 13, "0\n"},
        {"__ANT_CMD_not-this-one_DONE__7\n", 31, "0\n"},
        {big, 500000, "0\n"},
        {uni, ulen, "2\n"},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        _cleanup_free_ char *whole = feed_stream(cases[c].pre, cases[c].prelen, cases[c].post, 0);
        for (size_t k = 0; k < sizeof(chunks) / sizeof(chunks[0]); k++) {
            if (cases[c].prelen > 100000 && chunks[k] < 52) continue; /* slow, nothing new */
            _cleanup_free_ char *part = feed_stream(cases[c].pre, cases[c].prelen, cases[c].post, chunks[k]);
            if (strcmp(whole, part) != 0)
                test_fail(__FILE__, __LINE__, "case %zu, chunks of %zu: %.200s != %.200s", c, chunks[k], part, whole);
        }
    }
    /* a sanity check of what those results say */
    _cleanup_free_ char *hello = feed_stream("hello\n\n", 7, "0\n", 1);
    ASSERT_EQ_STR(hello, "{\"content\":[{\"text\":\"hello\",\"type\":\"text\"}],\"is_error\":false}");
    _cleanup_free_ char *three = feed_stream("", 0, "3\n", 1);
    ASSERT_EQ_STR(three, "{\"content\":[{\"text\":\"exit 3\",\"type\":\"text\"}],\"is_error\":true}");
    _cleanup_free_ char *huge = feed_stream(big, 500000, "0\n", 4096);
    ASSERT_CONTAINS(huge, "[output truncated]");
}

/* Drive a lent shell the way the worker does: write the call's bytes, read
 * the output in small reads until the sentinel or EOF. */
static char *direct_call(tools_t *t, int *in, int *out, const char *input_json)
{
    json_error_t je;
    json_t *input = json_loads(input_json, 0, &je);
    ASSERT_TRUE(input != NULL);
    tools_bash_req req;
    json_t *res = tools_bash_parse(input, 0, 120000, &req);
    if (req.restart || *in < 0) {
        if (*in >= 0) close(*in), close(*out);
        *in = *out = -1;
        tools_bash_kill(t);
    }
    if (!res && *in < 0) {
        pid_t pid;
        shed_err err = {0};
        ASSERT_EQ_INT(tools_bash_lend(t, in, out, &pid, &err), 0);
    }
    if (res) {
        json_decref(input);
        return dump(res);
    }
    char chunk[4093]; /* odd, small: the sentinel lands across reads */
    /* stale background output is not this call's (timing: not compared here) */
    for (int i = 0; i < TOOLS_BASH_DRAIN_READS && read(*out, chunk, sizeof(chunk)) > 0; i++) {
    }
    tools_bash_run r;
    ASSERT_EQ_INT(tools_bash_run_start(&r, &req), 0);
    enum tools_bash_end end = 0;
    while (!end) {
        struct pollfd p[2] = {{.fd = *out, .events = POLLIN}, {.fd = *in, .events = POLLOUT}};
        int np = r.sent < r.in.len ? 2 : 1;
        ASSERT_TRUE(poll(p, (nfds_t)np, 20000) > 0);
        if (np == 2 && p[1].revents) {
            ssize_t w = send(*in, r.in.data + r.sent, r.in.len - r.sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0) r.sent += (size_t)w;
            else if (errno != EAGAIN) r.sent = r.in.len;
        }
        if (p[0].revents) {
            ssize_t n = read(*out, chunk, sizeof(chunk));
            if (n > 0 && tools_bash_run_feed(&r, chunk, (size_t)n)) break;
            if (n == 0) end = TOOLS_BASH_DIED;
        }
    }
    if (end) {
        close(*in), close(*out);
        *in = *out = -1;
        tools_bash_kill(t);
        res = tools_bash_end_result(end, &req);
    } else {
        res = tools_bash_run_result(&r);
    }
    tools_bash_run_free(&r);
    json_decref(input);
    return dump(res);
}

static char *sync_call(tools_t *t, const char *input_json)
{
    json_error_t je;
    json_t *input = json_loads(input_json, 0, &je);
    ASSERT_TRUE(input != NULL);
    char *s = dump(tools_call(t, "bash", input, 0, -1));
    json_decref(input);
    return s;
}

TEST(bash_lent_shell_gives_the_synchronous_results)
{
    signal(SIGPIPE, SIG_IGN);
    tools_config cfg = {.workdir = workdir()};
    tools_t *ts = NULL, *td = NULL;
    shed_err err = {0};
    ASSERT_EQ_INT(tools_new(&cfg, &ts, &err), 0);
    ASSERT_EQ_INT(tools_new(&cfg, &td, &err), 0);
    static const char *const inputs[] = {
        "{\"command\":\"echo hi\"}",
        "{\"command\":\"printf 'a\\\\033[31mb\\\\033[0m\\\\n'; echo \\u00e9\"}",
        "{\"command\":\"false\"}",
        "{\"command\":\"true\"}",
        "{\"command\":\"printf '\\\\377\\\\376 bad\\\\n'\"}",
        "{\"command\":\"seq 1 200000\"}",
        "{\"command\":\"head -c 400000 /dev/zero | tr '\\\\0' '\\u00e9' ; echo\"}",
        "{\"command\":\"export X=1; echo ${X}\"}",
        "{\"command\":\"exit 3\"}",
        "{\"command\":\"echo ${X:-fresh} after the exit\"}",
        "{\"command\":\"(echo bg; sleep 0.1) & wait; echo waited\"}",
        "{\"restart\":true}",
        "{\"restart\":true,\"command\":\"echo restarted\"}",
        "{\"command\":5}",
        "{}",
        "{\"command\":\"kill -9 $$\"}",
    };
    int in = -1, out = -1;
    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        _cleanup_free_ char *a = sync_call(ts, inputs[i]);
        _cleanup_free_ char *b = direct_call(td, &in, &out, inputs[i]);
        if (strcmp(a, b) != 0)
            test_fail(__FILE__, __LINE__, "%s: direct %.300s != synchronous %.300s", inputs[i], b, a);
    }
    if (in >= 0) close(in), close(out);
    tools_free(ts);
    tools_free(td);
    rmdir(workdir());
}

TEST(bash_sync_call_takes_a_lent_shell_back)
{
    signal(SIGPIPE, SIG_IGN);
    tools_config cfg = {.workdir = workdir()};
    tools_t *t = NULL;
    shed_err err = {0};
    ASSERT_EQ_INT(tools_new(&cfg, &t, &err), 0);
    int in, out;
    pid_t pid;
    ASSERT_EQ_INT(tools_bash_lend(t, &in, &out, &pid, &err), 0);
    ASSERT_TRUE(pid > 0 && kill(pid, 0) == 0);
    /* the lent shell is killed; a fresh one serves the call */
    _cleanup_free_ char *r = sync_call(t, "{\"command\":\"echo back\"}");
    ASSERT_EQ_STR(r, "{\"content\":[{\"text\":\"back\",\"type\":\"text\"}],\"is_error\":false}");
    char c;
    ASSERT_EQ_INT(read(out, &c, 1), 0); /* the lent shell's output ended: it is gone */
    close(in);
    close(out);
    tools_free(t);
    rmdir(workdir());
}
