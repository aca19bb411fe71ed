/* Checking and packing uploaded skills (skill_pack.h). The archive is built
 * in memory with libarchive's zip writer; entries get fixed modes (0644) and
 * a fixed owner, so nothing about the uploading host leaks into it. */
#include "server/skill_pack.h"

#include "base/lazy_archive.h"
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static int check_path(const char *p, char *top, size_t toplen, char *msg, size_t msglen)
{
    size_t n = strlen(p);
    if (n == 0 || n > SKILL_MAX_PATH) {
        snprintf(msg, msglen, "field 'files': file name '%.80s' must be 1-%d bytes", p,
                 SKILL_MAX_PATH);
        return -1;
    }
    if (p[0] == '/') {
        snprintf(msg, msglen, "field 'files': file name '%.200s' must be relative", p);
        return -1;
    }
    int depth = 0;
    const char *s = p;
    while (*s) {
        const char *e = strchr(s, '/');
        size_t cl = e ? (size_t)(e - s) : strlen(s);
        if (cl == 0 || (cl == 1 && s[0] == '.') || (cl == 2 && s[0] == '.' && s[1] == '.')) {
            snprintf(msg, msglen,
                     "field 'files': file name '%.200s' has an empty, '.' or '..' component", p);
            return -1;
        }
        for (size_t i = 0; i < cl; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c < 0x20 || c == 0x7f || c == '\\') {
                snprintf(msg, msglen,
                         "field 'files': file name '%.200s' has a control character or backslash",
                         p);
                return -1;
            }
        }
        if (depth == 0) {
            if (!e) {
                snprintf(msg, msglen,
                         "field 'files': '%.200s' is not inside a directory: all files must be in "
                         "one top-level directory (e.g. my-skill/SKILL.md)",
                         p);
                return -1;
            }
            if (!top[0]) {
                if (cl >= toplen) cl = toplen - 1;
                memcpy(top, s, cl);
                top[cl] = '\0';
            } else if (strlen(top) != cl || memcmp(top, s, cl)) {
                snprintf(msg, msglen,
                         "field 'files': '%.200s' is outside '%.100s/': all files must be in the "
                         "same top-level directory",
                         p, top);
                return -1;
            }
        }
        if (++depth > SKILL_MAX_DEPTH) {
            snprintf(msg, msglen, "field 'files': '%.200s' is nested deeper than %d", p,
                     SKILL_MAX_DEPTH);
            return -1;
        }
        s = e ? e + 1 : s + cl;
        if (e && !*s) {
            snprintf(msg, msglen, "field 'files': file name '%.200s' ends with '/'", p);
            return -1;
        }
    }
    return 0;
}

/* `key: value` of the frontmatter block (between the first two '---' lines). */
static int front_value(const char *data, size_t len, const char *key, char *out, size_t outlen)
{
    size_t klen = strlen(key);
    size_t i = 0;
    /* skip a UTF-8 BOM */
    if (len >= 3 && !memcmp(data, "\xef\xbb\xbf", 3)) i = 3;
    if (len - i < 4 || memcmp(data + i, "---", 3)) return -1;
    while (i < len && data[i] != '\n') i++;
    i++;
    while (i < len) {
        size_t ls = i;
        while (i < len && data[i] != '\n') i++;
        size_t le = i;
        i++;
        if (le > ls && data[le - 1] == '\r') le--;
        if (le - ls >= 3 && !memcmp(data + ls, "---", 3)) return -1; /* end of frontmatter */
        if (le - ls > klen && !memcmp(data + ls, key, klen) && data[ls + klen] == ':') {
            size_t vs = ls + klen + 1;
            while (vs < le && (data[vs] == ' ' || data[vs] == '\t')) vs++;
            size_t ve = le;
            while (ve > vs && (data[ve - 1] == ' ' || data[ve - 1] == '\t')) ve--;
            if (ve - vs >= 2 && (data[vs] == '"' || data[vs] == '\'') && data[ve - 1] == data[vs]) {
                vs++;
                ve--;
            }
            if (ve - vs >= outlen) return -2;
            memcpy(out, data + vs, ve - vs);
            out[ve - vs] = '\0';
            for (char *c = out; *c; c++)
                if ((unsigned char)*c < 0x20) return -3;
            return 0;
        }
    }
    return -1;
}

int skill_check(const skill_file_t *files, int n, skill_meta_t *meta, char *msg, size_t msglen)
{
    memset(meta, 0, sizeof(*meta));
    if (n <= 0) {
        snprintf(msg, msglen, "field 'files' is required: upload the skill's files");
        return -1;
    }
    if (n > SKILL_MAX_FILES) {
        snprintf(msg, msglen, "field 'files': more than %d files", SKILL_MAX_FILES);
        return -1;
    }
    const skill_file_t *skill_md = NULL;
    for (int i = 0; i < n; i++) {
        if (check_path(files[i].path, meta->directory, sizeof(meta->directory), msg, msglen) < 0)
            return -1;
        for (int j = 0; j < i; j++)
            if (!strcmp(files[i].path, files[j].path)) {
                snprintf(msg, msglen, "field 'files': '%.200s' is uploaded twice", files[i].path);
                return -1;
            }
        const char *slash = strchr(files[i].path, '/');
        if (slash && !strcmp(slash + 1, "SKILL.md")) skill_md = &files[i];
    }
    if (!skill_md) {
        snprintf(msg, msglen, "field 'files': no SKILL.md at the top of '%.100s/'",
                 meta->directory);
        return -1;
    }
    int rc = front_value(skill_md->data, skill_md->len, "name", meta->name, sizeof(meta->name));
    if (rc < 0 || !meta->name[0]) {
        snprintf(msg, msglen,
                 rc == -2 ? "SKILL.md: frontmatter 'name' is longer than %d characters"
                          : "SKILL.md: must start with YAML frontmatter ('---') giving 'name' "
                            "(at most %d characters) and 'description'",
                 SKILL_NAME_MAX);
        return -1;
    }
    rc = front_value(skill_md->data, skill_md->len, "description", meta->description,
                     sizeof(meta->description));
    if (rc == -2 || rc == -3) {
        snprintf(msg, msglen,
                 "SKILL.md: frontmatter 'description' must be one line of at most %d "
                 "characters",
                 SKILL_DESC_MAX);
        return -1;
    }
    return 0;
}

typedef struct zip_sink {
    buf_t *out;
    bool overflow;
} zip_sink_t;

static la_ssize_t zip_write(struct archive *a, void *cls, const void *buf, size_t len)
{
    zip_sink_t *z = cls;
    if (buf_append(z->out, buf, len) < 0) {
        z->overflow = true;
        archive_set_error(a, EFBIG, "skill archive over its size limit");
        return -1;
    }
    return (la_ssize_t)len;
}

int skill_pack_zip(const skill_file_t *files, int n, buf_t *out, char *msg, size_t msglen)
{
    struct archive *a = archive_write_new();
    if (!a) return -ENOMEM;
    int rc = 0;
    zip_sink_t sink = {.out = out};
    if (archive_write_set_format_zip(a) != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK ||
        archive_write_open2(a, &sink, NULL, zip_write, NULL, NULL) != ARCHIVE_OK) {
        snprintf(msg, msglen, "zip writer: %s", archive_error_string(a));
        archive_write_free(a);
        return -EIO;
    }
    for (int i = 0; i < n && rc == 0; i++) {
        struct archive_entry *e = archive_entry_new();
        if (!e) {
            rc = -ENOMEM;
            break;
        }
        archive_entry_set_pathname(e, files[i].path);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_size(e, (la_int64_t)files[i].len);
        archive_entry_set_mtime(e, 0, 0);
        if (archive_write_header(a, e) != ARCHIVE_OK ||
            (files[i].len &&
             archive_write_data(a, files[i].data, files[i].len) != (la_ssize_t)files[i].len)) {
            snprintf(msg, msglen, "zip writer: %s", archive_error_string(a));
            rc = -EIO;
        }
        archive_entry_free(e);
    }
    if (rc == 0 && archive_write_close(a) != ARCHIVE_OK) {
        snprintf(msg, msglen, "zip writer: %s", archive_error_string(a));
        rc = -EIO;
    }
    archive_write_free(a);
    if (sink.overflow) {
        snprintf(msg, msglen, "the skill's archive is over its size limit");
        return -EFBIG;
    }
    return rc;
}
