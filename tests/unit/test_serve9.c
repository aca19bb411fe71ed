/* Unit tests for the set-up objects of `shed serve` (issue #9, server side):
 * the store's agents/skills/memory-store calls (one transaction each,
 * preconditions, path conflicts, keyset paging with depth grouping), the
 * multipart/form-data parser and the skill check + zip packer. */
#include "test.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/crypto.h"
#include "server/multipart.h"
#include "server/skill_pack.h"
#include "server/store.h"

static store_t *open_mem(void)
{
    store_queue_cfg_t cfg = {.default_ttl_s = 10, .default_reclaim_ms = 5000};
    store_t *s = NULL;
    shed_err err = {0};
    if (store_open("sqlite::memory:", &cfg, &s, &err) < 0)
        test_fail(__FILE__, __LINE__, "store_open: %s", err.msg);
    return s;
}

static char *new_store(store_t *s)
{
    json_t *b = json_pack("{s:s,s:s}", "type", "memory_store", "name", "m");
    json_t *o = NULL;
    shed_err err = {0};
    ASSERT_EQ_INT(s->ops->obj_create(s, "memory_store", "memstore", b, &o, &err), 0);
    char *id = strdup(json_string_value(json_object_get(o, "id")));
    json_decref(o);
    json_decref(b);
    return id;
}

static char *mem_create(store_t *s, const char *sid, const char *path, const char *content)
{
    json_t *o = NULL, *conflict = NULL;
    shed_err err = {0};
    int rc =
        s->ops->memory_create(s, sid, path, content, strlen(content), false, &o, &conflict, &err);
    if (rc < 0) test_fail(__FILE__, __LINE__, "memory_create %s: %s", path, err.msg);
    char *id = strdup(json_string_value(json_object_get(o, "id")));
    json_decref(o);
    return id;
}

/* All list items (type:path) over every page, joined by spaces. */
static void list_all(store_t *s, const char *sid, const char *prefix, int depth, int limit,
                     char *out, size_t n)
{
    out[0] = '\0';
    char cursor[4096] = "";
    for (int pages = 0; pages < 100; pages++) {
        store_page_t pg = {.limit = limit, .cursor = cursor[0] ? cursor : NULL};
        json_t *page = NULL;
        shed_err err = {0};
        ASSERT_EQ_INT(s->ops->memory_list(s, sid, prefix, depth, false, &pg, &page, &err), 0);
        size_t i;
        json_t *it;
        ASSERT_TRUE(json_array_size(json_object_get(page, "data")) <= (size_t)limit);
        json_array_foreach(json_object_get(page, "data"), i, it)
        {
            const char *t = json_string_value(json_object_get(it, "type"));
            size_t l = strlen(out);
            snprintf(out + l, n - l, "%s%s:%s", l ? " " : "", !strcmp(t, "memory") ? "m" : "p",
                     json_string_value(json_object_get(it, "path")));
        }
        const char *next = json_string_value(json_object_get(page, "next_page"));
        if (!next) {
            json_decref(page);
            return;
        }
        snprintf(cursor, sizeof(cursor), "%s", next);
        json_decref(page);
    }
    test_fail(__FILE__, __LINE__, "listing never ended");
}

TEST(memory_create_conflicts_and_sha)
{
    store_t *s = open_mem();
    _cleanup_free_ char *sid = new_store(s);
    _cleanup_free_ char *a = mem_create(s, sid, "/notes/a.md", "alpha");
    json_t *o = NULL, *conflict = NULL;
    shed_err err = {0};
    ASSERT_EQ_INT(s->ops->memory_get(s, sid, a, true, &o, &err), 0);
    char hex[SHA256_HEX_LEN];
    crypto_sha256_hex("alpha", 5, hex);
    ASSERT_EQ_STR(json_string_value(json_object_get(o, "content_sha256")), hex);
    ASSERT_EQ_STR(json_string_value(json_object_get(o, "content")), "alpha");
    ASSERT_EQ_INT(json_integer_value(json_object_get(o, "content_size_bytes")), 5);
    json_decref(o);
    const char *blocked[] = {"/notes/a.md", "/notes/a.md/x", "/notes"};
    for (size_t i = 0; i < 3; i++) {
        conflict = NULL;
        ASSERT_EQ_INT(s->ops->memory_create(s, sid, blocked[i], "x", 1, false, &o, &conflict, &err),
                      -EEXIST);
        ASSERT_EQ_STR(json_string_value(json_object_get(conflict, "conflicting_memory_id")), a);
        json_decref(conflict);
    }
    /* siblings sharing a name prefix do not conflict */
    free(mem_create(s, sid, "/notes/a.mdx", "y"));
    free(mem_create(s, sid, "/notes-b", "z"));
    ASSERT_EQ_INT(s->ops->memory_create(s, "memstore_01234567890123456789012345", "/x", "x", 1,
                                        false, &o, &conflict, &err),
                  -ENOENT);
    s->ops->close(s);
}

TEST(memory_update_precondition_and_delete_expected_sha)
{
    store_t *s = open_mem();
    _cleanup_free_ char *sid = new_store(s);
    _cleanup_free_ char *a = mem_create(s, sid, "/a", "one");
    _cleanup_free_ char *b = mem_create(s, sid, "/b", "bee");
    char h1[SHA256_HEX_LEN], h2[SHA256_HEX_LEN], hb[SHA256_HEX_LEN];
    crypto_sha256_hex("one", 3, h1);
    crypto_sha256_hex("two", 3, h2);
    crypto_sha256_hex("bee", 3, hb);
    json_t *o = NULL, *conflict = NULL;
    shed_err err = {0};
    ASSERT_EQ_INT(s->ops->memory_update(s, sid, a, NULL, "two", 3, h1, true, &o, &conflict, &err),
                  0);
    ASSERT_EQ_STR(json_string_value(json_object_get(o, "content")), "two");
    const char *v2 = json_string_value(json_object_get(o, "memory_version_id"));
    char ver[64];
    snprintf(ver, sizeof(ver), "%s", v2);
    json_decref(o);
    /* stale precondition: refused, nothing written */
    ASSERT_EQ_INT(s->ops->memory_update(s, sid, a, NULL, "three", 5, h1, true, &o, &conflict, &err),
                  -ESTALE);
    ASSERT_CONTAINS(err.msg, "precondition");
    /* the requested state already holds: success, no new version */
    ASSERT_EQ_INT(s->ops->memory_update(s, sid, a, NULL, "two", 3, hb, true, &o, &conflict, &err),
                  0);
    ASSERT_EQ_STR(json_string_value(json_object_get(o, "memory_version_id")), ver);
    json_decref(o);
    /* rename onto another memory: conflict */
    conflict = NULL;
    ASSERT_EQ_INT(s->ops->memory_update(s, sid, a, "/b", NULL, 0, NULL, true, &o, &conflict, &err),
                  -EEXIST);
    json_decref(conflict);
    /* rename keeps the content */
    ASSERT_EQ_INT(
        s->ops->memory_update(s, sid, a, "/dir/c", NULL, 0, h2, true, &o, &conflict, &err), 0);
    ASSERT_EQ_STR(json_string_value(json_object_get(o, "content")), "two");
    ASSERT_EQ_STR(json_string_value(json_object_get(o, "path")), "/dir/c");
    json_decref(o);
    /* delete */
    ASSERT_EQ_INT(s->ops->memory_delete(s, sid, b, h1, &err), -ESTALE);
    ASSERT_EQ_INT(s->ops->memory_delete(s, sid, b, hb, &err), 0);
    ASSERT_EQ_INT(s->ops->memory_delete(s, sid, b, NULL, &err), -ENOENT);
    ASSERT_EQ_INT(s->ops->memory_delete(s, sid, a, NULL, &err), 0);
    s->ops->close(s);
}

TEST(memory_list_pages_prefix_and_depth)
{
    store_t *s = open_mem();
    _cleanup_free_ char *sid = new_store(s);
    const char *paths[] = {"/a-x", "/a/1", "/a/2", "/a/b/3", "/a0", "/z/y/x/w", "/top"};
    for (size_t i = 0; i < ARRAY_SIZE(paths); i++) free(mem_create(s, sid, paths[i], "c"));
    char all[2048];
    const char *want = "m:/a-x m:/a/1 m:/a/2 m:/a/b/3 m:/a0 m:/top m:/z/y/x/w";
    for (int limit = 1; limit <= 8; limit++) {
        list_all(s, sid, NULL, 0, limit, all, sizeof(all));
        ASSERT_EQ_STR(all, want);
    }
    const char *want1 = "m:/a-x p:/a/ m:/a0 m:/top p:/z/";
    for (int limit = 1; limit <= 6; limit++) {
        list_all(s, sid, NULL, 1, limit, all, sizeof(all));
        ASSERT_EQ_STR(all, want1);
    }
    list_all(s, sid, "/a/", 0, 2, all, sizeof(all));
    ASSERT_EQ_STR(all, "m:/a/1 m:/a/2 m:/a/b/3");
    list_all(s, sid, "/a/", 1, 1, all, sizeof(all));
    ASSERT_EQ_STR(all, "m:/a/1 m:/a/2 p:/a/b/");
    list_all(s, sid, "/z/", 2, 5, all, sizeof(all));
    ASSERT_EQ_STR(all, "p:/z/y/x/");
    store_page_t bad = {.limit = 5, .cursor = "pg_zz"};
    json_t *page = NULL;
    shed_err err = {0};
    ASSERT_EQ_INT(s->ops->memory_list(s, sid, NULL, 0, false, &bad, &page, &err), -EINVAL);
    s->ops->close(s);
}

TEST(skill_versions_latest_and_content)
{
    store_t *s = open_mem();
    json_t *sk = json_pack("{s:s,s:s}", "type", "skill", "display_name", "d");
    json_t *v = json_pack("{s:s,s:s,s:s}", "name", "n", "description", "x", "directory", "dir");
    json_t *o = NULL;
    shed_err err = {0};
    ASSERT_EQ_INT(s->ops->skill_create(s, sk, v, "ZIP1", 4, &o, &err), 0);
    char id[64], v1[32];
    snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(o, "id")));
    snprintf(v1, sizeof(v1), "%s", json_string_value(json_object_get(o, "latest_version_id")));
    json_decref(o);
    ASSERT_EQ_INT(s->ops->skill_version_create(s, id, v, "ZIP22", 5, &o, &err), 0);
    char v2[32];
    snprintf(v2, sizeof(v2), "%s", json_string_value(json_object_get(o, "id")));
    ASSERT_TRUE(strtoll(v2, NULL, 10) > strtoll(v1, NULL, 10));
    json_decref(o);
    ASSERT_EQ_INT(s->ops->skill_version_get(s, id, "latest", &o, &err), 0);
    ASSERT_EQ_STR(json_string_value(json_object_get(o, "id")), v2);
    json_decref(o);
    void *data = NULL;
    size_t len = 0;
    ASSERT_EQ_INT(s->ops->skill_version_content(s, id, v1, &data, &len, &err), 0);
    ASSERT_EQ_INT(len, 4);
    ASSERT_MEM_EQ(data, "ZIP1", 4);
    free(data);
    ASSERT_EQ_INT(s->ops->obj_get(s, "skill", id, &o, &err), 0);
    ASSERT_EQ_STR(json_string_value(json_object_get(o, "latest_version_id")), v2);
    json_decref(o);
    ASSERT_EQ_INT(s->ops->skill_version_get(s, id, "1", &o, &err), -ENOENT);
    ASSERT_EQ_INT(
        s->ops->skill_version_create(s, "skill_01234567890123456789012345", v, "z", 1, &o, &err),
        -ENOENT);
    /* an object of another kind is not found under this one */
    ASSERT_EQ_INT(s->ops->obj_get(s, "agent", id, &o, &err), -ENOENT);
    json_decref(sk);
    json_decref(v);
    s->ops->close(s);
}

TEST(multipart_parses_and_refuses)
{
    const char body[] =
        "preamble\r\n--XyZ\r\n"
        "Content-Disposition: form-data; name=\"display_name\"\r\n\r\n"
        "My skill\r\n--XyZ\r\n"
        "Content-Disposition: form-data; name=\"files[]\"; filename=\"d/a %22q%22.md\"\r\n"
        "Content-Type: text/markdown\r\n\r\n"
        "line1\r\nline2\r\n--XyZ--\r\n";
    multipart_part_t parts[4];
    char msg[256];
    int n = multipart_parse("multipart/form-data; boundary=XyZ", body, sizeof(body) - 1, parts, 4,
                            msg, sizeof(msg));
    ASSERT_EQ_INT(n, 2);
    ASSERT_EQ_STR(parts[0].name, "display_name");
    ASSERT_FALSE(parts[0].has_filename);
    ASSERT_EQ_INT(parts[0].len, 8);
    ASSERT_EQ_STR(parts[1].filename, "d/a \"q\".md");
    ASSERT_EQ_INT(parts[1].len, 12);
    ASSERT_MEM_EQ(parts[1].data, "line1\r\nline2", 12);
    ASSERT_EQ_INT(
        multipart_parse("application/json", body, sizeof(body) - 1, parts, 4, msg, sizeof(msg)),
        -1);
    ASSERT_EQ_INT(multipart_parse("multipart/form-data; boundary=XyZ", body, sizeof(body) - 1,
                                  parts, 1, msg, sizeof(msg)),
                  -1);
    ASSERT_CONTAINS(msg, "more than 1");
    /* truncated: no closing boundary */
    ASSERT_EQ_INT(
        multipart_parse("multipart/form-data; boundary=XyZ", body, 120, parts, 4, msg, sizeof(msg)),
        -1);
    const char noname[] = "--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--";
    ASSERT_EQ_INT(multipart_parse("multipart/form-data; boundary=b", noname, sizeof(noname) - 1,
                                  parts, 4, msg, sizeof(msg)),
                  -1);
}

TEST(skill_check_and_zip)
{
    const char *md = "---\nname: my-skill\ndescription: \"does things\"\n---\nbody\n";
    skill_file_t f[] = {{"top/SKILL.md", md, strlen(md)}, {"top/bin/x.sh", "echo\n", 5}};
    skill_meta_t meta;
    char msg[256];
    ASSERT_EQ_INT(skill_check(f, 2, &meta, msg, sizeof(msg)), 0);
    ASSERT_EQ_STR(meta.name, "my-skill");
    ASSERT_EQ_STR(meta.description, "does things");
    ASSERT_EQ_STR(meta.directory, "top");
    skill_file_t bad1[] = {{"top/SKILL.md", md, strlen(md)}, {"other/x", "x", 1}};
    ASSERT_EQ_INT(skill_check(bad1, 2, &meta, msg, sizeof(msg)), -1);
    ASSERT_CONTAINS(msg, "same top-level directory");
    skill_file_t bad2[] = {{"top/../SKILL.md", md, strlen(md)}};
    ASSERT_EQ_INT(skill_check(bad2, 1, &meta, msg, sizeof(msg)), -1);
    skill_file_t bad3[] = {{"top/SKILL.md", "no front", 8}};
    ASSERT_EQ_INT(skill_check(bad3, 1, &meta, msg, sizeof(msg)), -1);
    ASSERT_CONTAINS(msg, "frontmatter");
    skill_file_t bad4[] = {{"top/sub/SKILL.md", md, strlen(md)}};
    ASSERT_EQ_INT(skill_check(bad4, 1, &meta, msg, sizeof(msg)), -1);
    ASSERT_CONTAINS(msg, "no SKILL.md");

    buf_t out;
    buf_init(&out, 1 << 20);
    ASSERT_EQ_INT(skill_pack_zip(f, 2, &out, msg, sizeof(msg)), 0);
    struct archive *a = archive_read_new();
    archive_read_support_format_zip(a);
    ASSERT_EQ_INT(archive_read_open_memory(a, out.data, out.len), ARCHIVE_OK);
    struct archive_entry *e;
    int n = 0;
    while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
        char data[256];
        la_ssize_t got = archive_read_data(a, data, sizeof(data));
        ASSERT_EQ_STR(archive_entry_pathname(e), f[n].path);
        ASSERT_EQ_INT(got, (la_ssize_t)f[n].len);
        ASSERT_MEM_EQ(data, f[n].data, f[n].len);
        ASSERT_EQ_INT(archive_entry_perm(e), 0644);
        n++;
    }
    ASSERT_EQ_INT(n, 2);
    archive_read_free(a);
    /* an archive over the output's limit is refused */
    buf_t small;
    buf_init(&small, 64);
    ASSERT_EQ_INT(skill_pack_zip(f, 2, &small, msg, sizeof(msg)), -EFBIG);
    buf_free(&small);
    buf_free(&out);
}
