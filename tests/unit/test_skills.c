/* Unit tests for src/skills: extraction of real archives in every format
 * (built here with libarchive's writer), malicious archives refused or
 * their special members skipped without anything landing outside the
 * destination or staying behind, limits, the pre-existing-symlink case, and
 * the pure name/version helpers. */
#include "test.h"

#include "base/cleanup.h"
#include "base/err.h"
#include "base/tree.h"
#include "skills/skills.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- archive building ---------------------------------------------------- */

enum { M_FILE, M_DIR, M_SYMLINK, M_HARDLINK, M_CHR, M_FIFO };

typedef struct member {
    const char *name;
    int type;
    const char *content; /* file content, or link target */
    int perm;            /* 0 = 0644 / 0755 */
    size_t zeros;        /* file of this many zero bytes instead of content */
} member_t;

enum { F_TAR, F_TGZ, F_TBZ2, F_TXZ, F_ZIP };

static size_t build(int fmt, const member_t *m, size_t n, char *out, size_t cap)
{
    struct archive *a = archive_write_new();
    ASSERT_TRUE(a != NULL);
    if (fmt == F_ZIP) {
        ASSERT_EQ_INT(archive_write_set_format_zip(a), ARCHIVE_OK);
    } else {
        ASSERT_EQ_INT(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
        if (fmt == F_TGZ) ASSERT_EQ_INT(archive_write_add_filter_gzip(a), ARCHIVE_OK);
        if (fmt == F_TBZ2) ASSERT_EQ_INT(archive_write_add_filter_bzip2(a), ARCHIVE_OK);
        if (fmt == F_TXZ) ASSERT_EQ_INT(archive_write_add_filter_xz(a), ARCHIVE_OK);
    }
    size_t used = 0;
    ASSERT_EQ_INT(archive_write_open_memory(a, out, cap, &used), ARCHIVE_OK);
    static char zeros[65536];
    for (size_t i = 0; i < n; i++) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, m[i].name);
        archive_entry_set_mtime(e, 1700000000, 0);
        size_t size = 0;
        switch (m[i].type) {
        case M_FILE:
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_perm(e, m[i].perm ? m[i].perm : 0644);
            size = m[i].zeros ? m[i].zeros : (m[i].content ? strlen(m[i].content) : 0);
            break;
        case M_DIR:
            archive_entry_set_filetype(e, AE_IFDIR);
            archive_entry_set_perm(e, m[i].perm ? m[i].perm : 0755);
            break;
        case M_SYMLINK:
            archive_entry_set_filetype(e, AE_IFLNK);
            archive_entry_set_perm(e, 0777);
            archive_entry_set_symlink(e, m[i].content);
            break;
        case M_HARDLINK:
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_perm(e, 0644);
            archive_entry_set_hardlink(e, m[i].content);
            break;
        case M_CHR:
            archive_entry_set_filetype(e, AE_IFCHR);
            archive_entry_set_perm(e, 0666);
            archive_entry_set_rdevmajor(e, 1);
            archive_entry_set_rdevminor(e, 3);
            break;
        case M_FIFO:
            archive_entry_set_filetype(e, AE_IFIFO);
            archive_entry_set_perm(e, 0644);
            break;
        }
        archive_entry_set_size(e, (la_int64_t)size);
        int r = archive_write_header(a, e);
        if (r != ARCHIVE_OK)
            test_fail(__FILE__, __LINE__, "write header %s: %s", m[i].name,
                      archive_error_string(a));
        if (m[i].type == M_FILE) {
            if (m[i].zeros) {
                for (size_t left = m[i].zeros; left > 0;) {
                    size_t c = left < sizeof zeros ? left : sizeof zeros;
                    ASSERT_EQ_INT(archive_write_data(a, zeros, c), (la_ssize_t)c);
                    left -= c;
                }
            } else if (size) {
                ASSERT_EQ_INT(archive_write_data(a, m[i].content, size), (la_ssize_t)size);
            }
        }
        archive_entry_free(e);
    }
    ASSERT_EQ_INT(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
    return used;
}

#define ARCHIVE_CAP (8u << 20)
static char g_arc[ARCHIVE_CAP];

/* ---- scratch directories and tree listing ------------------------------- */

static char g_root[256];

/* A scratch root holding skills/ (the parent fd) and outside/ (which must
 * never be touched). Returns the fd of skills/. */
static int scratch(void)
{
    snprintf(g_root, sizeof g_root, "%s/shed-skills-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    ASSERT_TRUE(mkdtemp(g_root) != NULL);
    char p[512];
    snprintf(p, sizeof p, "%s/skills", g_root);
    ASSERT_EQ_INT(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/outside", g_root);
    ASSERT_EQ_INT(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/skills", g_root);
    int fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT_TRUE(fd >= 0);
    return fd;
}

static void scratch_done(int fd)
{
    close(fd);
    char parent[256];
    snprintf(parent, sizeof parent, "%s", g_root);
    char *slash = strrchr(parent, '/');
    *slash = 0;
    int root = open(parent[0] ? parent : "/", O_RDONLY | O_DIRECTORY);
    shed_err err = {0};
    ASSERT_EQ_INT(tree_remove_at(root, slash + 1, &err), 0);
    close(root);
}

static char g_list[65536];
static size_t g_list_len;
static size_t g_list_base;

static int list_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)flag;
    if (ftw->level == 0) return 0;
    char t = S_ISREG(st->st_mode)   ? 'f'
             : S_ISDIR(st->st_mode) ? 'd'
             : S_ISLNK(st->st_mode) ? 'l'
                                    : '?';
    g_list_len += (size_t)snprintf(g_list + g_list_len, sizeof g_list - g_list_len, "%s %c %o\n",
                                   path + g_list_base, t, (unsigned)(st->st_mode & 07777));
    return 0;
}

static int cmp_lines(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "rel type mode" lines, sorted, for everything under g_root/sub. */
static const char *tree(const char *sub)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", g_root, sub);
    g_list_len = 0;
    g_list[0] = 0;
    g_list_base = strlen(p) + 1;
    nftw(p, list_one, 16, FTW_PHYS);
    char *lines[1024];
    int n = 0;
    for (char *save = NULL, *l = strtok_r(g_list, "\n", &save); l && n < 1024;
         l = strtok_r(NULL, "\n", &save))
        lines[n++] = l;
    qsort(lines, (size_t)n, sizeof(char *), cmp_lines);
    static char out[65536];
    size_t o = 0;
    out[0] = 0;
    for (int i = 0; i < n; i++) o += (size_t)snprintf(out + o, sizeof out - o, "%s\n", lines[i]);
    return out;
}

static const char *read_rel(const char *rel)
{
    static char buf[4096];
    char p[512];
    snprintf(p, sizeof p, "%s/%s", g_root, rel);
    int fd = open(p, O_RDONLY | O_NOFOLLOW);
    if (fd < 0) return NULL;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    buf[n < 0 ? 0 : n] = 0;
    return buf;
}

static const member_t SKILL[] = {
    {"pdf/", M_DIR, NULL, 0, 0},
    {"pdf/SKILL.md", M_FILE, "---\nname: pdf\n---\nRead PDFs.\n", 0600, 0},
    {"pdf/scripts/", M_DIR, NULL, 0777, 0},
    {"pdf/scripts/run.sh", M_FILE, "#!/bin/sh\necho hi\n", 04711, 0},
    {"pdf/scripts/data.txt", M_FILE, "data", 0666, 0},
};

static const char *const SKILL_TREE = "pdf d 700\n"
                                      "pdf/SKILL.md f 644\n"
                                      "pdf/scripts d 700\n"
                                      "pdf/scripts/data.txt f 644\n"
                                      "pdf/scripts/run.sh f 755\n";

static void check_format(int fmt)
{
    int fd = scratch();
    size_t n = build(fmt, SKILL, ARRAY_SIZE(SKILL), g_arc, ARCHIVE_CAP);
    skills_extract_stats_t st;
    shed_err err = {0};
    int r = skills_extract_mem(g_arc, n, fd, "pdf", NULL, &st, &err);
    if (r < 0) test_fail(__FILE__, __LINE__, "extract: %s", err.msg);
    ASSERT_EQ_STR(tree("skills"), SKILL_TREE);
    ASSERT_EQ_STR(read_rel("skills/pdf/scripts/run.sh"), "#!/bin/sh\necho hi\n");
    ASSERT_EQ_INT(st.files, 3);
    ASSERT_EQ_INT(st.stripped, 1);
    ASSERT_EQ_INT(st.skipped, 0);
    ASSERT_EQ_STR(tree("outside"), "");
    scratch_done(fd);
}

TEST(skills_extract_tar)
{
    check_format(F_TAR);
}
TEST(skills_extract_tar_gz)
{
    check_format(F_TGZ);
}
TEST(skills_extract_tar_bz2)
{
    check_format(F_TBZ2);
}
TEST(skills_extract_tar_xz)
{
    check_format(F_TXZ);
}
TEST(skills_extract_zip)
{
    check_format(F_ZIP);
}

TEST(skills_extract_from_fd)
{
    int fd = scratch();
    size_t n = build(F_ZIP, SKILL, ARRAY_SIZE(SKILL), g_arc, ARCHIVE_CAP);
    char p[512];
    snprintf(p, sizeof p, "%s/outside/dl.zip", g_root);
    int afd = open(p, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    ASSERT_EQ_INT(write(afd, g_arc, n), (ssize_t)n);
    shed_err err = {0};
    int r = skills_extract_fd(afd, fd, "pdf", NULL, NULL, &err);
    if (r < 0) test_fail(__FILE__, __LINE__, "extract: %s", err.msg);
    close(afd);
    ASSERT_EQ_STR(tree("skills"), SKILL_TREE);
    ASSERT_EQ_INT(unlink(p), 0);
    scratch_done(fd);
}

/* Extract and expect success; returns the tree of skills/. */
static const char *ok(int fd, int fmt, const member_t *m, size_t n, skills_extract_stats_t *st)
{
    size_t len = build(fmt, m, n, g_arc, ARCHIVE_CAP);
    shed_err err = {0};
    int r = skills_extract_mem(g_arc, len, fd, "s", NULL, st, &err);
    if (r < 0) test_fail(__FILE__, __LINE__, "extract: %s", err.msg);
    return tree("skills");
}

/* Extract and expect refusal with `msg`; nothing may be left in skills/ or
 * outside/. */
static void refused(int fmt, const member_t *m, size_t n, const skills_opts_t *lim, const char *msg)
{
    int fd = scratch();
    size_t len = build(fmt, m, n, g_arc, ARCHIVE_CAP);
    shed_err err = {0};
    int r = skills_extract_mem(g_arc, len, fd, "s", lim, NULL, &err);
    if (r >= 0)
        test_fail(__FILE__, __LINE__, "expected refusal (%s); tree:\n%s", msg, tree("skills"));
    ASSERT_CONTAINS(err.msg, msg);
    ASSERT_EQ_STR(tree("skills"), "");
    ASSERT_EQ_STR(tree("outside"), "");
    scratch_done(fd);
}

TEST(skills_flat_archive_is_not_stripped)
{
    int fd = scratch();
    const member_t m[] = {{"SKILL.md", M_FILE, "x", 0, 0}, {"lib/a.py", M_FILE, "a", 0755, 0}};
    skills_extract_stats_t st;
    ASSERT_EQ_STR(ok(fd, F_TAR, m, 2, &st),
                  "s d 700\ns/SKILL.md f 644\ns/lib d 700\ns/lib/a.py f 755\n");
    ASSERT_EQ_INT(st.stripped, 0);
    scratch_done(fd);
}

TEST(skills_multi_root_and_lone_dir_are_not_stripped)
{
    int fd = scratch();
    const member_t m[] = {{"a/x", M_FILE, "x", 0, 0}, {"b/y", M_FILE, "y", 0, 0}};
    ASSERT_EQ_STR(ok(fd, F_ZIP, m, 2, NULL),
                  "s d 700\ns/a d 700\ns/a/x f 644\ns/b d 700\ns/b/y f 644\n");
    scratch_done(fd);
    fd = scratch();
    /* archiveTopDir needs a nested member: a lone "pdf/" stays as is. */
    const member_t lone[] = {{"pdf/", M_DIR, NULL, 0, 0}};
    ASSERT_EQ_STR(ok(fd, F_TAR, lone, 1, NULL), "s d 700\ns/pdf d 700\n");
    scratch_done(fd);
    fd = scratch();
    /* "./pdf/..." is the same as "pdf/...". */
    const member_t dot[] = {{"./", M_DIR, NULL, 0, 0}, {"./pdf/SKILL.md", M_FILE, "k", 0, 0}};
    ASSERT_EQ_STR(ok(fd, F_TAR, dot, 2, NULL), "s d 700\ns/SKILL.md f 644\n");
    scratch_done(fd);
}

TEST(skills_traversal_refused)
{
    const member_t a[] = {{"pdf/SKILL.md", M_FILE, "ok", 0, 0},
                          {"../outside/evil", M_FILE, "x", 0, 0}};
    refused(F_TAR, a, 2, NULL, "refusing to extract unsafe archive member: ../outside/evil");
    const member_t b[] = {{"pdf/../../outside/evil", M_FILE, "x", 0, 0}};
    refused(F_ZIP, b, 1, NULL, "unsafe archive member");
    const member_t c[] = {{"pdf\\..\\..\\evil", M_FILE, "x", 0, 0}};
    refused(F_TAR, c, 1, NULL, "unsafe archive member");
    /* even a member that would be skipped is checked, as skills.ts does */
    const member_t d[] = {{"pdf/a", M_FILE, "a", 0, 0}, {"../x", M_SYMLINK, "/etc", 0, 0}};
    refused(F_TGZ, d, 2, NULL, "unsafe archive member: ../x");
    const member_t e[] = {{" ../evil", M_FILE, "x", 0, 0}};
    refused(F_TAR, e, 1, NULL, "unsafe archive member");
}

TEST(skills_absolute_path_refused)
{
    char target[512];
    int fd = scratch();
    snprintf(target, sizeof target, "%s/outside/abs", g_root);
    scratch_done(fd);
    const member_t a[] = {{"pdf/SKILL.md", M_FILE, "ok", 0, 0}, {target, M_FILE, "x", 0, 0}};
    refused(F_TAR, a, 2, NULL, "unsafe archive member: /");
    const member_t b[] = {{"/etc/shed-evil", M_FILE, "x", 0, 0}};
    refused(F_ZIP, b, 1, NULL, "unsafe archive member: /etc/shed-evil");
    ASSERT_TRUE(access("/etc/shed-evil", F_OK) < 0);
}

TEST(skills_symlink_members_skipped)
{
    int fd = scratch();
    char target[512];
    snprintf(target, sizeof target, "%s/outside", g_root);
    /* the classic: a link to outside, then a file "through" it */
    const member_t m[] = {{"pdf/SKILL.md", M_FILE, "ok", 0, 0},
                          {"pdf/out", M_SYMLINK, target, 0, 0},
                          {"pdf/out/evil", M_FILE, "x", 0, 0},
                          {"pdf/passwd", M_SYMLINK, "/etc/passwd", 0, 0}};
    skills_extract_stats_t st;
    ASSERT_EQ_STR(ok(fd, F_TAR, m, ARRAY_SIZE(m), &st),
                  "s d 700\ns/SKILL.md f 644\ns/out d 700\ns/out/evil f 644\n");
    ASSERT_EQ_INT(st.skipped, 2);
    ASSERT_EQ_STR(tree("outside"), "");
    scratch_done(fd);
    fd = scratch();
    ASSERT_EQ_STR(ok(fd, F_ZIP, m, ARRAY_SIZE(m), &st),
                  "s d 700\ns/SKILL.md f 644\ns/out d 700\ns/out/evil f 644\n");
    ASSERT_EQ_INT(st.skipped, 2);
    ASSERT_EQ_STR(tree("outside"), "");
    scratch_done(fd);
}

TEST(skills_hardlink_device_fifo_members_skipped)
{
    int fd = scratch();
    const member_t m[] = {{"pdf/SKILL.md", M_FILE, "ok", 0, 0},
                          {"pdf/shadow", M_HARDLINK, "/etc/shadow", 0, 0},
                          {"pdf/twin", M_HARDLINK, "pdf/SKILL.md", 0, 0},
                          {"pdf/mem", M_CHR, NULL, 0, 0},
                          {"pdf/pipe", M_FIFO, NULL, 0, 0}};
    skills_extract_stats_t st;
    ASSERT_EQ_STR(ok(fd, F_TAR, m, ARRAY_SIZE(m), &st), "s d 700\ns/SKILL.md f 644\n");
    ASSERT_EQ_INT(st.skipped, 4);
    struct stat sb;
    char p[512];
    snprintf(p, sizeof p, "%s/skills/s/SKILL.md", g_root);
    ASSERT_EQ_INT(lstat(p, &sb), 0);
    ASSERT_EQ_INT(sb.st_nlink, 1);
    scratch_done(fd);
}

TEST(skills_bomb_total_bytes_refused)
{
    skills_opts_t lim;
    skills_opts_default(&lim);
    lim.max_total_bytes = 1 << 20;
    /* 4 MiB of zeros compresses to a few KiB */
    const member_t m[] = {{"pdf/a", M_FILE, NULL, 0, 3u << 20},
                          {"pdf/b", M_FILE, NULL, 0, 3u << 20}};
    lim.max_entry_bytes = 8u << 20;
    refused(F_TGZ, m, 2, &lim, "expands to more than 1048576 bytes");
    refused(F_ZIP, m, 2, &lim, "expands to more than 1048576 bytes");
    lim.max_total_bytes = 64u << 20;
    lim.max_entry_bytes = 1u << 20;
    refused(F_TXZ, m, 2, &lim, "member 'pdf/a' is larger than 1048576 bytes");
}

TEST(skills_bomb_entry_count_refused)
{
    skills_opts_t lim;
    skills_opts_default(&lim);
    lim.max_entries = 50;
    static member_t m[200];
    static char names[200][32];
    for (int i = 0; i < 200; i++) {
        snprintf(names[i], sizeof names[i], "pdf/f%d", i);
        m[i] = (member_t){names[i], i % 2 ? M_FILE : M_SYMLINK, i % 2 ? "x" : "y", 0, 0};
    }
    refused(F_TGZ, m, 200, &lim, "more than 50 members");
}

TEST(skills_deep_nesting_and_long_names_refused)
{
    static char deep[4096];
    size_t o = 0;
    for (int i = 0; i < 40; i++) o += (size_t)snprintf(deep + o, sizeof deep - o, "d/");
    snprintf(deep + o, sizeof deep - o, "f");
    const member_t m[] = {{deep, M_FILE, "x", 0, 0}};
    refused(F_TAR, m, 1, NULL, "nested deeper than 32 levels");
    static char longname[2100];
    memset(longname, 'a', 2000);
    memcpy(longname, "pdf/", 4);
    longname[2000] = 0;
    const member_t l[] = {{longname, M_FILE, "x", 0, 0}};
    refused(F_TAR, l, 1, NULL, "over the 1024-byte limit");
}

TEST(skills_preexisting_symlink_at_destination_not_followed)
{
    int fd = scratch();
    char target[512];
    snprintf(target, sizeof target, "%s/outside", g_root);
    ASSERT_EQ_INT(symlinkat(target, fd, "s"), 0);
    const member_t m[] = {{"pdf/SKILL.md", M_FILE, "ok", 0, 0}};
    ASSERT_EQ_STR(ok(fd, F_TAR, m, 1, NULL), "s d 700\ns/SKILL.md f 644\n");
    ASSERT_EQ_STR(tree("outside"), "");
    scratch_done(fd);

    /* A stale tree there is replaced, its links removed, not followed. */
    fd = scratch();
    ASSERT_EQ_INT(mkdirat(fd, "s", 0755), 0);
    int sfd = openat(fd, "s", O_RDONLY | O_DIRECTORY);
    ASSERT_EQ_INT(symlinkat(target, sfd, "SKILL.md"), 0);
    ASSERT_EQ_INT(symlinkat(target, sfd, "old"), 0);
    close(sfd);
    char keep[512];
    snprintf(keep, sizeof keep, "%s/outside/keep", g_root);
    int kfd = open(keep, O_WRONLY | O_CREAT, 0644);
    close(kfd);
    ASSERT_EQ_STR(ok(fd, F_TAR, m, 1, NULL), "s d 700\ns/SKILL.md f 644\n");
    ASSERT_EQ_STR(tree("outside"), "keep f 644\n");
    scratch_done(fd);
}

TEST(skills_failure_keeps_existing_destination_and_leaves_no_stage)
{
    int fd = scratch();
    ASSERT_EQ_INT(mkdirat(fd, "s", 0700), 0);
    /* a valid start, then garbage: extraction fails midway */
    const member_t m[] = {{"pdf/a", M_FILE, "aaaa", 0, 0}, {"pdf/b", M_FILE, NULL, 0, 200000}};
    size_t len = build(F_TGZ, m, 2, g_arc, ARCHIVE_CAP);
    shed_err err = {0};
    ASSERT_TRUE(skills_extract_mem(g_arc, len / 2, fd, "s", NULL, NULL, &err) < 0);
    ASSERT_EQ_STR(tree("skills"), "s d 700\n");
    /* not an archive at all */
    ASSERT_TRUE(skills_extract_mem("hello, world\n", 13, fd, "t", NULL, NULL, &err) < 0);
    ASSERT_CONTAINS(err.msg, "skill archive");
    ASSERT_TRUE(skills_extract_mem("", 0, fd, "t", NULL, NULL, &err) < 0);
    ASSERT_EQ_STR(tree("skills"), "s d 700\n");
    scratch_done(fd);
}

TEST(skills_duplicate_members)
{
    int fd = scratch();
    const member_t m[] = {{"pdf/a", M_FILE, "first", 0, 0}, {"pdf/a", M_FILE, "second", 0755, 0}};
    ASSERT_EQ_STR(ok(fd, F_TAR, m, 2, NULL), "s d 700\ns/a f 755\n");
    ASSERT_EQ_STR(read_rel("skills/s/a"), "second");
    scratch_done(fd);
    const member_t c[] = {{"pdf/a/", M_DIR, NULL, 0, 0}, {"pdf/a", M_FILE, "x", 0, 0}};
    refused(F_TAR, c, 2, NULL, "both a directory and a file");
    const member_t d[] = {{"pdf/a", M_FILE, "x", 0, 0}, {"pdf/a/b", M_FILE, "x", 0, 0}};
    refused(F_TAR, d, 2, NULL, "needs a directory where another member is a file");
}

TEST(skills_bad_destination_name_refused)
{
    int fd = scratch();
    const member_t m[] = {{"a", M_FILE, "x", 0, 0}};
    size_t len = build(F_TAR, m, 1, g_arc, ARCHIVE_CAP);
    shed_err err = {0};
    ASSERT_EQ_INT(skills_extract_mem(g_arc, len, fd, "..", NULL, NULL, &err), -EINVAL);
    ASSERT_EQ_INT(skills_extract_mem(g_arc, len, fd, "a/b", NULL, NULL, &err), -EINVAL);
    ASSERT_EQ_INT(skills_extract_mem(g_arc, len, fd, "", NULL, NULL, &err), -EINVAL);
    ASSERT_EQ_STR(tree("skills"), "");
    scratch_done(fd);
}

TEST(skills_dir_name_rules)
{
    char out[256];
    shed_err err = {0};
    ASSERT_EQ_INT(skills_dir_name("  pdf-tools \n", "skill_1", out, sizeof out, &err), 0);
    ASSERT_EQ_STR(out, "pdf-tools");
    ASSERT_EQ_INT(skills_dir_name("../../etc/passwd", "skill_1", out, sizeof out, &err), 0);
    ASSERT_EQ_STR(out, "passwd");
    ASSERT_EQ_INT(skills_dir_name("a/b/", "skill_1", out, sizeof out, &err), 0);
    ASSERT_EQ_STR(out, "b");
    ASSERT_EQ_INT(skills_dir_name("..", "skill_1", out, sizeof out, &err), 0);
    ASSERT_EQ_STR(out, "skill_1");
    ASSERT_EQ_INT(skills_dir_name("  ", "skill_1", out, sizeof out, &err), 0);
    ASSERT_EQ_STR(out, "skill_1");
    ASSERT_EQ_INT(skills_dir_name("/", "skill_1", out, sizeof out, &err), 0);
    ASSERT_EQ_STR(out, "skill_1");
    ASSERT_EQ_INT(skills_dir_name(NULL, "skill_1", out, sizeof out, &err), 0);
    ASSERT_EQ_STR(out, "skill_1");
    /* the fallback must itself stay inside skills/ */
    ASSERT_EQ_INT(skills_dir_name(".", "../x", out, sizeof out, &err), -EINVAL);
    ASSERT_CONTAINS(err.msg, "does not give a directory inside skills/");
    ASSERT_EQ_INT(skills_dir_name("", "a/b", out, sizeof out, &err), -EINVAL);
    ASSERT_EQ_INT(skills_dir_name("", "..", out, sizeof out, &err), -EINVAL);
    char big[300];
    memset(big, 'n', 299);
    big[299] = 0;
    ASSERT_EQ_INT(skills_dir_name(big, "s", out, sizeof out, &err), -EINVAL);
}

TEST(skills_version_resolution)
{
    const char *v[] = {"1759178010641129", "latest", "99", "1759178010641130", "0017"};
    char out[64];
    shed_err err = {0};
    ASSERT_EQ_INT(skills_resolve_version("latest", v, 5, out, sizeof out, &err), 0);
    ASSERT_EQ_STR(out, "1759178010641130");
    ASSERT_EQ_INT(skills_resolve_version("42", v, 5, out, sizeof out, &err), 0);
    ASSERT_EQ_STR(out, "42");
    ASSERT_EQ_INT(skills_resolve_version("v2", v, 5, out, sizeof out, &err), 0);
    ASSERT_EQ_STR(out, "1759178010641130");
    /* unbounded integers: longer wins, leading zeros ignored */
    const char *w[] = {"0000000000000000000000009", "100000000000000000000000"};
    ASSERT_EQ_INT(skills_resolve_version("latest", w, 2, out, sizeof out, &err), 0);
    ASSERT_EQ_STR(out, "100000000000000000000000");
    const char *none[] = {"latest", ""};
    ASSERT_EQ_INT(skills_resolve_version("latest", none, 2, out, sizeof out, &err), -ENOENT);
    ASSERT_CONTAINS(err.msg, "no numeric version");
    ASSERT_TRUE(skills_version_is_numeric("0"));
    ASSERT_FALSE(skills_version_is_numeric(""));
    ASSERT_FALSE(skills_version_is_numeric("1.0"));
}

TEST(tree_remove_does_not_follow_links)
{
    int fd = scratch();
    char target[512];
    snprintf(target, sizeof target, "%s/outside", g_root);
    ASSERT_EQ_INT(mkdirat(fd, "t", 0700), 0);
    int tfd = openat(fd, "t", O_RDONLY | O_DIRECTORY);
    ASSERT_EQ_INT(symlinkat(target, tfd, "link"), 0);
    ASSERT_EQ_INT(mkdirat(tfd, "sub", 0700), 0);
    close(tfd);
    char keep[512];
    snprintf(keep, sizeof keep, "%s/outside/keep", g_root);
    close(open(keep, O_WRONLY | O_CREAT, 0644));
    shed_err err = {0};
    ASSERT_EQ_INT(tree_remove_at(fd, "t", &err), 0);
    ASSERT_EQ_STR(tree("skills"), "");
    ASSERT_EQ_STR(tree("outside"), "keep f 644\n");
    ASSERT_EQ_INT(tree_remove_at(fd, "absent", &err), 0);
    ASSERT_EQ_INT(tree_remove_at(fd, "../outside", &err), -EINVAL);
    scratch_done(fd);
}

TEST(skills_owner_applied)
{
    if (geteuid() != 0) test_skip("chown needs root");
    int fd = scratch();
    skills_opts_t o;
    skills_opts_default(&o);
    o.owner_uid = 1000;
    o.owner_gid = 1000;
    size_t n = build(F_TGZ, SKILL, ARRAY_SIZE(SKILL), g_arc, ARCHIVE_CAP);
    shed_err err = {0};
    int r = skills_extract_mem(g_arc, n, fd, "pdf", &o, NULL, &err);
    if (r < 0) test_fail(__FILE__, __LINE__, "extract: %s", err.msg);
    const char *rels[] = {"skills/pdf", "skills/pdf/SKILL.md", "skills/pdf/scripts",
                          "skills/pdf/scripts/run.sh"};
    for (size_t i = 0; i < ARRAY_SIZE(rels); i++) {
        char p[512];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", g_root, rels[i]);
        ASSERT_EQ_INT(lstat(p, &st), 0);
        ASSERT_EQ_INT(st.st_uid, 1000);
        ASSERT_EQ_INT(st.st_gid, 1000);
    }
    /* a flat archive: the stage itself becomes the skill directory */
    const member_t flat[] = {{"SKILL.md", M_FILE, "x", 0, 0}};
    n = build(F_ZIP, flat, 1, g_arc, ARCHIVE_CAP);
    r = skills_extract_mem(g_arc, n, fd, "flat", &o, NULL, &err);
    if (r < 0) test_fail(__FILE__, __LINE__, "extract: %s", err.msg);
    struct stat st;
    ASSERT_EQ_INT(fstatat(fd, "flat", &st, AT_SYMLINK_NOFOLLOW), 0);
    ASSERT_EQ_INT(st.st_uid, 1000);
    scratch_done(fd);
}
