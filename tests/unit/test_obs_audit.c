/* Unit tests for the audit log: the hash chain and its verifier (edit,
 * deletion, insertion, reordering, a missing middle file, a cut last line),
 * rotation, reopening, redaction and content modes, dropped records when the
 * disk refuses a write, concurrent writers. */
#include "test.h"

#include "base/cleanup.h"
#include "base/crypto.h"
#include "base/json.h"
#include "base/log.h"
#include "obs/obs.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[64];

static const char *tmpdir(void)
{
    if (!g_dir[0]) {
        snprintf(g_dir, sizeof(g_dir), "/tmp/shed-audit-XXXXXX");
        ASSERT_TRUE(mkdtemp(g_dir) != NULL);
    }
    return g_dir;
}

static void path_of(const char *name, char *out, size_t n)
{
    snprintf(out, n, "%s/%s", tmpdir(), name);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f) return NULL;
    buf_t b;
    buf_init(&b, 0);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) buf_append(&b, chunk, n);
    fclose(f);
    if (!b.data) return strdup("");
    return buf_steal(&b);
}

static void spit(const char *path, const char *data)
{
    FILE *f = fopen(path, "we");
    ASSERT_TRUE(f != NULL);
    fputs(data, f);
    fclose(f);
}

/* Lines of a file, each without its newline; returns the count. */
static int lines_of(const char *path, char **lines, int max)
{
    char *all = slurp(path);
    ASSERT_TRUE(all != NULL);
    int n = 0;
    char *save = NULL;
    for (char *l = strtok_r(all, "\n", &save); l && n < max; l = strtok_r(NULL, "\n", &save))
        lines[n++] = strdup(l);
    free(all);
    return n;
}

static void write_lines(const char *path, char **lines, int n)
{
    FILE *f = fopen(path, "we");
    ASSERT_TRUE(f != NULL);
    for (int i = 0; i < n; i++) fprintf(f, "%s\n", lines[i]);
    fclose(f);
}

static void free_lines(char **lines, int n)
{
    for (int i = 0; i < n; i++) free(lines[i]);
}

/* A log with `records` tool.call records (plus opened/closed). */
static void make_log(const char *path, int records, uint64_t rotate)
{
    audit_opts o = {.path = path, .rotate_bytes = rotate};
    audit_t *a;
    shed_err err = {0};
    if (audit_open(&o, &a, &err) < 0) test_fail(__FILE__, __LINE__, "audit_open: %s", err.msg);
    for (int i = 0; i < records; i++) {
        json_t *f = json_pack("{s:s,s:i,s:{s:s}}", "tool", "bash", "exit_status", i, "input",
                              "command", "echo hello");
        ASSERT_EQ_INT(audit_write(a, "tool.call", f), 0);
        json_decref(f);
    }
    audit_close(a);
}

static int verify1(const char *path, shed_err *err)
{
    const char *p[] = {path};
    return audit_verify(p, 1, NULL, err);
}

TEST(chain_intact_and_reopen_continues)
{
    char p[128];
    path_of("a.log", p, sizeof(p));
    make_log(p, 5, 0);
    make_log(p, 3, 0);
    shed_err err = {0};
    audit_verifier v;
    const char *ps[] = {p};
    if (audit_verify(ps, 1, &v, &err) < 0) test_fail(__FILE__, __LINE__, "verify: %s", err.msg);
    ASSERT_EQ_INT(v.records, 5 + 2 + 3 + 2);
    ASSERT_EQ_INT(v.seq, 12);
    char *lines[32];
    int n = lines_of(p, lines, 32);
    ASSERT_EQ_INT(n, 12);
    ASSERT_CONTAINS(lines[0], "\"seq\":1,\"event\":\"audit.opened\"");
    ASSERT_CONTAINS(lines[0], "\"prev\":\"" AUDIT_GENESIS "\"}");
    ASSERT_CONTAINS(lines[1], "\"event\":\"tool.call\",\"tool\":\"bash\"");
    ASSERT_CONTAINS(lines[6], "\"event\":\"audit.closed\"");
    ASSERT_CONTAINS(lines[7], "\"seq\":8,\"event\":\"audit.opened\"");
    /* the file is private */
    struct stat st;
    ASSERT_EQ_INT(stat(p, &st), 0);
    ASSERT_EQ_INT(st.st_mode & 0777, 0600);
    free_lines(lines, n);
}

static void expect_bad(const char *path, const char *where, const char *why)
{
    shed_err err = {0};
    ASSERT_EQ_INT(verify1(path, &err), -EBADMSG);
    ASSERT_CONTAINS(err.msg, where);
    ASSERT_CONTAINS(err.msg, why);
}

TEST(verify_catches_edit)
{
    char p[128];
    path_of("e.log", p, sizeof(p));
    make_log(p, 6, 0);
    char *l[16];
    int n = lines_of(p, l, 16);
    char *at = strstr(l[3], "echo hello");
    ASSERT_TRUE(at != NULL);
    memcpy(at, "echo HELLO", 10); /* record on line 4 edited */
    write_lines(p, l, n);
    expect_bad(p, "e.log:5:", "record 4 (seq 4) was edited");
    free_lines(l, n);
}

TEST(verify_catches_deletion)
{
    char p[128];
    path_of("d.log", p, sizeof(p));
    make_log(p, 6, 0);
    char *l[16];
    int n = lines_of(p, l, 16);
    free(l[2]);
    memmove(&l[2], &l[3], sizeof(char *) * (size_t)(n - 3)); /* line 3 deleted */
    write_lines(p, l, n - 1);
    expect_bad(p, "d.log:3:", "were deleted or moved");
    free_lines(l, n - 1);
}

TEST(verify_catches_insertion)
{
    char p[128];
    path_of("i.log", p, sizeof(p));
    make_log(p, 6, 0);
    char *l[16];
    int n = lines_of(p, l, 16);
    /* a forged record whose prev is right (the forger can hash line 3)... */
    char forged[512], hex[65];
    crypto_sha256_hex(l[2], strlen(l[2]), hex);
    snprintf(forged, sizeof(forged),
             "{\"ts\":\"2026-01-01T00:00:00Z\",\"seq\":4,\"event\":\"tool.call\",\"prev\":\"%s\"}",
             hex);
    memmove(&l[4], &l[3], sizeof(char *) * (size_t)(n - 3));
    l[3] = strdup(forged);
    write_lines(p, l, n + 1);
    /* ...still breaks the chain at the next line */
    expect_bad(p, "i.log:5:", "inserted or reordered");
    free_lines(l, n + 1);
}

TEST(verify_catches_reordering)
{
    char p[128];
    path_of("r.log", p, sizeof(p));
    make_log(p, 6, 0);
    char *l[16];
    int n = lines_of(p, l, 16);
    char *t = l[3];
    l[3] = l[4];
    l[4] = t; /* lines 4 and 5 swapped */
    write_lines(p, l, n);
    expect_bad(p, "r.log:4:", "deleted or moved"); /* seq 5 where 4 was due */
    free_lines(l, n);
}

TEST(verify_catches_cut_and_garbage_lines)
{
    char p[128];
    path_of("t.log", p, sizeof(p));
    make_log(p, 3, 0);
    _cleanup_free_ char *all = slurp(p);
    size_t len = strlen(all);
    all[len - 10] = '\0'; /* last line cut mid-record */
    spit(p, all);
    expect_bad(p, "t.log:5:", "incomplete record");
    /* a blank line, and a non-record line */
    spit(p, "\n");
    expect_bad(p, "t.log:1:", "empty line");
    spit(p, "{\"hello\":1}\n");
    expect_bad(p, "t.log:1:", "field 'seq'");
    /* the first record deleted: the chain does not start at genesis */
    unlink(p);
    make_log(p, 3, 0);
    char *l[16];
    int n = lines_of(p, l, 16);
    write_lines(p, l + 1, n - 1);
    expect_bad(p, "t.log:1:", "records before it were deleted");
    free_lines(l, n);
    /* nothing at all */
    spit(p, "");
    shed_err err;
    ASSERT_EQ_INT(verify1(p, &err), -EBADMSG);
    ASSERT_CONTAINS(err.msg, "no audit records");
}

/* Rotated files of base in order, then the live file. */
static int rotation_set(const char *live, char paths[][160], int max)
{
    int n = 0;
    for (int i = 1; i < 1000 && n < max - 1; i++) {
        snprintf(paths[n], 160, "%s.%06d", live, i);
        if (access(paths[n], F_OK) < 0) break;
        n++;
    }
    snprintf(paths[n++], 160, "%s", live);
    return n;
}

TEST(rotation_keeps_the_chain_and_catches_a_missing_file)
{
    char p[128];
    path_of("rot.log", p, sizeof(p));
    make_log(p, 40, 2048);
    char files[64][160];
    int n = rotation_set(p, files, 64);
    ASSERT_GE_INT(n, 4);
    const char *ps[64];
    for (int i = 0; i < n; i++) ps[i] = files[i];
    shed_err err = {0};
    audit_verifier v;
    if (audit_verify(ps, n, &v, &err) < 0) test_fail(__FILE__, __LINE__, "verify: %s", err.msg);
    ASSERT_EQ_INT(v.records, 42 + (uint64_t)(n - 1)); /* + one audit.rotated per rotation */
    /* every file is at most rotate_bytes */
    for (int i = 0; i < n; i++) {
        struct stat st;
        ASSERT_EQ_INT(stat(files[i], &st), 0);
        ASSERT_TRUE(st.st_size <= 2048);
    }
    /* the live file's first record names the last rotated file */
    char *l[64];
    int ln = lines_of(p, l, 64);
    char want[200];
    snprintf(want, sizeof(want), "\"prev_file\":\"rot.log.%06d\"", n - 1);
    ASSERT_CONTAINS(l[0], want);
    free_lines(l, ln);
    /* a file in the middle missing */
    const char *gap[64];
    int g = 0;
    for (int i = 0; i < n; i++)
        if (i != 1) gap[g++] = files[i];
    ASSERT_EQ_INT(audit_verify(gap, g, NULL, &err), -EBADMSG);
    ASSERT_CONTAINS(err.msg, "rot.log.000003:1:");
    ASSERT_CONTAINS(err.msg, "rot.log.000002 is missing");
    /* out of order */
    const char *swapped[64];
    for (int i = 0; i < n; i++) swapped[i] = files[i];
    swapped[1] = files[2];
    swapped[2] = files[1];
    ASSERT_EQ_INT(audit_verify(swapped, n, NULL, &err), -EBADMSG);
    ASSERT_CONTAINS(err.msg, "rot.log.000003:1:");
    /* retention removed the oldest file: still verifiable, noted */
    ASSERT_EQ_INT(audit_verify(ps + 1, n - 1, &v, &err), 0);
    ASSERT_EQ_STR(v.continued_from, "rot.log.000001");
    /* the tail of a rotated file cut: the next file's first record says so */
    char *rl[64];
    int rn = lines_of(files[1], rl, 64);
    write_lines(files[1], rl, rn - 1);
    ASSERT_EQ_INT(audit_verify(ps, n, NULL, &err), -EBADMSG);
    ASSERT_CONTAINS(err.msg, "rot.log.000003:1: prev is not the hash of the last record of "
                             "rot.log.000002");
    free_lines(rl, rn);
}

TEST(reopen_after_rotation_and_missing_live_file)
{
    char p[128];
    path_of("m.log", p, sizeof(p));
    make_log(p, 20, 1500);
    ASSERT_EQ_INT(unlink(p), 0); /* the live file moved away by hand */
    make_log(p, 2, 1500);
    char files[64][160];
    int n = rotation_set(p, files, 64);
    const char *ps[64];
    for (int i = 0; i < n; i++) ps[i] = files[i];
    shed_err err = {0};
    /* the removed live file's records are gone: the chain says so at the new live file */
    ASSERT_EQ_INT(audit_verify(ps, n, NULL, &err), 0);
    char *l[8];
    int ln = lines_of(p, l, 8);
    ASSERT_CONTAINS(l[0], "\"event\":\"audit.opened\"");
    ASSERT_CONTAINS(l[0], "\"prev_file\":\"m.log.");
    free_lines(l, ln);
}

TEST(open_cuts_an_incomplete_last_line_and_says_so)
{
    char p[128];
    path_of("c.log", p, sizeof(p));
    make_log(p, 2, 0);
    int fd = open(p, O_WRONLY | O_APPEND);
    ASSERT_TRUE(write(fd, "{\"ts\":\"2026", 11) == 11); /* a crash mid-write */
    close(fd);
    make_log(p, 1, 0);
    shed_err err = {0};
    if (verify1(p, &err) < 0) test_fail(__FILE__, __LINE__, "verify: %s", err.msg);
    _cleanup_free_ char *all = slurp(p);
    ASSERT_CONTAINS(all, "\"cut_incomplete_bytes\":11");
    /* a last record that is not a record: refuse to continue (fail closed) */
    spit(p, "not json\n");
    audit_opts o = {.path = p};
    audit_t *a;
    ASSERT_EQ_INT(audit_open(&o, &a, &err), -EBADMSG);
    ASSERT_CONTAINS(err.msg, "last record is not an audit record");
}

TEST(second_writer_is_refused)
{
    char p[128];
    path_of("lock.log", p, sizeof(p));
    audit_opts o = {.path = p};
    audit_t *a, *b;
    shed_err err = {0};
    ASSERT_EQ_INT(audit_open(&o, &a, &err), 0);
    ASSERT_TRUE(audit_open(&o, &b, &err) < 0);
    ASSERT_CONTAINS(err.msg, "another shed process writes it");
    audit_close(a);
    ASSERT_EQ_INT(audit_open(&o, &b, &err), 0);
    audit_close(b);
    /* a missing directory is made (one level, 0700); two levels are not */
    char sub[160];
    snprintf(sub, sizeof(sub), "%s/newdir/audit.log", tmpdir());
    o.path = sub;
    ASSERT_EQ_INT(audit_open(&o, &a, &err), 0);
    audit_close(a);
    struct stat st;
    snprintf(sub, sizeof(sub), "%s/newdir", tmpdir());
    ASSERT_EQ_INT(stat(sub, &st), 0);
    ASSERT_EQ_INT(st.st_mode & 0777, 0700);
    o.path = "/nonexistent-dir/deeper/audit.log";
    ASSERT_TRUE(audit_open(&o, &a, &err) < 0);
    ASSERT_CONTAINS(err.msg, "open audit log /nonexistent-dir/deeper/audit.log");
    /* NULL handle: auditing off, calls are no-ops */
    ASSERT_EQ_INT(audit_write(NULL, "x", NULL), 0);
    audit_close(NULL);
}

static json_t *last_record(const char *path, int from_end)
{
    char *l[64];
    int n = lines_of(path, l, 64);
    ASSERT_TRUE(n > from_end);
    shed_err err;
    json_t *j = json_parse(l[n - 1 - from_end], strlen(l[n - 1 - from_end]), 1 << 20, 32, &err);
    free_lines(l, n);
    ASSERT_TRUE(j != NULL);
    return j;
}

static json_t *write_one(const char *name, audit_content mode, json_t *fields)
{
    char p[128];
    path_of(name, p, sizeof(p));
    audit_opts o = {.path = p, .content = mode, .fsync_each = true};
    audit_t *a;
    shed_err err = {0};
    ASSERT_EQ_INT(audit_open(&o, &a, &err), 0);
    ASSERT_EQ_INT(audit_write(a, "tool.call", fields), 0);
    audit_close(a);
    ASSERT_EQ_INT(verify1(p, &err), 0);
    return last_record(p, 1); /* before audit.closed */
}

TEST(redaction_of_values_and_credential_keys)
{
    _cleanup_json_ json_t *f = json_pack(
        "{s:s,s:{s:s,s:s},s:s,s:s,s:s,s:{s:s},s:i,s:s,s:[s]}", "tool", "bash", "input", "command",
        "curl -H 'Authorization: Bearer abc.def' -H 'x-api-key: sk-ant-api03-XYZ' u", "env",
        "TOKEN=sk-shed-env-0123", "sessions_token", "sk-shed-req-secret1", "x-api-key",
        "plainvalue1", "Authorization", "Basic dXNlcjpwYXNz", "headers", "Cookie",
        "session=plainvalue2", "input_tokens", 42, "clientSecret", "plainvalue3", "list",
        "whsec_abcdef");
    _cleanup_json_ json_t *r = write_one("red.log", AUDIT_CONTENT_METADATA, f);
    _cleanup_free_ char *s = json_dumps(r, JSON_COMPACT);
    ASSERT_NOT_CONTAINS(s, "abc.def");
    ASSERT_NOT_CONTAINS(s, "XYZ");
    ASSERT_NOT_CONTAINS(s, "0123");
    ASSERT_NOT_CONTAINS(s, "secret1");
    ASSERT_NOT_CONTAINS(s, "plainvalue");
    ASSERT_NOT_CONTAINS(s, "dXNlcjpwYXNz");
    ASSERT_NOT_CONTAINS(s, "abcdef");
    ASSERT_CONTAINS(s, "Bearer [REDACTED]");
    ASSERT_CONTAINS(s, "\"sessions_token\":\"[REDACTED]\"");
    ASSERT_CONTAINS(s, "\"input_tokens\":42"); /* a count, not a credential */
    ASSERT_CONTAINS(s, "\"tool\":\"bash\"");
}

TEST(content_modes)
{
    char big[100000];
    memset(big, 'o', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    _cleanup_json_ json_t *f = json_pack("{s:s,s:{s:s},s:s}", "tool", "bash", "input", "command",
                                         big, "output", "hello world");
    /* none: sizes only */
    _cleanup_json_ json_t *n = write_one("none.log", AUDIT_CONTENT_NONE, f);
    ASSERT_TRUE(json_object_get(n, "input") == NULL);
    ASSERT_TRUE(json_object_get(n, "output") == NULL);
    ASSERT_TRUE(json_integer_value(json_object_get(n, "input_bytes")) > 99999);
    ASSERT_EQ_INT(json_integer_value(json_object_get(n, "output_bytes")), 11);
    /* metadata: input cut to AUDIT_META_CAP, output as its size */
    _cleanup_json_ json_t *m = write_one("meta.log", AUDIT_CONTENT_METADATA, f);
    const char *cmd = json_string_value(json_object_get(json_object_get(m, "input"), "command"));
    ASSERT_TRUE(cmd != NULL);
    ASSERT_TRUE(strlen(cmd) < AUDIT_META_CAP + 40);
    ASSERT_CONTAINS(cmd, "...[cut 99743 bytes]");
    ASSERT_TRUE(json_object_get(m, "output") == NULL);
    ASSERT_EQ_INT(json_integer_value(json_object_get(m, "output_bytes")), 11);
    /* full: both, each string cut at AUDIT_FULL_CAP */
    _cleanup_json_ json_t *u = write_one("full.log", AUDIT_CONTENT_FULL, f);
    cmd = json_string_value(json_object_get(json_object_get(u, "input"), "command"));
    ASSERT_TRUE(strlen(cmd) >= AUDIT_FULL_CAP && strlen(cmd) < AUDIT_FULL_CAP + 40);
    ASSERT_EQ_STR(json_string_value(json_object_get(u, "output")), "hello world");
    /* reserved keys cannot be forged by a caller */
    _cleanup_json_ json_t *forge =
        json_pack("{s:s,s:i,s:s}", "prev", AUDIT_GENESIS, "seq", 99, "prev_file", "x");
    _cleanup_json_ json_t *r = write_one("forge.log", AUDIT_CONTENT_METADATA, forge);
    ASSERT_EQ_INT(json_integer_value(json_object_get(r, "seq")), 2);
    ASSERT_TRUE(json_object_get(r, "prev_file") == NULL);
    /* cut on a UTF-8 boundary: the record stays valid JSON */
    char utf[AUDIT_META_CAP * 2 + 1] = "";
    for (int i = 0; i < AUDIT_META_CAP; i++) strcat(utf, "\xc3\xa9");
    _cleanup_json_ json_t *uf = json_pack("{s:{s:s}}", "input", "path", utf);
    _cleanup_json_ json_t *ur = write_one("utf.log", AUDIT_CONTENT_METADATA, uf);
    ASSERT_CONTAINS(json_string_value(json_object_get(json_object_get(ur, "input"), "path")),
                    "\xc3\xa9...[cut");
    audit_content c;
    ASSERT_EQ_INT(audit_parse_content("full", &c), 0);
    ASSERT_EQ_INT(c, AUDIT_CONTENT_FULL);
    ASSERT_EQ_INT(audit_parse_content("all", &c), -EINVAL);
}

TEST(failed_writes_are_dropped_counted_and_noted_in_the_chain)
{
    char p[128];
    path_of("full-disk.log", p, sizeof(p));
    audit_opts o = {.path = p};
    audit_t *a;
    shed_err err = {0};
    ASSERT_EQ_INT(audit_open(&o, &a, &err), 0);
    struct stat st;
    ASSERT_EQ_INT(stat(p, &st), 0);
    /* The file may not grow any more: every write fails like a full disk. */
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old, lim = {.rlim_cur = (rlim_t)st.st_size + 50, .rlim_max = RLIM_INFINITY};
    getrlimit(RLIMIT_FSIZE, &old);
    ASSERT_EQ_INT(setrlimit(RLIMIT_FSIZE, &lim), 0);
    _cleanup_json_ json_t *f = json_pack("{s:s}", "tool", "bash");
    /* queued at once (the caller never waits for the disk), dropped by the writer */
    for (int i = 0; i < 3; i++) ASSERT_EQ_INT(audit_write(a, "tool.call", f), 0);
    ASSERT_EQ_INT(audit_flush(a, 20000), -EFBIG);
    ASSERT_EQ_INT((long long)metrics_value(obs_m.audit_records_dropped, NULL), 3);
    ASSERT_EQ_INT(audit_flush(a, 20000), 0); /* reported once */
    /* nothing partial was left behind */
    ASSERT_EQ_INT(verify1(p, &err), 0);
    ASSERT_EQ_INT(setrlimit(RLIMIT_FSIZE, &old), 0);
    ASSERT_EQ_INT(audit_write(a, "tool.call", f), 0);
    ASSERT_EQ_INT(audit_flush(a, 20000), 0);
    audit_close(a);
    if (verify1(p, &err) < 0) test_fail(__FILE__, __LINE__, "verify: %s", err.msg);
    _cleanup_free_ char *all = slurp(p);
    ASSERT_CONTAINS(all,
                    "\"event\":\"audit.records_dropped\",\"count\":3,\"error\":\"File too large\"");
    ASSERT_EQ_INT((long long)metrics_value(obs_m.audit_records, NULL),
                  4); /* opened, note, call, closed */
}

#define WRITERS 4
#define EACH    300

static void *writer(void *arg)
{
    audit_t *a = arg;
    for (int i = 0; i < EACH; i++) {
        json_t *f = json_pack("{s:i}", "i", i);
        audit_write(a, "tool.call", f);
        json_decref(f);
    }
    return NULL;
}

TEST(concurrent_writers_keep_one_chain)
{
    char p[128];
    path_of("conc.log", p, sizeof(p));
    audit_opts o = {.path = p, .rotate_bytes = 16384};
    audit_t *a;
    shed_err err = {0};
    ASSERT_EQ_INT(audit_open(&o, &a, &err), 0);
    pthread_t th[WRITERS];
    for (int i = 0; i < WRITERS; i++) pthread_create(&th[i], NULL, writer, a);
    for (int i = 0; i < WRITERS; i++) pthread_join(th[i], NULL);
    audit_close(a);
    char files[256][160];
    int n = rotation_set(p, files, 256);
    const char *ps[256];
    for (int i = 0; i < n; i++) ps[i] = files[i];
    audit_verifier v;
    if (audit_verify(ps, n, &v, &err) < 0) test_fail(__FILE__, __LINE__, "verify: %s", err.msg);
    ASSERT_EQ_INT(v.records, WRITERS * EACH + 2 + (n - 1));
}

TEST(parse_line_rejects_malformed)
{
    audit_record r;
    shed_err err;
    const char *ok = "{\"ts\":\"x\",\"seq\":3,\"event\":\"e\",\"prev\":\"" AUDIT_GENESIS "\"}";
    ASSERT_EQ_INT(audit_parse_line(ok, strlen(ok), &r, &err), 0);
    ASSERT_EQ_INT(r.seq, 3);
    ASSERT_EQ_STR(r.event, "e");
    const char *bad[] = {
        "",
        "[]",
        "{\"ts\":\"x\",\"seq\":0,\"event\":\"e\",\"prev\":\"" AUDIT_GENESIS "\"}",
        "{\"ts\":\"x\",\"seq\":1,\"event\":\"e\",\"prev\":\"abc\"}",
        "{\"ts\":\"x\",\"seq\":1,\"event\":\"e\",\"prev\":\"" AUDIT_GENESIS
        "\",\"prev_file\":\"a/b\"}",
        "{\"ts\":\"x\",\"seq\":\"1\",\"event\":\"e\",\"prev\":\"" AUDIT_GENESIS "\"}",
        "{\"ts\":\"x\",\"seq\":1,\"prev\":\"" AUDIT_GENESIS "\"}",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        ASSERT_EQ_INT(audit_parse_line(bad[i], strlen(bad[i]), &r, &err), -EBADMSG);
}

static void *drain(void *arg)
{
    int fd = open(arg, O_RDONLY | O_CLOEXEC);
    char buf[65536];
    while (fd >= 0 && read(fd, buf, sizeof(buf)) > 0) {
    }
    if (fd >= 0) close(fd);
    return NULL;
}

TEST(a_hung_disk_never_blocks_the_caller)
{
    /* A FIFO nobody reads stands in for a hung disk: once its 64 KiB buffer
     * is full, the writer thread blocks in write() for good. */
    char p[128];
    path_of("hung.log", p, sizeof(p));
    ASSERT_EQ_INT(mkfifo(p, 0600), 0);
    audit_opts o = {.path = p};
    audit_t *a;
    shed_err err = {0};
    ASSERT_EQ_INT(audit_open(&o, &a, &err), 0);
    _cleanup_json_ json_t *f =
        json_pack("{s:s,s:{s:s}}", "tool", "bash", "input", "command", "make -j8 all check");
    int queued = 0, refused = 0;
    for (int i = 0; i < 12000; i++) {
        int rc = audit_write(a, "tool.call", f);
        if (rc == 0)
            queued++;
        else {
            ASSERT_EQ_INT(rc, -ENOBUFS);
            refused++;
        }
    }
    ASSERT_TRUE(refused > 0);
    ASSERT_EQ_INT((long long)metrics_value(obs_m.audit_records_dropped, NULL), refused);
    ASSERT_EQ_INT(audit_flush(a, 200), -ETIMEDOUT);
    /* the disk comes back: everything queued gets written, and close returns */
    pthread_t th;
    pthread_create(&th, NULL, drain, p);
    ASSERT_EQ_INT(audit_flush(a, 30000), -ENOBUFS); /* the drops since the last flush */
    audit_close(a);
    pthread_join(th, NULL);
    ASSERT_EQ_INT((long long)metrics_value(obs_m.audit_records, NULL),
                  queued + 2 /* opened, closed */ + 1 /* the records_dropped note */);
}

TEST(every_log_redact_pattern_is_masked_in_audit_strings)
{
    /* audit.c skips log_redact for strings without a trigger substring; this
     * keeps that shortcut honest for every pattern log.h names. */
    static const char *const SECRETS[] = {
        "sk-ant-api03-AAAA", "sk-shed-env-BBBB", "whsec_CCCC",      "Bearer DDDD",
        "bearer EEEE",       "BEARER FFFF",      "x-api-key: GGGG", "X-Api-Key:HHHH",
    };
    for (size_t i = 0; i < ARRAY_SIZE(SECRETS); i++) {
        char in[128], want[128];
        snprintf(in, sizeof(in), "echo %s done", SECRETS[i]);
        log_redact(in, want, sizeof(want));
        ASSERT_TRUE(strcmp(in, want) != 0); /* log_redact masks it */
        _cleanup_json_ json_t *f = json_pack("{s:{s:s},s:s}", "input", "command", in, "note", in);
        char name[32];
        snprintf(name, sizeof(name), "pat%zu.log", i);
        _cleanup_json_ json_t *r = write_one(name, AUDIT_CONTENT_METADATA, f);
        ASSERT_EQ_STR(json_string_value(json_object_get(json_object_get(r, "input"), "command")),
                      want);
        ASSERT_EQ_STR(json_string_value(json_object_get(r, "note")), want);
    }
}
