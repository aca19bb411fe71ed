/* Skill uploads for `shed serve`: check the uploaded file set the way the
 * public API does (one top-level directory holding SKILL.md with `name` and
 * `description` frontmatter) and pack it into the zip archive that
 * GET /v1/skills/{id}/versions/{v}/content serves.
 *
 * Never writes a file to disk; never accepts a path that is absolute, has an
 * empty, "." or ".." component, a backslash or a control character. */
#pragma once
#include <stddef.h>

#include "base/buf.h"

#define SKILL_MAX_FILES 500
#define SKILL_MAX_PATH  512
#define SKILL_MAX_DEPTH 20
#define SKILL_NAME_MAX  64
#define SKILL_DESC_MAX  1024

typedef struct skill_file {
    const char *path; /* as uploaded: "<dir>/SKILL.md", "<dir>/scripts/x.py" */
    const char *data;
    size_t len;
} skill_file_t;

typedef struct skill_meta {
    char directory[256];           /* the top-level directory */
    char name[SKILL_NAME_MAX + 1]; /* SKILL.md frontmatter `name` */
    char description[SKILL_DESC_MAX + 1];
} skill_meta_t;

/* 0, or -1 with msg naming the file and the rule (the caller answers 400). */
int skill_check(const skill_file_t *files, int n, skill_meta_t *meta, char *msg, size_t msglen);
/* Pack into a zip (deflate) in `out` (its limit bounds the archive). 0 or -errno. */
int skill_pack_zip(const skill_file_t *files, int n, buf_t *out, char *msg, size_t msglen);
