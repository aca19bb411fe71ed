/* Skills: bringing a session agent's skills into <workdir>/skills/<name>/ as
 * the official workers do (../shared/reference/work-api.md §4.1, SDK
 * src/tools/agent-toolset/skills.ts). This module holds the worker-independent
 * part: the safe extraction of a downloaded archive and the pure helpers that
 * pick the version and the directory name. The HTTP side (list versions,
 * retrieve, download) belongs to the worker.
 *
 * Never: follow a symlink at or under the destination, write outside the
 * directory fd it is given, keep modes/owners from the archive, create a
 * link or a device, or leave a half-extracted skill behind. */
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/err.h"

/* Bounds against archive bombs, each checked against what is actually read,
 * never only against what a header claims; and who owns what is created. */
typedef struct skills_opts {
    uint64_t max_total_bytes; /* sum of extracted file sizes */
    uint64_t max_entry_bytes; /* one file */
    uint32_t max_entries;     /* members read, skipped ones included */
    uint32_t max_path_len;    /* bytes of a member name */
    uint32_t max_depth;       /* path components of a member name */
    /* Every created file and directory (the skill directory included) is
     * chowned to these, so the sandbox user can read a skill the root worker
     * extracted; -1 (the default) keeps the extracting user's. */
    uid_t owner_uid;
    gid_t owner_gid;
} skills_opts_t;

#define SKILLS_DEFAULT_MAX_TOTAL_BYTES (512ull << 20)
#define SKILLS_DEFAULT_MAX_ENTRY_BYTES (128ull << 20)
#define SKILLS_DEFAULT_MAX_ENTRIES     20000u
#define SKILLS_DEFAULT_MAX_PATH_LEN    1024u
#define SKILLS_DEFAULT_MAX_DEPTH       32u

void skills_opts_default(skills_opts_t *o);

/* What an extraction did. */
typedef struct skills_extract_stats {
    uint32_t files, dirs;
    uint32_t skipped; /* symlinks, hardlinks, devices, fifos, sockets: not extracted */
    uint64_t bytes;
    int stripped; /* 1 when a single wrapper directory was stripped */
} skills_extract_stats_t;

/* Extract the archive (zip, tar, tar.gz, tar.bz2, tar.xz; format detected
 * from the bytes) read from `archive_fd` into `name` inside the directory
 * open at `parent_fd` (the session's skills/ directory). `name` must be one
 * path component (see skills_dir_name). The archive goes to a fresh stage
 * directory beside `name` first; only a fully extracted and checked tree is
 * renamed into place, replacing whatever was at `name` (removed without
 * following links). On failure nothing is left at `name` that was not there
 * before, and the stage is removed.
 *
 * As the reference: a member that is absolute or has a `..` component
 * refuses the whole archive; symlink, hardlink, device, fifo and socket
 * members are skipped (counted in stats->skipped); the single top-level
 * directory every member shares is stripped; directories are 0700, files
 * 0755 when any execute bit is set in the archive, else 0644. `opts` NULL
 * means the defaults. `stats` may be NULL. */
int skills_extract_fd(int archive_fd, int parent_fd, const char *name, const skills_opts_t *opts,
                      skills_extract_stats_t *stats, shed_err *err);
/* The same, from a buffer. */
int skills_extract_mem(const void *data, size_t len, int parent_fd, const char *name,
                       const skills_opts_t *opts, skills_extract_stats_t *stats, shed_err *err);

/* The directory a skill lands in: basename(trim(version_name)), falling back
 * to `skill_id` when that is empty, "." or "..". The result must be a single
 * path component (no '/', not "." or "..", at most 255 bytes), else -EINVAL
 * with a message (the reference skips such a skill with a warning). */
int skills_dir_name(const char *version_name, const char *skill_id, char *out, size_t outlen,
                    shed_err *err);

/* True when `v` is a non-empty string of ASCII digits: a concrete version. */
int skills_version_is_numeric(const char *v);

/* The version to download: `requested` itself when numeric; otherwise
 * ("latest", or any alias) the highest numeric entry of `versions` (compared
 * as unbounded integers; non-numeric entries ignored). -ENOENT with a message
 * when there is none. */
int skills_resolve_version(const char *requested, const char *const *versions, size_t n, char *out,
                           size_t outlen, shed_err *err);
