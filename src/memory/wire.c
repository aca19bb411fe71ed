/* The memory endpoints' JSON shapes (BetaManagedAgentsMemory, the cursor
 * page {data, next_page}, the error envelope) turned into a memory_req_t
 * result, for a remote built on an HTTP client. Input is untrusted: a bad
 * shape is -EPROTO, never a crash; a sha that is not 64 lowercase hex is
 * refused. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "memory/memory.h"

static int valid_sha(const char *s)
{
    if (!s || strlen(s) != SHA256_HEX_LEN - 1) return 0;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f'))) return 0;
    return 1;
}

static const char *str_field(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* 0 and filled, 1 for a memory_prefix, -EPROTO for a bad shape. */
static int parse_item(json_t *o, const char **id, const char **path, const char **sha,
                      const char **content, size_t *content_len)
{
    if (!json_is_object(o)) return -EPROTO;
    const char *type = str_field(o, "type");
    *path = str_field(o, "path");
    if (!*path) return -EPROTO;
    if (type && !strcmp(type, "memory_prefix")) return 1;
    *id = str_field(o, "id");
    *sha = str_field(o, "content_sha256");
    if (!*id || !valid_sha(*sha)) return -EPROTO;
    json_t *c = json_object_get(o, "content");
    *content = NULL;
    *content_len = 0;
    if (json_is_string(c)) {
        *content = json_string_value(c);
        *content_len = json_string_length(c);
    }
    return 0;
}

int memory_req_set_json(memory_req_t *req, int status, json_t *body)
{
    req->status = status;
    if (status < 200 || status >= 300) {
        json_t *e = json_is_object(body) ? json_object_get(body, "error") : NULL;
        const char *msg = json_is_object(e) ? str_field(e, "message") : NULL;
        const char *type = json_is_object(e) ? str_field(e, "type") : NULL;
        snprintf(req->error, sizeof req->error, "%s%s%s", type ? type : "", type && msg ? ": " : "",
                 msg ? msg : "");
        return 0;
    }
    if (req->op == MEMORY_OP_DELETE) return 0;
    const char *id, *path, *sha, *content;
    size_t clen;
    if (req->op != MEMORY_OP_LIST) {
        int r = parse_item(body, &id, &path, &sha, &content, &clen);
        if (r != 0) goto bad;
        return memory_req_set_item(req, id, path, sha, content, clen);
    }
    json_t *data = json_is_object(body) ? json_object_get(body, "data") : NULL;
    if (!json_is_array(data)) goto bad;
    size_t i;
    json_t *it;
    json_array_foreach(data, i, it)
    {
        int r = parse_item(it, &id, &path, &sha, &content, &clen);
        if (r < 0) goto bad;
        if (r == 1)
            r = memory_req_add_item(req, NULL, path, NULL, NULL, 0, 1);
        else
            r = memory_req_add_item(req, id, path, sha, content, clen, 0);
        if (r < 0) return r;
    }
    json_t *np = json_object_get(body, "next_page");
    if (np && !json_is_null(np) && !json_is_string(np)) goto bad;
    return memory_req_set_next_page(req, json_is_string(np) ? json_string_value(np) : NULL);
bad:
    /* A 2xx whose body is not the documented shape: treat as a failed call. */
    req->status = 0;
    snprintf(req->error, sizeof req->error, "unexpected response shape from the memory API");
    return -EPROTO;
}
