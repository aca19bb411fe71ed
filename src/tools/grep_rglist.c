/* ripgrep's file listing computed in-process, for grep_rg.c, in the one case
 * where it is trivially exact; everywhere else it gives up and the caller
 * asks rg (`rg --no-config --files --null --sort path -- DIR`).
 *
 * What rg 13 (crates/ignore 0.4.18, walkdir 2.3) lists for a directory DIR
 * when no ignore rule applies: every entry beneath DIR whose type (d_type,
 * lstat when the file system does not say; links never followed) is a
 * regular file and whose path below DIR has no component starting with '.'
 * (hidden entries are skipped, hidden directories not entered), depth first,
 * siblings in byte order of their names, a directory's contents at the
 * place where the directory sorts. No ignore rule applies when no directory
 * rg reads holds a `.ignore`, `.rgignore`, `.gitignore`, `.git` or `.jj`
 * (the last three matter only inside a git repository, i.e. with a `.git`,
 * or a `.jj` for rg 14.1.1 and later; the global git excludes,
 * core.excludesFile or $XDG_CONFIG_HOME/git/ignore, and .git/info/exclude
 * are consulted only then as well), neither DIR's walked
 * directories nor any parent of DIR up to `/` (rg reads the parents' ignore
 * files too). rg prints an error (and exits 2) when it cannot read a
 * directory it walks, or lstat an entry of one, or open a path longer than
 * PATH_MAX: each of those, and an unexpected errno anywhere, makes this give
 * up too, so that the caller's results keep rg's error texts.
 *
 * Never leaves DIR: each directory is opened with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS) relative to its parent's fd (a directory swapped
 * for a link meanwhile makes it give up). Bounded: entries, depth, bytes.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/cleanup.h"
#include "tools/internal.h"

#define RGL_MAX_ENTRIES 100000   /* directory entries looked at */
#define RGL_MAX_DEPTH 64         /* directories open at once */
#define RGL_MAX_BYTES (8 << 20)  /* the listing */
#define RGL_MAX_PATH 4000        /* rg opens by path name: PATH_MAX (4096), with a margin */
#define RGL_DENTS (32 * 1024)

typedef struct rgl {
    buf_t *out;
    buf_t path; /* DIR "/" rel of the directory being read */
    size_t entries;
    const char *why;
} rgl_t;

typedef struct rgl_ent {
    size_t off; /* in the level's names */
    unsigned char type;
} rgl_ent;

static int give_up(rgl_t *w, const char *why)
{
    w->why = why;
    return TOOLS_RGLIST_FALLBACK;
}

/* The names rg looks for in every directory it reads (`.jj`: rg 14.1.1 and
 * later take a directory holding one for a git repository).
 * control_name: in ASCII letter case of any kind (a case-folding directory
 * finds `.IGNORE` for `.ignore`). */
static const char *const CONTROL_NAMES[] = {".git", ".gitignore", ".ignore", ".rgignore", ".jj"};
#define N_CONTROL (sizeof(CONTROL_NAMES) / sizeof(CONTROL_NAMES[0]))

static bool control_name(const char *n)
{
    const char *const *names = CONTROL_NAMES;
    for (size_t k = 0; k < N_CONTROL; k++) {
        const char *a = n, *b = names[k];
        while (*a && *b) {
            char c = *a >= 'A' && *a <= 'Z' ? (char)(*a + 32) : *a;
            if (c != *b) break;
            a++, b++;
        }
        if (!*a && !*b) return true;
    }
    return false;
}

static int cmp_ent(const void *a, const void *b, void *names)
{
    const char *base = names;
    return strcmp(base + ((const rgl_ent *)a)->off, base + ((const rgl_ent *)b)->off);
}

static int walk(rgl_t *w, int dfd, unsigned depth)
{
    if (depth > RGL_MAX_DEPTH) return give_up(w, "the tree is deeper than the in-process walk goes");
    _cleanup_free_ char *db = malloc(RGL_DENTS);
    _cleanup_free_ rgl_ent *ents = NULL;
    _cleanup_buf_ buf_t names;
    buf_init(&names, 0);
    size_t n = 0, cap = 0;
    if (!db) return -ENOMEM;
    for (;;) {
        ssize_t r = getdents64(dfd, db, RGL_DENTS);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return give_up(w, "a directory could not be read");
        if (r == 0) break;
        for (ssize_t i = 0; i < r;) {
            struct dirent64 *de = (struct dirent64 *)(void *)(db + i);
            i += de->d_reclen;
            const char *nm = de->d_name;
            if (nm[0] == '.' && (!nm[1] || (nm[1] == '.' && !nm[2]))) continue;
            if (control_name(nm)) return give_up(w, "an ignore file or .git");
            size_t nl = strlen(nm);
            /* rg 13 (crates/ignore's file_name) takes a name ending in '.'
             * for no name: ".x." is not hidden to it. A quirk: left to rg. */
            if (nm[0] == '.' && nm[nl - 1] == '.') return give_up(w, "a name starting and ending with '.'");
            if (++w->entries > RGL_MAX_ENTRIES) return give_up(w, "too many entries");
            unsigned char ty = de->d_type;
            if (ty == DT_UNKNOWN) {
                /* rg's walk lstats it (hidden or not) and reports a failure */
                struct stat st;
                if (fstatat(dfd, nm, &st, AT_SYMLINK_NOFOLLOW) < 0) return give_up(w, "an entry could not be stat'ed");
                ty = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_LNK;
            }
            if (nm[0] == '.' || (ty != DT_DIR && ty != DT_REG)) continue; /* hidden; links, special files */
            if (n == cap) {
                size_t nc = cap ? cap * 2 : 64;
                rgl_ent *ne = realloc(ents, nc * sizeof(*ne));
                if (!ne) return -ENOMEM;
                ents = ne, cap = nc;
            }
            ents[n].off = names.len;
            ents[n].type = ty;
            n++;
            if (buf_append(&names, nm, nl + 1) < 0) return -ENOMEM;
        }
    }
    if (n > 1) qsort_r(ents, n, sizeof(*ents), cmp_ent, names.data);
    size_t base = w->path.len;
    for (size_t k = 0; k < n; k++) {
        const char *nm = names.data + ents[k].off;
        w->path.len = base;
        if (buf_putc(&w->path, '/') < 0 || buf_puts(&w->path, nm) < 0) return -ENOMEM;
        if (w->path.len > RGL_MAX_PATH) return give_up(w, "a path is longer than rg can open");
        if (ents[k].type == DT_REG) {
            if (w->out->len + w->path.len + 1 > RGL_MAX_BYTES) return give_up(w, "the listing is too large");
            if (buf_append(w->out, w->path.data, w->path.len + 1) < 0) return -ENOMEM;
            continue;
        }
        int cfd = tools_openat_beneath(dfd, nm, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0);
        if (cfd < 0) return give_up(w, "a directory could not be opened beneath its parent");
        int rc = walk(w, cfd, depth + 1);
        close(cfd);
        if (rc != 0) return rc;
    }
    w->path.len = base;
    w->path.data[base] = 0;
    return 0;
}

/* Would rg read an ignore file or find a git repository in a parent of
 * dir? Asked by path name, as rg does (existence only; nothing is read). */
static int parents_clean(rgl_t *w, const char *dir)
{
    size_t len = strlen(dir);
    _cleanup_buf_ buf_t p;
    buf_init(&p, 0);
    while (len > 1) {
        while (len > 1 && dir[len - 1] != '/') len--;
        size_t plen = len > 1 ? len - 1 : 1; /* the parent: "/a/b" of "/a/b/c", "/" of "/a" */
        for (size_t k = 0; k < N_CONTROL; k++) {
            buf_reset(&p);
            if (buf_append(&p, dir, plen) < 0 || (plen > 1 && buf_putc(&p, '/') < 0) ||
                buf_puts(&p, CONTROL_NAMES[k]) < 0)
                return -ENOMEM;
            struct stat st;
            if (lstat(p.data, &st) == 0) return give_up(w, "an ignore file or .git in a parent directory");
            if (errno != ENOENT) return give_up(w, "a parent directory could not be checked");
        }
        len = plen;
    }
    return 0;
}

int tools_rg_list(int dirfd, const char *dir, buf_t *out, const char **why)
{
    rgl_t w = {.out = out, .why = NULL};
    buf_init(&w.path, 0);
    int rc;
    size_t dlen = strlen(dir);
    if (dlen < 2 || dir[0] != '/' || dir[dlen - 1] == '/')
        rc = give_up(&w, "the directory is / or not a canonical absolute path");
    else if (dlen > RGL_MAX_PATH)
        rc = give_up(&w, "a path is longer than rg can open");
    else if ((rc = parents_clean(&w, dir)) == 0) {
        if (buf_append(&w.path, dir, dlen) < 0)
            rc = -ENOMEM;
        else {
            /* a descriptor of our own: the walk reads it to its end */
            int fd = tools_openat_beneath(dirfd, ".", O_RDONLY | O_DIRECTORY, 0);
            rc = fd < 0 ? give_up(&w, "the directory could not be opened") : walk(&w, fd, 0);
            if (fd >= 0) close(fd);
        }
    }
    buf_free(&w.path);
    if (why) *why = rc == TOOLS_RGLIST_FALLBACK ? w.why : NULL;
    if (rc != 0) buf_reset(out);
    return rc;
}
