/* Unit tests for src/memory: the sync engine against an in-process memory
 * store. The store below is a test double of the remote memory API (the same
 * semantics: cursor pages, basic/full views, 409 on a content_sha256
 * precondition or expected_content_sha256 mismatch, 404, 413 over 100 kB),
 * with fault injection (error statuses, lost responses, deferred
 * completions). End-to-end runs against `shed serve` replace it once the
 * server's memory endpoints land. */
#include "test.h"

#include "base/cleanup.h"
#include "base/crypto.h"
#include "base/err.h"
#include "base/log.h"
#include "base/tree.h"
#include "memory/memory.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the in-process store --------------------------------------------------- */

#define FAKE_MAX         512
#define FAKE_MAX_CONTENT 100000

typedef struct fmem {
    char id[32], path[1100];
    char *content;
    size_t len;
    char sha[65];
    int live;
} fmem_t;

typedef struct fake {
    fmem_t m[FAKE_MAX];
    int n, next_id;
    int calls[5];
    char last_view[8];
    int last_limit;
    char last_precondition[65], last_expected[65];
    int fail_op[5]; /* status to answer with for this op, 0 = normal */
    int lose_op[5]; /* apply, then answer "no response" */
    int async, applying, max_nq;
    memory_req_t *queue[256];
    int nq;
    int loop_cursor; /* a broken server: every page says there is another */
    /* change the store between the listing and the next call (a racing writer) */
    const char *race_path, *race_content;
} fake_t;

static void sha_hex(const char *s, size_t n, char out[65])
{
    crypto_sha256_hex(s, n, out);
}

static fmem_t *fake_find_path(fake_t *f, const char *path)
{
    for (int i = 0; i < f->n; i++)
        if (f->m[i].live && !strcmp(f->m[i].path, path)) return &f->m[i];
    return NULL;
}

static fmem_t *fake_find_id(fake_t *f, const char *id)
{
    for (int i = 0; i < f->n; i++)
        if (f->m[i].live && !strcmp(f->m[i].id, id)) return &f->m[i];
    return NULL;
}

static void fake_set(fmem_t *m, const char *content, size_t len)
{
    free(m->content);
    m->content = malloc(len + 1);
    memcpy(m->content, content, len);
    m->content[len] = 0;
    m->len = len;
    sha_hex(content, len, m->sha);
}

/* Server-side write (another session, the console). */
static fmem_t *fake_put(fake_t *f, const char *path, const char *content)
{
    fmem_t *m = fake_find_path(f, path);
    if (!m) {
        ASSERT_TRUE(f->n < FAKE_MAX);
        m = &f->m[f->n++];
        memset(m, 0, sizeof *m);
        snprintf(m->id, sizeof m->id, "mem_%04d", ++f->next_id);
        snprintf(m->path, sizeof m->path, "%s", path);
        m->live = 1;
    }
    fake_set(m, content, strlen(content));
    return m;
}

static void fake_del(fake_t *f, const char *path)
{
    fmem_t *m = fake_find_path(f, path);
    if (m) m->live = 0;
}

static const char *fake_content(fake_t *f, const char *path)
{
    fmem_t *m = fake_find_path(f, path);
    return m ? m->content : NULL;
}

static int fake_count(fake_t *f)
{
    int c = 0;
    for (int i = 0; i < f->n; i++) c += f->m[i].live;
    return c;
}

static int cmp_mem(const void *a, const void *b)
{
    return strcmp((*(fmem_t *const *)a)->path, (*(fmem_t *const *)b)->path);
}

static void complete(fake_t *f, memory_req_t *r)
{
    (void)f;
    memory_req_done(r);
}

/* Synchronous mode answers inside the call; async mode queues the request
 * and applies it only when pumped, as a server the request has not reached
 * yet. */
static int answer(fake_t *f, memory_req_t *r)
{
    if (f->async && !f->applying) {
        ASSERT_TRUE(f->nq < 256);
        f->queue[f->nq++] = r;
        if (f->nq > f->max_nq) f->max_nq = f->nq;
        return 0;
    }
    f->calls[r->op]++;
    if (f->race_path && r->op != MEMORY_OP_LIST) {
        fake_put(f, f->race_path, f->race_content);
        f->race_path = NULL;
    }
    if (f->fail_op[r->op]) {
        r->status = f->fail_op[r->op];
        snprintf(r->error, sizeof r->error, "injected");
        complete(f, r);
        return 0;
    }
    fmem_t *m = NULL;
    switch (r->op) {
    case MEMORY_OP_LIST: {
        snprintf(f->last_view, sizeof f->last_view, "%s", r->view);
        f->last_limit = r->limit;
        fmem_t *sorted[FAKE_MAX];
        int k = 0;
        for (int i = 0; i < f->n; i++)
            if (f->m[i].live &&
                (!r->path_prefix || !strncmp(f->m[i].path, r->path_prefix, strlen(r->path_prefix))))
                sorted[k++] = &f->m[i];
        qsort(sorted, (size_t)k, sizeof *sorted, cmp_mem);
        int off = r->page ? atoi(r->page) : 0, end = off + r->limit;
        if (end > k) end = k;
        if (off == 0) memory_req_add_item(r, NULL, "/notes/", NULL, NULL, 0, 1); /* a rollup */
        for (int i = off; i < end; i++) {
            int full = !strcmp(r->view, "full");
            memory_req_add_item(r, sorted[i]->id, sorted[i]->path, sorted[i]->sha,
                                full ? sorted[i]->content : NULL, full ? sorted[i]->len : 0, 0);
        }
        if (f->loop_cursor)
            memory_req_set_next_page(r, "again");
        else if (end < k) {
            char cur[16];
            snprintf(cur, sizeof cur, "%d", end);
            memory_req_set_next_page(r, cur);
        }
        r->status = 200;
        break;
    }
    case MEMORY_OP_GET:
        m = fake_find_id(f, r->memory_id);
        r->status = m ? 200 : 404;
        break;
    case MEMORY_OP_CREATE:
        if (r->content_len > FAKE_MAX_CONTENT)
            r->status = 413;
        else if (fake_find_path(f, r->path))
            r->status = 409;
        else {
            m = fake_put(f, r->path, "");
            fake_set(m, r->content, r->content_len);
            r->status = 200;
        }
        break;
    case MEMORY_OP_UPDATE:
        snprintf(f->last_precondition, sizeof f->last_precondition, "%s", r->sha ? r->sha : "");
        m = fake_find_id(f, r->memory_id);
        if (!m)
            r->status = 404;
        else if (r->content_len > FAKE_MAX_CONTENT)
            r->status = 413, m = NULL;
        else if (r->sha && strcmp(r->sha, m->sha))
            r->status = 409, m = NULL;
        else {
            fake_set(m, r->content, r->content_len);
            r->status = 200;
        }
        break;
    case MEMORY_OP_DELETE:
        snprintf(f->last_expected, sizeof f->last_expected, "%s", r->sha ? r->sha : "");
        m = fake_find_id(f, r->memory_id);
        if (!m)
            r->status = 404;
        else if (r->sha && strcmp(r->sha, m->sha))
            r->status = 409;
        else {
            m->live = 0;
            r->status = 200;
        }
        m = NULL;
        break;
    }
    if (m) memory_req_set_item(r, m->id, m->path, m->sha, m->content, m->len);
    if (f->lose_op[r->op]) {
        r->status = 0;
        snprintf(r->error, sizeof r->error, "connection reset");
    }
    complete(f, r);
    return 0;
}

static void fake_cancel(void *ctx, memory_req_t *r)
{
    fake_t *f = ctx;
    for (int i = 0; i < f->nq; i++)
        if (f->queue[i] == r) {
            memmove(&f->queue[i], &f->queue[i + 1], (size_t)(f->nq - i - 1) * sizeof *f->queue);
            f->nq--;
            return;
        }
}

static int f_call(void *ctx, memory_req_t *r)
{
    return answer(ctx, r);
}

static memory_remote_t remote_of(fake_t *f)
{
    return (memory_remote_t){.ctx = f,
                             .list = f_call,
                             .get = f_call,
                             .create = f_call,
                             .update = f_call,
                             .del = f_call,
                             .cancel = fake_cancel};
}

/* Deliver up to n deferred completions (oldest first). */
static void fake_pump(fake_t *f, int n)
{
    while (n-- > 0 && f->nq > 0) {
        memory_req_t *r = f->queue[0];
        memmove(&f->queue[0], &f->queue[1], (size_t)(f->nq - 1) * sizeof *f->queue);
        f->nq--;
        f->applying = 1;
        answer(f, r);
        f->applying = 0;
    }
}

static void fake_free(fake_t *f)
{
    for (int i = 0; i < f->n; i++) free(f->m[i].content);
    free(f);
}

/* ---- scratch folder and helpers ------------------------------------------------ */

static char g_root[256];
static int g_parent = -1;

static void scratch(void)
{
    log_setup(getenv("MEMORY_TEST_LOG") ? LOG_DEBUG : LOG_ERROR, LOG_TEXT);
    snprintf(g_root, sizeof g_root, "%s/shed-memory-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    ASSERT_TRUE(mkdtemp(g_root) != NULL);
    g_parent = open(g_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT_TRUE(g_parent >= 0);
    ASSERT_EQ_INT(mkdirat(g_parent, "outside", 0755), 0);
}

static void scratch_done(void)
{
    char parent[256];
    snprintf(parent, sizeof parent, "%s", g_root);
    char *slash = strrchr(parent, '/');
    *slash = 0;
    int p = open(parent, O_RDONLY | O_DIRECTORY);
    shed_err err = {0};
    tree_remove_at(p, slash + 1, &err);
    close(p);
    close(g_parent);
}

static const char *path_of(const char *rel)
{
    static char p[2][1024];
    static int k;
    k ^= 1;
    snprintf(p[k], sizeof p[k], "%s/%s", g_root, rel);
    return p[k];
}

static void put_file(const char *rel, const char *content)
{
    int fd = open(path_of(rel), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0644);
    if (fd < 0) test_fail(__FILE__, __LINE__, "open %s: %s", rel, strerror(errno));
    ASSERT_EQ_INT(write(fd, content, strlen(content)), (ssize_t)strlen(content));
    close(fd);
}

static const char *file(const char *rel)
{
    static char buf[2][200000];
    static int k;
    k ^= 1;
    int fd = open(path_of(rel), O_RDONLY | O_NOFOLLOW);
    if (fd < 0) return NULL;
    ssize_t n = read(fd, buf[k], sizeof buf[k] - 1);
    close(fd);
    buf[k][n < 0 ? 0 : n] = 0;
    return buf[k];
}

static int exists(const char *rel)
{
    struct stat st;
    return lstat(path_of(rel), &st) == 0;
}

static memory_store_config_t cfg_of(const char *id)
{
    return (memory_store_config_t){.memory_store_id = id,
                                   .owner_uid = (uid_t)-1,
                                   .owner_gid = (gid_t)-1,
                                   .session_id = "sesn_test"};
}

static void drive(fake_t *f, memory_store_t *s, int64_t now)
{
    for (int i = 0; i < 100000; i++) {
        if (!memory_store_run(s, now)) return;
        if (f->nq == 0) test_fail(__FILE__, __LINE__, "store busy with nothing pending");
        fake_pump(f, 1);
    }
    test_fail(__FILE__, __LINE__, "store never went idle");
}

static memory_store_t *mount(fake_t *f, memory_store_config_t cfg)
{
    memory_store_t *s = NULL;
    shed_err err = {0};
    memory_remote_t r = remote_of(f);
    int rc = memory_store_mount(&s, &cfg, &r, g_parent, "store", 0, &err);
    if (rc < 0) test_fail(__FILE__, __LINE__, "mount: %s", err.msg);
    drive(f, s, 0);
    rc = memory_store_mount_result(s, &err);
    if (rc < 0) test_fail(__FILE__, __LINE__, "mount result: %s", err.msg);
    return s;
}

static void sync_at(fake_t *f, memory_store_t *s, int64_t now)
{
    ASSERT_EQ_INT(memory_store_sync_start(s, 0, now), 0);
    drive(f, s, now);
}

static memory_store_stats_t stats(memory_store_t *s)
{
    memory_store_stats_t st;
    memory_store_get_stats(s, &st);
    return st;
}

static fake_t *fake_new(void)
{
    fake_t *f = calloc(1, sizeof *f);
    ASSERT_TRUE(f != NULL);
    return f;
}

/* ---- mount -------------------------------------------------------------------- */

TEST(memory_mount_pulls_all_and_stamps_marker)
{
    scratch();
    fake_t *f = fake_new();
    fake_put(f, "/a.md", "alpha");
    fake_put(f, "/notes/b.md", "beta");
    char name[32];
    for (int i = 0; i < 43; i++) {
        snprintf(name, sizeof name, "/bulk/%02d.md", i);
        fake_put(f, name, name);
    }
    memory_store_t *s = mount(f, cfg_of("memstore_01"));
    ASSERT_EQ_STR(file("store/a.md"), "alpha");
    ASSERT_EQ_STR(file("store/notes/b.md"), "beta");
    ASSERT_EQ_STR(file("store/bulk/42.md"), "/bulk/42.md");
    /* exact bytes, no trailing newline */
    ASSERT_EQ_STR(file("store/.anthropic-memory-store"), "version 1\nmemstore_01");
    /* full view, 20 per page: 45 memories are 3 pages */
    ASSERT_EQ_STR(f->last_view, "full");
    ASSERT_EQ_INT(f->last_limit, 20);
    ASSERT_EQ_INT(f->calls[MEMORY_OP_LIST], 3);
    struct stat st;
    ASSERT_EQ_INT(stat(path_of("store"), &st), 0);
    ASSERT_EQ_INT(st.st_mode & 0777, 0700);
    ASSERT_EQ_INT(stat(path_of("store/notes"), &st), 0);
    ASSERT_EQ_INT(st.st_mode & 0777, 0700);
    ASSERT_EQ_INT(stat(path_of("store/a.md"), &st), 0);
    ASSERT_EQ_INT(st.st_mode & 0777, 0600);
    ASSERT_EQ_INT(stats(s).pulled, 45);
    /* nothing changed: a sync moves no content */
    memset(f->calls, 0, sizeof f->calls);
    sync_at(f, s, 20000);
    ASSERT_EQ_INT(f->calls[MEMORY_OP_LIST], 1);
    ASSERT_EQ_STR(f->last_view, "basic");
    ASSERT_EQ_INT(f->last_limit, 100);
    ASSERT_EQ_INT(f->calls[MEMORY_OP_GET] + f->calls[MEMORY_OP_CREATE] +
                      f->calls[MEMORY_OP_UPDATE] + f->calls[MEMORY_OP_DELETE],
                  0);
    shed_err err = {0};
    ASSERT_EQ_INT(memory_store_dispose(s, &err), 0);
    ASSERT_FALSE(exists("store"));
    memory_store_free(s);
    fake_free(f);
    scratch_done();
}

TEST(memory_mount_refuses_existing_path)
{
    scratch();
    fake_t *f = fake_new();
    memory_store_t *s = NULL;
    shed_err err = {0};
    memory_store_config_t c = cfg_of("memstore_01");
    memory_remote_t r = remote_of(f);
    ASSERT_EQ_INT(mkdirat(g_parent, "store", 0700), 0);
    ASSERT_EQ_INT(memory_store_mount(&s, &c, &r, g_parent, "store", 0, &err), -EEXIST);
    ASSERT_CONTAINS(err.msg, "something already exists at the memory store's path");
    ASSERT_EQ_INT(rmdir(path_of("store")), 0);
    ASSERT_EQ_INT(symlink(path_of("outside"), path_of("store")), 0);
    ASSERT_EQ_INT(memory_store_mount(&s, &c, &r, g_parent, "store", 0, &err), -EEXIST);
    ASSERT_EQ_INT(memory_store_mount(&s, &c, &r, g_parent, "../x", 0, &err), -EINVAL);
    ASSERT_TRUE(s == NULL);
    fake_free(f);
    scratch_done();
}

/* The worker makes the folder first (to bind it into the sandbox): an EMPTY
 * directory is adopted; files in it, or a link, are still refused. */
TEST(memory_mount_adopts_only_an_empty_dir)
{
    scratch();
    fake_t *f = fake_new();
    fake_put(f, "/a.md", "alpha");
    memory_store_t *s = NULL;
    shed_err err = {0};
    memory_store_config_t c = cfg_of("memstore_01");
    c.adopt_empty_dir = 1;
    memory_remote_t r = remote_of(f);
    ASSERT_EQ_INT(mkdirat(g_parent, "store", 0700), 0);
    ASSERT_EQ_INT(mkdirat(g_parent, "store/leftover", 0700), 0);
    ASSERT_EQ_INT(memory_store_mount(&s, &c, &r, g_parent, "store", 0, &err), -EEXIST);
    ASSERT_EQ_INT(rmdir(path_of("store/leftover")), 0);
    ASSERT_EQ_INT(memory_store_mount(&s, &c, &r, g_parent, "store", 0, &err), 0);
    drive(f, s, 0);
    ASSERT_EQ_INT(memory_store_mount_result(s, &err), 0);
    ASSERT_EQ_STR(file("store/a.md"), "alpha");
    memory_store_free(s);
    s = NULL;
    ASSERT_EQ_INT(mkdirat(g_parent, "target", 0700), 0);
    ASSERT_EQ_INT(symlink(path_of("target"), path_of("link")), 0);
    ASSERT_EQ_INT(memory_store_mount(&s, &c, &r, g_parent, "link", 0, &err), -EEXIST);
    ASSERT_TRUE(s == NULL);
    fake_free(f);
    scratch_done();
}

TEST(memory_endless_listing_ends_the_pass)
{
    scratch();
    fake_t *f = fake_new();
    fake_put(f, "/a.md", "alpha");
    memory_store_t *s = mount(f, cfg_of("memstore_01"));
    f->loop_cursor = 1;
    sync_at(f, s, 15000);
    ASSERT_EQ_INT(f->calls[MEMORY_OP_LIST], 1 + MEMORY_MAX_LIST_PAGES + 1);
    ASSERT_EQ_INT(stats(s).failed_syncs, 1);
    ASSERT_EQ_STR(file("store/a.md"), "alpha");
    f->loop_cursor = 0;
    sync_at(f, s, 30000); /* a fresh pass starts counting again */
    ASSERT_EQ_INT(stats(s).failed_syncs, 1);
    memory_store_free(s);
    fake_free(f);
    scratch_done();
}

TEST(memory_mount_failure_reported_and_folder_removed)
{
    scratch();
    fake_t *f = fake_new();
    fake_put(f, "/a.md", "alpha");
    f->fail_op[MEMORY_OP_LIST] = 500;
    memory_store_t *s = NULL;
    shed_err err = {0};
    memory_store_config_t c = cfg_of("memstore_01");
    memory_remote_t r = remote_of(f);
    ASSERT_EQ_INT(memory_store_mount(&s, &c, &r, g_parent, "store", 0, &err), 0);
    drive(f, s, 0);
    ASSERT_TRUE(memory_store_mount_result(s, &err) < 0);
    ASSERT_CONTAINS(err.msg, "failed to download memory store memory_store_id=memstore_01");
    ASSERT_CONTAINS(err.msg, "HTTP 500");
    ASSERT_EQ_INT(memory_store_dispose(s, &err), 0);
    ASSERT_FALSE(exists("store"));
    memory_store_free(s);
    fake_free(f);
    scratch_done();
}

/* ---- three-way sync ------------------------------------------------------------------ */

TEST(memory_remote_only_change_is_written_locally)
{
    scratch();
    fake_t *f = fake_new();
    fake_put(f, "/a.md", "one");
    fake_put(f, "/b.md", "bee");
    memory_store_t *s = mount(f, cfg_of("memstore_01"));
    fake_put(f, "/a.md", "two");
    fake_put(f, "/new/c.md", "sea");
    memset(f->calls, 0, sizeof f->calls);
    sync_at(f, s, 15000);
    ASSERT_EQ_STR(file("store/a.md"), "two");
    ASSERT_EQ_STR(file("store/new/c.md"), "sea");
    ASSERT_EQ_INT(f->calls[MEMORY_OP_GET], 2);
    ASSERT_EQ_INT(f->calls[MEMORY_OP_UPDATE] + f->calls[MEMORY_OP_CREATE], 0);
    /* settled: the next sync does nothing */
    memset(f->calls, 0, sizeof f->calls);
    sync_at(f, s, 30000);
    ASSERT_EQ_INT(f->calls[MEMORY_OP_GET], 0);
    memory_store_free(s);
    fake_free(f);
    scratch_done();
}

TEST(memory_local_only_change_is_pushed_with_precondition)
{
    scratch();
    fake_t *f = fake_new();
    fmem_t *a = fake_put(f, "/a.md", "one");
    char old_sha[65];
    snprintf(old_sha, sizeof old_sha, "%s", a->sha);
    memory_store_t *s = mount(f, cfg_of("memstore_01"));
    put_file("store/a.md", "one, edited");
    ASSERT_EQ_INT(mkdir(path_of("store/dir"), 0700), 0);
    put_file("store/dir/new.md", "brand new");
    sync_at(f, s, 15000);
    ASSERT_EQ_STR(fake_content(f, "/a.md"), "one, edited");
    ASSERT_EQ_STR(f->last_precondition, old_sha);
    ASSERT_EQ_STR(fake_content(f, "/dir/new.md"), "brand new");
    ASSERT_EQ_INT(f->calls[MEMORY_OP_UPDATE], 1);
    ASSERT_EQ_INT(f->calls[MEMORY_OP_CREATE], 1);
    ASSERT_TRUE(fake_content(f, "/.anthropic-memory-store") == NULL); /* the marker never syncs */
    memset(f->calls, 0, sizeof f->calls);
    sync_at(f, s, 30000);
    ASSERT_EQ_INT(f->calls[MEMORY_OP_UPDATE] + f->calls[MEMORY_OP_CREATE] + f->calls[MEMORY_OP_GET],
                  0);
    ASSERT_EQ_INT(stats(s).conflicts, 0);
    memory_store_free(s);
    fake_free(f);
    scratch_done();
}

TEST(memory_both_changed_server_wins)
{
    scratch();
    fake_t *f = fake_new();
    fake_put(f, "/a.md", "base");
    memory_store_t *s = mount(f, cfg_of("memstore_01"));
    put_file("store/a.md", "local edit");
    fake_put(f, "/a.md", "remote edit");
    sync_at(f, s, 15000);
    ASSERT_EQ_STR(file("store/a.md"), "remote edit");
    ASSERT_EQ_STR(fake_content(f, "/a.md"), "remote edit");
    ASSERT_EQ_INT(f->calls[MEMORY_OP_UPDATE], 0);
    ASSERT_EQ_INT(stats(s).conflicts, 1);
    memory_store_free(s);
    fake_free(f);
    scratch_done();
}

TEST(memory_precondition_race_local_edit_loses)
{
    scratch();
    fake_t *f = fake_new();
    fake_put(f, "/a.md", "base");
    memory_store_t *s = mount(f, cfg_of("memstore_01"));
    put_file("store/a.md", "local edit");
    /* another writer lands between our listing and our update */
    f->race_path = "/a.md";
    f->race_content = "racing writer";
    sync_at(f, s, 15000);
    ASSERT_EQ_STR(fake_content(f, "/a.md"), "racing writer");
    ASSERT_EQ_INT(stats(s).conflicts, 1);
    /* the next sync pulls the winner over the stale file */
    sync_at(f, s, 30000);
    ASSERT_EQ_STR(file("store/a.md"), "racing writer");
    memory_store_free(s);
    fake_free(f);
    scratch_done();
}

TEST(memory_lost_response_is_settled_by_the_next_listing)
{
    scratch();
    fake_t *f = fake_new();
    fake_put(f, "/a.md", "base");
    memory_store_t *s = mount(f, cfg_of("memstore_01"));
    put_file("store/a.md", "edited");
    f->lose_op[MEMORY_OP_UPDATE] = 1; /* saved on the server, the answer lost */
    sync_at(f, s, 15000);
    ASSERT_EQ_STR(fake_content(f, "/a.md"), "edited");
    f->lose_op[MEMORY_OP_UPDATE] = 0;
    memset(f->calls, 0, sizeof f->calls);
    sync_at(f, s, 30000);
    /* the memory holding exactly the sent sha is our upload, not a remote edit */
    ASSERT_EQ_INT(stats(s).conflicts, 0);
    ASSERT_EQ_INT(f->calls[MEMORY_OP_UPDATE] + f->calls[MEMORY_OP_GET], 0);
    ASSERT_EQ_STR(file("store/a.md"), "edited");
    memory_store_free(s);
    fake_free(f);
    scratch_done();
}

/* ---- deletions -------------------------------------------------------------------- */

TEST(memory_local_deletion_waits_and_rechecks)
{
    scratch();
    fake_t *f = fake_new();
    fmem_t *a = fake_put(f, "/a.md", "alpha");
    char sha[65];
    snprintf(sha, sizeof sha, "%s", a->sha);
    fake_put(f, "/b.md", "beta");
    fake_put(f, "/c.md", "gamma");
    memory_store_t *s = mount(f, cfg_of("memstore_01"));
    ASSERT_EQ_INT(unlink(path_of("store/a.md")), 0);
    sync_at(f, s, 1000); /* first noticed */
    ASSERT_EQ_STR(fake_content(f, "/a.md"), "alpha");
    sync_at(f, s, 30999); /* 29.999 s later: still waiting */
    ASSERT_EQ_STR(fake_content(f, "/a.md"), "alpha");
    ASSERT_EQ_INT(f->calls[MEMORY_OP_DELETE], 0);
    sync_at(f, s, 31000); /* 30 s: re-checked and sent, with the expected sha */
    ASSERT_TRUE(fake_content(f, "/a.md") == NULL);
    ASSERT_EQ_STR(f->last_expected, sha);
    ASSERT_EQ_INT(stats(s).deleted_remote, 1);

    /* a file that comes back inside the window is not deleted, and its clock restarts */
    ASSERT_EQ_INT(unlink(path_of("store/b.md")), 0);
    sync_at(f, s, 40000);
    put_file("store/b.md", "beta");
    sync_at(f, s, 50000);
    ASSERT_EQ_INT(unlink(path_of("store/b.md")), 0);
    sync_at(f, s, 75000); /* seen missing again at 75 s: a new window */
    ASSERT_EQ_STR(fake_content(f, "/b.md"), "beta");
    sync_at(f, s, 105000);
    ASSERT_TRUE(fake_content(f, "/b.md") == NULL);
    memory_store_free(s);
    fake_free(f);
    scratch_done();
}

TEST(memory_local_deletion_of_remotely_changed_memory_restores_it)
{
    scratch();
    fake_t *f = fake_new();
    fake_put(f, "/a.md", "alpha");
    fake_put(f, "/b.md", "beta");
    memory_store_t *s = mount(f, cfg_of("memstore_01"));
    ASSERT_EQ_INT(unlink(path_of("store/a.md")), 0);
    fake_put(f, "/a.md", "alpha v2");
    sync_at(f, s, 60000);
    ASSERT_EQ_STR(file("store/a.md"), "alpha v2");
    ASSERT_EQ_STR(fake_content(f, "/a.md"), "alpha v2");
    memory_store_free(s);
    fake_free(f);
    scratch_done();
}

TEST(memory_delete_cap_per_sync)
{
    scratch();
    fake_t *f = fake_new();
    char p[64];
    for (int i = 0; i < 40; i++) {
        snprintf(p, sizeof p, "/m%02d.md", i);
        fake_put(f, p, p);
    }
    memory_store_t *s = mount(f, cfg_of("memstore_01"));
    for (int i = 0; i < 20; i++) {
        snprintf(p, sizeof p, "store/m%02d.md", i);
        ASSERT_EQ_INT(unlink(path_of(p)), 0);
    }
    sync_at(f, s, 0);
    sync_at(f, s, 30000);
    /* clamp(40/4, 8, 50) = 10 per sync */
    ASSERT_EQ_INT(fake_count(f), 30);
    ASSERT_EQ_INT(stats(s).deletes_capped, 10);
    sync_at(f, s, 45000);
    ASSERT_EQ_INT(fake_count(f), 22); /* the cap follows the baseline: clamp(30/4, 8, 50) = 8 */
    sync_at(f, s, 60000);
    ASSERT_EQ_INT(fake_count(f), 20);
    /* a small store's floor is 8 */
    for (int i = 20; i < 31; i++) {
        snprintf(p, sizeof p, "store/m%02d.md", i);
        ASSERT_EQ_INT(unlink(path_of(p)), 0);
    }
    sync_at(f, s, 100000);
    sync_at(f, s, 130000);
    ASSERT_EQ_INT(fake_count(f), 12); /* baseline 20: clamp(5, 8, 50) = 8 */
    memory_store_free(s);
    fake_free(f);
    scratch_done();
}

static void deletion_mode(memory_delete_mode_t mode, int expect_count, unsigned logged,
                          unsigned suppressed)
{
    scratch();
    fake_t *f = fake_new();
    fake_put(f, "/a.md", "alpha");
    fake_put(f, "/b.md", "beta");
    memory_store_config_t c = cfg_of("memstore_01");
    c.delete_mode = mode;
    memory_store_t *s = mount(f, c);
    ASSERT_EQ_INT(unlink(path_of("store/a.md")), 0);
    sync_at(f, s, 0);
    sync_at(f, s, 30000);
    sync_at(f, s, 60000);
    ASSERT_EQ_INT(fake_count(f), expect_count);
    ASSERT_EQ_INT(stats(s).deletes_logged, logged);
    ASSERT_EQ_INT(stats(s).deletes_suppressed, suppressed);
    ASSERT_FALSE(exists("store/a.md")); /* never restored either */
    memory_store_free(s);
    fake_free(f);
    scratch_done();
}

TEST(memory_delete_modes)
{
    deletion_mode(MEMORY_DELETE_ENABLED, 1, 0, 0);
    deletion_mode(MEMORY_DELETE_LOG_ONLY, 2, 2, 0); /* logged on each eligible sync */
    deletion_mode(MEMORY_DELETE_DISABLED, 2, 0, 3);
    memory_delete_mode_t m;
    ASSERT_EQ_INT(memory_parse_delete_mode("log_only", &m), 0);
    ASSERT_EQ_INT(m, MEMORY_DELETE_LOG_ONLY);
    ASSERT_EQ_INT(memory_parse_delete_mode("sometimes", &m), -EINVAL);
}

TEST(memory_final_sync_skips_the_delete_wait)
{
    scratch();
    fake_t *f = fake_new();
    fake_put(f, "/a.md", "alpha");
    fake_put(f, "/b.md", "beta");
    memory_store_t *s = mount(f, cfg_of("memstore_01"));
    ASSERT_EQ_INT(unlink(path_of("store/a.md")), 0);
    ASSERT_EQ_INT(memory_store_sync_start(s, 1, 1000), 0);
    drive(f, s, 1000);
    ASSERT_TRUE(fake_content(f, "/a.md") == NULL);
    memory_store_free(s);
    fake_free(f);
    scratch_done();
}

TEST(memory_remote_deletion_removes_local_unless_edited)
{
    scratch();
    fake_t *f = fake_new();
    fake_put(f, "/a.md", "alpha");
    fake_put(f, "/b.md", "beta");
    fake_put(f, "/c.md", "gamma");
    memory_store_t *s = mount(f, cfg_of("memstore_01"));
    fake_del(f, "/a.md");
    fake_del(f, "/b.md");
    put_file("store/b.md", "beta, edited"); /* un-pushed edit: the only copy */
    sync_at(f, s, 15000);
    ASSERT_FALSE(exists("store/a.md"));
    ASSERT_EQ_STR(file("store/b.md"), "beta, edited");
    ASSERT_EQ_STR(fake_content(f, "/b.md"), "beta, edited"); /* re-created from the file */
    ASSERT_EQ_INT(stats(s).deleted_local, 1);
    memory_store_free(s);
    fake_free(f);
    scratch_done();
}

/* ---- read-only, refusals, marker ------------------------------------------------------ */

TEST(memory_read_only_store_pulls_only)
{
    scratch();
    fake_t *f = fake_new();
    fake_put(f, "/a.md", "alpha");
    fake_put(f, "/b.md", "beta");
    fake_put(f, "/c.md", "gamma");
    memory_store_config_t c = cfg_of("memstore_ro");
    c.read_only = 1;
    memory_store_t *s = mount(f, c);
    put_file("store/a.md", "local edit");
    put_file("store/new.md", "new");
    ASSERT_EQ_INT(unlink(path_of("store/b.md")), 0);
    fake_put(f, "/c.md", "gamma v2");
    sync_at(f, s, 0);
    sync_at(f, s, 60000);
    ASSERT_EQ_INT(
        f->calls[MEMORY_OP_CREATE] + f->calls[MEMORY_OP_UPDATE] + f->calls[MEMORY_OP_DELETE], 0);
    ASSERT_EQ_STR(fake_content(f, "/a.md"), "alpha");
    ASSERT_EQ_STR(fake_content(f, "/b.md"), "beta");
    ASSERT_TRUE(fake_content(f, "/new.md") == NULL);
    ASSERT_EQ_STR(file("store/c.md"), "gamma v2");
    /* a remote change overwrites a local edit there too */
    fake_put(f, "/a.md", "alpha v2");
    sync_at(f, s, 75000);
    ASSERT_EQ_STR(file("store/a.md"), "alpha v2");
    ASSERT_EQ_INT(memory_store_flush_start(s, 80000), 0);
    drive(f, s, 80000);
    ASSERT_EQ_INT(f->calls[MEMORY_OP_CREATE] + f->calls[MEMORY_OP_UPDATE], 0);
    ASSERT_TRUE(memory_store_read_only(s));
    memory_store_free(s);
    fake_free(f);
    scratch_done();
}

TEST(memory_refused_file_skipped_until_it_changes)
{
    scratch();
    fake_t *f = fake_new();
    fake_put(f, "/a.md", "alpha");
    memory_store_t *s = mount(f, cfg_of("memstore_01"));
    static char big[150001];
    memset(big, 'x', sizeof big - 1);
    put_file("store/big.md", big); /* over the API's 100 kB: 413 */
    sync_at(f, s, 15000);
    ASSERT_EQ_INT(f->calls[MEMORY_OP_CREATE], 1);
    ASSERT_EQ_INT(stats(s).refused, 1);
    sync_at(f, s, 30000);
    sync_at(f, s, 45000);
    ASSERT_EQ_INT(f->calls[MEMORY_OP_CREATE], 1); /* not retried */
    put_file("store/big.md", "small now");
    sync_at(f, s, 60000);
    ASSERT_EQ_STR(fake_content(f, "/big.md"), "small now");
    /* binary content is refused locally, without a round trip */
    int fd = open(path_of("store/bin.dat"), O_WRONLY | O_CREAT, 0600);
    ASSERT_EQ_INT(write(fd, "\xff\xfe\x00\x01", 4), 4);
    close(fd);
    int creates = f->calls[MEMORY_OP_CREATE];
    sync_at(f, s, 75000);
    sync_at(f, s, 90000);
    ASSERT_EQ_INT(f->calls[MEMORY_OP_CREATE], creates);
    ASSERT_EQ_INT(stats(s).refused, 2);
    memory_store_free(s);
    fake_free(f);
    scratch_done();
}

TEST(memory_tampered_marker_stops_sync_and_dispose_keeps_folder)
{
    scratch();
    fake_t *f = fake_new();
    fake_put(f, "/a.md", "alpha");
    memory_store_t *s = mount(f, cfg_of("memstore_01"));
    put_file("store/.anthropic-memory-store", "version 1\nmemstore_other");
    put_file("store/a.md", "edited");
    fake_put(f, "/a.md", "remote v2");
    memset(f->calls, 0, sizeof f->calls);
    sync_at(f, s, 15000);
    ASSERT_EQ_INT(f->calls[MEMORY_OP_LIST], 0); /* not even listed */
    ASSERT_EQ_STR(file("store/a.md"), "edited");
    ASSERT_EQ_STR(fake_content(f, "/a.md"), "remote v2");
    ASSERT_EQ_INT(memory_store_flush_start(s, 20000), 0);
    drive(f, s, 20000);
    ASSERT_EQ_INT(f->calls[MEMORY_OP_UPDATE] + f->calls[MEMORY_OP_CREATE], 0);
    shed_err err = {0};
    ASSERT_EQ_INT(memory_store_dispose(s, &err), 0);
    ASSERT_EQ_STR(file("store/a.md"), "edited"); /* left as found */
    memory_store_free(s);
    fake_free(f);
    scratch_done();
}

TEST(memory_missing_marker_in_empty_folder_redownloads)
{
    scratch();
    fake_t *f = fake_new();
    fake_put(f, "/a.md", "alpha");
    fake_put(f, "/b/c.md", "sea");
    memory_store_t *s = mount(f, cfg_of("memstore_01"));
    /* the agent runs rm -rf on the folder's contents */
    int fd = open(path_of("store"), O_RDONLY | O_DIRECTORY);
    shed_err err = {0};
    ASSERT_EQ_INT(tree_empty_fd(fd, &err), 0);
    close(fd);
    sync_at(f, s, 15000);
    ASSERT_EQ_STR(file("store/a.md"), "alpha");
    ASSERT_EQ_STR(file("store/b/c.md"), "sea");
    ASSERT_EQ_STR(file("store/.anthropic-memory-store"), "version 1\nmemstore_01");
    ASSERT_EQ_INT(fake_count(f), 2); /* no deletes went out */
    ASSERT_EQ_INT(stats(s).recoveries, 1);
    /* the whole folder removed: re-created and re-downloaded */
    ASSERT_EQ_INT(tree_remove_at(g_parent, "store", &err), 0);
    sync_at(f, s, 30000);
    ASSERT_EQ_STR(file("store/a.md"), "alpha");
    ASSERT_EQ_INT(stats(s).recoveries, 2);
    /* every memory file gone at once, marker kept: also a recovery */
    ASSERT_EQ_INT(unlink(path_of("store/a.md")), 0);
    ASSERT_EQ_INT(unlink(path_of("store/b/c.md")), 0);
    sync_at(f, s, 45000);
    sync_at(f, s, 90000);
    ASSERT_EQ_INT(fake_count(f), 2);
    ASSERT_EQ_STR(file("store/a.md"), "alpha");
    memory_store_free(s);
    fake_free(f);
    scratch_done();
}

TEST(memory_symlinks_in_the_folder_are_never_followed)
{
    scratch();
    fake_t *f = fake_new();
    fake_put(f, "/a.md", "alpha");
    memory_store_t *s = mount(f, cfg_of("memstore_01"));
    put_file("outside/secret", "host secret");
    ASSERT_EQ_INT(symlink(path_of("outside/secret"), path_of("store/leak.md")), 0);
    ASSERT_EQ_INT(symlink(path_of("outside"), path_of("store/evil")), 0);
    fake_put(f, "/evil/planted.md", "through a link");
    fake_put(f, "/../escape.md", "dot dot");
    sync_at(f, s, 15000);
    ASSERT_TRUE(fake_content(f, "/leak.md") == NULL); /* not uploaded */
    ASSERT_FALSE(exists("outside/planted.md"));       /* not written through */
    ASSERT_FALSE(exists("escape.md"));
    ASSERT_EQ_STR(file("outside/secret"), "host secret");
    /* a remote memory whose local path is a link: the write refuses */
    fake_put(f, "/leak.md", "overwrite?");
    sync_at(f, s, 30000);
    ASSERT_EQ_STR(file("outside/secret"), "host secret");
    memory_store_free(s);
    fake_free(f);
    scratch_done();
}

/* ---- flush, abort, killed worker ------------------------------------------------------ */

TEST(memory_flush_pushes_only)
{
    scratch();
    fake_t *f = fake_new();
    fake_put(f, "/a.md", "alpha");
    fake_put(f, "/b.md", "beta");
    fake_put(f, "/c.md", "gamma");
    memory_store_t *s = mount(f, cfg_of("memstore_01"));
    put_file("store/a.md", "alpha edited");
    put_file("store/d.md", "new");
    ASSERT_EQ_INT(unlink(path_of("store/b.md")), 0);
    fake_put(f, "/c.md", "gamma remote");
    ASSERT_EQ_INT(memory_store_flush_start(s, 5000), 0);
    drive(f, s, 5000);
    ASSERT_EQ_STR(fake_content(f, "/a.md"), "alpha edited");
    ASSERT_EQ_STR(fake_content(f, "/d.md"), "new");
    ASSERT_EQ_STR(fake_content(f, "/b.md"), "beta"); /* no deletes */
    ASSERT_EQ_STR(file("store/c.md"), "gamma");      /* no pulls */
    ASSERT_EQ_INT(f->calls[MEMORY_OP_GET], 0);
    /* a clean flush is a no-op */
    memset(f->calls, 0, sizeof f->calls);
    ASSERT_EQ_INT(memory_store_flush_start(s, 6000), 0);
    drive(f, s, 6000);
    ASSERT_EQ_INT(
        f->calls[MEMORY_OP_LIST] + f->calls[MEMORY_OP_UPDATE] + f->calls[MEMORY_OP_CREATE], 0);
    memory_store_free(s);
    fake_free(f);
    scratch_done();
}

TEST(memory_flush_cut_off_counts_unsent)
{
    scratch();
    fake_t *f = fake_new();
    fake_put(f, "/seed.md", "seed");
    memory_store_t *s = mount(f, cfg_of("memstore_01"));
    char p[64];
    for (int i = 0; i < 10; i++) {
        snprintf(p, sizeof p, "store/n%d.md", i);
        put_file(p, p);
    }
    f->async = 1;
    memory_store_config_t c = cfg_of("x");
    (void)c;
    ASSERT_EQ_INT(memory_store_flush_start(s, 0), 0);
    ASSERT_EQ_INT(memory_store_run(s, 0), 1); /* the listing is out */
    fake_pump(f, 1);
    ASSERT_EQ_INT(memory_store_run(s, 0), 1); /* ten creates out */
    ASSERT_EQ_INT(f->nq, 10);
    fake_pump(f, 4);
    memory_store_run(s, 0);
    memory_store_abort(s);   /* the 30 s bound */
    ASSERT_EQ_INT(f->nq, 0); /* in-flight calls were cancelled */
    ASSERT_EQ_INT(stats(s).unsent, 6);
    ASSERT_FALSE(memory_store_busy(s));
    /* the uploads that landed are in the baseline: a later flush sends the rest only */
    f->async = 0;
    memset(f->calls, 0, sizeof f->calls);
    ASSERT_EQ_INT(memory_store_flush_start(s, 1000), 0);
    drive(f, s, 1000);
    ASSERT_EQ_INT(fake_count(f), 11);
    memory_store_free(s);
    fake_free(f);
    scratch_done();
}

TEST(memory_async_remote_same_outcome)
{
    scratch();
    fake_t *f = fake_new();
    char p[64];
    for (int i = 0; i < 30; i++) {
        snprintf(p, sizeof p, "/m%02d.md", i);
        fake_put(f, p, p);
    }
    f->async = 1;
    memory_store_t *s = mount(f, cfg_of("memstore_01"));
    ASSERT_EQ_STR(file("store/m29.md"), "/m29.md");
    for (int i = 0; i < 30; i += 3) {
        snprintf(p, sizeof p, "store/m%02d.md", i);
        put_file(p, "edited");
        snprintf(p, sizeof p, "/m%02d.md", i + 1);
        fake_put(f, p, "remote");
    }
    f->max_nq = 0;
    sync_at(f, s, 15000);
    ASSERT_EQ_INT(f->max_nq, 16); /* 20 calls to make, at most 16 at once */
    for (int i = 0; i < 30; i += 3) {
        snprintf(p, sizeof p, "/m%02d.md", i);
        ASSERT_EQ_STR(fake_content(f, p), "edited");
        snprintf(p, sizeof p, "store/m%02d.md", i + 1);
        ASSERT_EQ_STR(file(p), "remote");
    }
    memory_store_free(s);
    fake_free(f);
    scratch_done();
}

TEST(memory_sync_cut_off_then_resumed)
{
    scratch();
    fake_t *f = fake_new();
    char p[64];
    for (int i = 0; i < 6; i++) {
        snprintf(p, sizeof p, "/m%d.md", i);
        fake_put(f, p, "v1");
    }
    memory_store_t *s = mount(f, cfg_of("memstore_01"));
    for (int i = 0; i < 6; i++) {
        snprintf(p, sizeof p, "store/m%d.md", i);
        put_file(p, "v2");
    }
    f->async = 1;
    ASSERT_EQ_INT(memory_store_sync_start(s, 0, 15000), 0);
    memory_store_run(s, 15000);
    fake_pump(f, 1);
    memory_store_run(s, 15000);
    fake_pump(f, 3); /* three of six updates land */
    memory_store_run(s, 15000);
    memory_store_abort(s); /* the pass is cut off; the old baseline stays */
    ASSERT_FALSE(memory_store_busy(s));
    f->async = 0;
    memset(f->calls, 0, sizeof f->calls);
    sync_at(f, s, 30000);
    /* the landed ones are adopted (file == server), the rest go out now */
    ASSERT_EQ_INT(f->calls[MEMORY_OP_UPDATE], 3);
    ASSERT_EQ_INT(stats(s).conflicts, 0);
    for (int i = 0; i < 6; i++) {
        snprintf(p, sizeof p, "/m%d.md", i);
        ASSERT_EQ_STR(fake_content(f, p), "v2");
    }
    memset(f->calls, 0, sizeof f->calls);
    sync_at(f, s, 45000);
    ASSERT_EQ_INT(f->calls[MEMORY_OP_UPDATE] + f->calls[MEMORY_OP_GET], 0);
    memory_store_free(s);
    fake_free(f);
    scratch_done();
}

/* What the reference does when a worker is killed mid-sync: nothing is
 * persisted but the folder; a new worker's mount finds the folder and refuses
 * ("something already exists at the memory store's path") rather than upload
 * a dead run's leftovers. shed's worker removes its own leftover folders at
 * start (tree_remove_at on its state directory), then mounts afresh and
 * pulls what the server has: uploads that landed before the kill are there,
 * the rest of that run's unsynced edits are lost, as with the reference. */
TEST(memory_killed_mid_sync_then_remounted)
{
    scratch();
    fake_t *f = fake_new();
    char p[64];
    for (int i = 0; i < 6; i++) {
        snprintf(p, sizeof p, "/m%d.md", i);
        fake_put(f, p, "v1");
    }
    memory_store_t *s = mount(f, cfg_of("memstore_01"));
    for (int i = 0; i < 6; i++) {
        snprintf(p, sizeof p, "store/m%d.md", i);
        put_file(p, "v2");
    }
    f->async = 1;
    ASSERT_EQ_INT(memory_store_sync_start(s, 0, 15000), 0);
    memory_store_run(s, 15000);
    fake_pump(f, 1); /* listing */
    memory_store_run(s, 15000);
    ASSERT_EQ_INT(f->nq, 6); /* six updates in flight */
    fake_pump(f, 2);         /* two land ... */
    memory_store_run(s, 15000);
    memory_store_free(s); /* ... and the worker dies: engine state gone */
    f->async = 0;
    ASSERT_EQ_INT(fake_count(f), 6);
    int landed = 0;
    for (int i = 0; i < 6; i++) {
        snprintf(p, sizeof p, "/m%d.md", i);
        landed += !strcmp(fake_content(f, p), "v2");
    }
    ASSERT_EQ_INT(landed, 2);

    memory_store_t *s2 = NULL;
    shed_err err = {0};
    memory_store_config_t c = cfg_of("memstore_01");
    memory_remote_t r = remote_of(f);
    ASSERT_EQ_INT(memory_store_mount(&s2, &c, &r, g_parent, "store", 0, &err), -EEXIST);
    ASSERT_CONTAINS(err.msg, "it must not exist when the session starts");
    /* the new worker's start-up clean-up, then a fresh mount */
    ASSERT_EQ_INT(tree_remove_at(g_parent, "store", &err), 0);
    s2 = mount(f, c);
    landed = 0;
    for (int i = 0; i < 6; i++) {
        snprintf(p, sizeof p, "store/m%d.md", i);
        landed += !strcmp(file(p), "v2");
    }
    ASSERT_EQ_INT(landed, 2);
    memset(f->calls, 0, sizeof f->calls);
    sync_at(f, s2, 30000);
    ASSERT_EQ_INT(f->calls[MEMORY_OP_UPDATE] + f->calls[MEMORY_OP_CREATE] +
                      f->calls[MEMORY_OP_GET] + f->calls[MEMORY_OP_DELETE],
                  0);
    memory_store_free(s2);
    fake_free(f);
    scratch_done();
}

TEST(memory_owner_applied_to_created_files)
{
    if (geteuid() != 0) test_skip("chown needs root");
    scratch();
    fake_t *f = fake_new();
    fake_put(f, "/d/a.md", "alpha");
    memory_store_config_t c = cfg_of("memstore_01");
    c.owner_uid = 1000;
    c.owner_gid = 1000;
    memory_store_t *s = mount(f, c);
    struct stat st;
    ASSERT_EQ_INT(stat(path_of("store"), &st), 0);
    ASSERT_EQ_INT(st.st_uid, 1000);
    ASSERT_EQ_INT(stat(path_of("store/d"), &st), 0);
    ASSERT_EQ_INT(st.st_uid, 1000);
    ASSERT_EQ_INT(stat(path_of("store/d/a.md"), &st), 0);
    ASSERT_EQ_INT(st.st_uid, 1000);
    ASSERT_EQ_INT(st.st_gid, 1000);
    memory_store_free(s);
    fake_free(f);
    scratch_done();
}

/* ---- session cadence ------------------------------------------------------------------- */

TEST(memory_session_cadence_and_finish_once)
{
    scratch();
    fake_t *f = fake_new();
    fake_put(f, "/a.md", "alpha");
    fake_put(f, "/b.md", "beta");
    memory_store_t *s = mount(f, cfg_of("memstore_01"));
    memory_session_t *m = NULL;
    shed_err err = {0};
    ASSERT_EQ_INT(memory_session_new(&m, 4999, 0, &err), -EINVAL);
    ASSERT_CONTAINS(err.msg, "at least 5000ms");
    ASSERT_EQ_INT(memory_session_new(&m, MEMORY_DEFAULT_SYNC_INTERVAL_MS, 0, &err), 0);
    ASSERT_EQ_INT(memory_session_add(m, s, &err), 0);
    memory_session_mounted(m, 1000);
    memset(f->calls, 0, sizeof f->calls);
    ASSERT_EQ_INT(memory_session_sync_if_due(m, 15999), 0);
    ASSERT_EQ_INT(memory_session_sync_if_due(m, 16000), 1);
    while (memory_session_run(m, 16000)) fake_pump(f, 1);
    ASSERT_EQ_INT(f->calls[MEMORY_OP_LIST], 1);
    ASSERT_EQ_INT(memory_session_sync_if_due(m, 20000), 0); /* counts from the end of that sync */
    ASSERT_EQ_INT(unlink(path_of("store/a.md")), 0);
    ASSERT_EQ_INT(memory_session_finish(m, 21000, &err), 0);
    while (memory_session_run(m, 21000)) fake_pump(f, 1);
    ASSERT_TRUE(fake_content(f, "/a.md") == NULL); /* the last sync waives the wait */
    ASSERT_EQ_INT(memory_session_finish(m, 22000, &err), -EALREADY);
    ASSERT_EQ_INT(memory_session_sync_if_due(m, 90000), 0);
    put_file("store/b.md", "beta, late");
    memory_session_flush(m, 23000);
    while (memory_session_run(m, 23000)) fake_pump(f, 1);
    ASSERT_EQ_STR(fake_content(f, "/b.md"), "beta, late");
    memory_session_dispose_free(m);
    ASSERT_FALSE(exists("store"));
    fake_free(f);
    scratch_done();
}

/* ---- helpers and wire shapes ----------------------------------------------------------- */

TEST(memory_marker_and_paths)
{
    char buf[128];
    ASSERT_EQ_INT(memory_marker_content("memstore_01", buf, sizeof buf), 21);
    ASSERT_EQ_STR(buf, "version 1\nmemstore_01");
    ASSERT_TRUE(memory_mount_path_legal("/mnt/memory/notes"));
    ASSERT_FALSE(memory_mount_path_legal("mnt/memory"));
    ASSERT_FALSE(memory_mount_path_legal("/mnt/memory/../etc"));
    ASSERT_FALSE(memory_mount_path_legal("/mnt/.."));
    ASSERT_TRUE(memory_mount_path_legal("/mnt/..x"));
    shed_err err = {0};
    ASSERT_EQ_INT(memory_check_sync_interval(5000, &err), 0);
    ASSERT_EQ_INT(memory_check_sync_interval(100, &err), -EINVAL);
}

TEST(memory_wire_shapes)
{
    memory_req_t r = {.op = MEMORY_OP_LIST};
    const char *page =
        "{\"data\":[{\"type\":\"memory_prefix\",\"path\":\"/notes/\"},"
        "{\"type\":\"memory\",\"id\":\"mem_1\",\"path\":\"/a.md\",\"content_sha256\":"
        "\"2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae\","
        "\"content_size_bytes\":3,\"memory_store_id\":\"memstore_1\"}],\"next_page\":\"cur2\"}";
    json_t *j = json_loads(page, 0, NULL);
    ASSERT_EQ_INT(memory_req_set_json(&r, 200, j), 0);
    json_decref(j);
    ASSERT_EQ_INT(r.n_items, 2);
    ASSERT_TRUE(r.items[0].is_prefix);
    ASSERT_EQ_STR(r.items[1].id, "mem_1");
    ASSERT_EQ_STR(r.items[1].path, "/a.md");
    ASSERT_TRUE(r.items[1].content == NULL);
    ASSERT_EQ_STR(r.next_page, "cur2");
    for (size_t i = 0; i < r.n_items; i++) {
        free(r.items[i].id);
        free(r.items[i].path);
        free(r.items[i].content);
    }
    free(r.items);
    free(r.next_page);

    memory_req_t g = {.op = MEMORY_OP_GET};
    j = json_loads("{\"type\":\"memory\",\"id\":\"mem_1\",\"path\":\"/a.md\",\"content\":\"foo\","
                   "\"content_sha256\":"
                   "\"2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae\"}",
                   0, NULL);
    ASSERT_EQ_INT(memory_req_set_json(&g, 200, j), 0);
    json_decref(j);
    ASSERT_EQ_STR(g.item.content, "foo");
    ASSERT_EQ_INT(g.item.content_len, 3);
    free(g.item.id);
    free(g.item.path);
    free(g.item.content);

    memory_req_t bad = {.op = MEMORY_OP_GET};
    j = json_loads("{\"type\":\"memory\",\"id\":\"mem_1\",\"path\":\"/a.md\","
                   "\"content_sha256\":\"NOTHEX\"}",
                   0, NULL);
    ASSERT_EQ_INT(memory_req_set_json(&bad, 200, j), -EPROTO);
    ASSERT_EQ_INT(bad.status, 0);
    json_decref(j);

    memory_req_t e = {.op = MEMORY_OP_UPDATE};
    j = json_loads("{\"type\":\"error\",\"error\":{\"type\":\"memory_precondition_failed_error\","
                   "\"message\":\"content changed\"}}",
                   0, NULL);
    ASSERT_EQ_INT(memory_req_set_json(&e, 409, j), 0);
    json_decref(j);
    ASSERT_EQ_INT(e.status, 409);
    ASSERT_EQ_STR(e.error, "memory_precondition_failed_error: content changed");
}
