/* Fuzz skill-archive extraction: arbitrary bytes are extracted into a
 * scratch skills/ directory beside a sentinel directory; after every input
 * the harness checks that nothing escaped (the sentinel and the scratch root
 * are unchanged), that no link, device or fifo was created, that modes are
 * the reference's (dirs 0700, files 0644/0755), and that a failed extraction
 * left nothing at all. Small limits keep each run fast. */
#include "base/tree.h"
#include "skills/skills.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int g_root = -1, g_skills = -1;

static void die(const char *what)
{
    fprintf(stderr, "fuzz_skills_archive: %s\n", what);
    abort();
}

static char g_tmpl[] = "/tmp/shed-fuzz-skills-XXXXXX";

static void teardown(void)
{
    int tmp = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    shed_err err;
    if (tmp >= 0) tree_remove_at(tmp, g_tmpl + 5, &err);
}

static void setup(void)
{
    char *tmpl = g_tmpl;
    if (!mkdtemp(tmpl)) die("mkdtemp");
    atexit(teardown);
    g_root = open(tmpl, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (mkdirat(g_root, "skills", 0755) < 0 || mkdirat(g_root, "sentinel", 0755) < 0) die("mkdir");
    g_skills = openat(g_root, "skills", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (g_root < 0 || g_skills < 0) die("open");
}

/* Number of entries in a directory fd (excluding . and ..), checking each
 * is a plain file or directory with the reference's modes, recursively. */
static int check_tree(int dirfd, int depth)
{
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fdopendir(fd);
    if (!d) die("fdopendir");
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        n++;
        struct stat st;
        if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) die("fstatat");
        if (S_ISDIR(st.st_mode)) {
            if ((st.st_mode & 07777) != 0700) die("directory mode is not 0700");
            if (depth > 64) die("tree deeper than the limit");
            int sub = openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0) die("open subdir");
            check_tree(sub, depth + 1);
            close(sub);
        } else if (S_ISREG(st.st_mode)) {
            unsigned m = st.st_mode & 07777;
            if (m != 0644 && m != 0755) die("file mode is not 0644/0755");
            if (st.st_nlink != 1) die("file with a second hard link");
        } else {
            die("a link, device, fifo or socket was created");
        }
    }
    closedir(d);
    return n;
}

static int count(int dirfd)
{
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fdopendir(fd);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) n++;
    closedir(d);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (g_root < 0) setup();
    skills_opts_t lim;
    skills_opts_default(&lim);
    lim.max_total_bytes = 4u << 20;
    lim.max_entry_bytes = 1u << 20;
    lim.max_entries = 2000;
    shed_err err;
    int r = skills_extract_mem(data, size, g_skills, "s", &lim, NULL, &err);
    if (count(g_root) != 2) die("something escaped into the scratch root");
    int sentinel = openat(g_root, "sentinel", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sentinel < 0) die("sentinel replaced");
    if (count(sentinel) != 0) die("something escaped into the sentinel");
    close(sentinel);
    int n = count(g_skills);
    if (r < 0) {
        if (n != 0) die("a failed extraction left something behind");
        return 0;
    }
    if (n != 1) die("extraction left more than the skill directory");
    struct stat st;
    if (fstatat(g_skills, "s", &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
        die("the skill is not a directory");
    int s = openat(g_skills, "s", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if ((st.st_mode & 07777) != 0700) die("skill directory mode is not 0700");
    check_tree(s, 0);
    close(s);
    if (tree_remove_at(g_skills, "s", &err) < 0) die(err.msg);
    return 0;
}
