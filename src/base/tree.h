/* Removing a directory tree relative to a directory fd without ever
 * following a symlink: every level is opened O_NOFOLLOW|O_DIRECTORY from the
 * fd of its parent, so a link planted in the tree (by a sandbox that can
 * write there) is unlinked as a link, never traversed. Never uses string path
 * joins to decide what to remove. */
#pragma once
#include "base/err.h"

/* Deepest tree removed; deeper levels fail with -ELOOP rather than use one
 * fd per level without bound. */
#define TREE_MAX_DEPTH 256

/* Remove `name` (a single component) inside `dirfd`: a file or link is
 * unlinked, a directory is emptied and removed. Absent is success. */
int tree_remove_at(int dirfd, const char *name, shed_err *err);

/* Empty the directory open at `fd` (the directory itself stays). */
int tree_empty_fd(int fd, shed_err *err);
