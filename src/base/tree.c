/* Symlink-safe recursive removal (see tree.h). Never follows a link, never
 * builds a path string to decide what to remove. */
#include "base/tree.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cleanup.h"

static int empty_fd(int fd, int depth, shed_err *err);

static int remove_at(int dirfd, const char *name, int depth, shed_err *err)
{
    if (unlinkat(dirfd, name, 0) == 0) return 0;
    if (errno == ENOENT) return 0;
    if (errno != EISDIR && errno != EPERM) return err_set(err, errno, "unlink %s", name);
    if (depth >= TREE_MAX_DEPTH)
        return err_msg(err, ELOOP, "remove %s: tree deeper than %d levels", name, TREE_MAX_DEPTH);
    _cleanup_close_ int fd =
        openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT) return 0;
        return err_set(err, errno, "open directory %s", name);
    }
    int r = empty_fd(fd, depth + 1, err);
    if (r < 0) return r;
    if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        return err_set(err, errno, "rmdir %s", name);
    return 0;
}

static int empty_fd(int fd, int depth, shed_err *err)
{
    int dfd = dup(fd);
    if (dfd < 0) return err_set(err, errno, "dup");
    fcntl(dfd, F_SETFD, FD_CLOEXEC);
    DIR *d = fdopendir(dfd);
    if (!d) {
        int e = errno;
        close(dfd);
        return err_set(err, e, "fdopendir");
    }
    int r = 0;
    /* Removing while reading may hide entries from this pass: repeat until a
     * pass finds nothing left. */
    for (int removed = 1; removed && r == 0;) {
        removed = 0;
        rewinddir(d);
        for (;;) {
            errno = 0;
            struct dirent *de = readdir(d);
            if (!de) {
                if (errno) r = err_set(err, errno, "readdir");
                break;
            }
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            r = remove_at(fd, de->d_name, depth, err);
            if (r < 0) break;
            removed = 1;
        }
    }
    closedir(d);
    return r;
}

int tree_remove_at(int dirfd, const char *name, shed_err *err)
{
    if (!name || !*name || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
        return err_msg(err, EINVAL, "remove tree: '%s' is not a single path component",
                       name ? name : "");
    return remove_at(dirfd, name, 0, err);
}

int tree_empty_fd(int fd, shed_err *err)
{
    return empty_fd(fd, 0, err);
}
